//! Percolator behaviour pinned by scenario files (goldenscript style).
//!
//! Each file in `tests/mvcc/` is a sequence of commands; after each command
//! its output follows on lines starting with `> `. The runner executes the
//! commands against a real fjall engine and compares the whole transcript.
//! To regenerate after an intended change: `UPDATE_GOLDEN=1 cargo test -p
//! tiox-kv --test mvcc_scenarios`, then review the diff.
//!
//! Commands (timestamps are plain numbers; `now=MS` is a physical time in
//! milliseconds, compared with a lock's TTL from the physical part of its
//! start_ts, which is 0 for small numbers):
//!
//! ```text
//! prewrite start=TS primary=K [ttl=MS] [for_update=TS] [async] [min_commit=TS] [one_pc=MAX_TS] [max_commit=TS] put:K=V del:K lock:K insert:K=V check:K pput:K=V (pessimistic-locked put)
//! commit start=TS commit=TS keys=K,K
//! rollback start=TS keys=K,K
//! cleanup key=K start=TS now=MS
//! get key=K ts=TS
//! scan [start=K] [end=K] ts=TS [limit=N] [reverse]
//! check_txn_status primary=K lock_ts=TS caller=TS now=MS [rollback_if_not_exist] [resolving_pessimistic]
//! check_secondary start=TS keys=K,K
//! resolve start=TS commit=TS keys=K,K
//! heartbeat primary=K start=TS ttl=MS
//! pessimistic_lock start=TS for_update=TS primary=K keys=K,K [return_values]
//! pessimistic_rollback start=TS for_update=TS keys=K,K
//! scan_lock max=TS
//! gc safe_point=TS
//! ```

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

use tiox_engine::Engine;
use tiox_kv::engine_fjall::{FjallEngine, FjallOptions};
use tiox_kv::mvcc::compose_ts;
use tiox_kv::mvcc::reader::{MvccReader, ScanParams};
use tiox_kv::mvcc::txn::{Mutation, MvccTxn, Op, PrewriteParams};
use tiox_kv::Error;

struct Args {
    named: HashMap<String, String>,
    flags: Vec<String>,
    mutations: Vec<Mutation>,
}

impl Args {
    fn parse(words: &[&str]) -> Args {
        let mut named = HashMap::new();
        let mut flags = Vec::new();
        let mut mutations = Vec::new();
        for w in words {
            if let Some((op, rest)) = w.split_once(':') {
                let (k, v) = match rest.split_once('=') {
                    Some((k, v)) => (k.as_bytes().to_vec(), Some(v.as_bytes().to_vec())),
                    None => (rest.as_bytes().to_vec(), None),
                };
                let (op, pess) = match (op, v) {
                    ("put", Some(v)) => (Op::Put(expand(v)), false),
                    ("pput", Some(v)) => (Op::Put(expand(v)), true),
                    ("insert", Some(v)) => (Op::Insert(expand(v)), false),
                    ("del", None) => (Op::Delete, false),
                    ("pdel", None) => (Op::Delete, true),
                    ("lock", None) => (Op::Lock, false),
                    ("check", None) => (Op::CheckNotExists, false),
                    other => panic!("bad mutation {w}: {other:?}"),
                };
                mutations.push(Mutation {
                    key: k,
                    op,
                    expect_pessimistic_lock: pess,
                });
            } else if let Some((k, v)) = w.split_once('=') {
                named.insert(k.to_string(), v.to_string());
            } else {
                flags.push(w.to_string());
            }
        }
        Args {
            named,
            flags,
            mutations,
        }
    }
    fn u64(&self, k: &str) -> u64 {
        self.named
            .get(k)
            .map_or(0, |v| v.parse().unwrap_or_else(|_| panic!("{k}={v}")))
    }
    fn bytes(&self, k: &str) -> Vec<u8> {
        self.named
            .get(k)
            .map(|v| v.as_bytes().to_vec())
            .unwrap_or_default()
    }
    fn keys(&self) -> Vec<Vec<u8>> {
        self.named
            .get("keys")
            .map(|v| v.split(',').map(|k| k.as_bytes().to_vec()).collect())
            .unwrap_or_default()
    }
    fn flag(&self, f: &str) -> bool {
        self.flags.iter().any(|x| x == f)
    }
}

/// `long300` expands to a 300-byte value (stored in the default CF).
fn expand(v: Vec<u8>) -> Vec<u8> {
    match std::str::from_utf8(&v)
        .ok()
        .and_then(|s| s.strip_prefix("long"))
    {
        Some(n) => vec![b'x'; n.parse().unwrap()],
        None => v,
    }
}

fn show(b: &[u8]) -> String {
    if b.len() > 20 {
        format!("<{} bytes>", b.len())
    } else {
        String::from_utf8_lossy(b).to_string()
    }
}

