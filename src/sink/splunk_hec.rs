//! Splunk HTTP Event Collector (HEC): JSON envelopes to `/services/collector[/event]`.
//!
//! Protocol facts relied on (`docs/PROTOCOLS.md` §1):
//! - A batch is envelopes written back to back (no array, no commas). Each envelope carries all
//!   of its own metadata: `time` (epoch seconds, a JSON number, decimals allowed), `host`,
//!   `source`, `sourcetype`, `index`, and the payload in `event`.
//! - splunkd reads a batch as a stream. On an error that carries `invalid-event-number` N
//!   (zero-based), events `[0, N)` are already indexed and nothing from N on is. With a 400, event
//!   N itself is bad (codes 6, 12, 13, 15); with a 503 (code 9, busy) it was merely not taken.
//!   Without the number, a 400 means nothing was indexed.
//! - Credentials: 401 code 2 (no token), 401 code 3 (malformed `Authorization`), 403 code 4
//!   (unknown token), 403 code 1 (token disabled). Code 7 "Incorrect index" is a setup problem,
//!   and its `invalid-event-number` is reported to be one too high, so it is not trusted.
//! - `X-Splunk-Request-Channel: <GUID>` on every request. Splunk ignores it unless the token has
//!   indexer acknowledgement (useACK) on, and then requires it (400 code 10 without). With useACK
//!   a success carries `ackId`; `POST /services/collector/ack` with `{"acks":[id]}` answers
//!   `{"acks":{"<id>":true|false}}`; 400 code 14 there means ACK is disabled on the token.
//! - `GET /services/collector/health` answers 200 code 17 when healthy, 503 codes 18–20 when not.
//!
//! Invariants:
//! - the event is written into `event` byte for byte as queued: never re-serialised;
//! - every envelope's `time` comes from the event's own `timestamp`, so Splunk's `_time` is the
//!   time of the authentication, not of delivery;
//! - never resend the delivered prefix of a HEC batch: a partial answer becomes
//!   [`Verdict::PerEvent`] with the prefix `Delivered`;
//! - code 7 never dead-letters anything and never trusts a prefix: all envelopes share the index,
//!   so nothing was indexed and the whole request waits for the setup to be fixed;
//! - with indexer acknowledgement, a batch counts as delivered only once Splunk says it is
//!   indexed (or says it cannot tell: no `ackId`, ACK disabled, so resending would only duplicate
//!   forever); after `ack_timeout` it is resent, and the message says duplicates are possible.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use serde_json::Value;

use crate::config::SplunkConfig;
use crate::event::timestamp_millis;
use crate::queue::QueuedEvent;
use crate::sink::http::HttpClient;
use crate::sink::platform::{
    classify_status, summarize, BoxFuture, EncodedRequest, EventOutcome, Failure, FailureKind, Platform, Response, Verdict,
};

const CHANNEL_HEADER: &str = "X-Splunk-Request-Channel";

/// Where a HEC's endpoints are, derived from `siem.url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    /// Where batches go: `siem.url` as written (or `/services/collector/event` on a bare host).
    pub event: reqwest::Url,
    /// `/services/collector/health`, when the URL has the standard layout.
    pub health: Option<reqwest::Url>,
    /// `/services/collector/ack`, when the URL has the standard layout.
    pub ack: Option<reqwest::Url>,
}

impl Endpoints {
    /// Accepts `/services/collector`, `/services/collector/event` and `/event/1.0` (behind any
    /// path prefix), a bare host (the event endpoint is then added), or any other path (a
    /// HEC-compatible receiver; no health or ack endpoint then). The query string is kept on
    /// every endpoint, so `?token=` authentication reaches all of them.
    pub fn from_url(url: &reqwest::Url) -> Result<Endpoints, String> {
        const COLLECTOR: &str = "/services/collector";
        let path = url.path().to_string();
        let sibling = |prefix: &str, tail: &str| {
            let mut u = url.clone();
            u.set_path(&format!("{prefix}{COLLECTOR}/{tail}"));
            u
        };
        if let Some(i) = path.find(COLLECTOR) {
            let prefix = &path[..i];
            let rest = path[i + COLLECTOR.len()..].trim_end_matches('/');
            return match rest {
                "" | "/event" | "/event/1.0" => Ok(Endpoints {
                    event: url.clone(),
                    health: Some(sibling(prefix, "health")),
                    ack: Some(sibling(prefix, "ack")),
                }),
                r if r.starts_with("/raw") => Err(format!(
                    "points at the HEC raw endpoint ({COLLECTOR}{r}); sendauth-siem sends JSON envelopes: use {COLLECTOR}/event"
                )),
                r => Err(format!("{COLLECTOR}{r} is not a HEC event endpoint; use {COLLECTOR}/event")),
            };
        }
        if path.trim_matches('/').is_empty() {
            return Ok(Endpoints {
                event: sibling("", "event"),
                health: Some(sibling("", "health")),
                ack: Some(sibling("", "ack")),
            });
        }
        Ok(Endpoints {
            event: url.clone(),
            health: None,
            ack: None,
        })
    }
}

pub struct SplunkHec {
    endpoints: Endpoints,
    cfg: SplunkConfig,
    channel: String,
    /// The envelope between the `time` value and the event: `,"host":…,"event":`.
    meta: String,
    /// `audit.agent_id` when audit is on: each envelope then carries the stamp as HEC indexed
    /// `fields` (`sendauth_siem_agent`, `sendauth_siem_seq`), searchable with `tstats`.
    audit_agent: Option<String>,
    warned_no_ack: AtomicBool,
}

