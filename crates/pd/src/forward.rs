//! Follower-to-leader forwarding of gRPC calls and dashboard pages: a PD
//! member that is not the serving leader passes `pdpb.PD` calls (other than
//! GetMembers, which every member answers) and `/dashboard/` requests to
//! the leader over one cached h2 connection, through
//! `ClientTls` when TLS is configured, and streams the answer back
//! (trailers, and so gRPC status, included). Clients may thus talk to any
//! member. etcd's services are forwarded the same way, except MemberList
//! and Status, which every member answers for itself. When no leader is
//! known, the call is served locally, which answers with a not-leader
//! error.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State as AxState};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

use crate::config::{Scheme, Url};
use crate::server::State;

/// A cached connection to the leader.
#[derive(Debug, Default)]
pub struct Forwarder {
    conn: tokio::sync::Mutex<Option<(String, SendRequest<Body>)>>,
}

impl Forwarder {
    async fn sender(&self, leader: &Url, state: &State) -> Result<SendRequest<Body>, String> {
        let key = leader.to_string();
        let mut guard = self.conn.lock().await;
        if let Some((k, s)) = guard.as_ref() {
            if *k == key && !s.is_closed() {
                return Ok(s.clone());
            }
        }
        let sender = match (leader.scheme, state.tls()) {
            (Scheme::Https, Some(settings)) => {
                let tls =
                    tiox_security::ClientTls::with_alpn(settings.clone(), vec![b"h2".to_vec()])
                        .map_err(|e| e.to_string())?;
                let io = tls
                    .connect_tcp(&leader.authority())
                    .await
                    .map_err(|e| e.to_string())?;
                handshake(TokioIo::new(io)).await?
            }
            (Scheme::Http, None) => {
                let io = TcpStream::connect(leader.authority())
                    .await
                    .map_err(|e| format!("connecting to the leader at {key}: {e}"))?;
                let _ = io.set_nodelay(true);
                handshake(TokioIo::new(io)).await?
            }
            _ => {
                return Err(format!(
                    "the leader's URL {key} does not match this member's TLS setting"
                ))
            }
        };
        *guard = Some((key, sender.clone()));
        Ok(sender)
    }
}

async fn handshake<IO>(io: IO) -> Result<SendRequest<Body>, String>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
        .await
        .map_err(|e| format!("h2 handshake with the leader: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// Whether a path is forwarded to the leader by a follower.
fn forwarded(path: &str) -> bool {
    (path.starts_with("/pdpb.PD/") && path != "/pdpb.PD/GetMembers")
        || path.starts_with("/dashboard/")
}

/// Axum middleware: forwards `pdpb.PD` calls and dashboard requests when
/// this member does not serve.
pub async fn forward_grpc(
    AxState(state): AxState<Arc<State>>,
    req: Request,
    next: Next,
) -> Response {
    let path = req.uri().path();
    if let Some(resp) = crate::etcd::unsupported(path) {
        return resp;
    }
    if !crate::etcd::forwarded(path) && !forwarded(path) {
        return next.run(req).await;
    }
    let page = req.uri().path().starts_with("/dashboard/");
    let leader = match state.cluster() {
        Ok(_) => None,
        Err(crate::Error::NotLeader { leader: Some(url) }) => Url::parse(&url, "leader URL").ok(),
        Err(_) => None,
    };
    let Some(leader) = leader else {
        return next.run(req).await;
    };
    let sender = match state.forwarder.sender(&leader, &state).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("cannot forward to the PD leader: {e}");
            return next.run(req).await;
        }
    };
    let (mut parts, body) = req.into_parts();
    let scheme = match leader.scheme {
        Scheme::Http => "http",
        Scheme::Https => "https",
    };
    let pq = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    match format!("{scheme}://{}{pq}", leader.authority()).parse() {
        Ok(uri) => parts.uri = uri,
        Err(_) => return next.run(Request::from_parts(parts, body)).await,
    }
    let mut sender = sender;
    match sender.send_request(Request::from_parts(parts, body)).await {
        Ok(resp) => resp
            .map(|b| {
                Body::new(UnavailableOnBreak {
                    inner: b,
                    done: false,
                })
            })
            .into_response(),
        Err(e) => {
            tracing::warn!("forwarding to the PD leader {leader} failed: {e}");
            if page {
                return (
                    axum::http::StatusCode::BAD_GATEWAY,
                    "forwarding to the PD leader failed; retry",
                )
                    .into_response();
            }
            let mut resp = Response::new(Body::empty());
            let h = resp.headers_mut();
            h.insert(
                axum::http::header::CONTENT_TYPE,
                axum::http::HeaderValue::from_static("application/grpc"),
            );
            h.insert("grpc-status", axum::http::HeaderValue::from_static("14"));
            h.insert(
                "grpc-message",
                axum::http::HeaderValue::from_static("forwarding to the PD leader failed; retry"),
            );
            resp
        }
    }
}

/// A forwarded answer's body whose break (the leader went away mid-stream,
/// e.g. a Watch or a keep-alive stream) ends the call with gRPC
/// `Unavailable` trailers, which clients retry on, instead of a reset
/// stream, which etcd's client takes as final.
struct UnavailableOnBreak {
    inner: hyper::body::Incoming,
    done: bool,
}

impl hyper::body::Body for UnavailableOnBreak {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        use std::task::Poll;
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        match std::pin::Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Err(e))) => {
                this.done = true;
                tracing::debug!("a forwarded gRPC stream broke: {e}");
                let mut h = axum::http::HeaderMap::new();
                h.insert("grpc-status", axum::http::HeaderValue::from_static("14"));
                h.insert(
                    "grpc-message",
                    axum::http::HeaderValue::from_static("the PD leader went away mid-call; retry"),
                );
                Poll::Ready(Some(Ok(hyper::body::Frame::trailers(h))))
            }
            Poll::Ready(Some(Ok(f))) => Poll::Ready(Some(Ok(f))),
            Poll::Ready(None) => {
                this.done = true;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }
}
