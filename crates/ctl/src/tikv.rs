//! `tikv-ctl`: a client of ONE TiKV (`--host`), over mutual TLS with the
//! cluster's client certificate, as the TLS how-to runs it:
//!
//! ```text
//! tikv-ctl --host="127.0.0.1:20160" --ca-path="ca.pem" --cert-path="client.pem" --key-path="client-key.pem" [command]
//! ```
//!
//! Commands use the store's debug API (HTTP JSON on the gRPC port) and, for
//! raw reads and writes, the `tikvpb.Tikv` gRPC service with the region the
//! store reports for the key. Output is JSON.

use std::sync::Arc;

use serde_json::{json, Value};
use tiox_proto::kvrpcpb;
use tiox_proto::tikvpb::tikv_client::TikvClient;
use tiox_security::{ClientTls, Component, SecurityConfig};

use crate::error::CtlError;
use crate::http::{get, Endpoint, Scheme};

/// Usage text.
pub const USAGE: &str = "\
usage: tikv-ctl --host HOST:PORT [--ca-path CA --cert-path CERT --key-path KEY] [--pd PD] [COMMAND]

With no command, connects and prints the store's identity.
Commands:
  store                              the store's id, version and counts
  region -r ID | raft region -r ID   one region: peers, leader, epoch, applied index
  region --all                       every region on the store
  region-properties -r ID            keys and bytes per column family, MVCC versions
  mvcc -k KEY                        lock, write records and values of a key
  raw-get -k KEY                     a raw KV value
  raw-put -k KEY -v VALUE            writes a raw KV value
  raw-scan [--from K] [--to K] [--limit N]
  split-region -r ID -k KEY [--raw]  splits the region (led by this store) at a
                                     user key (--raw: a raw KV key); prints the
                                     regions it produced
  metrics                            the store's metrics (Prometheus text)";

/// A parsed command line.
#[derive(Debug, Default)]
pub struct Args {
    /// `--host`.
    pub host: Option<String>,
    /// `--ca-path`.
    pub ca: Option<String>,
    /// `--cert-path`.
    pub cert: Option<String>,
    /// `--key-path`.
    pub key: Option<String>,
    /// `--pd` (accepted for compatibility; commands here need only --host).
    pub pd: Option<String>,
    /// The command words and their options.
    pub rest: Vec<String>,
}

/// Parses `--flag value`, `--flag=value` and the command.
pub fn parse(argv: &[String]) -> Result<Args, CtlError> {
    let mut a = Args::default();
    let mut it = argv.iter().peekable();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| -> Result<String, CtlError> {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .ok_or_else(|| CtlError::Usage(format!("{name} needs a value\n{USAGE}")))
        };
        match flag.as_str() {
            "--host" => a.host = Some(value("--host")?),
            "--ca-path" => a.ca = Some(value("--ca-path")?),
            "--cert-path" => a.cert = Some(value("--cert-path")?),
            "--key-path" => a.key = Some(value("--key-path")?),
            "--pd" => a.pd = Some(value("--pd")?),
            "-h" | "--help" => return Err(CtlError::Usage(USAGE.into())),
            _ => {
                a.rest.push(arg.clone());
                a.rest.extend(it.by_ref().cloned());
            }
        }
    }
    Ok(a)
}

fn opt(rest: &[String], names: &[&str]) -> Option<String> {
    let mut it = rest.iter();
    while let Some(a) = it.next() {
        for n in names {
            if a == n {
                return it.next().cloned();
            }
            if let Some(v) = a.strip_prefix(&format!("{n}=")) {
                return Some(v.to_string());
            }
        }
    }
    None
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}

/// The tool, connected to one store.
pub struct TikvCtl {
    endpoint: Endpoint,
    tls: Option<Arc<ClientTls>>,
}

impl TikvCtl {
    /// Validates flags and certificates.
    pub fn new(a: &Args) -> Result<TikvCtl, CtlError> {
        let host = a
            .host
            .clone()
            .ok_or_else(|| CtlError::Usage(format!("--host is required\n{USAGE}")))?;
        let given = [&a.ca, &a.cert, &a.key]
            .iter()
            .filter(|x| x.is_some())
            .count();
        let tls = match given {
            0 => None,
            3 => {
                let cfg = SecurityConfig::from_paths(
                    a.ca.as_deref().unwrap_or_default(),
                    a.cert.as_deref().unwrap_or_default(),
                    a.key.as_deref().unwrap_or_default(),
                );
                let settings = cfg
                    .validate(Component::TikvCtl)
                    .map_err(|e| CtlError::Config(e.to_string()))?
                    .ok_or_else(|| CtlError::Config("tikv-ctl: TLS settings missing".into()))?;
                Some(Arc::new(ClientTls::with_alpn(settings, vec![b"h2".to_vec(), b"http/1.1".to_vec()]).map_err(|e| CtlError::Config(e.to_string()))?))
            }
            _ => {
                return Err(CtlError::Config(
                    "tikv-ctl: give all three of --ca-path, --cert-path and --key-path (or none for a plaintext store)".into(),
                ))
            }
        };
        let mut endpoint = Endpoint::parse(&host)?;
        endpoint.scheme = if tls.is_some() {
            Scheme::Https
        } else {
            Scheme::Http
        };
        Ok(TikvCtl { endpoint, tls })
    }

