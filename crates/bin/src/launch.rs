//! Launching real clusters from the binaries next to the running program:
//! certificates made by the `tiox cert` logic, `pd-server` and
//! `tikv-server` started as child processes on ports chosen free at run
//! time, logs captured to files (their tails printed when a wait fails),
//! every process killed when the cluster drops. Used by the end-to-end
//! tests and the benchmarks.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tiox_security::certgen::{init_dir, InitOptions};
use tiox_security::{ClientTls, Component, SecurityConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A port that was free a moment ago, never handed out twice by this
/// process. Chosen below Linux's ephemeral range (32768+), so that outgoing
/// connections made meanwhile cannot take it before the server binds it,
/// from a start that differs per process.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 20000;
    const SPAN: u32 = 12000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    if NEXT.load(Ordering::Relaxed) == u32::MAX {
        let seed = std::process::id().wrapping_mul(7919)
            ^ std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
        let _ = NEXT.compare_exchange(u32::MAX, seed % SPAN, Ordering::Relaxed, Ordering::Relaxed);
    }
    for _ in 0..SPAN {
        let port = (LOW + NEXT.fetch_add(1, Ordering::Relaxed) % SPAN) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A child process, killed on drop.
pub struct Proc {
    /// Its name in messages.
    pub name: String,
    /// The child.
    pub child: Option<Child>,
    /// Its log file.
    pub log: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    bin: PathBuf,
    /// A command that runs the binary somewhere else (e.g. `ip netns exec
    /// NAME`); empty to run it directly.
    prefix: Vec<String>,
}

impl Proc {
    /// Starts `bin` with `args`, stderr and stdout to `log`.
    pub fn spawn(name: &str, bin: &Path, args: &[String], log: PathBuf) -> Proc {
        Self::spawn_in(&[], name, bin, args, log)
    }

    /// Like `spawn`, run through `prefix` (a command that execs its
    /// arguments, such as `ip netns exec NAME`, so that the child's pid is
    /// the binary's and a SIGKILL reaches it).
    pub fn spawn_in(
        prefix: &[String],
        name: &str,
        bin: &Path,
        args: &[String],
        log: PathBuf,
    ) -> Proc {
        let mut p = Proc {
            name: name.into(),
            child: None,
            log,
            args: args.to_vec(),
            bin: bin.to_path_buf(),
            prefix: prefix.to_vec(),
        };
        p.start();
        p
    }

    /// (Re)starts the process with the same arguments, appending to the log.
    pub fn start(&mut self) {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut cmd = match self.prefix.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(&self.bin);
                c
            }
            None => Command::new(&self.bin),
        };
        let child = cmd
            .args(&self.args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::from(file.try_clone().unwrap()))
            .stderr(Stdio::from(file))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.bin.display()));
        self.child = Some(child);
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The process id, if running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Peak resident memory (VmHWM) in bytes, if running.
    pub fn peak_rss_bytes(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The cluster's certificate files.
pub struct Certs {
    /// Directory.
    pub dir: PathBuf,
}

impl Certs {
    /// (Re)writes `crl.pem`, signed by the cluster CA, revoking the given
    /// certificate files (names inside the directory or paths); the
    /// servers reload it on their next handshake.
    pub fn write_crl(&self, revoked: &[&Path]) {
        use rustls_pki_types::pem::PemObject;
        let ca = tiox_security::certgen::CertAuthority::from_pem(
            &std::fs::read_to_string(self.dir.join("ca.pem")).unwrap(),
            &std::fs::read_to_string(self.dir.join("ca-key.pem")).unwrap(),
        )
        .unwrap();
        let ders: Vec<_> = revoked
            .iter()
            .map(|p| rustls_pki_types::CertificateDer::from_pem_file(self.dir.join(p)).unwrap())
            .collect();
        let pem = ca.revoke(&ders, None, 30).unwrap();
        let tmp = self.dir.join("crl.pem.tmp");
        std::fs::write(&tmp, pem).unwrap();
        std::fs::rename(&tmp, self.dir.join("crl.pem")).unwrap();
    }

    /// Makes a full set in `dir`.
    pub fn make(dir: &Path) -> Certs {
        Self::make_for_hosts(dir, &[])
    }

    /// Makes a full set in `dir` whose server certificates also name
    /// `hosts` (addresses or names) besides 127.0.0.1 and localhost.
    pub fn make_for_hosts(dir: &Path, hosts: &[String]) -> Certs {
        let mut all: Vec<String> = vec!["127.0.0.1".into(), "localhost".into()];
        all.extend(hosts.iter().cloned());
        init_dir(
            dir,
            &InitOptions {
                hosts: all,
                days: 30,
                key_type: Default::default(),
                force: false,
            },
        )
        .unwrap();
        Certs {
            dir: dir.to_path_buf(),
        }
    }

    /// A file's path as a string.
    pub fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    /// A client connector with the shared client certificate.
    pub fn client_tls(&self) -> Arc<ClientTls> {
        let settings = SecurityConfig::from_paths(
            &self.path("ca.pem"),
            &self.path("client.pem"),
            &self.path("client-key.pem"),
        )
        .validate(Component::Tiox)
        .unwrap()
        .unwrap();
        Arc::new(ClientTls::new(settings).unwrap())
    }
}

/// PD and TiKV processes.
pub struct Cluster {
    /// Scratch directory (data, logs, certificates), removed on drop.
    pub dir: tempfile::TempDir,
    /// Certificates (None for a plaintext cluster).
    pub certs: Option<Certs>,
    /// PD process.
    pub pd: Proc,
    /// PD client address (host:port).
    pub pd_addr: String,
    /// PD peer address (host:port); it listens only with
    /// [`Options::pd_raft`].
    pub pd_peer_addr: String,
    /// TiKV processes.
    pub kv: Vec<Proc>,
    /// TiKV gRPC addresses.
    pub kv_addrs: Vec<String>,
    /// TiKV status addresses.
    pub kv_status: Vec<String>,
    /// Extra TOML for every tikv-server (`--config`).
    pub kv_toml: Option<String>,
    /// Where the stores run ([`Options::kv_hosts`]).
    pub kv_hosts: Vec<Host>,
}

/// Where a process runs when it is not on loopback: the address it
/// listens on and advertises, and the command prefix that starts it there
/// (e.g. `ip netns exec NAME` for a network namespace).
#[derive(Clone, Debug)]
pub struct Host {
    /// Its IP address.
    pub ip: String,
    /// The prefix (see [`Proc::spawn_in`]).
    pub exec_prefix: Vec<String>,
}

/// How to start a [`Cluster`] beyond TLS and the number of stores.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// TOML given to every tikv-server (`--config`).
    pub kv_toml: Option<String>,
    /// TOML given to pd-server (`--config`).
    pub pd_toml: Option<String>,
    /// PD runs Raft (`--initial-cluster` naming itself), so its peer port
    /// listens.
    pub pd_raft: bool,
    /// The IP PD listens on (127.0.0.1 if None); it must be reachable
    /// from the stores and from this process.
    pub pd_ip: Option<String>,
    /// Store `i` runs on `kv_hosts[i]` (on 127.0.0.1, directly, past the
    /// end of the list). The certificates name every IP given here.
    pub kv_hosts: Vec<Host>,
    /// Write an empty revocation list `crl.pem` beside the certificates
    /// before the servers start (`{certs}` in `pd_toml`/`kv_toml` is the
    /// certificates' directory, so `crl-path = "{certs}/crl.pem"` works).
    pub crl: bool,
}

