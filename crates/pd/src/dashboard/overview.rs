//! The overview page: PD members (leader marked, reachable or not), the
//! stores with their state, capacity, region and leader counts, versions
//! and uptime, and a one-line health summary.
//!
//! TiDB servers do not register with tiox's PD (TiDB registers in etcd,
//! which tiox's PD does not serve yet), so they are not listed.

use std::collections::HashMap;

use serde::Serialize;

use super::{authority, esc, human_secs, table, St};
use crate::http::{human_bytes, state_name};
use crate::server::{now_ms, State, VERSION};

/// One PD member.
#[derive(Clone, Debug, Serialize)]
pub struct Member {
    /// Its name.
    pub name: String,
    /// Its id.
    pub id: u64,
    /// Its client URLs.
    pub client_urls: Vec<String>,
    /// Its peer URLs.
    pub peer_urls: Vec<String>,
    /// Its version.
    pub version: String,
    /// Whether it leads.
    pub leader: bool,
    /// Whether the leader hears from it.
    pub healthy: bool,
}

/// One store.
#[derive(Clone, Debug, Serialize)]
pub struct Store {
    /// Its id.
    pub id: u64,
    /// `Up`, `Disconnected`, `Down`, `Offline`, `Tombstone`.
    pub state: String,
    /// Its gRPC address.
    pub address: String,
    /// Its status address.
    pub status_address: String,
    /// Its version.
    pub version: String,
    /// Capacity in bytes.
    pub capacity: u64,
    /// Available bytes.
    pub available: u64,
    /// Regions with a peer on it.
    pub regions: usize,
    /// Regions it leads.
    pub leaders: usize,
    /// Seconds since it started (0: unknown).
    pub uptime_s: u64,
}

/// The overview.
#[derive(Clone, Debug, Serialize)]
pub struct Overview {
    /// The cluster id.
    pub cluster_id: u64,
    /// PD's version.
    pub pd_version: String,
    /// This member's uptime.
    pub pd_uptime_s: u64,
    /// The members.
    pub members: Vec<Member>,
    /// The stores.
    pub stores: Vec<Store>,
    /// Regions known.
    pub regions: usize,
    /// Regions with fewer voters than `max-replicas`.
    pub under_replicated: usize,
    /// `max-replicas`.
    pub max_replicas: u64,
    /// Healthy, or what is wrong.
    pub health: Vec<String>,
}

/// Gathers the overview from the leader's state.
pub fn gather(s: &State) -> Result<Overview, String> {
    let now = now_ms();
    let (members, leader) = s.members_view();
    let reachable = s.reachable_member_ids();
    let c = s.cluster().map_err(|e| e.to_string())?;
    let mut per_store: HashMap<u64, (usize, usize)> = HashMap::new();
    let max_replicas = u64::from(c.meta.cluster.max_peer_count);
    let mut under = 0;
    let (mut down, mut pending) = (0, 0);
    for r in c.meta.regions() {
        down += r.down_peers.len();
        pending += r.pending_peers.len();
        let mut voters = 0;
        for p in &r.region.peers {
            per_store.entry(p.store_id).or_default().0 += 1;
            if super::regions::is_voter(p) {
                voters += 1;
            }
        }
        if voters < max_replicas {
            under += 1;
        }
        if let Some(l) = &r.leader {
            per_store.entry(l.store_id).or_default().1 += 1;
        }
    }
    let stores: Vec<Store> = c
        .meta
        .stores()
        .map(|i| {
            let stats = i.stats.unwrap_or_default();
            let (regions, leaders) = per_store.get(&i.store.id).copied().unwrap_or_default();
            Store {
                id: i.store.id,
                state: state_name(i, now).to_string(),
                address: i.store.address.clone(),
                status_address: i.store.status_address.clone(),
                version: i.store.version.clone(),
                capacity: stats.capacity,
                available: stats.available,
                regions,
                leaders,
                uptime_s: if stats.start_time > 0 && i.last_heartbeat_ms > 0 {
                    (now / 1000).saturating_sub(u64::from(stats.start_time))
                } else {
                    0
                },
            }
        })
        .collect();
    let regions = c.meta.region_count();
    drop(c);
    let members: Vec<Member> = members
        .iter()
        .map(|m| Member {
            name: m.name.clone(),
            id: m.member_id,
            client_urls: m.client_urls.clone(),
            peer_urls: m.peer_urls.clone(),
            version: m.binary_version.clone(),
            leader: leader.as_ref().is_some_and(|l| l.member_id == m.member_id),
            healthy: reachable.contains(&m.member_id),
        })
        .collect();
    let mut health = Vec::new();
    let serving = stores
        .iter()
        .filter(|st| st.state != "Tombstone" && st.state != "Offline")
        .collect::<Vec<_>>();
    let up = serving.iter().filter(|st| st.state == "Up").count();
    if up < serving.len() {
        health.push(format!(
            "{} of {} stores are not up",
            serving.len() - up,
            serving.len()
        ));
    }
    let sick = members.iter().filter(|m| !m.healthy).count();
    if sick > 0 {
        health.push(format!(
            "{sick} of {} PD members are unreachable",
            members.len()
        ));
    }
    if under > 0 {
        health.push(format!(
            "{under} of {regions} regions have fewer than {max_replicas} voters"
        ));
    }
    if down > 0 || pending > 0 {
        health.push(format!(
            "{down} peers reported down and {pending} pending (see Regions)"
        ));
    }
    if stores.is_empty() {
        health.push("no store has registered yet".into());
    }
    Ok(Overview {
        cluster_id: s.cluster_id,
        pd_version: VERSION.to_string(),
        pd_uptime_s: now.saturating_sub(s.started_ms) / 1000,
        members,
        stores,
        regions,
        under_replicated: under,
        max_replicas,
        health,
    })
}

