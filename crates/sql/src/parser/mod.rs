//! SQL text to statements: sqlparser's MySQL tokenizer for every statement,
//! sqlparser's parser for queries and expressions, and a small hand-written
//! parser (on the same tokens) for the statements sqlparser does not know in
//! MySQL's form: accounts (`CREATE/ALTER/DROP USER`, `REQUIRE ...`),
//! `GRANT`/`REVOKE`, `SET PASSWORD`, `SHOW GRANTS`, `SHOW CREATE USER`,
//! `ALTER INSTANCE RELOAD TLS`, and MySQL's `SET`/`SHOW` variants.
//!
//! Prepared-statement placeholders: each `?` is renamed `?N` (0-based, in
//! text order) before parsing, so an evaluator finds parameter N directly
//! in the AST (`Value::Placeholder("?N")`), with its type intact.

use sqlparser::ast::{Expr, Query, Statement};
use sqlparser::dialect::MySqlDialect;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

use crate::error::{er, ErrorKind, SqlError};
use crate::users::TlsRequire;

/// A cleartext password from `IDENTIFIED BY` or `SET PASSWORD`. Its
/// `Debug` prints nothing, so a logged statement never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    /// The password, to hash it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// An account name, `'user'@'host'`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    /// User name.
    pub user: String,
    /// Host pattern (`%` when omitted).
    pub host: String,
    /// `CURRENT_USER()` / `USER()`: the session's own account.
    pub current: bool,
}

/// How an account authenticates (`IDENTIFIED ...`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identified {
    /// `WITH plugin`, if given.
    pub plugin: Option<String>,
    /// `BY 'password'`.
    pub password: Option<Password>,
    /// `AS 'stored hash'`.
    pub hash: Option<String>,
}

/// One account in CREATE/ALTER USER.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserSpec {
    /// Which account.
    pub account: Account,
    /// How it authenticates, if given.
    pub identified: Option<Identified>,
}

/// `*.*`, `db.*`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GrantLevel {
    /// `*.*`.
    Global,
    /// `db.*` (or `*` with a default database).
    Db(String),
    /// `*` without a database name: resolved against the session's database.
    CurrentDb,
}

/// The variable named on the left of `SET`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SetTarget {
    /// `@name`.
    User(String),
    /// A system variable, with `GLOBAL` scope or not.
    System {
        /// Lower-case name.
        name: String,
        /// `GLOBAL` / `@@global.`.
        global: bool,
    },
}

/// One `SET` assignment.
#[derive(Clone, Debug, PartialEq)]
pub struct Assignment {
    /// The variable.
    pub target: SetTarget,
    /// The value (`None`: `DEFAULT`).
    pub value: Option<Expr>,
}

/// `SHOW ... [LIKE 'p' | WHERE expr]`.
#[derive(Clone, Debug, PartialEq)]
pub enum ShowFilter {
    /// No filter.
    None,
    /// `LIKE 'pattern'`.
    Like(String),
    /// `WHERE expr` over the result columns.
    Where(Box<Expr>),
}

