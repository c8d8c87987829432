//! Crash campaign (docs/RELIABILITY.md): SIGKILL the real agent at random moments while the auth
//! side appends to the file and writes to the socket at a steady rate; restart it each time;
//! count every event at the receiver.
//!
//! Promise checked (ARCHITECTURE.md invariants 1-4): nothing the file holds and nothing the agent
//! acknowledged on the socket is lost; a crash resends at most the requests that may be in
//! flight at that moment (one batch of `max_batch_events` with `delivery.max_in_flight: 1`,
//! which also keeps strict order), and never into Elasticsearch.
//!
//! `CAMPAIGN=long` (or `CAMPAIGN_KILLS=N`) for the long run; see scripts/campaigns.sh.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::campaign::*;
use common::*;
use rand::{Rng, SeedableRng};
use sendauth_siem_emulators::{Emulator, EmulatorConfig, Fault, Kind};

/// Events per request: the bound on what one crash may resend.
const BATCH: usize = 50;
/// Socket event ids start here (file events are 0..).
const SOCKET_BASE: usize = 50_000_000;

struct Load {
    stop: Arc<AtomicBool>,
    file_written: Arc<AtomicUsize>,
    file_thread: std::thread::JoinHandle<()>,
    socket_task: tokio::task::JoinHandle<SocketLedger>,
}

#[derive(Default, Debug)]
struct SocketLedger {
    accepted: Vec<String>,
    maybe: Vec<String>,
    refused_or_unsent: usize,
    connections: usize,
}

/// Starts the auth side: `per_tick` file lines every `tick`, and one socket connection of
/// `sock_batch` events every `tick` (retrying while the agent is down).
fn start_load(env: &TestEnv, tick: Duration, per_tick: usize, sock_batch: usize) -> Load {
    let stop = Arc::new(AtomicBool::new(false));
    let file_written = Arc::new(AtomicUsize::new(0));
    let file_thread = {
        let (stop, written, path) = (stop.clone(), file_written.clone(), env.events.clone());
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                append_to(&path, &(i..i + per_tick).map(event).collect::<Vec<_>>());
                i += per_tick;
                written.store(i, Ordering::Relaxed);
                std::thread::sleep(tick);
            }
        })
    };
    let socket_task = {
        let (stop, path) = (stop.clone(), env.socket.clone());
        tokio::spawn(async move {
            let mut led = SocketLedger::default();
            let mut next = SOCKET_BASE;
            while !stop.load(Ordering::Relaxed) {
                let ids: Vec<usize> = (next..next + sock_batch).collect();
                let lines: Vec<String> = ids.iter().map(|i| event(*i)).collect();
                let (outcome, _) = socket_try_send(&path, &lines, Duration::from_secs(10)).await;
                match outcome {
                    SockOutcome::NotConnected => {
                        // Agent down: nothing sent; try the same ids again shortly.
                        tokio::time::sleep(tick).await;
                        continue;
                    }
                    SockOutcome::Answered { accepted, .. } => {
                        let n = accepted as usize;
                        led.accepted.extend(ids[..n].iter().map(|i| format!("tx-{i}")));
                        // Lines after the accepted prefix were cut by a shutdown or refused.
                        led.maybe.extend(ids[n..].iter().map(|i| format!("tx-{i}")));
                        led.refused_or_unsent += sock_batch - n;
                    }
                    SockOutcome::NoAnswer => led.maybe.extend(ids.iter().map(|i| format!("tx-{i}"))),
                }
                led.connections += 1;
                next += sock_batch;
                tokio::time::sleep(tick).await;
            }
            led
        })
    };
    Load {
        stop,
        file_written,
        file_thread,
        socket_task,
    }
}

async fn wait_all_arrive(emu: &Emulator, ledger: &Ledger, timeout: Duration) -> bool {
    let must: std::collections::HashSet<String> = ledger.must.iter().cloned().collect();
    wait_until(timeout, || {
        let got: std::collections::HashSet<String> = tx_ids(&emu.events()).into_iter().collect();
        must.iter().all(|m| got.contains(m))
    })
    .await
}

/// Duplicate copies per crash: extra copies received between one kill and the next.
fn dups_per_segment(got: &[String], marks: &[usize]) -> Vec<usize> {
    let mut seen = std::collections::HashSet::new();
    let mut dup_at = Vec::with_capacity(got.len());
    for g in got {
        dup_at.push(!seen.insert(g.as_str()));
    }
    let mut out = Vec::new();
    for (k, start) in marks.iter().enumerate() {
        let end = marks.get(k + 1).copied().unwrap_or(got.len()).min(got.len());
        let start = (*start).min(end);
        out.push(dup_at[start..end].iter().filter(|d| **d).count());
    }
    out
}

