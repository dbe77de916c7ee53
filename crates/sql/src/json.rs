//! The JSON value: MySQL's document model, its text form, TiDB's binary
//! storage format, ordering, and path expressions.
//!
//! ```text
//!  text ──parse──► Json ──encode──► TiDB binary JSON (row format v2 value)
//!                   │  ◄──decode──
//!                   ├─ Display: MySQL's normalised text ({"a": 1, "b": [1, 2]})
//!                   ├─ compare: MySQL's JSON ordering (type precedence, then value)
//!                   └─ Path: $.key, $[n], $[last-1], $[m to n], $.*, $[*], $**.key
//! ```
//!
//! Objects keep one member per key (the last one parsed wins, as MySQL
//! 8.0), ordered as MySQL orders them: shorter keys first, then by bytes.
//! That order is what `Display` prints. In storage the keys are in byte
//! order, as TiDB writes them (its lookups binary-search by bytes); the
//! decoder puts them back in MySQL's order.
//!
//! Every parser and decoder works on untrusted input: no panics, a depth
//! limit of 100 as MySQL's, and errors that say where.

use std::cmp::Ordering;
use std::fmt;

/// MySQL's maximum nesting depth of a JSON document.
pub const MAX_DEPTH: usize = 100;

/// One JSON value.
#[derive(Clone, Debug, PartialEq)]
pub enum Json {
    /// `null`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A signed integer.
    Int(i64),
    /// An unsigned integer above `i64::MAX`.
    UInt(u64),
    /// A double.
    Double(f64),
    /// A string.
    String(String),
    /// An array.
    Array(Vec<Json>),
    /// An object: unique keys in MySQL's order ([`key_order`]).
    Object(Vec<(String, Json)>),
}

/// MySQL's order of object keys: by length, then by bytes.
pub fn key_order(a: &str, b: &str) -> Ordering {
    a.len()
        .cmp(&b.len())
        .then_with(|| a.as_bytes().cmp(b.as_bytes()))
}

/// Why a text is not JSON, and where (a byte offset).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// MySQL's reason ("Invalid value.", "Missing a comma or '}' after an
    /// object member.", ...).
    pub reason: &'static str,
    /// Byte position of the error.
    pub position: usize,
}

impl Json {
    /// Parses JSON text (RFC 8259, as MySQL accepts it).
    pub fn parse(text: &str) -> Result<Json, ParseError> {
        let mut p = Parser {
            s: text.as_bytes(),
            i: 0,
        };
        p.ws();
        let v = p.value(0)?;
        p.ws();
        if p.i != p.s.len() {
            return Err(p.err("The document root must not be followed by other values."));
        }
        Ok(v)
    }

    /// An object from members in any order; a later duplicate key wins.
    pub fn object(members: Vec<(String, Json)>) -> Json {
        let mut out: Vec<(String, Json)> = Vec::with_capacity(members.len());
        for (k, v) in members {
            match out.binary_search_by(|(x, _)| key_order(x, &k)) {
                Ok(i) => out[i].1 = v,
                Err(i) => out.insert(i, (k, v)),
            }
        }
        Json::Object(out)
    }

    /// MySQL's `JSON_TYPE` name.
    pub fn type_name(&self) -> &'static str {
        match self {
            Json::Null => "NULL",
            Json::Bool(_) => "BOOLEAN",
            Json::Int(_) => "INTEGER",
            Json::UInt(_) => "UNSIGNED INTEGER",
            Json::Double(_) => "DOUBLE",
            Json::String(_) => "STRING",
            Json::Array(_) => "ARRAY",
            Json::Object(_) => "OBJECT",
        }
    }

    /// `JSON_DEPTH`: 1 for scalars and empty containers.
    pub fn depth(&self) -> usize {
        match self {
            Json::Array(a) if !a.is_empty() => 1 + a.iter().map(Json::depth).max().unwrap_or(0),
            Json::Object(o) if !o.is_empty() => {
                1 + o.iter().map(|(_, v)| v.depth()).max().unwrap_or(0)
            }
            _ => 1,
        }
    }

    /// `JSON_LENGTH`: members of a container, 1 for a scalar.
    pub fn length(&self) -> usize {
        match self {
            Json::Array(a) => a.len(),
            Json::Object(o) => o.len(),
            _ => 1,
        }
    }

    /// The member `key` of an object.
    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Object(o) => o
                .binary_search_by(|(k, _)| key_order(k, key))
                .ok()
                .map(|i| &o[i].1),
            _ => None,
        }
    }

    /// The value as a number, if it is one.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Json::Int(i) => Some(*i as f64),
            Json::UInt(u) => Some(*u as f64),
            Json::Double(d) => Some(*d),
            _ => None,
        }
    }

    /// The text `JSON_UNQUOTE` gives: a string's contents, else the JSON
    /// text.
    pub fn unquoted(&self) -> String {
        match self {
            Json::String(s) => s.clone(),
            other => other.to_string(),
        }
    }

    /// `JSON_PRETTY`'s form: two-space indentation, one member per line.
    pub fn pretty(&self) -> String {
        let mut out = String::new();
        self.write_pretty(&mut out, 0);
        out
    }

    fn write_pretty(&self, out: &mut String, indent: usize) {
        let pad = |out: &mut String, n: usize| out.extend(std::iter::repeat_n("  ", n));
        match self {
            Json::Array(a) if !a.is_empty() => {
                out.push_str("[\n");
                for (i, v) in a.iter().enumerate() {
                    pad(out, indent + 1);
                    v.write_pretty(out, indent + 1);
                    out.push_str(if i + 1 < a.len() { ",\n" } else { "\n" });
                }
                pad(out, indent);
                out.push(']');
            }
            Json::Object(o) if !o.is_empty() => {
                out.push_str("{\n");
                for (i, (k, v)) in o.iter().enumerate() {
                    pad(out, indent + 1);
                    quote_into(out, k);
                    out.push_str(": ");
                    v.write_pretty(out, indent + 1);
                    out.push_str(if i + 1 < o.len() { ",\n" } else { "\n" });
                }
                pad(out, indent);
                out.push('}');
            }
            other => out.push_str(&other.to_string()),
        }
    }
}

