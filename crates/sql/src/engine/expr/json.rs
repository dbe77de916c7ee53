//! The JSON functions and operators (`JSON_EXTRACT`, `->`, `->>`,
//! `JSON_SET`, `MEMBER OF`, ...) over SQL values, with MySQL 8.0's
//! argument rules and errors. The document model is [`crate::json`].
//!
//! Arguments that are documents (`json_doc`) must be JSON or a string
//! that parses (3141 if not, 3146 for other types); arguments that are
//! values (`JSON_ARRAY(1, 'a')`, `JSON_SET(.., path, val)`) become JSON
//! scalars: a string stays a string, it is not parsed.
//!
//! Differences from MySQL, as TiDB has them (its binary JSON has no such
//! types): a DECIMAL becomes a JSON double, and dates and times become
//! JSON strings.

use sqlparser::ast::{
    BinaryOperator, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArgumentList,
    FunctionArguments, Ident, ObjectName,
};

use super::arity;
use crate::error::{ErrorKind, SqlError};
use crate::json::{self, key_leg, Json, Path};
use crate::value::Value;

/// `a -> p`, `a ->> p` and `v MEMBER OF (a)` as the function calls they
/// mean (`JSON_EXTRACT`, `JSON_UNQUOTE(JSON_EXTRACT(..))`, and an
/// internal `member of` that no user can name).
pub fn desugar(e: &Expr) -> Option<Expr> {
    match e {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::Arrow,
            right,
        } => Some(call_expr(
            "json_extract",
            vec![(**left).clone(), (**right).clone()],
        )),
        Expr::BinaryOp {
            left,
            op: BinaryOperator::LongArrow,
            right,
        } => Some(call_expr(
            "json_unquote",
            vec![call_expr(
                "json_extract",
                vec![(**left).clone(), (**right).clone()],
            )],
        )),
        Expr::MemberOf(m) => Some(call_expr(
            MEMBER_OF,
            vec![(*m.value).clone(), (*m.array).clone()],
        )),
        _ => None,
    }
}

/// The internal name `MEMBER OF` is called by (a space: no user can call
/// it as a function).
const MEMBER_OF: &str = "member of";

fn call_expr(name: &str, args: Vec<Expr>) -> Expr {
    Expr::Function(Function {
        name: ObjectName::from(vec![Ident::new(name)]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args: args
                .into_iter()
                .map(|a| FunctionArg::Unnamed(FunctionArgExpr::Expr(a)))
                .collect(),
            clauses: Vec::new(),
        }),
        within_group: Vec::new(),
        filter: None,
        null_treatment: None,
        over: None,
    })
}

// ---- errors ---------------------------------------------------------------

fn text_in_param(arg: usize, func: &str, e: &json::ParseError) -> SqlError {
    SqlError::of(
        ErrorKind::InvalidJsonTextInParam,
        format!(
            "Invalid JSON text in argument {arg} to function {func}: \"{}\" at position {}.",
            e.reason, e.position
        ),
    )
}

/// ERROR 3140: `text` is not JSON, for column `col`.
pub fn invalid_text(reason: &str, position: usize, col: &str) -> SqlError {
    SqlError::of(
        ErrorKind::InvalidJsonText,
        format!(
            "Invalid JSON text: \"{reason}\" at position {position} in value for column '{col}'."
        ),
    )
}

fn bad_type(arg: usize, func: &str) -> SqlError {
    SqlError::of(
        ErrorKind::InvalidTypeForJson,
        format!(
            "Invalid data type for JSON data in argument {arg} to function {func}; a JSON string or JSON type is required."
        ),
    )
}

fn wildcard() -> SqlError {
    SqlError::of(
        ErrorKind::InvalidJsonPathWildcard,
        "In this situation, path expressions may not contain the * and ** tokens or an array range."
            .into(),
    )
}

fn one_or_all(func: &str) -> SqlError {
    SqlError::of(
        ErrorKind::JsonBadOneOrAllArg,
        format!("The oneOrAll argument to {func} may take these values: 'one' or 'all'."),
    )
}

