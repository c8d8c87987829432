//! The HTTP client every platform sends through: TLS, auth, timeouts, no redirects, bounded
//! response reading, transport-error classification and secret redaction.
//!
//! Invariants:
//! - redirects are never followed (`Policy::none()`): a followed 301/302 turns POST into GET and
//!   drops the events, and a cross-host redirect would carry credentials elsewhere;
//! - at most [`MAX_RESPONSE_BYTES`] of a response body are read, so a hostile SIEM cannot make
//!   the agent buffer without bound;
//! - every message built from a response passes through [`HttpClient::redact`] before it is
//!   logged or shown, so a SIEM that echoes the token does not leak it;
//! - what a SIEM says reaches logs and status only summarised (`platform::summarize`: value
//!   previews removed, 200 characters at most); its full words go only to a dead-letter reason
//!   (`Failure::detail`).

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use reqwest::header::{HeaderName, HeaderValue};

use zeroize::Zeroizing;

use crate::secret::Secret;
use crate::sink::platform::{EncodedRequest, Failure, FailureKind, Response};
use crate::sink::settings::{Auth, SiemConfig, TlsConfig};
use crate::sink::tls_probe::{self, ProbeIdentity};

pub(crate) const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

#[derive(Clone)]
pub struct HttpClient {
    client: reqwest::Client,
    auth: Option<(HeaderName, HeaderValue)>,
    /// Every string that must never appear in a message, longest first (zeroized on drop).
    secrets: Vec<Secret>,
    timeout: Duration,
    connect_timeout: Duration,
    min_tls: Option<String>,
    /// The client certificate for the diagnostic handshake (`tls_probe`), when mTLS is set up.
    probe_identity: Option<ProbeIdentity>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ClientBuildError(pub String);

impl HttpClient {
    pub fn new(cfg: &SiemConfig) -> Result<HttpClient, ClientBuildError> {
        let b = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(cfg.connect_timeout)
            .timeout(cfg.timeout)
            // Keep-alive: one idle connection per request the delivery loop may have in flight,
            // so a steady stream reuses connections instead of opening one per request.
            .pool_idle_timeout(Duration::from_secs(50))
            .pool_max_idle_per_host(crate::sink::settings::MAX_IN_FLIGHT)
            .user_agent(concat!("sendauth-siem/", env!("CARGO_PKG_VERSION")))
            .use_rustls_tls()
            .tls_built_in_root_certs(true);
        let (b, probe_identity) = with_tls(b, &cfg.tls)?;
        let client = b
            .build()
            .map_err(|e| ClientBuildError(format!("cannot build the HTTP client: {e}")))?;
        let mut secrets = Vec::new();
        let auth = auth_header(&cfg.auth, &mut secrets)?;
        url_secrets(cfg, &mut secrets);
        // Platform credentials sent in their own headers or token requests.
        secrets.extend(cfg.datadog.api_key.clone());
        secrets.extend(cfg.azure_monitor.client_secret.clone());
        secrets.retain(|s| !s.expose().is_empty());
        secrets.sort_by_key(|s| std::cmp::Reverse(s.expose().len()));
        Ok(HttpClient {
            client,
            auth,
            secrets,
            timeout: cfg.timeout,
            connect_timeout: cfg.connect_timeout,
            min_tls: cfg.tls.min_version.clone(),
            probe_identity,
        })
    }

    /// Replaces every secret in `text` with `<redacted>`, ignoring ASCII case: a SIEM may echo a
    /// credential lower-cased or upper-cased (hex tokens, header values), and that copy must
    /// not reach the log or the status page either.
    pub(crate) fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in &self.secrets {
            out = replace_ignoring_ascii_case(&out, s.expose(), "<redacted>");
        }
        out
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Sends a request with auth; returns the response (any status) or a classified
    /// transport failure.
    pub async fn send(&self, req: &EncodedRequest) -> Result<Response, Failure> {
        let url = req.url.clone();
        let mut rb = self.client.request(req.method.clone(), req.url.clone());
        for (k, v) in &req.headers {
            rb = rb.header(k.as_str(), v.as_str());
        }
        if let Some((n, v)) = &self.auth {
            rb = rb.header(n.clone(), v.clone());
        }
        rb = rb.body(req.body.clone());
        self.execute(rb, &url).await
    }

