//! The last hour of the agent's flow, for the status page's chart (`/history`).
//!
//! Every [`INTERVAL`] the agent samples three figures it already keeps: events received (file
//! and socket), events that left the queue (delivered or dead-lettered), and the queue's depth.
//! The newest [`POINTS`] samples are kept in memory (a few KiB); rates are computed from the
//! difference between neighbouring samples when `/history` is read. Nothing is persisted: after
//! a restart the chart starts empty.
//!
//! It only observes: it reads counters and the queue's counts, and never writes anywhere.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;

/// Time between two samples.
pub(crate) const INTERVAL: Duration = Duration::from_secs(10);
/// Samples kept: one hour at [`INTERVAL`], plus the one the first rate is measured from.
pub(crate) const POINTS: usize = 361;

#[derive(Debug, Clone, Copy)]
struct Sample {
    unix_seconds: u64,
    received: u64,
    left: u64,
    pending: u64,
}

/// One point of the chart: the rates over the interval that ended at `t`, and the depth then.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub(crate) struct Point {
    pub t: u64,
    pub(crate) in_per_second: f64,
    pub(crate) out_per_second: f64,
    pub pending: u64,
}

#[derive(Default)]
pub(crate) struct History {
    samples: Mutex<VecDeque<Sample>>,
}

impl History {
    /// Records the counters as they are at `unix_seconds`.
    pub fn sample(&self, unix_seconds: u64, received: u64, left: u64, pending: u64) {
        let mut s = self.samples.lock().unwrap();
        if s.len() == POINTS {
            s.pop_front();
        }
        s.push_back(Sample {
            unix_seconds,
            received,
            left,
            pending,
        });
    }

    /// The chart's points, oldest first.
    pub fn points(&self) -> Vec<Point> {
        let s = self.samples.lock().unwrap();
        s.iter()
            .zip(s.iter().skip(1))
            .map(|(a, b)| {
                let secs = b.unix_seconds.saturating_sub(a.unix_seconds).max(1) as f64;
                let rate = |x: u64, y: u64| ((y.saturating_sub(x)) as f64 / secs * 10.0).round() / 10.0;
                Point {
                    t: b.unix_seconds,
                    in_per_second: rate(a.received, b.received),
                    out_per_second: rate(a.left, b.left),
                    pending: b.pending,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_come_from_neighbouring_samples_and_an_hour_is_kept() {
        let h = History::default();
        assert!(h.points().is_empty());
        h.sample(100, 0, 0, 0);
        h.sample(110, 50, 20, 30);
        h.sample(120, 50, 50, 0);
        assert_eq!(
            h.points(),
            vec![
                Point {
                    t: 110,
                    in_per_second: 5.0,
                    out_per_second: 2.0,
                    pending: 30
                },
                Point {
                    t: 120,
                    in_per_second: 0.0,
                    out_per_second: 3.0,
                    pending: 0
                },
            ]
        );
        for i in 0..1000 {
            h.sample(130 + i * 10, 50, 50, 0);
        }
        assert_eq!(h.points().len(), POINTS - 1);
    }
}
