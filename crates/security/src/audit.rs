//! The security audit trail: every refused handshake and login is one JSON
//! line in `security-audit.log`, so an operator can see who tried what.
//!
//! ```text
//!  serve loop / MySQL port ── refusal ──► AuditLog::record ──► rate limit per peer IP
//!                                                               │ (LINES_PER_MINUTE, then
//!                                                               │  one "suppressed" line)
//!                                                               ▼
//!  {"time":"…","component":"tikv-server","listener":"grpc","peer":"10.0.0.9:5123",
//!   "reason":"unknown_ca","detail":"…","subject":"…","sans":[…],"issuer":"…","serial":"…"}
//! ```
//!
//! A line holds what the peer presented (subject, SANs, issuer, serial of
//! its certificate, when it got as far as presenting one) and never key
//! material. A scanner cannot fill the disk: each peer IP gets at most
//! [`LINES_PER_MINUTE`] lines a minute; the rest are counted and written as
//! one line with `"suppressed": N` when its next minute starts.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::config::Component;
use crate::error::ConfigError;
use crate::inspect::CertInfo;
use crate::stats::Refusal;

/// Lines per peer IP per minute before lines are only counted.
pub const LINES_PER_MINUTE: u32 = 20;

/// The file name beside a component's data.
pub const FILE_NAME: &str = "security-audit.log";

const WINDOW: Duration = Duration::from_secs(60);

/// Peers remembered for rate limiting before the oldest windows are
/// forgotten (a scan from many addresses must not grow memory without
/// bound either).
const MAX_PEERS: usize = 4096;

#[derive(Debug)]
struct Window {
    start: Instant,
    written: u32,
    suppressed: u64,
}

/// One refusal to record.
#[derive(Debug)]
pub struct Event<'a> {
    /// The listener label ("client", "peer", "grpc", "status", "mysql").
    pub listener: &'a str,
    /// The peer's address, `ip:port`.
    pub peer: &'a str,
    /// Why.
    pub reason: Refusal,
    /// The readable explanation (as logged).
    pub detail: &'a str,
    /// The certificate the peer presented, if it got that far.
    pub cert: Option<&'a CertInfo>,
    /// The MySQL account, for login refusals.
    pub user: Option<&'a str>,
}

/// An append-only JSON-lines file with a per-peer rate limit.
#[derive(Debug)]
pub struct AuditLog {
    component: &'static str,
    path: PathBuf,
    file: Mutex<File>,
    peers: Mutex<HashMap<IpAddr, Window>>,
}

impl AuditLog {
    /// Opens (creates, appends to) `path`; an error is a startup error
    /// naming `key`.
    pub fn open(component: Component, key: &str, path: &Path) -> Result<AuditLog, ConfigError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            let _ = std::fs::create_dir_all(dir);
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| {
                component.error(
                    key,
                    Some(path.to_path_buf()),
                    format!(
                        "cannot open the security audit log ({})",
                        crate::inspect::describe_io_error(&e)
                    ),
                    "point it at a writable file, or leave it empty for security-audit.log in \
                     the data directory",
                )
            })?;
        Ok(AuditLog {
            component: component.name(),
            path: path.to_path_buf(),
            file: Mutex::new(file),
            peers: Mutex::new(HashMap::new()),
        })
    }

    /// Where the lines go.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records one refusal, subject to the per-peer rate limit.
    pub fn record(&self, ev: &Event<'_>) {
        let ip = ev
            .peer
            .parse::<std::net::SocketAddr>()
            .map(|a| a.ip())
            .or_else(|_| ev.peer.parse::<IpAddr>())
            .unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let now = Instant::now();
        let mut lines = Vec::new();
        {
            let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
            if peers.len() >= MAX_PEERS && !peers.contains_key(&ip) {
                peers.retain(|_, w| now.duration_since(w.start) < WINDOW);
            }
            let w = peers.entry(ip).or_insert(Window {
                start: now,
                written: 0,
                suppressed: 0,
            });
            if now.duration_since(w.start) >= WINDOW {
                if w.suppressed > 0 {
                    lines.push(self.suppressed_line(ev, w.suppressed));
                }
                *w = Window {
                    start: now,
                    written: 0,
                    suppressed: 0,
                };
            }
            if w.written < LINES_PER_MINUTE {
                w.written += 1;
                lines.push(self.line(ev));
            } else {
                w.suppressed += 1;
            }
        }
        if lines.is_empty() {
            return;
        }
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        for line in lines {
            if let Err(e) = writeln!(file, "{line}") {
                tracing::warn!(path = %self.path.display(), "cannot write the security audit log: {e}");
                return;
            }
        }
    }

    fn line(&self, ev: &Event<'_>) -> String {
        let mut v = json!({
            "time": now_rfc3339(),
            "component": self.component,
            "listener": ev.listener,
            "peer": ev.peer,
            "reason": ev.reason.label(),
            "detail": ev.detail,
        });
        if let Some(c) = ev.cert {
            v["subject"] = json!(c.subject);
            v["sans"] = json!(c.sans.iter().map(ToString::to_string).collect::<Vec<_>>());
            v["issuer"] = json!(c.issuer);
            v["serial"] = json!(c.serial);
        }
        if let Some(u) = ev.user {
            v["user"] = json!(u);
        }
        v.to_string()
    }

    fn suppressed_line(&self, ev: &Event<'_>, n: u64) -> String {
        json!({
            "time": now_rfc3339(),
            "component": self.component,
            "listener": ev.listener,
            "peer": ev.peer,
            "reason": "suppressed",
            "suppressed": n,
            "detail": format!(
                "{n} more refusals from this address in the last minute were not written \
                 (at most {LINES_PER_MINUTE} lines a minute per address)"
            ),
        })
        .to_string()
    }
}

fn now_rfc3339() -> String {
    let t = time::OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_peer_gets_a_bounded_number_of_lines_a_minute() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let log = AuditLog::open(Component::TikvServer, "[security] audit-log", &path).unwrap();
        for i in 0..100 {
            log.record(&Event {
                listener: "grpc",
                peer: &format!("10.0.0.9:{}", 4000 + i),
                reason: Refusal::Plaintext,
                detail: "the peer did not speak TLS",
                cert: None,
                user: None,
            });
        }
        log.record(&Event {
            listener: "grpc",
            peer: "10.0.0.10:1",
            reason: Refusal::UnknownCa,
            detail: "x",
            cert: None,
            user: None,
        });
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), LINES_PER_MINUTE as usize + 1);
        assert_eq!(lines[0]["reason"], "plaintext");
        assert_eq!(lines[0]["component"], "tikv-server");
        assert_eq!(lines.last().unwrap()["peer"], "10.0.0.10:1");
    }
}
