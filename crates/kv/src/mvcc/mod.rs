//! Percolator MVCC over the three data column families.
//!
//! ```text
//!   lock  CF: z{enc(key)}            -> Lock  (at most one per key)
//!   write CF: z{enc(key)}{!commit_ts} -> Write (Put/Delete/Lock/Rollback, start_ts, short value)
//!   default : z{enc(key)}{!start_ts}  -> value (when longer than SHORT_VALUE_MAX_LEN)
//! ```
//!
//! A transaction prewrites every key (lock + value), then commits the primary
//! (write record, lock removed), then the secondaries. When all its keys are
//! in one region it may commit in one phase (1PC): the prewrite writes the
//! commit records itself, at a commit_ts above every read the leader has
//! served ([`concurrency`]). Readers at `ts` see
//! the newest Put/Delete with commit_ts <= ts; a lock with start_ts <= ts
//! blocks them until resolved. Everything here is deterministic: callers
//! pass timestamps in, [`txn::MvccTxn`] returns a write batch, nothing reads
//! a clock or touches a socket.

pub mod concurrency;
pub mod reader;
pub mod txn;

use crate::codec::{Reader, Writer};
use crate::error::{Error, Result};

/// Values up to this length live inside the lock/write record.
pub const SHORT_VALUE_MAX_LEN: usize = 255;

/// Bits of a timestamp holding the logical counter.
pub const TSO_LOGICAL_BITS: u32 = 18;

/// The physical (milliseconds) part of a timestamp.
pub fn physical_ms(ts: u64) -> u64 {
    ts >> TSO_LOGICAL_BITS
}

/// A timestamp for a physical time (logical 0).
pub fn compose_ts(physical_ms: u64, logical: u64) -> u64 {
    (physical_ms << TSO_LOGICAL_BITS) | logical
}

/// Kinds of lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockType {
    /// Will write a value.
    Put,
    /// Will delete.
    Delete,
    /// Only locks the key (SELECT ... FOR UPDATE in optimistic mode).
    Lock,
    /// A pessimistic lock taken before prewrite.
    Pessimistic,
}

impl LockType {
    fn code(self) -> u8 {
        match self {
            LockType::Put => b'P',
            LockType::Delete => b'D',
            LockType::Lock => b'L',
            LockType::Pessimistic => b'S',
        }
    }
    fn from_code(c: u8) -> Result<Self> {
        Ok(match c {
            b'P' => LockType::Put,
            b'D' => LockType::Delete,
            b'L' => LockType::Lock,
            b'S' => LockType::Pessimistic,
            _ => return Err(Error::Corrupted(format!("lock type {c}"))),
        })
    }
}

/// A Percolator lock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lock {
    /// Kind.
    pub lock_type: LockType,
    /// The transaction's primary key.
    pub primary: Vec<u8>,
    /// The transaction's start_ts.
    pub ts: u64,
    /// Time to live, ms from the physical part of `ts`.
    pub ttl: u64,
    /// The value, when short.
    pub short_value: Option<Vec<u8>>,
    /// Pessimistic transactions: the for_update_ts.
    pub for_update_ts: u64,
    /// Number of keys in the transaction (a hint).
    pub txn_size: u64,
    /// Readers below this ts may ignore the lock.
    pub min_commit_ts: u64,
    /// Async commit: the transaction is committed once all locks exist.
    pub use_async_commit: bool,
    /// Async commit: the secondary keys (on the primary's lock).
    pub secondaries: Vec<Vec<u8>>,
}

impl Lock {
    /// Serializes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.u8(self.lock_type.code())
            .bytes(&self.primary)
            .u64(self.ts)
            .u64(self.ttl)
            .u8(u8::from(self.short_value.is_some()))
            .bytes(self.short_value.as_deref().unwrap_or_default())
            .u64(self.for_update_ts)
            .u64(self.txn_size)
            .u64(self.min_commit_ts)
            .u8(u8::from(self.use_async_commit))
            .u64(self.secondaries.len() as u64);
        for s in &self.secondaries {
            w.bytes(s);
        }
        w.0
    }

    /// Deserializes.
    pub fn from_bytes(b: &[u8]) -> Result<Lock> {
        let mut r = Reader(b);
        let lock_type = LockType::from_code(r.u8()?)?;
        let primary = r.bytes()?;
        let ts = r.u64()?;
        let ttl = r.u64()?;
        let has_short = r.u8()? == 1;
        let short = r.bytes()?;
        let for_update_ts = r.u64()?;
        let txn_size = r.u64()?;
        let min_commit_ts = r.u64()?;
        let use_async_commit = r.u8()? == 1;
        let n = r.u64()?;
        let mut secondaries = Vec::new();
        for _ in 0..n {
            secondaries.push(r.bytes()?);
        }
        Ok(Lock {
            lock_type,
            primary,
            ts,
            ttl,
            short_value: has_short.then_some(short),
            for_update_ts,
            txn_size,
            min_commit_ts,
            use_async_commit,
            secondaries,
        })
    }

    /// Whether the lock's TTL has passed at `current_ts`.
    pub fn is_expired(&self, current_ts: u64) -> bool {
        physical_ms(current_ts) >= physical_ms(self.ts).saturating_add(self.ttl)
    }

    /// The lock as reported to clients.
    pub fn info(&self, key: &[u8]) -> LockInfo {
        LockInfo {
            primary_lock: self.primary.clone(),
            lock_version: self.ts,
            key: key.to_vec(),
            lock_ttl: self.ttl,
            txn_size: self.txn_size,
            lock_type: self.lock_type,
            lock_for_update_ts: self.for_update_ts,
            use_async_commit: self.use_async_commit,
            min_commit_ts: self.min_commit_ts,
            secondaries: self.secondaries.clone(),
        }
    }
}

