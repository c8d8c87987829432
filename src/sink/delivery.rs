//! The delivery loop: queue -> platform -> SIEM, in order, with retries.
//!
//! One batch is in flight at a time (design.md invariant 3: a later batch never overtakes an
//! earlier one). Each step sends one request for the not-yet-done events at the front of the
//! batch and applies the platform's [`Verdict`]:
//!
//! - delivered events, and events the SIEM rejected for good (into the dead letter), are *done*;
//!   the contiguous done prefix is removed from the queue with [`Queue::ack`];
//! - a failure of the destination as a whole (network, timeout, 408, 429, 5xx, 401/403, 404,
//!   3xx) changes nothing in the queue: status turns `error` at once, the request is retried
//!   after an exponential backoff with jitter (at least `Retry-After`), `max_retries` times
//!   quickly, then at `max_backoff` for as long as it takes (`hold`), or the batch is moved to
//!   the dead letter (`on_retry_exhausted: dead_letter`);
//! - 413 halves the request size; an unattributed 400 on a multi-event request resends those
//!   events one at a time so only the bad one is dead-lettered.
//!
//! Invariants (absences): the sink never removes an event before a 2xx that covers it or a
//! permanent rejection of that event; it never re-sends an event the SIEM already acknowledged
//! within this process; a config change is picked up between requests, so a fixed credential
//! or URL applies to the very next attempt, and `enabled: false` stops new requests at once.
//! A stop waits for the request in flight, but not for a confirmation still pending (Splunk
//! indexer ack can take up to `ack_timeout`): that request's events stay queued and are sent
//! again at the next start, which is the only way a graceful stop can resend.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::sync::watch;

use crate::config::{Config, DeliveryConfig, OnRetryExhausted, SiemConfig};
use crate::queue::{now_rfc3339, DeadLetterMeta, Queue, QueuedEvent};
use crate::shutdown::Shutdown;
use crate::sink::http::HttpClient;
use crate::sink::platform::{EventOutcome, Failure, FailureKind, Platform, Verdict};
use crate::status::{ConfigView, StatusHub};

/// How long a stop waits for the request in flight before leaving it to the next start.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

enum ItemState {
    Pending,
    Delivered,
    Dead(DeadLetterMeta),
}

struct Item {
    ev: QueuedEvent,
    state: ItemState,
}

struct Active {
    siem: SiemConfig,
    client: HttpClient,
    platform: Arc<dyn Platform>,
    prepared: bool,
}

pub struct Delivery {
    queue: Queue,
    status: Arc<StatusHub>,
    config: watch::Receiver<Arc<Config>>,
    shutdown: Shutdown,
    active: Option<Active>,
    /// The batch in flight, in queue order.
    items: VecDeque<Item>,
    /// Highest sequence number read from the queue.
    cursor: u64,
    /// Most events per request for the current batch (halved on 413).
    cap: usize,
    /// Events up to this sequence number are sent one per request (isolating a bad event).
    single_until: u64,
    /// Consecutive failed attempts.
    attempts: u32,
}

/// What the loop should do after a step.
enum Next {
    Continue,
    Backoff(Option<Duration>),
    WaitForConfig,
    Idle,
}

impl Delivery {
    pub fn new(queue: Queue, status: Arc<StatusHub>, config: watch::Receiver<Arc<Config>>, shutdown: Shutdown) -> Self {
        let cursor = queue.acked();
        Delivery {
            queue,
            status,
            config,
            shutdown,
            active: None,
            items: VecDeque::new(),
            cursor,
            cap: usize::MAX,
            single_until: 0,
            attempts: 0,
        }
    }

    pub async fn run(mut self) {
        loop {
            if self.shutdown.is_triggered() {
                break;
            }
            let next = self.step().await;
            if self.shutdown.is_triggered() {
                break;
            }
            match next {
                Next::Continue => {}
                Next::Idle => {
                    // Nothing to send: a good moment to give disk space back after a backlog.
                    let q = self.queue.clone();
                    tokio::task::block_in_place(|| q.maybe_reclaim());
                    let mut sd = self.shutdown.clone();
                    tokio::select! {
                        _ = self.queue.wait_for_events(self.cursor, Duration::from_secs(1)) => {}
                        _ = self.config.changed() => {}
                        _ = sd.wait() => {}
                    }
                }
                Next::WaitForConfig => {
                    let mut sd = self.shutdown.clone();
                    tokio::select! {
                        r = self.config.changed() => { if r.is_err() { break; } }
                        _ = sd.wait() => {}
                    }
                }
                Next::Backoff(retry_after) => {
                    let d = self.backoff(retry_after);
                    tracing::debug!(target: "sink", attempt = self.attempts, delay_ms = d.as_millis() as u64, "retrying after backoff");
                    let mut sd = self.shutdown.clone();
                    tokio::select! {
                        _ = tokio::time::sleep(d) => {}
                        // A config edit (e.g. fixed credentials) is tried at once.
                        _ = self.config.changed() => {}
                        _ = sd.wait() => {}
                    }
                }
            }
        }
        // Graceful stop: whatever the SIEM already accepted leaves the queue now, so a restart
        // resends nothing.
        self.ack_done_prefix();
        tracing::info!(target: "sink", "delivery stopped");
    }

