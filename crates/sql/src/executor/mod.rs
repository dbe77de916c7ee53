//! The session executor: statements that need no tables. It is the whole
//! [`Backend`] of a standalone tidb-server (`--store=unistore`), and the
//! SQL engine hands it the statements it does not own:
//!
//! * `SELECT` of constants, expressions, `@@variables`, `@user_vars`,
//!   parameters and session functions (no `FROM` other than `DUAL`);
//! * `SET` (session variables, `NAMES`, user variables, `TRANSACTION`),
//!   `SHOW VARIABLES|STATUS [LIKE|WHERE]`, `SHOW DATABASES`, `USE`;
//! * accounts and privileges through the [`UserStore`]: `CREATE/ALTER/DROP
//!   USER`, `SET PASSWORD`, `GRANT`/`REVOKE` (global and database level),
//!   `SHOW GRANTS`, `SHOW CREATE USER`, `FLUSH PRIVILEGES`;
//! * `ALTER INSTANCE RELOAD TLS`.
//!
//! Anything else is ERROR 1235 naming what is missing (never a fake OK),
//! except `BEGIN/COMMIT/ROLLBACK`, which are accepted because no statement
//! here touches data. Databases known: `information_schema`, `mysql`,
//! `performance_schema` and `test` (TiDB's bootstrap set).

pub mod eval;
pub mod vars;

use std::sync::Arc;

use sqlparser::ast::{LimitClause, SelectItem, SetExpr};

use crate::auth;
use crate::backend::{
    Backend, BoxFuture, Column, Output, Prepared, QueryResult, ResultSet, Session,
};
use crate::error::{er, Error, ErrorKind, SqlError};
use crate::parser::{self, Account, GrantLevel, SetTarget, ShowFilter, Stmt, Tokens};
use crate::protocol::consts::{CACHING_SHA2_PASSWORD, NATIVE_PASSWORD};
use crate::users::{like_match, UserRecord, GLOBAL_ONLY};
use crate::value::Value;
use eval::Ctx;

/// The databases the session executor knows.
pub const DATABASES: &[&str] = &["information_schema", "mysql", "performance_schema", "test"];

/// The session executor (see module docs).
#[derive(Debug, Default)]
pub struct Interim {
    /// Behind the SQL engine (what tidb-server runs, on either store): what
    /// reaches this executor is a statement nobody implements, not one that
    /// needs a store.
    behind_engine: bool,
}

struct Plan {
    sql: String,
    tokens: Tokens,
}

fn rows(columns: &[&str], data: Vec<Vec<Value>>) -> Output {
    let cols = columns
        .iter()
        .enumerate()
        .map(|(i, name)| {
            data.iter()
                .map(|r| &r[i])
                .find(|v| !v.is_null())
                .map_or_else(|| Column::text(name), |v| Column::for_value(name, v))
        })
        .collect();
    Output::Rows(ResultSet {
        columns: cols,
        rows: data,
    })
}

/// The byte offset in `sql` of a tokenizer location (1-based line/column).
pub(crate) fn byte_offset(sql: &str, loc: sqlparser::tokenizer::Location) -> Option<usize> {
    let mut off = 0;
    for (i, l) in sql.split_inclusive('\n').enumerate() {
        if i as u64 + 1 == loc.line {
            let col = loc.column.checked_sub(1)? as usize;
            return l
                .char_indices()
                .nth(col)
                .map(|(b, _)| off + b)
                .or(Some(off + l.len()));
        }
        off += l.len();
    }
    None
}

/// The source text of each select-list item, as MySQL names result columns
/// after it (`SELECT 1+1` has a column named `1+1`). Taken from the tokens:
/// after `SELECT`, split at top-level commas, up to `FROM`/`WHERE`/...
fn projection_texts(sql: &str, tokens: &Tokens) -> Vec<String> {
    use sqlparser::tokenizer::Token;
    const END: &[&str] = &[
        "FROM", "WHERE", "LIMIT", "ORDER", "GROUP", "HAVING", "INTO", "FOR", "UNION", "WINDOW",
        "LOCK",
    ];
    let mut items: Vec<(usize, usize)> = Vec::new();
    let mut depth = 0i32;
    let mut start: Option<usize> = None;
    let mut last = 0;
    let toks = &tokens.tokens;
    let mut i = 1; // skip SELECT
    while let Some(t) = toks.get(i) {
        match &t.token {
            Token::Word(w)
                if depth == 0
                    && w.quote_style.is_none()
                    && END.contains(&w.value.to_ascii_uppercase().as_str()) =>
            {
                break
            }
            Token::Word(w)
                if depth == 0
                    && start.is_none()
                    && w.quote_style.is_none()
                    && matches!(
                        w.value.to_ascii_uppercase().as_str(),
                        "DISTINCT" | "ALL" | "SQL_NO_CACHE" | "SQL_CALC_FOUND_ROWS"
                    ) =>
            {
                i += 1;
                continue;
            }
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            Token::Comma if depth == 0 => {
                if let Some(s) = start.take() {
                    items.push((s, last));
                }
                i += 1;
                continue;
            }
            _ => {}
        }
        if start.is_none() {
            start = Some(i);
        }
        last = i;
        i += 1;
    }
    if let Some(s) = start {
        items.push((s, last));
    }
    items
        .into_iter()
        .map(|(a, b)| {
            match (
                byte_offset(sql, toks[a].span.start),
                byte_offset(sql, toks[b].span.end),
            ) {
                (Some(x), Some(y)) if x < y && y <= sql.len() => sql[x..y].to_string(),
                _ => String::new(),
            }
        })
        .collect()
}

