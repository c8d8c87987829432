//! The delivery loop: queue -> platform -> SIEM, several requests in flight, with retries.
//!
//! The loop reads ahead from the queue into a window of events (`items`, in queue order) and
//! sends disjoint, consecutive slices of it as concurrent requests, as many at once as the
//! adaptive limit allows (`sink::concurrency`, capped by `delivery.max_in_flight`; `1` gives
//! today's strict order: one request at a time, a later one never overtakes an earlier one).
//! Each answer is read by the platform into a [`Verdict`] and applied to that request's events:
//!
//! - delivered events, and events the SIEM rejected for good (into the dead letter), are *done*;
//!   only the contiguous done prefix of the window is removed from the queue with
//!   [`Queue::ack`], so a later request is never acknowledged before an earlier one is done and
//!   a crash resends at most what was in flight (ARCHITECTURE.md invariant 4);
//! - a failure of the destination as a whole (network, timeout, 408, 429, 5xx, 401/403, 404,
//!   3xx) changes nothing in the queue: that request's events go back to pending, status turns
//!   `error` at once, and no new request starts until an exponential backoff with jitter (at
//!   least `Retry-After`) has passed; then one probe request at a time is sent (`max_retries`
//!   times quickly, then at `max_backoff`) until one succeeds. Requests that were already in
//!   flight when the failure came and fail too count as the same attempt, not as more retries;
//! - every event a request carried and did not deliver (a whole-request failure, or a per-event
//!   "send again" such as an Elasticsearch item 429 or a Splunk HEC 503 that took part of a
//!   batch) counts a failed attempt of its own, never reset by other events' successes: the one
//!   retry rule (`sink::retry`). Past `max_retries` retries it stays queued (`hold`, the
//!   default) or moves to the dead letter (`on_retry_exhausted: dead_letter`);
//! - a failure of the queue itself (a read or an acknowledgement) is a storage failure, said as
//!   such, never a destination failure nor a failed attempt of an event;
//! - 413 lowers the request size (halving) for the events read so far; an unattributed 400 on a
//!   multi-event request resends those events one at a time so only the bad one is
//!   dead-lettered.
//!
//! Batched platforms wait up to `delivery.linger` (counted from when the oldest event of the
//! batch was accepted) for a full request; one-event requests are always full and never wait.
//!
//! Invariants (absences): the sink never removes an event before a 2xx that covers it or a
//! permanent rejection of that event (ARCHITECTURE.md invariant 2); it never touches the disk on
//! a runtime worker (queue reads and acknowledgements, with their `fdatasync`, run on the
//! blocking pool: [`on_disk`]); it never re-sends an event the SIEM already acknowledged
//! within this process; the window read ahead is bounded in events and bytes; a config change
//! is picked up between requests, so a fixed credential or URL applies to the very next
//! request, and `enabled: false` stops new requests at once (those in flight finish). A stop
//! waits for the requests in flight (at most [`SHUTDOWN_GRACE`]), but not for a confirmation
//! still pending (Splunk indexer ack can take up to `ack_timeout`): that request's events stay
//! queued and are sent again at the next start, which is the only way a graceful stop can
//! resend.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::{Config, SiemConfig};
use crate::queue::{now_rfc3339, DeadLetterMeta, Queue, QueueError, QueuedEvent};
use crate::shutdown::Shutdown;
use crate::sink::concurrency::{Controller, Signal};
use crate::sink::endpoints::{EndpointSet, Pick, Ticket};
use crate::sink::http::HttpClient;
use crate::sink::platform::{EventOutcome, Failure, FailureKind, Platform, Verdict};
use crate::sink::retry::{Exhausted, RetryPolicy};
use crate::status::{ConfigView, LastError, StatusHub};

/// How long a stop waits for the requests in flight before leaving them to the next start.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The read-ahead window holds at most this many bytes of events (or one request's worth when
/// that is more), so a stuck first request cannot make memory grow.
const WINDOW_BYTES: usize = 16 * 1024 * 1024;

/// Events are read from the queue at least this many at a time (one read per one-event request
/// would cost a disk lookup each).
const READ_CHUNK: usize = 64;

enum ItemState {
    Pending,
    InFlight,
    Delivered,
    Dead(DeadLetterMeta),
}

