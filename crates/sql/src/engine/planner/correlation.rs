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
                    ..Default::default()
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

/// A WHERE conjunct `[NOT] EXISTS (subquery)` or `x IN (subquery)` turned
/// into a semi (anti-semi) join: the subquery runs once, without its
/// correlation, as the rows of `query`; an outer row is kept when its
/// `outer_keys` match one of them (none, for `anti`).
pub struct Semi {
    /// The subquery without its correlated equalities, selecting the inner
    /// side of each key.
    pub query: Query,
    /// The outer side of each key, over the outer rows.
    pub outer_keys: Vec<Expr>,
    /// `NOT EXISTS`.
    pub anti: bool,
}

/// `conj` as a semi join over rows of `outer`, when that is sound: the
/// subquery is one plain SELECT (no GROUP BY, HAVING, aggregates, LIMIT
/// or CTE) over base tables, correlated only by `inner = outer` column
/// equalities among its WHERE conjuncts. (`NOT IN` is left to the
/// evaluator: its NULL rules need more than a match.)
pub fn semi_join(sx: &Sx<'_>, conj: &Expr, outer: &Scope) -> Option<Semi> {
    let (q, anti, probe) = match conj {
        Expr::Exists { subquery, negated } => (subquery, *negated, None),
        Expr::In {
            expr,
            target: sqlparser::ast::InTarget::Subquery(q),
            negated: false,
            ..
        } => (q, false, Some(&**expr)),
        _ => return None,
    };
    if q.with.is_some() || q.limit_clause.is_some() || q.fetch.is_some() || !q.locks.is_empty() {
        return None;
    }
    let SetExpr::Select(s) = q.body.as_ref() else {
        return None;
    };
    let grouped =
        !matches!(&s.group_by, sqlparser::ast::GroupByExpr::Expressions(v, _) if v.is_empty());
    let items = super::super::walk::projected(s);
    if grouped
        || s.having.is_some()
        || s.into.is_some()
        || s.from.is_empty()
        || !super::super::operator::aggregation::agg_calls(&items).is_empty()
    {
        return None;
    }
    let mut level = Level {
        scope: Scope::default(),
        aliases: Vec::new(),
        opaque: false,
    };
    for f in factors(&s.from) {
        match bind_table(sx, f) {
            Ok(Some(leaf)) => level.scope.cols.extend(leaf.scope.cols),
            _ => return None,
        }
    }
    let inner = level.scope.clone();
    let mut w = Walk {
        sx,
        outer,
        levels: vec![level],
        found: false,
    };
    let mut refers = |e: &Expr| {
        w.found = false;
        w.expr(e);
        w.found
    };
    for twj in &s.from {
        for j in &twj.joins {
            let on = match &j.join_operator {
                JoinOperator::Join(c) | JoinOperator::Inner(c) | JoinOperator::CrossJoin(c) => c,
                // An outer join's ON is not a filter of the whole subquery.
                _ => return None,
            };
            match on {
                JoinConstraint::On(e) if refers(e) => return None,
                JoinConstraint::On(_) | JoinConstraint::None => {}
                _ => return None,
            }
        }
    }
    let mut inner_keys = Vec::new();
    let mut outer_keys = Vec::new();
    if let Some(x) = probe {
        let [item] = items.as_slice() else {
            return None;
        };
        if s.projection.len() != 1 || refers(item) {
            return None;
        }
        inner_keys.push((*item).clone());
        outer_keys.push(x.clone());
    }
    let mut kept = Vec::new();
    for c in s.selection.iter().flat_map(super::super::walk::conjuncts) {
        if !refers(c) {
            kept.push(c.clone());
            continue;
        }
        let Expr::BinaryOp {
            left,
            op: sqlparser::ast::BinaryOperator::Eq,
            right,
        } = c
        else {
            return None;
        };
        let side = |e: &Expr| -> Option<bool> {
            let parts: &[Ident] = match e {
                Expr::Identifier(i) => std::slice::from_ref(i),
                Expr::CompoundIdentifier(p) => p,
                _ => return None,
            };
            match (inner.find(parts), outer.find(parts)) {
                (Ok(Some(_)), _) => Some(true),
                (Ok(None), Ok(Some(_))) => Some(false),
                _ => None,
            }
        };
        match (side(left)?, side(right)?) {
            (true, false) => {
                inner_keys.push((**left).clone());
                outer_keys.push((**right).clone());
            }
            (false, true) => {
                inner_keys.push((**right).clone());
                outer_keys.push((**left).clone());
            }
            _ => return None,
        }
    }
    if outer_keys.is_empty() {
        // Uncorrelated EXISTS: run once as it is.
        return None;
    }
    let mut query = (**q).clone();
    query.order_by = None;
    if let SetExpr::Select(s2) = query.body.as_mut() {
        s2.projection = inner_keys
            .into_iter()
            .map(SelectItem::UnnamedExpr)
            .collect();
        s2.selection = kept.into_iter().reduce(|a, b| Expr::BinaryOp {
            left: Box::new(a),
            op: sqlparser::ast::BinaryOperator::And,
            right: Box::new(b),
        });
    }
    Some(Semi {
        query,
        outer_keys,
        anti,
    })
}
