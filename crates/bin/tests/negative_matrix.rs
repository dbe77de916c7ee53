//! The negative matrix: every port of every component refuses what it must,
//! and each refusal leaves a log line in that server's log naming the peer
//! and the reason.
//!
//! Cluster ports (PD client and peer ports, TiKV gRPC and status ports,
//! TiDB's status port), each with a CN allow-list configured: a plaintext
//! client, a TLS client without a certificate, a client certificate from
//! another CA, an expired client certificate from the cluster CA and one
//! from the cluster CA whose common name is not in `cert-allowed-cn`
//! (`cluster-verify-cn` for TiDB).
//!
//! TiDB's MySQL port (its own CA, client certificates optional, per-user
//! `REQUIRE` rules): plaintext under `require-secure-transport`, no client
//! certificate for a `REQUIRE X509` user, a client certificate from another
//! CA, an expired one, and a wrong subject for a `REQUIRE SUBJECT` user.

#[path = "support/cluster.rs"]
mod cluster;
mod tidb_common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cluster::{Certs, Cluster, Options};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tiox_security::certgen::{CertAuthority, Profile, Spec, Validity};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The CN of the certificate that allow-lists refuse.
const INTRUDER: &str = "intruder";

/// What a client saw after connecting (and, with TLS, the handshake).
#[derive(Debug)]
enum Seen {
    /// The server sent something (HTTP ports: its response).
    Answer(String),
    /// The connection stayed open and silent (PD's peer port waits for
    /// Raft frames from an accepted peer).
    Open,
    /// The handshake failed or the server closed the connection (why, for
    /// failure messages).
    Closed(#[allow(dead_code)] String),
}

/// Connects, sends `send` (plaintext clients always send an HTTP request)
/// and reads what comes back within `wait`; also returns the client's own
/// address (the peer the server's log must name).
async fn attempt(
    addr: &str,
    tls: Option<Arc<rustls::ClientConfig>>,
    send: &[u8],
    wait: Duration,
) -> (Seen, String) {
    let tcp = match TcpStream::connect(addr).await {
        Ok(t) => t,
        Err(e) => return (Seen::Closed(e.to_string()), String::new()),
    };
    let me = tcp.local_addr().map(|a| a.to_string()).unwrap_or_default();
    let mut buf = Vec::new();
    let exchange = async {
        match tls {
            None => {
                let mut s = tcp;
                s.write_all(HTTP_GET).await?;
                s.read_to_end(&mut buf).await?;
            }
            Some(cfg) => {
                let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
                let mut s = tokio_rustls::TlsConnector::from(cfg)
                    .connect(name, tcp)
                    .await?;
                s.write_all(send).await?;
                s.flush().await?;
                // Read until the server closes; a refusal after a TLS 1.3
                // handshake arrives here as an alert.
                loop {
                    let mut chunk = [0u8; 4096];
                    let n = s.read(&mut chunk).await?;
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
            }
        }
        Ok::<(), std::io::Error>(())
    };
    let seen = match tokio::time::timeout(wait, exchange).await {
        Err(_) if buf.is_empty() => Seen::Open,
        Ok(Err(e)) if buf.is_empty() => Seen::Closed(e.to_string()),
        Ok(Ok(())) if buf.is_empty() => Seen::Closed("closed without an answer".into()),
        _ => Seen::Answer(String::from_utf8_lossy(&buf).into_owned()),
    };
    (seen, me)
}

const HTTP_GET: &[u8] = b"GET /status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

/// Whether `seen` means the port served the client: an HTTP answer that is
/// not an allow-list refusal (TiKV refuses per request with 403 / gRPC
/// UNAUTHENTICATED), or, on PD's peer port, an open connection.
fn served(seen: &Seen, http: bool) -> bool {
    match seen {
        Seen::Answer(text) => http && text.starts_with("HTTP/") && !text.contains(" 403 "),
        Seen::Open => !http,
        Seen::Closed(_) => false,
    }
}

/// A rustls client trusting `ca`, with `cert` as its client certificate.
fn client_config(
    ca: &Path,
    cert: Option<&(PathBuf, PathBuf)>,
    alpn: &[u8],
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let b = rustls::ClientConfig::builder_with_provider(tiox_security::material::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut cfg = match cert {
        None => b.with_no_client_auth(),
        Some((c, k)) => b
            .with_client_auth_cert(
                CertificateDer::pem_file_iter(c)
                    .unwrap()
                    .map(|c| c.unwrap())
                    .collect(),
                PrivateKeyDer::from_pem_file(k).unwrap(),
            )
            .unwrap(),
    };
    cfg.alpn_protocols = vec![alpn.to_vec()];
    Arc::new(cfg)
}

/// Issues a client certificate from the CA in `ca_dir` (`ca.pem`,
/// `ca-key.pem`) into `out`; `expired` makes one that ended yesterday.
fn issue(ca_dir: &Path, cn: &str, expired: bool, out: &Path) -> (PathBuf, PathBuf) {
    let ca = CertAuthority::from_pem(
        &std::fs::read_to_string(ca_dir.join("ca.pem")).unwrap(),
        &std::fs::read_to_string(ca_dir.join("ca-key.pem")).unwrap(),
    )
    .unwrap();
    let mut spec = Spec::new(cn, &[], Profile::Client);
    if expired {
        let now = time::OffsetDateTime::now_utc();
        spec.validity = Validity::Window {
            not_before: now - time::Duration::days(10),
            not_after: now - time::Duration::days(1),
        };
    }
    let issued = ca.issue(&spec).unwrap();
    let stem = format!("{cn}{}", if expired { "-expired" } else { "" });
    let (c, k) = (
        out.join(format!("{stem}.pem")),
        out.join(format!("{stem}-key.pem")),
    );
    std::fs::write(&c, &issued.cert_pem).unwrap();
    std::fs::write(&k, issued.key_pem.expose()).unwrap();
    (c, k)
}

/// Waits until `log()`, past its first `since` bytes, has a line with
/// `reason`, `peer` and `label` (which port); panics with the log otherwise.
async fn assert_logged(
    what: &str,
    case: &str,
    (reason, peer, label): (&str, &str, &str),
    log: &dyn Fn() -> String,
    since: usize,
) {
    for _ in 0..100 {
        let text = log();
        let found = text
            .get(since..)
            .unwrap_or_default()
            .lines()
            .find(|l| l.contains(reason) && l.contains(peer) && l.contains(label));
        if let Some(line) = found {
            eprintln!("{what}, {case}: refused, logged: {line}");
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "{what}, {case}: no log line naming the peer {peer} and \"{reason}\"\n{}",
        log()
    );
}

/// Waits until the audit log at `path` has a JSON line for `peer` with
/// `reason`; returns it.
async fn assert_audited(what: &str, path: &Path, peer: &str, reason: &str) -> serde_json::Value {
    for _ in 0..100 {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let found = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["peer"] == peer && v["reason"] == reason);
        if let Some(v) = found {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "{what}: no audit line for {peer} with reason {reason} in {}:\n{}",
        path.display(),
        std::fs::read_to_string(path).unwrap_or_default()
    );
}

/// One port of the matrix.
struct Port<'a> {
    /// Its name in messages.
    what: &'static str,
    /// host:port.
    addr: &'a str,
    /// What the server's log lines for this port contain.
    label: &'static str,
    /// The ALPN protocol it serves.
    alpn: &'static [u8],
    /// What a client sends after the handshake.
    send: &'static [u8],
    /// HTTP (the good client gets an answer) or PD's Raft transport (the
    /// good client's connection stays open).
    http: bool,
    /// The server's log.
    log: &'a dyn Fn() -> String,
    /// The server's security audit log.
    audit: PathBuf,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_cluster_port_refuses_plaintext_no_cert_foreign_ca_expired_and_wrong_cn_and_logs_why()
{
    let allowed = "[\"client\", \"pd-server\", \"tikv-server\", \"tidb-server\"]";
    let c = Cluster::start_opts(
        true,
        1,
        &Options {
            pd_toml: Some(format!("[security]\ncert-allowed-cn = {allowed}\n")),
            kv_toml: Some(format!("[security]\ncert-allowed-cn = {allowed}\n")),
            pd_raft: true,
            ..Options::default()
        },
    )
    .await;
    let certs = c.certs.as_ref().unwrap();
    let work = tempfile::tempdir().unwrap();
    let tidb_toml = work.path().join("tidb.toml");
    std::fs::write(
        &tidb_toml,
        format!("[security]\ncluster-verify-cn = {allowed}\n"),
    )
    .unwrap();
    let tidb = tidb_common::TidbServer::start(
        work.path(),
        &[
            format!("--config={}", tidb_toml.display()),
            format!("--cluster-ssl-ca={}", certs.path("ca.pem")),
            format!("--cluster-ssl-cert={}", certs.path("tidb-server.pem")),
            format!("--cluster-ssl-key={}", certs.path("tidb-server-key.pem")),
            "--initialize-insecure".into(),
        ],
    );

    let ca = certs.dir.join("ca.pem");
    let good = (
        certs.dir.join("client.pem"),
        certs.dir.join("client-key.pem"),
    );
    let foreign = Certs::make(&work.path().join("foreign"));
    let foreign = (
        foreign.dir.join("client.pem"),
        foreign.dir.join("client-key.pem"),
    );
    let expired = issue(&certs.dir, "client", true, work.path());
    let intruder = issue(&certs.dir, INTRUDER, false, work.path());

    let pd_log = || c.pd.log_text();
    let kv_log = || c.kv[0].log_text();
    let db_log = || tidb.log();
    let tidb_status = format!("127.0.0.1:{}", tidb.status_port);
    let pd_audit = c.dir.path().join("pd1/security-audit.log");
    let kv_audit = c.dir.path().join("kv0/security-audit.log");
    let db_audit = work.path().join("data/security-audit.log");
    let http = |what, addr, label, log, audit: &PathBuf| Port {
        what,
        addr,
        label,
        alpn: b"http/1.1",
        send: HTTP_GET,
        http: true,
        log,
        audit: audit.clone(),
    };
    let ports = [
        http(
            "PD client port",
            &c.pd_addr,
            "client port",
            &pd_log,
            &pd_audit,
        ),
        Port {
            what: "PD peer port",
            addr: &c.pd_peer_addr,
            label: "peer port",
            alpn: tiox_pd::replication::PEER_ALPN,
            send: b"",
            http: false,
            log: &pd_log,
            audit: pd_audit.clone(),
        },
        http(
            "TiKV gRPC port",
            &c.kv_addrs[0],
            "gRPC port",
            &kv_log,
            &kv_audit,
        ),
        http(
            "TiKV status port",
            &c.kv_status[0],
            "tikv-server status port",
            &kv_log,
            &kv_audit,
        ),
        http(
            "TiDB status port",
            &tidb_status,
            "tidb-server status port",
            &db_log,
            &db_audit,
        ),
    ];
    for port in ports {
        let Port {
            what,
            addr,
            label,
            alpn,
            send,
            http,
            log,
            audit,
        } = port;
        // A refusal comes at once; the good client on the peer port is
        // "served" when its connection is still open after 2 s.
        let refusal_wait = Duration::from_secs(10);
        let wait = if http {
            refusal_wait
        } else {
            Duration::from_secs(2)
        };
        // The cluster's client certificate is served (the matrix means
        // something).
        let (seen, _) = attempt(
            addr,
            Some(client_config(&ca, Some(&good), alpn)),
            send,
            wait,
        )
        .await;
        assert!(
            served(&seen, http),
            "{what}: the cluster client was not served: {seen:?}\n{}",
            log()
        );
        let cases: [(&str, Option<Arc<rustls::ClientConfig>>, &str, &str); 5] = [
            ("plaintext", None, "did not speak TLS", "plaintext"),
            (
                "no client certificate",
                Some(client_config(&ca, None, alpn)),
                "presented no certificate",
                "no_certificate",
            ),
            (
                "foreign CA",
                Some(client_config(&ca, Some(&foreign), alpn)),
                "unknown authority",
                "unknown_ca",
            ),
            (
                "expired certificate",
                Some(client_config(&ca, Some(&expired), alpn)),
                "expired",
                "expired",
            ),
            (
                "common name not in the allow-list",
                Some(client_config(&ca, Some(&intruder), alpn)),
                "\"intruder\" is not in [security] c",
                "not_allowed",
            ),
        ];
        for (case, cfg, reason, label_of_reason) in cases {
            let since = log().len();
            let (seen, me) = attempt(addr, cfg, send, refusal_wait).await;
            assert!(
                !served(&seen, http),
                "{what} served a client with {case}: {seen:?}"
            );
            assert_logged(what, case, (reason, &me, label), log, since).await;
            let line = assert_audited(what, &audit, &me, label_of_reason).await;
            // What the peer presented is in the line (never key material).
            if case == "foreign CA" || case.starts_with("common name") {
                assert!(
                    line["subject"].as_str().is_some_and(|s| !s.is_empty()),
                    "{line}"
                );
                assert!(line["serial"].as_str().is_some(), "{line}");
            }
            assert!(!line.to_string().contains("PRIVATE"), "{line}");
        }
    }
    // The good clients above (rustls on aws-lc-rs) negotiated the
    // post-quantum hybrid with every port, as each component counts it.
    let pq = "group=\"X25519MLKEM768\"";
    for (what, addr, listeners) in [
        ("pd-server", c.pd_addr.clone(), &["client", "peer"][..]),
        (
            "tikv-server",
            c.kv_status[0].clone(),
            &["grpc", "status"][..],
        ),
        ("tidb-server", tidb_status.clone(), &["status"][..]),
    ] {
        let (code, body) = cluster::http_get(&addr, "/metrics", Some(certs.client_tls()))
            .await
            .unwrap();
        assert_eq!(code, 200, "{what}: {body}");
        for l in listeners {
            let line = format!("tiox_tls_handshakes_total{{listener=\"{l}\",{pq}}}");
            assert!(body.contains(&line), "{what}: no {line}:\n{body}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_client_certificate_is_refused_on_pd_and_tikv_ports_and_logged_with_its_serial() {
    let crl = "[security]\ncrl-path = \"{certs}/crl.pem\"\n".to_string();
    let c = Cluster::start_opts(
        true,
        1,
        &Options {
            pd_toml: Some(crl.clone()),
            kv_toml: Some(crl),
            pd_raft: true,
            crl: true,
            ..Options::default()
        },
    )
    .await;
    let certs = c.certs.as_ref().unwrap();
    let work = tempfile::tempdir().unwrap();
    let ca = certs.dir.join("ca.pem");
    let leaked = issue(&certs.dir, "client", false, work.path());
    let serial = {
        let der = CertificateDer::from_pem_file(&leaked.0).unwrap();
        tiox_security::CertInfo::from_der(&der).unwrap().serial
    };
    let pd_log = || c.pd.log_text();
    let kv_log = || c.kv[0].log_text();
    let pd_audit = c.dir.path().join("pd1/security-audit.log");
    let kv_audit = c.dir.path().join("kv0/security-audit.log");
    let http = |what, addr, log, audit: &PathBuf| Port {
        what,
        addr,
        label: "revoked",
        alpn: b"http/1.1",
        send: HTTP_GET,
        http: true,
        log,
        audit: audit.clone(),
    };
    let ports = [
        http("PD client port", &c.pd_addr, &pd_log, &pd_audit),
        Port {
            what: "PD peer port",
            addr: &c.pd_peer_addr,
            label: "revoked",
            alpn: tiox_pd::replication::PEER_ALPN,
            send: b"",
            http: false,
            log: &pd_log,
            audit: pd_audit.clone(),
        },
        http("TiKV gRPC port", &c.kv_addrs[0], &kv_log, &kv_audit),
        http("TiKV status port", &c.kv_status[0], &kv_log, &kv_audit),
    ];
    let wait = |http: bool| Duration::from_secs(if http { 10 } else { 2 });
    // Before the revocation the certificate is served everywhere.
    for p in &ports {
        let cfg = client_config(&ca, Some(&leaked), p.alpn);
        let (seen, _) = attempt(p.addr, Some(cfg), p.send, wait(p.http)).await;
        assert!(
            served(&seen, p.http),
            "{}: not served before revocation: {seen:?}\n{}",
            p.what,
            (p.log)()
        );
    }
    // Revoke it: the running servers reload the list.
    certs.write_crl(&[&leaked.0]);
    for p in &ports {
        let since = (p.log)().len();
        let cfg = client_config(&ca, Some(&leaked), p.alpn);
        let (seen, me) = attempt(p.addr, Some(cfg), p.send, wait(p.http)).await;
        assert!(
            !served(&seen, p.http),
            "{} served a revoked certificate: {seen:?}",
            p.what
        );
        let reason = format!("serial {serial}");
        let case = "revoked certificate";
        assert_logged(p.what, case, (&reason, &me, p.label), p.log, since).await;
        let line = assert_audited(p.what, &p.audit, &me, "revoked").await;
        assert_eq!(line["serial"], serial.as_str(), "{line}");
    }
    // The metrics count it by reason.
    let (_, body) = c.pd_get("/metrics").await.unwrap();
    assert!(
        body.contains(
            "tiox_tls_handshake_failures_total{listener=\"client\",reason=\"revoked\"} 1"
        ),
        "{body}"
    );
}

#[test]
fn mysql_port_refuses_plaintext_missing_foreign_expired_and_wrong_subject_and_logs_why() {
    use tidb_common::{mysql, plain_args, verify_args, Pki, TidbServer};
    let test =
        "mysql_port_refuses_plaintext_missing_foreign_expired_and_wrong_subject_and_logs_why";
    let Some(client) = tidb_common::mysql_client(test) else {
        return;
    };
    let pki = Pki::new();
    let mut args = pki.server_tls_args();
    args.extend([
        "--require-secure-transport".into(),
        "--initialize-insecure".into(),
    ]);
    let s = TidbServer::start(pki.dir.path(), &args);
    let root = |sql: &str| {
        let r = mysql(&client, &s, "root", None, &verify_args(&pki), sql);
        assert!(r.ok, "{sql}: {}", r.err);
    };
    root("CREATE USER 'ops'@'%' REQUIRE X509");
    root("CREATE USER 'svc'@'%' REQUIRE SUBJECT '/O=tiox/CN=mysql-client'");

    let mysql_ca = Path::new(&pki.path("mysql")).to_path_buf();
    let other = tempfile::tempdir().unwrap();
    let foreign = Certs::make(&other.path().join("certs"));
    let with_cert = |(c, k): (PathBuf, PathBuf)| {
        let mut v = verify_args(&pki);
        v.push(format!("--ssl-cert={}", c.display()));
        v.push(format!("--ssl-key={}", k.display()));
        v
    };
    let foreign = with_cert((
        foreign.dir.join("mysql/client.pem"),
        foreign.dir.join("mysql/client-key.pem"),
    ));
    let expired = with_cert(issue(&mysql_ca, "mysql-client", true, other.path()));
    let intruder = with_cert(issue(&mysql_ca, INTRUDER, false, other.path()));

    // (case, user, client flags, client error, server log reason, audit reason)
    type Case<'a> = (&'a str, &'a str, Vec<String>, &'a str, &'a str, &'a str);
    let cases: [Case; 5] = [
        (
            "plaintext under require-secure-transport",
            "root",
            plain_args(),
            "ERROR 3159",
            "connected without TLS and require-secure-transport is on",
            "plaintext",
        ),
        (
            "no client certificate for REQUIRE X509",
            "ops",
            verify_args(&pki),
            "ERROR 1045",
            "requires a client certificate and none was presented",
            "require_not_met",
        ),
        (
            "foreign CA",
            "ops",
            foreign,
            "",
            "unknown authority",
            "unknown_ca",
        ),
        (
            "expired certificate",
            "ops",
            expired,
            "",
            "expired",
            "expired",
        ),
        (
            "wrong subject for REQUIRE SUBJECT",
            "svc",
            intruder,
            "ERROR 1045",
            "CN=intruder",
            "require_not_met",
        ),
    ];
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let log = || s.log();
    let audit = pki.dir.path().join("data/security-audit.log");
    for (case, user, flags, error, reason, audited) in cases {
        let before = std::fs::read_to_string(&audit)
            .unwrap_or_default()
            .lines()
            .count();
        let since = log().len();
        let r = mysql(&client, &s, user, None, &flags, "SELECT 1");
        assert!(!r.ok, "MySQL port served {user} with {case}: {}", r.out);
        assert!(r.err.contains(error), "{case}: {}", r.err);
        rt.block_on(assert_logged(
            "MySQL port",
            case,
            (reason, "127.0.0.1:", "tiox_sql::server"),
            &log,
            since,
        ));
        // One audit line with the reason, for this refusal.
        let text = std::fs::read_to_string(&audit).unwrap_or_default();
        let new: Vec<serde_json::Value> = text
            .lines()
            .skip(before)
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        assert_eq!(new.len(), 1, "{case}: {text}");
        assert_eq!(new[0]["reason"], audited, "{case}: {}", new[0]);
        assert_eq!(new[0]["listener"], "mysql", "{case}: {}", new[0]);
    }
}

/// Idle TCP connections that never send a ClientHello do not keep a valid
/// client out: with the cap lowered to 8 in flight (and a 30 s handshake
/// timeout, so the timeout alone would not free them), 300 idle
/// connections to each TiKV port and PD's client port leave a valid client
/// served within a second, and the audit log grows by a bounded number of
/// lines (one address: at most 20 a minute).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_beyond_the_handshake_cap_do_not_keep_a_valid_client_out() {
    let limits = "[security]\nmax-handshakes = 8\nhandshake-timeout = \"30s\"\n".to_string();
    let c = Cluster::start_opts(
        true,
        1,
        &Options {
            pd_toml: Some(limits.clone()),
            kv_toml: Some(limits),
            ..Options::default()
        },
    )
    .await;
    let certs = c.certs.as_ref().unwrap();
    let ca = certs.dir.join("ca.pem");
    let good = (
        certs.dir.join("client.pem"),
        certs.dir.join("client-key.pem"),
    );
    for (what, addr, audit) in [
        ("TiKV gRPC port", &c.kv_addrs[0], "kv0"),
        ("TiKV status port", &c.kv_status[0], "kv0"),
        ("PD client port", &c.pd_addr, "pd1"),
    ] {
        let audit = c.dir.path().join(audit).join("security-audit.log");
        let lines_before = std::fs::read_to_string(&audit)
            .unwrap_or_default()
            .lines()
            .count();
        let mut idle = Vec::new();
        for _ in 0..300 {
            idle.push(TcpStream::connect(addr.as_str()).await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let start = std::time::Instant::now();
        let (seen, _) = attempt(
            addr,
            Some(client_config(&ca, Some(&good), b"http/1.1")),
            HTTP_GET,
            Duration::from_secs(5),
        )
        .await;
        let took = start.elapsed();
        assert!(
            served(&seen, true),
            "{what}: valid client not served: {seen:?}"
        );
        assert!(took < Duration::from_secs(1), "{what}: took {took:?}");
        drop(idle);
        let lines = std::fs::read_to_string(&audit)
            .unwrap_or_default()
            .lines()
            .count();
        assert!(
            lines - lines_before <= 21,
            "{what}: {} audit lines for one address",
            lines - lines_before
        );
    }
    let (_, body) = c.pd_get("/metrics").await.unwrap();
    assert!(
        body.contains("tiox_tls_handshake_failures_total{listener=\"client\",reason=\"overload\"}"),
        "{body}"
    );
}
