//! System variables and status variables.
//!
//! Each system variable has a scope and a default computed from the server
//! (so `ssl_cert` shows the configured path, `have_ssl` whether TLS is on).
//! Session values live in `Session::vars`; global variables are this
//! server's (not stored in the cluster) and settable only for
//! `require_secure_transport`, `tidb_mem_quota_query` and
//! `tidb_server_memory_limit`.

use time::format_description::FormatItem;
use time::macros::format_description;

use crate::backend::Session;
use crate::server::Shared;
use crate::value::Value;

/// Where a variable can be set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Session (and global default).
    Both,
    /// Global only.
    Global,
    /// Read-only.
    ReadOnly,
}

fn s(v: &str) -> Value {
    Value::Text(v.to_string())
}

fn onoff(b: bool) -> Value {
    s(if b { "ON" } else { "OFF" })
}

/// Every system variable: name, scope, default.
pub fn system_variables(shared: &Shared) -> Vec<(&'static str, Scope, Value)> {
    let st = &shared.settings;
    let tls = shared.tls().is_some();
    vec![
        ("auto_increment_increment", Scope::Both, Value::Int(1)),
        ("auto_increment_offset", Scope::Both, Value::Int(1)),
        ("autocommit", Scope::Both, Value::Int(1)),
        ("character_set_client", Scope::Both, s("utf8mb4")),
        ("character_set_connection", Scope::Both, s("utf8mb4")),
        ("character_set_database", Scope::Both, s("utf8mb4")),
        ("character_set_results", Scope::Both, s("utf8mb4")),
        ("character_set_server", Scope::Both, s("utf8mb4")),
        ("character_set_system", Scope::ReadOnly, s("utf8")),
        ("collation_connection", Scope::Both, s("utf8mb4_general_ci")),
        ("collation_database", Scope::Both, s("utf8mb4_bin")),
        ("collation_server", Scope::Both, s("utf8mb4_bin")),
        ("cte_max_recursion_depth", Scope::Both, Value::Int(1000)),
        ("default_authentication_plugin", Scope::ReadOnly, s("mysql_native_password")),
        ("default_storage_engine", Scope::Both, s("InnoDB")),
        ("default_tmp_storage_engine", Scope::Both, s("InnoDB")),
        ("div_precision_increment", Scope::Both, Value::Int(4)),
        ("foreign_key_checks", Scope::Both, Value::Int(1)),
        ("group_concat_max_len", Scope::Both, Value::Int(1024)),
        ("have_openssl", Scope::ReadOnly, s(if tls { "YES" } else { "DISABLED" })),
        ("have_ssl", Scope::ReadOnly, s(if tls { "YES" } else { "DISABLED" })),
        ("hostname", Scope::ReadOnly, s(&st.hostname)),
        ("init_connect", Scope::ReadOnly, s("")),
        ("interactive_timeout", Scope::Both, Value::Int(28800)),
        ("license", Scope::ReadOnly, s("Apache License 2.0")),
        ("lower_case_table_names", Scope::ReadOnly, Value::Int(2)),
        ("max_allowed_packet", Scope::ReadOnly, Value::Int(st.max_allowed_packet as i64)),
        ("max_execution_time", Scope::Both, Value::Int(0)),
        ("max_prepared_stmt_count", Scope::ReadOnly, Value::Int(crate::protocol::conn::MAX_STATEMENTS as i64)),
        ("net_buffer_length", Scope::Both, Value::Int(16384)),
        ("net_read_timeout", Scope::ReadOnly, Value::Int(st.net_read_timeout.as_secs() as i64)),
        ("net_write_timeout", Scope::Both, Value::Int(60)),
        ("performance_schema", Scope::ReadOnly, Value::Int(0)),
        ("port", Scope::ReadOnly, Value::Int(i64::from(st.port))),
        ("protocol_version", Scope::ReadOnly, Value::Int(10)),
        ("query_cache_size", Scope::ReadOnly, Value::Int(0)),
        ("query_cache_type", Scope::ReadOnly, s("OFF")),
        ("require_secure_transport", Scope::Global, onoff(shared.require_secure_transport())),
        ("socket", Scope::ReadOnly, s("")),
        ("sql_auto_is_null", Scope::Both, Value::Int(0)),
        ("sql_mode", Scope::Both, s("ONLY_FULL_GROUP_BY,STRICT_TRANS_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_AUTO_CREATE_USER,NO_ENGINE_SUBSTITUTION")),
        ("sql_safe_updates", Scope::Both, Value::Int(0)),
        ("sql_select_limit", Scope::Both, Value::UInt(u64::MAX)),
        ("ssl_ca", Scope::ReadOnly, s(&st.ssl_ca)),
        ("ssl_cert", Scope::ReadOnly, s(&st.ssl_cert)),
        ("ssl_key", Scope::ReadOnly, s(&st.ssl_key)),
        ("system_time_zone", Scope::ReadOnly, s("UTC")),
        ("tidb_enable_1pc", Scope::Both, onoff(true)),
        ("tidb_mem_quota_query", Scope::Both, Value::Int(shared.mem_quota_query() as i64)),
        ("tidb_server_memory_limit", Scope::Global, Value::Int(shared.memory().limit() as i64)),
        ("time_zone", Scope::Both, s("SYSTEM")),
        ("tls_version", Scope::ReadOnly, s(&st.tls_version)),
        ("transaction_isolation", Scope::Both, s("REPEATABLE-READ")),
        ("transaction_read_only", Scope::Both, Value::Int(0)),
        ("tx_isolation", Scope::Both, s("REPEATABLE-READ")),
        ("tx_read_only", Scope::Both, Value::Int(0)),
        ("unique_checks", Scope::Both, Value::Int(1)),
        ("version", Scope::ReadOnly, s(&shared.version())),
        ("version_comment", Scope::ReadOnly, s(concat!("tiox ", env!("CARGO_PKG_VERSION"), ", a TiDB-compatible database"))),
        ("version_compile_machine", Scope::ReadOnly, s(std::env::consts::ARCH)),
        ("version_compile_os", Scope::ReadOnly, s(std::env::consts::OS)),
        ("wait_timeout", Scope::Both, Value::Int(st.wait_timeout.as_secs() as i64)),
    ]
}

