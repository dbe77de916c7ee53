//! The request layer between gRPC and the regions: checks that a request
//! reached the right region (leader, epoch, key range) and is well formed
//! (key and value limits), serves reads from an engine snapshot, and
//! proposes writes through Raft. Unary RPCs and BatchCommands both call it.
//! It is generic over [`Regions`]: a tikv-server's Raft store, or the
//! embedded store's single region (`crate::unistore`), whose writes execute
//! the same commands directly — one set of checks and reads for both.
//! Every read raises the store's max read timestamp and a prewrite with
//! `try_one_pc` registers its keys before it is proposed
//! ([`crate::mvcc::concurrency`]), so a one-phase commit lands above every
//! snapshot that may have read its keys.

use std::future::Future;
use std::sync::Arc;

use tiox_engine::Engine;
use tiox_proto::{errorpb, kvrpcpb, metapb};

use crate::codec::encode_bytes;
use crate::command::{key_error, lock_info_pb, Cmd, Command, Response};
use crate::engine_fjall::FjallEngine;
use crate::error::{Error, RegionError};
use crate::mvcc::concurrency::{ConcurrencyManager, OnePcGuard};
use crate::mvcc::reader::{MvccReader, ScanParams};
use crate::mvcc::LockInfo;
use crate::raftstore::store::{RegionStatus, StoreHandle};
use crate::raw;
use tiox_proto::tikvpb::batch_commands_request::request::Cmd as Req;
use tiox_proto::tikvpb::batch_commands_response::response::Cmd as Resp;

/// Longest key accepted (bytes).
pub const MAX_KEY_SIZE: usize = 8 * 1024;
/// Largest value accepted (bytes): a value travels in one Raft entry.
pub const MAX_VALUE_SIZE: usize = 8 * 1024 * 1024;

/// A request-level refusal that is not a region error: becomes a gRPC
/// status (InvalidArgument, Internal).
#[derive(Debug)]
pub enum Refusal {
    /// The request is malformed; the message says which limit or field.
    Invalid(String),
    /// The store failed.
    Internal(String),
}

/// The region error in kvproto form.
pub fn region_error_pb(e: &RegionError) -> errorpb::Error {
    let mut pb = errorpb::Error {
        message: format!("{e:?}"),
        ..Default::default()
    };
    match e {
        RegionError::NotLeader { region_id, leader } => {
            pb.not_leader = Some(errorpb::NotLeader {
                region_id: *region_id,
                leader: *leader,
            });
        }
        RegionError::RegionNotFound(id) => {
            pb.region_not_found = Some(errorpb::RegionNotFound { region_id: *id })
        }
        RegionError::EpochNotMatch(regions) => {
            pb.epoch_not_match = Some(errorpb::EpochNotMatch {
                current_regions: regions.clone(),
            });
        }
        RegionError::KeyNotInRegion {
            key,
            region_id,
            start_key,
            end_key,
        } => {
            pb.key_not_in_region = Some(errorpb::KeyNotInRegion {
                key: key.clone(),
                region_id: *region_id,
                start_key: start_key.clone(),
                end_key: end_key.clone(),
            });
        }
        RegionError::StaleCommand => pb.stale_command = Some(errorpb::StaleCommand {}),
        RegionError::ServerIsBusy(reason) => {
            pb.server_is_busy = Some(errorpb::ServerIsBusy {
                reason: reason.clone(),
                backoff_ms: 50,
                ..Default::default()
            });
        }
    }
    pb
}

/// Outcome of a request: a response (possibly carrying a region error) or a
/// refusal.
pub type Outcome<T> = Result<T, Refusal>;

/// Where the request layer finds its regions and sends its writes: the
/// Raft loop of a tikv-server ([`StoreHandle`]), or the embedded store's
/// single region whose writes apply directly (`crate::unistore`).
pub trait Regions: Clone + Send + Sync + 'static {
    /// A region's status (None: not on this store).
    fn region(&self, region_id: u64) -> Option<RegionStatus>;

    /// `region` and the regions a split of it produced (what an
    /// EpochNotMatch carries).
    fn current_regions(&self, region: &metapb::Region) -> Vec<metapb::Region>;

    /// Whether `region_id` may be read here right now.
    fn can_read_now(&self, region_id: u64) -> bool;

    /// Confirms leadership and waits until the applied state reaches the
    /// read index.
    fn read_index(&self, region_id: u64) -> impl Future<Output = Result<(), Error>> + Send;

    /// Replicates (or, alone, just executes) a command and returns its
    /// response once applied.
    fn propose(
        &self,
        region_id: u64,
        epoch: Option<metapb::RegionEpoch>,
        cmd: Command,
    ) -> impl Future<Output = Result<Response, Error>> + Send;
}

impl Regions for StoreHandle {
    fn region(&self, region_id: u64) -> Option<RegionStatus> {
        StoreHandle::region(self, region_id)
    }

    fn current_regions(&self, region: &metapb::Region) -> Vec<metapb::Region> {
        StoreHandle::current_regions(self, region)
    }

    fn can_read_now(&self, region_id: u64) -> bool {
        StoreHandle::can_read_now(self, region_id)
    }

    fn read_index(&self, region_id: u64) -> impl Future<Output = Result<(), Error>> + Send {
        StoreHandle::read_index(self, region_id)
    }

    fn propose(
        &self,
        region_id: u64,
        epoch: Option<metapb::RegionEpoch>,
        cmd: Command,
    ) -> impl Future<Output = Result<Response, Error>> + Send {
        StoreHandle::propose(self, region_id, epoch, cmd)
    }
}

