//! Acknowledging the contiguous done prefix of the window in the queue, with the rejected
//! events moving to the dead letter in the same batch, and holding when the dead letter is full.
//!
//! Invariants: acks advance only over the contiguous done prefix (ARCHITECTURE.md invariant 4);
//! nothing is dropped to make room in the dead letter (invariant 15); the ack's disk work (and
//! its `fdatasync` when it carries dead letters) runs on the blocking pool, never on a runtime
//! worker, so a disk stall never blocks network tasks ([`on_disk`]).

use super::*;

impl Delivery {
    /// Removes the contiguous done prefix of the window from the queue.
    ///
    /// When the dead letter refuses the prefix's rejected events (full:
    /// [`QueueError::DeadLetterFull`]), they are offered one at a time until one is refused.
    /// Delivery then *holds* at that one: it and the rejected events after it stay in the queue
    /// and become pending again, the events delivered before it leave the queue, status says
    /// `error` with what to do, and after [`DEAD_LETTER_RETRY`] it is sent to the SIEM again.
    /// A fixed SIEM takes it; a SIEM that still rejects it finds room in the dead letter once an
    /// operator made some, or holds again. Nothing is dropped to make room.
    pub(super) async fn ack_done_prefix(&mut self) {
        loop {
            let done = self.items.iter().take_while(|i| i.state.is_done()).count();
            let mut dead_at = self
                .items
                .iter()
                .take(done)
                .enumerate()
                .filter(|(_, i)| matches!(i.state, ItemState::Dead(_)))
                .map(|(k, _)| k);
            let (first_dead, second_dead) = (dead_at.next(), dead_at.next());
            let n = if self.dead_one_at_a_time {
                second_dead.unwrap_or(done)
            } else {
                done
            };
            if n == 0 {
                return;
            }
            let upto = self.items[n - 1].ev.seq;
            let dead: Vec<_> = self
                .items
                .iter()
                .take(n)
                .filter_map(|i| match &i.state {
                    ItemState::Dead(meta) => Some((meta.clone(), i.ev.data.clone())),
                    _ => None,
                })
                .collect();
            let n_dead = dead.len() as u64;
            // Status is unauthenticated: it gets the summary (value previews removed), never the
            // full reason the dead letter keeps behind its 0600 admin socket.
            let last_dead = dead
                .last()
                .map(|(m, _)| (m.http_status, crate::sink::platform::summarize(&m.reason)));
            // The ack writes (and with dead letters, `fdatasync`s): on the blocking pool, so a
            // disk stall never holds a runtime worker and the network tasks on it.
            let q = self.queue.clone();
            // The held event leaving the queue ends the hold: say so in status right after the
            // ack, on the same thread, so `/status` never shows the queue past the held event
            // with the old "dead letter full" reason still naming it.
            let ends_hold = self.held_at.is_some_and(|h| h <= upto).then(|| self.status.clone());
            let ack = move || {
                let r = q.ack(upto, dead);
                if let (Ok(()), Some(status)) = (&r, ends_hold) {
                    status.set_dead_letter_full(None);
                }
                r
            };
            match on_disk(ack).await {
                Ok(()) => {
                    use std::sync::atomic::Ordering::Relaxed;
                    self.status.metrics.delivered.fetch_add(n as u64 - n_dead, Relaxed);
                    self.status.metrics.dead_lettered.fetch_add(n_dead, Relaxed);
                    if let Some((http_status, reason)) = last_dead {
                        self.status.record_dead_letter(n_dead, http_status, &reason);
                    }
                    self.pop_front(n);
                    if second_dead.is_none_or(|k| k < n) {
                        self.dead_one_at_a_time = false;
                    }
                    if self.held_at.is_some_and(|h| h <= upto) {
                        self.held_at = None;
                        tracing::info!(target: "sink", "the held event left the queue (delivered, or the dead letter had room); delivery continues");
                    }
                    if n == done {
                        return;
                    }
                }
                Err(e @ QueueError::DeadLetterFull { .. }) => {
                    if !self.dead_one_at_a_time && n_dead > 1 {
                        // Some of them may fit: offer them one at a time.
                        self.dead_one_at_a_time = true;
                        continue;
                    }
                    let first = first_dead.expect("a refused dead letter has a rejected event");
                    let seq = self.items[first].ev.seq;
                    if self.held_at != Some(seq) {
                        tracing::error!(target: "sink", "{e}");
                    }
                    self.held_at = Some(seq);
                    self.dead_one_at_a_time = false;
                    self.status.record_error(None, &e.to_string());
                    self.status.set_dead_letter_full(Some(e.to_string()));
                    for item in self.items.iter_mut().skip(first) {
                        if matches!(item.state, ItemState::Dead(_)) {
                            item.state = ItemState::Pending;
                        }
                    }
                    let t = Instant::now() + DEAD_LETTER_RETRY;
                    self.backoff_until = Some(self.backoff_until.map_or(t, |b| b.max(t)));
                    // Round once more: the events delivered before the held one leave the queue.
                }
                Err(e) => {
                    // The SIEM has the events but the queue could not record it: they will be
                    // sent again after a restart (a duplicate, never a loss). A storage
                    // failure, not the SIEM's.
                    let f = Failure::new(
                        FailureKind::Storage,
                        None,
                        format!("could not remove delivered events from the queue: {e}; they may be sent again after a restart (check the disk under queue.path)"),
                    );
                    tracing::error!(target: "sink", kind = f.kind.as_str(), "{}", f.message);
                    self.status.record_error(None, &f.message);
                    self.pop_front(n);
                    return;
                }
            }
        }
    }
}

/// Runs queue work (reads, acknowledgements: disk I/O, `fdatasync`) on tokio's blocking pool
/// and waits for it without holding a runtime worker (ARCHITECTURE.md, threads: disk stalls
/// never block network tasks). A panic in it is the queue's own and is passed on as before; a
/// runtime shutting down reads as the queue closing (the events stay queued).
pub(super) async fn on_disk<T: Send + 'static>(work: impl FnOnce() -> Result<T, QueueError> + Send + 'static) -> Result<T, QueueError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(r) => r,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(QueueError::Closed),
    }
}
