//! Unit tests of the Splunk HEC platform (the end-to-end ones are tests/platform_splunk.rs).

use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;

use super::ack::ack_status;
use super::envelope::epoch_seconds;
use super::*;
use crate::sink::platform::EventOutcome;
use crate::sink::test_server;
use std::io::Read;

use crate::sink::test_support::{config_errors, numbered};

const EV: &str = r#"{"event_type":"transaction.denied","timestamp":"2025-01-28T10:31:00.123Z","transaction_id":"tx-1","subject":"user@company.com","ip_address":"203.0.113.42","org_id":"org-1"}"#;

fn cfg() -> SplunkConfig {
    SplunkConfig {
        index: Some("sendauth".into()),
        source: "sendauth-siem".into(),
        sourcetype: "_json".into(),
        host: Some("idp-1".into()),
        gzip: false,
        max_events: 1000,
        max_bytes: 1_000_000,
        indexer_ack: false,
        ack_timeout: Duration::from_millis(300),
        ack_poll_interval: Duration::from_millis(10),
        channel: None,
    }
}

fn hec(cfg: SplunkConfig) -> SplunkHec {
    SplunkHec::new("https://splunk.example.com:8088/services/collector".parse().unwrap(), cfg)
}

fn ev(i: usize) -> QueuedEvent {
    numbered(EV, i)
}

fn evs(n: usize) -> Vec<QueuedEvent> {
    (0..n).map(ev).collect()
}

fn resp(status: u16, body: &str) -> Response {
    Response {
        status,
        headers: Default::default(),
        body: Bytes::from(body.to_string()),
    }
}

/// Splits a body of concatenated envelopes the way splunkd reads it: as a JSON stream.
fn envelopes(body: &[u8]) -> Vec<Value> {
    serde_json::Deserializer::from_slice(body)
        .into_iter::<Value>()
        .map(|v| v.unwrap())
        .collect()
}

fn failure(v: &Verdict) -> &Failure {
    match v {
        Verdict::Retry(f) | Verdict::TooLarge(f) | Verdict::Rejected(f) => f,
        other => panic!("expected a failure verdict, got {other:?}"),
    }
}

#[test]
fn envelope_carries_event_time_metadata_and_the_raw_event() {
    let h = hec(cfg());
    let r = h.encode(&evs(1));
    let body = std::str::from_utf8(&r.body).unwrap();
    assert!(body.starts_with("{\"time\":1738060260.123,"), "{body}");
    let raw = std::str::from_utf8(&ev(0).data).unwrap().to_string();
    assert!(
        body.ends_with(&format!("\"event\":{raw}}}")),
        "event bytes are not copied verbatim: {body}"
    );
    let env = &envelopes(&r.body)[0];
    assert_eq!(env["time"], serde_json::json!(1738060260.123));
    assert!(env["time"].is_f64(), "time must be a JSON number");
    assert_eq!(env["host"], "idp-1");
    assert_eq!(env["source"], "sendauth-siem");
    assert_eq!(env["sourcetype"], "_json");
    assert_eq!(env["index"], "sendauth");
    assert_eq!(env["event"]["event_type"], "transaction.denied");
    assert_eq!(r.url.path(), "/services/collector");
    assert!(r
        .headers
        .iter()
        .any(|(k, v)| k == CHANNEL_HEADER && uuid::Uuid::parse_str(v).is_ok()));
    assert!(r.headers.iter().any(|(k, v)| k == "Content-Type" && v == "application/json"));
}

#[test]
fn defaults_are_json_sourcetype_this_host_and_the_tokens_index() {
    let c = crate::config::Config::parse_with_env(
        "siem:\n  url: https://s.example.com:8088/services/collector/event\nsources:\n  socket: { path: /tmp/x.sock }\nqueue:\n  path: /tmp/q\n",
        &|_| None,
    )
    .unwrap();
    let h = hec(c.siem.splunk_hec);
    let env = &envelopes(&h.encode(&evs(1)).body)[0];
    assert_eq!(env["sourcetype"], "_json");
    assert_eq!(env["host"].as_str(), hostname().as_deref());
    assert!(env.get("index").is_none(), "no index configured: the token's default applies");
}

