//! Certificate material: loading and checking the CA, certificate and key
//! files, and keeping them fresh.
//!
//! [`load`] turns three paths into a checked [`TlsMaterial`] or a
//! [`ConfigError`] naming the key, the file and the fix. [`MaterialSource`]
//! wraps it for hot reload: every handshake asks for the current material;
//! when the files' stamps (mtime, size, inode) changed, they are re-read and
//! re-checked, and only a fully valid set replaces the one in service. A bad
//! replacement is logged once (by path and reason, never contents) and the
//! previous material keeps serving.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, UnixTime};
use time::OffsetDateTime;

use crate::config::{Component, Role};
use crate::error::ConfigError;
use crate::inspect::{
    describe_io_error, format_time, pem_certs_from_bytes, CertInfo, EXPIRY_WARNING_DAYS,
};

/// The process-wide crypto provider: aws-lc-rs, with its default (modern,
/// AEAD only) cipher suites, and key exchange groups in this order of
/// preference: the post-quantum hybrid X25519MLKEM768 (TLS 1.3), then
/// X25519, P-256 and P-384 for peers without ML-KEM (Debian 12's mariadb
/// client, OpenSSL before 3.5). No 3DES, no CBC, no RC4 are ever offered.
/// Every rustls config of every component and tool is built on this
/// provider, narrowed by the operator's policy ([`crate::policy`]).
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: std::sync::OnceLock<Arc<CryptoProvider>> = std::sync::OnceLock::new();
    PROVIDER
        .get_or_init(|| {
            use rustls::crypto::aws_lc_rs::{default_provider, kx_group};
            let mut p = default_provider();
            p.kx_groups = vec![
                kx_group::X25519MLKEM768,
                kx_group::X25519,
                kx_group::SECP256R1,
                kx_group::SECP384R1,
            ];
            Arc::new(p)
        })
        .clone()
}

/// The three files of a TLS setup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// CA bundle.
    pub ca: PathBuf,
    /// Certificate (chain), leaf first.
    pub cert: PathBuf,
    /// Private key of the leaf.
    pub key: PathBuf,
    /// Certificate revocation lists (`crl-path`), PEM or DER; optional.
    pub crl: Option<PathBuf>,
}

/// A private key. Its `Debug` prints nothing of the key; there is no
/// `Display`. Clone only to hand it to rustls.
pub struct PrivateKey(PrivateKeyDer<'static>);

impl PrivateKey {
    /// A copy of the DER key for rustls.
    pub fn clone_der(&self) -> PrivateKeyDer<'static> {
        self.0.clone_key()
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PrivateKey(<redacted>)")
    }
}

/// A checked set of CA, certificate chain and key.
#[derive(Debug)]
pub struct TlsMaterial {
    /// Trust anchors from the CA file.
    pub roots: Arc<RootCertStore>,
    /// What the CA file holds.
    pub ca_infos: Vec<CertInfo>,
    /// Our certificate chain, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// Our leaf certificate.
    pub leaf: CertInfo,
    /// Our private key.
    pub key: PrivateKey,
    /// The revocation lists from `crl-path` (empty without one).
    pub crls: Vec<CertificateRevocationListDer<'static>>,
    /// Increases by one on each successful reload.
    pub generation: u64,
}

