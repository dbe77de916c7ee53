//! The SQL engine: tables and indexes in the cluster, transactions, and
//! MySQL-compatible statements — the [`Backend`] `tidb-server` runs with
//! `--store=tikv`.
//!
//! ```text
//!  Engine (Backend)
//!   ├─ catalog  schema in meta keys, cached per lease; ids, AUTO_INCREMENT
//!   ├─ exec     SELECT: FROM + WHERE (plan, planner, operator), then the
//!   │           bound tail (planner::select) or the syntax path
//!   ├─ expr     bound expressions, the binder, functions by family
//!   ├─ memory   per-statement tracker: quota, deadline, KILL flag
//!   ├─ dml      INSERT / REPLACE / UPDATE / DELETE, index maintenance
//!   │  └─ foreign_key  checks and cascades at the statement's end
//!   ├─ ddl      CREATE/DROP/ALTER/TRUNCATE, online index backfill
//!   ├─ view, temporary  views; per-session temporary tables
//!   ├─ show     SHOW ..., DESCRIBE, information_schema
//!   ├─ table    row and index entries of one table   ┐ TiDB's table codec
//!   ├─ codec    keys, memcomparable datums, row v2    ┘
//!   └─ types    column types and MySQL's conversions
//!  statements it does not own (accounts, SET, SHOW VARIABLES, ...) go to
//!  executor::Interim
//! ```
//!
//! Transactions: every statement runs in a cluster transaction. With
//! autocommit, a statement is its own optimistic transaction, and a write
//! conflict at commit re-runs the statement on a fresh snapshot (it has
//! shown the client nothing yet, so this is invisible and safe). `BEGIN`
//! (or `autocommit=0`) opens a transaction that lives until COMMIT or
//! ROLLBACK; it is pessimistic by default (`tidb_txn_mode`, `BEGIN
//! OPTIMISTIC`), so UPDATE/DELETE lock their rows and wait instead of
//! failing at commit. A conflict at COMMIT of an explicit transaction is
//! ERROR 9007 and is never retried: the transaction may have acted on what
//! it read. A failing statement inside a transaction undoes only its own
//! writes.

pub mod catalog;
pub mod codec;
pub mod ddl;
pub mod dml;
pub mod exec;
pub mod expr;
pub mod foreign_key;
pub mod fuzz;
pub mod memory;
pub mod operator;
pub mod plan;
pub mod planner;
pub mod schema;
pub mod show;
pub mod table;
pub mod temporary;
pub mod types;
pub mod view;
pub mod walk;

use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlparser::ast::{Statement, TableFactor};
use tiox_client::txn::{Transaction, TxnClient};

use crate::backend::{
    Backend, BoxFuture, Column, Output, Prepared, QueryResult, ResultSet, Session,
};
use crate::error::{er, Error, ErrorKind, SqlError};
use crate::executor::Interim;
use crate::parser::{self, ShowFilter, Stmt, Tokens};
use crate::users::UserRecord;
use crate::value::Value;
use catalog::{kv_err, write_conflict, Catalog};
use dml::{DupMessages, Writer};
use exec::{Runner, Sx};

/// Conflicting autocommit statements are re-run at most this often.
const AUTOCOMMIT_RETRIES: usize = 10;

/// How often MVCC garbage collection runs (TiDB's `tikv_gc_run_interval`).
pub const GC_RUN_INTERVAL: Duration = Duration::from_secs(600);

/// How long old versions are kept (TiDB's `tikv_gc_life_time`): a
/// transaction may read a snapshot this old.
pub const GC_LIFE_TIME: Duration = Duration::from_secs(600);

/// How long a session trusts its cached account record (privileges).
const PRIVILEGE_CACHE: Duration = Duration::from_secs(1);

/// The SQL engine (see the module docs).
pub struct Engine {
    catalog: Arc<Catalog>,
    txn: TxnClient,
    interim: Interim,
    /// Every session's temporary tables.
    temps: temporary::Registry,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Engine")
    }
}

/// A session's engine state.
#[derive(Default)]
struct State {
    txn: Option<Transaction>,
    /// `SAVEPOINT`s of the open transaction, oldest first.
    savepoints: Vec<(String, tiox_client::txn::Savepoint)>,
    dups: DupMessages,
    me: Option<(UserRecord, Instant)>,
}

struct Plan {
    sql: String,
    tokens: Tokens,
    /// Parsed once at prepare time.
    stmt: Stmt,
}

fn take_state(session: &mut Session) -> State {
    session
        .state
        .value
        .take()
        .and_then(|b| b.downcast::<State>().ok())
        .map(|b| *b)
        .unwrap_or_default()
}

fn put_state(session: &mut Session, st: State) {
    session.state.in_transaction = st.txn.is_some();
    session.state.value = Some(Box::new(st));
}

fn commit_err(e: tiox_client::Error, dups: &DupMessages) -> SqlError {
    match e {
        tiox_client::Error::AlreadyExist { key } => {
            dups.get(&key).cloned().unwrap_or(SqlError::of(
                ErrorKind::DupEntry,
                "Duplicate entry for a unique key".into(),
            ))
        }
        tiox_client::Error::Conflict { key, .. } => write_conflict(&key),
        other => kv_err(other),
    }
}

/// What privilege a statement needs on its database.
fn privilege_of(st: &Statement) -> Option<&'static str> {
    Some(match st {
        Statement::Insert(i) if i.replace_into => "INSERT",
        Statement::Insert(_) => "INSERT",
        Statement::Update(_) => "UPDATE",
        Statement::Delete(_) => "DELETE",
        Statement::CreateTable(_) | Statement::CreateDatabase { .. } | Statement::CreateView(_) => {
            "CREATE"
        }
        Statement::AlterView(_) => "ALTER",
        Statement::Drop { .. } | Statement::Truncate(_) => "DROP",
        Statement::CreateIndex(_) => "INDEX",
        Statement::AlterTable(_) | Statement::RenameTable(_) => "ALTER",
        _ => return None,
    })
}

