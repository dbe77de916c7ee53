//! Queries: `SELECT` (joins, WHERE, GROUP BY, aggregates, HAVING, ORDER BY,
//! DISTINCT, LIMIT, UNION, subqueries) over rows read from the cluster in
//! the statement's transaction.
//!
//! ```text
//!  Runner::query / set_expr    UNION, VALUES, ORDER BY/LIMIT of a union
//!   └► Runner::select
//!       read_from       FROM + WHERE: one table through its access path,
//!                       several through planner::plan and operator::run
//!                       (conditions bound once: operator::Cond)
//!       WHERE residual  bound (engine::expr) unless it holds a subquery
//!       bound_select    the rest as bound operators (planner::select):
//!                       aggregation → projection/HAVING → DISTINCT →
//!                       sort/top-N → limit
//!       else            the syntax path below
//! ```
//!
//! The syntax path runs a SELECT the binder does not bind (a subquery in
//! the select list or HAVING, `DATE_ADD(.. INTERVAL ..)`, variables, ...):
//! expressions are evaluated by `executor::eval` with a [`RowRes`] binding
//! column names to the current row, and values computed ahead (aggregates
//! per group, subquery results) keyed by their AST node; it shares the
//! aggregation, sort and DISTINCT operators. A subquery is run once when
//! it does not refer to the outer query's row, else once per outer row;
//! which, `planner::correlation` finds from its names before it runs.

use std::collections::HashMap;
use std::sync::Arc;

use sqlparser::ast::{
    Distinct, Expr, GroupByExpr, Ident, LimitClause, ObjectName, OrderByKind, Query, Select,
    SelectItem, SetExpr, SetOperator, SetQuantifier, TableFactor,
};
use tiox_client::txn::Transaction;

use super::catalog::Schema;
use super::operator;
use super::plan;
use super::planner;
use super::schema::TableInfo;
use super::table::Row;
use super::types::{ColumnType, Kind};
use super::walk;
use crate::backend::{BoxFuture, Column, Session};
use crate::error::{er, ErrorKind, SqlError};
use crate::executor::eval::{self, Ctx, Resolver};
use crate::protocol::consts::{flag, ty, CHARSET_BINARY, CHARSET_UTF8MB4};
use crate::value::Value;

/// One column visible to expressions.
#[derive(Clone, Debug, Default)]
pub struct ScopeCol {
    /// Table alias (lower case), empty for computed columns.
    pub table: String,
    /// Column name.
    pub name: String,
    /// The column's type, when it is a table column.
    pub ty: Option<ColumnType>,
    /// `NOT NULL`.
    pub not_null: bool,
    /// The duplicate of a column a `USING` / `NATURAL` join merged into
    /// another: only a qualified name (`t2.c`, `t2.*`) reaches it.
    pub hidden: bool,
    /// For a merged join column, its place among them: `SELECT *` lists
    /// the merged columns first, in this order (MySQL).
    pub rank: Option<u16>,
}

/// The columns of the rows flowing through a query.
#[derive(Clone, Debug, Default)]
pub struct Scope {
    /// In row order.
    pub cols: Vec<ScopeCol>,
}

impl Scope {
    /// The scope of a table under `alias`.
    pub fn of_table(t: &TableInfo, alias: &str) -> Scope {
        Scope {
            cols: t
                .columns
                .iter()
                .map(|c| ScopeCol {
                    table: alias.to_ascii_lowercase(),
                    name: c.name.clone(),
                    ty: Some(c.ty.clone()),
                    not_null: c.not_null,
                    ..Default::default()
                })
                .collect(),
        }
    }

    /// The column `parts` names (`c`, `t.c`, `db.t.c`); ERROR 1052 when
    /// two columns match.
    pub fn find(&self, parts: &[Ident]) -> Result<Option<usize>, SqlError> {
        let (tbl, name) = match parts {
            [c] => (None, &c.value),
            [t, c] => (Some(&t.value), &c.value),
            [_, t, c] => (Some(&t.value), &c.value),
            _ => return Ok(None),
        };
        let mut hit = None;
        for (i, c) in self.cols.iter().enumerate() {
            if c.name.eq_ignore_ascii_case(name)
                && tbl.map_or(!c.hidden, |t| c.table.eq_ignore_ascii_case(t))
            {
                if hit.is_some() {
                    return Err(SqlError::of(
                        ErrorKind::NonUniq,
                        format!("Column '{name}' in field list is ambiguous"),
                    ));
                }
                hit = Some(i);
            }
        }
        Ok(hit)
    }
}

fn ptr(e: &Expr) -> usize {
    e as *const Expr as usize
}

/// Values computed ahead for AST nodes (aggregates, subqueries, VALUES()).
#[derive(Default, Debug, Clone)]
pub struct Pre {
    /// Scalar values.
    pub vals: HashMap<usize, Value>,
    /// IN-subquery rows.
    pub lists: HashMap<usize, Vec<Value>>,
}

impl Pre {
    /// Binds `v` to node `e`.
    pub fn set(&mut self, e: &Expr, v: Value) {
        self.vals.insert(ptr(e), v);
    }
}

/// An enclosing query's current row (for correlated subqueries).
#[derive(Debug)]
pub struct Outer {
    /// Its scope.
    pub scope: Scope,
    /// Its row.
    pub row: Row,
    /// Its own outer query.
    pub parent: Option<Arc<Outer>>,
}

/// Binds names for one row.
pub struct RowRes<'a> {
    /// Columns.
    pub scope: &'a Scope,
    /// The row.
    pub row: &'a [Value],
    /// Values computed ahead.
    pub pre: &'a Pre,
    /// Output aliases visible (ORDER BY, HAVING): names and values.
    pub aliases: Option<(&'a [String], &'a [Value])>,
    /// The enclosing query's row.
    pub outer: Option<&'a Outer>,
}

impl Resolver for RowRes<'_> {
    fn column(&self, parts: &[Ident]) -> Option<Result<Value, SqlError>> {
        match self.scope.find(parts) {
            Err(e) => return Some(Err(e)),
            Ok(Some(i)) => return Some(Ok(self.row[i].clone())),
            Ok(None) => {}
        }
        if let (Some((names, vals)), [one]) = (self.aliases, parts) {
            if let Some(i) = names
                .iter()
                .position(|n| n.eq_ignore_ascii_case(&one.value))
            {
                return Some(Ok(vals[i].clone()));
            }
        }
        let mut o = self.outer;
        while let Some(out) = o {
            match out.scope.find(parts) {
                Err(e) => return Some(Err(e)),
                Ok(Some(i)) => return Some(Ok(out.row[i].clone())),
                Ok(None) => o = out.parent.as_deref(),
            }
        }
        let name = parts
            .iter()
            .map(|p| p.value.as_str())
            .collect::<Vec<_>>()
            .join(".");
        if super::expr::bind::niladic(&name) {
            return None;
        }
        Some(Err(super::schema::unknown_column(&name, "field list")))
    }

    fn precomputed(&self, e: &Expr) -> Option<Value> {
        self.pre.vals.get(&ptr(e)).cloned()
    }

    fn list(&self, e: &Expr) -> Option<&[Value]> {
        self.pre.lists.get(&ptr(e)).map(Vec::as_slice)
    }
}

/// A query's result: columns and rows (and, for a single-table query, the
/// handle of each row, for `FOR UPDATE`).
#[derive(Debug, Default)]
pub struct QueryOut {
    /// Output columns.
    pub columns: Vec<Column>,
    /// Output names.
    pub names: Vec<String>,
    /// Rows.
    pub rows: Vec<Row>,
}

/// A common table expression, materialised: what `FROM name` reads
/// while the query that defines it runs.
pub struct CteRows {
    /// The CTE's name.
    pub name: String,
    /// Its column names.
    pub names: Vec<String>,
    /// Its rows.
    pub rows: Vec<Row>,
}

/// What a statement runs with.
pub struct Sx<'a> {
    /// The session.
    pub session: &'a Session,
    /// Bound parameters.
    pub params: &'a [Value],
    /// The schema.
    pub schema: Arc<Schema>,
    /// The statement's text (result column names).
    pub sql: &'a str,
    /// What the statement's buffers hold (`tidb_mem_quota_query`).
    pub mem: super::memory::Tracker,
    /// Keeps this server from acknowledging newer schema versions while
    /// the statement runs (none for DDL, which waits for them).
    pub hold: Option<super::catalog::SchemaUse>,
    /// The access path already chosen for an autocommit point get (table
    /// id, alias, path): the read of that table takes it instead of
    /// planning again (once; a later read of the table plans its own).
    pub planned: std::sync::Mutex<Option<(i64, String, plan::Access)>>,
    /// EXPLAIN ANALYZE: where the outermost SELECT's operators report.
    pub profile: Option<Arc<operator::profile::Profile>>,
    /// The session's temporary tables (they shadow the schema's).
    pub temps: Arc<super::temporary::Tables>,
    /// The common table expressions in scope, innermost last.
    pub ctes: std::sync::Mutex<Vec<Arc<CteRows>>>,
    /// The views being expanded (a view that reads itself is an error).
    pub views_open: std::sync::Mutex<Vec<i64>>,
}

