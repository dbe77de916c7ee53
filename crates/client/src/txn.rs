//! The transactional client: Percolator two-phase commit over the stores.
//!
//! ```text
//!  begin ─► start_ts (TSO) ─► reads at start_ts (locks resolved on the way)
//!        ─► writes buffered locally
//!  commit ─► prewrite every key, grouped by region, in parallel (primary = first key)
//!         ─► commit_ts (TSO) ─► commit the primary: the transaction is committed
//!         ─► commit the secondaries (a failure here is repaired by readers)
//! ```
//!
//! One-phase commit (1PC, on by default as in TiDB): when one prewrite
//! request holds every key of the transaction (all keys in one region), it
//! carries `try_one_pc`; the store commits it at apply and answers with
//! `one_pc_commit_ts` — one Raft round, no TSO request for a commit_ts, no
//! commit RPC. A store that cannot (a leader not yet synced for its term,
//! a commit_ts above `max_commit_ts`) writes locks instead and answers 0;
//! the client then commits in two phases as above.
//!
//! A reader that meets a lock asks the lock's primary for the transaction's
//! status (CheckTxnStatus): committed -> commit the lock, rolled back or
//! expired -> roll it back, alive -> back off and retry. Write conflicts
//! surface as [`Error::Conflict`] with the key; nothing is retried silently.
//!
//! A commit that was sent and never answered (the primary's commit, or a
//! one-phase prewrite, ending with the store or PD unreachable) fails with
//! [`Error::CommitUndetermined`]: the transaction may have committed, so
//! the caller is told neither "committed" nor a failure to retry blindly.
//!
//! Pessimistic locks carry a TTL (21 s plus the transaction's age when
//! taken); while the transaction is alive a background heartbeat extends
//! its primary lock's TTL every half TTL (TxnHeartBeat, as TiDB does), for
//! at most [`MAX_TXN_TTL`]. A transaction that sits between statements
//! longer than the TTL keeps its locks; one whose client died loses them
//! once the TTL passes.
//!
//! Point reads outside a transaction ([`TxnClient::get_latest`]) skip the
//! TSO round trip: they read at ts = MAX, which returns the newest committed
//! version after resolving any lock on the key. That sees every transaction
//! committed before the read began, so a single-key autocommit read loses
//! no guarantee; inside a transaction reads always use start_ts so that
//! all reads come from one snapshot.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use tiox_proto::kvrpcpb;

use crate::backoff::Backoff;
use crate::error::{Error, Result};
use crate::keys::encode_bytes;
use crate::kv::KvClient;
use crate::tso::{TsoClient, LOGICAL_BITS};

/// Lock time-to-live, ms (TiDB's default for small transactions).
pub const LOCK_TTL_MS: u64 = 3000;

/// A buffered change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mutation {
    /// Set a value.
    Put(Vec<u8>),
    /// Delete.
    Delete,
    /// Set a value only if the key does not exist.
    Insert(Vec<u8>),
    /// Lock only.
    Lock,
}

/// A user key and its change (the payload of a prewrite item).
type KeyedMutation = (Vec<u8>, Mutation);

/// How long a pessimistic lock waits for another transaction's lock by
/// default (it must stay below the lock TTL, or the waiter would roll back
/// a live transaction's locks).
pub const LOCK_WAIT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// Who waits for whom among this client's transactions (start ts -> the
/// start ts of the lock holder). A wait that would close a cycle is a
/// deadlock and is refused at once. Cycles through transactions of other
/// clients are broken by the lock-wait timeout instead.
#[derive(Default)]
pub struct Detector {
    waits: std::sync::Mutex<std::collections::HashMap<u64, u64>>,
}

impl Detector {
    /// Records that `waiter` waits for `holder`; false if that deadlocks.
    pub fn wait(&self, waiter: u64, holder: u64) -> bool {
        let mut w = self.waits.lock().unwrap_or_else(|e| e.into_inner());
        let mut cur = holder;
        let mut steps = 0;
        while let Some(&next) = w.get(&cur) {
            if next == waiter || cur == waiter {
                return false;
            }
            cur = next;
            steps += 1;
            if steps > 10_000 {
                break;
            }
        }
        if holder == waiter {
            return false;
        }
        w.insert(waiter, holder);
        true
    }

    /// `waiter` no longer waits.
    pub fn done(&self, waiter: u64) {
        self.waits
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&waiter);
    }
}

/// A lock TTL of `base` ms counted from now for a transaction begun at
/// `begun`. TiKV counts a lock's TTL from its transaction's start_ts, so a
/// transaction that has run for a while adds its age (as TiDB does);
/// otherwise its locks would look expired the moment they are written and
/// any reader could roll the transaction back.
fn ttl_from(begun: std::time::Instant, base: u64) -> u64 {
    let age = u64::try_from(begun.elapsed().as_millis()).unwrap_or(u64::MAX);
    age.saturating_add(base)
}

