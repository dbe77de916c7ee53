//! The client port: one listener per client URL serving gRPC (`pdpb.PD`)
//! and the HTTP JSON API on the same connection.
//!
//! ```text
//!  TCP accept ─► ServerTls::accept (client cert required; refused peers are
//!      │          logged with their address and dropped)
//!      ▼
//!  hyper-util auto (HTTP/1.1 or h2) ─► axum Router
//!                                       ├─ /pdpb.PD/*  ─► grpc::PdService
//!                                       ├─ /pd/api/v1/* ─► http::*
//!                                       └─ /metrics
//! ```
//!
//! With TLS configured nothing here speaks plaintext; without it the
//! server logs a loud warning at startup. The wall clock enters the core
//! only through [`now_ms`].

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tiox_proto::pdpb;
use tiox_security::{ServerTls, TlsSettings};
use tokio::net::{TcpListener, TcpStream};

use crate::cluster::Cluster;
use crate::config::Validated;
use crate::error::{Error, Result};
use crate::metrics::Metrics;

/// The version PD reports (`/pd/api/v1/version`, StoreHeartbeat).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Unix milliseconds from the wall clock.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Everything the request handlers share.
#[derive(Debug)]
pub struct State {
    cluster: Mutex<Cluster>,
    /// The cluster id (fixed).
    pub cluster_id: u64,
    /// This member, as GetMembers and `/members` report it.
    pub member: pdpb::Member,
    /// The validated configuration.
    pub config: Validated,
    /// Counters.
    pub metrics: Metrics,
    /// Unix ms at startup.
    pub started_ms: u64,
}

impl State {
    /// The core, locked. A poisoned lock (a panic elsewhere) is recovered:
    /// the core's methods leave it consistent between calls.
    pub fn cluster(&self) -> MutexGuard<'_, Cluster> {
        self.cluster.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The TLS settings in use, if any.
    pub fn tls(&self) -> Option<&TlsSettings> {
        self.config.tls.as_ref()
    }
}

/// A PD server with its listeners bound.
#[derive(Debug)]
pub struct Server {
    state: Arc<State>,
    listeners: Vec<TcpListener>,
    acceptor: Option<Arc<ServerTls>>,
}

fn member_id(name: &str, peer_urls: &[String]) -> u64 {
    // FNV-1a over the name and peer URLs: stable across restarts.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes().chain(peer_urls.join(",").bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn new_cluster_id(now_ms: u64) -> u64 {
    // As PD: unix seconds in the high 32 bits, randomness below.
    let mut r = [0u8; 4];
    if getrandom(&mut r).is_err() {
        r = (now_ms as u32).to_le_bytes();
    }
    ((now_ms / 1000) << 32) | u64::from(u32::from_le_bytes(r))
}

fn getrandom(buf: &mut [u8]) -> std::io::Result<()> {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")?.read_exact(buf)
}

impl Server {
    /// Opens the data directory and binds the client URLs.
    pub async fn bind(config: Validated) -> Result<Server> {
        let now = now_ms();
        let mut cluster = Cluster::open(&config.data_dir, now, new_cluster_id(now))?;
        let max = config.config.replication.max_replicas;
        if cluster.meta.cluster.max_peer_count != max {
            let c = tiox_proto::metapb::Cluster {
                id: cluster.cluster_id(),
                max_peer_count: max,
            };
            cluster.put_cluster_config(c)?;
        }
        let acceptor = match &config.tls {
            Some(settings) => Some(Arc::new(
                ServerTls::new(settings.clone()).map_err(|e| Error::Tls(e.to_string()))?,
            )),
            None => {
                tracing::warn!(
                    "!!! TLS IS OFF: pd-server serves PLAINTEXT on {} and anyone who can reach \
                     the port can read and change cluster metadata. Set [security] cacert-path, \
                     cert-path and key-path (or --cacert/--cert/--key) and use https:// URLs. !!!",
                    config.config.client_urls
                );
                None
            }
        };
        let mut listeners = Vec::new();
        for url in &config.client_urls {
            let addr = url.authority();
            let l = TcpListener::bind(&addr)
                .await
                .map_err(|source| Error::Listen {
                    addr: addr.clone(),
                    source,
                })?;
            listeners.push(l);
        }
        let peer_urls: Vec<String> = config
            .advertise_peer_urls
            .iter()
            .map(ToString::to_string)
            .collect();
        let member = pdpb::Member {
            name: config.config.name.clone(),
            member_id: member_id(&config.config.name, &peer_urls),
            client_urls: config
                .advertise_client_urls
                .iter()
                .map(ToString::to_string)
                .collect(),
            peer_urls,
            binary_version: VERSION.to_string(),
            deploy_path: std::env::current_exe()
                .ok()
                .and_then(|p| p.parent().map(|d| d.display().to_string()))
                .unwrap_or_default(),
            ..Default::default()
        };
        let state = Arc::new(State {
            cluster_id: cluster.cluster_id(),
            cluster: Mutex::new(cluster),
            member,
            config,
            metrics: Metrics::default(),
            started_ms: now,
        });
        Ok(Server {
            state,
            listeners,
            acceptor,
        })
    }

    /// The bound client addresses.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    /// The shared state (for tests and benchmarks).
    pub fn state(&self) -> Arc<State> {
        self.state.clone()
    }

    /// Serves until the process ends.
    pub async fn run(self) {
        let app = crate::http::router(self.state.clone());
        let mut tasks = Vec::new();
        for listener in self.listeners {
            let app = app.clone();
            let acceptor = self.acceptor.clone();
            let state = self.state.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    let (tcp, peer) = match listener.accept().await {
                        Ok(x) => x,
                        Err(e) => {
                            tracing::warn!("accept failed: {e}");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let _ = tcp.set_nodelay(true);
                    tokio::spawn(serve_connection(
                        tcp,
                        peer,
                        app.clone(),
                        acceptor.clone(),
                        state.clone(),
                    ));
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    }
}

async fn serve_connection(
    tcp: TcpStream,
    peer: SocketAddr,
    app: axum::Router,
    acceptor: Option<Arc<ServerTls>>,
    state: Arc<State>,
) {
    use std::sync::atomic::Ordering;
    let svc = TowerToHyperService::new(app);
    let builder = auto::Builder::new(TokioExecutor::new());
    let peer_s = peer.to_string();
    let result = match acceptor {
        Some(tls) => {
            let accepted = tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(tcp, &peer_s)).await;
            let stream = match accepted {
                Ok(Ok((stream, _identity))) => stream,
                Ok(Err(e)) => {
                    state
                        .metrics
                        .tls_handshake_failures
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(peer = %peer_s, "client port: refused connection: {e}");
                    return;
                }
                Err(_) => {
                    state
                        .metrics
                        .tls_handshake_failures
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        peer = %peer_s,
                        "client port: refused connection: no TLS handshake within {}s",
                        HANDSHAKE_TIMEOUT.as_secs()
                    );
                    return;
                }
            };
            state.metrics.connections.fetch_add(1, Ordering::Relaxed);
            builder.serve_connection(TokioIo::new(stream), svc).await
        }
        None => {
            state.metrics.connections.fetch_add(1, Ordering::Relaxed);
            builder.serve_connection(TokioIo::new(tcp), svc).await
        }
    };
    if let Err(e) = result {
        tracing::debug!(peer = %peer_s, "connection ended: {e}");
    }
}
