//! Serving HTTP/1.1 and HTTP/2 (gRPC) on a listener, through [`ServerTls`]
//! when TLS is configured. Every server port of every component (PD's client
//! port, TiKV's gRPC and status ports, TiDB's status port) runs this loop:
//!
//! ```text
//!  accept ─► ServerTls::accept (bounded by HANDSHAKE_TIMEOUT; refusals logged
//!     │       with the peer's address and reason, counted, connection dropped)
//!     ▼
//!  hyper-util auto (HTTP/1.1 or h2 by preface) ─► the component's axum Router
//! ```
//!
//! Without TLS (no `[security]` paths) it serves plaintext; the component
//! has already warned loudly at startup.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};

use crate::ServerTls;

pub use crate::server::HANDSHAKE_TIMEOUT;

/// Connection counters, for `/metrics`.
#[derive(Debug, Default)]
pub struct ServeStats {
    /// Connections served (after a successful handshake, if TLS).
    pub connections: AtomicU64,
    /// Handshakes refused or timed out.
    pub handshake_failures: AtomicU64,
}

/// Serves `router` on `listener` until the task is dropped. `what` names the
/// port in log lines ("tikv-server gRPC port").
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<ServerTls>>,
    router: axum::Router,
    what: &'static str,
    stats: Arc<ServeStats>,
) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!("{what}: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        tokio::spawn(serve_connection(
            tcp,
            peer,
            router.clone(),
            tls.clone(),
            what,
            stats.clone(),
        ));
    }
}

/// A router that refuses everything: gRPC calls get `UNAUTHENTICATED`
/// (status 16) with the reason, as TiKV answers a CN outside
/// `cert-allowed-cn`; HTTP requests get 403.
fn unauthenticated(reason: String) -> axum::Router {
    use axum::http::{header, HeaderValue, StatusCode};
    use axum::response::IntoResponse;
    let message = format!("Common name check fail: {reason}");
    axum::Router::new().fallback(move |headers: axum::http::HeaderMap| {
        let message = message.clone();
        async move {
            let grpc = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("application/grpc"));
            if grpc {
                let mut resp = StatusCode::OK.into_response();
                let h = resp.headers_mut();
                h.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/grpc"),
                );
                h.insert("grpc-status", HeaderValue::from_static("16"));
                let m: String = message
                    .chars()
                    .filter(|c| c.is_ascii() && !c.is_ascii_control())
                    .collect();
                if let Ok(v) = HeaderValue::from_str(&m) {
                    h.insert("grpc-message", v);
                }
                resp
            } else {
                (StatusCode::FORBIDDEN, message).into_response()
            }
        }
    })
}

async fn serve_connection(
    tcp: TcpStream,
    peer: SocketAddr,
    router: axum::Router,
    tls: Option<Arc<ServerTls>>,
    what: &'static str,
    stats: Arc<ServeStats>,
) {
    let svc = TowerToHyperService::new(router);
    let builder = auto::Builder::new(TokioExecutor::new());
    let peer_s = peer.to_string();
    let result = match tls {
        Some(tls) => {
            let stream =
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(tcp, &peer_s)).await {
                    Ok(Ok((stream, identity))) => {
                        if tls.allow_list_at() == crate::AllowListAt::Request {
                            if let Err(reason) = tls.check_allowed(&identity) {
                                stats.handshake_failures.fetch_add(1, Ordering::Relaxed);
                                tracing::warn!(
                                    peer = %peer_s,
                                    "{what}: refusing every request from {peer_s}: {reason}"
                                );
                                let svc = TowerToHyperService::new(unauthenticated(reason));
                                let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                                return;
                            }
                        }
                        stream
                    }
                    Ok(Err(e)) => {
                        stats.handshake_failures.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(peer = %peer_s, "{what}: refused connection: {e}");
                        return;
                    }
                    Err(_) => {
                        stats.handshake_failures.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(
                            peer = %peer_s,
                            "{what}: refused connection from {peer_s}: no TLS handshake within {}s",
                            HANDSHAKE_TIMEOUT.as_secs()
                        );
                        return;
                    }
                };
            stats.connections.fetch_add(1, Ordering::Relaxed);
            builder.serve_connection(TokioIo::new(stream), svc).await
        }
        None => {
            stats.connections.fetch_add(1, Ordering::Relaxed);
            builder.serve_connection(TokioIo::new(tcp), svc).await
        }
    };
    if let Err(e) = result {
        tracing::debug!(peer = %peer_s, "{what}: connection ended: {e}");
    }
}
