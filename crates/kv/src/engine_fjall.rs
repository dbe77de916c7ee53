//! The storage engine on fjall (a pure-Rust LSM tree): one keyspace per
//! column family in one database, so a batch across column families is
//! atomic. Durability: `write(.., sync = true)` returns after the journal is
//! fsynced (`PersistMode::SyncAll`); Raft log appends use it, so an
//! acknowledged write survives a crash. Applied state may be written without
//! sync because it is re-derived from the Raft log on restart.
//!
//! The lock column family is also kept in memory (a map of the live locks,
//! loaded at open, updated under a mutex in the same critical section as
//! each batch that touches it, and captured by every snapshot together with
//! the fjall snapshot). Reads of locks come from it: every transaction
//! writes and deletes its locks, so in the LSM tree a lock range is mostly
//! superseded versions and tombstones, which a scan would have to walk
//! (profiling sysbench showed over half of a leader's CPU there).

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::{Arc, Mutex};

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode, Readable};
use tiox_engine::{Cf, Engine, EngineError, KvIter, Mutation, Result, Snapshot, WriteBatch};

fn err(e: impl std::fmt::Display) -> EngineError {
    EngineError(e.to_string())
}

/// Engine options.
#[derive(Clone, Debug)]
pub struct FjallOptions {
    /// Block cache size in bytes (bounds memory use).
    pub cache_bytes: u64,
}

impl Default for FjallOptions {
    fn default() -> Self {
        FjallOptions {
            cache_bytes: 64 * 1024 * 1024,
        }
    }
}

/// The live locks (the lock column family's current content).
type LockMap = BTreeMap<Vec<u8>, Vec<u8>>;

/// The fjall-backed engine.
#[derive(Clone)]
pub struct FjallEngine {
    db: Database,
    cfs: [Keyspace; 4],
    locks: Arc<Mutex<Arc<LockMap>>>,
}

impl std::fmt::Debug for FjallEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FjallEngine")
    }
}

impl FjallEngine {
    /// Opens (or creates) the engine in `dir`.
    pub fn open(dir: &Path, opts: &FjallOptions) -> Result<FjallEngine> {
        let db = Database::builder(dir)
            .cache_size(opts.cache_bytes)
            .open()
            .map_err(|e| err(format!("opening {}: {e}", dir.display())))?;
        let open = |cf: Cf| {
            db.keyspace(cf.name(), KeyspaceCreateOptions::default)
                .map_err(err)
        };
        let cfs = [
            open(Cf::Default)?,
            open(Cf::Lock)?,
            open(Cf::Write)?,
            open(Cf::Raft)?,
        ];
        let mut locks = LockMap::new();
        for kv in db.snapshot().iter(&cfs[Cf::Lock as usize]) {
            let (k, v) = kv.into_inner().map_err(err)?;
            locks.insert(k.to_vec(), v.to_vec());
        }
        Ok(FjallEngine {
            db,
            cfs,
            locks: Arc::new(Mutex::new(Arc::new(locks))),
        })
    }

    fn cf(&self, cf: Cf) -> &Keyspace {
        &self.cfs[cf as usize]
    }
}

/// A point-in-time view.
pub struct FjallSnapshot {
    snap: fjall::Snapshot,
    cfs: [Keyspace; 4],
    locks: Arc<LockMap>,
}

fn empty_range(lower: Bound<&[u8]>, upper: Bound<&[u8]>) -> bool {
    let l = match lower {
        Bound::Included(l) | Bound::Excluded(l) => l,
        Bound::Unbounded => return false,
    };
    match upper {
        Bound::Included(u) => l > u || (l == u && matches!(lower, Bound::Excluded(_))),
        Bound::Excluded(u) => l >= u,
        Bound::Unbounded => false,
    }
}

