//! Percolator transaction actions: prewrite, commit, rollback, cleanup,
//! check-txn-status, check-secondary-locks, resolve-lock, txn-heartbeat,
//! pessimistic lock/rollback and GC.
//!
//! Each action reads through an [`MvccReader`] and accumulates its changes
//! in [`MvccTxn::writes`]; the caller applies that batch atomically, or drops
//! it when the action fails (an action that fails writes nothing). Actions
//! are executed one at a time per region (at Raft apply), so an action sees
//! every earlier action's writes and none of a later one's.

use std::collections::BTreeSet;

use tiox_engine::{Cf, Snapshot, WriteBatch};

use super::reader::{MvccReader, TxnRecord};
use super::{Lock, LockInfo, LockType, Write, WriteType, SHORT_VALUE_MAX_LEN};
use crate::codec::{lock_key, versioned_key};
use crate::error::{Error, Result};

/// One change a transaction wants to make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Write a value.
    Put(Vec<u8>),
    /// Delete the key.
    Delete,
    /// Lock the key without changing it.
    Lock,
    /// Write a value; fail with AlreadyExist if the key exists.
    Insert(Vec<u8>),
    /// Fail with AlreadyExist if the key exists; write nothing.
    CheckNotExists,
}

/// A key and what to do with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mutation {
    /// The user key.
    pub key: Vec<u8>,
    /// The operation.
    pub op: Op,
    /// Pessimistic transactions: a pessimistic lock must already be held.
    pub expect_pessimistic_lock: bool,
}

/// Prewrite parameters.
#[derive(Clone, Debug, Default)]
pub struct PrewriteParams {
    /// The primary key.
    pub primary: Vec<u8>,
    /// start_ts.
    pub start_ts: u64,
    /// Lock TTL in ms.
    pub lock_ttl: u64,
    /// Number of keys in the whole transaction.
    pub txn_size: u64,
    /// Non-zero for pessimistic transactions.
    pub for_update_ts: u64,
    /// The client's lower bound for the commit ts.
    pub min_commit_ts: u64,
    /// Async commit.
    pub use_async_commit: bool,
    /// Async commit: the secondaries (sent with the primary).
    pub secondaries: Vec<Vec<u8>>,
    /// The highest timestamp any reader on this store has used (async
    /// commit must commit above it).
    pub max_read_ts: u64,
    /// One-phase commit: `Some(max_ts)`, the leader's max read timestamp
    /// taken when it proposed. When every key prewrites cleanly, commit
    /// records are written at once (no locks) at
    /// `max(start_ts, for_update_ts, max_ts) + 1` (at least
    /// `min_commit_ts`); otherwise this is an ordinary prewrite.
    pub one_pc: Option<u64>,
    /// One-phase commit: the highest commit_ts the client accepts (0: no
    /// bound); above it the prewrite falls back to writing locks.
    pub max_commit_ts: u64,
}

/// What a successful prewrite did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Prewritten {
    /// Async commit: the lock's min_commit_ts (0 otherwise).
    pub min_commit_ts: u64,
    /// One-phase commit: the commit_ts the transaction committed at (0:
    /// locks were written; the client must commit as usual).
    pub one_pc_commit_ts: u64,
}

/// What prewriting one key found.
enum KeyPrewrite {
    /// A new lock to write.
    Lock(Lock),
    /// Nothing to write (a CheckNotExists that passed).
    Nothing,
    /// This transaction's lock is already there (a retried prewrite).
    AlreadyLocked,
    /// This transaction already committed the key at this commit_ts.
    AlreadyCommitted(u64),
}

/// What check-txn-status found and did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxnStatus {
    /// Still locked (not expired).
    Locked {
        /// The remaining TTL.
        ttl: u64,
        /// The primary lock.
        lock: LockInfo,
        /// Whether min_commit_ts was pushed.
        min_commit_ts_pushed: bool,
    },
    /// Committed at this ts.
    Committed(u64),
    /// Rolled back earlier.
    RolledBack,
    /// This call rolled back an expired lock.
    TtlExpireRollback,
    /// This call removed an expired pessimistic lock only.
    TtlExpirePessimisticRollback,
    /// This call wrote a rollback record for a transaction never seen.
    LockNotExistRollback,
}

