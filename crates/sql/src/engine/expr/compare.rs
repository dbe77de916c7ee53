//! Comparison and truth: how MySQL compares two values (numbers as
//! numbers, strings by `utf8mb4_general_ci`, byte strings by bytes), NULL
//! rules of `IN` and `<=>`, and the order of `ORDER BY`. JSON compares
//! by MySQL's JSON ordering (`crate::json::compare`).

use super::arith::to_dec;
use crate::error::SqlError;
use crate::value::Value;

/// The number a value means in arithmetic (strings: their numeric prefix).
pub fn to_f64(v: &Value) -> f64 {
    match v {
        Value::Int(i) => *i as f64,
        Value::UInt(u) => *u as f64,
        Value::Float(f) => f64::from(*f),
        Value::Double(d) => *d,
        Value::Null => 0.0,
        Value::Json(j) => match &**j {
            crate::json::Json::Bool(b) => f64::from(u8::from(*b)),
            crate::json::Json::String(s) => to_f64(&Value::Text(s.clone())),
            other => other.as_f64().unwrap_or(0.0),
        },
        other => {
            let s = other.to_string();
            let s = s.trim();
            s[..numeric_prefix(s)].parse::<f64>().unwrap_or(0.0)
        }
    }
}

/// The length of the longest numeric prefix of `s` (MySQL reads '12abc'
/// as 12): sign, digits, fraction, exponent. One pass, no backtracking.
pub fn numeric_prefix(s: &str) -> usize {
    let b = s.as_bytes();
    let mut i = 0;
    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
        i += 1;
    }
    let digits = |mut j: usize| {
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        j
    };
    let int_end = digits(i);
    let mut end = int_end;
    let mut frac_digits = 0;
    if end < b.len() && b[end] == b'.' {
        let f = digits(end + 1);
        frac_digits = f - end - 1;
        end = f;
    }
    if int_end == i && frac_digits == 0 {
        return 0;
    }
    if end < b.len() && (b[end] == b'e' || b[end] == b'E') {
        let mut j = end + 1;
        if j < b.len() && (b[j] == b'+' || b[j] == b'-') {
            j += 1;
        }
        let e = digits(j);
        if e > j {
            end = e;
        }
    }
    end
}

/// MySQL truthiness: NULL is unknown (None).
pub fn truth(v: &Value) -> Option<bool> {
    match v {
        Value::Null => None,
        Value::Int(i) => Some(*i != 0),
        Value::UInt(u) => Some(*u != 0),
        other => Some(to_f64(other) != 0.0),
    }
}

pub fn is_stringy(v: &Value) -> bool {
    matches!(
        v,
        Value::Text(_)
            | Value::Bytes(_)
            | Value::Date { .. }
            | Value::DateTime { .. }
            | Value::Time { .. }
    )
}

pub fn compare(a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    if a.is_null() || b.is_null() {
        return None;
    }
    if matches!(a, Value::Json(_)) || matches!(b, Value::Json(_)) {
        // A SQL value against JSON is compared as the JSON scalar it makes
        // (a string as a JSON string).
        use super::json::to_json;
        return Some(crate::json::compare(&to_json(a), &to_json(b)));
    }
    if is_stringy(a) && is_stringy(b) {
        // A binary string against any string compares bytes (MySQL).
        match (a, b) {
            (Value::Bytes(x), Value::Bytes(y)) => return Some(x.cmp(y)),
            (Value::Bytes(x), Value::Text(y)) => return Some(x.as_slice().cmp(y.as_bytes())),
            (Value::Text(x), Value::Bytes(y)) => return Some(x.as_bytes().cmp(y.as_slice())),
            _ => {}
        }
        // The default collation's order, as index keys and ORDER BY use it
        // (case folded, trailing spaces ignored: utf8mb4_general_ci).
        let ci = crate::engine::types::Collation::GeneralCi;
        return Some(match (a, b) {
            (Value::Text(x), Value::Text(y)) => ci.cmp_str(x, y),
            _ => ci.cmp_str(&a.to_string(), &b.to_string()),
        });
    }
    if let (Some(x), Some(y)) = (to_dec(a), to_dec(b)) {
        let scale = x.1.max(y.1);
        if let (Some(x), Some(y)) = (x.rescale(scale), y.rescale(scale)) {
            return Some(x.0.cmp(&y.0));
        }
    }
    to_f64(a).partial_cmp(&to_f64(b))
}

/// `CASE x WHEN v`: equality as MySQL's CASE compares (one comparison
/// type over the operand and the WHEN values: JSON against a string
/// compares as strings, so `CASE json WHEN 'null'` matches JSON null).
pub fn case_eq(base: &Value, when: &Value) -> bool {
    let as_text = |v: &Value| Value::Text(v.to_string());
    let o = match (base, when) {
        (Value::Json(_), Value::Text(_)) => compare(&as_text(base), when),
        (Value::Text(_), Value::Json(_)) => compare(base, &as_text(when)),
        _ => compare(base, when),
    };
    o == Some(std::cmp::Ordering::Equal)
}

pub fn bool_val(b: bool) -> Value {
    Value::Int(i64::from(b))
}

/// `v IN (items)` with MySQL's NULL rules.
pub fn in_list(
    v: &Value,
    items: impl Iterator<Item = Result<Value, SqlError>>,
    negated: bool,
) -> Result<Value, SqlError> {
    let mut items = items.peekable();
    if items.peek().is_none() {
        // Only a subquery can be empty: `x IN (empty)` is false, even for a
        // NULL x, and `NOT IN` true.
        return Ok(bool_val(negated));
    }
    if v.is_null() {
        return Ok(Value::Null);
    }
    let mut saw_null = false;
    for item in items {
        let item = item?;
        match compare(v, &item) {
            Some(std::cmp::Ordering::Equal) => return Ok(bool_val(!negated)),
            None => saw_null = true,
            _ => {}
        }
    }
    Ok(if saw_null {
        Value::Null
    } else {
        bool_val(negated)
    })
}

/// `v [NOT] BETWEEN lo AND hi`: `v >= lo AND v <= hi` in three-valued
/// logic, so `5 NOT BETWEEN NULL AND 3` is TRUE (5 > 3 settles it).
pub fn between(v: &Value, lo: &Value, hi: &Value, negated: bool) -> Value {
    let ge = compare(v, lo).map(|o| o.is_ge());
    let le = compare(v, hi).map(|o| o.is_le());
    let within = match (ge, le) {
        (Some(false), _) | (_, Some(false)) => Some(false),
        (Some(true), Some(true)) => Some(true),
        _ => None,
    };
    match within {
        None => Value::Null,
        Some(w) => bool_val(w != negated),
    }
}

/// `a <=> b`.
pub fn null_safe_eq(a: &Value, b: &Value) -> bool {
    match (a.is_null(), b.is_null()) {
        (true, true) => true,
        (false, false) => compare(a, b) == Some(std::cmp::Ordering::Equal),
        _ => false,
    }
}

/// Orders two values as `ORDER BY` does: NULL first, then [`compare`].
pub fn sort_cmp(a: &Value, b: &Value) -> std::cmp::Ordering {
    match (a.is_null(), b.is_null()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        _ => compare(a, b).unwrap_or(std::cmp::Ordering::Equal),
    }
}
