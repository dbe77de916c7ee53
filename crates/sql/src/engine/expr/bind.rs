//! The binder of expressions: a syntax tree over a row layout ([`Scope`])
//! becomes a [`BoundExpr`], each column name resolved once to its index.
//!
//! * a name of the row is `Column(i)`; two matches are ERROR 1052, none
//!   (and none in an enclosing query) ERROR 1054, both at bind time;
//! * a name of an enclosing query's row (a correlated reference) is that
//!   row's value, a `Literal`: a correlated subquery is bound again for
//!   each outer row, so within one run it is a constant;
//! * literals and parameters are evaluated once; a node whose operands
//!   are all constants is folded (unless folding fails: then the error
//!   comes when, and only if, a row evaluates it);
//! * forms the binder does not know (subqueries, aggregates, variables,
//!   `INTERVAL` arithmetic, `EXTRACT`, ...) make [`bind`] answer `None`:
//!   the caller evaluates that expression with the syntax evaluator.

use sqlparser::ast::{
    BinaryOperator, CastKind, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Ident,
    InTarget, UnaryOperator,
};

use super::BoundExpr;
use crate::engine::exec::{Outer, Scope};
use crate::engine::schema::unknown_column;
use crate::engine::walk::is_aggregate;
use crate::error::SqlError;
use crate::executor::eval::Ctx;
use crate::value::Value;

/// What names resolve against: the row's columns, then output aliases
/// (HAVING, ORDER BY), then the enclosing queries' rows.
pub struct Names<'a> {
    /// The row layout.
    pub scope: &'a Scope,
    /// The enclosing query's current row, if any.
    pub outer: Option<&'a Outer>,
    /// Output aliases visible and the column of the first one (the row
    /// carries the select list's values from there).
    pub aliases: (&'a [String], usize),
    /// Aggregate calls computed below, each at a column of the row: a call
    /// written the same way is that column.
    pub aggs: &'a [(&'a Expr, usize)],
}

impl<'a> Names<'a> {
    /// The columns of `scope` (and `outer`), no aliases or aggregates.
    pub fn of(scope: &'a Scope, outer: Option<&'a Outer>) -> Names<'a> {
        Names {
            scope,
            outer,
            aliases: (&[], 0),
            aggs: &[],
        }
    }
}

