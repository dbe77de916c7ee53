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

use super::cluster::{unix_ms, Cluster};
use tikv_client::TimestampExt as _;

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

/// What one transfer attempt did, for the history.
#[derive(Debug, Default)]
pub struct Trace {
    /// The transaction's start timestamp (0 if it never began).
    pub start_ts: u64,
    /// The commit timestamp the client reported, if it committed.
    pub commit_ts: Option<u64>,
    /// The balances it read (from, to).
    pub read: Option<(i64, i64)>,
    /// The error in full, if any.
    pub error: Option<String>,
}

/// Every account's balance at one snapshot.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// The snapshot's timestamp.
    pub ts: u64,
    pub balances: Vec<i64>,
}

impl Snapshot {
    pub fn total(&self) -> i64 {
        self.balances.iter().sum()
    }
}

/// A client the workload runs over.
pub trait Bank: Clone + Send + Sync + 'static {
    /// Writes every account's initial balance in one transaction.
    fn init(&self) -> impl Future<Output = Result<(), String>> + Send;
    /// Moves `amount` from account `from` to `to` in one transaction.
    fn transfer(
        &self,
        from: u32,
        to: u32,
        amount: i64,
    ) -> impl Future<Output = (Outcome, Trace)> + Send;
    /// Reads every account at one snapshot; Err(the error in full) if the
    /// read failed.
    fn snapshot(&self) -> impl Future<Output = Result<Snapshot, String>> + Send;
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
///
/// tikv-client 0.4's readers cannot resolve a lock whose primary was never
/// prewritten (the primary's store died during the prewrite of a transfer
/// left undetermined): CheckTxnStatus answers TxnNotFound as a key error,
/// which tikv-client 0.4 passes up as `MultipleKeyErrors` instead of
/// retrying with `rollback_if_not_exist` once the lock's TTL has passed, as
/// client-go does. The account then stays unreadable for tikv-client, so
/// its reads hand such a lock to `resolver`, tiox's own client, which
/// follows client-go's rule.
#[derive(Clone)]
pub struct TikvBank {
    pub txn: Arc<tikv_client::TransactionClient>,
    pub rollback_undetermined: bool,
    pub resolver: tiox_client::txn::TxnClient,
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
        let resolver = c.client().await.txn();
        loop {
            let pd = vec![c.pd_addr.clone()];
            match tikv_client::TransactionClient::new_with_config(pd, config.clone()).await {
                Ok(txn) => {
                    return TikvBank {
                        txn: Arc::new(txn),
                        rollback_undetermined,
                        resolver,
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

/// Whether a failed `commit()` of tikv-client 0.4 surely left the
/// transaction uncommitted: every error is a key error from prewrite (a
/// write conflict, a lock that would not go away, a duplicate), so the
/// primary's commit was never sent and rolling back is safe.
///
/// Anything else may follow a commit of the primary that was applied: this
/// checker once lost 33 (a total of 7967) because tikv-client 0.4 marks a
/// failed commit of the primary as undetermined only for
/// `Error::Grpc` (tonic's transport error). A store SIGKILLed while the
/// primary's commit was in flight gives `Error::GrpcAPI` (a tonic Status,
/// "Unavailable: connection refused") after the retries instead; the
/// checker took that for a plain failure and rolled back, BatchRollback
/// removed the secondary's lock in the other region while the primary
/// stayed committed, and half the transfer was gone for good. client-go
/// marks the commit undetermined after any RPC error on the primary
/// (pingcap/tidb#5043), and so does this checker now.
pub fn prewrite_refused(e: &tikv_client::Error) -> bool {
    use tikv_client::Error;
    match e {
        Error::KeyError(k) => {
            k.conflict.is_some() || k.already_exist.is_some() || k.locked.is_some()
        }
        Error::MultipleKeyErrors(errs) | Error::ExtractedErrors(errs) => {
            !errs.is_empty() && errs.iter().all(prewrite_refused)
        }
        _ => false,
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

    async fn transfer(&self, from: u32, to: u32, amount: i64) -> (Outcome, Trace) {
        let mut trace = Trace::default();
        let mut t = match self.txn.begin_optimistic().await {
            Ok(t) => t,
            Err(e) => {
                trace.error = Some(format!("{e:?}"));
                return (Outcome::Failed(kind(&format!("{e:?}"))), trace);
            }
        };
        trace.start_ts = t.start_timestamp().version();
        let mut committing = false;
        let read = &mut trace.read;
        let res = tokio::time::timeout(OP_TIMEOUT, async {
            let a = balance(t.get(account(from)).await?);
            let b = balance(t.get(account(to)).await?);
            *read = Some((a, b));
            t.put(account(from), (a - amount).to_string()).await?;
            t.put(account(to), (b + amount).to_string()).await?;
            committing = true;
            t.commit().await
        })
        .await;
        // Once the commit began, its outcome is unknown unless the error
        // proves the prewrite was refused (see `prewrite_refused`).
        let (undetermined, what) = match &res {
            Ok(Ok(ts)) => {
                trace.commit_ts = ts.as_ref().map(|ts| ts.version());
                return (Outcome::Committed, trace);
            }
            Ok(Err(e)) => (committing && !prewrite_refused(e), kind(&format!("{e:?}"))),
            Err(_) => (committing, "timeout".to_string()),
        };
        trace.error = Some(match &res {
            Ok(Err(e)) => format!("{e:?}"),
            _ => "timeout".to_string(),
        });
        if !undetermined || self.rollback_undetermined {
            let _ = tokio::time::timeout(Duration::from_secs(5), t.rollback()).await;
        }
        let outcome = if undetermined {
            Outcome::Undetermined(what)
        } else {
            Outcome::Failed(what)
        };
        (outcome, trace)
    }

    async fn snapshot(&self) -> Result<Snapshot, String> {
        let ts = self
            .txn
            .current_timestamp()
            .await
            .map_err(|e| format!("{e:?}"))?;
        let mut snap = self.txn.snapshot(ts.clone(), Default::default());
        let mut balances = Vec::new();
        for i in 0..ACCOUNTS {
            let v = tokio::time::timeout(OP_TIMEOUT, snap.get(account(i)))
                .await
                .map_err(|_| "timeout".to_string())?
                .map_err(|e| format!("{e:?}"));
            let v = match v {
                Ok(v) => v,
                Err(e) => {
                    if e.contains("txn_not_found: Some") {
                        self.resolve_orphan(i).await;
                    }
                    return Err(e);
                }
            };
            assert!(v.is_some(), "account {i} disappeared");
            balances.push(balance(v));
        }
        Ok(Snapshot {
            ts: ts.version(),
            balances,
        })
    }
}

impl TikvBank {
    /// Reads account `i` through tiox's client, which resolves the lock
    /// tikv-client could not (see [`TikvBank`]); the caller reads again
    /// later.
    async fn resolve_orphan(&self, i: u32) {
        if let Ok(t) = self.resolver.begin().await {
            let _ = tokio::time::timeout(OP_TIMEOUT, t.get(account(i).as_bytes())).await;
        }
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

    async fn transfer(&self, from: u32, to: u32, amount: i64) -> (Outcome, Trace) {
        use tiox_client::Error;
        let mut trace = Trace::default();
        let mut committing = false;
        let (start_ts, read) = (&mut trace.start_ts, &mut trace.read);
        let res = tokio::time::timeout(OP_TIMEOUT, async {
            let mut t = self.txn.begin().await?;
            *start_ts = t.start_ts();
            let a = balance(t.get(account(from).as_bytes()).await?);
            let b = balance(t.get(account(to).as_bytes()).await?);
            *read = Some((a, b));
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
        trace.error = match &res {
            Ok(Ok(ts)) => {
                trace.commit_ts = Some(*ts);
                None
            }
            Ok(Err(e)) => Some(format!("{e:?}")),
            Err(_) => Some("timeout".into()),
        };
        let outcome = match res {
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
        };
        (outcome, trace)
    }

    async fn snapshot(&self) -> Result<Snapshot, String> {
        let keys: Vec<Vec<u8>> = (0..ACCOUNTS).map(|i| account(i).into_bytes()).collect();
        let (ts, read) = tokio::time::timeout(OP_TIMEOUT, async {
            // One start timestamp: every key is read at the same snapshot.
            let t = self.txn.begin().await?;
            Ok::<_, tiox_client::Error>((t.start_ts(), t.batch_get(&keys).await?))
        })
        .await
        .map_err(|_| "timeout".to_string())?
        .map_err(|e| format!("{e:?}"))?;
        let mut balances = Vec::new();
        for (i, v) in read.into_iter().enumerate() {
            assert!(v.is_some(), "account {i} disappeared");
            balances.push(balance(v));
        }
        Ok(Snapshot { ts, balances })
    }
}

/// Counters shared by the workers and the checker, and the history.
#[derive(Default)]
struct Counts {
    committed: AtomicU64,
    undetermined: AtomicU64,
    retries: AtomicU64,
    gave_up: AtomicU64,
    /// Failures by "transfer: kind" / "read: kind".
    errors: Mutex<BTreeMap<String, u64>>,
    /// Every transfer attempt and every snapshot, in the order they ended.
    history: Mutex<Vec<Event>>,
    /// The first snapshot whose total was wrong.
    bad: Mutex<Option<Snapshot>>,
}

/// One line of the history.
#[derive(Debug)]
enum Event {
    Transfer {
        at_ms: u128,
        worker: usize,
        from: u32,
        to: u32,
        amount: i64,
        outcome: String,
        trace: Trace,
    },
    Snapshot {
        at_ms: u128,
        ts: u64,
        total: i64,
    },
}

impl std::fmt::Display for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Event::Transfer {
                at_ms,
                worker,
                from,
                to,
                amount,
                outcome,
                trace,
            } => write!(
                f,
                "{at_ms} w{worker} {from}->{to} {amount}: {outcome} start_ts={} commit_ts={:?} read={:?} error={}",
                trace.start_ts,
                trace.commit_ts,
                trace.read,
                trace.error.as_deref().unwrap_or("-")
            ),
            Event::Snapshot { at_ms, ts, total } => {
                write!(f, "{at_ms} snapshot ts={ts} total={total}")
            }
        }
    }
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

    fn record(&self, e: Event) {
        self.history.lock().unwrap().push(e);
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
    /// Acknowledged transfers found whole at their commit timestamps.
    pub verified: usize,
    pub errors: BTreeMap<String, u64>,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} transfers committed ({} found whole at their commit timestamps), {} undetermined commits, {} retries, {} given up after {ATTEMPTS} tries, {} consistent snapshot totals checked; errors: {:?}",
            self.committed, self.verified, self.undetermined, self.retries, self.gave_up, self.checks, self.errors
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
                    let t = (w, from, to, i64::from(n % 50));
                    transfer_with_retries(&bank, &counts, &stop, t).await;
                }
            }));
        }
        let checker = {
            let (stop, counts) = (stop.clone(), counts.clone());
            tokio::spawn(async move {
                let mut checks = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    match checker.snapshot().await {
                        Ok(snap) => {
                            let total = snap.total();
                            counts.record(Event::Snapshot {
                                at_ms: unix_ms(),
                                ts: snap.ts,
                                total,
                            });
                            if total != expected {
                                // Stop everything and let `finish` gather
                                // the evidence while the cluster is up.
                                *counts.bad.lock().unwrap() = Some(snap);
                                stop.store(true, Ordering::Relaxed);
                                break;
                            }
                            checks += 1;
                        }
                        Err(e) => counts.error("read", &kind(&e)),
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

    /// Whether the checker has seen a wrong total (the workload then stops
    /// by itself).
    pub fn failed(&self) -> bool {
        self.counts.bad.lock().unwrap().is_some()
    }

    /// Stops the workload, reads the final total through `reader` (retrying
    /// for up to 30 s) and asserts it and that enough happened. A wrong
    /// total fails with the evidence: the history (written whole to a file
    /// under the temp dir), the transfers of the accounts that were off,
    /// and those accounts' MVCC records on every store.
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
        let final_snap = loop {
            let e = match reader.snapshot().await {
                Ok(s) => break s,
                Err(e) => e,
            };
            self.counts.error("final read", &kind(&e));
            if Instant::now() > deadline {
                let why = format!("the final read failed for 30 s, last with {e}");
                panic!("{}", evidence(&self.counts, &why, None, c).await);
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        };
        let bad = self.counts.bad.lock().unwrap().take();
        let wrong = match bad {
            Some(bad) => Some(("a snapshot saw a total of", bad)),
            None if final_snap.total() != self.expected => {
                Some(("the final total is", final_snap.clone()))
            }
            None => None,
        };
        if let Some((what, bad)) = wrong {
            let why = format!(
                "{what} {} (snapshot ts {}, balances {:?}; final ts {}, balances {:?}, total {})",
                bad.total(),
                bad.ts,
                bad.balances,
                final_snap.ts,
                final_snap.balances,
                final_snap.total()
            );
            panic!("{}", evidence(&self.counts, &why, Some(bad.ts), c).await);
        }
        let counts = &self.counts;
        let report = Report {
            committed: counts.committed.load(Ordering::Relaxed),
            undetermined: counts.undetermined.load(Ordering::Relaxed),
            retries: counts.retries.load(Ordering::Relaxed),
            gave_up: counts.gave_up.load(Ordering::Relaxed),
            checks,
            verified: 0,
            errors: counts.errors.lock().unwrap().clone(),
        };
        assert!(
            report.committed > 20,
            "too few transfers committed: {report}\n{}",
            c.logs()
        );
        assert!(report.checks > 5, "too few checks: {report}");
        match acknowledged_transfers_are_whole(&self.counts, c).await {
            Ok(n) => Report {
                verified: n,
                ..report
            },
            Err(why) => panic!("{}", evidence(&self.counts, &why, None, c).await),
        }
    }
}

/// Jepsen's "no acknowledged write is lost", for transfers: every transfer
/// the client reported committed at `commit_ts` C moved exactly its amount,
/// both halves, at C. Each account changes only in the transactions that
/// write it and commit timestamps are unique, so the balance read at C
/// minus the one at C - 1 is that transfer's effect alone. Read through
/// tiox's client at those old timestamps (nothing is garbage-collected
/// during a test).
async fn acknowledged_transfers_are_whole(counts: &Counts, c: &Cluster) -> Result<usize, String> {
    let acked: Vec<(u32, u32, i64, u64)> = counts
        .history
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            Event::Transfer {
                from,
                to,
                amount,
                trace:
                    Trace {
                        commit_ts: Some(ts),
                        ..
                    },
                ..
            } => Some((*from, *to, *amount, *ts)),
            _ => None,
        })
        .collect();
    let txn = c.client().await.txn();
    let at = |i: u32, ts: u64| {
        let txn = txn.clone();
        async move {
            let key = account(i).into_bytes();
            for _ in 0..20 {
                match txn.snapshot_get(&key, ts).await {
                    Ok(v) => return Ok(balance(v)),
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
            Err(format!("could not read {} at {ts}", account(i)))
        }
    };
    let n = acked.len();
    for (from, to, amount, ts) in acked {
        let moved_out = at(from, ts - 1).await? - at(from, ts).await?;
        let moved_in = at(to, ts).await? - at(to, ts - 1).await?;
        if (moved_out, moved_in) != (amount, amount) {
            return Err(format!(
                "the acknowledged transfer {from}->{to} of {amount} committed at {ts} moved {moved_out} out and {moved_in} in"
            ));
        }
    }
    Ok(n)
}

/// The failure report: what was wrong, the history file, the transfers
/// worth a look, and every account's MVCC records on every store.
async fn evidence(counts: &Counts, why: &str, bad_ts: Option<u64>, c: &Cluster) -> String {
    let mut out = {
        let history = counts.history.lock().unwrap();
        let file = std::env::temp_dir().join(format!(
            "bank-history-{}-{}.txt",
            std::process::id(),
            unix_ms()
        ));
        let all: Vec<String> = history.iter().map(|e| e.to_string()).collect();
        let _ = std::fs::write(&file, all.join("\n"));
        // Shown here: the transfers that did not end in a clean commit,
        // and every transfer that started or committed within a second of
        // the bad snapshot.
        let near = |ts: u64| bad_ts.is_some_and(|bad| (ts >> 18).abs_diff(bad >> 18) < 1000);
        let mut out = format!(
            "{why}\nhistory ({} events): {}\n",
            history.len(),
            file.display()
        );
        out.push_str("transfers not cleanly committed, or near the snapshot:\n");
        for e in history.iter() {
            if let Event::Transfer { outcome, trace, .. } = e {
                if outcome != "Committed"
                    || near(trace.start_ts)
                    || trace.commit_ts.is_some_and(near)
                {
                    out.push_str(&format!("  {e}\n"));
                }
            }
        }
        out
    };
    let tls = c.certs.as_ref().map(|certs| certs.client_tls());
    for i in 0..ACCOUNTS {
        let key: String = account(i).bytes().map(|b| format!("{b:02x}")).collect();
        for (s, addr) in c.kv_addrs.iter().enumerate() {
            let body =
                match super::cluster::http_get(addr, &format!("/debug/mvcc/{key}"), tls.clone())
                    .await
                {
                    Ok((_, b)) => b,
                    Err(e) => e,
                };
            out.push_str(&format!("mvcc {} on kv{s}: {body}\n", account(i)));
        }
    }
    out.push_str(&c.logs());
    out
}

/// One transfer `(worker, from, to, amount)`, retried as a new transaction
/// while it fails with its outcome known (backing off a little more each
/// time). Every attempt goes into the history.
async fn transfer_with_retries<B: Bank>(
    bank: &B,
    counts: &Counts,
    stop: &AtomicBool,
    (worker, from, to, amount): (usize, u32, u32, i64),
) {
    for attempt in 1..=ATTEMPTS {
        let (outcome, trace) = bank.transfer(from, to, amount).await;
        counts.record(Event::Transfer {
            at_ms: unix_ms(),
            worker,
            from,
            to,
            amount,
            outcome: match &outcome {
                Outcome::Committed => "Committed".to_string(),
                o => format!("{o:?}"),
            },
            trace,
        });
        match outcome {
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
