//! Whether a subquery is correlated, found from its names before it runs:
//! it is when a column name in it (at any depth) is not a column of the
//! subquery's own FROM items (or of a query nested between) but is one of
//! the enclosing query's row.
//!
//! The answer errs on one side only: a form this walk does not know, or a
//! name that might come from a derived table's columns, counts as a
//! reference when the enclosing row has that name. A subquery wrongly
//! taken as correlated is run once per outer row (the same rows, slower);
//! one wrongly taken as uncorrelated would fail, so that is avoided.

use sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, JoinConstraint, JoinOperator,
    Query, Select, SelectItem, SetExpr, TableFactor,
};

use super::super::exec::{Scope, Sx};
use super::{bind_table, factors};

/// The names visible at one level of the walk.
struct Level {
    /// The FROM items' columns.
    scope: Scope,
    /// Output aliases (HAVING and ORDER BY may name them).
    aliases: Vec<String>,
    /// A derived table's unqualified columns are not known here.
    opaque: bool,
}

struct Walk<'s, 'a> {
    sx: &'s Sx<'a>,
    outer: &'s Scope,
    levels: Vec<Level>,
    found: bool,
}

/// Whether `q` refers to a column of `outer` (the enclosing query's rows).
pub fn correlated(sx: &Sx<'_>, q: &Query, outer: &Scope) -> bool {
    let mut w = Walk {
        sx,
        outer,
        levels: Vec::new(),
        found: false,
    };
    w.query(q);
    w.found
}

impl Walk<'_, '_> {
    fn query(&mut self, q: &Query) {
        if q.with.is_some() {
            self.found = true;
            return;
        }
        let order: &[sqlparser::ast::OrderByExpr] = match q.order_by.as_ref().map(|o| &o.kind) {
            Some(sqlparser::ast::OrderByKind::Expressions(v)) => v,
            _ => &[],
        };
        self.set_expr(&q.body, order);
    }

    /// Walks `body`; `order` (the query's ORDER BY) is walked inside the
    /// level of a plain SELECT body, so it sees its FROM and aliases.
    fn set_expr(&mut self, body: &SetExpr, order: &[sqlparser::ast::OrderByExpr]) {
        match body {
            SetExpr::Select(s) => return self.select(s, order),
            SetExpr::Query(q) => self.query(q),
            SetExpr::SetOperation { left, right, .. } => {
                self.set_expr(left, &[]);
                self.set_expr(right, &[]);
            }
            SetExpr::Values(v) => {
                for row in &v.rows {
                    for x in row.iter() {
                        self.expr(x);
                    }
                }
            }
            _ => self.found = true,
        }
        for o in order {
            self.expr(&o.expr);
        }
    }

