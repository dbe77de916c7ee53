//! The MySQL listener: accepts TCP connections (TCP_NODELAY), numbers them,
//! and runs each on its own task; a failing connection is logged and closed
//! while the others carry on. [`Shared`] is the server-wide state every
//! session sees (users, the caching_sha2 cache, TLS, settings, counters,
//! and the registry of logged-in connections that `KILL` looks up).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::net::TcpListener;

use crate::auth::Sha2Cache;
use crate::backend::Backend;
use crate::engine::memory::{Interrupt, ServerMemory};
use crate::error::{er, ErrorKind, SqlError};
use crate::protocol::conn::{self, Closed};
use crate::tls::MysqlTls;
use crate::users::UserStore;

/// The server version string sent in the handshake and `VERSION()`:
/// MySQL 8.0.11 compatibility, then TiDB's marker, then ours.
pub const VERSION: &str = concat!("8.0.11-TiDB-tiox-", env!("CARGO_PKG_VERSION"));

/// Settings a session can read (`@@variables`).
#[derive(Clone, Debug)]
pub struct Settings {
    /// The MySQL port.
    pub port: u16,
    /// `require-secure-transport` at startup.
    pub require_secure_transport: bool,
    /// `max_allowed_packet` in bytes.
    pub max_allowed_packet: usize,
    /// `ssl-ca` as configured (empty if unset).
    pub ssl_ca: String,
    /// `ssl-cert` as configured.
    pub ssl_cert: String,
    /// `ssl-key` as configured.
    pub ssl_key: String,
    /// `tls_version` as reported (`TLSv1.2,TLSv1.3`).
    pub tls_version: String,
    /// Host name for `@@hostname`.
    pub hostname: String,
    /// How long a session may stay idle between commands (`wait_timeout`
    /// default; a session can change its own).
    pub wait_timeout: std::time::Duration,
    /// How long the rest of a started packet may take (`net_read_timeout`).
    pub net_read_timeout: std::time::Duration,
    /// Most connections at once, logged in or not (0: no limit).
    pub max_connections: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            port: 4000,
            require_secure_transport: false,
            max_allowed_packet: 64 << 20,
            ssl_ca: String::new(),
            ssl_cert: String::new(),
            ssl_key: String::new(),
            tls_version: "TLSv1.2,TLSv1.3".into(),
            hostname: "localhost".into(),
            wait_timeout: std::time::Duration::from_secs(28800),
            net_read_timeout: std::time::Duration::from_secs(30),
            max_connections: 0,
        }
    }
}

/// A logged-in connection, as `KILL` sees it.
#[derive(Debug)]
pub struct ConnHandle {
    /// The user name it logged in with (its owner for `KILL`).
    pub user: String,
    /// Its statements' kill flag.
    pub interrupt: Arc<Interrupt>,
    /// Woken by `KILL [CONNECTION]`, so an idle connection closes at once.
    pub closed: tokio::sync::Notify,
}

/// TiDB's default `tidb_server_memory_limit`: 80% of the machine's memory
/// (no limit when it cannot be read).
pub fn default_server_memory_limit() -> u64 {
    total_memory().map_or(0, |t| t / 10 * 8)
}

/// The machine's memory in bytes (`MemTotal` of /proc/meminfo).
pub fn total_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Server-wide state.
#[derive(Debug)]
pub struct Shared {
    conns: Mutex<HashMap<u32, Arc<ConnHandle>>>,
    /// The accounts.
    pub users: Arc<dyn UserStore>,
    /// caching_sha2_password fast-path cache.
    pub sha2_cache: Sha2Cache,
    tls: Option<Arc<MysqlTls>>,
    /// Settings.
    pub settings: Settings,
    require_secure_transport: AtomicBool,
    mem_quota_query: AtomicU64,
    memory: Arc<ServerMemory>,
    next_conn_id: AtomicU32,
    live: AtomicU64,
    total: AtomicU64,
    aborted: AtomicU64,
    started: Instant,
    audit: std::sync::OnceLock<Arc<tiox_security::audit::AuditLog>>,
}

impl Shared {
    /// Builds the shared state.
    pub fn new(
        users: Arc<dyn UserStore>,
        tls: Option<Arc<MysqlTls>>,
        settings: Settings,
    ) -> Arc<Shared> {
        Arc::new(Shared {
            conns: Mutex::new(HashMap::new()),
            users,
            sha2_cache: Sha2Cache::default(),
            tls,
            require_secure_transport: AtomicBool::new(settings.require_secure_transport),
            mem_quota_query: AtomicU64::new(crate::engine::memory::DEFAULT_MEM_QUOTA_QUERY),
            memory: Arc::new(ServerMemory::new(default_server_memory_limit())),
            settings,
            next_conn_id: AtomicU32::new(1),
            live: AtomicU64::new(0),
            total: AtomicU64::new(0),
            aborted: AtomicU64::new(0),
            started: Instant::now(),
            audit: std::sync::OnceLock::new(),
        })
    }

    /// Sets the security audit log (refused TLS handshakes and logins on
    /// the MySQL port, refusals on the status port); once, at startup.
    pub fn set_audit(&self, audit: Arc<tiox_security::audit::AuditLog>) {
        let _ = self.audit.set(audit);
    }

    /// The security audit log, if one is set.
    pub fn audit(&self) -> Option<Arc<tiox_security::audit::AuditLog>> {
        self.audit.get().cloned()
    }

    /// Records a refusal on the MySQL port: counted (with TLS configured)
    /// and written to the audit log.
    pub fn refused(
        &self,
        peer: &str,
        why: tiox_security::Refusal,
        detail: &str,
        cert: Option<&tiox_security::CertInfo>,
        user: Option<&str>,
    ) {
        if let Some(tls) = &self.tls {
            tls.stats().refused(why);
        }
        if let Some(audit) = self.audit.get() {
            audit.record(&tiox_security::audit::Event {
                listener: "mysql",
                peer,
                reason: why,
                detail,
                cert,
                user,
            });
        }
    }

