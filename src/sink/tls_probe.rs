//! A diagnostic TLS handshake, run only after a request to an `https://` SIEM failed in a way
//! that hides the reason.
//!
//! Why: with TLS 1.3 a server checks the client certificate *after* the client considers the
//! handshake done. A SIEM that requires mTLS then answers the request with an alert
//! (`CertificateRequired`, `UnknownCA`, ...) and closes, and the HTTP client reports only
//! "connection was not ready". This probe repeats the handshake with rustls directly, records
//! whether the server asked for a client certificate, and reads the alert it sends, so the error
//! can say "the SIEM requires a client certificate" instead of "network error".
//!
//! The probe does not verify the server's certificate (its question is only "what does this
//! server want from us?") and sends no application data: no event and no credential ever goes
//! over it. It offers the configured client certificate, if any, exactly as the real client does.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::ResolvesClientCert;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::AsyncReadExt;

/// What the server's side of a handshake revealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeResult {
    /// The server sent a CertificateRequest: it wants (or at least accepts) mTLS.
    pub(crate) client_cert_requested: bool,
    /// The TLS alert the server sent, if any (e.g. "CertificateRequired", "UnknownCA").
    pub alert: Option<String>,
}

/// The client certificate chain and key, as the probe needs them.
#[derive(Clone)]
pub struct ProbeIdentity(Arc<CertifiedKey>);

impl std::fmt::Debug for ProbeIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProbeIdentity(<client certificate>)")
    }
}

impl ProbeIdentity {
    /// Parses PEM certificates and a PEM private key; `None` if they do not parse (the real
    /// client reports that case itself).
    pub(crate) fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Option<ProbeIdentity> {
        use rustls::pki_types::pem::PemObject;
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem).collect::<Result<_, _>>().ok()?;
        let key = PrivateKeyDer::from_pem_slice(key_pem).ok()?;
        let provider = rustls::crypto::ring::default_provider();
        let signing = provider.key_provider.load_private_key(key).ok()?;
        Some(ProbeIdentity(Arc::new(CertifiedKey::new(certs, signing))))
    }
}

/// Connects to `host:port`, handshakes, and waits briefly for the server's verdict.
/// `None` when the probe itself could not run (no TCP connection, timeout).
pub async fn probe(host: &str, port: u16, identity: Option<&ProbeIdentity>, timeout: Duration) -> Option<ProbeResult> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let resolver = Arc::new(Recorder {
        requested: AtomicBool::new(false),
        key: identity.map(|i| i.0.clone()),
    });
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .ok()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
        .with_client_cert_resolver(resolver.clone());
    let name = ServerName::try_from(host.trim_start_matches('[').trim_end_matches(']').to_string()).ok()?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let run = async {
        let tcp = tokio::net::TcpStream::connect((host.trim_start_matches('[').trim_end_matches(']'), port))
            .await
            .ok()?;
        let alert = match connector.connect(name, tcp).await {
            Err(e) => alert_of(&e),
            // TLS 1.3: the server judges our certificate after this point; its alert (or
            // nothing, if it is happy) arrives on the first read.
            Ok(mut tls) => {
                let mut buf = [0u8; 1];
                match tokio::time::timeout(Duration::from_secs(2), tls.read(&mut buf)).await {
                    Ok(Err(e)) => alert_of(&e),
                    _ => None,
                }
            }
        };
        Some(ProbeResult {
            client_cert_requested: resolver.requested.load(Ordering::Relaxed),
            alert,
        })
    };
    tokio::time::timeout(timeout, run).await.ok().flatten()
}

/// "received fatal alert: CertificateRequired" -> "CertificateRequired".
fn alert_of(e: &std::io::Error) -> Option<String> {
    let text = e.to_string();
    text.split_once("alert: ").map(|(_, a)| a.trim().to_string())
}

/// Answers a CertificateRequest with the configured identity (or none), remembering that the
/// server asked.
#[derive(Debug)]
struct Recorder {
    requested: AtomicBool,
    key: Option<Arc<CertifiedKey>>,
}

impl ResolvesClientCert for Recorder {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        self.requested.store(true, Ordering::Relaxed);
        self.key.clone()
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Accepts any server certificate but still checks handshake signatures (see the module doc:
/// nothing secret is sent over a probe connection).
#[derive(Debug)]
struct AcceptAny(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