fn store_err(e: Error) -> SqlError {
    match e {
        Error::Sql(s) => s,
        other => er::unknown(other.to_string()),
    }
}

/// The session's own account record, fresh from the store.
fn me(session: &Session) -> Result<UserRecord, SqlError> {
    let users = session.server.users.load().map_err(store_err)?;
    users
        .into_iter()
        .find(|u| u.user == session.user && u.host == session.account_host)
        .ok_or_else(|| er::access_denied(&session.user, &session.client_ip, true))
}

fn require_global(session: &Session, privilege: &str) -> Result<UserRecord, SqlError> {
    let u = me(session)?;
    if u.has_global(privilege) {
        Ok(u)
    } else {
        Err(er::specific_access_denied(privilege))
    }
}

fn resolve(session: &Session, a: &Account) -> (String, String) {
    if a.current {
        (session.user.clone(), session.account_host.clone())
    } else {
        (a.user.clone(), a.host.clone())
    }
}

fn is_self(session: &Session, a: &Account) -> bool {
    let (u, h) = resolve(session, a);
    u == session.user && h == session.account_host
}

fn hash_for(plugin: &str, password: &str) -> String {
    if plugin == CACHING_SHA2_PASSWORD {
        auth::sha2_hash(password)
    } else {
        auth::native_hash(password)
    }
}

fn check_plugin(plugin: &str) -> Result<(), SqlError> {
    if plugin == NATIVE_PASSWORD || plugin == CACHING_SHA2_PASSWORD {
        Ok(())
    } else {
        Err(er::plugin_is_not_loaded(plugin))
    }
}

fn filter_rows(
    session: &Session,
    data: Vec<(String, Value)>,
    filter: &ShowFilter,
    name_col: &str,
) -> Result<Vec<Vec<Value>>, SqlError> {
    let mut out = Vec::new();
    for (name, value) in data {
        let keep = match filter {
            ShowFilter::None => true,
            ShowFilter::Like(p) => like_match(p, &name),
            ShowFilter::Where(e) => {
                let row = [
                    (name_col, Value::Text(name.clone())),
                    ("Value", value.clone()),
                ];
                let ctx = Ctx {
                    session,
                    params: &[],
                    row: &row,
                    resolver: None,
                };
                eval::truth(&ctx.eval(e)?) == Some(true)
            }
        };
        if keep {
            out.push(vec![Value::Text(name), Value::Text(value.to_string())]);
        }
    }
    Ok(out)
}

impl Interim {
    /// The executor the SQL engine hands statements it does not own.
    pub fn behind_engine() -> Interim {
        Interim {
            behind_engine: true,
        }
    }

