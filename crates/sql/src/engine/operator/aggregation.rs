//! Hash aggregation: rows grouped by their GROUP BY key (values hashed as
//! `=` and DISTINCT see them: strings by `utf8mb4_general_ci`, numbers by
//! value), one running state per aggregate call and group, each group
//! charged to the statement's tracker. A group's output row is its first
//! input row followed by its aggregates' values (the layout the select
//! list, HAVING and ORDER BY are bound to).

use std::collections::{HashMap, HashSet};

use sqlparser::ast::Expr;

use super::super::exec::Sx;
use super::super::expr::BoundExpr;
use super::super::table::Row;
use super::super::walk::{self, is_aggregate};
use crate::error::SqlError;
use crate::executor::eval;
use crate::value::Value;

/// An aggregate's running state.
#[derive(Clone, Debug)]
pub enum Acc {
    Count(i64),
    Sum {
        int: i128,
        dec: Option<String>,
        float: f64,
        kind: u8,
        any: bool,
    },
    MinMax(Option<Value>),
    Avg {
        sum: f64,
        dec: i128,
        scale: u32,
        n: i64,
        float: bool,
    },
    Concat(Vec<String>),
    /// `JSON_ARRAYAGG`'s elements.
    JsonArray(Vec<crate::json::Json>),
    /// `JSON_OBJECTAGG`'s members (a later key wins).
    JsonObject(Vec<(String, crate::json::Json)>),
}

fn dec_parts(v: &Value) -> Option<(i128, u32)> {
    let s = match v {
        Value::Int(i) => return Some((i128::from(*i), 0)),
        Value::UInt(u) => return Some((i128::from(*u), 0)),
        Value::Decimal(d) => d.clone(),
        _ => return None,
    };
    let neg = s.starts_with('-');
    let body = s.trim_start_matches(['-', '+']);
    let (i, f) = body.split_once('.').unwrap_or((body, ""));
    let m: i128 = format!("{i}{f}").parse().ok()?;
    Some((if neg { -m } else { m }, f.len() as u32))
}

fn dec_text(m: i128, scale: u32) -> String {
    let neg = m < 0;
    let digits = m.unsigned_abs().to_string();
    let scale = scale as usize;
    let padded = if digits.len() <= scale {
        format!("{}{}", "0".repeat(scale + 1 - digits.len()), digits)
    } else {
        digits
    };
    let (i, f) = padded.split_at(padded.len() - scale);
    let mut s = String::new();
    if neg && m != 0 {
        s.push('-');
    }
    s.push_str(i);
    if scale > 0 {
        s.push('.');
        s.push_str(f);
    }
    s
}

/// One aggregate call of a query.
pub struct AggCall<'q> {
    /// The call as written.
    pub node: &'q Expr,
    /// Lower-case function name.
    pub name: String,
    /// Its argument.
    pub arg: Option<&'q Expr>,
    /// Its second argument (`JSON_OBJECTAGG`'s value).
    pub arg2: Option<&'q Expr>,
    /// `DISTINCT`.
    pub distinct: bool,
    /// `COUNT(*)`.
    pub star: bool,
    /// `GROUP_CONCAT`'s separator.
    pub separator: String,
}

