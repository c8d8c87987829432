//! The one retry rule (src/sink/retry.rs) end to end: the real agent against the Elasticsearch
//! emulator. An event the SIEM refuses per item, forever, while its neighbours are stored,
//! counts its own failed attempts: other events' successes (several requests in flight) never
//! reset them. So `delivery.on_retry_exhausted: dead_letter` moves it to the dead letter after
//! exactly `max_retries` retries, and the default `hold` keeps it queued, retried, until the
//! SIEM takes it (ARCHITECTURE.md invariants 2 and 3).
//!
//! Checked once against the code before the rule (one attempt counter per destination, reset by
//! any success): every test here failed (the refused event was sent 6 to 8 times before it was
//! dead-lettered, and under `hold` delivery stalled short of its neighbours).

mod common;

use common::*;
use sendauth_siem_emulators::{Emulator, EmulatorConfig, ExpectedAuth, Fault, Kind, RecordedRequest};

/// The event the SIEM refuses: after 60 requests, so the agent keeps several in flight by
/// then (the adaptive limit starts at one request and grows while answers are good).
const BAD: usize = 300;
const N: usize = 600;
/// For `hold`: fewer events after the refused one than the read-ahead window holds.
const HOLD_N: usize = BAD + 40;

/// Bulk requests that carried the refused event.
fn carrying_bad(emu: &Emulator) -> Vec<RecordedRequest> {
    carrying_bad_at(emu, "/_bulk")
}

/// Requests to `path` that carried the refused event.
fn carrying_bad_at(emu: &Emulator, path: &str) -> Vec<RecordedRequest> {
    let needle = format!("\"tx-{BAD}\"");
    ingest_requests(&emu.requests(), path)
        .into_iter()
        .filter(|r| String::from_utf8_lossy(&r.body).contains(&needle))
        .collect()
}

/// Small bulks, four in flight, so that requests without the refused event keep succeeding
/// between its failures.
fn cfg(emu: &Emulator, on_exhausted: Option<&str>) -> Cfg {
    let mut c = Cfg::new(&emu.url());
    c.siem = "  elasticsearch:\n    max_batch_events: 5\n".into();
    c.delivery = "  initial_backoff: 20ms\n  max_backoff: 200ms\n  max_retries: 3\n  max_in_flight: 4\n".into();
    if let Some(v) = on_exhausted {
        c.delivery.push_str(&format!("  on_retry_exhausted: {v}\n"));
    }
    c
}

async fn refusing_one_event(status: u16) -> Emulator {
    let emu = Emulator::start(EmulatorConfig::new(Kind::Elasticsearch)).await.unwrap();
    emu.set_fault(Some(Fault::EsItemsMatching {
        contains: format!("\"tx-{BAD}\""),
        status,
    }));
    emu
}

