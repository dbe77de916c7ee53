//! The placement driver (PD): cluster id, members, stores, regions, the
//! timestamp oracle and the id allocator, replicated across PD peers with Raft.
//!
//! Data path: clients and stores call PD's gRPC `pdpb.PD` service and its HTTP
//! API on one client port (mutual TLS via `tiox-security`); PD peers talk on the
//! peer port. Not yet implemented (issue 3).
