//! tidb-server's configuration file (TOML, TiDB's key names) and its
//! validation. Flags override file values; `validate()` runs at startup and
//! any error stops the server with a message naming the key, file and fix.
//!
//! Two certificate sets, never mixed:
//! * MySQL clients: `[security] ssl-ca`, `ssl-cert`, `ssl-key`,
//!   `require-secure-transport`, `tls-version` -> [`crate::tls::MysqlTls`];
//! * the cluster (PD, TiKV, the status port): `cluster-ssl-ca`,
//!   `cluster-ssl-cert`, `cluster-ssl-key`, `cluster-verify-cn` ->
//!   `tiox_security::SecurityConfig` (mutual TLS, all three or none).

use std::path::PathBuf;

use serde::Deserialize;
use tiox_security::{CipherSuites, Component, SecurityConfig, TlsPolicy, TlsSettings, TlsVersion};

use crate::error::Error;
use crate::tls::{MysqlTls, MysqlTlsFiles};

/// The whole file.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct TidbConfig {
    /// Address the MySQL port listens on (`--host`). Default `0.0.0.0`.
    pub host: String,
    /// The MySQL port (`-P`). Default 4000.
    pub port: u16,
    /// Storage: `unistore` (the SQL engine over the embedded store, in
    /// this process) or `tikv` (the SQL engine on a cluster through PD).
    /// Default `unistore`.
    pub store: String,
    /// For `store = "tikv"`: PD endpoints, comma-separated `host:port`.
    /// For `store = "unistore"`: the embedded store's directory (kept
    /// across restarts); empty: a temporary store, gone at exit.
    pub path: String,
    /// Directory for this server's own state: the account store of a
    /// `unistore` server. Unused with `tikv`, where tidb-server is
    /// stateless. With `unistore`, defaults to `path`; one of the two is
    /// required.
    pub data_dir: String,
    /// Largest packet accepted, in bytes (MySQL's `max_allowed_packet`).
    /// Default 64 MiB; at most 1 GiB.
    pub max_allowed_packet: u64,
    /// Most MySQL connections at once, including ones still logging in
    /// (ERROR 1040 beyond it). 0: no limit (TiDB's default).
    pub max_server_connections: usize,
    /// TLS and certificates.
    pub security: TidbSecurity,
    /// The HTTP status port.
    pub status: TidbStatus,
}

impl Default for TidbConfig {
    fn default() -> Self {
        TidbConfig {
            host: "0.0.0.0".into(),
            port: 4000,
            store: "unistore".into(),
            path: String::new(),
            data_dir: String::new(),
            max_allowed_packet: 64 << 20,
            max_server_connections: 0,
            security: TidbSecurity::default(),
            status: TidbStatus::default(),
        }
    }
}

/// `[security]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct TidbSecurity {
    /// PEM CA that MySQL clients' certificates are verified against when
    /// presented (`--ssl-ca`). Optional.
    pub ssl_ca: String,
    /// PEM (or DER) revocation list from `ssl-ca`'s CA (`--ssl-crl`): a
    /// listed client certificate is refused in the handshake. Needs
    /// `ssl-ca`; reloaded like the certificates.
    pub ssl_crl: String,
    /// PEM certificate offered to MySQL clients (`--ssl-cert`). With
    /// `ssl-key`, TLS is offered on the MySQL port.
    pub ssl_cert: String,
    /// Private key of `ssl-cert` (`--ssl-key`).
    pub ssl_key: String,
    /// Refuse plaintext MySQL logins with error 3159. Needs TLS.
    pub require_secure_transport: bool,
    /// Lowest TLS version for MySQL clients: `TLSv1.2` (default) or `TLSv1.3`.
    pub tls_version: String,
    /// Lowest TLS version on the cluster links (PD, TiKV, the status
    /// port): "1.2" (default) or "1.3".
    pub tls_min_version: TlsVersion,
    /// Cipher suites on both the MySQL port and the cluster links (IANA or
    /// OpenSSL names, AEAD only); empty: every AEAD suite.
    pub cipher_suites: CipherSuites,
    /// Revocation list(s) from the cluster CA for the cluster links
    /// (`crl-path`, as on PD and TiKV).
    pub crl_path: String,
    /// The security audit log (refused handshakes and logins, JSON lines).
    /// Empty: `security-audit.log` in `data-dir` (none without one).
    pub audit_log: String,
    /// TLS handshake bound on the status port (as on PD and TiKV).
    pub handshake_timeout: String,
    /// Most TLS handshakes in flight on the status port (0: 256).
    pub max_handshakes: usize,
    /// Cluster CA (PD, TiKV and the status port).
    pub cluster_ssl_ca: String,
    /// This server's cluster certificate (serverAuth + clientAuth).
    pub cluster_ssl_cert: String,
    /// Its private key.
    pub cluster_ssl_key: String,
    /// If non-empty, cluster peers (and status-port clients) must have one
    /// of these common names.
    pub cluster_verify_cn: Vec<String>,
    /// Reach PD and TiKV without TLS on purpose (`--insecure`). With
    /// `store = "tikv"` and no `cluster-ssl-*`, tidb-server refuses to start
    /// unless this is set; with `cluster-ssl-*` set it is an error.
    pub insecure: bool,
}

