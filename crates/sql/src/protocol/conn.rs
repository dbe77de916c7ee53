//! One client connection: the handshake (with the TLS upgrade and both auth
//! plugins) and then the command loop.
//!
//! Login, step by step:
//! 1. send Handshake v10 with a fresh 20-byte scramble and the
//!    `mysql_native_password` plugin; `CLIENT_SSL` only when TLS is set up;
//! 2. if the client's first packet is an SSLRequest, run the TLS handshake
//!    (`tls::MysqlTls`) and read the real response over TLS;
//! 3. refuse plaintext with 3159 if `require-secure-transport` is on;
//! 4. find the account (`users::find_account`), switch the client to the
//!    account's plugin if needed (AuthSwitchRequest, same scramble);
//! 5. verify: native (SHA-1 challenge), or caching_sha2 (fast path from the
//!    cache; otherwise full authentication, only over TLS);
//! 6. check the account's `REQUIRE` rule and lock; then OK.
//!
//! Every failure in steps 3-6 is an ERR packet (1045 for credentials and
//! REQUIRE, so a client learns nothing about which part failed; the reason
//! is logged) and the connection closes.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::server::TlsStream;

use super::codec::{Malformed, Reader};
use super::consts::{cap, com, status, CACHING_SHA2_PASSWORD, CHARSET_UTF8MB4, NATIVE_PASSWORD};
use super::packet::{PacketIo, ReadError};
use super::resultset;
use super::stmt::{self, ParamType};
use crate::auth;
use crate::backend::{Backend, Column, Output, Prepared, Session};
use crate::error::{er, Error, ErrorKind, SqlError};
use crate::server::{ConnHandle, Shared};
use crate::users::{find_account, TlsInfo};

/// Largest packet accepted before login completes.
pub const PRE_AUTH_LIMIT: usize = 64 * 1024;

/// How long a client has to complete the TLS upgrade and login
/// (MySQL's `connect_timeout`).
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Most prepared statements one connection may hold (`max_prepared_stmt_count`).
pub const MAX_STATEMENTS: usize = 16_382;

/// A client stream before or after the TLS upgrade.
pub enum Stream<IO> {
    /// Plaintext.
    Plain(IO),
    /// TLS (boxed: the TLS state is large).
    Tls(Box<TlsStream<IO>>),
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for Stream<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Stream<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// The capabilities this server announces.
pub fn server_capabilities(tls: bool) -> u32 {
    let mut c = cap::LONG_PASSWORD
        | cap::FOUND_ROWS
        | cap::LONG_FLAG
        | cap::CONNECT_WITH_DB
        | cap::NO_SCHEMA
        | cap::ODBC
        | cap::IGNORE_SPACE
        | cap::PROTOCOL_41
        | cap::INTERACTIVE
        | cap::TRANSACTIONS
        | cap::RESERVED
        | cap::SECURE_CONNECTION
        | cap::MULTI_STATEMENTS
        | cap::MULTI_RESULTS
        | cap::PS_MULTI_RESULTS
        | cap::PLUGIN_AUTH
        | cap::CONNECT_ATTRS
        | cap::PLUGIN_AUTH_LENENC_CLIENT_DATA
        | cap::DEPRECATE_EOF;
    if tls {
        c |= cap::SSL;
    }
    c
}

/// The Handshake v10 packet.
pub fn handshake_packet(version: &str, conn_id: u32, salt: &[u8; 20], caps: u32) -> Vec<u8> {
    let mut p = vec![10u8];
    p.extend_from_slice(version.as_bytes());
    p.push(0);
    p.extend_from_slice(&conn_id.to_le_bytes());
    p.extend_from_slice(&salt[..8]);
    p.push(0);
    p.extend_from_slice(&(caps as u16).to_le_bytes());
    p.push(CHARSET_UTF8MB4);
    p.extend_from_slice(&status::AUTOCOMMIT.to_le_bytes());
    p.extend_from_slice(&((caps >> 16) as u16).to_le_bytes());
    p.push(21);
    p.extend_from_slice(&[0u8; 10]);
    p.extend_from_slice(&salt[8..]);
    p.push(0);
    p.extend_from_slice(NATIVE_PASSWORD.as_bytes());
    p.push(0);
    p
}

/// A decoded HandshakeResponse41.
#[derive(Debug, Default)]
pub struct HandshakeResponse {
    /// Client capabilities.
    pub caps: u32,
    /// User name.
    pub user: String,
    /// Auth data.
    pub auth: Vec<u8>,
    /// Initial database.
    pub db: Option<String>,
    /// Auth plugin the data was computed with.
    pub plugin: Option<String>,
}

/// Parses a HandshakeResponse41 (after any SSLRequest).
pub fn parse_handshake_response(p: &[u8]) -> Result<HandshakeResponse, Malformed> {
    let mut r = Reader::new(p);
    let caps = r.u32()?;
    if caps & cap::PROTOCOL_41 == 0 {
        return Err(Malformed("client does not speak protocol 4.1"));
    }
    let _max_packet = r.u32()?;
    let _charset = r.u8()?;
    r.bytes(23)?;
    let user = String::from_utf8(r.null_str()?.to_vec())
        .map_err(|_| Malformed("user name is not UTF-8"))?;
    let auth = if caps & cap::PLUGIN_AUTH_LENENC_CLIENT_DATA != 0 {
        r.lenenc_bytes()?.to_vec()
    } else if caps & cap::SECURE_CONNECTION != 0 {
        let n = r.u8()?;
        r.bytes(usize::from(n))?.to_vec()
    } else {
        r.null_str()?.to_vec()
    };
    let mut out = HandshakeResponse {
        caps,
        user,
        auth,
        db: None,
        plugin: None,
    };
    if caps & cap::CONNECT_WITH_DB != 0 && !r.is_empty() {
        let db = r.null_str_or_rest();
        if !db.is_empty() {
            out.db = Some(
                String::from_utf8(db.to_vec())
                    .map_err(|_| Malformed("database name is not UTF-8"))?,
            );
        }
    }
    if caps & cap::PLUGIN_AUTH != 0 && !r.is_empty() {
        let name = r.null_str_or_rest();
        out.plugin = Some(String::from_utf8_lossy(name).into_owned());
    }
    Ok(out)
}

/// Why a connection ended.
#[derive(Debug)]
pub enum Closed {
    /// The client quit or hung up between commands.
    ClientQuit,
    /// Login was refused (the client got an ERR); the reason is for the log.
    LoginRefused(String),
    /// The client broke the protocol or the socket failed; for the log.
    Broken(String),
}

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Closed::ClientQuit => f.write_str("client quit"),
            Closed::LoginRefused(r) => write!(f, "login refused: {r}"),
            Closed::Broken(r) => write!(f, "connection dropped: {r}"),
        }
    }
}

