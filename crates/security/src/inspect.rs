//! Certificate inspection: what an operator needs to know about a certificate
//! (subject, SANs, usages, validity, fingerprint), used by validation, by
//! `tiox cert inspect`, by the `/metrics` not-after gauges and by peer
//! allow-list checks.
//!
//! Pure functions over DER bytes; no I/O except [`read_pem_certs`].

use std::fmt;
use std::net::IpAddr;
use std::path::Path;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
use x509_parser::public_key::PublicKey;

/// Days before expiry at which components warn.
pub const EXPIRY_WARNING_DAYS: i64 = 30;

/// One subject alternative name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum San {
    /// A DNS name (compared case-insensitively).
    Dns(String),
    /// An IP address.
    Ip(IpAddr),
    /// A URI (e.g. a SPIFFE id).
    Uri(String),
}

impl fmt::Display for San {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            San::Dns(d) => write!(f, "DNS:{d}"),
            San::Ip(ip) => write!(f, "IP:{ip}"),
            San::Uri(u) => write!(f, "URI:{u}"),
        }
    }
}

/// What one certificate says about itself.
#[derive(Clone, Debug)]
pub struct CertInfo {
    /// The subject distinguished name, as text.
    pub subject: String,
    /// The subject's common name, if any.
    pub common_name: Option<String>,
    /// The issuer distinguished name, as text.
    pub issuer: String,
    /// Serial number, hex.
    pub serial: String,
    /// Subject alternative names.
    pub sans: Vec<San>,
    /// Key usages (`digitalSignature`, `keyEncipherment`, `keyCertSign`, ...).
    pub key_usage: Vec<&'static str>,
    /// Extended key usages (`serverAuth`, `clientAuth`, ...); `None` when the
    /// extension is absent (which means "any").
    pub ext_key_usage: Option<Vec<&'static str>>,
    /// Whether basic constraints say this is a CA.
    pub is_ca: bool,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
    /// SHA-256 fingerprint, colon-separated upper-case hex.
    pub sha256: String,
    /// Public key kind: `RSA 2048`, `ECDSA P-256`, `Ed25519`, ...
    pub key_kind: String,
    /// The DER-encoded SubjectPublicKeyInfo, to match against a private key.
    pub spki_der: Vec<u8>,
}

impl CertInfo {
    /// Parses a DER certificate.
    pub fn from_der(der: &[u8]) -> Result<CertInfo, String> {
        let (_, cert) = X509Certificate::from_der(der)
            .map_err(|e| format!("not a valid X.509 certificate ({e})"))?;
        Ok(Self::from_parsed(&cert, der))
    }

    fn from_parsed(cert: &X509Certificate<'_>, der: &[u8]) -> CertInfo {
        let common_name = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_string);
        let sans = match cert.subject_alternative_name() {
            Ok(Some(ext)) => ext
                .value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DNSName(d) => Some(San::Dns(d.to_string())),
                    GeneralName::URI(u) => Some(San::Uri(u.to_string())),
                    GeneralName::IPAddress(b) => ip_from_bytes(b).map(San::Ip),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        let key_usage = match cert.key_usage() {
            Ok(Some(ku)) => {
                let ku = ku.value;
                let all = [
                    (ku.digital_signature(), "digitalSignature"),
                    (ku.non_repudiation(), "nonRepudiation"),
                    (ku.key_encipherment(), "keyEncipherment"),
                    (ku.data_encipherment(), "dataEncipherment"),
                    (ku.key_agreement(), "keyAgreement"),
                    (ku.key_cert_sign(), "keyCertSign"),
                    (ku.crl_sign(), "cRLSign"),
                ];
                all.iter().filter(|(on, _)| *on).map(|(_, n)| *n).collect()
            }
            _ => Vec::new(),
        };
        let ext_key_usage = match cert.extended_key_usage() {
            Ok(Some(eku)) => {
                let e = eku.value;
                let all = [
                    (e.any, "any"),
                    (e.server_auth, "serverAuth"),
                    (e.client_auth, "clientAuth"),
                    (e.code_signing, "codeSigning"),
                    (e.email_protection, "emailProtection"),
                    (e.time_stamping, "timeStamping"),
                    (e.ocsp_signing, "OCSPSigning"),
                ];
                Some(all.iter().filter(|(on, _)| *on).map(|(_, n)| *n).collect())
            }
            _ => None,
        };
        let spki = cert.public_key();
        let key_kind = match spki.parsed() {
            Ok(PublicKey::RSA(rsa)) => format!("RSA {}", rsa.key_size()),
            Ok(PublicKey::EC(_)) => {
                let curve = spki
                    .algorithm
                    .parameters
                    .as_ref()
                    .and_then(|p| p.as_oid().ok())
                    .map(|oid| oid.to_id_string());
                match curve.as_deref() {
                    Some("1.2.840.10045.3.1.7") => "ECDSA P-256".to_string(),
                    Some("1.3.132.0.34") => "ECDSA P-384".to_string(),
                    Some("1.3.132.0.35") => "ECDSA P-521".to_string(),
                    Some(other) => format!("EC ({other})"),
                    None => "EC".to_string(),
                }
            }
            _ => match spki.algorithm.algorithm.to_id_string().as_str() {
                "1.3.101.112" => "Ed25519".to_string(),
                "1.3.101.113" => "Ed448".to_string(),
                other => format!("unknown ({other})"),
            },
        };
        CertInfo {
            subject: cert.subject().to_string(),
            common_name,
            issuer: cert.issuer().to_string(),
            serial: cert.raw_serial_as_string(),
            sans,
            key_usage,
            ext_key_usage,
            is_ca: cert.is_ca(),
            not_before: cert.validity().not_before.to_datetime(),
            not_after: cert.validity().not_after.to_datetime(),
            sha256: fingerprint(der),
            key_kind,
            spki_der: spki.raw.to_vec(),
        }
    }

