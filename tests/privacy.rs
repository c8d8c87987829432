//! Privacy transforms through the real binary: pseudonymised subjects stay countable at the
//! SIEM, IP addresses arrive truncated, dropped fields never arrive, raw identifiers never reach
//! the on-disk queue, and a transform change applies to events accepted after it.

mod common;

use std::collections::BTreeMap;

use common::*;
use sendauth_siem::transform::hmac_hex;
use sendauth_siem_emulators::{Emulator, EmulatorConfig, Fault, Kind};

const KEY: &str = "test-pseudonym-key-0123456789";

/// A verified event: subject `user{i % 3}`, a per-event IP, and a location.
fn verified(i: usize) -> String {
    format!(
        r#"{{"event_type":"transaction.verified","timestamp":"2025-01-28T10:31:{:02}Z","transaction_id":"tx-{i}","subject":"user{}@company.com","ip_address":"203.0.113.{}","location":{{"city":"San Francisco","region":"California","country":"US"}},"org_id":"org-1"}}"#,
        i % 60,
        i % 3,
        100 + i
    )
}

fn transform_yaml(extra_hash: &str) -> String {
    format!(
        "transform:\n  drop: [location.city]\n  truncate_ip:\n    fields: [ip_address]\n  hash:\n    fields: [subject{extra_hash}]\n    key: \"${{PSEUDONYM_KEY}}\"\n"
    )
}

/// Every file under `dir`, concatenated (the sled queue's bytes on disk).
fn bytes_under(dir: &std::path::Path) -> Vec<u8> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(bytes_under(&p));
        } else if let Ok(b) = std::fs::read(&p) {
            out.extend(b);
        }
    }
    out
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subjects_are_pseudonymised_consistently_and_ips_truncated_before_the_queue() {
    let emu = Emulator::start(EmulatorConfig::new(Kind::Generic)).await.unwrap();
    // The SIEM is down at first, so the events sit in the queue on disk.
    emu.set_fault(Some(Fault::Status {
        code: 503,
        body: "down".into(),
        headers: vec![],
    }));
    let env = TestEnv::new();
    let mut c = Cfg::new(&emu.url());
    c.extra = transform_yaml("");
    env.write_config(&c);
    let vars = [("PSEUDONYM_KEY", KEY)];
    let mut agent = AgentProc::start_with_env(&env, &vars).await;
    env.append(&(0..6).map(verified).collect::<Vec<_>>());
    agent.wait_status(DEADLINE, |s| s["queue"]["pending"] == 6).await;
    let answer = socket_send(&env.socket, &(6..9).map(verified).collect::<Vec<_>>()).await;
    assert_eq!(answer.last().unwrap()["accepted"], 3, "{answer:?}");
    agent.wait_status(DEADLINE, |s| s["queue"]["pending"] == 9).await;
    agent.term();

    let disk = bytes_under(&env.queue);
    for raw in ["user0@company.com", "user1@company.com", "203.0.113.10", "San Francisco"] {
        assert!(!contains(&disk, raw), "{raw:?} reached the on-disk queue");
    }
    assert!(contains(&disk, &hmac_hex(KEY.as_bytes(), b"user0@company.com")));

    emu.set_fault(None);
    let agent = AgentProc::start_with_env(&env, &vars).await;
    assert!(emu.wait_for_events(9, DEADLINE).await, "{}", agent.logs());
    let events = emu.events();
    // Each event once (several requests in flight may reorder them).
    assert_eq!(sorted_ids(&events), expected_ids(0..9));
    let mut by_subject: BTreeMap<String, usize> = BTreeMap::new();
    for e in &events {
        let i: usize = e["transaction_id"]
            .as_str()
            .and_then(|t| t.strip_prefix("tx-")?.parse().ok())
            .unwrap();
        let subject = e["subject"].as_str().unwrap();
        assert_eq!(subject, hmac_hex(KEY.as_bytes(), format!("user{}@company.com", i % 3).as_bytes()));
        *by_subject.entry(subject.to_string()).or_default() += 1;
        assert_eq!(e["ip_address"], "203.0.113.0");
        assert_eq!(e["location"], serde_json::json!({"region": "California", "country": "US"}));
        assert_eq!(e["org_id"], "org-1");
        assert_eq!(e["event_type"], "transaction.verified");
    }
    // `stats count by subject` still works: three people, three events each.
    assert_eq!(by_subject.values().copied().collect::<Vec<_>>(), [3, 3, 3]);
    // Field order is kept (the generic emulator records the body as sent).
    let body = String::from_utf8(emu.requests().last().unwrap().body.clone()).unwrap();
    assert!(body.starts_with(r#"{"event_type":"transaction.verified","timestamp":"#), "{body}");
    drop(agent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transform_change_reaches_the_sources_on_reload() {
    let emu = Emulator::start(EmulatorConfig::new(Kind::Generic)).await.unwrap();
    let env = TestEnv::new();
    let c = Cfg::new(&emu.url());
    env.write_config(&c);
    let vars = [("PSEUDONYM_KEY", KEY)];
    let agent = AgentProc::start_with_env(&env, &vars).await;
    env.append(&[verified(0)]);
    assert!(emu.wait_for_events(1, DEADLINE).await);
    assert_eq!(emu.events()[0]["subject"], "user0@company.com", "no transform configured yet");

    let mut c2 = c.clone();
    c2.extra = transform_yaml(", transaction_id");
    env.write_config(&c2);
    // The file source restarts with the new rules: wait until the new one is tailing.
    let restarted = wait_until(DEADLINE, || agent.logs().matches("tailing").count() >= 2).await;
    assert!(restarted, "the file source did not restart; log:\n{}", agent.logs());
    env.append(&[verified(1), verified(2)]);
    assert!(emu.wait_for_events(3, DEADLINE).await, "{}", agent.logs());
    let events = emu.events();
    for (i, e) in events.iter().enumerate().skip(1) {
        assert_eq!(e["transaction_id"], hmac_hex(KEY.as_bytes(), format!("tx-{i}").as_bytes()));
        assert_eq!(
            e["subject"],
            hmac_hex(KEY.as_bytes(), format!("user{}@company.com", i % 3).as_bytes())
        );
        assert_eq!(e["ip_address"], "203.0.113.0");
    }
    // Nothing was lost or duplicated across the restart of the source.
    assert_eq!(emu.event_count(), 3);
    assert!(agent.logs().contains("stopping the file source (config changed)"));
}
