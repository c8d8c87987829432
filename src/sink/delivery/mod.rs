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
//!
//! Files: this one holds the loop (what to start, what to wait for, config changes); `window`
//! the read-ahead window and which events the next request carries; `flight` a request's task
//! and its landing; `outcome` what an answer does to events, endpoints and retries (the one
//! retry rule, `sink::retry`); `ack` acknowledging the done prefix and the dead letter.

mod ack;
mod flight;
mod outcome;
mod window;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::queue::{now_rfc3339, DeadLetterMeta, Queue, QueueError, QueuedEvent};
use crate::shutdown::Shutdown;
use crate::sink::concurrency::{Controller, Signal};
use crate::sink::endpoints::{EndpointSet, Pick, Ticket};
use crate::sink::http::HttpClient;
use crate::sink::platform::{EventOutcome, Failure, FailureKind, Platform, Verdict};
use crate::sink::retry::{Exhausted, RetryPolicy};
use crate::sink::settings::{redact_url, SiemConfig, SinkSettings};
use crate::status::{ConfigView, LastError, StatusHub};
use ack::on_disk;
use outcome::redacted;

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

pub(crate) struct Delivery {
    queue: Queue,
    status: Arc<StatusHub>,
    /// The sink's settings, following reloads (`settings::follow` in the wiring).
    config: watch::Receiver<Arc<SinkSettings>>,
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
    pub fn new(queue: Queue, status: Arc<StatusHub>, config: watch::Receiver<Arc<SinkSettings>>, shutdown: Shutdown) -> Self {
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
                    let urls = cfg.siem.urls.iter().map(|u| redact_url(u, platform)).collect();
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

            let (run, _, at_end) = match self.next_run(max_events, max_bytes) {
                Some(r) if !r.2 => r,
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
            if at_end {
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