/// The store's request handler.
#[derive(Clone)]
pub struct Storage<R: Regions = StoreHandle> {
    engine: FjallEngine,
    store: R,
    /// PD, for split ids and reports (None in tests without PD).
    pd: Option<Arc<tiox_client::pd::PdClient>>,
    /// Max read timestamp and in-flight one-phase commits.
    cm: Arc<ConcurrencyManager>,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn check_key(key: &[u8], what: &str) -> Outcome<()> {
    if key.is_empty() {
        return Err(Refusal::Invalid(format!(
            "{what}: the key is empty (keys must be 1 to {MAX_KEY_SIZE} bytes)"
        )));
    }
    if key.len() > MAX_KEY_SIZE {
        return Err(Refusal::Invalid(format!(
            "{what}: the key is {} bytes; the limit is {MAX_KEY_SIZE}",
            key.len()
        )));
    }
    Ok(())
}

fn check_value(value: &[u8], what: &str) -> Outcome<()> {
    if value.len() > MAX_VALUE_SIZE {
        return Err(Refusal::Invalid(format!(
            "{what}: the value is {} bytes; the limit is {MAX_VALUE_SIZE}",
            value.len()
        )));
    }
    Ok(())
}

fn check_cf(cf: &str, what: &str) -> Outcome<()> {
    match cf {
        "" | "default" => Ok(()),
        other => Err(Refusal::Invalid(format!(
            "{what}: unknown column family \"{other}\"; raw KV uses the default column family"
        ))),
    }
}

/// Whether `key` (already in the region's key space) is in the region.
fn in_region(status: &RegionStatus, key: &[u8]) -> bool {
    key >= status.region.start_key.as_slice()
        && (status.region.end_key.is_empty() || key < status.region.end_key.as_slice())
}

/// Which key space a request's keys live in.
#[derive(Clone, Copy)]
enum Space {
    /// Transactional: region boundaries are memcomparable-encoded keys.
    Txn,
    /// Raw: region boundaries are raw keys.
    Raw,
}

macro_rules! region_err {
    ($resp:ty, $e:expr) => {{
        let mut r = <$resp>::default();
        r.region_error = Some(region_error_pb(&$e));
        return Ok(r);
    }};
}

impl<R: Regions> Storage<R> {
    /// A handler over the engine and the regions.
    pub fn new(engine: FjallEngine, store: R) -> Storage<R> {
        Storage {
            engine,
            store,
            pd: None,
            cm: Arc::default(),
        }
    }

    /// The store's read-timestamp tracker. A region leader serves 1PC only
    /// once it is synced for its term: with PD, from a fresh PD timestamp
    /// the first 1PC of the term fetches; the embedded store syncs its one
    /// region at open.
    pub fn concurrency(&self) -> &Arc<ConcurrencyManager> {
        &self.cm
    }

    /// Uses `pd` for region splits (AskBatchSplit, ReportBatchSplit).
    pub fn with_pd(mut self, pd: Arc<tiox_client::pd::PdClient>) -> Storage<R> {
        self.pd = Some(pd);
        self
    }

    /// Splits the region the context names at `split_keys` (region
    /// boundaries: encoded user keys, or raw keys): PD allocates the new
    /// region and peer ids, the split goes through the region's Raft log
    /// (applied on every replica), and PD hears the result. Keys equal to
    /// the region's start are ignored. Returns the parent and the new
    /// regions in key order.
    pub async fn split_region(
        &self,
        ctx: Option<&kvrpcpb::Context>,
        mut split_keys: Vec<Vec<u8>>,
    ) -> Result<Vec<metapb::Region>, Result<RegionError, Refusal>> {
        let status = self.route(ctx, &[], Space::Raw).map_err(Ok)?;
        let region = status.region.clone();
        split_keys.sort();
        split_keys.dedup();
        split_keys.retain(|k| *k != region.start_key);
        for k in &split_keys {
            if k.as_slice() < region.start_key.as_slice()
                || (!region.end_key.is_empty() && k.as_slice() >= region.end_key.as_slice())
            {
                return Err(Ok(RegionError::KeyNotInRegion {
                    key: k.clone(),
                    region_id: region.id,
                    start_key: region.start_key.clone(),
                    end_key: region.end_key.clone(),
                }));
            }
        }
        if split_keys.is_empty() {
            return Ok(vec![region]);
        }
        if split_keys.len() > 1024 {
            return Err(Err(Refusal::Invalid(format!(
                "{} split keys; at most 1024 per request",
                split_keys.len()
            ))));
        }
        let Some(pd) = &self.pd else {
            return Err(Err(Refusal::Internal(
                "this store has no PD client to allocate region ids".into(),
            )));
        };
        let ids = pd
            .ask_batch_split(&region, split_keys.len() as u32)
            .await
            .map_err(|e| Err(Refusal::Internal(format!("PD AskBatchSplit: {e}"))))?;
        if ids.len() != split_keys.len() {
            return Err(Err(Refusal::Internal(format!(
                "PD AskBatchSplit returned {} ids for {} keys",
                ids.len(),
                split_keys.len()
            ))));
        }
        let split = crate::raftstore::split::BatchSplit {
            requests: split_keys
                .into_iter()
                .zip(ids)
                .map(|(k, id)| crate::raftstore::split::SplitRequest {
                    split_key: k,
                    new_region_id: id.new_region_id,
                    new_peer_ids: id.new_peer_ids,
                })
                .collect(),
        };
        let command = Command {
            now_ms: now_ms(),
            split: Some(split),
            ..Default::default()
        };
        let regions = match self
            .store
            .propose(region.id, region.region_epoch, command)
            .await
        {
            Ok(Response::Split(regions)) => regions,
            Ok(_) => return Err(Err(Refusal::Internal("mismatched response".into()))),
            Err(Error::Region(e)) => return Err(Ok(e)),
            Err(e) => return Err(Err(Refusal::Internal(e.to_string()))),
        };
        if let Err(e) = pd.report_batch_split(regions.clone()).await {
            // Heartbeats of the new regions tell PD as well.
            tracing::warn!(region_id = region.id, "PD ReportBatchSplit failed: {e}");
        }
        Ok(regions)
    }

