//! The bank-transfer checker through SQL: N accounts in a table, transfers
//! in explicit (pessimistic) transactions over several MySQL connections
//! (TLS) to `tidb-server --store=tikv` on a 3-replica mutual-TLS cluster,
//! while TiKV stores are SIGKILLed and restarted one after another. A
//! reader sums the balances in a transaction over and over: every sum, and
//! the final one, must be the initial total.
//!
//! Transactions that fail with an error the workload may retry (deadlock,
//! lock wait timeout, write conflict, cluster unavailable during failover)
//! are rolled back and run again; they are counted and printed. Any other
//! error fails the test, and so does any wrong total.

#[path = "support/cluster.rs"]
mod cluster;
#[path = "support/sql.rs"]
mod sql;
mod tidb_common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cluster::Cluster;
use mysql_async::prelude::*;
use mysql_async::Conn;
use mysql_async::Opts;
use sql::{connect_opts, error_code, opts, start_tidb, RETRYABLE};
use tidb_common::TidbServer;
use tiox_sql::engine::catalog::Catalog;
use tiox_sql::engine::codec::record_key;

const ACCOUNTS: u32 = 10;
const INITIAL: i64 = 1000;
/// Longest any one statement may take (a store is down for 4 s at most).
const STATEMENT: Duration = Duration::from_secs(30);

/// What the workload met, by MySQL error code, and the errors it may not
/// meet (with their messages).
#[derive(Default)]
struct Tally {
    retried: Mutex<BTreeMap<u16, u64>>,
    unexpected: Mutex<Vec<String>>,
}

impl Tally {
    /// Records a failed statement; true if the transaction may be retried.
    fn failed(&self, what: &str, e: &StmtError) -> bool {
        if let StmtError::Sql(e) = e {
            if let Some(code) = error_code(e).filter(|c| RETRYABLE.contains(c)) {
                *self.retried.lock().unwrap().entry(code).or_default() += 1;
                return true;
            }
        }
        self.unexpected.lock().unwrap().push(format!("{what}: {e}"));
        false
    }
}

#[derive(Debug)]
enum StmtError {
    Sql(mysql_async::Error),
    TimedOut,
}

impl std::fmt::Display for StmtError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StmtError::Sql(e) => write!(f, "{e}"),
            StmtError::TimedOut => write!(f, "no answer within {STATEMENT:?}"),
        }
    }
}

async fn bounded<T>(
    f: impl std::future::Future<Output = mysql_async::Result<T>>,
) -> Result<T, StmtError> {
    match tokio::time::timeout(STATEMENT, f).await {
        Ok(r) => r.map_err(StmtError::Sql),
        Err(_) => Err(StmtError::TimedOut),
    }
}

/// How a transfer is written.
#[derive(Clone, Copy, Debug)]
enum Mode {
    /// Pessimistic; `UPDATE ... SET balance = balance - ?` takes the locks.
    Relative,
    /// Pessimistic; `SELECT ... FOR UPDATE` of the source row first (in
    /// transfer order, so deadlocks happen), then as `Relative`.
    LockThenRelative,
    /// `BEGIN OPTIMISTIC`; plain SELECTs, then write the new balances
    /// computed here: only the commit's conflict check (9007) prevents a
    /// lost update, and the transaction must not be retried silently.
    Optimistic,
    /// Pessimistic; `SELECT ... FOR UPDATE` both rows, then write the new
    /// balances computed here from what the locking reads returned.
    LockedRead,
}

/// The modes of the runs with store kills. (`LockedRead` here once saw a
/// checker total of 9975 != 10000 after a restart: a pessimistic lock
/// missed a commit hidden behind a newer rollback record, and the locked
/// re-read was stale — see tests/mvcc/pessimistic_lock_sees_commits_hidden_behind_newer_rollbacks.txt.)
const MODES: [Mode; 4] = [
    Mode::Relative,
    Mode::LockThenRelative,
    Mode::Optimistic,
    Mode::LockedRead,
];

async fn balance(conn: &mut Conn, id: u32, for_update: bool) -> Result<i64, StmtError> {
    let sql = if for_update {
        "SELECT balance FROM bank.accounts WHERE id = ? FOR UPDATE"
    } else {
        "SELECT balance FROM bank.accounts WHERE id = ?"
    };
    let b: Option<i64> = bounded(conn.exec_first(sql, (id,))).await?;
    Ok(b.unwrap_or_else(|| panic!("account {id} disappeared")))
}

