//! Talking to stores: one mutually authenticated HTTP/2 channel per store
//! (tonic multiplexes concurrent requests on it), and the request driver
//! that routes by key through the region cache and retries region errors
//! with bounded, jittered backoff and a deadline on every call. The same
//! driver serves an in-process store ([`KvClient::local`], see
//! [`crate::transport`]): one region, no sockets, the same retries.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tiox_proto::tikvpb::batch_commands_request::request::Cmd as Req;
use tiox_proto::tikvpb::batch_commands_response::response::Cmd as Resp;
use tiox_proto::tikvpb::tikv_client::TikvClient;
use tiox_proto::{errorpb, kvrpcpb};
use tiox_security::ClientTls;
use tonic::transport::Channel;

use crate::backoff::Backoff;
use crate::batch::BatchStream;
use crate::channel::{channel, rpc_error};
use crate::error::{Error, Result};
use crate::region_cache::{RegionCache, RegionEntry};
use crate::transport::Store;

/// Deadline of one store RPC.
pub const RPC_TIMEOUT: Duration = Duration::from_secs(10);

/// A store response that may carry a region error.
pub trait RegionResponse {
    /// Takes the region error out, if any.
    fn take_region_error(&mut self) -> Option<errorpb::Error>;
}

/// A response paired with request context (e.g. the keys it answers).
impl<T, R: RegionResponse> RegionResponse for (T, R) {
    fn take_region_error(&mut self) -> Option<errorpb::Error> {
        self.1.take_region_error()
    }
}

macro_rules! region_response {
    ($($t:ty),* $(,)?) => {
        $(impl RegionResponse for $t {
            fn take_region_error(&mut self) -> Option<errorpb::Error> {
                self.region_error.take()
            }
        })*
    };
}

region_response!(
    kvrpcpb::SplitRegionResponse,
    kvrpcpb::GetResponse,
    kvrpcpb::ScanResponse,
    kvrpcpb::BatchGetResponse,
    kvrpcpb::PrewriteResponse,
    kvrpcpb::CommitResponse,
    kvrpcpb::BatchRollbackResponse,
    kvrpcpb::CleanupResponse,
    kvrpcpb::CheckTxnStatusResponse,
    kvrpcpb::ResolveLockResponse,
    kvrpcpb::PessimisticLockResponse,
    kvrpcpb::PessimisticRollbackResponse,
    kvrpcpb::TxnHeartBeatResponse,
    kvrpcpb::RawGetResponse,
    kvrpcpb::RawBatchGetResponse,
    kvrpcpb::RawPutResponse,
    kvrpcpb::RawBatchPutResponse,
    kvrpcpb::RawDeleteResponse,
    kvrpcpb::RawBatchDeleteResponse,
    kvrpcpb::RawScanResponse,
    kvrpcpb::RawDeleteRangeResponse,
    kvrpcpb::RawCasResponse,
    kvrpcpb::GcResponse,
);

/// Items routed to one region.
pub type Group<T> = (RegionEntry, Vec<(Vec<u8>, T)>);

/// A store connection as request closures see it: one method per store
/// RPC, delivered over gRPC (reads over the store's batch stream) or, for
/// an in-process store, by a direct call (see [`crate::transport`]).
#[derive(Clone)]
pub struct Conn(Link);

#[derive(Clone)]
enum Link {
    Grpc {
        stub: TikvClient<Channel>,
        batch: Arc<BatchStream>,
    },
    Local(Arc<dyn Store>),
}

/// An in-process store's answer to `Req::$variant`, as a gRPC response.
macro_rules! local_call {
    ($store:expr, $variant:ident, $r:expr) => {
        match $store.call(Req::$variant($r)).await {
            Ok(Resp::$variant(resp)) => Ok(tonic::Response::new(resp)),
            Ok(_) => Err(tonic::Status::internal(format!(
                "{} answered {} with another response",
                $store.name(),
                stringify!($variant)
            ))),
            Err(status) => Err(status),
        }
    };
}

/// Generates a read that goes over the batch stream, or over its unary
/// RPC if the stream failed before answering.
macro_rules! batched_read {
    ($name:ident, $unary:ident, $req:ty, $resp:ty, $variant:ident) => {
        /// The read over the store's batch stream (see [`crate::batch`]).
        pub async fn $name(
            self,
            r: $req,
        ) -> std::result::Result<tonic::Response<$resp>, tonic::Status> {
            match self.0 {
                Link::Grpc { mut stub, batch } => match batch.call(Req::$variant(r)).await {
                    Ok(Ok(Resp::$variant(resp))) => Ok(tonic::Response::new(resp)),
                    Ok(Ok(_)) => Err(tonic::Status::internal("mismatched BatchCommands response")),
                    Ok(Err(status)) => Err(status),
                    Err(Req::$variant(r)) => stub.$unary(r).await,
                    Err(_) => Err(tonic::Status::internal("mismatched BatchCommands request")),
                },
                Link::Local(store) => local_call!(store, $variant, r),
            }
        }
    };
}

