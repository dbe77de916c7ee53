//! TLS policy: the lowest protocol version and the cipher suites one
//! component speaks, the same keys on every component (`tls-min-version`,
//! `cipher-suites`), and the crypto provider narrowed to them.
//!
//! ```text
//!  [security] tls-min-version = "1.3"          ─┐
//!  [security] cipher-suites = ["TLS_AES_…", …]  ─┴► TlsPolicy ─► provider() narrowed
//!                                                   (every ServerTls, ClientTls, MySQL port)
//! ```
//!
//! Names are accepted as IANA spells them (`TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256`,
//! `TLS_AES_128_GCM_SHA256`, as etcd and Go take them) or as OpenSSL does
//! (`ECDHE-RSA-AES128-GCM-SHA256`). Only AEAD suites exist here: a CBC, 3DES,
//! RC4 or NULL suite is a startup error that says so, as is a name nobody
//! knows. An empty list means the provider's default (all AEAD suites).

use std::fmt;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::{SupportedCipherSuite, SupportedProtocolVersion};
use serde::Deserialize;

use crate::config::TlsVersion;
use crate::material::provider;

/// A checked `cipher-suites` list, kept as the canonical IANA names in the
/// operator's order. Checked when the TOML is read, so a bad name is an
/// error that names the file and line.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "Vec<String>")]
pub struct CipherSuites(Vec<String>);

impl TryFrom<Vec<String>> for CipherSuites {
    type Error = String;
    fn try_from(names: Vec<String>) -> Result<Self, String> {
        CipherSuites::parse(&names)
    }
}

/// The IANA name of a suite (`TLS13_AES_128_GCM_SHA256` is spelled
/// `TLS_AES_128_GCM_SHA256` by IANA and OpenSSL).
pub fn iana_name(suite: rustls::CipherSuite) -> String {
    let name = format!("{suite:?}");
    match name.strip_prefix("TLS13_") {
        Some(rest) => format!("TLS_{rest}"),
        None => name,
    }
}

/// The OpenSSL (and MySQL `Ssl_cipher`) name of a suite.
pub fn openssl_name(suite: rustls::CipherSuite) -> String {
    let name = iana_name(suite);
    let Some(rest) = name.strip_prefix("TLS_") else {
        return name;
    };
    // TLS 1.3 suites keep their IANA name in OpenSSL.
    let Some((kx, enc)) = rest.split_once("_WITH_") else {
        return name;
    };
    // TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 -> ECDHE-RSA-AES128-GCM-SHA256
    let enc = enc
        .replace("AES_128", "AES128")
        .replace("AES_256", "AES256")
        .replace("CHACHA20_POLY1305_SHA256", "CHACHA20-POLY1305");
    format!("{}-{}", kx.replace('_', "-"), enc.replace('_', "-"))
}

/// Whether a suite name (either spelling) is an AEAD one: GCM, CCM or
/// ChaCha20-Poly1305.
fn looks_aead(name: &str) -> bool {
    let n = name.to_ascii_uppercase();
    n.contains("GCM") || n.contains("CCM") || n.contains("CHACHA20")
}

fn all_suites() -> Vec<SupportedCipherSuite> {
    provider().cipher_suites.clone()
}

impl CipherSuites {
    /// Checks names; the error says which one is wrong and why.
    pub fn parse(names: &[String]) -> Result<CipherSuites, String> {
        let known = all_suites();
        let mut out = Vec::new();
        for raw in names {
            let name = raw.trim();
            let found = known.iter().find(|s| {
                iana_name(s.suite()).eq_ignore_ascii_case(name)
                    || openssl_name(s.suite()).eq_ignore_ascii_case(name)
            });
            match found {
                Some(s) => {
                    let canonical = iana_name(s.suite());
                    if !out.contains(&canonical) {
                        out.push(canonical);
                    }
                }
                None if !looks_aead(name) => {
                    return Err(format!(
                        "[security] cipher-suites: \"{name}\" is not an AEAD cipher suite \
                         (CBC, 3DES, RC4 and NULL suites are never offered); list AEAD suites \
                         only, e.g. {}",
                        supported_list()
                    ))
                }
                None => {
                    return Err(format!(
                        "[security] cipher-suites: \"{name}\" is not a supported cipher suite \
                         (suites without ECDHE key exchange and CCM suites are not offered); \
                         use IANA or OpenSSL names from: {}",
                        supported_list()
                    ))
                }
            }
        }
        if !names.is_empty() && out.is_empty() {
            return Err("[security] cipher-suites: the list is empty after trimming".into());
        }
        Ok(CipherSuites(out))
    }

    /// No list: the provider's default.
    pub fn is_default(&self) -> bool {
        self.0.is_empty()
    }

    /// The canonical IANA names.
    pub fn names(&self) -> &[String] {
        &self.0
    }

