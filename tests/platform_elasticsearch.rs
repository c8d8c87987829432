//! Elasticsearch end to end: the real agent against the ES emulator (docs/PROTOCOLS.md §2).
//! `_bulk` with `create` and a content-derived `_id`, the index template, data streams, per-item
//! and whole-request errors, a SIGKILL in the middle of a bulk, and `sendauth-siem test`.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use base64::Engine;
use common::*;
use sendauth_siem_emulators::{Emulator, EmulatorConfig, ExpectedAuth, Fault, Kind, RecordedRequest};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const USER: &str = "sendauth";
const PASSWORD: &str = "es-secret-pw-31337";

/// The `_id` Elasticsearch must get for an event: SHA-256 of its bytes, base64url, no padding.
fn expected_id(line: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(line.as_bytes()))
}

fn es_config() -> EmulatorConfig {
    let mut c = EmulatorConfig::new(Kind::Elasticsearch);
    c.auth = ExpectedAuth::Basic {
        username: USER.into(),
        password: PASSWORD.into(),
    };
    c
}

async fn es(c: EmulatorConfig) -> Emulator {
    Emulator::start(c).await.unwrap()
}

/// The agent's config with `password` and `extra` lines under `elasticsearch:`.
fn agent_cfg(emu: &Emulator, password: &str, extra: &str) -> Cfg {
    let mut c = Cfg::new(&emu.url());
    c.siem = format!("  auth:\n    basic: {{ username: {USER}, password: \"{password}\" }}\n");
    if !extra.is_empty() {
        c.siem.push_str(&format!("  elasticsearch:\n{extra}"));
    }
    c
}

fn bulks(emu: &Emulator) -> Vec<RecordedRequest> {
    ingest_requests(&emu.requests(), "/_bulk")
}

/// The `(action, metadata)` pairs and documents of a bulk body.
fn bulk_items(r: &RecordedRequest) -> Vec<(String, Value, Value)> {
    let text = std::str::from_utf8(&r.body).unwrap();
    assert!(text.ends_with('\n'), "a bulk body ends with a newline");
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    lines
        .chunks(2)
        .map(|pair| {
            let (verb, meta) = pair[0].as_object().unwrap().iter().next().unwrap();
            (verb.clone(), meta.clone(), pair[1].clone())
        })
        .collect()
}

fn bulk_ids(r: &RecordedRequest) -> Vec<String> {
    bulk_items(r)
        .into_iter()
        .map(|(_, m, _)| m["_id"].as_str().unwrap().to_string())
        .collect()
}

fn doc_ids(emu: &Emulator) -> Vec<String> {
    emu.es_documents().into_iter().map(|(_, id, _)| id).collect()
}

