//! `EXPLAIN`: the operator tree in TiDB's shape — `id` (operator name,
//! number, tree drawing, `(Build)`/`(Probe)` on a join's inputs),
//! `estRows`, `task`, `access object`, `operator info`. [`rows`] draws the
//! FROM tree; [`with_tail`] puts the SELECT's tail (aggregation, HAVING,
//! sort, limit) above it.
//!
//! Every operator runs in tidb-server (`root`): nothing is pushed to the
//! storage nodes as a coprocessor task yet.

use super::{FromPlan, JoinKind, LeafSource, Node};
use crate::engine::operator::profile::{children, Slot};
use crate::engine::plan;

/// One EXPLAIN row: id, estRows, task, access object, operator info.
pub type Row = [String; 5];

/// A row and where EXPLAIN ANALYZE finds its measurements.
pub type Drawn = (Row, Slot);

/// The rows of `plan`'s tree, root first; `residual` WHERE conjuncts
/// show as a Selection on top.
pub fn rows(plan: &FromPlan) -> Vec<Drawn> {
    let mut out = Vec::new();
    let mut next = 1;
    if plan.residual.is_empty() {
        node(plan, &plan.root, 0, ("", "", ""), &mut next, &mut out);
    } else {
        let est = plan.root.est() * super::rules::SELECTION_FACTOR;
        out.push((
            selection("", &mut next, "", est, &plan.residual),
            Slot::Residual,
        ));
        node(plan, &plan.root, 0, ("└─", "  ", ""), &mut next, &mut out);
    }
    out
}

