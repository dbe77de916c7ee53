//! Writes: INSERT (multi-row, `IGNORE`, `ON DUPLICATE KEY UPDATE`, `SET`,
//! `... SELECT`), REPLACE, UPDATE and DELETE (with WHERE, ORDER BY and
//! LIMIT), maintaining every index.
//!
//! A plain INSERT checks uniqueness lazily, as TiDB's optimistic
//! transactions do: the row and unique-index keys are written as
//! "insert" mutations, which fail at prewrite if the key exists, and the
//! statement reports ERROR 1062 then. Duplicates within the transaction's
//! own writes are found at once. `IGNORE`, `REPLACE` and `ON DUPLICATE
//! KEY UPDATE` read the keys first. In a pessimistic transaction the rows
//! an UPDATE or DELETE changes are locked first and re-read at their
//! newest version, so concurrent updates serialise instead of conflicting.

use std::collections::HashMap;
use std::sync::Arc;

use sqlparser::ast::{Assignment, AssignmentTarget, Expr, Insert, OnInsert, SetExpr, TableObject};
use tiox_client::txn::{Mutation, Transaction};

use super::catalog::{kv_err, Catalog};
use super::codec;
use super::exec::{is_true, Pre, Runner, Scope, Sx};
use super::foreign_key;
use super::schema::{SchemaState, TableInfo};
use super::table::{self, Row};
use crate::backend::Output;
use crate::error::{er, ErrorKind, SqlError};
use crate::value::Value;

/// Messages for ERROR 1062 by key, so a duplicate found at commit is
/// reported as MySQL reports it.
pub type DupMessages = HashMap<Vec<u8>, SqlError>;

/// What a write statement runs with.
pub struct Writer<'a> {
    /// Statement context.
    pub sx: &'a Sx<'a>,
    /// The catalog (AUTO_INCREMENT).
    pub catalog: &'a Catalog,
    /// Messages for duplicates found at commit.
    pub dups: &'a mut DupMessages,
    /// First AUTO_INCREMENT value generated (LAST_INSERT_ID()).
    pub last_insert_id: u64,
    /// Keys written by this statement in a pessimistic transaction, locked
    /// before the statement returns.
    pub touched: Vec<Vec<u8>>,
    /// Rows the foreign keys must see, checked at the statement's end.
    pub fk_events: Vec<foreign_key::Event>,
    /// Per table id: whether a foreign key references it (found once per
    /// statement, not per row).
    pub fk_referenced: HashMap<i64, bool>,
}

fn column_count_mismatch(row: usize) -> SqlError {
    SqlError::of(
        ErrorKind::WrongValueCountOnRow,
        format!("Column count doesn't match value count at row {row}"),
    )
}

fn no_default(col: &str) -> SqlError {
    SqlError::of(
        ErrorKind::NoDefaultForField,
        format!("Field '{col}' doesn't have a default value"),
    )
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Plain,
    Ignore,
    Replace,
    Upsert,
}

fn writes_index(ix: &super::schema::IndexInfo) -> bool {
    ix.state != SchemaState::DeleteOnly
}

/// The column named by an assignment target.
fn target_col(t: &TableInfo, a: &Assignment) -> Result<usize, SqlError> {
    match &a.target {
        AssignmentTarget::ColumnName(n) => {
            let name =
                n.0.last()
                    .map(|p| p.to_string().trim_matches('`').to_string())
                    .unwrap_or_default();
            t.column(&name)
                .ok_or_else(|| super::schema::unknown_column(&name, "field list"))
        }
        AssignmentTarget::Tuple(_) => Err(er::not_supported_yet("tuple assignments")),
    }
}

