//! Reading Elasticsearch's answers: the bulk answer item by item (delivered, 409 already there,
//! transient 429/5xx to resend, an error about the document's data to dead-letter, an error
//! about the destination to hold on), and whole-request statuses.
//!
//! Invariants: nothing is assumed delivered (a 2xx that is not a readable bulk answer with one
//! result per event is retried: ARCHITECTURE.md invariant 2); only an item error about that
//! document's data dead-letters it; logs and status get summaries without value previews, the
//! full words go to the dead-letter reason only (invariant 8).

use serde_json::Value;

use crate::queue::QueuedEvent;
use crate::sink::encode::clip;
use crate::sink::http::MAX_RESPONSE_BYTES;
use crate::sink::platform::{classify_status, summarize, EventOutcome, Failure, FailureKind, Response, Verdict, DETAIL_CHARS};

use super::{doc_id, Elasticsearch};

impl Elasticsearch {
    pub(super) fn interpret_bulk(&self, events: &[QueuedEvent], resp: &Response) -> Verdict {
        self.check_product(resp);
        let status = resp.status;
        let bad = |msg: String| Verdict::Retry(Failure::new(FailureKind::BadResponse, Some(status), msg));
        let v: Value = match serde_json::from_slice(&resp.body) {
            Ok(v @ Value::Object(_)) => v,
            // Only a cut-off bulk answer means "too many items to read"; a huge body that is not
            // JSON at all (a proxy, a wrong endpoint) is a bad answer, not a reason to split.
            _ if resp.body.len() >= MAX_RESPONSE_BYTES && resp.body.trim_ascii_start().starts_with(b"{") => {
                return Verdict::TooLarge(Failure::new(
                    FailureKind::TooLarge,
                    Some(status),
                    format!(
                        "Elasticsearch's bulk answer for {} events was longer than the agent reads ({} bytes); sending fewer events per request (lower siem.elasticsearch.max_batch_events to avoid this)",
                        events.len(),
                        MAX_RESPONSE_BYTES
                    ),
                ))
            }
            _ => {
                return bad(format!(
                    "Elasticsearch answered HTTP {status} but not with a bulk result ({:?}); nothing is assumed delivered, will retry. Check that siem.url points at Elasticsearch",
                    resp.body_summary()
                ))
            }
        };
        if v.get("errors") == Some(&Value::Bool(false)) {
            return Verdict::Delivered;
        }
        let Some(items) = v.get("items").and_then(Value::as_array) else {
            return bad(format!(
                "Elasticsearch answered HTTP {status} without per-document results ({:?}); nothing is assumed delivered, will retry",
                resp.body_summary()
            ));
        };
        if items.len() != events.len() {
            return bad(format!(
                "Elasticsearch answered {} results for {} documents; nothing is assumed delivered, will retry",
                items.len(),
                events.len()
            ));
        }
        let mut out = Vec::with_capacity(items.len());
        for (i, (item, e)) in items.iter().zip(events).enumerate() {
            let Some(result) = item.as_object().and_then(|o| o.values().next()) else {
                return bad(format!("Elasticsearch's result {i} is not an action result; will retry"));
            };
            if let Some(id) = result.get("_id").and_then(Value::as_str) {
                if id != doc_id(&e.data) {
                    return bad(format!(
                        "Elasticsearch's result {i} is for document {id:?}, not the one sent there; will retry"
                    ));
                }
            }
            let Some(code) = result.get("status").and_then(Value::as_u64) else {
                return bad(format!("Elasticsearch's result {i} has no status; will retry"));
            };
            out.push(self.item_outcome(code, result.get("error")));
        }
        collapse(out)
    }