fn texts(conds: &[sqlparser::ast::Expr]) -> String {
    conds
        .iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn line(
    prefix: &str,
    op: &str,
    next: &mut usize,
    role: &str,
    est: f64,
    object: String,
    info: String,
) -> Row {
    let id = format!("{prefix}{op}_{next}{role}");
    *next += 1;
    [id, format!("{est:.2}"), "root".into(), object, info]
}

fn selection(
    prefix: &str,
    next: &mut usize,
    role: &str,
    est: f64,
    conds: &[sqlparser::ast::Expr],
) -> Row {
    line(
        prefix,
        "Selection",
        next,
        role,
        est,
        String::new(),
        texts(conds),
    )
}

/// Appends `n` drawn after `prefix` (its own line) with children indented
/// by `indent`.
fn node(
    plan: &FromPlan,
    n: &Node,
    at: usize,
    (prefix, indent, role): (&str, &str, &str),
    next: &mut usize,
    out: &mut Vec<Drawn>,
) {
    let (left_at, right_at) = children(n, at);
    match n {
        Node::Scan {
            leaf,
            access,
            filters,
            est,
        } => {
            let l = &plan.leaves[*leaf];
            let (op, object, info) = match &l.source {
                LeafSource::Table(t) => plan::describe(t, access),
                LeafSource::Rows { label, .. } => (
                    label.to_string(),
                    format!("table:{}", l.alias),
                    String::new(),
                ),
            };
            if filters.is_empty() || !matches!(**access, plan::Access::Full) {
                out.push((
                    line(prefix, &op, next, role, *est, object, info),
                    Slot::Node(at),
                ));
                return;
            }
            out.push((selection(prefix, next, role, *est, filters), Slot::Node(at)));
            let scanned = match &l.source {
                LeafSource::Rows { rows, .. } => rows.len() as f64,
                LeafSource::Table(_) => super::rules::PSEUDO_ROWS,
            };
            out.push((
                line(&format!("{indent}└─"), &op, next, "", scanned, object, info),
                Slot::Read(at),
            ));
        }
        Node::Selection { input, conds, est } => {
            out.push((selection(prefix, next, role, *est, conds), Slot::Node(at)));
            node(
                plan,
                input,
                left_at,
                (&format!("{indent}└─"), &format!("{indent}  "), ""),
                next,
                out,
            );
        }
        Node::HashJoin {
            kind,
            left,
            right,
            keys,
            conds,
            est,
        } => {
            let mut info = match (kind, keys.is_empty()) {
                (JoinKind::Inner, true) => "CARTESIAN inner join".to_string(),
                (JoinKind::Inner, false) => "inner join".to_string(),
                (JoinKind::LeftOuter, _) => "left outer join".to_string(),
                (JoinKind::RightOuter, _) => "right outer join".to_string(),
            };
            if !keys.is_empty() {
                let eqs: Vec<String> = keys.iter().map(|(l, r)| format!("eq({l}, {r})")).collect();
                info.push_str(&format!(", equal:[{}]", eqs.join(" ")));
            }
            let others = &conds[keys.len()..];
            if !others.is_empty() {
                info.push_str(&format!(", other cond:{}", texts(others)));
            }
            out.push((
                line(prefix, "HashJoin", next, role, *est, String::new(), info),
                Slot::Node(at),
            ));
            let (build, probe, build_at, probe_at) = if *kind == JoinKind::RightOuter {
                (left, right, left_at, right_at)
            } else {
                (right, left, right_at, left_at)
            };
            node(
                plan,
                build,
                build_at,
                (&format!("{indent}├─"), &format!("{indent}│ "), "(Build)"),
                next,
                out,
            );
            node(
                plan,
                probe,
                probe_at,
                (&format!("{indent}└─"), &format!("{indent}  "), "(Probe)"),
                next,
                out,
            );
        }
    }
}

/// One operator above the FROM tree (the SELECT's tail, root first):
/// name, estimated rows, operator info, where its measurements are.
pub type TailOp = (&'static str, f64, String, Slot);

/// `tail` drawn above the FROM tree's rows `from` (numbered from 1 at the
/// root, as [`rows`] numbers them).
pub fn with_tail(tail: &[TailOp], from: Vec<Drawn>) -> Vec<Drawn> {
    let mut out = Vec::new();
    let mut next = 1;
    let mut indent = String::new();
    for (i, (op, est, info, slot)) in tail.iter().enumerate() {
        let prefix = if i == 0 {
            String::new()
        } else {
            let p = format!("{indent}└─");
            indent.push_str("  ");
            p
        };
        let drawn = line(
            &prefix,
            op,
            &mut next,
            "",
            *est,
            String::new(),
            info.clone(),
        );
        out.push((drawn, *slot));
    }
    let shift = next - 1;
    let lead = if tail.is_empty() {
        String::new()
    } else {
        format!("{indent}└─")
    };
    for (i, (mut r, slot)) in from.into_iter().enumerate() {
        r[0] = renumber(&r[0], shift);
        r[0] = if i == 0 {
            format!("{lead}{}", r[0])
        } else if tail.is_empty() {
            r[0].clone()
        } else {
            format!("{indent}  {}", r[0])
        };
        out.push((r, slot));
    }
    out
}

/// `Op_N(Role)` with N moved up by `shift`.
fn renumber(id: &str, shift: usize) -> String {
    let role_at = id
        .rfind('(')
        .filter(|_| id.ends_with(')'))
        .unwrap_or(id.len());
    let (head, role) = id.split_at(role_at);
    match head.rfind('_') {
        Some(u) => match head[u + 1..].parse::<usize>() {
            Ok(n) => format!("{}_{}{role}", &head[..u], n + shift),
            Err(_) => id.to_string(),
        },
        None => id.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, est: &str) -> Row {
        [
            id.into(),
            est.into(),
            "root".into(),
            String::new(),
            String::new(),
        ]
    }

    #[test]
    fn the_tail_is_drawn_above_the_from_tree_and_ids_stay_in_order() {
        let from = vec![
            (row("HashJoin_1", "10.00"), Slot::Node(0)),
            (row("├─TableFullScan_2(Build)", "10.00"), Slot::Node(2)),
            (row("└─TableFullScan_3(Probe)", "10.00"), Slot::Node(1)),
        ];
        let tail = [
            (
                "TopN",
                2.0,
                "t.a, offset:0, count:2".to_string(),
                Slot::Order,
            ),
            (
                "HashAgg",
                8.0,
                "group by:t.a".to_string(),
                Slot::Aggregation,
            ),
        ];
        let ids: Vec<String> = with_tail(&tail, from)
            .into_iter()
            .map(|(r, _)| r[0].clone())
            .collect();
        assert_eq!(
            ids,
            [
                "TopN_1",
                "└─HashAgg_2",
                "  └─HashJoin_3",
                "    ├─TableFullScan_4(Build)",
                "    └─TableFullScan_5(Probe)",
            ]
        );
    }
}