    async fn json(&self, path: &str) -> Result<Value, CtlError> {
        let (status, body) = get(&self.endpoint, self.tls.as_ref(), path)
            .await
            .map_err(|e| self.connect_error(e))?;
        if status == 200 {
            serde_json::from_slice(&body)
                .map_err(|e| CtlError::Config(format!("TiKV answered non-JSON: {e}")))
        } else {
            Err(CtlError::Http {
                status,
                body: String::from_utf8_lossy(&body).into(),
            })
        }
    }

    fn connect_error(&self, e: CtlError) -> CtlError {
        match e {
            CtlError::Connect { reason, .. } => {
                let hint = if self.tls.is_none() {
                    " (if the store has TLS on, give --ca-path, --cert-path and --key-path with the cluster's client certificate)"
                } else {
                    ""
                };
                CtlError::Connect {
                    endpoint: format!("TiKV at {}", self.endpoint),
                    reason: format!("{reason}{hint}"),
                }
            }
            other => other,
        }
    }

    async fn grpc(&self) -> Result<TikvClient<tonic::transport::Channel>, CtlError> {
        let ch = tiox_client::channel::channel(&self.endpoint.authority(), self.tls.clone())
            .map_err(|e| CtlError::Config(e.to_string()))?;
        Ok(TikvClient::new(ch))
    }

    async fn context_for(&self, key: &[u8]) -> Result<kvrpcpb::Context, CtlError> {
        let r = self
            .json(&format!("/debug/region-for-key/{}?mode=raw", hex(key)))
            .await?;
        let num = |v: &Value| v.as_u64().unwrap_or(0);
        Ok(kvrpcpb::Context {
            region_id: num(&r["id"]),
            region_epoch: Some(tiox_proto::metapb::RegionEpoch {
                conf_ver: num(&r["epoch"]["conf_ver"]),
                version: num(&r["epoch"]["version"]),
            }),
            ..Default::default()
        })
    }

