//! TiDB's table codec: how rows and index entries become TiKV keys and
//! values.
//!
//! ```text
//!  row key    t{table_id}_r{handle}                   -> row value (row format v2)
//!  index key  t{table_id}_i{index_id}{datums}         -> unique: handle (8 bytes BE)
//!             t{table_id}_i{index_id}{datums}{handle} -> non-unique: "0"
//! ```
//!
//! `table_id`, `index_id` and integer handles are memcomparable i64s (8
//! bytes big-endian with the sign bit flipped); index datums use TiDB's
//! memcomparable datum encoding (a flag byte, then the value), so keys sort
//! as the values do. Strings of a case-insensitive column are encoded by
//! their collation sort key, so `'a'` and `'A'` collide in a unique index.
//!
//! Datums in keys (TiDB `util/codec`, comparable form):
//!
//! | flag | value kind                | payload                                     |
//! |------|---------------------------|---------------------------------------------|
//! | 0x00 | NULL                      | none (sorts first)                          |
//! | 0x01 | strings, binary           | groups of 8 bytes + marker `0xFF - pad`     |
//! | 0x03 | signed integers, handles  | i64 big-endian, sign bit flipped            |
//! | 0x04 | unsigned, ENUM, DATE(TIME)| u64 big-endian (ENUM: 1-based index; dates: packed `CoreTime`) |
//! | 0x05 | FLOAT, DOUBLE             | f64 bits, sign flipped / negatives inverted |
//! | 0x06 | DECIMAL                   | precision, scale, MySQL `decimal2bin`       |
//! | 0x07 | TIME                      | i64 nanoseconds like flag 0x03              |
//!
//! Row values are TiDB's row format v2 (`util/rowcodec`):
//!
//! ```text
//!  0x80 | flag (0 small, 1 large) | not-null count u16 LE | null count u16 LE
//!  | not-null column ids (sorted) | null column ids (sorted)   u8 each, u32 LE if large
//!  | end offset of each not-null value                         u16 LE each, u32 LE if large
//!  | values
//! ```
//!
//! A row is large when a column id exceeds 255 or the values exceed 64 KiB.
//! Values: integers in the shortest of 1/2/4/8 bytes little-endian, floats
//! as the 8 comparable bytes above, decimals as in keys without the flag,
//! strings as their raw bytes (never the sort key), DATE/DATETIME/TIMESTAMP
//! as the packed `CoreTime` u64 (shortest LE), TIME as i64 nanoseconds
//! (shortest LE), ENUM as its index (shortest LE), JSON as TiDB's binary
//! JSON (`crate::json::encode`).
//!
//! Differences from TiDB, all deliberate:
//! - TIMESTAMP values are stored as given (the engine keeps them in UTC);
//!   TiDB converts from the session time zone here.
//! - `utf8mb4_bin` keys are the raw UTF-8 bytes; TiDB's new-collation
//!   framework trims trailing spaces (PAD SPACE) for `utf8mb4_bin` keys.
//! - [`prefix_end`] drops trailing 0xFF bytes instead of keeping the key's
//!   length (TiDB's `PrefixNext`), giving the smallest such key.
//! - Decoders check every length, flag and digit and return error 1105 on
//!   corrupt data instead of trusting the bytes.
//!
//! Every decoder works on untrusted bytes: it never panics and reports
//! corrupt data as error 1105.

use crate::engine::types::{decimal_round, Collation, ColumnType, Kind};
use crate::error::{er, SqlError};
use crate::value::Value;

const NIL_FLAG: u8 = 0x00;
const BYTES_FLAG: u8 = 0x01;
const INT_FLAG: u8 = 0x03;
const UINT_FLAG: u8 = 0x04;
const FLOAT_FLAG: u8 = 0x05;
const DECIMAL_FLAG: u8 = 0x06;
const DURATION_FLAG: u8 = 0x07;

/// The first byte of a row format v2 value.
const CODEC_VER: u8 = 128;
/// Row flag bit: ids are u32 and offsets u32.
const ROW_LARGE: u8 = 1;

const SIGN_MASK: u64 = 1 << 63;
const ENC_GROUP: usize = 8;
const ENC_MARKER: u8 = 0xFF;

/// Length of `t{table_id}_r{handle}` and of `t{table_id}_i{index_id}`.
const RECORD_KEY_LEN: usize = 19;
const INDEX_PREFIX_LEN: usize = 19;

fn corrupt(what: &str) -> SqlError {
    er::unknown(format!("corrupt table data: {what}"))
}

// ---------------------------------------------------------------------------
// Keys.

fn put_cmp_i64(buf: &mut Vec<u8>, v: i64) {
    buf.extend_from_slice(&((v as u64) ^ SIGN_MASK).to_be_bytes());
}

fn read_u64_be(b: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(..8)?.try_into().ok()?))
}

fn read_cmp_i64(b: &[u8]) -> Option<i64> {
    Some((read_u64_be(b)? ^ SIGN_MASK) as i64)
}

/// `t{table_id}`.
pub fn table_prefix(table_id: i64) -> Vec<u8> {
    let mut k = Vec::with_capacity(RECORD_KEY_LEN);
    k.push(b't');
    put_cmp_i64(&mut k, table_id);
    k
}

/// `t{table_id}_r`: every row key of the table starts with it.
pub fn record_prefix(table_id: i64) -> Vec<u8> {
    let mut k = table_prefix(table_id);
    k.extend_from_slice(b"_r");
    k
}

/// `t{table_id}_r{handle}`.
pub fn record_key(table_id: i64, handle: i64) -> Vec<u8> {
    let mut k = record_prefix(table_id);
    put_cmp_i64(&mut k, handle);
    k
}

/// The table id and handle of a row key.
pub fn decode_record_key(key: &[u8]) -> Result<(i64, i64), SqlError> {
    if key.len() != RECORD_KEY_LEN || key[0] != b't' || &key[9..11] != b"_r" {
        return Err(corrupt("not a row key"));
    }
    let tid = read_cmp_i64(&key[1..]).ok_or_else(|| corrupt("short row key"))?;
    let handle = read_cmp_i64(&key[11..]).ok_or_else(|| corrupt("short row key"))?;
    Ok((tid, handle))
}

/// The table id of any table key (`t{table_id}...`), `None` for other keys.
pub fn table_id_of(key: &[u8]) -> Option<i64> {
    if key.first() != Some(&b't') {
        return None;
    }
    read_cmp_i64(key.get(1..)?)
}

/// `t{table_id}_i{index_id}`.
pub fn index_prefix(table_id: i64, index_id: i64) -> Vec<u8> {
    let mut k = table_prefix(table_id);
    k.extend_from_slice(b"_i");
    put_cmp_i64(&mut k, index_id);
    k
}

/// An index key: prefix, the datums, and for a non-unique index (or a
/// unique one holding a NULL) the handle.
pub fn index_key(
    table_id: i64,
    index_id: i64,
    values: &[(&Value, &ColumnType)],
    handle: Option<i64>,
) -> Vec<u8> {
    let mut k = index_prefix(table_id, index_id);
    for (v, ty) in values {
        encode_datum(&mut k, v, ty);
    }
    if let Some(h) = handle {
        k.push(INT_FLAG);
        put_cmp_i64(&mut k, h);
    }
    k
}

/// The handle stored in an index entry: in the value for a unique entry
/// (8 bytes), at the end of the key otherwise (an int datum, 9 bytes).
pub fn decode_index_handle(key: &[u8], value: &[u8]) -> Result<i64, SqlError> {
    if value.len() == 8 {
        return Ok(i64::from_be_bytes(
            value.try_into().map_err(|_| corrupt("index value"))?,
        ));
    }
    if key.len() < INDEX_PREFIX_LEN + 9 {
        return Err(corrupt("index key without a handle"));
    }
    let tail = &key[key.len() - 9..];
    if tail[0] != INT_FLAG {
        return Err(corrupt("index key without an integer handle"));
    }
    read_cmp_i64(&tail[1..]).ok_or_else(|| corrupt("index key handle"))
}

