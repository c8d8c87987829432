//! The phases of `sendauth-siem-bench` (file, socket, latency, idle, rtt; see the crate's
//! opening), each with a fresh work dir, agent, queue and receiver, and [`run`], which runs the
//! chosen ones and reports.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};

use crate::agent::{spawn_agent, Agent, AgentSetup};
use crate::events::{events_buffer, write_events_file};
use crate::process::{loadavg, machine, mib};
use crate::receiver::{Receiver, Tally};
use crate::report::print_table;
use crate::steady::{merge, paced_append, steady_rate, Snapshot};

#[derive(clap::Args, Debug, Clone)]
pub struct Options {
    /// Events for the throughput phases [default: 1000000; 20000 with --quick].
    #[arg(long)]
    pub events: Option<u64>,
    /// CI-sized smoke run: 20k events, 2 s per latency rate, 5 s idle (explicit flags win).
    #[arg(long)]
    pub quick: bool,
    /// Seconds of the idle phase [default: 60; 5 with --quick].
    #[arg(long)]
    pub idle_seconds: Option<u64>,
    /// Seconds per latency rate [default: 10; 2 with --quick].
    #[arg(long)]
    pub latency_seconds: Option<u64>,
    /// Steady rates (events/s) of the latency phase.
    #[arg(long, value_delimiter = ',', default_value = "100,1000,10000")]
    pub rates: Vec<u64>,
    /// Round-trip delay of the receiver: it answers each request (and serves each new
    /// connection) this long after it arrived, like a SIEM that far away. Applies to every phase
    /// [default: 0; 50ms in the rtt phase].
    #[arg(long, value_parser = crate::parse_duration)]
    pub rtt: Option<Duration>,
    /// Events pre-written for the generic one-event-per-request half of the rtt phase
    /// [default: 30000; 2000 with --quick].
    #[arg(long)]
    pub rtt_generic_events: Option<u64>,
    /// Events pre-written for the batched (generic ndjson) half of the rtt phase
    /// [default: 1000000; 20000 with --quick].
    #[arg(long)]
    pub rtt_batched_events: Option<u64>,
    /// Seconds after which each half of the rtt phase stops measuring and reports events/s from
    /// what arrived (the rest is then delivered without delay for the exactness check)
    /// [default: 30; 5 with --quick].
    #[arg(long)]
    pub rtt_seconds: Option<u64>,
    /// Concurrent writers in the socket phase.
    #[arg(long, default_value_t = 4)]
    pub socket_connections: usize,
    /// Phases to run.
    #[arg(long, value_delimiter = ',', default_value = "file,socket,latency,idle,rtt")]
    pub phases: Vec<String>,
    /// Write the results as JSON to this file.
    #[arg(long)]
    pub json_out: Option<PathBuf>,
    /// Keep the temp directories (configs, queues, agent logs) and print where they are.
    #[arg(long)]
    pub keep: bool,
    /// The agent binary to measure [default: `sendauth-siem` beside this binary].
    #[arg(long, value_name = "PATH")]
    pub agent: Option<PathBuf>,
    /// Extra YAML appended to every generated agent config (e.g. "delivery:\n  linger: 5ms").
    #[arg(long, hide = true)]
    pub agent_config_extra: Option<String>,
}

struct Workdir {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
}

impl Workdir {
    fn new(name: &str, keep: bool) -> anyhow::Result<Workdir> {
        let d = tempfile::Builder::new().prefix(&format!("sendauth-bench-{name}-")).tempdir()?;
        let path = d.path().to_path_buf();
        if keep {
            eprintln!("  ({name}: files kept in {})", path.display());
            let _ = d.keep();
            Ok(Workdir { dir: None, path })
        } else {
            Ok(Workdir { dir: Some(d), path })
        }
    }
}

impl Drop for Workdir {
    fn drop(&mut self) {
        drop(self.dir.take());
    }
}

/// The agent binary ([`run`] resolved `--agent` before the phases; a bare name is looked up in
/// `PATH` otherwise).
fn agent_exe(o: &Options) -> &Path {
    o.agent.as_deref().unwrap_or(Path::new("sendauth-siem"))
}

