//! The certificates page and the TLS audit page.
//!
//! Certificates: PD dials every port of every member and store (from its
//! own member and store lists) with its own client certificate and reads
//! the chain each presents NOW — so a rotated file that a server has not
//! picked up shows, and so does a port serving a different certificate
//! than its neighbours — plus PD's own certificate and the CA bundle from
//! its files. Days left turn amber under 30 days and red under 7.
//!
//! TLS audit: the probes of `tiox check` (`tiox_security::probe::audit`),
//! run on demand (`?run=1`): per port the TLS version, cipher and key
//! exchange group negotiated, whether a client without a certificate and
//! a plaintext request are refused.
//!
//! The MySQL-facing certificate set belongs to tidb-server, which does not
//! register with PD; it is not shown.

use std::path::PathBuf;

use axum::extract::{Query, State as AxState};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use tiox_security::inspect::{format_time, CertInfo};
use tiox_security::probe::{self, Speaks};
use tiox_security::ClientTls;
use tokio::net::TcpStream;

use super::{esc, table, St};
use crate::replication::PEER_ALPN;
use crate::server::State;

/// Days left under which a certificate is shown amber.
pub const WARN_DAYS: i64 = tiox_security::inspect::EXPIRY_WARNING_DAYS;
/// Days left under which a certificate is shown red.
pub const CRITICAL_DAYS: i64 = 7;

/// A certificate as the page shows it.
#[derive(Clone, Debug, Serialize)]
pub struct Cert {
    /// Subject DN.
    pub subject: String,
    /// SANs, comma separated.
    pub sans: String,
    /// Issuer DN.
    pub issuer: String,
    /// Serial, hex.
    pub serial: String,
    /// `ECDSA P-256`, `RSA 2048`, ...
    pub key_type: String,
    /// Not-after, RFC 3339.
    pub not_after: String,
    /// Whole days left (negative: expired).
    pub days_left: i64,
    /// SHA-256 fingerprint.
    pub sha256: String,
}

impl Cert {
    fn of(c: &CertInfo) -> Cert {
        Cert {
            subject: c.subject.clone(),
            sans: c.sans_text(),
            issuer: c.issuer.clone(),
            serial: c.serial.clone(),
            key_type: c.key_kind.clone(),
            not_after: format_time(c.not_after),
            days_left: c.days_left(time::OffsetDateTime::now_utc()),
            sha256: c.sha256.clone(),
        }
    }
}

/// What one port presents.
#[derive(Clone, Debug, Serialize)]
pub struct Port {
    /// `PD pd-1 client`, `TiKV 1 gRPC`, ...
    pub role: String,
    /// `host:port`.
    pub address: String,
    /// The chain presented, leaf first (empty on failure).
    pub chain: Vec<Cert>,
    /// `TLSv1.3 TLS13_AES_256_GCM_SHA384 X25519MLKEM768`.
    pub negotiated: String,
    /// Why no chain, if none.
    pub error: Option<String>,
}

/// The certificates view.
#[derive(Clone, Debug, Serialize)]
pub struct Certificates {
    /// PD's own certificate (from its file, as in service).
    pub own: Cert,
    /// The CA bundle.
    pub ca: Vec<Cert>,
    /// The CA file.
    pub ca_file: String,
    /// Every port.
    pub ports: Vec<Port>,
}

struct Dialers {
    http: ClientTls,
    raft: ClientTls,
    ca: PathBuf,
}

fn dialers(s: &State) -> Result<Dialers, String> {
    let settings = s.tls().ok_or("the dashboard needs TLS")?.clone();
    Ok(Dialers {
        http: ClientTls::with_alpn(settings.clone(), vec![Speaks::Http.alpn()])
            .map_err(|e| e.to_string())?,
        raft: ClientTls::with_alpn(settings.clone(), vec![PEER_ALPN.to_vec()])
            .map_err(|e| e.to_string())?,
        ca: settings.source.files().ca.clone(),
    })
}

/// Whether nothing listens at `addr` (a PD without Raft peers has no peer
/// port open).
async fn not_listening(addr: &str) -> bool {
    matches!(
        tokio::time::timeout(probe::TIMEOUT, TcpStream::connect(addr)).await,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused
    )
}

const NOT_LISTENING: &str = "not listening (this PD runs without Raft peers)";

