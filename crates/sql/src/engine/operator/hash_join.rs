//! The hash join (inner, left outer, right outer).
//!
//! The build side — the right input of inner and left joins, the left
//! input of right joins, i.e. always the side that is NULL-padded in an
//! outer join — is collected into a hash table on its key values (rows
//! charged to the memory tracker); the other side streams: each probe row
//! looks up its candidates, every join condition (the keys included) is
//! evaluated on the joined pair, and an outer join emits a probe row that
//! matched nothing with NULLs for the build side.
//!
//! Keys hash what `=` compares: numbers by their double value, strings
//! (and temporal values, which compare as strings) by their
//! `utf8mb4_general_ci` sort key, byte strings by their bytes. A NULL key
//! never matches (MySQL: `NULL = x` is not true). Values of different
//! kinds compare by MySQL's conversions (`'1' = 1`), which a hash cannot
//! follow, so a key column whose build values mix kinds is not hashed and
//! a probe row whose key kind differs from the build side's is compared
//! with every build row. Hashing only narrows the candidates; the
//! conditions decide.

use std::collections::HashMap;

use super::{run as run_node, Cond, Emit, Env};
use crate::engine::planner::{JoinKind, Node};
use crate::engine::types::Collation;
use crate::error::SqlError;
use crate::executor::eval::to_f64;
use crate::value::Value;

/// One key value, as `=` sees it.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub(super) enum KeyPart {
    /// A number: its double's bits (-0 folded into 0).
    Num(u64),
    /// A string or temporal value: its general_ci sort key.
    Str(Vec<u8>),
    /// A byte string.
    Bytes(Vec<u8>),
}

impl KeyPart {
    pub(super) fn of(v: &Value) -> Option<KeyPart> {
        Some(match v {
            Value::Null => return None,
            Value::Int(_)
            | Value::UInt(_)
            | Value::Float(_)
            | Value::Double(_)
            | Value::Decimal(_) => {
                let f = to_f64(v);
                KeyPart::Num(if f == 0.0 { 0 } else { f.to_bits() })
            }
            Value::Bytes(b) => KeyPart::Bytes(b.clone()),
            Value::Text(s) => KeyPart::Str(Collation::GeneralCi.sort_key(s)),
            other => KeyPart::Str(Collation::GeneralCi.sort_key(&other.to_string())),
        })
    }

    pub(super) fn kind(&self) -> u8 {
        match self {
            KeyPart::Num(_) => 0,
            KeyPart::Str(_) => 1,
            KeyPart::Bytes(_) => 2,
        }
    }
}

/// The key of a row: `None` when a key value is NULL.
fn key_of(
    env: &Env<'_>,
    exprs: &[Cond<'_>],
    scope: &crate::engine::exec::Scope,
    row: &[Value],
) -> Result<Option<Vec<KeyPart>>, SqlError> {
    let mut key = Vec::with_capacity(exprs.len());
    for e in exprs {
        match KeyPart::of(&e.value(env.sx, scope, row, env.outer)?) {
            Some(k) => key.push(k),
            None => return Ok(None),
        }
    }
    Ok(Some(key))
}

/// Runs a [`Node::HashJoin`].
pub fn run(env: &Env<'_>, node: &Node, at: usize, emit: &mut Emit<'_>) -> Result<(), SqlError> {
    let Node::HashJoin {
        kind,
        left,
        right,
        keys,
        conds,
        ..
    } = node
    else {
        return Ok(());
    };
    let build_right = *kind != JoinKind::RightOuter;
    let (left_at, right_at) = super::profile::children(node, at);
    let (build, probe, build_at, probe_at) = if build_right {
        (&**right, &**left, right_at, left_at)
    } else {
        (&**left, &**right, left_at, right_at)
    };
    let mem_before = env.sx.mem.used();
    let side = |right_side: bool| -> Vec<&sqlparser::ast::Expr> {
        keys.iter()
            .map(|(l, r)| if right_side { r } else { l })
            .collect()
    };
    let (build_keys, probe_keys) = (side(build_right), side(!build_right));
    let (build_scope, probe_scope, scope) = (env.scope(build), env.scope(probe), env.scope(node));
    let build_keys = env.bind(build_keys, &build_scope)?;
    let probe_keys = env.bind(probe_keys, &probe_scope)?;
    let conds = env.bind(conds, &scope)?;

    // Build: rows with their keys; which key columns hash (one kind only).
    let mut rows: Vec<(Vec<Value>, Option<Vec<KeyPart>>)> = Vec::new();
    run_node(env, build, build_at, &mut |row| {
        env.sx.mem.consume_row(&row)?;
        let key = key_of(env, &build_keys, &build_scope, &row)?;
        rows.push((row, key));
        Ok(())
    })?;
    let mut kinds: Vec<Option<u8>> = vec![None; keys.len()];
    let mut mixed = vec![false; keys.len()];
    for key in rows.iter().filter_map(|(_, k)| k.as_ref()) {
        for (i, part) in key.iter().enumerate() {
            match kinds[i] {
                None => kinds[i] = Some(part.kind()),
                Some(k) if k != part.kind() => mixed[i] = true,
                _ => {}
            }
        }
    }
    let hashed = |key: &[KeyPart]| -> Vec<KeyPart> {
        key.iter()
            .zip(&mixed)
            .filter(|(_, m)| !**m)
            .map(|(p, _)| p.clone())
            .collect()
    };
    let mut table: HashMap<Vec<KeyPart>, Vec<usize>> = HashMap::new();
    for (i, (_, key)) in rows.iter().enumerate() {
        if let Some(k) = key {
            table.entry(hashed(k)).or_default().push(i);
        }
    }
    env.sx
        .mem
        .consume((table.len() * std::mem::size_of::<(Vec<KeyPart>, Vec<usize>)>() * 2) as u64)?;
    if let Some(p) = env.profile {
        // The build side and its hash table.
        let mem = env.sx.mem.used().saturating_sub(mem_before);
        p.add(
            super::profile::Slot::Node(at),
            0,
            std::time::Duration::ZERO,
            mem,
        );
    }
    let width = build_scope.cols.len();
    let all: Vec<usize> = (0..rows.len()).collect();

    // Probe.
    run_node(env, probe, probe_at, &mut |prow| {
        let candidates: &[usize] = match key_of(env, &probe_keys, &probe_scope, &prow)? {
            None => &[],
            Some(k) => {
                let same_kinds = k
                    .iter()
                    .zip(&kinds)
                    .zip(&mixed)
                    .all(|((p, b), m)| *m || b.is_none_or(|b| b == p.kind()));
                if same_kinds {
                    table.get(&hashed(&k)).map_or(&[], Vec::as_slice)
                } else {
                    &all
                }
            }
        };
        let candidates = if keys.is_empty() {
            &all[..]
        } else {
            candidates
        };
        let mut matched = false;
        for &i in candidates {
            let b = &rows[i].0;
            let joined: Vec<Value> = if build_right {
                prow.iter().chain(b.iter()).cloned().collect()
            } else {
                b.iter().chain(prow.iter()).cloned().collect()
            };
            if env.accepts(&conds, &scope, &joined)? {
                matched = true;
                emit(joined)?;
            }
        }
        if !matched && *kind != JoinKind::Inner {
            let nulls = std::iter::repeat_n(Value::Null, width);
            let padded: Vec<Value> = if build_right {
                prow.into_iter().chain(nulls).collect()
            } else {
                nulls.chain(prow).collect()
            };
            emit(padded)?;
        }
        Ok(())
    })
}
