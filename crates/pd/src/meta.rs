//! Cluster metadata: the cluster id, bootstrap state, stores, regions (keyed
//! by start key, versioned by epochs) and GC safe points, with their durable
//! form in [`Storage`].
//!
//! ```text
//!  regions by start key:   ""──────"b"──────"m"──────(∞)
//!                          │ id 2  │  id 7   │  id 3  │
//!  lookup(k): the last region whose start_key <= k, if k < its end_key
//! ```
//!
//! Invariants: regions in the map never overlap; a region report whose epoch
//! is older than what is known (a lower `version` or `conf_ver`) is refused
//! as stale, so a slow or partitioned reporter cannot roll metadata back; the
//! GC safe point never moves backwards. Every change is written to storage
//! before it is visible in memory. Deterministic: time is an argument.

use std::collections::{BTreeMap, HashMap};

use prost::Message;
use tiox_proto::metapb;
use tiox_proto::pdpb;

use crate::error::{Error, Result};
use crate::storage::{Op, Storage};
use crate::tso::read_u64;

const CLUSTER_ID_KEY: &[u8] = b"cluster/id";
const CLUSTER_KEY: &[u8] = b"cluster/meta";
const BOOTSTRAPPED_KEY: &[u8] = b"cluster/bootstrapped";
const STORE_PREFIX: &[u8] = b"store/";
const REGION_PREFIX: &[u8] = b"region/";
const GC_KEY: &[u8] = b"gc/safe-point";
const SERVICE_GC_PREFIX: &[u8] = b"gc/service/";

/// Default number of replicas per region.
pub const DEFAULT_MAX_REPLICAS: u32 = 3;

fn store_key(id: u64) -> Vec<u8> {
    format!("store/{id:020}").into_bytes()
}

fn region_key(id: u64) -> Vec<u8> {
    format!("region/{id:020}").into_bytes()
}

/// A store and what its heartbeats said.
#[derive(Clone, Debug, Default)]
pub struct StoreInfo {
    /// The store as registered (PutStore).
    pub store: metapb::Store,
    /// The last heartbeat's statistics.
    pub stats: Option<pdpb::StoreStats>,
    /// Unix ms of the last heartbeat (0: never).
    pub last_heartbeat_ms: u64,
}

/// A region and what its leader last reported.
#[derive(Clone, Debug, Default)]
pub struct RegionInfo {
    /// Range, epoch and peers.
    pub region: metapb::Region,
    /// The leader peer, if known.
    pub leader: Option<metapb::Peer>,
    /// Peers the leader reports as down.
    pub down_peers: Vec<pdpb::PeerStats>,
    /// Peers still catching up.
    pub pending_peers: Vec<metapb::Peer>,
    /// Approximate size in bytes.
    pub approximate_size: u64,
    /// Approximate number of keys.
    pub approximate_keys: u64,
    /// The Raft term of the leader's report (0: unknown, e.g. a split
    /// report; the known term is kept). A report with an older term than
    /// the known one comes from a deposed leader and is refused.
    pub term: u64,
}

impl RegionInfo {
    fn contains(&self, key: &[u8]) -> bool {
        self.region.start_key.as_slice() <= key
            && (self.region.end_key.is_empty() || key < self.region.end_key.as_slice())
    }
}

fn epoch(r: &metapb::Region) -> (u64, u64) {
    r.region_epoch
        .as_ref()
        .map_or((0, 0), |e| (e.version, e.conf_ver))
}

/// The cluster's metadata.
#[derive(Debug)]
pub struct Meta {
    /// The cluster id (fixed at the first start).
    pub cluster_id: u64,
    /// Cluster-wide settings.
    pub cluster: metapb::Cluster,
    /// Whether Bootstrap has run.
    pub bootstrapped: bool,
    stores: BTreeMap<u64, StoreInfo>,
    regions: HashMap<u64, RegionInfo>,
    by_start: BTreeMap<Vec<u8>, u64>,
    gc_safe_point: u64,
    /// service id -> (safe point, expiry unix secs; i64::MAX = never).
    service_safe_points: BTreeMap<Vec<u8>, (u64, i64)>,
}