/// A parsed statement.
#[derive(Clone, Debug, PartialEq)]
pub enum Stmt {
    /// `SELECT ...` (and other queries).
    Query(Box<Query>),
    /// `SET var = expr, ...`.
    Set(Vec<Assignment>),
    /// `SET NAMES cs [COLLATE c]` / `SET CHARACTER SET cs`.
    SetNames {
        /// Character set.
        charset: String,
        /// Collation.
        collation: Option<String>,
    },
    /// `SET PASSWORD [FOR account] = 'pw'`.
    SetPassword {
        /// `None`: the session's own account.
        account: Option<Account>,
        /// The new password.
        password: Password,
    },
    /// `USE db`.
    Use(String),
    /// `SHOW [GLOBAL|SESSION] VARIABLES`.
    ShowVariables {
        /// Global scope.
        global: bool,
        /// Filter.
        filter: ShowFilter,
    },
    /// `SHOW [GLOBAL|SESSION] STATUS`.
    ShowStatus {
        /// Global scope.
        global: bool,
        /// Filter.
        filter: ShowFilter,
    },
    /// `SHOW DATABASES`.
    ShowDatabases(ShowFilter),
    /// `SHOW WARNINGS` / `SHOW ERRORS`.
    ShowWarnings,
    /// `SHOW GRANTS [FOR account]`.
    ShowGrants(Option<Account>),
    /// `SHOW CREATE USER account`.
    ShowCreateUser(Account),
    /// `CREATE USER`.
    CreateUser {
        /// `IF NOT EXISTS`.
        if_not_exists: bool,
        /// Accounts.
        users: Vec<UserSpec>,
        /// `REQUIRE ...`.
        require: Option<TlsRequire>,
        /// `ACCOUNT LOCK|UNLOCK`.
        lock: Option<bool>,
    },
    /// `ALTER USER`.
    AlterUser {
        /// `IF EXISTS`.
        if_exists: bool,
        /// Accounts.
        users: Vec<UserSpec>,
        /// `REQUIRE ...`.
        require: Option<TlsRequire>,
        /// `ACCOUNT LOCK|UNLOCK`.
        lock: Option<bool>,
    },
    /// `DROP USER`.
    DropUser {
        /// `IF EXISTS`.
        if_exists: bool,
        /// Accounts.
        users: Vec<Account>,
    },
    /// `GRANT privs ON level TO accounts [WITH GRANT OPTION]`.
    Grant {
        /// Privileges (upper case; `ALL PRIVILEGES` for ALL).
        privileges: Vec<String>,
        /// Level.
        level: GrantLevel,
        /// Grantees.
        users: Vec<Account>,
        /// `WITH GRANT OPTION`.
        grant_option: bool,
    },
    /// `REVOKE privs ON level FROM accounts`.
    Revoke {
        /// Privileges.
        privileges: Vec<String>,
        /// Level.
        level: GrantLevel,
        /// Accounts.
        users: Vec<Account>,
    },
    /// `ALTER INSTANCE RELOAD TLS`.
    ReloadTls,
    /// `FLUSH PRIVILEGES`.
    FlushPrivileges,
    /// `BEGIN`, `START TRANSACTION`, `COMMIT`, `ROLLBACK`.
    Transaction(&'static str),
    /// `BEGIN PESSIMISTIC` / `BEGIN OPTIMISTIC` (TiDB's forms).
    BeginMode(&'static str),
    /// `SAVEPOINT name`.
    Savepoint(String),
    /// `ROLLBACK [WORK] TO [SAVEPOINT] name`.
    RollbackTo(String),
    /// `RELEASE SAVEPOINT name`.
    ReleaseSavepoint(String),
    /// `SHOW CREATE DATABASE db`.
    ShowCreateDatabase(String),
    /// `SHOW INDEX FROM t [FROM db]`.
    ShowIndex {
        /// Database, if named.
        db: Option<String>,
        /// Table.
        table: String,
    },
    /// `SHOW TABLE STATUS [FROM db] [LIKE|WHERE]`.
    ShowTableStatus {
        /// Database, if named.
        db: Option<String>,
        /// Filter.
        filter: ShowFilter,
    },
    /// Any other statement sqlparser understood (tables, data, DDL): the
    /// SQL engine runs these.
    Other(Box<Statement>),
}

/// The first two words of a statement (`CREATE TABLE`), for messages.
pub fn kind(stmt: &Statement) -> String {
    stmt.to_string()
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

/// A statement's tokens and whether it had placeholders.
#[derive(Clone, Debug)]
pub struct Tokens {
    /// The tokens (whitespace dropped), placeholders renamed `?N`.
    pub tokens: Vec<TokenWithSpan>,
    /// Number of `?` placeholders.
    pub params: usize,
}

fn parse_error(sql: &str, e: impl std::fmt::Display) -> SqlError {
    let msg = e.to_string();
    // sqlparser says "... at Line: L, Column: C"; point at that text.
    let near = msg
        .rsplit_once("Line: ")
        .and_then(|(_, lc)| {
            let (l, c) = lc.split_once(", Column: ")?;
            let l: usize = l.trim().parse().ok()?;
            let c: usize = c
                .trim()
                .trim_end_matches(|ch: char| !ch.is_ascii_digit())
                .parse()
                .ok()?;
            let line = sql.lines().nth(l.checked_sub(1)?)?;
            Some(line.chars().skip(c.saturating_sub(1)).collect::<String>())
        })
        .unwrap_or_default();
    er::parse(&near, &msg)
}

/// Tokenizes SQL text into statements (split at top-level `;`), dropping
/// empty ones. Placeholders are numbered across each statement.
pub fn split(sql: &str) -> Result<Vec<Tokens>, SqlError> {
    let dialect = MySqlDialect {};
    let tokens = Tokenizer::new(&dialect, sql)
        .tokenize_with_location()
        .map_err(|e| parse_error(sql, e))?;
    let mut out = Vec::new();
    let mut cur = Tokens {
        tokens: Vec::new(),
        params: 0,
    };
    let mut national: Option<TokenWithSpan> = None;
    for mut t in tokens {
        match &t.token {
            Token::Whitespace(_) => continue,
            Token::SemiColon => {
                cur.tokens.extend(national.take());
                if !cur.tokens.is_empty() {
                    out.push(std::mem::replace(
                        &mut cur,
                        Tokens {
                            tokens: Vec::new(),
                            params: 0,
                        },
                    ));
                }
                continue;
            }
            Token::Placeholder(p) if p == "?" => {
                t.token = Token::Placeholder(format!("?{}", cur.params));
                cur.params += 1;
            }
            // MySQL's `||` and `&&` are OR and AND (without the
            // PIPES_AS_CONCAT mode, which tiox does not offer), with their
            // precedence: the parser sees the words.
            Token::StringConcat => t.token = Token::make_keyword("OR"),
            Token::Overlap => t.token = Token::make_keyword("AND"),
            // `NATIONAL CHAR/VARCHAR` is utf8 CHAR/VARCHAR; every string
            // here is utf8mb4 already.
            Token::Word(w)
                if w.quote_style.is_none()
                    && w.value.eq_ignore_ascii_case("national")
                    && cur.tokens.last().is_some_and(|p| !is_dot(&p.token)) =>
            {
                national = Some(t);
                continue;
            }
            _ => {}
        }
        if let Some(n) = national.take() {
            if !is_char_type(&t.token) {
                // Not a type after all: keep the word.
                cur.tokens.push(n);
            }
        }
        cur.tokens.push(t);
    }
    cur.tokens.extend(national);
    if !cur.tokens.is_empty() {
        out.push(cur);
    }
    Ok(out)
}

fn is_dot(t: &Token) -> bool {
    matches!(t, Token::Period)
}

fn is_char_type(t: &Token) -> bool {
    matches!(t, Token::Word(w) if w.quote_style.is_none()
        && ["char", "varchar", "character"].iter().any(|k| w.value.eq_ignore_ascii_case(k)))
}

/// A cursor over one statement's tokens, for the hand-written statements.
struct P<'a> {
    sql: &'a str,
    parser: Parser<'a>,
}

impl<'a> P<'a> {
    fn new(sql: &'a str, tokens: &Tokens) -> Self {
        static DIALECT: MySqlDialect = MySqlDialect {};
        P {
            sql,
            parser: Parser::new(&DIALECT).with_tokens_with_locations(tokens.tokens.clone()),
        }
    }

    fn word_at(&self, n: usize) -> Option<String> {
        match self.parser.peek_nth_token(n).token {
            Token::Word(w) if w.quote_style.is_none() => Some(w.value.to_ascii_uppercase()),
            _ => None,
        }
    }

    fn peek(&self, words: &[&str]) -> bool {
        words
            .iter()
            .enumerate()
            .all(|(i, w)| self.word_at(i).as_deref() == Some(*w))
    }

    fn eat(&mut self, words: &[&str]) -> bool {
        if self.peek(words) {
            for _ in words {
                self.parser.next_token();
            }
            true
        } else {
            false
        }
    }

    fn expect(&mut self, words: &[&str]) -> Result<(), SqlError> {
        if self.eat(words) {
            Ok(())
        } else {
            Err(self.error(&format!("expected {}", words.join(" "))))
        }
    }

    fn eat_token(&mut self, t: &Token) -> bool {
        self.parser.consume_token(t)
    }

    fn at_end(&self) -> bool {
        self.parser.peek_token().token == Token::EOF
    }

    fn error(&self, what: &str) -> SqlError {
        let t = self.parser.peek_token();
        let near = if t.token == Token::EOF {
            String::new()
        } else {
            let loc = t.span.start;
            self.sql
                .lines()
                .nth((loc.line as usize).saturating_sub(1))
                .map(|l| {
                    l.chars()
                        .skip((loc.column as usize).saturating_sub(1))
                        .collect()
                })
                .unwrap_or_default()
        };
        er::parse(&near, what)
    }

    /// The rest of a COMMIT or ROLLBACK: `[WORK] [AND NO CHAIN] [NO
    /// RELEASE]`; a chain or release is refused, never ignored.
    fn end_of_completion(&mut self) -> Result<(), SqlError> {
        let _ = self.eat(&["WORK"]);
        let _ = self.eat(&["AND", "NO", "CHAIN"]);
        let _ = self.eat(&["NO", "RELEASE"]);
        if self.peek(&["AND", "CHAIN"]) || self.peek(&["RELEASE"]) {
            return Err(er::not_supported_yet(
                "COMMIT/ROLLBACK AND CHAIN or RELEASE",
            ));
        }
        self.end()
    }

    fn end(&self) -> Result<(), SqlError> {
        if self.at_end() {
            Ok(())
        } else {
            Err(self.error("unexpected text after the statement"))
        }
    }

    /// A string literal.
    fn string(&mut self) -> Result<String, SqlError> {
        match self.parser.next_token().token {
            Token::SingleQuotedString(s) | Token::DoubleQuotedString(s) => Ok(s),
            _ => {
                self.parser.prev_token();
                Err(self.error("expected a quoted string"))
            }
        }
    }

    /// An identifier or string (names of databases, plugins, charsets).
    fn name(&mut self) -> Result<String, SqlError> {
        match self.parser.next_token().token {
            Token::Word(w) => Ok(w.value),
            Token::SingleQuotedString(s) | Token::DoubleQuotedString(s) => Ok(s),
            _ => {
                self.parser.prev_token();
                Err(self.error("expected a name"))
            }
        }
    }

    /// `'user'@'host'`, `user@host`, `'user'`, `CURRENT_USER[()]`.
    fn account(&mut self) -> Result<Account, SqlError> {
        if self.eat(&["CURRENT_USER"]) || self.eat(&["USER"]) {
            if self.eat_token(&Token::LParen) && !self.eat_token(&Token::RParen) {
                return Err(self.error("expected )"));
            }
            return Ok(Account {
                user: String::new(),
                host: String::new(),
                current: true,
            });
        }
        let first = self.parser.next_token().token;
        let (user, mut host) = match first {
            Token::SingleQuotedString(s) | Token::DoubleQuotedString(s) => (s, None),
            Token::Word(w) if w.quote_style == Some('`') => (w.value, None),
            Token::Word(w) => match w.value.split_once('@') {
                Some((u, h)) => (u.to_string(), Some(h.to_string())),
                None => (w.value, None),
            },
            _ => {
                self.parser.prev_token();
                return Err(self.error("expected a user name"));
            }
        };
        if host.as_deref() == Some("") {
            host = Some(self.name()?);
        } else if host.is_none() {
            match self.parser.peek_token().token {
                Token::Word(w) if w.quote_style.is_none() && w.value.starts_with('@') => {
                    self.parser.next_token();
                    let rest = w.value[1..].to_string();
                    host = Some(if rest.is_empty() { self.name()? } else { rest });
                }
                Token::AtSign => {
                    self.parser.next_token();
                    host = Some(self.name()?);
                }
                _ => {}
            }
        }
        Ok(Account {
            user,
            host: host.unwrap_or_else(|| "%".to_string()),
            current: false,
        })
    }

    fn accounts(&mut self) -> Result<Vec<Account>, SqlError> {
        let mut v = vec![self.account()?];
        while self.eat_token(&Token::Comma) {
            v.push(self.account()?);
        }
        Ok(v)
    }

    fn identified(&mut self) -> Result<Option<Identified>, SqlError> {
        if !self.eat(&["IDENTIFIED"]) {
            return Ok(None);
        }
        let mut id = Identified {
            plugin: None,
            password: None,
            hash: None,
        };
        if self.eat(&["WITH"]) {
            id.plugin = Some(self.name()?.to_ascii_lowercase());
        }
        if self.eat(&["BY"]) {
            id.password = Some(Password(self.string()?));
        } else if self.eat(&["AS"]) {
            id.hash = Some(self.string()?);
        } else if id.plugin.is_none() {
            return Err(self.error("expected BY, AS or WITH after IDENTIFIED"));
        }
        Ok(Some(id))
    }

    fn user_specs(&mut self) -> Result<Vec<UserSpec>, SqlError> {
        let mut v = Vec::new();
        loop {
            let account = self.account()?;
            let identified = self.identified()?;
            v.push(UserSpec {
                account,
                identified,
            });
            if !self.eat_token(&Token::Comma) {
                return Ok(v);
            }
        }
    }

    fn require(&mut self) -> Result<Option<TlsRequire>, SqlError> {
        if !self.eat(&["REQUIRE"]) {
            return Ok(None);
        }
        let mut r = TlsRequire::default();
        if self.eat(&["NONE"]) {
            return Ok(Some(r));
        }
        let mut any = false;
        loop {
            if self.eat(&["SSL"]) {
                r.ssl = true;
            } else if self.eat(&["X509"]) {
                r.x509 = true;
            } else if self.eat(&["ISSUER"]) {
                r.issuer = Some(self.string()?);
            } else if self.eat(&["SUBJECT"]) {
                r.subject = Some(self.string()?);
            } else if self.eat(&["CIPHER"]) {
                r.cipher = Some(self.string()?);
            } else if self.eat(&["SAN"]) {
                r.san = Some(self.string()?);
            } else if any {
                break;
            } else {
                return Err(self.error("expected NONE, SSL, X509, ISSUER, SUBJECT, CIPHER or SAN"));
            }
            any = true;
            self.eat(&["AND"]);
        }
        if r.x509
            || r.issuer.is_some()
            || r.subject.is_some()
            || r.san.is_some()
            || r.cipher.is_some()
        {
            r.ssl = true;
        }
        Ok(Some(r))
    }

    /// Trailing options: `ACCOUNT LOCK|UNLOCK`, `PASSWORD EXPIRE ...`,
    /// `WITH MAX_...` (accepted and ignored except the lock).
    fn user_options(&mut self) -> Result<Option<bool>, SqlError> {
        let mut lock = None;
        loop {
            if self.eat(&["ACCOUNT", "LOCK"]) {
                lock = Some(true);
            } else if self.eat(&["ACCOUNT", "UNLOCK"]) {
                lock = Some(false);
            } else if self.eat(&["PASSWORD", "EXPIRE"]) {
                if self.eat(&["INTERVAL"]) {
                    self.parser.next_token();
                    self.expect(&["DAY"])?;
                } else {
                    let _ = self.eat(&["DEFAULT"]) || self.eat(&["NEVER"]);
                }
            } else {
                return Ok(lock);
            }
        }
    }

    fn privileges(&mut self) -> Result<Vec<String>, SqlError> {
        let mut out = Vec::new();
        loop {
            let mut words = Vec::new();
            while let Some(w) = self.word_at(0) {
                if w == "ON" {
                    break;
                }
                self.parser.next_token();
                words.push(w);
            }
            // `ALL [PRIVILEGES]`, and column lists are not supported.
            if self.parser.peek_token().token == Token::LParen {
                return Err(er::not_supported_yet("column-level privileges"));
            }
            let p = words.join(" ");
            let p = match p.as_str() {
                "ALL" | "ALL PRIVILEGES" => "ALL PRIVILEGES".to_string(),
                "" => return Err(self.error("expected a privilege")),
                other => other.to_string(),
            };
            if p != "ALL PRIVILEGES"
                && p != "USAGE"
                && p != "GRANT OPTION"
                && !crate::users::PRIVILEGES.contains(&p.as_str())
            {
                return Err(SqlError::of(
                    ErrorKind::Parse,
                    format!("Unknown privilege '{p}'"),
                ));
            }
            out.push(p);
            if !self.eat_token(&Token::Comma) {
                return Ok(out);
            }
        }
    }

    fn level(&mut self) -> Result<GrantLevel, SqlError> {
        self.expect(&["ON"])?;
        let _ = self.eat(&["TABLE"]);
        let first = self.parser.next_token().token;
        let db = match first {
            Token::Mul => None,
            Token::Word(w) => Some(w.value),
            _ => return Err(self.error("expected *.* or db.*")),
        };
        if !self.eat_token(&Token::Period) {
            return match db {
                None => Ok(GrantLevel::CurrentDb),
                Some(_) => Err(er::not_supported_yet("table-level privileges")),
            };
        }
        match (db, self.parser.next_token().token) {
            (None, Token::Mul) => Ok(GrantLevel::Global),
            (Some(db), Token::Mul) => Ok(GrantLevel::Db(db)),
            (Some(_), Token::Word(_)) => Err(er::not_supported_yet("table-level privileges")),
            _ => Err(self.error("expected *.* or db.*")),
        }
    }

    fn show_filter(&mut self) -> Result<ShowFilter, SqlError> {
        if self.eat(&["LIKE"]) {
            return Ok(ShowFilter::Like(self.string()?));
        }
        if self.eat(&["WHERE"]) {
            let e = self
                .parser
                .parse_expr()
                .map_err(|e| parse_error(self.sql, e))?;
            return Ok(ShowFilter::Where(Box::new(e)));
        }
        Ok(ShowFilter::None)
    }

    fn set_target(&mut self, default_global: bool) -> Result<SetTarget, SqlError> {
        let t = self.parser.next_token().token;
        let Token::Word(w) = t else {
            self.parser.prev_token();
            return Err(self.error("expected a variable name"));
        };
        let v = w.value;
        if let Some(rest) = v.strip_prefix("@@") {
            let lower = rest.to_ascii_lowercase();
            if matches!(lower.as_str(), "global" | "session" | "local")
                && self.eat_token(&Token::Period)
            {
                let name = self.name()?.to_ascii_lowercase();
                return Ok(SetTarget::System {
                    name,
                    global: lower == "global",
                });
            }
            return Ok(SetTarget::System {
                name: lower,
                global: false,
            });
        }
        if let Some(rest) = v.strip_prefix('@') {
            let name = if rest.is_empty() {
                self.name()?
            } else {
                rest.to_string()
            };
            return Ok(SetTarget::User(name.to_ascii_lowercase()));
        }
        Ok(SetTarget::System {
            name: v.to_ascii_lowercase(),
            global: default_global,
        })
    }

    fn set(&mut self) -> Result<Stmt, SqlError> {
        if self.eat(&["PASSWORD"]) {
            let account = if self.eat(&["FOR"]) {
                Some(self.account()?)
            } else {
                None
            };
            if !self.eat_token(&Token::Eq) {
                return Err(self.error("expected ="));
            }
            let password = if self.eat(&["PASSWORD"]) {
                if !self.eat_token(&Token::LParen) {
                    return Err(self.error("expected ("));
                }
                let p = self.string()?;
                if !self.eat_token(&Token::RParen) {
                    return Err(self.error("expected )"));
                }
                p
            } else {
                self.string()?
            };
            self.end()?;
            return Ok(Stmt::SetPassword {
                account,
                password: Password(password),
            });
        }
        if self.eat(&["NAMES"]) || self.eat(&["CHARACTER", "SET"]) || self.eat(&["CHARSET"]) {
            let charset = self.name()?;
            let collation = if self.eat(&["COLLATE"]) {
                Some(self.name()?)
            } else {
                None
            };
            self.end()?;
            return Ok(Stmt::SetNames { charset, collation });
        }
        let mut out = Vec::new();
        let mut scope_global = false;
        loop {
            if self.eat(&["GLOBAL"]) || self.eat(&["PERSIST"]) {
                scope_global = true;
            } else if self.eat(&["SESSION"]) || self.eat(&["LOCAL"]) {
                scope_global = false;
            }
            if self.eat(&["TRANSACTION"]) {
                // SET [SESSION] TRANSACTION ISOLATION LEVEL x / READ ONLY|WRITE
                if self.eat(&["ISOLATION", "LEVEL"]) {
                    let level = if self.eat(&["READ", "UNCOMMITTED"]) {
                        "READ-UNCOMMITTED"
                    } else if self.eat(&["READ", "COMMITTED"]) {
                        "READ-COMMITTED"
                    } else if self.eat(&["REPEATABLE", "READ"]) {
                        "REPEATABLE-READ"
                    } else if self.eat(&["SERIALIZABLE"]) {
                        "SERIALIZABLE"
                    } else {
                        return Err(self.error("expected an isolation level"));
                    };
                    out.push(Assignment {
                        target: SetTarget::System {
                            name: "transaction_isolation".into(),
                            global: scope_global,
                        },
                        value: Some(Expr::Value(
                            sqlparser::ast::Value::SingleQuotedString(level.into()).into(),
                        )),
                    });
                } else if self.eat(&["READ", "ONLY"]) || self.eat(&["READ", "WRITE"]) {
                    // Accepted and ignored: every transaction may write.
                } else {
                    return Err(self.error("expected ISOLATION LEVEL or READ ONLY|WRITE"));
                }
            } else {
                let target = self.set_target(scope_global)?;
                if !(self.eat_token(&Token::Eq) || self.eat_token(&Token::Assignment)) {
                    return Err(self.error("expected = or :="));
                }
                let value = if self.peek(&["DEFAULT"])
                    && matches!(
                        self.parser.peek_nth_token(1).token,
                        Token::EOF | Token::Comma
                    ) {
                    self.parser.next_token();
                    None
                } else {
                    Some(
                        self.parser
                            .parse_expr()
                            .map_err(|e| parse_error(self.sql, e))?,
                    )
                };
                out.push(Assignment { target, value });
            }
            if !self.eat_token(&Token::Comma) {
                break;
            }
        }
        self.end()?;
        Ok(Stmt::Set(out))
    }

    fn show(&mut self) -> Result<Option<Stmt>, SqlError> {
        let mut global = false;
        if self.eat(&["GLOBAL"]) {
            global = true;
        } else {
            let _ = self.eat(&["SESSION"]) || self.eat(&["LOCAL"]);
        }
        let stmt = if self.eat(&["VARIABLES"]) {
            Stmt::ShowVariables {
                global,
                filter: self.show_filter()?,
            }
        } else if self.eat(&["STATUS"]) {
            Stmt::ShowStatus {
                global,
                filter: self.show_filter()?,
            }
        } else if self.eat(&["DATABASES"]) || self.eat(&["SCHEMAS"]) {
            Stmt::ShowDatabases(self.show_filter()?)
        } else if self.eat(&["WARNINGS"]) || self.eat(&["ERRORS"]) {
            if self.eat(&["LIMIT"]) {
                let _ = self.parser.parse_expr();
            }
            Stmt::ShowWarnings
        } else if self.eat(&["GRANTS"]) {
            let who = if self.eat(&["FOR"]) {
                Some(self.account()?)
            } else {
                None
            };
            if self.eat(&["USING"]) {
                return Err(er::not_supported_yet("roles"));
            }
            Stmt::ShowGrants(who)
        } else if self.eat(&["CREATE", "USER"]) {
            Stmt::ShowCreateUser(self.account()?)
        } else if self.eat(&["CREATE", "DATABASE"]) || self.eat(&["CREATE", "SCHEMA"]) {
            let _ = self.eat(&["IF", "NOT", "EXISTS"]);
            Stmt::ShowCreateDatabase(self.name()?)
        } else if self.eat(&["INDEX"]) || self.eat(&["INDEXES"]) || self.eat(&["KEYS"]) {
            if !(self.eat(&["FROM"]) || self.eat(&["IN"])) {
                return Err(self.error("expected FROM"));
            }
            let mut table = self.name()?;
            let mut db = None;
            if self.eat_token(&Token::Period) {
                db = Some(table);
                table = self.name()?;
            }
            if self.eat(&["FROM"]) || self.eat(&["IN"]) {
                db = Some(self.name()?);
            }
            Stmt::ShowIndex { db, table }
        } else if self.eat(&["TABLE", "STATUS"]) {
            let db = if self.eat(&["FROM"]) || self.eat(&["IN"]) {
                Some(self.name()?)
            } else {
                None
            };
            Stmt::ShowTableStatus {
                db,
                filter: self.show_filter()?,
            }
        } else {
            return Ok(None);
        };
        self.end()?;
        Ok(Some(stmt))
    }
}

/// The statements of one COM_QUERY: at least one, several only when the
/// connection allows multi-statements (else ERROR 1064 near the second),
/// none with `?` placeholders.
pub fn query_statements(sql: &str, multi_statements: bool) -> Result<Vec<Tokens>, SqlError> {
    let statements = split(sql)?;
    if statements.is_empty() {
        return Err(er::empty_query());
    }
    if statements.len() > 1 && !multi_statements {
        let near = statements[1]
            .tokens
            .first()
            .map(|t| t.span.start)
            .and_then(|loc| {
                sql.lines()
                    .nth((loc.line as usize).saturating_sub(1))
                    .map(|l| {
                        l.chars()
                            .skip((loc.column as usize).saturating_sub(1))
                            .collect::<String>()
                    })
            })
            .unwrap_or_default();
        return Err(er::parse(
            &near,
            "multi-statements are off for this connection (CLIENT_MULTI_STATEMENTS)",
        ));
    }
    Ok(statements)
}

/// Whether a statement of a COM_QUERY may run: `?` placeholders belong to
/// prepared statements only.
pub fn check_no_placeholders(t: &Tokens) -> Result<(), SqlError> {
    if t.params > 0 {
        Err(er::parse(
            "?",
            "placeholders are only allowed in prepared statements",
        ))
    } else {
        Ok(())
    }
}

/// The one statement of a COM_STMT_PREPARE.
pub fn prepared_statement(sql: &str) -> Result<Tokens, SqlError> {
    let mut statements = split(sql)?;
    match statements.len() {
        0 => Err(er::empty_query()),
        1 => Ok(statements.remove(0)),
        _ => Err(er::parse(
            "",
            "a prepared statement holds exactly one statement",
        )),
    }
}

/// Parses one statement's tokens.
pub fn parse(sql: &str, tokens: &Tokens) -> Result<Stmt, SqlError> {
    let mut p = P::new(sql, tokens);
    let stmt = if p.eat(&["CREATE", "USER"]) {
        let if_not_exists = p.eat(&["IF", "NOT", "EXISTS"]);
        let users = p.user_specs()?;
        let require = p.require()?;
        let lock = p.user_options()?;
        p.end()?;
        Stmt::CreateUser {
            if_not_exists,
            users,
            require,
            lock,
        }
    } else if p.eat(&["ALTER", "USER"]) {
        let if_exists = p.eat(&["IF", "EXISTS"]);
        let users = p.user_specs()?;
        let require = p.require()?;
        let lock = p.user_options()?;
        p.end()?;
        Stmt::AlterUser {
            if_exists,
            users,
            require,
            lock,
        }
    } else if p.eat(&["DROP", "USER"]) {
        let if_exists = p.eat(&["IF", "EXISTS"]);
        let users = p.accounts()?;
        p.end()?;
        Stmt::DropUser { if_exists, users }
    } else if p.eat(&["GRANT"]) {
        let privileges = p.privileges()?;
        let level = p.level()?;
        p.expect(&["TO"])?;
        let users = p.accounts()?;
        if p.peek(&["REQUIRE"]) {
            return Err(er::not_supported_yet(
                "REQUIRE in GRANT (use ALTER USER ... REQUIRE)",
            ));
        }
        let grant_option = p.eat(&["WITH", "GRANT", "OPTION"]);
        p.end()?;
        Stmt::Grant {
            privileges,
            level,
            users,
            grant_option,
        }
    } else if p.eat(&["REVOKE"]) {
        let privileges = p.privileges()?;
        let level = p.level()?;
        p.expect(&["FROM"])?;
        let users = p.accounts()?;
        p.end()?;
        Stmt::Revoke {
            privileges,
            level,
            users,
        }
    } else if p.eat(&["ALTER", "INSTANCE", "RELOAD", "TLS"]) {
        let _ = p.eat(&["NO", "ROLLBACK", "ON", "ERROR"]);
        p.end()?;
        Stmt::ReloadTls
    } else if p.eat(&["FLUSH", "PRIVILEGES"]) {
        p.end()?;
        Stmt::FlushPrivileges
    } else if p.eat(&["SET"]) {
        p.set()?
    } else if p.eat(&["USE"]) {
        let db = p.name()?;
        p.end()?;
        Stmt::Use(db)
    } else if p.eat(&["BEGIN", "PESSIMISTIC"]) {
        Stmt::BeginMode("PESSIMISTIC")
    } else if p.eat(&["BEGIN", "OPTIMISTIC"]) {
        Stmt::BeginMode("OPTIMISTIC")
    } else if p.eat(&["BEGIN"]) || p.eat(&["START", "TRANSACTION"]) {
        Stmt::Transaction("BEGIN")
    } else if p.eat(&["COMMIT"]) {
        p.end_of_completion()?;
        Stmt::Transaction("COMMIT")
    } else if p.eat(&["ROLLBACK"]) {
        let _ = p.eat(&["WORK"]);
        if p.eat(&["TO"]) {
            let _ = p.eat(&["SAVEPOINT"]);
            let name = p.name()?;
            p.end()?;
            Stmt::RollbackTo(name)
        } else {
            p.end_of_completion()?;
            Stmt::Transaction("ROLLBACK")
        }
    } else if p.eat(&["SAVEPOINT"]) {
        let name = p.name()?;
        p.end()?;
        Stmt::Savepoint(name)
    } else if p.eat(&["RELEASE", "SAVEPOINT"]) {
        let name = p.name()?;
        p.end()?;
        Stmt::ReleaseSavepoint(name)
    } else if p.peek(&["SHOW"]) {
        p.parser.next_token();
        match p.show()? {
            Some(s) => s,
            None => generic(sql, tokens)?,
        }
    } else {
        generic(sql, tokens)?
    };
    Ok(stmt)
}

fn generic(sql: &str, tokens: &Tokens) -> Result<Stmt, SqlError> {
    static DIALECT: MySqlDialect = MySqlDialect {};
    let mut toks = tokens.tokens.clone();
    let is_word = |t: &TokenWithSpan, w: &str| matches!(&t.token, Token::Word(x) if x.quote_style.is_none() && x.value.eq_ignore_ascii_case(w));
    // MySQL's CREATE SCHEMA is CREATE DATABASE (and takes its options).
    if toks.len() > 1 && is_word(&toks[0], "CREATE") && is_word(&toks[1], "SCHEMA") {
        toks[1].token = Token::make_keyword("DATABASE");
    }
    // `ALTER TABLE t COMMENT [=] 'text'`: sqlparser has no such
    // operation; it becomes the table option it sets (`SET TBLPROPERTIES
    // ('comment' = 'text')`, which the engine reads as the comment).
    if toks.len() >= 5 && is_word(&toks[0], "ALTER") && is_word(&toks[1], "TABLE") {
        let mut i = 3;
        if toks.get(i).is_some_and(|t| t.token == Token::Period) {
            i += 2;
        }
        let comment = toks.get(i).is_some_and(|t| is_word(t, "COMMENT"));
        let eq = toks.get(i + 1).is_some_and(|t| t.token == Token::Eq);
        let at = i + 1 + usize::from(eq);
        if comment && at + 1 == toks.len() && matches!(toks[at].token, Token::SingleQuotedString(_))
        {
            let text = toks[at].clone();
            let span = text.span;
            let mk = |t: Token| TokenWithSpan { token: t, span };
            toks.truncate(i);
            toks.extend([
                mk(Token::make_keyword("SET")),
                mk(Token::make_keyword("TBLPROPERTIES")),
                mk(Token::LParen),
                mk(Token::make_word("comment", None)),
                mk(Token::Eq),
                text,
                mk(Token::RParen),
            ]);
        }
    }
    // `UPDATE t1, t2 SET ...` (MySQL's comma join): sqlparser takes only
    // joins there, and a comma is a cross join.
    if toks.first().is_some_and(|t| is_word(t, "UPDATE")) {
        let mut depth = 0i32;
        let mut before_set = true;
        let mut out = Vec::with_capacity(toks.len() + 4);
        for t in std::mem::take(&mut toks) {
            if is_word(&t, "SET") {
                before_set = false;
            }
            match &t.token {
                Token::LParen => depth += 1,
                Token::RParen => depth -= 1,
                _ => {}
            }
            if before_set && depth == 0 && t.token == Token::Comma {
                let mut cross = t.clone();
                cross.token = Token::make_keyword("CROSS");
                let mut join = t.clone();
                join.token = Token::make_keyword("JOIN");
                out.push(cross);
                out.push(join);
            } else {
                out.push(t);
            }
        }
        toks = out;
    }
    // `SELECT 1 FOR UPDATE` / `FOR SHARE` / `LOCK IN SHARE MODE` without
    // tables: nothing to lock, and sqlparser wants a FROM first.
    let n = toks.len();
    let lock_tail = if n > 2 && is_word(&toks[0], "SELECT") {
        if is_word(&toks[n - 2], "FOR")
            && (is_word(&toks[n - 1], "UPDATE") || is_word(&toks[n - 1], "SHARE"))
        {
            2
        } else if n > 4
            && is_word(&toks[n - 4], "LOCK")
            && is_word(&toks[n - 3], "IN")
            && is_word(&toks[n - 2], "SHARE")
            && is_word(&toks[n - 1], "MODE")
        {
            4
        } else {
            0
        }
    } else {
        0
    };
    if lock_tail > 0 && !toks.iter().any(|t| is_word(t, "FROM")) {
        toks.truncate(n - lock_tail);
    }
    let mut parser = Parser::new(&DIALECT).with_tokens_with_locations(toks);
    let stmt = parser
        .parse_statement()
        .map_err(|e: ParserError| parse_error(sql, e))?;
    if parser.peek_token().token != Token::EOF {
        return Err(parse_error(
            sql,
            format!(
                "unexpected text after the statement at {}",
                parser.peek_token().span.start
            ),
        ));
    }
    refuse_non_mysql(sql, &stmt)?;
    Ok(match stmt {
        Statement::Query(q) => Stmt::Query(q),
        other => Stmt::Other(Box::new(other)),
    })
}

/// What sqlparser accepts but MySQL's grammar does not: `RETURNING`, and
/// a LIMIT or OFFSET that is not a literal or a placeholder. Both are
/// syntax errors (1064) as in MySQL, never ignored.
fn refuse_non_mysql(sql: &str, stmt: &Statement) -> Result<(), SqlError> {
    let near = |what: &str| {
        let at = sql.to_ascii_lowercase().find(what).unwrap_or(sql.len());
        er::parse(&sql[at..], "not MySQL syntax")
    };
    let returning = match stmt {
        Statement::Insert(i) => i.returning.is_some(),
        Statement::Update(u) => u.returning.is_some(),
        Statement::Delete(d) => d.returning.is_some(),
        _ => false,
    };
    if returning {
        return Err(near("returning"));
    }
    fn literal(e: &Expr) -> bool {
        matches!(e, Expr::Value(v) if matches!(v.value,
            sqlparser::ast::Value::Number(..) | sqlparser::ast::Value::Placeholder(_)))
    }
    fn query_ok(q: &Query) -> bool {
        use sqlparser::ast::{LimitClause, SetExpr};
        let own = match &q.limit_clause {
            None => true,
            Some(LimitClause::LimitOffset { limit, offset, .. }) => {
                limit.as_ref().is_none_or(literal)
                    && offset.as_ref().is_none_or(|o| literal(&o.value))
            }
            Some(LimitClause::OffsetCommaLimit { offset, limit }) => {
                literal(offset) && literal(limit)
            }
        };
        fn body_ok(b: &SetExpr) -> bool {
            match b {
                SetExpr::Query(q) => query_ok(q),
                SetExpr::SetOperation { left, right, .. } => body_ok(left) && body_ok(right),
                _ => true,
            }
        }
        own && body_ok(&q.body)
    }
    let ok = match stmt {
        Statement::Query(q) => query_ok(q),
        Statement::Update(u) => u.limit.as_ref().is_none_or(literal),
        Statement::Delete(d) => d.limit.as_ref().is_none_or(literal),
        _ => true,
    };
    if !ok {
        return Err(near("limit"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(sql: &str) -> Stmt {
        let t = split(sql).unwrap();
        assert_eq!(t.len(), 1, "{sql}");
        parse(sql, &t[0]).unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    #[test]
    fn parses_user_statements_with_require_forms() {
        match one("CREATE USER IF NOT EXISTS 'app'@'%' IDENTIFIED WITH caching_sha2_password BY 'pw' REQUIRE ISSUER '/CN=ca' AND SUBJECT '/CN=app' AND SAN 'DNS:app'") {
            Stmt::CreateUser { if_not_exists, users, require, .. } => {
                assert!(if_not_exists);
                assert_eq!(users[0].account.user, "app");
                assert_eq!(users[0].account.host, "%");
                let id = users[0].identified.clone().unwrap();
                assert_eq!(id.plugin.as_deref(), Some("caching_sha2_password"));
                assert_eq!(id.password.as_ref().map(Password::expose), Some("pw"));
                assert!(!format!("{id:?}").contains("pw\""), "Debug must not show the password");
                let r = require.unwrap();
                assert_eq!(r.issuer.as_deref(), Some("/CN=ca"));
                assert_eq!(r.san.as_deref(), Some("DNS:app"));
            }
            other => panic!("{other:?}"),
        }
        for sql in [
            "CREATE USER u@localhost IDENTIFIED BY 'x' REQUIRE X509",
            "CREATE USER 'u'@'10.0.%' REQUIRE SSL",
            "ALTER USER 'u'@'%' REQUIRE CIPHER 'TLS_AES_256_GCM_SHA384' ACCOUNT LOCK",
            "ALTER USER CURRENT_USER() IDENTIFIED BY 'n'",
            "DROP USER IF EXISTS 'a'@'%', b",
            "GRANT SELECT, INSERT, CREATE USER ON *.* TO 'u'@'%' WITH GRANT OPTION",
            "GRANT ALL ON `db1`.* TO u",
            "REVOKE ALL PRIVILEGES ON db1.* FROM 'u'@'%'",
            "SET PASSWORD FOR 'u'@'%' = 'p'",
            "SET PASSWORD = PASSWORD('p')",
            "SHOW GRANTS FOR 'u'@'%'",
            "SHOW CREATE USER 'u'@'%'",
            "ALTER INSTANCE RELOAD TLS",
        ] {
            one(sql);
        }
        match one("CREATE USER u@localhost") {
            Stmt::CreateUser { users, .. } => assert_eq!(users[0].account.host, "localhost"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn parses_set_forms() {
        match one("SET @@session.autocommit = 0, @x := 1 + 2, sql_mode = DEFAULT, GLOBAL require_secure_transport = ON") {
            Stmt::Set(a) => {
                assert_eq!(a.len(), 4);
                assert_eq!(a[0].target, SetTarget::System { name: "autocommit".into(), global: false });
                assert_eq!(a[1].target, SetTarget::User("x".into()));
                assert!(a[2].value.is_none());
                assert_eq!(a[3].target, SetTarget::System { name: "require_secure_transport".into(), global: true });
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            one("SET NAMES utf8mb4 COLLATE utf8mb4_general_ci"),
            Stmt::SetNames { .. }
        ));
        assert!(matches!(
            one("set session transaction isolation level read committed"),
            Stmt::Set(_)
        ));
    }

    #[test]
    fn numbers_placeholders_and_splits_statements() {
        let t = split("select ?, ? ; ; select 1;").unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].params, 2);
        assert!(t[0]
            .tokens
            .iter()
            .any(|x| x.token == Token::Placeholder("?1".into())));
    }

    #[test]
    fn syntax_errors_are_1064_with_near_text() {
        let t = split("SELEC 1").unwrap();
        let e = parse("SELEC 1", &t[0]).unwrap_err();
        assert_eq!(e.code, 1064);
        let t = split("CREATE USER 'u'@'%' REQUIRE BOGUS").unwrap();
        let e = parse("CREATE USER 'u'@'%' REQUIRE BOGUS", &t[0]).unwrap_err();
        assert_eq!(e.code, 1064);
        assert!(e.message.contains("near 'BOGUS'"), "{}", e.message);
    }
}
