//! PD peers replicated with Raft (the `raft` crate, TiKV's implementation):
//! every write batch of PD's storage is a Raft entry, applied in log order
//! to each member's local [`Storage`].
//!
//! ```text
//!  leader: Cluster ─ Storage::write ─► Proposer ─► Raft driver thread ─► peers
//!                      (blocks until applied here)     │  tick / step / Ready
//!                                                      ▼
//!                    raft.log (entries + hard state, fsynced per Ready)
//!                    pd.log   (applied state: the same keys as single-node PD)
//!
//!  peer URL: frames [type u8][len u32][payload] over mutual TLS
//!            type 0 = hello (the sender's name and URLs), 1 = Raft message
//! ```
//!
//! Invariants:
//! - a member serves as leader only once it has applied an entry of its own
//!   term (so every earlier committed write, including the last TSO window,
//!   is in its state) — see [`RaftStatus::ready_leader`];
//! - the TSO window is extended through Raft: a timestamp is handed out
//!   only below a window that a majority has persisted, so a new leader,
//!   starting above the replicated window, is above anything the old one
//!   handed out;
//! - the Raft driver runs on its own thread and runtime, so request handlers
//!   blocking on a proposal cannot starve it;
//! - peer connections are mutually authenticated when TLS is configured;
//!   refusals are logged with the peer's address.
//!
//! Membership: `--initial-cluster` members are voters from the start; a
//! `--join`ing member is added with a Raft `AddNode` conf change proposed by
//! the leader. The log is compacted past `raft-log-keep-entries`; a member
//! needing dropped entries gets a snapshot of the whole applied state.
//!
//! Members are removed with a Raft `RemoveNode` (`pd-ctl member delete`).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use protobuf::Message as _;
use raft::prelude::{
    ConfChange, ConfChangeType, ConfState, Entry, EntryType, HardState, Message as RaftMessage,
    Snapshot,
};
use raft::storage::MemStorage;
use raft::{GetEntriesContext, RaftState};
use raft::{RawNode, StateRole};
use serde::{Deserialize, Serialize};
use tiox_security::{ClientAuth, ClientTls, ServerTls, TlsSettings};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use crate::config::Url;
use crate::error::{Error, Result};
use crate::storage::{decode_ops, encode_ops, Op, Proposer, Storage};
use crate::tso::read_u64;

/// Milliseconds per Raft tick; elections take 10-20 ticks.
pub const TICK_MS: u64 = 100;
const APPLIED_KEY: &[u8] = b"raft/applied";
const HARD_STATE_KEY: &[u8] = b"hs";
const CONF_STATE_KEY: &[u8] = b"cs";
const SNAP_META_KEY: &[u8] = b"snap";
const MEMBER_PREFIX: &[u8] = b"member/";
/// Default number of applied Raft entries kept before older ones are
/// compacted away (a lagging or new member then gets a snapshot).
pub const DEFAULT_KEEP_ENTRIES: u64 = 10_000;
const PEER_PREFIX: &[u8] = b"peers/";
const ENTRY_PREFIX: &[u8] = b"e/";
const MAX_FRAME: usize = 16 << 20;
const PROPOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// The ALPN protocol of the peer port (only PD peers speak it).
pub const PEER_ALPN: &[u8] = b"tiox-pd-raft";

/// A member's stable Raft id, derived from its name (FNV-1a, never 0).
pub fn member_id(name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h.max(1)
}

/// What a member tells its peers about itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    /// Raft id.
    pub id: u64,
    /// Name.
    pub name: String,
    /// Advertised client URLs.
    pub client_urls: Vec<String>,
    /// Advertised peer URLs.
    pub peer_urls: Vec<String>,
}

/// The Raft role as the server needs it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RaftStatus {
    /// The leader's id (0: unknown).
    pub leader_id: u64,
    /// The current term.
    pub term: u64,
    /// This member leads and has applied an entry of its term: it may serve.
    pub ready_leader: bool,
}

/// What a proposal carries.
enum Payload {
    /// A storage write batch.
    Batch(Vec<Op>),
    /// Add a voter (a `--join`ing member).
    AddMember(MemberInfo),
    /// Remove a voter.
    RemoveMember(u64),
}

struct Proposal {
    payload: Payload,
    done: std::sync::mpsc::SyncSender<Result<()>>,
}

/// The peer port's TLS (the same settings dial the other members), counters
/// and audit log.
#[derive(Debug)]
pub struct PeerPort {
    /// Mutual TLS, or `None` with `--insecure`.
    pub tls: Option<TlsSettings>,
    /// Connection and TLS counters (`listener="peer"`).
    pub stats: Arc<tiox_security::ListenerStats>,
    /// Where refusals are written.
    pub audit: Option<Arc<tiox_security::audit::AuditLog>>,
}

