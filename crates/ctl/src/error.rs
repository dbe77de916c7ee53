//! The ctl crate's one error type; each message names the endpoint, flag or
//! command concerned and what to do.

use std::fmt;

/// What can go wrong in a ctl tool.
#[derive(Debug)]
pub enum CtlError {
    /// The command line is wrong: print usage and fix the command.
    Usage(String),
    /// Flags or certificates are wrong: fix them (the message says how).
    Config(String),
    /// No endpoint could be reached or the TLS handshake failed.
    Connect {
        /// The endpoint(s) tried.
        endpoint: String,
        /// Why.
        reason: String,
    },
    /// PD answered with an error status.
    Http {
        /// The HTTP status.
        status: u16,
        /// The body PD sent.
        body: String,
    },
}

impl fmt::Display for CtlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CtlError::Usage(m) => write!(f, "{m}"),
            CtlError::Config(m) => write!(f, "{m}"),
            CtlError::Connect { endpoint, reason } => {
                write!(f, "cannot reach PD at {endpoint}: {reason}")
            }
            CtlError::Http { status, body } => write!(f, "PD answered {status}: {body}"),
        }
    }
}

impl std::error::Error for CtlError {}
