//! Foreign keys enforced on writes (`foreign_key_checks = 1`, as TiDB 6.6+
//! and MySQL): a child row must find its parent (1452); a parent row that
//! children reference cannot go or change its key (1451) unless the
//! constraint says `CASCADE` or `SET NULL`.
//!
//! The writer ([`super::dml::Writer`]) records an [`Event`] for every row
//! it writes to a table with foreign keys and every row it deletes or
//! re-keys in a referenced table; at the end of the statement
//! [`enforce`] works through them. Cascaded deletes and updates are
//! written by the same writer, so they record events of their own, which
//! the next round checks (at most [`MAX_DEPTH`] rounds, MySQL's limit).
//! Lookups go through the parent's primary key or an index on the
//! referenced columns, and through the child's index on the referencing
//! columns (every foreign key has one); they read this transaction's own
//! writes.

use std::sync::Arc;

use tiox_client::txn::Transaction;

use super::catalog::kv_err;
use super::codec;
use super::dml::Writer;
use super::schema::{ForeignKey, IndexInfo, SchemaState, TableInfo};
use super::table::{self, Row};
use crate::error::{er, ErrorKind, SqlError};
use crate::value::Value;

/// MySQL's limit on cascading levels (ERROR 3008 beyond it).
pub const MAX_DEPTH: usize = 15;

/// A row write that a foreign key must see.
#[derive(Debug)]
pub enum Event {
    /// A row written to a table with foreign keys (table id, the row).
    Child(i64, Row),
    /// A row of a referenced table deleted (`new` None) or updated.
    Parent {
        /// Table id.
        table: i64,
        /// The row before.
        old: Row,
        /// The row after, for an update.
        new: Option<Row>,
    },
}

/// Whether the session checks foreign keys.
pub fn checks_on(writer: &Writer<'_>) -> bool {
    !matches!(
        crate::executor::vars::get(writer.sx.session, "foreign_key_checks", false),
        Some(Value::Int(0)) | Some(Value::UInt(0))
    )
}

/// Whether any foreign key references table `t`.
pub fn is_referenced(writer: &Writer<'_>, t: &TableInfo) -> bool {
    let db = db_of(writer, t);
    writer.sx.schema.tables.values().any(|c| {
        c.foreign_keys
            .iter()
            .any(|f| references(writer, c, f, &db, &t.name))
    })
}

fn db_of(writer: &Writer<'_>, t: &TableInfo) -> String {
    writer
        .sx
        .schema
        .dbs
        .get(&t.db_id)
        .map(|d| d.name.clone())
        .unwrap_or_default()
}

fn references(
    writer: &Writer<'_>,
    child: &TableInfo,
    f: &ForeignKey,
    db: &str,
    table: &str,
) -> bool {
    let ref_db = f.ref_db.clone().unwrap_or_else(|| db_of(writer, child));
    ref_db.eq_ignore_ascii_case(db) && f.ref_table.eq_ignore_ascii_case(table)
}

fn describe(db: &str, child: &TableInfo, f: &ForeignKey) -> String {
    format!("`{db}`.`{}`, {}", child.name, f.sql(db))
}

/// Works through the writer's events until none are left.
pub async fn enforce(writer: &mut Writer<'_>, tx: &mut Transaction) -> Result<(), SqlError> {
    let mut depth = 0;
    while !writer.fk_events.is_empty() {
        depth += 1;
        if depth > MAX_DEPTH + 1 {
            return Err(SqlError::of(
                ErrorKind::ForeignKeyCascadeDepth,
                format!("Foreign key cascade delete/update exceeds max depth of {MAX_DEPTH}."),
            ));
        }
        for e in std::mem::take(&mut writer.fk_events) {
            match e {
                Event::Child(tid, row) => check_parents(writer, tx, tid, &row).await?,
                Event::Parent { table, old, new } => {
                    on_parent_change(writer, tx, table, &old, new.as_ref()).await?
                }
            }
        }
    }
    Ok(())
}

/// The values of `cols` of `t` in `row`, each made to fit `target`'s
/// column of the same position (`None` if one is NULL or does not fit).
fn key_values(
    t: &TableInfo,
    row: &[Value],
    cols: &[String],
    target: &TableInfo,
    target_cols: &[String],
) -> Option<Vec<Value>> {
    cols.iter()
        .zip(target_cols)
        .map(|(c, tc)| {
            let v = row.get(t.column(c)?)?.clone();
            if v.is_null() {
                return None;
            }
            let o = target.column(tc)?;
            target.columns[o].ty.coerce(v, tc).ok()
        })
        .collect()
}

/// An index of `t` whose first columns are `cols` (public ones only).
fn index_on<'t>(t: &'t TableInfo, cols: &[usize]) -> Option<&'t IndexInfo> {
    t.indexes.iter().find(|i| {
        i.state == SchemaState::Public
            && i.columns.len() >= cols.len()
            && i.columns[..cols.len()] == cols[..]
    })
}

