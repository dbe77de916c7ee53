//! Certificate creation for `tiox cert` and for tests: a cluster CA, server
//! certificates (serverAuth + clientAuth, SANs from the hosts), client
//! certificates (clientAuth only), in the shape the how-to's cfssl profiles
//! produce.
//!
//! Generated keys are ECDSA P-256 by default (P-384 and Ed25519 on request);
//! tiox does not generate RSA keys (slow, large, and nothing here needs them). Existing RSA CA keys
//! (PKCS#1 or PKCS#8) can still sign, and RSA certificates made by openssl or
//! cfssl are accepted everywhere.

use std::fmt;
use std::str::FromStr;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::{Duration, OffsetDateTime};

use crate::error::{Error, Result};

/// PEM text of a private key. `Debug` prints nothing of it.
pub struct SecretPem(String);

impl SecretPem {
    /// The PEM text, to write to a 0600 file.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretPem(<redacted>)")
    }
}

/// A new certificate and its key.
#[derive(Debug)]
pub struct Issued {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key, PEM (PKCS#8).
    pub key_pem: SecretPem,
}

/// Key algorithm for new keys.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KeyType {
    /// ECDSA on P-256 with SHA-256 (default).
    #[default]
    EcdsaP256,
    /// ECDSA on P-384 with SHA-384.
    EcdsaP384,
    /// Ed25519.
    Ed25519,
}

impl FromStr for KeyType {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "ecdsa-p256" | "p256" | "ec" => Ok(KeyType::EcdsaP256),
            "ecdsa-p384" | "p384" => Ok(KeyType::EcdsaP384),
            "ed25519" => Ok(KeyType::Ed25519),
            "rsa" => Err("tiox does not generate RSA keys; use ecdsa-p256, or make \
                          RSA keys with openssl: tiox accepts them"
                .to_string()),
            other => Err(format!(
                "unknown key type \"{other}\": use ecdsa-p256, ecdsa-p384 or ed25519"
            )),
        }
    }
}

/// What a certificate is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// A component: serverAuth and clientAuth, SANs required.
    Server,
    /// A client (ctl tools, applications): clientAuth only.
    Client,
    /// A MySQL-facing server certificate: serverAuth only.
    MysqlServer,
}

impl FromStr for Profile {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "server" => Ok(Profile::Server),
            "client" => Ok(Profile::Client),
            "mysql-server" => Ok(Profile::MysqlServer),
            other => Err(format!(
                "unknown profile \"{other}\": use server, client or mysql-server"
            )),
        }
    }
}

/// When a certificate is valid.
#[derive(Clone, Copy, Debug)]
pub enum Validity {
    /// From a minute ago (clock skew) for this many days.
    Days(u32),
    /// An explicit window (tests make expired and future certificates).
    Window {
        /// Start.
        not_before: OffsetDateTime,
        /// End.
        not_after: OffsetDateTime,
    },
}

impl Validity {
    fn window(self) -> (OffsetDateTime, OffsetDateTime) {
        match self {
            Validity::Days(d) => {
                let now = OffsetDateTime::now_utc();
                (
                    now - Duration::minutes(1),
                    now + Duration::days(i64::from(d)),
                )
            }
            Validity::Window {
                not_before,
                not_after,
            } => (not_before, not_after),
        }
    }
}

/// What to put in a new certificate.
#[derive(Clone, Debug)]
pub struct Spec {
    /// Common name.
    pub cn: String,
    /// SANs: IP literals become IP SANs, `scheme://...` URIs, the rest DNS.
    pub hosts: Vec<String>,
    /// Usage profile.
    pub profile: Profile,
    /// Validity.
    pub validity: Validity,
    /// Key algorithm.
    pub key_type: KeyType,
}

impl Spec {
    /// A spec with the defaults: 10 years (the how-to's 43800h is 5), P-256.
    pub fn new(cn: &str, hosts: &[&str], profile: Profile) -> Spec {
        Spec {
            cn: cn.to_string(),
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            profile,
            validity: Validity::Days(3650),
            key_type: KeyType::EcdsaP256,
        }
    }
}

