//! The planner's rules, small functions over the FROM tree applied in a
//! fixed order by [`super::plan`]:
//!
//! 1. [`place_where`]: WHERE is split into conjuncts; each is pushed to the
//!    lowest node holding every column it reads — never below the
//!    NULL-padded side of an outer join (there it filters above the join) —
//!    or left residual when it holds a subquery or a name it cannot place.
//! 2. [`distribute`]: the conditions of each inner-join group and each ON
//!    clause go down the same way; an outer join's ON conjunct over only
//!    its NULL-padded side filters that side before the join.
//! 3. [`physical`]: access paths per table, inner joins ordered by
//!    estimated size along equality conditions (a cross join only where no
//!    condition links the sides), equalities across the sides as hash
//!    keys.
//!
//! Estimates follow TiDB's pseudo statistics (no `ANALYZE` yet): 10000 rows
//! a table, 1 per point get, 10 per fixed index prefix, a third for a
//! range, 0.8 per extra filter.

use sqlparser::ast::{BinaryOperator, Expr, FunctionArguments, InTarget};

use super::{JoinKind, Leaf, LeafSource, Leaves, Node, Rel};
use crate::engine::exec::has_subquery;
use crate::engine::plan::{self, Access};
use crate::engine::walk::{conjuncts, is_aggregate, walk};

/// TiDB's row count of a table without statistics.
pub const PSEUDO_ROWS: f64 = 10000.0;
/// TiDB's selectivity of a filter it cannot estimate.
pub const SELECTION_FACTOR: f64 = 0.8;

/// The leaves `e` reads. `None` when that cannot be told: a subquery, an
/// aggregate, an expression form the walk does not look into, or a name
/// that two leaves have. Names no leaf has (outer query columns,
/// `CURRENT_DATE`) are constants here.
pub fn refs(e: &Expr, leaves: &[Leaf]) -> Option<Leaves> {
    let mut set: Leaves = 0;
    let mut ok = true;
    walk(e, &mut |x| {
        let parts = match x {
            Expr::Identifier(id) => std::slice::from_ref(id),
            Expr::CompoundIdentifier(p) => p.as_slice(),
            Expr::Value(_) | Expr::TypedString { .. } => return false,
            Expr::In { target, .. } => {
                ok &= matches!(target, InTarget::List(_));
                return ok;
            }
            Expr::Function(f) => {
                ok &= f.over.is_none()
                    && f.filter.is_none()
                    && f.within_group.is_empty()
                    && matches!(f.parameters, FunctionArguments::None)
                    && !matches!(f.args, FunctionArguments::Subquery(_))
                    && !is_aggregate(&f.name.to_string().to_ascii_lowercase());
                return ok;
            }
            Expr::Trim {
                trim_characters, ..
            } => {
                ok &= trim_characters.is_none();
                return ok;
            }
            Expr::BinaryOp { .. }
            | Expr::UnaryOp { .. }
            | Expr::Nested(_)
            | Expr::IsNull(_)
            | Expr::IsNotNull(_)
            | Expr::IsTrue(_)
            | Expr::IsFalse(_)
            | Expr::IsNotTrue(_)
            | Expr::IsNotFalse(_)
            | Expr::Cast { .. }
            | Expr::Ceil { .. }
            | Expr::Floor { .. }
            | Expr::IsDistinctFrom(..)
            | Expr::IsNotDistinctFrom(..)
            | Expr::Like { .. }
            | Expr::ILike { .. }
            | Expr::Between { .. }
            | Expr::Case { .. }
            | Expr::Substring { .. }
            | Expr::Position { .. }
            | Expr::Tuple(_) => return ok,
            _ => {
                ok = false;
                return false;
            }
        };
        let mut hits = 0;
        for (i, l) in leaves.iter().enumerate() {
            match l.scope.find(parts) {
                Ok(Some(_)) => {
                    hits += 1;
                    set |= 1 << i;
                }
                Ok(None) => {}
                Err(_) => ok = false,
            }
        }
        ok &= hits <= 1;
        false
    });
    ok.then_some(set)
}

fn subset(a: Leaves, b: Leaves) -> bool {
    a & !b == 0
}