fn render(o: &Overview) -> String {
    let mut out = String::new();
    if o.health.is_empty() {
        out.push_str("<p class=\"health ok\" id=\"health\">Healthy: every store up, every PD member reachable, every region fully replicated.</p>");
    } else {
        out.push_str("<ul class=\"health bad\" id=\"health\">");
        for h in &o.health {
            out.push_str(&format!("<li>{}</li>", esc(h)));
        }
        out.push_str("</ul>");
    }
    out.push_str(&format!(
        "<p class=\"facts\">Cluster <b id=\"cluster-id\">{}</b> · PD v{} · up {} · {} regions · {} stores · max-replicas {}</p>",
        o.cluster_id,
        esc(&o.pd_version),
        human_secs(o.pd_uptime_s),
        o.regions,
        o.stores.len(),
        o.max_replicas
    ));
    out.push_str("<h2>PD members</h2>");
    let rows: Vec<Vec<String>> = o
        .members
        .iter()
        .map(|m| {
            vec![
                format!(
                    "{}{}",
                    esc(&m.name),
                    if m.leader {
                        " <span class=\"badge leader\">leader</span>"
                    } else {
                        ""
                    }
                ),
                m.id.to_string(),
                esc(&m.client_urls.join(", ")),
                esc(&m.peer_urls.join(", ")),
                esc(&m.version),
                if m.healthy {
                    "<span class=\"ok\">reachable</span>".into()
                } else {
                    "<span class=\"bad\">unreachable</span>".into()
                },
            ]
        })
        .collect();
    out.push_str(&table(
        "members",
        &[
            "name",
            "id",
            "client URLs",
            "peer URLs",
            "version",
            "health",
        ],
        &rows,
    ));
    out.push_str("<h2>Stores (TiKV)</h2>");
    let rows: Vec<Vec<String>> = o
        .stores
        .iter()
        .map(|st| {
            let class = if st.state == "Up" { "ok" } else { "bad" };
            vec![
                format!("<span class=\"store-id\">{}</span>", st.id),
                format!("<span class=\"{class}\">{}</span>", esc(&st.state)),
                esc(&st.address),
                esc(&st.status_address),
                if st.capacity > 0 {
                    format!(
                        "{} ({} free)",
                        human_bytes(st.capacity),
                        human_bytes(st.available)
                    )
                } else {
                    "–".into()
                },
                st.regions.to_string(),
                st.leaders.to_string(),
                esc(&st.version),
                if st.uptime_s > 0 {
                    human_secs(st.uptime_s)
                } else {
                    "–".into()
                },
            ]
        })
        .collect();
    out.push_str(&table(
        "stores",
        &[
            "id",
            "state",
            "address",
            "status address",
            "capacity",
            "regions",
            "leaders",
            "version",
            "uptime",
        ],
        &rows,
    ));
    out.push_str(
        "<p class=\"note\">TiDB servers do not register with PD in tiox, so they are not \
         listed here; their status port is in <code>tiox playground</code>'s output.</p>",
    );
    out
}

/// `GET /dashboard/`.
pub async fn page(axum::extract::State(s): St) -> axum::response::Response {
    super::page(&s, "", gather(&s).map(|o| render(&o)))
}

/// `GET /dashboard/api/overview`.
pub async fn api(axum::extract::State(s): St) -> axum::response::Response {
    super::json(gather(&s))
}

/// The `host:port` every member and store serves on, with what it speaks:
/// (role, address, is PD's Raft peer port).
pub fn endpoints(o: &Overview) -> Vec<(String, String, bool)> {
    let mut out = Vec::new();
    for m in &o.members {
        for u in &m.client_urls {
            out.push((format!("PD {} client", m.name), authority(u), false));
        }
        for u in &m.peer_urls {
            out.push((format!("PD {} peer", m.name), authority(u), true));
        }
    }
    for st in &o.stores {
        if st.state == "Tombstone" {
            continue;
        }
        out.push((format!("TiKV {} gRPC", st.id), st.address.clone(), false));
        if !st.status_address.is_empty() {
            out.push((
                format!("TiKV {} status", st.id),
                st.status_address.clone(),
                false,
            ));
        }
    }
    out
}
