//! The embedded store ("unistore", after TiDB's): the store's request layer
//! and MVCC code over the storage engine in the calling process, with no
//! Raft, no PD and no sockets. `tidb-server --store=unistore` and the
//! in-process SQL and transaction tests run on it.
//!
//! ```text
//!  TxnClient ─► KvClient::local ─► Unistore::call (tiox_client::transport::Store)
//!                                     └► storage::dispatch ─► Storage<OneRegion>
//!                                          reads: route checks, MvccReader on a snapshot
//!                                          writes: route + size checks ─► OneRegion::propose
//!                                                  └► command::execute (MvccTxn) ─► engine.write
//!  TxnClient ─► TsoClient::local ─► LocalTso (persisted high-water mark)
//! ```
//!
//! Why this shape: the transaction client, the request checks (key and
//! value limits, region and epoch checks) and the Percolator actions are
//! the very code a cluster runs, so behaviour proven here holds there; only
//! delivery differs. One region covers every key. A write runs
//! `command::execute` against a fresh snapshot and writes its batch under
//! one mutex, so writes execute one at a time in a total order, each
//! atomically — the same guarantee a region's Raft log gives its apply.
//! On disk every write batch is fsynced before the client hears of it (an
//! acknowledged commit survives a crash); a temporary store
//! ([`Unistore::temporary`]) lives in a directory removed when it is
//! dropped and never fsyncs. Writes run on the caller's thread: an fsync
//! holds one runtime worker for its duration.
//!
//! Timestamps: [`LocalTso`] hands out PD-layout timestamps (wall-clock ms,
//! then an 18-bit counter) that never go backwards, also across restarts:
//! like PD it persists a limit ahead of use (3 s past the clock) and starts
//! after the persisted limit when it opens.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tiox_client::region_cache::RegionEntry;
use tiox_client::transport::{BoxFuture, Store, Timestamps};
use tiox_client::tso::{compose, LOGICAL_BITS};
use tiox_engine::{Cf, Engine, Snapshot as _, WriteBatch};
use tiox_proto::metapb;
use tiox_proto::tikvpb::batch_commands_request::request::Cmd as Req;
use tiox_proto::tikvpb::batch_commands_response::response::Cmd as Resp;

use crate::command::{execute, Command, Response};
use crate::engine_fjall::{FjallEngine, FjallOptions};
use crate::error::{Error, RegionError, Result};
use crate::raftstore::store::RegionStatus;
use crate::storage::{dispatch, Regions, Storage};

/// The id of the one region (and of its peer and store).
pub const REGION_ID: u64 = 1;

/// Where the timestamp limit is kept (the Raft column family is otherwise
/// unused by an embedded store).
const TSO_LIMIT_KEY: &[u8] = b"unistore/tso-limit";

/// How far past the clock the persisted timestamp limit runs (PD's
/// default save interval).
const TSO_SAVE_AHEAD_MS: u64 = 3000;

/// The region covering every key.
fn the_region() -> metapb::Region {
    metapb::Region {
        id: REGION_ID,
        start_key: Vec::new(),
        end_key: Vec::new(),
        region_epoch: Some(metapb::RegionEpoch {
            conf_ver: 1,
            version: 1,
        }),
        peers: vec![the_peer()],
    }
}

fn the_peer() -> metapb::Peer {
    metapb::Peer {
        id: REGION_ID,
        store_id: REGION_ID,
        ..Default::default()
    }
}

/// The embedded store's one region: always led here, always readable;
/// a proposal executes at once.
#[derive(Clone)]
pub struct OneRegion {
    engine: FjallEngine,
    region: metapb::Region,
    /// Serialises execute-and-write: one write at a time, in a total order.
    apply: Arc<Mutex<()>>,
    /// Whether every write is fsynced.
    sync: bool,
}

impl OneRegion {
    fn status(&self) -> RegionStatus {
        RegionStatus {
            region: self.region.clone(),
            peer: the_peer(),
            is_leader: true,
            leader: Some(the_peer()),
            applied: 0,
            term: 1,
            truncated_index: 0,
            readable: true,
            // No other replica can be elected: the lease never runs out.
            lease_until: Some(Instant::now() + Duration::from_secs(3600)),
            pending_peers: Vec::new(),
            down_peers: Vec::new(),
        }
    }

    /// Executes `cmd` against the current state and writes its changes.
    fn apply(&self, cmd: &Command) -> Result<Response> {
        if cmd.split.is_some() {
            return Err(Error::InvalidRequest(
                "the embedded store has a single region and does not split".into(),
            ));
        }
        let _turn = self.apply.lock().unwrap_or_else(|p| p.into_inner());
        let snap = self.engine.snapshot();
        let (resp, writes) = execute(cmd, &snap, &self.region);
        self.engine
            .write(writes, self.sync)
            .map_err(|e| Error::Engine(e.to_string()))?;
        Ok(resp)
    }
}

impl Regions for OneRegion {
    fn region(&self, region_id: u64) -> Option<RegionStatus> {
        (region_id == REGION_ID).then(|| self.status())
    }

