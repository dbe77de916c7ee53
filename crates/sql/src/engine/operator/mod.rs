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

pub mod hash_join;
pub mod scan;

use super::exec::{is_true, Outer, Pre, Scope, Sx};
use super::planner::{Leaf, Node};
use super::table::Row;
use crate::error::SqlError;
use crate::value::Value;

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
}

impl Env<'_> {
    /// Whether every conjunct of `conds` is true on `row`.
    pub fn accepts(
        &self,
        conds: &[sqlparser::ast::Expr],
        scope: &Scope,
        row: &[Value],
    ) -> Result<bool, SqlError> {
        self.sx.mem.check_time()?;
        let pre = Pre::default();
        for c in conds {
            if !is_true(&self.sx.eval_row(c, scope, row, &pre, self.outer)?) {
                return Ok(false);
            }
        }
        Ok(true)
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

/// Runs `node`, sending each of its rows to `emit`.
pub fn run(env: &Env<'_>, node: &Node, emit: &mut Emit<'_>) -> Result<(), SqlError> {
    match node {
        Node::Scan { leaf, .. } => {
            for r in &env.rows[*leaf] {
                emit(r.clone())?;
            }
            Ok(())
        }
        Node::Selection { input, conds, .. } => {
            let scope = env.scope(input);
            run(env, input, &mut |row| {
                if env.accepts(conds, &scope, &row)? {
                    emit(row)?;
                }
                Ok(())
            })
        }
        Node::HashJoin { .. } => hash_join::run(env, node, emit),
    }
}
