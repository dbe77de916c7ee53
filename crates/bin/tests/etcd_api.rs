//! etcd v3 on PD's client port, driven by the real `etcdctl` (Debian's
//! etcd-client): put, get --prefix, del, txn, a background watch, leases,
//! member list and endpoint status over mutual TLS; without a client
//! certificate, or with one from another CA, it is refused. Then three PD
//! members: leases and watches survive a SIGKILL of the leader, with
//! etcdctl and with the Rust `etcd-client` (its watch re-created from the
//! next revision sees what was written meanwhile).
//!
//! Skipped, with a message, when `etcdctl` is not installed
//! (`apt-get install etcd-client`; `.ci/run` installs it).

#[path = "support/cluster.rs"]
mod cluster;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cluster::{Certs, Cluster, Options, Proc};

fn have_etcdctl() -> bool {
    let ok = Command::new("etcdctl")
        .arg("version")
        .env("ETCDCTL_API", "3")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!(
            "SKIPPED: etcdctl is not installed (apt-get install etcd-client); the etcd API \
             end-to-end test needs the real client"
        );
    }
    ok
}

/// etcdctl against `endpoints` with the given TLS files (`None`: no
/// client certificate).
struct Etcdctl {
    endpoints: String,
    ca: String,
    cert: Option<(String, String)>,
}

impl Etcdctl {
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("etcdctl");
        cmd.env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.endpoints))
            .arg(format!("--cacert={}", self.ca))
            .arg("--dial-timeout=3s")
            .arg("--command-timeout=5s");
        if let Some((cert, key)) = &self.cert {
            cmd.arg(format!("--cert={cert}"))
                .arg(format!("--key={key}"));
        }
        cmd.args(args);
        cmd
    }

    fn run_with(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("etcdctl runs");
        let mut input = child.stdin.take().unwrap();
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).unwrap();
        }
        drop(input);
        child.wait_with_output().unwrap()
    }

    /// Runs and returns stdout; panics with stderr on failure.
    fn ok(&self, args: &[&str]) -> String {
        self.ok_with(args, None)
    }

    fn ok_with(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.run_with(args, stdin);
        assert!(
            out.status.success(),
            "etcdctl {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Retries (the leader may be electing) until it succeeds.
    fn eventually(&self, args: &[&str], within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let out = self.run_with(args, None);
            if out.status.success() {
                return String::from_utf8_lossy(&out.stdout).into_owned();
            }
            assert!(
                Instant::now() < deadline,
                "etcdctl {args:?} kept failing: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

/// `etcdctl watch ...` in the background; its stdout lines arrive on a
/// channel. Killed on drop.
struct BackgroundWatch {
    child: Child,
    lines: mpsc::Receiver<String>,
    stderr: tempfile::NamedTempFile,
}

impl BackgroundWatch {
    fn start(ctl: &Etcdctl, args: &[&str]) -> BackgroundWatch {
        let stderr = tempfile::NamedTempFile::new().unwrap();
        let mut child = ctl
            .command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr.reopen().unwrap()))
            .spawn()
            .expect("etcdctl watch runs");
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        BackgroundWatch {
            child,
            lines,
            stderr,
        }
    }

    /// Waits for a line equal to `want`; returns the lines seen up to it.
    fn wait_for(&self, want: &str, within: Duration) -> Vec<String> {
        let deadline = Instant::now() + within;
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let done = line == want;
                    seen.push(line);
                    if done {
                        return seen;
                    }
                }
                Err(_) => break,
            }
        }
        panic!(
            "the watch did not print {want:?} within {within:?}; it printed {seen:?}; its \
             stderr: {}",
            std::fs::read_to_string(self.stderr.path()).unwrap_or_default()
        );
    }
}

impl Drop for BackgroundWatch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn lease_id(granted: &str) -> String {
    // "lease 7469...01 granted with TTL(60s)"
    granted
        .split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("no lease id in {granted:?}"))
        .to_string()
}

