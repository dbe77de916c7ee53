//! The regions page: replication health at a glance — regions with fewer
//! voters than `max-replicas`, pending and down peers, leaders per store —
//! and a store × region heat map (one cell per peer: leader, voter,
//! learner, pending, down).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use tiox_proto::metapb;

use super::{table, St};
use crate::server::State;

/// Regions drawn in the heat map, at most (the rest are counted).
pub const HEAT_MAP_REGIONS: usize = 200;

/// Whether a peer votes.
pub fn is_voter(p: &metapb::Peer) -> bool {
    matches!(
        metapb::PeerRole::try_from(p.role),
        Ok(metapb::PeerRole::Voter) | Ok(metapb::PeerRole::IncomingVoter) | Err(_)
    )
}

/// One region's replication.
#[derive(Clone, Debug, Serialize)]
pub struct Region {
    /// Its id.
    pub id: u64,
    /// Voters.
    pub voters: usize,
    /// Peers by store: (store id, cell kind).
    pub peers: Vec<(u64, Cell)>,
    /// The leader's store.
    pub leader_store: Option<u64>,
    /// Approximate size, bytes.
    pub size: u64,
}

/// What a store holds of a region.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Cell {
    /// The leader.
    Leader,
    /// A voter following.
    Voter,
    /// A learner.
    Learner,
    /// A peer catching up.
    Pending,
    /// A peer the leader reports down.
    Down,
}

impl Cell {
    fn class(self) -> &'static str {
        match self {
            Cell::Leader => "leader",
            Cell::Voter => "voter",
            Cell::Learner => "learner",
            Cell::Pending => "pending",
            Cell::Down => "down",
        }
    }
}

/// The regions view.
#[derive(Clone, Debug, Serialize)]
pub struct Regions {
    /// `max-replicas`.
    pub max_replicas: u64,
    /// Every region, by id.
    pub regions: Vec<Region>,
    /// Leaders per store id.
    pub leaders_per_store: BTreeMap<u64, usize>,
    /// The store ids (columns of the heat map's rows).
    pub stores: Vec<u64>,
}

/// Gathers it from the leader's state.
pub fn gather(s: &State) -> Result<Regions, String> {
    let c = s.cluster().map_err(|e| e.to_string())?;
    let mut leaders_per_store = BTreeMap::new();
    let mut stores: BTreeSet<u64> = c
        .meta
        .stores()
        .filter(|i| i.store.state != metapb::StoreState::Tombstone as i32)
        .map(|i| i.store.id)
        .collect();
    for id in &stores {
        leaders_per_store.insert(*id, 0);
    }
    let mut regions = Vec::new();
    for r in c.meta.regions() {
        let down: BTreeSet<u64> = r
            .down_peers
            .iter()
            .filter_map(|d| d.peer.as_ref().map(|p| p.id))
            .collect();
        let pending: BTreeSet<u64> = r.pending_peers.iter().map(|p| p.id).collect();
        let leader = r.leader.as_ref().map(|l| l.id);
        let peers = r
            .region
            .peers
            .iter()
            .map(|p| {
                stores.insert(p.store_id);
                let cell = if down.contains(&p.id) {
                    Cell::Down
                } else if pending.contains(&p.id) {
                    Cell::Pending
                } else if leader == Some(p.id) {
                    Cell::Leader
                } else if is_voter(p) {
                    Cell::Voter
                } else {
                    Cell::Learner
                };
                (p.store_id, cell)
            })
            .collect();
        let leader_store = r.leader.as_ref().map(|l| l.store_id);
        if let Some(st) = leader_store {
            *leaders_per_store.entry(st).or_insert(0) += 1;
        }
        regions.push(Region {
            id: r.region.id,
            voters: r.region.peers.iter().filter(|p| is_voter(p)).count(),
            peers,
            leader_store,
            size: r.approximate_size,
        });
    }
    regions.sort_by_key(|r| r.id);
    Ok(Regions {
        max_replicas: u64::from(c.meta.cluster.max_peer_count),
        regions,
        leaders_per_store,
        stores: stores.into_iter().collect(),
    })
}