fn read_failed(e: ReadError) -> Closed {
    match e {
        ReadError::Closed => Closed::ClientQuit,
        other => Closed::Broken(other.to_string()),
    }
}

/// Sends an ERR for a read failure where the protocol allows one.
async fn report_read_error<S: AsyncRead + AsyncWrite + Unpin>(io: &mut PacketIo<S>, e: &ReadError) {
    let err = match e {
        ReadError::TooLarge { .. } => er::packet_too_large(),
        ReadError::OutOfOrder { .. } => er::packets_out_of_order(),
        ReadError::TlsInsteadOfMysql => {
            er::handshake("TLS must be requested with an SSLRequest packet")
        }
        _ => return,
    };
    let _ = io.send(&resultset::err(&err)).await;
}

struct Refusal {
    err: SqlError,
    log: String,
}

fn refuse(err: SqlError, log: impl Into<String>) -> Refusal {
    Refusal {
        err,
        log: log.into(),
    }
}

/// Runs one connection to the end. `peer_ip` is the client's address.
pub async fn run<IO>(
    io: IO,
    peer: String,
    peer_ip: String,
    conn_id: u32,
    shared: Arc<Shared>,
    backend: Arc<dyn Backend>,
) -> Closed
where
    IO: AsyncRead + AsyncWrite + Unpin + Send,
{
    let login = handshake(io, &peer, &peer_ip, conn_id, &shared, backend.as_ref());
    let (pio, session) = match tokio::time::timeout(CONNECT_TIMEOUT, login).await {
        Ok(Ok(v)) => v,
        Ok(Err(c)) => return c,
        Err(_) => {
            return Closed::Broken(format!(
                "no complete login within {}s (connect_timeout)",
                CONNECT_TIMEOUT.as_secs()
            ))
        }
    };
    // Login is over: from here on the stream never changes, so reads can
    // be buffered (one syscall for many small packets).
    let (stream, seq) = pio.into_parts();
    let mut pio = PacketIo::with_seq(tokio::io::BufReader::new(stream), seq);
    let handle = shared.register(conn_id, &session.user);
    let mut conn = Connection {
        session,
        handle,
        backend,
        statements: HashMap::new(),
        next_stmt: 1,
    };
    let closed = conn.command_loop(&mut pio).await;
    shared.unregister(conn_id);
    // An open transaction dies with its connection (its locks go now,
    // not when they expire).
    conn.backend.close(&mut conn.session).await;
    closed
}

