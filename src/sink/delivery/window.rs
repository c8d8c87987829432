//! The read-ahead window: events read from the queue and not yet acknowledged, in queue order,
//! each with its state (pending, in flight, delivered, dead) and its own failed attempts; which
//! of them the next request carries.
//!
//! Invariants: bounded in events and bytes (ARCHITECTURE.md invariant 7); requests take
//! disjoint, consecutive slices of pending events, in queue order (invariant 4); reads from the
//! queue run on the blocking pool ([`super::ack::on_disk`]).

use super::*;

impl Delivery {
    /// Most events the next request may carry when it starts with `seq`.
    pub(super) fn per_request(&self, seq: u64, max_events: usize) -> usize {
        if seq <= self.single_until {
            1
        } else if seq <= self.cap_until {
            max_events.min(self.cap).max(1)
        } else {
            max_events
        }
    }

    /// The next request's events: pending events from the first one on, skipping events already
    /// done (a resend of a partly accepted request), up to the first event in flight, within
    /// the request limits. Their indices, whether they make a full request, and whether the
    /// run reached the end of the window (nothing in flight stopped it: reading more events
    /// may fill it, even when done events follow a held one).
    pub(super) fn next_run(&self, max_events: usize, max_bytes: usize) -> Option<(Vec<usize>, bool, bool)> {
        let start = self.items.iter().position(|i| matches!(i.state, ItemState::Pending))?;
        let limit = self.per_request(self.items[start].ev.seq, max_events);
        let mut run = Vec::new();
        let mut bytes = 0;
        let mut stopped = false;
        for (i, item) in self.items.iter().enumerate().skip(start) {
            if run.len() >= limit || bytes >= max_bytes {
                stopped = true;
                break;
            }
            match item.state {
                ItemState::Pending => {
                    run.push(i);
                    bytes += item.ev.data.len();
                }
                ItemState::InFlight => {
                    stopped = true;
                    break;
                }
                ItemState::Delivered | ItemState::Dead(_) => {}
            }
        }
        let full = run.len() >= limit || bytes >= max_bytes;
        Some((run, full, !full && !stopped))
    }

    /// Whether the window may not grow (so a short batch at its end cannot wait for more).
    pub(super) fn window_full(&self, max_events: usize, max_bytes: usize) -> bool {
        let max_items = (max_events * (self.concurrency.limit() + 1)).max(READ_CHUNK);
        self.items.len() >= max_items || self.window_bytes >= WINDOW_BYTES.max(max_bytes)
    }

    /// Reads the next events after `cursor` into the window, within its bounds.
    pub(super) async fn read_more(&mut self, max_events: usize, max_bytes: usize) -> Result<(), crate::queue::QueueError> {
        if self.window_full(max_events, max_bytes) {
            return Ok(());
        }
        let max_items = (max_events * (self.concurrency.limit() + 1)).max(READ_CHUNK);
        let n = (max_items - self.items.len()).min(max_events.max(READ_CHUNK));
        let bytes = WINDOW_BYTES.max(max_bytes) - self.window_bytes;
        let (q, cursor) = (self.queue.clone(), self.cursor);
        let batch = on_disk(move || q.read(cursor, n, bytes.max(1))).await?;
        self.empty_reads = if batch.is_empty() { self.empty_reads.saturating_add(1) } else { 0 };
        for ev in batch {
            self.cursor = ev.seq;
            self.window_bytes += ev.data.len();
            self.items.push_back(Item {
                ev,
                state: ItemState::Pending,
                failures: 0,
            });
        }
        Ok(())
    }

    /// Sets the state of the item `seq`. Items are in queue order (ascending `seq`), so this
    /// is a binary search: marking a whole batch stays O(n log n), not O(n^2).
    pub(super) fn mark(&mut self, seq: u64, state: ItemState) {
        if let Ok(i) = self.items.binary_search_by_key(&seq, |i| i.ev.seq) {
            self.items[i].state = state;
        }
    }

    /// Puts back to pending the events of `sent` that are not done.
    pub(super) fn set_pending(&mut self, sent: &[QueuedEvent]) {
        for e in sent {
            if let Ok(i) = self.items.binary_search_by_key(&e.seq, |i| i.ev.seq) {
                if !self.items[i].state.is_done() {
                    self.items[i].state = ItemState::Pending;
                }
            }
        }
    }

    pub(super) fn dead(&self, f: &Failure, seq: u64, why: &str) -> ItemState {
        ItemState::Dead(DeadLetterMeta {
            at: now_rfc3339(),
            // The SIEM's words in full: the dead letter is operator-only (admin socket, 0600)
            // and holds the event itself; logs and status get `f.message`, the summary.
            reason: format!("{why}{}", f.full_text()),
            http_status: f.http_status,
            original_seq: seq,
        })
    }

    pub(super) fn pop_front(&mut self, n: usize) {
        for item in self.items.drain(..n) {
            self.window_bytes = self.window_bytes.saturating_sub(item.ev.data.len());
        }
    }
}
