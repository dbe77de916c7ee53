//! The timestamp oracle (TSO): hybrid timestamps that order every
//! transaction in the cluster.
//!
//! ```text
//!   63                      18 17          0
//!  ┌─────────────────────────┬─────────────┐
//!  │ physical (unix ms)      │ logical     │   ts = physical << 18 | logical
//!  └─────────────────────────┴─────────────┘
//! ```
//!
//! Invariants:
//! - every timestamp handed out is strictly greater than every earlier one,
//!   within one process and across restarts (and, once replicated, across
//!   leader changes);
//! - no timestamp is handed out whose physical part is at or beyond the
//!   window persisted in storage (`saved_until`); the window is extended
//!   (and fsynced) *before* such a timestamp is handed out;
//! - on start the physical part begins at `max(now, saved_until)`, which is
//!   above anything a previous incarnation could have handed out.
//!
//! Deterministic: time comes in as an argument (`now_ms`); the server passes
//! the wall clock, tests pass whatever they like.

use crate::error::{Error, Result};
use crate::storage::Storage;

/// Bits of the logical part.
pub const LOGICAL_BITS: u32 = 18;
/// Logical values are `0 .. MAX_LOGICAL`.
pub const MAX_LOGICAL: u64 = 1 << LOGICAL_BITS;
/// How far ahead of the handed-out physical time the window is persisted.
pub const DEFAULT_WINDOW_MS: u64 = 3000;

const SAVED_KEY: &[u8] = b"tso/saved-until";

/// A hybrid timestamp.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp {
    /// Unix milliseconds.
    pub physical: u64,
    /// Logical counter within the millisecond.
    pub logical: u64,
}

impl Timestamp {
    /// The 64-bit form clients use.
    pub fn compose(self) -> u64 {
        (self.physical << LOGICAL_BITS) | self.logical
    }

    /// Splits a 64-bit timestamp.
    pub fn decode(ts: u64) -> Timestamp {
        Timestamp {
            physical: ts >> LOGICAL_BITS,
            logical: ts & (MAX_LOGICAL - 1),
        }
    }
}

/// The allocator's state.
#[derive(Debug)]
pub struct TsoAllocator {
    physical: u64,
    logical: u64,
    saved_until: u64,
    window_ms: u64,
}

impl TsoAllocator {
    /// Starts an allocator above anything handed out before: loads the
    /// persisted window, starts at `max(now, window)` and persists a new
    /// window ahead of that.
    pub fn load(storage: &mut Storage, now_ms: u64, window_ms: u64) -> Result<TsoAllocator> {
        let saved = read_u64(storage, SAVED_KEY)?.unwrap_or(0);
        let physical = now_ms.max(saved);
        let mut tso = TsoAllocator {
            physical,
            logical: 0,
            saved_until: saved,
            window_ms: window_ms.max(1),
        };
        tso.save(storage, physical + tso.window_ms)?;
        Ok(tso)
    }

    /// The end of the persisted window (exclusive).
    pub fn saved_until(&self) -> u64 {
        self.saved_until
    }

    /// The last timestamp handed out (or the starting point).
    pub fn last(&self) -> Timestamp {
        Timestamp {
            physical: self.physical,
            logical: self.logical,
        }
    }

    /// Allocates `count` consecutive timestamps and returns the LAST one
    /// (`logical - count + 1 ..= logical` are the caller's).
    pub fn allocate(
        &mut self,
        storage: &mut Storage,
        now_ms: u64,
        count: u32,
    ) -> Result<Timestamp> {
        let count = u64::from(count);
        if count == 0 || count >= MAX_LOGICAL {
            return Err(Error::InvalidValue(format!(
                "TSO count must be between 1 and {}, got {count}",
                MAX_LOGICAL - 1
            )));
        }
        let (mut physical, mut logical) = (self.physical, self.logical);
        if now_ms > physical {
            physical = now_ms;
            logical = 0;
        }
        if logical + count >= MAX_LOGICAL {
            // The logical part is exhausted for this millisecond: move on
            // (slightly ahead of the clock; still inside the saved window).
            physical += 1;
            logical = 0;
        }
        if physical >= self.saved_until {
            self.save(storage, physical.max(now_ms) + self.window_ms)?;
        }
        self.physical = physical;
        self.logical = logical + count;
        Ok(self.last())
    }

    fn save(&mut self, storage: &mut Storage, until: u64) -> Result<()> {
        storage.put(SAVED_KEY, until.to_be_bytes().to_vec())?;
        self.saved_until = until;
        Ok(())
    }
}