    fn delivery_cfg(&self) -> DeliveryConfig {
        self.config.borrow().delivery.clone()
    }

    /// Exponential backoff with jitter, capped; never shorter than the SIEM's Retry-After.
    fn backoff(&self, retry_after: Option<Duration>) -> Duration {
        let d = self.delivery_cfg();
        let base = if self.attempts > d.max_retries {
            d.max_backoff
        } else {
            let exp = d.initial_backoff.saturating_mul(1u32 << self.attempts.saturating_sub(1).min(20));
            exp.min(d.max_backoff)
        };
        // "Equal jitter": between half and all of the delay, so retries never bunch up but
        // also never come back instantly.
        let ms = base.as_millis() as u64;
        let jittered = Duration::from_millis(ms / 2 + rand::thread_rng().gen_range(0..=ms / 2));
        match retry_after {
            Some(ra) => jittered.max(ra),
            None => jittered,
        }
    }

    /// Makes sure `active` matches the current config. Returns false if delivery cannot run.
    fn refresh(&mut self) -> Result<bool, Next> {
        let cfg = self.config.borrow_and_update().clone();
        let stale = self.active.as_ref().is_none_or(|a| a.siem != cfg.siem);
        if stale {
            let view = ConfigView {
                url: cfg.siem.url_redacted(),
                platform: cfg.siem.effective_platform().as_str().to_string(),
                enabled: cfg.siem.enabled,
            };
            self.status.set_config(view);
            match HttpClient::new(&cfg.siem) {
                Ok(client) => {
                    let platform = crate::sink::build_platform(&cfg.siem);
                    if self.active.is_some() {
                        tracing::info!(target: "sink", url = %cfg.siem.url_redacted(), platform = platform.name(), enabled = cfg.siem.enabled, "SIEM settings changed; they apply to the next request");
                    }
                    self.active = Some(Active {
                        siem: cfg.siem.clone(),
                        client,
                        platform,
                        prepared: false,
                    });
                    // A new destination may have other limits: start the batch's sizing afresh.
                    self.cap = usize::MAX;
                    self.attempts = 0;
                }
                Err(e) => {
                    self.active = None;
                    self.status.record_error(None, &e.0);
                    tracing::error!(target: "sink", "{}", e.0);
                    return Err(Next::WaitForConfig);
                }
            }
        }
        Ok(cfg.siem.enabled)
    }

