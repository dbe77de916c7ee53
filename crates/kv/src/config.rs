//! `tikv-server` configuration: TiKV's TOML layout and flags, typed, with
//! `validate()`.
//!
//! ```toml
//! [server]
//! addr = "127.0.0.1:20160"          # --addr
//! advertise-addr = ""               # --advertise-addr (default: addr)
//! status-addr = "127.0.0.1:20180"   # --status-addr
//! [pd]
//! endpoints = ["127.0.0.1:2379"]    # --pd a,b,c
//! [storage]
//! data-dir = "./tikv"               # --data-dir
//! [storage.block-cache]
//! capacity = "64MiB"
//! [coprocessor]                     # when regions split (TiKV's keys)
//! region-max-size = "48MiB"             # TiKV: 144MiB (see etc/tikv.toml)
//! region-split-size = "32MiB"
//! region-max-keys = 1440000
//! region-split-keys = 960000
//! [raftstore]
//! split-region-check-tick-interval = "10s"
//! [security]                        # --ca-path --cert-path --key-path
//! ca-path = ""
//! cert-path = ""
//! key-path = ""
//! cert-allowed-cn = []
//! ```
//!
//! Keys tiox does not know (TiKV has many tuning knobs) are logged and
//! ignored, except in `[security]`, where an unknown key is an error: a typo
//! there must not leave TLS off.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use tiox_security::{Component, SecurityConfig, TlsSettings};

/// `[server]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct ServerSection {
    /// Listen address for gRPC (clients and peers).
    pub addr: String,
    /// Address advertised to PD and clients (default: `addr`).
    pub advertise_addr: String,
    /// Listen address of the status port (/metrics, /status).
    pub status_addr: String,
    /// Status address advertised to PD (default: `status-addr`).
    pub advertise_status_addr: String,
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            addr: "127.0.0.1:20160".into(),
            advertise_addr: String::new(),
            status_addr: "127.0.0.1:20180".into(),
            advertise_status_addr: String::new(),
        }
    }
}

/// `[pd]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct PdSection {
    /// PD endpoints (`host:port`, `https://host:port`).
    pub endpoints: Vec<String>,
}

impl Default for PdSection {
    fn default() -> Self {
        PdSection {
            endpoints: vec!["127.0.0.1:2379".into()],
        }
    }
}

/// `[storage.block-cache]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct BlockCache {
    /// Cache size: bytes, or a string with a unit ("64MiB", "1GB").
    pub capacity: toml::Value,
}

impl Default for BlockCache {
    fn default() -> Self {
        BlockCache {
            capacity: toml::Value::String("64MiB".into()),
        }
    }
}

/// `[storage]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct StorageSection {
    /// Data directory.
    pub data_dir: String,
    /// Block cache.
    pub block_cache: BlockCache,
}

impl Default for StorageSection {
    fn default() -> Self {
        StorageSection {
            data_dir: "./tikv".into(),
            block_cache: BlockCache::default(),
        }
    }
}

/// `[coprocessor]`: region split thresholds, as TiKV spells them. The size
/// defaults are a third of TiKV's: a region's snapshot is built in memory
/// by the Raft thread, which smaller regions keep short.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct CoprocessorSection {
    /// A region larger than this is split (size with a unit, or bytes).
    pub region_max_size: toml::Value,
    /// ... into pieces of about this size.
    pub region_split_size: toml::Value,
    /// A region with more keys than this (MVCC versions count) is split.
    pub region_max_keys: u64,
    /// ... into pieces of about this many keys.
    pub region_split_keys: u64,
}

impl Default for CoprocessorSection {
    fn default() -> Self {
        CoprocessorSection {
            region_max_size: toml::Value::String("48MiB".into()),
            region_split_size: toml::Value::String("32MiB".into()),
            region_max_keys: 1_440_000,
            region_split_keys: 960_000,
        }
    }
}

/// `[raftstore]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct RaftstoreSection {
    /// How often leaders check whether their regions must split ("10s",
    /// "500ms"; "0s" turns the check off).
    pub split_region_check_tick_interval: String,
}

impl Default for RaftstoreSection {
    fn default() -> Self {
        RaftstoreSection {
            split_region_check_tick_interval: "10s".into(),
        }
    }
}

/// Parses "10s", "500ms", "2m", "1h".
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("\"{s}\" is not a duration (e.g. \"10s\", \"500ms\")"))?;
    let ms = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        other => return Err(format!("unknown duration unit \"{other}\" in \"{s}\"")),
    };
    Ok(std::time::Duration::from_millis(n.saturating_mul(ms)))
}

/// The whole file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct TikvConfig {
    /// `[server]`.
    pub server: ServerSection,
    /// `[pd]`.
    pub pd: PdSection,
    /// `[storage]`.
    pub storage: StorageSection,
    /// `[coprocessor]` (region split thresholds).
    pub coprocessor: CoprocessorSection,
    /// `[raftstore]`.
    pub raftstore: RaftstoreSection,
    /// `[security]`.
    pub security: SecurityConfig,
}

