//! Interoperability: the real `tikv-client` crate (0.4: tonic 0.10, rustls
//! 0.21) talks to our PD over mutual TLS: it discovers the members and the
//! leader with GetMembers, then gets timestamps over the Tso stream. A PD
//! server runs in-process on a port chosen free at run time, with
//! certificates made for the test.

use std::net::TcpListener;
use std::path::Path;

use tikv_client::{Config, TimestampExt, TransactionClient};
use tiox_pd::config::PdConfig;
use tiox_pd::server::Server;
use tiox_security::certgen::{CertAuthority, KeyType, Profile, Spec, Validity};
use tiox_security::SecurityConfig;

fn write_pki(dir: &Path) {
    let ca =
        CertAuthority::generate("tiox test CA", Validity::Days(2), KeyType::EcdsaP256).unwrap();
    std::fs::write(dir.join("ca.pem"), &ca.cert_pem).unwrap();
    for (name, hosts, profile) in [
        ("pd", vec!["127.0.0.1", "localhost"], Profile::Server),
        ("client", vec![], Profile::Client),
    ] {
        let issued = ca.issue(&Spec::new(name, &hosts, profile)).unwrap();
        std::fs::write(dir.join(format!("{name}.pem")), &issued.cert_pem).unwrap();
        std::fs::write(dir.join(format!("{name}-key.pem")), issued.key_pem.expose()).unwrap();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start_tls_pd(dir: &Path) -> u16 {
    let port = free_port();
    let p = |n: &str| dir.join(n).display().to_string();
    let config = PdConfig {
        name: "pd1".into(),
        data_dir: p("data"),
        client_urls: format!("https://127.0.0.1:{port}"),
        peer_urls: format!("https://127.0.0.1:{}", free_port()),
        security: SecurityConfig::from_paths(&p("ca.pem"), &p("pd.pem"), &p("pd-key.pem")),
        ..Default::default()
    };
    let server = Server::bind(config.validate().unwrap()).await.unwrap();
    tokio::spawn(server.run());
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tikv_client_discovers_members_and_gets_increasing_timestamps_over_mutual_tls() {
    let dir = tempfile::tempdir().unwrap();
    write_pki(dir.path());
    let port = start_tls_pd(dir.path()).await;
    let p = |n: &str| dir.path().join(n);
    let config = Config::default().with_security(p("ca.pem"), p("client.pem"), p("client-key.pem"));
    let client = TransactionClient::new_with_config(vec![format!("127.0.0.1:{port}")], config)
        .await
        .expect("tikv-client connects to PD over mutual TLS");
    let mut last = 0;
    for _ in 0..100 {
        let ts = client.current_timestamp().await.unwrap().version();
        assert!(ts > last, "{ts} after {last}");
        last = ts;
    }
    // Concurrent callers are batched by the client into one request with
    // count > 1; every caller still gets a distinct timestamp.
    let many = futures::future::join_all((0..64).map(|_| client.current_timestamp())).await;
    let mut versions: Vec<u64> = many.into_iter().map(|t| t.unwrap().version()).collect();
    versions.sort_unstable();
    versions.dedup();
    assert_eq!(versions.len(), 64);
    assert!(versions[0] > last);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tikv_client_without_tls_is_refused_by_a_tls_pd() {
    let dir = tempfile::tempdir().unwrap();
    write_pki(dir.path());
    let port = start_tls_pd(dir.path()).await;
    let config = Config::default().with_timeout(std::time::Duration::from_secs(3));
    let result =
        TransactionClient::new_with_config(vec![format!("127.0.0.1:{port}")], config).await;
    assert!(result.is_err(), "a plaintext tikv-client reached a TLS PD");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tikv_client_finds_the_leader_of_a_three_pd_raft_cluster_over_mutual_tls() {
    let dir = tempfile::tempdir().unwrap();
    write_pki(dir.path());
    let p = |n: &str| dir.path().join(n).display().to_string();
    let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
    let initial = ports
        .iter()
        .enumerate()
        .map(|(i, (_, peer))| format!("pd{}=https://127.0.0.1:{peer}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    for (i, (client, peer)) in ports.iter().enumerate() {
        let config = PdConfig {
            name: format!("pd{}", i + 1),
            data_dir: p(&format!("data{i}")),
            client_urls: format!("https://127.0.0.1:{client}"),
            peer_urls: format!("https://127.0.0.1:{peer}"),
            initial_cluster: initial.clone(),
            security: SecurityConfig::from_paths(&p("ca.pem"), &p("pd.pem"), &p("pd-key.pem")),
            ..Default::default()
        };
        let server = Server::bind(config.validate().unwrap()).await.unwrap();
        tokio::spawn(server.run());
    }
    let endpoints: Vec<String> = ports
        .iter()
        .map(|(c, _)| format!("127.0.0.1:{c}"))
        .collect();
    let pp = |n: &str| dir.path().join(n);
    // The cluster needs a moment to elect a leader; the client retries.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let client = loop {
        let config = Config::default()
            .with_security(pp("ca.pem"), pp("client.pem"), pp("client-key.pem"))
            .with_timeout(std::time::Duration::from_secs(3));
        match TransactionClient::new_with_config(endpoints.clone(), config).await {
            Ok(c) => match c.current_timestamp().await {
                Ok(_) => break c,
                Err(e) if std::time::Instant::now() < deadline => {
                    eprintln!("not yet: {e}");
                }
                Err(e) => panic!("no timestamp from the 3-PD cluster: {e}"),
            },
            Err(e) if std::time::Instant::now() < deadline => eprintln!("not yet: {e}"),
            Err(e) => panic!("tikv-client cannot connect to the 3-PD cluster: {e}"),
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    };
    let mut last = 0;
    for _ in 0..50 {
        let ts = client.current_timestamp().await.unwrap().version();
        assert!(ts > last);
        last = ts;
    }
}
