//! Several endpoints of one SIEM: which node the next request goes to, and which are out.
//!
//! `siem.url` may list several URLs of one SIEM (Splunk indexers or heavy forwarders taking HEC,
//! Elasticsearch nodes), all with the same platform and auth. The delivery loop keeps one HTTP
//! client and one platform instance per endpoint (so a Splunk indexer acknowledgement is only
//! ever asked of the indexer, and on the channel, that took the batch) and asks the
//! [`EndpointSet`] where each request goes.
//!
//! Design:
//! - each endpoint is *healthy* (in rotation; also before its first answer) or *failing* (out
//!   of rotation), with its own count of consecutive failures and its own exponential backoff
//!   (`delivery.initial_backoff` doubling up to `delivery.max_backoff`, equal jitter, at least
//!   the endpoint's `Retry-After`);
//! - a request goes to the healthy endpoint with the fewest requests in flight (least-loaded),
//!   ties broken round-robin, so equal nodes take turns and a slow node gets less;
//! - a failing endpoint whose backoff has passed gets exactly one request (a probe) while the
//!   others carry the rest; its success puts it back in rotation, its failure doubles its
//!   backoff;
//! - a request that fails on one endpoint (network error, timeout, 5xx, 429, an unanswered
//!   acknowledgement, ...) marks that endpoint failing, and its events go out again at once to
//!   another healthy endpoint: the SIEM as a whole is not in error and nothing waits;
//! - only when no endpoint is healthy does the delivery loop fall back to its whole-SIEM
//!   backoff (`sink::delivery`), and then each probe goes to the failing endpoint whose own
//!   backoff ends first, so all of them are tried in turn.
//!
//! Invariants:
//! - requests that were already in flight to an endpoint when it was marked failing and fail
//!   too count as the same failure (each request carries the endpoint's failure generation
//!   from its start), so ten requests lost with one node do not make ten failures;
//! - the set decides where, never what: the events of a failed request stay in the delivery
//!   window and are resent, so failover neither loses nor duplicates more than what was in
//!   flight on the failing endpoint (Elasticsearch's deterministic `_id` makes even those
//!   resends idempotent);
//! - pure logic with the clock passed in: the tests below are deterministic;
//! - URLs are kept only in their redacted form (no credentials, no query, no Sumo token).

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::queue::now_rfc3339;
use crate::status::LastError;

/// Whether an endpoint is in rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// No answer yet: in rotation.
    NotYetInvoked,
    Healthy,
    /// Out of rotation until its backoff ends, then probed with one request.
    Failing,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::NotYetInvoked => "not_yet_invoked",
            Health::Healthy => "healthy",
            Health::Failing => "failing",
        }
    }
}

#[derive(Debug, Clone)]
struct Endpoint {
    url: String,
    health: Health,
    consecutive_failures: u32,
    retry_at: Option<Instant>,
    in_flight: usize,
    probing: bool,
    requests: u64,
    failures: u64,
    last_error: Option<LastError>,
    last_success_at: Option<String>,
    /// Bumped at each counted failure; requests carry the value from their start.
    fail_gen: u64,
}

/// Where the next request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pick {
    /// Send to endpoint `idx`; `probe`: it is failing and this one request tests it.
    Send { idx: usize, probe: bool },
    /// Every endpoint is failing and already has its probe in flight: wait for an answer.
    Busy,
}

/// What a request carries from its start, to be handed back when it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ticket {
    pub idx: usize,
    pub probe: bool,
    gen: u64,
}

/// An endpoint as `/status` and `/metrics` show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointView {
    pub url: String,
    pub state: Health,
    pub consecutive_failures: u32,
    pub requests: u64,
    pub failures: u64,
    pub in_flight: usize,
    pub last_error: Option<LastError>,
    pub last_success_at: Option<String>,
    /// Seconds until a failing endpoint is probed again (0: due, or in rotation).
    pub(crate) retry_in_seconds: f64,
}

/// The endpoints of one SIEM. See the module doc.
#[derive(Debug, Clone)]
pub(crate) struct EndpointSet {
    eps: Vec<Endpoint>,
    /// Round-robin cursor: where the next tie-break starts.
    next: usize,
}

impl EndpointSet {
    /// `urls` already redacted, in the configured order (never empty).
    pub fn new(urls: Vec<String>) -> EndpointSet {
        let eps = urls
            .into_iter()
            .map(|url| Endpoint {
                url,
                health: Health::NotYetInvoked,
                consecutive_failures: 0,
                retry_at: None,
                in_flight: 0,
                probing: false,
                requests: 0,
                failures: 0,
                last_error: None,
                last_success_at: None,
                fail_gen: 0,
            })
            .collect();
        EndpointSet { eps, next: 0 }
    }

