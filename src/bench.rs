//! `sendauth-siem bench`: measures the real agent, run as a child process, against an
//! in-process counting receiver on 127.0.0.1.
//!
//! Phases (each with a fresh agent, queue and receiver):
//! 1. **file**: N events are written to a file, then the agent is started on it; throughput is
//!    N over the time from spawning the agent to the last event's arrival at the receiver;
//! 2. **socket**: the agent is started and healthy, then `--socket-connections` writers send N
//!    events over the Unix socket (each reads its `{"accepted":..}` answer);
//! 3. **latency** (steady rates): events are appended to the file at steady rates; the latency of
//!    an event is from the moment its `write()` returned to its arrival at the receiver; per rate
//!    also the agent's CPU %, wake-ups/s and queue fdatasyncs/s, and the receiver's requests,
//!    connections and most requests open at once;
//! 4. **idle**: CPU, wake-ups, fdatasyncs and memory of an agent with both sources and nothing
//!    to do;
//! 5. **rtt**: throughput against a receiver `--rtt` away (default 50 ms), one event per request
//!    (`siem.generic.batch: none`, the product default) and batched (`ndjson`), capped in time.
//!
//! CPU (utime + stime) and peak RSS (VmHWM) come from `/proc/<pid>` of the agent. The agent runs
//! with its defaults except: generic platform, `siem.generic.batch: ndjson` (but for the rtt
//! phase's first half), a temp queue, a status listener (for `/metrics`). The
//! receiver counts events without storing them and records each event's arrival time by its
//! `transaction_id` (`tx-<n>-...`), which also detects duplicates, gaps and reordering.
//!
//! Benchmarks print figures; they never fail on a threshold (the exit code only reflects
//! whether the measurement itself worked: every event arrived, exactly once).
//!
//! `bench-receiver` (hidden) exposes the same receiver and measurement for any agent, so
//! `bench/compare-syslog-ng.sh` measures syslog-ng and sendauth-siem the same way.

use std::convert::Infallible;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};

/// The targets (2-core machine, durable queue). Printed beside the figures; never enforced.
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
    #[arg(long, value_parser = parse_rtt)]
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
    /// Extra YAML appended to every generated agent config (e.g. "delivery:\n  linger: 5ms").
    #[arg(long, hide = true)]
    pub agent_config_extra: Option<String>,
}

fn parse_rtt(s: &str) -> Result<Duration, String> {
    crate::config::parse_duration(s)
}

// ---------------------------------------------------------------------------------------------
// Events

