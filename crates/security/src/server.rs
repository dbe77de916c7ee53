//! The server side: a TLS acceptor for every listener of every component.
//!
//! Each accept takes the current (possibly just reloaded) material, requires
//! and verifies a client certificate against the cluster CA, applies the CN
//! and SAN allow-lists, and offers ALPN `h2` and `http/1.1` so gRPC and HTTP
//! can share one port. Nothing here ever accepts plaintext.

use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::config::TlsSettings;
use crate::diagnose::{classify, explain, Side};
use crate::error::{Error, Result};
use crate::inspect::CertInfo;
use crate::material::{Derived, TlsMaterial};
use crate::stats::Refusal;
use crate::verify::AllowListVerifier;

/// How long a peer may take to complete the server handshake, unless the
/// listener is given another bound (`handshake-timeout`).
pub const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The default cap on TLS handshakes in flight per listener
/// (`max-handshakes`).
pub const MAX_HANDSHAKES: usize = 256;

/// Whether a client certificate is required.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    /// Every cluster port: no certificate, no connection.
    Required,
    /// The MySQL-facing port only: a certificate is verified if presented;
    /// per-user `REQUIRE` rules decide the rest.
    VerifyIfPresented,
}

/// Who is on the other end of an accepted connection.
#[derive(Clone, Debug)]
pub struct PeerIdentity {
    /// The peer's socket address, as given to `accept`.
    pub addr: String,
    /// The verified client certificate, if one was presented.
    pub cert: Option<CertInfo>,
    /// The negotiated ALPN protocol, if any.
    pub alpn: Option<Vec<u8>>,
    /// The negotiated TLS session, `None` on a plaintext connection.
    pub tls: Option<Negotiated>,
}

/// What a completed handshake agreed on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Negotiated {
    /// `TLSv1.3` or `TLSv1.2`.
    pub version: &'static str,
    /// The cipher suite, IANA name.
    pub cipher: String,
    /// The key exchange group: `X25519MLKEM768` (post-quantum hybrid),
    /// `X25519`, `secp256r1`, ...; `None` on a TLS 1.2 resumption.
    pub kx_group: Option<String>,
}

impl Negotiated {
    /// Reads what a finished handshake agreed on.
    pub fn of(conn: &rustls::CommonState) -> Negotiated {
        let version = match conn.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
            _ => "unknown",
        };
        Negotiated {
            version,
            cipher: conn
                .negotiated_cipher_suite()
                .map(|s| crate::policy::iana_name(s.suite()))
                .unwrap_or_default(),
            kx_group: conn
                .negotiated_key_exchange_group()
                .map(|g| format!("{:?}", g.name())),
        }
    }
}

impl PeerIdentity {
    /// The peer certificate's common name, if any.
    pub fn common_name(&self) -> Option<&str> {
        self.cert.as_ref().and_then(|c| c.common_name.as_deref())
    }
}

/// Where the CN/SAN allow-lists are enforced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AllowListAt {
    /// In the handshake: a peer outside the lists never completes it.
    Handshake,
    /// After the handshake, by the caller (TiKV's gRPC port answers each
    /// RPC with `UNAUTHENTICATED`, as TiKV does, so clients see why).
    /// The chain is still verified in the handshake.
    Request,
}

/// A reloading TLS acceptor.
#[derive(Debug)]
pub struct ServerTls {
    settings: TlsSettings,
    client_auth: ClientAuth,
    alpn: Vec<Vec<u8>>,
    allow_at: AllowListAt,
    config: Derived<ServerConfig>,
}

impl ServerTls {
    /// An acceptor for a cluster port: client certificate required, ALPN
    /// `h2` and `http/1.1`.
    pub fn new(settings: TlsSettings) -> Result<ServerTls> {
        Self::with_options(
            settings,
            ClientAuth::Required,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        )
    }

    /// An acceptor with explicit client-auth mode and ALPN list (empty: no
    /// ALPN, as for the MySQL protocol).
    pub fn with_options(
        settings: TlsSettings,
        client_auth: ClientAuth,
        alpn: Vec<Vec<u8>>,
    ) -> Result<ServerTls> {
        let tls = ServerTls {
            settings,
            client_auth,
            alpn,
            allow_at: AllowListAt::Handshake,
            config: Derived::default(),
        };
        tls.config()?;
        Ok(tls)
    }