/// The phase's receiver on a free loopback port, with `--rtt` (default none).
fn start_receiver(o: &Options, capacity: u64) -> anyhow::Result<Receiver> {
    Receiver::start_with_rtt("127.0.0.1:0".parse()?, capacity, o.rtt.unwrap_or_default())
}

fn throughput_deadline(n: u64) -> Duration {
    Duration::from_secs(60 + n / 10_000)
}

pub(crate) fn check_exact(tally: &Tally, n: u64, what: &str) -> anyhow::Result<()> {
    let dups = tally.duplicates.load(Ordering::Relaxed);
    let unknown = tally.unknown.load(Ordering::Relaxed);
    let missing = tally.missing(0..n);
    if dups > 0 || unknown > 0 || missing > 0 {
        bail!("{what}: the receiver saw {missing} missing, {dups} duplicate and {unknown} unknown events; the measurement is not valid");
    }
    Ok(())
}

/// A fresh work dir holding `n` pre-written events, and an agent started on that file against
/// the receiver at `receiver`. Returns the bytes written and the moment just before the spawn.
fn agent_on_events_file(
    o: &Options,
    name: &str,
    n: u64,
    receiver: SocketAddr,
    batch: &str,
) -> anyhow::Result<(Workdir, u64, Instant, Agent)> {
    let w = Workdir::new(name, o.keep)?;
    let input = w.path.join("events.jsonl");
    let bytes = write_events_file(&input, n)?;
    let t0 = Instant::now();
    let agent = spawn_agent(&AgentSetup {
        exe: agent_exe(o),
        dir: &w.path,
        receiver,
        file: Some(&input),
        socket: None,
        extra: o.agent_config_extra.as_deref(),
        batch,
    })?;
    Ok((w, bytes, t0, agent))
}

fn run_file(o: &Options, n: u64) -> anyhow::Result<Value> {
    let rx = start_receiver(o, n)?;
    let (_w, bytes, t0, mut agent) = agent_on_events_file(o, "file", n, rx.addr, "ndjson")?;
    if !rx.wait_for(n, throughput_deadline(n), || agent.proc.alive()) {
        bail!("file: only {} of {n} events arrived:\n{}", rx.tally.count(), agent.proc.log_tail());
    }
    let last = rx.tally.last_arrival().unwrap_or_else(Instant::now);
    let secs = last.duration_since(t0).as_secs_f64();
    let at_arrival = agent.stats()?;
    let drained = agent.wait_drained(Duration::from_secs(30));
    let st = agent.stats()?;
    agent.proc.stop(Duration::from_secs(15));
    check_exact(&rx.tally, n, "file")?;
    Ok(json!({
        "events": n,
        "bytes": bytes,
        "avg_event_bytes": bytes as f64 / n as f64 - 1.0,
        "seconds": secs,
        "events_per_s": n as f64 / secs,
        "mib_per_s": bytes as f64 / secs / 1048576.0,
        "cpu_s": st.cpu_s,
        "cpu_s_at_last_arrival": at_arrival.cpu_s,
        "cpu_s_per_million": st.cpu_s / (n as f64 / 1e6),
        "peak_rss_mib": mib(st.vm_hwm_kib),
        "requests": rx.tally.requests.load(Ordering::Relaxed),
        "reordered": rx.tally.reordered.load(Ordering::Relaxed),
        "drained": drained,
        "loadavg": loadavg(),
    }))
}

