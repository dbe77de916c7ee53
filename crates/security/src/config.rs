//! The `[security]` configuration: one typed struct that reads each
//! component's own spelling, and `validate()` that turns it into a checked
//! model or a startup error naming the component, key, file and fix.
//!
//! Spellings accepted (all in the component's `[security]` table):
//!
//! | meaning        | TiKV              | PD                | TiDB                 |
//! |----------------|-------------------|-------------------|----------------------|
//! | CA bundle      | `ca-path`         | `cacert-path`     | `cluster-ssl-ca`     |
//! | certificate    | `cert-path`       | `cert-path`       | `cluster-ssl-cert`   |
//! | private key    | `key-path`        | `key-path`        | `cluster-ssl-key`    |
//! | CN allow-list  | `cert-allowed-cn` | `cert-allowed-cn` | `cluster-verify-cn`  |
//! | SAN allow-list | `cert-allowed-san`| `cert-allowed-san`| `cert-allowed-san`   |
//! | min TLS        | `tls-min-version` | `tls-min-version` | `tls-min-version`    |
//! | cipher suites  | `cipher-suites`   | `cipher-suites`   | `cipher-suites`      |
//! | revocation     | `crl-path`        | `crl-path`        | `crl-path`           |
//!
//! Rule: CA, certificate and key are all set (mutual TLS on every link) or
//! none are (plaintext, logged loudly). Anything in between is an error; so is
//! an allow-list without TLS. A component never falls back to plaintext
//! because its TLS files are bad, and the servers (pd-server, tikv-server)
//! run plaintext only when asked to with `insecure` (`--insecure`).

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;

use crate::error::{ConfigError, Result};
use crate::inspect::San;
use crate::material::{MaterialSource, TlsFiles};
use crate::policy::{CipherSuites, TlsPolicy};

/// The component whose configuration is being validated; decides the key
/// spellings in messages and which certificate usages are required.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Component {
    /// `pd-server`.
    PdServer,
    /// `tikv-server`.
    TikvServer,
    /// `tidb-server` (its cluster-facing side).
    TidbServer,
    /// `pd-ctl`.
    PdCtl,
    /// `tikv-ctl`.
    TikvCtl,
    /// The `tiox` tool (playground, check).
    Tiox,
}

/// The names of the security keys in one component's own spelling.
#[derive(Clone, Copy, Debug)]
pub struct KeyNames {
    /// CA key name.
    pub ca: &'static str,
    /// Certificate key name.
    pub cert: &'static str,
    /// Private key key name.
    pub key: &'static str,
    /// CN allow-list key name.
    pub allowed_cn: &'static str,
    /// SAN allow-list key name.
    pub allowed_san: &'static str,
    /// Minimum TLS version key name.
    pub min_version: &'static str,
    /// Cipher suites key name.
    pub cipher_suites: &'static str,
    /// Revocation list key name.
    pub crl: &'static str,
}

/// Whether a certificate is used only as a client (ctl tools), or as both a
/// server and a client (every server component is a client of the others).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Serves and dials: needs `serverAuth` and `clientAuth` usages.
    Server,
    /// Only dials: needs `clientAuth`.
    Client,
}