/// Loads and checks the three files for `component`.
pub fn load(component: Component, files: &TlsFiles) -> Result<TlsMaterial, ConfigError> {
    let keys = component.keys();
    let now = OffsetDateTime::now_utc();
    let err = |key: &str, file: &Path, problem: String, fix: &str| {
        component.error(key, Some(file.to_path_buf()), problem, fix)
    };

    // The CA file.
    let ca_bytes = std::fs::read(&files.ca).map_err(|e| {
        err(
            keys.ca,
            &files.ca,
            describe_io_error(&e),
            "check the path and the file's permissions; it must be the PEM CA certificate \
             that signed the cluster's certificates",
        )
    })?;
    let ca_certs = pem_certs_from_bytes(&ca_bytes).map_err(|p| {
        err(
            keys.ca,
            &files.ca,
            p,
            "point it at the PEM CA certificate (e.g. ca.pem from `tiox cert init`)",
        )
    })?;
    let mut ca_infos = Vec::new();
    for der in &ca_certs {
        ca_infos.push(CertInfo::from_der(der).map_err(|p| {
            err(
                keys.ca,
                &files.ca,
                p,
                "replace the file with a valid PEM CA certificate",
            )
        })?);
    }
    if !ca_infos.iter().any(|c| c.is_ca) {
        return Err(err(
            keys.ca,
            &files.ca,
            format!(
                "holds no CA certificate (none has basicConstraints CA:TRUE; the first is \"{}\")",
                ca_infos[0].subject
            ),
            "point it at the CA certificate that signed the components' certificates, not at a \
             server or client certificate",
        ));
    }
    if ca_infos.iter().all(|c| c.is_expired_at(now)) {
        return Err(err(
            keys.ca,
            &files.ca,
            format!(
                "the CA certificate expired on {}",
                format_time(ca_infos[0].not_after)
            ),
            "create a new CA and re-issue the certificates (`tiox cert init`), then rotate them",
        ));
    }
    let mut roots = RootCertStore::empty();
    for (der, info) in ca_certs.iter().zip(&ca_infos) {
        if info.is_ca && !info.is_expired_at(now) {
            roots.add(der.clone()).map_err(|e| {
                err(
                    keys.ca,
                    &files.ca,
                    format!(
                        "the CA certificate \"{}\" is not usable ({e})",
                        info.subject
                    ),
                    "replace it with a valid CA certificate",
                )
            })?;
        }
    }
    let roots = Arc::new(roots);

    // The certificate (chain).
    let cert_bytes = std::fs::read(&files.cert).map_err(|e| {
        err(
            keys.cert,
            &files.cert,
            describe_io_error(&e),
            "check the path and the file's permissions",
        )
    })?;
    let chain = pem_certs_from_bytes(&cert_bytes).map_err(|p| {
        err(
            keys.cert,
            &files.cert,
            p,
            "point it at this component's PEM certificate",
        )
    })?;
    let leaf = CertInfo::from_der(&chain[0]).map_err(|p| {
        err(
            keys.cert,
            &files.cert,
            p,
            "replace it with a valid PEM certificate",
        )
    })?;
    if leaf.is_expired_at(now) {
        return Err(err(
            keys.cert,
            &files.cert,
            format!("the certificate expired on {}", format_time(leaf.not_after)),
            "issue a new certificate from the same CA (`tiox cert issue`) and replace the file; \
             running components pick it up without a restart",
        ));
    }
    if leaf.is_not_yet_valid_at(now) {
        return Err(err(
            keys.cert,
            &files.cert,
            format!(
                "the certificate is not valid before {} (is this machine's clock right?)",
                format_time(leaf.not_before)
            ),
            "check the system clock, or issue a certificate whose validity starts now",
        ));
    }
    match component.role() {
        Role::Server if !(leaf.allows_server_auth() && leaf.allows_client_auth()) => {
            return Err(err(
                keys.cert,
                &files.cert,
                format!(
                    "the certificate's extended key usage is [{}], but a cluster component \
                     needs both serverAuth and clientAuth (it serves its peers and dials them)",
                    leaf.ext_key_usage.as_deref().unwrap_or_default().join(", ")
                ),
                "issue it with the server profile (`tiox cert issue --profile server`, or \
                 cfssl's server profile with \"server auth\" and \"client auth\")",
            ));
        }
        Role::Client if !leaf.allows_client_auth() => {
            return Err(err(
                keys.cert,
                &files.cert,
                format!(
                    "the certificate's extended key usage is [{}], without clientAuth",
                    leaf.ext_key_usage.as_deref().unwrap_or_default().join(", ")
                ),
                "use a client certificate (`tiox cert issue --profile client`)",
            ));
        }
        _ => {}
    }

    // The private key.
    let key_bytes = std::fs::read(&files.key).map_err(|e| {
        err(
            keys.key,
            &files.key,
            describe_io_error(&e),
            "check the path and the file's permissions (keys are usually 0600, readable by \
             the user the component runs as)",
        )
    })?;
    if contains(&key_bytes, b"ENCRYPTED PRIVATE KEY")
        || contains(&key_bytes, b"Proc-Type: 4,ENCRYPTED")
    {
        return Err(err(
            keys.key,
            &files.key,
            "the private key is encrypted with a passphrase".to_string(),
            "store it unencrypted with restricted permissions: `openssl pkey -in KEY -out \
             KEY.plain && chmod 600 KEY.plain`",
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(&key_bytes).map_err(|e| {
        err(
            keys.key,
            &files.key,
            format!(
                "no usable private key found ({e}); expected a PEM block \"PRIVATE KEY\" \
                 (PKCS#8), \"RSA PRIVATE KEY\" (PKCS#1) or \"EC PRIVATE KEY\" (SEC1)"
            ),
            "point it at the private key that belongs to the certificate",
        )
    })?;
    let signing = provider()
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|e| {
            err(
                keys.key,
                &files.key,
                format!("the private key is not supported ({e})"),
                "use an RSA (2048-8192 bit), ECDSA P-256/P-384 or Ed25519 key",
            )
        })?;
    if let Some(spki) = signing.public_key() {
        if spki.as_ref() != leaf.spki_der.as_slice() {
            return Err(err(
                keys.key,
                &files.key,
                format!(
                    "the private key does not belong to the certificate in {} ({})",
                    keys.cert,
                    files.cert.display()
                ),
                "use the key generated together with this certificate (the -key.pem twin)",
            ));
        }
    }

    // The revocation lists, if any.
    let crls = match &files.crl {
        Some(path) => read_crls(path).map_err(|p| {
            err(
                keys.crl,
                path,
                p,
                "point it at the PEM (or DER) CRL the cluster CA signed \
                 (`tiox cert revoke` makes one)",
            )
        })?,
        None => Vec::new(),
    };

    // The chain must lead to the CA (and not be revoked): peers will check
    // exactly this.
    let verifier = revocation_checked(
        WebPkiClientVerifier::builder_with_provider(roots.clone(), provider()),
        &crls,
    )
    .build()
    .map_err(|e| match &files.crl {
        Some(crl) if !crls.is_empty() => err(
            keys.crl,
            crl,
            format!("the revocation list is not usable ({e})"),
            "use a CRL signed by the cluster CA, in PEM or DER",
        ),
        _ => err(
            keys.ca,
            &files.ca,
            format!("cannot build a verifier ({e})"),
            "use a valid CA certificate",
        ),
    })?;
    if let Err(e) = verifier.verify_client_cert(&chain[0], &chain[1..], UnixTime::now()) {
        let problem = match e {
            rustls::Error::InvalidCertificate(rustls::CertificateError::Revoked) => format!(
                "the certificate (serial {}) is revoked by the list in {}",
                leaf.serial, keys.crl
            ),
            rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer | rustls::CertificateError::BadSignature,
            ) => format!(
                "the certificate (issuer \"{}\") was not issued by the CA in {} ({})",
                leaf.issuer,
                keys.ca,
                files.ca.display()
            ),
            other => format!(
                "the certificate does not verify against the CA in {}: {other}",
                keys.ca
            ),
        };
        return Err(err(
            keys.cert,
            &files.cert,
            problem,
            "use certificates issued by the one cluster CA (include intermediates in the \
             certificate file, leaf first)",
        ));
    }

    let days = leaf.days_left(now);
    if days < EXPIRY_WARNING_DAYS {
        tracing::warn!(
            component = component.name(),
            file = %files.cert.display(),
            "certificate expires in {days} days ({}); rotate it soon",
            format_time(leaf.not_after)
        );
    }
    Ok(TlsMaterial {
        roots,
        ca_infos,
        chain,
        leaf,
        key: PrivateKey(key),
        crls,
        generation: 0,
    })
}

/// Reads a revocation list file: one or more PEM `X509 CRL` blocks, or one
/// DER CRL.
pub fn read_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, String> {
    let bytes = std::fs::read(path).map_err(|e| describe_io_error(&e))?;
    if contains(&bytes, b"-----BEGIN") {
        let crls: Result<Vec<_>, _> =
            CertificateRevocationListDer::pem_slice_iter(&bytes).collect();
        let crls = crls.map_err(|e| format!("the PEM data is malformed ({e})"))?;
        if crls.is_empty() {
            return Err(
                "no revocation list found (expected a PEM block \"-----BEGIN X509 CRL-----\")"
                    .to_string(),
            );
        }
        Ok(crls)
    } else if bytes.first() == Some(&0x30) {
        Ok(vec![CertificateRevocationListDer::from(bytes)])
    } else {
        Err("neither a PEM nor a DER revocation list".to_string())
    }
}

/// Applies the revocation lists to a verifier builder: the leaf is checked
/// against them; a CA without a list (a bundle with several CAs) does not
/// make its certificates fail.
pub fn revocation_checked(
    builder: rustls::server::ClientCertVerifierBuilder,
    crls: &[CertificateRevocationListDer<'static>],
) -> rustls::server::ClientCertVerifierBuilder {
    if crls.is_empty() {
        return builder;
    }
    builder
        .with_crls(crls.iter().cloned())
        .only_check_end_entity_revocation()
        .allow_unknown_revocation_status()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Identity of a set of files' current contents (mtime, size, inode),
/// cheap to read on every handshake; every reloading TLS endpoint (the
/// cluster ports here, the MySQL port in crates/sql) compares these.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stamp(Vec<Option<(SystemTime, u64, u64)>>);

impl Stamp {
    /// The stamp of `paths` (a missing file stamps as `None`).
    pub fn of_paths<'a>(paths: impl IntoIterator<Item = &'a Path>) -> Stamp {
        use std::os::unix::fs::MetadataExt;
        Stamp(
            paths
                .into_iter()
                .map(|p| {
                    std::fs::metadata(p).ok().map(|m| {
                        (
                            m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                            m.len(),
                            m.ino(),
                        )
                    })
                })
                .collect(),
        )
    }

    fn of(files: &TlsFiles) -> Stamp {
        Stamp::of_paths(
            [
                Some(&files.ca),
                Some(&files.cert),
                Some(&files.key),
                files.crl.as_ref(),
            ]
            .into_iter()
            .flatten()
            .map(PathBuf::as_path),
        )
    }
}

#[derive(Debug)]
struct SourceState {
    current: Arc<TlsMaterial>,
    stamp: Stamp,
    /// The stamp of a replacement that failed to load, so it is logged once.
    rejected: Option<Stamp>,
}

/// The material in service for one component, reloaded when its files change.
#[derive(Debug)]
pub struct MaterialSource {
    component: Component,
    files: TlsFiles,
    state: Mutex<SourceState>,
}

impl MaterialSource {
    /// Loads the files; an error here is a startup error.
    pub fn new(component: Component, files: TlsFiles) -> Result<MaterialSource, ConfigError> {
        let stamp = Stamp::of(&files);
        let material = load(component, &files)?;
        Ok(MaterialSource {
            component,
            files,
            state: Mutex::new(SourceState {
                current: Arc::new(material),
                stamp,
                rejected: None,
            }),
        })
    }

    /// The component this material belongs to.
    pub fn component(&self) -> Component {
        self.component
    }

    /// The watched files.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// The material to use for the next handshake: reloaded first if the
    /// files changed and the new set is valid; the old set otherwise.
    pub fn current(&self) -> Arc<TlsMaterial> {
        let stamp = Stamp::of(&self.files);
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if stamp == state.stamp || state.rejected.as_ref() == Some(&stamp) {
            return state.current.clone();
        }
        match load(self.component, &self.files) {
            Ok(mut material) => {
                material.generation = state.current.generation + 1;
                tracing::info!(
                    component = self.component.name(),
                    cert = %self.files.cert.display(),
                    subject = %material.leaf.subject,
                    not_after = %format_time(material.leaf.not_after),
                    sha256 = %material.leaf.sha256,
                    "reloaded TLS certificates; new connections use them"
                );
                state.current = Arc::new(material);
                state.stamp = stamp;
                state.rejected = None;
            }
            Err(e) => {
                tracing::warn!(
                    component = self.component.name(),
                    "TLS files changed but the new set is not usable, keeping the certificates \
                     in service: {e}"
                );
                state.rejected = Some(stamp);
            }
        }
        state.current.clone()
    }
}

/// A value built from the material (a rustls config), rebuilt only when the
/// material's generation changes. Server and client sides share this logic.
#[derive(Debug)]
pub struct Derived<T> {
    built: Mutex<Option<(u64, Arc<T>)>>,
}

impl<T> Default for Derived<T> {
    fn default() -> Self {
        Derived {
            built: Mutex::new(None),
        }
    }
}

impl<T> Derived<T> {
    /// The value for `material`, building it if the generation moved on. If
    /// building fails, the previous value (if any) stays in service.
    pub fn get<E: fmt::Display>(
        &self,
        material: &TlsMaterial,
        build: impl FnOnce(&TlsMaterial) -> Result<T, E>,
    ) -> Result<Arc<T>, E> {
        let mut built = self.built.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((generation, value)) = built.as_ref() {
            if *generation == material.generation {
                return Ok(value.clone());
            }
        }
        match build(material) {
            Ok(v) => {
                let v = Arc::new(v);
                *built = Some((material.generation, v.clone()));
                Ok(v)
            }
            Err(e) => match built.as_ref() {
                Some((_, old)) => {
                    tracing::warn!("cannot build a TLS config from reloaded material, keeping the old one: {e}");
                    Ok(old.clone())
                }
                None => Err(e),
            },
        }
    }
}