impl SplunkHec {
    pub fn new(url: reqwest::Url, cfg: SplunkConfig) -> Self {
        // The config is validated with `Endpoints::from_url`; this fallback is never reached.
        let endpoints = Endpoints::from_url(&url).unwrap_or(Endpoints {
            event: url,
            health: None,
            ack: None,
        });
        let channel = cfg.channel.clone().unwrap_or_else(|| process_channel().to_string());
        let host = cfg.host.clone().or_else(hostname);
        let mut meta = String::new();
        let mut field = |k: &str, v: &str| {
            meta.push_str(&format!(",\"{k}\":{}", serde_json::Value::from(v)));
        };
        if let Some(h) = &host {
            field("host", h);
        }
        field("source", &cfg.source);
        field("sourcetype", &cfg.sourcetype);
        if let Some(i) = &cfg.index {
            field("index", i);
        }
        meta.push_str(",\"event\":");
        SplunkHec {
            endpoints,
            cfg,
            channel,
            meta,
            audit_agent: None,
            warned_no_ack: AtomicBool::new(false),
        }
    }

    /// Adds the audit stamp as indexed `fields` to every envelope (`None`: audit off).
    pub fn with_audit(mut self, agent: Option<String>) -> Self {
        self.audit_agent = agent;
        self
    }

    pub fn channel(&self) -> &str {
        &self.channel
    }

    fn write_envelope(&self, out: &mut BytesMut, e: &QueuedEvent) {
        out.put_u8(b'{');
        // Accepted events always have a timestamp; the acceptance time is a fallback only.
        let millis = timestamp_millis(&e.data).or((e.accepted_at_ms > 0).then_some(e.accepted_at_ms as i64));
        match millis {
            Some(ms) => {
                out.put_slice(b"\"time\":");
                out.put_slice(epoch_seconds(ms).as_bytes());
                out.put_slice(self.meta.as_bytes());
            }
            None => out.put_slice(&self.meta.as_bytes()[1..]),
        }
        out.put_slice(&e.data);
        if let Some(agent) = &self.audit_agent {
            let fields = serde_json::json!({"sendauth_siem_agent": agent, "sendauth_siem_seq": e.seq.to_string()});
            out.put_slice(b",\"fields\":");
            out.put_slice(fields.to_string().as_bytes());
        }
        out.put_u8(b'}');
    }

    fn warn_once(&self, msg: &str) {
        if !self.warned_no_ack.swap(true, Ordering::Relaxed) {
            tracing::warn!("{msg}");
        }
    }

    /// Explains a failure of the index (code 7).
    fn index_message(&self, said: &str) -> String {
        match &self.cfg.index {
            Some(i) => format!(
                "Splunk HEC refused index {i:?}: {said}; the token may not write to it. Add {i:?} to the token's allowed indexes in Splunk, or change siem.splunk_hec.index; events stay queued"
            ),
            None => format!(
                "Splunk HEC refused the token's default index: {said}; set siem.splunk_hec.index to an index the token may write to; events stay queued"
            ),
        }
    }
}

/// One channel per process unless configured: acks are counted per channel.
fn process_channel() -> &'static str {
    static CHANNEL: OnceLock<String> = OnceLock::new();
    CHANNEL.get_or_init(|| uuid::Uuid::new_v4().to_string())
}

/// This machine's host name, Splunk's default `host` (and `audit.agent_id`'s).
pub fn hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes; the result is read up to the first
    // NUL, or the whole buffer if the name was truncated without one.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = std::str::from_utf8(&buf[..end]).ok()?.trim();
    (!name.is_empty()).then(|| name.to_string())
}

/// Epoch milliseconds as HEC `time`: seconds with a three-digit fraction (`1738060260.123`).
fn epoch_seconds(ms: i64) -> String {
    let sign = if ms < 0 { "-" } else { "" };
    let a = ms.unsigned_abs();
    format!("{sign}{}.{:03}", a / 1000, a % 1000)
}

/// The fields of a HEC reply body that matter; absent when the body is not a JSON object.
#[derive(Debug, Default)]
struct Reply {
    code: Option<i64>,
    text: Option<String>,
    invalid_event: Option<u64>,
    ack_id: Option<u64>,
}

fn parse_reply(body: &[u8]) -> Option<Reply> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let o = v.as_object()?;
    let int = |k: &str| match o.get(k)? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    Some(Reply {
        code: int("code"),
        // HEC's texts are a fixed vocabulary; summarised anyway, as from any SIEM.
        text: o.get("text").and_then(Value::as_str).map(summarize),
        invalid_event: int("invalid-event-number").and_then(|n| u64::try_from(n).ok()),
        ack_id: int("ackId").and_then(|n| u64::try_from(n).ok()),
    })
}

/// `HTTP 403, Splunk code 4 "Invalid token"`, or the status and body text when the body is not
/// a HEC reply.
fn what_splunk_said(resp: &Response, reply: Option<&Reply>) -> String {
    match reply {
        Some(Reply { code: Some(c), text, .. }) => match text {
            Some(t) => format!("HTTP {}, Splunk code {c} {t:?}", resp.status),
            None => format!("HTTP {}, Splunk code {c}", resp.status),
        },
        _ => {
            let body = resp.body_summary();
            if body.is_empty() {
                format!("HTTP {}", resp.status)
            } else {
                format!("HTTP {}: {body}", resp.status)
            }
        }
    }
}

fn credentials_hint(code: Option<i64>) -> &'static str {
    match code {
        Some(1) => "the token is disabled in Splunk: enable it (Settings > Data inputs > HTTP Event Collector) or put an enabled token in siem.auth.header",
        Some(2) => "no token reached Splunk: set siem.auth.header to \"Authorization: Splunk <token>\"",
        Some(3) => "check siem.auth.header: it must be \"Authorization: Splunk <token>\" (the word Splunk, a space, then the token)",
        Some(4) => "check siem.auth.header (\"Authorization: Splunk <token>\"): Splunk does not know this token; it may be mistyped or deleted",
        _ => "check siem.auth.header (\"Authorization: Splunk <token>\") and that the token is enabled",
    }
}

