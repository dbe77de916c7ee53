//! PD endpoints as the ctl tools take them (`-u [http(s)://]host:port`) and
//! their requests, sent with `tiox_security::http` (one connection per
//! request, mutual TLS). No plaintext fallback: an `https://` endpoint is
//! only ever spoken to over TLS.

use std::sync::Arc;
use std::time::Duration;

use tiox_security::http;
use tiox_security::ClientTls;

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

/// Sends a body-less request (`GET`, `DELETE`) to `ep`, through the
/// security crate's one HTTP-over-mTLS client.
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
    let tls = match (ep.scheme, tls) {
        (Scheme::Https, Some(tls)) => Some(tls.as_ref()),
        (Scheme::Https, None) => {
            return Err(fail(
                "an https:// endpoint needs --cacert, --cert and --key".to_string(),
            ))
        }
        (Scheme::Http, _) => None,
    };
    let req = http::Request {
        method,
        path,
        json: None,
        agent: "pd-ctl (tiox)",
        timeout: TIMEOUT,
    };
    let a = http::request(&ep.authority(), tls, &req)
        .await
        .map_err(fail)?;
    Ok((a.status, a.body, a.location))
}