impl Meta {
    /// Loads the metadata; on the first start fixes the cluster id to
    /// `new_cluster_id` (the caller derives it from the time and randomness).
    pub fn load(storage: &mut Storage, new_cluster_id: u64) -> Result<Meta> {
        let cluster_id = match read_u64(storage, CLUSTER_ID_KEY)? {
            Some(id) => id,
            None => {
                storage.put(CLUSTER_ID_KEY, new_cluster_id.to_be_bytes().to_vec())?;
                new_cluster_id
            }
        };
        let cluster = match storage.get(CLUSTER_KEY) {
            Some(b) => decode::<metapb::Cluster>(b, "cluster settings")?,
            None => metapb::Cluster {
                id: cluster_id,
                max_peer_count: DEFAULT_MAX_REPLICAS,
            },
        };
        let bootstrapped = storage.get(BOOTSTRAPPED_KEY).is_some();
        let mut meta = Meta {
            cluster_id,
            cluster,
            bootstrapped,
            stores: BTreeMap::new(),
            regions: HashMap::new(),
            by_start: BTreeMap::new(),
            gc_safe_point: read_u64(storage, GC_KEY)?.unwrap_or(0),
            service_safe_points: BTreeMap::new(),
        };
        for (_, v) in storage.scan_prefix(STORE_PREFIX) {
            let store = decode::<metapb::Store>(v, "a store")?;
            meta.stores.insert(
                store.id,
                StoreInfo {
                    store,
                    ..Default::default()
                },
            );
        }
        for (_, v) in storage.scan_prefix(REGION_PREFIX) {
            let region = decode::<metapb::Region>(v, "a region")?;
            meta.by_start.insert(region.start_key.clone(), region.id);
            meta.regions.insert(
                region.id,
                RegionInfo {
                    region,
                    ..Default::default()
                },
            );
        }
        for (k, v) in storage.scan_prefix(SERVICE_GC_PREFIX) {
            if v.len() != 16 {
                return Err(Error::Corrupt(
                    "a service GC safe point is not 16 bytes".into(),
                ));
            }
            let sp = u64::from_be_bytes(v[..8].try_into().unwrap_or_default());
            let exp = i64::from_be_bytes(v[8..].try_into().unwrap_or_default());
            meta.service_safe_points
                .insert(k[SERVICE_GC_PREFIX.len()..].to_vec(), (sp, exp));
        }
        Ok(meta)
    }

    /// Checks a request header's cluster id (0 means "not known yet" and is
    /// accepted, as PD does for the first GetMembers).
    pub fn check_cluster_id(&self, theirs: u64) -> Result<()> {
        if theirs != 0 && theirs != self.cluster_id {
            return Err(Error::ClusterIdMismatch {
                ours: self.cluster_id,
                theirs,
            });
        }
        Ok(())
    }

    /// Bootstraps the cluster with its first store and region.
    pub fn bootstrap(
        &mut self,
        storage: &mut Storage,
        store: metapb::Store,
        region: metapb::Region,
    ) -> Result<()> {
        if self.bootstrapped {
            return Err(Error::AlreadyBootstrapped);
        }
        check_store(&store)?;
        if region.id == 0 {
            return Err(Error::InvalidValue(
                "bootstrap region id must not be 0".into(),
            ));
        }
        if !region.start_key.is_empty() || !region.end_key.is_empty() {
            return Err(Error::InvalidValue(
                "the bootstrap region must cover the whole key space (empty start and end keys)"
                    .into(),
            ));
        }
        if region.peers.is_empty() || region.peers.iter().any(|p| p.store_id != store.id) {
            return Err(Error::InvalidValue(format!(
                "the bootstrap region must have peers, all on the bootstrap store {}",
                store.id
            )));
        }
        storage.write(vec![
            (store_key(store.id), Some(store.encode_to_vec())),
            (region_key(region.id), Some(region.encode_to_vec())),
            (CLUSTER_KEY.to_vec(), Some(self.cluster.encode_to_vec())),
            (BOOTSTRAPPED_KEY.to_vec(), Some(vec![1])),
        ])?;
        self.bootstrapped = true;
        let leader = region.peers.first().cloned();
        self.stores.insert(
            store.id,
            StoreInfo {
                store,
                ..Default::default()
            },
        );
        self.by_start.insert(region.start_key.clone(), region.id);
        self.regions.insert(
            region.id,
            RegionInfo {
                region,
                leader,
                ..Default::default()
            },
        );
        Ok(())
    }

    fn require_bootstrapped(&self) -> Result<()> {
        if self.bootstrapped {
            Ok(())
        } else {
            Err(Error::NotBootstrapped)
        }
    }

