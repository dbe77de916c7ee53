//! The FROM clause as a plan tree: which tables are read, how, and in what
//! order they are joined.
//!
//! ```text
//!  FROM + WHERE (syntax)
//!   └► bind_from      factors → leaves (a table, or rows of a derived
//!                     table / information_schema), a logical tree [`Rel`]
//!                     of inner-join groups and outer joins
//!   └► rules::place   WHERE and ON split into conjuncts; each goes to the
//!                     lowest node that has all its columns (a table's
//!                     filters, a join's condition, a filter above an outer
//!                     join); WHERE conjuncts with subqueries stay residual
//!   └► rules::physical  access path per table (`plan::choose` over its
//!                     filters), inner joins ordered smallest-first along
//!                     equalities, `a = b` across the sides as hash keys
//!   └► [`Node`] tree  Scan / Selection / HashJoin — run by `operator`,
//!                     printed by `explain`
//! ```
//!
//! Invariants: a conjunct is evaluated exactly where it is placed and
//! nowhere else (except residual ones, which the caller evaluates over the
//! joined rows); a node's rows hold its leaves' columns in
//! [`Node::leaves`] order, and the caller restores FROM order at the end.

pub mod correlation;
pub mod explain;
pub mod rules;
pub mod select;

use std::sync::Arc;

use sqlparser::ast::{
    BinaryOperator, Expr, Ident, JoinConstraint, JoinOperator, TableFactor, TableWithJoins,
};

use super::exec::Scope;
use super::plan::Access;
use super::schema::TableInfo;
use super::table::Row;
use super::walk::conjuncts;
use crate::error::{er, SqlError};

/// MySQL's limit on the tables of one join.
pub const MAX_JOIN_TABLES: usize = 61;

/// A set of leaves, one bit per leaf index.
pub type Leaves = u64;

/// Where a leaf's rows come from.
pub enum LeafSource {
    /// A base table, read through an access path.
    Table(Arc<TableInfo>),
    /// Rows already at hand (a derived table, information_schema).
    Rows {
        /// The rows.
        rows: Vec<Row>,
        /// The operator EXPLAIN names (`MemTableScan`, ...).
        label: &'static str,
    },
}

/// One table (or table-like item) of FROM.
pub struct Leaf {
    /// The name the query calls it by.
    pub alias: String,
    /// Its columns.
    pub scope: Scope,
    /// Its rows.
    pub source: LeafSource,
}

/// The join types the hash join runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JoinKind {
    /// `JOIN`, `CROSS JOIN`, `,`.
    Inner,
    /// `LEFT [OUTER] JOIN`: unmatched left rows padded with NULLs.
    LeftOuter,
    /// `RIGHT [OUTER] JOIN`: unmatched right rows padded with NULLs.
    RightOuter,
}

/// The logical FROM tree, with conditions attached where they apply.
#[derive(Debug)]
pub enum Rel {
    /// One leaf and the conjuncts evaluated on its rows alone.
    Leaf {
        /// Index in the leaf list.
        leaf: usize,
        /// Conjuncts over this leaf's columns (and constants).
        filters: Vec<Expr>,
    },
    /// Items joined by inner joins, in any order.
    Inner {
        /// The joined items.
        items: Vec<Rel>,
        /// Conjuncts over columns of several items.
        conds: Vec<Expr>,
    },
    /// An outer join.
    Outer {
        /// `LeftOuter` or `RightOuter`.
        kind: JoinKind,
        /// Left side.
        left: Box<Rel>,
        /// Right side.
        right: Box<Rel>,
        /// The ON conjuncts that stay on the join.
        on: Vec<Expr>,
        /// WHERE conjuncts over the NULL-padded side: a filter above.
        above: Vec<Expr>,
    },
}

impl Rel {
    /// The leaves under this node.
    pub fn leaves(&self) -> Leaves {
        match self {
            Rel::Leaf { leaf, .. } => 1 << leaf,
            Rel::Inner { items, .. } => items.iter().fold(0, |a, i| a | i.leaves()),
            Rel::Outer { left, right, .. } => left.leaves() | right.leaves(),
        }
    }
}