/// Longest a transaction's heartbeat keeps its locks alive (TiDB's
/// `max-txn-ttl` default).
pub const MAX_TXN_TTL: std::time::Duration = std::time::Duration::from_secs(3600);

/// The transactional client.
#[derive(Clone)]
pub struct TxnClient {
    kv: Arc<KvClient>,
    tso: TsoClient,
    detector: Arc<Detector>,
    pessimistic_ttl_ms: u64,
    one_pc: bool,
}

fn key_error(e: &kvrpcpb::KeyError, start_ts: u64) -> Error {
    if let Some(c) = &e.conflict {
        return Error::Conflict {
            key: c.key.clone(),
            start_ts,
            conflict_commit_ts: c.conflict_commit_ts,
        };
    }
    if let Some(a) = &e.already_exist {
        return Error::AlreadyExist { key: a.key.clone() };
    }
    if let Some(l) = &e.locked {
        return Error::Locked {
            key: l.key.clone(),
            lock_ts: l.lock_version,
        };
    }
    let msg = [&e.abort, &e.retryable]
        .iter()
        .find(|m| !m.is_empty())
        .map_or_else(|| format!("{e:?}"), |m| m.to_string());
    Error::Server(msg)
}

/// Whether `e` leaves open whether a request that was sent took effect
/// (no answer came), as opposed to a refusal.
fn unanswered(e: &Error) -> bool {
    matches!(e, Error::Unavailable { .. } | Error::PdUnreachable { .. })
}

fn undetermined(start_ts: u64, e: Error) -> Error {
    Error::CommitUndetermined {
        start_ts,
        reason: e.to_string(),
    }
}

impl TxnClient {
    /// A client over the stores and PD's TSO.
    pub fn new(kv: Arc<KvClient>, tso: TsoClient) -> TxnClient {
        TxnClient {
            kv,
            tso,
            detector: Arc::new(Detector::default()),
            pessimistic_ttl_ms: LOCK_TTL_MS * 7,
            one_pc: true,
        }
    }

    /// Whether new transactions try one-phase commit (default on; each
    /// transaction can change it with [`Transaction::set_one_pc`]).
    pub fn with_one_pc(mut self, on: bool) -> TxnClient {
        self.one_pc = on;
        self
    }

    /// Sets the TTL of pessimistic locks (default 21 s); the heartbeat
    /// runs every half of it. Shorter TTLs are for tests.
    pub fn with_pessimistic_lock_ttl(mut self, ttl: std::time::Duration) -> TxnClient {
        self.pessimistic_ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        self
    }

