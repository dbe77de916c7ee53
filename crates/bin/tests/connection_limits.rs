//! A connection flood past `max-server-connections`: `tidb-server
//! --store=unistore` with `--max-server-connections=20` and TLS on the
//! MySQL port holds 20 sessions; 5,000 further connection attempts (a few
//! hundred at a time) must each be refused with ERROR 1040 "Too many
//! connections" (or, at worst, a closed connection), none hanging, while
//! the 20 sessions keep answering `SELECT 1`; the server's resident memory
//! after the flood stays within [`RSS_GROWTH`] of before, and a refused
//! attempt does not hold a slot (a session closed makes room for a new
//! one).

mod tidb_common;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use mysql_async::prelude::*;
use mysql_async::{Conn, Opts, OptsBuilder, SslOpts};
use tidb_common::{free_port, Pki};
use tiox_bin::launch::Proc;

/// Sessions allowed.
const MAX: usize = 20;
/// Connection attempts past the limit.
const FLOOD: usize = 5_000;
/// Attempts in flight at once.
const CONCURRENCY: usize = 200;
/// The longest one refused attempt may take (connect, read the ERR).
const ATTEMPT: Duration = Duration::from_secs(10);
/// The longest a `SELECT 1` on a held session may take during the flood.
const PING: Duration = Duration::from_secs(5);
/// How much the server's VmRSS may grow over the flood.
const RSS_GROWTH: u64 = 64 << 20;

fn vm_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS");
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_past_max_server_connections_gets_1040_and_spares_the_sessions() {
    let pki = Pki::new();
    let work = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut args = vec![
        "-P".to_string(),
        port.to_string(),
        "--host=127.0.0.1".into(),
        format!("--status={}", free_port()),
        "--status-host=127.0.0.1".into(),
        format!("--data-dir={}", work.path().join("data").display()),
        "--store=unistore".into(),
        "--initialize-insecure".into(),
        format!("--max-server-connections={MAX}"),
    ];
    args.extend(pki.server_tls_args());
    let tidb = Proc::spawn(
        "tidb",
        &PathBuf::from(env!("CARGO_BIN_EXE_tidb-server")),
        &args,
        work.path().join("tidb.log"),
    );
    let pid = tidb.pid().unwrap();
    let opts: Opts = OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .prefer_socket(false)
        .user(Some("root"))
        .ssl_opts(Some(SslOpts::default().with_root_certs(vec![
            PathBuf::from(pki.path("mysql/ca.pem")).into(),
        ])))
        .into();

    // The 20 sessions (the first waits for the server to come up).
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut sessions = Vec::new();
    while sessions.len() < MAX {
        match Conn::new(opts.clone()).await {
            Ok(c) => sessions.push(c),
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "session {}: {e}\n{}",
                    sessions.len(),
                    tidb.log_text()
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    for c in &mut sessions {
        let one: Option<i64> = c.query_first("SELECT 1").await.unwrap();
        assert_eq!(one, Some(1));
    }
    let rss_before = vm_rss(pid);

    // The sessions answer throughout the flood.
    let flooding = Arc::new(AtomicBool::new(true));
    let pings = Arc::new(AtomicU64::new(0));
    let pinger = {
        let (flooding, pings) = (flooding.clone(), pings.clone());
        let mut sessions = std::mem::take(&mut sessions);
        tokio::spawn(async move {
            while flooding.load(Ordering::Relaxed) {
                for (i, c) in sessions.iter_mut().enumerate() {
                    let r = tokio::time::timeout(PING, c.query_first::<i64, _>("SELECT 1")).await;
                    match r {
                        Ok(Ok(Some(1))) => pings.fetch_add(1, Ordering::Relaxed),
                        other => panic!("session {i} during the flood: {other:?}"),
                    };
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            sessions
        })
    };

    let t0 = Instant::now();
    let outcomes: Vec<(Result<u16, String>, Duration)> = futures::stream::iter(0..FLOOD)
        .map(|_| {
            let opts = opts.clone();
            async move {
                let t = Instant::now();
                let r = match tokio::time::timeout(ATTEMPT, Conn::new(opts)).await {
                    Err(_) => Err(format!("no answer within {ATTEMPT:?}")),
                    Ok(Ok(c)) => {
                        let _ = c.disconnect().await;
                        Err("connected past the limit".to_string())
                    }
                    Ok(Err(mysql_async::Error::Server(e))) if e.code == 1040 => Ok(1040),
                    Ok(Err(mysql_async::Error::Server(e))) => {
                        Err(format!("server error {}: {}", e.code, e.message))
                    }
                    // Refused cleanly: the connection was closed.
                    Ok(Err(mysql_async::Error::Io(e))) => {
                        eprintln!("attempt: I/O {e}");
                        Ok(0)
                    }
                    Ok(Err(e)) => Err(format!("{e}")),
                };
                (r, t.elapsed())
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let flood_took = t0.elapsed();
    flooding.store(false, Ordering::Relaxed);
    let mut sessions = pinger
        .await
        .expect("the sessions answered during the flood");

    let refused_1040 = outcomes.iter().filter(|(r, _)| r == &Ok(1040)).count();
    let closed = outcomes.iter().filter(|(r, _)| r == &Ok(0)).count();
    let slowest = outcomes.iter().map(|(_, d)| *d).max().unwrap();
    let bad: Vec<_> = outcomes
        .iter()
        .filter(|(r, _)| r.is_err())
        .take(5)
        .collect();
    assert!(
        bad.is_empty(),
        "{} of {FLOOD} attempts went wrong, e.g. {bad:?}",
        outcomes.iter().filter(|(r, _)| r.is_err()).count()
    );
    assert!(
        refused_1040 * 100 >= FLOOD * 99,
        "only {refused_1040} of {FLOOD} attempts got ERROR 1040 ({closed} were just closed)"
    );

    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_after = vm_rss(pid);
    eprintln!(
        "flood: {FLOOD} attempts in {flood_took:?} ({CONCURRENCY} at a time): {refused_1040} got 1040, \
         {closed} closed, slowest {slowest:?}; {} SELECT 1 on the sessions meanwhile; \
         VmRSS {} KiB before, {} KiB after",
        pings.load(Ordering::Relaxed),
        rss_before / 1024,
        rss_after / 1024
    );
    assert!(
        pings.load(Ordering::Relaxed) >= MAX as u64,
        "the sessions were not pinged"
    );
    assert!(
        rss_after <= rss_before + RSS_GROWTH,
        "VmRSS grew from {} KiB to {} KiB over the flood",
        rss_before / 1024,
        rss_after / 1024
    );

    // Refused attempts hold no slot: one session closed makes room for one.
    for c in &mut sessions {
        let one: Option<i64> = c.query_first("SELECT 1").await.unwrap();
        assert_eq!(one, Some(1));
    }
    sessions.pop().unwrap().disconnect().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut again = loop {
        match Conn::new(opts.clone()).await {
            Ok(c) => break c,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "no room after a session closed: {e}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let one: Option<i64> = again.query_first("SELECT 1").await.unwrap();
    assert_eq!(one, Some(1));
    match Conn::new(opts.clone()).await {
        Err(mysql_async::Error::Server(e)) => assert_eq!(e.code, 1040, "{e}"),
        other => panic!("the 21st session: {:?}", other.map(|_| "connected")),
    }
    again.disconnect().await.unwrap();
    for c in sessions {
        c.disconnect().await.unwrap();
    }
    drop(tidb);
}
