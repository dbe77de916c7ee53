//! A peer's Raft log and state, persisted in the engine's `raft` column
//! family and cached in memory: the `raft::Storage` the Raft core reads.
//!
//! Writes are staged into a [`WriteBatch`] by the caller (the Ready loop),
//! which makes them durable with one fsync before any message that depends
//! on them leaves the store.

use std::sync::Arc;

use protobuf::Message as _;
use raft::prelude::{ConfState, Entry, HardState, Snapshot as RaftSnapshot};
use raft::{GetEntriesContext, RaftState, StorageError};
use tiox_engine::{Cf, Engine, Snapshot as _, WriteBatch};
use tiox_proto::metapb;

use super::keys;
use crate::codec::{Reader, Writer};
use crate::error::{Error, Result};

/// Index and term a freshly bootstrapped region starts from (as TiKV).
pub const RAFT_INIT_LOG_INDEX: u64 = 5;
/// The term of the initial state.
pub const RAFT_INIT_LOG_TERM: u64 = 5;

/// Applied index and log truncation point.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ApplyState {
    /// Last applied index.
    pub applied: u64,
    /// Entries up to this index are compacted away.
    pub truncated_index: u64,
    /// Term of the truncated index.
    pub truncated_term: u64,
}

impl ApplyState {
    /// Serializes.
    pub fn to_bytes(self) -> Vec<u8> {
        let mut w = Writer::default();
        w.u64(self.applied)
            .u64(self.truncated_index)
            .u64(self.truncated_term);
        w.0
    }
    /// Deserializes.
    pub fn from_bytes(b: &[u8]) -> Result<ApplyState> {
        let mut r = Reader(b);
        Ok(ApplyState {
            applied: r.u64()?,
            truncated_index: r.u64()?,
            truncated_term: r.u64()?,
        })
    }
}

/// Builds a region's snapshot data (`raftstore::snap`) from the engine as
/// it is now, which is the state at the applied index: the Raft loop applies
/// synchronously on the thread that asks for snapshots.
pub type SnapGen = Arc<dyn Fn(&metapb::Region) -> Result<Vec<u8>> + Send + Sync>;

/// The conf state a region descriptor describes.
pub fn conf_state_of(region: &metapb::Region) -> ConfState {
    let mut cs = ConfState::default();
    for p in &region.peers {
        if p.role == metapb::PeerRole::Learner as i32 {
            cs.learners.push(p.id);
        } else {
            cs.voters.push(p.id);
        }
    }
    cs
}

/// The Raft storage of one peer.
pub struct PeerStorage {
    region_id: u64,
    /// The region as last applied (what a snapshot carries).
    pub region: metapb::Region,
    snap_gen: Option<SnapGen>,
    hard_state: HardState,
    conf_state: ConfState,
    /// Entries after the truncation point, in order.
    entries: Vec<Entry>,
    /// What is applied and truncated.
    pub apply_state: ApplyState,
}

fn storage_err(e: impl std::fmt::Display) -> raft::Error {
    raft::Error::Store(StorageError::Other(Box::new(std::io::Error::other(
        e.to_string(),
    ))))
}

impl PeerStorage {
    /// The state of a peer created for a message from a region this store
    /// does not hold yet: empty log, no members; the leader sends it a
    /// snapshot.
    pub fn uninitialized(region_id: u64, snap_gen: Option<SnapGen>) -> PeerStorage {
        PeerStorage {
            region_id,
            region: metapb::Region {
                id: region_id,
                ..Default::default()
            },
            snap_gen,
            hard_state: HardState::default(),
            conf_state: ConfState::default(),
            entries: Vec::new(),
            apply_state: ApplyState::default(),
        }
    }

    /// Whether the peer holds the region's data (bootstrapped or from a
    /// snapshot).
    pub fn is_initialized(&self) -> bool {
        !self.region.peers.is_empty()
    }

