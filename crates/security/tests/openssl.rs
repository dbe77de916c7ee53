//! Certificates made by the `openssl` command line, the way operators make
//! them (RSA and ECDSA, PKCS#1, PKCS#8 and SEC1 keys, an intermediate CA),
//! are accepted by validation and work in a mutual-TLS handshake.
//!
//! Needs the `openssl` binary: `.ci/run` installs it. Outside CI, a machine
//! without it skips these tests with a loud message; under CI (CI=true) a
//! missing openssl fails them.

mod common;
#[path = "common/openssl_cli.rs"]
mod openssl_cli;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::*;
use openssl_cli::{have_openssl, openssl};
use tiox_security::certgen::{CertAuthority, Profile, Spec};
use tiox_security::{ClientTls, Component, SecurityConfig, ServerTls};

/// How to make a key with openssl.
#[derive(Clone, Copy)]
enum Key {
    /// `genrsa -traditional`: "RSA PRIVATE KEY".
    RsaPkcs1(u32),
    /// `genpkey RSA`: "PRIVATE KEY".
    RsaPkcs8(u32),
    /// `ecparam -genkey`: "EC PARAMETERS" + "EC PRIVATE KEY".
    EcSec1(&'static str),
    /// `genpkey EC`: "PRIVATE KEY".
    EcPkcs8(&'static str),
    /// `genpkey ed25519`.
    Ed25519,
}

fn make_key(dir: &Path, name: &str, key: Key) -> PathBuf {
    let out = format!("{name}-key.pem");
    match key {
        Key::RsaPkcs1(bits) => openssl(
            dir,
            &["genrsa", "-traditional", "-out", &out, &bits.to_string()],
        ),
        Key::RsaPkcs8(bits) => openssl(
            dir,
            &[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                &format!("rsa_keygen_bits:{bits}"),
                "-out",
                &out,
            ],
        ),
        Key::EcSec1(curve) => openssl(dir, &["ecparam", "-name", curve, "-genkey", "-out", &out]),
        Key::EcPkcs8(curve) => openssl(
            dir,
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                &format!("ec_paramgen_curve:{curve}"),
                "-out",
                &out,
            ],
        ),
        Key::Ed25519 => openssl(dir, &["genpkey", "-algorithm", "ed25519", "-out", &out]),
    }
    dir.join(out)
}

/// A CA (self-signed, CA:TRUE), as in the usual openssl walkthroughs.
fn make_ca(dir: &Path, name: &str, key: Key) -> PathBuf {
    make_key(dir, name, key);
    std::fs::write(
        dir.join(format!("{name}.ext")),
        "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign,digitalSignature\nsubjectKeyIdentifier=hash\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            &format!("{name}-key.pem"),
            "-days",
            "365",
            "-subj",
            &format!("/O=openssl test/CN={name}"),
            "-out",
            &format!("{name}.pem"),
            "-extensions",
            "v3_ca",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
        ],
    );
    dir.join(format!("{name}.pem"))
}

/// A leaf or intermediate signed by `ca`, with the given extensions.
fn make_signed(dir: &Path, name: &str, ca: &str, key: Key, ext: &str) -> PathBuf {
    make_key(dir, name, key);
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-key",
            &format!("{name}-key.pem"),
            "-subj",
            &format!("/CN={name}"),
            "-out",
            &format!("{name}.csr"),
        ],
    );
    std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}-key.pem"),
            "-CAcreateserial",
            "-days",
            "365",
            "-extfile",
            &format!("{name}.ext"),
            "-out",
            &format!("{name}.pem"),
        ],
    );
    dir.join(format!("{name}.pem"))
}

const SERVER_EXT: &str = "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n";
const CLIENT_EXT: &str = "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n";

fn cfg(ca: &Path, dir: &Path, name: &str) -> SecurityConfig {
    SecurityConfig::from_paths(
        ca.to_str().unwrap(),
        dir.join(format!("{name}.pem")).to_str().unwrap(),
        dir.join(format!("{name}-key.pem")).to_str().unwrap(),
    )
}

async fn handshake_works(ca: &Path, dir: &Path, server: &str, client: &str) {
    let server_settings = cfg(ca, dir, server)
        .validate(Component::TikvServer)
        .unwrap()
        .unwrap();
    let (addr, mut rx) = spawn_echo(Arc::new(ServerTls::new(server_settings).unwrap())).await;
    let client_settings = cfg(ca, dir, client)
        .validate(Component::TikvCtl)
        .unwrap()
        .unwrap();
    let tls = ClientTls::new(client_settings).unwrap();
    let mut s = tls.connect_tcp(&addr.to_string()).await.unwrap();
    roundtrip(&mut s).await.unwrap();
    assert_eq!(
        next_accept(&mut rx).await.unwrap().common_name(),
        Some(client)
    );
}

