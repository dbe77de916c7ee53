//! The catalog: databases and tables stored in the cluster under meta keys,
//! a per-server cache of them, and id allocation (object ids and
//! AUTO_INCREMENT values).
//!
//! ```text
//!  m/v            schema version (bumped by every DDL)
//!  m/id           next object id (databases, tables)
//!  m/d/{id}       a database (JSON)
//!  m/t/{id}       a table (JSON, names its database)
//!  m/a/{id}       the next unallocated AUTO_INCREMENT / hidden handle
//! ```
//!
//! Meta keys start with `m`, outside every table's `t` range, as TiDB's.
//! A DDL statement is one optimistic transaction that reads the schema,
//! edits it and bumps the version; two servers changing the schema at once
//! conflict and the loser retries on the new schema. Each server checks the
//! version at most once per [`SCHEMA_LEASE`] and reloads when it moved, so a
//! schema change is seen by every server within one lease; multi-step
//! changes (indexes) wait two leases between steps, as TiDB does.
//!
//! AUTO_INCREMENT values are taken from the cluster in batches of
//! [`AUTO_ID_BATCH`] per server and table (so values are unique across
//! servers and increasing per server, not consecutive across them — TiDB's
//! behaviour).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tiox_client::txn::TxnClient;

use super::schema::{DbInfo, TableInfo};
use crate::error::{er, SqlError};

/// How long a server trusts its cached schema without checking the version.
pub const SCHEMA_LEASE: Duration = Duration::from_millis(1000);

/// AUTO_INCREMENT values taken from the cluster at a time.
pub const AUTO_ID_BATCH: i64 = 4000;

const VERSION_KEY: &[u8] = b"m/v";
const NEXT_ID_KEY: &[u8] = b"m/id";

fn db_key(id: i64) -> Vec<u8> {
    format!("m/d/{id:020}").into_bytes()
}

fn table_key(id: i64) -> Vec<u8> {
    format!("m/t/{id:020}").into_bytes()
}

fn auto_key(id: i64) -> Vec<u8> {
    format!("m/a/{id:020}").into_bytes()
}

/// A cluster error as a MySQL error.
pub fn kv_err(e: tiox_client::Error) -> SqlError {
    match e {
        tiox_client::Error::Locked { .. } => SqlError {
            code: 1205,
            state: "HY000",
            message: "Lock wait timeout exceeded; try restarting transaction".into(),
        },
        tiox_client::Error::Conflict { key, .. } => write_conflict(&key),
        tiox_client::Error::Deadlock { .. } => SqlError {
            code: 1213,
            state: "40001",
            message: "Deadlock found when trying to get lock; try restarting transaction".into(),
        },
        other => SqlError {
            code: 9005,
            state: "HY000",
            message: format!("the cluster could not serve the request: {other}"),
        },
    }
}

/// A write conflict at commit (TiDB's code 9007), naming the key
/// (`t{table}_r{handle}`, `t{table}_i{index}`, or hex).
pub fn write_conflict(key: &[u8]) -> SqlError {
    let what = match super::codec::decode_record_key(key) {
        Ok((t, h)) => format!("row {h} of table id {t}"),
        Err(_) => match super::codec::table_id_of(key) {
            Some(t) => format!("an index entry of table id {t}"),
            None => key.iter().map(|b| format!("{b:02x}")).collect(),
        },
    };
    SqlError {
        code: 9007,
        state: "HY000",
        message: format!("Write conflict on {what}: another transaction changed it after this transaction started; the transaction was rolled back [try again later]"),
    }
}

fn decode_err(what: &str, e: impl std::fmt::Display) -> SqlError {
    er::unknown(format!("the catalog entry {what} is unreadable: {e}"))
}

/// A consistent snapshot of the schema.
#[derive(Debug, Default, Clone)]
pub struct Schema {
    /// Version it was read at.
    pub version: u64,
    /// Databases by id.
    pub dbs: BTreeMap<i64, DbInfo>,
    /// Tables by id.
    pub tables: BTreeMap<i64, Arc<TableInfo>>,
    /// Next object id.
    pub next_id: i64,
}

impl Schema {
    /// The database called `name` (case-insensitive, as TiDB's default).
    pub fn db(&self, name: &str) -> Option<&DbInfo> {
        self.dbs
            .values()
            .find(|d| d.name.eq_ignore_ascii_case(name))
    }

    /// The table `db`.`name`.
    pub fn table(&self, db: &str, name: &str) -> Option<Arc<TableInfo>> {
        let d = self.db(db)?;
        self.tables
            .values()
            .find(|t| t.db_id == d.id && t.name.eq_ignore_ascii_case(name))
            .cloned()
    }

