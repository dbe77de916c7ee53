//! PD's metrics, rendered as Prometheus text on `/metrics`.
//!
//! Counters are plain atomics (the TSO path touches two of them per
//! request); gauges are read from the state when scraped, including the
//! not-after time of the certificate currently in service, so an operator
//! can alert before it expires.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tiox_security::ListenerStats;

/// Process-wide counters.
#[derive(Debug)]
pub struct Metrics {
    /// TSO requests served.
    pub tso_requests: AtomicU64,
    /// Timestamps handed out.
    pub tso_timestamps: AtomicU64,
    /// HTTP API requests.
    pub http_requests: AtomicU64,
    /// The client port's connection and TLS counters.
    pub client: Arc<ListenerStats>,
    /// The peer port's connection and TLS counters.
    pub peer: Arc<ListenerStats>,
    grpc: Mutex<BTreeMap<&'static str, u64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            tso_requests: AtomicU64::new(0),
            tso_timestamps: AtomicU64::new(0),
            http_requests: AtomicU64::new(0),
            client: Arc::new(ListenerStats::new("client")),
            peer: Arc::new(ListenerStats::new("peer")),
            grpc: Mutex::default(),
        }
    }
}

impl Metrics {
    /// Counts one unary or stream-opening gRPC call.
    pub fn grpc(&self, method: &'static str) {
        let mut m = self.grpc.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry(method).or_default() += 1;
    }

    /// Renders the counters plus the given gauges `(name, help, labels, value)`.
    pub fn render(&self, gauges: &[(&str, &str, String, f64)]) -> String {
        let mut out = String::new();
        let counter = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        };
        counter(
            &mut out,
            "pd_tso_requests_total",
            "TSO requests served.",
            self.tso_requests.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "pd_tso_timestamps_total",
            "Timestamps handed out.",
            self.tso_timestamps.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "pd_http_requests_total",
            "HTTP API requests.",
            self.http_requests.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "pd_tls_handshake_failures_total",
            "Client-port connections refused during the TLS handshake.",
            self.client.failures_total(),
        );
        counter(
            &mut out,
            "pd_connections_total",
            "Client-port connections accepted.",
            self.client.connections.load(Ordering::Relaxed),
        );
        let _ = writeln!(
            out,
            "# HELP pd_grpc_requests_total gRPC calls by method.\n# TYPE pd_grpc_requests_total counter"
        );
        for (method, v) in self.grpc.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = writeln!(out, "pd_grpc_requests_total{{method=\"{method}\"}} {v}");
        }
        out.push_str(&tiox_security::stats::render(&[&self.client, &self.peer]));
        let mut last = "";
        for (name, help, labels, v) in gauges {
            if *name != last {
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
                last = name;
            }
            if labels.is_empty() {
                let _ = writeln!(out, "{name} {v}");
            } else {
                let _ = writeln!(out, "{name}{{{labels}}} {v}");
            }
        }
        out
    }
}

/// Escapes a Prometheus label value.
pub fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
