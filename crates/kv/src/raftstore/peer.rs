//! One region's peer: the Raft node, the region descriptor, the proposals
//! waiting for their entries to apply, and the apply step itself.

use std::collections::HashMap;

use prost::Message as _;
use raft::prelude::{Entry, EntryType};
use raft::{Config, RawNode, StateRole};
use tiox_engine::{Cf, Engine, WriteBatch};
use tiox_proto::metapb;
use tokio::sync::oneshot;

use super::keys;
use super::log::PeerStorage;
use crate::command::{execute, Command, Response};
use crate::error::{Error, RegionError, Result};

/// Milliseconds per Raft tick.
pub const TICK_MS: u64 = 100;

/// What a proposer waits for.
pub type Callback = oneshot::Sender<Result<Response>>;

/// A region's peer on this store.
pub struct Peer {
    /// The region descriptor.
    pub region: metapb::Region,
    /// Our peer id in it.
    pub peer_id: u64,
    /// The Raft node.
    pub node: RawNode<PeerStorage>,
    pending: HashMap<u64, Callback>,
    next_proposal: u64,
}

/// Raft configuration for a peer.
pub fn raft_config(peer_id: u64, applied: u64) -> Config {
    Config {
        id: peer_id,
        election_tick: 10,
        heartbeat_tick: 2,
        applied,
        max_size_per_msg: 1024 * 1024,
        max_inflight_msgs: 256,
        check_quorum: true,
        pre_vote: true,
        ..Default::default()
    }
}

fn logger() -> slog::Logger {
    slog::Logger::root(slog::Discard, slog::o!())
}

/// Encodes a region descriptor for storage.
pub fn encode_region(region: &metapb::Region) -> Vec<u8> {
    region.encode_to_vec()
}

impl Peer {
    /// Creates the peer from its persisted storage.
    pub fn new(region: metapb::Region, peer_id: u64, storage: PeerStorage) -> Result<Peer> {
        let applied = storage.apply_state.applied;
        let cfg = raft_config(peer_id, applied);
        cfg.validate()
            .map_err(|e| Error::Corrupted(format!("raft config: {e}")))?;
        let node = RawNode::new(&cfg, storage, &logger())
            .map_err(|e| Error::Corrupted(format!("raft node of region {}: {e}", region.id)))?;
        // A process-unique starting point so that ids of proposals made
        // before a restart can never match new ones.
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        Ok(Peer {
            region,
            peer_id,
            node,
            pending: HashMap::new(),
            next_proposal: seed,
        })
    }

    /// Whether this peer leads the region.
    pub fn is_leader(&self) -> bool {
        self.node.raft.state == StateRole::Leader
    }

    /// The leader's peer descriptor, if known.
    pub fn leader(&self) -> Option<metapb::Peer> {
        let id = self.node.raft.leader_id;
        self.region.peers.iter().find(|p| p.id == id).cloned()
    }

    /// Proposes a command; `cb` gets the response once applied.
    pub fn propose(&mut self, cmd: &Command, epoch: Option<&metapb::RegionEpoch>, cb: Callback) {
        if !self.is_leader() {
            let _ = cb.send(Err(Error::Region(RegionError::NotLeader {
                region_id: self.region.id,
                leader: self.leader(),
            })));
            return;
        }
        if let Some(e) = epoch {
            let cur = self.region.region_epoch.unwrap_or_default();
            if e.version != cur.version || e.conf_ver != cur.conf_ver {
                let _ = cb.send(Err(Error::Region(RegionError::EpochNotMatch(vec![self
                    .region
                    .clone()]))));
                return;
            }
        }
        self.next_proposal = self.next_proposal.wrapping_add(1);
        let id = self.next_proposal;
        match self
            .node
            .propose(id.to_be_bytes().to_vec(), cmd.encode_to_vec())
        {
            Ok(()) => {
                self.pending.insert(id, cb);
            }
            Err(e) => {
                let _ = cb.send(Err(Error::Region(RegionError::ServerIsBusy(format!(
                    "raft refused the proposal: {e}"
                )))));
            }
        }
    }

    /// Fails every waiting proposal (leadership lost: they may never apply).
    pub fn fail_pending(&mut self) {
        for (_, cb) in self.pending.drain() {
            let _ = cb.send(Err(Error::Region(RegionError::StaleCommand)));
        }
    }

    /// Applies committed entries in order: executes each command against
    /// the engine and writes its changes together with the applied index.
    pub fn apply<E: Engine>(&mut self, engine: &E, entries: Vec<Entry>) -> Result<()> {
        for entry in entries {
            let index = entry.index;
            let mut wb = WriteBatch::default();
            let mut reply = None;
            match entry.get_entry_type() {
                EntryType::EntryNormal if !entry.data.is_empty() => {
                    let cmd = Command::decode(&entry.data[..]);
                    let snap = engine.snapshot();
                    let (resp, writes) = match &cmd {
                        Ok(cmd) => execute(cmd, &snap, &self.region),
                        Err(e) => {
                            tracing::error!(
                                region = self.region.id,
                                index,
                                "undecodable log entry skipped: {e}"
                            );
                            (Response::RawPut(Default::default()), WriteBatch::default())
                        }
                    };
                    wb = writes;
                    if entry.context.len() == 8 {
                        let id =
                            u64::from_be_bytes(entry.context[..8].try_into().unwrap_or_default());
                        reply = self.pending.remove(&id).map(|cb| (cb, resp));
                    }
                }
                EntryType::EntryConfChange | EntryType::EntryConfChangeV2 => {
                    // Membership changes arrive with replication (issue 5);
                    // a single-replica region never proposes one.
                    tracing::warn!(
                        region = self.region.id,
                        index,
                        "conf change entry ignored (not supported yet)"
                    );
                }
                _ => {}
            }
            let store = self.node.mut_store();
            store.apply_state.applied = index;
            store.stage_apply_state(&mut wb);
            engine.write(wb, false)?;
            if let Some((cb, resp)) = reply {
                let _ = cb.send(Ok(resp));
            }
        }
        Ok(())
    }

    /// Stages the region descriptor.
    pub fn stage_region(&self, wb: &mut WriteBatch) {
        wb.put(
            Cf::Raft,
            keys::region_meta(self.region.id),
            encode_region(&self.region),
        );
    }
}