    /// Moves the allow-list check out of the handshake (see
    /// [`AllowListAt::Request`]); the caller must then call
    /// [`ServerTls::check_allowed`] for every accepted connection.
    pub fn with_allow_list_at(mut self, at: AllowListAt) -> ServerTls {
        self.allow_at = at;
        self.config = Derived::default();
        self
    }

    /// Where the allow-lists are enforced.
    pub fn allow_list_at(&self) -> AllowListAt {
        self.allow_at
    }

    /// Checks an accepted peer against the CN/SAN allow-lists; the error is
    /// the reason to report (it names the CN and the config key).
    pub fn check_allowed(&self, peer: &PeerIdentity) -> std::result::Result<(), String> {
        let (cn, sans) = match &peer.cert {
            Some(c) => (c.common_name.as_deref(), c.sans.as_slice()),
            None => (None, &[][..]),
        };
        self.settings.allow.check(cn, sans)
    }

    /// The settings this acceptor was made from.
    pub fn settings(&self) -> &TlsSettings {
        &self.settings
    }

    /// The rustls config for the next handshake (reloaded if files changed).
    pub fn config(&self) -> Result<Arc<ServerConfig>> {
        let material = self.settings.source.current();
        self.config.get(&material, |m| self.build(m))
    }

    fn build(&self, m: &TlsMaterial) -> Result<ServerConfig> {
        let component = self.settings.component;
        let keys = component.keys();
        let fail = |problem: String| {
            Error::from(component.error(
                keys.cert,
                Some(self.settings.source.files().cert.clone()),
                problem,
                "check the certificate, key and CA files",
            ))
        };
        let policy = &self.settings.policy;
        let builder = crate::material::revocation_checked(
            WebPkiClientVerifier::builder_with_provider(m.roots.clone(), policy.provider()),
            &m.crls,
        );
        let builder = match self.client_auth {
            ClientAuth::Required => builder,
            ClientAuth::VerifyIfPresented => builder.allow_unauthenticated(),
        };
        let inner = builder
            .build()
            .map_err(|e| fail(format!("cannot build the client verifier: {e}")))?;
        let allow = match self.allow_at {
            AllowListAt::Handshake => self.settings.allow.clone(),
            AllowListAt::Request => crate::config::AllowList::default(),
        };
        let verifier = Arc::new(AllowListVerifier::new(inner, allow));
        let mut config = ServerConfig::builder_with_provider(policy.provider())
            .with_protocol_versions(&policy.versions())
            .map_err(|e| fail(format!("bad protocol versions: {e}")))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(m.chain.clone(), m.key.clone_der())
            .map_err(|e| fail(format!("rustls refused the certificate or key: {e}")))?;
        config.alpn_protocols = self.alpn.clone();
        Ok(config)
    }

    /// Runs the server handshake on an accepted stream, bounded by
    /// [`HANDSHAKE_TIMEOUT`]. `peer` is the remote address, used in the
    /// error (callers log it; the connection is dropped).
    pub async fn accept<IO>(&self, io: IO, peer: &str) -> Result<(TlsStream<IO>, PeerIdentity)>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        self.accept_within(io, peer, HANDSHAKE_TIMEOUT).await
    }

    /// [`ServerTls::accept`] with an explicit bound on the handshake.
    pub async fn accept_within<IO>(
        &self,
        io: IO,
        peer: &str,
        timeout: std::time::Duration,
    ) -> Result<(TlsStream<IO>, PeerIdentity)>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let config = self.config()?;
        let (outcome, presented) = crate::verify::capturing(tokio::time::timeout(
            timeout,
            TlsAcceptor::from(config).accept(io),
        ))
        .await;
        let presented = presented.map(Box::new);
        let stream = match outcome {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                return Err(Error::Handshake {
                    peer: peer.to_string(),
                    reason: explain(&e, Side::Server),
                    refusal: classify(&e),
                    presented,
                })
            }
            Err(_) => {
                return Err(Error::Handshake {
                    peer: peer.to_string(),
                    reason: format!(
                        "no TLS handshake within {} ms (a client that connects and says nothing)",
                        timeout.as_millis()
                    ),
                    refusal: Refusal::Timeout,
                    presented,
                })
            }
        };
        let (_, conn) = stream.get_ref();
        let cert = conn
            .peer_certificates()
            .and_then(|c| c.first())
            .and_then(|der| CertInfo::from_der(der).ok());
        let identity = PeerIdentity {
            addr: peer.to_string(),
            cert,
            alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
            tls: Some(Negotiated::of(conn)),
        };
        Ok((stream, identity))
    }
}