fn render(v: &Regions) -> String {
    let mut out = String::new();
    let under: Vec<&Region> = v
        .regions
        .iter()
        .filter(|r| (r.voters as u64) < v.max_replicas)
        .collect();
    out.push_str(&format!(
        "<p class=\"facts\">{} regions · <span class=\"{}\" id=\"under-replicated\">{} with fewer than {} voters</span></p>",
        v.regions.len(),
        if under.is_empty() { "ok" } else { "bad" },
        under.len(),
        v.max_replicas
    ));
    out.push_str("<h2>Regions without enough voters</h2>");
    let rows: Vec<Vec<String>> = under
        .iter()
        .map(|r| {
            vec![
                r.id.to_string(),
                format!("{} of {}", r.voters, v.max_replicas),
                r.peers
                    .iter()
                    .map(|(s, _)| s.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            ]
        })
        .collect();
    out.push_str(&table("under", &["region", "voters", "on stores"], &rows));
    out.push_str("<h2>Pending and down peers</h2>");
    let mut rows = Vec::new();
    for r in &v.regions {
        for (store, cell) in &r.peers {
            if matches!(cell, Cell::Pending | Cell::Down) {
                rows.push(vec![
                    r.id.to_string(),
                    store.to_string(),
                    format!("<span class=\"bad\">{}</span>", cell.class()),
                ]);
            }
        }
    }
    out.push_str(&table(
        "unhealthy-peers",
        &["region", "store", "state"],
        &rows,
    ));
    out.push_str("<h2>Leaders per store</h2>");
    let max = v
        .leaders_per_store
        .values()
        .copied()
        .max()
        .unwrap_or(0)
        .max(1);
    let rows: Vec<Vec<String>> = v
        .leaders_per_store
        .iter()
        .map(|(s, n)| {
            vec![
                s.to_string(),
                n.to_string(),
                format!(
                    "<svg class=\"bar\" width=\"200\" height=\"12\"><rect width=\"{}\" height=\"12\"/></svg>",
                    n * 200 / max
                ),
            ]
        })
        .collect();
    out.push_str(&table("leaders", &["store", "leaders", ""], &rows));
    out.push_str("<h2>Heat map: stores × regions</h2><p class=\"legend\">");
    for c in [
        Cell::Leader,
        Cell::Voter,
        Cell::Learner,
        Cell::Pending,
        Cell::Down,
    ] {
        out.push_str(&format!("<span class=\"cell {0}\"></span> {0} ", c.class()));
    }
    out.push_str("</p><div class=\"scroll\"><table id=\"heatmap\" class=\"heatmap\"><thead><tr><th>store \\ region</th>");
    let shown = &v.regions[..v.regions.len().min(HEAT_MAP_REGIONS)];
    for r in shown {
        out.push_str(&format!("<th>{}</th>", r.id));
    }
    out.push_str("</tr></thead><tbody>");
    for s in &v.stores {
        out.push_str(&format!("<tr><th>{s}</th>"));
        for r in shown {
            match r.peers.iter().find(|(st, _)| st == s) {
                Some((_, c)) => out.push_str(&format!(
                    "<td class=\"cell {0}\" title=\"region {1} on store {s}: {0}\"></td>",
                    c.class(),
                    r.id
                )),
                None => out.push_str("<td class=\"cell empty\"></td>"),
            }
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table></div>");
    if v.regions.len() > shown.len() {
        out.push_str(&format!(
            "<p class=\"note\">{} more regions not drawn.</p>",
            v.regions.len() - shown.len()
        ));
    }
    out
}

/// `GET /dashboard/regions`.
pub async fn page(axum::extract::State(s): St) -> axum::response::Response {
    super::page(&s, "regions", gather(&s).map(|v| render(&v)))
}

/// `GET /dashboard/api/regions`.
pub async fn api(axum::extract::State(s): St) -> axum::response::Response {
    super::json(gather(&s))
}
