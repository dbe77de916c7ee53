//! TiKV's memcomparable byte encoding: groups of 8 bytes, each followed by a
//! marker, so that an encoded key followed by anything still sorts by key.
//! Transactional region boundaries are in this form (as TiKV and
//! tikv-client have them); the store (`tiox-kv`) uses the same functions.

/// Group size.
const GROUP: usize = 8;
/// Marker after a full group.
const MARKER: u8 = 0xFF;

/// Encodes `key`.
pub fn encode_bytes(key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity((key.len() / GROUP + 1) * (GROUP + 1));
    let mut idx = 0;
    loop {
        let remain = key.len() - idx;
        if remain >= GROUP {
            out.extend_from_slice(&key[idx..idx + GROUP]);
            out.push(MARKER);
            idx += GROUP;
        } else {
            let pad = GROUP - remain;
            out.extend_from_slice(&key[idx..]);
            out.extend(std::iter::repeat_n(0u8, pad));
            out.push(MARKER - pad as u8);
            return out;
        }
    }
}

/// Decodes an encoded key; returns the key and the bytes after it, or a
/// description of what is wrong.
pub fn decode_bytes(data: &[u8]) -> Result<(Vec<u8>, &[u8]), &'static str> {
    let mut key = Vec::with_capacity(data.len());
    let mut rest = data;
    loop {
        if rest.len() < GROUP + 1 {
            return Err("truncated memcomparable key");
        }
        let (group, tail) = rest.split_at(GROUP);
        let marker = tail[0];
        rest = &tail[1..];
        let pad = (MARKER - marker) as usize;
        if pad == 0 {
            key.extend_from_slice(group);
            continue;
        }
        if pad > GROUP {
            return Err("bad memcomparable marker");
        }
        let (real, padding) = group.split_at(GROUP - pad);
        if padding.iter().any(|b| *b != 0) {
            return Err("bad memcomparable padding");
        }
        key.extend_from_slice(real);
        return Ok((key, rest));
    }
}
