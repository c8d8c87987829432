//! `sendauth-siem-bench receiver ... -- CMD ARGS`: the counting receiver and the same
//! measurements for any agent command (throughput, or steady rates with `--steady-file`), so
//! `bench/compare-syslog-ng.sh` measures syslog-ng and sendauth-siem the same way.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};

use crate::agent::free_port;
use crate::phases::check_exact;
use crate::process::{mib, proc_stats, Proc};
use crate::receiver::Receiver;
use crate::report::{f, per_s};
use crate::steady::{merge, paced_append, steady_rate};

/// Options of `sendauth-siem-bench receiver`, the receiver as a stand-alone measuring tool.
#[derive(clap::Args, Debug, Clone)]
pub struct ReceiverOptions {
    /// Address to listen on (loopback only; port 0 picks a free port, given to the command as
    /// BENCH_PORT).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Stop when this many events have arrived (throughput mode: the agent reads a file written
    /// beforehand).
    #[arg(long, required_unless_present = "steady_file")]
    pub expect: Option<u64>,
    /// Steady mode: create this file empty, start the agent (which must tail it), append 20
    /// warm-up events, then each of `--rates` for `--seconds`, measuring the agent's CPU and
    /// wake-ups during the appending and the latency append → receiver.
    #[arg(long)]
    pub steady_file: Option<PathBuf>,
    /// Steady mode: the rates, events/s.
    #[arg(long, value_delimiter = ',', default_value = "100,1000,10000")]
    pub rates: Vec<u64>,
    /// Steady mode: seconds per rate.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Steady mode: seconds between starting the agent and the warm-up events.
    #[arg(long, default_value_t = 2)]
    pub settle: u64,
    /// Scrape `sendauth_siem_queue_fdatasyncs_total` from the agent's status listener, which must
    /// listen on 127.0.0.1:$BENCH_STATUS_PORT (a free port, given to the command).
    #[arg(long)]
    pub metrics: bool,
    /// Round-trip delay of the receiver (see `sendauth-siem-bench --rtt`).
    #[arg(long, value_parser = crate::parse_duration, default_value = "0ms")]
    pub rtt: Duration,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
    /// Name shown in the result line.
    #[arg(long, default_value = "agent")]
    pub label: String,
    /// Append the result as one JSON line to this file.
    #[arg(long)]
    pub json_out: Option<PathBuf>,
    /// Where the command's output goes.
    #[arg(long)]
    pub log: Option<PathBuf>,
    /// The agent to measure, started once the receiver listens (env BENCH_PORT is its port);
    /// its CPU and peak RSS are measured when the last event arrives, then it gets SIGTERM.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

/// `sendauth-siem-bench receiver ... -- CMD ARGS`: measures any agent the same way.
pub fn run_receiver(o: &ReceiverOptions) -> anyhow::Result<Value> {
    if let Some(file) = &o.steady_file {
        return run_receiver_steady(o, file);
    }
    let expect = o.expect.unwrap_or(0);
    let rx = Receiver::start_with_rtt(o.listen, expect, o.rtt)?;
    let (cmd, _status) = receiver_command(o, &rx)?;
    let t0 = Instant::now();
    let mut p = Proc::spawn(cmd, &receiver_log(o))?;
    let ok = rx.wait_for(expect, Duration::from_secs(o.timeout), || p.alive());
    let st = proc_stats(p.pid).unwrap_or_default();
    let alive = p.alive();
    p.stop(Duration::from_secs(15));
    if !ok {
        bail!(
            "{}: {} of {} events arrived (process {}):\n{}",
            o.label,
            rx.tally.count(),
            expect,
            if alive { "still running" } else { "exited" },
            p.log_tail()
        );
    }
    let secs = rx
        .tally
        .last_arrival()
        .unwrap_or_else(Instant::now)
        .duration_since(t0)
        .as_secs_f64();
    let t = &rx.tally;
    let v = json!({
        "label": o.label,
        "events": expect,
        "seconds": secs,
        "events_per_s": expect as f64 / secs,
        "body_mib_per_s": t.bytes.load(Ordering::Relaxed) as f64 / secs / 1048576.0,
        "cpu_s": st.cpu_s,
        "cpu_s_per_million": st.cpu_s / (expect as f64 / 1e6),
        "peak_rss_mib": mib(st.vm_hwm_kib),
        "requests": t.requests.load(Ordering::Relaxed),
        "duplicates": t.duplicates.load(Ordering::Relaxed),
        "missing": t.missing(0..expect),
        "reordered": t.reordered.load(Ordering::Relaxed),
    });
    println!(
        "{:<14} {:>9.0} events/s  {:>6.1} MiB/s  {:>6.2} CPU-s/M events  {:>6.1} MiB peak RSS  {} requests  dup {} missing {} reordered {}",
        o.label,
        f(&v["events_per_s"]),
        f(&v["body_mib_per_s"]),
        f(&v["cpu_s_per_million"]),
        f(&v["peak_rss_mib"]),
        v["requests"],
        v["duplicates"],
        v["missing"],
        v["reordered"]
    );
    if let Some(path) = &o.json_out {
        let mut out = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        writeln!(out, "{v}")?;
    }
    Ok(v)
}

fn receiver_log(o: &ReceiverOptions) -> PathBuf {
    o.log
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("bench-{}.log", o.label)))
}