/// The handle the server keeps.
pub struct Replica {
    /// This member's Raft id.
    pub self_id: u64,
    /// A read-only view of the Raft log (for the current voters).
    conf_view: MemStorage,
    proposals: mpsc::UnboundedSender<Proposal>,
    status: watch::Receiver<RaftStatus>,
    state: Arc<Mutex<Storage>>,
    members: Arc<Mutex<BTreeMap<u64, MemberInfo>>>,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("self_id", &self.self_id)
            .finish_non_exhaustive()
    }
}

/// The durable Raft log: entries and hard state in an fsynced log, mirrored
/// in the `MemStorage` the Raft node reads.
struct RaftLog {
    store: Storage,
    mem: MemStorage,
    last: u64,
}

fn entry_key(index: u64) -> Vec<u8> {
    format!("e/{index:020}").into_bytes()
}

impl RaftLog {
    fn open(dir: &std::path::Path, voters: Vec<u64>) -> Result<RaftLog> {
        let store = Storage::open_named(dir, "raft.log")?;
        let cs = match store.get(CONF_STATE_KEY) {
            Some(b) => ConfState::parse_from_bytes(b)
                .map_err(|e| Error::Corrupt(format!("the Raft conf state does not decode: {e}")))?,
            None => ConfState::from((voters, Vec::<u64>::new())),
        };
        let snap_meta = store.get(SNAP_META_KEY).and_then(|v| {
            let b: [u8; 16] = v.try_into().ok()?;
            Some((
                u64::from_be_bytes(b[..8].try_into().ok()?),
                u64::from_be_bytes(b[8..].try_into().ok()?),
            ))
        });
        let mem = MemStorage::new_with_conf_state(cs.clone());
        if let Some((index, term)) = snap_meta {
            let mut snap = Snapshot::default();
            snap.mut_metadata().index = index;
            snap.mut_metadata().term = term;
            snap.mut_metadata().set_conf_state(cs);
            mem.wl()
                .apply_snapshot(snap)
                .map_err(|e| Error::Corrupt(format!("the Raft snapshot mark is unusable: {e}")))?;
        }
        let mut entries = Vec::new();
        for (_, v) in store.scan_prefix(ENTRY_PREFIX) {
            entries.push(
                Entry::parse_from_bytes(v)
                    .map_err(|e| Error::Corrupt(format!("a Raft entry does not decode: {e}")))?,
            );
        }
        let last = entries
            .last()
            .map_or(snap_meta.map_or(0, |(i, _)| i), |e| e.index);
        mem.wl()
            .append(&entries)
            .map_err(|e| Error::Corrupt(format!("the Raft log is not continuous: {e}")))?;
        if let Some(hs) = store.get(HARD_STATE_KEY) {
            let hs = HardState::parse_from_bytes(hs)
                .map_err(|e| Error::Corrupt(format!("the Raft hard state does not decode: {e}")))?;
            mem.wl().set_hardstate(hs);
        }
        Ok(RaftLog { store, mem, last })
    }

    /// Persists new entries (replacing any conflicting tail) and the hard
    /// state in one fsynced batch, then mirrors them in memory.
    fn persist(&mut self, entries: &[Entry], hs: Option<&HardState>) -> Result<()> {
        if entries.is_empty() && hs.is_none() {
            return Ok(());
        }
        let mut batch: Vec<Op> = Vec::new();
        let mut new_last = self.last;
        for e in entries {
            let bytes = e
                .write_to_bytes()
                .map_err(|err| Error::Corrupt(format!("cannot encode a Raft entry: {err}")))?;
            batch.push((entry_key(e.index), Some(bytes)));
            new_last = e.index;
        }
        if !entries.is_empty() {
            for stale in new_last + 1..=self.last {
                batch.push((entry_key(stale), None));
            }
        }
        if let Some(hs) = hs {
            let bytes = hs
                .write_to_bytes()
                .map_err(|err| Error::Corrupt(format!("cannot encode the hard state: {err}")))?;
            batch.push((HARD_STATE_KEY.to_vec(), Some(bytes)));
        }
        self.store.write(batch)?;
        if !entries.is_empty() {
            self.mem
                .wl()
                .append(entries)
                .map_err(|e| Error::Corrupt(format!("appending Raft entries: {e}")))?;
            self.last = new_last;
        }
        if let Some(hs) = hs {
            self.mem.wl().set_hardstate(hs.clone());
        }
        Ok(())
    }

    fn set_conf_state(&mut self, cs: ConfState) -> Result<()> {
        let bytes = cs
            .write_to_bytes()
            .map_err(|e| Error::Corrupt(format!("cannot encode the conf state: {e}")))?;
        self.store.put(CONF_STATE_KEY, bytes)?;
        self.mem.wl().set_conf_state(cs);
        Ok(())
    }