    /// The TLS acceptor, if TLS is configured.
    pub fn tls(&self) -> Option<Arc<MysqlTls>> {
        self.tls.clone()
    }

    /// The version string.
    pub fn version(&self) -> String {
        VERSION.to_string()
    }

    /// Whether plaintext logins are refused.
    pub fn require_secure_transport(&self) -> bool {
        self.require_secure_transport.load(Ordering::Relaxed)
    }

    /// `SET GLOBAL require_secure_transport` (only possible with TLS on).
    pub fn set_require_secure_transport(&self, on: bool) {
        self.require_secure_transport.store(on, Ordering::Relaxed);
    }

    /// The global `tidb_mem_quota_query` (bytes per statement; this
    /// server's, not stored in the cluster).
    pub fn mem_quota_query(&self) -> u64 {
        self.mem_quota_query.load(Ordering::Relaxed)
    }

    /// `SET GLOBAL tidb_mem_quota_query`.
    pub fn set_mem_quota_query(&self, bytes: u64) {
        self.mem_quota_query.store(bytes, Ordering::Relaxed);
    }

    /// The server-wide memory account (`tidb_server_memory_limit`).
    pub fn memory(&self) -> Arc<ServerMemory> {
        self.memory.clone()
    }

    /// `max_allowed_packet`.
    pub fn max_allowed_packet(&self) -> usize {
        self.settings.max_allowed_packet
    }

    /// Open connections.
    pub fn connections(&self) -> u64 {
        self.live.load(Ordering::Relaxed)
    }

    /// Connections ever accepted.
    pub fn total_connections(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// Connections that ended with a protocol error or refused login.
    pub fn aborted_connections(&self) -> u64 {
        self.aborted.load(Ordering::Relaxed)
    }

    /// Registers a logged-in connection (until [`Shared::unregister`]).
    pub fn register(&self, conn_id: u32, user: &str) -> Arc<ConnHandle> {
        let h = Arc::new(ConnHandle {
            user: user.to_string(),
            interrupt: Arc::new(Interrupt::default()),
            closed: tokio::sync::Notify::new(),
        });
        self.registry().insert(conn_id, h.clone());
        h
    }

    /// Forgets a connection that ended.
    pub fn unregister(&self, conn_id: u32) {
        self.registry().remove(&conn_id);
    }

    /// The kill flag of connection `conn_id`, if it is logged in.
    pub fn interrupt(&self, conn_id: u32) -> Option<Arc<Interrupt>> {
        self.registry().get(&conn_id).map(|h| h.interrupt.clone())
    }

    /// `KILL [CONNECTION | QUERY] id` by `user`: only the connection's
    /// owner, or a user with CONNECTION_ADMIN or SUPER (`admin`), may kill
    /// it (ERROR 1095); an id not logged in is ERROR 1094.
    pub fn kill(&self, id: u64, query_only: bool, user: &str, admin: bool) -> Result<(), SqlError> {
        let h = u32::try_from(id)
            .ok()
            .and_then(|i| self.registry().get(&i).cloned())
            .ok_or_else(|| er::no_such_thread(id))?;
        if !admin && h.user != user {
            return Err(er::kill_denied(id));
        }
        if query_only {
            h.interrupt.kill_query();
        } else {
            h.interrupt.kill_connection();
            h.closed.notify_one();
        }
        Ok(())
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Arc<ConnHandle>>> {
        // A panic while holding the lock leaves the map consistent.
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Seconds since start.
    pub fn uptime_secs(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    /// Runs one connection on the current task (tests and the fuzz target
    /// call this with in-memory streams).
    pub async fn serve_connection<IO>(
        self: &Arc<Self>,
        io: IO,
        peer: String,
        peer_ip: String,
        backend: Arc<dyn Backend>,
    ) -> Closed
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send,
    {
        let conn_id = self.next_conn_id.fetch_add(1, Ordering::Relaxed);
        let live = self.live.fetch_add(1, Ordering::Relaxed);
        self.total.fetch_add(1, Ordering::Relaxed);
        let max = self.settings.max_connections;
        let closed = if max > 0 && live >= max as u64 {
            // MySQL sends ER_CON_COUNT_ERROR in place of the handshake.
            let mut io = crate::protocol::packet::PacketIo::new(io);
            let err =
                crate::error::SqlError::of(ErrorKind::ConCount, "Too many connections".into());
            let _ = io.send(&crate::protocol::resultset::err(&err)).await;
            Closed::LoginRefused(format!(
                "max-server-connections ({max}) reached; connection refused"
            ))
        } else {
            conn::run(io, peer.clone(), peer_ip, conn_id, self.clone(), backend).await
        };
        self.live.fetch_sub(1, Ordering::Relaxed);
        match &closed {
            Closed::ClientQuit => tracing::debug!(conn_id, peer, "connection closed: {closed}"),
            Closed::LoginRefused(_) | Closed::Broken(_) => {
                self.aborted.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(conn_id, peer, "connection closed: {closed}");
            }
        }
        closed
    }
}

/// Accepts connections forever.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, backend: Arc<dyn Backend>) {
    loop {
        let (tcp, addr) = match listener.accept().await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("TCP_NODELAY on {addr}: {e}");
        }
        let shared = shared.clone();
        let backend = backend.clone();
        tokio::spawn(async move {
            let ip = addr.ip().to_canonical().to_string();
            shared
                .serve_connection(tcp, addr.to_string(), ip, backend)
                .await;
        });
    }
}