async fn handshake<IO>(
    io: IO,
    peer: &str,
    peer_ip: &str,
    conn_id: u32,
    shared: &Arc<Shared>,
    backend: &dyn Backend,
) -> Result<(PacketIo<Stream<IO>>, Session), Closed>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send,
{
    let tls = shared.tls();
    let salt = auth::new_scramble();
    let caps = server_capabilities(tls.is_some());
    let mut pio = PacketIo::new(Stream::Plain(io));
    pio.send(&handshake_packet(&shared.version(), conn_id, &salt, caps))
        .await
        .map_err(|e| Closed::Broken(format!("cannot send the handshake: {e}")))?;
    let mut first = match pio.read_packet(PRE_AUTH_LIMIT).await {
        Ok(p) => p,
        Err(e) => {
            report_read_error(&mut pio, &e).await;
            return Err(read_failed(e));
        }
    };
    let mut tls_info: Option<TlsInfo> = None;
    // An SSLRequest is a truncated response: capabilities with CLIENT_SSL.
    if first.len() == 32
        && u32::from_le_bytes([first[0], first[1], first[2], first[3]]) & cap::SSL != 0
    {
        let Some(tls) = tls.clone() else {
            let _ = pio
                .send(&resultset::err(&er::handshake(
                    "TLS is not configured on this server",
                )))
                .await;
            return Err(Closed::LoginRefused(
                "SSLRequest but TLS is not configured".into(),
            ));
        };
        pio.flush()
            .await
            .map_err(|e| Closed::Broken(e.to_string()))?;
        let (stream, seq) = pio.into_parts();
        let Stream::Plain(raw) = stream else {
            return Err(Closed::Broken("second SSLRequest".into()));
        };
        let (tls_stream, info) = match tls.accept(raw, peer).await {
            Ok(x) => x,
            Err(refused) => {
                if let Some(audit) = shared.audit() {
                    audit.record(&tiox_security::audit::Event {
                        listener: "mysql",
                        peer,
                        reason: refused.reason,
                        detail: &refused.message,
                        cert: refused.presented.as_ref(),
                        user: None,
                    });
                }
                return Err(Closed::Broken(refused.message));
            }
        };
        tls_info = Some(info);
        pio = PacketIo::with_seq(Stream::Tls(Box::new(tls_stream)), seq);
        first = match pio.read_packet(PRE_AUTH_LIMIT).await {
            Ok(p) => p,
            Err(e) => {
                report_read_error(&mut pio, &e).await;
                return Err(read_failed(e));
            }
        };
    }
    let resp = match parse_handshake_response(&first) {
        Ok(r) => r,
        Err(m) => {
            let _ = pio.send(&resultset::err(&er::handshake(m.0))).await;
            return Err(Closed::Broken(format!("bad handshake response: {}", m.0)));
        }
    };
    match login(
        &mut pio,
        &resp,
        &salt,
        peer_ip,
        tls_info.as_ref(),
        shared,
        false,
    )
    .await
    {
        Ok(account_host) => {
            let mut session = Session {
                server: shared.clone(),
                conn_id,
                user: resp.user.clone(),
                client_ip: peer_ip.to_string(),
                account_host,
                db: None,
                vars: Default::default(),
                user_vars: Default::default(),
                tls: tls_info,
                multi_statements: resp.caps & cap::MULTI_STATEMENTS != 0,
                capabilities: resp.caps & server_capabilities(true),
                questions: 0,
                state: Default::default(),
            };
            if let Some(db) = &resp.db {
                if let Err(e) = backend.init_db(&mut session, db).await {
                    let err = match e {
                        Error::Sql(s) => s,
                        other => er::unknown(other.to_string()),
                    };
                    let _ = pio.send(&resultset::err(&err)).await;
                    return Err(Closed::LoginRefused(format!("initial database: {err}")));
                }
            }
            let st = status::AUTOCOMMIT;
            pio.send(&resultset::ok(0, 0, st, ""))
                .await
                .map_err(|e| Closed::Broken(e.to_string()))?;
            tracing::info!(conn_id, peer, user = %resp.user, tls = session.tls.is_some(), "login");
            Ok((pio, session))
        }
        Err(Ok(refusal)) => {
            let _ = pio.send(&resultset::err(&refusal.err)).await;
            let why = match refusal.err.code {
                3159 => Some(tiox_security::Refusal::Plaintext),
                1045 if refusal.log.contains("REQUIRE") => {
                    Some(tiox_security::Refusal::RequireNotMet)
                }
                1045 => Some(tiox_security::Refusal::Password),
                _ => None,
            };
            if let Some(why) = why {
                shared.refused(
                    peer,
                    why,
                    &refusal.log,
                    tls_info.as_ref().and_then(|t| t.peer.as_ref()),
                    Some(&resp.user),
                );
            }
            Err(Closed::LoginRefused(refusal.log))
        }
        Err(Err(closed)) => Err(closed),
    }
}

