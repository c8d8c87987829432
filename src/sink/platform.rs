//! The seam between the delivery loop and each SIEM's wire protocol.
//!
//! A [`Platform`] turns queued events into HTTP requests and turns the SIEM's answer into a
//! [`Verdict`]. It never touches the queue: the delivery loop (`sink::delivery`) decides what
//! leaves the queue, and only on the platform's word that the SIEM accepted it (or rejected that
//! event's data for good).
//!
//! Adding a SIEM means one new file implementing this trait, and one line in `sink::build`.
//! [`classify_status`] is the reading of an HTTP status every platform falls back on; the body
//! helpers they share are in `sink::encode`. A platform module imports these, `sink::http` and
//! its own files, never another platform.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;

use crate::queue::QueuedEvent;
use crate::sink::http::HttpClient;

pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One HTTP request built from the first `events` events of a batch.
#[derive(Debug, Clone)]
pub struct EncodedRequest {
    pub method: reqwest::Method,
    pub url: reqwest::Url,
    /// Headers besides authentication (the client adds `siem.auth`).
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    /// How many events (a prefix of the batch given to `encode`) this request carries.
    pub events: usize,
    /// Uncompressed body size. Nothing in the agent reads it: the platforms' unit tests check it
    /// against each SIEM's documented request limit, which applies before compression.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) raw_bytes: usize,
}

impl EncodedRequest {
    /// A POST of `raw` carrying `events` events, gzipped (with `Content-Encoding: gzip`) when
    /// `gzip` is set. `headers` are the platform's own (content type, channel, ...).
    pub fn post(url: reqwest::Url, mut headers: Vec<(String, String)>, raw: Bytes, events: usize, gzip: bool) -> EncodedRequest {
        let raw_bytes = raw.len();
        let body = if gzip {
            headers.push(("Content-Encoding".into(), "gzip".into()));
            crate::sink::encode::gzip(&raw)
        } else {
            raw
        };
        EncodedRequest {
            method: reqwest::Method::POST,
            url,
            headers,
            body,
            events,
            raw_bytes,
        }
    }
}

/// The SIEM's answer, with the body read up to a cap (1 MiB).
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Bytes,
}

impl Response {
    /// The body as a summary for logs and status: see [`summarize`].
    pub(crate) fn body_summary(&self) -> String {
        summarize(&self.body_text(DETAIL_CHARS))
    }

    /// The body for a dead-letter reason (`Failure::detail`), up to [`DETAIL_CHARS`].
    pub(crate) fn body_detail(&self) -> String {
        self.body_text(DETAIL_CHARS)
    }

    pub(crate) fn body_text(&self, max_chars: usize) -> String {
        let s = String::from_utf8_lossy(&self.body);
        let s = s.trim();
        if s.chars().count() > max_chars {
            let cut: String = s.chars().take(max_chars).collect();
            format!("{cut}…")
        } else {
            s.to_string()
        }
    }

    /// `Retry-After` as delay-seconds or an HTTP-date, clamped to 10 minutes.
    pub(crate) fn retry_after(&self) -> Option<Duration> {
        let v = self.headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
        let d = if let Ok(secs) = v.parse::<u64>() {
            Duration::from_secs(secs)
        } else {
            let when = chrono::DateTime::parse_from_rfc2822(v).ok()?;
            let ms = when.timestamp_millis() - chrono::Utc::now().timestamp_millis();
            Duration::from_millis(ms.max(0) as u64)
        };
        Some(d.min(Duration::from_secs(600)))
    }
}

/// What kind of failure, for status, metrics and `sendauth-siem test` hints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    Dns,
    ConnectionRefused,
    Network,
    Tls,
    Timeout,
    /// 5xx
    ServerError,
    /// 429 (and Splunk 503 "server busy")
    RateLimited,
    /// 401 / 403
    Credentials,
    /// 404
    NotFound,
    /// 3xx: redirects are never followed (they would drop the body or leak credentials)
    Redirect,
    /// 408
    RequestTimeout,
    /// 413
    TooLarge,
    /// another 4xx about the data
    Rejected,
    /// a 4xx about the destination's setup (405, 415, Splunk "incorrect index", ...)
    Config,
    /// a 2xx whose body could not be understood
    BadResponse,
    /// the agent's own queue could not be read or updated: not the SIEM's failure, never
    /// counted as a retry of the SIEM nor against an event (`sink::retry`)
    Storage,
}

