//! Temporary tables (`CREATE TEMPORARY TABLE`): tables of one session.
//!
//! A temporary table is an ordinary table layout whose rows live in the
//! store under an id of its own (from `ID_BASE` up, never a catalog id),
//! but whose definition is kept here, per connection, and not in the
//! schema: other sessions do not see it, `SHOW TABLES` and
//! `information_schema` do not list it (as MySQL), and it shadows a table
//! of the same name for its session. Its writes are transactional like
//! any other table's. Creating or dropping one does not commit the open
//! transaction (MySQL). At the end of the session its rows are deleted.
//!
//! TiDB keeps local temporary tables in memory; here the rows are in the
//! store, so a temporary table is bounded by the store, not by the
//! server's memory. A server that dies leaves the rows of its temporary
//! tables behind, unreachable (no schema names their id).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sqlparser::ast::{CreateIndex, CreateTable, ObjectName};
use tiox_client::txn::Transaction;

use super::catalog::{kv_err, Catalog};
use super::codec;
use super::ddl;
use super::exec::Sx;
use super::schema::{self, SchemaState, TableInfo};
use crate::backend::Output;
use crate::error::{er, ErrorKind, SqlError};

/// The first id of temporary tables (catalog ids stay far below).
pub const ID_BASE: i64 = 1 << 48;
/// Rows indexed per scan when an index is added.
const BATCH: u32 = 1000;
/// The AUTO_INCREMENT sequence that hands out temporary table ids.
const ID_SEQUENCE: i64 = i64::MAX;

/// One session's temporary tables by (database, table), lower case.
pub type Tables = HashMap<(String, String), Arc<TableInfo>>;

/// Every session's temporary tables.
#[derive(Default)]
pub struct Registry {
    by_conn: Mutex<HashMap<u32, Arc<Tables>>>,
}

/// The key of a table name.
pub fn key(db: &str, table: &str) -> (String, String) {
    (db.to_lowercase(), table.to_lowercase())
}

