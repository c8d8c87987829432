//! Reading HEC's answers: success, credentials and setup codes, a batch that stopped at
//! `invalid-event-number` (a 400 dead-letters that event, a 503 resends it and the rest), busy.
//!
//! Invariants: the delivered prefix of a partial batch is never resent; code 7 (incorrect index)
//! never dead-letters anything (ARCHITECTURE.md invariants 2 and 3); a 2xx that is not a HEC
//! answer is not taken as delivery.

use serde_json::Value;

use crate::queue::QueuedEvent;
use crate::sink::platform::{classify_status, summarize, EventOutcome, Failure, FailureKind, Response, Verdict};

use super::SplunkHec;

/// The fields of a HEC reply body that matter; absent when the body is not a JSON object.
#[derive(Debug, Default)]
pub(super) struct Reply {
    pub(super) code: Option<i64>,
    pub(super) text: Option<String>,
    pub(super) invalid_event: Option<u64>,
    pub(super) ack_id: Option<u64>,
}

pub(super) fn parse_reply(body: &[u8]) -> Option<Reply> {
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
pub(super) fn what_splunk_said(resp: &Response, reply: Option<&Reply>) -> String {
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

pub(super) fn credentials_hint(code: Option<i64>) -> &'static str {
    match code {
        Some(1) => "the token is disabled in Splunk: enable it (Settings > Data inputs > HTTP Event Collector) or put an enabled token in siem.auth.header",
        Some(2) => "no token reached Splunk: set siem.auth.header to \"Authorization: Splunk <token>\"",
        Some(3) => "check siem.auth.header: it must be \"Authorization: Splunk <token>\" (the word Splunk, a space, then the token)",
        Some(4) => "check siem.auth.header (\"Authorization: Splunk <token>\"): Splunk does not know this token; it may be mistyped or deleted",
        _ => "check siem.auth.header (\"Authorization: Splunk <token>\") and that the token is enabled",
    }
}

impl SplunkHec {
    pub(super) fn interpret_reply(&self, events: &[QueuedEvent], resp: &Response) -> Verdict {
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
}