    fn resolve(&self) -> Vec<SupportedCipherSuite> {
        let known = all_suites();
        if self.0.is_empty() {
            return known;
        }
        self.0
            .iter()
            .filter_map(|n| known.iter().find(|s| iana_name(s.suite()) == *n).copied())
            .collect()
    }
}

fn supported_list() -> String {
    all_suites()
        .iter()
        .map(|s| iana_name(s.suite()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The protocol versions and cipher suites one component speaks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsPolicy {
    /// `tls-min-version` (TiDB's MySQL port: `tls-version`).
    pub min_version: TlsVersion,
    /// `cipher-suites`.
    pub cipher_suites: CipherSuites,
}

impl fmt::Display for TlsPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TLS {}+", self.min_version)?;
        if !self.cipher_suites.is_default() {
            write!(f, ", suites {}", self.cipher_suites.names().join(":"))?;
        }
        Ok(())
    }
}

impl TlsPolicy {
    /// A policy with the given minimum and default suites.
    pub fn min(min_version: TlsVersion) -> TlsPolicy {
        TlsPolicy {
            min_version,
            cipher_suites: CipherSuites::default(),
        }
    }

    /// The suites in service: the list (or all), less TLS 1.2 ones when the
    /// minimum is 1.3.
    pub fn suites(&self) -> Vec<SupportedCipherSuite> {
        self.cipher_suites
            .resolve()
            .into_iter()
            .filter(|s| {
                self.min_version == TlsVersion::V1_2 || s.version() == &rustls::version::TLS13
            })
            .collect()
    }

    /// Checks that the two keys together leave something to speak; the
    /// error names both keys.
    pub fn check(&self) -> Result<(), String> {
        if self.versions().is_empty() {
            return Err(format!(
                "[security] cipher-suites lists only TLS 1.2 suites ({}) but tls-min-version is \
                 \"1.3\", so no handshake could succeed; add TLS 1.3 suites \
                 (TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384, \
                 TLS_CHACHA20_POLY1305_SHA256) or lower tls-min-version",
                self.cipher_suites.names().join(", ")
            ));
        }
        Ok(())
    }

    /// The versions that have at least one suite, newest first.
    pub fn versions(&self) -> Vec<&'static SupportedProtocolVersion> {
        let suites = self.suites();
        [&rustls::version::TLS13, &rustls::version::TLS12]
            .into_iter()
            .filter(|v| suites.iter().any(|s| s.version() == *v))
            .collect()
    }

    /// The crypto provider narrowed to this policy.
    pub fn provider(&self) -> Arc<CryptoProvider> {
        if self.cipher_suites.is_default() && self.min_version == TlsVersion::V1_2 {
            return provider();
        }
        let mut p = (*provider()).clone();
        p.cipher_suites = self.suites();
        Arc::new(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cipher_names_use_iana_and_openssl_spelling() {
        use rustls::CipherSuite as C;
        assert_eq!(
            openssl_name(C::TLS13_AES_256_GCM_SHA384),
            "TLS_AES_256_GCM_SHA384"
        );
        assert_eq!(
            openssl_name(C::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256),
            "ECDHE-RSA-AES128-GCM-SHA256"
        );
        assert_eq!(
            openssl_name(C::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256),
            "ECDHE-ECDSA-CHACHA20-POLY1305"
        );
        assert_eq!(
            iana_name(C::TLS13_CHACHA20_POLY1305_SHA256),
            "TLS_CHACHA20_POLY1305_SHA256"
        );
    }

    #[test]
    fn cipher_suites_accept_both_spellings_and_refuse_non_aead() {
        let ok = CipherSuites::parse(&[
            "ECDHE-RSA-AES128-GCM-SHA256".into(),
            "tls_aes_256_gcm_sha384".into(),
        ])
        .unwrap();
        assert_eq!(
            ok.names(),
            [
                "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
                "TLS_AES_256_GCM_SHA384"
            ]
        );
        for bad in [
            "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
            "DES-CBC3-SHA",
            "ECDHE-RSA-AES128-SHA",
            "RC4-MD5",
        ] {
            let e = CipherSuites::parse(&[bad.into()]).unwrap_err();
            assert!(e.contains("not an AEAD"), "{bad}: {e}");
            assert!(e.contains("cipher-suites"), "{e}");
        }
        let e = CipherSuites::parse(&["TLS_RSA_WITH_AES_128_GCM_SHA256".into()]).unwrap_err();
        assert!(e.contains("not a supported"), "{e}");
    }

    #[test]
    fn min_13_with_only_12_suites_is_refused() {
        let p = TlsPolicy {
            min_version: TlsVersion::V1_3,
            cipher_suites: CipherSuites::parse(&["ECDHE-RSA-AES128-GCM-SHA256".into()]).unwrap(),
        };
        assert!(p.check().unwrap_err().contains("tls-min-version"));
        assert!(TlsPolicy::min(TlsVersion::V1_3).check().is_ok());
        assert_eq!(TlsPolicy::min(TlsVersion::V1_3).versions().len(), 1);
    }
}
