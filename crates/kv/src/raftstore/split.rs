//! Region split: when a region is too big, and where to cut it.
//!
//! ```text
//!  split-check task (every split-region-check-tick-interval, leaders only)
//!    check(): scan the region's data, size + keys per user key
//!    └► over region-max-size / region-max-keys?  split keys every
//!       region-split-size / region-split-keys, at user-key boundaries
//!  Storage::split_region (also the SplitRegion RPC)
//!    PD AskBatchSplit ─► new region id + one peer id per existing peer
//!    propose Command { split: BatchSplit } through the region's Raft log
//!  apply, on every replica (Peer::apply → split_regions):
//!    parent keeps [start, k1), new regions [k1, k2) .. [kn, end),
//!    every piece gets version + 1; descriptors and the new regions'
//!    initial Raft state are written with the parent's applied index
//!  the loop creates the new peers; the parent's leader campaigns for them
//!  Storage::split_region ─► PD ReportBatchSplit
//! ```
//!
//! Split keys are region boundaries, always valid memcomparable encodings:
//! for transactional data the encoded user key (the part of a data key
//! between the `z` prefix and the 8-byte timestamp), for raw data the
//! encoding of the raw key (tikv-client's transactional client decodes
//! every region boundary and fails on a bare raw key; the encoding sorts
//! at or just after the raw key, so the cut moves by at most a few keys).
//! Every MVCC version of one user key shares its boundary, so a split never
//! separates the versions (or the lock) of a key. A split requested by key
//! (the SplitRegion RPC with `is_raw_kv`) uses the key as given. The data itself does not move: all
//! regions of a store share one engine, and a region owns the keys in its
//! range.

use std::time::Duration;

use tiox_engine::{Cf, Engine, Snapshot as _};
use tiox_proto::metapb;

use super::snap::data_ranges;
use crate::codec::TXN_PREFIX;
use crate::error::Result;

/// At most this many split keys per check (the rest waits for the next).
pub const MAX_SPLIT_KEYS: usize = 64;

/// When regions split (TiKV's `[coprocessor]` keys and
/// `[raftstore] split-region-check-tick-interval`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SplitConfig {
    /// A region larger than this (bytes of keys and values) is split.
    pub region_max_size: u64,
    /// ... into pieces of about this size.
    pub region_split_size: u64,
    /// A region with more keys than this (MVCC versions and raw keys) is
    /// split.
    pub region_max_keys: u64,
    /// ... into pieces of about this many keys.
    pub region_split_keys: u64,
    /// How often the leaders' regions are checked (zero: never).
    pub check_interval: Duration,
}

impl Default for SplitConfig {
    /// TiKV's key counts; sizes a third of TiKV's (144/96 MiB): a region's
    /// snapshot is built in memory by the Raft thread (see `snap.rs`).
    fn default() -> Self {
        SplitConfig {
            region_max_size: 48 << 20,
            region_split_size: 32 << 20,
            region_max_keys: 1_440_000,
            region_split_keys: 960_000,
            check_interval: Duration::from_secs(10),
        }
    }
}

/// One new region of a batch split.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SplitRequest {
    /// The new region starts here (a region boundary).
    #[prost(bytes = "vec", tag = "1")]
    pub split_key: Vec<u8>,
    /// Its id, from PD.
    #[prost(uint64, tag = "2")]
    pub new_region_id: u64,
    /// Its peer ids, one per peer of the parent, in the parent's order.
    #[prost(uint64, repeated, tag = "3")]
    pub new_peer_ids: Vec<u64>,
}

/// The admin command of a split (in a Raft log entry).
#[derive(Clone, PartialEq, prost::Message)]
pub struct BatchSplit {
    /// In key order.
    #[prost(message, repeated, tag = "1")]
    pub requests: Vec<SplitRequest>,
}