    pub fn len(&self) -> usize {
        self.eps.len()
    }

    pub fn url(&self, idx: usize) -> &str {
        &self.eps[idx].url
    }

    /// Whether some endpoint is in rotation.
    pub(crate) fn any_healthy(&self) -> bool {
        self.eps.iter().any(|e| e.health != Health::Failing)
    }

    /// Where the next request goes at `now` (does not change the set: see [`Self::started`]).
    pub(crate) fn choose(&self, now: Instant) -> Pick {
        let n = self.eps.len();
        let order = (0..n).map(|k| (self.next + k) % n);
        if self.any_healthy() {
            // A failing endpoint whose backoff is over gets one probe.
            if let Some(idx) = order
                .clone()
                .find(|&i| self.eps[i].health == Health::Failing && !self.eps[i].probing && self.eps[i].retry_at.is_none_or(|t| t <= now))
            {
                return Pick::Send { idx, probe: true };
            }
            let idx = order
                .filter(|&i| self.eps[i].health != Health::Failing)
                .min_by_key(|&i| self.eps[i].in_flight)
                .expect("some endpoint is healthy");
            return Pick::Send { idx, probe: false };
        }
        // None healthy: the delivery loop's whole-SIEM backoff paces the probes; each goes to
        // the endpoint whose own backoff ends first.
        match order.filter(|&i| !self.eps[i].probing).min_by_key(|&i| self.eps[i].retry_at) {
            Some(idx) => Pick::Send { idx, probe: true },
            None => Pick::Busy,
        }
    }

    /// A request to `idx` starts.
    pub fn started(&mut self, idx: usize, probe: bool) -> Ticket {
        self.next = (idx + 1) % self.eps.len();
        let e = &mut self.eps[idx];
        e.in_flight += 1;
        e.requests += 1;
        e.probing |= probe;
        Ticket {
            idx,
            probe,
            gen: e.fail_gen,
        }
    }

    /// The request of `t` ended, whatever its outcome (call before [`Self::succeeded`] or
    /// [`Self::failed`], or alone for a request abandoned at a stop).
    pub(crate) fn finished(&mut self, t: Ticket) {
        let e = &mut self.eps[t.idx];
        e.in_flight = e.in_flight.saturating_sub(1);
        if t.probe {
            e.probing = false;
        }
    }

    /// The endpoint of `t` answered in a way that shows it works (2xx, or a rejection of the
    /// data): back in rotation.
    pub(crate) fn succeeded(&mut self, t: Ticket) {
        let e = &mut self.eps[t.idx];
        e.health = Health::Healthy;
        e.consecutive_failures = 0;
        e.retry_at = None;
        e.last_success_at = Some(now_rfc3339());
    }

    /// The endpoint of `t` failed; it leaves rotation until `now` + its backoff (`base`
    /// doubling per consecutive failure up to `max`, times `jitter` in [0.5, 1], at least
    /// `retry_after`). Returns whether this is a new failure (`false`: the request started
    /// before the endpoint was last marked failing, so that failure was already counted).
    #[allow(clippy::too_many_arguments)]
    pub fn failed(
        &mut self,
        t: Ticket,
        now: Instant,
        err: LastError,
        retry_after: Option<Duration>,
        base: Duration,
        max: Duration,
        jitter: f64,
    ) -> bool {
        let e = &mut self.eps[t.idx];
        e.last_error = Some(err);
        if t.gen < e.fail_gen && e.health == Health::Failing {
            return false;
        }
        e.fail_gen += 1;
        e.failures += 1;
        e.consecutive_failures = e.consecutive_failures.saturating_add(1);
        e.health = Health::Failing;
        let exp = base.saturating_mul(1u32 << (e.consecutive_failures - 1).min(20)).min(max);
        let d = exp.mul_f64(jitter.clamp(0.5, 1.0));
        let d = retry_after.map_or(d, |ra| d.max(ra));
        e.retry_at = Some(now + d);
        true
    }

    /// A ticket for a request that is not sent (a failed `prepare`): counts as a request.
    pub(crate) fn ticket(&mut self, idx: usize, probe: bool) -> Ticket {
        let t = self.started(idx, probe);
        self.finished(t);
        t
    }