    async fn step(&mut self) -> Next {
        match self.refresh() {
            Ok(true) => {}
            Ok(false) => return Next::WaitForConfig,
            Err(n) => return n,
        }
        self.ack_done_prefix();
        let active = self.active.as_mut().expect("refresh set it");
        if !active.prepared {
            match active.platform.prepare(&active.client).await {
                Ok(()) => active.prepared = true,
                Err(f) => return self.failed(f),
            }
        }
        let active = self.active.as_ref().expect("refresh set it");
        let platform = active.platform.clone();
        let client = active.client.clone();
        if self.items.is_empty() {
            let (max_events, max_bytes) = platform.limits();
            // Read a little ahead of one request so platforms that batch get full requests.
            let mut batch = match self.queue.read(self.cursor, max_events.max(1), max_bytes.max(1)) {
                Ok(b) => b,
                Err(e) => {
                    let f = Failure::new(FailureKind::Network, None, format!("cannot read the queue: {e}"));
                    return self.failed(f);
                }
            };
            if batch.is_empty() {
                return Next::Idle;
            }
            let linger = self.delivery_cfg().linger;
            if !linger.is_zero() && batch.len() < max_events {
                let mut sd = self.shutdown.clone();
                tokio::select! {
                    _ = tokio::time::sleep(linger) => {}
                    _ = sd.wait() => return Next::Idle,
                }
                if let Ok(b) = self.queue.read(self.cursor, max_events.max(1), max_bytes.max(1)) {
                    if b.len() > batch.len() {
                        batch = b;
                    }
                }
            }
            self.cursor = batch.last().map(|e| e.seq).unwrap_or(self.cursor);
            self.cap = usize::MAX;
            self.items = batch
                .into_iter()
                .map(|ev| Item {
                    ev,
                    state: ItemState::Pending,
                })
                .collect();
        }

        // The not-yet-done events, in order.
        let pending: Vec<QueuedEvent> = self
            .items
            .iter()
            .filter(|i| matches!(i.state, ItemState::Pending))
            .map(|i| i.ev.clone())
            .collect();
        if pending.is_empty() {
            return Next::Continue;
        }
        let mut limit = pending.len().min(self.cap);
        if pending[0].seq <= self.single_until {
            limit = 1;
        }
        let req = platform.encode(&pending[..limit]);
        let n = req.events.clamp(1, limit);
        let sent = &pending[..n];
        let started = Instant::now();
        // A stop lets the request in flight finish (so nothing is resent), but waits at most
        // SHUTDOWN_GRACE for it: process supervisors (Kubernetes, systemd) kill after ~30 s,
        // and a hanging SIEM must not turn a graceful stop into a SIGKILL.
        let mut sd = self.shutdown.clone();
        let resp = tokio::select! {
            r = client.send(&req) => r,
            _ = async { sd.wait().await; tokio::time::sleep(SHUTDOWN_GRACE).await } => {
                tracing::warn!(target: "sink", events = n, "stopping while a request is still unanswered after {SHUTDOWN_GRACE:?}; its events stay queued and are sent again at the next start, so they may be duplicated");
                return Next::Idle;
            }
        };
        self.status.metrics.observe_latency(started.elapsed());
        self.status
            .metrics
            .bytes_sent
            .fetch_add(req.body.len() as u64, std::sync::atomic::Ordering::Relaxed);
        let mut verdict = match &resp {
            Ok(r) => platform.interpret(sent, r),
            Err(f) => Verdict::Retry(f.clone()),
        };
        if let (Ok(r), Verdict::Delivered | Verdict::PerEvent(_)) = (&resp, &verdict) {
            // Confirmation (Splunk indexer ack) can take up to its timeout, a minute by default:
            // a stop does not wait for it. The request stays undone, so its events stay queued
            // and go again at the next start. `biased`: a platform that confirms at once is
            // always applied, so a graceful stop still resends nothing there.
            let mut sd = self.shutdown.clone();
            tokio::select! {
                biased;
                c = platform.confirm(&client, r) => {
                    if let Err(f) = c {
                        verdict = Verdict::Retry(f);
                    }
                }
                _ = sd.wait() => {
                    tracing::warn!(target: "sink", events = n, "stopping before the SIEM confirmed the last request; its events stay queued and are sent again at the next start, so they may be duplicated");
                    return Next::Idle;
                }
            }
        }
        self.apply(sent, verdict, &client)
    }

    /// Sets the state of the item `seq`. Items are in queue order (ascending `seq`), so this
    /// is a binary search: marking a whole batch stays O(n log n), not O(n^2).
    fn mark(&mut self, seq: u64, state: ItemState) {
        if let Ok(i) = self.items.binary_search_by_key(&seq, |i| i.ev.seq) {
            self.items[i].state = state;
        }
    }

    fn dead(&self, f: &Failure, seq: u64, why: &str) -> ItemState {
        ItemState::Dead(DeadLetterMeta {
            at: now_rfc3339(),
            reason: format!("{why}{}", f.message),
            http_status: f.http_status,
            original_seq: seq,
        })
    }

