//! The boundary between a MySQL session and whatever executes its SQL.
//!
//! ```text
//!  protocol::conn (packets, auth, TLS)  ──►  Backend::query / prepare / execute
//!        ▲  Output (OK or rows)                 │
//!        └──────────────────────────────────────┘
//! ```
//!
//! The protocol layer owns the connection: framing, authentication,
//! sequence ids, text vs binary row encoding and prepared-statement ids.
//! A [`Backend`] sees only SQL text, decoded parameter values and the
//! [`Session`]; it answers with [`Output`]s. `tidb-server` runs the SQL
//! engine (`engine::Engine`, over the store `store::Store` opened: the
//! cluster or the embedded store); `executor::Interim` (constants,
//! variables, users) answers alone only in protocol tests. Methods return
//! boxed futures so the engine can do store I/O without blocking the
//! runtime.
//!
//! How the engine plugs in: it parses with `parser::split`/`parser::parse`
//! (or its own parser), runs table statements itself, and hands the
//! statements it does not own (accounts, `SET`, `SHOW VARIABLES|STATUS`,
//! `ALTER INSTANCE`) to `executor::Interim`, whose account logic goes
//! through `Session::server.users` (a `UserStore`: the cluster's user
//! table with `--store=tikv`, a file in the data directory with
//! `--store=unistore`). `tidb-server` opens the store in one place
//! (`store::Store`) and serves the engine over it
//! (`tiox_sql::serve(listener, shared, backend)`).

use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::error::{Error, SqlError};
use crate::protocol::consts::{ty, CHARSET_BINARY, CHARSET_UTF8MB4};
use crate::server::Shared;
use crate::users::TlsInfo;
use crate::value::Value;

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One column of a result set.
#[derive(Clone, Debug, PartialEq)]
pub struct Column {
    /// The name the client sees.
    pub name: String,
    /// MySQL column type (`protocol::consts::ty`).
    pub ty: u8,
    /// Character set id (45 utf8mb4, 63 binary).
    pub charset: u16,
    /// Column flags (`protocol::consts::flag`).
    pub flags: u16,
    /// Display length.
    pub length: u32,
    /// Decimals.
    pub decimals: u8,
}

impl Column {
    /// A utf8mb4 string column.
    pub fn text(name: &str) -> Column {
        Column {
            name: name.to_string(),
            ty: ty::VAR_STRING,
            charset: u16::from(CHARSET_UTF8MB4),
            flags: 0,
            length: 1024,
            decimals: 31,
        }
    }

    /// A column typed after a sample value.
    pub fn for_value(name: &str, v: &Value) -> Column {
        let (t, charset, flags, length, decimals) = match v {
            Value::Null => (ty::NULL, CHARSET_BINARY, 0, 0, 0),
            Value::Int(_) => (ty::LONGLONG, CHARSET_BINARY, 128, 21, 0),
            Value::UInt(_) => (ty::LONGLONG, CHARSET_BINARY, 128 | 32, 20, 0),
            Value::Float(_) => (ty::FLOAT, CHARSET_BINARY, 128, 12, 31),
            Value::Double(_) => (ty::DOUBLE, CHARSET_BINARY, 128, 22, 31),
            Value::Decimal(d) => (
                ty::NEWDECIMAL,
                CHARSET_BINARY,
                128,
                d.len() as u32 + 1,
                d.split_once('.').map_or(0, |(_, f)| f.len() as u8),
            ),
            Value::Text(_) => (ty::VAR_STRING, u16::from(CHARSET_UTF8MB4), 0, 1024, 31),
            Value::Bytes(_) => (ty::VAR_STRING, CHARSET_BINARY, 128, 1024, 31),
            Value::Date { .. } => (ty::DATE, CHARSET_BINARY, 128, 10, 0),
            Value::DateTime { .. } => (ty::DATETIME, CHARSET_BINARY, 128, 26, 6),
            Value::Time { .. } => (ty::TIME, CHARSET_BINARY, 128, 17, 6),
            Value::Json(_) => (ty::JSON, u16::from(CHARSET_UTF8MB4), 0, u32::MAX, 0),
        };
        Column {
            name: name.to_string(),
            ty: t,
            charset,
            flags,
            length,
            decimals,
        }
    }
}

/// Rows with their columns.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ResultSet {
    /// Column definitions.
    pub columns: Vec<Column>,
    /// Rows; each has one value per column.
    pub rows: Vec<Vec<Value>>,
}

/// What one statement produced.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    /// An OK packet.
    Ok {
        /// Affected rows.
        affected: u64,
        /// Last insert id.
        last_insert_id: u64,
        /// Human-readable info (`Rows matched: ...`), often empty.
        info: String,
    },
    /// A result set.
    Rows(ResultSet),
}

impl Output {
    /// An OK with nothing affected.
    pub fn ok() -> Output {
        Output::Ok {
            affected: 0,
            last_insert_id: 0,
            info: String::new(),
        }
    }
}