    fn save_peer(&mut self, info: &MemberInfo) -> Result<()> {
        let mut key = PEER_PREFIX.to_vec();
        key.extend_from_slice(info.id.to_string().as_bytes());
        self.store
            .put(&key, serde_json::to_vec(info).unwrap_or_default())
    }

    fn forget_peer(&mut self, id: u64) -> Result<()> {
        let mut key = PEER_PREFIX.to_vec();
        key.extend_from_slice(id.to_string().as_bytes());
        self.store.write(vec![(key, None)])
    }

    fn saved_peers(&self) -> Vec<MemberInfo> {
        self.store
            .scan_prefix(PEER_PREFIX)
            .filter_map(|(_, v)| serde_json::from_slice(v).ok())
            .collect()
    }

    /// Drops entries before `index` (all applied), remembering the index
    /// and term just before it.
    fn compact(&mut self, index: u64) -> Result<()> {
        let first = raft::Storage::first_index(&self.mem).unwrap_or(1);
        if index <= first {
            return Ok(());
        }
        let term = raft::Storage::term(&self.mem, index - 1)
            .map_err(|e| Error::Corrupt(format!("no term for Raft index {}: {e}", index - 1)))?;
        let mut batch: Vec<Op> = (first..index).map(|i| (entry_key(i), None)).collect();
        let mut meta = (index - 1).to_be_bytes().to_vec();
        meta.extend_from_slice(&term.to_be_bytes());
        batch.push((SNAP_META_KEY.to_vec(), Some(meta)));
        self.store.write(batch)?;
        self.mem
            .wl()
            .compact(index)
            .map_err(|e| Error::Corrupt(format!("compacting the Raft log: {e}")))?;
        Ok(())
    }

    /// Replaces the log by a snapshot's position (the state itself is
    /// installed by the caller).
    fn install_snapshot(&mut self, snap: &Snapshot) -> Result<()> {
        let first = raft::Storage::first_index(&self.mem).unwrap_or(1);
        let mut batch: Vec<Op> = (first..=self.last).map(|i| (entry_key(i), None)).collect();
        let meta = snap.get_metadata();
        let mut mark = meta.index.to_be_bytes().to_vec();
        mark.extend_from_slice(&meta.term.to_be_bytes());
        batch.push((SNAP_META_KEY.to_vec(), Some(mark)));
        let cs = meta
            .get_conf_state()
            .write_to_bytes()
            .map_err(|e| Error::Corrupt(format!("cannot encode the conf state: {e}")))?;
        batch.push((CONF_STATE_KEY.to_vec(), Some(cs)));
        self.store.write(batch)?;
        self.mem
            .wl()
            .apply_snapshot(snap.clone())
            .map_err(|e| Error::Corrupt(format!("installing a Raft snapshot: {e}")))?;
        self.last = meta.index;
        Ok(())
    }

    fn is_fresh(&self) -> bool {
        self.last == 0 && self.store.get(HARD_STATE_KEY).is_none()
    }

    fn set_commit(&mut self, commit: u64) -> Result<()> {
        let mut hs = self.mem.rl().hard_state().clone();
        hs.commit = commit;
        self.persist(&[], Some(&hs))
    }
}

/// What the Raft node reads: the in-memory log, plus snapshots made from
/// the applied state (the whole key space; PD's state is small).
struct RaftStore {
    mem: MemStorage,
    state: Arc<Mutex<Storage>>,
}

impl raft::Storage for RaftStore {
    fn initial_state(&self) -> raft::Result<RaftState> {
        self.mem.initial_state()
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        self.mem.entries(low, high, max_size, context)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        self.mem.term(idx)
    }

    fn first_index(&self) -> raft::Result<u64> {
        self.mem.first_index()
    }