/// The handles of `t`'s rows whose `cols` equal `vals` (through the
/// handle or an index).
async fn rows_with(
    tx: &Transaction,
    t: &TableInfo,
    cols: &[usize],
    vals: &[Value],
    limit: Option<usize>,
) -> Result<Vec<i64>, SqlError> {
    if cols.len() == 1 && t.handle_col == Some(cols[0]) {
        let Some(h) = table::handle_of(&vals[0]) else {
            return Ok(Vec::new());
        };
        let found = tx.get(&codec::record_key(t.id, h)).await.map_err(kv_err)?;
        return Ok(found.map(|_| h).into_iter().collect());
    }
    let Some(ix) = index_on(t, cols) else {
        // Without an index (made with foreign_key_checks off): every row.
        let rows = table::scan_rows(tx, t, codec::record_prefix(t.id), Vec::new(), None).await?;
        return Ok(rows
            .into_iter()
            .filter(|(_, r)| {
                cols.iter().zip(vals).all(|(&c, v)| {
                    super::expr::compare::compare(&r[c], v).is_some_and(|o| o.is_eq())
                })
            })
            .map(|(h, _)| h)
            .take(limit.unwrap_or(usize::MAX))
            .collect());
    };
    let typed: Vec<_> = vals
        .iter()
        .zip(&ix.columns)
        .map(|(v, &o)| (v, &t.columns[o].ty))
        .collect();
    let prefix = codec::index_key(t.id, ix.id, &typed, None);
    let end = codec::prefix_end(&prefix);
    table::scan_index(tx, prefix, end, limit).await
}

async fn check_parents(
    writer: &Writer<'_>,
    tx: &mut Transaction,
    tid: i64,
    row: &[Value],
) -> Result<(), SqlError> {
    let Some(t) = writer.sx.schema.tables.get(&tid).cloned() else {
        return Ok(());
    };
    let db = db_of(writer, &t);
    for f in &t.foreign_keys {
        let fails = || {
            SqlError::of(
                ErrorKind::NoReferencedRow,
                format!(
                    "Cannot add or update a child row: a foreign key constraint fails ({})",
                    describe(&db, &t, f)
                ),
            )
        };
        if f.columns
            .iter()
            .any(|c| t.column(c).is_none_or(|o| row[o].is_null()))
        {
            continue; // MATCH SIMPLE: a NULL in the key references nothing.
        }
        let ref_db = f.ref_db.clone().unwrap_or_else(|| db.clone());
        let Some(parent) = writer.sx.schema.table(&ref_db, &f.ref_table) else {
            return Err(fails());
        };
        let Some(vals) = key_values(&t, row, &f.columns, &parent, &f.ref_columns) else {
            return Err(fails());
        };
        let cols: Option<Vec<usize>> = f.ref_columns.iter().map(|c| parent.column(c)).collect();
        let Some(cols) = cols else {
            return Err(fails());
        };
        let found = rows_with(tx, &parent, &cols, &vals, Some(1)).await?;
        let Some(&h) = found.first() else {
            return Err(fails());
        };
        if tx.is_pessimistic() {
            // The parent cannot go before this transaction commits.
            tx.lock_keys(&[codec::record_key(parent.id, h)])
                .await
                .map_err(kv_err)?;
        }
    }
    Ok(())
}

async fn on_parent_change(
    writer: &mut Writer<'_>,
    tx: &mut Transaction,
    tid: i64,
    old: &[Value],
    new: Option<&Row>,
) -> Result<(), SqlError> {
    let Some(p) = writer.sx.schema.tables.get(&tid).cloned() else {
        return Ok(());
    };
    let db = db_of(writer, &p);
    let children: Vec<Arc<TableInfo>> = writer
        .sx
        .schema
        .tables
        .values()
        .filter(|c| {
            c.foreign_keys
                .iter()
                .any(|f| references(writer, c, f, &db, &p.name))
        })
        .cloned()
        .collect();
    for c in children {
        let child_db = db_of(writer, &c);
        let fks: Vec<ForeignKey> = c
            .foreign_keys
            .iter()
            .filter(|f| references(writer, &c, f, &db, &p.name))
            .cloned()
            .collect();
        for f in &fks {
            let Some(old_vals) = key_values(&p, old, &f.ref_columns, &c, &f.columns) else {
                continue;
            };
            let new_vals = new.and_then(|n| key_values(&p, n, &f.ref_columns, &c, &f.columns));
            if new.is_some() && new_vals.as_ref() == Some(&old_vals) {
                continue; // the key did not change
            }
            let cols: Option<Vec<usize>> = f.columns.iter().map(|n| c.column(n)).collect();
            let Some(cols) = cols else { continue };
            let handles = rows_with(tx, &c, &cols, &old_vals, None).await?;
            if handles.is_empty() {
                continue;
            }
            let action = match new {
                None => f.on_delete.as_deref(),
                Some(_) => f.on_update.as_deref(),
            }
            .unwrap_or("NO ACTION")
            .to_ascii_uppercase();
            let rows = table::get_rows(tx, &c, &handles).await?;
            match action.as_str() {
                "CASCADE" if new.is_none() => {
                    for (h, r) in rows {
                        writer.delete_row(tx, &c, h, &r);
                    }
                }
                "CASCADE" | "SET NULL" => {
                    for (h, r) in rows {
                        let mut next = r.clone();
                        for (i, &o) in cols.iter().enumerate() {
                            next[o] = match (&new_vals, action.as_str()) {
                                (Some(v), "CASCADE") => v[i].clone(),
                                _ => {
                                    if c.columns[o].not_null {
                                        return Err(table::cannot_be_null(&c.columns[o].name));
                                    }
                                    Value::Null
                                }
                            };
                        }
                        writer.update_row(tx, &c, h, &r, next).await?;
                    }
                }
                "SET DEFAULT" => {
                    return Err(er::not_supported_yet("ON DELETE/UPDATE SET DEFAULT"));
                }
                _ => {
                    return Err(SqlError::of(
                        ErrorKind::RowIsReferenced,
                        format!(
                        "Cannot delete or update a parent row: a foreign key constraint fails ({})",
                        describe(&child_db, &c, f)
                    ),
                    ))
                }
            }
        }
    }
    Ok(())
}
