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
//!  m/s/{server}   a tidb-server's loaded schema version and heartbeat
//! ```
//!
//! Meta keys start with `m`, outside every table's `t` range, as TiDB's.
//! A DDL statement is one optimistic transaction that reads the schema,
//! edits it and bumps the version; two servers changing the schema at once
//! conflict and the loser retries on the new schema. Each server checks the
//! version at most once per [`SCHEMA_LEASE`] and reloads when it moved, so a
//! schema change is seen by every server within one lease; multi-step
//! changes (indexes) wait, between steps, until every server has loaded
//! the new version ([`Catalog::wait_for_servers`]), at most two leases.
//!
//! Acknowledgements: each server registers `m/s/{server}` BEFORE it first
//! loads the schema, then a background task ([`Catalog::keep_up`]) polls
//! the version every [`ACK_POLL`], reloads when it moved and writes the
//! oldest version its running statements use with a heartbeat (PD's
//! clock, so no skew between servers). A DDL step that sees every registered server at its version
//! may go on at once: each of them runs its statements on that version
//! from then on, and a server that registered later loaded the schema
//! after registering, so after the step committed. A registration
//! without a fresh heartbeat (a paused, partitioned or just stopped
//! server) gives no such proof, and the step waits out the two leases as
//! before; one silent for [`DEAD_AFTER`] is removed.
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
use crate::error::{er, ErrorKind, SqlError};

/// How long a server trusts its cached schema without checking the version.
pub const SCHEMA_LEASE: Duration = Duration::from_millis(1000);

/// AUTO_INCREMENT values taken from the cluster at a time.
pub const AUTO_ID_BATCH: i64 = 4000;

const VERSION_KEY: &[u8] = b"m/v";
const SERVERS_START: &[u8] = b"m/s/";
const SERVERS_END: &[u8] = b"m/s0";

/// How often a server looks for a new schema version.
pub const ACK_POLL: Duration = Duration::from_millis(100);

/// A registration whose heartbeat is older than this proves nothing.
const FRESH: Duration = Duration::from_millis(3000);

/// A registration silent this long belongs to a stopped server.
pub const DEAD_AFTER: Duration = Duration::from_secs(30);

fn server_key(id: u64) -> Vec<u8> {
    format!("m/s/{id:016x}").into_bytes()
}

/// The physical part (milliseconds) of a PD timestamp.
fn physical_ms(ts: u64) -> u64 {
    ts >> 18
}
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
        tiox_client::Error::Locked { .. } => SqlError::of(
            ErrorKind::LockWaitTimeout,
            "Lock wait timeout exceeded; try restarting transaction".into(),
        ),
        tiox_client::Error::Conflict { key, .. } => write_conflict(&key),
        tiox_client::Error::Deadlock { .. } => SqlError::of(
            ErrorKind::LockDeadlock,
            "Deadlock found when trying to get lock; try restarting transaction".into(),
        ),
        other => SqlError::of(
            ErrorKind::RegionUnavailable,
            format!("the cluster could not serve the request: {other}"),
        ),
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
    SqlError::of(ErrorKind::WriteConflict, format!("Write conflict on {what}: another transaction changed it after this transaction started; the transaction was rolled back [try again later]"))
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
    /// This server's registration key suffix.
    server_id: u64,
    /// One registration write at a time (they write the same key).
    announcing: tokio::sync::Mutex<()>,
    /// Running statements per schema version they run on.
    active: Arc<Mutex<BTreeMap<u64, usize>>>,
}

/// A running statement's hold on its schema version: while it lives, this
/// server does not acknowledge a newer version.
#[derive(Debug)]
pub struct SchemaUse {
    version: u64,
    active: Arc<Mutex<BTreeMap<u64, usize>>>,
}

