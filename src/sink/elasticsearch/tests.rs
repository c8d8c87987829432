//! Unit tests of the Elasticsearch platform (the end-to-end ones are tests/platform_elasticsearch.rs).

use super::bulk::with_at_timestamp;
use super::*;
use crate::sink::http::MAX_RESPONSE_BYTES;
use crate::sink::platform::EventOutcome;
use crate::sink::test_server;
use bytes::Bytes;
use serde_json::json;
use std::io::Read;

use crate::sink::test_support::{config_errors, numbered};

const EV: &str = r#"{"event_type":"transaction.verified","timestamp":"2025-01-28T10:31:00Z","transaction_id":"tx-1","subject":"user@company.com","ip_address":"203.0.113.42","location":{"city":"San Francisco","region":"California","country":"US"},"org_id":"org-1"}"#;

fn cfg() -> ElasticConfig {
    ElasticConfig {
        index: None,
        install_template: true,
        template_name: "sendauth-events".into(),
        data_stream: false,
        max_events: 1000,
        max_bytes: 5 * 1024 * 1024,
        gzip: false,
    }
}

fn es(cfg: ElasticConfig) -> Elasticsearch {
    Elasticsearch::new("https://es.example.com:9200/sendauth/_doc".parse().unwrap(), cfg)
}

fn ev(i: usize) -> QueuedEvent {
    numbered(EV, i)
}

fn evs(n: usize) -> Vec<QueuedEvent> {
    (0..n).map(ev).collect()
}

fn resp(status: u16, body: &str) -> Response {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("x-elastic-product", "Elasticsearch".parse().unwrap());
    Response {
        status,
        headers,
        body: Bytes::from(body.to_string()),
    }
}