impl AggCall<'_> {
    /// The state before any row.
    pub fn init(&self) -> Acc {
        match self.name.as_str() {
            "count" => Acc::Count(0),
            "sum" => Acc::Sum {
                int: 0,
                dec: None,
                float: 0.0,
                kind: 0,
                any: false,
            },
            "avg" => Acc::Avg {
                sum: 0.0,
                dec: 0,
                scale: 0,
                n: 0,
                float: false,
            },
            "group_concat" => Acc::Concat(Vec::new()),
            "json_arrayagg" => Acc::JsonArray(Vec::new()),
            "json_objectagg" => Acc::JsonObject(Vec::new()),
            _ => Acc::MinMax(None),
        }
    }

    /// Adds one row's argument value.
    pub fn add(&self, acc: &mut Acc, v: Value) {
        if let Acc::JsonArray(items) = acc {
            // JSON_ARRAYAGG keeps NULLs (as JSON null).
            items.push(crate::engine::expr::json::to_json(&v));
            return;
        }
        if v.is_null() && !self.star {
            return;
        }
        match acc {
            Acc::Count(n) => *n += 1,
            Acc::Sum {
                int,
                dec,
                float,
                kind,
                any,
            } => {
                *any = true;
                match (&v, dec_parts(&v)) {
                    (Value::Float(_) | Value::Double(_) | Value::Text(_) | Value::Bytes(_), _)
                    | (_, None) => {
                        *kind = 2;
                        *float += eval::to_f64(&v);
                    }
                    (_, Some((m, s))) => {
                        if s == 0 && dec.is_none() {
                            *int += m;
                        } else {
                            let (cur, cs) = dec
                                .as_deref()
                                .and_then(|d| dec_parts(&Value::Decimal(d.to_string())))
                                .unwrap_or((*int, 0));
                            let scale = cs.max(s);
                            let total = cur * 10i128.pow(scale - cs) + m * 10i128.pow(scale - s);
                            *dec = Some(dec_text(total, scale));
                            *kind = (*kind).max(1);
                        }
                        *float += eval::to_f64(&v);
                    }
                }
            }
            Acc::Avg {
                sum,
                dec,
                scale,
                n,
                float,
            } => {
                *n += 1;
                *sum += eval::to_f64(&v);
                match dec_parts(&v) {
                    Some((m, s)) if !*float => {
                        let sc = (*scale).max(s);
                        *dec = *dec * 10i128.pow(sc - *scale) + m * 10i128.pow(sc - s);
                        *scale = sc;
                    }
                    _ => *float = true,
                }
            }
            Acc::MinMax(cur) => {
                let better = match cur {
                    None => true,
                    Some(c) => {
                        let o = eval::sort_cmp(&v, c);
                        if self.name == "min" {
                            o.is_lt()
                        } else {
                            o.is_gt()
                        }
                    }
                };
                if better {
                    *cur = Some(v);
                }
            }
            Acc::Concat(items) => items.push(v.to_string()),
            Acc::JsonArray(_) => {}
            Acc::JsonObject(members) => {
                // `run` packs (key, value) as a two-element JSON array.
                if let Value::Json(pair) = v {
                    if let crate::json::Json::Array(mut kv) = *pair {
                        if let (Some(val), Some(crate::json::Json::String(k))) =
                            (kv.pop(), kv.pop())
                        {
                            members.push((k, val));
                        }
                    }
                }
            }
        }
    }

    /// The aggregate's value.
    pub fn finish(&self, acc: &Acc) -> Value {
        match acc {
            Acc::Count(n) => Value::Int(*n),
            Acc::Sum { any: false, .. } => Value::Null,
            Acc::Sum { float, kind: 2, .. } => Value::Double(*float),
            Acc::Sum { dec: Some(d), .. } => Value::Decimal(d.clone()),
            Acc::Sum { int, .. } => Value::Decimal(int.to_string()),
            Acc::Avg { n: 0, .. } => Value::Null,
            Acc::Avg {
                sum,
                n,
                float: true,
                ..
            } => Value::Double(sum / *n as f64),
            Acc::Avg { dec, scale, n, .. } => {
                // MySQL: the argument's scale + div_precision_increment (4).
                let out_scale = scale + 4;
                let num = dec * 10i128.pow(4);
                let q = num * 10 / i128::from(*n);
                let rounded = if q >= 0 { (q + 5) / 10 } else { (q - 5) / 10 };
                Value::Decimal(dec_text(rounded, out_scale))
            }
            Acc::MinMax(v) => v.clone().unwrap_or(Value::Null),
            Acc::Concat(items) if items.is_empty() => Value::Null,
            Acc::Concat(items) => Value::Text(items.join(&self.separator)),
            Acc::JsonArray(items) if items.is_empty() => Value::Null,
            Acc::JsonArray(items) => Value::Json(Box::new(crate::json::Json::Array(items.clone()))),
            Acc::JsonObject(members) if members.is_empty() => Value::Null,
            Acc::JsonObject(members) => {
                Value::Json(Box::new(crate::json::Json::object(members.clone())))
            }
        }
    }
}

