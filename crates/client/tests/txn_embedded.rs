//! The transactional client against the embedded store (`tiox_kv::unistore`):
//! the real client and the real request layer and MVCC code, in-process.
//! Each test opens its own temporary store; abandoned transactions are made
//! by sending the Percolator requests a crashed client would have left
//! behind straight to the store's request layer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tiox_client::txn::TxnClient;
use tiox_client::Error;
use tiox_kv::unistore::{Unistore, REGION_ID};
use tiox_proto::{kvrpcpb, metapb};

fn store() -> (Arc<Unistore>, TxnClient) {
    let s = Unistore::temporary().expect("temporary store");
    let c = s.txn_client();
    (s, c)
}

fn ctx() -> Option<kvrpcpb::Context> {
    Some(kvrpcpb::Context {
        region_id: REGION_ID,
        region_epoch: Some(metapb::RegionEpoch {
            conf_ver: 1,
            version: 1,
        }),
        ..Default::default()
    })
}

/// Prewrites `keys` (the first is the primary) at `start_ts` as a client
/// that then goes away would have.
async fn prewrite(s: &Unistore, keys: &[&[u8]], value: &[u8], start_ts: u64, ttl_ms: u64) {
    let req = kvrpcpb::PrewriteRequest {
        context: ctx(),
        mutations: keys
            .iter()
            .map(|k| kvrpcpb::Mutation {
                op: kvrpcpb::Op::Put as i32,
                key: k.to_vec(),
                value: value.to_vec(),
                ..Default::default()
            })
            .collect(),
        primary_lock: keys[0].to_vec(),
        start_version: start_ts,
        lock_ttl: ttl_ms,
        txn_size: keys.len() as u64,
        ..Default::default()
    };
    let resp = s.storage().prewrite(req).await.expect("prewrite");
    assert!(resp.errors.is_empty(), "{:?}", resp.errors);
}

/// Commits `keys` of the transaction `start_ts` at `commit_ts`.
async fn commit(s: &Unistore, keys: &[&[u8]], start_ts: u64, commit_ts: u64) {
    let req = kvrpcpb::CommitRequest {
        context: ctx(),
        start_version: start_ts,
        keys: keys.iter().map(|k| k.to_vec()).collect(),
        commit_version: commit_ts,
        ..Default::default()
    };
    let resp = s.storage().commit(req).await.expect("commit");
    assert!(resp.error.is_none(), "{:?}", resp.error);
}

async fn locks(s: &Unistore) -> Vec<kvrpcpb::LockInfo> {
    let req = kvrpcpb::ScanLockRequest {
        context: ctx(),
        max_version: u64::MAX,
        limit: 100,
        ..Default::default()
    };
    s.storage().scan_lock(req).expect("scan locks").locks
}

async fn put(c: &TxnClient, key: &[u8], value: &[u8]) -> u64 {
    let mut t = c.begin().await.unwrap();
    t.put(key.to_vec(), value.to_vec());
    t.commit().await.unwrap()
}

#[tokio::test]
async fn a_commit_is_seen_by_later_snapshots_and_not_by_earlier_ones() {
    let (_s, c) = store();
    let before = c.begin().await.unwrap();
    let commit_ts = put(&c, b"k", b"v1").await;
    assert!(commit_ts > before.start_ts());
    assert_eq!(before.get(b"k").await.unwrap(), None, "snapshot isolation");
    let after = c.begin().await.unwrap();
    assert_eq!(after.get(b"k").await.unwrap(), Some(b"v1".to_vec()));
    assert_eq!(c.get_latest(b"k").await.unwrap(), Some(b"v1".to_vec()));
    let rows = after.scan(b"a", b"z", 10).await.unwrap();
    assert_eq!(rows, vec![(b"k".to_vec(), b"v1".to_vec())]);
}

#[tokio::test]
async fn the_second_optimistic_writer_of_a_key_gets_a_conflict_and_writes_nothing() {
    let (_s, c) = store();
    let mut a = c.begin().await.unwrap();
    let mut b = c.begin().await.unwrap();
    // b reads the key first: a's commit lands after b's snapshot. (Had
    // nothing read it, a one-phase commit could take b's start_ts as its
    // commit_ts, and b's snapshot would rightly include it: no conflict.)
    assert_eq!(b.get(b"k").await.unwrap(), None);
    a.put(b"k".to_vec(), b"a".to_vec());
    b.put(b"k".to_vec(), b"b".to_vec());
    b.put(b"other".to_vec(), b"b".to_vec());
    a.commit().await.unwrap();
    match b.commit().await {
        Err(Error::Conflict { key, .. }) => assert_eq!(key, b"k".to_vec()),
        other => panic!("expected a write conflict, got {other:?}"),
    }
    assert_eq!(c.get_latest(b"k").await.unwrap(), Some(b"a".to_vec()));
    assert_eq!(c.get_latest(b"other").await.unwrap(), None);
}

