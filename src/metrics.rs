//! Process counters, rendered as Prometheus text. They observe; nothing reads them to decide.
//!
//! Counters start at zero with the process (docs/CONTRACT.md, "Status"); queue depth, dead-letter and quarantine
//! counts are read from the queue at scrape time instead.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::event::Rejection;
use crate::queue::Counts;

/// Upper bounds (seconds) of the request-latency histogram buckets.
const BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

pub const REJECT_REASONS: [&str; 11] = [
    "too_large",
    "invalid_utf8",
    "not_an_object",
    "invalid_json",
    "missing_field",
    "not_a_string",
    "bad_timestamp",
    "too_deep",
    "empty",
    "unterminated",
    "transform",
];

pub fn reject_reason_label(r: &Rejection) -> &'static str {
    match r {
        Rejection::TooLarge { .. } => "too_large",
        Rejection::InvalidUtf8(_) => "invalid_utf8",
        Rejection::NotAnObject(_) => "not_an_object",
        Rejection::InvalidJson(_) => "invalid_json",
        Rejection::MissingField(_) => "missing_field",
        Rejection::NotAString { .. } => "not_a_string",
        Rejection::BadTimestamp(_) => "bad_timestamp",
        Rejection::TooDeep => "too_deep",
        Rejection::Empty => "empty",
        Rejection::Unterminated => "unterminated",
        Rejection::Transform(_) => "transform",
    }
}

#[derive(Default)]
pub struct Metrics {
    pub received_file: AtomicU64,
    pub received_socket: AtomicU64,
    pub unknown_type: AtomicU64,
    rejected: [AtomicU64; 11],
    pub delivered: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub retries: AtomicU64,
    pub requests_ok: AtomicU64,
    pub requests_failed: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub queue_full_refusals: AtomicU64,
    pub reloads_ok: AtomicU64,
    pub reloads_failed: AtomicU64,
    pub socket_connections: AtomicU64,
    latency_buckets: [AtomicU64; 12],
    latency_count: AtomicU64,
    latency_sum_us: AtomicU64,
}

