//! The security core of tiox: every listener and every outgoing connection
//! of every component goes through this crate.
//!
//! ```text
//!  [security] table ──► config::SecurityConfig::validate(component)
//!                              │  (all three paths or none; files checked)
//!                              ▼
//!                     config::TlsSettings ── material::MaterialSource (hot reload:
//!                        │  policy::TlsPolicy      │   CA, cert, key, CRL)
//!                        │  (min version, suites   │
//!                        │   on aws-lc-rs, PQ kx)  │
//!            server::ServerTls (accept)   client::ClientTls (connect)
//!             client cert required,        server chain + SAN + CRL checked,
//!             CN/SAN allow-lists, CRL      our certificate presented
//!                        │
//!            serve::accept_loop (every server port): handshake cap and
//!            timeout, stats::ListenerStats, audit::AuditLog
//! ```
//!
//! Invariants: a component with TLS configured never accepts or speaks
//! plaintext; a bad file at startup is an error naming the component, key,
//! file and fix; a bad file at reload keeps the previous material in service;
//! private keys are never printed.

pub mod audit;
pub mod certgen;
pub mod client;
pub mod config;
pub mod diagnose;
pub mod error;
#[cfg(feature = "http-client")]
pub mod http;
pub mod inspect;
pub mod material;
pub mod policy;
pub mod probe;
#[cfg(feature = "serve")]
pub mod serve;
pub mod server;
pub mod stats;
pub mod verify;

pub use client::ClientTls;
pub use config::{Component, SecurityConfig, TlsSettings, TlsVersion};
pub use error::{ConfigError, Error, Result};
pub use inspect::CertInfo;
pub use policy::{CipherSuites, TlsPolicy};
pub use server::{AllowListAt, ClientAuth, Negotiated, PeerIdentity, ServerTls};
pub use stats::{ListenerStats, Refusal};