impl FailureKind {
    /// The kind as logged (`kind=...`).
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Dns => "dns",
            FailureKind::ConnectionRefused => "connection_refused",
            FailureKind::Network => "network",
            FailureKind::Tls => "tls",
            FailureKind::Timeout => "timeout",
            FailureKind::ServerError => "server_error",
            FailureKind::RateLimited => "rate_limited",
            FailureKind::Credentials => "credentials",
            FailureKind::NotFound => "not_found",
            FailureKind::Redirect => "redirect",
            FailureKind::RequestTimeout => "request_timeout",
            FailureKind::TooLarge => "too_large",
            FailureKind::Rejected => "rejected",
            FailureKind::Config => "config",
            FailureKind::BadResponse => "bad_response",
            FailureKind::Storage => "storage",
        }
    }
}

/// Most characters of a SIEM's own words in a [`Failure::message`] (logs, status).
pub(crate) const SUMMARY_CHARS: usize = 200;
/// Most characters of a SIEM's own words in a [`Failure::detail`] (the dead-letter reason).
pub(crate) const DETAIL_CHARS: usize = 2000;

/// Where a SIEM starts quoting the event's own data in an error text: Elasticsearch's
/// `Preview of field's value: '203.0.113.7'`, its immense-term prefix, Java's
/// `For input string: "alice"`. Matched ignoring ASCII case; the text is cut from there to
/// its end (each sits at the end of its sentence or reason).
const VALUE_PREVIEWS: [&str; 3] = [
    "preview of field's value",
    "the prefix of the first immense term is",
    "for input string:",
];

/// A SIEM's error text as a summary fit for logs and the (unauthenticated) status page: any
/// value preview removed (see [`VALUE_PREVIEWS`]), on one line, at most [`SUMMARY_CHARS`]
/// characters. The full text goes to [`Failure::detail`] instead.
pub(crate) fn summarize(text: &str) -> String {
    // ASCII lower-casing keeps byte offsets and char boundaries, so an offset found in the
    // lowered copy cuts `text` at a char boundary.
    let lower = text.to_ascii_lowercase();
    let cut = VALUE_PREVIEWS.iter().filter_map(|m| lower.find(m)).min();
    let kept = match cut {
        Some(at) => format!("{} (value not shown)", text[..at].trim_end()),
        None => text.to_string(),
    };
    let one_line: String = kept.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    crate::sink::encode::clip(&one_line, SUMMARY_CHARS)
}

/// A failed delivery attempt, explained for a human. Neither text ever contains a secret (both
/// pass through `HttpClient::redact`).
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub kind: FailureKind,
    pub http_status: Option<u16>,
    /// For logs, status (`last_error`) and metrics: what the SIEM said is summarised (error
    /// type or code, reason without value previews, bounded; see [`summarize`]).
    pub message: String,
    /// The same explanation with the SIEM's words in full (up to [`DETAIL_CHARS`]), when they
    /// differ: kept only in the dead-letter reason, which holds the event itself anyway and is
    /// read over the 0600 admin socket.
    pub(crate) detail: Option<String>,
    pub(crate) retry_after: Option<Duration>,
}

impl Failure {
    pub fn new(kind: FailureKind, http_status: Option<u16>, message: impl Into<String>) -> Self {
        Failure {
            kind,
            http_status,
            message: message.into(),
            detail: None,
            retry_after: None,
        }
    }

    /// Sets [`Failure::detail`] (nothing when it says no more than the message).
    pub(crate) fn with_detail(mut self, detail: impl Into<String>) -> Self {
        let d = detail.into();
        self.detail = (d != self.message).then_some(d);
        self
    }

    /// The text for a dead-letter reason: the detail if there is one, else the message.
    pub(crate) fn full_text(&self) -> &str {
        self.detail.as_deref().unwrap_or(&self.message)
    }
}

