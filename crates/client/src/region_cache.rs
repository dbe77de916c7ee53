//! Key -> region -> leader store address, filled lazily from PD and fixed
//! precisely from the errors stores return:
//!
//! - NotLeader with a hint: the leader is updated in place;
//! - EpochNotMatch: the regions in the error replace the stale one;
//! - RegionNotFound, a connection failure, or NotLeader without a hint: the
//!   region is dropped and looked up again.
//!
//! [`RegionMap`] is the deterministic core (no I/O); [`RegionCache`] adds PD.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use tiox_proto::metapb;

use crate::error::{Error, Result};
use crate::pd::PdClient;

/// A cached region and its leader.
#[derive(Clone, Debug, PartialEq)]
pub struct RegionEntry {
    /// The region descriptor.
    pub region: metapb::Region,
    /// The leader peer, if known.
    pub leader: Option<metapb::Peer>,
}

impl RegionEntry {
    /// Whether `key` (in the region key space) is inside.
    pub fn contains(&self, key: &[u8]) -> bool {
        key >= self.region.start_key.as_slice()
            && (self.region.end_key.is_empty() || key < self.region.end_key.as_slice())
    }

    /// The region epoch.
    pub fn epoch(&self) -> metapb::RegionEpoch {
        self.region.region_epoch.unwrap_or_default()
    }
}

/// Regions by start key, bounded in size.
#[derive(Debug)]
pub struct RegionMap {
    by_start: BTreeMap<Vec<u8>, RegionEntry>,
    max: usize,
}

impl RegionMap {
    /// An empty map holding at most `max` regions.
    pub fn new(max: usize) -> RegionMap {
        RegionMap {
            by_start: BTreeMap::new(),
            max: max.max(1),
        }
    }

    /// The cached region containing `key`.
    pub fn lookup(&self, key: &[u8]) -> Option<&RegionEntry> {
        self.by_start
            .range(..=key.to_vec())
            .next_back()
            .map(|(_, e)| e)
            .filter(|e| e.contains(key))
    }

    /// Inserts a region, dropping any cached region it overlaps.
    pub fn insert(&mut self, e: RegionEntry) {
        let start = e.region.start_key.clone();
        let end = e.region.end_key.clone();
        let overlapping: Vec<Vec<u8>> = self
            .by_start
            .iter()
            .filter(|(_, o)| {
                let o_end_after_start = o.region.end_key.is_empty() || o.region.end_key > start;
                let o_start_before_end = end.is_empty() || o.region.start_key < end;
                o_end_after_start && o_start_before_end
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in overlapping {
            self.by_start.remove(&k);
        }
        if self.by_start.len() >= self.max {
            if let Some(k) = self.by_start.keys().next().cloned() {
                self.by_start.remove(&k);
            }
        }
        self.by_start.insert(start, e);
    }

    /// Drops a region by id.
    pub fn remove(&mut self, region_id: u64) {
        self.by_start.retain(|_, e| e.region.id != region_id);
    }

    /// Sets a region's leader to the store given in a NotLeader hint;
    /// without a hint (or for a peer not in the region) drops the region.
    pub fn set_leader(&mut self, region_id: u64, leader: Option<metapb::Peer>) {
        let found = self
            .by_start
            .values_mut()
            .find(|e| e.region.id == region_id);
        match (found, leader) {
            (Some(e), Some(l)) if e.region.peers.iter().any(|p| p.id == l.id) => e.leader = Some(l),
            _ => self.remove(region_id),
        }
    }

    /// Number of cached regions.
    pub fn len(&self) -> usize {
        self.by_start.len()
    }

    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.by_start.is_empty()
    }
}

/// The cache with PD behind it.
pub struct RegionCache {
    pd: Arc<PdClient>,
    map: RwLock<RegionMap>,
    stores: RwLock<HashMap<u64, String>>,
}

impl RegionCache {
    /// A cache of up to 100k regions.
    pub fn new(pd: Arc<PdClient>) -> RegionCache {
        RegionCache {
            pd,
            map: RwLock::new(RegionMap::new(100_000)),
            stores: RwLock::new(HashMap::new()),
        }
    }

    /// PD.
    pub fn pd(&self) -> &Arc<PdClient> {
        &self.pd
    }

