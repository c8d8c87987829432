//! Sumo Logic end to end: the real agent against the HTTP Source emulator (docs/PROTOCOLS.md §3).
//! NDJSON with the X-Sumo-* metadata, the token in the URL that must never leak, throttling, and
//! `sendauth-siem test`.

mod common;

use std::time::Duration;

use common::*;
use sendauth_siem_emulators::{Emulator, EmulatorConfig, Fault, Kind, RecordedRequest};

const TOKEN: &str = "ZaVnC4dhaV2sumoSecretToken9Q==";

async fn sumo() -> Emulator {
    let mut c = EmulatorConfig::new(Kind::SumoLogic);
    c.sumo_token = TOKEN.into();
    Emulator::start(c).await.unwrap()
}

fn source_url(emu: &Emulator, token: &str) -> String {
    format!("http://{}/receiver/v1/http/{token}", emu.addr())
}

/// The agent's config: the HTTP Source URL with `token`, metadata, and `extra` lines under
/// `sumo_logic:`.
fn agent_cfg(emu: &Emulator, token: &str, extra: &str) -> Cfg {
    let mut c = Cfg::new(&source_url(emu, token));
    c.siem = format!(
        "  sumo_logic:\n    category: security/sendauth\n    name: sendauth-events\n    host: idp-test-1\n    fields: {{ env: prod, team: iam }}\n{extra}"
    );
    c
}