    /// Runs one parsed statement (the SQL engine hands over the statements
    /// it does not own).
    pub fn run(
        &self,
        session: &mut Session,
        sql: &str,
        tokens: &Tokens,
        stmt: &Stmt,
        params: &[Value],
    ) -> Result<Output, SqlError> {
        match stmt {
            Stmt::Query(q) => self.select(session, &projection_texts(sql, tokens), q, params),
            Stmt::Set(assignments) => {
                for a in assignments {
                    self.set(session, a, params)?;
                }
                Ok(Output::ok())
            }
            Stmt::SetNames { charset, collation } => {
                let cs = charset.to_ascii_lowercase();
                if !matches!(
                    cs.as_str(),
                    "utf8mb4" | "utf8" | "utf8mb3" | "latin1" | "ascii" | "binary" | "default"
                ) {
                    return Err(SqlError::of(
                        ErrorKind::UnknownCharacterSet,
                        format!("Unknown character set: '{charset}'"),
                    ));
                }
                let cs = if cs == "default" {
                    "utf8mb4".to_string()
                } else {
                    cs
                };
                for v in [
                    "character_set_client",
                    "character_set_connection",
                    "character_set_results",
                ] {
                    session.vars.insert(v.into(), Value::Text(cs.clone()));
                }
                let coll = collation.clone().unwrap_or_else(|| {
                    if cs == "utf8mb4" {
                        "utf8mb4_general_ci".into()
                    } else {
                        format!("{cs}_general_ci")
                    }
                });
                session
                    .vars
                    .insert("collation_connection".into(), Value::Text(coll));
                Ok(Output::ok())
            }
            Stmt::Use(db) => {
                self.use_db(session, db)?;
                Ok(Output::ok())
            }
            Stmt::ShowVariables { global, filter } => {
                let data = vars::all(session, *global);
                Ok(rows(
                    &["Variable_name", "Value"],
                    filter_rows(session, data, filter, "Variable_name")?,
                ))
            }
            Stmt::ShowStatus { filter, .. } => {
                let data = vars::status(session);
                Ok(rows(
                    &["Variable_name", "Value"],
                    filter_rows(session, data, filter, "Variable_name")?,
                ))
            }
            Stmt::ShowDatabases(filter) => {
                let u = me(session)?;
                let data: Vec<(String, Value)> = DATABASES
                    .iter()
                    .filter(|d| {
                        **d == "information_schema"
                            || u.has_global("SHOW DATABASES")
                            || u.has_any_on_db(d)
                    })
                    .map(|d| (d.to_string(), Value::Null))
                    .collect();
                let kept = filter_rows(session, data, filter, "Database")?;
                Ok(rows(
                    &["Database"],
                    kept.into_iter().map(|mut r| vec![r.remove(0)]).collect(),
                ))
            }
            Stmt::ShowWarnings => Ok(Output::Rows(ResultSet {
                columns: vec![
                    Column::text("Level"),
                    Column::for_value("Code", &Value::Int(0)),
                    Column::text("Message"),
                ],
                rows: Vec::new(),
            })),
            Stmt::Transaction(_) | Stmt::BeginMode(_) => Ok(Output::ok()),
            Stmt::Savepoint(_) | Stmt::RollbackTo(_) | Stmt::ReleaseSavepoint(_) => {
                Err(er::not_supported_yet("savepoints without a store"))
            }
            Stmt::ShowCreateDatabase(_) | Stmt::ShowIndex { .. } | Stmt::ShowTableStatus { .. } => {
                Err(er::not_supported_yet("tables without a store"))
            }
            Stmt::Other(st) if matches!(**st, sqlparser::ast::Statement::Kill { .. }) => {
                let sqlparser::ast::Statement::Kill { modifier, id } = &**st else {
                    unreachable!("matched above")
                };
                let u = me(session)?;
                let admin = u.has_global("CONNECTION_ADMIN") || u.has_global("SUPER");
                let query_only = matches!(modifier, Some(sqlparser::ast::KillType::Query));
                if matches!(modifier, Some(sqlparser::ast::KillType::Mutation)) {
                    return Err(er::not_supported_yet("KILL MUTATION"));
                }
                session.server.kill(*id, query_only, &session.user, admin)?;
                Ok(Output::ok())
            }
            Stmt::Other(st) if self.behind_engine => {
                Err(er::not_supported_yet(&parser::kind(st).to_string()))
            }
            Stmt::Other(st) => Err(er::not_supported_yet(&format!(
                "{} without a store",
                parser::kind(st)
            ))),
            Stmt::ReloadTls => {
                let u = me(session)?;
                if !(u.has_global("CONNECTION_ADMIN") || u.has_global("SUPER")) {
                    return Err(er::specific_access_denied("CONNECTION_ADMIN or SUPER"));
                }
                let Some(tls) = session.server.tls() else {
                    return Err(SqlError::of(ErrorKind::TlsReload, "Failed to set up SSL because TLS is not configured: set [security] ssl-cert and ssl-key (or --ssl-cert/--ssl-key) and restart".into()));
                };
                tls.reload_now().map_err(|e| SqlError::of(ErrorKind::TlsReload, format!("Failed to set up SSL because of the following SSL library error: {e}; the previous certificate stays in use")))?;
                Ok(Output::ok())
            }
            Stmt::FlushPrivileges => {
                require_global(session, "RELOAD")?;
                Ok(Output::ok())
            }
            Stmt::ShowGrants(who) => {
                let target = who.as_ref().filter(|a| !is_self(session, a));
                let (u, h) = match target {
                    Some(a) => {
                        let me = me(session)?;
                        if !(me.has_global("SELECT") || me.has_global("CREATE USER")) {
                            return Err(er::db_access_denied(
                                &session.user,
                                &session.client_ip,
                                "mysql",
                            ));
                        }
                        resolve(session, a)
                    }
                    None => (session.user.clone(), session.account_host.clone()),
                };
                let users = session.server.users.load().map_err(store_err)?;
                let rec = users
                    .iter()
                    .find(|r| r.user == u && r.host == h)
                    .ok_or_else(|| er::nonexisting_grant(&u, &h))?;
                let name = format!("Grants for {u}@{h}");
                Ok(rows(
                    &[name.as_str()],
                    rec.grants_sql()
                        .into_iter()
                        .map(|g| vec![Value::Text(g)])
                        .collect(),
                ))
            }
            Stmt::ShowCreateUser(a) => {
                if !is_self(session, a) {
                    let me = me(session)?;
                    if !(me.has_global("SELECT") || me.has_global("CREATE USER")) {
                        return Err(er::db_access_denied(
                            &session.user,
                            &session.client_ip,
                            "mysql",
                        ));
                    }
                }
                let (u, h) = resolve(session, a);
                let users = session.server.users.load().map_err(store_err)?;
                let rec = users
                    .iter()
                    .find(|r| r.user == u && r.host == h)
                    .ok_or_else(|| er::cannot_user("SHOW CREATE USER", &u, &h))?;
                let name = format!("CREATE USER for {u}@{h}");
                Ok(rows(
                    &[name.as_str()],
                    vec![vec![Value::Text(rec.create_sql())]],
                ))
            }
            Stmt::CreateUser {
                if_not_exists,
                users,
                require,
                lock,
            } => {
                require_global(session, "CREATE USER")?;
                let server = session.server.clone();
                let mut failed = Vec::new();
                server
                    .users
                    .update(&mut |all| {
                        failed.clear();
                        for spec in users {
                            let (u, h) = resolve(session, &spec.account);
                            if all.iter().any(|r| r.user == u && r.host == h) {
                                if !*if_not_exists {
                                    failed.push((u, h));
                                }
                                continue;
                            }
                            let id = spec.identified.clone();
                            let plugin = id
                                .as_ref()
                                .and_then(|i| i.plugin.clone())
                                .unwrap_or_else(|| NATIVE_PASSWORD.into());
                            check_plugin(&plugin)?;
                            let auth_string = match id {
                                Some(parser::Identified { hash: Some(h), .. }) => {
                                    if !auth::valid_stored(&plugin, &h) {
                                        return Err(Error::Sql(SqlError::of(
                                            ErrorKind::PasswordFormat,
                                            "The password hash doesn't have the expected format."
                                                .into(),
                                        )));
                                    }
                                    h
                                }
                                Some(parser::Identified {
                                    password: Some(p), ..
                                }) => hash_for(&plugin, p.expose()),
                                _ => String::new(),
                            };
                            let mut rec = UserRecord::new(&u, &h, &plugin, auth_string);
                            if let Some(r) = require {
                                rec.require = r.clone();
                            }
                            rec.locked = lock.unwrap_or(false);
                            all.push(rec);
                        }
                        if failed.is_empty() {
                            Ok(())
                        } else {
                            Err(Error::Sql(er::cannot_user(
                                "CREATE USER",
                                &failed[0].0,
                                &failed[0].1,
                            )))
                        }
                    })
                    .map_err(store_err)?;
                Ok(Output::ok())
            }
            Stmt::AlterUser {
                if_exists,
                users,
                require,
                lock,
            } => {
                let only_self_password = users.iter().all(|s| is_self(session, &s.account))
                    && require.is_none()
                    && lock.is_none();
                if !only_self_password {
                    require_global(session, "CREATE USER")?;
                }
                let server = session.server.clone();
                server
                    .users
                    .update(&mut |all| {
                        for spec in users {
                            let (u, h) = resolve(session, &spec.account);
                            let Some(rec) = all.iter_mut().find(|r| r.user == u && r.host == h)
                            else {
                                if *if_exists {
                                    continue;
                                }
                                return Err(Error::Sql(er::cannot_user("ALTER USER", &u, &h)));
                            };
                            if let Some(id) = &spec.identified {
                                let plugin =
                                    id.plugin.clone().unwrap_or_else(|| rec.plugin.clone());
                                check_plugin(&plugin)?;
                                rec.auth_string =
                                    match (&id.hash, &id.password) {
                                        (Some(h), _) if auth::valid_stored(&plugin, h) => h.clone(),
                                        (Some(_), _) => return Err(Error::Sql(SqlError::of(
                                            ErrorKind::PasswordFormat,
                                            "The password hash doesn't have the expected format."
                                                .into(),
                                        ))),
                                        (None, Some(p)) => hash_for(&plugin, p.expose()),
                                        (None, None) => String::new(),
                                    };
                                rec.plugin = plugin;
                                server.sha2_cache.remove(&u, &h);
                            }
                            if let Some(r) = require {
                                rec.require = r.clone();
                            }
                            if let Some(l) = lock {
                                rec.locked = *l;
                            }
                        }
                        Ok(())
                    })
                    .map_err(store_err)?;
                Ok(Output::ok())
            }
            Stmt::DropUser { if_exists, users } => {
                require_global(session, "CREATE USER")?;
                let server = session.server.clone();
                server
                    .users
                    .update(&mut |all| {
                        for a in users {
                            let (u, h) = resolve(session, a);
                            let before = all.len();
                            all.retain(|r| !(r.user == u && r.host == h));
                            if all.len() == before && !*if_exists {
                                return Err(Error::Sql(er::cannot_user("DROP USER", &u, &h)));
                            }
                            server.sha2_cache.remove(&u, &h);
                        }
                        Ok(())
                    })
                    .map_err(store_err)?;
                Ok(Output::ok())
            }
            Stmt::SetPassword { account, password } => {
                let target = account.as_ref().filter(|a| !is_self(session, a));
                if target.is_some() {
                    require_global(session, "CREATE USER")?;
                }
                let (u, h) = match target {
                    Some(a) => resolve(session, a),
                    None => (session.user.clone(), session.account_host.clone()),
                };
                let server = session.server.clone();
                server
                    .users
                    .update(&mut |all| {
                        let rec = all
                            .iter_mut()
                            .find(|r| r.user == u && r.host == h)
                            .ok_or(Error::Sql(er::password_no_match()))?;
                        rec.auth_string = hash_for(&rec.plugin, password.expose());
                        Ok(())
                    })
                    .map_err(store_err)?;
                server.sha2_cache.remove(&u, &h);
                Ok(Output::ok())
            }
            Stmt::Grant {
                privileges,
                level,
                users,
                grant_option,
            } => {
                let granter = me(session)?;
                if !granter.grant_option {
                    return Err(er::specific_access_denied("GRANT OPTION"));
                }
                let level = self.level(session, level)?;
                let privs = normalize(privileges, &level)?;
                if !granter.has_global("ALL PRIVILEGES") {
                    if let Some(p) = privs.iter().find(|p| !granter.has_global(p)) {
                        return Err(er::specific_access_denied(p));
                    }
                }
                let server = session.server.clone();
                server
                    .users
                    .update(&mut |all| {
                        for a in users {
                            let (u, h) = resolve(session, a);
                            let rec = all
                                .iter_mut()
                                .find(|r| r.user == u && r.host == h)
                                .ok_or_else(|| {
                                    Error::Sql(SqlError::of(
                                        ErrorKind::CantCreateUserWithGrant,
                                        "You are not allowed to create a user with GRANT".into(),
                                    ))
                                })?;
                            let set = match &level {
                                GrantLevel::Global => &mut rec.global,
                                GrantLevel::Db(db) => rec.dbs.entry(db.clone()).or_default(),
                                GrantLevel::CurrentDb => return Err(Error::Sql(er::no_db())),
                            };
                            for p in &privs {
                                if p == "ALL PRIVILEGES" {
                                    set.clear();
                                }
                                set.insert(p.clone());
                            }
                            if *grant_option && level == GrantLevel::Global {
                                rec.grant_option = true;
                            }
                        }
                        Ok(())
                    })
                    .map_err(store_err)?;
                Ok(Output::ok())
            }
            Stmt::Revoke {
                privileges,
                level,
                users,
            } => {
                let granter = me(session)?;
                if !granter.grant_option {
                    return Err(er::specific_access_denied("GRANT OPTION"));
                }
                let level = self.level(session, level)?;
                let revoke_grant_option = privileges
                    .iter()
                    .any(|p| p == "GRANT OPTION" || p == "ALL PRIVILEGES");
                let privs: Vec<String> = privileges
                    .iter()
                    .filter(|p| *p != "GRANT OPTION")
                    .cloned()
                    .collect();
                let privs = normalize(&privs, &level)?;
                let server = session.server.clone();
                server
                    .users
                    .update(&mut |all| {
                        for a in users {
                            let (u, h) = resolve(session, a);
                            let rec = all
                                .iter_mut()
                                .find(|r| r.user == u && r.host == h)
                                .ok_or_else(|| Error::Sql(er::nonexisting_grant(&u, &h)))?;
                            let set = match &level {
                                GrantLevel::Global => &mut rec.global,
                                GrantLevel::Db(db) => match rec.dbs.get_mut(db) {
                                    Some(s) => s,
                                    None => return Err(Error::Sql(er::nonexisting_grant(&u, &h))),
                                },
                                GrantLevel::CurrentDb => return Err(Error::Sql(er::no_db())),
                            };
                            for p in &privs {
                                if p == "ALL PRIVILEGES" {
                                    set.clear();
                                } else if set.contains("ALL PRIVILEGES") {
                                    // Expand ALL so one privilege can be taken away.
                                    set.remove("ALL PRIVILEGES");
                                    for q in crate::users::PRIVILEGES {
                                        if matches!(level, GrantLevel::Global)
                                            || !GLOBAL_ONLY.contains(q)
                                        {
                                            set.insert(q.to_string());
                                        }
                                    }
                                    set.remove(p);
                                } else {
                                    set.remove(p);
                                }
                            }
                            if revoke_grant_option && level == GrantLevel::Global {
                                rec.grant_option = false;
                            }
                            rec.dbs.retain(|_, s| !s.is_empty());
                        }
                        Ok(())
                    })
                    .map_err(store_err)?;
                Ok(Output::ok())
            }
        }
    }

