//! A store moved aside as damaged is listed and replayed, never silently forgotten (issue 10,
//! item 1): events accepted while the SIEM was failing, a sled store damaged while the agent is
//! stopped (moved aside at the restart), then `aside list` and `aside replay` through the real
//! binary, with the agent running (admin socket) and stopped (queue opened directly). Every
//! event arrives at the SIEM, once, and a second replay adds nothing.

mod common;

use common::campaign::*;
use common::*;
use sendauth_siem_emulators::{Emulator, EmulatorConfig, Fault, Kind};
use serde_json::Value;

const N: usize = 1500;

/// `N` events accepted (durable) while the SIEM answers 503, then the agent stopped and its
/// sled store damaged so that the next start moves it aside.
async fn backlog_then_damaged_store(env: &TestEnv, emu: &Emulator) {
    emu.set_fault(Some(Fault::Status {
        code: 503,
        body: String::new(),
        headers: vec![],
    }));
    let mut cfg = Cfg::new(&emu.url());
    cfg.siem = "  generic:\n    batch: ndjson\n    max_batch_events: 100\n".into();
    env.write_config(&cfg);
    let mut agent = AgentProc::start(env).await;
    let lines: Vec<String> = (0..N).map(event).collect();
    send_all_accepted(&env.socket, &lines, 500).await;
    agent
        .wait_status(DEADLINE, |s| s["queue"]["pending"].as_u64() == Some(N as u64))
        .await;
    assert!(agent.term().success());
    assert_eq!(emu.event_count(), 0, "the SIEM failed every request");
    // The damage `Queue::open` takes as corruption (sled cannot open it).
    let store = env.queue.join("store");
    std::fs::write(store.join("conf"), b"\x00garbage\xff").unwrap();
    std::fs::write(store.join("db"), vec![0xAB; 4096]).unwrap();
    emu.set_fault(None);
}

async fn run_cli(args: Vec<String>) -> (i32, String, String) {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cli(&args)
    })
    .await
    .unwrap()
}

/// `aside list --json`: one report per moved-aside store.
async fn aside_list(env: &TestEnv) -> Vec<Value> {
    let (code, out, err) = run_cli(vec![
        "aside".into(),
        "list".into(),
        "--config".into(),
        env.config.display().to_string(),
        "--json".into(),
    ])
    .await;
    assert_eq!(code, 0, "aside list failed: {out}{err}");
    out.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

async fn aside_replay(env: &TestEnv, name: &str, extra: &[&str]) -> (i32, String) {
    let mut args = vec![
        "aside".to_string(),
        "replay".into(),
        name.into(),
        "--config".into(),
        env.config.display().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let (code, out, err) = run_cli(args).await;
    (code, format!("{out}{err}"))
}

/// The one moved-aside store, checked to hold exactly the `N` events and nothing else.
async fn the_moved_aside_store(env: &TestEnv) -> String {
    let list = aside_list(env).await;
    assert_eq!(list.len(), 1, "{list:#?}");
    let r = &list[0];
    let name = r["name"].as_str().unwrap().to_string();
    assert!(name.starts_with("corrupt-"), "{name}");
    assert_eq!(
        (
            r["pending_events"].as_u64(),
            r["dead_letters"].as_u64(),
            r["quarantine"].as_u64(),
            r["acked"].as_u64(),
            r["damaged_stretches"].as_u64(),
            r["damaged_events"].as_u64(),
            r["torn_tails"].as_u64(),
        ),
        (Some(N as u64), Some(0), Some(0), Some(0), Some(0), Some(0), Some(0)),
        "{r:#}"
    );
    assert!(r["index"].as_str().unwrap().starts_with("could not be opened"), "{r:#}");
    assert!(
        r["reason"].as_str().is_some_and(|w| w.contains("damaged")),
        "why it was moved aside: {r:#}"
    );
    assert!(r["progress"]["done_at"].is_null(), "{r:#}");
    name
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_aside_store_is_listed_and_replayed_through_the_running_agent_once() {
    let emu = Emulator::start(EmulatorConfig::new(Kind::Generic)).await.unwrap();
    let env = TestEnv::new();
    backlog_then_damaged_store(&env, &emu).await;

    let agent = AgentProc::start(&env).await;
    let s = agent.status().await;
    let incident = s["queue"]["incident"].as_str().unwrap_or("");
    assert!(incident.contains("moved aside") && incident.contains("aside replay"), "{s:#}");
    assert!(!incident.contains("were lost"), "the moved-aside events are not lost: {incident}");
    assert_eq!(s["queue"]["pending"], 0, "a new, empty queue");
    let name = the_moved_aside_store(&env).await;
    assert_eq!(s["queue"]["moved_aside"], serde_json::json!([name]), "status names it");

    let (code, out) = aside_replay(&env, &name, &["--dry-run"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("would re-queue {N} pending event(s) and 0 dead letter(s)")),
        "{out}"
    );
    assert_eq!(
        aside_list(&env).await[0]["progress"]["done_at"],
        Value::Null,
        "a dry run changes nothing"
    );

    let (code, out) = aside_replay(&env, &name, &[]).await;
    assert_eq!(code, 0, "{out}\n{}", agent.logs());
    assert!(
        out.contains(&format!("re-queued {N} pending event(s) and 0 dead letter(s)")),
        "{out}"
    );
    let arrived = wait_until(DEADLINE, || emu.event_count() >= N).await;
    assert!(arrived, "{} of {N} arrived; log:\n{}", emu.event_count(), agent.logs());
    assert_eq!(sorted_ids(&emu.events()), expected_ids(0..N), "every event once");
    let s = agent.wait_status(DEADLINE, |s| s["queue"]["pending"] == 0).await;
    assert_eq!(s["queue"]["moved_aside"], serde_json::json!([]), "{s:#}");
    assert!(aside_list(&env).await[0]["progress"]["done_at"].is_string());

    // A second replay adds nothing: nothing pending, nothing more at the SIEM.
    let (code, out) = aside_replay(&env, &name, &[]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("was already replayed"), "{out}");
    assert_eq!(agent.status().await["queue"]["pending"], 0);
    assert_eq!(emu.event_count(), N);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_aside_store_is_replayed_with_the_agent_stopped_and_delivered_at_the_next_start() {
    let emu = Emulator::start(EmulatorConfig::new(Kind::Generic)).await.unwrap();
    let env = TestEnv::new();
    backlog_then_damaged_store(&env, &emu).await;
    // A start moves the store aside; stop again.
    let mut agent = AgentProc::start(&env).await;
    assert!(agent.term().success());
    let name = the_moved_aside_store(&env).await;

    let (code, out) = aside_replay(&env, &name, &[]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("re-queued {N} pending event(s)")), "{out}");
    let (code, out) = aside_replay(&env, &name, &[]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("was already replayed"), "{out}");

    let agent = AgentProc::start(&env).await;
    let arrived = wait_until(DEADLINE, || emu.event_count() >= N).await;
    assert!(arrived, "{} of {N} arrived; log:\n{}", emu.event_count(), agent.logs());
    let s = agent.wait_status(DEADLINE, |s| s["queue"]["pending"] == 0).await;
    assert_eq!(sorted_ids(&emu.events()), expected_ids(0..N), "every event once, not twice");
    assert_eq!(s["queue"]["moved_aside"], serde_json::json!([]), "{s:#}");
}
