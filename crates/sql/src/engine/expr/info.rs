//! Information functions: what the session knows (`VERSION()`,
//! `DATABASE()`, `USER()`, `CURRENT_USER()`, `CONNECTION_ID()`, ...).

use crate::backend::Session;
use crate::error::SqlError;
use crate::value::Value;

/// `CURRENT_USER()`: the matched account.
pub fn current_user(s: &Session) -> Value {
    Value::Text(format!("{}@{}", s.user, s.account_host))
}

/// The functions of this family by name; `None`: not one of them.
pub fn call(s: &Session, name: &str, args: &[Value]) -> Result<Option<Value>, SqlError> {
    let n = args.len();
    let arity = |ok: bool| super::arity(name, ok);
    Ok(Some(match name {
        "version" => {
            arity(n == 0)?;
            Value::Text(s.server.version())
        }
        "database" | "schema" => {
            arity(n == 0)?;
            s.db.clone().map_or(Value::Null, Value::Text)
        }
        "user" | "session_user" | "system_user" => {
            arity(n == 0)?;
            Value::Text(format!("{}@{}", s.user, s.client_ip))
        }
        "current_user" => {
            arity(n == 0)?;
            current_user(s)
        }
        "connection_id" => {
            arity(n == 0)?;
            Value::UInt(u64::from(s.conn_id))
        }
        "last_insert_id" => s
            .vars
            .get("last_insert_id")
            .cloned()
            .unwrap_or(Value::Int(0)),
        "found_rows" => s.vars.get("found_rows").cloned().unwrap_or(Value::Int(0)),
        "row_count" => Value::Int(-1),
        _ => return Ok(None),
    }))
}
