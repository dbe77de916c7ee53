//! The TiKV-compatible store: a storage engine behind a trait, regions driven
//! by Raft, Percolator MVCC transactions, and the `tikvpb.Tikv` gRPC service.
//!
//! Not yet implemented (issues 4 and 5).
