//! Adaptive request concurrency: how many requests the delivery loop keeps in flight.
//!
//! One request at a time delivers 1/RTT requests per second: 20 events/s to a SIEM 50 ms away
//! when each request carries one event. Several requests in flight fix that, but how many a
//! SIEM takes well is unknown and changes (its load, a rate limit, a proxy in front). So the
//! [`Controller`] finds out, the way TCP congestion control and Vector's adaptive request
//! concurrency do: additive increase, multiplicative decrease (AIMD), driven by the round-trip
//! time (RTT) of the requests and by the SIEM's back-pressure answers.
//!
//! Design:
//! - the limit starts at 1 and is re-evaluated once per *window*, a span of time as long as the
//!   smoothed RTT (so one adjustment per round trip, whatever the request rate);
//! - the smoothed RTT is an exponentially weighted moving average (EWMA) of each window's mean
//!   RTT, with an EWMA of the absolute deviation beside it;
//! - at the end of a window:
//!   - back-pressure seen in the window (429, 503, a timeout, see [`Signal::BackPressure`]), or a
//!     mean RTT above the smoothed mean plus [`DEVIATION_SCALE`] deviations (plus a small floor,
//!     so sub-millisecond jitter on a fast link is not read as congestion), or above
//!     [`LATENCY_RATIO`] times the lowest RTT seen (the smoothed mean alone would follow a slow
//!     rise, one request at a time): the limit is multiplied by [`DECREASE`] (at least -1, never
//!     below 1);
//!   - else, if the loop actually had `limit` requests in flight during the window (it used the
//!     limit: raising an unused limit would let it grow without evidence): the limit grows by 1;
//! - a new window starts.
//!
//! Invariants:
//! - `1 <= limit() <= max` always, `max` being `delivery.max_in_flight` when it is a number,
//!   else [`AUTO_CEILING`]; `max == 1` makes the controller inert (strict order);
//! - the controller decides nothing about retries or the queue: it is pure arithmetic on the
//!   inputs it is given, with the clock passed in, so its tests are deterministic.

use std::time::{Duration, Instant};

use crate::sink::settings::MaxInFlight;

/// The most requests `max_in_flight: auto` ever keeps in flight.
pub const AUTO_CEILING: usize = 128;
/// Multiplicative decrease on back-pressure or rising latency.
pub(crate) const DECREASE: f64 = 0.9;
/// EWMA weight of the newest window.
pub(crate) const EWMA_ALPHA: f64 = 0.4;
/// How many smoothed deviations above the smoothed mean RTT still count as "flat".
pub(crate) const DEVIATION_SCALE: f64 = 2.5;
/// A window mean RTT above this many times the no-load RTT is "clearly rising latency": the
/// SIEM is queueing requests, more concurrency only adds delay.
pub(crate) const LATENCY_RATIO: f64 = 2.0;
/// How fast the remembered no-load RTT forgets, per window.
pub(crate) const MIN_RTT_DRIFT: f64 = 0.001;
/// Windows are never shorter than this (a local SIEM answers in microseconds; a few samples per
/// window smooth the noise) nor longer than [`MAX_WINDOW`].
pub(crate) const MIN_WINDOW: Duration = Duration::from_millis(5);
pub(crate) const MAX_WINDOW: Duration = Duration::from_secs(5);

/// What a finished request says about the SIEM's capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal {
    /// An answer that reflects normal work (2xx, or a rejection of the data): its RTT counts.
    Ok,
    /// The SIEM is overloaded or rate limiting: 429, 503, a timeout, items refused with 429.
    BackPressure,
    /// Failed without saying anything about load (network error, 401, abandoned at a stop): not
    /// used for the RTT, no adjustment.
    Ignore,
}

#[derive(Debug, Clone, Copy)]
struct Ewma {
    mean: f64,
    dev: f64,
}

/// The adaptive limit. See the module doc.
#[derive(Debug)]
pub(crate) struct Controller {
    max: usize,
    limit: usize,
    in_flight: usize,
    past: Option<Ewma>,
    /// The lowest window mean RTT seen (the no-load RTT), drifting up by [`MIN_RTT_DRIFT`] per
    /// window so a changed network path is learnt again.
    min_rtt: Option<f64>,
    window_start: Instant,
    window_sum: f64,
    window_n: u32,
    reached_limit: bool,
    back_pressure: bool,
}

impl Controller {
    pub fn new(setting: MaxInFlight, now: Instant) -> Controller {
        Controller {
            max: max_for(setting),
            limit: 1,
            in_flight: 0,
            past: None,
            min_rtt: None,
            window_start: now,
            window_sum: 0.0,
            window_n: 0,
            reached_limit: false,
            back_pressure: false,
        }
    }