impl ItemState {
    fn is_done(&self) -> bool {
        matches!(self, ItemState::Delivered | ItemState::Dead(_))
    }
}

struct Item {
    ev: QueuedEvent,
    state: ItemState,
    /// Requests that carried this event and did not deliver it (the event's own count for the
    /// retry rule, `sink::retry`; another event's success never resets it).
    failures: u32,
}

struct Active {
    siem: SiemConfig,
    /// One client and platform per endpoint of `siem.url` (its own connections, its own
    /// Splunk ack URL), in the configured order; `endpoints` says where each request goes.
    conns: Vec<Conn>,
    /// Shared with the status hub, which reads its views when asked (`/status`, `/metrics`):
    /// nothing is copied out per request.
    endpoints: Arc<Mutex<EndpointSet>>,
    prepared: bool,
    /// Tells requests started under an earlier config (other endpoints) from current ones.
    gen: u64,
}

/// One endpoint's client and platform.
type Conn = (HttpClient, Arc<dyn Platform>);

/// The endpoint a request went to, under which config generation.
#[derive(Clone, Copy)]
struct Sent {
    ticket: Ticket,
    gen: u64,
}

/// What a request task hands back.
struct Flight {
    sent: Vec<QueuedEvent>,
    outcome: Outcome,
    rtt: Duration,
    body_bytes: usize,
    /// `attempts` when it was launched (see `failed`).
    attempt: u32,
    probe: bool,
    /// The client it was sent with, to redact messages built from its answer.
    client: HttpClient,
    to: Sent,
    /// The SIEM's HTTP status, if it answered (for `sendauth_siem_requests_by_code_total`).
    http_status: Option<u16>,
}

enum Outcome {
    Answered(Verdict),
    /// A stop came first; its events stay queued.
    Abandoned,
}

/// Why the loop waits.
enum Wait {
    /// Delivery is disabled or the config is unusable: wait for a config change.
    Config,
    /// Wait for an answer, a config change, and: new events in the queue (`events`), or the
    /// clock (`until`, end of a backoff or a linger).
    Work { until: Option<Instant>, events: bool },
}

enum Woke {
    Landed(Box<Result<(tokio::task::Id, Flight), tokio::task::JoinError>>),
    ConfigClosed,
    Other,
}

pub struct Delivery {
    queue: Queue,
    status: Arc<StatusHub>,
    config: watch::Receiver<Arc<Config>>,
    config_open: bool,
    shutdown: Shutdown,
    active: Option<Active>,
    /// The read-ahead window, in queue order: every event read and not yet acknowledged.
    items: VecDeque<Item>,
    window_bytes: usize,
    /// Highest sequence number read from the queue.
    cursor: u64,
    /// Most events per request for events up to `cap_until` (halved on 413).
    cap: usize,
    cap_until: u64,
    /// Events up to this sequence number are sent one per request (isolating a bad event).
    single_until: u64,
    /// Consecutive failed attempts of the destination (any success resets it): the backoff
    /// and status figures. Each event's own count is `Item::failures` (`sink::retry`).
    attempts: u32,
    /// Consecutive failures of the queue itself (reads): paces the retries of a failing disk.
    storage_failures: u32,
    /// No request starts before this (backoff, `Retry-After`).
    backoff_until: Option<Instant>,
    /// A probe (a request launched while `attempts > 0`) is in flight.
    probing: bool,
    flights: JoinSet<Flight>,
    /// Sequence range (and endpoint) of each request in flight, to put its events back if its
    /// task fails.
    flight_seqs: HashMap<tokio::task::Id, (u64, u64, Sent)>,
    /// Generation of `active`, bumped at each rebuild.
    active_gen: u64,
    concurrency: Controller,
    /// Reads in a row that found nothing after `cursor`. `wait_for_events` returns at once when
    /// the queue says events exist past `cursor` but none can be read (a damaged store whose
    /// lost range is skipped): then the wait is throttled instead of spinning, which would
    /// also starve the request tasks this task spawned.
    empty_reads: u32,
    /// The dead letter refused a rejected event (full): delivery holds at this sequence number
    /// (see `ack_done_prefix`).
    held_at: Option<u64>,
    /// Rejected events are offered to the dead letter one at a time (some refused as a group).
    dead_one_at_a_time: bool,
}

