//! The leader's read-timestamp tracking for one-phase commit (TiKV's
//! concurrency manager).
//!
//! A one-phase commit (1PC) picks its commit_ts on the store instead of
//! asking PD, so it must land above every snapshot that may already have
//! read one of its keys. Two pieces give that guarantee:
//!
//! ```text
//!   reader (KvGet/KvBatchGet/KvScan at ts T, on the leader)
//!     1. max_ts := max(max_ts, T)             ─┐ both under one mutex
//!     2. a pending 1PC on a key it reads       │
//!        with start_ts <= T? -> KeyIsLocked    ─┘
//!     3. take the engine snapshot and read
//!
//!   1PC prewrite (leader, before proposing)
//!     a. register its data keys as pending    ─┐ under the same mutex
//!     b. m := max_ts                          ─┘
//!     c. propose with m; at apply, on every replica:
//!        commit_ts = max(start_ts, for_update_ts, m) + 1 (and >= min_commit_ts)
//!     d. after apply (written to the engine): unregister
//! ```
//!
//! Either the reader came first (then `m >= T`, so commit_ts > T and the
//! reader's snapshot rightly misses the write), or the 1PC registered
//! first (then the reader is told the key is locked and retries after the
//! write is applied and visible). Reads at `u64::MAX` (the newest committed
//! version of one key) are linearizable without either step: they neither
//! raise max_ts nor wait.
//!
//! `max_ts` is per store and in memory. Reads served by an earlier leader
//! of a region never touched it, so a peer that becomes leader raises it to
//! a fresh PD timestamp (greater than every timestamp PD had handed out to
//! those readers) before it serves a 1PC in that term
//! ([`ConcurrencyManager::synced_for`]). Until then a 1PC request falls
//! back to an ordinary prewrite.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};

use super::{LockInfo, LockType};

/// A 1PC proposed on this leader and not yet applied.
#[derive(Clone, Debug)]
struct Pending {
    start_ts: u64,
    primary: Vec<u8>,
    ttl: u64,
    txn_size: u64,
}

#[derive(Default)]
struct State {
    max_ts: u64,
    /// User key -> the 1PCs in flight on it.
    pending: BTreeMap<Vec<u8>, Vec<Pending>>,
    /// Region id -> the Raft term whose leadership raised `max_ts` to a
    /// fresh PD timestamp.
    synced: HashMap<u64, u64>,
}

/// The store's read-timestamp tracker and table of in-flight 1PC keys.
#[derive(Default)]
pub struct ConcurrencyManager {
    state: Mutex<State>,
}

/// Keys registered by [`ConcurrencyManager::register_one_pc`]; dropping it
/// unregisters them (after the command applied, or failed).
pub struct OnePcGuard {
    cm: Arc<ConcurrencyManager>,
    keys: Vec<Vec<u8>>,
    start_ts: u64,
    /// The max_ts read after the keys were registered.
    pub max_ts: u64,
}

impl Drop for OnePcGuard {
    fn drop(&mut self) {
        let mut st = self.cm.lock();
        for k in &self.keys {
            if let Some(list) = st.pending.get_mut(k) {
                if let Some(i) = list.iter().position(|p| p.start_ts == self.start_ts) {
                    list.swap_remove(i);
                }
                if list.is_empty() {
                    st.pending.remove(k);
                }
            }
        }
    }
}

fn blocking(key: &[u8], list: &[Pending], ts: u64, bypass: &[u64]) -> Option<LockInfo> {
    let p = list
        .iter()
        .find(|p| p.start_ts <= ts && !bypass.contains(&p.start_ts))?;
    Some(LockInfo {
        primary_lock: p.primary.clone(),
        lock_version: p.start_ts,
        key: key.to_vec(),
        lock_ttl: p.ttl,
        txn_size: p.txn_size,
        lock_type: LockType::Put,
        lock_for_update_ts: 0,
        use_async_commit: false,
        min_commit_ts: 0,
        secondaries: Vec::new(),
    })
}

impl ConcurrencyManager {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The highest read timestamp seen (or PD timestamp synced).
    pub fn max_ts(&self) -> u64 {
        self.lock().max_ts
    }