    /// Replaces the cluster settings (the id cannot change).
    pub fn put_cluster_config(
        &mut self,
        storage: &mut Storage,
        cluster: metapb::Cluster,
    ) -> Result<()> {
        if cluster.id != 0 && cluster.id != self.cluster_id {
            return Err(Error::InvalidValue(format!(
                "cluster.id {} differs from this cluster's id {}; it cannot be changed",
                cluster.id, self.cluster_id
            )));
        }
        if cluster.max_peer_count == 0 {
            return Err(Error::InvalidValue(
                "max_peer_count must be at least 1".into(),
            ));
        }
        let cluster = metapb::Cluster {
            id: self.cluster_id,
            ..cluster
        };
        storage.put(CLUSTER_KEY, cluster.encode_to_vec())?;
        self.cluster = cluster;
        Ok(())
    }

    /// Registers or updates a store.
    pub fn put_store(&mut self, storage: &mut Storage, store: metapb::Store) -> Result<()> {
        self.require_bootstrapped()?;
        check_store(&store)?;
        if let Some(old) = self.stores.get(&store.id) {
            if old.store.state == metapb::StoreState::Tombstone as i32 {
                return Err(Error::StoreTombstone(store.id));
            }
        }
        if let Some(other) = self.stores.values().find(|s| {
            s.store.id != store.id
                && s.store.address == store.address
                && s.store.state != metapb::StoreState::Tombstone as i32
        }) {
            return Err(Error::DuplicatedEntry(format!(
                "store {} already uses address {}; a store address must be unique",
                other.store.id, store.address
            )));
        }
        storage.put(&store_key(store.id), store.encode_to_vec())?;
        let entry = self.stores.entry(store.id).or_default();
        entry.store = store;
        Ok(())
    }

    /// A store by id.
    pub fn store(&self, id: u64) -> Result<&StoreInfo> {
        self.stores.get(&id).ok_or(Error::StoreNotFound(id))
    }

    /// All stores, by id.
    pub fn stores(&self) -> impl Iterator<Item = &StoreInfo> {
        self.stores.values()
    }

    /// Records a store heartbeat.
    pub fn store_heartbeat(&mut self, stats: pdpb::StoreStats, now_ms: u64) -> Result<()> {
        self.require_bootstrapped()?;
        let info = self
            .stores
            .get_mut(&stats.store_id)
            .ok_or(Error::StoreNotFound(stats.store_id))?;
        if info.store.state == metapb::StoreState::Tombstone as i32 {
            return Err(Error::StoreTombstone(stats.store_id));
        }
        info.last_heartbeat_ms = now_ms;
        info.store.last_heartbeat =
            i64::try_from(now_ms.saturating_mul(1_000_000)).unwrap_or(i64::MAX);
        info.stats = Some(stats);
        Ok(())
    }

    /// Applies a region report (heartbeat, split report): refuses stale
    /// epochs, replaces overlapping regions, persists if anything durable
    /// changed. Returns whether the durable metadata changed.
    pub fn put_region(&mut self, storage: &mut Storage, mut info: RegionInfo) -> Result<bool> {
        self.require_bootstrapped()?;
        let region = &info.region;
        if region.id == 0 {
            return Err(Error::InvalidValue("region id must not be 0".into()));
        }
        if region.region_epoch.is_none() {
            return Err(Error::InvalidValue(format!(
                "region {} has no region_epoch",
                region.id
            )));
        }
        if !region.end_key.is_empty() && region.end_key <= region.start_key {
            return Err(Error::InvalidValue(format!(
                "region {} has end_key <= start_key",
                region.id
            )));
        }
        let (version, conf_ver) = epoch(region);
        if let Some(old) = self.regions.get(&region.id) {
            if info.term == 0 {
                info.term = old.term;
            } else if info.term < old.term {
                return Err(Error::StaleRegion {
                    id: region.id,
                    detail: format!(
                        "reported by a leader at raft term {}, older than the known term {}",
                        info.term, old.term
                    ),
                });
            }
            let (ov, oc) = epoch(&old.region);
            if version < ov || conf_ver < oc {
                return Err(Error::StaleRegion {
                    id: region.id,
                    detail: format!(
                        "reported epoch (version {version}, conf_ver {conf_ver}) is older than \
                         the known (version {ov}, conf_ver {oc})"
                    ),
                });
            }
        }
        let overlaps = self.overlapping(&region.start_key, &region.end_key);
        for id in &overlaps {
            if *id == region.id {
                continue;
            }
            if let Some(o) = self.regions.get(id) {
                if epoch(&o.region).0 > version {
                    return Err(Error::StaleRegion {
                        id: region.id,
                        detail: format!(
                            "it overlaps region {id}, which has a newer version {}",
                            epoch(&o.region).0
                        ),
                    });
                }
            }
        }
        let durable_changed = self
            .regions
            .get(&region.id)
            .is_none_or(|old| old.region != *region)
            || overlaps.iter().any(|id| *id != region.id);
        if durable_changed {
            let mut batch: Vec<Op> = overlaps
                .iter()
                .filter(|id| **id != region.id)
                .map(|id| (region_key(*id), None))
                .collect();
            batch.push((region_key(region.id), Some(region.encode_to_vec())));
            storage.write(batch)?;
        }
        for id in overlaps.iter().chain(std::iter::once(&region.id)) {
            if let Some(old) = self.regions.remove(id) {
                if self.by_start.get(&old.region.start_key) == Some(id) {
                    self.by_start.remove(&old.region.start_key);
                }
            }
        }
        self.by_start
            .insert(info.region.start_key.clone(), info.region.id);
        self.regions.insert(info.region.id, info);
        Ok(durable_changed)
    }