/// The value of a unique index entry pointing at `handle` (TiDB's old
/// format: the handle as 8 bytes big-endian, not sign-flipped).
pub fn unique_index_value(handle: i64) -> Vec<u8> {
    handle.to_be_bytes().to_vec()
}

/// The value of a non-unique index entry.
pub fn plain_index_value() -> Vec<u8> {
    b"0".to_vec()
}

/// Whether [`decode_index_datums`] can give back a column's value from an
/// index key: everything but strings of a case-insensitive collation (their
/// key holds the sort key, not the string).
pub fn decodable_from_index(ty: &ColumnType) -> bool {
    !(ty.is_text() && !matches!(ty.kind, Kind::Enum(_)) && ty.collation != Collation::Bin)
}

/// The values of the leading `types.len()` datums of an index key (a
/// covering index read). Fails for a column that is not
/// [`decodable_from_index`].
pub fn decode_index_datums(key: &[u8], types: &[&ColumnType]) -> Result<Vec<Value>, SqlError> {
    if key.len() < INDEX_PREFIX_LEN || key[0] != b't' || &key[9..11] != b"_i" {
        return Err(corrupt("not an index key"));
    }
    let mut rest = &key[INDEX_PREFIX_LEN..];
    let mut out = Vec::with_capacity(types.len());
    for ty in types {
        if !decodable_from_index(ty) {
            return Err(er::unknown(format!(
                "a {} column cannot be read from an index key",
                ty.collation.name()
            )));
        }
        let (d, r) = read_key_datum(rest)?;
        rest = r;
        out.push(key_datum_to_value(d, ty)?);
    }
    Ok(out)
}

/// The smallest key greater than every key starting with `prefix`:
/// trailing 0xFF bytes are dropped and the last other byte incremented.
/// An empty result means "no upper bound" (the prefix was empty or all
/// 0xFF).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last != 0xFF {
            end.push(last + 1);
            return end;
        }
    }
    end
}

// ---------------------------------------------------------------------------
// Datums in keys.

/// Appends the memcomparable encoding of `v` (already coerced to `ty`).
///
/// The type picks the encoding, so every value of a column sorts in one
/// flag space; a value of an unexpected variant is encoded by its own kind.
pub fn encode_datum(buf: &mut Vec<u8>, v: &Value, ty: &ColumnType) {
    match to_datum(v, ty, true) {
        Datum::Null => buf.push(NIL_FLAG),
        Datum::I64(i) => {
            buf.push(INT_FLAG);
            put_cmp_i64(buf, i);
        }
        Datum::U64(u) => {
            buf.push(UINT_FLAG);
            buf.extend_from_slice(&u.to_be_bytes());
        }
        Datum::F64(f) => {
            buf.push(FLOAT_FLAG);
            buf.extend_from_slice(&float_to_cmp(f).to_be_bytes());
        }
        Datum::Decimal(d) => {
            buf.push(DECIMAL_FLAG);
            d.write(buf);
        }
        Datum::Duration(ns) => {
            buf.push(DURATION_FLAG);
            put_cmp_i64(buf, ns);
        }
        Datum::Bytes(b) => {
            buf.push(BYTES_FLAG);
            encode_bytes(buf, &b);
        }
    }
}

/// A value in the form the codec writes it.
#[derive(Debug, PartialEq)]
enum Datum {
    Null,
    I64(i64),
    U64(u64),
    F64(f64),
    Decimal(Dec),
    /// TIME as nanoseconds.
    Duration(i64),
    Bytes(Vec<u8>),
}

/// `v` as the datum stored for a column of type `ty`; `key` picks the
/// collation sort key for strings.
fn to_datum(v: &Value, ty: &ColumnType, key: bool) -> Datum {
    match v {
        Value::Null => Datum::Null,
        Value::Int(i) => match ty.is_integer() && ty.unsigned && *i >= 0 {
            true => Datum::U64(*i as u64),
            false => Datum::I64(*i),
        },
        Value::UInt(u) => match ty.is_integer() && !ty.unsigned && *u <= i64::MAX as u64 {
            true => Datum::I64(*u as i64),
            false => Datum::U64(*u),
        },
        Value::Float(f) => Datum::F64(f64::from(*f)),
        Value::Double(f) => Datum::F64(*f),
        Value::Decimal(text) => {
            let (p, s) = match ty.kind {
                Kind::Decimal { precision, scale } => (precision, scale),
                _ => (0, 0),
            };
            match Dec::parse(text, p, s) {
                Some(d) => Datum::Decimal(d),
                None => Datum::Bytes(text.as_bytes().to_vec()),
            }
        }
        Value::Text(s) => match &ty.kind {
            Kind::Enum(items) => Datum::U64(enum_index(items, s)),
            _ if key => Datum::Bytes(ty.collation.sort_key(s)),
            _ => Datum::Bytes(s.as_bytes().to_vec()),
        },
        Value::Bytes(b) => Datum::Bytes(b.clone()),
        Value::Json(j) => Datum::Bytes(crate::json::encode(j)),
        Value::Date { year, month, day } => Datum::U64(pack_time(*year, *month, *day, 0, 0, 0, 0)),
        Value::DateTime {
            year,
            month,
            day,
            hour,
            minute,
            second,
            micros,
        } => Datum::U64(pack_time(
            *year, *month, *day, *hour, *minute, *second, *micros,
        )),
        Value::Time {
            negative,
            days,
            hours,
            minutes,
            seconds,
            micros,
        } => {
            let secs = (i64::from(*days) * 24 + i64::from(*hours)) * 3600
                + i64::from(*minutes) * 60
                + i64::from(*seconds);
            let ns = secs * 1_000_000_000 + i64::from(*micros) * 1000;
            Datum::Duration(if *negative { -ns } else { ns })
        }
    }
}

/// The 1-based index of `s` among an ENUM's items (0: not an item, MySQL's
/// error value `''`).
fn enum_index(items: &[String], s: &str) -> u64 {
    let pos = items.iter().position(|i| i == s).or_else(|| {
        let k = Collation::GeneralCi.sort_key(s);
        items
            .iter()
            .position(|i| Collation::GeneralCi.sort_key(i) == k)
    });
    pos.map_or(0, |p| p as u64 + 1)
}

fn enum_item(items: &[String], idx: u64) -> Result<Value, SqlError> {
    if idx == 0 {
        return Ok(Value::Text(String::new()));
    }
    usize::try_from(idx - 1)
        .ok()
        .and_then(|i| items.get(i))
        .map(|s| Value::Text(s.clone()))
        .ok_or_else(|| corrupt("ENUM index out of range"))
}

/// TiDB's memcomparable bytes: groups of 8 bytes, each followed by a marker
/// `0xFF - padding`, the last group zero-padded (an empty last group when
/// the length is a multiple of 8).
fn encode_bytes(buf: &mut Vec<u8>, data: &[u8]) {
    buf.reserve((data.len() / ENC_GROUP + 1) * (ENC_GROUP + 1));
    let mut chunks = data.chunks_exact(ENC_GROUP);
    for c in &mut chunks {
        buf.extend_from_slice(c);
        buf.push(ENC_MARKER);
    }
    let rem = chunks.remainder();
    let pad = ENC_GROUP - rem.len();
    buf.extend_from_slice(rem);
    buf.extend(std::iter::repeat_n(0, pad));
    buf.push(ENC_MARKER - pad as u8);
}