/// The database a statement works in (its first named table's, or the
/// current one).
fn statement_db(session: &Session, st: &Statement) -> Option<String> {
    let from_name = |n: &sqlparser::ast::ObjectName| -> Option<String> {
        if n.0.len() == 2 {
            Some(n.0[0].to_string().trim_matches('`').to_string())
        } else {
            session.db.clone()
        }
    };
    match st {
        Statement::Insert(i) => match &i.table {
            sqlparser::ast::TableObject::TableName(n) => from_name(n),
            _ => session.db.clone(),
        },
        Statement::Update(u) => match &u.table.relation {
            TableFactor::Table { name, .. } => from_name(name),
            _ => session.db.clone(),
        },
        Statement::Delete(d) => match &d.from {
            sqlparser::ast::FromTable::WithFromKeyword(v)
            | sqlparser::ast::FromTable::WithoutKeyword(v) => {
                match v.first().map(|t| &t.relation) {
                    Some(TableFactor::Table { name, .. }) => from_name(name),
                    _ => session.db.clone(),
                }
            }
        },
        Statement::CreateTable(c) => from_name(&c.name),
        Statement::CreateView(v) => from_name(&v.name),
        Statement::AlterView(a) => from_name(&a.name),
        Statement::CreateDatabase { db_name, .. } => {
            Some(db_name.to_string().trim_matches('`').to_string())
        }
        Statement::Drop {
            names, object_type, ..
        } => match object_type {
            sqlparser::ast::ObjectType::Database | sqlparser::ast::ObjectType::Schema => names
                .first()
                .map(|n| n.to_string().trim_matches('`').to_string()),
            _ => names.first().and_then(from_name),
        },
        Statement::CreateIndex(c) => from_name(&c.table_name),
        Statement::AlterTable(a) => from_name(&a.name),
        Statement::Truncate(t) => t.table_names.first().and_then(|n| from_name(&n.name)),
        _ => session.db.clone(),
    }
}

/// The databases a query reads (tables named in FROM / JOIN at any depth).
fn query_dbs(session: &Session, q: &sqlparser::ast::Query, out: &mut Vec<String>) {
    fn factor(session: &Session, f: &TableFactor, out: &mut Vec<String>) {
        match f {
            TableFactor::Table { name, .. } => {
                if name.0.len() == 2 {
                    out.push(name.0[0].to_string().trim_matches('`').to_string());
                } else if let Some(d) = &session.db {
                    out.push(d.clone());
                }
            }
            TableFactor::Derived { subquery, .. } => query_dbs(session, subquery, out),
            TableFactor::NestedJoin {
                table_with_joins, ..
            } => {
                factor(session, &table_with_joins.relation, out);
                for j in &table_with_joins.joins {
                    factor(session, &j.relation, out);
                }
            }
            _ => {}
        }
    }
    fn body(session: &Session, b: &sqlparser::ast::SetExpr, out: &mut Vec<String>) {
        match b {
            sqlparser::ast::SetExpr::Select(s) if exec::is_dual(s) => {}
            sqlparser::ast::SetExpr::Select(s) => {
                for t in &s.from {
                    factor(session, &t.relation, out);
                    for j in &t.joins {
                        factor(session, &j.relation, out);
                    }
                }
                for q in exec::nested_queries(s) {
                    query_dbs(session, q, out);
                }
            }
            sqlparser::ast::SetExpr::Query(q) => query_dbs(session, q, out),
            sqlparser::ast::SetExpr::SetOperation { left, right, .. } => {
                body(session, left, out);
                body(session, right, out);
            }
            _ => {}
        }
    }
    if let Some(w) = &q.with {
        for cte in &w.cte_tables {
            query_dbs(session, &cte.query, out);
        }
    }
    body(session, &q.body, out);
}

impl Engine {
    /// An engine over the cluster (loads the schema; creates `test` on a
    /// new cluster).
    pub async fn open(txn: TxnClient) -> Result<Engine, SqlError> {
        let engine = Engine {
            catalog: Arc::new(Catalog::open(txn.clone()).await?),
            txn,
            interim: Interim::behind_engine(),
            temps: temporary::Registry::default(),
        };
        engine.catalog.keep_up();
        tokio::spawn(gc_loop(engine.txn.clone()));
        Ok(engine)
    }

    /// The access path of `q` when it reads one row by its handle and
    /// nothing else (no locks, no subqueries, one table): such a read is
    /// consistent on its own at the newest committed version.
    fn point_get(sx: &Sx<'_>, q: &sqlparser::ast::Query) -> Option<(i64, String, plan::Access)> {
        if !q.locks.is_empty() || q.with.is_some() {
            return None;
        }
        let sqlparser::ast::SetExpr::Select(s) = q.body.as_ref() else {
            return None;
        };
        let order_sub = q.order_by.as_ref().is_some_and(|o| match &o.kind {
            sqlparser::ast::OrderByKind::Expressions(v) => {
                v.iter().any(|x| exec::has_subquery(&x.expr))
            }
            sqlparser::ast::OrderByKind::All(_) => false,
        });
        if exec::select_has_subquery(s)
            || s.having.as_ref().is_some_and(exec::has_subquery)
            || order_sub
        {
            return None;
        }
        let (t, alias, filter) = exec::single_table(sx, q)?;
        match plan::choose(&t, &alias, filter.as_ref()) {
            plan::Access::Handles(v) if v.len() == 1 => {
                Some((t.id, alias, plan::Access::Handles(v)))
            }
            _ => None,
        }
    }

    /// The result columns of a query, without reading rows (prepare).
    async fn describe(
        &self,
        session: &Session,
        sql: &str,
        params: usize,
        q: &sqlparser::ast::Query,
    ) -> Result<Vec<Column>, SqlError> {
        let mut dbs = Vec::new();
        query_dbs(session, q, &mut dbs);
        if dbs.is_empty() {
            return Ok(Vec::new());
        }
        let nulls = vec![Value::Null; params];
        let sx = self.sx(session, sql, &nulls).await?;
        // Nothing is read (dry run): no timestamp needed.
        let tx = self.txn.at_latest();
        let runner = Runner {
            sx: &sx,
            tx: &tx,
            dry: true,
        };
        // A query that cannot be described now (unknown table, ...) fails
        // at execution with the right error.
        match runner.query(q, None).await {
            Ok(o) => Ok(o.columns),
            Err(e) => {
                tracing::debug!(error = %e, "a prepared query could not be described; its columns come with each execution");
                Ok(Vec::new())
            }
        }
    }

    /// The session's account record, cached for a second.
    fn me(&self, session: &Session, st: &mut State) -> Result<UserRecord, SqlError> {
        if let Some((u, at)) = &st.me {
            if at.elapsed() < PRIVILEGE_CACHE {
                return Ok(u.clone());
            }
        }
        let users = session
            .server
            .users
            .load()
            .map_err(|e| er::unknown(e.to_string()))?;
        let u = users
            .into_iter()
            .find(|u| u.user == session.user && u.host == session.account_host)
            .ok_or_else(|| er::access_denied(&session.user, &session.client_ip, true))?;
        st.me = Some((u.clone(), Instant::now()));
        Ok(u)
    }

