//! PD's HTTP JSON API under `/pd/api/v1/` and `/metrics`, on the same port
//! (and the same router) as gRPC.
//!
//! JSON is shaped as PD's so pd-ctl users see familiar objects (stores with
//! `id`, `address`, `state_name`, `version`; regions with hex keys, `epoch`,
//! `peers`, `leader`). Unknown ids are 404 with `{"error": "..."}`;
//! malformed ids or keys are 400 with the same shape; nothing in a request
//! can make a handler panic.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::{RawPathParams, State as AxState};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use tiox_proto::{metapb, pdpb};

use crate::config::{Scheme, Url};
use crate::grpc::PdService;
use crate::meta::{RegionInfo, StoreInfo};
use crate::metrics::label;
use crate::replication::{member_id, MemberInfo};
use crate::server::{now_ms, State, VERSION};

type St = AxState<Arc<State>>;

/// The full router: gRPC `pdpb.PD`, the HTTP API and `/metrics`.
pub fn router(state: Arc<State>) -> Router {
    let grpc = tonic::service::Routes::new(pdpb::pd_server::PdServer::new(PdService::new(
        state.clone(),
    )));
    let grpc = crate::etcd::add_services(grpc, &state).into_axum_router();
    let api = Router::new()
        .route("/pd/api/v1/cluster", get(cluster))
        .route("/pd/api/v1/members", get(members).post(add_member))
        .route(
            "/pd/api/v1/members/name/{name}",
            axum::routing::delete(remove_member),
        )
        .route("/pd/api/v1/leader", get(leader))
        .route("/pd/api/v1/stores", get(stores))
        .route("/pd/api/v1/store/{id}", get(store))
        .route("/pd/api/v1/regions", get(regions))
        .route("/pd/api/v1/region/id/{id}", get(region_by_id))
        .route("/pd/api/v1/region/key/{*key}", get(region_by_key))
        .route("/pd/api/v1/health", get(health))
        .route("/pd/api/v1/config", get(config))
        .route("/pd/api/v1/version", get(version))
        .route("/metrics", get(metrics))
        .with_state(state.clone());
    grpc.merge(api)
        .merge(crate::dashboard::router(state.clone()))
        .fallback(fallback)
        .layer(axum::middleware::from_fn_with_state(
            state,
            crate::forward::forward_grpc,
        ))
}

/// A JSON error response.
fn error(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, Json(json!({ "error": msg.into() }))).into_response()
}

async fn fallback(headers: HeaderMap, uri: Uri) -> Response {
    let grpc = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"));
    if grpc {
        let mut resp = Response::new(axum::body::Body::empty());
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/grpc"),
        );
        h.insert("grpc-status", header::HeaderValue::from_static("12"));
        h.insert(
            "grpc-message",
            header::HeaderValue::from_static("method not implemented by tiox PD"),
        );
        return resp;
    }
    error(
        StatusCode::NOT_FOUND,
        format!("no such API: {}", uri.path()),
    )
}

fn count(s: &State) {
    s.metrics.http_requests.fetch_add(1, Ordering::Relaxed);
}

fn parse_id(params: &RawPathParams) -> Result<u64, String> {
    let raw = params
        .iter()
        .find(|(k, _)| *k == "id")
        .map(|(_, v)| v)
        .unwrap_or_default();
    raw.parse::<u64>()
        .map_err(|_| format!("\"{raw}\" is not a valid id: expected a non-negative integer"))
}

fn member_json(m: &pdpb::Member) -> Value {
    json!({
        "name": m.name,
        "member_id": m.member_id,
        "peer_urls": m.peer_urls,
        "client_urls": m.client_urls,
        "binary_version": m.binary_version,
        "deploy_path": m.deploy_path,
        "leader_priority": m.leader_priority,
    })
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}

pub(crate) fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{b}B")
    } else {
        format!("{v:.3}{}", UNITS[i])
    }
}