    fn last_index(&self) -> raft::Result<u64> {
        self.mem.last_index()
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let map = self
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .to_map();
        let applied = map
            .get(APPLIED_KEY)
            .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
            .map_or(0, u64::from_be_bytes);
        if applied < request_index {
            return Err(raft::Error::Store(
                raft::StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        let term = self.mem.term(applied)?;
        let conf_state = self.mem.initial_state()?.conf_state;
        let ops: Vec<Op> = map.into_iter().map(|(k, v)| (k, Some(v))).collect();
        let mut snap = Snapshot {
            data: encode_ops(&ops).into(),
            ..Default::default()
        };
        snap.mut_metadata().index = applied;
        snap.mut_metadata().term = term;
        snap.mut_metadata().set_conf_state(conf_state);
        Ok(snap)
    }
}

/// The peers to talk to: id, name and peer URL.
#[derive(Clone, Debug)]
pub struct PeerAddr {
    /// Raft id.
    pub id: u64,
    /// Name.
    pub name: String,
    /// Peer URL.
    pub url: Url,
}

impl Replica {
    /// Opens the Raft log and applied state in `dir`, binds the peer URLs
    /// and starts the driver thread.
    ///
    /// `peers` are the `--initial-cluster` members; `joined` is the member
    /// list a running cluster answered a fresh `--join` with (this member
    /// included as a voter). Members added later are remembered in the
    /// Raft log's directory.
    pub fn start(
        dir: &std::path::Path,
        me: MemberInfo,
        mut peers: Vec<PeerAddr>,
        joined: Option<Vec<MemberInfo>>,
        listen: &[Url],
        keep_entries: u64,
        peer_port: PeerPort,
    ) -> Result<Replica> {
        let PeerPort {
            tls,
            stats: peer_stats,
            audit,
        } = peer_port;
        let mut voters: Vec<u64> = peers.iter().map(|p| p.id).collect();
        voters.push(me.id);
        voters.sort_unstable();
        voters.dedup();
        let mut log = RaftLog::open(dir, voters)?;
        if let Some(members) = &joined {
            let mut ids: Vec<u64> = members.iter().map(|m| m.id).collect();
            ids.push(me.id);
            ids.sort_unstable();
            ids.dedup();
            for m in members.iter().filter(|m| m.id != me.id) {
                log.save_peer(m)?;
            }
            log.set_conf_state(ConfState::from((ids, Vec::<u64>::new())))?;
        }
        let saved = log.saved_peers();
        for info in &saved {
            if info.id == me.id || peers.iter().any(|p| p.id == info.id) {
                continue;
            }
            if let Some(url) = info
                .peer_urls
                .first()
                .and_then(|u| Url::parse(u, "peer URL").ok())
            {
                peers.push(PeerAddr {
                    id: info.id,
                    name: info.name.clone(),
                    url,
                });
            }
        }
        let state = Storage::open(dir)?;
        let applied = read_u64(&state, APPLIED_KEY)?.unwrap_or(0);
        for (_, v) in state.scan_prefix(MEMBER_PREFIX) {
            if let Ok(info) = serde_json::from_slice::<MemberInfo>(v) {
                if info.id != me.id && !log.saved_peers().iter().any(|p| p.id == info.id) {
                    log.save_peer(&info)?;
                }
            }
        }
        let cfg = raft::Config {
            id: me.id,
            election_tick: 10,
            heartbeat_tick: 2,
            applied,
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 256,
            check_quorum: true,
            pre_vote: true,
            ..Default::default()
        };
        cfg.validate()
            .map_err(|e| Error::InvalidValue(format!("raft config: {e}")))?;
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let conf_view = log.mem.clone();
        let state = Arc::new(Mutex::new(state));
        let store = RaftStore {
            mem: log.mem.clone(),
            state: state.clone(),
        };
        let node = RawNode::new(&cfg, store, &logger)
            .map_err(|e| Error::Corrupt(format!("cannot start the Raft node: {e}")))?;

        let mut std_listeners = Vec::new();
        for url in listen {
            let addr = url.authority();
            let l = std::net::TcpListener::bind(&addr).map_err(|source| Error::Listen {
                addr: addr.clone(),
                source,
            })?;
            l.set_nonblocking(true).map_err(|source| Error::Listen {
                addr: addr.clone(),
                source,
            })?;
            std_listeners.push(l);
        }
        let server_tls = match &tls {
            Some(s) => Some(Arc::new(
                ServerTls::with_options(s.clone(), ClientAuth::Required, vec![PEER_ALPN.to_vec()])
                    .map_err(|e| Error::Tls(e.to_string()))?,
            )),
            None => None,
        };
        let client_tls = match &tls {
            Some(s) => Some(Arc::new(
                ClientTls::with_alpn(s.clone(), vec![PEER_ALPN.to_vec()])
                    .map_err(|e| Error::Tls(e.to_string()))?,
            )),
            None => None,
        };

        let mut known = BTreeMap::from([(me.id, me.clone())]);
        for info in saved {
            known.entry(info.id).or_insert(info);
        }
        let members = Arc::new(Mutex::new(known));
        let (prop_tx, prop_rx) = mpsc::unbounded_channel();
        let (status_tx, status_rx) = watch::channel(RaftStatus::default());
        let hello = frame(0, &serde_json::to_vec(&me).unwrap_or_default());
        let mut driver = Driver {
            node,
            log,
            state: state.clone(),
            pending: HashMap::new(),
            next_proposal: seed(),
            applied_term: 0,
            status: status_tx,
            senders: HashMap::new(),
            client_tls: client_tls.clone(),
            hello: hello.clone(),
            members: members.clone(),
            self_id: me.id,
            keep_entries: keep_entries.max(1),
        };
        let members2 = members.clone();
        let self_id = me.id;
        std::thread::Builder::new()
            .name("pd-raft".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!("cannot start the Raft runtime: {e}");
                        std::process::exit(1);
                    }
                };
                rt.block_on(async move {
                    let (in_tx, in_rx) = mpsc::channel::<RaftMessage>(4096);
                    for l in std_listeners {
                        match TcpListener::from_std(l) {
                            Ok(l) => {
                                tokio::spawn(accept_peers(
                                    l,
                                    tiox_security::serve::Port::new(
                                        "pd-server peer port",
                                        server_tls.clone(),
                                        peer_stats.clone(),
                                    )
                                    .with_audit(audit.clone()),
                                    in_tx.clone(),
                                    members2.clone(),
                                    self_id,
                                ));
                            }
                            Err(e) => tracing::error!("peer listener: {e}"),
                        }
                    }
                    for p in peers.into_iter().filter(|p| p.id != self_id) {
                        driver.add_sender(p);
                    }
                    driver.run(in_rx, prop_rx).await;
                });
            })
            .map_err(|e| Error::InvalidValue(format!("cannot start the Raft thread: {e}")))?;
        Ok(Replica {
            self_id,
            conf_view,
            proposals: prop_tx,
            status: status_rx,
            state,
            members,
        })
    }