/// Dials every port and reads what it presents.
pub async fn gather(s: &State) -> Result<Certificates, String> {
    let overview = super::overview::gather(s)?;
    let d = dialers(s)?;
    let tls = s.tls().ok_or("the dashboard needs TLS")?;
    let m = tls.source.current();
    let probes = super::overview::endpoints(&overview)
        .into_iter()
        .map(|(role, address, raft)| {
            let d = &d;
            async move {
                if raft && not_listening(&address).await {
                    return Port {
                        role,
                        address,
                        chain: Vec::new(),
                        negotiated: String::new(),
                        error: Some(NOT_LISTENING.into()),
                    };
                }
                let dialer = if raft { &d.raft } else { &d.http };
                match probe::handshake(dialer, &address).await {
                    Ok(p) => Port {
                        role,
                        address,
                        chain: p.chain.iter().map(Cert::of).collect(),
                        negotiated: format!(
                            "{} {} {}",
                            p.negotiated.version,
                            p.negotiated.cipher,
                            p.negotiated.kx_group.as_deref().unwrap_or("")
                        ),
                        error: None,
                    },
                    Err(e) => Port {
                        role,
                        address,
                        chain: Vec::new(),
                        negotiated: String::new(),
                        error: Some(e),
                    },
                }
            }
        });
    let ports = futures::future::join_all(probes).await;
    Ok(Certificates {
        own: Cert::of(&m.leaf),
        ca: m.ca_infos.iter().map(Cert::of).collect(),
        ca_file: d.ca.display().to_string(),
        ports,
    })
}

fn days_cell(days: i64) -> String {
    let class = if days < CRITICAL_DAYS {
        "critical"
    } else if days < WARN_DAYS {
        "warn"
    } else {
        "ok"
    };
    format!("<span class=\"days {class}\">{days}</span>")
}

fn cert_row(first: Vec<String>, c: &Cert) -> Vec<String> {
    let mut row = first;
    row.extend([
        esc(&c.subject),
        esc(&c.sans),
        esc(&c.issuer),
        format!("<code class=\"serial\">{}</code>", esc(&c.serial)),
        esc(&c.key_type),
        esc(&c.not_after),
        days_cell(c.days_left),
    ]);
    row
}

const CERT_HEAD: [&str; 7] = [
    "subject",
    "SANs",
    "issuer",
    "serial",
    "key type",
    "not after",
    "days left",
];

fn render(v: &Certificates) -> String {
    let mut out = String::from(
        "<p class=\"legend\">Days left: <span class=\"days ok\">≥ 30</span> \
         <span class=\"days warn\">&lt; 30</span> <span class=\"days critical\">&lt; 7</span>. \
         Each port is dialled now with PD's client certificate; the chain is the one it presents.</p>",
    );
    out.push_str("<h2>Served by each port</h2>");
    let mut head = vec!["role", "address", "negotiated"];
    head.extend(CERT_HEAD);
    let rows: Vec<Vec<String>> = v
        .ports
        .iter()
        .map(|p| {
            let first = vec![
                esc(&p.role),
                format!("<code>{}</code>", esc(&p.address)),
                esc(&p.negotiated),
            ];
            match (p.chain.first(), &p.error) {
                (Some(c), _) => cert_row(first, c),
                (None, e) => {
                    let mut r = first;
                    let e = e.as_deref().unwrap_or("no certificate");
                    let class = if e == NOT_LISTENING { "none" } else { "bad" };
                    r.push(format!("<span class=\"{class}\">{}</span>", esc(e)));
                    r.extend(std::iter::repeat_n(String::new(), CERT_HEAD.len() - 1));
                    r
                }
            }
        })
        .collect();
    out.push_str(&table("ports", &head, &rows));
    out.push_str("<h2>This PD member's certificate (in service)</h2>");
    out.push_str(&table("own", &CERT_HEAD, &[cert_row(Vec::new(), &v.own)]));
    out.push_str(&format!(
        "<h2>CA bundle</h2><p class=\"note\"><code>{}</code></p>",
        esc(&v.ca_file)
    ));
    let rows: Vec<Vec<String>> = v.ca.iter().map(|c| cert_row(Vec::new(), c)).collect();
    out.push_str(&table("ca", &CERT_HEAD, &rows));
    out.push_str(
        "<p class=\"note\">The MySQL-facing certificate set belongs to tidb-server, which does \
         not register with PD; check it with <code>tiox cert inspect</code>.</p>",
    );
    out
}

