//! Keys of the store's own state in the `raft` column family.
//!
//! ```text
//!  0x01 'i'                      store identity (cluster id, store id)
//!  0x02 region_id 'h'            Raft hard state
//!  0x02 region_id 'a'            apply state (applied index, truncated index/term)
//!  0x02 region_id 'r'            region descriptor (metapb.Region) and peer state
//!  0x02 region_id 'e' index      Raft log entry
//!  0x02 region_id 't'            tombstone: conf_ver at which our peer was removed
//! ```

/// The store identity key.
pub const STORE_IDENT: &[u8] = b"\x01i";

fn region_prefix(region_id: u64, kind: u8) -> Vec<u8> {
    let mut k = Vec::with_capacity(18);
    k.push(0x02);
    k.extend_from_slice(&region_id.to_be_bytes());
    k.push(kind);
    k
}

/// The hard state of a region's peer.
pub fn hard_state(region_id: u64) -> Vec<u8> {
    region_prefix(region_id, b'h')
}

/// The apply state of a region's peer.
pub fn apply_state(region_id: u64) -> Vec<u8> {
    region_prefix(region_id, b'a')
}

/// The tombstone of a region whose peer left this store.
pub fn tombstone(region_id: u64) -> Vec<u8> {
    region_prefix(region_id, b't')
}

/// The region descriptor.
pub fn region_meta(region_id: u64) -> Vec<u8> {
    region_prefix(region_id, b'r')
}

/// The region descriptors' key range (all regions).
pub fn region_meta_range() -> (Vec<u8>, Vec<u8>) {
    (vec![0x02], vec![0x03])
}

/// A log entry.
pub fn entry(region_id: u64, index: u64) -> Vec<u8> {
    let mut k = region_prefix(region_id, b'e');
    k.extend_from_slice(&index.to_be_bytes());
    k
}

/// Parses a region meta key's region id.
pub fn region_id_of_meta_key(key: &[u8]) -> Option<u64> {
    if key.len() == 10 && key[0] == 0x02 && key[9] == b'r' {
        Some(u64::from_be_bytes(key[1..9].try_into().ok()?))
    } else {
        None
    }
}
