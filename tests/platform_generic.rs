//! Generic JSON over HTTP end to end, in its batching modes (`ndjson`, `json_array`) with
//! `X-API-Key` header auth: the real agent against the generic collector emulator. (The
//! unbatched default is covered by `agent_delivery.rs` and `cli.rs`.)

mod common;

use std::time::Duration;

use common::*;
use sendauth_siem_emulators::{Emulator, EmulatorConfig, ExpectedAuth, Fault, Kind, RecordedRequest};
use serde_json::Value;

const KEY: &str = "gk-4d2f8e1a9b7c-api-key";

async fn collector() -> Emulator {
    let mut c = EmulatorConfig::new(Kind::Generic);
    c.auth = ExpectedAuth::Header {
        name: "X-API-Key".into(),
        value: KEY.into(),
    };
    Emulator::start(c).await.unwrap()
}

/// The agent's config: `X-API-Key: <key>`, batch mode `batch`, and `extra` lines under
/// `generic:`.
fn agent_cfg(emu: &Emulator, key: &str, batch: &str, extra: &str) -> Cfg {
    let mut c = Cfg::new(&emu.url());
    c.siem = format!("  platform: generic\n  auth:\n    header: \"X-API-Key: {key}\"\n  generic:\n    batch: {batch}\n{extra}");
    c
}