/// `GET /dashboard/certificates`.
pub async fn page(AxState(s): St) -> Response {
    let body = gather(&s).await.map(|v| render(&v));
    super::page(&s, "certificates", body)
}

/// `GET /dashboard/api/certificates`.
pub async fn api(AxState(s): St) -> Response {
    super::json(gather(&s).await)
}

/// `?run=1` runs the audit.
#[derive(Debug, Default, Deserialize)]
pub struct Run {
    run: Option<String>,
}

/// One audited port.
#[derive(Clone, Debug, Serialize)]
pub struct Audited {
    /// `PD pd-1 client`, ...
    pub role: String,
    /// `host:port`.
    pub address: String,
    /// Every check passed.
    pub pass: bool,
    /// The checks: (passed, what was seen).
    pub checks: Vec<(bool, String)>,
}

/// Runs the audit on every port.
pub async fn audit(s: &State) -> Result<Vec<Audited>, String> {
    let overview = super::overview::gather(s)?;
    let d = dialers(s)?;
    let runs = super::overview::endpoints(&overview)
        .into_iter()
        .map(|(role, address, raft)| {
            let d = &d;
            async move {
                let checks = if raft && not_listening(&address).await {
                    vec![(true, NOT_LISTENING.to_string())]
                } else {
                    let (dialer, speaks) = if raft {
                        (&d.raft, Speaks::Silent(PEER_ALPN))
                    } else {
                        (&d.http, Speaks::Http)
                    };
                    probe::audit(dialer, &d.ca, &address, speaks)
                        .await
                        .0
                        .into_iter()
                        .map(|c| (c.ok, c.text))
                        .collect()
                };
                Audited {
                    pass: checks.iter().all(|(ok, _)| *ok),
                    role,
                    address,
                    checks,
                }
            }
        });
    Ok(futures::future::join_all(runs).await)
}

fn render_audit(rows: &[Audited]) -> String {
    let failed = rows.iter().filter(|r| !r.pass).count();
    let mut out = format!(
        "<p class=\"verdict {}\" id=\"verdict\">{}</p>",
        if failed == 0 { "ok" } else { "bad" },
        if failed == 0 {
            format!("PASS: {} endpoints, every one mutual TLS only", rows.len())
        } else {
            format!("FAIL: {failed} of {} endpoints have problems", rows.len())
        }
    );
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let checks: String = r
                .checks
                .iter()
                .map(|(ok, t)| {
                    format!(
                        "<li class=\"{}\">{}</li>",
                        if *ok { "ok" } else { "bad" },
                        esc(t)
                    )
                })
                .collect();
            vec![
                if r.pass {
                    "<span class=\"ok\">PASS</span>".into()
                } else {
                    "<span class=\"bad\">FAIL</span>".into()
                },
                esc(&r.role),
                format!("<code>{}</code>", esc(&r.address)),
                format!("<ul class=\"checks\">{checks}</ul>"),
            ]
        })
        .collect();
    out.push_str(&table(
        "audit",
        &["verdict", "role", "address", "checks"],
        &rows,
    ));
    out
}

/// `GET /dashboard/audit[?run=1]`.
pub async fn audit_page(AxState(s): St, Query(q): Query<Run>) -> Response {
    let run = q.run.is_some();
    let mut body = String::from(
        "<p>The probes of <code>tiox check</code>, from this PD member: a mutual handshake \
         (version, cipher, key exchange group), a client without a certificate, and a plaintext \
         request, against every port. Plaintext and certificate-less attempts show up as refusals \
         on the security events page.</p><form method=\"get\" action=\"audit\">\
         <input type=\"hidden\" name=\"run\" value=\"1\"><button type=\"submit\" id=\"run\">Run the audit now</button></form>",
    );
    if !run {
        return super::page(&s, "audit", Ok(body));
    }
    let result = audit(&s).await.map(|rows| {
        body.push_str(&render_audit(&rows));
        body
    });
    super::page(&s, "audit", result)
}

/// `GET /dashboard/api/audit`: runs the audit.
pub async fn audit_api(AxState(s): St) -> Response {
    super::json(audit(&s).await)
}