impl Writer<'_> {
    fn ok(&self, affected: u64, info: String) -> Output {
        Output::Ok {
            affected,
            last_insert_id: self.last_insert_id,
            info,
        }
    }

    /// INSERT / REPLACE.
    pub async fn insert(&mut self, tx: &mut Transaction, ins: &Insert) -> Result<Output, SqlError> {
        let TableObject::TableName(name) = &ins.table else {
            return Err(er::not_supported_yet("INSERT INTO a table function"));
        };
        let (_, t) = self.sx.table(name)?;
        if t.view.is_some() {
            return Err(super::view::not_updatable(&t, "INSERT"));
        }
        let mode = if ins.replace_into {
            Mode::Replace
        } else if matches!(ins.on, Some(OnInsert::DuplicateKeyUpdate(_))) {
            Mode::Upsert
        } else if ins.ignore {
            Mode::Ignore
        } else {
            Mode::Plain
        };
        let cols: Vec<usize> = if !ins.assignments.is_empty() {
            ins.assignments
                .iter()
                .map(|a| target_col(&t, a))
                .collect::<Result<_, _>>()?
        } else if ins.columns.is_empty() {
            (0..t.columns.len()).collect()
        } else {
            ins.columns
                .iter()
                .map(|c| {
                    let n =
                        c.0.last()
                            .map(|p| p.to_string().trim_matches('`').to_string())
                            .unwrap_or_default();
                    t.column(&n)
                        .ok_or_else(|| super::schema::unknown_column(&n, "field list"))
                })
                .collect::<Result<_, _>>()?
        };
        // The values of each row, in `cols` order (None: DEFAULT).
        let mut inputs: Vec<Vec<Option<Value>>> = Vec::new();
        if !ins.assignments.is_empty() {
            let ctx = self.sx.ctx(None);
            inputs.push(
                ins.assignments
                    .iter()
                    .map(|a| eval_or_default(&ctx, &a.value))
                    .collect::<Result<_, _>>()?,
            );
        } else if let Some(src) = &ins.source {
            match src.body.as_ref() {
                SetExpr::Values(v) => {
                    let ctx = self.sx.ctx(None);
                    for (i, r) in v.rows.iter().enumerate() {
                        if r.len() != cols.len() && !(r.is_empty() && ins.columns.is_empty()) {
                            return Err(column_count_mismatch(i + 1));
                        }
                        inputs.push(
                            r.iter()
                                .map(|e| eval_or_default(&ctx, e))
                                .collect::<Result<_, _>>()?,
                        );
                    }
                }
                _ => {
                    let runner = Runner {
                        sx: self.sx,
                        tx,
                        dry: false,
                    };
                    let out = runner.query(src, None).await?;
                    for (i, r) in out.rows.into_iter().enumerate() {
                        if r.len() != cols.len() {
                            return Err(column_count_mismatch(i + 1));
                        }
                        inputs.push(r.into_iter().map(Some).collect());
                    }
                }
            }
        }
        let rows = self
            .build_rows(&t, &cols, inputs, mode == Mode::Ignore)
            .await?;
        let upsert = match &ins.on {
            Some(OnInsert::DuplicateKeyUpdate(a)) => a.as_slice(),
            _ => &[],
        };
        let mut affected = 0;
        for (handle, row) in rows {
            affected += self.write_new(tx, &t, handle, row, mode, upsert).await?;
        }
        self.finish_statement(tx).await?;
        Ok(self.ok(affected, String::new()))
    }

    /// Full rows from inputs: defaults, AUTO_INCREMENT, coercion, NOT NULL.
    /// `lenient` (INSERT IGNORE): values that do not fit are clipped and a
    /// NULL in a NOT NULL column becomes the type's zero value.
    async fn build_rows(
        &mut self,
        t: &Arc<TableInfo>,
        cols: &[usize],
        inputs: Vec<Vec<Option<Value>>>,
        lenient: bool,
    ) -> Result<Vec<(i64, Row)>, SqlError> {
        let auto = t.auto_inc_col();
        let mut rows = Vec::with_capacity(inputs.len());
        let mut need_ids = 0i64;
        for input in inputs {
            let mut given: Vec<Option<Value>> = vec![None; t.columns.len()];
            if !input.is_empty() {
                for (&c, v) in cols.iter().zip(input) {
                    given[c] = v;
                }
            }
            let mut row = Vec::with_capacity(t.columns.len());
            for (i, c) in t.columns.iter().enumerate() {
                let v = match given[i].take() {
                    Some(v) => {
                        if Some(i) == auto
                            && (v.is_null() || matches!(v, Value::Int(0) | Value::UInt(0)))
                        {
                            Value::Null
                        } else if lenient {
                            c.ty.clip(v, &c.name)
                        } else {
                            c.ty.coerce(v, &c.name)?
                        }
                    }
                    None if Some(i) == auto => Value::Null,
                    None => match table::default_value(c)? {
                        Some(d) => d,
                        None => return Err(no_default(&c.name)),
                    },
                };
                let v = if v.is_null() && c.not_null && Some(i) != auto {
                    if !lenient {
                        return Err(table::cannot_be_null(&c.name));
                    }
                    c.ty.zero()
                } else {
                    v
                };
                row.push(v);
            }
            if let Some(a) = auto {
                if row[a].is_null() {
                    need_ids += 1;
                }
            }
            if t.handle_col.is_none() || auto.is_some_and(|a| Some(a) != t.handle_col) {
                // Hidden handles come from the same allocator.
            }
            rows.push(row);
        }
        let hidden = t.handle_col.is_none();
        let total = need_ids + if hidden { rows.len() as i64 } else { 0 };
        let mut next = if total > 0 {
            self.catalog.alloc_auto(t.id, total).await?
        } else {
            0
        };
        let mut out = Vec::with_capacity(rows.len());
        for mut row in rows {
            if let Some(a) = auto {
                if row[a].is_null() {
                    let v = t.columns[a]
                        .ty
                        .coerce(Value::Int(next), &t.columns[a].name)?;
                    if self.last_insert_id == 0 {
                        self.last_insert_id = next as u64;
                    }
                    next += 1;
                    row[a] = v;
                } else if let Some(v) = table::handle_of(&row[a]) {
                    self.catalog.rebase_auto(t.id, v).await?;
                }
            }
            let handle = match t.handle_col {
                Some(h) => table::handle_of(&row[h])
                    .ok_or_else(|| table::cannot_be_null(&t.columns[h].name))?,
                None => {
                    let h = next;
                    next += 1;
                    h
                }
            };
            out.push((handle, row));
        }
        Ok(out)
    }

    /// The unique keys a new row needs: (key, name, columns) with the row key first.
    fn unique_keys(
        t: &TableInfo,
        handle: i64,
        row: &[Value],
    ) -> Vec<(Vec<u8>, String, Vec<usize>)> {
        let mut out = vec![(
            codec::record_key(t.id, handle),
            "PRIMARY".to_string(),
            t.handle_col.map_or_else(Vec::new, |h| vec![h]),
        )];
        for ix in t.indexes.iter().filter(|ix| writes_index(ix)) {
            if let Some(k) = table::unique_probe(t, ix, row) {
                out.push((k, ix.name.clone(), ix.columns.clone()));
            }
        }
        out
    }

    /// Writes one new row; returns the affected-row count (MySQL's: 1
    /// inserted, 2 updated by ON DUPLICATE KEY, 0 ignored / unchanged).
    async fn write_new(
        &mut self,
        tx: &mut Transaction,
        t: &Arc<TableInfo>,
        handle: i64,
        row: Row,
        mode: Mode,
        upsert: &[Assignment],
    ) -> Result<u64, SqlError> {
        let uniques = Self::unique_keys(t, handle, &row);
        if mode == Mode::Plain && tx.is_pessimistic() {
            // In-place check under locks, as TiDB's pessimistic mode.
            let keys: Vec<Vec<u8>> = uniques.iter().map(|(k, _, _)| k.clone()).collect();
            let latest = tx.lock_keys(&keys).await.map_err(kv_err)?;
            for ((k, name, cols), v) in uniques.iter().zip(latest) {
                let buffered = tx.buffered(k);
                let exists = match buffered {
                    Some(Mutation::Put(_)) | Some(Mutation::Insert(_)) => true,
                    Some(Mutation::Delete) => false,
                    _ => v.is_some(),
                };
                if exists {
                    return Err(table::duplicate_entry(t, name, cols, &row));
                }
            }
            self.put_row(tx, t, handle, &row, false);
            return Ok(1);
        }
        if mode == Mode::Plain {
            for (k, name, cols) in &uniques {
                // A hidden handle's row key has no columns; a non-integer
                // PRIMARY KEY is an index and names its values.
                let dup = table::duplicate_entry(t, name, cols, &row);
                if matches!(
                    tx.buffered(k),
                    Some(Mutation::Put(_)) | Some(Mutation::Insert(_))
                ) {
                    return Err(dup);
                }
                self.dups.insert(k.clone(), dup);
            }
            self.put_row(tx, t, handle, &row, true);
            return Ok(1);
        }
        // Read the unique keys to find conflicting rows.
        let keys: Vec<Vec<u8>> = uniques.iter().map(|(k, _, _)| k.clone()).collect();
        let found = if tx.is_pessimistic() {
            tx.lock_keys(&keys).await.map_err(kv_err)?
        } else {
            tx.batch_get(&keys).await.map_err(kv_err)?
        };
        let mut conflict_handles: Vec<i64> = Vec::new();
        for (i, v) in found.iter().enumerate() {
            let Some(v) = v else { continue };
            let h = if i == 0 {
                handle
            } else {
                codec::decode_index_handle(&keys[i], v)?
            };
            if !conflict_handles.contains(&h) {
                conflict_handles.push(h);
            }
        }
        if conflict_handles.is_empty() {
            self.put_row(tx, t, handle, &row, false);
            return Ok(1);
        }
        match mode {
            Mode::Ignore => Ok(0),
            Mode::Replace => {
                let mut n = 0;
                for h in &conflict_handles {
                    if let Some(old) = table::get_row(tx, t, *h).await? {
                        self.delete_row(tx, t, *h, &old);
                        n += 1;
                    }
                }
                self.put_row(tx, t, handle, &row, false);
                Ok(n + 1)
            }
            _ => {
                let h = conflict_handles[0];
                let Some(old) = table::get_row(tx, t, h).await? else {
                    self.put_row(tx, t, handle, &row, false);
                    return Ok(1);
                };
                // VALUES(col) is the value this row would have inserted.
                let mut pre = Pre::default();
                for a in upsert {
                    super::walk::walk(&a.value, &mut |x| {
                        if let Expr::Function(f) = x {
                            if f.name.to_string().eq_ignore_ascii_case("values") {
                                if let Some(Expr::Identifier(id)) = super::walk::args(f).first() {
                                    if let Some(c) = t.column(&id.value) {
                                        pre.set(x, row[c].clone());
                                    }
                                }
                            }
                        }
                        true
                    });
                }
                let new = self.assign(t, &old, upsert, &pre)?;
                if new == old {
                    // An unchanged duplicate counts as found under
                    // CLIENT_FOUND_ROWS, as MySQL.
                    return Ok(u64::from(self.sx.session.found_rows()));
                }
                self.update_row(tx, t, h, &old, new).await?;
                Ok(2)
            }
        }
    }

    /// Applies `SET` assignments to a row (left to right, later ones see
    /// earlier results, as MySQL does).
    fn assign(
        &self,
        t: &TableInfo,
        old: &Row,
        set: &[Assignment],
        pre: &Pre,
    ) -> Result<Row, SqlError> {
        let scope = Scope::of_table(t, &t.name);
        let mut new = old.clone();
        let mut assigned = vec![false; t.columns.len()];
        for a in set {
            let c = target_col(t, a)?;
            let v = if is_default(&a.value) {
                table::default_value(&t.columns[c])?.unwrap_or(Value::Null)
            } else {
                self.sx.eval_row(&a.value, &scope, &new, pre, None)?
            };
            let v = t.columns[c].ty.coerce(v, &t.columns[c].name)?;
            if v.is_null() && t.columns[c].not_null {
                return Err(table::cannot_be_null(&t.columns[c].name));
            }
            new[c] = v;
            assigned[c] = true;
        }
        if new != *old {
            for (i, c) in t.columns.iter().enumerate() {
                if c.on_update_now && !assigned[i] {
                    new[i] = c.ty.coerce(crate::executor::eval::now(), &c.name)?;
                }
            }
        }
        Ok(new)
    }

    /// Buffers a row and its index entries. `lazy`: uniqueness is checked
    /// at prewrite (insert mutations) unless this transaction deleted the
    /// key before.
    fn put_row(
        &mut self,
        tx: &mut Transaction,
        t: &TableInfo,
        handle: i64,
        row: &[Value],
        lazy: bool,
    ) {
        let key = codec::record_key(t.id, handle);
        let value = table::encode_row(t, row);
        self.put(tx, key, value, lazy, true);
        for ix in t.indexes.iter().filter(|ix| writes_index(ix)) {
            let (k, v) = table::index_entry(t, ix, row, handle);
            self.put(tx, k, v, lazy && ix.unique, ix.unique);
        }
        if !t.foreign_keys.is_empty() && foreign_key::checks_on(self) {
            self.fk_events
                .push(foreign_key::Event::Child(t.id, row.to_vec()));
        }
    }

    /// Buffers the deletion of a row and its index entries.
    pub(super) fn delete_row(
        &mut self,
        tx: &mut Transaction,
        t: &TableInfo,
        handle: i64,
        row: &[Value],
    ) {
        self.del(tx, codec::record_key(t.id, handle), true);
        for ix in &t.indexes {
            let (k, _) = table::index_entry(t, ix, row, handle);
            self.del(tx, k, ix.unique);
        }
        if foreign_key::checks_on(self) && self.is_referenced(t) {
            self.fk_events.push(foreign_key::Event::Parent {
                table: t.id,
                old: row.to_vec(),
                new: None,
            });
        }
    }

    /// Whether a foreign key references `t` (cached for the statement).
    fn is_referenced(&mut self, t: &TableInfo) -> bool {
        if let Some(&r) = self.fk_referenced.get(&t.id) {
            return r;
        }
        let r = foreign_key::is_referenced(self, t);
        self.fk_referenced.insert(t.id, r);
        r
    }

    /// Foreign-key checks, then the pessimistic locks: the end of every
    /// write statement.
    async fn finish_statement(&mut self, tx: &mut Transaction) -> Result<(), SqlError> {
        foreign_key::enforce(self, tx).await?;
        self.lock_touched(tx).await
    }

    /// Buffers a delete; `lock`: the key needs a pessimistic lock (row and
    /// unique-index keys; a non-unique entry belongs to its row's lock).
    fn del(&mut self, tx: &mut Transaction, key: Vec<u8>, lock: bool) {
        if lock && tx.is_pessimistic() && !tx.is_locked(&key) {
            self.touched.push(key.clone());
        }
        tx.delete(key);
    }

    /// Buffers a write (see [`Writer::del`] for `lock`).
    fn put(
        &mut self,
        tx: &mut Transaction,
        key: Vec<u8>,
        value: Vec<u8>,
        lazy_unique: bool,
        lock: bool,
    ) {
        if lock && tx.is_pessimistic() && !tx.is_locked(&key) {
            self.touched.push(key.clone());
        }
        match (lazy_unique, tx.buffered(&key)) {
            // Deleted earlier in this transaction: the committed key exists.
            (_, Some(Mutation::Delete)) | (false, _) => tx.put(key, value),
            (true, _) => tx.insert(key, value),
        }
    }

    /// Pessimistic transactions lock the row and unique-index keys a
    /// statement wrote and had not locked yet, so commit cannot fail on
    /// them; non-unique index entries are checked at prewrite against the
    /// newest for_update_ts (TiDB/TiKV's rule).
    async fn lock_touched(&mut self, tx: &mut Transaction) -> Result<(), SqlError> {
        if self.touched.is_empty() {
            return Ok(());
        }
        let keys = std::mem::take(&mut self.touched);
        tx.lock_keys(&keys).await.map_err(kv_err)?;
        Ok(())
    }

    /// Replaces row `handle` (`old`) by `new`, checking unique keys.
    pub(super) async fn update_row(
        &mut self,
        tx: &mut Transaction,
        t: &TableInfo,
        handle: i64,
        old: &Row,
        new: Row,
    ) -> Result<(), SqlError> {
        let new_handle = match t.handle_col {
            Some(h) => table::handle_of(&new[h])
                .ok_or_else(|| table::cannot_be_null(&t.columns[h].name))?,
            None => handle,
        };
        let mut probes: Vec<(Vec<u8>, SqlError)> = Vec::new();
        if new_handle != handle {
            let h = t.handle_col.unwrap_or(0);
            probes.push((
                codec::record_key(t.id, new_handle),
                table::duplicate_entry(t, "PRIMARY", &[h], &new),
            ));
        }
        for ix in t.indexes.iter().filter(|ix| writes_index(ix) && ix.unique) {
            let changed = ix.columns.iter().any(|&c| old[c] != new[c]) || new_handle != handle;
            if !changed {
                continue;
            }
            if let Some(k) = table::unique_probe(t, ix, &new) {
                let old_k = table::unique_probe(t, ix, old);
                if old_k.as_ref() != Some(&k) {
                    probes.push((k, table::duplicate_entry(t, &ix.name, &ix.columns, &new)));
                }
            }
        }
        if !probes.is_empty() {
            let keys: Vec<Vec<u8>> = probes.iter().map(|(k, _)| k.clone()).collect();
            let found = if tx.is_pessimistic() {
                tx.lock_keys(&keys).await.map_err(kv_err)?
            } else {
                tx.batch_get(&keys).await.map_err(kv_err)?
            };
            for (i, v) in found.into_iter().enumerate() {
                if v.is_some() {
                    return Err(probes[i].1.clone());
                }
                // Still checked at prewrite against concurrent writers.
                self.dups.insert(keys[i].clone(), probes[i].1.clone());
            }
        }
        if new_handle != handle {
            self.delete_row(tx, t, handle, old);
            // A new key for the same row: an update to the foreign keys
            // that reference it, not a delete.
            if let Some(foreign_key::Event::Parent { new: n, .. }) = self.fk_events.last_mut() {
                *n = Some(new.clone());
            }
            self.put_row(tx, t, new_handle, &new, true);
            return Ok(());
        }
        if foreign_key::checks_on(self) {
            let changed = |cols: &[String]| {
                cols.iter()
                    .filter_map(|c| t.column(c))
                    .any(|o| old[o] != new[o])
            };
            if t.foreign_keys.iter().any(|f| changed(&f.columns)) {
                self.fk_events
                    .push(foreign_key::Event::Child(t.id, new.clone()));
            }
            if self.is_referenced(t) {
                self.fk_events.push(foreign_key::Event::Parent {
                    table: t.id,
                    old: old.clone(),
                    new: Some(new.clone()),
                });
            }
        }
        self.put(
            tx,
            codec::record_key(t.id, handle),
            table::encode_row(t, &new),
            false,
            true,
        );
        for ix in &t.indexes {
            if ix.columns.iter().all(|&c| old[c] == new[c]) {
                continue;
            }
            let (ok, _) = table::index_entry(t, ix, old, handle);
            self.del(tx, ok, ix.unique);
            if writes_index(ix) {
                let (k, v) = table::index_entry(t, ix, &new, handle);
                self.put(tx, k, v, ix.unique, ix.unique);
            }
        }
        Ok(())
    }

    /// The rows an UPDATE/DELETE touches, locked and re-read at their
    /// newest version in a pessimistic transaction.
    async fn target_rows(
        &self,
        tx: &mut Transaction,
        t: &Arc<TableInfo>,
        alias: &str,
        selection: Option<&Expr>,
        order: &[sqlparser::ast::OrderByExpr],
        limit: Option<&Expr>,
    ) -> Result<Vec<(i64, Row)>, SqlError> {
        let limit = match limit {
            Some(e) => match self.sx.ctx(None).eval(e)? {
                Value::Int(i) if i >= 0 => Some(i as usize),
                Value::UInt(u) => Some(u as usize),
                other => return Err(er::wrong_arguments(&format!("LIMIT {other}"))),
            },
            None => None,
        };
        let rows = {
            let runner = Runner {
                sx: self.sx,
                tx,
                dry: false,
            };
            runner
                .matching_rows(t, alias, selection, order, limit)
                .await?
        };
        if !tx.is_pessimistic() || rows.is_empty() {
            return Ok(rows);
        }
        let keys: Vec<Vec<u8>> = rows
            .iter()
            .map(|(h, _)| codec::record_key(t.id, *h))
            .collect();
        let latest = tx.lock_keys(&keys).await.map_err(kv_err)?;
        let scope = Scope::of_table(t, alias);
        let mut out = Vec::new();
        for ((h, _), v) in rows.into_iter().zip(latest) {
            let Some(v) = v else { continue };
            let row = table::decode_row(t, h, &v)?;
            if let Some(f) = selection {
                if !is_true(&self.sx.eval_row(f, &scope, &row, &Pre::default(), None)?) {
                    continue;
                }
            }
            out.push((h, row));
        }
        Ok(out)
    }

    /// UPDATE (single table).
    pub async fn update(
        &mut self,
        tx: &mut Transaction,
        u: &sqlparser::ast::Update,
    ) -> Result<Output, SqlError> {
        if u.from.is_some() {
            return Err(er::parse("FROM", "UPDATE ... FROM is not MySQL syntax"));
        }
        if !u.table.joins.is_empty()
            || matches!(
                u.table.relation,
                sqlparser::ast::TableFactor::NestedJoin { .. }
            )
        {
            return self.update_joined(tx, u).await;
        }
        let sqlparser::ast::TableFactor::Table { name, alias, .. } = &u.table.relation else {
            return Err(er::not_supported_yet("UPDATE of a derived table"));
        };
        let (_, t) = self.sx.table(name)?;
        if t.view.is_some() {
            return Err(super::view::not_updatable(&t, "UPDATE"));
        }
        let alias = alias
            .as_ref()
            .map_or_else(|| t.name.clone(), |a| a.name.value.clone());
        for a in &u.assignments {
            target_col(&t, a)?;
        }
        let rows = self
            .target_rows(
                tx,
                &t,
                &alias,
                u.selection.as_ref(),
                &u.order_by,
                u.limit.as_ref(),
            )
            .await?;
        let matched = rows.len();
        let mut changed = 0;
        for (h, old) in rows {
            let new = self.assign(&t, &old, &u.assignments, &Pre::default())?;
            if new != old {
                self.update_row(tx, &t, h, &old, new).await?;
                changed += 1;
            }
        }
        self.finish_statement(tx).await?;
        let affected = if self.sx.session.found_rows() {
            matched as u64
        } else {
            changed
        };
        Ok(self.ok(
            affected,
            format!("Rows matched: {matched}  Changed: {changed}  Warnings: 0"),
        ))
    }

    /// DELETE (single table).
    pub async fn delete(
        &mut self,
        tx: &mut Transaction,
        d: &sqlparser::ast::Delete,
    ) -> Result<Output, SqlError> {
        let from = match &d.from {
            sqlparser::ast::FromTable::WithFromKeyword(v)
            | sqlparser::ast::FromTable::WithoutKeyword(v) => v,
        };
        if from.len() != 1 || !from[0].joins.is_empty() || d.using.is_some() || !d.tables.is_empty()
        {
            return self.delete_joined(tx, d, from).await;
        }
        let sqlparser::ast::TableFactor::Table { name, alias, .. } = &from[0].relation else {
            return Err(er::not_supported_yet("DELETE from a derived table"));
        };
        let (_, t) = self.sx.table(name)?;
        if t.view.is_some() {
            return Err(super::view::not_updatable(&t, "DELETE"));
        }
        let alias = alias
            .as_ref()
            .map_or_else(|| t.name.clone(), |a| a.name.value.clone());
        let rows = self
            .target_rows(
                tx,
                &t,
                &alias,
                d.selection.as_ref(),
                &d.order_by,
                d.limit.as_ref(),
            )
            .await?;
        let n = rows.len() as u64;
        for (h, row) in rows {
            self.delete_row(tx, &t, h, &row);
        }
        self.finish_statement(tx).await?;
        Ok(self.ok(n, String::new()))
    }
}