/// Puts conjunct `c` (reading leaves `r`, not empty) on the lowest node
/// of `rel` that holds all of `r`.
fn push(rel: &mut Rel, c: Expr, r: Leaves) {
    match rel {
        Rel::Leaf { filters, .. } => filters.push(c),
        Rel::Inner { items, conds } => match items.iter_mut().find(|i| subset(r, i.leaves())) {
            Some(item) => push(item, c, r),
            None => conds.push(c),
        },
        Rel::Outer {
            kind, left, right, ..
        } => {
            let preserved = if *kind == JoinKind::LeftOuter {
                left
            } else {
                right
            };
            if subset(r, preserved.leaves()) {
                push(preserved, c, r);
            } else if let Rel::Outer { above, .. } = rel {
                above.push(c);
            }
        }
    }
}

/// Rule 1: places the WHERE conjuncts; returns the residual ones.
pub fn place_where(rel: &mut Rel, filter: Option<&Expr>, leaves: &[Leaf]) -> Vec<Expr> {
    let mut residual = Vec::new();
    for c in filter.map(conjuncts).unwrap_or_default() {
        match refs(c, leaves) {
            Some(r) if r != 0 && !has_subquery(c) => push(rel, c.clone(), r),
            _ => residual.push(c.clone()),
        }
    }
    residual
}

/// Rule 2: moves each group's and each ON clause's conjuncts down to the
/// lowest node that can evaluate them.
pub fn distribute(rel: &mut Rel, leaves: &[Leaf]) {
    match rel {
        Rel::Leaf { .. } => {}
        Rel::Inner { items, conds } => {
            for c in std::mem::take(conds) {
                match refs(&c, leaves) {
                    Some(r) if r != 0 => match items.iter_mut().find(|i| subset(r, i.leaves())) {
                        Some(item) => push(item, c, r),
                        None => conds.push(c),
                    },
                    _ => conds.push(c),
                }
            }
            for i in items {
                distribute(i, leaves);
            }
        }
        Rel::Outer {
            kind,
            left,
            right,
            on,
            ..
        } => {
            let padded = if *kind == JoinKind::LeftOuter {
                &mut **right
            } else {
                &mut **left
            };
            for c in std::mem::take(on) {
                match refs(&c, leaves) {
                    Some(r) if r != 0 && subset(r, padded.leaves()) => push(padded, c, r),
                    _ => on.push(c),
                }
            }
            distribute(left, leaves);
            distribute(right, leaves);
        }
    }
}

fn mask(node: &Node) -> Leaves {
    node.leaves().iter().fold(0, |a, l| a | 1 << l)
}

/// `c` as a hash key `(left expr, right expr)` when it is `a = b` with `a`
/// reading only `l`'s leaves and `b` only `r`'s (or the other way round).
fn eq_key(c: &Expr, l: Leaves, r: Leaves, leaves: &[Leaf]) -> Option<(Expr, Expr)> {
    let mut c = c;
    while let Expr::Nested(inner) = c {
        c = inner;
    }
    let Expr::BinaryOp {
        left,
        op: BinaryOperator::Eq,
        right,
    } = c
    else {
        return None;
    };
    let (a, b) = (refs(left, leaves)?, refs(right, leaves)?);
    if a == 0 || b == 0 {
        return None;
    }
    if subset(a, l) && subset(b, r) {
        Some(((**left).clone(), (**right).clone()))
    } else if subset(a, r) && subset(b, l) {
        Some(((**right).clone(), (**left).clone()))
    } else {
        None
    }
}

fn scan_estimate(leaf: &Leaf, access: &Access, filters: usize) -> f64 {
    let base = match (&leaf.source, access) {
        (LeafSource::Rows { rows, .. }, _) => rows.len() as f64,
        (_, Access::Handles(v)) => return v.len() as f64,
        (_, Access::HandleRange { .. }) => PSEUDO_ROWS / 3.0,
        (LeafSource::Table(t), Access::Index { index, eq, .. }) => {
            let ix = &t.indexes[*index];
            if ix.unique && eq.len() == ix.columns.len() {
                return 1.0;
            }
            let fixed = (PSEUDO_ROWS / 1000f64.powi(eq.len() as i32)).max(1.0);
            if eq.is_empty() {
                PSEUDO_ROWS / 3.0
            } else {
                fixed
            }
        }
        (_, _) => PSEUDO_ROWS * SELECTION_FACTOR.powi(filters as i32),
    };
    base.max(1.0)
}

fn join_estimate(l: f64, r: f64, keys: usize, others: usize) -> f64 {
    let joined = if keys > 0 { l.max(r) } else { l * r };
    joined * SELECTION_FACTOR.powi(others as i32)
}