    fn select(&mut self, s: &Select, order: &[sqlparser::ast::OrderByExpr]) {
        let mut level = Level {
            scope: Scope::default(),
            aliases: Vec::new(),
            opaque: false,
        };
        let mut derived = Vec::new();
        for f in factors(&s.from) {
            match f {
                TableFactor::Table { .. } => match bind_table(self.sx, f) {
                    Ok(Some(leaf)) => level.scope.cols.extend(leaf.scope.cols),
                    // An unknown table fails when the subquery runs.
                    Ok(None) | Err(_) => level.opaque = true,
                },
                TableFactor::Derived {
                    subquery, alias, ..
                } => {
                    level.opaque = true;
                    derived.push(subquery);
                    if let Some(a) = alias {
                        level.aliases.push(a.name.value.to_ascii_lowercase());
                    }
                }
                _ => self.found = true,
            }
        }
        // A derived table sees the levels outside this SELECT, not its FROM.
        for q in derived {
            self.query(q);
        }
        let derived_aliases = std::mem::take(&mut level.aliases);
        for item in &s.projection {
            if let SelectItem::ExprWithAlias { alias, .. } = item {
                level.aliases.push(alias.value.clone());
            }
        }
        self.levels.push(level);
        self.derived_aliases(derived_aliases);
        for twj in &s.from {
            for j in &twj.joins {
                let c = match &j.join_operator {
                    JoinOperator::Join(c)
                    | JoinOperator::Inner(c)
                    | JoinOperator::CrossJoin(c)
                    | JoinOperator::LeftOuter(c)
                    | JoinOperator::Left(c)
                    | JoinOperator::RightOuter(c)
                    | JoinOperator::Right(c) => c,
                    _ => {
                        self.found = true;
                        continue;
                    }
                };
                if let JoinConstraint::On(e) = c {
                    self.expr(e);
                }
            }
        }
        for item in &s.projection {
            match item {
                SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
                    self.expr(e)
                }
                SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..) => {}
                _ => self.found = true,
            }
        }
        if let Some(w) = &s.selection {
            self.expr(w);
        }
        if let sqlparser::ast::GroupByExpr::Expressions(v, _) = &s.group_by {
            for g in v {
                self.expr(g);
            }
        }
        if let Some(h) = &s.having {
            self.expr(h);
        }
        for o in order {
            self.expr(&o.expr);
        }
        self.levels.pop();
    }

    /// Names qualified by a derived table's alias are local to the level.
    fn derived_aliases(&mut self, aliases: Vec<String>) {
        if let Some(l) = self.levels.last_mut() {
            for a in aliases {
                l.scope.cols.push(super::super::exec::ScopeCol {
                    table: a,
                    name: String::new(),
                    ty: None,
                    not_null: false,
                });
            }
        }
    }

    /// A column name: a reference to the outer row unless a level has it.
    fn name(&mut self, parts: &[Ident]) {
        if parts
            .first()
            .is_none_or(|p| p.value.starts_with('@') || matches!(p.quote_style, Some('"' | '\'')))
        {
            return;
        }
        let qualifier = match parts {
            [t, _] | [_, t, _] => Some(t.value.to_ascii_lowercase()),
            _ => None,
        };
        for l in self.levels.iter().rev() {
            if !matches!(l.scope.find(parts), Ok(None)) {
                return;
            }
            if let Some(t) = &qualifier {
                if l.scope
                    .cols
                    .iter()
                    .any(|c| c.name.is_empty() && c.table == *t)
                {
                    return;
                }
            }
            if let [one] = parts {
                if l.aliases.iter().any(|a| a.eq_ignore_ascii_case(&one.value)) {
                    return;
                }
            }
            if l.opaque && qualifier.is_none() {
                // Perhaps a derived table's column: count it if the outer
                // row has the name (erring towards correlated).
                break;
            }
        }
        if !matches!(self.outer.find(parts), Ok(None)) {
            self.found = true;
        }
    }

    fn expr(&mut self, e: &Expr) {
        if self.found {
            return;
        }
        match e {
            Expr::Identifier(id) => self.name(std::slice::from_ref(id)),
            Expr::CompoundIdentifier(parts) => self.name(parts),
            Expr::Value(_) | Expr::TypedString(_) => {}
            Expr::BinaryOp { left, right, .. }
            | Expr::IsDistinctFrom(left, right)
            | Expr::IsNotDistinctFrom(left, right) => {
                self.expr(left);
                self.expr(right);
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
            | Expr::Floor { expr, .. }
            | Expr::Collate { expr, .. }
            | Expr::Extract { expr, .. }
            | Expr::Convert { expr, .. } => self.expr(expr),
            Expr::Like { expr, pattern, .. } | Expr::ILike { expr, pattern, .. } => {
                self.expr(expr);
                self.expr(pattern);
            }
            Expr::Between {
                expr, low, high, ..
            } => {
                self.expr(expr);
                self.expr(low);
                self.expr(high);
            }
            Expr::In { expr, target, .. } => {
                self.expr(expr);
                match target {
                    sqlparser::ast::InTarget::List(list) => {
                        for x in list {
                            self.expr(x);
                        }
                    }
                    sqlparser::ast::InTarget::Subquery(q) => self.query(q),
                    _ => self.found = true,
                }
            }
            Expr::Subquery(q) | Expr::Exists { subquery: q, .. } => self.query(q),
            Expr::Case {
                operand,
                conditions,
                else_result,
                ..
            } => {
                if let Some(o) = operand {
                    self.expr(o);
                }
                for c in conditions {
                    self.expr(&c.condition);
                    self.expr(&c.result);
                }
                if let Some(x) = else_result {
                    self.expr(x);
                }
            }
            Expr::Substring {
                expr,
                substring_from,
                substring_for,
                ..
            } => {
                self.expr(expr);
                for x in [substring_from, substring_for].into_iter().flatten() {
                    self.expr(x);
                }
            }
            Expr::Trim {
                expr, trim_what, ..
            } => {
                self.expr(expr);
                if let Some(x) = trim_what {
                    self.expr(x);
                }
            }
            Expr::Position { expr, r#in } => {
                self.expr(expr);
                self.expr(r#in);
            }
            Expr::Tuple(items) => {
                for x in items {
                    self.expr(x);
                }
            }
            Expr::Interval(iv) => self.expr(&iv.value),
            Expr::Function(f) => match &f.args {
                FunctionArguments::None => {}
                FunctionArguments::List(l) => {
                    for a in &l.args {
                        match a {
                            FunctionArg::Unnamed(FunctionArgExpr::Expr(x)) => self.expr(x),
                            FunctionArg::Unnamed(FunctionArgExpr::Wildcard) => {}
                            _ => self.found = true,
                        }
                    }
                    for c in &l.clauses {
                        match c {
                            sqlparser::ast::FunctionArgumentClause::OrderBy(v) => {
                                for o in v {
                                    self.expr(&o.expr);
                                }
                            }
                            sqlparser::ast::FunctionArgumentClause::Separator(_) => {}
                            _ => self.found = true,
                        }
                    }
                }
                FunctionArguments::Subquery(q) => self.query(q),
            },
            _ => self.found = true,
        }
    }
}
