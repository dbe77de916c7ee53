//! `tiox playground`: from nothing to a running 3 PD + 3 TiKV + 1 TiDB
//! cluster with mutual TLS on every link, printing commands that work; a
//! second start reuses the data, the certificates and the password.

use std::process::Command;

fn sibling(name: &str) -> std::path::PathBuf {
    let mut p = std::env::current_exe().unwrap();
    p.pop();
    if p.ends_with("deps") {
        p.pop();
    }
    p.join(name)
}

fn playground(dir: &std::path::Path) -> (bool, String, String) {
    let out = Command::new(sibling("tiox"))
        .args([
            "playground",
            "--exit-when-ready",
            "--data-dir",
            dir.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// Runs a printed command line (its first word is one of our binaries).
fn run_printed(line: &str) -> (bool, String) {
    let words: Vec<&str> = line.split_whitespace().collect();
    let out = Command::new(sibling(words[0]))
        .args(&words[1..])
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn printed(stdout: &str, label: &str) -> String {
    stdout
        .lines()
        .find(|l| l.starts_with(label))
        .map(|l| l[22..].trim().to_string())
        .unwrap_or_else(|| panic!("no \"{label}\" line in:\n{stdout}"))
}

#[test]
fn playground_starts_a_mutual_tls_cluster_and_prints_working_commands() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, stdout, stderr) = playground(dir.path());
    assert!(ok, "{stdout}\n{stderr}");
    assert!(
        stderr.contains("[1/4] starting 3 PD")
            && stderr.contains("[2/4] starting 3 TiKV")
            && stderr.contains("[3/4] starting 1 TiDB"),
        "{stderr}"
    );
    assert!(
        dir.path().join("certs/ca.pem").exists() && dir.path().join("certs/mysql/ca.pem").exists()
    );
    let mysql = printed(&stdout, "MySQL ");
    assert!(
        mysql.contains("--ssl-ca") && mysql.contains("mysql/ca.pem"),
        "{mysql}"
    );
    // The dashboard: its URL, and the browser bundle (made with the
    // openssl tool) holding the cluster's client certificate.
    let dashboard = printed(&stdout, "dashboard ");
    assert!(
        dashboard.starts_with("https://127.0.0.1:") && dashboard.ends_with("/dashboard/"),
        "{stdout}"
    );
    let sign_in = printed(&stdout, "dashboard sign-in");
    assert!(sign_in.contains("ca.pem"), "{sign_in}");
    let p12 = dir.path().join("certs/dashboard-client.p12");
    if Command::new("openssl").arg("version").output().is_ok() {
        assert!(sign_in.contains("import") && p12.exists(), "{sign_in}");
        let pw = dir.path().join("certs/dashboard-client.p12.password");
        let out = Command::new("openssl")
            .args(["pkcs12", "-nokeys", "-in"])
            .arg(&p12)
            .arg("-passin")
            .arg(format!("file:{}", pw.display()))
            .output()
            .unwrap();
        let certs = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && certs.matches("BEGIN CERTIFICATE").count() == 2,
            "{certs}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    } else {
        assert!(sign_in.contains("openssl pkcs12 -export"), "{sign_in}");
    }
    let password = printed(&stdout, "root password");
    assert!(
        password
            .split_whitespace()
            .next()
            .is_some_and(|p| p.len() >= 8),
        "{password}"
    );

    // The printed MySQL command works (over TLS, verifying the server), with
    // the printed password; the account lives in the cluster.
    let client = ["mariadb", "mysql"].into_iter().find(|c| {
        Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    match client {
        None if std::env::var("CI").is_ok() => panic!("no mysql client but CI is set"),
        None => eprintln!("SKIPPED the MySQL part: no mariadb/mysql client installed"),
        Some(bin) => {
            // A second, running playground is needed for a login: start it,
            // log in, stop it.
            let err_path = dir.path().join("second-start.stderr");
            let mut child = Command::new(sibling("tiox"))
                .args(["playground", "--data-dir", dir.path().to_str().unwrap()])
                .stdout(std::process::Stdio::piped())
                .stderr(std::fs::File::create(&err_path).unwrap())
                .spawn()
                .unwrap();
            let out = child.stdout.take().unwrap();
            let mut text = String::new();
            for line in std::io::BufRead::lines(std::io::BufReader::new(out)) {
                let line = line.unwrap();
                text.push_str(&line);
                text.push('\n');
                if line.starts_with("logs") {
                    break;
                }
            }
            if !text.contains("MySQL ") {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the second start printed no MySQL line:\n{text}\nits stderr:\n{}",
                    std::fs::read_to_string(&err_path).unwrap_or_default()
                );
            }
            let line = printed(&text, "MySQL ");
            let pw = password.split_whitespace().next().unwrap();
            let words: Vec<&str> = line
                .split_whitespace()
                .skip(1)
                .filter(|w| *w != "-p")
                .collect();
            let r = Command::new(bin)
                .args(&words)
                .arg(format!("--password={pw}"))
                .args([
                    "--batch",
                    "-e",
                    "SELECT CURRENT_USER(); SHOW STATUS LIKE 'Ssl_version'",
                ])
                .output()
                .unwrap();
            // SAFETY: kill(2) on our own child's pid (Ctrl-C).
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGINT);
            }
            let _ = child.wait();
            let out = String::from_utf8_lossy(&r.stdout);
            assert!(
                r.status.success() && out.contains("root@%") && out.contains("TLSv1."),
                "{line}\n{out}\n{}",
                String::from_utf8_lossy(&r.stderr)
            );
        }
    }

    // Second start: same certificates, same data, same password.
    let ca_before = std::fs::read(dir.path().join("certs/ca.pem")).unwrap();
    let (ok, stdout2, stderr2) = playground(dir.path());
    assert!(ok, "{stdout2}\n{stderr2}");
    assert!(stderr2.contains("reusing"), "{stderr2}");
    assert_eq!(
        ca_before,
        std::fs::read(dir.path().join("certs/ca.pem")).unwrap()
    );
    assert_eq!(
        printed(&stdout2, "root password").split_whitespace().next(),
        password.split_whitespace().next()
    );
}

#[test]
fn playground_prints_ctl_commands_that_work_and_ctrl_c_stops_everything() {
    let dir = tempfile::tempdir().unwrap();
    // Ctrl-C is SIGINT to the playground; it stops its servers itself.
    let mut child = Command::new(sibling("tiox"))
        .args([
            "playground",
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--pd",
            "1",
            "--kv",
            "1",
            "--db",
            "0",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    // On a failed assertion, still stop the playground (and so its servers).
    struct Guard(libc::pid_t);
    impl Drop for Guard {
        fn drop(&mut self) {
            // SAFETY: kill(2) on our own child's pid.
            unsafe {
                libc::kill(self.0, libc::SIGINT);
            }
            std::thread::sleep(std::time::Duration::from_secs(6));
        }
    }
    let guard = Guard(pid);
    let stdout = child.stdout.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
    let mut text = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        text.push_str(&line);
        text.push('\n');
        if line.starts_with("logs") {
            break;
        }
    }
    let pd_ctl = printed(&text, "pd-ctl");
    let tikv_ctl = printed(&text, "tikv-ctl");
    let (ok, out) = run_printed(&pd_ctl);
    assert!(ok && out.contains("\"state_name\""), "{pd_ctl}\n{out}");
    let (ok, out) = run_printed(&tikv_ctl);
    assert!(ok && out.contains("\"store_id\""), "{tikv_ctl}\n{out}");

    // Ctrl-C.
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    std::mem::forget(guard);
    let started = std::time::Instant::now();
    let exit = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "the playground did not stop within 20 s of Ctrl-C"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(exit.success(), "{stderr}");
    assert!(
        stderr.contains("stopped") && !stderr.contains("killed after"),
        "servers exit on Ctrl-C by themselves: {stderr}"
    );
}

/// A `tiox playground` running in its own process group, its stdout and
/// stderr collected as they come; on drop the whole group (the playground
/// and every server it started or restarted) is killed, then the data
/// directory removed.
struct Live {
    child: std::process::Child,
    stdout: std::sync::Arc<std::sync::Mutex<String>>,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
    // Dropped after `Drop::drop` has killed the servers using it.
    dir: tempfile::TempDir,
}

impl Live {
    fn start(extra: &[&str]) -> Live {
        use std::os::unix::process::CommandExt;
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(sibling("tiox"))
            .args(["playground", "--data-dir", dir.path().to_str().unwrap()])
            .args(extra)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap();
        fn collect(
            from: impl std::io::Read + Send + 'static,
        ) -> std::sync::Arc<std::sync::Mutex<String>> {
            let text = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
            let t = text.clone();
            std::thread::spawn(move || {
                for line in std::io::BufRead::lines(std::io::BufReader::new(from)) {
                    let Ok(line) = line else { break };
                    let mut t = t.lock().unwrap();
                    t.push_str(&line);
                    t.push('\n');
                }
            });
            text
        }
        let stdout = collect(child.stdout.take().unwrap());
        let stderr = collect(child.stderr.take().unwrap());
        let live = Live {
            child,
            stdout,
            stderr,
            dir,
        };
        live.wait_for_stdout("logs", std::time::Duration::from_secs(240));
        live
    }

    fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn output(&self) -> String {
        format!(
            "--- stdout ---\n{}\n--- stderr ---\n{}",
            self.stdout(),
            self.stderr()
        )
    }

    fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    fn wait_until(
        &mut self,
        what: &str,
        timeout: std::time::Duration,
        done: impl Fn(&Live) -> bool,
    ) {
        let start = std::time::Instant::now();
        while !done(self) {
            assert!(
                self.running(),
                "the playground exited while waiting for {what}:\n{}",
                self.output()
            );
            assert!(
                start.elapsed() < timeout,
                "no {what} within {timeout:?}:\n{}",
                self.output()
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }

    fn wait_for_stdout(&self, line_start: &str, timeout: std::time::Duration) {
        let start = std::time::Instant::now();
        while !self.stdout().lines().any(|l| l.starts_with(line_start)) {
            assert!(
                start.elapsed() < timeout,
                "no \"{line_start}\" line within {timeout:?}:\n{}",
                self.output()
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }

    /// The pid of the playground's server `name` (`kv-1`, `tidb-0`): its
    /// child whose `--data-dir` is `DATA_DIR/name` (found in /proc, so that
    /// only this playground's servers can match).
    fn server_pid(&self, name: &str) -> u32 {
        let want = self.dir.path().join(name).display().to_string();
        let parent = self.child.id();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            // pid (comm) state ppid ...: comm may hold spaces, so split after ')'.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            if ppid != Some(parent) {
                continue;
            }
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            if args
                .windows(2)
                .any(|w| w[0] == b"--data-dir" && w[1] == want.as_bytes())
            {
                return pid;
            }
        }
        panic!("no server {name} under pid {parent}:\n{}", self.output());
    }

    /// Runs the printed pd-ctl command with `cmd` instead of `store`.
    fn pd_ctl(&self, cmd: &str) -> serde_json::Value {
        let line = printed(&self.stdout(), "pd-ctl").replacen(" store ", &format!(" {cmd} "), 1);
        let (ok, out) = run_printed(&line);
        assert!(ok, "{line}\n{out}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{line}: {e}\n{out}"))
    }

    /// The name (`kv-N`) of the store leading the first region, after
    /// checking that the region has 3 voters, none down or pending.
    fn kv_leading_a_region(&self) -> String {
        let regions = self.pd_ctl("region");
        let r = &regions["regions"][0];
        let voters = r["peers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["role_name"] == "Voter")
            .count();
        assert!(
            voters == 3
                && r["down_peers"].as_array().is_none_or(|a| a.is_empty())
                && r["pending_peers"].as_array().is_none_or(|a| a.is_empty()),
            "the playground said ready before the region had 3 healthy voters: {r:#}"
        );
        let leader = &r["leader"]["store_id"];
        let stores = self.pd_ctl("store");
        let addr = stores["stores"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| &s["store"]["id"] == leader)
            .and_then(|s| s["store"]["address"].as_str())
            .unwrap_or_else(|| panic!("no store {leader} in {stores:#}"))
            .to_string();
        let topo: serde_json::Value =
            serde_json::from_slice(&std::fs::read(self.dir.path().join("topology.json")).unwrap())
                .unwrap();
        let i = topo["kv"]
            .as_array()
            .unwrap()
            .iter()
            .position(|p| addr == format!("127.0.0.1:{}", p[0]))
            .unwrap_or_else(|| panic!("{addr} is not in {topo}"));
        format!("kv-{i}")
    }

    /// MySQL options for root over TLS (verifying the server against the
    /// playground's MySQL CA), from the printed command and password.
    fn mysql_opts(&self) -> mysql_async::Opts {
        let out = self.stdout();
        let line = printed(&out, "MySQL ");
        let words: Vec<&str> = line.split_whitespace().collect();
        let port: u16 = words
            .iter()
            .position(|w| *w == "--port")
            .and_then(|i| words.get(i + 1))
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no --port in {line}"));
        let password = printed(&out, "root password")
            .split_whitespace()
            .next()
            .unwrap()
            .to_string();
        let ca = self.dir.path().join("certs/mysql/ca.pem");
        mysql_async::OptsBuilder::default()
            .ip_or_hostname("127.0.0.1")
            .tcp_port(port)
            .prefer_socket(false)
            .user(Some("root"))
            .pass(Some(password))
            .ssl_opts(Some(
                mysql_async::SslOpts::default().with_root_certs(vec![ca.into()]),
            ))
            .into()
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the process group our child leads
        // (process_group(0)): the playground and its servers only.
        unsafe {
            libc::kill(-(self.child.id() as libc::pid_t), libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

/// SIGKILL to one server of ours, by pid.
fn sigkill(pid: u32) {
    // SAFETY: kill(2) on a pid just read as a child of our playground.
    assert_eq!(unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) }, 0);
}

/// Runs `stmts` on a new connection and returns the first column of the
/// last statement's first row; retried until it succeeds or `timeout`
/// passes (a region may be electing a leader after a store died).
fn sql_until_ok(opts: &mysql_async::Opts, stmts: &[&str], timeout: std::time::Duration) -> String {
    use mysql_async::prelude::Queryable;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let start = std::time::Instant::now();
    loop {
        let attempt = rt.block_on(async {
            let mut conn = mysql_async::Conn::new(opts.clone()).await?;
            let mut last = None;
            for s in stmts {
                last = conn.query_first::<String, _>(*s).await?;
            }
            let _ = conn.disconnect().await;
            Ok::<_, mysql_async::Error>(last.unwrap_or_default())
        });
        match attempt {
            Ok(v) => return v,
            Err(e) if start.elapsed() < timeout => {
                eprintln!("{stmts:?}: {e}; retrying");
                std::thread::sleep(std::time::Duration::from_millis(500));
            }
            Err(e) => panic!("{stmts:?}: {e} (for {timeout:?})"),
        }
    }
}

#[test]
fn playground_keeps_running_when_the_leading_store_is_killed_and_names_it() {
    // 3 stores, 3 replicas: losing one leaves a quorum for every region.
    let mut p = Live::start(&["--pd", "1", "--kv", "3", "--db", "1"]);
    let opts = p.mysql_opts();
    let minute = std::time::Duration::from_secs(60);
    sql_until_ok(
        &opts,
        &[
            "CREATE DATABASE IF NOT EXISTS pg",
            "CREATE TABLE IF NOT EXISTS pg.t (id INT PRIMARY KEY, v INT)",
            "INSERT IGNORE INTO pg.t VALUES (1, 10), (2, 20), (3, 30)",
            "SELECT COUNT(*) FROM pg.t",
        ],
        minute,
    );

    // The store leading the region (the one whose loss needs a new leader).
    let kv = p.kv_leading_a_region();
    let pid = p.server_pid(&kv);
    sigkill(pid);
    let said = format!("{kv} (pid {pid}) exited (signal: 9 (SIGKILL))");
    p.wait_until("the death report", minute, |p| p.stderr().contains(&said));
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert!(p.running(), "{}", p.output());
    let err = p.stderr();
    assert!(
        err.contains(&format!("{kv}: not restarted"))
            && err.contains("the other 4 servers keep running"),
        "{err}"
    );
    assert!(err.contains(&format!("logs/{kv}.log")), "{err}");

    // The other two stores serve every region: reads and writes work.
    let n = sql_until_ok(
        &opts,
        &[
            "INSERT IGNORE INTO pg.t VALUES (4, 40)",
            "SELECT COUNT(*) FROM pg.t",
        ],
        minute,
    );
    assert_eq!(n, "4", "{}", p.output());
    assert!(p.running(), "{}", p.output());
    // The other servers are still the ones started first.
    for name in ["pd-0", "kv-0", "kv-1", "kv-2", "tidb-0"] {
        if name != kv {
            p.server_pid(name);
        }
    }
}

#[test]
fn playground_restart_on_failure_brings_a_killed_server_back() {
    // One store: while it is down nothing is served, so serving again
    // afterwards shows the restarted store (same port, same data) is back.
    let mut p = Live::start(&[
        "--pd",
        "1",
        "--kv",
        "1",
        "--db",
        "1",
        "--restart-on-failure",
    ]);
    let opts = p.mysql_opts();
    let minute = std::time::Duration::from_secs(60);
    sql_until_ok(
        &opts,
        &[
            "CREATE DATABASE IF NOT EXISTS pg",
            "CREATE TABLE IF NOT EXISTS pg.t (id INT PRIMARY KEY, v INT)",
            "INSERT IGNORE INTO pg.t VALUES (1, 10), (2, 20)",
            "SELECT COUNT(*) FROM pg.t",
        ],
        minute,
    );

    for (round, name) in ["kv-0", "tidb-0"].into_iter().enumerate() {
        let pid = p.server_pid(name);
        sigkill(pid);
        let back = format!("{name} restarted: serving on 127.0.0.1:");
        p.wait_until(&format!("\"{back}\""), minute, |p| {
            p.stderr().contains(&back)
        });
        let err = p.stderr();
        assert!(
            err.contains(&format!("{name} (pid {pid}) exited (signal: 9 (SIGKILL))"))
                && err.contains(&format!(
                    "{name}: restarting it in 1 s (restart 1 of at most 5"
                )),
            "{err}"
        );
        let new_pid = p.server_pid(name);
        assert_ne!(new_pid, pid);
        // Same data: the rows written before are there, and it takes writes.
        let id = 3 + round;
        let n = sql_until_ok(
            &opts,
            &[
                &format!("INSERT IGNORE INTO pg.t VALUES ({id}, 0)"),
                "SELECT COUNT(*) FROM pg.t",
            ],
            minute,
        );
        assert_eq!(n, (id).to_string(), "{}", p.output());
        assert!(p.running(), "{}", p.output());
    }
}

#[test]
fn playground_stops_only_when_every_server_has_exited() {
    let mut p = Live::start(&["--pd", "1", "--kv", "1", "--db", "0"]);
    let minute = std::time::Duration::from_secs(60);
    let kv = p.server_pid("kv-0");
    sigkill(kv);
    let said = format!("kv-0 (pid {kv}) exited (signal: 9 (SIGKILL))");
    p.wait_until("the death report", minute, |p| p.stderr().contains(&said));
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert!(p.running(), "one server is left: {}", p.output());
    assert!(
        p.stderr().contains("the 1 other server keeps running"),
        "{}",
        p.output()
    );

    let pd = p.server_pid("pd-0");
    sigkill(pd);
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(s) = p.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < minute,
            "the playground kept running with no server: {}",
            p.output()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    // Its stderr reader may still be draining the last lines.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let err = p.stderr();
    assert!(!status.success(), "{err}");
    assert!(
        err.contains(&format!("pd-0 (pid {pd}) exited (signal: 9 (SIGKILL))"))
            && err.contains("no other server is running")
            && err.contains("every server has exited; stopping"),
        "{err}"
    );
}