    /// Keeps `primary`'s lock of transaction `start_ts` alive: every half
    /// TTL its TTL becomes the transaction's age plus the pessimistic TTL.
    /// Stops when the lock is gone (committed, rolled back) or after
    /// [`MAX_TXN_TTL`]; the caller aborts it when the transaction ends.
    fn spawn_heartbeat(
        &self,
        primary: Vec<u8>,
        start_ts: u64,
        begun: std::time::Instant,
    ) -> tokio::task::AbortHandle {
        let client = self.clone();
        let every = std::time::Duration::from_millis(self.pessimistic_ttl_ms / 2);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if begun.elapsed() > MAX_TXN_TTL {
                    tracing::warn!(
                        start_ts,
                        "transaction older than max-txn-ttl: its locks are no longer kept alive"
                    );
                    return;
                }
                let advise = ttl_from(begun, client.pessimistic_ttl_ms);
                let p = primary.clone();
                let r = client
                    .kv
                    .request(&encode_bytes(&primary), |ctx, mut s| {
                        let req = kvrpcpb::TxnHeartBeatRequest {
                            context: Some(ctx),
                            primary_lock: p.clone(),
                            start_version: start_ts,
                            advise_lock_ttl: advise,
                            ..Default::default()
                        };
                        async move { s.kv_txn_heart_beat(req).await }
                    })
                    .await;
                match r {
                    Ok((_, resp)) if resp.error.is_none() => {}
                    // The lock is gone: committed, rolled back, or taken
                    // over after it expired (the commit will say so).
                    Ok(_) => return,
                    Err(e) => {
                        tracing::debug!(start_ts, "lock heartbeat failed (retrying): {e}")
                    }
                }
            }
        })
        .abort_handle()
    }

    /// A fresh timestamp.
    pub async fn current_ts(&self) -> Result<u64> {
        self.tso.get_ts().await
    }

    /// Starts an optimistic transaction.
    pub async fn begin(&self) -> Result<Transaction> {
        Ok(Transaction::new(
            self.clone(),
            self.tso.get_ts().await?,
            false,
        ))
    }

    /// Removes, in every region, the MVCC versions no snapshot at or after
    /// `safe_point` can see (TiDB's GC). Returns the number of regions.
    pub async fn gc(&self, safe_point: u64) -> Result<usize> {
        let mut cursor = Vec::new();
        let mut regions = 0;
        loop {
            let (entry, r) = self
                .kv
                .request(&encode_bytes(&cursor), |ctx, mut s| {
                    let req = kvrpcpb::GcRequest {
                        context: Some(ctx),
                        safe_point,
                    };
                    async move { s.kv_gc(req).await }
                })
                .await?;
            if let Some(e) = r.error {
                return Err(key_error(&e, safe_point));
            }
            regions += 1;
            let end = entry.region.end_key;
            if end.is_empty() {
                break;
            }
            let Ok((next, _)) = crate::keys::decode_bytes(&end) else {
                break;
            };
            cursor = next;
        }
        Ok(regions)
    }

    /// A read-only view at the newest committed versions, without a TSO
    /// round trip. Only for reading a single key (see `get_latest`); it
    /// must not write (its commit of an empty buffer is a no-op).
    pub fn at_latest(&self) -> Transaction {
        Transaction::new(self.clone(), u64::MAX, false)
    }

    /// Starts a pessimistic transaction (locks taken by `lock_keys` and
    /// `get_for_update` are held until commit or rollback).
    pub async fn begin_pessimistic(&self) -> Result<Transaction> {
        Ok(Transaction::new(
            self.clone(),
            self.tso.get_ts().await?,
            true,
        ))
    }

    /// The newest committed value of `key`, without a TSO round trip (see
    /// the module docs for why this is safe for a single-key read).
    pub async fn get_latest(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.snapshot_get(key, u64::MAX).await
    }

    /// A snapshot read of one key at `ts`.
    pub async fn snapshot_get(&self, key: &[u8], ts: u64) -> Result<Option<Vec<u8>>> {
        let mut backoff = Backoff::lock();
        loop {
            let k = key.to_vec();
            let (_, r) = self
                .kv
                .request(&encode_bytes(key), |ctx, s| {
                    let req = kvrpcpb::GetRequest {
                        context: Some(ctx),
                        key: k.clone(),
                        version: ts,
                    };
                    async move { s.get(req).await }
                })
                .await?;
            match r.error {
                None => return Ok((!r.not_found).then_some(r.value)),
                Some(e) => match &e.locked {
                    Some(lock) => {
                        if !self.resolve_lock(lock, ts).await? && !backoff.wait().await {
                            return Err(Error::Locked {
                                key: lock.key.clone(),
                                lock_ts: lock.lock_version,
                            });
                        }
                    }
                    None => return Err(key_error(&e, ts)),
                },
            }
        }
    }

    /// A snapshot scan of `[start, end)` at `ts`, at most `limit` pairs,
    /// across regions.
    pub async fn snapshot_scan(
        &self,
        start: &[u8],
        end: &[u8],
        limit: u32,
        ts: u64,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut out = Vec::new();
        let mut cursor = start.to_vec();
        let mut backoff = Backoff::lock();
        'regions: while (out.len() as u32) < limit {
            let (from, to, want) = (cursor.clone(), end.to_vec(), limit - out.len() as u32);
            let (entry, r) = self
                .kv
                .request(&encode_bytes(&cursor), |ctx, s| {
                    let req = kvrpcpb::ScanRequest {
                        context: Some(ctx),
                        start_key: from.clone(),
                        end_key: to.clone(),
                        limit: want,
                        version: ts,
                        ..Default::default()
                    };
                    async move { s.scan(req).await }
                })
                .await?;
            if let Some(e) = r.error {
                return Err(key_error(&e, ts));
            }
            let mut batch = Vec::new();
            for p in r.pairs {
                match p.error {
                    None => batch.push((p.key, p.value)),
                    Some(e) => match &e.locked {
                        Some(lock) => {
                            if !self.resolve_lock(lock, ts).await? && !backoff.wait().await {
                                return Err(Error::Locked {
                                    key: lock.key.clone(),
                                    lock_ts: lock.lock_version,
                                });
                            }
                            // Re-read this region from the same cursor.
                            continue 'regions;
                        }
                        None => return Err(key_error(&e, ts)),
                    },
                }
            }
            out.extend(batch);
            // Region boundaries are memcomparable-encoded user keys.
            let region_end = entry.region.end_key;
            if region_end.is_empty() {
                break;
            }
            let Ok((next, _)) = crate::keys::decode_bytes(&region_end) else {
                break;
            };
            if !end.is_empty() && next.as_slice() >= end {
                break;
            }
            cursor = next;
        }
        out.truncate(limit as usize);
        Ok(out)
    }

    /// Removes an expired pessimistic lock: the primary is checked (and
    /// rolled back if it is an expired pessimistic lock too), then this
    /// key's lock is rolled back. False while the primary is alive.
    async fn resolve_pessimistic(
        &self,
        lock: &kvrpcpb::LockInfo,
        caller_ts: u64,
        current_ts: u64,
    ) -> Result<bool> {
        let primary = lock.primary_lock.clone();
        let (_, st) = self
            .kv
            .request(&encode_bytes(&primary), |ctx, mut s| {
                let req = kvrpcpb::CheckTxnStatusRequest {
                    context: Some(ctx),
                    primary_key: primary.clone(),
                    lock_ts: lock.lock_version,
                    caller_start_ts: caller_ts,
                    current_ts,
                    rollback_if_not_exist: true,
                    resolving_pessimistic_lock: true,
                    ..Default::default()
                };
                async move { s.kv_check_txn_status(req).await }
            })
            .await?;
        if let Some(e) = &st.error {
            return Err(key_error(e, caller_ts));
        }
        if st.commit_version == 0 && st.lock_ttl > 0 {
            return Ok(false);
        }
        let key = lock.key.clone();
        let (_, r) = self
            .kv
            .request(&encode_bytes(&key), |ctx, mut s| {
                let req = kvrpcpb::PessimisticRollbackRequest {
                    context: Some(ctx),
                    start_version: lock.lock_version,
                    for_update_ts: u64::MAX,
                    keys: vec![key.clone()],
                };
                async move { s.kv_pessimistic_rollback(req).await }
            })
            .await?;
        match r.errors.first() {
            Some(e) => Err(key_error(e, caller_ts)),
            None => Ok(true),
        }
    }

    /// Resolves a lock met by a reader or writer at `caller_ts`. Returns
    /// whether the lock is gone (committed or rolled back); false when its
    /// transaction is alive (back off and retry).
    pub async fn resolve_lock(&self, lock: &kvrpcpb::LockInfo, caller_ts: u64) -> Result<bool> {
        let current_ts = self.tso.get_ts().await?;
        let expired =
            (current_ts >> LOGICAL_BITS) >= (lock.lock_version >> LOGICAL_BITS) + lock.lock_ttl;
        if lock.lock_type == kvrpcpb::Op::PessimisticLock as i32 {
            // Readers never block on pessimistic locks; writers wait for
            // them until they expire (their transaction died: a client that
            // went away without rolling back).
            if !expired {
                return Ok(false);
            }
            return self.resolve_pessimistic(lock, caller_ts, current_ts).await;
        }
        let primary = lock.primary_lock.clone();
        let caller = if caller_ts == u64::MAX {
            current_ts
        } else {
            caller_ts
        };
        let (_, st) = self
            .kv
            .request(&encode_bytes(&primary), |ctx, mut s| {
                let req = kvrpcpb::CheckTxnStatusRequest {
                    context: Some(ctx),
                    primary_key: primary.clone(),
                    lock_ts: lock.lock_version,
                    caller_start_ts: caller,
                    current_ts,
                    rollback_if_not_exist: expired,
                    ..Default::default()
                };
                async move { s.kv_check_txn_status(req).await }
            })
            .await?;
        if let Some(e) = &st.error {
            if e.txn_not_found.is_some() {
                // The primary is not written yet (its prewrite may be in
                // flight): wait.
                return Ok(false);
            }
            return Err(key_error(e, caller_ts));
        }
        let commit_ts = if st.commit_version > 0 {
            st.commit_version
        } else if st.lock_ttl > 0 {
            return Ok(false);
        } else {
            0
        };
        let key = lock.key.clone();
        let (_, r) = self
            .kv
            .request(&encode_bytes(&key), |ctx, mut s| {
                let req = kvrpcpb::ResolveLockRequest {
                    context: Some(ctx),
                    start_version: lock.lock_version,
                    commit_version: commit_ts,
                    keys: vec![key.clone()],
                    ..Default::default()
                };
                async move { s.kv_resolve_lock(req).await }
            })
            .await?;
        match r.error {
            Some(e) => Err(key_error(&e, caller_ts)),
            None => Ok(true),
        }
    }
}

