//! The MySQL-facing TLS endpoint of tidb-server (`[security] ssl-ca`,
//! `ssl-cert`, `ssl-key`, `tls-version`): a rustls acceptor that verifies a
//! client certificate against `ssl-ca` when one is presented and otherwise
//! lets per-user `REQUIRE` rules decide.
//!
//! Reload: every handshake checks the files' stamps (mtime, size, inode);
//! changed files are re-read and only a fully valid set replaces the one in
//! service (a bad set is logged once and the old one keeps serving).
//! [`MysqlTls::reload_now`] (`ALTER INSTANCE RELOAD TLS`) re-reads at once
//! and returns the problem to the caller instead.
//!
//! Why not `tiox_security::ServerTls`: its loader checks certificates for a
//! cluster role, which needs both serverAuth and clientAuth; a MySQL-facing
//! server certificate (`tiox cert init`'s `mysql/server.pem`, cfssl's or
//! openssl's usual server profile) has serverAuth only, and `ssl-ca` is
//! optional on the MySQL side. Key names in messages are the MySQL ones.
//! This module uses the security crate's crypto provider and inspection.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::PrivateKeyDer;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use time::OffsetDateTime;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use tiox_security::inspect::{format_time, private_key_spki, read_pem_certs};
use tiox_security::{CertInfo, ListenerStats, Negotiated, TlsPolicy};

use crate::users::TlsInfo;

/// The configured files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MysqlTlsFiles {
    /// `ssl-ca`: CA bundle that client certificates are verified against
    /// (optional: without it, no client certificate is requested).
    pub ca: Option<PathBuf>,
    /// `ssl-cert`: the server certificate (chain), leaf first.
    pub cert: PathBuf,
    /// `ssl-key`: its private key.
    pub key: PathBuf,
    /// `ssl-crl`: revocation list(s) for client certificates (needs `ca`).
    pub crl: Option<PathBuf>,
    /// `tls-version` (the lowest version accepted) and `cipher-suites`.
    pub policy: TlsPolicy,
}

struct Loaded {
    config: Arc<ServerConfig>,
    leaf: CertInfo,
}

use tiox_security::material::Stamp;

struct State {
    loaded: Arc<Loaded>,
    stamp: Stamp,
    rejected: Option<Stamp>,
}

/// A refused MySQL-port TLS handshake.
#[derive(Debug)]
pub struct HandshakeRefused {
    /// Why, as counted and audited.
    pub reason: tiox_security::Refusal,
    /// The sentence for the log.
    pub message: String,
    /// The client certificate presented, if any.
    pub presented: Option<CertInfo>,
}

/// A reloading MySQL-side TLS acceptor.
pub struct MysqlTls {
    files: MysqlTlsFiles,
    state: Mutex<State>,
    stats: Arc<ListenerStats>,
}

impl std::fmt::Debug for MysqlTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MysqlTls")
            .field("files", &self.files)
            .finish()
    }
}

fn stamp(files: &MysqlTlsFiles) -> Stamp {
    let optional = [files.ca.as_deref(), files.crl.as_deref()];
    Stamp::of_paths(
        [files.cert.as_path(), files.key.as_path()]
            .into_iter()
            .chain(optional.into_iter().flatten()),
    )
}

fn problem(key: &str, file: &Path, what: impl std::fmt::Display, fix: &str) -> String {
    format!(
        "tidb-server: [security] {key} = \"{}\": {what}. Fix: {fix}",
        file.display()
    )
}

