//! The report: the targets the figures are printed beside (never enforced) and the table.

use serde_json::{json, Value};

pub mod targets {
    /// File → SIEM, generic ndjson, local receiver.
    pub const FILE_EVENTS_PER_S: f64 = 700_000.0;
    pub const FILE_CPU_S_PER_MILLION: f64 = 1.5;
    pub const PEAK_RSS_MIB: f64 = 32.0;
    pub const SOCKET_EVENTS_PER_S: f64 = 150_000.0;
    /// Agent CPU (% of one core) at each steady rate (events/s appended to the tailed file).
    pub const STEADY_CPU_PERCENT: [(u64, f64); 3] = [(100, 0.5), (1_000, 2.0), (10_000, 15.0)];
    /// p99 of append → arrival at the receiver, at every steady rate.
    pub const STEADY_P99_MS: f64 = 250.0;
    pub const IDLE_CPU_PERCENT: f64 = 0.05;
    pub const IDLE_WAKEUPS_PER_S: f64 = 5.0;
    pub const IDLE_RSS_MIB: f64 = 16.0;
    /// The round-trip time the distance targets are given for.
    pub const RTT_MS: f64 = 50.0;
    /// Generic platform, one event per request (the product default), SIEM `RTT_MS` away.
    pub const RTT_GENERIC_EVENTS_PER_S: f64 = 1_000.0;
    /// Batched platform (generic ndjson), SIEM `RTT_MS` away.
    pub const RTT_BATCHED_EVENTS_PER_S: f64 = 50_000.0;

    /// The CPU target at `rate` events/s, if there is one.
    pub fn steady_cpu_percent(rate: u64) -> Option<f64> {
        STEADY_CPU_PERCENT.iter().find(|(r, _)| *r == rate).map(|(_, c)| *c)
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "meets"
    } else {
        "MISSES"
    }
}

/// One line of the table: measure, result, target and verdict.
type Row = (String, String, String);

pub(crate) fn print_table(r: &Value) {
    let mut rows: Vec<Row> = Vec::new();
    for (phase, add) in [
        ("file", file_rows as fn(&Value, &mut Vec<Row>)),
        ("socket", socket_rows),
        ("latency", latency_rows),
        ("idle", idle_rows),
        ("rtt", rtt_rows),
    ] {
        if let Some(x) = r.get(phase) {
            add(x, &mut rows);
        }
    }
    let w0 = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    let w1 = rows.iter().map(|r| r.1.len()).max().unwrap_or(0);
    println!();
    println!("{:<w0$}  {:<w1$}  target", "measure", "result");
    println!("{}", "-".repeat(w0 + w1 + 30));
    for (a, b, c) in rows {
        println!("{a:<w0$}  {b:<w1$}  {c}");
    }
}

/// The file phase: throughput, CPU per million events, peak RSS.
fn file_rows(x: &Value, rows: &mut Vec<Row>) {
    use targets::*;
    rows.push((
        "file -> SIEM throughput".into(),
        format!("{:.0} events/s, {:.1} MiB/s", f(&x["events_per_s"]), f(&x["mib_per_s"])),
        format!(">= {FILE_EVENTS_PER_S:.0}: {}", verdict(f(&x["events_per_s"]) >= FILE_EVENTS_PER_S)),
    ));
    rows.push((
        "file: CPU per million events".into(),
        format!("{:.2} s (user+sys)", f(&x["cpu_s_per_million"])),
        format!(
            "<= {FILE_CPU_S_PER_MILLION}: {}",
            verdict(f(&x["cpu_s_per_million"]) <= FILE_CPU_S_PER_MILLION)
        ),
    ));
    rows.push((
        "file: peak RSS (VmHWM)".into(),
        format!("{:.1} MiB", f(&x["peak_rss_mib"])),
        format!("<= {PEAK_RSS_MIB}: {}", verdict(f(&x["peak_rss_mib"]) <= PEAK_RSS_MIB)),
    ));
}

/// The socket phase: throughput, CPU and memory.
fn socket_rows(x: &Value, rows: &mut Vec<Row>) {
    use targets::*;
    rows.push((
        format!("socket -> SIEM throughput ({} conns)", x["connections"]),
        format!("{:.0} events/s, {:.1} MiB/s", f(&x["events_per_s"]), f(&x["mib_per_s"])),
        format!(
            ">= {SOCKET_EVENTS_PER_S:.0}: {}",
            verdict(f(&x["events_per_s"]) >= SOCKET_EVENTS_PER_S)
        ),
    ));
    rows.push((
        "socket: CPU per million / peak RSS".into(),
        format!("{:.2} s, {:.1} MiB", f(&x["cpu_s_per_million"]), f(&x["peak_rss_mib"])),
        String::new(),
    ));
}