    /// The SplitRegion RPC: user keys are encoded as region boundaries
    /// unless `is_raw_kv`.
    pub async fn split_region_rpc(
        &self,
        req: kvrpcpb::SplitRegionRequest,
    ) -> Outcome<kvrpcpb::SplitRegionResponse> {
        let mut keys = req.split_keys.clone();
        if keys.is_empty() && !req.split_key.is_empty() {
            keys.push(req.split_key.clone());
        }
        for k in &keys {
            check_key(k, "SplitRegion")?;
        }
        if !req.is_raw_kv {
            keys = keys.iter().map(|k| encode_bytes(k)).collect();
        }
        let single = keys.len() == 1;
        match self.split_region(req.context.as_ref(), keys).await {
            Ok(regions) => {
                let mut resp = kvrpcpb::SplitRegionResponse::default();
                if single && regions.len() == 2 {
                    resp.left = Some(regions[0].clone());
                    resp.right = Some(regions[1].clone());
                }
                resp.regions = regions;
                Ok(resp)
            }
            Err(Ok(e)) => region_err!(kvrpcpb::SplitRegionResponse, e),
            Err(Err(r)) => Err(r),
        }
    }

    /// The regions (the store handle on a tikv-server).
    pub fn store(&self) -> &R {
        &self.store
    }

    /// The engine.
    pub fn engine(&self) -> &FjallEngine {
        &self.engine
    }

    /// Checks the request context: region present, led here, ready to read,
    /// epoch current; then that every key is in it.
    fn route(
        &self,
        ctx: Option<&kvrpcpb::Context>,
        keys: &[&[u8]],
        space: Space,
    ) -> Result<RegionStatus, RegionError> {
        let ctx = ctx.cloned().unwrap_or_default();
        let status = self
            .store
            .region(ctx.region_id)
            .ok_or(RegionError::RegionNotFound(ctx.region_id))?;
        if !status.is_leader {
            return Err(RegionError::NotLeader {
                region_id: ctx.region_id,
                leader: status.leader,
            });
        }
        if let Some(epoch) = &ctx.region_epoch {
            let cur = status.region.region_epoch.unwrap_or_default();
            if epoch.version != cur.version || epoch.conf_ver != cur.conf_ver {
                return Err(RegionError::EpochNotMatch(
                    self.store.current_regions(&status.region),
                ));
            }
        }
        for key in keys {
            let k = match space {
                Space::Txn => encode_bytes(key),
                Space::Raw => key.to_vec(),
            };
            if !in_region(&status, &k) {
                return Err(RegionError::KeyNotInRegion {
                    key: key.to_vec(),
                    region_id: status.region.id,
                    start_key: status.region.start_key.clone(),
                    end_key: status.region.end_key.clone(),
                });
            }
        }
        Ok(status)
    }

    /// Like `route`, and also requires the leader to have applied its
    /// current term's first entry (so reads see every acknowledged write).
    fn route_read(
        &self,
        ctx: Option<&kvrpcpb::Context>,
        keys: &[&[u8]],
        space: Space,
    ) -> Result<RegionStatus, RegionError> {
        let status = self.route(ctx, keys, space)?;
        if !status.readable {
            return Err(RegionError::ServerIsBusy(
                "the leader is catching up with its log; retry".into(),
            ));
        }
        if !status.can_read_locally() {
            // No lease: this store may have been deposed without knowing.
            return Err(RegionError::ServerIsBusy(
                "the leader could not confirm its leadership with a quorum; retry".into(),
            ));
        }
        Ok(status)
    }

    /// Whether the context's region may be read here right now (led here,
    /// lease held, log applied): no waiting, no copy of its status.
    pub fn readable_now(&self, ctx: Option<&kvrpcpb::Context>) -> bool {
        self.store.can_read_now(ctx.map_or(0, |c| c.region_id))
    }

    /// Waits (up to 2 s) until the context's region, if led here, may
    /// serve reads: the leader holds a lease (renewed by a ReadIndex round
    /// confirmed by a quorum) and has applied its log up to the read index,
    /// so every acknowledged write is visible and a deposed leader never
    /// answers. Routing errors are left for the read to report.
    pub async fn wait_readable(&self, ctx: Option<&kvrpcpb::Context>) {
        if self.readable_now(ctx) {
            return;
        }
        let region_id = ctx.map_or(0, |c| c.region_id);
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(2);
        // A round that waited for the new leader's first commit (or a busy
        // machine) may return with its lease already spent; try again
        // until the deadline.
        loop {
            match self.store.region(region_id) {
                Some(s) if s.is_leader && !s.can_read_locally() => {}
                _ => return,
            }
            match tokio::time::timeout_at(deadline, self.store.read_index(region_id)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => return,
            }
        }
    }

    async fn propose(
        &self,
        ctx: Option<&kvrpcpb::Context>,
        cmd: Cmd,
    ) -> Result<Response, Result<RegionError, Refusal>> {
        let command = Command {
            now_ms: now_ms(),
            cmd: Some(cmd),
            ..Default::default()
        };
        self.propose_command(ctx, command).await
    }

    async fn propose_command(
        &self,
        ctx: Option<&kvrpcpb::Context>,
        command: Command,
    ) -> Result<Response, Result<RegionError, Refusal>> {
        let ctx = ctx.cloned().unwrap_or_default();
        match self
            .store
            .propose(ctx.region_id, ctx.region_epoch, command)
            .await
        {
            Ok(r) => Ok(r),
            Err(Error::Region(e)) => Err(Ok(e)),
            Err(e) => Err(Err(Refusal::Internal(e.to_string()))),
        }
    }

