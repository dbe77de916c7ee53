//! `tiox playground`: one command to a running, fully mutually
//! authenticated cluster on this machine.
//!
//! ```text
//!  data dir ── certs/ (tiox cert init, first start only)
//!           ├─ topology.json (ports, kept so a second start reuses them)
//!           ├─ pd-N/ kv-N/ tidb-N/ (data)      logs/*.log
//!           ├─ root-password (0600, the generated MySQL root password)
//!           └─ certs/dashboard-client.p12 (+ .password, 0600): the client
//!              certificate as a PKCS#12 bundle to import into a browser
//!              for PD's dashboard (made with the `openssl` tool, if present)
//!  [1/4] PD x N (Raft peers, --initial-cluster, https)  -> /pd/api/v1/health
//!  [2/4] TiKV x N (--pd https://...)                    -> stores Up, regions led,
//!                                                          min(N, 3) voters each, all up
//!  [3/4] TiDB x N (MySQL TLS with the separate mysql/ set, cluster TLS)
//!  [4/4] print how to connect; Ctrl-C stops everything
//!  then   supervise: a server that exits is reported (status, log tail),
//!         the others keep running; --restart-on-failure starts it again
//! ```
//!
//! A server that dies while the cluster runs does not take the others down:
//! the playground names it, its exit status and the last lines of its log,
//! and keeps the rest running (3 replicas survive a lost store). With
//! `--restart-on-failure` a server that failed (a non-zero exit, or a signal
//! other than SIGTERM, SIGINT, SIGHUP and SIGPIPE: systemd's `on-failure`)
//! is started again with the same arguments (less `--initialize-*`), ports
//! and data directory after
//! a backoff (1, 2, 4, 8, 16 s), and reported when its port accepts
//! connections again; after 5 restarts within a minute it is left down.
//! The playground itself stops on Ctrl-C/SIGTERM, or when no server is left.
//! During startup any exit is still fatal (it is usually a port or a
//! configuration problem, and the log tails say which).
//!
//! `--insecure-for-benchmarks` runs every link in plaintext; it exists only
//! to measure what TLS costs, and says so loudly.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Args;
use tiox_bin::launch::{bin, free_port, http_get};
use tiox_security::certgen::{init_dir, InitOptions};
use tiox_security::{ClientTls, Component, SecurityConfig};

#[derive(Args, Debug)]
pub struct PlaygroundArgs {
    /// Number of PD servers (an odd number keeps a quorum).
    #[arg(long, default_value_t = 3)]
    pd: usize,
    /// Number of TiKV stores.
    #[arg(long, default_value_t = 3)]
    kv: usize,
    /// Number of TiDB servers.
    #[arg(long, default_value_t = 1)]
    db: usize,
    /// Where data, logs and certificates live [default: ~/.tiox/playground/TAG].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Name of this playground (its data directory).
    #[arg(long, default_value = "default")]
    tag: String,
    /// PLAINTEXT on every link. Only for measuring what TLS costs.
    #[arg(long)]
    insecure_for_benchmarks: bool,
    /// Start a server again (same arguments, ports and data) when it fails
    /// (non-zero exit, or killed by a signal other than SIGTERM, SIGINT,
    /// SIGHUP, SIGPIPE) while the cluster runs; after a backoff of 1-16 s;
    /// give up after 5 restarts within a minute.
    #[arg(long)]
    restart_on_failure: bool,
    /// Start, wait until healthy, print, then stop (for scripts and tests).
    #[arg(long, hide = true)]
    exit_when_ready: bool,
}

/// Set when Ctrl-C (SIGINT) or SIGTERM arrives.
static STOP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Watches SIGINT and SIGTERM from the very start (a signal during startup
/// stops the servers started so far).
fn watch_signals() -> Result<std::sync::Arc<tokio::sync::Notify>, String> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut int = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let notify = std::sync::Arc::new(tokio::sync::Notify::new());
    let n = notify.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        STOP.store(true, std::sync::atomic::Ordering::SeqCst);
        n.notify_waiters();
        n.notify_one();
    });
    Ok(notify)
}

