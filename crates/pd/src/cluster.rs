//! The PD core: one state machine that owns the durable storage, the
//! metadata, the TSO and the id allocator, and answers every request the
//! gRPC and HTTP layers receive.
//!
//! ```text
//!  gRPC (pdpb.PD) ─┐                  ┌─► Meta (stores, regions, GC)
//!                  ├─► Cluster::xxx ──┼─► TsoAllocator
//!  HTTP (/pd/api) ─┘    (now passed)  ├─► IdAllocator
//!                                     └─► Storage (fsynced log)
//! ```
//!
//! Deterministic: no sockets, no clocks; every method that depends on time
//! takes `now_ms`. The server wraps it in a mutex and passes the wall clock.

use std::path::Path;

use tiox_proto::{eraftpb, metapb, pdpb};

use crate::error::Result;
use crate::id::{IdAllocator, DEFAULT_STEP};
use crate::meta::{Meta, RegionInfo};
use crate::schedule::{self, Operator};
use crate::storage::Storage;
use crate::tso::{Timestamp, TsoAllocator, DEFAULT_WINDOW_MS};

/// The PD state machine.
#[derive(Debug)]
pub struct Cluster {
    storage: Storage,
    /// Cluster metadata.
    pub meta: Meta,
    tso: TsoAllocator,
    ids: IdAllocator,
    /// Add-a-replica operators in flight, by region: the learner PD asked
    /// for and when. Every heartbeat until the learner appears gets the
    /// same peer id (not a fresh one each time); forgotten after
    /// [`OPERATOR_TIMEOUT_MS`] or once the region has a peer on the store.
    adding: std::collections::HashMap<u64, (metapb::Peer, u64)>,
    /// `[schedule] max-store-down-time` in ms.
    max_store_down_ms: u64,
    /// The etcd key space (etcd v3 API), in the same storage.
    etcd: crate::etcd::store::Store,
}

/// An add-a-replica operator not seen through by then is given up (a new
/// one may pick another store and id).
pub const OPERATOR_TIMEOUT_MS: u64 = 60_000;

impl Cluster {
    /// Opens PD's state in `data_dir` (created if absent). `new_cluster_id`
    /// is used only on the very first start.
    pub fn open(data_dir: &Path, now_ms: u64, new_cluster_id: u64) -> Result<Cluster> {
        Self::with_storage(Storage::open(data_dir)?, now_ms, new_cluster_id)
    }

    /// A PD state machine over the given storage (in-memory for tests).
    pub fn with_storage(mut storage: Storage, now_ms: u64, new_cluster_id: u64) -> Result<Cluster> {
        let meta = Meta::load(&mut storage, new_cluster_id)?;
        let tso = TsoAllocator::load(&mut storage, now_ms, DEFAULT_WINDOW_MS)?;
        let ids = IdAllocator::load(&storage, DEFAULT_STEP)?;
        let etcd = crate::etcd::store::Store::load(&storage, now_ms).map_err(|e| match e {
            crate::etcd::Error::Pd(e) => e,
            other => crate::Error::Corrupt(other.to_string()),
        })?;
        Ok(Cluster {
            storage,
            meta,
            tso,
            ids,
            adding: Default::default(),
            max_store_down_ms: schedule::DEFAULT_MAX_STORE_DOWN_MS,
            etcd,
        })
    }

    /// The etcd key space and the storage its writes go to.
    pub fn etcd(&mut self) -> (&mut crate::etcd::store::Store, &mut Storage) {
        (&mut self.etcd, &mut self.storage)
    }

    /// Sets `[schedule] max-store-down-time` (ms).
    pub fn set_max_store_down_ms(&mut self, ms: u64) {
        self.max_store_down_ms = ms.max(1);
    }

    /// The cluster id.
    pub fn cluster_id(&self) -> u64 {
        self.meta.cluster_id
    }

    /// Allocates `count` timestamps; returns the last.
    pub fn tso(&mut self, now_ms: u64, count: u32) -> Result<Timestamp> {
        self.tso.allocate(&mut self.storage, now_ms, count)
    }

    /// The end of the persisted TSO window.
    pub fn tso_saved_until(&self) -> u64 {
        self.tso.saved_until()
    }

    /// One new id.
    pub fn alloc_id(&mut self) -> Result<u64> {
        self.ids.alloc(&mut self.storage)
    }

