//! Microsoft Sentinel / Azure Monitor Logs Ingestion API: JSON arrays POSTed to a data
//! collection rule's stream, authorised by a Microsoft Entra ID token from the OAuth 2.0 client
//! credentials flow.
//!
//! Protocol facts relied on (`docs/PROTOCOLS.md` §4; learn.microsoft.com "Logs Ingestion API in
//! Azure Monitor" and "Microsoft identity platform and the OAuth 2.0 client credentials flow"):
//! - token: `POST {authority}/{tenant}/oauth2/v2.0/token`, form `grant_type=client_credentials`,
//!   `client_id`, `client_secret`, `scope=https://monitor.azure.com//.default`; the answer holds
//!   `access_token` and `expires_in` (seconds); errors hold `error`, `error_description`
//!   (`AADSTSnnnnn: …`) and `error_codes`;
//! - ingestion: `POST {endpoint}/dataCollectionRules/{dcr}/streams/{stream}?api-version=2023-01-01`
//!   with `Authorization: Bearer <token>`, `Content-Type: application/json`, optional
//!   `Content-Encoding: gzip`; the body is a JSON **array** of records (a bare object can be
//!   answered 204 with nothing ingested); 204 = accepted; at most 1 MB per call; 413 too large;
//!   429 with `Retry-After`; 401 bad or expired token; 403 the app lacks the *Monitoring Metrics
//!   Publisher* role on the DCR.
//!
//! Design: the token lives in [`TokenCache`], shared by `encode` (which is synchronous and only
//! reads it) and a refresher task started by the first `prepare`. `prepare` fetches the first
//! token, so no event is sent before one exists; the refresher renews it a margin before it
//! expires (5 minutes, or half its life when that is shorter), and at once when ingestion
//! answers 401. The refresher holds only a weak reference and ends when the platform is
//! dropped (config reload builds a new one).
//!
//! Invariants:
//! - the client secret and every access token stay out of messages (the HTTP client redacts the
//!   secret; the platform redacts tokens);
//! - a 401 triggers one refresh; a 401 with a token fetched after that refresh holds delivery
//!   with a plain explanation instead of refreshing in a loop; any accepted request re-arms it;
//! - nothing is dropped for a token or permission problem: those are `Retry` (events stay
//!   queued); only a 400 about the data isolates and dead-letters an event.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use serde_json::Value;
use tokio::sync::Notify;

use crate::queue::QueuedEvent;
use crate::secret::Secret;
use crate::sink::encode::one_line;
use crate::sink::http::HttpClient;
use crate::sink::platform::{classify_status_redacted, BoxFuture, EncodedRequest, Failure, FailureKind, Platform, Response, Verdict};
use crate::sink::settings::{AzureMonitorConfig, AZURE_MAX_CALL_BYTES};

/// Renew a token this long before it expires (or at half its life, when that is sooner).
pub(crate) const REFRESH_MARGIN: Duration = Duration::from_secs(300);

struct Token {
    access: Secret,
    refresh_at: Instant,
    expires_at: Instant,
    /// Fetched because ingestion refused the previous token.
    after_401: bool,
}

#[derive(Default)]
struct TokenCache {
    token: Mutex<Option<Token>>,
    /// Ingestion answered 401 and a new token was asked for.
    refresh_asked: AtomicBool,
    /// Why the last token request failed, while it keeps failing.
    last_error: Mutex<Option<Failure>>,
    refresher_started: AtomicBool,
}

impl TokenCache {
    /// Caches a new token, renewed a margin before it expires.
    fn store(&self, access: Secret, lifetime: Duration, after_401: bool) {
        let now = Instant::now();
        let margin = REFRESH_MARGIN.min(lifetime / 2);
        *lock(&self.token) = Some(Token {
            access,
            refresh_at: now + lifetime - margin,
            expires_at: now + lifetime,
            after_401,
        });
        self.refresh_asked.store(false, Ordering::SeqCst);
        *lock(&self.last_error) = None;
    }
}