fn lines(body: &[u8]) -> Vec<Value> {
    let text = std::str::from_utf8(body).unwrap();
    assert!(text.ends_with('\n'), "the bulk body must end with a newline");
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn item(status: u16, extra: &str) -> String {
    format!(r#"{{"create":{{"status":{status}{extra}}}}}"#)
}

#[test]
fn bulk_body_is_create_actions_then_the_verbatim_event() {
    let r = es(cfg()).encode(&evs(2));
    assert_eq!(r.events, 2);
    assert_eq!(r.url.path(), "/_bulk");
    assert!(r.url.query().unwrap().contains("filter_path="));
    assert!(r.headers.iter().any(|(k, v)| k == "Content-Type" && v == "application/x-ndjson"));
    let text = std::str::from_utf8(&r.body).unwrap();
    let l: Vec<&str> = text.lines().collect();
    assert_eq!(l.len(), 4);
    assert_eq!(
        l[0],
        format!(r#"{{"create":{{"_index":"sendauth","_id":"{}"}}}}"#, doc_id(&ev(0).data))
    );
    assert_eq!(l[1].as_bytes(), &ev(0).data[..], "the document is the event, byte for byte");
    assert_eq!(l[3].as_bytes(), &ev(1).data[..]);
    assert!(text.ends_with('\n'));
    assert_eq!(r.raw_bytes, r.body.len());
}

#[test]
fn ids_are_stable_for_identical_events_and_distinct_otherwise() {
    let a = lines(&es(cfg()).encode(&[ev(0)]).body);
    let b = lines(&es(cfg()).encode(&[ev(0)]).body);
    let c = lines(&es(cfg()).encode(&[ev(1)]).body);
    let id = |v: &Vec<Value>| v[0]["create"]["_id"].as_str().unwrap().to_string();
    assert_eq!(id(&a), id(&b), "a resend must reuse the _id");
    assert_ne!(id(&a), id(&c));
    assert_eq!(id(&a).len(), 43);
    assert!(id(&a).bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    // The queue position does not matter, only the event.
    let mut moved = ev(0);
    moved.seq = 999;
    assert_eq!(doc_id(&moved.data), id(&a));
}

#[test]
fn line_breaks_inside_an_event_cannot_break_the_framing() {
    let e = QueuedEvent {
        seq: 1,
        data: Bytes::from(EV.replace(",\"org_id\"", ",\r\n\"org_id\"")),
        accepted_at_ms: 0,
    };
    let l = lines(&es(cfg()).encode(&[e]).body);
    assert_eq!(l.len(), 2);
    assert_eq!(l[1]["org_id"], "org-1");
}

#[test]
fn data_stream_documents_get_at_timestamp_from_timestamp() {
    let mut c = cfg();
    c.data_stream = true;
    let l = lines(&es(c.clone()).encode(&evs(1)).body);
    assert!(l[0].get("create").is_some(), "data streams take only create");
    assert_eq!(l[1]["@timestamp"], "2025-01-28T10:31:00.000Z");
    assert_eq!(l[1]["timestamp"], "2025-01-28T10:31:00Z");
    // Normalised to what ES's default date format reads.
    let spaced = Bytes::from_static(br#"{"timestamp":"2025-01-28 11:31:00.5","x":1}"#);
    let out = with_at_timestamp(&spaced, 0);
    assert_eq!(
        &out[..],
        br#"{"@timestamp":"2025-01-28T11:31:00.500Z","timestamp":"2025-01-28 11:31:00.5","x":1}"#
    );
    // An event that already has one keeps it; an empty object stays valid.
    let has = Bytes::from_static(br#"{"@timestamp":"x","timestamp":"2025-01-28T10:31:00Z"}"#);
    assert_eq!(with_at_timestamp(&has, 0), has);
    let empty = with_at_timestamp(&Bytes::from_static(b" { } "), 1000);
    assert_eq!(
        serde_json::from_slice::<Value>(&empty).unwrap()["@timestamp"],
        "1970-01-01T00:00:01.000Z"
    );
    // Not in index mode.
    assert!(lines(&es(cfg()).encode(&evs(1)).body)[1].get("@timestamp").is_none());
}

#[test]
fn byte_cap_and_gzip_round_trip() {
    let one = es(cfg()).encode(&evs(1)).body.len();
    let mut c = cfg();
    c.max_bytes = one * 3 + 1;
    let r = es(c.clone()).encode(&evs(10));
    assert_eq!(r.events, 3);
    c.max_bytes = 10;
    assert_eq!(es(c.clone()).encode(&evs(10)).events, 1, "never below one event");
    c.max_bytes = 1 << 20;
    c.gzip = true;
    let r = es(c).encode(&evs(5));
    assert!(r.headers.iter().any(|(k, v)| k == "Content-Encoding" && v == "gzip"));
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(&r.body[..]).read_to_end(&mut raw).unwrap();
    assert_eq!(raw.len(), r.raw_bytes);
    assert_eq!(lines(&raw).len(), 10);
}

#[test]
fn target_from_urls_as_users_write_them() {
    let t = |u: &str, i: Option<&str>| Target::from_url(&u.parse().unwrap(), i);
    let a = t("https://h:9200/sendauth/_doc", None).unwrap();
    assert_eq!((a.index.as_str(), a.bulk_url().path()), ("sendauth", "/_bulk"));
    let a = t("https://proxy/es/sendauth/_create/1", None).unwrap();
    assert_eq!((a.index.as_str(), a.bulk_url().path()), ("sendauth", "/es/_bulk"));
    assert_eq!(a.template_url("tpl").path(), "/es/_index_template/tpl");
    let a = t("https://h:9200/_bulk", Some("auth-events")).unwrap();
    assert_eq!(a.index, "auth-events");
    let a = t("https://h:9200/sendauth", None).unwrap();
    assert_eq!(a.index, "sendauth");
    let a = t("https://h:9200/sendauth/_doc?pipeline=geo", Some("other")).unwrap();
    assert_eq!(a.index, "other", "the configured index wins");
    assert!(a.bulk_url().query().unwrap().starts_with("pipeline=geo&filter_path="));
    assert_eq!(t("https://h:9200/_bulk", None).unwrap_err().0, "elasticsearch.index");
    assert_eq!(t("https://h:9200/SendAuth/_doc", None).unwrap_err().0, "url");
    assert_eq!(t("https://h:9200/_bulk", Some("a b")).unwrap_err().0, "elasticsearch.index");
    assert_eq!(t("https://h:9200/x/_doc?op_type=create", None).unwrap_err().0, "url");
}

#[test]
fn mixed_bulk_items_are_judged_one_by_one() {
    let body = format!(
        r#"{{"errors":true,"items":[{},{},{},{},{}]}}"#,
        item(201, ""),
        item(
            409,
            r#","error":{"type":"version_conflict_engine_exception","reason":"[x]: version conflict, document already exists (current version [1])"}"#
        ),
        item(
            429,
            r#","error":{"type":"es_rejected_execution_exception","reason":"rejected execution of coordinating operation"}"#
        ),
        item(
            400,
            r#","error":{"type":"document_parsing_exception","reason":"[1:120] failed to parse field [ip_address] of type [ip]","caused_by":{"type":"illegal_argument_exception","reason":"'nope' is not an IP string literal."}}"#
        ),
        item(
            503,
            r#","error":{"type":"unavailable_shards_exception","reason":"primary shard is not active"}"#
        ),
    );
    let Verdict::PerEvent(out) = es(cfg()).interpret(&evs(5), &resp(200, &body)) else {
        panic!()
    };
    assert_eq!(out[0], EventOutcome::Delivered);
    assert_eq!(
        out[1],
        EventOutcome::Delivered,
        "409 on create: already indexed by an earlier attempt"
    );
    assert!(
        matches!(&out[2], EventOutcome::Retry(f) if f.kind == FailureKind::RateLimited),
        "{:?}",
        out[2]
    );
    match &out[3] {
        EventOutcome::DeadLetter(f) => {
            assert_eq!((f.kind, f.http_status), (FailureKind::Rejected, Some(400)));
            assert!(
                f.message
                    .contains("document_parsing_exception: [1:120] failed to parse field [ip_address]"),
                "{}",
                f.message
            );
            // The caused_by reason quotes the value: only its type is in the summary, the
            // dead-letter detail has it all.
            assert!(f.message.ends_with("(caused by illegal_argument_exception)"), "{}", f.message);
            assert!(!f.message.contains("nope"), "{}", f.message);
            let detail = f.detail.as_deref().unwrap_or("");
            assert!(
                detail.ends_with("(caused by illegal_argument_exception: 'nope' is not an IP string literal.)"),
                "{detail}"
            );
        }
        o => panic!("{o:?}"),
    }
    assert!(
        matches!(&out[4], EventOutcome::Retry(f) if f.kind == FailureKind::ServerError && f.message.contains("unavailable_shards_exception"))
    );
}

#[test]
fn all_created_or_errors_false_is_delivered() {
    let h = es(cfg());
    assert_eq!(h.interpret(&evs(3), &resp(200, r#"{"errors":false}"#)), Verdict::Delivered);
    let body = format!(
        r#"{{"took":3,"errors":false,"items":[{},{},{}]}}"#,
        item(201, ""),
        item(201, ""),
        item(201, "")
    );
    assert_eq!(h.interpret(&evs(3), &resp(200, &body)), Verdict::Delivered);
    let body = format!(r#"{{"errors":true,"items":[{},{}]}}"#, item(409, ""), item(201, ""));
    assert_eq!(h.interpret(&evs(2), &resp(200, &body)), Verdict::Delivered);
}

#[test]
fn a_2xx_that_is_not_a_bulk_answer_is_never_taken_as_success() {
    let h = es(cfg());
    for body in [
        "",
        "OK",
        "<html>proxy</html>",
        "[]",
        r#"{"acknowledged":true}"#,
        r#"{"errors":true}"#,
        r#"{"errors":true,"items":[{"create":{}}]}"#,
    ] {
        let v = h.interpret(&evs(1), &resp(200, body));
        assert!(
            matches!(&v, Verdict::Retry(f) if f.kind == FailureKind::BadResponse),
            "{body}: {v:?}"
        );
    }
    // One result for two documents.
    let v = h.interpret(&evs(2), &resp(200, &format!(r#"{{"errors":true,"items":[{}]}}"#, item(201, ""))));
    assert!(matches!(&v, Verdict::Retry(f) if f.kind == FailureKind::BadResponse), "{v:?}");
    // A result for a different document.
    let v = h.interpret(
        &evs(1),
        &resp(200, &format!(r#"{{"errors":true,"items":[{}]}}"#, item(201, r#","_id":"other""#))),
    );
    assert!(matches!(&v, Verdict::Retry(f) if f.kind == FailureKind::BadResponse), "{v:?}");
    // A result with the right id is fine.
    let right = format!(r#","_id":"{}""#, doc_id(&ev(0).data));
    let v = h.interpret(
        &evs(1),
        &resp(200, &format!(r#"{{"errors":true,"items":[{}]}}"#, item(201, &right))),
    );
    assert_eq!(v, Verdict::Delivered);
    // An answer cut off at the read cap: fewer events per request.
    let huge = format!(r#"{{"errors":true,"items":[{}"#, "x".repeat(MAX_RESPONSE_BYTES));
    assert!(matches!(h.interpret(&evs(1), &resp(200, &huge)), Verdict::TooLarge(_)));
}

#[test]
fn missing_product_header_is_accepted() {
    let mut r = resp(200, r#"{"errors":false}"#);
    r.headers.clear();
    assert_eq!(es(cfg()).interpret(&evs(1), &r), Verdict::Delivered);
}

#[test]
fn destination_errors_hold_instead_of_dead_lettering() {
    let body = format!(
        r#"{{"errors":true,"items":[{},{}]}}"#,
        item(
            404,
            r#","error":{"type":"index_not_found_exception","reason":"no such index [sendauth]"}"#
        ),
        item(
            400,
            r#","error":{"type":"invalid_index_name_exception","reason":"Invalid index name [SendAuth], must be lowercase"}"#
        ),
    );
    let v = es(cfg()).interpret(&evs(2), &resp(200, &body));
    assert!(
        matches!(&v, Verdict::Retry(f) if f.kind == FailureKind::Config && f.message.contains("no such index")),
        "{v:?}"
    );
    let body = format!(
        r#"{{"errors":true,"items":[{}]}}"#,
        item(
            403,
            r#","error":{"type":"security_exception","reason":"action [indices:data/write/bulk[s]] is unauthorized"}"#
        )
    );
    let v = es(cfg()).interpret(&evs(1), &resp(200, &body));
    assert!(matches!(&v, Verdict::Retry(f) if f.kind == FailureKind::Credentials), "{v:?}");
}

#[test]
fn whole_request_failures() {
    let h = es(cfg());
    let v = h.interpret(&evs(3), &resp(413, ""));
    assert!(matches!(&v, Verdict::TooLarge(f) if f.kind == FailureKind::TooLarge), "{v:?}");
    let mut r = resp(
        429,
        r#"{"error":{"root_cause":[],"type":"es_rejected_execution_exception","reason":"rejected execution of bulk"},"status":429}"#,
    );
    r.headers.insert(reqwest::header::RETRY_AFTER, "3".parse().unwrap());
    let v = h.interpret(&evs(3), &r);
    assert!(
        matches!(&v, Verdict::Retry(f) if f.kind == FailureKind::RateLimited && f.message.contains("es_rejected_execution_exception") && f.retry_after.is_some()),
        "{v:?}"
    );
    let v = h.interpret(&evs(3), &resp(401, r#"{"error":{"type":"security_exception","reason":"missing authentication credentials for REST request [/_bulk]"},"status":401}"#));
    assert!(
        matches!(&v, Verdict::Retry(f) if f.kind == FailureKind::Credentials && f.message.contains("missing authentication credentials") && f.message.contains("ApiKey")),
        "{v:?}"
    );
    let v = h.interpret(&evs(3), &resp(403, r#"{"error":{"type":"security_exception","reason":"action [indices:data/write/bulk] is unauthorized for user [siem]"},"status":403}"#));
    assert!(
        matches!(&v, Verdict::Retry(f) if f.kind == FailureKind::Credentials && f.message.contains("create_doc")),
        "{v:?}"
    );
    let v = h.interpret(&evs(3), &resp(404, ""));
    assert!(matches!(&v, Verdict::Retry(f) if f.kind == FailureKind::NotFound), "{v:?}");
    let v = h.interpret(&evs(3), &resp(503, ""));
    assert!(matches!(&v, Verdict::Retry(f) if f.kind == FailureKind::ServerError), "{v:?}");
    let v = h.interpret(&evs(3), &resp(400, r#"{"error":{"type":"illegal_argument_exception","reason":"The bulk request must be terminated by a newline [\n]"},"status":400}"#));
    assert!(
        matches!(&v, Verdict::Retry(f) if f.kind == FailureKind::Config),
        "a request-level 400 must not dead-letter events: {v:?}"
    );
    let v = h.interpret(
        &evs(3),
        &resp(
            400,
            r#"{"error":{"type":"x_content_parse_exception","reason":"[1:2] Unexpected character"},"status":400}"#,
        ),
    );
    assert!(matches!(&v, Verdict::Rejected(_)), "{v:?}");
}

#[test]
fn template_maps_the_documented_query_fields_as_keyword() {
    let t = index_template("sendauth", false);
    assert_eq!(t["index_patterns"], json!(["sendauth*"]));
    let p = &t["template"]["mappings"]["properties"];
    assert_eq!(p["event_type"]["type"], "keyword");
    assert_eq!(p["location"]["properties"]["country"]["type"], "keyword");
    assert_eq!(p["location"]["properties"]["city"]["type"], "keyword");
    assert_eq!(p["ip_address"]["type"], "ip");
    assert_eq!(p["timestamp"]["type"], "date");
    assert_eq!(p["@timestamp"]["type"], "date");
    let dt = &t["template"]["mappings"]["dynamic_templates"][0]["strings_as_keyword"];
    assert_eq!(
        (dt["match_mapping_type"].as_str(), dt["mapping"]["type"].as_str()),
        (Some("string"), Some("keyword"))
    );
    assert!(t.get("data_stream").is_none());
    assert_eq!(index_template("sendauth", true)["data_stream"], json!({}));
}

#[test]
fn config_names_the_key_to_fix() {
    let e = config_errors("  url: https://h.example.com:9200/_bulk\n");
    assert!(e.starts_with("siem.elasticsearch.index: required"), "{e}");
    let e = config_errors("  url: https://h.example.com:9200/SendAuth/_doc\n");
    assert!(
        e.starts_with("siem.url: \"SendAuth\" is not a valid Elasticsearch index name: it must be lowercase"),
        "{e}"
    );
    let e = config_errors("  url: https://h.example.com:9200/_bulk\n  elasticsearch: { index: auth, template_name: \"a b\" }\n");
    assert!(e.starts_with("siem.elasticsearch.template_name:"), "{e}");
    assert_eq!(
        config_errors("  url: https://h.example.com:9200/_bulk\n  elasticsearch: { index: auth-events }\n"),
        ""
    );
    // Only the platform in use is checked.
    assert_eq!(
        config_errors("  url: https://siem.example.com/c\n  elasticsearch: { index: BAD }\n"),
        ""
    );
}

proptest::proptest! {
    #[test]
    fn interpret_never_panics_on_garbage(status in 100u16..600, body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300), n in 1usize..4) {
        let h = es(cfg());
        let _ = h.interpret(&evs(n), &Response { status, headers: Default::default(), body: body.into() });
    }

    #[test]
    fn interpret_never_panics_on_odd_items(statuses in proptest::collection::vec(0u64..700, 1..5), errors in proptest::prelude::any::<bool>()) {
        let h = es(cfg());
        let items: Vec<String> = statuses.iter().map(|s| format!(r#"{{"index":{{"status":{s},"error":{{"type":7,"caused_by":"x"}}}}}}"#)).collect();
        let body = format!(r#"{{"errors":{errors},"items":[{}]}}"#, items.join(","));
        let v = h.interpret(&evs(statuses.len()), &resp(200, &body));
        if let Verdict::PerEvent(out) = v {
            proptest::prop_assert_eq!(out.len(), statuses.len());
        }
    }
}

fn client_for(url: &str) -> HttpClient {
    let yaml = format!(
        "siem:\n  url: {url}\n  auth:\n    basic: {{ username: siem, password: hunter2-secret }}\nsources:\n  socket: {{ path: /tmp/x.sock }}\nqueue:\n  path: /tmp/q\n"
    );
    let c = crate::config::Config::parse_with_env(&yaml, &|_| None).unwrap();
    HttpClient::new(&c.siem).unwrap()
}

#[tokio::test]
async fn prepare_installs_the_index_template() {
    let srv = test_server::serve(|_| (200, r#"{"acknowledged":true}"#.to_string())).await;
    let url = format!("http://{}/sendauth/_doc", srv.addr);
    let mut c = cfg();
    c.data_stream = true;
    let h = Elasticsearch::new(url.parse().unwrap(), c);
    h.prepare(&client_for(&url)).await.unwrap();
    let mut reqs = srv.requests();
    assert_eq!(
        (reqs[0].method.as_str(), reqs[0].path.as_str()),
        ("GET", "/"),
        "the product is read first"
    );
    reqs.remove(0);
    assert_eq!(reqs.len(), 1);
    assert_eq!(
        (reqs[0].method.as_str(), reqs[0].path.as_str()),
        ("PUT", "/_index_template/sendauth-events")
    );
    assert_eq!(reqs[0].header("content-type").as_deref(), Some("application/json"));
    assert!(reqs[0].header("authorization").unwrap().starts_with("Basic "));
    let body: Value = serde_json::from_slice(&reqs[0].body).unwrap();
    assert_eq!(body, index_template("sendauth", true));
}

#[tokio::test]
async fn prepare_does_nothing_when_the_template_is_not_wanted() {
    let srv = test_server::serve(|_| (500, String::new())).await;
    let url = format!("http://{}/sendauth/_doc", srv.addr);
    let mut c = cfg();
    c.install_template = false;
    Elasticsearch::new(url.parse().unwrap(), c)
        .prepare(&client_for(&url))
        .await
        .unwrap();
    let reqs: Vec<String> = srv.requests().iter().map(|r| format!("{} {}", r.method, r.path)).collect();
    assert_eq!(reqs, ["GET /"], "only the product is read (its failure is no error)");
}

#[tokio::test]
async fn prepare_explains_a_missing_privilege() {
    let srv = test_server::serve(|_| {
        (
            403,
            r#"{"error":{"type":"security_exception","reason":"action [indices:admin/index_template/put] is unauthorized for user [siem]"},"status":403}"#.to_string(),
        )
    })
    .await;
    let url = format!("http://{}/sendauth/_doc", srv.addr);
    let f = Elasticsearch::new(url.parse().unwrap(), cfg())
        .prepare(&client_for(&url))
        .await
        .unwrap_err();
    assert_eq!((f.kind, f.http_status), (FailureKind::Credentials, Some(403)));
    assert!(
        f.message.contains("manage_index_templates") && f.message.contains("install_template: false"),
        "{}",
        f.message
    );
    assert!(!f.message.contains("hunter2"));
}