impl Platform for SplunkHec {
    fn name(&self) -> &'static str {
        "splunk_hec"
    }

    fn limits(&self) -> (usize, usize) {
        (self.cfg.max_events, self.cfg.max_bytes)
    }

    fn encode(&self, events: &[QueuedEvent]) -> EncodedRequest {
        let mut raw = BytesMut::new();
        let mut n = 0;
        for e in events.iter().take(self.cfg.max_events.max(1)) {
            let start = raw.len();
            self.write_envelope(&mut raw, e);
            if n > 0 && raw.len() > self.cfg.max_bytes {
                raw.truncate(start);
                break;
            }
            n += 1;
        }
        let raw: Bytes = raw.freeze();
        let headers = vec![
            ("Content-Type".to_string(), "application/json".to_string()),
            (CHANNEL_HEADER.to_string(), self.channel.clone()),
        ];
        EncodedRequest::post(self.endpoints.event.clone(), headers, raw, n, self.cfg.gzip)
    }

    fn interpret(&self, events: &[QueuedEvent], resp: &Response) -> Verdict {
        let status = resp.status;
        if (200..300).contains(&status) {
            // HEC answers every request it accepted with `{"text":"Success","code":0}`. A 2xx
            // with another body comes from something else on the path (a proxy's or a login
            // page, a wrong URL): nothing is assumed delivered (the hostile-SIEM campaign found
            // such answers taken as acceptance, and the events lost). An empty body is taken as
            // acceptance, as some HEC-compatible collectors send none.
            if resp.body.iter().all(|b| b.is_ascii_whitespace()) {
                return Verdict::Delivered;
            }
            return match parse_reply(&resp.body) {
                Some(r) if r.code == Some(0) => Verdict::Delivered,
                _ => {
                    let mut f = Failure::new(
                        FailureKind::BadResponse,
                        Some(status),
                        format!(
                            "Splunk HEC answered HTTP {status} but not with a HEC answer ({}): something other than HEC answers at siem.url (a proxy or login page?); events stay queued and are resent",
                            resp.body_text(120)
                        ),
                    );
                    f.retry_after = resp.retry_after();
                    Verdict::Retry(f)
                }
            };
        }
        let reply = parse_reply(&resp.body);
        let code = reply.as_ref().and_then(|r| r.code);
        let said = what_splunk_said(resp, reply.as_ref());
        // Only a number inside the request means anything; anything else is ignored.
        let first_bad = reply
            .as_ref()
            .and_then(|r| r.invalid_event)
            .and_then(|n| usize::try_from(n).ok())
            .filter(|&n| n < events.len());
        let fail = |kind, msg: String| {
            let mut f = Failure::new(kind, Some(status), msg);
            f.retry_after = resp.retry_after();
            f
        };
        match (status, code) {
            (401 | 403, _) => Verdict::Retry(fail(
                FailureKind::Credentials,
                format!("Splunk HEC rejected the credentials: {said}; {}; events stay queued", credentials_hint(code)),
            )),
            (400, Some(7)) => Verdict::Retry(fail(FailureKind::Config, self.index_message(&said))),
            (400, Some(10 | 11)) => Verdict::Retry(fail(
                FailureKind::Config,
                format!("Splunk HEC refused the data channel: {said}; siem.splunk_hec.channel must be a GUID (leave it unset to use a random one); events stay queued"),
            )),
            (400, Some(16)) => Verdict::Retry(fail(
                FailureKind::Config,
                format!("Splunk HEC refused the token in the URL: {said}; remove ?token= from siem.url and set siem.auth.header to \"Authorization: Splunk <token>\"; events stay queued"),
            )),
            (400, _) => match first_bad {
                Some(n) => {
                    let mut out = vec![EventOutcome::Delivered; n];
                    out.push(EventOutcome::DeadLetter(fail(
                        FailureKind::Rejected,
                        format!("Splunk HEC rejected this event: {said} (event {n} of a batch of {})", events.len()),
                    )));
                    out.extend((n + 1..events.len()).map(|_| {
                        EventOutcome::Retry(fail(
                            FailureKind::Rejected,
                            format!("not indexed: Splunk HEC stopped reading the batch at an earlier bad event ({said}); resending"),
                        ))
                    }));
                    Verdict::PerEvent(out)
                }
                None => Verdict::Rejected(fail(FailureKind::Rejected, format!("Splunk HEC rejected the data: {said}"))),
            },
            (503, _) if first_bad.is_some_and(|n| n > 0) => {
                let n = first_bad.unwrap_or(0);
                let mut out = vec![EventOutcome::Delivered; n];
                out.extend((n..events.len()).map(|_| {
                    EventOutcome::Retry(fail(
                        FailureKind::RateLimited,
                        format!("Splunk HEC is busy ({said}) and took only part of the batch; resending the rest with backoff"),
                    ))
                }));
                Verdict::PerEvent(out)
            }
            (503, Some(9)) | (429, _) => Verdict::Retry(fail(
                FailureKind::RateLimited,
                format!("Splunk HEC is busy: {said}; its indexing queues are full. Will retry with backoff"),
            )),
            (404, _) => Verdict::Retry(fail(
                FailureKind::NotFound,
                format!("Splunk HEC answered {said}; check the path in siem.url (normally /services/collector/event) and that HEC is enabled (Settings > Data inputs > HTTP Event Collector > Global Settings); events stay queued"),
            )),
            (413, _) => Verdict::TooLarge(fail(
                FailureKind::TooLarge,
                format!("Splunk HEC answered {said}: the request is larger than its max_content_length; sending fewer events per request (lower siem.splunk_hec.max_batch_bytes to avoid this)"),
            )),
            (415, _) => Verdict::Retry(fail(
                FailureKind::Config,
                format!("Splunk HEC refused the body encoding: {said}; set siem.splunk_hec.gzip: false; events stay queued"),
            )),
            (500..=599, _) => Verdict::Retry(fail(FailureKind::ServerError, format!("Splunk HEC had a server error: {said}; will retry"))),
            _ => classify_status(resp, "Splunk HEC"),
        }
    }

    fn confirm<'a>(&'a self, client: &'a HttpClient, resp: &'a Response) -> BoxFuture<'a, Result<(), Failure>> {
        Box::pin(async move {
            if !self.cfg.indexer_ack {
                return Ok(());
            }
            let Some(ack_url) = &self.endpoints.ack else {
                return Ok(());
            };
            let Some(id) = parse_reply(&resp.body).and_then(|r| r.ack_id) else {
                self.warn_once(
                    "siem.splunk_hec.indexer_ack is on but Splunk returned no ackId: indexer acknowledgement is off for this token. Trusting Splunk's 200; enable acknowledgement on the token or set indexer_ack: false",
                );
                return Ok(());
            };
            let body = Bytes::from(format!("{{\"acks\":[{id}]}}"));
            let req = EncodedRequest {
                method: reqwest::Method::POST,
                url: ack_url.clone(),
                headers: vec![
                    ("Content-Type".to_string(), "application/json".to_string()),
                    (CHANNEL_HEADER.to_string(), self.channel.clone()),
                ],
                raw_bytes: body.len(),
                body,
                events: 0,
            };
            let deadline = Instant::now() + self.cfg.ack_timeout;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                tokio::time::sleep(self.cfg.ack_poll_interval.min(left)).await;
                let last = match client.send(&req).await {
                    Ok(r) if (200..300).contains(&r.status) => match ack_status(&r.body, id) {
                        Some(true) => return Ok(()),
                        Some(false) => "not indexed yet".to_string(),
                        None => format!("an unreadable answer: {}", r.body_summary()),
                    },
                    Ok(r) if r.status == 429 || r.status == 408 || r.status >= 500 => what_splunk_said(&r, parse_reply(&r.body).as_ref()),
                    Ok(r) => {
                        // 4xx: Splunk cannot report acks for this token or channel (code 14: ACK
                        // is disabled). Resending would duplicate without ever confirming.
                        let said = what_splunk_said(&r, parse_reply(&r.body).as_ref());
                        self.warn_once(&format!(
                            "Splunk's ack endpoint answered {said}; trusting the original 200. Enable indexer acknowledgement on the token or set siem.splunk_hec.indexer_ack: false"
                        ));
                        return Ok(());
                    }
                    Err(f) => f.message,
                };
                if Instant::now() >= deadline {
                    return Err(Failure::new(
                        FailureKind::Timeout,
                        None,
                        format!(
                            "Splunk did not confirm indexing the batch (ackId {id}) within {} (siem.splunk_hec.ack_timeout); last answer: {last}. Resending it, which may duplicate events in Splunk",
                            human(self.cfg.ack_timeout)
                        ),
                    ));
                }
            }
        })
    }

    fn health_check<'a>(&'a self, client: &'a HttpClient) -> BoxFuture<'a, Option<Result<String, Failure>>> {
        Box::pin(async move {
            let url = self.endpoints.health.clone()?;
            let resp = match client.get(url, &[(CHANNEL_HEADER.to_string(), self.channel.clone())]).await {
                Ok(r) => r,
                Err(f) => return Some(Err(f)),
            };
            let reply = parse_reply(&resp.body);
            let code = reply.as_ref().and_then(|r| r.code);
            let said = what_splunk_said(&resp, reply.as_ref());
            let fail = |kind, msg: String| Some(Err(Failure::new(kind, Some(resp.status), msg)));
            match (resp.status, code) {
                (200..=299, _) => Some(Ok(format!("Splunk HEC health: {said}"))),
                (503, _) => fail(
                    FailureKind::ServerError,
                    format!("Splunk HEC is unhealthy: {said}; it takes no events until its queues drain or its ack service recovers"),
                ),
                (400, Some(21 | 22)) => fail(
                    FailureKind::Credentials,
                    format!(
                        "Splunk HEC rejected the credentials: {said}; {}",
                        credentials_hint(if code == Some(22) { Some(1) } else { Some(4) })
                    ),
                ),
                _ => match self.interpret(&[], &resp) {
                    Verdict::Retry(f) | Verdict::TooLarge(f) | Verdict::Rejected(f) => Some(Err(f)),
                    Verdict::Delivered | Verdict::PerEvent(_) => Some(Ok(format!("Splunk HEC health: {said}"))),
                },
            }
        })
    }
}

