//! Column types as the catalog stores them, and how a [`Value`] is made to
//! fit one (MySQL's implicit conversions on write).
//!
//! A type is what `CREATE TABLE` said (`INT UNSIGNED`, `VARCHAR(20) COLLATE
//! utf8mb4_general_ci`, `DECIMAL(10,2)`, `ENUM('a','b')`). [`ColumnType::coerce`]
//! turns any value into the canonical in-memory form for that type:
//!
//! | kind                         | canonical value                   |
//! |------------------------------|-----------------------------------|
//! | integers, BOOL, YEAR         | `Int` (signed) / `UInt` (unsigned) |
//! | FLOAT / DOUBLE               | `Float` / `Double`                |
//! | DECIMAL(p,s)                 | `Decimal` with exactly `s` digits |
//! | CHAR/VARCHAR/TEXT/ENUM       | `Text`                            |
//! | BINARY/VARBINARY/BLOB        | `Bytes`                           |
//! | DATE / DATETIME, TIMESTAMP   | `Date` / `DateTime`               |
//! | TIME                         | `Time`                            |
//! | JSON                         | `Json`                            |

use serde::{Deserialize, Serialize};

use crate::error::{ErrorKind, SqlError};
use crate::executor::eval;
use crate::value::Value;

/// The kind of a column type.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    /// TINYINT (and BOOL).
    TinyInt,
    /// SMALLINT.
    SmallInt,
    /// MEDIUMINT.
    MediumInt,
    /// INT / INTEGER.
    Int,
    /// BIGINT.
    BigInt,
    /// YEAR.
    Year,
    /// DECIMAL(precision, scale).
    Decimal {
        /// Total digits (1-65).
        precision: u8,
        /// Digits after the point (0-30).
        scale: u8,
    },
    /// FLOAT.
    Float,
    /// DOUBLE / REAL.
    Double,
    /// CHAR(n): fixed length, trailing spaces removed on read.
    Char(u32),
    /// VARCHAR(n).
    VarChar(u32),
    /// TINYTEXT .. LONGTEXT (maximum length in bytes).
    Text(u32),
    /// BINARY(n).
    Binary(u32),
    /// VARBINARY(n).
    VarBinary(u32),
    /// TINYBLOB .. LONGBLOB (maximum length in bytes).
    Blob(u32),
    /// DATE.
    Date,
    /// DATETIME(fsp).
    DateTime(u8),
    /// TIMESTAMP(fsp).
    Timestamp(u8),
    /// TIME(fsp).
    Time(u8),
    /// ENUM('a', 'b', ...).
    Enum(Vec<String>),
    /// JSON.
    Json,
}

/// How strings of a column compare.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Collation {
    /// `utf8mb4_bin`: byte order.
    Bin,
    /// `utf8mb4_general_ci` (the default, as MySQL's and MariaDB's
    /// case-insensitive defaults; TiDB's is `utf8mb4_bin`):
    /// case-insensitive, trailing spaces ignored.
    #[default]
    GeneralCi,
}

impl Collation {
    /// The collation named `name` (`utf8mb4_bin`, `utf8mb4_general_ci`,
    /// `utf8_bin`, `binary`, ...).
    pub fn from_name(name: &str) -> Option<Collation> {
        let n = name.to_ascii_lowercase();
        if n.ends_with("_bin") || n == "binary" {
            Some(Collation::Bin)
        } else if n.ends_with("_general_ci")
            || n.ends_with("_unicode_ci")
            || n.ends_with("_0900_ai_ci")
        {
            Some(Collation::GeneralCi)
        } else {
            None
        }
    }