/// Ports chosen on first start and reused afterwards.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Topology {
    tls: bool,
    pd: Vec<(u16, u16)>,
    kv: Vec<(u16, u16)>,
    db: Vec<(u16, u16)>,
}

/// Restarts allowed within [`RESTART_WINDOW`] before a server is left down.
const MAX_RESTARTS: usize = 5;
/// The window [`MAX_RESTARTS`] is counted in.
const RESTART_WINDOW: Duration = Duration::from_secs(60);
/// Lines of a dead server's log printed with its exit status.
const DEATH_TAIL_LINES: usize = 10;

/// One server: what it was started with (to start it again the same way)
/// and, while it runs, its process.
struct Child_ {
    name: String,
    binary: String,
    args: Vec<String>,
    log: PathBuf,
    stdout: Option<PathBuf>,
    /// Where it serves (its main port), probed after a restart.
    addr: String,
    /// None once it has exited and been reaped.
    child: Option<Child>,
    /// False after a restart until `addr` accepts connections.
    serving: bool,
    /// When its last process exited.
    exited_at: Option<Instant>,
    /// When to start it again (--restart-on-failure, after the backoff).
    restart_at: Option<Instant>,
    /// When it was restarted, within the last [`RESTART_WINDOW`].
    restarts: Vec<Instant>,
}

impl Child_ {
    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Starts (or starts again) the process with the stored arguments,
    /// appending to its log. The stdout file, if any, is truncated on the
    /// first start only, so that a restart keeps what was printed before.
    fn start(&mut self, first: bool) -> Result<(), String> {
        let logf = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| format!("{}: {e}", self.log.display()))?;
        let out = match &self.stdout {
            Some(p) => {
                use std::os::unix::fs::OpenOptionsExt;
                let mut o = std::fs::OpenOptions::new();
                o.create(true).mode(0o600);
                if first {
                    o.write(true).truncate(true);
                } else {
                    o.append(true);
                }
                Stdio::from(o.open(p).map_err(|e| format!("{}: {e}", p.display()))?)
            }
            None => Stdio::from(logf.try_clone().map_err(|e| e.to_string())?),
        };
        let path = bin(&self.binary);
        let child = Command::new(&path)
            .args(&self.args)
            .stdout(out)
            .stderr(Stdio::from(logf))
            .spawn()
            .map_err(|e| {
                format!(
                    "cannot start {}: {e} (build it first: cargo build --release --bins)",
                    path.display()
                )
            })?;
        self.child = Some(child);
        // The accounts are created once: tidb-server refuses a second
        // --initialize-* on a cluster that holds accounts, so a restart
        // runs without it.
        self.args.retain(|a| !a.starts_with("--initialize-"));
        Ok(())
    }
}

struct Running {
    children: Vec<Child_>,
    stopped: bool,
}

