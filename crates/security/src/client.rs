//! The client side: a TLS connector used for every outgoing connection of
//! every component and tool.
//!
//! It verifies the server's chain against the cluster CA and that the
//! server's SANs cover the host or IP dialled, and presents our certificate.
//! Material is reloaded like the server side's.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::config::TlsSettings;
use crate::diagnose::{classify, explain, Side};
use crate::error::{Error, Result};
use crate::material::{Derived, TlsMaterial};
use crate::stats::Refusal;
use crate::verify::NamingServerVerifier;

/// A reloading TLS connector.
#[derive(Debug)]
pub struct ClientTls {
    settings: TlsSettings,
    alpn: Vec<Vec<u8>>,
    config: Derived<ClientConfig>,
}

impl ClientTls {
    /// A connector with no ALPN.
    pub fn new(settings: TlsSettings) -> Result<ClientTls> {
        Self::with_alpn(settings, Vec::new())
    }

    /// A connector offering the given ALPN protocols (e.g. `h2` for gRPC).
    pub fn with_alpn(settings: TlsSettings, alpn: Vec<Vec<u8>>) -> Result<ClientTls> {
        let tls = ClientTls {
            settings,
            alpn,
            config: Derived::default(),
        };
        tls.config()?;
        Ok(tls)
    }

    /// The settings this connector was made from.
    pub fn settings(&self) -> &TlsSettings {
        &self.settings
    }

    /// The rustls config for the next handshake.
    pub fn config(&self) -> Result<Arc<ClientConfig>> {
        let material = self.settings.source.current();
        self.config.get(&material, |m| self.build(m))
    }

    fn build(&self, m: &TlsMaterial) -> Result<ClientConfig> {
        let component = self.settings.component;
        let keys = component.keys();
        let policy = &self.settings.policy;
        let fail = |problem: String| {
            Error::from(component.error(
                keys.cert,
                Some(self.settings.source.files().cert.clone()),
                problem,
                "check the certificate and key files",
            ))
        };
        let mut webpki =
            WebPkiServerVerifier::builder_with_provider(m.roots.clone(), policy.provider());
        if !m.crls.is_empty() {
            webpki = webpki
                .with_crls(m.crls.iter().cloned())
                .only_check_end_entity_revocation()
                .allow_unknown_revocation_status();
        }
        let verifier = webpki
            .build()
            .map_err(|e| fail(format!("cannot build the server verifier: {e}")))?;
        let mut config = ClientConfig::builder_with_provider(policy.provider())
            .with_protocol_versions(&policy.versions())
            .map_err(|e| fail(format!("bad protocol versions: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NamingServerVerifier(verifier)))
            .with_client_auth_cert(m.chain.clone(), m.key.clone_der())
            .map_err(|e| fail(format!("rustls refused the certificate or key: {e}")))?;
        config.alpn_protocols = self.alpn.clone();
        Ok(config)
    }

    /// Runs the client handshake over `io`, checking the server certificate
    /// against `host` (a DNS name or an IP literal, without port).
    pub async fn connect<IO>(&self, host: &str, io: IO) -> Result<TlsStream<IO>>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let name = server_name(host)?;
        let config = self.config()?;
        TlsConnector::from(config)
            .connect(name, io)
            .await
            .map_err(|e| Error::Handshake {
                peer: host.to_string(),
                reason: explain(&e, Side::Client),
                refusal: classify(&e),
                presented: None,
            })
    }

    /// Dials `addr` (`host:port`, `[v6]:port`) over TCP and runs the handshake.
    pub async fn connect_tcp(&self, addr: &str) -> Result<TlsStream<TcpStream>> {
        let (host, _) = split_host_port(addr)?;
        let tcp = TcpStream::connect(addr).await.map_err(|e| Error::Io {
            context: format!("connecting to {addr}"),
            source: e,
        })?;
        let _ = tcp.set_nodelay(true);
        self.connect(host, tcp).await.map_err(|e| match e {
            Error::Handshake {
                reason,
                refusal,
                presented,
                ..
            } => Error::Handshake {
                peer: addr.to_string(),
                reason,
                refusal,
                presented,
            },
            other => other,
        })
    }
}

/// The TLS server name for a host (DNS name or IP literal, brackets allowed).
pub fn server_name(host: &str) -> Result<ServerName<'static>> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(bare.to_string()).map_err(|_| Error::Handshake {
        peer: host.to_string(),
        reason: format!("\"{host}\" is neither a valid DNS name nor an IP address"),
        refusal: Refusal::Other,
        presented: None,
    })
}

/// Splits `host:port` or `[v6]:port`.
pub fn split_host_port(addr: &str) -> Result<(&str, u16)> {
    let bad = || Error::Handshake {
        peer: addr.to_string(),
        reason: "expected an address as host:port".to_string(),
        refusal: Refusal::Other,
        presented: None,
    };
    let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
    let port = port.parse().map_err(|_| bad())?;
    Ok((host.trim_start_matches('[').trim_end_matches(']'), port))
}