    /// Sends a request without a body (health checks, ack polling).
    pub async fn get(&self, url: reqwest::Url, headers: &[(String, String)]) -> Result<Response, Failure> {
        let mut rb = self.client.get(url.clone());
        for (k, v) in headers {
            rb = rb.header(k.as_str(), v.as_str());
        }
        if let Some((n, v)) = &self.auth {
            rb = rb.header(n.clone(), v.clone());
        }
        self.execute(rb, &url).await
    }

    async fn execute(&self, rb: reqwest::RequestBuilder, url: &reqwest::Url) -> Result<Response, Failure> {
        let mut resp = match rb.send().await {
            Ok(r) => r,
            Err(e) => {
                let f = self.classify_error(&e);
                return Err(self.explain_hidden_tls_failure(f, &e, url).await);
            }
        };
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let mut body = BytesMut::new();
        loop {
            match resp.chunk().await {
                Ok(Some(c)) => {
                    let room = MAX_RESPONSE_BYTES.saturating_sub(body.len());
                    body.extend_from_slice(&c[..c.len().min(room)]);
                    if body.len() >= MAX_RESPONSE_BYTES {
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    // The status line arrived; a body cut short is still an answer for 2xx/4xx.
                    if (200..300).contains(&status) {
                        break;
                    }
                    return Err(self.classify_error(&e));
                }
            }
        }
        Ok(Response {
            status,
            headers,
            body: Bytes::from(body),
        })
    }

    /// Explains a transport error in words a user can act on.
    pub(crate) fn classify_error(&self, e: &reqwest::Error) -> Failure {
        let chain = error_chain(e);
        let lower = chain.to_lowercase();
        let (kind, msg) = if e.is_timeout() {
            (
                FailureKind::Timeout,
                format!(
                    "the SIEM did not answer within {:?} (siem.timeout); check that it is up and reachable, or raise siem.timeout",
                    self.timeout
                ),
            )
        } else if lower.contains("dns error") || lower.contains("failed to lookup address") || lower.contains("name or service not known") {
            (
                FailureKind::Dns,
                format!("cannot resolve the SIEM host name ({chain}); check the host in siem.url and this machine's DNS"),
            )
        } else if lower.contains("connection refused") {
            (
                FailureKind::ConnectionRefused,
                "connection refused: nothing is listening at the SIEM host and port; check the port in siem.url and that the SIEM's collector is running".to_string(),
            )
        } else if lower.contains("unknownissuer") || lower.contains("unknown issuer") {
            (
                FailureKind::Tls,
                "TLS: the SIEM's certificate is signed by an unknown certificate authority; add that CA with siem.tls.ca_file".to_string(),
            )
        } else if lower.contains("notvalidforname")
            || lower.contains("not valid for name")
            || lower.contains("certificate is not valid for")
        {
            (
                FailureKind::Tls,
                "TLS: the SIEM's certificate does not match the host name in siem.url; use the name the certificate was issued for"
                    .to_string(),
            )
        } else if lower.contains("corrupt message") || lower.contains("invalidcontenttype") || lower.contains("wrong version number") {
            // The hostile-SIEM campaign found this reported as a plain "network error".
            (
                FailureKind::Tls,
                format!(
                    "TLS: the SIEM did not answer in TLS ({chain}); if that port serves plain HTTP, use http:// in siem.url, else check the port"
                ),
            )
        } else if lower.contains("causedasendentity") {
            (
                FailureKind::Tls,
                "TLS: the SIEM presents a CA certificate as its own (a self-signed certificate made without CA:FALSE?); give it a server certificate issued by a CA, and add that CA with siem.tls.ca_file".to_string(),
            )
        } else if lower.contains("expired") {
            (
                FailureKind::Tls,
                "TLS: the SIEM's certificate has expired; renew it on the SIEM side".to_string(),
            )
        } else if lower.contains("alert: protocolversion") || lower.contains("no tls version in common") {
            let msg = match self.min_tls.as_deref() {
                Some("1.3") => "TLS: the SIEM does not offer TLS 1.3, the minimum version set by siem.tls.min_version: \"1.3\"; lower it to \"1.2\" or enable TLS 1.3 on the SIEM".to_string(),
                _ => "TLS: the SIEM offers no TLS version this agent accepts (1.2 or newer); enable TLS 1.2 or 1.3 on the SIEM".to_string(),
            };
            (FailureKind::Tls, msg)
        } else if lower.contains("alert: certificaterequired") {
            (FailureKind::Tls, self.client_cert_message("CertificateRequired"))
        } else if lower.contains("certificate") || lower.contains("tls") || lower.contains("handshake") || lower.contains("alert") {
            (
                FailureKind::Tls,
                format!("TLS handshake with the SIEM failed: {chain}; check siem.tls settings and the SIEM's certificate"),
            )
        } else {
            (FailureKind::Network, format!("network error talking to the SIEM: {chain}"))
        };
        Failure::new(kind, None, self.redact(&msg))
    }
}

/// `siem.tls`: extra roots, the client certificate (also kept for the diagnostic probe), the
/// minimum version, and the loud opt-out of verification.
fn with_tls(mut b: reqwest::ClientBuilder, tls: &TlsConfig) -> Result<(reqwest::ClientBuilder, Option<ProbeIdentity>), ClientBuildError> {
    if let Some(ca) = &tls.ca_file {
        let pem = std::fs::read(ca).map_err(|e| ClientBuildError(format!("siem.tls.ca_file: cannot read {}: {e}", ca.display())))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| ClientBuildError(format!("siem.tls.ca_file: {} is not a PEM certificate bundle: {e}", ca.display())))?;
        if certs.is_empty() {
            return Err(ClientBuildError(format!("siem.tls.ca_file: {} holds no certificate", ca.display())));
        }
        for c in certs {
            b = b.add_root_certificate(c);
        }
    }
    let mut probe_identity = None;
    if let (Some(cert), Some(key)) = (&tls.client_cert, &tls.client_key) {
        let cert_pem =
            std::fs::read(cert).map_err(|e| ClientBuildError(format!("siem.tls.client_cert: cannot read {}: {e}", cert.display())))?;
        // The private key is zeroed when these buffers are dropped.
        let key_pem = Zeroizing::new(
            std::fs::read(key).map_err(|e| ClientBuildError(format!("siem.tls.client_key: cannot read {}: {e}", key.display())))?,
        );
        let mut pem = Zeroizing::new(Vec::with_capacity(cert_pem.len() + key_pem.len() + 1));
        pem.extend_from_slice(&cert_pem);
        pem.push(b'\n');
        pem.extend_from_slice(&key_pem);
        probe_identity = ProbeIdentity::from_pem(&cert_pem, &key_pem);
        let id = reqwest::Identity::from_pem(&pem).map_err(|e| {
            ClientBuildError(format!(
                "siem.tls.client_cert/client_key: not a usable PEM certificate and key: {e}"
            ))
        })?;
        b = b.identity(id);
    }
    match tls.min_version.as_deref() {
        Some("1.3") => b = b.min_tls_version(reqwest::tls::Version::TLS_1_3),
        _ => b = b.min_tls_version(reqwest::tls::Version::TLS_1_2),
    }
    if tls.insecure_skip_verify {
        tracing::warn!("siem.tls.insecure_skip_verify is true: the SIEM's certificate is NOT checked; anyone on the network path can read and alter events. Use siem.tls.ca_file instead");
        b = b.danger_accept_invalid_certs(true);
    }
    Ok((b, probe_identity))
}

/// The `siem.auth` header (marked sensitive), adding what it must never show to `secrets`.
fn auth_header(auth: &Auth, secrets: &mut Vec<Secret>) -> Result<Option<(HeaderName, HeaderValue)>, ClientBuildError> {
    Ok(match auth {
        Auth::None => None,
        Auth::Basic { username, password } => {
            use base64::Engine;
            let pair = Secret::new(format!("{username}:{}", password.expose()));
            let token = Secret::new(base64::engine::general_purpose::STANDARD.encode(pair.expose()));
            let header = Secret::new(format!("Basic {}", token.expose()));
            secrets.push(password.clone());
            secrets.push(token);
            let mut v =
                HeaderValue::from_str(header.expose()).map_err(|_| ClientBuildError("siem.auth.basic: invalid characters".into()))?;
            v.set_sensitive(true);
            Some((reqwest::header::AUTHORIZATION, v))
        }
        Auth::Header { name, value } => {
            let n =
                HeaderName::from_bytes(name.as_bytes()).map_err(|_| ClientBuildError("siem.auth.header: invalid header name".into()))?;
            let mut v = HeaderValue::from_str(value.expose())
                .map_err(|_| ClientBuildError("siem.auth.header: invalid characters in the value".into()))?;
            v.set_sensitive(true);
            secrets.push(value.clone());
            // Also the bare token after a scheme word ("Splunk abc" -> "abc").
            if let Some((_, tok)) = value.expose().split_once(' ') {
                if tok.len() >= 6 {
                    secrets.push(Secret::new(tok.trim()));
                }
            }
            Some((n, v))
        }
    })
}

/// Secrets the URL carries (a password, query values, a Sumo Logic collector URL).
fn url_secrets(cfg: &SiemConfig, secrets: &mut Vec<Secret>) {
    // The URL may carry secrets too (Sumo Logic token, user:pass@, ?token=).
    if let Some(p) = cfg.url.password() {
        secrets.push(Secret::new(p));
    }
    if let Some(q) = cfg.url.query() {
        for (_, v) in url::form_urlencoded::parse(q.as_bytes()) {
            if v.len() >= 6 {
                secrets.push(Secret::new(v.into_owned()));
            }
        }
    }
    if cfg.effective_platform() == crate::sink::settings::Platform::SumoLogic {
        if let Some(last) = cfg.url.path_segments().and_then(|mut s| s.next_back()) {
            if last.len() >= 6 {
                secrets.push(Secret::new(last));
            }
        }
        secrets.push(Secret::new(cfg.url.to_string()));
    }
}

impl HttpClient {
    /// The message for a SIEM that refused the TLS connection over the client certificate.
    fn client_cert_message(&self, alert: &str) -> String {
        if self.probe_identity.is_none() {
            format!(
                "TLS handshake failed: the SIEM requires a client certificate (mTLS) and none was sent (alert {alert}); set siem.tls.client_cert and siem.tls.client_key"
            )
        } else {
            format!(
                "TLS handshake failed: the SIEM refused the client certificate in siem.tls.client_cert (alert {alert}); check that the SIEM trusts the CA that issued it and that it has not expired"
            )
        }
    }

