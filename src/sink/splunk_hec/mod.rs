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
//!
//! Files: `envelope` (the batch body), `reply` (reading HEC's answers), `ack` (indexer
//! acknowledgement); this one holds the endpoints, the channel and the [`Platform`] seam.

mod ack;
mod envelope;
mod reply;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use crate::queue::QueuedEvent;
use crate::sink::http::HttpClient;
use crate::sink::platform::{BoxFuture, EncodedRequest, Failure, FailureKind, Platform, Response, Verdict};
use crate::sink::settings::SplunkConfig;
use reply::{credentials_hint, parse_reply, what_splunk_said};

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

impl Platform for SplunkHec {
    fn name(&self) -> &'static str {
        "splunk_hec"
    }

    fn limits(&self) -> (usize, usize) {
        (self.cfg.max_events, self.cfg.max_bytes)
    }

    fn encode(&self, events: &[QueuedEvent]) -> EncodedRequest {
        self.encode_batch(events)
    }

    fn interpret(&self, events: &[QueuedEvent], resp: &Response) -> Verdict {
        self.interpret_reply(events, resp)
    }

    fn confirm<'a>(&'a self, client: &'a HttpClient, resp: &'a Response) -> BoxFuture<'a, Result<(), Failure>> {
        Box::pin(self.confirm_indexed(client, resp))
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
