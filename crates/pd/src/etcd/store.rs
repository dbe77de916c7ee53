//! The etcd key space: a multi-version map with one global revision, leases
//! and compaction, kept in PD's [`Storage`] so it is replicated by PD's Raft
//! like the rest of PD's state.
//!
//! ```text
//!  history (by revision)          index (by key)
//!  (5,0) PUT  a=1 ◄────────────── "a": [(5,0), (7,0), (9,0)]
//!  (6,0) PUT  b=1 ◄────────────── "b": [(6,0)]
//!  (7,0) PUT  a=2                  read "a" at revision 8: the last entry
//!  (9,0) DEL  a                    <= 8 is (7,0), a PUT: a=2
//!
//!  durable form (PD storage keys):
//!    etcd/meta              revision, compact revision, next lease id
//!    etcd/h/<rev><sub>      one mvccpb::Event (no prev_kv)
//!    etcd/lease/<id>        granted TTL in seconds
//! ```
//!
//! Invariants: every write request (Put, DeleteRange, a Txn with writes,
//! LeaseRevoke, Compact, LeaseGrant) is one storage batch, so one Raft entry
//! on a replicated PD; the revision grows by one per request that changed a
//! key and never goes back; compaction keeps, for every key, its newest
//! version at or below the compaction revision, so a read at any revision
//! from there on is exact. Lease deadlines are not durable: they are set to
//! now + TTL when the store is loaded (a new leader), and moved by
//! keep-alives, as etcd's lessor does. Deterministic: time is an argument.

use std::collections::{BTreeMap, HashMap};

use prost::Message;
use tiox_proto::etcdserverpb as pb;
use tiox_proto::mvccpb::{self, event::EventType, KeyValue};

use super::{Error, Result};
use crate::storage::{Op, Storage};

const META_KEY: &[u8] = b"etcd/meta";
const HISTORY_PREFIX: &[u8] = b"etcd/h/";
const LEASE_PREFIX: &[u8] = b"etcd/lease/";
/// The shortest TTL granted (etcd: 1.5 election timeouts, rounded up).
pub const MIN_TTL_SECS: i64 = 2;
const FIRST_LEASE_ID: i64 = 0x7469_6f78_0000_0001;

/// A position in the history: the revision and the change's index within it.
type Pos = (i64, u32);

#[derive(Clone, Debug)]
struct Lease {
    ttl: i64,
    deadline_ms: u64,
}

/// What a write produced: the events (for watchers) of one revision.
#[derive(Clone, Debug, Default)]
pub struct Written {
    /// The events in order; all share one revision.
    pub events: Vec<mvccpb::Event>,
}

/// The etcd key space.
#[derive(Debug, Default)]
pub struct Store {
    revision: i64,
    compact_revision: i64,
    next_lease: i64,
    history: BTreeMap<Pos, mvccpb::Event>,
    index: BTreeMap<Vec<u8>, Vec<Pos>>,
    leases: BTreeMap<i64, Lease>,
}

fn history_key(pos: Pos) -> Vec<u8> {
    let mut k = HISTORY_PREFIX.to_vec();
    k.extend_from_slice(&pos.0.to_be_bytes());
    k.extend_from_slice(&pos.1.to_be_bytes());
    k
}

fn lease_key(id: i64) -> Vec<u8> {
    let mut k = LEASE_PREFIX.to_vec();
    k.extend_from_slice(&id.to_be_bytes());
    k
}

fn be_i64(b: &[u8]) -> Option<i64> {
    Some(i64::from_be_bytes(b.try_into().ok()?))
}

/// Whether `key` is in `[start, end)` in etcd's sense: an empty `end` is
/// `start` alone, `"\0"` is unbounded.
pub fn in_range(key: &[u8], start: &[u8], end: &[u8]) -> bool {
    if end.is_empty() {
        key == start
    } else if end == [0] {
        key >= start
    } else {
        key >= start && key < end
    }
}

/// Changes staged by one request before they are written.
#[derive(Default)]
struct Batch {
    events: Vec<mvccpb::Event>,
    ops: Vec<Op>,
}