/// The tables of a FROM list by alias (lower case), in FROM order.
fn aliased_tables(
    sx: &Sx<'_>,
    from: &[sqlparser::ast::TableWithJoins],
) -> Result<Vec<(String, Arc<TableInfo>)>, SqlError> {
    fn factor(
        sx: &Sx<'_>,
        f: &sqlparser::ast::TableFactor,
        out: &mut Vec<(String, Arc<TableInfo>)>,
    ) -> Result<(), SqlError> {
        match f {
            sqlparser::ast::TableFactor::Table { name, alias, .. } => {
                if sx.cte(name).is_some() {
                    return Ok(());
                }
                let Ok((_, t)) = sx.table(name) else {
                    return Ok(());
                };
                let a = alias
                    .as_ref()
                    .map_or_else(|| t.name.clone(), |a| a.name.value.clone());
                out.push((a.to_ascii_lowercase(), t));
            }
            sqlparser::ast::TableFactor::NestedJoin {
                table_with_joins, ..
            } => {
                factor(sx, &table_with_joins.relation, out)?;
                for j in &table_with_joins.joins {
                    factor(sx, &j.relation, out)?;
                }
            }
            _ => {}
        }
        Ok(())
    }
    let mut out = Vec::new();
    for t in from {
        factor(sx, &t.relation, &mut out)?;
        for j in &t.joins {
            factor(sx, &j.relation, &mut out)?;
        }
    }
    Ok(out)
}

