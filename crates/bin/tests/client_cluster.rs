//! Our cluster client (`tiox-client`) against real PD + TiKV processes over
//! mutual TLS: raw KV, transactions with conflicts, pessimistic locks,
//! resolution of a dead transaction's locks, and TSO batching.

#[path = "support/cluster.rs"]
mod cluster;

use std::sync::Arc;
use std::time::Duration;

use cluster::Cluster;
use tiox_client::{ClusterClient, Error};
use tiox_security::{Component, SecurityConfig};

async fn connect(c: &Cluster) -> ClusterClient {
    let certs = c.certs.as_ref().unwrap();
    let settings = SecurityConfig::from_paths(
        &certs.path("ca.pem"),
        &certs.path("client.pem"),
        &certs.path("client-key.pem"),
    )
    .validate(Component::Tiox)
    .unwrap();
    ClusterClient::connect(&[format!("https://{}", c.pd_addr)], settings)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_api_over_mutual_tls() {
    let c = Cluster::start(true, 1).await;
    let raw = connect(&c).await.raw();
    raw.put(b"a", b"1").await.unwrap();
    raw.batch_put(vec![
        (b"b".to_vec(), b"2".to_vec()),
        (b"c".to_vec(), b"3".to_vec()),
    ])
    .await
    .unwrap();
    assert_eq!(raw.get(b"a").await.unwrap(), Some(b"1".to_vec()));
    assert_eq!(
        raw.batch_get(&[b"a".to_vec(), b"c".to_vec(), b"x".to_vec()])
            .await
            .unwrap()
            .len(),
        2
    );
    // Limits above the match count return exactly the matches.
    let all = raw.scan(b"a", b"z", 100).await.unwrap();
    assert_eq!(
        all.iter().map(|p| p.0.clone()).collect::<Vec<_>>(),
        vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]
    );
    raw.delete_range(b"a", b"c").await.unwrap();
    assert_eq!(
        raw.scan(b"", b"", 100).await.unwrap(),
        vec![(b"c".to_vec(), b"3".to_vec())]
    );
    assert_eq!(
        raw.compare_and_swap(b"c", Some(b"3"), b"4").await.unwrap(),
        (Some(b"3".to_vec()), true)
    );
    assert_eq!(
        raw.compare_and_swap(b"c", Some(b"3"), b"5").await.unwrap(),
        (Some(b"4".to_vec()), false)
    );
    raw.delete(b"c").await.unwrap();
    assert_eq!(raw.get(b"c").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_commit_conflict_and_read_their_snapshot() {
    let c = Cluster::start(true, 1).await;
    let txn = connect(&c).await.txn();
    let mut t = txn.begin().await.unwrap();
    t.put(b"x".to_vec(), b"1".to_vec());
    t.put(b"y".to_vec(), b"1".to_vec());
    assert_eq!(
        t.get(b"x").await.unwrap(),
        Some(b"1".to_vec()),
        "reads its own writes"
    );
    t.commit().await.unwrap();

    let reader = txn.begin().await.unwrap();
    let mut t1 = txn.begin().await.unwrap();
    let mut t2 = txn.begin().await.unwrap();
    // t2 reads x before t1 commits, so t1's commit lands after t2's
    // snapshot. (Unread, a one-phase commit may take t2's start_ts as its
    // commit_ts; t2's snapshot then includes it and no conflict is due.)
    assert_eq!(t2.get(b"x").await.unwrap(), Some(b"1".to_vec()));
    t1.put(b"x".to_vec(), b"2".to_vec());
    t2.put(b"x".to_vec(), b"3".to_vec());
    t1.commit().await.unwrap();
    match t2.commit().await {
        Err(Error::Conflict { key, .. }) => assert_eq!(key, b"x".to_vec()),
        other => panic!("expected a write conflict on x, got {other:?}"),
    }
    assert_eq!(
        reader.get(b"x").await.unwrap(),
        Some(b"1".to_vec()),
        "an older snapshot does not see the new commit"
    );
    assert_eq!(txn.get_latest(b"x").await.unwrap(), Some(b"2".to_vec()));
    let scan = txn.begin().await.unwrap().scan(b"", b"", 10).await.unwrap();
    assert_eq!(
        scan,
        vec![
            (b"x".to_vec(), b"2".to_vec()),
            (b"y".to_vec(), b"1".to_vec())
        ]
    );

    let mut ins = txn.begin().await.unwrap();
    ins.insert(b"y".to_vec(), b"9".to_vec());
    assert!(matches!(
        ins.commit().await,
        Err(Error::AlreadyExist { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pessimistic_lock_holds_off_a_second_locker_until_commit() {
    let c = Cluster::start(true, 1).await;
    let txn = connect(&c).await.txn();
    let mut seed = txn.begin().await.unwrap();
    seed.put(b"acct".to_vec(), b"100".to_vec());
    seed.commit().await.unwrap();

    let mut p1 = txn.begin_pessimistic().await.unwrap();
    assert_eq!(
        p1.get_for_update(b"acct").await.unwrap(),
        Some(b"100".to_vec())
    );
    let txn2 = txn.clone();
    let second = tokio::spawn(async move {
        let mut p2 = txn2.begin_pessimistic().await.unwrap();
        let v = p2.get_for_update(b"acct").await.unwrap();
        p2.put(b"acct".to_vec(), b"second".to_vec());
        p2.commit().await.unwrap();
        v
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !second.is_finished(),
        "the second locker waits while the first holds the lock"
    );
    p1.put(b"acct".to_vec(), b"90".to_vec());
    p1.commit().await.unwrap();
    let seen = second.await.unwrap();
    assert_eq!(
        seen,
        Some(b"90".to_vec()),
        "the second locker sees the first's commit"
    );
    assert_eq!(
        txn.get_latest(b"acct").await.unwrap(),
        Some(b"second".to_vec())
    );
}

/// Reads of many concurrent callers share the store's BatchCommands
/// stream; each caller gets the answer to its own request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_reads_over_the_batch_stream_each_get_their_own_answer() {
    let c = Cluster::start(true, 1).await;
    let txn = connect(&c).await.txn();
    let mut w = txn.begin().await.unwrap();
    for i in 0..100u32 {
        w.put(
            format!("k{i:03}").into_bytes(),
            format!("v{i}").into_bytes(),
        );
    }
    w.commit().await.unwrap();
    let snapshot = txn.begin().await.unwrap();
    let reads = (0..400u32).map(|n| {
        let (txn, snap) = (txn.clone(), &snapshot);
        async move {
            let i = n % 100;
            let key = format!("k{i:03}").into_bytes();
            let got = if n % 2 == 0 {
                snap.get(&key).await.unwrap()
            } else {
                txn.get_latest(&key).await.unwrap()
            };
            assert_eq!(got, Some(format!("v{i}").into_bytes()), "read {n}");
            let range = snap.scan(&key, b"k999", 3).await.unwrap();
            assert_eq!(range.first().map(|(k, _)| k.clone()), Some(key));
        }
    });
    futures::future::join_all(reads).await;
}

/// A transaction that sits between statements longer than its lock TTL
/// keeps its locks (its heartbeat extends the primary's TTL): another
/// locker waits and gives up rather than taking them over, and the holder
/// commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pessimistic_locks_outlive_their_ttl_while_the_transaction_is_alive() {
    let c = Cluster::start(true, 1).await;
    let txn = connect(&c)
        .await
        .txn()
        .with_pessimistic_lock_ttl(Duration::from_millis(1500));
    let mut holder = txn.begin_pessimistic().await.unwrap();
    holder.lock_keys(&[b"p".to_vec()]).await.unwrap();
    holder.lock_keys(&[b"s".to_vec()]).await.unwrap();
    // Well past the TTL (and the age added to it when the locks were taken).
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut other = txn.begin_pessimistic().await.unwrap();
    other.set_lock_wait_timeout(Duration::from_millis(1500));
    let taken = other.lock_keys(&[b"s".to_vec()]).await;
    assert!(
        matches!(taken, Err(tiox_client::Error::Locked { .. })),
        "the live transaction's lock must not be taken over: {taken:?}"
    );
    other.rollback().await.unwrap();
    holder.put(b"p".to_vec(), b"1".to_vec());
    holder.put(b"s".to_vec(), b"1".to_vec());
    holder.commit().await.unwrap();
    assert_eq!(txn.get_latest(b"s").await.unwrap(), Some(b"1".to_vec()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reader_rolls_back_the_locks_of_a_dead_transaction() {
    use tiox_proto::kvrpcpb;
    let c = Cluster::start(true, 1).await;
    let client = connect(&c).await;
    let txn = client.txn();
    // A transaction prewrites two keys and dies before committing.
    let start_ts = txn.current_ts().await.unwrap();
    let keys = [b"dead/p".to_vec(), b"dead/s".to_vec()];
    let (_, r) = client
        .kv
        .request(&tiox_client::keys::encode_bytes(&keys[0]), |ctx, mut s| {
            let req = kvrpcpb::PrewriteRequest {
                context: Some(ctx),
                mutations: keys
                    .iter()
                    .map(|k| kvrpcpb::Mutation {
                        op: kvrpcpb::Op::Put as i32,
                        key: k.clone(),
                        value: b"v".to_vec(),
                        ..Default::default()
                    })
                    .collect(),
                primary_lock: keys[0].clone(),
                start_version: start_ts,
                lock_ttl: 200,
                ..Default::default()
            };
            async move { s.kv_prewrite(req).await }
        })
        .await
        .unwrap();
    assert!(r.errors.is_empty());
    // A reader finds the lock, waits out the TTL, and rolls it back.
    let reader = txn.begin().await.unwrap();
    assert_eq!(reader.get(b"dead/s").await.unwrap(), None);
    let mut w = txn.begin().await.unwrap();
    w.put(b"dead/s".to_vec(), b"alive".to_vec());
    w.commit().await.unwrap();
    assert_eq!(
        txn.get_latest(b"dead/s").await.unwrap(),
        Some(b"alive".to_vec())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_timestamp_requests_share_tso_rpcs() {
    let c = Cluster::start(true, 1).await;
    let client = Arc::new(connect(&c).await);
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut v = Vec::new();
            for _ in 0..20 {
                v.push(client.tso.get_ts().await.unwrap());
            }
            v
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        let v = t.await.unwrap();
        assert!(
            v.windows(2).all(|w| w[0] < w[1]),
            "each caller's timestamps increase"
        );
        all.extend(v);
    }
    let n = all.len();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), n, "no timestamp is handed out twice");
    let rpcs = client
        .tso
        .stats
        .rpcs
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        rpcs < n as u64,
        "{n} timestamps took {rpcs} RPCs: concurrent callers must share RPCs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_removes_versions_hidden_before_the_safe_point_and_keeps_the_visible_one() {
    let c = Cluster::start(true, 1).await;
    let txn = connect(&c).await.txn();
    let mut stamps = Vec::new();
    for v in [b"v1", b"v2", b"v3"] {
        let mut t = txn.begin().await.unwrap();
        t.put(b"gc-key".to_vec(), v.to_vec());
        stamps.push(t.commit().await.unwrap());
    }
    let between_v1_and_v2 = stamps[0] + 1;
    assert_eq!(
        txn.snapshot_get(b"gc-key", between_v1_and_v2)
            .await
            .unwrap(),
        Some(b"v1".to_vec()),
        "before GC the old snapshot sees v1"
    );
    let safe_point = txn.current_ts().await.unwrap();
    let regions = txn.gc(safe_point).await.unwrap();
    assert!(regions >= 1);
    assert_eq!(
        txn.snapshot_get(b"gc-key", safe_point).await.unwrap(),
        Some(b"v3".to_vec()),
        "the version visible at the safe point is kept"
    );
    assert_eq!(
        txn.snapshot_get(b"gc-key", between_v1_and_v2)
            .await
            .unwrap(),
        None,
        "v1, hidden by v2 before the safe point, is gone"
    );
}