    pub(super) fn item_outcome(&self, code: u64, error: Option<&Value>) -> EventOutcome {
        let status = u16::try_from(code).ok();
        let (ty, reason) = error.map(error_parts).unwrap_or_default();
        let said = describe_error(code, error);
        let f = |kind, msg: &dyn Fn(&str) -> String| said.failure(kind, status, msg);
        match code {
            200 | 201 => EventOutcome::Delivered,
            // `create` of an `_id` that exists: this very event was indexed by an earlier attempt.
            409 => EventOutcome::Delivered,
            429 => EventOutcome::Retry(f(FailureKind::RateLimited, &|said| {
                format!("Elasticsearch is overloaded ({said}); resending this document with backoff")
            })),
            408 => EventOutcome::Retry(f(FailureKind::RequestTimeout, &|said| {
                format!("Elasticsearch timed out on this document ({said}); resending")
            })),
            500..=599 => EventOutcome::Retry(f(FailureKind::ServerError, &|said| {
                format!("Elasticsearch failed this document ({said}); resending")
            })),
            401 | 403 => EventOutcome::Retry(f(FailureKind::Credentials, &|said| {
                format!("Elasticsearch refused to write to index {:?}: {said}; give the user or API key in siem.auth the create_doc privilege on it; events stay queued", self.index())
            })),
            _ if is_destination_error(&ty, &reason) || code == 404 => EventOutcome::Retry(f(FailureKind::Config, &|said| {
                format!("Elasticsearch cannot write to index {:?}: {said}; check the index (siem.elasticsearch.index or siem.url) and its settings; events stay queued", self.index())
            })),
            400..=499 => EventOutcome::DeadLetter(f(FailureKind::Rejected, &|said| {
                format!("Elasticsearch rejected this document: {said}")
            })),
            _ => EventOutcome::Retry(f(FailureKind::BadResponse, &|said| {
                format!("Elasticsearch answered this document with {said}; resending")
            })),
        }
    }

    pub(super) fn whole_request(&self, resp: &Response) -> Verdict {
        let status = resp.status;
        let parsed: Option<Value> = serde_json::from_slice(&resp.body).ok();
        let error = parsed.as_ref().and_then(|v| v.get("error"));
        let said = match error {
            Some(e) => describe_error(u64::from(status), Some(e)),
            None => Said::body(status, resp),
        };
        let (ty, _) = error.map(error_parts).unwrap_or_default();
        let fail = |kind, msg: &dyn Fn(&str) -> String| {
            let mut f = said.failure(kind, Some(status), msg);
            f.retry_after = resp.retry_after();
            f
        };
        let index = self.index();
        match status {
            401 => Verdict::Retry(fail(FailureKind::Credentials, &|said| {
                format!("Elasticsearch rejected the credentials: {said}; check siem.auth: basic (username and password) or header \"Authorization: ApiKey <encoded>\"; events stay queued")
            })),
            403 => Verdict::Retry(fail(FailureKind::Credentials, &|said| {
                format!("Elasticsearch refused the bulk write: {said}; give the user or API key in siem.auth the create_doc privilege on index {index:?} (and create_index, or auto_configure for a data stream); events stay queued")
            })),
            404 => Verdict::Retry(fail(FailureKind::NotFound, &|said| {
                format!(
                    "Elasticsearch answered {said} for {}; check the host and path in siem.url; events stay queued",
                    self.bulk_path()
                )
            })),
            413 => Verdict::TooLarge(fail(FailureKind::TooLarge, &|said| {
                format!("Elasticsearch answered {said}: the bulk request exceeds its http.max_content_length; sending fewer events per request (lower siem.elasticsearch.max_batch_bytes to avoid this)")
            })),
            429 => Verdict::Retry(fail(FailureKind::RateLimited, &|said| {
                format!("Elasticsearch is overloaded: {said}; will retry with backoff")
            })),
            // Per-document problems come back per item; a whole-request 400 is about the request.
            // Only a parse error can be one document's fault: find it by sending one at a time.
            400 if is_parse_error(&ty) => Verdict::Rejected(fail(FailureKind::Rejected, &|said| {
                format!("Elasticsearch rejected the data: {said}")
            })),
            400 | 406 | 415 => Verdict::Retry(fail(FailureKind::Config, &|said| {
                format!("Elasticsearch rejected the bulk request itself: {said}; check siem.url and siem.elasticsearch settings; events stay queued")
            })),
            500..=599 => Verdict::Retry(fail(FailureKind::ServerError, &|said| {
                format!("Elasticsearch had a server error: {said}; will retry")
            })),
            _ => classify_status(resp, "Elasticsearch"),
        }
    }

    pub(super) fn bulk_path(&self) -> String {
        match &self.target {
            Ok(t) => t.bulk_url().path().to_string(),
            Err(_) => "/_bulk".into(),
        }
    }
}

