//! Turning TLS failures into sentences an operator can act on.
//!
//! rustls reports precise errors; users of the reference saw
//! `first record does not look like a TLS handshake` or `certificate signed by
//! unknown authority` with no address or fix. Every handshake error in tiox
//! goes through [`explain`], which names what happened and what to change.

use rustls::{AlertDescription, CertificateError};

use crate::stats::Refusal;
use crate::verify::{NotAllowed, RevokedCert};

/// Which end of the connection we are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// We accepted the connection.
    Server,
    /// We dialled.
    Client,
}

/// Explains a handshake I/O error (as returned by tokio-rustls).
pub fn explain(err: &std::io::Error, side: Side) -> String {
    if let Some(tls) = err
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        return explain_tls(tls, side);
    }
    match (err.kind(), side) {
        (std::io::ErrorKind::UnexpectedEof, Side::Client) => {
            "the server closed the connection during the handshake (it probably refused our \
             certificate: check its log, and that both sides use the same CA)"
                .to_string()
        }
        (std::io::ErrorKind::UnexpectedEof, Side::Server) => {
            "the client closed the connection during the handshake (it probably refused our \
             certificate: check that it trusts our CA and dialled a name in our SANs)"
                .to_string()
        }
        _ => err.to_string(),
    }
}

/// Explains a rustls error.
pub fn explain_tls(err: &rustls::Error, side: Side) -> String {
    use rustls::Error as E;
    let peer_cert = match side {
        Side::Server => "the client's certificate",
        Side::Client => "the server's certificate",
    };
    match err {
        E::InvalidMessage(_)
        | E::InappropriateMessage { .. }
        | E::InappropriateHandshakeMessage { .. } => match side {
            Side::Server => "the peer did not speak TLS (a plaintext client on a TLS port? \
                give it the CA, certificate and key and use https:// URLs)"
                .to_string(),
            Side::Client => "the server did not answer with TLS (is TLS configured on it? an \
                http:// vs https:// mismatch?)"
                .to_string(),
        },
        E::NoCertificatesPresented => "the client presented no certificate; every tiox cluster \
            port requires one (give the client the cluster's client certificate and key)"
            .to_string(),
        E::InvalidCertificate(ce) => match ce {
            CertificateError::UnknownIssuer => format!(
                "certificate signed by unknown authority: {peer_cert} was not issued by the CA \
                 we trust (both sides must use the same cluster CA)"
            ),
            CertificateError::BadSignature => format!(
                "certificate signed by unknown authority: {peer_cert} names our CA as issuer \
                 but its signature does not verify (another CA with the same name, or a \
                 tampered certificate; both sides must use the same cluster CA)"
            ),
            CertificateError::Revoked => {
                format!("{peer_cert} is revoked by our certificate revocation list (crl-path)")
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                format!("{peer_cert} has expired; issue a new one and replace the files")
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                format!("{peer_cert} is not valid yet (check both machines' clocks)")
            }
            CertificateError::NotValidForName => format!(
                "{peer_cert} does not list the address we dialled in its SANs; re-issue it \
                 with that host or IP in --hosts, or dial a name it lists"
            ),
            CertificateError::NotValidForNameContext {
                expected,
                presented,
            } => format!(
                "{peer_cert} does not cover \"{}\": its SANs are [{}]; re-issue it with \
                 \"{}\" in --hosts, or dial a name it lists",
                expected.to_str(),
                presented.join(", "),
                expected.to_str()
            ),
            CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
                format!(
                    "{peer_cert} lacks the needed extended key usage ({}); issue it with the \
                     right profile (server: serverAuth+clientAuth, client: clientAuth)",
                    match side {
                        Side::Server => "clientAuth",
                        Side::Client => "serverAuth",
                    }
                )
            }
            CertificateError::Other(other) => other.to_string(),
            other => format!("{peer_cert} was rejected ({other:?})"),
        },
        E::AlertReceived(alert) => match alert {
            AlertDescription::NoApplicationProtocol => "the peer refused our application protocol \
                (ALPN): we dialled a port that serves another protocol (check the port)"
                .to_string(),
            AlertDescription::CertificateRequired => "the server requires a client certificate \
                and we sent none"
                .to_string(),
            AlertDescription::UnknownCA | AlertDescription::BadCertificate => {
                "the peer rejected our certificate (does it trust the CA that issued ours?)"
                    .to_string()
            }
            AlertDescription::CertificateRevoked => {
                "the peer says our certificate is revoked (it is on the peer's CRL)".to_string()
            }
            AlertDescription::CertificateExpired => {
                "the peer says our certificate has expired".to_string()
            }
            AlertDescription::AccessDenied => "the peer refused our certificate: our common name \
                or SAN is not in its allow-list (cert-allowed-cn / cert-allowed-san)"
                .to_string(),
            AlertDescription::ProtocolVersion | AlertDescription::HandshakeFailure => format!(
                "the peer refused the handshake ({alert:?}): no common TLS version or cipher \
                 suite (tiox speaks TLS 1.2 and 1.3 only; check tls-min-version)"
            ),
            other => format!("the peer refused the handshake ({other:?})"),
        },
        E::NoApplicationProtocol => {
            "no common application protocol (ALPN): the peer offered none of the \
            protocols this port serves (cluster ports speak h2 and http/1.1; PD's peer port only \
            PD's own); check that the client dials the right port"
                .to_string()
        }
        E::PeerIncompatible(p) => format!(
            "no common ground with the peer ({p:?}); tiox speaks TLS 1.2 and 1.3 only \
             (check tls-min-version on both sides)"
        ),
        other => other.to_string(),
    }
}

/// The [`Refusal`] reason of a handshake I/O error (as returned by
/// tokio-rustls), for counters and the audit log.
pub fn classify(err: &std::io::Error) -> Refusal {
    match err
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(tls) => classify_tls(tls),
        None => Refusal::Other,
    }
}

/// The [`Refusal`] reason of a rustls error.
pub fn classify_tls(err: &rustls::Error) -> Refusal {
    use rustls::Error as E;
    match err {
        E::InvalidMessage(_)
        | E::InappropriateMessage { .. }
        | E::InappropriateHandshakeMessage { .. } => Refusal::Plaintext,
        E::NoCertificatesPresented => Refusal::NoCertificate,
        E::InvalidCertificate(ce) => match ce {
            CertificateError::UnknownIssuer | CertificateError::BadSignature => Refusal::UnknownCa,
            CertificateError::Revoked => Refusal::Revoked,
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. } => Refusal::Expired,
            CertificateError::Other(o) if o.0.downcast_ref::<NotAllowed>().is_some() => {
                Refusal::NotAllowed
            }
            CertificateError::Other(o) if o.0.downcast_ref::<RevokedCert>().is_some() => {
                Refusal::Revoked
            }
            _ => Refusal::Other,
        },
        E::PeerIncompatible(_) => Refusal::Protocol,
        E::AlertReceived(
            AlertDescription::ProtocolVersion
            | AlertDescription::HandshakeFailure
            | AlertDescription::InsufficientSecurity,
        ) => Refusal::Protocol,
        _ => Refusal::Other,
    }
}
