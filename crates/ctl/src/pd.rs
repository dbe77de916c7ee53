//! `pd-ctl`: commands, their HTTP calls and their output.
//!
//! | command              | call                                 |
//! |----------------------|--------------------------------------|
//! | `cluster`            | `GET /pd/api/v1/cluster`             |
//! | `store [ID]`         | `GET /pd/api/v1/stores`, `/store/ID` |
//! | `member`             | `GET /pd/api/v1/members`             |
//! | `member leader show` | `GET /pd/api/v1/leader`              |
//! | `member delete name N` | `DELETE /pd/api/v1/members/name/N` |
//! | `region [ID]`        | `GET /pd/api/v1/regions`, `/region/id/ID` |
//! | `region key KEY`     | `GET /pd/api/v1/region/key/KEY` (escaped) |
//! | `health`             | `GET /pd/api/v1/health`              |
//! | `config show`        | `GET /pd/api/v1/config`              |
//! | `tso TS`             | none: decodes TS locally             |
//!
//! Output is PD's JSON, pretty-printed. Endpoints are tried in order until
//! one answers. TLS: an `https://` endpoint requires `--cacert`, `--cert`
//! and `--key` (PD requires a client certificate), checked before any
//! connection is made.

use std::sync::Arc;

use tiox_security::{ClientTls, Component, SecurityConfig};

use crate::error::CtlError;
use crate::http::{self, Endpoint, Scheme};

/// The usage text for interactive `help` and errors.
pub const USAGE: &str = "commands:
  cluster               show the cluster id and settings
  store [ID]            list stores, or show one
  member                list PD members
  member leader show    show the PD leader
  member delete name N  remove PD member N
  region [ID]           list regions, or show one
  region key KEY        show the region containing KEY
  health                show the members' health
  config show           show PD's configuration
  tso TS                decode a timestamp
  help                  this text";

/// One parsed command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `cluster`.
    Cluster,
    /// `store [ID]`.
    Store(Option<u64>),
    /// `member`.
    Members,
    /// `member leader show`.
    Leader,
    /// `member delete name NAME`.
    MemberDelete(String),
    /// `region [ID]`.
    Region(Option<u64>),
    /// `region key KEY`.
    RegionKey(String),
    /// `health`.
    Health,
    /// `config show`.
    ConfigShow,
    /// `tso TS`.
    Tso(u64),
    /// `help`.
    Help,
}

fn parse_id(s: &str, what: &str) -> Result<u64, CtlError> {
    s.parse()
        .map_err(|_| CtlError::Usage(format!("{what}: \"{s}\" is not a valid id")))
}

impl Command {
    /// Parses the words of one command.
    pub fn parse(words: &[&str]) -> Result<Command, CtlError> {
        let usage = |m: &str| CtlError::Usage(format!("{m}\n{USAGE}"));
        match words {
            ["cluster"] => Ok(Command::Cluster),
            ["store"] => Ok(Command::Store(None)),
            ["store", id] => Ok(Command::Store(Some(parse_id(id, "store")?))),
            ["member"] => Ok(Command::Members),
            ["member", "leader", "show"] => Ok(Command::Leader),
            ["member", "delete", "name", name] => Ok(Command::MemberDelete(name.to_string())),
            ["region"] => Ok(Command::Region(None)),
            ["region", "key", key] => Ok(Command::RegionKey(key.to_string())),
            ["region", id] => Ok(Command::Region(Some(parse_id(id, "region")?))),
            ["health"] => Ok(Command::Health),
            ["config", "show"] => Ok(Command::ConfigShow),
            ["tso", ts] => Ok(Command::Tso(ts.parse().map_err(|_| {
                CtlError::Usage(format!(
                    "tso: \"{ts}\" is not a timestamp (an unsigned integer)"
                ))
            })?)),
            ["help"] | ["-h"] | ["--help"] => Ok(Command::Help),
            [] => Err(usage("no command given")),
            other => Err(usage(&format!("unknown command \"{}\"", other.join(" ")))),
        }
    }