    /// Raises max_ts to `ts` and returns the state when a 1PC in flight
    /// might block the read. Reads at `u64::MAX` do neither.
    fn observe(&self, ts: u64) -> Option<MutexGuard<'_, State>> {
        if ts == u64::MAX {
            return None;
        }
        let mut st = self.lock();
        st.max_ts = st.max_ts.max(ts);
        (!st.pending.is_empty()).then_some(st)
    }

    /// A read of `keys` at `ts`: raises max_ts, then reports a 1PC in
    /// flight on one of them that the read must wait for. Call before
    /// taking the snapshot the read uses.
    pub fn read_keys<'k>(
        &self,
        keys: impl IntoIterator<Item = &'k [u8]>,
        ts: u64,
        bypass: &[u64],
    ) -> Result<(), LockInfo> {
        let Some(st) = self.observe(ts) else {
            return Ok(());
        };
        keys.into_iter()
            .find_map(|k| st.pending.get(k).and_then(|l| blocking(k, l, ts, bypass)))
            .map_or(Ok(()), Err)
    }

    /// A read of the user keys in `[start, end)` at `ts`: as
    /// [`Self::read_keys`] for every key of the range.
    pub fn read_range(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        ts: u64,
        bypass: &[u64],
    ) -> Result<(), LockInfo> {
        let Some(st) = self.observe(ts) else {
            return Ok(());
        };
        if end.is_some_and(|e| e <= start) {
            return Ok(());
        }
        let upper = end.map_or(Bound::Unbounded, Bound::Excluded);
        st.pending
            .range::<[u8], _>((Bound::Included(start), upper))
            .find_map(|(k, l)| blocking(k, l, ts, bypass))
            .map_or(Ok(()), Err)
    }

    /// Registers a 1PC's data-changing keys and returns max_ts as read
    /// after registering (the floor of its commit_ts).
    pub fn register_one_pc(
        self: &Arc<Self>,
        keys: Vec<Vec<u8>>,
        start_ts: u64,
        primary: &[u8],
        ttl: u64,
        txn_size: u64,
    ) -> OnePcGuard {
        let mut st = self.lock();
        for k in &keys {
            st.pending.entry(k.clone()).or_default().push(Pending {
                start_ts,
                primary: primary.to_vec(),
                ttl,
                txn_size,
            });
        }
        let max_ts = st.max_ts;
        drop(st);
        OnePcGuard {
            cm: self.clone(),
            keys,
            start_ts,
            max_ts,
        }
    }

    /// Whether max_ts already covers reads served by earlier leaders of
    /// `region_id`, for the leadership of `term`.
    pub fn synced_for(&self, region_id: u64, term: u64) -> bool {
        self.lock().synced.get(&region_id) == Some(&term)
    }

    /// Raises max_ts to `fresh_ts` (a PD timestamp taken after this peer
    /// became leader in `term`) and records `region_id` as synced for it.
    pub fn sync(&self, region_id: u64, term: u64, fresh_ts: u64) {
        let mut st = self.lock();
        st.max_ts = st.max_ts.max(fresh_ts);
        st.synced.insert(region_id, term);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_raise_max_ts_except_reads_of_the_latest_version() {
        let cm = ConcurrencyManager::default();
        cm.read_keys([b"a".as_slice()], 10, &[]).unwrap();
        cm.read_range(b"a", Some(b"z"), 7, &[]).unwrap();
        assert_eq!(cm.max_ts(), 10);
        cm.read_keys([b"a".as_slice()], u64::MAX, &[]).unwrap();
        assert_eq!(cm.max_ts(), 10);
    }

    #[test]
    fn a_pending_one_pc_blocks_reads_at_or_above_its_start_ts_until_dropped() {
        let cm = Arc::new(ConcurrencyManager::default());
        cm.read_keys([b"k".as_slice()], 5, &[]).unwrap();
        let guard = cm.register_one_pc(vec![b"k".to_vec()], 8, b"k", 3000, 1);
        assert_eq!(guard.max_ts, 5);
        // Below the start_ts the write is invisible anyway.
        cm.read_keys([b"k".as_slice()], 7, &[]).unwrap();
        let info = cm.read_keys([b"k".as_slice()], 9, &[]).unwrap_err();
        assert_eq!(
            (info.key.as_slice(), info.lock_version),
            (b"k".as_slice(), 8)
        );
        assert!(cm.read_range(b"a", Some(b"z"), 9, &[]).is_err());
        assert!(cm.read_range(b"l", None, 9, &[]).is_ok());
        // A resolved (bypassed) transaction does not block.
        cm.read_keys([b"k".as_slice()], 9, &[8]).unwrap();
        drop(guard);
        cm.read_keys([b"k".as_slice()], 9, &[]).unwrap();
        assert!(cm.state.lock().unwrap().pending.is_empty());
    }

    #[test]
    fn sync_is_per_region_and_term() {
        let cm = ConcurrencyManager::default();
        assert!(!cm.synced_for(1, 3));
        cm.sync(1, 3, 100);
        assert!(cm.synced_for(1, 3));
        assert!(!cm.synced_for(1, 4));
        assert!(!cm.synced_for(2, 3));
        assert_eq!(cm.max_ts(), 100);
    }
}