/// A lock as reported to clients (kvrpcpb.LockInfo's content).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockInfo {
    /// Primary key of the locking transaction.
    pub primary_lock: Vec<u8>,
    /// Its start_ts.
    pub lock_version: u64,
    /// The locked key.
    pub key: Vec<u8>,
    /// TTL in ms.
    pub lock_ttl: u64,
    /// Transaction size hint.
    pub txn_size: u64,
    /// Kind of lock.
    pub lock_type: LockType,
    /// Pessimistic for_update_ts.
    pub lock_for_update_ts: u64,
    /// Async commit flag.
    pub use_async_commit: bool,
    /// min_commit_ts.
    pub min_commit_ts: u64,
    /// Async-commit secondaries.
    pub secondaries: Vec<Vec<u8>>,
}

/// Kinds of write record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteType {
    /// A value was committed.
    Put,
    /// The key was deleted.
    Delete,
    /// The key was only locked (no data change).
    Lock,
    /// The transaction was rolled back on this key.
    Rollback,
}

impl WriteType {
    fn code(self) -> u8 {
        match self {
            WriteType::Put => b'P',
            WriteType::Delete => b'D',
            WriteType::Lock => b'L',
            WriteType::Rollback => b'R',
        }
    }
    fn from_code(c: u8) -> Result<Self> {
        Ok(match c {
            b'P' => WriteType::Put,
            b'D' => WriteType::Delete,
            b'L' => WriteType::Lock,
            b'R' => WriteType::Rollback,
            _ => return Err(Error::Corrupted(format!("write type {c}"))),
        })
    }
}

/// A commit or rollback record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Write {
    /// Kind.
    pub write_type: WriteType,
    /// The transaction's start_ts.
    pub start_ts: u64,
    /// The value, when short.
    pub short_value: Option<Vec<u8>>,
    /// This record (of a transaction committed at a ts the store chose:
    /// one-phase commit) sits where the rollback record of the transaction
    /// whose start_ts is this commit_ts belongs: that transaction is rolled
    /// back on this key too (TiKV's overlapped rollback).
    pub has_overlapped_rollback: bool,
}

impl Write {
    /// Serializes (the overlapped-rollback flag only when set, so older
    /// records read the same).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.u8(self.write_type.code())
            .u64(self.start_ts)
            .u8(u8::from(self.short_value.is_some()))
            .bytes(self.short_value.as_deref().unwrap_or_default());
        if self.has_overlapped_rollback {
            w.u8(1);
        }
        w.0
    }

    /// Deserializes.
    pub fn from_bytes(b: &[u8]) -> Result<Write> {
        let mut r = Reader(b);
        let write_type = WriteType::from_code(r.u8()?)?;
        let start_ts = r.u64()?;
        let has_short = r.u8()? == 1;
        let short = r.bytes()?;
        let has_overlapped_rollback = !r.is_empty() && r.u8()? == 1;
        Ok(Write {
            write_type,
            start_ts,
            short_value: has_short.then_some(short),
            has_overlapped_rollback,
        })
    }

    /// Whether this record changes data (Put or Delete).
    pub fn is_data_change(&self) -> bool {
        matches!(self.write_type, WriteType::Put | WriteType::Delete)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_and_write_records_round_trip() {
        let lock = Lock {
            lock_type: LockType::Pessimistic,
            primary: b"p".to_vec(),
            ts: 42,
            ttl: 3000,
            short_value: Some(b"v".to_vec()),
            for_update_ts: 43,
            txn_size: 2,
            min_commit_ts: 44,
            use_async_commit: true,
            secondaries: vec![b"a".to_vec(), b"b".to_vec()],
        };
        assert_eq!(Lock::from_bytes(&lock.to_bytes()).unwrap(), lock);
        let mut write = Write {
            write_type: WriteType::Rollback,
            start_ts: 7,
            short_value: None,
            has_overlapped_rollback: false,
        };
        assert_eq!(Write::from_bytes(&write.to_bytes()).unwrap(), write);
        write.has_overlapped_rollback = true;
        assert_eq!(Write::from_bytes(&write.to_bytes()).unwrap(), write);
        assert!(Lock::from_bytes(b"P\x00").is_err());
    }
}
