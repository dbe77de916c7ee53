//! Replicated write commands and their execution at apply time.
//!
//! A write request from the gRPC layer becomes a [`Command`] (the kvrpcpb
//! request itself, in a prost oneof, plus the proposer's clock), is proposed
//! to the region's Raft group, and is executed by [`execute`] when applied —
//! on every replica, in log order, against the engine state that all earlier
//! entries produced. Execution is deterministic: the same log gives the same
//! state and the same responses everywhere, and no latches are needed.

use tiox_engine::{Snapshot, WriteBatch};
use tiox_proto::{kvrpcpb, metapb};

use crate::codec::decode_bytes;
use crate::error::Error;
use crate::mvcc::txn::{Mutation, MvccTxn, Op, PrewriteParams, SecondaryStatus, TxnStatus};
use crate::mvcc::{LockInfo, LockType};
use crate::raw;

/// A command in a Raft log entry.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Command {
    /// The proposer's wall clock (ms), for raw TTL and CAS expiry.
    #[prost(uint64, tag = "1")]
    pub now_ms: u64,
    /// The request.
    #[prost(
        oneof = "Cmd",
        tags = "2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 20, 21, 22, 23, 24, 25"
    )]
    pub cmd: Option<Cmd>,
    /// The region's epoch version when the command was proposed (0: not
    /// checked). At apply, a command proposed before a split that has
    /// since applied is refused with EpochNotMatch on every replica, so no
    /// region ever writes outside its range.
    #[prost(uint64, tag = "30")]
    pub version: u64,
    /// A region split (an admin command; `cmd` is empty).
    #[prost(message, optional, tag = "31")]
    pub split: Option<crate::raftstore::split::BatchSplit>,
    /// A prewrite with `try_one_pc` that the leader allowed to commit in
    /// one phase: the leader's max read timestamp after it registered the
    /// keys (`mvcc::concurrency`). Absent: an ordinary prewrite.
    #[prost(uint64, optional, tag = "32")]
    pub one_pc_max_ts: Option<u64>,
}

/// The requests that change state.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Cmd {
    /// KvPrewrite.
    #[prost(message, tag = "2")]
    Prewrite(kvrpcpb::PrewriteRequest),
    /// KvCommit.
    #[prost(message, tag = "3")]
    Commit(kvrpcpb::CommitRequest),
    /// KvBatchRollback.
    #[prost(message, tag = "4")]
    BatchRollback(kvrpcpb::BatchRollbackRequest),
    /// KvCleanup.
    #[prost(message, tag = "5")]
    Cleanup(kvrpcpb::CleanupRequest),
    /// KvCheckTxnStatus.
    #[prost(message, tag = "6")]
    CheckTxnStatus(kvrpcpb::CheckTxnStatusRequest),
    /// KvCheckSecondaryLocks.
    #[prost(message, tag = "7")]
    CheckSecondaryLocks(kvrpcpb::CheckSecondaryLocksRequest),
    /// KvResolveLock.
    #[prost(message, tag = "8")]
    ResolveLock(kvrpcpb::ResolveLockRequest),
    /// KvTxnHeartBeat.
    #[prost(message, tag = "9")]
    TxnHeartBeat(kvrpcpb::TxnHeartBeatRequest),
    /// KvPessimisticLock.
    #[prost(message, tag = "10")]
    PessimisticLock(kvrpcpb::PessimisticLockRequest),
    /// KvPessimisticRollback.
    #[prost(message, tag = "11")]
    PessimisticRollback(kvrpcpb::PessimisticRollbackRequest),
    /// KvGC.
    #[prost(message, tag = "12")]
    Gc(kvrpcpb::GcRequest),
    /// KvDeleteRange.
    #[prost(message, tag = "13")]
    DeleteRange(kvrpcpb::DeleteRangeRequest),
    /// RawPut.
    #[prost(message, tag = "20")]
    RawPut(kvrpcpb::RawPutRequest),
    /// RawBatchPut.
    #[prost(message, tag = "21")]
    RawBatchPut(kvrpcpb::RawBatchPutRequest),
    /// RawDelete.
    #[prost(message, tag = "22")]
    RawDelete(kvrpcpb::RawDeleteRequest),
    /// RawBatchDelete.
    #[prost(message, tag = "23")]
    RawBatchDelete(kvrpcpb::RawBatchDeleteRequest),
    /// RawDeleteRange.
    #[prost(message, tag = "24")]
    RawDeleteRange(kvrpcpb::RawDeleteRangeRequest),
    /// RawCompareAndSwap.
    #[prost(message, tag = "25")]
    RawCas(kvrpcpb::RawCasRequest),
}