/// A physical operator.
#[derive(Debug)]
pub enum Node {
    /// Reads one leaf through an access path and keeps the rows its
    /// filters accept.
    Scan {
        /// Index in the leaf list.
        leaf: usize,
        /// How a table leaf is read (`Full` for rows at hand).
        access: Box<Access>,
        /// Conjuncts evaluated on each row read.
        filters: Vec<Expr>,
        /// Estimated rows out.
        est: f64,
    },
    /// Keeps the input rows the conditions accept.
    Selection {
        /// Input.
        input: Box<Node>,
        /// Conjuncts.
        conds: Vec<Expr>,
        /// Estimated rows out.
        est: f64,
    },
    /// Joins two inputs: the build side (the right input for inner and
    /// left joins, the left one for right joins) goes into a hash table on
    /// `keys`, the other side streams through it. No keys: every pair is a
    /// candidate (a cross join, streamed).
    HashJoin {
        /// The join type.
        kind: JoinKind,
        /// Left input (its columns come first).
        left: Box<Node>,
        /// Right input.
        right: Box<Node>,
        /// Equalities `left expr = right expr`.
        keys: Vec<(Expr, Expr)>,
        /// Every join condition, checked on each candidate pair: first
        /// the key equalities (one per key, in order), then the others.
        conds: Vec<Expr>,
        /// Estimated rows out.
        est: f64,
    },
}

impl Node {
    /// Estimated rows out.
    pub fn est(&self) -> f64 {
        match self {
            Node::Scan { est, .. } | Node::Selection { est, .. } | Node::HashJoin { est, .. } => {
                *est
            }
        }
    }

    /// The leaves whose columns this node's rows hold, in row order.
    pub fn leaves(&self) -> Vec<usize> {
        match self {
            Node::Scan { leaf, .. } => vec![*leaf],
            Node::Selection { input, .. } => input.leaves(),
            Node::HashJoin { left, right, .. } => {
                let mut v = left.leaves();
                v.extend(right.leaves());
                v
            }
        }
    }
}

/// The scope of rows holding `order`'s leaves.
pub fn scope_of(leaves: &[Leaf], order: &[usize]) -> Scope {
    Scope {
        cols: order
            .iter()
            .flat_map(|&l| leaves[l].scope.cols.iter().cloned())
            .collect(),
    }
}

/// The factors of FROM in order (the leaves' order, which is the order of
/// the columns of `SELECT *`), looking into parenthesised joins.
pub fn factors(from: &[TableWithJoins]) -> Vec<&TableFactor> {
    fn factor<'a>(f: &'a TableFactor, out: &mut Vec<&'a TableFactor>) {
        match f {
            TableFactor::NestedJoin {
                table_with_joins, ..
            } => item(table_with_joins, out),
            other => out.push(other),
        }
    }
    fn item<'a>(twj: &'a TableWithJoins, out: &mut Vec<&'a TableFactor>) {
        factor(&twj.relation, out);
        for j in &twj.joins {
            factor(&j.relation, out);
        }
    }
    let mut out = Vec::new();
    for twj in from {
        item(twj, &mut out);
    }
    out
}

/// Builds the logical tree of FROM over `leaves` (bound from
/// [`factors`], in that order); ON conditions stay on their joins.
pub fn bind_from(from: &[TableWithJoins], leaves: &[Leaf]) -> Result<Rel, SqlError> {
    if leaves.len() > MAX_JOIN_TABLES {
        return Err(er::too_many_tables(MAX_JOIN_TABLES));
    }
    let mut next = 0;
    let mut items = Vec::new();
    for twj in from {
        items.push(bind_item(twj, leaves, &mut next)?);
    }
    Ok(inner(items, Vec::new()))
}

fn bind_factor(f: &TableFactor, leaves: &[Leaf], next: &mut usize) -> Result<Rel, SqlError> {
    if let TableFactor::NestedJoin {
        table_with_joins, ..
    } = f
    {
        return bind_item(table_with_joins, leaves, next);
    }
    let leaf = *next;
    *next += 1;
    Ok(Rel::Leaf {
        leaf,
        filters: Vec::new(),
    })
}

fn bind_item(twj: &TableWithJoins, leaves: &[Leaf], next: &mut usize) -> Result<Rel, SqlError> {
    let mut cur = bind_factor(&twj.relation, leaves, next)?;
    for j in &twj.joins {
        let first_right = *next;
        let right = bind_factor(&j.relation, leaves, next)?;
        let (constraint, kind) = match &j.join_operator {
            JoinOperator::Join(c) | JoinOperator::Inner(c) | JoinOperator::CrossJoin(c) => {
                (c, JoinKind::Inner)
            }
            JoinOperator::LeftOuter(c) | JoinOperator::Left(c) => (c, JoinKind::LeftOuter),
            JoinOperator::RightOuter(c) | JoinOperator::Right(c) => (c, JoinKind::RightOuter),
            other => return Err(er::not_supported_yet(&format!("the join {other:?}"))),
        };
        let on = match constraint {
            JoinConstraint::On(e) => conjuncts(e).into_iter().cloned().collect(),
            JoinConstraint::Using(cols) => {
                let names: Vec<String> = cols.iter().map(|c| c.to_string()).collect();
                using(&names, &leaves[..first_right], &leaves[first_right..*next])
            }
            JoinConstraint::Natural => {
                let (l, r) = (&leaves[..first_right], &leaves[first_right..*next]);
                using(&natural_columns(l, r), l, r)
            }
            JoinConstraint::None => Vec::new(),
            other => {
                return Err(er::not_supported_yet(&format!(
                    "the join constraint {other:?}"
                )))
            }
        };
        cur = match kind {
            JoinKind::Inner => inner(vec![cur, right], on),
            outer => Rel::Outer {
                kind: outer,
                left: Box::new(cur),
                right: Box::new(right),
                on,
                above: Vec::new(),
            },
        };
    }
    Ok(cur)
}