/// Binds `e`; `Ok(None)` when it holds a form only the syntax evaluator
/// knows.
pub fn bind(ctx: &Ctx<'_>, names: &Names<'_>, e: &Expr) -> Result<Option<BoundExpr>, SqlError> {
    let b = |x: &Expr| bind(ctx, names, x);
    macro_rules! sub {
        ($x:expr) => {
            match b($x)? {
                Some(v) => Box::new(v),
                None => return Ok(None),
            }
        };
    }
    if matches!(
        e,
        Expr::BinaryOp { .. } | Expr::In { .. } | Expr::MemberOf(_)
    ) {
        if let Some(scalar) = super::desugar(e)? {
            return b(&scalar);
        }
    }
    let bound = match e {
        Expr::Value(_) => BoundExpr::Literal(ctx.eval(e)?),
        Expr::Identifier(id) if matches!(id.quote_style, Some('"') | Some('\'')) => {
            BoundExpr::Literal(Value::Text(id.value.clone()))
        }
        Expr::Identifier(id) => return column(names, std::slice::from_ref(id)),
        Expr::CompoundIdentifier(parts) => return column(names, parts),
        Expr::Nested(x) => return b(x),
        Expr::UnaryOp { op, expr } => match op {
            UnaryOperator::Plus => return b(expr),
            UnaryOperator::Minus => BoundExpr::Neg(sub!(expr), e.to_string()),
            UnaryOperator::Not => BoundExpr::Not(sub!(expr)),
            UnaryOperator::BitwiseNot => BoundExpr::BitNot(sub!(expr)),
            _ => return Ok(None),
        },
        Expr::IsNull(x) => BoundExpr::IsNull(sub!(x), false),
        Expr::IsNotNull(x) => BoundExpr::IsNull(sub!(x), true),
        Expr::IsTrue(x) => is(sub!(x), true, false),
        Expr::IsNotTrue(x) => is(sub!(x), true, true),
        Expr::IsFalse(x) => is(sub!(x), false, false),
        Expr::IsNotFalse(x) => is(sub!(x), false, true),
        Expr::Like {
            negated,
            expr,
            pattern,
            any: false,
            escape_char,
        } => BoundExpr::Like {
            expr: sub!(expr),
            pattern: sub!(pattern),
            negated: *negated,
            escape: like_escape_of(ctx, escape_char.as_deref())?,
        },
        Expr::In {
            expr,
            target: InTarget::List(list),
            negated,
            ..
        } => {
            let mut items = Vec::with_capacity(list.len());
            for i in list {
                match b(i)? {
                    Some(v) => items.push(v),
                    None => return Ok(None),
                }
            }
            BoundExpr::InList {
                expr: sub!(expr),
                list: items,
                negated: *negated,
            }
        }
        Expr::RLike {
            negated,
            expr,
            pattern,
            ..
        } => {
            let like = BoundExpr::Call {
                name: "regexp_like".into(),
                args: vec![*sub!(expr), *sub!(pattern)],
            };
            if *negated {
                BoundExpr::Not(Box::new(like))
            } else {
                like
            }
        }
        Expr::Between {
            expr,
            negated,
            low,
            high,
        } => BoundExpr::Between {
            expr: sub!(expr),
            low: sub!(low),
            high: sub!(high),
            negated: *negated,
        },
        Expr::BinaryOp { left, op, right } if supported(op) => BoundExpr::Binary {
            op: op.clone(),
            left: sub!(left),
            right: sub!(right),
            text: e.to_string(),
        },
        Expr::Function(f) => {
            let name = f.name.to_string().to_ascii_lowercase();
            if let Some((_, i)) = names.aggs.iter().find(|(a, _)| *a == e) {
                return Ok(Some(BoundExpr::Column(*i)));
            }
            if is_aggregate(&name)
                || matches!(
                    name.as_str(),
                    "date_add" | "date_sub" | "adddate" | "subdate" | "timestampdiff"
                )
                || f.over.is_some()
                || f.filter.is_some()
                || !f.within_group.is_empty()
            {
                return Ok(None);
            }
            let args: &[FunctionArg] = match &f.args {
                FunctionArguments::None => &[],
                FunctionArguments::List(l)
                    if l.duplicate_treatment.is_none() && l.clauses.is_empty() =>
                {
                    &l.args
                }
                _ => return Ok(None),
            };
            let mut bound = Vec::with_capacity(args.len());
            for a in args {
                let FunctionArg::Unnamed(FunctionArgExpr::Expr(x)) = a else {
                    return Ok(None);
                };
                match b(x)? {
                    Some(v) => bound.push(v),
                    None => return Ok(None),
                }
            }
            // Calls are not folded: RAND() and the clock differ per call.
            return Ok(Some(BoundExpr::Call { name, args: bound }));
        }
        Expr::Case {
            operand,
            conditions,
            else_result,
            ..
        } => {
            let mut whens = Vec::with_capacity(conditions.len());
            for cw in conditions {
                match (b(&cw.condition)?, b(&cw.result)?) {
                    (Some(c), Some(r)) => whens.push((c, r)),
                    _ => return Ok(None),
                }
            }
            BoundExpr::Case {
                operand: match operand {
                    Some(o) => Some(sub!(o)),
                    None => None,
                },
                whens,
                otherwise: match else_result {
                    Some(x) => Some(sub!(x)),
                    None => None,
                },
            }
        }
        Expr::Cast {
            kind: CastKind::Cast | CastKind::DoubleColon,
            expr,
            data_type,
            format: None,
            ..
        } => BoundExpr::Cast(sub!(expr), data_type.to_string()),
        Expr::Collate { expr, collation } => BoundExpr::Collate(sub!(expr), collation.to_string()),
        _ => return Ok(None),
    };
    Ok(Some(fold(ctx, bound)))
}

