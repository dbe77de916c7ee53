//! Expression evaluation (the SQL engine's and the session executor's): literals, parameters,
//! `@@` and `@` variables, arithmetic and comparison with MySQL's coercions
//! (simplified: exact decimals for `+ - * /`, numbers compared as numbers,
//! strings compared case-insensitively as utf8mb4_general_ci does), and the
//! session functions (`VERSION()`, `DATABASE()`, `USER()`, ...).
//!
//! Names bound in [`Ctx::row`] resolve identifiers (for `SHOW ... WHERE`).
//!
//! This is the syntax evaluator: it walks sqlparser's tree and looks names
//! up through a [`Resolver`]. The semantics of operators and functions
//! live in `engine::expr` (one implementation, which the bound expressions
//! of the SQL engine's plan evaluate too); this module adds what needs the
//! syntax: variables, special forms (`DATE_ADD(.. INTERVAL ..)`,
//! `TIMESTAMPDIFF`, `EXTRACT`, ...) and precomputed aggregate and subquery
//! values.

use sqlparser::ast::{
    BinaryOperator, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, UnaryOperator,
    Value as SqlValue,
};

use super::vars;
use crate::backend::Session;
use crate::engine::expr::arith::{self, round_fn};
use crate::engine::expr::cast::cast;
use crate::engine::expr::compare::{bool_val, in_list};
use crate::engine::expr::string::{locate, substring, trim};
use crate::engine::expr::time::{add_seconds, days_from_civil};
use crate::engine::expr::{self, info};
use crate::error::{er, ErrorKind, SqlError};
use crate::value::Value;

// The value-level helpers other modules know by this path.
pub use crate::engine::expr::arith::number;
pub use crate::engine::expr::compare::{null_safe_eq, sort_cmp, to_f64, truth};
pub use crate::engine::expr::time::now;

/// What an expression can see.
pub struct Ctx<'a> {
    /// The session (variables, user, database).
    pub session: &'a Session,
    /// Bound parameters (`?N`).
    pub params: &'a [Value],
    /// Column names and values of the current row, if any.
    pub row: &'a [(&'a str, Value)],
    /// Table columns, aggregates and subquery results (the SQL engine).
    pub resolver: Option<&'a dyn Resolver>,
}

/// What the SQL engine binds for an expression: column references, and
/// values it computed ahead (aggregates, subqueries, `VALUES(col)`), keyed
/// by the AST node.
pub trait Resolver: Sync {
    /// The value of a column reference (`c`, `t.c`, `db.t.c`); `None` when
    /// the name is not a column here.
    fn column(&self, parts: &[sqlparser::ast::Ident]) -> Option<Result<Value, SqlError>>;
    /// A value computed ahead for this node (function calls and subqueries).
    fn precomputed(&self, e: &Expr) -> Option<Value>;
    /// The rows of an `IN (subquery)` node.
    fn list(&self, e: &Expr) -> Option<&[Value]>;
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    let s = if !s.len().is_multiple_of(2) {
        format!("0{s}")
    } else {
        s.to_string()
    };
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

impl Ctx<'_> {
    fn column(&self, parts: &[sqlparser::ast::Ident]) -> Option<Result<Value, SqlError>> {
        if parts.first().is_some_and(|p| p.value.starts_with('@')) {
            return None;
        }
        self.resolver.and_then(|r| r.column(parts))
    }

