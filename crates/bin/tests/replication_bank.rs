//! The bank-transfer checker: N accounts, concurrent transfers in
//! optimistic transactions through the real `tikv-client`, stores of a
//! 3-replica cluster SIGKILLed and restarted meanwhile. Every snapshot read
//! of all accounts must sum to the initial total (snapshot isolation, no
//! lost or half-applied transfer), and so must the final state.

#[path = "support/cluster.rs"]
mod cluster;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cluster::Cluster;
use tikv_client::{Config, TransactionClient};

const ACCOUNTS: u32 = 8;
const INITIAL: i64 = 1000;

fn config(c: &Cluster) -> Config {
    let certs = c.certs.as_ref().unwrap();
    Config::default()
        .with_security(
            certs.path("ca.pem"),
            certs.path("client.pem"),
            certs.path("client-key.pem"),
        )
        .with_timeout(Duration::from_secs(3))
}

fn account(i: u32) -> String {
    format!("bank/{i:03}")
}

async fn client(c: &Cluster) -> TransactionClient {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match TransactionClient::new_with_config(vec![c.pd_addr.clone()], config(c)).await {
            Ok(t) => return t,
            Err(e) if Instant::now() < deadline => {
                eprintln!("client: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
}

/// Sums every account at one snapshot; None if the read failed (a store
/// is down and the client gave up), Some(total) otherwise.
async fn total(txn: &TransactionClient) -> Option<i64> {
    let ts = txn.current_timestamp().await.ok()?;
    let mut snap = txn.snapshot(ts, Default::default());
    let mut sum = 0;
    for i in 0..ACCOUNTS {
        let v = tokio::time::timeout(Duration::from_secs(10), snap.get(account(i)))
            .await
            .ok()?
            .ok()?;
        let v = v.expect("an account disappeared");
        sum += String::from_utf8(v).unwrap().parse::<i64>().unwrap();
    }
    Some(sum)
}

/// How a transfer ended.
#[derive(PartialEq)]
enum Outcome {
    Committed,
    /// Failed before its commit was sent, or the commit was refused.
    Failed,
    /// The commit's outcome was unknown (the primary may have committed)
    /// and the transaction was then rolled back: the path of the 7979 bug.
    RolledBackAfterCommitError,
}

/// `rollback_undetermined`: roll back even when the commit's outcome is
/// unknown (tikv-client allows it). Safe only while the transaction's keys
/// share one region: BatchRollback is then refused as a whole once the
/// primary has committed. Across regions a secondary in another region
/// would be rolled back (as with TiKV; client-go never does this), so the
/// multi-region run leaves those locks for readers to resolve.
async fn transfer(
    txn: &TransactionClient,
    from: u32,
    to: u32,
    amount: i64,
    rollback_undetermined: bool,
) -> Outcome {
    let Ok(mut t) = txn.begin_optimistic().await else {
        return Outcome::Failed;
    };
    let mut committing = false;
    let res = tokio::time::timeout(Duration::from_secs(10), async {
        let a: i64 = match t.get(account(from)).await? {
            Some(v) => String::from_utf8_lossy(&v).parse().unwrap_or(0),
            None => 0,
        };
        let b: i64 = match t.get(account(to)).await? {
            Some(v) => String::from_utf8_lossy(&v).parse().unwrap_or(0),
            None => 0,
        };
        t.put(account(from), (a - amount).to_string()).await?;
        t.put(account(to), (b + amount).to_string()).await?;
        committing = true;
        t.commit().await
    })
    .await;
    // The commit's outcome is unknown when it timed out or the client says
    // so; a conflict or a refused prewrite is a plain failure.
    let undetermined = match &res {
        Ok(Ok(_)) => return Outcome::Committed,
        Ok(Err(tikv_client::Error::UndeterminedError(_))) => true,
        Ok(Err(_)) => false,
        Err(_) => committing,
    };
    if !undetermined || rollback_undetermined {
        let _ = tokio::time::timeout(Duration::from_secs(5), t.rollback()).await;
    }
    if undetermined {
        Outcome::RolledBackAfterCommitError
    } else {
        Outcome::Failed
    }
}

// This checker found a bug: a snapshot once summed to 7979 instead of 8000.
// Cause: a failed commit is followed by `rollback()` (tikv-client allows it
// after an undetermined commit); when the primary had in fact committed,
// KvBatchRollback rolled back the secondaries that sorted before the primary
// and only then failed on it, so half a transfer became visible. Rollback,
// commit and resolve-lock are now all-or-nothing (pinned by the mvcc
// scenario `rollback_after_undetermined_commit_keeps_the_transaction_whole`);
// see docs/replication.md.
/// The two scenarios run one after the other (each has a 4-process
/// cluster and kills stores on a 2-core machine).
static SERIAL: std::sync::LazyLock<tokio::sync::Mutex<()>> =
    std::sync::LazyLock::new(|| tokio::sync::Mutex::new(()));

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bank_transfers_keep_the_total_while_stores_are_killed() {
    let _serial = SERIAL.lock().await;
    bank(false).await;
}

/// The accounts live in four regions (split by hand first), so transfers
/// are cross-region two-phase commits while stores are killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bank_transfers_across_split_regions_keep_the_total_while_stores_are_killed() {
    let _serial = SERIAL.lock().await;
    bank(true).await;
}

async fn bank(split: bool) {
    let mut c = Cluster::start(true, 3).await;
    c.wait_for_voters(3).await;
    let txn = client(&c).await;
    let mut t = txn.begin_optimistic().await.unwrap();
    for i in 0..ACCOUNTS {
        t.put(account(i), INITIAL.to_string()).await.unwrap();
    }
    t.commit().await.unwrap();
    let expected = INITIAL * i64::from(ACCOUNTS);
    if split {
        // Four regions: split at accounts 2, 4 and 6.
        let keys: Vec<Vec<u8>> = [2, 4, 6].map(|i| account(i).into_bytes()).into();
        c.split_at(&keys, 3).await;
    }

    let stop = Arc::new(AtomicBool::new(false));
    let committed = Arc::new(AtomicU64::new(0));
    let after_commit_error = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for w in 0..3u32 {
        let (stop, committed) = (stop.clone(), committed.clone());
        let after_commit_error = after_commit_error.clone();
        let txn = client(&c).await;
        workers.push(tokio::spawn(async move {
            let mut n = w;
            while !stop.load(Ordering::Relaxed) {
                n = n.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                let from = n % ACCOUNTS;
                let to = (n / 7 + 1 + from) % ACCOUNTS;
                if from == to {
                    continue;
                }
                match transfer(&txn, from, to, i64::from(n % 50), !split).await {
                    Outcome::Committed => {
                        committed.fetch_add(1, Ordering::Relaxed);
                    }
                    Outcome::RolledBackAfterCommitError => {
                        after_commit_error.fetch_add(1, Ordering::Relaxed);
                    }
                    Outcome::Failed => {}
                }
            }
        }));
    }
    let checker = {
        let stop = stop.clone();
        let txn = client(&c).await;
        tokio::spawn(async move {
            let mut checks = 0u32;
            while !stop.load(Ordering::Relaxed) {
                if let Some(sum) = total(&txn).await {
                    assert_eq!(sum, expected, "a snapshot saw a total of {sum}");
                    checks += 1;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            checks
        })
    };
    c.kill_and_restart_each_store(Duration::from_secs(3), Duration::from_secs(4))
        .await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = tokio::time::timeout(Duration::from_secs(30), w).await;
    }
    let checks = match tokio::time::timeout(Duration::from_secs(30), checker).await {
        Ok(Ok(n)) => n,
        Ok(Err(e)) => panic!("checker failed: {e}\n{}", c.logs()),
        Err(_) => panic!("checker hung\n{}", c.logs()),
    };
    let txn = client(&c).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let final_total = loop {
        if let Some(s) = total(&txn).await {
            break s;
        }
        assert!(Instant::now() < deadline, "final read failed\n{}", c.logs());
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(final_total, expected);
    let n = committed.load(Ordering::Relaxed);
    eprintln!(
        "bank (split: {split}): {n} transfers committed, {} undetermined commits (then rolled back: {}), {checks} consistent snapshot totals checked",
        after_commit_error.load(Ordering::Relaxed),
        !split
    );
    assert!(n > 20, "too few transfers committed\n{}", c.logs());
    assert!(checks > 5, "too few checks");
}
