//! Building server packets: OK, ERR, EOF, column definitions, and rows in
//! the text and binary protocols.
//!
//! With `CLIENT_DEPRECATE_EOF` negotiated, the EOF after column definitions
//! is omitted and the one after the rows becomes an OK packet with the 0xFE
//! header, as MySQL 5.7.5+ does.

use super::codec::{put_lenenc_bytes, put_lenenc_int};
use super::consts::ty;
use crate::backend::Column;
use crate::error::SqlError;
use crate::value::Value;

/// An OK packet.
pub fn ok(affected: u64, last_insert_id: u64, status: u16, info: &str) -> Vec<u8> {
    let mut p = vec![0x00];
    put_lenenc_int(&mut p, affected);
    put_lenenc_int(&mut p, last_insert_id);
    p.extend_from_slice(&status.to_le_bytes());
    p.extend_from_slice(&0u16.to_le_bytes());
    if !info.is_empty() {
        // Clients (libmysql, libmariadb) read the message length-encoded.
        put_lenenc_bytes(&mut p, info.as_bytes());
    }
    p
}

/// The end of a result set: EOF, or OK with a 0xFE header when EOF is
/// deprecated.
pub fn eof(status: u16, deprecate_eof: bool) -> Vec<u8> {
    if deprecate_eof {
        let mut p = ok(0, 0, status, "");
        p[0] = 0xfe;
        p
    } else {
        let mut p = vec![0xfe];
        p.extend_from_slice(&0u16.to_le_bytes());
        p.extend_from_slice(&status.to_le_bytes());
        p
    }
}

/// An ERR packet (4.1 format, with SQLSTATE).
pub fn err(e: &SqlError) -> Vec<u8> {
    let mut p = vec![0xff];
    p.extend_from_slice(&e.code.to_le_bytes());
    p.push(b'#');
    let state = e.state.as_bytes();
    let mut s = [b'H', b'Y', b'0', b'0', b'0'];
    for (d, c) in s.iter_mut().zip(state) {
        *d = *c;
    }
    p.extend_from_slice(&s);
    p.extend_from_slice(e.message.as_bytes());
    p
}

/// A column definition (protocol 4.1). `default` is only sent for
/// COM_FIELD_LIST.
pub fn column_def(c: &Column, field_list: bool) -> Vec<u8> {
    let mut p = Vec::with_capacity(32 + c.name.len());
    put_lenenc_bytes(&mut p, b"def");
    put_lenenc_bytes(&mut p, b""); // schema
    put_lenenc_bytes(&mut p, b""); // table
    put_lenenc_bytes(&mut p, b""); // org_table
    put_lenenc_bytes(&mut p, c.name.as_bytes());
    put_lenenc_bytes(&mut p, c.name.as_bytes()); // org_name
    p.push(0x0c);
    p.extend_from_slice(&c.charset.to_le_bytes());
    p.extend_from_slice(&c.length.to_le_bytes());
    p.push(c.ty);
    p.extend_from_slice(&c.flags.to_le_bytes());
    p.push(c.decimals);
    p.extend_from_slice(&[0, 0]);
    if field_list {
        p.push(0xfb); // no default value
    }
    p
}

/// A text-protocol row.
pub fn text_row(row: &[Value]) -> Vec<u8> {
    let mut p = Vec::new();
    for v in row {
        match v.to_text() {
            None => p.push(0xfb),
            Some(b) => put_lenenc_bytes(&mut p, &b),
        }
    }
    p
}

fn put_date(p: &mut Vec<u8>, year: u16, month: u8, day: u8, hms: Option<(u8, u8, u8, u32)>) {
    match hms {
        None if year == 0 && month == 0 && day == 0 => p.push(0),
        None => {
            p.push(4);
            p.extend_from_slice(&year.to_le_bytes());
            p.extend_from_slice(&[month, day]);
        }
        Some((h, m, s, us)) => {
            if us != 0 {
                p.push(11);
            } else {
                p.push(7);
            }
            p.extend_from_slice(&year.to_le_bytes());
            p.extend_from_slice(&[month, day, h, m, s]);
            if us != 0 {
                p.extend_from_slice(&us.to_le_bytes());
            }
        }
    }
}

