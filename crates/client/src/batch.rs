//! One BatchCommands stream per store for reads: requests of concurrent
//! callers that are ready at the same moment travel in one stream message
//! (TiDB's batch-commands client), instead of one HTTP/2 request each —
//! fewer frames, TLS records and system calls on both ends.
//!
//! A writer task drains the queue (up to [`MAX_BATCH`] requests per
//! message) and a reader routes each response to its caller by request
//! id. If the stream fails, every request still waiting on it is sent
//! again once over a unary RPC ([`Conn::batched`]), which also reports a
//! precise error for a request the server refused; only idempotent reads
//! use this path. The next request opens a new stream.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tiox_proto::tikvpb::batch_commands_request::request::Cmd as Req;
use tiox_proto::tikvpb::batch_commands_response::response::Cmd as Resp;
use tiox_proto::tikvpb::tikv_client::TikvClient;
use tiox_proto::tikvpb::{self, batch_commands_request};
use tokio::sync::{mpsc, oneshot};
use tonic::transport::Channel;
use tonic::Status;

/// Most requests in one stream message.
pub const MAX_BATCH: usize = 64;

type Reply = oneshot::Sender<Result<Resp, Status>>;

/// The batch stream of one store (opened lazily, reopened after a failure).
pub struct BatchStream {
    stub: TikvClient<Channel>,
    queue: Mutex<Option<mpsc::UnboundedSender<(Req, Reply)>>>,
}

impl BatchStream {
    /// A stream over `stub`'s connection (nothing is sent until used).
    pub fn new(stub: TikvClient<Channel>) -> BatchStream {
        BatchStream {
            stub,
            queue: Mutex::new(None),
        }
    }

    fn queue(&self) -> mpsc::UnboundedSender<(Req, Reply)> {
        let mut g = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(q) = g.as_ref() {
            if !q.is_closed() {
                return q.clone();
            }
        }
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(self.stub.clone(), rx));
        *g = Some(tx.clone());
        tx
    }

    /// Sends `req` on the stream; Err(req) if the stream failed before
    /// answering it (the caller may send it another way).
    pub async fn call(&self, req: Req) -> Result<Result<Resp, Status>, Req> {
        let (tx, rx) = oneshot::channel();
        let queue = self.queue();
        if let Err(mpsc::error::SendError((req, _))) = queue.send((req.clone(), tx)) {
            return Err(req);
        }
        match rx.await {
            Ok(r) => Ok(r),
            Err(_) => Err(req),
        }
    }
}

/// Runs one stream until it fails or its queue is dropped.
async fn run(mut stub: TikvClient<Channel>, mut queue: mpsc::UnboundedReceiver<(Req, Reply)>) {
    let (out_tx, out_rx) = mpsc::channel::<tikvpb::BatchCommandsRequest>(16);
    let pending: Arc<Mutex<HashMap<u64, Reply>>> = Arc::new(Mutex::new(HashMap::new()));
    let opened = stub
        .batch_commands(tokio_stream::wrappers::ReceiverStream::new(out_rx))
        .await;
    let mut incoming = match opened {
        Ok(r) => r.into_inner(),
        Err(e) => {
            tracing::debug!("opening a BatchCommands stream failed: {e}");
            return; // dropping the queue fails every waiting call over
        }
    };
    let routes = pending.clone();
    let mut reader = tokio::spawn(async move {
        while let Ok(Some(msg)) = incoming.message().await {
            let mut routes = routes.lock().unwrap_or_else(|p| p.into_inner());
            for (id, r) in msg.request_ids.into_iter().zip(msg.responses) {
                if let Some(reply) = routes.remove(&id) {
                    let _ = reply.send(
                        r.cmd
                            .ok_or_else(|| Status::internal("empty BatchCommands response")),
                    );
                }
            }
        }
    });
    let mut next_id = 0u64;
    loop {
        let first = tokio::select! {
            item = queue.recv() => match item {
                Some(item) => item,
                None => break,
            },
            _ = &mut reader => break,
        };
        let mut items = vec![first];
        while items.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(item) => items.push(item),
                Err(_) => break,
            }
        }
        let mut msg = tikvpb::BatchCommandsRequest::default();
        {
            let mut routes = pending.lock().unwrap_or_else(|p| p.into_inner());
            for (req, reply) in items {
                next_id += 1;
                routes.insert(next_id, reply);
                msg.requests
                    .push(batch_commands_request::Request { cmd: Some(req) });
                msg.request_ids.push(next_id);
            }
        }
        if out_tx.send(msg).await.is_err() {
            break;
        }
    }
    // Failed or no longer used: close the queue (waiting callers and those
    // still queued get their request back) and stop reading.
    queue.close();
    reader.abort();
    pending.lock().unwrap_or_else(|p| p.into_inner()).clear();
}
