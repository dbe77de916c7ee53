//! Arithmetic: number literals, exact decimals (`+ - * / DIV %` with
//! MySQL's scales), and the math functions (`ROUND`, `FLOOR`, `POW`, ...).

use sqlparser::ast::BinaryOperator;

use super::compare::{is_stringy, to_f64};
use crate::error::{ErrorKind, SqlError};
use crate::value::Value;

/// A number literal as MySQL types it.
pub fn number(s: &str) -> Value {
    if s.contains(['e', 'E']) {
        return s.parse().map(Value::Double).unwrap_or(Value::Null);
    }
    if s.contains('.') {
        return Value::Decimal(s.to_string());
    }
    if let Ok(i) = s.parse::<i64>() {
        return Value::Int(i);
    }
    if let Ok(u) = s.parse::<u64>() {
        return Value::UInt(u);
    }
    Value::Decimal(s.to_string())
}

/// An exact decimal: mantissa and scale.
#[derive(Clone, Copy, Debug)]
pub struct Dec(pub i128, pub u32);

impl Dec {
    pub fn parse(s: &str) -> Option<Dec> {
        let s = s.trim();
        let (neg, s) = match s.strip_prefix('-') {
            Some(r) => (true, r),
            None => (false, s.strip_prefix('+').unwrap_or(s)),
        };
        let (int, frac) = s.split_once('.').unwrap_or((s, ""));
        if int.is_empty() && frac.is_empty()
            || !int.bytes().chain(frac.bytes()).all(|c| c.is_ascii_digit())
            || int.len() + frac.len() > 36
        {
            return None;
        }
        let digits = format!("{int}{frac}");
        let m: i128 = if digits.is_empty() {
            0
        } else {
            digits.parse().ok()?
        };
        Some(Dec(if neg { -m } else { m }, frac.len() as u32))
    }

    pub fn rescale(self, scale: u32) -> Option<Dec> {
        let f = 10i128.checked_pow(scale.checked_sub(self.1)?)?;
        Some(Dec(self.0.checked_mul(f)?, scale))
    }

    pub fn to_value(self) -> Value {
        let neg = self.0 < 0;
        let digits = self.0.unsigned_abs().to_string();
        let scale = self.1 as usize;
        let s = if scale == 0 {
            digits
        } else {
            let padded = format!("{digits:0>width$}", width = scale + 1);
            let (i, f) = padded.split_at(padded.len() - scale);
            format!("{i}.{f}")
        };
        Value::Decimal(if neg { format!("-{s}") } else { s })
    }
}

pub fn to_dec(v: &Value) -> Option<Dec> {
    match v {
        Value::Int(i) => Some(Dec(i128::from(*i), 0)),
        Value::UInt(u) => Some(Dec(i128::from(*u), 0)),
        Value::Decimal(d) => Dec::parse(d),
        _ => None,
    }
}

pub fn out_of_range(what: &str) -> SqlError {
    SqlError::of(
        ErrorKind::DataOutOfRange,
        format!("BIGINT value is out of range in '{what}'"),
    )
}

pub fn arith(op: &BinaryOperator, a: &Value, b: &Value, text: &str) -> Result<Value, SqlError> {
    if a.is_null() || b.is_null() {
        return Ok(Value::Null);
    }
    let float = |v: &Value| matches!(v, Value::Float(_) | Value::Double(_)) || is_stringy(v);
    if !float(a) && !float(b) {
        if let (Value::Int(x), Value::Int(y)) = (a, b) {
            let r = match op {
                BinaryOperator::Plus => x.checked_add(*y),
                BinaryOperator::Minus => x.checked_sub(*y),
                BinaryOperator::Multiply => x.checked_mul(*y),
                BinaryOperator::MyIntegerDivide => {
                    if *y == 0 {
                        return Ok(Value::Null);
                    }
                    x.checked_div(*y)
                }
                BinaryOperator::Modulo => {
                    if *y == 0 {
                        return Ok(Value::Null);
                    }
                    x.checked_rem(*y)
                }
                _ => None,
            };
            if !matches!(op, BinaryOperator::Divide) {
                return r.map(Value::Int).ok_or_else(|| out_of_range(text));
            }
        }
        if let (Some(x), Some(y)) = (to_dec(a), to_dec(b)) {
            let scale = x.1.max(y.1);
            let (Some(xs), Some(ys)) = (x.rescale(scale), y.rescale(scale)) else {
                return Err(out_of_range(text));
            };
            let r = match op {
                BinaryOperator::Plus => xs.0.checked_add(ys.0).map(|m| Dec(m, scale)),
                BinaryOperator::Minus => xs.0.checked_sub(ys.0).map(|m| Dec(m, scale)),
                BinaryOperator::Multiply => x.0.checked_mul(y.0).map(|m| Dec(m, x.1 + y.1)),
                BinaryOperator::Divide => {
                    if y.0 == 0 {
                        return Ok(Value::Null);
                    }
                    // MySQL: the dividend's scale + div_precision_increment (4).
                    let out = x.1 + 4;
                    let num = 10i128
                        .checked_pow(out + y.1 - x.1)
                        .and_then(|f| x.0.checked_mul(f));
                    num.map(|n| {
                        let q = n / y.0;
                        let r = n % y.0;
                        let sign = if (n < 0) != (y.0 < 0) { -1 } else { 1 };
                        let q = if r.abs() * 2 >= y.0.abs() {
                            q + sign
                        } else {
                            q
                        };
                        Dec(q, out)
                    })
                }
                BinaryOperator::Modulo => {
                    if ys.0 == 0 {
                        return Ok(Value::Null);
                    }
                    Some(Dec(xs.0 % ys.0, scale))
                }
                BinaryOperator::MyIntegerDivide => {
                    if ys.0 == 0 {
                        return Ok(Value::Null);
                    }
                    return i64::try_from(xs.0 / ys.0)
                        .map(Value::Int)
                        .map_err(|_| out_of_range(text));
                }
                _ => None,
            };
            return r.map(Dec::to_value).ok_or_else(|| out_of_range(text));
        }
    }
    let (x, y) = (to_f64(a), to_f64(b));
    Ok(match op {
        BinaryOperator::Plus => Value::Double(x + y),
        BinaryOperator::Minus => Value::Double(x - y),
        BinaryOperator::Multiply => Value::Double(x * y),
        BinaryOperator::Divide if y == 0.0 => Value::Null,
        BinaryOperator::Divide => Value::Double(x / y),
        BinaryOperator::Modulo if y == 0.0 => Value::Null,
        BinaryOperator::Modulo => Value::Double(x % y),
        BinaryOperator::MyIntegerDivide if y == 0.0 => Value::Null,
        BinaryOperator::MyIntegerDivide => Value::Int((x / y).trunc() as i64),
        _ => Value::Null,
    })
}