/// While the dead letter is full, how long before the held event is sent to the SIEM again (an
/// operator's purge or replay, a raised limit, or a fixed SIEM takes effect within this).
const DEAD_LETTER_RETRY: Duration = Duration::from_secs(5);

impl Delivery {
    pub fn new(queue: Queue, status: Arc<StatusHub>, config: watch::Receiver<Arc<Config>>, shutdown: Shutdown) -> Self {
        let cursor = queue.acked();
        let setting = config.borrow().delivery.max_in_flight;
        Delivery {
            queue,
            status,
            config,
            config_open: true,
            shutdown,
            active: None,
            items: VecDeque::new(),
            window_bytes: 0,
            cursor,
            cap: usize::MAX,
            cap_until: 0,
            single_until: 0,
            attempts: 0,
            storage_failures: 0,
            backoff_until: None,
            probing: false,
            flights: JoinSet::new(),
            flight_seqs: HashMap::new(),
            active_gen: 0,
            concurrency: Controller::new(setting, Instant::now()),
            empty_reads: 0,
            held_at: None,
            dead_one_at_a_time: false,
        }
    }

    pub async fn run(mut self) {
        loop {
            if self.shutdown.is_triggered() {
                break;
            }
            let wait = self.launch().await;
            if self.shutdown.is_triggered() {
                break;
            }
            if let Wait::Work { until: None, events: true } = wait {
                if self.flights.is_empty() && self.items.is_empty() {
                    // Nothing to send: a good moment to give disk space back after a backlog.
                    let q = self.queue.clone();
                    // Disk work: on the blocking pool, never on a runtime worker.
                    let _ = tokio::task::spawn_blocking(move || q.maybe_reclaim()).await;
                }
            }
            let woke = self.wait(&wait).await;
            match woke {
                Woke::Landed(r) => {
                    self.landed(*r);
                    self.ack_done_prefix().await;
                }
                Woke::ConfigClosed => {
                    self.config_open = false;
                    if matches!(wait, Wait::Config) && self.flights.is_empty() {
                        break;
                    }
                }
                Woke::Other => {}
            }
        }
        // Graceful stop: the requests in flight finish (each bounded by SHUTDOWN_GRACE), and
        // whatever the SIEM already accepted leaves the queue now, so a restart resends nothing.
        while let Some(r) = self.flights.join_next_with_id().await {
            self.landed(r);
        }
        self.ack_done_prefix().await;
        tracing::info!(target: "sink", "delivery stopped");
    }

    async fn wait(&mut self, wait: &Wait) -> Woke {
        let (until, events) = match wait {
            Wait::Config => (None, false),
            Wait::Work { until, events } => (*until, *events),
        };
        let mut sd = self.shutdown.clone();
        let queue = self.queue.clone();
        let cursor = self.cursor;
        let flights = &mut self.flights;
        let config = &mut self.config;
        let config_open = self.config_open;
        let sleep_until = until.map(tokio::time::Instant::from_std);
        let throttle = if self.empty_reads >= 2 {
            Duration::from_millis(50)
        } else {
            Duration::ZERO
        };
        let new_events = async move {
            // New events notify; the timeout is only a safety net, long so that an idle agent
            // rarely wakes.
            queue.wait_for_events(cursor, Duration::from_secs(30)).await;
            if !throttle.is_zero() {
                tokio::time::sleep(throttle).await;
            }
        };
        tokio::select! {
            Some(r) = flights.join_next_with_id(), if !flights.is_empty() => Woke::Landed(Box::new(r)),
            r = config.changed(), if config_open => {
                if r.is_err() { Woke::ConfigClosed } else { Woke::Other }
            }
            _ = sd.wait() => Woke::Other,
            _ = async { tokio::time::sleep_until(sleep_until.expect("guarded")).await }, if sleep_until.is_some() => Woke::Other,
            _ = new_events, if events => Woke::Other,
        }
    }

    /// The one retry rule, with the current `delivery` settings.
    fn policy(&self) -> RetryPolicy {
        RetryPolicy::new(&self.config.borrow().delivery)
    }

    /// The wait before the next attempt after the destination's `attempts` failures.
    fn backoff(&self, retry_after: Option<Duration>) -> Duration {
        self.policy()
            .backoff(self.attempts, retry_after, rand::thread_rng().gen_range(0.0..=1.0))
    }