impl Running {
    fn stop(&mut self) {
        if std::mem::replace(&mut self.stopped, true) {
            return;
        }
        // Ask every server to stop (SIGTERM: clean shutdown where handled,
        // termination otherwise), newest first; give them 5 s, then make sure.
        for c in self.children.iter().rev() {
            if let Some(pid) = c.pid() {
                // SAFETY: kill(2) on the pid of a child we spawned and have not reaped.
                unsafe {
                    libc::kill(pid as libc::pid_t, libc::SIGTERM);
                }
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for c in &mut self.children {
            let Some(child) = c.child.as_mut() else {
                continue;
            };
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            if let Ok(None) = child.try_wait() {
                let _ = child.kill();
                let _ = child.wait();
                eprintln!("  stopped {} (killed after 5 s)", c.name);
            }
        }
    }

    /// During startup: any exit is fatal.
    fn check_alive(&mut self) -> Result<(), String> {
        for c in &mut self.children {
            if let Some(Ok(Some(status))) = c.child.as_mut().map(Child::try_wait) {
                return Err(format!("{} exited ({status})", c.name));
            }
        }
        Ok(())
    }

    /// Once the cluster runs, called every half second: reports servers
    /// that exited (the others keep running), starts failed ones again when
    /// `restart` is set, reports restarted ones once they serve. An error
    /// only when no server is left (none running, none waiting to restart).
    async fn supervise(&mut self, restart: bool) -> Result<(), String> {
        for i in 0..self.children.len() {
            let Some(Ok(Some(status))) = self.children[i].child.as_mut().map(Child::try_wait)
            else {
                continue;
            };
            if STOP.load(std::sync::atomic::Ordering::SeqCst) {
                // Ctrl-C reached the servers too; stopping is under way.
                return Ok(());
            }
            let now = Instant::now();
            let running = self
                .children
                .iter()
                .enumerate()
                .filter(|(j, c)| *j != i && c.child.is_some())
                .count();
            let c = &mut self.children[i];
            let pid = c.pid().unwrap_or_default();
            c.child = None;
            c.serving = false;
            c.exited_at = Some(now);
            eprintln!(
                "\ntiox playground: {} (pid {pid}) exited ({status}); the last lines of {}:\n{}",
                c.name,
                c.log.display(),
                indent(&tail(&c.log, DEATH_TAIL_LINES))
            );
            c.restarts
                .retain(|t| now.duration_since(*t) < RESTART_WINDOW);
            let how = if !restart {
                "not restarted (start the playground with --restart-on-failure to restart failed servers)"
                    .to_string()
            } else if !failed(status) {
                "it was stopped (a clean exit, or SIGTERM/SIGINT/SIGHUP/SIGPIPE), not restarted: \
                 --restart-on-failure restarts failures only"
                    .to_string()
            } else if c.restarts.len() >= MAX_RESTARTS {
                format!(
                    "it was restarted {} times within the last {} s: giving up, it stays down",
                    c.restarts.len(),
                    RESTART_WINDOW.as_secs()
                )
            } else {
                let backoff = Duration::from_secs(1 << c.restarts.len().min(4));
                c.restart_at = Some(now + backoff);
                format!(
                    "restarting it in {} s (restart {} of at most {MAX_RESTARTS} within {} s)",
                    backoff.as_secs(),
                    c.restarts.len() + 1,
                    RESTART_WINDOW.as_secs()
                )
            };
            eprintln!(
                "  {}: {how}; {}",
                c.name,
                match running {
                    0 => "no other server is running".to_string(),
                    1 => "the 1 other server keeps running".to_string(),
                    n => format!("the other {n} servers keep running"),
                }
            );
        }

        let now = Instant::now();
        for c in &mut self.children {
            if c.restart_at.is_none_or(|t| t > now) {
                continue;
            }
            c.restart_at = None;
            c.restarts.push(now);
            match c.start(false) {
                Ok(()) => eprintln!(
                    "  {}: started again (pid {}), waiting for {}",
                    c.name,
                    c.pid().unwrap_or_default(),
                    c.addr
                ),
                Err(e) if c.restarts.len() < MAX_RESTARTS => {
                    let backoff = Duration::from_secs(1 << c.restarts.len().min(4));
                    c.restart_at = Some(now + backoff);
                    eprintln!("  {}: {e}; trying again in {} s", c.name, backoff.as_secs());
                }
                Err(e) => eprintln!("  {}: {e}; giving up, it stays down", c.name),
            }
        }

        for c in &mut self.children {
            if c.serving || c.child.is_none() {
                continue;
            }
            let probe = tokio::net::TcpStream::connect(c.addr.as_str());
            if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(300), probe).await {
                c.serving = true;
                eprintln!(
                    "tiox playground: {} restarted: serving on {} again (pid {}, {:.1} s after it exited)",
                    c.name,
                    c.addr,
                    c.pid().unwrap_or_default(),
                    c.exited_at.map_or(0.0, |t| t.elapsed().as_secs_f64())
                );
            }
        }

        if self
            .children
            .iter()
            .all(|c| c.child.is_none() && c.restart_at.is_none())
        {
            return Err("every server has exited".into());
        }
        Ok(())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts `binary` as server `name` (serving on `addr`): stderr, and
/// stdout unless `stdout` names a file for it, appended to `log`.
fn spawn(
    name: &str,
    binary: &str,
    args: &[String],
    log: &Path,
    stdout: Option<&Path>,
    addr: String,
) -> Result<Child_, String> {
    let mut c = Child_ {
        name: name.to_string(),
        binary: binary.to_string(),
        args: args.to_vec(),
        log: log.to_path_buf(),
        stdout: stdout.map(Path::to_path_buf),
        addr,
        child: None,
        serving: true,
        exited_at: None,
        restart_at: None,
        restarts: Vec::new(),
    };
    c.start(true)?;
    Ok(c)
}

/// `line` without ANSI escape sequences (ESC [ ... final byte).
/// Writes `certs/dashboard-client.p12` (the cluster client certificate,
/// its key and the CA; password in `dashboard-client.p12.password`, mode
/// 0600) with the `openssl` tool, once; returns how to sign in to PD's
/// dashboard. Without `openssl` it says how to make the bundle.
fn dashboard_sign_in(certs: &Path) -> String {
    let p12 = certs.join("dashboard-client.p12");
    let pw_file = certs.join("dashboard-client.p12.password");
    let c = |f: &str| certs.join(f).display().to_string();
    let trust = format!(
        "; trust {} as a certificate authority for websites",
        c("ca.pem")
    );
    if p12.exists() && pw_file.exists() {
        return format!(
            "import {} into the browser (password in {}){trust}",
            p12.display(),
            pw_file.display()
        );
    }
    let mut raw = [0u8; 12];
    let random = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut raw));
    let password: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let written = random.is_ok() && {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(&pw_file)
            .and_then(|mut f| f.write_all(password.as_bytes()))
            .is_ok()
    };
    let made = written
        && Command::new("openssl")
            .args(["pkcs12", "-export", "-name", "tiox dashboard", "-in"])
            .arg(c("client.pem"))
            .arg("-inkey")
            .arg(c("client-key.pem"))
            .arg("-certfile")
            .arg(c("ca.pem"))
            .arg("-out")
            .arg(&p12)
            .arg("-passout")
            .arg(format!("file:{}", pw_file.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    if made {
        format!(
            "import {} into the browser (password in {}){trust}",
            p12.display(),
            pw_file.display()
        )
    } else {
        let _ = std::fs::remove_file(&pw_file);
        format!(
            "make a PKCS#12 bundle with `openssl pkcs12 -export -in {} -inkey {} -certfile {} -out {}` \
             (the openssl tool was not found or failed), import it into the browser{trust}",
            c("client.pem"),
            c("client-key.pem"),
            c("ca.pem"),
            p12.display()
        )
    }
}

fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(ch) = chars.next() {
        if ch != '\x1b' {
            out.push(ch);
            continue;
        }
        if chars.next() == Some('[') {
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        }
    }
    out
}

/// The last `n` lines of a log file.
fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Whether a server's exit is a failure, as systemd's `Restart=on-failure`
/// counts them: a non-zero exit status, or a signal other than those that
/// ask a process to stop (SIGHUP, SIGINT, SIGTERM, SIGPIPE).
fn failed(status: std::process::ExitStatus) -> bool {
    use std::os::unix::process::ExitStatusExt;
    match status.signal() {
        Some(sig) => ![libc::SIGHUP, libc::SIGINT, libc::SIGTERM, libc::SIGPIPE].contains(&sig),
        None => !status.success(),
    }
}

/// Log lines indented under a message, without the colour escapes the
/// servers' loggers write.
fn indent(text: &str) -> String {
    if text.is_empty() {
        return "    (empty)".into();
    }
    text.lines()
        .map(|l| format!("    | {}", strip_ansi(l)))
        .collect::<Vec<_>>()
        .join("\n")
}

async fn wait_for<F, Fut>(
    what: &str,
    running: &mut Running,
    logs: &[PathBuf],
    mut check: F,
) -> Result<(), String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    let spinner = ['|', '/', '-', '\\'];
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut i = 0;
    loop {
        if STOP.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(format!("{what}: interrupted"));
        }
        if check().await {
            let cr = if tty { "\r" } else { "" };
            eprintln!(
                "{cr}  {what}: ready in {:.1}s   ",
                start.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        if let Err(e) = running.check_alive() {
            let detail: Vec<String> = logs
                .iter()
                .map(|l| format!("--- {} ---\n{}", l.display(), tail(l, 15)))
                .collect();
            return Err(format!("{what}: {e}\n{}", detail.join("\n")));
        }
        if start.elapsed() > Duration::from_secs(90) {
            let detail: Vec<String> = logs
                .iter()
                .map(|l| format!("--- {} ---\n{}", l.display(), tail(l, 15)))
                .collect();
            return Err(format!(
                "{what}: not ready after 90 s; the last lines of the logs:\n{}",
                detail.join("\n")
            ));
        }
        if tty {
            eprint!(
                "\r  {what}: waiting {} {:.0}s ",
                spinner[i % 4],
                start.elapsed().as_secs_f64()
            );
        } else if i > 0 && i % 20 == 0 {
            eprintln!(
                "  {what}: still waiting ({:.0}s)",
                start.elapsed().as_secs_f64()
            );
        }
        i += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn pick_ports(n: usize, saved: &[(u16, u16)]) -> Vec<(u16, u16)> {
    (0..n)
        .map(|i| {
            saved
                .get(i)
                .copied()
                .unwrap_or_else(|| (free_port(), free_port()))
        })
        .collect()
}

/// Runs the playground; returns the exit code.
pub async fn run(a: PlaygroundArgs) -> i32 {
    match run_inner(a).await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("\ntiox playground: {e}");
            1
        }
    }
}

async fn run_inner(a: PlaygroundArgs) -> Result<(), String> {
    let stop_signal = watch_signals()?;
    if a.pd == 0 || a.kv == 0 {
        return Err("--pd and --kv must be at least 1".into());
    }
    let dir = match &a.data_dir {
        Some(d) => d.clone(),
        None => PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| ".".into()))
            .join(".tiox/playground")
            .join(&a.tag),
    };
    std::fs::create_dir_all(dir.join("logs")).map_err(|e| format!("{}: {e}", dir.display()))?;
    let tls = !a.insecure_for_benchmarks;
    let topo_path = dir.join("topology.json");
    let saved: Topology = std::fs::read(&topo_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    if topo_path.exists() && saved.tls != tls {
        return Err(format!(
            "{} was created {} TLS; start it the same way, or use another --tag",
            dir.display(),
            if saved.tls { "with" } else { "without" }
        ));
    }
    let topo = Topology {
        tls,
        pd: pick_ports(a.pd, &saved.pd),
        kv: pick_ports(a.kv, &saved.kv),
        db: pick_ports(a.db, &saved.db),
    };
    std::fs::write(
        &topo_path,
        serde_json::to_vec_pretty(&topo).unwrap_or_default(),
    )
    .map_err(|e| e.to_string())?;

    eprintln!(
        "tiox playground: {} PD, {} TiKV, {} TiDB in {}",
        a.pd,
        a.kv,
        a.db,
        dir.display()
    );
    let certs = dir.join("certs");
    if tls {
        if !certs.join("ca.pem").exists() {
            init_dir(
                &certs,
                &InitOptions {
                    hosts: vec!["127.0.0.1".into(), "localhost".into()],
                    days: 365,
                    key_type: Default::default(),
                    force: false,
                },
            )
            .map_err(|e| e.to_string())?;
            eprintln!(
                "  certificates: created in {} (cluster CA and a separate MySQL CA)",
                certs.display()
            );
        } else {
            eprintln!("  certificates: reusing {}", certs.display());
        }
    } else {
        eprintln!("  !!! --insecure-for-benchmarks: EVERY LINK IS PLAINTEXT. Use this only to measure what TLS costs. !!!");
    }
    let c = |f: &str| certs.join(f).display().to_string();
    let scheme = if tls { "https" } else { "http" };
    let mut running = Running {
        children: Vec::new(),
        stopped: false,
    };

    // PD.
    let initial: Vec<String> = topo
        .pd
        .iter()
        .enumerate()
        .map(|(i, (_, peer))| format!("pd-{i}={scheme}://127.0.0.1:{peer}"))
        .collect();
    let mut pd_logs = Vec::new();
    for (i, (client, peer)) in topo.pd.iter().enumerate() {
        let mut args = vec![
            "--name".into(),
            format!("pd-{i}"),
            "--data-dir".into(),
            dir.join(format!("pd-{i}")).display().to_string(),
            "--client-urls".into(),
            format!("{scheme}://127.0.0.1:{client}"),
            "--peer-urls".into(),
            format!("{scheme}://127.0.0.1:{peer}"),
            "--initial-cluster".into(),
            initial.join(","),
        ];
        if tls {
            args.extend([
                "--cacert".into(),
                c("ca.pem"),
                "--cert".into(),
                c("pd-server.pem"),
                "--key".into(),
                c("pd-server-key.pem"),
            ]);
        } else {
            args.push("--insecure".into());
        }
        let log = dir.join(format!("logs/pd-{i}.log"));
        running.children.push(spawn(
            &format!("pd-{i}"),
            "pd-server",
            &args,
            &log,
            None,
            format!("127.0.0.1:{client}"),
        )?);
        pd_logs.push(log);
    }
    let client_tls = if tls {
        let s = SecurityConfig::from_paths(&c("ca.pem"), &c("client.pem"), &c("client-key.pem"))
            .validate(Component::Tiox)
            .map_err(|e| e.to_string())?
            .ok_or("no TLS settings")?;
        Some(std::sync::Arc::new(
            ClientTls::new(s).map_err(|e| e.to_string())?,
        ))
    } else {
        None
    };
    let pd0 = format!("127.0.0.1:{}", topo.pd[0].0);
    eprintln!("[1/4] starting {} PD", a.pd);
    wait_for("PD", &mut running, &pd_logs, || {
        let (pd0, t) = (pd0.clone(), client_tls.clone());
        async move { matches!(http_get(&pd0, "/pd/api/v1/leader", t).await, Ok((200, _))) }
    })
    .await?;

    // TiKV.
    let pd_urls: Vec<String> = topo
        .pd
        .iter()
        .map(|(client, _)| format!("{scheme}://127.0.0.1:{client}"))
        .collect();
    let mut kv_logs = Vec::new();
    for (i, (port, status)) in topo.kv.iter().enumerate() {
        let mut args = vec![
            "--addr".into(),
            format!("127.0.0.1:{port}"),
            "--status-addr".into(),
            format!("127.0.0.1:{status}"),
            "--pd".into(),
            pd_urls.join(","),
            "--data-dir".into(),
            dir.join(format!("kv-{i}")).display().to_string(),
        ];
        if tls {
            args.extend([
                "--ca-path".into(),
                c("ca.pem"),
                "--cert-path".into(),
                c("tikv-server.pem"),
                "--key-path".into(),
                c("tikv-server-key.pem"),
            ]);
        } else {
            args.push("--insecure".into());
        }
        let log = dir.join(format!("logs/kv-{i}.log"));
        running.children.push(spawn(
            &format!("kv-{i}"),
            "tikv-server",
            &args,
            &log,
            None,
            format!("127.0.0.1:{port}"),
        )?);
        kv_logs.push(log);
    }
    eprintln!("[2/4] starting {} TiKV", a.kv);
    let want = a.kv;
    wait_for("TiKV", &mut running, &kv_logs, || {
        let (pd0, t) = (pd0.clone(), client_tls.clone());
        async move {
            // Ask the PD leader (followers only point at it).
            let Ok((200, leader)) = http_get(&pd0, "/pd/api/v1/leader", t.clone()).await else {
                return false;
            };
            let Some(addr) = serde_json::from_str::<serde_json::Value>(&leader)
                .ok()
                .and_then(|v| {
                    v["client_urls"][0]
                        .as_str()
                        .map(|u| u.split("://").last().unwrap_or(u).to_string())
                })
            else {
                return false;
            };
            let Ok((200, stores)) = http_get(&addr, "/pd/api/v1/stores", t.clone()).await else {
                return false;
            };
            let up = stores.matches("\"state_name\":\"Up\"").count();
            // Every region led, with all its voters (PD adds them up to
            // max-replicas, one per store) and none of them down or behind:
            // until then, losing one store can leave a region without a
            // quorum.
            let max = match http_get(&addr, "/pd/api/v1/config", t.clone()).await {
                Ok((200, body)) => serde_json::from_str::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v["replication"]["max-replicas"].as_u64()),
                _ => None,
            }
            .unwrap_or(3) as usize;
            let Ok((200, regions)) = http_get(&addr, "/pd/api/v1/regions", t).await else {
                return false;
            };
            let Ok(regions) = serde_json::from_str::<serde_json::Value>(&regions) else {
                return false;
            };
            let Some(regions) = regions["regions"].as_array().filter(|r| !r.is_empty()) else {
                return false;
            };
            let voters = want.min(max);
            up >= want
                && regions.iter().all(|r| {
                    let none = |k: &str| r[k].as_array().is_none_or(|a| a.is_empty());
                    r["leader"].is_object()
                        && none("down_peers")
                        && none("pending_peers")
                        && r["peers"].as_array().is_some_and(|p| {
                            p.iter().filter(|p| p["role_name"] == "Voter").count() >= voters
                        })
                })
        }
    })
    .await?;