    fn level(&self, session: &Session, level: &GrantLevel) -> Result<GrantLevel, SqlError> {
        Ok(match level {
            GrantLevel::CurrentDb => GrantLevel::Db(session.db.clone().ok_or_else(er::no_db)?),
            other => other.clone(),
        })
    }

    fn use_db(&self, session: &mut Session, db: &str) -> Result<(), SqlError> {
        let name = db.to_ascii_lowercase();
        if !DATABASES.contains(&name.as_str()) {
            return Err(er::bad_db(db));
        }
        if name != "information_schema" {
            let u = me(session)?;
            if !u.has_any_on_db(&name) {
                return Err(er::db_access_denied(&session.user, &session.client_ip, db));
            }
        }
        session.db = Some(name);
        Ok(())
    }

    fn set(
        &self,
        session: &mut Session,
        a: &parser::Assignment,
        params: &[Value],
    ) -> Result<(), SqlError> {
        let value = match &a.value {
            Some(e) => {
                // `SET x = ON`: a bare word is a string value.
                if let sqlparser::ast::Expr::Identifier(id) = e {
                    if id.quote_style.is_none() && !id.value.starts_with('@') {
                        Some(Value::Text(id.value.clone()))
                    } else {
                        Some(
                            Ctx {
                                session,
                                params,
                                row: &[],
                                resolver: None,
                            }
                            .eval(e)?,
                        )
                    }
                } else {
                    Some(
                        Ctx {
                            session,
                            params,
                            row: &[],
                            resolver: None,
                        }
                        .eval(e)?,
                    )
                }
            }
            None => None,
        };
        match &a.target {
            SetTarget::User(name) => {
                session
                    .user_vars
                    .insert(name.clone(), value.unwrap_or(Value::Null));
                Ok(())
            }
            SetTarget::System { name, global } => {
                let all = vars::system_variables(&session.server);
                let Some((_, scope, _)) = all.iter().find(|(n, _, _)| n == name) else {
                    return Err(er::unknown_system_variable(name));
                };
                match (scope, global) {
                    (vars::Scope::ReadOnly, _) => Err(SqlError::of(
                        ErrorKind::IncorrectGlobalLocalVar,
                        format!("Variable '{name}' is a read only variable"),
                    )),
                    (vars::Scope::Global, false) => {
                        Err(er::incorrect_global_local_var(name, "GLOBAL"))
                    }
                    (_, true) => {
                        require_global(session, "SUPER")?;
                        if name == "tidb_mem_quota_query" {
                            let v =
                                value.ok_or_else(|| er::wrong_value_for_var(name, "DEFAULT"))?;
                            session.server.set_mem_quota_query(mem_quota(name, &v)?);
                            return Ok(());
                        }
                        if name == "tidb_server_memory_limit" {
                            let limit = match value {
                                None => crate::server::default_server_memory_limit(),
                                Some(v) => server_memory_limit(name, &v)?,
                            };
                            session.server.memory().set_limit(limit);
                            return Ok(());
                        }
                        if name != "require_secure_transport" {
                            return Err(er::not_supported_yet(&format!("SET GLOBAL {name}")));
                        }
                        let v = value.ok_or_else(|| er::wrong_value_for_var(name, "DEFAULT"))?;
                        let on = parse_bool(&v)
                            .ok_or_else(|| er::wrong_value_for_var(name, &v.to_string()))?;
                        if on && session.server.tls().is_none() {
                            return Err(SqlError::of(ErrorKind::NoSecureTransportsConfigured, "No secure transports (SSL or Shared Memory) are configured, unable to set --require_secure_transport=ON.".into()));
                        }
                        session.server.set_require_secure_transport(on);
                        Ok(())
                    }
                    (vars::Scope::Both, false) => {
                        match value {
                            None => {
                                session.vars.remove(name);
                            }
                            Some(v) => {
                                let v = match name.as_str() {
                                    "autocommit"
                                    | "foreign_key_checks"
                                    | "unique_checks"
                                    | "sql_safe_updates"
                                    | "sql_auto_is_null"
                                    | "transaction_read_only"
                                    | "tx_read_only" => {
                                        let b = parse_bool(&v).ok_or_else(|| {
                                            er::wrong_value_for_var(name, &v.to_string())
                                        })?;
                                        Value::Int(i64::from(b))
                                    }
                                    "tidb_mem_quota_query" => {
                                        Value::Int(mem_quota(name, &v)? as i64)
                                    }
                                    "transaction_isolation" | "tx_isolation" => {
                                        let s = v.to_string().to_ascii_uppercase();
                                        if !matches!(
                                            s.as_str(),
                                            "READ-UNCOMMITTED"
                                                | "READ-COMMITTED"
                                                | "REPEATABLE-READ"
                                                | "SERIALIZABLE"
                                        ) {
                                            return Err(er::wrong_value_for_var(
                                                name,
                                                &v.to_string(),
                                            ));
                                        }
                                        session.vars.insert(
                                            "transaction_isolation".into(),
                                            Value::Text(s.clone()),
                                        );
                                        Value::Text(s)
                                    }
                                    _ => v,
                                };
                                if name == "transaction_isolation" {
                                    session.vars.insert("tx_isolation".into(), v.clone());
                                }
                                session.vars.insert(name.clone(), v);
                            }
                        }
                        Ok(())
                    }
                }
            }
        }
    }