/// The regions after applying `split` to `region`: the parent (keeping
/// `[start, first key)`) first, then the new ones in key order. Every piece
/// gets the parent's version + 1; peers keep their stores and roles.
pub fn split_regions(
    region: &metapb::Region,
    split: &BatchSplit,
) -> std::result::Result<Vec<metapb::Region>, String> {
    if split.requests.is_empty() {
        return Err("a split without keys".into());
    }
    let mut prev: &[u8] = &region.start_key;
    for r in &split.requests {
        let k = r.split_key.as_slice();
        if k.is_empty() || k <= prev {
            return Err(format!(
                "split key {k:?} is not after {prev:?} (keys must increase inside the region)"
            ));
        }
        if !region.end_key.is_empty() && k >= region.end_key.as_slice() {
            return Err(format!("split key {k:?} is not before the region's end"));
        }
        if r.new_peer_ids.len() != region.peers.len() {
            return Err(format!(
                "{} new peer ids for {} peers",
                r.new_peer_ids.len(),
                region.peers.len()
            ));
        }
        prev = k;
    }
    let mut epoch = region.region_epoch.unwrap_or_default();
    epoch.version += 1;
    let mut parent = region.clone();
    parent.end_key = split.requests[0].split_key.clone();
    parent.region_epoch = Some(epoch);
    let mut out = vec![parent];
    for (i, r) in split.requests.iter().enumerate() {
        let end = split
            .requests
            .get(i + 1)
            .map_or_else(|| region.end_key.clone(), |n| n.split_key.clone());
        out.push(metapb::Region {
            id: r.new_region_id,
            start_key: r.split_key.clone(),
            end_key: end,
            region_epoch: Some(epoch),
            peers: region
                .peers
                .iter()
                .zip(&r.new_peer_ids)
                .map(|(p, id)| metapb::Peer { id: *id, ..*p })
                .collect(),
        });
    }
    Ok(out)
}

/// What a check found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckResult {
    /// Bytes of keys and values in the region.
    pub size: u64,
    /// Keys: write-CF records (one per MVCC version) and raw keys.
    pub keys: u64,
    /// Where to split; empty if the region is within its limits.
    pub split_keys: Vec<Vec<u8>>,
}

/// One user key's share of a region: its boundary, bytes and keys.
type Slice = (Vec<u8>, u64, u64);

/// Scans `region` in `engine` and decides whether and where to split.
pub fn check<E: Engine>(
    engine: &E,
    region: &metapb::Region,
    cfg: &SplitConfig,
) -> Result<CheckResult> {
    let snap = engine.snapshot();
    let mut slices: Vec<Slice> = Vec::new();
    for (lo, hi) in data_ranges(region) {
        let txn = lo.first() == Some(&TXN_PREFIX);
        let cfs: &[Cf] = if txn {
            &[Cf::Default, Cf::Lock, Cf::Write]
        } else {
            &[Cf::Default]
        };
        for cf in cfs {
            let mut cur: Option<Slice> = None;
            for kv in snap.iter(
                *cf,
                std::ops::Bound::Included(&lo),
                std::ops::Bound::Excluded(&hi),
                false,
            ) {
                let (k, v) = kv?;
                let body = &k[1..];
                // Versioned CFs carry an 8-byte timestamp after the key.
                let raw_boundary;
                let boundary = if !txn {
                    raw_boundary = crate::codec::encode_bytes(body);
                    &raw_boundary[..]
                } else if *cf != Cf::Lock && body.len() >= 8 {
                    &body[..body.len() - 8]
                } else {
                    body
                };
                let counts = u64::from(!txn || *cf == Cf::Write);
                let bytes = (k.len() + v.len()) as u64;
                match &mut cur {
                    Some((b, s, n)) if b.as_slice() == boundary => {
                        *s += bytes;
                        *n += counts;
                    }
                    _ => {
                        slices.extend(cur.take());
                        cur = Some((boundary.to_vec(), bytes, counts));
                    }
                }
            }
            slices.extend(cur);
        }
    }
    slices.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(choose(&slices, region, cfg))
}

