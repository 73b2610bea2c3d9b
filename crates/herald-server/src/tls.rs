//! TLS for client connections (rustls): the `[tls]` settings, the server configuration made
//! from them, and the start of a connection, which a client may open either way NATS clients
//! do: read the plaintext INFO (which says `tls_required`) and then start TLS, or start TLS at
//! once (the TLS-first handshake of async-nats and nats-py). A plaintext client is told
//! `-ERR 'Secure Connection - TLS Required'` and closed.
//!
//! The certificate and key are read again on `Certificates::reload` (what SIGHUP does to
//! `herald serve`): connections made after it use the new ones, open ones keep theirs, and
//! files that do not make a valid configuration leave the current one in place.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// `[tls]`: certificates for client connections.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The server's certificate chain (PEM).
    pub cert: String,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: String,
    /// CA certificates (PEM) that client certificates must chain to, with `verify`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<String>,
    /// Require a client certificate signed by `ca`.
    #[serde(default)]
    pub verify: bool,
    /// When NATS clients start TLS (nats-server's `handshake_first`): `"auto"` (the default)
    /// or a duration waits that long for a TLS hello (the clients' TLS-first handshake)
    /// before sending INFO in plaintext; `false` sends INFO at once (TLS-first clients then
    /// fail, as with nats-server's default); `true` starts with TLS and nothing else.
    #[serde(default)]
    pub handshake_first: HandshakeFirst,
}

/// How a NATS client connection starts TLS: `[tls] handshake_first`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeFirst {
    /// INFO in plaintext at once, then TLS (`false`).
    Never,
    /// TLS at once; INFO only over it (`true`).
    Always,
    /// TLS at once if the client's hello comes within this long, else INFO in plaintext
    /// first (`"auto"`: 50 ms, or a duration such as `"200ms"`).
    Wait(Duration),
}

/// `"auto"`'s wait: TLS-first clients send their hello as soon as they are connected.
const AUTO_WAIT: Duration = Duration::from_millis(50);

impl Default for HandshakeFirst {
    fn default() -> Self {
        HandshakeFirst::Wait(AUTO_WAIT)
    }
}

impl<'de> Deserialize<'de> for HandshakeFirst {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Given {
            Flag(bool),
            Text(String),
        }
        match Given::deserialize(d)? {
            Given::Flag(true) => Ok(HandshakeFirst::Always),
            Given::Flag(false) => Ok(HandshakeFirst::Never),
            Given::Text(text) if text == "auto" => Ok(HandshakeFirst::Wait(AUTO_WAIT)),
            Given::Text(text) => humantime::parse_duration(&text)
                .map(HandshakeFirst::Wait)
                .map_err(|e| {
                    serde::de::Error::custom(format!(
                        "handshake_first must be true, false, \"auto\" or a duration, not {text:?} ({e})"
                    ))
                }),
        }
    }
}

impl Serialize for HandshakeFirst {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            HandshakeFirst::Never => s.serialize_bool(false),
            HandshakeFirst::Always => s.serialize_bool(true),
            HandshakeFirst::Wait(wait) if *wait == AUTO_WAIT => s.serialize_str("auto"),
            HandshakeFirst::Wait(wait) => {
                s.serialize_str(&humantime::format_duration(*wait).to_string())
            }
        }
    }
}

/// The first byte of a TLS record carrying a handshake.
const TLS_HANDSHAKE: u8 = 0x16;

/// The certificates client connections (NATS and HTTPS) are served with now.
pub(crate) struct Certificates {
    config: TlsConfig,
    current: parking_lot::RwLock<Acceptors>,
}

/// One reading of the files: for NATS clients, and for HTTPS (the same, offering HTTP/2 by
/// ALPN, so that a browser puts every event stream of a page on one connection instead of
/// running into its six connections per server over HTTP/1.1).
#[derive(Clone)]
struct Acceptors {
    nats: TlsAcceptor,
    https: TlsAcceptor,
}

impl Acceptors {
    fn load(config: &TlsConfig) -> Result<Acceptors, String> {
        let nats = server_config(config)?;
        let mut https = nats.clone();
        https.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Acceptors {
            nats: TlsAcceptor::from(Arc::new(nats)),
            https: TlsAcceptor::from(Arc::new(https)),
        })
    }
}

