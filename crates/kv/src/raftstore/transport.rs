//! Raft messages between stores: one long-lived `BatchRaft` client stream
//! per destination store over mutual TLS, every region multiplexed on it.
//!
//! ```text
//!  Raft loop thread ──(store_id, RaftMessage)──► dispatcher task
//!                                                 │ one queue per store
//!                                                 ▼
//!                          per-store task: PD GetStore -> address,
//!                          tiox_client::channel (mTLS, our cluster cert),
//!                          Tikv/BatchRaft stream, batches of <= 256 messages
//!  peer store: server::service `batch_raft` ─► StoreMsg::Raft ─► its Raft loop
//! ```
//!
//! Delivery is best effort, as Raft expects: a message that cannot be sent
//! is dropped (Raft retries by itself), and the loop is told the store is
//! unreachable so the leader probes it instead of streaming to it.
//!
//! raft-rs 0.7 messages are rust-protobuf types while our gRPC types are
//! prost's; both are generated from `eraftpb.proto` with the same field
//! numbers, so [`to_pb`] and [`from_pb`] convert through the wire bytes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use prost::Message as _;
use protobuf::Message as _;
use tiox_client::pd::PdClient;
use tiox_proto::{eraftpb, raft_serverpb::RaftMessage, tikvpb};
use tiox_security::ClientTls;
use tokio::sync::mpsc;

/// Messages per `BatchRaftMessage`.
const MAX_BATCH: usize = 256;
/// A batch stops growing at this many bytes (a message larger than this
/// travels alone), so one `BatchRaftMessage` stays within
/// [`MAX_RAFT_MESSAGE`].
const MAX_BATCH_BYTES: usize = 8 << 20;
/// The largest `BatchRaftMessage` a store sends or accepts: bounds a
/// region snapshot, which travels whole in one message (see `snap.rs`).
pub const MAX_RAFT_MESSAGE: usize = 64 << 20;
/// Messages queued per destination store before new ones are dropped.
const QUEUE_PER_STORE: usize = 8192;

/// Converts a raft-rs message to our wire type.
pub fn to_pb(m: &raft::prelude::Message) -> Result<eraftpb::Message, String> {
    let bytes = m
        .write_to_bytes()
        .map_err(|e| format!("cannot encode a raft message: {e}"))?;
    eraftpb::Message::decode(&bytes[..])
        .map_err(|e| format!("cannot re-decode a raft message: {e}"))
}

/// Converts a message from the wire into raft-rs's type. The input comes
/// from a peer: errors are returned, never unwrapped.
pub fn from_pb(m: &eraftpb::Message) -> Result<raft::prelude::Message, String> {
    raft::prelude::Message::parse_from_bytes(&m.encode_to_vec())
        .map_err(|e| format!("malformed raft message: {e}"))
}

/// What the transport tells the Raft loop.
pub trait Feedback: Send + Sync + 'static {
    /// Messages to `store_id` could not be delivered.
    fn unreachable(&self, store_id: u64);
}

/// The sending half, held by the Raft loop.
#[derive(Clone)]
pub struct Transport {
    tx: mpsc::UnboundedSender<(u64, RaftMessage)>,
}

impl Transport {
    /// A transport whose receiving half is returned for [`run`].
    pub fn new() -> (Transport, mpsc::UnboundedReceiver<(u64, RaftMessage)>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Transport { tx }, rx)
    }

    /// Queues `msg` for `store_id`; never blocks.
    pub fn send(&self, store_id: u64, msg: RaftMessage) {
        let _ = self.tx.send((store_id, msg));
    }
}

/// Runs the dispatcher: one task and stream per destination store.
pub async fn run(
    mut rx: mpsc::UnboundedReceiver<(u64, RaftMessage)>,
    pd: Arc<PdClient>,
    tls: Option<Arc<ClientTls>>,
    feedback: Arc<dyn Feedback>,
) {
    let mut queues: HashMap<u64, mpsc::Sender<RaftMessage>> = HashMap::new();
    while let Some((store_id, msg)) = rx.recv().await {
        let q = queues.entry(store_id).or_insert_with(|| {
            let (tx, rx) = mpsc::channel(QUEUE_PER_STORE);
            tokio::spawn(per_store(
                store_id,
                rx,
                pd.clone(),
                tls.clone(),
                feedback.clone(),
            ));
            tx
        });
        if q.try_send(msg).is_err() {
            // The store is slow or down: Raft will retry.
            feedback.unreachable(store_id);
        }
    }
}