    fn check(
        &self,
        session: &Session,
        st: &mut State,
        db: &str,
        privilege: &str,
    ) -> Result<(), SqlError> {
        if db.eq_ignore_ascii_case("information_schema") && privilege == "SELECT" {
            return Ok(());
        }
        if self.me(session, st)?.has_on_db(db, privilege) {
            Ok(())
        } else {
            Err(SqlError::of(
                ErrorKind::TableAccessDenied,
                format!(
                    "{privilege} command denied to user '{}'@'{}' for database '{db}'",
                    session.user, session.client_ip
                ),
            ))
        }
    }

    fn new_txn_pessimistic(session: &Session, mode: Option<&str>) -> bool {
        match mode {
            Some(m) => m == "PESSIMISTIC",
            None => {
                !matches!(session.vars.get("tidb_txn_mode"), Some(Value::Text(m)) if m.eq_ignore_ascii_case("optimistic"))
            }
        }
    }

    async fn begin(&self, pessimistic: bool) -> Result<Transaction, SqlError> {
        if pessimistic {
            self.txn.begin_pessimistic().await.map_err(kv_err)
        } else {
            self.txn.begin().await.map_err(kv_err)
        }
    }

    /// A transaction for `session` (honours `innodb_lock_wait_timeout` and
    /// `tidb_enable_1pc`).
    async fn begin_for(
        &self,
        session: &Session,
        pessimistic: bool,
    ) -> Result<Transaction, SqlError> {
        let mut t = self.begin(pessimistic).await?;
        t.set_one_pc(session.flag("tidb_enable_1pc", true));
        if let Some(v) = session.vars.get("innodb_lock_wait_timeout") {
            let secs = crate::executor::eval::to_f64(v);
            if secs > 0.0 {
                t.set_lock_wait_timeout(Duration::from_secs_f64(secs));
            }
        }
        Ok(t)
    }

    async fn finish(&self, st: &mut State, commit: bool) -> Result<(), SqlError> {
        let dups = std::mem::take(&mut st.dups);
        st.savepoints.clear();
        if let Some(t) = st.txn.take() {
            if commit {
                t.commit().await.map_err(|e| commit_err(e, &dups))?;
            } else {
                t.rollback().await.map_err(kv_err)?;
            }
        }
        Ok(())
    }

    /// Runs one statement of a COM_QUERY or COM_STMT_EXECUTE.
    async fn run(
        &self,
        session: &mut Session,
        sql: &str,
        tokens: &Tokens,
        params: &[Value],
    ) -> Result<Output, SqlError> {
        let stmt = parser::parse(sql, tokens)?;
        self.run_parsed(session, sql, tokens, &stmt, params).await
    }

    async fn run_parsed(
        &self,
        session: &mut Session,
        sql: &str,
        tokens: &Tokens,
        stmt: &Stmt,
        params: &[Value],
    ) -> Result<Output, SqlError> {
        let mut st = take_state(session);
        let r = self
            .run_stmt(session, &mut st, sql, tokens, stmt, params)
            .await;
        put_state(session, st);
        r
    }

    async fn run_stmt(
        &self,
        session: &mut Session,
        st: &mut State,
        sql: &str,
        tokens: &Tokens,
        stmt: &Stmt,
        params: &[Value],
    ) -> Result<Output, SqlError> {
        match stmt {
            Stmt::Transaction("BEGIN") | Stmt::BeginMode(_) => {
                let mode = match stmt {
                    Stmt::BeginMode(m) => Some(*m),
                    _ => None,
                };
                self.finish(st, true).await?;
                st.txn = Some(
                    self.begin_for(session, Self::new_txn_pessimistic(session, mode))
                        .await?,
                );
                Ok(Output::ok())
            }
            Stmt::Transaction(what) => {
                self.finish(st, *what == "COMMIT").await?;
                Ok(Output::ok())
            }
            Stmt::Savepoint(name) => {
                if st.txn.is_none() && !session.autocommit() {
                    st.txn = Some(
                        self.begin_for(session, Self::new_txn_pessimistic(session, None))
                            .await?,
                    );
                }
                // Outside a transaction a savepoint ends with its statement
                // (MySQL accepts it and keeps nothing).
                if let Some(t) = &st.txn {
                    st.savepoints.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
                    st.savepoints.push((name.clone(), t.savepoint()));
                }
                Ok(Output::ok())
            }
            Stmt::RollbackTo(name) | Stmt::ReleaseSavepoint(name) => {
                let at = st
                    .savepoints
                    .iter()
                    .position(|(n, _)| n.eq_ignore_ascii_case(name))
                    .ok_or_else(|| {
                        SqlError::of(
                            ErrorKind::SpDoesNotExist,
                            format!("SAVEPOINT {name} does not exist"),
                        )
                    })?;
                if matches!(stmt, Stmt::RollbackTo(_)) {
                    // Later savepoints go; this one stays. Locks taken
                    // since stay too, as in MySQL and TiDB.
                    st.savepoints.truncate(at + 1);
                    let sp = st.savepoints[at].1.clone();
                    if let Some(t) = st.txn.as_mut() {
                        t.rollback_to(sp);
                    }
                } else {
                    st.savepoints.truncate(at);
                }
                Ok(Output::ok())
            }
            Stmt::Use(db) => {
                self.use_db(session, st, db).await?;
                Ok(Output::ok())
            }
            Stmt::ShowDatabases(filter) => self.show_databases(session, st, filter).await,
            Stmt::Set(_) => {
                let was = session.autocommit();
                let out = self.interim.run(session, sql, tokens, stmt, params)?;
                if !was && session.autocommit() {
                    // MySQL: turning autocommit on commits the open transaction.
                    self.finish(st, true).await?;
                }
                Ok(out)
            }
            Stmt::ShowCreateDatabase(db) => {
                let sx = self.sx(session, sql, params).await?;
                show::create_database(&sx, db)
            }
            Stmt::ShowIndex { db, table } => {
                let sx = self.sx(session, sql, params).await?;
                let name = match db {
                    Some(d) => sqlparser::ast::ObjectName::from(vec![
                        sqlparser::ast::Ident::new(d),
                        sqlparser::ast::Ident::new(table),
                    ]),
                    None => {
                        sqlparser::ast::ObjectName::from(vec![sqlparser::ast::Ident::new(table)])
                    }
                };
                let (_, t) = sx.table(&name)?;
                Ok(show::index(&t))
            }
            Stmt::ShowTableStatus { db, filter } => {
                let sx = self.sx(session, sql, params).await?;
                show::table_status(&sx, db.clone(), filter)
            }
            Stmt::Query(q) => {
                let mut dbs = Vec::new();
                query_dbs(session, q, &mut dbs);
                for d in &dbs {
                    self.check(session, st, d, "SELECT")?;
                }
                let simple = q.with.is_none()
                    && match q.body.as_ref() {
                        sqlparser::ast::SetExpr::Select(s) => {
                            (s.from.is_empty() || exec::is_dual(s))
                                && !exec::select_has_subquery(s)
                                && !exec::select_has_aggregate(s)
                        }
                        _ => false,
                    };
                if dbs.is_empty() && simple {
                    // No tables: constants and variables.
                    return self.interim.run(session, sql, tokens, stmt, params);
                }
                self.data(session, st, sql, params, Data::Query(q)).await
            }
            Stmt::Other(statement) => {
                self.other(session, st, sql, tokens, statement, params)
                    .await
            }
            other => self.interim.run(session, sql, tokens, other, params),
        }
    }

