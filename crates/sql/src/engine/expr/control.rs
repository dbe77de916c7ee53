//! Control-flow functions (`IF`, `IFNULL`, `COALESCE`, `NULLIF`,
//! `GREATEST`, `LEAST`, `ISNULL`).

use super::compare::{bool_val, compare, truth};
use crate::error::SqlError;
use crate::value::Value;

/// The functions of this family by name; `None`: not one of them.
pub fn call(name: &str, args: &[Value]) -> Result<Option<Value>, SqlError> {
    let n = args.len();
    let arity = |ok: bool| super::arity(name, ok);
    Ok(Some(match name {
        "ifnull" => {
            arity(n == 2)?;
            if args[0].is_null() {
                args[1].clone()
            } else {
                args[0].clone()
            }
        }
        "coalesce" => {
            arity(n >= 1)?;
            args.iter()
                .find(|a| !a.is_null())
                .cloned()
                .unwrap_or(Value::Null)
        }
        "if" => {
            arity(n == 3)?;
            if truth(&args[0]) == Some(true) {
                args[1].clone()
            } else {
                args[2].clone()
            }
        }
        "greatest" | "least" => {
            arity(n >= 2)?;
            if args.iter().any(Value::is_null) {
                Value::Null
            } else {
                let mut best = args[0].clone();
                for a in &args[1..] {
                    let o = compare(a, &best);
                    if (name == "greatest" && o == Some(std::cmp::Ordering::Greater))
                        || (name == "least" && o == Some(std::cmp::Ordering::Less))
                    {
                        best = a.clone();
                    }
                }
                best
            }
        }
        "nullif" => {
            arity(n == 2)?;
            if compare(&args[0], &args[1]) == Some(std::cmp::Ordering::Equal) {
                Value::Null
            } else {
                args[0].clone()
            }
        }
        "isnull" => {
            arity(n == 1)?;
            bool_val(args[0].is_null())
        }
        _ => return Ok(None),
    }))
}
