//! The PD crate's one error type. Each variant says what went wrong and what
//! the caller must do; the gRPC layer maps them onto `pdpb::ErrorType` and
//! the HTTP layer onto status codes.

use std::fmt;
use std::path::{Path, PathBuf};

/// Result alias for the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong in PD.
#[derive(Debug)]
pub enum Error {
    /// The cluster has not been bootstrapped yet: bootstrap it first.
    NotBootstrapped,
    /// Bootstrap was called on a bootstrapped cluster: nothing to do.
    AlreadyBootstrapped,
    /// The store was removed for good and must not come back with this id.
    StoreTombstone(u64),
    /// No store with this id: the caller must register it (PutStore) first.
    StoreNotFound(u64),
    /// No region with this id or containing this key.
    RegionNotFound(String),
    /// The request's header names another cluster: the client is pointed at
    /// the wrong PD.
    ClusterIdMismatch {
        /// Ours.
        ours: u64,
        /// Theirs.
        theirs: u64,
    },
    /// The reported region is older than what PD knows: the reporter must
    /// refresh its view.
    StaleRegion {
        /// The region.
        id: u64,
        /// Why it is stale.
        detail: String,
    },
    /// A request field is invalid; the message names the field and the rule.
    InvalidValue(String),
    /// Another store already uses this address.
    DuplicatedEntry(String),
    /// Reading or writing PD's data directory failed; PD cannot go on safely.
    Storage {
        /// The file or directory.
        path: PathBuf,
        /// What was being done.
        action: &'static str,
        /// The cause.
        source: std::io::Error,
    },
    /// Persisted state could not be decoded: the data directory is damaged.
    Corrupt(String),
    /// A client URL cannot be bound: another process may hold the port.
    Listen {
        /// `host:port`.
        addr: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The TLS acceptor or connector could not be built from the material.
    Tls(String),
    /// This PD member is not the (serving) leader: retry against the leader.
    NotLeader {
        /// The leader's client URL, if known.
        leader: Option<String>,
    },
}

impl Error {
    /// A storage error about `path`.
    pub fn storage(path: &Path, action: &'static str, source: std::io::Error) -> Error {
        Error::Storage {
            path: path.to_path_buf(),
            action,
            source,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotBootstrapped => f.write_str("the cluster is not bootstrapped"),
            Error::AlreadyBootstrapped => f.write_str("the cluster is already bootstrapped"),
            Error::StoreTombstone(id) => write!(f, "store {id} is a tombstone (removed)"),
            Error::StoreNotFound(id) => write!(f, "store {id} not found"),
            Error::RegionNotFound(what) => write!(f, "region {what} not found"),
            Error::ClusterIdMismatch { ours, theirs } => write!(
                f,
                "the request is for cluster {theirs} but this PD serves cluster {ours}: check \
                 the PD endpoints the client was given"
            ),
            Error::StaleRegion { id, detail } => write!(f, "region {id} is stale: {detail}"),
            Error::InvalidValue(msg) => f.write_str(msg),
            Error::DuplicatedEntry(msg) => f.write_str(msg),
            Error::Storage {
                path,
                action,
                source,
            } => write!(f, "{action} ({}): {source}", path.display()),
            Error::Corrupt(msg) => write!(f, "PD's persisted state is damaged: {msg}"),
            Error::Listen { addr, source } => write!(
                f,
                "cannot listen on {addr}: {source}; is another process using the port? Choose \
                 another URL or stop that process"
            ),
            Error::Tls(msg) => write!(f, "TLS setup failed: {msg}"),
            Error::NotLeader { leader: Some(url) } => write!(
                f,
                "this PD member is not the leader; the leader serves at {url}"
            ),
            Error::NotLeader { leader: None } => f.write_str(
                "this PD member is not the leader and no leader is known yet (election in \
                 progress); retry shortly",
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Storage { source, .. } | Error::Listen { source, .. } => Some(source),
            _ => None,
        }
    }
}