#[tokio::test]
async fn an_insert_of_an_existing_key_fails_with_already_exist() {
    let (_s, c) = store();
    put(&c, b"k", b"v").await;
    let mut t = c.begin().await.unwrap();
    t.insert(b"k".to_vec(), b"w".to_vec());
    assert!(matches!(t.commit().await, Err(Error::AlreadyExist { .. })));
}

#[tokio::test]
async fn a_pessimistic_lock_waits_for_the_holder_and_then_sees_its_commit() {
    let (_s, c) = store();
    put(&c, b"k", b"0").await;
    let mut holder = c.begin_pessimistic().await.unwrap();
    assert_eq!(
        holder.get_for_update(b"k").await.unwrap(),
        Some(b"0".to_vec())
    );
    holder.put(b"k".to_vec(), b"1".to_vec());
    let c2 = c.clone();
    let waiter = tokio::spawn(async move {
        let mut w = c2.begin_pessimistic().await.unwrap();
        let t = Instant::now();
        let seen = w.get_for_update(b"k").await.unwrap();
        let waited = t.elapsed();
        w.put(b"k".to_vec(), b"2".to_vec());
        w.commit().await.unwrap();
        (seen, waited)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiter.is_finished(), "the waiter is blocked by the lock");
    holder.commit().await.unwrap();
    let (seen, waited) = waiter.await.unwrap();
    assert_eq!(seen, Some(b"1".to_vec()), "locks read the newest commit");
    assert!(waited >= Duration::from_millis(250), "{waited:?}");
    assert_eq!(c.get_latest(b"k").await.unwrap(), Some(b"2".to_vec()));
}

#[tokio::test]
async fn a_pessimistic_lock_wait_times_out_while_the_holder_is_alive() {
    let (_s, c) = store();
    let mut holder = c.begin_pessimistic().await.unwrap();
    holder.lock_keys(&[b"k".to_vec()]).await.unwrap();
    let mut waiter = c.begin_pessimistic().await.unwrap();
    waiter.set_lock_wait_timeout(Duration::from_millis(200));
    let t = Instant::now();
    match waiter.get_for_update(b"k").await {
        Err(Error::Locked { key, lock_ts }) => {
            assert_eq!(key, b"k".to_vec());
            assert_eq!(lock_ts, holder.start_ts());
        }
        other => panic!("expected a lock wait timeout, got {other:?}"),
    }
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_millis(200) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    waiter.rollback().await.unwrap();
    holder.rollback().await.unwrap();
    assert!(locks(&_s).await.is_empty(), "rollback released the lock");
}

#[tokio::test]
async fn two_transactions_waiting_for_each_other_are_told_of_the_deadlock() {
    let (_s, c) = store();
    let mut a = c.begin_pessimistic().await.unwrap();
    let mut b = c.begin_pessimistic().await.unwrap();
    a.lock_keys(&[b"x".to_vec()]).await.unwrap();
    b.lock_keys(&[b"y".to_vec()]).await.unwrap();
    let a_waits = tokio::spawn(async move {
        let r = a.lock_keys(&[b"y".to_vec()]).await.map(|_| ());
        (a, r)
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    match b.lock_keys(&[b"x".to_vec()]).await {
        Err(Error::Deadlock { key, .. }) => assert_eq!(key, b"x".to_vec()),
        other => panic!("expected a deadlock, got {other:?}"),
    }
    b.rollback().await.unwrap();
    let (a, r) = a_waits.await.unwrap();
    r.expect("a gets y once b rolled back");
    a.commit().await.unwrap();
}

#[tokio::test]
async fn a_reader_commits_the_secondary_of_a_transaction_whose_primary_committed() {
    let (s, c) = store();
    let start_ts = c.current_ts().await.unwrap();
    prewrite(&s, &[b"p", b"s"], b"v", start_ts, 60_000).await;
    let commit_ts = c.current_ts().await.unwrap();
    commit(&s, &[b"p"], start_ts, commit_ts).await;
    // The client died before committing "s": its lock is left.
    assert_eq!(locks(&s).await.len(), 1);
    let t = c.begin().await.unwrap();
    assert_eq!(t.get(b"s").await.unwrap(), Some(b"v".to_vec()));
    assert!(locks(&s).await.is_empty(), "the secondary was committed");
}

#[tokio::test]
async fn a_reader_rolls_back_the_secondary_of_a_transaction_whose_primary_rolled_back() {
    let (s, c) = store();
    put(&c, b"s", b"old").await;
    let start_ts = c.current_ts().await.unwrap();
    prewrite(&s, &[b"p", b"s"], b"new", start_ts, 60_000).await;
    let req = kvrpcpb::BatchRollbackRequest {
        context: ctx(),
        start_version: start_ts,
        keys: vec![b"p".to_vec()],
        ..Default::default()
    };
    assert!(s
        .storage()
        .batch_rollback(req)
        .await
        .unwrap()
        .error
        .is_none());
    let t = c.begin().await.unwrap();
    assert_eq!(t.get(b"s").await.unwrap(), Some(b"old".to_vec()));
    assert!(locks(&s).await.is_empty(), "the secondary was rolled back");
    assert_eq!(t.get(b"p").await.unwrap(), None);
}

#[tokio::test]
async fn a_writer_rolls_back_an_abandoned_transaction_once_its_lock_expired() {
    let (s, c) = store();
    let start_ts = c.current_ts().await.unwrap();
    prewrite(&s, &[b"p", b"s"], b"abandoned", start_ts, 50).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut t = c.begin().await.unwrap();
    assert_eq!(t.get(b"s").await.unwrap(), None, "expired: rolled back");
    t.put(b"p".to_vec(), b"mine".to_vec());
    t.commit().await.unwrap();
    assert_eq!(c.get_latest(b"p").await.unwrap(), Some(b"mine".to_vec()));
    assert!(locks(&s).await.is_empty());
}

#[tokio::test]
async fn a_newest_read_waits_for_a_live_lock_and_then_sees_its_commit() {
    let (s, c) = store();
    put(&c, b"k", b"old").await;
    let start_ts = c.current_ts().await.unwrap();
    // Prewritten by a live client (long TTL) that commits a little later;
    // "k" is a secondary (a read of a locked primary at the newest version
    // returns the last commit, as in TiKV).
    prewrite(&s, &[b"p", b"k"], b"new", start_ts, 60_000).await;
    let store = s.clone();
    let committer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let commit_ts = store.txn_client().current_ts().await.unwrap();
        commit(&store, &[b"p", b"k"], start_ts, commit_ts).await;
    });
    let t = Instant::now();
    assert_eq!(c.get_latest(b"k").await.unwrap(), Some(b"new".to_vec()));
    assert!(
        t.elapsed() >= Duration::from_millis(150),
        "{:?}",
        t.elapsed()
    );
    committer.await.unwrap();
}

#[tokio::test]
async fn rolling_back_to_a_savepoint_drops_only_the_later_writes() {
    let (_s, c) = store();
    let mut t = c.begin().await.unwrap();
    t.put(b"a".to_vec(), b"1".to_vec());
    let sp = t.savepoint();
    t.put(b"b".to_vec(), b"2".to_vec());
    t.put(b"a".to_vec(), b"changed".to_vec());
    t.rollback_to(sp);
    assert_eq!(t.get(b"a").await.unwrap(), Some(b"1".to_vec()));
    assert_eq!(t.get(b"b").await.unwrap(), None);
    t.commit().await.unwrap();
    assert_eq!(c.get_latest(b"a").await.unwrap(), Some(b"1".to_vec()));
    assert_eq!(c.get_latest(b"b").await.unwrap(), None);
}

#[tokio::test]
async fn a_rollback_leaves_nothing_behind() {
    let (s, c) = store();
    let mut t = c.begin_pessimistic().await.unwrap();
    t.lock_keys(&[b"a".to_vec()]).await.unwrap();
    t.put(b"a".to_vec(), b"1".to_vec());
    t.rollback().await.unwrap();
    assert!(locks(&s).await.is_empty());
    assert_eq!(c.get_latest(b"a").await.unwrap(), None);
}

#[tokio::test]
async fn values_and_keys_over_the_store_limits_are_refused_as_on_a_cluster() {
    let (_s, c) = store();
    let mut t = c.begin().await.unwrap();
    t.put(
        b"big".to_vec(),
        vec![0; tiox_kv::storage::MAX_VALUE_SIZE + 1],
    );
    let err = t.commit().await.expect_err("too large");
    assert!(err.to_string().contains("the limit is"), "{err}");
    assert_eq!(c.get_latest(b"big").await.unwrap(), None);
    let long_key = vec![b'k'; tiox_kv::storage::MAX_KEY_SIZE + 1];
    let err = c.get_latest(&long_key).await.expect_err("key too long");
    assert!(err.to_string().contains("the limit is"), "{err}");
}

#[tokio::test]
async fn a_store_on_disk_keeps_commits_and_timestamp_order_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let commit_ts = {
        let s = Unistore::open(dir.path()).unwrap();
        put(&s.txn_client(), b"k", b"durable").await
    };
    let s = Unistore::open(dir.path()).unwrap();
    let c = s.txn_client();
    assert!(c.current_ts().await.unwrap() > commit_ts);
    assert_eq!(c.get_latest(b"k").await.unwrap(), Some(b"durable".to_vec()));
}

