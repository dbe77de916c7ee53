//! Key encodings.
//!
//! - `encode_bytes`: TiKV's memcomparable encoding (groups of 8 bytes, each
//!   followed by a marker), so that a key followed by a timestamp still sorts
//!   by key first. Transactional region boundaries are in this form, as
//!   tikv-client expects.
//! - Data keys in the engine: `z` + encoded user key (+ `!ts` big-endian for
//!   the default and write column families) for transactional data; `r` +
//!   raw key for raw KV. The two spaces never collide.

use crate::error::{Error, Result};

/// Prefix of transactional data keys.
pub const TXN_PREFIX: u8 = b'z';
/// Prefix of raw KV data keys.
pub const RAW_PREFIX: u8 = b'r';

/// Memcomparable encoding of `key` (shared with the client).
pub use tiox_client::keys::encode_bytes;

/// Decodes a memcomparable key; returns the key and the bytes after it.
pub fn decode_bytes(data: &[u8]) -> Result<(Vec<u8>, &[u8])> {
    tiox_client::keys::decode_bytes(data).map_err(|m| Error::Corrupted(m.into()))
}

/// The lock-CF key of a user key.
pub fn lock_key(user_key: &[u8]) -> Vec<u8> {
    let mut k = vec![TXN_PREFIX];
    k.extend(encode_bytes(user_key));
    k
}

/// The default/write-CF key of a user key at `ts` (newer versions sort first).
pub fn versioned_key(user_key: &[u8], ts: u64) -> Vec<u8> {
    let mut k = lock_key(user_key);
    k.extend_from_slice(&(!ts).to_be_bytes());
    k
}

/// Splits a default/write-CF key into the user key and its timestamp.
pub fn split_versioned_key(data_key: &[u8]) -> Result<(Vec<u8>, u64)> {
    let body = data_key
        .strip_prefix(&[TXN_PREFIX])
        .ok_or_else(|| Error::Corrupted("versioned key without prefix".into()))?;
    let (user, rest) = decode_bytes(body)?;
    let ts: [u8; 8] = rest
        .try_into()
        .map_err(|_| Error::Corrupted("versioned key without timestamp".into()))?;
    Ok((user, !u64::from_be_bytes(ts)))
}

/// Decodes a lock-CF key into the user key.
pub fn split_lock_key(data_key: &[u8]) -> Result<Vec<u8>> {
    let body = data_key
        .strip_prefix(&[TXN_PREFIX])
        .ok_or_else(|| Error::Corrupted("lock key without prefix".into()))?;
    Ok(decode_bytes(body)?.0)
}

/// The raw KV data key of a raw key.
pub fn raw_key(key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 1);
    k.push(RAW_PREFIX);
    k.extend_from_slice(key);
    k
}

/// A little binary writer for our own record formats.
#[derive(Default)]
pub struct Writer(pub Vec<u8>);

impl Writer {
    /// One byte.
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    /// A big-endian u64.
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    /// Length-prefixed bytes.
    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.0.extend_from_slice(&(v.len() as u32).to_be_bytes());
        self.0.extend_from_slice(v);
        self
    }
}

/// The matching reader; every read checks bounds.
pub struct Reader<'a>(pub &'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8]> {
        if self.0.len() < n {
            return Err(Error::Corrupted("truncated record".into()));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    /// One byte.
    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    /// A big-endian u64.
    pub fn u64(&mut self) -> Result<u64> {
        let b = self.take(8)?;
        Ok(u64::from_be_bytes(b.try_into().unwrap_or_default()))
    }
    /// Length-prefixed bytes.
    pub fn bytes(&mut self) -> Result<Vec<u8>> {
        let len = self.take(4)?;
        let len = u32::from_be_bytes(len.try_into().unwrap_or_default()) as usize;
        Ok(self.take(len)?.to_vec())
    }
    /// Whether everything was read.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memcomparable_encoding_round_trips_and_preserves_order() {
        let keys: Vec<&[u8]> = vec![
            b"",
            b"a",
            b"a\0",
            b"ab",
            b"abcdefgh",
            b"abcdefgh\0",
            b"abcdefghi",
            b"b",
        ];
        let mut encoded: Vec<Vec<u8>> = keys.iter().map(|k| encode_bytes(k)).collect();
        for (k, e) in keys.iter().zip(&encoded) {
            let (d, rest) = decode_bytes(e).unwrap();
            assert_eq!(&d, k);
            assert!(rest.is_empty());
        }
        let sorted = encoded.clone();
        encoded.sort();
        assert_eq!(encoded, sorted, "encoding keeps byte order");
    }

    #[test]
    fn versioned_keys_sort_by_key_then_newest_first() {
        let a1 = versioned_key(b"a", 1);
        let a9 = versioned_key(b"a", 9);
        let ab1 = versioned_key(b"ab", 1);
        assert!(a9 < a1);
        assert!(a1 < ab1);
        assert_eq!(split_versioned_key(&a9).unwrap(), (b"a".to_vec(), 9));
    }

    #[test]
    fn decoding_garbage_is_an_error_not_a_panic() {
        for bad in [
            &b""[..],
            b"abc",
            b"\0\0\0\0\0\0\0\0\xF0",
            b"a\0\0\0\0\0\0\0\xF8x",
        ] {
            let _ = decode_bytes(bad);
        }
        assert!(decode_bytes(b"\0\0\0\0\0\0\0\x01\xF8").is_err());
    }
}
