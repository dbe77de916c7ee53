//! The id allocator: unique, increasing ids for stores, regions and peers.
//!
//! Ids are reserved from storage in batches (`step`): the end of the batch is
//! persisted before any id of it is handed out, and a restart resumes after
//! the persisted end, so an id is never handed out twice (a crash only skips
//! the rest of a batch). Deterministic; no clocks.

use crate::error::{Error, Result};
use crate::storage::Storage;
use crate::tso::read_u64;

const END_KEY: &[u8] = b"id/end";
/// Ids reserved per storage write.
pub const DEFAULT_STEP: u64 = 1000;

/// The allocator's state.
#[derive(Debug)]
pub struct IdAllocator {
    last: u64,
    end: u64,
    step: u64,
}

impl IdAllocator {
    /// Resumes after the persisted end of the last batch.
    pub fn load(storage: &Storage, step: u64) -> Result<IdAllocator> {
        let end = read_u64(storage, END_KEY)?.unwrap_or(0);
        Ok(IdAllocator {
            last: end,
            end,
            step: step.max(1),
        })
    }

    /// One new id.
    pub fn alloc(&mut self, storage: &mut Storage) -> Result<u64> {
        Ok(self.alloc_many(storage, 1)?[0])
    }

    /// `n` new ids, increasing.
    pub fn alloc_many(&mut self, storage: &mut Storage, n: usize) -> Result<Vec<u64>> {
        if n == 0 || n > 100_000 {
            return Err(Error::InvalidValue(format!(
                "can allocate 1 to 100000 ids at once, asked for {n}"
            )));
        }
        let n64 = n as u64;
        if self.last + n64 > self.end {
            let end = self.last + n64 + self.step;
            storage.put(END_KEY, end.to_be_bytes().to_vec())?;
            self.end = end;
        }
        let ids = (self.last + 1..=self.last + n64).collect();
        self.last += n64;
        Ok(ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_increasing_across_restart() {
        let dir = tempfile::tempdir().unwrap();
        let mut seen = Vec::new();
        for _ in 0..3 {
            let mut s = Storage::open(dir.path()).unwrap();
            let mut ids = IdAllocator::load(&s, 10).unwrap();
            for _ in 0..25 {
                seen.push(ids.alloc(&mut s).unwrap());
            }
            seen.extend(ids.alloc_many(&mut s, 7).unwrap());
        }
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
        assert_eq!(seen[0], 1);
    }

    #[test]
    fn ids_persist_in_batches_not_per_id() {
        let mut s = Storage::in_memory();
        let mut ids = IdAllocator::load(&s, 100).unwrap();
        ids.alloc(&mut s).unwrap();
        let end = read_u64(&s, END_KEY).unwrap();
        for _ in 0..50 {
            ids.alloc(&mut s).unwrap();
        }
        assert_eq!(read_u64(&s, END_KEY).unwrap(), end);
    }
}
