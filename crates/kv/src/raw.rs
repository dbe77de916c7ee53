//! Raw KV (no transactions): values with optional TTL under the `r` key
//! prefix in the default column family.
//!
//! Stored value: `0x00 value` (no TTL) or `0x01 expire_unix_ms(8) value`.
//! Expiry is judged against a time passed in (the proposer's clock for
//! writes, so every replica applies CAS identically; the reader's clock for
//! reads).

use tiox_engine::{Cf, Snapshot, WriteBatch};

use crate::codec::raw_key;
use crate::error::{Error, Result};

/// A decoded raw value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawValue {
    /// The user's value.
    pub value: Vec<u8>,
    /// Unix ms after which the value is gone; 0 = never.
    pub expire_ms: u64,
}

/// Encodes a value with a TTL in seconds (0 = none) from `now_ms`.
pub fn encode(value: &[u8], ttl_secs: u64, now_ms: u64) -> Vec<u8> {
    if ttl_secs == 0 {
        let mut v = Vec::with_capacity(value.len() + 1);
        v.push(0);
        v.extend_from_slice(value);
        v
    } else {
        let expire = now_ms.saturating_add(ttl_secs.saturating_mul(1000));
        let mut v = Vec::with_capacity(value.len() + 9);
        v.push(1);
        v.extend_from_slice(&expire.to_be_bytes());
        v.extend_from_slice(value);
        v
    }
}

/// Decodes a stored value; `None` if it has expired at `now_ms`.
pub fn decode(stored: &[u8], now_ms: u64) -> Result<Option<RawValue>> {
    match stored.first() {
        Some(0) => Ok(Some(RawValue {
            value: stored[1..].to_vec(),
            expire_ms: 0,
        })),
        Some(1) if stored.len() >= 9 => {
            let expire = u64::from_be_bytes(stored[1..9].try_into().unwrap_or_default());
            if expire <= now_ms {
                Ok(None)
            } else {
                Ok(Some(RawValue {
                    value: stored[9..].to_vec(),
                    expire_ms: expire,
                }))
            }
        }
        _ => Err(Error::Corrupted("raw value with unknown format".into())),
    }
}

/// Reads one raw key.
pub fn get<S: Snapshot + ?Sized>(snap: &S, key: &[u8], now_ms: u64) -> Result<Option<RawValue>> {
    match snap.get(Cf::Default, &raw_key(key))? {
        Some(v) => decode(&v, now_ms),
        None => Ok(None),
    }
}

/// Stages a put.
pub fn put(wb: &mut WriteBatch, key: &[u8], value: &[u8], ttl_secs: u64, now_ms: u64) {
    wb.put(Cf::Default, raw_key(key), encode(value, ttl_secs, now_ms));
}

/// Stages a delete.
pub fn delete(wb: &mut WriteBatch, key: &[u8]) {
    wb.delete(Cf::Default, raw_key(key));
}

/// Pairs in `[start, end)` (or reverse from `end`), at most `limit` (0 = no
/// limit), skipping expired values.
pub fn scan<S: Snapshot + ?Sized>(
    snap: &S,
    start: &[u8],
    end: Option<&[u8]>,
    limit: usize,
    reverse: bool,
    now_ms: u64,
) -> Result<Vec<(Vec<u8>, RawValue)>> {
    use std::ops::Bound;
    let lower = raw_key(start);
    let upper = match end {
        Some(e) if !e.is_empty() => raw_key(e),
        _ => vec![crate::codec::RAW_PREFIX + 1],
    };
    let mut out = Vec::new();
    for kv in snap.iter(
        Cf::Default,
        Bound::Included(&lower),
        Bound::Excluded(&upper),
        reverse,
    ) {
        let (k, v) = kv?;
        if let Some(rv) = decode(&v, now_ms)? {
            out.push((k[1..].to_vec(), rv));
            if limit > 0 && out.len() >= limit {
                break;
            }
        }
    }
    Ok(out)
}

/// Stages deletes of every raw key in `[start, end)`.
pub fn delete_range<S: Snapshot + ?Sized>(
    snap: &S,
    wb: &mut WriteBatch,
    start: &[u8],
    end: Option<&[u8]>,
) -> Result<usize> {
    let pairs = scan(snap, start, end, 0, false, 0)?;
    for (k, _) in &pairs {
        delete(wb, k);
    }
    Ok(pairs.len())
}
