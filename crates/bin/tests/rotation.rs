//! Zero-downtime certificate rotation: while a client writes and reads
//! continuously, the certificates of PD, TiKV and the client itself are
//! replaced on disk with new ones from the same CA. No operation fails, and
//! every new handshake presents the new certificates.

#[path = "support/cluster.rs"]
mod cluster;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cluster::Cluster;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use tiox_client::ClusterClient;
use tiox_security::certgen::{CertAuthority, Profile, Spec};
use tiox_security::inspect::fingerprint;
use tiox_security::{ClientTls, Component, SecurityConfig};

fn replace(path: &Path, contents: &[u8]) {
    let tmp = path.with_extension("rotating");
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn file_fp(path: &str) -> String {
    fingerprint(
        CertificateDer::pem_file_iter(path)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .as_ref(),
    )
}

async fn served_fp(tls: &ClientTls, addr: &str) -> String {
    let s = tls.connect_tcp(addr).await.unwrap();
    fingerprint(s.get_ref().1.peer_certificates().unwrap()[0].as_ref())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_every_certificate_under_load_fails_no_operation() {
    let c = Cluster::start(true, 1).await;
    let certs = c.certs.as_ref().unwrap();
    let settings = SecurityConfig::from_paths(
        &certs.path("ca.pem"),
        &certs.path("client.pem"),
        &certs.path("client-key.pem"),
    )
    .validate(Component::Tiox)
    .unwrap();
    let client = ClusterClient::connect(&[format!("https://{}", c.pd_addr)], settings)
        .await
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let load = {
        let (client, stop, ok, failed) = (client.clone(), stop.clone(), ok.clone(), failed.clone());
        tokio::spawn(async move {
            let raw = client.raw();
            let txn = client.txn();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("rot/{i}").into_bytes();
                let r = async {
                    raw.put(&key, b"v").await?;
                    let mut t = txn.begin().await?;
                    t.put(format!("rot-t/{i}").into_bytes(), b"v".to_vec());
                    t.commit().await?;
                    raw.get(&key).await
                }
                .await;
                match r {
                    Ok(Some(_)) => ok.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
                i += 1;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(700)).await;

    // Rotate: new PD, TiKV and client certificates from the same CA.
    let ca = CertAuthority::from_pem(
        &std::fs::read_to_string(certs.path("ca.pem")).unwrap(),
        &std::fs::read_to_string(certs.path("ca-key.pem")).unwrap(),
    )
    .unwrap();
    for (name, profile) in [
        ("pd-server", Profile::Server),
        ("tikv-server", Profile::Server),
        ("client", Profile::Client),
    ] {
        let hosts: &[&str] = if profile == Profile::Server {
            &["127.0.0.1", "localhost"]
        } else {
            &[]
        };
        let issued = ca.issue(&Spec::new(name, hosts, profile)).unwrap();
        let cert = certs.path(&format!("{name}.pem"));
        let key = certs.path(&format!("{name}-key.pem"));
        let before = file_fp(&cert);
        replace(Path::new(&key), issued.key_pem.expose().as_bytes());
        replace(Path::new(&cert), issued.cert_pem.as_bytes());
        assert_ne!(before, file_fp(&cert));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();

    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert!(ok > 0, "the load ran");
    assert_eq!(
        failed,
        0,
        "{failed} of {} operations failed during the rotation\n{}",
        ok + failed,
        c.logs()
    );

    // New handshakes present the new certificates.
    let probe = certs.client_tls();
    assert_eq!(
        served_fp(&probe, &c.pd_addr).await,
        file_fp(&certs.path("pd-server.pem")),
        "PD serves its new certificate"
    );
    assert_eq!(
        served_fp(&probe, &c.kv_addrs[0]).await,
        file_fp(&certs.path("tikv-server.pem")),
        "TiKV serves its new certificate"
    );
    eprintln!("rotation: {ok} operations (raw put + 2PC transaction + read) during the rotation, none failed");
}