    /// Bootstraps the cluster.
    pub fn bootstrap(&mut self, store: metapb::Store, region: metapb::Region) -> Result<()> {
        self.meta.bootstrap(&mut self.storage, store, region)
    }

    /// Replaces the cluster settings.
    pub fn put_cluster_config(&mut self, cluster: metapb::Cluster) -> Result<()> {
        self.meta.put_cluster_config(&mut self.storage, cluster)
    }

    /// Registers or updates a store.
    pub fn put_store(&mut self, store: metapb::Store) -> Result<()> {
        self.meta.put_store(&mut self.storage, store)
    }

    /// Records a store heartbeat.
    pub fn store_heartbeat(&mut self, stats: pdpb::StoreStats, now_ms: u64) -> Result<()> {
        self.meta.store_heartbeat(stats, now_ms)
    }

    /// Applies a region heartbeat and returns the operator for the region,
    /// if scheduling wants one.
    pub fn region_heartbeat(
        &mut self,
        req: &pdpb::RegionHeartbeatRequest,
        now_ms: u64,
    ) -> Result<Option<pdpb::RegionHeartbeatResponse>> {
        let region = req.region.clone().ok_or_else(|| {
            crate::Error::InvalidValue("RegionHeartbeatRequest.region is missing".into())
        })?;
        let info = RegionInfo {
            region,
            leader: req.leader,
            down_peers: req.down_peers.clone(),
            pending_peers: req.pending_peers.clone(),
            approximate_size: req.approximate_size,
            approximate_keys: req.approximate_keys,
            term: req.term,
        };
        let id = info.region.id;
        self.meta.put_region(&mut self.storage, info)?;
        if let Some((p, since)) = self.adding.get(&id) {
            let done = self
                .meta
                .region(id)
                .is_some_and(|r| r.region.peers.iter().any(|x| x.store_id == p.store_id));
            if done || now_ms.saturating_sub(*since) > OPERATOR_TIMEOUT_MS {
                self.adding.remove(&id);
            }
        }
        let Some(info) = self.meta.region(id).cloned() else {
            return Ok(None);
        };
        let Some(op) = schedule::check(&self.meta, &info, now_ms, self.max_store_down_ms) else {
            return Ok(None);
        };
        let mut resp = pdpb::RegionHeartbeatResponse {
            region_id: id,
            region_epoch: info.region.region_epoch,
            target_peer: info.leader,
            ..Default::default()
        };
        match op {
            Operator::AddLearner { store_id } => {
                let peer = match self.adding.get(&id) {
                    Some((p, _)) if p.store_id == store_id => *p,
                    _ => {
                        let p = metapb::Peer {
                            id: self.alloc_id()?,
                            store_id,
                            role: metapb::PeerRole::Learner as i32,
                        };
                        self.adding.insert(id, (p, now_ms));
                        p
                    }
                };
                resp.change_peer = Some(pdpb::ChangePeer {
                    peer: Some(peer),
                    change_type: eraftpb::ConfChangeType::AddLearnerNode as i32,
                });
            }
            Operator::PromoteLearner(learner) => {
                resp.change_peer = Some(pdpb::ChangePeer {
                    peer: Some(metapb::Peer {
                        role: metapb::PeerRole::Voter as i32,
                        ..learner
                    }),
                    change_type: eraftpb::ConfChangeType::AddNode as i32,
                });
            }
            Operator::RemovePeer(peer) => {
                resp.change_peer = Some(pdpb::ChangePeer {
                    peer: Some(peer),
                    change_type: eraftpb::ConfChangeType::RemoveNode as i32,
                });
            }
            Operator::TransferLeader(peer) => {
                resp.transfer_leader = Some(pdpb::TransferLeader {
                    peer: Some(peer),
                    peers: Vec::new(),
                });
            }
        }
        Ok(Some(resp))
    }

    /// Ids for `count` new regions split off `region`: one region id and one
    /// peer id per existing peer each.
    pub fn ask_batch_split(
        &mut self,
        region: &metapb::Region,
        count: u32,
    ) -> Result<Vec<pdpb::SplitId>> {
        if count == 0 || count > 1024 {
            return Err(crate::Error::InvalidValue(format!(
                "split_count must be between 1 and 1024, got {count}"
            )));
        }
        if self.meta.region(region.id).is_none() {
            return Err(crate::Error::RegionNotFound(format!("id {}", region.id)));
        }
        let per = 1 + region.peers.len();
        let ids = self
            .ids
            .alloc_many(&mut self.storage, per * count as usize)?;
        Ok(ids
            .chunks(per)
            .map(|c| pdpb::SplitId {
                new_region_id: c[0],
                new_peer_ids: c[1..].to_vec(),
            })
            .collect())
    }

