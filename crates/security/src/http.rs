//! The one HTTP/1.1 client over mutual TLS, for the few requests components
//! and tools make to each other's HTTP APIs (pd-ctl and tikv-ctl to PD, a
//! joining PD member to the cluster): one connection per request, hyper for
//! the protocol, [`ClientTls`] for TLS. An `https` request is only ever
//! sent over TLS; there is no plaintext fallback.
//!
//! ```text
//!  request(addr, Some(tls), POST, path, body) ─► TcpStream ─► ClientTls::connect ─► hyper http1 ─► Answer
//! ```

use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::client::split_host_port;
use crate::ClientTls;

pub use hyper::Method;

/// What came back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The body.
    pub body: Vec<u8>,
    /// The `Location` header, if any (PD followers redirect to the leader).
    pub location: Option<String>,
}

/// One request.
#[derive(Clone, Debug)]
pub struct Request<'a> {
    /// `GET`, `POST`, `DELETE`, ...
    pub method: Method,
    /// The path and query.
    pub path: &'a str,
    /// A JSON body, if any.
    pub json: Option<&'a [u8]>,
    /// `User-Agent`.
    pub agent: &'a str,
    /// Bound on the whole exchange.
    pub timeout: Duration,
}

/// Sends `req` to `addr` (`host:port`, `[v6]:port`) over `tls` (plaintext
/// only when `tls` is `None`, i.e. an `http://` endpoint). The error is a
/// sentence naming the step that failed.
pub async fn request(
    addr: &str,
    tls: Option<&ClientTls>,
    req: &Request<'_>,
) -> Result<Answer, String> {
    let work = async {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connecting: {e}"))?;
        let _ = tcp.set_nodelay(true);
        match tls {
            Some(tls) => {
                let (host, _) = split_host_port(addr).map_err(|e| e.to_string())?;
                let stream = tls.connect(host, tcp).await.map_err(|e| e.to_string())?;
                exchange(stream, addr, req).await
            }
            None => exchange(tcp, addr, req).await,
        }
    };
    tokio::time::timeout(req.timeout, work)
        .await
        .map_err(|_| format!("no answer within {}s", req.timeout.as_secs()))?
}

async fn exchange<IO>(io: IO, addr: &str, req: &Request<'_>) -> Result<Answer, String>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| format!("HTTP handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut builder = hyper::Request::builder()
        .method(req.method.clone())
        .uri(req.path)
        .header(hyper::header::HOST, addr)
        .header(hyper::header::USER_AGENT, req.agent);
    if req.json.is_some() {
        builder = builder.header(hyper::header::CONTENT_TYPE, "application/json");
    }
    let body = Full::new(Bytes::copy_from_slice(req.json.unwrap_or_default()));
    let request = builder
        .body(body)
        .map_err(|e| format!("building the request: {e}"))?;
    let resp = sender
        .send_request(request)
        .await
        .map_err(|e| format!("sending the request: {e}"))?;
    let status = resp.status().as_u16();
    let location = resp
        .headers()
        .get(hyper::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("reading the answer: {e}"))?
        .to_bytes()
        .to_vec();
    Ok(Answer {
        status,
        body,
        location,
    })
}
