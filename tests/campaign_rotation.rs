//! Rotation campaign (docs/RELIABILITY.md): logrotate-style rename+create and copytruncate at
//! high rates while the auth side keeps appending, and rotation while the agent is down.
//!
//! Promise checked (ARCHITECTURE.md invariant 1, the file source's docs): no loss and no duplicate
//! for rename rotation; for copytruncate, none as long as the agent has read the file before it
//! is truncated (lines the agent had not read when the file was truncated are gone with it:
//! that window belongs to copytruncate, and is measured, not asserted, below).
//!
//! Rotations are never faster than the agent opens files: the file source documents that a file
//! renamed away twice before it was ever opened is not read, so each rotation waits until the
//! agent has delivered an event from the current file.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::campaign::*;
use common::*;
use sendauth_siem_emulators::{Emulator, EmulatorConfig, Kind};

const BATCH: usize = 50;

async fn setup() -> (Emulator, TestEnv) {
    let emu = Emulator::start(EmulatorConfig::new(Kind::Generic)).await.unwrap();
    let env = TestEnv::new();
    let mut cfg = Cfg::new(&emu.url());
    cfg.siem = format!("  generic:\n    batch: ndjson\n    max_batch_events: {BATCH}\n");
    cfg.socket = false;
    env.write_config(&cfg);
    (emu, env)
}

/// The auth side: appends `per_tick` lines every 2 ms under `lock` (the rotator takes it for
/// copytruncate). Returns how many were written when stopped.
fn writer(
    path: std::path::PathBuf,
    lock: Arc<Mutex<()>>,
    stop: Arc<AtomicBool>,
    written: Arc<AtomicUsize>,
    per_tick: usize,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut i = 0;
        while !stop.load(Ordering::Relaxed) {
            {
                let _g = lock.lock().unwrap();
                append_to(&path, &(i..i + per_tick).map(event).collect::<Vec<_>>());
                i += per_tick;
                written.store(i, Ordering::Relaxed);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    })
}