/// A `one_or_all` argument: `Some(true)` for 'all', `None` for NULL.
fn all_arg(v: &Value, func: &str) -> Result<Option<bool>, SqlError> {
    match v {
        Value::Null => Ok(None),
        m => match m.to_string().to_ascii_lowercase().as_str() {
            "one" => Ok(Some(false)),
            "all" => Ok(Some(true)),
            _ => Err(one_or_all(func)),
        },
    }
}

/// ERROR 3158.
pub fn null_key() -> SqlError {
    SqlError::of(
        ErrorKind::JsonDocumentNullKey,
        "JSON documents may not contain NULL member names.".into(),
    )
}

// ---- conversions ----------------------------------------------------------

/// A SQL value as a JSON value (a string stays a string).
pub fn to_json(v: &Value) -> Json {
    match v {
        Value::Null => Json::Null,
        Value::Json(j) => (**j).clone(),
        Value::Int(i) => Json::Int(*i),
        Value::UInt(u) => i64::try_from(*u).map_or(Json::UInt(*u), Json::Int),
        Value::Float(f) => Json::Double(f64::from(*f)),
        Value::Double(d) => Json::Double(*d),
        Value::Decimal(d) => Json::Double(d.parse().unwrap_or(0.0)),
        Value::Text(s) => Json::String(s.clone()),
        Value::Bytes(b) => Json::String(String::from_utf8_lossy(b).into_owned()),
        Value::DateTime { micros, .. } if *micros == 0 => {
            // MySQL prints JSON datetimes with six fractional digits.
            Json::String(format!("{v}.000000"))
        }
        other => Json::String(other.to_string()),
    }
}

/// A SQL value as JSON the way `CAST(v AS JSON)` reads it: a string is
/// parsed (3141 if it is not JSON), anything else converted.
pub fn cast(v: &Value) -> Result<Value, SqlError> {
    Ok(match v {
        Value::Null => Value::Null,
        Value::Text(_) | Value::Bytes(_) => match doc(v, 1, "cast_as_json")? {
            Some(j) => Value::Json(Box::new(j)),
            None => Value::Null,
        },
        other => Value::Json(Box::new(to_json(other))),
    })
}

/// Parses a column value written to a JSON column (strings and JSON; 3140
/// for anything else or text that is not JSON).
pub fn for_column(v: Value, col: &str) -> Result<Value, SqlError> {
    match v {
        Value::Json(_) | Value::Null => Ok(v),
        Value::Text(s) => Json::parse(&s)
            .map(|j| Value::Json(Box::new(j)))
            .map_err(|e| invalid_text(e.reason, e.position, col)),
        Value::Bytes(b) => match String::from_utf8(b) {
            Ok(s) => for_column(Value::Text(s), col),
            Err(_) => Err(invalid_text("Invalid encoding in string.", 0, col)),
        },
        _ => Err(invalid_text("not a JSON text, may need CAST", 0, col)),
    }
}

/// Argument `arg` (1-based) of `func` as a document: `None` for NULL.
fn doc(v: &Value, arg: usize, func: &str) -> Result<Option<Json>, SqlError> {
    match v {
        Value::Null => Ok(None),
        Value::Json(j) => Ok(Some((**j).clone())),
        Value::Text(s) => Json::parse(s)
            .map(Some)
            .map_err(|e| text_in_param(arg, func, &e)),
        Value::Bytes(b) => match std::str::from_utf8(b) {
            Ok(s) => Json::parse(s)
                .map(Some)
                .map_err(|e| text_in_param(arg, func, &e)),
            Err(_) => Err(bad_type(arg, func)),
        },
        _ => Err(bad_type(arg, func)),
    }
}

/// A path argument: `None` for NULL, 3143 if it does not parse.
fn path(v: &Value) -> Result<Option<Path>, SqlError> {
    if v.is_null() {
        return Ok(None);
    }
    Path::parse(&v.to_string()).map(Some).map_err(|e| {
        SqlError::of(
            ErrorKind::InvalidJsonPath,
            format!(
                "Invalid JSON path expression. The error is around character position {}.",
                e.0
            ),
        )
    })
}