impl<'a> Sx<'a> {
    /// An evaluation context over `res`.
    pub fn ctx<'b>(&'b self, res: Option<&'b dyn Resolver>) -> Ctx<'b> {
        Ctx {
            session: self.session,
            params: self.params,
            row: &[],
            resolver: res,
        }
    }

    /// Evaluates `e` against one row.
    pub fn eval_row(
        &self,
        e: &Expr,
        scope: &Scope,
        row: &[Value],
        pre: &Pre,
        outer: Option<&Outer>,
    ) -> Result<Value, SqlError> {
        let res = RowRes {
            scope,
            row,
            pre,
            aliases: None,
            outer,
        };
        self.ctx(Some(&res)).eval(e)
    }

    /// The access path planned ahead for `t` under `alias`, if any (taken:
    /// it serves one read).
    pub fn take_planned(&self, t: &TableInfo, alias: &str) -> Option<plan::Access> {
        let mut p = self.planned.lock().unwrap_or_else(|e| e.into_inner());
        match p.take() {
            Some((id, a, access)) if id == t.id && a == alias => Some(access),
            other => {
                *p = other;
                None
            }
        }
    }

    /// The default database, or ERROR 1046.
    pub fn current_db(&self) -> Result<&str, SqlError> {
        self.session.db.as_deref().ok_or_else(er::no_db)
    }

    /// Resolves `db.table` / `table` to a table, or ERROR 1146.
    /// The CTE `name` refers to, if it is one in scope.
    pub fn cte(&self, name: &ObjectName) -> Option<Arc<CteRows>> {
        let [one] = name.0.as_slice() else {
            return None;
        };
        let n = one.to_string();
        let n = n.trim_matches('`');
        let ctes = self.ctes.lock().unwrap_or_else(|e| e.into_inner());
        ctes.iter()
            .rev()
            .find(|c| c.name.eq_ignore_ascii_case(n))
            .cloned()
    }

    pub fn table(&self, name: &ObjectName) -> Result<(String, Arc<TableInfo>), SqlError> {
        let parts: Vec<String> = name
            .0
            .iter()
            .map(|p| p.to_string().trim_matches('`').to_string())
            .collect();
        let (db, t) = match parts.as_slice() {
            [t] => (self.current_db()?.to_string(), t.clone()),
            [d, t] => (d.clone(), t.clone()),
            _ => return Err(er::parse(&name.to_string(), "bad table name")),
        };
        if let Some(info) = self.temps.get(&super::temporary::key(&db, &t)) {
            return Ok((db, info.clone()));
        }
        match self.schema.table(&db, &t) {
            Some(info) => Ok((db, info)),
            None => Err(er::no_such_table(&db, &t)),
        }
    }
}

/// A truth test of a WHERE/ON/HAVING value.
pub fn is_true(v: &Value) -> bool {
    eval::truth(v) == Some(true)
}

/// The MySQL column definition for a value of `ty` (or like `sample`).
pub fn column_def(
    name: &str,
    ty: Option<&ColumnType>,
    not_null: bool,
    sample: Option<&Value>,
) -> Column {
    let Some(t) = ty else {
        return match sample {
            Some(v) => Column::for_value(name, v),
            None => Column::text(name),
        };
    };
    let mut flags = if not_null { flag::NOT_NULL } else { 0 };
    if t.unsigned {
        flags |= flag::UNSIGNED;
    }
    let num = |mt: u8, len: u32, flags: u16| Column {
        name: name.to_string(),
        ty: mt,
        charset: CHARSET_BINARY,
        flags: flags | flag::BINARY,
        length: len,
        decimals: 0,
    };
    match &t.kind {
        Kind::TinyInt => num(ty::TINY, 4, flags),
        Kind::SmallInt => num(ty::SHORT, 6, flags),
        Kind::MediumInt => num(ty::INT24, 9, flags),
        Kind::Int => num(ty::LONG, 11, flags),
        Kind::BigInt => num(ty::LONGLONG, 20, flags),
        Kind::Year => num(ty::YEAR, 4, flags),
        Kind::Float => Column {
            decimals: 31,
            ..num(ty::FLOAT, 12, flags)
        },
        Kind::Double => Column {
            decimals: 31,
            ..num(ty::DOUBLE, 22, flags)
        },
        Kind::Decimal { precision, scale } => Column {
            decimals: *scale,
            ..num(ty::NEWDECIMAL, u32::from(*precision) + 2, flags)
        },
        Kind::Date => num(ty::DATE, 10, flags),
        Kind::DateTime(f) => Column {
            decimals: *f,
            ..num(ty::DATETIME, 19, flags)
        },
        Kind::Timestamp(f) => Column {
            decimals: *f,
            ..num(ty::TIMESTAMP, 19, flags)
        },
        Kind::Time(f) => Column {
            decimals: *f,
            ..num(ty::TIME, 10, flags)
        },
        Kind::Text(n) if *n > 65535 => Column {
            name: name.to_string(),
            ty: ty::BLOB,
            charset: u16::from(CHARSET_UTF8MB4),
            flags,
            length: u32::MAX,
            decimals: 0,
        },
        Kind::Char(_) | Kind::VarChar(_) | Kind::Text(_) | Kind::Enum(_) => Column {
            name: name.to_string(),
            ty: if matches!(t.kind, Kind::Char(_)) {
                ty::STRING
            } else {
                ty::VAR_STRING
            },
            charset: u16::from(CHARSET_UTF8MB4),
            flags,
            length: if let Kind::Char(n) | Kind::VarChar(n) = t.kind {
                n.saturating_mul(4)
            } else {
                1024
            },
            decimals: 0,
        },
        Kind::Binary(n) | Kind::VarBinary(n) => Column {
            name: name.to_string(),
            ty: if matches!(t.kind, Kind::Binary(_)) {
                ty::STRING
            } else {
                ty::VAR_STRING
            },
            charset: CHARSET_BINARY,
            flags: flags | flag::BINARY,
            length: *n,
            decimals: 0,
        },
        Kind::Blob(n) => Column {
            name: name.to_string(),
            ty: ty::BLOB,
            charset: CHARSET_BINARY,
            flags: flags | flag::BINARY,
            length: *n,
            decimals: 0,
        },
        Kind::Json => Column {
            name: name.to_string(),
            ty: ty::JSON,
            charset: u16::from(CHARSET_UTF8MB4),
            flags,
            length: u32::MAX,
            decimals: 0,
        },
    }
}

/// A select-list item: output name, expression, and (for a plain column)
/// its type and NOT NULL.
type Item = (String, Expr, Option<(Option<ColumnType>, bool)>);

use super::operator::aggregation::{agg_calls, AggCall, Inputs};

/// Group keys and aggregate arguments by the syntax evaluator (a SELECT
/// the binder does not bind).
struct SyntaxInputs<'r, 'a, 'q> {
    runner: &'r Runner<'a>,
    groups: &'r [&'q Expr],
    names: &'r [String],
    items: &'r [&'q Expr],
    aggs: &'r [AggCall<'q>],
    scope: &'r Scope,
    outer: Option<&'r Outer>,
}

impl Inputs for SyntaxInputs<'_, '_, '_> {
    fn key(&self, row: &[Value]) -> Result<Vec<Value>, SqlError> {
        self.groups
            .iter()
            .map(|g| {
                self.runner
                    .group_value(g, self.names, self.items, self.scope, row, self.outer)
            })
            .collect()
    }

    fn arg(&self, i: usize, row: &[Value]) -> Result<Value, SqlError> {
        match self.aggs[i].arg {
            Some(e) => self
                .runner
                .sx
                .eval_row(e, self.scope, row, &Pre::default(), self.outer),
            None => Ok(Value::Int(1)),
        }
    }

    fn arg2(&self, i: usize, row: &[Value]) -> Result<Value, SqlError> {
        match self.aggs[i].arg2 {
            Some(e) => self
                .runner
                .sx
                .eval_row(e, self.scope, row, &Pre::default(), self.outer),
            None => Ok(Value::Null),
        }
    }
}

/// One source of rows in FROM: its scope and rows.
struct Source {
    scope: Scope,
    rows: Vec<Row>,
}

/// Whether `e` contains a subquery.
pub fn has_subquery(e: &Expr) -> bool {
    let mut found = false;
    walk::walk(e, &mut |x| {
        if matches!(
            x,
            Expr::Subquery(_)
                | Expr::Exists { .. }
                | Expr::In {
                    target: sqlparser::ast::InTarget::Subquery(_),
                    ..
                }
        ) {
            found = true;
        }
        !found
    });
    found
}

