//! Per-listener TLS counters, rendered the same way in every component's
//! `/metrics`:
//!
//! ```text
//!  tiox_connections_total{listener}                connections served
//!  tiox_tls_handshakes_total{listener,group}       completed handshakes by key exchange group
//!  tiox_tls_handshake_failures_total{listener,reason}  refusals by reason
//! ```
//!
//! `group` is the negotiated key exchange (`X25519MLKEM768` for the
//! post-quantum hybrid, `X25519`, `secp256r1`, ...); `reason` is a
//! [`Refusal`] label. The counters are written by the serving loop
//! ([`crate::serve`]) and by tidb-server's MySQL port.

use std::collections::BTreeMap;
use std::fmt::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Why a handshake (or a connection on a TLS port) was refused; the label
/// in `tiox_tls_handshake_failures_total` and in the audit log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Refusal {
    /// The peer did not speak TLS on a TLS port.
    Plaintext,
    /// No client certificate where one is required.
    NoCertificate,
    /// The certificate was not issued by our CA (or its signature is bad).
    UnknownCa,
    /// Its CN or SANs are not in the allow-lists.
    NotAllowed,
    /// It is on a certificate revocation list.
    Revoked,
    /// It has expired or is not valid yet.
    Expired,
    /// No common protocol version or cipher suite (e.g. TLS 1.2 against
    /// `tls-min-version = "1.3"`).
    Protocol,
    /// No handshake within the handshake timeout.
    Timeout,
    /// Too many handshakes in flight on the listener: the oldest was dropped.
    Overload,
    /// A MySQL login with a wrong password (or an unknown account).
    Password,
    /// A MySQL account's `REQUIRE` rule was not met.
    RequireNotMet,
    /// Anything else (the peer went away, a bad certificate otherwise).
    Other,
}

impl Refusal {
    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Plaintext => "plaintext",
            Refusal::NoCertificate => "no_certificate",
            Refusal::UnknownCa => "unknown_ca",
            Refusal::NotAllowed => "not_allowed",
            Refusal::Revoked => "revoked",
            Refusal::Expired => "expired",
            Refusal::Protocol => "protocol",
            Refusal::Timeout => "timeout",
            Refusal::Overload => "overload",
            Refusal::Password => "password",
            Refusal::RequireNotMet => "require_not_met",
            Refusal::Other => "other",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// The counters of one listener.
#[derive(Debug)]
pub struct ListenerStats {
    listener: &'static str,
    /// Connections served (after a successful handshake, if TLS).
    pub connections: AtomicU64,
    handshakes: Mutex<BTreeMap<String, u64>>,
    failures: Mutex<BTreeMap<Refusal, u64>>,
}

impl ListenerStats {
    /// Counters for the listener labelled `listener` ("client", "peer",
    /// "grpc", "status", "mysql").
    pub fn new(listener: &'static str) -> ListenerStats {
        ListenerStats {
            listener,
            connections: AtomicU64::new(0),
            handshakes: Mutex::new(BTreeMap::new()),
            failures: Mutex::new(BTreeMap::new()),
        }
    }

    /// The listener label.
    pub fn listener(&self) -> &'static str {
        self.listener
    }

    /// Counts a completed handshake that negotiated `group`.
    pub fn handshake(&self, group: Option<&str>) {
        let mut m = self.handshakes.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry(group.unwrap_or("none").to_string()).or_default() += 1;
    }

    /// Counts a refusal.
    pub fn refused(&self, why: Refusal) {
        let mut m = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry(why).or_default() += 1;
    }

    /// All refusals so far.
    pub fn failures_total(&self) -> u64 {
        let m = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        m.values().sum()
    }

    /// Completed handshakes by key exchange group.
    pub fn handshakes(&self) -> BTreeMap<String, u64> {
        self.handshakes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Refusals by reason.
    pub fn failures(&self) -> BTreeMap<Refusal, u64> {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Renders the counters of a component's listeners as Prometheus text.
pub fn render(listeners: &[&ListenerStats]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP tiox_connections_total Connections served, by listener.\n\
         # TYPE tiox_connections_total counter"
    );
    for l in listeners {
        let _ = writeln!(
            out,
            "tiox_connections_total{{listener=\"{}\"}} {}",
            l.listener,
            l.connections.load(Ordering::Relaxed)
        );
    }
    let _ = writeln!(
        out,
        "# HELP tiox_tls_handshakes_total Completed TLS handshakes, by listener and negotiated \
         key exchange group.\n# TYPE tiox_tls_handshakes_total counter"
    );
    for l in listeners {
        for (group, n) in l.handshakes() {
            let _ = writeln!(
                out,
                "tiox_tls_handshakes_total{{listener=\"{}\",group=\"{group}\"}} {n}",
                l.listener
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP tiox_tls_handshake_failures_total Refused TLS handshakes, by listener and \
         reason.\n# TYPE tiox_tls_handshake_failures_total counter"
    );
    for l in listeners {
        for (why, n) in l.failures() {
            let _ = writeln!(
                out,
                "tiox_tls_handshake_failures_total{{listener=\"{}\",reason=\"{}\"}} {n}",
                l.listener,
                why.label()
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_handshakes_by_group_and_failures_by_reason() {
        let s = ListenerStats::new("grpc");
        s.handshake(Some("X25519MLKEM768"));
        s.handshake(Some("X25519MLKEM768"));
        s.refused(Refusal::UnknownCa);
        let text = render(&[&s]);
        assert!(text
            .contains("tiox_tls_handshakes_total{listener=\"grpc\",group=\"X25519MLKEM768\"} 2"));
        assert!(text.contains(
            "tiox_tls_handshake_failures_total{listener=\"grpc\",reason=\"unknown_ca\"} 1"
        ));
        assert_eq!(s.failures_total(), 1);
    }
}
