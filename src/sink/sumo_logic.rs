//! Sumo Logic HTTP Logs Source: NDJSON batches POSTed to the source's URL.
//!
//! Protocol facts relied on (`docs/PROTOCOLS.md` §3):
//! - The URL carries the credential (`/receiver/v1/http/<token>`); regenerating it in Sumo Logic
//!   invalidates the old one (401), and a new one can take minutes to start working.
//! - One log message per line; a batch should not exceed 1 MB before compression, and Sumo ends
//!   requests at 30 s with 408 (some of the data may already be in). `Content-Encoding: gzip` is
//!   accepted.
//! - `X-Sumo-Category`, `X-Sumo-Name`, `X-Sumo-Host` set `_sourceCategory`, `_sourceName`,
//!   `_sourceHost`; `X-Sumo-Fields: k1=v1,k2=v2` sets fields (dropped unless defined in Sumo).
//! - 429 means throttled: the data was dropped and must be resent; 503/504 are server trouble.
//!   Sumo says nothing per message, and an exhausted ingest budget still answers 200.
//!
//! Invariants:
//! - the URL is a secret: no message built here contains it or its token, even when Sumo (or a
//!   redirect's `Location`) echoes them;
//! - each event is one line, byte for byte (line breaks in JSON whitespace become spaces);
//! - throttling and server errors never drop events: the whole request is retried.

use bytes::{BufMut, BytesMut};

use crate::queue::QueuedEvent;
use crate::sink::encode::one_line;
use crate::sink::platform::{classify_status, EncodedRequest, Failure, FailureKind, Platform, Response, Verdict};
use crate::sink::settings::SumoConfig;

/// Sumo's documented ceiling for one request, uncompressed.
pub(crate) const MAX_REQUEST_BYTES: usize = 1_000_000;

pub struct SumoLogic {
    url: reqwest::Url,
    cfg: SumoConfig,
    headers: Vec<(String, String)>,
    /// The URL and its token, to scrub from anything Sumo says.
    secrets: Vec<String>,
}

impl SumoLogic {
    pub fn new(url: reqwest::Url, cfg: SumoConfig) -> Self {
        let mut headers = vec![("Content-Type".to_string(), "application/x-ndjson".to_string())];
        for (name, value) in [
            ("X-Sumo-Category", &cfg.category),
            ("X-Sumo-Name", &cfg.name),
            ("X-Sumo-Host", &cfg.host),
        ] {
            if let Some(v) = value {
                headers.push((name.to_string(), v.clone()));
            }
        }
        if !cfg.fields.is_empty() {
            let fields: Vec<String> = cfg.fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
            headers.push(("X-Sumo-Fields".to_string(), fields.join(",")));
        }
        let mut secrets = vec![url.to_string()];
        if let Some(token) = url.path_segments().and_then(|mut s| s.next_back()) {
            if token.len() >= 6 {
                secrets.push(token.to_string());
            }
        }
        SumoLogic {
            url,
            cfg,
            headers,
            secrets,
        }
    }

    fn max_bytes(&self) -> usize {
        self.cfg.max_bytes.min(MAX_REQUEST_BYTES)
    }

    fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in &self.secrets {
            out = out.replace(s.as_str(), "<redacted>");
        }
        out
    }
}

