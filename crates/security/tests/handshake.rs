//! Mutual TLS over real sockets: who is let in, who is refused, and how
//! certificates rotate under a running server.

mod common;

use std::sync::Arc;

use common::*;
use tiox_security::certgen::{CertAuthority, KeyType, Profile, Spec, Validity};
use tiox_security::{ClientTls, Component, ServerTls};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn server(
    pki: &Pki,
    tweak: impl FnOnce(&mut tiox_security::SecurityConfig),
) -> (
    std::net::SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<Result<tiox_security::PeerIdentity, String>>,
) {
    let (cert, key) = pki.server("tikv-server", &["127.0.0.1", "localhost"]);
    let mut config = pki.config(&cert, &key);
    tweak(&mut config);
    let settings = config.validate(Component::TikvServer).unwrap().unwrap();
    spawn_echo(Arc::new(ServerTls::new(settings).unwrap())).await
}

fn client(pki: &Pki, name: &str) -> ClientTls {
    let (cert, key) = pki.client(name);
    ClientTls::new(pki.settings(Component::TikvCtl, &cert, &key)).unwrap()
}

#[tokio::test]
async fn accepts_client_with_certificate_from_cluster_ca() {
    let pki = Pki::new();
    let (addr, mut rx) = server(&pki, |_| {}).await;
    let tls = client(&pki, "tidb-server");
    let mut stream = tls.connect_tcp(&addr.to_string()).await.unwrap();
    roundtrip(&mut stream).await.unwrap();
    let peer = next_accept(&mut rx).await.unwrap();
    assert_eq!(peer.common_name(), Some("tidb-server"));
}

#[tokio::test]
async fn refuses_plaintext_client() {
    let pki = Pki::new();
    let (addr, mut rx) = server(&pki, |_| {}).await;
    let mut tcp = tcp(addr).await;
    tcp.write_all(b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tcp.read_to_end(&mut reply),
    )
    .await;
    assert!(
        !String::from_utf8_lossy(&reply).contains("HTTP/"),
        "a plaintext request got a plaintext answer: {reply:?}"
    );
    let err = next_accept(&mut rx).await.unwrap_err();
    assert!(err.contains("did not speak TLS"), "{err}");
    assert!(
        err.contains("127.0.0.1"),
        "the refusal names the peer: {err}"
    );
}

#[tokio::test]
async fn refuses_client_without_certificate() {
    let pki = Pki::new();
    let (addr, mut rx) = server(&pki, |_| {}).await;
    let config = raw_client(&pki.ca_path, None, false);
    assert!(raw_connect_and_roundtrip(addr, config).await.is_err());
    let err = next_accept(&mut rx).await.unwrap_err();
    assert!(err.contains("presented no certificate"), "{err}");
}

#[tokio::test]
async fn refuses_client_cert_from_other_ca() {
    let pki = Pki::new();
    let (addr, mut rx) = server(&pki, |_| {}).await;
    let other = Pki::new();
    let (cert, key) = other.client("intruder");
    // The intruder trusts our CA (it can read our public ca.pem) but its own
    // certificate comes from its own CA.
    let config = raw_client(&pki.ca_path, Some((&cert, &key)), false);
    assert!(raw_connect_and_roundtrip(addr, config).await.is_err());
    let err = next_accept(&mut rx).await.unwrap_err();
    assert!(err.contains("unknown authority"), "{err}");
}

#[tokio::test]
async fn refuses_expired_client_cert() {
    let pki = Pki::new();
    let (addr, mut rx) = server(&pki, |_| {}).await;
    let now = time::OffsetDateTime::now_utc();
    let mut spec = Spec::new("old-client", &[], Profile::Client);
    spec.validity = Validity::Window {
        not_before: now - time::Duration::days(10),
        not_after: now - time::Duration::days(1),
    };
    let (cert, key) = pki.write("old-client", &pki.issue(&spec));
    let config = raw_client(&pki.ca_path, Some((&cert, &key)), false);
    assert!(raw_connect_and_roundtrip(addr, config).await.is_err());
    let err = next_accept(&mut rx).await.unwrap_err();
    assert!(err.contains("expired"), "{err}");
}