/// A checked configuration, ready to run.
#[derive(Clone, Debug)]
pub struct Validated {
    /// gRPC listen address.
    pub addr: String,
    /// Advertised gRPC address.
    pub advertise_addr: String,
    /// Status listen address.
    pub status_addr: String,
    /// Advertised status address.
    pub advertise_status_addr: String,
    /// PD endpoints.
    pub pd_endpoints: Vec<String>,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Block cache bytes.
    pub block_cache_bytes: u64,
    /// TLS, if configured.
    pub tls: Option<TlsSettings>,
    /// The security audit log (`[security] audit-log`).
    pub audit_log: PathBuf,
    /// When regions split.
    pub split: crate::raftstore::split::SplitConfig,
}

/// Parses "64MiB", "1GB", "512KB", or a plain number of bytes.
pub fn parse_size(v: &toml::Value) -> Result<u64, String> {
    match v {
        toml::Value::Integer(i) if *i >= 0 => Ok(*i as u64),
        toml::Value::String(s) => {
            let s = s.trim();
            let split = s
                .find(|c: char| !c.is_ascii_digit() && c != '.')
                .unwrap_or(s.len());
            let (num, unit) = s.split_at(split);
            let n: f64 = num.parse().map_err(|_| format!("\"{s}\" is not a size"))?;
            let mult: u64 = match unit.trim().to_ascii_uppercase().as_str() {
                "" | "B" => 1,
                "KB" | "KIB" | "K" => 1 << 10,
                "MB" | "MIB" | "M" => 1 << 20,
                "GB" | "GIB" | "G" => 1 << 30,
                "TB" | "TIB" | "T" => 1 << 40,
                other => return Err(format!("unknown size unit \"{other}\" in \"{s}\"")),
            };
            Ok((n * mult as f64) as u64)
        }
        other => Err(format!("{other} is not a size")),
    }
}

