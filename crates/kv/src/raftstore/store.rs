//! The store: every region peer on this node, driven by one Raft loop on a
//! dedicated thread.
//!
//! ```text
//!  gRPC handlers ──Propose / ReadIndex──► [channel] ──► Raft loop thread
//!  peers' BatchRaft ──Raft──────────────►     │ tick every TICK_MS
//!  PD heartbeat stream ──Operator───────►     │ for each peer with a Ready:
//!                                             │   send messages (transport)
//!                                             │   apply a snapshot (one fsynced batch)
//!                                             │   persist entries + hard state (one fsync)
//!                                             │   send the messages that needed them durable
//!                                             │   apply committed entries and conf changes
//!                                             │   answer proposers and readers
//!                                             ▼
//!                                 StoreMeta (regions, leaders, leases) read by handlers
//! ```
//!
//! A message for a region this store does not hold creates an
//! uninitialized peer, which the leader fills with a snapshot. A peer
//! removed by a membership change is destroyed (data, log and state) and
//! leaves a tombstone so late messages do not recreate it.

use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use prost::Message as _;
use raft::prelude::MessageType;
use tiox_engine::{Cf, Engine, Snapshot as _, WriteBatch};
use tiox_proto::{metapb, pdpb, raft_serverpb};
use tokio::sync::oneshot;

use super::keys;
use super::log::{PeerStorage, SnapGen};
use super::peer::{Callback, Change, Peer, ReadCallback, ELECTION_TICKS, TICK_MS};

/// How long a leader hears nothing from a peer before it reports the peer
/// down to PD: two election timeouts.
const DOWN_AFTER: Duration = Duration::from_millis(2 * ELECTION_TICKS as u64 * TICK_MS);
use super::snap;
use super::transport::{self, Transport};
use crate::codec::{Reader, Writer};
use crate::command::{Command, Response};
use crate::error::{Error, RegionError, Result};

/// A message to the Raft loop.
pub enum StoreMsg {
    /// Propose a write to a region.
    Propose {
        /// The region.
        region_id: u64,
        /// The epoch the client saw.
        epoch: Option<metapb::RegionEpoch>,
        /// The command.
        cmd: Box<Command>,
        /// Where the response goes.
        cb: Callback,
    },
    /// A Raft message from a peer on another store.
    Raft {
        /// The envelope (region, peers, epoch; `message` taken out).
        env: Box<raft_serverpb::RaftMessage>,
        /// The message itself, converted for raft-rs.
        msg: Box<raft::prelude::Message>,
    },
    /// Confirm leadership (ReadIndex) so a read may be served locally.
    ReadIndex {
        /// The region.
        region_id: u64,
        /// Ok when the read may go ahead.
        cb: ReadCallback,
    },
    /// A scheduling operator from PD's region heartbeat stream.
    Operator(Box<pdpb::RegionHeartbeatResponse>),
    /// The transport could not deliver to this store.
    Unreachable(u64),
    /// Stop the loop.
    Shutdown,
}

/// What handlers need to know about a region without asking the loop.
#[derive(Clone, Debug, PartialEq)]
pub struct RegionStatus {
    /// The descriptor.
    pub region: metapb::Region,
    /// Our peer.
    pub peer: metapb::Peer,
    /// Whether we lead it.
    pub is_leader: bool,
    /// The leader, if known.
    pub leader: Option<metapb::Peer>,
    /// Applied index.
    pub applied: u64,
    /// The Raft term this peer is at.
    pub term: u64,
    /// Log entries up to here are compacted away.
    pub truncated_index: u64,
    /// Leader that has applied its own term's first entry: reads see
    /// every acknowledged write.
    pub readable: bool,
    /// Until when the leader may serve reads without a ReadIndex round.
    pub lease_until: Option<Instant>,
    /// Peers (learners included) that are not caught up (leader's view).
    pub pending_peers: Vec<metapb::Peer>,
    /// Peers the leader has not heard from recently, with the seconds
    /// since it last did (leader's view).
    pub down_peers: Vec<(metapb::Peer, u64)>,
}

impl RegionStatus {
    /// Whether a read may be served from this store's engine now.
    pub fn can_read_locally(&self) -> bool {
        self.is_leader && self.readable && self.lease_until.is_some_and(|t| Instant::now() < t)
    }
}

/// Regions on this store, by id; kept current by the Raft loop.
#[derive(Debug, Default)]
pub struct StoreMeta {
    /// By region id.
    pub regions: BTreeMap<u64, RegionStatus>,
}

/// The store identity persisted at bootstrap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreIdent {
    /// Cluster id.
    pub cluster_id: u64,
    /// Store id.
    pub store_id: u64,
}

