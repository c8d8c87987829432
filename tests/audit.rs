//! `audit:` through the real binary: sequence numbers continuous across SIGTERM and SIGKILL
//! restarts (duplicates allowed after a kill, never a gap), heartbeats at the interval with the
//! right counts (a dead letter included, and `audit verify` explaining its gap), and `audit
//! verify` on a synthetic export with gaps, duplicates and a restart.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use sendauth_siem_emulators::{Emulator, EmulatorConfig, Fault, Kind};
use serde_json::Value;

fn audit_cfg(emu: &Emulator, extra: &str) -> Cfg {
    let mut c = Cfg::new(&emu.url());
    c.siem = "  platform: generic\n".into();
    c.extra = format!("audit:\n  agent_id: edge-1\n{extra}");
    c
}

/// Sequence number → how many times the SIEM got it.
fn seqs(events: &[Value]) -> BTreeMap<u64, usize> {
    let mut m = BTreeMap::new();
    for e in events {
        assert_eq!(e["sendauth_siem"]["agent"], "edge-1", "{e}");
        *m.entry(e["sendauth_siem"]["seq"].as_u64().unwrap()).or_insert(0) += 1;
    }
    m
}

/// Writes the received events as an export and runs `audit verify` on it.
fn verify(env: &TestEnv, lines: &[String]) -> (i32, String) {
    let path = env.dir.path().join("export.ndjson");
    std::fs::write(&path, lines.join("\n")).unwrap();
    let (code, out, err) = cli(&["audit", "verify", path.to_str().unwrap()]);
    (code, format!("{out}{err}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequence_numbers_continue_across_sigterm_and_sigkill() {
    let emu = Emulator::start(EmulatorConfig::new(Kind::Generic)).await.unwrap();
    let env = TestEnv::new();
    env.write_config(&audit_cfg(&emu, ""));
    let mut agent = AgentProc::start(&env).await;
    env.append(&(0..40).map(event).collect::<Vec<_>>());
    assert!(emu.wait_for_events(40, DEADLINE).await);
    agent.term();

    let mut agent = AgentProc::start(&env).await;
    env.append(&(40..80).map(event).collect::<Vec<_>>());
    assert!(emu.wait_for_events(80, DEADLINE).await);
    // Killed while the SIEM is slow to answer: the requests in flight are sent again.
    emu.set_fault(Some(Fault::SlowAnswer(Duration::from_millis(300))));
    env.append(&(80..120).map(event).collect::<Vec<_>>());
    assert!(emu.wait_for_events(85, DEADLINE).await);
    agent.kill9();
    emu.set_fault(None);

    let agent = AgentProc::start(&env).await;
    env.append(&(120..150).map(event).collect::<Vec<_>>());
    assert!(
        wait_until(DEADLINE, || sorted_ids(&emu.events())
            .into_iter()
            .collect::<std::collections::BTreeSet<_>>()
            .len()
            == 150)
        .await,
        "all 150 arrive"
    );
    agent.wait_status(DEADLINE, |s| s["queue"]["pending"] == 0).await;
    let events = emu.events();
    let s = seqs(&events);
    let (first, last) = (*s.keys().next().unwrap(), *s.keys().next_back().unwrap());
    assert_eq!((first, last as usize, s.len()), (1, 150, 150), "1..=150, no gap, none reused");
    // Every transaction has exactly one number, however often it was sent.
    let mut by_tx: BTreeMap<String, std::collections::BTreeSet<u64>> = BTreeMap::new();
    for e in &events {
        by_tx
            .entry(e["transaction_id"].as_str().unwrap().into())
            .or_default()
            .insert(e["sendauth_siem"]["seq"].as_u64().unwrap());
    }
    assert!(by_tx.values().all(|v| v.len() == 1), "a resend keeps its number");
    let (code, out) = verify(&env, &events.iter().map(Value::to_string).collect::<Vec<_>>());
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("gaps: none") && out.contains("result: complete"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_at_the_interval_count_and_explain_a_dead_letter() {
    let emu = Emulator::start(EmulatorConfig::new(Kind::Generic)).await.unwrap();
    let env = TestEnv::new();
    env.write_config(&audit_cfg(&emu, "  heartbeat_interval: 1s\n"));
    let agent = AgentProc::start(&env).await;
    env.append(&(0..5).map(event).collect::<Vec<_>>());
    assert!(emu.wait_for_events(5, DEADLINE).await);
    // The SIEM refuses the next event for good: it is dead-lettered, its number never arrives.
    emu.push_fault(Fault::Status {
        code: 400,
        body: "{\"error\":\"bad event\"}".into(),
        headers: Vec::new(),
    });
    env.append(&[event(5)]);
    assert!(wait_until(DEADLINE, || dead_letters(&env).len() == 1).await);
    env.append(&(6..10).map(event).collect::<Vec<_>>());
    // A quarantined line: counted, never numbered.
    env.append(&["not json".to_string()]);
    let heartbeats = |emu: &Emulator| -> Vec<Value> {
        emu.events()
            .into_iter()
            .filter(|e| e["event_type"] == "sendauth_siem.heartbeat")
            .collect()
    };
    let sum = |hbs: &[Value], k: &str| {
        hbs.iter()
            .map(|h| h["sendauth_siem"]["heartbeat"][k].as_u64().unwrap())
            .sum::<u64>()
    };
    assert!(
        wait_until(DEADLINE, || {
            let h = heartbeats(&emu);
            sum(&h, "accepted") == 10 && sum(&h, "dead_lettered") == 1 && sum(&h, "quarantined") == 1 && h.len() >= 3
        })
        .await,
        "heartbeats: {:?}",
        heartbeats(&emu)
    );
    agent.wait_status(DEADLINE, |s| s["queue"]["pending"] == 0).await;
    let hbs = heartbeats(&emu);
    for h in &hbs {
        let b = &h["sendauth_siem"]["heartbeat"];
        assert_eq!(b["interval_seconds"], 1.0);
        assert!(
            b["pending"].is_u64() && b["oldest_pending_age_seconds"].is_number() && b["started_at"].is_string(),
            "{h}"
        );
    }
    let times: Vec<f64> = hbs.iter().map(|h| epoch_seconds(h["timestamp"].as_str().unwrap())).collect();
    for w in times.windows(2) {
        assert!(w[1] - w[0] >= 0.9, "heartbeats one interval apart: {times:?}");
    }
    // Delivered counts every event the SIEM took, heartbeats included, minus the dead letter.
    let delivered_events = emu.events().len() as u64;
    assert!(sum(&hbs, "delivered") <= delivered_events);
    // The export has a gap of one: the dead letter, explained by the heartbeats' count.
    let events = emu.events();
    let s = seqs(&events);
    let last = *s.keys().next_back().unwrap();
    let missing: Vec<u64> = (1..=last).filter(|n| !s.contains_key(n)).collect();
    assert_eq!(missing.len(), 1, "exactly the dead letter is missing: {missing:?}");
    let (code, out) = verify(&env, &events.iter().map(Value::to_string).collect::<Vec<_>>());
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!(
            "gap: seq {} (1 missing): explained by heartbeat dead-letter counts",
            missing[0]
        )),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_reports_gaps_duplicates_and_a_restart_from_splunk_and_es_exports() {
    let env = TestEnv::new();
    let stamp = |agent: &str, seq: u64| format!(r#"{{"agent":"{agent}","seq":{seq}}}"#);
    let raw = |agent: &str, seq: u64| {
        format!(
            r#"{{"event_type":"transaction.verified","transaction_id":"tx-{seq}","sendauth_siem":{}}}"#,
            stamp(agent, seq)
        )
    };
    let hb = |agent: &str, seq: u64, dl: u64, started: &str| {
        format!(
            r#"{{"event_type":"sendauth_siem.heartbeat","sendauth_siem":{{"agent":"{agent}","seq":{seq},"heartbeat":{{"dead_lettered":{dl},"started_at":"{started}"}}}}}}"#
        )
    };
    let mut lines = Vec::new();
    // Agent a, process 1: 1..=10 with 4 dead-lettered (explained by the heartbeat at 10).
    for s in 1..=9 {
        if s != 4 {
            lines.push(format!(r#"{{"result":{{"_raw":{}}}}}"#, Value::from(raw("a", s))));
        }
    }
    lines.push(format!(r#"{{"result":{{"_raw":{}}}}}"#, Value::from(hb("a", 10, 1, "t1"))));
    // Killed; process 2 resends 9 and 10's neighbours, then loses 15..=16 without a dead letter.
    lines.push(format!(r#"{{"result":{{"_raw":{}}}}}"#, Value::from(raw("a", 9))));
    for s in 11..=20 {
        if !(15..=16).contains(&s) {
            lines.push(format!(r#"{{"_index":"sendauth","_id":"x{s}","_source":{}}}"#, raw("a", s)));
        }
    }
    lines.push(format!(r#"{{"_source":{}}}"#, hb("a", 21, 0, "t2")));
    // Splunk's extracted fields instead of JSON _raw, for agent b: 1, 2, 4.
    for s in [1, 2, 4] {
        lines.push(format!(
            r#"{{"result":{{"_raw":"<not json>","sendauth_siem.agent":"b","sendauth_siem.seq":"{s}"}}}}"#
        ));
    }
    let (code, out) = verify(&env, &lines);
    assert_eq!(code, 1, "{out}");
    for want in [
        "agent \"a\": 18 distinct sequence numbers from 1 to 21; 2 heartbeats from 2 agent process(es)",
        "duplicates: 1 extra copies of 1 events",
        "9 (x2)",
        "gap: seq 4 (1 missing): explained by heartbeat dead-letter counts",
        "gap: seq 15..16 (2 missing): NOT explained",
        "agent \"b\"",
        "gap: seq 3 (1 missing): NOT explained",
        "result: INCOMPLETE: 3 events missing without explanation",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    let (code, out, _) = cli(&["audit", "verify", env.dir.path().join("nope.ndjson").to_str().unwrap()]);
    assert_eq!(code, 2);
    let _ = out;
}
