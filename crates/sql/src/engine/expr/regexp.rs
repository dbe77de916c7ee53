//! Regular expressions: `REGEXP` / `RLIKE`, `REGEXP_LIKE`,
//! `REGEXP_REPLACE`, `REGEXP_SUBSTR` and `REGEXP_INSTR`, on the `regex`
//! crate. MySQL 8.0 uses ICU; the syntax both share (classes, anchors,
//! repetition, groups, `\d`, `\w`, POSIX `[[:alpha:]]`) behaves the same.
//! Differences, all refused with ERROR 3685 rather than answered
//! differently: back references and look-around (not in `regex`). Matching
//! is case-insensitive unless a byte string is involved or the match type
//! says `c`, as under MySQL's default collation. Positions count
//! characters, from 1.

use std::cell::RefCell;
use std::collections::HashMap;

use regex::{Regex, RegexBuilder};

use super::compare::to_f64;
use crate::error::{ErrorKind, SqlError};
use crate::value::Value;

/// Compiled patterns kept per thread (a pattern in a WHERE clause is
/// compiled once, not per row); at most this many.
const CACHE: usize = 64;
/// A compiled pattern's size limit: bounded memory for any pattern.
const SIZE_LIMIT: usize = 8 << 20;

thread_local! {
    static COMPILED: RefCell<HashMap<(String, Flags), Regex>> = RefCell::new(HashMap::new());
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
struct Flags {
    case_insensitive: bool,
    multi_line: bool,
    dot_all: bool,
}

fn flags(binary: bool, match_type: Option<&Value>) -> Result<Flags, SqlError> {
    let mut f = Flags {
        case_insensitive: !binary,
        multi_line: false,
        dot_all: false,
    };
    if let Some(m) = match_type.filter(|m| !m.is_null()) {
        for c in m.to_string().chars() {
            match c {
                'c' => f.case_insensitive = false,
                'i' => f.case_insensitive = !binary,
                'm' => f.multi_line = true,
                'n' => f.dot_all = true,
                'u' => {}
                _ => {
                    return Err(SqlError::of(
                        ErrorKind::RegexpInvalidFlag,
                        "Invalid match mode flag in regular expression.".into(),
                    ))
                }
            }
        }
    }
    Ok(f)
}

fn compile(pattern: &str, f: Flags) -> Result<Regex, SqlError> {
    let key = (pattern.to_string(), f);
    if let Some(r) = COMPILED.with(|c| c.borrow().get(&key).cloned()) {
        return Ok(r);
    }
    let r = RegexBuilder::new(pattern)
        .case_insensitive(f.case_insensitive)
        .multi_line(f.multi_line)
        .dot_matches_new_line(f.dot_all)
        .size_limit(SIZE_LIMIT)
        .build()
        .map_err(|e| {
            SqlError::of(
                ErrorKind::RegexpIllegalArgument,
                format!(
                    "Illegal argument to a regular expression: {}",
                    e.to_string().lines().last().unwrap_or_default().trim()
                ),
            )
        })?;
    COMPILED.with(|c| {
        let mut c = c.borrow_mut();
        if c.len() >= CACHE {
            c.clear();
        }
        c.insert(key, r.clone());
    });
    Ok(r)
}

fn is_binary(v: &Value) -> bool {
    matches!(v, Value::Bytes(_))
}

/// A 1-based position or occurrence argument (ERROR 3685 below 1).
fn positive(v: Option<&Value>, what: &str) -> Result<Option<usize>, SqlError> {
    match v {
        None => Ok(Some(1)),
        Some(Value::Null) => Ok(None),
        Some(x) => {
            let n = to_f64(x).round();
            if n < 1.0 && what == "position" {
                return Err(SqlError::of(
                    ErrorKind::RegexpIllegalArgument,
                    "Index out of bounds in regular expression search.".into(),
                ));
            }
            Ok(Some(n.max(0.0) as usize))
        }
    }
}

/// The byte offset of character `pos` (1-based) in `s`; `None` past the
/// end + 1.
fn char_offset(s: &str, pos: usize) -> Option<usize> {
    if pos == 0 {
        return None;
    }
    let mut it = s
        .char_indices()
        .map(|(i, _)| i)
        .chain(std::iter::once(s.len()));
    it.nth(pos - 1)
}

fn char_pos(s: &str, byte: usize) -> usize {
    s[..byte].chars().count() + 1
}

/// The regular-expression functions by name.
pub fn call(name: &str, args: &[Value]) -> Result<Option<Value>, SqlError> {
    let n = args.len();
    let arity = |ok: bool| super::arity(name, ok);
    let (subject, pattern) = match name {
        "regexp_like" | "regexp_replace" | "regexp_substr" | "regexp_instr" => {
            arity(n >= 2)?;
            (&args[0], &args[1])
        }
        _ => return Ok(None),
    };
    let max = match name {
        "regexp_like" => 3,
        "regexp_replace" => 6,
        "regexp_substr" => 5,
        _ => 6,
    };
    arity(n <= max)?;
    if subject.is_null() || pattern.is_null() {
        return Ok(Some(Value::Null));
    }
    let binary = is_binary(subject) || is_binary(pattern);
    let text = subject.to_string();
    let pat = pattern.to_string();
    let match_type = |i: usize| args.get(i);
    Ok(Some(match name {
        "regexp_like" => {
            let re = compile(&pat, flags(binary, match_type(2))?)?;
            Value::Int(i64::from(re.is_match(&text)))
        }
        "regexp_replace" => {
            arity(n >= 3)?;
            if args[2].is_null() {
                return Ok(Some(Value::Null));
            }
            let repl = args[2].to_string();
            let (Some(pos), Some(occ)) = (
                positive(args.get(3), "position")?,
                match args.get(4) {
                    None => Some(0),
                    Some(v) => positive(Some(v), "occurrence")?,
                },
            ) else {
                return Ok(Some(Value::Null));
            };
            let re = compile(&pat, flags(binary, match_type(5))?)?;
            let Some(start) = char_offset(&text, pos) else {
                return Err(out_of_bounds());
            };
            let (head, tail) = text.split_at(start);
            let replaced = if occ == 0 {
                re.replace_all(tail, repl.as_str()).into_owned()
            } else {
                match re.captures_iter(tail).nth(occ - 1) {
                    Some(c) => {
                        let m = c.get(0).expect("group 0");
                        let mut out = String::with_capacity(tail.len());
                        out.push_str(&tail[..m.start()]);
                        c.expand(&repl, &mut out);
                        out.push_str(&tail[m.end()..]);
                        out
                    }
                    None => tail.to_string(),
                }
            };
            Value::Text(format!("{head}{replaced}"))
        }
        "regexp_substr" | "regexp_instr" => {
            let (Some(pos), Some(occ)) = (
                positive(args.get(2), "position")?,
                positive(args.get(3), "occurrence")?,
            ) else {
                return Ok(Some(Value::Null));
            };
            let occ = occ.max(1);
            let (ret_end, mt) = if name == "regexp_instr" {
                let r = match args.get(4) {
                    None => false,
                    Some(Value::Null) => return Ok(Some(Value::Null)),
                    Some(v) => match to_f64(v) as i64 {
                        0 => false,
                        1 => true,
                        _ => return Err(SqlError::of(
                            ErrorKind::RegexpIllegalArgument,
                            "Incorrect arguments to regexp_instr: return_option must be 1 or 0."
                                .into(),
                        )),
                    },
                };
                (r, match_type(5))
            } else {
                (false, match_type(4))
            };
            let re = compile(&pat, flags(binary, mt)?)?;
            let Some(start) = char_offset(&text, pos) else {
                return Err(out_of_bounds());
            };
            let found = re.find_iter(&text[start..]).nth(occ - 1);
            match (name, found) {
                ("regexp_substr", Some(m)) => {
                    Value::Text(text[start + m.start()..start + m.end()].to_string())
                }
                ("regexp_substr", None) => Value::Null,
                (_, Some(m)) => Value::Int(char_pos(
                    &text,
                    start + if ret_end { m.end() } else { m.start() },
                ) as i64),
                (_, None) => Value::Int(0),
            }
        }
        _ => unreachable!("matched above"),
    }))
}

fn out_of_bounds() -> SqlError {
    SqlError::of(
        ErrorKind::RegexpIllegalArgument,
        "Index out of bounds in regular expression search.".into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Value {
        Value::Text(s.into())
    }

    fn c(name: &str, args: &[Value]) -> Value {
        call(name, args).unwrap().unwrap()
    }

    #[test]
    fn matching_is_case_insensitive_unless_asked_or_binary() {
        assert_eq!(c("regexp_like", &[t("ABC"), t("b")]), Value::Int(1));
        assert_eq!(c("regexp_like", &[t("ABC"), t("b"), t("c")]), Value::Int(0));
        assert_eq!(
            c("regexp_like", &[Value::Bytes(b"ABC".to_vec()), t("b")]),
            Value::Int(0)
        );
        assert_eq!(c("regexp_like", &[Value::Null, t("b")]), Value::Null);
        assert_eq!(
            call("regexp_like", &[t("a"), t("(")]).unwrap_err().code,
            3685
        );
        assert_eq!(
            call("regexp_like", &[t("a"), t("a"), t("z")])
                .unwrap_err()
                .code,
            3900
        );
    }

    #[test]
    fn replace_substr_and_instr_count_characters_from_one() {
        assert_eq!(
            c("regexp_replace", &[t("a1b2"), t("[0-9]"), t("#")]),
            t("a#b#")
        );
        assert_eq!(
            c(
                "regexp_replace",
                &[
                    t("a1b2c3"),
                    t("[0-9]"),
                    t("#"),
                    Value::Int(1),
                    Value::Int(2)
                ]
            ),
            t("a1b#c3")
        );
        assert_eq!(
            c("regexp_replace", &[t("abc"), t("(b)"), t("[$1]")]),
            t("a[b]c")
        );
        assert_eq!(
            c(
                "regexp_substr",
                &[t("abc123def45"), t("[0-9]+"), Value::Int(1), Value::Int(2)]
            ),
            t("45")
        );
        assert_eq!(c("regexp_substr", &[t("abc"), t("[0-9]")]), Value::Null);
        assert_eq!(c("regexp_instr", &[t("héllo1"), t("[0-9]")]), Value::Int(6));
        assert_eq!(
            c("regexp_instr", &[t("dog cat dog"), t("dog"), Value::Int(2)]),
            Value::Int(9)
        );
        assert_eq!(
            c(
                "regexp_instr",
                &[
                    t("dog cat"),
                    t("cat"),
                    Value::Int(1),
                    Value::Int(1),
                    Value::Int(1)
                ]
            ),
            Value::Int(8)
        );
    }
}