    /// Whether this leader may commit in one phase in the region's current
    /// term: its max_ts must cover reads earlier leaders served, so the
    /// first 1PC of a term raises it to a fresh PD timestamp. No PD, or PD
    /// unreachable: no 1PC (the prewrite writes locks).
    async fn one_pc_ready(&self, status: &RegionStatus) -> bool {
        let (region_id, term) = (status.region.id, status.term);
        if self.cm.synced_for(region_id, term) {
            return true;
        }
        let Some(pd) = &self.pd else {
            return false;
        };
        match pd.get_ts().await {
            Ok(ts) => {
                self.cm.sync(region_id, term, ts);
                true
            }
            Err(e) => {
                tracing::debug!(region_id, "no fresh timestamp for 1PC, prewriting: {e}");
                false
            }
        }
    }

    /// KvPrewrite. With `try_one_pc` (the client sends it when the request
    /// holds every key of the transaction) and a leader synced for its
    /// term, the data keys are registered as in flight, max_ts is read and
    /// travels in the command, and at apply the prewrite commits them in
    /// one phase if it can (`one_pc_commit_ts` in the response). The
    /// registration lasts until the command applied or failed, even if the
    /// caller goes away (the proposal runs in its own task).
    pub async fn prewrite(
        &self,
        r: kvrpcpb::PrewriteRequest,
    ) -> Outcome<kvrpcpb::PrewriteResponse> {
        r.mutations.iter().try_for_each(|m| {
            check_key(&m.key, "KvPrewrite").and_then(|_| check_value(&m.value, "KvPrewrite"))
        })?;
        let keys: Vec<&[u8]> = r.mutations.iter().map(|m| m.key.as_slice()).collect();
        let status = match self.route(r.context.as_ref(), &keys, Space::Txn) {
            Ok(s) => s,
            Err(e) => region_err!(kvrpcpb::PrewriteResponse, e),
        };
        let guard: Option<OnePcGuard> = if r.try_one_pc && self.one_pc_ready(&status).await {
            let data_keys = r
                .mutations
                .iter()
                .filter(|m| {
                    matches!(
                        kvrpcpb::Op::try_from(m.op),
                        Ok(kvrpcpb::Op::Put | kvrpcpb::Op::Del | kvrpcpb::Op::Insert)
                    )
                })
                .map(|m| m.key.clone())
                .collect();
            Some(self.cm.register_one_pc(
                data_keys,
                r.start_version,
                &r.primary_lock,
                r.lock_ttl,
                r.txn_size,
            ))
        } else {
            None
        };
        let ctx = r.context.clone();
        let command = Command {
            now_ms: now_ms(),
            one_pc_max_ts: guard.as_ref().map(|g| g.max_ts),
            cmd: Some(Cmd::Prewrite(r)),
            ..Default::default()
        };
        let result = match guard {
            None => self.propose_command(ctx.as_ref(), command).await,
            Some(guard) => {
                let this = self.clone();
                let task = tokio::spawn(async move {
                    let result = this.propose_command(ctx.as_ref(), command).await;
                    drop(guard);
                    result
                });
                task.await
                    .map_err(|e| Err(Refusal::Internal(format!("the prewrite task failed: {e}"))))
                    .and_then(|r| r)
            }
        };
        match result {
            Ok(Response::Prewrite(resp)) => Ok(resp),
            Ok(_) => Err(Refusal::Internal("mismatched response".into())),
            Err(Ok(e)) => region_err!(kvrpcpb::PrewriteResponse, e),
            Err(Err(refusal)) => Err(refusal),
        }
    }
}

/// Generates a write handler: route (with the keys), validate, propose,
/// unwrap the matching response variant.
macro_rules! write_handler {
    ($name:ident, $req:ty, $resp:ty, $variant:ident, $space:expr, |$r:ident| $keys:expr, |$v:ident| $validate:expr) => {
        /// Proposes the request through Raft and returns its response.
        pub async fn $name(&self, $r: $req) -> Outcome<$resp> {
            let keys: Vec<Vec<u8>> = $keys;
            {
                let $v = &$r;
                $validate?;
            }
            let key_refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
            if let Err(e) = self.route($r.context.as_ref(), &key_refs, $space) {
                region_err!($resp, e);
            }
            let ctx = $r.context.clone();
            match self.propose(ctx.as_ref(), Cmd::$variant($r)).await {
                Ok(Response::$variant(resp)) => Ok(resp),
                Ok(_) => Err(Refusal::Internal("mismatched response".into())),
                Err(Ok(e)) => region_err!($resp, e),
                Err(Err(refusal)) => Err(refusal),
            }
        }
    };
}

/// The key error of a read that met a one-phase commit in flight.
fn locked(l: LockInfo) -> kvrpcpb::KeyError {
    key_error(&Error::KeyIsLocked(l))
}

/// The same, as the one pair of a multi-key read's answer.
fn locked_pair(l: LockInfo) -> kvrpcpb::KvPair {
    kvrpcpb::KvPair {
        key: l.key.clone(),
        value: Vec::new(),
        error: Some(locked(l)),
    }
}

fn all_keys(keys: &[Vec<u8>], what: &str) -> Outcome<()> {
    keys.iter().try_for_each(|k| check_key(k, what))
}

impl<R: Regions> Storage<R> {
    write_handler!(
        commit,
        kvrpcpb::CommitRequest,
        kvrpcpb::CommitResponse,
        Commit,
        Space::Txn,
        |r| r.keys.clone(),
        |r| all_keys(&r.keys, "KvCommit")
    );
    write_handler!(
        batch_rollback,
        kvrpcpb::BatchRollbackRequest,
        kvrpcpb::BatchRollbackResponse,
        BatchRollback,
        Space::Txn,
        |r| r.keys.clone(),
        |r| all_keys(&r.keys, "KvBatchRollback")
    );
    write_handler!(
        cleanup,
        kvrpcpb::CleanupRequest,
        kvrpcpb::CleanupResponse,
        Cleanup,
        Space::Txn,
        |r| vec![r.key.clone()],
        |r| check_key(&r.key, "KvCleanup")
    );
    write_handler!(
        check_txn_status,
        kvrpcpb::CheckTxnStatusRequest,
        kvrpcpb::CheckTxnStatusResponse,
        CheckTxnStatus,
        Space::Txn,
        |r| vec![r.primary_key.clone()],
        |r| check_key(&r.primary_key, "KvCheckTxnStatus")
    );
    write_handler!(
        check_secondary_locks,
        kvrpcpb::CheckSecondaryLocksRequest,
        kvrpcpb::CheckSecondaryLocksResponse,
        CheckSecondaryLocks,
        Space::Txn,
        |r| r.keys.clone(),
        |r| all_keys(&r.keys, "KvCheckSecondaryLocks")
    );
    write_handler!(
        resolve_lock,
        kvrpcpb::ResolveLockRequest,
        kvrpcpb::ResolveLockResponse,
        ResolveLock,
        Space::Txn,
        |r| r.keys.clone(),
        |r| all_keys(&r.keys, "KvResolveLock")
    );
    write_handler!(
        txn_heart_beat,
        kvrpcpb::TxnHeartBeatRequest,
        kvrpcpb::TxnHeartBeatResponse,
        TxnHeartBeat,
        Space::Txn,
        |r| vec![r.primary_lock.clone()],
        |r| check_key(&r.primary_lock, "KvTxnHeartBeat")
    );
    write_handler!(
        pessimistic_lock,
        kvrpcpb::PessimisticLockRequest,
        kvrpcpb::PessimisticLockResponse,
        PessimisticLock,
        Space::Txn,
        |r| r.mutations.iter().map(|m| m.key.clone()).collect(),
        |r| r
            .mutations
            .iter()
            .try_for_each(|m| check_key(&m.key, "KvPessimisticLock"))
    );
    write_handler!(
        pessimistic_rollback,
        kvrpcpb::PessimisticRollbackRequest,
        kvrpcpb::PessimisticRollbackResponse,
        PessimisticRollback,
        Space::Txn,
        |r| r.keys.clone(),
        |r| all_keys(&r.keys, "KvPessimisticRollback")
    );
    write_handler!(
        gc,
        kvrpcpb::GcRequest,
        kvrpcpb::GcResponse,
        Gc,
        Space::Txn,
        |_r| Vec::new(),
        |_r| Ok::<(), Refusal>(())
    );
    write_handler!(
        delete_range,
        kvrpcpb::DeleteRangeRequest,
        kvrpcpb::DeleteRangeResponse,
        DeleteRange,
        Space::Txn,
        |r| vec![r.start_key.clone()],
        |_r| Ok::<(), Refusal>(())
    );
    write_handler!(
        raw_put,
        kvrpcpb::RawPutRequest,
        kvrpcpb::RawPutResponse,
        RawPut,
        Space::Raw,
        |r| vec![r.key.clone()],
        |r| check_cf(&r.cf, "RawPut")
            .and_then(|_| check_key(&r.key, "RawPut"))
            .and_then(|_| check_value(&r.value, "RawPut"))
    );
    write_handler!(
        raw_batch_put,
        kvrpcpb::RawBatchPutRequest,
        kvrpcpb::RawBatchPutResponse,
        RawBatchPut,
        Space::Raw,
        |r| r.pairs.iter().map(|p| p.key.clone()).collect(),
        |r| check_cf(&r.cf, "RawBatchPut").and_then(|_| r
            .pairs
            .iter()
            .try_for_each(|p| check_key(&p.key, "RawBatchPut")
                .and_then(|_| check_value(&p.value, "RawBatchPut"))))
    );
    write_handler!(
        raw_delete,
        kvrpcpb::RawDeleteRequest,
        kvrpcpb::RawDeleteResponse,
        RawDelete,
        Space::Raw,
        |r| vec![r.key.clone()],
        |r| check_cf(&r.cf, "RawDelete").and_then(|_| check_key(&r.key, "RawDelete"))
    );
    write_handler!(
        raw_batch_delete,
        kvrpcpb::RawBatchDeleteRequest,
        kvrpcpb::RawBatchDeleteResponse,
        RawBatchDelete,
        Space::Raw,
        |r| r.keys.clone(),
        |r| check_cf(&r.cf, "RawBatchDelete").and_then(|_| all_keys(&r.keys, "RawBatchDelete"))
    );
    write_handler!(
        raw_delete_range,
        kvrpcpb::RawDeleteRangeRequest,
        kvrpcpb::RawDeleteRangeResponse,
        RawDeleteRange,
        Space::Raw,
        |r| vec![r.start_key.clone()],
        |r| check_cf(&r.cf, "RawDeleteRange")
    );
    write_handler!(
        raw_cas,
        kvrpcpb::RawCasRequest,
        kvrpcpb::RawCasResponse,
        RawCas,
        Space::Raw,
        |r| vec![r.key.clone()],
        |r| check_cf(&r.cf, "RawCompareAndSwap")
            .and_then(|_| check_key(&r.key, "RawCompareAndSwap"))
            .and_then(|_| check_value(&r.value, "RawCompareAndSwap"))
    );

