//! Union: `UNION ALL` appends the right input's rows to the left's;
//! `UNION` (DISTINCT) then keeps the first of each set of equal rows, as
//! DISTINCT does. Both inputs must have as many columns (ERROR 1222).

use super::super::table::Row;
use super::aggregation::distinct;
use crate::error::{ErrorKind, SqlError};

/// The union of `left` and `right` (`width`s: their column counts).
pub fn run(
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
    left.extend(right);
    if !all {
        distinct(&mut left, |r| r.as_slice());
    }
    Ok(left)
}
