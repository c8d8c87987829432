//! Microsoft Sentinel / Azure Monitor Logs Ingestion end to end: the real agent against the
//! emulator's token endpoint and ingestion endpoint (docs/PROTOCOLS.md §4). Every event arrives,
//! the token is renewed before it expires, a 401 renews it once and then holds, and
//! `sendauth-siem test` explains token and permission errors in plain words.

mod common;

use std::time::Duration;

use common::*;
use sendauth_siem_emulators::{Emulator, EmulatorConfig, Fault, Kind, RecordedRequest};

async fn azure(configure: impl FnOnce(&mut EmulatorConfig)) -> Emulator {
    let mut c = EmulatorConfig::new(Kind::AzureMonitor);
    configure(&mut c);
    Emulator::start(c).await.unwrap()
}

fn defaults() -> EmulatorConfig {
    EmulatorConfig::new(Kind::AzureMonitor)
}

/// The agent's config: the emulator as both the data collection endpoint and the authority.
fn agent_cfg(emu: &Emulator, tenant: &str, client_id: &str, secret: &str) -> Cfg {
    let d = defaults();
    let mut c = Cfg::new(&emu.url());
    c.siem = format!(
        "  platform: azure_monitor\n  azure_monitor:\n    dcr_immutable_id: {}\n    stream: {}\n    tenant_id: {tenant}\n    client_id: {client_id}\n    client_secret: \"{secret}\"\n    authority_host: {}\n",
        d.azure_dcr_id,
        d.azure_stream,
        emu.url()
    );
    c
}

fn good_cfg(emu: &Emulator) -> Cfg {
    let d = defaults();
    agent_cfg(emu, &d.azure_tenant_id, &d.azure_client_id, &d.azure_client_secret)
}

fn ingests(emu: &Emulator) -> Vec<RecordedRequest> {
    ingest_requests(&emu.requests(), "/dataCollectionRules/")
}

