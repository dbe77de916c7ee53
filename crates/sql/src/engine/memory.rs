//! The per-statement memory tracker (TiDB's `util/memory.Tracker`, one
//! level deep).
//!
//! Every operator that buffers rows — leaf rows read for a join, a hash
//! join's build side, the rows a join or filter hands to the rest of the
//! SELECT, aggregation groups, sort keys, the result set — charges the
//! bytes it keeps with [`Tracker::consume`]. Past the statement's quota
//! (`tidb_mem_quota_query`, 1 GiB by default as TiDB) the charge fails with
//! ERROR 8175 and the statement unwinds, dropping what it held. Charges are
//! estimates of heap use ([`row_bytes`]); nothing is released before the
//! statement ends, so the tracked total only grows — a safe upper bound of
//! what the statement holds at once.
//!
//! Spilling to disk (`tidb_enable_tmp_storage_on_oom`) is not done: a
//! statement over its quota fails.
//!
//! The tracker also carries a SELECT's `max_execution_time` deadline: the
//! same charges, and every row an operator tests ([`Tracker::check_time`]),
//! look at the clock every [`TIME_CHECK_EVERY`] calls and fail with
//! MySQL's ERROR 3024 once it passed.
//!
//! Every tracker also counts in the server's [`ServerMemory`]: past
//! `tidb_server_memory_limit` the statement holding the most is cancelled
//! (ERROR 8176), as TiDB does. The account covers what trackers charge,
//! not the whole process.
//!
//! And the connection's [`Interrupt`]: `KILL QUERY id` (or `KILL id`) from
//! another session sets it, and the same checks fail with ERROR 1317 at
//! the next row or charge. The flag is one atomic load per check; the
//! protocol layer clears a `KILL QUERY` when the next command starts.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::error::{er, SqlError};
use crate::value::Value;

/// TiDB's default `tidb_mem_quota_query`: 1 GiB.
pub const DEFAULT_MEM_QUOTA_QUERY: u64 = 1 << 30;

/// The clock is read once per this many checks.
pub const TIME_CHECK_EVERY: u64 = 256;

/// A connection's kill flag, shared by the connection registry
/// (`server::Shared`) and the trackers of the connection's statements.
#[derive(Debug, Default)]
pub struct Interrupt(AtomicU8);

const RUNNING: u8 = 0;
const QUERY_KILLED: u8 = 1;
const CONNECTION_KILLED: u8 = 2;
const MEMORY_KILLED: u8 = 3;

impl Interrupt {
    /// `KILL QUERY`: the running statement stops with ERROR 1317.
    pub fn kill_query(&self) {
        let _ = self
            .0
            .compare_exchange(RUNNING, QUERY_KILLED, Ordering::AcqRel, Ordering::Acquire);
    }

    /// `KILL [CONNECTION]`: the running statement stops and the connection
    /// closes.
    pub fn kill_connection(&self) {
        self.0.store(CONNECTION_KILLED, Ordering::Release);
    }

    /// `tidb_server_memory_limit`: the running statement, the one using
    /// the most memory, stops with ERROR 8176.
    pub fn kill_for_memory(&self) {
        let _ =
            self.0
                .compare_exchange(RUNNING, MEMORY_KILLED, Ordering::AcqRel, Ordering::Acquire);
    }

    /// A new command starts: a `KILL QUERY` (or memory kill) of the
    /// previous one is spent.
    pub fn begin_statement(&self) {
        for spent in [QUERY_KILLED, MEMORY_KILLED] {
            let _ = self
                .0
                .compare_exchange(spent, RUNNING, Ordering::AcqRel, Ordering::Acquire);
        }
    }

    /// Whether the connection was killed (it must close).
    pub fn connection_killed(&self) -> bool {
        self.0.load(Ordering::Acquire) == CONNECTION_KILLED
    }

    /// ERROR 1317 once the statement or its connection was killed, 8176
    /// once it was cancelled for the server's memory (connection `conn_id`).
    pub fn check(&self, conn_id: u32) -> Result<(), SqlError> {
        match self.0.load(Ordering::Relaxed) {
            RUNNING => Ok(()),
            MEMORY_KILLED => Err(er::server_memory_exceeded(conn_id)),
            _ => Err(er::query_interrupted()),
        }
    }
}

/// One statement's memory account (and deadline, and kill flag).
#[derive(Debug)]
pub struct Tracker {
    used: AtomicU64,
    quota: u64,
    conn_id: u32,
    deadline: OnceLock<Instant>,
    ticks: AtomicU64,
    interrupt: Option<Arc<Interrupt>>,
    server: Option<Arc<ServerMemory>>,
    share: OnceLock<Arc<AtomicU64>>,
}

