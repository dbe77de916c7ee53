//! Probing a TLS port from the outside, as an operator would: the mutual
//! handshake (what the port presents and negotiates), whether a client
//! without a certificate is refused, whether plaintext is refused. `tiox
//! check` and PD's dashboard run the same probes.
//!
//! ```text
//!  audit(tls, ca, addr, speaks)
//!    handshake              chain + SAN via ClientTls; version, suite, group
//!    server certificate     usages (serverAuth + clientAuth), expiry (warn < 30 days)
//!    no client certificate  must be refused
//!    plaintext              must be refused
//! ```
//!
//! Every probe is bounded by [`TIMEOUT`]; none of them panics on what a
//! peer sends.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::inspect::{format_time, CertInfo, EXPIRY_WARNING_DAYS};
use crate::{ClientTls, Negotiated};

/// How long each probe waits for a peer.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// What a port speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Speaks {
    /// HTTP/1.1 or HTTP/2 (gRPC): PD's client port, TiKV's ports.
    Http,
    /// A protocol that keeps an accepted but silent client's connection open
    /// and silent (PD's Raft transport), dialled with this ALPN id.
    Silent(&'static [u8]),
}

impl Speaks {
    /// The ALPN id offered.
    pub fn alpn(self) -> Vec<u8> {
        match self {
            Speaks::Http => b"http/1.1".to_vec(),
            Speaks::Silent(alpn) => alpn.to_vec(),
        }
    }
}

/// What a port presented in a mutual handshake.
#[derive(Clone, Debug)]
pub struct Presented {
    /// The chain, leaf first.
    pub chain: Vec<CertInfo>,
    /// The version, suite and group agreed on.
    pub negotiated: Negotiated,
}

impl Presented {
    /// The leaf certificate.
    pub fn leaf(&self) -> Option<&CertInfo> {
        self.chain.first()
    }
}

/// The mutual-TLS handshake with `addr` (`host:port`) through `tls`.
pub async fn handshake(tls: &ClientTls, addr: &str) -> Result<Presented, String> {
    let stream = tokio::time::timeout(TIMEOUT, tls.connect_tcp(addr))
        .await
        .map_err(|_| "no answer within 5 s".to_string())?
        .map_err(|e| e.to_string())?;
    let (_, conn) = stream.get_ref();
    let ders = conn.peer_certificates().unwrap_or_default();
    if ders.is_empty() {
        return Err("no server certificate".into());
    }
    let chain = ders
        .iter()
        .map(|d| CertInfo::from_der(d))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Presented {
        chain,
        negotiated: Negotiated::of(conn),
    })
}

/// Whether a TLS client WITHOUT a certificate (trusting the CA in `ca`) is
/// refused by `addr`.
pub async fn refuses_no_client_cert(ca: &Path, addr: &str, speaks: Speaks) -> Result<bool, String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).map_err(|e| e.to_string())? {
        roots
            .add(c.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let mut config = rustls::ClientConfig::builder_with_provider(crate::material::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![speaks.alpn()];
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h).to_string();
    let name = crate::client::server_name(&host).map_err(|e| e.to_string())?;
    let tcp = tokio::time::timeout(TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| "timeout")?
        .map_err(|e| e.to_string())?;
    let attempt = async {
        let mut s = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await?;
        if speaks == Speaks::Http {
            s.write_all(b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n")
                .await?;
        }
        let mut buf = [0u8; 16];
        let n = s.read(&mut buf).await?;
        Ok::<usize, std::io::Error>(n)
    };
    Ok(match tokio::time::timeout(TIMEOUT, attempt).await {
        Ok(Ok(n)) => n == 0,
        Ok(Err(_)) => true,
        // An HTTP port that accepted the client would have answered; the
        // peer port keeps an accepted peer's connection open and silent.
        Err(_) => speaks == Speaks::Http,
    })
}

/// Whether a plaintext HTTP request to `addr` gets no plaintext answer.
pub async fn refuses_plaintext(addr: &str) -> Result<bool, String> {
    let mut tcp = tokio::time::timeout(TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| "timeout")?
        .map_err(|e| e.to_string())?;
    let _ = tcp
        .write_all(b"GET /status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(TIMEOUT, tcp.read_to_end(&mut buf)).await;
    Ok(!String::from_utf8_lossy(&buf).contains("HTTP/"))
}

/// One verdict of an audit: passed or not, and what was seen (with the fix
/// when it failed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    /// Whether it passed.
    pub ok: bool,
    /// What was seen.
    pub text: String,
}

fn check(ok: bool, text: impl Into<String>) -> Check {
    Check {
        ok,
        text: text.into(),
    }
}

/// The audit of one endpoint: what it presents, whether a certificate-less
/// client and plaintext are refused. Also returns what was presented.
pub async fn audit(
    tls: &ClientTls,
    ca: &Path,
    addr: &str,
    speaks: Speaks,
) -> (Vec<Check>, Option<Presented>) {
    let mut checks = Vec::new();
    let presented = match handshake(tls, addr).await {
        Ok(p) => {
            if let Some(info) = p.leaf() {
                checks.push(check(
                    true,
                    format!(
                        "mutual TLS ok; certificate \"{}\"",
                        info.common_name.as_deref().unwrap_or(&info.subject)
                    ),
                ));
                let n = &p.negotiated;
                let group = n.kx_group.as_deref().unwrap_or("none");
                checks.push(check(
                    true,
                    format!(
                        "{} {}, key exchange {group}{}",
                        n.version,
                        n.cipher,
                        if group == "X25519MLKEM768" {
                            " (post-quantum hybrid)"
                        } else {
                            ""
                        }
                    ),
                ));
                let usages_ok = info.allows_server_auth() && info.allows_client_auth();
                checks.push(check(
                    usages_ok,
                    if usages_ok {
                        "usages serverAuth + clientAuth"
                    } else {
                        "usages lack serverAuth or clientAuth: re-issue with the server profile (tiox cert issue --profile server)"
                    },
                ));
                let days = info.days_left(time::OffsetDateTime::now_utc());
                checks.push(check(
                    true,
                    if days < EXPIRY_WARNING_DAYS {
                        format!(
                            "WARNING: expires in {days} days ({}): rotate it",
                            format_time(info.not_after)
                        )
                    } else {
                        format!("expires {} ({days} days)", format_time(info.not_after))
                    },
                ));
            }
            Some(p)
        }
        Err(e) => {
            checks.push(check(false, format!("mutual TLS failed: {e}")));
            None
        }
    };
    checks.push(match refuses_no_client_cert(ca, addr, speaks).await {
        Ok(true) => check(true, "client without certificate refused"),
        Ok(false) => check(
            false,
            "a client WITHOUT a certificate was served: this port does not require client certificates",
        ),
        Err(e) => check(false, format!("could not test a certificate-less client: {e}")),
    });
    checks.push(match refuses_plaintext(addr).await {
        Ok(true) => check(true, "plaintext refused"),
        Ok(false) => check(
            false,
            "PLAINTEXT was answered: TLS is off on this port; configure [security]",
        ),
        Err(e) => check(false, format!("could not test plaintext: {e}")),
    });
    (checks, presented)
}