    /// Ids of regions overlapping `[start, end)` (empty end: unbounded).
    fn overlapping(&self, start: &[u8], end: &[u8]) -> Vec<u64> {
        let mut out = Vec::new();
        if let Some((_, id)) = self.by_start.range(..=start.to_vec()).next_back() {
            if self.regions.get(id).is_some_and(|r| r.contains(start)) {
                out.push(*id);
            }
        }
        for (k, id) in self.by_start.range(start.to_vec()..) {
            if !end.is_empty() && k.as_slice() >= end {
                break;
            }
            if !out.contains(id) {
                out.push(*id);
            }
        }
        out
    }

    /// The region containing `key`.
    pub fn region_by_key(&self, key: &[u8]) -> Option<&RegionInfo> {
        let (_, id) = self.by_start.range(..=key.to_vec()).next_back()?;
        self.regions.get(id).filter(|r| r.contains(key))
    }

    /// The region just before the one containing `key`.
    pub fn prev_region(&self, key: &[u8]) -> Option<&RegionInfo> {
        let current = self.region_by_key(key)?;
        let (_, id) = self
            .by_start
            .range(..current.region.start_key.clone())
            .next_back()?;
        self.regions.get(id)
    }

    /// A region by id.
    pub fn region(&self, id: u64) -> Option<&RegionInfo> {
        self.regions.get(&id)
    }

    /// Regions overlapping `[start, end)` in key order, at most `limit`
    /// (0: no limit).
    pub fn scan_regions(&self, start: &[u8], end: &[u8], limit: usize) -> Vec<&RegionInfo> {
        let mut ids = self.overlapping(start, end);
        if limit > 0 {
            ids.truncate(limit);
        }
        ids.iter().filter_map(|id| self.regions.get(id)).collect()
    }

    /// All regions in key order.
    pub fn regions(&self) -> impl Iterator<Item = &RegionInfo> {
        self.by_start.values().filter_map(|id| self.regions.get(id))
    }

    /// Number of regions.
    pub fn region_count(&self) -> usize {
        self.regions.len()
    }

    /// The GC safe point.
    pub fn gc_safe_point(&self) -> u64 {
        self.gc_safe_point
    }

    /// Moves the GC safe point forward; returns the resulting safe point
    /// (unchanged if `sp` is older).
    pub fn update_gc_safe_point(&mut self, storage: &mut Storage, sp: u64) -> Result<u64> {
        if sp > self.gc_safe_point {
            storage.put(GC_KEY, sp.to_be_bytes().to_vec())?;
            self.gc_safe_point = sp;
        }
        Ok(self.gc_safe_point)
    }

