//! Datadog Logs: JSON arrays of log entries POSTed to the site's intake,
//! `https://http-intake.logs.<site>/api/v2/logs`, with the API key in `DD-API-KEY`.
//!
//! Protocol facts relied on (`docs/PROTOCOLS.md` §4, docs.datadoghq.com/api/latest/logs/send-logs):
//! - the body is one JSON object or an array of objects; each object is a log entry whose
//!   top-level keys are attributes, with the reserved ones `ddsource`, `ddtags` (`k:v,k:v`),
//!   `service`, `hostname`, `message`;
//! - at most 5 MB uncompressed per request, 1000 entries per array, 1 MB per entry (a larger
//!   entry is accepted and *truncated* behind a 2xx); `Content-Encoding: gzip` is recommended;
//! - 202 accepted; 400 bad payload; 401 missing key; 403 invalid key; 408, 429, 5xx retry later;
//!   413 payload too large.
//!
//! Invariants:
//! - each event is one entry: its own object, byte for byte, with the configured reserved
//!   attributes added in front only when the event does not already carry them (the event's own
//!   value wins); an event that is not a JSON object is sent as `{"message": "<its text>"}`;
//! - a request never exceeds the configured (at most 5 MB) size or 1000 entries; an entry over
//!   Datadog's 1 MB limit travels alone and is dead-lettered instead of being kept truncated:
//!   see [`Datadog::interpret`];
//! - the API key never appears in a message (Datadog may echo it; it is redacted).

use bytes::{BufMut, Bytes, BytesMut};
use serde_json::value::RawValue;

use crate::queue::QueuedEvent;
use crate::sink::platform::{classify_status_redacted, EncodedRequest, Failure, FailureKind, Platform, Response, Verdict};
use crate::sink::settings::{DatadogConfig, DATADOG_MAX_ENTRIES, DATADOG_MAX_ENTRY_BYTES, DATADOG_MAX_PAYLOAD_BYTES};

pub struct Datadog {
    url: reqwest::Url,
    cfg: DatadogConfig,
    headers: Vec<(String, String)>,
    /// The reserved attributes, as `(key, JSON-encoded value)`.
    attrs: Vec<(&'static str, String)>,
}

impl Datadog {
    pub fn new(url: reqwest::Url, cfg: DatadogConfig) -> Self {
        let mut headers = vec![("Content-Type".to_string(), "application/json".to_string())];
        if let Some(k) = &cfg.api_key {
            headers.push(("DD-API-KEY".to_string(), k.expose().to_string()));
        }
        let quote = |s: &str| serde_json::Value::String(s.to_string()).to_string();
        let mut attrs = vec![("ddsource", quote(&cfg.ddsource)), ("service", quote(&cfg.service))];
        if let Some(t) = &cfg.ddtags {
            attrs.push(("ddtags", quote(t)));
        }
        if let Some(h) = &cfg.hostname {
            attrs.push(("hostname", quote(h)));
        }
        Datadog { url, cfg, headers, attrs }
    }

    fn max_bytes(&self) -> usize {
        self.cfg.max_bytes.min(DATADOG_MAX_PAYLOAD_BYTES)
    }

    /// One log entry for an event (see the module invariants).
    pub fn entry(&self, data: &Bytes) -> Bytes {
        let present = serde_json::from_slice::<std::collections::HashMap<String, &RawValue>>(data);
        let mut out = BytesMut::with_capacity(data.len() + 96);
        out.put_u8(b'{');
        let mut first = true;
        let mut put_attr = |out: &mut BytesMut, k: &str, v: &str| {
            if !first {
                out.put_u8(b',');
            }
            first = false;
            out.put_slice(format!("\"{k}\":{v}").as_bytes());
        };
        match present {
            Ok(keys) => {
                for (k, v) in &self.attrs {
                    if !keys.contains_key(*k) {
                        put_attr(&mut out, k, v);
                    }
                }
                // The event's own members, verbatim: everything after its opening brace.
                let text = trim_ascii(data);
                let inner = &text[1..];
                let empty = trim_ascii(&inner[..inner.len() - 1]).is_empty();
                if !empty && !first {
                    out.put_u8(b',');
                }
                out.put_slice(if empty { b"}" } else { inner });
            }
            Err(_) => {
                for (k, v) in &self.attrs {
                    put_attr(&mut out, k, v);
                }
                let msg = serde_json::Value::String(String::from_utf8_lossy(data).into_owned()).to_string();
                put_attr(&mut out, "message", &msg);
                out.put_u8(b'}');
            }
        }
        crate::sink::encode::one_line(&out.freeze())
    }

