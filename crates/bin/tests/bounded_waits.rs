//! Bounded waits with PD gone: on a mutual-TLS cluster (1 PD, 1 TiKV, a
//! `tidb-server --store=tikv`), PD is frozen (SIGSTOP: its sockets stay
//! open and silent, the hardest case for timeouts) and later killed
//! (SIGKILL: connections refused). Every statement that needs a
//! timestamp must then FAIL within [`FAIL_BOUND`] with a MySQL error whose
//! message names PD, never hang; once PD is back (SIGCONT, or started
//! again on its data directory) the SAME tidb-server must serve new
//! statements within [`RECOVER_BOUND`], without a restart.
//!
//! tidb-server is given a second PD endpoint, FIRST in `--path`, that
//! accepts TCP connections and never answers (a frozen member): the
//! client asks every endpoint at once when it looks for the leader, so it
//! costs nothing, and service resumes within [`PD_TIMEOUT`] of PD's return.
//!
//! The bounds come from the client's own timeouts
//! (`tiox_client::pd::PD_TIMEOUT`, 5 s): a timestamp request is one TSO
//! exchange bounded by PD_TIMEOUT, preceded, after a failure, by one
//! re-discovery of the PD leader (GetMembers, also bounded by PD_TIMEOUT).

#[path = "support/cluster.rs"]
mod cluster;
#[path = "support/sql.rs"]
mod sql;
mod tidb_common;

use std::time::{Duration, Instant};

use cluster::Cluster;
use mysql_async::prelude::*;
use mysql_async::Conn;
use sql::{cluster_args, connect, error_code};
use tidb_common::TidbServer;
use tiox_client::pd::PD_TIMEOUT;

/// The longest a statement may take to fail with PD gone: a leader
/// re-discovery and a TSO exchange, each bounded by PD_TIMEOUT.
const FAIL_BOUND: Duration = Duration::from_secs(2 * PD_TIMEOUT.as_secs());
/// Scheduling and process slack on a loaded 2-core machine.
const SLACK: Duration = Duration::from_secs(3);
/// How soon after PD is back a statement must succeed again.
const RECOVER_BOUND: Duration = Duration::from_secs(20);
/// A statement that takes longer than this is a hang: the test stops
/// waiting (and fails) rather than wait for ever.
const HANG: Duration = Duration::from_secs(60);

/// Runs `sqls` in order on `c` until one fails; returns the first error
/// (code, message) and how long the whole sequence took. Panics on a hang.
async fn first_error(c: &mut Conn, sqls: &[&str]) -> (Option<(Option<u16>, String)>, Duration) {
    let t0 = Instant::now();
    for s in sqls {
        match tokio::time::timeout(HANG, c.query_drop(*s)).await {
            Err(_) => panic!("`{s}` hung for {HANG:?} with PD gone"),
            Ok(Err(e)) => return (Some((error_code(&e), e.to_string())), t0.elapsed()),
            Ok(Ok(())) => {}
        }
    }
    (None, t0.elapsed())
}

/// Each statement that needs a timestamp fails within the bound, naming
/// PD. Returns the longest time a failure took.
async fn assert_statements_fail_naming_pd(c: &mut Conn, what: &str, next_id: &mut i64) -> Duration {
    let insert = format!("INSERT INTO t VALUES ({next_id}, 1)");
    *next_id += 1;
    let cases: Vec<Vec<&str>> = vec![
        vec![&insert],
        vec!["SELECT COUNT(*) FROM t WHERE v >= 0"],
        vec!["BEGIN", "SELECT * FROM t", "COMMIT"],
    ];
    let mut longest = Duration::ZERO;
    for sqls in cases {
        let (err, took) = first_error(c, &sqls).await;
        eprintln!("PD {what}: {sqls:?} -> {err:?} after {took:?}");
        let Some((code, msg)) = err else {
            panic!("{sqls:?} succeeded with PD {what}");
        };
        assert!(
            took < FAIL_BOUND + SLACK,
            "{sqls:?} took {took:?} to fail with PD {what} (bound {FAIL_BOUND:?} + {SLACK:?})"
        );
        assert!(code.is_some(), "{sqls:?}: not a MySQL error: {msg}");
        assert!(
            msg.contains("PD"),
            "{sqls:?}: the error does not name PD: {msg}"
        );
        longest = longest.max(took);
        // Whatever the sequence left open is rolled back (no PD needed).
        let _ = tokio::time::timeout(HANG, c.query_drop("ROLLBACK")).await;
    }
    longest
}