impl Default for TidbSecurity {
    fn default() -> Self {
        TidbSecurity {
            ssl_ca: String::new(),
            ssl_crl: String::new(),
            ssl_cert: String::new(),
            ssl_key: String::new(),
            require_secure_transport: false,
            tls_version: "TLSv1.2".into(),
            tls_min_version: TlsVersion::V1_2,
            cipher_suites: CipherSuites::default(),
            crl_path: String::new(),
            audit_log: String::new(),
            handshake_timeout: String::new(),
            max_handshakes: 0,
            cluster_ssl_ca: String::new(),
            cluster_ssl_cert: String::new(),
            cluster_ssl_key: String::new(),
            cluster_verify_cn: Vec::new(),
            insecure: false,
        }
    }
}

/// `[status]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct TidbStatus {
    /// Serve `/status` and `/metrics`. Default true.
    pub report_status: bool,
    /// Listen address. Default `0.0.0.0`.
    pub status_host: String,
    /// Port (`--status`). Default 10080.
    pub status_port: u16,
}

impl Default for TidbStatus {
    fn default() -> Self {
        TidbStatus {
            report_status: true,
            status_host: "0.0.0.0".into(),
            status_port: 10080,
        }
    }
}

/// A checked configuration with its certificate material loaded.
pub struct Validated {
    /// The MySQL-facing TLS acceptor, if TLS is configured.
    pub mysql_tls: Option<MysqlTls>,
    /// The cluster TLS settings, if configured.
    pub cluster_tls: Option<TlsSettings>,
    /// Where the security audit log goes, if anywhere.
    pub audit_log: Option<PathBuf>,
    /// `tls_version` as `@@tls_version` shows it.
    pub tls_versions: String,
    /// PD endpoints for `store = "tikv"`.
    pub pd_endpoints: Vec<String>,
    /// The embedded store's directory for `store = "unistore"` (None: a
    /// temporary store).
    pub unistore_path: Option<PathBuf>,
    /// The data directory (the account store of a `unistore` server).
    pub data_dir: PathBuf,
}

fn cfg_err(key: &str, problem: impl std::fmt::Display, fix: &str) -> Error {
    Error::Config(format!("tidb-server: {key}: {problem}. Fix: {fix}"))
}