/// Writes `s` as a JSON string literal (quotes, backslash escapes for
/// `"`, `\` and control characters; other characters as they are).
pub fn quote_into(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A double as MySQL prints it in JSON: the shortest text that reads back,
/// with `.0` on integral values and an exponent for very large or small
/// magnitudes.
fn write_double(f: &mut fmt::Formatter<'_>, d: f64) -> fmt::Result {
    let a = d.abs();
    if a != 0.0 && !(1e-5..1e15).contains(&a) {
        write!(f, "{d:e}")
    } else {
        write!(f, "{d:?}")
    }
}

impl fmt::Display for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Json::Null => f.write_str("null"),
            Json::Bool(b) => write!(f, "{b}"),
            Json::Int(i) => write!(f, "{i}"),
            Json::UInt(u) => write!(f, "{u}"),
            Json::Double(d) => write_double(f, *d),
            Json::String(s) => {
                let mut out = String::with_capacity(s.len() + 2);
                quote_into(&mut out, s);
                f.write_str(&out)
            }
            Json::Array(a) => {
                f.write_str("[")?;
                for (i, v) in a.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str("]")
            }
            Json::Object(o) => {
                f.write_str("{")?;
                for (i, (k, v)) in o.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    let mut key = String::with_capacity(k.len() + 2);
                    quote_into(&mut key, k);
                    write!(f, "{key}: {v}")?;
                }
                f.write_str("}")
            }
        }
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn err(&self, reason: &'static str) -> ParseError {
        ParseError {
            reason,
            position: self.i,
        }
    }

    fn ws(&mut self) {
        while matches!(self.s.get(self.i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn value(&mut self, depth: usize) -> Result<Json, ParseError> {
        if depth >= MAX_DEPTH {
            return Err(self.err("The JSON document exceeds the maximum depth."));
        }
        match self.s.get(self.i) {
            None => Err(self.err("The document is empty.")),
            Some(b'{') => {
                self.i += 1;
                let mut members = Vec::new();
                self.ws();
                if self.s.get(self.i) == Some(&b'}') {
                    self.i += 1;
                    return Ok(Json::Object(members));
                }
                loop {
                    self.ws();
                    if self.s.get(self.i) != Some(&b'"') {
                        return Err(self.err("Missing a name for object member."));
                    }
                    let k = self.string()?;
                    self.ws();
                    if self.s.get(self.i) != Some(&b':') {
                        return Err(self.err("Missing a colon after a name of object member."));
                    }
                    self.i += 1;
                    self.ws();
                    let v = self.value(depth + 1)?;
                    members.push((k, v));
                    self.ws();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(Json::object(members));
                        }
                        _ => return Err(self.err("Missing a comma or '}' after an object member.")),
                    }
                }
            }
            Some(b'[') => {
                self.i += 1;
                let mut items = Vec::new();
                self.ws();
                if self.s.get(self.i) == Some(&b']') {
                    self.i += 1;
                    return Ok(Json::Array(items));
                }
                loop {
                    self.ws();
                    items.push(self.value(depth + 1)?);
                    self.ws();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(Json::Array(items));
                        }
                        _ => return Err(self.err("Missing a comma or ']' after an array element.")),
                    }
                }
            }
            Some(b'"') => Ok(Json::String(self.string()?)),
            Some(b't') => self.word(b"true", Json::Bool(true)),
            Some(b'f') => self.word(b"false", Json::Bool(false)),
            Some(b'n') => self.word(b"null", Json::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.err("Invalid value.")),
        }
    }

    fn word(&mut self, w: &[u8], v: Json) -> Result<Json, ParseError> {
        if self.s[self.i..].starts_with(w) {
            self.i += w.len();
            Ok(v)
        } else {
            Err(self.err("Invalid value."))
        }
    }

    fn number(&mut self) -> Result<Json, ParseError> {
        let start = self.i;
        let digits = |p: &mut Parser<'_>| {
            let s = p.i;
            while matches!(p.s.get(p.i), Some(b'0'..=b'9')) {
                p.i += 1;
            }
            p.i - s
        };
        if self.s.get(self.i) == Some(&b'-') {
            self.i += 1;
        }
        let int_start = self.i;
        if digits(self) == 0 {
            return Err(self.err("Invalid value."));
        }
        if self.s[int_start] == b'0' && self.i - int_start > 1 {
            self.i = int_start + 1;
            return Err(self.err("The document root must not be followed by other values."));
        }
        let mut integral = true;
        if self.s.get(self.i) == Some(&b'.') {
            self.i += 1;
            integral = false;
            if digits(self) == 0 {
                return Err(self.err("Miss fraction part in number."));
            }
        }
        if matches!(self.s.get(self.i), Some(b'e' | b'E')) {
            self.i += 1;
            integral = false;
            if matches!(self.s.get(self.i), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if digits(self) == 0 {
                return Err(self.err("Miss exponent in number."));
            }
        }
        // The slice is ASCII digits, signs, '.', 'e': valid UTF-8.
        let text = std::str::from_utf8(&self.s[start..self.i]).unwrap_or("0");
        if integral {
            if let Ok(i) = text.parse::<i64>() {
                return Ok(Json::Int(i));
            }
            if let Ok(u) = text.parse::<u64>() {
                return Ok(Json::UInt(u));
            }
        }
        match text.parse::<f64>() {
            Ok(d) if d.is_finite() => Ok(Json::Double(d)),
            _ => {
                self.i = start;
                Err(self.err("Number too big to be stored in double."))
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, ParseError> {
        let h = self
            .s
            .get(self.i..self.i + 4)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .ok_or_else(|| self.err("Incorrect hex digit after \\u escape in string."))?;
        self.i += 4;
        Ok(h)
    }

    fn string(&mut self) -> Result<String, ParseError> {
        self.i += 1; // the opening quote
        let mut out = Vec::new();
        loop {
            let Some(&c) = self.s.get(self.i) else {
                return Err(self.err("Missing a closing quotation mark in string."));
            };
            self.i += 1;
            match c {
                b'"' => break,
                b'\\' => {
                    let Some(&e) = self.s.get(self.i) else {
                        return Err(self.err("Missing a closing quotation mark in string."));
                    };
                    self.i += 1;
                    let ch = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let hi = self.hex4()?;
                            let cp = if (0xD800..0xDC00).contains(&hi) {
                                if self.s.get(self.i..self.i + 2) != Some(b"\\u") {
                                    return Err(
                                        self.err("The surrogate pair in string is invalid.")
                                    );
                                }
                                self.i += 2;
                                let lo = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return Err(
                                        self.err("The surrogate pair in string is invalid.")
                                    );
                                }
                                0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                            } else {
                                hi
                            };
                            char::from_u32(cp).ok_or_else(|| {
                                self.err("The surrogate pair in string is invalid.")
                            })?
                        }
                        _ => {
                            self.i -= 1;
                            return Err(self.err("Invalid escape character in string."));
                        }
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                }
                c if c < 0x20 => {
                    self.i -= 1;
                    return Err(self.err("Invalid encoding in string."));
                }
                c => out.push(c),
            }
        }
        String::from_utf8(out).map_err(|_| self.err("Invalid encoding in string."))
    }
}

