//! A commit whose answer is lost: the embedded store (`tiox_kv::unistore`)
//! behind a wrapper that applies every commit (or one-phase prewrite) and
//! then drops the reply, as a network would after the request arrived. The
//! transaction DID commit; the client must never report success it did not
//! hear, and must not report a failure the caller could take for "rolled
//! back, run it again": it reports [`Error::CommitUndetermined`].

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use tiox_client::kv::KvClient;
use tiox_client::region_cache::RegionEntry;
use tiox_client::transport::{BoxFuture, Store, Timestamps};
use tiox_client::tso::{compose, TsoClient};
use tiox_client::txn::TxnClient;
use tiox_client::Error;
use tiox_kv::unistore::Unistore;
use tiox_proto::tikvpb::batch_commands_request::request::Cmd as Req;
use tiox_proto::tikvpb::batch_commands_response::response::Cmd as Resp;

/// Which replies the wrapper drops.
#[derive(Clone, Copy, PartialEq)]
enum Lose {
    /// Every reply to a commit of the primary.
    Commits,
    /// Every reply to a prewrite that asks for one-phase commit.
    OnePcPrewrites,
    /// The first reply to a prewrite that asks for one-phase commit only:
    /// the client's retry hears the store's answer to a duplicate.
    FirstOnePcPrewrite,
}

struct LossyStore {
    inner: Arc<Unistore>,
    lose: Lose,
    lost: AtomicUsize,
}

impl Store for LossyStore {
    fn locate(&self, key: &[u8]) -> tiox_client::Result<RegionEntry> {
        self.inner.locate(key)
    }

    fn call(&self, req: Req) -> BoxFuture<'_, Result<Resp, tonic::Status>> {
        let lose = match (&req, self.lose) {
            (Req::Commit(_), Lose::Commits) => true,
            (Req::Prewrite(p), Lose::OnePcPrewrites) => p.try_one_pc,
            (Req::Prewrite(p), Lose::FirstOnePcPrewrite) => {
                p.try_one_pc && self.lost.load(Ordering::Relaxed) == 0
            }
            _ => false,
        };
        Box::pin(async move {
            let answer = self.inner.call(req).await;
            if lose {
                self.lost.fetch_add(1, Ordering::Relaxed);
                return Err(tonic::Status::unavailable("the reply was lost"));
            }
            answer
        })
    }

    fn name(&self) -> String {
        "the lossy store".into()
    }
}

/// Timestamps in PD's layout from the wall clock and a counter.
struct Clock(AtomicU64);

impl Timestamps for Clock {
    fn next(&self) -> tiox_client::Result<u64> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let prev = self
            .0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |p| {
                Some((p + 1).max(compose(now, 0)))
            })
            .unwrap();
        Ok((prev + 1).max(compose(now, 0)))
    }
}

fn lossy(lose: Lose) -> (Arc<Unistore>, Arc<LossyStore>, TxnClient) {
    let inner = Unistore::temporary().expect("temporary store");
    let store = Arc::new(LossyStore {
        inner: inner.clone(),
        lose,
        lost: AtomicUsize::new(0),
    });
    let client = TxnClient::new(
        Arc::new(KvClient::local(store.clone())),
        TsoClient::local(Arc::new(Clock(AtomicU64::new(0)))),
    );
    (inner, store, client)
}

async fn assert_undetermined_but_committed(lose: Lose, one_pc: bool) {
    let (inner, store, client) = lossy(lose);
    let client = client.with_one_pc(one_pc);
    let mut t = client.begin().await.unwrap();
    t.put(b"a".to_vec(), b"1".to_vec());
    t.put(b"b".to_vec(), b"2".to_vec());
    let start_ts = t.start_ts();
    let err = t
        .commit()
        .await
        .expect_err("a commit whose answer was lost reported success");
    assert!(
        store.lost.load(Ordering::Relaxed) > 0,
        "no reply was dropped"
    );
    match &err {
        Error::CommitUndetermined { start_ts: ts, .. } => assert_eq!(*ts, start_ts),
        other => panic!("a lost commit answer reported as {other:?}"),
    }
    assert!(!err.is_retryable(), "{err}");
    assert!(err.to_string().contains("undetermined"), "{err}");
    // It did commit: a reader (over the store itself) sees both keys.
    let reader = inner.txn_client();
    let r = reader.begin().await.unwrap();
    assert_eq!(r.get(b"a").await.unwrap(), Some(b"1".to_vec()), "{err}");
    assert_eq!(r.get(b"b").await.unwrap(), Some(b"2".to_vec()), "{err}");
}

#[tokio::test]
async fn a_lost_answer_to_the_primary_commit_is_reported_undetermined_not_failed() {
    assert_undetermined_but_committed(Lose::Commits, false).await;
}

#[tokio::test]
async fn a_lost_answer_to_a_one_phase_commit_is_reported_undetermined_not_failed() {
    assert_undetermined_but_committed(Lose::OnePcPrewrites, true).await;
}

/// The retry of a one-phase prewrite whose first answer was lost meets
/// the transaction's own commit: whatever the client reports, it must
/// not be a failure while the data is committed.
#[tokio::test]
async fn a_retried_one_phase_commit_whose_first_answer_was_lost_is_not_reported_failed() {
    let (inner, store, client) = lossy(Lose::FirstOnePcPrewrite);
    let mut t = client.begin().await.unwrap();
    t.put(b"a".to_vec(), b"1".to_vec());
    let outcome = t.commit().await;
    assert_eq!(store.lost.load(Ordering::Relaxed), 1);
    let committed = inner
        .txn_client()
        .begin()
        .await
        .unwrap()
        .get(b"a")
        .await
        .unwrap();
    eprintln!("retried 1PC: {outcome:?}, committed: {committed:?}");
    match (&outcome, &committed) {
        (Ok(_), Some(_)) | (Err(Error::CommitUndetermined { .. }), _) => {}
        (Err(e), Some(_)) => panic!("the transaction committed but the client said: {e}"),
        (Ok(_), None) => panic!("the client said committed but nothing is there"),
        (Err(e), None) => eprintln!("not committed, reported {e}"),
    }
}