/// Paths from `args[from..]`; `None` when one is NULL.
fn paths(args: &[Value], from: usize) -> Result<Option<Vec<Path>>, SqlError> {
    let mut out = Vec::with_capacity(args.len().saturating_sub(from));
    for a in &args[from.min(args.len())..] {
        match path(a)? {
            Some(p) => out.push(p),
            None => return Ok(None),
        }
    }
    Ok(Some(out))
}

fn j(v: Json) -> Value {
    Value::Json(Box::new(v))
}

fn int(b: bool) -> Value {
    Value::Int(i64::from(b))
}

// ---- functions ------------------------------------------------------------

/// Calls the JSON function `name` (lower case); `Ok(None)` if it is not
/// one.
pub fn call(name: &str, args: &[Value]) -> Result<Option<Value>, SqlError> {
    let n = args.len();
    Ok(Some(match name {
        "json_extract" => {
            arity(name, n >= 2)?;
            let Some(d) = doc(&args[0], 1, name)? else {
                return Ok(Some(Value::Null));
            };
            let Some(ps) = paths(args, 1)? else {
                return Ok(Some(Value::Null));
            };
            extract(&d, &ps)
        }
        "json_unquote" => {
            arity(name, n == 1)?;
            match &args[0] {
                Value::Null => Value::Null,
                Value::Json(d) => Value::Text(d.unquoted()),
                other => {
                    let s = other.to_string();
                    if s.len() >= 2 && s.starts_with('"') && s.ends_with('"') {
                        match Json::parse(&s) {
                            Ok(Json::String(u)) => Value::Text(u),
                            Ok(_) => Value::Text(s),
                            Err(e) => return Err(text_in_param(1, name, &e)),
                        }
                    } else {
                        Value::Text(s)
                    }
                }
            }
        }
        "json_quote" => {
            arity(name, n == 1)?;
            match &args[0] {
                Value::Null => Value::Null,
                Value::Text(s) => {
                    let mut out = String::new();
                    json::quote_into(&mut out, s);
                    Value::Text(out)
                }
                _ => return Err(bad_type(1, name)),
            }
        }
        "json_array" => j(Json::Array(args.iter().map(to_json).collect())),
        "json_object" => {
            arity(name, n.is_multiple_of(2))?;
            let mut members = Vec::with_capacity(n / 2);
            for kv in args.chunks(2) {
                if kv[0].is_null() {
                    return Err(null_key());
                }
                members.push((kv[0].to_string(), to_json(&kv[1])));
            }
            j(Json::object(members))
        }
        "json_type" => {
            arity(name, n == 1)?;
            match doc(&args[0], 1, name)? {
                Some(d) => Value::Text(d.type_name().into()),
                None => Value::Null,
            }
        }
        "json_valid" => {
            arity(name, n == 1)?;
            match &args[0] {
                Value::Null => Value::Null,
                Value::Json(_) => Value::Int(1),
                Value::Text(s) => int(Json::parse(s).is_ok()),
                Value::Bytes(b) => {
                    int(std::str::from_utf8(b).is_ok_and(|s| Json::parse(s).is_ok()))
                }
                _ => Value::Int(0),
            }
        }
        "json_length" | "json_depth" | "json_keys" | "json_pretty" | "json_storage_size" => {
            arity(
                name,
                n == 1 || (n == 2 && matches!(name, "json_length" | "json_keys")),
            )?;
            let Some(d) = doc(&args[0], 1, name)? else {
                return Ok(Some(Value::Null));
            };
            let target = match args.get(1) {
                None => Some(d),
                Some(p) => match path(p)? {
                    None => return Ok(Some(Value::Null)),
                    Some(p) if p.is_wild() => return Err(wildcard()),
                    Some(p) => p.select(&d).first().map(|x| (*x).clone()),
                },
            };
            let Some(t) = target else {
                return Ok(Some(Value::Null));
            };
            match name {
                "json_length" => Value::Int(t.length() as i64),
                "json_depth" => Value::Int(t.depth() as i64),
                "json_pretty" => Value::Text(t.pretty()),
                "json_storage_size" => Value::Int(json::encode(&t).len() as i64),
                _ => match t {
                    Json::Object(o) => j(Json::Array(
                        o.into_iter().map(|(k, _)| Json::String(k)).collect(),
                    )),
                    _ => Value::Null,
                },
            }
        }
        "json_contains" => {
            arity(name, n == 2 || n == 3)?;
            let (Some(target), Some(cand)) = (doc(&args[0], 1, name)?, doc(&args[1], 2, name)?)
            else {
                return Ok(Some(Value::Null));
            };
            let target = match args.get(2) {
                None => Some(target),
                Some(p) => match path(p)? {
                    None => return Ok(Some(Value::Null)),
                    Some(p) if p.is_wild() => return Err(wildcard()),
                    Some(p) => p.select(&target).first().map(|x| (*x).clone()),
                },
            };
            match target {
                Some(t) => int(contains(&t, &cand)),
                None => Value::Null,
            }
        }
        "json_contains_path" => {
            arity(name, n >= 3)?;
            let Some(d) = doc(&args[0], 1, name)? else {
                return Ok(Some(Value::Null));
            };
            let Some(all) = all_arg(&args[1], name)? else {
                return Ok(Some(Value::Null));
            };
            let Some(ps) = paths(args, 2)? else {
                return Ok(Some(Value::Null));
            };
            let hit = |p: &Path| !p.select(&d).is_empty();
            int(if all {
                ps.iter().all(hit)
            } else {
                ps.iter().any(hit)
            })
        }
        "json_overlaps" => {
            arity(name, n == 2)?;
            match (doc(&args[0], 1, name)?, doc(&args[1], 2, name)?) {
                (Some(a), Some(b)) => int(overlaps(&a, &b)),
                _ => Value::Null,
            }
        }
        MEMBER_OF => {
            arity(name, n == 2)?;
            if args[0].is_null() {
                return Ok(Some(Value::Null));
            }
            let Some(arr) = doc(&args[1], 2, "member of")? else {
                return Ok(Some(Value::Null));
            };
            let v = to_json(&args[0]);
            let eq = |x: &Json| json::compare(x, &v).is_eq();
            int(match &arr {
                Json::Array(items) => items.iter().any(eq),
                other => eq(other),
            })
        }
        "json_set" | "json_insert" | "json_replace" => {
            arity(name, n >= 3 && n % 2 == 1)?;
            let Some(mut d) = doc(&args[0], 1, name)? else {
                return Ok(Some(Value::Null));
            };
            let (insert, replace) = match name {
                "json_set" => (true, true),
                "json_insert" => (true, false),
                _ => (false, true),
            };
            for pv in args[1..].chunks(2) {
                let Some(p) = path(&pv[0])? else {
                    return Ok(Some(Value::Null));
                };
                if p.is_wild() {
                    return Err(wildcard());
                }
                p.set(&mut d, to_json(&pv[1]), insert, replace);
            }
            j(d)
        }
        "json_array_append" | "json_array_insert" => {
            arity(name, n >= 3 && n % 2 == 1)?;
            let Some(mut d) = doc(&args[0], 1, name)? else {
                return Ok(Some(Value::Null));
            };
            for pv in args[1..].chunks(2) {
                let Some(p) = path(&pv[0])? else {
                    return Ok(Some(Value::Null));
                };
                if p.is_wild() {
                    return Err(wildcard());
                }
                if name == "json_array_append" {
                    p.append(&mut d, to_json(&pv[1]));
                } else if !p.array_insert(&mut d, to_json(&pv[1])) {
                    return Err(SqlError::of(
                        ErrorKind::InvalidJsonPathArrayCell,
                        "A path expression is not a path to a cell in an array.".into(),
                    ));
                }
            }
            j(d)
        }
        "json_remove" => {
            arity(name, n >= 2)?;
            let Some(mut d) = doc(&args[0], 1, name)? else {
                return Ok(Some(Value::Null));
            };
            let Some(ps) = paths(args, 1)? else {
                return Ok(Some(Value::Null));
            };
            for p in &ps {
                if p.is_wild() {
                    return Err(wildcard());
                }
                if p.legs.is_empty() {
                    return Err(SqlError::of(
                        ErrorKind::JsonVacuousPath,
                        "The path expression '$' is not allowed in this context.".into(),
                    ));
                }
                p.remove(&mut d);
            }
            j(d)
        }
        "json_merge_preserve" | "json_merge" | "json_merge_patch" => {
            arity(name, n >= 2)?;
            let mut docs = Vec::with_capacity(n);
            for (i, a) in args.iter().enumerate() {
                docs.push(doc(a, i + 1, name)?);
            }
            if name == "json_merge_patch" {
                // A NULL argument makes the result NULL unless a later
                // patch is not an object (it replaces everything).
                let mut acc: Option<Json> = None;
                for (i, d) in docs.into_iter().enumerate() {
                    acc = match (i, acc, d) {
                        (0, _, d) => d,
                        (_, _, Some(p)) if !matches!(p, Json::Object(_)) => Some(p),
                        (_, Some(t), Some(p)) => Some(merge_patch(t, p)),
                        _ => None,
                    };
                }
                acc.map_or(Value::Null, j)
            } else {
                let mut it = docs.into_iter();
                let mut acc = it.next().flatten();
                for d in it {
                    acc = match (acc, d) {
                        (Some(a), Some(b)) => Some(merge_preserve(a, b)),
                        _ => None,
                    };
                }
                acc.map_or(Value::Null, j)
            }
        }
        "json_search" => {
            arity(name, n >= 3)?;
            let Some(d) = doc(&args[0], 1, name)? else {
                return Ok(Some(Value::Null));
            };
            let Some(all) = all_arg(&args[1], name)? else {
                return Ok(Some(Value::Null));
            };
            if args[2].is_null() {
                return Ok(Some(Value::Null));
            }
            let pattern = args[2].to_string();
            let escape = match args.get(3) {
                None | Some(Value::Null) => Some('\\'),
                Some(e) => super::string::like_escape(e)?.or(Some('\\')),
            };
            let Some(ps) = paths(args, 4)? else {
                return Ok(Some(Value::Null));
            };
            let scopes: Vec<*const Json> = ps
                .iter()
                .flat_map(|p| p.select(&d))
                .map(|x| x as *const Json)
                .collect();
            let mut found = Vec::new();
            search(&d, "$".into(), scopes.is_empty(), &scopes, &mut |p, s| {
                if super::string::like(s, &pattern, escape) {
                    found.push(Json::String(p));
                    !all
                } else {
                    false
                }
            });
            match found.len() {
                0 => Value::Null,
                1 => j(found.remove(0)),
                _ => j(Json::Array(found)),
            }
        }
        _ => return Ok(None),
    }))
}

