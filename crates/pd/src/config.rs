//! `pd-server`'s configuration: one typed struct read from the TOML file
//! (`--config`), overridden by flags, checked by [`PdConfig::validate`]
//! before anything listens.
//!
//! Rules checked at startup: every URL parses as `scheme://host:port`; with
//! `[security]` set every URL is `https://`, without it every URL is
//! `http://` (a cluster never mixes TLS and plaintext); the `[security]`
//! table itself is validated by `tiox-security` (all three paths or none,
//! files readable and consistent).

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;
use tiox_security::{Component, SecurityConfig, TlsSettings};

/// A startup configuration problem: names the key and the fix.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pd-server: {}", self.0)
    }
}

impl std::error::Error for ConfigError {}

/// Replication settings (`[replication]`).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct ReplicationConfig {
    /// Replicas per region PD aims for (3).
    pub max_replicas: u32,
    /// PD's own Raft log (between PD members): applied entries kept before
    /// older ones are compacted; a member further behind gets a snapshot
    /// of the state instead (10000).
    pub raft_log_keep_entries: u64,
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        ReplicationConfig {
            max_replicas: 3,
            raft_log_keep_entries: crate::replication::DEFAULT_KEEP_ENTRIES,
        }
    }
}

/// Scheduling settings (`[schedule]`).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct ScheduleConfig {
    /// How long a store may be silent, or a peer reported down by its
    /// region's leader, before PD replaces its replicas on other stores
    /// ("60s"; PD's own default is "30m", which keeps replicas through
    /// long restarts at the cost of running under-replicated meanwhile).
    pub max_store_down_time: String,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        ScheduleConfig {
            max_store_down_time: "60s".into(),
        }
    }
}

/// Parses "30m", "60s", "500ms", "1h" into milliseconds.
pub fn parse_duration_ms(s: &str) -> std::result::Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("\"{s}\" is not a duration (e.g. \"30m\", \"60s\")"))?;
    let unit_ms = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        other => return Err(format!("unknown duration unit \"{other}\" in \"{s}\"")),
    };
    Ok(n.saturating_mul(unit_ms))
}

/// `pd-server`'s configuration, as in PD's TOML file.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct PdConfig {
    /// This member's name, unique in the PD cluster ("pd").
    pub name: String,
    /// Where PD keeps its state ("default.{name}").
    pub data_dir: String,
    /// URLs to serve clients on, comma separated ("http://127.0.0.1:2379").
    pub client_urls: String,
    /// URLs to serve PD peers on ("http://127.0.0.1:2380").
    pub peer_urls: String,
    /// Client URLs told to others (default: `client-urls`).
    pub advertise_client_urls: String,
    /// Peer URLs told to others (default: `peer-urls`).
    pub advertise_peer_urls: String,
    /// The initial members, `name=peer-url,...` (default: this one alone).
    pub initial_cluster: String,
    /// Client URLs of an existing cluster to join.
    pub join: String,
    /// Replication settings.
    pub replication: ReplicationConfig,
    /// Scheduling settings.
    pub schedule: ScheduleConfig,
    /// Mutual TLS for the client and peer ports.
    pub security: SecurityConfig,
}

impl Default for PdConfig {
    fn default() -> Self {
        PdConfig {
            name: "pd".into(),
            data_dir: String::new(),
            client_urls: "http://127.0.0.1:2379".into(),
            peer_urls: "http://127.0.0.1:2380".into(),
            advertise_client_urls: String::new(),
            advertise_peer_urls: String::new(),
            initial_cluster: String::new(),
            join: String::new(),
            replication: ReplicationConfig::default(),
            schedule: ScheduleConfig::default(),
            security: SecurityConfig::default(),
        }
    }
}

/// `http://` or `https://`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// Plaintext.
    Http,
    /// TLS.
    Https,
}

/// A parsed `scheme://host:port` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Url {
    /// The scheme.
    pub scheme: Scheme,
    /// Host name or IP (IPv6 without brackets).
    pub host: String,
    /// Port.
    pub port: u16,
}

impl Url {
    /// Parses one URL; `key` names the setting in errors. A URL without a
    /// scheme is `http://`, as in PD.
    pub fn parse(s: &str, key: &str) -> Result<Url, ConfigError> {
        let s = s.trim();
        let (scheme, rest) = match s.split_once("://") {
            Some(("http", rest)) => (Scheme::Http, rest),
            Some(("https", rest)) => (Scheme::Https, rest),
            Some((other, _)) => {
                return Err(ConfigError(format!(
                    "{key}: \"{s}\" has scheme \"{other}\"; use http:// or https://"
                )))
            }
            None => (Scheme::Http, s),
        };
        let rest = rest.trim_end_matches('/');
        let bad = || {
            ConfigError(format!(
                "{key}: \"{s}\" is not a URL of the form scheme://host:port"
            ))
        };
        let (host, port) = rest.rsplit_once(':').ok_or_else(bad)?;
        let port: u16 = port.parse().map_err(|_| bad())?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || host.contains('/') {
            return Err(bad());
        }
        Ok(Url {
            scheme,
            host: host.to_string(),
            port,
        })
    }