/// One transfer of `amount` from `from` to `to`.
async fn transfer(
    conn: &mut Conn,
    from: u32,
    to: u32,
    amount: i64,
    mode: Mode,
) -> Result<(), StmtError> {
    let set = "UPDATE bank.accounts SET balance = ? WHERE id = ?";
    match mode {
        Mode::Relative | Mode::LockThenRelative => {
            bounded(conn.query_drop("BEGIN")).await?;
            if matches!(mode, Mode::LockThenRelative) {
                balance(conn, from, true).await?;
            }
            bounded(conn.exec_drop(
                "UPDATE bank.accounts SET balance = balance - ? WHERE id = ?",
                (amount, from),
            ))
            .await?;
            bounded(conn.exec_drop(
                "UPDATE bank.accounts SET balance = balance + ? WHERE id = ?",
                (amount, to),
            ))
            .await?;
        }
        Mode::LockedRead | Mode::Optimistic => {
            let locking = matches!(mode, Mode::LockedRead);
            let begin = if locking { "BEGIN" } else { "BEGIN OPTIMISTIC" };
            bounded(conn.query_drop(begin)).await?;
            let a = balance(conn, from, locking).await?;
            let b = balance(conn, to, locking).await?;
            bounded(conn.exec_drop(set, (a - amount, from))).await?;
            bounded(conn.exec_drop(set, (b + amount, to))).await?;
        }
    }
    bounded(conn.query_drop("COMMIT")).await
}

/// The total in one transaction, twice: `SUM()` by the server and the rows
/// summed here. Both must see the same snapshot.
async fn read_total(conn: &mut Conn) -> Result<(i64, i64, usize), StmtError> {
    bounded(conn.query_drop("BEGIN")).await?;
    let sum: Option<(String, i64)> =
        bounded(conn.query_first("SELECT SUM(balance), COUNT(*) FROM bank.accounts")).await?;
    let rows: Vec<(u32, i64)> =
        bounded(conn.query("SELECT id, balance FROM bank.accounts ORDER BY id")).await?;
    bounded(conn.query_drop("COMMIT")).await?;
    let (sum, count) = sum.expect("SUM returns a row");
    let sum: i64 = sum
        .parse()
        .unwrap_or_else(|e| panic!("SUM(balance) = {sum:?}: {e}"));
    assert_eq!(count, rows.len() as i64, "COUNT(*) and the rows read agree");
    Ok((sum, rows.iter().map(|r| r.1).sum(), rows.len()))
}

/// After a failed statement: roll back (the connection may be gone, then
/// open a new one).
async fn recover(conn: &mut Conn, o: &Opts, s: &TidbServer) {
    if bounded(conn.query_drop("ROLLBACK")).await.is_err() {
        *conn = connect_opts(o, s).await;
    }
}

/// The two scenarios run one after the other (each has a 5-process
/// cluster and kills stores on a 2-core machine).
static SERIAL: std::sync::LazyLock<tokio::sync::Mutex<()>> =
    std::sync::LazyLock::new(|| tokio::sync::Mutex::new(()));

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_bank_transfers_keep_the_total_while_stores_are_killed() {
    let _serial = SERIAL.lock().await;
    sql_bank(false, &MODES, true).await;
}

/// The table's rows live in four regions (split by hand after the
/// accounts are created), so transfers lock and commit across regions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_bank_transfers_across_split_regions_keep_the_total_while_stores_are_killed() {
    let _serial = SERIAL.lock().await;
    sql_bank(true, &MODES, true).await;
}

/// Transfers that compute the new balances from `SELECT ... FOR UPDATE`
/// (no store kills): the locking read must return the newest committed
/// version it locked (it once returned the start_ts snapshot, and a
/// transfer that waited for another's lock overwrote it: a lost update).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_bank_locking_reads_then_computed_writes_keep_the_total() {
    let _serial = SERIAL.lock().await;
    sql_bank(false, &[Mode::LockedRead], false).await;
}

