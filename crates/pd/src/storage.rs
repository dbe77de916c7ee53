//! PD's durable state: a small key-value store kept as an append-only log
//! file that is fsynced on every write batch.
//!
//! ```text
//!  <data-dir>/pd.log:  record*           record = len:u32 crc32:u32 payload
//!  payload = op*                         op     = 1 klen:u32 key vlen:u32 value   (put)
//!                                                | 2 klen:u32 key                (delete)
//! ```
//!
//! Invariants: a batch is one record, so it is applied whole or not at all;
//! `write` returns only after the record is on disk (`fsync`); at open, the
//! log is replayed and a torn or corrupt tail (a crash mid-write) is cut off.
//! When the log grows well past the live data it is rewritten to a temporary
//! file, fsynced and renamed over the old one (then the directory is
//! fsynced), so a crash leaves either the old or the new log.
//!
//! PD's state is small (cluster, stores, regions, allocator windows), so the
//! whole map lives in memory and the file is only the durable copy. The
//! in-memory variant backs the deterministic unit tests.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};

/// One change in a write batch: `Some(value)` puts, `None` deletes.
pub type Op = (Vec<u8>, Option<Vec<u8>>);

const LOG_NAME: &str = "pd.log";
const COMPACT_MIN_BYTES: u64 = 4 << 20;

/// Where writes go when PD is replicated: proposes a batch through Raft
/// and returns once it is committed and applied on this member.
#[derive(Clone)]
pub struct Proposer(pub Arc<dyn Fn(Vec<Op>) -> Result<()> + Send + Sync>);

impl std::fmt::Debug for Proposer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Proposer")
    }
}

/// The durable key-value store.
#[derive(Debug)]
pub struct Storage {
    map: BTreeMap<Vec<u8>, Vec<u8>>,
    file: Option<LogFile>,
    proposer: Option<Proposer>,
}

#[derive(Debug)]
struct LogFile {
    dir: PathBuf,
    name: String,
    file: File,
    len: u64,
}

impl Storage {
    /// A store that keeps nothing on disk (unit tests).
    pub fn in_memory() -> Storage {
        Storage {
            map: BTreeMap::new(),
            file: None,
            proposer: None,
        }
    }

    /// A view of replicated state: reads come from `map` (a copy of the
    /// applied state), writes go through `proposer` (Raft) and, once it
    /// returns, are also applied to this copy.
    pub fn replicated(map: BTreeMap<Vec<u8>, Vec<u8>>, proposer: Proposer) -> Storage {
        Storage {
            map,
            file: None,
            proposer: Some(proposer),
        }
    }

    /// A copy of all entries.
    pub fn to_map(&self) -> BTreeMap<Vec<u8>, Vec<u8>> {
        self.map.clone()
    }

    /// Opens (or creates) the log in `dir` and replays it.
    pub fn open(dir: &Path) -> Result<Storage> {
        Self::open_named(dir, LOG_NAME)
    }

    /// Opens (or creates) the log file `name` in `dir` and replays it.
    pub fn open_named(dir: &Path, name: &str) -> Result<Storage> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::storage(dir, "creating the data directory", e))?;
        let path = dir.join(name);
        let existed = path.exists();
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(|e| Error::storage(&path, "opening the log", e))?;
        if !existed {
            // The new file's directory entry must be durable too.
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| Error::storage(dir, "syncing the data directory", e))?;
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(|e| Error::storage(&path, "reading the log", e))?;
        let mut map = BTreeMap::new();
        let good = replay(&bytes, &mut map);
        if good < bytes.len() {
            tracing::warn!(
                file = %path.display(),
                "the log has {} bytes of torn or corrupt tail after offset {good} (a crash \
                 during a write); cutting them off",
                bytes.len() - good
            );
            file.set_len(good as u64)
                .and_then(|_| file.sync_all())
                .map_err(|e| Error::storage(&path, "truncating the torn tail", e))?;
        }
        let mut storage = Storage {
            map,
            file: Some(LogFile {
                dir: dir.to_path_buf(),
                name: name.to_string(),
                file,
                len: good as u64,
            }),
            proposer: None,
        };
        storage.maybe_compact()?;
        Ok(storage)
    }

    /// The value under `key`.
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.map.get(key).map(Vec::as_slice)
    }

    /// All entries whose key starts with `prefix`, in key order.
    pub fn scan_prefix<'a>(
        &'a self,
        prefix: &'a [u8],
    ) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + 'a {
        self.map
            .range(prefix.to_vec()..)
            .take_while(move |(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.as_slice(), v.as_slice()))
    }

    /// Applies a batch atomically and durably.
    pub fn write(&mut self, batch: Vec<Op>) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        if let Some(p) = &self.proposer {
            (p.0)(batch.clone())?;
        } else if let Some(log) = &mut self.file {
            let record = encode_record(&batch);
            let path = log.dir.join(&log.name);
            log.file
                .write_all(&record)
                .and_then(|_| log.file.sync_data())
                .map_err(|e| Error::storage(&path, "appending to the log", e))?;
            log.len += record.len() as u64;
        }
        for (k, v) in batch {
            match v {
                Some(v) => {
                    self.map.insert(k, v);
                }
                None => {
                    self.map.remove(&k);
                }
            }
        }
        self.maybe_compact()
    }

    /// Puts one key.
    pub fn put(&mut self, key: &[u8], value: Vec<u8>) -> Result<()> {
        self.write(vec![(key.to_vec(), Some(value))])
    }

    fn live_bytes(&self) -> u64 {
        self.map
            .iter()
            .map(|(k, v)| (k.len() + v.len() + 9) as u64)
            .sum()
    }

    /// Replaces the whole content (a Raft snapshot being installed):
    /// rewritten to a new file, fsynced and renamed over the log.
    pub fn reset(&mut self, map: BTreeMap<Vec<u8>, Vec<u8>>) -> Result<()> {
        self.map = map;
        self.rewrite()
    }

    fn maybe_compact(&mut self) -> Result<()> {
        let live = self.live_bytes();
        let Some(log) = &mut self.file else {
            return Ok(());
        };
        if log.len < COMPACT_MIN_BYTES || log.len < 2 * live + 4096 {
            return Ok(());
        }
        self.rewrite()
    }

    fn rewrite(&mut self) -> Result<()> {
        let Some(log) = &mut self.file else {
            return Ok(());
        };
        let batch: Vec<Op> = self
            .map
            .iter()
            .map(|(k, v)| (k.clone(), Some(v.clone())))
            .collect();
        let record = encode_record(&batch);
        let tmp = log.dir.join(format!("{}.tmp", log.name));
        let path = log.dir.join(&log.name);
        let write_tmp = || -> std::io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(&record)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            File::open(&log.dir)?.sync_all()
        };
        write_tmp().map_err(|e| Error::storage(&tmp, "compacting the log", e))?;
        log.file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| Error::storage(&path, "reopening the compacted log", e))?;
        log.len = record.len() as u64;
        Ok(())
    }
}

