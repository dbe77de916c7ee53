//! Access paths: how the rows of one table are found for a WHERE clause.
//!
//! From the conjuncts `col = c`, `col IN (c, ...)`, `col BETWEEN a AND b`
//! and `col <op> c` (with `c` constant: literals, parameters, functions of
//! them) the planner picks, in order of preference:
//!
//! 1. **Point_Get / Batch_Point_Get** on the handle (integer primary key);
//! 2. **Point_Get** through a unique index with every column fixed;
//! 3. **TableRangeScan** on a handle range;
//! 4. **IndexRangeScan** + lookup on the index with the longest fixed
//!    prefix (then a range on its next column);
//! 5. **TableFullScan**.
//!
//! Every conjunct is still evaluated on the rows found, so a path only has
//! to return a superset: bounds are taken inclusive and values that do not
//! convert to the column's type fall back to a full scan.

use sqlparser::ast::{BinaryOperator, Expr, InTarget};
use tiox_client::txn::Transaction;

use super::codec;
use super::schema::{SchemaState, TableInfo};
use super::table::{self, Row};
use super::walk::conjuncts;
use crate::error::SqlError;
use crate::executor::eval::Ctx;
use crate::value::Value;

/// A bound of a range: the expression and whether it is inclusive.
pub type Bound = Option<(Expr, bool)>;

/// How rows are found.
#[derive(Clone, Debug)]
pub enum Access {
    /// Rows by handle values.
    Handles(Vec<Expr>),
    /// A handle range.
    HandleRange {
        /// Lower bound.
        lo: Bound,
        /// Upper bound.
        hi: Bound,
    },
    /// Through an index: a fixed prefix, then a range or IN list on the
    /// next column.
    Index {
        /// Offset in `TableInfo::indexes`.
        index: usize,
        /// Values of the first columns.
        eq: Vec<Expr>,
        /// `IN` values of the next column.
        next_in: Vec<Expr>,
        /// Lower bound of the next column.
        lo: Bound,
        /// Upper bound of the next column.
        hi: Bound,
    },
    /// Every row.
    Full,
}

#[derive(Default, Clone)]
struct ColPred {
    eq: Option<Expr>,
    list: Option<Vec<Expr>>,
    lo: Bound,
    hi: Bound,
}

/// The column of `t` that `e` names, if any.
pub fn column_ref(e: &Expr, t: &TableInfo, alias: &str) -> Option<usize> {
    match e {
        Expr::Identifier(id) if id.quote_style != Some('\'') && id.quote_style != Some('"') => {
            t.column(&id.value)
        }
        Expr::CompoundIdentifier(parts) => match parts.as_slice() {
            [a, c] if a.value.eq_ignore_ascii_case(alias) => t.column(&c.value),
            [_, a, c] if a.value.eq_ignore_ascii_case(alias) => t.column(&c.value),
            _ => None,
        },
        Expr::Nested(inner) => column_ref(inner, t, alias),
        _ => None,
    }
}

fn flip(op: &BinaryOperator) -> Option<BinaryOperator> {
    Some(match op {
        BinaryOperator::Eq => BinaryOperator::Eq,
        BinaryOperator::Lt => BinaryOperator::Gt,
        BinaryOperator::LtEq => BinaryOperator::GtEq,
        BinaryOperator::Gt => BinaryOperator::Lt,
        BinaryOperator::GtEq => BinaryOperator::LtEq,
        _ => return None,
    })
}

