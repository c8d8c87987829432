//! Steady-rate measurement, shared by the latency phase and `sendauth-siem-bench receiver
//! --steady-file`: events appended to the tailed file at a fixed rate, the agent's cost over
//! the appending ([`Snapshot`]) and each event's latency from its `write()` to its arrival.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::{json, Value};

use crate::agent::scrape_fdatasyncs;
use crate::events::event_line;
use crate::process::{loadavg, proc_stats, thread_cpu, thread_cpu_delta, Proc, ProcStats};
use crate::receiver::{Receiver, Tally};

/// What is counted at the start and end of a measured window: the agent's CPU and context
/// switches (`/proc`), its queue's fdatasyncs (`/metrics`, when it has a status listener) and
/// the receiver's requests and connections. Each figure is divided by its own window, read at
/// the moment it was taken.
pub(crate) struct Snapshot {
    pub(crate) at: Instant,
    pub(crate) st: ProcStats,
    pub(crate) threads: std::collections::BTreeMap<String, f64>,
    pub(crate) syncs: Option<(Instant, u64)>,
    pub(crate) requests: u64,
    pub(crate) connections: u64,
    pub(crate) events: u64,
}

impl Snapshot {
    /// At the start of a window: the scrape first, so its own wake-ups fall outside the window.
    pub(crate) fn begin(pid: u32, status: Option<SocketAddr>, tally: &Tally) -> anyhow::Result<Snapshot> {
        let syncs = status.and_then(|s| Some((Instant::now(), scrape_fdatasyncs(s)?)));
        tally.reset_max_open();
        Snapshot::take(pid, syncs, tally)
    }

    /// At the end of a window: the scrape last, for the same reason.
    pub(crate) fn end(pid: u32, status: Option<SocketAddr>, tally: &Tally) -> anyhow::Result<Snapshot> {
        let mut s = Snapshot::take(pid, None, tally)?;
        s.syncs = status.and_then(|st| Some((Instant::now(), scrape_fdatasyncs(st)?)));
        Ok(s)
    }

    pub(crate) fn take(pid: u32, syncs: Option<(Instant, u64)>, tally: &Tally) -> anyhow::Result<Snapshot> {
        Ok(Snapshot {
            at: Instant::now(),
            st: proc_stats(pid)?,
            threads: thread_cpu(pid),
            syncs,
            requests: tally.requests.load(Ordering::Relaxed),
            connections: tally.connections.load(Ordering::Relaxed),
            events: tally.count(),
        })
    }

    /// The agent's cost between `self` and `later`.
    pub(crate) fn cost(&self, later: &Snapshot) -> Value {
        let secs = later.at.duration_since(self.at).as_secs_f64();
        let syncs_per_s = match (self.syncs, later.syncs) {
            (Some((t0, a)), Some((t1, b))) => json!(b.saturating_sub(a) as f64 / t1.duration_since(t0).as_secs_f64()),
            _ => Value::Null,
        };
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        json!({
            "cpu_percent": (later.st.cpu_s - self.st.cpu_s) / secs * 100.0,
            // /proc counts CPU time in clock ticks: one tick over the window, in %.
            "cpu_percent_resolution": 100.0 / hz / secs,
            "cpu_percent_by_thread": thread_cpu_delta(&self.threads, &later.threads, secs),
            "wakeups_per_s": later.st.ctx_switches.saturating_sub(self.st.ctx_switches) as f64 / secs,
            "fdatasyncs_per_s": syncs_per_s,
        })
    }

    /// What the receiver saw between `self` and `later`, for `events` events.
    pub(crate) fn receiver(&self, later: &Snapshot, tally: &Tally, events: u64) -> Value {
        let secs = later.at.duration_since(self.at).as_secs_f64();
        let requests = later.requests - self.requests;
        let connections = later.connections - self.connections;
        json!({
            "requests": requests,
            "requests_per_s": requests as f64 / secs,
            "requests_per_1k_events": requests as f64 * 1000.0 / events.max(1) as f64,
            "connections": connections,
            "connections_per_10k_events": connections as f64 * 10_000.0 / events.max(1) as f64,
            "max_concurrent_requests": tally.max_open_requests.load(Ordering::Relaxed),
        })
    }
}

