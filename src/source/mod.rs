//! Sources: where events come from. Each source frames lines, validates them, and commits each
//! chunk (events + quarantined lines + its checkpoint) to the queue in one atomic append.
//!
//! - `file`: tails a JSONL file (rotation- and restart-safe; see `file/mod.rs`);
//! - `socket`: a Unix stream socket speaking NDJSON (see `socket.rs`).

pub mod file;
pub mod lines;
pub mod socket;

use std::sync::Mutex;
use std::time::Instant;

use bytes::Bytes;

use crate::event::{validate, Rejection};
use crate::metrics::Metrics;
use crate::queue::{now_rfc3339, QuarantineMeta};
use crate::transform::Transform;
use lines::Frame;

/// The validated content of a chunk of input.
#[derive(Default)]
pub struct Chunk {
    pub events: Vec<Bytes>,
    pub quarantine: Vec<(QuarantineMeta, Vec<u8>)>,
    pub unknown_types: u64,
}

/// Validates frames, and applies the privacy transform (if any) to each accepted event, so only
/// transformed events reach the queue. `origin(i, frame)` describes where frame `i` came from,
/// for the quarantine and the log ("events.jsonl:12 (byte 402113)").
///
/// Without a transform, accepted lines are forwarded as the very bytes that were read.
pub fn validate_frames(
    frames: Vec<Frame>,
    max_event_bytes: usize,
    transform: Option<&Transform>,
    metrics: &Metrics,
    origin: &mut dyn FnMut(usize, &Frame) -> String,
) -> Chunk {
    let mut chunk = Chunk::default();
    for (i, f) in frames.into_iter().enumerate() {
        let (rej, kept, len) = match &f {
            Frame::Line { data, .. } => match validate(data, max_event_bytes) {
                Ok(acc) => {
                    if !acc.known_type {
                        chunk.unknown_types += 1;
                    }
                    match transform {
                        None => {
                            if let Frame::Line { data, .. } = f {
                                chunk.events.push(data);
                            }
                            continue;
                        }
                        Some(t) => match t.apply(data) {
                            Ok(out) => {
                                chunk.events.push(Bytes::from(out));
                                continue;
                            }
                            // Cannot happen for a validated event; kept, never dropped.
                            Err(msg) => (Rejection::Transform(msg), data.to_vec(), data.len()),
                        },
                    }
                }
                Err(Rejection::Empty) => continue, // blank lines are not events; nothing to keep
                Err(r) => (r, data.to_vec(), data.len()),
            },
            Frame::Oversize { prefix, len, .. } => (
                Rejection::TooLarge {
                    len: *len,
                    max: max_event_bytes,
                },
                prefix.to_vec(),
                *len,
            ),
        };
        let where_ = origin(i, &f);
        metrics.rejected(&rej);
        log_rejection(&where_, &rej);
        chunk.quarantine.push((
            QuarantineMeta {
                at: now_rfc3339(),
                origin: where_,
                reason: rej.to_string(),
                len,
            },
            kept,
        ));
    }
    chunk
}

/// Logs each rejected line once, but at most 20 per 10 s so a flood of garbage cannot flood
/// the log; the rest are summarised (every one is still counted and quarantined).
fn log_rejection(origin: &str, r: &Rejection) {
    static WINDOW: Mutex<Option<(Instant, u32, u64)>> = Mutex::new(None);
    let mut w = WINDOW.lock().unwrap();
    let now = Instant::now();
    let (start, logged, suppressed) = w.get_or_insert((now, 0, 0));
    if now.duration_since(*start).as_secs() >= 10 {
        if *suppressed > 0 {
            tracing::warn!(target: "source", "{suppressed} more rejected lines were not logged individually; all are in the quarantine (`sendauth-siem status`)");
        }
        *start = now;
        *logged = 0;
        *suppressed = 0;
    }
    if *logged < 20 {
        *logged += 1;
        tracing::warn!(target: "source", "{origin}: rejected: {r}; kept in quarantine (see `sendauth-siem status`)");
    } else {
        *suppressed += 1;
    }
}