async fn per_store(
    store_id: u64,
    mut rx: mpsc::Receiver<RaftMessage>,
    pd: Arc<PdClient>,
    tls: Option<Arc<ClientTls>>,
    feedback: Arc<dyn Feedback>,
) {
    let mut failures = 0u32;
    loop {
        // Wait for something to send before (re)connecting.
        let Some(first) = rx.recv().await else { return };
        let addr = match pd.get_store(store_id).await {
            Ok(Some(s)) if !s.peer_address.is_empty() => s.peer_address,
            Ok(Some(s)) => s.address,
            Ok(None) => {
                tracing::warn!(
                    store_id,
                    "PD does not know store {store_id}; raft messages to it dropped"
                );
                feedback.unreachable(store_id);
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            Err(e) => {
                tracing::debug!(store_id, "cannot resolve store {store_id} through PD: {e}");
                feedback.unreachable(store_id);
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let channel = match tiox_client::channel::channel(&addr, tls.clone()) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(store_id, %addr, "cannot dial store {store_id}: {e}");
                feedback.unreachable(store_id);
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let mut client = tikvpb::tikv_client::TikvClient::new(channel)
            .max_encoding_message_size(MAX_RAFT_MESSAGE + (1 << 20))
            .max_decoding_message_size(MAX_RAFT_MESSAGE + (1 << 20));
        let (btx, brx) = mpsc::channel::<tikvpb::BatchRaftMessage>(64);
        let call = tokio::spawn(async move {
            client
                .batch_raft(tokio_stream::wrappers::ReceiverStream::new(brx))
                .await
        });
        let mut pending = Some(first);
        let opened = std::time::Instant::now();
        loop {
            let mut msgs = Vec::with_capacity(8);
            if let Some(m) = pending.take() {
                msgs.push(m);
            } else {
                match rx.recv().await {
                    Some(m) => msgs.push(m),
                    None => return,
                }
            }
            let mut bytes: usize = msgs.iter().map(|m| m.encoded_len()).sum();
            while msgs.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(m) => {
                        let len = m.encoded_len();
                        if bytes + len > MAX_BATCH_BYTES {
                            pending = Some(m);
                            break;
                        }
                        bytes += len;
                        msgs.push(m);
                    }
                    Err(_) => break,
                }
            }
            if btx.send(tikvpb::BatchRaftMessage { msgs }).await.is_err() {
                break;
            }
            if call.is_finished() {
                break;
            }
        }
        drop(btx);
        let outcome = call.await;
        let why = match outcome {
            Ok(Ok(_)) => "the peer closed the stream".to_string(),
            Ok(Err(status)) => format!("{}: {}", status.code(), status.message()),
            Err(e) => format!("stream task failed: {e}"),
        };
        // A stream that lived a while was healthy: start counting afresh.
        if opened.elapsed() > Duration::from_secs(5) {
            failures = 0;
        }
        failures += 1;
        if failures == 1 || failures.is_multiple_of(30) {
            tracing::warn!(store_id, %addr, failures, "raft stream to store {store_id} at {addr} ended: {why}; reconnecting");
        }
        feedback.unreachable(store_id);
        let backoff = Duration::from_millis(100 * u64::from(failures.min(10)));
        tokio::time::sleep(backoff).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::prelude::{Entry, Message, MessageType};

    #[test]
    fn entry_carrying_message_round_trips_through_prost() {
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgAppend);
        m.to = 2;
        m.from = 1;
        m.term = 7;
        m.log_term = 6;
        m.index = 41;
        m.commit = 40;
        let e = Entry {
            index: 42,
            term: 7,
            data: b"payload".to_vec().into(),
            context: 9u64.to_be_bytes().to_vec().into(),
            ..Default::default()
        };
        m.mut_entries().push(e);
        let pb = to_pb(&m).unwrap();
        assert_eq!(pb.entries.len(), 1);
        assert_eq!(pb.entries[0].index, 42);
        assert_eq!(&pb.entries[0].data[..], b"payload");
        assert_eq!(pb.msg_type, MessageType::MsgAppend as i32);
        let back = from_pb(&pb).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn snapshot_message_round_trips_through_prost() {
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgSnapshot);
        let s = m.mut_snapshot();
        s.data = vec![1, 2, 3].into();
        s.mut_metadata().index = 10;
        s.mut_metadata().term = 3;
        s.mut_metadata().mut_conf_state().voters = vec![1, 2, 3];
        s.mut_metadata().mut_conf_state().learners = vec![4];
        let back = from_pb(&to_pb(&m).unwrap()).unwrap();
        assert_eq!(back, m);
    }
}