fn run_socket(o: &Options, n: u64) -> anyhow::Result<Value> {
    let w = Workdir::new("socket", o.keep)?;
    let sock = w.path.join("siem.sock");
    let rx = start_receiver(o, n)?;
    let mut agent = spawn_agent(&AgentSetup {
        exe: agent_exe(o),
        dir: &w.path,
        receiver: rx.addr,
        file: None,
        socket: Some(&sock),
        extra: o.agent_config_extra.as_deref(),
        batch: "ndjson",
    })?;
    agent.wait_healthy(Duration::from_secs(30))?;
    let k = o.socket_connections.max(1) as u64;
    let bufs: Vec<Vec<u8>> = (0..k).map(|c| events_buffer(c * n / k..(c + 1) * n / k)).collect();
    let bytes: u64 = bufs.iter().map(|b| b.len() as u64).sum();
    let before = agent.stats()?;
    let t0 = Instant::now();
    let writers: Vec<_> = bufs
        .into_iter()
        .map(|buf| {
            let sock = sock.clone();
            std::thread::spawn(move || -> anyhow::Result<u64> {
                let mut s = std::os::unix::net::UnixStream::connect(&sock)?;
                s.write_all(&buf)?;
                s.shutdown(std::net::Shutdown::Write)?;
                let mut answer = String::new();
                s.read_to_string(&mut answer)?;
                let v: Value = serde_json::from_str(answer.lines().last().unwrap_or(""))
                    .with_context(|| format!("unexpected answer from the socket: {answer:?}"))?;
                Ok(v["accepted"].as_u64().unwrap_or(0))
            })
        })
        .collect();
    let mut accepted = 0;
    for wr in writers {
        accepted += wr.join().map_err(|_| anyhow::anyhow!("a socket writer panicked"))??;
    }
    let answered = t0.elapsed().as_secs_f64();
    if !rx.wait_for(n, throughput_deadline(n), || agent.proc.alive()) {
        bail!(
            "socket: only {} of {n} events arrived:\n{}",
            rx.tally.count(),
            agent.proc.log_tail()
        );
    }
    let last = rx.tally.last_arrival().unwrap_or_else(Instant::now);
    let secs = last.duration_since(t0).as_secs_f64();
    let drained = agent.wait_drained(Duration::from_secs(30));
    let st = agent.stats()?;
    agent.proc.stop(Duration::from_secs(15));
    check_exact(&rx.tally, n, "socket")?;
    anyhow::ensure!(accepted == n, "socket: the agent answered accepted {accepted} of {n}");
    let cpu = st.cpu_s - before.cpu_s;
    Ok(json!({
        "events": n,
        "bytes": bytes,
        "connections": k,
        "seconds": secs,
        "seconds_until_all_answers": answered,
        "events_per_s": n as f64 / secs,
        "mib_per_s": bytes as f64 / secs / 1048576.0,
        "cpu_s": cpu,
        "cpu_s_per_million": cpu / (n as f64 / 1e6),
        "peak_rss_mib": mib(st.vm_hwm_kib),
        "requests": rx.tally.requests.load(Ordering::Relaxed),
        "drained": drained,
        "loadavg": loadavg(),
    }))
}

fn run_latency(o: &Options, secs: u64) -> anyhow::Result<Value> {
    let w = Workdir::new("latency", o.keep)?;
    let input = w.path.join("events.jsonl");
    let warmup = 20u64;
    let total: u64 = warmup + o.rates.iter().map(|r| r * secs).sum::<u64>();
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&input)?;
    let rx = start_receiver(o, total)?;
    let mut agent = spawn_agent(&AgentSetup {
        exe: agent_exe(o),
        dir: &w.path,
        receiver: rx.addr,
        file: Some(&input),
        socket: None,
        extra: o.agent_config_extra.as_deref(),
        batch: "ndjson",
    })?;
    agent.wait_healthy(Duration::from_secs(30))?;
    // Warm-up (connection to the receiver, first commit), not measured.
    paced_append(&mut f, 0..warmup, 100)?;
    if !rx.wait_for(warmup, Duration::from_secs(30), || agent.proc.alive()) {
        bail!("latency: warm-up events did not arrive:\n{}", agent.proc.log_tail());
    }
    let mut out = Vec::new();
    let mut id = warmup;
    for &rate in &o.rates {
        let range = id..id + rate * secs;
        id = range.end;
        out.push(steady_rate(&rx, &mut agent.proc, Some(agent.status), &mut f, range, rate)?);
    }
    let st = agent.stats()?;
    agent.proc.stop(Duration::from_secs(15));
    check_exact(&rx.tally, total, "latency")?;
    Ok(json!({"seconds_per_rate": secs, "rates": out, "peak_rss_mib": mib(st.vm_hwm_kib)}))
}