// ---- ordering -------------------------------------------------------------

/// MySQL's precedence of JSON types in comparisons (higher sorts later).
fn precedence(j: &Json) -> u8 {
    match j {
        Json::Null => 0,
        Json::Int(_) | Json::UInt(_) | Json::Double(_) => 1,
        Json::String(_) => 2,
        Json::Object(_) => 3,
        Json::Array(_) => 4,
        Json::Bool(_) => 5,
    }
}

/// Compares two JSON values as MySQL does: by type precedence, then
/// numbers numerically, strings by bytes, arrays element by element,
/// objects equal only when their members are (otherwise by their text, a
/// fixed but unspecified order as in MySQL).
pub fn compare(a: &Json, b: &Json) -> Ordering {
    let (pa, pb) = (precedence(a), precedence(b));
    if pa != pb {
        return pa.cmp(&pb);
    }
    match (a, b) {
        (Json::Null, Json::Null) => Ordering::Equal,
        (Json::Bool(x), Json::Bool(y)) => x.cmp(y),
        (Json::String(x), Json::String(y)) => x.as_bytes().cmp(y.as_bytes()),
        (Json::Array(x), Json::Array(y)) => {
            for (l, r) in x.iter().zip(y) {
                let o = compare(l, r);
                if o != Ordering::Equal {
                    return o;
                }
            }
            x.len().cmp(&y.len())
        }
        (Json::Object(x), Json::Object(y)) => {
            if x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((kx, vx), (ky, vy))| kx == ky && compare(vx, vy) == Ordering::Equal)
            {
                Ordering::Equal
            } else {
                a.to_string().cmp(&b.to_string())
            }
        }
        _ => compare_numbers(a, b),
    }
}

fn compare_numbers(a: &Json, b: &Json) -> Ordering {
    match (a, b) {
        (Json::Int(x), Json::Int(y)) => x.cmp(y),
        (Json::UInt(x), Json::UInt(y)) => x.cmp(y),
        (Json::Int(x), Json::UInt(y)) => i128::from(*x).cmp(&i128::from(*y)),
        (Json::UInt(x), Json::Int(y)) => i128::from(*x).cmp(&i128::from(*y)),
        _ => {
            let (x, y) = (a.as_f64().unwrap_or(0.0), b.as_f64().unwrap_or(0.0));
            x.partial_cmp(&y).unwrap_or(Ordering::Equal)
        }
    }
}