/// Authenticates; returns the matched account's host pattern.
async fn login<S: AsyncRead + AsyncWrite + Unpin>(
    pio: &mut PacketIo<S>,
    resp: &HandshakeResponse,
    salt: &[u8; 20],
    peer_ip: &str,
    tls: Option<&TlsInfo>,
    shared: &Shared,
    force_switch: bool,
) -> Result<String, Result<Refusal, Closed>> {
    let user = resp.user.as_str();
    if tls.is_none() && shared.require_secure_transport() {
        return Err(Ok(refuse(
            er::secure_transport_required(),
            format!("user '{user}' connected without TLS and require-secure-transport is on"),
        )));
    }
    let users = shared
        .users
        .load()
        .map_err(|e| Ok(refuse(er::unknown(e.to_string()), e.to_string())))?;
    let denied =
        |using: bool, why: String| Err(Ok(refuse(er::access_denied(user, peer_ip, using), why)));
    // An unknown user goes through the same steps as a known one (against
    // an unguessable password) so the exchange does not reveal which
    // account names exist.
    let found = find_account(&users, user, peer_ip).cloned();
    let exists = found.is_some();
    let account = found.unwrap_or_else(|| {
        let plugin = match resp.plugin.as_deref() {
            Some(CACHING_SHA2_PASSWORD) => CACHING_SHA2_PASSWORD,
            _ => NATIVE_PASSWORD,
        };
        let unguessable = String::from_utf8_lossy(&auth::new_scramble()).into_owned();
        let stored = if plugin == NATIVE_PASSWORD {
            auth::native_hash(&unguessable)
        } else {
            auth::sha2_hash(&unguessable)
        };
        crate::users::UserRecord::new(user, "%", plugin, stored)
    });
    let mut plugin = resp
        .plugin
        .clone()
        .unwrap_or_else(|| NATIVE_PASSWORD.to_string());
    let mut data = resp.auth.clone();
    if force_switch || plugin != account.plugin {
        // Auth switch: same scramble, the account's plugin.
        let mut p = vec![0xfe];
        p.extend_from_slice(account.plugin.as_bytes());
        p.push(0);
        p.extend_from_slice(salt);
        p.push(0);
        pio.send(&p)
            .await
            .map_err(|e| Err(Closed::Broken(e.to_string())))?;
        data = pio
            .read_packet(PRE_AUTH_LIMIT)
            .await
            .map_err(|e| Err(read_failed(e)))?;
        plugin = account.plugin.clone();
    }
    let using = !data.is_empty();
    let ok = match plugin.as_str() {
        NATIVE_PASSWORD => auth::native_verify(&account.auth_string, salt, &data),
        CACHING_SHA2_PASSWORD => {
            let cached = shared.sha2_cache.get(&account.user, &account.host);
            if data.is_empty() || account.auth_string.is_empty() {
                data.is_empty() && account.auth_string.is_empty()
            } else if cached.is_some_and(|c| auth::sha2_fast_verify(&c, salt, &data)) {
                pio.send(&[0x01, 0x03])
                    .await
                    .map_err(|e| Err(Closed::Broken(e.to_string())))?;
                true
            } else if tls.is_none() {
                // Not cached (or the cache is stale): full authentication
                // would send the password, which tiox only accepts over TLS
                // (no RSA key exchange).
                let denied = er::access_denied(user, peer_ip, true);
                return Err(Ok(refuse(
                    SqlError {
                        message: format!(
                            "{} Authentication requires secure connection.",
                            denied.message
                        ),
                        ..denied
                    },
                    format!(
                        "caching_sha2_password full authentication for '{user}' needs TLS (no RSA \
                         key exchange); the client connected without TLS and its password is not \
                         in the cache"
                    ),
                )));
            } else {
                // Full authentication: the client sends the password in
                // clear over the TLS connection.
                pio.send(&[0x01, 0x04])
                    .await
                    .map_err(|e| Err(Closed::Broken(e.to_string())))?;
                let clear = pio
                    .read_packet(PRE_AUTH_LIMIT)
                    .await
                    .map_err(|e| Err(read_failed(e)))?;
                let password = clear.strip_suffix(&[0]).unwrap_or(&clear);
                let good = auth::sha2_verify_cleartext(&account.auth_string, password);
                if good {
                    shared
                        .sha2_cache
                        .put(&account.user, &account.host, password);
                }
                good
            }
        }
        other => {
            return Err(Ok(refuse(
                er::plugin_is_not_loaded(other),
                format!("unknown plugin {other}"),
            )));
        }
    };
    if !exists {
        return denied(using, format!("no account matches '{user}'@'{peer_ip}'"));
    }
    if !ok {
        return denied(
            using,
            format!("wrong password for '{user}'@'{}'", account.host),
        );
    }
    if let Err(why) = account.require.check(tls) {
        return denied(
            using,
            format!(
                "'{user}'@'{}' {}: {why}",
                account.host,
                account.require.to_sql()
            ),
        );
    }
    if account.locked {
        return Err(Ok(refuse(
            SqlError::of(
                ErrorKind::AccountHasBeenLocked,
                format!("Access denied for user '{user}'@'{peer_ip}'. Account is locked."),
            ),
            format!("account '{user}'@'{}' is locked", account.host),
        )));
    }
    Ok(account.host)
}