fn rfc3339_ms(ms: u64) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// `Up`, `Disconnected` (no heartbeat for 20s), `Down` (30 min),
/// `Offline` or `Tombstone`, as PD names them.
pub fn state_name(info: &StoreInfo, now_ms: u64) -> &'static str {
    match metapb::StoreState::try_from(info.store.state) {
        Ok(metapb::StoreState::Tombstone) => "Tombstone",
        Ok(metapb::StoreState::Offline) => "Offline",
        _ => {
            let since = now_ms.saturating_sub(info.last_heartbeat_ms);
            if info.last_heartbeat_ms == 0 || since > 30 * 60_000 {
                if info.last_heartbeat_ms == 0 {
                    "Disconnected"
                } else {
                    "Down"
                }
            } else if since > 20_000 {
                "Disconnected"
            } else {
                "Up"
            }
        }
    }
}

fn store_json(info: &StoreInfo, leaders: usize, regions: usize, now: u64) -> Value {
    let s = &info.store;
    let stats = info.stats.unwrap_or_default();
    let mut status = json!({
        "capacity": human_bytes(stats.capacity),
        "available": human_bytes(stats.available),
        "used_size": human_bytes(stats.used_size),
        "leader_count": leaders,
        "region_count": regions,
    });
    if info.last_heartbeat_ms > 0 {
        status["last_heartbeat_ts"] = json!(rfc3339_ms(info.last_heartbeat_ms));
        if stats.start_time > 0 {
            let up_s = (now / 1000).saturating_sub(u64::from(stats.start_time));
            status["uptime"] = json!(format!("{}h{}m{}s", up_s / 3600, up_s / 60 % 60, up_s % 60));
        }
    }
    json!({
        "store": {
            "id": s.id,
            "address": s.address,
            "state": s.state,
            "state_name": state_name(info, now),
            "labels": s.labels.iter().map(|l| json!({"key": l.key, "value": l.value})).collect::<Vec<_>>(),
            "version": s.version,
            "peer_address": s.peer_address,
            "status_address": s.status_address,
            "git_hash": s.git_hash,
            "start_timestamp": s.start_timestamp,
            "deploy_path": s.deploy_path,
            "last_heartbeat": s.last_heartbeat,
            "node_state": s.node_state,
        },
        "status": status,
    })
}

fn peer_json(p: &metapb::Peer) -> Value {
    let role = metapb::PeerRole::try_from(p.role).map_or("Voter", |r| r.as_str_name());
    json!({"id": p.id, "store_id": p.store_id, "role": p.role, "role_name": role})
}

fn region_json(r: &RegionInfo) -> Value {
    let e = r.region.region_epoch.unwrap_or_default();
    let mut v = json!({
        "id": r.region.id,
        "start_key": hex(&r.region.start_key),
        "end_key": hex(&r.region.end_key),
        "epoch": {"conf_ver": e.conf_ver, "version": e.version},
        "peers": r.region.peers.iter().map(peer_json).collect::<Vec<_>>(),
        "down_peers": r.down_peers.iter().map(|d| json!({
            "peer": d.peer.as_ref().map(peer_json),
            "down_seconds": d.down_seconds,
        })).collect::<Vec<_>>(),
        "pending_peers": r.pending_peers.iter().map(peer_json).collect::<Vec<_>>(),
        "approximate_size": r.approximate_size >> 20,
        "approximate_keys": r.approximate_keys,
    });
    if let Some(l) = &r.leader {
        v["leader"] = peer_json(l);
    }
    v
}

async fn cluster(AxState(s): St, uri: Uri) -> Response {
    count(&s);
    let c = match s.cluster() {
        Ok(c) => c.meta.cluster,
        Err(e) => return not_leader(&e, &uri),
    };
    Json(json!({"id": s.cluster_id, "max_peer_count": c.max_peer_count})).into_response()
}