/// The server-wide account behind `tidb_server_memory_limit`: the bytes
/// every running statement's tracker holds, and each connection's share.
#[derive(Debug, Default)]
pub struct ServerMemory {
    limit: AtomicU64,
    used: AtomicU64,
    per_conn: std::sync::Mutex<HashMap<u32, Share>>,
}

/// One connection's bytes and kill flag.
type Share = (Arc<AtomicU64>, Arc<Interrupt>);

impl ServerMemory {
    /// An account with `limit` bytes (0: no limit).
    pub fn new(limit: u64) -> ServerMemory {
        ServerMemory {
            limit: AtomicU64::new(limit),
            ..ServerMemory::default()
        }
    }

    /// `tidb_server_memory_limit` in bytes (0: no limit).
    pub fn limit(&self) -> u64 {
        self.limit.load(Ordering::Relaxed)
    }

    /// `SET GLOBAL tidb_server_memory_limit`.
    pub fn set_limit(&self, bytes: u64) {
        self.limit.store(bytes, Ordering::Relaxed);
    }

    /// Bytes the running statements hold.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    fn conns(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Share>> {
        self.per_conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Connection `conn`'s counter (registered on first use).
    fn share(&self, conn: u32, interrupt: &Arc<Interrupt>) -> Arc<AtomicU64> {
        self.conns()
            .entry(conn)
            .or_insert_with(|| (Arc::new(AtomicU64::new(0)), interrupt.clone()))
            .0
            .clone()
    }

    /// Charges `bytes` to a connection's `share`; past the limit, the
    /// connection holding the most is cancelled (TiDB's rule).
    fn charge(&self, share: &AtomicU64, bytes: u64) {
        share.fetch_add(bytes, Ordering::Relaxed);
        let total = self.used.fetch_add(bytes, Ordering::Relaxed) + bytes;
        let limit = self.limit();
        if limit > 0 && total > limit {
            let m = self.conns();
            if let Some((_, (_, top))) =
                m.iter().max_by_key(|(_, (b, _))| b.load(Ordering::Relaxed))
            {
                top.kill_for_memory();
            }
        }
    }

    /// Gives back what a statement of `conn` held.
    fn release(&self, conn: u32, bytes: u64) {
        self.used.fetch_sub(bytes, Ordering::Relaxed);
        let mut m = self.conns();
        if let Some((b, _)) = m.get(&conn) {
            if b.fetch_sub(bytes, Ordering::Relaxed) <= bytes {
                m.remove(&conn);
            }
        }
    }
}

impl Tracker {
    /// A tracker that allows `quota` bytes (0: no limit) for connection
    /// `conn_id` (named in the error, as TiDB).
    pub fn new(quota: u64, conn_id: u32) -> Tracker {
        Tracker {
            used: AtomicU64::new(0),
            quota,
            conn_id,
            deadline: OnceLock::new(),
            ticks: AtomicU64::new(0),
            interrupt: None,
            server: None,
            share: OnceLock::new(),
        }
    }

    /// The same tracker, stopped by `interrupt` (its connection's flag).
    pub fn interrupted_by(mut self, interrupt: Option<Arc<Interrupt>>) -> Tracker {
        self.interrupt = interrupt;
        self
    }

    /// The same tracker, counted in the server's account too (it needs the
    /// connection's kill flag to be cancelled by it).
    pub fn in_server(mut self, server: Arc<ServerMemory>) -> Tracker {
        self.server = Some(server);
        self
    }

    /// Starts a `max_execution_time` of `ms` milliseconds (0: none) from
    /// now; only the first call counts.
    pub fn limit_time(&self, ms: u64) {
        if ms > 0 {
            let _ = self
                .deadline
                .set(Instant::now() + Duration::from_millis(ms));
        }
    }

    /// ERROR 1317 once the statement was killed; ERROR 3024 once the
    /// deadline passed (the clock is read every [`TIME_CHECK_EVERY`] calls).
    pub fn check_time(&self) -> Result<(), SqlError> {
        if let Some(i) = &self.interrupt {
            i.check(self.conn_id)?;
        }
        if let Some(d) = self.deadline.get() {
            if self
                .ticks
                .fetch_add(1, Ordering::Relaxed)
                .is_multiple_of(TIME_CHECK_EVERY)
                && Instant::now() >= *d
            {
                return Err(er::max_execution_time_exceeded());
            }
        }
        Ok(())
    }

    /// The tracker of a statement of `session`: its `tidb_mem_quota_query`.
    pub fn for_session(session: &crate::backend::Session) -> Tracker {
        let quota = match crate::executor::vars::get(session, "tidb_mem_quota_query", false) {
            Some(Value::Int(i)) => i.max(0) as u64,
            Some(Value::UInt(u)) => u,
            _ => DEFAULT_MEM_QUOTA_QUERY,
        };
        Tracker::new(quota, session.conn_id)
            .interrupted_by(session.server.interrupt(session.conn_id))
            .in_server(session.server.memory())
    }

