//! Reading MVCC data at a timestamp from an engine snapshot.

use std::ops::Bound;

use tiox_engine::{Cf, Snapshot};

use super::{Lock, LockType, Write, WriteType};
use crate::codec::{lock_key, split_lock_key, split_versioned_key, versioned_key};
use crate::error::{Error, Result};

/// What the write CF says about one transaction on one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxnRecord {
    /// Committed at this ts with this record.
    Committed(u64, Write),
    /// Rolled back.
    RolledBack,
    /// No record.
    None,
}

/// Versions of one key a forward scan steps over (after the one it reads)
/// before it seeks past the key instead.
pub const SEEK_AFTER: usize = 2;

/// One key's versions: (commit_ts, write), newest first.
pub type Versions = Vec<(u64, Write)>;

/// One entry of a scan: a visible pair, or the lock that hides a key.
pub type ScanItem = Result<(Vec<u8>, Vec<u8>)>;

/// What to scan.
#[derive(Clone, Debug, Default)]
pub struct ScanParams<'p> {
    /// First key (inclusive).
    pub start: &'p [u8],
    /// Last key (exclusive); None for the end of the key space.
    pub end: Option<&'p [u8]>,
    /// At most this many entries (0 = no limit).
    pub limit: usize,
    /// Read timestamp.
    pub ts: u64,
    /// Return keys only.
    pub key_only: bool,
    /// Scan backwards from `end`.
    pub reverse: bool,
    /// Locks of these transactions do not block the read.
    pub bypass: &'p [u64],
}

/// A read-only MVCC view over a snapshot.
pub struct MvccReader<'a, S: Snapshot + ?Sized> {
    snap: &'a S,
}

impl<'a, S: Snapshot + ?Sized> MvccReader<'a, S> {
    /// A reader over `snap`.
    pub fn new(snap: &'a S) -> Self {
        MvccReader { snap }
    }