// ---- TiDB binary JSON -----------------------------------------------------

const T_OBJECT: u8 = 0x01;
const T_ARRAY: u8 = 0x03;
const T_LITERAL: u8 = 0x04;
const T_INT64: u8 = 0x09;
const T_UINT64: u8 = 0x0a;
const T_FLOAT64: u8 = 0x0b;
const T_STRING: u8 = 0x0c;
const LIT_NULL: u8 = 0x00;
const LIT_TRUE: u8 = 0x01;
const LIT_FALSE: u8 = 0x02;

/// TiDB's binary JSON: a type byte, then the value.
///
/// ```text
///  object  count u32 | size u32 | (key offset u32, key len u16)* | value entry* | keys | values
///  array   count u32 | size u32 | value entry* | values
///  value entry: type u8 | offset u32 (literals: the literal itself)
///  int64/uint64/float64: 8 bytes LE; string: LEB128 length | bytes
/// ```
///
/// Offsets count from the start of the container (after the type byte);
/// `size` is the container's whole length.
pub fn encode(j: &Json) -> Vec<u8> {
    let mut out = vec![type_of(j)];
    encode_value(j, &mut out);
    out
}

fn type_of(j: &Json) -> u8 {
    match j {
        Json::Null | Json::Bool(_) => T_LITERAL,
        Json::Int(_) => T_INT64,
        Json::UInt(_) => T_UINT64,
        Json::Double(_) => T_FLOAT64,
        Json::String(_) => T_STRING,
        Json::Array(_) => T_ARRAY,
        Json::Object(_) => T_OBJECT,
    }
}

fn literal(j: &Json) -> Option<u8> {
    match j {
        Json::Null => Some(LIT_NULL),
        Json::Bool(true) => Some(LIT_TRUE),
        Json::Bool(false) => Some(LIT_FALSE),
        _ => None,
    }
}

fn encode_value(j: &Json, out: &mut Vec<u8>) {
    match j {
        Json::Null | Json::Bool(_) => out.push(literal(j).unwrap_or(LIT_NULL)),
        Json::Int(i) => out.extend_from_slice(&i.to_le_bytes()),
        Json::UInt(u) => out.extend_from_slice(&u.to_le_bytes()),
        Json::Double(d) => out.extend_from_slice(&d.to_le_bytes()),
        Json::String(s) => {
            let mut n = s.len() as u64;
            loop {
                let b = (n & 0x7f) as u8;
                n >>= 7;
                if n == 0 {
                    out.push(b);
                    break;
                }
                out.push(b | 0x80);
            }
            out.extend_from_slice(s.as_bytes());
        }
        Json::Array(items) => {
            let refs: Vec<&Json> = items.iter().collect();
            encode_container(&[], &refs, out);
        }
        Json::Object(members) => {
            let mut sorted: Vec<&(String, Json)> = members.iter().collect();
            sorted.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            let keys: Vec<&str> = sorted.iter().map(|(k, _)| k.as_str()).collect();
            let values: Vec<&Json> = sorted.iter().map(|(_, v)| v).collect();
            encode_container(&keys, &values, out);
        }
    }
}

fn encode_container(keys: &[&str], values: &[&Json], out: &mut Vec<u8>) {
    let base = out.len();
    let header = 8 + keys.len() * 6 + values.len() * 5;
    out.extend_from_slice(&(values.len() as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]); // size, patched below
    out.resize(base + header, 0);
    let mut at = header;
    for (i, k) in keys.iter().enumerate() {
        let e = base + 8 + i * 6;
        out[e..e + 4].copy_from_slice(&(at as u32).to_le_bytes());
        out[e + 4..e + 6].copy_from_slice(&(k.len() as u16).to_le_bytes());
        out.extend_from_slice(k.as_bytes());
        at += k.len();
    }
    let entries = base + 8 + keys.len() * 6;
    for (i, v) in values.iter().enumerate() {
        let e = entries + i * 5;
        out[e] = type_of(v);
        match literal(v) {
            Some(l) => out[e + 1..e + 5].copy_from_slice(&u32::from(l).to_le_bytes()),
            None => {
                let off = (out.len() - base) as u32;
                out[e + 1..e + 5].copy_from_slice(&off.to_le_bytes());
                encode_value(v, out);
            }
        }
    }
    let size = (out.len() - base) as u32;
    out[base + 4..base + 8].copy_from_slice(&size.to_le_bytes());
}

/// Decodes [`encode`]'s bytes; `Err` names what is corrupt.
pub fn decode(bytes: &[u8]) -> Result<Json, String> {
    let (&t, body) = bytes.split_first().ok_or("empty JSON value")?;
    decode_value(t, body, 0)
}

fn u32_at(b: &[u8], at: usize) -> Result<usize, String> {
    b.get(at..at + 4)
        .map(|x| u32::from_le_bytes([x[0], x[1], x[2], x[3]]) as usize)
        .ok_or_else(|| "truncated JSON value".to_string())
}