/// Whether a SELECT's list or WHERE holds a subquery.
/// The subqueries in the expressions of `s` (select list, WHERE,
/// HAVING, ON), outermost only.
pub fn nested_queries(s: &Select) -> Vec<&Query> {
    let mut exprs: Vec<&Expr> = Vec::new();
    for i in &s.projection {
        if let SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } = i {
            exprs.push(e);
        }
    }
    exprs.extend(s.selection.as_ref());
    exprs.extend(s.having.as_ref());
    for t in &s.from {
        for j in &t.joins {
            use sqlparser::ast::{JoinConstraint, JoinOperator as J};
            if let J::Join(JoinConstraint::On(e))
            | J::Inner(JoinConstraint::On(e))
            | J::Left(JoinConstraint::On(e))
            | J::LeftOuter(JoinConstraint::On(e))
            | J::Right(JoinConstraint::On(e))
            | J::RightOuter(JoinConstraint::On(e)) = &j.join_operator
            {
                exprs.push(e);
            }
        }
    }
    let mut nodes = Vec::new();
    for e in exprs {
        subqueries(e, &mut nodes);
    }
    nodes
        .into_iter()
        .filter_map(|n| match n {
            Expr::Subquery(q)
            | Expr::Exists { subquery: q, .. }
            | Expr::In {
                target: sqlparser::ast::InTarget::Subquery(q),
                ..
            } => Some(q.as_ref()),
            _ => None,
        })
        .collect()
}

/// Whether `body` reads table `name` in a FROM clause (at any depth of
/// joins, derived tables and set operations).
fn reads_table(body: &SetExpr, name: &str) -> bool {
    fn factor(f: &TableFactor, name: &str) -> bool {
        match f {
            TableFactor::Table { name: n, .. } => {
                n.0.len() == 1 && n.to_string().trim_matches('`').eq_ignore_ascii_case(name)
            }
            TableFactor::Derived { subquery, .. } => reads_table(&subquery.body, name),
            TableFactor::NestedJoin {
                table_with_joins, ..
            } => {
                factor(&table_with_joins.relation, name)
                    || table_with_joins
                        .joins
                        .iter()
                        .any(|j| factor(&j.relation, name))
            }
            _ => false,
        }
    }
    match body {
        SetExpr::Select(s) => s.from.iter().any(|t| {
            factor(&t.relation, name) || t.joins.iter().any(|j| factor(&j.relation, name))
        }),
        SetExpr::Query(q) => reads_table(&q.body, name),
        SetExpr::SetOperation { left, right, .. } => {
            reads_table(left, name) || reads_table(right, name)
        }
        _ => false,
    }
}

/// `FROM DUAL`: MySQL's name for no table (a reserved word, so no user
/// table has it).
pub fn is_dual(s: &Select) -> bool {
    matches!(s.from.as_slice(), [one] if one.joins.is_empty()
        && matches!(&one.relation, TableFactor::Table { name, alias: None, .. }
            if name.0.len() == 1 && name.to_string().eq_ignore_ascii_case("dual")))
}

/// Whether the select list, HAVING or ORDER BY of `s` calls an aggregate.
pub fn select_has_aggregate(s: &Select) -> bool {
    let mut exprs: Vec<&Expr> = s
        .projection
        .iter()
        .filter_map(|i| match i {
            SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => Some(e),
            _ => None,
        })
        .collect();
    exprs.extend(s.having.as_ref());
    !operator::aggregation::agg_calls(&exprs).is_empty()
}

pub fn select_has_subquery(s: &Select) -> bool {
    s.selection.as_ref().is_some_and(has_subquery)
        || s.projection.iter().any(|i| match i {
            SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
                has_subquery(e)
            }
            _ => false,
        })
}

fn subqueries<'q>(e: &'q Expr, out: &mut Vec<&'q Expr>) {
    walk::walk(e, &mut |x| {
        if matches!(
            x,
            Expr::Subquery(_)
                | Expr::Exists { .. }
                | Expr::In {
                    target: sqlparser::ast::InTarget::Subquery(_),
                    ..
                }
        ) {
            out.push(x);
        }
        true
    });
}

/// The engine's query runner over one transaction.
pub struct Runner<'a> {
    /// Statement context.
    pub sx: &'a Sx<'a>,
    /// The transaction (reads at its snapshot plus its own writes).
    pub tx: &'a Transaction,
    /// Describe only: tables yield no rows (result columns at prepare).
    pub dry: bool,
}

