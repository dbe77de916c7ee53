//! The negative matrix: every cluster port of PD and TiKV refuses a
//! plaintext client, a TLS client without a certificate, a client
//! certificate from another CA and an expired client certificate from the
//! cluster CA, and each refusal leaves a log line naming the peer and the
//! reason.

#[path = "support/cluster.rs"]
mod cluster;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use cluster::{Certs, Cluster};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tiox_security::certgen::{CertAuthority, Profile, Spec, Validity};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Whether the server answered an HTTP request at all (it must not).
async fn answered(addr: &str, tls: Option<Arc<rustls::ClientConfig>>) -> bool {
    let Ok(tcp) = TcpStream::connect(addr).await else {
        return false;
    };
    let req = b"GET /status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let mut buf = Vec::new();
    let attempt = async {
        match tls {
            None => {
                let mut s = tcp;
                s.write_all(req).await?;
                s.read_to_end(&mut buf).await?;
            }
            Some(cfg) => {
                let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
                let mut s = tokio_rustls::TlsConnector::from(cfg)
                    .connect(name, tcp)
                    .await?;
                s.write_all(req).await?;
                s.read_to_end(&mut buf).await?;
            }
        }
        Ok::<(), std::io::Error>(())
    };
    let _ = tokio::time::timeout(Duration::from_secs(10), attempt).await;
    String::from_utf8_lossy(&buf).contains("HTTP/")
}

fn client_config(ca: &Path, cert: Option<(&Path, &Path)>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let b = rustls::ClientConfig::builder_with_provider(tiox_security::material::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut cfg = match cert {
        None => b.with_no_client_auth(),
        Some((c, k)) => b
            .with_client_auth_cert(
                CertificateDer::pem_file_iter(c)
                    .unwrap()
                    .map(|c| c.unwrap())
                    .collect(),
                PrivateKeyDer::from_pem_file(k).unwrap(),
            )
            .unwrap(),
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(cfg)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_cluster_port_refuses_plaintext_no_cert_foreign_ca_and_expired_and_logs_why() {
    let c = Cluster::start(true, 1).await;
    let certs = c.certs.as_ref().unwrap();
    let ca = Path::new(&certs.path("ca.pem")).to_path_buf();
    // A client certificate from another CA, and an expired one from ours.
    let other = tempfile::tempdir().unwrap();
    let foreign = Certs::make(other.path());
    let ours = CertAuthority::from_pem(
        &std::fs::read_to_string(certs.path("ca.pem")).unwrap(),
        &std::fs::read_to_string(certs.path("ca-key.pem")).unwrap(),
    )
    .unwrap();
    let now = time::OffsetDateTime::now_utc();
    let mut spec = Spec::new("expired-client", &[], Profile::Client);
    spec.validity = Validity::Window {
        not_before: now - time::Duration::days(10),
        not_after: now - time::Duration::days(1),
    };
    let expired = ours.issue(&spec).unwrap();
    let (ec, ek) = (
        other.path().join("expired.pem"),
        other.path().join("expired-key.pem"),
    );
    std::fs::write(&ec, &expired.cert_pem).unwrap();
    std::fs::write(&ek, expired.key_pem.expose()).unwrap();
    let (fc, fk) = (
        Path::new(&foreign.path("client.pem")).to_path_buf(),
        Path::new(&foreign.path("client-key.pem")).to_path_buf(),
    );
    let (gc, gk) = (
        Path::new(&certs.path("client.pem")).to_path_buf(),
        Path::new(&certs.path("client-key.pem")).to_path_buf(),
    );

    let ports = [
        ("PD client port", c.pd_addr.clone(), 0usize),
        ("TiKV gRPC port", c.kv_addrs[0].clone(), 1),
        ("TiKV status port", c.kv_status[0].clone(), 1),
    ];
    for (what, addr, proc_) in &ports {
        // The good client is served (the matrix is meaningful).
        assert!(
            answered(addr, Some(client_config(&ca, Some((&gc, &gk))))).await,
            "{what}: the cluster client was not served"
        );
        let cases: [(&str, Option<Arc<rustls::ClientConfig>>, &str); 4] = [
            ("plaintext", None, "did not speak TLS"),
            (
                "no client certificate",
                Some(client_config(&ca, None)),
                "presented no certificate",
            ),
            (
                "foreign CA",
                Some(client_config(&ca, Some((&fc, &fk)))),
                "unknown authority",
            ),
            (
                "expired certificate",
                Some(client_config(&ca, Some((&ec, &ek)))),
                "expired",
            ),
        ];
        for (case, cfg, reason) in cases {
            assert!(
                !answered(addr, cfg).await,
                "{what} served a client with {case}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
            let log = if *proc_ == 0 {
                c.pd.log_text()
            } else {
                c.kv[0].log_text()
            };
            assert!(
                log.lines().any(|l| l.contains("refused")
                    && l.contains(reason)
                    && l.contains("127.0.0.1:")),
                "{what}, {case}: no log line with the peer and \"{reason}\"\n{}",
                c.logs()
            );
        }
    }
}