    /// The collation's name for `SHOW` output.
    pub fn name(self) -> &'static str {
        match self {
            Collation::Bin => "utf8mb4_bin",
            Collation::GeneralCi => "utf8mb4_general_ci",
        }
    }

    /// The sort key of `s`: equal keys mean equal strings under this
    /// collation, and keys order as the strings do.
    pub fn sort_key(self, s: &str) -> Vec<u8> {
        match self {
            Collation::Bin => s.as_bytes().to_vec(),
            Collation::GeneralCi => {
                let t = s.trim_end_matches(' ');
                let mut out = Vec::with_capacity(t.len() * 2);
                for c in t.chars() {
                    out.extend_from_slice(&general_ci_weight(c).to_be_bytes());
                }
                out
            }
        }
    }

    /// Orders `a` and `b` as their sort keys order, without building them
    /// (ORDER BY and WHERE compare strings this way once per pair).
    pub fn cmp_str(self, a: &str, b: &str) -> std::cmp::Ordering {
        match self {
            Collation::Bin => a.as_bytes().cmp(b.as_bytes()),
            Collation::GeneralCi => a
                .trim_end_matches(' ')
                .chars()
                .map(general_ci_weight)
                .cmp(b.trim_end_matches(' ').chars().map(general_ci_weight)),
        }
    }
}

/// utf8mb4_general_ci: one weight per character, simple upper-case folding;
/// characters outside the BMP weigh as U+FFFD.
fn general_ci_weight(c: char) -> u16 {
    if c.is_ascii() {
        return c.to_ascii_uppercase() as u16;
    }
    if (c as u32) > 0xFFFF {
        return 0xFFFD;
    }
    let mut up = c.to_uppercase();
    match (up.next(), up.next()) {
        (Some(x), None) if (x as u32) <= 0xFFFF => x as u32 as u16,
        _ => c as u32 as u16,
    }
}

/// A column's type.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnType {
    /// The kind.
    pub kind: Kind,
    /// `UNSIGNED` (integers, decimals, floats).
    #[serde(default)]
    pub unsigned: bool,
    /// String comparison rule (string kinds only).
    #[serde(default)]
    pub collation: Collation,
}

fn out_of_range(col: &str) -> SqlError {
    SqlError::of(
        ErrorKind::WarnDataOutOfRange,
        format!("Out of range value for column '{col}' at row 1"),
    )
}

fn too_long(col: &str) -> SqlError {
    SqlError::of(
        ErrorKind::DataTooLong,
        format!("Data too long for column '{col}' at row 1"),
    )
}

/// ERROR 1366 (incorrect value for a column); 1292 (22007) for temporal
/// kinds, as MySQL reports them.
pub fn incorrect_value(kind: &str, v: &Value, col: &str) -> SqlError {
    let temporal = matches!(kind, "date" | "datetime" | "time" | "timestamp");
    SqlError {
        code: if temporal { 1292 } else { 1366 },
        state: if temporal { "22007" } else { "HY000" },
        message: format!("Incorrect {kind} value: '{v}' for column '{col}' at row 1"),
    }
}

impl ColumnType {
    /// A signed type of `kind` with the default collation.
    pub fn new(kind: Kind) -> ColumnType {
        ColumnType {
            kind,
            unsigned: false,
            collation: Collation::Bin,
        }
    }

    /// Whether values are integers.
    pub fn is_integer(&self) -> bool {
        matches!(
            self.kind,
            Kind::TinyInt
                | Kind::SmallInt
                | Kind::MediumInt
                | Kind::Int
                | Kind::BigInt
                | Kind::Year
        )
    }

    /// Whether values are character strings (compared by collation).
    pub fn is_text(&self) -> bool {
        matches!(
            self.kind,
            Kind::Char(_) | Kind::VarChar(_) | Kind::Text(_) | Kind::Enum(_)
        )
    }

    /// Whether values are byte strings.
    pub fn is_binary(&self) -> bool {
        matches!(
            self.kind,
            Kind::Binary(_) | Kind::VarBinary(_) | Kind::Blob(_)
        )
    }

    /// The integer range of an integer type.
    fn int_range(&self) -> (i128, i128) {
        let bits = match self.kind {
            Kind::TinyInt => 8,
            Kind::SmallInt => 16,
            Kind::MediumInt => 24,
            Kind::Int => 32,
            Kind::Year => return (0, 2155),
            _ => 64,
        };
        if self.unsigned {
            (0, (1i128 << bits) - 1)
        } else {
            (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1)
        }
    }