/// Generates a unary RPC: over gRPC, or for an in-process store as the
/// BatchCommands variant named, or refused when marked `cluster_only`
/// (region splits, raw compare-and-swap: not part of an in-process
/// store's interface).
macro_rules! unary {
    ($name:ident, $req:ty, $resp:ty, cluster_only) => {
        unary!(@rpc $name, $req, $resp, |store, _r| Err(tonic::Status::unimplemented(format!(
            "{} does not serve {}",
            store.name(),
            stringify!($name)
        ))));
    };
    ($name:ident, $req:ty, $resp:ty, $variant:ident) => {
        unary!(@rpc $name, $req, $resp, |store, r| local_call!(store, $variant, r));
    };
    (@rpc $name:ident, $req:ty, $resp:ty, |$store:ident, $r:ident| $local:expr) => {
        /// The RPC of the same name.
        pub async fn $name(
            &mut self,
            $r: $req,
        ) -> std::result::Result<tonic::Response<$resp>, tonic::Status> {
            match &mut self.0 {
                Link::Grpc { stub, .. } => stub.$name($r).await,
                Link::Local($store) => $local,
            }
        }
    };
}

impl Conn {
    batched_read!(get, kv_get, kvrpcpb::GetRequest, kvrpcpb::GetResponse, Get);
    batched_read!(
        batch_get,
        kv_batch_get,
        kvrpcpb::BatchGetRequest,
        kvrpcpb::BatchGetResponse,
        BatchGet
    );
    batched_read!(
        scan,
        kv_scan,
        kvrpcpb::ScanRequest,
        kvrpcpb::ScanResponse,
        Scan
    );
    unary!(
        kv_prewrite,
        kvrpcpb::PrewriteRequest,
        kvrpcpb::PrewriteResponse,
        Prewrite
    );
    unary!(
        kv_commit,
        kvrpcpb::CommitRequest,
        kvrpcpb::CommitResponse,
        Commit
    );
    unary!(
        kv_batch_rollback,
        kvrpcpb::BatchRollbackRequest,
        kvrpcpb::BatchRollbackResponse,
        BatchRollback
    );
    unary!(
        kv_cleanup,
        kvrpcpb::CleanupRequest,
        kvrpcpb::CleanupResponse,
        Cleanup
    );
    unary!(
        kv_check_txn_status,
        kvrpcpb::CheckTxnStatusRequest,
        kvrpcpb::CheckTxnStatusResponse,
        CheckTxnStatus
    );
    unary!(
        kv_check_secondary_locks,
        kvrpcpb::CheckSecondaryLocksRequest,
        kvrpcpb::CheckSecondaryLocksResponse,
        CheckSecondaryLocks
    );
    unary!(
        kv_resolve_lock,
        kvrpcpb::ResolveLockRequest,
        kvrpcpb::ResolveLockResponse,
        ResolveLock
    );
    unary!(
        kv_txn_heart_beat,
        kvrpcpb::TxnHeartBeatRequest,
        kvrpcpb::TxnHeartBeatResponse,
        TxnHeartBeat
    );
    unary!(
        kv_pessimistic_lock,
        kvrpcpb::PessimisticLockRequest,
        kvrpcpb::PessimisticLockResponse,
        PessimisticLock
    );
    unary!(
        kv_pessimistic_rollback,
        kvrpcpb::PessimisticRollbackRequest,
        kvrpcpb::PessimisticRollbackResponse,
        PessimisticRollback
    );
    unary!(kv_gc, kvrpcpb::GcRequest, kvrpcpb::GcResponse, Gc);
    unary!(
        kv_scan_lock,
        kvrpcpb::ScanLockRequest,
        kvrpcpb::ScanLockResponse,
        ScanLock
    );
    unary!(
        raw_get,
        kvrpcpb::RawGetRequest,
        kvrpcpb::RawGetResponse,
        RawGet
    );
    unary!(
        raw_batch_get,
        kvrpcpb::RawBatchGetRequest,
        kvrpcpb::RawBatchGetResponse,
        RawBatchGet
    );
    unary!(
        raw_put,
        kvrpcpb::RawPutRequest,
        kvrpcpb::RawPutResponse,
        RawPut
    );
    unary!(
        raw_batch_put,
        kvrpcpb::RawBatchPutRequest,
        kvrpcpb::RawBatchPutResponse,
        RawBatchPut
    );
    unary!(
        raw_delete,
        kvrpcpb::RawDeleteRequest,
        kvrpcpb::RawDeleteResponse,
        RawDelete
    );
    unary!(
        raw_batch_delete,
        kvrpcpb::RawBatchDeleteRequest,
        kvrpcpb::RawBatchDeleteResponse,
        RawBatchDelete
    );
    unary!(
        raw_scan,
        kvrpcpb::RawScanRequest,
        kvrpcpb::RawScanResponse,
        RawScan
    );
    unary!(
        raw_delete_range,
        kvrpcpb::RawDeleteRangeRequest,
        kvrpcpb::RawDeleteRangeResponse,
        RawDeleteRange
    );
    unary!(
        raw_compare_and_swap,
        kvrpcpb::RawCasRequest,
        kvrpcpb::RawCasResponse,
        cluster_only
    );
    unary!(
        split_region,
        kvrpcpb::SplitRegionRequest,
        kvrpcpb::SplitRegionResponse,
        cluster_only
    );
}