    /// Whether the certificate may be used as a TLS server certificate (no
    /// EKU extension means any usage).
    pub fn allows_server_auth(&self) -> bool {
        self.ext_key_usage
            .as_ref()
            .is_none_or(|e| e.contains(&"serverAuth") || e.contains(&"any"))
    }

    /// Whether the certificate may be used as a TLS client certificate.
    pub fn allows_client_auth(&self) -> bool {
        self.ext_key_usage
            .as_ref()
            .is_none_or(|e| e.contains(&"clientAuth") || e.contains(&"any"))
    }

    /// Whether `now` is past not-after.
    pub fn is_expired_at(&self, now: OffsetDateTime) -> bool {
        now > self.not_after
    }

    /// Whether `now` is before not-before.
    pub fn is_not_yet_valid_at(&self, now: OffsetDateTime) -> bool {
        now < self.not_before
    }

    /// Whole days from `now` until not-after (negative once expired).
    pub fn days_left(&self, now: OffsetDateTime) -> i64 {
        (self.not_after - now).whole_days()
    }

    /// Whether the certificate covers `host` (an IP literal or a DNS name,
    /// with a single leading `*.` wildcard label allowed in the SAN).
    pub fn covers_host(&self, host: &str) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = host.parse::<IpAddr>() {
            return self
                .sans
                .iter()
                .any(|s| matches!(s, San::Ip(a) if *a == ip));
        }
        let host = host.to_ascii_lowercase();
        self.sans.iter().any(|s| match s {
            San::Dns(d) => {
                let d = d.to_ascii_lowercase();
                match d.strip_prefix("*.") {
                    Some(suffix) => host
                        .split_once('.')
                        .is_some_and(|(first, rest)| !first.is_empty() && rest == suffix),
                    None => d == host,
                }
            }
            _ => false,
        })
    }

    /// The SANs as one comma-separated line, for messages.
    pub fn sans_text(&self) -> String {
        if self.sans.is_empty() {
            return "none".to_string();
        }
        self.sans
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl fmt::Display for CertInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "  subject:        {}", self.subject)?;
        writeln!(f, "  issuer:         {}", self.issuer)?;
        writeln!(f, "  serial:         {}", self.serial)?;
        writeln!(f, "  key:            {}", self.key_kind)?;
        writeln!(f, "  is CA:          {}", self.is_ca)?;
        writeln!(f, "  SANs:           {}", self.sans_text())?;
        writeln!(f, "  key usage:      {}", join_or(&self.key_usage, "none"))?;
        match &self.ext_key_usage {
            Some(e) => writeln!(f, "  ext key usage:  {}", join_or(e, "none"))?,
            None => writeln!(f, "  ext key usage:  (absent: any)")?,
        }
        writeln!(f, "  not before:     {}", format_time(self.not_before))?;
        writeln!(f, "  not after:      {}", format_time(self.not_after))?;
        write!(f, "  sha256:         {}", self.sha256)
    }
}

fn join_or(items: &[&str], empty: &str) -> String {
    if items.is_empty() {
        empty.to_string()
    } else {
        items.join(", ")
    }
}

fn ip_from_bytes(b: &[u8]) -> Option<IpAddr> {
    match b.len() {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(b).ok()?)),
        16 => Some(IpAddr::from(<[u8; 16]>::try_from(b).ok()?)),
        _ => None,
    }
}

/// SHA-256 fingerprint of DER bytes, as `AB:CD:...`.
pub fn fingerprint(der: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
    digest
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Formats a time as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn format_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Reads every certificate in a PEM file (a chain or a CA bundle).
pub fn read_pem_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = std::fs::read(path).map_err(|e| describe_io_error(&e))?;
    pem_certs_from_bytes(&bytes)
}

/// Parses every certificate in PEM bytes.
pub fn pem_certs_from_bytes(bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(bytes).collect();
    let certs = certs.map_err(|e| format!("the PEM data is malformed ({e})"))?;
    if certs.is_empty() {
        return Err(
            "no certificate found (expected a PEM block \"-----BEGIN CERTIFICATE-----\")"
                .to_string(),
        );
    }
    Ok(certs)
}

/// Turns an I/O error on a configured file into a sentence.
pub fn describe_io_error(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "the file does not exist".to_string(),
        std::io::ErrorKind::PermissionDenied => {
            "the file is not readable by this process (permission denied)".to_string()
        }
        _ => format!("the file cannot be read ({e})"),
    }
}

/// The SubjectPublicKeyInfo (DER) of the first private key in PEM bytes, to
/// pair keys with certificates. `Ok(None)` when the bytes hold no key.
pub fn private_key_spki(pem: &[u8]) -> Result<Option<Vec<u8>>, String> {
    use rustls_pki_types::PrivateKeyDer;
    let Ok(key) = PrivateKeyDer::from_pem_slice(pem) else {
        return Ok(None);
    };
    let signing = crate::material::provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| format!("unsupported private key ({e})"))?;
    Ok(signing.public_key().map(|s| s.as_ref().to_vec()))
}
