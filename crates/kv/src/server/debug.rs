//! The debug API on the gRPC port (same listener, same mutual TLS), used by
//! `tikv-ctl --host`: store identity, regions, per-region properties, the
//! MVCC history of one key, and metrics. JSON, keys in hex.
//!
//! ```text
//!  GET /debug/store                     store id, address, version, regions
//!  GET /debug/regions                   every region on this store
//!  GET /debug/region/{id}               one region: peers, leader, epoch, applied index
//!  GET /debug/region/{id}/properties    keys and bytes per column family, MVCC versions
//!  GET /debug/region-for-key/{hex}?mode=raw|txn   the region holding a key (for raw-get/put)
//!  GET /debug/mvcc/{hex}                lock, write records and values of one key
//!  GET /metrics                         as on the status port
//! ```

use std::ops::Bound;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use tiox_engine::{Cf, Engine as _, Snapshot as _};
use tiox_proto::metapb;

use super::status::StatusState;
use crate::codec::{encode_bytes, lock_key, raw_key, split_versioned_key, versioned_key};
use crate::mvcc::reader::MvccReader;
use crate::mvcc::Write;
use crate::raftstore::store::RegionStatus;

type St = State<Arc<StatusState>>;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn error(code: StatusCode, msg: impl Into<String>) -> Response {
    (code, Json(json!({ "error": msg.into() }))).into_response()
}

fn peer_json(p: &metapb::Peer) -> Value {
    json!({ "id": p.id, "store_id": p.store_id, "role": p.role })
}

fn region_json(r: &RegionStatus) -> Value {
    let epoch = r.region.region_epoch.unwrap_or_default();
    json!({
        "id": r.region.id,
        "start_key": hex(&r.region.start_key),
        "end_key": hex(&r.region.end_key),
        "epoch": { "conf_ver": epoch.conf_ver, "version": epoch.version },
        "peers": r.region.peers.iter().map(peer_json).collect::<Vec<_>>(),
        "leader": r.leader.as_ref().map(peer_json),
        "is_leader_here": r.is_leader,
        "applied_index": r.applied,
    })
}

/// The debug routes.
pub fn router(state: StatusState) -> Router {
    Router::new()
        .route("/debug/store", get(store))
        .route("/debug/regions", get(regions))
        .route("/debug/region/{id}", get(region))
        .route("/debug/region/{id}/properties", get(properties))
        .route("/debug/region-for-key/{key}", get(region_for_key))
        .route("/debug/mvcc/{key}", get(mvcc))
        .route("/metrics", get(super::status::metrics))
        .with_state(Arc::new(state))
}

async fn store(State(s): St) -> Response {
    let regions = s.storage.store().regions();
    Json(json!({
        "store_id": s.store_id,
        "version": super::VERSION,
        "region_count": regions.len(),
        "leader_count": regions.iter().filter(|r| r.is_leader).count(),
        "engine_size_bytes": s.storage.engine().disk_size(),
        "tls": s.tls.is_some(),
    }))
    .into_response()
}

async fn regions(State(s): St) -> Response {
    let list: Vec<Value> = s
        .storage
        .store()
        .regions()
        .iter()
        .map(region_json)
        .collect();
    Json(json!({ "count": list.len(), "regions": list })).into_response()
}

async fn region(State(s): St, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<u64>() else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("region id \"{id}\" is not a number"),
        );
    };
    match s.storage.store().region(id) {
        Some(r) => Json(region_json(&r)).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            format!("region {id} is not on this store"),
        ),
    }
}