impl Platform for SumoLogic {
    fn name(&self) -> &'static str {
        "sumo_logic"
    }

    fn limits(&self) -> (usize, usize) {
        (self.cfg.max_events, self.max_bytes())
    }

    fn encode(&self, events: &[QueuedEvent]) -> EncodedRequest {
        let mut raw = BytesMut::new();
        let mut n = 0;
        for e in events.iter().take(self.cfg.max_events.max(1)) {
            let line = one_line(&e.data);
            if n > 0 && raw.len() + line.len() + 1 > self.max_bytes() {
                break;
            }
            raw.put_slice(&line);
            raw.put_u8(b'\n');
            n += 1;
        }
        let raw = raw.freeze();
        EncodedRequest::post(self.url.clone(), self.headers.clone(), raw, n, self.cfg.gzip)
    }

    fn interpret(&self, _events: &[QueuedEvent], resp: &Response) -> Verdict {
        let status = resp.status;
        let body = self.redact(&resp.body_summary());
        let detail = if body.is_empty() { String::new() } else { format!(": {body}") };
        let fail = |kind, msg: String| {
            let mut f = Failure::new(kind, Some(status), msg);
            f.retry_after = resp.retry_after();
            f
        };
        match status {
            200..=299 => Verdict::Delivered,
            401 | 403 => Verdict::Retry(fail(
                FailureKind::Credentials,
                format!("Sumo Logic rejected the HTTP Source URL: HTTP {status}{detail}; its token is wrong or no longer valid. If the source's URL was regenerated in Sumo Logic, put the new URL in siem.url (a new URL can take a few minutes to start working); events stay queued"),
            )),
            429 => Verdict::Retry(fail(
                FailureKind::RateLimited,
                format!("Sumo Logic is throttling this source: HTTP 429{detail}; the account's ingest quota is exceeded. Will retry with backoff"),
            )),
            408 => Verdict::Retry(fail(
                FailureKind::RequestTimeout,
                format!("Sumo Logic did not finish the request within its 30 s limit: HTTP 408{detail}; will retry (some events may arrive twice). If this repeats, lower siem.sumo_logic.max_batch_bytes"),
            )),
            500..=599 => Verdict::Retry(fail(
                FailureKind::ServerError,
                format!("Sumo Logic had a server error: HTTP {status}{detail}; will retry"),
            )),
            404 => Verdict::Retry(fail(
                FailureKind::NotFound,
                format!("Sumo Logic answered HTTP 404{detail}; check siem.url: it should be the HTTP Source's full URL, https://<endpoint>/receiver/v1/http/<token>; events stay queued"),
            )),
            300..=399 => Verdict::Retry(fail(
                FailureKind::Redirect,
                format!("Sumo Logic answered HTTP {status} (a redirect); redirects are not followed because the URL carries the token. Set siem.url to the HTTP Source's current URL"),
            )),
            _ => {
                let mut v = classify_status(resp, "Sumo Logic");
                if let Verdict::Retry(f) | Verdict::TooLarge(f) | Verdict::Rejected(f) = &mut v {
                    f.message = self.redact(&f.message);
                    f.detail = f.detail.as_deref().map(|d| self.redact(d));
                }
                v
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::collections::BTreeMap;
    use std::io::Read;

    const URL: &str = "https://collectors.sumologic.com/receiver/v1/http/ZaVnC4dhaV2ZsecretTOKEN==";

    fn cfg() -> SumoConfig {
        SumoConfig {
            category: Some("prod/sendauth".into()),
            name: Some("sendauth-siem".into()),
            host: Some("idp-1".into()),
            fields: BTreeMap::from([("env".to_string(), "prod".to_string()), ("app".to_string(), "sendauth".to_string())]),
            gzip: false,
            max_events: 1000,
            max_bytes: 1_000_000,
        }
    }

    use crate::sink::test_support::config_errors;

    fn sumo(cfg: SumoConfig) -> SumoLogic {
        SumoLogic::new(URL.parse().unwrap(), cfg)
    }

    fn evs(n: usize) -> Vec<QueuedEvent> {
        (0..n)
            .map(|i| QueuedEvent {
                seq: i as u64 + 1,
                data: Bytes::from(format!(r#"{{"event_type":"transaction.created","i":{i}}}"#)),
                accepted_at_ms: 0,
            })
            .collect()
    }

    fn resp(status: u16, body: &str) -> Response {
        Response {
            status,
            headers: Default::default(),
            body: Bytes::from(body.to_string()),
        }
    }

    fn header<'a>(r: &'a EncodedRequest, name: &str) -> Option<&'a str> {
        r.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    #[test]
    fn batch_is_ndjson_of_the_events_verbatim() {
        let r = sumo(cfg()).encode(&evs(3));
        assert_eq!(r.events, 3);
        assert_eq!(r.url.as_str(), URL);
        let mut want = Vec::new();
        for e in evs(3) {
            want.extend_from_slice(&e.data);
            want.push(b'\n');
        }
        assert_eq!(&r.body[..], &want[..]);
    }

    #[test]
    fn metadata_headers_come_from_config() {
        let r = sumo(cfg()).encode(&evs(1));
        assert_eq!(header(&r, "X-Sumo-Category"), Some("prod/sendauth"));
        assert_eq!(header(&r, "X-Sumo-Name"), Some("sendauth-siem"));
        assert_eq!(header(&r, "X-Sumo-Host"), Some("idp-1"));
        assert_eq!(header(&r, "X-Sumo-Fields"), Some("app=sendauth,env=prod"));
        let mut bare = cfg();
        bare.category = None;
        bare.name = None;
        bare.host = None;
        bare.fields.clear();
        let r = sumo(bare).encode(&evs(1));
        assert!(r.headers.iter().all(|(k, _)| !k.starts_with("X-Sumo")), "{:?}", r.headers);
    }

    #[test]
    fn batches_stay_under_one_megabyte_whatever_the_config() {
        let mut c = cfg();
        c.max_bytes = 50_000_000;
        let s = sumo(c);
        assert_eq!(s.limits().1, MAX_REQUEST_BYTES);
        let big: Vec<QueuedEvent> = (0..5)
            .map(|i| QueuedEvent {
                seq: i,
                data: Bytes::from(format!(r#"{{"x":"{}"}}"#, "a".repeat(300_000))),
                accepted_at_ms: 0,
            })
            .collect();
        let r = s.encode(&big);
        assert_eq!(r.events, 3);
        assert!(r.raw_bytes <= MAX_REQUEST_BYTES);
        let mut c = cfg();
        c.max_bytes = 10;
        assert_eq!(sumo(c).encode(&big).events, 1, "never below one event");
    }

    #[test]
    fn gzip_round_trips() {
        let mut c = cfg();
        c.gzip = true;
        let r = sumo(c).encode(&evs(4));
        assert_eq!(header(&r, "Content-Encoding"), Some("gzip"));
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(&r.body[..]).read_to_end(&mut raw).unwrap();
        assert_eq!(raw.len(), r.raw_bytes);
        assert_eq!(raw.iter().filter(|&&b| b == b'\n').count(), 4);
    }

    #[test]
    fn statuses() {
        let s = sumo(cfg());
        assert_eq!(s.interpret(&evs(2), &resp(200, "")), Verdict::Delivered);
        let v = s.interpret(&evs(2), &resp(401, "Invalid URL"));
        assert!(
            matches!(&v, Verdict::Retry(f) if f.kind == FailureKind::Credentials && f.message.contains("regenerated") && f.message.contains("siem.url")),
            "{v:?}"
        );
        let mut r = resp(
            429,
            "You have temporarily exceeded your Sumo Logic quota. Please try again at a later time",
        );
        r.headers.insert(reqwest::header::RETRY_AFTER, "30".parse().unwrap());
        let v = s.interpret(&evs(2), &r);
        assert!(
            matches!(&v, Verdict::Retry(f) if f.kind == FailureKind::RateLimited && f.retry_after.is_some() && f.message.contains("quota")),
            "{v:?}"
        );
        for code in [503, 504] {
            let v = s.interpret(&evs(2), &resp(code, ""));
            assert!(matches!(&v, Verdict::Retry(f) if f.kind == FailureKind::ServerError), "{v:?}");
        }
        let v = s.interpret(&evs(2), &resp(408, ""));
        assert!(matches!(&v, Verdict::Retry(f) if f.kind == FailureKind::RequestTimeout), "{v:?}");
        assert!(matches!(s.interpret(&evs(2), &resp(413, "")), Verdict::TooLarge(_)));
        assert!(matches!(s.interpret(&evs(2), &resp(400, "bad")), Verdict::Rejected(_)));
    }

    #[test]
    fn messages_never_contain_the_url_or_its_token() {
        let s = sumo(cfg());
        let echo = format!("no collector at {URL} (token ZaVnC4dhaV2ZsecretTOKEN==)");
        for code in [400, 401, 404, 405, 413, 429, 500, 503] {
            let v = s.interpret(&evs(1), &resp(code, &echo));
            let text = format!("{v:?}");
            assert!(!text.contains("ZaVnC4dhaV2ZsecretTOKEN"), "{code}: {text}");
        }
        let mut r = resp(301, "");
        r.headers.insert(reqwest::header::LOCATION, format!("{URL}x").parse().unwrap());
        let text = format!("{:?}", s.interpret(&evs(1), &r));
        assert!(!text.contains("ZaVnC4dhaV2Z"), "{text}");
    }

    #[test]
    fn config_caps_batches_and_checks_header_values() {
        let url = "  url: https://c.sumologic.com/receiver/v1/http/ZaVnC4dhaV2Zsecret\n";
        let e = config_errors(&format!("{url}  sumo_logic: {{ max_batch_bytes: 2MB }}\n"));
        assert!(
            e.starts_with("siem.sumo_logic.max_batch_bytes: Sumo Logic takes at most 1 MB"),
            "{e}"
        );
        let e = config_errors(&format!(
            "{url}  sumo_logic: {{ category: \"prod/\u{e9}\", fields: {{ env: \"a\\tb\" }} }}\n"
        ));
        assert!(e.contains("siem.sumo_logic.category: is sent as the X-Sumo-Category header"), "{e}");
        assert!(e.contains("siem.sumo_logic.fields.env: is sent in the X-Sumo-Fields header"), "{e}");
        assert!(!e.contains("ZaVnC4dhaV2Zsecret"), "{e}");
        assert_eq!(
            config_errors(&format!("{url}  sumo_logic: {{ category: prod/sendauth, max_batch_bytes: 1MB }}\n")),
            ""
        );
    }

    proptest::proptest! {
        #[test]
        fn interpret_never_panics_on_garbage(status in 100u16..600, body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let _ = sumo(cfg()).interpret(&evs(1), &Response { status, headers: Default::default(), body: body.into() });
        }
    }
}