    /// Some TLS failures reach the HTTP client only as "connection was not ready" or a bare
    /// alert (TLS 1.3 checks the client certificate after the client's side of the handshake
    /// is done). For those, a diagnostic handshake (`tls_probe`) finds out what the server
    /// wanted. Anything else is returned unchanged.
    async fn explain_hidden_tls_failure(&self, f: Failure, e: &reqwest::Error, url: &reqwest::Url) -> Failure {
        let lower = error_chain(e).to_lowercase();
        let hidden = lower.contains("connection was not ready")
            || lower.contains("connection closed before message completed")
            || (f.kind == FailureKind::Tls && f.message.starts_with("TLS handshake with the SIEM failed"));
        if url.scheme() != "https" || !hidden {
            return f;
        }
        let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
            return f;
        };
        match tls_probe::probe(host, port, self.probe_identity.as_ref(), self.connect_timeout).await {
            Some(p) if p.client_cert_requested && p.alert.as_deref().is_some_and(is_client_cert_alert) => Failure::new(
                FailureKind::Tls,
                None,
                self.redact(&self.client_cert_message(p.alert.as_deref().unwrap_or("?"))),
            ),
            _ => f,
        }
    }
}

/// TLS alerts a server sends when it does not accept the client certificate (RFC 8446 §6.2).
fn is_client_cert_alert(alert: &str) -> bool {
    [
        "CertificateRequired",
        "BadCertificate",
        "UnsupportedCertificate",
        "CertificateRevoked",
        "CertificateExpired",
        "CertificateUnknown",
        "UnknownCA",
        "AccessDenied",
        "HandshakeFailure",
    ]
    .contains(&alert)
}

