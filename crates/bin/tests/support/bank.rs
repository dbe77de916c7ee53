//! The bank-transfer workload shared by the checkers: `ACCOUNTS` accounts
//! of `INITIAL` each, workers moving money between two of them in
//! optimistic transactions, and a checker that sums every account at one
//! snapshot every 100 ms; every sum, and the final one, must equal the
//! initial total. The test around it runs the faults (kills, partitions).
//!
//! Two clients implement [`Bank`]: the real `tikv-client` ([`TikvBank`])
//! and ours ([`TioxBank`]). A transfer that fails with its outcome known
//! (conflict, lock, unreachable store, timeout before the commit) is
//! retried as a new transaction, up to [`ATTEMPTS`] times; every failure
//! is counted by kind, and the counts are printed with the report.
//!
//! A test using it declares `#[path = "support/cluster.rs"] mod cluster;`
//! and `#[path = "support/bank.rs"] mod bank;`.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::cluster::Cluster;

pub const ACCOUNTS: u32 = 8;
pub const INITIAL: i64 = 1000;
/// Tries per transfer (the first and the retries).
pub const ATTEMPTS: u32 = 5;
/// Bound on one transfer or one snapshot read.
const OP_TIMEOUT: Duration = Duration::from_secs(10);

pub fn account(i: u32) -> String {
    format!("bank/{i:03}")
}

fn balance(v: Option<Vec<u8>>) -> i64 {
    v.map_or(0, |v| String::from_utf8_lossy(&v).parse().unwrap_or(0))
}

/// How a transfer ended.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    Committed,
    /// Nothing was written (failed before the commit, or the commit was
    /// refused): retryable as a new transaction. The error's kind.
    Failed(String),
    /// The commit's outcome is unknown (the primary may have committed).
    /// Not retried: it may have moved the money already.
    Undetermined(String),
}

/// A client the workload runs over.
pub trait Bank: Clone + Send + Sync + 'static {
    /// Writes every account's initial balance in one transaction.
    fn init(&self) -> impl Future<Output = Result<(), String>> + Send;
    /// Moves `amount` from account `from` to `to` in one transaction.
    fn transfer(&self, from: u32, to: u32, amount: i64) -> impl Future<Output = Outcome> + Send;
    /// Sums every account at one snapshot; Err(kind) if the read failed.
    fn total(&self) -> impl Future<Output = Result<i64, String>> + Send;
}

/// The variant name of an error's `Debug` form (`Conflict`, `Unavailable`).
fn kind(debug: &str) -> String {
    let end = debug.find(['(', ' ', '{']).unwrap_or(debug.len());
    debug[..end].to_string()
}

/// The real `tikv-client`. `rollback_undetermined`: roll back even when the
/// commit's outcome is unknown (tikv-client allows it). Safe only while
/// the transaction's keys share one region: BatchRollback is then refused
/// as a whole once the primary has committed. Across regions a secondary
/// in another region would be rolled back (as with TiKV; client-go never
/// does this), so the multi-region run leaves those locks for readers to
/// resolve.
#[derive(Clone)]
pub struct TikvBank {
    pub txn: Arc<tikv_client::TransactionClient>,
    pub rollback_undetermined: bool,
}

impl TikvBank {
    pub async fn connect(c: &Cluster, rollback_undetermined: bool) -> TikvBank {
        let certs = c.certs.as_ref().unwrap();
        let config = tikv_client::Config::default()
            .with_security(
                certs.path("ca.pem"),
                certs.path("client.pem"),
                certs.path("client-key.pem"),
            )
            .with_timeout(Duration::from_secs(3));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let pd = vec![c.pd_addr.clone()];
            match tikv_client::TransactionClient::new_with_config(pd, config.clone()).await {
                Ok(txn) => {
                    return TikvBank {
                        txn: Arc::new(txn),
                        rollback_undetermined,
                    }
                }
                Err(e) if Instant::now() < deadline => {
                    eprintln!("client: {e}; retrying");
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                Err(e) => panic!("{e}"),
            }
        }
    }
}

impl Bank for TikvBank {
    async fn init(&self) -> Result<(), String> {
        let mut t = self
            .txn
            .begin_optimistic()
            .await
            .map_err(|e| e.to_string())?;
        for i in 0..ACCOUNTS {
            t.put(account(i), INITIAL.to_string())
                .await
                .map_err(|e| e.to_string())?;
        }
        t.commit().await.map(|_| ()).map_err(|e| e.to_string())
    }