    fn select(
        &self,
        session: &mut Session,
        texts: &[String],
        q: &sqlparser::ast::Query,
        params: &[Value],
    ) -> Result<Output, SqlError> {
        let SetExpr::Select(sel) = q.body.as_ref() else {
            return Err(er::not_supported_yet(
                "this query form (UNION, VALUES, ...) without tables",
            ));
        };
        if q.with.is_some() {
            return Err(er::not_supported_yet("WITH (common table expressions)"));
        }
        for t in &sel.from {
            let name = t.relation.to_string();
            if !name.eq_ignore_ascii_case("dual") || !t.joins.is_empty() {
                let (db, table) = match name.split_once('.') {
                    Some((d, t)) => (d.to_string(), t.to_string()),
                    None => (session.db.clone().unwrap_or_default(), name.clone()),
                };
                if db.is_empty() {
                    return Err(er::no_db());
                }
                return Err(er::no_such_table(&db, table.trim_matches('`')));
            }
        }
        let ctx = Ctx {
            session,
            params,
            row: &[],
            resolver: None,
        };
        let mut keep = match &sel.selection {
            Some(w) => eval::truth(&ctx.eval(w)?) == Some(true),
            None => true,
        };
        match &q.limit_clause {
            Some(LimitClause::LimitOffset {
                limit: Some(l),
                offset,
                ..
            }) => {
                if eval::to_f64(&ctx.eval(l)?) < 1.0 {
                    keep = false;
                }
                if let Some(o) = offset {
                    if eval::to_f64(&ctx.eval(&o.value)?) >= 1.0 {
                        keep = false;
                    }
                }
            }
            Some(LimitClause::OffsetCommaLimit { offset, limit })
                if eval::to_f64(&ctx.eval(limit)?) < 1.0
                    || eval::to_f64(&ctx.eval(offset)?) >= 1.0 =>
            {
                keep = false;
            }
            _ => {}
        }
        let mut names = Vec::new();
        let mut values = Vec::new();
        for (i, item) in sel.projection.iter().enumerate() {
            let (expr, name) = match item {
                SelectItem::UnnamedExpr(e) => (
                    e,
                    texts
                        .get(i)
                        .filter(|t| !t.is_empty())
                        .cloned()
                        .unwrap_or_else(|| e.to_string()),
                ),
                SelectItem::ExprWithAlias { expr, alias } => (expr, alias.value.clone()),
                _ => {
                    return Err(SqlError::of(
                        ErrorKind::NoTablesUsed,
                        "No tables used".into(),
                    ))
                }
            };
            values.push(ctx.eval(expr)?);
            names.push(name);
        }
        let columns = names
            .iter()
            .zip(&values)
            .map(|(n, v)| Column::for_value(n, v))
            .collect();
        Ok(Output::Rows(ResultSet {
            columns,
            rows: if keep { vec![values] } else { Vec::new() },
        }))
    }
}