    /// The state of a brand-new region with these voters.
    pub fn initial(region_id: u64, voters: Vec<u64>) -> PeerStorage {
        let mut hs = HardState::default();
        hs.set_term(RAFT_INIT_LOG_TERM);
        hs.set_commit(RAFT_INIT_LOG_INDEX);
        let mut cs = ConfState::default();
        cs.set_voters(voters);
        PeerStorage {
            region_id,
            region: metapb::Region::default(),
            snap_gen: None,
            hard_state: hs,
            conf_state: cs,
            entries: Vec::new(),
            apply_state: ApplyState {
                applied: RAFT_INIT_LOG_INDEX,
                truncated_index: RAFT_INIT_LOG_INDEX,
                truncated_term: RAFT_INIT_LOG_TERM,
            },
        }
    }

    /// Stages the whole state (for a new region).
    pub fn write_all(&self, wb: &mut WriteBatch) {
        wb.put(
            Cf::Raft,
            keys::hard_state(self.region_id),
            self.hard_state.write_to_bytes().unwrap_or_default(),
        );
        wb.put(
            Cf::Raft,
            keys::apply_state(self.region_id),
            self.apply_state.to_bytes(),
        );
    }

    /// Loads a peer's state from the engine. The members come from the
    /// region descriptor (membership changes rewrite it at apply, together
    /// with the applied index).
    pub fn load<E: Engine>(
        engine: &E,
        region: &metapb::Region,
        snap_gen: Option<SnapGen>,
    ) -> Result<PeerStorage> {
        let region_id = region.id;
        let snap = engine.snapshot();
        let hs = match snap.get(Cf::Raft, &keys::hard_state(region_id))? {
            Some(b) => HardState::parse_from_bytes(&b)
                .map_err(|e| Error::Corrupted(format!("hard state: {e}")))?,
            None => {
                return Err(Error::Corrupted(format!(
                    "region {region_id} has no hard state"
                )))
            }
        };
        let apply_state = match snap.get(Cf::Raft, &keys::apply_state(region_id))? {
            Some(b) => ApplyState::from_bytes(&b)?,
            None => {
                return Err(Error::Corrupted(format!(
                    "region {region_id} has no apply state"
                )))
            }
        };
        let lower = keys::entry(region_id, apply_state.truncated_index + 1);
        let upper = keys::entry(region_id, u64::MAX);
        let mut entries = Vec::new();
        for kv in snap.iter(
            Cf::Raft,
            std::ops::Bound::Included(&lower),
            std::ops::Bound::Excluded(&upper),
            false,
        ) {
            let (_, v) = kv?;
            let e = Entry::parse_from_bytes(&v)
                .map_err(|e| Error::Corrupted(format!("raft entry: {e}")))?;
            if let Some(last) = entries.last() {
                let last: &Entry = last;
                if e.index != last.index + 1 {
                    break;
                }
            }
            entries.push(e);
        }
        Ok(PeerStorage {
            region_id,
            region: region.clone(),
            snap_gen,
            hard_state: hs,
            conf_state: conf_state_of(region),
            entries,
            apply_state,
        })
    }

    /// Stages new entries (replacing any conflicting suffix).
    pub fn append(&mut self, new: &[Entry], wb: &mut WriteBatch) {
        let Some(first) = new.first() else { return };
        let keep = self
            .entries
            .iter()
            .take_while(|e| e.index < first.index)
            .count();
        for old in &self.entries[keep..] {
            if old.index > new.last().map_or(0, |e| e.index) {
                wb.delete(Cf::Raft, keys::entry(self.region_id, old.index));
            }
        }
        self.entries.truncate(keep);
        for e in new {
            wb.put(
                Cf::Raft,
                keys::entry(self.region_id, e.index),
                e.write_to_bytes().unwrap_or_default(),
            );
            self.entries.push(e.clone());
        }
    }

    /// Stages a new hard state.
    pub fn set_hard_state(&mut self, hs: HardState, wb: &mut WriteBatch) {
        self.hard_state = hs;
        wb.put(
            Cf::Raft,
            keys::hard_state(self.region_id),
            self.hard_state.write_to_bytes().unwrap_or_default(),
        );
    }

    /// Records a new commit index (staged with the hard state).
    pub fn set_commit(&mut self, commit: u64, wb: &mut WriteBatch) {
        let mut hs = self.hard_state.clone();
        hs.set_commit(commit);
        self.set_hard_state(hs, wb);
    }

