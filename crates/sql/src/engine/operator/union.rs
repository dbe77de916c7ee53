//! Set operations over two inputs of equal width (ERROR 1222 otherwise):
//! `UNION ALL` appends the right input's rows to the left's, `UNION`
//! (DISTINCT) then keeps the first of each set of equal rows, as DISTINCT
//! does; `INTERSECT` and `EXCEPT` keep the left rows that are (not) in the
//! right input, once each, or — with ALL — as many times as the multiset
//! rules say (min(m, n) and m - n copies). Rows compare as GROUP BY keys
//! (the collation's equality), and the left input's order is kept.

use std::collections::HashMap;

use super::super::table::Row;
use super::aggregation::{distinct, group_key};
use crate::error::{ErrorKind, SqlError};

/// Which set operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetOp {
    /// UNION.
    Union,
    /// INTERSECT.
    Intersect,
    /// EXCEPT.
    Except,
}

/// The union of `left` and `right` (`width`s: their column counts).
pub fn run(
    left: Vec<Row>,
    right: Vec<Row>,
    widths: (usize, usize),
    all: bool,
) -> Result<Vec<Row>, SqlError> {
    combine(SetOp::Union, left, right, widths, all)
}

/// `left op [ALL] right`.
pub fn combine(
    op: SetOp,
    mut left: Vec<Row>,
    right: Vec<Row>,
    widths: (usize, usize),
    all: bool,
) -> Result<Vec<Row>, SqlError> {
    if widths.0 != widths.1 {
        return Err(SqlError::of(
            ErrorKind::WrongNumberOfColumnsInSelect,
            "The used SELECT statements have a different number of columns".into(),
        ));
    }
    let key = |r: &Row| {
        let mut k = Vec::new();
        group_key(r, &mut k);
        k
    };
    match op {
        SetOp::Union => {
            left.extend(right);
            if !all {
                distinct(&mut left, |r| r.as_slice());
            }
        }
        SetOp::Intersect | SetOp::Except => {
            let mut counts: HashMap<Vec<u8>, usize> = HashMap::new();
            for r in &right {
                *counts.entry(key(r)).or_default() += 1;
            }
            if !all {
                distinct(&mut left, |r| r.as_slice());
            }
            left.retain(|r| {
                let k = key(r);
                let n = counts.get_mut(&k);
                match (op, n) {
                    (SetOp::Intersect, Some(n)) if *n > 0 => {
                        if all {
                            *n -= 1;
                        }
                        true
                    }
                    (SetOp::Intersect, _) => false,
                    (_, Some(n)) if *n > 0 => {
                        if all {
                            *n -= 1;
                        }
                        false
                    }
                    _ => true,
                }
            });
        }
    }
    Ok(left)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Value;

    fn rows(v: &[i64]) -> Vec<Row> {
        v.iter().map(|i| vec![Value::Int(*i)]).collect()
    }

    #[test]
    fn intersect_and_except_follow_the_multiset_rules_with_all() {
        let (l, r) = (rows(&[1, 1, 1, 2, 3]), rows(&[1, 1, 3, 4]));
        let run = |op, all| combine(op, l.clone(), r.clone(), (1, 1), all).unwrap();
        assert_eq!(run(SetOp::Intersect, false), rows(&[1, 3]));
        assert_eq!(run(SetOp::Intersect, true), rows(&[1, 1, 3]));
        assert_eq!(run(SetOp::Except, false), rows(&[2]));
        assert_eq!(run(SetOp::Except, true), rows(&[1, 2]));
    }
}