fn show_err(e: &Error) -> String {
    match e {
        Error::KeyIsLocked(l) => format!(
            "KeyIsLocked key={} primary={} start={} ttl={} type={:?} min_commit={}",
            show(&l.key),
            show(&l.primary_lock),
            l.lock_version,
            l.lock_ttl,
            l.lock_type,
            l.min_commit_ts
        ),
        Error::WriteConflict { start_ts, conflict_start_ts, conflict_commit_ts, key, .. } => format!(
            "WriteConflict key={} start={start_ts} conflict_start={conflict_start_ts} conflict_commit={conflict_commit_ts}",
            show(key)
        ),
        other => format!("{other:?}"),
    }
}

fn run(engine: &FjallEngine, line: &str) -> String {
    let words: Vec<&str> = line.split_whitespace().collect();
    let a = Args::parse(&words[1..]);
    let snap = engine.snapshot();
    let mut txn = MvccTxn::new(&snap);
    let mut out = String::new();
    let result: Result<String, String> = match words[0] {
        "prewrite" => {
            let p = PrewriteParams {
                primary: a.bytes("primary"),
                start_ts: a.u64("start"),
                lock_ttl: a.named.get("ttl").map_or(3000, |v| v.parse().unwrap()),
                txn_size: a.mutations.len() as u64,
                for_update_ts: a.u64("for_update"),
                min_commit_ts: a.u64("min_commit"),
                use_async_commit: a.flag("async"),
                secondaries: a
                    .mutations
                    .iter()
                    .map(|m| m.key.clone())
                    .filter(|k| *k != a.bytes("primary"))
                    .collect(),
                max_read_ts: a.u64("max_read"),
                one_pc: a.named.get("one_pc").map(|v| v.parse().unwrap()),
                max_commit_ts: a.u64("max_commit"),
            };
            match txn.prewrite(&p, &a.mutations) {
                Ok(done) if done.one_pc_commit_ts > 0 => {
                    Ok(format!("ok one_pc_commit_ts={}", done.one_pc_commit_ts))
                }
                Ok(done) if done.min_commit_ts > 0 => {
                    Ok(format!("ok min_commit_ts={}", done.min_commit_ts))
                }
                Ok(_) => Ok("ok".into()),
                Err(errs) => Err(errs.iter().map(show_err).collect::<Vec<_>>().join("\n> ")),
            }
        }
        "commit" => txn
            .commit(&a.keys(), a.u64("start"), a.u64("commit"))
            .map(|_| "ok".into())
            .map_err(|e| show_err(&e)),
        "rollback" => txn
            .rollback(&a.keys(), a.u64("start"))
            .map(|_| "ok".into())
            .map_err(|e| show_err(&e)),
        "cleanup" => txn
            .cleanup(&a.bytes("key"), a.u64("start"), compose_ts(a.u64("now"), 0))
            .map(|c| format!("ok commit_ts={c}"))
            .map_err(|e| show_err(&e)),
        "get" => MvccReader::new(&snap)
            .get(&a.bytes("key"), a.u64("ts"), &[])
            .map(|v| v.map_or("<none>".into(), |v| show(&v)))
            .map_err(|e| show_err(&e)),
        "scan" => {
            let end = a.named.get("end").map(|e| e.as_bytes().to_vec());
            let start = a.bytes("start");
            MvccReader::new(&snap)
                .scan(&ScanParams {
                    start: &start,
                    end: end.as_deref(),
                    limit: a.u64("limit") as usize,
                    ts: a.u64("ts"),
                    key_only: a.flag("key_only"),
                    reverse: a.flag("reverse"),
                    bypass: &[],
                })
                .map(|items| {
                    if items.is_empty() {
                        return "<empty>".to_string();
                    }
                    items
                        .iter()
                        .map(|i| match i {
                            Ok((k, v)) => format!("{}={}", show(k), show(v)),
                            Err(e) => show_err(e),
                        })
                        .collect::<Vec<_>>()
                        .join("\n> ")
                })
                .map_err(|e| show_err(&e))
        }
        "check_txn_status" => txn
            .check_txn_status(
                &a.bytes("primary"),
                a.u64("lock_ts"),
                a.u64("caller"),
                compose_ts(a.u64("now"), 0),
                a.flag("rollback_if_not_exist"),
                a.flag("force_sync_commit"),
                a.flag("resolving_pessimistic"),
            )
            .map(|s| match s {
                tiox_kv::mvcc::txn::TxnStatus::Locked {
                    ttl,
                    lock,
                    min_commit_ts_pushed,
                } => format!(
                    "Locked ttl={ttl} min_commit={} pushed={min_commit_ts_pushed}",
                    lock.min_commit_ts
                ),
                other => format!("{other:?}"),
            })
            .map_err(|e| show_err(&e)),
        "check_secondary" => txn
            .check_secondary_locks(&a.keys(), a.u64("start"))
            .map(|s| match s {
                tiox_kv::mvcc::txn::SecondaryStatus::Locked(locks) => format!(
                    "Locked [{}]",
                    locks
                        .iter()
                        .map(|l| show(&l.key))
                        .collect::<Vec<_>>()
                        .join(",")
                ),
                other => format!("{other:?}"),
            })
            .map_err(|e| show_err(&e)),
        "resolve" => txn
            .resolve_lock(&a.keys(), a.u64("start"), a.u64("commit"))
            .map(|_| "ok".into())
            .map_err(|e| show_err(&e)),
        "heartbeat" => txn
            .txn_heart_beat(&a.bytes("primary"), a.u64("start"), a.u64("ttl"))
            .map(|t| format!("ok ttl={t}"))
            .map_err(|e| show_err(&e)),
        "pessimistic_lock" => {
            let keys: Vec<(Vec<u8>, bool)> = a.keys().into_iter().map(|k| (k, false)).collect();
            txn.pessimistic_lock(
                &keys,
                &a.bytes("primary"),
                a.u64("start"),
                a.u64("for_update"),
                3000,
                a.flag("return_values"),
                0,
            )
            .map(|vals| {
                if a.flag("return_values") {
                    format!(
                        "ok values=[{}]",
                        vals.iter()
                            .map(|v| v.as_deref().map_or("<none>".into(), show))
                            .collect::<Vec<_>>()
                            .join(",")
                    )
                } else {
                    "ok".into()
                }
            })
            .map_err(|e| show_err(&e))
        }
        "pessimistic_rollback" => txn
            .pessimistic_rollback(&a.keys(), a.u64("start"), a.u64("for_update"))
            .map(|_| "ok".into())
            .map_err(|e| show_err(&e)),
        "scan_lock" => MvccReader::new(&snap)
            .scan_locks(b"", None, a.u64("max"), 0)
            .map(|locks| {
                if locks.is_empty() {
                    return "<none>".into();
                }
                locks
                    .iter()
                    .map(|(k, l)| format!("{} start={} type={:?}", show(k), l.ts, l.lock_type))
                    .collect::<Vec<_>>()
                    .join("\n> ")
            })
            .map_err(|e| show_err(&e)),
        "gc" => txn
            .gc(b"", None, a.u64("safe_point"))
            .map(|n| format!("ok removed={n}"))
            .map_err(|e| show_err(&e)),
        other => panic!("unknown command {other}"),
    };
    let writes = std::mem::take(&mut txn.writes);
    drop(txn);
    match result {
        Ok(s) => {
            engine.write(writes, false).unwrap();
            let _ = write!(out, "> {s}");
        }
        Err(e) => {
            assert!(
                writes.is_empty() || words[0] == "prewrite",
                "a failed action wrote: {line}"
            );
            let _ = write!(out, "> error: {e}");
        }
    }
    out
}