impl Drop for SchemaUse {
    fn drop(&mut self) {
        let mut a = self.active.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = a.get_mut(&self.version) {
            *n -= 1;
            if *n == 0 {
                a.remove(&self.version);
            }
        }
    }
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
            active: Arc::new(Mutex::new(BTreeMap::new())),
            announcing: tokio::sync::Mutex::new(()),
            server_id: u64::from_le_bytes(
                crate::auth::random_bytes(8)
                    .try_into()
                    .unwrap_or([1, 0, 0, 0, 0, 0, 0, 0]),
            ),
        };
        // Registered before the first load (see the module docs).
        c.announce(0).await?;
        let s = c.refresh(true).await?;
        c.announce(s.version).await?;
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

    /// Writes this server's registration: the schema version it uses,
    /// with PD's time as the heartbeat.
    async fn announce(&self, version: u64) -> Result<(), SqlError> {
        let _one = self.announcing.lock().await;
        let mut last = None;
        // A conflict: a step removing registrations it took for dead.
        for _ in 0..3 {
            let mut txn = self.txn.begin().await.map_err(kv_err)?;
            let beat = physical_ms(txn.start_ts());
            txn.put(
                server_key(self.server_id),
                format!("{version} {beat}").into_bytes(),
            );
            match txn.commit().await {
                Ok(_) => return Ok(()),
                Err(e @ tiox_client::Error::Conflict { .. }) => last = Some(e),
                Err(e) => return Err(kv_err(e)),
            }
        }
        Err(last.map_or_else(|| er::unknown("registration failed".into()), kv_err))
    }

    /// Follows the schema version in the background and keeps this
    /// server's registration fresh, until the catalog is dropped.
    pub fn keep_up(self: &Arc<Self>) {
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut announced = (0u64, std::time::Instant::now());
            loop {
                tokio::time::sleep(ACK_POLL).await;
                let Some(c) = me.upgrade() else { return };
                let step = async {
                    let latest =
                        parse_i64(c.txn.get_latest(VERSION_KEY).await.map_err(kv_err)?) as u64;
                    if latest
                        != c.cache
                            .read()
                            .unwrap_or_else(|e| e.into_inner())
                            .schema
                            .version
                    {
                        c.refresh(true).await?;
                    }
                    let version = c.cached_version();
                    if version != announced.0 || announced.1.elapsed() >= SCHEMA_LEASE {
                        c.announce(version).await?;
                        announced = (version, std::time::Instant::now());
                    }
                    Ok::<(), SqlError>(())
                };
                if let Err(e) = step.await {
                    tracing::debug!(error = %e, "schema version check failed; retrying");
                }
            }
        });
    }

    /// The oldest schema version a statement of this server still runs
    /// on (the cached one when none runs on an older one): what this
    /// server may acknowledge.
    /// The schema in the cache, whether or not its lease has run out.
    fn cached_schema(&self) -> Arc<Schema> {
        self.cache
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .schema
            .clone()
    }

    fn cached_version(&self) -> u64 {
        // Under the `active` lock, as `hold_current`: a statement either
        // registered its version already or will read the newer schema.
        let active = self.active.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.cached_schema().version;
        active.keys().next().map_or(current, |&v| v.min(current))
    }

    /// The cached schema, held by a statement until the hold drops (call
    /// [`Catalog::schema`] first to have it checked against the lease).
    pub fn hold_current(&self) -> (Arc<Schema>, SchemaUse) {
        let mut active = self.active.lock().unwrap_or_else(|e| e.into_inner());
        let schema = self.cached_schema();
        *active.entry(schema.version).or_insert(0) += 1;
        let hold = SchemaUse {
            version: schema.version,
            active: self.active.clone(),
        };
        (schema, hold)
    }

    /// Waits until every registered server uses schema version `target`
    /// or newer, or for two leases (after which every server has checked
    /// the version anyway). Registrations silent for [`DEAD_AFTER`] are
    /// removed.
    pub async fn wait_for_servers(&self, target: u64) -> Result<(), SqlError> {
        let start = std::time::Instant::now();
        while start.elapsed() < SCHEMA_LEASE * 2 {
            let ts = self.txn.current_ts().await.map_err(kv_err)?;
            let now = physical_ms(ts);
            let mut all = true;
            for (k, v) in self
                .txn
                .snapshot_scan(SERVERS_START, SERVERS_END, u32::MAX, ts)
                .await
                .map_err(kv_err)?
            {
                let text = String::from_utf8_lossy(&v);
                let mut it = text.split(' ').map(|x| x.parse::<u64>().ok());
                let (Some(Some(version)), Some(Some(beat))) = (it.next(), it.next()) else {
                    all = false;
                    continue;
                };
                let age = Duration::from_millis(now.saturating_sub(beat));
                if age > DEAD_AFTER {
                    let mut txn = self.txn.begin().await.map_err(kv_err)?;
                    txn.delete(k);
                    // Best effort: a conflict means the server is back.
                    let _ = txn.commit().await;
                } else if age > FRESH || version < target {
                    all = false;
                }
            }
            if all {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
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
        let current = self.cached_schema();
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
                    // Best effort: `keep_up` announces within a poll too.
                    if let Err(e) = self.announce(self.cached_version()).await {
                        tracing::debug!(error = %e, "schema version not announced yet");
                    }
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
