//! What `EXPLAIN ANALYZE` reports per operator: rows out, time, memory.
//!
//! A [`Profile`] rides on the statement (`exec::Sx::profile`) and only the
//! outermost SELECT records into it (subqueries and derived tables run
//! their own operators unprofiled). FROM-tree nodes are named by their
//! pre-order position in the tree ([`Slot::Node`], left input before
//! right, the same numbering `planner::explain` walks); the operators
//! above FROM by their role ([`Slot`]).
//!
//! Time is the operator's own work and its inputs', not its consumer's
//! (rows are pushed: the time spent handing a row on is subtracted).
//! Memory is what the operator charged to the statement's tracker.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use super::super::planner::Node;

/// Where a measurement belongs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Slot {
    /// A FROM-tree node, by pre-order position.
    Node(usize),
    /// The rows a scan read before its filters (the scan under the
    /// Selection EXPLAIN draws for a filtered full scan).
    Read(usize),
    /// The WHERE conjuncts evaluated after FROM.
    Residual,
    /// GROUP BY / aggregates.
    Aggregation,
    /// HAVING.
    Having,
    /// DISTINCT.
    Distinct,
    /// ORDER BY (sort or top-N).
    Order,
    /// LIMIT / OFFSET.
    Limit,
}

/// One operator's measurements.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stat {
    /// Rows out.
    pub rows: u64,
    /// Time spent.
    pub time: Duration,
    /// Bytes charged.
    pub mem: u64,
}

/// The measurements of one statement.
#[derive(Debug, Default)]
pub struct Profile {
    stats: Mutex<HashMap<Slot, Stat>>,
    depth: AtomicUsize,
}

impl Profile {
    /// Adds to `slot`'s measurements.
    pub fn add(&self, slot: Slot, rows: u64, time: Duration, mem: u64) {
        let mut m = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        let s = m.entry(slot).or_default();
        s.rows += rows;
        s.time += time;
        s.mem += mem;
    }

    /// What `slot` measured, if it ran.
    pub fn get(&self, slot: Slot) -> Option<Stat> {
        self.stats
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&slot)
            .copied()
    }
}

/// A SELECT running under a profile (left when dropped).
pub struct Entered<'a> {
    profile: Option<&'a Profile>,
    top: bool,
}

impl<'a> Entered<'a> {
    /// Enters a SELECT of the statement profiled by `profile`, if any.
    pub fn new(profile: Option<&'a Profile>) -> Entered<'a> {
        let top = profile.is_some_and(|p| p.depth.fetch_add(1, Ordering::AcqRel) == 0);
        Entered { profile, top }
    }

    /// The profile, when this is the outermost SELECT (the one recorded).
    pub fn top(&self) -> Option<&'a Profile> {
        self.profile.filter(|_| self.top)
    }
}

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        if let Some(p) = self.profile {
            p.depth.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// The number of nodes in `n`'s subtree.
pub fn size(n: &Node) -> usize {
    match n {
        Node::Scan { .. } => 1,
        Node::Selection { input, .. } => 1 + size(input),
        Node::HashJoin { left, right, .. } => 1 + size(left) + size(right),
    }
}

/// The pre-order positions of `n`'s inputs, `n` being at `at`: (left,
/// right) for a join, (input, _) for a selection.
pub fn children(n: &Node, at: usize) -> (usize, usize) {
    match n {
        Node::HashJoin { left, .. } => (at + 1, at + 1 + size(left)),
        _ => (at + 1, at + 1),
    }
}
