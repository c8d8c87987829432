//! Process counters, rendered as Prometheus text. They observe; nothing reads them to decide.
//!
//! Counters start at zero with the process (docs/CONTRACT.md, "Status"); queue depth, dead-letter and quarantine
//! counts are read from the queue at scrape time instead.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::event::Rejection;
use crate::queue::Counts;

/// Upper bounds (seconds) of the request-latency histogram buckets.
const BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

pub(crate) const REJECT_REASONS: [&str; 11] = [
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

pub(crate) fn reject_reason_label(r: &Rejection) -> &'static str {
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
    pub(crate) received_file: AtomicU64,
    pub(crate) received_socket: AtomicU64,
    pub(crate) unknown_type: AtomicU64,
    rejected: [AtomicU64; 11],
    pub delivered: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub retries: AtomicU64,
    pub(crate) requests_ok: AtomicU64,
    pub(crate) requests_failed: AtomicU64,
    /// Requests by the SIEM's HTTP status code; `None`: no HTTP answer (refused, timed out).
    requests_by_code: Mutex<std::collections::BTreeMap<Option<u16>, u64>>,
    pub(crate) bytes_sent: AtomicU64,
    pub(crate) queue_full_refusals: AtomicU64,
    pub(crate) reloads_ok: AtomicU64,
    pub(crate) reloads_failed: AtomicU64,
    pub socket_connections: AtomicU64,
    latency_buckets: [AtomicU64; 12],
    latency_count: AtomicU64,
    latency_sum_us: AtomicU64,
    /// Unix time (milliseconds) of the last request the SIEM accepted; 0 before the first.
    last_success_unix_ms: AtomicU64,
}

