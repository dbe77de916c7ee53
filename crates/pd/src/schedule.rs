//! Scheduling basics: the operator PD answers a region heartbeat with.
//!
//! Rules, checked in order for the reporting region:
//! 1. a learner that has caught up (not pending, not down): promote it —
//!    PD adds a replica as a learner first, so the quorum never waits for a
//!    peer still receiving its snapshot;
//! 2. fewer healthy peers than `max-replicas` (a peer is unhealthy when its
//!    leader has reported it down, or its store has not heartbeated, for
//!    `[schedule] max-store-down-time`) and an alive store without a peer
//!    of the region: add a learner there (the store holding the fewest
//!    peers);
//! 3. more peers than `max-replicas`: remove a follower (an unhealthy one
//!    first) — so a dead store's peer is replaced, then dropped;
//! 4. leader balance: if the leader's store leads at least two regions more
//!    than an alive follower's store, transfer the leadership there (never
//!    to a pending, down or learner peer).
//!
//! Pure: reads the metadata and a time, returns a decision; the caller
//! allocates (or reuses, for an operator in flight) ids and builds the
//! `RegionHeartbeatResponse`.

use std::collections::HashMap;

use tiox_proto::metapb;

use crate::meta::{Meta, RegionInfo};

/// A store counts as alive (a target for new replicas) if it sent a
/// heartbeat this recently (stores heartbeat every 10 s).
pub const STORE_ALIVE_MS: u64 = 60_000;

/// Default `[schedule] max-store-down-time`: a store silent this long, or
/// a peer its leader reports down this long, is replaced.
pub const DEFAULT_MAX_STORE_DOWN_MS: u64 = 60_000;

/// What PD asks a region's leader to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Operator {
    /// Add a learner on this store (the caller allocates the peer id, or
    /// reuses the one of the same operator still in flight).
    AddLearner {
        /// The target store.
        store_id: u64,
    },
    /// Promote this caught-up learner to voter.
    PromoteLearner(metapb::Peer),
    /// Remove this peer.
    RemovePeer(metapb::Peer),
    /// Move the leadership to this peer.
    TransferLeader(metapb::Peer),
}

fn alive(meta: &Meta, store_id: u64, now_ms: u64) -> bool {
    meta.store(store_id).is_ok_and(|s| {
        s.store.state == metapb::StoreState::Up as i32
            && s.last_heartbeat_ms > 0
            && now_ms.saturating_sub(s.last_heartbeat_ms) <= STORE_ALIVE_MS
    })
}

fn is_pending(region: &RegionInfo, p: &metapb::Peer) -> bool {
    region.pending_peers.iter().any(|x| x.id == p.id)
}

fn down_secs(region: &RegionInfo, p: &metapb::Peer) -> Option<u64> {
    region
        .down_peers
        .iter()
        .find(|d| d.peer.is_some_and(|x| x.id == p.id))
        .map(|d| d.down_seconds)
}

/// Whether a peer is lost for scheduling purposes.
fn unhealthy(
    meta: &Meta,
    region: &RegionInfo,
    p: &metapb::Peer,
    now_ms: u64,
    max_down_ms: u64,
) -> bool {
    let silent = meta.store(p.store_id).map_or(true, |s| {
        s.store.state != metapb::StoreState::Up as i32
            || s.last_heartbeat_ms == 0
            || now_ms.saturating_sub(s.last_heartbeat_ms) > max_down_ms.max(STORE_ALIVE_MS)
    });
    silent || down_secs(region, p).is_some_and(|s| s.saturating_mul(1000) >= max_down_ms)
}

/// The operator for `region`, if any; `max_down_ms` is
/// `[schedule] max-store-down-time`.
pub fn check(meta: &Meta, region: &RegionInfo, now_ms: u64, max_down_ms: u64) -> Option<Operator> {
    let max = meta.cluster.max_peer_count.max(1) as usize;
    let peers = &region.region.peers;
    let learner = metapb::PeerRole::Learner as i32;
    if let Some(l) = peers.iter().find(|p| {
        p.role == learner
            && !is_pending(region, p)
            && down_secs(region, p).is_none()
            && alive(meta, p.store_id, now_ms)
    }) {
        return Some(Operator::PromoteLearner(*l));
    }
    let healthy = peers
        .iter()
        .filter(|p| !unhealthy(meta, region, p, now_ms, max_down_ms))
        .count();
    if healthy < max {
        let mut load: HashMap<u64, usize> = HashMap::new();
        for r in meta.regions() {
            for p in &r.region.peers {
                *load.entry(p.store_id).or_default() += 1;
            }
        }
        let target = meta
            .stores()
            .map(|s| s.store.id)
            .filter(|id| alive(meta, *id, now_ms) && !peers.iter().any(|p| p.store_id == *id))
            .min_by_key(|id| (load.get(id).copied().unwrap_or(0), *id));
        if let Some(store_id) = target {
            return Some(Operator::AddLearner { store_id });
        }
    }
    let leader_store = region.leader.as_ref().map(|l| l.store_id);
    if peers.len() > max {
        let mut followers = peers.iter().filter(|p| Some(p.store_id) != leader_store);
        let victim = followers
            .clone()
            .find(|p| unhealthy(meta, region, p, now_ms, max_down_ms))
            .or_else(|| followers.next_back());
        if let Some(p) = victim {
            return Some(Operator::RemovePeer(*p));
        }
    }
    let leader_store = leader_store?;
    let mut leaders: HashMap<u64, usize> = HashMap::new();
    for r in meta.regions() {
        if let Some(l) = &r.leader {
            *leaders.entry(l.store_id).or_default() += 1;
        }
    }
    let mine = leaders.get(&leader_store).copied().unwrap_or(0);
    let best = peers
        .iter()
        .filter(|p| p.store_id != leader_store && alive(meta, p.store_id, now_ms))
        .filter(|p| p.role == metapb::PeerRole::Voter as i32)
        .filter(|p| !is_pending(region, p) && down_secs(region, p).is_none())
        .min_by_key(|p| (leaders.get(&p.store_id).copied().unwrap_or(0), p.store_id))?;
    if leaders.get(&best.store_id).copied().unwrap_or(0) + 2 <= mine {
        return Some(Operator::TransferLeader(*best));
    }
    None
}
