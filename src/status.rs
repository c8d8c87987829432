//! What the agent knows about itself, for `/status`, `/metrics`, the status page and the CLI.
//!
//! The hub observes; it never steers. Sources, the sink and the reloader report into it
//! (sources as typed [`FileSourceStatus`] / [`SocketSourceStatus`]), and it answers with one
//! typed [`StatusDoc`] (`doc.rs`).
//! `state`, `last_success_at` and `last_error` are kept in its own small file,
//! `<queue.path>/status.json` (`state_file.rs`: temporary file, fsync, rename, by its own
//! thread, never on a runtime worker; saved at most once a second and at each change of
//! state), so a restart shows the last known state.
//! The hub never writes into the queue's store: it holds only a [`QueueView`], which can read
//! the counts of pending, dead-lettered and quarantined events and nothing else; other
//! counters live in [`Metrics`] and start at zero.
//!
//! Invariant: nothing stored here contains a secret. Messages arrive already redacted by the
//! sink's HTTP client, and URLs are stored in their redacted form.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::json;

pub mod doc;
mod state_file;
pub use doc::{
    ConfigStatus, Counters, DeadLetterStatus, FileSourceState, FileSourceStatus, QuarantineStatus, QueueStatus, RetryStatus,
    SocketSourceStatus, SourcesStatus, State, StatusDoc,
};