/// The select list that reads every column of `alias` (`alias`.`c`, ...).
fn columns_of(alias: &str, t: &TableInfo) -> Vec<String> {
    t.columns
        .iter()
        .map(|c| {
            format!(
                "`{}`.`{}`",
                alias.replace('`', "``"),
                c.name.replace('`', "``")
            )
        })
        .collect()
}

impl Writer<'_> {
    /// Runs `SELECT items FROM from [WHERE selection]` for a multi-table
    /// statement: the joined rows it changes.
    async fn joined_rows(
        &self,
        tx: &Transaction,
        items: &[String],
        from: &[sqlparser::ast::TableWithJoins],
        selection: Option<&Expr>,
    ) -> Result<Vec<Row>, SqlError> {
        let from: Vec<String> = from.iter().map(ToString::to_string).collect();
        let mut sql = format!("SELECT {} FROM {}", items.join(", "), from.join(", "));
        if let Some(w) = selection {
            sql.push_str(&format!(" WHERE {w}"));
        }
        let tokens = crate::parser::split(&sql)?;
        let Some(tokens) = tokens.first() else {
            return Ok(Vec::new());
        };
        let crate::parser::Stmt::Query(q) = crate::parser::parse(&sql, tokens)? else {
            return Err(er::unknown(
                "a multi-table statement's rows are not a query".into(),
            ));
        };
        let runner = Runner {
            sx: self.sx,
            tx,
            dry: false,
        };
        Ok(runner.query(&q, None).await?.rows)
    }

    /// The target rows of a multi-table statement: `SELECT` every column
    /// of each target table (then `extra`) over the join; each target row
    /// once (its first match), read current. Returns (target table, handle,
    /// current row, the joined row).
    async fn joined_targets(
        &self,
        tx: &mut Transaction,
        tables: &[(String, Arc<TableInfo>)],
        targets: &[usize],
        extra: &[String],
        from: &[sqlparser::ast::TableWithJoins],
        selection: Option<&Expr>,
    ) -> Result<Vec<(usize, i64, Row, Row)>, SqlError> {
        let mut items = Vec::new();
        let mut at = Vec::new();
        for &i in targets {
            at.push(items.len());
            items.extend(columns_of(&tables[i].0, &tables[i].1));
        }
        items.extend(extra.iter().cloned());
        let rows = self.joined_rows(tx, &items, from, selection).await?;
        let mut seen: std::collections::HashSet<(usize, i64)> = std::collections::HashSet::new();
        let mut out = Vec::new();
        for row in rows {
            for (k, &ti) in targets.iter().enumerate() {
                let t = &tables[ti].1;
                let read: Row = row[at[k]..at[k] + t.columns.len()].to_vec();
                let Some(h) = Self::handle_of(t, &read)? else {
                    continue;
                };
                if !seen.insert((ti, h)) {
                    continue;
                }
                if let Some(old) = self.current(tx, t, h, read).await? {
                    out.push((ti, h, old, row.clone()));
                }
            }
        }
        Ok(out)
    }

    /// The handle of a target row (its integer primary key; a table with
    /// a hidden handle cannot be a target of a multi-table statement yet).
    fn handle_of(t: &TableInfo, row: &[Value]) -> Result<Option<i64>, SqlError> {
        let Some(h) = t.handle_col else {
            return Err(er::not_supported_yet(
                "multi-table UPDATE/DELETE of a table without an integer primary key",
            ));
        };
        Ok(table::handle_of(&row[h]))
    }

    /// The newest version of a target row, locked in a pessimistic
    /// transaction (a current read, as MySQL's UPDATE/DELETE).
    async fn current(
        &self,
        tx: &mut Transaction,
        t: &TableInfo,
        h: i64,
        read: Row,
    ) -> Result<Option<Row>, SqlError> {
        if !tx.is_pessimistic() {
            return Ok(Some(read));
        }
        let latest = tx
            .lock_keys(&[codec::record_key(t.id, h)])
            .await
            .map_err(kv_err)?;
        match latest.into_iter().next().flatten() {
            Some(v) => Ok(Some(table::decode_row(t, h, &v)?)),
            None => Ok(None),
        }
    }

    /// `UPDATE t1 JOIN t2 ON ... SET t1.a = t2.b, ... WHERE ...`: each
    /// matched row of a target table is changed once (its first match),
    /// with values computed over the joined row.
    async fn update_joined(
        &mut self,
        tx: &mut Transaction,
        u: &sqlparser::ast::Update,
    ) -> Result<Output, SqlError> {
        if !u.order_by.is_empty() || u.limit.is_some() {
            return Err(SqlError::of(
                ErrorKind::WrongUsage,
                "Incorrect usage of UPDATE and ORDER BY".into(),
            ));
        }
        let from = std::slice::from_ref(&u.table);
        let tables = aliased_tables(self.sx, from)?;
        // Which table and column each assignment sets.
        let mut sets: Vec<(usize, usize)> = Vec::new();
        for a in &u.assignments {
            let AssignmentTarget::ColumnName(n) = &a.target else {
                return Err(er::not_supported_yet("tuple assignments"));
            };
            let parts: Vec<String> =
                n.0.iter()
                    .map(|p| p.to_string().trim_matches('`').to_string())
                    .collect();
            let (qual, col) = match parts.as_slice() {
                [c] => (None, c.clone()),
                [.., t, c] => (Some(t.to_ascii_lowercase()), c.clone()),
                [] => return Err(er::parse("SET", "empty column name")),
            };
            let hits: Vec<(usize, usize)> = tables
                .iter()
                .enumerate()
                .filter(|(_, (alias, _))| qual.as_ref().is_none_or(|q| q == alias))
                .filter_map(|(i, (_, t))| t.column(&col).map(|c| (i, c)))
                .collect();
            match hits.as_slice() {
                [one] => sets.push(*one),
                [] => return Err(super::schema::unknown_column(&col, "field list")),
                _ => {
                    return Err(SqlError::of(
                        ErrorKind::NonUniq,
                        format!("Column '{col}' in field list is ambiguous"),
                    ))
                }
            }
        }
        let mut targets: Vec<usize> = sets.iter().map(|(t, _)| *t).collect();
        targets.sort_unstable();
        targets.dedup();
        for &i in &targets {
            if tables[i].1.view.is_some() {
                return Err(super::view::not_updatable(&tables[i].1, "UPDATE"));
            }
        }
        let extra: Vec<String> = u
            .assignments
            .iter()
            .map(|a| format!("({})", a.value))
            .collect();
        let values_at: usize = targets.iter().map(|&i| tables[i].1.columns.len()).sum();
        let found = self
            .joined_targets(tx, &tables, &targets, &extra, from, u.selection.as_ref())
            .await?;
        let (mut matched, mut changed) = (0u64, 0u64);
        for (ti, h, old, row) in found {
            let t = tables[ti].1.clone();
            matched += 1;
            let mut new = old.clone();
            let mut assigned = vec![false; t.columns.len()];
            for (j, &(st, c)) in sets.iter().enumerate() {
                if st != ti {
                    continue;
                }
                let v = if is_default(&u.assignments[j].value) {
                    table::default_value(&t.columns[c])?.unwrap_or(Value::Null)
                } else {
                    t.columns[c]
                        .ty
                        .coerce(row[values_at + j].clone(), &t.columns[c].name)?
                };
                if v.is_null() && t.columns[c].not_null {
                    return Err(table::cannot_be_null(&t.columns[c].name));
                }
                new[c] = v;
                assigned[c] = true;
            }
            if new != old {
                for (i, c) in t.columns.iter().enumerate() {
                    if c.on_update_now && !assigned[i] {
                        new[i] = c.ty.coerce(crate::executor::eval::now(), &c.name)?;
                    }
                }
                self.update_row(tx, &t, h, &old, new).await?;
                changed += 1;
            }
        }
        self.finish_statement(tx).await?;
        let affected = if self.sx.session.found_rows() {
            matched
        } else {
            changed
        };
        Ok(self.ok(
            affected,
            format!("Rows matched: {matched}  Changed: {changed}  Warnings: 0"),
        ))
    }

    /// `DELETE t1, t2 FROM t1 JOIN t2 ...` and `DELETE FROM t1, t2 USING
    /// t1 JOIN t2 ...`: each matched row of a target table is deleted once.
    async fn delete_joined(
        &mut self,
        tx: &mut Transaction,
        d: &sqlparser::ast::Delete,
        from: &[sqlparser::ast::TableWithJoins],
    ) -> Result<Output, SqlError> {
        if !d.order_by.is_empty() || d.limit.is_some() {
            return Err(SqlError::of(
                ErrorKind::WrongUsage,
                "Incorrect usage of DELETE and ORDER BY".into(),
            ));
        }
        // The joined tables are USING's when it is there, else FROM's;
        // the targets are the names before FROM (or FROM's with USING).
        let (source, named): (&[sqlparser::ast::TableWithJoins], Vec<String>) = match &d.using {
            Some(using) => (
                using.as_slice(),
                from.iter().map(|t| t.relation.to_string()).collect(),
            ),
            None => (from, d.tables.iter().map(ToString::to_string).collect()),
        };
        let tables = aliased_tables(self.sx, source)?;
        let mut targets = Vec::new();
        for n in &named {
            let n = n.trim_end_matches(".*");
            let last = n
                .rsplit('.')
                .next()
                .unwrap_or(n)
                .trim_matches('`')
                .to_ascii_lowercase();
            let Some(i) = tables.iter().position(|(a, _)| *a == last) else {
                return Err(SqlError::of(
                    ErrorKind::UnknownTable,
                    format!("Unknown table '{last}' in MULTI DELETE"),
                ));
            };
            if tables[i].1.view.is_some() {
                return Err(super::view::not_updatable(&tables[i].1, "DELETE"));
            }
            if !targets.contains(&i) {
                targets.push(i);
            }
        }
        let found = self
            .joined_targets(tx, &tables, &targets, &[], source, d.selection.as_ref())
            .await?;
        let n = found.len() as u64;
        for (ti, h, old, _) in found {
            self.delete_row(tx, &tables[ti].1, h, &old);
        }
        self.finish_statement(tx).await?;
        Ok(self.ok(n, String::new()))
    }
}

fn is_default(e: &Expr) -> bool {
    matches!(e, Expr::Identifier(id) if id.quote_style.is_none() && id.value.eq_ignore_ascii_case("default"))
}

fn eval_or_default(
    ctx: &crate::executor::eval::Ctx<'_>,
    e: &Expr,
) -> Result<Option<Value>, SqlError> {
    if is_default(e) {
        Ok(None)
    } else {
        ctx.eval(e).map(Some)
    }
}
