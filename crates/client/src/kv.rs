//! Talking to stores: one mutually authenticated HTTP/2 channel per store
//! (tonic multiplexes concurrent requests on it), and the request driver
//! that routes by key through the region cache and retries region errors
//! with bounded, jittered backoff and a deadline on every call.

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

/// A store connection as request closures see it: the unary stub (it
/// derefs to [`TikvClient`]) and the store's read batch stream.
#[derive(Clone)]
pub struct Conn {
    stub: TikvClient<Channel>,
    batch: Arc<BatchStream>,
}

impl std::ops::Deref for Conn {
    type Target = TikvClient<Channel>;
    fn deref(&self) -> &Self::Target {
        &self.stub
    }
}

impl std::ops::DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.stub
    }
}

/// Generates a read that goes over the batch stream, or over its unary
/// RPC if the stream failed before answering.
macro_rules! batched_read {
    ($name:ident, $unary:ident, $req:ty, $resp:ty, $variant:ident) => {
        /// The read over the store's batch stream (see [`crate::batch`]).
        pub async fn $name(
            mut self,
            r: $req,
        ) -> std::result::Result<tonic::Response<$resp>, tonic::Status> {
            match self.batch.call(Req::$variant(r)).await {
                Ok(Ok(Resp::$variant(resp))) => Ok(tonic::Response::new(resp)),
                Ok(Ok(_)) => Err(tonic::Status::internal("mismatched BatchCommands response")),
                Ok(Err(status)) => Err(status),
                Err(Req::$variant(r)) => self.stub.$unary(r).await,
                Err(_) => Err(tonic::Status::internal("mismatched BatchCommands request")),
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
}

/// Connections to stores and the routing loop.
pub struct KvClient {
    cache: Arc<RegionCache>,
    tls: Option<Arc<ClientTls>>,
    conns: Mutex<HashMap<String, Conn>>,
}

impl KvClient {
    /// A client routing through `cache`.
    pub fn new(cache: Arc<RegionCache>, tls: Option<Arc<ClientTls>>) -> KvClient {
        KvClient {
            cache,
            tls,
            conns: Mutex::new(HashMap::new()),
        }
    }

    /// The region cache.
    pub fn cache(&self) -> &Arc<RegionCache> {
        &self.cache
    }

    fn stub(&self, addr: &str) -> Result<Conn> {
        let mut conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = conns.get(addr) {
            return Ok(c.clone());
        }
        let stub = TikvClient::new(channel(addr, self.tls.clone())?)
            .max_decoding_message_size(64 * 1024 * 1024)
            .max_encoding_message_size(64 * 1024 * 1024);
        let c = Conn {
            batch: Arc::new(BatchStream::new(stub.clone())),
            stub,
        };
        conns.insert(addr.to_string(), c.clone());
        Ok(c)
    }

    fn drop_conn(&self, addr: &str) {
        self.conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(addr);
    }

    /// Applies a region error to the cache; returns a description.
    fn on_region_error(&self, entry: &RegionEntry, e: &errorpb::Error) -> String {
        let id = entry.region.id;
        if let Some(nl) = &e.not_leader {
            self.cache.on_not_leader(id, nl.leader);
        } else if let Some(en) = &e.epoch_not_match {
            self.cache
                .on_epoch_not_match(id, en.current_regions.clone());
        } else if e.server_is_busy.is_some() || e.stale_command.is_some() {
            // Same region, same leader: just back off.
        } else {
            self.cache.invalidate(id);
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
            let entry = self.cache.locate(key).await?;
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
        let addr = self.cache.store_addr(leader.store_id).await?;
        let ctx = kvrpcpb::Context {
            region_id: entry.region.id,
            region_epoch: Some(entry.epoch()),
            peer: Some(leader),
            ..Default::default()
        };
        let stub = self.stub(&addr)?;
        let outcome = match tokio::time::timeout(RPC_TIMEOUT, f(ctx, stub)).await {
            Err(_) => {
                self.cache.invalidate(entry.region.id);
                // A connection (or batch stream) that went quiet is not
                // reused: the next attempt dials again.
                self.drop_conn(&addr);
                Err(format!(
                    "no answer from {addr} within {}s",
                    RPC_TIMEOUT.as_secs()
                ))
            }
            Ok(Err(status)) => match rpc_error(&addr, status) {
                Error::Unavailable { reason, .. } => {
                    self.cache.invalidate(entry.region.id);
                    self.cache.forget_store(leader.store_id);
                    self.drop_conn(&addr);
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
                    let e = self.cache.locate(&k).await?;
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