/// What check-secondary-locks found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecondaryStatus {
    /// All keys still locked: these locks.
    Locked(Vec<LockInfo>),
    /// The transaction committed at this ts.
    Committed(u64),
    /// The transaction is (now) rolled back.
    RolledBack,
}

/// An in-progress action: a reader and the batch of changes.
pub struct MvccTxn<'a, S: Snapshot + ?Sized> {
    /// The reader over the state before this action.
    pub reader: MvccReader<'a, S>,
    /// The changes so far.
    pub writes: WriteBatch,
}

fn dedup(keys: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut seen = BTreeSet::new();
    keys.iter()
        .filter(|k| seen.insert(k.to_vec()))
        .cloned()
        .collect()
}

impl<'a, S: Snapshot + ?Sized> MvccTxn<'a, S> {
    /// A new action over `snap`.
    pub fn new(snap: &'a S) -> Self {
        MvccTxn {
            reader: MvccReader::new(snap),
            writes: WriteBatch::default(),
        }
    }

    /// The snapshot this action reads.
    pub fn reader_snapshot(&self) -> &'a S {
        self.reader.snapshot()
    }

    fn put_lock(&mut self, key: &[u8], lock: &Lock) {
        self.writes.put(Cf::Lock, lock_key(key), lock.to_bytes());
    }

    fn unlock(&mut self, key: &[u8]) {
        self.writes.delete(Cf::Lock, lock_key(key));
    }

    fn put_write(&mut self, key: &[u8], commit_ts: u64, write: &Write) {
        self.writes
            .put(Cf::Write, versioned_key(key, commit_ts), write.to_bytes());
    }

    fn put_rollback_record(&mut self, key: &[u8], start_ts: u64) -> Result<()> {
        // Never overwrite another transaction's commit record at the same ts
        // (a one-phase commit may choose any commit_ts): mark it instead.
        if let Some((commit_ts, mut w)) = self.reader.seek_write(key, start_ts)? {
            if commit_ts == start_ts && w.start_ts != start_ts {
                if !w.has_overlapped_rollback {
                    w.has_overlapped_rollback = true;
                    self.put_write(key, commit_ts, &w);
                }
                return Ok(());
            }
        }
        self.put_write(
            key,
            start_ts,
            &Write {
                write_type: WriteType::Rollback,
                start_ts,
                short_value: None,
                has_overlapped_rollback: false,
            },
        );
        Ok(())
    }

    /// Removes a lock of this transaction and its value, and records the
    /// rollback so that a late prewrite cannot succeed.
    fn rollback_lock(&mut self, key: &[u8], lock: &Lock) -> Result<()> {
        if lock.lock_type == LockType::Put && lock.short_value.is_none() {
            self.writes.delete(Cf::Default, versioned_key(key, lock.ts));
        }
        self.unlock(key);
        self.put_rollback_record(key, lock.ts)
    }

    /// The newest committed data of `key`, at any ts.
    fn key_exists(&self, key: &[u8]) -> Result<bool> {
        Ok(matches!(
            self.reader.seek_data_write(key, u64::MAX)?,
            Some((_, w)) if w.write_type == WriteType::Put
        ))
    }

    /// Checks for a write by another transaction committed after `floor`
    /// (start_ts, or a pessimistic transaction's for_update_ts), and for
    /// this transaction's own rollback. A commit exactly at `floor` is in
    /// the snapshot the transaction read (commit_ts <= ts is visible), so
    /// it is no conflict: only a one-phase commit, whose commit_ts the
    /// store chose, can land on a timestamp PD also handed out as a start.
    fn check_write_conflict(&self, key: &[u8], floor: u64, params: &PrewriteParams) -> Result<()> {
        let mut ts = u64::MAX;
        while let Some((commit_ts, w)) = self.reader.seek_write(key, ts)? {
            if commit_ts < floor {
                break;
            }
            let own_rollback = commit_ts == params.start_ts
                && ((w.start_ts == params.start_ts && w.write_type == WriteType::Rollback)
                    || w.has_overlapped_rollback);
            if own_rollback {
                // Our own transaction was rolled back here: it must not
                // prewrite again.
                return Err(Error::WriteConflict {
                    start_ts: params.start_ts,
                    conflict_start_ts: params.start_ts,
                    conflict_commit_ts: commit_ts,
                    key: key.to_vec(),
                    primary: params.primary.clone(),
                });
            }
            if w.write_type != WriteType::Rollback && commit_ts > floor {
                return Err(Error::WriteConflict {
                    start_ts: params.start_ts,
                    conflict_start_ts: w.start_ts,
                    conflict_commit_ts: commit_ts,
                    key: key.to_vec(),
                    primary: params.primary.clone(),
                });
            }
            if commit_ts == 0 {
                break;
            }
            ts = commit_ts - 1;
        }
        Ok(())
    }

    /// Prewrite. All-or-nothing: on any error nothing is written; locks
    /// found are all reported (so the client can resolve them in one go).
    /// With [`PrewriteParams::one_pc`], a clean prewrite of keys none of
    /// which this transaction locked or committed before commits them
    /// directly; a retried 1PC whose first attempt committed reports that
    /// commit_ts again and writes nothing.
    pub fn prewrite(
        &mut self,
        params: &PrewriteParams,
        mutations: &[Mutation],
    ) -> Result<Prewritten, Vec<Error>> {
        let mut errors = Vec::new();
        let mut seen = BTreeSet::new();
        let mut min_commit_ts = 0;
        if params.use_async_commit {
            min_commit_ts = params
                .min_commit_ts
                .max(params.start_ts + 1)
                .max(params.for_update_ts + 1)
                .max(params.max_read_ts + 1);
        }
        let mut locks = Vec::new();
        let (mut retried, mut committed_at) = (false, None);
        for m in mutations {
            if !seen.insert(m.key.clone()) {
                continue;
            }
            match self.prewrite_key(params, m, min_commit_ts) {
                Ok(KeyPrewrite::Lock(lock)) => locks.push((m.key.clone(), lock)),
                Ok(KeyPrewrite::Nothing) => {}
                Ok(KeyPrewrite::AlreadyLocked) => retried = true,
                Ok(KeyPrewrite::AlreadyCommitted(ts)) => committed_at = Some(ts),
                Err(e) => errors.push(e),
            }
        }
        if !errors.is_empty() {
            self.writes = WriteBatch::default();
            return Err(errors);
        }
        let mut done = Prewritten {
            min_commit_ts,
            one_pc_commit_ts: 0,
        };
        if let Some(max_ts) = params.one_pc.filter(|_| !retried) {
            if let (Some(ts), true) = (committed_at, locks.is_empty()) {
                // A retry of a 1PC that committed: report it again.
                done.one_pc_commit_ts = ts;
                return Ok(done);
            }
            let commit_ts = params
                .start_ts
                .max(params.for_update_ts)
                .max(max_ts)
                .saturating_add(1)
                .max(params.min_commit_ts);
            if committed_at.is_none()
                && (params.max_commit_ts == 0 || commit_ts <= params.max_commit_ts)
            {
                for (key, lock) in &locks {
                    // The chosen commit_ts may be another transaction's
                    // start_ts, whose rollback record is there.
                    let overlapped = match self.reader.seek_write(key, commit_ts) {
                        Ok(found) => matches!(
                            found,
                            Some((ts, w)) if ts == commit_ts && w.write_type == WriteType::Rollback
                        ),
                        Err(e) => {
                            self.writes = WriteBatch::default();
                            return Err(vec![e]);
                        }
                    };
                    self.commit_lock(key, lock, commit_ts, overlapped);
                }
                done.one_pc_commit_ts = commit_ts;
                return Ok(done);
            }
        }
        for (key, lock) in &locks {
            self.put_lock(key, lock);
        }
        Ok(done)
    }

    fn prewrite_key(
        &mut self,
        params: &PrewriteParams,
        m: &Mutation,
        async_min_commit_ts: u64,
    ) -> Result<KeyPrewrite> {
        let key = &m.key;
        let existing = self.reader.load_lock(key)?;
        let mut pessimistic_for_update_ts = 0;
        match &existing {
            Some(lock) if lock.ts != params.start_ts => {
                return Err(Error::KeyIsLocked(lock.info(key)));
            }
            Some(lock) if lock.lock_type != LockType::Pessimistic => {
                // Already prewritten by this transaction: idempotent.
                return Ok(KeyPrewrite::AlreadyLocked);
            }
            Some(lock) => pessimistic_for_update_ts = lock.for_update_ts,
            None if m.expect_pessimistic_lock => {
                return Err(Error::PessimisticLockNotFound {
                    start_ts: params.start_ts,
                    key: key.clone(),
                });
            }
            None => {
                if let TxnRecord::Committed(commit_ts, _) =
                    self.reader.txn_record(key, params.start_ts)?
                {
                    // A retried prewrite after commit: nothing to do.
                    return Ok(KeyPrewrite::AlreadyCommitted(commit_ts));
                }
                // A pessimistic transaction's keys without a pessimistic
                // lock (non-unique index entries, which only a holder of
                // the row's lock writes) conflict only with commits after
                // its newest for_update_ts, as in TiKV: it read their rows
                // at that timestamp.
                let floor = if params.for_update_ts > 0 {
                    params.for_update_ts
                } else {
                    params.start_ts
                };
                self.check_write_conflict(key, floor, params)?;
            }
        }
        if matches!(m.op, Op::Insert(_) | Op::CheckNotExists) && self.key_exists(key)? {
            return Err(Error::AlreadyExist { key: key.clone() });
        }
        let (lock_type, value) = match &m.op {
            Op::Put(v) | Op::Insert(v) => (LockType::Put, Some(v)),
            Op::Delete => (LockType::Delete, None),
            Op::Lock => (LockType::Lock, None),
            Op::CheckNotExists => return Ok(KeyPrewrite::Nothing),
        };
        let mut short_value = None;
        if let Some(v) = value {
            if v.len() <= SHORT_VALUE_MAX_LEN {
                short_value = Some(v.clone());
            } else {
                self.writes
                    .put(Cf::Default, versioned_key(key, params.start_ts), v.clone());
            }
        }
        let is_primary = *key == params.primary;
        let lock = Lock {
            lock_type,
            primary: params.primary.clone(),
            ts: params.start_ts,
            ttl: params.lock_ttl,
            short_value,
            for_update_ts: params.for_update_ts.max(pessimistic_for_update_ts),
            txn_size: params.txn_size,
            min_commit_ts: if params.use_async_commit {
                async_min_commit_ts
            } else {
                params.min_commit_ts
            },
            use_async_commit: params.use_async_commit,
            secondaries: if params.use_async_commit && is_primary {
                params.secondaries.clone()
            } else {
                Vec::new()
            },
        };
        Ok(KeyPrewrite::Lock(lock))
    }

    /// Commit. All-or-nothing.
    pub fn commit(&mut self, keys: &[Vec<u8>], start_ts: u64, commit_ts: u64) -> Result<()> {
        if commit_ts <= start_ts {
            return Err(Error::InvalidRequest(format!(
                "commit_ts {commit_ts} must be greater than start_ts {start_ts}"
            )));
        }
        let result = dedup(keys)
            .iter()
            .try_for_each(|key| self.commit_key(key, start_ts, commit_ts));
        self.discard_on_error(result)
    }

    /// Keeps an action all-or-nothing: on an error, the changes staged for
    /// the keys before the failing one are dropped. (A partial rollback
    /// once rolled back a secondary of a committed transaction — half a
    /// bank transfer visible; see docs/replication.md.)
    fn discard_on_error<T>(&mut self, result: Result<T>) -> Result<T> {
        if result.is_err() {
            self.writes = WriteBatch::default();
        }
        result
    }

    fn commit_key(&mut self, key: &[u8], start_ts: u64, commit_ts: u64) -> Result<()> {
        match self.reader.load_lock(key)? {
            Some(lock) if lock.ts == start_ts && lock.lock_type != LockType::Pessimistic => {
                if commit_ts < lock.min_commit_ts {
                    return Err(Error::CommitTsExpired {
                        start_ts,
                        commit_ts,
                        key: key.to_vec(),
                        min_commit_ts: lock.min_commit_ts,
                    });
                }
                self.commit_lock(key, &lock, commit_ts, false);
                Ok(())
            }
            _ => match self.reader.txn_record(key, start_ts)? {
                TxnRecord::Committed(..) => Ok(()),
                _ => Err(Error::TxnLockNotFound {
                    start_ts,
                    commit_ts,
                    key: key.to_vec(),
                }),
            },
        }
    }

    /// Writes the commit record of `lock` (a prewrite lock of `key`, in
    /// the engine or only staged by a 1PC) and removes any lock of the key.
    fn commit_lock(&mut self, key: &[u8], lock: &Lock, commit_ts: u64, overlapped: bool) {
        let write_type = match lock.lock_type {
            LockType::Put => WriteType::Put,
            LockType::Delete => WriteType::Delete,
            _ => WriteType::Lock,
        };
        self.put_write(
            key,
            commit_ts,
            &Write {
                write_type,
                start_ts: lock.ts,
                short_value: lock.short_value.clone(),
                has_overlapped_rollback: overlapped,
            },
        );
        self.unlock(key);
    }

    /// Rollback (KvBatchRollback). All-or-nothing.
    pub fn rollback(&mut self, keys: &[Vec<u8>], start_ts: u64) -> Result<()> {
        let result = dedup(keys)
            .iter()
            .try_for_each(|key| self.rollback_key(key, start_ts));
        self.discard_on_error(result)
    }

    fn rollback_key(&mut self, key: &[u8], start_ts: u64) -> Result<()> {
        match self.reader.load_lock(key)? {
            Some(lock) if lock.ts == start_ts => self.rollback_lock(key, &lock),
            _ => match self.reader.txn_record(key, start_ts)? {
                TxnRecord::Committed(commit_ts, _) => Err(Error::Committed {
                    start_ts,
                    commit_ts,
                    key: key.to_vec(),
                }),
                TxnRecord::RolledBack => Ok(()),
                TxnRecord::None => self.put_rollback_record(key, start_ts),
            },
        }
    }

    /// Cleanup (KvCleanup): rolls back an expired lock. Returns the commit ts
    /// if the transaction had committed, 0 if it is (now) rolled back.
    pub fn cleanup(&mut self, key: &[u8], start_ts: u64, current_ts: u64) -> Result<u64> {
        match self.reader.load_lock(key)? {
            Some(lock) if lock.ts == start_ts => {
                if current_ts != 0 && !lock.is_expired(current_ts) {
                    return Err(Error::KeyIsLocked(lock.info(key)));
                }
                self.rollback_lock(key, &lock)?;
                Ok(0)
            }
            _ => match self.reader.txn_record(key, start_ts)? {
                TxnRecord::Committed(commit_ts, _) => Ok(commit_ts),
                TxnRecord::RolledBack => Ok(0),
                TxnRecord::None => {
                    self.put_rollback_record(key, start_ts)?;
                    Ok(0)
                }
            },
        }
    }

    /// Check-txn-status on the primary key.
    #[allow(clippy::too_many_arguments)]
    pub fn check_txn_status(
        &mut self,
        primary: &[u8],
        lock_ts: u64,
        caller_start_ts: u64,
        current_ts: u64,
        rollback_if_not_exist: bool,
        force_sync_commit: bool,
        resolving_pessimistic_lock: bool,
    ) -> Result<TxnStatus> {
        if let Some(mut lock) = self.reader.load_lock(primary)? {
            if lock.ts == lock_ts {
                if lock.is_expired(current_ts) {
                    if lock.lock_type == LockType::Pessimistic && resolving_pessimistic_lock {
                        self.unlock(primary);
                        return Ok(TxnStatus::TtlExpirePessimisticRollback);
                    }
                    self.rollback_lock(primary, &lock)?;
                    return Ok(TxnStatus::TtlExpireRollback);
                }
                let mut pushed = false;
                if (!lock.use_async_commit || force_sync_commit)
                    && lock.lock_type != LockType::Pessimistic
                    && caller_start_ts != 0
                    && caller_start_ts != u64::MAX
                    && lock.min_commit_ts <= caller_start_ts
                {
                    lock.min_commit_ts = caller_start_ts + 1;
                    self.put_lock(primary, &lock);
                    pushed = true;
                }
                return Ok(TxnStatus::Locked {
                    ttl: lock.ttl,
                    lock: lock.info(primary),
                    min_commit_ts_pushed: pushed,
                });
            }
        }
        match self.reader.txn_record(primary, lock_ts)? {
            TxnRecord::Committed(commit_ts, _) => Ok(TxnStatus::Committed(commit_ts)),
            TxnRecord::RolledBack => Ok(TxnStatus::RolledBack),
            TxnRecord::None if rollback_if_not_exist => {
                self.put_rollback_record(primary, lock_ts)?;
                Ok(TxnStatus::LockNotExistRollback)
            }
            TxnRecord::None => Err(Error::TxnNotFound {
                start_ts: lock_ts,
                primary_key: primary.to_vec(),
            }),
        }
    }

    /// Check-secondary-locks (async commit recovery).
    pub fn check_secondary_locks(
        &mut self,
        keys: &[Vec<u8>],
        start_ts: u64,
    ) -> Result<SecondaryStatus> {
        let mut locks = Vec::new();
        let mut committed = None;
        for key in dedup(keys) {
            match self.reader.load_lock(&key)? {
                Some(lock) if lock.ts == start_ts && lock.lock_type == LockType::Pessimistic => {
                    // Never prewritten: the transaction cannot have committed.
                    self.rollback_lock(&key, &lock)?;
                    return Ok(SecondaryStatus::RolledBack);
                }
                Some(lock) if lock.ts == start_ts => locks.push(lock.info(&key)),
                _ => match self.reader.txn_record(&key, start_ts)? {
                    TxnRecord::Committed(commit_ts, _) => committed = Some(commit_ts),
                    TxnRecord::RolledBack => {
                        self.writes = WriteBatch::default();
                        return Ok(SecondaryStatus::RolledBack);
                    }
                    TxnRecord::None => {
                        self.put_rollback_record(&key, start_ts)?;
                        return Ok(SecondaryStatus::RolledBack);
                    }
                },
            }
        }
        Ok(match committed {
            Some(ts) => SecondaryStatus::Committed(ts),
            None => SecondaryStatus::Locked(locks),
        })
    }

    /// Resolve-lock: commit (commit_ts > 0) or roll back every lock of
    /// `start_ts` on `keys`. All-or-nothing.
    pub fn resolve_lock(&mut self, keys: &[Vec<u8>], start_ts: u64, commit_ts: u64) -> Result<()> {
        let result = dedup(keys).iter().try_for_each(|key| {
            if commit_ts > 0 {
                self.commit_key(key, start_ts, commit_ts)
            } else {
                self.rollback_key(key, start_ts)
            }
        });
        self.discard_on_error(result)
    }

    /// Txn-heartbeat: extends the primary lock's TTL. Returns the TTL.
    pub fn txn_heart_beat(
        &mut self,
        primary: &[u8],
        start_ts: u64,
        advise_ttl: u64,
    ) -> Result<u64> {
        match self.reader.load_lock(primary)? {
            Some(mut lock) if lock.ts == start_ts => {
                if advise_ttl > lock.ttl {
                    lock.ttl = advise_ttl;
                    self.put_lock(primary, &lock);
                }
                Ok(lock.ttl)
            }
            _ => Err(Error::TxnNotFound {
                start_ts,
                primary_key: primary.to_vec(),
            }),
        }
    }

    /// Pessimistic lock. All-or-nothing; returns the current values when
    /// asked (None for absent keys).
    #[allow(clippy::too_many_arguments)]
    pub fn pessimistic_lock(
        &mut self,
        keys: &[(Vec<u8>, bool)],
        primary: &[u8],
        start_ts: u64,
        for_update_ts: u64,
        ttl: u64,
        return_values: bool,
        min_commit_ts: u64,
    ) -> Result<Vec<Option<Vec<u8>>>> {
        let result = self.pessimistic_lock_keys(
            keys,
            primary,
            start_ts,
            for_update_ts,
            ttl,
            return_values,
            min_commit_ts,
        );
        self.discard_on_error(result)
    }

    #[allow(clippy::too_many_arguments)]
    fn pessimistic_lock_keys(
        &mut self,
        keys: &[(Vec<u8>, bool)],
        primary: &[u8],
        start_ts: u64,
        for_update_ts: u64,
        ttl: u64,
        return_values: bool,
        min_commit_ts: u64,
    ) -> Result<Vec<Option<Vec<u8>>>> {
        let mut values = Vec::new();
        let mut seen = BTreeSet::new();
        for (key, should_not_exist) in keys {
            if !seen.insert(key.clone()) {
                continue;
            }
            let existing = self.reader.load_lock(key)?;
            if let Some(lock) = &existing {
                if lock.ts != start_ts {
                    return Err(Error::KeyIsLocked(lock.info(key)));
                }
            }
            if existing.is_none() {
                if let TxnRecord::RolledBack = self.reader.txn_record(key, start_ts)? {
                    return Err(Error::TxnLockNotFound {
                        start_ts,
                        commit_ts: 0,
                        key: key.clone(),
                    });
                }
                // Every record after for_update_ts, not only the newest: a
                // later transaction's rollback record can hide a commit
                // (the locker would then read a stale row at for_update_ts).
                let mut ts = u64::MAX;
                while let Some((commit_ts, w)) = self.reader.seek_write(key, ts)? {
                    if commit_ts <= for_update_ts {
                        break;
                    }
                    if w.write_type != WriteType::Rollback {
                        return Err(Error::WriteConflict {
                            start_ts,
                            conflict_start_ts: w.start_ts,
                            conflict_commit_ts: commit_ts,
                            key: key.clone(),
                            primary: primary.to_vec(),
                        });
                    }
                    ts = commit_ts - 1;
                }
            }
            let value = match self.reader.seek_data_write(key, u64::MAX)? {
                Some((_, w)) => self.reader.load_value(key, &w)?,
                None => None,
            };
            if *should_not_exist && value.is_some() {
                return Err(Error::AlreadyExist { key: key.clone() });
            }
            match existing {
                Some(mut lock) => {
                    if lock.lock_type == LockType::Pessimistic && lock.for_update_ts < for_update_ts
                    {
                        lock.for_update_ts = for_update_ts;
                        self.put_lock(key, &lock);
                    }
                }
                None => {
                    let lock = Lock {
                        lock_type: LockType::Pessimistic,
                        primary: primary.to_vec(),
                        ts: start_ts,
                        ttl,
                        short_value: None,
                        for_update_ts,
                        txn_size: 0,
                        min_commit_ts,
                        use_async_commit: false,
                        secondaries: Vec::new(),
                    };
                    self.put_lock(key, &lock);
                }
            }
            if return_values {
                values.push(value);
            }
        }
        Ok(values)
    }

    /// Pessimistic rollback: removes pessimistic locks of `start_ts` taken at
    /// or below `for_update_ts`.
    pub fn pessimistic_rollback(
        &mut self,
        keys: &[Vec<u8>],
        start_ts: u64,
        for_update_ts: u64,
    ) -> Result<()> {
        for key in dedup(keys) {
            if let Some(lock) = self.reader.load_lock(&key)? {
                if lock.ts == start_ts
                    && lock.lock_type == LockType::Pessimistic
                    && lock.for_update_ts <= for_update_ts
                {
                    self.unlock(&key);
                }
            }
        }
        Ok(())
    }

    /// GC of `[start, end)` at `safe_point`: keeps, per key, the newest
    /// version visible at the safe point (unless it is a delete) and removes
    /// everything older, plus rollback and lock records at or below it.
    pub fn gc(&mut self, start: &[u8], end: Option<&[u8]>, safe_point: u64) -> Result<usize> {
        let mut removed = 0;
        let reader = &self.reader;
        let writes = &mut self.writes;
        reader.for_each_key(start, end, false, |key, versions| {
            let mut kept_data = false;
            for (commit_ts, w) in versions {
                if commit_ts > safe_point {
                    continue;
                }
                let remove = match w.write_type {
                    WriteType::Rollback | WriteType::Lock => true,
                    WriteType::Put | WriteType::Delete if !kept_data => {
                        kept_data = true;
                        w.write_type == WriteType::Delete
                    }
                    _ => true,
                };
                if remove {
                    writes.delete(Cf::Write, versioned_key(&key, commit_ts));
                    if w.write_type == WriteType::Put && w.short_value.is_none() {
                        writes.delete(Cf::Default, versioned_key(&key, w.start_ts));
                    }
                    removed += 1;
                }
            }
            Ok(true)
        })?;
        Ok(removed)
    }
}
