//! The client-certificate verifier used on every server port: the standard
//! chain check against the cluster CA (webpki), then the CN and SAN
//! allow-lists. A refused peer never completes the handshake, so no request
//! from it is ever read.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::{CertificateDer, UnixTime};

use crate::config::AllowList;
use crate::inspect::CertInfo;

/// Why a peer was refused by the allow-lists.
#[derive(Debug)]
pub struct NotAllowed(pub String);

impl std::fmt::Display for NotAllowed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "peer certificate refused: {}", self.0)
    }
}

impl std::error::Error for NotAllowed {}

/// A certificate refused because a revocation list names it; `Display`
/// names its serial and subject, so the refusal's log line does.
#[derive(Debug)]
pub struct RevokedCert {
    /// The certificate's serial, hex.
    pub serial: String,
    /// Its subject.
    pub subject: String,
}

impl std::fmt::Display for RevokedCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the certificate with serial {} (subject \"{}\") is revoked (crl-path / ssl-crl)",
            self.serial, self.subject
        )
    }
}

impl std::error::Error for RevokedCert {}

/// Turns webpki's bare `Revoked` into an error naming the certificate.
pub fn name_revoked(err: rustls::Error, end_entity: &CertificateDer<'_>) -> rustls::Error {
    match err {
        rustls::Error::InvalidCertificate(rustls::CertificateError::Revoked) => {
            let (serial, subject) = match CertInfo::from_der(end_entity) {
                Ok(i) => (i.serial, i.subject),
                Err(_) => ("(unreadable)".to_string(), String::new()),
            };
            rustls::Error::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(
                Arc::new(RevokedCert { serial, subject }),
            )))
        }
        other => other,
    }
}

tokio::task_local! {
    /// The certificate presented in the handshake running on this task,
    /// kept for the audit log of a refusal.
    static PRESENTED: std::cell::RefCell<Option<CertInfo>>;
}

/// Runs a server handshake future and returns, with its outcome, the client
/// certificate presented during it (verified or not), if any.
pub async fn capturing<F: std::future::Future>(f: F) -> (F::Output, Option<CertInfo>) {
    PRESENTED
        .scope(std::cell::RefCell::new(None), async {
            let out = f.await;
            let cert = PRESENTED.with(|c| c.borrow_mut().take());
            (out, cert)
        })
        .await
}

/// Chain verification followed by the allow-lists.
#[derive(Debug)]
pub struct AllowListVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    allow: AllowList,
}

impl AllowListVerifier {
    /// Wraps a chain verifier.
    pub fn new(inner: Arc<dyn ClientCertVerifier>, allow: AllowList) -> Self {
        AllowListVerifier { inner, allow }
    }
}

impl ClientCertVerifier for AllowListVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let parsed = CertInfo::from_der(end_entity);
        if let Ok(info) = &parsed {
            let _ = PRESENTED.try_with(|c| *c.borrow_mut() = Some(info.clone()));
        }
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)
            .map_err(|e| name_revoked(e, end_entity))?;
        let info = parsed.map_err(|e| {
            rustls::Error::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(
                Arc::new(NotAllowed(e)),
            )))
        })?;
        self.allow
            .check(info.common_name.as_deref(), &info.sans)
            .map_err(|reason| {
                rustls::Error::InvalidCertificate(rustls::CertificateError::Other(
                    rustls::OtherError(Arc::new(NotAllowed(reason))),
                ))
            })?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The server-certificate verifier of every dialler: webpki's (chain, SAN,
/// revocation lists) with revoked certificates named in the error.
#[derive(Debug)]
pub struct NamingServerVerifier(pub Arc<rustls::client::WebPkiServerVerifier>);

impl rustls::client::danger::ServerCertVerifier for NamingServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &rustls_pki_types::ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        self.0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            .map_err(|e| name_revoked(e, end_entity))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}
