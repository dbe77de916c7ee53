//! Bit functions and operators: `& | ^ << >> ~` and `BIT_COUNT`, over
//! 64-bit unsigned integers as MySQL computes them (operands converted to
//! BIGINT UNSIGNED: negative integers wrap, reals and decimals round,
//! strings read as numbers; a shift of 64 or more is 0; NULL in, NULL out).

use sqlparser::ast::BinaryOperator;

use super::compare::to_f64;
use crate::error::SqlError;
use crate::value::Value;

/// The operand as MySQL's bit operators see it; `None` for NULL.
pub fn to_u64(v: &Value) -> Option<u64> {
    Some(match v {
        Value::Null => return None,
        Value::Int(i) => *i as u64,
        Value::UInt(u) => *u,
        Value::Text(s) if s.trim().parse::<i64>().is_ok() => s.trim().parse::<i64>().ok()? as u64,
        Value::Text(s) if s.trim().parse::<u64>().is_ok() => s.trim().parse::<u64>().ok()?,
        other => {
            let f = to_f64(other).round();
            if f < 0.0 {
                if f < i64::MIN as f64 {
                    i64::MIN as u64
                } else {
                    f as i64 as u64
                }
            } else {
                // `as` saturates at u64::MAX, as MySQL clamps.
                f as u64
            }
        }
    })
}

/// Whether `op` is one of the bit operators.
pub fn is_bit_op(op: &BinaryOperator) -> bool {
    matches!(
        op,
        BinaryOperator::BitwiseAnd
            | BinaryOperator::BitwiseOr
            | BinaryOperator::BitwiseXor
            | BinaryOperator::PGBitwiseShiftLeft
            | BinaryOperator::PGBitwiseShiftRight
    )
}

/// `a op b` for a bit operator.
pub fn binary(op: &BinaryOperator, a: &Value, b: &Value) -> Value {
    let (Some(x), Some(y)) = (to_u64(a), to_u64(b)) else {
        return Value::Null;
    };
    Value::UInt(match op {
        BinaryOperator::BitwiseAnd => x & y,
        BinaryOperator::BitwiseOr => x | y,
        BinaryOperator::BitwiseXor => x ^ y,
        BinaryOperator::PGBitwiseShiftLeft => x.checked_shl(shift(y)).unwrap_or(0),
        _ => x.checked_shr(shift(y)).unwrap_or(0),
    })
}

fn shift(y: u64) -> u32 {
    u32::try_from(y).unwrap_or(u32::MAX)
}

/// `~v`.
pub fn not(v: &Value) -> Value {
    to_u64(v).map_or(Value::Null, |x| Value::UInt(!x))
}

/// The bit functions by name.
pub fn call(name: &str, args: &[Value]) -> Result<Option<Value>, SqlError> {
    Ok(Some(match name {
        "bit_count" => {
            super::arity(name, args.len() == 1)?;
            to_u64(&args[0]).map_or(Value::Null, |x| Value::Int(i64::from(x.count_ones())))
        }
        _ => return Ok(None),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operands_wrap_round_and_shifts_past_63_are_zero() {
        let b = |op, a: Value, c: Value| binary(&op, &a, &c);
        assert_eq!(
            b(BinaryOperator::BitwiseAnd, Value::Int(5), Value::Int(3)),
            Value::UInt(1)
        );
        assert_eq!(
            b(BinaryOperator::BitwiseOr, Value::Int(-1), Value::Int(0)),
            Value::UInt(u64::MAX)
        );
        assert_eq!(
            b(
                BinaryOperator::BitwiseXor,
                Value::Double(1.5),
                Value::Int(3)
            ),
            Value::UInt(1)
        );
        assert_eq!(
            b(
                BinaryOperator::PGBitwiseShiftLeft,
                Value::Int(1),
                Value::Int(64)
            ),
            Value::UInt(0)
        );
        assert_eq!(
            b(
                BinaryOperator::PGBitwiseShiftRight,
                Value::Text("256".into()),
                Value::Int(2)
            ),
            Value::UInt(64)
        );
        assert_eq!(
            b(BinaryOperator::BitwiseAnd, Value::Null, Value::Int(3)),
            Value::Null
        );
        assert_eq!(not(&Value::Int(0)), Value::UInt(u64::MAX));
    }
}
