//! The SQL compatibility suite, end to end: every `tests/sql/*.slt` file at
//! the repository root runs against ONE real cluster (PD + 1 TiKV, mutual
//! TLS) and one `tidb-server --store=tikv`, through a real MySQL client
//! (`mysql_async`, text protocol). Each file gets a fresh database
//! (`slt_<file stem>`) as its current database.
//!
//! The dialect and the runner are shared with the in-process suite
//! (`cargo test -p tiox-sql --test sql_logic`, on the embedded store): see
//! `crates/sql/tests/slt/mod.rs`. Files marked `# cluster-only: REASON`
//! run here only.
//!
//! tidb-server runs without `--data-dir` (stateless on TiKV) and under
//! `prlimit --as=8000000000`. A second test,
//! `many_table_joins_are_planned_and_memory_is_bounded_per_statement`,
//! joins 8 tables of 100 rows both ways, runs a 10^10-row cross join into
//! ERROR 8175 while another session is answered, checks tidb-server's
//! peak RSS against the quota, stops a SELECT by `max_execution_time`
//! (ERROR 3024) and one by `tidb_server_memory_limit` (ERROR 8176), and
//! prints what it measured. A third,
//! `kill_query_stops_a_running_select_and_kill_closes_the_connection`,
//! stops a running join with `KILL QUERY` from another session (ERROR 1317
//! within a second), checks who may kill, and closes an idle connection
//! with `KILL`. A fourth,
//! `explain_analyze_reports_actual_rows_time_and_memory_per_operator`,
//! checks EXPLAIN ANALYZE's actual rows per operator.

#[path = "support/cluster.rs"]
mod cluster;
#[path = "../../sql/tests/slt/mod.rs"]
mod slt;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cluster::Cluster;
use mysql_async::prelude::*;
use mysql_async::{Conn, OptsBuilder};