/// The error and its sources, joined, without the URL (which may hold secrets).
pub(crate) fn error_chain(e: &reqwest::Error) -> String {
    let mut parts = Vec::new();
    let without_url = e.to_string();
    parts.push(without_url);
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        let t = s.to_string();
        if !parts.iter().any(|p| p.contains(&t)) {
            parts.push(t);
        }
        src = s.source();
    }
    let mut s = parts.join(": ");
    // reqwest prints "error sending request for url (https://...)": drop the URL.
    if let Some(i) = s.find(" for url (") {
        if let Some(j) = s[i..].find(')') {
            s.replace_range(i..i + j + 1, "");
        }
    }
    s
}

/// `text` with every occurrence of `needle` (ASCII case ignored) replaced by `with`.
fn replace_ignoring_ascii_case(text: &str, needle: &str, with: &str) -> String {
    if needle.is_empty() {
        return text.to_string();
    }
    // ASCII lower-casing keeps every byte offset and char boundary, so offsets found in the
    // lowered copy are valid in `text`.
    let hay = text.to_ascii_lowercase();
    let needle = needle.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for (at, _) in hay.match_indices(&needle) {
        out.push_str(&text[last..at]);
        out.push_str(with);
        last = at + needle.len();
    }
    out.push_str(&text[last..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_ignores_the_case_a_siem_echoes_a_secret_in() {
        let t = "token AbC-123-xyZ rejected; abc-123-XYZ again; ABC-123-XYZ. café";
        assert_eq!(
            replace_ignoring_ascii_case(t, "abc-123-xyz", "<redacted>"),
            "token <redacted> rejected; <redacted> again; <redacted>. café"
        );
        assert_eq!(replace_ignoring_ascii_case("é x é", "X", "_"), "é _ é");
        assert_eq!(replace_ignoring_ascii_case("abc", "", "_"), "abc");
    }

    #[tokio::test]
    async fn https_to_a_plain_http_port_is_a_tls_failure_with_a_hint() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n").await;
            }
        });
        let yaml = format!("siem:\n  url: https://{addr}/collector\nsources:\n  socket: {{ path: /tmp/x.sock }}\nqueue:\n  path: /tmp/q\n");
        let cfg = crate::config::Config::parse_with_env(&yaml, &|_| None).unwrap();
        let client = HttpClient::new(&cfg.siem).unwrap();
        let platform = crate::sink::build_platform(&cfg.siem);
        let ev = crate::queue::QueuedEvent {
            seq: 1,
            data: Bytes::from_static(b"{}"),
            accepted_at_ms: 0,
        };
        let f = client.send(&platform.encode(&[ev])).await.unwrap_err();
        assert_eq!(f.kind, FailureKind::Tls, "{}", f.message);
        assert!(f.message.contains("use http://"), "{}", f.message);
    }
}
