//! Expressions: the value-level semantics of MySQL's operators and
//! functions, split by family, and [`BoundExpr`], an expression whose names
//! were resolved once ([`bind`]) and that is evaluated over a row by
//! column index.
//!
//! ```text
//!  syntax (sqlparser Expr) ── bind::bind(scope, outer row) ──► BoundExpr
//!     Column(i)        the row's i-th value (resolved once, 1054/1052
//!                      at bind time, not per row)
//!     Literal          constants, parameters, outer (correlated) columns,
//!                      and subtrees folded at bind time
//!     Binary/Not/...   compare, arith, control, string, time, cast
//! ```
//!
//! The families (`arith`, `compare`, `string`, `time`, `control`, `cast`,
//! `info`) are the one implementation: the syntax evaluator
//! (`executor::eval`, still used for what the binder does not bind) calls
//! the same functions. Only `info` needs the session; the rest is
//! independent of sessions and the wire protocol.

pub mod arith;
pub mod bind;
pub mod bit;
pub mod cast;
pub mod compare;
pub mod control;
pub mod info;
pub mod json;
pub mod regexp;
pub mod row;
pub mod string;
pub mod time;
pub mod uuid;

use sqlparser::ast::BinaryOperator;

use crate::backend::Session;
use crate::error::{er, SqlError};
use crate::value::Value;
use compare::{bool_val, compare, in_list, truth};

/// A function by name over evaluated arguments (every family in turn);
/// ERROR 1305 for a name no family knows.
pub fn call(s: &Session, name: &str, args: &[Value]) -> Result<Value, SqlError> {
    if let Some(v) = info::call(s, name, args)? {
        return Ok(v);
    }
    for family in [
        string::call,
        arith::call,
        time::call,
        control::call,
        bit::call,
        regexp::call,
        uuid::call,
        json::call,
    ] {
        if let Some(v) = family(name, args)? {
            return Ok(v);
        }
    }
    Err(er::sp_does_not_exist(name))
}

/// Rewrites of syntax into the forms the evaluators know: row
/// constructors ([`row`]) and the JSON operators ([`json`]).
pub fn desugar(e: &sqlparser::ast::Expr) -> Result<Option<sqlparser::ast::Expr>, SqlError> {
    use sqlparser::ast::Expr;
    if matches!(e, Expr::BinaryOp { .. } | Expr::In { .. }) {
        if let Some(scalar) = row::desugar(e)? {
            return Ok(Some(scalar));
        }
    }
    Ok(json::desugar(e))
}

/// ERROR 1582 unless `ok` (function `name`'s argument count is right).
fn arity(name: &str, ok: bool) -> Result<(), SqlError> {
    if ok {
        Ok(())
    } else {
        Err(er::wrong_paramcount(name))
    }
}

/// An expression bound to the columns of one row layout.
#[derive(Clone, Debug)]
pub enum BoundExpr {
    /// The row's value at this index.
    Column(usize),
    /// A constant (literals, parameters, outer-query columns, folded
    /// subtrees).
    Literal(Value),
    /// `left op right`; `text` is the expression as written (errors name
    /// it).
    Binary {
        /// The operator.
        op: BinaryOperator,
        /// Left operand.
        left: Box<BoundExpr>,
        /// Right operand.
        right: Box<BoundExpr>,
        /// The source text.
        text: String,
    },
    /// `NOT e`.
    Not(Box<BoundExpr>),
    /// `-e`.
    Neg(Box<BoundExpr>, String),
    /// `~e`.
    BitNot(Box<BoundExpr>),
    /// `e IS [NOT] NULL`.
    IsNull(Box<BoundExpr>, bool),
    /// `e IS [NOT] TRUE` (`want` true) / `IS [NOT] FALSE`.
    Is {
        /// The operand.
        expr: Box<BoundExpr>,
        /// TRUE or FALSE.
        want: bool,
        /// `IS NOT`.
        negated: bool,
    },
    /// `e [NOT] IN (list)`.
    InList {
        /// The operand.
        expr: Box<BoundExpr>,
        /// The items.
        list: Vec<BoundExpr>,
        /// `NOT IN`.
        negated: bool,
    },
    /// `e [NOT] BETWEEN low AND high`.
    Between {
        /// The operand.
        expr: Box<BoundExpr>,
        /// Low bound.
        low: Box<BoundExpr>,
        /// High bound.
        high: Box<BoundExpr>,
        /// `NOT BETWEEN`.
        negated: bool,
    },
    /// `e [NOT] LIKE pattern`.
    Like {
        /// The operand.
        expr: Box<BoundExpr>,
        /// The pattern.
        pattern: Box<BoundExpr>,
        /// `NOT LIKE`.
        negated: bool,
        /// The `ESCAPE` character (`\\` unless written).
        escape: Option<char>,
    },
    /// A function of the families above.
    Call {
        /// Lower-case name.
        name: String,
        /// Arguments.
        args: Vec<BoundExpr>,
    },
    /// `CASE [operand] WHEN .. THEN .. [ELSE ..] END`.
    Case {
        /// The compared operand, if any.
        operand: Option<Box<BoundExpr>>,
        /// (condition or value, result) pairs.
        whens: Vec<(BoundExpr, BoundExpr)>,
        /// ELSE.
        otherwise: Option<Box<BoundExpr>>,
    },
    /// `CAST(e AS ty)`.
    Cast(Box<BoundExpr>, String),
    /// `e COLLATE name`.
    Collate(Box<BoundExpr>, String),
}