impl Registry {
    /// Connection `conn`'s tables now.
    pub fn of(&self, conn: u32) -> Arc<Tables> {
        self.lock().get(&conn).cloned().unwrap_or_default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Arc<Tables>>> {
        self.by_conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn edit<T>(&self, conn: u32, f: impl FnOnce(&mut Tables) -> T) -> T {
        let mut all = self.lock();
        let mut tables = (**all.entry(conn).or_default()).clone();
        let out = f(&mut tables);
        all.insert(conn, Arc::new(tables));
        out
    }

    /// `CREATE TEMPORARY TABLE`.
    pub async fn create(
        &self,
        sx: &Sx<'_>,
        catalog: &Arc<Catalog>,
        ct: &CreateTable,
    ) -> Result<Output, SqlError> {
        if ct.query.is_some() || ct.like.is_some() || ct.clone.is_some() {
            return Err(er::not_supported_yet(
                "CREATE TEMPORARY TABLE ... AS SELECT / LIKE",
            ));
        }
        let (db, name) = ddl::db_and_table(sx, &ct.name)?;
        let mut info = ddl::table_from_create(&name, ct)?;
        let Some(d) = sx.schema.db(&db) else {
            return Err(er::bad_db(&db));
        };
        info.db_id = d.id;
        let conn = sx.session.conn_id;
        if self.of(conn).contains_key(&key(&db, &name)) {
            return if ct.if_not_exists {
                Ok(Output::ok())
            } else {
                Err(SqlError::of(
                    ErrorKind::TableExists,
                    format!("Table '{name}' already exists"),
                ))
            };
        }
        info.id = ID_BASE + catalog.alloc_auto(ID_SEQUENCE, 1).await?;
        self.edit(conn, |t| t.insert(key(&db, &name), Arc::new(info)));
        Ok(Output::ok())
    }

    /// Drops the temporary tables among `names`; returns the names that
    /// are not temporary tables of this session.
    pub fn drop(
        &self,
        sx: &Sx<'_>,
        catalog: &Arc<Catalog>,
        names: &[ObjectName],
    ) -> Result<Vec<ObjectName>, SqlError> {
        let conn = sx.session.conn_id;
        let mut rest = Vec::new();
        for n in names {
            let (db, t) = ddl::db_and_table(sx, n)?;
            match self.edit(conn, |m| m.remove(&key(&db, &t))) {
                Some(info) => purge(catalog, info.id),
                None => rest.push(n.clone()),
            }
        }
        Ok(rest)
    }

    /// `TRUNCATE` of a temporary table: a fresh id, the old rows deleted.
    /// `false` if `name` is no temporary table of this session.
    pub async fn truncate(
        &self,
        sx: &Sx<'_>,
        catalog: &Arc<Catalog>,
        name: &ObjectName,
    ) -> Result<bool, SqlError> {
        let conn = sx.session.conn_id;
        let (db, t) = ddl::db_and_table(sx, name)?;
        let Some(old) = self.of(conn).get(&key(&db, &t)).cloned() else {
            return Ok(false);
        };
        let mut fresh = (*old).clone();
        fresh.id = ID_BASE + catalog.alloc_auto(ID_SEQUENCE, 1).await?;
        self.edit(conn, |m| m.insert(key(&db, &t), Arc::new(fresh)));
        purge(catalog, old.id);
        Ok(true)
    }

    /// `CREATE INDEX` on a temporary table: public at once (no other
    /// session sees the table), its entries written in `txn`. `false` if
    /// the table is no temporary table of this session.
    pub async fn add_index(
        &self,
        sx: &Sx<'_>,
        txn: &mut Transaction,
        ci: &CreateIndex,
    ) -> Result<bool, SqlError> {
        let conn = sx.session.conn_id;
        let (db, t) = ddl::db_and_table(sx, &ci.table_name)?;
        let Some(old) = self.of(conn).get(&key(&db, &t)).cloned() else {
            return Ok(false);
        };
        let mut info = (*old).clone();
        let name = ci.name.as_ref().map(|n| ddl::unquote(n).join("."));
        if let Some(n) = &name {
            if info.index(n).is_some() && ci.if_not_exists {
                return Ok(true);
            }
        }
        let cols = ddl::index_columns(ci);
        let iid = schema::add_index(
            &mut info,
            name,
            &cols,
            ci.unique,
            false,
            SchemaState::Public,
        )?;
        let Some(ix) = info.indexes.iter().find(|i| i.id == iid).cloned() else {
            return Err(er::unknown("index vanished while it was added".into()));
        };
        let end = codec::prefix_end(&codec::record_prefix(info.id));
        let mut cursor = codec::record_prefix(info.id);
        loop {
            let batch = txn.scan(&cursor, &end, BATCH).await.map_err(kv_err)?;
            ddl::index_rows(txn, &info, &ix, &batch).await?;
            match batch.last() {
                Some((k, _)) if batch.len() == BATCH as usize => {
                    cursor = k.clone();
                    cursor.push(0);
                }
                _ => break,
            }
        }
        self.edit(conn, |m| m.insert(key(&db, &t), Arc::new(info)));
        Ok(true)
    }

    /// `DROP INDEX` on a temporary table (its entries stay until the
    /// table goes: nothing reads them). `false` if the table is no
    /// temporary table of this session.
    pub fn drop_index(
        &self,
        sx: &Sx<'_>,
        table: &ObjectName,
        index: &str,
    ) -> Result<bool, SqlError> {
        let conn = sx.session.conn_id;
        let (db, t) = ddl::db_and_table(sx, table)?;
        let Some(old) = self.of(conn).get(&key(&db, &t)).cloned() else {
            return Ok(false);
        };
        let mut info = (*old).clone();
        let before = info.indexes.len();
        info.indexes
            .retain(|i| !i.name.eq_ignore_ascii_case(index) || i.primary);
        if info.indexes.len() == before {
            return Err(SqlError::of(
                ErrorKind::CantDropFieldOrKey,
                format!("Can't DROP '{index}'; check that column/key exists"),
            ));
        }
        self.edit(conn, |m| m.insert(key(&db, &t), Arc::new(info)));
        Ok(true)
    }

    /// Whether `name` is a temporary table of this session.
    pub fn is_temporary_name(&self, sx: &Sx<'_>, name: &ObjectName) -> Result<bool, SqlError> {
        let (db, t) = ddl::db_and_table(sx, name)?;
        Ok(self.of(sx.session.conn_id).contains_key(&key(&db, &t)))
    }

    /// The session ended: its tables go.
    pub fn close(&self, catalog: &Arc<Catalog>, conn: u32) {
        if let Some(tables) = self.lock().remove(&conn) {
            for t in tables.values() {
                purge(catalog, t.id);
            }
        }
    }
}

fn purge(catalog: &Arc<Catalog>, id: i64) {
    catalog.forget_auto(id);
    ddl::purge_later(catalog, codec::table_prefix(id));
}

/// Whether `t` is a temporary table.
pub fn is_temporary(t: &TableInfo) -> bool {
    t.id >= ID_BASE
}