/// The escape character of a LIKE: `\\` unless an `ESCAPE` clause names
/// another (a constant, evaluated once).
pub fn like_escape_of(ctx: &Ctx<'_>, e: Option<&Expr>) -> Result<Option<char>, SqlError> {
    match e {
        None => Ok(Some('\\')),
        Some(x) => crate::engine::expr::string::like_escape(&ctx.eval(x)?),
    }
}

fn is(expr: Box<BoundExpr>, want: bool, negated: bool) -> BoundExpr {
    BoundExpr::Is {
        expr,
        want,
        negated,
    }
}

fn supported(op: &BinaryOperator) -> bool {
    matches!(
        op,
        BinaryOperator::And
            | BinaryOperator::Or
            | BinaryOperator::Xor
            | BinaryOperator::Plus
            | BinaryOperator::Minus
            | BinaryOperator::Multiply
            | BinaryOperator::Divide
            | BinaryOperator::Modulo
            | BinaryOperator::MyIntegerDivide
            | BinaryOperator::Eq
            | BinaryOperator::NotEq
            | BinaryOperator::Lt
            | BinaryOperator::LtEq
            | BinaryOperator::Gt
            | BinaryOperator::GtEq
            | BinaryOperator::Spaceship
            | BinaryOperator::StringConcat
    ) || super::bit::is_bit_op(op)
}

/// A column reference: the row's, else an enclosing row's value.
fn column(names: &Names<'_>, parts: &[Ident]) -> Result<Option<BoundExpr>, SqlError> {
    if parts.first().is_some_and(|p| p.value.starts_with('@')) {
        // User and system variables.
        return Ok(None);
    }
    if let Some(i) = names.scope.find(parts)? {
        return Ok(Some(BoundExpr::Column(i)));
    }
    let (aliases, base) = names.aliases;
    if let [one] = parts {
        if let Some(i) = aliases
            .iter()
            .position(|n| n.eq_ignore_ascii_case(&one.value))
        {
            return Ok(Some(BoundExpr::Column(base + i)));
        }
    }
    let mut o = names.outer;
    while let Some(out) = o {
        if let Some(i) = out.scope.find(parts)? {
            return Ok(Some(BoundExpr::Literal(out.row[i].clone())));
        }
        o = out.parent.as_deref();
    }
    let name = parts
        .iter()
        .map(|p| p.value.as_str())
        .collect::<Vec<_>>()
        .join(".");
    if parts.len() == 1 && niladic(&name) {
        return Ok(None);
    }
    Err(unknown_column(&name, "field list"))
}

/// A function MySQL lets one write without parentheses (`CURRENT_USER`).
pub fn niladic(name: &str) -> bool {
    matches!(
        name.to_ascii_lowercase().as_str(),
        "current_user"
            | "current_timestamp"
            | "localtime"
            | "localtimestamp"
            | "current_date"
            | "current_time"
    )
}

