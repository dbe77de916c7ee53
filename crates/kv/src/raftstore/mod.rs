//! Regions driven by Raft (TiKV's `raft` crate: tick/step/Ready).
//!
//! Every write is proposed to its region's Raft group and executed when
//! applied, even with one replica, so replication adds peers rather than
//! re-plumbing. [`log::PeerStorage`] persists the log; [`peer::Peer`] wraps
//! the Raft node of one region and applies committed entries;
//! [`store::Store`] runs the loop for all regions of this store.

pub mod keys;
pub mod log;
pub mod peer;
pub mod snap;
pub mod split;
pub mod store;
pub mod transport;

#[cfg(test)]
mod cluster_tests;
