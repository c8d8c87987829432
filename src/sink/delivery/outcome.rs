//! Applying an answer: the platform's [`Verdict`] turned into event states (delivered, dead,
//! pending again), endpoint health, the destination's attempt count and backoff, and each
//! event's own attempts under the one retry rule (`sink::retry`).
//!
//! Invariants: only a 2xx that covers an event, or a permanent rejection of that very event,
//! makes it done (ARCHITECTURE.md invariant 2); destination failures never drop an event unless
//! the user chose `on_retry_exhausted: dead_letter`, and then only an event past its own
//! `max_retries` (invariant 3); a failure of the queue itself is a storage failure, never a
//! destination failure; messages built from an answer are redacted (invariant 8).

use super::*;

impl Delivery {
    pub(super) fn apply(&mut self, sent: &[QueuedEvent], verdict: Verdict, client: &HttpClient, attempt: u32, to: Sent) {
        // Any answer but a failure of the destination shows the endpoint works.
        let endpoint_works = match &verdict {
            Verdict::Retry(_) => false,
            Verdict::PerEvent(o) => o.iter().any(|o| !matches!(o, EventOutcome::Retry(_))),
            _ => true,
        };
        if endpoint_works {
            if let Some(a) = self.active.as_mut().filter(|a| a.gen == to.gen) {
                a.endpoints.lock().unwrap().succeeded(to.ticket);
            }
        }
        let m = &self.status.metrics;
        use std::sync::atomic::Ordering::Relaxed;
        match verdict {
            Verdict::Delivered => {
                m.requests_ok.fetch_add(1, Relaxed);
                for e in sent {
                    self.mark(e.seq, ItemState::Delivered);
                }
                self.succeeded();
            }
            Verdict::PerEvent(outcomes) => {
                m.requests_ok.fetch_add(1, Relaxed);
                self.per_event(sent, outcomes, client, attempt, to);
            }
            Verdict::TooLarge(f) => {
                let f = redacted(client, f);
                if sent.len() > 1 {
                    // Smaller requests for every event read so far; later ones start full-size.
                    self.cap = (sent.len() / 2).max(1).min(self.cap);
                    self.cap_until = self.cap_until.max(self.cursor);
                    self.set_pending(sent);
                    tracing::info!(target: "sink", events = sent.len(), "request too large for the SIEM; retrying with {} events per request", self.cap);
                } else {
                    m.requests_failed.fetch_add(1, Relaxed);
                    tracing::warn!(target: "sink", seq = sent[0].seq, "a single event is too large for the SIEM; moved to the dead letter: {}", f.message);
                    let st = self.dead(&f, sent[0].seq, "event too large for the SIEM: ");
                    self.mark(sent[0].seq, st);
                }
            }
            Verdict::Rejected(f) => {
                let f = redacted(client, f);
                m.requests_failed.fetch_add(1, Relaxed);
                if sent.len() > 1 {
                    self.single_until = self.single_until.max(sent.last().map(|e| e.seq).unwrap_or(0));
                    self.set_pending(sent);
                    tracing::info!(target: "sink", events = sent.len(), "the SIEM rejected a batch without naming the event ({}); resending one event at a time to isolate it", f.message);
                } else {
                    tracing::warn!(target: "sink", seq = sent[0].seq, "the SIEM rejected an event; moved to the dead letter: {}", f.message);
                    let st = self.dead(&f, sent[0].seq, "");
                    self.mark(sent[0].seq, st);
                }
            }
            Verdict::Retry(f) => {
                m.requests_failed.fetch_add(1, Relaxed);
                let f = redacted(client, f);
                self.set_pending(sent);
                let moved = self.events_failed(sent.iter().map(|e| (e.seq, &f)));
                if !self.endpoint_failed(to, &f) {
                    self.failed(f, attempt);
                }
                self.exhausted_moved(moved);
            }
        }
        // The run loop acknowledges the done prefix next (`ack_done_prefix`, on the blocking
        // pool).
    }