    /// The snapshot read.
    pub fn snapshot(&self) -> &'a S {
        self.snap
    }

    /// The lock on `key`, if any.
    pub fn load_lock(&self, key: &[u8]) -> Result<Option<Lock>> {
        self.snap
            .get(Cf::Lock, &lock_key(key))?
            .map(|b| Lock::from_bytes(&b))
            .transpose()
    }

    /// The newest write of `key` with commit_ts <= `ts`.
    pub fn seek_write(&self, key: &[u8], ts: u64) -> Result<Option<(u64, Write)>> {
        let lower = versioned_key(key, ts);
        let upper = versioned_key(key, 0);
        let mut it = self.snap.iter(
            Cf::Write,
            Bound::Included(&lower),
            Bound::Included(&upper),
            false,
        );
        match it.next() {
            None => Ok(None),
            Some(kv) => {
                let (k, v) = kv?;
                let (_, commit_ts) = split_versioned_key(&k)?;
                Ok(Some((commit_ts, Write::from_bytes(&v)?)))
            }
        }
    }

    /// The newest Put/Delete of `key` visible at `ts`.
    pub fn seek_data_write(&self, key: &[u8], ts: u64) -> Result<Option<(u64, Write)>> {
        let mut ts = ts;
        loop {
            match self.seek_write(key, ts)? {
                None => return Ok(None),
                Some((commit_ts, w)) if w.is_data_change() => return Ok(Some((commit_ts, w))),
                Some((0, _)) => return Ok(None),
                Some((commit_ts, _)) => ts = commit_ts - 1,
            }
        }
    }

    /// The value a write points at.
    pub fn load_value(&self, key: &[u8], write: &Write) -> Result<Option<Vec<u8>>> {
        if write.write_type != WriteType::Put {
            return Ok(None);
        }
        if let Some(v) = &write.short_value {
            return Ok(Some(v.clone()));
        }
        match self
            .snap
            .get(Cf::Default, &versioned_key(key, write.start_ts))?
        {
            Some(v) => Ok(Some(v)),
            None => Err(Error::Corrupted(format!(
                "value of key {:?} at {} is missing",
                String::from_utf8_lossy(key),
                write.start_ts
            ))),
        }
    }

    /// What happened to transaction `start_ts` on `key`.
    pub fn txn_record(&self, key: &[u8], start_ts: u64) -> Result<TxnRecord> {
        let lower = versioned_key(key, u64::MAX);
        let upper = versioned_key(key, 0);
        for kv in self.snap.iter(
            Cf::Write,
            Bound::Included(&lower),
            Bound::Included(&upper),
            false,
        ) {
            let (k, v) = kv?;
            let (_, commit_ts) = split_versioned_key(&k)?;
            if commit_ts < start_ts {
                break;
            }
            let w = Write::from_bytes(&v)?;
            if w.start_ts == start_ts {
                return Ok(match w.write_type {
                    WriteType::Rollback => TxnRecord::RolledBack,
                    _ => TxnRecord::Committed(commit_ts, w),
                });
            }
            if commit_ts == start_ts && w.has_overlapped_rollback {
                return Ok(TxnRecord::RolledBack);
            }
        }
        Ok(TxnRecord::None)
    }

    /// Checks whether a lock blocks a read at `ts`; returns the blocking
    /// lock's error.
    pub fn check_lock_for_read(&self, key: &[u8], ts: u64, bypass: &[u64]) -> Result<()> {
        if let Some(lock) = self.load_lock(key)? {
            lock_blocks_read(&lock, key, ts, bypass)?;
        }
        Ok(())
    }

    /// Snapshot read of one key at `ts`.
    pub fn get(&self, key: &[u8], ts: u64, bypass: &[u64]) -> Result<Option<Vec<u8>>> {
        self.check_lock_for_read(key, ts, bypass)?;
        match self.seek_data_write(key, ts)? {
            Some((_, w)) => self.load_value(key, &w),
            None => Ok(None),
        }
    }

    /// Locks in `[start, end)` with start_ts <= `max_ts`, up to `limit`
    /// (0 = no limit).
    pub fn scan_locks(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        max_ts: u64,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Lock)>> {
        let lower = lock_key(start);
        let upper = end.map(lock_key);
        let mut out = Vec::new();
        for kv in self.snap.iter(
            Cf::Lock,
            Bound::Included(&lower),
            upper.as_deref().map_or(Bound::Unbounded, Bound::Excluded),
            false,
        ) {
            let (k, v) = kv?;
            let lock = Lock::from_bytes(&v)?;
            if lock.ts <= max_ts {
                out.push((split_lock_key(&k)?, lock));
                if limit > 0 && out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Every key in `[start, end)` with its versions (newest first), in key
    /// order (or reverse), calling `f` until it returns false.
    pub fn for_each_key(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        reverse: bool,
        mut f: impl FnMut(Vec<u8>, Versions) -> Result<bool>,
    ) -> Result<()> {
        let lower = lock_key(start);
        let upper = end.map(lock_key);
        let mut current: Option<(Vec<u8>, Versions)> = None;
        for kv in self.snap.iter(
            Cf::Write,
            Bound::Included(&lower),
            upper.as_deref().map_or(Bound::Unbounded, Bound::Excluded),
            reverse,
        ) {
            let (k, v) = kv?;
            let (user, commit_ts) = split_versioned_key(&k)?;
            let w = Write::from_bytes(&v)?;
            match &mut current {
                Some((ck, versions)) if *ck == user => versions.push((commit_ts, w)),
                _ => {
                    if let Some((ck, mut versions)) = current.take() {
                        if reverse {
                            versions.reverse();
                        }
                        if !f(ck, versions)? {
                            return Ok(());
                        }
                    }
                    current = Some((user, vec![(commit_ts, w)]));
                }
            }
        }
        if let Some((ck, mut versions)) = current {
            if reverse {
                versions.reverse();
            }
            f(ck, versions)?;
        }
        Ok(())
    }

    /// Every key in `[start, end)` in key order with its newest Put/Delete
    /// visible at `ts` (None when it has none), calling `f` until it returns
    /// false. Older versions are skipped: after [`SEEK_AFTER`] of them the
    /// walk starts a new iterator past the key instead of stepping through
    /// the rest (a hot row can have hundreds of versions until GC; a scan
    /// over it stepped through every one of them).
    pub fn for_each_visible(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        ts: u64,
        mut f: impl FnMut(Vec<u8>, Option<Write>) -> Result<bool>,
    ) -> Result<()> {
        let upper = end.map(lock_key);
        let upper = upper.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
        let mut lower = lock_key(start);
        let mut lower_excluded = false;
        // The key being read and the version chosen for it so far.
        let mut current: Option<(Vec<u8>, Option<Write>)> = None;
        'seek: loop {
            let lo = if lower_excluded {
                Bound::Excluded(lower.as_slice())
            } else {
                Bound::Included(lower.as_slice())
            };
            let mut skipped = 0usize;
            for kv in self.snap.iter(Cf::Write, lo, upper, false) {
                let (k, v) = kv?;
                let (user, commit_ts) = split_versioned_key(&k)?;
                match &mut current {
                    Some((ck, chosen)) if *ck == user => {
                        if chosen.is_some() {
                            skipped += 1;
                            if skipped > SEEK_AFTER {
                                // Past every version of this key: its data
                                // keys are the encoded key plus 8 bytes.
                                lower = lock_key(&user);
                                lower.extend_from_slice(&[0xff; 8]);
                                lower_excluded = true;
                                continue 'seek;
                            }
                            continue;
                        }
                    }
                    _ => {
                        if let Some((ck, w)) = current.take() {
                            if !f(ck, w)? {
                                return Ok(());
                            }
                        }
                        skipped = 0;
                        current = Some((user, None));
                    }
                }
                if commit_ts > ts {
                    continue;
                }
                let w = Write::from_bytes(&v)?;
                if w.is_data_change() {
                    if let Some((_, chosen)) = &mut current {
                        *chosen = Some(w);
                    }
                }
            }
            break;
        }
        if let Some((ck, w)) = current {
            f(ck, w)?;
        }
        Ok(())
    }

    /// Snapshot scan at `ts`: visible pairs in `[start, end)`, at most
    /// `limit` (0 = no limit). Locked keys come back as errors in place.
    pub fn scan(&self, p: &ScanParams<'_>) -> Result<Vec<ScanItem>> {
        let ScanParams {
            start,
            end,
            limit,
            ts,
            key_only,
            reverse,
            bypass,
        } = *p;
        // Locks first: a lock on a key with no committed version must block
        // as well. Locks are few; collect those that block this read.
        let blocking: std::collections::BTreeMap<Vec<u8>, Lock> = self
            .scan_locks(start, end, ts, 0)?
            .into_iter()
            .filter(|(k, l)| lock_blocks_read(l, k, ts, bypass).is_err())
            .collect();
        let mut out: Vec<ScanItem> = Vec::new();
        let mut pending_locks: Vec<(&Vec<u8>, &Lock)> = blocking.iter().collect();
        if reverse {
            pending_locks.reverse();
        }
        let mut locks = pending_locks.into_iter().peekable();
        let full = |out: &Vec<_>| limit > 0 && out.len() >= limit;
        let before = |a: &[u8], b: &[u8]| if reverse { a > b } else { a < b };
        let mut visit = |key: Vec<u8>, visible: Option<Write>| -> Result<bool> {
            // Emit locks on keys that come before this one.
            while let Some((lk, lock)) = locks.peek() {
                if before(lk, &key) {
                    out.push(Err(Error::KeyIsLocked(lock.info(lk))));
                    locks.next();
                    if full(&out) {
                        return Ok(false);
                    }
                } else {
                    break;
                }
            }
            if let Some((lk, lock)) = locks.peek() {
                if **lk == key {
                    out.push(Err(Error::KeyIsLocked(lock.info(lk))));
                    locks.next();
                    return Ok(!full(&out));
                }
            }
            if let Some(w) = visible {
                if w.write_type == WriteType::Put {
                    let value = if key_only {
                        Vec::new()
                    } else {
                        self.load_value(&key, &w)?.unwrap_or_default()
                    };
                    out.push(Ok((key, value)));
                }
            }
            Ok(!full(&out))
        };
        if reverse {
            // Backwards, a key's versions come oldest first: read them all.
            self.for_each_key(start, end, true, |key, versions| {
                let visible = versions
                    .into_iter()
                    .find(|(commit_ts, w)| *commit_ts <= ts && w.is_data_change())
                    .map(|(_, w)| w);
                visit(key, visible)
            })?;
        } else {
            self.for_each_visible(start, end, ts, &mut visit)?;
        }
        for (lk, lock) in locks {
            if full(&out) {
                break;
            }
            out.push(Err(Error::KeyIsLocked(lock.info(lk))));
        }
        Ok(out)
    }
}

/// Whether `lock` blocks a read of `key` at `ts` (as an error).
pub fn lock_blocks_read(lock: &Lock, key: &[u8], ts: u64, bypass: &[u64]) -> Result<()> {
    if lock.ts > ts
        || matches!(lock.lock_type, LockType::Lock | LockType::Pessimistic)
        || bypass.contains(&lock.ts)
        // The transaction will commit above min_commit_ts > ts: invisible.
        || lock.min_commit_ts > ts
        // A read of the latest version of a primary is not blocked by its
        // own (non async-commit) transaction's lock: TiKV's rule.
        || (ts == u64::MAX && lock.primary == key && !lock.use_async_commit)
    {
        return Ok(());
    }
    Err(Error::KeyIsLocked(lock.info(key)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine_fjall::{FjallEngine, FjallOptions};
    use crate::mvcc::txn::{Mutation, MvccTxn, Op, PrewriteParams};
    use tiox_engine::Engine;

    fn commit(e: &FjallEngine, key: &[u8], op: Op, start_ts: u64, commit_ts: u64) {
        let snap = e.snapshot();
        let mut txn = MvccTxn::new(&snap);
        let params = PrewriteParams {
            primary: key.to_vec(),
            start_ts,
            lock_ttl: 3000,
            ..Default::default()
        };
        let m = Mutation {
            key: key.to_vec(),
            op,
            expect_pessimistic_lock: false,
        };
        txn.prewrite(&params, &[m]).unwrap();
        e.write(std::mem::take(&mut txn.writes), false).unwrap();
        let snap = e.snapshot();
        let mut txn = MvccTxn::new(&snap);
        txn.commit(&[key.to_vec()], start_ts, commit_ts).unwrap();
        e.write(std::mem::take(&mut txn.writes), false).unwrap();
    }

    #[test]
    fn forward_scan_over_keys_with_many_versions_reads_the_version_at_its_timestamp() {
        let dir = tempfile::tempdir().unwrap();
        let e = FjallEngine::open(dir.path(), &FjallOptions::default()).unwrap();
        // a and c: 30 versions each (more than SEEK_AFTER), b: one, d: deleted.
        for i in 1..=30u64 {
            let v = format!("{i}").into_bytes();
            commit(&e, b"a", Op::Put(v.clone()), i * 10, i * 10 + 1);
            commit(&e, b"c", Op::Put(v), i * 10 + 2, i * 10 + 3);
        }
        commit(&e, b"b", Op::Put(b"b".to_vec()), 5, 6);
        commit(&e, b"d", Op::Put(b"d".to_vec()), 7, 8);
        commit(&e, b"d", Op::Delete, 100, 101);
        let snap = e.snapshot();
        let r = MvccReader::new(&snap);
        let scan = |ts: u64, reverse: bool, limit: usize| -> Vec<(String, String)> {
            r.scan(&ScanParams {
                start: b"a",
                end: Some(b"z"),
                limit,
                ts,
                reverse,
                ..Default::default()
            })
            .unwrap()
            .into_iter()
            .map(|i| {
                let (k, v) = i.unwrap();
                (String::from_utf8(k).unwrap(), String::from_utf8(v).unwrap())
            })
            .collect()
        };
        let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        assert_eq!(
            scan(u64::MAX, false, 0),
            pairs(&[("a", "30"), ("b", "b"), ("c", "30")])
        );
        assert_eq!(
            scan(95, false, 0),
            pairs(&[("a", "9"), ("b", "b"), ("c", "9"), ("d", "d")])
        );
        assert_eq!(scan(95, true, 0), {
            let mut v = pairs(&[("a", "9"), ("b", "b"), ("c", "9"), ("d", "d")]);
            v.reverse();
            v
        });
        assert_eq!(scan(95, false, 2), pairs(&[("a", "9"), ("b", "b")]));
        assert_eq!(scan(5, false, 0), pairs(&[]));
    }
}
