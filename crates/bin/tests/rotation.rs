//! Zero-downtime certificate rotation: while a client works continuously,
//! certificates are replaced on disk with new ones from the same CA. No
//! operation fails, and every new handshake presents the new certificates.
//!
//! Two workloads: the KV client (PD, TiKV and the client's own certificate
//! rotate), and SQL over MySQL TLS to `tidb-server --store=tikv` on three
//! replicas (PD, TiKV, tidb-server's cluster certificate and its MySQL
//! server certificate rotate, the last one also reloaded by `ALTER INSTANCE
//! RELOAD TLS`; then every store is restarted in turn, so Raft links and
//! tidb-server's connections are made again with the new certificates).

#[path = "support/cluster.rs"]
mod cluster;
#[path = "support/sql.rs"]
mod sql;
mod tidb_common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cluster::{Certs, Cluster};
use mysql_async::prelude::*;
use mysql_async::Conn;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use tiox_security::certgen::{CertAuthority, Profile, Spec};
use tiox_security::inspect::fingerprint;
use tiox_security::ClientTls;

/// The two scenarios run one after the other (2 cores).
static SERIAL: std::sync::LazyLock<tokio::sync::Mutex<()>> =
    std::sync::LazyLock::new(|| tokio::sync::Mutex::new(()));