/// Decodes [`encode_bytes`]; returns the bytes and the rest of the input.
fn decode_bytes(mut b: &[u8]) -> Result<(Vec<u8>, &[u8]), SqlError> {
    let mut out = Vec::new();
    loop {
        if b.len() < ENC_GROUP + 1 {
            return Err(corrupt("truncated bytes datum"));
        }
        let (group, rest) = b.split_at(ENC_GROUP + 1);
        b = rest;
        let pad = usize::from(ENC_MARKER - group[ENC_GROUP]);
        if pad > ENC_GROUP {
            return Err(corrupt("bad bytes datum marker"));
        }
        let real = ENC_GROUP - pad;
        out.extend_from_slice(&group[..real]);
        if pad != 0 {
            if group[real..ENC_GROUP].iter().any(|&x| x != 0) {
                return Err(corrupt("bad bytes datum padding"));
            }
            return Ok((out, b));
        }
    }
}

fn float_to_cmp(f: f64) -> u64 {
    let u = f.to_bits();
    if f >= 0.0 {
        u | SIGN_MASK
    } else {
        !u
    }
}

fn cmp_to_float(u: u64) -> f64 {
    f64::from_bits(if u & SIGN_MASK != 0 {
        u & !SIGN_MASK
    } else {
        !u
    })
}

/// Reads one datum of a key.
fn read_key_datum(b: &[u8]) -> Result<(Datum, &[u8]), SqlError> {
    let (&flag, rest) = b.split_first().ok_or_else(|| corrupt("missing datum"))?;
    let fixed8 = |rest: &[u8]| read_u64_be(rest).ok_or_else(|| corrupt("truncated datum"));
    Ok(match flag {
        NIL_FLAG => (Datum::Null, rest),
        BYTES_FLAG => {
            let (v, r) = decode_bytes(rest)?;
            (Datum::Bytes(v), r)
        }
        INT_FLAG => (Datum::I64((fixed8(rest)? ^ SIGN_MASK) as i64), &rest[8..]),
        UINT_FLAG => (Datum::U64(fixed8(rest)?), &rest[8..]),
        FLOAT_FLAG => (Datum::F64(cmp_to_float(fixed8(rest)?)), &rest[8..]),
        DURATION_FLAG => (
            Datum::Duration((fixed8(rest)? ^ SIGN_MASK) as i64),
            &rest[8..],
        ),
        DECIMAL_FLAG => {
            let (d, r) = Dec::read(rest)?;
            (Datum::Decimal(d), r)
        }
        other => return Err(corrupt(&format!("unknown datum flag {other:#04x}"))),
    })
}

/// A key datum as a value of column type `ty`.
fn key_datum_to_value(d: Datum, ty: &ColumnType) -> Result<Value, SqlError> {
    Ok(match d {
        Datum::Null => Value::Null,
        Datum::I64(i) if ty.is_integer() && ty.unsigned && i >= 0 => Value::UInt(i as u64),
        Datum::I64(i) => Value::Int(i),
        Datum::U64(u) => match &ty.kind {
            Kind::Enum(items) => enum_item(items, u)?,
            Kind::Date | Kind::DateTime(_) | Kind::Timestamp(_) => unpack_time(u, &ty.kind)?,
            _ if ty.is_integer() && !ty.unsigned && u <= i64::MAX as u64 => Value::Int(u as i64),
            _ => Value::UInt(u),
        },
        Datum::F64(f) => match ty.kind {
            Kind::Float => Value::Float(f as f32),
            _ => Value::Double(f),
        },
        Datum::Decimal(d) => decimal_value(&d, ty),
        Datum::Duration(ns) => duration_value(ns),
        Datum::Bytes(b) => bytes_value(b, ty)?,
    })
}

fn bytes_value(b: Vec<u8>, ty: &ColumnType) -> Result<Value, SqlError> {
    if ty.is_text() {
        String::from_utf8(b)
            .map(Value::Text)
            .map_err(|_| corrupt("string is not UTF-8"))
    } else {
        Ok(Value::Bytes(b))
    }
}

fn decimal_value(d: &Dec, ty: &ColumnType) -> Value {
    let text = d.to_text();
    match ty.kind {
        Kind::Decimal { scale, .. } if scale != d.frac => {
            Value::Decimal(decimal_round(&text, scale).unwrap_or(text))
        }
        _ => Value::Decimal(text),
    }
}

// ---------------------------------------------------------------------------
// Dates and times.

/// TiDB's `CoreTime.ToPackedUint`:
/// `((((year*13 + month) << 5 | day) << 17 | hour << 12 | minute << 6 | second) << 24) | micros`.
fn pack_time(year: u16, month: u8, day: u8, hour: u8, minute: u8, second: u8, micros: u32) -> u64 {
    let ymd = ((u64::from(year) * 13 + u64::from(month)) << 5) | u64::from(day);
    let hms = (u64::from(hour) << 12) | (u64::from(minute) << 6) | u64::from(second);
    ((ymd << 17 | hms) << 24) | u64::from(micros)
}

fn unpack_time(packed: u64, kind: &Kind) -> Result<Value, SqlError> {
    let micros = (packed & ((1 << 24) - 1)) as u32;
    let ymdhms = packed >> 24;
    let hms = ymdhms & ((1 << 17) - 1);
    let ymd = ymdhms >> 17;
    let day = (ymd & 31) as u8;
    let ym = ymd >> 5;
    let month = (ym % 13) as u8;
    let year = ym / 13;
    let second = (hms & 63) as u8;
    let minute = ((hms >> 6) & 63) as u8;
    let hour = (hms >> 12) as u8;
    if year > 9999 || hour > 23 || minute > 59 || second > 59 || micros > 999_999 {
        return Err(corrupt("bad packed time"));
    }
    let year = year as u16;
    Ok(match kind {
        Kind::Date => Value::Date { year, month, day },
        _ => Value::DateTime {
            year,
            month,
            day,
            hour,
            minute,
            second,
            micros,
        },
    })
}

fn duration_value(ns: i64) -> Value {
    let abs = ns.unsigned_abs();
    let micros = (abs / 1000 % 1_000_000) as u32;
    let secs = abs / 1_000_000_000;
    let h = secs / 3600;
    Value::Time {
        negative: ns < 0,
        days: (h / 24) as u32,
        hours: (h % 24) as u8,
        minutes: (secs / 60 % 60) as u8,
        seconds: (secs % 60) as u8,
        micros,
    }
}

// ---------------------------------------------------------------------------
// Decimals: MySQL's decimal2bin, as TiDB's `MyDecimal.ToBin` writes it.

/// Bytes needed for 0..=9 leftover decimal digits.
const DIG2BYTES: [usize; 10] = [0, 1, 1, 2, 2, 3, 3, 4, 4, 4];
const DIGITS_PER_WORD: usize = 9;
/// TiDB's limits (`digitsPerWord * maxWordBufLen`, `MaxDecimalScale`).
const MAX_PRECISION: u8 = 81;
const MAX_SCALE: u8 = 30;

/// A decimal with a fixed precision and scale, as digits.
#[derive(Debug, PartialEq)]
struct Dec {
    negative: bool,
    precision: u8,
    frac: u8,
    /// `precision - frac` integer digits (left zero-padded), then `frac`
    /// fraction digits, each 0-9.
    digits: Vec<u8>,
}

fn bin_size(precision: u8, frac: u8) -> usize {
    let int = usize::from(precision - frac);
    let frac = usize::from(frac);
    int / DIGITS_PER_WORD * 4
        + DIG2BYTES[int % DIGITS_PER_WORD]
        + frac / DIGITS_PER_WORD * 4
        + DIG2BYTES[frac % DIGITS_PER_WORD]
}

