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
    /// PD answered with an error. Retryable when PD is electing a leader.
    Pd(String),
    /// PD refused a request with a typed error (`pdpb.ErrorType`).
    PdRefused {
        /// The error type's name (`AlreadyBootstrapped`, `NotBootstrapped`, ...).
        kind: String,
        /// PD's message.
        message: String,
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
            Error::Pd(m) => write!(f, "PD: {m}"),
            Error::PdRefused { kind, message } => {
                write!(f, "PD refused the request: {message} ({kind})")
            }
            Error::Rpc { addr, status } => write!(f, "{addr}: {status}"),
        }
    }
}

impl std::error::Error for Error {}
