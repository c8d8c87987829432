//! Several requests in flight (`delivery.max_in_flight`): the real agent against a counting
//! receiver on 127.0.0.1 that can delay its answers and refuse (429) past a concurrency, and
//! counts what it saw: requests open at once, TCP connections accepted, 429s, events accepted.
//!
//! Nothing here asserts timing; every wait is on a condition with a generous deadline.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;

/// How the receiver answers.
#[derive(Clone, Copy)]
struct Behaviour {
    /// Held before answering each request.
    delay: Duration,
    /// Answer 429 to a request that arrives while this many are already open.
    max_open: Option<usize>,
}

#[derive(Default)]
struct Counts {
    open: AtomicUsize,
    max_open: AtomicUsize,
    connections: AtomicUsize,
    requests: AtomicUsize,
    refused: AtomicUsize,
    /// Transaction ids of accepted events, in arrival order.
    accepted: Mutex<Vec<String>>,
}

struct Receiver {
    url: String,
    counts: Arc<Counts>,
    _task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start(b: Behaviour) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let counts = Arc::new(Counts::default());
        let c = counts.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                c.connections.fetch_add(1, Ordering::SeqCst);
                let c = c.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| handle(c.clone(), b, req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Receiver {
            url: format!("http://{addr}/collector"),
            counts,
            _task: task,
        }
    }

    fn accepted(&self) -> Vec<String> {
        self.counts.accepted.lock().unwrap().clone()
    }

    fn accepted_count(&self) -> usize {
        self.counts.accepted.lock().unwrap().len()
    }

    fn unique(&self) -> usize {
        let mut v = self.accepted();
        v.sort();
        v.dedup();
        v.len()
    }

    fn get(&self, c: impl Fn(&Counts) -> &AtomicUsize) -> usize {
        c(&self.counts).load(Ordering::SeqCst)
    }
}

/// Decrements `open` however the request ends (answered, or the client went away).
struct OpenGuard(Arc<Counts>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn handle(
    c: Arc<Counts>,
    b: Behaviour,
    req: hyper::Request<hyper::body::Incoming>,
) -> Result<hyper::Response<Full<Bytes>>, std::convert::Infallible> {
    let open = c.open.fetch_add(1, Ordering::SeqCst) + 1;
    let _guard = OpenGuard(c.clone());
    c.max_open.fetch_max(open, Ordering::SeqCst);
    c.requests.fetch_add(1, Ordering::SeqCst);
    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let status = if b.max_open.is_some_and(|k| open > k) {
        c.refused.fetch_add(1, Ordering::SeqCst);
        429
    } else {
        // One event per request (generic, batch: none): the body is the event.
        let id = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["transaction_id"].as_str().map(str::to_string))
            .unwrap_or_else(|| "?".into());
        c.accepted.lock().unwrap().push(id);
        200
    };
    tokio::time::sleep(b.delay).await;
    let mut resp = hyper::Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
    Ok(resp)
}

fn duplicates(ids: &[String]) -> usize {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for id in ids {
        *seen.entry(id).or_default() += 1;
    }
    seen.values().map(|n| n - 1).sum()
}

fn agent_config(env: &TestEnv, url: &str, delivery_extra: &str) {
    let mut cfg = Cfg::new(url);
    cfg.socket = false;
    cfg.delivery.push_str(delivery_extra);
    env.write_config(&cfg);
}