impl<'a> Runner<'a> {
    /// Runs a query.
    pub fn query<'b>(
        &'b self,
        q: &'b Query,
        outer: Option<Arc<Outer>>,
    ) -> BoxFuture<'b, Result<QueryOut, SqlError>> {
        Box::pin(async move {
            let Some(with) = &q.with else {
                return self.query_body(q, outer).await;
            };
            let depth = self.sx.ctes.lock().unwrap_or_else(|e| e.into_inner()).len();
            let r = async {
                for cte in &with.cte_tables {
                    let rows = self.cte(cte, with.recursive, outer.clone()).await?;
                    self.sx
                        .ctes
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(Arc::new(rows));
                }
                self.query_body(q, outer).await
            }
            .await;
            self.sx
                .ctes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .truncate(depth);
            r
        })
    }

    /// Materialises one CTE. A recursive one (`WITH RECURSIVE`, a UNION
    /// whose right side reads the CTE) runs its anchor once, then its
    /// recursive part over the rows the last round added, until a round
    /// adds none (UNION DISTINCT drops rows already there) or
    /// `cte_max_recursion_depth` rounds ran (ERROR 3636).
    async fn cte(
        &self,
        cte: &sqlparser::ast::Cte,
        recursive: bool,
        outer: Option<Arc<Outer>>,
    ) -> Result<CteRows, SqlError> {
        let name = cte.alias.name.value.clone();
        let listed: Vec<String> = cte
            .alias
            .columns
            .iter()
            .map(|c| c.name.value.clone())
            .collect();
        let named = |out_names: Vec<String>| -> Result<Vec<String>, SqlError> {
            if listed.is_empty() {
                return Ok(out_names);
            }
            if listed.len() != out_names.len() {
                return Err(SqlError::of(
                    ErrorKind::ViewWrongList,
                    "In definition of view, derived table or common table expression, SELECT list and column names list have different column counts".into(),
                ));
            }
            Ok(listed.clone())
        };
        let body = cte.query.body.as_ref();
        let recursion = match body {
            SetExpr::SetOperation {
                op: SetOperator::Union,
                set_quantifier,
                left,
                right,
            } if recursive && reads_table(right, &name) && cte.query.order_by.is_none() => {
                Some((left, right, matches!(set_quantifier, SetQuantifier::All)))
            }
            _ => None,
        };
        let Some((anchor, step, all)) = recursion else {
            let out = self.query(&cte.query, outer).await?;
            return Ok(CteRows {
                name,
                names: named(out.names)?,
                rows: out.rows,
            });
        };
        let first = self.set_expr(anchor, outer.clone()).await?;
        let names = named(first.names)?;
        let max_depth =
            match crate::executor::vars::get(self.sx.session, "cte_max_recursion_depth", false) {
                Some(Value::Int(i)) => i.max(0) as u64,
                Some(Value::UInt(u)) => u,
                _ => 1000,
            };
        let mut seen: std::collections::HashSet<Vec<u8>> = std::collections::HashSet::new();
        let key = |r: &Row| -> Vec<u8> {
            let mut k = Vec::new();
            operator::aggregation::group_key(r, &mut k);
            k
        };
        let mut total: Vec<Row> = Vec::new();
        let mut fresh: Vec<Row> = Vec::new();
        for r in first.rows {
            if all || seen.insert(key(&r)) {
                fresh.push(r);
            }
        }
        let mut rounds = 0u64;
        while !fresh.is_empty() {
            for r in &fresh {
                self.sx.mem.consume_row(r)?;
            }
            total.extend(fresh.iter().cloned());
            if rounds >= max_depth {
                return Err(SqlError::of(
                    ErrorKind::CteMaxRecursionDepth,
                    format!(
                        "Recursive query aborted after {} iterations. Try increasing @@cte_max_recursion_depth to a larger value.",
                        rounds + 1
                    ),
                ));
            }
            rounds += 1;
            self.sx
                .ctes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(Arc::new(CteRows {
                    name: name.clone(),
                    names: names.clone(),
                    rows: std::mem::take(&mut fresh),
                }));
            let r = self.set_expr(step, outer.clone()).await;
            self.sx.ctes.lock().unwrap_or_else(|e| e.into_inner()).pop();
            for row in r?.rows {
                if row.len() != names.len() {
                    return Err(SqlError::of(
                        ErrorKind::WrongNumberOfColumnsInSelect,
                        "The used SELECT statements have a different number of columns".into(),
                    ));
                }
                if all || seen.insert(key(&row)) {
                    fresh.push(row);
                }
            }
        }
        Ok(CteRows {
            name,
            names,
            rows: total,
        })
    }

    fn query_body<'b>(
        &'b self,
        q: &'b Query,
        outer: Option<Arc<Outer>>,
    ) -> BoxFuture<'b, Result<QueryOut, SqlError>> {
        Box::pin(async move {
            let (limit, offset) = limits(self.sx, q)?;
            let order: Vec<&sqlparser::ast::OrderByExpr> = match &q.order_by {
                Some(o) => match &o.kind {
                    OrderByKind::Expressions(v) => v.iter().collect(),
                    OrderByKind::All(_) => return Err(er::not_supported_yet("ORDER BY ALL")),
                },
                None => Vec::new(),
            };
            match q.body.as_ref() {
                SetExpr::Select(s) => self.select(s, &order, limit, offset, outer).await,
                SetExpr::Query(inner) if order.is_empty() && limit.is_none() && offset == 0 => {
                    self.query(inner, outer).await
                }
                _ => {
                    let mut out = self.set_expr(&q.body, outer.clone()).await?;
                    if !order.is_empty() {
                        let scope = Scope {
                            cols: out
                                .names
                                .iter()
                                .map(|n| ScopeCol {
                                    table: String::new(),
                                    name: n.clone(),
                                    ty: None,
                                    not_null: false,
                                    ..Default::default()
                                })
                                .collect(),
                        };
                        let pre = Pre::default();
                        let mut keyed = Vec::new();
                        for r in std::mem::take(&mut out.rows) {
                            let mut keys = Vec::new();
                            for o in &order {
                                keys.push(self.order_value(
                                    &o.expr,
                                    &scope,
                                    &r,
                                    &pre,
                                    None,
                                    outer.as_deref(),
                                )?);
                            }
                            keyed.push((keys, r));
                        }
                        sort_rows(&mut keyed, &order);
                        out.rows = keyed.into_iter().map(|(_, r)| r).collect();
                    }
                    out.rows = out
                        .rows
                        .into_iter()
                        .skip(offset)
                        .take(limit.unwrap_or(usize::MAX))
                        .collect();
                    Ok(out)
                }
            }
        })
    }

    fn set_expr<'b>(
        &'b self,
        body: &'b SetExpr,
        outer: Option<Arc<Outer>>,
    ) -> BoxFuture<'b, Result<QueryOut, SqlError>> {
        Box::pin(async move {
            match body {
                SetExpr::Select(s) => self.select(s, &[], None, 0, outer).await,
                SetExpr::Query(q) => self.query(q, outer).await,
                SetExpr::SetOperation {
                    op: op @ (SetOperator::Union | SetOperator::Intersect | SetOperator::Except),
                    set_quantifier,
                    left,
                    right,
                } => {
                    use operator::union::SetOp;
                    let op = match op {
                        SetOperator::Union => SetOp::Union,
                        SetOperator::Intersect => SetOp::Intersect,
                        _ => SetOp::Except,
                    };
                    let mut l = self.set_expr(left, outer.clone()).await?;
                    let r = self.set_expr(right, outer).await?;
                    l.rows = operator::union::combine(
                        op,
                        std::mem::take(&mut l.rows),
                        r.rows,
                        (l.columns.len(), r.columns.len()),
                        matches!(set_quantifier, SetQuantifier::All),
                    )?;
                    Ok(l)
                }
                SetExpr::Values(v) => {
                    let mut out = QueryOut::default();
                    for row in &v.rows {
                        let ctx = self.sx.ctx(None);
                        out.rows
                            .push(row.iter().map(|e| ctx.eval(e)).collect::<Result<_, _>>()?);
                    }
                    let n = out.rows.first().map_or(0, Vec::len);
                    out.names = (0..n).map(|i| format!("column_{i}")).collect();
                    out.columns = out.names.iter().map(|n| Column::text(n)).collect();
                    Ok(out)
                }
                other => Err(er::not_supported_yet(&format!(
                    "the set operation in `{other}`"
                ))),
            }
        })
    }

    /// FROM and WHERE: the rows of FROM that pass the WHERE conjuncts the
    /// plan placed, and the conjuncts it left for the caller (those with
    /// subqueries). A single table is read through its access path; several
    /// go through the join planner (`planner`, `operator`).
    async fn read_from(
        &self,
        s: &Select,
        outer: Option<Arc<Outer>>,
        profile: Option<&operator::profile::Profile>,
    ) -> Result<(Source, Option<Expr>), SqlError> {
        match s.from.as_slice() {
            _ if is_dual(s) => {
                let src = Source {
                    scope: Scope::default(),
                    rows: vec![Vec::new()],
                };
                return Ok((src, s.selection.clone()));
            }
            [] => {
                let src = Source {
                    scope: Scope::default(),
                    rows: vec![Vec::new()],
                };
                return Ok((src, s.selection.clone()));
            }
            [one] if single_factor(s) => {
                let start = std::time::Instant::now();
                let mem_before = self.sx.mem.used();
                let src = self
                    .factor(&one.relation, s.selection.as_ref(), outer)
                    .await?;
                if let Some(p) = profile {
                    // The one scan (node 0): rows read; rows kept come
                    // after the WHERE.
                    let mem = self.sx.mem.used().saturating_sub(mem_before);
                    let slot = operator::profile::Slot::Read(0);
                    p.add(slot, src.rows.len() as u64, std::time::Duration::ZERO, 0);
                    p.add(operator::profile::Slot::Node(0), 0, start.elapsed(), mem);
                }
                return Ok((src, s.selection.clone()));
            }
            _ => {}
        }
        let mut leaves = Vec::new();
        for f in planner::factors(&s.from) {
            leaves.push(self.leaf(f, outer.clone()).await?);
        }
        let mut p = planner::plan(&s.from, s.selection.as_ref(), leaves)?;
        let rows = operator::scan::fetch_leaves(
            self.sx,
            self.tx,
            &mut p.leaves,
            &p.root,
            outer.as_deref(),
            self.dry,
            profile,
        )
        .await?;
        let (streamed, later): (Vec<Expr>, Vec<Expr>) = std::mem::take(&mut p.residual)
            .into_iter()
            .partition(|c| !has_subquery(c));
        let env = operator::Env {
            sx: self.sx,
            leaves: &p.leaves,
            rows,
            outer: outer.as_deref(),
            profile,
        };
        let all: Vec<usize> = (0..p.leaves.len()).collect();
        let scope = planner::scope_of(&p.leaves, &all);
        let perm = from_order(&p.leaves, &p.root.leaves());
        let streamed = env.bind(&streamed, &scope)?;
        let mut out = Vec::new();
        operator::blocking(|| {
            operator::run(&env, &p.root, 0, &mut |mut row| {
                let row: Row = perm
                    .iter()
                    .map(|&i| std::mem::replace(&mut row[i], Value::Null))
                    .collect();
                if env.accepts(&streamed, &scope, &row)? {
                    self.sx.mem.consume_row(&row)?;
                    out.push(row);
                }
                Ok(())
            })
        })?;
        let residual = later.into_iter().reduce(|a, b| Expr::BinaryOp {
            left: Box::new(a),
            op: sqlparser::ast::BinaryOperator::And,
            right: Box::new(b),
        });
        Ok((Source { scope, rows: out }, residual))
    }

    /// Binds one factor of a FROM with several: a table, or a derived
    /// table's rows.
    async fn leaf(
        &self,
        f: &TableFactor,
        outer: Option<Arc<Outer>>,
    ) -> Result<planner::Leaf, SqlError> {
        if let Some((alias, src)) = self.view_rows(f).await? {
            return Ok(planner::Leaf {
                alias,
                scope: src.scope,
                source: planner::LeafSource::Rows {
                    rows: src.rows,
                    label: "Projection",
                },
            });
        }
        if let Some(l) = planner::bind_table(self.sx, f)? {
            return Ok(l);
        }
        let TableFactor::Derived { alias, .. } = f else {
            return Err(er::not_supported_yet(&format!("the FROM item `{f}`")));
        };
        let src = self.factor(f, None, outer).await?;
        Ok(planner::Leaf {
            alias: alias
                .as_ref()
                .map(|a| a.name.value.clone())
                .unwrap_or_default(),
            scope: src.scope,
            source: planner::LeafSource::Rows {
                rows: src.rows,
                label: "Projection",
            },
        })
    }

    /// The rows of `f` if it names a view (its alias and rows); `None`
    /// for anything else. ERROR 1462 for a view that reads itself.
    async fn view_rows(&self, f: &TableFactor) -> Result<Option<(String, Source)>, SqlError> {
        let TableFactor::Table { name, alias, .. } = f else {
            return Ok(None);
        };
        if self.sx.cte(name).is_some() {
            return Ok(None);
        }
        let Ok((db, t)) = self.sx.table(name) else {
            return Ok(None);
        };
        let Some(v) = &t.view else {
            return Ok(None);
        };
        {
            let mut open = self.sx.views_open.lock().unwrap_or_else(|e| e.into_inner());
            if open.contains(&t.id) {
                return Err(SqlError::of(
                    ErrorKind::ViewRecursive,
                    format!("`{db}`.`{}` contains view recursion", t.name),
                ));
            }
            open.push(t.id);
        }
        let r = async {
            let tokens = crate::parser::split(&v.select)?;
            let Some(tokens) = tokens.first() else {
                return Err(er::unknown(format!("view {db}.{} has no query", t.name)));
            };
            let crate::parser::Stmt::Query(q) = crate::parser::parse(&v.select, tokens)? else {
                return Err(er::unknown(format!("view {db}.{} is not a query", t.name)));
            };
            self.query(&q, None).await
        }
        .await;
        self.sx
            .views_open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|id| *id != t.id);
        let out = r?;
        let alias = alias
            .as_ref()
            .map_or_else(|| t.name.clone(), |a| a.name.value.clone());
        let scope = Scope {
            cols: t
                .columns
                .iter()
                .map(|c| ScopeCol {
                    table: alias.to_ascii_lowercase(),
                    name: c.name.clone(),
                    ..Default::default()
                })
                .collect(),
        };
        Ok(Some((
            alias,
            Source {
                scope,
                rows: out.rows,
            },
        )))
    }

    async fn factor(
        &self,
        f: &TableFactor,
        filter: Option<&Expr>,
        outer: Option<Arc<Outer>>,
    ) -> Result<Source, SqlError> {
        if let Some((_, src)) = self.view_rows(f).await? {
            return Ok(src);
        }
        match f {
            TableFactor::Table { .. } => {
                let Some(leaf) = planner::bind_table(self.sx, f)? else {
                    return Err(er::not_supported_yet(&format!("the FROM item `{f}`")));
                };
                let t = match leaf.source {
                    planner::LeafSource::Table(t) => t,
                    planner::LeafSource::Rows { rows, .. } => {
                        return Ok(Source {
                            scope: leaf.scope,
                            rows,
                        })
                    }
                };
                if self.dry {
                    return Ok(Source {
                        scope: leaf.scope,
                        rows: Vec::new(),
                    });
                }
                let access = self
                    .sx
                    .take_planned(&t, &leaf.alias)
                    .unwrap_or_else(|| plan::choose(&t, &leaf.alias, filter));
                // No resolver: the planner only uses constants.
                let ctx = self.sx.ctx(None);
                let found = plan::fetch(self.tx, &t, &access, &ctx, None).await?;
                let mut rows = Vec::with_capacity(found.len());
                for (_, r) in found {
                    self.sx.mem.consume_row(&r)?;
                    rows.push(r);
                }
                Ok(Source {
                    scope: leaf.scope,
                    rows,
                })
            }
            TableFactor::Derived {
                subquery, alias, ..
            } => {
                let Some(alias) = alias else {
                    return Err(SqlError::of(
                        ErrorKind::DerivedMustHaveAlias,
                        "Every derived table must have its own alias".into(),
                    ));
                };
                let mut out = self.query(subquery, outer).await?;
                if !alias.columns.is_empty() {
                    if alias.columns.len() != out.names.len() {
                        return Err(SqlError::of(
                            ErrorKind::ViewWrongList,
                            "In definition of view, derived table or common table expression, SELECT list and column names list have different column counts".into(),
                        ));
                    }
                    out.names = alias.columns.iter().map(|c| c.name.value.clone()).collect();
                }
                let scope = Scope {
                    cols: out
                        .names
                        .iter()
                        .map(|n| ScopeCol {
                            table: alias.name.value.to_ascii_lowercase(),
                            name: n.clone(),
                            ty: None,
                            not_null: false,
                            ..Default::default()
                        })
                        .collect(),
                };
                Ok(Source {
                    scope,
                    rows: out.rows,
                })
            }
            other => Err(er::not_supported_yet(&format!("the FROM item `{other}`"))),
        }
    }

    /// Computes the subqueries in `exprs`: once if uncorrelated, else per
    /// row of `rows` (returns one `Pre` per row then); correlation is found
    /// from the names (`planner::correlation`), before running.
    async fn subquery_values(
        &self,
        exprs: &[&Expr],
        scope: &Scope,
        rows: &[Row],
        outer: Option<Arc<Outer>>,
    ) -> Result<(Pre, Option<Vec<Pre>>), SqlError> {
        let mut nodes = Vec::new();
        for e in exprs {
            subqueries(e, &mut nodes);
        }
        let mut shared = Pre::default();
        let mut per_row: Option<Vec<Pre>> = None;
        for node in nodes {
            let q = match node {
                Expr::Subquery(q)
                | Expr::Exists { subquery: q, .. }
                | Expr::In {
                    target: sqlparser::ast::InTarget::Subquery(q),
                    ..
                } => q,
                _ => continue,
            };
            if planner::correlation::correlated(self.sx, q, scope) {
                let pres = per_row.get_or_insert_with(|| vec![Pre::default(); rows.len()]);
                for (r, p) in rows.iter().zip(pres.iter_mut()) {
                    let o = Arc::new(Outer {
                        scope: scope.clone(),
                        row: r.clone(),
                        parent: outer.clone(),
                    });
                    self.one_subquery(node, p, Some(o)).await?;
                }
            } else {
                self.one_subquery(node, &mut shared, outer.clone()).await?;
            }
        }
        if let Some(pres) = &mut per_row {
            for p in pres.iter_mut() {
                p.vals
                    .extend(shared.vals.iter().map(|(k, v)| (*k, v.clone())));
                p.lists
                    .extend(shared.lists.iter().map(|(k, v)| (*k, v.clone())));
            }
        }
        Ok((shared, per_row))
    }

    async fn one_subquery(
        &self,
        node: &Expr,
        pre: &mut Pre,
        outer: Option<Arc<Outer>>,
    ) -> Result<(), SqlError> {
        match node {
            Expr::Subquery(q) => {
                let out = self.query(q, outer).await?;
                if out.columns.len() != 1 {
                    return Err(SqlError::of(
                        ErrorKind::OperandColumns,
                        "Operand should contain 1 column(s)".into(),
                    ));
                }
                if out.rows.len() > 1 {
                    return Err(SqlError::of(
                        ErrorKind::SubqueryNo1Row,
                        "Subquery returns more than 1 row".into(),
                    ));
                }
                pre.set(
                    node,
                    out.rows
                        .into_iter()
                        .next()
                        .and_then(|r| r.into_iter().next())
                        .unwrap_or(Value::Null),
                );
            }
            Expr::Exists { subquery, negated } => {
                let out = self.query(subquery, outer).await?;
                pre.set(node, Value::Int(i64::from(out.rows.is_empty() == *negated)));
            }
            Expr::In {
                target: sqlparser::ast::InTarget::Subquery(q),
                ..
            } => {
                let out = self.query(q, outer).await?;
                if out.columns.len() != 1 {
                    return Err(SqlError::of(
                        ErrorKind::OperandColumns,
                        "Operand should contain 1 column(s)".into(),
                    ));
                }
                pre.lists.insert(
                    ptr(node),
                    out.rows
                        .into_iter()
                        .filter_map(|r| r.into_iter().next())
                        .collect(),
                );
            }
            _ => {}
        }
        Ok(())
    }

    fn order_value(
        &self,
        e: &Expr,
        scope: &Scope,
        row: &[Value],
        pre: &Pre,
        aliases: Option<(&[String], &[Value])>,
        outer: Option<&Outer>,
    ) -> Result<Value, SqlError> {
        // ORDER BY n: the n-th output column.
        if let (Expr::Value(v), Some((_, vals))) = (e, aliases) {
            if let sqlparser::ast::Value::Number(n, _) = &v.value {
                let i: usize = n.parse().unwrap_or(0);
                return vals.get(i.wrapping_sub(1)).cloned().ok_or_else(|| {
                    SqlError::of(
                        ErrorKind::BadField,
                        format!("Unknown column '{n}' in 'order clause'"),
                    )
                });
            }
        }
        if let (Expr::Identifier(id), Some((names, vals))) = (e, aliases) {
            if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(&id.value)) {
                // An output alias wins over a source column (MySQL).
                return Ok(vals[i].clone());
            }
        }
        let res = RowRes {
            scope,
            row,
            pre,
            aliases,
            outer,
        };
        self.sx.ctx(Some(&res)).eval(e)
    }

    async fn select(
        &self,
        s: &Select,
        order: &[&sqlparser::ast::OrderByExpr],
        limit: Option<usize>,
        offset: usize,
        outer: Option<Arc<Outer>>,
    ) -> Result<QueryOut, SqlError> {
        if s.into.is_some() {
            return Err(er::not_supported_yet("SELECT ... INTO"));
        }
        let entered = operator::profile::Entered::new(self.sx.profile.as_deref());
        let profile = entered.top();
        let (mut src, residual) = self.read_from(s, outer.clone(), profile).await?;
        let where_start = std::time::Instant::now();
        // WHERE: what the FROM plan left (all of it for one table, bound
        // once; conjuncts with subqueries after a join).
        if let Some(w) = residual.as_ref().filter(|w| !has_subquery(w)) {
            let conds = operator::Cond::bind(self.sx, [w], &src.scope, outer.as_deref())?;
            let mut kept = Vec::new();
            for row in std::mem::take(&mut src.rows) {
                if operator::Cond::all_hold(&conds, self.sx, &src.scope, &row, outer.as_deref())? {
                    kept.push(row);
                }
            }
            src.rows = kept;
        } else if let Some(w) = &residual {
            let rest = self.semi_joins(w, &mut src, outer.clone()).await?;
            let w = &rest;
            let (shared, per_row) = self
                .subquery_values(&[w], &src.scope, &src.rows, outer.clone())
                .await?;
            let mut kept = Vec::new();
            for (i, row) in std::mem::take(&mut src.rows).into_iter().enumerate() {
                let pre = per_row.as_ref().map_or(&shared, |p| &p[i]);
                if is_true(
                    &self
                        .sx
                        .eval_row(w, &src.scope, &row, pre, outer.as_deref())?,
                ) {
                    kept.push(row);
                }
            }
            src.rows = kept;
        }
        if let Some(p) = profile {
            use operator::profile::Slot;
            let kept = src.rows.len() as u64;
            p.add(Slot::Residual, kept, where_start.elapsed(), 0);
            if single_factor(s) {
                // One table: its WHERE is the scan's filter.
                p.add(Slot::Node(0), kept, std::time::Duration::ZERO, 0);
            }
        }
        // Projection list (wildcards expanded).
        let items = select_items(s, self.sx.sql, &src.scope)?;
        if let Some(out) = self.bound_select(
            s,
            &items,
            (order, offset, limit),
            &src,
            outer.as_deref(),
            profile,
        )? {
            return Ok(out);
        }
        let group_exprs: Vec<&Expr> = match &s.group_by {
            GroupByExpr::Expressions(v, _) => v.iter().collect(),
            GroupByExpr::All(_) => return Err(er::not_supported_yet("GROUP BY ALL")),
        };
        let mut agg_inputs: Vec<&Expr> = items.iter().map(|(_, e, _)| e).collect();
        if let Some(h) = &s.having {
            agg_inputs.push(h);
        }
        for o in order {
            agg_inputs.push(&o.expr);
        }
        let in_windows = operator::window::window_exprs(&agg_inputs, &s.named_window);
        agg_inputs.extend(in_windows);
        let aggs = agg_calls(&agg_inputs);
        let grouped = !aggs.is_empty() || !group_exprs.is_empty();
        let names: Vec<String> = items.iter().map(|(n, _, _)| n.clone()).collect();
        let item_exprs: Vec<&Expr> = items.iter().map(|(_, e, _)| e).collect();
        // Subqueries in the select list and HAVING.
        let mut sub_exprs: Vec<&Expr> = item_exprs.clone();
        if let Some(h) = &s.having {
            sub_exprs.push(h);
        }
        let any_sub = sub_exprs.iter().any(|e| has_subquery(e));
        // Rows to project: (scope row, precomputed values).
        let mut proj_rows: Vec<(Row, Pre)> = Vec::new();
        if grouped {
            let inputs = SyntaxInputs {
                runner: self,
                groups: &group_exprs,
                names: &names,
                items: &item_exprs,
                aggs: &aggs,
                scope: &src.scope,
                outer: outer.as_deref(),
            };
            let calls: Vec<&AggCall> = aggs.iter().collect();
            let width = src.scope.cols.len();
            let groups = super::operator::aggregation::run(
                self.sx,
                &src.rows,
                width,
                group_exprs.is_empty(),
                &calls,
                &inputs,
            )?;
            for mut row in groups {
                let mut pre = Pre::default();
                for (a, v) in aggs.iter().zip(row.drain(width..)) {
                    pre.set(a.node, v);
                }
                proj_rows.push((row, pre));
            }
        } else {
            self.sx
                .mem
                .consume((src.rows.len() * 2 * std::mem::size_of::<(Row, Pre)>()) as u64)?;
            proj_rows = src.rows.into_iter().map(|r| (r, Pre::default())).collect();
        }
        if any_sub {
            let rows: Vec<Row> = proj_rows.iter().map(|(r, _)| r.clone()).collect();
            let (shared, per_row) = self
                .subquery_values(&sub_exprs, &src.scope, &rows, outer.clone())
                .await?;
            for (i, (_, pre)) in proj_rows.iter_mut().enumerate() {
                let add = per_row.as_ref().map_or(&shared, |p| &p[i]);
                pre.vals
                    .extend(add.vals.iter().map(|(k, v)| (*k, v.clone())));
                pre.lists
                    .extend(add.lists.iter().map(|(k, v)| (*k, v.clone())));
            }
        }
        // Window functions: over the rows HAVING keeps.
        let mut win_exprs: Vec<&Expr> = item_exprs.clone();
        win_exprs.extend(order.iter().map(|o| &o.expr));
        if operator::window::has_window(&win_exprs) {
            let calls = operator::window::window_calls(&win_exprs, &s.named_window)?;
            if let Some(h) = &s.having {
                let mut kept = Vec::with_capacity(proj_rows.len());
                for (row, pre) in proj_rows {
                    let res = RowRes {
                        scope: &src.scope,
                        row: &row,
                        pre: &pre,
                        aliases: None,
                        outer: outer.as_deref(),
                    };
                    let ctx = self.sx.ctx(Some(&res));
                    let vals: Row = item_exprs
                        .iter()
                        .map(|e| {
                            if operator::window::has_window(&[e]) {
                                Ok(Value::Null)
                            } else {
                                ctx.eval(e)
                            }
                        })
                        .collect::<Result<_, _>>()?;
                    let hres = RowRes {
                        scope: &src.scope,
                        row: &row,
                        pre: &pre,
                        aliases: Some((&names, &vals)),
                        outer: outer.as_deref(),
                    };
                    let keep = is_true(&self.sx.ctx(Some(&hres)).eval(h)?);
                    if keep {
                        kept.push((row, pre));
                    }
                }
                proj_rows = kept;
            }
            let scope = &src.scope;
            let outer_ref = outer.as_deref();
            operator::window::compute(&calls, &mut proj_rows, &|e, row, pre| {
                let res = RowRes {
                    scope,
                    row,
                    pre,
                    aliases: None,
                    outer: outer_ref,
                };
                self.sx.ctx(Some(&res)).eval(e)
            })?;
        }
        // Project, HAVING, ORDER BY keys.
        let mut out_rows: Vec<(Vec<Value>, Row)> = Vec::new();
        for (row, pre) in &proj_rows {
            let res = RowRes {
                scope: &src.scope,
                row,
                pre,
                aliases: None,
                outer: outer.as_deref(),
            };
            let ctx = self.sx.ctx(Some(&res));
            let vals: Row = item_exprs
                .iter()
                .map(|e| ctx.eval(e))
                .collect::<Result<_, _>>()?;
            if let Some(h) = &s.having {
                let hres = RowRes {
                    scope: &src.scope,
                    row,
                    pre,
                    aliases: Some((&names, &vals)),
                    outer: outer.as_deref(),
                };
                if !is_true(&self.sx.ctx(Some(&hres)).eval(h)?) {
                    continue;
                }
            }
            let mut keys = Vec::new();
            for o in order {
                keys.push(self.order_value(
                    &o.expr,
                    &src.scope,
                    row,
                    pre,
                    Some((&names, &vals)),
                    outer.as_deref(),
                )?);
            }
            // The result set (and ORDER BY keys) until it is sent.
            self.sx
                .mem
                .consume(super::memory::row_bytes(&keys) + super::memory::row_bytes(&vals))?;
            out_rows.push((keys, vals));
        }
        if matches!(s.distinct, Some(Distinct::Distinct)) {
            operator::aggregation::distinct(&mut out_rows, |(_, r)| r.as_slice());
        } else if let Some(Distinct::On(_)) = &s.distinct {
            return Err(er::not_supported_yet("DISTINCT ON"));
        }
        if !order.is_empty() {
            sort_rows(&mut out_rows, order);
        }
        let rows: Vec<Row> = out_rows
            .into_iter()
            .map(|(_, r)| r)
            .skip(offset)
            .take(limit.unwrap_or(usize::MAX))
            .collect();
        let columns = result_columns(&items, &rows, &src.scope);
        Ok(QueryOut {
            columns,
            names,
            rows,
        })
    }

    /// Keeps the rows of `src` that the WHERE conjuncts of `w` which are
    /// semi joins accept (`planner::correlation::semi_join`: each subquery
    /// runs once, its rows hashed); the other conjuncts are returned (TRUE
    /// when none are left).
    async fn semi_joins(
        &self,
        w: &Expr,
        src: &mut Source,
        outer: Option<Arc<Outer>>,
    ) -> Result<Expr, SqlError> {
        let mut rest = Vec::new();
        for c in walk::conjuncts(w) {
            let Some(semi) = planner::correlation::semi_join(self.sx, c, &src.scope) else {
                rest.push(c.clone());
                continue;
            };
            let inner = self.query(&semi.query, outer.clone()).await?;
            let table = operator::semi_join::SemiTable::new(inner.rows, semi.outer_keys.len());
            let keys =
                operator::Cond::bind(self.sx, &semi.outer_keys, &src.scope, outer.as_deref())?;
            let mut kept = Vec::new();
            for row in std::mem::take(&mut src.rows) {
                self.sx.mem.check_time()?;
                let key = keys
                    .iter()
                    .map(|k| k.value(self.sx, &src.scope, &row, outer.as_deref()))
                    .collect::<Result<Vec<_>, _>>()?;
                if table.matches(&key) != semi.anti {
                    kept.push(row);
                }
            }
            src.rows = kept;
        }
        Ok(rest
            .into_iter()
            .reduce(|a, b| Expr::BinaryOp {
                left: Box::new(a),
                op: sqlparser::ast::BinaryOperator::And,
                right: Box::new(b),
            })
            .unwrap_or(Expr::Value(sqlparser::ast::Value::Boolean(true).into())))
    }

    /// The SELECT after FROM + WHERE as bound operators
    /// (`planner::select`); `None` when a part needs the syntax evaluator
    /// (the caller runs the rest of [`Runner::select`] then).
    fn bound_select(
        &self,
        s: &Select,
        items: &[Item],
        tail: planner::select::Ordering<'_>,
        src: &Source,
        outer: Option<&Outer>,
        profile: Option<&operator::profile::Profile>,
    ) -> Result<Option<QueryOut>, SqlError> {
        let names: Vec<String> = items.iter().map(|(n, _, _)| n.clone()).collect();
        let exprs: Vec<Expr> = items.iter().map(|(_, e, _)| e.clone()).collect();
        let mut all: Vec<&Expr> = exprs.iter().collect();
        all.extend(tail.0.iter().map(|o| &o.expr));
        if operator::window::has_window(&all) {
            return Ok(None);
        }
        let Some(tail) =
            planner::select::bind_tail(self.sx, s, &exprs, &names, tail, &src.scope, outer)?
        else {
            return Ok(None);
        };
        let rows = operator::blocking(|| {
            tail.run(self.sx, src.rows.clone(), src.scope.cols.len(), profile)
        })?;
        Ok(Some(QueryOut {
            columns: result_columns(items, &rows, &src.scope),
            names,
            rows,
        }))
    }

    fn group_value(
        &self,
        g: &Expr,
        names: &[String],
        items: &[&Expr],
        scope: &Scope,
        row: &[Value],
        outer: Option<&Outer>,
    ) -> Result<Value, SqlError> {
        // GROUP BY n / GROUP BY alias.
        if let Expr::Value(v) = g {
            if let sqlparser::ast::Value::Number(n, _) = &v.value {
                let i: usize = n.parse().unwrap_or(0);
                let e = items.get(i.wrapping_sub(1)).ok_or_else(|| {
                    SqlError::of(
                        ErrorKind::BadField,
                        format!("Unknown column '{n}' in 'group statement'"),
                    )
                })?;
                return self.sx.eval_row(e, scope, row, &Pre::default(), outer);
            }
        }
        if let Expr::Identifier(id) = g {
            if scope.find(std::slice::from_ref(id))?.is_none() {
                if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(&id.value)) {
                    return self
                        .sx
                        .eval_row(items[i], scope, row, &Pre::default(), outer);
                }
            }
        }
        self.sx.eval_row(g, scope, row, &Pre::default(), outer)
    }

    /// Runs a single-table SELECT's FROM + WHERE and returns the handles
    /// and rows (for UPDATE/DELETE and `FOR UPDATE`), honouring ORDER BY
    /// and LIMIT.
    pub async fn matching_rows(
        &self,
        t: &Arc<TableInfo>,
        alias: &str,
        filter: Option<&Expr>,
        order: &[sqlparser::ast::OrderByExpr],
        limit: Option<usize>,
    ) -> Result<Vec<(i64, Row)>, SqlError> {
        let access = plan::choose(t, alias, filter);
        let ctx = self.sx.ctx(None);
        let found = plan::fetch(self.tx, t, &access, &ctx, None).await?;
        let scope = Scope::of_table(t, alias);
        let rows: Vec<Row> = found.iter().map(|(_, r)| r.clone()).collect();
        let (shared, per_row) = match filter {
            Some(f) => self.subquery_values(&[f], &scope, &rows, None).await?,
            None => (Pre::default(), None),
        };
        let mut kept = Vec::new();
        for (i, (h, row)) in found.into_iter().enumerate() {
            let pre = per_row.as_ref().map_or(&shared, |p| &p[i]);
            if let Some(f) = filter {
                if !is_true(&self.sx.eval_row(f, &scope, &row, pre, None)?) {
                    continue;
                }
            }
            kept.push((h, row));
        }
        if !order.is_empty() {
            let refs: Vec<&sqlparser::ast::OrderByExpr> = order.iter().collect();
            let mut keyed = Vec::new();
            for (h, row) in kept {
                let mut keys = Vec::new();
                for o in order {
                    keys.push(
                        self.sx
                            .eval_row(&o.expr, &scope, &row, &Pre::default(), None)?,
                    );
                }
                keyed.push((keys, (h, row)));
            }
            operator::sort::sort(&mut keyed, &descending(&refs));
            kept = keyed.into_iter().map(|(_, r)| r).collect();
        }
        if let Some(l) = limit {
            kept.truncate(l);
        }
        Ok(kept)
    }

    /// Whether a single-table query `q` reads table `t` (FOR UPDATE).
    pub fn single_table(&self, q: &Query) -> Option<(Arc<TableInfo>, String, Option<Expr>)> {
        single_table(self.sx, q)
    }
}