/// The aggregate calls in `exprs` (not looking into them).
pub fn agg_calls<'q>(exprs: &[&'q Expr]) -> Vec<AggCall<'q>> {
    let mut out = Vec::new();
    for e in exprs {
        walk::walk(e, &mut |x| {
            if let Expr::Function(f) = x {
                let name = f.name.to_string().to_ascii_lowercase();
                // `SUM(x) OVER (...)` is a window function, not an
                // aggregate of the query (its arguments may hold one).
                if is_aggregate(&name) && f.over.is_none() {
                    let (distinct, star) = match &f.args {
                        sqlparser::ast::FunctionArguments::List(l) => (
                            matches!(
                                l.duplicate_treatment,
                                Some(sqlparser::ast::DuplicateTreatment::Distinct)
                            ),
                            l.args.iter().any(|a| {
                                matches!(
                                    a,
                                    sqlparser::ast::FunctionArg::Unnamed(
                                        sqlparser::ast::FunctionArgExpr::Wildcard
                                    )
                                )
                            }),
                        ),
                        _ => (false, false),
                    };
                    let separator = match &f.args {
                        sqlparser::ast::FunctionArguments::List(l) => l
                            .clauses
                            .iter()
                            .find_map(|c| match c {
                                sqlparser::ast::FunctionArgumentClause::Separator(v) => {
                                    Some(match &v.value {
                                        sqlparser::ast::Value::SingleQuotedString(s)
                                        | sqlparser::ast::Value::DoubleQuotedString(s) => s.clone(),
                                        other => other.to_string(),
                                    })
                                }
                                _ => None,
                            })
                            .unwrap_or_else(|| ",".into()),
                        _ => ",".into(),
                    };
                    out.push(AggCall {
                        node: x,
                        arg: walk::args(f).first().copied(),
                        arg2: walk::args(f).get(1).copied(),
                        name,
                        distinct,
                        star,
                        separator,
                    });
                    return false;
                }
            }
            true
        });
    }
    out
}

/// A hashable form of a value for grouping and DISTINCT (strings compare
/// case-insensitively, numbers by value).
pub fn group_key(vals: &[Value], out: &mut Vec<u8>) {
    for v in vals {
        match v {
            Value::Null => out.push(0),
            Value::Text(s) => {
                out.push(1);
                out.extend(super::super::types::Collation::GeneralCi.sort_key(s));
                out.push(0xff);
            }
            Value::Bytes(b) => {
                out.push(2);
                out.extend_from_slice(&(b.len() as u32).to_be_bytes());
                out.extend_from_slice(b);
            }
            Value::Int(_) | Value::UInt(_) | Value::Decimal(_) => {
                out.push(3);
                let (m, s) = dec_parts(v).unwrap_or((0, 0));
                // Normalise trailing zeros so 1 and 1.0 group together.
                let (mut m, mut s) = (m, s);
                while s > 0 && m % 10 == 0 {
                    m /= 10;
                    s -= 1;
                }
                out.extend_from_slice(&m.to_be_bytes());
                out.extend_from_slice(&s.to_be_bytes());
            }
            other => {
                out.push(4);
                out.extend(other.to_string().into_bytes());
                out.push(0xff);
            }
        }
    }
}

/// An aggregate call bound to its input rows.
pub struct BoundAgg<'q> {
    /// The call.
    pub call: AggCall<'q>,
    /// Its argument over the input rows (`None` for `COUNT(*)`).
    pub arg: Option<BoundExpr>,
    /// Its second argument (`JSON_OBJECTAGG`'s value).
    pub arg2: Option<BoundExpr>,
}

/// How a group key and an aggregate's argument are computed from an input
/// row (bound expressions, or the syntax evaluator for what the binder
/// does not bind).
pub trait Inputs {
    /// The GROUP BY key values of `row`.
    fn key(&self, row: &[Value]) -> Result<Vec<Value>, SqlError>;
    /// The argument of aggregate `i` on `row`.
    fn arg(&self, i: usize, row: &[Value]) -> Result<Value, SqlError>;
    /// The second argument of aggregate `i` on `row` (NULL if none).
    fn arg2(&self, i: usize, row: &[Value]) -> Result<Value, SqlError>;
}