    /// The SQL spelling, as `SHOW CREATE TABLE` and `DESCRIBE` print it.
    pub fn sql(&self) -> String {
        let mut s = match &self.kind {
            Kind::TinyInt => "tinyint".to_string(),
            Kind::SmallInt => "smallint".into(),
            Kind::MediumInt => "mediumint".into(),
            Kind::Int => "int".into(),
            Kind::BigInt => "bigint".into(),
            Kind::Year => "year".into(),
            Kind::Decimal { precision, scale } => format!("decimal({precision},{scale})"),
            Kind::Float => "float".into(),
            Kind::Double => "double".into(),
            Kind::Char(n) => format!("char({n})"),
            Kind::VarChar(n) => format!("varchar({n})"),
            Kind::Text(n) => match n {
                255 => "tinytext".into(),
                65535 => "text".into(),
                16777215 => "mediumtext".into(),
                _ => "longtext".into(),
            },
            Kind::Binary(n) => format!("binary({n})"),
            Kind::VarBinary(n) => format!("varbinary({n})"),
            Kind::Blob(n) => match n {
                255 => "tinyblob".into(),
                65535 => "blob".into(),
                16777215 => "mediumblob".into(),
                _ => "longblob".into(),
            },
            Kind::Date => "date".into(),
            Kind::DateTime(0) => "datetime".into(),
            Kind::DateTime(f) => format!("datetime({f})"),
            Kind::Timestamp(0) => "timestamp".into(),
            Kind::Timestamp(f) => format!("timestamp({f})"),
            Kind::Time(0) => "time".into(),
            Kind::Time(f) => format!("time({f})"),
            Kind::Json => "json".into(),
            Kind::Enum(items) => format!(
                "enum({})",
                items
                    .iter()
                    .map(|i| format!("'{}'", i.replace('\'', "''")))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        };
        if self.unsigned {
            s.push_str(" unsigned");
        }
        s
    }

    /// Converts `v` to this type's canonical value (see the module docs),
    /// or fails as MySQL's strict mode does. `col` names the column in
    /// errors.
    pub fn coerce(&self, v: Value, col: &str) -> Result<Value, SqlError> {
        if v.is_null() {
            return Ok(Value::Null);
        }
        match &self.kind {
            k if self.is_integer() => {
                let _ = k;
                let i: i128 = match &v {
                    Value::Int(i) => i128::from(*i),
                    Value::UInt(u) => i128::from(*u),
                    Value::Float(_) | Value::Double(_) | Value::Decimal(_) => {
                        let f = eval::to_f64(&v);
                        if !f.is_finite() {
                            return Err(out_of_range(col));
                        }
                        f.round() as i128
                    }
                    Value::Text(s) => {
                        let t = s.trim();
                        match t.parse::<i128>() {
                            Ok(i) => i,
                            Err(_) => match t.parse::<f64>() {
                                Ok(f) if f.is_finite() => f.round() as i128,
                                _ => return Err(incorrect_value("integer", &v, col)),
                            },
                        }
                    }
                    Value::Bytes(b) => {
                        let t = String::from_utf8_lossy(b);
                        t.trim()
                            .parse::<i128>()
                            .map_err(|_| incorrect_value("integer", &v, col))?
                    }
                    Value::Date { year, month, day } => {
                        i128::from(*year) * 10000 + i128::from(*month) * 100 + i128::from(*day)
                    }
                    other => return Err(incorrect_value("integer", other, col)),
                };
                let (lo, hi) = self.int_range();
                if i < lo || i > hi {
                    return Err(out_of_range(col));
                }
                Ok(if self.unsigned {
                    Value::UInt(i as u64)
                } else {
                    Value::Int(i as i64)
                })
            }
            Kind::Float => Ok(Value::Float(self.float(&v, col)? as f32)),
            Kind::Double => Ok(Value::Double(self.float(&v, col)?)),
            Kind::Decimal { precision, scale } => {
                let text = match &v {
                    Value::Text(s) => s.trim().to_string(),
                    Value::Bytes(b) => String::from_utf8_lossy(b).trim().to_string(),
                    Value::Float(_) | Value::Double(_) => {
                        format!("{:.*}", *scale as usize, eval::to_f64(&v))
                    }
                    other => other.to_string(),
                };
                let d = decimal_round(&text, *scale)
                    .ok_or_else(|| incorrect_value("decimal", &v, col))?;
                let int_digits = d
                    .trim_start_matches('-')
                    .split('.')
                    .next()
                    .unwrap_or("")
                    .trim_start_matches('0')
                    .len();
                if int_digits > usize::from(precision.saturating_sub(*scale))
                    || (self.unsigned && d.starts_with('-'))
                {
                    return Err(out_of_range(col));
                }
                Ok(Value::Decimal(d))
            }
            Kind::Char(n) | Kind::VarChar(n) | Kind::Text(n) => {
                let s = match v {
                    Value::Text(s) => s,
                    Value::Bytes(b) => String::from_utf8(b).map_err(|e| {
                        incorrect_value("string", &Value::Bytes(e.into_bytes()), col)
                    })?,
                    other => other.to_string(),
                };
                let s = if matches!(self.kind, Kind::Char(_)) {
                    s.trim_end_matches(' ').to_string()
                } else {
                    s
                };
                let len = if matches!(self.kind, Kind::Text(_)) {
                    s.len()
                } else {
                    s.chars().count()
                };
                if len > *n as usize {
                    return Err(too_long(col));
                }
                Ok(Value::Text(s))
            }
            Kind::Binary(n) | Kind::VarBinary(n) | Kind::Blob(n) => {
                let mut b = match v {
                    Value::Bytes(b) => b,
                    Value::Text(s) => s.into_bytes(),
                    other => other.to_string().into_bytes(),
                };
                if b.len() > *n as usize {
                    return Err(too_long(col));
                }
                if let Kind::Binary(n) = self.kind {
                    b.resize(n as usize, 0);
                }
                Ok(Value::Bytes(b))
            }
            Kind::Json => crate::engine::expr::json::for_column(v, col),
            Kind::Enum(items) => {
                let s = match &v {
                    Value::Int(i) if *i >= 1 && (*i as usize) <= items.len() => {
                        return Ok(Value::Text(items[*i as usize - 1].clone()))
                    }
                    Value::UInt(i) if *i >= 1 && (*i as usize) <= items.len() => {
                        return Ok(Value::Text(items[*i as usize - 1].clone()))
                    }
                    other => other.to_string(),
                };
                items
                    .iter()
                    .find(|i| Collation::GeneralCi.sort_key(i) == Collation::GeneralCi.sort_key(&s))
                    .map(|i| Value::Text(i.clone()))
                    .ok_or_else(|| {
                        SqlError::of(
                            ErrorKind::WarnDataTruncated,
                            format!("Data truncated for column '{col}' at row 1"),
                        )
                    })
            }
            Kind::Date => match to_datetime(&v) {
                Some(Value::DateTime {
                    year, month, day, ..
                }) => Ok(Value::Date { year, month, day }),
                _ => Err(incorrect_value("date", &v, col)),
            },
            Kind::DateTime(fsp) | Kind::Timestamp(fsp) => match to_datetime(&v) {
                Some(Value::DateTime {
                    year,
                    month,
                    day,
                    hour,
                    minute,
                    second,
                    micros,
                }) => Ok(Value::DateTime {
                    year,
                    month,
                    day,
                    hour,
                    minute,
                    second,
                    micros: truncate_micros(micros, *fsp),
                }),
                _ => Err(incorrect_value("datetime", &v, col)),
            },
            Kind::Time(fsp) => match to_time(&v) {
                Some(Value::Time {
                    negative,
                    days,
                    hours,
                    minutes,
                    seconds,
                    micros,
                }) => Ok(Value::Time {
                    negative,
                    days,
                    hours,
                    minutes,
                    seconds,
                    micros: truncate_micros(micros, *fsp),
                }),
                _ => Err(incorrect_value("time", &v, col)),
            },
            _ => unreachable!("integer kinds handled above"),
        }
    }

    /// [`ColumnType::coerce`] as `INSERT IGNORE` does it: a value that does
    /// not fit is clipped to the type's range, cut to its length, or
    /// replaced by the type's zero value, instead of failing.
    pub fn clip(&self, v: Value, col: &str) -> Value {
        if let Ok(x) = self.coerce(v.clone(), col) {
            return x;
        }
        let f = eval::to_f64(&v);
        let f = if f.is_finite() { f } else { 0.0 };
        match &self.kind {
            _ if self.is_integer() => {
                let (lo, hi) = self.int_range();
                let i = if f >= hi as f64 {
                    hi
                } else if f <= lo as f64 {
                    lo
                } else {
                    f.round() as i128
                };
                if self.unsigned {
                    Value::UInt(i as u64)
                } else {
                    Value::Int(i as i64)
                }
            }
            Kind::Decimal { precision, scale } => {
                let max = 10f64.powi(i32::from(*precision) - i32::from(*scale))
                    - 10f64.powi(-i32::from(*scale));
                let lo = if self.unsigned { 0.0 } else { -max };
                Value::Decimal(
                    decimal_round(
                        &format!("{:.*}", usize::from(*scale), f.clamp(lo, max)),
                        *scale,
                    )
                    .unwrap_or_else(|| "0".into()),
                )
            }
            Kind::Char(n) | Kind::VarChar(n) => {
                Value::Text(v.to_string().chars().take(*n as usize).collect())
            }
            Kind::Text(n) => {
                let s = v.to_string();
                let mut end = (*n as usize).min(s.len());
                while !s.is_char_boundary(end) {
                    end -= 1;
                }
                Value::Text(s[..end].to_string())
            }
            Kind::Binary(n) | Kind::VarBinary(n) | Kind::Blob(n) => {
                let mut b = v.to_text().unwrap_or_default();
                b.truncate(*n as usize);
                if let Kind::Binary(n) = self.kind {
                    b.resize(n as usize, 0);
                }
                Value::Bytes(b)
            }
            _ => self.zero(),
        }
    }

    /// The type's zero value (what `INSERT IGNORE` stores for a NULL in a
    /// NOT NULL column).
    pub fn zero(&self) -> Value {
        match &self.kind {
            _ if self.is_integer() => {
                if self.unsigned {
                    Value::UInt(0)
                } else {
                    Value::Int(0)
                }
            }
            Kind::Decimal { scale, .. } => {
                Value::Decimal(decimal_round("0", *scale).unwrap_or_else(|| "0".into()))
            }
            Kind::Float => Value::Float(0.0),
            Kind::Double => Value::Double(0.0),
            Kind::Binary(n) => Value::Bytes(vec![0; *n as usize]),
            Kind::VarBinary(_) | Kind::Blob(_) => Value::Bytes(Vec::new()),
            Kind::Enum(items) => Value::Text(items.first().cloned().unwrap_or_default()),
            Kind::Json => Value::Json(Box::new(crate::json::Json::Null)),
            Kind::Date => Value::Date {
                year: 0,
                month: 0,
                day: 0,
            },
            Kind::DateTime(_) | Kind::Timestamp(_) => Value::DateTime {
                year: 0,
                month: 0,
                day: 0,
                hour: 0,
                minute: 0,
                second: 0,
                micros: 0,
            },
            Kind::Time(_) => Value::Time {
                negative: false,
                days: 0,
                hours: 0,
                minutes: 0,
                seconds: 0,
                micros: 0,
            },
            _ => Value::Text(String::new()),
        }
    }

    fn float(&self, v: &Value, col: &str) -> Result<f64, SqlError> {
        let f = match v {
            Value::Text(s) => s
                .trim()
                .parse::<f64>()
                .map_err(|_| incorrect_value("double", v, col))?,
            other => eval::to_f64(other),
        };
        if !f.is_finite() || (self.unsigned && f < 0.0) {
            return Err(out_of_range(col));
        }
        Ok(f)
    }
}

fn truncate_micros(micros: u32, fsp: u8) -> u32 {
    let div = 10u32.pow(6 - u32::from(fsp.min(6)));
    micros / div * div
}

/// Rounds decimal text to `scale` fractional digits (half away from zero);
/// `None` if it is not a number.
pub fn decimal_round(text: &str, scale: u8) -> Option<String> {
    let (neg, body) = match text.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    // Accept exponent forms by going through f64 (rare for DECIMAL input).
    if body.contains(['e', 'E']) {
        let f: f64 = text.parse().ok()?;
        return decimal_round(&format!("{:.*}", usize::from(scale) + 2, f), scale);
    }
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    if (int.is_empty() && frac.is_empty())
        || !int.bytes().chain(frac.bytes()).all(|c| c.is_ascii_digit())
    {
        return None;
    }
    let scale = usize::from(scale);
    let mut digits: Vec<u8> = format!("{}{}", if int.is_empty() { "0" } else { int }, frac)
        .bytes()
        .map(|c| c - b'0')
        .collect();
    let int_len = digits.len() - frac.len();
    let keep = int_len + scale;
    let round_up = frac.len() > scale && digits[keep] >= 5;
    digits.truncate(keep);
    while digits.len() < keep {
        digits.push(0);
    }
    if round_up {
        let mut i = digits.len();
        loop {
            if i == 0 {
                digits.insert(0, 1);
                break;
            }
            i -= 1;
            if digits[i] == 9 {
                digits[i] = 0;
            } else {
                digits[i] += 1;
                break;
            }
        }
    }
    let int_len = digits.len() - scale;
    let mut int_part: String = digits[..int_len]
        .iter()
        .map(|d| (d + b'0') as char)
        .collect();
    let trimmed = int_part.trim_start_matches('0');
    int_part = if trimmed.is_empty() {
        "0".into()
    } else {
        trimmed.into()
    };
    let frac_part: String = digits[int_len..]
        .iter()
        .map(|d| (d + b'0') as char)
        .collect();
    let zero = int_part == "0" && frac_part.bytes().all(|c| c == b'0');
    let mut out = String::new();
    if neg && !zero {
        out.push('-');
    }
    out.push_str(&int_part);
    if scale > 0 {
        out.push('.');
        out.push_str(&frac_part);
    }
    Some(out)
}

fn num(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Days in `month` of `year` (proleptic Gregorian); 0 for a bad month.
pub fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400) => {
            29
        }
        2 => 28,
        _ => 0,
    }
}