fn all_but_bad(n: usize) -> Vec<String> {
    expected_ids(0..n).into_iter().filter(|id| *id != format!("tx-{BAD}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_item_429_forever_is_dead_lettered_after_max_retries_while_its_neighbours_succeed() {
    dead_lettered_after_max_retries(429).await;
}

/// A 5xx item is no back pressure, so requests without it keep four in flight: their successes
/// used to reset the one attempt counter the refused event shared with them, and it was sent
/// again and again instead of moving to the dead letter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_item_500_forever_is_dead_lettered_after_max_retries_whatever_other_requests_do() {
    dead_lettered_after_max_retries(500).await;
}

async fn dead_lettered_after_max_retries(status: u16) {
    let emu = refusing_one_event(status).await;
    let env = TestEnv::new();
    env.write_config(&cfg(&emu, Some("dead_letter")));
    env.append(&(0..N).map(event).collect::<Vec<_>>());
    let agent = AgentProc::start(&env).await;

    let s = agent
        .wait_status(DEADLINE, |s| s["queue"]["pending"] == 0 && s["dead_letter"]["count"] == 1)
        .await;
    assert_eq!(sorted_ids(&emu.events()), all_but_bad(N), "every neighbour stored once");
    let dl = dead_letters(&env);
    assert_eq!(dl.len(), 1, "{dl:?}");
    let ev: serde_json::Value = serde_json::from_str(dl[0]["event"].as_str().unwrap()).unwrap();
    assert_eq!(ev["transaction_id"], format!("tx-{BAD}"));
    assert_eq!(dl[0]["http_status"], status, "{dl:?}");
    let reason = dl[0]["reason"].as_str().unwrap();
    assert!(reason.contains("retries exhausted after 4 attempts"), "{reason}");
    assert_eq!(
        carrying_bad(&emu).len(),
        4,
        "the first attempt and max_retries (3) retries, counted for the event itself\n{}",
        agent.logs()
    );
    assert!(agent.logs().contains("on_retry_exhausted: dead_letter"), "{}", agent.logs());
    assert_eq!(s["dead_letter"]["count"], 1, "{s:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_hold_an_item_refused_forever_stays_queued_and_is_delivered_once_the_siem_takes_it() {
    let emu = refusing_one_event(429).await;
    let env = TestEnv::new();
    env.write_config(&cfg(&emu, None));
    env.append(&(0..HOLD_N).map(event).collect::<Vec<_>>());
    let agent = AgentProc::start(&env).await;

    // Its neighbours arrive; it is refused well past max_retries and still queued. (Hold holds:
    // delivery goes no further than the read-ahead window past it, 64 events here.)
    let want = all_but_bad(HOLD_N);
    assert!(
        wait_until(DEADLINE, || sorted_ids(&emu.events()) == want && carrying_bad(&emu).len() >= 8).await,
        "stored {} events; the refused one was sent {} times\n{}",
        emu.event_count(),
        carrying_bad(&emu).len(),
        agent.logs()
    );
    let s = agent.status().await;
    // Acknowledgements stop at it (invariant 4): it and the delivered events after it stay in
    // the queue until it is done.
    assert_eq!(s["queue"]["pending"], HOLD_N - BAD, "{s:#}");
    assert_eq!(s["dead_letter"]["count"], 0, "hold never dead-letters: {s:#}");
    assert!(agent.logs().contains("on_retry_exhausted: hold"), "{}", agent.logs());

    // The SIEM takes it: delivered, nothing lost, nothing twice.
    emu.set_fault(None);
    agent
        .wait_status(DEADLINE, |s| s["queue"]["pending"] == 0 && s["state"] == "success")
        .await;
    assert_eq!(sorted_ids(&emu.events()), expected_ids(0..HOLD_N));
    assert!(dead_letters(&env).is_empty());
}

const HEC_TOKEN: &str = "5f1e2d3c-aaaa-4bbb-8ccc-0123456789ab";

/// Splunk HEC: a 503 "Server is busy" that took part of a batch (`invalid-event-number`) and
/// refuses one event every time. The event counts its own attempts here too, and ends in the
/// dead letter after `max_retries` retries; nothing is lost: every other event is indexed or
/// (those sent together with it in its last, whole-request failures) dead-lettered beside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hec_event_refused_by_a_partial_503_forever_is_dead_lettered_after_max_retries() {
    let mut ec = EmulatorConfig::new(Kind::SplunkHec);
    ec.auth = ExpectedAuth::Header {
        name: "Authorization".into(),
        value: format!("Splunk {HEC_TOKEN}"),
    };
    ec.splunk_allowed_indexes = vec!["sendauth".into()];
    let emu = Emulator::start(ec).await.unwrap();
    emu.set_fault(Some(Fault::SplunkBusyAt {
        contains: format!("\"tx-{BAD}\""),
    }));
    let env = TestEnv::new();
    let mut c = Cfg::new(&emu.url());
    c.siem = format!(
        "  auth:\n    header: \"Authorization: Splunk {HEC_TOKEN}\"\n  splunk_hec:\n    index: sendauth\n    max_batch_events: 5\n"
    );
    c.delivery =
        "  initial_backoff: 20ms\n  max_backoff: 200ms\n  max_retries: 3\n  max_in_flight: 4\n  on_retry_exhausted: dead_letter\n".into();
    env.write_config(&c);
    env.append(&(0..N).map(event).collect::<Vec<_>>());
    let agent = AgentProc::start(&env).await;

    agent
        .wait_status(DEADLINE, |s| {
            s["queue"]["pending"] == 0 && s["dead_letter"]["count"].as_u64() >= Some(1)
        })
        .await;
    let dl = dead_letters(&env);
    let dead: Vec<String> = dl
        .iter()
        .map(|e| {
            let ev: serde_json::Value = serde_json::from_str(e["event"].as_str().unwrap()).unwrap();
            ev["transaction_id"].as_str().unwrap().to_string()
        })
        .collect();
    let bad = dl
        .iter()
        .zip(&dead)
        .find(|(_, id)| **id == format!("tx-{BAD}"))
        .map(|(e, _)| e.clone())
        .unwrap_or_else(|| panic!("the refused event is in the dead letter: {dead:?}\n{}", agent.logs()));
    assert_eq!(bad["http_status"], 503, "{bad}");
    let reason = bad["reason"].as_str().unwrap();
    assert!(reason.contains("retries exhausted after 4 attempts"), "{reason}");
    assert_eq!(
        carrying_bad_at(&emu, "/services/collector/event").len(),
        4,
        "the first attempt and max_retries (3) retries\n{}",
        agent.logs()
    );
    // Nothing lost, nothing twice: indexed and dead-lettered together are every event once.
    let mut all = tx_ids(&emu.events());
    all.extend(dead);
    assert_eq!(sort_tx_ids(all), expected_ids(0..N));
}