/// Chooses the access path for `t` (called `alias` in the query) under
/// the conjuncts of `filter`.
pub fn choose(t: &TableInfo, alias: &str, filter: Option<&Expr>) -> Access {
    let Some(filter) = filter else {
        return Access::Full;
    };
    let mut preds: Vec<ColPred> = vec![ColPred::default(); t.columns.len()];
    for c in conjuncts(filter) {
        match c {
            Expr::BinaryOp { left, op, right } => {
                let (col, op, val) = match (column_ref(left, t, alias), column_ref(right, t, alias))
                {
                    (Some(c), None) if table::is_const(right) => (c, op.clone(), right),
                    (None, Some(c)) if table::is_const(left) => match flip(op) {
                        Some(f) => (c, f, left),
                        None => continue,
                    },
                    _ => continue,
                };
                let p = &mut preds[col];
                match op {
                    BinaryOperator::Eq => p.eq = Some((**val).clone()),
                    BinaryOperator::Gt => p.lo = Some(((**val).clone(), false)),
                    BinaryOperator::GtEq => p.lo = Some(((**val).clone(), true)),
                    BinaryOperator::Lt => p.hi = Some(((**val).clone(), false)),
                    BinaryOperator::LtEq => p.hi = Some(((**val).clone(), true)),
                    _ => {}
                }
            }
            Expr::In {
                expr,
                target: InTarget::List(list),
                negated: false,
                ..
            } => {
                if let Some(col) = column_ref(expr, t, alias) {
                    if list.iter().all(table::is_const) && !list.is_empty() {
                        preds[col].list = Some(list.clone());
                    }
                }
            }
            Expr::Between {
                expr,
                negated: false,
                low,
                high,
            } => {
                if let Some(col) = column_ref(expr, t, alias) {
                    if table::is_const(low) && table::is_const(high) {
                        preds[col].lo = Some(((**low).clone(), true));
                        preds[col].hi = Some(((**high).clone(), true));
                    }
                }
            }
            _ => {}
        }
    }
    if let Some(h) = t.handle_col {
        let p = &preds[h];
        if let Some(e) = &p.eq {
            return Access::Handles(vec![e.clone()]);
        }
        if let Some(l) = &p.list {
            return Access::Handles(l.clone());
        }
    }
    let usable = |ix: &&super::schema::IndexInfo| {
        ix.state == SchemaState::Public
            && ix
                .columns
                .iter()
                .all(|&c| table::indexable(&t.columns[c].ty.kind))
    };
    for (i, ix) in t.indexes.iter().enumerate().filter(|(_, ix)| usable(ix)) {
        if ix.unique && ix.columns.iter().all(|&c| preds[c].eq.is_some()) {
            return Access::Index {
                index: i,
                eq: ix
                    .columns
                    .iter()
                    .map(|&c| {
                        preds[c]
                            .eq
                            .clone()
                            .unwrap_or(Expr::value(sqlparser::ast::Value::Null))
                    })
                    .collect(),
                next_in: Vec::new(),
                lo: None,
                hi: None,
            };
        }
    }
    if let Some(h) = t.handle_col {
        let p = &preds[h];
        if p.lo.is_some() || p.hi.is_some() {
            return Access::HandleRange {
                lo: p.lo.clone(),
                hi: p.hi.clone(),
            };
        }
    }
    // The index with the most fixed columns (then a range or IN on the next).
    let mut best: Option<(usize, usize, bool)> = None;
    for (i, ix) in t.indexes.iter().enumerate().filter(|(_, ix)| usable(ix)) {
        let fixed = ix
            .columns
            .iter()
            .take_while(|&&c| preds[c].eq.is_some())
            .count();
        let next = ix.columns.get(fixed).map(|&c| &preds[c]);
        let ranged = next.is_some_and(|p| p.lo.is_some() || p.hi.is_some() || p.list.is_some());
        if fixed == 0 && !ranged {
            continue;
        }
        let score = (fixed, usize::from(ranged));
        if best.is_none_or(|(_, f, r)| score > (f, usize::from(r))) {
            best = Some((i, fixed, ranged));
        }
    }
    if let Some((i, fixed, ranged)) = best {
        let ix = &t.indexes[i];
        let eq = ix.columns[..fixed]
            .iter()
            .map(|&c| {
                preds[c]
                    .eq
                    .clone()
                    .unwrap_or(Expr::value(sqlparser::ast::Value::Null))
            })
            .collect();
        let (next_in, lo, hi) = match (ranged, ix.columns.get(fixed)) {
            (true, Some(&c)) => match &preds[c].list {
                Some(l) => (l.clone(), None, None),
                None => (Vec::new(), preds[c].lo.clone(), preds[c].hi.clone()),
            },
            _ => (Vec::new(), None, None),
        };
        return Access::Index {
            index: i,
            eq,
            next_in,
            lo,
            hi,
        };
    }
    Access::Full
}