fn build(files: &MysqlTlsFiles) -> Result<Loaded, String> {
    let now = OffsetDateTime::now_utc();
    let chain = read_pem_certs(&files.cert).map_err(|e| {
        problem(
            "ssl-cert",
            &files.cert,
            e,
            "point ssl-cert at the PEM server certificate for MySQL clients",
        )
    })?;
    let leaf = chain
        .first()
        .ok_or_else(|| {
            problem(
                "ssl-cert",
                &files.cert,
                "holds no certificate",
                "use a PEM certificate",
            )
        })
        .and_then(|der| {
            CertInfo::from_der(der).map_err(|e| {
                problem(
                    "ssl-cert",
                    &files.cert,
                    e,
                    "replace it with a valid PEM certificate",
                )
            })
        })?;
    if leaf.is_expired_at(now) {
        return Err(problem(
            "ssl-cert",
            &files.cert,
            format!("the certificate expired on {}", format_time(leaf.not_after)),
            "issue a new one (`tiox cert issue --profile mysql-server`) and replace the file",
        ));
    }
    if leaf.is_not_yet_valid_at(now) {
        return Err(problem(
            "ssl-cert",
            &files.cert,
            format!(
                "the certificate is not valid before {}",
                format_time(leaf.not_before)
            ),
            "check the system clock or issue a certificate valid now",
        ));
    }
    if !leaf.allows_server_auth() {
        return Err(problem(
            "ssl-cert",
            &files.cert,
            "the certificate's extended key usage lacks serverAuth",
            "issue it with a server profile (`tiox cert issue --profile mysql-server`)",
        ));
    }
    let key_pem = std::fs::read(&files.key).map_err(|e| {
        problem(
            "ssl-key",
            &files.key,
            tiox_security::inspect::describe_io_error(&e),
            "check the path and permissions",
        )
    })?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        problem(
            "ssl-key",
            &files.key,
            format!("no usable PEM private key ({e})"),
            "point ssl-key at the certificate's unencrypted private key",
        )
    })?;
    match private_key_spki(&key_pem) {
        Ok(Some(spki)) if spki != leaf.spki_der => {
            return Err(problem(
                "ssl-key",
                &files.key,
                format!(
                    "the private key does not belong to the certificate in ssl-cert ({})",
                    files.cert.display()
                ),
                "use the key generated with this certificate",
            ))
        }
        Err(e) => {
            return Err(problem(
                "ssl-key",
                &files.key,
                e,
                "use an RSA, ECDSA or Ed25519 key",
            ))
        }
        _ => {}
    }
    let builder = ServerConfig::builder_with_provider(files.policy.provider())
        .with_protocol_versions(&files.policy.versions())
        .map_err(|e| format!("tidb-server: [security] tls-version: {e}"))?;
    let builder = match &files.ca {
        Some(ca) => {
            let certs = read_pem_certs(ca).map_err(|e| {
                problem(
                    "ssl-ca",
                    ca,
                    e,
                    "point ssl-ca at the PEM CA that signs client certificates",
                )
            })?;
            let mut roots = RootCertStore::empty();
            for c in certs {
                roots.add(c).map_err(|e| {
                    problem(
                        "ssl-ca",
                        ca,
                        format!("unusable CA certificate ({e})"),
                        "use a valid CA certificate",
                    )
                })?;
            }
            let crls = match &files.crl {
                Some(crl) => tiox_security::material::read_crls(crl).map_err(|e| {
                    problem(
                        "ssl-crl",
                        crl,
                        e,
                        "point ssl-crl at the PEM (or DER) CRL signed by ssl-ca's CA \
                         (`tiox cert revoke` makes one)",
                    )
                })?,
                None => Vec::new(),
            };
            let verifier = tiox_security::material::revocation_checked(
                WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    files.policy.provider(),
                ),
                &crls,
            )
            .allow_unauthenticated()
            .build()
            .map_err(|e| match &files.crl {
                Some(crl) => problem(
                    "ssl-crl",
                    crl,
                    format!("the CA or the revocation list is not usable ({e})"),
                    "use ssl-ca's CA certificate and a CRL it signed",
                ),
                None => problem(
                    "ssl-ca",
                    ca,
                    format!("cannot verify clients with it ({e})"),
                    "use a CA certificate",
                ),
            })?;
            // Same verifier as the cluster ports: revoked certificates are
            // named (serial, subject) in the refusal.
            let verifier = Arc::new(tiox_security::verify::AllowListVerifier::new(
                verifier,
                Default::default(),
            ));
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder.with_single_cert(chain, key).map_err(|e| {
        problem(
            "ssl-cert",
            &files.cert,
            format!("rustls refused the certificate or key ({e})"),
            "check that ssl-key belongs to ssl-cert",
        )
    })?;
    Ok(Loaded {
        config: Arc::new(config),
        leaf,
    })
}

/// The MySQL/OpenSSL name of a rustls cipher suite.
pub fn openssl_cipher_name(suite: rustls::CipherSuite) -> String {
    tiox_security::policy::openssl_name(suite)
}