    /// A proposer for [`Storage::replicated`]: proposes and waits until the
    /// batch is applied on this member.
    pub fn proposer(&self) -> Proposer {
        let tx = self.proposals.clone();
        Proposer(Arc::new(move |batch: Vec<Op>| {
            let (done, wait) = std::sync::mpsc::sync_channel(1);
            tx.send(Proposal {
                payload: Payload::Batch(batch),
                done,
            })
            .map_err(|_| Error::NotLeader { leader: None })?;
            match wait.recv_timeout(PROPOSE_TIMEOUT) {
                Ok(r) => r,
                Err(_) => Err(Error::NotLeader { leader: None }),
            }
        }))
    }

    /// Adds `info` as a voter (a member joining with `--join`); blocks until
    /// the change is applied here. Returns the members then known.
    pub fn add_member(&self, info: MemberInfo) -> Result<Vec<MemberInfo>> {
        let (done, wait) = std::sync::mpsc::sync_channel(1);
        self.proposals
            .send(Proposal {
                payload: Payload::AddMember(info),
                done,
            })
            .map_err(|_| Error::NotLeader { leader: None })?;
        match wait.recv_timeout(PROPOSE_TIMEOUT) {
            Ok(r) => r?,
            Err(_) => {
                return Err(Error::InvalidValue(
                    "the membership change did not commit in time (another change may be in \
                     progress); retry"
                        .into(),
                ))
            }
        }
        Ok(self.members())
    }

    /// Removes the voter `id`; blocks until the change is applied here.
    pub fn remove_member(&self, id: u64) -> Result<()> {
        let voters = raft::Storage::initial_state(&self.conf_view)
            .map(|s| s.conf_state.voters)
            .unwrap_or_default();
        if !voters.contains(&id) {
            return Err(Error::InvalidValue(format!("member {id} is not a voter")));
        }
        if voters.len() <= 1 {
            return Err(Error::InvalidValue(
                "cannot remove the last PD member".into(),
            ));
        }
        let (done, wait) = std::sync::mpsc::sync_channel(1);
        self.proposals
            .send(Proposal {
                payload: Payload::RemoveMember(id),
                done,
            })
            .map_err(|_| Error::NotLeader { leader: None })?;
        match wait.recv_timeout(PROPOSE_TIMEOUT) {
            Ok(r) => r,
            Err(_) => Err(Error::InvalidValue(
                "the membership change did not commit in time; retry".into(),
            )),
        }
    }

    /// The current voters' ids.
    pub fn voters(&self) -> Vec<u64> {
        raft::Storage::initial_state(&self.conf_view)
            .map(|s| s.conf_state.voters)
            .unwrap_or_default()
    }

    /// A copy of the applied state.
    pub fn applied_map(&self) -> BTreeMap<Vec<u8>, Vec<u8>> {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .to_map()
    }

    /// The last Raft index applied to the state here.
    pub fn applied_index(&self) -> u64 {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        read_u64(&state, APPLIED_KEY).ok().flatten().unwrap_or(0)
    }

    /// The members heard of (always including this one).
    pub fn members(&self) -> Vec<MemberInfo> {
        self.members
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// The current status.
    pub fn status(&self) -> RaftStatus {
        *self.status.borrow()
    }

    /// A receiver of status changes.
    pub fn watch(&self) -> watch::Receiver<RaftStatus> {
        self.status.clone()
    }
}

fn seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
}

struct Driver {
    node: RawNode<RaftStore>,
    log: RaftLog,
    state: Arc<Mutex<Storage>>,
    pending: HashMap<u64, Proposal>,
    next_proposal: u64,
    applied_term: u64,
    status: watch::Sender<RaftStatus>,
    senders: HashMap<u64, mpsc::Sender<Vec<u8>>>,
    client_tls: Option<Arc<ClientTls>>,
    hello: Vec<u8>,
    members: Arc<Mutex<BTreeMap<u64, MemberInfo>>>,
    self_id: u64,
    keep_entries: u64,
}

