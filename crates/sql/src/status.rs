//! tidb-server's HTTP status port (TiDB's 10080): `/status` (JSON) and
//! `/metrics` (Prometheus text). It is a cluster-facing port: with
//! `cluster-ssl-*` set it is served over HTTPS with a required client
//! certificate from the cluster CA (and `cluster-verify-cn`), through the
//! security crate's shared serving loop; without, plaintext (warned at
//! startup).

use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use tiox_security::serve::Port;
use tiox_security::{ListenerStats, ServerTls};
use tokio::net::TcpListener;

use crate::server::Shared;

async fn status(State(shared): State<Arc<Shared>>) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "connections": shared.connections(),
        "version": shared.version(),
        "git_hash": "",
        "status": "up",
    }))
}

async fn metrics(State((shared, stats)): State<(Arc<Shared>, Arc<ListenerStats>)>) -> String {
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, v: f64| {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}\n"
        ));
    };
    gauge(
        "tidb_server_connections",
        "Open MySQL connections.",
        shared.connections() as f64,
    );
    gauge(
        "tidb_server_connections_total",
        "MySQL connections accepted since start.",
        shared.total_connections() as f64,
    );
    gauge(
        "tidb_server_aborted_connections_total",
        "MySQL connections refused at login or dropped on protocol errors.",
        shared.aborted_connections() as f64,
    );
    gauge(
        "tidb_server_uptime_seconds",
        "Seconds since start.",
        shared.uptime_secs() as f64,
    );
    gauge(
        "tidb_status_handshake_failures_total",
        "Status-port TLS handshakes refused.",
        stats.failures_total() as f64,
    );
    if let Some(tls) = shared.tls() {
        gauge(
            "tidb_server_mysql_cert_not_after_seconds",
            "Expiry (Unix time) of the MySQL-facing certificate in service.",
            tls.server_cert().not_after.unix_timestamp() as f64,
        );
    }
    let mysql = shared.tls();
    let mut listeners = vec![&*stats];
    if let Some(tls) = &mysql {
        listeners.push(tls.stats());
    }
    out.push_str(&tiox_security::stats::render(&listeners));
    out
}

/// The status routes.
pub fn router(shared: Arc<Shared>, stats: Arc<ListenerStats>) -> Router {
    let status_routes = Router::new()
        .route("/status", get(status))
        .with_state(shared.clone());
    let metrics_routes = Router::new()
        .route("/metrics", get(metrics))
        .with_state((shared, stats));
    status_routes.merge(metrics_routes)
}

/// Serves the status port until the task is dropped.
pub async fn serve(listener: TcpListener, tls: Option<Arc<ServerTls>>, shared: Arc<Shared>) {
    let stats = Arc::new(ListenerStats::new("status"));
    let audit = shared.audit();
    let router = router(shared, stats.clone());
    let port = Port::new("tidb-server status port", tls, stats).with_audit(audit);
    tiox_security::serve::serve(listener, port, router).await;
}
