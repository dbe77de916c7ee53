//! String functions (`CONCAT`, `SUBSTRING`, `TRIM`, `LPAD`, `SHA2`, ...).

use super::compare::to_f64;
use crate::error::{er, SqlError};
use crate::value::Value;

pub fn substring(v: &Value, from: Option<&Value>, len: Option<&Value>) -> Value {
    if v.is_null() || from.is_some_and(Value::is_null) || len.is_some_and(Value::is_null) {
        return Value::Null;
    }
    let chars: Vec<char> = v.to_string().chars().collect();
    let n = chars.len() as i64;
    let pos = from.map_or(1, |f| to_f64(f) as i64);
    let start = match pos {
        0 => return Value::Text(String::new()),
        p if p > 0 => p - 1,
        p => n + p,
    };
    if start < 0 || start >= n {
        return Value::Text(String::new());
    }
    let len = len.map_or(n, |l| to_f64(l) as i64).max(0);
    let end = (start + len).min(n);
    Value::Text(chars[start as usize..end as usize].iter().collect())
}

pub fn trim(s: &str, what: &str, leading: bool, trailing: bool) -> String {
    let mut t = s;
    if what.is_empty() {
        return s.to_string();
    }
    if leading {
        while let Some(r) = t.strip_prefix(what) {
            t = r;
        }
    }
    if trailing {
        while let Some(r) = t.strip_suffix(what) {
            t = r;
        }
    }
    t.to_string()
}

pub fn locate(needle: &Value, hay: &Value) -> Value {
    if needle.is_null() || hay.is_null() {
        return Value::Null;
    }
    let (n, h) = (
        needle.to_string().to_lowercase(),
        hay.to_string().to_lowercase(),
    );
    match h.find(&n) {
        Some(b) => Value::Int(h[..b].chars().count() as i64 + 1),
        None => Value::Int(0),
    }
}

/// The functions of this family by name; `None`: not one of them.
pub fn call(name: &str, args: &[Value]) -> Result<Option<Value>, SqlError> {
    let n = args.len();
    let arity = |ok: bool| super::arity(name, ok);
    Ok(Some(match name {
        "concat" => {
            if args.iter().any(Value::is_null) {
                Value::Null
            } else if args.iter().any(|a| matches!(a, Value::Bytes(_))) {
                Value::Bytes(
                    args.iter()
                        .flat_map(|a| a.to_text().unwrap_or_default())
                        .collect(),
                )
            } else {
                Value::Text(args.iter().map(ToString::to_string).collect())
            }
        }
        "concat_ws" => {
            arity(n >= 1)?;
            if args[0].is_null() {
                Value::Null
            } else {
                let sep = args[0].to_string();
                Value::Text(
                    args[1..]
                        .iter()
                        .filter(|a| !a.is_null())
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(&sep),
                )
            }
        }
        "upper" | "ucase" => {
            arity(n == 1)?;
            if args[0].is_null() {
                Value::Null
            } else {
                Value::Text(args[0].to_string().to_uppercase())
            }
        }
        "lower" | "lcase" => {
            arity(n == 1)?;
            if args[0].is_null() {
                Value::Null
            } else {
                Value::Text(args[0].to_string().to_lowercase())
            }
        }
        "length" | "octet_length" => {
            arity(n == 1)?;
            args[0]
                .to_text()
                .map_or(Value::Null, |b| Value::Int(b.len() as i64))
        }
        "char_length" | "character_length" => {
            arity(n == 1)?;
            if args[0].is_null() {
                Value::Null
            } else {
                Value::Int(args[0].to_string().chars().count() as i64)
            }
        }
        "hex" => {
            arity(n == 1)?;
            match &args[0] {
                Value::Null => Value::Null,
                Value::Int(i) => Value::Text(format!("{:X}", *i as u64)),
                Value::UInt(u) => Value::Text(format!("{u:X}")),
                other => Value::Text(
                    other
                        .to_text()
                        .unwrap_or_default()
                        .iter()
                        .map(|b| format!("{b:02X}"))
                        .collect(),
                ),
            }
        }
        "substring" | "substr" | "mid" => {
            arity((2..=3).contains(&n))?;
            substring(&args[0], args.get(1), args.get(2))
        }
        "left" | "right" => {
            arity(n == 2)?;
            if args.iter().any(Value::is_null) {
                Value::Null
            } else {
                let chars: Vec<char> = args[0].to_string().chars().collect();
                let k = (to_f64(&args[1]).max(0.0) as usize).min(chars.len());
                Value::Text(if name == "left" {
                    chars[..k].iter().collect()
                } else {
                    chars[chars.len() - k..].iter().collect()
                })
            }
        }
        "trim" | "ltrim" | "rtrim" => {
            arity(n == 1)?;
            if args[0].is_null() {
                Value::Null
            } else {
                Value::Text(trim(
                    &args[0].to_string(),
                    " ",
                    name != "rtrim",
                    name != "ltrim",
                ))
            }
        }
        "replace" => {
            arity(n == 3)?;
            if args.iter().any(Value::is_null) {
                Value::Null
            } else {
                let from = args[1].to_string();
                let s = args[0].to_string();
                Value::Text(if from.is_empty() {
                    s
                } else {
                    s.replace(&from, &args[2].to_string())
                })
            }
        }
        "repeat" => {
            arity(n == 2)?;
            if args.iter().any(Value::is_null) {
                Value::Null
            } else {
                let k = (to_f64(&args[1]).max(0.0) as usize).min(1 << 20);
                Value::Text(args[0].to_string().repeat(k))
            }
        }
        "reverse" => {
            arity(n == 1)?;
            if args[0].is_null() {
                Value::Null
            } else {
                Value::Text(args[0].to_string().chars().rev().collect())
            }
        }
        "lpad" | "rpad" => {
            arity(n == 3)?;
            if args.iter().any(Value::is_null) {
                Value::Null
            } else {
                let s: Vec<char> = args[0].to_string().chars().collect();
                let len = to_f64(&args[1]).max(0.0) as usize;
                let pad: Vec<char> = args[2].to_string().chars().collect();
                if len <= s.len() {
                    Value::Text(s[..len].iter().collect())
                } else if pad.is_empty() {
                    Value::Null
                } else {
                    let fill: String = pad.iter().cycle().take(len - s.len()).collect();
                    let s: String = s.iter().collect();
                    Value::Text(if name == "lpad" { fill + &s } else { s + &fill })
                }
            }
        }
        "locate" | "instr" | "position" => {
            arity(n == 2)?;
            if name == "instr" {
                locate(&args[1], &args[0])
            } else {
                locate(&args[0], &args[1])
            }
        }
        "ascii" => {
            arity(n == 1)?;
            match &args[0] {
                Value::Null => Value::Null,
                v => Value::Int(
                    v.to_text()
                        .unwrap_or_default()
                        .first()
                        .copied()
                        .map_or(0, i64::from),
                ),
            }
        }
        "substring_index" => {
            arity(n == 3)?;
            if args.iter().any(Value::is_null) {
                return Ok(Some(Value::Null));
            }
            let (s, delim) = (args[0].to_string(), args[1].to_string());
            let count = to_f64(&args[2]) as i64;
            if delim.is_empty() || count == 0 {
                Value::Text(String::new())
            } else if count > 0 {
                let end = s
                    .match_indices(delim.as_str())
                    .nth(count as usize - 1)
                    .map_or(s.len(), |(i, _)| i);
                Value::Text(s[..end].to_string())
            } else {
                let start = s
                    .rmatch_indices(delim.as_str())
                    .nth(count.unsigned_abs() as usize - 1)
                    .map_or(0, |(i, _)| i + delim.len());
                Value::Text(s[start..].to_string())
            }
        }
        "md5" | "sha1" | "sha" | "sha2" => {
            if args.first().is_none_or(Value::is_null) {
                Value::Null
            } else {
                let data = args[0].to_text().unwrap_or_default();
                let alg = match name {
                    "sha2" if args.get(1).map(to_f64) == Some(512.0) => &ring::digest::SHA512,
                    "sha2" if args.get(1).map(to_f64) == Some(384.0) => &ring::digest::SHA384,
                    "sha2" => &ring::digest::SHA256,
                    "md5" => return Err(er::not_supported_yet("MD5() (use SHA2())")),
                    _ => &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
                };
                Value::Text(
                    ring::digest::digest(alg, &data)
                        .as_ref()
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect(),
                )
            }
        }
        _ => return Ok(None),
    }))
}

