//! Sources: where events come from. Each source frames lines, validates them, and commits each
//! chunk (events + quarantined lines + its checkpoint) to the queue in one atomic append.
//!
//! - `file`: tails a JSONL file (rotation- and restart-safe; see `file/mod.rs`);
//! - `socket`: a Unix stream socket speaking NDJSON (see `socket.rs`).

pub mod file;
pub mod intake;
pub mod lines;
pub mod settings;
pub mod socket;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::event::{validate, Rejection};
use crate::metrics::Metrics;
use crate::queue::{now_rfc3339, QuarantineMeta};
use crate::transform::Transform;
use lines::Frame;

/// The validated content of a chunk of input.
#[derive(Default)]
pub(crate) struct Chunk {
    pub events: Vec<Bytes>,
    pub quarantine: Vec<(QuarantineMeta, Vec<u8>)>,
    pub(crate) unknown_types: u64,
}

/// Validates frames, and applies the privacy transform (if any) to each accepted event, so only
/// transformed events reach the queue. `origin(i, frame)` describes where frame `i` came from,
/// for the quarantine and the log ("events.jsonl:12 (byte 402113)").
///
/// Without a transform, accepted lines are forwarded as the very bytes that were read.
pub(crate) fn validate_frames(
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

/// Rejected lines logged one by one per [`REJECTION_LOG_WINDOW`]; the rest are summarised.
const REJECTIONS_LOGGED_PER_WINDOW: u32 = 20;
const REJECTION_LOG_WINDOW: Duration = Duration::from_secs(10);

struct RejectionWindow {
    start: Instant,
    logged: u32,
    suppressed: u64,
    /// A thread waits to write the summary at the window's end, so a flood that stops gets its
    /// summary too (not only when the next rejected line comes).
    summary_due: bool,
}

static WINDOW: Mutex<Option<RejectionWindow>> = Mutex::new(None);

/// Logs each rejected line once, but at most 20 per 10 s so a flood of garbage cannot flood
/// the log; the rest are summarised at the window's end (every one is still counted and
/// quarantined).
fn log_rejection(origin: &str, r: &Rejection) {
    let mut guard = WINDOW.lock().unwrap();
    let now = Instant::now();
    let w = guard.get_or_insert(RejectionWindow {
        start: now,
        logged: 0,
        suppressed: 0,
        summary_due: false,
    });
    close_window_if_over(w, now);
    if w.logged < REJECTIONS_LOGGED_PER_WINDOW {
        w.logged += 1;
        tracing::warn!(target: "source", "{origin}: rejected: {r}; kept in quarantine (see `sendauth-siem status`)");
        return;
    }
    w.suppressed += 1;
    if !w.summary_due {
        let wait = (w.start + REJECTION_LOG_WINDOW).saturating_duration_since(now);
        let spawned = std::thread::Builder::new().name("rejection-summary".into()).spawn(move || {
            std::thread::sleep(wait);
            if let Some(w) = WINDOW.lock().unwrap().as_mut() {
                w.summary_due = false;
                close_window_if_over(w, Instant::now());
            }
        });
        // Without the thread, the next rejected line after the window writes the summary.
        w.summary_due = spawned.is_ok();
    }
}

/// At the end of a window: the summary of what was not logged, and a fresh window.
fn close_window_if_over(w: &mut RejectionWindow, now: Instant) {
    if now.duration_since(w.start) < REJECTION_LOG_WINDOW {
        return;
    }
    if w.suppressed > 0 {
        tracing::warn!(target: "source", "{} more rejected lines were not logged individually; all are in the quarantine (`sendauth-siem quarantine list`)", w.suppressed);
    }
    w.start = now;
    w.logged = 0;
    w.suppressed = 0;
}

/// What a source applies to every line besides its own settings (from the current config); a
/// change restarts the file source and reaches socket connections from their next chunk.
#[derive(Clone, PartialEq)]
pub struct IntakeRules {
    pub max_event_bytes: usize,
    pub transform: Option<std::sync::Arc<Transform>>,
}

/// What `quarantine replay` did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub(crate) struct QuarantineReplay {
    /// Lines that pass the current rules now and were queued as events.
    pub(crate) requeued: u64,
    /// Lines that still fail (or were kept only in part): quarantined again, with today's reason.
    pub(crate) still_rejected: u64,
}

/// Runs quarantined lines (all, or ids up to `through`) through intake again with the current
/// rules (`sources.max_event_bytes`, the privacy transform): lines that pass now are queued as
/// events, the rest are quarantined again with the reason of today. A page at a time: one
/// append (events and re-quarantined lines together), then the page's entries are purged. At
/// least once: a crash between the two leaves the page in the quarantine as well, and a second
/// replay queues its lines again. With `dry_run`, only counts.
pub(crate) fn replay_quarantine(
    queue: &crate::queue::Queue,
    rules: &IntakeRules,
    metrics: &Metrics,
    through: Option<u64>,
    dry_run: bool,
) -> Result<QuarantineReplay, crate::queue::QueueError> {
    const PAGE: usize = 256;
    // Lines quarantined again get new ids: never past the entries there were at the start.
    let through = through.unwrap_or(u64::MAX).min(queue.quarantine_next_id().saturating_sub(1));
    let mut report = QuarantineReplay::default();
    let mut after = 0u64;
    loop {
        let mut page = queue.quarantine_page(after, PAGE)?;
        page.retain(|e| e.id <= through);
        let Some(last) = page.last().map(|e| e.id) else { break };
        after = last;
        // Only whole lines can be judged again; a line kept in part stays quarantined.
        let (whole, partial): (Vec<_>, Vec<_>) = page.into_iter().partition(|e| e.data.len() >= e.meta.len);
        let frames: Vec<Frame> = whole
            .iter()
            .map(|e| Frame::Line {
                data: Bytes::from(e.data.clone()),
                end: 0,
            })
            .collect();
        let mut origin = |i: usize, _: &Frame| format!("{} (replayed from the quarantine)", whole[i].meta.origin);
        let mut chunk = validate_frames(frames, rules.max_event_bytes, rules.transform.as_deref(), metrics, &mut origin);
        for e in partial {
            let mut meta = e.meta.clone();
            meta.at = now_rfc3339();
            chunk.quarantine.push((meta, e.data));
        }
        report.requeued += chunk.events.len() as u64;
        report.still_rejected += chunk.quarantine.len() as u64;
        if dry_run {
            continue;
        }
        queue.append_from_thread(crate::queue::AppendRequest {
            events: chunk.events,
            quarantine: chunk.quarantine,
            checkpoint: None,
        })?;
        queue.purge_quarantine(Some(last))?;
        if last >= through {
            break;
        }
    }
    Ok(report)
}
