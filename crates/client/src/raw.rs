//! The raw KV client: get, batch-get, put, batch-put, delete, scan,
//! delete-range and compare-and-swap, split across regions transparently.

use std::sync::Arc;

use tiox_proto::kvrpcpb;

use crate::error::{Error, Result};
use crate::kv::KvClient;

/// A raw (non-transactional) client.
#[derive(Clone)]
pub struct RawClient {
    kv: Arc<KvClient>,
}

fn refused(e: String) -> Result<()> {
    if e.is_empty() {
        Ok(())
    } else {
        Err(Error::Server(e))
    }
}

impl RawClient {
    /// A raw client over `kv`.
    pub fn new(kv: Arc<KvClient>) -> RawClient {
        RawClient { kv }
    }

    /// The value of `key`.
    pub async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let k = key.to_vec();
        let (_, r) = self
            .kv
            .request(key, |ctx, mut s| {
                let req = kvrpcpb::RawGetRequest {
                    context: Some(ctx),
                    key: k.clone(),
                    cf: String::new(),
                };
                async move { s.raw_get(req).await }
            })
            .await?;
        refused(r.error)?;
        Ok((!r.not_found).then_some(r.value))
    }

    /// Values of several keys (absent keys are left out).
    pub async fn batch_get(&self, keys: &[Vec<u8>]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let items = keys.iter().map(|k| (k.clone(), ())).collect();
        let resps = self
            .kv
            .request_batch(items, |ctx, mut s, group| {
                let req = kvrpcpb::RawBatchGetRequest {
                    context: Some(ctx),
                    keys: group.into_iter().map(|(k, _)| k).collect(),
                    cf: String::new(),
                };
                async move { s.raw_batch_get(req).await }
            })
            .await?;
        Ok(resps
            .into_iter()
            .flat_map(|r| r.pairs.into_iter().map(|p| (p.key, p.value)))
            .collect())
    }

    /// Sets `key`.
    pub async fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        let (k, v) = (key.to_vec(), value.to_vec());
        let (_, r) = self
            .kv
            .request(key, |ctx, mut s| {
                let req = kvrpcpb::RawPutRequest {
                    context: Some(ctx),
                    key: k.clone(),
                    value: v.clone(),
                    ..Default::default()
                };
                async move { s.raw_put(req).await }
            })
            .await?;
        refused(r.error)
    }

    /// Sets several keys (atomic per region, not across regions).
    pub async fn batch_put(&self, pairs: Vec<(Vec<u8>, Vec<u8>)>) -> Result<()> {
        let resps = self
            .kv
            .request_batch(pairs, |ctx, mut s, group| {
                let req = kvrpcpb::RawBatchPutRequest {
                    context: Some(ctx),
                    pairs: group
                        .into_iter()
                        .map(|(key, value)| kvrpcpb::KvPair {
                            key,
                            value,
                            error: None,
                        })
                        .collect(),
                    ..Default::default()
                };
                async move { s.raw_batch_put(req).await }
            })
            .await?;
        resps.into_iter().try_for_each(|r| refused(r.error))
    }

    /// Removes `key`.
    pub async fn delete(&self, key: &[u8]) -> Result<()> {
        let k = key.to_vec();
        let (_, r) = self
            .kv
            .request(key, |ctx, mut s| {
                let req = kvrpcpb::RawDeleteRequest {
                    context: Some(ctx),
                    key: k.clone(),
                    ..Default::default()
                };
                async move { s.raw_delete(req).await }
            })
            .await?;
        refused(r.error)
    }

    /// Pairs in `[start, end)` (empty `end`: to the end of the key space),
    /// at most `limit`, crossing regions as needed.
    pub async fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        limit: u32,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut out = Vec::new();
        let mut cursor = start.to_vec();
        while (out.len() as u32) < limit {
            let (from, to, want) = (cursor.clone(), end.to_vec(), limit - out.len() as u32);
            let (entry, r) = self
                .kv
                .request(&cursor, |ctx, mut s| {
                    let req = kvrpcpb::RawScanRequest {
                        context: Some(ctx),
                        start_key: from.clone(),
                        end_key: to.clone(),
                        limit: want,
                        ..Default::default()
                    };
                    async move { s.raw_scan(req).await }
                })
                .await?;
            out.extend(r.kvs.into_iter().map(|p| (p.key, p.value)));
            let region_end = entry.region.end_key;
            // Done at the last region, or once past the requested end.
            if region_end.is_empty() || (!end.is_empty() && region_end.as_slice() >= end) {
                break;
            }
            cursor = region_end;
        }
        out.truncate(limit as usize);
        Ok(out)
    }

    /// Removes every key in `[start, end)`, region by region.
    pub async fn delete_range(&self, start: &[u8], end: &[u8]) -> Result<()> {
        let mut cursor = start.to_vec();
        loop {
            let (from, to) = (cursor.clone(), end.to_vec());
            let (entry, r) = self
                .kv
                .request(&cursor, |ctx, mut s| {
                    let req = kvrpcpb::RawDeleteRangeRequest {
                        context: Some(ctx),
                        start_key: from.clone(),
                        end_key: to.clone(),
                        cf: String::new(),
                    };
                    async move { s.raw_delete_range(req).await }
                })
                .await?;
            refused(r.error)?;
            let region_end = entry.region.end_key;
            if region_end.is_empty() || (!end.is_empty() && region_end.as_slice() >= end) {
                return Ok(());
            }
            cursor = region_end;
        }
    }

    /// Sets `key` to `new` if its current value is `expected` (None: absent).
    /// Returns the previous value and whether the swap happened.
    pub async fn compare_and_swap(
        &self,
        key: &[u8],
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<(Option<Vec<u8>>, bool)> {
        let (k, v) = (key.to_vec(), new.to_vec());
        let (prev_absent, prev) = (expected.is_none(), expected.unwrap_or_default().to_vec());
        let (_, r) = self
            .kv
            .request(key, |ctx, mut s| {
                let req = kvrpcpb::RawCasRequest {
                    context: Some(ctx),
                    key: k.clone(),
                    value: v.clone(),
                    previous_not_exist: prev_absent,
                    previous_value: prev.clone(),
                    ..Default::default()
                };
                async move { s.raw_compare_and_swap(req).await }
            })
            .await?;
        refused(r.error)?;
        Ok((
            (!r.previous_not_exist).then_some(r.previous_value),
            r.succeed,
        ))
    }
}