#[test]
fn etcdctl_works_against_pd_over_mutual_tls_and_is_refused_without_a_cluster_cert() {
    if !have_etcdctl() {
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cluster = rt.block_on(Cluster::start_opts(
        true,
        1,
        &Options {
            pd_raft: true,
            ..Options::default()
        },
    ));
    let certs = cluster.certs.as_ref().unwrap();
    let ctl = Etcdctl {
        endpoints: format!("https://{}", cluster.pd_addr),
        ca: certs.path("ca.pem"),
        cert: Some((certs.path("client.pem"), certs.path("client-key.pem"))),
    };

    // put, get --prefix, del.
    assert_eq!(
        ctl.eventually(&["put", "/app/a", "1"], Duration::from_secs(20)),
        "OK\n"
    );
    assert_eq!(ctl.ok(&["put", "/app/b", "2"]), "OK\n");
    assert_eq!(ctl.ok(&["put", "/other", "x"]), "OK\n");
    assert_eq!(
        ctl.ok(&["get", "--prefix", "/app/"]),
        "/app/a\n1\n/app/b\n2\n"
    );
    assert_eq!(
        ctl.ok(&["get", "--prefix", "--keys-only", "/app/"]),
        "/app/a\n\n/app/b\n\n"
    );
    let limited = ctl.ok(&["get", "--prefix", "--limit=1", "-w", "fields", "/app/"]);
    assert!(
        limited.contains("\"Count\" : 2") && limited.contains("\"More\" : true"),
        "{limited}"
    );
    assert_eq!(ctl.ok(&["del", "/app/b"]), "1\n");
    assert_eq!(ctl.ok(&["get", "--prefix", "/app/"]), "/app/a\n1\n");

    // txn from stdin: compare-and-swap, then the failing branch.
    let cas = "value(\"/app/a\") = \"1\"\n\nput /app/a 2\n\nput /app/failed yes\n\n";
    assert_eq!(ctl.ok_with(&["txn"], Some(cas)), "SUCCESS\n\nOK\n");
    assert_eq!(ctl.ok_with(&["txn"], Some(cas)), "FAILURE\n\nOK\n");
    assert_eq!(ctl.ok(&["get", "/app/a", "--print-value-only"]), "2\n");
    assert_eq!(
        ctl.ok(&["get", "/app/failed", "--print-value-only"]),
        "yes\n"
    );

    // A watch in the background sees a later put and a delete.
    let watch = BackgroundWatch::start(&ctl, &["watch", "--prefix", "/w/"]);
    std::thread::sleep(Duration::from_millis(700));
    ctl.ok(&["put", "/w/k", "seen"]);
    let lines = watch.wait_for("seen", Duration::from_secs(10));
    assert!(lines.contains(&"PUT".to_string()), "{lines:?}");
    ctl.ok(&["del", "/w/k"]);
    watch.wait_for("DELETE", Duration::from_secs(10));
    drop(watch);

    // A watch from an old revision replays history.
    let rev_out = ctl.ok(&["get", "/app/a", "-w", "fields"]);
    let mod_rev = rev_out
        .lines()
        .find(|l| l.starts_with("\"ModRevision\""))
        .and_then(|l| l.split(':').nth(1))
        .map(|v| v.trim().to_string())
        .unwrap();
    let replay = BackgroundWatch::start(&ctl, &["watch", "/app/a", "--rev", &mod_rev]);
    replay.wait_for("2", Duration::from_secs(10));
    drop(replay);

    // Leases: grant, attach, keep-alive once, time-to-live, revoke.
    let id = lease_id(&ctl.ok(&["lease", "grant", "60"]));
    assert_eq!(ctl.ok(&["put", "--lease", &id, "/leased", "v"]), "OK\n");
    let kept = ctl.ok(&["lease", "keep-alive", "--once", &id]);
    assert!(kept.contains("keepalived with TTL(60)"), "{kept}");
    let ttl = ctl.ok(&["lease", "timetolive", "--keys", &id]);
    assert!(
        ttl.contains("granted with TTL(60s)") && ttl.contains("/leased"),
        "{ttl}"
    );
    assert!(ctl.ok(&["lease", "list"]).contains(&id));
    assert!(ctl.ok(&["lease", "revoke", &id]).contains("revoked"));
    assert_eq!(
        ctl.ok(&["get", "/leased"]),
        "",
        "the revoked lease's key is gone"
    );

    // A short lease expires on its own, and its key with it.
    let short = lease_id(&ctl.ok(&["lease", "grant", "2"]));
    ctl.ok(&["put", "--lease", &short, "/short", "v"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ctl.ok(&["get", "/short"]).is_empty() {
        assert!(Instant::now() < deadline, "the expired lease's key stayed");
        std::thread::sleep(Duration::from_millis(300));
    }

    // member list and endpoint status.
    let members = ctl.ok(&["member", "list"]);
    assert!(
        members.contains("pd1") && members.contains(&format!("https://{}", cluster.pd_addr)),
        "{members}"
    );
    let status = ctl.ok(&["endpoint", "status"]);
    assert!(
        status.contains(&cluster.pd_addr) && status.contains("true"),
        "{status}"
    );

    // Unsupported RPCs say so in etcd's terms.
    for args in [
        &["user", "list"][..],
        &["member", "add", "x", "--peer-urls=https://127.0.0.1:1"],
    ] {
        let out = ctl.run_with(args, None);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains("is not supported by tiox's PD"),
            "etcdctl {args:?}: {err}"
        );
    }

    // No client certificate: refused.
    let no_cert = Etcdctl {
        endpoints: ctl.endpoints.clone(),
        ca: ctl.ca.clone(),
        cert: None,
    };
    let out = no_cert.run_with(&["get", "/app/a"], None);
    assert!(!out.status.success(), "served without a client certificate");

    // A client certificate from a foreign CA: refused.
    let foreign_dir = tempfile::tempdir().unwrap();
    let foreign = Certs::make(foreign_dir.path());
    let impostor = Etcdctl {
        endpoints: ctl.endpoints.clone(),
        ca: ctl.ca.clone(),
        cert: Some((foreign.path("client.pem"), foreign.path("client-key.pem"))),
    };
    let out = impostor.run_with(&["get", "/app/a"], None);
    assert!(
        !out.status.success(),
        "served a client certificate from another CA"
    );
    assert_eq!(ctl.ok(&["get", "/app/a", "--print-value-only"]), "2\n");

    // Keys and revisions survive a restart of PD (SIGKILL, same data dir).
    let before = ctl.ok(&["get", "/app/a", "-w", "fields"]);
    let mut cluster = cluster;
    cluster.pd.kill();
    cluster.pd.start();
    let after = ctl.eventually(&["get", "/app/a", "-w", "fields"], Duration::from_secs(20));
    let field = |out: &str, name: &str| {
        out.lines()
            .find(|l| l.starts_with(&format!("\"{name}\"")))
            .map(str::to_string)
    };
    for name in [
        "ModRevision",
        "CreateRevision",
        "Version",
        "Value",
        "Revision",
    ] {
        assert_eq!(
            field(&before, name),
            field(&after, name),
            "{name} after restart"
        );
    }
}

/// Three PD members with Raft over mutual TLS: (procs, https URLs).
fn start_three(dir: &std::path::Path, certs: &Certs) -> (Vec<Proc>, Vec<String>) {
    let (procs, addrs) = cluster::pd_members(dir, certs, 3);
    (
        procs,
        addrs.iter().map(|a| format!("https://{a}")).collect(),
    )
}

#[test]
fn leases_and_watches_survive_a_pd_leader_sigkill() {
    if !have_etcdctl() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::make(&dir.path().join("certs"));
    let (mut pds, urls) = start_three(dir.path(), &certs);
    let ctl = Etcdctl {
        endpoints: urls.join(","),
        ca: certs.path("ca.pem"),
        cert: Some((certs.path("client.pem"), certs.path("client-key.pem"))),
    };
    ctl.eventually(&["put", "/before", "1"], Duration::from_secs(30));
    let id = lease_id(&ctl.ok(&["lease", "grant", "30"]));
    ctl.ok(&["put", "--lease", &id, "/leased", "v"]);

    // Which member leads? endpoint status has an IS LEADER column.
    let status = ctl.ok(&["endpoint", "status", "-w", "fields"]);
    let leader_id = status
        .lines()
        .find(|l| l.starts_with("\"Leader\""))
        .and_then(|l| l.split(':').nth(1))
        .map(|v| v.trim().parse::<u64>().unwrap())
        .unwrap();
    let leader = (0..3)
        .find(|i| tiox_pd::replication::member_id(&format!("pd{i}")) == leader_id)
        .expect("the leader is one of the three");

    let watch = BackgroundWatch::start(&ctl, &["watch", "--prefix", "/w/"]);
    std::thread::sleep(Duration::from_millis(700));
    ctl.ok(&["put", "/w/1", "before-kill"]);
    watch.wait_for("before-kill", Duration::from_secs(10));

    pds[leader].kill();
    let rest: Vec<String> = (0..3)
        .filter(|i| *i != leader)
        .map(|i| urls[i].clone())
        .collect();
    let survivors = Etcdctl {
        endpoints: rest.join(","),
        ca: ctl.ca.clone(),
        cert: ctl.cert.clone(),
    };
    survivors.eventually(&["put", "/w/2", "after-kill"], Duration::from_secs(30));
    watch.wait_for("after-kill", Duration::from_secs(20));
    assert_eq!(
        survivors.ok(&["get", "/before", "--print-value-only"]),
        "1\n"
    );
    let ttl = survivors.ok(&["lease", "timetolive", "--keys", &id]);
    assert!(
        ttl.contains("/leased") && !ttl.contains("already expired"),
        "{ttl}"
    );
    let kept = survivors.ok(&["lease", "keep-alive", "--once", &id]);
    assert!(kept.contains("keepalived"), "{kept}");
    assert!(survivors.ok(&["lease", "revoke", &id]).contains("revoked"));
    assert_eq!(survivors.ok(&["get", "/leased"]), "");
}

#[test]
fn rust_etcd_client_rewatches_from_its_next_revision_after_a_pd_leader_sigkill() {
    use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions, WatchOptions};
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::make(&dir.path().join("certs"));
    let (mut pds, urls) = start_three(dir.path(), &certs);
    let read = |name: &str| std::fs::read(certs.path(name)).unwrap();
    let tls = TlsOptions::new()
        .ca_certificate(Certificate::from_pem(read("ca.pem")))
        .identity(Identity::from_pem(
            read("client.pem"),
            read("client-key.pem"),
        ));
    let options = ConnectOptions::new().with_tls(tls);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let connect = |endpoints: Vec<String>| {
            let options = options.clone();
            async move {
                let deadline = Instant::now() + Duration::from_secs(30);
                loop {
                    if let Ok(mut c) = Client::connect(&endpoints, Some(options.clone())).await {
                        if c.put("/ready", "1", None).await.is_ok() {
                            return c;
                        }
                    }
                    assert!(Instant::now() < deadline, "no PD leader took writes");
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            }
        };
        let mut client = connect(urls.clone()).await;
        let mut stream = client
            .watch("/r/", Some(WatchOptions::new().with_prefix()))
            .await
            .unwrap();
        // The watcher exists once its "created" answer is in.
        let created = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .expect("created within 10 s")
            .unwrap()
            .unwrap();
        assert!(created.created());
        client.put("/r/1", "a", None).await.unwrap();
        let (value, seen) = next_put(&mut stream).await;
        assert_eq!(value, "a");

        let leader_id = client.status().await.unwrap().leader();
        let leader = (0..3)
            .find(|i| tiox_pd::replication::member_id(&format!("pd{i}")) == leader_id)
            .expect("the leader is one of the three");
        pds[leader].kill();

        // The stream breaks (the leader it was served by is gone) ...
        let broke = tokio::time::timeout(Duration::from_secs(20), async {
            while let Ok(Some(_)) = stream.message().await {}
        })
        .await;
        assert!(broke.is_ok(), "the watch stream outlived its leader");
        // ... a write lands on the new leader meanwhile ...
        let rest: Vec<String> = (0..3)
            .filter(|i| *i != leader)
            .map(|i| urls[i].clone())
            .collect();
        let mut client = connect(rest).await;
        client.put("/r/2", "b", None).await.unwrap();
        // ... and the watch re-created from the next revision sees it.
        let mut again = client
            .watch(
                "/r/",
                Some(
                    WatchOptions::new()
                        .with_prefix()
                        .with_start_revision(seen + 1),
                ),
            )
            .await
            .unwrap();
        let (value, rev) = next_put(&mut again).await;
        assert_eq!(value, "b", "the missed put, replayed");
        assert!(rev > seen, "{rev} <= {seen}");
    });
}

/// The value and revision of the next event on a Rust-client watch stream
/// (skipping the "created" answer and progress reports), within 10 s.
async fn next_put(stream: &mut etcd_client::WatchStream) -> (String, i64) {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let m = stream.message().await.unwrap().expect("the stream is open");
            if let Some(kv) = m.events().first().and_then(|e| e.kv()) {
                return (kv.value_str().unwrap().to_string(), kv.mod_revision());
            }
        }
    })
    .await
    .expect("an event within 10 s")
}
