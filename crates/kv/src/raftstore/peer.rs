//! One region's peer: the Raft node, the region descriptor, the proposals
//! and reads waiting on it, and the apply step itself (commands and
//! membership changes).
//!
//! Membership: a change is a `ConfChangeV2` entry whose context carries the
//! proposer's `conf_ver` and the metapb peers involved (raft only knows
//! peer ids; the descriptor needs their stores and roles). At apply every
//! replica checks the `conf_ver`, updates the descriptor (`conf_ver + 1`),
//! persists it with the applied index in one batch, and tells raft.
//!
//! Reads: the leader serves reads while it holds a lease. A lease starts
//! when a ReadIndex round that began at time T is confirmed by a quorum and
//! lasts until T + [`LEASE_MS`], shorter than the election timeout during
//! which followers that heard from the leader refuse to vote for anyone
//! else (raft's check_quorum). A transfer of leadership drops the lease
//! before it starts, and no round renews it while the transfer is in
//! progress or if it started before the drop (the transferee campaigns
//! without waiting for the followers' lease to run out).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use prost::Message as _;
use raft::eraftpb::{ConfChangeSingle, ConfChangeType, ConfChangeV2};
use raft::prelude::{Entry, EntryType};
use raft::{Config, RawNode, StateRole};
use tiox_engine::{Cf, Engine, Snapshot as _, WriteBatch};
use tiox_proto::metapb;
use tokio::sync::oneshot;

use super::keys;
use super::log::PeerStorage;
use crate::codec::{Reader, Writer};
use crate::command::{execute, Command, Response};
use crate::error::{Error, RegionError, Result};

/// Milliseconds per Raft tick.
pub const TICK_MS: u64 = 100;
/// Ticks without a leader's message before a follower campaigns.
pub const ELECTION_TICKS: usize = 10;
/// How long a confirmed ReadIndex round lets the leader serve reads
/// locally: 80% of the election timeout, leaving room for clock drift.
pub const LEASE_MS: u64 = TICK_MS * ELECTION_TICKS as u64 * 8 / 10;

/// What a proposer waits for.
pub type Callback = oneshot::Sender<Result<Response>>;
/// What a reader waits for: Ok once the leader may serve the read locally.
pub type ReadCallback = oneshot::Sender<Result<()>>;

/// One membership change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// Add (or promote to) a voter.
    AddVoter(metapb::Peer),
    /// Add a learner.
    AddLearner(metapb::Peer),
    /// Remove a peer.
    Remove(metapb::Peer),
}

impl Change {
    fn peer(&self) -> metapb::Peer {
        match self {
            Change::AddVoter(p) | Change::AddLearner(p) | Change::Remove(p) => *p,
        }
    }
}

/// Encodes a conf change's context.
fn encode_changes(conf_ver: u64, changes: &[Change]) -> Vec<u8> {
    let mut w = Writer::default();
    w.u64(conf_ver).u64(changes.len() as u64);
    for c in changes {
        let kind = match c {
            Change::AddVoter(_) => 0,
            Change::AddLearner(_) => 1,
            Change::Remove(_) => 2,
        };
        let p = c.peer();
        w.u8(kind).u64(p.id).u64(p.store_id);
    }
    w.0
}