    /// The tables of database `db_id`, by name.
    pub fn tables_of(&self, db_id: i64) -> Vec<Arc<TableInfo>> {
        let mut v: Vec<_> = self
            .tables
            .values()
            .filter(|t| t.db_id == db_id)
            .cloned()
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// A fresh object id.
    pub fn alloc_id(&mut self) -> i64 {
        self.next_id += 1;
        self.next_id
    }
}

struct Cached {
    schema: Arc<Schema>,
    checked: Instant,
}

/// The per-server catalog (see the module docs).
pub struct Catalog {
    txn: TxnClient,
    cache: RwLock<Cached>,
    reload: tokio::sync::Mutex<()>,
    auto: Mutex<HashMap<i64, (i64, i64)>>,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Catalog")
    }
}

fn parse_i64(v: Option<Vec<u8>>) -> i64 {
    v.and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

impl Catalog {
    /// A catalog over the cluster; loads the schema and creates the `test`
    /// database on a new cluster.
    pub async fn open(txn: TxnClient) -> Result<Catalog, SqlError> {
        let c = Catalog {
            txn,
            cache: RwLock::new(Cached {
                schema: Arc::new(Schema::default()),
                checked: Instant::now() - SCHEMA_LEASE * 2,
            }),
            reload: tokio::sync::Mutex::new(()),
            auto: Mutex::new(HashMap::new()),
        };
        let s = c.refresh(true).await?;
        if s.version == 0 {
            c.ddl(|s| {
                if s.db("test").is_none() {
                    let id = s.alloc_id();
                    s.dbs.insert(
                        id,
                        DbInfo {
                            id,
                            name: "test".into(),
                        },
                    );
                }
                Ok(())
            })
            .await?;
        }
        Ok(c)
    }

    /// The transactional client the catalog uses.
    pub fn txn(&self) -> &TxnClient {
        &self.txn
    }

    /// The schema, checked against the cluster's version at most once per
    /// lease.
    pub async fn schema(&self) -> Result<Arc<Schema>, SqlError> {
        {
            let c = self.cache.read().unwrap_or_else(|e| e.into_inner());
            if c.checked.elapsed() < SCHEMA_LEASE {
                return Ok(c.schema.clone());
            }
        }
        self.refresh(false).await
    }

    async fn refresh(&self, force: bool) -> Result<Arc<Schema>, SqlError> {
        let _g = self.reload.lock().await;
        {
            let c = self.cache.read().unwrap_or_else(|e| e.into_inner());
            if !force && c.checked.elapsed() < SCHEMA_LEASE {
                return Ok(c.schema.clone());
            }
        }
        let version = parse_i64(self.txn.get_latest(VERSION_KEY).await.map_err(kv_err)?) as u64;
        let current = self
            .cache
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .schema
            .clone();
        let schema = if version == current.version && !force {
            current
        } else {
            let ts = self.txn.current_ts().await.map_err(kv_err)?;
            Arc::new(self.load_at(ts).await?)
        };
        let mut c = self.cache.write().unwrap_or_else(|e| e.into_inner());
        c.schema = schema.clone();
        c.checked = Instant::now();
        Ok(schema)
    }

    async fn load_at(&self, ts: u64) -> Result<Schema, SqlError> {
        let get = |k: &'static [u8]| self.txn.snapshot_get(k, ts);
        let version = parse_i64(get(VERSION_KEY).await.map_err(kv_err)?) as u64;
        let next_id = parse_i64(get(NEXT_ID_KEY).await.map_err(kv_err)?);
        let mut s = Schema {
            version,
            next_id,
            ..Default::default()
        };
        for (k, v) in self
            .txn
            .snapshot_scan(b"m/d/", b"m/d0", u32::MAX, ts)
            .await
            .map_err(kv_err)?
        {
            let d: DbInfo = serde_json::from_slice(&v)
                .map_err(|e| decode_err(&String::from_utf8_lossy(&k), e))?;
            s.dbs.insert(d.id, d);
        }
        for (k, v) in self
            .txn
            .snapshot_scan(b"m/t/", b"m/t0", u32::MAX, ts)
            .await
            .map_err(kv_err)?
        {
            let t: TableInfo = serde_json::from_slice(&v)
                .map_err(|e| decode_err(&String::from_utf8_lossy(&k), e))?;
            s.tables.insert(t.id, Arc::new(t));
        }
        Ok(s)
    }

    /// Runs a schema change: `edit` changes a copy of the current schema
    /// (it may run more than once on a conflict); the differences are
    /// written and the version bumped in one transaction. Returns `edit`'s
    /// result from the run that committed.
    pub async fn ddl<T>(
        &self,
        mut edit: impl FnMut(&mut Schema) -> Result<T, SqlError>,
    ) -> Result<T, SqlError> {
        for _ in 0..20 {
            let mut txn = self.txn.begin().await.map_err(kv_err)?;
            let before = self.load_at(txn.start_ts()).await?;
            let mut after = before.clone();
            let out = edit(&mut after)?;
            for (id, d) in &after.dbs {
                if before.dbs.get(id) != Some(d) {
                    txn.put(
                        db_key(*id),
                        serde_json::to_vec(d).map_err(|e| decode_err("db", e))?,
                    );
                }
            }
            for id in before.dbs.keys().filter(|id| !after.dbs.contains_key(id)) {
                txn.delete(db_key(*id));
            }
            for (id, t) in &after.tables {
                if before.tables.get(id) != Some(t) {
                    txn.put(
                        table_key(*id),
                        serde_json::to_vec(t.as_ref()).map_err(|e| decode_err("table", e))?,
                    );
                }
            }
            for id in before
                .tables
                .keys()
                .filter(|id| !after.tables.contains_key(id))
            {
                txn.delete(table_key(*id));
                txn.delete(auto_key(*id));
            }
            txn.put(NEXT_ID_KEY.to_vec(), after.next_id.to_string().into_bytes());
            txn.put(
                VERSION_KEY.to_vec(),
                (before.version + 1).to_string().into_bytes(),
            );
            match txn.commit().await {
                Ok(_) => {
                    self.refresh(true).await?;
                    return Ok(out);
                }
                Err(tiox_client::Error::Conflict { .. }) => continue,
                Err(e) => return Err(kv_err(e)),
            }
        }
        Err(er::unknown(
            "too many concurrent schema changes; retry the statement".into(),
        ))
    }

    /// Allocates `n` consecutive AUTO_INCREMENT values (or hidden handles)
    /// for table `id`; returns the first.
    pub async fn alloc_auto(&self, table: i64, n: i64) -> Result<i64, SqlError> {
        {
            let mut a = self.auto.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((next, end)) = a.get_mut(&table) {
                if *next + n <= *end {
                    let first = *next;
                    *next += n;
                    return Ok(first);
                }
            }
        }
        let want = n.max(AUTO_ID_BATCH);
        let first = self.take_auto(table, want, None).await?;
        let mut a = self.auto.lock().unwrap_or_else(|e| e.into_inner());
        a.insert(table, (first + n, first + want));
        Ok(first)
    }

    /// An explicit value `v` was written to the AUTO_INCREMENT column:
    /// later allocations (here and on other servers) stay above it.
    pub async fn rebase_auto(&self, table: i64, v: i64) -> Result<(), SqlError> {
        {
            let mut a = self.auto.lock().unwrap_or_else(|e| e.into_inner());
            match a.get_mut(&table) {
                Some((next, end)) if v < *next => return Ok(()),
                Some((next, end)) if v < *end - 1 => {
                    *next = v + 1;
                    let _ = end;
                    return Ok(());
                }
                _ => {}
            }
        }
        self.take_auto(table, 0, Some(v + 1)).await?;
        self.auto
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&table);
        Ok(())
    }

    /// Reserves `[next, next + n)` in the cluster, first raising the
    /// stored next value to `at_least`.
    async fn take_auto(&self, table: i64, n: i64, at_least: Option<i64>) -> Result<i64, SqlError> {
        for _ in 0..50 {
            let mut txn = self.txn.begin().await.map_err(kv_err)?;
            let stored = parse_i64(txn.get(&auto_key(table)).await.map_err(kv_err)?).max(1);
            let first = stored.max(at_least.unwrap_or(0));
            txn.put(auto_key(table), (first + n).to_string().into_bytes());
            match txn.commit().await {
                Ok(_) => return Ok(first),
                Err(tiox_client::Error::Conflict { .. }) => continue,
                Err(e) => return Err(kv_err(e)),
            }
        }
        Err(er::unknown(
            "AUTO_INCREMENT allocation kept conflicting; retry".into(),
        ))
    }

    /// Forgets the cached AUTO_INCREMENT range of a table (after TRUNCATE).
    pub fn forget_auto(&self, table: i64) {
        self.auto
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&table);
    }
}