    fn redact(&self, text: &str) -> String {
        match &self.cfg.api_key {
            Some(k) if !k.expose().is_empty() => text.replace(k.expose(), "<redacted>"),
            _ => text.to_string(),
        }
    }
}

fn trim_ascii(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|c| !c.is_ascii_whitespace()).unwrap_or(b.len());
    let end = b.iter().rposition(|c| !c.is_ascii_whitespace()).map_or(start, |e| e + 1);
    &b[start..end]
}

impl Platform for Datadog {
    fn name(&self) -> &'static str {
        "datadog"
    }

    fn limits(&self) -> (usize, usize) {
        (self.cfg.max_events.min(DATADOG_MAX_ENTRIES), self.max_bytes())
    }

    fn encode(&self, events: &[QueuedEvent]) -> EncodedRequest {
        let (max_events, max_bytes) = self.limits();
        let mut raw = BytesMut::new();
        raw.put_u8(b'[');
        let mut n = 0;
        for e in events.iter().take(max_events.max(1)) {
            let entry = self.entry(&e.data);
            // An entry over Datadog's per-entry limit always travels alone (see `interpret`).
            let oversized = entry.len() > DATADOG_MAX_ENTRY_BYTES;
            if n > 0 && (oversized || raw.len() + entry.len() + 2 > max_bytes) {
                break;
            }
            if n > 0 {
                raw.put_u8(b',');
            }
            raw.put_slice(&entry);
            n += 1;
            if oversized {
                break;
            }
        }
        raw.put_u8(b']');
        EncodedRequest::post(self.url.clone(), self.headers.clone(), raw.freeze(), n, self.cfg.gzip)
    }

    fn interpret(&self, events: &[QueuedEvent], resp: &Response) -> Verdict {
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
                // Datadog stored a truncated copy of an entry over 1 MB: keep the whole event in
                // the dead letter, where it can be read and replayed in pieces.
                if let [one] = events {
                    let size = self.entry(&one.data).len();
                    if size > DATADOG_MAX_ENTRY_BYTES {
                        return Verdict::TooLarge(fail(
                            FailureKind::TooLarge,
                            format!("the event is {size} bytes as a Datadog log entry, over Datadog's 1 MB per-entry limit; Datadog keeps only a truncated copy, so the whole event goes to the dead letter"),
                        ));
                    }
                }
                Verdict::Delivered
            }
            401 | 403 => Verdict::Retry(fail(
                FailureKind::Credentials,
                format!("Datadog rejected the API key: HTTP {status}{said}; check siem.datadog.api_key (an API key, not an application key, from the same site as siem.datadog.site). Events stay queued"),
            )),
            400 => Verdict::Rejected(fail(
                FailureKind::Rejected,
                format!("Datadog rejected the payload: HTTP 400{said}"),
            )),
            413 => Verdict::TooLarge(fail(
                FailureKind::TooLarge,
                format!("Datadog answered HTTP 413: the payload is over its limit{said}; sending fewer entries per request"),
            )),
            429 => Verdict::Retry(fail(
                FailureKind::RateLimited,
                format!("Datadog is rate limiting the intake: HTTP 429{said}; will retry"),
            )),
            404 => Verdict::Retry(fail(
                FailureKind::NotFound,
                format!("Datadog answered HTTP 404{said}; check siem.datadog.site (or siem.url: it should be https://http-intake.logs.<site>/api/v2/logs)"),
            )),
            _ => classify_status_redacted(resp, "Datadog", |t| self.redact(t)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    fn cfg() -> DatadogConfig {
        DatadogConfig {
            api_key: Some(Secret::new("0123456789abcdef0123456789abcdef")),
            ddtags: Some("env:prod,team:iam".into()),
            hostname: Some("idp-1".into()),
            gzip: false,
            ..DatadogConfig::default()
        }
    }

    fn dd(c: DatadogConfig) -> Datadog {
        Datadog::new("https://http-intake.logs.datadoghq.eu/api/v2/logs".parse().unwrap(), c)
    }

    fn ev(i: u64, data: &str) -> QueuedEvent {
        QueuedEvent {
            seq: i,
            data: Bytes::from(data.to_string()),
            accepted_at_ms: 0,
        }
    }

    fn resp(status: u16, body: &str) -> Response {
        Response {
            status,
            headers: Default::default(),
            body: Bytes::from(body.to_string()),
        }
    }

    #[test]
    fn entries_keep_the_event_and_add_reserved_attributes_unless_present() {
        let d = dd(cfg());
        let e = d.entry(&Bytes::from_static(b" {\"event_type\":\"x\",\"service\":\"own\"} "));
        let v: serde_json::Value = serde_json::from_slice(&e).unwrap();
        assert_eq!(v["service"], "own", "the event's own value wins");
        assert_eq!(v["ddsource"], "sendauth");
        assert_eq!(v["ddtags"], "env:prod,team:iam");
        assert_eq!(v["hostname"], "idp-1");
        assert!(e.ends_with(b"\"event_type\":\"x\",\"service\":\"own\"}"), "{e:?}");
        let v: serde_json::Value = serde_json::from_slice(&d.entry(&Bytes::from_static(b"{}"))).unwrap();
        assert_eq!(v["service"], "sendauth-siem");
        let v: serde_json::Value = serde_json::from_slice(&d.entry(&Bytes::from_static(b"not json"))).unwrap();
        assert_eq!(v["message"], "not json");
    }

    #[test]
    fn batches_are_arrays_within_the_limits_with_the_key_header() {
        let d = dd(cfg());
        let evs: Vec<QueuedEvent> = (0..1500).map(|i| ev(i, &format!("{{\"i\":{i}}}"))).collect();
        let r = d.encode(&evs);
        assert_eq!(r.events, 1000, "at most 1000 entries");
        let v: Vec<serde_json::Value> = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v.len(), 1000);
        assert_eq!(v[7]["i"], 7);
        assert!(r
            .headers
            .contains(&("DD-API-KEY".into(), "0123456789abcdef0123456789abcdef".into())));
        let mut c = cfg();
        c.max_bytes = 100_000_000;
        assert_eq!(dd(c).limits().1, DATADOG_MAX_PAYLOAD_BYTES);
        let big = "a".repeat(DATADOG_MAX_ENTRY_BYTES);
        let evs = vec![ev(1, "{\"i\":1}"), ev(2, &format!("{{\"x\":\"{big}\"}}")), ev(3, "{}")];
        assert_eq!(d.encode(&evs).events, 1, "an oversized entry never joins a batch");
        assert_eq!(d.encode(&evs[1..]).events, 1, "and travels alone");
    }

    #[test]
    fn answers() {
        let d = dd(cfg());
        let one = [ev(1, "{}")];
        assert_eq!(d.interpret(&one, &resp(202, "{}")), Verdict::Delivered);
        let v = d.interpret(&one, &resp(403, "{\"errors\":[\"Forbidden\"]}"));
        assert!(
            matches!(&v, Verdict::Retry(f) if f.kind == FailureKind::Credentials && f.message.contains("siem.datadog.api_key")),
            "{v:?}"
        );
        assert!(matches!(d.interpret(&one, &resp(400, "bad")), Verdict::Rejected(_)));
        assert!(matches!(d.interpret(&one, &resp(413, "")), Verdict::TooLarge(_)));
        let mut r = resp(429, "");
        r.headers.insert(reqwest::header::RETRY_AFTER, "7".parse().unwrap());
        assert!(
            matches!(d.interpret(&one, &r), Verdict::Retry(f) if f.kind == FailureKind::RateLimited && f.retry_after == Some(std::time::Duration::from_secs(7)))
        );
        assert!(matches!(d.interpret(&one, &resp(503, "")), Verdict::Retry(f) if f.kind == FailureKind::ServerError));
        let big = [ev(1, &format!("{{\"x\":\"{}\"}}", "a".repeat(DATADOG_MAX_ENTRY_BYTES)))];
        assert!(
            matches!(d.interpret(&big, &resp(202, "{}")), Verdict::TooLarge(_)),
            "truncated by Datadog: dead-lettered whole"
        );
        let echo = d.interpret(&one, &resp(403, "bad key 0123456789abcdef0123456789abcdef"));
        assert!(!format!("{echo:?}").contains("0123456789abcdef0123"), "{echo:?}");
    }
}