/// A variable's value in a session (`@@name` / `@@session.name`), or its
/// global value. `None`: no such variable.
pub fn get(session: &Session, name: &str, global: bool) -> Option<Value> {
    let name = name.to_ascii_lowercase();
    let (_, scope, default) = system_variables(&session.server)
        .into_iter()
        .find(|(n, _, _)| *n == name)?;
    if !global && scope == Scope::Both {
        if let Some(v) = session.vars.get(&name) {
            return Some(v.clone());
        }
    }
    Some(default)
}

/// Every variable with its session (or global) value, sorted by name.
pub fn all(session: &Session, global: bool) -> Vec<(String, Value)> {
    system_variables(&session.server)
        .into_iter()
        .map(|(n, scope, default)| {
            let v = if !global && scope == Scope::Both {
                session.vars.get(n).cloned().unwrap_or(default)
            } else {
                default
            };
            (n.to_string(), v)
        })
        .collect()
}

const OPENSSL_TIME: &[FormatItem<'static>] = format_description!(
    "[month repr:short] [day padding:space] [hour]:[minute]:[second] [year] GMT"
);

/// Status variables (`SHOW STATUS`): the session's TLS facts and a few
/// server counters.
pub fn status(session: &Session) -> Vec<(String, Value)> {
    let server = &session.server;
    let tls = server.tls();
    let (cipher, version, kx_group) = match &session.tls {
        Some(t) => (t.cipher.clone(), t.version.clone(), t.kx_group.clone()),
        None => (String::new(), String::new(), String::new()),
    };
    let cert = tls.as_ref().map(|t| t.server_cert());
    let fmt = |t: time::OffsetDateTime| t.format(OPENSSL_TIME).unwrap_or_default();
    let verify_mode = match (
        &session.tls,
        tls.as_ref().and_then(|t| t.files().ca.as_ref()),
    ) {
        (Some(_), Some(_)) => 5, // SSL_VERIFY_PEER | SSL_VERIFY_CLIENT_ONCE
        _ => 0,
    };
    let mut v = vec![
        (
            "Aborted_connects".to_string(),
            Value::UInt(server.aborted_connections()),
        ),
        (
            "Connections".to_string(),
            Value::UInt(server.total_connections()),
        ),
        ("Questions".to_string(), Value::UInt(session.questions)),
        ("Ssl_cipher".to_string(), Value::Text(cipher)),
        (
            "Ssl_cipher_list".to_string(),
            Value::Text(if session.tls.is_some() {
                tls.as_ref().map(|t| t.cipher_list()).unwrap_or_default()
            } else {
                String::new()
            }),
        ),
        (
            "Ssl_server_not_after".to_string(),
            Value::Text(cert.as_ref().map(|c| fmt(c.not_after)).unwrap_or_default()),
        ),
        (
            "Ssl_server_not_before".to_string(),
            Value::Text(cert.as_ref().map(|c| fmt(c.not_before)).unwrap_or_default()),
        ),
        ("Ssl_verify_mode".to_string(), Value::Int(verify_mode)),
        ("Ssl_version".to_string(), Value::Text(version)),
        (
            "Threads_connected".to_string(),
            Value::UInt(server.connections()),
        ),
        ("Tiox_tls_kx_group".to_string(), Value::Text(kx_group)),
        ("Uptime".to_string(), Value::UInt(server.uptime_secs())),
    ];
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}
