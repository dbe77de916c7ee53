//! A walk over the expression forms the engine evaluates (not into
//! subqueries: they are planned on their own).

use sqlparser::ast::{Expr, FunctionArg, FunctionArgExpr, FunctionArguments};

/// Whether `name` (lower case) is an aggregate function.
pub fn is_aggregate(name: &str) -> bool {
    matches!(
        name,
        "count"
            | "sum"
            | "avg"
            | "min"
            | "max"
            | "group_concat"
            | "json_arrayagg"
            | "json_objectagg"
            | "bit_and"
            | "bit_or"
            | "bit_xor"
            | "std"
            | "stddev"
            | "variance"
    )
}

/// The argument expressions of a function call.
pub fn args(f: &sqlparser::ast::Function) -> Vec<&Expr> {
    match &f.args {
        FunctionArguments::List(l) => l
            .args
            .iter()
            .filter_map(|a| match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e))
                | FunctionArg::Named {
                    arg: FunctionArgExpr::Expr(e),
                    ..
                } => Some(e),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Calls `f` on `e` and, while `f` returns true, on its children.
pub fn walk<'a>(e: &'a Expr, f: &mut dyn FnMut(&'a Expr) -> bool) {
    if !f(e) {
        return;
    }
    match e {
        Expr::BinaryOp { left, right, .. } => {
            walk(left, f);
            walk(right, f);
        }
        Expr::UnaryOp { expr, .. }
        | Expr::Nested(expr)
        | Expr::IsNull(expr)
        | Expr::IsNotNull(expr)
        | Expr::IsTrue(expr)
        | Expr::IsFalse(expr)
        | Expr::IsNotTrue(expr)
        | Expr::IsNotFalse(expr)
        | Expr::Cast { expr, .. }
        | Expr::Ceil { expr, .. }
        | Expr::Floor { expr, .. } => walk(expr, f),
        Expr::In { expr, target, .. } => {
            walk(expr, f);
            if let sqlparser::ast::InTarget::List(list) = target {
                for x in list {
                    walk(x, f);
                }
            }
        }
        Expr::IsDistinctFrom(a, b) | Expr::IsNotDistinctFrom(a, b) => {
            walk(a, f);
            walk(b, f);
        }
        Expr::Like { expr, pattern, .. } | Expr::ILike { expr, pattern, .. } => {
            walk(expr, f);
            walk(pattern, f);
        }
        Expr::Between {
            expr, low, high, ..
        } => {
            walk(expr, f);
            walk(low, f);
            walk(high, f);
        }
        Expr::Function(func) => {
            for a in args(func) {
                walk(a, f);
            }
        }
        Expr::Case {
            operand,
            conditions,
            else_result,
            ..
        } => {
            if let Some(o) = operand {
                walk(o, f);
            }
            for c in conditions {
                walk(&c.condition, f);
                walk(&c.result, f);
            }
            if let Some(e) = else_result {
                walk(e, f);
            }
        }
        Expr::Substring {
            expr,
            substring_from,
            substring_for,
            ..
        } => {
            walk(expr, f);
            if let Some(x) = substring_from {
                walk(x, f);
            }
            if let Some(x) = substring_for {
                walk(x, f);
            }
        }
        Expr::Trim {
            expr, trim_what, ..
        } => {
            walk(expr, f);
            if let Some(x) = trim_what {
                walk(x, f);
            }
        }
        Expr::Position { expr, r#in } => {
            walk(expr, f);
            walk(r#in, f);
        }
        Expr::Tuple(items) => {
            for x in items {
                walk(x, f);
            }
        }
        _ => {}
    }
}

/// The expressions of a select list (not its wildcards).
pub fn projected(s: &sqlparser::ast::Select) -> Vec<&Expr> {
    s.projection
        .iter()
        .filter_map(|i| match i {
            sqlparser::ast::SelectItem::UnnamedExpr(e)
            | sqlparser::ast::SelectItem::ExprWithAlias { expr: e, .. } => Some(e),
            _ => None,
        })
        .collect()
}

/// Splits `a AND b AND c` into its conjuncts.
pub fn conjuncts(e: &Expr) -> Vec<&Expr> {
    let mut out = Vec::new();
    fn go<'a>(e: &'a Expr, out: &mut Vec<&'a Expr>) {
        match e {
            Expr::BinaryOp {
                left,
                op: sqlparser::ast::BinaryOperator::And,
                right,
            } => {
                go(left, out);
                go(right, out);
            }
            Expr::Nested(inner) => go(inner, out),
            other => out.push(other),
        }
    }
    go(e, &mut out);
    out
}