/// `e` as a literal when its operands are literals and evaluating it
/// succeeds.
fn fold(ctx: &Ctx<'_>, e: BoundExpr) -> BoundExpr {
    let constant = |x: &BoundExpr| matches!(x, BoundExpr::Literal(_));
    let all = match &e {
        BoundExpr::Binary { left, right, .. } => constant(left) && constant(right),
        BoundExpr::Not(x)
        | BoundExpr::BitNot(x)
        | BoundExpr::Neg(x, _)
        | BoundExpr::IsNull(x, _)
        | BoundExpr::Is { expr: x, .. }
        | BoundExpr::Cast(x, _)
        | BoundExpr::Collate(x, _) => constant(x),
        BoundExpr::InList { expr, list, .. } => constant(expr) && list.iter().all(constant),
        BoundExpr::Between {
            expr, low, high, ..
        } => constant(expr) && constant(low) && constant(high),
        BoundExpr::Like { expr, pattern, .. } => constant(expr) && constant(pattern),
        _ => false,
    };
    if !all {
        return e;
    }
    match e.eval(ctx.session, &[]) {
        Ok(v) => BoundExpr::Literal(v),
        Err(_) => e,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::backend::Session;
    use crate::engine::exec::ScopeCol;
    use crate::server::{Settings, Shared};
    use crate::users::MemoryUserStore;

    fn session() -> Session {
        let shared = Shared::new(
            Arc::new(MemoryUserStore::new(Vec::new())),
            None,
            Settings::default(),
        );
        Session {
            server: shared,
            conn_id: 1,
            user: "root".into(),
            client_ip: "127.0.0.1".into(),
            account_host: "%".into(),
            db: None,
            vars: Default::default(),
            user_vars: Default::default(),
            tls: None,
            multi_statements: false,
            capabilities: 0,
            questions: 0,
            state: Default::default(),
        }
    }

    fn scope(cols: &[(&str, &str)]) -> Scope {
        Scope {
            cols: cols
                .iter()
                .map(|(t, c)| ScopeCol {
                    table: t.to_string(),
                    name: c.to_string(),
                    ty: None,
                    not_null: false,
                    ..Default::default()
                })
                .collect(),
        }
    }

    fn parse(sql: &str) -> Expr {
        let dialect = sqlparser::dialect::MySqlDialect {};
        sqlparser::parser::Parser::new(&dialect)
            .try_with_sql(sql)
            .and_then(|mut p| p.parse_expr())
            .expect("an expression")
    }

    fn bound(
        sql: &str,
        scope: &Scope,
        outer: Option<&Outer>,
    ) -> Result<Option<BoundExpr>, SqlError> {
        let s = session();
        let ctx = Ctx {
            session: &s,
            params: &[],
            row: &[],
            resolver: None,
        };
        bind(&ctx, &Names::of(scope, outer), &parse(sql))
    }

    #[test]
    fn names_resolve_once_to_column_indexes_and_evaluate_by_index() {
        let sc = scope(&[("t", "a"), ("t", "b"), ("u", "c")]);
        let e = bound("t.b + c * 2 > 10 AND a IS NOT NULL", &sc, None)
            .unwrap()
            .expect("bindable");
        let s = session();
        let row = [Value::Int(1), Value::Int(5), Value::Int(3)];
        assert!(e.holds(&s, &row).unwrap());
        let row = [Value::Int(1), Value::Int(1), Value::Int(3)];
        assert!(!e.holds(&s, &row).unwrap());
    }

    #[test]
    fn unknown_and_ambiguous_names_fail_at_bind_time_naming_them() {
        let sc = scope(&[("t", "a"), ("u", "a")]);
        let e = bound("nope = 1", &sc, None).unwrap_err();
        assert_eq!(e.code, 1054);
        assert!(e.message.contains("'nope'"), "{}", e.message);
        let e = bound("a = 1", &sc, None).unwrap_err();
        assert_eq!(e.code, 1052);
        assert!(bound("u.a = 1", &sc, None).unwrap().is_some());
    }

    #[test]
    fn outer_columns_bind_as_the_outer_rows_values() {
        let outer = Outer {
            scope: scope(&[("o", "x")]),
            row: vec![Value::Int(7)],
            parent: None,
        };
        let sc = scope(&[("t", "a")]);
        let e = bound("a = o.x", &sc, Some(&outer)).unwrap().unwrap();
        let s = session();
        assert!(e.holds(&s, &[Value::Int(7)]).unwrap());
        assert!(!e.holds(&s, &[Value::Int(8)]).unwrap());
    }

    #[test]
    fn constant_subtrees_fold_and_unknown_forms_are_left_to_the_syntax_evaluator() {
        let sc = scope(&[("t", "a")]);
        assert!(matches!(
            bound("1 + 2 * 3", &sc, None).unwrap(),
            Some(BoundExpr::Literal(Value::Int(7)))
        ));
        assert!(bound("a IN (SELECT 1)", &sc, None).unwrap().is_none());
        assert!(bound("COUNT(a) > 1", &sc, None).unwrap().is_none());
        assert!(bound("@v = a", &sc, None).unwrap().is_none());
        assert!(matches!(
            bound("UPPER(a) = 'X'", &sc, None).unwrap(),
            Some(BoundExpr::Binary { .. })
        ));
    }
}