fn parse_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Int(i) if *i == 0 || *i == 1 => Some(*i == 1),
        Value::UInt(u) if *u <= 1 => Some(*u == 1),
        Value::Text(s) => match s.to_ascii_uppercase().as_str() {
            "ON" | "TRUE" | "1" => Some(true),
            "OFF" | "FALSE" | "0" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

fn normalize(privileges: &[String], level: &GrantLevel) -> Result<Vec<String>, SqlError> {
    let mut out = Vec::new();
    for p in privileges {
        if p == "USAGE" {
            continue;
        }
        if p == "GRANT OPTION" {
            continue;
        }
        if !matches!(level, GrantLevel::Global) && GLOBAL_ONLY.contains(&p.as_str()) {
            return Err(SqlError::of(
                ErrorKind::WrongUsage,
                "Incorrect usage of DB GRANT and GLOBAL PRIVILEGES".into(),
            ));
        }
        out.push(p.clone());
    }
    Ok(out)
}

impl Backend for Interim {
    fn query<'a>(&'a self, session: &'a mut Session, sql: &'a str) -> BoxFuture<'a, QueryResult> {
        Box::pin(async move {
            let statements = match parser::query_statements(sql, session.multi_statements) {
                Ok(s) => s,
                Err(e) => return QueryResult::err(e),
            };
            let mut result = QueryResult::default();
            for t in &statements {
                let out = parser::check_no_placeholders(t)
                    .and_then(|()| parser::parse(sql, t))
                    .and_then(|stmt| self.run(session, sql, t, &stmt, &[]));
                if !result.record(out) {
                    break;
                }
            }
            result
        })
    }

    fn prepare<'a>(
        &'a self,
        _session: &'a mut Session,
        sql: &'a str,
    ) -> BoxFuture<'a, Result<Prepared, Error>> {
        Box::pin(async move {
            let tokens = parser::prepared_statement(sql)?;
            // Parse now so syntax errors surface at prepare time.
            let stmt = parser::parse(sql, &tokens)?;
            let texts = projection_texts(sql, &tokens);
            let columns = match &stmt {
                Stmt::Query(q) => match q.body.as_ref() {
                    SetExpr::Select(s) => s
                        .projection
                        .iter()
                        .enumerate()
                        .map(|(n, i)| match i {
                            SelectItem::ExprWithAlias { alias, .. } => Column::text(&alias.value),
                            _ => Column::text(texts.get(n).map_or("?", String::as_str)),
                        })
                        .collect(),
                    _ => Vec::new(),
                },
                // The shape of SHOW results is known before execution too;
                // clients compare it with the executed result's.
                Stmt::ShowVariables { .. } | Stmt::ShowStatus { .. } => {
                    vec![Column::text("Variable_name"), Column::text("Value")]
                }
                Stmt::ShowDatabases(_) => vec![Column::text("Database")],
                Stmt::ShowWarnings => vec![
                    Column::text("Level"),
                    Column::for_value("Code", &Value::Int(0)),
                    Column::text("Message"),
                ],
                Stmt::ShowGrants(_) | Stmt::ShowCreateUser(_) => vec![Column::text("Grants")],
                _ => Vec::new(),
            };
            Ok(Prepared {
                params: tokens.params,
                columns,
                plan: Arc::new(Plan {
                    sql: sql.to_string(),
                    tokens,
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
            let parsed = parser::parse(&plan.sql, &plan.tokens)?;
            Ok(self.run(session, &plan.sql, &plan.tokens, &parsed, &params)?)
        })
    }

    fn init_db<'a>(
        &'a self,
        session: &'a mut Session,
        db: &'a str,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move { Ok(self.use_db(session, db)?) })
    }

    fn field_list<'a>(
        &'a self,
        session: &'a mut Session,
        table: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Column>, SqlError>> {
        Box::pin(async move {
            let db = session.db.clone().ok_or_else(er::no_db)?;
            Err(er::no_such_table(&db, table))
        })
    }
}

/// A `tidb_server_memory_limit` value: bytes, or a percentage of the
/// machine's memory (`'80%'`, TiDB's default); 0 means no limit.
fn server_memory_limit(name: &str, v: &Value) -> Result<u64, SqlError> {
    let bad = || er::wrong_value_for_var(name, &v.to_string());
    match v {
        Value::Text(t) if t.trim().ends_with('%') => {
            let pct: f64 = t.trim().trim_end_matches('%').parse().map_err(|_| bad())?;
            if !(1.0..=99.0).contains(&pct) {
                return Err(bad());
            }
            let total = crate::server::total_memory().ok_or_else(bad)?;
            Ok((total as f64 * pct / 100.0) as u64)
        }
        Value::Text(t) => t.trim().parse::<u64>().map_err(|_| bad()),
        other => mem_quota(name, other),
    }
}

/// A `tidb_mem_quota_query` value: bytes, 0 or less meaning no limit (as
/// TiDB).
fn mem_quota(name: &str, v: &Value) -> Result<u64, SqlError> {
    match v {
        Value::Int(i) => Ok((*i).max(0) as u64),
        Value::UInt(u) => Ok((*u).min(i64::MAX as u64)),
        other => Err(er::wrong_value_for_var(name, &other.to_string())),
    }
}