/// Reads `{"acks":{"<id>":true}}`; `None` when the answer does not mention `id`.
fn ack_status(body: &[u8], id: u64) -> Option<bool> {
    let v: Value = serde_json::from_slice(body).ok()?;
    v.get("acks")?.get(id.to_string())?.as_bool()
}

fn human(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::test_server;
    use std::io::Read;

    const EV: &str = r#"{"event_type":"transaction.denied","timestamp":"2025-01-28T10:31:00.123Z","transaction_id":"tx-1","subject":"user@company.com","ip_address":"203.0.113.42","org_id":"org-1"}"#;

    fn cfg() -> SplunkConfig {
        SplunkConfig {
            index: Some("sendauth".into()),
            source: "sendauth-siem".into(),
            sourcetype: "_json".into(),
            host: Some("idp-1".into()),
            gzip: false,
            max_events: 1000,
            max_bytes: 1_000_000,
            indexer_ack: false,
            ack_timeout: Duration::from_millis(300),
            ack_poll_interval: Duration::from_millis(10),
            channel: None,
        }
    }

    fn hec(cfg: SplunkConfig) -> SplunkHec {
        SplunkHec::new("https://splunk.example.com:8088/services/collector".parse().unwrap(), cfg)
    }

    fn ev(i: usize) -> QueuedEvent {
        QueuedEvent {
            seq: i as u64 + 1,
            data: Bytes::from(EV.replace("tx-1", &format!("tx-{i}"))),
            accepted_at_ms: 5,
        }
    }

    fn evs(n: usize) -> Vec<QueuedEvent> {
        (0..n).map(ev).collect()
    }

    fn resp(status: u16, body: &str) -> Response {
        Response {
            status,
            headers: Default::default(),
            body: Bytes::from(body.to_string()),
        }
    }

    /// Splits a body of concatenated envelopes the way splunkd reads it: as a JSON stream.
    fn envelopes(body: &[u8]) -> Vec<Value> {
        serde_json::Deserializer::from_slice(body)
            .into_iter::<Value>()
            .map(|v| v.unwrap())
            .collect()
    }

    fn failure(v: &Verdict) -> &Failure {
        match v {
            Verdict::Retry(f) | Verdict::TooLarge(f) | Verdict::Rejected(f) => f,
            other => panic!("expected a failure verdict, got {other:?}"),
        }
    }

    #[test]
    fn envelope_carries_event_time_metadata_and_the_raw_event() {
        let h = hec(cfg());
        let r = h.encode(&evs(1));
        let body = std::str::from_utf8(&r.body).unwrap();
        assert!(body.starts_with("{\"time\":1738060260.123,"), "{body}");
        let raw = std::str::from_utf8(&ev(0).data).unwrap().to_string();
        assert!(
            body.ends_with(&format!("\"event\":{raw}}}")),
            "event bytes are not copied verbatim: {body}"
        );
        let env = &envelopes(&r.body)[0];
        assert_eq!(env["time"], serde_json::json!(1738060260.123));
        assert!(env["time"].is_f64(), "time must be a JSON number");
        assert_eq!(env["host"], "idp-1");
        assert_eq!(env["source"], "sendauth-siem");
        assert_eq!(env["sourcetype"], "_json");
        assert_eq!(env["index"], "sendauth");
        assert_eq!(env["event"]["event_type"], "transaction.denied");
        assert_eq!(r.url.path(), "/services/collector");
        assert!(r
            .headers
            .iter()
            .any(|(k, v)| k == CHANNEL_HEADER && uuid::Uuid::parse_str(v).is_ok()));
        assert!(r.headers.iter().any(|(k, v)| k == "Content-Type" && v == "application/json"));
    }

    #[test]
    fn defaults_are_json_sourcetype_this_host_and_the_tokens_index() {
        let c = crate::config::Config::parse_with_env(
            "siem:\n  url: https://s.example.com:8088/services/collector/event\nsources:\n  socket: { path: /tmp/x.sock }\nqueue:\n  path: /tmp/q\n",
            &|_| None,
        )
        .unwrap();
        let h = hec(c.siem.splunk_hec);
        let env = &envelopes(&h.encode(&evs(1)).body)[0];
        assert_eq!(env["sourcetype"], "_json");
        assert_eq!(env["host"].as_str(), hostname().as_deref());
        assert!(env.get("index").is_none(), "no index configured: the token's default applies");
    }

    #[test]
    fn time_keeps_milliseconds_and_handles_offsets_and_whole_seconds() {
        assert_eq!(epoch_seconds(1_738_060_260_000), "1738060260.000");
        assert_eq!(epoch_seconds(1_738_060_260_007), "1738060260.007");
        assert_eq!(epoch_seconds(-1), "-0.001");
        let h = hec(cfg());
        let e = QueuedEvent {
            seq: 1,
            data: Bytes::from(EV.replace("2025-01-28T10:31:00.123Z", "2025-01-28T11:31:00+01:00")),
            accepted_at_ms: 0,
        };
        assert_eq!(envelopes(&h.encode(&[e]).body)[0]["time"], serde_json::json!(1738060260.0));
        let bad = QueuedEvent {
            seq: 1,
            data: Bytes::from_static(b"{\"timestamp\":\"soon\"}"),
            accepted_at_ms: 0,
        };
        let env = &envelopes(&h.encode(&[bad]).body)[0];
        assert!(env.get("time").is_none(), "without any time Splunk uses its receipt time: {env}");
    }

    #[test]
    fn batch_is_concatenated_envelopes_in_order() {
        let h = hec(cfg());
        let r = h.encode(&evs(3));
        assert_eq!(r.events, 3);
        assert!(!r.body.starts_with(b"["), "never an array");
        let envs = envelopes(&r.body);
        let ids: Vec<_> = envs
            .iter()
            .map(|e| e["event"]["transaction_id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(ids, ["tx-0", "tx-1", "tx-2"]);
        assert_eq!(r.raw_bytes, r.body.len());
    }

    #[test]
    fn byte_cap_limits_the_batch_but_never_below_one_event() {
        let one = hec(cfg()).encode(&evs(1)).body.len();
        let mut c = cfg();
        c.max_bytes = one * 2 + 5;
        let r = hec(c.clone()).encode(&evs(5));
        assert_eq!(r.events, 2);
        assert!(r.body.len() <= c.max_bytes);
        c.max_bytes = 10;
        assert_eq!(hec(c.clone()).encode(&evs(5)).events, 1);
        c.max_bytes = 1_000_000;
        c.max_events = 3;
        assert_eq!(hec(c).encode(&evs(5)).events, 3);
    }

    #[test]
    fn gzip_round_trips() {
        let mut c = cfg();
        c.gzip = true;
        let h = hec(c);
        let r = h.encode(&evs(4));
        assert!(r.headers.iter().any(|(k, v)| k == "Content-Encoding" && v == "gzip"));
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(&r.body[..]).read_to_end(&mut raw).unwrap();
        assert_eq!(raw.len(), r.raw_bytes);
        assert_eq!(envelopes(&raw).len(), 4);
    }

    #[test]
    fn configured_channel_is_used_else_one_per_process() {
        let mut c = cfg();
        c.channel = Some("0aeeac95-ac74-4aa9-b30d-6c4c0ac581ba".into());
        assert_eq!(hec(c).channel(), "0aeeac95-ac74-4aa9-b30d-6c4c0ac581ba");
        assert_eq!(hec(cfg()).channel(), hec(cfg()).channel(), "a config reload keeps the channel");
    }

    #[test]
    fn endpoints_follow_the_url() {
        let ep = |u: &str| Endpoints::from_url(&u.parse().unwrap());
        let e = ep("https://s:8088/services/collector/event?auto_extract_timestamp=true").unwrap();
        assert_eq!(
            e.event.as_str(),
            "https://s:8088/services/collector/event?auto_extract_timestamp=true"
        );
        assert_eq!(
            e.health.unwrap().as_str(),
            "https://s:8088/services/collector/health?auto_extract_timestamp=true"
        );
        assert_eq!(e.ack.unwrap().path(), "/services/collector/ack");
        let e = ep("https://proxy/splunk/services/collector").unwrap();
        assert_eq!(e.ack.unwrap().path(), "/splunk/services/collector/ack");
        let e = ep("https://s:8088").unwrap();
        assert_eq!(e.event.path(), "/services/collector/event");
        let e = ep("https://logscale/api/v1/ingest/hec").unwrap();
        assert_eq!((e.event.path(), e.health, e.ack), ("/api/v1/ingest/hec", None, None));
        assert!(ep("https://s:8088/services/collector/raw")
            .unwrap_err()
            .contains("/services/collector/event"));
    }

    #[test]
    fn success_is_delivered() {
        let h = hec(cfg());
        assert_eq!(
            h.interpret(&evs(3), &resp(200, r#"{"text":"Success","code":0}"#)),
            Verdict::Delivered
        );
        assert_eq!(
            h.interpret(&evs(3), &resp(200, r#"{"text":"Success","code":0,"ackId":7}"#)),
            Verdict::Delivered
        );
    }

    #[test]
    fn credential_codes_hold_with_splunks_code_and_text() {
        let h = hec(cfg());
        for (status, code, text) in [
            (403, 1, "Token disabled"),
            (401, 2, "Token is required"),
            (401, 3, "Invalid authorization"),
            (403, 4, "Invalid token"),
        ] {
            let v = h.interpret(&evs(2), &resp(status, &format!(r#"{{"text":"{text}","code":{code}}}"#)));
            let f = failure(&v);
            assert!(matches!(v, Verdict::Retry(_)), "{v:?}");
            assert_eq!((f.kind, f.http_status), (FailureKind::Credentials, Some(status)));
            let want = format!("Splunk HEC rejected the credentials: HTTP {status}, Splunk code {code} \"{text}\"; ");
            assert!(f.message.starts_with(&want), "{}", f.message);
            assert!(f.message.contains("siem.auth.header"), "{}", f.message);
        }
    }

    #[test]
    fn partial_batch_delivers_the_prefix_dead_letters_event_n_and_resends_the_rest() {
        let h = hec(cfg());
        for (code, text) in [
            (6, "Invalid data format"),
            (12, "Event field is required"),
            (13, "Event field cannot be blank"),
            (15, "Error in handling indexed fields"),
        ] {
            let body = format!(r#"{{"text":"{text}","code":{code},"invalid-event-number":2}}"#);
            let Verdict::PerEvent(out) = h.interpret(&evs(5), &resp(400, &body)) else {
                panic!("code {code}")
            };
            assert_eq!(out.len(), 5);
            assert_eq!(
                out[..2],
                [EventOutcome::Delivered, EventOutcome::Delivered],
                "the prefix is never resent"
            );
            match &out[2] {
                EventOutcome::DeadLetter(f) => {
                    assert_eq!(f.kind, FailureKind::Rejected);
                    assert!(f.message.contains(&format!("Splunk code {code} \"{text}\"")), "{}", f.message);
                }
                o => panic!("event 2 should be dead-lettered, got {o:?}"),
            }
            assert!(out[3..].iter().all(|o| matches!(o, EventOutcome::Retry(_))), "{out:?}");
        }
    }

    #[test]
    fn bad_first_event_of_a_single_event_request_is_dead_lettered() {
        let h = hec(cfg());
        let v = h.interpret(
            &evs(1),
            &resp(400, r#"{"text":"Invalid data format","code":6,"invalid-event-number":0}"#),
        );
        assert!(
            matches!(&v, Verdict::PerEvent(o) if matches!(o[..], [EventOutcome::DeadLetter(_)])),
            "{v:?}"
        );
    }

    #[test]
    fn event_number_outside_the_request_is_ignored() {
        let h = hec(cfg());
        for n in ["3", "99", "-1", "\"x\""] {
            let v = h.interpret(
                &evs(3),
                &resp(
                    400,
                    &format!(r#"{{"text":"Invalid data format","code":6,"invalid-event-number":{n}}}"#),
                ),
            );
            assert!(matches!(v, Verdict::Rejected(_)), "{n}: {v:?}");
        }
        // A string number, as some receivers send it, is understood.
        let v = h.interpret(
            &evs(3),
            &resp(400, r#"{"text":"Invalid data format","code":6,"invalid-event-number":"1"}"#),
        );
        assert!(matches!(&v, Verdict::PerEvent(o) if o[0] == EventOutcome::Delivered), "{v:?}");
    }

    #[test]
    fn format_error_without_event_number_rejects_the_batch() {
        let v = hec(cfg()).interpret(&evs(3), &resp(400, r#"{"text":"Invalid data format","code":6}"#));
        assert!(
            matches!(&v, Verdict::Rejected(f) if f.message.contains("Splunk code 6 \"Invalid data format\"")),
            "{v:?}"
        );
    }

    #[test]
    fn incorrect_index_holds_everything_and_names_the_index() {
        let h = hec(cfg());
        // Reported one too high on splunkd: never trusted as a delivered prefix.
        let v = h.interpret(
            &evs(3),
            &resp(400, r#"{"text":"Incorrect index","code":7,"invalid-event-number":1}"#),
        );
        let f = failure(&v);
        assert!(matches!(v, Verdict::Retry(_)));
        assert_eq!(f.kind, FailureKind::Config);
        assert!(
            f.message.contains("\"sendauth\"") && f.message.contains("siem.splunk_hec.index"),
            "{}",
            f.message
        );
        assert!(f.message.contains("Splunk code 7 \"Incorrect index\""), "{}", f.message);
    }

    #[test]
    fn busy_is_rate_limited_and_a_partial_busy_keeps_the_prefix() {
        let h = hec(cfg());
        let mut r = resp(503, r#"{"text":"Server is busy","code":9}"#);
        r.headers.insert(reqwest::header::RETRY_AFTER, "7".parse().unwrap());
        let v = h.interpret(&evs(3), &r);
        let f = failure(&v);
        assert!(matches!(v, Verdict::Retry(_)));
        assert_eq!((f.kind, f.retry_after), (FailureKind::RateLimited, Some(Duration::from_secs(7))));
        let v = h.interpret(
            &evs(3),
            &resp(503, r#"{"text":"Server is busy","code":9,"invalid-event-number":1}"#),
        );
        let Verdict::PerEvent(out) = v else { panic!("{v:?}") };
        assert_eq!(out[0], EventOutcome::Delivered);
        assert!(
            out[1..]
                .iter()
                .all(|o| matches!(o, EventOutcome::Retry(f) if f.kind == FailureKind::RateLimited)),
            "event N itself is resent: {out:?}"
        );
        let v = h.interpret(
            &evs(3),
            &resp(503, r#"{"text":"Server is busy","code":9,"invalid-event-number":0}"#),
        );
        assert!(matches!(v, Verdict::Retry(_)), "nothing taken: a plain retry with backoff");
    }

    #[test]
    fn other_statuses() {
        let h = hec(cfg());
        let kind = |s: u16, b: &str| {
            let v = h.interpret(&evs(2), &resp(s, b));
            (std::mem::discriminant(&v), failure(&v).kind)
        };
        let retry = std::mem::discriminant(&Verdict::Retry(Failure::new(FailureKind::Network, None, "")));
        let too_large = std::mem::discriminant(&Verdict::TooLarge(Failure::new(FailureKind::Network, None, "")));
        assert_eq!(
            kind(413, "Content-Length of 9999999 too large (maximum is 1000000)"),
            (too_large, FailureKind::TooLarge)
        );
        assert_eq!(
            kind(404, r#"{"text":"The requested URL was not found on this server.","code":404}"#),
            (retry, FailureKind::NotFound)
        );
        assert_eq!(
            kind(500, r#"{"text":"Internal server error","code":8}"#),
            (retry, FailureKind::ServerError)
        );
        assert_eq!(kind(503, ""), (retry, FailureKind::ServerError));
        assert_eq!(kind(429, ""), (retry, FailureKind::RateLimited));
        assert_eq!(kind(415, ""), (retry, FailureKind::Config));
        assert_eq!(
            kind(400, r#"{"text":"Data channel is missing","code":10}"#),
            (retry, FailureKind::Config)
        );
        assert_eq!(
            kind(400, r#"{"text":"Query string authorization is not enabled","code":16}"#),
            (retry, FailureKind::Config)
        );
        assert_eq!(kind(301, ""), (retry, FailureKind::Redirect));
    }

    /// The config problems for a `siem:` section (YAML lines, indented two spaces), joined.
    fn config_errors(siem: &str) -> String {
        let yaml = format!("siem:\n{siem}sources:\n  socket: {{ path: /tmp/x.sock }}\nqueue:\n  path: /tmp/q\n");
        crate::config::Config::parse_with_env(&yaml, &|_| None)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn config_rejects_endpoints_the_agent_cannot_use() {
        let e = config_errors("  url: https://s.example.com:8088/services/collector/raw\n");
        assert!(e.contains("siem.url: points at the HEC raw endpoint"), "{e}");
        let e = config_errors(
            "  url: https://logscale.example.com/api/v1/ingest/hec\n  platform: splunk_hec\n  splunk_hec: { indexer_ack: true }\n",
        );
        assert!(e.starts_with("siem.splunk_hec.indexer_ack: needs siem.url"), "{e}");
        assert_eq!(
            config_errors("  url: https://s.example.com:8088/services/collector\n  splunk_hec: { indexer_ack: true }\n"),
            ""
        );
    }

    proptest::proptest! {
        #[test]
        fn interpret_never_panics_on_garbage(status in 100u16..600, body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200), n in 0usize..4) {
            let h = hec(cfg());
            let events = evs(n.max(1));
            let _ = h.interpret(&events, &resp_bytes(status, body.clone()));
            let _ = parse_reply(&body);
            let _ = ack_status(&body, 3);
        }

        #[test]
        fn interpret_never_panics_on_odd_hec_replies(status in 100u16..600, code in -3i64..30, n in -3i64..8, events in 1usize..5) {
            let h = hec(cfg());
            let body = format!(r#"{{"text":"x","code":{code},"invalid-event-number":{n},"ackId":{n}}}"#);
            let v = h.interpret(&evs(events), &resp(status, &body));
            if let Verdict::PerEvent(out) = v {
                proptest::prop_assert_eq!(out.len(), events);
            }
        }
    }

    #[test]
    fn a_2xx_that_is_not_a_hec_answer_is_not_taken_as_delivered() {
        let h = hec(cfg());
        assert_eq!(
            h.interpret(&evs(2), &resp(200, r#"{"text":"Success","code":0}"#)),
            Verdict::Delivered
        );
        assert_eq!(h.interpret(&evs(2), &resp(200, "")), Verdict::Delivered);
        for body in ["<html><body>Sign in</body></html>", "{\"status\":\"ok\"}", "xxxxxxxx"] {
            match h.interpret(&evs(2), &resp(200, body)) {
                Verdict::Retry(f) => {
                    assert_eq!(f.kind, FailureKind::BadResponse);
                    assert!(f.message.contains("not with a HEC answer"), "{}", f.message);
                }
                v => panic!("{body}: {v:?}"),
            }
        }
    }

    fn resp_bytes(status: u16, body: Vec<u8>) -> Response {
        Response {
            status,
            headers: Default::default(),
            body: body.into(),
        }
    }

    fn client_for(url: &str) -> HttpClient {
        let yaml = format!(
            "siem:\n  url: {url}\n  auth:\n    header: \"Authorization: Splunk abcdef-123456\"\nsources:\n  socket: {{ path: /tmp/x.sock }}\nqueue:\n  path: /tmp/q\n"
        );
        let c = crate::config::Config::parse_with_env(&yaml, &|_| None).unwrap();
        HttpClient::new(&c.siem).unwrap()
    }

    fn ack_cfg() -> SplunkConfig {
        let mut c = cfg();
        c.indexer_ack = true;
        c
    }

    #[tokio::test]
    async fn confirm_polls_the_ack_endpoint_until_splunk_says_indexed() {
        let polls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let p = polls.clone();
        let srv = test_server::serve(move |req| {
            assert_eq!((req.method.as_str(), req.path.as_str()), ("POST", "/services/collector/ack"));
            assert_eq!(&req.body[..], br#"{"acks":[7]}"#);
            let done = p.fetch_add(1, Ordering::SeqCst) >= 2;
            (200, format!(r#"{{"acks":{{"7":{done}}}}}"#))
        })
        .await;
        let url = format!("http://{}/services/collector/event", srv.addr);
        let h = SplunkHec::new(url.parse().unwrap(), ack_cfg());
        let client = client_for(&url);
        h.confirm(&client, &resp(200, r#"{"text":"Success","code":0,"ackId":7}"#))
            .await
            .unwrap();
        assert_eq!(polls.load(Ordering::SeqCst), 3);
        let reqs = srv.requests();
        assert!(reqs.iter().all(|r| r.header(CHANNEL_HEADER) == Some(h.channel().to_string())));
        assert!(reqs
            .iter()
            .all(|r| r.header("authorization").as_deref() == Some("Splunk abcdef-123456")));
    }

    #[tokio::test]
    async fn confirm_times_out_so_the_batch_is_resent() {
        let srv = test_server::serve(|_| (200, r#"{"acks":{"7":false}}"#.to_string())).await;
        let url = format!("http://{}/services/collector", srv.addr);
        let h = SplunkHec::new(url.parse().unwrap(), ack_cfg());
        let err = h
            .confirm(&client_for(&url), &resp(200, r#"{"text":"Success","code":0,"ackId":7}"#))
            .await
            .unwrap_err();
        assert_eq!(err.kind, FailureKind::Timeout);
        assert!(
            err.message.contains("ackId 7") && err.message.contains("siem.splunk_hec.ack_timeout"),
            "{}",
            err.message
        );
        assert!(err.message.contains("not indexed yet"), "{}", err.message);
        assert!(srv.requests().len() >= 2, "polls until the deadline");
    }

    #[tokio::test]
    async fn confirm_trusts_the_200_when_splunk_cannot_ack() {
        let srv = test_server::serve(|_| (400, r#"{"text":"ACK is disabled","code":14}"#.to_string())).await;
        let url = format!("http://{}/services/collector", srv.addr);
        let h = SplunkHec::new(url.parse().unwrap(), ack_cfg());
        let client = client_for(&url);
        h.confirm(&client, &resp(200, r#"{"text":"Success","code":0,"ackId":1}"#))
            .await
            .unwrap();
        // No ackId at all: not even a poll.
        h.confirm(&client, &resp(200, r#"{"text":"Success","code":0}"#)).await.unwrap();
        assert_eq!(srv.requests().len(), 1);
        // Acknowledgement off: nothing to confirm.
        hec(cfg()).confirm(&client, &resp(200, r#"{"ackId":1}"#)).await.unwrap();
        assert_eq!(srv.requests().len(), 1);
    }

    #[tokio::test]
    async fn health_check_reports_healthy_and_unhealthy() {
        let srv = test_server::serve(|req| {
            assert_eq!((req.method.as_str(), req.path.as_str()), ("GET", "/services/collector/health"));
            (200, r#"{"text":"HEC is healthy","code":17}"#.to_string())
        })
        .await;
        let url = format!("http://{}/services/collector/event", srv.addr);
        let h = SplunkHec::new(url.parse().unwrap(), cfg());
        let line = h.health_check(&client_for(&url)).await.unwrap().unwrap();
        assert!(line.contains("HEC is healthy"), "{line}");

        let srv = test_server::serve(|_| (503, r#"{"text":"HEC is unhealthy, queues are full","code":18}"#.to_string())).await;
        let url = format!("http://{}/services/collector/event", srv.addr);
        let h = SplunkHec::new(url.parse().unwrap(), cfg());
        let f = h.health_check(&client_for(&url)).await.unwrap().unwrap_err();
        assert!(f.message.contains("queues are full"), "{}", f.message);

        let srv = test_server::serve(|_| (400, r#"{"text":"Invalid token","code":21}"#.to_string())).await;
        let url = format!("http://{}/services/collector/event", srv.addr);
        let h = SplunkHec::new(url.parse().unwrap(), cfg());
        let f = h.health_check(&client_for(&url)).await.unwrap().unwrap_err();
        assert_eq!(f.kind, FailureKind::Credentials);
        assert!(!f.message.contains("abcdef-123456"));
    }
}
