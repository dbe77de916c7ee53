//! Row constructors: `(a, b) = (1, 2)`, `(a, b) IN ((1, 2), (3, 4))` and
//! the other comparisons of rows, rewritten into the scalar expressions
//! they mean (MySQL's definitions): `=` is the AND of the pairs, `<>` its
//! negation, `<=>` the AND of null-safe pairs, `<` `<=` `>` `>=` compare
//! the first pair that is not equal (`a1 < b1 OR (a1 = b1 AND ...)`),
//! and `IN` is the OR of `=` over the list. Three-valued logic then gives
//! MySQL's NULL results. Rows of different widths are ERROR 1241.

use sqlparser::ast::{BinaryOperator, Expr, InTarget};

use crate::error::{ErrorKind, SqlError};

fn width(e: &Expr) -> usize {
    match e {
        Expr::Tuple(items) => items.len(),
        Expr::Nested(x) => width(x),
        _ => 1,
    }
}

fn items(e: &Expr) -> Vec<Expr> {
    match e {
        Expr::Tuple(items) => items.clone(),
        Expr::Nested(x) => items(x),
        other => vec![other.clone()],
    }
}

fn operand_columns(n: usize) -> SqlError {
    SqlError::of(
        ErrorKind::OperandColumns,
        format!("Operand should contain {n} column(s)"),
    )
}

fn bin(left: Expr, op: BinaryOperator, right: Expr) -> Expr {
    Expr::BinaryOp {
        left: Box::new(left),
        op,
        right: Box::new(right),
    }
}

fn all(mut parts: Vec<Expr>, op: BinaryOperator) -> Expr {
    let first = parts.remove(0);
    parts
        .into_iter()
        .fold(first, |acc, p| bin(acc, op.clone(), p))
}

/// `left op right` over rows, as a scalar expression.
fn compare(left: &Expr, op: &BinaryOperator, right: &Expr) -> Result<Expr, SqlError> {
    let (l, r) = (items(left), items(right));
    if l.len() != r.len() {
        return Err(operand_columns(l.len()));
    }
    let pairs = |op: BinaryOperator| -> Vec<Expr> {
        l.iter()
            .zip(&r)
            .map(|(a, b)| Expr::Nested(Box::new(bin(a.clone(), op.clone(), b.clone()))))
            .collect()
    };
    Ok(match op {
        BinaryOperator::Eq => Expr::Nested(Box::new(all(
            pairs(BinaryOperator::Eq),
            BinaryOperator::And,
        ))),
        BinaryOperator::Spaceship => Expr::Nested(Box::new(all(
            pairs(BinaryOperator::Spaceship),
            BinaryOperator::And,
        ))),
        BinaryOperator::NotEq => Expr::Nested(Box::new(all(
            pairs(BinaryOperator::NotEq),
            BinaryOperator::Or,
        ))),
        BinaryOperator::Lt | BinaryOperator::LtEq | BinaryOperator::Gt | BinaryOperator::GtEq => {
            let strict = match op {
                BinaryOperator::Lt | BinaryOperator::LtEq => BinaryOperator::Lt,
                _ => BinaryOperator::Gt,
            };
            // From the last pair outwards: last uses `op` itself.
            let n = l.len();
            let mut acc = Expr::Nested(Box::new(bin(
                l[n - 1].clone(),
                op.clone(),
                r[n - 1].clone(),
            )));
            for i in (0..n - 1).rev() {
                let decided = bin(l[i].clone(), strict.clone(), r[i].clone());
                let tie = bin(l[i].clone(), BinaryOperator::Eq, r[i].clone());
                acc = Expr::Nested(Box::new(bin(
                    decided,
                    BinaryOperator::Or,
                    Expr::Nested(Box::new(bin(tie, BinaryOperator::And, acc))),
                )));
            }
            acc
        }
        _ => return Err(operand_columns(1)),
    })
}

/// The scalar form of `e` if it compares rows; `Ok(None)` for anything
/// else. A row where a scalar is expected (`1 = (1, 2)`) is ERROR 1241.
pub fn desugar(e: &Expr) -> Result<Option<Expr>, SqlError> {
    match e {
        Expr::BinaryOp { left, op, right } if width(left) > 1 || width(right) > 1 => {
            Ok(Some(compare(left, op, right)?))
        }
        Expr::In {
            expr,
            target: InTarget::List(list),
            negated,
            ..
        } if width(expr) > 1 || list.iter().any(|i| width(i) > 1) => {
            let w = width(expr);
            let mut alts = Vec::with_capacity(list.len());
            for item in list {
                if width(item) != w {
                    return Err(operand_columns(w));
                }
                alts.push(compare(expr, &BinaryOperator::Eq, item)?);
            }
            let any = Expr::Nested(Box::new(all(alts, BinaryOperator::Or)));
            Ok(Some(if *negated {
                Expr::UnaryOp {
                    op: sqlparser::ast::UnaryOperator::Not,
                    expr: Box::new(any),
                }
            } else {
                any
            }))
        }
        _ => Ok(None),
    }
}
