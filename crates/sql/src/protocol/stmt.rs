//! COM_STMT_EXECUTE decoding: the null bitmap, the parameter types (sent
//! with the first execution, remembered after) and every binary-protocol
//! parameter type, plus data sent ahead with COM_STMT_SEND_LONG_DATA.

use std::collections::HashMap;

use super::codec::{Malformed, Reader};
use super::consts::ty;
use crate::value::Value;

/// A parameter's declared type: the type byte and the unsigned flag.
pub type ParamType = (u8, bool);

/// The fixed part of COM_STMT_EXECUTE after the command byte.
#[derive(Debug)]
pub struct ExecuteHeader {
    /// Statement id.
    pub stmt_id: u32,
    /// Cursor flags (cursors are not supported; results are sent whole).
    pub flags: u8,
}

/// Reads the statement id and flags.
pub fn read_header(r: &mut Reader<'_>) -> Result<ExecuteHeader, Malformed> {
    let stmt_id = r.u32()?;
    let flags = r.u8()?;
    let _iterations = r.u32()?;
    Ok(ExecuteHeader { stmt_id, flags })
}

fn text_or_bytes(b: &[u8]) -> Value {
    match std::str::from_utf8(b) {
        Ok(s) => Value::Text(s.to_string()),
        Err(_) => Value::Bytes(b.to_vec()),
    }
}

fn read_datetime(r: &mut Reader<'_>, t: u8) -> Result<Value, Malformed> {
    let len = r.u8()?;
    let (mut year, mut month, mut day) = (0u16, 0u8, 0u8);
    let (mut hour, mut minute, mut second, mut micros) = (0u8, 0u8, 0u8, 0u32);
    match len {
        0 => {}
        4 | 7 | 11 => {
            year = r.u16()?;
            month = r.u8()?;
            day = r.u8()?;
            if len >= 7 {
                hour = r.u8()?;
                minute = r.u8()?;
                second = r.u8()?;
            }
            if len == 11 {
                micros = r.u32()?;
            }
        }
        _ => return Err(Malformed("bad DATE/DATETIME length")),
    }
    if month > 12 || day > 31 || hour > 23 || minute > 59 || second > 59 || micros > 999_999 {
        return Err(Malformed("DATE/DATETIME field out of range"));
    }
    Ok(if t == ty::DATE {
        Value::Date { year, month, day }
    } else {
        Value::DateTime {
            year,
            month,
            day,
            hour,
            minute,
            second,
            micros,
        }
    })
}

fn read_time(r: &mut Reader<'_>) -> Result<Value, Malformed> {
    let len = r.u8()?;
    let mut v = (false, 0u32, 0u8, 0u8, 0u8, 0u32);
    match len {
        0 => {}
        8 | 12 => {
            v.0 = r.u8()? != 0;
            v.1 = r.u32()?;
            v.2 = r.u8()?;
            v.3 = r.u8()?;
            v.4 = r.u8()?;
            if len == 12 {
                v.5 = r.u32()?;
            }
        }
        _ => return Err(Malformed("bad TIME length")),
    }
    if v.2 > 23 || v.3 > 59 || v.4 > 59 || v.5 > 999_999 {
        return Err(Malformed("TIME field out of range"));
    }
    Ok(Value::Time {
        negative: v.0,
        days: v.1,
        hours: v.2,
        minutes: v.3,
        seconds: v.4,
        micros: v.5,
    })
}