impl Snapshot for FjallSnapshot {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if cf == Cf::Lock {
            return Ok(self.locks.get(key).cloned());
        }
        Ok(self
            .snap
            .get(&self.cfs[cf as usize], key)
            .map_err(err)?
            .map(|v| v.to_vec()))
    }

    fn iter(&self, cf: Cf, lower: Bound<&[u8]>, upper: Bound<&[u8]>, reverse: bool) -> KvIter<'_> {
        if empty_range(lower, upper) {
            return Box::new(std::iter::empty());
        }
        if cf == Cf::Lock {
            let it = self
                .locks
                .range::<[u8], _>((lower, upper))
                .map(|(k, v)| Ok((k.clone(), v.clone())));
            return if reverse {
                Box::new(it.rev())
            } else {
                Box::new(it)
            };
        }
        let it = self
            .snap
            .range::<&[u8], _>(&self.cfs[cf as usize], (lower, upper));
        let map = |g: fjall::Guard| {
            g.into_inner()
                .map(|(k, v)| (k.to_vec(), v.to_vec()))
                .map_err(err)
        };
        if reverse {
            Box::new(it.rev().map(map))
        } else {
            Box::new(it.map(map))
        }
    }
}

impl Engine for FjallEngine {
    type Snap = FjallSnapshot;

    fn snapshot(&self) -> FjallSnapshot {
        // Under the lock-map mutex: no batch touching locks can commit
        // between taking the fjall snapshot and reading the map.
        let g = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        let snap = self.db.snapshot();
        let locks = g.clone();
        drop(g);
        FjallSnapshot {
            snap,
            cfs: self.cfs.clone(),
            locks,
        }
    }

    fn write(&self, batch: WriteBatch, sync: bool) -> Result<()> {
        if batch.is_empty() {
            return if sync { self.sync() } else { Ok(()) };
        }
        let touches_locks = batch.mutations.iter().any(|m| {
            matches!(
                m,
                Mutation::Put(Cf::Lock, ..) | Mutation::Delete(Cf::Lock, _)
            )
        });
        let mut b = self.db.batch();
        let mut lock_changes = Vec::new();
        for m in batch.mutations {
            match m {
                Mutation::Put(cf, k, v) => {
                    if cf == Cf::Lock {
                        lock_changes.push((k.clone(), Some(v.clone())));
                    }
                    b.insert(self.cf(cf), k, v)
                }
                Mutation::Delete(cf, k) => {
                    if cf == Cf::Lock {
                        lock_changes.push((k.clone(), None));
                    }
                    b.remove(self.cf(cf), k)
                }
            }
        }
        let b = if sync {
            b.durability(Some(PersistMode::SyncAll))
        } else {
            b
        };
        if !touches_locks {
            return b.commit().map_err(err);
        }
        let mut g = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        b.commit().map_err(err)?;
        let map = Arc::make_mut(&mut g);
        for (k, v) in lock_changes {
            match v {
                Some(v) => map.insert(k, v),
                None => map.remove(&k),
            };
        }
        Ok(())
    }

    fn sync(&self) -> Result<()> {
        self.db.persist(PersistMode::SyncAll).map_err(err)
    }