fn posts(emu: &Emulator) -> Vec<RecordedRequest> {
    ingest_requests(&emu.requests(), "/receiver/v1/http")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_arrive_once_in_order_as_gzipped_ndjson_with_sumo_metadata() {
    let emu = sumo().await;
    let env = TestEnv::new();
    env.write_config(&agent_cfg(&emu, TOKEN, "    gzip: true\n"));
    let agent = AgentProc::start(&env).await;
    env.append(&(0..120).map(event).collect::<Vec<_>>());
    assert!(emu.wait_for_events(120, DEADLINE).await, "got {}", emu.event_count());
    agent
        .wait_status(DEADLINE, |s| s["state"] == "success" && s["queue"]["pending"] == 0)
        .await;
    assert_eq!(sorted_ids(&emu.events()), expected_ids(0..120));
    for (i, e) in emu.events().iter().enumerate() {
        assert_eq!(e, &event_json(i), "each line is the event unchanged");
    }
    let reqs = posts(&emu);
    assert!(reqs.len() < 120, "batched: {} requests", reqs.len());
    let mut lines = Vec::new();
    for r in &reqs {
        assert_eq!(r.status, 200);
        assert_eq!(r.path, format!("/receiver/v1/http/{TOKEN}"), "the token is in the URL");
        assert!(r.header("authorization").is_none(), "Sumo needs no other credential");
        assert_eq!(r.header("content-type"), Some("application/x-ndjson"));
        assert_eq!(r.header("x-sumo-category"), Some("security/sendauth"));
        assert_eq!(r.header("x-sumo-name"), Some("sendauth-events"));
        assert_eq!(r.header("x-sumo-host"), Some("idp-test-1"));
        assert_eq!(r.header("x-sumo-fields"), Some("env=prod,team=iam"));
        assert_eq!(r.header("content-encoding"), Some("gzip"));
        assert!(r.wire_bytes < r.body.len(), "gzip shrinks the body");
        let text = String::from_utf8(r.body.clone()).unwrap();
        assert!(text.ends_with('\n'));
        lines.extend(text.lines().map(str::to_string));
    }
    assert_eq!(
        lines,
        (0..120).map(event).collect::<Vec<_>>(),
        "NDJSON: one event per line, byte for byte"
    );
    let s = agent.status().await;
    assert_eq!(s["config"]["platform"], "sumo_logic");
    assert_no_secrets(&agent, &[TOKEN]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_url_401_holds_with_the_regenerate_hint_and_never_shows_the_token() {
    let emu = sumo().await;
    let env = TestEnv::new();
    let old = "ZaVnC4dhaV2oldRegeneratedTokenQ==";
    env.write_config(&agent_cfg(&emu, old, ""));
    let agent = AgentProc::start(&env).await;
    env.append(&(0..8).map(event).collect::<Vec<_>>());
    let s = agent
        .wait_status(DEADLINE, |s| s["state"] == "error" && s["queue"]["pending"] == 8)
        .await;
    assert_eq!(s["last_error"]["http_status"], 401);
    let msg = s["last_error"]["message"].as_str().unwrap();
    assert!(msg.contains("regenerated") && msg.contains("siem.url"), "{msg}");
    assert!(wait_until(DEADLINE, || posts(&emu).len() >= 3).await, "keeps probing");
    assert_eq!(emu.event_count(), 0);
    assert_eq!(s["dead_letter"]["count"], 0);
    assert_no_secrets(&agent, &[old]).await;

    env.write_config(&agent_cfg(&emu, TOKEN, ""));
    assert!(emu.wait_for_events(8, DEADLINE).await, "{}", agent.logs());
    assert_eq!(sorted_ids(&emu.events()), expected_ids(0..8));
    let s = agent
        .wait_status(DEADLINE, |s| s["state"] == "success" && s["queue"]["pending"] == 0)
        .await;
    assert_eq!(
        s["config"]["url"],
        format!("http://{}/receiver/v1/http/REDACTED", emu.addr()),
        "the URL is shown without its token"
    );
    assert_no_secrets(&agent, &[old, TOKEN]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_429_and_server_errors_503_are_retried_then_delivered_once() {
    let emu = sumo().await;
    emu.push_fault(Fault::Status {
        code: 429,
        body: "You have temporarily exceeded your Sumo Logic quota. Please try again at a later time".into(),
        headers: vec![],
    });
    emu.push_fault(Fault::Status {
        code: 503,
        body: "Service Unavailable".into(),
        headers: vec![],
    });
    let env = TestEnv::new();
    env.write_config(&agent_cfg(&emu, TOKEN, ""));
    env.append(&(0..25).map(event).collect::<Vec<_>>());
    let agent = AgentProc::start(&env).await;
    assert!(emu.wait_for_events(25, DEADLINE).await);
    agent
        .wait_status(DEADLINE, |s| s["state"] == "success" && s["queue"]["pending"] == 0)
        .await;
    assert_eq!(sorted_ids(&emu.events()), expected_ids(0..25));
    let statuses: Vec<u16> = posts(&emu).iter().map(|r| r.status).collect();
    assert_eq!(&statuses[..2], &[429, 503], "{statuses:?}");
    assert!(statuses[2..].iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(metric(agent.port, "sendauth_siem_retries_total").await, 2.0);
    let logs = agent.logs();
    assert!(
        logs.contains("throttling") && logs.contains("HTTP 429") && logs.contains("exceeded your Sumo Logic quota"),
        "{logs}"
    );
    assert_eq!(agent.status().await["dead_letter"]["count"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_command_diagnoses_each_sumo_failure() {
    let emu = sumo().await;
    let good = agent_cfg(&emu, TOKEN, "");

    let (code, out) = run_test_command(&good).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("(sumo_logic)") && out.contains("OK: the SIEM accepted the test event"),
        "{out}"
    );
    assert_eq!(emu.events().last().unwrap()["event_type"], "sendauth_siem.test");
    assert!(!out.contains(TOKEN), "{out}");

    let old = "ZaVnC4dhaV2oldRegeneratedTokenQ==";
    let (code, out) = run_test_command(&agent_cfg(&emu, old, "")).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("HTTP 401") && out.contains("regenerated"), "{out}");
    assert!(
        !out.contains("check siem.auth"),
        "Sumo Logic has no siem.auth; the token is in the URL: {out}"
    );
    assert!(!out.contains(old), "{out}");

    let mut wrong_path = good.clone();
    wrong_path.url = format!("{}/extra", source_url(&emu, TOKEN));
    let (code, out) = run_test_command(&wrong_path).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("HTTP 404") && out.contains("check siem.url"), "{out}");
    assert!(!out.contains(TOKEN), "{out}");

    emu.push_fault(Fault::Status {
        code: 400,
        body: "Invalid request: malformed payload".into(),
        headers: vec![],
    });
    let (code, out) = run_test_command(&good).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("HTTP 400") && out.contains("malformed payload"), "{out}");

    emu.push_fault(Fault::Hang(Duration::from_secs(5)));
    let mut slow = good.clone();
    slow.siem.push_str("  timeout: 500ms\n");
    let (code, out) = run_test_command(&slow).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("did not answer within"), "{out}");

    let mut closed = good.clone();
    closed.url = format!("http://127.0.0.1:{}/receiver/v1/http/{TOKEN}", free_port());
    let (code, out) = run_test_command(&closed).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("connection refused") && !out.contains(TOKEN), "{out}");
}