impl BoundExpr {
    /// Evaluates over `row` (the layout it was bound to).
    pub fn eval(&self, s: &Session, row: &[Value]) -> Result<Value, SqlError> {
        Ok(match self {
            BoundExpr::Column(i) => row.get(*i).cloned().unwrap_or(Value::Null),
            BoundExpr::Literal(v) => v.clone(),
            BoundExpr::Binary {
                op: BinaryOperator::And,
                left,
                right,
                ..
            } => {
                let l = truth(&left.eval(s, row)?);
                if l == Some(false) {
                    return Ok(bool_val(false));
                }
                match (l, truth(&right.eval(s, row)?)) {
                    (_, Some(false)) => bool_val(false),
                    (Some(true), Some(true)) => bool_val(true),
                    _ => Value::Null,
                }
            }
            BoundExpr::Binary {
                op: BinaryOperator::Or,
                left,
                right,
                ..
            } => {
                let l = truth(&left.eval(s, row)?);
                if l == Some(true) {
                    return Ok(bool_val(true));
                }
                match (l, truth(&right.eval(s, row)?)) {
                    (_, Some(true)) => bool_val(true),
                    (Some(false), Some(false)) => bool_val(false),
                    _ => Value::Null,
                }
            }
            BoundExpr::Binary {
                op,
                left,
                right,
                text,
            } => binary(op, &left.eval(s, row)?, &right.eval(s, row)?, text)?,
            BoundExpr::Not(e) => match truth(&e.eval(s, row)?) {
                None => Value::Null,
                Some(b) => bool_val(!b),
            },
            BoundExpr::Neg(e, text) => arith::negate(e.eval(s, row)?, text)?,
            BoundExpr::BitNot(e) => bit::not(&e.eval(s, row)?),
            BoundExpr::IsNull(e, negated) => bool_val(e.eval(s, row)?.is_null() != *negated),
            BoundExpr::Is {
                expr,
                want,
                negated,
            } => bool_val((truth(&expr.eval(s, row)?) == Some(*want)) != *negated),
            BoundExpr::InList {
                expr,
                list,
                negated,
            } => {
                let v = expr.eval(s, row)?;
                in_list(&v, list.iter().map(|i| i.eval(s, row)), *negated)?
            }
            BoundExpr::Between {
                expr,
                low,
                high,
                negated,
            } => {
                let v = expr.eval(s, row)?;
                let (lo, hi) = (low.eval(s, row)?, high.eval(s, row)?);
                compare::between(&v, &lo, &hi, *negated)
            }
            BoundExpr::Like {
                expr,
                pattern,
                negated,
                escape,
            } => {
                let v = expr.eval(s, row)?;
                let p = pattern.eval(s, row)?;
                if v.is_null() || p.is_null() {
                    Value::Null
                } else {
                    bool_val(string::like(&v.to_string(), &p.to_string(), *escape) != *negated)
                }
            }
            BoundExpr::Call { name, args } => {
                let vals = args
                    .iter()
                    .map(|a| a.eval(s, row))
                    .collect::<Result<Vec<_>, _>>()?;
                call(s, name, &vals)?
            }
            BoundExpr::Case {
                operand,
                whens,
                otherwise,
            } => {
                let base = operand.as_ref().map(|o| o.eval(s, row)).transpose()?;
                for (when, then) in whens {
                    let c = when.eval(s, row)?;
                    let hit = match &base {
                        Some(b) => compare::case_eq(b, &c),
                        None => truth(&c) == Some(true),
                    };
                    if hit {
                        return then.eval(s, row);
                    }
                }
                match otherwise {
                    Some(e) => e.eval(s, row)?,
                    None => Value::Null,
                }
            }
            BoundExpr::Cast(e, ty) => cast::cast(e.eval(s, row)?, ty)?,
            BoundExpr::Collate(e, name) => cast::collate(e.eval(s, row)?, name)?,
        })
    }

    /// Whether the value on `row` is true (WHERE, ON, HAVING).
    pub fn holds(&self, s: &Session, row: &[Value]) -> Result<bool, SqlError> {
        Ok(truth(&self.eval(s, row)?) == Some(true))
    }
}

