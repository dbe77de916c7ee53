//! The rest of a SELECT after FROM and WHERE, bound once and run as
//! operators:
//!
//! ```text
//!  rows of FROM + WHERE (layout: the FROM scope)
//!   └► Aggregation   GROUP BY keys and aggregate arguments bound over
//!                    the FROM scope; out: first row ++ aggregate values
//!   └► Projection    select list bound over that layout (an aggregate
//!                    call is the column holding its value)
//!   └► Selection     HAVING, over the layout ++ the select-list values
//!   └► Distinct      DISTINCT over the select-list values
//!   └► Sort / TopN   ORDER BY keys (a number: that output column; an
//!                    output alias: its value; else an expression over the
//!                    same layout as HAVING); TopN when a LIMIT follows
//!   └► Limit         OFFSET / LIMIT
//! ```
//!
//! [`bind_tail`] answers `None` when a part holds a form the binder does
//! not know (subqueries in the select list or HAVING, `DATE_ADD` with an
//! `INTERVAL`, variables, ...): `exec` then runs that SELECT by the syntax
//! evaluator, as before the binder.

use sqlparser::ast::{Expr, GroupByExpr, OrderByExpr, Select};

use super::super::exec::{Outer, Scope, Sx};
use super::super::expr::bind::{bind, Names};
use super::super::expr::BoundExpr;
use super::super::operator::aggregation::{self, agg_calls, BoundAgg};
use super::super::operator::profile::{Profile, Slot};
use super::super::operator::{limit, projection, sort};
use super::super::table::Row;
use crate::error::{er, ErrorKind, SqlError};

/// The bound plan of a SELECT's tail.
pub struct Tail<'q> {
    /// GROUP BY keys and aggregates, when the query groups.
    pub aggregation: Option<(Vec<BoundExpr>, Vec<BoundAgg<'q>>)>,
    /// The select list.
    pub items: Vec<BoundExpr>,
    /// HAVING.
    pub having: Option<BoundExpr>,
    /// `SELECT DISTINCT`.
    pub distinct: bool,
    /// ORDER BY keys and whether each descends.
    pub order: Vec<BoundExpr>,
    /// DESC per key.
    pub desc: Vec<bool>,
    /// OFFSET.
    pub offset: usize,
    /// LIMIT.
    pub limit: Option<usize>,
}

/// A query's ORDER BY keys, OFFSET and LIMIT.
pub type Ordering<'q> = (&'q [&'q OrderByExpr], usize, Option<usize>);

/// Binds the tail of `s` whose select list is `items` (wildcards
/// expanded, named `names`) over rows of `scope`.
pub fn bind_tail<'q>(
    sx: &Sx<'_>,
    s: &'q Select,
    items: &'q [Expr],
    names: &[String],
    (order, offset, limit): Ordering<'q>,
    scope: &Scope,
    outer: Option<&Outer>,
) -> Result<Option<Tail<'q>>, SqlError> {
    let ctx = sx.ctx(None);
    let group_exprs: &[Expr] = match &s.group_by {
        GroupByExpr::Expressions(v, _) => v,
        GroupByExpr::All(_) => return Err(er::not_supported_yet("GROUP BY ALL")),
    };
    let mut agg_inputs: Vec<&Expr> = items.iter().collect();
    agg_inputs.extend(s.having.as_ref());
    agg_inputs.extend(order.iter().map(|o| &o.expr));
    let calls = agg_calls(&agg_inputs);
    let grouped = !calls.is_empty() || !group_exprs.is_empty();
    let width = scope.cols.len();
    macro_rules! bound {
        ($names:expr, $e:expr) => {
            match bind(&ctx, $names, $e)? {
                Some(b) => b,
                None => return Ok(None),
            }
        };
    }
    let over_rows = Names::of(scope, outer);
    let aggregation = if grouped {
        let mut keys = Vec::with_capacity(group_exprs.len());
        for g in group_exprs {
            keys.push(bound!(&over_rows, group_item(g, items, names, scope)?));
        }
        let mut aggs = Vec::with_capacity(calls.len());
        for call in calls {
            let arg = match call.arg {
                Some(e) if !call.star => Some(bound!(&over_rows, e)),
                _ => None,
            };
            let arg2 = match call.arg2 {
                Some(e) => Some(bound!(&over_rows, e)),
                None => None,
            };
            aggs.push(BoundAgg { call, arg, arg2 });
        }
        Some((keys, aggs))
    } else {
        None
    };
    let agg_cols: Vec<(&Expr, usize)> = aggregation
        .iter()
        .flat_map(|(_, aggs)| aggs.iter())
        .enumerate()
        .map(|(i, a)| (a.call.node, width + i))
        .collect();
    let base = width + agg_cols.len();
    let project = Names {
        scope,
        outer,
        aliases: (&[], 0),
        aggs: &agg_cols,
    };
    let mut bound_items = Vec::with_capacity(items.len());
    for e in items {
        bound_items.push(bound!(&project, e));
    }
    let after = Names {
        aliases: (names, base),
        ..project
    };
    let having = match &s.having {
        Some(h) => Some(bound!(&after, h)),
        None => None,
    };
    let mut keys = Vec::with_capacity(order.len());
    for o in order {
        keys.push(match order_item(&o.expr, names, base)? {
            Some(k) => k,
            None => bound!(&after, &o.expr),
        });
    }
    let distinct = match &s.distinct {
        None | Some(sqlparser::ast::Distinct::All) => false,
        Some(sqlparser::ast::Distinct::Distinct) => true,
        Some(sqlparser::ast::Distinct::On(_)) => return Err(er::not_supported_yet("DISTINCT ON")),
    };
    Ok(Some(Tail {
        aggregation,
        items: bound_items,
        having,
        distinct,
        desc: super::super::exec::descending(order),
        order: keys,
        offset,
        limit,
    }))
}