impl Component {
    /// The binary's name, used as the prefix of every message.
    pub fn name(self) -> &'static str {
        match self {
            Component::PdServer => "pd-server",
            Component::TikvServer => "tikv-server",
            Component::TidbServer => "tidb-server",
            Component::PdCtl => "pd-ctl",
            Component::TikvCtl => "tikv-ctl",
            Component::Tiox => "tiox",
        }
    }

    /// The key names as this component's operators write them.
    pub fn keys(self) -> KeyNames {
        let ours = |ca, cert, key, cn| KeyNames {
            ca,
            cert,
            key,
            allowed_cn: cn,
            allowed_san: "[security] cert-allowed-san",
            min_version: "[security] tls-min-version",
            cipher_suites: "[security] cipher-suites",
            crl: "[security] crl-path",
        };
        match self {
            Component::TikvServer => ours(
                "[security] ca-path",
                "[security] cert-path",
                "[security] key-path",
                "[security] cert-allowed-cn",
            ),
            Component::PdServer => ours(
                "[security] cacert-path",
                "[security] cert-path",
                "[security] key-path",
                "[security] cert-allowed-cn",
            ),
            Component::TidbServer => ours(
                "[security] cluster-ssl-ca",
                "[security] cluster-ssl-cert",
                "[security] cluster-ssl-key",
                "[security] cluster-verify-cn",
            ),
            Component::PdCtl | Component::Tiox => KeyNames {
                ca: "--cacert",
                cert: "--cert",
                key: "--key",
                allowed_cn: "--cert-allowed-cn",
                allowed_san: "--cert-allowed-san",
                min_version: "--tls-min-version",
                cipher_suites: "--cipher-suites",
                crl: "--crl-path",
            },
            Component::TikvCtl => KeyNames {
                ca: "--ca-path",
                cert: "--cert-path",
                key: "--key-path",
                allowed_cn: "--cert-allowed-cn",
                allowed_san: "--cert-allowed-san",
                min_version: "--tls-min-version",
                cipher_suites: "--cipher-suites",
                crl: "--crl-path",
            },
        }
    }

    /// Server components need certificates usable both ways.
    pub fn role(self) -> Role {
        match self {
            Component::PdServer | Component::TikvServer | Component::TidbServer => Role::Server,
            Component::PdCtl | Component::TikvCtl | Component::Tiox => Role::Client,
        }
    }

    /// Whether this component serves plaintext only with `insecure` set
    /// (the servers that hold or route the cluster's data; tidb-server's
    /// cluster side and the tools still only warn).
    pub fn refuses_plaintext_by_default(self) -> bool {
        matches!(self, Component::PdServer | Component::TikvServer)
    }

    /// Builds a configuration error for this component.
    pub fn error(
        self,
        key: &str,
        file: Option<PathBuf>,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) -> ConfigError {
        ConfigError {
            component: self.name(),
            key: key.to_string(),
            file,
            problem: problem.into(),
            fix: fix.into(),
        }
    }
}

impl fmt::Display for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The lowest TLS version a component will speak.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub enum TlsVersion {
    /// TLS 1.2 (and 1.3, preferred). The default.
    #[default]
    V1_2,
    /// TLS 1.3 only.
    V1_3,
}

impl TryFrom<String> for TlsVersion {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<Self, String> {
        s.parse()
    }
}

impl std::str::FromStr for TlsVersion {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "" | "1.2" | "tlsv1.2" | "tls1.2" => Ok(TlsVersion::V1_2),
            "1.3" | "tlsv1.3" | "tls1.3" => Ok(TlsVersion::V1_3),
            other => Err(format!(
                "unsupported TLS version \"{other}\": use \"1.2\" (the default) or \"1.3\"; \
                 TLS 1.0 and 1.1 are not supported"
            )),
        }
    }
}

impl fmt::Display for TlsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsVersion::V1_2 => "1.2",
            TlsVersion::V1_3 => "1.3",
        })
    }
}