/// TiDB-style operator name, access object and operator info for EXPLAIN.
pub fn describe(t: &TableInfo, a: &Access) -> (String, String, String) {
    match a {
        Access::Handles(v) if v.len() == 1 => (
            "Point_Get".into(),
            format!("table:{}", t.name),
            format!("handle:{}", v[0]),
        ),
        Access::Handles(v) => (
            "Batch_Point_Get".into(),
            format!("table:{}", t.name),
            format!(
                "handle:[{}]",
                v.iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
        ),
        Access::HandleRange { lo, hi } => (
            "TableRangeScan".into(),
            format!("table:{}", t.name),
            format!("range:{}", range_text(lo, hi)),
        ),
        Access::Index {
            index,
            eq,
            next_in,
            lo,
            hi,
        } => {
            let ix = &t.indexes[*index];
            let point = ix.unique && eq.len() == ix.columns.len();
            let mut parts: Vec<String> = eq.iter().map(|e| e.to_string()).collect();
            if !next_in.is_empty() {
                parts.push(format!(
                    "in({})",
                    next_in
                        .iter()
                        .map(|e| e.to_string())
                        .collect::<Vec<_>>()
                        .join(",")
                ));
            } else if lo.is_some() || hi.is_some() {
                parts.push(range_text(lo, hi));
            }
            (
                if point {
                    "Point_Get".into()
                } else {
                    "IndexLookUp".into()
                },
                format!(
                    "table:{}, index:{}({})",
                    t.name,
                    ix.name,
                    ix.columns
                        .iter()
                        .map(|&c| t.columns[c].name.clone())
                        .collect::<Vec<_>>()
                        .join(", "),
                ),
                format!("range:[{}]", parts.join(" ")),
            )
        }
        Access::Full => (
            "TableFullScan".into(),
            format!("table:{}", t.name),
            "keep order:false".into(),
        ),
    }
}

fn range_text(lo: &Bound, hi: &Bound) -> String {
    format!(
        "{}{},{}{}",
        if lo.as_ref().is_some_and(|l| l.1) {
            "["
        } else {
            "("
        },
        lo.as_ref().map_or("-inf".into(), |l| l.0.to_string()),
        hi.as_ref().map_or("+inf".into(), |h| h.0.to_string()),
        if hi.as_ref().is_some_and(|h| h.1) {
            "]"
        } else {
            ")"
        },
    )
}

/// Why a path could not be used with these values (run a full scan).
struct Fallback;

fn coerce_key(t: &TableInfo, col: usize, v: Value) -> Result<Value, Fallback> {
    t.columns[col]
        .ty
        .coerce(v, &t.columns[col].name)
        .map_err(|_| Fallback)
}

fn int_bound(v: &Value, up: bool) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        Value::UInt(u) => Some(i64::try_from(*u).unwrap_or(i64::MAX)),
        Value::Null => None,
        other => {
            let f = crate::executor::eval::to_f64(other);
            let r = if up { f.ceil() } else { f.floor() };
            Some(r.clamp(i64::MIN as f64, i64::MAX as f64) as i64)
        }
    }
}

/// Finds the rows of `t` by `access`. `limit` stops scans early (only
/// when no later filter can drop rows).
pub async fn fetch(
    tx: &Transaction,
    t: &TableInfo,
    access: &Access,
    ctx: &Ctx<'_>,
    limit: Option<usize>,
) -> Result<Vec<(i64, Row)>, SqlError> {
    match try_fetch(tx, t, access, ctx, limit).await? {
        Ok(rows) => Ok(rows),
        Err(Fallback) => {
            table::scan_rows(tx, t, codec::record_prefix(t.id), Vec::new(), limit).await
        }
    }
}