    fn variable(&self, name: &str) -> Result<Value, SqlError> {
        let lower = name.to_ascii_lowercase();
        if let Some(rest) = lower.strip_prefix("@@") {
            return vars::get(self.session, rest, false)
                .ok_or_else(|| er::unknown_system_variable(rest));
        }
        if let Some(rest) = lower.strip_prefix('@') {
            return Ok(self
                .session
                .user_vars
                .get(rest)
                .cloned()
                .unwrap_or(Value::Null));
        }
        if let Some((_, v)) = self.row.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
            return Ok(v.clone());
        }
        match lower.as_str() {
            "current_user" => Ok(self.current_user()),
            "current_timestamp" | "localtimestamp" | "localtime" => Ok(now()),
            _ => Err(er::bad_field(name)),
        }
    }

    fn current_user(&self) -> Value {
        info::current_user(self.session)
    }

    /// Evaluates one expression.
    pub fn eval(&self, e: &Expr) -> Result<Value, SqlError> {
        if matches!(
            e,
            Expr::BinaryOp { .. } | Expr::In { .. } | Expr::MemberOf(_)
        ) {
            if let Some(scalar) = expr::desugar(e)? {
                return self.eval(&scalar);
            }
        }
        Ok(match e {
            Expr::Value(v) => match &v.value {
                SqlValue::Number(n, _) => number(n),
                SqlValue::SingleQuotedString(s) | SqlValue::DoubleQuotedString(s) => {
                    Value::Text(s.clone())
                }
                SqlValue::HexStringLiteral(h) => {
                    Value::Bytes(decode_hex(h).ok_or_else(|| er::parse(h, "bad hex literal"))?)
                }
                SqlValue::Boolean(b) => bool_val(*b),
                SqlValue::Null => Value::Null,
                SqlValue::Placeholder(p) => {
                    let i: usize = p
                        .trim_start_matches('?')
                        .parse()
                        .map_err(|_| er::parse(p, "bad placeholder"))?;
                    self.params
                        .get(i)
                        .cloned()
                        .ok_or_else(|| er::wrong_arguments("mysqld_stmt_execute"))?
                }
                other => return Err(er::not_supported_yet(&format!("the literal {other}"))),
            },
            Expr::Identifier(id) => {
                if id.quote_style == Some('"') || id.quote_style == Some('\'') {
                    Value::Text(id.value.clone())
                } else if let Some(v) = self.column(std::slice::from_ref(id)) {
                    v?
                } else {
                    self.variable(&id.value)?
                }
            }
            Expr::CompoundIdentifier(parts) => {
                let names: Vec<String> =
                    parts.iter().map(|p| p.value.to_ascii_lowercase()).collect();
                match names.as_slice() {
                    [scope, name] if scope == "@@session" || scope == "@@local" => {
                        vars::get(self.session, name, false)
                            .ok_or_else(|| er::unknown_system_variable(name))?
                    }
                    [scope, name] if scope == "@@global" => vars::get(self.session, name, true)
                        .ok_or_else(|| er::unknown_system_variable(name))?,
                    _ => match self.column(parts) {
                        Some(v) => v?,
                        None => return Err(er::bad_field(&names.join("."))),
                    },
                }
            }
            Expr::Nested(e) => self.eval(e)?,
            Expr::UnaryOp { op, expr } => {
                let v = self.eval(expr)?;
                match op {
                    UnaryOperator::Plus => v,
                    UnaryOperator::Minus => arith::negate(v, &e.to_string())?,
                    UnaryOperator::Not => match truth(&v) {
                        None => Value::Null,
                        Some(b) => bool_val(!b),
                    },
                    UnaryOperator::BitwiseNot => expr::bit::not(&v),
                    other => return Err(er::not_supported_yet(&format!("the operator {other}"))),
                }
            }
            Expr::IsNull(e) => bool_val(self.eval(e)?.is_null()),
            Expr::IsNotNull(e) => bool_val(!self.eval(e)?.is_null()),
            Expr::IsTrue(e) => bool_val(truth(&self.eval(e)?) == Some(true)),
            Expr::IsFalse(e) => bool_val(truth(&self.eval(e)?) == Some(false)),
            Expr::Like {
                negated,
                expr,
                pattern,
                escape_char,
                ..
            } => {
                let v = self.eval(expr)?;
                let p = self.eval(pattern)?;
                let escape =
                    crate::engine::expr::bind::like_escape_of(self, escape_char.as_deref())?;
                if v.is_null() || p.is_null() {
                    Value::Null
                } else {
                    bool_val(expr::string::like(&v.to_string(), &p.to_string(), escape) != *negated)
                }
            }
            Expr::RLike {
                negated,
                expr,
                pattern,
                ..
            } => {
                let args = [self.eval(expr)?, self.eval(pattern)?];
                let m = expr::call(self.session, "regexp_like", &args)?;
                match (truth(&m), negated) {
                    (None, _) => Value::Null,
                    (Some(b), n) => bool_val(b != *n),
                }
            }
            Expr::In {
                expr,
                target: sqlparser::ast::InTarget::List(list),
                negated,
                ..
            } => {
                let v = self.eval(expr)?;
                in_list(&v, list.iter().map(|i| self.eval(i)), *negated)?
            }
            Expr::Between {
                expr,
                negated,
                low,
                high,
            } => {
                let v = self.eval(expr)?;
                let (lo, hi) = (self.eval(low)?, self.eval(high)?);
                crate::engine::expr::compare::between(&v, &lo, &hi, *negated)
            }
            Expr::BinaryOp { left, op, right } => self.binary(e, left, op, right)?,
            Expr::Function(f) => match self.resolver.and_then(|r| r.precomputed(e)) {
                Some(v) => v,
                None => self.function(f)?,
            },
            Expr::Subquery(_) | Expr::Exists { .. } => self
                .resolver
                .and_then(|r| r.precomputed(e))
                .ok_or_else(|| er::not_supported_yet("a subquery here"))?,
            Expr::In {
                expr,
                target: sqlparser::ast::InTarget::Subquery(_),
                negated,
                ..
            } => {
                let v = self.eval(expr)?;
                let list = self
                    .resolver
                    .and_then(|r| r.list(e))
                    .ok_or_else(|| er::not_supported_yet("a subquery here"))?;
                in_list(&v, list.iter().cloned().map(Ok), *negated)?
            }
            Expr::IsNotTrue(e) => bool_val(truth(&self.eval(e)?) != Some(true)),
            Expr::IsNotFalse(e) => bool_val(truth(&self.eval(e)?) != Some(false)),
            Expr::IsDistinctFrom(a, b) => {
                let (a, b) = (self.eval(a)?, self.eval(b)?);
                bool_val(!null_safe_eq(&a, &b))
            }
            Expr::IsNotDistinctFrom(a, b) => {
                let (a, b) = (self.eval(a)?, self.eval(b)?);
                bool_val(null_safe_eq(&a, &b))
            }
            Expr::Substring {
                expr,
                substring_from,
                substring_for,
                ..
            } => {
                let v = self.eval(expr)?;
                let from = substring_from.as_ref().map(|f| self.eval(f)).transpose()?;
                let len = substring_for.as_ref().map(|f| self.eval(f)).transpose()?;
                substring(&v, from.as_ref(), len.as_ref())
            }
            Expr::Trim {
                expr,
                trim_where,
                trim_what,
                ..
            } => {
                let v = self.eval(expr)?;
                let what = match trim_what {
                    Some(w) => self.eval(w)?.to_string(),
                    None => " ".into(),
                };
                if v.is_null() {
                    Value::Null
                } else {
                    let s = v.to_string();
                    let w = trim_where
                        .as_ref()
                        .map(|w| w.to_string().to_ascii_uppercase());
                    Value::Text(trim(
                        &s,
                        &what,
                        w.as_deref() != Some("TRAILING"),
                        w.as_deref() != Some("LEADING"),
                    ))
                }
            }
            Expr::Ceil { expr, .. } => round_fn("ceil", &self.eval(expr)?, None)?,
            Expr::Floor { expr, .. } => round_fn("floor", &self.eval(expr)?, None)?,
            Expr::Position { expr, r#in } => {
                let (needle, hay) = (self.eval(expr)?, self.eval(r#in)?);
                locate(&needle, &hay)
            }
            Expr::TypedString(ts) => Value::Text(match &ts.value.value {
                SqlValue::SingleQuotedString(s) | SqlValue::DoubleQuotedString(s) => s.clone(),
                other => other.to_string(),
            }),
            Expr::Interval(_) => {
                return Err(er::not_supported_yet("INTERVAL outside DATE_ADD/DATE_SUB"))
            }
            Expr::Case {
                operand,
                conditions,
                else_result,
                ..
            } => {
                let base = operand.as_ref().map(|o| self.eval(o)).transpose()?;
                for cw in conditions {
                    let c = self.eval(&cw.condition)?;
                    let hit = match &base {
                        Some(b) => expr::compare::case_eq(b, &c),
                        None => truth(&c) == Some(true),
                    };
                    if hit {
                        return self.eval(&cw.result);
                    }
                }
                match else_result {
                    Some(e) => self.eval(e)?,
                    None => Value::Null,
                }
            }
            Expr::Cast {
                expr, data_type, ..
            } => cast(self.eval(expr)?, &data_type.to_string())?,
            Expr::Collate { expr, collation } => {
                crate::engine::expr::cast::collate(self.eval(expr)?, &collation.to_string())?
            }
            Expr::Convert {
                expr, data_type, ..
            } => match data_type {
                Some(t) => cast(self.eval(expr)?, &t.to_string())?,
                // CONVERT(x USING charset): every string is utf8mb4 here.
                None => self.eval(expr)?,
            },
            other => return Err(er::not_supported_yet(&format!("the expression `{other}`"))),
        })
    }

    fn binary(
        &self,
        whole: &Expr,
        left: &Expr,
        op: &BinaryOperator,
        right: &Expr,
    ) -> Result<Value, SqlError> {
        match op {
            BinaryOperator::And => {
                let l = truth(&self.eval(left)?);
                if l == Some(false) {
                    return Ok(bool_val(false));
                }
                let r = truth(&self.eval(right)?);
                return Ok(match (l, r) {
                    (_, Some(false)) => bool_val(false),
                    (Some(true), Some(true)) => bool_val(true),
                    _ => Value::Null,
                });
            }
            BinaryOperator::Or => {
                let l = truth(&self.eval(left)?);
                if l == Some(true) {
                    return Ok(bool_val(true));
                }
                let r = truth(&self.eval(right)?);
                return Ok(match (l, r) {
                    (_, Some(true)) => bool_val(true),
                    (Some(false), Some(false)) => bool_val(false),
                    _ => Value::Null,
                });
            }
            _ => {}
        }
        match (op, left, right) {
            (BinaryOperator::Plus, d, Expr::Interval(_)) => {
                return self.add_interval(d, right, false)
            }
            (BinaryOperator::Plus, Expr::Interval(_), d) => {
                return self.add_interval(d, left, false)
            }
            (BinaryOperator::Minus, d, Expr::Interval(_)) => {
                return self.add_interval(d, right, true)
            }
            _ => {}
        }
        let a = self.eval(left)?;
        let b = self.eval(right)?;
        expr::binary(op, &a, &b, &whole.to_string())
    }

    /// `TIMESTAMPDIFF(unit, a, b)`: whole units from `a` to `b`, truncated
    /// toward zero (months count only once the day and time are reached).
    fn timestampdiff(&self, f: &sqlparser::ast::Function) -> Result<Value, SqlError> {
        let exprs = crate::engine::walk::args(f);
        let [unit, a, b] = exprs.as_slice() else {
            return Err(er::wrong_paramcount("timestampdiff"));
        };
        let unit = unit.to_string().to_ascii_uppercase();
        let split = |v: &Value| match crate::engine::types::to_datetime(v) {
            Some(Value::DateTime {
                year,
                month,
                day,
                hour,
                minute,
                second,
                micros,
            }) => Some((
                i64::from(year) * 12 + i64::from(month) - 1,
                days_from_civil(year.into(), month.into(), day.into()) * 86_400
                    + i64::from(hour) * 3600
                    + i64::from(minute) * 60
                    + i64::from(second),
                (
                    day,
                    u64::from(hour) * 3_600_000_000
                        + u64::from(minute) * 60_000_000
                        + u64::from(second) * 1_000_000
                        + u64::from(micros),
                ),
                micros,
            )),
            _ => None,
        };
        let (Some((m1, s1, rest1, us1)), Some((m2, s2, rest2, us2))) =
            (split(&self.eval(a)?), split(&self.eval(b)?))
        else {
            return Ok(Value::Null);
        };
        let months = || {
            let mut n = m2 - m1;
            if n > 0 && rest2 < rest1 {
                n -= 1;
            } else if n < 0 && rest2 > rest1 {
                n += 1;
            }
            n
        };
        let micros = (s2 - s1) * 1_000_000 + i64::from(us2) - i64::from(us1);
        Ok(Value::Int(match unit.as_str() {
            "YEAR" => months() / 12,
            "QUARTER" => months() / 3,
            "MONTH" => months(),
            "WEEK" => micros / (7 * 86_400_000_000),
            "DAY" => micros / 86_400_000_000,
            "HOUR" => micros / 3_600_000_000,
            "MINUTE" => micros / 60_000_000,
            "SECOND" => micros / 1_000_000,
            "MICROSECOND" => micros,
            other => {
                return Err(er::not_supported_yet(&format!(
                    "TIMESTAMPDIFF unit {other}"
                )))
            }
        }))
    }

    /// `DATE_ADD(d, INTERVAL n unit)` and friends (`ADDDATE(d, n)` adds days).
    fn date_add(&self, f: &sqlparser::ast::Function, subtract: bool) -> Result<Value, SqlError> {
        let FunctionArguments::List(list) = &f.args else {
            return Err(er::wrong_paramcount("date_add"));
        };
        let exprs: Vec<&Expr> = list
            .args
            .iter()
            .filter_map(|a| match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
                _ => None,
            })
            .collect();
        let [date, amount] = exprs.as_slice() else {
            return Err(er::wrong_paramcount("date_add"));
        };
        self.add_interval(date, amount, subtract)
    }

    /// `date + INTERVAL n unit` (`- INTERVAL` if `subtract`); an amount
    /// that is not an INTERVAL counts days (`ADDDATE(d, n)`).
    fn add_interval(&self, date: &Expr, amount: &Expr, subtract: bool) -> Result<Value, SqlError> {
        let base = self.eval(date)?;
        let (n, unit) = match amount {
            Expr::Interval(iv) => (
                self.eval(&iv.value)?,
                iv.leading_field
                    .as_ref()
                    .map_or("DAY".to_string(), |u| u.to_string().to_ascii_uppercase()),
            ),
            other => (self.eval(other)?, "DAY".to_string()),
        };
        if base.is_null() || n.is_null() {
            return Ok(Value::Null);
        }
        let Some(Value::DateTime {
            year,
            month,
            day,
            hour,
            minute,
            second,
            micros,
        }) = crate::engine::types::to_datetime(&base)
        else {
            return Ok(Value::Null);
        };
        let k = to_f64(&n).trunc() as i64 * if subtract { -1 } else { 1 };
        let (mut y, mut mo, mut d) = (i64::from(year), i64::from(month), i64::from(day));
        let mut secs = i64::from(hour) * 3600 + i64::from(minute) * 60 + i64::from(second);
        match unit.as_str() {
            "YEAR" | "MONTH" | "QUARTER" => {
                let months = k * match unit.as_str() {
                    "YEAR" => 12,
                    "QUARTER" => 3,
                    _ => 1,
                };
                let total = y * 12 + (mo - 1) + months;
                y = total.div_euclid(12);
                mo = total.rem_euclid(12) + 1;
                d = d.min(i64::from(crate::engine::types::days_in_month(
                    y as u32, mo as u32,
                )));
            }
            "WEEK" | "DAY" | "HOUR" | "MINUTE" | "SECOND" => {
                let delta = k * match unit.as_str() {
                    "WEEK" => 7 * 86_400,
                    "DAY" => 86_400,
                    "HOUR" => 3600,
                    "MINUTE" => 60,
                    _ => 1,
                };
                ((y, mo, d), secs) = add_seconds((y, mo, d), secs, delta);
            }
            other => return Err(er::not_supported_yet(&format!("INTERVAL unit {other}"))),
        }
        if !(1..=9999).contains(&y) {
            return Ok(Value::Null);
        }
        // A DATE, or a string with no time part, stays a date (MySQL).
        let date_only = (matches!(base, Value::Date { .. })
            || matches!(&base, Value::Text(t) if !t.contains(':') && !t.trim().contains(' ')))
            && matches!(unit.as_str(), "YEAR" | "MONTH" | "QUARTER" | "WEEK" | "DAY");
        Ok(if date_only {
            Value::Date {
                year: y as u16,
                month: mo as u8,
                day: d as u8,
            }
        } else {
            Value::DateTime {
                year: y as u16,
                month: mo as u8,
                day: d as u8,
                hour: (secs / 3600) as u8,
                minute: (secs / 60 % 60) as u8,
                second: (secs % 60) as u8,
                micros,
            }
        })
    }

    fn args(&self, f: &sqlparser::ast::Function) -> Result<Vec<Value>, SqlError> {
        match &f.args {
            FunctionArguments::None => Ok(Vec::new()),
            FunctionArguments::List(list) => list
                .args
                .iter()
                .map(|a| match a {
                    FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => self.eval(e),
                    other => Err(er::not_supported_yet(&format!("the argument {other}"))),
                })
                .collect(),
            FunctionArguments::Subquery(_) => {
                Err(er::not_supported_yet("subqueries as function arguments"))
            }
        }
    }

    fn function(&self, f: &sqlparser::ast::Function) -> Result<Value, SqlError> {
        let name = f.name.to_string().to_ascii_lowercase();
        if crate::engine::walk::is_aggregate(&name) {
            // Not computed by a grouping step: WHERE COUNT(*) > 1 and the like.
            return Err(SqlError::of(
                ErrorKind::InvalidGroupFuncUse,
                "Invalid use of group function".into(),
            ));
        }
        if matches!(
            name.as_str(),
            "date_add" | "date_sub" | "adddate" | "subdate"
        ) {
            return self.date_add(f, name.ends_with("sub") || name == "subdate");
        }
        if name == "timestampdiff" {
            return self.timestampdiff(f);
        }
        let args = self.args(f)?;
        expr::call(self.session, &name, &args)
    }
}