impl Store {
    /// Loads the key space from PD's storage. Every lease gets a full TTL
    /// from `now_ms`.
    pub fn load(storage: &Storage, now_ms: u64) -> Result<Store> {
        let mut s = Store {
            next_lease: FIRST_LEASE_ID,
            ..Default::default()
        };
        if let Some(m) = storage.get(META_KEY) {
            let (Some(rev), Some(compact), Some(next)) = (
                m.get(..8).and_then(be_i64),
                m.get(8..16).and_then(be_i64),
                m.get(16..24).and_then(be_i64),
            ) else {
                return Err(Error::Pd(crate::Error::Corrupt(
                    "etcd/meta is not 24 bytes".into(),
                )));
            };
            s.revision = rev;
            s.compact_revision = compact;
            s.next_lease = next;
        }
        for (k, v) in storage.scan_prefix(HISTORY_PREFIX) {
            let rest = &k[HISTORY_PREFIX.len()..];
            let (Some(rev), Some(sub)) = (
                rest.get(..8).and_then(be_i64),
                rest.get(8..12)
                    .and_then(|b| b.try_into().ok())
                    .map(u32::from_be_bytes),
            ) else {
                return Err(corrupt("an etcd history key"));
            };
            let ev = mvccpb::Event::decode(v).map_err(|_| corrupt("an etcd event"))?;
            let key = ev.kv.as_ref().map(|kv| kv.key.clone()).unwrap_or_default();
            s.index.entry(key).or_default().push((rev, sub));
            s.history.insert((rev, sub), ev);
        }
        for (k, v) in storage.scan_prefix(LEASE_PREFIX) {
            let (Some(id), Some(ttl)) = (be_i64(&k[LEASE_PREFIX.len()..]), be_i64(v)) else {
                return Err(corrupt("an etcd lease"));
            };
            s.leases.insert(
                id,
                Lease {
                    ttl,
                    deadline_ms: deadline(now_ms, ttl),
                },
            );
        }
        Ok(s)
    }

    /// The current revision.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// The revision history is compacted up to.
    pub fn compact_revision(&self) -> i64 {
        self.compact_revision
    }

