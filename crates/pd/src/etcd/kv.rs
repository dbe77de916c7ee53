//! etcd's `KV` service: Range, Put, DeleteRange, Txn and Compact on the
//! leader's [`super::store::Store`]; each write publishes its events to the
//! watch hub before the lock is released.

use std::sync::Arc;

use tiox_proto::etcdserverpb::{self as pb, kv_server::Kv};
use tonic::{Request, Response, Status};

use crate::server::State;

/// The KV service.
#[derive(Clone, Debug)]
pub struct KvService {
    state: Arc<State>,
}

impl KvService {
    /// A service over the shared state.
    pub fn new(state: Arc<State>) -> KvService {
        KvService { state }
    }
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(
        &self,
        req: Request<pb::RangeRequest>,
    ) -> Result<Response<pb::RangeResponse>, Status> {
        let s = &self.state;
        s.metrics.grpc("etcd.Range");
        let mut c = s.cluster().map_err(super::Error::from)?;
        let (store, _) = c.etcd();
        let mut resp = store.range(req.get_ref())?;
        resp.header = Some(s.etcd_header(store.revision()));
        Ok(Response::new(resp))
    }

    async fn put(&self, req: Request<pb::PutRequest>) -> Result<Response<pb::PutResponse>, Status> {
        let s = &self.state;
        s.metrics.grpc("etcd.Put");
        let mut c = s.cluster().map_err(super::Error::from)?;
        let (store, storage) = c.etcd();
        let (mut resp, w) = store.put(storage, req.get_ref())?;
        s.etcd.publish(store.revision(), w);
        resp.header = Some(s.etcd_header(store.revision()));
        Ok(Response::new(resp))
    }

    async fn delete_range(
        &self,
        req: Request<pb::DeleteRangeRequest>,
    ) -> Result<Response<pb::DeleteRangeResponse>, Status> {
        let s = &self.state;
        s.metrics.grpc("etcd.DeleteRange");
        let mut c = s.cluster().map_err(super::Error::from)?;
        let (store, storage) = c.etcd();
        let (mut resp, w) = store.delete_range(storage, req.get_ref())?;
        s.etcd.publish(store.revision(), w);
        resp.header = Some(s.etcd_header(store.revision()));
        Ok(Response::new(resp))
    }

    async fn txn(&self, req: Request<pb::TxnRequest>) -> Result<Response<pb::TxnResponse>, Status> {
        let s = &self.state;
        s.metrics.grpc("etcd.Txn");
        let mut c = s.cluster().map_err(super::Error::from)?;
        let (store, storage) = c.etcd();
        let (mut resp, w) = store.txn(storage, req.get_ref())?;
        s.etcd.publish(store.revision(), w);
        let header = s.etcd_header(store.revision());
        set_headers(&mut resp, &header);
        Ok(Response::new(resp))
    }

    async fn compact(
        &self,
        req: Request<pb::CompactionRequest>,
    ) -> Result<Response<pb::CompactionResponse>, Status> {
        let s = &self.state;
        s.metrics.grpc("etcd.Compact");
        let mut c = s.cluster().map_err(super::Error::from)?;
        let (store, storage) = c.etcd();
        store.compact(storage, req.get_ref().revision)?;
        Ok(Response::new(pb::CompactionResponse {
            header: Some(s.etcd_header(store.revision())),
        }))
    }
}

/// Every response inside a transaction carries the header too (etcd's Go
/// client reads the revision from them).
fn set_headers(resp: &mut pb::TxnResponse, h: &pb::ResponseHeader) {
    use pb::response_op::Response as R;
    resp.header = Some(*h);
    for r in &mut resp.responses {
        match &mut r.response {
            Some(R::ResponseRange(x)) => x.header = Some(*h),
            Some(R::ResponsePut(x)) => x.header = Some(*h),
            Some(R::ResponseDeleteRange(x)) => x.header = Some(*h),
            Some(R::ResponseTxn(x)) => set_headers(x, h),
            None => {}
        }
    }
}
