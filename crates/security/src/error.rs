//! The security crate's one error type.
//!
//! Every variant says what went wrong and what the caller (usually an operator
//! reading a startup error or a log line) must do about it. Configuration
//! errors name the component, the config key (in that component's own
//! spelling), the file and the fix.

use std::fmt;
use std::path::PathBuf;

use crate::inspect::CertInfo;
use crate::stats::Refusal;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong in the security core.
#[derive(Debug)]
pub enum Error {
    /// A `[security]` setting (or the equivalent flag) is wrong. The component
    /// must refuse to start; `Display` names the component, key, file and fix.
    Config(ConfigError),
    /// A TLS handshake with a peer failed or was refused. Only this one
    /// connection is affected.
    Handshake {
        /// The peer's address (`host:port`) as dialled or as seen on accept.
        peer: String,
        /// A readable explanation, with a fix where one is known.
        reason: String,
        /// The reason as a label, for counters and the audit log.
        refusal: Refusal,
        /// The certificate the peer presented, if the handshake got that
        /// far (for the audit log; a server-side refusal only).
        presented: Option<Box<CertInfo>>,
    },
    /// Creating a certificate failed (the `tiox cert` tool).
    CertGen(String),
    /// Files exist where new ones would be written; pass `--force` to replace.
    WouldOverwrite(Vec<PathBuf>),
    /// An I/O error outside of configuration loading (sockets).
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// A configuration problem: which component, which key, which file, what is
/// wrong and how to fix it.
#[derive(Debug, Clone)]
pub struct ConfigError {
    /// `pd-server`, `tikv-server`, `tidb-server`, `pd-ctl`, `tikv-ctl`, `tiox`.
    pub component: &'static str,
    /// The key as the operator wrote it: `[security] ca-path`, `--cacert`, ...
    pub key: String,
    /// The file concerned, if any.
    pub file: Option<PathBuf>,
    /// What is wrong, in one sentence.
    pub problem: String,
    /// What to do about it.
    pub fix: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.component, self.key)?;
        if let Some(file) = &self.file {
            write!(f, " = \"{}\"", file.display())?;
        }
        write!(f, ": {}. Fix: {}", self.problem, self.fix)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(e) => e.fmt(f),
            Error::Handshake { peer, reason, .. } => write!(f, "TLS with {peer}: {reason}"),
            Error::CertGen(msg) => write!(f, "certificate generation failed: {msg}"),
            Error::WouldOverwrite(paths) => write!(
                f,
                "refusing to overwrite existing files ({}); pass --force to replace them",
                paths
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Error::Io { context, source } => write!(f, "{context}: {source}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<ConfigError> for Error {
    fn from(e: ConfigError) -> Self {
        Error::Config(e)
    }
}

impl Error {
    /// Why a handshake was refused (`None` for other errors).
    pub fn refusal(&self) -> Option<Refusal> {
        match self {
            Error::Handshake { refusal, .. } => Some(*refusal),
            _ => None,
        }
    }

    /// The certificate a refused peer presented, if any.
    pub fn presented(&self) -> Option<&CertInfo> {
        match self {
            Error::Handshake { presented, .. } => presented.as_deref(),
            _ => None,
        }
    }

    /// The configuration error inside, if this is one (tests and tools use it
    /// to check which key and file were named).
    pub fn as_config(&self) -> Option<&ConfigError> {
        match self {
            Error::Config(e) => Some(e),
            _ => None,
        }
    }
}