/// `type` and `reason` of an Elasticsearch `error` value (an object, or a bare string on very
/// old versions), the reason up to [`DETAIL_CHARS`].
pub(super) fn error_parts(e: &Value) -> (String, String) {
    match e {
        Value::String(s) => (String::new(), clip(s, DETAIL_CHARS)),
        Value::Object(o) => {
            let s = |k: &str| o.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            (s("type"), clip(&s("reason"), DETAIL_CHARS))
        }
        _ => (String::new(), clip(&e.to_string(), DETAIL_CHARS)),
    }
}

/// What Elasticsearch said, twice: `summary` for logs and status, `full` for a dead-letter
/// reason (see `Failure::detail`).
pub(super) struct Said {
    pub(super) summary: String,
    pub(super) full: String,
}

impl Said {
    /// A failure whose message is `msg` around the summary, and whose detail is `msg` around
    /// the full text.
    pub(super) fn failure(&self, kind: FailureKind, status: Option<u16>, msg: impl Fn(&str) -> String) -> Failure {
        Failure::new(kind, status, msg(&self.summary)).with_detail(msg(&self.full))
    }

    /// `HTTP 413`, or `HTTP 502: <body>` for an answer that is not an Elasticsearch error.
    pub(super) fn body(status: u16, resp: &Response) -> Said {
        let with = |b: String| {
            if b.is_empty() {
                format!("HTTP {status}")
            } else {
                format!("HTTP {status}: {b}")
            }
        };
        Said {
            summary: with(resp.body_summary()),
            full: with(resp.body_detail()),
        }
    }
}

/// `HTTP 400 document_parsing_exception: [1:42] failed to parse ... (caused by ...)`. The
/// summary drops value previews from the reason (`Preview of field's value: '…'`) and keeps
/// only the type of `caused_by`, whose reason quotes the value (`For input string: "…"`,
/// `'…' is not an IP string literal`); the full text keeps both.
pub(super) fn describe_error(status: u64, error: Option<&Value>) -> Said {
    let Some(e) = error else {
        let s = format!("HTTP {status}");
        return Said {
            summary: s.clone(),
            full: s,
        };
    };
    let (ty, reason) = error_parts(e);
    let mut head = format!("HTTP {status}");
    if !ty.is_empty() {
        head.push(' ');
        head.push_str(&ty);
    }
    let (mut summary, mut full) = (head.clone(), head);
    if !reason.is_empty() {
        summary.push_str(&format!(": {}", summarize(&reason)));
        full.push_str(&format!(": {reason}"));
    }
    if let Some(c) = e.get("caused_by") {
        let (cty, creason) = error_parts(c);
        if !cty.is_empty() {
            summary.push_str(&format!(" (caused by {cty})"));
        }
        if !cty.is_empty() || !creason.is_empty() {
            full.push_str(&format!(" (caused by {cty}: {creason})"));
        }
    }
    Said { summary, full }
}

/// Errors about where documents go, not about the documents: they hold the queue.
pub(super) fn is_destination_error(ty: &str, reason: &str) -> bool {
    matches!(
        ty,
        "index_not_found_exception"
            | "invalid_index_name_exception"
            | "index_closed_exception"
            | "cluster_block_exception"
            | "security_exception"
            | "no_such_index_exception"
    ) || (ty == "illegal_argument_exception"
        && ["alias", "data stream", "write index", "op_type"]
            .iter()
            .any(|w| reason.contains(w)))
}

pub(super) fn is_parse_error(ty: &str) -> bool {
    matches!(
        ty,
        "x_content_parse_exception"
            | "json_parse_exception"
            | "parse_exception"
            | "mapper_parsing_exception"
            | "document_parsing_exception"
            | "not_x_content_exception"
    )
}

/// One verdict for the whole request when every item went the same way.
pub(super) fn collapse(out: Vec<EventOutcome>) -> Verdict {
    if out.iter().all(|o| *o == EventOutcome::Delivered) {
        return Verdict::Delivered;
    }
    if out.iter().all(|o| matches!(o, EventOutcome::Retry(_))) {
        if let Some(EventOutcome::Retry(f)) = out.first() {
            return Verdict::Retry(f.clone());
        }
    }
    Verdict::PerEvent(out)
}