pub struct AzureMonitor {
    cfg: AzureMonitorConfig,
    ingest_url: reqwest::Url,
    token_url: reqwest::Url,
    cache: Arc<TokenCache>,
    wake: Arc<Notify>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl AzureMonitor {
    pub fn new(endpoint: reqwest::Url, cfg: AzureMonitorConfig) -> Self {
        let mut ingest_url = endpoint;
        ingest_url.set_query(None);
        if let Ok(mut p) = ingest_url.path_segments_mut() {
            p.pop_if_empty();
            p.extend(["dataCollectionRules", cfg.dcr_immutable_id.as_str(), "streams", cfg.stream.as_str()]);
        }
        ingest_url.query_pairs_mut().append_pair("api-version", "2023-01-01");
        let mut token_url = cfg.authority_host.clone();
        token_url.set_query(None);
        if let Ok(mut p) = token_url.path_segments_mut() {
            p.pop_if_empty();
            p.extend([cfg.tenant_id.as_str(), "oauth2", "v2.0", "token"]);
        }
        AzureMonitor {
            cfg,
            ingest_url,
            token_url,
            cache: Arc::default(),
            wake: Arc::new(Notify::new()),
        }
    }

    fn max_bytes(&self) -> usize {
        self.cfg.max_bytes.min(AZURE_MAX_CALL_BYTES)
    }

    /// Removes the current access token from a text (ingestion may echo it).
    fn redact(&self, text: &str) -> String {
        match &*lock(&self.cache.token) {
            Some(t) if !t.access.expose().is_empty() => text.replace(t.access.expose(), "<redacted>"),
            _ => text.to_string(),
        }
    }

    /// Whether the cached token is usable for a while yet.
    fn token_fresh(&self) -> bool {
        lock(&self.cache.token).as_ref().is_some_and(|t| t.refresh_at > Instant::now())
    }

    /// Fetches a token and caches it; on failure remembers why.
    async fn refresh(&self, client: &HttpClient) -> Result<Duration, Failure> {
        let after_401 = self.cache.refresh_asked.load(Ordering::SeqCst);
        match fetch_token(client, &self.token_url, &self.cfg).await {
            Ok((access, lifetime)) => {
                self.cache.store(access, lifetime, after_401);
                tracing::debug!(target: "sink", lifetime_s = lifetime.as_secs(), "got a Microsoft Entra access token for Azure Monitor");
                Ok(lifetime)
            }
            Err(f) => {
                *lock(&self.cache.last_error) = Some(f.clone());
                Err(f)
            }
        }
    }

    fn start_refresher(&self, client: &HttpClient) {
        if self.cache.refresher_started.swap(true, Ordering::SeqCst) {
            return;
        }
        let me = Refresher {
            cache: Arc::downgrade(&self.cache),
            wake: self.wake.clone(),
            client: client.clone(),
            token_url: self.token_url.clone(),
            cfg: self.cfg.clone(),
        };
        tokio::spawn(me.run());
    }
}

/// Renews the token in the background (see the module doc).
struct Refresher {
    cache: Weak<TokenCache>,
    wake: Arc<Notify>,
    client: HttpClient,
    token_url: reqwest::Url,
    cfg: AzureMonitorConfig,
}

impl Refresher {
    async fn run(self) {
        let mut backoff = Duration::from_secs(1);
        loop {
            let wait = {
                let Some(cache) = self.cache.upgrade() else { return };
                // After a failed token request, wait out the backoff even when a 401 asks for a
                // new token, so a wrong secret cannot make a tight loop of token requests.
                if lock(&cache.last_error).is_some() {
                    backoff
                } else if cache.refresh_asked.load(Ordering::SeqCst) {
                    Duration::ZERO
                } else {
                    match &*lock(&cache.token) {
                        Some(t) => t.refresh_at.saturating_duration_since(Instant::now()),
                        None => Duration::ZERO,
                    }
                }
            };
            // Wake at least every 30 s to notice that the platform is gone.
            let notified = self.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if !wait.is_zero() {
                tokio::select! {
                    _ = tokio::time::sleep(wait.min(Duration::from_secs(30))) => {}
                    _ = &mut notified => {}
                }
            }
            let Some(cache) = self.cache.upgrade() else { return };
            let due = cache.refresh_asked.load(Ordering::SeqCst)
                || match &*lock(&cache.token) {
                    Some(t) => t.refresh_at <= Instant::now() || lock(&cache.last_error).is_some(),
                    None => true,
                };
            if !due {
                continue;
            }
            let after_401 = cache.refresh_asked.load(Ordering::SeqCst);
            match fetch_token(&self.client, &self.token_url, &self.cfg).await {
                Ok((access, lifetime)) => {
                    cache.store(access, lifetime, after_401);
                    backoff = Duration::from_secs(1);
                    tracing::debug!(target: "sink", lifetime_s = lifetime.as_secs(), "renewed the Microsoft Entra access token for Azure Monitor");
                }
                Err(f) => {
                    tracing::warn!(target: "sink", "cannot renew the Azure Monitor access token (will retry in {} s): {}", backoff.as_secs(), self.client.redact(&f.message));
                    *lock(&cache.last_error) = Some(f);
                    backoff = (backoff * 2).min(Duration::from_secs(60));
                }
            }
        }
    }
}

/// The client credentials request; `(token, lifetime)` or a failure explained in plain words.
async fn fetch_token(client: &HttpClient, url: &reqwest::Url, cfg: &AzureMonitorConfig) -> Result<(Secret, Duration), Failure> {
    let secret = cfg.client_secret.as_ref().map(|s| s.expose()).unwrap_or("");
    let body: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "client_credentials")
        .append_pair("client_id", &cfg.client_id)
        .append_pair("client_secret", secret)
        .append_pair("scope", &cfg.scope)
        .finish();
    let body = Bytes::from(body);
    let req = EncodedRequest {
        method: reqwest::Method::POST,
        url: url.clone(),
        headers: vec![("Content-Type".into(), "application/x-www-form-urlencoded".into())],
        raw_bytes: body.len(),
        body,
        events: 0,
    };
    let what = format!(
        "getting an access token from {} for tenant {}",
        crate::sink::settings::redact_url(&cfg.authority_host, crate::sink::settings::Platform::AzureMonitor),
        cfg.tenant_id
    );
    let resp = client.send(&req).await.map_err(|mut f| {
        f.message = format!("{what}: {}", f.message);
        f
    })?;
    let v: Option<Value> = serde_json::from_slice(&resp.body).ok();
    if (200..300).contains(&resp.status) {
        let token = v.as_ref().and_then(|v| v.get("access_token")).and_then(Value::as_str);
        let lifetime = v.as_ref().and_then(|v| v.get("expires_in")).and_then(|e| match e {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.parse().ok(),
            _ => None,
        });
        return match (token, lifetime) {
            (Some(t), Some(l)) if !t.is_empty() => Ok((Secret::new(t), Duration::from_secs(l.max(1)))),
            _ => Err(Failure::new(
                FailureKind::BadResponse,
                Some(resp.status),
                format!("{what}: the answer holds no access_token and expires_in; check siem.azure_monitor.authority_host"),
            )),
        };
    }
    Err(token_error(&what, &resp, v.as_ref(), cfg))
}