    /// Makes sure `active` matches the current config. `Ok(enabled)`, or `Err` if the config
    /// cannot be used.
    fn refresh(&mut self) -> Result<bool, ()> {
        let cfg = self.config.borrow_and_update().clone();
        self.concurrency.set_setting(cfg.delivery.max_in_flight);
        let stale = self.active.as_ref().is_none_or(|a| a.siem != cfg.siem);
        if stale {
            let view = ConfigView {
                url: cfg.siem.url_redacted(),
                platform: cfg.siem.effective_platform().as_str().to_string(),
                enabled: cfg.siem.enabled,
            };
            self.status.set_config(view);
            match endpoint_conns(&cfg.siem) {
                Ok(conns) => {
                    if self.active.is_some() {
                        tracing::info!(target: "sink", url = %cfg.siem.url_redacted(), endpoints = conns.len(), platform = conns[0].1.name(), enabled = cfg.siem.enabled, "SIEM settings changed; they apply to the next request");
                    }
                    let platform = cfg.siem.effective_platform();
                    let urls = cfg.siem.urls.iter().map(|u| crate::config::redact_url(u, platform)).collect();
                    self.active_gen += 1;
                    let endpoints = Arc::new(Mutex::new(EndpointSet::new(urls)));
                    self.status.observe_endpoints(endpoints.clone());
                    self.active = Some(Active {
                        siem: cfg.siem.clone(),
                        conns,
                        endpoints,
                        prepared: false,
                        gen: self.active_gen,
                    });
                    // A new destination may have other limits: start the sizing afresh.
                    self.cap = usize::MAX;
                    self.cap_until = 0;
                    self.attempts = 0;
                    self.backoff_until = None;
                }
                Err(e) => {
                    self.active = None;
                    self.status.record_error(None, &e.0);
                    tracing::error!(target: "sink", "{}", e.0);
                    return Err(());
                }
            }
        }
        Ok(cfg.siem.enabled)
    }

    /// Starts as many requests as allowed now; says what to wait for next.
    async fn launch(&mut self) -> Wait {
        match self.refresh() {
            Ok(true) => {}
            Ok(false) | Err(()) => return Wait::Config,
        }
        self.ack_done_prefix().await;
        let answer = Wait::Work {
            until: None,
            events: false,
        };
        loop {
            if self.shutdown.is_triggered() {
                return answer;
            }
            if let Some(t) = self.backoff_until {
                if Instant::now() < t {
                    return Wait::Work {
                        until: Some(t),
                        events: false,
                    };
                }
                self.backoff_until = None;
            }
            // After a failure, one probe at a time until one succeeds.
            if self.probing || !self.concurrency.can_start() {
                return answer;
            }
            let active = self.active.as_mut().expect("refresh set it");
            let (ep, ep_probe) = match active.endpoints.lock().unwrap().choose(Instant::now()) {
                Pick::Send { idx, probe } => (idx, probe),
                // Every endpoint is failing and being probed: wait for an answer.
                Pick::Busy => return answer,
            };
            let (client, platform) = active.conns[ep].clone();
            if !active.prepared {
                let mut sd = self.shutdown.clone();
                let r = tokio::select! {
                    r = platform.prepare(&client) => r,
                    _ = sd.wait() => return answer,
                };
                match r {
                    Ok(()) => self.active.as_mut().expect("refresh set it").prepared = true,
                    Err(f) => {
                        let f = redacted(&client, f);
                        let active = self.active.as_mut().expect("refresh set it");
                        let to = Sent {
                            ticket: active.endpoints.lock().unwrap().ticket(ep, ep_probe),
                            gen: active.gen,
                        };
                        if !self.endpoint_failed(to, &f) {
                            self.count_failure(&f);
                        }
                        continue;
                    }
                }
            }
            let (max_events, max_bytes) = platform.limits();
            let (max_events, max_bytes) = (max_events.max(1), max_bytes.max(1));

            let at_end = |run: &[usize], items: usize| run.last().is_some_and(|l| l + 1 == items);
            let (run, full) = match self.next_run(max_events, max_bytes) {
                Some(r) if r.1 || !at_end(&r.0, self.items.len()) => r,
                short => {
                    // Nothing pending, or a short run at the end of the window: read more.
                    if let Err(e) = self.read_more(max_events, max_bytes).await {
                        self.storage_failed("cannot read the next events from the queue", &e);
                        continue;
                    }
                    self.storage_failures = 0;
                    match self.next_run(max_events, max_bytes).or(short) {
                        Some(r) => r,
                        // Nothing to send: wait for new events (unless the window is full,
                        // then for answers only).
                        None => {
                            return Wait::Work {
                                until: None,
                                events: !self.window_full(max_events, max_bytes),
                            }
                        }
                    }
                }
            };
            if !full && at_end(&run, self.items.len()) {
                // A batch that is not full yet: wait for more events up to `linger` after the
                // oldest one was accepted.
                let linger = self.config.borrow().delivery.linger;
                let now_ms = now_ms();
                let due_ms = self.items[run[0]].ev.accepted_at_ms.saturating_add(linger.as_millis() as u64);
                if due_ms > now_ms && !self.window_full(max_events, max_bytes) {
                    let until = Instant::now() + Duration::from_millis(due_ms - now_ms);
                    return Wait::Work {
                        until: Some(until),
                        events: true,
                    };
                }
            }
            self.start(&run, &platform, &client, ep, ep_probe);
        }
    }