impl Inputs for (&[BoundExpr], &[BoundAgg<'_>], &Sx<'_>) {
    fn key(&self, row: &[Value]) -> Result<Vec<Value>, SqlError> {
        self.0.iter().map(|k| k.eval(self.2.session, row)).collect()
    }

    fn arg(&self, i: usize, row: &[Value]) -> Result<Value, SqlError> {
        match &self.1[i].arg {
            Some(e) => e.eval(self.2.session, row),
            None => Ok(Value::Int(1)),
        }
    }

    fn arg2(&self, i: usize, row: &[Value]) -> Result<Value, SqlError> {
        match &self.1[i].arg2 {
            Some(e) => e.eval(self.2.session, row),
            None => Ok(Value::Null),
        }
    }
}

/// `JSON_OBJECTAGG`'s key and value as one value for [`AggCall::add`]:
/// a two-element JSON array (3158 for a NULL key).
fn object_member(k: Value, v: Value) -> Result<Value, SqlError> {
    use crate::engine::expr::json::{null_key, to_json};
    use crate::json::Json;
    if k.is_null() {
        return Err(null_key());
    }
    Ok(Value::Json(Box::new(Json::Array(vec![
        Json::String(k.to_string()),
        to_json(&v),
    ]))))
}

/// Groups `rows` by their key and computes `calls` per group; with no
/// GROUP BY (`keyless`) and no rows, one group over a row of `width` NULLs
/// (`SELECT COUNT(*)` of nothing is 0).
pub fn run(
    sx: &Sx<'_>,
    rows: &[Row],
    width: usize,
    keyless: bool,
    calls: &[&AggCall<'_>],
    inputs: &dyn Inputs,
) -> Result<Vec<Row>, SqlError> {
    type Group = (Row, Vec<Acc>, Vec<HashSet<Vec<u8>>>);
    let mut groups: Vec<Group> = Vec::new();
    let mut index: HashMap<Vec<u8>, usize> = HashMap::new();
    for row in rows {
        sx.mem.check_time()?;
        let mut key = Vec::new();
        group_key(&inputs.key(row)?, &mut key);
        let gi = match index.get(&key) {
            Some(&gi) => gi,
            None => {
                // A new group: its first row, key and states.
                sx.mem.consume(
                    super::super::memory::row_bytes(row)
                        + key.len() as u64
                        + (calls.len() * std::mem::size_of::<Acc>()) as u64 * 2,
                )?;
                groups.push((
                    row.clone(),
                    calls.iter().map(|a| a.init()).collect(),
                    vec![HashSet::new(); calls.len()],
                ));
                index.insert(key, groups.len() - 1);
                groups.len() - 1
            }
        };
        let g = &mut groups[gi];
        for (ai, a) in calls.iter().enumerate() {
            let v = if a.star {
                Value::Int(1)
            } else if a.name == "json_objectagg" {
                object_member(inputs.arg(ai, row)?, inputs.arg2(ai, row)?)?
            } else {
                inputs.arg(ai, row)?
            };
            if a.distinct && !v.is_null() {
                let mut k = Vec::new();
                group_key(std::slice::from_ref(&v), &mut k);
                if !g.2[ai].insert(k) {
                    continue;
                }
            }
            a.add(&mut g.1[ai], v);
        }
    }
    if groups.is_empty() && keyless {
        groups.push((
            vec![Value::Null; width],
            calls.iter().map(|a| a.init()).collect(),
            Vec::new(),
        ));
    }
    Ok(groups
        .into_iter()
        .map(|(mut row, accs, _)| {
            row.extend(calls.iter().zip(&accs).map(|(a, acc)| a.finish(acc)));
            row
        })
        .collect())
}

/// `SELECT DISTINCT` (and `UNION`): the first of each set of equal rows
/// (as GROUP BY groups them), in input order; `row` gives an item's values.
pub fn distinct<T>(items: &mut Vec<T>, row: impl Fn(&T) -> &[Value]) {
    let mut seen = HashSet::new();
    items.retain(|item| {
        let mut k = Vec::new();
        group_key(row(item), &mut k);
        seen.insert(k)
    });
}
