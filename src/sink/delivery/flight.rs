//! One request in flight: encoded from a slice of the window, sent by its own task (with the
//! platform's confirmation, e.g. Splunk indexer ack), and handed back to the loop when it lands.
//!
//! Invariants: a stop waits for a request at most `SHUTDOWN_GRACE` and never for a pending
//! confirmation: such a request's events stay queued (a resend, never a loss: ARCHITECTURE.md
//! invariant 2); a request task that fails puts its events back to pending.

use super::*;

impl Delivery {
    /// Encodes and sends the events at `run` (or the prefix of them the platform takes).
    pub(super) fn start(&mut self, run: &[usize], platform: &Arc<dyn Platform>, client: &HttpClient, ep: usize, ep_probe: bool) {
        let pending: Vec<QueuedEvent> = run.iter().map(|&i| self.items[i].ev.clone()).collect();
        let req = platform.encode(&pending);
        let n = req.events.clamp(1, run.len());
        for &i in &run[..n] {
            self.items[i].state = ItemState::InFlight;
        }
        let mut sent = pending;
        sent.truncate(n);
        let (first, last) = (sent[0].seq, sent[n - 1].seq);
        let probe = self.attempts > 0;
        self.probing |= probe;
        self.concurrency.started();
        let active = self.active.as_mut().expect("launch runs after refresh");
        let to = Sent {
            ticket: active.endpoints.lock().unwrap().started(ep, ep_probe),
            gen: active.gen,
        };
        let attempt = self.attempts;
        let platform = platform.clone();
        let client = client.clone();
        let mut sd = self.shutdown.clone();
        let handle = self.flights.spawn(async move {
            let started = Instant::now();
            let body_bytes = req.body.len();
            let flight = |outcome, rtt| Flight {
                sent: Vec::new(),
                outcome,
                rtt,
                body_bytes,
                attempt,
                probe,
                client: client.clone(),
                to,
                http_status: None,
            };
            // A stop lets the request finish (so nothing is resent), but waits at most
            // SHUTDOWN_GRACE for it: process supervisors (Kubernetes, systemd) kill after
            // ~30 s, and a hanging SIEM must not turn a graceful stop into a SIGKILL.
            let resp = tokio::select! {
                r = client.send(&req) => r,
                _ = async { sd.wait().await; tokio::time::sleep(SHUTDOWN_GRACE).await } => {
                    tracing::warn!(target: "sink", events = n, "stopping while a request is still unanswered after {SHUTDOWN_GRACE:?}; its events stay queued and are sent again at the next start, so they may be duplicated");
                    return Flight { sent, ..flight(Outcome::Abandoned, started.elapsed()) };
                }
            };
            let rtt = started.elapsed();
            let http_status = resp.as_ref().ok().map(|r| r.status);
            let mut verdict = match &resp {
                Ok(r) => platform.interpret(&sent, r),
                Err(f) => Verdict::Retry(f.clone()),
            };
            if let (Ok(r), Verdict::Delivered | Verdict::PerEvent(_)) = (&resp, &verdict) {
                // Confirmation (Splunk indexer ack) can take up to its timeout, a minute by
                // default: a stop does not wait for it. The request stays undone, so its events
                // stay queued and go again at the next start. `biased`: a platform that confirms
                // at once is always applied, so a graceful stop still resends nothing there.
                tokio::select! {
                    biased;
                    c = platform.confirm(&client, r) => {
                        if let Err(f) = c {
                            verdict = Verdict::Retry(f);
                        }
                    }
                    _ = sd.wait() => {
                        tracing::warn!(target: "sink", events = n, "stopping before the SIEM confirmed a request; its events stay queued and are sent again at the next start, so they may be duplicated");
                        return Flight { sent, ..flight(Outcome::Abandoned, rtt) };
                    }
                }
            }
            Flight {
                sent,
                http_status,
                ..flight(Outcome::Answered(verdict), rtt)
            }
        });
        self.flight_seqs.insert(handle.id(), (first, last, to));
    }

    /// Applies a finished request.
    pub(super) fn landed(&mut self, r: Result<(tokio::task::Id, Flight), tokio::task::JoinError>) {
        let flight = match r {
            Ok((id, f)) => {
                self.flight_seqs.remove(&id);
                f
            }
            Err(e) => {
                // Only a bug can get here (nothing in a request task panics on input): put the
                // events back so they are sent again rather than stuck.
                tracing::error!(target: "sink", "a delivery request task failed: {e}; its events will be sent again");
                if let Some((first, last, to)) = self.flight_seqs.remove(&e.id()) {
                    for item in self.items.iter_mut() {
                        if (first..=last).contains(&item.ev.seq) && matches!(item.state, ItemState::InFlight) {
                            item.state = ItemState::Pending;
                        }
                    }
                    self.endpoint_finished(to);
                }
                self.concurrency.finished(Instant::now(), Duration::ZERO, Signal::Ignore);
                self.probing = false;
                return;
            }
        };
        if flight.probe {
            self.probing = false;
        }
        self.endpoint_finished(flight.to);
        let verdict = match flight.outcome {
            Outcome::Abandoned => {
                self.concurrency.finished(Instant::now(), flight.rtt, Signal::Ignore);
                self.set_pending(&flight.sent);
                return;
            }
            Outcome::Answered(v) => v,
        };
        self.status.metrics.observe_latency(flight.rtt);
        self.status.metrics.count_response(flight.http_status);
        self.status
            .metrics
            .bytes_sent
            .fetch_add(flight.body_bytes as u64, std::sync::atomic::Ordering::Relaxed);
        self.concurrency.finished(Instant::now(), flight.rtt, signal(&verdict));
        self.apply(&flight.sent, verdict, &flight.client, flight.attempt, flight.to);
    }
}

/// What an answer says about the SIEM's load, for the concurrency controller.
pub(super) fn signal(v: &Verdict) -> Signal {
    let back_pressure = |f: &Failure| {
        matches!(
            f.kind,
            FailureKind::RateLimited | FailureKind::Timeout | FailureKind::RequestTimeout
        ) || matches!(f.http_status, Some(429 | 503))
    };
    match v {
        Verdict::Delivered | Verdict::TooLarge(_) | Verdict::Rejected(_) => Signal::Ok,
        Verdict::PerEvent(outcomes) => {
            if outcomes.iter().any(|o| matches!(o, EventOutcome::Retry(f) if back_pressure(f))) {
                Signal::BackPressure
            } else {
                Signal::Ok
            }
        }
        Verdict::Retry(f) if back_pressure(f) => Signal::BackPressure,
        Verdict::Retry(_) => Signal::Ignore,
    }
}