/// An inner-join group of `items` (nested groups merged: inner joins
/// associate and commute).
fn inner(items: Vec<Rel>, mut conds: Vec<Expr>) -> Rel {
    let mut flat = Vec::new();
    for i in items {
        match i {
            Rel::Inner { items, conds: c } => {
                flat.extend(items);
                conds.extend(c);
            }
            other => flat.push(other),
        }
    }
    if flat.len() == 1 && conds.is_empty() {
        return flat.pop().expect("one item");
    }
    Rel::Inner { items: flat, conds }
}

/// `USING (c, ...)`: `l.c = r.c` for each column, `l` the left leaf that
/// has it.
fn using(names: &[String], left: &[Leaf], right: &[Leaf]) -> Vec<Expr> {
    // The leaf whose column carries the merged value (not a duplicate an
    // earlier USING hid), else any that has it.
    let side = |ls: &[Leaf], name: &str| {
        let has = |l: &&Leaf, visible: bool| {
            l.scope
                .cols
                .iter()
                .any(|c| c.name.eq_ignore_ascii_case(name) && (!visible || !c.hidden))
        };
        ls.iter()
            .find(|l| has(l, true))
            .or_else(|| ls.iter().find(|l| has(l, false)))
            .map(|l| l.alias.clone())
            .unwrap_or_default()
    };
    names
        .iter()
        .map(|name| {
            let col = |alias: String| {
                Box::new(Expr::CompoundIdentifier(vec![
                    Ident::new(alias),
                    Ident::new(name.clone()),
                ]))
            };
            Expr::BinaryOp {
                left: col(side(left, name)),
                op: BinaryOperator::Eq,
                right: col(side(right, name)),
            }
        })
        .collect()
}

/// The columns a NATURAL join matches: the left side's names that the
/// right side has too, in the left side's order.
fn natural_columns(left: &[Leaf], right: &[Leaf]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in left
        .iter()
        .flat_map(|l| &l.scope.cols)
        .filter(|c| !c.hidden)
    {
        let on_right = right
            .iter()
            .flat_map(|l| &l.scope.cols)
            .any(|x| x.name.eq_ignore_ascii_case(&c.name));
        if on_right && !out.iter().any(|o| o.eq_ignore_ascii_case(&c.name)) {
            out.push(c.name.clone());
        }
    }
    out
}

/// `USING` and `NATURAL` joins merge each matched column pair into one:
/// the left one (the right one for a RIGHT JOIN) carries the value, the
/// other is hidden from unqualified names and `SELECT *`, and `SELECT *`
/// lists the merged columns first (MySQL's rules). An unknown USING
/// column is ERROR 1054.
fn mark_merged(from: &[TableWithJoins], leaves: &mut [Leaf]) -> Result<(), SqlError> {
    fn width(f: &TableFactor) -> usize {
        match f {
            TableFactor::NestedJoin {
                table_with_joins, ..
            } => {
                width(&table_with_joins.relation)
                    + table_with_joins
                        .joins
                        .iter()
                        .map(|j| width(&j.relation))
                        .sum::<usize>()
            }
            _ => 1,
        }
    }
    let mut next = 0;
    let mut rank: u16 = 0;
    for twj in from {
        let start = next;
        next += width(&twj.relation);
        for j in &twj.joins {
            let first_right = next;
            next += width(&j.relation);
            let (constraint, right_join) = match &j.join_operator {
                JoinOperator::Join(c)
                | JoinOperator::Inner(c)
                | JoinOperator::LeftOuter(c)
                | JoinOperator::Left(c) => (c, false),
                JoinOperator::RightOuter(c) | JoinOperator::Right(c) => (c, true),
                _ => continue,
            };
            let names: Vec<String> = match constraint {
                JoinConstraint::Using(cols) => cols
                    .iter()
                    .map(|c| c.to_string().trim_matches('`').to_string())
                    .collect(),
                JoinConstraint::Natural => {
                    natural_columns(&leaves[start..first_right], &leaves[first_right..next])
                }
                _ => continue,
            };
            // Merged columns are listed in the left side's order (MySQL).
            let mut names = names;
            let pos = |n: &String| {
                leaves[start..first_right]
                    .iter()
                    .flat_map(|l| &l.scope.cols)
                    .filter(|c| !c.hidden)
                    .position(|c| c.name.eq_ignore_ascii_case(n))
                    .unwrap_or(usize::MAX)
            };
            names.sort_by_key(|n| pos(n));
            for name in names {
                let find = |ls: &[Leaf], base: usize| -> Option<(usize, usize)> {
                    ls.iter().enumerate().find_map(|(li, l)| {
                        l.scope
                            .cols
                            .iter()
                            .position(|c| !c.hidden && c.name.eq_ignore_ascii_case(&name))
                            .map(|ci| (base + li, ci))
                    })
                };
                let (Some(l), Some(r)) = (
                    find(&leaves[start..first_right], start),
                    find(&leaves[first_right..next], first_right),
                ) else {
                    return Err(super::schema::unknown_column(&name, "from clause"));
                };
                let (keep, hide) = if right_join { (r, l) } else { (l, r) };
                leaves[hide.0].scope.cols[hide.1].hidden = true;
                let kept = &mut leaves[keep.0].scope.cols[keep.1];
                if kept.rank.is_none() {
                    kept.rank = Some(rank);
                    rank += 1;
                }
                if right_join {
                    // The left side's earlier rank moves to the right one.
                    let was = leaves[hide.0].scope.cols[hide.1].rank.take();
                    if let Some(w) = was {
                        leaves[keep.0].scope.cols[keep.1].rank = Some(w);
                    }
                }
            }
        }
    }
    Ok(())
}

