//! The PD client: finds the PD leader among the configured endpoints with
//! GetMembers, follows leader changes, and wraps the RPCs stores and SQL
//! nodes need. Every request carries the cluster id PD told us; every
//! response header is checked for PD's error.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tiox_proto::pdpb::pd_client::PdClient as Stub;
use tiox_proto::{metapb, pdpb};
use tiox_security::ClientTls;
use tokio::sync::RwLock;
use tonic::transport::Channel;

use crate::channel::{authority, channel, rpc_error};
use crate::error::{Error, Result};

/// Timeout of one PD RPC (and of one GetMembers when looking for the
/// leader).
pub const PD_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest one PD call takes with its retries (a first try, a leader
/// re-discovery asking every endpoint at once, a second try with what is
/// left), so that a caller with PD gone (refusing, or frozen and silent)
/// hears an [`Error::PdUnreachable`] within this bound. A timestamp
/// request is bounded the same way (see [`crate::tso`]).
pub const PD_CALL_BUDGET: Duration = Duration::from_secs(2 * PD_TIMEOUT.as_secs());

/// A gRPC status from PD as our error: transport failures become
/// [`Error::PdUnreachable`], naming PD.
pub fn pd_rpc_error(addr: &str, status: tonic::Status) -> Error {
    match rpc_error(addr, status) {
        Error::Unavailable { addr, reason } => Error::PdUnreachable { addr, reason },
        other => other,
    }
}

fn timed_out(addr: &str, what: &str) -> Error {
    Error::PdUnreachable {
        addr: addr.to_string(),
        reason: format!("no answer to {what} within {}s", PD_TIMEOUT.as_secs()),
    }
}

#[derive(Clone)]
struct Leader {
    addr: String,
    stub: Stub<Channel>,
}

/// A client of the PD cluster.
pub struct PdClient {
    endpoints: Vec<String>,
    tls: Option<Arc<ClientTls>>,
    cluster_id: u64,
    leader: RwLock<Leader>,
}

impl std::fmt::Debug for PdClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PdClient")
            .field("endpoints", &self.endpoints)
            .field("cluster_id", &self.cluster_id)
            .finish()
    }
}

fn check_header(addr: &str, header: Option<&pdpb::ResponseHeader>) -> Result<()> {
    match header.and_then(|h| h.error.as_ref()) {
        Some(e) if e.r#type != pdpb::ErrorType::Ok as i32 => Err(Error::PdRefused {
            kind: format!(
                "{:?}",
                pdpb::ErrorType::try_from(e.r#type).unwrap_or(pdpb::ErrorType::Unknown)
            ),
            message: format!("{addr}: {}", e.message),
        }),
        _ => Ok(()),
    }
}

impl PdClient {
    /// Connects to the PD cluster given by `endpoints` (URLs, comma list
    /// split by the caller), finding the leader.
    pub async fn connect(endpoints: &[String], tls: Option<Arc<ClientTls>>) -> Result<PdClient> {
        let mut addrs = Vec::new();
        for e in endpoints {
            addrs.push(authority(e, tls.is_some())?);
        }
        if addrs.is_empty() {
            return Err(Error::Config("no PD endpoint given (--pd)".into()));
        }
        let (cluster_id, leader) = Self::discover(&addrs, tls.clone()).await?;
        Ok(PdClient {
            endpoints: addrs,
            tls,
            cluster_id,
            leader: RwLock::new(leader),
        })
    }

    /// Asks every endpoint at once for the members (each GetMembers
    /// bounded by [`PD_TIMEOUT`]) and takes the first answer naming a
    /// leader, so that a frozen or dead endpoint early in the list costs
    /// no more time than the others.
    async fn discover(addrs: &[String], tls: Option<Arc<ClientTls>>) -> Result<(u64, Leader)> {
        use futures::StreamExt;
        let mut asks = futures::stream::FuturesUnordered::new();
        for addr in addrs {
            let stub = Stub::new(channel(addr, tls.clone())?);
            asks.push(Self::ask_members(addr.clone(), stub, tls.clone()));
        }
        let mut last = None;
        while let Some(answer) = asks.next().await {
            match answer {
                Ok(found) => return Ok(found),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| Error::Config("no PD endpoint".into())))
    }