    async fn transfer(&self, from: u32, to: u32, amount: i64) -> Outcome {
        let mut t = match self.txn.begin_optimistic().await {
            Ok(t) => t,
            Err(e) => return Outcome::Failed(kind(&format!("{e:?}"))),
        };
        let mut committing = false;
        let res = tokio::time::timeout(OP_TIMEOUT, async {
            let a = balance(t.get(account(from)).await?);
            let b = balance(t.get(account(to)).await?);
            t.put(account(from), (a - amount).to_string()).await?;
            t.put(account(to), (b + amount).to_string()).await?;
            committing = true;
            t.commit().await
        })
        .await;
        // The commit's outcome is unknown when it timed out or the client
        // says so; a conflict or a refused prewrite is a plain failure.
        let (undetermined, what) = match &res {
            Ok(Ok(_)) => return Outcome::Committed,
            Ok(Err(e @ tikv_client::Error::UndeterminedError(_))) => {
                (true, kind(&format!("{e:?}")))
            }
            Ok(Err(e)) => (false, kind(&format!("{e:?}"))),
            Err(_) => (committing, "timeout".to_string()),
        };
        if !undetermined || self.rollback_undetermined {
            let _ = tokio::time::timeout(Duration::from_secs(5), t.rollback()).await;
        }
        if undetermined {
            Outcome::Undetermined(what)
        } else {
            Outcome::Failed(what)
        }
    }

    async fn total(&self) -> Result<i64, String> {
        let ts = self
            .txn
            .current_timestamp()
            .await
            .map_err(|e| kind(&format!("{e:?}")))?;
        let mut snap = self.txn.snapshot(ts, Default::default());
        let mut sum = 0;
        for i in 0..ACCOUNTS {
            let v = tokio::time::timeout(OP_TIMEOUT, snap.get(account(i)))
                .await
                .map_err(|_| "timeout".to_string())?
                .map_err(|e| kind(&format!("{e:?}")))?;
            assert!(v.is_some(), "account {i} disappeared");
            sum += balance(v);
        }
        Ok(sum)
    }
}

/// Our client (`tiox_client`). After a failed prewrite the transaction
/// rolls itself back; an error of the primary's commit leaves the locks
/// for readers to resolve (it never rolls back an undetermined commit).
#[derive(Clone)]
pub struct TioxBank {
    pub txn: tiox_client::txn::TxnClient,
}

impl TioxBank {
    pub async fn connect(c: &Cluster) -> TioxBank {
        TioxBank {
            txn: c.client().await.txn(),
        }
    }
}

impl Bank for TioxBank {
    async fn init(&self) -> Result<(), String> {
        let mut t = self.txn.begin().await.map_err(|e| e.to_string())?;
        for i in 0..ACCOUNTS {
            t.put(account(i).into_bytes(), INITIAL.to_string().into_bytes());
        }
        t.commit().await.map(|_| ()).map_err(|e| e.to_string())
    }

    async fn transfer(&self, from: u32, to: u32, amount: i64) -> Outcome {
        use tiox_client::Error;
        let mut committing = false;
        let res = tokio::time::timeout(OP_TIMEOUT, async {
            let mut t = self.txn.begin().await?;
            let a = balance(t.get(account(from).as_bytes()).await?);
            let b = balance(t.get(account(to).as_bytes()).await?);
            t.put(
                account(from).into_bytes(),
                (a - amount).to_string().into_bytes(),
            );
            t.put(
                account(to).into_bytes(),
                (b + amount).to_string().into_bytes(),
            );
            committing = true;
            t.commit().await
        })
        .await;
        match res {
            Ok(Ok(_)) => Outcome::Committed,
            // Refused by a prewrite (nothing committed, rolled back), or
            // failed before the commit began.
            Ok(Err(
                e @ (Error::Conflict { .. }
                | Error::Locked { .. }
                | Error::Deadlock { .. }
                | Error::Aborted(_)),
            )) => Outcome::Failed(kind(&format!("{e:?}"))),
            Ok(Err(e)) if !committing => Outcome::Failed(kind(&format!("{e:?}"))),
            Ok(Err(e)) => Outcome::Undetermined(kind(&format!("{e:?}"))),
            Err(_) if !committing => Outcome::Failed("timeout".into()),
            Err(_) => Outcome::Undetermined("timeout".into()),
        }
    }

    async fn total(&self) -> Result<i64, String> {
        let keys: Vec<Vec<u8>> = (0..ACCOUNTS).map(|i| account(i).into_bytes()).collect();
        let read = tokio::time::timeout(OP_TIMEOUT, async {
            // One start timestamp: every key is read at the same snapshot.
            let t = self.txn.begin().await?;
            t.batch_get(&keys).await
        })
        .await
        .map_err(|_| "timeout".to_string())?
        .map_err(|e| kind(&format!("{e:?}")))?;
        let mut sum = 0;
        for (i, v) in read.into_iter().enumerate() {
            assert!(v.is_some(), "account {i} disappeared");
            sum += balance(v);
        }
        Ok(sum)
    }
}

/// Counters shared by the workers and the checker.
#[derive(Default)]
struct Counts {
    committed: AtomicU64,
    undetermined: AtomicU64,
    retries: AtomicU64,
    gave_up: AtomicU64,
    /// Failures by "transfer: kind" / "read: kind".
    errors: Mutex<BTreeMap<String, u64>>,
}