/// A `[security]` table as written in a component's TOML file (or assembled
/// from its flags). Empty strings mean "not set", as in TiKV.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct SecurityConfig {
    /// PEM file of trusted CA certificates (TiKV `ca-path`, PD `cacert-path`,
    /// TiDB `cluster-ssl-ca`).
    #[serde(alias = "cacert-path", alias = "cluster-ssl-ca")]
    pub ca_path: String,
    /// PEM certificate (chain) this component presents (TiDB `cluster-ssl-cert`).
    #[serde(alias = "cluster-ssl-cert")]
    pub cert_path: String,
    /// PEM private key of `cert-path`: PKCS#1, PKCS#8 or SEC1 (TiDB
    /// `cluster-ssl-key`).
    #[serde(alias = "cluster-ssl-key")]
    pub key_path: String,
    /// If non-empty, a peer's certificate common name must be in this list
    /// (TiDB `cluster-verify-cn`).
    #[serde(alias = "cluster-verify-cn")]
    pub cert_allowed_cn: Vec<String>,
    /// If non-empty, a peer's certificate must carry one of these SANs:
    /// `DNS:name`, `IP:addr`, `URI:uri`, or a bare value matching any kind.
    pub cert_allowed_san: Vec<String>,
    /// Lowest TLS version accepted and offered: "1.2" (default) or "1.3".
    pub tls_min_version: TlsVersion,
    /// Cipher suites, IANA (`TLS_AES_128_GCM_SHA256`,
    /// `TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256`) or OpenSSL
    /// (`ECDHE-ECDSA-AES128-GCM-SHA256`) names; AEAD suites only. Empty:
    /// every AEAD suite the provider has.
    pub cipher_suites: CipherSuites,
    /// PEM (or DER) certificate revocation list(s) from the cluster CA: a
    /// peer whose certificate is listed is refused in the handshake, and
    /// the file is reloaded like the certificates. Empty: no revocation.
    pub crl_path: String,
    /// The security audit log: one JSON line per refused handshake (and,
    /// on tidb-server, login). Empty: `security-audit.log` in the data
    /// directory.
    pub audit_log: String,
    /// How long a peer may take to finish the TLS handshake on this
    /// component's ports: `"10s"` (default), `"500ms"`.
    pub handshake_timeout: String,
    /// Most TLS handshakes in flight per port (default 256); a new
    /// connection beyond it drops the oldest unfinished handshake.
    pub max_handshakes: usize,
    /// Run without TLS on purpose (also the servers' `--insecure` flag).
    /// pd-server and tikv-server refuse to start with no TLS files unless
    /// this is set, and then say so at every start and in `/metrics`
    /// (`tiox_tls_enabled 0`). Setting it together with TLS files is an
    /// error: tiox does not guess which one was meant.
    pub insecure: bool,
}

/// One entry of `cert-allowed-san`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SanPattern {
    /// `DNS:name`.
    Dns(String),
    /// `IP:addr`.
    Ip(IpAddr),
    /// `URI:uri`.
    Uri(String),
    /// A bare value: matches a DNS name, IP or URI equal to it.
    Any(String),
}

impl SanPattern {
    /// Parses `DNS:x`, `IP:x`, `URI:x` or a bare value.
    pub fn parse(s: &str) -> std::result::Result<SanPattern, String> {
        let s = s.trim();
        let (kind, value) = match s.split_once(':') {
            Some((k, v)) if ["dns", "ip", "uri"].contains(&k.to_ascii_lowercase().as_str()) => {
                (k.to_ascii_lowercase(), v.trim())
            }
            _ => (String::new(), s),
        };
        if value.is_empty() {
            return Err(format!("\"{s}\" has no value"));
        }
        Ok(match kind.as_str() {
            "dns" => SanPattern::Dns(value.to_ascii_lowercase()),
            "ip" => SanPattern::Ip(
                value
                    .parse()
                    .map_err(|_| format!("\"{value}\" is not an IP address"))?,
            ),
            "uri" => SanPattern::Uri(value.to_string()),
            _ => SanPattern::Any(value.to_string()),
        })
    }

    /// Whether a certificate SAN matches this pattern.
    pub fn matches(&self, san: &San) -> bool {
        match (self, san) {
            (SanPattern::Dns(p), San::Dns(d)) => p.eq_ignore_ascii_case(d),
            (SanPattern::Ip(p), San::Ip(ip)) => p == ip,
            (SanPattern::Uri(p), San::Uri(u)) => p == u,
            (SanPattern::Any(p), San::Dns(d)) => p.eq_ignore_ascii_case(d),
            (SanPattern::Any(p), San::Ip(ip)) => p.parse::<IpAddr>().is_ok_and(|a| a == *ip),
            (SanPattern::Any(p), San::Uri(u)) => p == u,
            _ => false,
        }
    }
}

/// Which peers are let in, beyond "has a certificate from our CA".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowList {
    /// Allowed common names; empty means any.
    pub cns: Vec<String>,
    /// Allowed SANs; empty means any.
    pub sans: Vec<SanPattern>,
    /// The config keys, for refusal messages.
    pub cn_key: &'static str,
    /// The SAN key, for refusal messages.
    pub san_key: &'static str,
}