#[tokio::test]
async fn refuses_cn_outside_allow_list() {
    let pki = Pki::new();
    let (addr, mut rx) = server(&pki, |c| {
        c.cert_allowed_cn = vec!["tidb-server".into(), "pd-server".into()];
    })
    .await;
    let intruder = client(&pki, "intruder");
    let outcome = async {
        let mut s = intruder.connect_tcp(&addr.to_string()).await?;
        roundtrip(&mut s)
            .await
            .map_err(|e| tiox_security::Error::Io {
                context: "roundtrip".into(),
                source: e,
            })
    }
    .await;
    assert!(outcome.is_err());
    let err = next_accept(&mut rx).await.unwrap_err();
    assert!(err.contains("\"intruder\""), "{err}");
    assert!(err.contains("cert-allowed-cn"), "{err}");

    // A listed CN still gets in.
    let allowed = client(&pki, "tidb-server");
    let mut s = allowed.connect_tcp(&addr.to_string()).await.unwrap();
    roundtrip(&mut s).await.unwrap();
    assert!(next_accept(&mut rx).await.is_ok());
}

#[tokio::test]
async fn refuses_san_outside_allow_list() {
    let pki = Pki::new();
    let (addr, mut rx) = server(&pki, |c| {
        c.cert_allowed_san = vec!["DNS:tikv-1.cluster.local".into(), "IP:10.0.0.7".into()];
    })
    .await;
    let (cert, key) = pki.write(
        "stranger",
        &pki.issue(&Spec::new(
            "tikv-server",
            &["tikv-9.elsewhere"],
            Profile::Server,
        )),
    );
    let stranger = ClientTls::new(pki.settings(Component::TikvServer, &cert, &key)).unwrap();
    let outcome = async {
        let mut s = stranger.connect_tcp(&addr.to_string()).await.ok()?;
        roundtrip(&mut s).await.ok()
    }
    .await;
    assert!(outcome.is_none());
    let err = next_accept(&mut rx).await.unwrap_err();
    assert!(err.contains("DNS:tikv-9.elsewhere"), "{err}");
    assert!(err.contains("cert-allowed-san"), "{err}");

    let (cert, key) = pki.write(
        "peer",
        &pki.issue(&Spec::new(
            "tikv-server",
            &["tikv-1.cluster.local"],
            Profile::Server,
        )),
    );
    let peer = ClientTls::new(pki.settings(Component::TikvServer, &cert, &key)).unwrap();
    let mut s = peer.connect_tcp(&addr.to_string()).await.unwrap();
    roundtrip(&mut s).await.unwrap();
    assert!(next_accept(&mut rx).await.is_ok());
}

#[tokio::test]
async fn client_refuses_server_whose_san_does_not_cover_dialled_address() {
    let pki = Pki::new();
    let (cert, key) = pki.server("pd-server", &["10.1.2.3", "pd-1.example"]);
    let settings = pki.settings(Component::PdServer, &cert, &key);
    let (addr, _rx) = spawn_echo(Arc::new(ServerTls::new(settings).unwrap())).await;
    let err = client(&pki, "client")
        .connect_tcp(&addr.to_string())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains(&addr.to_string()), "names the address: {err}");
    assert!(err.contains("does not cover \"127.0.0.1\""), "{err}");
    assert!(
        err.contains("IP:10.1.2.3") || err.contains("10.1.2.3"),
        "lists the SANs: {err}"
    );
}

#[tokio::test]
async fn client_refuses_server_from_other_ca() {
    let pki = Pki::new();
    let other = Pki::new();
    let (cert, key) = other.server("pd-server", &["127.0.0.1"]);
    let settings = other.settings(Component::PdServer, &cert, &key);
    let (addr, _rx) = spawn_echo(Arc::new(ServerTls::new(settings).unwrap())).await;
    let err = client(&pki, "client")
        .connect_tcp(&addr.to_string())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown authority"), "{err}");
}