#[tokio::test]
async fn a_one_region_commit_takes_one_phase_above_the_highest_read_and_leaves_no_lock() {
    let (s, c) = store();
    put(&c, b"k", b"old").await;
    let mut t = c.begin().await.unwrap();
    t.put(b"k".to_vec(), b"new".to_vec());
    t.put(b"j".to_vec(), b"new".to_vec());
    // A snapshot above the transaction's start reads the key first.
    let read_ts = c.current_ts().await.unwrap();
    assert_eq!(
        c.snapshot_get(b"k", read_ts).await.unwrap(),
        Some(b"old".to_vec())
    );
    let later_ts = c.current_ts().await.unwrap();
    let commit_ts = t.commit().await.unwrap();
    // One phase: the store chose max read ts + 1, not a TSO timestamp
    // (which would be above `later_ts`).
    assert_eq!(commit_ts, read_ts + 1);
    assert!(commit_ts <= later_ts);
    assert!(locks(&s).await.is_empty());
    // The reader's snapshot is unchanged; the commit_ts sees both keys.
    assert_eq!(
        c.snapshot_get(b"k", read_ts).await.unwrap(),
        Some(b"old".to_vec())
    );
    assert_eq!(
        c.snapshot_get(b"j", commit_ts).await.unwrap(),
        Some(b"new".to_vec())
    );
    assert_eq!(c.get_latest(b"k").await.unwrap(), Some(b"new".to_vec()));
}

