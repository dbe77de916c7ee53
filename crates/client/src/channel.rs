//! gRPC channels over our TLS connector.
//!
//! tonic dials through [`connector`], which does the TCP connect and the
//! mutual-TLS handshake with [`ClientTls`] (server chain and SAN checked
//! against the host dialled, our certificate presented, ALPN `h2`). URLs
//! keep their operator-facing form (`https://host:port`); a `https://` URL
//! without TLS configured, or `http://` with it, is refused rather than
//! silently downgraded or upgraded.

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tiox_security::ClientTls;
use tokio::net::TcpStream;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::error::{Error, Result};

/// Timeout for establishing a connection (TCP + TLS).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Splits an operator URL (`https://h:p`, `http://h:p` or `h:p`) into
/// `host:port`, checking the scheme against whether TLS is on.
pub fn authority(url: &str, tls: bool) -> Result<String> {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (Some(s.to_ascii_lowercase()), r),
        None => (None, url),
    };
    let rest = rest.trim_end_matches('/');
    match (scheme.as_deref(), tls) {
        (Some("https"), false) => Err(Error::Config(format!(
            "{url} is an https:// URL but no CA, certificate and key are configured: \
             give the client the cluster's certificates (e.g. --cacert/--cert/--key)"
        ))),
        (Some("http"), true) => Err(Error::Config(format!(
            "{url} is an http:// URL but TLS is configured: use https:// \
             (tiox never mixes TLS and plaintext)"
        ))),
        (Some("http") | Some("https") | None, _) => {
            if rest.is_empty() || !rest.contains(':') {
                return Err(Error::Config(format!("\"{url}\" has no host:port")));
            }
            Ok(rest.to_string())
        }
        (Some(other), _) => Err(Error::Config(format!(
            "unsupported scheme \"{other}\" in {url}: use http:// or https://"
        ))),
    }
}

/// A connected (or reconnecting) byte stream: TLS or plain TCP.
pub type Io = TokioIo<tokio_util_either::Either>;

mod tokio_util_either {
    //! A tiny either type over the two stream kinds.
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
    use tokio::net::TcpStream;

    /// TLS or plain TCP.
    pub enum Either {
        /// Mutual TLS.
        Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
        /// Plaintext (TLS not configured).
        Plain(TcpStream),
    }

    impl AsyncRead for Either {
        fn poll_read(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            match self.get_mut() {
                Either::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
                Either::Plain(s) => Pin::new(s).poll_read(cx, buf),
            }
        }
    }

    impl AsyncWrite for Either {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            match self.get_mut() {
                Either::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
                Either::Plain(s) => Pin::new(s).poll_write(cx, buf),
            }
        }
        fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            match self.get_mut() {
                Either::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
                Either::Plain(s) => Pin::new(s).poll_flush(cx),
            }
        }
        fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            match self.get_mut() {
                Either::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
                Either::Plain(s) => Pin::new(s).poll_shutdown(cx),
            }
        }
    }
}

pub use tokio_util_either::Either;

/// Dials `host:port` over TCP and, with TLS, runs the handshake.
pub async fn dial(addr: &str, tls: Option<&ClientTls>) -> std::io::Result<Either> {
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("connecting to {addr} timed out"),
            )
        })??;
    let _ = tcp.set_nodelay(true);
    match tls {
        None => Ok(Either::Plain(tcp)),
        Some(tls) => {
            let (host, _) = tiox_security::client::split_host_port(addr).map_err(|e| {
                std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string())
            })?;
            let s = tls.connect(host, tcp).await.map_err(|e| {
                std::io::Error::new(std::io::ErrorKind::PermissionDenied, e.to_string())
            })?;
            Ok(Either::Tls(Box::new(s)))
        }
    }
}

/// A lazily connecting gRPC channel to `addr` (`host:port`). The first RPC
/// dials; a broken connection is re-dialled by the next RPC.
pub fn channel(addr: &str, tls: Option<Arc<ClientTls>>) -> Result<Channel> {
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| Error::Config(format!("bad address {addr}: {e}")))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(20));
    let target = addr.to_string();
    let connector = tower::service_fn(move |_: Uri| {
        let tls = tls.clone();
        let target = target.clone();
        async move { dial(&target, tls.as_deref()).await.map(TokioIo::new) }
    });
    Ok(endpoint.connect_with_connector_lazy(connector))
}

/// Converts a tonic status into our error, naming the address.
pub fn rpc_error(addr: &str, status: tonic::Status) -> Error {
    match status.code() {
        tonic::Code::Unavailable
        | tonic::Code::Unknown
        | tonic::Code::Cancelled
        | tonic::Code::DeadlineExceeded => Error::Unavailable {
            addr: addr.to_string(),
            reason: status_reason(&status),
        },
        _ => Error::Rpc {
            addr: addr.to_string(),
            status: format!("{:?}: {}", status.code(), status.message()),
        },
    }
}

fn status_reason(status: &tonic::Status) -> String {
    // Transport errors carry the connector's error (our TLS explanation) in
    // their source chain; show the innermost message.
    let mut msg = status.message().to_string();
    let mut src: Option<&dyn std::error::Error> = std::error::Error::source(status);
    while let Some(e) = src {
        msg = e.to_string();
        src = e.source();
    }
    msg
}