#[tokio::test]
async fn server_offers_h2_and_http11_alpn() {
    let pki = Pki::new();
    let (addr, mut rx) = server(&pki, |_| {}).await;
    let (cert, key) = pki.client("grpc-client");
    let tls = ClientTls::with_alpn(
        pki.settings(Component::TikvCtl, &cert, &key),
        vec![b"h2".to_vec()],
    )
    .unwrap();
    let mut s = tls.connect_tcp(&addr.to_string()).await.unwrap();
    roundtrip(&mut s).await.unwrap();
    assert_eq!(
        next_accept(&mut rx).await.unwrap().alpn.as_deref(),
        Some(&b"h2"[..])
    );
}

#[tokio::test]
async fn tls13_minimum_refuses_tls12_client() {
    let pki = Pki::new();
    let (addr, mut rx) = server(&pki, |c| {
        c.tls_min_version = tiox_security::TlsVersion::V1_3
    })
    .await;
    let (cert, key) = pki.client("old-tls");
    let config = raw_client(&pki.ca_path, Some((&cert, &key)), true);
    assert!(raw_connect_and_roundtrip(addr, config).await.is_err());
    let err = next_accept(&mut rx).await.unwrap_err();
    assert!(
        err.contains("TLS 1.2 and 1.3") || err.contains("version"),
        "{err}"
    );
}

#[tokio::test]
async fn rotated_certificate_is_served_to_next_handshake_while_open_connection_keeps_working() {
    let pki = Pki::new();
    let (cert, key) = pki.server("tikv-server", &["127.0.0.1"]);
    let old_fp = file_fingerprint(&cert);
    let settings = pki.settings(Component::TikvServer, &cert, &key);
    let (addr, _rx) = spawn_echo(Arc::new(ServerTls::new(settings).unwrap())).await;
    let tls = client(&pki, "client");

    let mut first = tls.connect_tcp(&addr.to_string()).await.unwrap();
    roundtrip(&mut first).await.unwrap();
    assert_eq!(server_fingerprint(&first), old_fp);

    // Rotate: a new certificate and key from the same CA, written over the
    // old files (key first, as a careful operator would; either order works).
    let new = pki.issue(&Spec::new("tikv-server", &["127.0.0.1"], Profile::Server));
    replace_file(&key, new.key_pem.expose().as_bytes());
    replace_file(&cert, new.cert_pem.as_bytes());
    let new_fp = file_fingerprint(&cert);
    assert_ne!(old_fp, new_fp);

    let mut second = tls.connect_tcp(&addr.to_string()).await.unwrap();
    roundtrip(&mut second).await.unwrap();
    assert_eq!(
        server_fingerprint(&second),
        new_fp,
        "the next handshake serves the new certificate"
    );

    roundtrip(&mut first)
        .await
        .expect("the connection opened before the rotation keeps working");
}

#[tokio::test]
async fn corrupt_replacement_file_keeps_old_certificate_in_service() {
    let pki = Pki::new();
    let (cert, key) = pki.server("tikv-server", &["127.0.0.1"]);
    let old_fp = file_fingerprint(&cert);
    let settings = pki.settings(Component::TikvServer, &cert, &key);
    let (addr, _rx) = spawn_echo(Arc::new(ServerTls::new(settings).unwrap())).await;
    let tls = client(&pki, "client");

    replace_file(
        &cert,
        b"-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n",
    );
    let mut s = tls.connect_tcp(&addr.to_string()).await.unwrap();
    roundtrip(&mut s).await.unwrap();
    assert_eq!(server_fingerprint(&s), old_fp);

    // A key that does not match is just as unusable.
    let other = pki.issue(&Spec::new("x", &["127.0.0.1"], Profile::Server));
    replace_file(&key, other.key_pem.expose().as_bytes());
    let mut s = tls.connect_tcp(&addr.to_string()).await.unwrap();
    roundtrip(&mut s).await.unwrap();
    assert_eq!(server_fingerprint(&s), old_fp);
}