/// The select list with wildcards expanded: output name, expression, and
/// for a plain column its type and NOT NULL.
fn select_items(s: &Select, sql: &str, scope: &Scope) -> Result<Vec<Item>, SqlError> {
    let texts = projection_texts(s, sql);
    let mut items: Vec<Item> = Vec::new();
    for (n, item) in s.projection.iter().enumerate() {
        match item {
            SelectItem::UnnamedExpr(e) => {
                let name = match e {
                    Expr::Identifier(id) => id.value.clone(),
                    Expr::CompoundIdentifier(p) => {
                        p.last().map(|i| i.value.clone()).unwrap_or_default()
                    }
                    _ => texts.get(n).cloned().unwrap_or_else(|| e.to_string()),
                };
                // `x COLLATE c` in the select list is x's value (its
                // collation matters where it is compared or sorted).
                let e = match e {
                    Expr::Collate { expr, .. } => expr.as_ref(),
                    other => other,
                };
                let meta = match e {
                    Expr::Identifier(_) | Expr::CompoundIdentifier(_) => {
                        let parts = match e {
                            Expr::Identifier(i) => vec![i.clone()],
                            Expr::CompoundIdentifier(p) => p.clone(),
                            _ => unreachable!(),
                        };
                        scope
                            .find(&parts)
                            .ok()
                            .flatten()
                            .map(|i| (scope.cols[i].ty.clone(), scope.cols[i].not_null))
                    }
                    _ => None,
                };
                items.push((name, e.clone(), meta));
            }
            SelectItem::ExprWithAlias { expr, alias } => {
                items.push((alias.value.clone(), expr.clone(), None))
            }
            SelectItem::ExprWithAliases { .. } => {
                return Err(er::not_supported_yet("several aliases for one expression"))
            }
            SelectItem::Wildcard(_) => {
                if scope.cols.is_empty() {
                    return Err(SqlError::of(
                        ErrorKind::NoTablesUsed,
                        "No tables used".into(),
                    ));
                }
                // Merged USING / NATURAL columns first, then the rest in
                // FROM order, without the merged duplicates.
                let mut cols: Vec<&ScopeCol> = scope.cols.iter().filter(|c| !c.hidden).collect();
                cols.sort_by_key(|c| c.rank.map_or((1, 0), |r| (0, r)));
                for c in cols {
                    items.push((
                        c.name.clone(),
                        col_expr(c),
                        Some((c.ty.clone(), c.not_null)),
                    ));
                }
            }
            SelectItem::QualifiedWildcard(kind, _) => {
                let q = kind.to_string();
                let q = q
                    .trim_end_matches(".*")
                    .rsplit('.')
                    .next()
                    .unwrap_or_default()
                    .trim_matches('`')
                    .to_ascii_lowercase();
                let mut any = false;
                for c in scope.cols.iter().filter(|c| c.table == q) {
                    any = true;
                    items.push((
                        c.name.clone(),
                        col_expr(c),
                        Some((c.ty.clone(), c.not_null)),
                    ));
                }
                if !any {
                    return Err(SqlError::of(
                        ErrorKind::BadTable,
                        format!("Unknown table '{q}'"),
                    ));
                }
            }
        }
    }
    Ok(items)
}

