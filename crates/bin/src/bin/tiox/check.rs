//! `tiox check`: audits a running cluster's TLS from the outside, as an
//! operator would, with the cluster's client certificate:
//!
//! ```text
//!  PD endpoints ─► members (client and peer URLs) ─► stores (gRPC and status addresses)
//!  for every endpoint:
//!    mutual TLS handshake      chain to the CA, SAN covers the address dialled;
//!                              the version and key exchange group negotiated
//!                              (X25519MLKEM768: post-quantum hybrid)
//!    server certificate        usages (serverAuth + clientAuth), expiry (warn < 30 days)
//!    no client certificate     must be refused
//!    plaintext                 must be refused
//! ```
//!
//! PD's peer port speaks PD's Raft transport, not HTTP: it is dialled with
//! its own ALPN protocol, and a client that is not refused finds the
//! connection open and silent.
//!
//! Prints a table with a verdict and the fix for each failure; exits
//! non-zero if anything failed.

use std::path::Path;
use std::sync::Arc;

use clap::Args;
use tiox_bin::launch::http_get;
use tiox_security::probe::{self, Speaks};
use tiox_security::{ClientTls, Component, SecurityConfig};
use tokio::net::TcpStream;

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// PD endpoints (https://host:port), comma separated.
    #[arg(long, short = 'u', value_delimiter = ',')]
    pd: Vec<String>,
    /// The cluster CA.
    #[arg(long)]
    cacert: String,
    /// The cluster client certificate.
    #[arg(long)]
    cert: String,
    /// Its key.
    #[arg(long)]
    key: String,
}

struct Row {
    endpoint: String,
    role: String,
    checks: Vec<(bool, String)>,
}

/// PD's peer port: PD's Raft transport.
const PD_RAFT: Speaks = Speaks::Silent(tiox_pd::replication::PEER_ALPN);

fn authority(url: &str) -> String {
    url.split("://")
        .last()
        .unwrap_or(url)
        .trim_end_matches('/')
        .to_string()
}

async fn audit(tls: &ClientTls, ca: &str, addr: &str, role: &str, speaks: Speaks) -> Row {
    let (checks, _) = probe::audit(tls, Path::new(ca), addr, speaks).await;
    Row {
        endpoint: addr.to_string(),
        role: role.to_string(),
        checks: checks.into_iter().map(|c| (c.ok, c.text)).collect(),
    }
}

/// Runs the audit; returns the exit code.
pub async fn run(a: CheckArgs) -> i32 {
    let settings =
        match SecurityConfig::from_paths(&a.cacert, &a.cert, &a.key).validate(Component::Tiox) {
            Ok(Some(s)) => s,
            Ok(None) => {
                eprintln!("tiox check: --cacert, --cert and --key are required");
                return 2;
            }
            Err(e) => {
                eprintln!("{e}");
                return 2;
            }
        };
    let (tls, peer_tls) = match (
        ClientTls::with_alpn(settings.clone(), vec![Speaks::Http.alpn()]),
        ClientTls::with_alpn(settings, vec![PD_RAFT.alpn()]),
    ) {
        (Ok(t), Ok(p)) => (Arc::new(t), p),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("tiox check: {e}");
            return 2;
        }
    };
    if a.pd.is_empty() {
        eprintln!("tiox check: give the PD endpoints with --pd https://host:port[,...]");
        return 2;
    }
    let mut rows = Vec::new();
    let mut pd_leader = None;
    for url in &a.pd {
        let addr = authority(url);
        if let Ok((200, body)) = http_get(&addr, "/pd/api/v1/leader", Some(tls.clone())).await {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&body) {
                pd_leader = v["client_urls"][0].as_str().map(authority);
            }
        }
        if pd_leader.is_some() {
            break;
        }
    }
    let Some(leader) = pd_leader else {
        let mut r = Vec::new();
        for url in &a.pd {
            r.push(audit(&tls, &a.cacert, &authority(url), "PD", Speaks::Http).await);
        }
        print_rows(&r);
        eprintln!("tiox check: no PD endpoint answered over mutual TLS (see the rows above)");
        return 1;
    };
    let get = |path: &'static str| {
        let (leader, tls) = (leader.clone(), tls.clone());
        async move {
            match http_get(&leader, path, Some(tls)).await {
                Ok((200, body)) => {
                    serde_json::from_str::<serde_json::Value>(&body).map_err(|e| e.to_string())
                }
                Ok((code, body)) => Err(format!("{code}: {body}")),
                Err(e) => Err(e),
            }
        }
    };
    match get("/pd/api/v1/members").await {
        Ok(m) => {
            for member in m["members"].as_array().cloned().unwrap_or_default() {
                let name = member["name"].as_str().unwrap_or("");
                let urls = |key: &str| -> Vec<String> {
                    member[key]
                        .as_array()
                        .map(|a| a.iter().filter_map(|u| u.as_str()).map(authority).collect())
                        .unwrap_or_default()
                };
                for addr in urls("client_urls") {
                    let role = format!("PD {name}");
                    rows.push(audit(&tls, &a.cacert, &addr, &role, Speaks::Http).await);
                }
                for addr in urls("peer_urls") {
                    let role = format!("PD {name} peer");
                    let refused = matches!(
                        TcpStream::connect(&addr).await,
                        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
                    );
                    if refused {
                        // A PD without --initial-cluster runs no Raft and
                        // does not listen on its peer URL.
                        rows.push(Row {
                            endpoint: addr,
                            role,
                            checks: vec![(
                                true,
                                "not listening (this PD runs without Raft peers)".into(),
                            )],
                        });
                        continue;
                    }
                    rows.push(audit(&peer_tls, &a.cacert, &addr, &role, PD_RAFT).await);
                }
            }
        }
        Err(e) => eprintln!("tiox check: cannot list PD members: {e}"),
    }
    match get("/pd/api/v1/stores").await {
        Ok(s) => {
            for st in s["stores"].as_array().cloned().unwrap_or_default() {
                let store = &st["store"];
                let id = store["id"].as_u64().unwrap_or(0);
                if let Some(addr) = store["address"].as_str() {
                    let role = format!("TiKV {id} gRPC");
                    rows.push(audit(&tls, &a.cacert, addr, &role, Speaks::Http).await);
                }
                if let Some(addr) = store["status_address"].as_str().filter(|s| !s.is_empty()) {
                    let role = format!("TiKV {id} status");
                    rows.push(audit(&tls, &a.cacert, addr, &role, Speaks::Http).await);
                }
            }
        }
        Err(e) => eprintln!("tiox check: cannot list stores: {e}"),
    }
    print_rows(&rows);
    let failed = rows
        .iter()
        .filter(|r| r.checks.iter().any(|(ok, _)| !ok))
        .count();
    if failed == 0 {
        println!(
            "\nVERDICT: PASS: {} endpoints, every one mutual TLS only",
            rows.len()
        );
        0
    } else {
        println!(
            "\nVERDICT: FAIL: {failed} of {} endpoints have problems (fixes above)",
            rows.len()
        );
        1
    }
}

fn print_rows(rows: &[Row]) {
    for r in rows {
        let ok = r.checks.iter().all(|(ok, _)| *ok);
        println!(
            "{} {:<16} {}",
            if ok { "PASS" } else { "FAIL" },
            r.role,
            r.endpoint
        );
        for (ok, text) in &r.checks {
            println!("       {} {text}", if *ok { "ok  " } else { "FAIL" });
        }
    }
}