/// The tidb-server under test, killed on drop.
struct Tidb {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Drop for Tidb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Tidb {
    /// Starts tidb-server on `c` with no data directory (on TiKV it keeps
    /// no state of its own), its address space capped at 8 GB so a
    /// runaway statement cannot take the machine down.
    fn start(c: &Cluster, work: &Path) -> Tidb {
        let certs = c.certs.as_ref().expect("a TLS cluster");
        let port = tiox_bin::launch::free_port();
        let status = tiox_bin::launch::free_port();
        let log = work.join("tidb.log");
        // TIDB_SERVER_BIN: another build of tidb-server (a release one, to
        // measure it against this cluster).
        let bin = std::env::var("TIDB_SERVER_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_tidb-server").to_string());
        let child = Command::new("prlimit")
            .arg("--as=8000000000")
            .arg("--")
            .arg(bin)
            .arg("-P")
            .arg(port.to_string())
            .arg("--host=127.0.0.1")
            .arg(format!("--status={status}"))
            .arg("--status-host=127.0.0.1")
            .arg("--store=tikv")
            .arg(format!("--path={}", c.pd_addr))
            .arg(format!("--cluster-ssl-ca={}", certs.path("ca.pem")))
            .arg(format!(
                "--cluster-ssl-cert={}",
                certs.path("tidb-server.pem")
            ))
            .arg(format!(
                "--cluster-ssl-key={}",
                certs.path("tidb-server-key.pem")
            ))
            .arg("--initialize-insecure")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn tidb-server");
        let mut t = Tidb { child, port, log };
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(st)) = t.child.try_wait() {
                panic!("tidb-server exited ({st}):\n{}", t.log_text());
            }
            assert!(Instant::now() < deadline, "tidb-server not listening");
            std::thread::sleep(Duration::from_millis(50));
        }
        t
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn connect(&self, db: Option<&str>) -> Conn {
        let opts = OptsBuilder::default()
            .ip_or_hostname("127.0.0.1")
            .tcp_port(self.port)
            .prefer_socket(false)
            .user(Some("root"))
            .db_name(db);
        Conn::new(opts)
            .await
            .unwrap_or_else(|e| panic!("connect: {e}\n{}", self.log_text()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_logic_files_match_mysql_behaviour() {
    let files = slt::slt_files();
    let c = Cluster::start(true, 1).await;
    let work = tempfile::tempdir().unwrap();
    let tidb = Tidb::start(&c, work.path());
    slt::run_files(tidb.port, &files).await;
}

/// The largest resident size tidb-server reached (VmHWM), in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Joins of many tables are planned (hash joins on the equalities), and a
/// statement whose buffers pass `tidb_mem_quota_query` fails with ERROR
/// 8175 while tidb-server stays within the quota and serves other
/// sessions. Prints the times it measured (no timed assertions).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_table_joins_are_planned_and_memory_is_bounded_per_statement() {
    let c = Cluster::start(true, 1).await;
    let work = tempfile::tempdir().unwrap();
    let tidb = Tidb::start(&c, work.path());
    let mut conn = tidb.connect(Some("test")).await;
    for t in 1..=8 {
        conn.query_drop(format!("CREATE TABLE j{t} (a INT PRIMARY KEY, b INT)"))
            .await
            .unwrap();
        let values: Vec<String> = (1..=100).map(|i| format!("({i}, {i})")).collect();
        conn.query_drop(format!("INSERT INTO j{t} VALUES {}", values.join(", ")))
            .await
            .unwrap();
    }
    let tables: Vec<String> = (1..=8).map(|t| format!("j{t}")).collect();
    let links: Vec<String> = (1..8).map(|t| format!("j{t}.b = j{}.b", t + 1)).collect();
    let comma = format!(
        "SELECT COUNT(*) FROM {} WHERE {}",
        tables.join(", "),
        links.join(" AND ")
    );
    let joins = format!(
        "SELECT COUNT(*) FROM j1 {}",
        (2..=8)
            .map(|t| format!("JOIN j{t} ON j{}.b = j{t}.b", t - 1))
            .collect::<Vec<_>>()
            .join(" ")
    );
    for (how, sql) in [("comma + WHERE", &comma), ("JOIN ... ON", &joins)] {
        let t = Instant::now();
        let n: Option<i64> = conn.query_first(sql.as_str()).await.unwrap();
        eprintln!("8 tables x 100 rows, {how}: {:?}", t.elapsed());
        assert_eq!(n, Some(100), "{sql}");
    }
    // A correlated EXISTS: one semi join, not a subquery per outer row.
    let t = Instant::now();
    let n: Option<i64> = conn
        .query_first("SELECT COUNT(*) FROM j1 WHERE EXISTS (SELECT 1 FROM j2 WHERE j2.b = j1.b)")
        .await
        .unwrap();
    eprintln!("correlated EXISTS, 100 x 100 rows: {:?}", t.elapsed());
    assert_eq!(n, Some(100));
    let plan: Vec<mysql_async::Row> = conn.query(format!("EXPLAIN {comma}")).await.unwrap();
    assert!(
        plan.iter()
            .filter(|r| r.get::<String, _>(0).unwrap().contains("HashJoin"))
            .count()
            == 7,
        "EXPLAIN shows 7 hash joins"
    );

    let quota: Option<i64> = conn
        .query_first("SELECT @@tidb_mem_quota_query")
        .await
        .unwrap();
    assert_eq!(quota, Some(1 << 30), "TiDB's default quota");

    // Another session keeps being answered while the big statement runs.
    let mut other = tidb.connect(Some("test")).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut answered = 0;
            let mut slowest = Duration::ZERO;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let t = Instant::now();
                let n: Option<i64> = other.query_first("SELECT COUNT(*) FROM j1").await.unwrap();
                assert_eq!(n, Some(100));
                slowest = slowest.max(t.elapsed());
                answered += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (answered, slowest)
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t = Instant::now();
    let err = conn
        .query_drop("SELECT * FROM j1, j2, j3, j4, j5 ORDER BY 1")
        .await
        .expect_err("10^10 rows do not fit in 1 GiB");
    let took = t.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (answered, slowest) = watcher.await.unwrap();
    match &err {
        mysql_async::Error::Server(e) => {
            assert_eq!((e.code, e.state.as_str()), (8175, "HY000"), "{e:?}");
            assert!(
                e.message
                    .contains("exceeding the allowed memory limit for a single SQL query"),
                "{e:?}"
            );
        }
        other => panic!("expected ERROR 8175, got {other:?}"),
    }
    let pid = tidb.child.id();
    let peak = peak_rss(pid);
    eprintln!(
        "5-table cross join: ERROR 8175 after {took:?}; tidb-server peak RSS {} MiB; \
         the other session answered {answered} queries meanwhile (slowest {slowest:?})",
        peak >> 20
    );
    assert!(answered > 0, "the other session was answered");
    assert!(
        peak < (1 << 30) + (256 << 20),
        "peak RSS {peak} stays below the quota + 256 MiB"
    );
    // The session is usable afterwards, and a session quota applies.
    conn.query_drop("SET tidb_mem_quota_query = 1048576")
        .await
        .unwrap();
    let err = conn
        .query_drop("SELECT * FROM j1, j2, j3 ORDER BY 1")
        .await
        .expect_err("a million rows do not fit in 1 MiB");
    assert!(
        matches!(&err, mysql_async::Error::Server(e) if e.code == 8175),
        "{err:?}"
    );
    let n: Option<i64> = conn.query_first("SELECT COUNT(*) FROM j1").await.unwrap();
    assert_eq!(n, Some(100));

    // max_execution_time stops a running SELECT (10^8 pairs tested).
    conn.query_drop("SET tidb_mem_quota_query = 0")
        .await
        .unwrap();
    conn.query_drop("SET max_execution_time = 300")
        .await
        .unwrap();
    let t = Instant::now();
    let err = conn
        .query_drop("SELECT COUNT(*) FROM j1, j2, j3, j4 WHERE j1.a + j2.a + j3.a + j4.a < 0")
        .await
        .expect_err("stopped by max_execution_time");
    eprintln!(
        "max_execution_time = 300 ms: stopped after {:?}",
        t.elapsed()
    );
    assert!(
        matches!(&err, mysql_async::Error::Server(e) if e.code == 3024),
        "{err:?}"
    );

    // tidb_server_memory_limit: past it, the statement holding the most
    // memory is cancelled (no session quota applies here).
    conn.query_drop("SET max_execution_time = 0").await.unwrap();
    let default: Option<i64> = conn
        .query_first("SELECT @@global.tidb_server_memory_limit")
        .await
        .unwrap();
    assert!(default.unwrap_or(0) > 0, "80% of the machine by default");
    conn.query_drop("SET GLOBAL tidb_server_memory_limit = 67108864")
        .await
        .unwrap();
    let t = Instant::now();
    let err = conn
        .query_drop("SELECT * FROM j1, j2, j3 ORDER BY 1")
        .await
        .expect_err("a million rows do not fit in 64 MiB");
    eprintln!(
        "tidb_server_memory_limit = 64 MiB: ERROR after {:?}",
        t.elapsed()
    );
    match &err {
        mysql_async::Error::Server(e) => {
            assert_eq!(e.code, 8176, "{e:?}");
            assert!(e.message.contains("tidb-server instance"), "{e:?}");
        }
        other => panic!("expected ERROR 8176, got {other:?}"),
    }
    conn.query_drop("SET GLOBAL tidb_server_memory_limit = '80%'")
        .await
        .unwrap();
    let n: Option<i64> = conn.query_first("SELECT COUNT(*) FROM j1").await.unwrap();
    assert_eq!(n, Some(100), "the session runs its next statement");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_query_stops_a_running_select_and_kill_closes_the_connection() {
    let c = Cluster::start(true, 1).await;
    let work = tempfile::tempdir().unwrap();
    let tidb = Tidb::start(&c, work.path());
    let mut admin = tidb.connect(Some("test")).await;
    for t in 1..=4 {
        admin
            .query_drop(format!("CREATE TABLE k{t} (a INT PRIMARY KEY, b INT)"))
            .await
            .unwrap();
        let values: Vec<String> = (1..=100).map(|i| format!("({i}, {i})")).collect();
        admin
            .query_drop(format!("INSERT INTO k{t} VALUES {}", values.join(", ")))
            .await
            .unwrap();
    }
    admin.query_drop("CREATE USER 'other'@'%'").await.unwrap();
    let mut victim = tidb.connect(Some("test")).await;
    let id: u64 = victim
        .query_first("SELECT CONNECTION_ID()")
        .await
        .unwrap()
        .unwrap();

    // KILL QUERY: the running statement ends with ERROR 1317 within a
    // second; the connection stays usable.
    let running = tokio::spawn(async move {
        let r = victim
            .query_drop("SELECT COUNT(*) FROM k1, k2, k3, k4 WHERE k1.a + k2.a + k3.a + k4.a < 0")
            .await;
        (victim, r, Instant::now())
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let killed_at = Instant::now();
    admin.query_drop(format!("KILL QUERY {id}")).await.unwrap();
    let (mut victim, r, ended) = running.await.unwrap();
    let err = r.expect_err("stopped by KILL QUERY");
    match &err {
        mysql_async::Error::Server(e) => assert_eq!(
            (e.code, e.state.as_str(), e.message.as_str()),
            (1317, "70100", "Query execution was interrupted"),
        ),
        other => panic!("expected ERROR 1317, got {other:?}"),
    }
    let took = ended.saturating_duration_since(killed_at);
    eprintln!("KILL QUERY: the statement ended {took:?} after the KILL");
    assert!(
        took < Duration::from_secs(1),
        "ended {took:?} after KILL QUERY"
    );
    let n: Option<i64> = victim.query_first("SELECT COUNT(*) FROM k1").await.unwrap();
    assert_eq!(n, Some(100), "the connection runs the next statement");

    // Another user without CONNECTION_ADMIN may not kill it; unknown ids
    // are refused.
    let opts = OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(tidb.port)
        .prefer_socket(false)
        .user(Some("other"));
    let mut other = Conn::new(opts).await.unwrap();
    let refused = other
        .query_drop(format!("KILL QUERY {id}"))
        .await
        .expect_err("not the owner");
    assert!(
        matches!(&refused, mysql_async::Error::Server(e) if e.code == 1095),
        "{refused:?}"
    );
    // Nor EXPLAIN (or EXPLAIN ANALYZE) what it may not read.
    for sql in [
        "EXPLAIN SELECT * FROM test.k1",
        "EXPLAIN ANALYZE SELECT * FROM test.k1",
    ] {
        let denied = other
            .query_drop(sql)
            .await
            .expect_err("no SELECT privilege");
        assert!(
            matches!(&denied, mysql_async::Error::Server(e) if e.code == 1142),
            "{sql}: {denied:?}"
        );
    }
    let unknown = admin
        .query_drop("KILL 999999")
        .await
        .expect_err("no such connection");
    assert!(
        matches!(&unknown, mysql_async::Error::Server(e) if e.code == 1094),
        "{unknown:?}"
    );
    // The owner may kill its own statements without any privilege.
    let own: u64 = other
        .query_first("SELECT CONNECTION_ID()")
        .await
        .unwrap()
        .unwrap();
    let mut other2 = {
        let opts = OptsBuilder::default()
            .ip_or_hostname("127.0.0.1")
            .tcp_port(tidb.port)
            .prefer_socket(false)
            .user(Some("other"));
        Conn::new(opts).await.unwrap()
    };
    other2
        .query_drop(format!("KILL QUERY {own}"))
        .await
        .unwrap();

    // KILL: an idle connection is closed at once.
    admin.query_drop(format!("KILL {id}")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let gone = victim
        .query_drop("SELECT 1")
        .await
        .expect_err("the connection was closed");
    assert!(
        !matches!(&gone, mysql_async::Error::Server(_)),
        "a closed connection, not a server error: {gone:?}"
    );
    let n: Option<i64> = admin.query_first("SELECT COUNT(*) FROM k1").await.unwrap();
    assert_eq!(n, Some(100), "the killer's session is untouched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_analyze_reports_actual_rows_time_and_memory_per_operator() {
    let c = Cluster::start(true, 1).await;
    let work = tempfile::tempdir().unwrap();
    let tidb = Tidb::start(&c, work.path());
    let mut conn = tidb.connect(Some("test")).await;
    conn.query_drop("CREATE TABLE a (id INT PRIMARY KEY, k INT)")
        .await
        .unwrap();
    conn.query_drop("CREATE TABLE b (id INT PRIMARY KEY, k INT)")
        .await
        .unwrap();
    let values: Vec<String> = (1..=20).map(|i| format!("({i}, {})", i % 5)).collect();
    for t in ["a", "b"] {
        conn.query_drop(format!("INSERT INTO {t} VALUES {}", values.join(", ")))
            .await
            .unwrap();
    }
    let rows: Vec<mysql_async::Row> = conn
        .query(
            "EXPLAIN ANALYZE SELECT a.k, COUNT(*) FROM a JOIN b ON a.k = b.k \
             WHERE a.id > 10 GROUP BY a.k ORDER BY a.k LIMIT 3",
        )
        .await
        .unwrap();
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| (0..9).map(|i| r.get::<String, _>(i).unwrap()).collect())
        .collect();
    for r in &table {
        eprintln!("{}", r.join(" | "));
    }
    let act = |op: &str| -> u64 {
        table
            .iter()
            .find(|r| r[0].contains(op))
            .unwrap_or_else(|| panic!("no {op} in {table:?}"))[2]
            .parse()
            .unwrap()
    };
    // a.id > 10: ids 11..=20, two of each k; b: four of each k.
    assert_eq!(act("TopN"), 3);
    assert_eq!(act("HashAgg"), 5);
    assert_eq!(act("HashJoin"), 40);
    assert!(table.iter().all(|r| r[5].starts_with("time:")), "{table:?}");
    assert!(
        table
            .iter()
            .any(|r| r[0].contains("HashJoin") && r[7].ends_with("KB")),
        "the hash join's build side is charged: {table:?}"
    );
    assert_eq!(table[0][8], "N/A");

    // One table: the filter's rows out, the scan's rows read.
    let rows: Vec<mysql_async::Row> = conn
        .query("EXPLAIN ANALYZE SELECT id FROM a WHERE k = 1")
        .await
        .unwrap();
    let acts: Vec<(String, String)> = rows
        .iter()
        .map(|r| {
            (
                r.get::<String, _>(0).unwrap(),
                r.get::<String, _>(2).unwrap(),
            )
        })
        .collect();
    assert_eq!(
        acts,
        [
            ("Selection_1".to_string(), "4".to_string()),
            ("└─TableFullScan_2".to_string(), "20".to_string()),
        ]
    );
}