    /// One endpoint's view of the cluster: its id and leader.
    async fn ask_members(
        addr: String,
        mut stub: Stub<Channel>,
        tls: Option<Arc<ClientTls>>,
    ) -> Result<(u64, Leader)> {
        let req = pdpb::GetMembersRequest {
            header: Some(pdpb::RequestHeader::default()),
        };
        let resp = tokio::time::timeout(PD_TIMEOUT, stub.get_members(req))
            .await
            .map_err(|_| timed_out(&addr, "GetMembers"))?
            .map_err(|status| pd_rpc_error(&addr, status))?
            .into_inner();
        check_header(&addr, resp.header.as_ref())?;
        let cluster_id = resp.header.map_or(0, |h| h.cluster_id);
        let url = resp
            .leader
            .as_ref()
            .and_then(|m| m.client_urls.first().cloned())
            .ok_or_else(|| Error::Pd(format!("{addr}: PD has no leader yet")))?;
        let laddr = authority(&url, tls.is_some())?;
        let leader = if laddr == addr {
            Leader { addr: laddr, stub }
        } else {
            Leader {
                stub: Stub::new(channel(&laddr, tls)?),
                addr: laddr,
            }
        };
        Ok((cluster_id, leader))
    }

    /// The cluster id.
    pub fn cluster_id(&self) -> u64 {
        self.cluster_id
    }

    /// The current leader's address.
    pub async fn leader_addr(&self) -> String {
        self.leader.read().await.addr.clone()
    }

    fn header(&self) -> Option<pdpb::RequestHeader> {
        Some(pdpb::RequestHeader {
            cluster_id: self.cluster_id,
            sender_id: 0,
        })
    }

    /// Re-discovers the leader after a failure.
    pub async fn reconnect(&self) -> Result<()> {
        let (_, leader) = Self::discover(&self.endpoints, self.tls.clone()).await?;
        *self.leader.write().await = leader;
        Ok(())
    }

