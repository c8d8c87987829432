//! `siem.schema` through the real binary: each schema on each platform (generic, Splunk HEC,
//! Elasticsearch, Sumo Logic emulators), field by field for the four SendAuth event types, with
//! the audit stamp; the Elasticsearch index template per schema; the HEC sourcetype for CIM;
//! and `sendauth-siem test` sending its event in the chosen schema.

mod common;

use common::*;
use sendauth_siem_emulators::{Emulator, EmulatorConfig, Kind};
use serde_json::{json, Value};

const CREATED: &str = r#"{"event_type":"transaction.created","timestamp":"2025-01-28T10:30:00Z","transaction_id":"tx-c","requestor":"admin@company.com","subject":"user@company.com","context":"AWS Console Access","org_id":"org-1"}"#;
const VERIFIED: &str = r#"{"event_type":"transaction.verified","timestamp":"2025-01-28T10:31:00Z","transaction_id":"tx-v","subject":"user@company.com","ip_address":"203.0.113.42","location":{"city":"San Francisco","region":"California","country":"US"},"org_id":"org-1"}"#;
const DENIED: &str = r#"{"event_type":"transaction.denied","timestamp":"2025-01-28T10:32:00Z","transaction_id":"tx-d","subject":"user@company.com","ip_address":"203.0.113.43","org_id":"org-1"}"#;
const EXPIRED: &str = r#"{"event_type":"transaction.expired","timestamp":"2025-01-28T10:35:00Z","transaction_id":"tx-e","org_id":"org-1"}"#;
const ALL: [&str; 4] = [CREATED, VERIFIED, DENIED, EXPIRED];
const SCHEMAS: [&str; 4] = ["raw", "ecs", "ocsf", "cim"];

