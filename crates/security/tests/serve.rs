//! The shared accept loop: counters by key exchange group and refusal
//! reason, and the cap on handshakes in flight that keeps idle connections
//! from locking a valid client out.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use tiox_security::serve::{accept_loop, Port};
use tiox_security::{ClientTls, Component, ListenerStats, Refusal, ServerTls};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn echo_port(pki: &Pki, max_handshakes: usize) -> (std::net::SocketAddr, Arc<ListenerStats>) {
    let (cert, key) = pki.server("tikv-server", &["127.0.0.1"]);
    let tls = ServerTls::new(pki.settings(Component::TikvServer, &cert, &key)).unwrap();
    let stats = Arc::new(ListenerStats::new("grpc"));
    let port = Port {
        handshake_timeout: Duration::from_secs(30),
        max_handshakes,
        ..Port::new("test port", Some(Arc::new(tls)), stats.clone())
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(accept_loop(
        listener,
        port,
        |mut stream, _identity| async move {
            let mut buf = [0u8; 64];
            while let Ok(n) = stream.read(&mut buf).await {
                if n == 0 || stream.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        },
    ));
    (addr, stats)
}

async fn eventually(what: &str, f: impl Fn() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < Duration::from_secs(10), "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_handshakes_by_group_and_refusals_by_reason() {
    let pki = Pki::new();
    let (addr, stats) = echo_port(&pki, 64).await;
    let (cert, key) = pki.client("tidb-server");
    let tls = ClientTls::new(pki.settings(Component::TikvCtl, &cert, &key)).unwrap();
    let mut s = tls.connect_tcp(&addr.to_string()).await.unwrap();
    roundtrip(&mut s).await.unwrap();
    // Plaintext on the TLS port.
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // No certificate.
    let config = raw_client(&pki.ca_path, None, false);
    assert!(raw_connect_and_roundtrip(addr, config).await.is_err());
    eventually("two refusals", || stats.failures_total() == 2).await;
    assert_eq!(stats.handshakes().get("X25519MLKEM768"), Some(&1));
    let f = stats.failures();
    assert_eq!(f.get(&Refusal::Plaintext), Some(&1), "{f:?}");
    assert_eq!(f.get(&Refusal::NoCertificate), Some(&1), "{f:?}");
    let text = tiox_security::stats::render(&[&stats]);
    assert!(
        text.contains("tiox_tls_handshakes_total{listener=\"grpc\",group=\"X25519MLKEM768\"} 1"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_beyond_the_cap_do_not_keep_a_valid_client_out() {
    let pki = Pki::new();
    // A cap of 8 with a 30 s handshake timeout: without eviction, 200 idle
    // connections would hold every slot for 30 s.
    let (addr, stats) = echo_port(&pki, 8).await;
    let mut idle = Vec::new();
    for _ in 0..200 {
        idle.push(TcpStream::connect(addr).await.unwrap());
    }
    eventually("idle handshakes evicted", || {
        stats
            .failures()
            .get(&Refusal::Overload)
            .copied()
            .unwrap_or(0)
            >= 192
    })
    .await;
    let (cert, key) = pki.client("tidb-server");
    let tls = ClientTls::new(pki.settings(Component::TikvCtl, &cert, &key)).unwrap();
    let start = Instant::now();
    let mut s = tls.connect_tcp(&addr.to_string()).await.unwrap();
    roundtrip(&mut s).await.unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    drop(idle);
}
