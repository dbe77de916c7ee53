//! Physical operators: each [`Node`] of a FROM plan runs here, pushing
//! its rows into a sink (`emit`) rather than returning them, so a join's
//! probe side and a cross join stream and only build sides are held.
//!
//! ```text
//!  scan::fetch_leaves   async: every table leaf read through its access
//!                       path, its filters applied (rows charged)
//!  run(node, emit)      sync from there on:
//!    Scan        the leaf's rows
//!    Selection   rows its conjuncts accept
//!    HashJoin    hash_join::run
//! ```
//!
//! After FROM, the rest of a SELECT (`planner::select`) runs as
//! `aggregation` (hash aggregation, DISTINCT) → `projection` (with HAVING
//! and ORDER BY keys) → `sort` (sort, top-N) → `limit`; `union` joins the
//! sides of a UNION, `semi_join` holds a decorrelated subquery's rows.
//!
//! Every condition and hash key is bound once per run ([`Cond::bind`]):
//! its names become column indexes of the node's rows (`engine::expr`);
//! a form the binder does not know stays syntax and is evaluated by name.

pub mod aggregation;
pub mod hash_join;
pub mod limit;
pub mod profile;
pub mod projection;
pub mod scan;
pub mod semi_join;
pub mod sort;
pub mod union;
pub mod window;

use sqlparser::ast::Expr;

use super::exec::{is_true, Outer, Pre, Scope, Sx};
use super::expr::bind::{bind, Names};
use super::expr::BoundExpr;
use super::planner::{Leaf, Node};
use super::table::Row;
use crate::error::SqlError;
use crate::value::Value;

/// An expression of the plan, bound once for one run over one row layout.
pub enum Cond<'e> {
    /// Resolved to column indexes.
    Bound(BoundExpr),
    /// A form the binder does not know: the syntax, with names looked up
    /// in the scope per row.
    Syntax(&'e Expr),
}

impl<'e> Cond<'e> {
    /// Binds each of `exprs` over `scope` (and the enclosing row `outer`).
    pub fn bind(
        sx: &Sx<'_>,
        exprs: impl IntoIterator<Item = &'e Expr>,
        scope: &Scope,
        outer: Option<&Outer>,
    ) -> Result<Vec<Cond<'e>>, SqlError> {
        let ctx = sx.ctx(None);
        let names = Names::of(scope, outer);
        exprs
            .into_iter()
            .map(|e| {
                Ok(match bind(&ctx, &names, e)? {
                    Some(b) => Cond::Bound(b),
                    None => Cond::Syntax(e),
                })
            })
            .collect()
    }

    /// The value on `row` (of `scope`'s layout).
    pub fn value(
        &self,
        sx: &Sx<'_>,
        scope: &Scope,
        row: &[Value],
        outer: Option<&Outer>,
    ) -> Result<Value, SqlError> {
        match self {
            Cond::Bound(b) => b.eval(sx.session, row),
            Cond::Syntax(e) => sx.eval_row(e, scope, row, &Pre::default(), outer),
        }
    }

    /// Whether every one of `conds` is true on `row`.
    pub fn all_hold(
        conds: &[Cond<'_>],
        sx: &Sx<'_>,
        scope: &Scope,
        row: &[Value],
        outer: Option<&Outer>,
    ) -> Result<bool, SqlError> {
        sx.mem.check_time()?;
        for c in conds {
            if !is_true(&c.value(sx, scope, row, outer)?) {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// A sink for rows.
pub type Emit<'e> = dyn FnMut(Row) -> Result<(), SqlError> + 'e;

/// What the operators of one FROM plan share.
pub struct Env<'a> {
    /// The statement.
    pub sx: &'a Sx<'a>,
    /// The plan's leaves.
    pub leaves: &'a [Leaf],
    /// Each leaf's rows, filtered (from [`scan::fetch_leaves`]).
    pub rows: Vec<Vec<Row>>,
    /// The enclosing query's row, for correlated references.
    pub outer: Option<&'a Outer>,
    /// Where EXPLAIN ANALYZE collects measurements (outermost SELECT only).
    pub profile: Option<&'a profile::Profile>,
}

impl Env<'_> {
    /// Binds `exprs` over `scope` ([`Cond::bind`]).
    pub fn bind<'e>(
        &self,
        exprs: impl IntoIterator<Item = &'e Expr>,
        scope: &Scope,
    ) -> Result<Vec<Cond<'e>>, SqlError> {
        Cond::bind(self.sx, exprs, scope, self.outer)
    }

    /// Whether every one of `conds` (bound over `scope`) is true on `row`.
    pub fn accepts(
        &self,
        conds: &[Cond<'_>],
        scope: &Scope,
        row: &[Value],
    ) -> Result<bool, SqlError> {
        Cond::all_hold(conds, self.sx, scope, row, self.outer)
    }

    /// The scope of `node`'s rows.
    pub fn scope(&self, node: &Node) -> Scope {
        super::planner::scope_of(self.leaves, &node.leaves())
    }
}

/// Runs `f`, a stretch of operator work that does not await, letting the
/// runtime move this worker's other tasks (other sessions) to another
/// thread meanwhile.
pub fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// Runs `node` (at pre-order position `at` of its tree), sending each of
/// its rows to `emit`; measured when the statement is profiled.
pub fn run(env: &Env<'_>, node: &Node, at: usize, emit: &mut Emit<'_>) -> Result<(), SqlError> {
    let Some(p) = env.profile else {
        return run_node(env, node, at, emit);
    };
    let start = std::time::Instant::now();
    let mut handed = std::time::Duration::ZERO;
    let mut rows = 0;
    run_node(env, node, at, &mut |r| {
        rows += 1;
        let t = std::time::Instant::now();
        let out = emit(r);
        handed += t.elapsed();
        out
    })?;
    p.add(
        profile::Slot::Node(at),
        rows,
        start.elapsed().saturating_sub(handed),
        0,
    );
    Ok(())
}

fn run_node(env: &Env<'_>, node: &Node, at: usize, emit: &mut Emit<'_>) -> Result<(), SqlError> {
    match node {
        Node::Scan { leaf, .. } => {
            for r in &env.rows[*leaf] {
                emit(r.clone())?;
            }
            Ok(())
        }
        Node::Selection { input, conds, .. } => {
            let scope = env.scope(input);
            let conds = env.bind(conds, &scope)?;
            run(env, input, at + 1, &mut |row| {
                if env.accepts(&conds, &scope, &row)? {
                    emit(row)?;
                }
                Ok(())
            })
        }
        Node::HashJoin { .. } => hash_join::run(env, node, at, emit),
    }
}