    fn current_regions(&self, _region: &metapb::Region) -> Vec<metapb::Region> {
        vec![self.region.clone()]
    }

    fn can_read_now(&self, region_id: u64) -> bool {
        region_id == REGION_ID
    }

    async fn read_index(&self, region_id: u64) -> Result<()> {
        if region_id == REGION_ID {
            Ok(())
        } else {
            Err(Error::Region(RegionError::RegionNotFound(region_id)))
        }
    }

    async fn propose(
        &self,
        region_id: u64,
        _epoch: Option<metapb::RegionEpoch>,
        cmd: Command,
    ) -> Result<Response> {
        if region_id != REGION_ID {
            return Err(Error::Region(RegionError::RegionNotFound(region_id)));
        }
        self.apply(&cmd)
    }
}

/// Timestamps that never go backwards (see the module docs).
pub struct LocalTso {
    engine: FjallEngine,
    sync: bool,
    state: Mutex<TsoState>,
}

struct TsoState {
    physical: u64,
    logical: u64,
    /// Every timestamp handed out has a physical part below this, and it
    /// is persisted.
    limit: u64,
}

fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl LocalTso {
    /// The oracle of `engine`: it starts after the limit persisted there.
    pub fn open(engine: FjallEngine, sync: bool) -> Result<LocalTso> {
        let limit = match engine
            .snapshot()
            .get(Cf::Raft, TSO_LIMIT_KEY)
            .map_err(|e| Error::Engine(e.to_string()))?
        {
            None => 0,
            Some(v) => u64::from_be_bytes(v.as_slice().try_into().map_err(|_| {
                Error::Corrupted(format!("the timestamp limit is {} bytes, not 8", v.len()))
            })?),
        };
        Ok(LocalTso {
            engine,
            sync,
            state: Mutex::new(TsoState {
                physical: limit,
                logical: 0,
                limit,
            }),
        })
    }

    /// The next timestamp at wall clock `now_ms`.
    fn next_at(&self, now_ms: u64) -> Result<u64> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if now_ms > st.physical {
            st.physical = now_ms;
            st.logical = 0;
        } else {
            st.logical += 1;
            if st.logical >> LOGICAL_BITS != 0 {
                st.physical += 1;
                st.logical = 0;
            }
        }
        if st.physical >= st.limit {
            let limit = st.physical + TSO_SAVE_AHEAD_MS;
            let mut wb = WriteBatch::default();
            wb.put(Cf::Raft, TSO_LIMIT_KEY, limit.to_be_bytes().to_vec());
            self.engine
                .write(wb, self.sync)
                .map_err(|e| Error::Engine(format!("saving the timestamp limit: {e}")))?;
            st.limit = limit;
        }
        Ok(compose(st.physical, st.logical))
    }
}

impl Timestamps for LocalTso {
    fn next(&self) -> tiox_client::Result<u64> {
        self.next_at(wall_ms())
            .map_err(|e| tiox_client::Error::Server(format!("the embedded store's clock: {e}")))
    }
}

/// A temporary store's directory: removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The embedded store. Open it, then talk to it through [`Unistore::txn_client`].
pub struct Unistore {
    storage: Storage<OneRegion>,
    tso: Arc<LocalTso>,
    name: String,
    /// A temporary store's directory, removed on drop (after the engine:
    /// fields drop in order).
    _scratch: Option<Scratch>,
}

impl std::fmt::Debug for Unistore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

impl Unistore {
    /// Opens (or creates) a durable store in `dir`: every write is fsynced.
    pub fn open(dir: &Path) -> Result<Arc<Unistore>> {
        Self::start(
            dir,
            true,
            None,
            format!("the embedded store at {}", dir.display()),
        )
    }

    /// A store that lasts as long as this value: in a fresh temporary
    /// directory, removed on drop, never fsynced.
    pub fn temporary() -> Result<Arc<Unistore>> {
        let dir = tempfile::Builder::new()
            .prefix("tiox-unistore-")
            .tempdir()
            .map_err(|e| Error::Engine(format!("creating a temporary directory: {e}")))?
            .keep();
        Self::start(
            &dir,
            false,
            Some(Scratch(dir.clone())),
            "the temporary embedded store".to_string(),
        )
    }

    /// A temporary store in `dir`: whatever `dir` held is removed first
    /// (what a process killed before it could clean up left behind), and
    /// `dir` is removed on drop; never fsynced. A store another process
    /// has open there (the engine's directory lock) is refused, not removed.
    pub fn temporary_at(dir: &Path) -> Result<Arc<Unistore>> {
        if dir.exists() {
            drop(
                FjallEngine::open(dir, &FjallOptions::default()).map_err(|e| {
                    Error::Engine(format!(
                        "{} is in use by another process: {e}",
                        dir.display()
                    ))
                })?,
            );
            std::fs::remove_dir_all(dir)
                .map_err(|e| Error::Engine(format!("clearing {}: {e}", dir.display())))?;
        }
        Self::start(
            dir,
            false,
            Some(Scratch(dir.to_path_buf())),
            format!("the temporary embedded store at {}", dir.display()),
        )
    }