/// Retries an INSERT on `c` until it succeeds; returns how long that took.
async fn wait_until_served(c: &mut Conn, what: &str, next_id: &mut i64) -> Duration {
    let t0 = Instant::now();
    loop {
        let sql = format!("INSERT INTO t VALUES ({next_id}, 2)");
        match tokio::time::timeout(HANG, c.query_drop(&sql)).await {
            Err(_) => panic!("`{sql}` hung for {HANG:?} after PD {what}"),
            Ok(Ok(())) => {
                *next_id += 1;
                return t0.elapsed();
            }
            Ok(Err(e)) => {
                assert!(
                    t0.elapsed() < RECOVER_BOUND,
                    "no statement served {RECOVER_BOUND:?} after PD {what}: {e}"
                );
                eprintln!("after PD {what}: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

fn signal(pid: u32, sig: libc::c_int) {
    // The PD process this test started, by its own pid.
    assert_eq!(
        unsafe { libc::kill(pid as libc::pid_t, sig) },
        0,
        "kill({pid}, {sig})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_fail_within_a_bound_naming_pd_while_pd_is_gone_and_work_again_after() {
    let mut c = Cluster::start(true, 1).await;
    let work = tempfile::tempdir().unwrap();
    // A member that accepts connections and never answers, listed first.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let mut args: Vec<String> = cluster_args(&c)
        .into_iter()
        .map(|a| match a.strip_prefix("--path=") {
            Some(pd) => format!("--path={silent_addr},{pd}"),
            None => a,
        })
        .collect();
    let certs = c.certs.as_ref().unwrap();
    args.extend([
        "--initialize-insecure".into(),
        format!("--ssl-ca={}", certs.path("mysql/ca.pem")),
        format!("--ssl-cert={}", certs.path("mysql/server.pem")),
        format!("--ssl-key={}", certs.path("mysql/server-key.pem")),
    ]);
    let tidb = TidbServer::start(work.path(), &args);
    let mut conn = connect(&c, &tidb).await;
    conn.query_drop("CREATE TABLE test.t (id INT PRIMARY KEY, v INT)")
        .await
        .unwrap();
    conn.query_drop("USE test").await.unwrap();
    conn.query_drop("INSERT INTO t VALUES (1, 1), (2, 1), (3, 1)")
        .await
        .unwrap();
    let n: Option<i64> = conn.query_first("SELECT COUNT(*) FROM t").await.unwrap();
    assert_eq!(n, Some(3));
    let mut next_id = 10;

    // PD frozen: its sockets accept and say nothing.
    let pid = c.pd.pid().expect("PD runs");
    signal(pid, libc::SIGSTOP);
    let stopped = assert_statements_fail_naming_pd(&mut conn, "stopped", &mut next_id).await;
    signal(pid, libc::SIGCONT);
    let after_cont = wait_until_served(&mut conn, "continued", &mut next_id).await;
    assert!(
        after_cont < PD_TIMEOUT,
        "{after_cont:?} to serve again after SIGCONT: the silent endpoint held up the leader search"
    );

    // PD killed: connections are refused; then started again on its data.
    c.pd.kill();
    let killed = assert_statements_fail_naming_pd(&mut conn, "killed", &mut next_id).await;
    c.pd.start();
    let after_restart = wait_until_served(&mut conn, "restarted", &mut next_id).await;

    let rows: Vec<(i64, i64)> = conn.query("SELECT id, v FROM t ORDER BY id").await.unwrap();
    eprintln!(
        "bounds: failure with PD stopped {stopped:?}, killed {killed:?} (bound {FAIL_BOUND:?}); \
         served again {after_cont:?} after SIGCONT, {after_restart:?} after restart; rows {rows:?}"
    );
    // The failed INSERTs wrote nothing; the two after recovery did.
    assert_eq!(
        rows.iter().filter(|(_, v)| *v == 2).count(),
        2,
        "{rows:?}\n{}",
        c.logs()
    );
    assert!(rows.iter().all(|(id, v)| *v == 2 || *id < 10), "{rows:?}");
    drop(conn);
    drop(tidb);
    drop(silent);
}