async fn members(AxState(s): St) -> Response {
    count(&s);
    let (members, leader) = s.members_view();
    let leader = leader.map(|l| member_json(&l));
    Json(json!({
        "header": {"cluster_id": s.cluster_id},
        "members": members.iter().map(member_json).collect::<Vec<_>>(),
        "leader": leader.clone(),
        "etcd_leader": leader,
    }))
    .into_response()
}

/// `POST /pd/api/v1/members`: a new member (`pd-server --join`) asks to be
/// added as a voter. Answered by the leader; followers redirect.
async fn add_member(AxState(s): St, uri: Uri, body: axum::body::Bytes) -> Response {
    count(&s);
    let info: MemberInfo = match serde_json::from_slice(&body) {
        Ok(i) => i,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("the body must be a JSON member {{id, name, client_urls, peer_urls}}: {e}"),
            )
        }
    };
    if info.name.trim().is_empty() || info.id != member_id(&info.name) {
        return error(
            StatusCode::BAD_REQUEST,
            "the member's name is empty or its id does not match its name",
        );
    }
    let want = if s.tls().is_some() {
        Scheme::Https
    } else {
        Scheme::Http
    };
    for (key, urls) in [
        ("peer_urls", &info.peer_urls),
        ("client_urls", &info.client_urls),
    ] {
        if urls.is_empty() {
            return error(StatusCode::BAD_REQUEST, format!("{key} is empty"));
        }
        for u in urls {
            match Url::parse(u, key) {
                Ok(url) if url.scheme == want => {}
                Ok(_) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        format!(
                        "{key} has \"{u}\", whose scheme does not match this cluster's TLS setting"
                    ),
                    )
                }
                Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
            }
        }
    }
    let st = s.clone();
    match tokio::task::spawn_blocking(move || st.add_member(info)).await {
        Ok(Ok(members)) => Json(json!({ "members": members })).into_response(),
        Ok(Err(e @ crate::Error::NotLeader { .. })) => not_leader(&e, &uri),
        Ok(Err(e @ crate::Error::InvalidValue(_))) => error(StatusCode::BAD_REQUEST, e.to_string()),
        Ok(Err(e)) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// `DELETE /pd/api/v1/members/name/{name}`: removes a member (Raft
/// `RemoveNode`). Answered by the leader; followers redirect.
async fn remove_member(AxState(s): St, params: RawPathParams, uri: Uri) -> Response {
    count(&s);
    let name = params
        .iter()
        .find(|(k, _)| *k == "name")
        .map(|(_, v)| v.to_string())
        .unwrap_or_default();
    let known = s.members_view().0.iter().any(|m| m.name == name);
    if !known {
        return error(
            StatusCode::NOT_FOUND,
            format!("member \"{name}\" not found"),
        );
    }
    let st = s.clone();
    match tokio::task::spawn_blocking(move || st.remove_member(&name)).await {
        Ok(Ok(())) => Json(json!({ "removed": true })).into_response(),
        Ok(Err(e @ crate::Error::NotLeader { .. })) => not_leader(&e, &uri),
        Ok(Err(e @ crate::Error::InvalidValue(_))) => error(StatusCode::BAD_REQUEST, e.to_string()),
        Ok(Err(e)) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn leader(AxState(s): St) -> Response {
    count(&s);
    match s.members_view().1 {
        Some(l) => Json(member_json(&l)).into_response(),
        None => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no PD leader is elected yet; retry shortly",
        ),
    }
}

/// The answer of a member that cannot serve a request itself: a redirect
/// to the leader (same path) when it is known, 503 otherwise.
fn not_leader(e: &crate::Error, uri: &Uri) -> Response {
    match e {
        crate::Error::NotLeader { leader: Some(url) } => {
            let location = format!(
                "{}{}",
                url.trim_end_matches('/'),
                uri.path_and_query().map_or("/", |p| p.as_str())
            );
            let mut resp = error(
                StatusCode::TEMPORARY_REDIRECT,
                format!("this PD member is not the leader; the leader is {url}"),
            );
            if let Ok(v) = header::HeaderValue::from_str(&location) {
                resp.headers_mut().insert(header::LOCATION, v);
            }
            resp
        }
        other => error(StatusCode::SERVICE_UNAVAILABLE, other.to_string()),
    }
}

fn store_counts(meta: &crate::meta::Meta, store_id: u64) -> (usize, usize) {
    let mut leaders = 0;
    let mut regions = 0;
    for r in meta.regions() {
        if r.region.peers.iter().any(|p| p.store_id == store_id) {
            regions += 1;
        }
        if r.leader.is_some_and(|l| l.store_id == store_id) {
            leaders += 1;
        }
    }
    (leaders, regions)
}

async fn stores(AxState(s): St, uri: Uri) -> Response {
    count(&s);
    let now = now_ms();
    let c = match s.cluster() {
        Ok(c) => c,
        Err(e) => return not_leader(&e, &uri),
    };
    let list: Vec<Value> = c
        .meta
        .stores()
        .map(|i| {
            let (l, r) = store_counts(&c.meta, i.store.id);
            store_json(i, l, r, now)
        })
        .collect();
    Json(json!({"count": list.len(), "stores": list})).into_response()
}

async fn store(AxState(s): St, params: RawPathParams, uri: Uri) -> Response {
    count(&s);
    let id = match parse_id(&params) {
        Ok(id) => id,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let c = match s.cluster() {
        Ok(c) => c,
        Err(e) => return not_leader(&e, &uri),
    };
    match c.meta.store(id) {
        Ok(info) => {
            let (l, r) = store_counts(&c.meta, id);
            Json(store_json(info, l, r, now_ms())).into_response()
        }
        Err(_) => error(StatusCode::NOT_FOUND, format!("store {id} not found")),
    }
}

async fn regions(AxState(s): St, uri: Uri) -> Response {
    count(&s);
    let c = match s.cluster() {
        Ok(c) => c,
        Err(e) => return not_leader(&e, &uri),
    };
    let list: Vec<Value> = c.meta.regions().map(region_json).collect();
    Json(json!({"count": list.len(), "regions": list})).into_response()
}

async fn region_by_id(AxState(s): St, params: RawPathParams, uri: Uri) -> Response {
    count(&s);
    let id = match parse_id(&params) {
        Ok(id) => id,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let c = match s.cluster() {
        Ok(c) => c,
        Err(e) => return not_leader(&e, &uri),
    };
    match c.meta.region(id) {
        Some(r) => Json(region_json(r)).into_response(),
        None => error(StatusCode::NOT_FOUND, format!("region {id} not found")),
    }
}

/// Decodes `%XX` escapes into raw bytes (keys need not be UTF-8).
pub fn percent_decode(s: &str) -> Result<Vec<u8>, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad percent escape at byte {i} of \"{s}\""))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Ok(out)
}

async fn region_by_key(AxState(s): St, uri: Uri) -> Response {
    count(&s);
    let raw = uri
        .path()
        .strip_prefix("/pd/api/v1/region/key/")
        .unwrap_or_default();
    let key = match percent_decode(raw) {
        Ok(k) => k,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let c = match s.cluster() {
        Ok(c) => c,
        Err(e) => return not_leader(&e, &uri),
    };
    match c.meta.region_by_key(&key) {
        Some(r) => Json(region_json(r)).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            format!("no region contains key {} (not bootstrapped?)", hex(&key)),
        ),
    }
}

async fn health(AxState(s): St) -> Response {
    count(&s);
    let (members, _) = s.members_view();
    let reachable = s.reachable_member_ids();
    let list: Vec<Value> = members
        .iter()
        .map(|m| {
            json!({
                "name": m.name,
                "member_id": m.member_id,
                "client_urls": m.client_urls,
                "health": reachable.contains(&m.member_id),
            })
        })
        .collect();
    Json(Value::Array(list)).into_response()
}

async fn config(AxState(s): St) -> Response {
    count(&s);
    let c = &s.config.config;
    let max = s.cluster().map_or(c.replication.max_replicas, |c| {
        c.meta.cluster.max_peer_count
    });
    Json(json!({
        "name": c.name,
        "data-dir": s.config.data_dir.display().to_string(),
        "client-urls": c.client_urls,
        "peer-urls": c.peer_urls,
        "advertise-client-urls": c.advertise_client_urls,
        "advertise-peer-urls": c.advertise_peer_urls,
        "initial-cluster": c.initial_cluster,
        "replication": {"max-replicas": max},
        "security": {
            "cacert-path": c.security.ca_path,
            "cert-path": c.security.cert_path,
            "key-path": c.security.key_path,
            "cert-allowed-cn": c.security.cert_allowed_cn,
        },
    }))
    .into_response()
}

async fn version(AxState(s): St) -> Response {
    count(&s);
    Json(json!({"version": format!("v{VERSION}")})).into_response()
}

async fn metrics(AxState(s): St) -> Response {
    count(&s);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        metrics_text(&s),
    )
        .into_response()
}