    /// KvGet.
    pub fn get(&self, r: kvrpcpb::GetRequest) -> Outcome<kvrpcpb::GetResponse> {
        check_key(&r.key, "KvGet")?;
        if let Err(e) = self.route_read(r.context.as_ref(), &[&r.key], Space::Txn) {
            region_err!(kvrpcpb::GetResponse, e);
        }
        let bypass = r
            .context
            .as_ref()
            .map(|c| c.resolved_locks.clone())
            .unwrap_or_default();
        let mut resp = kvrpcpb::GetResponse::default();
        if let Err(l) = self.cm.read_keys([r.key.as_slice()], r.version, &bypass) {
            resp.error = Some(locked(l));
            return Ok(resp);
        }
        let snap = self.engine.snapshot();
        match MvccReader::new(&snap).get(&r.key, r.version, &bypass) {
            Ok(Some(v)) => resp.value = v,
            Ok(None) => resp.not_found = true,
            Err(e @ Error::KeyIsLocked(_)) => resp.error = Some(key_error(&e)),
            Err(e) => return Err(Refusal::Internal(e.to_string())),
        }
        Ok(resp)
    }

    /// KvBatchGet.
    pub fn batch_get(&self, r: kvrpcpb::BatchGetRequest) -> Outcome<kvrpcpb::BatchGetResponse> {
        all_keys(&r.keys, "KvBatchGet")?;
        let keys: Vec<&[u8]> = r.keys.iter().map(Vec::as_slice).collect();
        if let Err(e) = self.route_read(r.context.as_ref(), &keys, Space::Txn) {
            region_err!(kvrpcpb::BatchGetResponse, e);
        }
        let bypass = r
            .context
            .as_ref()
            .map(|c| c.resolved_locks.clone())
            .unwrap_or_default();
        let mut resp = kvrpcpb::BatchGetResponse::default();
        if let Err(l) = self.cm.read_keys(keys.iter().copied(), r.version, &bypass) {
            resp.pairs.push(locked_pair(l));
            return Ok(resp);
        }
        let snap = self.engine.snapshot();
        let reader = MvccReader::new(&snap);
        for k in &r.keys {
            match reader.get(k, r.version, &bypass) {
                Ok(Some(v)) => resp.pairs.push(kvrpcpb::KvPair {
                    key: k.clone(),
                    value: v,
                    error: None,
                }),
                Ok(None) => {}
                Err(e @ Error::KeyIsLocked(_)) => {
                    resp.pairs.push(kvrpcpb::KvPair {
                        key: k.clone(),
                        value: Vec::new(),
                        error: Some(key_error(&e)),
                    });
                }
                Err(e) => return Err(Refusal::Internal(e.to_string())),
            }
        }
        Ok(resp)
    }

