//! The SQL layer's one error type, and the MySQL error codes it sends.
//!
//! [`ErrorKind`] is the one table of MySQL codes and SQLSTATEs: errors are
//! made with [`SqlError::of`] (or the `er::` constructors), and code that
//! must act on an error tests [`SqlError::kind`], never a number.
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
    /// An error of `kind` (its code and SQLSTATE) saying `message`.
    pub fn of(kind: ErrorKind, message: String) -> SqlError {
        SqlError {
            code: kind.code(),
            state: kind.state(),
            message,
        }
    }

    /// The error's kind (`None` for a code the table does not know).
    pub fn kind(&self) -> Option<ErrorKind> {
        ErrorKind::of_code(self.code)
    }

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

/// What went wrong, in MySQL's numbering: each kind has its code and
/// SQLSTATE here and nowhere else. Callers that must act on an error
/// (roll back on a deadlock, retry a conflict) test its kind, not a number.
macro_rules! kinds {
    ($($(#[$doc:meta])* $name:ident = ($code:literal, $state:literal),)*) => {
        /// A MySQL error kind (see the table in `error.rs`).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum ErrorKind {
            $($(#[$doc])* $name,)*
        }

        impl ErrorKind {
            /// The MySQL error number.
            pub const fn code(self) -> u16 {
                match self {
                    $(ErrorKind::$name => $code,)*
                }
            }

            /// The five-character SQLSTATE.
            pub const fn state(self) -> &'static str {
                match self {
                    $(ErrorKind::$name => $state,)*
                }
            }

            /// The kind of a MySQL error number, if it is one of ours.
            pub const fn of_code(code: u16) -> Option<ErrorKind> {
                match code {
                    $($code => Some(ErrorKind::$name),)*
                    _ => None,
                }
            }
        }
    };
}

kinds! {
    /// `CREATE DATABASE` of one that exists.
    DbCreateExists = (1007, "HY000"),
    /// `DROP DATABASE` of one that does not exist.
    DbDropExists = (1008, "HY000"),
    /// Too many connections.
    ConCount = (1040, "08004"),
    /// A bad handshake.
    Handshake = (1043, "08S01"),
    /// No privilege on the database.
    DbAccessDenied = (1044, "42000"),
    /// Login refused.
    AccessDenied = (1045, "28000"),
    /// No database selected.
    NoDb = (1046, "3D000"),
    /// An unknown command byte.
    UnknownCom = (1047, "08S01"),
    /// NULL into a NOT NULL column.
    BadNull = (1048, "23000"),
    /// Unknown database.
    BadDb = (1049, "42000"),
    /// The table exists.
    TableExists = (1050, "42S01"),
    /// Unknown table.
    BadTable = (1051, "42S02"),
    /// An ambiguous column name.
    NonUniq = (1052, "23000"),
    /// Unknown column.
    BadField = (1054, "42S22"),
    /// A parent row that children reference.
    RowIsReferenced = (1451, "23000"),
    /// A child row without its parent.
    NoReferencedRow = (1452, "23000"),
    /// Cascades nested too deeply.
    ForeignKeyCascadeDepth = (3008, "HY000"),
    /// A NULL where a column becomes NOT NULL.
    InvalidUseOfNull = (1138, "22004"),
    /// A duplicate column name.
    DupFieldname = (1060, "42S21"),
    /// A duplicate index name.
    DupKeyname = (1061, "42000"),
    /// A duplicate unique key.
    DupEntry = (1062, "23000"),
    /// A bad column definition.
    WrongFieldSpec = (1063, "42000"),
    /// A syntax error.
    Parse = (1064, "42000"),
    /// An empty query.
    EmptyQuery = (1065, "42000"),
    /// Several primary keys.
    MultiplePriKey = (1068, "42000"),
    /// An index on a column that does not exist.
    KeyColumnDoesNotExist = (1072, "42000"),
    /// AUTO_INCREMENT without a key.
    WrongAutoKey = (1075, "42000"),
    /// Dropping every column.
    CantRemoveAllFields = (1090, "42000"),
    /// Dropping a column or index that does not exist.
    CantDropFieldOrKey = (1091, "42000"),
    /// `KILL` of an unknown connection id.
    NoSuchThread = (1094, "HY000"),
    /// `KILL` of another user's connection.
    KillDenied = (1095, "HY000"),
    /// `SELECT *` without tables.
    NoTablesUsed = (1096, "HY000"),
    /// A bad table name.
    WrongTableName = (1103, "42000"),
    /// Anything without a MySQL code of its own.
    Unknown = (1105, "HY000"),
    /// An aggregate where none may be.
    InvalidGroupFuncUse = (1111, "HY000"),
    /// A table without columns.
    TableMustHaveColumns = (1113, "42000"),
    /// An unknown character set.
    UnknownCharacterSet = (1115, "42000"),
    /// More tables in one join than allowed.
    TooManyTables = (1116, "HY000"),
    /// No matching account for SET PASSWORD.
    PasswordNoMatch = (1133, "42000"),
    /// A row with the wrong number of values.
    WrongValueCountOnRow = (1136, "21S01"),
    /// No such grant.
    NonexistingGrant = (1141, "42000"),
    /// No privilege on the table.
    TableAccessDenied = (1142, "42000"),
    /// The table does not exist.
    NoSuchTable = (1146, "42S02"),
    /// A packet over max_allowed_packet.
    NetPacketTooLarge = (1153, "08S01"),
    /// Packets out of order.
    NetPacketsOutOfOrder = (1156, "08S01"),
    /// An unknown system variable.
    UnknownSystemVariable = (1193, "HY000"),
    /// A lock wait timed out.
    LockWaitTimeout = (1205, "HY000"),
    /// Bad arguments to a statement.
    WrongArguments = (1210, "HY000"),
    /// A deadlock: the transaction was rolled back.
    LockDeadlock = (1213, "40001"),
    /// An incorrect combination of clauses.
    WrongUsage = (1221, "HY000"),
    /// A multi-table DELETE target that is not among its tables.
    UnknownTable = (1109, "42S02"),
    /// UNION sides of different widths.
    WrongNumberOfColumnsInSelect = (1222, "21000"),
    /// A global privilege is missing.
    SpecificAccessDenied = (1227, "42000"),
    /// A bad value for a variable.
    WrongValueForVar = (1231, "42000"),
    /// Not supported (yet).
    NotSupportedYet = (1235, "42000"),
    /// A variable of the wrong scope.
    IncorrectGlobalLocalVar = (1238, "HY000"),
    /// An operand with the wrong number of columns.
    OperandColumns = (1241, "21000"),
    /// A scalar subquery with several rows.
    SubqueryNo1Row = (1242, "21000"),
    /// An unknown prepared statement.
    UnknownStmtHandler = (1243, "HY000"),
    /// A derived table without an alias.
    DerivedMustHaveAlias = (1248, "42000"),
    /// A value out of the column's range.
    WarnDataOutOfRange = (1264, "22003"),
    /// A value truncated for the column.
    WarnDataTruncated = (1265, "01000"),
    /// A collation tiox does not know.
    UnknownCollation = (1273, "HY000"),
    /// An unknown function.
    SpDoesNotExist = (1305, "42000"),
    /// The statement was killed.
    QueryInterrupted = (1317, "70100"),
    /// A view where a base table is needed, or the reverse.
    WrongObject = (1347, "HY000"),
    /// A column list of another width than the query's select list.
    ViewWrongList = (1353, "HY000"),
    /// A column without a value or default.
    NoDefaultForField = (1364, "HY000"),
    /// An account operation that failed.
    CannotUser = (1396, "HY000"),
    /// A string too long for the column.
    DataTooLong = (1406, "22001"),
    /// GRANT to an account that does not exist.
    CantCreateUserWithGrant = (1410, "42000"),
    /// A value a function cannot take (`UUID_TO_BIN('x')`).
    WrongValueForType = (1411, "HY000"),
    /// A decimal scale above its precision.
    MBiggerThanD = (1427, "42000"),
    /// Too many prepared statements.
    MaxPreparedStmtCountReached = (1461, "42000"),
    /// A view that reads itself.
    ViewRecursive = (1462, "HY000"),
    /// A write through a view that is not updatable.
    NonUpdatableTable = (1288, "HY000"),
    /// An unknown authentication plugin.
    PluginIsNotLoaded = (1524, "HY000"),
    /// A function with the wrong number of arguments.
    WrongParamcountToNativeFct = (1582, "42000"),
    /// Arithmetic out of range.
    DataOutOfRange = (1690, "22003"),
    /// A password hash of the wrong format.
    PasswordFormat = (1827, "HY000"),
    /// A malformed packet.
    MalformedPacket = (1835, "HY000"),
    /// max_execution_time passed.
    QueryTimeout = (3024, "HY000"),
    /// A locked account.
    AccountHasBeenLocked = (3118, "HY000"),
    /// A plaintext connection where TLS is required.
    SecureTransportRequired = (3159, "HY000"),
    /// require_secure_transport without TLS.
    NoSecureTransportsConfigured = (3161, "HY000"),
    /// A value written to a JSON column is not JSON.
    InvalidJsonText = (3140, "22032"),
    /// A JSON function's document argument is not JSON.
    InvalidJsonTextInParam = (3141, "22032"),
    /// A JSON path expression that does not parse.
    InvalidJsonPath = (3143, "42000"),
    /// A JSON function's document argument is neither JSON nor a string.
    InvalidTypeForJson = (3146, "22032"),
    /// `*`, `**` or a range in a path where one value is needed.
    InvalidJsonPathWildcard = (3149, "42000"),
    /// A JSON column in an index.
    JsonUsedAsKey = (3152, "42000"),
    /// The path `$` where a path into the document is needed.
    JsonVacuousPath = (3153, "42000"),
    /// A `one_or_all` argument that is neither.
    JsonBadOneOrAllArg = (3154, "42000"),
    /// A NULL object key.
    JsonDocumentNullKey = (3158, "22032"),
    /// `JSON_ARRAY_INSERT` with a path that does not end in an array cell.
    InvalidJsonPathArrayCell = (3165, "42000"),
    /// A regular expression that does not compile.
    RegexpIllegalArgument = (3685, "HY000"),
    /// A recursive CTE ran past `cte_max_recursion_depth`.
    CteMaxRecursionDepth = (3636, "HY000"),
    /// TLS could not be (re)loaded.
    TlsReload = (3889, "HY000"),
    /// A bad match_type flag of a regular-expression function.
    RegexpInvalidFlag = (3900, "HY000"),
    /// The statement's memory quota was exceeded.
    MemExceedThreshold = (8175, "HY000"),
    /// The server's memory limit was exceeded and this statement used the
    /// most.
    MemoryExceedForInstance = (8176, "HY000"),
    /// The cluster could not serve the request: retry.
    RegionUnavailable = (9005, "HY000"),
    /// A write conflict at commit.
    WriteConflict = (9007, "HY000"),
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

fn e(kind: ErrorKind, message: String) -> SqlError {
    SqlError::of(kind, message)
}

/// Constructors for the MySQL errors we send, named after MySQL's `ER_*`.
pub mod er {
    use super::ErrorKind;
    use super::{e, SqlError};

    /// 1045: wrong user, password, host or unmet `REQUIRE`.
    pub fn access_denied(user: &str, host: &str, using_password: bool) -> SqlError {
        e(
            ErrorKind::AccessDenied,
            format!(
                "Access denied for user '{user}'@'{host}' (using password: {})",
                if using_password { "YES" } else { "NO" }
            ),
        )
    }
    /// 1044: no privilege on a database.
    pub fn db_access_denied(user: &str, host: &str, db: &str) -> SqlError {
        e(
            ErrorKind::DbAccessDenied,
            format!("Access denied for user '{user}'@'{host}' to database '{db}'"),
        )
    }
    /// 1227: a statement needs a privilege the user lacks.
    pub fn specific_access_denied(privilege: &str) -> SqlError {
        e(
            ErrorKind::SpecificAccessDenied,
            format!(
                "Access denied; you need (at least one of) the {privilege} privilege(s) for this operation"
            ),
        )
    }
    /// 1043: the handshake was not followed.
    pub fn handshake(detail: &str) -> SqlError {
        e(ErrorKind::Handshake, format!("Bad handshake: {detail}"))
    }
    /// 1046: no default database.
    pub fn no_db() -> SqlError {
        e(ErrorKind::NoDb, "No database selected".into())
    }
    /// 1047: unknown command byte.
    pub fn unknown_com(cmd: u8) -> SqlError {
        e(
            ErrorKind::UnknownCom,
            format!("Unknown command (0x{cmd:02x})"),
        )
    }
    /// 1049: unknown database.
    pub fn bad_db(db: &str) -> SqlError {
        e(ErrorKind::BadDb, format!("Unknown database '{db}'"))
    }
    /// 1064: syntax error; `near` is the text at the error.
    pub fn parse(near: &str, detail: &str) -> SqlError {
        let near: String = near.chars().take(80).collect();
        e(
            ErrorKind::Parse,
            format!(
                "You have an error in your SQL syntax; check the manual that corresponds to your \
                 TiDB version for the right syntax to use near '{near}' ({detail})"
            ),
        )
    }
    /// 1065: the query was empty.
    pub fn empty_query() -> SqlError {
        e(ErrorKind::EmptyQuery, "Query was empty".into())
    }
    /// 1133: `SET PASSWORD` for a user that does not exist.
    pub fn password_no_match() -> SqlError {
        e(
            ErrorKind::PasswordNoMatch,
            "Can't find any matching row in the user table".into(),
        )
    }
    /// 1141: `SHOW GRANTS` / `REVOKE` for a grant that does not exist.
    pub fn nonexisting_grant(user: &str, host: &str) -> SqlError {
        e(
            ErrorKind::NonexistingGrant,
            format!("There is no such grant defined for user '{user}' on host '{host}'"),
        )
    }
    /// 1146: unknown table.
    pub fn no_such_table(db: &str, table: &str) -> SqlError {
        e(
            ErrorKind::NoSuchTable,
            format!("Table '{db}.{table}' doesn't exist"),
        )
    }
    /// 1153: a packet larger than `max_allowed_packet`.
    pub fn packet_too_large() -> SqlError {
        e(
            ErrorKind::NetPacketTooLarge,
            "Got a packet bigger than 'max_allowed_packet' bytes".into(),
        )
    }
    /// 1156: sequence ids out of order.
    pub fn packets_out_of_order() -> SqlError {
        e(
            ErrorKind::NetPacketsOutOfOrder,
            "Got packets out of order".into(),
        )
    }
    /// 1193: unknown system variable.
    pub fn unknown_system_variable(name: &str) -> SqlError {
        e(
            ErrorKind::UnknownSystemVariable,
            format!("Unknown system variable '{name}'"),
        )
    }
    /// 1210: bad arguments to a prepared-statement command.
    pub fn wrong_arguments(what: &str) -> SqlError {
        e(
            ErrorKind::WrongArguments,
            format!("Incorrect arguments to {what}"),
        )
    }
    /// 1231: a variable cannot take this value.
    pub fn wrong_value_for_var(name: &str, value: &str) -> SqlError {
        e(
            ErrorKind::WrongValueForVar,
            format!("Variable '{name}' can't be set to the value of '{value}'"),
        )
    }
    /// 1235: a feature not implemented yet; `what` says which and when.
    pub fn not_supported_yet(what: &str) -> SqlError {
        e(
            ErrorKind::NotSupportedYet,
            format!("This version of tiox doesn't yet support '{what}'"),
        )
    }
    /// 1238: wrong scope for a variable.
    pub fn incorrect_global_local_var(name: &str, scope: &str) -> SqlError {
        e(
            ErrorKind::IncorrectGlobalLocalVar,
            format!("Variable '{name}' is a {scope} variable"),
        )
    }
    /// 1243: unknown prepared statement id.
    pub fn unknown_stmt_handler(id: u32, what: &str) -> SqlError {
        e(
            ErrorKind::UnknownStmtHandler,
            format!("Unknown prepared statement handler ({id}) given to {what}"),
        )
    }
    /// 1305: unknown function.
    pub fn sp_does_not_exist(name: &str) -> SqlError {
        e(
            ErrorKind::SpDoesNotExist,
            format!("FUNCTION {name} does not exist"),
        )
    }
    /// 1396: a user statement failed for one account.
    pub fn cannot_user(op: &str, user: &str, host: &str) -> SqlError {
        e(
            ErrorKind::CannotUser,
            format!("Operation {op} failed for '{user}'@'{host}'"),
        )
    }
    /// 1582 wrong parameter count for a native function.
    pub fn wrong_paramcount(name: &str) -> SqlError {
        e(
            ErrorKind::WrongParamcountToNativeFct,
            format!("Incorrect parameter count in the call to native function '{name}'"),
        )
    }
    /// 1835: a packet that cannot be decoded.
    pub fn malformed_packet() -> SqlError {
        e(
            ErrorKind::MalformedPacket,
            "Malformed communication packet.".into(),
        )
    }
    /// 3159: plaintext login while `require-secure-transport` is on.
    pub fn secure_transport_required() -> SqlError {
        e(
            ErrorKind::SecureTransportRequired,
            "Connections using insecure transport are prohibited while \
             --require_secure_transport=ON."
                .into(),
        )
    }
    /// 8175 (TiDB): the statement's buffers passed `tidb_mem_quota_query`.
    pub fn mem_quota_exceeded(conn_id: u32) -> SqlError {
        e(
            ErrorKind::MemExceedThreshold,
            format!(
                "Your query has been cancelled due to exceeding the allowed memory limit for a \
                 single SQL query. Please try narrowing your query scope or increase the \
                 tidb_mem_quota_query limit and try again.[conn={conn_id}]"
            ),
        )
    }
    /// 8176: cancelled as the statement using the most memory when the
    /// server passed `tidb_server_memory_limit`.
    pub fn server_memory_exceeded(conn_id: u32) -> SqlError {
        e(
            ErrorKind::MemoryExceedForInstance,
            format!(
                "Your query has been cancelled due to exceeding the allowed memory limit for the \
                 tidb-server instance and this query is currently using the most memory. Please \
                 try narrowing your query scope or increase the tidb_server_memory_limit and try \
                 again.[conn={conn_id}]"
            ),
        )
    }
    /// 3024: a SELECT ran past `max_execution_time`.
    pub fn max_execution_time_exceeded() -> SqlError {
        e(
            ErrorKind::QueryTimeout,
            "Query execution was interrupted, maximum statement execution time exceeded".into(),
        )
    }
    /// 1317: the statement was stopped by `KILL QUERY` (or its
    /// connection by `KILL`).
    pub fn query_interrupted() -> SqlError {
        e(
            ErrorKind::QueryInterrupted,
            "Query execution was interrupted".into(),
        )
    }
    /// 1094: `KILL` of a connection id that is not running here.
    pub fn no_such_thread(id: u64) -> SqlError {
        e(ErrorKind::NoSuchThread, format!("Unknown thread id: {id}"))
    }
    /// 1095: `KILL` of another user's connection without
    /// CONNECTION_ADMIN or SUPER.
    pub fn kill_denied(id: u64) -> SqlError {
        e(
            ErrorKind::KillDenied,
            format!("You are not owner of thread {id}"),
        )
    }
    /// 1116: more tables in one join than MySQL allows.
    pub fn too_many_tables(limit: usize) -> SqlError {
        e(
            ErrorKind::TooManyTables,
            format!("Too many tables; MySQL can only use {limit} tables in a join"),
        )
    }
    /// 1105: an internal or environment problem; the message says which.
    pub fn unknown(message: String) -> SqlError {
        e(ErrorKind::Unknown, message)
    }
    /// 1524: unknown auth plugin.
    pub fn plugin_is_not_loaded(name: &str) -> SqlError {
        e(
            ErrorKind::PluginIsNotLoaded,
            format!("Plugin '{name}' is not loaded"),
        )
    }
    /// 1054-like: unknown column (only for `SELECT` without tables).
    pub fn bad_field(name: &str) -> SqlError {
        e(
            ErrorKind::BadField,
            format!("Unknown column '{name}' in 'field list'"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_kind_has_one_code_and_a_sqlstate() {
        let e = er::query_interrupted();
        assert_eq!(e.kind(), Some(ErrorKind::QueryInterrupted));
        assert_eq!((e.code, e.state), (1317, "70100"));
        assert_eq!(ErrorKind::of_code(1213), Some(ErrorKind::LockDeadlock));
        assert_eq!(ErrorKind::LockDeadlock.state(), "40001");
        assert_eq!(ErrorKind::of_code(9999), None);
        for code in 1000..10000 {
            if let Some(k) = ErrorKind::of_code(code) {
                assert_eq!(k.code(), code);
                assert_eq!(k.state().len(), 5);
            }
        }
    }
}