/// `JSON_EXTRACT`: one path without wildcards gives its value; otherwise
/// the matches wrapped in an array; no match is NULL.
fn extract(d: &Json, ps: &[Path]) -> Value {
    let mut matches: Vec<Json> = Vec::new();
    for p in ps {
        matches.extend(p.select(d).into_iter().cloned());
    }
    if matches.is_empty() {
        return Value::Null;
    }
    if ps.len() == 1 && !ps[0].is_wild() {
        return j(matches.remove(0));
    }
    j(Json::Array(matches))
}

/// `JSON_CONTAINS(target, candidate)`.
fn contains(t: &Json, c: &Json) -> bool {
    match (t, c) {
        (Json::Array(_), Json::Array(cs)) => cs.iter().all(|x| contains(t, x)),
        (Json::Array(ts), c) => ts.iter().any(|x| contains(x, c)),
        (Json::Object(_), Json::Object(cs)) => cs
            .iter()
            .all(|(k, v)| t.get(k).is_some_and(|tv| contains(tv, v))),
        (Json::Object(_), _) | (_, Json::Array(_) | Json::Object(_)) => false,
        (a, b) => json::compare(a, b).is_eq(),
    }
}

/// `JSON_OVERLAPS(a, b)`.
fn overlaps(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::Array(xs), Json::Array(ys)) => xs
            .iter()
            .any(|x| ys.iter().any(|y| json::compare(x, y).is_eq())),
        (Json::Array(xs), y) | (y, Json::Array(xs)) => {
            xs.iter().any(|x| json::compare(x, y).is_eq())
        }
        (Json::Object(xs), Json::Object(_)) => xs
            .iter()
            .any(|(k, v)| b.get(k).is_some_and(|w| json::compare(v, w).is_eq())),
        (x, y) => json::compare(x, y).is_eq(),
    }
}