/// Outcome of one event inside a batch whose SIEM reports per-event results.
#[derive(Debug, Clone, PartialEq)]
pub enum EventOutcome {
    Delivered,
    /// Send this event again later (e.g. ES item 429).
    Retry(Failure),
    /// The SIEM rejected this event's data for good: move it to the dead letter.
    DeadLetter(Failure),
}

/// The platform's reading of a response to one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Every event of the request was accepted.
    Delivered,
    /// One outcome per event of the request, in order.
    PerEvent(Vec<EventOutcome>),
    /// The destination as a whole failed (network, 5xx, 429, 401/403, 404, 3xx...): nothing is
    /// dropped, the request is retried with backoff.
    Retry(Failure),
    /// The request was too large: send fewer events per request (a single event that is still
    /// too large is dead-lettered).
    TooLarge(Failure),
    /// The SIEM rejected the request's data without saying which event: a multi-event request is
    /// resent one event at a time to find it; a single event is dead-lettered.
    Rejected(Failure),
}

/// [`classify_status`], with the messages passed through `redact`: for platforms whose own
/// secret (an API key, a client secret) could be echoed in an answer.
pub(crate) fn classify_status_redacted(resp: &Response, what: &str, redact: impl Fn(&str) -> String) -> Verdict {
    let mut v = classify_status(resp, what);
    if let Verdict::Retry(f) | Verdict::TooLarge(f) | Verdict::Rejected(f) = &mut v {
        f.message = redact(&f.message);
        f.detail = f.detail.as_deref().map(&redact);
    }
    v
}

/// Reads a status code the way every HTTP SIEM means it, when the platform has nothing more
/// specific to say. `what` names the SIEM in messages ("SIEM", "Splunk HEC", ...).
pub(crate) fn classify_status(resp: &Response, what: &str) -> Verdict {
    let code = resp.status;
    // What the SIEM said: summarised for logs and status, in full for a dead-letter reason.
    let said = |b: String| if b.is_empty() { String::new() } else { format!(": {b}") };
    let (summary, full) = (said(resp.body_summary()), said(resp.body_detail()));
    let f = |kind, msg: &dyn Fn(&str) -> String| {
        let mut f = Failure::new(kind, Some(code), msg(&summary)).with_detail(msg(&full));
        f.retry_after = resp.retry_after();
        f
    };
    match code {
        200..=299 => Verdict::Delivered,
        300..=399 => {
            let loc = resp
                .headers
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|l| reqwest::Url::parse(l).ok())
                .map(|u| format!(" to {}://{}{}", u.scheme(), u.host_str().unwrap_or("?"), u.path()))
                .unwrap_or_default();
            Verdict::Retry(f(FailureKind::Redirect, &|_| {
                format!("{what} answered HTTP {code} (redirect{loc}); redirects are not followed because they can drop events or leak credentials. Set siem.url to the final URL")
            }))
        }
        401 | 403 => Verdict::Retry(f(FailureKind::Credentials, &|detail| {
            format!("{what} rejected the credentials: HTTP {code}{detail}; check siem.auth (the token or password may be wrong, expired or disabled)")
        })),
        404 => Verdict::Retry(f(FailureKind::NotFound, &|detail| {
            format!("{what} answered HTTP 404 Not Found{detail}; check the path in siem.url")
        })),
        405 | 415 => Verdict::Retry(f(FailureKind::Config, &|detail| {
            format!("{what} answered HTTP {code}{detail}; the endpoint does not accept JSON POSTs: check siem.url and siem.platform")
        })),
        408 => Verdict::Retry(f(FailureKind::RequestTimeout, &|detail| {
            format!("{what} answered HTTP 408 Request Timeout{detail}; will retry")
        })),
        429 => Verdict::Retry(f(FailureKind::RateLimited, &|detail| {
            format!("{what} is rate limiting: HTTP 429{detail}; will retry with backoff")
        })),
        413 => Verdict::TooLarge(f(FailureKind::TooLarge, &|detail| {
            format!("{what} answered HTTP 413: request too large{detail}")
        })),
        400..=499 => Verdict::Rejected(f(FailureKind::Rejected, &|detail| {
            format!("{what} rejected the data: HTTP {code}{detail}")
        })),
        500..=599 => Verdict::Retry(f(FailureKind::ServerError, &|detail| {
            format!("{what} had a server error: HTTP {code}{detail}; will retry")
        })),
        _ => Verdict::Retry(f(FailureKind::BadResponse, &|detail| {
            format!("{what} answered an unexpected HTTP {code}{detail}")
        })),
    }
}

