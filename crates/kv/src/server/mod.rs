//! Running a store: open the engine, register with PD (bootstrapping the
//! cluster if it is the first store), start the Raft loop, serve gRPC and
//! the status port over mutual TLS, and keep PD informed with heartbeats.
//!
//! ```text
//!  tikv-server ─► config::validate ─► FjallEngine::open
//!      │  PD (mutual TLS): IsBootstrapped / AllocID / Bootstrap / PutStore
//!      ▼
//!  raftstore::store::start ─► Storage ─► gRPC tikvpb.Tikv  (:20160, mTLS)
//!            │                        │   (also Raft/BatchRaft from peer stores)
//!            │                        └► status /metrics /status (:20180, mTLS)
//!            └► raftstore::transport: one BatchRaft stream per peer store (mTLS)
//!  heartbeat task: StoreHeartbeat every 10 s, RegionHeartbeat on change / 5 s;
//!  PD's operators on the heartbeat stream go to the Raft loop
//! ```

pub mod debug;
pub mod service;
pub mod status;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tiox_client::pd::PdClient;
use tiox_proto::{metapb, pdpb};
use tiox_security::serve::{serve, Port};
use tiox_security::ListenerStats;
use tiox_security::{AllowListAt, ClientTls, ServerTls};
use tokio::net::TcpListener;

use crate::config::Validated;
use crate::engine_fjall::{FjallEngine, FjallOptions};
use crate::raftstore::store::{self, StoreHandle, StoreIdent};
use crate::storage::Storage;

/// The version reported to PD.
pub const VERSION: &str = "8.5.0-tiox";

/// Request counters and latencies by RPC.
#[derive(Debug)]
pub struct Metrics {
    rpcs: Mutex<HashMap<&'static str, (u64, f64)>>,
    /// gRPC port connection and TLS stats.
    pub grpc: Arc<ListenerStats>,
    /// Status port connection and TLS stats.
    pub status: Arc<ListenerStats>,
    /// PD heartbeats sent.
    pub heartbeats: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            rpcs: Mutex::default(),
            grpc: Arc::new(ListenerStats::new("grpc")),
            status: Arc::new(ListenerStats::new("status")),
            heartbeats: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    /// Records one RPC.
    pub fn observe(&self, method: &'static str, took: Duration) {
        let mut m = self.rpcs.lock().unwrap_or_else(|p| p.into_inner());
        let e = m.entry(method).or_default();
        e.0 += 1;
        e.1 += took.as_secs_f64();
    }

    /// (method, count, seconds) for every RPC seen.
    pub fn rpcs(&self) -> Vec<(&'static str, u64, f64)> {
        let m = self.rpcs.lock().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<_> = m.iter().map(|(k, (c, s))| (*k, *c, *s)).collect();
        v.sort_by_key(|x| x.0);
        v
    }
}