fn mix(mut x: u64) -> u64 {
    // splitmix64: cheap, deterministic variety.
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

const ORGS: [&str; 4] = [
    "org-5b1d3c7e-2a4f-4e8b-9c6d-1f0e2d3c4b5a",
    "org-0f9e8d7c-6b5a-4c3d-8e2f-1a0b9c8d7e6f",
    "org-7a1b2c3d-4e5f-4a6b-9c7d-8e9f0a1b2c3d",
    "org-c3d4e5f6-a7b8-4c9d-8e0f-1a2b3c4d5e6f",
];
const PLACES: [(&str, &str, &str); 6] = [
    ("San Francisco", "California", "US"),
    ("Austin", "Texas", "US"),
    ("London", "England", "GB"),
    ("Berlin", "Berlin", "DE"),
    ("Paris", "Ile-de-France", "FR"),
    ("Toronto", "Ontario", "CA"),
];
const SERVICES: [&str; 3] = ["payments-api", "admin-console", "vpn-gateway"];
const ACTIONS: [&str; 4] = ["wire_transfer", "login", "password_reset", "api_key_create"];
const DENY_REASONS: [&str; 3] = ["user_denied", "risk_score_exceeded", "unrecognized_device"];

/// Appends event `i` (one of the four SendAuth types in turn, 300-400 bytes) and its `\n`.
/// Its `transaction_id` is `tx-<i>-<hex>`, which the receiver reads back.
pub fn event_line(i: u64, out: &mut Vec<u8>) {
    let h = mix(i);
    let ms = i % 86_400_000;
    let ts = format!(
        "2025-01-28T{:02}:{:02}:{:02}.{:03}Z",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    );
    let h2 = mix(h);
    let tx = format!(
        "tx-{i}-{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        h as u32,
        (h >> 32) as u16,
        (h >> 48) & 0xfff,
        0x8000 | (h2 & 0x3fff),
        h2 >> 16
    );
    let org = ORGS[(h % 4) as usize];
    let subject = format!("user{}@company{}.com", (h >> 8) % 50_000, (h >> 24) % 4);
    let ip = format!("203.0.{}.{}", (h >> 16) % 256, (h >> 40) % 254 + 1);
    let (city, region, country) = PLACES[((h >> 12) % 6) as usize];
    let _ = match i % 4 {
        0 => write!(
            out,
            r#"{{"event_type":"transaction.created","timestamp":"{ts}","transaction_id":"{tx}","org_id":"{org}","requestor":{{"service":"{}","ip_address":"10.20.{}.{}"}},"subject":"{subject}","context":{{"action":"{}","amount":"{}.{:02}","currency":"USD","channel":"web"}}}}"#,
            SERVICES[((h >> 4) % 3) as usize],
            (h >> 20) % 256,
            (h >> 28) % 254 + 1,
            ACTIONS[((h >> 6) % 4) as usize],
            (h >> 10) % 10_000,
            (h >> 36) % 100
        ),
        1 => write!(
            out,
            r#"{{"event_type":"transaction.verified","timestamp":"{ts}","transaction_id":"{tx}","subject":"{subject}","ip_address":"{ip}","location":{{"city":"{city}","region":"{region}","country":"{country}"}},"method":"push","device_id":"dev-{:012x}","org_id":"{org}"}}"#,
            h >> 16
        ),
        2 => write!(
            out,
            r#"{{"event_type":"transaction.denied","timestamp":"{ts}","transaction_id":"{tx}","subject":"{subject}","ip_address":"{ip}","reason":"{}","location":{{"city":"{city}","region":"{region}","country":"{country}"}},"org_id":"{org}"}}"#,
            DENY_REASONS[((h >> 5) % 3) as usize]
        ),
        _ => write!(
            out,
            r#"{{"event_type":"transaction.expired","timestamp":"{ts}","transaction_id":"{tx}","subject":"{subject}","requestor":{{"service":"{}"}},"expires_after_seconds":{},"notified_via":"push","org_id":"{org}"}}"#,
            SERVICES[((h >> 4) % 3) as usize],
            60 * ((h >> 9) % 5 + 1)
        ),
    };
    out.push(b'\n');
}

/// Events `range` as one buffer of lines.
pub fn events_buffer(range: std::ops::Range<u64>) -> Vec<u8> {
    let mut out = Vec::with_capacity((range.end - range.start) as usize * 360);
    for i in range {
        event_line(i, &mut out);
    }
    out
}

/// Writes events `0..n` to `path` (truncating it). Returns the bytes written.
pub fn write_events_file(path: &Path, n: u64) -> anyhow::Result<u64> {
    let mut f = std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut total = 0u64;
    let step = 10_000;
    let mut i = 0;
    while i < n {
        let buf = events_buffer(i..(i + step).min(n));
        f.write_all(&buf)?;
        total += buf.len() as u64;
        i += step;
    }
    f.sync_all()?;
    Ok(total)
}

// ---------------------------------------------------------------------------------------------
// The counting receiver

const ID_MARK: &[u8] = b"\"transaction_id\":\"tx-";

/// What the receiver saw. Arrival times are nanoseconds since `base`, plus one (0 = not yet).
pub struct Tally {
    pub base: Instant,
    pub events: AtomicU64,
    pub bytes: AtomicU64,
    pub requests: AtomicU64,
    pub duplicates: AtomicU64,
    /// Events whose id is below one already seen (meaningful for a single ordered stream).
    pub reordered: AtomicU64,
    /// Lines without a readable `tx-<n>` id, or with an id beyond the capacity.
    pub unknown: AtomicU64,
    pub first_ns: AtomicU64,
    pub last_ns: AtomicU64,
    /// TCP connections accepted.
    pub connections: AtomicU64,
    /// Requests received and not yet answered (with `--rtt`, answers wait that long).
    pub open_requests: AtomicU64,
    /// The most requests open at once since the start or the last [`Tally::reset_max_open`].
    pub max_open_requests: AtomicU64,
    max_id: AtomicU64,
    arrival: Vec<AtomicU64>,
}

impl Tally {
    fn new(capacity: u64) -> Tally {
        Tally {
            base: Instant::now(),
            events: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            reordered: AtomicU64::new(0),
            unknown: AtomicU64::new(0),
            first_ns: AtomicU64::new(0),
            last_ns: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            open_requests: AtomicU64::new(0),
            max_open_requests: AtomicU64::new(0),
            max_id: AtomicU64::new(0),
            arrival: (0..capacity).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn ns(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.base).as_nanos() as u64
    }

    /// Counts one NDJSON body that arrived at `now`.
    fn record(&self, body: &[u8], now: Instant) {
        let t = self.ns(now) + 1;
        let mut n = 0u64;
        let finder = memchr::memmem::Finder::new(ID_MARK);
        for line in body.split(|b| *b == b'\n') {
            if line.iter().all(|b| b.is_ascii_whitespace()) {
                continue;
            }
            n += 1;
            let id = finder.find(line).and_then(|p| {
                let digits = &line[p + ID_MARK.len()..];
                let end = digits.iter().position(|b| !b.is_ascii_digit()).unwrap_or(digits.len());
                std::str::from_utf8(&digits[..end]).ok()?.parse::<u64>().ok()
            });
            match id.and_then(|id| self.arrival.get(id as usize).map(|slot| (id, slot))) {
                Some((id, slot)) => {
                    if slot.compare_exchange(0, t, Ordering::Relaxed, Ordering::Relaxed).is_err() {
                        self.duplicates.fetch_add(1, Ordering::Relaxed);
                    }
                    let prev = self.max_id.fetch_max(id + 1, Ordering::Relaxed);
                    if id + 1 < prev {
                        self.reordered.fetch_add(1, Ordering::Relaxed);
                    }
                }
                None => {
                    self.unknown.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        let _ = self.first_ns.compare_exchange(0, t, Ordering::Relaxed, Ordering::Relaxed);
        self.last_ns.fetch_max(t, Ordering::Relaxed);
        self.bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.events.fetch_add(n, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.events.load(Ordering::Relaxed)
    }

    /// Starts a new window for `max_open_requests` (from the requests open now).
    pub fn reset_max_open(&self) {
        self.max_open_requests
            .store(self.open_requests.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    fn open_request(self: &Arc<Self>) -> OpenRequest {
        let open = self.open_requests.fetch_add(1, Ordering::Relaxed) + 1;
        self.max_open_requests.fetch_max(open, Ordering::Relaxed);
        OpenRequest(self.clone())
    }

    /// When event `id` arrived, if it did.
    pub fn arrived(&self, id: u64) -> Option<Instant> {
        let v = self.arrival.get(id as usize)?.load(Ordering::Relaxed);
        (v != 0).then(|| self.base + Duration::from_nanos(v - 1))
    }

    pub fn last_arrival(&self) -> Option<Instant> {
        let v = self.last_ns.load(Ordering::Relaxed);
        (v != 0).then(|| self.base + Duration::from_nanos(v - 1))
    }

    /// Events of `range` that have not arrived.
    pub fn missing(&self, range: std::ops::Range<u64>) -> u64 {
        range.filter(|i| self.arrived(*i).is_none()).count() as u64
    }
}

/// A request being handled: counted in `open_requests` until dropped (answered or cut off).
struct OpenRequest(Arc<Tally>);

impl Drop for OpenRequest {
    fn drop(&mut self) {
        self.0.open_requests.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An HTTP/1 server on 127.0.0.1 that answers 200 to every POST and counts its NDJSON lines.
///
/// With a round-trip delay (`--rtt`), it counts a body when it has arrived, then answers after
/// the delay; it also serves a new connection only after the delay, as a TCP handshake with a
/// distant peer costs one round trip. Delays are per request (tokio timers), so any number of
/// requests can be open at once, as with a real distant SIEM.
pub struct Receiver {
    pub addr: SocketAddr,
    pub tally: Arc<Tally>,
    rtt_ns: Arc<AtomicU64>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Receiver {
    /// Listens on `listen` (port 0: any free port); ids `0..capacity` get arrival times.
    pub fn start(listen: SocketAddr, capacity: u64) -> anyhow::Result<Receiver> {
        Receiver::start_with_rtt(listen, capacity, Duration::ZERO)
    }

    /// As [`Receiver::start`], answering each request `rtt` after its body arrived.
    pub fn start_with_rtt(listen: SocketAddr, capacity: u64, rtt: Duration) -> anyhow::Result<Receiver> {
        anyhow::ensure!(
            listen.ip().is_loopback(),
            "the receiver only listens on a loopback address, not {listen}"
        );
        let std_listener = std::net::TcpListener::bind(listen).with_context(|| format!("receiver: cannot listen on {listen}"))?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let tally = Arc::new(Tally::new(capacity));
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let t = tally.clone();
        let rtt_ns = Arc::new(AtomicU64::new(rtt.as_nanos() as u64));
        let delay = rtt_ns.clone();
        let thread = std::thread::Builder::new()
            .name("bench-receiver".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => {
                        eprintln!("receiver: cannot start a runtime: {e}");
                        return;
                    }
                };
                rt.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(std_listener) else {
                        return;
                    };
                    let accept = async {
                        while let Ok((stream, _)) = listener.accept().await {
                            let _ = stream.set_nodelay(true);
                            t.connections.fetch_add(1, Ordering::Relaxed);
                            let t = t.clone();
                            let delay = delay.clone();
                            tokio::spawn(async move {
                                let handshake = Duration::from_nanos(delay.load(Ordering::Relaxed));
                                if !handshake.is_zero() {
                                    tokio::time::sleep(handshake).await;
                                }
                                let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                                    let t = t.clone();
                                    let delay = delay.clone();
                                    async move {
                                        let _open = t.open_request();
                                        let body = req.into_body().collect().await.map(|c| c.to_bytes()).unwrap_or_default();
                                        t.record(&body, Instant::now());
                                        let rtt = Duration::from_nanos(delay.load(Ordering::Relaxed));
                                        if !rtt.is_zero() {
                                            tokio::time::sleep(rtt).await;
                                        }
                                        Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::new())))
                                    }
                                });
                                let io = hyper_util::rt::TokioIo::new(stream);
                                let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, svc).await;
                            });
                        }
                    };
                    tokio::select! {
                        _ = accept => {}
                        _ = stop_rx => {}
                    }
                });
            })
            .context("cannot start the receiver thread")?;
        Ok(Receiver {
            addr,
            tally,
            rtt_ns,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// Changes the round-trip delay for requests and connections from now on.
    pub fn set_rtt(&self, rtt: Duration) {
        self.rtt_ns.store(rtt.as_nanos() as u64, Ordering::Relaxed);
    }

    /// Waits until `n` events arrived; false if `timeout` passed (or `alive` said the agent died).
    pub fn wait_for(&self, n: u64, timeout: Duration, mut alive: impl FnMut() -> bool) -> bool {
        let end = Instant::now() + timeout;
        loop {
            if self.tally.count() >= n {
                return true;
            }
            if Instant::now() >= end || !alive() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Process figures from /proc

/// A snapshot of a process's CPU time and memory.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcStats {
    /// utime + stime, seconds.
    pub cpu_s: f64,
    pub vm_hwm_kib: u64,
    pub vm_rss_kib: u64,
    /// Context switches summed over the process's threads (a proxy for wakeups).
    pub ctx_switches: u64,
}

pub fn proc_stats(pid: u32) -> anyhow::Result<ProcStats> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("cannot read /proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) start at field 3 (state).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // utime is field 14, stime field 15: indexes 11 and 12 counting from field 3.
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let cpu_s = (ticks(11) + ticks(12)) as f64 / hz;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    let mut ctx = 0;
    if let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in rd.flatten() {
            let s = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
            for l in s.lines() {
                if let Some(v) = l
                    .strip_prefix("voluntary_ctxt_switches:")
                    .or_else(|| l.strip_prefix("nonvoluntary_ctxt_switches:"))
                {
                    ctx += v.trim().parse::<u64>().unwrap_or(0);
                }
            }
        }
    }
    Ok(ProcStats {
        cpu_s,
        vm_hwm_kib: kib("VmHWM:"),
        vm_rss_kib: kib("VmRSS:"),
        ctx_switches: ctx,
    })
}

/// CPU seconds per thread name of a process (digits stripped: `sled-io-3` counts as `sled-io`).
pub fn thread_cpu(pid: u32) -> std::collections::BTreeMap<String, f64> {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let mut out = std::collections::BTreeMap::new();
    if let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in rd.flatten() {
            let Ok(stat) = std::fs::read_to_string(t.path().join("stat")) else {
                continue;
            };
            let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
                continue;
            };
            let name = stat[open + 1..close]
                .trim_end_matches(|c: char| c.is_ascii_digit() || c == '-')
                .to_string();
            let f: Vec<&str> = stat[close + 1..].split_whitespace().collect();
            let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            *out.entry(name).or_insert(0.0) += (ticks(11) + ticks(12)) as f64 / hz;
        }
    }
    out
}

fn thread_cpu_delta(before: &std::collections::BTreeMap<String, f64>, after: &std::collections::BTreeMap<String, f64>, secs: f64) -> Value {
    let mut v = serde_json::Map::new();
    for (k, a) in after {
        let d = a - before.get(k).copied().unwrap_or(0.0);
        if d > 0.0 {
            v.insert(k.clone(), json!((d / secs * 1000.0).round() / 10.0));
        }
    }
    Value::Object(v)
}

/// The 1-minute load average, to spot runs disturbed by other work on the machine.
pub fn loadavg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(f64::NAN)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Machine description for the report.
pub fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .and_then(|r| r.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let nproc = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    json!({"nproc": nproc, "cpu_model": model, "kernel": kernel})
}

// ---------------------------------------------------------------------------------------------
// The agent under test

/// A child process under test, stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Proc {
    pub child: Child,
    pub pid: u32,
    pub log: PathBuf,
}

impl Proc {
    pub fn spawn(mut cmd: Command, log: &Path) -> anyhow::Result<Proc> {
        let logf = std::fs::File::create(log)?;
        cmd.stdin(Stdio::null()).stdout(logf.try_clone()?).stderr(logf);
        let child = cmd.spawn().with_context(|| format!("cannot start {cmd:?}"))?;
        Ok(Proc {
            pid: child.id(),
            child,
            log: log.to_path_buf(),
        })
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The last lines of its log, for error messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// SIGTERM, then SIGKILL after `grace`.
    pub fn stop(&mut self, grace: Duration) {
        if !self.alive() {
            return;
        }
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(self.pid as i32, libc::SIGTERM) };
        let end = Instant::now() + grace;
        while Instant::now() < end {
            if !self.alive() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(10));
    }
}

struct AgentSetup<'a> {
    dir: &'a Path,
    receiver: SocketAddr,
    file: Option<&'a Path>,
    socket: Option<&'a Path>,
    extra: Option<&'a str>,
    /// `siem.generic.batch`: `ndjson` in every phase but the generic half of `rtt` (`none`, the
    /// product default: one event per request).
    batch: &'a str,
}

struct Agent {
    proc: Proc,
    status: SocketAddr,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn spawn_agent(s: &AgentSetup) -> anyhow::Result<Agent> {
    let status: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
    let mut y = format!(
        "siem:\n  url: http://{}/ingest\n  platform: generic\n  generic:\n    batch: {}\nsources:\n",
        s.receiver, s.batch
    );
    if let Some(f) = s.file {
        y.push_str(&format!("  file:\n    path: {}\n    start_at: beginning\n", f.display()));
    }
    if let Some(p) = s.socket {
        y.push_str(&format!("  socket:\n    path: {}\n", p.display()));
    }
    y.push_str(&format!(
        "queue:\n  path: {}\n  max_bytes: 8GiB\nstatus:\n  listen: {status}\nlog:\n  level: warn\n",
        s.dir.join("queue").display()
    ));
    if let Some(x) = s.extra {
        y.push_str(x);
        y.push('\n');
    }
    // As deployed (/etc/sendauth-siem vs /var/log/sendauth): the config watcher watches its
    // directory and would wake for every line appended to an events file beside it.
    let etc = s.dir.join("etc");
    std::fs::create_dir_all(&etc)?;
    let config = etc.join("config.yaml");
    std::fs::write(&config, y)?;
    let exe = std::env::current_exe().context("cannot find the sendauth-siem binary")?;
    let mut cmd = Command::new(exe);
    cmd.arg("run").arg("--config").arg(&config).env_remove("RUST_LOG");
    let proc = Proc::spawn(cmd, &s.dir.join("agent.log"))?;
    Ok(Agent { proc, status })
}

/// One HTTP/1.0 GET on the agent's status listener; the body, if the answer was 200.
fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status_line = head.lines().next().unwrap_or("");
    (status_line.split_whitespace().nth(1) == Some("200")).then(|| body.to_string())
}

impl Agent {
    fn wait_healthy(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if !self.proc.alive() {
                bail!("the agent exited during start-up:\n{}", self.proc.log_tail());
            }
            if http_get(self.status, "/health").is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        bail!("the agent did not answer /health within {timeout:?}:\n{}", self.proc.log_tail())
    }

    /// Waits until the queue is empty (every delivered event acknowledged).
    fn wait_drained(&mut self, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            let pending = http_get(self.status, "/status")
                .and_then(|b| serde_json::from_str::<Value>(&b).ok())
                .and_then(|v| v["queue"]["pending"].as_u64());
            if pending == Some(0) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    }

    fn stats(&self) -> anyhow::Result<ProcStats> {
        proc_stats(self.proc.pid)
    }
}

/// `sendauth_siem_queue_fdatasyncs_total` from the agent's `/metrics`, if it has the counter.
fn scrape_fdatasyncs(status: SocketAddr) -> Option<u64> {
    metric_value(&http_get(status, "/metrics")?, "sendauth_siem_queue_fdatasyncs_total")
}

/// The value of an unlabelled metric in Prometheus text.
fn metric_value(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .filter_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .find_map(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
}

/// What is counted at the start and end of a measured window: the agent's CPU and context
/// switches (`/proc`), its queue's fdatasyncs (`/metrics`, when it has a status listener) and
/// the receiver's requests and connections. Each figure is divided by its own window, read at
/// the moment it was taken.
struct Snapshot {
    at: Instant,
    st: ProcStats,
    threads: std::collections::BTreeMap<String, f64>,
    syncs: Option<(Instant, u64)>,
    requests: u64,
    connections: u64,
    events: u64,
}

impl Snapshot {
    /// At the start of a window: the scrape first, so its own wake-ups fall outside the window.
    fn begin(pid: u32, status: Option<SocketAddr>, tally: &Tally) -> anyhow::Result<Snapshot> {
        let syncs = status.and_then(|s| Some((Instant::now(), scrape_fdatasyncs(s)?)));
        tally.reset_max_open();
        Snapshot::take(pid, syncs, tally)
    }

    /// At the end of a window: the scrape last, for the same reason.
    fn end(pid: u32, status: Option<SocketAddr>, tally: &Tally) -> anyhow::Result<Snapshot> {
        let mut s = Snapshot::take(pid, None, tally)?;
        s.syncs = status.and_then(|st| Some((Instant::now(), scrape_fdatasyncs(st)?)));
        Ok(s)
    }

    fn take(pid: u32, syncs: Option<(Instant, u64)>, tally: &Tally) -> anyhow::Result<Snapshot> {
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
    fn cost(&self, later: &Snapshot) -> Value {
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
    fn receiver(&self, later: &Snapshot, tally: &Tally, events: u64) -> Value {
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
fn merge(mut a: Value, b: Value) -> Value {
    if let (Some(a), Value::Object(b)) = (a.as_object_mut(), b) {
        a.extend(b);
    }
    a
}

/// One steady rate: appends `range` to `file` at `rate` events/s and waits for the events at
/// the receiver. The agent's cost (CPU, wake-ups, fdatasyncs) is taken over the appending; the
/// receiver's counts from the first append to the last arrival; latency is append → arrival.
fn steady_rate(
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

// ---------------------------------------------------------------------------------------------
// Phases

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

/// The phase's receiver on a free loopback port, with `--rtt` (default none).
fn start_receiver(o: &Options, capacity: u64) -> anyhow::Result<Receiver> {
    Receiver::start_with_rtt("127.0.0.1:0".parse()?, capacity, o.rtt.unwrap_or_default())
}

fn throughput_deadline(n: u64) -> Duration {
    Duration::from_secs(60 + n / 10_000)
}

fn check_exact(tally: &Tally, n: u64, what: &str) -> anyhow::Result<()> {
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

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Appends events `range` to `file` at `rate` per second; returns when each write returned.
fn paced_append(file: &mut std::fs::File, range: std::ops::Range<u64>, rate: u64) -> anyhow::Result<Vec<Instant>> {
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

fn run_latency(o: &Options, secs: u64) -> anyhow::Result<Value> {
    let w = Workdir::new("latency", o.keep)?;
    let input = w.path.join("events.jsonl");
    let warmup = 20u64;
    let total: u64 = warmup + o.rates.iter().map(|r| r * secs).sum::<u64>();
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&input)?;
    let rx = start_receiver(o, total)?;
    let mut agent = spawn_agent(&AgentSetup {
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

// ---------------------------------------------------------------------------------------------
// Entry points

/// `sendauth-siem bench`. Prints a table; writes JSON with `--json-out`.
pub fn run(o: &Options) -> anyhow::Result<Value> {
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
        "sendauth-siem bench: {} events, {} CPUs ({}), durable queue, generic ndjson",
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

fn verdict(ok: bool) -> &'static str {
    if ok {
        "meets"
    } else {
        "MISSES"
    }
}

fn print_table(r: &Value) {
    use targets::*;
    let f = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
    let mut rows: Vec<(String, String, String)> = Vec::new();
    if let Some(x) = r.get("file") {
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
    if let Some(x) = r.get("socket") {
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
    if let Some(x) = r.get("latency") {
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
    if let Some(x) = r.get("idle") {
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
    if let Some(x) = r.get("rtt") {
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
    let w0 = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    let w1 = rows.iter().map(|r| r.1.len()).max().unwrap_or(0);
    println!();
    println!("{:<w0$}  {:<w1$}  target", "measure", "result");
    println!("{}", "-".repeat(w0 + w1 + 30));
    for (a, b, c) in rows {
        println!("{a:<w0$}  {b:<w1$}  {c}");
    }
}

/// Options of `bench-receiver`, the receiver as a stand-alone measuring tool.
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
    /// Round-trip delay of the receiver (see `bench --rtt`).
    #[arg(long, value_parser = parse_rtt, default_value = "0ms")]
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

/// `sendauth-siem bench-receiver ... -- CMD ARGS`: measures any agent the same way.
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

/// `bench-receiver --steady-file F`: the steady-rate measurement of `bench`'s latency phase,
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

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

/// A per-second figure that may be missing (an agent without the counter): `n/a`.
fn per_s(v: &Value) -> String {
    v.as_f64().map_or_else(|| "n/a".to_string(), |x| format!("{x:.1}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_events_are_valid_realistic_and_cover_all_types() {
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..400 {
            let mut b = Vec::new();
            event_line(i, &mut b);
            let line = &b[..b.len() - 1];
            assert!((300..=400).contains(&line.len()), "event {i} is {} bytes", line.len());
            crate::event::validate(line, 1 << 20).unwrap_or_else(|e| panic!("event {i}: {e}"));
            let v: Value = serde_json::from_slice(line).unwrap();
            seen.insert(v["event_type"].as_str().unwrap().to_string());
            assert!(v["transaction_id"].as_str().unwrap().starts_with(&format!("tx-{i}-")));
        }
        assert_eq!(seen.len(), 4);
    }

    #[test]
    fn tally_counts_ids_duplicates_and_reordering() {
        let t = Tally::new(10);
        let body = [events_buffer(0..3), events_buffer(1..2), events_buffer(0..1)].concat();
        t.record(&body, Instant::now());
        t.record(b"{\"no\":\"id\"}\n", Instant::now());
        assert_eq!(t.count(), 6);
        assert_eq!(t.duplicates.load(Ordering::Relaxed), 2);
        assert_eq!(t.reordered.load(Ordering::Relaxed), 2);
        assert_eq!(t.unknown.load(Ordering::Relaxed), 1);
        assert_eq!(t.missing(0..4), 1);
    }

    #[test]
    fn metric_value_reads_an_unlabelled_counter() {
        let text = "# HELP sendauth_siem_queue_fdatasyncs_total x\n# TYPE sendauth_siem_queue_fdatasyncs_total counter\n\
                    sendauth_siem_queue_fdatasyncs_total_other 9\nsendauth_siem_queue_fdatasyncs_total 42\n";
        assert_eq!(metric_value(text, "sendauth_siem_queue_fdatasyncs_total"), Some(42));
        assert_eq!(metric_value(text, "sendauth_siem_missing"), None);
    }

    /// Three requests on three connections, all sent before any answer is read: each answer
    /// comes no sooner than the delay, and the receiver saw three connections, three requests
    /// open at once and three events. (Assumes the three local writes happen within 500 ms.)
    #[test]
    fn receiver_delays_answers_and_counts_connections_and_open_requests() {
        let rtt = Duration::from_millis(500);
        let rx = Receiver::start_with_rtt("127.0.0.1:0".parse().unwrap(), 3, rtt).unwrap();
        let t0 = Instant::now();
        let mut conns: Vec<std::net::TcpStream> = (0..3u64)
            .map(|i| {
                let mut s = std::net::TcpStream::connect(rx.addr).unwrap();
                let body = events_buffer(i..i + 1);
                write!(
                    s,
                    "POST /ingest HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                )
                .unwrap();
                s.write_all(&body).unwrap();
                s
            })
            .collect();
        for s in &mut conns {
            let mut answer = String::new();
            s.read_to_string(&mut answer).unwrap();
            assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
        }
        assert!(t0.elapsed() >= rtt, "answered after {:?}", t0.elapsed());
        let t = &rx.tally;
        assert_eq!(t.connections.load(Ordering::Relaxed), 3);
        assert_eq!(t.requests.load(Ordering::Relaxed), 3);
        assert_eq!(t.max_open_requests.load(Ordering::Relaxed), 3);
        assert_eq!(t.missing(0..3), 0);
        t.reset_max_open();
        assert_eq!(t.max_open_requests.load(Ordering::Relaxed), t.open_requests.load(Ordering::Relaxed));
    }

    #[test]
    fn proc_stats_reads_this_process() {
        let s = proc_stats(std::process::id()).unwrap();
        assert!(s.vm_hwm_kib > 0 && s.vm_rss_kib > 0);
    }
}