/// Decodes one non-NULL parameter value of type `t`.
pub fn read_value(r: &mut Reader<'_>, (t, unsigned): ParamType) -> Result<Value, Malformed> {
    Ok(match t {
        ty::NULL => Value::Null,
        ty::TINY => {
            let b = r.u8()?;
            if unsigned {
                Value::UInt(u64::from(b))
            } else {
                Value::Int(i64::from(b as i8))
            }
        }
        ty::SHORT | ty::YEAR => {
            let v = r.u16()?;
            if unsigned || t == ty::YEAR {
                Value::UInt(u64::from(v))
            } else {
                Value::Int(i64::from(v as i16))
            }
        }
        ty::LONG | ty::INT24 => {
            let v = r.u32()?;
            if unsigned {
                Value::UInt(u64::from(v))
            } else {
                Value::Int(i64::from(v as i32))
            }
        }
        ty::LONGLONG => {
            let v = r.u64()?;
            if unsigned {
                Value::UInt(v)
            } else {
                Value::Int(v as i64)
            }
        }
        ty::FLOAT => Value::Float(f32::from_bits(r.u32()?)),
        ty::DOUBLE => Value::Double(f64::from_bits(r.u64()?)),
        ty::DECIMAL | ty::NEWDECIMAL => {
            let b = r.lenenc_bytes()?;
            let s = std::str::from_utf8(b).map_err(|_| Malformed("DECIMAL is not ASCII"))?;
            if s.is_empty()
                || !s
                    .bytes()
                    .all(|c| c.is_ascii_digit() || matches!(c, b'-' | b'+' | b'.' | b'e' | b'E'))
            {
                return Err(Malformed("DECIMAL is not a number"));
            }
            Value::Decimal(s.to_string())
        }
        ty::DATE | ty::DATETIME | ty::TIMESTAMP | ty::NEWDATE => read_datetime(r, t)?,
        ty::TIME => read_time(r)?,
        ty::TINY_BLOB | ty::MEDIUM_BLOB | ty::LONG_BLOB | ty::BLOB | ty::GEOMETRY | ty::BIT => {
            Value::Bytes(r.lenenc_bytes()?.to_vec())
        }
        ty::VARCHAR | ty::VAR_STRING | ty::STRING | ty::ENUM | ty::SET | ty::JSON => {
            text_or_bytes(r.lenenc_bytes()?)
        }
        _ => return Err(Malformed("unknown parameter type")),
    })
}