/// The chunk widths (in digits) of a decimal's binary form, in order.
fn chunk_widths(precision: u8, frac: u8) -> Vec<usize> {
    let int = usize::from(precision - frac);
    let frac = usize::from(frac);
    let mut w = Vec::new();
    if int % DIGITS_PER_WORD > 0 {
        w.push(int % DIGITS_PER_WORD);
    }
    w.extend(std::iter::repeat_n(DIGITS_PER_WORD, int / DIGITS_PER_WORD));
    w.extend(std::iter::repeat_n(DIGITS_PER_WORD, frac / DIGITS_PER_WORD));
    if frac % DIGITS_PER_WORD > 0 {
        w.push(frac % DIGITS_PER_WORD);
    }
    w
}

impl Dec {
    /// Parses decimal text for a column of `(precision, scale)`; a
    /// precision of 0 (no column type) takes the value's own. Extra
    /// fraction digits are cut, missing ones are zeros; if the integer part
    /// does not fit (never for a coerced value) the precision grows.
    fn parse(text: &str, precision: u8, scale: u8) -> Option<Dec> {
        let (neg, body) = match text.trim().strip_prefix('-') {
            Some(r) => (true, r),
            None => (false, text.trim().strip_prefix('+').unwrap_or(text.trim())),
        };
        let (int, frac) = body.split_once('.').unwrap_or((body, ""));
        if (int.is_empty() && frac.is_empty())
            || !int.bytes().chain(frac.bytes()).all(|c| c.is_ascii_digit())
        {
            return None;
        }
        let int = int.trim_start_matches('0');
        let (precision, scale) = if precision == 0 {
            let s = frac.len().min(usize::from(MAX_SCALE)) as u8;
            ((int.len() + usize::from(s)).max(1) as u8, s)
        } else {
            (precision, scale)
        };
        let scale = scale.min(MAX_SCALE).min(precision);
        let int_digits = usize::from(precision - scale).max(int.len());
        if int_digits + usize::from(scale) > usize::from(MAX_PRECISION) {
            return None;
        }
        let mut digits = vec![0u8; int_digits - int.len()];
        digits.extend(int.bytes().map(|c| c - b'0'));
        digits.extend(frac.bytes().take(usize::from(scale)).map(|c| c - b'0'));
        digits.resize(int_digits + usize::from(scale), 0);
        let zero = digits.iter().all(|&d| d == 0);
        Some(Dec {
            negative: neg && !zero,
            precision: (int_digits + usize::from(scale)).max(1) as u8,
            frac: scale,
            digits: if digits.is_empty() { vec![0] } else { digits },
        })
    }

    /// Writes precision, scale and the binary form.
    fn write(&self, buf: &mut Vec<u8>) {
        buf.push(self.precision);
        buf.push(self.frac);
        let start = buf.len();
        let mut pos = 0;
        for w in chunk_widths(self.precision, self.frac) {
            let v = self.digits[pos..pos + w]
                .iter()
                .fold(0u32, |acc, &d| acc * 10 + u32::from(d));
            pos += w;
            let n = DIG2BYTES[w];
            buf.extend_from_slice(&v.to_be_bytes()[4 - n..]);
        }
        if self.negative {
            for b in &mut buf[start..] {
                *b ^= 0xFF;
            }
        }
        if let Some(first) = buf.get_mut(start) {
            *first ^= 0x80;
        }
    }

    /// Reads what [`Dec::write`] wrote; returns it and the rest.
    fn read(b: &[u8]) -> Result<(Dec, &[u8]), SqlError> {
        let (&precision, &frac) = match b {
            [p, f, ..] => (p, f),
            _ => return Err(corrupt("truncated decimal")),
        };
        if precision == 0 || precision > MAX_PRECISION || frac > MAX_SCALE || frac > precision {
            return Err(corrupt("bad decimal precision"));
        }
        let size = bin_size(precision, frac);
        let bin = b
            .get(2..2 + size)
            .ok_or_else(|| corrupt("truncated decimal"))?;
        let mut bin = bin.to_vec();
        bin[0] ^= 0x80;
        let negative = bin[0] & 0x80 != 0;
        if negative {
            for x in &mut bin {
                *x ^= 0xFF;
            }
        }
        let mut digits = Vec::with_capacity(usize::from(precision));
        let mut pos = 0;
        for w in chunk_widths(precision, frac) {
            let n = DIG2BYTES[w];
            let mut v = bin[pos..pos + n]
                .iter()
                .fold(0u32, |acc, &x| acc << 8 | u32::from(x));
            pos += n;
            if v >= 10u32.pow(w as u32) {
                return Err(corrupt("bad decimal digits"));
            }
            let mut chunk = vec![0u8; w];
            for d in chunk.iter_mut().rev() {
                *d = (v % 10) as u8;
                v /= 10;
            }
            digits.extend(chunk);
        }
        let zero = digits.iter().all(|&d| d == 0);
        Ok((
            Dec {
                negative: negative && !zero,
                precision,
                frac,
                digits,
            },
            &b[2 + size..],
        ))
    }

    /// Canonical text: `-12.340` (exactly `frac` fraction digits).
    fn to_text(&self) -> String {
        let int_len = self.digits.len() - usize::from(self.frac);
        let int: String = self.digits[..int_len]
            .iter()
            .map(|d| (b'0' + d) as char)
            .collect::<String>()
            .trim_start_matches('0')
            .to_string();
        let mut s = String::new();
        if self.negative {
            s.push('-');
        }
        s.push_str(if int.is_empty() { "0" } else { &int });
        if self.frac > 0 {
            s.push('.');
            s.extend(self.digits[int_len..].iter().map(|d| (b'0' + d) as char));
        }
        s
    }
}

// ---------------------------------------------------------------------------
// Row format v2.

fn put_int(buf: &mut Vec<u8>, v: i64) {
    if let Ok(x) = i8::try_from(v) {
        buf.extend_from_slice(&x.to_le_bytes());
    } else if let Ok(x) = i16::try_from(v) {
        buf.extend_from_slice(&x.to_le_bytes());
    } else if let Ok(x) = i32::try_from(v) {
        buf.extend_from_slice(&x.to_le_bytes());
    } else {
        buf.extend_from_slice(&v.to_le_bytes());
    }
}

fn put_uint(buf: &mut Vec<u8>, v: u64) {
    if let Ok(x) = u8::try_from(v) {
        buf.push(x);
    } else if let Ok(x) = u16::try_from(v) {
        buf.extend_from_slice(&x.to_le_bytes());
    } else if let Ok(x) = u32::try_from(v) {
        buf.extend_from_slice(&x.to_le_bytes());
    } else {
        buf.extend_from_slice(&v.to_le_bytes());
    }
}

fn get_int(b: &[u8]) -> Result<i64, SqlError> {
    Ok(match b.len() {
        1 => i64::from(b[0] as i8),
        2 => i64::from(i16::from_le_bytes([b[0], b[1]])),
        4 => i64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        8 => i64::from_le_bytes(b.try_into().map_err(|_| corrupt("integer"))?),
        _ => return Err(corrupt("integer of a bad length")),
    })
}

fn get_uint(b: &[u8]) -> Result<u64, SqlError> {
    Ok(match b.len() {
        1 => u64::from(b[0]),
        2 => u64::from(u16::from_le_bytes([b[0], b[1]])),
        4 => u64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        8 => u64::from_le_bytes(b.try_into().map_err(|_| corrupt("integer"))?),
        _ => return Err(corrupt("integer of a bad length")),
    })
}

fn put_row_value(buf: &mut Vec<u8>, v: &Value, ty: &ColumnType) {
    match to_datum(v, ty, false) {
        Datum::Null => {}
        Datum::I64(i) | Datum::Duration(i) => put_int(buf, i),
        Datum::U64(u) => put_uint(buf, u),
        Datum::F64(f) => buf.extend_from_slice(&float_to_cmp(f).to_be_bytes()),
        Datum::Decimal(d) => d.write(buf),
        Datum::Bytes(b) => buf.extend_from_slice(&b),
    }
}