/// The response of an applied command.
#[derive(Clone, Debug, PartialEq)]
pub enum Response {
    /// KvPrewrite.
    Prewrite(kvrpcpb::PrewriteResponse),
    /// KvCommit.
    Commit(kvrpcpb::CommitResponse),
    /// KvBatchRollback.
    BatchRollback(kvrpcpb::BatchRollbackResponse),
    /// KvCleanup.
    Cleanup(kvrpcpb::CleanupResponse),
    /// KvCheckTxnStatus.
    CheckTxnStatus(kvrpcpb::CheckTxnStatusResponse),
    /// KvCheckSecondaryLocks.
    CheckSecondaryLocks(kvrpcpb::CheckSecondaryLocksResponse),
    /// KvResolveLock.
    ResolveLock(kvrpcpb::ResolveLockResponse),
    /// KvTxnHeartBeat.
    TxnHeartBeat(kvrpcpb::TxnHeartBeatResponse),
    /// KvPessimisticLock.
    PessimisticLock(kvrpcpb::PessimisticLockResponse),
    /// KvPessimisticRollback.
    PessimisticRollback(kvrpcpb::PessimisticRollbackResponse),
    /// KvGC.
    Gc(kvrpcpb::GcResponse),
    /// KvDeleteRange.
    DeleteRange(kvrpcpb::DeleteRangeResponse),
    /// RawPut.
    RawPut(kvrpcpb::RawPutResponse),
    /// RawBatchPut.
    RawBatchPut(kvrpcpb::RawBatchPutResponse),
    /// RawDelete.
    RawDelete(kvrpcpb::RawDeleteResponse),
    /// RawBatchDelete.
    RawBatchDelete(kvrpcpb::RawBatchDeleteResponse),
    /// RawDeleteRange.
    RawDeleteRange(kvrpcpb::RawDeleteRangeResponse),
    /// RawCompareAndSwap.
    RawCas(kvrpcpb::RawCasResponse),
    /// A split: the parent and the new regions, in key order.
    Split(Vec<metapb::Region>),
}

/// The kvproto form of a lock.
pub fn lock_info_pb(l: &LockInfo) -> kvrpcpb::LockInfo {
    kvrpcpb::LockInfo {
        primary_lock: l.primary_lock.clone(),
        lock_version: l.lock_version,
        key: l.key.clone(),
        lock_ttl: l.lock_ttl,
        txn_size: l.txn_size,
        lock_type: match l.lock_type {
            LockType::Put => kvrpcpb::Op::Put,
            LockType::Delete => kvrpcpb::Op::Del,
            LockType::Lock => kvrpcpb::Op::Lock,
            LockType::Pessimistic => kvrpcpb::Op::PessimisticLock,
        } as i32,
        lock_for_update_ts: l.lock_for_update_ts,
        use_async_commit: l.use_async_commit,
        min_commit_ts: l.min_commit_ts,
        secondaries: l.secondaries.clone(),
        ..Default::default()
    }
}

/// The kvproto form of a transaction error.
pub fn key_error(e: &Error) -> kvrpcpb::KeyError {
    let mut ke = kvrpcpb::KeyError::default();
    match e {
        Error::KeyIsLocked(l) => ke.locked = Some(lock_info_pb(l)),
        Error::WriteConflict {
            start_ts,
            conflict_start_ts,
            conflict_commit_ts,
            key,
            primary,
        } => {
            ke.conflict = Some(kvrpcpb::WriteConflict {
                start_ts: *start_ts,
                conflict_ts: *conflict_start_ts,
                conflict_commit_ts: *conflict_commit_ts,
                key: key.clone(),
                primary: primary.clone(),
                reason: 0,
            });
        }
        Error::AlreadyExist { key } => {
            ke.already_exist = Some(kvrpcpb::AlreadyExist { key: key.clone() })
        }
        Error::TxnNotFound {
            start_ts,
            primary_key,
        } => {
            ke.txn_not_found = Some(kvrpcpb::TxnNotFound {
                start_ts: *start_ts,
                primary_key: primary_key.clone(),
            });
        }
        Error::CommitTsExpired {
            start_ts,
            commit_ts,
            key,
            min_commit_ts,
        } => {
            ke.commit_ts_expired = Some(kvrpcpb::CommitTsExpired {
                start_ts: *start_ts,
                attempted_commit_ts: *commit_ts,
                key: key.clone(),
                min_commit_ts: *min_commit_ts,
            });
        }
        Error::TxnLockNotFound { .. } | Error::PessimisticLockNotFound { .. } => {
            ke.retryable = e.to_string()
        }
        other => ke.abort = other.to_string(),
    }
    ke
}