/// `(JSON pointer, value)` pairs the document for `event` must hold in `schema`.
fn expected(schema: &str, event: &str) -> Vec<(&'static str, Value)> {
    let o: Value = serde_json::from_str(event).unwrap();
    let ty = o["event_type"].as_str().unwrap().to_string();
    let mut e: Vec<(&'static str, Value)> = Vec::new();
    match schema {
        "raw" => {
            for k in [
                "event_type",
                "timestamp",
                "transaction_id",
                "org_id",
                "subject",
                "requestor",
                "context",
                "ip_address",
                "location",
            ] {
                if let Some(v) = o.get(k) {
                    e.push((leak(format!("/{k}")), v.clone()));
                }
            }
        }
        "ecs" => {
            let (outcome, etype) = match ty.as_str() {
                "transaction.created" => ("unknown", "info"),
                "transaction.verified" => ("success", "start"),
                _ => ("failure", "info"),
            };
            let ts = o["timestamp"].as_str().unwrap().replace(":00Z", ":00.000Z");
            e.extend([
                ("/@timestamp", json!(ts)),
                ("/event/kind", json!("event")),
                ("/event/category", json!(["authentication"])),
                ("/event/type", json!([etype])),
                ("/event/action", json!(ty)),
                ("/event/outcome", json!(outcome)),
                ("/organization/id", json!("org-1")),
                ("/transaction/id", o["transaction_id"].clone()),
                ("/sendauth", o.clone()),
            ]);
            if let Some(s) = o.get("subject") {
                e.push(("/user/name", s.clone()));
                e.push(("/user/email", s.clone()));
            }
            if let Some(ip) = o.get("ip_address") {
                e.push(("/source/ip", ip.clone()));
            }
            if let Some(l) = o.get("location") {
                e.push(("/source/geo/city_name", l["city"].clone()));
                e.push(("/source/geo/region_name", l["region"].clone()));
                e.push(("/source/geo/country_iso_code", l["country"].clone()));
            }
            if o.get("requestor").is_some() {
                e.push(("/related/user", json!(["user@company.com", "admin@company.com"])));
            }
        }
        "ocsf" => {
            let (activity, status) = match ty.as_str() {
                "transaction.created" => (6, 0),
                "transaction.verified" => (1, 1),
                _ => (1, 2),
            };
            let ms = chrono::DateTime::parse_from_rfc3339(o["timestamp"].as_str().unwrap())
                .unwrap()
                .timestamp_millis();
            e.extend([
                ("/class_uid", json!(3002)),
                ("/category_uid", json!(3)),
                ("/activity_id", json!(activity)),
                ("/type_uid", json!(300200 + activity)),
                ("/status_id", json!(status)),
                ("/time", json!(ms)),
                ("/metadata/product/name", json!("SendAuth")),
                ("/metadata/correlation_uid", o["transaction_id"].clone()),
                ("/unmapped/sendauth", o.clone()),
            ]);
            if let Some(s) = o.get("subject") {
                e.push(("/user/name", s.clone()));
                e.push(("/user/org/uid", json!("org-1")));
            }
            if let Some(ip) = o.get("ip_address") {
                e.push(("/src_endpoint/ip", ip.clone()));
            }
            if let Some(l) = o.get("location") {
                e.push(("/src_endpoint/location/city", l["city"].clone()));
                e.push(("/src_endpoint/location/region", l["region"].clone()));
                e.push(("/src_endpoint/location/country", l["country"].clone()));
            }
            if let Some(r) = o.get("requestor") {
                e.push(("/actor/user/name", r.clone()));
            }
        }
        "cim" => {
            e.extend(expected("raw", event));
            let action = match ty.as_str() {
                "transaction.created" => "pending",
                "transaction.verified" => "success",
                _ => "failure",
            };
            e.extend([("/action", json!(action)), ("/app", json!("sendauth")), ("/signature", json!(ty))]);
            if let Some(s) = o.get("subject") {
                e.push(("/user", s.clone()));
            }
            if let Some(ip) = o.get("ip_address") {
                e.push(("/src", ip.clone()));
            }
            if let Some(r) = o.get("requestor") {
                e.push(("/src_user", r.clone()));
            }
            if let Some(c) = o.get("context") {
                e.push(("/dest", c.clone()));
            }
        }
        _ => unreachable!(),
    }
    e
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// The transaction id of a received document, whatever its schema.
fn tx_of(doc: &Value) -> String {
    for p in ["/transaction_id", "/transaction/id", "/metadata/correlation_uid"] {
        if let Some(v) = doc.pointer(p).and_then(Value::as_str) {
            return v.to_string();
        }
    }
    panic!("no transaction id in {doc}")
}

/// Checks every expected field of the four documents and the audit stamp (sequence numbers
/// 1..=4 from agent `edge-1`); returns the documents by transaction id.
fn check_docs(schema: &str, platform: &str, docs: &[Value]) {
    assert_eq!(docs.len(), 4, "{platform}/{schema}: {docs:?}");
    let mut seqs = Vec::new();
    for ev in ALL {
        let o: Value = serde_json::from_str(ev).unwrap();
        let tx = o["transaction_id"].as_str().unwrap();
        let doc = docs
            .iter()
            .find(|d| tx_of(d) == tx)
            .unwrap_or_else(|| panic!("{platform}/{schema}: {tx} missing"));
        for (ptr, want) in expected(schema, ev) {
            assert_eq!(doc.pointer(ptr), Some(&want), "{platform}/{schema} {tx} {ptr} in {doc}");
        }
        assert_eq!(
            doc.pointer("/sendauth_siem/agent"),
            Some(&json!("edge-1")),
            "{platform}/{schema} {doc}"
        );
        seqs.push(doc.pointer("/sendauth_siem/seq").and_then(Value::as_u64).unwrap());
    }
    seqs.sort();
    assert_eq!(seqs, vec![1, 2, 3, 4], "{platform}/{schema}: one sequence number per event");
}

/// Runs the agent once per schema against `emu` and returns, per schema, the received
/// documents (via `docs`).
async fn each_schema(kind: Kind, siem_extra: &str, mut check: impl FnMut(&str, &Emulator)) {
    for schema in SCHEMAS {
        let emu = Emulator::start(EmulatorConfig::new(kind)).await.unwrap();
        let env = TestEnv::new();
        let mut c = Cfg::new(&emu.url());
        c.siem = format!("  schema: {schema}\n{siem_extra}");
        c.extra = "audit:\n  agent_id: edge-1\n".into();
        env.write_config(&c);
        let agent = AgentProc::start(&env).await;
        env.append(&ALL.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert!(emu.wait_for_events(4, DEADLINE).await, "{schema}: got {}", emu.event_count());
        agent.wait_status(DEADLINE, |s| s["queue"]["pending"] == 0).await;
        check(schema, &emu);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generic_each_schema_field_by_field() {
    each_schema(Kind::Generic, "  platform: generic\n", |schema, emu| {
        check_docs(schema, "generic", &emu.events())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sumo_logic_each_schema_field_by_field() {
    each_schema(Kind::SumoLogic, "  platform: sumo_logic\n", |schema, emu| {
        check_docs(schema, "sumo_logic", &emu.events())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datadog_each_schema_field_by_field() {
    let key = EmulatorConfig::new(Kind::Datadog).datadog_api_key;
    let extra = format!("  platform: datadog\n  datadog:\n    api_key: \"{key}\"\n");
    each_schema(Kind::Datadog, &extra, |schema, emu| {
        // Datadog's reserved attributes are added beside the mapped event.
        for e in emu.events() {
            assert_eq!(e["ddsource"], "sendauth", "{schema}: {e}");
        }
        check_docs(schema, "datadog", &emu.events())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_monitor_each_schema_field_by_field() {
    let d = EmulatorConfig::new(Kind::AzureMonitor);
    // The emulator is both the data collection endpoint and the token authority.
    let extra = |url: &str| {
        format!(
            "  platform: azure_monitor\n  azure_monitor:\n    dcr_immutable_id: {}\n    stream: {}\n    tenant_id: {}\n    client_id: {}\n    client_secret: \"{}\"\n    authority_host: {url}\n",
            d.azure_dcr_id, d.azure_stream, d.azure_tenant_id, d.azure_client_id, d.azure_client_secret
        )
    };
    for schema in SCHEMAS {
        let emu = Emulator::start(EmulatorConfig::new(Kind::AzureMonitor)).await.unwrap();
        let env = TestEnv::new();
        let mut c = Cfg::new(&emu.url());
        c.siem = format!("  schema: {schema}\n{}", extra(&emu.url()));
        c.extra = "audit:\n  agent_id: edge-1\n".into();
        env.write_config(&c);
        let agent = AgentProc::start(&env).await;
        env.append(&ALL.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert!(emu.wait_for_events(4, DEADLINE).await, "{schema}: got {}", emu.event_count());
        agent.wait_status(DEADLINE, |s| s["queue"]["pending"] == 0).await;
        check_docs(schema, "azure_monitor", &emu.events());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn splunk_each_schema_field_by_field_with_cim_sourcetype_and_indexed_fields() {
    each_schema(Kind::SplunkHec, "  platform: splunk_hec\n", |schema, emu| {
        check_docs(schema, "splunk_hec", &emu.events());
        for env in emu.splunk_envelopes() {
            let want = if schema == "cim" { "sendauth:authentication" } else { "_json" };
            assert_eq!(env["sourcetype"], want, "{schema}");
            assert_eq!(env["fields"]["sendauth_siem_agent"], "edge-1");
            assert_eq!(env["fields"]["sendauth_siem_seq"], env["event"]["sendauth_siem"]["seq"].to_string());
            let ts = env["event"]["timestamp"]
                .as_str()
                .or(env["event"]["sendauth"]["timestamp"].as_str())
                .or(env["event"]["metadata"]["original_time"].as_str())
                .unwrap();
            assert_eq!(
                env["time"].as_f64().unwrap(),
                epoch_seconds(ts),
                "{schema}: HEC time is the event's time"
            );
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elasticsearch_each_schema_field_by_field_and_its_template() {
    each_schema(Kind::Elasticsearch, "  platform: elasticsearch\n", |schema, emu| {
        let docs: Vec<Value> = emu.es_documents().into_iter().map(|(_, _, d)| d).collect();
        check_docs(schema, "elasticsearch", &docs);
        let templates = emu.es_templates();
        let (_, t) = templates.last().expect("a template was installed");
        let p = &t["template"]["mappings"]["properties"];
        assert_eq!(t["_meta"]["schema"], schema);
        assert_eq!(p["sendauth_siem"]["properties"]["seq"]["type"], "long", "{schema}");
        match schema {
            "raw" | "cim" => {
                assert_eq!(p["ip_address"]["type"], "ip");
                assert_eq!(p["location"]["properties"]["country"]["type"], "keyword");
                if schema == "cim" {
                    assert_eq!(p["action"]["type"], "keyword");
                    assert_eq!(p["user"]["type"], "keyword");
                }
            }
            "ecs" => {
                assert_eq!(p["@timestamp"]["type"], "date");
                assert_eq!(p["source"]["properties"]["ip"]["type"], "ip");
                assert_eq!(
                    p["source"]["properties"]["geo"]["properties"]["country_iso_code"]["type"],
                    "keyword"
                );
                assert_eq!(p["user"]["properties"]["name"]["type"], "keyword");
                assert_eq!(p["event"]["properties"]["outcome"]["type"], "keyword");
            }
            "ocsf" => {
                assert_eq!(p["time"]["type"], "date");
                assert_eq!(p["src_endpoint"]["properties"]["ip"]["type"], "ip");
                assert_eq!(p["class_uid"]["type"], "integer");
            }
            _ => unreachable!(),
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_command_sends_in_the_chosen_schema_and_check_config_names_the_schemas() {
    let emu = Emulator::start(EmulatorConfig::new(Kind::Generic)).await.unwrap();
    let mut c = Cfg::new(&emu.url());
    c.siem = "  platform: generic\n  schema: ecs\n".into();
    let (code, out) = run_test_command(&c).await;
    assert_eq!(code, 0, "{out}");
    let ev = emu.events().pop().unwrap();
    assert_eq!(ev["event"]["action"], "sendauth_siem.test", "{ev}");
    assert!(ev["@timestamp"].is_string(), "{ev}");
    c.siem = "  platform: generic\n  schema: ocsf\n".into();
    let (code, out) = run_test_command(&c).await;
    assert_eq!(code, 0, "{out}");
    let ev = emu.events().pop().unwrap();
    assert_eq!(ev["activity_name"], "sendauth_siem.test", "{ev}");

    let env = TestEnv::new();
    c.siem = "  schema: splunk_cim\n".into();
    env.write_config(&c);
    let (code, out, _) = cli(&["check-config", "--config", env.config.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("siem.schema") && out.contains("raw | ecs | ocsf | cim") && out.contains("splunk_cim"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transform_then_schema_and_a_reload_reshapes_pending_events() {
    let emu = Emulator::start(EmulatorConfig::new(Kind::Generic)).await.unwrap();
    let env = TestEnv::new();
    let mut c = Cfg::new(&emu.url());
    c.siem = "  platform: generic\n  schema: raw\n".into();
    c.extra =
        "transform:\n  truncate_ip:\n    fields: [ip_address]\n  hash:\n    fields: [subject]\n    key: \"k-0123456789abcdef\"\n".into();
    env.write_config(&c);
    let agent = AgentProc::start(&env).await;
    // The SIEM is down: the events wait in the queue, already transformed.
    emu.set_fault(Some(sendauth_siem_emulators::Fault::Status {
        code: 503,
        body: String::new(),
        headers: Vec::new(),
    }));
    env.append(&[VERIFIED.to_string(), DENIED.to_string()]);
    agent.wait_status(DEADLINE, |s| s["queue"]["pending"] == 2).await;
    // The schema changes while they are queued: they leave in the new one.
    c.siem = "  platform: generic\n  schema: ecs\n".into();
    env.write_config(&c);
    assert!(
        wait_until_async(DEADLINE, || async {
            metric(agent.port, "sendauth_siem_config_reloads_total{result=\"applied\"}").await >= 1.0
        })
        .await,
        "the reload was applied"
    );
    emu.set_fault(None);
    assert!(emu.wait_for_events(2, DEADLINE).await, "got {}", emu.event_count());
    let hashed = sendauth_siem::transform::hmac_hex(b"k-0123456789abcdef", b"user@company.com");
    for doc in emu.events() {
        assert_eq!(
            doc["event"]["category"],
            json!(["authentication"]),
            "mapped after the reload: {doc}"
        );
        assert_eq!(doc["user"]["name"], hashed.as_str(), "the mapping sees the transformed subject");
        assert!(doc["user"].get("email").is_none(), "a pseudonym is not an address");
        assert_eq!(doc["sendauth"]["subject"], hashed.as_str());
        assert!(
            doc["source"]["ip"].as_str().unwrap().ends_with(".0"),
            "truncated before mapping: {doc}"
        );
        assert!(!doc.to_string().contains("user@company.com"));
    }
}
