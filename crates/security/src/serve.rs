//! The one accept loop of every server port of every component (PD's client
//! and peer ports, TiKV's gRPC and status ports, TiDB's status port):
//!
//! ```text
//!  accept ─► ServerTls::accept_within(handshake timeout) ─┬─ refused: logged with the
//!     │        (at most `max_handshakes` in flight; the    │  peer and reason, counted in
//!     │         oldest is dropped when a new one arrives)  │  ListenerStats, dropped
//!     ▼                                                    │
//!  the listener's handler (Stream, PeerIdentity) ◄─────────┘ ok: counted by key exchange group
//!     └─ serve(): hyper-util auto (HTTP/1.1 or h2 by preface) ─► the component's axum Router
//! ```
//!
//! Without TLS (`--insecure`) the handler gets the plaintext stream; the
//! component has already said so loudly at startup. The MySQL port does its
//! TLS inside the MySQL protocol and so counts into the same
//! [`ListenerStats`] from its own handshake code.

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_rustls::server::TlsStream;

use crate::audit::AuditLog;
use crate::stats::{ListenerStats, Refusal};
use crate::{PeerIdentity, ServerTls};

pub use crate::server::{HANDSHAKE_TIMEOUT, MAX_HANDSHAKES};

/// One listener's setup.
#[derive(Clone, Debug)]
pub struct Port {
    /// Names the port in log lines ("tikv-server gRPC port").
    pub what: &'static str,
    /// TLS acceptor; `None` only with `--insecure`.
    pub tls: Option<Arc<ServerTls>>,
    /// The listener's counters.
    pub stats: Arc<ListenerStats>,
    /// How long a peer may take to finish the handshake.
    pub handshake_timeout: Duration,
    /// Most handshakes in flight; a new connection beyond it drops the
    /// oldest unfinished handshake, so idle connections cannot keep a
    /// valid client out.
    pub max_handshakes: usize,
    /// Where refusals are written as JSON lines (`security-audit.log`).
    pub audit: Option<Arc<AuditLog>>,
}

impl Port {
    /// A port with the timeout and cap of the TLS settings
    /// (`handshake-timeout`, `max-handshakes`).
    pub fn new(what: &'static str, tls: Option<Arc<ServerTls>>, stats: Arc<ListenerStats>) -> Port {
        let (handshake_timeout, max_handshakes) = match &tls {
            Some(t) => (t.settings().handshake_timeout, t.settings().max_handshakes),
            None => (HANDSHAKE_TIMEOUT, MAX_HANDSHAKES),
        };
        Port {
            what,
            tls,
            stats,
            handshake_timeout,
            max_handshakes,
            audit: None,
        }
    }

    /// The same port, writing refusals to `audit`.
    pub fn with_audit(mut self, audit: Option<Arc<AuditLog>>) -> Port {
        self.audit = audit;
        self
    }

    /// Counts a refusal, logs it and writes its audit line.
    pub fn refused(&self, peer: &str, why: Refusal, detail: &str, cert: Option<&crate::CertInfo>) {
        self.stats.refused(why);
        tracing::warn!(peer = %peer, reason = %why, "{}: refused connection: {detail}", self.what);
        if let Some(audit) = &self.audit {
            audit.record(&crate::audit::Event {
                listener: self.stats.listener(),
                peer,
                reason: why,
                detail,
                cert,
                user: None,
            });
        }
    }
}

/// An accepted connection: plaintext (`--insecure`) or TLS.
#[derive(Debug)]
pub enum Stream {
    /// No TLS, on purpose.
    Plain(TcpStream),
    /// After a completed server handshake.
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }
}

/// The handshakes in flight on one listener, oldest first; each can be
/// told to give up.
#[derive(Debug, Default)]
struct InFlight {
    next: AtomicU64,
    pending: Mutex<BTreeMap<u64, oneshot::Sender<()>>>,
}