fn as_i64(v: &Value) -> i64 {
    match v {
        Value::Int(i) => *i,
        Value::UInt(u) => *u as i64,
        Value::Float(f) => *f as i64,
        Value::Double(f) => *f as i64,
        other => other.to_string().trim().parse().unwrap_or(0),
    }
}

fn as_f64(v: &Value) -> f64 {
    match v {
        Value::Int(i) => *i as f64,
        Value::UInt(u) => *u as f64,
        Value::Float(f) => f64::from(*f),
        Value::Double(f) => *f,
        other => other.to_string().trim().parse().unwrap_or(0.0),
    }
}

/// One value in the binary protocol, encoded as column type `t` says.
fn binary_value(p: &mut Vec<u8>, t: u8, v: &Value) {
    match t {
        ty::TINY => p.push(as_i64(v) as u8),
        ty::SHORT | ty::YEAR => p.extend_from_slice(&(as_i64(v) as u16).to_le_bytes()),
        ty::LONG | ty::INT24 => p.extend_from_slice(&(as_i64(v) as u32).to_le_bytes()),
        ty::LONGLONG => match v {
            Value::UInt(u) => p.extend_from_slice(&u.to_le_bytes()),
            other => p.extend_from_slice(&as_i64(other).to_le_bytes()),
        },
        ty::FLOAT => p.extend_from_slice(&(as_f64(v) as f32).to_le_bytes()),
        ty::DOUBLE => p.extend_from_slice(&as_f64(v).to_le_bytes()),
        ty::DATE | ty::DATETIME | ty::TIMESTAMP => match v {
            Value::Date { year, month, day } => put_date(p, *year, *month, *day, None),
            Value::DateTime {
                year,
                month,
                day,
                hour,
                minute,
                second,
                micros,
            } => put_date(
                p,
                *year,
                *month,
                *day,
                Some((*hour, *minute, *second, *micros)),
            ),
            _ => p.push(0),
        },
        ty::TIME => match v {
            Value::Time {
                negative,
                days,
                hours,
                minutes,
                seconds,
                micros,
            } => {
                let zero = *days == 0 && *hours == 0 && *minutes == 0 && *seconds == 0;
                if zero && *micros == 0 {
                    p.push(0);
                    return;
                }
                p.push(if *micros != 0 { 12 } else { 8 });
                p.push(u8::from(*negative));
                p.extend_from_slice(&days.to_le_bytes());
                p.extend_from_slice(&[*hours, *minutes, *seconds]);
                if *micros != 0 {
                    p.extend_from_slice(&micros.to_le_bytes());
                }
            }
            _ => p.push(0),
        },
        _ => put_lenenc_bytes(p, &v.to_text().unwrap_or_default()),
    }
}

/// A binary-protocol row (COM_STMT_EXECUTE results).
pub fn binary_row(columns: &[Column], row: &[Value]) -> Vec<u8> {
    let mut p = vec![0x00];
    let bitmap_len = (columns.len() + 7 + 2) / 8;
    let start = p.len();
    p.resize(start + bitmap_len, 0);
    for (i, (c, v)) in columns.iter().zip(row).enumerate() {
        if v.is_null() {
            let bit = i + 2;
            p[start + bit / 8] |= 1 << (bit % 8);
        } else {
            binary_value(&mut p, c.ty, v);
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn err_packet_has_marker_state_and_message() {
        let p = err(&crate::error::er::secure_transport_required());
        assert_eq!(p[0], 0xff);
        assert_eq!(u16::from_le_bytes([p[1], p[2]]), 3159);
        assert_eq!(&p[3..9], b"#HY000");
    }

    #[test]
    fn binary_row_sets_null_bits_at_offset_two() {
        let cols = vec![Column::for_value("a", &Value::Int(1)), Column::text("b")];
        let p = binary_row(&cols, &[Value::Int(7), Value::Null]);
        assert_eq!(p[0], 0);
        assert_eq!(p[1], 0b1000);
        assert_eq!(&p[2..10], &7i64.to_le_bytes());
    }
}
