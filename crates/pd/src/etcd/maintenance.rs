//! etcd's `Maintenance` service, Status only: this member's view (leader,
//! Raft term and applied index, etcd revision when it leads). Every member
//! answers for itself (not forwarded), as `etcdctl endpoint status` expects.

use std::sync::Arc;

use tiox_proto::etcdserverpb::{self as pb, maintenance_server::Maintenance};
use tonic::{Request, Response, Status};

use crate::server::State;

/// The etcd API version PD reports: the etcd v3.4 API is what it speaks.
pub const ETCD_VERSION: &str = "3.4.0";

/// The Maintenance service.
#[derive(Clone, Debug)]
pub struct MaintenanceService {
    state: Arc<State>,
}

impl MaintenanceService {
    /// A service over the shared state.
    pub fn new(state: Arc<State>) -> MaintenanceService {
        MaintenanceService { state }
    }
}

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn status(
        &self,
        _req: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let s = &self.state;
        s.metrics.grpc("etcd.Status");
        let revision = s.cluster().map_or(0, |mut c| c.etcd().0.revision());
        let (leader, term) = match s.raft_status() {
            Some(st) => (st.leader_id, st.term),
            None => (s.member.member_id, 1),
        };
        let index = s.raft_applied_index();
        Ok(Response::new(pb::StatusResponse {
            header: Some(s.etcd_header(revision)),
            version: ETCD_VERSION.to_string(),
            db_size: 0,
            leader,
            raft_index: index,
            raft_term: term,
            raft_applied_index: index,
            errors: Vec::new(),
            db_size_in_use: 0,
            is_learner: false,
        }))
    }
}