    /// Sets (ttl > 0) or removes (ttl <= 0) a service's safe point; returns
    /// the minimum over the live services (and the GC safe point if none).
    pub fn update_service_safe_point(
        &mut self,
        storage: &mut Storage,
        service: &[u8],
        ttl_secs: i64,
        sp: u64,
        now_secs: i64,
    ) -> Result<u64> {
        if service.is_empty() {
            return Err(Error::InvalidValue("service_id must not be empty".into()));
        }
        let mut key = SERVICE_GC_PREFIX.to_vec();
        key.extend_from_slice(service);
        let mut batch: Vec<Op> = Vec::new();
        // Expired entries go first.
        let expired: Vec<Vec<u8>> = self
            .service_safe_points
            .iter()
            .filter(|(_, (_, exp))| *exp <= now_secs)
            .map(|(k, _)| k.clone())
            .collect();
        for k in &expired {
            let mut full = SERVICE_GC_PREFIX.to_vec();
            full.extend_from_slice(k);
            batch.push((full, None));
        }
        if ttl_secs <= 0 {
            batch.push((key, None));
        } else {
            if sp < self.gc_safe_point {
                return Err(Error::InvalidValue(format!(
                    "service safe point {sp} is below the GC safe point {}",
                    self.gc_safe_point
                )));
            }
            let exp = now_secs.saturating_add(ttl_secs);
            let mut v = sp.to_be_bytes().to_vec();
            v.extend_from_slice(&exp.to_be_bytes());
            batch.push((key, Some(v)));
        }
        storage.write(batch)?;
        for k in expired {
            self.service_safe_points.remove(&k);
        }
        if ttl_secs <= 0 {
            self.service_safe_points.remove(service);
        } else {
            self.service_safe_points
                .insert(service.to_vec(), (sp, now_secs.saturating_add(ttl_secs)));
        }
        Ok(self
            .service_safe_points
            .values()
            .map(|(sp, _)| *sp)
            .min()
            .unwrap_or(self.gc_safe_point))
    }
}

fn check_store(store: &metapb::Store) -> Result<()> {
    if store.id == 0 {
        return Err(Error::InvalidValue("store id must not be 0".into()));
    }
    if store.address.trim().is_empty() {
        return Err(Error::InvalidValue(format!(
            "store {} has an empty address",
            store.id
        )));
    }
    Ok(())
}

