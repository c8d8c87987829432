//! Tests of the shared pipeline (the crate doc): URLs, recording, every transport fault, faults
//! on control requests, body limits and Expect, keep-alive, junk input, stop and waiting.
//! Platform answers are tested in each platform's file against `docs/PROTOCOLS.md`.

use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::testkit::*;
use super::*;

const LONG: Duration = Duration::from_secs(30);

async fn post_json(emu: &Emulator, body: &str) -> reqwest::Result<reqwest::Response> {
    client()
        .post(emu.url())
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
}

#[tokio::test]
async fn url_points_at_each_platforms_ingest_path() {
    for (kind, suffix) in [
        (Kind::Generic, "/collector".to_string()),
        (Kind::SplunkHec, "/services/collector/event".to_string()),
        (Kind::Elasticsearch, "/sendauth/_doc".to_string()),
        (
            Kind::SumoLogic,
            format!("/receiver/v1/http/{}", EmulatorConfig::new(Kind::SumoLogic).sumo_token),
        ),
    ] {
        let emu = start(EmulatorConfig::new(kind)).await;
        assert_eq!(emu.url(), format!("http://{}{suffix}", emu.addr()));
        assert!(emu.addr().ip().is_loopback());
    }
}

#[tokio::test]
async fn requests_are_recorded_with_method_path_query_headers_and_status() {
    let emu = start(EmulatorConfig::new(Kind::Generic)).await;
    let r = client()
        .post(format!("{}?a=1&b=two", emu.url()))
        .header("content-type", "application/json")
        .header("X-Trace", "t-1")
        .body(r#"{"n":1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let rec = emu.requests();
    assert_eq!(rec.len(), 1);
    assert_eq!(rec[0].method, "POST");
    assert_eq!(rec[0].path, "/collector?a=1&b=two");
    assert_eq!(rec[0].header("x-trace"), Some("t-1"));
    assert!(rec[0].headers.iter().any(|(k, _)| k == "x-trace"), "names are lowercase");
    assert_eq!(rec[0].body, br#"{"n":1}"#);
    assert_eq!(rec[0].wire_bytes, 7);
    assert_eq!(rec[0].status, 200);
}

#[tokio::test]
async fn one_shot_faults_are_consumed_fifo_before_the_sticky_fault() {
    let emu = start(EmulatorConfig::new(Kind::Generic)).await;
    let status = |code: u16| Fault::Status {
        code,
        body: String::new(),
        headers: vec![],
    };
    emu.push_fault(status(500));
    emu.push_fault(status(502));
    emu.set_fault(Some(status(503)));
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(post_json(&emu, r#"{"n":1}"#).await.unwrap().status().as_u16());
    }
    assert_eq!(seen, [500, 502, 503, 503]);
    emu.set_fault(None);
    assert_eq!(post_json(&emu, r#"{"n":2}"#).await.unwrap().status(), 200);
    assert_eq!(emu.events(), vec![json!({"n":2})], "nothing is accepted under a fault");
}

#[tokio::test]
async fn status_fault_answers_with_its_body_and_headers() {
    let emu = start(EmulatorConfig::new(Kind::Generic)).await;
    emu.push_fault(Fault::Status {
        code: 429,
        body: r#"{"error":"slow down"}"#.into(),
        headers: vec![("Retry-After".into(), "7".into())],
    });
    let r = post_json(&emu, "{}").await.unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "7");
    assert_eq!(r.headers()["content-type"], "application/json; charset=UTF-8");
    assert_eq!(r.text().await.unwrap(), r#"{"error":"slow down"}"#);
    assert_eq!(emu.requests()[0].status, 429);
    assert_eq!(emu.event_count(), 0);
}

#[tokio::test]
async fn hang_fault_answers_503_only_after_the_delay() {
    let emu = start(EmulatorConfig::new(Kind::Generic)).await;
    emu.push_fault(Fault::Hang(Duration::from_millis(300)));
    let t = Instant::now();
    let r = post_json(&emu, "{}").await.unwrap();
    assert_eq!(r.status(), 503);
    assert!(t.elapsed() >= Duration::from_millis(300));
    assert_eq!(emu.event_count(), 0);
}

#[tokio::test]
async fn hang_fault_makes_a_client_time_out_and_stop_does_not_wait_for_it() {
    let emu = start(EmulatorConfig::new(Kind::Generic)).await;
    emu.push_fault(Fault::Hang(Duration::from_secs(3600)));
    let c = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let err = c
        .post(emu.url())
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    // Under load the client may give up before the server has even read the request.
    assert!(emu.wait_for_requests(1, LONG).await);
    assert_eq!(emu.requests()[0].status, 503, "recorded as soon as it was read");
    tokio::time::timeout(LONG, emu.stop())
        .await
        .expect("stop closes hanging connections");
}

#[tokio::test]
async fn slow_answer_fault_accepts_the_events_and_answers_only_after_the_delay() {
    let emu = start(EmulatorConfig::new(Kind::Generic)).await;
    emu.push_fault(Fault::SlowAnswer(Duration::from_millis(300)));
    let t = Instant::now();
    assert_eq!(post_json(&emu, r#"{"n":1}"#).await.unwrap().status(), 200);
    assert!(t.elapsed() >= Duration::from_millis(300));
    assert_eq!(emu.events(), vec![json!({"n":1})]);
    assert_eq!(emu.requests()[0].status, 200);
    // One-shot, and never put back for a later request.
    assert_eq!(post_json(&emu, r#"{"n":2}"#).await.unwrap().status(), 200);
    assert!(emu.shared.lock().faults.is_empty());
    assert_eq!(emu.event_count(), 2);
}

#[tokio::test]
async fn slow_answer_fault_records_the_events_before_the_client_gives_up() {
    let emu = start(EmulatorConfig::new(Kind::Generic)).await;
    emu.push_fault(Fault::SlowAnswer(Duration::from_secs(3600)));
    let c = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let err = c
        .post(emu.url())
        .header("content-type", "application/json")
        .body(r#"{"n":1}"#)
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert!(emu.wait_for_events(1, LONG).await, "stored although the answer never came");
    tokio::time::timeout(LONG, emu.stop())
        .await
        .expect("stop closes the held connection");
}

#[tokio::test]
async fn close_connection_fault_drops_the_connection_without_an_answer() {
    let emu = start(EmulatorConfig::new(Kind::Generic)).await;
    emu.push_fault(Fault::CloseConnection);
    let err = post_json(&emu, "{}").await.unwrap_err();
    assert!(!err.is_status(), "{err}");
    assert_eq!(emu.requests()[0].status, 0);
    assert_eq!(post_json(&emu, r#"{"n":1}"#).await.unwrap().status(), 200);
    assert_eq!(emu.event_count(), 1);
}

#[tokio::test]
async fn redirect_fault_answers_location_and_accepts_nothing() {
    let emu = start(EmulatorConfig::new(Kind::Generic)).await;
    emu.push_fault(Fault::Redirect {
        code: 308,
        location: "https://elsewhere.example.com/collector".into(),
    });
    let r = post_json(&emu, "{}").await.unwrap();
    assert_eq!(r.status(), 308);
    assert_eq!(r.headers()["location"], "https://elsewhere.example.com/collector");
    assert_eq!(emu.event_count(), 0);
}

#[tokio::test]
async fn garbage_and_huge_body_faults() {
    let emu = start(EmulatorConfig::new(Kind::SplunkHec)).await;
    emu.push_fault(Fault::Garbage);
    emu.push_fault(Fault::HugeBody(5 * 1024 * 1024 + 3));
    let r = client().post(emu.url()).body(r#"{"event":1}"#).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let b = r.bytes().await.unwrap();
    assert!(!b.is_empty());
    assert!(serde_json::from_slice::<serde_json::Value>(&b).is_err());
    let r = client().post(emu.url()).body(r#"{"event":1}"#).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.content_length(), Some(5 * 1024 * 1024 + 3));
    assert_eq!(r.bytes().await.unwrap().len(), 5 * 1024 * 1024 + 3);
    assert_eq!(emu.event_count(), 0);
}

#[tokio::test]
async fn faults_skip_control_requests() {
    let emu = start(EmulatorConfig::new(Kind::SplunkHec)).await;
    emu.push_fault(Fault::Status {
        code: 500,
        body: String::new(),
        headers: vec![],
    });
    let health = format!("http://{}/services/collector/health", emu.addr());
    assert_eq!(client().get(health).send().await.unwrap().status(), 200);
    let r = client().post(emu.url()).body(r#"{"event":1}"#).send().await.unwrap();
    assert_eq!(r.status(), 500);
}

#[tokio::test]
async fn platform_fault_on_another_kind_is_dropped_not_stuck() {
    let emu = start(EmulatorConfig::new(Kind::Generic)).await;
    emu.push_fault(Fault::EsItems(vec![429]));
    emu.push_fault(Fault::Status {
        code: 502,
        body: String::new(),
        headers: vec![],
    });
    assert_eq!(post_json(&emu, "{}").await.unwrap().status(), 200);
    assert_eq!(post_json(&emu, "{}").await.unwrap().status(), 502);
}

#[tokio::test]
async fn oversized_body_is_413_and_the_client_can_go_on() {
    let mut cfg = EmulatorConfig::new(Kind::Generic);
    cfg.max_content_length = 1024;
    let emu = start(cfg).await;
    let big = format!(r#"{{"pad":"{}"}}"#, "x".repeat(200_000));
    let r = post_json(&emu, &big).await.unwrap();
    assert_eq!(r.status(), 413);
    assert!(json_body(r).await["error"].is_string());
    let rec = &emu.requests()[0];
    assert_eq!((rec.status, rec.body.len()), (413, 0), "the body is not kept");
    assert_eq!(post_json(&emu, r#"{"n":1}"#).await.unwrap().status(), 200);
    // gzip that inflates past the limit is refused as well.
    let bomb = gzip(&vec![b' '; 10 * 1024]);
    assert!(bomb.len() < 1024);
    let r = client()
        .post(emu.url())
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(bomb)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(emu.event_count(), 1);
}

#[tokio::test]
async fn chunked_body_over_the_limit_is_413() {
    let mut cfg = EmulatorConfig::new(Kind::Generic);
    cfg.max_content_length = 100;
    let emu = start(cfg).await;
    let mut s = TcpStream::connect(emu.addr()).await.unwrap();
    let mut req = b"POST /collector HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..10 {
        req.extend_from_slice(b"40\r\n");
        req.extend_from_slice(&[b' '; 64]);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let r = exchange(&mut s, &req).await.expect("an answer");
    assert_eq!(r.status, 413);
    assert!(String::from_utf8_lossy(&r.body).contains("over the limit"));
    assert_eq!(emu.requests()[0].body, b"", "nothing past the limit is kept");
}

#[tokio::test]
async fn expect_continue_over_the_limit_is_refused_before_the_body_is_sent() {
    let mut cfg = EmulatorConfig::new(Kind::Generic);
    cfg.max_content_length = 100;
    let emu = start(cfg).await;
    let mut s = TcpStream::connect(emu.addr()).await.unwrap();
    let head =
        b"POST /collector HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\nExpect: 100-continue\r\n\r\n";
    let r = exchange(&mut s, head).await.expect("an answer without sending the body");
    assert_eq!(r.status, 413);
    assert_eq!(emu.requests()[0].wire_bytes, 0);
}

#[tokio::test]
async fn keep_alive_serves_several_requests_on_one_connection() {
    let emu = start(EmulatorConfig::new(Kind::Generic)).await;
    let mut s = TcpStream::connect(emu.addr()).await.unwrap();
    for n in 0..3 {
        let body = format!(r#"{{"n":{n}}}"#);
        let req = format!(
            "POST /collector HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let r = exchange(&mut s, req.as_bytes()).await.expect("an answer on the same connection");
        assert_eq!(r.status, 200);
        assert!(!r.headers.iter().any(|(k, v)| k == "connection" && v == "close"));
    }
    assert_eq!(emu.events(), (0..3).map(|n| json!({ "n": n })).collect::<Vec<_>>());
}

#[tokio::test]
async fn junk_input_never_takes_a_server_down() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    for kind in [Kind::Generic, Kind::SplunkHec, Kind::Elasticsearch, Kind::SumoLogic] {
        let emu = start(EmulatorConfig::new(kind)).await;
        // Not HTTP at all.
        let mut s = TcpStream::connect(emu.addr()).await.unwrap();
        s.write_all(b"\x00\xff\xfe GARBAGE\r\n\r\n").await.unwrap();
        let _ = read_response(&mut s).await;
        // HTTP with random bodies, types and encodings.
        let c = client();
        let paths = [emu.url(), format!("http://{}/_bulk", emu.addr())];
        for i in 0..60 {
            let len = rng.gen_range(0..300);
            let mut body: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            if i % 3 == 0 {
                // Near-valid JSON is more interesting than noise.
                body = b"{\"event\":{\"a\":[1,{\"b\":\"\xff\"}]}}\n{\"create\":{}}\n"[..len.min(44)].to_vec();
            }
            let ct = ["application/json", "application/x-ndjson", "text/plain", ""][i % 4];
            let ce = ["", "gzip", "deflate", "br"][(i / 4) % 4];
            let mut rb = c.post(&paths[i % 2]).body(body);
            if !ct.is_empty() {
                rb = rb.header("content-type", ct);
            }
            if !ce.is_empty() {
                rb = rb.header("content-encoding", ce);
            }
            let r = rb.send().await.expect("the server answers");
            assert!(r.status().as_u16() < 500, "{kind:?}: {}", r.status());
        }
        // Answered requests are already recorded; the non-HTTP bytes never became one.
        assert_eq!(emu.requests().len(), 60, "{kind:?}");
        assert!(emu.wait_for_requests(60, LONG).await);
        assert!(!post_json(&emu, "{}").await.unwrap().status().is_server_error());
    }
}

#[tokio::test]
async fn stop_frees_the_port_for_start_on() {
    let emu = start(EmulatorConfig::new(Kind::Generic)).await;
    let addr = emu.addr();
    // A keep-alive connection stays open in the client's pool across the stop.
    let c = client();
    let send = |c: &reqwest::Client| {
        c.post(format!("http://{addr}/collector"))
            .header("content-type", "application/json")
            .body(r#"{"n":1}"#)
            .send()
    };
    assert_eq!(send(&c).await.unwrap().status(), 200);
    emu.stop().await;
    assert!(TcpStream::connect(addr).await.is_err(), "nothing listens after stop");
    assert!(send(&client()).await.is_err());

    let emu = Emulator::start_on(addr, EmulatorConfig::new(Kind::Generic)).await.unwrap();
    assert_eq!(emu.addr(), addr);
    let mut status = send(&c).await.map(|r| r.status().as_u16());
    if status.is_err() {
        // The pooled connection died with the old server; one retry opens a fresh one.
        status = send(&c).await.map(|r| r.status().as_u16());
    }
    assert_eq!(status.unwrap(), 200);
    assert_eq!(emu.event_count(), 1, "a restarted SIEM starts empty");
    emu.stop().await;
}

#[tokio::test]
async fn wait_for_events_wakes_on_arrival_and_times_out_otherwise() {
    let emu = start(EmulatorConfig::new(Kind::Generic)).await;
    assert!(!emu.wait_for_events(1, Duration::from_millis(50)).await);
    let url = emu.url();
    let sender = tokio::spawn(async move {
        for n in 0..3 {
            client()
                .post(&url)
                .header("content-type", "application/json")
                .body(format!(r#"{{"n":{n}}}"#))
                .send()
                .await
                .unwrap();
        }
    });
    assert!(emu.wait_for_events(3, LONG).await);
    sender.await.unwrap();
    assert_eq!(emu.event_count(), 3);
}
