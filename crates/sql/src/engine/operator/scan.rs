//! Reading the leaves of a FROM plan: each table through the access path
//! the planner chose, each derived table's rows as bound; a leaf's
//! filters (bound once per leaf) are applied as its rows arrive, and the rows kept are charged
//! to the statement's memory tracker.

use tiox_client::txn::Transaction;

use super::super::exec::{Outer, Sx};
use super::super::plan;
use super::super::planner::{Leaf, LeafSource, Node};
use super::super::table::Row;
use super::Cond;
use crate::error::SqlError;

/// The scans under `node` (at pre-order position `at`), with theirs.
fn scans<'n>(node: &'n Node, at: usize, out: &mut Vec<(usize, &'n Node)>) {
    let (l, r) = super::profile::children(node, at);
    match node {
        Node::Scan { .. } => out.push((at, node)),
        Node::Selection { input, .. } => scans(input, l, out),
        Node::HashJoin { left, right, .. } => {
            scans(left, l, out);
            scans(right, r, out);
        }
    }
}

/// The filtered rows of every leaf of `root` (`dry`: none; the caller
/// wants column names only).
pub async fn fetch_leaves(
    sx: &Sx<'_>,
    tx: &Transaction,
    leaves: &mut [Leaf],
    root: &Node,
    outer: Option<&Outer>,
    dry: bool,
    profile: Option<&super::profile::Profile>,
) -> Result<Vec<Vec<Row>>, SqlError> {
    let mut out: Vec<Vec<Row>> = vec![Vec::new(); leaves.len()];
    let mut nodes = Vec::new();
    scans(root, 0, &mut nodes);
    for (at, node) in nodes {
        let start = std::time::Instant::now();
        let mem_before = sx.mem.used();
        let Node::Scan {
            leaf,
            access,
            filters,
            ..
        } = node
        else {
            continue;
        };
        let l = &mut leaves[*leaf];
        let rows: Vec<Row> = match &mut l.source {
            _ if dry => Vec::new(),
            LeafSource::Table(t) => {
                let ctx = sx.ctx(None);
                plan::fetch(tx, t, access, &ctx, None)
                    .await?
                    .into_iter()
                    .map(|(_, r)| r)
                    .collect()
            }
            LeafSource::Rows { rows, .. } => std::mem::take(rows),
        };
        let read = rows.len() as u64;
        let kept = &mut out[*leaf];
        let filters = Cond::bind(sx, filters, &l.scope, outer)?;
        for r in rows {
            if Cond::all_hold(&filters, sx, &l.scope, &r, outer)? {
                sx.mem.consume_row(&r)?;
                kept.push(r);
            }
        }
        if let Some(p) = profile {
            use super::profile::Slot;
            let mem = sx.mem.used().saturating_sub(mem_before);
            p.add(Slot::Read(at), read, std::time::Duration::ZERO, 0);
            p.add(Slot::Node(at), 0, start.elapsed(), mem);
        }
    }
    Ok(out)
}