/// The buffered writes of a transaction at one point (see
/// [`Transaction::savepoint`]).
#[derive(Debug, Clone)]
pub struct Savepoint(BTreeMap<Vec<u8>, Mutation>);

/// One transaction.
pub struct Transaction {
    client: TxnClient,
    start_ts: u64,
    pessimistic: bool,
    for_update_ts: u64,
    buffer: BTreeMap<Vec<u8>, Mutation>,
    locked: BTreeSet<Vec<u8>>,
    primary: Option<Vec<u8>>,
    lock_wait: std::time::Duration,
    begun: std::time::Instant,
    heartbeat: Option<tokio::task::AbortHandle>,
    one_pc: bool,
}

impl Drop for Transaction {
    fn drop(&mut self) {
        if let Some(h) = self.heartbeat.take() {
            h.abort();
        }
    }
}

impl Transaction {
    fn new(client: TxnClient, start_ts: u64, pessimistic: bool) -> Transaction {
        let one_pc = client.one_pc;
        Transaction {
            client,
            start_ts,
            pessimistic,
            for_update_ts: start_ts,
            buffer: BTreeMap::new(),
            locked: BTreeSet::new(),
            primary: None,
            lock_wait: LOCK_WAIT_TIMEOUT,
            begun: std::time::Instant::now(),
            heartbeat: None,
            one_pc,
        }
    }

