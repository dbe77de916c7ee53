//! The client's error type: each variant says whether to retry.

use std::fmt;

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong talking to the cluster.
#[derive(Debug, Clone)]
pub enum Error {
    /// A configuration mistake (URL scheme vs TLS, bad address). Not retryable.
    Config(String),
    /// The peer could not be reached or the connection broke. Retryable.
    Unavailable {
        /// The address.
        addr: String,
        /// Why (TLS refusals name the reason and the fix).
        reason: String,
    },
    /// PD could not be reached within its timeout (refused, silent, broken
    /// connection). Retryable: PD may be restarting or electing a leader.
    PdUnreachable {
        /// The PD address tried.
        addr: String,
        /// Why (a TLS refusal names the reason and the fix).
        reason: String,
    },
    /// PD answered with an error. Retryable when PD is electing a leader.
    Pd(String),
    /// PD refused a request with a typed error (`pdpb.ErrorType`).
    PdRefused {
        /// The error type's name (`AlreadyBootstrapped`, `NotBootstrapped`, ...).
        kind: String,
        /// PD's message.
        message: String,
    },
    /// The store refused the request (the message says why). Not retryable.
    Server(String),
    /// Another transaction committed a key this one writes: restart the
    /// transaction (re-read, re-apply) if the application allows.
    Conflict {
        /// The key.
        key: Vec<u8>,
        /// Our start timestamp.
        start_ts: u64,
        /// The conflicting transaction's commit timestamp.
        conflict_commit_ts: u64,
    },
    /// An insert found the key present.
    AlreadyExist {
        /// The key.
        key: Vec<u8>,
    },
    /// A lock of a live transaction did not go away in time. Retryable.
    Locked {
        /// The key.
        key: Vec<u8>,
        /// The locking transaction.
        lock_ts: u64,
    },
    /// Waiting for a lock would close a cycle of waiting transactions:
    /// this transaction must roll back so the others can proceed.
    Deadlock {
        /// The key whose lock was awaited.
        key: Vec<u8>,
        /// The transaction holding it.
        lock_ts: u64,
    },
    /// The transaction cannot commit (it was rolled back by another client
    /// after its lock expired, or the store refused it).
    Aborted(String),
    /// The commit was sent and no answer came (the store or PD went
    /// unreachable, or the answer was lost): the transaction may have
    /// committed or not. NOT retryable as if it had failed: the caller must
    /// find out (read what it wrote) before running it again.
    CommitUndetermined {
        /// The transaction's start timestamp.
        start_ts: u64,
        /// What went wrong after the commit was sent.
        reason: String,
    },
    /// A gRPC status from a server.
    Rpc {
        /// The address.
        addr: String,
        /// The status.
        status: String,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(m) => write!(f, "{m}"),
            Error::Unavailable { addr, reason } => write!(f, "{addr} is unavailable: {reason}"),
            Error::PdUnreachable { addr, reason } => write!(f, "PD is unreachable ({addr}): {reason}"),
            Error::Pd(m) => write!(f, "PD: {m}"),
            Error::PdRefused { kind, message } => {
                write!(f, "PD refused the request: {message} ({kind})")
            }
            Error::Rpc { addr, status } => write!(f, "{addr}: {status}"),
            Error::Server(m) => write!(f, "the store refused the request: {m}"),
            Error::Conflict { key, start_ts, conflict_commit_ts } => write!(
                f,
                "write conflict on key {:?}: transaction {start_ts} conflicts with a commit at {conflict_commit_ts}; restart the transaction",
                String::from_utf8_lossy(key)
            ),
            Error::AlreadyExist { key } => write!(f, "key {:?} already exists", String::from_utf8_lossy(key)),
            Error::Locked { key, lock_ts } => write!(
                f,
                "key {:?} is still locked by live transaction {lock_ts}; retry later",
                String::from_utf8_lossy(key)
            ),
            Error::Deadlock { key, lock_ts } => write!(
                f,
                "deadlock: waiting for the lock of transaction {lock_ts} on key {:?} closes a cycle of waiting transactions",
                String::from_utf8_lossy(key)
            ),
            Error::Aborted(m) => write!(f, "transaction aborted: {m}"),
            Error::CommitUndetermined { start_ts, reason } => write!(
                f,
                "the result of committing transaction {start_ts} is undetermined: the commit was sent but no answer came ({reason}); it may have committed, check before running it again"
            ),
        }
    }
}

impl std::error::Error for Error {}

impl Error {
    /// Whether retrying the same call may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::Unavailable { .. }
                | Error::PdUnreachable { .. }
                | Error::Pd(_)
                | Error::Locked { .. }
        )
    }
}
