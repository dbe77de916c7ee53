//! The `tikvpb.Tikv` gRPC service: unary RPCs and the BatchCommands stream,
//! all delegating to [`Storage`].

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use tiox_proto::tikvpb::batch_commands_request::request::Cmd as Req;
use tiox_proto::tikvpb::{self, tikv_server::Tikv};
use tiox_proto::{kvrpcpb, raft_serverpb};
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use crate::raftstore::transport::SnapshotAssembler;
use crate::storage::{dispatch, status, Outcome, Storage};

/// Most BatchCommands responses merged into one stream message.
const MAX_MERGED: usize = 64;

/// The gRPC service.
#[derive(Clone)]
pub struct TikvService {
    storage: Arc<Storage>,
    metrics: Arc<super::Metrics>,
}

impl TikvService {
    /// A service over `storage`.
    pub fn new(storage: Arc<Storage>, metrics: Arc<super::Metrics>) -> Self {
        TikvService { storage, metrics }
    }

    /// Hands one Raft message from a peer store to the Raft loop. A
    /// malformed message ends the stream with InvalidArgument.
    fn step_raft(&self, msg: raft_serverpb::RaftMessage) -> Result<(), Status> {
        let from = msg.from_peer.map_or(0, |p| p.store_id);
        let region_id = msg.region_id;
        self.storage.store().step(msg).map_err(|e| {
            tracing::warn!(from_store = from, region_id, "raft message refused: {e}");
            Status::invalid_argument(format!("raft message for region {region_id}: {e}"))
        })
    }
}

fn reply<T>(o: Outcome<T>) -> Result<Response<T>, Status> {
    o.map(Response::new).map_err(status)
}

// The service trait is an `async_trait`; these macros expand to the same
// boxed-future signature it expects (the attribute cannot see inside a
// macro invocation).
macro_rules! unary_async {
    ($name:ident, $method:ident, $req:ty, $resp:ty) => {
        fn $name<'life0, 'async_trait>(
            &'life0 self,
            req: Request<$req>,
        ) -> Pin<
            Box<
                dyn std::future::Future<Output = Result<Response<$resp>, Status>>
                    + Send
                    + 'async_trait,
            >,
        >
        where
            'life0: 'async_trait,
            Self: 'async_trait,
        {
            Box::pin(async move {
                let t = std::time::Instant::now();
                let r = self.storage.$method(req.into_inner()).await;
                self.metrics.observe(stringify!($name), t.elapsed());
                reply(r)
            })
        }
    };
}

