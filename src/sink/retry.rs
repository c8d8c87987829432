//! The one retry rule: how long to wait after a failure, and when an event has been tried
//! enough (`delivery.max_retries`, `delivery.on_retry_exhausted`).
//!
//! Every failure arm of the delivery loop (`sink::delivery`) asks this policy: a failure of the
//! destination as a whole (network, timeout, 408, 429, 5xx, 401/403, 404, 3xx: ARCHITECTURE.md
//! invariant 3) and a per-event "send this one again" inside an accepted request (an
//! Elasticsearch bulk item 429/5xx, a Splunk HEC 503 that took part of a batch). So
//! `on_retry_exhausted` means the same everywhere.
//!
//! Two counters, two questions:
//!
//! - **The destination's** consecutive failed attempts (kept by the delivery loop, reset by any
//!   success) decide the *backoff* (exponential with jitter, capped, at least `Retry-After`)
//!   and the status `retry` figures: how healthy is the SIEM now.
//! - **Each event's own** failed attempts decide *exhaustion*: they are kept with the event in
//!   the read-ahead window, are never reset by another event's success, and grow by one for
//!   each request that carried the event and did not deliver it (whole-request failure or a
//!   per-event retry). After `max_retries` retries (`max_retries + 1` failed attempts) the
//!   event is exhausted: with `on_retry_exhausted: dead_letter` it moves to the dead letter with
//!   the reason; with the default `hold` it stays queued and is tried again at the capped
//!   backoff for as long as it takes (invariant 3: nothing is dropped).
//!
//! Invariants (absences): the policy never drops an event by itself (it only answers
//! [`Exhausted::DeadLetter`], which moves the event aside with its reason, in the same atomic
//! batch as the acknowledgement: invariant 2); an event's count never goes down while the event
//! is in the window; a failure of the agent's own storage is not a destination failure and never
//! counts against an event (see [`crate::sink::platform::FailureKind::Storage`]).

use std::time::Duration;

use crate::sink::settings::{DeliveryConfig, OnRetryExhausted};

/// What to do with an event that failed again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exhausted {
    /// Retries are left: send it again after the backoff.
    No,
    /// Retries are used up and the user chose `hold`: keep it queued, keep trying.
    Hold,
    /// Retries are used up and the user chose `dead_letter`: move it to the dead letter.
    DeadLetter,
}

/// The retry settings of `delivery`, read once per decision (a reload applies to the next one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RetryPolicy {
    /// Quick retries after the first failed attempt.
    pub max_retries: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    pub on_exhausted: OnRetryExhausted,
}

impl RetryPolicy {
    pub fn new(d: &DeliveryConfig) -> RetryPolicy {
        RetryPolicy {
            max_retries: d.max_retries,
            initial_backoff: d.initial_backoff,
            max_backoff: d.max_backoff,
            on_exhausted: d.on_retry_exhausted,
        }
    }

    /// Whether `failures` failed attempts (of the destination, or of one event) used up the
    /// first attempt and its `max_retries` quick retries.
    pub(crate) fn past_quick_retries(&self, failures: u32) -> bool {
        failures > self.max_retries
    }

    /// What to do with an event that has now failed `failures` times (counting this one).
    pub(crate) fn event_failed(&self, failures: u32) -> Exhausted {
        if !self.past_quick_retries(failures) {
            Exhausted::No
        } else if self.on_exhausted == OnRetryExhausted::DeadLetter {
            Exhausted::DeadLetter
        } else {
            Exhausted::Hold
        }
    }

    /// The wait before the next attempt after `failures` consecutive failed attempts of the
    /// destination: `initial_backoff` doubling per failure, capped at `max_backoff` (and
    /// `max_backoff` itself past the quick retries), with "equal jitter" (`jitter` in [0, 1]
    /// picks between half and all of the delay, so retries never bunch up but never come back
    /// instantly), never shorter than the SIEM's `Retry-After`.
    pub fn backoff(&self, failures: u32, retry_after: Option<Duration>, jitter: f64) -> Duration {
        let base = if self.past_quick_retries(failures) {
            self.max_backoff
        } else {
            let exp = self.initial_backoff.saturating_mul(1u32 << failures.saturating_sub(1).min(20));
            exp.min(self.max_backoff)
        };
        let ms = base.as_millis() as u64;
        let jittered = Duration::from_millis(ms / 2 + ((ms / 2) as f64 * jitter.clamp(0.0, 1.0)).round() as u64);
        match retry_after {
            Some(ra) => jittered.max(ra),
            None => jittered,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(on_exhausted: OnRetryExhausted) -> RetryPolicy {
        RetryPolicy {
            max_retries: 3,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            on_exhausted,
        }
    }

    #[test]
    fn an_event_is_exhausted_after_max_retries_retries_and_then_follows_the_users_choice() {
        let dl = policy(OnRetryExhausted::DeadLetter);
        let hold = policy(OnRetryExhausted::Hold);
        for n in 1..=3 {
            assert_eq!(dl.event_failed(n), Exhausted::No, "retries are left after failure {n}");
        }
        // The first attempt and three retries have failed: none is left.
        assert_eq!(dl.event_failed(4), Exhausted::DeadLetter);
        assert_eq!(hold.event_failed(4), Exhausted::Hold);
        assert_eq!(hold.event_failed(u32::MAX), Exhausted::Hold, "hold keeps the event forever");
    }

    #[test]
    fn backoff_doubles_with_jitter_caps_and_honours_retry_after() {
        let p = policy(OnRetryExhausted::Hold);
        assert_eq!(p.backoff(1, None, 1.0), Duration::from_millis(100));
        assert_eq!(p.backoff(1, None, 0.0), Duration::from_millis(50));
        assert_eq!(p.backoff(3, None, 1.0), Duration::from_millis(400));
        assert_eq!(p.backoff(4, None, 1.0), Duration::from_secs(1), "past the quick retries: the cap");
        assert_eq!(p.backoff(40, None, 1.0), Duration::from_secs(1));
        assert_eq!(p.backoff(1, Some(Duration::from_secs(7)), 1.0), Duration::from_secs(7));
    }
}