    /// An answer event by event: each is delivered, dead-lettered or pending again; the refused
    /// ones count a failed attempt of their own.
    fn per_event(&mut self, sent: &[QueuedEvent], outcomes: Vec<EventOutcome>, client: &HttpClient, attempt: u32, to: Sent) {
        let mut retry: Option<Failure> = None;
        let mut refused: Vec<(u64, Failure)> = Vec::new();
        let mut progress = false;
        for (e, o) in sent
            .iter()
            .zip(outcomes.into_iter().chain(std::iter::repeat(EventOutcome::Retry(Failure::new(
                FailureKind::BadResponse,
                None,
                "the SIEM's answer did not cover every event; resending the rest",
            )))))
        {
            match o {
                EventOutcome::Delivered => {
                    progress = true;
                    self.mark(e.seq, ItemState::Delivered)
                }
                EventOutcome::DeadLetter(f) => {
                    progress = true;
                    let f = redacted(client, f);
                    tracing::warn!(target: "sink", seq = e.seq, "the SIEM rejected an event; moved to the dead letter: {}", f.message);
                    let st = self.dead(&f, e.seq, "");
                    self.mark(e.seq, st);
                }
                EventOutcome::Retry(f) => {
                    self.mark(e.seq, ItemState::Pending);
                    let f = redacted(client, f);
                    refused.push((e.seq, f.clone()));
                    if retry.is_none() {
                        retry = Some(f);
                    }
                }
            }
        }
        match retry {
            None => self.succeeded(),
            // A partial batch is progress, not a failure: the SIEM took or rejected events
            // of the request and left the rest unread because of a bad one (Splunk HEC
            // stops at `invalid-event-number`), not for want of capacity. The rest goes
            // out again at once, with no backoff and no failed attempt: the SIEM did not
            // read them, so they are not counted against them either.
            Some(f) if progress && f.kind == FailureKind::Rejected => self.succeeded(),
            Some(f) => {
                // Each refused event counts a failed attempt of its own (the one
                // retry rule), whatever other events and requests do meanwhile.
                let moved = self.events_failed(refused.iter().map(|(seq, f)| (*seq, f)));
                if !self.endpoint_failed(to, &f) {
                    self.failed(f, attempt);
                }
                self.exhausted_moved(moved);
            }
        }
    }

    /// A request (or `prepare`) to one endpoint failed as a whole: that endpoint leaves rotation
    /// with its own backoff. Returns `true` when another endpoint is still in rotation: the
    /// events (already pending again) go there at once, and the SIEM is not in error. `false`:
    /// no endpoint accepts, the caller applies the whole-SIEM failure and backoff.
    pub(super) fn endpoint_failed(&mut self, to: Sent, f: &Failure) -> bool {
        let d = self.policy();
        let Some(a) = self.active.as_mut().filter(|a| a.gen == to.gen) else {
            return false;
        };
        let err = LastError {
            at: now_rfc3339(),
            http_status: f.http_status,
            message: f.message.clone(),
            resolved_at: None,
            dead_letter: false,
        };
        let jitter = rand::thread_rng().gen_range(0.5..=1.0);
        let mut eps = a.endpoints.lock().unwrap();
        let new = eps.failed(
            to.ticket,
            Instant::now(),
            err,
            f.retry_after,
            d.initial_backoff,
            d.max_backoff,
            jitter,
        );
        let others = eps.any_healthy();
        let url = eps.url(to.ticket.idx).to_string();
        let n = eps.len();
        drop(eps);
        if n > 1 && new {
            if others {
                tracing::warn!(target: "sink", endpoint = %url, http_status = f.http_status, "a SIEM endpoint failed; out of rotation until its backoff ends, its events go to the other endpoints now: {}", f.message);
            } else {
                tracing::warn!(target: "sink", endpoint = %url, http_status = f.http_status, "a SIEM endpoint failed, and no other endpoint is in rotation: {}", f.message);
            }
        }
        others
    }

    pub(super) fn endpoint_finished(&mut self, to: Sent) {
        if let Some(a) = self.active.as_mut().filter(|a| a.gen == to.gen) {
            a.endpoints.lock().unwrap().finished(to.ticket);
        }
    }

    pub(super) fn succeeded(&mut self) {
        if self.attempts > 0 {
            tracing::info!(target: "sink", failed_attempts = self.attempts, "delivery recovered; the SIEM is accepting events again");
        }
        self.attempts = 0;
        self.status.record_success();
        self.status.set_retry(None);
    }

    /// A request failed (as a whole, or some of its events were refused; those are pending
    /// again and counted against themselves by [`Self::events_failed`]): one failed attempt of
    /// the destination, for the backoff and status. Requests launched before the current
    /// attempt count (an earlier failure already paused new requests) do not add a retry: ten
    /// requests in flight failing together are one failed attempt.
    pub(super) fn failed(&mut self, f: Failure, attempt: u32) {
        if attempt < self.attempts {
            self.status.record_error(f.http_status, &f.message);
            if let Some(ra) = f.retry_after {
                let t = Instant::now() + ra;
                self.backoff_until = Some(self.backoff_until.map_or(t, |b| b.max(t)));
            }
            tracing::debug!(target: "sink", "a request already in flight failed too: {}", f.message);
            return;
        }
        self.count_failure(&f);
    }