fn run_idle(o: &Options, secs: u64) -> anyhow::Result<Value> {
    let w = Workdir::new("idle", o.keep)?;
    let input = w.path.join("events.jsonl");
    std::fs::File::create(&input)?;
    let rx = start_receiver(o, 0)?;
    let mut agent = spawn_agent(&AgentSetup {
        exe: agent_exe(o),
        dir: &w.path,
        receiver: rx.addr,
        file: Some(&input),
        socket: Some(&w.path.join("siem.sock")),
        extra: o.agent_config_extra.as_deref(),
        batch: "ndjson",
    })?;
    agent.wait_healthy(Duration::from_secs(30))?;
    // Let start-up work (opening the file, the first checkpoint) finish.
    std::thread::sleep(Duration::from_secs(1));
    let before = Snapshot::begin(agent.proc.pid, Some(agent.status), &rx.tally)?;
    std::thread::sleep(Duration::from_secs(secs));
    let after = Snapshot::end(agent.proc.pid, Some(agent.status), &rx.tally)?;
    agent.proc.stop(Duration::from_secs(15));
    let cpu = after.st.cpu_s - before.st.cpu_s;
    let v = json!({
        "seconds": secs,
        "cpu_s": cpu,
        "rss_mib": mib(after.st.vm_rss_kib),
        "peak_rss_mib": mib(after.st.vm_hwm_kib),
        "requests": after.requests - before.requests,
        "loadavg": loadavg(),
    });
    Ok(merge(v, before.cost(&after)))
}

/// The rtt phase: the agent against a receiver `rtt` away, with `n` events pre-written, for
/// `batch` (`none`: one event per request, the product default; `ndjson`: batched). Measures
/// until every event arrived or `cap` passed, whichever is first; then, if events are left, the
/// receiver stops delaying so they arrive quickly and the exactness check covers all `n`.
fn run_rtt(o: &Options, rtt: Duration, batch: &str, n: u64, cap: Duration) -> anyhow::Result<Value> {
    let rx = Receiver::start_with_rtt("127.0.0.1:0".parse()?, n, rtt)?;
    let (_w, _, t0, mut agent) = agent_on_events_file(o, &format!("rtt-{batch}"), n, rx.addr, batch)?;
    let mut start = Snapshot::take(agent.proc.pid, None, &rx.tally)?;
    start.at = t0;
    let all = rx.wait_for(n, cap, || agent.proc.alive());
    if !all && !agent.proc.alive() {
        bail!("rtt ({batch}): the agent exited:\n{}", agent.proc.log_tail());
    }
    let mut end = Snapshot::take(agent.proc.pid, None, &rx.tally)?;
    if all {
        end.at = rx.tally.last_arrival().unwrap_or(end.at);
    }
    let max_open = rx.tally.max_open_requests.load(Ordering::Relaxed);
    let secs = end.at.duration_since(t0).as_secs_f64();
    let first = rx.tally.first_ns.load(Ordering::Relaxed);
    let first_arrival_s = (first != 0).then(|| {
        (rx.tally.base + Duration::from_nanos(first - 1))
            .saturating_duration_since(t0)
            .as_secs_f64()
    });
    if !all {
        rx.set_rtt(Duration::ZERO);
        if !rx.wait_for(n, throughput_deadline(n), || agent.proc.alive()) {
            bail!(
                "rtt ({batch}): only {} of {n} events arrived, even without the delay:\n{}",
                rx.tally.count(),
                agent.proc.log_tail()
            );
        }
    }
    agent.proc.stop(Duration::from_secs(15));
    check_exact(&rx.tally, n, &format!("rtt ({batch})"))?;
    let arrived = end.events;
    let requests = end.requests - start.requests;
    let v = json!({
        "batch": batch,
        "rtt_ms": rtt.as_secs_f64() * 1000.0,
        "events": n,
        "arrived": arrived,
        "capped": !all,
        "seconds": secs,
        "events_per_s": arrived as f64 / secs,
        "first_arrival_s": first_arrival_s,
        "events_per_request": arrived as f64 / requests.max(1) as f64,
        "cpu_s": end.st.cpu_s - start.st.cpu_s,
        "reordered": rx.tally.reordered.load(Ordering::Relaxed),
        "loadavg": loadavg(),
    });
    let mut r = start.receiver(&end, &rx.tally, arrived);
    r["max_concurrent_requests"] = json!(max_open);
    Ok(merge(v, r))
}

