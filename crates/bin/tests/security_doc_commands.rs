//! Every command docs/security.md shows is run here as written (and the
//! README's certificate commands).
//!
//! The guide's fenced `sh` and `sql` blocks are read from the file itself;
//! each block is matched to a step below and run with only its paths, hosts
//! and ports replaced by the test cluster's (`/path/to/` -> the cluster's
//! certificates, `127.0.0.1:2379` -> its PD, `-P 4000` -> its tidb-server).
//! A block that no step knows fails the test, so the guide cannot show a
//! command that no test ran. Blocks in other languages (the `[security]`
//! tables, run verbatim by howto_walkthrough.rs; the error excerpt) are not
//! commands.
//!
//! Needs `openssl`, `cfssl`/`cfssljson` (Debian: golang-cfssl) and a mysql
//! client: `.ci/run` installs them; elsewhere their blocks are skipped
//! loudly.

#[path = "support/cluster.rs"]
mod cluster;
mod tidb_common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cluster::{bin, Cluster};
use tiox_security::{Component, SecurityConfig};

const TEST: &str = "every_command_in_the_security_guide_runs_as_written";

/// A fenced block of the guide.
struct Block {
    /// The info string (`sh`, `sql`, `toml`, or empty).
    lang: String,
    /// The block's text.
    text: String,
    /// Line of its opening fence, for messages.
    line: usize,
}

fn blocks(doc: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut open: Option<Block> = None;
    for (i, line) in doc.lines().enumerate() {
        let fence = line.trim_start();
        if let Some(info) = fence.strip_prefix("```") {
            match open.take() {
                Some(b) => out.push(b),
                None => {
                    open = Some(Block {
                        lang: info.trim().to_string(),
                        text: String::new(),
                        line: i + 1,
                    })
                }
            }
        } else if let Some(b) = &mut open {
            b.text.push_str(line);
            b.text.push('\n');
        }
    }
    out
}