    /// The one retry rule (`sink::retry`) applied to events a request carried and did not
    /// deliver: each counts a failed attempt of its own. An event past `max_retries` retries
    /// moves to the dead letter under `on_retry_exhausted: dead_letter` (with the reason, in
    /// the same acknowledgement: ARCHITECTURE.md invariant 2), or stays queued under `hold`
    /// (invariant 3). Events already done are skipped. Returns how many moved.
    pub(super) fn events_failed<'f>(&mut self, refused: impl IntoIterator<Item = (u64, &'f Failure)>) -> usize {
        let policy = self.policy();
        let (mut moved, mut held) = (0usize, 0usize);
        let mut last: Option<Failure> = None;
        for (seq, f) in refused {
            let Ok(i) = self.items.binary_search_by_key(&seq, |i| i.ev.seq) else {
                continue;
            };
            if self.items[i].state.is_done() {
                continue;
            }
            self.items[i].failures = self.items[i].failures.saturating_add(1);
            let failures = self.items[i].failures;
            match policy.event_failed(failures) {
                Exhausted::No => {}
                // Said once per event, when it runs out of quick retries.
                Exhausted::Hold if failures == policy.max_retries.saturating_add(1) => {
                    held += 1;
                    last = Some(f.clone());
                }
                Exhausted::Hold => {}
                Exhausted::DeadLetter => {
                    let st = self.dead(f, seq, &format!("retries exhausted after {failures} attempts: "));
                    self.items[i].state = st;
                    moved += 1;
                    last = Some(f.clone());
                }
            }
        }
        let max = policy.max_retries;
        if let Some(f) = last {
            if moved > 0 {
                tracing::warn!(target: "sink", events = moved, http_status = f.http_status, "retries exhausted ({max} retries); moving the events to the dead letter (delivery.on_retry_exhausted: dead_letter): {}", f.message);
            }
            if held > 0 {
                tracing::warn!(target: "sink", events = held, http_status = f.http_status, "events still refused after {max} retries; they stay queued and are tried again until the SIEM takes them (delivery.on_retry_exhausted: hold): {}", f.message);
            }
        }
        moved
    }

    /// After events moved to the dead letter for exhausted retries, newer events flow at once
    /// (the failing ones are out of the way) instead of waiting out the backoff they earned.
    pub(super) fn exhausted_moved(&mut self, moved: usize) {
        if moved > 0 {
            self.attempts = 0;
            self.backoff_until = None;
        }
    }

    /// Counts a failed attempt: status `error`, and no new request before the backoff.
    pub(super) fn count_failure(&mut self, f: &Failure) {
        self.attempts = self.attempts.saturating_add(1);
        self.status.metrics.retries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.status.record_error(f.http_status, &f.message);
        let max = self.policy().max_retries;
        if self.attempts == 1 {
            tracing::warn!(target: "sink", http_status = f.http_status, "delivery failed, will retry: {}", f.message);
        } else if self.attempts == max + 1 {
            tracing::error!(target: "sink", attempts = self.attempts, "delivery still failing after {max} retries; holding events and probing at delivery.max_backoff: {}", f.message);
        } else {
            tracing::debug!(target: "sink", attempts = self.attempts, "delivery failed again: {}", f.message);
        }
        let d = self.backoff(f.retry_after);
        tracing::debug!(target: "sink", attempt = self.attempts, delay_ms = d.as_millis() as u64, "retrying after backoff");
        let t = Instant::now() + d;
        self.backoff_until = Some(self.backoff_until.map_or(t, |b| b.max(t)));
        let wait = self.backoff_until.map_or(d, |b| b.saturating_duration_since(Instant::now()));
        self.status.set_retry(Some((self.attempts, wait)));
    }

    /// The agent's own queue failed (not the SIEM): said as a storage failure (never
    /// "network", never a SIEM retry in metrics, never counted against an event), and the
    /// next read waits a backoff so a failing disk is not hammered.
    pub(super) fn storage_failed(&mut self, what: &str, e: &QueueError) {
        self.storage_failures = self.storage_failures.saturating_add(1);
        let f = Failure::new(
            FailureKind::Storage,
            None,
            format!("{what}: {e}; the events stay in the queue, delivery tries again shortly (check the disk under queue.path)"),
        );
        if self.storage_failures == 1 {
            tracing::error!(target: "sink", kind = f.kind.as_str(), "{}", f.message);
        } else {
            tracing::debug!(target: "sink", kind = f.kind.as_str(), failures = self.storage_failures, "{}", f.message);
        }
        self.status.record_error(None, &f.message);
        let d = self
            .policy()
            .backoff(self.storage_failures, None, rand::thread_rng().gen_range(0.0..=1.0));
        let t = Instant::now() + d;
        self.backoff_until = Some(self.backoff_until.map_or(t, |b| b.max(t)));
    }
}

pub(super) fn redacted(client: &HttpClient, mut f: Failure) -> Failure {
    f.message = client.redact(&f.message);
    f.detail = f.detail.map(|d| client.redact(&d));
    f
}