/// The result columns of `items` (types from the table columns or the
/// aggregate, else from the first non-NULL value).
fn result_columns(items: &[Item], rows: &[Row], scope: &Scope) -> Vec<Column> {
    items
        .iter()
        .enumerate()
        .map(|(i, (name, _, meta))| {
            let sample = rows.iter().map(|r| &r[i]).find(|v| !v.is_null());
            match meta {
                Some((Some(t), nn)) => column_def(name, Some(t), *nn, sample),
                _ => static_column(name, &items[i].1, scope)
                    .unwrap_or_else(|| column_def(name, None, false, sample)),
            }
        })
        .collect()
}

/// A query's LIMIT and OFFSET (constants or parameters).
pub fn limits(sx: &Sx<'_>, q: &Query) -> Result<(Option<usize>, usize), SqlError> {
    let ctx = sx.ctx(None);
    let num = |e: &Expr| -> Result<usize, SqlError> {
        let v = ctx.eval(e)?;
        match v {
            Value::Int(i) if i >= 0 => Ok(i as usize),
            Value::UInt(u) => Ok(u as usize),
            Value::Text(ref s) if s.parse::<usize>().is_ok() => Ok(s.parse().unwrap_or(0)),
            other => Err(er::wrong_arguments(&format!("LIMIT {other}"))),
        }
    };
    Ok(match &q.limit_clause {
        None => (None, 0),
        Some(LimitClause::LimitOffset { limit, offset, .. }) => (
            limit.as_ref().map(num).transpose()?,
            offset
                .as_ref()
                .map(|o| num(&o.value))
                .transpose()?
                .unwrap_or(0),
        ),
        Some(LimitClause::OffsetCommaLimit { offset, limit }) => (Some(num(limit)?), num(offset)?),
    })
}