/// The steady-rate windows: latency, the agent's cost, what the receiver saw.
fn latency_rows(x: &Value, rows: &mut Vec<Row>) {
    use targets::*;
    for l in x["rates"].as_array().into_iter().flatten() {
        let rate = l["rate"].as_u64().unwrap_or(0);
        rows.push((
            format!("steady {rate}/s: latency append->SIEM"),
            format!(
                "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                f(&l["p50_ms"]),
                f(&l["p99_ms"]),
                f(&l["max_ms"])
            ),
            format!("p99 <= {STEADY_P99_MS}: {}", verdict(f(&l["p99_ms"]) <= STEADY_P99_MS)),
        ));
        rows.push((
            format!("steady {rate}/s: agent cost"),
            format!(
                "CPU {:.2}%, {:.0} wakeups/s, {} fdatasyncs/s",
                f(&l["cpu_percent"]),
                f(&l["wakeups_per_s"]),
                per_s(&l["fdatasyncs_per_s"])
            ),
            match steady_cpu_percent(rate) {
                Some(t) => format!("CPU <= {t}%: {}", verdict(f(&l["cpu_percent"]) <= t)),
                None => String::new(),
            },
        ));
        rows.push((
            format!("steady {rate}/s: at the receiver"),
            format!(
                "{:.1} requests/s, {:.1} per 1k events, {} conns, max {} open",
                f(&l["requests_per_s"]),
                f(&l["requests_per_1k_events"]),
                l["connections"],
                l["max_concurrent_requests"]
            ),
            String::new(),
        ));
    }
}

/// The idle phase: CPU, wake-ups, memory.
fn idle_rows(x: &Value, rows: &mut Vec<Row>) {
    use targets::*;
    rows.push((
        format!("idle CPU ({} s)", x["seconds"]),
        format!(
            "{:.3}% of a core, {:.1} wakeups/s, {} fdatasyncs/s",
            f(&x["cpu_percent"]),
            f(&x["wakeups_per_s"]),
            per_s(&x["fdatasyncs_per_s"])
        ),
        format!(
            "<= {IDLE_CPU_PERCENT}%, <= {IDLE_WAKEUPS_PER_S} wakeups/s: {}",
            verdict(f(&x["cpu_percent"]) <= IDLE_CPU_PERCENT && f(&x["wakeups_per_s"]) <= IDLE_WAKEUPS_PER_S)
        ),
    ));
    rows.push((
        "idle RSS (VmRSS / VmHWM)".into(),
        format!("{:.1} / {:.1} MiB", f(&x["rss_mib"]), f(&x["peak_rss_mib"])),
        format!("<= {IDLE_RSS_MIB}: {}", verdict(f(&x["peak_rss_mib"]) <= IDLE_RSS_MIB)),
    ));
}

/// The distance phase: throughput at a round trip, and what the receiver saw.
fn rtt_rows(x: &Value, rows: &mut Vec<Row>) {
    use targets::*;
    let at_target_rtt = (f(&x["rtt_ms"]) - RTT_MS).abs() < 1e-9;
    for (key, label, target) in [
        ("generic", "generic 1/request", RTT_GENERIC_EVENTS_PER_S),
        ("batched", "batched ndjson", RTT_BATCHED_EVENTS_PER_S),
    ] {
        let Some(y) = x.get(key) else { continue };
        rows.push((
            format!("rtt {:.0} ms, {label}", f(&x["rtt_ms"])),
            format!(
                "{:.0} events/s ({} of {} in {:.1} s{})",
                f(&y["events_per_s"]),
                y["arrived"],
                y["events"],
                f(&y["seconds"]),
                if y["capped"] == json!(true) { ", capped" } else { "" }
            ),
            if at_target_rtt {
                format!(">= {target:.0}: {}", verdict(f(&y["events_per_s"]) >= target))
            } else {
                String::new()
            },
        ));
        rows.push((
            format!("rtt {:.0} ms, {label}: receiver", f(&x["rtt_ms"])),
            format!(
                "{} requests ({:.1} events each), {} conns ({:.2} per 10k events), max {} open",
                y["requests"],
                f(&y["events_per_request"]),
                y["connections"],
                f(&y["connections_per_10k_events"]),
                y["max_concurrent_requests"]
            ),
            String::new(),
        ));
    }
}

pub(crate) fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

/// A per-second figure that may be missing (an agent without the counter): `n/a`.
pub(crate) fn per_s(v: &Value) -> String {
    v.as_f64().map_or_else(|| "n/a".to_string(), |x| format!("{x:.1}"))
}