fn ids_of(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| expected_id(&event(i))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_create_with_deterministic_ids_after_installing_the_keyword_template() {
    let emu = es(es_config()).await;
    let env = TestEnv::new();
    env.write_config(&agent_cfg(&emu, PASSWORD, "    gzip: true\n"));
    let agent = AgentProc::start(&env).await;
    env.append(&(0..150).map(event).collect::<Vec<_>>());
    assert!(emu.wait_for_events(150, DEADLINE).await, "got {}", emu.event_count());
    agent
        .wait_status(DEADLINE, |s| s["state"] == "success" && s["queue"]["pending"] == 0)
        .await;

    assert_eq!(sorted_ids(&emu.events()), expected_ids(0..150));
    let docs = emu.es_documents();
    assert_eq!(docs.len(), 150);
    for (i, (index, id, source)) in docs.iter().enumerate() {
        assert_eq!(index, "sendauth");
        assert_eq!(id, &expected_id(&event(i)), "the _id is derived from the event's bytes");
        assert_eq!(source, &event_json(i), "the document is the event unchanged");
    }

    // The product is read (GET /), then the template comes first, then only bulk creates.
    let all = emu.requests();
    assert_eq!((all[0].method.as_str(), all[0].path.as_str()), ("GET", "/"));
    let reqs: Vec<_> = all.into_iter().filter(|r| r.method != "GET").collect();
    assert_eq!(reqs[0].method, "PUT");
    assert_eq!(reqs[0].path, "/_index_template/sendauth-events");
    let templates = emu.es_templates();
    assert_eq!(templates.len(), 1);
    let (name, t) = &templates[0];
    assert_eq!(name, "sendauth-events");
    assert_eq!(t["index_patterns"], json!(["sendauth*"]));
    assert!(t.get("data_stream").is_none(), "a plain index, not a data stream: {t}");
    let props = &t["template"]["mappings"]["properties"];
    assert_eq!(props["event_type"]["type"], "keyword", "documented term query on event_type");
    assert_eq!(
        props["location"]["properties"]["country"]["type"], "keyword",
        "documented term query on location.country"
    );
    assert_eq!(props["ip_address"]["type"], "ip");
    assert_eq!(props["timestamp"]["type"], "date");

    let bulks = bulks(&emu);
    assert!(!bulks.is_empty() && bulks.len() < 150, "batched: {} requests", bulks.len());
    for r in &bulks {
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some("application/x-ndjson"));
        assert_eq!(r.header("content-encoding"), Some("gzip"));
        assert!(r.wire_bytes < r.body.len(), "gzip shrinks the body");
        assert!(r.header("authorization").is_some_and(|a| a.starts_with("Basic ")));
        for (verb, meta, _) in bulk_items(r) {
            assert_eq!(verb, "create", "create, so a resend can never overwrite or duplicate");
            assert_eq!(meta["_index"], "sendauth");
        }
    }
    assert_no_secrets(&agent, &[PASSWORD]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_stream_mode_adds_at_timestamp() {
    let mut c = es_config();
    c.es_data_stream = true;
    let emu = es(c).await;
    let env = TestEnv::new();
    env.write_config(&agent_cfg(&emu, PASSWORD, "    data_stream: true\n"));
    let agent = AgentProc::start(&env).await;
    env.append(&(0..40).map(event).collect::<Vec<_>>());
    assert!(
        emu.wait_for_events(40, DEADLINE).await,
        "got {}\n{}",
        emu.event_count(),
        agent.logs()
    );
    agent
        .wait_status(DEADLINE, |s| s["queue"]["pending"] == 0 && s["dead_letter"]["count"] == 0)
        .await;
    assert_eq!(sorted_ids(&emu.events()), expected_ids(0..40));
    for (i, (index, id, source)) in emu.es_documents().iter().enumerate() {
        assert_eq!(index, "sendauth");
        assert_eq!(id, &expected_id(&event(i)));
        let mut want = event_json(i);
        assert_eq!(source["@timestamp"], want["timestamp"], "@timestamp is the event's own time");
        want["@timestamp"] = source["@timestamp"].clone();
        assert_eq!(source, &want, "nothing else changes");
    }
    let (_, t) = &emu.es_templates()[0];
    assert_eq!(t["data_stream"], json!({}));
    for r in bulks(&emu) {
        assert!(
            bulk_items(&r).iter().all(|(verb, _, _)| verb == "create"),
            "data streams take only create"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item_409_counts_as_delivered_without_a_duplicate() {
    let emu = es(es_config()).await;
    // Event 2 is already in the index (an earlier attempt that the agent never heard back from).
    let r = reqwest::Client::new()
        .put(format!("http://{}/sendauth/_create/{}", emu.addr(), expected_id(&event(2))))
        .basic_auth(USER, Some(PASSWORD))
        .header("content-type", "application/json")
        .body(event(2))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let env = TestEnv::new();
    env.write_config(&agent_cfg(&emu, PASSWORD, ""));
    env.append(&(0..5).map(event).collect::<Vec<_>>());
    let agent = AgentProc::start(&env).await;
    agent
        .wait_status(DEADLINE, |s| s["state"] == "success" && s["queue"]["pending"] == 0)
        .await;
    assert_eq!(bulks(&emu).len(), 1, "nothing to retry");
    assert_eq!(bulk_ids(&bulks(&emu)[0]), ids_of(0..5));
    let mut ids = doc_ids(&emu);
    ids.sort();
    let mut want = ids_of(0..5);
    want.sort();
    assert_eq!(ids, want, "five documents, each once");
    assert_eq!(
        tx_ids(&emu.events()),
        ["tx-2", "tx-0", "tx-1", "tx-3", "tx-4"],
        "the 409 stored nothing"
    );
    assert_eq!(metric(agent.port, "sendauth_siem_events_delivered_total").await, 5.0);

    // The same through the emulator's fault: a 409 for a document stored by a lost attempt.
    emu.push_fault(Fault::EsItems(vec![201, 409, 201]));
    env.append(&(5..8).map(event).collect::<Vec<_>>());
    assert!(emu.wait_for_events(8, DEADLINE).await, "got {}", emu.event_count());
    agent
        .wait_status(DEADLINE, |s| s["state"] == "success" && s["queue"]["pending"] == 0)
        .await;
    assert_eq!(bulks(&emu).len(), 2, "a 409 is not retried");
    assert_eq!(tx_ids(&emu.events())[5..], ["tx-5", "tx-6", "tx-7"]);
    let ids = doc_ids(&emu);
    assert_eq!(ids.len(), 8);
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 8, "each document once");
    assert_eq!(metric(agent.port, "sendauth_siem_events_delivered_total").await, 8.0);
    assert_eq!(agent.status().await["dead_letter"]["count"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item_429_resends_only_those_items() {
    let emu = es(es_config()).await;
    emu.push_fault(Fault::EsItems(vec![201, 429, 201, 429, 201]));
    let env = TestEnv::new();
    env.write_config(&agent_cfg(&emu, PASSWORD, ""));
    env.append(&(0..5).map(event).collect::<Vec<_>>());
    let agent = AgentProc::start(&env).await;
    assert!(emu.wait_for_events(5, DEADLINE).await);
    agent
        .wait_status(DEADLINE, |s| s["state"] == "success" && s["queue"]["pending"] == 0)
        .await;
    assert_eq!(tx_ids(&emu.events()), ["tx-0", "tx-2", "tx-4", "tx-1", "tx-3"]);
    let b = bulks(&emu);
    assert_eq!(b.len(), 2, "one resend");
    assert_eq!(bulk_ids(&b[0]), ids_of(0..5));
    assert_eq!(bulk_ids(&b[1]), vec![expected_id(&event(1)), expected_id(&event(3))]);
    assert_eq!(emu.es_documents().len(), 5);
    assert_eq!(metric(agent.port, "sendauth_siem_retries_total").await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item_400_is_dead_lettered_with_the_elasticsearch_reason() {
    let emu = es(es_config()).await;
    emu.push_fault(Fault::EsItems(vec![201, 400, 201]));
    let env = TestEnv::new();
    env.write_config(&agent_cfg(&emu, PASSWORD, ""));
    env.append(&(0..3).map(event).collect::<Vec<_>>());
    let agent = AgentProc::start(&env).await;
    agent
        .wait_status(DEADLINE, |s| s["queue"]["pending"] == 0 && s["dead_letter"]["count"] == 1)
        .await;
    assert_eq!(tx_ids(&emu.events()), ["tx-0", "tx-2"]);
    assert_eq!(bulks(&emu).len(), 1, "a rejected document is not resent");
    let dl = dead_letters(&env);
    assert_eq!(dl.len(), 1);
    assert_eq!(dl[0]["event"].as_str().unwrap(), event(1));
    assert_eq!(dl[0]["http_status"], 400);
    let reason = dl[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("mapper_parsing_exception") && reason.contains("failed to parse field [event_type]"),
        "{reason}"
    );
    assert_eq!(agent.status().await["state"], "success");
}

/// Elasticsearch quotes the value it could not map (`Preview of field's value: '…'`, and again
/// in `caused_by`): an IP address or a user name. The agent's log and `/status` (unauthenticated)
/// carry a summary without it; the dead letter (operator-only, holding the event anyway) keeps
/// Elasticsearch's words in full.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn value_previews_in_elasticsearch_errors_stay_out_of_the_log_and_status() {
    const IP: &str = "198.51.100.77";
    let mut c = es_config();
    c.es_long_fields = vec!["ip_address".into()];
    let emu = es(c).await;
    let env = TestEnv::new();
    env.write_config(&agent_cfg(&emu, PASSWORD, ""));
    let line = event(0).replace("203.0.113.0", IP);
    assert!(line.contains(IP));
    env.append(std::slice::from_ref(&line));
    let agent = AgentProc::start(&env).await;
    let status = agent
        .wait_status(DEADLINE, |s| s["queue"]["pending"] == 0 && s["dead_letter"]["count"] == 1)
        .await;
    assert_eq!(emu.event_count(), 0);

    let dl = dead_letters(&env);
    assert_eq!(dl.len(), 1);
    assert_eq!(dl[0]["event"].as_str().unwrap(), line);
    let reason = dl[0]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("Elasticsearch rejected this document: HTTP 400 mapper_parsing_exception: ")
            && reason.contains(&format!(
                "of type [long] in document with id '{}'. Preview of field's value: '{IP}'",
                expected_id(&line)
            ))
            && reason.ends_with(&format!("(caused by illegal_argument_exception: For input string: \"{IP}\")")),
        "the dead letter keeps Elasticsearch's words in full: {reason}"
    );

    let logs = agent.logs();
    let logged = logs
        .lines()
        .find(|l| l.contains("moved to the dead letter"))
        .unwrap_or_else(|| panic!("no dead-letter line in the log:\n{logs}"));
    assert!(
        logged.contains("mapper_parsing_exception: [1:")
            && logged.contains("failed to parse field [ip_address] of type [long]")
            && logged.contains(". (value not shown) (caused by illegal_argument_exception)"),
        "the log says what and where, without the value: {logged}"
    );
    assert!(!logs.contains(IP), "the value is in the log:\n{logs}");
    let status = format!("{status} {}", agent.status().await);
    assert!(!status.contains(IP), "the value is in /status: {status}");
    let (_, metrics) = get(agent.port, "/metrics").await.unwrap();
    assert!(!metrics.contains(IP));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_request_429_is_retried() {
    let emu = es(es_config()).await;
    emu.push_fault(Fault::Status {
        code: 429,
        body: json!({"error": {"root_cause": [], "type": "es_rejected_execution_exception", "reason": "rejected execution of coordinating operation"}, "status": 429})
            .to_string(),
        headers: vec![],
    });
    let env = TestEnv::new();
    env.write_config(&agent_cfg(&emu, PASSWORD, ""));
    env.append(&(0..20).map(event).collect::<Vec<_>>());
    let agent = AgentProc::start(&env).await;
    assert!(emu.wait_for_events(20, DEADLINE).await);
    agent
        .wait_status(DEADLINE, |s| s["state"] == "success" && s["queue"]["pending"] == 0)
        .await;
    assert_eq!(sorted_ids(&emu.events()), expected_ids(0..20));
    let b = bulks(&emu);
    assert_eq!(b.iter().map(|r| r.status).collect::<Vec<_>>(), [429, 200]);
    assert_eq!(bulk_ids(&b[0]), bulk_ids(&b[1]), "the same request again");
    assert!(agent.logs().contains("es_rejected_execution_exception"), "the reason is logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_too_large_413_splits_the_batch() {
    let mut c = es_config();
    c.max_content_length = 16 * 1024;
    let emu = es(c).await;
    let env = TestEnv::new();
    env.write_config(&agent_cfg(&emu, PASSWORD, ""));
    env.append(&(0..200).map(event).collect::<Vec<_>>());
    let agent = AgentProc::start(&env).await;
    assert!(
        emu.wait_for_events(200, DEADLINE).await,
        "got {}\n{}",
        emu.event_count(),
        agent.logs()
    );
    agent
        .wait_status(DEADLINE, |s| s["queue"]["pending"] == 0 && s["dead_letter"]["count"] == 0)
        .await;
    assert_eq!(sorted_ids(&emu.events()), expected_ids(0..200));
    let b = bulks(&emu);
    assert_eq!(b[0].status, 413, "the first, full batch is too large");
    let accepted: Vec<&RecordedRequest> = b.iter().filter(|r| r.status == 200).collect();
    assert!(accepted.iter().all(|r| r.wire_bytes <= 16 * 1024));
    // Several requests in flight may land out of order (ARCHITECTURE.md invariant 4).
    let mut sent: Vec<String> = accepted.iter().flat_map(|r| bulk_ids(r)).collect();
    let mut want = ids_of(0..200);
    sent.sort();
    want.sort();
    assert_eq!(sent, want, "every event in exactly one accepted bulk");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_401_holds_until_the_config_is_fixed() {
    let emu = es(es_config()).await;
    let env = TestEnv::new();
    let wrong = "not-the-es-password-42";
    env.write_config(&agent_cfg(&emu, wrong, "    install_template: false\n"));
    let agent = AgentProc::start(&env).await;
    env.append(&(0..6).map(event).collect::<Vec<_>>());
    let s = agent
        .wait_status(DEADLINE, |s| s["state"] == "error" && s["queue"]["pending"] == 6)
        .await;
    assert_eq!(s["last_error"]["http_status"], 401);
    let msg = s["last_error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("rejected the credentials") && msg.contains("security_exception"),
        "{msg}"
    );
    assert!(
        msg.contains("unable to authenticate user [sendauth]"),
        "Elasticsearch's own words: {msg}"
    );
    assert!(wait_until(DEADLINE, || bulks(&emu).len() >= 3).await, "keeps probing");
    assert_eq!(emu.event_count(), 0);

    // With the template on, the template install is what meets the 401 first.
    env.write_config(&agent_cfg(&emu, "still-wrong-pw-43", ""));
    let s = agent
        .wait_status(DEADLINE, |s| {
            s["last_error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("installing Elasticsearch index template"))
        })
        .await;
    assert_eq!(s["last_error"]["http_status"], 401);
    assert_eq!(s["queue"]["pending"], 6);

    env.write_config(&agent_cfg(&emu, PASSWORD, ""));
    assert!(emu.wait_for_events(6, DEADLINE).await, "{}", agent.logs());
    assert_eq!(sorted_ids(&emu.events()), expected_ids(0..6));
    agent
        .wait_status(DEADLINE, |s| s["state"] == "success" && s["queue"]["pending"] == 0)
        .await;
    assert_eq!(emu.es_templates().len(), 1);
    assert_no_secrets(&agent, &[PASSWORD, wrong, "still-wrong-pw-43"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_in_the_middle_of_a_bulk_resends_without_duplicate_documents() {
    let emu = es(es_config()).await;
    // Bulk 1 is answered; bulk 2 is indexed but its answer never reaches the agent.
    emu.push_fault(Fault::EsItems(vec![]));
    emu.push_fault(Fault::SlowAnswer(Duration::from_secs(3600)));
    let env = TestEnv::new();
    env.write_config(&agent_cfg(&emu, PASSWORD, "    max_batch_events: 100\n"));
    env.append(&(0..300).map(event).collect::<Vec<_>>());
    let mut agent = AgentProc::start(&env).await;
    assert!(
        wait_until(DEADLINE, || emu.es_documents().len() >= 200).await,
        "got {} documents",
        emu.es_documents().len()
    );
    assert_eq!(bulks(&emu).len(), 2);
    agent.kill9();
    env.append(&(300..400).map(event).collect::<Vec<_>>());

    let agent = AgentProc::start(&env).await;
    assert!(emu.wait_for_events(400, DEADLINE).await, "got {}", emu.event_count());
    agent
        .wait_status(DEADLINE, |s| s["state"] == "success" && s["queue"]["pending"] == 0)
        .await;

    let ids = doc_ids(&emu);
    assert_eq!(ids.len(), 400);
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 400, "distinct _ids == events");
    assert_eq!(ids, ids_of(0..400), "first writes in order");
    assert_eq!(sorted_ids(&emu.events()), expected_ids(0..400), "no document was stored twice");

    // The batch in flight at the kill was sent again, and Elasticsearch answered 409 for it.
    let b = bulks(&emu);
    let in_flight = bulk_ids(&b[1]);
    assert_eq!(in_flight, ids_of(100..200));
    let mut sent: HashMap<String, usize> = HashMap::new();
    for r in &b {
        for id in bulk_ids(r) {
            *sent.entry(id).or_default() += 1;
        }
    }
    assert!(in_flight.iter().all(|id| sent[id] == 2), "the in-flight batch was resent once");
    let total_sent: usize = sent.values().sum();
    assert!(total_sent >= 500, "400 events + the resent 100 ({total_sent} creates sent)");
    assert!(b[2..].iter().all(|r| r.status == 200));
    // 409s count as delivered: everything left the queue, nothing was dead-lettered.
    assert!(metric(agent.port, "sendauth_siem_events_delivered_total").await >= 300.0);
    assert_eq!(agent.status().await["dead_letter"]["count"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_command_diagnoses_each_elasticsearch_failure() {
    let emu = es(es_config()).await;
    let good = agent_cfg(&emu, PASSWORD, "");

    let (code, out) = run_test_command(&good).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("OK: the SIEM accepted the test event"), "{out}");
    assert_eq!(emu.events().last().unwrap()["event_type"], "sendauth_siem.test");

    let wrong = "not-the-es-password-42";
    let (code, out) = run_test_command(&agent_cfg(&emu, wrong, "")).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("HTTP 401") && out.contains("unable to authenticate user [sendauth]"),
        "{out}"
    );
    assert!(out.contains("check siem.auth") && !out.contains(wrong), "{out}");

    emu.push_fault(Fault::EsItems(vec![403]));
    let (code, out) = run_test_command(&good).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("HTTP 403") && out.contains("security_exception") && out.contains("create_doc"),
        "{out}"
    );

    let mut prefixed = good.clone();
    prefixed.url = emu.url().replace("/sendauth/", "/nope/sendauth/");
    let (code, out) = run_test_command(&prefixed).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("404") && out.contains("check the path in siem.url"), "{out}");

    emu.push_fault(Fault::EsItems(vec![400]));
    let (code, out) = run_test_command(&good).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("HTTP 400") && out.contains("mapper_parsing_exception"), "{out}");

    emu.push_fault(Fault::Hang(Duration::from_secs(5)));
    let mut slow = good.clone();
    slow.siem.push_str("  timeout: 500ms\n");
    let (code, out) = run_test_command(&slow).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("did not answer within"), "{out}");

    let mut closed = good.clone();
    closed.url = format!("http://127.0.0.1:{}/sendauth/_doc", free_port());
    let (code, out) = run_test_command(&closed).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("connection refused"), "{out}");
}