/// Decodes a region boundary (memcomparable for transactional data) to a
/// user key; an empty boundary is unbounded.
pub fn region_user_bound(b: &[u8]) -> Option<Vec<u8>> {
    if b.is_empty() {
        return None;
    }
    Some(match decode_bytes(b) {
        Ok((k, _)) => k,
        Err(_) => b.to_vec(),
    })
}

fn mutations(req: &kvrpcpb::PrewriteRequest) -> Result<Vec<Mutation>, Error> {
    let mut out = Vec::with_capacity(req.mutations.len());
    for (i, m) in req.mutations.iter().enumerate() {
        let op = match kvrpcpb::Op::try_from(m.op) {
            Ok(kvrpcpb::Op::Put) => Op::Put(m.value.clone()),
            Ok(kvrpcpb::Op::Del) => Op::Delete,
            Ok(kvrpcpb::Op::Lock) => Op::Lock,
            Ok(kvrpcpb::Op::Insert) => Op::Insert(m.value.clone()),
            Ok(kvrpcpb::Op::CheckNotExists) => Op::CheckNotExists,
            _ => {
                return Err(Error::InvalidRequest(format!(
                    "mutation op {} is not valid in a prewrite",
                    m.op
                )))
            }
        };
        let action = req.pessimistic_actions.get(i).copied().unwrap_or(0);
        out.push(Mutation {
            key: m.key.clone(),
            op,
            expect_pessimistic_lock: req.for_update_ts > 0
                && action
                    == kvrpcpb::prewrite_request::PessimisticAction::DoPessimisticCheck as i32,
        });
    }
    Ok(out)
}