fn decode_value(t: u8, b: &[u8], depth: usize) -> Result<Json, String> {
    if depth > MAX_DEPTH {
        return Err("JSON value nested too deeply".into());
    }
    let eight = || -> Result<[u8; 8], String> {
        b.get(..8)
            .and_then(|x| x.try_into().ok())
            .ok_or_else(|| "truncated JSON number".to_string())
    };
    Ok(match t {
        T_LITERAL => match b.first() {
            Some(&LIT_NULL) => Json::Null,
            Some(&LIT_TRUE) => Json::Bool(true),
            Some(&LIT_FALSE) => Json::Bool(false),
            _ => return Err("bad JSON literal".into()),
        },
        T_INT64 => Json::Int(i64::from_le_bytes(eight()?)),
        T_UINT64 => Json::UInt(u64::from_le_bytes(eight()?)),
        T_FLOAT64 => Json::Double(f64::from_le_bytes(eight()?)),
        T_STRING => {
            let (mut n, mut shift, mut i) = (0u64, 0u32, 0usize);
            loop {
                let &byte = b.get(i).ok_or("truncated JSON string length")?;
                if shift > 63 {
                    return Err("bad JSON string length".into());
                }
                n |= u64::from(byte & 0x7f) << shift;
                i += 1;
                if byte & 0x80 == 0 {
                    break;
                }
                shift += 7;
            }
            let s = b
                .get(i..i.saturating_add(n as usize))
                .ok_or("truncated JSON string")?;
            Json::String(String::from_utf8(s.to_vec()).map_err(|_| "JSON string not UTF-8")?)
        }
        T_ARRAY | T_OBJECT => {
            let count = u32_at(b, 0)?;
            let size = u32_at(b, 4)?;
            let b = b.get(..size).ok_or("truncated JSON container")?;
            let keyed = t == T_OBJECT;
            let entries = 8 + if keyed { count * 6 } else { 0 };
            if entries.saturating_add(count.saturating_mul(5)) > b.len() {
                return Err("truncated JSON container".into());
            }
            let mut values = Vec::with_capacity(count);
            for i in 0..count {
                let e = entries + i * 5;
                let vt = b[e];
                let v = if vt == T_LITERAL {
                    decode_value(vt, &b[e + 1..e + 2], depth + 1)?
                } else {
                    let off = u32_at(b, e + 1)?;
                    decode_value(vt, b.get(off..).ok_or("bad JSON offset")?, depth + 1)?
                };
                values.push(v);
            }
            if keyed {
                let mut members = Vec::with_capacity(count);
                for (i, v) in values.into_iter().enumerate() {
                    let off = u32_at(b, 8 + i * 6)?;
                    let len = b
                        .get(8 + i * 6 + 4..8 + i * 6 + 6)
                        .map(|x| u16::from_le_bytes([x[0], x[1]]) as usize)
                        .ok_or("truncated JSON key")?;
                    let k = b.get(off..off + len).ok_or("bad JSON key offset")?;
                    let k = String::from_utf8(k.to_vec()).map_err(|_| "JSON key not UTF-8")?;
                    members.push((k, v));
                }
                Json::object(members)
            } else {
                Json::Array(values)
            }
        }
        other => return Err(format!("unknown JSON type 0x{other:02x}")),
    })
}

// ---- paths ----------------------------------------------------------------

/// One step of a path.
#[derive(Clone, Debug, PartialEq)]
pub enum Leg {
    /// `.key`
    Key(String),
    /// `.*`
    AnyKey,
    /// `[n]`, `[last]`, `[last - n]`, `[m to n]`
    Index(ArrayIndex, Option<ArrayIndex>),
    /// `[*]`
    AnyIndex,
    /// `**`
    Descendants,
}

/// An array position, from the front or from `last`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ArrayIndex {
    /// `n`
    Front(usize),
    /// `last - n`
    Last(usize),
}

impl ArrayIndex {
    /// The position in an array of `len` (may be past the end; `None`
    /// before the start).
    fn resolve(self, len: usize) -> Option<usize> {
        match self {
            ArrayIndex::Front(n) => Some(n),
            ArrayIndex::Last(n) => len.checked_sub(1)?.checked_sub(n),
        }
    }
}

/// A parsed path expression (`$` followed by legs).
#[derive(Clone, Debug, PartialEq)]
pub struct Path {
    /// The legs after `$`.
    pub legs: Vec<Leg>,
}

/// A path that does not parse: the character position of the error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PathError(pub usize);

