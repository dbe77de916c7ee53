//! The status port (`--status-addr`, default 20180): `/metrics` in
//! Prometheus text and `/status` in JSON, served over the same mutual TLS as
//! the gRPC port. A plaintext request is refused at the handshake and
//! logged; it never reaches a handler, so it cannot crash anything.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use tiox_engine::Engine as _;
use tiox_security::TlsSettings;

use super::{Metrics, VERSION};
use crate::storage::Storage;

/// What the status handlers read.
#[derive(Clone)]
pub struct StatusState {
    /// The store.
    pub storage: Arc<Storage>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// TLS settings (for certificate gauges).
    pub tls: Option<TlsSettings>,
    /// Store id.
    pub store_id: u64,
    /// Start time.
    pub started: Instant,
}

/// The status router.
pub fn router(state: StatusState) -> Router {
    Router::new()
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                Json(serde_json::json!({"error": "not found: try /status or /metrics"})),
            )
        })
        .with_state(Arc::new(state))
}

async fn status(State(s): State<Arc<StatusState>>) -> Response {
    let regions = s.storage.store().regions();
    Json(serde_json::json!({
        "version": VERSION,
        "store_id": s.store_id,
        "uptime_seconds": s.started.elapsed().as_secs(),
        "region_count": regions.len(),
        "leader_count": regions.iter().filter(|r| r.is_leader).count(),
        "tls": s.tls.is_some(),
    }))
    .into_response()
}

/// `/metrics` in Prometheus text.
pub async fn metrics(State(s): State<Arc<StatusState>>) -> Response {
    let mut out = String::new();
    let _ = writeln!(out, "# HELP tikv_grpc_requests_total gRPC requests served, by method.\n# TYPE tikv_grpc_requests_total counter");
    let rpcs = s.metrics.rpcs();
    for (m, c, _) in &rpcs {
        let _ = writeln!(out, "tikv_grpc_requests_total{{method=\"{m}\"}} {c}");
    }
    let _ = writeln!(out, "# HELP tikv_grpc_request_duration_seconds_sum Total time spent serving, by method.\n# TYPE tikv_grpc_request_duration_seconds_sum counter");
    for (m, _, secs) in &rpcs {
        let _ = writeln!(
            out,
            "tikv_grpc_request_duration_seconds_sum{{method=\"{m}\"}} {secs}"
        );
    }
    let regions = s.storage.store().regions();
    let _ = writeln!(
        out,
        "# TYPE tikv_regions gauge\ntikv_regions {}",
        regions.len()
    );
    let _ = writeln!(
        out,
        "# TYPE tikv_region_leaders gauge\ntikv_region_leaders {}",
        regions.iter().filter(|r| r.is_leader).count()
    );
    let _ = writeln!(
        out,
        "# TYPE tikv_engine_size_bytes gauge\ntikv_engine_size_bytes {}",
        s.storage.engine().disk_size()
    );
    let _ = writeln!(
        out,
        "# TYPE tikv_pd_heartbeats_total counter\ntikv_pd_heartbeats_total {}",
        s.metrics.heartbeats.load(Ordering::Relaxed)
    );
    out.push_str(&tiox_security::stats::render(&[
        &s.metrics.grpc,
        &s.metrics.status,
    ]));
    let _ = writeln!(
        out,
        "# HELP tiox_tls_enabled 1 when every link is mutual TLS, 0 when started with --insecure.\n# TYPE tiox_tls_enabled gauge\ntiox_tls_enabled{{component=\"tikv-server\"}} {}",
        u8::from(s.tls.is_some())
    );
    if let Some(t) = &s.tls {
        let m = t.source.current();
        let _ = writeln!(out, "# HELP tiox_tls_certificate_not_after_seconds Expiry (unix seconds) of each loaded certificate.\n# TYPE tiox_tls_certificate_not_after_seconds gauge");
        let _ = writeln!(
            out,
            "tiox_tls_certificate_not_after_seconds{{component=\"tikv-server\",role=\"cert\",file=\"{}\"}} {}",
            t.source.files().cert.display(),
            m.leaf.not_after.unix_timestamp()
        );
        for ca in &m.ca_infos {
            let _ = writeln!(
                out,
                "tiox_tls_certificate_not_after_seconds{{component=\"tikv-server\",role=\"ca\",file=\"{}\"}} {}",
                t.source.files().ca.display(),
                ca.not_after.unix_timestamp()
            );
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}
