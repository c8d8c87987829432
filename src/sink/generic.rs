//! Generic JSON-over-HTTP: the event object as the body, exactly like the product docs'
//! `curl -d '{"test": "event"}'`, one event per request by default. Opt-in batching
//! (`siem.generic.batch`): `ndjson` (one event per line) or `json_array` (`[e1,e2,...]`).
//!
//! A generic collector says nothing per event, so a 400 on a batch means "some event in here is
//! bad": the delivery loop resends that batch one event at a time to find it.

use bytes::{BufMut, Bytes, BytesMut};

use crate::queue::QueuedEvent;
use crate::sink::http::classify_status;
use crate::sink::platform::{EncodedRequest, Platform, Response, Verdict};
use crate::sink::settings::{GenericBatch, GenericConfig};

pub struct Generic {
    url: reqwest::Url,
    cfg: GenericConfig,
}

impl Generic {
    pub fn new(url: reqwest::Url, cfg: GenericConfig) -> Self {
        Generic { url, cfg }
    }
}

/// Gzips a body (used by every platform that offers `gzip: true`).
pub fn gzip(raw: &[u8]) -> Bytes {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::with_capacity(raw.len() / 4), flate2::Compression::fast());
    let _ = enc.write_all(raw);
    Bytes::from(enc.finish().unwrap_or_default())
}

/// Takes the prefix of `events` that fits `max_events` / `max_bytes` (at least one event).
pub fn take_prefix(events: &[QueuedEvent], max_events: usize, max_bytes: usize, per_event_overhead: usize) -> usize {
    let mut n = 0;
    let mut bytes = 0;
    for e in events.iter().take(max_events.max(1)) {
        let add = e.data.len() + per_event_overhead;
        if n > 0 && bytes + add > max_bytes {
            break;
        }
        bytes += add;
        n += 1;
    }
    n.max(1).min(events.len())
}

/// The event as one line, for line-framed bodies (NDJSON, Elasticsearch bulk): any CR or LF
/// byte becomes a space. In valid JSON those bytes can only be whitespace between tokens (inside
/// strings they must be escaped), so the event means exactly the same; without this, a stray
/// newline would split one event into two broken ones. Events without them are not copied.
pub fn one_line(data: &Bytes) -> Bytes {
    if !data.iter().any(|&b| b == b'\n' || b == b'\r') {
        return data.clone();
    }
    data.iter()
        .map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b })
        .collect::<Vec<u8>>()
        .into()
}

/// Text a SIEM sent, cut to `max` characters for a one-line message.
pub fn clip(s: &str, max: usize) -> String {
    let s = s.trim();
    if s.chars().count() > max {
        let cut: String = s.chars().take(max).collect();
        format!("{cut}…")
    } else {
        s.to_string()
    }
}

impl Platform for Generic {
    fn name(&self) -> &'static str {
        "generic"
    }

    fn limits(&self) -> (usize, usize) {
        match self.cfg.batch {
            GenericBatch::None => (1, self.cfg.max_bytes),
            _ => (self.cfg.max_events, self.cfg.max_bytes),
        }
    }

    fn encode(&self, events: &[QueuedEvent]) -> EncodedRequest {
        let (content_type, n, raw) = match self.cfg.batch {
            GenericBatch::None => ("application/json", 1, events[0].data.clone()),
            GenericBatch::Ndjson => {
                let n = take_prefix(events, self.cfg.max_events, self.cfg.max_bytes, 1);
                let mut b = BytesMut::with_capacity(events[..n].iter().map(|e| e.data.len() + 1).sum());
                for e in &events[..n] {
                    b.put_slice(&e.data);
                    b.put_u8(b'\n');
                }
                ("application/x-ndjson", n, b.freeze())
            }
            GenericBatch::JsonArray => {
                let n = take_prefix(events, self.cfg.max_events, self.cfg.max_bytes, 1);
                let mut b = BytesMut::with_capacity(2 + events[..n].iter().map(|e| e.data.len() + 1).sum::<usize>());
                b.put_u8(b'[');
                for (i, e) in events[..n].iter().enumerate() {
                    if i > 0 {
                        b.put_u8(b',');
                    }
                    b.put_slice(&e.data);
                }
                b.put_u8(b']');
                ("application/json", n, b.freeze())
            }
        };
        let headers = vec![("Content-Type".to_string(), content_type.to_string())];
        EncodedRequest::post(self.url.clone(), headers, raw, n, self.cfg.gzip)
    }

    fn interpret(&self, _events: &[QueuedEvent], resp: &Response) -> Verdict {
        classify_status(resp, "SIEM")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::sink::platform::test_events as evs;

    fn cfg(batch: GenericBatch) -> GenericConfig {
        GenericConfig {
            batch,
            max_events: 3,
            max_bytes: 1 << 20,
            gzip: false,
        }
    }

    #[test]
    fn unbatched_body_is_the_event_unchanged() {
        let g = Generic::new("http://127.0.0.1/c".parse().unwrap(), cfg(GenericBatch::None));
        let r = g.encode(&evs(5));
        assert_eq!(r.events, 1);
        assert_eq!(&r.body[..], b"{\"i\":0}");
    }

    #[test]
    fn ndjson_and_array_batches() {
        let g = Generic::new("http://127.0.0.1/c".parse().unwrap(), cfg(GenericBatch::Ndjson));
        let r = g.encode(&evs(5));
        assert_eq!((r.events, &r.body[..]), (3, &b"{\"i\":0}\n{\"i\":1}\n{\"i\":2}\n"[..]));
        let g = Generic::new("http://127.0.0.1/c".parse().unwrap(), cfg(GenericBatch::JsonArray));
        let r = g.encode(&evs(2));
        assert_eq!(&r.body[..], b"[{\"i\":0},{\"i\":1}]");
    }

    #[test]
    fn one_line_turns_line_breaks_into_spaces_and_keeps_the_rest() {
        let e = Bytes::from_static(b"{\"a\":1,\r\n\"b\":\"x\\ny\"}");
        assert_eq!(&one_line(&e)[..], b"{\"a\":1,  \"b\":\"x\\ny\"}");
        let clean = Bytes::from_static(b"{\"a\":1}");
        let same = one_line(&clean);
        assert_eq!(same.as_ptr(), clean.as_ptr(), "no copy when nothing changes");
    }

    #[test]
    fn byte_limit_cuts_the_batch_but_never_below_one() {
        let e = evs(5);
        assert_eq!(take_prefix(&e, 100, 10, 1), 1);
        assert_eq!(take_prefix(&e, 100, 17, 1), 2);
    }
}