/// Reads the store identity, if bootstrapped.
pub fn load_ident<E: Engine>(engine: &E) -> Result<Option<StoreIdent>> {
    match engine.snapshot().get(Cf::Raft, keys::STORE_IDENT)? {
        None => Ok(None),
        Some(b) => {
            let mut r = Reader(&b);
            Ok(Some(StoreIdent {
                cluster_id: r.u64()?,
                store_id: r.u64()?,
            }))
        }
    }
}

/// Persists the store identity.
pub fn write_ident<E: Engine>(engine: &E, ident: StoreIdent) -> Result<()> {
    let mut w = Writer::default();
    w.u64(ident.cluster_id).u64(ident.store_id);
    let mut wb = WriteBatch::default();
    wb.put(Cf::Raft, keys::STORE_IDENT.to_vec(), w.0);
    Ok(engine.write(wb, true)?)
}

/// Writes a brand-new region (the cluster's first, at bootstrap).
pub fn write_new_region<E: Engine>(engine: &E, region: &metapb::Region) -> Result<()> {
    let voters = region.peers.iter().map(|p| p.id).collect();
    let storage = PeerStorage::initial(region.id, voters);
    let mut wb = WriteBatch::default();
    storage.write_all(&mut wb);
    wb.put(
        Cf::Raft,
        keys::region_meta(region.id),
        region.encode_to_vec(),
    );
    Ok(engine.write(wb, true)?)
}

/// Region descriptors stored on this node.
pub fn local_regions<E: Engine>(engine: &E) -> Result<Vec<metapb::Region>> {
    let snap = engine.snapshot();
    let (lo, hi) = keys::region_meta_range();
    let mut out = Vec::new();
    for kv in snap.iter(
        Cf::Raft,
        std::ops::Bound::Included(&lo),
        std::ops::Bound::Excluded(&hi),
        false,
    ) {
        let (k, v) = kv?;
        if keys::region_id_of_meta_key(&k).is_some() {
            out.push(
                metapb::Region::decode(&v[..])
                    .map_err(|e| Error::Corrupted(format!("region descriptor: {e}")))?,
            );
        }
    }
    Ok(out)
}

/// Removes a region prepared for a bootstrap that lost the race.
pub fn remove_region<E: Engine>(engine: &E, region_id: u64) -> Result<()> {
    let mut wb = WriteBatch::default();
    wb.delete(Cf::Raft, keys::region_meta(region_id));
    wb.delete(Cf::Raft, keys::hard_state(region_id));
    wb.delete(Cf::Raft, keys::apply_state(region_id));
    Ok(engine.write(wb, true)?)
}

/// A handle to the running store.
#[derive(Clone)]
pub struct StoreHandle {
    tx: mpsc::Sender<StoreMsg>,
    /// Region status, for routing checks.
    pub meta: Arc<RwLock<StoreMeta>>,
    /// This store's id.
    pub store_id: u64,
}

impl transport::Feedback for StoreHandle {
    fn unreachable(&self, store_id: u64) {
        let _ = self.tx.send(StoreMsg::Unreachable(store_id));
    }
}

impl StoreHandle {
    /// Proposes a command and waits for it to apply.
    pub async fn propose(
        &self,
        region_id: u64,
        epoch: Option<metapb::RegionEpoch>,
        cmd: Command,
    ) -> Result<Response> {
        let (cb, rx) = oneshot::channel();
        self.tx
            .send(StoreMsg::Propose {
                region_id,
                epoch,
                cmd: Box::new(cmd),
                cb,
            })
            .map_err(|_| {
                Error::Region(RegionError::ServerIsBusy(
                    "the store is shutting down".into(),
                ))
            })?;
        rx.await
            .map_err(|_| Error::Region(RegionError::StaleCommand))?
    }

    /// Confirms this store still leads `region_id` (ReadIndex through a
    /// quorum, or the current lease) and has applied up to the read index.
    pub async fn read_index(&self, region_id: u64) -> Result<()> {
        let (cb, rx) = oneshot::channel();
        self.tx
            .send(StoreMsg::ReadIndex { region_id, cb })
            .map_err(|_| {
                Error::Region(RegionError::ServerIsBusy(
                    "the store is shutting down".into(),
                ))
            })?;
        rx.await
            .map_err(|_| Error::Region(RegionError::StaleCommand))?
    }

    /// Hands a Raft message from another store to the loop.
    pub fn step(&self, mut env: raft_serverpb::RaftMessage) -> std::result::Result<(), String> {
        let pb = env
            .message
            .take()
            .ok_or_else(|| "RaftMessage without a message".to_string())?;
        let msg = transport::from_pb(&pb)?;
        self.tx
            .send(StoreMsg::Raft {
                env: Box::new(env),
                msg: Box::new(msg),
            })
            .map_err(|_| "the store is shutting down".to_string())
    }

    /// Hands a PD operator to the loop.
    pub fn operator(&self, resp: pdpb::RegionHeartbeatResponse) {
        let _ = self.tx.send(StoreMsg::Operator(Box::new(resp)));
    }

