//! Entry points shared by the cargo-fuzz targets in `fuzz/` and by the
//! malformed-input tests: the real server code driven by arbitrary bytes on
//! an in-memory pipe. Each call must return (never hang, never panic)
//! whatever the bytes are.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::conn::Closed;
use super::packet::PacketIo;
use crate::backend::Backend;
use crate::executor::Interim;
use crate::server::{Settings, Shared};
use crate::users::{MemoryUserStore, UserRecord};

fn runtime() -> tokio::runtime::Runtime {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => panic!("cannot build a tokio runtime for fuzzing: {e}"),
    }
}

/// A server with `root@'%'` (no password) in memory, 1 MiB packets and
/// short timeouts.
pub fn test_server() -> Arc<Shared> {
    let root = UserRecord::root(String::new());
    Shared::new(
        Arc::new(MemoryUserStore::new(vec![root])),
        None,
        Settings {
            max_allowed_packet: 1 << 20,
            net_read_timeout: Duration::from_secs(1),
            wait_timeout: Duration::from_secs(2),
            ..Settings::default()
        },
    )
}

/// Reads packets from `input` (as a client would send them) until the
/// reader fails; returns how many were read.
pub async fn packets_async(input: &[u8]) -> usize {
    let mut io = PacketIo::new(input);
    let mut n = 0;
    while io.read_packet(1 << 20).await.is_ok() {
        io.reset_seq();
        n += 1;
    }
    n
}

/// [`packets_async`] on its own runtime (for the fuzz target).
pub fn packets(input: &[u8]) -> usize {
    runtime().block_on(packets_async(input))
}

/// Runs one server connection: the client reads the handshake, writes
/// `input`, closes its side and drains what the server says. Returns why
/// the server closed the connection.
pub async fn session_async(shared: Arc<Shared>, input: &[u8]) -> Closed {
    let (client, server) = tokio::io::duplex(64 * 1024);
    let backend: Arc<dyn Backend> = Arc::new(Interim::default());
    let server_task = tokio::spawn(async move {
        shared
            .serve_connection(server, "fuzz:1".into(), "127.0.0.1".into(), backend)
            .await
    });
    let (mut rd, mut wr) = tokio::io::split(client);
    let drain = tokio::spawn(async move {
        let mut sink = vec![0u8; 64 * 1024];
        while matches!(rd.read(&mut sink).await, Ok(n) if n > 0) {}
    });
    let _ = wr.write_all(input).await;
    let _ = wr.shutdown().await;
    let closed = match tokio::time::timeout(Duration::from_secs(20), server_task).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => panic!("the connection task panicked: {e}"),
        Err(_) => panic!("the server did not close the connection within 20s"),
    };
    drain.abort();
    closed
}

/// [`session_async`] on its own runtime (for the fuzz target).
pub fn session(input: &[u8]) -> Closed {
    runtime().block_on(session_async(test_server(), input))
}