    /// Runs `f` against the leader, re-discovering the leader after an
    /// unreachable one and trying again, all within [`PD_CALL_BUDGET`].
    async fn call<T, F, Fut>(&self, f: F) -> Result<T>
    where
        F: Fn(Stub<Channel>) -> Fut,
        Fut: std::future::Future<Output = Result<T, tonic::Status>>,
    {
        let deadline = Instant::now() + PD_CALL_BUDGET;
        let mut attempt = 0;
        loop {
            let leader = self.leader.read().await.clone();
            let left = deadline.saturating_duration_since(Instant::now());
            let outcome = tokio::time::timeout(left.min(PD_TIMEOUT), f(leader.stub)).await;
            let err = match outcome {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(status)) => pd_rpc_error(&leader.addr, status),
                Err(_) => timed_out(&leader.addr, "the request"),
            };
            attempt += 1;
            if attempt > 2 || !matches!(err, Error::PdUnreachable { .. }) {
                return Err(err);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.reconnect()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::debug!("PD re-discovery failed: {e}");
                    tokio::time::sleep(Duration::from_millis(200).min(left)).await;
                }
                Err(_) => return Err(err),
            }
            if Instant::now() >= deadline {
                return Err(err);
            }
        }
    }

    /// Whether the cluster has been bootstrapped.
    pub async fn is_bootstrapped(&self) -> Result<bool> {
        let h = self.header();
        let r = self
            .call(|mut s| async move {
                s.is_bootstrapped(pdpb::IsBootstrappedRequest { header: h })
                    .await
            })
            .await?
            .into_inner();
        check_header(&self.leader_addr().await, r.header.as_ref())?;
        Ok(r.bootstrapped)
    }

    /// Bootstraps the cluster with its first store and region.
    pub async fn bootstrap(&self, store: metapb::Store, region: metapb::Region) -> Result<()> {
        let h = self.header();
        let r = self
            .call(|mut s| {
                let req = pdpb::BootstrapRequest {
                    header: h,
                    store: Some(store.clone()),
                    region: Some(region.clone()),
                };
                async move { s.bootstrap(req).await }
            })
            .await?
            .into_inner();
        check_header(&self.leader_addr().await, r.header.as_ref())
    }

    /// A new unique id.
    pub async fn alloc_id(&self) -> Result<u64> {
        let h = self.header();
        let r = self
            .call(|mut s| async move { s.alloc_id(pdpb::AllocIdRequest { header: h }).await })
            .await?
            .into_inner();
        check_header(&self.leader_addr().await, r.header.as_ref())?;
        Ok(r.id)
    }

    /// Registers or updates a store.
    pub async fn put_store(&self, store: metapb::Store) -> Result<()> {
        let h = self.header();
        let r = self
            .call(|mut s| {
                let req = pdpb::PutStoreRequest {
                    header: h,
                    store: Some(store.clone()),
                };
                async move { s.put_store(req).await }
            })
            .await?
            .into_inner();
        check_header(&self.leader_addr().await, r.header.as_ref())
    }

    /// A store by id.
    pub async fn get_store(&self, id: u64) -> Result<Option<metapb::Store>> {
        let h = self.header();
        let r = self
            .call(|mut s| async move {
                s.get_store(pdpb::GetStoreRequest {
                    header: h,
                    store_id: id,
                })
                .await
            })
            .await?
            .into_inner();
        check_header(&self.leader_addr().await, r.header.as_ref())?;
        Ok(r.store)
    }

    /// Reports store statistics.
    pub async fn store_heartbeat(&self, stats: pdpb::StoreStats) -> Result<()> {
        let h = self.header();
        let r = self
            .call(|mut s| {
                let req = pdpb::StoreHeartbeatRequest {
                    header: h,
                    stats: Some(stats),
                };
                async move { s.store_heartbeat(req).await }
            })
            .await?
            .into_inner();
        check_header(&self.leader_addr().await, r.header.as_ref())
    }

    /// The region containing `key`, and its leader.
    pub async fn get_region(
        &self,
        key: &[u8],
    ) -> Result<(Option<metapb::Region>, Option<metapb::Peer>)> {
        let h = self.header();
        let key = key.to_vec();
        let r = self
            .call(|mut s| {
                let req = pdpb::GetRegionRequest {
                    header: h,
                    region_key: key.clone(),
                    ..Default::default()
                };
                async move { s.get_region(req).await }
            })
            .await?
            .into_inner();
        check_header(&self.leader_addr().await, r.header.as_ref())?;
        Ok((r.region, r.leader))
    }

    /// Opens the region heartbeat stream: send reports on the returned
    /// sender; PD's operators arrive on the returned stream.
    pub async fn region_heartbeat_stream(
        &self,
    ) -> Result<(
        tokio::sync::mpsc::Sender<pdpb::RegionHeartbeatRequest>,
        tonic::Streaming<pdpb::RegionHeartbeatResponse>,
    )> {
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let leader = self.leader.read().await.clone();
        let mut stub = leader.stub;
        let resp = tokio::time::timeout(
            PD_TIMEOUT,
            stub.region_heartbeat(tokio_stream::wrappers::ReceiverStream::new(rx)),
        )
        .await
        .map_err(|_| timed_out(&leader.addr, "opening the region heartbeat stream"))?
        .map_err(|s| pd_rpc_error(&leader.addr, s))?;
        Ok((tx, resp.into_inner()))
    }

    /// Opens a TSO stream on the leader: send requests on the sender, read
    /// responses from the stream.
    pub async fn tso_stream(
        &self,
    ) -> Result<(
        tokio::sync::mpsc::Sender<pdpb::TsoRequest>,
        tonic::Streaming<pdpb::TsoResponse>,
    )> {
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let leader = self.leader.read().await.clone();
        let mut stub = leader.stub;
        let resp = tokio::time::timeout(
            PD_TIMEOUT,
            stub.tso(tokio_stream::wrappers::ReceiverStream::new(rx)),
        )
        .await
        .map_err(|_| timed_out(&leader.addr, "opening the TSO stream"))?
        .map_err(|s| pd_rpc_error(&leader.addr, s))?;
        Ok((tx, resp.into_inner()))
    }

    /// A region by id, and its leader.
    pub async fn get_region_by_id(
        &self,
        id: u64,
    ) -> Result<(Option<metapb::Region>, Option<metapb::Peer>)> {
        let h = self.header();
        let r = self
            .call(|mut s| {
                let req = pdpb::GetRegionByIdRequest {
                    header: h,
                    region_id: id,
                    ..Default::default()
                };
                async move { s.get_region_by_id(req).await }
            })
            .await?
            .into_inner();
        check_header(&self.leader_addr().await, r.header.as_ref())?;
        Ok((r.region, r.leader))
    }

    /// Ids for splitting `region` into `count + 1` regions: per new region,
    /// a region id and one peer id for each of `region`'s peers (in order).
    pub async fn ask_batch_split(
        &self,
        region: &metapb::Region,
        count: u32,
    ) -> Result<Vec<pdpb::SplitId>> {
        let h = self.header();
        let r = self
            .call(|mut s| {
                let req = pdpb::AskBatchSplitRequest {
                    header: h,
                    region: Some(region.clone()),
                    split_count: count,
                };
                async move { s.ask_batch_split(req).await }
            })
            .await?
            .into_inner();
        check_header(&self.leader_addr().await, r.header.as_ref())?;
        Ok(r.ids)
    }

    /// Tells PD the regions a split produced (the original and the new).
    pub async fn report_batch_split(&self, regions: Vec<metapb::Region>) -> Result<()> {
        let h = self.header();
        let r = self
            .call(|mut s| {
                let req = pdpb::ReportBatchSplitRequest {
                    header: h,
                    regions: regions.clone(),
                };
                async move { s.report_batch_split(req).await }
            })
            .await?
            .into_inner();
        check_header(&self.leader_addr().await, r.header.as_ref())
    }

    /// The request header for raw use of streams.
    pub fn request_header(&self) -> pdpb::RequestHeader {
        pdpb::RequestHeader {
            cluster_id: self.cluster_id,
            sender_id: 0,
        }
    }

    /// One timestamp (a fresh TSO stream per call; the batching client,
    /// `tso::TsoClient`, keeps one stream).
    pub async fn get_ts(&self) -> Result<u64> {
        let leader = self.leader.read().await.clone();
        let mut stub = leader.stub;
        let req = pdpb::TsoRequest {
            header: self.header(),
            count: 1,
            ..Default::default()
        };
        let exchange = async {
            let mut resp = stub
                .tso(tokio_stream::iter(vec![req]))
                .await
                .map_err(|s| pd_rpc_error(&leader.addr, s))?
                .into_inner();
            resp.message()
                .await
                .map_err(|s| pd_rpc_error(&leader.addr, s))?
                .ok_or_else(|| Error::Pd("TSO stream closed without a timestamp".into()))
        };
        let r = tokio::time::timeout(PD_TIMEOUT, exchange)
            .await
            .map_err(|_| timed_out(&leader.addr, "the timestamp request"))??;
        check_header(&leader.addr, r.header.as_ref())?;
        let ts = r
            .timestamp
            .ok_or_else(|| Error::Pd("TSO response without timestamp".into()))?;
        Ok(((ts.physical as u64) << 18) | ts.logical as u64)
    }
}
