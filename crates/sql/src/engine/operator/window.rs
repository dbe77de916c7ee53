//! Window functions: `f(...) OVER (PARTITION BY ... ORDER BY ... frame)`
//! and named windows (`WINDOW w AS (...)`), computed after WHERE, GROUP
//! BY and HAVING over the rows a SELECT projects, as MySQL does.
//!
//! Ranking (`ROW_NUMBER`, `RANK`, `DENSE_RANK`, `PERCENT_RANK`,
//! `CUME_DIST`, `NTILE`), offsets (`LAG`, `LEAD`), values over the frame
//! (`FIRST_VALUE`, `LAST_VALUE`, `NTH_VALUE`) and the aggregates (`SUM`,
//! `AVG`, `COUNT`, `MIN`, `MAX`, ...) over a frame. Frames: `ROWS` with
//! `UNBOUNDED` / `n PRECEDING|FOLLOWING` / `CURRENT ROW`, and `RANGE` with
//! `UNBOUNDED` / `CURRENT ROW` (peers); the default is MySQL's (with ORDER
//! BY, the partition's start to the current row's last peer; without, the
//! whole partition). `RANGE` with a value offset and `GROUPS` are refused
//! (1235). A frame that starts at the partition's start is accumulated
//! row by row, not re-summed.

use std::cmp::Ordering;
use std::collections::HashMap;

use sqlparser::ast::{
    Expr, FunctionArguments, NamedWindowDefinition, NamedWindowExpr, OrderByExpr, WindowFrame,
    WindowFrameBound, WindowFrameUnits, WindowSpec, WindowType,
};

use super::aggregation::{group_key, AggCall};
use super::sort::cmp_keys;
use crate::engine::exec::Pre;
use crate::engine::table::Row;
use crate::engine::walk;
use crate::error::{er, SqlError};
use crate::executor::eval::to_f64;
use crate::value::Value;

/// A window, named windows resolved: borrowed from the query, so that an
/// aggregate in its ORDER BY is the node the grouping step computed.
#[derive(Clone, Default)]
pub struct Window<'q> {
    /// PARTITION BY.
    pub partition_by: Vec<&'q Expr>,
    /// ORDER BY.
    pub order_by: Vec<&'q OrderByExpr>,
    /// The frame, if written.
    pub frame: Option<&'q WindowFrame>,
}

/// One window function call of a query.
pub struct WinCall<'q> {
    /// The call as written (its value is stored under this node).
    pub node: &'q Expr,
    /// Lower-case name.
    pub name: String,
    /// Arguments.
    pub args: Vec<&'q Expr>,
    /// `COUNT(*)`.
    pub star: bool,
    /// The window.
    pub spec: Window<'q>,
}

/// Whether `exprs` call a window function.
pub fn has_window(exprs: &[&Expr]) -> bool {
    let mut any = false;
    for e in exprs {
        walk::walk(e, &mut |x| {
            if matches!(x, Expr::Function(f) if f.over.is_some()) {
                any = true;
            }
            !any
        });
    }
    any
}

fn resolve<'q>(
    named: &'q [NamedWindowDefinition],
    name: &str,
    depth: usize,
) -> Result<Window<'q>, SqlError> {
    let unknown = || er::not_supported_yet(&format!("the unknown window `{name}`"));
    if depth > named.len() {
        return Err(unknown());
    }
    let def = named
        .iter()
        .find(|d| d.0.value.eq_ignore_ascii_case(name))
        .ok_or_else(unknown)?;
    match &def.1 {
        NamedWindowExpr::NamedWindow(other) => resolve(named, &other.value, depth + 1),
        NamedWindowExpr::WindowSpec(spec) => extend(named, spec, depth + 1),
    }
}

/// A spec that names a base window gets the base's parts it leaves out.
fn extend<'q>(
    named: &'q [NamedWindowDefinition],
    spec: &'q WindowSpec,
    depth: usize,
) -> Result<Window<'q>, SqlError> {
    let own = Window {
        partition_by: spec.partition_by.iter().collect(),
        order_by: spec.order_by.iter().collect(),
        frame: spec.window_frame.as_ref(),
    };
    let Some(base) = &spec.window_name else {
        return Ok(own);
    };
    let b = resolve(named, &base.value, depth)?;
    Ok(Window {
        partition_by: if own.partition_by.is_empty() {
            b.partition_by
        } else {
            own.partition_by
        },
        order_by: if own.order_by.is_empty() {
            b.order_by
        } else {
            own.order_by
        },
        frame: own.frame.or(b.frame),
    })
}