    /// Whether this store may serve a read of `region_id` right now (see
    /// [`RegionStatus::can_read_locally`]), without copying its status.
    pub fn can_read_now(&self, region_id: u64) -> bool {
        self.meta
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .regions
            .get(&region_id)
            .is_some_and(RegionStatus::can_read_locally)
    }

    /// A region's status.
    pub fn region(&self, region_id: u64) -> Option<RegionStatus> {
        self.meta
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .regions
            .get(&region_id)
            .cloned()
    }

    /// `region` and the regions here that a split of it produced (same
    /// version, adjacent to its right): what an EpochNotMatch carries, so
    /// a client with the pre-split region re-routes without asking PD.
    pub fn current_regions(&self, region: &metapb::Region) -> Vec<metapb::Region> {
        let meta = self.meta.read().unwrap_or_else(|p| p.into_inner());
        let version = region.region_epoch.unwrap_or_default().version;
        let mut out = vec![region.clone()];
        while out.len() < 64 {
            let end = out.last().map(|r| r.end_key.clone()).unwrap_or_default();
            if end.is_empty() {
                break;
            }
            let next = meta.regions.values().find(|s| {
                s.region.start_key == end
                    && s.region.region_epoch.unwrap_or_default().version == version
            });
            match next {
                Some(s) => out.push(s.region.clone()),
                None => break,
            }
        }
        out
    }

    /// All regions' status.
    pub fn regions(&self) -> Vec<RegionStatus> {
        self.meta
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .regions
            .values()
            .cloned()
            .collect()
    }

    /// Stops the loop.
    pub fn shutdown(&self) {
        let _ = self.tx.send(StoreMsg::Shutdown);
    }
}

fn snap_gen<E: Engine + Clone>(engine: &E) -> SnapGen {
    let engine = engine.clone();
    Arc::new(move |region: &metapb::Region| snap::build(&engine, region))
}

/// Loads every region of this store and starts the Raft loop thread;
/// outgoing Raft messages go to `transport`.
pub fn start<E: Engine + Clone>(
    engine: E,
    store_id: u64,
    transport: Transport,
) -> Result<StoreHandle> {
    let mut peers = HashMap::new();
    let snap = engine.snapshot();
    let (lo, hi) = keys::region_meta_range();
    for kv in snap.iter(
        Cf::Raft,
        std::ops::Bound::Included(&lo),
        std::ops::Bound::Excluded(&hi),
        false,
    ) {
        let (k, v) = kv?;
        let Some(region_id) = keys::region_id_of_meta_key(&k) else {
            continue;
        };
        let region = metapb::Region::decode(&v[..])
            .map_err(|e| Error::Corrupted(format!("region {region_id}: {e}")))?;
        let Some(me) = region
            .peers
            .iter()
            .find(|p| p.store_id == store_id)
            .cloned()
        else {
            tracing::warn!(
                region_id,
                "region descriptor without a peer on this store; skipped"
            );
            continue;
        };
        let storage = PeerStorage::load(&engine, &region, Some(snap_gen(&engine)))?;
        let mut peer = Peer::new(region, me.id, storage)?;
        if peer.region.peers.len() == 1 {
            // Alone in the group: no need to wait for an election timeout.
            let _ = peer.node.campaign();
        }
        peers.insert(region_id, peer);
    }
    let meta = Arc::new(RwLock::new(StoreMeta::default()));
    let (tx, rx) = mpsc::channel();
    let handle = StoreHandle {
        tx,
        meta: meta.clone(),
        store_id,
    };
    let mut lp = RaftLoop {
        gen: snap_gen(&engine),
        engine,
        store_id,
        peers,
        meta,
        transport,
        last_active: HashMap::new(),
    };
    lp.publish();
    std::thread::Builder::new()
        .name("raftstore".into())
        .spawn(move || lp.run(rx))
        .map_err(|e| Error::Engine(format!("cannot start the raft thread: {e}")))?;
    Ok(handle)
}

/// Drops a leader's read lease before a leadership transfer, in the peer
/// and in the published status at once. Readers check the published status
/// (`StoreHandle::can_read_now`) from other threads, and the loop publishes
/// only after the next round of Readies, which sends the transfer's
/// MsgTimeoutNow first: the transferee could be elected and acknowledge
/// writes while this store still served reads from the old lease.
fn drop_lease(peer: &mut Peer, meta: &RwLock<StoreMeta>) {
    peer.drop_lease();
    let mut meta = meta.write().unwrap_or_else(|p| p.into_inner());
    if let Some(status) = meta.regions.get_mut(&peer.region.id) {
        status.lease_until = None;
    }
}

struct RaftLoop<E: Engine> {
    engine: E,
    gen: SnapGen,
    store_id: u64,
    peers: HashMap<u64, Peer>,
    meta: Arc<RwLock<StoreMeta>>,
    transport: Transport,
    /// When each remote peer was last seen active (leader's view).
    last_active: HashMap<u64, Instant>,
}