    /// Runs the command; returns what to print.
    pub async fn run(&self, rest: &[String]) -> Result<String, CtlError> {
        let words: Vec<&str> = rest.iter().map(String::as_str).collect();
        let rpc_err = |e: tonic::Status| CtlError::Connect {
            endpoint: format!("TiKV at {}", self.endpoint),
            reason: e.message().to_string(),
        };
        let out = match words.as_slice() {
            [] | ["store", ..] => self.json("/debug/store").await?,
            ["region", ..] | ["raft", "region", ..] => {
                if rest.iter().any(|a| a == "--all" || a == "-a") {
                    self.json("/debug/regions").await?
                } else {
                    let id = opt(rest, &["-r", "--region"])
                        .ok_or_else(|| CtlError::Usage(format!("region needs -r ID\n{USAGE}")))?;
                    self.json(&format!("/debug/region/{id}")).await?
                }
            }
            ["region-properties", ..] => {
                let id = opt(rest, &["-r", "--region"]).ok_or_else(|| {
                    CtlError::Usage(format!("region-properties needs -r ID\n{USAGE}"))
                })?;
                self.json(&format!("/debug/region/{id}/properties")).await?
            }
            ["mvcc", ..] => {
                let key = opt(rest, &["-k", "--key"])
                    .ok_or_else(|| CtlError::Usage(format!("mvcc needs -k KEY\n{USAGE}")))?;
                self.json(&format!("/debug/mvcc/{}", hex(key.as_bytes())))
                    .await?
            }
            ["metrics", ..] => {
                let (status, body) = get(&self.endpoint, self.tls.as_ref(), "/metrics")
                    .await
                    .map_err(|e| self.connect_error(e))?;
                if status != 200 {
                    return Err(CtlError::Http {
                        status,
                        body: String::from_utf8_lossy(&body).into(),
                    });
                }
                return Ok(String::from_utf8_lossy(&body).into());
            }
            ["raw-get", ..] => {
                let key = opt(rest, &["-k", "--key"])
                    .ok_or_else(|| CtlError::Usage(format!("raw-get needs -k KEY\n{USAGE}")))?;
                let ctx = self.context_for(key.as_bytes()).await?;
                let r = self
                    .grpc()
                    .await?
                    .raw_get(kvrpcpb::RawGetRequest {
                        context: Some(ctx),
                        key: key.clone().into_bytes(),
                        cf: String::new(),
                    })
                    .await
                    .map_err(rpc_err)?
                    .into_inner();
                if let Some(e) = r.region_error {
                    return Err(CtlError::Config(format!("region error: {}", e.message)));
                }
                json!({ "key": key, "found": !r.not_found, "value": String::from_utf8_lossy(&r.value), "error": r.error })
            }
            ["raw-put", ..] => {
                let key = opt(rest, &["-k", "--key"]).ok_or_else(|| {
                    CtlError::Usage(format!("raw-put needs -k KEY -v VALUE\n{USAGE}"))
                })?;
                let value = opt(rest, &["-v", "--value"]).ok_or_else(|| {
                    CtlError::Usage(format!("raw-put needs -k KEY -v VALUE\n{USAGE}"))
                })?;
                let ctx = self.context_for(key.as_bytes()).await?;
                let r = self
                    .grpc()
                    .await?
                    .raw_put(kvrpcpb::RawPutRequest {
                        context: Some(ctx),
                        key: key.clone().into_bytes(),
                        value: value.into_bytes(),
                        ..Default::default()
                    })
                    .await
                    .map_err(rpc_err)?
                    .into_inner();
                if let Some(e) = r.region_error {
                    return Err(CtlError::Config(format!("region error: {}", e.message)));
                }
                json!({ "key": key, "ok": r.error.is_empty(), "error": r.error })
            }
            ["raw-scan", ..] => {
                let from = opt(rest, &["--from", "-f"]).unwrap_or_default();
                let to = opt(rest, &["--to", "-t"]).unwrap_or_default();
                let limit: u32 = opt(rest, &["--limit", "-l"])
                    .map_or(Ok(30), |l| l.parse())
                    .map_err(|_| CtlError::Usage("--limit must be a number".into()))?;
                let ctx = self.context_for(from.as_bytes()).await?;
                let r = self
                    .grpc()
                    .await?
                    .raw_scan(kvrpcpb::RawScanRequest {
                        context: Some(ctx),
                        start_key: from.into_bytes(),
                        end_key: to.into_bytes(),
                        limit,
                        ..Default::default()
                    })
                    .await
                    .map_err(rpc_err)?
                    .into_inner();
                if let Some(e) = r.region_error {
                    return Err(CtlError::Config(format!("region error: {}", e.message)));
                }
                let pairs: Vec<Value> = r
                    .kvs
                    .iter()
                    .map(|p| json!({ "key": String::from_utf8_lossy(&p.key), "value": String::from_utf8_lossy(&p.value) }))
                    .collect();
                json!({ "count": pairs.len(), "pairs": pairs })
            }
            ["split-region", ..] => {
                let usage = || CtlError::Usage(format!("split-region needs -r ID -k KEY\n{USAGE}"));
                let id = opt(rest, &["-r", "--region"]).ok_or_else(usage)?;
                let key = opt(rest, &["-k", "--key"]).ok_or_else(usage)?;
                let raw = rest.iter().any(|a| a == "--raw");
                let r = self.json(&format!("/debug/region/{id}")).await?;
                let num = |v: &Value| v.as_u64().unwrap_or(0);
                let ctx = kvrpcpb::Context {
                    region_id: num(&r["id"]),
                    region_epoch: Some(tiox_proto::metapb::RegionEpoch {
                        conf_ver: num(&r["epoch"]["conf_ver"]),
                        version: num(&r["epoch"]["version"]),
                    }),
                    ..Default::default()
                };
                let resp = self
                    .grpc()
                    .await?
                    .split_region(kvrpcpb::SplitRegionRequest {
                        context: Some(ctx),
                        split_keys: vec![key.into_bytes()],
                        is_raw_kv: raw,
                        ..Default::default()
                    })
                    .await
                    .map_err(rpc_err)?
                    .into_inner();
                if let Some(e) = resp.region_error {
                    return Err(CtlError::Config(format!(
                        "region error (split-region must be sent to the region's leader): {}",
                        e.message
                    )));
                }
                let regions: Vec<Value> = resp
                    .regions
                    .iter()
                    .map(|r| {
                        let e = r.region_epoch.unwrap_or_default();
                        json!({
                            "id": r.id,
                            "start_key": hex(&r.start_key),
                            "end_key": hex(&r.end_key),
                            "epoch": { "conf_ver": e.conf_ver, "version": e.version },
                            "peers": r.peers.iter().map(|p| json!({"id": p.id, "store_id": p.store_id})).collect::<Vec<_>>(),
                        })
                    })
                    .collect();
                json!({ "regions": regions })
            }
            [other, ..] => {
                return Err(CtlError::Usage(format!(
                    "unknown command \"{other}\"\n{USAGE}"
                )))
            }
        };
        Ok(serde_json::to_string_pretty(&out).unwrap_or_default())
    }
}
