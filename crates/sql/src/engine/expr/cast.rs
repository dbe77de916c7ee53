//! `CAST(v AS type)` for the types that need no table.

use super::compare::to_f64;
use crate::error::{er, SqlError};
use crate::value::Value;

/// `CAST(v AS type)` for the types that need no table: strings, integers,
/// decimals, floats, binary, JSON.
pub fn cast(v: Value, ty: &str) -> Result<Value, SqlError> {
    if v.is_null() {
        return Ok(Value::Null);
    }
    let t = ty.to_ascii_uppercase();
    let word = t.split(['(', ' ']).next().unwrap_or("");
    Ok(match word {
        "CHAR" | "VARCHAR" | "TEXT" | "NCHAR" | "CHARACTER" => Value::Text(v.to_string()),
        "BINARY" | "VARBINARY" | "BLOB" => Value::Bytes(v.to_text().unwrap_or_default()),
        "SIGNED" | "INT" | "INTEGER" | "BIGINT" => match v {
            Value::Int(i) => Value::Int(i),
            Value::UInt(u) => Value::Int(u as i64),
            // MySQL rounds numbers (CAST(3.7 AS SIGNED) is 4) but reads a
            // string's integer prefix (CAST('3.7' AS SIGNED) is 3).
            Value::Decimal(_) | Value::Double(_) => Value::Int(to_f64(&v).round() as i64),
            other => Value::Int(to_f64(&other).trunc() as i64),
        },
        "DATE" => match crate::engine::types::to_datetime(&v) {
            Some(Value::DateTime {
                year, month, day, ..
            }) => Value::Date { year, month, day },
            _ => Value::Null,
        },
        "DATETIME" => crate::engine::types::to_datetime(&v).unwrap_or(Value::Null),
        "UNSIGNED" => match v {
            Value::UInt(u) => Value::UInt(u),
            Value::Int(i) => Value::UInt(i as u64),
            other => Value::UInt(to_f64(&other).trunc().max(0.0) as u64),
        },
        "DECIMAL" | "NUMERIC" | "DEC" => decimal(&v, &t),
        "DOUBLE" | "FLOAT" | "REAL" => Value::Double(to_f64(&v)),
        "JSON" => super::json::cast(&v)?,
        _ => return Err(er::not_supported_yet(&format!("CAST to {ty}"))),
    })
}

/// `CAST(v AS DECIMAL(p, s))` (`DECIMAL` is `DECIMAL(10, 0)`): rounded
/// half away from zero to `s` digits; a value beyond the precision is
/// clipped to the largest that fits, as MySQL does (with a warning there).
fn decimal(v: &Value, ty: &str) -> Value {
    let nums: Vec<u32> = ty
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    let precision = nums.first().copied().unwrap_or(10).clamp(1, 65);
    let scale = nums.get(1).copied().unwrap_or(0).min(30).min(precision) as u8;
    let text = match v {
        Value::Int(_) | Value::UInt(_) | Value::Decimal(_) => v.to_string(),
        Value::Text(s) => {
            let s = s.trim();
            s[..super::compare::numeric_prefix(s)].to_string()
        }
        other => format!("{}", to_f64(other)),
    };
    let digits = crate::engine::types::decimal_round(&text, scale)
        .or_else(|| crate::engine::types::decimal_round(&format!("{}", to_f64(v)), scale))
        .unwrap_or_else(|| "0".into());
    let int_digits = digits
        .trim_start_matches('-')
        .split('.')
        .next()
        .unwrap_or("")
        .trim_start_matches('0')
        .len();
    if int_digits > (precision - u32::from(scale)) as usize {
        let nines = |n: usize| "9".repeat(n);
        let mut max = nines((precision - u32::from(scale)) as usize);
        if max.is_empty() {
            max.push('0');
        }
        if scale > 0 {
            max = format!("{max}.{}", nines(scale.into()));
        }
        let sign = if digits.starts_with('-') { "-" } else { "" };
        return Value::Decimal(format!("{sign}{max}"));
    }
    Value::Decimal(digits)
}

/// `v COLLATE name`: under a binary collation (`*_bin`, `binary`) a string
/// compares and sorts by its bytes, so it becomes a byte string; under
/// the case-insensitive ones it is unchanged; any other name is ERROR
/// 1273.
pub fn collate(v: Value, name: &str) -> Result<Value, SqlError> {
    use crate::engine::types::Collation;
    let name = name.trim_matches(|c| c == '`' || c == '\'' || c == '"');
    match Collation::from_name(name) {
        Some(Collation::Bin) => Ok(match v {
            Value::Text(s) => Value::Bytes(s.into_bytes()),
            other => other,
        }),
        Some(Collation::GeneralCi) => Ok(v),
        None => Err(SqlError::of(
            crate::error::ErrorKind::UnknownCollation,
            format!("Unknown collation: '{name}'"),
        )),
    }
}