/// Runs `script` with bash (`-euo pipefail`) in `dir`, the binaries first
/// on PATH, `stdin` fed in; returns success and stdout + stderr. It runs in
/// its own session (`setsid`): without a terminal, the mysql client's `-p`
/// prompt reads the password from stdin.
fn run(dir: &Path, script: &str, stdin: &str) -> (bool, String) {
    use std::io::Write;
    let bins = bin("tiox").parent().unwrap().to_path_buf();
    let path = std::env::join_paths(std::iter::once(bins).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .unwrap();
    let mut child = Command::new("setsid")
        .args(["-w", "bash", "-euo", "pipefail", "-c", script])
        .current_dir(dir)
        .env("PATH", path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn have(tool: &str) -> bool {
    let ok = Command::new(tool)
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !ok {
        tidb_common::missing(tool, TEST);
    }
    ok
}

/// The certificate files of the cfssl and openssl blocks are accepted as
/// they are: each server certificate as a component's, the client's as
/// pd-ctl's.
fn accepted(dir: &Path) {
    let p = |f: &str| dir.join(f).display().to_string();
    for (name, component) in [
        ("pd-server", Component::PdServer),
        ("tikv-server", Component::TikvServer),
        ("tidb-server", Component::TidbServer),
        ("client", Component::PdCtl),
    ] {
        SecurityConfig::from_paths(
            &p("ca.pem"),
            &p(&format!("{name}.pem")),
            &p(&format!("{name}-key.pem")),
        )
        .validate(component)
        .unwrap_or_else(|e| panic!("{name}.pem in {}: {e}", dir.display()))
        .expect("TLS settings");
    }
}

/// Waits until tidb-server has logged `n` logins.
fn logins_reach(tidb: &tidb_common::TidbServer, n: usize) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if tidb.log().matches(" login").count() >= n {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// The files the guide's `tiox cert init` table (`| file | use | key file
/// |`) lists in its first and third columns.
fn table_files(doc: &str) -> Vec<String> {
    doc.lines()
        .skip_while(|l| !l.starts_with("| file |"))
        .take_while(|l| l.starts_with('|'))
        .filter(|l| l.starts_with("| `"))
        .flat_map(|l| {
            let cols: Vec<&str> = l.split('|').map(str::trim).collect();
            [cols[1], cols[3]]
                .into_iter()
                .filter_map(|c| c.split('`').nth(1))
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .filter(|f| f.ends_with(".pem"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_in_the_security_guide_runs_as_written() {
    let doc_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/security.md");
    let doc = std::fs::read_to_string(&doc_path).unwrap();
    let commands: Vec<Block> = blocks(&doc)
        .into_iter()
        .filter(|b| !matches!(b.lang.as_str(), "toml" | ""))
        .collect();
    assert!(commands.len() >= 8, "the guide's blocks were not found");

    // A cluster on mutual TLS and a tidb-server on it with MySQL TLS, as
    // the guide configures them.
    let c = Cluster::start(true, 1).await;
    let certs = c.certs.as_ref().unwrap();
    let certs_dir = certs.dir.clone();
    let work = tempfile::tempdir().unwrap();
    let tidb = tidb_common::TidbServer::start(
        work.path(),
        &[
            "--store=tikv".into(),
            format!("--path={}", c.pd_addr),
            format!("--cluster-ssl-ca={}", certs.path("ca.pem")),
            format!("--cluster-ssl-cert={}", certs.path("tidb-server.pem")),
            format!("--cluster-ssl-key={}", certs.path("tidb-server-key.pem")),
            format!("--ssl-ca={}", certs.path("mysql/ca.pem")),
            format!("--ssl-cert={}", certs.path("mysql/server.pem")),
            format!("--ssl-key={}", certs.path("mysql/server-key.pem")),
            "--initialize-secure".into(),
        ],
    );
    let password = tidb
        .stdout()
        .lines()
        .find_map(|l| l.split("root@'%': ").nth(1).map(str::to_string))
        .unwrap_or_else(|| panic!("no root password printed:\n{}", tidb.stdout()));
    let cluster_subst = |text: &str| {
        text.replace("https://127.0.0.1:2379", &format!("https://{}", c.pd_addr))
            .replace("https://10.0.1.1:2379", &format!("https://{}", c.pd_addr))
            .replace("127.0.0.1:20160", &c.kv_addrs[0])
            .replace("/path/to/", &format!("{}/", certs_dir.display()))
            .replace("-P 4000", &format!("-P {}", tidb.port))
            .replace("certs/mysql/", "mysql/")
    };
    let mysql_client = tidb_common::mysql_client(TEST);

    let mut ran = 0;
    for b in &commands {
        let at = format!("docs/security.md:{} ({})", b.line, b.lang);
        let text = b.text.as_str();
        if b.lang == "sql" {
            let Some(client) = &mysql_client else {
                continue;
            };
            let tls = vec![
                format!("--ssl-ca={}", certs.path("mysql/ca.pem")),
                "--ssl-verify-server-cert".to_string(),
            ];
            for stmt in text.split(';').map(str::trim).filter(|s| !s.is_empty()) {
                let r = tidb_common::mysql(client, &tidb, "root", Some(&password), &tls, stmt);
                assert!(r.ok, "{at}: {stmt}: {}{}\n{}", r.out, r.err, tidb.log());
            }
            ran += 1;
            continue;
        }
        assert_eq!(b.lang, "sh", "{at}: a command block must be sh or sql");
        if text.contains("cfssl gencert") || text.contains("openssl req") {
            let tool = if text.contains("cfssl") {
                "cfssl"
            } else {
                "openssl"
            };
            if !have(tool) {
                continue;
            }
            let dir = tempfile::tempdir().unwrap();
            let (ok, out) = run(dir.path(), text, "");
            assert!(ok, "{at}:\n{out}");
            assert!(
                out.contains("client-key.pem: private key matches"),
                "{at}:\n{out}"
            );
            accepted(dir.path());
        } else if text.starts_with("tiox cert init") {
            let dir = work.path().join("etc-tiox-certs");
            let (ok, out) = run(
                work.path(),
                &text.replace("/etc/tiox/certs", &dir.display().to_string()),
                "",
            );
            assert!(ok, "{at}:\n{out}");
            let files = table_files(&doc);
            assert!(files.len() >= 16, "the guide's file table: {files:?}");
            for f in files {
                assert!(dir.join(&f).is_file(), "{at}: {f} was not written\n{out}");
            }
        } else if text.starts_with("tiox cert issue") {
            let (ok, out) = run(&certs_dir, text, "");
            assert!(ok && out.contains("tikv-4"), "{at}:\n{out}");
            assert!(out.contains("private key matches"), "{at}:\n{out}");
        } else if text.starts_with("tikv-ctl") {
            let (ok, out) = run(&certs_dir, &cluster_subst(text), "");
            assert!(ok && out.contains("\"store_id\""), "{at}:\n{out}");
        } else if text.starts_with("pd-ctl") {
            // The first, interactive, pd-ctl reads `store` from stdin.
            let (ok, out) = run(&certs_dir, &cluster_subst(text), "store\n");
            assert!(ok, "{at}:\n{out}");
            assert!(
                out.matches("\"state_name\"").count() >= 2 && out.contains("\"client_urls\""),
                "{at}: pd-ctl (interactive and not) and curl answered:\n{out}"
            );
        } else if text.starts_with("tiox check") {
            let (ok, out) = run(&certs_dir, &cluster_subst(text), "");
            assert!(ok && out.contains("VERDICT: PASS"), "{at}:\n{out}");
        } else if text.starts_with("mysql ") {
            let Some(client) = &mysql_client else {
                continue;
            };
            // `-p` prompts: the password comes on stdin.
            for line in text.lines() {
                let cmd = cluster_subst(line).replacen("mysql", &client.display().to_string(), 1);
                let before = tidb.log().matches(" login").count();
                let (ok, out) = run(&certs_dir, &cmd, &format!("{password}\n"));
                assert!(ok, "{at}: {line}\n{out}\n{}", tidb.log());
                assert!(
                    logins_reach(&tidb, before + 1),
                    "{at}: {line}: no login\n{}",
                    tidb.log()
                );
            }
        } else {
            panic!("{at}: docs/security.md shows commands no test runs; add a step to this test:\n{text}");
        }
        ran += 1;
    }
    eprintln!(
        "{ran} of {} command blocks of docs/security.md ran",
        commands.len()
    );
}

/// The README's certificate commands, with the built `tiox` in place of
/// `cargo run --release --bin tiox --` (the playground it starts the same
/// way is run by playground.rs).
#[test]
fn readme_certificate_commands_run_as_written() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
            .unwrap();
    let script: Vec<String> = blocks(&readme)
        .iter()
        .filter(|b| b.lang == "sh")
        .flat_map(|b| b.text.lines().map(str::to_string).collect::<Vec<_>>())
        .filter(|l| l.contains("--bin tiox -- cert "))
        .map(|l| l.replacen("cargo run --release --bin tiox --", "tiox", 1))
        .collect();
    assert_eq!(
        script.len(),
        2,
        "README's cert init and inspect: {script:?}"
    );
    let dir = tempfile::tempdir().unwrap();
    let (ok, out) = run(dir.path(), &script.join("\n"), "");
    assert!(ok, "{script:?}:\n{out}");
    assert!(
        out.contains("client-key.pem: private key matches") && out.contains("CN=tikv-server"),
        "{out}"
    );
}