#[tokio::test]
async fn rotated_ca_bundle_admits_clients_of_the_new_ca() {
    let pki = Pki::new();
    let (addr, mut rx) = server(&pki, |_| {}).await;
    let new_ca = CertAuthority::generate("new CA", Validity::Days(30), KeyType::EcdsaP384).unwrap();
    let issued = new_ca
        .issue(&Spec::new("new-client", &[], Profile::Client))
        .unwrap();
    let (cert, key) = pki.write("new-client", &issued);

    let config = raw_client(&pki.ca_path, Some((&cert, &key)), false);
    assert!(raw_connect_and_roundtrip(addr, config.clone())
        .await
        .is_err());
    assert!(next_accept(&mut rx).await.is_err());

    // The operator appends the new CA to the bundle (step one of a CA rotation).
    let bundle = format!("{}{}", pki.ca.cert_pem, new_ca.cert_pem);
    replace_file(&pki.ca_path, bundle.as_bytes());
    raw_connect_and_roundtrip(addr, config).await.unwrap();
    assert_eq!(
        next_accept(&mut rx).await.unwrap().common_name(),
        Some("new-client")
    );
}

/// A raw client config offering only the given key exchange groups.
fn client_with_groups(
    pki: &Pki,
    groups: Vec<&'static dyn rustls::crypto::SupportedKxGroup>,
) -> Arc<rustls::ClientConfig> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let (cert, key) = pki.client("kx-client");
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(&pki.ca_path).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let chain: Vec<_> = CertificateDer::pem_file_iter(&cert)
        .unwrap()
        .map(|c| c.unwrap())
        .collect();
    let mut provider = (*tiox_security::material::provider()).clone();
    provider.kx_groups = groups;
    Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(provider))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, PrivateKeyDer::from_pem_file(&key).unwrap())
            .unwrap(),
    )
}

#[tokio::test]
async fn tiox_client_and_server_negotiate_post_quantum_hybrid_key_exchange() {
    let pki = Pki::new();
    let (addr, mut rx) = server(&pki, |_| {}).await;
    let tls = client(&pki, "tidb-server");
    let mut stream = tls.connect_tcp(&addr.to_string()).await.unwrap();
    roundtrip(&mut stream).await.unwrap();
    let (_, conn) = stream.get_ref();
    let ours = tiox_security::Negotiated::of(conn);
    assert_eq!(ours.kx_group.as_deref(), Some("X25519MLKEM768"));
    assert_eq!(ours.version, "TLSv1.3");
    let peer = next_accept(&mut rx).await.unwrap();
    let theirs = peer.tls.unwrap();
    assert_eq!(theirs.kx_group.as_deref(), Some("X25519MLKEM768"));
}

#[tokio::test]
async fn client_without_ml_kem_still_connects_with_x25519_or_p256() {
    use rustls::crypto::aws_lc_rs::kx_group;
    let pki = Pki::new();
    let (addr, mut rx) = server(&pki, |_| {}).await;
    for (group, name) in [
        (kx_group::X25519, "X25519"),
        (kx_group::SECP256R1, "secp256r1"),
    ] {
        let config = client_with_groups(&pki, vec![group]);
        raw_connect_and_roundtrip(addr, config).await.unwrap();
        let peer = next_accept(&mut rx).await.unwrap();
        assert_eq!(peer.tls.unwrap().kx_group.as_deref(), Some(name));
    }
}

#[tokio::test]
async fn cipher_suite_list_limits_what_the_server_negotiates() {
    let pki = Pki::new();
    let (addr, mut rx) = server(&pki, |c| {
        c.cipher_suites = tiox_security::CipherSuites::parse(&[
            "TLS_CHACHA20_POLY1305_SHA256".to_string(),
            "ECDHE-ECDSA-CHACHA20-POLY1305".to_string(),
        ])
        .unwrap();
    })
    .await;
    let (cert, key) = pki.client("suite-client");
    for tls12 in [false, true] {
        let config = raw_client(&pki.ca_path, Some((&cert, &key)), tls12);
        raw_connect_and_roundtrip(addr, config).await.unwrap();
        let n = next_accept(&mut rx).await.unwrap().tls.unwrap();
        let want = if tls12 {
            "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"
        } else {
            "TLS_CHACHA20_POLY1305_SHA256"
        };
        assert_eq!(n.cipher, want);
    }
}