use crate::metrics::Metrics;
use crate::queue::{now_rfc3339, QueueView};
use state_file::StateFile;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum DeliveryState {
    NotYetInvoked,
    Success,
    Error,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastError {
    pub at: String,
    pub http_status: Option<u16>,
    pub message: String,
    /// When a later delivery succeeded: the error no longer holds anything up. Dead-letter
    /// errors are never "resolved" by a success (the events wait for an operator); they are
    /// told apart by `dead_letter`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<String>,
    /// The SIEM rejected events for good and they went to the dead letter.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dead_letter: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Persisted {
    state: DeliveryState,
    last_success_at: Option<String>,
    last_error: Option<LastError>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct ConfigView {
    pub url: String,
    pub platform: String,
    pub enabled: bool,
}

pub struct StatusHub {
    /// Read-only: the hub observes the queue, it never writes into it.
    queue: QueueView,
    /// `status.json`, written by its own thread.
    state_file: StateFile,
    pub metrics: Metrics,
    persisted: Mutex<Persisted>,
    last_persist: Mutex<Instant>,
    config: Mutex<ConfigView>,
    reload_error: Mutex<Option<String>>,
    file_source: Mutex<Option<FileSourceStatus>>,
    socket_source: Mutex<Option<SocketSourceStatus>>,
    recent_errors: Mutex<VecDeque<LastError>>,
    queue_full: AtomicBool,
    dead_letter_full: Mutex<Option<String>>,
    /// Each endpoint of the SIEM (`sink::endpoints`), as the sink last reported them.
    /// The sink's endpoint set, read when status or metrics are asked for.
    endpoints: Mutex<Option<Arc<Mutex<crate::sink::endpoints::EndpointSet>>>>,
    /// Failed attempts in a row and when the next one is due (RFC 3339), while retrying.
    retry: Mutex<Option<RetryStatus>>,
    /// When the last event went to the dead letter, and why.
    last_dead_letter: Mutex<Option<(String, String)>>,
    history: crate::history::History,
    /// Events as they enter the queue, for `sendauth-siem tap` (see `tap`).
    pub tap: crate::tap::Tap,
    started: Instant,
}

/// Where the state used to be kept (the queue's meta keys): read once if there is no
/// `status.json` yet, so an upgrade keeps the last known state.
const LEGACY_STATUS_META: &str = "status";

impl StatusHub {
    pub fn new(queue: QueueView) -> StatusHub {
        let persisted = StateFile::read(queue.root())
            .or_else(|| queue.legacy_meta(LEGACY_STATUS_META))
            .and_then(|b| serde_json::from_slice::<Persisted>(&b).ok())
            .unwrap_or(Persisted {
                state: DeliveryState::NotYetInvoked,
                last_success_at: None,
                last_error: None,
            });
        StatusHub {
            state_file: StateFile::new(queue.root()),
            queue,
            metrics: Metrics::default(),
            persisted: Mutex::new(persisted),
            last_persist: Mutex::new(Instant::now()),
            config: Mutex::new(ConfigView::default()),
            reload_error: Mutex::new(None),
            file_source: Mutex::new(None),
            socket_source: Mutex::new(None),
            recent_errors: Mutex::new(VecDeque::new()),
            queue_full: AtomicBool::new(false),
            dead_letter_full: Mutex::new(None),
            endpoints: Mutex::new(None),
            last_dead_letter: Mutex::new(None),
            retry: Mutex::new(None),
            history: Default::default(),
            tap: Default::default(),
            started: Instant::now(),
        }
    }

    fn persist(&self, p: &Persisted, force: bool) {
        let mut last = self.last_persist.lock().unwrap();
        if !force && last.elapsed() < Duration::from_secs(1) {
            return;
        }
        *last = Instant::now();
        if let Ok(b) = serde_json::to_vec(p) {
            self.state_file.save(b);
        }
    }

    /// A delivery attempt succeeded: delivery errors before it are resolved.
    pub(crate) fn record_success(&self) {
        let mut p = self.persisted.lock().unwrap();
        let changed = p.state != DeliveryState::Success;
        let now = now_rfc3339();
        if changed {
            for e in self.recent_errors.lock().unwrap().iter_mut() {
                if e.resolved_at.is_none() && !e.dead_letter {
                    e.resolved_at = Some(now.clone());
                }
            }
            if let Some(e) = p.last_error.as_mut().filter(|e| e.resolved_at.is_none() && !e.dead_letter) {
                e.resolved_at = Some(now.clone());
            }
        }
        p.state = DeliveryState::Success;
        p.last_success_at = Some(now);
        self.metrics.set_last_success_now();
        self.persist(&p, changed);
    }

    /// A delivery attempt failed (`message` already redacted).
    pub(crate) fn record_error(&self, http_status: Option<u16>, message: &str) {
        let e = LastError {
            at: now_rfc3339(),
            http_status,
            message: message.to_string(),
            resolved_at: None,
            dead_letter: false,
        };
        self.push_recent(&e);
        let mut p = self.persisted.lock().unwrap();
        let changed = p.state != DeliveryState::Error || p.last_error.as_ref().map(|x| &x.message) != Some(&e.message);
        p.state = DeliveryState::Error;
        p.last_error = Some(e);
        self.persist(&p, changed);
    }

    fn push_recent(&self, e: &LastError) {
        let mut r = self.recent_errors.lock().unwrap();
        if r.front().is_some_and(|x| x.message == e.message && x.resolved_at.is_none()) {
            return;
        }
        r.push_front(e.clone());
        r.truncate(10);
    }

    /// The SIEM rejected `n` events for good and they went to the dead letter (the last one's
    /// answer and reason given). Delivery goes on, so `state` stays as it is, but `last_error`
    /// becomes this rejection (not an older, resolved error) and `warnings` names the dead
    /// letter until an operator replays or purges it.
    pub(crate) fn record_dead_letter(&self, n: u64, http_status: Option<u16>, reason: &str) {
        let e = LastError {
            at: now_rfc3339(),
            http_status,
            message: format!("{n} event(s) rejected by the SIEM and moved to the dead letter: {reason}"),
            resolved_at: None,
            dead_letter: true,
        };
        self.push_recent(&e);
        *self.last_dead_letter.lock().unwrap() = Some((e.at.clone(), reason.to_string()));
        let mut p = self.persisted.lock().unwrap();
        // Saved at once when the last error becomes a dead letter; during a flood of them, at
        // most once a second like every other update (not once per acknowledged batch).
        let changed = !p.last_error.as_ref().is_some_and(|x| x.dead_letter);
        p.last_error = Some(e);
        self.persist(&p, changed);
    }

    /// What needs an operator although delivery goes on (shown by `status` and the page).
    fn warnings(&self, counts: &crate::queue::Counts) -> Vec<String> {
        let mut w = Vec::new();
        if counts.dead_letter > 0 {
            let last = self.last_dead_letter.lock().unwrap().clone();
            w.push(match last {
                Some((at, reason)) => format!(
                    "{} event(s) in the dead letter (the last one at {at}: {reason}); see `sendauth-siem dead-letter list`, then replay or purge them",
                    counts.dead_letter
                ),
                None => format!(
                    "{} event(s) in the dead letter; see `sendauth-siem dead-letter list`, then replay or purge them",
                    counts.dead_letter
                ),
            });
        }
        w
    }

    /// The sink is retrying: `attempts` failed in a row, the next try in `wait`. `None` once a
    /// delivery succeeds.
    pub(crate) fn set_retry(&self, retry: Option<(u32, Duration)>) {
        *self.retry.lock().unwrap() = retry.map(|(attempts, wait)| {
            let at = chrono::Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default();
            RetryStatus {
                failed_attempts: attempts,
                next_attempt_at: at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            }
        });
    }

    pub(crate) fn set_config(&self, view: ConfigView) {
        *self.config.lock().unwrap() = view;
    }

    pub(crate) fn set_reload_error(&self, e: Option<String>) {
        *self.reload_error.lock().unwrap() = e;
    }

    pub fn reload_error(&self) -> Option<String> {
        self.reload_error.lock().unwrap().clone()
    }

    /// The file source reports what it does (`None` once it stopped).
    pub(crate) fn set_file_source(&self, v: Option<FileSourceStatus>) {
        *self.file_source.lock().unwrap() = v;
    }

    /// The socket source reports its listener and connections (`None` once it stopped).
    pub(crate) fn set_socket_source(&self, v: Option<SocketSourceStatus>) {
        *self.socket_source.lock().unwrap() = v;
    }

    /// Set by the sink while the dead letter refuses rejected events (the message says why and
    /// what to do); `None` once it has room again.
    pub(crate) fn set_dead_letter_full(&self, why: Option<String>) {
        *self.dead_letter_full.lock().unwrap() = why;
    }

    pub fn dead_letter_full(&self) -> Option<String> {
        self.dead_letter_full.lock().unwrap().clone()
    }

    /// The sink reports its endpoints' states (after each request and config change).
    /// The sink's current endpoint set (replaced when a reload changes the SIEM settings).
    pub(crate) fn observe_endpoints(&self, set: Arc<Mutex<crate::sink::endpoints::EndpointSet>>) {
        *self.endpoints.lock().unwrap() = Some(set);
    }

    fn endpoint_views(&self) -> Vec<crate::sink::endpoints::EndpointView> {
        match &*self.endpoints.lock().unwrap() {
            Some(set) => set.lock().unwrap().views(Instant::now()),
            None => Vec::new(),
        }
    }

    pub(crate) fn set_queue_full(&self, full: bool) {
        self.queue_full.store(full, Ordering::Relaxed);
    }

    /// `state` as docs/CONTRACT.md ("Status") defines it.
    pub fn state(&self) -> &'static str {
        self.delivery_state().as_str()
    }

    fn delivery_state(&self) -> State {
        if !self.config.lock().unwrap().enabled {
            return State::Disabled;
        }
        match self.persisted.lock().unwrap().state {
            DeliveryState::NotYetInvoked => State::NotYetInvoked,
            DeliveryState::Success => State::Success,
            DeliveryState::Error => State::Error,
        }
    }

    /// Writes the persisted part now (graceful shutdown). Blocks on the disk: call it off
    /// the runtime's workers.
    pub fn flush(&self) {
        let p = self.persisted.lock().unwrap().clone();
        self.persist(&p, true);
        self.state_file.flush();
    }

    /// The `/status` document.
    pub fn snapshot(&self) -> StatusDoc {
        let p = self.persisted.lock().unwrap().clone();
        let counts = self.queue.counts();
        let limits = self.queue.limits();
        let age = self.queue.oldest_pending_age();
        let cfg = self.config.lock().unwrap().clone();
        let full = self.queue_full.load(Ordering::Relaxed) || !self.queue.has_room(1);
        StatusDoc {
            state: self.delivery_state(),
            last_success_at: p.last_success_at,
            last_error: p.last_error,
            queue: QueueStatus {
                pending: counts.pending_events,
                oldest_pending_age_seconds: age.map(|d| (d.as_secs_f64() * 10.0).round() / 10.0).unwrap_or(0.0),
                bytes: counts.pending_bytes,
                max_bytes: self.queue.max_bytes(),
                full,
                incident: self.queue.incident(),
                storage_error: self.queue.storage_error(),
                moved_aside: crate::queue::aside::unreplayed(self.queue.root()),
            },
            dead_letter: DeadLetterStatus {
                count: counts.dead_letter,
                bytes: counts.dead_letter_bytes,
                max_entries: limits.max_dead_letter_entries,
                max_bytes: limits.max_dead_letter_bytes,
                full: self.dead_letter_full(),
            },
            quarantine: QuarantineStatus {
                count: counts.quarantine,
                evicted: counts.quarantine_evicted,
                bytes: counts.quarantine_bytes,
                max_entries: limits.max_quarantine_entries,
                max_bytes: limits.max_quarantine_bytes,
            },
            config: ConfigStatus {
                url: cfg.url,
                platform: cfg.platform,
                reload_error: self.reload_error(),
            },
            sources: SourcesStatus {
                file: self.file_source.lock().unwrap().clone(),
                socket: self.socket_source.lock().unwrap().clone(),
            },
            endpoints: self.endpoint_views(),
            retry: self.retry.lock().unwrap().clone(),
            recent_errors: self.recent_errors.lock().unwrap().iter().cloned().collect(),
            warnings: self.warnings(&counts),
            version: env!("CARGO_PKG_VERSION").to_string(),
            commit: crate::build_info::COMMIT.to_string(),
            uptime_seconds: self.started.elapsed().as_secs(),
        }
    }

    /// Takes one sample for the chart (see `history`); the agent calls it every
    /// `history::INTERVAL`.
    pub(crate) fn sample_history(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        let m = &self.metrics;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.history.sample(
            now,
            m.received_file.load(Relaxed) + m.received_socket.load(Relaxed),
            m.delivered.load(Relaxed) + m.dead_lettered.load(Relaxed),
            self.queue.counts().pending_events,
        );
    }

    /// The running totals `top` turns into rates.
    pub fn counters(&self) -> Counters {
        use std::sync::atomic::Ordering::Relaxed;
        let m = &self.metrics;
        Counters {
            received: m.received_file.load(Relaxed) + m.received_socket.load(Relaxed),
            delivered: m.delivered.load(Relaxed),
            dead_lettered: m.dead_lettered.load(Relaxed),
            requests_ok: m.requests_ok.load(Relaxed),
            requests_failed: m.requests_failed.load(Relaxed),
        }
    }

    /// The `/history` document: the last hour, one point per `history::INTERVAL`.
    pub fn history(&self) -> serde_json::Value {
        json!({
            "interval_seconds": crate::history::INTERVAL.as_secs(),
            "points": self.history.points(),
        })
    }

    pub(crate) fn render_metrics(&self) -> String {
        let counts = self.queue.counts();
        let mut o = self.metrics.render(&counts, self.queue.oldest_pending_age(), self.state());
        crate::sink::endpoints::render_metrics(&mut o, &self.endpoint_views());
        o
    }
}