/// Encodes a row (row format v2) from `(column id, value, type)`. Column
/// ids are TiDB's (positive, below 2^32).
pub fn encode_row(cols: &[(i64, &Value, &ColumnType)]) -> Vec<u8> {
    let mut not_null: Vec<&(i64, &Value, &ColumnType)> =
        cols.iter().filter(|c| !c.1.is_null()).collect();
    let mut null: Vec<i64> = cols.iter().filter(|c| c.1.is_null()).map(|c| c.0).collect();
    not_null.sort_by_key(|c| c.0);
    null.sort_unstable();

    let mut data = Vec::new();
    let mut ends = Vec::with_capacity(not_null.len());
    for (_, v, ty) in &not_null {
        put_row_value(&mut data, v, ty);
        ends.push(data.len());
    }
    let large = cols.iter().any(|c| c.0 > 255) || data.len() > usize::from(u16::MAX);

    let (id_size, off_size) = if large { (4, 4) } else { (1, 2) };
    let mut out = Vec::with_capacity(6 + cols.len() * id_size + ends.len() * off_size + data.len());
    out.push(CODEC_VER);
    out.push(if large { ROW_LARGE } else { 0 });
    out.extend_from_slice(&(not_null.len() as u16).to_le_bytes());
    out.extend_from_slice(&(null.len() as u16).to_le_bytes());
    for id in not_null.iter().map(|c| c.0).chain(null.iter().copied()) {
        if large {
            out.extend_from_slice(&(id as u32).to_le_bytes());
        } else {
            out.push(id as u8);
        }
    }
    for end in ends {
        if large {
            out.extend_from_slice(&(end as u32).to_le_bytes());
        } else {
            out.extend_from_slice(&(end as u16).to_le_bytes());
        }
    }
    out.extend_from_slice(&data);
    out
}

/// A parsed row v2 header over borrowed bytes.
struct RowView<'a> {
    large: bool,
    not_null: usize,
    null: usize,
    ids: &'a [u8],
    offsets: &'a [u8],
    data: &'a [u8],
}

impl<'a> RowView<'a> {
    fn parse(b: &'a [u8]) -> Result<RowView<'a>, SqlError> {
        if b.len() < 6 {
            return Err(corrupt("truncated row header"));
        }
        if b[0] != CODEC_VER {
            return Err(corrupt("row is not in row format v2"));
        }
        let large = b[1] & ROW_LARGE != 0;
        let not_null = usize::from(u16::from_le_bytes([b[2], b[3]]));
        let null = usize::from(u16::from_le_bytes([b[4], b[5]]));
        let (id_size, off_size) = if large { (4, 4) } else { (1, 2) };
        let ids_end = 6 + (not_null + null) * id_size;
        let offs_end = ids_end + not_null * off_size;
        if b.len() < offs_end {
            return Err(corrupt("truncated row header"));
        }
        let row = RowView {
            large,
            not_null,
            null,
            ids: &b[6..ids_end],
            offsets: &b[ids_end..offs_end],
            data: &b[offs_end..],
        };
        // Offsets must be ascending and inside the data (a checksum may
        // follow the data; it is not read).
        let mut prev = 0;
        for i in 0..not_null {
            let end = row.offset(i);
            if end < prev || end > row.data.len() {
                return Err(corrupt("bad row value offset"));
            }
            prev = end;
        }
        Ok(row)
    }

    fn id(&self, i: usize) -> i64 {
        if self.large {
            let b = &self.ids[i * 4..i * 4 + 4];
            i64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        } else {
            i64::from(self.ids[i])
        }
    }

    fn offset(&self, i: usize) -> usize {
        if self.large {
            let b = &self.offsets[i * 4..i * 4 + 4];
            u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize
        } else {
            usize::from(u16::from_le_bytes([
                self.offsets[i * 2],
                self.offsets[i * 2 + 1],
            ]))
        }
    }

    /// Index of `id` in `lo..hi` of the (sorted) id list.
    fn find(&self, id: i64, lo: usize, hi: usize) -> Option<usize> {
        let (mut lo, mut hi) = (lo, hi);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.id(mid).cmp(&id) {
                std::cmp::Ordering::Equal => return Some(mid),
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
            }
        }
        None
    }

    fn value(&self, i: usize) -> &'a [u8] {
        let start = if i == 0 { 0 } else { self.offset(i - 1) };
        &self.data[start..self.offset(i)]
    }
}

fn row_value(b: &[u8], ty: &ColumnType) -> Result<Value, SqlError> {
    let eight = |b: &[u8]| {
        read_u64_be(b)
            .filter(|_| b.len() == 8)
            .ok_or_else(|| corrupt("float of a bad length"))
    };
    Ok(match &ty.kind {
        _ if ty.is_integer() => match ty.unsigned {
            true => Value::UInt(get_uint(b)?),
            false => Value::Int(get_int(b)?),
        },
        Kind::Float => Value::Float(cmp_to_float(eight(b)?) as f32),
        Kind::Double => Value::Double(cmp_to_float(eight(b)?)),
        Kind::Decimal { .. } => {
            let (d, rest) = Dec::read(b)?;
            if !rest.is_empty() {
                return Err(corrupt("trailing bytes after a decimal"));
            }
            decimal_value(&d, ty)
        }
        Kind::Enum(items) => enum_item(items, get_uint(b)?)?,
        Kind::Date | Kind::DateTime(_) | Kind::Timestamp(_) => unpack_time(get_uint(b)?, &ty.kind)?,
        Kind::Time(_) => duration_value(get_int(b)?),
        Kind::Json => Value::Json(Box::new(crate::json::decode(b).map_err(|e| corrupt(&e))?)),
        _ => bytes_value(b.to_vec(), ty)?,
    })
}