    /// `host:port` for binding or dialling (IPv6 bracketed).
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
        };
        write!(f, "{scheme}://{}", self.authority())
    }
}

/// Parses a comma-separated list of URLs (at least one).
pub fn parse_urls(list: &str, key: &str) -> Result<Vec<Url>, ConfigError> {
    let urls: Vec<Url> = list
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| Url::parse(s, key))
        .collect::<Result<_, _>>()?;
    if urls.is_empty() {
        return Err(ConfigError(format!(
            "{key} is empty; give at least one URL"
        )));
    }
    Ok(urls)
}

/// A checked configuration, ready to serve.
#[derive(Clone, Debug)]
pub struct Validated {
    /// The configuration as given (with defaults filled in).
    pub config: PdConfig,
    /// Where state lives.
    pub data_dir: PathBuf,
    /// Listen URLs for clients.
    pub client_urls: Vec<Url>,
    /// Listen URLs for peers.
    pub peer_urls: Vec<Url>,
    /// Advertised client URLs.
    pub advertise_client_urls: Vec<Url>,
    /// Advertised peer URLs.
    pub advertise_peer_urls: Vec<Url>,
    /// TLS material, or `None` for a (loudly logged) plaintext cluster.
    pub tls: Option<TlsSettings>,
    /// The initial members (name, peer URL); this member alone by default.
    pub initial_cluster: Vec<(String, Url)>,
    /// Client URLs of a running cluster to join (`--join`).
    pub join: Vec<Url>,
    /// Whether PD state is replicated with Raft: `initial-cluster` or
    /// `join` was given. Without either, PD runs as a single member with no
    /// Raft at all (and cannot be joined later).
    pub replicated: bool,
    /// `[schedule] max-store-down-time`, in milliseconds.
    pub max_store_down_ms: u64,
}

impl PdConfig {
    /// Reads a TOML file.
    pub fn from_file(path: &std::path::Path) -> Result<PdConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError(format!("--config {}: cannot read it: {e}", path.display()))
        })?;
        Self::from_toml(&text)
            .map_err(|e| ConfigError(format!("--config {}: {}", path.display(), e.0)))
    }

    /// Parses TOML text.
    pub fn from_toml(text: &str) -> Result<PdConfig, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError(e.to_string()))
    }

    /// Fills defaults and checks everything; loads the TLS material.
    pub fn validate(mut self) -> Result<Validated, ConfigError> {
        if self.name.trim().is_empty() {
            return Err(ConfigError("name (--name) must not be empty".into()));
        }
        if self.data_dir.trim().is_empty() {
            self.data_dir = format!("default.{}", self.name);
        }
        if self.advertise_client_urls.trim().is_empty() {
            self.advertise_client_urls = self.client_urls.clone();
        }
        if self.advertise_peer_urls.trim().is_empty() {
            self.advertise_peer_urls = self.peer_urls.clone();
        }
        if self.replication.max_replicas == 0 {
            return Err(ConfigError(
                "[replication] max-replicas must be at least 1".into(),
            ));
        }
        let max_store_down_ms = parse_duration_ms(&self.schedule.max_store_down_time)
            .map_err(|e| ConfigError(format!("[schedule] max-store-down-time: {e}")))?;
        let client_urls = parse_urls(&self.client_urls, "client-urls (--client-urls)")?;
        let peer_urls = parse_urls(&self.peer_urls, "peer-urls (--peer-urls)")?;
        let advertise_client_urls = parse_urls(
            &self.advertise_client_urls,
            "advertise-client-urls (--advertise-client-urls)",
        )?;
        let advertise_peer_urls = parse_urls(
            &self.advertise_peer_urls,
            "advertise-peer-urls (--advertise-peer-urls)",
        )?;
        let mut initial = Vec::new();
        for entry in self
            .initial_cluster
            .split(',')
            .filter(|s| !s.trim().is_empty())
        {
            let (name, url) = entry.split_once('=').ok_or_else(|| {
                ConfigError(format!(
                    "initial-cluster (--initial-cluster): \"{entry}\" is not name=peer-url"
                ))
            })?;
            initial.push((
                name.trim().to_string(),
                Url::parse(url, "initial-cluster (--initial-cluster)")?,
            ));
        }
        let join = if self.join.trim().is_empty() {
            Vec::new()
        } else {
            parse_urls(&self.join, "join (--join)")?
        };
        let tls = self
            .security
            .validate(Component::PdServer)
            .map_err(|e| ConfigError(e.to_string()))?;
        let want = if tls.is_some() {
            Scheme::Https
        } else {
            Scheme::Http
        };
        let all = [
            ("client-urls", &client_urls),
            ("peer-urls", &peer_urls),
            ("advertise-client-urls", &advertise_client_urls),
            ("advertise-peer-urls", &advertise_peer_urls),
            ("join", &join),
        ];
        for (key, urls) in all {
            for url in urls {
                if url.scheme != want {
                    return Err(ConfigError(mismatch(key, url, want)));
                }
            }
        }
        for (_, url) in &initial {
            if url.scheme != want {
                return Err(ConfigError(mismatch("initial-cluster", url, want)));
            }
        }
        if initial.is_empty() {
            initial.push((self.name.clone(), advertise_peer_urls[0].clone()));
        }
        if !initial.iter().any(|(n, _)| *n == self.name) {
            return Err(ConfigError(format!(
                "initial-cluster (--initial-cluster) does not list this member \"{}\"; add \
                 \"{}={}\"",
                self.name, self.name, advertise_peer_urls[0]
            )));
        }
        let mut names: Vec<&str> = initial.iter().map(|(n, _)| n.as_str()).collect();
        names.sort_unstable();
        if names.windows(2).any(|w| w[0] == w[1]) {
            return Err(ConfigError(
                "initial-cluster (--initial-cluster) lists a member name twice".into(),
            ));
        }
        let replicated = !self.initial_cluster.trim().is_empty() || !join.is_empty();
        if !join.is_empty() && initial.len() > 1 {
            return Err(ConfigError(
                "join (--join) and an initial-cluster with other members are both given: a new \
                 member joins a running cluster with --join alone; the members that start the \
                 cluster use --initial-cluster"
                    .into(),
            ));
        }
        Ok(Validated {
            data_dir: PathBuf::from(&self.data_dir),
            config: self,
            client_urls,
            peer_urls,
            advertise_client_urls,
            advertise_peer_urls,
            tls,
            initial_cluster: initial,
            join,
            replicated,
            max_store_down_ms,
        })
    }
}