/// A binary operator other than AND/OR over two values.
pub fn binary(op: &BinaryOperator, a: &Value, b: &Value, text: &str) -> Result<Value, SqlError> {
    use std::cmp::Ordering::*;
    let cmp = || compare(a, b);
    Ok(match op {
        BinaryOperator::Plus
        | BinaryOperator::Minus
        | BinaryOperator::Multiply
        | BinaryOperator::Divide
        | BinaryOperator::Modulo
        | BinaryOperator::MyIntegerDivide => arith::arith(op, a, b, text)?,
        BinaryOperator::Eq => cmp().map_or(Value::Null, |o| bool_val(o == Equal)),
        BinaryOperator::NotEq => cmp().map_or(Value::Null, |o| bool_val(o != Equal)),
        BinaryOperator::Lt => cmp().map_or(Value::Null, |o| bool_val(o == Less)),
        BinaryOperator::LtEq => cmp().map_or(Value::Null, |o| bool_val(o != Greater)),
        BinaryOperator::Gt => cmp().map_or(Value::Null, |o| bool_val(o == Greater)),
        BinaryOperator::GtEq => cmp().map_or(Value::Null, |o| bool_val(o != Less)),
        BinaryOperator::Spaceship => bool_val(compare::null_safe_eq(a, b)),
        BinaryOperator::Xor => match (truth(a), truth(b)) {
            (Some(x), Some(y)) => bool_val(x != y),
            _ => Value::Null,
        },
        BinaryOperator::StringConcat => {
            if a.is_null() || b.is_null() {
                Value::Null
            } else {
                Value::Text(format!("{a}{b}"))
            }
        }
        op if bit::is_bit_op(op) => bit::binary(op, a, b),
        other => return Err(er::not_supported_yet(&format!("the operator {other}"))),
    })
}

#[cfg(test)]
mod tests {
    use super::arith::{arith, number};
    use super::compare::{compare, to_f64};
    use super::time::{civil_from_days, date_format, days_from_civil};
    use super::*;

    #[test]
    fn decimal_arithmetic_is_exact() {
        let a = number("1.10");
        let b = number("2.205");
        assert_eq!(
            arith(&BinaryOperator::Plus, &a, &b, "").unwrap(),
            Value::Decimal("3.305".into())
        );
        assert_eq!(
            arith(&BinaryOperator::Multiply, &a, &b, "").unwrap(),
            Value::Decimal("2.42550".into())
        );
        assert_eq!(
            arith(&BinaryOperator::Divide, &Value::Int(1), &Value::Int(3), "").unwrap(),
            Value::Decimal("0.3333".into())
        );
        assert_eq!(
            arith(&BinaryOperator::Divide, &Value::Int(2), &Value::Int(3), "").unwrap(),
            Value::Decimal("0.6667".into())
        );
        assert_eq!(
            arith(&BinaryOperator::Divide, &Value::Int(1), &Value::Int(0), "").unwrap(),
            Value::Null
        );
        assert_eq!(
            arith(&BinaryOperator::Minus, &Value::Int(1), &number("1.5"), "").unwrap(),
            Value::Decimal("-0.5".into())
        );
        assert!(arith(
            &BinaryOperator::Plus,
            &Value::Int(i64::MAX),
            &Value::Int(1),
            "x"
        )
        .is_err());
    }

    #[test]
    fn numeric_prefix_is_linear_and_mysql_like() {
        assert_eq!(to_f64(&Value::Text("12abc".into())), 12.0);
        assert_eq!(to_f64(&Value::Text(" -1.5e2x".into())), -150.0);
        assert_eq!(to_f64(&Value::Text("1e".into())), 1.0);
        assert_eq!(to_f64(&Value::Text(".5".into())), 0.5);
        assert_eq!(to_f64(&Value::Text("abc".into())), 0.0);
        assert_eq!(to_f64(&Value::Text("-".into())), 0.0);
        // A long run of dots is one pass, not quadratic.
        let dots = format!("1{}", ".".repeat(2_000_000));
        let start = std::time::Instant::now();
        assert_eq!(to_f64(&Value::Text(dots)), 1.0);
        assert!(start.elapsed() < std::time::Duration::from_secs(2));
    }

    #[test]
    fn civil_day_arithmetic_round_trips_and_formats_like_mysql() {
        for (y, m, d) in [
            (1970, 1, 1),
            (2000, 2, 29),
            (2024, 12, 31),
            (1, 1, 1),
            (9999, 12, 31),
        ] {
            assert_eq!(civil_from_days(days_from_civil(y, m, d)), (y, m, d));
        }
        assert_eq!(days_from_civil(1970, 1, 2), 1);
        let v = Value::Text("2024-03-05 14:07:09".into());
        assert_eq!(
            date_format(&v, "%Y-%m-%d %H:%i:%s %W %b %e %p %j").unwrap(),
            "2024-03-05 14:07:09 Tuesday Mar 5 PM 065"
        );
    }

    #[test]
    fn strings_compare_case_insensitively_and_numbers_numerically() {
        assert_eq!(
            compare(&Value::Text("abc".into()), &Value::Text("ABC".into())),
            Some(std::cmp::Ordering::Equal)
        );
        assert_eq!(
            compare(&Value::Int(10), &Value::Text("9".into())),
            Some(std::cmp::Ordering::Greater)
        );
        assert_eq!(compare(&Value::Null, &Value::Int(1)), None);
    }
}