    /// KvScan.
    pub fn scan(&self, r: kvrpcpb::ScanRequest) -> Outcome<kvrpcpb::ScanResponse> {
        let status = match self.route_read(r.context.as_ref(), &[], Space::Txn) {
            Ok(s) => s,
            Err(e) => region_err!(kvrpcpb::ScanResponse, e),
        };
        // Clamp to the region: [start, end) in user-key terms.
        let region_start =
            crate::command::region_user_bound(&status.region.start_key).unwrap_or_default();
        let region_end = crate::command::region_user_bound(&status.region.end_key);
        let (mut lo, mut hi) = if r.reverse {
            (
                r.end_key.clone(),
                (!r.start_key.is_empty()).then(|| r.start_key.clone()),
            )
        } else {
            (
                r.start_key.clone(),
                (!r.end_key.is_empty()).then(|| r.end_key.clone()),
            )
        };
        if lo < region_start {
            lo = region_start;
        }
        if let Some(re) = region_end {
            if hi.as_ref().is_none_or(|h| *h > re) {
                hi = Some(re);
            }
        }
        let bypass = r
            .context
            .as_ref()
            .map(|c| c.resolved_locks.clone())
            .unwrap_or_default();
        if let Err(l) = self.cm.read_range(&lo, hi.as_deref(), r.version, &bypass) {
            return Ok(kvrpcpb::ScanResponse {
                pairs: vec![locked_pair(l)],
                ..Default::default()
            });
        }
        let snap = self.engine.snapshot();
        let items = MvccReader::new(&snap)
            .scan(&ScanParams {
                start: &lo,
                end: hi.as_deref(),
                limit: r.limit as usize,
                ts: r.version,
                key_only: r.key_only,
                reverse: r.reverse,
                bypass: &bypass,
            })
            .map_err(|e| Refusal::Internal(e.to_string()))?;
        let mut resp = kvrpcpb::ScanResponse::default();
        for item in items {
            resp.pairs.push(match item {
                Ok((key, value)) => kvrpcpb::KvPair {
                    key,
                    value,
                    error: None,
                },
                Err(e) => {
                    let key = match &e {
                        Error::KeyIsLocked(l) => l.key.clone(),
                        _ => Vec::new(),
                    };
                    kvrpcpb::KvPair {
                        key,
                        value: Vec::new(),
                        error: Some(key_error(&e)),
                    }
                }
            });
        }
        Ok(resp)
    }

    /// KvScanLock.
    pub fn scan_lock(&self, r: kvrpcpb::ScanLockRequest) -> Outcome<kvrpcpb::ScanLockResponse> {
        if let Err(e) = self.route_read(r.context.as_ref(), &[], Space::Txn) {
            region_err!(kvrpcpb::ScanLockResponse, e);
        }
        let snap = self.engine.snapshot();
        let end = (!r.end_key.is_empty()).then_some(r.end_key.as_slice());
        let locks = MvccReader::new(&snap)
            .scan_locks(&r.start_key, end, r.max_version, r.limit as usize)
            .map_err(|e| Refusal::Internal(e.to_string()))?;
        Ok(kvrpcpb::ScanLockResponse {
            locks: locks
                .iter()
                .map(|(k, l)| lock_info_pb(&l.info(k)))
                .collect(),
            ..Default::default()
        })
    }