    /// Whether this transaction may commit in one phase when all its keys
    /// are in one region (`tidb_enable_1pc`).
    pub fn set_one_pc(&mut self, on: bool) {
        self.one_pc = on;
    }

    /// How long pessimistic locking waits for other transactions' locks
    /// (capped below the lock TTL).
    pub fn set_lock_wait_timeout(&mut self, d: std::time::Duration) {
        self.lock_wait = d.min(LOCK_WAIT_TIMEOUT);
    }

    /// The start timestamp (snapshot).
    pub fn start_ts(&self) -> u64 {
        self.start_ts
    }

    /// Reads `key`: this transaction's own write if any, else the snapshot.
    pub async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        match self.buffer.get(key) {
            Some(Mutation::Put(v)) | Some(Mutation::Insert(v)) => Ok(Some(v.clone())),
            Some(Mutation::Delete) => Ok(None),
            Some(Mutation::Lock) | None => self.client.snapshot_get(key, self.read_ts(key)).await,
        }
    }

    /// The timestamp `key` is read at: a key this (pessimistic) transaction
    /// locked is read at its newest for_update_ts — nothing can commit on
    /// it while the lock is held, and `SELECT ... FOR UPDATE` must return
    /// the version it locked, not the snapshot's (TiDB/MySQL's rule).
    fn read_ts(&self, key: &[u8]) -> u64 {
        if self.locked.contains(key) {
            self.for_update_ts
        } else {
            self.start_ts
        }
    }

    /// Scans `[start, end)` (own writes merged over the snapshot).
    pub async fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        limit: u32,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        // Locked keys in the range: their newest versions (see `read_ts`).
        let upper_bound = |k: &Vec<u8>| end.is_empty() || k.as_slice() < end;
        let locked: Vec<Vec<u8>> = self
            .locked
            .range(start.to_vec()..)
            .take_while(|k| upper_bound(k))
            .filter(|k| !self.wrote(k))
            .cloned()
            .collect();
        // Over-read by the number of own deletes (and of locked keys, which
        // may be gone at their newest version) so the limit still holds.
        let extra = self
            .buffer
            .values()
            .filter(|m| **m == Mutation::Delete)
            .count() as u32
            + locked.len() as u32;
        let mut merged: BTreeMap<Vec<u8>, Vec<u8>> = self
            .client
            .snapshot_scan(start, end, limit.saturating_add(extra), self.start_ts)
            .await?
            .into_iter()
            .collect();
        let upper = if end.is_empty() {
            None
        } else {
            Some(end.to_vec())
        };
        for k in locked {
            match self.client.snapshot_get(&k, self.for_update_ts).await? {
                Some(v) => {
                    merged.insert(k, v);
                }
                None => {
                    merged.remove(&k);
                }
            }
        }
        for (k, m) in self.buffer.range(start.to_vec()..) {
            if upper.as_ref().is_some_and(|u| k >= u) {
                break;
            }
            match m {
                Mutation::Put(v) | Mutation::Insert(v) => {
                    merged.insert(k.clone(), v.clone());
                }
                Mutation::Delete => {
                    merged.remove(k);
                }
                Mutation::Lock => {}
            }
        }
        Ok(merged.into_iter().take(limit as usize).collect())
    }

    /// Reads several keys (own writes first, the rest from the snapshot,
    /// concurrently); `None` for absent keys, in the order asked.
    pub async fn batch_get(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>> {
        let reads = keys.iter().map(|k| self.get(k));
        futures::future::try_join_all(reads).await
    }

    /// Whether this (pessimistic) transaction holds a lock on `key`.
    pub fn is_locked(&self, key: &[u8]) -> bool {
        self.locked.contains(key)
    }

    /// This transaction's buffered change of `key`, if any.
    pub fn buffered(&self, key: &[u8]) -> Option<&Mutation> {
        self.buffer.get(key)
    }

    /// Whether this transaction has buffered writes.
    pub fn has_writes(&self) -> bool {
        self.buffer.values().any(|m| *m != Mutation::Lock)
    }

    /// Whether locks are taken before commit (pessimistic).
    pub fn is_pessimistic(&self) -> bool {
        self.pessimistic
    }

    /// The buffered writes now, to undo a failed statement with
    /// [`Transaction::rollback_to`].
    pub fn savepoint(&self) -> Savepoint {
        Savepoint(self.buffer.clone())
    }

    /// Drops the writes buffered since `sp` (locks already taken stay).
    pub fn rollback_to(&mut self, sp: Savepoint) {
        self.buffer = sp.0;
    }

    /// Buffers a write.
    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.buffer.insert(key, Mutation::Put(value));
    }

    /// Buffers an insert (fails at commit if the key exists).
    pub fn insert(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.buffer.insert(key, Mutation::Insert(value));
    }

    /// Buffers a delete.
    pub fn delete(&mut self, key: Vec<u8>) {
        self.buffer.insert(key, Mutation::Delete);
    }

    /// Locks keys: pessimistic transactions take the locks now (SELECT ...
    /// FOR UPDATE) and return the values as this transaction sees them —
    /// its own writes, else the newest committed version; optimistic ones
    /// lock at commit (a conflict then aborts the commit) and return the
    /// snapshot's values.
    ///
    /// Keys this transaction already holds are not locked again (no
    /// timestamp, no Raft write): nothing can commit on them meanwhile, so
    /// they are read at the newest for_update_ts.
    pub async fn lock_keys(&mut self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>> {
        if !self.pessimistic {
            for k in keys {
                self.buffer.entry(k.clone()).or_insert(Mutation::Lock);
            }
            return self.batch_get(keys).await;
        }
        let mut fresh: Vec<Vec<u8>> = Vec::new();
        for k in keys {
            if !self.locked.contains(k) && !fresh.contains(k) {
                fresh.push(k.clone());
            }
        }
        let mut locked_values = if fresh.is_empty() {
            BTreeMap::new()
        } else {
            self.lock_fresh(&fresh).await?
        };
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            out.push(match locked_values.remove(k) {
                Some(v) if !self.wrote(k) => v,
                _ => self.get(k).await?,
            });
        }
        Ok(out)
    }

    /// Whether this transaction wrote `key` (a put, insert or delete, not
    /// just a lock): its reads of `key` come from the buffer.
    fn wrote(&self, key: &[u8]) -> bool {
        matches!(
            self.buffer.get(key),
            Some(Mutation::Put(_)) | Some(Mutation::Insert(_)) | Some(Mutation::Delete)
        )
    }

    /// Takes pessimistic locks on keys this transaction does not hold yet;
    /// returns their newest committed values.
    async fn lock_fresh(&mut self, keys: &[Vec<u8>]) -> Result<BTreeMap<Vec<u8>, Option<Vec<u8>>>> {
        let mut for_update_ts = self.client.tso.get_ts().await?;
        let primary = self
            .primary
            .get_or_insert_with(|| keys.first().cloned().unwrap_or_default())
            .clone();
        let mut backoff = Backoff::lock_wait();
        let deadline = std::time::Instant::now() + self.lock_wait;
        let mut values = BTreeMap::new();
        let detector = self.client.detector.clone();
        let me = self.start_ts;
        let result = async {
            loop {
                let items: Vec<(Vec<u8>, Vec<u8>)> =
                    keys.iter().map(|k| (encode_bytes(k), k.clone())).collect();
                let start_ts = self.start_ts;
                let p = primary.clone();
                let lock_ttl = ttl_from(self.begun, self.client.pessimistic_ttl_ms);
                let resps = self
                    .client
                    .kv
                    .request_batch(items, |ctx, mut s, group| {
                        let req = kvrpcpb::PessimisticLockRequest {
                            context: Some(ctx),
                            mutations: group
                                .iter()
                                .map(|(_, k)| kvrpcpb::Mutation {
                                    op: kvrpcpb::Op::PessimisticLock as i32,
                                    key: k.clone(),
                                    ..Default::default()
                                })
                                .collect(),
                            primary_lock: p.clone(),
                            start_version: start_ts,
                            lock_ttl,
                            for_update_ts,
                            return_values: true,
                            ..Default::default()
                        };
                        let keys: Vec<Vec<u8>> = group.into_iter().map(|(_, k)| k).collect();
                        async move {
                            s.kv_pessimistic_lock(req)
                                .await
                                .map(|r| r.map(|resp| (keys, resp)))
                        }
                    })
                    .await?;
                let mut blocked = None;
                let mut newer_commit = false;
                for (keys, r) in resps {
                    if let Some(e) = r.errors.first() {
                        match (&e.locked, &e.conflict) {
                            (Some(lock), _) => blocked = Some(lock.clone()),
                            // Someone committed the key after our for_update_ts:
                            // pessimistic locks are taken on the newest version,
                            // so lock again at a fresh for_update_ts (as TiDB does).
                            (None, Some(_)) => newer_commit = true,
                            (None, None) => return Err(key_error(e, self.start_ts)),
                        }
                        continue;
                    }
                    for (i, k) in keys.into_iter().enumerate() {
                        let absent = r.not_founds.get(i).copied().unwrap_or(true);
                        values.insert(
                            k,
                            if absent {
                                None
                            } else {
                                r.values.get(i).cloned()
                            },
                        );
                    }
                }
                if newer_commit && blocked.is_none() {
                    if std::time::Instant::now() >= deadline || !backoff.wait().await {
                        return Err(Error::Locked {
                            key: keys.first().cloned().unwrap_or_default(),
                            lock_ts: 0,
                        });
                    }
                    for_update_ts = self.client.tso.get_ts().await?;
                    continue;
                }
                match blocked {
                    None => break,
                    Some(lock) => {
                        if !detector.wait(me, lock.lock_version) {
                            return Err(Error::Deadlock {
                                key: lock.key,
                                lock_ts: lock.lock_version,
                            });
                        }
                        if !self.client.resolve_lock(&lock, self.start_ts).await?
                            && (std::time::Instant::now() >= deadline || !backoff.wait().await)
                        {
                            return Err(Error::Locked {
                                key: lock.key,
                                lock_ts: lock.lock_version,
                            });
                        }
                    }
                }
            }
            Ok(for_update_ts)
        }
        .await;
        detector.done(me);
        let for_update_ts = result?;
        self.for_update_ts = self.for_update_ts.max(for_update_ts);
        self.locked.extend(keys.iter().cloned());
        if self.heartbeat.is_none() && self.locked.contains(&primary) {
            self.heartbeat = Some(
                self.client
                    .spawn_heartbeat(primary, self.start_ts, self.begun),
            );
        }
        Ok(keys
            .iter()
            .map(|k| (k.clone(), values.get(k).cloned().flatten()))
            .collect())
    }

    /// Locks `key` and reads it as this transaction sees it (see
    /// [`Transaction::lock_keys`]).
    pub async fn get_for_update(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.lock_keys(&[key.to_vec()]).await?.pop().flatten())
    }

    /// Commits; returns the commit timestamp. On a conflict nothing is
    /// written and the error names the key.
    pub async fn commit(mut self) -> Result<u64> {
        if self.buffer.is_empty() {
            if !self.locked.is_empty() {
                self.rollback_locks().await;
            }
            return Ok(self.start_ts);
        }
        let primary = match &self.primary {
            Some(p) if self.buffer.contains_key(p) || self.locked.contains(p) => p.clone(),
            _ => self.buffer.keys().next().cloned().unwrap_or_default(),
        };
        // Pessimistically locked keys that are not written are unlocked at
        // commit by a Lock mutation (turns into a Lock record).
        for k in self.locked.clone() {
            self.buffer.entry(k).or_insert(Mutation::Lock);
        }
        self.primary = Some(primary.clone());
        match self.prewrite(&primary).await {
            Err(e) => {
                // After a 1PC whose answer was lost the rollback finds the
                // transaction committed and changes nothing: the caller
                // must not be told it failed.
                self.rollback_all().await;
                if self.one_pc && unanswered(&e) {
                    return Err(undetermined(self.start_ts, e));
                }
                return Err(e);
            }
            Ok(Some(commit_ts)) => return Ok(commit_ts),
            Ok(None) => {}
        }
        let mut commit_ts = self.client.tso.get_ts().await?;
        // The primary's commit decides the transaction.
        loop {
            let p = primary.clone();
            let start_ts = self.start_ts;
            let (_, r) = self
                .client
                .kv
                .request(&encode_bytes(&primary), |ctx, mut s| {
                    let req = kvrpcpb::CommitRequest {
                        context: Some(ctx),
                        start_version: start_ts,
                        keys: vec![p.clone()],
                        commit_version: commit_ts,
                        ..Default::default()
                    };
                    async move { s.kv_commit(req).await }
                })
                .await
                // A commit that may have reached the store is not a failure
                // the caller may retry blindly.
                .map_err(|e| match unanswered(&e) {
                    true => undetermined(start_ts, e),
                    false => e,
                })?;
            match r.error {
                None => break,
                Some(e) if e.commit_ts_expired.is_some() => {
                    commit_ts = self.client.tso.get_ts().await?
                }
                Some(e) if !e.retryable.is_empty() => {
                    return Err(Error::Aborted(format!("the primary lock is gone (another client rolled the transaction back after its lock expired): {}", e.retryable)));
                }
                Some(e) => return Err(key_error(&e, self.start_ts)),
            }
        }
        // Secondaries: the transaction is committed; a failure here is
        // repaired by whoever reads those keys next.
        let secondaries: Vec<(Vec<u8>, Vec<u8>)> = self
            .buffer
            .keys()
            .filter(|k| **k != primary)
            .map(|k| (encode_bytes(k), k.clone()))
            .collect();
        if !secondaries.is_empty() {
            let start_ts = self.start_ts;
            let result = self
                .client
                .kv
                .request_batch(secondaries, |ctx, mut s, group| {
                    let req = kvrpcpb::CommitRequest {
                        context: Some(ctx),
                        start_version: start_ts,
                        keys: group.into_iter().map(|(_, k)| k).collect(),
                        commit_version: commit_ts,
                        ..Default::default()
                    };
                    async move { s.kv_commit(req).await }
                })
                .await;
            if let Err(e) = result {
                tracing::debug!(
                    "committing secondaries of {start_ts} failed (readers will resolve them): {e}"
                );
            }
        }
        Ok(commit_ts)
    }

    /// Prewrites every key; `Some(commit_ts)` when the store committed
    /// the transaction in one phase.
    async fn prewrite(&self, primary: &[u8]) -> Result<Option<u64>> {
        let mut backoff = Backoff::lock();
        let total = self.buffer.len();
        loop {
            let items: Vec<(Vec<u8>, KeyedMutation)> = self
                .buffer
                .iter()
                .map(|(k, m)| (encode_bytes(k), (k.clone(), m.clone())))
                .collect();
            let (start_ts, for_update_ts, txn_size) = (
                self.start_ts,
                if self.pessimistic {
                    self.for_update_ts
                } else {
                    0
                },
                self.buffer.len() as u64,
            );
            let locked = &self.locked;
            let lock_ttl = ttl_from(self.begun, LOCK_TTL_MS);
            let resps = self
                .client
                .kv
                .request_batch(items, |ctx, mut s, group| {
                    let mut req = kvrpcpb::PrewriteRequest {
                        context: Some(ctx),
                        primary_lock: primary.to_vec(),
                        start_version: start_ts,
                        lock_ttl,
                        txn_size,
                        for_update_ts,
                        // Only a request holding every key may commit the
                        // transaction by itself.
                        try_one_pc: self.one_pc && group.len() == total,
                        ..Default::default()
                    };
                    for (_, (k, m)) in group {
                        let (op, value) = match m {
                            Mutation::Put(v) => (kvrpcpb::Op::Put, v),
                            Mutation::Insert(v) => (kvrpcpb::Op::Insert, v),
                            Mutation::Delete => (kvrpcpb::Op::Del, Vec::new()),
                            Mutation::Lock => (kvrpcpb::Op::Lock, Vec::new()),
                        };
                        let action = if for_update_ts > 0 && locked.contains(&k) {
                            kvrpcpb::prewrite_request::PessimisticAction::DoPessimisticCheck
                        } else {
                            kvrpcpb::prewrite_request::PessimisticAction::SkipPessimisticCheck
                        };
                        req.pessimistic_actions.push(action as i32);
                        req.mutations.push(kvrpcpb::Mutation {
                            op: op as i32,
                            key: k,
                            value,
                            ..Default::default()
                        });
                    }
                    async move { s.kv_prewrite(req).await }
                })
                .await?;
            let mut locks = Vec::new();
            let mut one_pc_commit_ts = None;
            for r in resps {
                if r.one_pc_commit_ts > 0 && r.errors.is_empty() {
                    one_pc_commit_ts = Some(r.one_pc_commit_ts);
                }
                for e in &r.errors {
                    match &e.locked {
                        Some(l) if l.lock_version != self.start_ts => locks.push(l.clone()),
                        Some(_) => {}
                        None => return Err(key_error(e, self.start_ts)),
                    }
                }
            }
            if locks.is_empty() {
                return Ok(one_pc_commit_ts);
            }
            let mut all_gone = true;
            for l in &locks {
                all_gone &= self.client.resolve_lock(l, self.start_ts).await?;
            }
            if !all_gone && !backoff.wait().await {
                let l = &locks[0];
                return Err(Error::Locked {
                    key: l.key.clone(),
                    lock_ts: l.lock_version,
                });
            }
        }
    }

    async fn rollback_locks(&self) {
        if self.locked.is_empty() {
            return;
        }
        let (start_ts, for_update_ts) = (self.start_ts, self.for_update_ts);
        let items: Vec<(Vec<u8>, Vec<u8>)> = self
            .locked
            .iter()
            .map(|k| (encode_bytes(k), k.clone()))
            .collect();
        let _ = self
            .client
            .kv
            .request_batch(items, |ctx, mut s, group| {
                let req = kvrpcpb::PessimisticRollbackRequest {
                    context: Some(ctx),
                    start_version: start_ts,
                    for_update_ts,
                    keys: group.into_iter().map(|(_, k)| k).collect(),
                };
                async move { s.kv_pessimistic_rollback(req).await }
            })
            .await;
    }

    async fn rollback_all(&self) {
        let start_ts = self.start_ts;
        let keys: BTreeSet<Vec<u8>> = self
            .buffer
            .keys()
            .chain(self.locked.iter())
            .cloned()
            .collect();
        let items: Vec<(Vec<u8>, Vec<u8>)> =
            keys.into_iter().map(|k| (encode_bytes(&k), k)).collect();
        if items.is_empty() {
            return;
        }
        let _ = self
            .client
            .kv
            .request_batch(items, |ctx, mut s, group| {
                let req = kvrpcpb::BatchRollbackRequest {
                    context: Some(ctx),
                    start_version: start_ts,
                    keys: group.into_iter().map(|(_, k)| k).collect(),
                    ..Default::default()
                };
                async move { s.kv_batch_rollback(req).await }
            })
            .await;
    }

    /// Rolls back: releases pessimistic locks and any prewritten locks.
    pub async fn rollback(self) -> Result<()> {
        self.rollback_locks().await;
        if !self.buffer.is_empty() && self.primary.is_some() {
            self.rollback_all().await;
        }
        Ok(())
    }
}