/// Decodes the parameters of COM_STMT_EXECUTE after the header. `types` is
/// updated when the client sends new types and used when it does not.
pub fn read_params(
    r: &mut Reader<'_>,
    count: usize,
    types: &mut Vec<ParamType>,
    long_data: &HashMap<u16, Vec<u8>>,
) -> Result<Vec<Value>, Malformed> {
    if count == 0 {
        return Ok(Vec::new());
    }
    let bitmap = r.bytes(count.div_ceil(8))?.to_vec();
    let bound = r.u8()?;
    if bound == 1 {
        let mut new = Vec::with_capacity(count);
        for _ in 0..count {
            let t = r.u8()?;
            let f = r.u8()?;
            new.push((t, f & 0x80 != 0));
        }
        *types = new;
    }
    if types.len() != count {
        return Err(Malformed("parameter types were never sent"));
    }
    let mut out = Vec::with_capacity(count);
    for (i, &t) in types.iter().enumerate() {
        if bitmap[i / 8] & (1 << (i % 8)) != 0 {
            out.push(Value::Null);
        } else if let Some(data) = u16::try_from(i).ok().and_then(|i| long_data.get(&i)) {
            out.push(
                if matches!(
                    t.0,
                    ty::TINY_BLOB | ty::MEDIUM_BLOB | ty::LONG_BLOB | ty::BLOB
                ) {
                    Value::Bytes(data.clone())
                } else {
                    text_or_bytes(data)
                },
            );
        } else {
            out.push(read_value(r, t)?);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_each_type_through_read_params() {
        let cases: Vec<(ParamType, Vec<u8>, Value)> = vec![
            ((ty::TINY, false), vec![0xff], Value::Int(-1)),
            ((ty::TINY, true), vec![0xff], Value::UInt(255)),
            (
                (ty::SHORT, false),
                (-2i16).to_le_bytes().to_vec(),
                Value::Int(-2),
            ),
            (
                (ty::YEAR, false),
                2024u16.to_le_bytes().to_vec(),
                Value::UInt(2024),
            ),
            (
                (ty::LONG, false),
                (-3i32).to_le_bytes().to_vec(),
                Value::Int(-3),
            ),
            (
                (ty::INT24, true),
                70000u32.to_le_bytes().to_vec(),
                Value::UInt(70000),
            ),
            (
                (ty::LONGLONG, true),
                u64::MAX.to_le_bytes().to_vec(),
                Value::UInt(u64::MAX),
            ),
            (
                (ty::FLOAT, false),
                1.5f32.to_le_bytes().to_vec(),
                Value::Float(1.5),
            ),
            (
                (ty::DOUBLE, false),
                2.25f64.to_le_bytes().to_vec(),
                Value::Double(2.25),
            ),
            (
                (ty::NEWDECIMAL, false),
                b"\x05-1.50".to_vec(),
                Value::Decimal("-1.50".into()),
            ),
            (
                (ty::VAR_STRING, false),
                b"\x03abc".to_vec(),
                Value::Text("abc".into()),
            ),
            (
                (ty::STRING, false),
                b"\x02\xff\xfe".to_vec(),
                Value::Bytes(vec![0xff, 0xfe]),
            ),
            (
                (ty::BLOB, false),
                b"\x02\xff\x00".to_vec(),
                Value::Bytes(vec![0xff, 0]),
            ),
            ((ty::NULL, false), vec![], Value::Null),
            (
                (ty::DATE, false),
                vec![4, 0xe8, 0x07, 2, 29],
                Value::Date {
                    year: 2024,
                    month: 2,
                    day: 29,
                },
            ),
            (
                (ty::DATETIME, false),
                vec![11, 0xe8, 0x07, 2, 29, 23, 59, 58, 0x15, 0xcd, 0x5b, 0x07],
                Value::DateTime {
                    year: 2024,
                    month: 2,
                    day: 29,
                    hour: 23,
                    minute: 59,
                    second: 58,
                    micros: 123_456_789 % 1_000_000,
                },
            ),
            (
                (ty::TIME, false),
                vec![8, 1, 1, 0, 0, 0, 2, 3, 4],
                Value::Time {
                    negative: true,
                    days: 1,
                    hours: 2,
                    minutes: 3,
                    seconds: 4,
                    micros: 0,
                },
            ),
        ];
        for (t, bytes, want) in cases {
            let mut p = vec![0u8, 1, t.0, if t.1 { 0x80 } else { 0 }];
            p.extend_from_slice(&bytes);
            let mut types = Vec::new();
            let got = read_params(&mut Reader::new(&p), 1, &mut types, &HashMap::new());
            if t == (ty::DATETIME, false) {
                // 0x075bcd15 = 123456789 micros: out of range, refused.
                assert!(got.is_err(), "{t:?}");
                continue;
            }
            assert_eq!(got.unwrap(), vec![want], "{t:?}");
        }
    }

    #[test]
    fn truncated_or_unknown_parameters_are_malformed() {
        let mut types = Vec::new();
        assert!(read_params(
            &mut Reader::new(&[0, 1, ty::LONGLONG, 0, 1, 2]),
            1,
            &mut types,
            &HashMap::new()
        )
        .is_err());
        assert!(read_params(
            &mut Reader::new(&[0, 1, 0x42, 0, 1]),
            1,
            &mut types,
            &HashMap::new()
        )
        .is_err());
        // Types never sent.
        let mut none = Vec::new();
        assert!(read_params(&mut Reader::new(&[0, 0]), 1, &mut none, &HashMap::new()).is_err());
        // Remembered types are reused.
        let mut t = vec![(ty::TINY, false)];
        assert_eq!(
            read_params(&mut Reader::new(&[0, 0, 5]), 1, &mut t, &HashMap::new()).unwrap(),
            vec![Value::Int(5)]
        );
    }
}