impl Path {
    /// Parses MySQL's path syntax.
    pub fn parse(text: &str) -> Result<Path, PathError> {
        let s: Vec<char> = text.chars().collect();
        let mut i = 0;
        let ws = |i: &mut usize| {
            while s.get(*i).is_some_and(|c| c.is_whitespace()) {
                *i += 1;
            }
        };
        ws(&mut i);
        if s.get(i) != Some(&'$') {
            return Err(PathError(i));
        }
        i += 1;
        let mut legs = Vec::new();
        loop {
            ws(&mut i);
            match s.get(i) {
                None => break,
                Some('.') => {
                    i += 1;
                    ws(&mut i);
                    match s.get(i) {
                        Some('*') => {
                            i += 1;
                            legs.push(Leg::AnyKey);
                        }
                        Some('"') => {
                            let start = i;
                            i += 1;
                            let mut raw = String::from("\"");
                            loop {
                                match s.get(i) {
                                    None => return Err(PathError(start)),
                                    Some('\\') => {
                                        raw.push('\\');
                                        raw.push(*s.get(i + 1).ok_or(PathError(i))?);
                                        i += 2;
                                    }
                                    Some('"') => {
                                        raw.push('"');
                                        i += 1;
                                        break;
                                    }
                                    Some(c) => {
                                        raw.push(*c);
                                        i += 1;
                                    }
                                }
                            }
                            match Json::parse(&raw) {
                                Ok(Json::String(k)) => legs.push(Leg::Key(k)),
                                _ => return Err(PathError(start)),
                            }
                        }
                        Some(c) if is_ident_start(*c) => {
                            let start = i;
                            while s.get(i).is_some_and(|c| is_ident_part(*c)) {
                                i += 1;
                            }
                            legs.push(Leg::Key(s[start..i].iter().collect()));
                        }
                        _ => return Err(PathError(i)),
                    }
                }
                Some('[') => {
                    i += 1;
                    ws(&mut i);
                    if s.get(i) == Some(&'*') {
                        i += 1;
                        ws(&mut i);
                        if s.get(i) != Some(&']') {
                            return Err(PathError(i));
                        }
                        i += 1;
                        legs.push(Leg::AnyIndex);
                        continue;
                    }
                    let from = array_index(&s, &mut i)?;
                    ws(&mut i);
                    let to = if s.get(i..i + 2).is_some_and(|t| t == ['t', 'o']) {
                        i += 2;
                        ws(&mut i);
                        Some(array_index(&s, &mut i)?)
                    } else {
                        None
                    };
                    ws(&mut i);
                    if s.get(i) != Some(&']') {
                        return Err(PathError(i));
                    }
                    i += 1;
                    legs.push(Leg::Index(from, to));
                }
                Some('*') if s.get(i + 1) == Some(&'*') => {
                    i += 2;
                    legs.push(Leg::Descendants);
                }
                _ => return Err(PathError(i)),
            }
        }
        if legs.last() == Some(&Leg::Descendants) {
            return Err(PathError(s.len()));
        }
        Ok(Path { legs })
    }

    /// Whether the path can select more than one value (`*`, `**`,
    /// ranges).
    pub fn is_wild(&self) -> bool {
        self.legs.iter().any(|l| {
            matches!(
                l,
                Leg::AnyKey | Leg::AnyIndex | Leg::Descendants | Leg::Index(_, Some(_))
            )
        })
    }

    /// The values the path selects in `doc`, in document order, each once.
    pub fn select<'a>(&self, doc: &'a Json) -> Vec<&'a Json> {
        let mut cur: Vec<&'a Json> = vec![doc];
        for leg in &self.legs {
            let mut next: Vec<&'a Json> = Vec::new();
            for j in cur {
                step(leg, j, &mut next);
            }
            if matches!(leg, Leg::Descendants) {
                // `**` can reach one value along two routes.
                let mut seen: Vec<*const Json> = Vec::new();
                next.retain(|j| {
                    let p = *j as *const Json;
                    if seen.contains(&p) {
                        false
                    } else {
                        seen.push(p);
                        true
                    }
                });
            }
            cur = next;
        }
        cur
    }

    /// The value at a path without wildcards, mutably (`None` when the
    /// path selects nothing).
    fn get_mut<'a>(legs: &[Leg], doc: &'a mut Json) -> Option<&'a mut Json> {
        let Some((leg, rest)) = legs.split_first() else {
            return Some(doc);
        };
        match (leg, doc) {
            (Leg::Key(k), Json::Object(o)) => {
                let i = o.binary_search_by(|(x, _)| key_order(x, k)).ok()?;
                Path::get_mut(rest, &mut o[i].1)
            }
            (Leg::Index(ix, None), Json::Array(a)) => {
                let i = ix.resolve(a.len())?;
                Path::get_mut(rest, a.get_mut(i)?)
            }
            // A scalar or object is a one-element array to `[0]`/`[last]`.
            (Leg::Index(ix, None), other) if ix.resolve(1) == Some(0) => Path::get_mut(rest, other),
            _ => None,
        }
    }

    /// `JSON_SET` / `JSON_INSERT` / `JSON_REPLACE` of one path (no
    /// wildcards): replaces an existing value when `replace`, adds a
    /// missing last leg when `insert`.
    pub fn set(&self, doc: &mut Json, value: Json, insert: bool, replace: bool) {
        let Some((last, parent)) = self.legs.split_last() else {
            if replace {
                *doc = value;
            }
            return;
        };
        let Some(p) = Path::get_mut(parent, doc) else {
            return;
        };
        match (last, p) {
            (Leg::Key(k), Json::Object(o)) => match o.binary_search_by(|(x, _)| key_order(x, k)) {
                Ok(i) if replace => o[i].1 = value,
                Err(i) if insert => o.insert(i, (k.clone(), value)),
                _ => {}
            },
            (Leg::Index(ix, None), Json::Array(a)) => match ix.resolve(a.len()) {
                Some(i) if i < a.len() && replace => a[i] = value,
                Some(i) if i < a.len() => {}
                _ if insert => a.push(value),
                _ => {}
            },
            (Leg::Index(ix, None), p) => match ix.resolve(1) {
                Some(0) if replace => *p = value,
                Some(0) => {}
                _ if insert => {
                    let old = std::mem::replace(p, Json::Null);
                    *p = Json::Array(vec![old, value]);
                }
                _ => {}
            },
            _ => {}
        }
    }

    /// `JSON_REMOVE` of one path (no wildcards, not `$`).
    pub fn remove(&self, doc: &mut Json) {
        let Some((last, parent)) = self.legs.split_last() else {
            return;
        };
        match (last, Path::get_mut(parent, doc)) {
            (Leg::Key(k), Some(Json::Object(o))) => {
                if let Ok(i) = o.binary_search_by(|(x, _)| key_order(x, k)) {
                    o.remove(i);
                }
            }
            (Leg::Index(ix, None), Some(Json::Array(a))) => {
                if let Some(i) = ix.resolve(a.len()).filter(|i| *i < a.len()) {
                    a.remove(i);
                }
            }
            _ => {}
        }
    }

    /// `JSON_ARRAY_APPEND` of one path: appends to an array, or makes
    /// `[old, value]` of a non-array.
    pub fn append(&self, doc: &mut Json, value: Json) {
        if let Some(p) = Path::get_mut(&self.legs, doc) {
            match p {
                Json::Array(a) => a.push(value),
                other => {
                    let old = std::mem::replace(other, Json::Null);
                    *other = Json::Array(vec![old, value]);
                }
            }
        }
    }

    /// `JSON_ARRAY_INSERT` of one path ending in an array position;
    /// `false` when the last leg is not one.
    pub fn array_insert(&self, doc: &mut Json, value: Json) -> bool {
        let Some((Leg::Index(ix, None), parent)) = self.legs.split_last() else {
            return false;
        };
        if let Some(Json::Array(a)) = Path::get_mut(parent, doc) {
            let i = ix.resolve(a.len()).unwrap_or(0).min(a.len());
            a.insert(i, value);
        }
        true
    }
}