impl Metrics {
    pub fn rejected(&self, r: &Rejection) {
        let label = reject_reason_label(r);
        if let Some(i) = REJECT_REASONS.iter().position(|x| *x == label) {
            self.rejected[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn rejected_total(&self) -> u64 {
        self.rejected.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    pub fn observe_latency(&self, d: Duration) {
        let s = d.as_secs_f64();
        for (i, b) in BUCKETS.iter().enumerate() {
            if s <= *b {
                self.latency_buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us.fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    /// Prometheus text exposition format 0.0.4.
    pub fn render(&self, counts: &Counts, oldest_age: Option<Duration>, state: &str) -> String {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut o = String::with_capacity(4096);
        let mut counter = |name: &str, help: &str, lines: &[(String, u64)]| {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} counter");
            for (labels, v) in lines {
                let _ = writeln!(o, "{name}{labels} {v}");
            }
        };
        counter(
            "sendauth_siem_events_received_total",
            "Events accepted into the queue, by source.",
            &[
                ("{source=\"file\"}".into(), g(&self.received_file)),
                ("{source=\"socket\"}".into(), g(&self.received_socket)),
            ],
        );
        counter(
            "sendauth_siem_events_unknown_type_total",
            "Accepted events whose event_type is not one of the four documented types.",
            &[(String::new(), g(&self.unknown_type))],
        );
        let rej: Vec<(String, u64)> = REJECT_REASONS
            .iter()
            .enumerate()
            .map(|(i, r)| (format!("{{reason=\"{r}\"}}"), g(&self.rejected[i])))
            .collect();
        counter(
            "sendauth_siem_events_rejected_total",
            "Lines rejected into the quarantine, by reason.",
            &rej,
        );
        counter(
            "sendauth_siem_events_delivered_total",
            "Events the SIEM accepted.",
            &[(String::new(), g(&self.delivered))],
        );
        counter(
            "sendauth_siem_events_dead_lettered_total",
            "Events moved to the dead letter.",
            &[(String::new(), g(&self.dead_lettered))],
        );
        counter(
            "sendauth_siem_retries_total",
            "Delivery attempts that failed and will be retried.",
            &[(String::new(), g(&self.retries))],
        );
        counter(
            "sendauth_siem_requests_total",
            "HTTP requests to the SIEM, by outcome.",
            &[
                ("{outcome=\"success\"}".into(), g(&self.requests_ok)),
                ("{outcome=\"failure\"}".into(), g(&self.requests_failed)),
            ],
        );
        counter(
            "sendauth_siem_bytes_sent_total",
            "Request body bytes sent to the SIEM (after compression).",
            &[(String::new(), g(&self.bytes_sent))],
        );
        counter(
            "sendauth_siem_queue_full_refusals_total",
            "Appends refused because the queue reached queue.max_bytes.",
            &[(String::new(), g(&self.queue_full_refusals))],
        );
        counter(
            "sendauth_siem_config_reloads_total",
            "Config reloads, by result.",
            &[
                ("{result=\"applied\"}".into(), g(&self.reloads_ok)),
                ("{result=\"rejected\"}".into(), g(&self.reloads_failed)),
            ],
        );
        counter(
            "sendauth_siem_queue_fdatasyncs_total",
            "fdatasync/fsync calls made by the queue (the disk cost of durability).",
            &[(String::new(), crate::queue::fdatasyncs())],
        );
        let mut gauge = |name: &str, help: &str, v: String| {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        gauge(
            "sendauth_siem_queue_depth",
            "Events accepted and not yet acknowledged by the SIEM.",
            counts.pending_events.to_string(),
        );
        gauge(
            "sendauth_siem_queue_bytes",
            "Bytes of events pending in the queue.",
            counts.pending_bytes.to_string(),
        );
        gauge(
            "sendauth_siem_queue_oldest_pending_age_seconds",
            "Age of the oldest pending event.",
            format!("{:.3}", oldest_age.map(|d| d.as_secs_f64()).unwrap_or(0.0)),
        );
        gauge(
            "sendauth_siem_dead_letter_count",
            "Events in the dead letter.",
            counts.dead_letter.to_string(),
        );
        gauge(
            "sendauth_siem_dead_letter_bytes",
            "Bytes the dead letter keeps (bounded by queue.max_dead_letter_bytes).",
            counts.dead_letter_bytes.to_string(),
        );
        gauge(
            "sendauth_siem_quarantine_count",
            "Lines in the quarantine.",
            counts.quarantine.to_string(),
        );
        gauge(
            "sendauth_siem_quarantine_bytes",
            "Bytes the quarantine keeps (bounded by queue.max_quarantine_bytes).",
            counts.quarantine_bytes.to_string(),
        );
        gauge(
            "sendauth_siem_socket_connections",
            "Open socket source connections.",
            g(&self.socket_connections).to_string(),
        );
        let _ = writeln!(
            o,
            "# HELP sendauth_siem_state Delivery state (1 for the current one).\n# TYPE sendauth_siem_state gauge"
        );
        for s in ["not_yet_invoked", "success", "error", "disabled"] {
            let _ = writeln!(o, "sendauth_siem_state{{state=\"{s}\"}} {}", u8::from(s == state));
        }
        let _ = writeln!(
            o,
            "# HELP sendauth_siem_request_duration_seconds Latency of HTTP requests to the SIEM.\n# TYPE sendauth_siem_request_duration_seconds histogram"
        );
        for (i, b) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                o,
                "sendauth_siem_request_duration_seconds_bucket{{le=\"{b}\"}} {}",
                g(&self.latency_buckets[i])
            );
        }
        let count = g(&self.latency_count);
        let _ = writeln!(o, "sendauth_siem_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(
            o,
            "sendauth_siem_request_duration_seconds_sum {:.6}",
            g(&self.latency_sum_us) as f64 / 1e6
        );
        let _ = writeln!(o, "sendauth_siem_request_duration_seconds_count {count}");
        o
    }
}