fn posts(emu: &Emulator) -> Vec<RecordedRequest> {
    ingest_requests(&emu.requests(), "/collector")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ndjson_batches_with_an_api_key_arrive_once_in_order() {
    let emu = collector().await;
    let env = TestEnv::new();
    env.write_config(&agent_cfg(&emu, KEY, "ndjson", "    max_batch_events: 50\n"));
    let agent = AgentProc::start(&env).await;
    env.append(&(0..200).map(event).collect::<Vec<_>>());
    assert!(emu.wait_for_events(200, DEADLINE).await, "got {}", emu.event_count());
    agent
        .wait_status(DEADLINE, |s| s["state"] == "success" && s["queue"]["pending"] == 0)
        .await;
    assert_eq!(sorted_ids(&emu.events()), expected_ids(0..200));
    let reqs = posts(&emu);
    assert!(
        reqs.len() >= 4 && reqs.len() < 200,
        "batches of at most 50: {} requests",
        reqs.len()
    );
    let mut lines = Vec::new();
    for r in &reqs {
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-api-key"), Some(KEY));
        assert_eq!(r.header("content-type"), Some("application/x-ndjson"));
        assert!(r.header("content-encoding").is_none(), "gzip is off by default");
        let text = String::from_utf8(r.body.clone()).unwrap();
        assert!(text.ends_with('\n'));
        let n = text.lines().count();
        assert!(n <= 50, "{n} events in one request");
        lines.extend(text.lines().map(str::to_string));
    }
    assert_eq!(lines, (0..200).map(event).collect::<Vec<_>>(), "one event per line, byte for byte");
    assert_no_secrets(&agent, &[KEY]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_array_batches_with_gzip_arrive_once_in_order() {
    let emu = collector().await;
    let env = TestEnv::new();
    env.write_config(&agent_cfg(&emu, KEY, "json_array", "    gzip: true\n"));
    let agent = AgentProc::start(&env).await;
    env.append(&(0..150).map(event).collect::<Vec<_>>());
    assert!(emu.wait_for_events(150, DEADLINE).await, "got {}", emu.event_count());
    agent
        .wait_status(DEADLINE, |s| s["state"] == "success" && s["queue"]["pending"] == 0)
        .await;
    assert_eq!(sorted_ids(&emu.events()), expected_ids(0..150));
    let reqs = posts(&emu);
    assert!(reqs.len() < 150, "batched: {} requests", reqs.len());
    let mut all = Vec::new();
    for r in &reqs {
        assert_eq!(r.header("x-api-key"), Some(KEY));
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.header("content-encoding"), Some("gzip"));
        assert!(r.wire_bytes < r.body.len(), "gzip shrinks the body");
        let Value::Array(items) = serde_json::from_slice::<Value>(&r.body).unwrap() else {
            panic!("a json_array body is one JSON array")
        };
        all.extend(items);
    }
    assert_eq!(all, (0..150).map(event_json).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_api_key_holds_the_batch_until_the_config_is_fixed() {
    let emu = collector().await;
    let env = TestEnv::new();
    let wrong = "gk-0000-wrong-key-0000";
    env.write_config(&agent_cfg(&emu, wrong, "json_array", ""));
    let agent = AgentProc::start(&env).await;
    env.append(&(0..12).map(event).collect::<Vec<_>>());
    let s = agent
        .wait_status(DEADLINE, |s| s["state"] == "error" && s["queue"]["pending"] == 12)
        .await;
    assert_eq!(s["last_error"]["http_status"], 401);
    let msg = s["last_error"]["message"].as_str().unwrap();
    assert!(msg.contains("rejected the credentials") && msg.contains("unauthorized"), "{msg}");
    assert!(wait_until(DEADLINE, || posts(&emu).len() >= 3).await, "keeps probing");
    assert_eq!(emu.event_count(), 0);

    env.write_config(&agent_cfg(&emu, KEY, "json_array", ""));
    assert!(emu.wait_for_events(12, DEADLINE).await, "{}", agent.logs());
    assert_eq!(sorted_ids(&emu.events()), expected_ids(0..12));
    agent
        .wait_status(DEADLINE, |s| s["state"] == "success" && s["queue"]["pending"] == 0)
        .await;
    assert_eq!(agent.status().await["dead_letter"]["count"], 0);
    assert_no_secrets(&agent, &[KEY, wrong]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_batch_is_resent_one_event_at_a_time_so_only_the_bad_one_is_dead_lettered() {
    let emu = collector().await;
    let bad = || Fault::Status {
        code: 400,
        body: "{\"error\":\"line 1: field subject too long\"}".into(),
        headers: vec![],
    };
    // The batch is refused, and so is event 0 on its own: it is the bad one.
    emu.push_fault(bad());
    emu.push_fault(bad());
    let env = TestEnv::new();
    env.write_config(&agent_cfg(&emu, KEY, "ndjson", ""));
    env.append(&(0..10).map(event).collect::<Vec<_>>());
    let agent = AgentProc::start(&env).await;
    assert!(emu.wait_for_events(9, DEADLINE).await, "got {}", emu.event_count());
    agent
        .wait_status(DEADLINE, |s| s["queue"]["pending"] == 0 && s["dead_letter"]["count"] == 1)
        .await;
    assert_eq!(sorted_ids(&emu.events()), expected_ids(1..10));
    let reqs = posts(&emu);
    let per_request: Vec<(u16, usize)> = reqs
        .iter()
        .map(|r| (r.status, String::from_utf8_lossy(&r.body).lines().count()))
        .collect();
    let mut want = vec![(400, 10), (400, 1)];
    want.extend(std::iter::repeat_n((200, 1), 9));
    assert_eq!(per_request, want);
    let dl = dead_letters(&env);
    assert_eq!(dl.len(), 1);
    assert_eq!(dl[0]["event"].as_str().unwrap(), event(0));
    assert_eq!(dl[0]["http_status"], 400);
    assert!(dl[0]["reason"].as_str().unwrap().contains("field subject too long"), "{}", dl[0]);
}

/// A SIEM built on Java quotes the value it could not parse (`For input string: "…"`), and one
/// modelled on Elasticsearch previews it: an IP address, a user name. Failures reach the log and
/// the unauthenticated `/status` (`last_error`, `recent_errors`) as a summary without the value;
/// the dead-letter reason (operator-only, holding the event anyway) keeps the SIEM's words.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn value_previews_in_siem_errors_stay_out_of_the_log_and_status() {
    const IP: &str = "198.51.100.77";
    const USER: &str = "alice.martin@company.com";
    let emu = collector().await;
    // First answer: a server error (retried, reported in status); then the event alone is
    // rejected (dead-lettered).
    emu.push_fault(Fault::Status {
        code: 500,
        body: format!("{{\"error\":\"NumberFormatException while indexing: For input string: \\\"{IP}\\\"\"}}"),
        headers: vec![],
    });
    emu.push_fault(Fault::Status {
        code: 400,
        body: format!("{{\"error\":\"failed to parse field [subject] of type [long]. Preview of field's value: '{USER}'\"}}"),
        headers: vec![],
    });
    let env = TestEnv::new();
    env.write_config(&agent_cfg(&emu, KEY, "none", ""));
    let line = event(0).replace("203.0.113.0", IP).replace("user0@company.com", USER);
    assert!(line.contains(IP) && line.contains(USER));
    env.append(std::slice::from_ref(&line));
    let agent = AgentProc::start(&env).await;
    let status = agent
        .wait_status(DEADLINE, |s| {
            s["queue"]["pending"] == 0 && s["dead_letter"]["count"] == 1 && s["last_error"]["dead_letter"] == true
        })
        .await;

    // The server error, resolved by the later delivery, stays in `recent_errors`; the dead
    // letter is the last error (it needs an operator): both as summaries without the value.
    let recent: Vec<&str> = status["recent_errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["message"].as_str())
        .collect();
    assert!(
        recent.contains(
            &"SIEM had a server error: HTTP 500: {\"error\":\"NumberFormatException while indexing: (value not shown); will retry"
        ),
        "{recent:?}"
    );
    assert_eq!(
        status["last_error"]["message"].as_str().unwrap_or(""),
        "1 event(s) rejected by the SIEM and moved to the dead letter: SIEM rejected the data: HTTP 400: {\"error\":\"failed to parse field [subject] of type [long]. (value not shown)"
    );
    let dl = dead_letters(&env);
    assert_eq!(dl.len(), 1);
    assert_eq!(dl[0]["event"].as_str().unwrap(), line);
    assert_eq!(
        dl[0]["reason"].as_str().unwrap(),
        format!("SIEM rejected the data: HTTP 400: {{\"error\":\"failed to parse field [subject] of type [long]. Preview of field's value: '{USER}'\"}}")
    );
    let logs = agent.logs();
    assert!(
        logs.contains("moved to the dead letter: SIEM rejected the data: HTTP 400: {\"error\":\"failed to parse field [subject] of type [long]. (value not shown)"),
        "{logs}"
    );
    let status = agent.status().await.to_string();
    for value in [IP, USER] {
        assert!(!logs.contains(value), "{value} is in the log:\n{logs}");
        assert!(!status.contains(value), "{value} is in /status: {status}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_command_diagnoses_each_failure_in_batching_modes() {
    let emu = collector().await;
    let good = agent_cfg(&emu, KEY, "ndjson", "");

    for batch in ["ndjson", "json_array"] {
        let (code, out) = run_test_command(&agent_cfg(&emu, KEY, batch, "")).await;
        assert_eq!(code, 0, "{batch}: {out}");
        assert!(
            out.contains("(generic)") && out.contains("OK: the SIEM accepted the test event"),
            "{out}"
        );
    }
    let types: Vec<Value> = emu.events().iter().map(|e| e["event_type"].clone()).collect();
    assert_eq!(types, ["sendauth_siem.test", "sendauth_siem.test"]);
    let ctypes: Vec<Option<String>> = posts(&emu).iter().map(|r| r.header("content-type").map(str::to_string)).collect();
    assert_eq!(
        ctypes,
        [Some("application/x-ndjson".to_string()), Some("application/json".to_string())]
    );

    let wrong = "gk-0000-wrong-key-0000";
    let (code, out) = run_test_command(&agent_cfg(&emu, wrong, "ndjson", "")).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("HTTP 401") && out.contains("unauthorized") && out.contains("siem.auth"),
        "{out}"
    );
    assert!(!out.contains(wrong), "{out}");

    let mut wrong_path = good.clone();
    wrong_path.url = emu.url().replace("/collector", "/collect");
    let (code, out) = run_test_command(&wrong_path).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("HTTP 404") && out.contains("check the path in siem.url"), "{out}");

    emu.push_fault(Fault::Status {
        code: 400,
        body: "{\"error\":\"line 1: unexpected field\"}".into(),
        headers: vec![],
    });
    let (code, out) = run_test_command(&good).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("HTTP 400") && out.contains("unexpected field"), "{out}");

    emu.push_fault(Fault::Hang(Duration::from_secs(5)));
    let mut slow = good.clone();
    slow.siem.push_str("  timeout: 500ms\n");
    let (code, out) = run_test_command(&slow).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("did not answer within"), "{out}");

    let mut closed = good.clone();
    closed.url = format!("http://127.0.0.1:{}/collector", free_port());
    let (code, out) = run_test_command(&closed).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("connection refused"), "{out}");
}