impl AllowList {
    /// Checks a peer's CN and SANs; the error says which list refused it.
    pub fn check(&self, cn: Option<&str>, sans: &[San]) -> std::result::Result<(), String> {
        if !self.cns.is_empty() && !cn.is_some_and(|cn| self.cns.iter().any(|a| a == cn)) {
            return Err(format!(
                "common name {} is not in {} [{}]",
                cn.map_or("(none)".to_string(), |c| format!("\"{c}\"")),
                self.cn_key,
                self.cns.join(", ")
            ));
        }
        if !self.sans.is_empty() && !sans.iter().any(|s| self.sans.iter().any(|p| p.matches(s))) {
            let have: Vec<String> = sans.iter().map(ToString::to_string).collect();
            return Err(format!(
                "no SAN of the certificate ({}) is in {}",
                if have.is_empty() {
                    "none".to_string()
                } else {
                    have.join(", ")
                },
                self.san_key
            ));
        }
        Ok(())
    }
}

/// A validated TLS setup: where the files are, who is allowed in, and the
/// (hot-reloading) certificate material already loaded and checked.
#[derive(Clone, Debug)]
pub struct TlsSettings {
    /// Which component this is for.
    pub component: Component,
    /// CN/SAN allow-lists applied to every peer on every listener.
    pub allow: AllowList,
    /// Lowest TLS version and the cipher suites.
    pub policy: TlsPolicy,
    /// The files, watched for changes; shared by the server and client sides.
    pub source: Arc<MaterialSource>,
    /// `handshake-timeout`.
    pub handshake_timeout: std::time::Duration,
    /// `max-handshakes`.
    pub max_handshakes: usize,
}

/// Parses `"10s"`, `"500ms"`, `"2m"` or a bare number of seconds.
pub fn parse_duration(s: &str) -> std::result::Result<std::time::Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("\"{s}\" is not a duration (write e.g. \"10s\" or \"500ms\")"))?;
    match unit.trim() {
        "" | "s" => Ok(std::time::Duration::from_secs(n)),
        "ms" => Ok(std::time::Duration::from_millis(n)),
        "m" => Ok(std::time::Duration::from_secs(n * 60)),
        other => Err(format!(
            "\"{s}\": unknown unit \"{other}\" (use ms, s or m)"
        )),
    }
}

impl SecurityConfig {
    /// Builds a config from three paths (flags such as `--cacert --cert --key`).
    pub fn from_paths(ca: &str, cert: &str, key: &str) -> SecurityConfig {
        SecurityConfig {
            ca_path: ca.to_string(),
            cert_path: cert.to_string(),
            key_path: key.to_string(),
            ..Default::default()
        }
    }

    /// No TLS, on purpose: what `--insecure` sets.
    pub fn insecure() -> SecurityConfig {
        SecurityConfig {
            insecure: true,
            ..Default::default()
        }
    }

    /// Where the audit log goes: `audit-log`, or `security-audit.log` in
    /// `data_dir`.
    pub fn audit_log_path(&self, data_dir: &std::path::Path) -> PathBuf {
        match self.audit_log.trim() {
            "" => data_dir.join(crate::audit::FILE_NAME),
            p => PathBuf::from(p),
        }
    }

    /// Whether any of the three paths is set.
    pub fn any_path_set(&self) -> bool {
        [&self.ca_path, &self.cert_path, &self.key_path]
            .iter()
            .any(|p| !p.trim().is_empty())
    }