    /// How many requests may be in flight now.
    pub fn limit(&self) -> usize {
        self.limit
    }

    #[cfg(test)]
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Whether one more request may start.
    pub(crate) fn can_start(&self) -> bool {
        self.in_flight < self.limit
    }

    /// A config reload may change `delivery.max_in_flight`; the limit is clamped at once.
    pub(crate) fn set_setting(&mut self, setting: MaxInFlight) {
        self.max = max_for(setting);
        self.limit = self.limit.clamp(1, self.max);
    }

    /// A request started.
    pub fn started(&mut self) {
        self.in_flight += 1;
        if self.in_flight >= self.limit {
            self.reached_limit = true;
        }
    }

    /// A request finished after `rtt` (send to answer) with `signal`; `now` is the clock.
    pub(crate) fn finished(&mut self, now: Instant, rtt: Duration, signal: Signal) {
        self.in_flight = self.in_flight.saturating_sub(1);
        match signal {
            Signal::Ok => {
                self.window_sum += rtt.as_secs_f64();
                self.window_n += 1;
            }
            Signal::BackPressure => self.back_pressure = true,
            Signal::Ignore => {}
        }
        if now.saturating_duration_since(self.window_start) >= self.window_len() {
            self.end_window(now);
        }
    }

    fn window_len(&self) -> Duration {
        match self.past {
            Some(p) => Duration::from_secs_f64(p.mean).clamp(MIN_WINDOW, MAX_WINDOW),
            None => MIN_WINDOW,
        }
    }

    fn end_window(&mut self, now: Instant) {
        let current = (self.window_n > 0).then(|| self.window_sum / self.window_n as f64);
        if self.back_pressure {
            self.decrease();
        } else if let Some(cur) = current {
            match self.past {
                // The first window only learns what "normal" is.
                None => {}
                Some(p) => {
                    // A floor of 1 ms + 10% keeps scheduler jitter on a fast link from reading
                    // as congestion.
                    let allowance = (p.dev * DEVIATION_SCALE).max(0.001 + p.mean * 0.1);
                    // The smoothed mean follows a slow rise; the no-load RTT does not.
                    let queueing = self.min_rtt.is_some_and(|m| cur > m * LATENCY_RATIO + 0.001);
                    if cur > p.mean + allowance || queueing {
                        self.decrease();
                    } else if self.reached_limit && self.limit < self.max {
                        self.limit += 1;
                    }
                }
            }
        }
        if let Some(cur) = current {
            self.min_rtt = Some(self.min_rtt.map_or(cur, |m| (m * (1.0 + MIN_RTT_DRIFT)).min(cur)));
            self.past = Some(match self.past {
                None => Ewma { mean: cur, dev: 0.0 },
                Some(p) => Ewma {
                    mean: p.mean + EWMA_ALPHA * (cur - p.mean),
                    dev: p.dev + EWMA_ALPHA * ((cur - p.mean).abs() - p.dev),
                },
            });
        }
        self.window_start = now;
        self.window_sum = 0.0;
        self.window_n = 0;
        self.back_pressure = false;
        self.reached_limit = self.in_flight >= self.limit;
    }

    fn decrease(&mut self) {
        let lower = ((self.limit as f64) * DECREASE).floor() as usize;
        self.limit = lower.min(self.limit.saturating_sub(1)).max(1);
    }
}