    async fn sx<'a>(
        &self,
        session: &'a Session,
        sql: &'a str,
        params: &'a [Value],
    ) -> Result<Sx<'a>, SqlError> {
        let mut sx = self.ddl_sx(session, sql, params).await?;
        let (schema, hold) = self.catalog.hold_current();
        sx.schema = schema;
        sx.hold = Some(hold);
        Ok(sx)
    }

    /// A statement context that does not hold its schema version (DDL:
    /// it waits for every server, itself included, to move past it).
    async fn ddl_sx<'a>(
        &self,
        session: &'a Session,
        sql: &'a str,
        params: &'a [Value],
    ) -> Result<Sx<'a>, SqlError> {
        Ok(Sx {
            session,
            params,
            schema: self.catalog.schema().await?,
            sql,
            mem: memory::Tracker::for_session(session),
            hold: None,
            planned: std::sync::Mutex::new(None),
            profile: None,
            temps: self.temps.of(session.conn_id),
            ctes: std::sync::Mutex::new(Vec::new()),
            views_open: std::sync::Mutex::new(Vec::new()),
        })
    }

    async fn other(
        &self,
        session: &mut Session,
        st: &mut State,
        sql: &str,
        tokens: &Tokens,
        statement: &Statement,
        params: &[Value],
    ) -> Result<Output, SqlError> {
        if let Some(p) = privilege_of(statement) {
            let db = statement_db(session, statement).ok_or_else(er::no_db)?;
            self.check(session, st, &db, p)?;
        }
        // Views and temporary tables (their own future: it is large).
        if let Some(out) =
            Box::pin(self.views_and_temporaries(session, st, sql, params, statement)).await?
        {
            return Ok(out);
        }
        match &statement {
            Statement::Insert(_) | Statement::Update(_) | Statement::Delete(_) => {
                self.data(session, st, sql, params, Data::Write(statement))
                    .await
            }
            Statement::CreateTable(_)
            | Statement::CreateDatabase { .. }
            | Statement::Drop { .. }
            | Statement::CreateIndex(_)
            | Statement::AlterTable(_)
            | Statement::Truncate(_)
            | Statement::RenameTable(_) => {
                // DDL commits the open transaction first, as MySQL does.
                self.finish(st, true).await?;
                let sx = self.ddl_sx(session, sql, params).await?;
                ddl::run(&sx, &self.catalog, statement).await
            }
            Statement::ShowTables {
                full, show_options, ..
            } => {
                let sx = self.sx(session, sql, params).await?;
                let (db, filter) = show::options(show_options);
                if let Some(d) = db.as_deref().or(session.db.as_deref()) {
                    self.check_any(session, st, d)?;
                }
                show::tables(&sx, db, *full, &filter)
            }
            Statement::ShowColumns {
                full, show_options, ..
            } => {
                let sx = self.sx(session, sql, params).await?;
                let (_, filter) = show::options(show_options);
                let table = show_options
                    .show_in
                    .as_ref()
                    .and_then(|i| i.parent_name.clone())
                    .ok_or_else(|| er::parse("", "SHOW COLUMNS needs FROM table"))?;
                let (db, t) = sx.table(&table)?;
                self.check_any(session, st, &db)?;
                show::columns(&sx, &t, *full, &filter)
            }
            Statement::ExplainTable { table_name, .. } => {
                let sx = self.sx(session, sql, params).await?;
                let (db, t) = sx.table(table_name)?;
                self.check_any(session, st, &db)?;
                show::columns(&sx, &t, false, &ShowFilter::None)
            }
            Statement::ShowCreate {
                obj_type:
                    obj_type @ (sqlparser::ast::ShowCreateObject::View
                    | sqlparser::ast::ShowCreateObject::Table),
                obj_name,
            } => {
                let sx = self.sx(session, sql, params).await?;
                let (db, t) = sx.table(obj_name)?;
                self.check_any(session, st, &db)?;
                if matches!(obj_type, sqlparser::ast::ShowCreateObject::View) && t.view.is_none() {
                    return Err(SqlError::of(
                        ErrorKind::WrongObject,
                        format!("'{db}.{}' is not VIEW", t.name),
                    ));
                }
                Ok(show::create_table(&t, &db))
            }
            Statement::Explain {
                statement: inner,
                analyze: false,
                ..
            } => {
                // EXPLAIN needs the privileges the statement needs (MySQL).
                self.check_statement(session, st, inner)?;
                let sx = self.sx(session, sql, params).await?;
                explain(&sx, inner)
            }
            Statement::Explain {
                statement: inner,
                analyze: true,
                ..
            } => {
                let Statement::Query(q) = inner.as_ref() else {
                    return Err(er::not_supported_yet(
                        "EXPLAIN ANALYZE of a statement other than SELECT",
                    ));
                };
                self.check_statement(session, st, inner)?;
                let mut sx = self.sx(session, sql, params).await?;
                let profile = Arc::new(operator::profile::Profile::default());
                sx.profile = Some(profile.clone());
                let start = std::time::Instant::now();
                // The query runs (its rows are dropped), in the open
                // transaction or on a snapshot of its own.
                match st.txn.as_ref() {
                    Some(txn) => {
                        let runner = Runner {
                            sx: &sx,
                            tx: txn,
                            dry: false,
                        };
                        runner.query(q, None).await?;
                    }
                    None => {
                        let txn = self.begin(false).await?;
                        let r = Runner {
                            sx: &sx,
                            tx: &txn,
                            dry: false,
                        }
                        .query(q, None)
                        .await;
                        let _ = txn.rollback().await;
                        r?;
                    }
                }
                explain_analyze(&sx, inner, &profile, start.elapsed())
            }
            _ => self.interim.run(
                session,
                sql,
                tokens,
                // Statements the session executor answers (or refuses).
                &Stmt::Other(Box::new(statement.clone())),
                params,
            ),
        }
    }

    /// Views (CREATE/ALTER/DROP VIEW) and temporary tables (CREATE/DROP
    /// TEMPORARY TABLE, and DROP/TRUNCATE of one); `None` for any other
    /// statement.
    async fn views_and_temporaries(
        &self,
        session: &Session,
        st: &mut State,
        sql: &str,
        params: &[Value],
        statement: &Statement,
    ) -> Result<Option<Output>, SqlError> {
        // Views: DDL, with a dry run of the query for its names.
        match &statement {
            Statement::CreateView(_) | Statement::AlterView(_) => {
                // (name, column list, query, OR REPLACE, ALTER, IF NOT EXISTS)
                let (name, cols, query, replace, alter, if_not_exists) = match statement {
                    Statement::CreateView(cv) => (
                        &cv.name,
                        cv.columns
                            .iter()
                            .map(|c| c.name.value.clone())
                            .collect::<Vec<_>>(),
                        &cv.query,
                        cv.or_replace,
                        cv.or_alter,
                        cv.if_not_exists,
                    ),
                    Statement::AlterView(sqlparser::ast::AlterView {
                        name,
                        operation: sqlparser::ast::AlterViewOperation::As { columns, query, .. },
                        ..
                    }) => (
                        name,
                        columns.iter().map(|c| c.value.clone()).collect(),
                        query,
                        false,
                        true,
                        false,
                    ),
                    _ => return Ok(None),
                };
                self.finish(st, true).await?;
                let sx = self.ddl_sx(session, sql, params).await?;
                let tx = self.txn.at_latest();
                let runner = Runner {
                    sx: &sx,
                    tx: &tx,
                    dry: true,
                };
                let out = view::create(
                    &runner,
                    &self.catalog,
                    name,
                    &cols,
                    query,
                    (replace, alter, if_not_exists),
                );
                return Ok(Some(Box::pin(out).await?));
            }
            Statement::Drop {
                object_type: sqlparser::ast::ObjectType::View,
                names,
                if_exists,
                ..
            } => {
                self.finish(st, true).await?;
                let sx = self.ddl_sx(session, sql, params).await?;
                return Ok(Some(
                    view::drop(&sx, &self.catalog, names, *if_exists).await?,
                ));
            }
            _ => {}
        }
        // Temporary tables: no implicit commit (MySQL), not in the schema.
        match &statement {
            Statement::CreateTable(ct) if ct.temporary => {
                let sx = self.ddl_sx(session, sql, params).await?;
                return Ok(Some(self.temps.create(&sx, &self.catalog, ct).await?));
            }
            Statement::Drop {
                object_type: sqlparser::ast::ObjectType::Table,
                names,
                temporary,
                if_exists,
                ..
            } => {
                let sx = self.ddl_sx(session, sql, params).await?;
                let rest = self.temps.drop(&sx, &self.catalog, names)?;
                if *temporary && !rest.is_empty() && !*if_exists {
                    let missing: Vec<String> = rest.iter().map(ToString::to_string).collect();
                    return Err(SqlError::of(
                        ErrorKind::BadTable,
                        format!("Unknown table '{}'", missing.join(",")),
                    ));
                }
                if *temporary || rest.is_empty() {
                    return Ok(Some(Output::ok()));
                }
                if rest.len() < names.len() {
                    let mut left = statement.clone();
                    if let Statement::Drop { names, .. } = &mut left {
                        *names = rest;
                    }
                    drop(sx);
                    self.finish(st, true).await?;
                    let sx = self.ddl_sx(session, sql, params).await?;
                    return Ok(Some(ddl::run(&sx, &self.catalog, &left).await?));
                }
            }
            Statement::Truncate(t) if t.table_names.len() == 1 => {
                let sx = self.ddl_sx(session, sql, params).await?;
                if self
                    .temps
                    .truncate(&sx, &self.catalog, &t.table_names[0].name)
                    .await?
                {
                    return Ok(Some(Output::ok()));
                }
            }
            Statement::CreateIndex(ci) => {
                let sx = self.ddl_sx(session, sql, params).await?;
                if !self.temps.is_temporary_name(&sx, &ci.table_name)? {
                    return Ok(None);
                }
                // The index entries are written in the open transaction
                // (a temporary table's rows may be uncommitted), else in
                // one of their own.
                let done = match st.txn.as_mut() {
                    Some(txn) => self.temps.add_index(&sx, txn, ci).await?,
                    None => {
                        let mut txn = self.begin(false).await?;
                        let done = self.temps.add_index(&sx, &mut txn, ci).await?;
                        txn.commit().await.map_err(kv_err)?;
                        done
                    }
                };
                if done {
                    return Ok(Some(Output::ok()));
                }
            }
            Statement::Drop {
                object_type: sqlparser::ast::ObjectType::Index,
                names,
                table: Some(table),
                ..
            } if names.len() == 1 => {
                let sx = self.ddl_sx(session, sql, params).await?;
                let index = ddl::unquote(&names[0]).join(".");
                if self.temps.drop_index(&sx, table, &index)? {
                    return Ok(Some(Output::ok()));
                }
            }
            Statement::AlterTable(at) => {
                let sx = self.ddl_sx(session, sql, params).await?;
                if self.temps.is_temporary_name(&sx, &at.name)? {
                    for op in &at.operations {
                        match op {
                            sqlparser::ast::AlterTableOperation::DropIndex { name } => {
                                self.temps.drop_index(&sx, &at.name, &name.value)?;
                            }
                            other => {
                                return Err(er::not_supported_yet(&format!(
                                    "ALTER TABLE ... {other} of a temporary table"
                                )))
                            }
                        }
                    }
                    return Ok(Some(Output::ok()));
                }
            }
            _ => {}
        }
        Ok(None)
    }

    /// The privileges `statement` needs: SELECT on the databases a query
    /// reads, the statement's own privilege on its database.
    fn check_statement(
        &self,
        session: &Session,
        st: &mut State,
        statement: &Statement,
    ) -> Result<(), SqlError> {
        if let Statement::Query(q) = statement {
            let mut dbs = Vec::new();
            query_dbs(session, q, &mut dbs);
            for d in &dbs {
                self.check(session, st, d, "SELECT")?;
            }
        } else if let Some(p) = privilege_of(statement) {
            let db = statement_db(session, statement).ok_or_else(er::no_db)?;
            self.check(session, st, &db, p)?;
        }
        Ok(())
    }

    fn check_any(&self, session: &Session, st: &mut State, db: &str) -> Result<(), SqlError> {
        if db.eq_ignore_ascii_case("information_schema") || self.me(session, st)?.has_any_on_db(db)
        {
            Ok(())
        } else {
            Err(er::db_access_denied(&session.user, &session.client_ip, db))
        }
    }

    /// Runs a query or write in the session's transaction (see the module
    /// docs for autocommit and retries).
    async fn data(
        &self,
        session: &mut Session,
        st: &mut State,
        sql: &str,
        params: &[Value],
        what: Data<'_>,
    ) -> Result<Output, SqlError> {
        if st.txn.is_none() && !session.autocommit() {
            // autocommit=0: the first statement opens a transaction.
            st.txn = Some(
                self.begin_for(session, Self::new_txn_pessimistic(session, None))
                    .await?,
            );
        }
        let mut last_insert_id = 0;
        let result = if let Some(mut txn) = st.txn.take() {
            let sp = txn.savepoint();
            let r = {
                let sx = self.sx(session, sql, params).await?;
                self.exec_in(&sx, &mut txn, &mut st.dups, &what, &mut last_insert_id)
                    .await
            };
            match &r {
                // MySQL: a deadlock rolls back the whole transaction (and
                // frees its locks for the others in the cycle).
                Err(e) if e.kind() == Some(ErrorKind::LockDeadlock) => {
                    let _ = txn.rollback().await;
                    st.dups.clear();
                }
                Err(_) => {
                    txn.rollback_to(sp);
                    st.txn = Some(txn);
                }
                Ok(_) => st.txn = Some(txn),
            }
            r
        } else {
            let mut attempt = 0;
            loop {
                // A single-row read by primary key needs no timestamp: it
                // reads the newest committed version (see docs/sql.md).
                let sx = self.sx(session, sql, params).await?;
                let point = match &what {
                    Data::Query(q) => Self::point_get(&sx, q),
                    _ => None,
                };
                let mut txn = match point {
                    Some(p) => {
                        *sx.planned.lock().unwrap_or_else(|e| e.into_inner()) = Some(p);
                        self.txn.at_latest()
                    }
                    None => {
                        let mut t = self.begin(false).await?;
                        t.set_one_pc(session.flag("tidb_enable_1pc", true));
                        t
                    }
                };
                let mut dups = DupMessages::new();
                let r = self
                    .exec_in(&sx, &mut txn, &mut dups, &what, &mut last_insert_id)
                    .await;
                drop(sx);
                match r {
                    Err(e) => break Err(e),
                    Ok(out) => match txn.commit().await {
                        Ok(_) => break Ok(out),
                        Err(tiox_client::Error::Conflict { .. })
                            if attempt < AUTOCOMMIT_RETRIES =>
                        {
                            attempt += 1;
                            last_insert_id = 0;
                            continue;
                        }
                        Err(e) => break Err(commit_err(e, &dups)),
                    },
                }
            }
        };
        if last_insert_id != 0 {
            session
                .vars
                .insert("last_insert_id".into(), Value::UInt(last_insert_id));
        }
        result
    }

    async fn exec_in(
        &self,
        sx: &Sx<'_>,
        txn: &mut Transaction,
        dups: &mut DupMessages,
        what: &Data<'_>,
        last_insert_id: &mut u64,
    ) -> Result<Output, SqlError> {
        match what {
            Data::Query(q) => {
                let locking = !q.locks.is_empty();
                if !locking {
                    // MySQL's max_execution_time: read-only SELECTs only.
                    let ms =
                        match crate::executor::vars::get(sx.session, "max_execution_time", false) {
                            Some(Value::Int(i)) => i.max(0) as u64,
                            Some(Value::UInt(u)) => u,
                            _ => 0,
                        };
                    sx.mem.limit_time(ms);
                }
                let out = {
                    let runner = Runner {
                        sx,
                        tx: txn,
                        dry: false,
                    };
                    runner.query(q, None).await?
                };
                if locking {
                    // SELECT ... FOR UPDATE: lock the rows read (single
                    // table), so later writes of this transaction hold.
                    let target = Runner {
                        sx,
                        tx: txn,
                        dry: false,
                    }
                    .single_table(q);
                    if let Some((t, alias, filter)) = target {
                        let handles: Vec<i64> = {
                            let runner = Runner {
                                sx,
                                tx: txn,
                                dry: false,
                            };
                            runner
                                .matching_rows(&t, &alias, filter.as_ref(), &[], None)
                                .await?
                                .into_iter()
                                .map(|(h, _)| h)
                                .collect()
                        };
                        let keys: Vec<Vec<u8>> = handles
                            .iter()
                            .map(|h| codec::record_key(t.id, *h))
                            .collect();
                        if !keys.is_empty() {
                            txn.lock_keys(&keys).await.map_err(kv_err)?;
                            if txn.is_pessimistic() {
                                // Locked rows are read at their newest version.
                                let runner = Runner {
                                    sx,
                                    tx: txn,
                                    dry: false,
                                };
                                let fresh = runner.query(q, None).await?;
                                return Ok(Output::Rows(ResultSet {
                                    columns: fresh.columns,
                                    rows: fresh.rows,
                                }));
                            }
                        }
                    }
                }
                Ok(Output::Rows(ResultSet {
                    columns: out.columns,
                    rows: out.rows,
                }))
            }
            Data::Write(statement) => {
                let mut w = Writer {
                    sx,
                    catalog: &self.catalog,
                    dups,
                    last_insert_id: 0,
                    touched: Vec::new(),
                    fk_events: Vec::new(),
                    fk_referenced: std::collections::HashMap::new(),
                };
                let r = match statement {
                    Statement::Insert(i) => w.insert(txn, i).await,
                    Statement::Update(u) => w.update(txn, u).await,
                    Statement::Delete(d) => w.delete(txn, d).await,
                    _ => Err(er::unknown("not a write".into())),
                };
                *last_insert_id = w.last_insert_id;
                r
            }
        }
    }

    async fn use_db(
        &self,
        session: &mut Session,
        st: &mut State,
        db: &str,
    ) -> Result<(), SqlError> {
        let schema = self.catalog.schema().await?;
        let name = match schema.db(db) {
            Some(d) => d.name.clone(),
            None if ddl::is_system_db(db) => db.to_ascii_lowercase(),
            None => return Err(er::bad_db(db)),
        };
        self.check_any(session, st, &name)?;
        session.db = Some(name);
        Ok(())
    }

    async fn show_databases(
        &self,
        session: &Session,
        st: &mut State,
        filter: &ShowFilter,
    ) -> Result<Output, SqlError> {
        let schema = self.catalog.schema().await?;
        let me = self.me(session, st)?;
        let mut names: Vec<String> = ["information_schema", "mysql", "performance_schema"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        names.extend(schema.dbs.values().map(|d| d.name.clone()));
        names.sort();
        let data: Vec<Vec<Value>> = names
            .into_iter()
            .filter(|d| {
                d == "information_schema" || me.has_global("SHOW DATABASES") || me.has_any_on_db(d)
            })
            .filter(|d| match filter {
                ShowFilter::Like(p) => crate::users::like_match(p, d),
                _ => true,
            })
            .map(|d| vec![Value::Text(d)])
            .collect();
        Ok(Output::Rows(ResultSet {
            columns: vec![Column::text("Database")],
            rows: data,
        }))
    }
}