/// The path of a sibling binary (tests run from `target/*/deps`).
pub fn bin(name: &str) -> PathBuf {
    // Integration tests of this crate have its binaries built next to them.
    let mut p = std::env::current_exe().unwrap();
    p.pop();
    if p.ends_with("deps") {
        p.pop();
    }
    p.join(name)
}

impl Cluster {
    /// One PD and `n_kv` stores, mutual TLS everywhere if `tls`.
    pub async fn start(tls: bool, n_kv: usize) -> Cluster {
        Self::start_with(tls, n_kv, None).await
    }

    /// Like `start`, with a TOML file given to every tikv-server.
    pub async fn start_with(tls: bool, n_kv: usize, kv_toml: Option<&str>) -> Cluster {
        let opts = Options {
            kv_toml: kv_toml.map(str::to_string),
            ..Options::default()
        };
        Self::start_opts(tls, n_kv, &opts).await
    }

    /// Like `start`, with [`Options`].
    pub async fn start_opts(tls: bool, n_kv: usize, opts: &Options) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let ips: Vec<String> = opts
            .pd_ip
            .iter()
            .chain(opts.kv_hosts.iter().map(|h| &h.ip))
            .cloned()
            .collect();
        let certs = tls.then(|| Certs::make_for_hosts(&dir.path().join("certs"), &ips));
        if let (Some(c), true) = (&certs, opts.crl) {
            c.write_crl(&[]);
        }
        let certs_dir = certs
            .as_ref()
            .map(|c| c.dir.display().to_string())
            .unwrap_or_default();
        let fill = |t: &Option<String>| t.as_ref().map(|t| t.replace("{certs}", &certs_dir));
        let scheme = if tls { "https" } else { "http" };
        let pd_ip = opts.pd_ip.as_deref().unwrap_or("127.0.0.1");
        let pd_port = free_port();
        let pd_addr = format!("{pd_ip}:{pd_port}");
        let pd_peer_addr = format!("{pd_ip}:{}", free_port());
        let mut args = vec![
            "--name".into(),
            "pd1".into(),
            "--data-dir".into(),
            dir.path().join("pd1").display().to_string(),
            "--client-urls".into(),
            format!("{scheme}://{pd_addr}"),
            "--peer-urls".into(),
            format!("{scheme}://{pd_peer_addr}"),
        ];
        if opts.pd_raft {
            args.extend([
                "--initial-cluster".into(),
                format!("pd1={scheme}://{pd_peer_addr}"),
            ]);
        }
        if let Some(toml) = &fill(&opts.pd_toml) {
            let path = dir.path().join("pd1.toml");
            std::fs::write(&path, toml).unwrap();
            args.extend(["--config".into(), path.display().to_string()]);
        }
        if let Some(c) = &certs {
            args.extend([
                "--cacert".into(),
                c.path("ca.pem"),
                "--cert".into(),
                c.path("pd-server.pem"),
                "--key".into(),
                c.path("pd-server-key.pem"),
            ]);
        } else {
            // A plaintext test cluster, on purpose.
            args.push("--insecure".into());
        }
        let pd = Proc::spawn("pd1", &bin("pd-server"), &args, dir.path().join("pd1.log"));
        let mut cluster = Cluster {
            dir,
            certs,
            pd,
            pd_addr,
            pd_peer_addr,
            kv: Vec::new(),
            kv_addrs: Vec::new(),
            kv_status: Vec::new(),
            kv_toml: fill(&opts.kv_toml),
            kv_hosts: opts.kv_hosts.clone(),
        };
        for i in 0..n_kv {
            cluster.add_store(i);
        }
        cluster.wait_for_stores(n_kv).await;
        cluster
    }

    fn add_store(&mut self, i: usize) {
        let host = self.kv_hosts.get(i).cloned();
        let ip = host.as_ref().map_or("127.0.0.1", |h| h.ip.as_str());
        let addr = format!("{ip}:{}", free_port());
        let status = format!("{ip}:{}", free_port());
        let scheme = if self.certs.is_some() {
            "https"
        } else {
            "http"
        };
        let mut args = vec![
            "--addr".into(),
            addr.clone(),
            "--status-addr".into(),
            status.clone(),
            "--pd".into(),
            format!("{scheme}://{}", self.pd_addr),
            "--data-dir".into(),
            self.dir.path().join(format!("kv{i}")).display().to_string(),
        ];
        if let Some(toml) = &self.kv_toml {
            let path = self.dir.path().join(format!("kv{i}.toml"));
            std::fs::write(&path, toml).unwrap();
            args.extend(["--config".into(), path.display().to_string()]);
        }
        if let Some(c) = &self.certs {
            args.extend([
                "--ca-path".into(),
                c.path("ca.pem"),
                "--cert-path".into(),
                c.path("tikv-server.pem"),
                "--key-path".into(),
                c.path("tikv-server-key.pem"),
            ]);
        } else {
            args.push("--insecure".into());
        }
        let name = format!("kv{i}");
        let log = self.dir.path().join(format!("{name}.log"));
        let prefix = host.map(|h| h.exec_prefix).unwrap_or_default();
        self.kv.push(Proc::spawn_in(
            &prefix,
            &name,
            &bin("tikv-server"),
            &args,
            log,
        ));
        self.kv_addrs.push(addr);
        self.kv_status.push(status);
    }

    /// All logs, for failure messages.
    pub fn logs(&self) -> String {
        let mut s = format!("--- {} ---\n{}", self.pd.name, tail(&self.pd.log_text()));
        for k in &self.kv {
            s.push_str(&format!("\n--- {} ---\n{}", k.name, tail(&k.log_text())));
        }
        s
    }

    /// GET over HTTPS (or HTTP) from PD.
    pub async fn pd_get(&self, path: &str) -> Result<(u16, String), String> {
        http_get(
            &self.pd_addr,
            path,
            self.certs.as_ref().map(|c| c.client_tls()),
        )
        .await
    }

    /// Waits until store `i` answers on its status port and leads at least
    /// one region (after a restart, PD's view can still be the old one).
    pub async fn wait_store_serving(&self, i: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let tls = self.certs.as_ref().map(|c| c.client_tls());
            if let Ok((200, body)) = http_get(&self.kv_status[i], "/status", tls).await {
                if !body.contains("\"leader_count\":0") {
                    return;
                }
            }
            if Instant::now() > deadline {
                panic!("store {i} did not serve within 60s\n{}", self.logs());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until PD lists `n` stores as Up and every region has a leader.
    pub async fn wait_for_stores(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok((200, body)) = self.pd_get("/pd/api/v1/stores").await {
                let up = body.matches("\"state_name\":\"Up\"").count();
                if up >= n {
                    if let Ok((200, regions)) = self.pd_get("/pd/api/v1/regions").await {
                        if regions.contains("\"leader\":{") {
                            return;
                        }
                    }
                }
            }
            if Instant::now() > deadline {
                panic!("cluster did not come up within 60s\n{}", self.logs());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// A client of our own (`tiox_client`) with the cluster's client
    /// certificate (plaintext on a plaintext cluster).
    pub async fn client(&self) -> tiox_client::ClusterClient {
        let settings = self.certs.as_ref().map(|certs| {
            SecurityConfig::from_paths(
                &certs.path("ca.pem"),
                &certs.path("client.pem"),
                &certs.path("client-key.pem"),
            )
            .validate(Component::Tiox)
            .unwrap()
            .unwrap()
        });
        let scheme = if settings.is_some() { "https" } else { "http" };
        tiox_client::ClusterClient::connect(&[format!("{scheme}://{}", self.pd_addr)], settings)
            .await
            .unwrap()
    }

    /// Splits so that a region starts at each of `keys` (transactional user
    /// keys), then waits until PD reports the new regions, every region
    /// with `voters` voters and a leader.
    pub async fn split_at(&self, keys: &[Vec<u8>], voters: usize) {
        let regions = || async {
            let (_, body) = self.pd_get("/pd/api/v1/regions").await.ok()?;
            let v: serde_json::Value = serde_json::from_str(&body).ok()?;
            Some((v["regions"].as_array().cloned().unwrap_or_default(), body))
        };
        let before = regions().await.map_or(0, |(r, _)| r.len());
        let client = self.client().await;
        for key in keys {
            let deadline = Instant::now() + Duration::from_secs(30);
            while let Err(e) = client.split_region(key, false).await {
                assert!(Instant::now() < deadline, "split at {key:?}: {e}");
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let mut seen = String::new();
            if let Some((list, body)) = regions().await {
                let settled = list.len() >= before + keys.len()
                    && list.iter().all(|r| {
                        r["leader"]["id"].as_u64().is_some()
                            && r["peers"].as_array().map_or(0, |p| {
                                p.iter().filter(|x| x["role_name"] == "Voter").count()
                            }) == voters
                    });
                if settled {
                    return;
                }
                seen = body;
            }
            assert!(
                Instant::now() < deadline,
                "{} more regions with {voters} voters each not settled: {seen}\n{}",
                keys.len(),
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// The fault schedule of the bank checkers: for each store in turn,
    /// `up` of normal running, then a SIGKILL, `down` later a restart
    /// (same data directory and arguments); finally `up` once more.
    pub async fn kill_and_restart_each_store(&mut self, up: Duration, down: Duration) {
        for victim in 0..self.kv.len() {
            tokio::time::sleep(up).await;
            self.kill_and_restart(victim, down).await;
        }
        tokio::time::sleep(up).await;
    }

    /// SIGKILLs store `i` and restarts it `down` later (same data
    /// directory, arguments and host).
    pub async fn kill_and_restart(&mut self, i: usize, down: Duration) {
        self.kv[i].kill();
        eprintln!("{} killed kv{i}", unix_ms());
        tokio::time::sleep(down).await;
        self.kv[i].start();
        eprintln!("{} restarted kv{i}", unix_ms());
    }

    /// Waits until PD reports at least `n` voters and a leader (PD's
    /// scheduler adds replicas one at a time after the stores come up), so
    /// that a store can be killed without losing the region's quorum.
    pub async fn wait_for_voters(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Ok((200, body)) = self.pd_get("/pd/api/v1/regions").await {
                if body.matches("\"role_name\":\"Voter\"").count() >= n
                    && body.contains("\"leader\":{")
                {
                    return;
                }
            }
            if Instant::now() > deadline {
                panic!("no {n} voters within 90s\n{}", self.logs());
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}

/// Milliseconds since the Unix epoch, the clock of the fault lines and of
/// the bank checker's history.
/// Starts `n` PD members alone (no stores) with Raft among them over
/// mutual TLS: the processes and their client addresses (`127.0.0.1:port`).
pub fn pd_members(dir: &Path, certs: &Certs, n: usize) -> (Vec<Proc>, Vec<String>) {
    let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
    let initial = ports
        .iter()
        .enumerate()
        .map(|(i, (_, peer))| format!("pd{i}=https://127.0.0.1:{peer}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut procs = Vec::new();
    for (i, (client, peer)) in ports.iter().enumerate() {
        let args: Vec<String> = vec![
            format!("--name=pd{i}"),
            format!("--data-dir={}", dir.join(format!("pd{i}")).display()),
            format!("--client-urls=https://127.0.0.1:{client}"),
            format!("--peer-urls=https://127.0.0.1:{peer}"),
            format!("--initial-cluster={initial}"),
            format!("--cacert={}", certs.path("ca.pem")),
            format!("--cert={}", certs.path("pd-server.pem")),
            format!("--key={}", certs.path("pd-server-key.pem")),
        ];
        procs.push(Proc::spawn(
            &format!("pd{i}"),
            &bin("pd-server"),
            &args,
            dir.join(format!("pd{i}.log")),
        ));
    }
    let addrs = ports
        .iter()
        .map(|(c, _)| format!("127.0.0.1:{c}"))
        .collect();
    (procs, addrs)
}

pub fn unix_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// A minimal HTTP/1.1 GET (Connection: close) over our TLS connector.
pub async fn http_get(
    addr: &str,
    path: &str,
    tls: Option<Arc<ClientTls>>,
) -> Result<(u16, String), String> {
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let mut buf = Vec::new();
    match tls {
        Some(tls) => {
            let mut s = tls.connect_tcp(addr).await.map_err(|e| e.to_string())?;
            s.write_all(req.as_bytes())
                .await
                .map_err(|e| e.to_string())?;
            let _ = s.read_to_end(&mut buf).await;
        }
        None => {
            let mut s = tokio::net::TcpStream::connect(addr)
                .await
                .map_err(|e| e.to_string())?;
            s.write_all(req.as_bytes())
                .await
                .map_err(|e| e.to_string())?;
            let _ = s.read_to_end(&mut buf).await;
        }
    }
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no HTTP status in {text:?}"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}
