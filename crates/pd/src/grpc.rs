//! The `pdpb.PD` gRPC service: decodes requests, checks the header's
//! cluster id, calls the core ([`crate::cluster::Cluster`]) and encodes the
//! answer. Every response carries a header with the cluster id; failures
//! are reported in that header with kvproto's `pdpb::Error` types (the
//! stream stays open), never as a panic.

use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use tiox_proto::pdpb::{self, pd_server::Pd};
use tonic::{Request, Response, Status, Streaming};

use crate::error::Error;
use crate::server::{now_ms, State};

/// The gRPC service; cheap to clone.
#[derive(Clone, Debug)]
pub struct PdService {
    state: Arc<State>,
}

impl PdService {
    /// A service over the shared state.
    pub fn new(state: Arc<State>) -> PdService {
        PdService { state }
    }
}

/// Responses that carry a `ResponseHeader`.
pub trait HasHeader {
    /// Sets the header.
    fn set_header(&mut self, header: pdpb::ResponseHeader);
}

macro_rules! has_header {
    ($($t:ident),* $(,)?) => {
        $(impl HasHeader for pdpb::$t {
            fn set_header(&mut self, header: pdpb::ResponseHeader) {
                self.header = Some(header);
            }
        })*
    };
}

has_header!(
    GetMembersResponse,
    TsoResponse,
    BootstrapResponse,
    IsBootstrappedResponse,
    AllocIdResponse,
    GetStoreResponse,
    PutStoreResponse,
    GetAllStoresResponse,
    StoreHeartbeatResponse,
    RegionHeartbeatResponse,
    GetRegionResponse,
    ScanRegionsResponse,
    AskBatchSplitResponse,
    ReportBatchSplitResponse,
    GetClusterConfigResponse,
    PutClusterConfigResponse,
    GetGcSafePointResponse,
    UpdateGcSafePointResponse,
    UpdateServiceGcSafePointResponse,
);

/// The kvproto error type for one of our errors.
pub fn error_type(e: &Error) -> pdpb::ErrorType {
    use pdpb::ErrorType as T;
    match e {
        Error::NotBootstrapped => T::NotBootstrapped,
        Error::AlreadyBootstrapped => T::AlreadyBootstrapped,
        Error::StoreTombstone(_) => T::StoreTombstone,
        Error::RegionNotFound(_) => T::RegionNotFound,
        Error::InvalidValue(_) => T::InvalidValue,
        Error::DuplicatedEntry(_) => T::DuplicatedEntry,
        Error::StoreNotFound(_)
        | Error::ClusterIdMismatch { .. }
        | Error::StaleRegion { .. }
        | Error::Storage { .. }
        | Error::Corrupt(_)
        | Error::Listen { .. }
        | Error::Tls(_)
        | Error::NotLeader { .. } => T::Unknown,
    }
}

impl State {
    fn header(&self, error: Option<&Error>) -> pdpb::ResponseHeader {
        pdpb::ResponseHeader {
            cluster_id: self.cluster_id,
            error: error.map(|e| pdpb::Error {
                r#type: error_type(e) as i32,
                message: e.to_string(),
            }),
        }
    }

    fn check(&self, header: &Option<pdpb::RequestHeader>) -> Result<(), Error> {
        let theirs = header.as_ref().map_or(0, |h| h.cluster_id);
        if theirs != 0 && theirs != self.cluster_id {
            return Err(Error::ClusterIdMismatch {
                ours: self.cluster_id,
                theirs,
            });
        }
        Ok(())
    }

    fn reply<T: HasHeader + Default>(&self, r: Result<T, Error>) -> T {
        match r {
            Ok(mut resp) => {
                resp.set_header(self.header(None));
                resp
            }
            Err(e) => {
                if matches!(e, Error::Storage { .. } | Error::Corrupt(_)) {
                    tracing::error!("PD storage failure: {e}");
                }
                let mut resp = T::default();
                resp.set_header(self.header(Some(&e)));
                resp
            }
        }
    }