fn run_file(path: &Path) {
    let text = std::fs::read_to_string(path).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let engine = FjallEngine::open(dir.path(), &FjallOptions::default()).unwrap();
    let mut transcript = String::new();
    for line in text.lines() {
        if line.starts_with("> ") || line == ">" {
            continue;
        }
        transcript.push_str(line);
        transcript.push('\n');
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        transcript.push_str(&run(&engine, trimmed));
        transcript.push('\n');
    }
    if std::env::var("UPDATE_GOLDEN").is_ok() {
        std::fs::write(path, &transcript).unwrap();
    } else if transcript != text {
        let diff: Vec<String> = text
            .lines()
            .zip(transcript.lines())
            .filter(|(a, b)| a != b)
            .take(5)
            .map(|(a, b)| format!("  expected: {a}\n  actual:   {b}"))
            .collect();
        panic!(
            "{} differs (UPDATE_GOLDEN=1 to regenerate, then review):\n{}\n--- actual transcript ---\n{transcript}",
            path.display(),
            diff.join("\n")
        );
    }
}

macro_rules! scenario {
    ($name:ident) => {
        #[test]
        fn $name() {
            run_file(&Path::new(env!("CARGO_MANIFEST_DIR")).join(concat!(
                "tests/mvcc/",
                stringify!($name),
                ".txt"
            )));
        }
    };
}

scenario!(snapshot_read_sees_only_versions_committed_before_it);
scenario!(lost_update_prevented);
scenario!(write_skew_allowed_under_snapshot_isolation);
scenario!(rollback_of_dead_transaction_by_reader);
scenario!(async_commit_lock_resolution);
scenario!(pessimistic_lock_then_prewrite_and_conflict);
scenario!(commit_and_rollback_are_idempotent_and_final);
scenario!(insert_fails_on_existing_key);
scenario!(gc_keeps_newest_version_at_safe_point);
scenario!(scan_reports_locks_in_place_and_respects_limit);
scenario!(rollback_after_undetermined_commit_keeps_the_transaction_whole);
scenario!(pessimistic_lock_sees_commits_hidden_behind_newer_rollbacks);
scenario!(one_pc_commits_in_one_action_above_max_read_ts);
scenario!(one_pc_conflict_writes_nothing_or_falls_back_to_locks);
scenario!(one_pc_of_a_pessimistic_transaction_commits_its_locked_keys);
scenario!(one_pc_commit_ts_may_equal_another_transactions_start_ts);