/// Whether FROM is one item without joins (read through its access path,
/// not the join planner).
fn single_factor(s: &Select) -> bool {
    matches!(s.from.as_slice(), [one] if one.joins.is_empty()
        && !matches!(one.relation, TableFactor::NestedJoin { .. }))
}

/// The one base table a plain `SELECT ... FROM t [WHERE ...]` reads (no
/// joins), with its alias and WHERE.
pub fn single_table(sx: &Sx<'_>, q: &Query) -> Option<(Arc<TableInfo>, String, Option<Expr>)> {
    let SetExpr::Select(s) = q.body.as_ref() else {
        return None;
    };
    if s.from.len() != 1 || !s.from[0].joins.is_empty() {
        return None;
    }
    let TableFactor::Table { name, alias, .. } = &s.from[0].relation else {
        return None;
    };
    let (_, t) = sx.table(name).ok()?;
    if t.view.is_some() {
        return None;
    }
    let alias = alias
        .as_ref()
        .map_or_else(|| t.name.clone(), |a| a.name.value.clone());
    Some((t, alias, s.selection.clone()))
}

/// Where each column of FROM order sits in a row of a plan whose leaves
/// come in `plan_order`.
fn from_order(leaves: &[planner::Leaf], plan_order: &[usize]) -> Vec<usize> {
    let mut offset = vec![0; leaves.len()];
    let mut at = 0;
    for &l in plan_order {
        offset[l] = at;
        at += leaves[l].scope.cols.len();
    }
    (0..leaves.len())
        .flat_map(|l| (0..leaves[l].scope.cols.len()).map(move |c| (l, c)))
        .map(|(l, c)| offset[l] + c)
        .collect()
}