    /// One TSO request, as the stream handler and the benchmarks use it.
    pub fn tso_once(&self, req: &pdpb::TsoRequest) -> pdpb::TsoResponse {
        self.metrics.tso_requests.fetch_add(1, Ordering::Relaxed);
        let r = self.check(&req.header).and_then(|_| {
            let ts = self.cluster()?.tso(now_ms(), req.count)?;
            self.metrics
                .tso_timestamps
                .fetch_add(u64::from(req.count), Ordering::Relaxed);
            Ok(pdpb::TsoResponse {
                header: None,
                count: req.count,
                timestamp: Some(pdpb::Timestamp {
                    physical: i64::try_from(ts.physical).unwrap_or(i64::MAX),
                    logical: i64::try_from(ts.logical).unwrap_or(i64::MAX),
                    suffix_bits: 0,
                }),
            })
        });
        self.reply(r)
    }
}

fn missing(field: &str) -> Error {
    Error::InvalidValue(format!("{field} is missing"))
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl Pd for PdService {
    async fn get_members(
        &self,
        req: Request<pdpb::GetMembersRequest>,
    ) -> Result<Response<pdpb::GetMembersResponse>, Status> {
        let s = &self.state;
        s.metrics.grpc("GetMembers");
        let r = s.check(&req.get_ref().header).and_then(|_| {
            let (members, leader) = s.members_view();
            let leader = leader.ok_or(Error::NotLeader { leader: None })?;
            Ok(pdpb::GetMembersResponse {
                header: None,
                members,
                leader: Some(leader.clone()),
                etcd_leader: Some(leader),
            })
        });
        Ok(Response::new(s.reply(r)))
    }

    type TsoStream = BoxStream<pdpb::TsoResponse>;

    async fn tso(
        &self,
        req: Request<Streaming<pdpb::TsoRequest>>,
    ) -> Result<Response<Self::TsoStream>, Status> {
        self.state.metrics.grpc("Tso");
        let state = self.state.clone();
        let out = req
            .into_inner()
            .map(move |r| r.map(|req| state.tso_once(&req)));
        Ok(Response::new(Box::pin(out)))
    }

    async fn bootstrap(
        &self,
        req: Request<pdpb::BootstrapRequest>,
    ) -> Result<Response<pdpb::BootstrapResponse>, Status> {
        let s = &self.state;
        s.metrics.grpc("Bootstrap");
        let req = req.into_inner();
        let r = s.check(&req.header).and_then(|_| {
            if s.cluster()?.meta.bootstrapped {
                return Err(Error::AlreadyBootstrapped);
            }
            let store = req.store.ok_or_else(|| missing("BootstrapRequest.store"))?;
            let region = req
                .region
                .ok_or_else(|| missing("BootstrapRequest.region"))?;
            s.cluster()?.bootstrap(store, region)?;
            tracing::info!(cluster_id = s.cluster_id, "cluster bootstrapped");
            Ok(pdpb::BootstrapResponse::default())
        });
        Ok(Response::new(s.reply(r)))
    }

    async fn is_bootstrapped(
        &self,
        req: Request<pdpb::IsBootstrappedRequest>,
    ) -> Result<Response<pdpb::IsBootstrappedResponse>, Status> {
        let s = &self.state;
        s.metrics.grpc("IsBootstrapped");
        let r = s.check(&req.get_ref().header).and_then(|_| {
            Ok(pdpb::IsBootstrappedResponse {
                header: None,
                bootstrapped: s.cluster()?.meta.bootstrapped,
            })
        });
        Ok(Response::new(s.reply(r)))
    }

    async fn alloc_id(
        &self,
        req: Request<pdpb::AllocIdRequest>,
    ) -> Result<Response<pdpb::AllocIdResponse>, Status> {
        let s = &self.state;
        s.metrics.grpc("AllocID");
        let r = s.check(&req.get_ref().header).and_then(|_| {
            Ok(pdpb::AllocIdResponse {
                header: None,
                id: s.cluster()?.alloc_id()?,
            })
        });
        Ok(Response::new(s.reply(r)))
    }

    async fn get_store(
        &self,
        req: Request<pdpb::GetStoreRequest>,
    ) -> Result<Response<pdpb::GetStoreResponse>, Status> {
        let s = &self.state;
        s.metrics.grpc("GetStore");
        let req = req.into_inner();
        let r = s.check(&req.header).and_then(|_| {
            let c = s.cluster()?;
            let info = c.meta.store(req.store_id)?;
            Ok(pdpb::GetStoreResponse {
                header: None,
                store: Some(info.store.clone()),
                stats: info.stats,
            })
        });
        Ok(Response::new(s.reply(r)))
    }

    async fn put_store(
        &self,
        req: Request<pdpb::PutStoreRequest>,
    ) -> Result<Response<pdpb::PutStoreResponse>, Status> {
        let s = &self.state;
        s.metrics.grpc("PutStore");
        let req = req.into_inner();
        let r = s.check(&req.header).and_then(|_| {
            let store = req.store.ok_or_else(|| missing("PutStoreRequest.store"))?;
            s.cluster()?.put_store(store)?;
            Ok(pdpb::PutStoreResponse::default())
        });
        Ok(Response::new(s.reply(r)))
    }

    async fn get_all_stores(
        &self,
        req: Request<pdpb::GetAllStoresRequest>,
    ) -> Result<Response<pdpb::GetAllStoresResponse>, Status> {
        let s = &self.state;
        s.metrics.grpc("GetAllStores");
        let req = req.into_inner();
        let r = s.check(&req.header).and_then(|_| {
            let c = s.cluster()?;
            let stores = c
                .meta
                .stores()
                .filter(|i| {
                    !(req.exclude_tombstone_stores
                        && i.store.state == tiox_proto::metapb::StoreState::Tombstone as i32)
                })
                .map(|i| i.store.clone())
                .collect();
            Ok(pdpb::GetAllStoresResponse {
                header: None,
                stores,
            })
        });
        Ok(Response::new(s.reply(r)))
    }

    async fn store_heartbeat(
        &self,
        req: Request<pdpb::StoreHeartbeatRequest>,
    ) -> Result<Response<pdpb::StoreHeartbeatResponse>, Status> {
        let s = &self.state;
        s.metrics.grpc("StoreHeartbeat");
        let req = req.into_inner();
        let r = s.check(&req.header).and_then(|_| {
            let stats = req
                .stats
                .ok_or_else(|| missing("StoreHeartbeatRequest.stats"))?;
            s.cluster()?.store_heartbeat(stats, now_ms())?;
            Ok(pdpb::StoreHeartbeatResponse {
                header: None,
                cluster_version: crate::server::VERSION.to_string(),
            })
        });
        Ok(Response::new(s.reply(r)))
    }

    type RegionHeartbeatStream = BoxStream<pdpb::RegionHeartbeatResponse>;

    async fn region_heartbeat(
        &self,
        req: Request<Streaming<pdpb::RegionHeartbeatRequest>>,
    ) -> Result<Response<Self::RegionHeartbeatStream>, Status> {
        self.state.metrics.grpc("RegionHeartbeat");
        let state = self.state.clone();
        let out = req.into_inner().filter_map(move |r| {
            let out = match r {
                Err(status) => Some(Err(status)),
                Ok(req) => {
                    let region_id = req.region.as_ref().map_or(0, |r| r.id);
                    match state
                        .check(&req.header)
                        .and_then(|_| state.cluster()?.region_heartbeat(&req, now_ms()))
                    {
                        Ok(None) => None,
                        Ok(Some(resp)) => Some(Ok(state.reply(Ok(resp)))),
                        Err(e) => {
                            tracing::debug!(region_id, "region heartbeat refused: {e}");
                            let mut resp: pdpb::RegionHeartbeatResponse = state.reply(Err(e));
                            resp.region_id = region_id;
                            Some(Ok(resp))
                        }
                    }
                }
            };
            futures::future::ready(out)
        });
        Ok(Response::new(Box::pin(out)))
    }

    async fn get_region(
        &self,
        req: Request<pdpb::GetRegionRequest>,
    ) -> Result<Response<pdpb::GetRegionResponse>, Status> {
        let s = &self.state;
        s.metrics.grpc("GetRegion");
        let req = req.into_inner();
        let r = s.check(&req.header).and_then(|_| {
            Ok(region_response(
                s.cluster()?.meta.region_by_key(&req.region_key),
            ))
        });
        Ok(Response::new(s.reply(r)))
    }

    async fn get_prev_region(
        &self,
        req: Request<pdpb::GetRegionRequest>,
    ) -> Result<Response<pdpb::GetRegionResponse>, Status> {
        let s = &self.state;
        s.metrics.grpc("GetPrevRegion");
        let req = req.into_inner();
        let r = s.check(&req.header).and_then(|_| {
            Ok(region_response(
                s.cluster()?.meta.prev_region(&req.region_key),
            ))
        });
        Ok(Response::new(s.reply(r)))
    }

    async fn get_region_by_id(
        &self,
        req: Request<pdpb::GetRegionByIdRequest>,
    ) -> Result<Response<pdpb::GetRegionResponse>, Status> {
        let s = &self.state;
        s.metrics.grpc("GetRegionByID");
        let req = req.into_inner();
        let r = s
            .check(&req.header)
            .and_then(|_| Ok(region_response(s.cluster()?.meta.region(req.region_id))));
        Ok(Response::new(s.reply(r)))
    }

    async fn scan_regions(
        &self,
        req: Request<pdpb::ScanRegionsRequest>,
    ) -> Result<Response<pdpb::ScanRegionsResponse>, Status> {
        let s = &self.state;
        s.metrics.grpc("ScanRegions");
        let req = req.into_inner();
        let r = s.check(&req.header).and_then(|_| {
            let c = s.cluster()?;
            let limit = usize::try_from(req.limit.max(0)).unwrap_or(0);
            let found = c.meta.scan_regions(&req.start_key, &req.end_key, limit);
            let mut resp = pdpb::ScanRegionsResponse::default();
            for r in found {
                resp.region_metas.push(r.region.clone());
                resp.leaders.push(r.leader.unwrap_or_default());
                resp.regions.push(pdpb::Region {
                    region: Some(r.region.clone()),
                    leader: r.leader,
                    down_peers: r.down_peers.clone(),
                    pending_peers: r.pending_peers.clone(),
                });
            }
            Ok(resp)
        });
        Ok(Response::new(s.reply(r)))
    }

    async fn ask_batch_split(
        &self,
        req: Request<pdpb::AskBatchSplitRequest>,
    ) -> Result<Response<pdpb::AskBatchSplitResponse>, Status> {
        let s = &self.state;
        s.metrics.grpc("AskBatchSplit");
        let req = req.into_inner();
        let r = s.check(&req.header).and_then(|_| {
            let region = req
                .region
                .ok_or_else(|| missing("AskBatchSplitRequest.region"))?;
            let ids = s.cluster()?.ask_batch_split(&region, req.split_count)?;
            Ok(pdpb::AskBatchSplitResponse { header: None, ids })
        });
        Ok(Response::new(s.reply(r)))
    }

    async fn report_batch_split(
        &self,
        req: Request<pdpb::ReportBatchSplitRequest>,
    ) -> Result<Response<pdpb::ReportBatchSplitResponse>, Status> {
        let s = &self.state;
        s.metrics.grpc("ReportBatchSplit");
        let req = req.into_inner();
        let r = s.check(&req.header).and_then(|_| {
            s.cluster()?.report_batch_split(req.regions)?;
            Ok(pdpb::ReportBatchSplitResponse::default())
        });
        Ok(Response::new(s.reply(r)))
    }

    async fn get_cluster_config(
        &self,
        req: Request<pdpb::GetClusterConfigRequest>,
    ) -> Result<Response<pdpb::GetClusterConfigResponse>, Status> {
        let s = &self.state;
        s.metrics.grpc("GetClusterConfig");
        let r = s.check(&req.get_ref().header).and_then(|_| {
            Ok(pdpb::GetClusterConfigResponse {
                header: None,
                cluster: Some(s.cluster()?.meta.cluster),
            })
        });
        Ok(Response::new(s.reply(r)))
    }

    async fn put_cluster_config(
        &self,
        req: Request<pdpb::PutClusterConfigRequest>,
    ) -> Result<Response<pdpb::PutClusterConfigResponse>, Status> {
        let s = &self.state;
        s.metrics.grpc("PutClusterConfig");
        let req = req.into_inner();
        let r = s.check(&req.header).and_then(|_| {
            let cluster = req
                .cluster
                .ok_or_else(|| missing("PutClusterConfigRequest.cluster"))?;
            s.cluster()?.put_cluster_config(cluster)?;
            Ok(pdpb::PutClusterConfigResponse::default())
        });
        Ok(Response::new(s.reply(r)))
    }

    async fn get_gc_safe_point(
        &self,
        req: Request<pdpb::GetGcSafePointRequest>,
    ) -> Result<Response<pdpb::GetGcSafePointResponse>, Status> {
        let s = &self.state;
        s.metrics.grpc("GetGCSafePoint");
        let r = s.check(&req.get_ref().header).and_then(|_| {
            Ok(pdpb::GetGcSafePointResponse {
                header: None,
                safe_point: s.cluster()?.meta.gc_safe_point(),
            })
        });
        Ok(Response::new(s.reply(r)))
    }

    async fn update_gc_safe_point(
        &self,
        req: Request<pdpb::UpdateGcSafePointRequest>,
    ) -> Result<Response<pdpb::UpdateGcSafePointResponse>, Status> {
        let s = &self.state;
        s.metrics.grpc("UpdateGCSafePoint");
        let req = req.into_inner();
        let r = s.check(&req.header).and_then(|_| {
            Ok(pdpb::UpdateGcSafePointResponse {
                header: None,
                new_safe_point: s.cluster()?.update_gc_safe_point(req.safe_point)?,
            })
        });
        Ok(Response::new(s.reply(r)))
    }

    async fn update_service_gc_safe_point(
        &self,
        req: Request<pdpb::UpdateServiceGcSafePointRequest>,
    ) -> Result<Response<pdpb::UpdateServiceGcSafePointResponse>, Status> {
        let s = &self.state;
        s.metrics.grpc("UpdateServiceGCSafePoint");
        let req = req.into_inner();
        let r = s.check(&req.header).and_then(|_| {
            let min = s.cluster()?.update_service_safe_point(
                &req.service_id,
                req.ttl,
                req.safe_point,
                now_ms(),
            )?;
            Ok(pdpb::UpdateServiceGcSafePointResponse {
                header: None,
                service_id: req.service_id,
                ttl: req.ttl,
                min_safe_point: min,
            })
        });
        Ok(Response::new(s.reply(r)))
    }
}

fn region_response(found: Option<&crate::meta::RegionInfo>) -> pdpb::GetRegionResponse {
    match found {
        None => pdpb::GetRegionResponse::default(),
        Some(r) => pdpb::GetRegionResponse {
            header: None,
            region: Some(r.region.clone()),
            leader: r.leader,
            down_peers: r.down_peers.clone(),
            pending_peers: r.pending_peers.clone(),
        },
    }
}
