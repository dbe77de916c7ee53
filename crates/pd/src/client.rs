//! Dialling PD's gRPC service: a tonic channel whose connections go through
//! `tiox_security::ClientTls` (ALPN `h2`) when TLS is configured, plain TCP
//! otherwise. Used by the benchmark, the tests and (later) PD peers and the
//! storage nodes.

use std::sync::Arc;

use hyper_util::rt::TokioIo;
use tiox_proto::pdpb::pd_client::PdClient;
use tiox_security::ClientTls;
use tokio::net::TcpStream;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::error::{Error, Result};

/// Connects to PD at `addr` (`host:port`).
pub async fn connect(addr: &str, tls: Option<Arc<ClientTls>>) -> Result<PdClient<Channel>> {
    // The URI scheme stays http: TLS is done by our connector, not tonic.
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| Error::InvalidValue(format!("bad PD address \"{addr}\": {e}")))?
        .tcp_nodelay(true);
    let fail = |e: tonic::transport::Error| Error::Tls(format!("connecting to PD at {addr}: {e}"));
    let channel = match tls {
        None => endpoint.connect().await.map_err(fail)?,
        Some(tls) => {
            let connector = tower::service_fn(move |uri: Uri| {
                let tls = tls.clone();
                async move {
                    let host = uri.host().unwrap_or_default().to_string();
                    let port = uri.port_u16().unwrap_or(2379);
                    let bare = host
                        .trim_start_matches('[')
                        .trim_end_matches(']')
                        .to_string();
                    let tcp = TcpStream::connect((bare.as_str(), port)).await?;
                    let _ = tcp.set_nodelay(true);
                    let stream = tls
                        .connect(&bare, tcp)
                        .await
                        .map_err(std::io::Error::other)?;
                    Ok::<_, std::io::Error>(TokioIo::new(stream))
                }
            });
            endpoint
                .connect_with_connector(connector)
                .await
                .map_err(fail)?
        }
    };
    Ok(PdClient::new(channel))
}