/// The expressions of the windows `exprs` use and of the named windows
/// (PARTITION BY and ORDER BY): the grouping step computes the
/// aggregates in them.
pub fn window_exprs<'q>(exprs: &[&'q Expr], named: &'q [NamedWindowDefinition]) -> Vec<&'q Expr> {
    let mut out = Vec::new();
    let spec = |s: &'q WindowSpec, out: &mut Vec<&'q Expr>| {
        out.extend(s.partition_by.iter());
        out.extend(s.order_by.iter().map(|o| &o.expr));
    };
    for e in exprs {
        walk::walk(e, &mut |x| {
            if let Expr::Function(f) = x {
                if let Some(WindowType::WindowSpec(s)) = &f.over {
                    spec(s, &mut out);
                }
            }
            true
        });
    }
    for d in named {
        if let NamedWindowExpr::WindowSpec(s) = &d.1 {
            spec(s, &mut out);
        }
    }
    out
}

/// The window calls in `exprs` (not looking into them).
pub fn window_calls<'q>(
    exprs: &[&'q Expr],
    named: &'q [NamedWindowDefinition],
) -> Result<Vec<WinCall<'q>>, SqlError> {
    let mut out = Vec::new();
    let mut err = None;
    for e in exprs {
        walk::walk(e, &mut |x| {
            let Expr::Function(f) = x else {
                return true;
            };
            let Some(over) = &f.over else {
                return true;
            };
            let spec = match over {
                WindowType::WindowSpec(s) => extend(named, s, 0),
                WindowType::NamedWindow(n) => resolve(named, &n.value, 0),
            };
            match spec {
                Ok(spec) => {
                    let star = matches!(&f.args, FunctionArguments::List(l) if l.args.iter().any(|a| matches!(a, sqlparser::ast::FunctionArg::Unnamed(sqlparser::ast::FunctionArgExpr::Wildcard))));
                    out.push(WinCall {
                        node: x,
                        name: f.name.to_string().to_ascii_lowercase(),
                        args: walk::args(f),
                        star,
                        spec,
                    });
                }
                Err(e) => err = Some(e),
            }
            false
        });
    }
    match err {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// Computes every call over `rows` (each row with its precomputed values)
/// and stores each value in the row's [`Pre`] under the call's node.
/// `eval` evaluates an expression over one row.
pub fn compute(
    calls: &[WinCall<'_>],
    rows: &mut [(Row, Pre)],
    eval: &dyn Fn(&Expr, &Row, &Pre) -> Result<Value, SqlError>,
) -> Result<(), SqlError> {
    for call in calls {
        let values = one(call, rows, eval)?;
        for ((_, pre), v) in rows.iter_mut().zip(values) {
            pre.set(call.node, v);
        }
    }
    Ok(())
}

fn one(
    call: &WinCall<'_>,
    rows: &[(Row, Pre)],
    eval: &dyn Fn(&Expr, &Row, &Pre) -> Result<Value, SqlError>,
) -> Result<Vec<Value>, SqlError> {
    let spec = &call.spec;
    let desc: Vec<bool> = spec
        .order_by
        .iter()
        .map(|o| matches!(o.options.sort, Some(sqlparser::ast::OrderBySort::Desc)))
        .collect();
    // Partitions in order of first appearance, each sorted by ORDER BY.
    let mut index: HashMap<Vec<u8>, usize> = HashMap::new();
    let mut parts: Vec<Vec<(Vec<Value>, usize)>> = Vec::new();
    for (i, (row, pre)) in rows.iter().enumerate() {
        let pk: Vec<Value> = spec
            .partition_by
            .iter()
            .map(|e| eval(e, row, pre))
            .collect::<Result<_, _>>()?;
        let mut k = Vec::new();
        group_key(&pk, &mut k);
        let ok: Vec<Value> = spec
            .order_by
            .iter()
            .map(|o| eval(&o.expr, row, pre))
            .collect::<Result<_, _>>()?;
        let p = *index.entry(k).or_insert_with(|| {
            parts.push(Vec::new());
            parts.len() - 1
        });
        parts[p].push((ok, i));
    }
    let mut out = vec![Value::Null; rows.len()];
    for part in &mut parts {
        part.sort_by(|a, b| cmp_keys(&a.0, &b.0, &desc));
        let n = part.len();
        let peer = |a: usize, b: usize| cmp_keys(&part[a].0, &part[b].0, &desc) == Ordering::Equal;
        // First and last peer of each position.
        let mut first = vec![0; n];
        let mut last = vec![0; n];
        for p in 0..n {
            first[p] = if p > 0 && peer(p - 1, p) {
                first[p - 1]
            } else {
                p
            };
        }
        for p in (0..n).rev() {
            last[p] = if p + 1 < n && peer(p, p + 1) {
                last[p + 1]
            } else {
                p
            };
        }
        let arg = |k: usize, p: usize| -> Result<Value, SqlError> {
            match call.args.get(k) {
                Some(e) => {
                    let (row, pre) = &rows[part[p].1];
                    eval(e, row, pre)
                }
                None => Ok(Value::Null),
            }
        };
        let constant = |k: usize, default: i64| -> Result<i64, SqlError> {
            match call.args.get(k) {
                Some(e) => {
                    let (row, pre) = &rows[part[0].1];
                    let v = eval(e, row, pre)?;
                    Ok(if v.is_null() {
                        default
                    } else {
                        to_f64(&v) as i64
                    })
                }
                None => Ok(default),
            }
        };
        match call.name.as_str() {
            "row_number" | "rank" | "dense_rank" | "percent_rank" | "cume_dist" | "ntile" => {
                let buckets = if call.name == "ntile" {
                    let k = constant(0, 1)?;
                    if k <= 0 {
                        return Err(er::wrong_arguments("ntile"));
                    }
                    k as usize
                } else {
                    1
                };
                let mut dense = 0i64;
                for p in 0..n {
                    if first[p] == p {
                        dense += 1;
                    }
                    let v = match call.name.as_str() {
                        "row_number" => Value::Int(p as i64 + 1),
                        "rank" => Value::Int(first[p] as i64 + 1),
                        "dense_rank" => Value::Int(dense),
                        "percent_rank" => Value::Double(if n <= 1 {
                            0.0
                        } else {
                            first[p] as f64 / (n - 1) as f64
                        }),
                        "cume_dist" => Value::Double((last[p] + 1) as f64 / n as f64),
                        _ => {
                            // The first n % k buckets hold one row more.
                            let (size, extra) = (n / buckets, n % buckets);
                            let big = (size + 1) * extra;
                            let b = if p < big {
                                p / (size + 1)
                            } else {
                                extra + (p - big) / size.max(1)
                            };
                            Value::Int(b as i64 + 1)
                        }
                    };
                    out[part[p].1] = v;
                }
            }
            "lag" | "lead" => {
                let off = constant(1, 1)?;
                for p in 0..n {
                    let target = if call.name == "lag" {
                        p as i64 - off
                    } else {
                        p as i64 + off
                    };
                    out[part[p].1] = if (0..n as i64).contains(&target) {
                        arg(0, target as usize)?
                    } else {
                        arg(2, p)?
                    };
                }
            }
            name => {
                let frames = frames(spec, n, &first, &last, &|e: &Expr| {
                    let (row, pre) = &rows[part[0].1];
                    eval(e, row, pre)
                })?;
                match name {
                    "first_value" | "last_value" | "nth_value" => {
                        let nth = if name == "nth_value" {
                            constant(1, 1)?
                        } else {
                            1
                        };
                        if nth < 1 {
                            return Err(er::wrong_arguments("nth_value"));
                        }
                        for p in 0..n {
                            let (lo, hi) = frames[p];
                            let at = match name {
                                "first_value" => (lo < hi).then_some(lo),
                                "last_value" => (lo < hi).then(|| hi - 1),
                                _ => {
                                    let j = lo + nth as usize - 1;
                                    (j < hi).then_some(j)
                                }
                            };
                            out[part[p].1] = match at {
                                Some(j) => arg(0, j)?,
                                None => Value::Null,
                            };
                        }
                    }
                    _ if walk::is_aggregate(name) => {
                        let agg = AggCall {
                            node: call.node,
                            name: name.to_string(),
                            arg: call.args.first().copied(),
                            arg2: call.args.get(1).copied(),
                            distinct: false,
                            star: call.star,
                            separator: ",".into(),
                        };
                        let vals: Vec<Value> = (0..n)
                            .map(|p| {
                                if call.star {
                                    Ok(Value::Int(1))
                                } else {
                                    arg(0, p)
                                }
                            })
                            .collect::<Result<_, _>>()?;
                        let running = frames.iter().all(|(lo, _)| *lo == 0)
                            && frames.windows(2).all(|w| w[0].1 <= w[1].1);
                        if running {
                            let mut acc = agg.init();
                            let mut added = 0;
                            for p in 0..n {
                                while added < frames[p].1 {
                                    agg.add(&mut acc, vals[added].clone());
                                    added += 1;
                                }
                                out[part[p].1] = agg.finish(&acc);
                            }
                        } else {
                            for p in 0..n {
                                let mut acc = agg.init();
                                for v in &vals[frames[p].0..frames[p].1] {
                                    agg.add(&mut acc, v.clone());
                                }
                                out[part[p].1] = agg.finish(&acc);
                            }
                        }
                    }
                    other => return Err(er::sp_does_not_exist(other)),
                }
            }
        }
    }
    Ok(out)
}

/// Each position's frame as `[lo, hi)` within the partition.
fn frames(
    spec: &Window<'_>,
    n: usize,
    first: &[usize],
    last: &[usize],
    eval: &dyn Fn(&Expr) -> Result<Value, SqlError>,
) -> Result<Vec<(usize, usize)>, SqlError> {
    let Some(f) = spec.frame else {
        return Ok((0..n)
            .map(|p| {
                if spec.order_by.is_empty() {
                    (0, n)
                } else {
                    (0, last[p] + 1)
                }
            })
            .collect());
    };
    let end = f.end_bound.clone().unwrap_or(WindowFrameBound::CurrentRow);
    let offset = |e: &Option<Box<Expr>>| -> Result<Option<usize>, SqlError> {
        match e {
            None => Ok(None),
            Some(x) => {
                let v = to_f64(&eval(x)?);
                if v < 0.0 {
                    return Err(er::wrong_arguments("the window frame"));
                }
                Ok(Some(v as usize))
            }
        }
    };
    let mut out = Vec::with_capacity(n);
    for p in 0..n {
        let bound = |b: &WindowFrameBound, is_start: bool| -> Result<usize, SqlError> {
            Ok(match (&f.units, b) {
                (_, WindowFrameBound::Preceding(None)) => 0,
                (_, WindowFrameBound::Following(None)) => n,
                (WindowFrameUnits::Rows, WindowFrameBound::CurrentRow) => {
                    if is_start {
                        p
                    } else {
                        p + 1
                    }
                }
                (WindowFrameUnits::Range, WindowFrameBound::CurrentRow) => {
                    if is_start {
                        first[p]
                    } else {
                        last[p] + 1
                    }
                }
                (WindowFrameUnits::Rows, WindowFrameBound::Preceding(k)) => {
                    let k = offset(k)?.unwrap_or(0);
                    let at = p.saturating_sub(k);
                    if is_start {
                        at
                    } else if k > p {
                        0
                    } else {
                        at + 1
                    }
                }
                (WindowFrameUnits::Rows, WindowFrameBound::Following(k)) => {
                    let k = offset(k)?.unwrap_or(0);
                    let at = (p + k).min(n);
                    if is_start {
                        at
                    } else {
                        (p + k + 1).min(n)
                    }
                }
                _ => {
                    return Err(er::not_supported_yet(
                        "RANGE frames with a value offset, and GROUPS frames",
                    ))
                }
            })
        };
        let lo = bound(&f.start_bound, true)?;
        let hi = bound(&end, false)?;
        out.push((lo, hi.max(lo)));
    }
    Ok(out)
}