/// The agent's command, with BENCH_PORT (the receiver) and BENCH_STATUS_PORT (a free port for
/// its status listener) in its environment; the status address if `--metrics`.
fn receiver_command(o: &ReceiverOptions, rx: &Receiver) -> anyhow::Result<(Command, Option<SocketAddr>)> {
    let status_port = free_port()?;
    let mut cmd = Command::new(&o.command[0]);
    cmd.args(&o.command[1..])
        .env("BENCH_PORT", rx.addr.port().to_string())
        .env("BENCH_STATUS_PORT", status_port.to_string());
    let status = o.metrics.then(|| SocketAddr::from(([127, 0, 0, 1], status_port)));
    Ok((cmd, status))
}

/// `sendauth-siem-bench receiver --steady-file F`: the steady-rate measurement of `bench`'s latency phase,
/// for any agent that tails `F`.
fn run_receiver_steady(o: &ReceiverOptions, file: &Path) -> anyhow::Result<Value> {
    let warmup = 20u64;
    let total = warmup + o.rates.iter().map(|r| r * o.seconds).sum::<u64>();
    std::fs::File::create(file).with_context(|| format!("cannot create {}", file.display()))?;
    let mut input = std::fs::OpenOptions::new().append(true).open(file)?;
    let rx = Receiver::start_with_rtt(o.listen, total, o.rtt)?;
    let (cmd, status) = receiver_command(o, &rx)?;
    let mut p = Proc::spawn(cmd, &receiver_log(o))?;
    std::thread::sleep(Duration::from_secs(o.settle));
    paced_append(&mut input, 0..warmup, 100)?;
    if !rx.wait_for(warmup, Duration::from_secs(o.timeout), || p.alive()) {
        bail!("{}: the warm-up events did not arrive:\n{}", o.label, p.log_tail());
    }
    let mut out = Vec::new();
    let mut id = warmup;
    for &rate in &o.rates {
        let range = id..id + rate * o.seconds;
        id = range.end;
        let v = steady_rate(&rx, &mut p, status, &mut input, range, rate)?;
        let v = merge(json!({"label": o.label, "mode": "steady"}), v);
        println!(
            "{:<14} {:>6}/s  CPU {:>6.2}%  {:>6.0} wakeups/s  {:>6} fdatasyncs/s  p50 {:>7.2} ms  p99 {:>7.2} ms  {:>6.1} requests per 1k events",
            o.label,
            rate,
            f(&v["cpu_percent"]),
            f(&v["wakeups_per_s"]),
            per_s(&v["fdatasyncs_per_s"]),
            f(&v["p50_ms"]),
            f(&v["p99_ms"]),
            f(&v["requests_per_1k_events"])
        );
        if let Some(path) = &o.json_out {
            let mut out = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
            writeln!(out, "{v}")?;
        }
        out.push(v);
    }
    p.stop(Duration::from_secs(15));
    check_exact(&rx.tally, total, &o.label)?;
    Ok(Value::Array(out))
}
