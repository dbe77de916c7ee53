//! Rows and index entries of one table in the cluster: encoding a row
//! (the handle lives in the key, the other columns in the value), reading
//! rows by handle, by handle range and through an index, and the index
//! entries a row has.

use sqlparser::ast::Expr;
use tiox_client::txn::Transaction;

use super::catalog::kv_err;
use super::codec;
use super::schema::{ColumnInfo, IndexInfo, TableInfo};
use super::types::Kind;
use crate::error::{ErrorKind, SqlError};
use crate::executor::eval;
use crate::value::Value;

/// A row: one value per column of the table, in column order.
pub type Row = Vec<Value>;

/// Rows fetched per scan request.
pub const SCAN_BATCH: u32 = 512;

/// The handle value a row's key holds, as the handle column shows it.
pub fn handle_value(t: &TableInfo, handle: i64) -> Value {
    match t.handle_col {
        Some(c) if t.columns[c].ty.unsigned => Value::UInt(handle as u64),
        _ => Value::Int(handle),
    }
}

/// The handle of an integer value (of the handle column).
pub fn handle_of(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        Value::UInt(u) => Some(*u as i64),
        _ => None,
    }
}

/// Encodes the stored part of a row (every column but the handle).
pub fn encode_row(t: &TableInfo, row: &[Value]) -> Vec<u8> {
    let cols: Vec<_> = t
        .columns
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != t.handle_col)
        .map(|(i, c)| (c.id, &row[i], &c.ty))
        .collect();
    codec::encode_row(&cols)
}

/// A column's default for a row that lacks it (`None`: no default).
pub fn default_value(c: &ColumnInfo) -> Result<Option<Value>, SqlError> {
    let Some(text) = &c.default else {
        return Ok(if c.not_null { None } else { Some(Value::Null) });
    };
    let t = text.trim();
    let upper = t.to_ascii_uppercase();
    let v = if upper == "NULL" {
        Value::Null
    } else if upper.starts_with("CURRENT_TIMESTAMP")
        || upper.starts_with("NOW(")
        || upper.starts_with("LOCALTIME")
    {
        eval::now()
    } else if upper == "TRUE" || upper == "FALSE" {
        Value::Int(i64::from(upper == "TRUE"))
    } else if let Some(inner) = t.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')) {
        Value::Text(inner.replace("''", "'"))
    } else if let Some(inner) = t.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        Value::Text(inner.to_string())
    } else {
        eval::number(t)
    };
    c.ty.coerce(v, &c.name).map(Some)
}

/// Decodes a stored row.
pub fn decode_row(t: &TableInfo, handle: i64, data: &[u8]) -> Result<Row, SqlError> {
    let wanted: Vec<_> = t
        .columns
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != t.handle_col)
        .map(|(_, c)| (c.id, &c.ty))
        .collect();
    let mut stored = codec::decode_row(data, &wanted)?.into_iter();
    let mut row = Vec::with_capacity(t.columns.len());
    for (i, c) in t.columns.iter().enumerate() {
        if Some(i) == t.handle_col {
            row.push(handle_value(t, handle));
            continue;
        }
        row.push(match stored.next().flatten() {
            Some(v) => v,
            // A column added after the row was written.
            None => default_value(c)?.unwrap_or(Value::Null),
        });
    }
    Ok(row)
}

/// The key and value of `row`'s entry in index `ix`.
pub fn index_entry(
    t: &TableInfo,
    ix: &IndexInfo,
    row: &[Value],
    handle: i64,
) -> (Vec<u8>, Vec<u8>) {
    let vals: Vec<_> = ix
        .columns
        .iter()
        .map(|&o| (&row[o], &t.columns[o].ty))
        .collect();
    let has_null = vals.iter().any(|(v, _)| v.is_null());
    if ix.unique && !has_null {
        (
            codec::index_key(t.id, ix.id, &vals, None),
            codec::unique_index_value(handle),
        )
    } else {
        (
            codec::index_key(t.id, ix.id, &vals, Some(handle)),
            codec::plain_index_value(),
        )
    }
}

/// The unique-key probe of `row` in `ix` (`None` when the index is not
/// unique or the row has a NULL in it: NULLs never collide).
pub fn unique_probe(t: &TableInfo, ix: &IndexInfo, row: &[Value]) -> Option<Vec<u8>> {
    if !ix.unique || ix.columns.iter().any(|&o| row[o].is_null()) {
        return None;
    }
    let vals: Vec<_> = ix
        .columns
        .iter()
        .map(|&o| (&row[o], &t.columns[o].ty))
        .collect();
    Some(codec::index_key(t.id, ix.id, &vals, None))
}