/// A SIEM wire protocol.
pub trait Platform: Send + Sync {
    /// `generic`, `splunk_hec`, `elasticsearch`, `sumo_logic`.
    fn name(&self) -> &'static str;

    /// Most events and bytes (uncompressed) one request may carry.
    fn limits(&self) -> (usize, usize);

    /// Encodes a request carrying a non-empty prefix of `events` (at least one event).
    fn encode(&self, events: &[QueuedEvent]) -> EncodedRequest;

    /// Reads the SIEM's answer to a request that carried `events`.
    fn interpret(&self, events: &[QueuedEvent], resp: &Response) -> Verdict;

    /// One-time setup before the first delivery and after a config change (e.g. installing an
    /// Elasticsearch index template). A failure is reported and retried like a delivery failure.
    fn prepare<'a>(&'a self, _client: &'a HttpClient) -> BoxFuture<'a, Result<(), Failure>> {
        Box::pin(async { Ok(()) })
    }

    /// After a 2xx verdict, confirm that the SIEM really stored the events (e.g. Splunk indexer
    /// acknowledgement). `Err` means: treat the request as not delivered and resend it.
    fn confirm<'a>(&'a self, _client: &'a HttpClient, _resp: &'a Response) -> BoxFuture<'a, Result<(), Failure>> {
        Box::pin(async { Ok(()) })
    }

    /// A health probe to run before the test event in `sendauth-siem test`, if the platform has
    /// one (Splunk `/services/collector/health`). Returns a line describing the result.
    fn health_check<'a>(&'a self, _client: &'a HttpClient) -> BoxFuture<'a, Option<Result<String, Failure>>> {
        Box::pin(async { None })
    }
}

/// `n` small queued events (`{"i":0}`, `{"i":1}`, ...) for the platforms' unit tests.
#[cfg(test)]
pub(crate) fn test_events(n: usize) -> Vec<QueuedEvent> {
    (0..n)
        .map(|i| QueuedEvent {
            seq: i as u64 + 1,
            data: Bytes::from(format!("{{\"i\":{i}}}")),
            accepted_at_ms: 0,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_drop_value_previews_and_stay_short_on_one_line() {
        assert_eq!(
            summarize("failed to parse field [ip_address] of type [long] in document with id 'x'. Preview of field's value: '203.0.113.7'"),
            "failed to parse field [ip_address] of type [long] in document with id 'x'. (value not shown)"
        );
        assert_eq!(
            summarize("bad number: FOR INPUT STRING: \"alice\""),
            "bad number: (value not shown)"
        );
        assert_eq!(
            summarize("immense term in field=\"subject\". The prefix of the first immense term is: '[97, 108]...'"),
            "immense term in field=\"subject\". (value not shown)"
        );
        assert_eq!(summarize("Invalid data format\r\nsee docs"), "Invalid data format  see docs");
        let long = "é".repeat(500);
        assert_eq!(
            summarize(&long).chars().count(),
            SUMMARY_CHARS + 1,
            "200 characters and an ellipsis"
        );
        assert_eq!(summarize("Invalid token"), "Invalid token");
    }

    #[test]
    fn a_detail_is_kept_only_when_it_says_more() {
        let f = Failure::new(FailureKind::Rejected, Some(400), "same").with_detail("same");
        assert_eq!((f.detail.as_deref(), f.full_text()), (None, "same"));
        let f = Failure::new(FailureKind::Rejected, Some(400), "short").with_detail("short and more");
        assert_eq!(f.full_text(), "short and more");
    }
}