/// MVCC garbage collection: every [`GC_RUN_INTERVAL`], versions older than
/// [`GC_LIFE_TIME`] that a newer version hides are removed in every region
/// (each tidb-server runs it; running it twice is harmless).
async fn gc_loop(txn: TxnClient) {
    loop {
        tokio::time::sleep(GC_RUN_INTERVAL).await;
        let now = match txn.current_ts().await {
            Ok(ts) => ts,
            Err(e) => {
                tracing::warn!(error = %e, "GC: no timestamp from PD; will retry");
                continue;
            }
        };
        let life_ms = GC_LIFE_TIME.as_millis() as u64;
        let physical = (now >> tiox_client::tso::LOGICAL_BITS).saturating_sub(life_ms);
        let safe_point = physical << tiox_client::tso::LOGICAL_BITS;
        match txn.gc(safe_point).await {
            Ok(n) => tracing::info!(regions = n, safe_point, "GC: old MVCC versions removed"),
            Err(e) => tracing::warn!(error = %e, "GC failed; will retry at the next interval"),
        }
    }
}

enum Data<'a> {
    Query(&'a sqlparser::ast::Query),
    Write(&'a Statement),
}

/// `EXPLAIN` of a statement: the plan of its FROM and WHERE, in TiDB's
/// columns (`planner::explain`).
/// The operators EXPLAIN shows above a SELECT's FROM tree, root first
/// (`planner::select` runs them): TopN / Sort / Limit, HashAgg for
/// DISTINCT, Selection for HAVING, HashAgg for GROUP BY and aggregates.
fn explain_tail(
    sx: &Sx<'_>,
    q: &sqlparser::ast::Query,
    input: f64,
) -> Result<Vec<planner::explain::TailOp>, SqlError> {
    use operator::profile::Slot;
    use sqlparser::ast::{GroupByExpr, OrderByKind, SetExpr};
    let SetExpr::Select(s) = q.body.as_ref() else {
        return Ok(Vec::new());
    };
    let (limit, offset) = exec::limits(sx, q)?;
    let order: Vec<&sqlparser::ast::OrderByExpr> = match q.order_by.as_ref().map(|o| &o.kind) {
        Some(OrderByKind::Expressions(v)) => v.iter().collect(),
        _ => Vec::new(),
    };
    let items = walk::projected(s);
    let mut agg_inputs = items.clone();
    agg_inputs.extend(s.having.as_ref());
    agg_inputs.extend(order.iter().map(|o| &o.expr));
    let calls = operator::aggregation::agg_calls(&agg_inputs);
    let groups: Vec<String> = match &s.group_by {
        GroupByExpr::Expressions(v, _) => v.iter().map(ToString::to_string).collect(),
        GroupByExpr::All(_) => Vec::new(),
    };
    let grouped = !calls.is_empty() || !groups.is_empty();
    let mut est = input;
    let mut ops: Vec<planner::explain::TailOp> = Vec::new();
    if grouped {
        est = if groups.is_empty() { 1.0 } else { input };
        let mut info = Vec::new();
        if !groups.is_empty() {
            info.push(format!("group by:{}", groups.join(", ")));
        }
        if !calls.is_empty() {
            let mut funcs: Vec<String> = Vec::new();
            for c in &calls {
                let f = c.node.to_string();
                if !funcs.contains(&f) {
                    funcs.push(f);
                }
            }
            info.push(format!("funcs:{}", funcs.join(", ")));
        }
        ops.push(("HashAgg", est, info.join(", "), Slot::Aggregation));
    }
    if let Some(h) = &s.having {
        est *= planner::rules::SELECTION_FACTOR;
        ops.push(("Selection", est, h.to_string(), Slot::Having));
    }
    if matches!(s.distinct, Some(sqlparser::ast::Distinct::Distinct)) {
        let cols: Vec<String> = items.iter().map(ToString::to_string).collect();
        ops.push((
            "HashAgg",
            est,
            format!("group by:{}", cols.join(", ")),
            Slot::Distinct,
        ));
    }
    let keys: Vec<String> = order
        .iter()
        .map(|o| match o.options.sort {
            Some(sqlparser::ast::OrderBySort::Desc) => format!("{}:desc", o.expr),
            _ => o.expr.to_string(),
        })
        .collect();
    match (keys.is_empty(), limit) {
        (false, Some(n)) => ops.push((
            "TopN",
            est.min(n as f64),
            format!("{}, offset:{offset}, count:{n}", keys.join(", ")),
            Slot::Order,
        )),
        (false, None) => ops.push(("Sort", est, keys.join(", "), Slot::Order)),
        (true, Some(n)) => ops.push((
            "Limit",
            est.min(n as f64),
            format!("offset:{offset}, count:{n}"),
            Slot::Limit,
        )),
        (true, None) if offset > 0 => {
            ops.push(("Limit", est, format!("offset:{offset}"), Slot::Limit))
        }
        (true, None) => {}
    }
    ops.reverse();
    Ok(ops)
}

/// The EXPLAIN rows of `st`, with where EXPLAIN ANALYZE finds each one's
/// measurements.
fn explain_rows(sx: &Sx<'_>, st: &Statement) -> Result<Vec<planner::explain::Drawn>, SqlError> {
    use sqlparser::ast::{FromTable, SetExpr};
    let (from, filter) = match st {
        Statement::Query(q) => match q.body.as_ref() {
            SetExpr::Select(s) => (s.from.clone(), s.selection.clone()),
            _ => (Vec::new(), None),
        },
        Statement::Update(u) => (vec![u.table.clone()], u.selection.clone()),
        Statement::Delete(d) => match &d.from {
            FromTable::WithFromKeyword(v) | FromTable::WithoutKeyword(v) => {
                (v.iter().take(1).cloned().collect(), d.selection.clone())
            }
        },
        _ => (Vec::new(), None),
    };
    let rows: Vec<planner::explain::Drawn> = if from.is_empty() {
        vec![(
            [
                "Projection_1".into(),
                "1.00".into(),
                "root".into(),
                String::new(),
                String::new(),
            ],
            operator::profile::Slot::Residual,
        )]
    } else {
        let mut leaves = Vec::new();
        for f in planner::factors(&from) {
            leaves.push(match planner::bind_table(sx, f)? {
                Some(l) => l,
                // A derived table: its own plan is not shown yet.
                None => planner::Leaf {
                    alias: String::new(),
                    scope: exec::Scope::default(),
                    source: planner::LeafSource::Rows {
                        rows: Vec::new(),
                        label: "Projection",
                    },
                },
            });
        }
        let p = planner::plan(&from, filter.as_ref(), leaves)?;
        planner::explain::rows(&p)
    };
    let rows = match st {
        Statement::Query(q) => {
            let input = rows
                .first()
                .and_then(|(r, _)| r[1].parse::<f64>().ok())
                .unwrap_or(1.0);
            planner::explain::with_tail(&explain_tail(sx, q, input)?, rows)
        }
        _ => rows,
    };
    Ok(rows)
}

/// `EXPLAIN`: the plan in TiDB's columns.
fn explain(sx: &Sx<'_>, st: &Statement) -> Result<Output, SqlError> {
    let rows = explain_rows(sx, st)?;
    Ok(Output::Rows(ResultSet {
        columns: ["id", "estRows", "task", "access object", "operator info"]
            .iter()
            .map(|n| Column::text(n))
            .collect(),
        rows: rows
            .into_iter()
            .map(|(r, _)| r.into_iter().map(Value::Text).collect())
            .collect(),
    }))
}

/// `EXPLAIN ANALYZE`: the plan with what each operator did in `profile`
/// (TiDB's columns: actual rows, execution info, memory, disk).
fn explain_analyze(
    sx: &Sx<'_>,
    st: &Statement,
    profile: &operator::profile::Profile,
    total: std::time::Duration,
) -> Result<Output, SqlError> {
    let rows = explain_rows(sx, st)?;
    let columns = [
        "id",
        "estRows",
        "actRows",
        "task",
        "access object",
        "execution info",
        "operator info",
        "memory",
        "disk",
    ];
    Ok(Output::Rows(ResultSet {
        columns: columns.iter().map(|n| Column::text(n)).collect(),
        rows: rows
            .into_iter()
            .enumerate()
            .map(|(i, (r, slot))| {
                let [id, est, task, object, info] = r;
                let stat = profile.get(slot).unwrap_or_default();
                // The root's time is the statement's.
                let time = if i == 0 { total } else { stat.time };
                let mem = if stat.mem == 0 {
                    "N/A".to_string()
                } else {
                    format!("{:.2} KB", stat.mem as f64 / 1024.0)
                };
                [
                    id,
                    est,
                    stat.rows.to_string(),
                    task,
                    object,
                    format!("time:{time:.2?}, loops:1"),
                    info,
                    mem,
                    "N/A".to_string(),
                ]
                .into_iter()
                .map(Value::Text)
                .collect()
            })
            .collect(),
    }))
}

impl Backend for Engine {
    fn query<'a>(&'a self, session: &'a mut Session, sql: &'a str) -> BoxFuture<'a, QueryResult> {
        Box::pin(async move {
            let statements = match parser::query_statements(sql, session.multi_statements) {
                Ok(s) => s,
                Err(e) => return QueryResult::err(e),
            };
            let mut result = QueryResult::default();
            for t in &statements {
                let out = match parser::check_no_placeholders(t) {
                    Ok(()) => self.run(session, sql, t, &[]).await,
                    Err(e) => Err(e),
                };
                if !result.record(out) {
                    break;
                }
            }
            result
        })
    }

    fn prepare<'a>(
        &'a self,
        session: &'a mut Session,
        sql: &'a str,
    ) -> BoxFuture<'a, Result<Prepared, Error>> {
        Box::pin(async move {
            let tokens = parser::prepared_statement(sql)?;
            let stmt = parser::parse(sql, &tokens)?;
            let columns = match &stmt {
                Stmt::Query(q) => self.describe(session, sql, tokens.params, q).await?,
                _ => Vec::new(),
            };
            Ok(Prepared {
                params: tokens.params,
                columns,
                plan: Arc::new(Plan {
                    sql: sql.to_string(),
                    tokens,
                    stmt,
                }),
            })
        })
    }

    fn execute<'a>(
        &'a self,
        session: &'a mut Session,
        stmt: &'a Prepared,
        params: Vec<Value>,
    ) -> BoxFuture<'a, Result<Output, Error>> {
        Box::pin(async move {
            let plan = stmt
                .plan
                .downcast_ref::<Plan>()
                .ok_or_else(|| er::unknown("prepared statement from another backend".into()))?;
            let mut out = self
                .run_parsed(session, &plan.sql, &plan.tokens, &plan.stmt, &params)
                .await?;
            // Rows are sent as the columns announced at prepare time said.
            if let Output::Rows(rs) = &mut out {
                if !stmt.columns.is_empty() && stmt.columns.len() == rs.columns.len() {
                    rs.columns = stmt.columns.clone();
                }
            }
            Ok(out)
        })
    }

    fn close<'a>(&'a self, session: &'a mut Session) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let mut st = take_state(session);
            if let Some(t) = st.txn.take() {
                if let Err(e) = t.rollback().await {
                    tracing::warn!(conn_id = session.conn_id, error = %e, "rolling back the transaction of a closed connection failed; its locks expire on their own");
                }
            }
            self.temps.close(&self.catalog, session.conn_id);
        })
    }

    fn init_db<'a>(
        &'a self,
        session: &'a mut Session,
        db: &'a str,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let mut st = take_state(session);
            let r = self.use_db(session, &mut st, db).await;
            put_state(session, st);
            Ok(r?)
        })
    }

    fn field_list<'a>(
        &'a self,
        session: &'a mut Session,
        table: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Column>, SqlError>> {
        Box::pin(async move {
            let sx = self.sx(session, "", &[]).await?;
            let (_, t) = sx.table(&sqlparser::ast::ObjectName::from(vec![
                sqlparser::ast::Ident::new(table),
            ]))?;
            Ok(t.columns
                .iter()
                .map(|c| exec::column_def(&c.name, Some(&c.ty), c.not_null, None))
                .collect())
        })
    }
}