/// Merges the fields of `b` into `a` (both objects).
pub(crate) fn merge(mut a: Value, b: Value) -> Value {
    if let (Some(a), Value::Object(b)) = (a.as_object_mut(), b) {
        a.extend(b);
    }
    a
}

/// One steady rate: appends `range` to `file` at `rate` events/s and waits for the events at
/// the receiver. The agent's cost (CPU, wake-ups, fdatasyncs) is taken over the appending; the
/// receiver's counts from the first append to the last arrival; latency is append → arrival.
pub(crate) fn steady_rate(
    rx: &Receiver,
    proc: &mut Proc,
    status: Option<SocketAddr>,
    file: &mut std::fs::File,
    range: std::ops::Range<u64>,
    rate: u64,
) -> anyhow::Result<Value> {
    let n = range.end - range.start;
    let before = Snapshot::begin(proc.pid, status, &rx.tally)?;
    let written = paced_append(file, range.clone(), rate)?;
    let appended = Snapshot::end(proc.pid, status, &rx.tally)?;
    let wall = appended.at.duration_since(before.at).as_secs_f64();
    if !rx.wait_for(range.end, Duration::from_secs(60), || proc.alive()) {
        bail!(
            "steady rate {rate}/s: only {} of {} events arrived:\n{}",
            rx.tally.count(),
            range.end,
            proc.log_tail()
        );
    }
    let mut arrived = Snapshot::take(proc.pid, None, &rx.tally)?;
    arrived.at = rx.tally.last_arrival().unwrap_or(arrived.at).max(appended.at);
    let mut lat: Vec<f64> = range
        .clone()
        .zip(&written)
        .filter_map(|(i, w)| rx.tally.arrived(i).map(|a| a.saturating_duration_since(*w).as_secs_f64() * 1000.0))
        .collect();
    lat.sort_by(|a, b| a.total_cmp(b));
    let mean = lat.iter().sum::<f64>() / lat.len().max(1) as f64;
    let v = json!({
        "rate": rate,
        "events": n,
        "seconds": wall,
        "achieved_rate": n as f64 / wall,
        "p50_ms": percentile(&lat, 0.5),
        "p99_ms": percentile(&lat, 0.99),
        "max_ms": lat.last().copied().unwrap_or(f64::NAN),
        "mean_ms": mean,
        "loadavg": loadavg(),
    });
    let v = merge(v, before.cost(&appended));
    Ok(merge(v, before.receiver(&arrived, &rx.tally, n)))
}

pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Appends events `range` to `file` at `rate` per second; returns when each write returned.
pub(crate) fn paced_append(file: &mut std::fs::File, range: std::ops::Range<u64>, rate: u64) -> anyhow::Result<Vec<Instant>> {
    let mut written = Vec::with_capacity((range.end - range.start) as usize);
    let start = Instant::now();
    let mut next = range.start;
    let mut buf = Vec::new();
    while next < range.end {
        let elapsed = start.elapsed();
        // Events due by now (the first one at once).
        let due = (range.start + 1 + (elapsed.as_secs_f64() * rate as f64) as u64).min(range.end);
        if due <= next {
            let at = Duration::from_secs_f64((next - range.start) as f64 / rate as f64);
            std::thread::sleep(at.saturating_sub(elapsed));
            continue;
        }
        buf.clear();
        for i in next..due {
            event_line(i, &mut buf);
        }
        file.write_all(&buf)?;
        let t = Instant::now();
        written.extend((next..due).map(|_| t));
        next = due;
    }
    Ok(written)
}
