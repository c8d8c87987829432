//! Intake: the one step every source takes with the lines it framed.
//!
//! Validate each line, apply the privacy transform, build the chunk's append request (events,
//! quarantined lines, the source's checkpoint), and, once the queue has answered, count and
//! report it: received and unknown-type counters, the tap, the queue-full flag. Sources only
//! frame lines, track their position and choose how to wait for the queue (the file source's
//! thread blocks, socket connections await).
//!
//! Invariant (ARCHITECTURE.md 1): nothing here tells a source a chunk was accepted; the queue's
//! answer does, and [`Intake::accepted`] is only called with it.

use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::lines::Frame;
use super::{validate_frames, IntakeRules};
use crate::queue::{AppendRequest, QuarantineMeta, QueueError};
use crate::status::StatusHub;

/// Which source a chunk came from (counters and the tap are per source).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SourceKind {
    File,
    Socket,
}

impl SourceKind {
    fn name(self) -> &'static str {
        match self {
            SourceKind::File => "file",
            SourceKind::Socket => "socket",
        }
    }
}

/// A chunk ready for the queue, and what to report once the queue took it.
pub(crate) struct Prepared {
    pub request: AppendRequest,
    pub report: Report,
}

/// What [`Intake::accepted`] counts.
pub struct Report {
    pub events: u64,
    pub rejected: u64,
    unknown_types: u64,
    /// A copy of the events for the tap, only while someone taps.
    tapped: Option<Vec<Bytes>>,
}

/// One source's intake.
pub(crate) struct Intake<'a> {
    pub status: &'a StatusHub,
    pub kind: SourceKind,
}

impl Intake<'_> {
    /// Validates and transforms `frames` (`origin(i, frame)` says where frame `i` came from,
    /// for the quarantine), adds `extra` quarantine entries and the source's `checkpoint`.
    pub(crate) fn prepare(
        &self,
        frames: Vec<Frame>,
        rules: &IntakeRules,
        origin: &mut dyn FnMut(usize, &Frame) -> String,
        extra: Option<(QuarantineMeta, Vec<u8>)>,
        checkpoint: Option<(Vec<u8>, Vec<u8>)>,
    ) -> Prepared {
        let mut chunk = validate_frames(
            frames,
            rules.max_event_bytes,
            rules.transform.as_deref(),
            &self.status.metrics,
            origin,
        );
        chunk.quarantine.extend(extra);
        let report = Report {
            events: chunk.events.len() as u64,
            rejected: chunk.quarantine.len() as u64,
            unknown_types: chunk.unknown_types,
            tapped: self.status.tap.active().then(|| chunk.events.clone()),
        };
        Prepared {
            request: AppendRequest {
                events: chunk.events,
                quarantine: chunk.quarantine,
                checkpoint,
            },
            report,
        }
    }

    /// The queue committed the chunk: count it, show it to the tap, clear "queue full".
    pub fn accepted(&self, report: Report) {
        let m = &self.status.metrics;
        let received = match self.kind {
            SourceKind::File => &m.received_file,
            SourceKind::Socket => &m.received_socket,
        };
        received.fetch_add(report.events, Ordering::Relaxed);
        m.unknown_type.fetch_add(report.unknown_types, Ordering::Relaxed);
        self.status.set_queue_full(false);
        if let Some(events) = report.tapped {
            self.status.tap.publish(self.kind.name(), events);
        }
    }

    /// The queue refused the chunk: a full queue is counted and shown (the source pauses or
    /// tells its writer); other errors are the source's to report.
    pub fn refused(&self, e: &QueueError) {
        if matches!(e, QueueError::Full { .. }) {
            self.status.metrics.queue_full_refusals.fetch_add(1, Ordering::Relaxed);
            self.status.set_queue_full(true);
        }
    }
}