#[test]
fn time_keeps_milliseconds_and_handles_offsets_and_whole_seconds() {
    assert_eq!(epoch_seconds(1_738_060_260_000), "1738060260.000");
    assert_eq!(epoch_seconds(1_738_060_260_007), "1738060260.007");
    assert_eq!(epoch_seconds(-1), "-0.001");
    let h = hec(cfg());
    let e = QueuedEvent {
        seq: 1,
        data: Bytes::from(EV.replace("2025-01-28T10:31:00.123Z", "2025-01-28T11:31:00+01:00")),
        accepted_at_ms: 0,
    };
    assert_eq!(envelopes(&h.encode(&[e]).body)[0]["time"], serde_json::json!(1738060260.0));
    let bad = QueuedEvent {
        seq: 1,
        data: Bytes::from_static(b"{\"timestamp\":\"soon\"}"),
        accepted_at_ms: 0,
    };
    let env = &envelopes(&h.encode(&[bad]).body)[0];
    assert!(env.get("time").is_none(), "without any time Splunk uses its receipt time: {env}");
}

#[test]
fn batch_is_concatenated_envelopes_in_order() {
    let h = hec(cfg());
    let r = h.encode(&evs(3));
    assert_eq!(r.events, 3);
    assert!(!r.body.starts_with(b"["), "never an array");
    let envs = envelopes(&r.body);
    let ids: Vec<_> = envs
        .iter()
        .map(|e| e["event"]["transaction_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, ["tx-0", "tx-1", "tx-2"]);
    assert_eq!(r.raw_bytes, r.body.len());
}

#[test]
fn byte_cap_limits_the_batch_but_never_below_one_event() {
    let one = hec(cfg()).encode(&evs(1)).body.len();
    let mut c = cfg();
    c.max_bytes = one * 2 + 5;
    let r = hec(c.clone()).encode(&evs(5));
    assert_eq!(r.events, 2);
    assert!(r.body.len() <= c.max_bytes);
    c.max_bytes = 10;
    assert_eq!(hec(c.clone()).encode(&evs(5)).events, 1);
    c.max_bytes = 1_000_000;
    c.max_events = 3;
    assert_eq!(hec(c).encode(&evs(5)).events, 3);
}

#[test]
fn gzip_round_trips() {
    let mut c = cfg();
    c.gzip = true;
    let h = hec(c);
    let r = h.encode(&evs(4));
    assert!(r.headers.iter().any(|(k, v)| k == "Content-Encoding" && v == "gzip"));
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(&r.body[..]).read_to_end(&mut raw).unwrap();
    assert_eq!(raw.len(), r.raw_bytes);
    assert_eq!(envelopes(&raw).len(), 4);
}

#[test]
fn configured_channel_is_used_else_one_per_process() {
    let mut c = cfg();
    c.channel = Some("0aeeac95-ac74-4aa9-b30d-6c4c0ac581ba".into());
    assert_eq!(hec(c).channel(), "0aeeac95-ac74-4aa9-b30d-6c4c0ac581ba");
    assert_eq!(hec(cfg()).channel(), hec(cfg()).channel(), "a config reload keeps the channel");
}

#[test]
fn endpoints_follow_the_url() {
    let ep = |u: &str| Endpoints::from_url(&u.parse().unwrap());
    let e = ep("https://s:8088/services/collector/event?auto_extract_timestamp=true").unwrap();
    assert_eq!(
        e.event.as_str(),
        "https://s:8088/services/collector/event?auto_extract_timestamp=true"
    );
    assert_eq!(
        e.health.unwrap().as_str(),
        "https://s:8088/services/collector/health?auto_extract_timestamp=true"
    );
    assert_eq!(e.ack.unwrap().path(), "/services/collector/ack");
    let e = ep("https://proxy/splunk/services/collector").unwrap();
    assert_eq!(e.ack.unwrap().path(), "/splunk/services/collector/ack");
    let e = ep("https://s:8088").unwrap();
    assert_eq!(e.event.path(), "/services/collector/event");
    let e = ep("https://logscale/api/v1/ingest/hec").unwrap();
    assert_eq!((e.event.path(), e.health, e.ack), ("/api/v1/ingest/hec", None, None));
    assert!(ep("https://s:8088/services/collector/raw")
        .unwrap_err()
        .contains("/services/collector/event"));
}

#[test]
fn success_is_delivered() {
    let h = hec(cfg());
    assert_eq!(
        h.interpret(&evs(3), &resp(200, r#"{"text":"Success","code":0}"#)),
        Verdict::Delivered
    );
    assert_eq!(
        h.interpret(&evs(3), &resp(200, r#"{"text":"Success","code":0,"ackId":7}"#)),
        Verdict::Delivered
    );
}

#[test]
fn credential_codes_hold_with_splunks_code_and_text() {
    let h = hec(cfg());
    for (status, code, text) in [
        (403, 1, "Token disabled"),
        (401, 2, "Token is required"),
        (401, 3, "Invalid authorization"),
        (403, 4, "Invalid token"),
    ] {
        let v = h.interpret(&evs(2), &resp(status, &format!(r#"{{"text":"{text}","code":{code}}}"#)));
        let f = failure(&v);
        assert!(matches!(v, Verdict::Retry(_)), "{v:?}");
        assert_eq!((f.kind, f.http_status), (FailureKind::Credentials, Some(status)));
        let want = format!("Splunk HEC rejected the credentials: HTTP {status}, Splunk code {code} \"{text}\"; ");
        assert!(f.message.starts_with(&want), "{}", f.message);
        assert!(f.message.contains("siem.auth.header"), "{}", f.message);
    }
}

#[test]
fn partial_batch_delivers_the_prefix_dead_letters_event_n_and_resends_the_rest() {
    let h = hec(cfg());
    for (code, text) in [
        (6, "Invalid data format"),
        (12, "Event field is required"),
        (13, "Event field cannot be blank"),
        (15, "Error in handling indexed fields"),
    ] {
        let body = format!(r#"{{"text":"{text}","code":{code},"invalid-event-number":2}}"#);
        let Verdict::PerEvent(out) = h.interpret(&evs(5), &resp(400, &body)) else {
            panic!("code {code}")
        };
        assert_eq!(out.len(), 5);
        assert_eq!(
            out[..2],
            [EventOutcome::Delivered, EventOutcome::Delivered],
            "the prefix is never resent"
        );
        match &out[2] {
            EventOutcome::DeadLetter(f) => {
                assert_eq!(f.kind, FailureKind::Rejected);
                assert!(f.message.contains(&format!("Splunk code {code} \"{text}\"")), "{}", f.message);
            }
            o => panic!("event 2 should be dead-lettered, got {o:?}"),
        }
        assert!(out[3..].iter().all(|o| matches!(o, EventOutcome::Retry(_))), "{out:?}");
    }
}

#[test]
fn bad_first_event_of_a_single_event_request_is_dead_lettered() {
    let h = hec(cfg());
    let v = h.interpret(
        &evs(1),
        &resp(400, r#"{"text":"Invalid data format","code":6,"invalid-event-number":0}"#),
    );
    assert!(
        matches!(&v, Verdict::PerEvent(o) if matches!(o[..], [EventOutcome::DeadLetter(_)])),
        "{v:?}"
    );
}

#[test]
fn event_number_outside_the_request_is_ignored() {
    let h = hec(cfg());
    for n in ["3", "99", "-1", "\"x\""] {
        let v = h.interpret(
            &evs(3),
            &resp(
                400,
                &format!(r#"{{"text":"Invalid data format","code":6,"invalid-event-number":{n}}}"#),
            ),
        );
        assert!(matches!(v, Verdict::Rejected(_)), "{n}: {v:?}");
    }
    // A string number, as some receivers send it, is understood.
    let v = h.interpret(
        &evs(3),
        &resp(400, r#"{"text":"Invalid data format","code":6,"invalid-event-number":"1"}"#),
    );
    assert!(matches!(&v, Verdict::PerEvent(o) if o[0] == EventOutcome::Delivered), "{v:?}");
}

#[test]
fn format_error_without_event_number_rejects_the_batch() {
    let v = hec(cfg()).interpret(&evs(3), &resp(400, r#"{"text":"Invalid data format","code":6}"#));
    assert!(
        matches!(&v, Verdict::Rejected(f) if f.message.contains("Splunk code 6 \"Invalid data format\"")),
        "{v:?}"
    );
}

#[test]
fn incorrect_index_holds_everything_and_names_the_index() {
    let h = hec(cfg());
    // Reported one too high on splunkd: never trusted as a delivered prefix.
    let v = h.interpret(
        &evs(3),
        &resp(400, r#"{"text":"Incorrect index","code":7,"invalid-event-number":1}"#),
    );
    let f = failure(&v);
    assert!(matches!(v, Verdict::Retry(_)));
    assert_eq!(f.kind, FailureKind::Config);
    assert!(
        f.message.contains("\"sendauth\"") && f.message.contains("siem.splunk_hec.index"),
        "{}",
        f.message
    );
    assert!(f.message.contains("Splunk code 7 \"Incorrect index\""), "{}", f.message);
}

#[test]
fn busy_is_rate_limited_and_a_partial_busy_keeps_the_prefix() {
    let h = hec(cfg());
    let mut r = resp(503, r#"{"text":"Server is busy","code":9}"#);
    r.headers.insert(reqwest::header::RETRY_AFTER, "7".parse().unwrap());
    let v = h.interpret(&evs(3), &r);
    let f = failure(&v);
    assert!(matches!(v, Verdict::Retry(_)));
    assert_eq!((f.kind, f.retry_after), (FailureKind::RateLimited, Some(Duration::from_secs(7))));
    let v = h.interpret(
        &evs(3),
        &resp(503, r#"{"text":"Server is busy","code":9,"invalid-event-number":1}"#),
    );
    let Verdict::PerEvent(out) = v else { panic!("{v:?}") };
    assert_eq!(out[0], EventOutcome::Delivered);
    assert!(
        out[1..]
            .iter()
            .all(|o| matches!(o, EventOutcome::Retry(f) if f.kind == FailureKind::RateLimited)),
        "event N itself is resent: {out:?}"
    );
    let v = h.interpret(
        &evs(3),
        &resp(503, r#"{"text":"Server is busy","code":9,"invalid-event-number":0}"#),
    );
    assert!(matches!(v, Verdict::Retry(_)), "nothing taken: a plain retry with backoff");
}

#[test]
fn other_statuses() {
    let h = hec(cfg());
    let kind = |s: u16, b: &str| {
        let v = h.interpret(&evs(2), &resp(s, b));
        (std::mem::discriminant(&v), failure(&v).kind)
    };
    let retry = std::mem::discriminant(&Verdict::Retry(Failure::new(FailureKind::Network, None, "")));
    let too_large = std::mem::discriminant(&Verdict::TooLarge(Failure::new(FailureKind::Network, None, "")));
    assert_eq!(
        kind(413, "Content-Length of 9999999 too large (maximum is 1000000)"),
        (too_large, FailureKind::TooLarge)
    );
    assert_eq!(
        kind(404, r#"{"text":"The requested URL was not found on this server.","code":404}"#),
        (retry, FailureKind::NotFound)
    );
    assert_eq!(
        kind(500, r#"{"text":"Internal server error","code":8}"#),
        (retry, FailureKind::ServerError)
    );
    assert_eq!(kind(503, ""), (retry, FailureKind::ServerError));
    assert_eq!(kind(429, ""), (retry, FailureKind::RateLimited));
    assert_eq!(kind(415, ""), (retry, FailureKind::Config));
    assert_eq!(
        kind(400, r#"{"text":"Data channel is missing","code":10}"#),
        (retry, FailureKind::Config)
    );
    assert_eq!(
        kind(400, r#"{"text":"Query string authorization is not enabled","code":16}"#),
        (retry, FailureKind::Config)
    );
    assert_eq!(kind(301, ""), (retry, FailureKind::Redirect));
}

#[test]
fn config_rejects_endpoints_the_agent_cannot_use() {
    let e = config_errors("  url: https://s.example.com:8088/services/collector/raw\n");
    assert!(e.contains("siem.url: points at the HEC raw endpoint"), "{e}");
    let e = config_errors(
        "  url: https://logscale.example.com/api/v1/ingest/hec\n  platform: splunk_hec\n  splunk_hec: { indexer_ack: true }\n",
    );
    assert!(e.starts_with("siem.splunk_hec.indexer_ack: needs siem.url"), "{e}");
    assert_eq!(
        config_errors("  url: https://s.example.com:8088/services/collector\n  splunk_hec: { indexer_ack: true }\n"),
        ""
    );
}

proptest::proptest! {
    #[test]
    fn interpret_never_panics_on_garbage(status in 100u16..600, body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200), n in 0usize..4) {
        let h = hec(cfg());
        let events = evs(n.max(1));
        let _ = h.interpret(&events, &resp_bytes(status, body.clone()));
        let _ = parse_reply(&body);
        let _ = ack_status(&body, 3);
    }

    #[test]
    fn interpret_never_panics_on_odd_hec_replies(status in 100u16..600, code in -3i64..30, n in -3i64..8, events in 1usize..5) {
        let h = hec(cfg());
        let body = format!(r#"{{"text":"x","code":{code},"invalid-event-number":{n},"ackId":{n}}}"#);
        let v = h.interpret(&evs(events), &resp(status, &body));
        if let Verdict::PerEvent(out) = v {
            proptest::prop_assert_eq!(out.len(), events);
        }
    }
}

#[test]
fn a_2xx_that_is_not_a_hec_answer_is_not_taken_as_delivered() {
    let h = hec(cfg());
    assert_eq!(
        h.interpret(&evs(2), &resp(200, r#"{"text":"Success","code":0}"#)),
        Verdict::Delivered
    );
    assert_eq!(h.interpret(&evs(2), &resp(200, "")), Verdict::Delivered);
    for body in ["<html><body>Sign in</body></html>", "{\"status\":\"ok\"}", "xxxxxxxx"] {
        match h.interpret(&evs(2), &resp(200, body)) {
            Verdict::Retry(f) => {
                assert_eq!(f.kind, FailureKind::BadResponse);
                assert!(f.message.contains("not with a HEC answer"), "{}", f.message);
            }
            v => panic!("{body}: {v:?}"),
        }
    }
}

fn resp_bytes(status: u16, body: Vec<u8>) -> Response {
    Response {
        status,
        headers: Default::default(),
        body: body.into(),
    }
}

fn client_for(url: &str) -> HttpClient {
    let yaml = format!(
        "siem:\n  url: {url}\n  auth:\n    header: \"Authorization: Splunk abcdef-123456\"\nsources:\n  socket: {{ path: /tmp/x.sock }}\nqueue:\n  path: /tmp/q\n"
    );
    let c = crate::config::Config::parse_with_env(&yaml, &|_| None).unwrap();
    HttpClient::new(&c.siem).unwrap()
}

fn ack_cfg() -> SplunkConfig {
    let mut c = cfg();
    c.indexer_ack = true;
    c
}

#[tokio::test]
async fn confirm_polls_the_ack_endpoint_until_splunk_says_indexed() {
    let polls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let p = polls.clone();
    let srv = test_server::serve(move |req| {
        assert_eq!((req.method.as_str(), req.path.as_str()), ("POST", "/services/collector/ack"));
        assert_eq!(&req.body[..], br#"{"acks":[7]}"#);
        let done = p.fetch_add(1, Ordering::SeqCst) >= 2;
        (200, format!(r#"{{"acks":{{"7":{done}}}}}"#))
    })
    .await;
    let url = format!("http://{}/services/collector/event", srv.addr);
    let h = SplunkHec::new(url.parse().unwrap(), ack_cfg());
    let client = client_for(&url);
    h.confirm(&client, &resp(200, r#"{"text":"Success","code":0,"ackId":7}"#))
        .await
        .unwrap();
    assert_eq!(polls.load(Ordering::SeqCst), 3);
    let reqs = srv.requests();
    assert!(reqs.iter().all(|r| r.header(CHANNEL_HEADER) == Some(h.channel().to_string())));
    assert!(reqs
        .iter()
        .all(|r| r.header("authorization").as_deref() == Some("Splunk abcdef-123456")));
}

#[tokio::test]
async fn confirm_times_out_so_the_batch_is_resent() {
    let srv = test_server::serve(|_| (200, r#"{"acks":{"7":false}}"#.to_string())).await;
    let url = format!("http://{}/services/collector", srv.addr);
    let h = SplunkHec::new(url.parse().unwrap(), ack_cfg());
    let err = h
        .confirm(&client_for(&url), &resp(200, r#"{"text":"Success","code":0,"ackId":7}"#))
        .await
        .unwrap_err();
    assert_eq!(err.kind, FailureKind::Timeout);
    assert!(
        err.message.contains("ackId 7") && err.message.contains("siem.splunk_hec.ack_timeout"),
        "{}",
        err.message
    );
    assert!(err.message.contains("not indexed yet"), "{}", err.message);
    assert!(srv.requests().len() >= 2, "polls until the deadline");
}

#[tokio::test]
async fn confirm_trusts_the_200_when_splunk_cannot_ack() {
    let srv = test_server::serve(|_| (400, r#"{"text":"ACK is disabled","code":14}"#.to_string())).await;
    let url = format!("http://{}/services/collector", srv.addr);
    let h = SplunkHec::new(url.parse().unwrap(), ack_cfg());
    let client = client_for(&url);
    h.confirm(&client, &resp(200, r#"{"text":"Success","code":0,"ackId":1}"#))
        .await
        .unwrap();
    // No ackId at all: not even a poll.
    h.confirm(&client, &resp(200, r#"{"text":"Success","code":0}"#)).await.unwrap();
    assert_eq!(srv.requests().len(), 1);
    // Acknowledgement off: nothing to confirm.
    hec(cfg()).confirm(&client, &resp(200, r#"{"ackId":1}"#)).await.unwrap();
    assert_eq!(srv.requests().len(), 1);
}

#[tokio::test]
async fn health_check_reports_healthy_and_unhealthy() {
    let srv = test_server::serve(|req| {
        assert_eq!((req.method.as_str(), req.path.as_str()), ("GET", "/services/collector/health"));
        (200, r#"{"text":"HEC is healthy","code":17}"#.to_string())
    })
    .await;
    let url = format!("http://{}/services/collector/event", srv.addr);
    let h = SplunkHec::new(url.parse().unwrap(), cfg());
    let line = h.health_check(&client_for(&url)).await.unwrap().unwrap();
    assert!(line.contains("HEC is healthy"), "{line}");

    let srv = test_server::serve(|_| (503, r#"{"text":"HEC is unhealthy, queues are full","code":18}"#.to_string())).await;
    let url = format!("http://{}/services/collector/event", srv.addr);
    let h = SplunkHec::new(url.parse().unwrap(), cfg());
    let f = h.health_check(&client_for(&url)).await.unwrap().unwrap_err();
    assert!(f.message.contains("queues are full"), "{}", f.message);

    let srv = test_server::serve(|_| (400, r#"{"text":"Invalid token","code":21}"#.to_string())).await;
    let url = format!("http://{}/services/collector/event", srv.addr);
    let h = SplunkHec::new(url.parse().unwrap(), cfg());
    let f = h.health_check(&client_for(&url)).await.unwrap().unwrap_err();
    assert_eq!(f.kind, FailureKind::Credentials);
    assert!(!f.message.contains("abcdef-123456"));
}
