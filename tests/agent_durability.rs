//! Durability: restarts (SIGTERM and SIGKILL) and file rotation, counted at the receiver.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use sendauth_siem_emulators::{Emulator, EmulatorConfig, Kind};

async fn generic() -> Emulator {
    Emulator::start(EmulatorConfig::new(Kind::Generic)).await.unwrap()
}

/// Checks that `got` holds every id of `want` and nothing else; returns the duplicated ids.
/// Order is not checked: with several requests in flight arrivals may reorder within what is
/// in flight (ARCHITECTURE.md invariant 4); `agent_concurrency.rs` tests strict order with
/// `max_in_flight: 1`.
fn check_complete(got: &[String], want: &[String]) -> Vec<String> {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for g in got {
        *counts.entry(g.as_str()).or_default() += 1;
    }
    let missing: Vec<&String> = want.iter().filter(|w| !counts.contains_key(w.as_str())).collect();
    assert!(
        missing.is_empty(),
        "lost events: {} missing, first {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    assert_eq!(counts.len(), want.len(), "unexpected events arrived");
    let mut dups: Vec<String> = counts.iter().filter(|(_, c)| **c > 1).map(|(k, _)| k.to_string()).collect();
    dups.sort();
    dups
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_after_sigterm_resends_nothing() {
    let emu = generic().await;
    let env = TestEnv::new();
    env.write_config(&Cfg::new(&emu.url()));
    let mut agent = AgentProc::start(&env).await;
    env.append(&(0..400).map(event).collect::<Vec<_>>());
    // Stop mid-stream.
    assert!(emu.wait_for_events(50, DEADLINE).await);
    let st = agent.term();
    assert!(st.success(), "graceful exit, got {st:?}\n{}", agent.logs());
    let delivered_before = emu.event_count();
    let agent = AgentProc::start(&env).await;
    assert!(emu.wait_for_events(400, DEADLINE).await, "got {}", emu.event_count());
    agent.wait_status(DEADLINE, |s| s["queue"]["pending"] == 0).await;
    let got = tx_ids(&emu.events());
    let dups = check_complete(&got, &expected_ids(0..400));
    assert!(
        dups.is_empty(),
        "a graceful stop resends nothing; duplicated: {dups:?} (delivered before stop: {delivered_before})"
    );
    assert_eq!(sorted_ids(&emu.events()), expected_ids(0..400));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_after_sigkill_loses_nothing() {
    let emu = generic().await;
    let env = TestEnv::new();
    let mut cfg = Cfg::new(&emu.url());
    cfg.siem = "  generic:\n    batch: ndjson\n    max_batch_events: 50\n".into();
    env.write_config(&cfg);
    let mut agent = AgentProc::start(&env).await;
    const N: usize = 3000;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let path = env.events.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            for chunk in (0..N).collect::<Vec<_>>().chunks(30) {
                append_to(&path, &chunk.iter().map(|i| event(*i)).collect::<Vec<_>>());
                std::thread::sleep(Duration::from_millis(5));
                if stop.load(Ordering::Relaxed) {
                    break;
                }
            }
        })
    };
    // Socket events acknowledged by the agent must survive the kills too.
    let mut socket_ids = Vec::new();
    let kills = 4;
    for k in 0..kills {
        let target = (k + 1) * N / (kills + 2);
        assert!(
            wait_until(DEADLINE, || emu.event_count() >= target).await,
            "progress before kill {k}"
        );
        let id = 100_000 + k;
        let answer = socket_send(&env.socket, &[event(id)]).await;
        assert_eq!(answer[0]["accepted"], 1);
        socket_ids.push(format!("tx-{id}"));
        agent.kill9();
        agent = AgentProc::start(&env).await;
    }
    writer.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    let total = N + kills;
    assert!(
        wait_until(DEADLINE * 2, || {
            let ids: std::collections::HashSet<String> = tx_ids(&emu.events()).into_iter().collect();
            ids.len() >= total
        })
        .await,
        "got {} distinct of {total}\n{}",
        tx_ids(&emu.events()).into_iter().collect::<std::collections::HashSet<_>>().len(),
        agent.logs()
    );
    agent.wait_status(DEADLINE, |s| s["queue"]["pending"] == 0).await;
    // Every file event and every acknowledged socket event arrived. A SIGKILL can only resend
    // the requests that may be in flight at that moment (batches of 50, at most the adaptive
    // ceiling plus the one being read ahead; one batch with `delivery.max_in_flight: 1`, see
    // campaign_crash).
    let got = tx_ids(&emu.events());
    let file_got: Vec<String> = got.iter().filter(|g| !socket_ids.contains(g)).cloned().collect();
    let dups = check_complete(&file_got, &expected_ids(0..N));
    for s in &socket_ids {
        assert!(got.contains(s), "acknowledged socket event {s} lost");
    }
    eprintln!(
        "sigkill x{kills}: {} events received for {total} sent; {} duplicated",
        got.len(),
        dups.len()
    );
    assert!(
        dups.len() <= kills * 50 * (sendauth_siem::sink::concurrency::AUTO_CEILING + 1),
        "more duplicates ({}) than the in-flight bound",
        dups.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rename_rotation_under_load_loses_nothing() {
    let emu = generic().await;
    let env = TestEnv::new();
    let mut cfg = Cfg::new(&emu.url());
    cfg.siem = "  generic:\n    batch: ndjson\n".into();
    env.write_config(&cfg);
    let agent = AgentProc::start(&env).await;
    const N: usize = 2000;
    let path = env.events.clone();
    // Writes never pause while files are renamed away. Each rotation waits only until the agent
    // has read from the current file: two rotations before the agent ever opens a file would be
    // faster than any logrotate schedule (see source/file/mod.rs).
    let read_so_far = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = read_so_far.clone();
    let writer = std::thread::spawn(move || {
        for (r, chunk) in (0..N).collect::<Vec<_>>().chunks(400).enumerate() {
            for small in chunk.chunks(20) {
                append_to(&path, &small.iter().map(|i| event(*i)).collect::<Vec<_>>());
                std::thread::sleep(Duration::from_millis(2));
            }
            let end = std::time::Instant::now() + DEADLINE;
            while seen.load(Ordering::Relaxed) <= chunk[0] && std::time::Instant::now() < end {
                std::thread::sleep(Duration::from_millis(5));
            }
            // logrotate "create" style: rename away; the next append creates the new file.
            let rotated = path.with_extension(format!("jsonl.{}", r + 1));
            std::fs::rename(&path, &rotated).unwrap();
        }
    });
    while !writer.is_finished() {
        read_so_far.store(emu.event_count(), Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    writer.join().unwrap();
    assert!(
        emu.wait_for_events(N, DEADLINE).await,
        "got {}\n{}",
        emu.event_count(),
        agent.logs()
    );
    agent.wait_status(DEADLINE, |s| s["queue"]["pending"] == 0).await;
    assert_eq!(sorted_ids(&emu.events()), expected_ids(0..N), "each event once");
    assert_eq!(agent.status().await["quarantine"]["count"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copytruncate_rotation_rereads_from_zero() {
    let emu = generic().await;
    let env = TestEnv::new();
    env.write_config(&Cfg::new(&emu.url()));
    let agent = AgentProc::start(&env).await;
    env.append(&(0..100).map(event).collect::<Vec<_>>());
    assert!(emu.wait_for_events(100, DEADLINE).await);
    // copytruncate: copy the file aside, then truncate it in place (same inode).
    std::fs::copy(&env.events, env.events.with_extension("jsonl.1")).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&env.events)
        .unwrap()
        .set_len(0)
        .unwrap();
    agent.wait_status(DEADLINE, |s| s["sources"]["file"]["offset"] == 0).await;
    env.append(&(100..150).map(event).collect::<Vec<_>>());
    assert!(emu.wait_for_events(150, DEADLINE).await, "{}", agent.logs());
    assert_eq!(sorted_ids(&emu.events()), expected_ids(0..150));
    assert!(agent.logs().contains("truncated"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_while_the_agent_is_down_drains_the_old_file_first() {
    let emu = generic().await;
    let env = TestEnv::new();
    env.write_config(&Cfg::new(&emu.url()));
    let mut agent = AgentProc::start(&env).await;
    env.append(&(0..50).map(event).collect::<Vec<_>>());
    assert!(emu.wait_for_events(50, DEADLINE).await);
    assert!(agent.term().success());
    env.append(&(50..80).map(event).collect::<Vec<_>>());
    std::fs::rename(&env.events, env.events.with_extension("jsonl.1")).unwrap();
    env.append(&(80..100).map(event).collect::<Vec<_>>());
    let agent = AgentProc::start(&env).await;
    assert!(emu.wait_for_events(100, DEADLINE).await, "{}", agent.logs());
    agent.wait_status(DEADLINE, |s| s["queue"]["pending"] == 0).await;
    assert_eq!(sorted_ids(&emu.events()), expected_ids(0..100));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_at_end_applies_only_the_first_time_a_file_is_seen() {
    let emu = generic().await;
    let env = TestEnv::new();
    env.append(&(0..10).map(event).collect::<Vec<_>>());
    let mut cfg = Cfg::new(&emu.url());
    cfg.file_extra = "    start_at: end\n".into();
    env.write_config(&cfg);
    let mut agent = AgentProc::start(&env).await;
    agent
        .wait_status(DEADLINE, |s| s["sources"]["file"]["offset"].as_u64().unwrap_or(0) > 0)
        .await;
    env.append(&(10..20).map(event).collect::<Vec<_>>());
    assert!(emu.wait_for_events(10, DEADLINE).await);
    assert!(agent.term().success());
    // Written while stopped: must be read after the restart, not skipped by `end`.
    env.append(&(20..30).map(event).collect::<Vec<_>>());
    let _agent = AgentProc::start(&env).await;
    assert!(emu.wait_for_events(20, DEADLINE).await);
    assert_eq!(sorted_ids(&emu.events()), expected_ids(10..30));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_does_not_exist_yet_is_waited_for() {
    let emu = generic().await;
    let env = TestEnv::new();
    env.write_config(&Cfg::new(&emu.url()));
    let agent = AgentProc::start(&env).await;
    let s = agent.wait_status(DEADLINE, |s| s["sources"]["file"]["paused"].is_string()).await;
    assert!(s["sources"]["file"]["paused"].as_str().unwrap().contains("waiting for"), "{s}");
    env.append(&(0..3).map(event).collect::<Vec<_>>());
    assert!(emu.wait_for_events(3, DEADLINE).await);
}