impl MysqlTls {
    /// Loads and checks the files; an error is a startup error naming the
    /// key, the file and the fix.
    pub fn load(files: MysqlTlsFiles) -> Result<MysqlTls, String> {
        let st = stamp(&files);
        let loaded = build(&files)?;
        Ok(MysqlTls {
            files,
            state: Mutex::new(State {
                loaded: Arc::new(loaded),
                stamp: st,
                rejected: None,
            }),
            stats: Arc::new(ListenerStats::new("mysql")),
        })
    }

    /// The MySQL port's TLS counters (handshakes by key exchange group,
    /// refusals by reason).
    pub fn stats(&self) -> &Arc<ListenerStats> {
        &self.stats
    }

    /// The configured files.
    pub fn files(&self) -> &MysqlTlsFiles {
        &self.files
    }

    fn current(&self) -> Arc<Loaded> {
        let st = stamp(&self.files);
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if st == state.stamp || state.rejected.as_ref() == Some(&st) {
            return state.loaded.clone();
        }
        match build(&self.files) {
            Ok(loaded) => {
                tracing::info!(
                    subject = %loaded.leaf.subject,
                    not_after = %format_time(loaded.leaf.not_after),
                    "MySQL-facing TLS files changed; new connections use the new certificate"
                );
                state.loaded = Arc::new(loaded);
                state.stamp = st;
                state.rejected = None;
            }
            Err(e) => {
                tracing::warn!("MySQL-facing TLS files changed but are not usable; keeping the certificate in service: {e}");
                state.rejected = Some(st);
            }
        }
        state.loaded.clone()
    }

    /// `ALTER INSTANCE RELOAD TLS`: re-reads the files now. On error the
    /// old material stays in service and the error is returned.
    pub fn reload_now(&self) -> Result<(), String> {
        let st = stamp(&self.files);
        let loaded = build(&self.files)?;
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        tracing::info!(subject = %loaded.leaf.subject, "ALTER INSTANCE RELOAD TLS: certificate reloaded");
        state.loaded = Arc::new(loaded);
        state.stamp = st;
        state.rejected = None;
        Ok(())
    }

    /// The certificate in service.
    pub fn server_cert(&self) -> CertInfo {
        self.current().leaf.clone()
    }

    /// The cipher suites offered, colon-separated in OpenSSL spelling.
    pub fn cipher_list(&self) -> String {
        self.files
            .policy
            .suites()
            .iter()
            .map(|s| openssl_cipher_name(s.suite()))
            .collect::<Vec<_>>()
            .join(":")
    }

    /// Runs the server side of a TLS handshake on `io` (bounded by the
    /// security core's handshake timeout), counting it in [`Self::stats`].
    /// A refusal comes back with its reason and the certificate presented.
    pub async fn accept<IO>(
        &self,
        io: IO,
        peer: &str,
    ) -> Result<(TlsStream<IO>, TlsInfo), HandshakeRefused>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        use tiox_security::diagnose::{classify, explain, Side};
        use tiox_security::Refusal;
        let loaded = self.current();
        let timeout = tiox_security::server::HANDSHAKE_TIMEOUT;
        let (accepted, presented) = tiox_security::verify::capturing(tokio::time::timeout(
            timeout,
            TlsAcceptor::from(loaded.config.clone()).accept(io),
        ))
        .await;
        let stream = match accepted {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                let why = classify(&e);
                self.stats.refused(why);
                return Err(HandshakeRefused {
                    reason: why,
                    message: format!(
                        "TLS handshake with {peer} failed ({why}): {}",
                        explain(&e, Side::Server)
                    ),
                    presented,
                });
            }
            Err(_) => {
                self.stats.refused(Refusal::Timeout);
                return Err(HandshakeRefused {
                    reason: Refusal::Timeout,
                    message: format!(
                        "TLS handshake with {peer} failed (timeout): no handshake within {} s",
                        timeout.as_secs()
                    ),
                    presented,
                });
            }
        };
        let (_, conn) = stream.get_ref();
        let negotiated = Negotiated::of(conn);
        self.stats.handshake(negotiated.kx_group.as_deref());
        let cipher = conn
            .negotiated_cipher_suite()
            .map(|s| openssl_cipher_name(s.suite()))
            .unwrap_or_default();
        let peer_cert = conn
            .peer_certificates()
            .and_then(|c| c.first())
            .and_then(|der| CertInfo::from_der(der).ok());
        Ok((
            stream,
            TlsInfo {
                version: negotiated.version.to_string(),
                cipher,
                kx_group: negotiated.kx_group.unwrap_or_default(),
                peer: peer_cert,
            },
        ))
    }
}