/// `GROUP BY n` / `GROUP BY alias`: the select-list expression it names.
fn group_item<'q>(
    g: &'q Expr,
    items: &'q [Expr],
    names: &[String],
    scope: &Scope,
) -> Result<&'q Expr, SqlError> {
    if let Expr::Value(v) = g {
        if let sqlparser::ast::Value::Number(n, _) = &v.value {
            let i: usize = n.parse().unwrap_or(0);
            return items.get(i.wrapping_sub(1)).ok_or_else(|| {
                SqlError::of(
                    ErrorKind::BadField,
                    format!("Unknown column '{n}' in 'group statement'"),
                )
            });
        }
    }
    if let Expr::Identifier(id) = g {
        if scope.find(std::slice::from_ref(id))?.is_none() {
            if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(&id.value)) {
                return Ok(&items[i]);
            }
        }
    }
    Ok(g)
}

/// `ORDER BY n` (the n-th output column) and `ORDER BY alias` (an output
/// alias wins over a source column, as MySQL).
fn order_item(e: &Expr, names: &[String], base: usize) -> Result<Option<BoundExpr>, SqlError> {
    if let Expr::Value(v) = e {
        if let sqlparser::ast::Value::Number(n, _) = &v.value {
            let i: usize = n.parse().unwrap_or(0);
            if i == 0 || i > names.len() {
                return Err(SqlError::of(
                    ErrorKind::BadField,
                    format!("Unknown column '{n}' in 'order clause'"),
                ));
            }
            return Ok(Some(BoundExpr::Column(base + i - 1)));
        }
    }
    if let Expr::Identifier(id) = e {
        if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(&id.value)) {
            return Ok(Some(BoundExpr::Column(base + i)));
        }
    }
    Ok(None)
}

impl Tail<'_> {
    /// Runs the tail over the rows of FROM + WHERE (of `width` columns),
    /// measuring each step into `profile`.
    pub fn run(
        &self,
        sx: &Sx<'_>,
        rows: Vec<Row>,
        width: usize,
        profile: Option<&Profile>,
    ) -> Result<Vec<Row>, SqlError> {
        let step = Step { sx, profile };
        let rows = match &self.aggregation {
            Some((keys, aggs)) => step.measure(Slot::Aggregation, || {
                let calls: Vec<&_> = aggs.iter().map(|a| &a.call).collect();
                let inputs = (keys.as_slice(), aggs.as_slice(), sx);
                aggregation::run(sx, &rows, width, keys.is_empty(), &calls, &inputs)
            })?,
            None => rows,
        };
        let out = step.measure(Slot::Having, || {
            projection::run(sx, rows, &self.items, self.having.as_ref(), &self.order)
        })?;
        let out = if self.distinct {
            step.measure(Slot::Distinct, || {
                let mut out = out;
                aggregation::distinct(&mut out, |(_, r)| r.as_slice());
                Ok(out)
            })?
        } else {
            out
        };
        let out = match (self.order.is_empty(), self.limit) {
            (true, _) => out,
            (false, Some(n)) => step.measure(Slot::Order, || {
                Ok(sort::top_n(out, &self.desc, self.offset.saturating_add(n)))
            })?,
            (false, None) => step.measure(Slot::Order, || {
                let mut out = out;
                sort::sort(&mut out, &self.desc);
                Ok(out)
            })?,
        };
        let out = step.measure(Slot::Limit, || Ok(limit::run(out, self.offset, self.limit)))?;
        Ok(out.into_iter().map(|(_, r)| r).collect())
    }
}

/// One step of the tail, measured when the statement is profiled.
struct Step<'a, 's> {
    sx: &'a Sx<'s>,
    profile: Option<&'a Profile>,
}

impl Step<'_, '_> {
    fn measure<R>(
        &self,
        slot: Slot,
        f: impl FnOnce() -> Result<Vec<R>, SqlError>,
    ) -> Result<Vec<R>, SqlError> {
        let (start, mem) = (std::time::Instant::now(), self.sx.mem.used());
        let out = f()?;
        if let Some(p) = self.profile {
            let used = self.sx.mem.used().saturating_sub(mem);
            p.add(slot, out.len() as u64, start.elapsed(), used);
        }
        Ok(out)
    }
}