fn mismatch(key: &str, url: &Url, want: Scheme) -> String {
    match want {
        Scheme::Https => format!(
            "{key} has \"{url}\" but TLS is configured ([security] cacert-path/cert-path/key-path \
             or --cacert/--cert/--key): with TLS every URL must be https://; change it to \
             https://{}",
            url.authority()
        ),
        Scheme::Http => format!(
            "{key} has \"{url}\" but TLS is not configured: an https:// URL needs [security] \
             cacert-path, cert-path and key-path (or --cacert/--cert/--key); set them, or use \
             http://{}",
            url.authority()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_with_pd_security_spelling_parses() {
        let c = PdConfig::from_toml(
            r#"
name = "pd1"
client-urls = "https://127.0.0.1:2379"
[security]
cacert-path = "/x/ca.pem"
cert-path = "/x/pd.pem"
key-path = "/x/pd-key.pem"
cert-allowed-cn = ["tidb", "tikv"]
"#,
        )
        .unwrap();
        assert_eq!(c.name, "pd1");
        assert_eq!(c.security.ca_path, "/x/ca.pem");
        assert_eq!(c.security.cert_allowed_cn.len(), 2);
    }

    #[test]
    fn sample_config_in_etc_parses() {
        let c = PdConfig::from_toml(include_str!("../../../etc/pd.toml")).unwrap();
        assert_eq!(c.security.ca_path, "/path/to/ca.pem");
        assert_eq!(c.replication.max_replicas, 3);
    }

    #[test]
    fn unknown_key_is_an_error_naming_it() {
        let e = PdConfig::from_toml("client-url = \"x\"").unwrap_err();
        assert!(e.0.contains("client-url"), "{e}");
    }

    #[test]
    fn https_url_without_tls_is_a_startup_error() {
        let c = PdConfig {
            client_urls: "https://127.0.0.1:2379".into(),
            security: SecurityConfig::insecure(),
            ..Default::default()
        };
        let e = c.validate().unwrap_err();
        assert!(e.0.contains("TLS is not configured"), "{e}");
        assert!(e.0.contains("client-urls"), "{e}");
    }

    #[test]
    fn url_without_scheme_is_http_and_bad_urls_are_refused() {
        assert_eq!(
            Url::parse("127.0.0.1:2379", "k").unwrap().scheme,
            Scheme::Http
        );
        assert!(Url::parse("ftp://a:1", "k").is_err());
        assert!(Url::parse("http://a", "k").is_err());
        assert_eq!(
            Url::parse("http://[::1]:80", "k").unwrap().authority(),
            "[::1]:80"
        );
    }

    #[test]
    fn initial_cluster_must_list_this_member() {
        let c = PdConfig {
            initial_cluster: "pd2=http://127.0.0.1:2382,pd3=http://127.0.0.1:2384".into(),
            security: SecurityConfig::insecure(),
            ..Default::default()
        };
        assert!(c.validate().unwrap_err().0.contains("does not list"));
        let c = PdConfig {
            initial_cluster: "pd=http://127.0.0.1:2380,pd2=http://127.0.0.1:2382".into(),
            security: SecurityConfig::insecure(),
            ..Default::default()
        };
        assert_eq!(c.validate().unwrap().initial_cluster.len(), 2);
    }
}