/// A token endpoint error in plain words, with the key to fix.
fn token_error(what: &str, resp: &Response, v: Option<&Value>, cfg: &AzureMonitorConfig) -> Failure {
    let status = resp.status;
    let code = v
        .and_then(|v| v.get("error_codes"))
        .and_then(|c| c.get(0))
        .and_then(Value::as_u64)
        .or_else(|| {
            let d = v?.get("error_description")?.as_str()?;
            d.strip_prefix("AADSTS")?.split(':').next()?.parse().ok()
        });
    let said = v
        .and_then(|v| v.get("error_description"))
        .and_then(Value::as_str)
        .map(|d| d.split(" Trace ID:").next().unwrap_or(d).trim().to_string())
        .unwrap_or_else(|| resp.body_summary());
    let said = crate::sink::platform::summarize(&said);
    let (kind, advice) = match (status, code) {
        (_, Some(700016)) => (
            FailureKind::Credentials,
            format!(
                "the app (client id {}) is not known in tenant {}: check siem.azure_monitor.client_id (the app registration's Application (client) ID) and tenant_id (the Directory (tenant) ID where the app is registered)",
                cfg.client_id, cfg.tenant_id
            ),
        ),
        (_, Some(7000215)) => (
            FailureKind::Credentials,
            "the client secret is wrong: set siem.azure_monitor.client_secret to the secret's Value (shown once when it was created), not its Secret ID".to_string(),
        ),
        (_, Some(7000222)) => (
            FailureKind::Credentials,
            "the client secret has expired: create a new one under the app registration's Certificates & secrets and put its Value in siem.azure_monitor.client_secret".to_string(),
        ),
        (_, Some(90002)) | (_, Some(900023)) => (
            FailureKind::Credentials,
            format!("tenant {} does not exist: check siem.azure_monitor.tenant_id (the Directory (tenant) ID)", cfg.tenant_id),
        ),
        (_, Some(70011)) | (_, Some(500011)) => (
            FailureKind::Config,
            "the token scope is not valid: leave siem.azure_monitor.scope unset for the public cloud (https://monitor.azure.com//.default)".to_string(),
        ),
        (429, _) => (FailureKind::RateLimited, "the token endpoint is throttling; will retry".to_string()),
        (500..=599, _) => (FailureKind::ServerError, "the token endpoint had a server error; will retry".to_string()),
        (404, _) => (
            FailureKind::NotFound,
            "there is no token endpoint there: check siem.azure_monitor.authority_host and tenant_id".to_string(),
        ),
        (400 | 401, _) => (
            FailureKind::Credentials,
            "check siem.azure_monitor.tenant_id, client_id and client_secret against the app registration".to_string(),
        ),
        _ => (FailureKind::Config, "check siem.azure_monitor".to_string()),
    };
    let mut f = Failure::new(
        kind,
        Some(status),
        format!("{what}: HTTP {status}: {said}; {advice}. Events stay queued"),
    );
    f.retry_after = resp.retry_after();
    f
}

