//! Datadog Logs end to end: the real agent against the intake emulator (docs/PROTOCOLS.md §4).
//! JSON arrays of entries with the reserved attributes, the API key that must never leak, a
//! rejected key that holds delivery, 413 splitting, and `sendauth-siem test`.

mod common;

use common::*;
use sendauth_siem_emulators::{Emulator, EmulatorConfig, Fault, Kind, RecordedRequest};

fn key() -> String {
    EmulatorConfig::new(Kind::Datadog).datadog_api_key
}

async fn datadog(max_content_length: Option<usize>) -> Emulator {
    let mut c = EmulatorConfig::new(Kind::Datadog);
    if let Some(m) = max_content_length {
        c.max_content_length = m;
    }
    Emulator::start(c).await.unwrap()
}

fn agent_cfg(emu: &Emulator, api_key: &str, extra: &str) -> Cfg {
    let mut c = Cfg::new(&emu.url());
    c.siem = format!(
        "  platform: datadog\n  datadog:\n    api_key: \"{api_key}\"\n    ddtags: \"env:test,team:iam\"\n    service: sendauth-idp\n    hostname: idp-test-1\n{extra}"
    );
    c
}

fn posts(emu: &Emulator) -> Vec<RecordedRequest> {
    ingest_requests(&emu.requests(), "/api/v2/logs")
}

