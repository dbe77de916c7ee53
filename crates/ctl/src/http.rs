//! A minimal HTTP/1.1 GET client over our own TLS connector: one connection
//! per request (the ctl tools issue a handful), hyper for the protocol,
//! `tiox_security::ClientTls` for mutual TLS. No plaintext fallback: an
//! `https://` endpoint is only ever spoken to over TLS.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tiox_security::ClientTls;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::error::CtlError;

const TIMEOUT: Duration = Duration::from_secs(10);

/// `http` or `https`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// Plaintext.
    Http,
    /// TLS.
    Https,
}

/// One PD endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// Scheme (none given means http).
    pub scheme: Scheme,
    /// Host or IP (no brackets).
    pub host: String,
    /// Port.
    pub port: u16,
}

impl Endpoint {
    /// Parses `[scheme://]host:port[/]`; no scheme means `http://`.
    pub fn parse(s: &str) -> Result<Endpoint, CtlError> {
        let s = s.trim();
        let (scheme, rest) = match s.split_once("://") {
            Some(("http", r)) => (Scheme::Http, r),
            Some(("https", r)) => (Scheme::Https, r),
            Some((other, _)) => {
                return Err(CtlError::Usage(format!(
                    "-u/--pd: \"{s}\" has scheme \"{other}\"; use http:// or https://"
                )))
            }
            None => (Scheme::Http, s),
        };
        let rest = rest.trim_end_matches('/');
        let bad = || {
            CtlError::Usage(format!(
                "-u/--pd: \"{s}\" is not of the form [http(s)://]host:port"
            ))
        };
        let (host, port) = rest.rsplit_once(':').ok_or_else(bad)?;
        let port = port.parse().map_err(|_| bad())?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || host.contains('/') {
            return Err(bad());
        }
        Ok(Endpoint {
            scheme,
            host: host.to_string(),
            port,
        })
    }

    /// `host:port` (IPv6 bracketed).
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self.scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
        };
        write!(f, "{s}://{}", self.authority())
    }
}

/// An HTTP answer: status, body and the `Location` header, if any.
pub type Answer = (u16, Vec<u8>, Option<String>);

/// Sends `GET path` to `ep`; returns the status and body.
pub async fn get(
    ep: &Endpoint,
    tls: Option<&Arc<ClientTls>>,
    path: &str,
) -> Result<(u16, Vec<u8>), CtlError> {
    let (status, body, _) = get_full(ep, tls, path).await?;
    Ok((status, body))
}

/// Sends `GET path` to `ep`; returns the status, body and `Location`.
pub async fn get_full(
    ep: &Endpoint,
    tls: Option<&Arc<ClientTls>>,
    path: &str,
) -> Result<Answer, CtlError> {
    send(ep, tls, hyper::Method::GET, path).await
}

/// Sends a body-less request (`GET`, `DELETE`) to `ep`.
pub async fn send(
    ep: &Endpoint,
    tls: Option<&Arc<ClientTls>>,
    method: hyper::Method,
    path: &str,
) -> Result<Answer, CtlError> {
    let fail = |reason: String| CtlError::Connect {
        endpoint: ep.to_string(),
        reason,
    };
    let work = async {
        let tcp = TcpStream::connect(ep.authority())
            .await
            .map_err(|e| fail(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        match (ep.scheme, tls) {
            (Scheme::Https, Some(tls)) => {
                let stream = tls
                    .connect(&ep.host, tcp)
                    .await
                    .map_err(|e| fail(e.to_string()))?;
                request(stream, ep, method, path).await
            }
            (Scheme::Https, None) => Err(fail(
                "an https:// endpoint needs --cacert, --cert and --key".to_string(),
            )),
            (Scheme::Http, _) => request(tcp, ep, method, path).await,
        }
    };
    tokio::time::timeout(TIMEOUT, work)
        .await
        .map_err(|_| fail(format!("no answer within {}s", TIMEOUT.as_secs())))?
}

async fn request<IO>(
    io: IO,
    ep: &Endpoint,
    method: hyper::Method,
    path: &str,
) -> Result<Answer, CtlError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let fail = |what: &str, e: &dyn std::fmt::Display| CtlError::Connect {
        endpoint: ep.to_string(),
        reason: format!("{what}: {e}"),
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| fail("HTTP handshake", &e))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, ep.authority())
        .header(hyper::header::USER_AGENT, "pd-ctl (tiox)")
        .body(Empty::<Bytes>::new())
        .map_err(|e| fail("building the request", &e))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| fail("sending the request", &e))?;
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
        .map_err(|e| fail("reading the answer", &e))?
        .to_bytes()
        .to_vec();
    Ok((status, body, location))
}