fn token_requests(emu: &Emulator) -> usize {
    emu.requests().iter().filter(|r| r.path.ends_with("/oauth2/v2.0/token")).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_arrives_once_as_gzipped_json_arrays_with_a_bearer_token() {
    let emu = azure(|_| {}).await;
    let env = TestEnv::new();
    env.write_config(&good_cfg(&emu));
    let agent = AgentProc::start(&env).await;
    env.append(&(0..250).map(event).collect::<Vec<_>>());
    let s = every_event_arrives_once(&emu, &agent, 250).await;
    assert_eq!(s["config"]["platform"], "azure_monitor");
    let mut got = emu.events();
    got.sort_by_key(|v| v["transaction_id"].as_str().unwrap().to_string());
    let mut want: Vec<serde_json::Value> = (0..250).map(event_json).collect();
    want.sort_by_key(|v| v["transaction_id"].as_str().unwrap().to_string());
    assert_eq!(got, want, "records are the events unchanged");
    let d = defaults();
    let reqs = ingests(&emu);
    assert!(reqs.len() < 250, "batched: {} calls", reqs.len());
    for r in &reqs {
        assert_eq!(r.status, 204);
        assert_eq!(
            r.path,
            format!(
                "/dataCollectionRules/{}/streams/{}?api-version=2023-01-01",
                d.azure_dcr_id, d.azure_stream
            )
        );
        assert!(r.header("authorization").unwrap().starts_with("Bearer "));
        assert_eq!(r.header("content-encoding"), Some("gzip"));
        assert!(r.body.starts_with(b"[") && r.body.len() <= 1_000_000);
    }
    assert_eq!(emu.azure_tokens_issued(), 1, "one token serves its whole life");
    let token_req = emu.requests().into_iter().find(|r| r.path.ends_with("/oauth2/v2.0/token")).unwrap();
    assert_eq!(token_req.path, format!("/{}/oauth2/v2.0/token", d.azure_tenant_id));
    let form = String::from_utf8(token_req.body.clone()).unwrap();
    assert!(form.contains("grant_type=client_credentials"), "{form}");
    assert!(form.contains("scope=https%3A%2F%2Fmonitor.azure.com%2F%2F.default"), "{form}");
    let token = reqs[0].header("authorization").unwrap().trim_start_matches("Bearer ").to_string();
    assert_no_secrets(&agent, &[&d.azure_client_secret, &token]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_lived_tokens_are_renewed_before_they_expire() {
    // Tokens live 2 s: renewed at half their life, so no call ever carries an expired one.
    let emu = azure(|c| c.azure_token_lifetime = Duration::from_secs(2)).await;
    let env = TestEnv::new();
    env.write_config(&good_cfg(&emu));
    let agent = AgentProc::start(&env).await;
    for wave in 0..4 {
        env.append(&(wave * 20..(wave + 1) * 20).map(event).collect::<Vec<_>>());
        assert!(emu.wait_for_events((wave + 1) * 20, DEADLINE).await, "{}", agent.logs());
        let issued = emu.azure_tokens_issued();
        assert!(
            wait_until(DEADLINE, || emu.azure_tokens_issued() > issued).await,
            "a renewal follows within the token's life"
        );
    }
    assert_eq!(sorted_ids(&emu.events()), expected_ids(0..80));
    assert_eq!(emu.event_count(), 80, "each event once");
    assert!(emu.azure_tokens_issued() >= 5);
    let statuses: Vec<u16> = ingests(&emu).iter().map(|r| r.status).collect();
    assert!(
        statuses.iter().all(|s| *s == 204),
        "renewed before expiry, never refused: {statuses:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_renews_the_token_once_then_holds_with_a_clear_error() {
    let emu = azure(|_| {}).await;
    let env = TestEnv::new();
    env.write_config(&good_cfg(&emu));
    let agent = AgentProc::start(&env).await;
    env.append(&(0..10).map(event).collect::<Vec<_>>());
    assert!(emu.wait_for_events(10, DEADLINE).await);
    assert_eq!(emu.azure_tokens_issued(), 1);

    // Revoked tokens: one 401, one renewal, and delivery goes on.
    emu.azure_revoke_tokens();
    env.append(&(10..20).map(event).collect::<Vec<_>>());
    assert!(emu.wait_for_events(20, DEADLINE).await, "{}", agent.logs());
    assert_eq!(emu.azure_tokens_issued(), 2, "renewed once");
    let statuses: Vec<u16> = ingests(&emu).iter().map(|r| r.status).collect();
    assert!(statuses.contains(&401), "{statuses:?}");

    // Ingestion refuses even a new token: one renewal, then it holds instead of looping.
    emu.set_fault(Some(Fault::Status {
        code: 401,
        body: "{\"error\":{\"code\":\"InvalidToken\",\"message\":\"The access token is invalid.\"}}".into(),
        headers: vec![],
    }));
    env.append(&(20..30).map(event).collect::<Vec<_>>());
    let s = agent
        .wait_status(DEADLINE, |s| {
            s["state"] == "error"
                && s["last_error"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("refused a freshly issued access token"))
        })
        .await;
    assert_eq!(s["last_error"]["http_status"], 401);
    assert_eq!(emu.azure_tokens_issued(), 3, "exactly one renewal for this 401");
    let probes = ingests(&emu).len();
    assert!(wait_until(DEADLINE, || ingests(&emu).len() >= probes + 3).await, "keeps probing");
    assert_eq!(emu.azure_tokens_issued(), 3, "no renewal loop while it holds");
    assert_eq!(s["dead_letter"]["count"], 0);

    emu.set_fault(None);
    assert!(emu.wait_for_events(30, DEADLINE).await, "{}", agent.logs());
    assert_eq!(sorted_ids(&emu.events()), expected_ids(0..30));
    assert_eq!(emu.event_count(), 30, "each event once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_holds_with_the_reason_and_never_shows_the_secret() {
    let emu = azure(|_| {}).await;
    let env = TestEnv::new();
    let d = defaults();
    let wrong = "Wr0ng~secretValue.zzz999";
    env.write_config(&agent_cfg(&emu, &d.azure_tenant_id, &d.azure_client_id, wrong));
    let agent = AgentProc::start(&env).await;
    env.append(&(0..5).map(event).collect::<Vec<_>>());
    let s = agent
        .wait_status(DEADLINE, |s| s["state"] == "error" && s["queue"]["pending"] == 5)
        .await;
    let msg = s["last_error"]["message"].as_str().unwrap();
    assert!(msg.contains("client secret is wrong") && msg.contains("not its Secret ID"), "{msg}");
    assert!(
        wait_until(DEADLINE, || token_requests(&emu) >= 3).await,
        "the token request is retried"
    );
    assert_eq!(emu.azure_tokens_issued(), 0);
    assert!(ingests(&emu).is_empty(), "nothing is sent without a token");
    assert_no_secrets(&agent, &[wrong]).await;
    env.write_config(&good_cfg(&emu));
    assert!(emu.wait_for_events(5, DEADLINE).await, "{}", agent.logs());
    assert_eq!(sorted_ids(&emu.events()), expected_ids(0..5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_command_explains_token_and_role_errors_in_plain_words() {
    let emu = azure(|_| {}).await;
    let d = defaults();
    let (code, out) = run_test_command(&good_cfg(&emu)).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("(azure_monitor)") && out.contains("got an access token") && out.contains("OK"),
        "{out}"
    );
    assert_eq!(emu.event_count(), 1);

    let wrong = "Wr0ng~secretValue.zzz999";
    let (code, out) = run_test_command(&agent_cfg(&emu, &d.azure_tenant_id, &d.azure_client_id, wrong)).await;
    assert_ne!(code, 0);
    assert!(out.contains("AADSTS7000215") && out.contains("client secret is wrong"), "{out}");
    assert!(!out.contains(wrong), "{out}");

    let stranger = "11111111-2222-3333-4444-555555555555";
    let (code, out) = run_test_command(&agent_cfg(&emu, &d.azure_tenant_id, stranger, &d.azure_client_secret)).await;
    assert_ne!(code, 0);
    assert!(out.contains("AADSTS700016") && out.contains("is not known in tenant"), "{out}");

    let (code, out) = run_test_command(&agent_cfg(
        &emu,
        "99999999-0000-0000-0000-000000000000",
        &d.azure_client_id,
        &d.azure_client_secret,
    ))
    .await;
    assert_ne!(code, 0);
    assert!(out.contains("AADSTS90002") && out.contains("does not exist"), "{out}");

    let no_role = azure(|c| c.azure_role_assigned = false).await;
    let (code, out) = run_test_command(&good_cfg(&no_role)).await;
    assert_ne!(code, 0);
    assert!(out.contains("HTTP 403") && out.contains("Monitoring Metrics Publisher"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_over_the_size_limit_413_are_split_and_429_waits_for_retry_after() {
    // An ingestion endpoint that takes at most ~8 KB per call: the first batches get 413.
    let emu = azure(|c| c.max_content_length = 8_000).await;
    emu.push_fault(Fault::Status {
        code: 429,
        body: "{\"error\":{\"code\":\"TooManyRequests\",\"message\":\"Rate limit exceeded.\"}}".into(),
        headers: vec![("Retry-After".into(), "1".into())],
    });
    let env = TestEnv::new();
    let mut c = good_cfg(&emu);
    c.siem.push_str("    gzip: false\n");
    env.write_config(&c);
    env.append(&(0..150).map(event).collect::<Vec<_>>());
    let agent = AgentProc::start(&env).await;
    every_event_arrives_once(&emu, &agent, 150).await;
    let reqs = ingests(&emu);
    let statuses: Vec<u16> = reqs.iter().map(|r| r.status).collect();
    assert!(statuses.contains(&413) && statuses.contains(&429), "{statuses:?}");
    assert!(reqs.iter().filter(|r| r.status == 204).all(|r| r.body.len() <= 8_000));
    assert_eq!(agent.status().await["dead_letter"]["count"], 0);
    assert!(agent.logs().contains("throttling"), "{}", agent.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_rotated_while_running_holds_once_the_token_expires_then_the_new_secret_delivers() {
    let emu = azure(|c| c.azure_token_lifetime = Duration::from_secs(3)).await;
    let env = TestEnv::new();
    env.write_config(&good_cfg(&emu));
    let agent = AgentProc::start(&env).await;
    env.append(&(0..10).map(event).collect::<Vec<_>>());
    assert!(emu.wait_for_events(10, DEADLINE).await, "{}", agent.logs());

    let new_secret = "N3w~rotatedSecretValue.777";
    emu.azure_rotate_secret(new_secret);
    // Renewals now fail; once the last good token has expired, delivery holds with the reason.
    let issued = emu.azure_tokens_issued();
    // The third failed renewal comes at least 1.5 + 1 + 2 s after the last token was issued:
    // past its 3 s life.
    assert!(
        wait_until(DEADLINE, || agent
            .logs()
            .matches("cannot renew the Azure Monitor access token")
            .count()
            >= 3)
        .await,
        "{}",
        agent.logs()
    );
    env.append(&(10..20).map(event).collect::<Vec<_>>());
    let s = agent
        .wait_status(DEADLINE, |s| {
            s["state"] == "error"
                && s["last_error"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("client secret is wrong"))
        })
        .await;
    assert!(s["queue"]["pending"].as_u64().unwrap() > 0, "{s}");
    assert_eq!(emu.azure_tokens_issued(), issued, "no token with the old secret");
    let d = defaults();
    assert_no_secrets(&agent, &[&d.azure_client_secret, new_secret]).await;

    env.write_config(&agent_cfg(&emu, &d.azure_tenant_id, &d.azure_client_id, new_secret));
    assert!(emu.wait_for_events(20, DEADLINE).await, "{}", agent.logs());
    assert_eq!(sorted_ids(&emu.events()), expected_ids(0..20));
    assert_eq!(emu.event_count(), 20, "each event once");
}