/// The result column of an aggregate, known without rows (so a prepared
/// statement's columns match its executions').
fn static_column(name: &str, e: &Expr, scope: &Scope) -> Option<Column> {
    let Expr::Function(f) = e else { return None };
    let fname = f.name.to_string().to_ascii_lowercase();
    let arg_col = || match walk::args(f).first() {
        Some(Expr::Identifier(i)) => scope.find(std::slice::from_ref(i)).ok().flatten(),
        Some(Expr::CompoundIdentifier(p)) => scope.find(p).ok().flatten(),
        _ => None,
    };
    match fname.as_str() {
        "count" => Some(column_def(
            name,
            Some(&ColumnType::new(Kind::BigInt)),
            true,
            None,
        )),
        "sum" | "avg" => {
            let float = arg_col()
                .and_then(|i| scope.cols[i].ty.as_ref())
                .is_some_and(|t| matches!(t.kind, Kind::Float | Kind::Double));
            if float {
                Some(column_def(
                    name,
                    Some(&ColumnType::new(Kind::Double)),
                    false,
                    None,
                ))
            } else {
                Some(column_def(
                    name,
                    Some(&ColumnType::new(Kind::Decimal {
                        precision: 65,
                        scale: if fname == "avg" { 4 } else { 0 },
                    })),
                    false,
                    None,
                ))
            }
        }
        "min" | "max" => arg_col().and_then(|i| {
            scope.cols[i]
                .ty
                .as_ref()
                .map(|t| column_def(name, Some(t), false, None))
        }),
        _ => None,
    }
}

fn col_expr(c: &ScopeCol) -> Expr {
    if c.table.is_empty() {
        Expr::Identifier(Ident::new(c.name.clone()))
    } else {
        Expr::CompoundIdentifier(vec![
            Ident::new(c.table.clone()),
            Ident::new(c.name.clone()),
        ])
    }
}

/// DESC per ORDER BY key.
pub fn descending(order: &[&sqlparser::ast::OrderByExpr]) -> Vec<bool> {
    order
        .iter()
        .map(|o| matches!(o.options.sort, Some(sqlparser::ast::OrderBySort::Desc)))
        .collect()
}

fn sort_rows(rows: &mut [(Vec<Value>, Row)], order: &[&sqlparser::ast::OrderByExpr]) {
    operator::sort::sort(rows, &descending(order));
}

/// The source text of each select-list item (MySQL names result columns
/// after it: `SELECT 1+1` has a column `1+1`): from the item's start to the
/// next top-level comma or clause keyword.
fn projection_texts(s: &Select, sql: &str) -> Vec<String> {
    use sqlparser::ast::Spanned;
    s.projection
        .iter()
        .map(
            |item| match crate::executor::byte_offset(sql, item.span().start) {
                Some(a) if a < sql.len() => item_text(&sql[a..]),
                _ => item.to_string(),
            },
        )
        .collect()
}

fn item_text(rest: &str) -> String {
    let mut depth = 0i32;
    let mut quote: Option<char> = None;
    let chars: Vec<(usize, char)> = rest.char_indices().collect();
    let mut i = 0;
    while i < chars.len() {
        let (b, c) = chars[i];
        match quote {
            Some(q) => {
                if c == '\\' {
                    i += 1;
                } else if c == q {
                    quote = None;
                }
            }
            None => match c {
                '\'' | '"' | '`' => quote = Some(c),
                '(' => depth += 1,
                ')' if depth == 0 => return rest[..b].trim_end().to_string(),
                ')' => depth -= 1,
                ',' | ';' if depth == 0 => return rest[..b].trim_end().to_string(),
                c if depth == 0 && c.is_whitespace() => {
                    let word: String = rest[b..]
                        .trim_start()
                        .chars()
                        .take_while(|x| x.is_ascii_alphabetic())
                        .collect();
                    if matches!(
                        word.to_ascii_uppercase().as_str(),
                        "FROM"
                            | "WHERE"
                            | "GROUP"
                            | "ORDER"
                            | "LIMIT"
                            | "HAVING"
                            | "UNION"
                            | "FOR"
                            | "INTO"
                            | "AS"
                            | "LOCK"
                            | "WINDOW"
                    ) {
                        return rest[..b].trim_end().to_string();
                    }
                }
                _ => {}
            },
        }
        i += 1;
    }
    rest.trim_end().to_string()
}
