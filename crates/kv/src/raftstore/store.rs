//! The store: every region peer on this node, driven by one Raft loop on a
//! dedicated thread.
//!
//! ```text
//!  gRPC handlers ──Propose──► [channel] ──► Raft loop thread
//!                                            │ tick every TICK_MS
//!                                            │ for each peer with a Ready:
//!                                            │   persist entries + hard state (one fsync)
//!                                            │   apply committed entries (execute, write)
//!                                            │   answer the proposers
//!                                            ▼
//!                                      StoreMeta (regions, leaders) read by handlers
//! ```

use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use prost::Message as _;
use tiox_engine::{Cf, Engine, Snapshot as _, WriteBatch};
use tiox_proto::metapb;
use tokio::sync::oneshot;

use super::keys;
use super::log::PeerStorage;
use super::peer::{Callback, Peer, TICK_MS};
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
    /// Leader that has applied its own term's first entry: reads see
    /// every acknowledged write.
    pub readable: bool,
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

    /// A region's status.
    pub fn region(&self, region_id: u64) -> Option<RegionStatus> {
        self.meta
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .regions
            .get(&region_id)
            .cloned()
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

/// Loads every region of this store and starts the Raft loop thread.
pub fn start<E: Engine + Clone>(engine: E, store_id: u64) -> Result<StoreHandle> {
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
        let voters = region.peers.iter().map(|p| p.id).collect();
        let storage = PeerStorage::load(&engine, region_id, voters)?;
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
        engine,
        peers,
        meta,
    };
    lp.publish();
    std::thread::Builder::new()
        .name("raftstore".into())
        .spawn(move || lp.run(rx))
        .map_err(|e| Error::Engine(format!("cannot start the raft thread: {e}")))?;
    Ok(handle)
}

struct RaftLoop<E: Engine> {
    engine: E,
    peers: HashMap<u64, Peer>,
    meta: Arc<RwLock<StoreMeta>>,
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
                }
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
        if let StoreMsg::Propose {
            region_id,
            epoch,
            cmd,
            cb,
        } = msg
        {
            match self.peers.get_mut(&region_id) {
                Some(p) => p.propose(&cmd, epoch.as_ref(), cb),
                None => {
                    let _ = cb.send(Err(Error::Region(RegionError::RegionNotFound(region_id))));
                }
            }
        }
    }

    fn on_ready(&mut self) -> Result<()> {
        let mut changed = false;
        for peer in self.peers.values_mut() {
            if !peer.node.has_ready() {
                continue;
            }
            let was_leader = peer.is_leader();
            let mut rd = peer.node.ready();
            // Messages to other peers (replication, issue 5) would be sent
            // here; a single-replica group produces none.
            let _ = rd.take_messages();
            let committed = rd.take_committed_entries();
            let mut wb = WriteBatch::default();
            if !rd.entries().is_empty() {
                peer.node.mut_store().append(rd.entries(), &mut wb);
            }
            if let Some(hs) = rd.hs() {
                peer.node.mut_store().set_hard_state(hs.clone(), &mut wb);
            }
            if !wb.is_empty() {
                // The log must be durable before anything depends on it.
                self.engine.write(wb, true)?;
            }
            let _ = rd.take_persisted_messages();
            peer.apply(&self.engine, committed)?;
            let mut light = peer.node.advance(rd);
            if let Some(commit) = light.commit_index() {
                let mut wb = WriteBatch::default();
                peer.node.mut_store().set_commit(commit, &mut wb);
                self.engine.write(wb, false)?;
            }
            let _ = light.take_messages();
            peer.apply(&self.engine, light.take_committed_entries())?;
            peer.node.advance_apply();
            if was_leader && !peer.is_leader() {
                peer.fail_pending();
            }
            // Keep the in-memory log bounded (single replica: nobody needs
            // older entries; with followers this will consult their progress).
            let st = peer.node.store().apply_state;
            if peer.region.peers.len() == 1 && st.applied > st.truncated_index + 2048 {
                let mut wb = WriteBatch::default();
                peer.node.mut_store().compact_to(st.applied - 1024, &mut wb);
                self.engine.write(wb, false)?;
            }
            changed = true;
        }
        if changed {
            self.publish();
        }
        Ok(())
    }

    fn publish(&mut self) {
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
                (
                    p.region.id,
                    RegionStatus {
                        region: p.region.clone(),
                        peer: me,
                        is_leader: p.is_leader(),
                        leader: p.leader(),
                        applied: p.node.store().apply_state.applied,
                        readable: p.is_leader()
                            && raft::Storage::term(
                                p.node.store(),
                                p.node.store().apply_state.applied,
                            )
                            .is_ok_and(|t| t == p.node.raft.term),
                    },
                )
            })
            .collect();
    }
}