/// A value as a `DateTime` (dates get midnight), if it reads as one:
/// `'YYYY-MM-DD[ hh:mm:ss[.ffffff]]'`, `YYYYMMDD[hhmmss]` numbers.
pub fn to_datetime(v: &Value) -> Option<Value> {
    match v {
        Value::DateTime { .. } => Some(v.clone()),
        Value::Date { year, month, day } => Some(Value::DateTime {
            year: *year,
            month: *month,
            day: *day,
            hour: 0,
            minute: 0,
            second: 0,
            micros: 0,
        }),
        Value::Int(_) | Value::UInt(_) => {
            let s = v.to_string();
            let (d, t) = if s.len() > 8 {
                s.split_at(s.len() - 6)
            } else {
                (s.as_str(), "000000")
            };
            if d.len() != 8 {
                return None;
            }
            parse_datetime(&format!(
                "{}-{}-{} {}:{}:{}",
                &d[..4],
                &d[4..6],
                &d[6..8],
                &t[..2],
                &t[2..4],
                &t[4..6]
            ))
        }
        Value::Text(s) => parse_datetime(s.trim()),
        Value::Bytes(b) => parse_datetime(std::str::from_utf8(b).ok()?.trim()),
        _ => None,
    }
}

fn parse_datetime(s: &str) -> Option<Value> {
    let (date, time) = match s.split_once([' ', 'T']) {
        Some((d, t)) => (d, t.trim()),
        None => (s, ""),
    };
    let mut dp = date.split('-');
    let year = num(dp.next()?)?;
    let month = num(dp.next()?)?;
    let day = num(dp.next()?)?;
    if dp.next().is_some() || year > 9999 {
        return None;
    }
    let zero = month == 0 && day == 0;
    if !zero && (month > 12 || day == 0 || day > days_in_month(year, month)) {
        return None;
    }
    let (mut hour, mut minute, mut second, mut micros) = (0, 0, 0, 0);
    if !time.is_empty() {
        let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
        let mut tp = hms.split(':');
        hour = num(tp.next()?)?;
        minute = tp.next().map_or(Some(0), num)?;
        second = tp.next().map_or(Some(0), num)?;
        if hour > 23 || minute > 59 || second > 59 {
            return None;
        }
        if !frac.is_empty() {
            let f: String = frac.chars().chain(std::iter::repeat('0')).take(6).collect();
            micros = num(&f)?;
        }
    }
    Some(Value::DateTime {
        year: year as u16,
        month: month as u8,
        day: day as u8,
        hour: hour as u8,
        minute: minute as u8,
        second: second as u8,
        micros,
    })
}