struct Statement {
    prepared: Prepared,
    types: Vec<ParamType>,
    long_data: HashMap<u16, Vec<u8>>,
}

struct Connection {
    session: Session,
    /// This connection in the server's registry (`KILL`).
    handle: Arc<ConnHandle>,
    backend: Arc<dyn Backend>,
    statements: HashMap<u32, Statement>,
    next_stmt: u32,
}

fn sql_error(e: Error) -> Result<SqlError, Closed> {
    match e {
        Error::Sql(s) => Ok(s),
        Error::Store(m) | Error::Config(m) => Ok(er::unknown(m)),
        Error::Protocol(m) => Err(Closed::Broken(m)),
        Error::Io(e) => Err(Closed::Broken(e.to_string())),
    }
}

impl Connection {
    fn status(&self) -> u16 {
        let mut st = if self.session.autocommit() {
            status::AUTOCOMMIT
        } else {
            0
        };
        if self.session.state.in_transaction {
            st |= status::IN_TRANS;
        }
        st
    }

    fn caps(&self) -> u32 {
        self.session.capabilities
    }

    fn deprecate_eof(&self) -> bool {
        self.caps() & cap::DEPRECATE_EOF != 0
    }

    async fn command_loop<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        pio: &mut PacketIo<S>,
    ) -> Closed {
        let limit = self.session.server.max_allowed_packet();
        loop {
            let settings = &self.session.server.settings;
            let idle = match self.session.vars.get("wait_timeout") {
                Some(crate::value::Value::Int(s)) if *s > 0 => {
                    std::time::Duration::from_secs(*s as u64)
                }
                _ => settings.wait_timeout,
            };
            pio.set_timeouts(Some(idle), Some(settings.net_read_timeout));
            pio.reset_seq();
            let read = tokio::select! {
                r = pio.read_packet(limit) => r,
                () = self.handle.closed.notified() => return Closed::Broken("killed by KILL".into()),
            };
            let packet = match read {
                Ok(p) => p,
                Err(e) => {
                    report_read_error(pio, &e).await;
                    return read_failed(e);
                }
            };
            // A KILL QUERY of the previous command is spent.
            self.handle.interrupt.begin_statement();
            match self.command(pio, &packet).await {
                Ok(true) => {}
                Ok(false) => return Closed::ClientQuit,
                Err(c) => return c,
            }
            if self.handle.interrupt.connection_killed() {
                return Closed::Broken("killed by KILL".into());
            }
            if let Err(e) = pio.flush().await {
                return Closed::Broken(e.to_string());
            }
        }
    }

    fn send_output(&self, pio: &mut PacketIo<impl Sized>, out: &Output, more: bool, binary: bool) {
        let st = self.status() | if more { status::MORE_RESULTS_EXISTS } else { 0 };
        match out {
            Output::Ok {
                affected,
                last_insert_id,
                info,
            } => pio.queue(&resultset::ok(*affected, *last_insert_id, st, info)),
            Output::Rows(rs) => {
                let mut n = Vec::new();
                super::codec::put_lenenc_int(&mut n, rs.columns.len() as u64);
                pio.queue(&n);
                for c in &rs.columns {
                    pio.queue(&resultset::column_def(c, false));
                }
                if !self.deprecate_eof() {
                    pio.queue(&resultset::eof(st, false));
                }
                for row in &rs.rows {
                    if binary {
                        pio.queue(&resultset::binary_row(&rs.columns, row));
                    } else {
                        pio.queue(&resultset::text_row(row));
                    }
                }
                pio.queue(&resultset::eof(st, self.deprecate_eof()));
            }
        }
    }

    /// Handles one command; `Ok(false)` ends the connection.
    async fn command<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        pio: &mut PacketIo<S>,
        packet: &[u8],
    ) -> Result<bool, Closed> {
        let Some((&cmd, body)) = packet.split_first() else {
            return Err(Closed::Broken("empty command packet".into()));
        };
        match cmd {
            com::QUIT => return Ok(false),
            com::PING => pio.queue(&resultset::ok(0, 0, self.status(), "")),
            com::QUERY => {
                self.session.questions += 1;
                let Ok(sql) = std::str::from_utf8(body) else {
                    pio.queue(&resultset::err(&er::unknown(
                        "the query is not valid UTF-8".into(),
                    )));
                    return Ok(true);
                };
                let result = self.backend.query(&mut self.session, sql).await;
                let n = result.outputs.len();
                for (i, out) in result.outputs.iter().enumerate() {
                    let more = i + 1 < n || result.error.is_some();
                    self.send_output(pio, out, more, false);
                }
                if let Some(e) = result.error {
                    pio.queue(&resultset::err(&sql_error(e)?));
                }
            }
            com::INIT_DB => {
                let db = String::from_utf8_lossy(body).into_owned();
                match self.backend.init_db(&mut self.session, &db).await {
                    Ok(()) => pio.queue(&resultset::ok(0, 0, self.status(), "")),
                    Err(e) => pio.queue(&resultset::err(&sql_error(e)?)),
                }
            }
            com::FIELD_LIST => {
                let mut r = Reader::new(body);
                let table = String::from_utf8_lossy(r.null_str_or_rest()).into_owned();
                match self.backend.field_list(&mut self.session, &table).await {
                    Ok(cols) => {
                        for c in &cols {
                            pio.queue(&resultset::column_def(c, true));
                        }
                        pio.queue(&resultset::eof(self.status(), false));
                    }
                    Err(e) => pio.queue(&resultset::err(&e)),
                }
            }
            com::STATISTICS => {
                let s = &self.session.server;
                let text = format!(
                    "Uptime: {}  Threads: {}  Questions: {}  Slow queries: 0  Opens: 0  Flush tables: 0  Open tables: 0  Queries per second avg: 0.000",
                    s.uptime_secs(),
                    s.connections(),
                    self.session.questions
                );
                pio.queue(text.as_bytes());
            }
            com::SET_OPTION => {
                let mut r = Reader::new(body);
                match r.u16() {
                    Ok(0) => self.session.multi_statements = true,
                    Ok(1) => self.session.multi_statements = false,
                    _ => {
                        pio.queue(&resultset::err(&er::unknown_com(cmd)));
                        return Ok(true);
                    }
                }
                pio.queue(&resultset::eof(self.status(), false));
            }
            com::RESET_CONNECTION => {
                self.statements.clear();
                self.session.user_vars.clear();
                self.session.vars.clear();
                pio.queue(&resultset::ok(0, 0, self.status(), ""));
            }
            com::CHANGE_USER => self.change_user(pio, body).await?,
            com::STMT_PREPARE => self.prepare(pio, body).await?,
            com::STMT_EXECUTE => self.execute(pio, body).await?,
            com::STMT_SEND_LONG_DATA => {
                let mut r = Reader::new(body);
                if let (Ok(id), Ok(param)) = (r.u32(), r.u16()) {
                    let limit = self.session.server.max_allowed_packet();
                    if let Some(st) = self.statements.get_mut(&id) {
                        if usize::from(param) < st.prepared.params {
                            let buf = st.long_data.entry(param).or_default();
                            if buf.len() + r.remaining() > limit {
                                pio.queue(&resultset::err(&er::packet_too_large()));
                                return Err(Closed::Broken(
                                    "long data beyond max_allowed_packet".into(),
                                ));
                            }
                            buf.extend_from_slice(r.rest());
                        }
                    }
                }
                // No response, by protocol.
            }
            com::STMT_CLOSE => {
                if let Ok(id) = Reader::new(body).u32() {
                    self.statements.remove(&id);
                }
                // No response, by protocol.
            }
            com::STMT_RESET => match Reader::new(body).u32() {
                Ok(id) => match self.statements.get_mut(&id) {
                    Some(st) => {
                        st.long_data.clear();
                        pio.queue(&resultset::ok(0, 0, self.status(), ""));
                    }
                    None => pio.queue(&resultset::err(&er::unknown_stmt_handler(
                        id,
                        "mysqld_stmt_reset",
                    ))),
                },
                Err(_) => pio.queue(&resultset::err(&er::malformed_packet())),
            },
            other => pio.queue(&resultset::err(&er::unknown_com(other))),
        }
        Ok(true)
    }

    /// COM_CHANGE_USER: authenticate again (always through an
    /// AuthSwitchRequest with a fresh scramble), then start a fresh session
    /// as the new user. A failed attempt closes the connection.
    async fn change_user<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        pio: &mut PacketIo<S>,
        body: &[u8],
    ) -> Result<(), Closed> {
        let caps = self.session.capabilities;
        let parsed = (|| {
            let mut r = Reader::new(body);
            let user = String::from_utf8(r.null_str()?.to_vec())
                .map_err(|_| Malformed("user name is not UTF-8"))?;
            if caps & cap::SECURE_CONNECTION != 0 {
                let n = r.u8()?;
                r.bytes(usize::from(n))?;
            } else {
                r.null_str()?;
            }
            let db = String::from_utf8_lossy(r.null_str_or_rest()).into_owned();
            Ok::<_, Malformed>((user, db))
        })();
        let (user, db) = match parsed {
            Ok(v) => v,
            Err(m) => {
                pio.queue(&resultset::err(&er::malformed_packet()));
                return Err(Closed::Broken(format!("bad COM_CHANGE_USER: {}", m.0)));
            }
        };
        let resp = HandshakeResponse {
            caps,
            user: user.clone(),
            auth: Vec::new(),
            db: None,
            plugin: None,
        };
        let salt = auth::new_scramble();
        let shared = self.session.server.clone();
        let ip = self.session.client_ip.clone();
        let tls = self.session.tls.clone();
        match login(pio, &resp, &salt, &ip, tls.as_ref(), &shared, true).await {
            Ok(account_host) => {
                let old = std::mem::replace(
                    &mut self.session,
                    Session {
                        server: shared,
                        conn_id: 0,
                        user,
                        client_ip: ip,
                        account_host,
                        db: None,
                        vars: Default::default(),
                        user_vars: Default::default(),
                        tls,
                        multi_statements: caps & cap::MULTI_STATEMENTS != 0,
                        capabilities: caps,
                        questions: 0,
                        state: Default::default(),
                    },
                );
                self.session.conn_id = old.conn_id;
                self.session.questions = old.questions;
                self.statements.clear();
                if !db.is_empty() {
                    if let Err(e) = self.backend.init_db(&mut self.session, &db).await {
                        let e = sql_error(e)?;
                        pio.queue(&resultset::err(&e));
                        return Err(Closed::LoginRefused(format!(
                            "COM_CHANGE_USER database: {e}"
                        )));
                    }
                }
                pio.queue(&resultset::ok(0, 0, self.status(), ""));
                tracing::info!(conn_id = self.session.conn_id, user = %self.session.user, "changed user");
                Ok(())
            }
            Err(Ok(refusal)) => {
                pio.queue(&resultset::err(&refusal.err));
                let _ = pio.flush().await;
                Err(Closed::LoginRefused(format!(
                    "COM_CHANGE_USER: {}",
                    refusal.log
                )))
            }
            Err(Err(closed)) => Err(closed),
        }
    }

    async fn prepare<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        pio: &mut PacketIo<S>,
        body: &[u8],
    ) -> Result<(), Closed> {
        let Ok(sql) = std::str::from_utf8(body) else {
            pio.queue(&resultset::err(&er::unknown(
                "the statement is not valid UTF-8".into(),
            )));
            return Ok(());
        };
        if self.statements.len() >= MAX_STATEMENTS {
            pio.queue(&resultset::err(&SqlError::of(ErrorKind::MaxPreparedStmtCountReached, format!("Can't create more than max_prepared_stmt_count statements (current value: {MAX_STATEMENTS})"))));
            return Ok(());
        }
        let prepared = match self.backend.prepare(&mut self.session, sql).await {
            Ok(p) => p,
            Err(e) => {
                pio.queue(&resultset::err(&sql_error(e)?));
                return Ok(());
            }
        };
        let id = self.next_stmt;
        self.next_stmt = self.next_stmt.wrapping_add(1).max(1);
        let mut p = vec![0x00];
        p.extend_from_slice(&id.to_le_bytes());
        p.extend_from_slice(&(prepared.columns.len() as u16).to_le_bytes());
        p.extend_from_slice(&(prepared.params as u16).to_le_bytes());
        p.push(0);
        p.extend_from_slice(&0u16.to_le_bytes());
        pio.queue(&p);
        let st = self.status();
        if prepared.params > 0 {
            for _ in 0..prepared.params {
                pio.queue(&resultset::column_def(&Column::text("?"), false));
            }
            if !self.deprecate_eof() {
                pio.queue(&resultset::eof(st, false));
            }
        }
        if !prepared.columns.is_empty() {
            for c in &prepared.columns {
                pio.queue(&resultset::column_def(c, false));
            }
            if !self.deprecate_eof() {
                pio.queue(&resultset::eof(st, false));
            }
        }
        self.statements.insert(
            id,
            Statement {
                prepared,
                types: Vec::new(),
                long_data: HashMap::new(),
            },
        );
        Ok(())
    }

    async fn execute<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        pio: &mut PacketIo<S>,
        body: &[u8],
    ) -> Result<(), Closed> {
        self.session.questions += 1;
        let mut r = Reader::new(body);
        let header = match stmt::read_header(&mut r) {
            Ok(h) => h,
            Err(_) => {
                pio.queue(&resultset::err(&er::malformed_packet()));
                return Ok(());
            }
        };
        let Some(st) = self.statements.get_mut(&header.stmt_id) else {
            pio.queue(&resultset::err(&er::unknown_stmt_handler(
                header.stmt_id,
                "mysqld_stmt_execute",
            )));
            return Ok(());
        };
        let params =
            match stmt::read_params(&mut r, st.prepared.params, &mut st.types, &st.long_data) {
                Ok(p) => p,
                Err(m) => {
                    tracing::debug!(conn_id = self.session.conn_id, "COM_STMT_EXECUTE: {m}");
                    pio.queue(&resultset::err(&er::wrong_arguments("mysqld_stmt_execute")));
                    return Ok(());
                }
            };
        st.long_data.clear();
        let prepared = st.prepared.clone();
        let _ = header.flags;
        match self
            .backend
            .execute(&mut self.session, &prepared, params)
            .await
        {
            Ok(out) => self.send_output(pio, &out, false, true),
            Err(e) => pio.queue(&resultset::err(&sql_error(e)?)),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_packet_carries_the_whole_salt_and_plugin() {
        let salt = auth::new_scramble();
        let p = handshake_packet("8.0.11-tiox", 7, &salt, server_capabilities(true));
        assert_eq!(p[0], 10);
        let v = b"8.0.11-tiox\0".len();
        assert_eq!(&p[1 + v + 4..1 + v + 12], &salt[..8]);
        assert!(p.ends_with(b"mysql_native_password\0"));
        let tail = &p[p.len() - 22 - 13..p.len() - 22];
        assert_eq!(&tail[..12], &salt[8..]);
    }

    #[test]
    fn handshake_response_parses_and_rejects_garbage() {
        let mut p = Vec::new();
        let caps =
            cap::PROTOCOL_41 | cap::SECURE_CONNECTION | cap::PLUGIN_AUTH | cap::CONNECT_WITH_DB;
        p.extend_from_slice(&caps.to_le_bytes());
        p.extend_from_slice(&(1u32 << 24).to_le_bytes());
        p.push(45);
        p.extend_from_slice(&[0; 23]);
        p.extend_from_slice(b"root\0");
        p.push(20);
        p.extend_from_slice(&[7; 20]);
        p.extend_from_slice(b"test\0mysql_native_password\0");
        let r = parse_handshake_response(&p).unwrap();
        assert_eq!(r.user, "root");
        assert_eq!(r.auth, vec![7; 20]);
        assert_eq!(r.db.as_deref(), Some("test"));
        assert_eq!(r.plugin.as_deref(), Some(NATIVE_PASSWORD));
        for cut in 0..p.len() - 27 {
            let _ = parse_handshake_response(&p[..cut]);
        }
        assert!(parse_handshake_response(&[0xff; 8]).is_err());
    }
}