/// `JSON_MERGE_PRESERVE` of two documents.
fn merge_preserve(a: Json, b: Json) -> Json {
    match (a, b) {
        (Json::Object(mut x), Json::Object(y)) => {
            for (k, v) in y {
                match x.binary_search_by(|(xk, _)| json::key_order(xk, &k)) {
                    Ok(i) => {
                        let old = std::mem::replace(&mut x[i].1, Json::Null);
                        x[i].1 = merge_preserve(old, v);
                    }
                    Err(i) => x.insert(i, (k, v)),
                }
            }
            Json::Object(x)
        }
        (a, b) => {
            let mut items = match a {
                Json::Array(x) => x,
                other => vec![other],
            };
            match b {
                Json::Array(y) => items.extend(y),
                other => items.push(other),
            }
            Json::Array(items)
        }
    }
}

/// `JSON_MERGE_PATCH` (RFC 7396) of a patch into a target.
fn merge_patch(target: Json, patch: Json) -> Json {
    let Json::Object(p) = patch else {
        return patch;
    };
    let mut t = match target {
        Json::Object(t) => t,
        _ => Vec::new(),
    };
    for (k, v) in p {
        let at = t.binary_search_by(|(tk, _)| json::key_order(tk, &k));
        match (at, v) {
            (Ok(i), Json::Null) => {
                t.remove(i);
            }
            (Err(_), Json::Null) => {}
            (Ok(i), v) => {
                let old = std::mem::replace(&mut t[i].1, Json::Null);
                t[i].1 = merge_patch(old, v);
            }
            (Err(i), v) => t.insert(i, (k, merge_patch(Json::Null, v))),
        }
    }
    Json::Object(t)
}