    fn apply(&mut self, sent: &[QueuedEvent], verdict: Verdict, client: &HttpClient) -> Next {
        let m = &self.status.metrics;
        use std::sync::atomic::Ordering::Relaxed;
        match verdict {
            Verdict::Delivered => {
                m.requests_ok.fetch_add(1, Relaxed);
                for e in sent {
                    self.mark(e.seq, ItemState::Delivered);
                }
                self.succeeded();
                self.ack_done_prefix();
                Next::Continue
            }
            Verdict::PerEvent(outcomes) => {
                m.requests_ok.fetch_add(1, Relaxed);
                let mut retry: Option<Failure> = None;
                for (e, o) in sent
                    .iter()
                    .zip(outcomes.into_iter().chain(std::iter::repeat(EventOutcome::Retry(Failure::new(
                        FailureKind::BadResponse,
                        None,
                        "the SIEM's answer did not cover every event; resending the rest",
                    )))))
                {
                    match o {
                        EventOutcome::Delivered => self.mark(e.seq, ItemState::Delivered),
                        EventOutcome::DeadLetter(f) => {
                            let f = redacted(client, f);
                            tracing::warn!(target: "sink", seq = e.seq, "the SIEM rejected an event; moved to the dead letter: {}", f.message);
                            let st = self.dead(&f, e.seq, "");
                            self.mark(e.seq, st);
                        }
                        EventOutcome::Retry(f) => {
                            if retry.is_none() {
                                retry = Some(f);
                            }
                        }
                    }
                }
                self.ack_done_prefix();
                match retry {
                    None => {
                        self.succeeded();
                        Next::Continue
                    }
                    Some(f) => self.failed(f),
                }
            }
            Verdict::TooLarge(f) => {
                let f = redacted(client, f);
                if sent.len() > 1 {
                    self.cap = (sent.len() / 2).max(1);
                    tracing::info!(target: "sink", events = sent.len(), "request too large for the SIEM; retrying with {} events per request", self.cap);
                    Next::Continue
                } else {
                    m.requests_failed.fetch_add(1, Relaxed);
                    tracing::warn!(target: "sink", seq = sent[0].seq, "a single event is too large for the SIEM; moved to the dead letter: {}", f.message);
                    let st = self.dead(&f, sent[0].seq, "event too large for the SIEM: ");
                    self.mark(sent[0].seq, st);
                    self.ack_done_prefix();
                    Next::Continue
                }
            }
            Verdict::Rejected(f) => {
                let f = redacted(client, f);
                m.requests_failed.fetch_add(1, Relaxed);
                if sent.len() > 1 {
                    self.single_until = sent.last().map(|e| e.seq).unwrap_or(0);
                    tracing::info!(target: "sink", events = sent.len(), "the SIEM rejected a batch without naming the event ({}); resending one event at a time to isolate it", f.message);
                    Next::Continue
                } else {
                    tracing::warn!(target: "sink", seq = sent[0].seq, "the SIEM rejected an event; moved to the dead letter: {}", f.message);
                    let st = self.dead(&f, sent[0].seq, "");
                    self.mark(sent[0].seq, st);
                    self.ack_done_prefix();
                    Next::Continue
                }
            }
            Verdict::Retry(f) => {
                m.requests_failed.fetch_add(1, Relaxed);
                let f = redacted(client, f);
                let next = self.failed(f.clone());
                let d = self.delivery_cfg();
                if self.attempts > d.max_retries && d.on_retry_exhausted == OnRetryExhausted::DeadLetter {
                    tracing::warn!(target: "sink", events = sent.len(), "retries exhausted; moving the batch to the dead letter (delivery.on_retry_exhausted: dead_letter): {}", f.message);
                    for e in sent {
                        let st = self.dead(&f, e.seq, "retries exhausted: ");
                        self.mark(e.seq, st);
                    }
                    self.ack_done_prefix();
                    self.attempts = 0;
                    return Next::Continue;
                }
                next
            }
        }
    }

    fn succeeded(&mut self) {
        if self.attempts > 0 {
            tracing::info!(target: "sink", failed_attempts = self.attempts, "delivery recovered; the SIEM is accepting events again");
        }
        self.attempts = 0;
        self.status.record_success();
    }

    fn failed(&mut self, f: Failure) -> Next {
        self.attempts = self.attempts.saturating_add(1);
        self.status.metrics.retries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.status.record_error(f.http_status, &f.message);
        let max = self.delivery_cfg().max_retries;
        if self.attempts == 1 {
            tracing::warn!(target: "sink", http_status = f.http_status, "delivery failed, will retry: {}", f.message);
        } else if self.attempts == max + 1 {
            tracing::error!(target: "sink", attempts = self.attempts, "delivery still failing after {max} retries; holding events and probing at delivery.max_backoff: {}", f.message);
        } else {
            tracing::debug!(target: "sink", attempts = self.attempts, "delivery failed again: {}", f.message);
        }
        Next::Backoff(f.retry_after)
    }

    /// Removes the contiguous done prefix of the batch from the queue.
    fn ack_done_prefix(&mut self) {
        let mut upto = None;
        let mut dead = Vec::new();
        let mut delivered = 0u64;
        while let Some(front) = self.items.front() {
            if matches!(front.state, ItemState::Pending) {
                break;
            }
            let item = self.items.pop_front().expect("front exists");
            upto = Some(item.ev.seq);
            match item.state {
                ItemState::Dead(meta) => dead.push((meta, item.ev.data)),
                _ => delivered += 1,
            }
        }
        let Some(upto) = upto else { return };
        let n_dead = dead.len() as u64;
        match self.queue.ack(upto, dead) {
            Ok(()) => {
                use std::sync::atomic::Ordering::Relaxed;
                self.status.metrics.delivered.fetch_add(delivered, Relaxed);
                self.status.metrics.dead_lettered.fetch_add(n_dead, Relaxed);
            }
            Err(e) => {
                // The SIEM has the events but the queue could not record it: they will be sent
                // again after a restart (a duplicate, never a loss).
                tracing::error!(target: "sink", "could not remove delivered events from the queue: {e}");
            }
        }
        if self.items.is_empty() {
            self.single_until = 0;
        }
    }
}

fn redacted(client: &HttpClient, mut f: Failure) -> Failure {
    f.message = client.redact(&f.message);
    f
}
