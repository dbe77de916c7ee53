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

use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use tiox_bin::launch::http_get;
use tiox_security::inspect::{format_time, CertInfo, EXPIRY_WARNING_DAYS};
use tiox_security::{ClientTls, Component, Negotiated, SecurityConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
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

const TIMEOUT: Duration = Duration::from_secs(5);

/// What a port speaks.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Speaks {
    /// HTTP/1.1 or HTTP/2 (gRPC): PD's client port, TiKV's ports.
    Http,
    /// PD's Raft transport (the peer port): no answer to a silent client.
    PdRaft,
}

impl Speaks {
    fn alpn(self) -> Vec<u8> {
        match self {
            Speaks::Http => b"http/1.1".to_vec(),
            Speaks::PdRaft => tiox_pd::replication::PEER_ALPN.to_vec(),
        }
    }
}

fn authority(url: &str) -> String {
    url.split("://")
        .last()
        .unwrap_or(url)
        .trim_end_matches('/')
        .to_string()
}

/// The mutual-TLS handshake: the server certificate it presented and what
/// was negotiated.
async fn handshake(tls: &ClientTls, addr: &str) -> Result<(CertInfo, Negotiated), String> {
    let stream = tokio::time::timeout(TIMEOUT, tls.connect_tcp(addr))
        .await
        .map_err(|_| "no answer within 5 s".to_string())?
        .map_err(|e| e.to_string())?;
    let (_, conn) = stream.get_ref();
    let der = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or("no server certificate")?;
    Ok((CertInfo::from_der(der)?, Negotiated::of(conn)))
}

/// Whether a TLS client WITHOUT a certificate is refused.
async fn refuses_no_client_cert(ca: &str, addr: &str, speaks: Speaks) -> Result<bool, String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).map_err(|e| e.to_string())? {
        roots
            .add(c.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let mut config =
        rustls::ClientConfig::builder_with_provider(tiox_security::material::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
    config.alpn_protocols = vec![speaks.alpn()];
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h).to_string();
    let name = tiox_security::client::server_name(&host).map_err(|e| e.to_string())?;
    let tcp = tokio::time::timeout(TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| "timeout")?
        .map_err(|e| e.to_string())?;
    let attempt = async {
        let mut s = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await?;
        if speaks == Speaks::Http {
            s.write_all(b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n")
                .await?;
        }
        let mut buf = [0u8; 16];
        let n = s.read(&mut buf).await?;
        Ok::<usize, std::io::Error>(n)
    };
    Ok(match tokio::time::timeout(TIMEOUT, attempt).await {
        Ok(Ok(n)) => n == 0,
        Ok(Err(_)) => true,
        // An HTTP port that accepted the client would have answered; the
        // peer port keeps an accepted peer's connection open and silent.
        Err(_) => speaks == Speaks::Http,
    })
}

/// Whether a plaintext HTTP request gets no plaintext answer.
async fn refuses_plaintext(addr: &str) -> Result<bool, String> {
    let mut tcp = tokio::time::timeout(TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| "timeout")?
        .map_err(|e| e.to_string())?;
    let _ = tcp
        .write_all(b"GET /status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(TIMEOUT, tcp.read_to_end(&mut buf)).await;
    Ok(!String::from_utf8_lossy(&buf).contains("HTTP/"))
}

async fn audit(tls: &ClientTls, ca: &str, addr: &str, role: &str, speaks: Speaks) -> Row {
    let mut checks = Vec::new();
    match handshake(tls, addr).await {
        Ok((info, negotiated)) => {
            checks.push((
                true,
                format!(
                    "mutual TLS ok; certificate \"{}\"",
                    info.common_name.as_deref().unwrap_or(&info.subject)
                ),
            ));
            let group = negotiated.kx_group.as_deref().unwrap_or("none");
            checks.push((
                true,
                format!(
                    "{} {}, key exchange {group}{}",
                    negotiated.version,
                    negotiated.cipher,
                    if group == "X25519MLKEM768" {
                        " (post-quantum hybrid)"
                    } else {
                        ""
                    }
                ),
            ));
            let usages_ok = info.allows_server_auth() && info.allows_client_auth();
            checks.push((
                usages_ok,
                if usages_ok {
                    "usages serverAuth + clientAuth".to_string()
                } else {
                    "usages lack serverAuth or clientAuth: re-issue with the server profile (tiox cert issue --profile server)".to_string()
                },
            ));
            let days = info.days_left(time::OffsetDateTime::now_utc());
            checks.push((
                true,
                if days < EXPIRY_WARNING_DAYS {
                    format!(
                        "WARNING: expires in {days} days ({}): rotate it",
                        format_time(info.not_after)
                    )
                } else {
                    format!("expires {} ({days} days)", format_time(info.not_after))
                },
            ));
        }
        Err(e) => checks.push((false, format!("mutual TLS failed: {e}"))),
    }
    match refuses_no_client_cert(ca, addr, speaks).await {
        Ok(true) => checks.push((true, "client without certificate refused".into())),
        Ok(false) => checks.push((false, "a client WITHOUT a certificate was served: this port does not require client certificates".into())),
        Err(e) => checks.push((false, format!("could not test a certificate-less client: {e}"))),
    }
    match refuses_plaintext(addr).await {
        Ok(true) => checks.push((true, "plaintext refused".into())),
        Ok(false) => checks.push((
            false,
            "PLAINTEXT was answered: TLS is off on this port; configure [security]".into(),
        )),
        Err(e) => checks.push((false, format!("could not test plaintext: {e}"))),
    }
    Row {
        endpoint: addr.to_string(),
        role: role.to_string(),
        checks,
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
        ClientTls::with_alpn(settings, vec![Speaks::PdRaft.alpn()]),
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
                    rows.push(audit(&peer_tls, &a.cacert, &addr, &role, Speaks::PdRaft).await);
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