/// Visits the string scalars of `d` with their paths (inside one of
/// `scopes`, or everywhere when `inside`); `visit` returns true to stop.
fn search(
    d: &Json,
    at: String,
    inside: bool,
    scopes: &[*const Json],
    visit: &mut dyn FnMut(String, &str) -> bool,
) -> bool {
    let inside = inside || scopes.contains(&(d as *const Json));
    match d {
        Json::String(s) if inside => visit(at, s),
        Json::Array(items) => items
            .iter()
            .enumerate()
            .any(|(i, x)| search(x, format!("{at}[{i}]"), inside, scopes, visit)),
        Json::Object(members) => members
            .iter()
            .any(|(k, x)| search(x, format!("{at}{}", key_leg(k)), inside, scopes, visit)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Value {
        Value::Text(s.into())
    }

    fn run(name: &str, args: &[Value]) -> String {
        match call(name, args).unwrap().unwrap() {
            Value::Null => "NULL".into(),
            v => v.to_string(),
        }
    }

    #[test]
    fn extract_unwraps_one_plain_path_and_wraps_wildcards() {
        let d = t(r#"{"a": [1, {"b": "x"}], "c": 3}"#);
        assert_eq!(run("json_extract", &[d.clone(), t("$.a[1].b")]), "\"x\"");
        assert_eq!(
            run("json_extract", &[d.clone(), t("$.a[*]")]),
            r#"[1, {"b": "x"}]"#
        );
        assert_eq!(
            run("json_extract", &[d.clone(), t("$.c"), t("$.a[0]")]),
            "[3, 1]"
        );
        assert_eq!(run("json_extract", &[d.clone(), t("$.zz")]), "NULL");
        let e = call("json_extract", &[t("{"), t("$")]).unwrap_err();
        assert_eq!(e.code, 3141);
        let e = call("json_extract", &[d, t("$a")]).unwrap_err();
        assert_eq!(e.code, 3143);
        assert_eq!(
            call("json_extract", &[Value::Int(1), t("$")])
                .unwrap_err()
                .code,
            3146
        );
    }

    #[test]
    fn modifications_follow_mysql() {
        let d = t(r#"{"a": 1, "b": [2]}"#);
        assert_eq!(
            run(
                "json_set",
                &[d.clone(), t("$.a"), Value::Int(5), t("$.c"), t("x")]
            ),
            r#"{"a": 5, "b": [2], "c": "x"}"#
        );
        assert_eq!(
            run("json_insert", &[d.clone(), t("$.a"), Value::Int(5)]),
            r#"{"a": 1, "b": [2]}"#
        );
        assert_eq!(
            run("json_replace", &[d.clone(), t("$.c"), Value::Int(5)]),
            r#"{"a": 1, "b": [2]}"#
        );
        assert_eq!(
            run("json_remove", &[d.clone(), t("$.b[0]")]),
            r#"{"a": 1, "b": []}"#
        );
        assert_eq!(
            call("json_remove", &[d.clone(), t("$")]).unwrap_err().code,
            3153
        );
        assert_eq!(
            call("json_set", &[d.clone(), t("$.*"), Value::Int(1)])
                .unwrap_err()
                .code,
            3149
        );
        assert_eq!(
            run("json_array_append", &[d, t("$.a"), Value::Int(2)]),
            r#"{"a": [1, 2], "b": [2]}"#
        );
    }

    #[test]
    fn containment_membership_and_search() {
        let d = t(r#"{"a": 1, "b": [1, 2, {"c": "abc"}]}"#);
        assert_eq!(run("json_contains", &[d.clone(), t("1"), t("$.a")]), "1");
        assert_eq!(run("json_contains", &[d.clone(), t(r#"{"a": 1}"#)]), "1");
        assert_eq!(
            run("json_contains", &[d.clone(), t("[1, 3]"), t("$.b")]),
            "0"
        );
        assert_eq!(
            run(
                "json_contains_path",
                &[d.clone(), t("all"), t("$.a"), t("$.x")]
            ),
            "0"
        );
        assert_eq!(
            run(
                "json_contains_path",
                &[d.clone(), t("one"), t("$.a"), t("$.x")]
            ),
            "1"
        );
        assert_eq!(
            call("json_contains_path", &[d.clone(), t("some"), t("$")])
                .unwrap_err()
                .code,
            3154
        );
        assert_eq!(run(MEMBER_OF, &[Value::Int(2), t("[1, 2]")]), "1");
        assert_eq!(run(MEMBER_OF, &[t("2"), t("[1, 2]")]), "0");
        assert_eq!(
            run("json_search", &[d.clone(), t("one"), t("ab%")]),
            "\"$.b[2].c\""
        );
        assert_eq!(run("json_search", &[d, t("all"), t("zz")]), "NULL");
    }

    #[test]
    fn constructors_and_scalars() {
        assert_eq!(
            run("json_object", &[t("b"), Value::Int(1), t("a"), Value::Null]),
            r#"{"a": null, "b": 1}"#
        );
        assert_eq!(
            call("json_object", &[Value::Null, Value::Int(1)])
                .unwrap_err()
                .code,
            3158
        );
        assert_eq!(
            run("json_array", &[Value::Int(1), t("[2]")]),
            r#"[1, "[2]"]"#
        );
        assert_eq!(run("json_type", &[t("[]")]), "ARRAY");
        assert_eq!(run("json_valid", &[t("{")]), "0");
        assert_eq!(run("json_unquote", &[t("\"a\\tb\"")]), "a\tb");
        assert_eq!(run("json_quote", &[t("a\"b")]), "\"a\\\"b\"");
        assert_eq!(
            run("json_keys", &[t(r#"{"b": 1, "a": 2}"#)]),
            r#"["a", "b"]"#
        );
        assert_eq!(run("json_length", &[t("[1, 2, 3]")]), "3");
        assert_eq!(run("json_depth", &[t("[[1]]")]), "3");
        assert_eq!(
            run(
                "json_merge_patch",
                &[t(r#"{"a": 1, "b": 2}"#), t(r#"{"a": null, "c": 3}"#)]
            ),
            r#"{"b": 2, "c": 3}"#
        );
        assert_eq!(
            run("json_merge_preserve", &[t("[1]"), t(r#"{"a": 1}"#)]),
            r#"[1, {"a": 1}]"#
        );
    }
}