/// How the client reaches stores.
enum Route {
    /// Stores of a cluster, found through the region cache (PD).
    Cluster {
        cache: Arc<RegionCache>,
        tls: Option<Arc<ClientTls>>,
        conns: Mutex<HashMap<String, Conn>>,
    },
    /// One in-process store.
    Local(Arc<dyn Store>),
}

/// Connections to stores and the routing loop.
pub struct KvClient {
    route: Route,
}

impl KvClient {
    /// A client routing through `cache`.
    pub fn new(cache: Arc<RegionCache>, tls: Option<Arc<ClientTls>>) -> KvClient {
        KvClient {
            route: Route::Cluster {
                cache,
                tls,
                conns: Mutex::new(HashMap::new()),
            },
        }
    }

    /// A client of one in-process store (see [`crate::transport`]).
    pub fn local(store: Arc<dyn Store>) -> KvClient {
        KvClient {
            route: Route::Local(store),
        }
    }

    /// The region cache (None for an in-process store).
    pub fn cache(&self) -> Option<&Arc<RegionCache>> {
        match &self.route {
            Route::Cluster { cache, .. } => Some(cache),
            Route::Local(_) => None,
        }
    }

    /// The region holding `key` (in region key space).
    pub async fn locate(&self, key: &[u8]) -> Result<RegionEntry> {
        match &self.route {
            Route::Cluster { cache, .. } => cache.locate(key).await,
            Route::Local(store) => store.locate(key),
        }
    }

    fn stub(
        conns: &Mutex<HashMap<String, Conn>>,
        tls: &Option<Arc<ClientTls>>,
        addr: &str,
    ) -> Result<Conn> {
        let mut conns = conns.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = conns.get(addr) {
            return Ok(c.clone());
        }
        let stub = TikvClient::new(channel(addr, tls.clone())?)
            .max_decoding_message_size(64 * 1024 * 1024)
            .max_encoding_message_size(64 * 1024 * 1024);
        let c = Conn(Link::Grpc {
            batch: Arc::new(BatchStream::new(stub.clone())),
            stub,
        });
        conns.insert(addr.to_string(), c.clone());
        Ok(c)
    }

    /// Applies a region error to the cache; returns a description.
    fn on_region_error(&self, entry: &RegionEntry, e: &errorpb::Error) -> String {
        let id = entry.region.id;
        if let Route::Cluster { cache, .. } = &self.route {
            if let Some(nl) = &e.not_leader {
                cache.on_not_leader(id, nl.leader);
            } else if let Some(en) = &e.epoch_not_match {
                cache.on_epoch_not_match(id, en.current_regions.clone());
            } else if e.server_is_busy.is_some() || e.stale_command.is_some() {
                // Same region, same leader: just back off.
            } else {
                cache.invalidate(id);
            }
        }
        format!("region {id}: {}", e.message)
    }

    /// Sends a request for the region holding `key` (in region key space),
    /// retrying region errors and unreachable stores.
    pub async fn request<R, F, Fut>(&self, key: &[u8], f: F) -> Result<(RegionEntry, R)>
    where
        R: RegionResponse,
        F: Fn(kvrpcpb::Context, Conn) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<R>, tonic::Status>>,
    {
        let mut backoff = Backoff::region();
        loop {
            let entry = self.locate(key).await?;
            let (outcome, addr) = self.attempt(&entry, &f).await?;
            let last = match outcome {
                Ok(r) => return Ok((entry, r)),
                Err(last) => last,
            };
            if !backoff.wait().await {
                return Err(Error::Unavailable {
                    addr,
                    reason: format!("gave up after {} attempts: {last}", backoff.attempts()),
                });
            }
        }
    }

