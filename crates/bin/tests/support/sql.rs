//! SQL on a launched cluster, for the end-to-end tests: `tidb-server
//! --store=tikv` started on a [`Cluster`] (its `cluster-ssl-*` certificate
//! and, on a TLS cluster, TLS on the MySQL port with the `mysql/` CA that
//! `tiox cert init` writes), `mysql_async` options that insist on TLS, a
//! probe that reads the certificate the MySQL port serves, and the MySQL
//! error codes a workload may retry.
//!
//! A test using it declares `#[path = "support/cluster.rs"] mod cluster;`,
//! `mod tidb_common;` and `#[path = "support/sql.rs"] mod sql;`.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mysql_async::{Conn, Opts, OptsBuilder, SslOpts};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::cluster::Cluster;
use super::tidb_common::TidbServer;

/// Errors a transaction may meet without anything being wrong: it was
/// rolled back and can be run again. 1213 deadlock, 1205 lock wait
/// timeout, 9007 write conflict, 9005 the cluster could not serve the
/// request (a store is down, the region is electing a leader).
pub const RETRYABLE: [u16; 4] = [1213, 1205, 9007, 9005];

/// `--store=tikv --path=PD` plus, on a TLS cluster, the `cluster-ssl-*`
/// flags with the cluster's `tidb-server` certificate.
pub fn cluster_args(c: &Cluster) -> Vec<String> {
    let mut args = vec!["--store=tikv".into(), format!("--path={}", c.pd_addr)];
    if let Some(certs) = &c.certs {
        args.extend([
            format!("--cluster-ssl-ca={}", certs.path("ca.pem")),
            format!("--cluster-ssl-cert={}", certs.path("tidb-server.pem")),
            format!("--cluster-ssl-key={}", certs.path("tidb-server-key.pem")),
        ]);
    } else {
        // A plaintext test cluster, on purpose.
        args.push("--insecure".into());
    }
    args
}

/// Starts tidb-server on `c` (data in `work`), initializing the accounts
/// (root without a password). On a TLS cluster the MySQL port serves
/// `mysql/server.pem` and verifies client certificates against
/// `mysql/ca.pem`.
pub fn start_tidb(c: &Cluster, work: &Path) -> TidbServer {
    let mut args = cluster_args(c);
    args.push("--initialize-insecure".into());
    if let Some(certs) = &c.certs {
        args.extend([
            format!("--ssl-ca={}", certs.path("mysql/ca.pem")),
            format!("--ssl-cert={}", certs.path("mysql/server.pem")),
            format!("--ssl-key={}", certs.path("mysql/server-key.pem")),
        ]);
    }
    TidbServer::start(work, &args)
}

/// Options for root on `s`; on a TLS cluster the connection must be TLS
/// with the server verified against `mysql/ca.pem`.
pub fn opts(c: &Cluster, s: &TidbServer) -> Opts {
    let mut o = OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(s.port)
        .prefer_socket(false)
        .user(Some("root"));
    if let Some(certs) = &c.certs {
        o = o.ssl_opts(Some(SslOpts::default().with_root_certs(vec![
            PathBuf::from(certs.path("mysql/ca.pem")).into(),
        ])));
    }
    o.into()
}

/// Connects as root, retrying for a while (the server may still be
/// loading the schema).
pub async fn connect(c: &Cluster, s: &TidbServer) -> Conn {
    connect_opts(&opts(c, s), s).await
}

/// Like [`connect`], with options made before.
pub async fn connect_opts(o: &Opts, s: &TidbServer) -> Conn {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match Conn::new(o.clone()).await {
            Ok(conn) => return conn,
            Err(e) if Instant::now() < deadline => {
                eprintln!("connect to tidb-server: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            Err(e) => panic!("connect to tidb-server: {e}\n{}", s.log()),
        }
    }
}

/// The MySQL error code of a server error, None for anything else (I/O,
/// driver).
pub fn error_code(e: &mysql_async::Error) -> Option<u16> {
    match e {
        mysql_async::Error::Server(s) => Some(s.code),
        _ => None,
    }
}

/// The SHA-256 fingerprint (as `tiox cert inspect` prints it) of the
/// certificate that the MySQL port on 127.0.0.1:`port` serves to a new
/// connection: reads the server greeting, sends an SSLRequest and completes
/// a TLS handshake verified against the CA in `ca_pem`.
pub async fn mysql_served_fp(ca_pem: &str, port: u16) -> String {
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut header = [0u8; 4];
    tcp.read_exact(&mut header).await.unwrap();
    let len = u32::from_le_bytes([header[0], header[1], header[2], 0]) as usize;
    let mut greeting = vec![0u8; len];
    tcp.read_exact(&mut greeting).await.unwrap();
    // SSLRequest: CLIENT_PROTOCOL_41 | CLIENT_SSL | CLIENT_SECURE_CONNECTION,
    // max packet, utf8mb4, 23 zero bytes; sequence id 1.
    let caps: u32 = 0x0200 | 0x0800 | 0x8000;
    let mut packet = vec![32, 0, 0, 1];
    packet.extend_from_slice(&caps.to_le_bytes());
    packet.extend_from_slice(&(16u32 << 20).to_le_bytes());
    packet.push(45);
    packet.extend_from_slice(&[0; 23]);
    tcp.write_all(&packet).await.unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for cert in tiox_security::inspect::read_pem_certs(Path::new(ca_pem)).unwrap() {
        roots.add(cert).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(tiox_security::material::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap();
    tiox_security::inspect::fingerprint(tls.get_ref().1.peer_certificates().unwrap()[0].as_ref())
}
