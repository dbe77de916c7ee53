//! The MySQL client/server protocol, server side, written for tiox (no
//! third-party MySQL crate: this is a security boundary we own).
//!
//! ```text
//!  TCP ─► packet (framing, seq ids, max_allowed_packet)
//!          └► conn::handshake: Handshake v10 (fresh salt) ─► [SSLRequest ─► TLS]
//!               ─► HandshakeResponse41 ─► [AuthSwitch] ─► plugin checks ─► REQUIRE
//!          └► conn::command loop: COM_QUERY / COM_STMT_* / ... ─► Backend
//!                                  resultset: OK / ERR / text & binary rows
//! ```
//!
//! Invariants: no panic and no unbounded allocation on anything a client
//! sends (all decoding goes through `codec::Reader`; pre-login packets are
//! limited to 64 KiB); any protocol violation closes that one connection
//! with a log line; plaintext never follows a successful TLS upgrade.

pub mod codec;
pub mod conn;
pub mod consts;
pub mod fuzz;
pub mod packet;
pub mod resultset;
pub mod stmt;
