//! Tests of the Elasticsearch emulator against `docs/PROTOCOLS.md` §2: single documents, bulk,
//! item answers and faults, auth, data streams, templates, the OpenSearch flavour.

use super::super::testkit::*;
use super::super::{Emulator, EmulatorConfig, ExpectedAuth, Fault, Kind};
use serde_json::{json, Value};

async fn bulk(emu: &Emulator, path: &str, body: &str) -> (u16, Value) {
    let r = client()
        .post(format!("http://{}{path}", emu.addr()))
        .header("content-type", "application/x-ndjson")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-elastic-product"], "Elasticsearch");
    let status = r.status().as_u16();
    (status, json_body(r).await)
}

fn statuses(v: &Value) -> Vec<u64> {
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_object().unwrap().values().next().unwrap()["status"].as_u64().unwrap())
        .collect()
}

#[tokio::test]
async fn doc_post_is_201_with_product_header_and_records_the_source() {
    let emu = start(EmulatorConfig::new(Kind::Elasticsearch)).await;
    let r = client()
        .post(emu.url())
        .header("content-type", "application/json")
        .body(r#"{"event_type":"transaction.verified","n":1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["x-elastic-product"], "Elasticsearch");
    let v: Value = json_body(r).await;
    assert_eq!(v["_index"], "sendauth");
    assert_eq!(v["result"], "created");
    assert_eq!(v["_id"].as_str().unwrap().len(), 20);
    assert_eq!(emu.events(), vec![json!({"event_type":"transaction.verified","n":1})]);
    let docs = emu.es_documents();
    assert_eq!((docs[0].0.as_str(), docs[0].1.as_str()), ("sendauth", v["_id"].as_str().unwrap()));
}

#[tokio::test]
async fn create_with_an_existing_id_is_409_and_not_duplicated() {
    let emu = start(EmulatorConfig::new(Kind::Elasticsearch)).await;
    let url = format!("http://{}/auth-events/_create/ev-1", emu.addr());
    let send = |body: &'static str| client().put(&url).header("content-type", "application/json").body(body).send();
    assert_eq!(send(r#"{"n":1}"#).await.unwrap().status(), 201);
    let r = send(r#"{"n":2}"#).await.unwrap();
    assert_eq!(r.status(), 409);
    let v: Value = json_body(r).await;
    assert_eq!(v["error"]["type"], "version_conflict_engine_exception");
    assert_eq!(v["error"]["root_cause"][0]["type"], "version_conflict_engine_exception");
    assert_eq!(v["status"], 409);
    assert_eq!(emu.es_documents(), vec![("auth-events".into(), "ev-1".into(), json!({"n":1}))]);
    assert_eq!(emu.event_count(), 1);
}

#[tokio::test]
async fn bulk_create_dedupes_by_id_with_item_409() {
    let emu = start(EmulatorConfig::new(Kind::Elasticsearch)).await;
    let body = "{\"create\":{\"_index\":\"auth-events\",\"_id\":\"a\"}}\n{\"n\":1}\n\
                {\"create\":{\"_index\":\"auth-events\",\"_id\":\"b\"}}\n{\"n\":2}\n";
    let (s, v) = bulk(&emu, "/_bulk", body).await;
    assert_eq!((s, v["errors"].clone(), statuses(&v)), (200, json!(false), vec![201, 201]));
    assert_eq!(v["items"][0]["create"]["result"], "created");
    // A resend of the same batch plus a new event: the old ids conflict, the new one lands.
    let resend = format!("{body}{{\"create\":{{\"_index\":\"auth-events\",\"_id\":\"c\"}}}}\r\n{{\"n\":3}}\r\n");
    let (s, v) = bulk(&emu, "/_bulk", &resend).await;
    assert_eq!((s, v["errors"].clone(), statuses(&v)), (200, json!(true), vec![409, 409, 201]));
    assert_eq!(v["items"][0]["create"]["error"]["type"], "version_conflict_engine_exception");
    let ids: Vec<String> = emu.es_documents().into_iter().map(|d| d.1).collect();
    assert_eq!(ids, ["a", "b", "c"]);
    assert_eq!(emu.events(), vec![json!({"n":1}), json!({"n":2}), json!({"n":3})]);
}

#[tokio::test]
async fn bulk_without_trailing_newline_is_rejected_whole() {
    let emu = start(EmulatorConfig::new(Kind::Elasticsearch)).await;
    let (s, v) = bulk(&emu, "/_bulk", "{\"create\":{\"_index\":\"x\",\"_id\":\"a\"}}\n{\"n\":1}").await;
    assert_eq!(s, 400);
    assert_eq!(v["error"]["type"], "illegal_argument_exception");
    assert_eq!(v["error"]["reason"], "The bulk request must be terminated by a newline [\\n]");
    assert_eq!(emu.event_count(), 0);
}

#[tokio::test]
async fn bulk_takes_the_default_index_from_the_path_and_index_overwrites() {
    let emu = start(EmulatorConfig::new(Kind::Elasticsearch)).await;
    let body = "{\"index\":{\"_id\":\"a\"}}\n{\"v\":1}\n{\"index\":{\"_id\":\"a\"}}\n{\"v\":2}\n{\"create\":{}}\n{\"v\":3}\n";
    let (_, v) = bulk(&emu, "/sendauth/_bulk", body).await;
    assert_eq!(statuses(&v), vec![201, 200, 201]);
    assert_eq!(v["items"][1]["index"]["result"], "updated");
    assert_eq!(v["items"][1]["index"]["_version"], 2);
    let docs = emu.es_documents();
    assert_eq!(docs.len(), 2);
    assert_eq!(docs[0], ("sendauth".into(), "a".into(), json!({"v":2})));
    assert_eq!(emu.event_count(), 3, "every accepted write is an event");
}

#[tokio::test]
async fn bulk_whole_request_errors() {
    let emu = start(EmulatorConfig::new(Kind::Elasticsearch)).await;
    let cases = [
        ("{\"create\":{\"_id\":\"a\"}}\n{}\n", "action_request_validation_exception"),
        ("{\"upsert\":{\"_index\":\"x\"}}\n{}\n", "illegal_argument_exception"),
        ("{\"create\":{\"_index\":\"x\",\"colour\":1}}\n{}\n", "illegal_argument_exception"),
        ("not json\n", "x_content_parse_exception"),
        ("\n", "action_request_validation_exception"),
    ];
    for (body, kind) in cases {
        let (s, v) = bulk(&emu, "/_bulk", body).await;
        assert_eq!((s, v["error"]["type"].as_str().unwrap()), (400, kind), "{body:?}");
    }
    let (s, v) = bulk(&emu, "/_bulk", "{\"create\":{\"_index\":\"x\"}}\n{\"n\":\n").await;
    assert_eq!((s, statuses(&v)), (200, vec![400]));
    assert_eq!(v["items"][0]["create"]["error"]["type"], "document_parsing_exception");
    let (_, v) = bulk(&emu, "/_bulk", "{\"create\":{\"_index\":\"Auth\"}}\n{}\n").await;
    assert_eq!(v["items"][0]["create"]["error"]["type"], "invalid_index_name_exception");
    assert_eq!(emu.event_count(), 0);
}

#[tokio::test]
async fn es_items_fault_injects_per_item_statuses() {
    let emu = start(EmulatorConfig::new(Kind::Elasticsearch)).await;
    emu.push_fault(Fault::EsItems(vec![201, 429, 400, 503, 409]));
    let body: String = (0..6)
        .map(|n| format!("{{\"create\":{{\"_index\":\"auth\",\"_id\":\"e{n}\"}}}}\n{{\"event_type\":\"t{n}\"}}\n"))
        .collect();
    let (_, v) = bulk(&emu, "/_bulk", &body).await;
    assert_eq!(v["errors"], true);
    assert_eq!(statuses(&v), vec![201, 429, 400, 503, 409, 201]);
    let err = |k: usize| v["items"][k]["create"]["error"].clone();
    assert_eq!(err(1)["type"], "es_rejected_execution_exception");
    assert_eq!(err(2)["type"], "mapper_parsing_exception");
    assert!(err(2)["reason"].as_str().unwrap().starts_with("failed to parse field [event_type]"));
    assert_eq!(err(3)["type"], "unavailable_shards_exception");
    assert_eq!(err(4)["type"], "version_conflict_engine_exception");
    // A 409 on create means the document exists: e4 was stored "by an earlier attempt".
    assert_eq!(
        emu.events(),
        vec![json!({"event_type":"t0"}), json!({"event_type":"t4"}), json!({"event_type":"t5"})]
    );
    // Only the failed items are resent, and now they land; e4 again is a real 409.
    let resend: String = [1, 2, 3, 4]
        .iter()
        .map(|n| format!("{{\"create\":{{\"_index\":\"auth\",\"_id\":\"e{n}\"}}}}\n{{\"event_type\":\"t{n}\"}}\n"))
        .collect();
    let (_, v) = bulk(&emu, "/_bulk", &resend).await;
    assert_eq!(statuses(&v), vec![201, 201, 201, 409]);
    assert_eq!(emu.event_count(), 6);
    assert_eq!(emu.es_documents().len(), 6);
}

#[tokio::test]
async fn es_items_fault_waits_for_a_bulk_request() {
    let emu = start(EmulatorConfig::new(Kind::Elasticsearch)).await;
    emu.push_fault(Fault::EsItems(vec![429]));
    let r = client()
        .post(emu.url())
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let (_, v) = bulk(&emu, "/_bulk", "{\"create\":{\"_index\":\"x\"}}\n{}\n").await;
    assert_eq!(statuses(&v), vec![429]);
}

#[tokio::test]
async fn data_stream_accepts_only_create_with_timestamp() {
    let mut cfg = EmulatorConfig::new(Kind::Elasticsearch);
    cfg.es_data_stream = true;
    let emu = start(cfg).await;
    let body = "{\"index\":{\"_index\":\"logs-auth-default\"}}\n{\"@timestamp\":\"2026-08-21T10:00:00Z\"}\n\
                {\"create\":{\"_index\":\"logs-auth-default\"}}\n{\"n\":1}\n\
                {\"create\":{\"_index\":\"logs-auth-default\",\"_id\":\"x\"}}\n{\"@timestamp\":\"2026-08-21T10:00:00Z\",\"n\":2}\n";
    let (_, v) = bulk(&emu, "/_bulk", body).await;
    assert_eq!(statuses(&v), vec![400, 400, 201]);
    let e0 = &v["items"][0]["index"]["error"];
    assert_eq!(e0["type"], "illegal_argument_exception");
    assert_eq!(e0["reason"], "only write ops with an op_type of create are allowed in data streams");
    let e1 = &v["items"][1]["create"]["error"];
    assert_eq!(e1["type"], "document_parsing_exception");
    assert!(e1["reason"]
        .as_str()
        .unwrap()
        .contains("data stream timestamp field [@timestamp] is missing"));
    assert!(v["items"][2]["create"]["_index"]
        .as_str()
        .unwrap()
        .starts_with(".ds-logs-auth-default-"));
    assert_eq!(emu.es_documents()[0].0, "logs-auth-default");
    assert_eq!(emu.event_count(), 1);
}

#[tokio::test]
async fn missing_or_wrong_credentials_get_401_without_product_header() {
    let mut cfg = EmulatorConfig::new(Kind::Elasticsearch);
    cfg.auth = ExpectedAuth::Basic {
        username: "elastic".into(),
        password: "changeme".into(),
    };
    let emu = start(cfg).await;
    let c = client();
    let r = c.get(format!("http://{}/", emu.addr())).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().get("x-elastic-product").is_none());
    let www: Vec<_> = r.headers().get_all("www-authenticate").iter().collect();
    assert_eq!(www.len(), 2);
    let v: Value = json_body(r).await;
    assert_eq!(v["error"]["type"], "security_exception");
    assert_eq!(v["error"]["reason"], "missing authentication credentials for REST request [/]");
    let r = c
        .get(format!("http://{}/", emu.addr()))
        .basic_auth("elastic", Some("nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = json_body(r).await;
    assert!(v["error"]["reason"]
        .as_str()
        .unwrap()
        .contains("unable to authenticate user [elastic]"));
    let r = c
        .get(format!("http://{}/", emu.addr()))
        .basic_auth("elastic", Some("changeme"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-elastic-product"], "Elasticsearch");
    assert_eq!(json_body(r).await["version"]["number"], "8.15.0");

    emu.set_auth(ExpectedAuth::Header {
        name: "Authorization".into(),
        value: "ApiKey aWQ6a2V5".into(),
    });
    let r = c
        .get(format!("http://{}/", emu.addr()))
        .header("authorization", "ApiKey aWQ6a2V5")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn index_template_is_recorded_and_readable() {
    let emu = start(EmulatorConfig::new(Kind::Elasticsearch)).await;
    let url = format!("http://{}/_index_template/auth-events", emu.addr());
    let tpl = json!({"index_patterns":["auth-events*"],"priority":200,"template":{"mappings":{}}});
    let r = client().get(&url).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let r = client()
        .put(&url)
        .header("content-type", "application/json")
        .body(tpl.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(json_body(r).await, json!({"acknowledged":true}));
    assert_eq!(emu.es_templates(), vec![("auth-events".to_string(), tpl.clone())]);
    let r = client().get(&url).send().await.unwrap();
    assert_eq!(json_body(r).await["index_templates"][0]["index_template"], tpl);
    let r = client()
        .put(&url)
        .header("content-type", "application/json")
        .body(json!({"priority":1}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn whole_request_413_and_429() {
    let mut cfg = EmulatorConfig::new(Kind::Elasticsearch);
    cfg.max_content_length = 100;
    let emu = start(cfg).await;
    let big = format!("{{\"create\":{{\"_index\":\"x\"}}}}\n{{\"pad\":\"{}\"}}\n", "y".repeat(200));
    let r = client()
        .post(format!("http://{}/_bulk", emu.addr()))
        .header("content-type", "application/x-ndjson")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    emu.push_fault(Fault::Status {
        code: 429,
        body: json!({"error":{"type":"es_rejected_execution_exception","reason":"rejected execution"},"status":429}).to_string(),
        headers: vec![],
    });
    let (s, v) = bulk(&emu, "/_bulk", "{\"create\":{\"_index\":\"x\"}}\n{}\n").await;
    assert_eq!((s, v["status"].clone()), (429, json!(429)));
    assert_eq!(emu.event_count(), 0);
}

#[tokio::test]
async fn gzip_bulk_and_missing_content_type() {
    let emu = start(EmulatorConfig::new(Kind::Elasticsearch)).await;
    let raw = b"{\"create\":{\"_index\":\"x\",\"_id\":\"1\"}}\n{\"n\":1}\n";
    let r = client()
        .post(format!("http://{}/_bulk", emu.addr()))
        .header("content-type", "application/x-ndjson")
        .header("content-encoding", "gzip")
        .body(gzip(raw))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(emu.events(), vec![json!({"n":1})]);
    let r = client()
        .post(format!("http://{}/_bulk", emu.addr()))
        .body(&raw[..])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 406);
}

#[tokio::test]
async fn unknown_path_is_404_and_wrong_method_405() {
    let emu = start(EmulatorConfig::new(Kind::Elasticsearch)).await;
    let r = client().get(format!("http://{}/_bulk", emu.addr())).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["x-elastic-product"], "Elasticsearch");
    let r = client().post(format!("http://{}/a/b/c/d", emu.addr())).send().await.unwrap();
    assert_eq!(r.status(), 404);
}