/// Keys in `value` that `TikvConfig` does not use (dotted paths).
pub fn unknown_keys(value: &toml::Value) -> Vec<String> {
    const KNOWN: &[&str] = &[
        "server",
        "server.addr",
        "server.advertise-addr",
        "server.status-addr",
        "server.advertise-status-addr",
        "pd",
        "pd.endpoints",
        "storage",
        "storage.data-dir",
        "storage.block-cache",
        "storage.block-cache.capacity",
        "coprocessor",
        "coprocessor.region-max-size",
        "coprocessor.region-split-size",
        "coprocessor.region-max-keys",
        "coprocessor.region-split-keys",
        "raftstore",
        "raftstore.split-region-check-tick-interval",
        "security",
    ];
    fn walk(v: &toml::Value, prefix: &str, out: &mut Vec<String>) {
        if let toml::Value::Table(t) = v {
            for (k, v) in t {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                if path.starts_with("security") {
                    continue;
                }
                if !KNOWN.contains(&path.as_str()) {
                    out.push(path);
                } else {
                    walk(v, &path, out);
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(value, "", &mut out);
    out
}

impl TikvConfig {
    /// Reads a TOML file; unknown keys outside `[security]` are returned for
    /// the caller to log.
    pub fn from_file(path: &std::path::Path) -> Result<(TikvConfig, Vec<String>), String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("tikv-server: --config {}: {e}", path.display()))?;
        let value: toml::Value = toml::from_str(&text)
            .map_err(|e| format!("tikv-server: --config {}: {e}", path.display()))?;
        let unknown = unknown_keys(&value);
        let cfg: TikvConfig = value
            .try_into()
            .map_err(|e| format!("tikv-server: --config {}: {e}", path.display()))?;
        Ok((cfg, unknown))
    }

    /// Checks everything and loads the TLS material.
    pub fn validate(&self) -> Result<Validated, String> {
        let tls = self
            .security
            .validate(Component::TikvServer)
            .map_err(|e| e.to_string())?;
        let check_addr = |key: &str, v: &str| -> Result<(), String> {
            match v.rsplit_once(':') {
                Some((h, p)) if !h.is_empty() && p.parse::<u16>().is_ok() => Ok(()),
                _ => Err(format!(
                    "tikv-server: [server] {key} = \"{v}\": expected host:port"
                )),
            }
        };
        check_addr("addr", &self.server.addr)?;
        check_addr("status-addr", &self.server.status_addr)?;
        let advertise_addr = if self.server.advertise_addr.is_empty() {
            self.server.addr.clone()
        } else {
            self.server.advertise_addr.clone()
        };
        check_addr("advertise-addr", &advertise_addr)?;
        let advertise_status_addr = if self.server.advertise_status_addr.is_empty() {
            self.server.status_addr.clone()
        } else {
            self.server.advertise_status_addr.clone()
        };
        if advertise_addr.starts_with("0.0.0.0:") {
            return Err("tikv-server: [server] advertise-addr: 0.0.0.0 cannot be dialled; set --advertise-addr to this host's address".into());
        }
        if self.pd.endpoints.is_empty() {
            return Err("tikv-server: [pd] endpoints is empty; set --pd".into());
        }
        for e in &self.pd.endpoints {
            tiox_client::channel::authority(e, tls.is_some())
                .map_err(|m| format!("tikv-server: [pd] endpoints: {m}"))?;
        }
        if let Some(t) = &tls {
            // The advertised host must be covered by our certificate, or
            // every peer and client will refuse us.
            let host = advertise_addr
                .rsplit_once(':')
                .map_or("", |(h, _)| h)
                .trim_matches(['[', ']']);
            let leaf = &t.source.current().leaf;
            if !leaf.covers_host(host) {
                return Err(format!(
                    "tikv-server: [security] cert-path = \"{}\": the certificate's SANs ({}) do not cover the advertised address {host}; clients and peers would refuse it. Fix: re-issue the certificate with {host} in --hosts, or advertise a listed name (--advertise-addr)",
                    t.source.files().cert.display(),
                    leaf.sans_text()
                ));
            }
        }
        let block_cache_bytes = parse_size(&self.storage.block_cache.capacity)
            .map_err(|e| format!("tikv-server: [storage.block-cache] capacity: {e}"))?;
        let cop = &self.coprocessor;
        let size = |key: &str, v: &toml::Value| {
            parse_size(v).map_err(|e| format!("tikv-server: [coprocessor] {key}: {e}"))
        };
        let split = crate::raftstore::split::SplitConfig {
            region_max_size: size("region-max-size", &cop.region_max_size)?,
            region_split_size: size("region-split-size", &cop.region_split_size)?,
            region_max_keys: cop.region_max_keys,
            region_split_keys: cop.region_split_keys,
            check_interval: parse_duration(&self.raftstore.split_region_check_tick_interval)
                .map_err(|e| {
                    format!("tikv-server: [raftstore] split-region-check-tick-interval: {e}")
                })?,
        };
        if split.region_split_size == 0
            || split.region_split_size > split.region_max_size
            || split.region_split_keys == 0
            || split.region_split_keys > split.region_max_keys
        {
            return Err(format!(
                "tikv-server: [coprocessor] region-split-size ({}) and region-split-keys ({}) must be non-zero and at most region-max-size ({}) and region-max-keys ({})",
                split.region_split_size, split.region_split_keys, split.region_max_size, split.region_max_keys
            ));
        }
        Ok(Validated {
            split,
            addr: self.server.addr.clone(),
            advertise_addr,
            status_addr: self.server.status_addr.clone(),
            advertise_status_addr,
            pd_endpoints: self.pd.endpoints.clone(),
            data_dir: PathBuf::from(&self.storage.data_dir),
            block_cache_bytes,
            tls,
            audit_log: self
                .security
                .audit_log_path(Path::new(&self.storage.data_dir)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tikv_toml_layout_parses_and_unknown_knobs_are_reported() {
        let v: toml::Value = toml::from_str(
            r#"
[server]
addr = "0.0.0.0:20160"
advertise-addr = "10.0.0.1:20160"
grpc-concurrency = 4
[pd]
endpoints = ["10.0.0.2:2379"]
[storage]
data-dir = "/data/tikv"
[storage.block-cache]
capacity = "1GB"
[raftstore]
sync-log = true
split-region-check-tick-interval = "500ms"
[coprocessor]
region-max-size = "4MiB"
region-split-size = "2MiB"
region-max-keys = 400
region-split-keys = 200
[security]
insecure = true
"#,
        )
        .unwrap();
        assert_eq!(
            unknown_keys(&v),
            vec![
                "raftstore.sync-log".to_string(),
                "server.grpc-concurrency".to_string()
            ]
        );
        let c: TikvConfig = v.try_into().unwrap();
        let v = c.validate().unwrap();
        assert_eq!(v.block_cache_bytes, 1 << 30);
        assert_eq!(v.split.region_max_size, 4 << 20);
        assert_eq!(v.split.region_split_size, 2 << 20);
        assert_eq!(
            (v.split.region_max_keys, v.split.region_split_keys),
            (400, 200)
        );
        assert_eq!(
            v.split.check_interval,
            std::time::Duration::from_millis(500)
        );
        assert_eq!(v.advertise_addr, "10.0.0.1:20160");
        assert!(v.tls.is_none());
    }

    #[test]
    fn https_pd_endpoint_without_tls_is_an_error() {
        let c = TikvConfig {
            pd: PdSection {
                endpoints: vec!["https://127.0.0.1:2379".into()],
            },
            security: SecurityConfig::insecure(),
            ..Default::default()
        };
        let e = c.validate().unwrap_err();
        assert!(
            e.contains("[pd] endpoints") && e.contains("https://"),
            "{e}"
        );
    }

    #[test]
    fn split_sizes_larger_than_the_maximum_are_an_error() {
        let c: TikvConfig = toml::from_str(
            "[coprocessor]\nregion-max-size = \"1MiB\"\nregion-split-size = \"2MiB\"\n\
             [security]\ninsecure = true\n",
        )
        .unwrap();
        let e = c.validate().unwrap_err();
        assert!(e.contains("region-split-size"), "{e}");
    }

    #[test]
    fn unknown_security_key_is_an_error() {
        let e = toml::from_str::<TikvConfig>("[security]\nca_path = \"x\"\n").unwrap_err();
        assert!(e.to_string().contains("ca_path"), "{e}");
    }
}