/// The Prometheus text `/metrics` serves (the dashboard samples it too).
pub(crate) fn metrics_text(s: &State) -> String {
    let mut gauges: Vec<(&str, &str, String, f64)> = Vec::new();
    if let Ok(c) = s.cluster() {
        gauges.push((
            "pd_cluster_regions",
            "Regions known to PD.",
            String::new(),
            c.meta.region_count() as f64,
        ));
        gauges.push((
            "pd_cluster_stores",
            "Stores known to PD.",
            String::new(),
            c.meta.stores().count() as f64,
        ));
        gauges.push((
            "pd_tso_saved_until_ms",
            "End of the persisted TSO window (unix ms).",
            String::new(),
            c.tso_saved_until() as f64,
        ));
    }
    if let Some(tls) = s.tls() {
        let m = tls.source.current();
        let help = "Not-after time (unix seconds) of each certificate in service.";
        gauges.push((
            "tiox_tls_cert_not_after_seconds",
            help,
            format!(
                "component=\"pd-server\",kind=\"server\",file=\"{}\",subject=\"{}\"",
                label(&tls.source.files().cert.display().to_string()),
                label(&m.leaf.subject)
            ),
            m.leaf.not_after.unix_timestamp() as f64,
        ));
        for ca in &m.ca_infos {
            gauges.push((
                "tiox_tls_cert_not_after_seconds",
                help,
                format!(
                    "component=\"pd-server\",kind=\"ca\",file=\"{}\",subject=\"{}\"",
                    label(&tls.source.files().ca.display().to_string()),
                    label(&ca.subject)
                ),
                ca.not_after.unix_timestamp() as f64,
            ));
        }
        gauges.push((
            "tiox_tls_reload_generation",
            "How many times the TLS files were reloaded.",
            "component=\"pd-server\"".into(),
            m.generation as f64,
        ));
    }
    gauges.push((
        "tiox_tls_enabled",
        "1 when every link is mutual TLS, 0 when started with --insecure.",
        "component=\"pd-server\"".into(),
        if s.tls().is_some() { 1.0 } else { 0.0 },
    ));
    gauges.push((
        "pd_start_time_seconds",
        "Process start (unix seconds).",
        String::new(),
        (s.started_ms / 1000) as f64,
    ));
    s.metrics.render(&gauges)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding_accepts_raw_bytes_and_refuses_bad_escapes() {
        assert_eq!(percent_decode("a%2Fb%00").unwrap(), b"a/b\0");
        assert!(percent_decode("a%2").is_err());
        assert!(percent_decode("%zz").is_err());
    }
}
