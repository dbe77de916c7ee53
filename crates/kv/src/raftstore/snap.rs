//! Region snapshots: the data a new or far-behind peer receives instead of
//! the log entries it missed.
//!
//! A snapshot holds the region descriptor and every key of the region's
//! range in the `default`, `lock` and `write` column families, taken from
//! the engine at the leader's applied index. Applying one replaces the
//! range's data, the region descriptor and the Raft state in ONE atomic,
//! fsynced write batch.
//!
//! ```text
//!  data = bytes(region descriptor, prost)
//!         { u8 cf (0 default, 1 lock, 2 write)  bytes(key)  bytes(value) }*
//!         u8 0xff
//! ```
//!
//! The snapshot is built in memory and travels as one `MsgSnapshot` on the
//! Raft stream, cut into `transport::SNAPSHOT_CHUNK` pieces that the
//! receiving stream joins again (`transport::SnapshotAssembler`).

use prost::Message as _;
use tiox_engine::{Cf, Engine, Snapshot as _, WriteBatch};
use tiox_proto::metapb;

use crate::codec::{Reader, Writer, RAW_PREFIX, TXN_PREFIX};
use crate::error::{Error, Result};

const DATA_CFS: [Cf; 3] = [Cf::Default, Cf::Lock, Cf::Write];
const END: u8 = 0xff;

/// The engine key ranges `[lower, upper)` holding a region's data: the
/// transactional space (`z` + memcomparable key, as the region bounds are)
/// and the raw space (`r` + raw key).
pub fn data_ranges(region: &metapb::Region) -> Vec<(Vec<u8>, Vec<u8>)> {
    let range = |prefix: u8| {
        let mut lo = vec![prefix];
        lo.extend_from_slice(&region.start_key);
        let hi = if region.end_key.is_empty() {
            vec![prefix + 1]
        } else {
            let mut hi = vec![prefix];
            hi.extend_from_slice(&region.end_key);
            hi
        };
        (lo, hi)
    };
    vec![range(TXN_PREFIX), range(RAW_PREFIX)]
}

fn cf_code(cf: Cf) -> u8 {
    match cf {
        Cf::Default => 0,
        Cf::Lock => 1,
        Cf::Write => 2,
        Cf::Raft => 3,
    }
}

/// Builds the snapshot data of `region` from the engine's current state.
pub fn build<E: Engine>(engine: &E, region: &metapb::Region) -> Result<Vec<u8>> {
    let snap = engine.snapshot();
    let mut w = Writer::default();
    w.bytes(&region.encode_to_vec());
    for cf in DATA_CFS {
        for (lo, hi) in data_ranges(region) {
            for kv in snap.iter(
                cf,
                std::ops::Bound::Included(&lo),
                std::ops::Bound::Excluded(&hi),
                false,
            ) {
                let (k, v) = kv?;
                w.u8(cf_code(cf)).bytes(&k).bytes(&v);
            }
        }
    }
    w.u8(END);
    Ok(w.0)
}

/// A decoded snapshot.
pub struct SnapData {
    /// The region as of the snapshot.
    pub region: metapb::Region,
    /// Its data.
    pub kvs: Vec<(Cf, Vec<u8>, Vec<u8>)>,
}

/// Decodes snapshot data received from a peer (errors, never panics).
pub fn decode(data: &[u8]) -> Result<SnapData> {
    let bad = |what: &str| Error::Corrupted(format!("snapshot data: {what}"));
    let mut r = Reader(data);
    let region = metapb::Region::decode(&r.bytes()?[..]).map_err(|e| bad(&e.to_string()))?;
    let mut kvs = Vec::new();
    loop {
        let cf = match r.u8()? {
            0 => Cf::Default,
            1 => Cf::Lock,
            2 => Cf::Write,
            END => break,
            other => return Err(bad(&format!("unknown column family code {other}"))),
        };
        let k = r.bytes()?;
        let v = r.bytes()?;
        kvs.push((cf, k, v));
    }
    if !r.is_empty() {
        return Err(bad("trailing bytes"));
    }
    Ok(SnapData { region, kvs })
}

/// Stages the deletion of every data key of `region` (before a snapshot
/// replaces it, or when the peer is destroyed).
pub fn stage_clear<E: Engine>(
    engine: &E,
    region: &metapb::Region,
    wb: &mut WriteBatch,
) -> Result<()> {
    let snap = engine.snapshot();
    for cf in DATA_CFS {
        for (lo, hi) in data_ranges(region) {
            for kv in snap.iter(
                cf,
                std::ops::Bound::Included(&lo),
                std::ops::Bound::Excluded(&hi),
                false,
            ) {
                let (k, _) = kv?;
                wb.delete(cf, k);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_snapshot_data_is_an_error_not_a_panic() {
        assert!(decode(&[]).is_err());
        assert!(decode(&[0xff, 0xff, 0xff]).is_err());
        let mut w = Writer::default();
        w.bytes(&metapb::Region::default().encode_to_vec()).u8(7);
        assert!(decode(&w.0).is_err());
    }

    #[test]
    fn whole_key_space_ranges_cover_both_prefixes() {
        let r = data_ranges(&metapb::Region::default());
        assert_eq!(r[0], (vec![b'z'], vec![b'z' + 1]));
        assert_eq!(r[1], (vec![b'r'], vec![b'r' + 1]));
    }
}