fn step<'a>(leg: &Leg, j: &'a Json, out: &mut Vec<&'a Json>) {
    match (leg, j) {
        (Leg::Key(k), j) => out.extend(j.get(k)),
        (Leg::AnyKey, Json::Object(o)) => out.extend(o.iter().map(|(_, v)| v)),
        (Leg::AnyIndex, Json::Array(a)) => out.extend(a.iter()),
        (Leg::Index(from, to), Json::Array(a)) => {
            let len = a.len();
            let Some(lo) = from.resolve(len) else {
                return;
            };
            let hi = match to {
                None => lo,
                Some(t) => match t.resolve(len) {
                    Some(h) => h.min(len.saturating_sub(1)),
                    None => return,
                },
            };
            if lo <= hi {
                out.extend(a.iter().skip(lo).take(hi - lo + 1));
            }
        }
        // A non-array is a one-element array to `[0]`, `[last]`, `[0 to n]`.
        (Leg::Index(from, _), other) if from.resolve(1) == Some(0) => out.push(other),
        (Leg::Descendants, j) => descendants(j, out),
        _ => {}
    }
}

fn descendants<'a>(j: &'a Json, out: &mut Vec<&'a Json>) {
    out.push(j);
    match j {
        Json::Array(a) => a.iter().for_each(|v| descendants(v, out)),
        Json::Object(o) => o.iter().for_each(|(_, v)| descendants(v, out)),
        _ => {}
    }
}

fn array_index(s: &[char], i: &mut usize) -> Result<ArrayIndex, PathError> {
    let number = |i: &mut usize| -> Result<usize, PathError> {
        let start = *i;
        while s.get(*i).is_some_and(|c| c.is_ascii_digit()) {
            *i += 1;
        }
        s[start..*i]
            .iter()
            .collect::<String>()
            .parse()
            .map_err(|_| PathError(start))
    };
    if s.get(*i..*i + 4).is_some_and(|t| t == ['l', 'a', 's', 't']) {
        *i += 4;
        let save = *i;
        while s.get(*i).is_some_and(|c| c.is_whitespace()) {
            *i += 1;
        }
        if s.get(*i) == Some(&'-') {
            *i += 1;
            while s.get(*i).is_some_and(|c| c.is_whitespace()) {
                *i += 1;
            }
            return Ok(ArrayIndex::Last(number(i)?));
        }
        *i = save;
        return Ok(ArrayIndex::Last(0));
    }
    Ok(ArrayIndex::Front(number(i)?))
}

fn is_ident_start(c: char) -> bool {
    c.is_alphabetic() || c == '_' || c == '$'
}

fn is_ident_part(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '$'
}

