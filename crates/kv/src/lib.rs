//! The TiKV-compatible store: a storage engine behind a trait
//! (`tiox-engine`, implemented here on fjall), Percolator MVCC transactions,
//! and (as the issues land) regions driven by Raft and the `tikvpb.Tikv`
//! gRPC service.
//!
//! Data path of a transactional write:
//! `KvPrewrite` -> region (Raft propose) -> apply: [`mvcc::txn::MvccTxn`]
//! checks locks and conflicts against an engine snapshot and returns a
//! write batch -> the batch is written to the engine atomically.

pub mod codec;
pub mod command;
pub mod config;
pub mod engine_fjall;
pub mod error;
pub mod mvcc;
pub mod raftstore;
pub mod raw;
pub mod server;
pub mod storage;

pub use error::{Error, Result};
