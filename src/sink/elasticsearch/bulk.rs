//! The `_bulk` body: per event a `create` action with a content-derived `_id`, then the
//! document on one line (with `@timestamp` for data streams), within `max_batch_events` and
//! `max_batch_bytes`.
//!
//! Invariant: the `_id` of an event is the same on every attempt and after restarts (SHA-256 of
//! its bytes), so a resend answers 409 instead of storing a duplicate (ARCHITECTURE.md
//! invariant 2: nothing leaves the queue before the SIEM has it, and a resend is harmless).

use std::borrow::Cow;

use base64::Engine;
use bytes::{BufMut, Bytes, BytesMut};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::event::parse_timestamp_millis;
use crate::queue::QueuedEvent;
use crate::sink::encode::one_line;
use crate::sink::platform::EncodedRequest;

use super::Elasticsearch;

/// The document `_id` of an event: SHA-256 of its bytes, base64url without padding (43 chars).
pub fn doc_id(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(data))
}

/// The document with `@timestamp` (RFC 3339 UTC, milliseconds) taken from `timestamp`, written
/// in front of the other fields; unchanged if it already has one or no time is known.
pub(super) fn with_at_timestamp(doc: &Bytes, fallback_ms: u64) -> Bytes {
    #[derive(Deserialize)]
    struct Times<'a> {
        #[serde(borrow)]
        timestamp: Option<Cow<'a, str>>,
        #[serde(rename = "@timestamp")]
        at: Option<serde::de::IgnoredAny>,
    }
    let times: Option<Times> = serde_json::from_slice(doc).ok();
    if times.as_ref().is_some_and(|t| t.at.is_some()) {
        return doc.clone();
    }
    let ms = times
        .and_then(|t| t.timestamp)
        .and_then(|t| parse_timestamp_millis(&t))
        .or((fallback_ms > 0).then_some(fallback_ms as i64));
    let Some(at) = ms.and_then(chrono::DateTime::from_timestamp_millis) else {
        return doc.clone();
    };
    let Some(open) = doc.iter().position(|b| !b.is_ascii_whitespace()).filter(|&i| doc[i] == b'{') else {
        return doc.clone();
    };
    let rest = &doc[open + 1..];
    let empty = rest.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'}');
    let mut out = BytesMut::with_capacity(doc.len() + 45);
    out.put_slice(&doc[..=open]);
    out.put_slice(b"\"@timestamp\":\"");
    out.put_slice(at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true).as_bytes());
    out.put_slice(if empty { b"\"" } else { b"\"," });
    out.put_slice(rest);
    out.freeze()
}

impl Elasticsearch {
    pub(super) fn write_event(&self, out: &mut BytesMut, e: &QueuedEvent) {
        out.put_slice(self.action_head.as_bytes());
        out.put_slice(doc_id(&e.data).as_bytes());
        out.put_slice(b"\"}}\n");
        let doc = one_line(&e.data);
        let doc = if self.cfg.data_stream {
            with_at_timestamp(&doc, e.accepted_at_ms)
        } else {
            doc
        };
        out.put_slice(&doc);
        out.put_u8(b'\n');
    }

    pub(super) fn encode_bulk(&self, events: &[QueuedEvent]) -> EncodedRequest {
        let mut raw = BytesMut::new();
        let mut n = 0;
        for e in events.iter().take(self.cfg.max_events.max(1)) {
            let start = raw.len();
            self.write_event(&mut raw, e);
            if n > 0 && raw.len() > self.cfg.max_bytes {
                raw.truncate(start);
                break;
            }
            n += 1;
        }
        let raw = raw.freeze();
        let headers = vec![("Content-Type".to_string(), "application/x-ndjson".to_string())];
        let url = match &self.target {
            Ok(t) => t.bulk_url(),
            Err(_) => "http://invalid.invalid/_bulk".parse().expect("a valid URL"),
        };
        EncodedRequest::post(url, headers, raw, n, self.cfg.gzip)
    }
}