    // TiDB.
    let mut db_logs = Vec::new();
    let mut password: Option<String> = std::fs::read_to_string(dir.join("root-password"))
        .ok()
        .map(|s| s.trim().to_string());
    for (i, (port, status)) in topo.db.iter().enumerate() {
        let data = dir.join(format!("tidb-{i}"));
        // The accounts live in the cluster: only the first TiDB of a new
        // playground initializes them.
        let first = i == 0 && !dir.join("root-password").exists();
        let mut args = vec![
            "-P".into(),
            port.to_string(),
            "--host".into(),
            "127.0.0.1".into(),
            "--status".into(),
            status.to_string(),
            "--status-host".into(),
            "127.0.0.1".into(),
            // TiDB is a client of PD and TiKV over mutual TLS; its tables,
            // schema and accounts live in the cluster.
            "--store".into(),
            "tikv".into(),
            "--path".into(),
            topo.pd
                .iter()
                .map(|(client, _)| format!("127.0.0.1:{client}"))
                .collect::<Vec<_>>()
                .join(","),
            "--data-dir".into(),
            data.display().to_string(),
        ];
        if tls {
            args.extend([
                "--ssl-ca".into(),
                c("mysql/ca.pem"),
                "--ssl-cert".into(),
                c("mysql/server.pem"),
                "--ssl-key".into(),
                c("mysql/server-key.pem"),
                "--cluster-ssl-ca".into(),
                c("ca.pem"),
                "--cluster-ssl-cert".into(),
                c("tidb-server.pem"),
                "--cluster-ssl-key".into(),
                c("tidb-server-key.pem"),
            ]);
        } else {
            args.push("--insecure".into());
        }
        if first {
            args.push("--initialize-secure".into());
        }
        let log = dir.join(format!("logs/tidb-{i}.log"));
        let out = dir.join(format!("tidb-{i}.stdout"));
        running.children.push(spawn(
            &format!("tidb-{i}"),
            "tidb-server",
            &args,
            &log,
            Some(&out),
            format!("127.0.0.1:{port}"),
        )?);
        db_logs.push(log);
        if first {
            // The generated password is printed once on the server's stdout.
            for _ in 0..100 {
                let text = std::fs::read_to_string(&out).unwrap_or_default();
                if let Some(p) = text.lines().find_map(|l| {
                    l.split_once("for root@'%': ")
                        .map(|(_, p)| p.trim().to_string())
                }) {
                    use std::io::Write;
                    use std::os::unix::fs::OpenOptionsExt;
                    let mut f = std::fs::OpenOptions::new()
                        .create(true)
                        .write(true)
                        .truncate(true)
                        .mode(0o600)
                        .open(dir.join("root-password"))
                        .map_err(|e| e.to_string())?;
                    let _ = f.write_all(p.as_bytes());
                    password = Some(p);
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    if a.db > 0 {
        eprintln!("[3/4] starting {} TiDB", a.db);
        let ports: Vec<u16> = topo.db.iter().map(|(p, _)| *p).collect();
        wait_for("TiDB", &mut running, &db_logs, || {
            let ports = ports.clone();
            async move {
                for p in ports {
                    if tokio::net::TcpStream::connect(("127.0.0.1", p))
                        .await
                        .is_err()
                    {
                        return false;
                    }
                }
                true
            }
        })
        .await?;
    }

    // How to connect.
    eprintln!("[4/4] the cluster is up\n");
    let mut out = BTreeMap::new();
    if let Some((port, _)) = topo.db.first() {
        let mysql = if tls {
            format!("mysql --host 127.0.0.1 --port {port} -u root -p --ssl-ca {} --ssl-verify-server-cert", c("mysql/ca.pem"))
        } else {
            format!("mysql --host 127.0.0.1 --port {port} -u root -p")
        };
        out.insert("1 MySQL", mysql);
        if tls {
            out.insert(
                "2 MySQL, mutual TLS",
                format!("mysql --host 127.0.0.1 --port {port} -u root -p --ssl-ca {} --ssl-cert {} --ssl-key {}", c("mysql/ca.pem"), c("mysql/client.pem"), c("mysql/client-key.pem")),
            );
        }
    }
    let ctl_tls = |pd: bool| {
        if !tls {
            String::new()
        } else if pd {
            format!(
                " --cacert {} --cert {} --key {}",
                c("ca.pem"),
                c("client.pem"),
                c("client-key.pem")
            )
        } else {
            format!(
                " --ca-path {} --cert-path {} --key-path {}",
                c("ca.pem"),
                c("client.pem"),
                c("client-key.pem")
            )
        }
    };
    out.insert(
        "3 pd-ctl",
        format!("pd-ctl -u {} store{}", pd_urls.join(","), ctl_tls(true)),
    );
    out.insert(
        "4 tikv-ctl",
        format!(
            "tikv-ctl --host 127.0.0.1:{}{} store",
            topo.kv[0].0,
            ctl_tls(false)
        ),
    );
    if tls {
        out.insert("5 dashboard", format!("{}/dashboard/", pd_urls[0]));
        out.insert("6 dashboard sign-in", dashboard_sign_in(&certs));
    }
    for (k, v) in &out {
        println!("{:<22} {v}", &k[2..]);
    }
    match &password {
        Some(p) if a.db > 0 => println!(
            "{:<22} {p}  (kept in {}, mode 0600)",
            "root password",
            dir.join("root-password").display()
        ),
        _ => {}
    }
    println!("{:<22} {}", "logs", dir.join("logs").display());
    if a.exit_when_ready {
        running.stop_now();
        return Ok(());
    }
    println!("\nPress Ctrl-C to stop the cluster; start it again with the same command to reuse its data.");
    while !STOP.load(std::sync::atomic::Ordering::SeqCst) {
        tokio::select! {
            _ = stop_signal.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(500)) => {
                if let Err(e) = running.supervise(a.restart_on_failure).await {
                    eprintln!("\ntiox playground: {e}; stopping (see the logs in {})", dir.join("logs").display());
                    running.stop();
                    return Err(e);
                }
            }
        }
    }
    eprintln!("\nstopping...");
    running.stop();
    eprintln!("stopped");
    Ok(())
}

impl Running {
    fn stop_now(&mut self) {
        self.stop();
    }
}
