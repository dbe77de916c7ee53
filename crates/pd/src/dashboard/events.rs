//! The security events page: the most recent refusals from this member's
//! security audit log (`security-audit.log`, written by the serving loop
//! for every refused handshake), with counts per reason and per peer
//! address, plus the listener counters since start (which, unlike the log,
//! are not rate limited).
//!
//! Only the tail of the file is read ([`TAIL_BYTES`]), so a large log costs
//! the page nothing; a line that is not JSON is skipped.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use axum::extract::State as AxState;
use axum::response::Response;
use serde::Serialize;
use serde_json::Value;
use tiox_security::Refusal;

use super::{esc, table, St};
use crate::server::State;

/// How much of the end of the log is read.
pub const TAIL_BYTES: u64 = 512 * 1024;
/// Events listed, newest first.
pub const SHOWN: usize = 100;

/// One refusal.
#[derive(Clone, Debug, Serialize)]
pub struct Event {
    /// RFC 3339.
    pub time: String,
    /// `client`, `peer`.
    pub listener: String,
    /// `ip:port`.
    pub peer: String,
    /// `plaintext`, `no_client_cert`, `unknown_ca`, ...
    pub reason: String,
    /// The explanation.
    pub detail: String,
    /// The presented certificate's subject, if any.
    pub subject: Option<String>,
    /// Lines folded into this one by the rate limit.
    pub suppressed: u64,
}

/// The events view.
#[derive(Clone, Debug, Serialize)]
pub struct Events {
    /// The log file.
    pub file: String,
    /// Newest first, at most [`SHOWN`].
    pub recent: Vec<Event>,
    /// Refusals in the tail read, per reason.
    pub per_reason: BTreeMap<String, u64>,
    /// Refusals in the tail read, per peer IP.
    pub per_peer: BTreeMap<String, u64>,
    /// Refusals counted by the listeners since start: (listener, reason, count).
    pub since_start: Vec<(String, String, u64)>,
}

fn tail(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    let from = len.saturating_sub(TAIL_BYTES);
    f.seek(SeekFrom::Start(from))?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    // A cut first line is not JSON; drop it.
    Ok(if from > 0 {
        text.split_once('\n')
            .map_or(String::new(), |(_, r)| r.to_string())
    } else {
        text
    })
}

fn parse(line: &str) -> Option<Event> {
    let v: Value = serde_json::from_str(line).ok()?;
    let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
    Some(Event {
        time: s("time"),
        listener: s("listener"),
        peer: s("peer"),
        reason: s("reason"),
        detail: s("detail"),
        subject: v["subject"].as_str().map(str::to_string),
        suppressed: v["suppressed"].as_u64().unwrap_or(0),
    })
}

fn peer_ip(peer: &str) -> String {
    peer.parse::<std::net::SocketAddr>()
        .map_or_else(|_| peer.to_string(), |a| a.ip().to_string())
}

/// Builds the view from the log text and the listener counters.
pub fn from_log(file: &str, text: &str, since_start: Vec<(String, String, u64)>) -> Events {
    let mut all: Vec<Event> = text.lines().filter_map(parse).collect();
    let mut per_reason = BTreeMap::new();
    let mut per_peer = BTreeMap::new();
    for e in &all {
        let n = e.suppressed.max(1);
        let reason = if e.reason == "suppressed" {
            "suppressed (rate limit)".to_string()
        } else {
            e.reason.clone()
        };
        *per_reason.entry(reason).or_insert(0) += n;
        *per_peer.entry(peer_ip(&e.peer)).or_insert(0) += n;
    }
    all.reverse();
    all.truncate(SHOWN);
    Events {
        file: file.to_string(),
        recent: all,
        per_reason,
        per_peer,
        since_start,
    }
}

/// Reads this member's log.
pub fn gather(s: &State) -> Result<Events, String> {
    let path = s.config.config.security.audit_log_path(&s.config.data_dir);
    let text = match tail(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let mut since = Vec::new();
    for l in [&s.metrics.client, &s.metrics.peer] {
        for (why, n) in l.failures() {
            since.push((l.listener().to_string(), Refusal::label(why).to_string(), n));
        }
    }
    Ok(from_log(&path.display().to_string(), &text, since))
}

fn render(v: &Events) -> String {
    let mut out = format!(
        "<p class=\"note\">From <code>{}</code> on this member (the last {} KiB), newest first.</p>",
        esc(&v.file),
        TAIL_BYTES / 1024
    );
    let counts = |m: &BTreeMap<String, u64>| -> Vec<Vec<String>> {
        m.iter().map(|(k, n)| vec![esc(k), n.to_string()]).collect()
    };
    out.push_str("<div class=\"cols\"><div><h2>Per reason</h2>");
    out.push_str(&table(
        "per-reason",
        &["reason", "refusals"],
        &counts(&v.per_reason),
    ));
    out.push_str("</div><div><h2>Per peer</h2>");
    out.push_str(&table(
        "per-peer",
        &["peer IP", "refusals"],
        &counts(&v.per_peer),
    ));
    out.push_str("</div><div><h2>Since start (counters)</h2>");
    let rows: Vec<Vec<String>> = v
        .since_start
        .iter()
        .map(|(l, r, n)| vec![esc(l), esc(r), n.to_string()])
        .collect();
    out.push_str(&table(
        "since-start",
        &["listener", "reason", "refusals"],
        &rows,
    ));
    out.push_str("</div></div><h2>Recent refusals</h2>");
    let rows: Vec<Vec<String>> = v
        .recent
        .iter()
        .map(|e| {
            vec![
                esc(&e.time),
                esc(&e.listener),
                format!("<code>{}</code>", esc(&e.peer)),
                format!("<span class=\"reason\">{}</span>", esc(&e.reason)),
                esc(&e.detail),
                esc(e.subject.as_deref().unwrap_or("")),
            ]
        })
        .collect();
    out.push_str(&table(
        "events",
        &[
            "time",
            "listener",
            "peer",
            "reason",
            "detail",
            "certificate presented",
        ],
        &rows,
    ));
    out
}

/// `GET /dashboard/events`.
pub async fn page(AxState(s): St) -> Response {
    super::page(&s, "events", gather(&s).map(|v| render(&v)))
}

/// `GET /dashboard/api/events`.
pub async fn api(AxState(s): St) -> Response {
    super::json(gather(&s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_refusals_per_reason_and_peer_and_lists_newest_first() {
        let log = concat!(
            r#"{"time":"t1","listener":"client","peer":"10.0.0.1:5000","reason":"plaintext","detail":"d"}"#,
            "\nnot json\n",
            r#"{"time":"t2","listener":"client","peer":"10.0.0.1:5001","reason":"no_client_cert","detail":"d"}"#,
            "\n",
            r#"{"time":"t3","listener":"peer","peer":"10.0.0.2:7","reason":"suppressed","suppressed":5,"detail":"d"}"#,
            "\n"
        );
        let v = from_log("f", log, Vec::new());
        assert_eq!(v.recent.len(), 3);
        assert_eq!(v.recent[0].time, "t3");
        assert_eq!(v.per_reason["plaintext"], 1);
        assert_eq!(v.per_reason["suppressed (rate limit)"], 5);
        assert_eq!(v.per_peer["10.0.0.1"], 2);
        assert_eq!(v.per_peer["10.0.0.2"], 5);
    }
}