/// Merges the slices of one boundary, then picks split keys (pure).
fn choose(slices: &[Slice], region: &metapb::Region, cfg: &SplitConfig) -> CheckResult {
    let mut merged: Vec<Slice> = Vec::new();
    for (b, s, n) in slices {
        match merged.last_mut() {
            Some((lb, ls, ln)) if lb == b => {
                *ls += s;
                *ln += n;
            }
            _ => merged.push((b.clone(), *s, *n)),
        }
    }
    let size: u64 = merged.iter().map(|x| x.1).sum();
    let keys: u64 = merged.iter().map(|x| x.2).sum();
    let mut out = CheckResult {
        size,
        keys,
        split_keys: Vec::new(),
    };
    let over_size = size > cfg.region_max_size;
    let over_keys = keys > cfg.region_max_keys;
    if !over_size && !over_keys {
        return out;
    }
    let (mut acc_size, mut acc_keys) = (0u64, 0u64);
    for (i, (_, s, n)) in merged.iter().enumerate() {
        acc_size += s;
        acc_keys += n;
        let full = (over_size && acc_size >= cfg.region_split_size.max(1))
            || (over_keys && acc_keys >= cfg.region_split_keys.max(1));
        if !full {
            continue;
        }
        let Some((next, _, _)) = merged.get(i + 1) else {
            break;
        };
        let after = out
            .split_keys
            .last()
            .map_or(region.start_key.as_slice(), Vec::as_slice);
        let inside = region.end_key.is_empty() || next.as_slice() < region.end_key.as_slice();
        if next.as_slice() > after && inside {
            out.split_keys.push(next.clone());
            if out.split_keys.len() >= MAX_SPLIT_KEYS {
                break;
            }
        }
        acc_size = 0;
        acc_keys = 0;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{encode_bytes, versioned_key};
    use crate::engine_fjall::{FjallEngine, FjallOptions};
    use tiox_engine::WriteBatch;

    fn region(start: &[u8], end: &[u8], peers: usize) -> metapb::Region {
        metapb::Region {
            id: 1,
            start_key: start.to_vec(),
            end_key: end.to_vec(),
            region_epoch: Some(metapb::RegionEpoch {
                conf_ver: 3,
                version: 7,
            }),
            peers: (0..peers as u64)
                .map(|i| metapb::Peer {
                    id: 10 + i,
                    store_id: 1 + i,
                    role: if i == 2 {
                        metapb::PeerRole::Learner as i32
                    } else {
                        metapb::PeerRole::Voter as i32
                    },
                })
                .collect(),
        }
    }

    fn req(key: &[u8], id: u64, peers: &[u64]) -> SplitRequest {
        SplitRequest {
            split_key: key.to_vec(),
            new_region_id: id,
            new_peer_ids: peers.to_vec(),
        }
    }

    #[test]
    fn batch_split_keeps_the_left_part_bumps_every_version_and_maps_peers() {
        let r = region(b"a", b"z", 3);
        let split = BatchSplit {
            requests: vec![req(b"g", 2, &[20, 21, 22]), req(b"p", 3, &[30, 31, 32])],
        };
        let out = split_regions(&r, &split).unwrap();
        let ranges: Vec<(&[u8], &[u8], u64)> = out
            .iter()
            .map(|x| {
                (
                    x.start_key.as_slice(),
                    x.end_key.as_slice(),
                    x.region_epoch.unwrap().version,
                )
            })
            .collect();
        assert_eq!(
            ranges,
            vec![
                (&b"a"[..], &b"g"[..], 8),
                (&b"g"[..], &b"p"[..], 8),
                (&b"p"[..], &b"z"[..], 8)
            ]
        );
        assert_eq!(out[0].id, 1);
        assert!(out.iter().all(|x| x.region_epoch.unwrap().conf_ver == 3));
        assert_eq!(
            out[2]
                .peers
                .iter()
                .map(|p| (p.id, p.store_id, p.role))
                .collect::<Vec<_>>(),
            vec![
                (30, 1, metapb::PeerRole::Voter as i32),
                (31, 2, metapb::PeerRole::Voter as i32),
                (32, 3, metapb::PeerRole::Learner as i32)
            ]
        );
    }

    #[test]
    fn split_keys_outside_the_region_or_unordered_are_refused() {
        let r = region(b"b", b"m", 1);
        for keys in [
            vec![b"a".to_vec()],
            vec![b"b".to_vec()],
            vec![b"m".to_vec()],
            vec![b"d".to_vec(), b"c".to_vec()],
            vec![Vec::new()],
        ] {
            let split = BatchSplit {
                requests: keys.iter().map(|k| req(k, 2, &[20])).collect(),
            };
            assert!(split_regions(&r, &split).is_err(), "{keys:?}");
        }
        let wrong_peers = BatchSplit {
            requests: vec![req(b"c", 2, &[20, 21])],
        };
        assert!(split_regions(&r, &wrong_peers).is_err());
    }

    #[test]
    fn raw_data_splits_at_encoded_boundaries_that_transactional_clients_can_decode() {
        let dir = tempfile::tempdir().unwrap();
        let engine = FjallEngine::open(dir.path(), &FjallOptions::default()).unwrap();
        let mut wb = WriteBatch::default();
        for k in 0..40u32 {
            let key = format!("raw/{k:05}");
            wb.put(
                Cf::Default,
                crate::codec::raw_key(key.as_bytes()),
                vec![0; 1000],
            );
        }
        engine.write(wb, false).unwrap();
        let cfg = SplitConfig {
            region_max_size: 20_000,
            region_split_size: 10_000,
            ..SplitConfig::default()
        };
        let res = check(&engine, &region(b"", b"", 1), &cfg).unwrap();
        assert_eq!(res.keys, 40);
        assert!(res.split_keys.len() >= 2, "{res:?}");
        for w in res.split_keys.windows(2) {
            assert!(w[0] < w[1]);
        }
        for k in &res.split_keys {
            let (_, rest) = crate::codec::decode_bytes(k).unwrap();
            assert!(rest.is_empty(), "{k:?} is not one encoded key");
        }
    }

    #[test]
    fn split_happens_at_user_key_boundaries_never_between_versions() {
        let dir = tempfile::tempdir().unwrap();
        let engine = FjallEngine::open(dir.path(), &FjallOptions::default()).unwrap();
        let mut wb = WriteBatch::default();
        // 10 user keys, each with 20 MVCC versions of a 100-byte value.
        for k in 0..10u8 {
            let user = [b'k', b'0' + k];
            for ts in 1..=20u64 {
                wb.put(Cf::Write, versioned_key(&user, ts * 10), vec![0; 100]);
            }
        }
        engine.write(wb, false).unwrap();
        let cfg = SplitConfig {
            region_max_size: 4_000,
            region_split_size: 3_000,
            region_max_keys: u64::MAX,
            region_split_keys: u64::MAX,
            check_interval: Duration::from_secs(1),
        };
        let r = region(b"", b"", 1);
        let res = check(&engine, &r, &cfg).unwrap();
        assert_eq!(res.keys, 200);
        assert!(res.size > 20_000, "{res:?}");
        assert!(!res.split_keys.is_empty());
        // Every split key is exactly some user key's encoded form.
        for sk in &res.split_keys {
            let is_user_key = (0..10u8).any(|k| encode_bytes(&[b'k', b'0' + k]) == *sk);
            assert!(is_user_key, "split key {sk:?} is not a user-key boundary");
        }
        // Within limits: no split.
        let big = SplitConfig {
            region_max_size: 1 << 30,
            region_max_keys: 1 << 30,
            ..cfg
        };
        assert!(check(&engine, &r, &big).unwrap().split_keys.is_empty());
        // By keys: 200 versions, pieces of 50 keys (= 2.5 user keys).
        let by_keys = SplitConfig {
            region_max_size: u64::MAX,
            region_split_size: u64::MAX,
            region_max_keys: 100,
            region_split_keys: 50,
            ..cfg
        };
        let res = check(&engine, &r, &by_keys).unwrap();
        assert_eq!(
            res.split_keys,
            vec![
                encode_bytes(b"k3"),
                encode_bytes(b"k6"),
                encode_bytes(b"k9")
            ]
        );
    }
}