/// Writes a CRL from the test CA naming `certs`, replacing the file.
fn write_crl(pki: &Pki, certs: &[&std::path::Path]) -> std::path::PathBuf {
    use rustls_pki_types::pem::PemObject;
    let ders: Vec<_> = certs
        .iter()
        .map(|p| rustls_pki_types::CertificateDer::from_pem_file(p).unwrap())
        .collect();
    let path = pki.path("crl.pem");
    let pem = pki.ca.revoke(&ders, None, 7).unwrap();
    let tmp = pki.path("crl.tmp");
    std::fs::write(&tmp, pem).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    path
}

#[tokio::test]
async fn revoked_client_certificate_is_refused_naming_its_serial() {
    let pki = Pki::new();
    let (bad_cert, bad_key) = pki.client("leaked");
    let crl = write_crl(&pki, &[&bad_cert]);
    let (addr, mut rx) = server(&pki, |c| c.crl_path = crl.display().to_string()).await;
    // A certificate not on the list still gets in.
    let ok = client(&pki, "tidb-server");
    roundtrip(&mut ok.connect_tcp(&addr.to_string()).await.unwrap())
        .await
        .unwrap();
    next_accept(&mut rx).await.unwrap();
    let config = raw_client(&pki.ca_path, Some((&bad_cert, &bad_key)), false);
    assert!(raw_connect_and_roundtrip(addr, config).await.is_err());
    let err = next_accept(&mut rx).await.unwrap_err();
    let der: rustls_pki_types::CertificateDer<'static> =
        rustls_pki_types::pem::PemObject::from_pem_file(&bad_cert).unwrap();
    let serial = tiox_security::CertInfo::from_der(&der).unwrap().serial;
    assert!(err.contains(&format!("serial {serial}")), "{err}");
    assert!(err.contains("revoked"), "{err}");
}

#[tokio::test]
async fn crl_replaced_under_a_running_server_refuses_the_next_handshake() {
    let pki = Pki::new();
    let (cert, key) = pki.client("soon-revoked");
    let (other, _) = pki.client("someone-else");
    let crl = write_crl(&pki, &[&other]);
    let (addr, mut rx) = server(&pki, |c| c.crl_path = crl.display().to_string()).await;
    let config = raw_client(&pki.ca_path, Some((&cert, &key)), false);
    raw_connect_and_roundtrip(addr, config.clone())
        .await
        .unwrap();
    next_accept(&mut rx).await.unwrap();
    // Revoke it; the list is reloaded like the certificates. The session
    // cache belongs to the config built from the old list, so the client
    // cannot resume its way past the new one.
    write_crl(&pki, &[&other, &cert]);
    assert!(raw_connect_and_roundtrip(addr, config).await.is_err());
    assert!(next_accept(&mut rx).await.unwrap_err().contains("revoked"));
}

#[tokio::test]
async fn client_with_crl_refuses_a_revoked_server_certificate() {
    let pki = Pki::new();
    let (cert, key) = pki.server("tikv-server", &["127.0.0.1"]);
    let settings = pki.settings(Component::TikvServer, &cert, &key);
    let (addr, _rx) = spawn_echo(Arc::new(ServerTls::new(settings).unwrap())).await;
    let crl = write_crl(&pki, &[&cert]);
    let (ccert, ckey) = pki.client("pd-ctl");
    let mut cfg = pki.config(&ccert, &ckey);
    cfg.crl_path = crl.display().to_string();
    let tls = ClientTls::new(cfg.validate(Component::PdCtl).unwrap().unwrap()).unwrap();
    let err = tls.connect_tcp(&addr.to_string()).await.unwrap_err();
    assert_eq!(
        err.refusal(),
        Some(tiox_security::Refusal::Revoked),
        "{err}"
    );
    assert!(err.to_string().contains("serial"), "{err}");
}

#[test]
fn own_certificate_on_the_crl_is_a_startup_error() {
    let pki = Pki::new();
    let (cert, key) = pki.server("pd-server", &["127.0.0.1"]);
    let crl = write_crl(&pki, &[&cert]);
    let mut cfg = pki.config(&cert, &key);
    cfg.crl_path = crl.display().to_string();
    let err = cfg.validate(Component::PdServer).unwrap_err().to_string();
    assert!(err.contains("[security] cert-path"), "{err}");
    assert!(
        err.contains("revoked by the list in [security] crl-path"),
        "{err}"
    );
}