    /// Charges `bytes`; ERROR 8175 once the total passes the quota.
    pub fn consume(&self, bytes: u64) -> Result<(), SqlError> {
        self.check_time()?;
        if let (Some(server), Some(i)) = (&self.server, &self.interrupt) {
            let share = self.share.get_or_init(|| server.share(self.conn_id, i));
            server.charge(share, bytes);
        }
        let total = self.used.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if self.quota > 0 && total > self.quota {
            return Err(er::mem_quota_exceeded(self.conn_id));
        }
        Ok(())
    }

    /// Charges one buffered row ([`row_bytes`]).
    pub fn consume_row(&self, row: &[Value]) -> Result<(), SqlError> {
        self.consume(row_bytes(row))
    }

    /// Bytes charged so far.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        if let (Some(server), Some(_)) = (&self.server, self.share.get()) {
            server.release(self.conn_id, self.used());
        }
    }
}

/// The heap bytes a value holds beyond its own slot.
fn value_heap(v: &Value) -> u64 {
    match v {
        Value::Text(s) | Value::Decimal(s) => s.capacity() as u64,
        Value::Bytes(b) => b.capacity() as u64,
        _ => 0,
    }
}

/// An estimate of what a buffered row costs: its vector header in the
/// buffer holding it, twice (a growing buffer has up to twice the room it
/// uses), its value slots and their heap parts, plus the allocator's
/// overhead per allocation (16 bytes).
pub fn row_bytes(row: &[Value]) -> u64 {
    let slots = (2 * std::mem::size_of::<Vec<Value>>() + std::mem::size_of_val(row)) as u64;
    slots + 16 + row.iter().map(value_heap).sum::<u64>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_past_the_quota_fail_with_8175_naming_the_connection() {
        let t = Tracker::new(100, 7);
        assert!(t.consume(60).is_ok());
        let e = t.consume(60).unwrap_err();
        assert_eq!((e.code, e.state), (8175, "HY000"));
        assert!(e.message.ends_with("[conn=7]"), "{}", e.message);
    }

    #[test]
    fn a_passed_deadline_fails_with_3024() {
        let t = Tracker::new(0, 1);
        t.limit_time(1);
        std::thread::sleep(Duration::from_millis(5));
        let e = t.check_time().unwrap_err();
        assert_eq!((e.code, e.state), (3024, "HY000"));
        let none = Tracker::new(0, 1);
        assert!(none.check_time().is_ok());
    }

    #[test]
    fn a_killed_statement_fails_with_1317_and_the_next_one_runs() {
        let flag = Arc::new(Interrupt::default());
        let t = Tracker::new(0, 1).interrupted_by(Some(flag.clone()));
        assert!(t.check_time().is_ok());
        flag.kill_query();
        let e = t.consume(1).unwrap_err();
        assert_eq!((e.code, e.state), (1317, "70100"));
        flag.begin_statement();
        assert!(t.check_time().is_ok());
        flag.kill_connection();
        flag.begin_statement();
        assert!(flag.connection_killed());
        assert_eq!(t.check_time().unwrap_err().code, 1317);
    }

    #[test]
    fn past_the_server_limit_the_statement_holding_the_most_fails_with_8176() {
        let server = Arc::new(ServerMemory::new(1000));
        let (small, big) = (
            Arc::new(Interrupt::default()),
            Arc::new(Interrupt::default()),
        );
        let a = Tracker::new(0, 1)
            .interrupted_by(Some(small.clone()))
            .in_server(server.clone());
        let b = Tracker::new(0, 2)
            .interrupted_by(Some(big.clone()))
            .in_server(server.clone());
        a.consume(300).unwrap();
        b.consume(600).unwrap();
        b.consume(200).unwrap();
        assert!(a.check_time().is_ok(), "the smaller statement runs on");
        let e = b.consume(1).unwrap_err();
        assert_eq!((e.code, e.state), (8176, "HY000"));
        assert!(e.message.ends_with("[conn=2]"), "{}", e.message);
        drop(b);
        assert_eq!(
            server.used(),
            300,
            "a statement's bytes go back when it ends"
        );
        big.begin_statement();
        assert!(big.check(2).is_ok(), "the next statement runs");
    }

    #[test]
    fn a_zero_quota_means_no_limit() {
        let t = Tracker::new(0, 1);
        assert!(t.consume(u64::MAX / 2).is_ok());
    }

    #[test]
    fn row_bytes_counts_string_contents() {
        let short = row_bytes(&[Value::Int(1)]);
        let long = row_bytes(&[Value::Text("x".repeat(1000))]);
        assert!(long >= short + 1000);
    }
}