#[tokio::test]
async fn openssl_rsa_ca_with_pkcs1_and_pkcs8_keys_is_accepted() {
    if !have_openssl("openssl_rsa_ca_with_pkcs1_and_pkcs8_keys_is_accepted") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = make_ca(d, "ca", Key::RsaPkcs1(2048));
    make_signed(d, "tikv-server", "ca", Key::RsaPkcs8(2048), SERVER_EXT);
    make_signed(d, "client", "ca", Key::RsaPkcs1(3072), CLIENT_EXT);
    assert!(std::fs::read_to_string(d.join("client-key.pem"))
        .unwrap()
        .contains("BEGIN RSA PRIVATE KEY"));
    assert!(std::fs::read_to_string(d.join("tikv-server-key.pem"))
        .unwrap()
        .contains("BEGIN PRIVATE KEY"));
    handshake_works(&ca, d, "tikv-server", "client").await;
}

#[tokio::test]
async fn openssl_ecdsa_certificates_with_sec1_and_pkcs8_keys_are_accepted() {
    if !have_openssl("openssl_ecdsa_certificates_with_sec1_and_pkcs8_keys_are_accepted") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = make_ca(d, "ca", Key::EcPkcs8("P-384"));
    make_signed(d, "pd-server", "ca", Key::EcSec1("prime256v1"), SERVER_EXT);
    make_signed(d, "client", "ca", Key::EcPkcs8("P-256"), CLIENT_EXT);
    make_signed(d, "tidb-server", "ca", Key::Ed25519, SERVER_EXT);
    let sec1 = std::fs::read_to_string(d.join("pd-server-key.pem")).unwrap();
    assert!(sec1.contains("BEGIN EC PRIVATE KEY"), "{sec1}");
    handshake_works(&ca, d, "pd-server", "client").await;
    handshake_works(&ca, d, "tidb-server", "client").await;
}

#[tokio::test]
async fn openssl_chain_through_intermediate_ca_is_accepted() {
    if !have_openssl("openssl_chain_through_intermediate_ca_is_accepted") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let root = make_ca(d, "root", Key::RsaPkcs8(4096));
    make_signed(
        d,
        "intermediate",
        "root",
        Key::EcPkcs8("P-256"),
        "basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n",
    );
    make_signed(d, "leaf", "intermediate", Key::EcPkcs8("P-256"), SERVER_EXT);
    make_signed(
        d,
        "client",
        "intermediate",
        Key::EcPkcs8("P-256"),
        CLIENT_EXT,
    );
    // Chains in the certificate files, leaf first; only the root is trusted.
    for name in ["leaf", "client"] {
        let chain = format!(
            "{}{}",
            std::fs::read_to_string(d.join(format!("{name}.pem"))).unwrap(),
            std::fs::read_to_string(d.join("intermediate.pem")).unwrap()
        );
        std::fs::write(d.join(format!("{name}.pem")), chain).unwrap();
    }
    handshake_works(&root, d, "leaf", "client").await;
}

#[tokio::test]
async fn openssl_ca_key_can_sign_with_tiox_cert_issue() {
    if !have_openssl("openssl_ca_key_can_sign_with_tiox_cert_issue") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (name, key) in [
        ("rsa-ca", Key::RsaPkcs1(2048)),
        ("ec-ca", Key::EcSec1("prime256v1")),
    ] {
        let ca_path = make_ca(d, name, key);
        let ca = CertAuthority::from_pem(
            &std::fs::read_to_string(&ca_path).unwrap(),
            &std::fs::read_to_string(d.join(format!("{name}-key.pem"))).unwrap(),
        )
        .unwrap();
        for (leaf, profile) in [("srv", Profile::Server), ("cli", Profile::Client)] {
            let issued = ca.issue(&Spec::new(leaf, &["127.0.0.1"], profile)).unwrap();
            std::fs::write(d.join(format!("{leaf}.pem")), &issued.cert_pem).unwrap();
            std::fs::write(d.join(format!("{leaf}-key.pem")), issued.key_pem.expose()).unwrap();
        }
        handshake_works(&ca_path, d, "srv", "cli").await;
        // And openssl agrees the chain verifies.
        openssl(
            d,
            &["verify", "-CAfile", ca_path.to_str().unwrap(), "srv.pem"],
        );
    }
}

#[tokio::test]
async fn openssl_client_wrong_usage_is_rejected_with_a_fix() {
    if !have_openssl("openssl_client_wrong_usage_is_rejected_with_a_fix") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = make_ca(d, "ca", Key::EcPkcs8("P-256"));
    // A common mistake: a server certificate with serverAuth only.
    make_signed(
        d,
        "pd-server",
        "ca",
        Key::EcPkcs8("P-256"),
        "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1\n",
    );
    let err = cfg(&ca, d, "pd-server")
        .validate(Component::PdServer)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("[security] cert-path") && err.contains("clientAuth"),
        "{err}"
    );
}