    /// Records the regions resulting from a split.
    pub fn report_batch_split(&mut self, regions: Vec<metapb::Region>) -> Result<()> {
        for region in regions {
            let leader = self.meta.region(region.id).and_then(|r| r.leader);
            self.meta.put_region(
                &mut self.storage,
                RegionInfo {
                    region,
                    leader,
                    ..Default::default()
                },
            )?;
        }
        Ok(())
    }

    /// Moves the GC safe point forward; returns the resulting one.
    pub fn update_gc_safe_point(&mut self, sp: u64) -> Result<u64> {
        self.meta.update_gc_safe_point(&mut self.storage, sp)
    }

    /// Sets or removes a service safe point; returns the minimum.
    pub fn update_service_safe_point(
        &mut self,
        service: &[u8],
        ttl: i64,
        sp: u64,
        now_ms: u64,
    ) -> Result<u64> {
        let now_secs = i64::try_from(now_ms / 1000).unwrap_or(i64::MAX);
        self.meta
            .update_service_safe_point(&mut self.storage, service, ttl, sp, now_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(id: u64) -> metapb::Store {
        metapb::Store {
            id,
            address: format!("127.0.0.1:{}", 20160 + id),
            ..Default::default()
        }
    }

    fn peer(id: u64, store_id: u64) -> metapb::Peer {
        metapb::Peer {
            id,
            store_id,
            ..Default::default()
        }
    }

    fn heartbeat(region: &metapb::Region, leader: metapb::Peer) -> pdpb::RegionHeartbeatRequest {
        pdpb::RegionHeartbeatRequest {
            region: Some(region.clone()),
            leader: Some(leader),
            ..Default::default()
        }
    }

    fn cluster_with_stores(n: u64, now: u64) -> (Cluster, metapb::Region) {
        let mut c = Cluster::with_storage(Storage::in_memory(), now, 1).unwrap();
        let region = metapb::Region {
            id: 100,
            region_epoch: Some(metapb::RegionEpoch {
                conf_ver: 1,
                version: 1,
            }),
            peers: vec![peer(101, 1)],
            ..Default::default()
        };
        c.bootstrap(store(1), region.clone()).unwrap();
        for id in 2..=n {
            c.put_store(store(id)).unwrap();
        }
        for id in 1..=n {
            c.store_heartbeat(
                pdpb::StoreStats {
                    store_id: id,
                    ..Default::default()
                },
                now,
            )
            .unwrap();
        }
        (c, region)
    }

    #[test]
    fn heartbeat_of_an_under_replicated_region_gets_an_add_learner() {
        let (mut c, region) = cluster_with_stores(3, 1000);
        let resp = c
            .region_heartbeat(&heartbeat(&region, peer(101, 1)), 1000)
            .unwrap()
            .unwrap();
        let change = resp.change_peer.unwrap();
        assert_eq!(
            change.change_type,
            eraftpb::ConfChangeType::AddLearnerNode as i32
        );
        let new = change.peer.unwrap();
        assert_ne!(new.store_id, 1);
        assert!(new.id > 0);
        assert_eq!(new.role, metapb::PeerRole::Learner as i32);
    }

    fn learner(id: u64, store_id: u64) -> metapb::Peer {
        metapb::Peer {
            id,
            store_id,
            role: metapb::PeerRole::Learner as i32,
        }
    }

    fn change_of(resp: Option<pdpb::RegionHeartbeatResponse>) -> (i32, metapb::Peer) {
        let c = resp
            .expect("an operator")
            .change_peer
            .expect("a change_peer");
        (c.change_type, c.peer.unwrap())
    }

    #[test]
    fn add_replica_keeps_its_peer_id_while_in_flight_then_promotes_the_caught_up_learner() {
        let (mut c, mut region) = cluster_with_stores(2, 1000);
        let (_, first) = change_of(
            c.region_heartbeat(&heartbeat(&region, peer(101, 1)), 1000)
                .unwrap(),
        );
        // Heartbeats before the leader has added it: the same operator.
        for now in [1500, 3000, 9000] {
            let (kind, again) = change_of(
                c.region_heartbeat(&heartbeat(&region, peer(101, 1)), now)
                    .unwrap(),
            );
            assert_eq!(kind, eraftpb::ConfChangeType::AddLearnerNode as i32);
            assert_eq!(again, first, "a new peer id for the same operator");
        }
        // The learner is in the region but still catching up: nothing.
        region.peers.push(learner(first.id, first.store_id));
        region.region_epoch = Some(metapb::RegionEpoch {
            conf_ver: 2,
            version: 1,
        });
        let mut hb = heartbeat(&region, peer(101, 1));
        hb.pending_peers = vec![learner(first.id, first.store_id)];
        assert!(c.region_heartbeat(&hb, 9500).unwrap().is_none());
        // Caught up: promote it.
        let (kind, promoted) = change_of(
            c.region_heartbeat(&heartbeat(&region, peer(101, 1)), 10_000)
                .unwrap(),
        );
        assert_eq!(kind, eraftpb::ConfChangeType::AddNode as i32);
        assert_eq!(promoted.id, first.id);
        assert_eq!(promoted.role, metapb::PeerRole::Voter as i32);
    }

    #[test]
    fn a_peer_reported_down_is_replaced_then_removed() {
        let (mut c, mut region) = cluster_with_stores(4, 1000);
        region.peers = vec![peer(101, 1), peer(102, 2), peer(103, 3)];
        region.region_epoch = Some(metapb::RegionEpoch {
            conf_ver: 5,
            version: 1,
        });
        let mut hb = heartbeat(&region, peer(101, 1));
        hb.down_peers = vec![pdpb::PeerStats {
            peer: Some(peer(103, 3)),
            down_seconds: 5,
        }];
        // Briefly down: left alone.
        assert!(c.region_heartbeat(&hb, 1000).unwrap().is_none());
        hb.down_peers[0].down_seconds = crate::schedule::DEFAULT_MAX_STORE_DOWN_MS / 1000;
        let (kind, new) = change_of(c.region_heartbeat(&hb, 1000).unwrap());
        assert_eq!(kind, eraftpb::ConfChangeType::AddLearnerNode as i32);
        assert_eq!(new.store_id, 4);
        // With the replacement promoted, the down peer goes.
        region.peers.push(peer(new.id, 4));
        region.region_epoch = Some(metapb::RegionEpoch {
            conf_ver: 7,
            version: 1,
        });
        hb.region = Some(region.clone());
        let (kind, gone) = change_of(c.region_heartbeat(&hb, 1000).unwrap());
        assert_eq!(kind, eraftpb::ConfChangeType::RemoveNode as i32);
        assert_eq!(gone.id, 103);
    }

    #[test]
    fn heartbeat_with_an_older_raft_term_is_refused() {
        let (mut c, mut region) = cluster_with_stores(1, 1000);
        region.peers = vec![peer(101, 1)];
        let mut hb = heartbeat(&region, peer(101, 1));
        hb.term = 7;
        c.region_heartbeat(&hb, 1000).unwrap();
        // A deposed leader reports late, same epoch, older term.
        hb.term = 6;
        hb.leader = Some(peer(999, 1));
        assert!(c.region_heartbeat(&hb, 1000).is_err());
        assert_eq!(c.meta.region(100).unwrap().leader, Some(peer(101, 1)));
        // A split report (no term) keeps the known term.
        c.report_batch_split(vec![region.clone()]).unwrap();
        assert_eq!(c.meta.region(100).unwrap().term, 7);
    }

    #[test]
    fn leadership_is_not_moved_to_a_pending_peer() {
        let (mut c, _) = cluster_with_stores(3, 1000);
        let full = |id: u64, start: &[u8], end: &[u8]| metapb::Region {
            id,
            start_key: start.to_vec(),
            end_key: end.to_vec(),
            region_epoch: Some(metapb::RegionEpoch {
                conf_ver: 3,
                version: 2,
            }),
            peers: vec![
                peer(id * 10 + 1, 1),
                peer(id * 10 + 2, 2),
                peer(id * 10 + 3, 3),
            ],
        };
        let regions = [
            full(100, b"", b"g"),
            full(200, b"g", b"p"),
            full(300, b"p", b""),
        ];
        let mut last = None;
        for r in &regions {
            let mut hb = heartbeat(r, peer(r.id * 10 + 1, 1));
            hb.pending_peers = vec![peer(r.id * 10 + 2, 2), peer(r.id * 10 + 3, 3)];
            last = c.region_heartbeat(&hb, 1000).unwrap();
        }
        assert!(last.is_none(), "{last:?}");
    }

    #[test]
    fn no_add_peer_when_other_stores_are_dead() {
        let (mut c, region) = cluster_with_stores(3, 1000);
        c.store_heartbeat(
            pdpb::StoreStats {
                store_id: 1,
                ..Default::default()
            },
            200_000,
        )
        .unwrap();
        let resp = c
            .region_heartbeat(&heartbeat(&region, peer(101, 1)), 200_000)
            .unwrap();
        assert!(resp.is_none(), "{resp:?}");
    }

    #[test]
    fn over_replicated_region_gets_a_follower_removed() {
        let (mut c, mut region) = cluster_with_stores(4, 1000);
        c.put_cluster_config(metapb::Cluster {
            id: 0,
            max_peer_count: 1,
        })
        .unwrap();
        region.peers = vec![peer(101, 1), peer(102, 2)];
        region.region_epoch = Some(metapb::RegionEpoch {
            conf_ver: 2,
            version: 1,
        });
        let resp = c
            .region_heartbeat(&heartbeat(&region, peer(101, 1)), 1000)
            .unwrap()
            .unwrap();
        let change = resp.change_peer.unwrap();
        assert_eq!(
            change.change_type,
            eraftpb::ConfChangeType::RemoveNode as i32
        );
        assert_eq!(change.peer.unwrap().store_id, 2);
    }

    #[test]
    fn leaders_piled_on_one_store_are_moved_to_a_follower_store() {
        let (mut c, _) = cluster_with_stores(3, 1000);
        let full = |id: u64, start: &[u8], end: &[u8]| metapb::Region {
            id,
            start_key: start.to_vec(),
            end_key: end.to_vec(),
            region_epoch: Some(metapb::RegionEpoch {
                conf_ver: 3,
                version: 2,
            }),
            peers: vec![
                peer(id * 10 + 1, 1),
                peer(id * 10 + 2, 2),
                peer(id * 10 + 3, 3),
            ],
        };
        let regions = [
            full(100, b"", b"g"),
            full(200, b"g", b"p"),
            full(300, b"p", b""),
        ];
        let mut last = None;
        for r in &regions {
            last = c
                .region_heartbeat(&heartbeat(r, peer(r.id * 10 + 1, 1)), 1000)
                .unwrap();
        }
        let transfer = last
            .and_then(|r| r.transfer_leader)
            .expect("a leader transfer");
        assert_ne!(transfer.peer.unwrap().store_id, 1);
    }

    #[test]
    fn batch_split_ids_are_fresh_and_split_report_updates_lookup() {
        let (mut c, region) = cluster_with_stores(1, 1000);
        let ids = c.ask_batch_split(&region, 2).unwrap();
        assert_eq!(ids.len(), 2);
        assert_eq!(ids[0].new_peer_ids.len(), 1);
        let left = metapb::Region {
            id: ids[0].new_region_id,
            end_key: b"m".to_vec(),
            region_epoch: Some(metapb::RegionEpoch {
                conf_ver: 1,
                version: 2,
            }),
            peers: vec![peer(ids[0].new_peer_ids[0], 1)],
            ..Default::default()
        };
        let right = metapb::Region {
            start_key: b"m".to_vec(),
            end_key: Vec::new(),
            ..region.clone()
        };
        let right = metapb::Region {
            region_epoch: Some(metapb::RegionEpoch {
                conf_ver: 1,
                version: 2,
            }),
            ..right
        };
        c.report_batch_split(vec![left.clone(), right]).unwrap();
        assert_eq!(c.meta.region_by_key(b"a").unwrap().region.id, left.id);
        assert_eq!(c.meta.region_by_key(b"z").unwrap().region.id, region.id);
    }

    #[test]
    fn tso_and_ids_continue_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (ts, id) = {
            let mut c = Cluster::open(dir.path(), 5000, 9).unwrap();
            (c.tso(5000, 10).unwrap(), c.alloc_id().unwrap())
        };
        let mut c = Cluster::open(dir.path(), 5000, 10).unwrap();
        assert_eq!(c.cluster_id(), 9);
        assert!(c.tso(5000, 1).unwrap() > ts);
        assert!(c.alloc_id().unwrap() > id);
    }
}
