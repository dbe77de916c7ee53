//! etcd's `Lease` service. Grant and Revoke are replicated writes;
//! keep-alives only move the leader's in-memory deadline (etcd's lessor
//! does the same), which is why a new leader starts every TTL over.

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use tiox_proto::etcdserverpb::{self as pb, lease_server::Lease};
use tonic::{Request, Response, Status, Streaming};

use crate::server::{now_ms, State};

/// The Lease service.
#[derive(Clone, Debug)]
pub struct LeaseService {
    state: Arc<State>,
}

impl LeaseService {
    /// A service over the shared state.
    pub fn new(state: Arc<State>) -> LeaseService {
        LeaseService { state }
    }
}

type KeepAliveStream =
    Pin<Box<dyn Stream<Item = Result<pb::LeaseKeepAliveResponse, Status>> + Send + 'static>>;

fn keep_alive_once(s: &State, id: i64) -> Result<pb::LeaseKeepAliveResponse, Status> {
    let mut c = s.cluster().map_err(super::Error::from)?;
    let (store, _) = c.etcd();
    // etcd answers an unknown lease with TTL 0, not an error.
    let ttl = store.lease_keep_alive(id, now_ms()).unwrap_or(0);
    Ok(pb::LeaseKeepAliveResponse {
        header: Some(s.etcd_header(store.revision())),
        id,
        ttl,
    })
}

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(
        &self,
        req: Request<pb::LeaseGrantRequest>,
    ) -> Result<Response<pb::LeaseGrantResponse>, Status> {
        let s = &self.state;
        s.metrics.grpc("etcd.LeaseGrant");
        let req = req.into_inner();
        let mut c = s.cluster().map_err(super::Error::from)?;
        let (store, storage) = c.etcd();
        let (id, ttl) = store.lease_grant(storage, req.id, req.ttl, now_ms())?;
        Ok(Response::new(pb::LeaseGrantResponse {
            header: Some(s.etcd_header(store.revision())),
            id,
            ttl,
            error: String::new(),
        }))
    }

    async fn lease_revoke(
        &self,
        req: Request<pb::LeaseRevokeRequest>,
    ) -> Result<Response<pb::LeaseRevokeResponse>, Status> {
        let s = &self.state;
        s.metrics.grpc("etcd.LeaseRevoke");
        let mut c = s.cluster().map_err(super::Error::from)?;
        let (store, storage) = c.etcd();
        let w = store.lease_revoke(storage, req.get_ref().id)?;
        s.etcd.publish(store.revision(), w);
        Ok(Response::new(pb::LeaseRevokeResponse {
            header: Some(s.etcd_header(store.revision())),
        }))
    }

    type LeaseKeepAliveStream = KeepAliveStream;

    async fn lease_keep_alive(
        &self,
        req: Request<Streaming<pb::LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        let state = self.state.clone();
        state.metrics.grpc("etcd.LeaseKeepAlive");
        let inbound = req.into_inner();
        let out = inbound.map(move |r| match r {
            Ok(r) => keep_alive_once(&state, r.id),
            Err(e) => Err(e),
        });
        Ok(Response::new(Box::pin(out)))
    }

    async fn lease_time_to_live(
        &self,
        req: Request<pb::LeaseTimeToLiveRequest>,
    ) -> Result<Response<pb::LeaseTimeToLiveResponse>, Status> {
        let s = &self.state;
        s.metrics.grpc("etcd.LeaseTimeToLive");
        let req = req.into_inner();
        let mut c = s.cluster().map_err(super::Error::from)?;
        let (store, _) = c.etcd();
        let header = Some(s.etcd_header(store.revision()));
        // etcd answers an unknown lease with TTL -1, not an error.
        let resp = match store.lease_time_to_live(req.id, now_ms()) {
            Ok((ttl, granted)) => pb::LeaseTimeToLiveResponse {
                header,
                id: req.id,
                ttl,
                granted_ttl: granted,
                keys: if req.keys {
                    store.lease_keys(req.id)
                } else {
                    Vec::new()
                },
            },
            Err(_) => pb::LeaseTimeToLiveResponse {
                header,
                id: req.id,
                ttl: -1,
                granted_ttl: 0,
                keys: Vec::new(),
            },
        };
        Ok(Response::new(resp))
    }

    async fn lease_leases(
        &self,
        _req: Request<pb::LeaseLeasesRequest>,
    ) -> Result<Response<pb::LeaseLeasesResponse>, Status> {
        let s = &self.state;
        s.metrics.grpc("etcd.LeaseLeases");
        let mut c = s.cluster().map_err(super::Error::from)?;
        let (store, _) = c.etcd();
        Ok(Response::new(pb::LeaseLeasesResponse {
            header: Some(s.etcd_header(store.revision())),
            leases: store
                .leases()
                .into_iter()
                .map(|id| pb::LeaseStatus { id })
                .collect(),
        }))
    }
}
