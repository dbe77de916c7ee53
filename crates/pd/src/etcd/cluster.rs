//! etcd's `Cluster` service, MemberList only: PD's members as etcd members
//! (the same ids, names and URLs `pdpb.PD/GetMembers` reports). Every member
//! answers it (it is not forwarded), so clients can sync endpoints from any.

use std::sync::Arc;

use tiox_proto::etcdserverpb::{self as pb, cluster_server::Cluster};
use tonic::{Request, Response, Status};

use crate::server::State;

/// The Cluster service.
#[derive(Clone, Debug)]
pub struct ClusterService {
    state: Arc<State>,
}

impl ClusterService {
    /// A service over the shared state.
    pub fn new(state: Arc<State>) -> ClusterService {
        ClusterService { state }
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_list(
        &self,
        _req: Request<pb::MemberListRequest>,
    ) -> Result<Response<pb::MemberListResponse>, Status> {
        let s = &self.state;
        s.metrics.grpc("etcd.MemberList");
        let members = s
            .members_view()
            .0
            .into_iter()
            .map(|m| pb::Member {
                id: m.member_id,
                name: m.name,
                peer_ur_ls: m.peer_urls,
                client_ur_ls: m.client_urls,
                is_learner: false,
            })
            .collect();
        Ok(Response::new(pb::MemberListResponse {
            header: Some(s.etcd_header(0)),
            members,
        }))
    }
}