impl Certificates {
    /// Reads the files of `[tls]`; errors name the file and the problem.
    pub(crate) fn load(config: &TlsConfig) -> Result<Certificates, String> {
        Ok(Certificates {
            current: parking_lot::RwLock::new(Acceptors::load(config)?),
            config: config.clone(),
        })
    }

    /// What a NATS connection accepted now starts TLS with.
    pub(crate) fn acceptor(&self) -> TlsAcceptor {
        self.current.read().nats.clone()
    }

    /// How NATS connections start TLS (`handshake_first`).
    pub(crate) fn handshake_first(&self) -> HandshakeFirst {
        self.config.handshake_first
    }

    /// What an HTTPS connection accepted now starts TLS with.
    pub(crate) fn https_acceptor(&self) -> TlsAcceptor {
        self.current.read().https.clone()
    }

    /// Reads the files again; on an error the certificates in use stay.
    pub(crate) fn reload(&self) -> Result<(), String> {
        let fresh = Acceptors::load(&self.config)?;
        *self.current.write() = fresh;
        Ok(())
    }
}

/// Makes the rustls server configuration of `[tls]`; errors name the file and the problem.
fn server_config(config: &TlsConfig) -> Result<rustls::ServerConfig, String> {
    let certs = read_certs(&config.cert)?;
    let key = PrivateKeyDer::from_pem_file(&config.key)
        .map_err(|e| format!("tls.key {}: no private key found ({e})", config.key))?;
    let builder = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("tls: {e}"))?;
    let builder = if config.verify {
        let ca = config
            .ca
            .as_ref()
            .ok_or("tls.verify needs tls.ca: the CA client certificates must chain to")?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in read_certs(ca)? {
            roots.add(cert).map_err(|e| format!("tls.ca {ca}: {e}"))?;
        }
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .map_err(|e| format!("tls.ca {ca}: {e}"))?;
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let server = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("tls.cert/tls.key: {e}"))?;
    Ok(server)
}

fn read_certs(path: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    if !Path::new(path).exists() {
        return Err(format!("{path}: no such file"));
    }
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{path}: {e}"))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{path}: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{path}: no certificate in it"));
    }
    Ok(certs)
}

/// How a TLS connection started.
pub(crate) struct Started {
    pub(crate) stream: TlsStream<TcpStream>,
    /// INFO went out in plaintext before the handshake; otherwise it is still to be sent.
    pub(crate) info_sent: bool,
}

/// Starts TLS on a new client connection, sending `info_line` (the whole `INFO ...\r\n`) in
/// plaintext first unless the client opens with its TLS hello (as `handshake_first` says); `None` when the client is not
/// speaking TLS (told so), fails the handshake, or takes longer than `timeout`.
pub(crate) async fn start(
    mut socket: TcpStream,
    acceptor: &TlsAcceptor,
    info_line: &[u8],
    handshake_first: HandshakeFirst,
    timeout: Duration,
) -> Option<Started> {
    let mut first = [0u8; 1];
    let tls_first = match handshake_first {
        HandshakeFirst::Never => false,
        HandshakeFirst::Always => true,
        HandshakeFirst::Wait(wait) => matches!(
            tokio::time::timeout(wait, socket.peek(&mut first)).await,
            Ok(Ok(1..)) if first[0] == TLS_HANDSHAKE
        ),
    };
    let handshake = async {
        if !tls_first {
            socket.write_all(info_line).await.ok()?;
            let n = socket.peek(&mut first).await.ok()?;
            if n == 0 {
                return None;
            }
            if first[0] != TLS_HANDSHAKE {
                let _ = socket
                    .write_all(b"-ERR 'Secure Connection - TLS Required'\r\n")
                    .await;
                return None;
            }
        }
        match acceptor.accept(socket).await {
            Ok(stream) => Some(stream),
            Err(err) => {
                tracing::debug!(%err, "TLS handshake failed");
                None
            }
        }
    };
    let stream = tokio::time::timeout(timeout, handshake).await.ok()??;
    Some(Started {
        stream,
        info_sent: !tls_first,
    })
}