fn replace(path: &Path, contents: &[u8]) {
    let tmp = path.with_extension("rotating");
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn file_fp(path: &str) -> String {
    fingerprint(
        CertificateDer::pem_file_iter(path)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .as_ref(),
    )
}

async fn served_fp(tls: &ClientTls, addr: &str) -> String {
    let s = tls.connect_tcp(addr).await.unwrap();
    fingerprint(s.get_ref().1.peer_certificates().unwrap()[0].as_ref())
}

/// The CA whose files are `{dir}ca.pem` and `{dir}ca-key.pem` ("" for the
/// cluster CA, "mysql/" for the MySQL-facing one).
fn load_ca(certs: &Certs, dir: &str) -> CertAuthority {
    CertAuthority::from_pem(
        &std::fs::read_to_string(certs.path(&format!("{dir}ca.pem"))).unwrap(),
        &std::fs::read_to_string(certs.path(&format!("{dir}ca-key.pem"))).unwrap(),
    )
    .unwrap()
}

/// Issues a new certificate for `cn` from `ca` (server profiles for
/// 127.0.0.1 and localhost) and replaces `{prefix}-key.pem`, then
/// `{prefix}.pem`, each by an atomic rename. Returns the new fingerprint.
fn reissue(ca: &CertAuthority, certs: &Certs, prefix: &str, cn: &str, profile: Profile) -> String {
    let hosts: &[&str] = if profile == Profile::Client {
        &[]
    } else {
        &["127.0.0.1", "localhost"]
    };
    let issued = ca.issue(&Spec::new(cn, hosts, profile)).unwrap();
    let cert = certs.path(&format!("{prefix}.pem"));
    let before = file_fp(&cert);
    replace(
        Path::new(&certs.path(&format!("{prefix}-key.pem"))),
        issued.key_pem.expose().as_bytes(),
    );
    replace(Path::new(&cert), issued.cert_pem.as_bytes());
    let after = file_fp(&cert);
    assert_ne!(before, after, "{prefix}.pem was replaced");
    after
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_every_certificate_under_load_fails_no_operation() {
    let _serial = SERIAL.lock().await;
    let c = Cluster::start(true, 1).await;
    let certs = c.certs.as_ref().unwrap();
    let client = c.client().await;
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let load = {
        let (client, stop, ok, failed) = (client.clone(), stop.clone(), ok.clone(), failed.clone());
        tokio::spawn(async move {
            let raw = client.raw();
            let txn = client.txn();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("rot/{i}").into_bytes();
                let r = async {
                    raw.put(&key, b"v").await?;
                    let mut t = txn.begin().await?;
                    t.put(format!("rot-t/{i}").into_bytes(), b"v".to_vec());
                    t.commit().await?;
                    raw.get(&key).await
                }
                .await;
                match r {
                    Ok(Some(_)) => ok.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
                i += 1;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(700)).await;

    // Rotate: new PD, TiKV and client certificates from the same CA.
    let ca = load_ca(certs, "");
    for (name, profile) in [
        ("pd-server", Profile::Server),
        ("tikv-server", Profile::Server),
        ("client", Profile::Client),
    ] {
        reissue(&ca, certs, name, name, profile);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();

    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert!(ok > 0, "the load ran");
    assert_eq!(
        failed,
        0,
        "{failed} of {} operations failed during the rotation\n{}",
        ok + failed,
        c.logs()
    );

    // New handshakes present the new certificates.
    let probe = certs.client_tls();
    assert_eq!(
        served_fp(&probe, &c.pd_addr).await,
        file_fp(&certs.path("pd-server.pem")),
        "PD serves its new certificate"
    );
    assert_eq!(
        served_fp(&probe, &c.kv_addrs[0]).await,
        file_fp(&certs.path("tikv-server.pem")),
        "TiKV serves its new certificate"
    );
    eprintln!("rotation: {ok} operations (raw put + 2PC transaction + read) during the rotation, none failed");
}

/// What the SQL workload did: statements that succeeded, the failures
/// (statement and error), and new MySQL connections (TLS handshakes).
#[derive(Default)]
struct SqlTally {
    ok: AtomicU64,
    handshakes: AtomicU64,
    failures: Mutex<Vec<String>>,
}

impl SqlTally {
    fn record<T>(&self, what: &str, r: mysql_async::Result<T>) -> Option<T> {
        match r {
            Ok(v) => {
                self.ok.fetch_add(1, Ordering::Relaxed);
                Some(v)
            }
            Err(e) => {
                self.failures.lock().unwrap().push(format!("{what}: {e}"));
                None
            }
        }
    }
}

/// Transaction `i` of worker `w`: inserts row `i`, bumps row `i - 1` and
/// reads it back, then commits. None after the first failed statement.
async fn sql_transaction(conn: &mut Conn, tally: &SqlTally, w: u64, i: u64) -> Option<()> {
    let id = w * 1_000_000 + i;
    tally.record("BEGIN", conn.query_drop("BEGIN").await)?;
    tally.record(
        "INSERT",
        conn.exec_drop(
            "INSERT INTO rot.t (id, worker, n, v) VALUES (?, ?, 0, ?)",
            (id, w, format!("row {i} of worker {w}")),
        )
        .await,
    )?;
    if i > 0 {
        tally.record(
            "UPDATE",
            conn.exec_drop("UPDATE rot.t SET n = n + 1 WHERE id = ?", (id - 1,))
                .await,
        )?;
        let n: Option<i64> = tally.record(
            "SELECT",
            conn.exec_first("SELECT n FROM rot.t WHERE id = ?", (id - 1,))
                .await,
        )?;
        if n != Some(1) {
            tally
                .failures
                .lock()
                .unwrap()
                .push(format!("SELECT n of row {}: {n:?}, expected 1", id - 1));
            return None;
        }
    }
    tally.record("COMMIT", conn.query_drop("COMMIT").await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_every_certificate_under_a_sql_workload_fails_no_statement() {
    const WORKERS: u64 = 3;
    /// Each worker opens a new connection (a new TLS handshake on the
    /// MySQL port) every this many transactions.
    const TXNS_PER_CONNECTION: u64 = 4;
    let _serial = SERIAL.lock().await;
    let mut c = Cluster::start(true, 3).await;
    c.wait_for_voters(3).await;
    let certs = c.certs.as_ref().unwrap();
    let work = tempfile::tempdir().unwrap();
    let s = Arc::new(sql::start_tidb(&c, work.path()));
    let o = sql::opts(&c, &s);
    let mut admin = sql::connect_opts(&o, &s).await;
    admin.query_drop("CREATE DATABASE rot").await.unwrap();
    admin
        .query_drop(
            "CREATE TABLE rot.t (id BIGINT PRIMARY KEY, worker INT NOT NULL, n INT NOT NULL, v VARCHAR(64))",
        )
        .await
        .unwrap();
    let mysql_ca = certs.path("mysql/ca.pem");
    assert_eq!(
        sql::mysql_served_fp(&mysql_ca, s.port).await,
        file_fp(&certs.path("mysql/server.pem")),
        "the probe reads the MySQL port's certificate"
    );

    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(SqlTally::default());
    let mut workers = Vec::new();
    for w in 0..WORKERS {
        let (stop, tally, o) = (stop.clone(), tally.clone(), o.clone());
        workers.push(tokio::spawn(async move {
            let mut conn: Option<Conn> = None;
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if i.is_multiple_of(TXNS_PER_CONNECTION) {
                    if let Some(old) = conn.take() {
                        tally.record("disconnect", old.disconnect().await);
                    }
                    conn = tally.record("connect", Conn::new(o.clone()).await);
                    tally.handshakes.fetch_add(1, Ordering::Relaxed);
                }
                let Some(cn) = conn.as_mut() else {
                    break;
                };
                if sql_transaction(cn, &tally, w, i).await.is_none() {
                    let _ = cn.query_drop("ROLLBACK").await;
                }
                i += 1;
            }
            i
        }));
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;

    // Rotate: PD, TiKV and tidb-server's cluster certificates from the
    // cluster CA, tidb-server's MySQL certificate from the MySQL CA.
    let (ca, my_ca) = (load_ca(certs, ""), load_ca(certs, "mysql/"));
    let handshakes_before = tally.handshakes.load(Ordering::Relaxed);
    let mut fps = std::collections::BTreeMap::new();
    for (ca, prefix, cn, profile) in [
        (&ca, "pd-server", "pd-server", Profile::Server),
        (&ca, "tikv-server", "tikv-server", Profile::Server),
        (&ca, "tidb-server", "tidb-server", Profile::Server),
        (&my_ca, "mysql/server", "tidb-server", Profile::MysqlServer),
    ] {
        fps.insert(prefix, reissue(ca, certs, prefix, cn, profile));
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    // The MySQL certificate was reloaded on the file change (the next
    // handshake), and is reloaded on request too.
    assert_eq!(
        sql::mysql_served_fp(&mysql_ca, s.port).await,
        fps["mysql/server"],
        "the MySQL port serves the new certificate after the files changed"
    );
    tally.record(
        "ALTER INSTANCE RELOAD TLS",
        admin.query_drop("ALTER INSTANCE RELOAD TLS").await,
    );
    assert!(
        s.log()
            .contains("ALTER INSTANCE RELOAD TLS: certificate reloaded"),
        "{}",
        s.log()
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut txns = 0;
    for w in workers {
        txns += tokio::time::timeout(Duration::from_secs(60), w)
            .await
            .expect("a worker hung")
            .unwrap();
    }
    let handshakes_after = tally.handshakes.load(Ordering::Relaxed) - handshakes_before;
    let ok = tally.ok.load(Ordering::Relaxed);
    let failures = tally.failures.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "{} of {} statements failed during the rotation:\n{}\n--- tidb-server ---\n{}\n{}",
        failures.len(),
        ok + failures.len() as u64,
        failures.join("\n"),
        s.log(),
        c.logs()
    );
    assert!(
        handshakes_after >= WORKERS,
        "new MySQL connections were made during and after the rotation ({handshakes_after})"
    );
    let rows: Option<i64> = admin
        .query_first("SELECT COUNT(*) FROM rot.t")
        .await
        .unwrap();
    assert_eq!(rows, Some(txns as i64), "one row per committed transaction");

    // The new certificates work on links made from now on: each store in
    // turn is killed, a row is written while it is down (the quorum of the
    // two others: stores restarted earlier take part through Raft links
    // made with their new certificates) and it is restarted. tidb-server's
    // cluster client reconnects to restarted stores with its new
    // certificate. (Done before anything connects to tidb-server's status
    // port, which would reload the same files.)
    for victim in 0..c.kv.len() {
        c.kv[victim].kill();
        let id = 9_000_000 + victim as u64;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let r = admin
                .exec_drop(
                    "INSERT INTO rot.t (id, worker, n, v) VALUES (?, 9, 0, 'while a store is down')",
                    (id,),
                )
                .await;
            match r {
                Ok(()) => break,
                // An earlier attempt whose answer was lost did commit.
                Err(e) if sql::error_code(&e) == Some(1062) => break,
                Err(e) => assert!(
                    Instant::now() < deadline,
                    "no write with kv{victim} down after the rotation: {e}\n{}",
                    c.logs()
                ),
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        c.kv[victim].start();
    }
    c.wait_for_stores(c.kv.len()).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match admin
            .query_first::<i64, _>("SELECT COUNT(*) FROM rot.t")
            .await
        {
            Ok(n) => {
                assert_eq!(n, Some(txns as i64 + c.kv.len() as i64));
                break;
            }
            Err(e) => {
                assert!(Instant::now() < deadline, "no read after the restarts: {e}");
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    }
    assert!(
        s.log()
            .lines()
            .any(|l| l.contains("reloaded TLS certificates") && l.contains(&fps["tidb-server"])),
        "tidb-server's cluster client reloaded its new certificate\n{}",
        s.log()
    );

    // New handshakes present the new certificates: PD, TiKV, tidb-server's
    // status port (its cluster certificate) and its MySQL port.
    let certs = c.certs.as_ref().unwrap();
    let probe = certs.client_tls();
    assert_eq!(
        served_fp(&probe, &c.pd_addr).await,
        fps["pd-server"],
        "PD serves its new certificate"
    );
    for kv in &c.kv_addrs {
        assert_eq!(
            served_fp(&probe, kv).await,
            fps["tikv-server"],
            "TiKV {kv} serves its new certificate"
        );
    }
    assert_eq!(
        served_fp(&probe, &format!("127.0.0.1:{}", s.status_port)).await,
        fps["tidb-server"],
        "tidb-server's status port serves its new cluster certificate"
    );
    assert_eq!(
        sql::mysql_served_fp(&mysql_ca, s.port).await,
        fps["mysql/server"],
        "the MySQL port serves the new certificate"
    );
    eprintln!(
        "rotation under SQL: {ok} statements in {txns} transactions over {} MySQL connections, none failed",
        tally.handshakes.load(Ordering::Relaxed)
    );
}