/// `max_in_flight`: `None` for the default (`auto`, several requests in flight), or a number.
async fn run_campaign(
    name: &str,
    emu: Emulator,
    siem_extra: &str,
    kills: usize,
    max_in_flight: Option<usize>,
) -> (Figures, Ledger, Vec<String>) {
    let mut fig = Figures::new(name);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed(name));
    let env = TestEnv::new();
    let mut cfg = Cfg::new(&emu.url());
    cfg.siem = siem_extra.to_string();
    if let Some(n) = max_in_flight {
        cfg.delivery.push_str(&format!("  max_in_flight: {n}\n"));
    }
    env.write_config(&cfg);
    // What one crash may resend: the requests that may be unacknowledged at that moment.
    let requests = max_in_flight.unwrap_or(IN_FLIGHT_REQUESTS);
    let mut agent = AgentProc::start(&env).await;
    let load = start_load(&env, Duration::from_millis(10), 10, 5);
    let mut marks = Vec::new();
    let mut restarts = Vec::new();
    let started = Instant::now();
    for _ in 0..kills {
        // A random moment: anywhere from right after start-up (recovery, first requests) to
        // well into steady delivery.
        let wait = Duration::from_millis(rng.gen_range(0..700));
        tokio::time::sleep(wait).await;
        marks.push(emu.event_count());
        agent.kill9();
        let t = Instant::now();
        agent = AgentProc::start(&env).await;
        restarts.push(t.elapsed());
    }
    load.stop.store(true, Ordering::Relaxed);
    load.file_thread.join().unwrap();
    let sock = load.socket_task.await.unwrap();
    let file_written = load.file_written.load(Ordering::Relaxed);
    let mut ledger = Ledger::default();
    ledger.must.extend((0..file_written).map(|i| format!("tx-{i}")));
    ledger.must.extend(sock.accepted.iter().cloned());
    ledger.maybe.extend(sock.maybe.iter().cloned());
    let arrived = wait_all_arrive(&emu, &ledger, DEADLINE * 3).await;
    agent.wait_status(DEADLINE, |s| s["queue"]["pending"] == 0).await;
    let campaign_time = started.elapsed();
    let got = tx_ids(&emu.events());
    let v = ledger.judge(&got);
    let per_crash = dups_per_segment(&got, &marks);
    let (med, max) = median_max(restarts);
    fig.set("kills", kills);
    fig.secs("campaign_seconds", campaign_time);
    fig.set("file_events_written", file_written);
    fig.set("socket_connections", sock.connections);
    fig.set("socket_events_acknowledged", sock.accepted.len());
    fig.set("socket_events_unacknowledged", sock.maybe.len());
    fig.set("socket_unacknowledged_that_arrived", v.maybe_arrived);
    fig.set("events_received", v.received);
    fig.set("events_distinct", v.distinct);
    fig.set("lost", v.lost.len());
    fig.set("duplicate_copies_total", v.duplicate_copies);
    fig.set("duplicates_per_crash_max", per_crash.iter().copied().max().unwrap_or(0));
    fig.set(
        "duplicates_per_crash_mean",
        ((v.duplicate_copies as f64 / kills.max(1) as f64) * 100.0).round() / 100.0,
    );
    fig.set("crashes_with_duplicates", per_crash.iter().filter(|d| **d > 0).count());
    fig.secs("restart_to_healthy_median", med);
    fig.secs("restart_to_healthy_max", max);
    assert!(
        arrived,
        "not everything arrived; lost {} e.g. {:?}\n{}",
        v.lost.len(),
        &v.lost[..v.lost.len().min(5)],
        agent.logs()
    );
    assert!(v.lost.is_empty(), "lost: {:?}", &v.lost[..v.lost.len().min(10)]);
    assert!(
        v.unexpected.is_empty(),
        "events nobody sent: {:?}",
        &v.unexpected[..v.unexpected.len().min(10)]
    );
    // File events are first delivered in file order, socket events in acknowledgement order,
    // up to what was in flight (exactly, with one request in flight).
    let reorder = if requests == 1 { 0 } else { BATCH * requests };
    let file_ids: Vec<String> = (0..file_written).map(|i| format!("tx-{i}")).collect();
    first_occurrences_in_order(&got, &file_ids, reorder).expect("file order");
    first_occurrences_in_order(&got, &sock.accepted, reorder).expect("socket order");
    fig.set("max_in_flight", requests);
    for (k, d) in per_crash.iter().enumerate() {
        assert!(
            *d <= BATCH * requests,
            "crash {k} resent {d} events, more than the {requests} requests of {BATCH} that may be in flight"
        );
    }
    agent.term();
    (fig, ledger, got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_loses_nothing_and_resends_at_most_what_was_in_flight() {
    let kills = size("kills", 12, 150);
    let emu = Emulator::start(EmulatorConfig::new(Kind::Generic)).await.unwrap();
    let siem = format!("  generic:\n    batch: ndjson\n    max_batch_events: {BATCH}\n");
    let (_fig, _, _) = run_campaign("crash", emu, &siem, kills, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_with_one_request_in_flight_keeps_strict_order_and_resends_at_most_one_request() {
    let kills = size("strict_kills", 8, 100);
    let emu = Emulator::start(EmulatorConfig::new(Kind::Generic)).await.unwrap();
    let siem = format!("  generic:\n    batch: ndjson\n    max_batch_events: {BATCH}\n");
    let (_fig, _, _) = run_campaign("crash_strict_order", emu, &siem, kills, Some(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_never_duplicates_into_elasticsearch() {
    let kills = size("es_kills", 6, 40);
    let emu = Emulator::start(EmulatorConfig::new(Kind::Elasticsearch)).await.unwrap();
    let url = emu.url();
    let siem = format!("  elasticsearch:\n    max_batch_events: {BATCH}\n");
    let (mut fig, ledger, got) = run_campaign("crash_elasticsearch", emu, &siem, kills, None).await;
    let v = ledger.judge(&got);
    fig.set("stored_documents", v.distinct);
    assert_eq!(v.duplicate_copies, 0, "Elasticsearch must never store a duplicate ({url})");
}

/// Restart time with a large backlog: the SIEM is down while a backlog builds, the agent is
/// killed, and the time to healthy and to the first delivery is measured; then the drain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_with_a_large_backlog_is_quick_and_drains_in_order() {
    let n = size("backlog_events", 50_000, 1_000_000);
    let mut fig = Figures::new("crash_backlog_restart");
    let emu = Emulator::start(EmulatorConfig::new(Kind::Generic)).await.unwrap();
    emu.set_fault(Some(Fault::Status {
        code: 503,
        body: String::new(),
        headers: vec![],
    }));
    let env = TestEnv::new();
    let mut cfg = Cfg::new(&emu.url());
    cfg.siem = "  generic:\n    batch: ndjson\n    max_batch_events: 500\n".into();
    cfg.socket = false;
    env.write_config(&cfg);
    let mut agent = AgentProc::start(&env).await;
    let chunk = 10_000;
    for start in (0..n).step_by(chunk) {
        env.append(&(start..(start + chunk).min(n)).map(event).collect::<Vec<_>>());
    }
    let t = Instant::now();
    agent
        .wait_status(DEADLINE * 10, |s| s["queue"]["pending"].as_u64() == Some(n as u64))
        .await;
    fig.set("backlog_events", n);
    fig.secs("ingest_seconds", t.elapsed());
    fig.set("queue_bytes_on_disk", dir_bytes(&env.queue));
    agent.kill9();
    let t = Instant::now();
    let agent = AgentProc::start(&env).await;
    let healthy = t.elapsed();
    let s = agent.status().await;
    assert_eq!(s["queue"]["pending"].as_u64(), Some(n as u64), "{s}");
    emu.set_fault(None);
    assert!(emu.wait_for_events(1, DEADLINE).await);
    let first = t.elapsed();
    assert!(emu.wait_for_events(n, DEADLINE * 20).await, "drained {} of {n}", emu.event_count());
    let drain = t.elapsed() - first;
    let m = mem(agent.pid()).unwrap_or_default();
    fig.secs("restart_to_healthy", healthy);
    fig.secs("restart_to_first_delivery", first);
    fig.secs("drain_seconds", drain);
    fig.set("drain_events_per_second", (n as f64 / drain.as_secs_f64()).round());
    fig.set("agent_peak_rss_mib", m.hwm_kib / 1024);
    let got = tx_ids(&emu.events());
    assert_eq!(got.len(), n, "each event once");
    first_occurrences_in_order(&got, &expected_ids(0..n), 500 * IN_FLIGHT_REQUESTS).unwrap();
}