/// One run: accounts (in four regions if `split`), transfers written in
/// each of `modes` in turn, stores killed and restarted if `kill`.
async fn sql_bank(split: bool, modes: &'static [Mode], kill: bool) {
    let mut c = Cluster::start(true, 3).await;
    c.wait_for_voters(3).await;
    let work = tempfile::tempdir().unwrap();
    let s = Arc::new(start_tidb(&c, work.path()));
    let o = opts(&c, &s);
    let mut conn = connect_opts(&o, &s).await;
    conn.query_drop("CREATE DATABASE bank").await.unwrap();
    conn.query_drop("CREATE TABLE bank.accounts (id INT PRIMARY KEY, balance BIGINT NOT NULL)")
        .await
        .unwrap();
    let values: Vec<String> = (0..ACCOUNTS).map(|i| format!("({i}, {INITIAL})")).collect();
    conn.query_drop(format!(
        "INSERT INTO bank.accounts VALUES {}",
        values.join(", ")
    ))
    .await
    .unwrap();
    let expected = INITIAL * i64::from(ACCOUNTS);
    if split {
        // Four regions: rows 0-2, 3-4, 5-7 and 8-9.
        let catalog = Catalog::open(c.client().await.txn()).await.unwrap();
        let table = catalog
            .schema()
            .await
            .unwrap()
            .table("bank", "accounts")
            .unwrap();
        let keys: Vec<Vec<u8>> = [3, 5, 8].map(|h| record_key(table.id, h)).into();
        c.split_at(&keys, 3).await;
    }

    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let committed: Arc<[AtomicU64; 4]> = Arc::new(Default::default());
    let mut workers = Vec::new();
    for w in 0..3u32 {
        let (stop, tally, committed) = (stop.clone(), tally.clone(), committed.clone());
        let (o, s) = (o.clone(), s.clone());
        let mut conn = connect_opts(&o, &s).await;
        workers.push(tokio::spawn(async move {
            let mut n = w + 1;
            while !stop.load(Ordering::Relaxed) {
                n = n.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                let from = n % ACCOUNTS;
                let to = (from + 1 + (n / 16) % (ACCOUNTS - 1)) % ACCOUNTS;
                let amount = i64::from(n % 50);
                // Retry this transfer until it commits (or the run ends).
                loop {
                    let mode = modes[n as usize % modes.len()];
                    match transfer(&mut conn, from, to, amount, mode).await {
                        Ok(()) => {
                            committed[mode as usize].fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                        Err(e) => {
                            let retry = tally.failed("transfer", &e);
                            recover(&mut conn, &o, &s).await;
                            if !retry || stop.load(Ordering::Relaxed) {
                                break;
                            }
                        }
                    }
                }
            }
        }));
    }
    let checker = {
        let (stop, tally) = (stop.clone(), tally.clone());
        let (o, s) = (o.clone(), s.clone());
        let mut conn = connect_opts(&o, &s).await;
        tokio::spawn(async move {
            let mut checks = 0u32;
            while !stop.load(Ordering::Relaxed) {
                match read_total(&mut conn).await {
                    Ok((sum, rows_sum, rows)) => {
                        assert_eq!(rows, ACCOUNTS as usize, "every account is there");
                        assert_eq!(sum, expected, "SUM(balance) in a transaction");
                        assert_eq!(rows_sum, expected, "the rows' balances in a transaction");
                        checks += 1;
                    }
                    Err(e) => {
                        tally.failed("read", &e);
                        recover(&mut conn, &o, &s).await;
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            checks
        })
    };

    if kill {
        c.kill_and_restart_each_store(Duration::from_secs(3), Duration::from_secs(4))
            .await;
    } else {
        tokio::time::sleep(Duration::from_secs(8)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        if tokio::time::timeout(Duration::from_secs(60), w)
            .await
            .is_err()
        {
            panic!("a transfer worker hung\n{}", c.logs());
        }
    }
    let checks = match tokio::time::timeout(Duration::from_secs(60), checker).await {
        Ok(Ok(n)) => n,
        Ok(Err(e)) => panic!("checker failed: {e}\n{}\n{}", c.logs(), s.log()),
        Err(_) => panic!("checker hung\n{}", c.logs()),
    };

    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let final_total = loop {
        match read_total(&mut conn).await {
            Ok((sum, rows_sum, _)) => {
                assert_eq!(sum, rows_sum);
                break sum;
            }
            Err(e) => {
                tally.failed("final read", &e);
                assert!(
                    std::time::Instant::now() < deadline,
                    "the final read failed: {e}\n{}",
                    c.logs()
                );
                recover(&mut conn, &o, &s).await;
            }
        }
    };
    let by_mode: Vec<(Mode, u64)> = modes
        .iter()
        .map(|m| (*m, committed[*m as usize].load(Ordering::Relaxed)))
        .collect();
    let n: u64 = by_mode.iter().map(|(_, k)| k).sum();
    let retried = tally.retried.lock().unwrap().clone();
    let unexpected = tally.unexpected.lock().unwrap().clone();
    eprintln!(
        "sql bank (split: {split}): {n} transfers committed {by_mode:?}, {checks} transactional totals checked, \
         retried after (MySQL error code: count) {retried:?}, unexpected errors: {}",
        unexpected.len()
    );
    for e in &unexpected {
        eprintln!("  unexpected: {e}");
    }
    assert_eq!(final_total, expected, "the final total");
    assert!(
        unexpected.is_empty(),
        "{} statements failed with errors that are not retryable:\n{}\n{}",
        unexpected.len(),
        unexpected.join("\n"),
        s.log()
    );
    assert!(
        by_mode.iter().all(|(_, k)| *k > 5),
        "too few transfers committed: {by_mode:?}\n{}",
        c.logs()
    );
    assert!(checks > 5, "too few checks");
}