/// The event part of an entry: the entry without the attributes the agent added.
fn without_attrs(v: &serde_json::Value) -> serde_json::Value {
    let mut v = v.clone();
    for k in ["ddsource", "ddtags", "service", "hostname"] {
        v.as_object_mut().unwrap().remove(k);
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_arrives_once_as_gzipped_arrays_with_reserved_attributes() {
    let emu = datadog(None).await;
    let env = TestEnv::new();
    env.write_config(&agent_cfg(&emu, &key(), ""));
    let agent = AgentProc::start(&env).await;
    env.append(&(0..300).map(event).collect::<Vec<_>>());
    assert!(emu.wait_for_events(300, DEADLINE).await, "got {}", emu.event_count());
    agent
        .wait_status(DEADLINE, |s| s["state"] == "success" && s["queue"]["pending"] == 0)
        .await;
    let events = emu.events();
    assert_eq!(events.len(), 300, "each event once");
    assert_eq!(sorted_ids(&events), expected_ids(0..300));
    for e in &events {
        assert_eq!(e["ddsource"], "sendauth");
        assert_eq!(e["ddtags"], "env:test,team:iam");
        assert_eq!(e["service"], "sendauth-idp");
        assert_eq!(e["hostname"], "idp-test-1");
    }
    let mut by_id: Vec<serde_json::Value> = events.iter().map(without_attrs).collect();
    by_id.sort_by_key(|v| v["transaction_id"].as_str().unwrap().to_string());
    let mut want: Vec<serde_json::Value> = (0..300).map(event_json).collect();
    want.sort_by_key(|v| v["transaction_id"].as_str().unwrap().to_string());
    assert_eq!(by_id, want, "the event's own fields are unchanged");
    let reqs = posts(&emu);
    assert!(reqs.len() < 300, "batched: {} requests", reqs.len());
    for r in &reqs {
        assert_eq!(r.status, 202);
        assert_eq!(r.header("dd-api-key"), Some(key().as_str()));
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.header("content-encoding"), Some("gzip"), "gzip is on by default");
        assert!(r.body.starts_with(b"["), "an array of entries");
    }
    let s = agent.status().await;
    assert_eq!(s["config"]["platform"], "datadog");
    assert_no_secrets(&agent, &[&key()]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_key_403_holds_with_a_clear_error_then_a_good_key_delivers_everything() {
    let emu = datadog(None).await;
    let env = TestEnv::new();
    let bad = "ffffffffffffffffbadbadbadbadbad0";
    env.write_config(&agent_cfg(&emu, bad, ""));
    let agent = AgentProc::start(&env).await;
    env.append(&(0..12).map(event).collect::<Vec<_>>());
    let s = agent
        .wait_status(DEADLINE, |s| s["state"] == "error" && s["queue"]["pending"] == 12)
        .await;
    assert_eq!(s["last_error"]["http_status"], 403);
    let msg = s["last_error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("Datadog rejected the API key") && msg.contains("siem.datadog.api_key"),
        "{msg}"
    );
    assert!(wait_until(DEADLINE, || posts(&emu).len() >= 3).await, "keeps probing");
    assert_eq!(emu.event_count(), 0);
    assert_eq!(s["dead_letter"]["count"], 0, "a bad key never drops events");
    assert_no_secrets(&agent, &[bad]).await;

    env.write_config(&agent_cfg(&emu, &key(), ""));
    assert!(emu.wait_for_events(12, DEADLINE).await, "{}", agent.logs());
    agent
        .wait_status(DEADLINE, |s| s["state"] == "success" && s["queue"]["pending"] == 0)
        .await;
    assert_eq!(sorted_ids(&emu.events()), expected_ids(0..12));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payload_too_large_413_splits_batches_and_loses_nothing() {
    // An intake that takes at most ~6 KB per request: the agent's first batches get 413.
    let emu = datadog(Some(6_000)).await;
    let env = TestEnv::new();
    env.write_config(&agent_cfg(&emu, &key(), "    gzip: false\n"));
    env.append(&(0..200).map(event).collect::<Vec<_>>());
    let agent = AgentProc::start(&env).await;
    every_event_arrives_once(&emu, &agent, 200).await;
    let statuses: Vec<u16> = posts(&emu).iter().map(|r| r.status).collect();
    assert!(statuses.contains(&413), "{statuses:?}");
    assert_eq!(agent.status().await["dead_letter"]["count"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limiting_429_is_retried_after_retry_after() {
    let emu = datadog(None).await;
    emu.push_fault(Fault::Status {
        code: 429,
        body: "{\"errors\":[\"Too Many Requests\"]}".into(),
        headers: vec![("Retry-After".into(), "1".into())],
    });
    let env = TestEnv::new();
    env.write_config(&agent_cfg(&emu, &key(), ""));
    env.append(&(0..20).map(event).collect::<Vec<_>>());
    let agent = AgentProc::start(&env).await;
    assert!(emu.wait_for_events(20, DEADLINE).await);
    assert_eq!(sorted_ids(&emu.events()), expected_ids(0..20));
    let reqs = posts(&emu);
    assert_eq!(reqs[0].status, 429);
    assert!(agent.logs().contains("HTTP 429"), "{}", agent.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_command_reports_success_and_a_bad_key() {
    let emu = datadog(None).await;
    let (code, out) = run_test_command(&agent_cfg(&emu, &key(), "")).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("(datadog)") && out.contains("OK"), "{out}");
    assert_eq!(emu.event_count(), 1);
    assert_eq!(emu.events()[0]["event_type"], "sendauth_siem.test");
    let bad = "ffffffffffffffffbadbadbadbadbad0";
    let (code, out) = run_test_command(&agent_cfg(&emu, bad, "")).await;
    assert_ne!(code, 0);
    assert!(out.contains("HTTP 403") && out.contains("API key"), "{out}");
    assert!(!out.contains(bad), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_over_one_megabyte_travels_alone_and_is_kept_whole_in_the_dead_letter() {
    let emu = datadog(None).await;
    let env = TestEnv::new();
    let mut c = agent_cfg(&emu, &key(), "");
    c.max_event_bytes = Some("2MB".into());
    env.write_config(&c);
    let big = event(5).replacen('{', &format!("{{\"note\":\"{}\",", "n".repeat(1_100_000)), 1);
    let mut lines: Vec<String> = (0..5).map(event).collect();
    lines.push(big.clone());
    lines.extend((6..12).map(event));
    env.append(&lines);
    let agent = AgentProc::start(&env).await;
    let s = agent
        .wait_status(DEADLINE, |s| s["queue"]["pending"] == 0 && s["dead_letter"]["count"] == 1)
        .await;
    assert_eq!(s["dead_letter"]["count"], 1);
    assert!(emu.wait_for_events(12, DEADLINE).await);
    assert_eq!(sorted_ids(&emu.events()), expected_ids(0..12), "every event reached Datadog");
    let alone = posts(&emu)
        .into_iter()
        .find(|r| r.body.len() > 1_000_000)
        .expect("the big entry was sent");
    let entries: Vec<serde_json::Value> = serde_json::from_slice(&alone.body).unwrap();
    assert_eq!(entries.len(), 1, "an oversized entry travels alone");
    let dl = dead_letters(&env);
    assert_eq!(dl.len(), 1);
    assert!(
        dl[0]["reason"].as_str().unwrap().contains("1 MB per-entry limit"),
        "{}",
        dl[0]["reason"]
    );
    assert!(dl[0]["event"].as_str() == Some(big.as_str()), "the whole event is kept");
}