/// A value as a `Time`, if it reads as one: `'[-][D ]hh:mm:ss[.f]'`,
/// `hhmmss` numbers.
pub fn to_time(v: &Value) -> Option<Value> {
    let s = match v {
        Value::Time { .. } => return Some(v.clone()),
        Value::DateTime {
            hour,
            minute,
            second,
            micros,
            ..
        } => {
            return Some(Value::Time {
                negative: false,
                days: 0,
                hours: *hour,
                minutes: *minute,
                seconds: *second,
                micros: *micros,
            })
        }
        Value::Int(i) => {
            let neg = *i < 0;
            let a = i.unsigned_abs();
            format!(
                "{}{}:{}:{}",
                if neg { "-" } else { "" },
                a / 10000,
                a / 100 % 100,
                a % 100
            )
        }
        Value::Text(s) => s.trim().to_string(),
        _ => return None,
    };
    let (negative, s) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.as_str()),
    };
    let (days, s) = match s.split_once(' ') {
        Some((d, r)) => (num(d)?, r),
        None => (0, s),
    };
    let (hms, frac) = s.split_once('.').unwrap_or((s, ""));
    let mut tp = hms.split(':');
    let h = num(tp.next()?)?;
    let m = tp.next().map_or(Some(0), num)?;
    let sec = tp.next().map_or(Some(0), num)?;
    if m > 59 || sec > 59 {
        return None;
    }
    let total_h = days * 24 + h;
    if total_h > 838 {
        return None;
    }
    let micros = if frac.is_empty() {
        0
    } else {
        num(&frac
            .chars()
            .chain(std::iter::repeat('0'))
            .take(6)
            .collect::<String>())?
    };
    Some(Value::Time {
        negative,
        days: total_h / 24,
        hours: (total_h % 24) as u8,
        minutes: m as u8,
        seconds: sec as u8,
        micros,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_range_checked_and_strings_parsed() {
        let t = ColumnType::new(Kind::TinyInt);
        assert_eq!(t.coerce(Value::Int(127), "a").unwrap(), Value::Int(127));
        assert_eq!(t.coerce(Value::Int(128), "a").unwrap_err().code, 1264);
        assert_eq!(
            t.coerce(Value::Text(" 12 ".into()), "a").unwrap(),
            Value::Int(12)
        );
        assert_eq!(
            t.coerce(Value::Text("x".into()), "a").unwrap_err().code,
            1366
        );
        let u = ColumnType {
            unsigned: true,
            ..ColumnType::new(Kind::BigInt)
        };
        assert_eq!(u.coerce(Value::Int(-1), "a").unwrap_err().code, 1264);
        assert_eq!(
            u.coerce(Value::Decimal("2.5".into()), "a").unwrap(),
            Value::UInt(3)
        );
    }

    #[test]
    fn insert_ignore_clips_to_the_type_instead_of_failing() {
        let t = ColumnType::new(Kind::TinyInt);
        assert_eq!(t.clip(Value::Int(1000), "a"), Value::Int(127));
        assert_eq!(t.clip(Value::Int(-1000), "a"), Value::Int(-128));
        let u = ColumnType {
            unsigned: true,
            ..ColumnType::new(Kind::Int)
        };
        assert_eq!(u.clip(Value::Int(-5), "a"), Value::UInt(0));
        let s = ColumnType::new(Kind::VarChar(3));
        assert_eq!(
            s.clip(Value::Text("abcdef".into()), "a"),
            Value::Text("abc".into())
        );
        let d = ColumnType::new(Kind::Decimal {
            precision: 4,
            scale: 2,
        });
        assert_eq!(
            d.clip(Value::Int(1000), "a"),
            Value::Decimal("99.99".into())
        );
        assert_eq!(ColumnType::new(Kind::Int).zero(), Value::Int(0));
    }

    #[test]
    fn decimals_round_half_away_from_zero_and_check_precision() {
        let t = ColumnType::new(Kind::Decimal {
            precision: 5,
            scale: 2,
        });
        assert_eq!(
            t.coerce(Value::Text("1.005".into()), "d").unwrap(),
            Value::Decimal("1.01".into())
        );
        assert_eq!(
            t.coerce(Value::Int(-3), "d").unwrap(),
            Value::Decimal("-3.00".into())
        );
        assert_eq!(t.coerce(Value::Int(1000), "d").unwrap_err().code, 1264);
        assert_eq!(decimal_round("-0.001", 2).unwrap(), "0.00");
        assert_eq!(decimal_round("9.995", 2).unwrap(), "10.00");
    }

    #[test]
    fn strings_are_length_checked_and_char_trims_trailing_spaces() {
        let t = ColumnType::new(Kind::VarChar(3));
        assert_eq!(
            t.coerce(Value::Text("abcd".into()), "s").unwrap_err().code,
            1406
        );
        assert_eq!(
            t.coerce(Value::Text("äöü".into()), "s").unwrap(),
            Value::Text("äöü".into())
        );
        let c = ColumnType::new(Kind::Char(5));
        assert_eq!(
            c.coerce(Value::Text("ab  ".into()), "s").unwrap(),
            Value::Text("ab".into())
        );
        assert_eq!(
            c.coerce(Value::Int(42), "s").unwrap(),
            Value::Text("42".into())
        );
    }

    #[test]
    fn dates_and_times_parse_mysql_forms() {
        let d = ColumnType::new(Kind::Date);
        assert_eq!(
            d.coerce(Value::Text("2024-02-29".into()), "d").unwrap(),
            Value::Date {
                year: 2024,
                month: 2,
                day: 29
            }
        );
        assert!(d.coerce(Value::Text("2023-02-29".into()), "d").is_err());
        let dt = ColumnType::new(Kind::DateTime(0));
        assert_eq!(
            dt.coerce(Value::Int(20240102030405), "d")
                .unwrap()
                .to_string(),
            "2024-01-02 03:04:05"
        );
        let t = ColumnType::new(Kind::Time(0));
        assert_eq!(
            t.coerce(Value::Text("-838:59:59".into()), "t")
                .unwrap()
                .to_string(),
            "-838:59:59"
        );
    }

    #[test]
    fn general_ci_folds_case_and_trailing_spaces() {
        let c = Collation::GeneralCi;
        assert_eq!(c.sort_key("Abc  "), c.sort_key("aBC"));
        assert!(c.sort_key("a") < c.sort_key("B"));
        assert_ne!(Collation::Bin.sort_key("a"), Collation::Bin.sort_key("A"));
    }

    #[test]
    fn cmp_str_orders_as_the_sort_keys_do() {
        // Case, trailing spaces, multi-character upper cases, titlecase,
        // dotless i, characters outside the BMP, controls.
        let words: Vec<&str> =
            "| |a|A|a |ab|aB |b|B|abc|ab c|ß|SS|é|É|e|z|😀|�|ǅ|ǆ|Ǆ|ı|I|i|\t|a\t|0|~"
                .split('|')
                .collect();
        for c in [Collation::GeneralCi, Collation::Bin] {
            for a in &words {
                for b in &words {
                    assert_eq!(
                        c.cmp_str(a, b),
                        c.sort_key(a).cmp(&c.sort_key(b)),
                        "{c:?}: {a:?} vs {b:?}"
                    );
                }
            }
        }
    }
}