    /// The region containing `key`, from the cache or PD.
    pub async fn locate(&self, key: &[u8]) -> Result<RegionEntry> {
        if let Some(e) = self
            .map
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .lookup(key)
        {
            return Ok(e.clone());
        }
        let (region, leader) = self.pd.get_region(key).await?;
        let region =
            region.ok_or_else(|| Error::Pd(format!("PD knows no region for key {key:?}")))?;
        let e = RegionEntry { region, leader };
        self.map
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(e.clone());
        Ok(e)
    }

    /// The address of a store.
    pub async fn store_addr(&self, store_id: u64) -> Result<String> {
        if let Some(a) = self
            .stores
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&store_id)
        {
            return Ok(a.clone());
        }
        let store = self
            .pd
            .get_store(store_id)
            .await?
            .ok_or_else(|| Error::Pd(format!("PD knows no store {store_id}")))?;
        self.stores
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(store_id, store.address.clone());
        Ok(store.address)
    }

    /// Forgets a store's address (it may have moved).
    pub fn forget_store(&self, store_id: u64) {
        self.stores
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&store_id);
    }

    /// Applies a NotLeader hint.
    pub fn on_not_leader(&self, region_id: u64, leader: Option<metapb::Peer>) {
        self.map
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .set_leader(region_id, leader);
    }

    /// Applies EpochNotMatch: the current regions replace the stale one.
    pub fn on_epoch_not_match(&self, stale_id: u64, current: Vec<metapb::Region>) {
        let mut m = self.map.write().unwrap_or_else(|p| p.into_inner());
        m.remove(stale_id);
        for r in current {
            m.insert(RegionEntry {
                region: r,
                leader: None,
            });
        }
    }

    /// Drops a region (RegionNotFound, unreachable store).
    pub fn invalidate(&self, region_id: u64) {
        self.map
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(region_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(id: u64, start: &[u8], end: &[u8], peers: &[(u64, u64)]) -> RegionEntry {
        RegionEntry {
            region: metapb::Region {
                id,
                start_key: start.to_vec(),
                end_key: end.to_vec(),
                peers: peers
                    .iter()
                    .map(|(id, store_id)| metapb::Peer {
                        id: *id,
                        store_id: *store_id,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            },
            leader: None,
        }
    }

    #[test]
    fn lookup_finds_the_region_whose_range_holds_the_key() {
        let mut m = RegionMap::new(10);
        m.insert(region(1, b"", b"m", &[]));
        m.insert(region(2, b"m", b"", &[]));
        assert_eq!(m.lookup(b"a").unwrap().region.id, 1);
        assert_eq!(m.lookup(b"m").unwrap().region.id, 2);
        assert_eq!(m.lookup(b"zzz").unwrap().region.id, 2);
    }

    #[test]
    fn a_split_region_replaces_every_overlapping_entry() {
        let mut m = RegionMap::new(10);
        m.insert(region(1, b"", b"", &[]));
        // After a split PD reports [, k) as region 1 (new epoch) and [k, ) as 7.
        m.insert(region(7, b"k", b"", &[]));
        assert!(
            m.lookup(b"a").is_none(),
            "the stale whole-range entry is gone"
        );
        assert_eq!(m.lookup(b"x").unwrap().region.id, 7);
        m.insert(region(1, b"", b"k", &[]));
        assert_eq!(m.lookup(b"a").unwrap().region.id, 1);
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn not_leader_hint_moves_the_leader_and_no_hint_drops_the_region() {
        let mut m = RegionMap::new(10);
        m.insert(region(1, b"", b"", &[(11, 1), (12, 2)]));
        m.set_leader(
            1,
            Some(metapb::Peer {
                id: 12,
                store_id: 2,
                ..Default::default()
            }),
        );
        assert_eq!(m.lookup(b"a").unwrap().leader.as_ref().unwrap().store_id, 2);
        m.set_leader(1, None);
        assert!(m.is_empty());
    }

    #[test]
    fn the_map_is_bounded() {
        let mut m = RegionMap::new(2);
        m.insert(region(1, b"a", b"b", &[]));
        m.insert(region(2, b"b", b"c", &[]));
        m.insert(region(3, b"c", b"d", &[]));
        assert_eq!(m.len(), 2);
    }
}
