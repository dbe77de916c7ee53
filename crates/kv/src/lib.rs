//! The TiKV-compatible store: a storage engine behind a trait
//! (`tiox-engine`, implemented here on fjall), Percolator MVCC transactions,
//! and (as the issues land) regions driven by Raft and the `tikvpb.Tikv`
//! gRPC service.
//!
//! Data path of a transactional write:
//! `KvPrewrite` -> region (Raft propose) -> apply: [`mvcc::txn::MvccTxn`]
//! checks locks and conflicts against an engine snapshot and returns a
//! write batch -> the batch is written to the engine atomically. A prewrite
//! holding every key of a transaction may commit it there and then
//! (one-phase commit, [`mvcc::concurrency`]).
//!
//! The embedded store ([`unistore`]) runs the same request layer and MVCC
//! code in-process, over one region without Raft, for `tidb-server
//! --store=unistore` and the in-process tests.

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
pub mod unistore;

pub use error::{Error, Result};
