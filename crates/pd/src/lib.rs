//! The placement driver (PD): cluster id, members, stores, regions, the
//! timestamp oracle and the id allocator.
//!
//! Data path: clients and stores call PD's gRPC `pdpb.PD` service and its HTTP
//! API on one client port (mutual TLS via `tiox-security`, see [`server`]);
//! both land in the deterministic core ([`cluster::Cluster`]), which keeps
//! its state in an fsynced log ([`storage`]). The same port serves etcd's
//! v3 API ([`etcd`]), whose key space lives in the same replicated storage.
//!
//! ```text
//!   client port (TLS) ──► server::serve ─┬─ gRPC  grpc::PdService ─┐
//!                                         ├─ HTTP  http::router  ───┤
//!                                         └─ HTML  dashboard     ───┤
//!                                                                   ▼
//!                          cluster::Cluster { meta, tso, id, storage }
//!                                                                   │ writes
//!   peer port (TLS)  ◄──────────────────── replication::Replica ◄───┘ (Raft, when
//!                                            several PD members)
//! ```

pub mod client;
pub mod cluster;
pub mod config;
pub mod dashboard;
pub mod error;
pub mod etcd;
pub mod forward;
pub mod grpc;
pub mod http;
pub mod id;
pub mod meta;
pub mod metrics;
pub mod replication;
pub mod schedule;
pub mod server;
pub mod storage;
pub mod tso;

pub use error::{Error, Result};
