//! Test helpers: a throw-away PKI in a temp dir, an echo server behind
//! `ServerTls`, and raw rustls clients for the cases our own client refuses
//! to build (no certificate, expired certificate, ...).

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ClientConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tiox_security::certgen::{CertAuthority, Issued, KeyType, Profile, Spec, Validity};
use tiox_security::{Component, SecurityConfig, ServerTls, TlsSettings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// A CA and a directory to write certificates into.
pub struct Pki {
    pub dir: tempfile::TempDir,
    pub ca: CertAuthority,
    pub ca_path: PathBuf,
}

impl Pki {
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca = CertAuthority::generate("tiox test CA", Validity::Days(30), KeyType::EcdsaP256)
            .unwrap();
        let ca_path = dir.path().join("ca.pem");
        std::fs::write(&ca_path, &ca.cert_pem).unwrap();
        Pki { dir, ca, ca_path }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `name.pem` and `name-key.pem`.
    pub fn write(&self, name: &str, issued: &Issued) -> (PathBuf, PathBuf) {
        let cert = self.path(&format!("{name}.pem"));
        let key = self.path(&format!("{name}-key.pem"));
        std::fs::write(&cert, &issued.cert_pem).unwrap();
        std::fs::write(&key, issued.key_pem.expose()).unwrap();
        (cert, key)
    }

    pub fn issue(&self, spec: &Spec) -> Issued {
        self.ca.issue(spec).unwrap()
    }

    pub fn server(&self, name: &str, hosts: &[&str]) -> (PathBuf, PathBuf) {
        self.write(name, &self.issue(&Spec::new(name, hosts, Profile::Server)))
    }

    pub fn client(&self, name: &str) -> (PathBuf, PathBuf) {
        self.write(name, &self.issue(&Spec::new(name, &[], Profile::Client)))
    }

    pub fn config(&self, cert: &Path, key: &Path) -> SecurityConfig {
        SecurityConfig::from_paths(
            self.ca_path.to_str().unwrap(),
            cert.to_str().unwrap(),
            key.to_str().unwrap(),
        )
    }

    pub fn settings(&self, component: Component, cert: &Path, key: &Path) -> TlsSettings {
        self.config(cert, key).validate(component).unwrap().unwrap()
    }
}

/// Starts an echo server; each accept's outcome is sent on the channel.
pub async fn spawn_echo(
    tls: Arc<ServerTls>,
) -> (
    SocketAddr,
    mpsc::UnboundedReceiver<Result<tiox_security::PeerIdentity, String>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, peer)) = listener.accept().await else {
                return;
            };
            let tls = tls.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                match tls.accept(tcp, &peer.to_string()).await {
                    Ok((mut stream, identity)) => {
                        let _ = tx.send(Ok(identity));
                        let mut buf = [0u8; 1024];
                        loop {
                            match stream.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => {
                                    if stream.write_all(&buf[..n]).await.is_err() {
                                        return;
                                    }
                                    let _ = stream.flush().await;
                                }
                            }
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                    }
                }
            });
        }
    });
    (addr, rx)
}

/// The next accept outcome, with a timeout.
pub async fn next_accept(
    rx: &mut mpsc::UnboundedReceiver<Result<tiox_security::PeerIdentity, String>>,
) -> Result<tiox_security::PeerIdentity, String> {
    tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv())
        .await
        .expect("server reported nothing within 10s")
        .expect("server task ended")
}

/// Writes `ping` and expects it back.
pub async fn roundtrip<S>(stream: &mut S) -> std::io::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    stream.write_all(b"ping").await?;
    stream.flush().await?;
    let mut buf = [0u8; 4];
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_exact(&mut buf),
    )
    .await
    .map_err(|_| std::io::Error::other("timed out"))??;
    assert_eq!(&buf, b"ping");
    Ok(())
}

/// A rustls client config that trusts `ca` and presents `client` (if any),
/// bypassing tiox's own checks on the client side.
pub fn raw_client(
    ca: &Path,
    client: Option<(&Path, &Path)>,
    tls12_only: bool,
) -> Arc<ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = tiox_security::material::provider();
    let versions: &[&rustls::SupportedProtocolVersion] = if tls12_only {
        &[&rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots);
    let config = match client {
        Some((cert, key)) => {
            let chain: Vec<_> = CertificateDer::pem_file_iter(cert)
                .unwrap()
                .map(|c| c.unwrap())
                .collect();
            let key = PrivateKeyDer::from_pem_file(key).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    Arc::new(config)
}

/// Connects with a raw config and does one round trip; any failure is Err.
pub async fn raw_connect_and_roundtrip(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
) -> Result<(), String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut stream = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    roundtrip(&mut stream)
        .await
        .map_err(|e| format!("roundtrip: {e}"))
}

/// The fingerprint of the certificate the server presented.
pub fn server_fingerprint<IO>(stream: &tokio_rustls::client::TlsStream<IO>) -> String {
    let (_, conn) = stream.get_ref();
    tiox_security::inspect::fingerprint(conn.peer_certificates().unwrap()[0].as_ref())
}

/// The fingerprint of a PEM certificate file's first certificate.
pub fn file_fingerprint(path: &Path) -> String {
    let der = CertificateDer::pem_file_iter(path)
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    tiox_security::inspect::fingerprint(der.as_ref())
}

/// Replaces a file's contents the way an operator's tool does: write a
/// temporary file beside it, then rename over it.
pub fn replace_file(path: &Path, contents: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

pub async fn tcp(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr).await.unwrap()
}