    /// The API path, if the command calls PD.
    pub fn path(&self) -> Option<String> {
        Some(match self {
            Command::Cluster => "/pd/api/v1/cluster".into(),
            Command::Store(None) => "/pd/api/v1/stores".into(),
            Command::Store(Some(id)) => format!("/pd/api/v1/store/{id}"),
            Command::Members => "/pd/api/v1/members".into(),
            Command::Leader => "/pd/api/v1/leader".into(),
            Command::MemberDelete(name) => {
                format!("/pd/api/v1/members/name/{}", escape(name.as_bytes()))
            }
            Command::Region(None) => "/pd/api/v1/regions".into(),
            Command::Region(Some(id)) => format!("/pd/api/v1/region/id/{id}"),
            Command::RegionKey(k) => format!("/pd/api/v1/region/key/{}", escape(k.as_bytes())),
            Command::Health => "/pd/api/v1/health".into(),
            Command::ConfigShow => "/pd/api/v1/config".into(),
            Command::Tso(_) | Command::Help => return None,
        })
    }
}

/// Percent-escapes everything but unreserved characters.
pub fn escape(key: &[u8]) -> String {
    key.iter()
        .map(|&b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Decodes a TSO timestamp as PD's `tso` command prints it.
pub fn decode_tso(ts: u64) -> String {
    let physical = ts >> 18;
    let logical = ts & ((1 << 18) - 1);
    let system = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(physical) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("(physical {physical} ms is out of range)"));
    format!("system:  {system}\nlogic:   {logical}")
}

/// A configured pd-ctl: endpoints and TLS.
#[derive(Debug)]
pub struct PdCtl {
    endpoints: Vec<Endpoint>,
    tls: Option<Arc<ClientTls>>,
}

impl PdCtl {
    /// Builds a client from `-u` and the TLS flags; refuses inconsistent
    /// combinations before any connection is made.
    pub fn new(
        urls: &str,
        cacert: Option<&str>,
        cert: Option<&str>,
        key: Option<&str>,
    ) -> Result<PdCtl, CtlError> {
        let endpoints: Vec<Endpoint> = urls
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(Endpoint::parse)
            .collect::<Result<_, _>>()?;
        if endpoints.is_empty() {
            return Err(CtlError::Usage("-u/--pd: no endpoint given".into()));
        }
        let https = endpoints
            .iter()
            .filter(|e| e.scheme == Scheme::Https)
            .count();
        if https != 0 && https != endpoints.len() {
            return Err(CtlError::Usage(
                "-u/--pd mixes http:// and https:// endpoints; a cluster is either all TLS or \
                 none"
                    .into(),
            ));
        }
        let any_flag = cacert.is_some() || cert.is_some() || key.is_some();
        if https == 0 {
            if any_flag {
                return Err(CtlError::Config(format!(
                    "pd-ctl: --cacert/--cert/--key are given but {} is http://; a TLS PD is \
                     reached with https:// (e.g. -u https://{})",
                    endpoints[0],
                    endpoints[0].authority()
                )));
            }
            return Ok(PdCtl {
                endpoints,
                tls: None,
            });
        }
        let (Some(cacert), Some(cert), Some(key)) = (cacert, cert, key) else {
            let missing: Vec<&str> = [("--cacert", cacert), ("--cert", cert), ("--key", key)]
                .iter()
                .filter(|(_, v)| v.is_none())
                .map(|(k, _)| *k)
                .collect();
            return Err(CtlError::Config(format!(
                "pd-ctl: {} is https:// and PD requires a client certificate (mutual TLS), but \
                 {} {} not given. Pass the CA and this client's certificate and key: \
                 --cacert ca.pem --cert client.pem --key client-key.pem",
                endpoints[0],
                missing.join(", "),
                if missing.len() == 1 { "is" } else { "are" }
            )));
        };
        let settings = SecurityConfig::from_paths(cacert, cert, key)
            .validate(Component::PdCtl)
            .map_err(|e| CtlError::Config(e.to_string()))?
            .ok_or_else(|| {
                CtlError::Config("pd-ctl: --cacert, --cert and --key are empty".into())
            })?;
        let tls = ClientTls::with_alpn(settings, vec![b"http/1.1".to_vec()])
            .map_err(|e| CtlError::Config(e.to_string()))?;
        Ok(PdCtl {
            endpoints,
            tls: Some(Arc::new(tls)),
        })
    }

    /// `GET path` on the first endpoint that answers. A follower PD
    /// redirects to the leader; the redirect is followed once, with the same
    /// TLS settings (the scheme must stay the same).
    pub async fn get(&self, path: &str) -> Result<(u16, Vec<u8>), CtlError> {
        self.request(hyper::Method::GET, path).await
    }

    /// A request with no body on the first endpoint that answers, following
    /// a leader redirect once.
    pub async fn request(
        &self,
        method: hyper::Method,
        path: &str,
    ) -> Result<(u16, Vec<u8>), CtlError> {
        let mut errors = Vec::new();
        for ep in &self.endpoints {
            match http::send(ep, self.tls.as_ref(), method.clone(), path).await {
                Ok((307 | 308, _, Some(location))) => {
                    match self.follow(ep, method.clone(), &location).await {
                        Ok(r) => return Ok(r),
                        Err(e) => errors.push(e.to_string()),
                    }
                }
                Ok((status, body, _)) => return Ok((status, body)),
                Err(e) => errors.push(e.to_string()),
            }
        }
        Err(CtlError::Connect {
            endpoint: self
                .endpoints
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            reason: errors.join("; "),
        })
    }

    async fn follow(
        &self,
        from: &Endpoint,
        method: hyper::Method,
        location: &str,
    ) -> Result<(u16, Vec<u8>), CtlError> {
        let (base, path) = match location.find("://").map(|i| i + 3) {
            Some(start) => match location[start..].find('/') {
                Some(slash) => location.split_at(start + slash),
                None => (location, "/"),
            },
            None => (location, "/"),
        };
        let to = Endpoint::parse(base)?;
        if to.scheme != from.scheme {
            return Err(CtlError::Connect {
                endpoint: from.to_string(),
                reason: format!("redirected to {location}, which changes the scheme; refused"),
            });
        }
        let (status, body, _) = http::send(&to, self.tls.as_ref(), method, path).await?;
        Ok((status, body))
    }

    /// Runs one command and returns what to print.
    pub async fn run(&self, cmd: &Command) -> Result<String, CtlError> {
        match cmd {
            Command::Tso(ts) => return Ok(decode_tso(*ts)),
            Command::Help => return Ok(USAGE.to_string()),
            _ => {}
        }
        let Some(path) = cmd.path() else {
            return Ok(USAGE.to_string());
        };
        let method = match cmd {
            Command::MemberDelete(_) => hyper::Method::DELETE,
            _ => hyper::Method::GET,
        };
        let (status, body) = self.request(method, &path).await?;
        let text = match serde_json::from_slice::<serde_json::Value>(&body) {
            Ok(v) => serde_json::to_string_pretty(&v).unwrap_or_default(),
            Err(_) => String::from_utf8_lossy(&body).into_owned(),
        };
        if (200..300).contains(&status) {
            Ok(text)
        } else {
            Err(CtlError::Http { status, body: text })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_as_pd_ctl_spells_them() {
        assert_eq!(
            Command::parse(&["store", "4"]).unwrap(),
            Command::Store(Some(4))
        );
        assert_eq!(
            Command::parse(&["member", "leader", "show"]).unwrap(),
            Command::Leader
        );
        assert_eq!(
            Command::parse(&["region", "key", "a/b"])
                .unwrap()
                .path()
                .unwrap(),
            "/pd/api/v1/region/key/a%2Fb"
        );
        assert!(matches!(
            Command::parse(&["store", "x"]),
            Err(CtlError::Usage(_))
        ));
        assert!(matches!(
            Command::parse(&["bogus"]),
            Err(CtlError::Usage(_))
        ));
        assert_eq!(
            Command::parse(&["member", "delete", "name", "pd2"])
                .unwrap()
                .path()
                .unwrap(),
            "/pd/api/v1/members/name/pd2"
        );
    }

    #[test]
    fn endpoint_without_scheme_is_http() {
        let e = Endpoint::parse("127.0.0.1:2379").unwrap();
        assert_eq!(e.scheme, Scheme::Http);
        assert_eq!(e.to_string(), "http://127.0.0.1:2379");
    }

    #[test]
    fn https_without_client_certificate_fails_before_connecting() {
        let e = PdCtl::new("https://127.0.0.1:2379", Some("ca.pem"), None, None).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("requires a client certificate"), "{msg}");
        assert!(msg.contains("--cert, --key"), "{msg}");
    }

    #[test]
    fn tso_decodes_physical_and_logical() {
        let ts = (1_700_000_000_000u64 << 18) | 7;
        let out = decode_tso(ts);
        assert!(out.contains("2023-11-14T22:13:20Z"), "{out}");
        assert!(out.ends_with("logic:   7"), "{out}");
    }
}