fn max_for(setting: MaxInFlight) -> usize {
    match setting {
        MaxInFlight::Auto => AUTO_CEILING,
        MaxInFlight::Fixed(n) => n.clamp(1, crate::sink::settings::MAX_IN_FLIGHT),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// Drives `c` like the delivery loop against a SIEM whose answer takes `rtt(in_flight)` and
    /// says `signal(in_flight)`: keeps `limit` requests in flight for `rounds` round trips.
    fn drive(
        c: &mut Controller,
        t: &mut Instant,
        rounds: usize,
        rtt: impl Fn(usize) -> Duration,
        signal: impl Fn(usize) -> Signal,
    ) -> Vec<usize> {
        let mut limits = Vec::new();
        for _ in 0..rounds {
            let n = c.limit();
            for _ in 0..n {
                c.started();
            }
            let d = rtt(n);
            *t += d;
            for _ in 0..n {
                c.finished(*t, d, signal(n));
            }
            limits.push(c.limit());
        }
        limits
    }

    #[test]
    fn starts_at_one_and_grows_by_one_per_round_trip_while_the_rtt_is_flat() {
        let mut t = Instant::now();
        let mut c = Controller::new(MaxInFlight::Auto, t);
        assert_eq!(c.limit(), 1);
        let limits = drive(&mut c, &mut t, 60, |_| 50 * MS, |_| Signal::Ok);
        // The first window learns the RTT; then +1 per round trip.
        assert_eq!(limits[0], 1);
        for w in limits.windows(2) {
            assert!(w[1] == w[0] + 1 || w[1] == w[0], "{limits:?}");
        }
        assert!(*limits.last().unwrap() >= 55, "{limits:?}");
    }

    #[test]
    fn never_exceeds_the_ceiling_nor_a_configured_number() {
        let mut t = Instant::now();
        let mut c = Controller::new(MaxInFlight::Auto, t);
        let limits = drive(&mut c, &mut t, 400, |_| 10 * MS, |_| Signal::Ok);
        assert_eq!(*limits.iter().max().unwrap(), AUTO_CEILING);
        let mut c = Controller::new(MaxInFlight::Fixed(8), t);
        let limits = drive(&mut c, &mut t, 100, |_| 10 * MS, |_| Signal::Ok);
        assert_eq!(*limits.iter().max().unwrap(), 8);
        assert_eq!(*limits.last().unwrap(), 8);
        // Lowering the setting on reload clamps at once.
        c.set_setting(MaxInFlight::Fixed(3));
        assert_eq!(c.limit(), 3);
        let mut c = Controller::new(MaxInFlight::Fixed(1), t);
        let limits = drive(&mut c, &mut t, 50, |_| 10 * MS, |_| Signal::Ok);
        assert!(limits.iter().all(|l| *l == 1), "{limits:?}");
    }

    #[test]
    fn back_pressure_above_a_capacity_keeps_the_limit_near_it() {
        // A SIEM that answers 429 whenever more than 10 requests are open.
        let mut t = Instant::now();
        let mut c = Controller::new(MaxInFlight::Auto, t);
        let k = 10;
        let limits = drive(
            &mut c,
            &mut t,
            300,
            |_| 20 * MS,
            |n| if n > k { Signal::BackPressure } else { Signal::Ok },
        );
        let tail = &limits[100..];
        assert!(tail.iter().all(|l| (k - 2..=k + 1).contains(l)), "{tail:?}");
        let over = tail.iter().filter(|l| **l > k).count();
        assert!(over <= tail.len() / 2, "over capacity in {over} of {} rounds", tail.len());
    }

    #[test]
    fn rising_latency_backs_off_multiplicatively() {
        // A SIEM that queues: each request past 20 in flight adds 10 ms.
        let mut t = Instant::now();
        let mut c = Controller::new(MaxInFlight::Auto, t);
        let limits = drive(
            &mut c,
            &mut t,
            400,
            |n| 40 * MS + 10 * MS * n.saturating_sub(20) as u32,
            |_| Signal::Ok,
        );
        let max = *limits.iter().max().unwrap();
        assert!(max < 40, "the limit must stop well before the latency doubles: {limits:?}");
        assert!(limits[200..].iter().all(|l| (15..40).contains(l)), "{limits:?}");
    }

    #[test]
    fn one_decrease_per_window_whatever_the_number_of_429s() {
        let mut t = Instant::now();
        let mut c = Controller::new(MaxInFlight::Auto, t);
        drive(&mut c, &mut t, 30, |_| 50 * MS, |_| Signal::Ok);
        let before = c.limit();
        assert!(before > 20);
        let limits = drive(&mut c, &mut t, 1, |_| 50 * MS, |_| Signal::BackPressure);
        assert_eq!(limits[0], ((before as f64) * DECREASE).floor() as usize);
        // And down to 1 at worst, never 0.
        let limits = drive(&mut c, &mut t, 100, |_| 50 * MS, |_| Signal::BackPressure);
        assert_eq!(*limits.last().unwrap(), 1);
    }

    #[test]
    fn an_unused_limit_does_not_grow() {
        let mut t = Instant::now();
        let mut c = Controller::new(MaxInFlight::Auto, t);
        drive(&mut c, &mut t, 10, |_| 50 * MS, |_| Signal::Ok);
        let l = c.limit();
        // A trickle: one request at a time, well under the limit.
        for _ in 0..50 {
            c.started();
            t += 50 * MS;
            c.finished(t, 50 * MS, Signal::Ok);
        }
        assert_eq!(c.limit(), l);
    }

    #[test]
    fn failures_without_a_load_signal_change_nothing() {
        let mut t = Instant::now();
        let mut c = Controller::new(MaxInFlight::Auto, t);
        drive(&mut c, &mut t, 10, |_| 50 * MS, |_| Signal::Ok);
        // (The first round closes the window of the last good answers.)
        drive(&mut c, &mut t, 1, |_| 50 * MS, |_| Signal::Ignore);
        let l = c.limit();
        drive(&mut c, &mut t, 10, |_| 50 * MS, |_| Signal::Ignore);
        assert_eq!(c.limit(), l);
        assert_eq!(c.in_flight(), 0);
    }
}