impl Driver {
    fn add_sender(&mut self, peer: PeerAddr) {
        if peer.id == self.self_id || self.senders.contains_key(&peer.id) {
            return;
        }
        let (tx, rx) = mpsc::channel::<Vec<u8>>(1024);
        tokio::spawn(send_to_peer(
            peer.clone(),
            self.client_tls.clone(),
            self.hello.clone(),
            rx,
        ));
        self.senders.insert(peer.id, tx);
    }

    async fn run(
        mut self,
        mut inbound: mpsc::Receiver<RaftMessage>,
        mut proposals: mpsc::UnboundedReceiver<Proposal>,
    ) {
        let mut ticker = tokio::time::interval(Duration::from_millis(TICK_MS));
        loop {
            tokio::select! {
                _ = ticker.tick() => {
                    self.node.tick();
                }
                Some(m) = inbound.recv() => {
                    let _ = self.node.step(m);
                    while let Ok(m) = inbound.try_recv() {
                        let _ = self.node.step(m);
                    }
                }
                Some(p) = proposals.recv() => self.propose(p),
            }
            if let Err(e) = self.on_ready() {
                // The log or the state cannot be written: going on could
                // acknowledge writes that are not durable.
                tracing::error!("PD Raft storage failed, stopping: {e}");
                std::process::exit(1);
            }
            let st = RaftStatus {
                leader_id: self.node.raft.leader_id,
                term: self.node.raft.term,
                ready_leader: self.node.raft.state == StateRole::Leader
                    && self.applied_term == self.node.raft.term,
            };
            if self.node.raft.state != StateRole::Leader && !self.pending.is_empty() {
                for (_, p) in self.pending.drain() {
                    let _ = p.done.send(Err(Error::NotLeader { leader: None }));
                }
            }
            self.status.send_if_modified(|cur| {
                if *cur != st {
                    if cur.leader_id != st.leader_id || cur.ready_leader != st.ready_leader {
                        tracing::info!(
                            leader_id = st.leader_id,
                            term = st.term,
                            serving = st.ready_leader,
                            "PD Raft status changed"
                        );
                    }
                    *cur = st;
                    true
                } else {
                    false
                }
            });
        }
    }

    fn propose(&mut self, p: Proposal) {
        if self.node.raft.state != StateRole::Leader {
            let _ = p.done.send(Err(Error::NotLeader { leader: None }));
            return;
        }
        self.next_proposal = self.next_proposal.wrapping_add(1);
        let id = self.next_proposal;
        let ctx = id.to_be_bytes().to_vec();
        let result = match &p.payload {
            Payload::Batch(batch) => self.node.propose(ctx, encode_ops(batch)),
            Payload::AddMember(info) => {
                let mut cc = ConfChange::default();
                cc.set_change_type(ConfChangeType::AddNode);
                cc.node_id = info.id;
                cc.context = serde_json::to_vec(info).unwrap_or_default().into();
                self.node.propose_conf_change(ctx, cc)
            }
            Payload::RemoveMember(id) => {
                let mut cc = ConfChange::default();
                cc.set_change_type(ConfChangeType::RemoveNode);
                cc.node_id = *id;
                self.node.propose_conf_change(ctx, cc)
            }
        };
        match result {
            Ok(()) => {
                self.pending.insert(id, p);
            }
            Err(e) => {
                let _ = p.done.send(Err(Error::InvalidValue(format!(
                    "Raft refused the proposal: {e}"
                ))));
            }
        }
    }

    fn send(&mut self, msgs: Vec<RaftMessage>) {
        for m in msgs {
            let to = m.to;
            let Some(tx) = self.senders.get(&to) else {
                continue;
            };
            match m.write_to_bytes() {
                Ok(bytes) => {
                    if tx.try_send(frame(1, &bytes)).is_err() {
                        self.node.report_unreachable(to);
                    }
                }
                Err(e) => tracing::warn!("cannot encode a Raft message: {e}"),
            }
        }
    }

    fn on_ready(&mut self) -> Result<()> {
        if !self.node.has_ready() {
            return Ok(());
        }
        let mut rd = self.node.ready();
        self.send(rd.take_messages());
        if !rd.snapshot().is_empty() {
            let snap = rd.snapshot().clone();
            self.install_snapshot(&snap)?;
        }
        let committed = rd.take_committed_entries();
        self.apply(committed)?;
        self.log.persist(rd.entries(), rd.hs())?;
        self.send(rd.take_persisted_messages());
        let mut light = self.node.advance(rd);
        if let Some(commit) = light.commit_index() {
            self.log.set_commit(commit)?;
        }
        self.send(light.take_messages());
        self.apply(light.take_committed_entries())?;
        self.node.advance_apply();
        let applied = self.node.raft.raft_log.applied;
        let first = raft::Storage::first_index(&self.log.mem).unwrap_or(1);
        if applied > first + 2 * self.keep_entries {
            self.log.compact(applied - self.keep_entries)?;
        }
        Ok(())
    }

