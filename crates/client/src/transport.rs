//! The seam between the clients and the stores: how a kvrpcpb request gets
//! to the store of its region, and where timestamps come from.
//!
//! ```text
//!  txn::TxnClient / raw::RawClient
//!     └► kv::KvClient::request(key, |ctx, conn| conn.kv_prewrite(req))
//!          ├─ cluster: region cache (PD) ─► gRPC / BatchCommands to the leader
//!          └─ local:   Store::locate ─► Store::call (in-process, no sockets)
//!     └► tso::TsoClient::get_ts
//!          ├─ cluster: PD's batched TSO stream
//!          └─ local:   Timestamps::next
//! ```
//!
//! The transaction protocol (Percolator, lock resolution, pessimistic
//! locks, heartbeats) is written once, in [`crate::txn`], against requests
//! and responses; only their delivery differs. An in-process [`Store`]
//! (`tiox_kv::unistore` is the one the project ships) answers with the same
//! request handlers and MVCC code a tikv-server runs, so a transaction
//! behaves the same embedded and on the cluster, down to the errors.
//!
//! The messages are the BatchCommands request/response oneofs: they name
//! every request a store serves to clients, so a store is one function.

use std::future::Future;
use std::pin::Pin;

use tiox_proto::tikvpb::batch_commands_request::request::Cmd as Req;
use tiox_proto::tikvpb::batch_commands_response::response::Cmd as Resp;

use crate::error::Result;
use crate::region_cache::RegionEntry;

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A store the client calls in-process.
pub trait Store: Send + Sync + 'static {
    /// The region holding `key` (in region key space: memcomparable-encoded
    /// for transactional keys, as-is for raw keys) and its leader.
    fn locate(&self, key: &[u8]) -> Result<RegionEntry>;

    /// Answers one request (its context names the region), or refuses it
    /// with a gRPC status as a tikv-server would.
    fn call(&self, req: Req) -> BoxFuture<'_, std::result::Result<Resp, tonic::Status>>;

    /// How errors name this store (e.g. "the embedded store at /var/lib/tidb").
    fn name(&self) -> String;
}

/// A timestamp oracle the client calls in-process. Its timestamps have
/// PD's layout (`tso::compose`: physical ms, then the logical counter), so
/// lock TTLs compare against them as on a cluster.
pub trait Timestamps: Send + Sync + 'static {
    /// A timestamp greater than every one handed out before, including
    /// before a restart.
    fn next(&self) -> Result<u64>;
}