fn decode_changes(b: &[u8]) -> Result<(u64, Vec<Change>)> {
    let mut r = Reader(b);
    let conf_ver = r.u64()?;
    let n = r.u64()?;
    let mut out = Vec::new();
    for _ in 0..n.min(64) {
        let kind = r.u8()?;
        let id = r.u64()?;
        let store_id = r.u64()?;
        let peer = |role: metapb::PeerRole| metapb::Peer {
            id,
            store_id,
            role: role as i32,
        };
        out.push(match kind {
            0 => Change::AddVoter(peer(metapb::PeerRole::Voter)),
            1 => Change::AddLearner(peer(metapb::PeerRole::Learner)),
            2 => Change::Remove(peer(metapb::PeerRole::Voter)),
            k => return Err(Error::Corrupted(format!("conf change kind {k}"))),
        });
    }
    Ok((conf_ver, out))
}

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
    /// ReadIndex rounds waiting for a quorum: context id -> (start, readers).
    reads_quorum: HashMap<u64, (Instant, Vec<ReadCallback>)>,
    /// Reads that arrived before this leader committed an entry of its
    /// term (raft drops ReadIndex then); issued as one round afterwards.
    reads_deferred: Vec<ReadCallback>,
    /// Confirmed reads waiting for the applied index to reach theirs.
    reads_apply: Vec<(u64, ReadCallback)>,
    /// Until when reads may be served locally (leader only).
    pub lease_until: Option<Instant>,
    lease_term: u64,
    /// Rounds that started before this instant never renew the lease: it
    /// was dropped for a leadership transfer, which bypasses the
    /// followers' lease check (a new leader may exist before T + lease).
    lease_floor: Option<Instant>,
    /// A conf change removed this peer: the loop destroys it.
    pub removed: bool,
    /// Peers seen as senders of messages (an uninitialized peer knows no
    /// other way to reach the leader).
    pub peer_cache: HashMap<u64, metapb::Peer>,
    /// Regions a split applied here created (descriptor and initial Raft
    /// state written); the loop starts their peers.
    pub split_new: Vec<metapb::Region>,
}

