//! Generic JSON-over-HTTP: the event object as the body, exactly like the product docs'
//! `curl -d '{"test": "event"}'`, one event per request by default. Opt-in batching
//! (`siem.generic.batch`): `ndjson` (one event per line) or `json_array` (`[e1,e2,...]`).
//!
//! A generic collector says nothing per event, so a 400 on a batch means "some event in here is
//! bad": the delivery loop resends that batch one event at a time to find it.

use bytes::{BufMut, BytesMut};

use crate::queue::QueuedEvent;
use crate::sink::encode::take_prefix;
use crate::sink::platform::{classify_status, EncodedRequest, Platform, Response, Verdict};
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
}