/// Logs entries kept for followers beyond the applied index, at most.
pub const LOG_RETAIN_ENTRIES: u64 = 1024;

fn is_initial_msg(t: MessageType) -> bool {
    matches!(
        t,
        MessageType::MsgAppend | MessageType::MsgHeartbeat | MessageType::MsgSnapshot
    )
}

impl<E: Engine> RaftLoop<E> {
    fn run(&mut self, rx: mpsc::Receiver<StoreMsg>) {
        let tick = Duration::from_millis(TICK_MS);
        let mut next_tick = Instant::now() + tick;
        loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(StoreMsg::Shutdown) => return,
                Ok(msg) => self.handle(msg),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            // Batch everything already queued into this round (one fsync).
            for _ in 0..4096 {
                match rx.try_recv() {
                    Ok(StoreMsg::Shutdown) => return,
                    Ok(msg) => self.handle(msg),
                    Err(_) => break,
                }
            }
            if Instant::now() >= next_tick {
                for p in self.peers.values_mut() {
                    p.node.tick();
                    p.expire_reads(Duration::from_secs(3));
                }
                self.promote_learners();
                next_tick = Instant::now() + tick;
            }
            if let Err(e) = self.on_ready() {
                // An engine write failed: continuing could acknowledge
                // writes that are not durable. Stop serving.
                tracing::error!("raftstore stopped: {e}");
                for p in self.peers.values_mut() {
                    p.fail_pending();
                }
                std::process::exit(1);
            }
        }
    }

    fn handle(&mut self, msg: StoreMsg) {
        match msg {
            StoreMsg::Propose {
                region_id,
                epoch,
                cmd,
                cb,
            } => match self.peers.get_mut(&region_id) {
                Some(p) => p.propose(*cmd, epoch.as_ref(), cb),
                None => {
                    let _ = cb.send(Err(Error::Region(RegionError::RegionNotFound(region_id))));
                }
            },
            StoreMsg::ReadIndex { region_id, cb } => match self.peers.get_mut(&region_id) {
                Some(p) => p.read_index(cb),
                None => {
                    let _ = cb.send(Err(Error::Region(RegionError::RegionNotFound(region_id))));
                }
            },
            StoreMsg::Raft { env, msg } => self.on_raft_message(*env, *msg),
            StoreMsg::Operator(resp) => self.on_operator(*resp),
            StoreMsg::Unreachable(store_id) => {
                for p in self.peers.values_mut() {
                    if !p.is_leader() {
                        continue;
                    }
                    let ids: Vec<u64> = p
                        .region
                        .peers
                        .iter()
                        .filter(|x| x.store_id == store_id)
                        .map(|x| x.id)
                        .collect();
                    for id in ids {
                        p.node.report_unreachable(id);
                    }
                }
            }
            StoreMsg::Shutdown => {}
        }
    }

    fn on_raft_message(&mut self, env: raft_serverpb::RaftMessage, msg: raft::prelude::Message) {
        let region_id = env.region_id;
        let Some(to) = env.to_peer else { return };
        if msg.get_msg_type() == MessageType::MsgSnapshot {
            if let Some(other) = self.snapshot_overlap(region_id, &msg) {
                // The range still belongs to a region here that has not
                // applied the split creating this one; the split will
                // create the peer (a snapshot would be overwritten by the
                // parent's older log entries).
                tracing::debug!(
                    region_id,
                    overlaps = other,
                    "snapshot dropped: its range overlaps a region on this store"
                );
                return;
            }
        }
        if to.store_id != self.store_id {
            tracing::warn!(
                region_id,
                to_store = to.store_id,
                "raft message for another store dropped"
            );
            return;
        }
        if let Some(p) = self.peers.get(&region_id) {
            // PD added a new peer of this region here: the one we hold was
            // removed while this store was away (it never heard), and
            // would drop every message for the new one.
            let theirs = env.region_epoch.unwrap_or_default().conf_ver;
            let ours = p.region.region_epoch.unwrap_or_default().conf_ver;
            if to.id > p.peer_id && is_initial_msg(msg.get_msg_type()) && theirs > ours {
                tracing::info!(
                    region_id,
                    stale = p.peer_id,
                    new = to.id,
                    ours,
                    theirs,
                    "a newer peer of this region is on this store: destroying the stale one"
                );
                if let Err(e) = self.destroy(region_id) {
                    tracing::error!(region_id, "cannot destroy the stale peer: {e}");
                    return;
                }
            }
        }
        if !self.peers.contains_key(&region_id) {
            if !is_initial_msg(msg.get_msg_type()) {
                return;
            }
            let epoch = env.region_epoch.unwrap_or_default();
            match self
                .engine
                .snapshot()
                .get(Cf::Raft, &keys::tombstone(region_id))
            {
                Ok(Some(b)) => {
                    let removed_at = b
                        .get(..8)
                        .and_then(|s| <[u8; 8]>::try_from(s).ok())
                        .map_or(u64::MAX, u64::from_be_bytes);
                    if epoch.conf_ver <= removed_at {
                        return;
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(region_id, "cannot read the tombstone: {e}");
                    return;
                }
            }
            let storage = PeerStorage::uninitialized(region_id, Some(self.gen.clone()));
            let region = metapb::Region {
                id: region_id,
                ..Default::default()
            };
            match Peer::new(region, to.id, storage) {
                Ok(p) => {
                    tracing::info!(
                        region_id,
                        peer_id = to.id,
                        "created an uninitialized peer for a message from the leader; waiting for a snapshot"
                    );
                    self.peers.insert(region_id, p);
                }
                Err(e) => {
                    tracing::warn!(region_id, "cannot create a peer: {e}");
                    return;
                }
            }
        }
        let Some(peer) = self.peers.get_mut(&region_id) else {
            return;
        };
        if peer.peer_id != to.id {
            tracing::debug!(
                region_id,
                ours = peer.peer_id,
                theirs = to.id,
                "raft message for another peer id dropped"
            );
            return;
        }
        if let Some(from) = env.from_peer {
            peer.peer_cache.insert(from.id, from);
        }
        if let Err(e) = peer.node.step(msg) {
            tracing::debug!(region_id, "raft step: {e}");
        }
    }

    /// Another initialized region here whose range overlaps the region a
    /// snapshot message carries, if any.
    fn snapshot_overlap(&self, region_id: u64, msg: &raft::prelude::Message) -> Option<u64> {
        let data = &msg.get_snapshot().data;
        let mut r = Reader(data);
        let region = metapb::Region::decode(&r.bytes().ok()?[..]).ok()?;
        let overlaps = |a: &metapb::Region| {
            (region.end_key.is_empty() || a.start_key < region.end_key)
                && (a.end_key.is_empty() || region.start_key < a.end_key)
        };
        self.peers
            .values()
            .find(|p| p.region.id != region_id && p.is_initialized() && overlaps(&p.region))
            .map(|p| p.region.id)
    }

    /// Starts the peers of regions a split created on this store. An
    /// uninitialized peer already created for the new region (a message
    /// from its leader arrived before the split applied here) is replaced;
    /// its term and vote are kept so it cannot vote twice in a term.
    fn start_split_peers(&mut self, regions: Vec<metapb::Region>, parent_leader: bool) {
        for region in regions {
            let Some(me) = region
                .peers
                .iter()
                .find(|p| p.store_id == self.store_id)
                .copied()
            else {
                continue;
            };
            if let Some(old) = self.peers.get(&region.id) {
                if old.is_initialized() {
                    continue;
                }
                let hs = old.node.raft.hard_state();
                if hs.term > super::log::RAFT_INIT_LOG_TERM {
                    let mut keep = hs.clone();
                    keep.commit = super::log::RAFT_INIT_LOG_INDEX;
                    let mut wb = WriteBatch::default();
                    wb.put(
                        Cf::Raft,
                        keys::hard_state(region.id),
                        protobuf::Message::write_to_bytes(&keep).unwrap_or_default(),
                    );
                    if let Err(e) = self.engine.write(wb, true) {
                        tracing::error!(region_id = region.id, "split: {e}");
                        continue;
                    }
                }
                if let Some(mut old) = self.peers.remove(&region.id) {
                    old.fail_pending();
                }
            }
            let peer = PeerStorage::load(&self.engine, &region, Some(self.gen.clone()))
                .and_then(|st| Peer::new(region.clone(), me.id, st));
            match peer {
                Ok(mut p) => {
                    if parent_leader {
                        // The parent's leader was elected by these stores
                        // recently: it is the natural leader of the pieces.
                        let _ = p.node.campaign();
                    }
                    tracing::info!(
                        region_id = region.id,
                        peer_id = me.id,
                        "split: peer started"
                    );
                    self.peers.insert(region.id, p);
                }
                Err(e) => {
                    tracing::error!(region_id = region.id, "split: cannot start the peer: {e}")
                }
            }
        }
    }

    fn on_operator(&mut self, resp: pdpb::RegionHeartbeatResponse) {
        let region_id = resp.region_id;
        let Some(peer) = self.peers.get_mut(&region_id) else {
            return;
        };
        if !peer.is_leader() {
            return;
        }
        let cur = peer.region.region_epoch.unwrap_or_default();
        if let Some(e) = &resp.region_epoch {
            if e.conf_ver != cur.conf_ver || e.version != cur.version {
                tracing::debug!(region_id, "operator for an older epoch ignored");
                return;
            }
        }
        let mut changes = Vec::new();
        let mut unsupported = None;
        if let Some(cp) = &resp.change_peer {
            changes.push((cp.change_type, cp.peer));
        }
        if let Some(v2) = &resp.change_peer_v2 {
            if v2.changes.len() > 1 {
                unsupported = Some("change_peer_v2 with several changes (joint consensus)");
            }
            for cp in &v2.changes {
                changes.push((cp.change_type, cp.peer));
            }
        }
        if let Some(why) = unsupported {
            tracing::warn!(
                region_id,
                "PD operator not executed: {why} is not supported"
            );
            return;
        }
        if let Some((kind, Some(target))) = changes.first().copied() {
            let existing = peer
                .region
                .peers
                .iter()
                .find(|p| p.store_id == target.store_id)
                .copied();
            let change = match tiox_proto::eraftpb::ConfChangeType::try_from(kind) {
                // A new voter starts as a learner and is promoted by the
                // leader once it has caught up, so the quorum never waits
                // for a peer that is still receiving its snapshot.
                Ok(tiox_proto::eraftpb::ConfChangeType::AddNode) => match existing {
                    None => Change::AddLearner(metapb::Peer {
                        role: metapb::PeerRole::Learner as i32,
                        ..target
                    }),
                    Some(p) if p.role == metapb::PeerRole::Learner as i32 => {
                        // PD promotes a learner it sees caught up; the
                        // leader checks with its own progress too (and
                        // promotes on its own once it has caught up).
                        if !peer.caught_up(p.id) {
                            return;
                        }
                        Change::AddVoter(metapb::Peer {
                            role: metapb::PeerRole::Voter as i32,
                            ..p
                        })
                    }
                    Some(_) => return,
                },
                Ok(tiox_proto::eraftpb::ConfChangeType::AddLearnerNode) => match existing {
                    None => Change::AddLearner(metapb::Peer {
                        role: metapb::PeerRole::Learner as i32,
                        ..target
                    }),
                    Some(_) => return,
                },
                Ok(tiox_proto::eraftpb::ConfChangeType::RemoveNode) => {
                    let Some(p) = peer
                        .region
                        .peers
                        .iter()
                        .find(|p| p.id == target.id)
                        .copied()
                    else {
                        return;
                    };
                    if p.id == peer.peer_id {
                        // A leader does not remove itself: hand the
                        // leadership over; PD asks again.
                        if let Some(other) = peer.region.peers.iter().find(|x| {
                            x.id != peer.peer_id && x.role != metapb::PeerRole::Learner as i32
                        }) {
                            let other = other.id;
                            drop_lease(peer, &self.meta);
                            peer.node.transfer_leader(other);
                        }
                        return;
                    }
                    Change::Remove(p)
                }
                Err(_) => {
                    tracing::warn!(region_id, kind, "unknown change type from PD ignored");
                    return;
                }
            };
            match peer.propose_conf_change(&[change]) {
                Ok(()) => tracing::info!(region_id, ?change, "proposed a membership change for PD"),
                Err(e) => tracing::debug!(region_id, ?change, "operator deferred: {e}"),
            }
            return;
        }
        if let Some(tl) = &resp.transfer_leader {
            if let Some(t) = tl.peer {
                let is_voter = peer
                    .region
                    .peers
                    .iter()
                    .any(|p| p.id == t.id && p.role != metapb::PeerRole::Learner as i32);
                if is_voter && t.id != peer.peer_id {
                    tracing::info!(region_id, to = t.id, "transferring leadership for PD");
                    drop_lease(peer, &self.meta);
                    peer.node.transfer_leader(t.id);
                }
            }
        }
        if resp.split_region.is_some() || resp.merge.is_some() {
            tracing::warn!(
                region_id,
                "PD split/merge operator not executed: not supported"
            );
        }
    }

    fn promote_learners(&mut self) {
        for peer in self.peers.values_mut() {
            if let Some(l) = peer.learner_to_promote() {
                let voter = metapb::Peer {
                    role: metapb::PeerRole::Voter as i32,
                    ..l
                };
                if peer.propose_conf_change(&[Change::AddVoter(voter)]).is_ok() {
                    tracing::info!(
                        region_id = peer.region.id,
                        peer_id = l.id,
                        "promoting a caught-up learner"
                    );
                }
            }
        }
    }

    fn send_messages(&self, peer: &mut Peer, msgs: Vec<raft::prelude::Message>) {
        for m in msgs {
            let to = peer
                .region
                .peers
                .iter()
                .find(|p| p.id == m.to)
                .or_else(|| peer.peer_cache.get(&m.to))
                .copied();
            let Some(to) = to else {
                tracing::debug!(
                    region_id = peer.region.id,
                    to = m.to,
                    "message to an unknown peer dropped"
                );
                continue;
            };
            let is_snapshot = m.get_msg_type() == MessageType::MsgSnapshot;
            let from = peer
                .region
                .peers
                .iter()
                .find(|p| p.id == peer.peer_id)
                .copied()
                .unwrap_or(metapb::Peer {
                    id: peer.peer_id,
                    store_id: self.store_id,
                    ..Default::default()
                });
            let pb = match transport::to_pb(&m) {
                Ok(pb) => pb,
                Err(e) => {
                    tracing::error!(region_id = peer.region.id, "{e}");
                    continue;
                }
            };
            self.transport.send(
                to.store_id,
                raft_serverpb::RaftMessage {
                    region_id: peer.region.id,
                    from_peer: Some(from),
                    to_peer: Some(to),
                    message: Some(pb),
                    region_epoch: peer.region.region_epoch,
                    start_key: peer.region.start_key.clone(),
                    end_key: peer.region.end_key.clone(),
                    ..Default::default()
                },
            );
            if is_snapshot {
                // Delivery is not confirmed: let raft probe the follower
                // again; a lost snapshot is simply sent anew.
                tracing::info!(region_id = peer.region.id, to = to.id, "sent a snapshot");
                peer.node
                    .report_snapshot(to.id, raft::SnapshotStatus::Finish);
            }
        }
    }

    fn apply_snapshot(&self, peer: &mut Peer, s: &raft::prelude::Snapshot) -> Result<()> {
        let region_id = peer.region.id;
        let data = snap::decode(&s.data)?;
        if data.region.id != region_id {
            return Err(Error::Corrupted(format!(
                "snapshot for region {} sent to region {region_id}",
                data.region.id
            )));
        }
        let mut wb = WriteBatch::default();
        if peer.is_initialized() {
            snap::stage_clear(&self.engine, &peer.region, &mut wb)?;
        }
        snap::stage_clear(&self.engine, &data.region, &mut wb)?;
        for (cf, k, v) in data.kvs {
            wb.put(cf, k, v);
        }
        let n = wb.len();
        peer.node.mut_store().apply_snapshot(s, &mut wb);
        peer.set_region(data.region);
        peer.stage_region(&mut wb);
        wb.delete(Cf::Raft, keys::tombstone(region_id));
        self.engine.write(wb, true)?;
        tracing::info!(
            region_id,
            index = s.get_metadata().index,
            writes = n,
            "applied a snapshot"
        );
        Ok(())
    }

    fn destroy(&mut self, region_id: u64) -> Result<()> {
        let Some(mut peer) = self.peers.remove(&region_id) else {
            return Ok(());
        };
        peer.fail_pending();
        let mut wb = WriteBatch::default();
        snap::stage_clear(&self.engine, &peer.region, &mut wb)?;
        let store = peer.node.store();
        let last = raft::Storage::last_index(store).unwrap_or(0);
        for i in store.apply_state.truncated_index..=last {
            wb.delete(Cf::Raft, keys::entry(region_id, i));
        }
        wb.delete(Cf::Raft, keys::region_meta(region_id));
        wb.delete(Cf::Raft, keys::hard_state(region_id));
        wb.delete(Cf::Raft, keys::apply_state(region_id));
        let conf_ver = peer.region.region_epoch.unwrap_or_default().conf_ver;
        wb.put(
            Cf::Raft,
            keys::tombstone(region_id),
            conf_ver.to_be_bytes().to_vec(),
        );
        self.engine.write(wb, true)?;
        tracing::info!(
            region_id,
            conf_ver,
            "peer removed from this store; data and log destroyed"
        );
        Ok(())
    }

    fn on_ready(&mut self) -> Result<()> {
        for p in self.peers.values_mut() {
            p.issue_reads();
        }
        let ids: Vec<u64> = self
            .peers
            .iter()
            .filter(|(_, p)| p.node.has_ready())
            .map(|(id, _)| *id)
            .collect();
        for region_id in &ids {
            // Out of the map while it is processed (the loop's own state,
            // transport and engine stay borrowable).
            let Some(mut peer) = self.peers.remove(region_id) else {
                continue;
            };
            let res = self.process_ready(&mut peer);
            let removed = peer.removed;
            let split_new = std::mem::take(&mut peer.split_new);
            let parent_leader = peer.is_leader();
            self.peers.insert(*region_id, peer);
            res?;
            if !split_new.is_empty() {
                self.start_split_peers(split_new, parent_leader);
            }
            if removed {
                self.destroy(*region_id)?;
            }
        }
        if !ids.is_empty() {
            self.publish();
        }
        // Readers are answered after publish so they see the new lease.
        for region_id in ids {
            if let Some(p) = self.peers.get_mut(&region_id) {
                p.answer_reads();
            }
        }
        Ok(())
    }

    fn process_ready(&mut self, peer: &mut Peer) -> Result<()> {
        let was_leader = peer.is_leader();
        let mut rd = peer.node.ready();
        if let Some(ss) = rd.ss() {
            tracing::info!(
                region_id = peer.region.id,
                peer_id = peer.peer_id,
                term = peer.node.raft.term,
                role = ?ss.raft_state,
                leader = ss.leader_id,
                "raft role changed"
            );
        }
        // 1. Messages that need nothing durable (a leader's appends and
        //    heartbeats) go out at once.
        self.send_messages(peer, rd.take_messages());
        // 2. A snapshot from the leader replaces data and state.
        if !rd.snapshot().is_empty() {
            let s = rd.snapshot().clone();
            self.apply_snapshot(peer, &s)?;
        }
        peer.on_read_states(rd.take_read_states());
        let committed = rd.take_committed_entries();
        // 3. Entries and hard state, durable before anything depends on them.
        let mut wb = WriteBatch::default();
        if !rd.entries().is_empty() {
            peer.node.mut_store().append(rd.entries(), &mut wb);
        }
        if let Some(hs) = rd.hs() {
            peer.node.mut_store().set_hard_state(hs.clone(), &mut wb);
        }
        if !wb.is_empty() {
            self.engine.write(wb, true)?;
        }
        // 4. Votes and append responses: only once durable.
        self.send_messages(peer, rd.take_persisted_messages());
        // 5. Apply what is committed.
        peer.apply(&self.engine, committed)?;
        let mut light = peer.node.advance(rd);
        if let Some(commit) = light.commit_index() {
            let mut wb = WriteBatch::default();
            peer.node.mut_store().set_commit(commit, &mut wb);
            self.engine.write(wb, false)?;
        }
        self.send_messages(peer, light.take_messages());
        peer.apply(&self.engine, light.take_committed_entries())?;
        peer.node.advance_apply();
        if was_leader && !peer.is_leader() {
            peer.fail_pending();
        }
        self.compact(peer)
    }

    /// Keeps the log bounded: entries every peer has are dropped, and at
    /// most [`LOG_RETAIN_ENTRIES`] are kept for a lagging peer (which then
    /// catches up by snapshot).
    fn compact(&self, peer: &mut Peer) -> Result<()> {
        let st = peer.node.store().apply_state;
        if st.applied < st.truncated_index + 2 * LOG_RETAIN_ENTRIES {
            return Ok(());
        }
        let floor = st.applied.saturating_sub(LOG_RETAIN_ENTRIES);
        let to = peer.min_matched().max(floor).min(st.applied - 1);
        if to > st.truncated_index + LOG_RETAIN_ENTRIES / 2 {
            let mut wb = WriteBatch::default();
            peer.node.mut_store().compact_to(to, &mut wb);
            self.engine.write(wb, false)?;
        }
        Ok(())
    }

    fn publish(&mut self) {
        let now = Instant::now();
        let last_active = &mut self.last_active;
        let mut meta = self.meta.write().unwrap_or_else(|p| p.into_inner());
        meta.regions = self
            .peers
            .values()
            .map(|p| {
                let me = p
                    .region
                    .peers
                    .iter()
                    .find(|x| x.id == p.peer_id)
                    .cloned()
                    .unwrap_or_default();
                let (mut pending_peers, mut down_peers) = (Vec::new(), Vec::new());
                if p.is_leader() {
                    let last = raft::Storage::last_index(p.node.store()).unwrap_or(0);
                    for x in p.region.peers.iter().filter(|x| x.id != p.peer_id) {
                        let seen = *last_active.entry(x.id).or_insert(now);
                        match p.node.raft.prs().get(x.id) {
                            Some(pr) if pr.recent_active => {
                                last_active.insert(x.id, now);
                                if pr.matched + 64 < last {
                                    pending_peers.push(*x);
                                }
                            }
                            // raft's check_quorum clears `recent_active` once
                            // per election timeout and the next heartbeat
                            // response sets it again: a peer is down only
                            // after a silence longer than that round trip.
                            Some(_) if now.duration_since(seen) >= DOWN_AFTER => {
                                down_peers.push((*x, now.duration_since(seen).as_secs()));
                            }
                            Some(_) => {}
                            None => pending_peers.push(*x),
                        }
                    }
                }
                (
                    p.region.id,
                    RegionStatus {
                        region: p.region.clone(),
                        peer: me,
                        is_leader: p.is_leader(),
                        leader: p.leader(),
                        applied: p.node.store().apply_state.applied,
                        term: p.node.raft.term,
                        truncated_index: p.node.store().apply_state.truncated_index,
                        readable: p.is_leader()
                            && raft::Storage::term(
                                p.node.store(),
                                p.node.store().apply_state.applied,
                            )
                            .is_ok_and(|t| t == p.node.raft.term),
                        lease_until: p.lease_valid(now).then_some(p.lease_until).flatten(),
                        pending_peers,
                        down_peers,
                    },
                )
            })
            .collect();
    }
}