    fn kv_at(&self, key: &[u8], rev: i64) -> Option<&KeyValue> {
        let positions = self.index.get(key)?;
        let pos = positions.iter().rev().find(|p| p.0 <= rev)?;
        let ev = self.history.get(pos)?;
        (ev.r#type == EventType::Put as i32)
            .then_some(ev.kv.as_ref())
            .flatten()
    }

    fn live(&self, key: &[u8]) -> Option<&KeyValue> {
        self.kv_at(key, i64::MAX)
    }

    fn keys_in<'a>(&'a self, start: &'a [u8], end: &'a [u8]) -> impl Iterator<Item = &'a [u8]> {
        self.index
            .range(start.to_vec()..)
            .map(|(k, _)| k.as_slice())
            .take_while(move |k| in_range(k, start, end))
    }

    /// Range: keys in `[key, range_end)` at a revision.
    pub fn range(&self, req: &pb::RangeRequest) -> Result<pb::RangeResponse> {
        let rev = if req.revision <= 0 {
            self.revision
        } else {
            req.revision
        };
        if rev > self.revision {
            return Err(Error::FutureRevision);
        }
        if rev < self.compact_revision {
            return Err(Error::Compacted);
        }
        let mut kvs: Vec<KeyValue> = self
            .keys_in(&req.key, &req.range_end)
            .filter_map(|k| self.kv_at(k, rev))
            .filter(|kv| {
                (req.min_mod_revision == 0 || kv.mod_revision >= req.min_mod_revision)
                    && (req.max_mod_revision == 0 || kv.mod_revision <= req.max_mod_revision)
                    && (req.min_create_revision == 0
                        || kv.create_revision >= req.min_create_revision)
                    && (req.max_create_revision == 0
                        || kv.create_revision <= req.max_create_revision)
            })
            .cloned()
            .collect();
        let count = kvs.len() as i64;
        sort(&mut kvs, req.sort_order, req.sort_target);
        let mut more = false;
        if req.limit > 0 && kvs.len() as i64 > req.limit {
            kvs.truncate(req.limit as usize);
            more = true;
        }
        if req.count_only {
            kvs.clear();
        } else if req.keys_only {
            for kv in &mut kvs {
                kv.value.clear();
            }
        }
        Ok(pb::RangeResponse {
            header: None,
            kvs,
            more,
            count,
        })
    }

    /// Put one key.
    pub fn put(
        &mut self,
        storage: &mut Storage,
        req: &pb::PutRequest,
    ) -> Result<(pb::PutResponse, Written)> {
        self.write(storage, |s, b| s.stage_put(b, req))
    }

    /// Delete the keys in a range.
    pub fn delete_range(
        &mut self,
        storage: &mut Storage,
        req: &pb::DeleteRangeRequest,
    ) -> Result<(pb::DeleteRangeResponse, Written)> {
        self.write(storage, |s, b| s.stage_delete(b, req))
    }

    /// A transaction: the compares decide between the success and the
    /// failure ops, all applied at one revision.
    pub fn txn(
        &mut self,
        storage: &mut Storage,
        req: &pb::TxnRequest,
    ) -> Result<(pb::TxnResponse, Written)> {
        check_txn_keys(req)?;
        self.write(storage, |s, b| s.stage_txn(b, req))
    }

    /// Stages a request's changes, then writes them as one batch.
    fn write<R>(
        &mut self,
        storage: &mut Storage,
        stage: impl FnOnce(&Self, &mut Batch) -> Result<R>,
    ) -> Result<(R, Written)> {
        let mut b = Batch::default();
        let resp = stage(self, &mut b)?;
        let written = self.commit(storage, b)?;
        Ok((resp, written))
    }

    fn staged_kv(&self, b: &Batch, key: &[u8]) -> Option<KeyValue> {
        if let Some(ev) = b
            .events
            .iter()
            .rev()
            .find(|e| e.kv.as_ref().is_some_and(|kv| kv.key == key))
        {
            return (ev.r#type == EventType::Put as i32)
                .then(|| ev.kv.clone())
                .flatten();
        }
        self.live(key).cloned()
    }

    fn stage_put(&self, b: &mut Batch, req: &pb::PutRequest) -> Result<pb::PutResponse> {
        if req.key.is_empty() {
            return Err(Error::EmptyKey);
        }
        let prev = self.staged_kv(b, &req.key);
        if (req.ignore_value || req.ignore_lease) && prev.is_none() {
            return Err(Error::KeyNotFound);
        }
        let lease = if req.ignore_lease {
            prev.as_ref().map_or(0, |p| p.lease)
        } else {
            req.lease
        };
        if lease != 0 && !self.leases.contains_key(&lease) {
            return Err(Error::LeaseNotFound);
        }
        let rev = self.revision + 1;
        let kv = KeyValue {
            key: req.key.clone(),
            create_revision: prev.as_ref().map_or(rev, |p| p.create_revision),
            mod_revision: rev,
            version: prev.as_ref().map_or(1, |p| p.version + 1),
            value: if req.ignore_value {
                prev.as_ref().map(|p| p.value.clone()).unwrap_or_default()
            } else {
                req.value.clone()
            },
            lease,
        };
        b.events.push(mvccpb::Event {
            r#type: EventType::Put as i32,
            kv: Some(kv),
            prev_kv: prev.clone(),
        });
        Ok(pb::PutResponse {
            header: None,
            prev_kv: if req.prev_kv { prev } else { None },
        })
    }

    fn stage_delete(
        &self,
        b: &mut Batch,
        req: &pb::DeleteRangeRequest,
    ) -> Result<pb::DeleteRangeResponse> {
        if req.key.is_empty() {
            return Err(Error::EmptyKey);
        }
        let mut keys: Vec<Vec<u8>> = self
            .keys_in(&req.key, &req.range_end)
            .map(<[u8]>::to_vec)
            .collect();
        for e in &b.events {
            if let Some(kv) = &e.kv {
                if in_range(&kv.key, &req.key, &req.range_end) && !keys.contains(&kv.key) {
                    keys.push(kv.key.clone());
                }
            }
        }
        keys.sort();
        let mut prev_kvs = Vec::new();
        let rev = self.revision + 1;
        for key in keys {
            let Some(prev) = self.staged_kv(b, &key) else {
                continue;
            };
            b.events.push(mvccpb::Event {
                r#type: EventType::Delete as i32,
                kv: Some(KeyValue {
                    key,
                    mod_revision: rev,
                    ..Default::default()
                }),
                prev_kv: Some(prev.clone()),
            });
            prev_kvs.push(prev);
        }
        let deleted = prev_kvs.len() as i64;
        Ok(pb::DeleteRangeResponse {
            header: None,
            deleted,
            prev_kvs: if req.prev_kv { prev_kvs } else { Vec::new() },
        })
    }

    fn stage_txn(&self, b: &mut Batch, req: &pb::TxnRequest) -> Result<pb::TxnResponse> {
        use pb::request_op::Request as Rq;
        use pb::response_op::Response as Rs;
        let succeeded = req.compare.iter().all(|c| self.compare(b, c));
        let ops = if succeeded {
            &req.success
        } else {
            &req.failure
        };
        let mut responses = Vec::new();
        for op in ops {
            let r = match &op.request {
                Some(Rq::RequestRange(r)) => Rs::ResponseRange(self.staged_range(b, r)?),
                Some(Rq::RequestPut(r)) => Rs::ResponsePut(self.stage_put(b, r)?),
                Some(Rq::RequestDeleteRange(r)) => {
                    Rs::ResponseDeleteRange(self.stage_delete(b, r)?)
                }
                Some(Rq::RequestTxn(t)) => Rs::ResponseTxn(self.stage_txn(b, t)?),
                None => continue,
            };
            responses.push(pb::ResponseOp { response: Some(r) });
        }
        Ok(pb::TxnResponse {
            header: None,
            succeeded,
            responses,
        })
    }

    /// A range inside a transaction sees the transaction's earlier writes.
    fn staged_range(&self, b: &Batch, req: &pb::RangeRequest) -> Result<pb::RangeResponse> {
        if b.events.is_empty() || req.revision > 0 {
            return self.range(req);
        }
        let mut overlay = Store {
            revision: self.revision,
            compact_revision: self.compact_revision,
            ..Default::default()
        };
        let mut keys: Vec<Vec<u8>> = self
            .keys_in(&req.key, &req.range_end)
            .map(<[u8]>::to_vec)
            .collect();
        keys.extend(
            b.events
                .iter()
                .filter_map(|e| e.kv.as_ref())
                .filter(|kv| in_range(&kv.key, &req.key, &req.range_end))
                .map(|kv| kv.key.clone()),
        );
        keys.sort();
        keys.dedup();
        for (i, key) in keys.into_iter().enumerate() {
            if let Some(kv) = self.staged_kv(b, &key) {
                overlay.index.insert(key, vec![(0, i as u32)]);
                overlay.history.insert(
                    (0, i as u32),
                    mvccpb::Event {
                        r#type: EventType::Put as i32,
                        kv: Some(kv),
                        prev_kv: None,
                    },
                );
            }
        }
        overlay.range(&pb::RangeRequest {
            revision: 0,
            ..req.clone()
        })
    }

    fn compare(&self, b: &Batch, c: &pb::Compare) -> bool {
        use pb::compare::{CompareResult as R, CompareTarget as T, TargetUnion as U};
        let keys: Vec<Vec<u8>> = if c.range_end.is_empty() {
            vec![c.key.clone()]
        } else {
            self.keys_in(&c.key, &c.range_end)
                .map(<[u8]>::to_vec)
                .collect()
        };
        keys.iter().all(|key| {
            let kv = self.staged_kv(b, key);
            let ord = match (c.target(), &c.target_union) {
                (T::Value, Some(U::Value(v))) => match &kv {
                    Some(kv) => kv.value.as_slice().cmp(v.as_slice()),
                    // etcd: a value compare against a missing key is false.
                    None => return false,
                },
                (T::Version, Some(U::Version(v))) => kv.as_ref().map_or(0, |k| k.version).cmp(v),
                (T::Create, Some(U::CreateRevision(v))) => {
                    kv.as_ref().map_or(0, |k| k.create_revision).cmp(v)
                }
                (T::Mod, Some(U::ModRevision(v))) => {
                    kv.as_ref().map_or(0, |k| k.mod_revision).cmp(v)
                }
                (T::Lease, Some(U::Lease(v))) => kv.as_ref().map_or(0, |k| k.lease).cmp(v),
                // A target without its value compares against the zero value.
                (T::Version | T::Create | T::Mod | T::Lease, None) => {
                    let got = kv.as_ref().map_or(0, |k| match c.target() {
                        T::Version => k.version,
                        T::Create => k.create_revision,
                        T::Mod => k.mod_revision,
                        _ => k.lease,
                    });
                    got.cmp(&0)
                }
                _ => return false,
            };
            match c.result() {
                R::Equal => ord.is_eq(),
                R::NotEqual => ord.is_ne(),
                R::Greater => ord.is_gt(),
                R::Less => ord.is_lt(),
            }
        })
    }

    /// Writes the staged events at the next revision (nothing, and no new
    /// revision, if there are none).
    fn commit(&mut self, storage: &mut Storage, mut b: Batch) -> Result<Written> {
        if b.events.is_empty() {
            if !b.ops.is_empty() {
                b.ops.push(self.meta_op(self.revision));
                storage.write(b.ops)?;
            }
            return Ok(Written::default());
        }
        let rev = self.revision + 1;
        for (i, ev) in b.events.iter().enumerate() {
            let stored = mvccpb::Event {
                prev_kv: None,
                ..ev.clone()
            };
            b.ops
                .push((history_key((rev, i as u32)), Some(stored.encode_to_vec())));
        }
        b.ops.push(self.meta_op(rev));
        storage.write(b.ops)?;
        self.revision = rev;
        for (i, ev) in b.events.iter().enumerate() {
            let key = ev.kv.as_ref().map(|kv| kv.key.clone()).unwrap_or_default();
            self.index.entry(key).or_default().push((rev, i as u32));
            self.history.insert(
                (rev, i as u32),
                mvccpb::Event {
                    prev_kv: None,
                    ..ev.clone()
                },
            );
        }
        Ok(Written { events: b.events })
    }

    fn meta_op(&self, rev: i64) -> Op {
        let mut v = rev.to_be_bytes().to_vec();
        v.extend_from_slice(&self.compact_revision.to_be_bytes());
        v.extend_from_slice(&self.next_lease.to_be_bytes());
        (META_KEY.to_vec(), Some(v))
    }

    /// Compacts the history up to `rev`.
    pub fn compact(&mut self, storage: &mut Storage, rev: i64) -> Result<()> {
        if rev <= self.compact_revision {
            return Err(Error::Compacted);
        }
        if rev > self.revision {
            return Err(Error::FutureRevision);
        }
        let mut drop: Vec<Pos> = Vec::new();
        for positions in self.index.values() {
            let upto: Vec<Pos> = positions.iter().copied().filter(|p| p.0 <= rev).collect();
            let Some(last) = upto.last() else { continue };
            let keep_last = self
                .history
                .get(last)
                .is_some_and(|e| e.r#type == EventType::Put as i32);
            let n = if keep_last {
                upto.len() - 1
            } else {
                upto.len()
            };
            drop.extend_from_slice(&upto[..n]);
        }
        let old = self.compact_revision;
        self.compact_revision = rev;
        let mut ops: Vec<Op> = drop.iter().map(|p| (history_key(*p), None)).collect();
        ops.push(self.meta_op(self.revision));
        if let Err(e) = storage.write(ops) {
            self.compact_revision = old;
            return Err(e.into());
        }
        for p in &drop {
            if let Some(ev) = self.history.remove(p) {
                let key = ev.kv.map(|kv| kv.key).unwrap_or_default();
                if let Some(v) = self.index.get_mut(&key) {
                    v.retain(|x| x != p);
                    if v.is_empty() {
                        self.index.remove(&key);
                    }
                }
            }
        }
        Ok(())
    }

    /// The events at revisions `>= from` matching a key range, each with
    /// the key's previous version when `prev_kv`.
    pub fn history_since(
        &self,
        from: i64,
        start: &[u8],
        end: &[u8],
        prev_kv: bool,
    ) -> Result<Vec<mvccpb::Event>> {
        if from < self.compact_revision {
            return Err(Error::Compacted);
        }
        Ok(self
            .history
            .range((from, 0)..)
            .filter(|(_, e)| {
                e.kv.as_ref()
                    .is_some_and(|kv| in_range(&kv.key, start, end))
            })
            .map(|(pos, e)| {
                let mut e = e.clone();
                if prev_kv {
                    e.prev_kv = self.prev_of(&e, *pos);
                }
                e
            })
            .collect())
    }

    /// The version of an event's key just before it.
    pub fn prev_of(&self, e: &mvccpb::Event, pos: Pos) -> Option<KeyValue> {
        let key = &e.kv.as_ref()?.key;
        let positions = self.index.get(key)?;
        let before = positions.iter().rev().find(|p| **p < pos)?;
        let ev = self.history.get(before)?;
        (ev.r#type == EventType::Put as i32)
            .then(|| ev.kv.clone())
            .flatten()
    }

    /// Grants a lease (`id` 0: the store picks one).
    pub fn lease_grant(
        &mut self,
        storage: &mut Storage,
        id: i64,
        ttl: i64,
        now_ms: u64,
    ) -> Result<(i64, i64)> {
        if id < 0 {
            return Err(Error::LeaseNotFound);
        }
        let ttl = ttl.max(MIN_TTL_SECS);
        let old_next = self.next_lease;
        let id = if id == 0 {
            while self.leases.contains_key(&self.next_lease) {
                self.next_lease += 1;
            }
            let id = self.next_lease;
            self.next_lease += 1;
            id
        } else if self.leases.contains_key(&id) {
            return Err(Error::LeaseExists);
        } else {
            id
        };
        let ops = vec![
            (lease_key(id), Some(ttl.to_be_bytes().to_vec())),
            self.meta_op(self.revision),
        ];
        if let Err(e) = storage.write(ops) {
            self.next_lease = old_next;
            return Err(e.into());
        }
        self.leases.insert(
            id,
            Lease {
                ttl,
                deadline_ms: deadline(now_ms, ttl),
            },
        );
        Ok((id, ttl))
    }

    /// Revokes a lease: its keys are deleted at one new revision.
    pub fn lease_revoke(&mut self, storage: &mut Storage, id: i64) -> Result<Written> {
        if !self.leases.contains_key(&id) {
            return Err(Error::LeaseNotFound);
        }
        let mut b = Batch::default();
        let rev = self.revision + 1;
        for key in self.lease_keys(id) {
            let prev = self.live(&key).cloned();
            b.events.push(mvccpb::Event {
                r#type: EventType::Delete as i32,
                kv: Some(KeyValue {
                    key,
                    mod_revision: rev,
                    ..Default::default()
                }),
                prev_kv: prev,
            });
        }
        b.ops.push((lease_key(id), None));
        let written = self.commit(storage, b)?;
        self.leases.remove(&id);
        Ok(written)
    }

    /// The live keys attached to a lease, in key order.
    pub fn lease_keys(&self, id: i64) -> Vec<Vec<u8>> {
        self.index
            .keys()
            .filter(|k| self.live(k).is_some_and(|kv| kv.lease == id))
            .cloned()
            .collect()
    }

    /// Renews a lease; returns its TTL.
    pub fn lease_keep_alive(&mut self, id: i64, now_ms: u64) -> Result<i64> {
        let l = self.leases.get_mut(&id).ok_or(Error::LeaseNotFound)?;
        if l.deadline_ms <= now_ms {
            return Err(Error::LeaseNotFound);
        }
        l.deadline_ms = deadline(now_ms, l.ttl);
        Ok(l.ttl)
    }

    /// (remaining seconds, granted TTL) of a lease.
    pub fn lease_time_to_live(&self, id: i64, now_ms: u64) -> Result<(i64, i64)> {
        let l = self.leases.get(&id).ok_or(Error::LeaseNotFound)?;
        let left_ms = l.deadline_ms.saturating_sub(now_ms);
        Ok((left_ms.div_ceil(1000) as i64, l.ttl))
    }

    /// All lease ids.
    pub fn leases(&self) -> Vec<i64> {
        self.leases.keys().copied().collect()
    }

    /// Leases whose deadline has passed (the leader revokes them).
    pub fn expired_leases(&self, now_ms: u64) -> Vec<i64> {
        self.leases
            .iter()
            .filter(|(_, l)| l.deadline_ms <= now_ms)
            .map(|(id, _)| *id)
            .collect()
    }
}

fn deadline(now_ms: u64, ttl: i64) -> u64 {
    now_ms.saturating_add(u64::try_from(ttl).unwrap_or(0).saturating_mul(1000))
}

fn corrupt(what: &str) -> Error {
    Error::Pd(crate::Error::Corrupt(format!("cannot decode {what}")))
}

fn sort(kvs: &mut [KeyValue], order: i32, target: i32) {
    use pb::range_request::{SortOrder as O, SortTarget as T};
    let order = O::try_from(order).unwrap_or(O::None);
    let target = T::try_from(target).unwrap_or(T::Key);
    if order == O::None {
        return;
    }
    kvs.sort_by(|a, b| match target {
        T::Key => a.key.cmp(&b.key),
        T::Version => a.version.cmp(&b.version),
        T::Create => a.create_revision.cmp(&b.create_revision),
        T::Mod => a.mod_revision.cmp(&b.mod_revision),
        T::Value => a.value.cmp(&b.value),
    });
    if order == O::Descend {
        kvs.reverse();
    }
}

/// etcd refuses a transaction that writes one key twice in a branch.
fn check_txn_keys(req: &pb::TxnRequest) -> Result<()> {
    use pb::request_op::Request as Rq;
    for ops in [&req.success, &req.failure] {
        let mut puts: HashMap<&[u8], ()> = HashMap::new();
        for op in ops {
            if let Some(Rq::RequestPut(p)) = &op.request {
                if puts.insert(p.key.as_slice(), ()).is_some() {
                    return Err(Error::DuplicateKey);
                }
            }
            if let Some(Rq::RequestTxn(t)) = &op.request {
                check_txn_keys(t)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(s: &mut Store, st: &mut Storage, k: &str, v: &str) -> i64 {
        s.put(
            st,
            &pb::PutRequest {
                key: k.into(),
                value: v.into(),
                ..Default::default()
            },
        )
        .unwrap();
        s.revision()
    }

    fn get(s: &Store, k: &str, end: &str, rev: i64) -> Vec<(String, String)> {
        s.range(&pb::RangeRequest {
            key: k.into(),
            range_end: end.into(),
            revision: rev,
            ..Default::default()
        })
        .unwrap()
        .kvs
        .into_iter()
        .map(|kv| {
            (
                String::from_utf8(kv.key).unwrap(),
                String::from_utf8(kv.value).unwrap(),
            )
        })
        .collect()
    }

    fn kv(k: &str, v: &str) -> (String, String) {
        (k.into(), v.into())
    }

    #[test]
    fn put_bumps_revision_and_version_keeps_create_revision() {
        let mut st = Storage::in_memory();
        let mut s = Store::load(&st, 0).unwrap();
        assert_eq!(put(&mut s, &mut st, "a", "1"), 1);
        assert_eq!(put(&mut s, &mut st, "a", "2"), 2);
        let r = s
            .range(&pb::RangeRequest {
                key: "a".into(),
                ..Default::default()
            })
            .unwrap();
        let kv = &r.kvs[0];
        assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (1, 2, 2));
    }

    #[test]
    fn prefix_range_with_limit_reports_more_and_full_count() {
        let mut st = Storage::in_memory();
        let mut s = Store::load(&st, 0).unwrap();
        for k in ["p/a", "p/b", "p/c", "q"] {
            put(&mut s, &mut st, k, "v");
        }
        let r = s
            .range(&pb::RangeRequest {
                key: "p/".into(),
                range_end: "p0".into(),
                limit: 2,
                ..Default::default()
            })
            .unwrap();
        assert_eq!((r.kvs.len(), r.more, r.count), (2, true, 3));
        let all = get(&s, "\0", "\0", 0);
        assert_eq!(all.len(), 4);
        let c = s
            .range(&pb::RangeRequest {
                key: "p/".into(),
                range_end: "p0".into(),
                count_only: true,
                ..Default::default()
            })
            .unwrap();
        assert_eq!((c.kvs.len(), c.count), (0, 3));
    }

    #[test]
    fn read_at_an_old_revision_sees_the_old_value_and_not_later_keys() {
        let mut st = Storage::in_memory();
        let mut s = Store::load(&st, 0).unwrap();
        let r1 = put(&mut s, &mut st, "a", "1");
        put(&mut s, &mut st, "a", "2");
        put(&mut s, &mut st, "b", "1");
        assert_eq!(get(&s, "a", "c", r1), vec![kv("a", "1")]);
        assert!(matches!(
            s.range(&pb::RangeRequest {
                key: "a".into(),
                revision: 99,
                ..Default::default()
            }),
            Err(Error::FutureRevision)
        ));
    }

    #[test]
    fn delete_range_returns_prev_kvs_and_resets_version() {
        let mut st = Storage::in_memory();
        let mut s = Store::load(&st, 0).unwrap();
        put(&mut s, &mut st, "a", "1");
        put(&mut s, &mut st, "b", "2");
        let (r, w) = s
            .delete_range(
                &mut st,
                &pb::DeleteRangeRequest {
                    key: "a".into(),
                    range_end: "c".into(),
                    prev_kv: true,
                },
            )
            .unwrap();
        assert_eq!(r.deleted, 2);
        assert_eq!(r.prev_kvs.len(), 2);
        assert_eq!(w.events.len(), 2);
        assert_eq!(s.revision(), 3);
        put(&mut s, &mut st, "a", "3");
        let a = s
            .range(&pb::RangeRequest {
                key: "a".into(),
                ..Default::default()
            })
            .unwrap();
        assert_eq!((a.kvs[0].version, a.kvs[0].create_revision), (1, 4));
    }

    #[test]
    fn deleting_nothing_does_not_bump_the_revision() {
        let mut st = Storage::in_memory();
        let mut s = Store::load(&st, 0).unwrap();
        let (r, _) = s
            .delete_range(
                &mut st,
                &pb::DeleteRangeRequest {
                    key: "x".into(),
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!((r.deleted, s.revision()), (0, 0));
    }

    fn cmp_create_zero(key: &str) -> pb::Compare {
        pb::Compare {
            result: pb::compare::CompareResult::Equal as i32,
            target: pb::compare::CompareTarget::Create as i32,
            key: key.into(),
            target_union: Some(pb::compare::TargetUnion::CreateRevision(0)),
            range_end: Vec::new(),
        }
    }

    fn put_op(k: &str, v: &str) -> pb::RequestOp {
        pb::RequestOp {
            request: Some(pb::request_op::Request::RequestPut(pb::PutRequest {
                key: k.into(),
                value: v.into(),
                ..Default::default()
            })),
        }
    }

    #[test]
    fn txn_create_if_absent_succeeds_once() {
        let mut st = Storage::in_memory();
        let mut s = Store::load(&st, 0).unwrap();
        let req = pb::TxnRequest {
            compare: vec![cmp_create_zero("lock")],
            success: vec![put_op("lock", "me"), put_op("owner", "me")],
            failure: vec![pb::RequestOp {
                request: Some(pb::request_op::Request::RequestRange(pb::RangeRequest {
                    key: "lock".into(),
                    ..Default::default()
                })),
            }],
        };
        let (r, w) = s.txn(&mut st, &req).unwrap();
        assert!(r.succeeded);
        assert_eq!(w.events.len(), 2);
        assert_eq!(s.revision(), 1, "one txn, one revision");
        let (r, w) = s.txn(&mut st, &req).unwrap();
        assert!(!r.succeeded);
        assert!(w.events.is_empty());
        assert_eq!(s.revision(), 1);
    }

    #[test]
    fn txn_compares_value_and_mod_revision() {
        let mut st = Storage::in_memory();
        let mut s = Store::load(&st, 0).unwrap();
        let rev = put(&mut s, &mut st, "k", "v1");
        let cas = |value: &str, mod_rev: i64| pb::TxnRequest {
            compare: vec![
                pb::Compare {
                    result: pb::compare::CompareResult::Equal as i32,
                    target: pb::compare::CompareTarget::Value as i32,
                    key: "k".into(),
                    target_union: Some(pb::compare::TargetUnion::Value(value.into())),
                    range_end: Vec::new(),
                },
                pb::Compare {
                    result: pb::compare::CompareResult::Equal as i32,
                    target: pb::compare::CompareTarget::Mod as i32,
                    key: "k".into(),
                    target_union: Some(pb::compare::TargetUnion::ModRevision(mod_rev)),
                    range_end: Vec::new(),
                },
            ],
            success: vec![put_op("k", "v2")],
            failure: vec![],
        };
        assert!(!s.txn(&mut st, &cas("other", rev)).unwrap().0.succeeded);
        assert!(!s.txn(&mut st, &cas("v1", rev + 5)).unwrap().0.succeeded);
        assert!(s.txn(&mut st, &cas("v1", rev)).unwrap().0.succeeded);
        assert_eq!(get(&s, "k", "", 0), vec![kv("k", "v2")]);
    }

    #[test]
    fn txn_range_sees_the_txns_own_put() {
        let mut st = Storage::in_memory();
        let mut s = Store::load(&st, 0).unwrap();
        let req = pb::TxnRequest {
            compare: vec![],
            success: vec![
                put_op("a", "1"),
                pb::RequestOp {
                    request: Some(pb::request_op::Request::RequestRange(pb::RangeRequest {
                        key: "a".into(),
                        ..Default::default()
                    })),
                },
            ],
            failure: vec![],
        };
        let (r, _) = s.txn(&mut st, &req).unwrap();
        let Some(pb::response_op::Response::ResponseRange(rr)) = &r.responses[1].response else {
            panic!("{r:?}")
        };
        assert_eq!(rr.kvs[0].value, b"1");
    }

    #[test]
    fn txn_writing_one_key_twice_is_refused() {
        let mut st = Storage::in_memory();
        let mut s = Store::load(&st, 0).unwrap();
        let req = pb::TxnRequest {
            compare: vec![],
            success: vec![put_op("a", "1"), put_op("a", "2")],
            failure: vec![],
        };
        assert!(matches!(s.txn(&mut st, &req), Err(Error::DuplicateKey)));
    }

    #[test]
    fn compaction_keeps_the_newest_version_and_refuses_older_reads() {
        let mut st = Storage::in_memory();
        let mut s = Store::load(&st, 0).unwrap();
        put(&mut s, &mut st, "a", "1");
        let r2 = put(&mut s, &mut st, "a", "2");
        put(&mut s, &mut st, "b", "1");
        s.delete_range(
            &mut st,
            &pb::DeleteRangeRequest {
                key: "b".into(),
                ..Default::default()
            },
        )
        .unwrap();
        let r4 = s.revision();
        s.compact(&mut st, r4).unwrap();
        assert_eq!(get(&s, "a", "z", 0), vec![kv("a", "2")]);
        assert_eq!(get(&s, "a", "z", r4), vec![kv("a", "2")]);
        assert!(matches!(
            s.range(&pb::RangeRequest {
                key: "a".into(),
                revision: r2,
                ..Default::default()
            }),
            Err(Error::Compacted)
        ));
        assert!(matches!(s.compact(&mut st, r2), Err(Error::Compacted)));
        assert!(matches!(
            s.history_since(1, b"a", b"", false),
            Err(Error::Compacted)
        ));
    }

    #[test]
    fn state_survives_reload_from_storage() {
        let mut st = Storage::in_memory();
        let mut s = Store::load(&st, 0).unwrap();
        put(&mut s, &mut st, "a", "1");
        let (id, _) = s.lease_grant(&mut st, 0, 30, 0).unwrap();
        s.put(
            &mut st,
            &pb::PutRequest {
                key: "leased".into(),
                value: "x".into(),
                lease: id,
                ..Default::default()
            },
        )
        .unwrap();
        s.compact(&mut st, 1).unwrap();
        let again = Store::load(&st, 10_000).unwrap();
        assert_eq!(again.revision(), 2);
        assert_eq!(again.compact_revision(), 1);
        assert_eq!(again.leases(), vec![id]);
        assert_eq!(again.lease_keys(id), vec![b"leased".to_vec()]);
        // The TTL starts over on load (a new leader refreshes leases).
        assert_eq!(again.lease_time_to_live(id, 10_000).unwrap(), (30, 30));
        assert_eq!(get(&again, "a", "", 0), vec![kv("a", "1")]);
    }

    #[test]
    fn lease_revoke_deletes_its_keys_at_one_revision() {
        let mut st = Storage::in_memory();
        let mut s = Store::load(&st, 0).unwrap();
        let (id, ttl) = s.lease_grant(&mut st, 0, 1, 0).unwrap();
        assert_eq!(ttl, MIN_TTL_SECS);
        for k in ["x", "y"] {
            s.put(
                &mut st,
                &pb::PutRequest {
                    key: k.into(),
                    lease: id,
                    ..Default::default()
                },
            )
            .unwrap();
        }
        let w = s.lease_revoke(&mut st, id).unwrap();
        assert_eq!(w.events.len(), 2);
        assert_eq!(s.revision(), 3);
        assert!(get(&s, "\0", "\0", 0).is_empty());
        assert!(matches!(
            s.lease_revoke(&mut st, id),
            Err(Error::LeaseNotFound)
        ));
    }

    #[test]
    fn put_with_an_unknown_lease_is_refused() {
        let mut st = Storage::in_memory();
        let mut s = Store::load(&st, 0).unwrap();
        let r = s.put(
            &mut st,
            &pb::PutRequest {
                key: "k".into(),
                lease: 12345,
                ..Default::default()
            },
        );
        assert!(matches!(r, Err(Error::LeaseNotFound)));
    }

    #[test]
    fn leases_expire_unless_kept_alive() {
        let mut st = Storage::in_memory();
        let mut s = Store::load(&st, 0).unwrap();
        let (a, _) = s.lease_grant(&mut st, 0, 5, 0).unwrap();
        let (b, _) = s.lease_grant(&mut st, 77, 5, 0).unwrap();
        assert_eq!(b, 77);
        assert!(matches!(
            s.lease_grant(&mut st, 77, 5, 0),
            Err(Error::LeaseExists)
        ));
        assert_eq!(s.lease_keep_alive(b, 4_000).unwrap(), 5);
        assert_eq!(s.expired_leases(6_000), vec![a]);
        assert!(s.expired_leases(8_999).len() == 1);
        assert_eq!(s.expired_leases(9_000), vec![b, a], "in id order");
    }

    #[test]
    fn history_since_gives_events_with_prev_kv() {
        let mut st = Storage::in_memory();
        let mut s = Store::load(&st, 0).unwrap();
        put(&mut s, &mut st, "w/a", "1");
        let from = put(&mut s, &mut st, "w/a", "2");
        put(&mut s, &mut st, "other", "x");
        let evs = s.history_since(from, b"w/", b"w0", true).unwrap();
        assert_eq!(evs.len(), 1);
        assert_eq!(evs[0].prev_kv.as_ref().unwrap().value, b"1");
    }
}
