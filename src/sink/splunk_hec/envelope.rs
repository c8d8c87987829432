//! The HEC batch: envelopes written back to back, each with its own metadata (`time` from the
//! event's own `timestamp`, `host`, `source`, `sourcetype`, `index`) and the event, byte for
//! byte as queued, in `event` (docs/PROTOCOLS.md §1).
//!
//! Invariant: the event is never re-serialised, so what Splunk indexes is what was accepted
//! (ARCHITECTURE.md invariant 9 covers what a transform changed before the queue).

use bytes::{BufMut, Bytes, BytesMut};

use crate::event::timestamp_millis;
use crate::queue::QueuedEvent;
use crate::sink::platform::EncodedRequest;

use super::{SplunkHec, CHANNEL_HEADER};

impl SplunkHec {
    pub(super) fn write_envelope(&self, out: &mut BytesMut, e: &QueuedEvent) {
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

    pub(super) fn encode_batch(&self, events: &[QueuedEvent]) -> EncodedRequest {
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
}

/// Epoch milliseconds as HEC `time`: seconds with a three-digit fraction (`1738060260.123`).
pub(super) fn epoch_seconds(ms: i64) -> String {
    let sign = if ms < 0 { "-" } else { "" };
    let a = ms.unsigned_abs();
    format!("{sign}{}.{:03}", a / 1000, a % 1000)
}