/// Starts an agent on `rx` (with `delivery_extra` under `delivery:`), appends events
/// `0..n` to its file and waits until the receiver has accepted that many.
async fn deliver(rx: &Receiver, delivery_extra: &str, n: usize, deadline: Duration) -> (TestEnv, AgentProc) {
    let env = TestEnv::new();
    agent_config(&env, &rx.url, delivery_extra);
    let agent = AgentProc::start(&env).await;
    env.append(&(0..n).map(event).collect::<Vec<_>>());
    assert!(
        wait_until(deadline, || rx.accepted_count() >= n).await,
        "got {}\n{}",
        rx.accepted_count(),
        agent.logs()
    );
    (env, agent)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_siem_gets_many_requests_at_once_and_each_event_once() {
    let rx = Receiver::start(Behaviour {
        delay: Duration::from_millis(40),
        max_open: None,
    })
    .await;
    let (_env, agent) = deliver(&rx, "", 400, DEADLINE).await;
    agent.wait_status(DEADLINE, |s| s["queue"]["pending"] == 0).await;
    assert_eq!(sort_tx_ids(rx.accepted()), expected_ids(0..400), "each event exactly once");
    let max_open = rx.get(|c| &c.max_open);
    assert!(max_open > 4, "the receiver saw at most {max_open} requests at once");
    assert_eq!(rx.get(|c| &c.requests), 400, "no request was retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_siem_refusing_past_k_open_requests_gets_about_k_and_loses_nothing() {
    const K: usize = 4;
    const N: usize = 600;
    let rx = Receiver::start(Behaviour {
        delay: Duration::from_millis(20),
        max_open: Some(K),
    })
    .await;
    let (_env, agent) = deliver(&rx, "", N, DEADLINE * 2).await;
    agent.wait_status(DEADLINE, |s| s["queue"]["pending"] == 0).await;
    let accepted = rx.accepted();
    assert_eq!(duplicates(&accepted), 0, "no event accepted twice");
    assert_eq!(sort_tx_ids(accepted), expected_ids(0..N), "nothing lost");
    let refused = rx.get(|c| &c.refused);
    let max_open = rx.get(|c| &c.max_open);
    // The agent backs off on 429: a handful per ramp back up, not one per event.
    assert!(refused * 5 < N, "{refused} requests refused with 429 for {N} events");
    assert!(
        max_open <= 2 * K + 2,
        "the receiver saw {max_open} requests at once (refuses past {K})"
    );
    assert_eq!(rx.get(|c| &c.requests), N + refused, "every refused request was resent once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_in_flight_1_keeps_strict_order() {
    let rx = Receiver::start(Behaviour {
        delay: Duration::from_millis(2),
        max_open: None,
    })
    .await;
    let (_env, _agent) = deliver(&rx, "  max_in_flight: 1\n", 200, DEADLINE).await;
    assert_eq!(rx.accepted(), expected_ids(0..200), "arrival order is queue order");
    assert_eq!(rx.get(|c| &c.max_open), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_with_requests_in_flight_resends_at_most_those_and_loses_nothing() {
    const N: usize = 600;
    let rx = Receiver::start(Behaviour {
        delay: Duration::from_millis(50),
        max_open: None,
    })
    .await;
    let env = TestEnv::new();
    agent_config(&env, &rx.url, "");
    let mut agent = AgentProc::start(&env).await;
    env.append(&(0..N).map(event).collect::<Vec<_>>());
    // Kill it mid-stream, once several requests are open at once.
    assert!(
        wait_until(DEADLINE, || rx.accepted_count() >= 150 && rx.get(|c| &c.open) > 2).await,
        "got {} (open {})\n{}",
        rx.accepted_count(),
        rx.get(|c| &c.open),
        agent.logs()
    );
    agent.kill9();
    let open_at_kill = rx.get(|c| &c.max_open);
    let _agent = AgentProc::start(&env).await;
    assert!(
        wait_until(DEADLINE, || rx.unique() >= N).await,
        "got {} distinct events",
        rx.unique()
    );
    _agent.wait_status(DEADLINE, |s| s["queue"]["pending"] == 0).await;
    let accepted = rx.accepted();
    let mut distinct = sort_tx_ids(accepted.clone());
    distinct.dedup();
    assert_eq!(distinct, expected_ids(0..N), "nothing lost");
    // Resent: at most the requests in flight (answered or not) that were not yet acknowledged
    // as a contiguous prefix; the read-ahead window bounds that (64 one-event requests, or
    // one more than the concurrency limit).
    let dups = duplicates(&accepted);
    assert!(
        dups <= open_at_kill.max(64) + 1,
        "{dups} events resent after the crash (at most {open_at_kill} requests were open at once)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_reused_across_requests() {
    const N: usize = 2000;
    let rx = Receiver::start(Behaviour {
        delay: Duration::from_millis(2),
        max_open: None,
    })
    .await;
    let (_env, _agent) = deliver(&rx, "", N, DEADLINE * 2).await;
    assert_eq!(sort_tx_ids(rx.accepted()), expected_ids(0..N));
    let connections = rx.get(|c| &c.connections);
    let max_open = rx.get(|c| &c.max_open);
    // The pool opens a connection when none is idle at that instant, so a few more than the
    // peak seen by the server (which counts requests already read) are normal.
    assert!(
        connections <= 2 * max_open + 4 && connections * 10 <= N,
        "{connections} TCP connections for {N} requests (at most {max_open} open at once)"
    );
}
