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
/// The largest `BatchRaftMessage` a store sends or accepts (a snapshot
/// travels in [`SNAPSHOT_CHUNK`] pieces, so this bounds an entry batch).
pub const MAX_RAFT_MESSAGE: usize = 64 << 20;
/// Snapshot data is sent in slices of this size, one message each.
pub const SNAPSHOT_CHUNK: usize = 4 << 20;
/// A snapshot being reassembled is dropped beyond this size.
const MAX_SNAPSHOT_BYTES: usize = 4 << 30;

/// Splits a snapshot message whose data is larger than [`SNAPSHOT_CHUNK`]
/// into consecutive chunk messages (see `raft_serverpb.RaftMessage`);
/// other messages come back as they are.
pub fn chunk_snapshot(msg: RaftMessage) -> Vec<RaftMessage> {
    let len = msg
        .message
        .as_ref()
        .and_then(|m| m.snapshot.as_ref())
        .map_or(0, |s| s.data.len());
    if len <= SNAPSHOT_CHUNK {
        return vec![msg];
    }
    let mut msg = msg;
    let data = msg
        .message
        .as_mut()
        .and_then(|m| m.snapshot.as_mut())
        .map(|s| std::mem::take(&mut s.data))
        .unwrap_or_default();
    let n = data.len().div_ceil(SNAPSHOT_CHUNK) as u32;
    data.chunks(SNAPSHOT_CHUNK)
        .enumerate()
        .map(|(i, part)| {
            let mut m = msg.clone();
            if let Some(s) = m.message.as_mut().and_then(|m| m.snapshot.as_mut()) {
                s.data = part.to_vec();
            }
            m.snapshot_chunk = i as u32;
            m.snapshot_chunks = n;
            m
        })
        .collect()
}

/// Joins chunked snapshots on the receiving side of one stream.
#[derive(Default)]
pub struct SnapshotAssembler {
    /// (region, target peer) -> (next chunk expected, chunks, data so far).
    partial: HashMap<(u64, u64), (u32, u32, Vec<u8>)>,
}

impl SnapshotAssembler {
    /// The message to step: `msg` itself, or the whole snapshot once its
    /// last chunk has arrived; None while one is incomplete. A chunk out
    /// of order drops the assembly (raft sends the snapshot again).
    pub fn push(&mut self, mut msg: RaftMessage) -> Option<RaftMessage> {
        if msg.snapshot_chunks <= 1 {
            return Some(msg);
        }
        let key = (msg.region_id, msg.to_peer.map_or(0, |p| p.id));
        let (i, n) = (msg.snapshot_chunk, msg.snapshot_chunks);
        let part = msg
            .message
            .as_mut()
            .and_then(|m| m.snapshot.as_mut())
            .map(|s| std::mem::take(&mut s.data))
            .unwrap_or_default();
        if i == 0 {
            self.partial.insert(key, (1, n, part));
        } else {
            match self.partial.get_mut(&key) {
                Some((next, total, buf))
                    if *next == i
                        && *total == n
                        && buf.len() + part.len() <= MAX_SNAPSHOT_BYTES =>
                {
                    buf.extend_from_slice(&part);
                    *next += 1;
                }
                _ => {
                    self.partial.remove(&key);
                    return None;
                }
            }
        }
        if self
            .partial
            .get(&key)
            .is_some_and(|(next, total, _)| next == total)
        {
            let (_, _, data) = self.partial.remove(&key)?;
            if let Some(s) = msg.message.as_mut().and_then(|m| m.snapshot.as_mut()) {
                s.data = data;
            }
            msg.snapshot_chunk = 0;
            msg.snapshot_chunks = 0;
            return Some(msg);
        }
        None
    }
}
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

/// A test's look at every message as the Raft loop sends it, on the loop's
/// own thread (so it sees the store exactly as it is at that moment).
#[cfg(test)]
pub type Tap = Arc<dyn Fn(u64, &RaftMessage) + Send + Sync>;

/// The sending half, held by the Raft loop.
#[derive(Clone)]
pub struct Transport {
    tx: mpsc::UnboundedSender<(u64, RaftMessage)>,
    #[cfg(test)]
    tap: Option<Tap>,
}

impl Transport {
    /// A transport whose receiving half is returned for [`run`].
    pub fn new() -> (Transport, mpsc::UnboundedReceiver<(u64, RaftMessage)>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            Transport {
                tx,
                #[cfg(test)]
                tap: None,
            },
            rx,
        )
    }

    /// Calls `tap` with every message before it is queued.
    #[cfg(test)]
    pub fn with_tap(mut self, tap: Tap) -> Transport {
        self.tap = Some(tap);
        self
    }

    /// Queues `msg` for `store_id`; never blocks.
    pub fn send(&self, store_id: u64, msg: RaftMessage) {
        #[cfg(test)]
        if let Some(tap) = &self.tap {
            tap(store_id, &msg);
        }
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
        for m in chunk_snapshot(msg) {
            if q.try_send(m).is_err() {
                // The store is slow or down: Raft will retry.
                feedback.unreachable(store_id);
                break;
            }
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

    fn snapshot_envelope(region_id: u64, data: Vec<u8>) -> RaftMessage {
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgSnapshot);
        m.mut_snapshot().data = data.into();
        m.mut_snapshot().mut_metadata().index = 77;
        RaftMessage {
            region_id,
            to_peer: Some(tiox_proto::metapb::Peer {
                id: 5,
                store_id: 2,
                ..Default::default()
            }),
            message: Some(to_pb(&m).unwrap()),
            ..Default::default()
        }
    }

    #[test]
    fn large_snapshot_travels_in_chunks_and_is_reassembled_whole() {
        let data: Vec<u8> = (0..(SNAPSHOT_CHUNK * 2 + 123)).map(|i| i as u8).collect();
        let whole = snapshot_envelope(9, data.clone());
        let chunks = chunk_snapshot(whole.clone());
        assert_eq!(chunks.len(), 3);
        assert!(chunks
            .iter()
            .all(|c| c.encoded_len() < SNAPSHOT_CHUNK + 4096));
        let mut a = SnapshotAssembler::default();
        let mut out = Vec::new();
        for (i, c) in chunks.into_iter().enumerate() {
            // Another region's message in between passes straight through.
            if i == 1 {
                let other = RaftMessage {
                    region_id: 10,
                    ..Default::default()
                };
                assert_eq!(a.push(other.clone()), Some(other));
            }
            out.extend(a.push(c));
        }
        assert_eq!(out, vec![whole]);
        // Small snapshots are not chunked.
        let small = snapshot_envelope(9, vec![1, 2, 3]);
        assert_eq!(chunk_snapshot(small.clone()), vec![small]);
    }

    #[test]
    fn a_missing_chunk_drops_the_snapshot() {
        let data = vec![7u8; SNAPSHOT_CHUNK * 3];
        let chunks = chunk_snapshot(snapshot_envelope(9, data));
        let mut a = SnapshotAssembler::default();
        assert_eq!(a.push(chunks[0].clone()), None);
        assert_eq!(a.push(chunks[2].clone()), None);
        assert!(a.partial.is_empty());
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