    /// Checks the configuration and loads the certificate material.
    ///
    /// Returns `Ok(None)` when no path is set (plaintext: the caller must log
    /// that loudly), `Ok(Some(settings))` when TLS is fully and correctly set
    /// up, and an error naming the key, the file and the fix otherwise.
    pub fn validate(&self, component: Component) -> Result<Option<TlsSettings>> {
        let keys = component.keys();
        let paths = [
            (keys.ca, self.ca_path.trim()),
            (keys.cert, self.cert_path.trim()),
            (keys.key, self.key_path.trim()),
        ];
        let set: Vec<&str> = paths
            .iter()
            .filter(|(_, p)| !p.is_empty())
            .map(|(k, _)| *k)
            .collect();
        if set.is_empty() {
            for (key, list_empty) in [
                (keys.allowed_cn, self.cert_allowed_cn.is_empty()),
                (keys.allowed_san, self.cert_allowed_san.is_empty()),
                (keys.crl, self.crl_path.trim().is_empty()),
            ] {
                if !list_empty {
                    return Err(component
                        .error(
                            key,
                            None,
                            "is set but TLS is off, so no peer certificate would ever be checked",
                            format!(
                                "set {}, {} and {} to enable mutual TLS, or remove {key}",
                                keys.ca, keys.cert, keys.key
                            ),
                        )
                        .into());
                }
            }
            if component.refuses_plaintext_by_default() && !self.insecure {
                return Err(component
                    .error(
                        keys.ca,
                        None,
                        format!(
                            "is not set, nor are {} and {}: {component} would serve every \
                             link in plaintext, which it does only when asked to",
                            keys.cert, keys.key
                        ),
                        format!(
                            "set {}, {} and {} (make them with `tiox cert init`), \
                             or start with --insecure ([security] insecure = true) to run \
                             without TLS on purpose",
                            keys.ca, keys.cert, keys.key
                        ),
                    )
                    .into());
            }
            return Ok(None);
        }
        if self.insecure {
            return Err(component
                .error(
                    "[security] insecure",
                    None,
                    format!(
                        "is set together with {}: plaintext or TLS is ambiguous",
                        set.join(" and ")
                    ),
                    format!(
                        "remove --insecure / [security] insecure to use TLS, or remove {}, {} \
                         and {} to run without it",
                        keys.ca, keys.cert, keys.key
                    ),
                )
                .into());
        }
        if let Some((missing, _)) = paths.iter().find(|(_, p)| p.is_empty()) {
            return Err(component
                .error(
                    missing,
                    None,
                    format!(
                        "is empty while {} {} set; TLS needs all three of {}, {} and {}, or none",
                        set.join(" and "),
                        if set.len() == 1 { "is" } else { "are" },
                        keys.ca,
                        keys.cert,
                        keys.key
                    ),
                    format!(
                        "set {missing} (tiox never falls back to plaintext when TLS is half \
                         configured), or remove all three to run without TLS"
                    ),
                )
                .into());
        }
        let mut sans = Vec::new();
        for s in &self.cert_allowed_san {
            sans.push(SanPattern::parse(s).map_err(|problem| {
                component.error(
                    keys.allowed_san,
                    None,
                    format!("entry {problem}"),
                    "write entries as \"DNS:name\", \"IP:address\" or \"URI:uri\"",
                )
            })?);
        }
        if let Some(bad) = self.cert_allowed_cn.iter().find(|c| c.trim().is_empty()) {
            return Err(component
                .error(
                    keys.allowed_cn,
                    None,
                    format!("contains an empty entry ({bad:?})"),
                    "remove the empty entry; list the common names of the peers' certificates",
                )
                .into());
        }
        let policy = TlsPolicy {
            min_version: self.tls_min_version,
            cipher_suites: self.cipher_suites.clone(),
        };
        policy.check().map_err(|problem| {
            component.error(keys.cipher_suites, None, problem, "make the two keys agree")
        })?;
        let handshake_timeout = match self.handshake_timeout.trim() {
            "" => crate::server::HANDSHAKE_TIMEOUT,
            t => parse_duration(t)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    component.error(
                        "[security] handshake-timeout",
                        None,
                        format!("\"{t}\" is not a positive duration"),
                        "write e.g. \"10s\" (the default) or \"500ms\"",
                    )
                })?,
        };
        let max_handshakes = match self.max_handshakes {
            0 => crate::server::MAX_HANDSHAKES,
            n => n,
        };
        let files = TlsFiles {
            ca: PathBuf::from(self.ca_path.trim()),
            cert: PathBuf::from(self.cert_path.trim()),
            key: PathBuf::from(self.key_path.trim()),
            crl: Some(self.crl_path.trim())
                .filter(|p| !p.is_empty())
                .map(PathBuf::from),
        };
        let source = MaterialSource::new(component, files)?;
        Ok(Some(TlsSettings {
            component,
            allow: AllowList {
                cns: self.cert_allowed_cn.clone(),
                sans,
                cn_key: keys.allowed_cn,
                san_key: keys.allowed_san,
            },
            policy,
            source: Arc::new(source),
            handshake_timeout,
            max_handshakes,
        }))
    }
}