async fn try_fetch(
    tx: &Transaction,
    t: &TableInfo,
    access: &Access,
    ctx: &Ctx<'_>,
    limit: Option<usize>,
) -> Result<Result<Vec<(i64, Row)>, Fallback>, SqlError> {
    Ok(Ok(match access {
        Access::Full => {
            table::scan_rows(tx, t, codec::record_prefix(t.id), Vec::new(), limit).await?
        }
        Access::Handles(exprs) => {
            let h = t.handle_col.expect("handle access needs a handle column");
            let mut handles = Vec::new();
            for e in exprs {
                let v = ctx.eval(e)?;
                if v.is_null() {
                    continue;
                }
                let Ok(v) = coerce_key(t, h, v) else {
                    return Ok(Err(Fallback));
                };
                if let Some(x) = table::handle_of(&v) {
                    if !handles.contains(&x) {
                        handles.push(x);
                    }
                }
            }
            if handles.len() == 1 {
                table::get_row(tx, t, handles[0])
                    .await?
                    .map(|r| (handles[0], r))
                    .into_iter()
                    .collect()
            } else {
                table::get_rows(tx, t, &handles).await?
            }
        }
        Access::HandleRange { lo, hi } => {
            let lo_v = match lo {
                Some((e, _)) => Some(ctx.eval(e)?),
                None => None,
            };
            let hi_v = match hi {
                Some((e, _)) => Some(ctx.eval(e)?),
                None => None,
            };
            if lo_v.as_ref().is_some_and(Value::is_null)
                || hi_v.as_ref().is_some_and(Value::is_null)
            {
                return Ok(Ok(Vec::new()));
            }
            let start = match lo_v.as_ref().and_then(|v| int_bound(v, false)) {
                Some(l) => codec::record_key(t.id, l),
                None => codec::record_prefix(t.id),
            };
            let end = match hi_v.as_ref().and_then(|v| int_bound(v, true)) {
                Some(h) if h < i64::MAX => codec::record_key(t.id, h + 1),
                _ => Vec::new(),
            };
            table::scan_rows(tx, t, start, end, limit).await?
        }
        Access::Index {
            index,
            eq,
            next_in,
            lo,
            hi,
        } => {
            let ix = &t.indexes[*index];
            let mut prefix = codec::index_prefix(t.id, ix.id);
            for (e, &c) in eq.iter().zip(&ix.columns) {
                let v = ctx.eval(e)?;
                if v.is_null() {
                    return Ok(Ok(Vec::new()));
                }
                let Ok(v) = coerce_key(t, c, v) else {
                    return Ok(Err(Fallback));
                };
                codec::encode_datum(&mut prefix, &v, &t.columns[c].ty);
            }
            let next = ix.columns.get(eq.len()).copied();
            let mut ranges: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
            if let (Some(c), false) = (next, next_in.is_empty()) {
                for e in next_in {
                    let v = ctx.eval(e)?;
                    if v.is_null() {
                        continue;
                    }
                    let Ok(v) = coerce_key(t, c, v) else {
                        return Ok(Err(Fallback));
                    };
                    let mut k = prefix.clone();
                    codec::encode_datum(&mut k, &v, &t.columns[c].ty);
                    let end = codec::prefix_end(&k);
                    // `IN (18, 18)` scans 18 once.
                    if !ranges.iter().any(|(s, _)| *s == k) {
                        ranges.push((k, end));
                    }
                }
            } else if let (Some(c), true) = (next, lo.is_some() || hi.is_some()) {
                let ty = &t.columns[c].ty;
                let mut start = prefix.clone();
                let mut end = codec::prefix_end(&prefix);
                if let Some((e, _)) = lo {
                    let v = ctx.eval(e)?;
                    if v.is_null() {
                        return Ok(Ok(Vec::new()));
                    }
                    let v = if ty.is_integer() {
                        int_bound(&v, false).map_or(Value::Null, Value::Int)
                    } else {
                        v
                    };
                    let Ok(v) = coerce_key(t, c, v) else {
                        return Ok(Err(Fallback));
                    };
                    codec::encode_datum(&mut start, &v, ty);
                } else {
                    // Skip NULLs: they sort first and never match a range.
                    codec::encode_datum(&mut start, &Value::Null, ty);
                    start = codec::prefix_end(&start);
                }
                if let Some((e, _)) = hi {
                    let v = ctx.eval(e)?;
                    if v.is_null() {
                        return Ok(Ok(Vec::new()));
                    }
                    let v = if ty.is_integer() {
                        int_bound(&v, true).map_or(Value::Null, Value::Int)
                    } else {
                        v
                    };
                    let Ok(v) = coerce_key(t, c, v) else {
                        return Ok(Err(Fallback));
                    };
                    let mut k = prefix.clone();
                    codec::encode_datum(&mut k, &v, ty);
                    end = codec::prefix_end(&k);
                }
                ranges.push((start, end));
            } else {
                let end = codec::prefix_end(&prefix);
                ranges.push((prefix, end));
            }
            let mut handles = Vec::new();
            let mut seen = std::collections::HashSet::new();
            for (s, e) in ranges {
                for h in table::scan_index(tx, s, e, limit).await? {
                    if seen.insert(h) {
                        handles.push(h);
                    }
                }
            }
            table::get_rows(tx, t, &handles).await?
        }
    }))
}