pub fn round_fn(how: &str, v: &Value, digits: Option<&Value>) -> Result<Value, SqlError> {
    if v.is_null() || digits.is_some_and(Value::is_null) {
        return Ok(Value::Null);
    }
    let d = digits.map_or(0, |d| to_f64(d) as i32).clamp(-30, 30);
    Ok(match v {
        Value::Int(_) | Value::UInt(_) if d >= 0 => v.clone(),
        Value::Decimal(text) if how == "round" && d >= 0 => Value::Decimal(
            crate::engine::types::decimal_round(text, d as u8).unwrap_or_else(|| text.clone()),
        ),
        other => {
            let f = to_f64(other);
            let m = 10f64.powi(d);
            let r = match how {
                "ceil" => (f * m).ceil() / m,
                "floor" => (f * m).floor() / m,
                "truncate" => (f * m).trunc() / m,
                _ => (f * m).round() / m,
            };
            match other {
                Value::Int(_) | Value::UInt(_) | Value::Decimal(_) if d <= 0 => {
                    Value::Int(r as i64)
                }
                Value::Decimal(_) => Value::Decimal(format!("{:.*}", d as usize, r)),
                _ if how != "round" && how != "truncate" => Value::Int(r as i64),
                _ => Value::Double(r),
            }
        }
    })
}

/// The functions of this family by name; `None`: not one of them.
pub fn call(name: &str, args: &[Value]) -> Result<Option<Value>, SqlError> {
    let n = args.len();
    let arity = |ok: bool| super::arity(name, ok);
    Ok(Some(match name {
        "abs" => {
            arity(n == 1)?;
            match &args[0] {
                Value::Null => Value::Null,
                Value::Int(i) => i
                    .checked_abs()
                    .map(Value::Int)
                    .ok_or_else(|| out_of_range("abs"))?,
                Value::UInt(u) => Value::UInt(*u),
                Value::Decimal(d) => Value::Decimal(d.trim_start_matches('-').to_string()),
                other => Value::Double(to_f64(other).abs()),
            }
        }
        "round" | "truncate" => {
            arity(if name == "round" {
                (1..=2).contains(&n)
            } else {
                n == 2
            })?;
            round_fn(name, &args[0], args.get(1))?
        }
        "floor" | "ceil" | "ceiling" => {
            arity(n == 1)?;
            round_fn(
                if name == "floor" { "floor" } else { "ceil" },
                &args[0],
                None,
            )?
        }
        "mod" => {
            arity(n == 2)?;
            arith(&BinaryOperator::Modulo, &args[0], &args[1], "mod")?
        }
        "sign" => {
            arity(n == 1)?;
            if args[0].is_null() {
                Value::Null
            } else {
                let f = to_f64(&args[0]);
                Value::Int(if f > 0.0 {
                    1
                } else if f < 0.0 {
                    -1
                } else {
                    0
                })
            }
        }
        "pow" | "power" | "sqrt" | "exp" | "ln" | "log" | "log2" | "log10" => {
            arity(if name == "pow" || name == "power" {
                n == 2
            } else {
                (1..=2).contains(&n)
            })?;
            if args.iter().any(Value::is_null) {
                Value::Null
            } else {
                let a = to_f64(&args[0]);
                let r = match name {
                    "pow" | "power" => a.powf(to_f64(&args[1])),
                    "sqrt" => a.sqrt(),
                    "exp" => a.exp(),
                    "ln" => a.ln(),
                    "log" if n == 2 => to_f64(&args[1]).ln() / a.ln(),
                    "log" => a.ln(),
                    "log2" => a.log2(),
                    _ => a.log10(),
                };
                if r.is_finite() {
                    Value::Double(r)
                } else {
                    Value::Null
                }
            }
        }
        "rand" => {
            let mut b = [0u8; 8];
            let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
            Value::Double((u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64)
        }
        _ => return Ok(None),
    }))
}

/// `-v`: integers stay integers (ERROR 1690 past the range), decimals stay
/// exact, anything else is a double.
pub fn negate(v: Value, text: &str) -> Result<Value, SqlError> {
    Ok(match v {
        Value::Null => Value::Null,
        Value::Int(i) => i
            .checked_neg()
            .map(Value::Int)
            .ok_or_else(|| out_of_range(text))?,
        Value::UInt(u) if u <= i64::MAX as u64 + 1 => Value::Int((u as i128).wrapping_neg() as i64),
        Value::Decimal(d) => match Dec::parse(&d) {
            Some(x) => Dec(-x.0, x.1).to_value(),
            None => Value::Double(-to_f64(&Value::Decimal(d))),
        },
        other => Value::Double(-to_f64(&other)),
    })
}