/// Executes a command against `snap` within `region`; returns the response
/// and the batch to write (empty when the command failed).
pub fn execute<S: Snapshot + ?Sized>(
    cmd: &Command,
    snap: &S,
    region: &metapb::Region,
) -> (Response, WriteBatch) {
    let mut txn = MvccTxn::new(snap);
    let start = region_user_bound(&region.start_key).unwrap_or_default();
    let end = region_user_bound(&region.end_key);
    let Some(c) = &cmd.cmd else {
        return (
            Response::RawPut(kvrpcpb::RawPutResponse {
                error: "empty command".into(),
                ..Default::default()
            }),
            WriteBatch::default(),
        );
    };
    let resp = match c {
        Cmd::Prewrite(req) => {
            let mut resp = kvrpcpb::PrewriteResponse::default();
            match mutations(req) {
                Err(e) => resp.errors.push(key_error(&e)),
                Ok(ms) => {
                    let params = PrewriteParams {
                        primary: req.primary_lock.clone(),
                        start_ts: req.start_version,
                        lock_ttl: req.lock_ttl,
                        txn_size: req.txn_size,
                        for_update_ts: req.for_update_ts,
                        min_commit_ts: req.min_commit_ts,
                        // Async commit is not offered: the client sees
                        // min_commit_ts = 0 and commits in two phases.
                        use_async_commit: false,
                        secondaries: Vec::new(),
                        max_read_ts: 0,
                        one_pc: cmd.one_pc_max_ts.filter(|_| req.try_one_pc),
                        max_commit_ts: req.max_commit_ts,
                    };
                    match txn.prewrite(&params, &ms) {
                        Ok(done) => resp.one_pc_commit_ts = done.one_pc_commit_ts,
                        Err(errs) => resp.errors = errs.iter().map(key_error).collect(),
                    }
                }
            }
            Response::Prewrite(resp)
        }
        Cmd::Commit(req) => {
            let mut resp = kvrpcpb::CommitResponse::default();
            match txn.commit(&req.keys, req.start_version, req.commit_version) {
                Ok(()) => resp.commit_version = req.commit_version,
                Err(e) => resp.error = Some(key_error(&e)),
            }
            Response::Commit(resp)
        }
        Cmd::BatchRollback(req) => Response::BatchRollback(kvrpcpb::BatchRollbackResponse {
            error: txn
                .rollback(&req.keys, req.start_version)
                .err()
                .map(|e| key_error(&e)),
            ..Default::default()
        }),
        Cmd::Cleanup(req) => {
            let mut resp = kvrpcpb::CleanupResponse::default();
            match txn.cleanup(&req.key, req.start_version, req.current_ts) {
                Ok(0) => {}
                Ok(commit_ts) => {
                    resp.commit_version = commit_ts;
                    resp.error = Some(kvrpcpb::KeyError {
                        abort: format!(
                            "transaction {} is committed at {commit_ts}",
                            req.start_version
                        ),
                        ..Default::default()
                    });
                }
                Err(e) => resp.error = Some(key_error(&e)),
            }
            Response::Cleanup(resp)
        }
        Cmd::CheckTxnStatus(req) => {
            let mut resp = kvrpcpb::CheckTxnStatusResponse::default();
            match txn.check_txn_status(
                &req.primary_key,
                req.lock_ts,
                req.caller_start_ts,
                req.current_ts,
                req.rollback_if_not_exist,
                req.force_sync_commit,
                req.resolving_pessimistic_lock,
            ) {
                Ok(TxnStatus::Locked {
                    ttl,
                    lock,
                    min_commit_ts_pushed,
                }) => {
                    resp.lock_ttl = ttl;
                    resp.lock_info = Some(lock_info_pb(&lock));
                    if min_commit_ts_pushed {
                        resp.action = kvrpcpb::Action::MinCommitTsPushed as i32;
                    }
                }
                Ok(TxnStatus::Committed(ts)) => resp.commit_version = ts,
                Ok(TxnStatus::RolledBack) => {}
                Ok(TxnStatus::TtlExpireRollback) => {
                    resp.action = kvrpcpb::Action::TtlExpireRollback as i32
                }
                Ok(TxnStatus::TtlExpirePessimisticRollback) => {
                    resp.action = kvrpcpb::Action::TtlExpirePessimisticRollback as i32;
                }
                Ok(TxnStatus::LockNotExistRollback) => {
                    resp.action = kvrpcpb::Action::LockNotExistRollback as i32
                }
                Err(e) => resp.error = Some(key_error(&e)),
            }
            Response::CheckTxnStatus(resp)
        }
        Cmd::CheckSecondaryLocks(req) => {
            let mut resp = kvrpcpb::CheckSecondaryLocksResponse::default();
            match txn.check_secondary_locks(&req.keys, req.start_version) {
                Ok(SecondaryStatus::Locked(locks)) => {
                    resp.locks = locks.iter().map(lock_info_pb).collect()
                }
                Ok(SecondaryStatus::Committed(ts)) => resp.commit_ts = ts,
                Ok(SecondaryStatus::RolledBack) => {}
                Err(e) => resp.error = Some(key_error(&e)),
            }
            Response::CheckSecondaryLocks(resp)
        }
        Cmd::ResolveLock(req) => {
            let mut resp = kvrpcpb::ResolveLockResponse::default();
            let result = if !req.txn_infos.is_empty() {
                // Batch form: resolve every lock of each listed transaction.
                let mut r = Ok(());
                for info in &req.txn_infos {
                    let keys = locks_of(&txn, info.txn, &start, end.as_deref());
                    r = keys.and_then(|k| txn.resolve_lock(&k, info.txn, info.status));
                    if r.is_err() {
                        break;
                    }
                }
                r
            } else if req.keys.is_empty() {
                locks_of(&txn, req.start_version, &start, end.as_deref())
                    .and_then(|k| txn.resolve_lock(&k, req.start_version, req.commit_version))
            } else {
                txn.resolve_lock(&req.keys, req.start_version, req.commit_version)
            };
            if let Err(e) = result {
                txn.writes = WriteBatch::default();
                resp.error = Some(key_error(&e));
            }
            Response::ResolveLock(resp)
        }
        Cmd::TxnHeartBeat(req) => {
            let mut resp = kvrpcpb::TxnHeartBeatResponse::default();
            match txn.txn_heart_beat(&req.primary_lock, req.start_version, req.advise_lock_ttl) {
                Ok(ttl) => resp.lock_ttl = ttl,
                Err(e) => resp.error = Some(key_error(&e)),
            }
            Response::TxnHeartBeat(resp)
        }
        Cmd::PessimisticLock(req) => {
            let mut resp = kvrpcpb::PessimisticLockResponse::default();
            let keys: Vec<(Vec<u8>, bool)> = req
                .mutations
                .iter()
                .map(|m| (m.key.clone(), m.assertion == 2 /* NotExist */))
                .collect();
            match txn.pessimistic_lock(
                &keys,
                &req.primary_lock,
                req.start_version,
                req.for_update_ts,
                req.lock_ttl,
                req.return_values || req.check_existence,
                req.min_commit_ts,
            ) {
                Ok(values) => {
                    if req.return_values {
                        resp.not_founds = values.iter().map(Option::is_none).collect();
                        resp.values = values.into_iter().map(Option::unwrap_or_default).collect();
                    } else if req.check_existence {
                        resp.not_founds = values.iter().map(Option::is_none).collect();
                    }
                }
                Err(e) => resp.errors.push(key_error(&e)),
            }
            Response::PessimisticLock(resp)
        }
        Cmd::PessimisticRollback(req) => {
            Response::PessimisticRollback(kvrpcpb::PessimisticRollbackResponse {
                errors: txn
                    .pessimistic_rollback(&req.keys, req.start_version, req.for_update_ts)
                    .err()
                    .map(|e| vec![key_error(&e)])
                    .unwrap_or_default(),
                ..Default::default()
            })
        }
        Cmd::Gc(req) => Response::Gc(kvrpcpb::GcResponse {
            error: txn
                .gc(&start, end.as_deref(), req.safe_point)
                .err()
                .map(|e| key_error(&e)),
            ..Default::default()
        }),
        Cmd::DeleteRange(req) => {
            let mut resp = kvrpcpb::DeleteRangeResponse::default();
            if !req.notify_only {
                if let Err(e) = delete_txn_range(&mut txn, &req.start_key, &req.end_key) {
                    txn.writes = WriteBatch::default();
                    resp.error = e.to_string();
                }
            }
            Response::DeleteRange(resp)
        }
        Cmd::RawPut(req) => {
            raw::put(&mut txn.writes, &req.key, &req.value, req.ttl, cmd.now_ms);
            Response::RawPut(kvrpcpb::RawPutResponse::default())
        }
        Cmd::RawBatchPut(req) => {
            for (i, p) in req.pairs.iter().enumerate() {
                let ttl = req.ttls.get(i).copied().unwrap_or(req.ttl);
                raw::put(&mut txn.writes, &p.key, &p.value, ttl, cmd.now_ms);
            }
            Response::RawBatchPut(kvrpcpb::RawBatchPutResponse::default())
        }
        Cmd::RawDelete(req) => {
            raw::delete(&mut txn.writes, &req.key);
            Response::RawDelete(kvrpcpb::RawDeleteResponse::default())
        }
        Cmd::RawBatchDelete(req) => {
            for k in &req.keys {
                raw::delete(&mut txn.writes, k);
            }
            Response::RawBatchDelete(kvrpcpb::RawBatchDeleteResponse::default())
        }
        Cmd::RawDeleteRange(req) => {
            let end = (!req.end_key.is_empty()).then_some(req.end_key.as_slice());
            let mut resp = kvrpcpb::RawDeleteRangeResponse::default();
            if let Err(e) = raw::delete_range(snap, &mut txn.writes, &req.start_key, end) {
                txn.writes = WriteBatch::default();
                resp.error = e.to_string();
            }
            Response::RawDeleteRange(resp)
        }
        Cmd::RawCas(req) => {
            let mut resp = kvrpcpb::RawCasResponse::default();
            match raw::get(snap, &req.key, cmd.now_ms) {
                Err(e) => resp.error = e.to_string(),
                Ok(current) => {
                    let matches = match &current {
                        None => req.previous_not_exist,
                        Some(v) => !req.previous_not_exist && v.value == req.previous_value,
                    };
                    resp.previous_not_exist = current.is_none();
                    resp.previous_value = current.map(|v| v.value).unwrap_or_default();
                    if matches {
                        raw::put(&mut txn.writes, &req.key, &req.value, req.ttl, cmd.now_ms);
                        resp.succeed = true;
                    }
                }
            }
            Response::RawCas(resp)
        }
    };
    (resp, txn.writes)
}