/// A running store.
pub struct RunningServer {
    /// Bound gRPC address.
    pub addr: std::net::SocketAddr,
    /// Bound status address.
    pub status_addr: std::net::SocketAddr,
    /// This store's id.
    pub store_id: u64,
    /// The store handle.
    pub store: StoreHandle,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl RunningServer {
    /// Waits until a serving task ends (they do not, normally).
    pub async fn wait(mut self) {
        if let Some(t) = self.tasks.pop() {
            let _ = t.await;
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        self.store.shutdown();
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Connects to PD, retrying with a progress line until it answers.
async fn connect_pd(cfg: &Validated, tls: Option<Arc<ClientTls>>) -> Result<PdClient, String> {
    let started = Instant::now();
    let mut delay = Duration::from_millis(200);
    loop {
        match PdClient::connect(&cfg.pd_endpoints, tls.clone()).await {
            Ok(pd) => return Ok(pd),
            Err(tiox_client::Error::Config(m)) => {
                return Err(format!("tikv-server: [pd] endpoints: {m}"))
            }
            Err(e) => {
                tracing::warn!("waiting for PD ({}s): {e}", started.elapsed().as_secs());
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(3));
            }
        }
    }
}

/// Bootstraps this store (and the cluster, if nobody has) and returns its id.
async fn bootstrap(engine: &FjallEngine, pd: &PdClient, cfg: &Validated) -> Result<u64, String> {
    let err = |e: &dyn std::fmt::Display| format!("tikv-server: bootstrap: {e}");
    let store_id = match store::load_ident(engine).map_err(|e| err(&e))? {
        Some(ident) if ident.cluster_id != pd.cluster_id() => {
            return Err(format!(
                "tikv-server: this data directory belongs to cluster {} but PD serves cluster {}; point --pd at the right PD or use an empty --data-dir",
                ident.cluster_id,
                pd.cluster_id()
            ));
        }
        Some(ident) => ident.store_id,
        None => {
            let store_id = pd.alloc_id().await.map_err(|e| err(&e))?;
            store::write_ident(
                engine,
                StoreIdent {
                    cluster_id: pd.cluster_id(),
                    store_id,
                },
            )
            .map_err(|e| err(&e))?;
            store_id
        }
    };
    if !pd.is_bootstrapped().await.map_err(|e| err(&e))? {
        // A region prepared by an attempt that crashed is reused.
        let region = match store::local_regions(engine)
            .map_err(|e| err(&e))?
            .into_iter()
            .next()
        {
            Some(r) => r,
            None => {
                let region_id = pd.alloc_id().await.map_err(|e| err(&e))?;
                let peer_id = pd.alloc_id().await.map_err(|e| err(&e))?;
                let region = metapb::Region {
                    id: region_id,
                    start_key: Vec::new(),
                    end_key: Vec::new(),
                    region_epoch: Some(metapb::RegionEpoch {
                        conf_ver: 1,
                        version: 1,
                    }),
                    peers: vec![metapb::Peer {
                        id: peer_id,
                        store_id,
                        ..Default::default()
                    }],
                };
                store::write_new_region(engine, &region).map_err(|e| err(&e))?;
                region
            }
        };
        match pd
            .bootstrap(store_meta(cfg, store_id), region.clone())
            .await
        {
            Ok(()) => tracing::info!(
                store_id,
                region_id = region.id,
                "bootstrapped the cluster with its first region"
            ),
            Err(tiox_client::Error::PdRefused { kind, .. }) if kind == "AlreadyBootstrapped" => {
                tracing::info!("another store bootstrapped the cluster first; joining it");
                store::remove_region(engine, region.id).map_err(|e| err(&e))?;
            }
            Err(e) => return Err(err(&e)),
        }
    }
    Ok(store_id)
}

/// Starts the store; returns once it serves.
pub async fn start(cfg: Validated) -> Result<RunningServer, String> {
    let server_tls = match &cfg.tls {
        // The allow-lists are checked per request, so a client outside
        // cert-allowed-cn gets gRPC UNAUTHENTICATED (as from TiKV) rather
        // than a bare TLS alert; the chain is verified in the handshake.
        Some(t) => Some(Arc::new(
            ServerTls::new(t.clone())
                .map_err(|e| e.to_string())?
                .with_allow_list_at(AllowListAt::Request),
        )),
        None => {
            tracing::warn!(
                "!!! --insecure: TLS IS OFF: tikv-server serves PLAINTEXT on {} and {}: anyone who can reach these ports can read and change all data. Set [security] ca-path, cert-path and key-path. !!!",
                cfg.addr,
                cfg.status_addr
            );
            None
        }
    };
    let client_tls = match &cfg.tls {
        Some(t) => Some(Arc::new(
            ClientTls::with_alpn(t.clone(), vec![b"h2".to_vec()]).map_err(|e| e.to_string())?,
        )),
        None => None,
    };
    if cfg.split.region_max_size > 256 << 20 {
        tracing::warn!(
            region_max_size = cfg.split.region_max_size,
            "[coprocessor] region-max-size is large: a region's snapshot (for a new or far-behind replica) is built in memory by the Raft thread, which stalls every region on this store meanwhile"
        );
    }
    std::fs::create_dir_all(&cfg.data_dir)
        .map_err(|e| format!("tikv-server: --data-dir {}: {e}", cfg.data_dir.display()))?;
    let audit = Some(Arc::new(
        tiox_security::audit::AuditLog::open(
            tiox_security::Component::TikvServer,
            "[security] audit-log",
            &cfg.audit_log,
        )
        .map_err(|e| e.to_string())?,
    ));
    let grpc_listener = TcpListener::bind(&cfg.addr)
        .await
        .map_err(|e| format!("tikv-server: cannot listen on --addr {}: {e}", cfg.addr))?;
    let status_listener = TcpListener::bind(&cfg.status_addr).await.map_err(|e| {
        format!(
            "tikv-server: cannot listen on --status-addr {}: {e}",
            cfg.status_addr
        )
    })?;
    let addr = grpc_listener.local_addr().map_err(|e| e.to_string())?;
    let status_addr = status_listener.local_addr().map_err(|e| e.to_string())?;
    let engine = FjallEngine::open(
        &cfg.data_dir.join("db"),
        &FjallOptions {
            cache_bytes: cfg.block_cache_bytes,
        },
    )
    .map_err(|e| format!("tikv-server: {e}"))?;

    let pd = Arc::new(connect_pd(&cfg, client_tls.clone()).await?);
    let store_id = bootstrap(&engine, &pd, &cfg).await?;
    let (transport, transport_rx) = crate::raftstore::transport::Transport::new();
    let handle = store::start(engine.clone(), store_id, transport)
        .map_err(|e| format!("tikv-server: {e}"))?;
    // Raft messages to other stores: one mutually authenticated BatchRaft
    // stream per store, presenting this store's cluster certificate.
    let transport_task = tokio::spawn(crate::raftstore::transport::run(
        transport_rx,
        pd.clone(),
        client_tls.clone(),
        Arc::new(handle.clone()),
    ));
    let storage = Arc::new(Storage::new(engine.clone(), handle.clone()).with_pd(pd.clone()));
    let sizes: RegionSizes = Arc::default();
    let metrics = Arc::new(Metrics::default());

    let grpc = tonic::service::Routes::new(
        tiox_proto::tikvpb::tikv_server::TikvServer::new(service::TikvService::new(
            storage.clone(),
            metrics.clone(),
        ))
        // Client requests are bounded by MAX_VALUE_SIZE per value; a
        // store's BatchRaft message may carry a whole region snapshot.
        .max_decoding_message_size(
            (crate::storage::MAX_VALUE_SIZE * 2)
                .max(crate::raftstore::transport::MAX_RAFT_MESSAGE + (1 << 20)),
        )
        .max_encoding_message_size(64 * 1024 * 1024),
    )
    .into_axum_router();
    let status_state = status::StatusState {
        storage: storage.clone(),
        metrics: metrics.clone(),
        tls: cfg.tls.clone(),
        store_id,
        started: Instant::now(),
    };
    let grpc = grpc.merge(debug::router(status_state.clone()));
    let status_router = status::router(status_state);
    let tasks = vec![
        transport_task,
        tokio::spawn(serve(
            status_listener,
            Port::new(
                "tikv-server status port",
                server_tls.clone(),
                metrics.status.clone(),
            )
            .with_audit(audit.clone()),
            status_router,
        )),
        tokio::spawn(split_check(storage.clone(), cfg.split, sizes.clone())),
        tokio::spawn(heartbeats(
            pd.clone(),
            handle.clone(),
            engine.clone(),
            cfg.clone(),
            store_id,
            metrics.clone(),
            sizes,
        )),
        // Last: `RunningServer::wait` waits on the gRPC port.
        tokio::spawn(serve(
            grpc_listener,
            Port::new("tikv-server gRPC port", server_tls, metrics.grpc.clone()).with_audit(audit),
            grpc,
        )),
    ];
    tracing::info!(store_id, %addr, %status_addr, tls = cfg.tls.is_some(), "tikv-server is serving");
    Ok(RunningServer {
        addr,
        status_addr,
        store_id,
        store: handle,
        tasks,
    })
}

/// Per region: (bytes, keys) as the last split check measured them; the
/// region heartbeats report them to PD.
type RegionSizes = Arc<std::sync::Mutex<HashMap<u64, (u64, u64)>>>;

/// Every `check_interval`, scans each region this store leads that
/// changed since its last check (applied index or epoch moved) and splits
/// those over `[coprocessor]`'s limits (see `raftstore::split`).
async fn split_check(
    storage: Arc<Storage>,
    cfg: crate::raftstore::split::SplitConfig,
    sizes: RegionSizes,
) {
    if cfg.check_interval.is_zero() {
        return;
    }
    let mut checked: HashMap<u64, (u64, u64)> = HashMap::new();
    loop {
        tokio::time::sleep(cfg.check_interval).await;
        let leaders: Vec<_> = storage
            .store()
            .regions()
            .into_iter()
            .filter(|r| r.is_leader)
            .collect();
        checked.retain(|id, _| leaders.iter().any(|r| r.region.id == *id));
        for r in leaders {
            let state = (r.applied, r.region.region_epoch.unwrap_or_default().version);
            if checked.get(&r.region.id) == Some(&state) {
                continue;
            }
            checked.insert(r.region.id, state);
            let engine = storage.engine().clone();
            let region = r.region.clone();
            let scanned = tokio::task::spawn_blocking(move || {
                crate::raftstore::split::check(&engine, &region, &cfg)
            })
            .await;
            let found = match scanned {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => {
                    tracing::warn!(region_id = r.region.id, "split check failed: {e}");
                    continue;
                }
                Err(e) => {
                    tracing::warn!(region_id = r.region.id, "split check task failed: {e}");
                    continue;
                }
            };
            sizes
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(r.region.id, (found.size, found.keys));
            if found.split_keys.is_empty() {
                continue;
            }
            tracing::info!(
                region_id = r.region.id,
                size = found.size,
                keys = found.keys,
                pieces = found.split_keys.len() + 1,
                "region over its split limits; splitting"
            );
            let ctx = tiox_proto::kvrpcpb::Context {
                region_id: r.region.id,
                region_epoch: r.region.region_epoch,
                peer: Some(r.peer),
                ..Default::default()
            };
            match storage.split_region(Some(&ctx), found.split_keys).await {
                Ok(regions) => tracing::info!(
                    region_id = r.region.id,
                    new = ?regions.iter().skip(1).map(|x| x.id).collect::<Vec<_>>(),
                    "split done"
                ),
                Err(e) => {
                    // Checked again next round, writes or not.
                    checked.remove(&r.region.id);
                    match e {
                        Ok(e) => tracing::info!(region_id = r.region.id, "split not done: {e:?}"),
                        Err(e) => tracing::warn!(region_id = r.region.id, "split failed: {e:?}"),
                    }
                }
            }
        }
    }
}

fn store_meta(cfg: &Validated, store_id: u64) -> metapb::Store {
    metapb::Store {
        id: store_id,
        address: cfg.advertise_addr.clone(),
        state: metapb::StoreState::Up as i32,
        version: VERSION.into(),
        peer_address: cfg.advertise_addr.clone(),
        status_address: cfg.advertise_status_addr.clone(),
        start_timestamp: now_secs() as i64,
        deploy_path: std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(|d| d.display().to_string()))
            .unwrap_or_default(),
        ..Default::default()
    }
}

/// Registers the store, then sends store and region heartbeats forever.
async fn heartbeats(
    pd: Arc<PdClient>,
    store: StoreHandle,
    engine: FjallEngine,
    cfg: Validated,
    store_id: u64,
    metrics: Arc<Metrics>,
    sizes: RegionSizes,
) {
    use tiox_engine::Engine as _;
    let started = now_secs();
    loop {
        match pd.put_store(store_meta(&cfg, store_id)).await {
            Ok(()) => break,
            Err(e) => {
                tracing::warn!("PutStore failed, retrying: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    let mut stream: Option<tokio::sync::mpsc::Sender<pdpb::RegionHeartbeatRequest>> = None;
    // Per region: leader, (version, conf_ver), when last sent.
    type Sent = (Option<u64>, (u64, u64), Instant);
    let mut last_sent: HashMap<u64, Sent> = HashMap::new();
    let mut last_store_hb = Instant::now() - Duration::from_secs(60);
    loop {
        if last_store_hb.elapsed() >= Duration::from_secs(10) {
            let regions = store.regions();
            let stats = pdpb::StoreStats {
                store_id,
                region_count: regions.len() as u32,
                start_time: started as u32,
                used_size: engine.disk_size(),
                ..Default::default()
            };
            match pd.store_heartbeat(stats).await {
                Ok(()) => {
                    metrics.heartbeats.fetch_add(1, Ordering::Relaxed);
                    last_store_hb = Instant::now();
                }
                Err(e) => tracing::warn!("store heartbeat to PD failed: {e}"),
            }
        }
        if stream.is_none() {
            match pd.region_heartbeat_stream().await {
                Ok((tx, mut rx)) => {
                    stream = Some(tx);
                    let store = store.clone();
                    tokio::spawn(async move {
                        while let Ok(Some(resp)) = rx.message().await {
                            // Scheduling operators: the Raft loop executes
                            // them if this store still leads the region at
                            // the epoch PD saw.
                            tracing::debug!(
                                region = resp.region_id,
                                "PD operator received: {resp:?}"
                            );
                            store.operator(resp);
                        }
                    });
                    last_sent.clear();
                }
                Err(e) => tracing::warn!("region heartbeat stream to PD failed: {e}"),
            }
        }
        if let Some(tx) = &stream {
            for r in store.regions().into_iter().filter(|r| r.is_leader) {
                let leader = r.leader.as_ref().map(|p| p.id);
                let version = r
                    .region
                    .region_epoch
                    .as_ref()
                    .map_or((0, 0), |e| (e.version, e.conf_ver));
                let due = match last_sent.get(&r.region.id) {
                    Some((l, v, at)) => {
                        *l != leader || *v != version || at.elapsed() >= Duration::from_secs(5)
                    }
                    None => true,
                };
                if !due {
                    continue;
                }
                // Bytes and keys as the split check last measured them
                // (the store's engine size before the first check).
                let size = sizes
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(&r.region.id)
                    .copied()
                    .unwrap_or((engine.disk_size(), 0));
                let req = pdpb::RegionHeartbeatRequest {
                    header: Some(pd.request_header()),
                    region: Some(r.region.clone()),
                    leader: r.leader,
                    pending_peers: r.pending_peers.clone(),
                    term: r.term,
                    down_peers: r
                        .down_peers
                        .iter()
                        .map(|(p, secs)| pdpb::PeerStats {
                            peer: Some(*p),
                            down_seconds: *secs,
                        })
                        .collect(),
                    approximate_size: size.0,
                    approximate_keys: size.1,
                    ..Default::default()
                };
                if tx.send(req).await.is_err() {
                    stream = None;
                    break;
                }
                last_sent.insert(r.region.id, (leader, version, Instant::now()));
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
