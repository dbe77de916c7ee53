//! The store's one error type. Transaction errors carry what the client
//! needs to act (the lock to resolve, the conflicting commit); region errors
//! tell it to re-route; the rest are internal.

use std::fmt;

use tiox_proto::metapb;

use crate::mvcc::LockInfo;

/// Why a request cannot be served by this store's region: the client
/// refreshes its region cache and retries elsewhere.
#[derive(Debug, Clone, PartialEq)]
pub enum RegionError {
    /// This peer is not the leader; `leader` is the hint, if known.
    NotLeader {
        /// The region.
        region_id: u64,
        /// The leader, if known.
        leader: Option<metapb::Peer>,
    },
    /// No such region on this store.
    RegionNotFound(u64),
    /// The region's epoch moved on (split, membership change).
    EpochNotMatch(Vec<metapb::Region>),
    /// The key is outside the region.
    KeyNotInRegion {
        /// The key.
        key: Vec<u8>,
        /// The region.
        region_id: u64,
        /// Its start.
        start_key: Vec<u8>,
        /// Its end.
        end_key: Vec<u8>,
    },
    /// The proposal was dropped (leader changed before it committed).
    StaleCommand,
    /// The store is overloaded or shutting down.
    ServerIsBusy(String),
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, by what the caller must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// The key is locked by another transaction: resolve the lock, retry.
    KeyIsLocked(LockInfo),
    /// Another transaction committed the key after our start: restart.
    WriteConflict {
        /// Our start timestamp.
        start_ts: u64,
        /// The conflicting transaction's start.
        conflict_start_ts: u64,
        /// The conflicting commit.
        conflict_commit_ts: u64,
        /// The key.
        key: Vec<u8>,
        /// Our primary key.
        primary: Vec<u8>,
    },
    /// An `Insert` found the key already present.
    AlreadyExist {
        /// The key.
        key: Vec<u8>,
    },
    /// No lock and no record of the transaction (check-txn-status).
    TxnNotFound {
        /// The transaction.
        start_ts: u64,
        /// The primary key.
        primary_key: Vec<u8>,
    },
    /// The lock to commit is gone (the transaction was rolled back).
    TxnLockNotFound {
        /// The transaction.
        start_ts: u64,
        /// The commit attempted.
        commit_ts: u64,
        /// The key.
        key: Vec<u8>,
    },
    /// Commit below the lock's min_commit_ts: commit again with a newer ts.
    CommitTsExpired {
        /// The transaction.
        start_ts: u64,
        /// The attempted commit.
        commit_ts: u64,
        /// The key.
        key: Vec<u8>,
        /// The lowest allowed commit ts.
        min_commit_ts: u64,
    },
    /// A rollback found the transaction committed.
    Committed {
        /// The transaction.
        start_ts: u64,
        /// Its commit.
        commit_ts: u64,
        /// The key.
        key: Vec<u8>,
    },
    /// A pessimistic prewrite found no pessimistic lock.
    PessimisticLockNotFound {
        /// The transaction.
        start_ts: u64,
        /// The key.
        key: Vec<u8>,
    },
    /// The request reached the wrong place: the client must re-route.
    Region(RegionError),
    /// The request is malformed (empty key, oversized value, unknown CF...).
    InvalidRequest(String),
    /// The engine failed; the store must not continue on this region.
    Engine(String),
    /// Stored data could not be decoded.
    Corrupted(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::KeyIsLocked(l) => write!(
                f,
                "key {:?} is locked by transaction {} (primary {:?})",
                String::from_utf8_lossy(&l.key),
                l.lock_version,
                String::from_utf8_lossy(&l.primary_lock)
            ),
            Error::WriteConflict {
                start_ts,
                conflict_start_ts,
                conflict_commit_ts,
                key,
                ..
            } => write!(
                f,
                "write conflict on key {:?}: transaction {start_ts} conflicts with {conflict_start_ts} committed at {conflict_commit_ts}",
                String::from_utf8_lossy(key)
            ),
            Error::AlreadyExist { key } => {
                write!(f, "key {:?} already exists", String::from_utf8_lossy(key))
            }
            Error::TxnNotFound { start_ts, .. } => write!(f, "transaction {start_ts} not found"),
            Error::TxnLockNotFound {
                start_ts, key, ..
            } => write!(
                f,
                "lock of transaction {start_ts} on key {:?} not found (rolled back?)",
                String::from_utf8_lossy(key)
            ),
            Error::CommitTsExpired {
                commit_ts,
                min_commit_ts,
                ..
            } => write!(f, "commit ts {commit_ts} is below min_commit_ts {min_commit_ts}"),
            Error::Committed {
                start_ts,
                commit_ts,
                ..
            } => write!(f, "transaction {start_ts} is already committed at {commit_ts}"),
            Error::PessimisticLockNotFound { start_ts, key } => write!(
                f,
                "pessimistic lock of transaction {start_ts} on key {:?} not found",
                String::from_utf8_lossy(key)
            ),
            Error::Region(e) => write!(f, "region error: {e:?}"),
            Error::InvalidRequest(m) => write!(f, "invalid request: {m}"),
            Error::Engine(m) => write!(f, "storage engine failure: {m}"),
            Error::Corrupted(m) => write!(f, "corrupted data: {m}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<tiox_engine::EngineError> for Error {
    fn from(e: tiox_engine::EngineError) -> Self {
        Error::Engine(e.0)
    }
}