/// `sendauth-siem-bench`. Prints a table; writes JSON with `--json-out`.
pub fn run(o: &Options) -> anyhow::Result<Value> {
    let o = &Options {
        agent: Some(crate::agent::locate(o.agent.as_deref())?),
        ..o.clone()
    };
    let n = o.events.unwrap_or(if o.quick { 20_000 } else { 1_000_000 });
    anyhow::ensure!(n > 0, "--events must be at least 1");
    let lat_secs = o.latency_seconds.unwrap_or(if o.quick { 2 } else { 10 });
    let idle_secs = o.idle_seconds.unwrap_or(if o.quick { 5 } else { 60 });
    let want = |p: &str| o.phases.iter().any(|x| x == p);
    for p in &o.phases {
        anyhow::ensure!(
            ["file", "socket", "latency", "idle", "rtt"].contains(&p.as_str()),
            "--phases: unknown phase {p:?}; use file, socket, latency, idle, rtt"
        );
    }
    let rtt_generic = o.rtt_generic_events.unwrap_or(if o.quick { 2_000 } else { 30_000 });
    let rtt_batched = o.rtt_batched_events.unwrap_or(if o.quick { 20_000 } else { 1_000_000 });
    let rtt_cap = Duration::from_secs(o.rtt_seconds.unwrap_or(if o.quick { 5 } else { 30 }));
    let phase_rtt = o.rtt.unwrap_or(Duration::from_millis(50));
    let m = machine();
    eprintln!(
        "sendauth-siem-bench: {} events, {} CPUs ({}), durable queue, generic ndjson",
        n,
        m["nproc"],
        m["cpu_model"].as_str().unwrap_or("")
    );
    if cfg!(debug_assertions) {
        eprintln!("note: this is a debug build; its figures say nothing about a release build (cargo build --release)");
    }
    let mut report = json!({
        "version": env!("CARGO_PKG_VERSION"),
        "debug_build": cfg!(debug_assertions),
        "machine": m,
        "events": n,
        "quick": o.quick,
        "rtt_ms": o.rtt.unwrap_or_default().as_secs_f64() * 1000.0,
    });
    if want("file") {
        eprintln!("- file -> receiver, {n} events ...");
        report["file"] = run_file(o, n)?;
    }
    if want("socket") {
        eprintln!("- socket -> receiver, {n} events over {} connections ...", o.socket_connections);
        report["socket"] = run_socket(o, n)?;
    }
    if want("latency") {
        eprintln!("- latency at {:?} events/s, {lat_secs} s each ...", o.rates);
        report["latency"] = run_latency(o, lat_secs)?;
    }
    if want("idle") {
        eprintln!("- idle for {idle_secs} s ...");
        report["idle"] = run_idle(o, idle_secs)?;
    }
    if want("rtt") {
        eprintln!(
            "- rtt: receiver {} ms away, generic one event per request ({rtt_generic} events) and ndjson batches ({rtt_batched} events), {} s at most each ...",
            phase_rtt.as_millis(),
            rtt_cap.as_secs()
        );
        let generic = run_rtt(o, phase_rtt, "none", rtt_generic, rtt_cap)?;
        let batched = run_rtt(o, phase_rtt, "ndjson", rtt_batched, rtt_cap)?;
        report["rtt"] = json!({
            "rtt_ms": phase_rtt.as_secs_f64() * 1000.0,
            "seconds_cap": rtt_cap.as_secs(),
            "generic": generic,
            "batched": batched,
        });
    }
    print_table(&report);
    if let Some(p) = &o.json_out {
        std::fs::write(p, serde_json::to_string_pretty(&report)? + "\n").with_context(|| format!("cannot write {}", p.display()))?;
        eprintln!("results written to {}", p.display());
    }
    Ok(report)
}