impl Counts {
    fn error(&self, what: &str, kind: &str) {
        *self
            .errors
            .lock()
            .unwrap()
            .entry(format!("{what}: {kind}"))
            .or_default() += 1;
    }
}

/// The running workload: `workers` transferring, one checker reading.
pub struct Workload {
    stop: Arc<AtomicBool>,
    counts: Arc<Counts>,
    workers: Vec<tokio::task::JoinHandle<()>>,
    checker: tokio::task::JoinHandle<u32>,
    expected: i64,
}

/// What a run did.
pub struct Report {
    pub committed: u64,
    pub undetermined: u64,
    pub retries: u64,
    pub gave_up: u64,
    pub checks: u32,
    pub errors: BTreeMap<String, u64>,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} transfers committed, {} undetermined commits, {} retries, {} given up after {ATTEMPTS} tries, {} consistent snapshot totals checked; errors: {:?}",
            self.committed, self.undetermined, self.retries, self.gave_up, self.checks, self.errors
        )
    }
}

impl Workload {
    /// Starts one worker per client of `workers` and a checker over
    /// `checker` (the accounts written first, by [`Bank::init`]).
    pub fn start<B: Bank>(workers: Vec<B>, checker: B) -> Workload {
        let expected = INITIAL * i64::from(ACCOUNTS);
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(Counts::default());
        let mut handles = Vec::new();
        for (w, bank) in workers.into_iter().enumerate() {
            let (stop, counts) = (stop.clone(), counts.clone());
            handles.push(tokio::spawn(async move {
                let mut n = w as u32;
                while !stop.load(Ordering::Relaxed) {
                    n = n.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                    let from = n % ACCOUNTS;
                    let to = (n / 7 + 1 + from) % ACCOUNTS;
                    if from == to {
                        continue;
                    }
                    transfer_with_retries(&bank, &counts, &stop, from, to, i64::from(n % 50)).await;
                }
            }));
        }
        let checker = {
            let (stop, counts) = (stop.clone(), counts.clone());
            tokio::spawn(async move {
                let mut checks = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    match checker.total().await {
                        Ok(sum) => {
                            assert_eq!(sum, expected, "a snapshot saw a total of {sum}");
                            checks += 1;
                        }
                        Err(kind) => counts.error("read", &kind),
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                checks
            })
        };
        Workload {
            stop,
            counts,
            workers: handles,
            checker,
            expected,
        }
    }

    /// Stops the workload, reads the final total through `reader` (retrying
    /// for up to 30 s) and asserts it and that enough happened.
    pub async fn finish<B: Bank>(self, reader: &B, c: &Cluster) -> Report {
        self.stop.store(true, Ordering::Relaxed);
        for w in self.workers {
            let _ = tokio::time::timeout(Duration::from_secs(30), w).await;
        }
        let checks = match tokio::time::timeout(Duration::from_secs(30), self.checker).await {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => panic!("checker failed: {e}\n{}", c.logs()),
            Err(_) => panic!("checker hung\n{}", c.logs()),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let final_total = loop {
            match reader.total().await {
                Ok(s) => break s,
                Err(kind) => self.counts.error("final read", &kind),
            }
            assert!(Instant::now() < deadline, "final read failed\n{}", c.logs());
            tokio::time::sleep(Duration::from_millis(300)).await;
        };
        assert_eq!(final_total, self.expected, "the final total");
        let counts = &self.counts;
        let report = Report {
            committed: counts.committed.load(Ordering::Relaxed),
            undetermined: counts.undetermined.load(Ordering::Relaxed),
            retries: counts.retries.load(Ordering::Relaxed),
            gave_up: counts.gave_up.load(Ordering::Relaxed),
            checks,
            errors: counts.errors.lock().unwrap().clone(),
        };
        assert!(
            report.committed > 20,
            "too few transfers committed: {report}\n{}",
            c.logs()
        );
        assert!(report.checks > 5, "too few checks: {report}");
        report
    }
}

/// One transfer, retried as a new transaction while it fails with its
/// outcome known (backing off a little more each time).
async fn transfer_with_retries<B: Bank>(
    bank: &B,
    counts: &Counts,
    stop: &AtomicBool,
    from: u32,
    to: u32,
    amount: i64,
) {
    for attempt in 1..=ATTEMPTS {
        match bank.transfer(from, to, amount).await {
            Outcome::Committed => {
                counts.committed.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Outcome::Undetermined(kind) => {
                counts.undetermined.fetch_add(1, Ordering::Relaxed);
                counts.error("undetermined commit", &kind);
                return;
            }
            Outcome::Failed(kind) => {
                counts.error("transfer", &kind);
                if attempt == ATTEMPTS || stop.load(Ordering::Relaxed) {
                    counts.gave_up.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                counts.retries.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20 * u64::from(attempt))).await;
            }
        }
    }
}