/// A CA able to sign certificates.
pub struct CertAuthority {
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate, PEM.
    pub cert_pem: String,
}

impl fmt::Debug for CertAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertAuthority").finish_non_exhaustive()
    }
}

fn gen_err(what: &str) -> impl Fn(rcgen::Error) -> Error + '_ {
    move |e| Error::CertGen(format!("{what}: {e}"))
}

fn new_key(key_type: KeyType) -> Result<KeyPair> {
    let alg = match key_type {
        KeyType::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        KeyType::EcdsaP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
        KeyType::Ed25519 => &rcgen::PKCS_ED25519,
    };
    KeyPair::generate_for(alg).map_err(gen_err("generating a key"))
}

fn random_serial() -> Result<SerialNumber> {
    use aws_lc_rs::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| Error::CertGen("the system random generator failed".to_string()))?;
    bytes[0] &= 0x7f; // positive
    bytes[0] |= 0x01; // no leading zero byte
    Ok(SerialNumber::from(bytes.to_vec()))
}

fn base_params(cn: &str, validity: Validity) -> Result<CertificateParams> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "tiox");
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    let (nb, na) = validity.window();
    params.not_before = nb;
    params.not_after = na;
    params.serial_number = Some(random_serial()?);
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

fn san(host: &str) -> Result<SanType> {
    let host = host.trim();
    if let Ok(ip) = host.parse() {
        return Ok(SanType::IpAddress(ip));
    }
    let ia5 = |s: &str| {
        s.to_string()
            .try_into()
            .map_err(|_| Error::CertGen(format!("\"{s}\" is not an ASCII host name or URI")))
    };
    if host.contains("://") {
        Ok(SanType::URI(ia5(host)?))
    } else {
        Ok(SanType::DnsName(ia5(host)?))
    }
}

impl CertAuthority {
    /// A new self-signed CA.
    pub fn generate(cn: &str, validity: Validity, key_type: KeyType) -> Result<CertAuthority> {
        let key = new_key(key_type)?;
        let mut params = base_params(cn, validity)?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
        ];
        let cert = params
            .self_signed(&key)
            .map_err(gen_err("signing the CA"))?;
        Ok(CertAuthority {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// The CA's private key, PEM (PKCS#8), to store next to `ca.pem`.
    pub fn key_pem(&self) -> SecretPem {
        SecretPem(self.issuer.key().serialize_pem())
    }

    /// Loads an existing CA (e.g. made by openssl or cfssl). The key may be
    /// PKCS#8, PKCS#1 (RSA) or SEC1 (EC).
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<CertAuthority> {
        let der = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|e| Error::CertGen(format!("the CA key has no usable PEM key ({e})")))?;
        let pkcs8 = to_pkcs8(&der)?;
        let key = KeyPair::try_from(&PrivateKeyDer::Pkcs8(pkcs8))
            .map_err(gen_err("loading the CA key"))?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key).map_err(gen_err("loading the CA"))?;
        Ok(CertAuthority {
            issuer,
            cert_pem: cert_pem.to_string(),
        })
    }