fn locks_of<S: Snapshot + ?Sized>(
    txn: &MvccTxn<'_, S>,
    start_ts: u64,
    start: &[u8],
    end: Option<&[u8]>,
) -> Result<Vec<Vec<u8>>, Error> {
    Ok(txn
        .reader
        .scan_locks(start, end, start_ts, 0)?
        .into_iter()
        .filter(|(_, l)| l.ts == start_ts)
        .map(|(k, _)| k)
        .collect())
}

fn delete_txn_range<S: Snapshot + ?Sized>(
    txn: &mut MvccTxn<'_, S>,
    start: &[u8],
    end: &[u8],
) -> Result<(), Error> {
    use std::ops::Bound;
    use tiox_engine::Cf;
    let lower = crate::codec::lock_key(start);
    let upper = if end.is_empty() {
        vec![crate::codec::TXN_PREFIX + 1]
    } else {
        crate::codec::lock_key(end)
    };
    let mut deletes = Vec::new();
    for cf in [Cf::Default, Cf::Lock, Cf::Write] {
        for kv in
            txn.reader_snapshot()
                .iter(cf, Bound::Included(&lower), Bound::Excluded(&upper), false)
        {
            deletes.push((cf, kv?.0));
        }
    }
    for (cf, k) in deletes {
        txn.writes.delete(cf, k);
    }
    Ok(())
}
