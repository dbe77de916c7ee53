//! The SQL layer's one error type, and the MySQL error codes it sends.
//!
//! [`Error::Sql`] is a statement-level failure: the client gets an ERR packet
//! with the MySQL code and SQLSTATE and the session carries on. Every other
//! variant ends the connection (protocol violations, I/O) or the process
//! (configuration, at startup).

use std::fmt;

/// Result alias for the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A MySQL error as sent in an ERR packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SqlError {
    /// The MySQL error number (1045, 1064, 3159, ...).
    pub code: u16,
    /// The five-character SQLSTATE.
    pub state: &'static str,
    /// The message, in MySQL's wording where MySQL has one.
    pub message: String,
}

impl SqlError {
    /// An error with MySQL's `code`, `state` and `message`.
    pub fn new(code: u16, state: &'static str, message: String) -> SqlError {
        SqlError {
            code,
            state,
            message,
        }
    }
}

impl fmt::Display for SqlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ERROR {} ({}): {}", self.code, self.state, self.message)
    }
}

/// What can go wrong in the SQL layer.
#[derive(Debug)]
pub enum Error {
    /// A statement failed: send this ERR packet and keep the session.
    Sql(SqlError),
    /// The peer broke the protocol (malformed, truncated, oversized or
    /// out-of-order packets). Close this connection; log the reason.
    Protocol(String),
    /// The connection's socket failed or closed. Close this connection.
    Io(std::io::Error),
    /// A configuration or startup problem; the message names the key, file
    /// and fix. The process must not start.
    Config(String),
    /// The user store could not be read or written; the message names the
    /// file. The statement fails; on startup the process must not start.
    Store(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Sql(e) => e.fmt(f),
            Error::Protocol(m) => write!(f, "protocol error: {m}"),
            Error::Io(e) => write!(f, "connection I/O: {e}"),
            Error::Config(m) => f.write_str(m),
            Error::Store(m) => write!(f, "user store: {m}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<SqlError> for Error {
    fn from(e: SqlError) -> Self {
        Error::Sql(e)
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(e)
    }
}

fn e(code: u16, state: &'static str, message: String) -> SqlError {
    SqlError::new(code, state, message)
}

/// Constructors for the MySQL errors we send, named after MySQL's `ER_*`.
pub mod er {
    use super::{e, SqlError};

    /// 1045: wrong user, password, host or unmet `REQUIRE`.
    pub fn access_denied(user: &str, host: &str, using_password: bool) -> SqlError {
        e(
            1045,
            "28000",
            format!(
                "Access denied for user '{user}'@'{host}' (using password: {})",
                if using_password { "YES" } else { "NO" }
            ),
        )
    }
    /// 1044: no privilege on a database.
    pub fn db_access_denied(user: &str, host: &str, db: &str) -> SqlError {
        e(
            1044,
            "42000",
            format!("Access denied for user '{user}'@'{host}' to database '{db}'"),
        )
    }
    /// 1227: a statement needs a privilege the user lacks.
    pub fn specific_access_denied(privilege: &str) -> SqlError {
        e(
            1227,
            "42000",
            format!(
                "Access denied; you need (at least one of) the {privilege} privilege(s) for this operation"
            ),
        )
    }
    /// 1043: the handshake was not followed.
    pub fn handshake(detail: &str) -> SqlError {
        e(1043, "08S01", format!("Bad handshake: {detail}"))
    }
    /// 1046: no default database.
    pub fn no_db() -> SqlError {
        e(1046, "3D000", "No database selected".into())
    }
    /// 1047: unknown command byte.
    pub fn unknown_com(cmd: u8) -> SqlError {
        e(1047, "08S01", format!("Unknown command (0x{cmd:02x})"))
    }
    /// 1049: unknown database.
    pub fn bad_db(db: &str) -> SqlError {
        e(1049, "42000", format!("Unknown database '{db}'"))
    }
    /// 1064: syntax error; `near` is the text at the error.
    pub fn parse(near: &str, detail: &str) -> SqlError {
        let near: String = near.chars().take(80).collect();
        e(
            1064,
            "42000",
            format!(
                "You have an error in your SQL syntax; check the manual that corresponds to your \
                 TiDB version for the right syntax to use near '{near}' ({detail})"
            ),
        )
    }
    /// 1065: the query was empty.
    pub fn empty_query() -> SqlError {
        e(1065, "42000", "Query was empty".into())
    }
    /// 1133: `SET PASSWORD` for a user that does not exist.
    pub fn password_no_match() -> SqlError {
        e(
            1133,
            "42000",
            "Can't find any matching row in the user table".into(),
        )
    }
    /// 1141: `SHOW GRANTS` / `REVOKE` for a grant that does not exist.
    pub fn nonexisting_grant(user: &str, host: &str) -> SqlError {
        e(
            1141,
            "42000",
            format!("There is no such grant defined for user '{user}' on host '{host}'"),
        )
    }
    /// 1146: unknown table.
    pub fn no_such_table(db: &str, table: &str) -> SqlError {
        e(1146, "42S02", format!("Table '{db}.{table}' doesn't exist"))
    }
    /// 1153: a packet larger than `max_allowed_packet`.
    pub fn packet_too_large() -> SqlError {
        e(
            1153,
            "08S01",
            "Got a packet bigger than 'max_allowed_packet' bytes".into(),
        )
    }
    /// 1156: sequence ids out of order.
    pub fn packets_out_of_order() -> SqlError {
        e(1156, "08S01", "Got packets out of order".into())
    }
    /// 1193: unknown system variable.
    pub fn unknown_system_variable(name: &str) -> SqlError {
        e(1193, "HY000", format!("Unknown system variable '{name}'"))
    }
    /// 1210: bad arguments to a prepared-statement command.
    pub fn wrong_arguments(what: &str) -> SqlError {
        e(1210, "HY000", format!("Incorrect arguments to {what}"))
    }
    /// 1231: a variable cannot take this value.
    pub fn wrong_value_for_var(name: &str, value: &str) -> SqlError {
        e(
            1231,
            "42000",
            format!("Variable '{name}' can't be set to the value of '{value}'"),
        )
    }
    /// 1235: a feature not implemented yet; `what` says which and when.
    pub fn not_supported_yet(what: &str) -> SqlError {
        e(
            1235,
            "42000",
            format!("This version of tiox doesn't yet support '{what}'"),
        )
    }
    /// 1238: wrong scope for a variable.
    pub fn incorrect_global_local_var(name: &str, scope: &str) -> SqlError {
        e(
            1238,
            "HY000",
            format!("Variable '{name}' is a {scope} variable"),
        )
    }
    /// 1243: unknown prepared statement id.
    pub fn unknown_stmt_handler(id: u32, what: &str) -> SqlError {
        e(
            1243,
            "HY000",
            format!("Unknown prepared statement handler ({id}) given to {what}"),
        )
    }
    /// 1305: unknown function.
    pub fn sp_does_not_exist(name: &str) -> SqlError {
        e(1305, "42000", format!("FUNCTION {name} does not exist"))
    }
    /// 1396: a user statement failed for one account.
    pub fn cannot_user(op: &str, user: &str, host: &str) -> SqlError {
        e(
            1396,
            "HY000",
            format!("Operation {op} failed for '{user}'@'{host}'"),
        )
    }
    /// 1582 wrong parameter count for a native function.
    pub fn wrong_paramcount(name: &str) -> SqlError {
        e(
            1582,
            "42000",
            format!("Incorrect parameter count in the call to native function '{name}'"),
        )
    }
    /// 1835: a packet that cannot be decoded.
    pub fn malformed_packet() -> SqlError {
        e(1835, "HY000", "Malformed communication packet.".into())
    }
    /// 3159: plaintext login while `require-secure-transport` is on.
    pub fn secure_transport_required() -> SqlError {
        e(
            3159,
            "HY000",
            "Connections using insecure transport are prohibited while \
             --require_secure_transport=ON."
                .into(),
        )
    }
    /// 8175 (TiDB): the statement's buffers passed `tidb_mem_quota_query`.
    pub fn mem_quota_exceeded(conn_id: u32) -> SqlError {
        e(
            8175,
            "HY000",
            format!(
                "Your query has been cancelled due to exceeding the allowed memory limit for a \
                 single SQL query. Please try narrowing your query scope or increase the \
                 tidb_mem_quota_query limit and try again.[conn={conn_id}]"
            ),
        )
    }
    /// 3024: a SELECT ran past `max_execution_time`.
    pub fn max_execution_time_exceeded() -> SqlError {
        e(
            3024,
            "HY000",
            "Query execution was interrupted, maximum statement execution time exceeded".into(),
        )
    }
    /// 1317: the statement was stopped by `KILL QUERY` (or its
    /// connection by `KILL`).
    pub fn query_interrupted() -> SqlError {
        e(1317, "70100", "Query execution was interrupted".into())
    }
    /// 1094: `KILL` of a connection id that is not running here.
    pub fn no_such_thread(id: u64) -> SqlError {
        e(1094, "HY000", format!("Unknown thread id: {id}"))
    }
    /// 1095: `KILL` of another user's connection without
    /// CONNECTION_ADMIN or SUPER.
    pub fn kill_denied(id: u64) -> SqlError {
        e(1095, "HY000", format!("You are not owner of thread {id}"))
    }
    /// 1116: more tables in one join than MySQL allows.
    pub fn too_many_tables(limit: usize) -> SqlError {
        e(
            1116,
            "HY000",
            format!("Too many tables; MySQL can only use {limit} tables in a join"),
        )
    }
    /// 1105: an internal or environment problem; the message says which.
    pub fn unknown(message: String) -> SqlError {
        e(1105, "HY000", message)
    }
    /// 1524: unknown auth plugin.
    pub fn plugin_is_not_loaded(name: &str) -> SqlError {
        e(1524, "HY000", format!("Plugin '{name}' is not loaded"))
    }
    /// 1054-like: unknown column (only for `SELECT` without tables).
    pub fn bad_field(name: &str) -> SqlError {
        e(
            1054,
            "42S22",
            format!("Unknown column '{name}' in 'field list'"),
        )
    }
}