    fn apply(&mut self, entries: Vec<Entry>) -> Result<()> {
        for e in entries {
            self.applied_term = e.term;
            if e.get_entry_type() == EntryType::EntryConfChange {
                self.apply_conf_change(&e)?;
                continue;
            }
            if e.get_entry_type() != EntryType::EntryNormal || e.data.is_empty() {
                continue;
            }
            let mut ops = decode_ops(&e.data).ok_or_else(|| {
                Error::Corrupt(format!("Raft entry {} is not a write batch", e.index))
            })?;
            ops.push((APPLIED_KEY.to_vec(), Some(e.index.to_be_bytes().to_vec())));
            self.state
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .write(ops)?;
            if let Ok(ctx) = <[u8; 8]>::try_from(e.context.as_ref()) {
                if let Some(p) = self.pending.remove(&u64::from_be_bytes(ctx)) {
                    let _ = p.done.send(Ok(()));
                }
            }
        }
        Ok(())
    }
}

impl Driver {
    /// Installs a snapshot from the leader: the state is replaced whole,
    /// the log restarts after it, and members it knows are dialled.
    fn install_snapshot(&mut self, snap: &Snapshot) -> Result<()> {
        let meta = snap.get_metadata();
        let ops = decode_ops(&snap.data)
            .ok_or_else(|| Error::Corrupt("a Raft snapshot does not decode".into()))?;
        let mut map: BTreeMap<Vec<u8>, Vec<u8>> = ops
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect();
        map.insert(APPLIED_KEY.to_vec(), meta.index.to_be_bytes().to_vec());
        let members: Vec<MemberInfo> = map
            .iter()
            .filter(|(k, _)| k.starts_with(MEMBER_PREFIX))
            .filter_map(|(_, v)| serde_json::from_slice(v).ok())
            .collect();
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .reset(map)?;
        self.log.install_snapshot(snap)?;
        self.applied_term = meta.term;
        tracing::info!(
            index = meta.index,
            term = meta.term,
            "installed a Raft snapshot"
        );
        for info in members {
            self.remember_member(info)?;
        }
        Ok(())
    }

    fn remember_member(&mut self, info: MemberInfo) -> Result<()> {
        if info.id == self.self_id {
            return Ok(());
        }
        self.log.save_peer(&info)?;
        if let Some(url) = info
            .peer_urls
            .first()
            .and_then(|u| Url::parse(u, "peer URL").ok())
        {
            self.add_sender(PeerAddr {
                id: info.id,
                name: info.name.clone(),
                url,
            });
        }
        self.members
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(info.id)
            .or_insert(info);
        Ok(())
    }

    /// Applies a membership change: the new conf state is persisted, the new
    /// member is remembered (for restarts) and dialled.
    fn apply_conf_change(&mut self, e: &Entry) -> Result<()> {
        let cc = ConfChange::parse_from_bytes(&e.data).map_err(|err| {
            Error::Corrupt(format!(
                "Raft entry {} is not a conf change: {err}",
                e.index
            ))
        })?;
        let cs = self
            .node
            .apply_conf_change(&cc)
            .map_err(|err| Error::InvalidValue(format!("conf change at {}: {err}", e.index)))?;
        self.log.set_conf_state(cs)?;
        let mut ops: Vec<Op> = vec![(APPLIED_KEY.to_vec(), Some(e.index.to_be_bytes().to_vec()))];
        if cc.get_change_type() == ConfChangeType::RemoveNode {
            let id = cc.node_id;
            tracing::info!(id, "PD member removed");
            let mut key = MEMBER_PREFIX.to_vec();
            key.extend_from_slice(id.to_string().as_bytes());
            ops.push((key, None));
            self.senders.remove(&id);
            self.log.forget_peer(id)?;
            self.members
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
            if id == self.self_id {
                tracing::warn!(
                    "this member was removed from the PD cluster; it no longer votes or serves"
                );
            }
        }
        if cc.get_change_type() == ConfChangeType::AddNode {
            if let Ok(info) = serde_json::from_slice::<MemberInfo>(&cc.context) {
                tracing::info!(name = %info.name, id = info.id, "PD member added");
                let mut key = MEMBER_PREFIX.to_vec();
                key.extend_from_slice(info.id.to_string().as_bytes());
                ops.push((key, Some(serde_json::to_vec(&info).unwrap_or_default())));
                self.remember_member(info)?;
            }
        }
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .write(ops)?;
        if let Ok(ctx) = <[u8; 8]>::try_from(e.context.as_ref()) {
            if let Some(p) = self.pending.remove(&u64::from_be_bytes(ctx)) {
                let _ = p.done.send(Ok(()));
            }
        }
        Ok(())
    }
}

