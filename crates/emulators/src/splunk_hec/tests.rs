//! Tests of the Splunk HEC emulator against `docs/PROTOCOLS.md` §1: auth and codes, envelopes,
//! raw, channels and acks, partial batches, busy, compression.

use super::super::testkit::*;
use super::super::{Emulator, EmulatorConfig, ExpectedAuth, Fault, Kind};
use serde_json::{json, Value};

const TOKEN: &str = "11111111-2222-3333-4444-555555555555";
const CHANNEL: &str = "0aeeac95-ac74-4aa9-b30d-6c4c0ac581ba";

fn cfg() -> EmulatorConfig {
    let mut c = EmulatorConfig::new(Kind::SplunkHec);
    c.auth = ExpectedAuth::Header {
        name: "Authorization".into(),
        value: format!("Splunk {TOKEN}"),
    };
    c
}

async fn post(emu: &Emulator, body: &str) -> (u16, Value) {
    post_with(emu, client().post(emu.url()), body).await
}

async fn post_with(_emu: &Emulator, rb: reqwest::RequestBuilder, body: &str) -> (u16, Value) {
    let r = rb
        .header("authorization", format!("Splunk {TOKEN}"))
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

#[tokio::test]
async fn concatenated_envelopes_are_recorded_in_order() {
    let emu = start(cfg()).await;
    let body = r#"{"time":1789752345.312,"host":"idp-1","sourcetype":"_json","index":"auth","event":{"n":1}}{"event":{"n":2}}
  {"event":"three","fields":{"event_type":"transaction.verified","tags":["a","b"]}}"#;
    let (s, v) = post(&emu, body).await;
    assert_eq!((s, v), (200, json!({"text":"Success","code":0})));
    assert_eq!(emu.events(), vec![json!({"n":1}), json!({"n":2}), json!("three")]);
    let envs = emu.splunk_envelopes();
    assert_eq!(envs[0]["host"], "idp-1");
    assert_eq!(envs[0]["time"], 1789752345.312);
    assert_eq!(envs[0]["index"], "auth");
    assert_eq!(envs.len(), 3);
    let rec = &emu.requests()[0];
    assert_eq!(rec.header("authorization"), Some(format!("Splunk {TOKEN}").as_str()));
}

#[tokio::test]
async fn every_collector_path_accepts_events() {
    let emu = start(cfg()).await;
    for p in ["/services/collector", "/services/collector/event", "/services/collector/event/1.0"] {
        let url = format!("http://{}{p}", emu.addr());
        let (s, _) = post_with(&emu, client().post(url), r#"{"event":"x"}"#).await;
        assert_eq!(s, 200, "{p}");
    }
    assert_eq!(emu.event_count(), 3);
}

#[tokio::test]
async fn auth_failures_map_to_hec_codes() {
    let mut c = cfg();
    c.splunk_allowed_indexes = vec!["auth".into()];
    let emu = start(c).await;
    let hc = client();
    let send = |auth: Option<&str>, url: String| {
        let mut rb = hc.post(url).body(r#"{"event":"x"}"#);
        if let Some(a) = auth {
            rb = rb.header("authorization", a.to_string());
        }
        async move {
            let r = rb.send().await.unwrap();
            (r.status().as_u16(), json_body(r).await)
        }
    };
    let url = emu.url();
    assert_eq!(send(None, url.clone()).await, (401, json!({"text":"Token is required","code":2})));
    assert_eq!(
        send(Some(TOKEN), url.clone()).await,
        (401, json!({"text":"Invalid authorization","code":3}))
    );
    assert_eq!(
        send(Some("Splunk not-the-token"), url.clone()).await,
        (403, json!({"text":"Invalid token","code":4}))
    );
    assert_eq!(
        send(None, format!("{url}?token={TOKEN}")).await,
        (400, json!({"text":"Query string authorization is not enabled","code":16}))
    );
    assert_eq!(send(None, format!("{url}?token=bad")).await.1["code"], 4);
    // Basic with any user and the token as password is accepted (§1.2).
    let r = hc
        .post(emu.url())
        .basic_auth("anything", Some(TOKEN))
        .body(r#"{"event":"x"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(emu.event_count(), 1);

    let mut c = cfg();
    c.splunk_disabled_token = true;
    let emu = start(c).await;
    assert_eq!(
        post(&emu, r#"{"event":"x"}"#).await,
        (403, json!({"text":"Token disabled","code":1}))
    );
    assert_eq!(emu.event_count(), 0);
}

#[tokio::test]
async fn bad_envelope_accepts_only_the_prefix_and_names_its_number() {
    let mut c = cfg();
    c.splunk_allowed_indexes = vec!["auth".into()];
    let emu = start(c).await;
    let ok = |n: u32| format!(r#"{{"event":{{"n":{n}}}}}"#);
    let cases: [(&str, u16, &str); 7] = [
        (r#"{"time":1}"#, 12, "Event field is required"),
        (r#"{"event":null}"#, 12, "Event field is required"),
        (r#"{"event":""}"#, 13, "Event field cannot be blank"),
        (r#"{"event":"x","time":"1789752345"}"#, 6, "Invalid data format"),
        (r#"{"event":"x","fields":{"a":{"b":1}}}"#, 15, "Error in handling indexed fields"),
        (r#"{"event":"x","index":"main"}"#, 7, "Incorrect index"),
        (r#"{"event":"x""#, 6, "Invalid data format"),
    ];
    let mut expected_events = Vec::new();
    for (i, (bad, code, text)) in cases.iter().enumerate() {
        let i = i as u32 * 10;
        let body = format!("{}{}\n{bad}{}", ok(i), ok(i + 1), ok(i + 2));
        let (s, v) = post(&emu, &body).await;
        assert_eq!(s, 400, "{bad}");
        assert_eq!(v, json!({"text": text, "code": code, "invalid-event-number": 2}), "{bad}");
        expected_events.push(json!({ "n": i }));
        expected_events.push(json!({ "n": i + 1 }));
    }
    assert_eq!(emu.events(), expected_events);
    assert_eq!(emu.splunk_envelopes().len(), expected_events.len());
}

#[tokio::test]
async fn empty_body_is_code_5_and_arrays_are_not_envelopes() {
    let emu = start(cfg()).await;
    assert_eq!(post(&emu, "  \n").await, (400, json!({"text":"No data","code":5})));
    let (s, v) = post(&emu, r#"[{"event":"x"}]"#).await;
    assert_eq!((s, v["code"].clone(), v["invalid-event-number"].clone()), (400, json!(6), json!(0)));
    assert_eq!(emu.event_count(), 0);
}

#[tokio::test]
async fn invalid_event_number_fault_records_only_the_prefix() {
    let emu = start(cfg()).await;
    emu.push_fault(Fault::SplunkInvalidEventNumber { index: 1, code: 6 });
    let body = r#"{"event":"a"}{"event":"b"}{"event":"c"}"#;
    let (s, v) = post(&emu, body).await;
    assert_eq!(
        (s, v),
        (400, json!({"text":"Invalid data format","code":6,"invalid-event-number":1}))
    );
    assert_eq!(emu.events(), vec![json!("a")]);
    // One-shot: the resend of the rest goes through.
    let (s, _) = post(&emu, r#"{"event":"c"}"#).await;
    assert_eq!(s, 200);
    assert_eq!(emu.events(), vec![json!("a"), json!("c")]);
}

#[tokio::test]
async fn busy_fault_is_503_code_9_and_health_reports_it() {
    let emu = start(cfg()).await;
    let health = format!("http://{}/services/collector/health", emu.addr());
    let r = client().get(&health).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(json_body(r).await, json!({"text":"HEC is healthy","code":17}));
    emu.set_fault(Some(Fault::SplunkBusy));
    assert_eq!(
        post(&emu, r#"{"event":"x"}"#).await,
        (503, json!({"text":"Server is busy","code":9}))
    );
    let r = client().get(&health).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(json_body(r).await["code"], 18);
    emu.set_fault(None);
    assert_eq!(post(&emu, r#"{"event":"x"}"#).await.0, 200);
    assert_eq!(emu.event_count(), 1);
}

#[tokio::test]
async fn indexer_ack_requires_a_guid_channel_and_acks_on_the_next_poll() {
    let mut c = cfg();
    c.splunk_indexer_ack = true;
    let emu = start(c).await;
    let hc = client();
    assert_eq!(
        post(&emu, r#"{"event":"x"}"#).await,
        (400, json!({"text":"Data channel is missing","code":10}))
    );
    let bad = hc.post(emu.url()).header("x-splunk-request-channel", "not-a-guid");
    assert_eq!(
        post_with(&emu, bad, r#"{"event":"x"}"#).await,
        (400, json!({"text":"Invalid data channel","code":11}))
    );
    assert_eq!(emu.event_count(), 0);

    let with_header = hc.post(emu.url()).header("x-splunk-request-channel", CHANNEL);
    let (s, v) = post_with(&emu, with_header, r#"{"event":"a"}"#).await;
    assert_eq!((s, v), (200, json!({"text":"Success","code":0,"ackId":0})));
    let with_query = hc.post(format!("{}?channel={CHANNEL}", emu.url()));
    let (_, v) = post_with(&emu, with_query, r#"{"event":"b"}"#).await;
    assert_eq!(v["ackId"], 1);

    let ack_url = format!("http://{}/services/collector/ack?channel={CHANNEL}", emu.addr());
    let (s, v) = post_with(&emu, hc.post(&ack_url), r#"{"acks":[0,1,7]}"#).await;
    assert_eq!((s, v), (200, json!({"acks":{"0":true,"1":true,"7":false}})));
    // Read once, then forgotten.
    let (_, v) = post_with(&emu, hc.post(&ack_url), r#"{"acks":[0]}"#).await;
    assert_eq!(v, json!({"acks":{"0":false}}));
    let no_channel = format!("http://{}/services/collector/ack", emu.addr());
    assert_eq!(post_with(&emu, hc.post(no_channel), r#"{"acks":[0]}"#).await.1["code"], 10);
}

#[tokio::test]
async fn ack_never_fault_keeps_that_ack_false() {
    let mut c = cfg();
    c.splunk_indexer_ack = true;
    let emu = start(c).await;
    let hc = client();
    emu.push_fault(Fault::SplunkAckNever);
    for _ in 0..2 {
        let rb = hc.post(emu.url()).header("x-splunk-request-channel", CHANNEL);
        assert_eq!(post_with(&emu, rb, r#"{"event":"x"}"#).await.0, 200);
    }
    let ack_url = format!("http://{}/services/collector/ack", emu.addr());
    for _ in 0..3 {
        let rb = hc.post(&ack_url).header("x-splunk-request-channel", CHANNEL);
        let (_, v) = post_with(&emu, rb, r#"{"acks":[0]}"#).await;
        assert_eq!(v, json!({"acks":{"0":false}}));
    }
    let rb = hc.post(&ack_url).header("x-splunk-request-channel", CHANNEL);
    assert_eq!(post_with(&emu, rb, r#"{"acks":[1]}"#).await.1, json!({"acks":{"1":true}}));
}

#[tokio::test]
async fn ack_poll_on_a_non_ack_token_is_code_14() {
    let emu = start(cfg()).await;
    let url = format!("http://{}/services/collector/ack", emu.addr());
    assert_eq!(
        post_with(&emu, client().post(url), r#"{"acks":[0]}"#).await,
        (400, json!({"text":"ACK is disabled","code":14}))
    );
}

#[tokio::test]
async fn gzip_is_accepted_and_deflate_gets_415() {
    let emu = start(cfg()).await;
    let raw = br#"{"event":"zipped"}"#;
    let rb = client().post(emu.url()).header("content-encoding", "gzip").body(gzip(raw));
    let r = rb.header("authorization", format!("Splunk {TOKEN}")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(emu.events(), vec![json!("zipped")]);
    assert_eq!(emu.requests()[0].body, raw);
    let rb = client().post(emu.url()).header("content-encoding", "deflate").body(deflate(raw));
    let r = rb.header("authorization", format!("Splunk {TOKEN}")).send().await.unwrap();
    assert_eq!(r.status(), 415);
    assert_eq!(r.text().await.unwrap(), "");
    assert_eq!(emu.event_count(), 1);
}

#[tokio::test]
async fn body_over_max_content_length_is_413_plain_text() {
    let mut c = cfg();
    c.max_content_length = 1000;
    let emu = start(c).await;
    let body = format!(r#"{{"event":"{}"}}"#, "x".repeat(2000));
    let r = client()
        .post(emu.url())
        .header("authorization", format!("Splunk {TOKEN}"))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(
        r.text().await.unwrap(),
        format!("Content-Length of {} too large (maximum is 1000)", body.len())
    );
    assert_eq!(emu.event_count(), 0);
    assert_eq!(emu.requests()[0].status, 413);
}

#[tokio::test]
async fn raw_endpoint_takes_lines_and_needs_a_channel() {
    let emu = start(cfg()).await;
    let url = format!("http://{}/services/collector/raw?sourcetype=_json", emu.addr());
    assert_eq!(post_with(&emu, client().post(&url), "a\nb\n").await.1["code"], 10);
    let url = format!("{url}&channel={CHANNEL}");
    assert_eq!(post_with(&emu, client().post(&url), "a\r\n\nb\n").await.0, 200);
    assert_eq!(emu.events(), vec![json!("a"), json!("b")]);
    assert_eq!(emu.splunk_envelopes()[0], json!({"event":"a","sourcetype":"_json"}));
}

#[tokio::test]
async fn wrong_method_is_405_and_unknown_path_404() {
    let emu = start(cfg()).await;
    let r = client().get(emu.url()).send().await.unwrap();
    assert_eq!(r.status(), 405);
    let r = client()
        .post(format!("http://{}/services/collector/nope", emu.addr()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        json_body(r).await,
        json!({"text":"The requested URL was not found on this server.","code":404})
    );
}