/// The outputs of one COM_QUERY (several with multi-statements), and the
/// error that stopped it, if any. Outputs before the error were applied.
#[derive(Debug, Default)]
pub struct QueryResult {
    /// One per statement that succeeded.
    pub outputs: Vec<Output>,
    /// The failure of the statement after the last output.
    pub error: Option<Error>,
}

impl QueryResult {
    /// Records one statement's outcome; false once a statement failed (the
    /// rest of the COM_QUERY is not run).
    pub fn record(&mut self, outcome: Result<Output, impl Into<Error>>) -> bool {
        match outcome {
            Ok(o) => {
                self.outputs.push(o);
                true
            }
            Err(e) => {
                self.error = Some(e.into());
                false
            }
        }
    }

    /// A single failure.
    pub fn err(e: impl Into<Error>) -> QueryResult {
        QueryResult {
            outputs: Vec::new(),
            error: Some(e.into()),
        }
    }
}

/// A prepared statement as the backend made it.
#[derive(Clone)]
pub struct Prepared {
    /// Number of `?` parameters.
    pub params: usize,
    /// The result columns as far as known at prepare time (may be empty).
    pub columns: Vec<Column>,
    /// The backend's own form of the statement (parsed AST, plan, ...).
    pub plan: Arc<dyn Any + Send + Sync>,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("params", &self.params)
            .field("columns", &self.columns)
            .finish()
    }
}

/// Per-connection state shared by the protocol layer and the backend.
#[derive(Debug)]
pub struct Session {
    /// The server this session belongs to.
    pub server: Arc<Shared>,
    /// `CONNECTION_ID()`.
    pub conn_id: u32,
    /// The user name the client logged in with (`USER()` is `user@ip`).
    pub user: String,
    /// The client's IP address.
    pub client_ip: String,
    /// The matched account (`CURRENT_USER()`): user and host pattern.
    pub account_host: String,
    /// The default database.
    pub db: Option<String>,
    /// Session values of system variables (lower-case names).
    pub vars: BTreeMap<String, Value>,
    /// User variables (`@x`), lower-case names.
    pub user_vars: HashMap<String, Value>,
    /// The TLS connection, if any.
    pub tls: Option<TlsInfo>,
    /// Whether several statements may be sent in one COM_QUERY.
    pub multi_statements: bool,
    /// The capabilities both sides agreed on (`protocol::consts::cap`).
    pub capabilities: u32,
    /// Number of queries run (the `Questions` status).
    pub questions: u64,
    /// The backend's per-session state (the SQL engine's open transaction).
    pub state: BackendState,
}

impl Session {
    /// Whether the client asked for matched rather than changed rows as
    /// UPDATE's affected count (the CLIENT_FOUND_ROWS capability).
    pub fn found_rows(&self) -> bool {
        self.capabilities & (1 << 1) != 0
    }
}

/// A backend's per-session state, opaque to the protocol layer.
#[derive(Default)]
pub struct BackendState {
    /// The state object.
    pub value: Option<Box<dyn Any + Send + Sync>>,
    /// Whether a transaction is open (`SERVER_STATUS_IN_TRANS`).
    pub in_transaction: bool,
}

impl std::fmt::Debug for BackendState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendState")
            .field("in_transaction", &self.in_transaction)
            .finish()
    }
}

impl Session {
    /// `autocommit` as a flag for OK packets.
    pub fn autocommit(&self) -> bool {
        self.flag("autocommit", true)
    }

    /// An ON/OFF system variable's session value (`0`/`OFF` is off, other
    /// values on), or `default` when the session did not set it.
    pub fn flag(&self, name: &str, default: bool) -> bool {
        match self.vars.get(name) {
            Some(Value::Int(0)) => false,
            Some(Value::Text(s)) => !(s == "0" || s.eq_ignore_ascii_case("off")),
            Some(_) => true,
            None => default,
        }
    }
}

/// Executes SQL for sessions. See the module docs.
pub trait Backend: Send + Sync + std::fmt::Debug {
    /// Runs the statements of one COM_QUERY.
    fn query<'a>(&'a self, session: &'a mut Session, sql: &'a str) -> BoxFuture<'a, QueryResult>;

    /// Prepares one statement (COM_STMT_PREPARE).
    fn prepare<'a>(
        &'a self,
        session: &'a mut Session,
        sql: &'a str,
    ) -> BoxFuture<'a, Result<Prepared, Error>>;

    /// Executes a prepared statement with bound parameters.
    fn execute<'a>(
        &'a self,
        session: &'a mut Session,
        stmt: &'a Prepared,
        params: Vec<Value>,
    ) -> BoxFuture<'a, Result<Output, Error>>;

    /// Changes the default database (COM_INIT_DB and `USE`).
    fn init_db<'a>(
        &'a self,
        session: &'a mut Session,
        db: &'a str,
    ) -> BoxFuture<'a, Result<(), Error>>;

    /// The connection ended: roll back what the session left open.
    fn close<'a>(&'a self, session: &'a mut Session) -> BoxFuture<'a, ()> {
        let _ = session;
        Box::pin(async {})
    }

    /// The columns of a table (COM_FIELD_LIST).
    fn field_list<'a>(
        &'a self,
        session: &'a mut Session,
        table: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Column>, SqlError>>;
}