/// Raft configuration for a peer.
pub fn raft_config(peer_id: u64, applied: u64) -> Config {
    Config {
        id: peer_id,
        election_tick: ELECTION_TICKS,
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
    /// Creates the peer from its persisted storage (or an uninitialized
    /// one, see [`PeerStorage::uninitialized`]).
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
            reads_quorum: HashMap::new(),
            reads_apply: Vec::new(),
            reads_deferred: Vec::new(),
            lease_until: None,
            lease_term: 0,
            lease_floor: None,
            removed: false,
            peer_cache: HashMap::new(),
            split_new: Vec::new(),
        })
    }

    /// Whether the peer holds the region (not waiting for its snapshot).
    pub fn is_initialized(&self) -> bool {
        !self.region.peers.is_empty()
    }

    /// Replaces the region descriptor (memory only; callers stage it).
    pub fn set_region(&mut self, region: metapb::Region) {
        self.node.mut_store().region = region.clone();
        self.region = region;
    }

    /// Whether reads may be served locally now.
    pub fn lease_valid(&self, now: Instant) -> bool {
        self.is_leader()
            && !self.transferring()
            && self.lease_term == self.node.raft.term
            && self.lease_until.is_some_and(|t| now < t)
    }

    /// Drops the lease (before a leadership transfer, on stepping down);
    /// ReadIndex rounds already in flight will not renew it.
    pub fn drop_lease(&mut self) {
        self.lease_until = None;
        self.lease_floor = Some(Instant::now());
    }

    /// Whether a leadership transfer is in progress (no lease is taken or
    /// renewed meanwhile: the transferee campaigns without waiting for the
    /// followers' lease to run out).
    fn transferring(&self) -> bool {
        self.node.raft.lead_transferee.is_some()
    }

    /// Starts a ReadIndex round; `cb` gets Ok once the leader has confirmed
    /// its leadership with a quorum and applied up to the read index.
    pub fn read_index(&mut self, cb: ReadCallback) {
        if !self.is_leader() {
            let _ = cb.send(Err(Error::Region(RegionError::NotLeader {
                region_id: self.region.id,
                leader: self.leader(),
            })));
            return;
        }
        if self.lease_valid(Instant::now()) {
            let _ = cb.send(Ok(()));
            return;
        }
        self.reads_deferred.push(cb);
        self.issue_reads();
    }

    /// Starts one ReadIndex round for every deferred read, once raft will
    /// take it (leader with an entry of its term committed).
    pub fn issue_reads(&mut self) {
        if self.reads_deferred.is_empty()
            || !self.is_leader()
            || !self.node.raft.commit_to_current_term()
        {
            return;
        }
        self.next_proposal = self.next_proposal.wrapping_add(1);
        let id = self.next_proposal;
        self.node.read_index(id.to_be_bytes().to_vec());
        let cbs = std::mem::take(&mut self.reads_deferred);
        self.reads_quorum.insert(id, (Instant::now(), cbs));
    }

    /// Fails reads whose round was never confirmed (messages lost).
    pub fn expire_reads(&mut self, older_than: Duration) {
        let now = Instant::now();
        let expired: Vec<u64> = self
            .reads_quorum
            .iter()
            .filter(|(_, (at, _))| now.duration_since(*at) > older_than)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            if let Some((_, cbs)) = self.reads_quorum.remove(&id) {
                for cb in cbs {
                    let _ = cb.send(Err(Error::Region(RegionError::ServerIsBusy(
                        "leadership not confirmed by a quorum in time".into(),
                    ))));
                }
            }
        }
    }

    /// Takes the read states of a Ready: renews the lease and queues the
    /// reads until their index is applied.
    pub fn on_read_states(&mut self, states: Vec<raft::ReadState>) {
        for rs in states {
            let Ok(ctx) = <[u8; 8]>::try_from(&rs.request_ctx[..]) else {
                continue;
            };
            let Some((started, cbs)) = self.reads_quorum.remove(&u64::from_be_bytes(ctx)) else {
                continue;
            };
            if self.transferring() {
                self.lease_floor = Some(Instant::now());
            }
            let renews = self.is_leader()
                && !self.transferring()
                && self.lease_floor.is_none_or(|floor| started >= floor);
            if renews {
                let until = started + Duration::from_millis(LEASE_MS);
                if self.lease_term != self.node.raft.term
                    || self.lease_until.is_none_or(|t| t < until)
                {
                    self.lease_until = Some(until);
                    self.lease_term = self.node.raft.term;
                }
            }
            for cb in cbs {
                self.reads_apply.push((rs.index, cb));
            }
        }
    }

    /// Answers the reads whose index is applied.
    pub fn answer_reads(&mut self) {
        let applied = self.node.store().apply_state.applied;
        let mut i = 0;
        while i < self.reads_apply.len() {
            if self.reads_apply[i].0 <= applied {
                let (_, cb) = self.reads_apply.swap_remove(i);
                let _ = cb.send(Ok(()));
            } else {
                i += 1;
            }
        }
    }

    /// Proposes a membership change (leader only, one at a time).
    pub fn propose_conf_change(&mut self, changes: &[Change]) -> std::result::Result<(), String> {
        if !self.is_leader() {
            return Err("not the leader".into());
        }
        if self.node.raft.has_pending_conf()
            || self.node.raft.pending_conf_index > self.node.store().apply_state.applied
        {
            return Err("a membership change is in progress".into());
        }
        let mut cc = ConfChangeV2::default();
        for c in changes {
            let mut single = ConfChangeSingle {
                node_id: c.peer().id,
                ..Default::default()
            };
            single.set_change_type(match c {
                Change::AddVoter(_) => ConfChangeType::AddNode,
                Change::AddLearner(_) => ConfChangeType::AddLearnerNode,
                Change::Remove(_) => ConfChangeType::RemoveNode,
            });
            cc.changes.push(single);
        }
        let conf_ver = self.region.region_epoch.unwrap_or_default().conf_ver;
        self.node
            .propose_conf_change(encode_changes(conf_ver, changes), cc)
            .map_err(|e| e.to_string())
    }

    /// Applies a committed membership change to the descriptor and raft.
    fn apply_conf_change(&mut self, index: u64, entry: &Entry, wb: &mut WriteBatch) {
        let region_id = self.region.id;
        let cc = match entry.get_entry_type() {
            EntryType::EntryConfChangeV2 => {
                match <ConfChangeV2 as protobuf::Message>::parse_from_bytes(&entry.data) {
                    Ok(cc) => cc,
                    Err(e) => {
                        tracing::error!(region_id, index, "undecodable conf change skipped: {e}");
                        return;
                    }
                }
            }
            _ => {
                tracing::error!(
                    region_id,
                    index,
                    "v1 conf change entry skipped (tiox proposes v2 only)"
                );
                return;
            }
        };
        if cc.changes.is_empty() {
            // Leaving a joint configuration (not proposed by tiox).
            if let Ok(cs) = self.node.apply_conf_change(&cc) {
                self.node.mut_store().set_conf_state(cs);
            }
            return;
        }
        let (conf_ver, changes) = match decode_changes(&entry.context) {
            Ok(x) => x,
            Err(e) => {
                tracing::error!(
                    region_id,
                    index,
                    "conf change context undecodable, skipped: {e}"
                );
                return;
            }
        };
        let mut region = self.region.clone();
        let mut epoch = region.region_epoch.unwrap_or_default();
        if conf_ver != epoch.conf_ver {
            tracing::warn!(
                region_id,
                index,
                conf_ver,
                current = epoch.conf_ver,
                "stale conf change skipped"
            );
            return;
        }
        let cs = match self.node.apply_conf_change(&cc) {
            Ok(cs) => cs,
            Err(e) => {
                tracing::warn!(region_id, index, "conf change refused by raft: {e}");
                return;
            }
        };
        for c in &changes {
            match c {
                Change::AddVoter(p) | Change::AddLearner(p) => {
                    match region.peers.iter_mut().find(|x| x.id == p.id) {
                        Some(x) => x.role = p.role,
                        None => region.peers.push(*p),
                    }
                }
                Change::Remove(p) => {
                    region.peers.retain(|x| x.id != p.id);
                    if p.id == self.peer_id {
                        self.removed = true;
                    }
                }
            }
        }
        epoch.conf_ver += 1;
        region.region_epoch = Some(epoch);
        tracing::info!(
            region_id,
            index,
            ?changes,
            conf_ver = epoch.conf_ver,
            "membership changed"
        );
        self.node.mut_store().set_conf_state(cs);
        self.set_region(region);
        self.stage_region(wb);
    }

    /// A learner whose log has caught up, to promote to voter.
    pub fn learner_to_promote(&self) -> Option<metapb::Peer> {
        if !self.is_leader() {
            return None;
        }
        self.region
            .peers
            .iter()
            .filter(|p| p.role == metapb::PeerRole::Learner as i32)
            .find(|p| self.caught_up(p.id))
            .copied()
    }

    /// Whether peer `id` has matched the log to within 16 entries of the
    /// commit index (leader's view).
    pub fn caught_up(&self, id: u64) -> bool {
        let committed = self.node.raft.raft_log.committed;
        self.is_leader()
            && self
                .node
                .raft
                .prs()
                .get(id)
                .is_some_and(|pr| pr.matched + 16 >= committed && pr.matched > 0)
    }

    /// The lowest log index any peer still needs (leader), or the applied
    /// index (follower).
    pub fn min_matched(&self) -> u64 {
        let applied = self.node.store().apply_state.applied;
        if !self.is_leader() {
            return applied;
        }
        self.node
            .raft
            .prs()
            .iter()
            .filter(|(id, _)| **id != self.peer_id)
            .map(|(_, pr)| pr.matched)
            .min()
            .unwrap_or(applied)
            .min(applied)
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
    pub fn propose(&mut self, mut cmd: Command, epoch: Option<&metapb::RegionEpoch>, cb: Callback) {
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
        cmd.version = self.region.region_epoch.unwrap_or_default().version;
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

    /// Fails every waiting proposal and read (leadership lost: they may
    /// never apply).
    pub fn fail_pending(&mut self) {
        for (_, cb) in self.pending.drain() {
            let _ = cb.send(Err(Error::Region(RegionError::StaleCommand)));
        }
        let leader = self.leader();
        let waiting = self
            .reads_quorum
            .drain()
            .flat_map(|(_, (_, cbs))| cbs)
            .chain(self.reads_deferred.drain(..));
        for cb in waiting {
            let _ = cb.send(Err(Error::Region(RegionError::NotLeader {
                region_id: self.region.id,
                leader,
            })));
        }
        for (_, cb) in self.reads_apply.drain(..) {
            let _ = cb.send(Err(Error::Region(RegionError::NotLeader {
                region_id: self.region.id,
                leader,
            })));
        }
        self.lease_until = None;
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
                    let version = self.region.region_epoch.unwrap_or_default().version;
                    let resp = match &cmd {
                        // Proposed before a split that has applied since:
                        // its keys may belong to another region now.
                        Ok(cmd) if cmd.version != 0 && cmd.version != version => {
                            Err(Error::Region(RegionError::EpochNotMatch(vec![self
                                .region
                                .clone()])))
                        }
                        Ok(Command {
                            split: Some(split), ..
                        }) => self.apply_split(engine, index, split, &mut wb),
                        Ok(cmd) => {
                            let snap = engine.snapshot();
                            let (resp, writes) = execute(cmd, &snap, &self.region);
                            wb = writes;
                            Ok(resp)
                        }
                        Err(e) => {
                            tracing::error!(
                                region = self.region.id,
                                index,
                                "undecodable log entry skipped: {e}"
                            );
                            Ok(Response::RawPut(Default::default()))
                        }
                    };
                    if entry.context.len() == 8 {
                        let id =
                            u64::from_be_bytes(entry.context[..8].try_into().unwrap_or_default());
                        reply = self.pending.remove(&id).map(|cb| (cb, resp));
                    }
                }
                EntryType::EntryConfChange | EntryType::EntryConfChangeV2 => {
                    self.apply_conf_change(index, &entry, &mut wb);
                }
                _ => {}
            }
            let store = self.node.mut_store();
            store.apply_state.applied = index;
            store.stage_apply_state(&mut wb);
            engine.write(wb, false)?;
            if let Some((cb, resp)) = reply {
                let _ = cb.send(resp);
            }
        }
        Ok(())
    }

    /// Applies a split: the descriptor shrinks to the left part, the new
    /// regions' descriptors and initial Raft state are staged in the same
    /// batch as the applied index (see [`super::split`]). Deterministic:
    /// every replica decides the same from the log.
    fn apply_split<E: Engine>(
        &mut self,
        engine: &E,
        index: u64,
        split: &super::split::BatchSplit,
        wb: &mut WriteBatch,
    ) -> Result<Response> {
        let region_id = self.region.id;
        let regions = match super::split::split_regions(&self.region, split) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(region_id, index, "split refused: {e}");
                return Err(Error::InvalidRequest(format!(
                    "split of region {region_id} refused: {e}"
                )));
            }
        };
        let snap = engine.snapshot();
        for new in &regions[1..] {
            let exists = snap.get(Cf::Raft, &keys::region_meta(new.id))?.is_some()
                || snap.get(Cf::Raft, &keys::tombstone(new.id))?.is_some();
            if exists {
                // Created here before (or created and removed since).
                tracing::info!(
                    region_id,
                    new_region_id = new.id,
                    "split: the new region already exists on this store"
                );
                continue;
            }
            wb.put(Cf::Raft, keys::region_meta(new.id), encode_region(new));
            PeerStorage::initial(new.id, Vec::new()).write_all(wb);
            self.split_new.push(new.clone());
        }
        tracing::info!(
            region_id,
            index,
            regions = ?regions.iter().map(|r| (r.id, r.start_key.clone(), r.end_key.clone())).collect::<Vec<_>>(),
            "region split"
        );
        self.set_region(regions[0].clone());
        self.stage_region(wb);
        Ok(Response::Split(regions))
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