impl InFlight {
    /// Registers a handshake; if `cap` are already in flight, the oldest is
    /// told to give up.
    fn enter(&self, cap: usize) -> (u64, oneshot::Receiver<()>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        while p.len() >= cap.max(1) {
            match p.pop_first() {
                Some((_, evict)) => {
                    let _ = evict.send(());
                }
                None => break,
            }
        }
        p.insert(id, tx);
        (id, rx)
    }

    fn leave(&self, id: u64) {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }
}

/// Accepts connections on `listener` until the task is dropped, runs the
/// TLS handshake (if any) under the port's limits, and hands each accepted
/// connection to `handler`.
pub async fn accept_loop<H, F>(listener: TcpListener, port: Port, handler: H)
where
    H: Fn(Stream, PeerIdentity) -> F + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let handler = Arc::new(handler);
    let in_flight = Arc::new(InFlight::default());
    let port = Arc::new(port);
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!("{}: accept failed: {e}", port.what);
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let (port, handler, in_flight) = (port.clone(), handler.clone(), in_flight.clone());
        tokio::spawn(async move {
            if let Some((stream, identity)) = handshake(tcp, peer, &port, &in_flight).await {
                port.stats.connections.fetch_add(1, Ordering::Relaxed);
                handler(stream, identity).await;
            }
        });
    }
}

async fn handshake(
    tcp: TcpStream,
    peer: SocketAddr,
    port: &Port,
    in_flight: &InFlight,
) -> Option<(Stream, PeerIdentity)> {
    let peer_s = peer.to_string();
    let Some(tls) = &port.tls else {
        let identity = PeerIdentity {
            addr: peer_s,
            cert: None,
            alpn: None,
            tls: None,
        };
        return Some((Stream::Plain(tcp), identity));
    };
    let (id, evicted) = in_flight.enter(port.max_handshakes);
    let outcome = tokio::select! {
        r = tls.accept_within(tcp, &peer_s, port.handshake_timeout) => Some(r),
        _ = evicted => None,
    };
    in_flight.leave(id);
    match outcome {
        Some(Ok((stream, identity))) => {
            port.stats
                .handshake(identity.tls.as_ref().and_then(|n| n.kx_group.as_deref()));
            Some((Stream::Tls(Box::new(stream)), identity))
        }
        Some(Err(e)) => {
            let why = e.refusal().unwrap_or(Refusal::Other);
            port.refused(&peer_s, why, &e.to_string(), e.presented());
            None
        }
        None => {
            let detail = format!(
                "dropped an unfinished handshake from {peer_s}: {} handshakes in flight (the \
                 listener's cap); the oldest gives way to new connections",
                port.max_handshakes
            );
            port.refused(&peer_s, Refusal::Overload, &detail, None);
            None
        }
    }
}

/// Serves `router` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, port: Port, router: axum::Router) {
    let tls = port.tls.clone();
    let what = port.what;
    let shared = Arc::new(port.clone());
    accept_loop(listener, port, move |stream, identity| {
        let (router, tls, port) = (router.clone(), tls.clone(), shared.clone());
        async move {
            let builder = auto::Builder::new(TokioExecutor::new());
            let router = match &tls {
                Some(tls) if tls.allow_list_at() == crate::AllowListAt::Request => {
                    match tls.check_allowed(&identity) {
                        Ok(()) => router,
                        Err(reason) => {
                            port.refused(
                                &identity.addr,
                                Refusal::NotAllowed,
                                &format!("refusing every request from {}: {reason}", identity.addr),
                                identity.cert.as_ref(),
                            );
                            unauthenticated(reason)
                        }
                    }
                }
                _ => router,
            };
            let svc = TowerToHyperService::new(router);
            if let Err(e) = builder.serve_connection(TokioIo::new(stream), svc).await {
                tracing::debug!(peer = %identity.addr, "{what}: connection ended: {e}");
            }
        }
    })
    .await;
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