    /// RawGet.
    pub fn raw_get(&self, r: kvrpcpb::RawGetRequest) -> Outcome<kvrpcpb::RawGetResponse> {
        check_cf(&r.cf, "RawGet")?;
        check_key(&r.key, "RawGet")?;
        if let Err(e) = self.route_read(r.context.as_ref(), &[&r.key], Space::Raw) {
            region_err!(kvrpcpb::RawGetResponse, e);
        }
        let mut resp = kvrpcpb::RawGetResponse::default();
        match raw::get(&self.engine.snapshot(), &r.key, now_ms()) {
            Ok(Some(v)) => resp.value = v.value,
            Ok(None) => resp.not_found = true,
            Err(e) => resp.error = e.to_string(),
        }
        Ok(resp)
    }

    /// RawGetKeyTTL.
    pub fn raw_get_key_ttl(
        &self,
        r: kvrpcpb::RawGetKeyTtlRequest,
    ) -> Outcome<kvrpcpb::RawGetKeyTtlResponse> {
        check_cf(&r.cf, "RawGetKeyTTL")?;
        check_key(&r.key, "RawGetKeyTTL")?;
        if let Err(e) = self.route_read(r.context.as_ref(), &[&r.key], Space::Raw) {
            region_err!(kvrpcpb::RawGetKeyTtlResponse, e);
        }
        let now = now_ms();
        let mut resp = kvrpcpb::RawGetKeyTtlResponse::default();
        match raw::get(&self.engine.snapshot(), &r.key, now) {
            Ok(Some(v)) if v.expire_ms > 0 => resp.ttl = (v.expire_ms - now).div_ceil(1000),
            Ok(Some(_)) => resp.ttl = 0,
            Ok(None) => resp.not_found = true,
            Err(e) => resp.error = e.to_string(),
        }
        Ok(resp)
    }

    /// RawBatchGet.
    pub fn raw_batch_get(
        &self,
        r: kvrpcpb::RawBatchGetRequest,
    ) -> Outcome<kvrpcpb::RawBatchGetResponse> {
        check_cf(&r.cf, "RawBatchGet")?;
        all_keys(&r.keys, "RawBatchGet")?;
        let keys: Vec<&[u8]> = r.keys.iter().map(Vec::as_slice).collect();
        if let Err(e) = self.route_read(r.context.as_ref(), &keys, Space::Raw) {
            region_err!(kvrpcpb::RawBatchGetResponse, e);
        }
        let snap = self.engine.snapshot();
        let now = now_ms();
        let mut resp = kvrpcpb::RawBatchGetResponse::default();
        for k in &r.keys {
            if let Some(v) =
                raw::get(&snap, k, now).map_err(|e| Refusal::Internal(e.to_string()))?
            {
                resp.pairs.push(kvrpcpb::KvPair {
                    key: k.clone(),
                    value: v.value,
                    error: None,
                });
            }
        }
        Ok(resp)
    }

    fn raw_scan_range(
        &self,
        status: &RegionStatus,
        start: &[u8],
        end: &[u8],
        limit: u32,
        key_only: bool,
        reverse: bool,
    ) -> Outcome<Vec<kvrpcpb::KvPair>> {
        // In reverse, kvproto's start_key is the upper bound and end_key the lower.
        let (mut lo, mut hi) = if reverse {
            (end.to_vec(), start.to_vec())
        } else {
            (start.to_vec(), end.to_vec())
        };
        if lo < status.region.start_key {
            lo = status.region.start_key.clone();
        }
        if !status.region.end_key.is_empty() && (hi.is_empty() || hi > status.region.end_key) {
            hi = status.region.end_key.clone();
        }
        let hi = (!hi.is_empty()).then_some(hi);
        let pairs = raw::scan(
            &self.engine.snapshot(),
            &lo,
            hi.as_deref(),
            limit as usize,
            reverse,
            now_ms(),
        )
        .map_err(|e| Refusal::Internal(e.to_string()))?;
        Ok(pairs
            .into_iter()
            .map(|(key, v)| kvrpcpb::KvPair {
                key,
                value: if key_only { Vec::new() } else { v.value },
                error: None,
            })
            .collect())
    }

    /// RawScan.
    pub fn raw_scan(&self, r: kvrpcpb::RawScanRequest) -> Outcome<kvrpcpb::RawScanResponse> {
        check_cf(&r.cf, "RawScan")?;
        let status = match self.route_read(r.context.as_ref(), &[], Space::Raw) {
            Ok(s) => s,
            Err(e) => region_err!(kvrpcpb::RawScanResponse, e),
        };
        Ok(kvrpcpb::RawScanResponse {
            kvs: self.raw_scan_range(
                &status,
                &r.start_key,
                &r.end_key,
                r.limit,
                r.key_only,
                r.reverse,
            )?,
            ..Default::default()
        })
    }

    /// RawBatchScan.
    pub fn raw_batch_scan(
        &self,
        r: kvrpcpb::RawBatchScanRequest,
    ) -> Outcome<kvrpcpb::RawBatchScanResponse> {
        check_cf(&r.cf, "RawBatchScan")?;
        let status = match self.route_read(r.context.as_ref(), &[], Space::Raw) {
            Ok(s) => s,
            Err(e) => region_err!(kvrpcpb::RawBatchScanResponse, e),
        };
        let mut resp = kvrpcpb::RawBatchScanResponse::default();
        for range in &r.ranges {
            resp.kvs.extend(self.raw_scan_range(
                &status,
                &range.start_key,
                &range.end_key,
                r.each_limit,
                r.key_only,
                r.reverse,
            )?);
        }
        Ok(resp)
    }

