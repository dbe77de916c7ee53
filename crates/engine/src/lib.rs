//! The storage engine interface the store is written against.
//!
//! Like TiKV's `engine_traits`, this crate depends on no engine: it names
//! the column families, the snapshot and the atomic write batch, and nothing
//! else. `tiox-kv` provides the implementation on fjall; tests or other
//! engines can provide theirs.
//!
//! Invariants every implementation keeps:
//! - a [`WriteBatch`] is applied atomically across column families;
//! - with `sync = true`, `write` returns only after the batch is durable
//!   (survives a crash of the process and of the machine);
//! - a [`Snapshot`] sees exactly the batches written before it was taken.

use std::fmt;
use std::ops::Bound;

/// Column families, as TiKV's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Cf {
    /// Values (large transactional values, raw KV values).
    Default,
    /// Percolator locks.
    Lock,
    /// Percolator commit and rollback records.
    Write,
    /// Raft state and log.
    Raft,
}

impl Cf {
    /// All column families.
    pub const ALL: [Cf; 4] = [Cf::Default, Cf::Lock, Cf::Write, Cf::Raft];

    /// The name as TiKV spells it.
    pub fn name(self) -> &'static str {
        match self {
            Cf::Default => "default",
            Cf::Lock => "lock",
            Cf::Write => "write",
            Cf::Raft => "raft",
        }
    }

    /// Parses a name; `""` means `default`, as in kvproto.
    pub fn from_name(name: &str) -> Option<Cf> {
        match name {
            "" | "default" => Some(Cf::Default),
            "lock" => Some(Cf::Lock),
            "write" => Some(Cf::Write),
            "raft" => Some(Cf::Raft),
            _ => None,
        }
    }
}

impl fmt::Display for Cf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An engine failure (I/O, corruption). The store cannot continue safely
/// when a write fails; callers surface it and stop serving the region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineError(pub String);

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "storage engine: {}", self.0)
    }
}

impl std::error::Error for EngineError {}

/// Result of engine operations.
pub type Result<T> = std::result::Result<T, EngineError>;

/// A key-value pair.
pub type KvPair = (Vec<u8>, Vec<u8>);

/// One mutation in a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mutation {
    /// Set `key` to `value`.
    Put(Cf, Vec<u8>, Vec<u8>),
    /// Remove `key`.
    Delete(Cf, Vec<u8>),
}

/// An atomic group of mutations.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteBatch {
    /// The mutations, applied in order.
    pub mutations: Vec<Mutation>,
}

impl WriteBatch {
    /// Adds a put.
    pub fn put(&mut self, cf: Cf, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.mutations
            .push(Mutation::Put(cf, key.into(), value.into()));
    }

    /// Adds a delete.
    pub fn delete(&mut self, cf: Cf, key: impl Into<Vec<u8>>) {
        self.mutations.push(Mutation::Delete(cf, key.into()));
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.mutations.is_empty()
    }

    /// Number of mutations.
    pub fn len(&self) -> usize {
        self.mutations.len()
    }

    /// Appends another batch.
    pub fn extend(&mut self, other: WriteBatch) {
        self.mutations.extend(other.mutations);
    }
}

/// An iterator over a key range of one column family.
pub type KvIter<'a> = Box<dyn Iterator<Item = Result<KvPair>> + Send + 'a>;

/// A consistent, read-only view of the engine.
pub trait Snapshot: Send + Sync {
    /// The value of `key`, if any.
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>>;

    /// Pairs with keys in `[lower, upper)` in key order, or in reverse.
    fn iter(&self, cf: Cf, lower: Bound<&[u8]>, upper: Bound<&[u8]>, reverse: bool) -> KvIter<'_>;
}

/// A storage engine.
pub trait Engine: Send + Sync + 'static {
    /// The snapshot type.
    type Snap: Snapshot + 'static;

    /// A snapshot of the current state.
    fn snapshot(&self) -> Self::Snap;

    /// Applies a batch atomically; durable before returning when `sync`.
    fn write(&self, batch: WriteBatch, sync: bool) -> Result<()>;

    /// Makes every write so far durable.
    fn sync(&self) -> Result<()>;

    /// Approximate bytes on disk.
    fn disk_size(&self) -> u64;
}