impl Platform for AzureMonitor {
    fn name(&self) -> &'static str {
        "azure_monitor"
    }

    fn limits(&self) -> (usize, usize) {
        (self.cfg.max_events, self.max_bytes())
    }

    fn encode(&self, events: &[QueuedEvent]) -> EncodedRequest {
        let (max_events, max_bytes) = self.limits();
        let mut raw = BytesMut::new();
        raw.put_u8(b'[');
        let mut n = 0;
        for e in events.iter().take(max_events.max(1)) {
            let line = one_line(&e.data);
            if n > 0 && raw.len() + line.len() + 2 > max_bytes {
                break;
            }
            if n > 0 {
                raw.put_u8(b',');
            }
            raw.put_slice(&line);
            n += 1;
        }
        raw.put_u8(b']');
        let mut headers = vec![("Content-Type".to_string(), "application/json".to_string())];
        if let Some(t) = &*lock(&self.cache.token) {
            headers.push(("Authorization".to_string(), format!("Bearer {}", t.access.expose())));
        }
        EncodedRequest::post(self.ingest_url.clone(), headers, raw.freeze(), n, self.cfg.gzip)
    }

    fn interpret(&self, _events: &[QueuedEvent], resp: &Response) -> Verdict {
        let status = resp.status;
        let body = self.redact(&resp.body_summary());
        let said = if body.is_empty() { String::new() } else { format!(": {body}") };
        let fail = |kind, msg: String| {
            let mut f = Failure::new(kind, Some(status), msg);
            f.retry_after = resp.retry_after();
            f
        };
        match status {
            200..=299 => {
                // The token works: a later 401 (revocation, key rollover) earns a renewal again.
                if let Some(t) = lock(&self.cache.token).as_mut() {
                    t.after_401 = false;
                }
                Verdict::Delivered
            }
            401 => {
                // A token request that keeps failing explains more than the 401 does.
                if let Some(f) = lock(&self.cache.last_error).clone() {
                    return Verdict::Retry(f);
                }
                let (fresh_after_401, expired) = match &*lock(&self.cache.token) {
                    Some(t) => (t.after_401, t.expires_at <= Instant::now()),
                    None => (false, true),
                };
                if fresh_after_401 && !expired {
                    Verdict::Retry(fail(
                        FailureKind::Credentials,
                        format!("Azure Monitor refused a freshly issued access token: HTTP 401{said}; check that siem.azure_monitor.tenant_id is the tenant of the data collection rule and that authority_host and scope match its cloud. Delivery holds; events stay queued"),
                    ))
                } else {
                    if !self.cache.refresh_asked.swap(true, Ordering::SeqCst) {
                        self.wake.notify_one();
                    }
                    Verdict::Retry(fail(
                        FailureKind::Credentials,
                        format!("Azure Monitor refused the access token: HTTP 401{said}; getting a new token and retrying"),
                    ))
                }
            }
            403 => Verdict::Retry(fail(
                FailureKind::Credentials,
                format!("Azure Monitor refused to ingest into data collection rule {}: HTTP 403{said}; give the app registration (client id {}) the \"Monitoring Metrics Publisher\" role on that DCR (role assignments can take up to 30 minutes to apply). Events stay queued", self.cfg.dcr_immutable_id, self.cfg.client_id),
            )),
            404 => Verdict::Retry(fail(
                FailureKind::NotFound,
                format!("Azure Monitor answered HTTP 404{said}; check siem.azure_monitor.endpoint (the DCE's or DCR's logs ingestion URL) and dcr_immutable_id. Events stay queued"),
            )),
            413 => Verdict::TooLarge(fail(
                FailureKind::TooLarge,
                format!("Azure Monitor answered HTTP 413: over its 1 MB per call{said}; sending fewer events per call"),
            )),
            429 => Verdict::Retry(fail(
                FailureKind::RateLimited,
                format!("Azure Monitor is throttling this data collection rule: HTTP 429{said}; will retry after the time it asks for"),
            )),
            400 => Verdict::Rejected(fail(
                FailureKind::Rejected,
                format!("Azure Monitor rejected the records: HTTP 400{said}; check that siem.azure_monitor.stream matches a stream declared in the DCR and that the DCR's columns fit SendAuth events"),
            )),
            _ => classify_status_redacted(resp, "Azure Monitor", |t| self.redact(t)),
        }
    }

    fn prepare<'a>(&'a self, client: &'a HttpClient) -> BoxFuture<'a, Result<(), Failure>> {
        Box::pin(async move {
            if !self.token_fresh() {
                self.refresh(client).await?;
            }
            self.start_refresher(client);
            Ok(())
        })
    }

    fn health_check<'a>(&'a self, client: &'a HttpClient) -> BoxFuture<'a, Option<Result<String, Failure>>> {
        Box::pin(async move {
            Some(self.refresh(client).await.map(|lifetime| {
                format!(
                    "got an access token for client id {} from tenant {} (valid {} s)",
                    self.cfg.client_id,
                    self.cfg.tenant_id,
                    lifetime.as_secs()
                )
            }))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> AzureMonitorConfig {
        AzureMonitorConfig {
            endpoint: None,
            dcr_immutable_id: "dcr-0123456789abcdef0123456789abcdef".into(),
            stream: "Custom-SendAuthEvents".into(),
            tenant_id: "72f988bf-86f1-41af-91ab-2d7cd011db47".into(),
            client_id: "8f3e5a1c-0c2b-4d7e-9a61-5b0c2f9d7e11".into(),
            client_secret: Some(Secret::new("shh~secret")),
            gzip: false,
            ..AzureMonitorConfig::default()
        }
    }

    fn az() -> AzureMonitor {
        AzureMonitor::new("https://my-dce-x1.eastus-1.ingest.monitor.azure.com/".parse().unwrap(), cfg())
    }

    use crate::sink::platform::test_events as evs;

    fn resp(status: u16, body: &str) -> Response {
        Response {
            status,
            headers: Default::default(),
            body: Bytes::from(body.to_string()),
        }
    }

    #[test]
    fn urls_follow_the_documented_shapes() {
        let a = az();
        assert_eq!(
            a.ingest_url.as_str(),
            "https://my-dce-x1.eastus-1.ingest.monitor.azure.com/dataCollectionRules/dcr-0123456789abcdef0123456789abcdef/streams/Custom-SendAuthEvents?api-version=2023-01-01"
        );
        assert_eq!(
            a.token_url.as_str(),
            "https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/oauth2/v2.0/token"
        );
    }

    #[test]
    fn bodies_are_json_arrays_within_one_megabyte() {
        let a = az();
        let r = a.encode(&evs(3));
        assert_eq!(&r.body[..], b"[{\"i\":0},{\"i\":1},{\"i\":2}]");
        assert!(r.headers.iter().all(|(k, _)| k != "Authorization"), "no token yet, no header");
        let big: Vec<QueuedEvent> = (0..5)
            .map(|i| QueuedEvent {
                seq: i,
                data: Bytes::from(format!("{{\"x\":\"{}\"}}", "a".repeat(300_000))),
                accepted_at_ms: 0,
            })
            .collect();
        let r = a.encode(&big);
        assert_eq!(r.events, 3);
        assert!(r.raw_bytes <= AZURE_MAX_CALL_BYTES);
    }

    #[test]
    fn token_errors_are_explained_in_plain_words() {
        let c = cfg();
        let body = |code: u64, err: &str| {
            format!(
                r#"{{"error":"{err}","error_description":"AADSTS{code}: Something. Trace ID: abc Correlation ID: def","error_codes":[{code}]}}"#
            )
        };
        let f = |status, b: String| {
            let r = resp(status, &b);
            let v: Option<Value> = serde_json::from_slice(&r.body).ok();
            token_error("getting a token", &r, v.as_ref(), &c)
        };
        let e = f(400, body(700016, "unauthorized_client"));
        assert!(
            e.message.contains("is not known in tenant") && e.message.contains("client_id"),
            "{}",
            e.message
        );
        assert!(!e.message.contains("Trace ID"), "{}", e.message);
        let e = f(401, body(7000215, "invalid_client"));
        assert!(
            e.message.contains("client secret is wrong") && e.message.contains("not its Secret ID"),
            "{}",
            e.message
        );
        let e = f(400, body(90002, "invalid_request"));
        assert!(
            e.message.contains("does not exist") && e.message.contains("tenant_id"),
            "{}",
            e.message
        );
        assert_eq!(f(503, String::new()).kind, FailureKind::ServerError);
    }

    #[test]
    fn ingestion_answers() {
        let a = az();
        assert_eq!(a.interpret(&evs(1), &resp(204, "")), Verdict::Delivered);
        let v = a.interpret(&evs(1), &resp(403, "{\"error\":{\"code\":\"OperationFailed\"}}"));
        assert!(
            matches!(&v, Verdict::Retry(f) if f.message.contains("Monitoring Metrics Publisher")),
            "{v:?}"
        );
        assert!(matches!(a.interpret(&evs(2), &resp(413, "")), Verdict::TooLarge(_)));
        assert!(matches!(a.interpret(&evs(2), &resp(400, "")), Verdict::Rejected(_)));
        let mut r = resp(429, "");
        r.headers.insert(reqwest::header::RETRY_AFTER, "3".parse().unwrap());
        assert!(matches!(a.interpret(&evs(1), &r), Verdict::Retry(f) if f.retry_after == Some(Duration::from_secs(3))));
        let v = a.interpret(&evs(1), &resp(401, ""));
        assert!(
            matches!(&v, Verdict::Retry(f) if f.message.contains("getting a new token")),
            "{v:?}"
        );
        assert!(a.cache.refresh_asked.load(Ordering::SeqCst), "a 401 asks for a new token");
    }
}