impl Metrics {
    pub fn rejected(&self, r: &Rejection) {
        let label = reject_reason_label(r);
        if let Some(i) = REJECT_REASONS.iter().position(|x| *x == label) {
            self.rejected[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Marks now as the time of the last accepted request.
    pub(crate) fn set_last_success_now(&self) {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        self.last_success_unix_ms.store(ms, Ordering::Relaxed);
    }

    pub(crate) fn rejected_total(&self) -> u64 {
        self.rejected.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// One request answered with `code` (`None`: no HTTP answer).
    pub(crate) fn count_response(&self, code: Option<u16>) {
        *self.requests_by_code.lock().unwrap().entry(code).or_default() += 1;
    }

    pub(crate) fn observe_latency(&self, d: Duration) {
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
        let mut o = String::with_capacity(4096);
        self.render_counters(&mut o);
        render_gauges(&mut o, self, counts, oldest_age, state);
        self.render_latency(&mut o);
        render_process(&mut o);
        o
    }

    /// The `_total` counters.
    fn render_counters(&self, o: &mut String) {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
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
        {
            let by_code = self.requests_by_code.lock().unwrap();
            let samples: Vec<(String, u64)> = by_code
                .iter()
                .map(|(code, n)| {
                    let code = code.map_or_else(|| "none".to_string(), |c| c.to_string());
                    (format!("{{code=\"{code}\"}}"), *n)
                })
                .collect();
            counter(
                "sendauth_siem_requests_by_code_total",
                "HTTP requests to the SIEM, by the status code it answered (\"none\": no HTTP answer, e.g. refused or timed out).",
                &samples,
            );
        }
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
    }

    /// The request latency histogram and the build info.
    fn render_latency(&self, o: &mut String) {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
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
        let _ = writeln!(
            o,
            "# HELP sendauth_siem_build_info The running binary: version, git commit and target (always 1).\n# TYPE sendauth_siem_build_info gauge\nsendauth_siem_build_info{{version=\"{}\",commit=\"{}\",target=\"{}\"}} 1",
            crate::build_info::VERSION,
            crate::build_info::COMMIT,
            crate::build_info::TARGET
        );
    }
}

/// The gauges: queue figures, delivery state, connections.
fn render_gauges(o: &mut String, m: &Metrics, counts: &Counts, oldest_age: Option<Duration>, state: &str) {
    let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let gauges: [(&str, &str, String); 9] = [
        (
            "sendauth_siem_queue_depth",
            "Events accepted and not yet acknowledged by the SIEM.",
            counts.pending_events.to_string(),
        ),
        (
            "sendauth_siem_queue_bytes",
            "Bytes of events pending in the queue.",
            counts.pending_bytes.to_string(),
        ),
        (
            "sendauth_siem_queue_oldest_pending_age_seconds",
            "Age of the oldest pending event.",
            format!("{:.3}", oldest_age.map(|d| d.as_secs_f64()).unwrap_or(0.0)),
        ),
        (
            "sendauth_siem_dead_letter_entries",
            "Events in the dead letter.",
            counts.dead_letter.to_string(),
        ),
        (
            "sendauth_siem_dead_letter_bytes",
            "Bytes the dead letter keeps (bounded by queue.max_dead_letter_bytes).",
            counts.dead_letter_bytes.to_string(),
        ),
        (
            "sendauth_siem_quarantine_entries",
            "Lines in the quarantine.",
            counts.quarantine.to_string(),
        ),
        (
            "sendauth_siem_quarantine_bytes",
            "Bytes the quarantine keeps (bounded by queue.max_quarantine_bytes).",
            counts.quarantine_bytes.to_string(),
        ),
        (
            "sendauth_siem_last_success_timestamp_seconds",
            "Unix time of the last request the SIEM accepted (0 before the first since start). Alert on `sendauth_siem_queue_depth > 0 and time() - sendauth_siem_last_success_timestamp_seconds > 600`.",
            format!("{:.3}", g(&m.last_success_unix_ms) as f64 / 1000.0),
        ),
        (
            "sendauth_siem_socket_connections",
            "Open socket source connections.",
            g(&m.socket_connections).to_string(),
        ),
    ];
    for (name, help, v) in gauges {
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
    }
    let _ = writeln!(
        o,
        "# HELP sendauth_siem_state Delivery state (1 for the current one).\n# TYPE sendauth_siem_state gauge"
    );
    for s in ["not_yet_invoked", "success", "error", "disabled"] {
        let _ = writeln!(o, "sendauth_siem_state{{state=\"{s}\"}} {}", u8::from(s == state));
    }
}

/// The standard `process_*` metrics (as every Prometheus client library exports them), read
/// from `/proc/self`. A figure that cannot be read is left out rather than reported as 0.
fn render_process(o: &mut String) {
    let mut gauge = |name: &str, kind: &str, help: &str, v: f64| {
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
    };
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as f64;
    if let Some(stat) = std::fs::read_to_string("/proc/self/stat").ok().and_then(|s| ProcStat::parse(&s)) {
        gauge(
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
            (stat.utime + stat.stime) as f64 / ticks,
        );
        gauge(
            "process_virtual_memory_bytes",
            "gauge",
            "Virtual memory size in bytes.",
            stat.vsize as f64,
        );
        gauge(
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            stat.rss_pages as f64 * page,
        );
        if let Some(boot) = boot_time() {
            gauge(
                "process_start_time_seconds",
                "gauge",
                "Start time of the process since unix epoch in seconds.",
                boot as f64 + stat.starttime as f64 / ticks,
            );
        }
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        gauge("process_open_fds", "gauge", "Number of open file descriptors.", fds.count() as f64);
    }
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 && lim.rlim_cur != libc::RLIM_INFINITY {
        gauge(
            "process_max_fds",
            "gauge",
            "Maximum number of open file descriptors.",
            lim.rlim_cur as f64,
        );
    }
}

/// The fields of `/proc/self/stat` (see `proc_pid_stat(5)`) the process metrics need.
#[derive(Debug, PartialEq)]
struct ProcStat {
    utime: u64,
    stime: u64,
    starttime: u64,
    vsize: u64,
    rss_pages: u64,
}

impl ProcStat {
    fn parse(text: &str) -> Option<ProcStat> {
        // The command name (field 2) is in parentheses and may itself hold spaces or ')':
        // the fields after it start after the last ')'.
        let rest = &text[text.rfind(')')? + 1..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        // `rest` starts at field 3 (state): field N is f[N - 3].
        let n = |i: usize| f.get(i - 3)?.parse::<u64>().ok();
        Some(ProcStat {
            utime: n(14)?,
            stime: n(15)?,
            starttime: n(22)?,
            vsize: n(23)?,
            rss_pages: n(24)?,
        })
    }
}

/// The system's boot time (`btime` in `/proc/stat`), in unix seconds.
fn boot_time() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    stat.lines().find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_fields_are_read_after_the_command_name_even_with_spaces_and_parentheses() {
        let line =
            "4242 (sendauth (x) y) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 75 0 0 20 0 9 0 123456 987654321 2048 18446744073709551615";
        assert_eq!(
            ProcStat::parse(line),
            Some(ProcStat {
                utime: 250,
                stime: 75,
                starttime: 123456,
                vsize: 987654321,
                rss_pages: 2048
            })
        );
        assert_eq!(ProcStat::parse("garbage"), None);
        assert_eq!(ProcStat::parse("1 (x) S 1 2"), None);
    }
}