/// How a duplicate shows in ERROR 1062: `'v1-v2'` and the key name.
pub fn duplicate_entry(t: &TableInfo, key_name: &str, cols: &[usize], row: &[Value]) -> SqlError {
    let entry = cols
        .iter()
        .map(|&o| row[o].to_string())
        .collect::<Vec<_>>()
        .join("-");
    SqlError::of(
        ErrorKind::DupEntry,
        format!("Duplicate entry '{entry}' for key '{}.{key_name}'", t.name),
    )
}

/// Reads the row with `handle`.
pub async fn get_row(
    tx: &Transaction,
    t: &TableInfo,
    handle: i64,
) -> Result<Option<Row>, SqlError> {
    match tx
        .get(&codec::record_key(t.id, handle))
        .await
        .map_err(kv_err)?
    {
        Some(v) => Ok(Some(decode_row(t, handle, &v)?)),
        None => Ok(None),
    }
}

/// Reads the rows with these handles (absent ones skipped), in order.
pub async fn get_rows(
    tx: &Transaction,
    t: &TableInfo,
    handles: &[i64],
) -> Result<Vec<(i64, Row)>, SqlError> {
    let keys: Vec<Vec<u8>> = handles
        .iter()
        .map(|h| codec::record_key(t.id, *h))
        .collect();
    let vals = tx.batch_get(&keys).await.map_err(kv_err)?;
    let mut out = Vec::new();
    for (h, v) in handles.iter().zip(vals) {
        if let Some(v) = v {
            out.push((*h, decode_row(t, *h, &v)?));
        }
    }
    Ok(out)
}

/// Scans rows with keys in `[start, end)` (`end` empty: to the table's
/// end), at most `limit`.
pub async fn scan_rows(
    tx: &Transaction,
    t: &TableInfo,
    start: Vec<u8>,
    end: Vec<u8>,
    limit: Option<usize>,
) -> Result<Vec<(i64, Row)>, SqlError> {
    let end = if end.is_empty() {
        codec::prefix_end(&codec::record_prefix(t.id))
    } else {
        end
    };
    let mut out = Vec::new();
    let mut cursor = start;
    loop {
        let want = limit.map_or(SCAN_BATCH, |l| {
            (l - out.len()).min(SCAN_BATCH as usize) as u32
        });
        if want == 0 {
            break;
        }
        let batch = tx.scan(&cursor, &end, want).await.map_err(kv_err)?;
        let n = batch.len();
        for (k, v) in &batch {
            let (_, h) = codec::decode_record_key(k)?;
            out.push((h, decode_row(t, h, v)?));
        }
        if (n as u32) < want {
            break;
        }
        let Some((last, _)) = batch.last() else { break };
        cursor = last.clone();
        cursor.push(0);
    }
    Ok(out)
}

/// Scans index entries in `[start, end)` and returns their handles.
pub async fn scan_index(
    tx: &Transaction,
    start: Vec<u8>,
    end: Vec<u8>,
    limit: Option<usize>,
) -> Result<Vec<i64>, SqlError> {
    let mut out = Vec::new();
    let mut cursor = start;
    loop {
        let want = limit.map_or(SCAN_BATCH, |l| {
            (l - out.len()).min(SCAN_BATCH as usize) as u32
        });
        if want == 0 {
            break;
        }
        let batch = tx.scan(&cursor, &end, want).await.map_err(kv_err)?;
        let n = batch.len();
        for (k, v) in &batch {
            out.push(codec::decode_index_handle(k, v)?);
        }
        if (n as u32) < want {
            break;
        }
        let Some((last, _)) = batch.last() else { break };
        cursor = last.clone();
        cursor.push(0);
    }
    Ok(out)
}

/// Whether `e` is a constant here: no column references, no subqueries.
pub fn is_const(e: &Expr) -> bool {
    let mut ok = true;
    super::walk::walk(e, &mut |x| {
        match x {
            Expr::Identifier(id)
                if !id.value.starts_with('@')
                    && id.quote_style != Some('\'')
                    && id.quote_style != Some('"') =>
            {
                ok = false
            }
            Expr::CompoundIdentifier(p)
                if !p.first().is_some_and(|i| i.value.starts_with("@@")) =>
            {
                ok = false
            }
            Expr::Subquery(_) | Expr::Exists { .. } => ok = false,
            Expr::In {
                target: sqlparser::ast::InTarget::Subquery(_),
                ..
            } => ok = false,
            Expr::Function(f) => {
                let n = f.name.to_string().to_ascii_lowercase();
                if super::walk::is_aggregate(&n) || matches!(n.as_str(), "rand" | "uuid" | "values")
                {
                    ok = false;
                }
            }
            _ => {}
        }
        ok
    });
    ok
}

/// Whether values of this kind can be encoded in index keys exactly
/// (strings can: by their sort key).
pub fn indexable(k: &Kind) -> bool {
    !matches!(k, Kind::Float | Kind::Double)
}

/// ERROR 1048.
pub fn cannot_be_null(col: &str) -> SqlError {
    SqlError::of(ErrorKind::BadNull, format!("Column '{col}' cannot be null"))
}