/// A key as a path leg prints (`.key`, or `."a b"` when it is not an
/// identifier), for `JSON_SEARCH`'s answers.
pub fn key_leg(key: &str) -> String {
    let mut chars = key.chars();
    let ident = chars.next().is_some_and(is_ident_start) && chars.all(is_ident_part);
    if ident {
        format!(".{key}")
    } else {
        let mut out = String::from(".");
        quote_into(&mut out, key);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn j(s: &str) -> Json {
        Json::parse(s).unwrap()
    }

    #[test]
    fn text_is_normalised_as_mysql_prints_it() {
        assert_eq!(
            j(r#"{"bb":1,"a":[1,2.5,"x"],"c":{"z":null,"y":true}}"#).to_string(),
            r#"{"a": [1, 2.5, "x"], "c": {"y": true, "z": null}, "bb": 1}"#
        );
        assert_eq!(j(r#"{"a":1,"a":2}"#).to_string(), r#"{"a": 2}"#);
        assert_eq!(j("1.0").to_string(), "1.0");
        assert_eq!(j("1e20").to_string(), "1e20");
        assert_eq!(j("18446744073709551615"), Json::UInt(u64::MAX));
        assert_eq!(j("-5"), Json::Int(-5));
        assert_eq!(j(r#""a\"b\\c\n\u00e9""#).to_string(), "\"a\\\"b\\\\c\\né\"");
    }

    #[test]
    fn invalid_text_reports_mysql_reason_and_position() {
        let e = Json::parse("{\"a\" 1}").unwrap_err();
        assert_eq!(e.reason, "Missing a colon after a name of object member.");
        assert_eq!(e.position, 5);
        assert_eq!(
            Json::parse("").unwrap_err().reason,
            "The document is empty."
        );
        assert_eq!(Json::parse("abc").unwrap_err().position, 0);
        assert!(Json::parse("[1] 2").is_err());
        assert!(Json::parse("01").is_err());
        let deep = "[".repeat(200) + &"]".repeat(200);
        assert_eq!(
            Json::parse(&deep).unwrap_err().reason,
            "The JSON document exceeds the maximum depth."
        );
    }

    #[test]
    fn binary_form_round_trips_and_keys_are_byte_ordered_in_storage() {
        for text in [
            r#"{"b":1,"aa":[true,false,null,"s",-1,18446744073709551615,1.5],"c":{}}"#,
            "[]",
            "\"\"",
            "null",
            &format!("\"{}\"", "x".repeat(300)),
        ] {
            let v = j(text);
            assert_eq!(decode(&encode(&v)).unwrap(), v, "{text}");
        }
        let bin = encode(&j(r#"{"b":1,"aa":2}"#));
        // Key entries: "aa" (byte order) before "b".
        let first_key_off = u32::from_le_bytes(bin[9..13].try_into().unwrap()) as usize;
        assert_eq!(&bin[1 + first_key_off..1 + first_key_off + 2], b"aa");
    }

    #[test]
    fn corrupt_binary_is_an_error_not_a_panic() {
        let good = encode(&j(r#"{"k":[1,"two",{"x":3}]}"#));
        for cut in 0..good.len() {
            let _ = decode(&good[..cut]);
        }
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0xff;
            let _ = decode(&bad);
        }
    }

    #[test]
    fn paths_select_as_mysql() {
        let doc = j(r#"{"a":[1,2,{"b":3}],"c":{"b":4},"d e":5}"#);
        let sel = |p: &str| {
            Path::parse(p)
                .unwrap()
                .select(&doc)
                .iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(sel("$.a[1]"), ["2"]);
        assert_eq!(sel("$.a[last]"), [r#"{"b": 3}"#]);
        assert_eq!(sel("$.a[last-1]"), ["2"]);
        assert_eq!(sel("$.a[0 to 1]"), ["1", "2"]);
        assert_eq!(sel("$.\"d e\""), ["5"]);
        assert_eq!(sel("$**.b"), ["3", "4"]);
        assert_eq!(sel("$.c[0].b"), ["4"]);
        assert_eq!(sel("$.a[*]").len(), 3);
        assert!(sel("$.x").is_empty());
        assert!(Path::parse("a").is_err());
        assert!(Path::parse("$.").is_err());
        assert!(Path::parse("$**").is_err());
        assert!(Path::parse("$[1").is_err());
    }

    #[test]
    fn set_insert_replace_and_remove_follow_mysql() {
        let p = |s: &str| Path::parse(s).unwrap();
        let mut d = j(r#"{"a":1,"b":[1,2]}"#);
        p("$.a").set(&mut d, Json::Int(9), false, true);
        p("$.c").set(&mut d, Json::Int(3), true, false);
        p("$.b[5]").set(&mut d, Json::Int(7), true, true);
        p("$.a[1]").set(&mut d, Json::Int(8), true, true);
        assert_eq!(d.to_string(), r#"{"a": [9, 8], "b": [1, 2, 7], "c": 3}"#);
        p("$.b[0]").remove(&mut d);
        p("$.c").remove(&mut d);
        assert_eq!(d.to_string(), r#"{"a": [9, 8], "b": [2, 7]}"#);
        assert!(p("$.a[0]").array_insert(&mut d, Json::Int(0)));
        p("$.b").append(&mut d, Json::Int(1));
        assert_eq!(d.to_string(), r#"{"a": [0, 9, 8], "b": [2, 7, 1]}"#);
    }

    #[test]
    fn ordering_uses_type_precedence_then_values() {
        assert_eq!(compare(&j("1"), &j("1.0")), Ordering::Equal);
        assert_eq!(compare(&j("2"), &j("\"1\"")), Ordering::Less);
        assert_eq!(compare(&j("[1,2]"), &j("[1,3]")), Ordering::Less);
        assert_eq!(compare(&j("true"), &j("[1]")), Ordering::Greater);
        assert_eq!(
            compare(&j(r#"{"a":1}"#), &j(r#"{"a":1.0}"#)),
            Ordering::Equal
        );
        assert_eq!(
            compare(&j("18446744073709551615"), &j("-1")),
            Ordering::Greater
        );
    }
}