    /// A certificate revocation list signed by this CA naming `certs`
    /// (DER certificates) plus the serials already in `previous` (an
    /// earlier list's PEM or DER, so revocations accumulate), valid for
    /// `days`. Returns the PEM (`-----BEGIN X509 CRL-----`).
    pub fn revoke(
        &self,
        certs: &[CertificateDer<'_>],
        previous: Option<&[u8]>,
        days: u32,
    ) -> Result<String> {
        use rcgen::{CertificateRevocationListParams, KeyIdMethod, RevokedCertParams};
        use x509_parser::prelude::FromDer;
        let now = OffsetDateTime::now_utc();
        let mut serials: Vec<(Vec<u8>, OffsetDateTime)> = Vec::new();
        if let Some(prev) = previous {
            let ders: Vec<Vec<u8>> = if prev.windows(10).any(|w| w == b"-----BEGIN") {
                rustls_pki_types::CertificateRevocationListDer::pem_slice_iter(prev)
                    .map(|r| r.map(|d| d.to_vec()))
                    .collect::<std::result::Result<_, _>>()
                    .map_err(|e| Error::CertGen(format!("the existing CRL is malformed ({e})")))?
            } else {
                vec![prev.to_vec()]
            };
            for der in &ders {
                let (_, crl) =
                    x509_parser::revocation_list::CertificateRevocationList::from_der(der)
                        .map_err(|e| {
                            Error::CertGen(format!("the existing CRL is malformed ({e})"))
                        })?;
                for r in crl.iter_revoked_certificates() {
                    let when = OffsetDateTime::from_unix_timestamp(r.revocation_date.timestamp())
                        .unwrap_or(now);
                    serials.push((r.raw_serial().to_vec(), when));
                }
            }
        }
        for der in certs {
            let (_, cert) = x509_parser::prelude::X509Certificate::from_der(der)
                .map_err(|e| Error::CertGen(format!("not a certificate ({e})")))?;
            let serial = cert.raw_serial().to_vec();
            if !serials.iter().any(|(s, _)| *s == serial) {
                serials.push((serial, now));
            }
        }
        let crl_number = u64::try_from(now.unix_timestamp()).unwrap_or(1);
        let params = CertificateRevocationListParams {
            this_update: now - Duration::minutes(5),
            next_update: now + Duration::days(i64::from(days.max(1))),
            crl_number: SerialNumber::from(crl_number.to_be_bytes().to_vec()),
            issuing_distribution_point: None,
            revoked_certs: serials
                .into_iter()
                .map(|(serial, when)| RevokedCertParams {
                    serial_number: SerialNumber::from(serial),
                    revocation_time: when,
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let crl = params
            .signed_by(&self.issuer)
            .map_err(gen_err("signing the CRL"))?;
        crl.pem().map_err(gen_err("encoding the CRL"))
    }

    /// Issues a certificate signed by this CA.
    pub fn issue(&self, spec: &Spec) -> Result<Issued> {
        if spec.cn.trim().is_empty() {
            return Err(Error::CertGen("the common name is empty".to_string()));
        }
        let key = new_key(spec.key_type)?;
        let mut params = base_params(&spec.cn, spec.validity)?;
        params.subject_alt_names = spec
            .hosts
            .iter()
            .filter(|h| !h.trim().is_empty())
            .map(|h| san(h))
            .collect::<Result<_>>()?;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = match spec.profile {
            Profile::Server => vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
            Profile::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
            Profile::MysqlServer => vec![ExtendedKeyUsagePurpose::ServerAuth],
        };
        if matches!(spec.profile, Profile::Server | Profile::MysqlServer)
            && params.subject_alt_names.is_empty()
        {
            return Err(Error::CertGen(
                "a server certificate needs at least one host (--hosts): clients check that \
                 the address they dial is in its SANs"
                    .to_string(),
            ));
        }
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(gen_err("signing the certificate"))?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: SecretPem(key.serialize_pem()),
        })
    }
}

/// Wraps a PKCS#1 (RSA) or SEC1 (EC) key as PKCS#8, which the signer needs.
fn to_pkcs8(der: &PrivateKeyDer<'_>) -> Result<PrivatePkcs8KeyDer<'static>> {
    // AlgorithmIdentifier bodies (OID [+ params]) and DER helpers.
    const RSA_ALG: &[u8] = &[
        0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    const EC_PUBLIC_KEY: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    const P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    const P384: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
    fn tlv(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let len = body.len();
        if len < 0x80 {
            out.push(len as u8);
        } else {
            let bytes: Vec<u8> = len
                .to_be_bytes()
                .iter()
                .copied()
                .skip_while(|b| *b == 0)
                .collect();
            out.push(0x80 | bytes.len() as u8);
            out.extend(bytes);
        }
        out.extend_from_slice(body);
        out
    }
    let wrap = |alg: Vec<u8>, inner: &[u8]| {
        let mut body = vec![0x02, 0x01, 0x00];
        body.extend(tlv(0x30, &alg));
        body.extend(tlv(0x04, inner));
        PrivatePkcs8KeyDer::from(tlv(0x30, &body))
    };
    match der {
        PrivateKeyDer::Pkcs8(k) => Ok(PrivatePkcs8KeyDer::from(k.secret_pkcs8_der().to_vec())),
        PrivateKeyDer::Pkcs1(k) => Ok(wrap(RSA_ALG.to_vec(), k.secret_pkcs1_der())),
        PrivateKeyDer::Sec1(k) => {
            let inner = k.secret_sec1_der();
            let contains = |n: &[u8]| inner.windows(n.len()).any(|w| w == n);
            let curve = if contains(P256) {
                P256
            } else if contains(P384) {
                P384
            } else {
                return Err(Error::CertGen(
                    "the SEC1 EC key names no curve tiox knows (P-256, P-384); convert it \
                     with `openssl pkcs8 -topk8 -nocrypt`"
                        .to_string(),
                ));
            };
            let mut alg = EC_PUBLIC_KEY.to_vec();
            alg.extend_from_slice(curve);
            Ok(wrap(alg, inner))
        }
        _ => Err(Error::CertGen("unsupported private key format".to_string())),
    }
}

/// One file written by [`init_dir`] or [`write_pair`].
#[derive(Clone, Debug)]
pub struct Written {
    /// Where.
    pub path: std::path::PathBuf,
    /// What it is, for the listing the tool prints.
    pub what: String,
}

/// The files `tiox cert init` creates, relative to its directory: the
/// cluster CA, one server certificate per component, the shared client
/// certificate, and under `mysql/` a separate set for MySQL clients.
pub const CLUSTER_COMPONENTS: [&str; 3] = ["pd-server", "tikv-server", "tidb-server"];

/// Options for [`init_dir`].
#[derive(Clone, Debug)]
pub struct InitOptions {
    /// SANs for every server certificate.
    pub hosts: Vec<String>,
    /// Validity of every certificate.
    pub days: u32,
    /// Key algorithm.
    pub key_type: KeyType,
    /// Overwrite existing files.
    pub force: bool,
}

fn planned_files(dir: &std::path::Path) -> Vec<(std::path::PathBuf, String)> {
    let mut files = vec![
        (dir.join("ca.pem"), "cluster CA certificate".to_string()),
        (
            dir.join("ca-key.pem"),
            "cluster CA key (keep offline)".to_string(),
        ),
    ];
    for c in CLUSTER_COMPONENTS {
        files.push((
            dir.join(format!("{c}.pem")),
            format!("{c} certificate (server+client auth)"),
        ));
        files.push((dir.join(format!("{c}-key.pem")), format!("{c} key")));
    }
    files.push((
        dir.join("client.pem"),
        "cluster client certificate (pd-ctl, tikv-ctl)".to_string(),
    ));
    files.push((dir.join("client-key.pem"), "cluster client key".to_string()));
    let m = dir.join("mysql");
    files.push((
        m.join("ca.pem"),
        "MySQL-facing CA certificate (give to MySQL clients)".to_string(),
    ));
    files.push((
        m.join("ca-key.pem"),
        "MySQL-facing CA key (keep offline)".to_string(),
    ));
    files.push((
        m.join("server.pem"),
        "tidb-server MySQL-facing certificate (ssl-cert)".to_string(),
    ));
    files.push((
        m.join("server-key.pem"),
        "tidb-server MySQL-facing key (ssl-key)".to_string(),
    ));
    files.push((
        m.join("client.pem"),
        "MySQL client certificate (--ssl-cert)".to_string(),
    ));
    files.push((
        m.join("client-key.pem"),
        "MySQL client key (--ssl-key)".to_string(),
    ));
    files
}

/// Writes a complete certificate set for a cluster into `dir` (see
/// [`CLUSTER_COMPONENTS`]). Existing files are an error listing them unless
/// `force`; in that case nothing is written.
pub fn init_dir(dir: &std::path::Path, opts: &InitOptions) -> Result<Vec<Written>> {
    let planned = planned_files(dir);
    if !opts.force {
        let existing: Vec<_> = planned
            .iter()
            .filter(|(p, _)| p.exists())
            .map(|(p, _)| p.clone())
            .collect();
        if !existing.is_empty() {
            return Err(Error::WouldOverwrite(existing));
        }
    }
    let hosts: Vec<&str> = opts.hosts.iter().map(String::as_str).collect();
    let validity = Validity::Days(opts.days);
    let spec = |cn: &str, hosts: &[&str], profile| Spec {
        validity,
        key_type: opts.key_type,
        ..Spec::new(cn, hosts, profile)
    };
    let ca = CertAuthority::generate("tiox cluster CA", validity, opts.key_type)?;
    let mysql_ca = CertAuthority::generate("tiox MySQL CA", validity, opts.key_type)?;
    let mut contents: Vec<(String, bool)> = vec![
        (ca.cert_pem.clone(), false),
        (ca.key_pem().expose().to_string(), true),
    ];
    for c in CLUSTER_COMPONENTS {
        let issued = ca.issue(&spec(c, &hosts, Profile::Server))?;
        contents.push((issued.cert_pem, false));
        contents.push((issued.key_pem.0, true));
    }
    let client = ca.issue(&spec("client", &[], Profile::Client))?;
    contents.push((client.cert_pem, false));
    contents.push((client.key_pem.0, true));
    contents.push((mysql_ca.cert_pem.clone(), false));
    contents.push((mysql_ca.key_pem().0, true));
    let server = mysql_ca.issue(&spec("tidb-server", &hosts, Profile::MysqlServer))?;
    contents.push((server.cert_pem, false));
    contents.push((server.key_pem.0, true));
    let mysql_client = mysql_ca.issue(&spec("mysql-client", &[], Profile::Client))?;
    contents.push((mysql_client.cert_pem, false));
    contents.push((mysql_client.key_pem.0, true));

    let mut written = Vec::new();
    for ((path, what), (text, secret)) in planned.into_iter().zip(contents) {
        write_file(&path, text.as_bytes(), secret, opts.force)?;
        written.push(Written { path, what });
    }
    Ok(written)
}

/// Writes `PREFIX.pem` and `PREFIX-key.pem` (key 0600); refuses to overwrite
/// unless `force`.
pub fn write_pair(prefix: &std::path::Path, issued: &Issued, force: bool) -> Result<Vec<Written>> {
    let cert = prefix.with_file_name(format!(
        "{}.pem",
        prefix
            .file_name()
            .map_or("cert".into(), |n| n.to_string_lossy())
    ));
    let key = prefix.with_file_name(format!(
        "{}-key.pem",
        prefix
            .file_name()
            .map_or("cert".into(), |n| n.to_string_lossy())
    ));
    if !force {
        let existing: Vec<_> = [&cert, &key]
            .into_iter()
            .filter(|p| p.exists())
            .cloned()
            .collect();
        if !existing.is_empty() {
            return Err(Error::WouldOverwrite(existing));
        }
    }
    write_file(&cert, issued.cert_pem.as_bytes(), false, force)?;
    write_file(&key, issued.key_pem.expose().as_bytes(), true, force)?;
    Ok(vec![
        Written {
            path: cert,
            what: "certificate".into(),
        },
        Written {
            path: key,
            what: "private key (0600)".into(),
        },
    ])
}

/// Creates a file (0600 for secrets, 0644 otherwise), parents included.
fn write_file(path: &std::path::Path, bytes: &[u8], secret: bool, force: bool) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |e: std::io::Error| Error::Io {
        context: format!("writing {}", path.display()),
        source: e,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    if force && path.exists() {
        std::fs::remove_file(path).map_err(io)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(if secret { 0o600 } else { 0o644 })
        .open(path)
        .map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)?;
    Ok(())
}
