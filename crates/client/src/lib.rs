//! The cluster client used by TiKV (to reach PD), TiDB, the ctl tools,
//! benchmarks and tests: gRPC channels over mutual TLS, and a PD client that
//! follows the PD leader, the region cache, and the raw and transactional KV
//! APIs. The transactional client also runs over an in-process store (the
//! embedded store, `tiox_kv::unistore`) through the seam in [`transport`].

pub mod backoff;
pub mod batch;
pub mod channel;
pub mod error;
pub mod keys;
pub mod kv;
pub mod pd;
pub mod raw;
pub mod region_cache;
pub mod transport;
pub mod tso;
pub mod txn;

pub use error::{Error, Result};

use std::sync::Arc;

use tiox_security::{ClientTls, TlsSettings};

/// A connection to a cluster: PD (with the batching TSO) and the stores.
#[derive(Clone)]
pub struct ClusterClient {
    /// PD.
    pub pd: Arc<pd::PdClient>,
    /// The stores.
    pub kv: Arc<kv::KvClient>,
    /// Timestamps.
    pub tso: tso::TsoClient,
}

impl ClusterClient {
    /// Connects to the PD `endpoints`; `tls` is the cluster's client
    /// settings (None only for a plaintext cluster).
    pub async fn connect(endpoints: &[String], tls: Option<TlsSettings>) -> Result<ClusterClient> {
        let tls = match tls {
            Some(s) => Some(Arc::new(
                ClientTls::with_alpn(s, vec![b"h2".to_vec()])
                    .map_err(|e| Error::Config(e.to_string()))?,
            )),
            None => None,
        };
        let pd = Arc::new(pd::PdClient::connect(endpoints, tls.clone()).await?);
        let cache = Arc::new(region_cache::RegionCache::new(pd.clone()));
        let kv = Arc::new(kv::KvClient::new(cache, tls));
        let tso = tso::TsoClient::start(pd.clone());
        Ok(ClusterClient { pd, kv, tso })
    }

    /// The raw KV API.
    pub fn raw(&self) -> raw::RawClient {
        raw::RawClient::new(self.kv.clone())
    }

    /// Splits the region holding `key` so that a region starts at `key`
    /// (a transactional user key; `raw` for a raw KV key). Returns the
    /// regions the split produced (just the current one if `key` already
    /// starts a region). The SQL layer uses it to give tables and indexes
    /// their own regions.
    pub async fn split_region(
        &self,
        key: &[u8],
        raw: bool,
    ) -> Result<Vec<tiox_proto::metapb::Region>> {
        let boundary = if raw {
            key.to_vec()
        } else {
            keys::encode_bytes(key)
        };
        let (_, resp) = self
            .kv
            .request(&boundary, |ctx, mut s| {
                let req = tiox_proto::kvrpcpb::SplitRegionRequest {
                    context: Some(ctx),
                    split_keys: vec![key.to_vec()],
                    is_raw_kv: raw,
                    ..Default::default()
                };
                async move { s.split_region(req).await }
            })
            .await?;
        // The cache learns the new regions from PD on the next miss.
        if let Some(cache) = self.kv.cache() {
            for r in &resp.regions {
                cache.invalidate(r.id);
            }
        }
        Ok(resp.regions)
    }

    /// The transactional API.
    pub fn txn(&self) -> txn::TxnClient {
        txn::TxnClient::new(self.kv.clone(), self.tso.clone())
    }
}
