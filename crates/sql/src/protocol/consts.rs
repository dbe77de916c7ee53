//! Numbers of the MySQL client/server protocol: capability flags, commands,
//! status flags, column types and the character set ids we announce.
//!
//! Values are those of MySQL 8.0's `include/mysql_com.h` and
//! `include/field_types.h`; names keep MySQL's spelling without prefixes.

/// Capability flags (`CLIENT_*`).
pub mod cap {
    /// Use the improved version of old password authentication (always set).
    pub const LONG_PASSWORD: u32 = 1;
    /// Send found rows instead of affected rows in EOF/OK.
    pub const FOUND_ROWS: u32 = 1 << 1;
    /// Longer flags in column definitions.
    pub const LONG_FLAG: u32 = 1 << 2;
    /// A database name may be given in the handshake response.
    pub const CONNECT_WITH_DB: u32 = 1 << 3;
    /// Don't allow `database.table.column`.
    pub const NO_SCHEMA: u32 = 1 << 4;
    /// Compression protocol (not supported: never announced).
    pub const COMPRESS: u32 = 1 << 5;
    /// ODBC client.
    pub const ODBC: u32 = 1 << 6;
    /// `LOAD DATA LOCAL` (not supported: never announced).
    pub const LOCAL_FILES: u32 = 1 << 7;
    /// Ignore spaces before `(`.
    pub const IGNORE_SPACE: u32 = 1 << 8;
    /// The 4.1 protocol.
    pub const PROTOCOL_41: u32 = 1 << 9;
    /// Interactive client (wait_timeout vs interactive_timeout).
    pub const INTERACTIVE: u32 = 1 << 10;
    /// The client wants TLS: an SSLRequest packet precedes the response.
    pub const SSL: u32 = 1 << 11;
    /// Ignore SIGPIPE (client-side only).
    pub const IGNORE_SIGPIPE: u32 = 1 << 12;
    /// Transaction status in OK/EOF.
    pub const TRANSACTIONS: u32 = 1 << 13;
    /// Old flag (4.1 protocol).
    pub const RESERVED: u32 = 1 << 14;
    /// 4.1 authentication (length-prefixed auth data).
    pub const SECURE_CONNECTION: u32 = 1 << 15;
    /// Several statements in one COM_QUERY.
    pub const MULTI_STATEMENTS: u32 = 1 << 16;
    /// Several result sets.
    pub const MULTI_RESULTS: u32 = 1 << 17;
    /// Several result sets from prepared statements.
    pub const PS_MULTI_RESULTS: u32 = 1 << 18;
    /// Authentication plugins.
    pub const PLUGIN_AUTH: u32 = 1 << 19;
    /// Connection attributes in the handshake response.
    pub const CONNECT_ATTRS: u32 = 1 << 20;
    /// Length-encoded auth data in the handshake response.
    pub const PLUGIN_AUTH_LENENC_CLIENT_DATA: u32 = 1 << 21;
    /// Expired passwords can log in to change them.
    pub const CAN_HANDLE_EXPIRED_PASSWORDS: u32 = 1 << 22;
    /// Session state tracking.
    pub const SESSION_TRACK: u32 = 1 << 23;
    /// OK packets replace EOF packets.
    pub const DEPRECATE_EOF: u32 = 1 << 24;
}

/// Commands (`COM_*`), the first byte of a client packet after login.
pub mod com {
    /// Close the connection.
    pub const QUIT: u8 = 0x01;
    /// Change the default database.
    pub const INIT_DB: u8 = 0x02;
    /// A text query.
    pub const QUERY: u8 = 0x03;
    /// Column list of a table.
    pub const FIELD_LIST: u8 = 0x04;
    /// Statistics string.
    pub const STATISTICS: u8 = 0x09;
    /// Liveness check.
    pub const PING: u8 = 0x0e;
    /// Change user (not supported).
    pub const CHANGE_USER: u8 = 0x11;
    /// Prepare a statement.
    pub const STMT_PREPARE: u8 = 0x16;
    /// Execute a prepared statement.
    pub const STMT_EXECUTE: u8 = 0x17;
    /// Send a parameter's data in pieces.
    pub const STMT_SEND_LONG_DATA: u8 = 0x18;
    /// Deallocate a prepared statement.
    pub const STMT_CLOSE: u8 = 0x19;
    /// Reset a prepared statement's long data.
    pub const STMT_RESET: u8 = 0x1a;
    /// Turn multi-statements on or off.
    pub const SET_OPTION: u8 = 0x1b;
    /// Fetch rows of a cursor (not supported).
    pub const STMT_FETCH: u8 = 0x1c;
    /// Reset the session state.
    pub const RESET_CONNECTION: u8 = 0x1f;
}

/// Server status flags (`SERVER_*`) in OK and EOF packets.
pub mod status {
    /// A transaction is open.
    pub const IN_TRANS: u16 = 1;
    /// Autocommit is on.
    pub const AUTOCOMMIT: u16 = 2;
    /// More result sets follow.
    pub const MORE_RESULTS_EXISTS: u16 = 8;
}

/// Column types (`MYSQL_TYPE_*`).
#[allow(missing_docs)]
pub mod ty {
    pub const DECIMAL: u8 = 0x00;
    pub const TINY: u8 = 0x01;
    pub const SHORT: u8 = 0x02;
    pub const LONG: u8 = 0x03;
    pub const FLOAT: u8 = 0x04;
    pub const DOUBLE: u8 = 0x05;
    pub const NULL: u8 = 0x06;
    pub const TIMESTAMP: u8 = 0x07;
    pub const LONGLONG: u8 = 0x08;
    pub const INT24: u8 = 0x09;
    pub const DATE: u8 = 0x0a;
    pub const TIME: u8 = 0x0b;
    pub const DATETIME: u8 = 0x0c;
    pub const YEAR: u8 = 0x0d;
    pub const NEWDATE: u8 = 0x0e;
    pub const VARCHAR: u8 = 0x0f;
    pub const BIT: u8 = 0x10;
    pub const JSON: u8 = 0xf5;
    pub const NEWDECIMAL: u8 = 0xf6;
    pub const ENUM: u8 = 0xf7;
    pub const SET: u8 = 0xf8;
    pub const TINY_BLOB: u8 = 0xf9;
    pub const MEDIUM_BLOB: u8 = 0xfa;
    pub const LONG_BLOB: u8 = 0xfb;
    pub const BLOB: u8 = 0xfc;
    pub const VAR_STRING: u8 = 0xfd;
    pub const STRING: u8 = 0xfe;
    pub const GEOMETRY: u8 = 0xff;
}

/// Column definition flags.
pub mod flag {
    /// The column cannot be NULL.
    pub const NOT_NULL: u16 = 1;
    /// Binary data (byte comparison).
    pub const BINARY: u16 = 128;
    /// Unsigned integer.
    pub const UNSIGNED: u16 = 32;
}

/// `utf8mb4_general_ci`, the character set we announce and send.
pub const CHARSET_UTF8MB4: u8 = 45;
/// `binary`, for numbers and byte strings.
pub const CHARSET_BINARY: u16 = 63;

/// The longest payload of one physical packet; longer payloads are split.
pub const MAX_PAYLOAD: usize = 0xff_ffff;

/// The salt (scramble) length of both auth plugins.
pub const SCRAMBLE_LEN: usize = 20;

/// Name of the SHA-1 challenge-response plugin.
pub const NATIVE_PASSWORD: &str = "mysql_native_password";
/// Name of the SHA-256 plugin with a server-side cache.
pub const CACHING_SHA2_PASSWORD: &str = "caching_sha2_password";