macro_rules! unary_sync {
    ($name:ident, $method:ident, $req:ty, $resp:ty) => {
        fn $name<'life0, 'async_trait>(
            &'life0 self,
            req: Request<$req>,
        ) -> Pin<
            Box<
                dyn std::future::Future<Output = Result<Response<$resp>, Status>>
                    + Send
                    + 'async_trait,
            >,
        >
        where
            'life0: 'async_trait,
            Self: 'async_trait,
        {
            Box::pin(async move {
                let t = std::time::Instant::now();
                let req = req.into_inner();
                self.storage.wait_readable(req.context.as_ref()).await;
                let r = self.storage.$method(req);
                self.metrics.observe(stringify!($name), t.elapsed());
                reply(r)
            })
        }
    };
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl Tikv for TikvService {
    unary_async!(
        split_region,
        split_region_rpc,
        kvrpcpb::SplitRegionRequest,
        kvrpcpb::SplitRegionResponse
    );
    unary_sync!(kv_get, get, kvrpcpb::GetRequest, kvrpcpb::GetResponse);
    unary_sync!(kv_scan, scan, kvrpcpb::ScanRequest, kvrpcpb::ScanResponse);
    unary_async!(
        kv_prewrite,
        prewrite,
        kvrpcpb::PrewriteRequest,
        kvrpcpb::PrewriteResponse
    );
    unary_async!(
        kv_pessimistic_lock,
        pessimistic_lock,
        kvrpcpb::PessimisticLockRequest,
        kvrpcpb::PessimisticLockResponse
    );
    unary_async!(
        kv_pessimistic_rollback,
        pessimistic_rollback,
        kvrpcpb::PessimisticRollbackRequest,
        kvrpcpb::PessimisticRollbackResponse
    );
    unary_async!(
        kv_txn_heart_beat,
        txn_heart_beat,
        kvrpcpb::TxnHeartBeatRequest,
        kvrpcpb::TxnHeartBeatResponse
    );
    unary_async!(
        kv_check_txn_status,
        check_txn_status,
        kvrpcpb::CheckTxnStatusRequest,
        kvrpcpb::CheckTxnStatusResponse
    );
    unary_async!(
        kv_check_secondary_locks,
        check_secondary_locks,
        kvrpcpb::CheckSecondaryLocksRequest,
        kvrpcpb::CheckSecondaryLocksResponse
    );
    unary_async!(
        kv_commit,
        commit,
        kvrpcpb::CommitRequest,
        kvrpcpb::CommitResponse
    );
    unary_async!(
        kv_cleanup,
        cleanup,
        kvrpcpb::CleanupRequest,
        kvrpcpb::CleanupResponse
    );
    unary_sync!(
        kv_batch_get,
        batch_get,
        kvrpcpb::BatchGetRequest,
        kvrpcpb::BatchGetResponse
    );
    unary_async!(
        kv_batch_rollback,
        batch_rollback,
        kvrpcpb::BatchRollbackRequest,
        kvrpcpb::BatchRollbackResponse
    );
    unary_sync!(
        kv_scan_lock,
        scan_lock,
        kvrpcpb::ScanLockRequest,
        kvrpcpb::ScanLockResponse
    );
    unary_async!(
        kv_resolve_lock,
        resolve_lock,
        kvrpcpb::ResolveLockRequest,
        kvrpcpb::ResolveLockResponse
    );
    unary_async!(kv_gc, gc, kvrpcpb::GcRequest, kvrpcpb::GcResponse);
    unary_async!(
        kv_delete_range,
        delete_range,
        kvrpcpb::DeleteRangeRequest,
        kvrpcpb::DeleteRangeResponse
    );
    unary_sync!(
        raw_get,
        raw_get,
        kvrpcpb::RawGetRequest,
        kvrpcpb::RawGetResponse
    );
    unary_sync!(
        raw_batch_get,
        raw_batch_get,
        kvrpcpb::RawBatchGetRequest,
        kvrpcpb::RawBatchGetResponse
    );
    unary_async!(
        raw_put,
        raw_put,
        kvrpcpb::RawPutRequest,
        kvrpcpb::RawPutResponse
    );
    unary_async!(
        raw_batch_put,
        raw_batch_put,
        kvrpcpb::RawBatchPutRequest,
        kvrpcpb::RawBatchPutResponse
    );
    unary_async!(
        raw_delete,
        raw_delete,
        kvrpcpb::RawDeleteRequest,
        kvrpcpb::RawDeleteResponse
    );
    unary_async!(
        raw_batch_delete,
        raw_batch_delete,
        kvrpcpb::RawBatchDeleteRequest,
        kvrpcpb::RawBatchDeleteResponse
    );
    unary_sync!(
        raw_scan,
        raw_scan,
        kvrpcpb::RawScanRequest,
        kvrpcpb::RawScanResponse
    );
    unary_async!(
        raw_delete_range,
        raw_delete_range,
        kvrpcpb::RawDeleteRangeRequest,
        kvrpcpb::RawDeleteRangeResponse
    );
    unary_sync!(
        raw_batch_scan,
        raw_batch_scan,
        kvrpcpb::RawBatchScanRequest,
        kvrpcpb::RawBatchScanResponse
    );
    unary_sync!(
        raw_get_key_ttl,
        raw_get_key_ttl,
        kvrpcpb::RawGetKeyTtlRequest,
        kvrpcpb::RawGetKeyTtlResponse
    );
    unary_async!(
        raw_compare_and_swap,
        raw_cas,
        kvrpcpb::RawCasRequest,
        kvrpcpb::RawCasResponse
    );
    unary_sync!(
        unsafe_destroy_range,
        unsafe_destroy_range,
        kvrpcpb::UnsafeDestroyRangeRequest,
        kvrpcpb::UnsafeDestroyRangeResponse
    );

    async fn raw_coprocessor(
        &self,
        _req: Request<kvrpcpb::RawCoprocessorRequest>,
    ) -> Result<Response<kvrpcpb::RawCoprocessorResponse>, Status> {
        Err(Status::unimplemented(
            "tiox does not run raw coprocessor plugins",
        ))
    }

    async fn raft(
        &self,
        req: Request<Streaming<raft_serverpb::RaftMessage>>,
    ) -> Result<Response<raft_serverpb::Done>, Status> {
        let mut stream = req.into_inner();
        let mut snapshots = SnapshotAssembler::default();
        while let Some(msg) = stream.message().await? {
            if let Some(msg) = snapshots.push(msg) {
                self.step_raft(msg)?;
            }
        }
        Ok(Response::new(raft_serverpb::Done {}))
    }

    async fn batch_raft(
        &self,
        req: Request<Streaming<tikvpb::BatchRaftMessage>>,
    ) -> Result<Response<raft_serverpb::Done>, Status> {
        let mut stream = req.into_inner();
        let mut snapshots = SnapshotAssembler::default();
        while let Some(batch) = stream.message().await? {
            for msg in batch.msgs {
                if let Some(msg) = snapshots.push(msg) {
                    self.step_raft(msg)?;
                }
            }
        }
        Ok(Response::new(raft_serverpb::Done {}))
    }

    type BatchCommandsStream = BoxStream<tikvpb::BatchCommandsResponse>;

    async fn batch_commands(
        &self,
        req: Request<Streaming<tikvpb::BatchCommandsRequest>>,
    ) -> Result<Response<Self::BatchCommandsStream>, Status> {
        let mut incoming = req.into_inner();
        let (tx, rx) =
            tokio::sync::mpsc::channel::<Result<tikvpb::BatchCommandsResponse, Status>>(256);
        let storage = self.storage.clone();
        tokio::spawn(async move {
            while let Some(batch) = incoming.next().await {
                let batch = match batch {
                    Ok(b) => b,
                    Err(_) => return,
                };
                for (req, id) in batch.requests.into_iter().zip(batch.request_ids) {
                    // Point reads of a region readable here right now are
                    // answered in place (no lease to wait for, no write);
                    // everything else gets its own task.
                    let in_place = match &req.cmd {
                        Some(Req::Get(r)) => storage.readable_now(r.context.as_ref()),
                        Some(Req::BatchGet(r)) => storage.readable_now(r.context.as_ref()),
                        _ => false,
                    };
                    if in_place {
                        let _ = tx.send(answer(&storage, req.cmd, id).await).await;
                        continue;
                    }
                    let storage = storage.clone();
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        let _ = tx.send(answer(&storage, req.cmd, id).await).await;
                    });
                }
            }
        });
        // Responses ready at the same moment go out as one message.
        let chunks = futures::StreamExt::ready_chunks(
            tokio_stream::wrappers::ReceiverStream::new(rx),
            MAX_MERGED,
        );
        let merged = futures::StreamExt::flat_map(chunks, |chunk| {
            let mut merged = tikvpb::BatchCommandsResponse::default();
            let mut out = Vec::new();
            for item in chunk {
                match item {
                    Ok(mut r) => {
                        merged.responses.append(&mut r.responses);
                        merged.request_ids.append(&mut r.request_ids);
                    }
                    Err(s) => out.push(Err(s)),
                }
            }
            if !merged.responses.is_empty() {
                out.insert(0, Ok(merged));
            }
            futures::stream::iter(out)
        });
        Ok(Response::new(Box::pin(merged)))
    }
}

/// Runs one BatchCommands request and wraps its answer as a stream message.
async fn answer(
    s: &Storage,
    cmd: Option<Req>,
    id: u64,
) -> Result<tikvpb::BatchCommandsResponse, Status> {
    let resp = match cmd {
        Some(cmd) => dispatch(s, cmd).await?,
        None => return Err(Status::invalid_argument("empty BatchCommands request")),
    };
    Ok(tikvpb::BatchCommandsResponse {
        responses: vec![tikvpb::batch_commands_response::Response { cmd: Some(resp) }],
        request_ids: vec![id],
        transport_layer_load: 0,
    })
}
