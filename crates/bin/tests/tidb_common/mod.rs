//! Shared harness for the tidb-server end-to-end tests: certificates made
//! for each test (`tiox_security::certgen::init_dir`), the real binary on
//! ports chosen free at run time, and the real MySQL clients. A missing
//! client skips LOUDLY (or fails when CI is set).

#![allow(dead_code)]

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use tiox_security::certgen::{init_dir, InitOptions, KeyType};

/// A free TCP port on 127.0.0.1 (the launcher's: never the same twice, and
/// outside the ephemeral range).
pub fn free_port() -> u16 {
    tiox_bin::launch::free_port()
}

/// A temporary directory with a full certificate set (`mysql/` inside).
pub struct Pki {
    /// Owns the directory.
    pub dir: tempfile::TempDir,
}

impl Pki {
    /// Creates certificates for 127.0.0.1 and localhost.
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().expect("tempdir");
        init_dir(
            &dir.path().join("certs"),
            &InitOptions {
                hosts: vec!["127.0.0.1".into(), "localhost".into()],
                days: 30,
                key_type: KeyType::EcdsaP256,
                force: false,
            },
        )
        .expect("certificates");
        Pki { dir }
    }

    /// Path of a file under `certs/`.
    pub fn path(&self, rel: &str) -> String {
        self.dir
            .path()
            .join("certs")
            .join(rel)
            .display()
            .to_string()
    }

    /// The server TLS flags for the MySQL port.
    pub fn server_tls_args(&self) -> Vec<String> {
        vec![
            format!("--ssl-ca={}", self.path("mysql/ca.pem")),
            format!("--ssl-cert={}", self.path("mysql/server.pem")),
            format!("--ssl-key={}", self.path("mysql/server-key.pem")),
        ]
    }
}

/// A running tidb-server, killed on drop.
pub struct TidbServer {
    child: Child,
    /// MySQL port.
    pub port: u16,
    /// Status port.
    pub status_port: u16,
    /// Its data directory.
    pub data_dir: PathBuf,
    out: PathBuf,
    err: PathBuf,
}

impl Drop for TidbServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl TidbServer {
    /// Starts the binary with `args` plus ports, loopback hosts and
    /// `--data-dir WORK/data`; waits until the MySQL port accepts.
    pub fn start(work: &Path, args: &[String]) -> TidbServer {
        match Self::try_start(work, args) {
            Ok(s) => s,
            Err(out) => panic!("tidb-server did not start:\n{out}"),
        }
    }

    /// Like `start`; `Err` holds the output of a server that exited.
    pub fn try_start(work: &Path, args: &[String]) -> Result<TidbServer, String> {
        let port = free_port();
        let status_port = free_port();
        let data_dir = work.join("data");
        let out = work.join(format!("tidb-{port}.out"));
        let err = work.join(format!("tidb-{port}.err"));
        let child = Command::new(env!("CARGO_BIN_EXE_tidb-server"))
            .arg("-P")
            .arg(port.to_string())
            .arg("--host=127.0.0.1")
            .arg(format!("--status={status_port}"))
            .arg("--status-host=127.0.0.1")
            .arg(format!("--data-dir={}", data_dir.display()))
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(std::fs::File::create(&out).expect("stdout file"))
            .stderr(std::fs::File::create(&err).expect("stderr file"))
            .spawn()
            .expect("spawn tidb-server");
        let mut server = TidbServer {
            child,
            port,
            status_port,
            data_dir,
            out,
            err,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(_)) = server.child.try_wait() {
                return Err(format!("{}{}", server.stdout(), server.log()));
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(server);
            }
            if Instant::now() > deadline {
                return Err(format!("not listening after 30s\n{}", server.log()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What the server printed on stdout.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// The server's log (stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    /// Waits for a log line containing `needle`.
    pub fn wait_for_log(&self, needle: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.log().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

/// Runs a tidb-server binary to completion (for startup errors).
pub fn run_tidb(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tidb-server"))
        .args(args)
        .output()
        .expect("run tidb-server")
}

fn in_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

/// Skips loudly (or fails under CI) when a client is missing.
pub fn missing(what: &str, test: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("{what} is not installed but CI is set: .ci/run must install it ({test})");
    }
    eprintln!("SKIPPED {test}: {what} is not installed (CI installs it via .ci/run)");
}

/// The `mariadb` or `mysql` command-line client.
pub fn mysql_client(test: &str) -> Option<PathBuf> {
    let found = in_path("mariadb").or_else(|| in_path("mysql"));
    if found.is_none() {
        missing("the mariadb/mysql command-line client", test);
    }
    found
}

/// The result of one client run.
#[derive(Debug)]
pub struct Run {
    /// Exit status was 0.
    pub ok: bool,
    /// Standard output.
    pub out: String,
    /// Standard error.
    pub err: String,
}

/// Runs the command-line client: `-u user [-p...] TLS-ARGS -e SQL` in batch
/// mode (tab-separated, no headers). `stdin_sql` is fed instead of `-e` for
/// client commands such as `status`.
pub fn mysql(
    client: &Path,
    server: &TidbServer,
    user: &str,
    password: Option<&str>,
    tls: &[String],
    sql: &str,
) -> Run {
    let mut cmd = Command::new(client);
    cmd.arg("--protocol=TCP")
        .arg("-h127.0.0.1")
        .arg(format!("-P{}", server.port))
        .arg(format!("-u{user}"))
        .arg("--connect-timeout=10")
        .arg("--batch")
        .arg("--skip-column-names")
        .args(tls);
    if let Some(p) = password {
        cmd.arg(format!("--password={p}"));
    }
    let out = cmd
        .arg("-e")
        .arg(sql)
        .stdin(Stdio::null())
        .output()
        .expect("run the mysql client");
    Run {
        ok: out.status.success(),
        out: String::from_utf8_lossy(&out.stdout).into_owned(),
        err: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Like [`mysql`], feeding `input` on stdin (interactive commands).
pub fn mysql_stdin(
    client: &Path,
    server: &TidbServer,
    user: &str,
    tls: &[String],
    input: &str,
) -> Run {
    use std::io::Write;
    let mut child = Command::new(client)
        .arg("--protocol=TCP")
        .arg("-h127.0.0.1")
        .arg(format!("-P{}", server.port))
        .arg(format!("-u{user}"))
        .arg("--connect-timeout=10")
        .args(tls)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the mysql client");
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(input.as_bytes());
    }
    let out = child.wait_with_output().expect("client output");
    Run {
        ok: out.status.success(),
        out: String::from_utf8_lossy(&out.stdout).into_owned(),
        err: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Client TLS flags: verify the server against the MySQL CA.
pub fn verify_args(pki: &Pki) -> Vec<String> {
    vec![
        format!("--ssl-ca={}", pki.path("mysql/ca.pem")),
        "--ssl-verify-server-cert".to_string(),
    ]
}

/// Client TLS flags with the MySQL client certificate (mutual TLS).
pub fn mutual_args(pki: &Pki) -> Vec<String> {
    let mut v = verify_args(pki);
    v.push(format!("--ssl-cert={}", pki.path("mysql/client.pem")));
    v.push(format!("--ssl-key={}", pki.path("mysql/client-key.pem")));
    v
}

/// Client flags for plaintext.
pub fn plain_args() -> Vec<String> {
    vec!["--skip-ssl".to_string()]
}
