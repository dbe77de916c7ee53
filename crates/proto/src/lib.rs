//! Wire definitions shared by every component.
//!
//! Our own `.proto` files (in `proto/`), wire-compatible with TiKV's kvproto
//! for exactly the messages and RPCs tiox implements (same packages, names
//! and field numbers), so that unmodified TiKV clients interoperate. They are
//! compiled at build time by `build.rs` with protox (pure Rust, no `protoc`)
//! into prost messages and tonic 0.14 client and server stubs.
//!
//! ```text
//!  metapb ◄── errorpb ◄── kvrpcpb ◄── raft_serverpb ◄── tikvpb
//!    ▲                                     ▲
//!    └──────── pdpb ◄── keyspacepb      eraftpb
//!
//!  mvccpb ◄── etcdserverpb     (etcd v3's API, served by PD)
//! ```

#![allow(clippy::all, missing_docs)]

/// Raft messages (entries, snapshots, conf changes).
pub mod eraftpb {
    tonic::include_proto!("eraftpb");
}

/// Cluster metadata: stores, regions, peers, epochs.
pub mod metapb {
    tonic::include_proto!("metapb");
}

/// Region errors returned by the storage nodes.
pub mod errorpb {
    tonic::include_proto!("errorpb");
}

/// KV request and response messages.
pub mod kvrpcpb {
    tonic::include_proto!("kvrpcpb");
}

/// Raft transport between storage nodes.
pub mod raft_serverpb {
    tonic::include_proto!("raft_serverpb");
}

/// The storage node's `Tikv` service.
pub mod tikvpb {
    tonic::include_proto!("tikvpb");
}

/// The placement driver's `PD` service.
pub mod pdpb {
    tonic::include_proto!("pdpb");
}

/// The placement driver's `Keyspace` service.
pub mod keyspacepb {
    tonic::include_proto!("keyspacepb");
}

/// etcd's MVCC key-value and event messages.
pub mod mvccpb {
    tonic::include_proto!("mvccpb");
}

/// etcd v3's KV, Watch, Lease, Cluster and Maintenance services (the
/// subset PD serves).
pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}
