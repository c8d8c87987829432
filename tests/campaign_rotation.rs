//! Rotation campaign (docs/RELIABILITY.md): rename+create rotation at a high rate (the writer
//! keeps appending to the renamed file for a moment, as a logger does before it reopens),
//! copytruncate rotation at a high rate, and rotation while the agent is down.
//!
//! Promise checked (design.md invariants 1, 2): rename rotation loses nothing and duplicates
//! nothing, also across a stop. Copytruncate has an unavoidable window (lines written between the
//! copy and the truncate are lost; a truncate the agent notices late may re-read): its losses and
//! duplicates are measured and printed, not asserted.
//!
//! `CAMPAIGN=long` (or `CAMPAIGN_ROTATIONS=N`).

mod common;

use std::collections::HashSet;

use common::campaign::*;
use common::*;
use sendauth_siem::emulator::{Emulator, EmulatorConfig, Kind};

async fn setup() -> (Emulator, TestEnv, AgentProc) {
    let emu = Emulator::start(EmulatorConfig::new(Kind::Generic)).await.unwrap();
    let env = TestEnv::new();
    let mut cfg = Cfg::new(&emu.url());
    cfg.socket = false;
    env.write_config(&cfg);
    std::fs::write(&env.events, b"").unwrap();
    let agent = AgentProc::start(&env).await;
    (emu, env, agent)
}

/// Waits until the agent's file source has the current file open (a rotation right after is the
/// fastest rate that still lets it find the file).
async fn wait_reading(agent: &AgentProc, env: &TestEnv) {
    let want = env.events.display().to_string();
    agent
        .wait_status(DEADLINE, |s| s["sources"]["file"]["reading"].as_str() == Some(want.as_str()))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rename_rotation_at_a_high_rate_and_while_down_loses_and_duplicates_nothing() {
    let rotations = size("rotations", 30, 300);
    let per = 20;
    let mut fig = Figures::new("rotation_rename");
    fig.set("rotations", rotations);
    let (emu, env, mut agent) = setup().await;
    let rotated = env.dir.path().join("events.jsonl.1");
    let mut next = 0;
    for r in 0..rotations {
        wait_reading(&agent, &env).await;
        env.append(&(next..next + per).map(event).collect::<Vec<_>>());
        next += per;
        // The logger's rename, a few late lines into the renamed file, then the new file.
        std::fs::rename(&env.events, &rotated).unwrap();
        append_to(&rotated, &(next..next + 5).map(event).collect::<Vec<_>>());
        next += 5;
        env.append(&(next..next + per).map(event).collect::<Vec<_>>());
        next += per;
        // A rotated file must be drained before the next rotation overwrites it.
        assert!(
            emu.wait_for_events(next - per, DEADLINE).await,
            "rotation {r}: {} of {}",
            emu.event_count(),
            next - per
        );
    }
    // Rotation while the agent is down.
    assert!(emu.wait_for_events(next, DEADLINE).await);
    agent.term();
    env.append(&(next..next + per).map(event).collect::<Vec<_>>());
    next += per;
    std::fs::rename(&env.events, &rotated).unwrap();
    env.append(&(next..next + per).map(event).collect::<Vec<_>>());
    next += per;
    agent = AgentProc::start(&env).await;
    let arrived = emu.wait_for_events(next, DEADLINE).await;
    let got = tx_ids(&emu.events());
    let want = expected_ids(0..next);
    let v = Ledger {
        must: want.clone(),
        ..Default::default()
    }
    .judge(&got);
    fig.set("events", next);
    fig.set("lost", v.lost.len());
    fig.set("duplicate_copies", v.duplicate_copies);
    fig.set("agent_status_file", agent.status().await["sources"]["file"].clone());
    assert!(arrived, "{} of {next} arrived; lost {:?}", got.len(), v.lost);
    assert!(v.lost.is_empty(), "lost {:?}", v.lost);
    assert_eq!(v.duplicate_copies, 0, "duplicates {:?}", v.duplicates);
    first_occurrences_in_order(&got, &want).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copytruncate_rotation_at_a_high_rate_is_measured() {
    let rotations = size("rotations", 30, 300);
    let per = 20;
    let mut fig = Figures::new("rotation_copytruncate");
    fig.set("rotations", rotations);
    let (emu, env, agent) = setup().await;
    let rotated = env.dir.path().join("events.jsonl.1");
    let mut next = 0;
    for _ in 0..rotations {
        wait_reading(&agent, &env).await;
        env.append(&(next..next + per).map(event).collect::<Vec<_>>());
        next += per;
        // copytruncate: copy, then truncate in place (no waiting for the agent in between).
        std::fs::copy(&env.events, &rotated).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&env.events)
            .unwrap()
            .set_len(0)
            .unwrap();
        env.append(&(next..next + per).map(event).collect::<Vec<_>>());
        next += per;
    }
    // Whatever can arrive has arrived once the agent is idle at the end of the file.
    let size_now = std::fs::metadata(&env.events).unwrap().len();
    agent
        .wait_status(DEADLINE, |s| {
            s["sources"]["file"]["offset"].as_u64() == Some(size_now) && s["queue"]["pending"] == 0
        })
        .await;
    let got = tx_ids(&emu.events());
    let want = expected_ids(0..next);
    let v = Ledger {
        must: want.clone(),
        ..Default::default()
    }
    .judge(&got);
    fig.set("events_written", next);
    fig.set("lost", v.lost.len());
    fig.set("duplicate_copies", v.duplicate_copies);
    // Guaranteed even with copytruncate: nothing foreign arrives and the agent keeps going.
    assert!(v.unexpected.is_empty(), "unexpected {:?}", v.unexpected);
    let distinct: HashSet<&String> = got.iter().collect();
    assert!(!distinct.is_empty());
}