/// Decodes the wanted columns of a row: `None` where the row has no such
/// column (added later: use its default), `Some(Value::Null)` for NULL.
pub fn decode_row(
    data: &[u8],
    wanted: &[(i64, &ColumnType)],
) -> Result<Vec<Option<Value>>, SqlError> {
    let row = RowView::parse(data)?;
    wanted
        .iter()
        .map(|(id, ty)| {
            if let Some(i) = row.find(*id, 0, row.not_null) {
                row_value(row.value(i), ty).map(Some)
            } else if row
                .find(*id, row.not_null, row.not_null + row.null)
                .is_some()
            {
                Ok(Some(Value::Null))
            } else {
                Ok(None)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// xorshift64*: deterministic randomness without a dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    fn ty(kind: Kind) -> ColumnType {
        ColumnType::new(kind)
    }

    fn key_of(v: &Value, t: &ColumnType) -> Vec<u8> {
        let mut b = Vec::new();
        encode_datum(&mut b, v, t);
        b
    }

    /// Sorting `vals` by `cmp` and by key must agree; equal values must
    /// have equal keys.
    fn assert_keys_sort_like(
        vals: &[Value],
        t: &ColumnType,
        cmp: impl Fn(&Value, &Value) -> std::cmp::Ordering,
    ) {
        for a in vals {
            for b in vals {
                let (ka, kb) = (key_of(a, t), key_of(b, t));
                assert_eq!(
                    cmp(a, b),
                    ka.cmp(&kb),
                    "{a:?} vs {b:?}: {} vs {}",
                    hex(&ka),
                    hex(&kb)
                );
            }
        }
    }

    #[test]
    fn row_key_matches_tidb_vector() {
        assert_eq!(
            hex(&record_key(1, 1)),
            "7480000000000000015f728000000000000001"
        );
        assert_eq!(
            hex(&index_prefix(1, 2)),
            "7480000000000000015f698000000000000002"
        );
        assert_eq!(
            decode_record_key(&record_key(-5, i64::MIN)).unwrap(),
            (-5, i64::MIN)
        );
        assert_eq!(table_id_of(&record_key(42, 7)), Some(42));
        assert_eq!(table_id_of(&index_prefix(-3, 1)), Some(-3));
        assert_eq!(table_id_of(b"m_meta"), None);
        assert_eq!(table_id_of(b"t\x80"), None);
    }

    #[test]
    fn row_keys_sort_by_table_then_handle() {
        let mut keys = Vec::new();
        let mut pairs = Vec::new();
        for t in [-2i64, 0, 1, 300] {
            for h in [i64::MIN, -1, 0, 1, 255, 256, i64::MAX] {
                pairs.push((t, h));
                keys.push(record_key(t, h));
            }
        }
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        assert!(record_prefix(1) < record_key(1, i64::MIN));
        assert!(prefix_end(&record_prefix(1)) > record_key(1, i64::MAX));
        assert!(prefix_end(&table_prefix(1)) <= table_prefix(2));
    }

    #[test]
    fn prefix_end_carries_and_is_unbounded_for_all_ff() {
        assert_eq!(prefix_end(b"ab"), b"ac".to_vec());
        assert_eq!(prefix_end(&[1, 0xFF, 0xFF]), vec![2]);
        assert_eq!(prefix_end(&[0xFF, 0xFF]), Vec::<u8>::new());
        assert_eq!(prefix_end(&[]), Vec::<u8>::new());
    }

    #[test]
    fn bytes_datum_matches_tidb_groups() {
        let t = ty(Kind::VarBinary(100));
        assert_eq!(
            hex(&key_of(&Value::Bytes(vec![]), &t)),
            "010000000000000000f7"
        );
        assert_eq!(
            hex(&key_of(&Value::Bytes(b"abc".to_vec()), &t)),
            "016162630000000000fa"
        );
        assert_eq!(
            hex(&key_of(&Value::Bytes(b"12345678".to_vec()), &t)),
            "013132333435363738ff0000000000000000f7"
        );
        assert_eq!(hex(&key_of(&Value::Null, &t)), "00");
        assert_eq!(
            hex(&key_of(&Value::Int(-1), &ty(Kind::Int))),
            "037fffffffffffffff"
        );
        assert_eq!(
            hex(&key_of(
                &Value::UInt(1),
                &ColumnType {
                    unsigned: true,
                    ..ty(Kind::Int)
                }
            )),
            "040000000000000001"
        );
    }

    #[test]
    fn decimal_binary_matches_mysql_example() {
        // From MySQL's decimal2bin docs: 1234567890.1234 as DECIMAL(14,4).
        let t = ty(Kind::Decimal {
            precision: 14,
            scale: 4,
        });
        let k = key_of(&Value::Decimal("1234567890.1234".into()), &t);
        assert_eq!(hex(&k), "060e04810dfb38d204d2");
        let k = key_of(&Value::Decimal("-1234567890.1234".into()), &t);
        assert_eq!(hex(&k), "060e047ef204c72dfb2d");
    }

    #[test]
    fn packed_time_matches_tidb_layout() {
        let v = Value::DateTime {
            year: 2024,
            month: 1,
            day: 2,
            hour: 3,
            minute: 4,
            second: 5,
            micros: 6,
        };
        let ymd = ((2024u64 * 13 + 1) << 5) | 2;
        let want = ((ymd << 17 | (3 << 12 | 4 << 6 | 5)) << 24) | 6;
        assert_eq!(to_datum(&v, &ty(Kind::DateTime(6)), true), Datum::U64(want));
        assert_eq!(unpack_time(want, &Kind::DateTime(6)).unwrap(), v);
    }

    #[test]
    fn index_keys_sort_as_their_values() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        fn cmp_null_first(
            a: &Value,
            b: &Value,
            f: &dyn Fn(&Value, &Value) -> std::cmp::Ordering,
        ) -> std::cmp::Ordering {
            match (a, b) {
                (Value::Null, Value::Null) => std::cmp::Ordering::Equal,
                (Value::Null, _) => std::cmp::Ordering::Less,
                (_, Value::Null) => std::cmp::Ordering::Greater,
                _ => f(a, b),
            }
        }

        // Signed integers.
        let mut ints: Vec<Value> = (0..60)
            .map(|_| Value::Int(rng.next() as i64 >> rng.below(64)))
            .collect();
        ints.extend([
            Value::Int(i64::MIN),
            Value::Int(i64::MAX),
            Value::Int(0),
            Value::Int(-1),
            Value::Null,
        ]);
        assert_keys_sort_like(&ints, &ty(Kind::BigInt), |a, b| {
            cmp_null_first(a, b, &|a, b| match (a, b) {
                (Value::Int(x), Value::Int(y)) => x.cmp(y),
                _ => unreachable!(),
            })
        });

        // Unsigned integers.
        let mut uints: Vec<Value> = (0..60)
            .map(|_| Value::UInt(rng.next() >> rng.below(64)))
            .collect();
        uints.extend([Value::UInt(u64::MAX), Value::UInt(0), Value::Null]);
        let ut = ColumnType {
            unsigned: true,
            ..ty(Kind::BigInt)
        };
        assert_keys_sort_like(&uints, &ut, |a, b| {
            cmp_null_first(a, b, &|a, b| match (a, b) {
                (Value::UInt(x), Value::UInt(y)) => x.cmp(y),
                _ => unreachable!(),
            })
        });

        // Doubles (total order without NaN; -0 == +0).
        let mut floats: Vec<Value> = (0..60)
            .map(|_| {
                let m = (rng.next() >> 11) as f64 / (1u64 << 53) as f64;
                let e = rng.below(40) as i32 - 20;
                let s = if rng.below(2) == 0 { -1.0 } else { 1.0 };
                Value::Double(s * m * 10f64.powi(e))
            })
            .collect();
        floats.extend([
            Value::Double(0.0),
            Value::Double(-0.0),
            Value::Double(f64::INFINITY),
            Value::Double(f64::NEG_INFINITY),
            Value::Double(f64::MIN_POSITIVE),
            Value::Null,
        ]);
        assert_keys_sort_like(&floats, &ty(Kind::Double), |a, b| {
            cmp_null_first(a, b, &|a, b| match (a, b) {
                (Value::Double(x), Value::Double(y)) => x.partial_cmp(y).unwrap(),
                _ => unreachable!(),
            })
        });

        // Byte strings, including 0x00/0xFF bytes and lengths around 8.
        let mut strs: Vec<Value> = (0..80)
            .map(|_| {
                let n = rng.below(20) as usize;
                Value::Bytes(
                    (0..n)
                        .map(|_| [0u8, 1, 0xFE, 0xFF, b'a'][rng.below(5) as usize])
                        .collect(),
                )
            })
            .collect();
        strs.push(Value::Null);
        assert_keys_sort_like(&strs, &ty(Kind::Blob(65535)), |a, b| {
            cmp_null_first(a, b, &|a, b| match (a, b) {
                (Value::Bytes(x), Value::Bytes(y)) => x.cmp(y),
                _ => unreachable!(),
            })
        });

        // Decimals of several shapes, compared as scaled integers.
        for (p, s) in [(10u8, 2u8), (20, 0), (30, 15), (5, 5), (65, 30), (9, 0)] {
            let t = ty(Kind::Decimal {
                precision: p,
                scale: s,
            });
            let int_digits = u32::from((p - s).min(18));
            let frac_digits = u32::from(s.min(18));
            let mut vals: Vec<Value> = (0..50)
                .map(|_| {
                    // Integer parts of every length up to the column's.
                    let len = rng.below(u64::from(int_digits) + 1) as u32;
                    let i = rng.below(10u64.pow(len));
                    let f = rng.below(10u64.pow(frac_digits));
                    let sign = if rng.below(2) == 0 { "-" } else { "" };
                    let text = if s == 0 {
                        format!("{sign}{i}")
                    } else {
                        format!("{sign}{i}.{f:0width$}", width = usize::from(s))
                    };
                    Value::Decimal(decimal_round(&text, s).unwrap())
                })
                .collect();
            vals.push(Value::Decimal(decimal_round("0", s).unwrap()));
            vals.push(Value::Null);
            // Compare by (sign, int digits, frac digits) numerically.
            let num = |v: &Value| -> (bool, String, String) {
                let Value::Decimal(t) = v else { unreachable!() };
                let (neg, b) = t
                    .strip_prefix('-')
                    .map_or((false, t.as_str()), |r| (true, r));
                let (i, f) = b.split_once('.').unwrap_or((b, ""));
                (neg, format!("{i:0>70}"), f.to_string())
            };
            assert_keys_sort_like(&vals, &t, |a, b| {
                cmp_null_first(a, b, &|a, b| {
                    let (na, ia, fa) = num(a);
                    let (nb, ib, fb) = num(b);
                    let mag = (ia, fa).cmp(&(ib, fb));
                    match (na, nb) {
                        (false, false) => mag,
                        (true, true) => mag.reverse(),
                        (true, false) => std::cmp::Ordering::Less,
                        (false, true) => std::cmp::Ordering::Greater,
                    }
                })
            });
        }

        // Dates, datetimes and times sort chronologically.
        let mut dts: Vec<Value> = (0..50)
            .map(|_| Value::DateTime {
                year: rng.below(10000) as u16,
                month: 1 + rng.below(12) as u8,
                day: 1 + rng.below(28) as u8,
                hour: rng.below(24) as u8,
                minute: rng.below(60) as u8,
                second: rng.below(60) as u8,
                micros: rng.below(1_000_000) as u32,
            })
            .collect();
        dts.push(Value::Null);
        let as_tuple = |v: &Value| match v {
            Value::DateTime {
                year,
                month,
                day,
                hour,
                minute,
                second,
                micros,
            } => (*year, *month, *day, *hour, *minute, *second, *micros),
            _ => unreachable!(),
        };
        assert_keys_sort_like(&dts, &ty(Kind::DateTime(6)), |a, b| {
            cmp_null_first(a, b, &|a, b| as_tuple(a).cmp(&as_tuple(b)))
        });
        let times: Vec<Value> = (0..50)
            .map(|_| {
                let h = rng.below(839);
                Value::Time {
                    negative: rng.below(2) == 0,
                    days: (h / 24) as u32,
                    hours: (h % 24) as u8,
                    minutes: rng.below(60) as u8,
                    seconds: rng.below(60) as u8,
                    micros: rng.below(1_000_000) as u32,
                }
            })
            .collect();
        let micros_of = |v: &Value| match v {
            Value::Time {
                negative,
                days,
                hours,
                minutes,
                seconds,
                micros,
            } => {
                let m = (((i64::from(*days) * 24 + i64::from(*hours)) * 60 + i64::from(*minutes))
                    * 60
                    + i64::from(*seconds))
                    * 1_000_000
                    + i64::from(*micros);
                if *negative {
                    -m
                } else {
                    m
                }
            }
            _ => unreachable!(),
        };
        assert_keys_sort_like(&times, &ty(Kind::Time(6)), |a, b| {
            micros_of(a).cmp(&micros_of(b))
        });
    }

    #[test]
    fn case_insensitive_strings_collide_and_enums_sort_by_index() {
        let ci = ColumnType {
            collation: Collation::GeneralCi,
            ..ty(Kind::VarChar(20))
        };
        let a = key_of(&Value::Text("abc ".into()), &ci);
        assert_eq!(a, key_of(&Value::Text("ABC".into()), &ci));
        assert!(key_of(&Value::Text("a".into()), &ci) < key_of(&Value::Text("B".into()), &ci));
        let bin = ty(Kind::VarChar(20));
        assert_ne!(
            key_of(&Value::Text("a".into()), &bin),
            key_of(&Value::Text("A".into()), &bin)
        );

        let e = ty(Kind::Enum(vec!["z".into(), "a".into(), "m".into()]));
        let keys: Vec<Vec<u8>> = ["z", "a", "m"]
            .iter()
            .map(|s| key_of(&Value::Text((*s).into()), &e))
            .collect();
        assert!(keys[0] < keys[1] && keys[1] < keys[2]);
        assert_eq!(hex(&keys[1]), "040000000000000002");
    }

    #[test]
    fn index_entries_carry_the_handle() {
        let it = ty(Kind::Int);
        let st = ty(Kind::VarChar(10));
        let (a, b) = (Value::Int(7), Value::Text("x".into()));
        let k = index_key(5, 1, &[(&a, &it), (&b, &st)], Some(-9));
        assert!(k.starts_with(&index_prefix(5, 1)));
        assert_eq!(decode_index_handle(&k, &plain_index_value()).unwrap(), -9);
        assert_eq!(plain_index_value(), b"0".to_vec());
        let u = index_key(5, 1, &[(&a, &it)], None);
        assert_eq!(
            decode_index_handle(&u, &unique_index_value(i64::MIN + 3)).unwrap(),
            i64::MIN + 3
        );
        assert_eq!(hex(&unique_index_value(1)), "0000000000000001");
        assert_eq!(
            decode_index_datums(&k, &[&it, &st]).unwrap(),
            vec![a.clone(), b.clone()]
        );
        // A non-unique entry's key sorts by value first, then handle.
        let k2 = index_key(5, 1, &[(&Value::Int(8), &it), (&b, &st)], Some(-100));
        assert!(k < k2);
        assert_eq!(table_id_of(&k), Some(5));
    }

    #[test]
    fn index_datums_decode_for_every_non_ci_type() {
        let e = ty(Kind::Enum(vec!["x".into(), "y".into()]));
        let cases: Vec<(Value, ColumnType)> = vec![
            (Value::Int(-3), ty(Kind::Int)),
            (
                Value::UInt(u64::MAX),
                ColumnType {
                    unsigned: true,
                    ..ty(Kind::BigInt)
                },
            ),
            (Value::Float(1.5), ty(Kind::Float)),
            (Value::Double(-2.25), ty(Kind::Double)),
            (
                Value::Decimal("-12.340".into()),
                ty(Kind::Decimal {
                    precision: 10,
                    scale: 3,
                }),
            ),
            (Value::Text("héllo wörld!".into()), ty(Kind::VarChar(20))),
            (Value::Bytes(vec![0, 0xFF, 1]), ty(Kind::VarBinary(10))),
            (
                Value::Date {
                    year: 2000,
                    month: 2,
                    day: 29,
                },
                ty(Kind::Date),
            ),
            (
                Value::Time {
                    negative: true,
                    days: 34,
                    hours: 22,
                    minutes: 59,
                    seconds: 59,
                    micros: 5,
                },
                ty(Kind::Time(6)),
            ),
            (Value::Text("y".into()), e),
            (Value::Null, ty(Kind::Int)),
        ];
        let pairs: Vec<(&Value, &ColumnType)> = cases.iter().map(|(v, t)| (v, t)).collect();
        let key = index_key(1, 2, &pairs, Some(3));
        let types: Vec<&ColumnType> = cases.iter().map(|(_, t)| t).collect();
        let got = decode_index_datums(&key, &types).unwrap();
        let want: Vec<Value> = cases.iter().map(|(v, _)| v.clone()).collect();
        assert_eq!(got, want);

        let ci = ColumnType {
            collation: Collation::GeneralCi,
            ..ty(Kind::VarChar(20))
        };
        assert!(!decodable_from_index(&ci));
        let v = Value::Text("a".into());
        let k = index_key(1, 2, &[(&v, &ci)], None);
        assert_eq!(decode_index_datums(&k, &[&ci]).unwrap_err().code, 1105);
    }

    fn every_type_row() -> Vec<(i64, Value, ColumnType)> {
        vec![
            (1, Value::Int(-1), ty(Kind::TinyInt)),
            (2, Value::Int(-300), ty(Kind::SmallInt)),
            (3, Value::Int(70_000), ty(Kind::Int)),
            (4, Value::Int(i64::MIN), ty(Kind::BigInt)),
            (
                5,
                Value::UInt(u64::MAX),
                ColumnType {
                    unsigned: true,
                    ..ty(Kind::BigInt)
                },
            ),
            (6, Value::Int(2024), ty(Kind::Year)),
            (7, Value::Float(-0.5), ty(Kind::Float)),
            (8, Value::Double(1e300), ty(Kind::Double)),
            (
                9,
                Value::Decimal("-1234567890.1234".into()),
                ty(Kind::Decimal {
                    precision: 14,
                    scale: 4,
                }),
            ),
            (
                10,
                Value::Decimal("0.00".into()),
                ty(Kind::Decimal {
                    precision: 3,
                    scale: 2,
                }),
            ),
            (
                11,
                Value::Text("AbC".into()),
                ColumnType {
                    collation: Collation::GeneralCi,
                    ..ty(Kind::Char(5))
                },
            ),
            (12, Value::Text(String::new()), ty(Kind::Text(65535))),
            (13, Value::Bytes(vec![0, 1, 2, 0]), ty(Kind::Binary(4))),
            (14, Value::Bytes(vec![0xFF; 10]), ty(Kind::Blob(65535))),
            (
                15,
                Value::Date {
                    year: 0,
                    month: 0,
                    day: 0,
                },
                ty(Kind::Date),
            ),
            (
                16,
                Value::DateTime {
                    year: 9999,
                    month: 12,
                    day: 31,
                    hour: 23,
                    minute: 59,
                    second: 59,
                    micros: 999_999,
                },
                ty(Kind::DateTime(6)),
            ),
            (
                17,
                Value::DateTime {
                    year: 1970,
                    month: 1,
                    day: 1,
                    hour: 0,
                    minute: 0,
                    second: 1,
                    micros: 0,
                },
                ty(Kind::Timestamp(0)),
            ),
            (
                18,
                Value::Time {
                    negative: true,
                    days: 34,
                    hours: 22,
                    minutes: 59,
                    seconds: 59,
                    micros: 0,
                },
                ty(Kind::Time(0)),
            ),
            (
                19,
                Value::Text("b".into()),
                ty(Kind::Enum(vec!["a".into(), "b".into()])),
            ),
            (20, Value::Null, ty(Kind::Int)),
            (21, Value::Null, ty(Kind::VarChar(3))),
        ]
    }

    #[test]
    fn rows_round_trip_every_type() {
        let cols = every_type_row();
        // Given out of id order: the encoder sorts.
        let mut refs: Vec<(i64, &Value, &ColumnType)> =
            cols.iter().map(|(i, v, t)| (*i, v, t)).collect();
        refs.reverse();
        let row = encode_row(&refs);
        assert_eq!(row[0], 128);
        assert_eq!(row[1], 0, "small row");
        let wanted: Vec<(i64, &ColumnType)> = cols.iter().map(|(i, _, t)| (*i, t)).collect();
        let got = decode_row(&row, &wanted).unwrap();
        for ((id, v, _), g) in cols.iter().zip(got) {
            assert_eq!(g.as_ref(), Some(v), "column {id}");
        }
        // Absent columns are None, asked in any order.
        let it = ty(Kind::Int);
        assert_eq!(
            decode_row(&row, &[(99, &it), (20, &it), (3, &it)]).unwrap(),
            vec![None, Some(Value::Null), Some(Value::Int(70_000))]
        );
    }

    #[test]
    fn row_bytes_match_tidb_layout() {
        let (it, st) = (ty(Kind::Int), ty(Kind::VarChar(10)));
        let (a, b, n) = (Value::Int(1), Value::Text("ab".into()), Value::Null);
        let row = encode_row(&[(3, &b, &st), (1, &a, &it), (2, &n, &it)]);
        // ver, flag, 2 not null, 1 null, ids 1 3 | 2, ends 1 3, data.
        assert_eq!(hex(&row), "80000200010001030201000300016162");
    }

    #[test]
    fn large_rows_use_wide_ids_and_offsets() {
        let t = ty(Kind::Blob(u32::MAX));
        let big = Value::Bytes(vec![7; 70_000]);
        let small = Value::Int(300);
        let it = ty(Kind::Int);
        let row = encode_row(&[(1, &big, &t), (2, &small, &it)]);
        assert_eq!(row[1], 1);
        let got = decode_row(&row, &[(1, &t), (2, &it)]).unwrap();
        assert_eq!(got, vec![Some(big.clone()), Some(small.clone())]);
        let row = encode_row(&[(1000, &small, &it), (5, &Value::Null, &it)]);
        assert_eq!(row[1], 1);
        assert_eq!(
            decode_row(&row, &[(1000, &it), (5, &it), (6, &it)]).unwrap(),
            vec![Some(small), Some(Value::Null), None]
        );
    }

    #[test]
    fn integers_use_the_shortest_width() {
        let it = ty(Kind::BigInt);
        for (v, len) in [
            (0i64, 1usize),
            (-128, 1),
            (128, 2),
            (-32769, 4),
            (1 << 31, 8),
        ] {
            let val = Value::Int(v);
            let row = encode_row(&[(1, &val, &it)]);
            assert_eq!(row.len(), 6 + 1 + 2 + len, "{v}");
        }
    }

    #[test]
    fn decoders_reject_garbage_without_panicking() {
        let mut rng = Rng(42);
        let cols = every_type_row();
        let wanted: Vec<(i64, &ColumnType)> = cols.iter().map(|(i, _, t)| (*i, t)).collect();
        let types: Vec<&ColumnType> = cols.iter().map(|(_, _, t)| t).collect();
        let refs: Vec<(i64, &Value, &ColumnType)> =
            cols.iter().map(|(i, v, t)| (*i, v, t)).collect();
        let good_row = encode_row(&refs);
        let pairs: Vec<(&Value, &ColumnType)> = cols.iter().map(|(_, v, t)| (v, t)).collect();
        let good_key = index_key(1, 1, &pairs, Some(1));
        for round in 0..20_000 {
            let mut b: Vec<u8> = match round % 3 {
                0 => (0..rng.below(64)).map(|_| rng.next() as u8).collect(),
                1 => good_row.clone(),
                _ => good_key.clone(),
            };
            if round % 3 != 0 && !b.is_empty() {
                for _ in 0..1 + rng.below(4) {
                    let i = rng.below(b.len() as u64) as usize;
                    b[i] = rng.next() as u8;
                }
                b.truncate(rng.below(b.len() as u64 + 1) as usize);
            }
            if round % 3 == 0 && !b.is_empty() {
                b[0] = [CODEC_VER, b't', b[0]][rng.below(3) as usize];
            }
            for r in [
                decode_row(&b, &wanted).err(),
                decode_index_datums(&b, &types).err(),
            ]
            .into_iter()
            .flatten()
            {
                assert_eq!(r.code, 1105);
            }
            let _ = decode_record_key(&b);
            let _ = decode_index_handle(&b, &b);
            let _ = table_id_of(&b);
        }
        assert_eq!(decode_row(&[], &wanted).unwrap_err().code, 1105);
        assert_eq!(
            decode_row(&[1, 2, 3, 4, 5, 6], &wanted).unwrap_err().code,
            1105
        );
        assert_eq!(decode_record_key(b"t123").unwrap_err().code, 1105);
    }
}