    /// UnsafeDestroyRange: deletes every version of every key in the range
    /// on this store, bypassing Raft (as TiKV does; callers send it to every
    /// store after GC has made the range unreachable).
    pub fn unsafe_destroy_range(
        &self,
        r: kvrpcpb::UnsafeDestroyRangeRequest,
    ) -> Outcome<kvrpcpb::UnsafeDestroyRangeResponse> {
        use std::ops::Bound;
        use tiox_engine::{Cf, Snapshot as _, WriteBatch};
        let lower = crate::codec::lock_key(&r.start_key);
        let upper = if r.end_key.is_empty() {
            vec![crate::codec::TXN_PREFIX + 1]
        } else {
            crate::codec::lock_key(&r.end_key)
        };
        let snap = self.engine.snapshot();
        let mut wb = WriteBatch::default();
        for cf in [Cf::Default, Cf::Lock, Cf::Write] {
            for kv in snap.iter(cf, Bound::Included(&lower), Bound::Excluded(&upper), false) {
                let (k, _) = kv.map_err(|e| Refusal::Internal(e.to_string()))?;
                wb.delete(cf, k);
            }
        }
        self.engine
            .write(wb, true)
            .map_err(|e| Refusal::Internal(e.to_string()))?;
        Ok(kvrpcpb::UnsafeDestroyRangeResponse::default())
    }
}

/// Shared handle type for the gRPC service.
pub type SharedStorage = Arc<Storage>;

/// A refusal as the gRPC status a tikv-server answers with.
pub fn status(r: Refusal) -> tonic::Status {
    match r {
        Refusal::Invalid(m) => tonic::Status::invalid_argument(m),
        Refusal::Internal(m) => tonic::Status::internal(m),
    }
}

/// Runs one client request (a BatchCommands request, which names every
/// request a client sends): the BatchCommands stream of a tikv-server and
/// the embedded store both answer through it. A refusal becomes the gRPC
/// status a unary RPC would return.
pub async fn dispatch<R: Regions>(s: &Storage<R>, cmd: Req) -> Result<Resp, tonic::Status> {
    let st = status;
    Ok(match cmd {
        Req::Get(r) => {
            s.wait_readable(r.context.as_ref()).await;
            Resp::Get(s.get(r).map_err(st)?)
        }
        Req::Scan(r) => {
            s.wait_readable(r.context.as_ref()).await;
            Resp::Scan(s.scan(r).map_err(st)?)
        }
        Req::Prewrite(r) => Resp::Prewrite(s.prewrite(r).await.map_err(st)?),
        Req::Commit(r) => Resp::Commit(s.commit(r).await.map_err(st)?),
        Req::Cleanup(r) => Resp::Cleanup(s.cleanup(r).await.map_err(st)?),
        Req::BatchGet(r) => {
            s.wait_readable(r.context.as_ref()).await;
            Resp::BatchGet(s.batch_get(r).map_err(st)?)
        }
        Req::BatchRollback(r) => Resp::BatchRollback(s.batch_rollback(r).await.map_err(st)?),
        Req::ScanLock(r) => {
            s.wait_readable(r.context.as_ref()).await;
            Resp::ScanLock(s.scan_lock(r).map_err(st)?)
        }
        Req::ResolveLock(r) => Resp::ResolveLock(s.resolve_lock(r).await.map_err(st)?),
        Req::Gc(r) => Resp::Gc(s.gc(r).await.map_err(st)?),
        Req::DeleteRange(r) => Resp::DeleteRange(s.delete_range(r).await.map_err(st)?),
        Req::RawGet(r) => {
            s.wait_readable(r.context.as_ref()).await;
            Resp::RawGet(s.raw_get(r).map_err(st)?)
        }
        Req::RawBatchGet(r) => {
            s.wait_readable(r.context.as_ref()).await;
            Resp::RawBatchGet(s.raw_batch_get(r).map_err(st)?)
        }
        Req::RawPut(r) => Resp::RawPut(s.raw_put(r).await.map_err(st)?),
        Req::RawBatchPut(r) => Resp::RawBatchPut(s.raw_batch_put(r).await.map_err(st)?),
        Req::RawDelete(r) => Resp::RawDelete(s.raw_delete(r).await.map_err(st)?),
        Req::RawBatchDelete(r) => Resp::RawBatchDelete(s.raw_batch_delete(r).await.map_err(st)?),
        Req::RawScan(r) => {
            s.wait_readable(r.context.as_ref()).await;
            Resp::RawScan(s.raw_scan(r).map_err(st)?)
        }
        Req::RawDeleteRange(r) => Resp::RawDeleteRange(s.raw_delete_range(r).await.map_err(st)?),
        Req::RawBatchScan(r) => {
            s.wait_readable(r.context.as_ref()).await;
            Resp::RawBatchScan(s.raw_batch_scan(r).map_err(st)?)
        }
        Req::PessimisticLock(r) => Resp::PessimisticLock(s.pessimistic_lock(r).await.map_err(st)?),
        Req::PessimisticRollback(r) => {
            Resp::PessimisticRollback(s.pessimistic_rollback(r).await.map_err(st)?)
        }
        Req::CheckTxnStatus(r) => Resp::CheckTxnStatus(s.check_txn_status(r).await.map_err(st)?),
        Req::TxnHeartBeat(r) => Resp::TxnHeartBeat(s.txn_heart_beat(r).await.map_err(st)?),
        Req::CheckSecondaryLocks(r) => {
            Resp::CheckSecondaryLocks(s.check_secondary_locks(r).await.map_err(st)?)
        }
        Req::RawCoprocessor(_) => {
            return Err(tonic::Status::unimplemented(
                "tiox does not run raw coprocessor plugins",
            ))
        }
        Req::Empty(e) => {
            Resp::Empty(tiox_proto::tikvpb::BatchCommandsEmptyResponse { test_id: e.test_id })
        }
    })
}
