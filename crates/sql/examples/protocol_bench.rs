//! Protocol benchmark: queries per second through the real server code
//! (TCP on loopback, the interim executor), plaintext vs TLS, text protocol
//! (`SELECT 1`) vs prepared statements, 1 and 16 connections, and the
//! TLS/plaintext ratio measured in the same run. Not a test: it prints.
//!
//! ```sh
//! cargo run --release -p tiox-sql --example protocol_bench [-- SECONDS]
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tiox_sql::executor::Interim;
use tiox_sql::protocol::consts::{cap, com, ty};
use tiox_sql::protocol::packet::PacketIo;
use tiox_sql::users::{MemoryUserStore, UserRecord};
use tiox_sql::{Settings, Shared};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::rustls;

const CAPS: u32 = cap::PROTOCOL_41
    | cap::SECURE_CONNECTION
    | cap::PLUGIN_AUTH
    | cap::LONG_PASSWORD
    | cap::DEPRECATE_EOF;

fn response(ssl: bool) -> Vec<u8> {
    let caps = if ssl { CAPS | cap::SSL } else { CAPS };
    let mut p = caps.to_le_bytes().to_vec();
    p.extend_from_slice(&(16u32 << 20).to_le_bytes());
    p.push(45);
    p.extend_from_slice(&[0; 23]);
    p.extend_from_slice(b"root\0\0mysql_native_password\0");
    p
}

async fn read_result<S: AsyncRead + AsyncWrite + Unpin>(io: &mut PacketIo<S>) {
    let first = io.read_packet(1 << 20).await.expect("answer");
    if first[0] == 0 || first[0] == 0xff {
        return;
    }
    loop {
        let p = io.read_packet(1 << 20).await.expect("row");
        if p[0] == 0xfe && p.len() < 9 {
            return;
        }
    }
}

async fn run<S: AsyncRead + AsyncWrite + Unpin>(
    mut io: PacketIo<S>,
    prepared: bool,
    until: Instant,
    done: &AtomicU64,
) {
    io.send(&response(false)).await.unwrap();
    assert_eq!(io.read_packet(1 << 20).await.unwrap()[0], 0, "login");
    let mut exec = Vec::new();
    if prepared {
        io.reset_seq();
        io.send(b"\x16SELECT ?").await.unwrap();
        let ok = io.read_packet(1 << 20).await.unwrap();
        io.read_packet(1 << 20).await.unwrap(); // param
        io.read_packet(1 << 20).await.unwrap(); // column
        exec = vec![com::STMT_EXECUTE];
        exec.extend_from_slice(&ok[1..5]);
        exec.extend_from_slice(&[0, 1, 0, 0, 0, 0, 1, ty::LONGLONG, 0]);
        exec.extend_from_slice(&1i64.to_le_bytes());
    }
    while Instant::now() < until {
        io.reset_seq();
        if prepared {
            io.send(&exec).await.unwrap();
        } else {
            io.send(b"\x03SELECT 1").await.unwrap();
        }
        read_result(&mut io).await;
        done.fetch_add(1, Ordering::Relaxed);
    }
}

async fn client(
    addr: std::net::SocketAddr,
    tls: Option<Arc<rustls::ClientConfig>>,
    prepared: bool,
    until: Instant,
    done: Arc<AtomicU64>,
) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let mut io = PacketIo::new(tcp);
    io.read_packet(1 << 20).await.unwrap();
    match tls {
        None => run(io, prepared, until, &done).await,
        Some(config) => {
            let mut req = response(true);
            req.truncate(32);
            io.send(&req).await.unwrap();
            let (tcp, seq) = io.into_parts();
            let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
            let stream = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .unwrap();
            run(PacketIo::with_seq(stream, seq), prepared, until, &done).await
        }
    }
}

async fn measure(
    addr: std::net::SocketAddr,
    tls: Option<Arc<rustls::ClientConfig>>,
    prepared: bool,
    conns: usize,
    secs: u64,
) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let until = start + Duration::from_secs(secs);
    let tasks: Vec<_> = (0..conns)
        .map(|_| tokio::spawn(client(addr, tls.clone(), prepared, until, done.clone())))
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let secs: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let dir = tempfile::tempdir().unwrap();
    tiox_security::certgen::init_dir(
        dir.path(),
        &tiox_security::certgen::InitOptions {
            hosts: vec!["127.0.0.1".into()],
            days: 1,
            key_type: tiox_security::certgen::KeyType::EcdsaP256,
            force: false,
        },
    )
    .unwrap();
    let tls = tiox_sql::tls::MysqlTls::load(tiox_sql::tls::MysqlTlsFiles {
        ca: None,
        cert: dir.path().join("mysql/server.pem"),
        key: dir.path().join("mysql/server-key.pem"),
        crl: None,
        policy: tiox_security::TlsPolicy::default(),
    })
    .unwrap();
    let mut root = UserRecord::new("root", "%", "mysql_native_password", String::new());
    root.global.insert("ALL PRIVILEGES".into());
    let shared = Shared::new(
        Arc::new(MemoryUserStore::new(vec![root])),
        Some(Arc::new(tls)),
        Settings::default(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(tiox_sql::serve(
        listener,
        shared,
        Arc::new(Interim::default()),
    ));

    let mut roots = rustls::RootCertStore::empty();
    for c in tiox_security::inspect::read_pem_certs(&dir.path().join("mysql/ca.pem")).unwrap() {
        roots.add(c).unwrap();
    }
    let config = Arc::new(
        rustls::ClientConfig::builder_with_provider(tiox_security::material::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );
    println!(
        "{:<28} {:>12} {:>12} {:>9}",
        "workload", "plain qps", "TLS qps", "TLS/plain"
    );
    for prepared in [false, true] {
        for conns in [1, 16] {
            let plain = measure(addr, None, prepared, conns, secs).await;
            let tls = measure(addr, Some(config.clone()), prepared, conns, secs).await;
            let name = format!(
                "{} x{conns}",
                if prepared {
                    "prepared SELECT ?"
                } else {
                    "SELECT 1"
                }
            );
            println!("{name:<28} {plain:>12.0} {tls:>12.0} {:>9.3}", tls / plain);
        }
    }
}
