//! UUID functions: `UUID()` (version 1, as MySQL: time-ordered, a random
//! node with the multicast bit set and a random clock sequence per
//! process), `UUID_SHORT()`, `UUID_TO_BIN`, `BIN_TO_UUID` and `IS_UUID`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use ring::rand::{SecureRandom, SystemRandom};

use super::compare::to_f64;
use crate::error::{ErrorKind, SqlError};
use crate::value::Value;

/// 100 ns intervals between 1582-10-15 and 1970-01-01.
const GREGORIAN_OFFSET: u64 = 0x01B2_1DD2_1381_4000;

struct V1 {
    /// The last timestamp handed out (strictly increasing).
    last: Mutex<u64>,
    clock_seq: u16,
    node: [u8; 6],
}

fn v1_state() -> &'static V1 {
    static STATE: OnceLock<V1> = OnceLock::new();
    STATE.get_or_init(|| {
        let mut r = [0u8; 8];
        // A failing system RNG leaves zeros: still valid UUIDs.
        let _ = SystemRandom::new().fill(&mut r);
        let mut node = [r[2], r[3], r[4], r[5], r[6], r[7]];
        node[0] |= 0x01;
        V1 {
            last: Mutex::new(0),
            clock_seq: u16::from_be_bytes([r[0], r[1]]) & 0x3FFF,
            node,
        }
    })
}

fn unix_100ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| (d.as_nanos() / 100) as u64)
}

/// A new version-1 UUID in its text form.
pub fn uuid_v1() -> String {
    let st = v1_state();
    let ts = {
        let mut last = st.last.lock().unwrap_or_else(|p| p.into_inner());
        let now = unix_100ns() + GREGORIAN_OFFSET;
        *last = now.max(*last + 1);
        *last
    };
    let mut b = [0u8; 16];
    b[0..4].copy_from_slice(&((ts & 0xFFFF_FFFF) as u32).to_be_bytes());
    b[4..6].copy_from_slice(&(((ts >> 32) & 0xFFFF) as u16).to_be_bytes());
    b[6..8].copy_from_slice(&((((ts >> 48) & 0x0FFF) as u16) | 0x1000).to_be_bytes());
    b[8..10].copy_from_slice(&(st.clock_seq | 0x8000).to_be_bytes());
    b[10..16].copy_from_slice(&st.node);
    text(&b)
}

/// `UUID_SHORT()`: (server id & 255) << 56, plus the start time in
/// seconds << 24, plus a counter, as MySQL (server id 0 here).
pub fn uuid_short() -> u64 {
    static NEXT: OnceLock<AtomicU64> = OnceLock::new();
    let next = NEXT.get_or_init(|| {
        let secs = unix_100ns() / 10_000_000;
        AtomicU64::new((secs & 0xFFFF_FFFF) << 24)
    });
    next.fetch_add(1, Ordering::Relaxed)
}

fn text(b: &[u8; 16]) -> String {
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// The 16 bytes of a UUID's text (with or without dashes, optionally in
/// braces), as MySQL's IS_UUID accepts.
fn parse(s: &str) -> Option<[u8; 16]> {
    let s = s
        .strip_prefix('{')
        .and_then(|x| x.strip_suffix('}'))
        .unwrap_or(s);
    let hex: String = match s.len() {
        32 => s.to_string(),
        36 => {
            let dashes = [8, 13, 18, 23];
            if !dashes.iter().all(|&i| s.as_bytes()[i] == b'-') {
                return None;
            }
            s.chars().filter(|&c| c != '-').collect()
        }
        _ => return None,
    };
    if hex.len() != 32 || !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

fn swap_flag(v: Option<&Value>) -> bool {
    v.is_some_and(|v| !v.is_null() && to_f64(v) != 0.0)
}

/// Time-low and time-high exchanged (UUID_TO_BIN's swap flag).
fn swapped(b: [u8; 16]) -> [u8; 16] {
    let mut o = b;
    o[0..2].copy_from_slice(&b[6..8]);
    o[2..4].copy_from_slice(&b[4..6]);
    o[4..8].copy_from_slice(&b[0..4]);
    o
}

fn unswapped(b: [u8; 16]) -> [u8; 16] {
    let mut o = b;
    o[6..8].copy_from_slice(&b[0..2]);
    o[4..6].copy_from_slice(&b[2..4]);
    o[0..4].copy_from_slice(&b[4..8]);
    o
}

fn bad(v: &Value, f: &str) -> SqlError {
    SqlError::of(
        ErrorKind::WrongValueForType,
        format!("Incorrect string value: '{v}' for function {f}"),
    )
}

/// The UUID functions by name.
pub fn call(name: &str, args: &[Value]) -> Result<Option<Value>, SqlError> {
    let n = args.len();
    let arity = |ok: bool| super::arity(name, ok);
    Ok(Some(match name {
        "uuid" => {
            arity(n == 0)?;
            Value::Text(uuid_v1())
        }
        "uuid_short" => {
            arity(n == 0)?;
            Value::UInt(uuid_short())
        }
        "is_uuid" => {
            arity(n == 1)?;
            match &args[0] {
                Value::Null => Value::Null,
                v => Value::Int(i64::from(parse(&v.to_string()).is_some())),
            }
        }
        "uuid_to_bin" => {
            arity(n == 1 || n == 2)?;
            match &args[0] {
                Value::Null => Value::Null,
                v => {
                    let b = parse(&v.to_string()).ok_or_else(|| bad(v, name))?;
                    let b = if swap_flag(args.get(1)) {
                        swapped(b)
                    } else {
                        b
                    };
                    Value::Bytes(b.to_vec())
                }
            }
        }
        "bin_to_uuid" => {
            arity(n == 1 || n == 2)?;
            match &args[0] {
                Value::Null => Value::Null,
                v => {
                    let bytes = match v {
                        Value::Bytes(b) => b.clone(),
                        other => other.to_string().into_bytes(),
                    };
                    let b: [u8; 16] = bytes.try_into().map_err(|_| bad(v, name))?;
                    let b = if swap_flag(args.get(1)) {
                        unswapped(b)
                    } else {
                        b
                    };
                    Value::Text(text(&b))
                }
            }
        }
        _ => return Ok(None),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_uuids_are_version_1_and_increase() {
        let a = uuid_v1();
        let b = uuid_v1();
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "1");
        assert_ne!(a, b);
        assert!(parse(&a).is_some());
        assert!(uuid_short() < uuid_short());
    }

    #[test]
    fn bin_round_trips_with_and_without_swap() {
        let u = Value::Text("6ccd780c-baba-1026-9564-5b8c656024db".into());
        for swap in [0, 1] {
            let bin = call("uuid_to_bin", &[u.clone(), Value::Int(swap)])
                .unwrap()
                .unwrap();
            let back = call("bin_to_uuid", &[bin.clone(), Value::Int(swap)])
                .unwrap()
                .unwrap();
            assert_eq!(back, u);
            if swap == 1 {
                assert_eq!(
                    bin,
                    Value::Bytes(vec![
                        0x10, 0x26, 0xba, 0xba, 0x6c, 0xcd, 0x78, 0x0c, 0x95, 0x64, 0x5b, 0x8c,
                        0x65, 0x60, 0x24, 0xdb
                    ])
                );
            }
        }
        assert_eq!(
            call("uuid_to_bin", &[Value::Text("nope".into())])
                .unwrap_err()
                .code,
            1411
        );
    }
}