    fn start(
        dir: &Path,
        sync: bool,
        scratch: Option<Scratch>,
        name: String,
    ) -> Result<Arc<Unistore>> {
        // A new store directory (and any parent made for it) is private to
        // the server's user: it holds every table.
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| Error::Engine(format!("creating {}: {e}", dir.display())))?;
        }
        let engine = FjallEngine::open(dir, &FjallOptions::default())
            .map_err(|e| Error::Engine(e.to_string()))?;
        let tso = Arc::new(LocalTso::open(engine.clone(), sync)?);
        let region = OneRegion {
            engine: engine.clone(),
            region: the_region(),
            apply: Arc::new(Mutex::new(())),
            sync,
        };
        let storage = Storage::new(engine, region);
        // One-phase commits: the single region has one leader for the
        // life of the process, and every timestamp handed out from now on
        // is above every timestamp read before it opened (LocalTso starts
        // after its persisted limit), so max_ts starts synced.
        let fresh = tso.next().map_err(|e| Error::Engine(e.to_string()))?;
        storage.concurrency().sync(REGION_ID, 1, fresh);
        Ok(Arc::new(Unistore {
            storage,
            tso,
            name,
            _scratch: scratch,
        }))
    }

    /// The transactional client of this store (the same client a cluster
    /// gets, over the in-process transport).
    pub fn txn_client(self: &Arc<Self>) -> tiox_client::txn::TxnClient {
        let store: Arc<dyn Store> = self.clone();
        let tso: Arc<dyn Timestamps> = self.tso.clone();
        tiox_client::txn::TxnClient::new(
            Arc::new(tiox_client::kv::KvClient::local(store)),
            tiox_client::tso::TsoClient::local(tso),
        )
    }

    /// The request handler (for tests that look below the client).
    pub fn storage(&self) -> &Storage<OneRegion> {
        &self.storage
    }
}

impl Store for Unistore {
    fn locate(&self, _key: &[u8]) -> tiox_client::Result<RegionEntry> {
        Ok(RegionEntry {
            region: self.storage.store().region.clone(),
            leader: Some(the_peer()),
        })
    }

    fn call(&self, req: Req) -> BoxFuture<'_, std::result::Result<Resp, tonic::Status>> {
        Box::pin(dispatch(&self.storage, req))
    }

    fn name(&self) -> String {
        self.name.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_increase_within_a_millisecond_and_when_the_clock_steps_back() {
        let dir = tempfile::tempdir().unwrap();
        let engine = FjallEngine::open(dir.path(), &FjallOptions::default()).unwrap();
        let tso = LocalTso::open(engine, false).unwrap();
        let a = tso.next_at(1_000_000).unwrap();
        let b = tso.next_at(1_000_000).unwrap();
        let c = tso.next_at(999_000).unwrap();
        let d = tso.next_at(1_000_001).unwrap();
        assert!(a < b && b < c && c < d, "{a} {b} {c} {d}");
        assert_eq!(a >> LOGICAL_BITS, 1_000_000);
    }

    #[test]
    fn timestamps_after_a_restart_are_above_every_earlier_one_even_if_the_clock_went_back() {
        let dir = tempfile::tempdir().unwrap();
        let last = {
            let engine = FjallEngine::open(dir.path(), &FjallOptions::default()).unwrap();
            let tso = LocalTso::open(engine, true).unwrap();
            (0..1000)
                .map(|_| tso.next_at(5_000_000).unwrap())
                .max()
                .unwrap()
        };
        let engine = FjallEngine::open(dir.path(), &FjallOptions::default()).unwrap();
        let tso = LocalTso::open(engine, true).unwrap();
        let first = tso.next_at(4_000_000).unwrap();
        assert!(first > last, "{first} <= {last}");
    }

    #[test]
    fn a_new_store_directory_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("data").join("store");
        let _s = Unistore::open(&dir).unwrap();
        for d in [dir.as_path(), dir.parent().unwrap()] {
            let mode = std::fs::metadata(d).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700, "{}", d.display());
        }
    }

    #[test]
    fn a_directory_another_store_has_open_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let first = Unistore::open(dir.path()).unwrap();
        assert!(Unistore::open(dir.path()).is_err());
        let scratch = dir.path().join("scratch");
        let temp = Unistore::temporary_at(&scratch).unwrap();
        assert!(
            Unistore::temporary_at(&scratch).is_err(),
            "not removed while open"
        );
        assert!(scratch.exists());
        drop((first, temp));
    }

    #[test]
    fn a_split_is_refused_by_the_single_region() {
        let store = Unistore::temporary().unwrap();
        let cmd = Command {
            split: Some(Default::default()),
            ..Default::default()
        };
        assert!(matches!(
            store.storage.store().apply(&cmd),
            Err(Error::InvalidRequest(_))
        ));
    }
}