fn encode_record(batch: &[Op]) -> Vec<u8> {
    let payload = encode_ops(batch);
    let mut out = Vec::with_capacity(payload.len() + 8);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    out
}

/// Encodes a write batch (the payload of a log record, and of a Raft entry).
pub fn encode_ops(batch: &[Op]) -> Vec<u8> {
    let mut payload = Vec::new();
    for (k, v) in batch {
        payload.push(if v.is_some() { 1 } else { 2 });
        payload.extend_from_slice(&(k.len() as u32).to_le_bytes());
        payload.extend_from_slice(k);
        if let Some(v) = v {
            payload.extend_from_slice(&(v.len() as u32).to_le_bytes());
            payload.extend_from_slice(v);
        }
    }
    payload
}

/// Replays records into `map`; returns the length of the valid prefix.
fn replay(bytes: &[u8], map: &mut BTreeMap<Vec<u8>, Vec<u8>>) -> usize {
    let mut pos = 0;
    while let Some(header) = bytes.get(pos..pos + 8) {
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let Some(payload) = bytes.get(pos + 8..pos + 8 + len) else {
            break;
        };
        if crc32(payload) != crc {
            break;
        }
        let Some(ops) = decode_ops(payload) else {
            break;
        };
        for (k, v) in ops {
            match v {
                Some(v) => {
                    map.insert(k, v);
                }
                None => {
                    map.remove(&k);
                }
            }
        }
        pos += 8 + len;
    }
    pos
}

/// Decodes a write batch; `None` if the bytes are not one.
pub fn decode_ops(mut p: &[u8]) -> Option<Vec<Op>> {
    fn take<'a>(p: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (head, rest) = (p.get(..n)?, p.get(n..)?);
        *p = rest;
        Some(head)
    }
    fn take_len(p: &mut &[u8]) -> Option<usize> {
        let b = take(p, 4)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }
    let mut ops = Vec::new();
    while !p.is_empty() {
        let op = take(&mut p, 1)?[0];
        let klen = take_len(&mut p)?;
        let key = take(&mut p, klen)?.to_vec();
        match op {
            1 => {
                let vlen = take_len(&mut p)?;
                ops.push((key, Some(take(&mut p, vlen)?.to_vec())));
            }
            2 => ops.push((key, None)),
            _ => return None,
        }
    }
    Some(ops)
}

/// CRC-32 (IEEE), bitwise; records are small and written rarely.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_ieee_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn writes_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = Storage::open(dir.path()).unwrap();
            s.put(b"a", b"1".to_vec()).unwrap();
            s.write(vec![
                (b"b".to_vec(), Some(b"2".to_vec())),
                (b"a".to_vec(), None),
            ])
            .unwrap();
        }
        let s = Storage::open(dir.path()).unwrap();
        assert_eq!(s.get(b"a"), None);
        assert_eq!(s.get(b"b"), Some(&b"2"[..]));
    }

    #[test]
    fn torn_tail_is_cut_and_earlier_batches_kept() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = Storage::open(dir.path()).unwrap();
            s.put(b"k", b"v".to_vec()).unwrap();
            s.put(b"k2", b"v2".to_vec()).unwrap();
        }
        let path = dir.path().join(LOG_NAME);
        let len = std::fs::metadata(&path).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 1)
            .unwrap();
        let mut s = Storage::open(dir.path()).unwrap();
        assert_eq!(s.get(b"k"), Some(&b"v"[..]));
        assert_eq!(s.get(b"k2"), None);
        s.put(b"k3", b"v3".to_vec()).unwrap();
        drop(s);
        let s = Storage::open(dir.path()).unwrap();
        assert_eq!(s.get(b"k3"), Some(&b"v3"[..]));
    }

    #[test]
    fn compaction_keeps_live_data() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = Storage::open(dir.path()).unwrap();
            let value = vec![7u8; 64 << 10];
            for i in 0..100u32 {
                s.put(b"same", value.clone()).unwrap();
                s.put(format!("k{}", i % 3).as_bytes(), i.to_le_bytes().to_vec())
                    .unwrap();
            }
        }
        let len = std::fs::metadata(dir.path().join(LOG_NAME)).unwrap().len();
        assert!(
            len < COMPACT_MIN_BYTES,
            "log was not compacted: {len} bytes"
        );
        let s = Storage::open(dir.path()).unwrap();
        assert_eq!(s.get(b"k0"), Some(&99u32.to_le_bytes()[..]));
        assert_eq!(s.scan_prefix(b"k").count(), 3);
    }
}