    /// One attempt against `entry`: the response, or (after updating the
    /// cache) a description of the retryable failure.
    async fn attempt<R, F, Fut>(
        &self,
        entry: &RegionEntry,
        f: &F,
    ) -> Result<(std::result::Result<R, String>, String)>
    where
        R: RegionResponse,
        F: Fn(kvrpcpb::Context, Conn) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<R>, tonic::Status>>,
    {
        let leader = entry
            .leader
            .or_else(|| entry.region.peers.first().cloned())
            .ok_or_else(|| Error::Pd(format!("region {} has no peers", entry.region.id)))?;
        let (addr, conn) = match &self.route {
            Route::Cluster { cache, tls, conns } => {
                let addr = cache.store_addr(leader.store_id).await?;
                let conn = Self::stub(conns, tls, &addr)?;
                (addr, conn)
            }
            Route::Local(store) => (store.name(), Conn(Link::Local(store.clone()))),
        };
        let ctx = kvrpcpb::Context {
            region_id: entry.region.id,
            region_epoch: Some(entry.epoch()),
            peer: Some(leader),
            ..Default::default()
        };
        let outcome = match tokio::time::timeout(RPC_TIMEOUT, f(ctx, conn)).await {
            Err(_) => {
                if let Route::Cluster { cache, conns, .. } = &self.route {
                    cache.invalidate(entry.region.id);
                    // A connection (or batch stream) that went quiet is not
                    // reused: the next attempt dials again.
                    drop_conn(conns, &addr);
                }
                Err(format!(
                    "no answer from {addr} within {}s",
                    RPC_TIMEOUT.as_secs()
                ))
            }
            Ok(Err(status)) => match rpc_error(&addr, status) {
                Error::Unavailable { reason, .. } => {
                    if let Route::Cluster { cache, conns, .. } = &self.route {
                        cache.invalidate(entry.region.id);
                        cache.forget_store(leader.store_id);
                        drop_conn(conns, &addr);
                    }
                    Err(reason)
                }
                other => return Err(other),
            },
            Ok(Ok(resp)) => {
                let mut r = resp.into_inner();
                match r.take_region_error() {
                    None => Ok(r),
                    Some(e) => Err(self.on_region_error(entry, &e)),
                }
            }
        };
        Ok((outcome, addr))
    }

    /// Groups `keys` (in region key space, as pairs with their payload) by
    /// region.
    pub async fn group<T>(
        &self,
        items: Vec<(Vec<u8>, T)>,
    ) -> Result<Vec<(RegionEntry, Vec<(Vec<u8>, T)>)>> {
        let mut items = items;
        items.sort_by(|a, b| a.0.cmp(&b.0));
        let mut groups: Vec<Group<T>> = Vec::new();
        for (k, v) in items {
            match groups.last_mut() {
                Some((e, g)) if e.contains(&k) => g.push((k, v)),
                _ => {
                    let e = self.locate(&k).await?;
                    groups.push((e, vec![(k, v)]));
                }
            }
        }
        Ok(groups)
    }

    /// Sends one request per region for `items`, concurrently; a region
    /// error re-groups that region's items and retries them.
    pub async fn request_batch<T, R, F, Fut>(
        &self,
        items: Vec<(Vec<u8>, T)>,
        f: F,
    ) -> Result<Vec<R>>
    where
        T: Clone,
        R: RegionResponse,
        F: Fn(kvrpcpb::Context, Conn, Vec<(Vec<u8>, T)>) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<R>, tonic::Status>>,
    {
        let mut pending = items;
        let mut out = Vec::new();
        let mut backoff = Backoff::region();
        loop {
            let groups = self.group(pending).await?;
            let attempts = groups.iter().map(|(entry, g)| {
                let g = g.clone();
                let f = &f;
                async move {
                    self.attempt(entry, &|ctx, stub| f(ctx, stub, g.clone()))
                        .await
                }
            });
            let results = futures::future::join_all(attempts).await;
            pending = Vec::new();
            let mut last = String::new();
            let mut addr = String::new();
            for ((_, g), r) in groups.into_iter().zip(results) {
                let (outcome, a) = r?;
                match outcome {
                    Ok(resp) => out.push(resp),
                    Err(reason) => {
                        last = reason;
                        addr = a;
                        pending.extend(g);
                    }
                }
            }
            if pending.is_empty() {
                return Ok(out);
            }
            if !backoff.wait().await {
                return Err(Error::Unavailable {
                    addr,
                    reason: format!("gave up after {} attempts: {last}", backoff.attempts()),
                });
            }
        }
    }
}

fn drop_conn(conns: &Mutex<HashMap<String, Conn>>, addr: &str) {
    conns.lock().unwrap_or_else(|p| p.into_inner()).remove(addr);
}