impl TidbConfig {
    /// Reads a TOML file.
    pub fn from_file(path: &std::path::Path) -> Result<TidbConfig, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            cfg_err(
                "--config",
                format!("cannot read {}: {e}", path.display()),
                "check the path",
            )
        })?;
        toml::from_str(&text).map_err(|e| {
            cfg_err(
                "--config",
                format!("{} is not a valid tidb-server config: {e}", path.display()),
                "fix the key or value named above (see etc/tidb-server.toml)",
            )
        })
    }

    /// Checks everything and loads certificates.
    pub fn validate(&self) -> Result<Validated, Error> {
        let sec = &self.security;
        if self.port == 0 {
            return Err(cfg_err("port (-P)", "is 0", "choose a TCP port, e.g. 4000"));
        }
        if self.max_allowed_packet < 1024 || self.max_allowed_packet > 1 << 30 {
            return Err(cfg_err(
                "max-allowed-packet",
                format!("{} is out of range", self.max_allowed_packet),
                "use a value between 1024 and 1073741824",
            ));
        }
        let pd_endpoints = match self.store.as_str() {
            "unistore" => {
                // The embedded server keeps its accounts there (by default
                // beside the embedded store); on TiKV tidb-server is
                // stateless (accounts and schema live in the cluster) and
                // needs no directory.
                if self.data_dir.trim().is_empty() && self.path.trim().is_empty() {
                    return Err(cfg_err(
                        "data-dir (--data-dir)",
                        "is not set, nor is path (store = \"unistore\" keeps its accounts there)",
                        "give a directory for this server's state, e.g. --path /var/lib/tidb \
                         (tables and accounts) or --data-dir /var/lib/tidb (accounts; tables in a \
                         temporary store), or use --store=tikv --path=PD_ENDPOINTS",
                    ));
                }
                Vec::new()
            }
            "tikv" => {
                let eps: Vec<String> = self
                    .path
                    .split(',')
                    .map(|s| {
                        s.trim()
                            .trim_start_matches("http://")
                            .trim_start_matches("https://")
                            .to_string()
                    })
                    .filter(|s| !s.is_empty())
                    .collect();
                if eps.is_empty() {
                    return Err(cfg_err(
                        "path (--path)",
                        "is empty with store = tikv",
                        "list the PD endpoints, e.g. --path=10.0.0.1:2379,10.0.0.2:2379",
                    ));
                }
                for ep in &eps {
                    if tiox_security::client::split_host_port(ep).is_err() {
                        return Err(cfg_err(
                            "path (--path)",
                            format!("\"{ep}\" is not host:port"),
                            "list the PD endpoints as host:port",
                        ));
                    }
                }
                eps
            }
            other => {
                return Err(cfg_err(
                    "store (--store)",
                    format!("unknown store \"{other}\""),
                    "use unistore (the embedded store) or tikv (a cluster)",
                ));
            }
        };
        let min_version = match sec.tls_version.trim().to_ascii_lowercase().as_str() {
            "" | "tlsv1.2" => TlsVersion::V1_2,
            "tlsv1.3" => TlsVersion::V1_3,
            other => {
                return Err(cfg_err(
                    "[security] tls-version",
                    format!("\"{other}\" is not supported"),
                    "use TLSv1.2 (the default) or TLSv1.3; TLS 1.0 and 1.1 are not supported",
                ));
            }
        };
        let tls_versions = match min_version {
            TlsVersion::V1_2 => "TLSv1.2,TLSv1.3".to_string(),
            TlsVersion::V1_3 => "TLSv1.3".to_string(),
        };
        let mysql_policy = TlsPolicy {
            min_version,
            cipher_suites: sec.cipher_suites.clone(),
        };
        mysql_policy.check().map_err(|problem| {
            Error::Config(format!(
                "tidb-server: {}. Fix: make [security] cipher-suites and tls-version agree",
                problem.replace("tls-min-version", "tls-version")
            ))
        })?;
        let (cert, key, ca) = (sec.ssl_cert.trim(), sec.ssl_key.trim(), sec.ssl_ca.trim());
        let crl = sec.ssl_crl.trim();
        if !crl.is_empty() && ca.is_empty() {
            return Err(cfg_err(
                "[security] ssl-crl",
                "is set but ssl-ca is not, so no client certificate is ever verified",
                "set ssl-ca to the CA that issues MySQL client certificates, or remove ssl-crl",
            ));
        }
        let mysql_tls = match (cert.is_empty(), key.is_empty()) {
            (true, true) => {
                if !ca.is_empty() {
                    return Err(cfg_err(
                        "[security] ssl-ca",
                        "is set but ssl-cert and ssl-key are not, so TLS would not be offered",
                        "set ssl-cert and ssl-key (the server certificate for MySQL clients)",
                    ));
                }
                if sec.require_secure_transport {
                    return Err(cfg_err(
                        "[security] require-secure-transport",
                        "is on but TLS is not configured, so no client could log in",
                        "set ssl-cert and ssl-key, or turn require-secure-transport off",
                    ));
                }
                None
            }
            (false, true) => {
                return Err(cfg_err(
                    "[security] ssl-key",
                    "is empty while ssl-cert is set",
                    "set ssl-key to the certificate's private key",
                ))
            }
            (true, false) => {
                return Err(cfg_err(
                    "[security] ssl-cert",
                    "is empty while ssl-key is set",
                    "set ssl-cert to the server certificate",
                ))
            }
            (false, false) => Some(
                MysqlTls::load(MysqlTlsFiles {
                    ca: (!ca.is_empty()).then(|| PathBuf::from(ca)),
                    cert: PathBuf::from(cert),
                    key: PathBuf::from(key),
                    crl: (!crl.is_empty()).then(|| PathBuf::from(crl)),
                    policy: mysql_policy,
                })
                .map_err(Error::Config)?,
            ),
        };
        let cluster = SecurityConfig {
            ca_path: sec.cluster_ssl_ca.clone(),
            cert_path: sec.cluster_ssl_cert.clone(),
            key_path: sec.cluster_ssl_key.clone(),
            cert_allowed_cn: sec.cluster_verify_cn.clone(),
            tls_min_version: sec.tls_min_version,
            cipher_suites: sec.cipher_suites.clone(),
            crl_path: sec.crl_path.clone(),
            handshake_timeout: sec.handshake_timeout.clone(),
            max_handshakes: sec.max_handshakes,
            ..Default::default()
        };
        let cluster_tls = cluster
            .validate(Component::TidbServer)
            .map_err(|e| Error::Config(e.to_string()))?;
        match (&cluster_tls, sec.insecure) {
            (None, false) if self.store == "tikv" => {
                return Err(cfg_err(
                    "[security] cluster-ssl-ca",
                    "is not set, nor are cluster-ssl-cert and cluster-ssl-key: with --store=tikv \
                     the links to PD and TiKV would be plaintext, which tidb-server does only \
                     when asked to",
                    "set [security] cluster-ssl-ca, cluster-ssl-cert and cluster-ssl-key \
                     (--cluster-ssl-ca/--cluster-ssl-cert/--cluster-ssl-key; `tiox cert init` \
                     makes them), or start with --insecure to run without TLS on purpose",
                ));
            }
            (Some(_), true) => {
                return Err(cfg_err(
                    "[security] insecure (--insecure)",
                    "is set together with cluster-ssl-*: plaintext or TLS is ambiguous",
                    "remove --insecure to use TLS, or remove cluster-ssl-ca, cluster-ssl-cert \
                     and cluster-ssl-key to run without it",
                ));
            }
            _ => {}
        }
        let audit_log = match (sec.audit_log.trim(), self.data_dir.trim()) {
            ("", "") => None,
            ("", dir) => Some(PathBuf::from(dir).join(tiox_security::audit::FILE_NAME)),
            (path, _) => Some(PathBuf::from(path)),
        };
        Ok(Validated {
            mysql_tls,
            cluster_tls,
            audit_log,
            tls_versions,
            pd_endpoints,
            unistore_path: (self.store == "unistore" && !self.path.trim().is_empty())
                .then(|| PathBuf::from(self.path.trim())),
            data_dir: PathBuf::from(match self.data_dir.trim() {
                "" => self.path.trim(),
                d => d,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> TidbConfig {
        TidbConfig {
            data_dir: "/tmp/x".into(),
            ..Default::default()
        }
    }

    #[test]
    fn reads_tidb_key_names() {
        let c: TidbConfig = toml::from_str(
            r#"
            port = 4001
            [security]
            ssl-ca = "a"
            ssl-cert = "b"
            ssl-key = "c"
            require-secure-transport = true
            tls-version = "TLSv1.3"
            cluster-ssl-ca = "d"
            cluster-verify-cn = ["tidb"]
            [status]
            status-port = 10081
            "#,
        )
        .unwrap();
        assert_eq!(c.port, 4001);
        assert!(c.security.require_secure_transport);
        assert_eq!(c.status.status_port, 10081);
        assert!(toml::from_str::<TidbConfig>("[security]\nssl-cetr = 'x'").is_err());
    }

    #[test]
    fn refuses_half_configured_or_unusable_tls() {
        let mut c = base();
        c.security.ssl_cert = "/nonexistent.pem".into();
        assert!(c
            .validate()
            .is_err_and(|e| e.to_string().contains("ssl-key")));
        c.security.ssl_key = "/nonexistent-key.pem".into();
        let e = c.validate().err().unwrap().to_string();
        assert!(
            e.contains("ssl-cert") && e.contains("/nonexistent.pem"),
            "{e}"
        );
        let mut c = base();
        c.security.require_secure_transport = true;
        assert!(c
            .validate()
            .is_err_and(|e| e.to_string().contains("require-secure-transport")));
        let mut c = base();
        c.security.tls_version = "TLSv1.1".into();
        assert!(c.validate().is_err());
    }

    #[test]
    fn sample_file_in_etc_parses_and_validates() {
        let mut c: TidbConfig =
            toml::from_str(include_str!("../../../etc/tidb-server.toml")).unwrap();
        assert_eq!(c, TidbConfig::default(), "the sample shows the defaults");
        c.data_dir = "/tmp/x".into();
        assert!(c.validate().is_ok());
    }

    #[test]
    fn data_dir_is_required_by_unistore_only() {
        let mut c = TidbConfig::default();
        assert!(c
            .validate()
            .is_err_and(|e| e.to_string().contains("data-dir")));
        c.store = "tikv".into();
        c.path = "127.0.0.1:2379".into();
        c.security.insecure = true;
        assert!(c.validate().is_ok());
    }

    #[test]
    fn unistore_keeps_accounts_beside_its_store_unless_data_dir_says_otherwise() {
        let mut c = TidbConfig {
            path: "/var/lib/tidb".into(),
            ..Default::default()
        };
        let v = c.validate().ok().unwrap();
        assert_eq!(v.unistore_path, Some(PathBuf::from("/var/lib/tidb")));
        assert_eq!(v.data_dir, PathBuf::from("/var/lib/tidb"));
        c.data_dir = "/etc/tidb".into();
        assert_eq!(
            c.validate().ok().unwrap().data_dir,
            PathBuf::from("/etc/tidb")
        );
        let v = base().validate().ok().unwrap();
        assert_eq!(v.unistore_path, None, "no path: a temporary store");
    }

    #[test]
    fn a_cluster_without_tls_needs_insecure() {
        let mut c = base();
        c.store = "tikv".into();
        c.path = "127.0.0.1:2379".into();
        let e = c.validate().err().unwrap().to_string();
        for needle in ["cluster-ssl-ca", "cluster-ssl-key", "--insecure"] {
            assert!(e.contains(needle), "{needle} in {e}");
        }
        c.security.insecure = true;
        assert!(c.validate().is_ok());
        // The embedded store reaches no cluster: nothing to ask for.
        let mut c = base();
        c.store = "unistore".into();
        assert!(c.validate().is_ok(), "{:?}", c.validate().err());
    }

    #[test]
    fn store_and_path_are_checked() {
        let mut c = base();
        c.store = "tikv".into();
        assert!(c.validate().is_err());
        c.path = "127.0.0.1:2379,pd2:2379".into();
        c.security.insecure = true;
        assert_eq!(c.validate().ok().unwrap().pd_endpoints.len(), 2);
        c.store = "mocktikv".into();
        assert!(c.validate().is_err());
    }
}