#[tokio::test]
async fn with_one_phase_commit_off_the_commit_ts_comes_from_the_tso() {
    let (_s, c) = store();
    let mut t = c.begin().await.unwrap();
    t.set_one_pc(false);
    t.put(b"k".to_vec(), b"v".to_vec());
    let before_commit = c.current_ts().await.unwrap();
    let commit_ts = t.commit().await.unwrap();
    assert!(commit_ts > before_commit);
    let c = c.with_one_pc(false);
    let mut t = c.begin().await.unwrap();
    t.put(b"k".to_vec(), b"w".to_vec());
    let before_commit = c.current_ts().await.unwrap();
    assert!(t.commit().await.unwrap() > before_commit);
    assert_eq!(c.get_latest(b"k").await.unwrap(), Some(b"w".to_vec()));
}

#[tokio::test]
async fn a_pessimistic_transaction_commits_in_one_phase_above_its_for_update_ts() {
    let (s, c) = store();
    put(&c, b"r", b"0").await;
    let mut t = c.begin_pessimistic().await.unwrap();
    assert_eq!(t.get_for_update(b"r").await.unwrap(), Some(b"0".to_vec()));
    t.put(b"r".to_vec(), b"1".to_vec());
    t.put(b"index".to_vec(), b"1".to_vec());
    let start_ts = t.start_ts();
    let commit_ts = t.commit().await.unwrap();
    assert!(commit_ts > start_ts);
    assert!(locks(&s).await.is_empty());
    assert_eq!(c.get_latest(b"r").await.unwrap(), Some(b"1".to_vec()));
    assert_eq!(
        c.snapshot_get(b"index", commit_ts).await.unwrap(),
        Some(b"1".to_vec())
    );
}

#[tokio::test]
async fn a_read_meeting_a_one_phase_commit_in_flight_is_told_the_key_is_locked() {
    let (s, c) = store();
    put(&c, b"k", b"v").await;
    let before_ts = c.current_ts().await.unwrap();
    let start_ts = c.current_ts().await.unwrap();
    // What the request layer does between registering a 1PC and applying it.
    let in_flight =
        s.storage()
            .concurrency()
            .register_one_pc(vec![b"k".to_vec()], start_ts, b"k", 3000, 1);
    let read_ts = c.current_ts().await.unwrap();
    let get = kvrpcpb::GetRequest {
        context: ctx(),
        key: b"k".to_vec(),
        version: read_ts,
    };
    let resp = s.storage().get(get.clone()).unwrap();
    let lock = resp.error.and_then(|e| e.locked).expect("locked");
    assert_eq!((lock.key, lock.lock_version), (b"k".to_vec(), start_ts));
    let scan = kvrpcpb::ScanRequest {
        context: ctx(),
        start_key: b"a".to_vec(),
        limit: 10,
        version: read_ts,
        ..Default::default()
    };
    let pairs = s.storage().scan(scan).unwrap().pairs;
    assert!(pairs[0].error.as_ref().is_some_and(|e| e.locked.is_some()));
    // A read below the start_ts cannot see the write anyway.
    let below = kvrpcpb::GetRequest {
        version: before_ts,
        ..get.clone()
    };
    assert_eq!(s.storage().get(below).unwrap().value, b"v".to_vec());
    drop(in_flight);
    assert_eq!(s.storage().get(get).unwrap().value, b"v".to_vec());
}
