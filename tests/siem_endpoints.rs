//! Several endpoints of one SIEM (`siem.url` as a list), end to end: the real agent against
//! three emulators standing for three nodes of one Elasticsearch cluster or three Splunk
//! indexers. One node dies in the middle of the stream with requests open on it, another
//! answers 503 for a while and comes back; every event must arrive exactly once (ES: distinct
//! `_id`s and documents over the three nodes) or at least once with the duplicates bounded by
//! what was in flight on the dead node (HEC with indexer acknowledgement, where an ack is only
//! ever asked of the indexer that took the batch). `/status` and `/metrics` show each node.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use common::*;
use sendauth_siem_emulators::{Emulator, EmulatorConfig, ExpectedAuth, Fault, Kind};
use serde_json::Value;

const TOKEN: &str = "0f1e2d3c-endpoints-hec-token";

/// The agent's `siem.url` as a YAML list of the emulators' URLs.
fn url_list(nodes: &[&Emulator]) -> String {
    let urls: Vec<String> = nodes.iter().map(|e| e.url()).collect();
    format!("[{}]", urls.join(", "))
}

fn endpoint<'a>(status: &'a Value, emu_url: &str) -> &'a Value {
    status["endpoints"]
        .as_array()
        .and_then(|a| a.iter().find(|e| e["url"] == emu_url))
        .unwrap_or_else(|| panic!("no endpoint {emu_url} in status: {status}"))
}

fn service_unavailable() -> Fault {
    Fault::Status {
        code: 503,
        body: r#"{"error":{"type":"unavailable_shards_exception","reason":"node is shutting down"},"status":503}"#.into(),
        headers: Vec::new(),
    }
}

/// Whether `/status` shows the endpoint `url` in `state`.
fn endpoint_is(s: &Value, url: &str, state: &str) -> bool {
    s["endpoints"]
        .as_array()
        .is_some_and(|eps| eps.iter().any(|e| e["url"] == url && e["state"] == state))
}

/// Writes events from `*next` on, 50 at a time, each round once the previous one has arrived
/// (`arrived(n)`: the first `n` events are at the SIEM), until `/status` shows `url` healthy.
/// A failing endpoint is probed with real requests once its backoff is over, so it only comes
/// back while there is something to send.
async fn feed_until_healthy(env: &TestEnv, agent: &AgentProc, url: &str, next: &mut usize, arrived: impl Fn(usize) -> bool) {
    let end = tokio::time::Instant::now() + DEADLINE;
    loop {
        env.append(&(*next..*next + 50).map(event).collect::<Vec<_>>());
        *next += 50;
        let want = *next;
        assert!(wait_until(DEADLINE, || arrived(want)).await, "events up to {want} did not arrive");
        if endpoint_is(&agent.status().await, url, "healthy") {
            return;
        }
        assert!(tokio::time::Instant::now() < end, "{url} never came back: {}", agent.status().await);
    }
}