    /// Stages the apply state.
    pub fn stage_apply_state(&self, wb: &mut WriteBatch) {
        wb.put(
            Cf::Raft,
            keys::apply_state(self.region_id),
            self.apply_state.to_bytes(),
        );
    }

    /// Replaces the log and state with a snapshot's (the caller writes the
    /// snapshot's data and region descriptor into the same batch).
    pub fn apply_snapshot(&mut self, snap: &RaftSnapshot, wb: &mut WriteBatch) {
        let meta = snap.get_metadata();
        for e in &self.entries {
            wb.delete(Cf::Raft, keys::entry(self.region_id, e.index));
        }
        self.entries.clear();
        self.apply_state = ApplyState {
            applied: meta.index,
            truncated_index: meta.index,
            truncated_term: meta.term,
        };
        self.stage_apply_state(wb);
        let mut hs = self.hard_state.clone();
        hs.set_commit(hs.commit.max(meta.index));
        hs.set_term(hs.term.max(meta.term));
        self.set_hard_state(hs, wb);
        self.conf_state = meta.get_conf_state().clone();
    }

    /// Replaces the whole conf state.
    pub fn set_conf_state(&mut self, cs: ConfState) {
        self.conf_state = cs;
    }

    /// Drops entries up to `index` (log compaction), staging the deletes.
    pub fn compact_to(&mut self, index: u64, wb: &mut WriteBatch) {
        if index <= self.apply_state.truncated_index || index > self.apply_state.applied {
            return;
        }
        let Ok(term) = raft::Storage::term(self, index) else {
            return;
        };
        for e in self.entries.iter().take_while(|e| e.index <= index) {
            wb.delete(Cf::Raft, keys::entry(self.region_id, e.index));
        }
        self.entries.retain(|e| e.index > index);
        self.apply_state.truncated_index = index;
        self.apply_state.truncated_term = term;
        self.stage_apply_state(wb);
    }

    /// The entries held (for tests and tikv-ctl).
    pub fn entry_count(&self) -> usize {
        self.entries.len()
    }
}

impl raft::Storage for PeerStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState {
            hard_state: self.hard_state.clone(),
            conf_state: self.conf_state.clone(),
        })
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _ctx: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let first = self.apply_state.truncated_index + 1;
        if low < first {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        let last = self
            .entries
            .last()
            .map_or(self.apply_state.truncated_index, |e| e.index);
        if high > last + 1 {
            return Err(storage_err(format!(
                "entries [{low}, {high}) beyond last index {last}"
            )));
        }
        let offset = (low - first) as usize;
        let mut out: Vec<Entry> = self.entries[offset..(high - first) as usize].to_vec();
        if let Some(max) = max_size.into() {
            let mut size = 0u64;
            let mut n = 0;
            for e in &out {
                size += u64::from(protobuf::Message::compute_size(e));
                if n > 0 && size > max {
                    break;
                }
                n += 1;
            }
            out.truncate(n.max(1));
        }
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx == self.apply_state.truncated_index {
            return Ok(self.apply_state.truncated_term);
        }
        if idx < self.apply_state.truncated_index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        let first = self.apply_state.truncated_index + 1;
        match self.entries.get((idx - first) as usize) {
            Some(e) => Ok(e.term),
            None => Err(raft::Error::Store(StorageError::Unavailable)),
        }
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.apply_state.truncated_index + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self
            .entries
            .last()
            .map_or(self.apply_state.truncated_index, |e| e.index))
    }

    fn snapshot(&self, _request_index: u64, _to: u64) -> raft::Result<RaftSnapshot> {
        // The engine holds exactly the applied state (apply is synchronous
        // on the thread raft calls this from), so the snapshot is taken at
        // the applied index, with the conf state of that index.
        let Some(gen) = &self.snap_gen else {
            return Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        };
        let index = self.apply_state.applied;
        let term = raft::Storage::term(self, index)?;
        let data = gen(&self.region).map_err(storage_err)?;
        let mut snap = RaftSnapshot {
            data: data.into(),
            ..Default::default()
        };
        let meta = snap.mut_metadata();
        meta.index = index;
        meta.term = term;
        meta.set_conf_state(self.conf_state.clone());
        Ok(snap)
    }
}
