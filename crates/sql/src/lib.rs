//! The SQL layer behind `tidb-server`: the MySQL wire protocol with client
//! TLS, accounts and privileges, the SQL engine over the cluster, and an
//! interim executor for servers without one.
//!
//! ```text
//!  client ─TCP/TLS─► server (accept, TCP_NODELAY)
//!                     └► protocol (packets, handshake, auth, commands)
//!                          └► backend::Backend ◄── engine::Engine (--store=tikv)
//!                                │                  executor::Interim (no cluster)
//!                                ├► parser (sqlparser tokens + ours)
//!                                └► users::UserStore (accounts, REQUIRE)
//!  tls: the MySQL-facing certificate set (ssl-ca/ssl-cert/ssl-key)
//!  config: tidb-server's TOML file
//! ```

pub mod auth;
pub mod backend;
pub mod cluster_users;
pub mod config;
pub mod engine;
pub mod error;
pub mod executor;
pub mod parser;
pub mod protocol;
pub mod server;
pub mod status;
pub mod tls;
pub mod users;
pub mod value;

pub use backend::{Backend, Session};
pub use error::{Error, Result, SqlError};
pub use server::{serve, Settings, Shared};