/// Reads a big-endian u64 value.
pub(crate) fn read_u64(storage: &Storage, key: &[u8]) -> Result<Option<u64>> {
    match storage.get(key) {
        None => Ok(None),
        Some(v) => {
            let bytes: [u8; 8] = v.try_into().map_err(|_| {
                Error::Corrupt(format!(
                    "key {} holds {} bytes, expected 8",
                    String::from_utf8_lossy(key),
                    v.len()
                ))
            })?;
            Ok(Some(u64::from_be_bytes(bytes)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tso_is_strictly_increasing_within_a_millisecond_and_when_the_clock_stands_still() {
        let mut s = Storage::in_memory();
        let mut tso = TsoAllocator::load(&mut s, 1000, DEFAULT_WINDOW_MS).unwrap();
        let mut prev = tso.allocate(&mut s, 1000, 1).unwrap();
        for i in 0..10_000u32 {
            let ts = tso.allocate(&mut s, 1000, 1 + i % 7).unwrap();
            assert!(ts > prev, "{ts:?} after {prev:?}");
            assert!(
                ts.logical - prev.logical >= u64::from(1 + i % 7) || ts.physical > prev.physical
            );
            prev = ts;
        }
    }

    #[test]
    fn tso_is_strictly_increasing_when_the_clock_goes_backwards() {
        let mut s = Storage::in_memory();
        let mut tso = TsoAllocator::load(&mut s, 5000, DEFAULT_WINDOW_MS).unwrap();
        let a = tso.allocate(&mut s, 5000, 3).unwrap();
        let b = tso.allocate(&mut s, 4000, 3).unwrap();
        assert!(b > a);
        assert_eq!(b.physical, 5000);
    }

    #[test]
    fn tso_physical_follows_the_clock() {
        let mut s = Storage::in_memory();
        let mut tso = TsoAllocator::load(&mut s, 1000, DEFAULT_WINDOW_MS).unwrap();
        assert_eq!(tso.allocate(&mut s, 1000, 1).unwrap().physical, 1000);
        let ts = tso.allocate(&mut s, 1234, 5).unwrap();
        assert_eq!((ts.physical, ts.logical), (1234, 5));
    }

    #[test]
    fn tso_batch_returns_the_last_of_count_timestamps() {
        let mut s = Storage::in_memory();
        let mut tso = TsoAllocator::load(&mut s, 1000, DEFAULT_WINDOW_MS).unwrap();
        let a = tso.allocate(&mut s, 1000, 10).unwrap();
        assert_eq!(a.logical, 10);
        let b = tso.allocate(&mut s, 1000, 5).unwrap();
        assert_eq!(b.logical, 15);
    }

    #[test]
    fn tso_logical_overflow_moves_to_the_next_millisecond() {
        let mut s = Storage::in_memory();
        let mut tso = TsoAllocator::load(&mut s, 1000, DEFAULT_WINDOW_MS).unwrap();
        let big = (MAX_LOGICAL - 1) as u32;
        let a = tso.allocate(&mut s, 1000, big).unwrap();
        assert_eq!((a.physical, a.logical), (1000, MAX_LOGICAL - 1));
        let b = tso.allocate(&mut s, 1000, 1).unwrap();
        assert_eq!((b.physical, b.logical), (1001, 1));
        assert!(b.compose() > a.compose());
    }

    #[test]
    fn tso_rejects_zero_and_oversized_counts() {
        let mut s = Storage::in_memory();
        let mut tso = TsoAllocator::load(&mut s, 1000, DEFAULT_WINDOW_MS).unwrap();
        assert!(matches!(
            tso.allocate(&mut s, 1000, 0),
            Err(Error::InvalidValue(_))
        ));
        assert!(matches!(
            tso.allocate(&mut s, 1000, MAX_LOGICAL as u32),
            Err(Error::InvalidValue(_))
        ));
    }

    #[test]
    fn tso_never_hands_out_beyond_the_persisted_window() {
        let mut s = Storage::in_memory();
        let mut tso = TsoAllocator::load(&mut s, 1000, 100).unwrap();
        for now in (1000..5000).step_by(7) {
            let ts = tso.allocate(&mut s, now, 1).unwrap();
            let persisted = read_u64(&s, SAVED_KEY).unwrap().unwrap();
            assert!(ts.physical < persisted, "{ts:?} beyond window {persisted}");
        }
    }

    #[test]
    fn tso_is_strictly_increasing_across_restart() {
        let dir = tempfile::tempdir().unwrap();
        let last = {
            let mut s = Storage::open(dir.path()).unwrap();
            let mut tso = TsoAllocator::load(&mut s, 10_000, DEFAULT_WINDOW_MS).unwrap();
            let mut last = tso.allocate(&mut s, 10_000, 1).unwrap();
            for _ in 0..100 {
                last = tso.allocate(&mut s, 10_500, 100).unwrap();
            }
            last
        };
        // Restart with a clock that went backwards (another machine, NTP step).
        let mut s = Storage::open(dir.path()).unwrap();
        let mut tso = TsoAllocator::load(&mut s, 9_000, DEFAULT_WINDOW_MS).unwrap();
        let first = tso.allocate(&mut s, 9_000, 1).unwrap();
        assert!(first > last, "{first:?} not above {last:?}");
        assert!(
            first.physical >= 10_000 + DEFAULT_WINDOW_MS,
            "starts at or above the persisted window"
        );
    }

    #[test]
    fn tso_compose_and_decode_round_trip() {
        let ts = Timestamp {
            physical: 1_700_000_000_000,
            logical: 12345,
        };
        assert_eq!(Timestamp::decode(ts.compose()), ts);
    }
}