fn selection(input: Node, conds: Vec<Expr>) -> Node {
    if conds.is_empty() {
        return input;
    }
    let est = input.est() * SELECTION_FACTOR.powi(conds.len() as i32);
    Node::Selection {
        input: Box::new(input),
        conds,
        est,
    }
}

fn hash_join(kind: JoinKind, left: Node, right: Node, conds: Vec<Expr>, leaves: &[Leaf]) -> Node {
    // An inner join builds its smaller input (the right one).
    let (left, right) = if kind == JoinKind::Inner && left.est() < right.est() {
        (right, left)
    } else {
        (left, right)
    };
    let (lm, rm) = (mask(&left), mask(&right));
    let mut keys = Vec::new();
    let mut key_conds = Vec::new();
    let mut others = Vec::new();
    for c in conds {
        match eq_key(&c, lm, rm, leaves) {
            Some(k) => {
                keys.push(k);
                key_conds.push(c);
            }
            None => others.push(c),
        }
    }
    let mut est = join_estimate(left.est(), right.est(), keys.len(), others.len());
    key_conds.extend(others);
    let conds = key_conds;
    match kind {
        JoinKind::LeftOuter => est = est.max(left.est()),
        JoinKind::RightOuter => est = est.max(right.est()),
        JoinKind::Inner => {}
    }
    Node::HashJoin {
        kind,
        left: Box::new(left),
        right: Box::new(right),
        keys,
        conds,
        est,
    }
}

/// Rule 3: the operator tree of `rel`.
pub fn physical(rel: Rel, leaves: &[Leaf]) -> Node {
    match rel {
        Rel::Leaf { leaf, filters } => {
            let l = &leaves[leaf];
            let access = match &l.source {
                LeafSource::Table(t) => {
                    let all = filters.iter().cloned().reduce(|a, b| Expr::BinaryOp {
                        left: Box::new(a),
                        op: BinaryOperator::And,
                        right: Box::new(b),
                    });
                    plan::choose(t, &l.alias, all.as_ref())
                }
                LeafSource::Rows { .. } => Access::Full,
            };
            let est = scan_estimate(l, &access, filters.len());
            Node::Scan {
                leaf,
                access: Box::new(access),
                filters,
                est,
            }
        }
        Rel::Inner { items, conds } => {
            let nodes: Vec<Node> = items.into_iter().map(|i| physical(i, leaves)).collect();
            let (root, left) = join_order(nodes, conds, leaves);
            selection(root, left)
        }
        Rel::Outer {
            kind,
            left,
            right,
            on,
            above,
        } => {
            let join = hash_join(
                kind,
                physical(*left, leaves),
                physical(*right, leaves),
                on,
                leaves,
            );
            selection(join, above)
        }
    }
}

/// Orders an inner-join group: start from the smallest item, then join
/// the smallest item linked to what is joined by an equality (a cross
/// join only when none is). Returns the tree and the conditions no join
/// took (those that read no leaf, or could not be analysed).
fn join_order(mut items: Vec<Node>, conds: Vec<Expr>, leaves: &[Leaf]) -> (Node, Vec<Expr>) {
    let all = items.iter().fold(0, |a, n| a | mask(n));
    let mut conds: Vec<(Expr, Leaves)> = conds
        .into_iter()
        .map(|c| {
            let r = refs(&c, leaves).filter(|r| *r != 0).unwrap_or(all);
            (c, r)
        })
        .collect();
    let smallest = |cands: &mut dyn Iterator<Item = usize>, items: &[Node]| {
        cands.min_by(|&a, &b| items[a].est().total_cmp(&items[b].est()))
    };
    let first = smallest(&mut (0..items.len()), &items).expect("a join group has items");
    let mut cur = items.remove(first);
    while !items.is_empty() {
        let cm = mask(&cur);
        let linked = |n: &Node| {
            let nm = mask(n);
            conds
                .iter()
                .any(|(c, _)| eq_key(c, cm, nm, leaves).is_some())
        };
        let pick = smallest(&mut (0..items.len()).filter(|&i| linked(&items[i])), &items)
            .or_else(|| smallest(&mut (0..items.len()), &items))
            .expect("items left");
        let next = items.remove(pick);
        let both = cm | mask(&next);
        let (now, later): (Vec<_>, Vec<_>) = conds.into_iter().partition(|(_, r)| subset(*r, both));
        conds = later;
        cur = hash_join(
            JoinKind::Inner,
            cur,
            next,
            now.into_iter().map(|(c, _)| c).collect(),
            leaves,
        );
    }
    (cur, conds.into_iter().map(|(c, _)| c).collect())
}