fn delivered(emu: &Emulator, id: usize) -> bool {
    let want = format!("tx-{id}");
    tx_ids(&emu.events()).iter().rev().any(|g| *g == want)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rename_rotation_at_a_high_rate_loses_and_duplicates_nothing() {
    let rotations = size("rename_rotations", 40, 1000);
    let mut fig = Figures::new("rotation_rename");
    let (emu, env) = setup().await;
    let agent = AgentProc::start(&env).await;
    let (lock, stop, written) = (
        Arc::new(Mutex::new(())),
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
    );
    let w = writer(env.events.clone(), lock.clone(), stop.clone(), written.clone(), 5);
    assert!(wait_until(DEADLINE, || delivered(&emu, 0)).await);
    let t = Instant::now();
    for r in 0..rotations {
        // The first event of the current file must have been delivered: the agent opened it.
        let first = {
            let _g = lock.lock().unwrap();
            let n = written.load(Ordering::Relaxed);
            // logrotate "create": rename away, the next append creates a new file.
            std::fs::rename(&env.events, env.events.with_extension(format!("jsonl.{}", r % 5))).unwrap();
            n
        };
        assert!(
            wait_until(DEADLINE, || written.load(Ordering::Relaxed) > first && delivered(&emu, first)).await,
            "rotation {r}: tx-{first} never arrived\n{}",
            agent.logs()
        );
    }
    stop.store(true, Ordering::Relaxed);
    w.join().unwrap();
    let n = written.load(Ordering::Relaxed);
    assert!(
        emu.wait_for_events(n, DEADLINE).await,
        "{} of {n}\n{}",
        emu.event_count(),
        agent.logs()
    );
    agent.wait_status(DEADLINE, |s| s["queue"]["pending"] == 0).await;
    let elapsed = t.elapsed();
    let got = tx_ids(&emu.events());
    let ledger = Ledger {
        must: expected_ids(0..n),
        ..Default::default()
    };
    let v = ledger.judge(&got);
    fig.set("rotations", rotations);
    fig.set(
        "rotations_per_second",
        ((rotations as f64 / elapsed.as_secs_f64()) * 10.0).round() / 10.0,
    );
    fig.set("events_written", n);
    fig.set("lost", v.lost.len());
    fig.set("duplicates", v.duplicate_copies);
    fig.set("quarantined", agent.status().await["quarantine"]["count"].clone());
    assert_eq!(sort_tx_ids(got.clone()), expected_ids(0..n), "each event once");
    first_occurrences_in_order(&got, &expected_ids(0..n), BATCH * IN_FLIGHT_REQUESTS).unwrap();
    assert_eq!(agent.status().await["quarantine"]["count"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copytruncate_at_a_high_rate_loses_and_duplicates_nothing_the_agent_had_read() {
    let rotations = size("copytruncate_rotations", 40, 1000);
    let mut fig = Figures::new("rotation_copytruncate");
    let (emu, env) = setup().await;
    let agent = AgentProc::start(&env).await;
    let (lock, stop, written) = (
        Arc::new(Mutex::new(())),
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
    );
    let w = writer(env.events.clone(), lock.clone(), stop.clone(), written.clone(), 5);
    let t = Instant::now();
    for r in 0..rotations {
        // Let some lines accumulate in the current file, then copytruncate once the agent has
        // read everything written so far (holding the writer so the copy is complete).
        tokio::time::sleep(Duration::from_millis(20)).await;
        let g = lock.lock().unwrap();
        let n = written.load(Ordering::Relaxed);
        let caught_up = {
            let end = Instant::now() + DEADLINE;
            loop {
                if n == 0 || delivered(&emu, n - 1) {
                    break true;
                }
                if Instant::now() > end {
                    break false;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        };
        assert!(caught_up, "rotation {r}: the agent did not catch up\n{}", agent.logs());
        std::fs::copy(&env.events, env.events.with_extension(format!("jsonl.{}", r % 5))).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&env.events)
            .unwrap()
            .set_len(0)
            .unwrap();
        drop(g);
    }
    stop.store(true, Ordering::Relaxed);
    w.join().unwrap();
    let n = written.load(Ordering::Relaxed);
    assert!(
        emu.wait_for_events(n, DEADLINE).await,
        "{} of {n}\n{}",
        emu.event_count(),
        agent.logs()
    );
    agent.wait_status(DEADLINE, |s| s["queue"]["pending"] == 0).await;
    let elapsed = t.elapsed();
    let got = tx_ids(&emu.events());
    let ledger = Ledger {
        must: expected_ids(0..n),
        ..Default::default()
    };
    let v = ledger.judge(&got);
    let q = agent.status().await["quarantine"]["count"].clone();
    fig.set("rotations", rotations);
    fig.set(
        "rotations_per_second",
        ((rotations as f64 / elapsed.as_secs_f64()) * 10.0).round() / 10.0,
    );
    fig.set("events_written", n);
    fig.set("lost", v.lost.len());
    fig.set("duplicates", v.duplicate_copies);
    fig.set("quarantined", q.clone());
    assert!(v.lost.is_empty(), "lost {:?}", &v.lost[..v.lost.len().min(10)]);
    assert_eq!(
        v.duplicate_copies,
        0,
        "duplicates: {:?}",
        v.duplicates.keys().take(10).collect::<Vec<_>>()
    );
    assert_eq!(q, 0, "no line fragment may be quarantined\n{}", agent.logs());
    first_occurrences_in_order(&got, &expected_ids(0..n), BATCH * IN_FLIGHT_REQUESTS).unwrap();
}

/// copytruncate as logrotate really does it: the writer is not paused and the agent is not
/// waited for. Lines written between the copy and the truncate, and lines the agent had not
/// read yet, are only in the copy: this measures that window; it asserts only that the agent
/// keeps going and never forwards a fragment of a line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copytruncate_unsynchronised_window_is_measured() {
    let rotations = size("copytruncate_unsync_rotations", 40, 500);
    let mut fig = Figures::new("rotation_copytruncate_unsynchronised");
    let (emu, env) = setup().await;
    let agent = AgentProc::start(&env).await;
    let (stop, written) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
    let w = writer(env.events.clone(), Arc::new(Mutex::new(())), stop.clone(), written.clone(), 5);
    for r in 0..rotations {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let _ = std::fs::copy(&env.events, env.events.with_extension(format!("jsonl.{}", r % 5)));
        std::fs::OpenOptions::new()
            .write(true)
            .open(&env.events)
            .unwrap()
            .set_len(0)
            .unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    w.join().unwrap();
    let n = written.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(2)).await;
    agent.wait_status(DEADLINE, |s| s["queue"]["pending"] == 0).await;
    let got = tx_ids(&emu.events());
    let ledger = Ledger {
        must: expected_ids(0..n),
        ..Default::default()
    };
    let v = ledger.judge(&got);
    let q = agent.status().await["quarantine"]["count"].clone();
    fig.set("rotations", rotations);
    fig.set("events_written", n);
    fig.set("lost_in_the_copytruncate_window", v.lost.len());
    fig.set("duplicates", v.duplicate_copies);
    fig.set("quarantined", q.clone());
    assert!(v.unexpected.is_empty(), "a fragment of a line was forwarded: {:?}", v.unexpected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_while_the_agent_is_down_loses_nothing() {
    let rounds = size("rotation_down_rounds", 8, 100);
    let mut fig = Figures::new("rotation_while_down");
    let (emu, env) = setup().await;
    let mut agent = AgentProc::start(&env).await;
    let (lock, stop, written) = (
        Arc::new(Mutex::new(())),
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
    );
    let w = writer(env.events.clone(), lock.clone(), stop.clone(), written.clone(), 5);
    let mut kills = 0;
    for r in 0..rounds {
        // The agent must have opened the current file before it goes down (see module docs).
        assert!(wait_until(DEADLINE, || written.load(Ordering::Relaxed) > 0).await);
        let n = written.load(Ordering::Relaxed);
        assert!(wait_until(DEADLINE, || delivered(&emu, n - 1)).await, "round {r}\n{}", agent.logs());
        if r % 2 == 0 {
            assert!(agent.term().success());
        } else {
            agent.kill9();
            kills += 1;
        }
        // Down: the writer goes on, the file is rotated, the writer goes on in the new file.
        tokio::time::sleep(Duration::from_millis(100)).await;
        {
            let _g = lock.lock().unwrap();
            std::fs::rename(&env.events, env.events.with_extension(format!("jsonl.{}", r % 5))).unwrap();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        agent = AgentProc::start(&env).await;
    }
    stop.store(true, Ordering::Relaxed);
    w.join().unwrap();
    let n = written.load(Ordering::Relaxed);
    let ledger = Ledger {
        must: expected_ids(0..n),
        ..Default::default()
    };
    let ok = wait_until(DEADLINE, || ledger.judge(&tx_ids(&emu.events())).lost.is_empty()).await;
    agent.wait_status(DEADLINE, |s| s["queue"]["pending"] == 0).await;
    let got = tx_ids(&emu.events());
    let v = ledger.judge(&got);
    fig.set("rounds", rounds);
    fig.set("sigkills", kills);
    fig.set("events_written", n);
    fig.set("lost", v.lost.len());
    fig.set("duplicates", v.duplicate_copies);
    assert!(
        ok && v.lost.is_empty(),
        "lost {} e.g. {:?}\n{}",
        v.lost.len(),
        &v.lost[..v.lost.len().min(10)],
        agent.logs()
    );
    assert!(
        v.duplicate_copies <= kills * BATCH,
        "duplicates {} over the bound",
        v.duplicate_copies
    );
    first_occurrences_in_order(&got, &expected_ids(0..n), BATCH * IN_FLIGHT_REQUESTS).unwrap();
}