/// Whether `dir` holds no Raft state yet (a member that must `--join`).
pub fn is_fresh(dir: &std::path::Path) -> Result<bool> {
    Ok(RaftLog::open(dir, Vec::new())?.is_fresh())
}

fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 5);
    out.push(kind);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<(u8, Vec<u8>)> {
    let mut head = [0u8; 5];
    r.read_exact(&mut head).await?;
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if len > MAX_FRAME {
        return Err(std::io::Error::other(format!(
            "frame of {len} bytes exceeds the {MAX_FRAME}-byte limit"
        )));
    }
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf).await?;
    Ok((head[0], buf))
}

async fn accept_peers(
    listener: TcpListener,
    port: tiox_security::serve::Port,
    inbound: mpsc::Sender<RaftMessage>,
    members: Arc<Mutex<BTreeMap<u64, MemberInfo>>>,
    self_id: u64,
) {
    tiox_security::serve::accept_loop(listener, port, move |stream, identity| {
        let (inbound, members) = (inbound.clone(), members.clone());
        async move {
            let peer = identity.addr;
            if let Err(e) = serve_peer(stream, &peer, inbound, members, self_id).await {
                tracing::debug!(peer = %peer, "peer connection ended: {e}");
            }
        }
    })
    .await;
}

async fn serve_peer<S: AsyncRead + Unpin>(
    mut stream: S,
    peer: &str,
    inbound: mpsc::Sender<RaftMessage>,
    members: Arc<Mutex<BTreeMap<u64, MemberInfo>>>,
    self_id: u64,
) -> std::io::Result<()> {
    loop {
        let (kind, payload) = read_frame(&mut stream).await?;
        match kind {
            0 => match serde_json::from_slice::<MemberInfo>(&payload) {
                Ok(info) if info.id != self_id => {
                    members
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(info.id, info);
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(peer = %peer, "peer port: bad hello, closing: {e}");
                    return Ok(());
                }
            },
            1 => match RaftMessage::parse_from_bytes(&payload) {
                Ok(m) if m.to == self_id => {
                    if inbound.send(m).await.is_err() {
                        return Ok(());
                    }
                }
                Ok(m) => {
                    tracing::debug!(peer = %peer, to = m.to, "dropping a Raft message for another member")
                }
                Err(e) => {
                    tracing::warn!(peer = %peer, "peer port: undecodable Raft message, closing: {e}");
                    return Ok(());
                }
            },
            other => {
                tracing::warn!(peer = %peer, "peer port: unknown frame type {other}, closing");
                return Ok(());
            }
        }
    }
}

async fn connect_peer(
    url: &Url,
    tls: Option<&Arc<ClientTls>>,
) -> std::result::Result<Box<dyn AsyncWrite + Unpin + Send>, String> {
    let addr = url.authority();
    match tls {
        Some(tls) => {
            let s = tls.connect_tcp(&addr).await.map_err(|e| e.to_string())?;
            Ok(Box::new(s))
        }
        None => {
            let s = TcpStream::connect(&addr)
                .await
                .map_err(|e| format!("connecting to {addr}: {e}"))?;
            let _ = s.set_nodelay(true);
            Ok(Box::new(s))
        }
    }
}

async fn send_to_peer(
    peer: PeerAddr,
    tls: Option<Arc<ClientTls>>,
    hello: Vec<u8>,
    mut rx: mpsc::Receiver<Vec<u8>>,
) {
    let mut failures = 0u32;
    loop {
        let mut conn = match connect_peer(&peer.url, tls.as_ref()).await {
            Ok(c) => c,
            Err(e) => {
                if failures.is_multiple_of(50) {
                    tracing::warn!(
                        peer = %peer.name,
                        url = %peer.url,
                        "cannot reach PD peer (will keep retrying): {e}"
                    );
                }
                failures += 1;
                if rx.is_closed() {
                    return;
                }
                let backoff = 100u64 << failures.min(5);
                tokio::time::sleep(Duration::from_millis(backoff)).await;
                // Messages queued meanwhile are stale; Raft resends.
                while rx.try_recv().is_ok() {}
                continue;
            }
        };
        if failures > 0 {
            tracing::info!(peer = %peer.name, url = %peer.url, "connected to PD peer");
        }
        failures = 0;
        if conn.write_all(&hello).await.is_err() {
            continue;
        }
        loop {
            let Some(first) = rx.recv().await else {
                return;
            };
            let mut buf = first;
            while let Ok(more) = rx.try_recv() {
                buf.extend_from_slice(&more);
                if buf.len() > 1 << 20 {
                    break;
                }
            }
            if conn.write_all(&buf).await.is_err() || conn.flush().await.is_err() {
                break;
            }
        }
    }
}