/// `/metrics` value of `name{url="<url>"}`.
async fn endpoint_metric(port: u16, name: &str, url: &str) -> f64 {
    let (_, text) = get(port, "/metrics").await.expect("metrics answer");
    let prefix = format!("{name}{{url=\"{url}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {prefix} in /metrics:\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elasticsearch_three_nodes_one_dies_mid_stream_one_503s_every_document_exactly_once() {
    let mut a = Emulator::start(EmulatorConfig::new(Kind::Elasticsearch)).await.unwrap();
    let b = Emulator::start(EmulatorConfig::new(Kind::Elasticsearch)).await.unwrap();
    let c = Emulator::start(EmulatorConfig::new(Kind::Elasticsearch)).await.unwrap();
    let env = TestEnv::new();
    let mut cfg = Cfg::new(&url_list(&[&a, &b, &c]));
    cfg.siem = "  elasticsearch:\n    max_batch_events: 10\n".into();
    cfg.delivery = "  initial_backoff: 200ms\n  max_backoff: 1s\n  max_in_flight: 4\n  linger: 0s\n".into();
    env.write_config(&cfg);
    let agent = AgentProc::start(&env).await;

    // 1. All three healthy: requests are spread over them.
    env.append(&(0..200).map(event).collect::<Vec<_>>());
    let total = |a: &Emulator, b: &Emulator, c: &Emulator| a.es_documents().len() + b.es_documents().len() + c.es_documents().len();
    assert!(wait_until(DEADLINE, || total(&a, &b, &c) >= 200).await, "got {}", total(&a, &b, &c));
    for (name, n) in [("a", &a), ("b", &b), ("c", &c)] {
        assert!(
            !n.es_documents().is_empty(),
            "node {name} got no request: the endpoints are not used in turn"
        );
    }

    // 2. Node b answers 503; node a takes requests and never answers, then dies with them open.
    b.set_fault(Some(service_unavailable()));
    a.set_fault(Some(Fault::Hang(Duration::from_secs(3600))));
    env.append(&(200..500).map(event).collect::<Vec<_>>());
    let a_url = a.url();
    agent
        .wait_status(DEADLINE, |s| {
            s["endpoints"]
                .as_array()
                .is_some_and(|eps| eps.iter().any(|e| e["url"] == a_url && e["in_flight"].as_u64() >= Some(1)))
                && s["endpoints"]
                    .as_array()
                    .is_some_and(|eps| eps.iter().any(|e| e["url"] == b.url() && e["state"] == "failing"))
        })
        .await;
    a.halt().await;
    assert!(wait_until(DEADLINE, || total(&a, &b, &c) >= 500).await, "got {}", total(&a, &b, &c));
    let s = agent
        .wait_status(DEADLINE, |s| s["queue"]["pending"] == 0 && s["state"] == "success")
        .await;
    let ea = endpoint(&s, &a.url());
    assert_eq!(ea["state"], "failing", "{s}");
    assert!(ea["consecutive_failures"].as_u64() >= Some(1), "{s}");
    let eb = endpoint(&s, &b.url());
    assert_eq!(eb["state"], "failing", "{s}");
    assert_eq!(eb["last_error"]["http_status"], 503, "{s}");
    assert_eq!(endpoint(&s, &c.url())["state"], "healthy", "{s}");
    assert!(b.requests().iter().any(|r| r.status == 503), "b answered 503 for a while");
    assert_eq!(endpoint_metric(agent.port, "sendauth_siem_endpoint_up", &a.url()).await, 0.0);
    assert_eq!(endpoint_metric(agent.port, "sendauth_siem_endpoint_up", &c.url()).await, 1.0);

    // 3. b is back: it is probed back into rotation and takes requests again.
    let b_before = b.es_documents().len();
    b.set_fault(None);
    let mut n = 500;
    feed_until_healthy(&env, &agent, &b.url(), &mut n, |n| total(&a, &b, &c) >= n).await;
    env.append(&(n..n + 100).map(event).collect::<Vec<_>>());
    n += 100;
    assert!(wait_until(DEADLINE, || total(&a, &b, &c) >= n).await, "got {}", total(&a, &b, &c));
    let s = agent.wait_status(DEADLINE, |s| s["queue"]["pending"] == 0).await;
    assert!(b.es_documents().len() > b_before, "b went back into rotation");
    assert_eq!(endpoint(&s, &a.url())["state"], "failing", "a stays out: nothing listens there");

    // Exactly once over the cluster: every _id once, every document once, the _id the event's.
    let mut ids = Vec::new();
    let mut per_id: HashMap<String, Value> = HashMap::new();
    for node in [&a, &b, &c] {
        for (_, id, source) in node.es_documents() {
            ids.push(id.clone());
            per_id.insert(id, source);
        }
    }
    let distinct: HashSet<&String> = ids.iter().collect();
    assert_eq!(ids.len(), n, "documents over the three nodes");
    assert_eq!(distinct.len(), n, "distinct _id over the three nodes");
    for i in 0..n {
        let id = sendauth_siem::sink::elasticsearch::doc_id(event(i).as_bytes());
        assert_eq!(per_id.get(&id), Some(&event_json(i)), "event {i} is stored under its own _id");
    }
    // The SIEM as a whole never was in error: some node always accepted.
    assert_eq!(s["state"], "success");
    assert_eq!(s["recent_errors"].as_array().map(Vec::len), Some(0), "{s}");
    assert!(endpoint_metric(agent.port, "sendauth_siem_endpoint_requests_total", &b.url()).await > 0.0);
    assert!(endpoint_metric(agent.port, "sendauth_siem_endpoint_failures_total", &a.url()).await >= 1.0);
    let logs = agent.logs();
    assert!(logs.contains("a SIEM endpoint failed; out of rotation"), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn splunk_three_indexers_with_acks_one_dies_before_acking_one_busy_at_least_once_and_bounded() {
    let hec = |first_ack: u64| {
        let mut c = EmulatorConfig::new(Kind::SplunkHec);
        c.auth = ExpectedAuth::Header {
            name: "Authorization".into(),
            value: format!("Splunk {TOKEN}"),
        };
        c.splunk_indexer_ack = true;
        // Disjoint ack ids per indexer, so an ack asked of the wrong one would show.
        c.splunk_first_ack_id = first_ack;
        c
    };
    const RANGE: u64 = 1_000_000;
    let mut a = Emulator::start(hec(0)).await.unwrap();
    let b = Emulator::start(hec(RANGE)).await.unwrap();
    let c = Emulator::start(hec(2 * RANGE)).await.unwrap();
    let env = TestEnv::new();
    let mut cfg = Cfg::new(&url_list(&[&a, &b, &c]));
    cfg.siem = format!(
        "  auth:\n    header: \"Authorization: Splunk {TOKEN}\"\n  splunk_hec:\n    indexer_ack: true\n    ack_poll_interval: 50ms\n    ack_timeout: 2s\n    max_batch_events: 10\n"
    );
    let (max_in_flight, batch) = (4, 10);
    cfg.delivery = format!("  initial_backoff: 200ms\n  max_backoff: 1s\n  max_in_flight: {max_in_flight}\n  linger: 0s\n");
    env.write_config(&cfg);
    let agent = AgentProc::start(&env).await;

    env.append(&(0..200).map(event).collect::<Vec<_>>());
    let total = |a: &Emulator, b: &Emulator, c: &Emulator| a.event_count() + b.event_count() + c.event_count();
    assert!(wait_until(DEADLINE, || total(&a, &b, &c) >= 200).await, "got {}", total(&a, &b, &c));
    agent.wait_status(DEADLINE, |s| s["queue"]["pending"] == 0).await;
    for (name, n) in [("a", &a), ("b", &b), ("c", &c)] {
        assert!(n.event_count() > 0, "indexer {name} got no batch");
    }

    // b is busy (503 code 9); a indexes batches but never confirms them, then dies.
    b.set_fault(Some(Fault::SplunkBusy));
    let a_before = a.event_count();
    a.set_fault(Some(Fault::SplunkAckNever));
    env.append(&(200..500).map(event).collect::<Vec<_>>());
    assert!(wait_until(DEADLINE, || a.event_count() > a_before).await, "a took a batch");
    a.halt().await;
    // What a indexed without confirming: the only events that may come twice.
    let unconfirmed: HashSet<String> = tx_ids(&a.events()[a_before..]).into_iter().collect();
    assert!(unconfirmed.len() <= max_in_flight * batch, "{}", unconfirmed.len());

    let ids_over_all = |a: &Emulator, b: &Emulator, c: &Emulator| -> Vec<String> {
        let mut v = tx_ids(&a.events());
        v.extend(tx_ids(&b.events()));
        v.extend(tx_ids(&c.events()));
        v
    };
    let covered = |n: usize| {
        let want: HashSet<String> = expected_ids(0..n).into_iter().collect();
        let got: HashSet<String> = ids_over_all(&a, &b, &c).into_iter().collect();
        want.is_subset(&got)
    };
    assert!(wait_until(DEADLINE, || covered(500)).await, "not every event arrived");
    let s = agent
        .wait_status(DEADLINE, |s| {
            s["queue"]["pending"] == 0
                && s["endpoints"]
                    .as_array()
                    .is_some_and(|eps| eps.iter().any(|e| e["url"] == b.url() && e["state"] == "failing"))
        })
        .await;
    assert_eq!(endpoint(&s, &a.url())["state"], "failing", "{s}");
    assert_eq!(endpoint(&s, &b.url())["last_error"]["http_status"], 503, "{s}");
    assert_eq!(s["state"], "success", "{s}");

    b.set_fault(None);
    let b_before = b.event_count();
    let mut n = 500;
    feed_until_healthy(&env, &agent, &b.url(), &mut n, covered).await;
    env.append(&(n..n + 100).map(event).collect::<Vec<_>>());
    n += 100;
    assert!(wait_until(DEADLINE, || covered(n)).await, "not every event arrived");
    let s = agent.wait_status(DEADLINE, |s| s["queue"]["pending"] == 0).await;
    assert!(b.event_count() > b_before, "b went back into rotation");

    // At least once; every duplicate is an event a indexed without confirming, each at most
    // twice (a's copy and the resend).
    let all = ids_over_all(&a, &b, &c);
    let mut count: HashMap<&str, usize> = HashMap::new();
    for id in &all {
        *count.entry(id.as_str()).or_default() += 1;
    }
    assert_eq!(count.len(), n, "exactly the events written");
    for (id, n) in &count {
        if *n > 1 {
            assert!(unconfirmed.contains(*id) && *n == 2, "{id} arrived {n} times");
        }
    }
    let duplicates = all.len() - n;
    assert!(duplicates <= max_in_flight * batch, "{duplicates} duplicates");
    assert!(duplicates >= 1, "a's unconfirmed batch was resent elsewhere");

    // Each ack was asked of the indexer that issued it, on the agent's channel.
    for (i, node) in [&a, &b, &c].into_iter().enumerate() {
        let reqs = node.requests();
        let issued = ingest_requests(&reqs, "/services/collector/event")
            .iter()
            .filter(|r| r.status == 200)
            .count() as u64;
        let first = i as u64 * RANGE;
        let mut asked = 0;
        for r in reqs.iter().filter(|r| r.path.starts_with("/services/collector/ack")) {
            assert!(r.header("x-splunk-request-channel").is_some());
            let v: Value = serde_json::from_slice(&r.body).unwrap();
            for id in v["acks"].as_array().unwrap() {
                let id = id.as_u64().unwrap();
                assert!(
                    (first..first + issued).contains(&id),
                    "indexer {i} was asked for ack {id}, not one of its {issued} from {first}"
                );
                asked += 1;
            }
        }
        assert!(asked > 0, "indexer {i} was asked for its acks");
    }
    assert_eq!(s["recent_errors"].as_array().map(Vec::len), Some(0), "{s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_command_tries_every_endpoint_and_names_the_one_that_fails() {
    let up = Emulator::start(EmulatorConfig::new(Kind::Elasticsearch)).await.unwrap();
    let mut down = Emulator::start(EmulatorConfig::new(Kind::Elasticsearch)).await.unwrap();
    let cfg = Cfg::new(&url_list(&[&up, &down]));
    let (code, out) = run_test_command(&cfg).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.matches("OK: the SIEM accepted the test event").count(), 2, "{out}");
    down.halt().await;
    let (code, out) = run_test_command(&cfg).await;
    assert_ne!(code, 0, "{out}");
    let (first, second) = out.split_at(out.find(&format!("Testing {}", down.url())).expect("second endpoint tested"));
    assert!(first.contains(&format!("Testing {}", up.url())) && first.contains("OK:"), "{out}");
    assert!(second.contains("FAILED") && second.contains("connection refused"), "{out}");
    assert!(out.contains("Not every endpoint accepted the test event"), "{out}");
}