fn decode<M: Message + Default>(bytes: &[u8], what: &str) -> Result<M> {
    M::decode(bytes).map_err(|e| Error::Corrupt(format!("cannot decode {what}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn store(id: u64) -> metapb::Store {
        metapb::Store {
            id,
            address: format!("127.0.0.1:{}", 20160 + id),
            ..Default::default()
        }
    }

    pub(crate) fn region(
        id: u64,
        start: &[u8],
        end: &[u8],
        version: u64,
        stores: &[u64],
    ) -> RegionInfo {
        RegionInfo {
            region: metapb::Region {
                id,
                start_key: start.to_vec(),
                end_key: end.to_vec(),
                region_epoch: Some(metapb::RegionEpoch {
                    conf_ver: 1,
                    version,
                }),
                peers: stores
                    .iter()
                    .map(|s| metapb::Peer {
                        id: id * 100 + s,
                        store_id: *s,
                        ..Default::default()
                    })
                    .collect(),
            },
            leader: None,
            ..Default::default()
        }
    }

    fn bootstrapped(storage: &mut Storage) -> Meta {
        let mut meta = Meta::load(storage, 42).unwrap();
        meta.bootstrap(storage, store(1), region(2, b"", b"", 1, &[1]).region)
            .unwrap();
        meta
    }

    #[test]
    fn bootstrap_happens_once() {
        let mut s = Storage::in_memory();
        let mut meta = bootstrapped(&mut s);
        assert!(matches!(
            meta.bootstrap(&mut s, store(1), region(2, b"", b"", 1, &[1]).region),
            Err(Error::AlreadyBootstrapped)
        ));
    }

    #[test]
    fn operations_before_bootstrap_say_not_bootstrapped() {
        let mut s = Storage::in_memory();
        let mut meta = Meta::load(&mut s, 42).unwrap();
        assert!(matches!(
            meta.put_store(&mut s, store(1)),
            Err(Error::NotBootstrapped)
        ));
    }

    #[test]
    fn cluster_id_is_fixed_at_first_start() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Storage::open(dir.path()).unwrap();
        assert_eq!(Meta::load(&mut s, 7).unwrap().cluster_id, 7);
        drop(s);
        let mut s = Storage::open(dir.path()).unwrap();
        assert_eq!(Meta::load(&mut s, 8).unwrap().cluster_id, 7);
    }

    #[test]
    fn region_lookup_by_key_follows_splits() {
        let mut s = Storage::in_memory();
        let mut meta = bootstrapped(&mut s);
        meta.put_region(&mut s, region(2, b"", b"m", 2, &[1]))
            .unwrap();
        meta.put_region(&mut s, region(3, b"m", b"", 2, &[1]))
            .unwrap();
        assert_eq!(meta.region_by_key(b"a").unwrap().region.id, 2);
        assert_eq!(meta.region_by_key(b"m").unwrap().region.id, 3);
        assert_eq!(meta.region_by_key(b"zzz").unwrap().region.id, 3);
        assert_eq!(meta.prev_region(b"x").unwrap().region.id, 2);
        assert!(meta.prev_region(b"a").is_none());
        assert_eq!(meta.scan_regions(b"", b"", 0).len(), 2);
        assert_eq!(meta.scan_regions(b"n", b"", 0).len(), 1);
        assert_eq!(meta.scan_regions(b"", b"", 1).len(), 1);
    }

    #[test]
    fn stale_region_epoch_is_refused() {
        let mut s = Storage::in_memory();
        let mut meta = bootstrapped(&mut s);
        meta.put_region(&mut s, region(2, b"", b"m", 2, &[1]))
            .unwrap();
        meta.put_region(&mut s, region(3, b"m", b"", 2, &[1]))
            .unwrap();
        let err = meta
            .put_region(&mut s, region(2, b"", b"", 1, &[1]))
            .unwrap_err();
        assert!(matches!(err, Error::StaleRegion { id: 2, .. }), "{err}");
        assert_eq!(meta.region_count(), 2);
    }

    #[test]
    fn regions_and_stores_survive_restart() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = Storage::open(dir.path()).unwrap();
            let mut meta = bootstrapped(&mut s);
            meta.put_store(&mut s, store(4)).unwrap();
            meta.put_region(&mut s, region(2, b"", b"m", 2, &[1]))
                .unwrap();
            meta.put_region(&mut s, region(3, b"m", b"", 2, &[1]))
                .unwrap();
            meta.update_gc_safe_point(&mut s, 99).unwrap();
        }
        let mut s = Storage::open(dir.path()).unwrap();
        let meta = Meta::load(&mut s, 1).unwrap();
        assert!(meta.bootstrapped);
        assert_eq!(meta.stores().count(), 2);
        assert_eq!(meta.region_by_key(b"q").unwrap().region.id, 3);
        assert_eq!(meta.gc_safe_point(), 99);
    }

    #[test]
    fn gc_safe_point_never_moves_backwards() {
        let mut s = Storage::in_memory();
        let mut meta = bootstrapped(&mut s);
        assert_eq!(meta.update_gc_safe_point(&mut s, 10).unwrap(), 10);
        assert_eq!(meta.update_gc_safe_point(&mut s, 5).unwrap(), 10);
    }

    #[test]
    fn service_safe_points_expire_and_report_the_minimum() {
        let mut s = Storage::in_memory();
        let mut meta = bootstrapped(&mut s);
        assert_eq!(
            meta.update_service_safe_point(&mut s, b"a", 10, 50, 100)
                .unwrap(),
            50
        );
        assert_eq!(
            meta.update_service_safe_point(&mut s, b"b", 100, 70, 100)
                .unwrap(),
            50
        );
        // At t=111 "a" has expired.
        assert_eq!(
            meta.update_service_safe_point(&mut s, b"b", 100, 80, 111)
                .unwrap(),
            80
        );
        assert_eq!(
            meta.update_service_safe_point(&mut s, b"b", 0, 0, 112)
                .unwrap(),
            0
        );
    }

    #[test]
    fn store_address_must_be_unique() {
        let mut s = Storage::in_memory();
        let mut meta = bootstrapped(&mut s);
        let mut dup = store(5);
        dup.address = store(1).address;
        assert!(matches!(
            meta.put_store(&mut s, dup),
            Err(Error::DuplicatedEntry(_))
        ));
    }

    #[test]
    fn tombstone_store_cannot_come_back() {
        let mut s = Storage::in_memory();
        let mut meta = bootstrapped(&mut s);
        let mut t = store(1);
        t.state = metapb::StoreState::Tombstone as i32;
        meta.put_store(&mut s, t).unwrap();
        assert!(matches!(
            meta.put_store(&mut s, store(1)),
            Err(Error::StoreTombstone(1))
        ));
    }
}