    pub(crate) fn views(&self, now: Instant) -> Vec<EndpointView> {
        self.eps
            .iter()
            .map(|e| EndpointView {
                url: e.url.clone(),
                state: e.health,
                consecutive_failures: e.consecutive_failures,
                requests: e.requests,
                failures: e.failures,
                in_flight: e.in_flight,
                last_error: e.last_error.clone(),
                last_success_at: e.last_success_at.clone(),
                retry_in_seconds: match (e.health, e.retry_at) {
                    (Health::Failing, Some(t)) => (t.saturating_duration_since(now).as_secs_f64() * 10.0).round() / 10.0,
                    _ => 0.0,
                },
            })
            .collect()
    }
}

/// Appends the per-endpoint series to a `/metrics` text (nothing when no endpoint is known).
pub(crate) fn render_metrics(o: &mut String, views: &[EndpointView]) {
    if views.is_empty() {
        return;
    }
    let label = |v: &EndpointView| v.url.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
    let mut family = |name: &str, kind: &str, help: &str, value: &dyn Fn(&EndpointView) -> u64| {
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for v in views {
            let _ = writeln!(o, "{name}{{url=\"{}\"}} {}", label(v), value(v));
        }
    };
    family(
        "sendauth_siem_endpoint_up",
        "gauge",
        "Whether a SIEM endpoint is in rotation (1) or failing and out of it (0).",
        &|v| u64::from(v.state != Health::Failing),
    );
    family(
        "sendauth_siem_endpoint_consecutive_failures",
        "gauge",
        "Failures in a row of a SIEM endpoint (0 once it answers).",
        &|v| u64::from(v.consecutive_failures),
    );
    family(
        "sendauth_siem_endpoint_requests_total",
        "counter",
        "Requests sent to a SIEM endpoint since start.",
        &|v| v.requests,
    );
    family(
        "sendauth_siem_endpoint_failures_total",
        "counter",
        "Times a SIEM endpoint was taken out of rotation since start.",
        &|v| v.failures,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn set(n: usize) -> EndpointSet {
        EndpointSet::new((0..n).map(|i| format!("https://n{i}:9200/x/_doc")).collect())
    }

    fn err() -> LastError {
        LastError {
            at: now_rfc3339(),
            http_status: Some(503),
            message: "busy".into(),
            resolved_at: None,
            dead_letter: false,
        }
    }

    fn fail(s: &mut EndpointSet, t: Ticket, now: Instant) -> bool {
        s.finished(t);
        s.failed(t, now, err(), None, S, 60 * S, 1.0)
    }

    fn send(s: &mut EndpointSet, now: Instant) -> Ticket {
        match s.choose(now) {
            Pick::Send { idx, probe } => s.started(idx, probe),
            Pick::Busy => panic!("busy"),
        }
    }

    #[test]
    fn equal_endpoints_take_turns() {
        let now = Instant::now();
        let mut s = set(3);
        let mut got = Vec::new();
        for _ in 0..6 {
            let t = send(&mut s, now);
            got.push(t.idx);
            s.finished(t);
            s.succeeded(t);
        }
        assert_eq!(got, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn the_least_loaded_endpoint_gets_the_next_request() {
        let now = Instant::now();
        let mut s = set(3);
        // Endpoint 0 keeps two requests open (slow); 1 and 2 answer at once.
        let slow = [s.started(0, false), s.started(0, false)];
        let mut got = Vec::new();
        for _ in 0..4 {
            let t = send(&mut s, now);
            got.push(t.idx);
            s.finished(t);
        }
        assert!(got.iter().all(|&i| i != 0), "{got:?}");
        for t in slow {
            s.finished(t);
        }
        assert_eq!(send(&mut s, now).idx, 0, "once it has caught up, 0 is back in turn");
    }

    #[test]
    fn a_failing_endpoint_leaves_rotation_and_is_probed_once_after_its_backoff() {
        let t0 = Instant::now();
        let mut s = set(3);
        let t = s.started(1, false);
        assert!(fail(&mut s, t, t0));
        assert!(s.any_healthy());
        // 1 s of backoff: only 0 and 2 meanwhile.
        for _ in 0..10 {
            let t = send(&mut s, t0 + S / 2);
            assert_ne!(t.idx, 1);
            s.finished(t);
        }
        // Due: one probe to 1, and only one while it is out.
        let probe = send(&mut s, t0 + S);
        assert_eq!((probe.idx, probe.probe), (1, true));
        for _ in 0..5 {
            let t = send(&mut s, t0 + S);
            assert_ne!(t.idx, 1);
            s.finished(t);
        }
        // The probe fails: the backoff doubles (2 s from then).
        assert!(fail(&mut s, probe, t0 + S));
        assert!(s.views(t0 + S)[1].retry_in_seconds == 2.0);
        for _ in 0..5 {
            let t = send(&mut s, t0 + S * 2);
            assert_ne!(t.idx, 1);
            s.finished(t);
        }
        // The next probe succeeds: back in rotation, count reset.
        let probe = send(&mut s, t0 + S * 3);
        assert_eq!((probe.idx, probe.probe), (1, true));
        s.finished(probe);
        s.succeeded(probe);
        let v = &s.views(t0 + S * 3)[1];
        assert_eq!((v.state, v.consecutive_failures, v.failures), (Health::Healthy, 0, 2));
        let got: Vec<usize> = (0..3)
            .map(|_| {
                let t = send(&mut s, t0 + S * 3);
                s.finished(t);
                t.idx
            })
            .collect();
        assert!(got.contains(&1), "{got:?}");
    }

    #[test]
    fn requests_in_flight_when_an_endpoint_fails_count_as_one_failure() {
        let t0 = Instant::now();
        let mut s = set(2);
        let open: Vec<Ticket> = (0..5).map(|_| s.started(0, false)).collect();
        assert!(fail(&mut s, open[0], t0));
        for t in &open[1..] {
            assert!(!fail(&mut s, *t, t0), "already counted");
        }
        let v = &s.views(t0)[0];
        assert_eq!((v.consecutive_failures, v.failures, v.in_flight), (1, 1, 0));
    }

    #[test]
    fn backoff_grows_is_capped_and_honours_retry_after() {
        let t0 = Instant::now();
        let mut s = set(2);
        let mut last = 0.0;
        for k in 0..10 {
            let t = s.started(0, k > 0);
            s.finished(t);
            s.failed(t, t0, err(), None, S, 60 * S, 1.0);
            last = s.views(t0)[0].retry_in_seconds;
        }
        assert_eq!(last, 60.0);
        let t = s.started(1, false);
        s.finished(t);
        s.failed(t, t0, err(), Some(30 * S), S, 60 * S, 0.5);
        assert_eq!(s.views(t0)[1].retry_in_seconds, 30.0, "Retry-After is a floor");
        let t = s.started(1, true);
        s.finished(t);
        s.failed(t, t0, err(), None, S, 60 * S, 0.5);
        assert_eq!(s.views(t0)[1].retry_in_seconds, 1.0, "equal jitter: half of 2 s at least");
    }

    #[test]
    fn with_none_healthy_the_probe_goes_to_the_endpoint_due_first_one_at_a_time() {
        let t0 = Instant::now();
        let mut s = set(3);
        for (i, backoff) in [(0, 3), (1, 1), (2, 2)] {
            let t = s.started(i, false);
            s.finished(t);
            s.failed(t, t0, err(), Some(S * backoff), S, 60 * S, 1.0);
        }
        assert!(!s.any_healthy());
        // Even before any is due (the delivery loop's own backoff paces this).
        let p = send(&mut s, t0);
        assert_eq!((p.idx, p.probe), (1, true));
        let q = send(&mut s, t0);
        assert_eq!(q.idx, 2);
        let r = send(&mut s, t0);
        assert_eq!(r.idx, 0);
        assert_eq!(s.choose(t0), Pick::Busy);
        s.finished(q);
        s.succeeded(q);
        assert!(s.any_healthy());
        assert_eq!(send(&mut s, t0).idx, 2);
    }

    #[test]
    fn metrics_name_each_endpoint_and_escape_labels() {
        let mut s = EndpointSet::new(vec!["https://a/\"x".into(), "https://b/".into()]);
        let t = s.started(0, false);
        s.finished(t);
        s.failed(t, Instant::now(), err(), None, S, S, 1.0);
        let mut o = String::new();
        render_metrics(&mut o, &s.views(Instant::now()));
        assert!(o.contains("sendauth_siem_endpoint_up{url=\"https://a/\\\"x\"} 0"), "{o}");
        assert!(o.contains("sendauth_siem_endpoint_up{url=\"https://b/\"} 1"), "{o}");
        assert!(
            o.contains("sendauth_siem_endpoint_requests_total{url=\"https://a/\\\"x\"} 1"),
            "{o}"
        );
        assert!(
            o.contains("sendauth_siem_endpoint_failures_total{url=\"https://a/\\\"x\"} 1"),
            "{o}"
        );
        let mut empty = String::new();
        render_metrics(&mut empty, &[]);
        assert!(empty.is_empty());
    }
}