/// One element of a LIKE pattern.
#[derive(Clone, Copy, PartialEq)]
enum LikeToken {
    /// A character to match (case folded).
    Char(char),
    /// `_`: any one character.
    One,
    /// `%`: any run of characters.
    Any,
}

/// `text LIKE pattern ESCAPE escape` under the default case-insensitive
/// collation. `escape` (MySQL's default is `\\`) makes the next character
/// literal; an escape at the end of the pattern is itself. Linear in
/// practice: backtracking only to the last `%`.
pub fn like(text: &str, pattern: &str, escape: Option<char>) -> bool {
    let escape = escape.map(|e| e.to_lowercase().next().unwrap_or(e));
    let mut p = Vec::new();
    let mut chars = pattern.chars().flat_map(char::to_lowercase).peekable();
    while let Some(c) = chars.next() {
        p.push(match c {
            c if Some(c) == escape => match chars.next() {
                Some(n) => LikeToken::Char(n),
                None => LikeToken::Char(c),
            },
            '%' => LikeToken::Any,
            '_' => LikeToken::One,
            c => LikeToken::Char(c),
        });
    }
    let t: Vec<char> = text.chars().flat_map(char::to_lowercase).collect();
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        match p.get(pi) {
            Some(LikeToken::One) => {
                pi += 1;
                ti += 1;
            }
            Some(LikeToken::Char(c)) if *c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            Some(LikeToken::Any) => {
                star = Some(pi);
                mark = ti;
                pi += 1;
            }
            _ => match star {
                Some(s) => {
                    pi = s + 1;
                    mark += 1;
                    ti = mark;
                }
                None => return false,
            },
        }
    }
    while p.get(pi) == Some(&LikeToken::Any) {
        pi += 1;
    }
    pi == p.len()
}

/// The character of a LIKE `ESCAPE` clause: one character, or none for
/// `ESCAPE ''` (ERROR 1210 otherwise, as MySQL).
pub fn like_escape(v: &Value) -> Result<Option<char>, SqlError> {
    let s = v.to_string();
    let mut cs = s.chars();
    match (cs.next(), cs.next()) {
        (None, _) => Ok(None),
        (Some(c), None) => Ok(Some(c)),
        _ => Err(er::wrong_arguments("ESCAPE")),
    }
}