    /// Most events the next request may carry when it starts with `seq`.
    fn per_request(&self, seq: u64, max_events: usize) -> usize {
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
    /// the request limits. Their indices, and whether they make a full request.
    fn next_run(&self, max_events: usize, max_bytes: usize) -> Option<(Vec<usize>, bool)> {
        let start = self.items.iter().position(|i| matches!(i.state, ItemState::Pending))?;
        let limit = self.per_request(self.items[start].ev.seq, max_events);
        let mut run = Vec::new();
        let mut bytes = 0;
        for (i, item) in self.items.iter().enumerate().skip(start) {
            if run.len() >= limit || bytes >= max_bytes {
                break;
            }
            match item.state {
                ItemState::Pending => {
                    run.push(i);
                    bytes += item.ev.data.len();
                }
                ItemState::InFlight => break,
                ItemState::Delivered | ItemState::Dead(_) => {}
            }
        }
        let full = run.len() >= limit || bytes >= max_bytes;
        Some((run, full))
    }

    /// Whether the window may not grow (so a short batch at its end cannot wait for more).
    fn window_full(&self, max_events: usize, max_bytes: usize) -> bool {
        let max_items = (max_events * (self.concurrency.limit() + 1)).max(READ_CHUNK);
        self.items.len() >= max_items || self.window_bytes >= WINDOW_BYTES.max(max_bytes)
    }

    /// Reads the next events after `cursor` into the window, within its bounds.
    async fn read_more(&mut self, max_events: usize, max_bytes: usize) -> Result<(), crate::queue::QueueError> {
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

    /// Encodes and sends the events at `run` (or the prefix of them the platform takes).
    fn start(&mut self, run: &[usize], platform: &Arc<dyn Platform>, client: &HttpClient, ep: usize, ep_probe: bool) {
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
    fn landed(&mut self, r: Result<(tokio::task::Id, Flight), tokio::task::JoinError>) {
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

    /// Sets the state of the item `seq`. Items are in queue order (ascending `seq`), so this
    /// is a binary search: marking a whole batch stays O(n log n), not O(n^2).
    fn mark(&mut self, seq: u64, state: ItemState) {
        if let Ok(i) = self.items.binary_search_by_key(&seq, |i| i.ev.seq) {
            self.items[i].state = state;
        }
    }

    /// Puts back to pending the events of `sent` that are not done.
    fn set_pending(&mut self, sent: &[QueuedEvent]) {
        for e in sent {
            if let Ok(i) = self.items.binary_search_by_key(&e.seq, |i| i.ev.seq) {
                if !self.items[i].state.is_done() {
                    self.items[i].state = ItemState::Pending;
                }
            }
        }
    }

    fn dead(&self, f: &Failure, seq: u64, why: &str) -> ItemState {
        ItemState::Dead(DeadLetterMeta {
            at: now_rfc3339(),
            // The SIEM's words in full: the dead letter is operator-only (admin socket, 0600)
            // and holds the event itself; logs and status get `f.message`, the summary.
            reason: format!("{why}{}", f.full_text()),
            http_status: f.http_status,
            original_seq: seq,
        })
    }

    fn apply(&mut self, sent: &[QueuedEvent], verdict: Verdict, client: &HttpClient, attempt: u32, to: Sent) {
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

    /// A request (or `prepare`) to one endpoint failed as a whole: that endpoint leaves rotation
    /// with its own backoff. Returns `true` when another endpoint is still in rotation: the
    /// events (already pending again) go there at once, and the SIEM is not in error. `false`:
    /// no endpoint accepts, the caller applies the whole-SIEM failure and backoff.
    fn endpoint_failed(&mut self, to: Sent, f: &Failure) -> bool {
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

    fn endpoint_finished(&mut self, to: Sent) {
        if let Some(a) = self.active.as_mut().filter(|a| a.gen == to.gen) {
            a.endpoints.lock().unwrap().finished(to.ticket);
        }
    }

    fn succeeded(&mut self) {
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
    fn failed(&mut self, f: Failure, attempt: u32) {
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
    fn events_failed<'f>(&mut self, refused: impl IntoIterator<Item = (u64, &'f Failure)>) -> usize {
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
    fn exhausted_moved(&mut self, moved: usize) {
        if moved > 0 {
            self.attempts = 0;
            self.backoff_until = None;
        }
    }

    /// The agent's own queue failed (not the SIEM): said as a storage failure (never
    /// "network", never a SIEM retry in metrics, never counted against an event), and the
    /// next read waits a backoff so a failing disk is not hammered.
    fn storage_failed(&mut self, what: &str, e: &QueueError) {
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

    /// Counts a failed attempt: status `error`, and no new request before the backoff.
    fn count_failure(&mut self, f: &Failure) {
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

    /// Removes the contiguous done prefix of the window from the queue.
    ///
    /// When the dead letter refuses the prefix's rejected events (full:
    /// [`QueueError::DeadLetterFull`]), they are offered one at a time until one is refused.
    /// Delivery then *holds* at that one: it and the rejected events after it stay in the queue
    /// and become pending again, the events delivered before it leave the queue, status says
    /// `error` with what to do, and after [`DEAD_LETTER_RETRY`] it is sent to the SIEM again.
    /// A fixed SIEM takes it; a SIEM that still rejects it finds room in the dead letter once an
    /// operator made some, or holds again. Nothing is dropped to make room.
    async fn ack_done_prefix(&mut self) {
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
            match on_disk(move || q.ack(upto, dead)).await {
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
                        self.status.set_dead_letter_full(None);
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

    fn pop_front(&mut self, n: usize) {
        for item in self.items.drain(..n) {
            self.window_bytes = self.window_bytes.saturating_sub(item.ev.data.len());
        }
    }
}

/// What an answer says about the SIEM's load, for the concurrency controller.
fn signal(v: &Verdict) -> Signal {
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

/// Runs queue work (reads, acknowledgements: disk I/O, `fdatasync`) on tokio's blocking pool
/// and waits for it without holding a runtime worker (ARCHITECTURE.md, threads: disk stalls
/// never block network tasks). A panic in it is the queue's own and is passed on as before; a
/// runtime shutting down reads as the queue closing (the events stay queued).
async fn on_disk<T: Send + 'static>(work: impl FnOnce() -> Result<T, QueueError> + Send + 'static) -> Result<T, QueueError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(r) => r,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(QueueError::Closed),
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// One HTTP client and one platform instance per endpoint of `siem.url`, each built from the
/// config with that endpoint's URL (and the platform `auto` resolved from the first URL).
fn endpoint_conns(siem: &SiemConfig) -> Result<Vec<Conn>, crate::sink::http::ClientBuildError> {
    let platform = siem.effective_platform();
    siem.urls
        .iter()
        .map(|u| {
            let mut one = siem.clone();
            one.url = u.clone();
            one.urls = vec![u.clone()];
            one.platform = platform;
            Ok((HttpClient::new(&one)?, crate::sink::build_platform(&one)))
        })
        .collect()
}

fn redacted(client: &HttpClient, mut f: Failure) -> Failure {
    f.message = client.redact(&f.message);
    f.detail = f.detail.map(|d| client.redact(&d));
    f
}
