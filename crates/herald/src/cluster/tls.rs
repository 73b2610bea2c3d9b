//! Mutual TLS on routes (rustls): every node presents a certificate from the cluster's CA and
//! accepts only peers that do, in both directions. It comes before the route handshake, which
//! still proves the cluster secret inside the encrypted channel; gossip (UDP) stays protected
//! by its MAC as without TLS.
//!
//! Nodes dial each other by IP address, so a certificate is checked for its chain to the
//! cluster CA, its validity period and its key usage, and not for a host name: the CA is what
//! makes a node a member.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::error::{Error, Result};

/// Certificates for mutual TLS between the nodes of a cluster; see
/// [`NodeBuilder::route_tls`](crate::NodeBuilder::route_tls). Cheap to clone.
#[derive(Clone)]
pub struct RouteTls {
    pub(crate) acceptor: TlsAcceptor,
    pub(crate) connector: TlsConnector,
}

impl std::fmt::Debug for RouteTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RouteTls { .. }")
    }
}

impl RouteTls {
    /// Reads this node's certificate chain, its private key (PKCS#8, PKCS#1 or SEC1) and the
    /// cluster's CA certificates from PEM files. Errors name the file and the problem.
    pub fn from_pem_files(
        cert: impl AsRef<Path>,
        key: impl AsRef<Path>,
        ca: impl AsRef<Path>,
    ) -> Result<RouteTls> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|e| tls_error(format!("{}: {e}", path.display())))
        };
        let (cert, key, ca) = (cert.as_ref(), key.as_ref(), ca.as_ref());
        RouteTls::from_pem(&read(cert)?, &read(key)?, &read(ca)?).map_err(|e| match e {
            Error::Cluster(why) => Error::Cluster(format!(
                "{why} (cert {}, key {}, ca {})",
                cert.display(),
                key.display(),
                ca.display()
            )),
            other => other,
        })
    }

    /// Like [`from_pem_files`](RouteTls::from_pem_files), from the PEM text itself.
    pub fn from_pem(cert: &[u8], key: &[u8], ca: &[u8]) -> Result<RouteTls> {
        let chain = certificates(cert, "certificate")?;
        let key = PrivateKeyDer::from_pem_slice(key)
            .map_err(|e| tls_error(format!("no private key in the key PEM ({e})")))?;
        let mut roots = RootCertStore::empty();
        for ca in certificates(ca, "CA")? {
            roots
                .add(ca)
                .map_err(|e| tls_error(format!("bad CA certificate: {e}")))?;
        }
        let roots = Arc::new(roots);
        let provider = Arc::new(rustls::crypto::ring::default_provider());

        let clients = rustls::server::WebPkiClientVerifier::builder_with_provider(
            roots.clone(),
            provider.clone(),
        )
        .build()
        .map_err(|e| tls_error(format!("CA: {e}")))?;
        let server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_error(e.to_string()))?
            .with_client_cert_verifier(clients)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(|e| tls_error(format!("certificate and key: {e}")))?;

        let servers =
            rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                .build()
                .map_err(|e| tls_error(format!("CA: {e}")))?;
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_error(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(MemberVerifier(servers)))
            .with_client_auth_cert(chain, key)
            .map_err(|e| tls_error(format!("certificate and key: {e}")))?;
        Ok(RouteTls {
            acceptor: TlsAcceptor::from(Arc::new(server)),
            connector: TlsConnector::from(Arc::new(client)),
        })
    }
}

fn tls_error(why: String) -> Error {
    Error::Cluster(format!("route TLS: {why}"))
}

fn certificates(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem)
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| tls_error(format!("bad {what} PEM: {e}")))?;
    if certs.is_empty() {
        return Err(tls_error(format!("no certificate in the {what} PEM")));
    }
    Ok(certs)
}

/// Checks a peer node's certificate as rustls's WebPKI verifier does (chain to the cluster
/// CA, validity, key usage, signatures), except for the host name: nodes are dialled by IP
/// address and are members by their CA, not their name.
#[derive(Debug)]
struct MemberVerifier(Arc<rustls::client::WebPkiServerVerifier>);

impl ServerCertVerifier for MemberVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}
