//! Events as they pass, for `sendauth-siem tap`: a live, bounded, read-only view.
//!
//! Sources publish each chunk of events here once it is durably in the queue, so a tap shows
//! what was queued: after the privacy transform (pseudonymised subjects, truncated IP
//! addresses), never the raw line. A `siem.schema` mapping (and the audit stamp) is applied
//! later, when sending, so it does not show here. It costs nothing while nobody taps: sources
//! check [`Tap::active`] (one atomic load) before copying anything.
//!
//! Bounded: the channel keeps the newest [`CAPACITY`] events; a viewer that falls behind is
//! told how many it missed instead of slowing the sources down. A tap never blocks a source,
//! and never writes anywhere.

use bytes::Bytes;
use tokio::sync::broadcast;

/// Events kept for a slow viewer before the oldest are skipped.
pub(crate) const CAPACITY: usize = 1024;

/// One event as it entered the queue.
#[derive(Debug, Clone)]
pub(crate) struct Tapped {
    /// `file` or `socket`.
    pub source: &'static str,
    pub event: Bytes,
}

pub struct Tap {
    tx: broadcast::Sender<Tapped>,
}

impl Default for Tap {
    fn default() -> Self {
        Tap {
            tx: broadcast::channel(CAPACITY).0,
        }
    }
}

impl Tap {
    /// Whether anyone is watching (sources copy nothing otherwise).
    pub fn active(&self) -> bool {
        self.tx.receiver_count() > 0
    }

    /// Offers events that are now in the queue to the viewers. Never blocks.
    pub(crate) fn publish(&self, source: &'static str, events: Vec<Bytes>) {
        for event in events {
            // An error means every viewer left in the meantime: nothing to do.
            let _ = self.tx.send(Tapped { source, event });
        }
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Tapped> {
        self.tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_kept_without_a_viewer_and_a_slow_viewer_is_told_what_it_missed() {
        let tap = Tap::default();
        assert!(!tap.active());
        tap.publish("file", vec![Bytes::from_static(b"{}")]);
        let mut rx = tap.subscribe();
        assert!(tap.active());
        tap.publish("socket", (0..CAPACITY + 5).map(|i| Bytes::from(i.to_string())).collect());
        match rx.try_recv() {
            Err(broadcast::error::TryRecvError::Lagged(n)) => assert_eq!(n, 5),
            other => panic!("expected a lag of 5, got {other:?}"),
        }
        let first = rx.try_recv().unwrap();
        assert_eq!((first.source, first.event), ("socket", Bytes::from("5")));
    }
}
