//! Values that flow between the protocol and an executor: statement
//! parameters decoded from the binary protocol and the cells of result rows.
//!
//! [`Value::to_text`] gives the text-protocol form; the binary-protocol form
//! is written by `protocol::resultset`.

use std::fmt;

use crate::json::Json;

/// One SQL value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// A signed integer.
    Int(i64),
    /// An unsigned integer (`BIGINT UNSIGNED` parameters, bit values).
    UInt(u64),
    /// A single-precision float (`FLOAT` parameters).
    Float(f32),
    /// A double-precision float.
    Double(f64),
    /// An exact decimal, as its canonical text (`-12.340`).
    Decimal(String),
    /// A character string (utf8mb4).
    Text(String),
    /// A byte string (blobs, binary, strings that are not UTF-8).
    Bytes(Vec<u8>),
    /// A `DATE`.
    Date {
        /// Year.
        year: u16,
        /// Month 1-12 (0 in zero dates).
        month: u8,
        /// Day 1-31 (0 in zero dates).
        day: u8,
    },
    /// A `DATETIME` / `TIMESTAMP`.
    DateTime {
        /// Year.
        year: u16,
        /// Month.
        month: u8,
        /// Day.
        day: u8,
        /// Hour.
        hour: u8,
        /// Minute.
        minute: u8,
        /// Second.
        second: u8,
        /// Microseconds.
        micros: u32,
    },
    /// A `TIME` (a duration, possibly negative, up to 838:59:59).
    Time {
        /// Negative duration.
        negative: bool,
        /// Whole days.
        days: u32,
        /// Hours (0-23).
        hours: u8,
        /// Minutes.
        minutes: u8,
        /// Seconds.
        seconds: u8,
        /// Microseconds.
        micros: u32,
    },
    /// A JSON document (`JSON` columns, `JSON_*` functions, `CAST(.. AS
    /// JSON)`).
    Json(Box<Json>),
}

impl Value {
    /// The text-protocol encoding (`None` for NULL).
    pub fn to_text(&self) -> Option<Vec<u8>> {
        match self {
            Value::Null => None,
            Value::Bytes(b) => Some(b.clone()),
            other => Some(other.to_string().into_bytes()),
        }
    }

    /// Whether this is NULL.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }
}

fn frac(micros: u32) -> String {
    if micros == 0 {
        String::new()
    } else {
        format!(".{micros:06}")
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("NULL"),
            Value::Int(i) => write!(f, "{i}"),
            Value::UInt(u) => write!(f, "{u}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::Double(x) => write!(f, "{x}"),
            Value::Decimal(d) => f.write_str(d),
            Value::Text(s) => f.write_str(s),
            Value::Bytes(b) => f.write_str(&String::from_utf8_lossy(b)),
            Value::Json(j) => write!(f, "{j}"),
            Value::Date { year, month, day } => write!(f, "{year:04}-{month:02}-{day:02}"),
            Value::DateTime {
                year,
                month,
                day,
                hour,
                minute,
                second,
                micros,
            } => write!(
                f,
                "{year:04}-{month:02}-{day:02} {hour:02}:{minute:02}:{second:02}{}",
                frac(*micros)
            ),
            Value::Time {
                negative,
                days,
                hours,
                minutes,
                seconds,
                micros,
            } => write!(
                f,
                "{}{:02}:{minutes:02}:{seconds:02}{}",
                if *negative { "-" } else { "" },
                u64::from(*days) * 24 + u64::from(*hours),
                frac(*micros)
            ),
        }
    }
}