    fn disk_size(&self) -> u64 {
        self.db.disk_space().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The keys of `cf` in `[lower, upper)`, in order or reversed.
    fn keys(
        s: &FjallSnapshot,
        cf: Cf,
        lower: Bound<&[u8]>,
        upper: Bound<&[u8]>,
        reverse: bool,
    ) -> Vec<Vec<u8>> {
        s.iter(cf, lower, upper, reverse)
            .map(|r| r.unwrap().0)
            .collect()
    }

    #[test]
    fn batches_are_atomic_across_column_families_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let e = FjallEngine::open(dir.path(), &FjallOptions::default()).unwrap();
            let mut b = WriteBatch::default();
            b.put(Cf::Lock, b"k".to_vec(), b"lock".to_vec());
            b.put(Cf::Write, b"k1".to_vec(), b"w".to_vec());
            e.write(b, true).unwrap();
        }
        let e = FjallEngine::open(dir.path(), &FjallOptions::default()).unwrap();
        let s = e.snapshot();
        assert_eq!(s.get(Cf::Lock, b"k").unwrap(), Some(b"lock".to_vec()));
        assert_eq!(s.get(Cf::Write, b"k1").unwrap(), Some(b"w".to_vec()));
        assert_eq!(s.get(Cf::Default, b"k").unwrap(), None);
    }

    #[test]
    fn locks_are_read_from_memory_consistently_with_snapshots_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let e = FjallEngine::open(dir.path(), &FjallOptions::default()).unwrap();
            let mut b = WriteBatch::default();
            b.put(Cf::Lock, b"k1".to_vec(), b"l1".to_vec());
            b.put(Cf::Lock, b"k2".to_vec(), b"l2".to_vec());
            b.put(Cf::Write, b"w".to_vec(), b"x".to_vec());
            e.write(b, true).unwrap();
            let before = e.snapshot();
            let mut b = WriteBatch::default();
            b.delete(Cf::Lock, b"k1".to_vec());
            b.put(Cf::Lock, b"k3".to_vec(), b"l3".to_vec());
            e.write(b, true).unwrap();
            let all = |s: &FjallSnapshot, rev: bool| {
                keys(s, Cf::Lock, Bound::Unbounded, Bound::Unbounded, rev)
            };
            assert_eq!(all(&before, false), vec![b"k1".to_vec(), b"k2".to_vec()]);
            assert_eq!(before.get(Cf::Lock, b"k3").unwrap(), None);
            let now = e.snapshot();
            assert_eq!(all(&now, true), vec![b"k3".to_vec(), b"k2".to_vec()]);
            assert_eq!(now.get(Cf::Lock, b"k1").unwrap(), None);
            let ranged = keys(
                &now,
                Cf::Lock,
                Bound::Included(b"k2"),
                Bound::Excluded(b"k3"),
                false,
            );
            assert_eq!(ranged, vec![b"k2".to_vec()]);
        }
        let e = FjallEngine::open(dir.path(), &FjallOptions::default()).unwrap();
        let s = e.snapshot();
        assert_eq!(s.get(Cf::Lock, b"k3").unwrap(), Some(b"l3".to_vec()));
        assert_eq!(s.get(Cf::Lock, b"k1").unwrap(), None);
        assert_eq!(s.get(Cf::Write, b"w").unwrap(), Some(b"x".to_vec()));
    }

    #[test]
    fn snapshot_does_not_see_later_writes_and_iterates_both_ways() {
        let dir = tempfile::tempdir().unwrap();
        let e = FjallEngine::open(dir.path(), &FjallOptions::default()).unwrap();
        let mut b = WriteBatch::default();
        for k in [b"a", b"b", b"c"] {
            b.put(Cf::Default, k.to_vec(), k.to_vec());
        }
        e.write(b, false).unwrap();
        let s = e.snapshot();
        let mut b = WriteBatch::default();
        b.delete(Cf::Default, b"b".to_vec());
        e.write(b, false).unwrap();
        let ranged = keys(
            &s,
            Cf::Default,
            Bound::Included(b"a"),
            Bound::Excluded(b"c"),
            false,
        );
        assert_eq!(ranged, vec![b"a".to_vec(), b"b".to_vec()]);
        let rev = keys(&s, Cf::Default, Bound::Unbounded, Bound::Unbounded, true);
        assert_eq!(rev, vec![b"c".to_vec(), b"b".to_vec(), b"a".to_vec()]);
        assert_eq!(e.snapshot().get(Cf::Default, b"b").unwrap(), None);
        assert_eq!(
            s.iter(
                Cf::Default,
                Bound::Included(b"z"),
                Bound::Excluded(b"a"),
                false
            )
            .count(),
            0
        );
    }
}