/// A planned FROM clause.
pub struct FromPlan {
    /// The leaves, in FROM order.
    pub leaves: Vec<Leaf>,
    /// The operator tree.
    pub root: Node,
    /// WHERE conjuncts left for the caller (they hold subqueries or names
    /// the planner could not place), evaluated over the joined rows.
    pub residual: Vec<Expr>,
}

/// Plans `FROM ... WHERE` over bound leaves.
pub fn plan(
    from: &[TableWithJoins],
    filter: Option<&Expr>,
    mut leaves: Vec<Leaf>,
) -> Result<FromPlan, SqlError> {
    mark_merged(from, &mut leaves)?;
    let mut rel = bind_from(from, &leaves)?;
    let residual = rules::place_where(&mut rel, filter, &leaves);
    rules::distribute(&mut rel, &leaves);
    let root = rules::physical(rel, &leaves);
    Ok(FromPlan {
        leaves,
        root,
        residual,
    })
}

/// Binds a table factor that names a table (a base table, or an
/// information_schema table, whose rows are made here). `None` for other
/// factors (derived tables), which the caller binds.
pub fn bind_table(sx: &super::exec::Sx<'_>, f: &TableFactor) -> Result<Option<Leaf>, SqlError> {
    let TableFactor::Table { name, alias, .. } = f else {
        return Ok(None);
    };
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|p| p.to_string().trim_matches('`').to_string())
        .collect();
    let alias = alias.as_ref().map_or_else(
        || parts.last().cloned().unwrap_or_default(),
        |a| a.name.value.clone(),
    );
    if let Some(cte) = sx.cte(name) {
        let scope = super::exec::Scope {
            cols: cte
                .names
                .iter()
                .map(|n| super::exec::ScopeCol {
                    table: alias.to_ascii_lowercase(),
                    name: n.clone(),
                    ty: None,
                    not_null: false,
                    ..Default::default()
                })
                .collect(),
        };
        return Ok(Some(Leaf {
            alias,
            scope,
            source: LeafSource::Rows {
                rows: cte.rows.clone(),
                label: "CTEFullScan",
            },
        }));
    }
    let in_information_schema = match parts.as_slice() {
        [db, _] => db.eq_ignore_ascii_case("information_schema"),
        [_] => sx
            .session
            .db
            .as_deref()
            .is_some_and(|d| d.eq_ignore_ascii_case("information_schema")),
        _ => false,
    };
    if in_information_schema {
        let (scope, rows) =
            super::show::information_schema(sx, parts.last().map_or("", String::as_str), &alias)?;
        return Ok(Some(Leaf {
            alias,
            scope,
            source: LeafSource::Rows {
                rows,
                label: "MemTableScan",
            },
        }));
    }
    let (_, t) = sx.table(name)?;
    if t.view.is_some() {
        // Views run their query (`Runner::view_rows`).
        return Ok(None);
    }
    Ok(Some(Leaf {
        scope: Scope::of_table(&t, &alias),
        alias,
        source: LeafSource::Table(t),
    }))
}