async fn properties(State(s): St, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<u64>() else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("region id \"{id}\" is not a number"),
        );
    };
    let Some(r) = s.storage.store().region(id) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("region {id} is not on this store"),
        );
    };
    let snap = s.storage.engine().snapshot();
    // Transactional data of the region: 'z' + its (encoded) range.
    let mut lo = vec![crate::codec::TXN_PREFIX];
    lo.extend_from_slice(&r.region.start_key);
    let hi = if r.region.end_key.is_empty() {
        vec![crate::codec::TXN_PREFIX + 1]
    } else {
        let mut h = vec![crate::codec::TXN_PREFIX];
        h.extend_from_slice(&r.region.end_key);
        h
    };
    let mut cfs = serde_json::Map::new();
    let mut versions = 0u64;
    let mut deletes = 0u64;
    let mut rows = std::collections::BTreeSet::new();
    for cf in [Cf::Default, Cf::Lock, Cf::Write] {
        let (mut keys, mut bytes) = (0u64, 0u64);
        for kv in snap.iter(cf, Bound::Included(&lo), Bound::Excluded(&hi), false) {
            let Ok((k, v)) = kv else { continue };
            keys += 1;
            bytes += (k.len() + v.len()) as u64;
            if cf == Cf::Write {
                if let (Ok((user, _)), Ok(w)) = (split_versioned_key(&k), Write::from_bytes(&v)) {
                    if w.is_data_change() {
                        versions += 1;
                        if w.write_type == crate::mvcc::WriteType::Delete {
                            deletes += 1;
                        }
                        rows.insert(user);
                    }
                }
            }
        }
        cfs.insert(
            cf.name().into(),
            json!({ "num_keys": keys, "size_bytes": bytes }),
        );
    }
    let raw_keys = snap
        .iter(
            Cf::Default,
            Bound::Included(&[crate::codec::RAW_PREFIX][..]),
            Bound::Excluded(&[crate::codec::RAW_PREFIX + 1][..]),
            false,
        )
        .count();
    Json(json!({
        "region_id": id,
        "column_families": cfs,
        "mvcc": { "num_rows": rows.len(), "num_versions": versions, "num_deletes": deletes },
        "raw": { "num_keys": raw_keys },
    }))
    .into_response()
}

#[derive(serde::Deserialize)]
struct ModeQ {
    mode: Option<String>,
}

async fn region_for_key(State(s): St, Path(key): Path<String>, Query(q): Query<ModeQ>) -> Response {
    let Some(key) = unhex(&key) else {
        return error(StatusCode::BAD_REQUEST, "the key must be hex");
    };
    let k = match q.mode.as_deref() {
        Some("txn") => encode_bytes(&key),
        None | Some("raw") => key,
        Some(other) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("mode \"{other}\": use raw or txn"),
            )
        }
    };
    for r in s.storage.store().regions() {
        let inside =
            k >= r.region.start_key && (r.region.end_key.is_empty() || k < r.region.end_key);
        if inside {
            return Json(region_json(&r)).into_response();
        }
    }
    error(
        StatusCode::NOT_FOUND,
        "no region on this store holds that key",
    )
}

async fn mvcc(State(s): St, Path(key): Path<String>) -> Response {
    let Some(key) = unhex(&key) else {
        return error(StatusCode::BAD_REQUEST, "the key must be hex");
    };
    let snap = s.storage.engine().snapshot();
    let reader = MvccReader::new(&snap);
    let lock = match reader.load_lock(&key) {
        Ok(l) => l.map(|l| {
            json!({
                "type": format!("{:?}", l.lock_type),
                "primary": hex(&l.primary),
                "start_ts": l.ts,
                "ttl": l.ttl,
                "for_update_ts": l.for_update_ts,
                "min_commit_ts": l.min_commit_ts,
                "short_value": l.short_value.as_deref().map(hex),
            })
        }),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let lo = versioned_key(&key, u64::MAX);
    let hi = versioned_key(&key, 0);
    let mut writes = Vec::new();
    for kv in snap.iter(Cf::Write, Bound::Included(&lo), Bound::Included(&hi), false) {
        let Ok((k, v)) = kv else { continue };
        if let (Ok((_, commit_ts)), Ok(w)) = (split_versioned_key(&k), Write::from_bytes(&v)) {
            writes.push(json!({
                "commit_ts": commit_ts,
                "type": format!("{:?}", w.write_type),
                "start_ts": w.start_ts,
                "short_value": w.short_value.as_deref().map(hex),
            }));
        }
    }
    let mut values = Vec::new();
    for kv in snap.iter(
        Cf::Default,
        Bound::Included(&lo),
        Bound::Included(&hi),
        false,
    ) {
        let Ok((k, v)) = kv else { continue };
        if let Ok((_, start_ts)) = split_versioned_key(&k) {
            values.push(json!({ "start_ts": start_ts, "value": hex(&v) }));
        }
    }
    let raw = snap
        .get(Cf::Default, &raw_key(&key))
        .ok()
        .flatten()
        .map(|v| hex(&v));
    Json(json!({
        "key": hex(&key),
        "lock_cf_key": hex(&lock_key(&key)),
        "lock": lock,
        "writes": writes,
        "values": values,
        "raw_value": raw,
    }))
    .into_response()
}
