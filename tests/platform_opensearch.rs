//! OpenSearch end to end: the Elasticsearch platform against the emulator's OpenSearch flavour
//! (`GET /` says `"distribution":"opensearch"`, no `X-elastic-product` header, the security
//! plugin's plain 401). `platform: auto` takes the `/_doc` URL for the Elasticsearch protocol and
//! the answer of `GET /` for the product: every event arrives once, no "not Elasticsearch"
//! warning, and `sendauth-siem test` names OpenSearch and its version.

mod common;

use common::*;
use sendauth_siem_emulators::{Emulator, EmulatorConfig, ExpectedAuth, Kind, RecordedRequest};
use serde_json::json;

const USER: &str = "sendauth";
const PASSWORD: &str = "os-secret-pw-4711";

async fn opensearch() -> Emulator {
    let mut c = EmulatorConfig::new(Kind::Elasticsearch);
    c.es_opensearch = true;
    c.auth = ExpectedAuth::Basic {
        username: USER.into(),
        password: PASSWORD.into(),
    };
    Emulator::start(c).await.unwrap()
}

fn agent_cfg(emu: &Emulator, password: &str) -> Cfg {
    let mut c = Cfg::new(&emu.url());
    c.siem = format!("  platform: auto\n  auth:\n    basic: {{ username: {USER}, password: \"{password}\" }}\n");
    c
}

fn bulks(emu: &Emulator) -> Vec<RecordedRequest> {
    ingest_requests(&emu.requests(), "/_bulk")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_arrives_once_and_the_cluster_is_named_opensearch() {
    let emu = opensearch().await;
    let env = TestEnv::new();
    env.write_config(&agent_cfg(&emu, PASSWORD));
    let agent = AgentProc::start(&env).await;
    env.append(&(0..150).map(event).collect::<Vec<_>>());
    assert!(emu.wait_for_events(150, DEADLINE).await, "got {}", emu.event_count());
    let s = agent
        .wait_status(DEADLINE, |s| s["state"] == "success" && s["queue"]["pending"] == 0)
        .await;
    assert_eq!(
        s["config"]["platform"], "elasticsearch",
        "auto: /_doc speaks the Elasticsearch protocol"
    );
    let docs = emu.es_documents();
    assert_eq!(docs.len(), 150, "each event once");
    assert_eq!(
        sorted_ids(&docs.iter().map(|d| d.2.clone()).collect::<Vec<_>>()),
        expected_ids(0..150)
    );
    for r in bulks(&emu) {
        assert_eq!(r.status, 200);
        assert!(r.headers.iter().all(|(k, _)| k != "x-elastic-product"));
    }
    let templates = emu.es_templates();
    assert_eq!(templates.len(), 1, "the keyword template is installed on OpenSearch too");
    assert_eq!(templates[0].1["index_patterns"], json!(["sendauth*"]));
    let logs = agent.logs();
    assert!(logs.contains("answers as OpenSearch 2.17.1"), "{logs}");
    assert!(
        !logs.contains("X-elastic-product"),
        "an OpenSearch cluster is not reported as a stranger: {logs}"
    );
    assert_no_secrets(&agent, &[PASSWORD]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_holds_and_a_fixed_one_delivers_everything() {
    let emu = opensearch().await;
    let env = TestEnv::new();
    let wrong = "not-the-os-password";
    env.write_config(&agent_cfg(&emu, wrong));
    let agent = AgentProc::start(&env).await;
    env.append(&(0..10).map(event).collect::<Vec<_>>());
    let s = agent
        .wait_status(DEADLINE, |s| s["state"] == "error" && s["queue"]["pending"] == 10)
        .await;
    assert_eq!(s["last_error"]["http_status"], 401, "{s}");
    assert_eq!(emu.event_count(), 0);
    env.write_config(&agent_cfg(&emu, PASSWORD));
    assert!(emu.wait_for_events(10, DEADLINE).await, "{}", agent.logs());
    assert_eq!(emu.es_documents().len(), 10);
    assert_no_secrets(&agent, &[wrong, PASSWORD]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_command_names_the_product_and_version_that_answered() {
    let emu = opensearch().await;
    let (code, out) = run_test_command(&agent_cfg(&emu, PASSWORD)).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("Health check: OpenSearch 2.17.1 (cluster \"sendauth-emulator-opensearch\")"),
        "{out}"
    );
    assert!(out.contains("OK"), "{out}");
    assert_eq!(emu.es_documents().len(), 1);
    let (code, out) = run_test_command(&agent_cfg(&emu, "wrong-pw-here")).await;
    assert_ne!(code, 0);
    assert!(out.contains("HTTP 401") && out.contains("siem.auth"), "{out}");

    // The same command against Elasticsearch names Elasticsearch.
    let es = Emulator::start(EmulatorConfig::new(Kind::Elasticsearch)).await.unwrap();
    let (code, out) = run_test_command(&Cfg::new(&es.url())).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("Health check: Elasticsearch 8.15.0"), "{out}");
}
