//! Output schemas (`siem.schema: raw | ecs | ocsf | cim`) and the audit stamp: what one queued
//! event looks like when it reaches the SIEM.
//!
//! **Where: at encode time, in one place.** [`Mapped`] wraps the configured platform
//! (`sink::build_platform`); every request the delivery loop or `sendauth-siem test` builds goes
//! through [`render`] just before the platform frames it. The queue keeps the canonical event
//! (the SendAuth line after the privacy transform), so:
//! - the order is fixed: validate → privacy transform (before the queue, see `transform`) →
//!   queue → schema mapping and audit stamp (here) → platform framing. A mapping never sees a
//!   field the transform removed, and a pseudonymised `subject` is what `user.name` carries;
//! - a schema change in a reload applies to every event still pending, and to dead-letter and
//!   moved-aside replays, with no migration of what is on disk;
//! - the audit sequence number is the queue's own sequence number ([`QueuedEvent::seq`]),
//!   assigned durably at append time and never reused, even across restarts and moved-aside
//!   stores (`queue` invariants); stamping it at encode time changes nothing in the commit path.
//!
//! **Determinism**: [`render`] depends only on the event, the schema and the audit identity
//! (no clock), so a resent event is byte-identical to its first sending (Elasticsearch `_id`s
//! stay stable and a resend after a crash is a duplicate the SIEM can see, never a new event).
//!
//! **Types**: the four SendAuth types get the mappings in [`ecs`], [`ocsf`] and [`cim`]
//! (docs/PLATFORMS.md has the tables and their sources). Any other type (the agent's own
//! `sendauth_siem.test` and `sendauth_siem.heartbeat`, or a type SendAuth adds later) keeps its
//! fields and gets only the schema's envelope (time, kind, action), never a made-up outcome.
//!
//! **Audit stamp** (`audit:` on): every event carries `sendauth_siem.agent` and
//! `sendauth_siem.seq`, in every schema (raw included), so one query finds gaps whatever the
//! schema. An event that cannot be parsed again (never the case for accepted events) is sent
//! unchanged rather than dropped.

pub mod cim;
pub mod ecs;
pub mod ocsf;

use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Map, Value};

use crate::queue::QueuedEvent;
use crate::sink::http::HttpClient;
use crate::sink::platform::{BoxFuture, EncodedRequest, Failure, Platform, Response, Verdict};

/// The namespace for the agent's own fields (audit stamp, heartbeats).
pub(crate) const AGENT_NS: &str = "sendauth_siem";
/// The namespace that keeps the original SendAuth event in `ecs` (and `ocsf`'s `unmapped`).
pub(crate) const ORIGINAL_NS: &str = "sendauth";
/// The event type of the agent's heartbeat (see `audit`).
pub(crate) const HEARTBEAT_TYPE: &str = "sendauth_siem.heartbeat";

/// `siem.schema`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Schema {
    /// SendAuth's own field names, byte for byte (the product docs' queries).
    #[default]
    Raw,
    /// Elastic Common Schema.
    Ecs,
    /// Open Cybersecurity Schema Framework, Authentication class (3002).
    Ocsf,
    /// Splunk Common Information Model, Authentication data model.
    Cim,
}

impl Schema {
    pub const ALL: [(&'static str, Schema); 4] = [
        ("raw", Schema::Raw),
        ("ecs", Schema::Ecs),
        ("ocsf", Schema::Ocsf),
        ("cim", Schema::Cim),
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Schema::Raw => "raw",
            Schema::Ecs => "ecs",
            Schema::Ocsf => "ocsf",
            Schema::Cim => "cim",
        }
    }
}

/// The audit identity stamped on each event: `sendauth_siem.agent` and `.seq`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp<'a> {
    pub agent: &'a str,
    pub seq: u64,
}

/// The fields of a SendAuth event a mapping reads (absent fields are `None`).
#[derive(Debug, Default)]
pub(crate) struct Fields {
    pub event_type: String,
    pub timestamp: String,
    /// `timestamp` as epoch milliseconds (accepted events always have one).
    pub(crate) millis: Option<i64>,
    pub org_id: Option<String>,
    pub transaction_id: Option<String>,
    pub subject: Option<String>,
    pub requestor: Option<String>,
    pub context: Option<String>,
    pub ip: Option<String>,
    pub city: Option<String>,
    pub region: Option<String>,
    pub country: Option<String>,
}

impl Fields {
    pub(crate) fn read(m: &Map<String, Value>) -> Fields {
        let s = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
        let loc = m.get("location").and_then(Value::as_object);
        let timestamp = s(m.get("timestamp")).unwrap_or_default();
        Fields {
            event_type: s(m.get("event_type")).unwrap_or_default(),
            millis: crate::event::parse_timestamp_millis(&timestamp),
            timestamp,
            org_id: s(m.get("org_id")),
            transaction_id: s(m.get("transaction_id")),
            subject: s(m.get("subject")),
            requestor: s(m.get("requestor")),
            context: s(m.get("context")),
            ip: s(m.get("ip_address")),
            city: loc.and_then(|l| s(l.get("city"))),
            region: loc.and_then(|l| s(l.get("region"))),
            country: loc.and_then(|l| s(l.get("country"))),
        }
    }

    /// One of the four documented SendAuth types.
    pub(crate) fn kind(&self) -> Option<Kind> {
        match self.event_type.as_str() {
            "transaction.created" => Some(Kind::Created),
            "transaction.verified" => Some(Kind::Verified),
            "transaction.denied" => Some(Kind::Denied),
            "transaction.expired" => Some(Kind::Expired),
            _ => None,
        }
    }

    /// `timestamp` as RFC 3339 UTC with milliseconds (ECS `@timestamp`).
    pub(crate) fn utc_millis(&self) -> Option<String> {
        let t = chrono::DateTime::from_timestamp_millis(self.millis?)?;
        Some(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Created,
    Verified,
    Denied,
    Expired,
}

/// Inserts `value` at a dotted path, creating objects on the way (an existing non-object on
/// the way is replaced: mappings only write paths they own).
pub(crate) fn put(m: &mut Map<String, Value>, path: &str, value: Value) {
    let mut cur = m;
    let mut parts = path.split('.').peekable();
    while let Some(p) = parts.next() {
        if parts.peek().is_none() {
            cur.insert(p.to_string(), value);
            return;
        }
        let next = cur.entry(p.to_string()).or_insert_with(|| Value::Object(Map::new()));
        if !next.is_object() {
            *next = Value::Object(Map::new());
        }
        cur = next.as_object_mut().expect("just made an object");
    }
}

/// Like [`put`], for an optional string.
pub(crate) fn put_opt(m: &mut Map<String, Value>, path: &str, value: &Option<String>) {
    if let Some(v) = value {
        put(m, path, Value::from(v.as_str()));
    }
}

/// The event as it leaves for the SIEM: mapped to `schema`, stamped when `stamp` is given.
/// `raw` without a stamp is the event itself (no copy, no re-encoding).
pub fn render(schema: Schema, data: &Bytes, stamp: Option<&Stamp>) -> Bytes {
    if schema == Schema::Raw && stamp.is_none() {
        return data.clone();
    }
    let Ok(Value::Object(original)) = serde_json::from_slice::<Value>(data) else {
        return data.clone();
    };
    let mut out = map(schema, original);
    if let Some(s) = stamp {
        put(&mut out, &format!("{AGENT_NS}.agent"), Value::from(s.agent));
        put(&mut out, &format!("{AGENT_NS}.seq"), Value::from(s.seq));
        match schema {
            Schema::Ecs => {
                put(&mut out, "agent.name", Value::from(s.agent));
                put(&mut out, "agent.type", Value::from("sendauth-siem"));
            }
            Schema::Ocsf => put(&mut out, "metadata.sequence", Value::from(s.seq)),
            Schema::Raw | Schema::Cim => {}
        }
    }
    Bytes::from(serde_json::to_vec(&Value::Object(out)).unwrap_or_else(|_| data.to_vec()))
}

/// The mapping alone (no stamp), on a parsed event.
pub fn map(schema: Schema, original: Map<String, Value>) -> Map<String, Value> {
    match schema {
        Schema::Raw => original,
        Schema::Ecs => ecs::map(original),
        Schema::Ocsf => ocsf::map(original),
        Schema::Cim => cim::map(original),
    }
}

/// The event's time for platforms that read it from the document's `timestamp`: a schema that
/// moves it (ECS `@timestamp`, OCSF `time`) would otherwise leave Splunk's `time` and the data
/// stream's `@timestamp` at the acceptance time (found by tests/schema.rs).
fn event_millis(data: &Bytes) -> Option<u64> {
    crate::event::timestamp_millis(data).and_then(|ms| u64::try_from(ms).ok())
}

/// A platform whose events are rendered in a schema and stamped before it frames them.
pub(crate) struct Mapped {
    inner: Arc<dyn Platform>,
    schema: Schema,
    agent: Option<String>,
}

impl Mapped {
    /// Wraps `inner`, or returns it as is when there is nothing to do (`raw`, no audit).
    pub(crate) fn wrap(inner: Arc<dyn Platform>, schema: Schema, agent: Option<String>) -> Arc<dyn Platform> {
        if schema == Schema::Raw && agent.is_none() {
            return inner;
        }
        Arc::new(Mapped { inner, schema, agent })
    }

    fn mapped(&self, events: &[QueuedEvent]) -> Vec<QueuedEvent> {
        events
            .iter()
            .map(|e| {
                let stamp = self.agent.as_deref().map(|agent| Stamp { agent, seq: e.seq });
                QueuedEvent {
                    seq: e.seq,
                    data: render(self.schema, &e.data, stamp.as_ref()),
                    accepted_at_ms: if self.schema != Schema::Raw {
                        event_millis(&e.data).unwrap_or(e.accepted_at_ms)
                    } else {
                        e.accepted_at_ms
                    },
                }
            })
            .collect()
    }
}

impl Platform for Mapped {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn limits(&self) -> (usize, usize) {
        self.inner.limits()
    }

    fn encode(&self, events: &[QueuedEvent]) -> EncodedRequest {
        self.inner.encode(&self.mapped(events))
    }

    /// The platform sees the events as they were sent (Elasticsearch checks `_id`s against them).
    fn interpret(&self, events: &[QueuedEvent], resp: &Response) -> Verdict {
        self.inner.interpret(&self.mapped(events), resp)
    }

    fn prepare<'a>(&'a self, client: &'a HttpClient) -> BoxFuture<'a, Result<(), Failure>> {
        self.inner.prepare(client)
    }

    fn confirm<'a>(&'a self, client: &'a HttpClient, resp: &'a Response) -> BoxFuture<'a, Result<(), Failure>> {
        self.inner.confirm(client, resp)
    }

    fn health_check<'a>(&'a self, client: &'a HttpClient) -> BoxFuture<'a, Option<Result<String, Failure>>> {
        self.inner.health_check(client)
    }
}

/// An event type that is not one of SendAuth's four: the agent's own events and future types.
pub(crate) fn is_agent_event(event_type: &str) -> bool {
    event_type.starts_with("sendauth_siem.")
}

/// Test fixtures shared by the mapping tests.
#[cfg(test)]
pub(crate) mod fixtures {
    pub const CREATED: &str = r#"{"event_type":"transaction.created","timestamp":"2025-01-28T10:30:00Z","transaction_id":"tx-1","requestor":"admin@company.com","subject":"user@company.com","context":"AWS Console Access","org_id":"org-1"}"#;
    pub const VERIFIED: &str = r#"{"event_type":"transaction.verified","timestamp":"2025-01-28T11:31:00.250+01:00","transaction_id":"tx-1","subject":"user@company.com","ip_address":"203.0.113.42","location":{"city":"San Francisco","region":"California","country":"US"},"org_id":"org-1"}"#;
    pub const DENIED: &str = r#"{"event_type":"transaction.denied","timestamp":"2025-01-28T10:31:00Z","transaction_id":"tx-2","subject":"user@company.com","ip_address":"203.0.113.42","org_id":"org-1"}"#;
    pub const EXPIRED: &str =
        r#"{"event_type":"transaction.expired","timestamp":"2025-01-28T10:35:00Z","transaction_id":"tx-3","org_id":"org-1"}"#;

    pub fn obj(s: &str) -> serde_json::Map<String, serde_json::Value> {
        serde_json::from_str(s).unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;
    use serde_json::json;

    #[test]
    fn raw_without_audit_is_the_event_byte_for_byte() {
        let b = Bytes::from(VERIFIED);
        assert_eq!(render(Schema::Raw, &b, None), b);
    }

    #[test]
    fn the_stamp_is_in_the_same_place_in_every_schema() {
        for (name, schema) in Schema::ALL {
            let out: Value =
                serde_json::from_slice(&render(schema, &Bytes::from(DENIED), Some(&Stamp { agent: "edge-1", seq: 42 }))).unwrap();
            assert_eq!(out[AGENT_NS]["agent"], "edge-1", "{name}");
            assert_eq!(out[AGENT_NS]["seq"], 42, "{name}");
        }
        let ecs: Value = serde_json::from_slice(&render(Schema::Ecs, &Bytes::from(DENIED), Some(&Stamp { agent: "a", seq: 7 }))).unwrap();
        assert_eq!(
            (ecs["agent"]["name"].as_str(), ecs["agent"]["type"].as_str()),
            (Some("a"), Some("sendauth-siem"))
        );
        let ocsf: Value = serde_json::from_slice(&render(Schema::Ocsf, &Bytes::from(DENIED), Some(&Stamp { agent: "a", seq: 7 }))).unwrap();
        assert_eq!(ocsf["metadata"]["sequence"], 7);
    }

    #[test]
    fn rendering_is_deterministic() {
        for (_, schema) in Schema::ALL {
            let st = Stamp { agent: "a", seq: 1 };
            assert_eq!(
                render(schema, &Bytes::from(CREATED), Some(&st)),
                render(schema, &Bytes::from(CREATED), Some(&st))
            );
        }
    }

    #[test]
    fn unparseable_data_passes_unchanged() {
        let b = Bytes::from_static(b"not json");
        assert_eq!(render(Schema::Ecs, &b, Some(&Stamp { agent: "a", seq: 1 })), b);
    }

    #[test]
    fn put_builds_nested_objects() {
        let mut m = Map::new();
        put(&mut m, "a.b.c", Value::from(1));
        put(&mut m, "a.b.d", Value::from(2));
        put(&mut m, "a.x", Value::from(3));
        assert_eq!(Value::Object(m), json!({"a": {"b": {"c": 1, "d": 2}, "x": 3}}));
    }

    fn parse(extra: &str) -> Result<crate::config::Config, crate::config::ConfigErrors> {
        let yaml = format!("siem:\n  url: https://s.example.com:8088/services/collector/event\n{extra}sources:\n  socket: {{ path: /tmp/x.sock }}\nqueue:\n  path: /tmp/q\n");
        crate::config::Config::parse_with_env(&yaml, &|_| None)
    }

    #[test]
    fn config_takes_each_schema_and_rejects_others_with_the_list() {
        assert_eq!(parse("").unwrap().siem.schema, Schema::Raw);
        for (name, schema) in Schema::ALL {
            assert_eq!(parse(&format!("  schema: {name}\n")).unwrap().siem.schema, schema);
        }
        let e = parse("  schema: elastic\n").unwrap_err().to_string();
        assert!(
            e.contains("siem.schema") && e.contains("raw | ecs | ocsf | cim") && e.contains("\"elastic\""),
            "{e}"
        );
    }

    #[test]
    fn cim_defaults_the_hec_sourcetype_unless_one_is_set() {
        let c = parse("  schema: cim\n").unwrap();
        assert_eq!(c.siem.splunk_hec.sourcetype, cim::SOURCETYPE);
        let c = parse("  schema: cim\n  splunk_hec: {sourcetype: mine}\n").unwrap();
        assert_eq!(c.siem.splunk_hec.sourcetype, "mine");
        assert_eq!(parse("  schema: ecs\n").unwrap().siem.splunk_hec.sourcetype, "_json");
    }

    #[test]
    fn audit_is_off_unless_configured_and_names_this_host_by_default() {
        assert!(parse("").unwrap().siem.audit.is_none());
        let yaml = |a: &str| {
            format!(
                "siem:\n  url: https://s.example.com/x\nsources:\n  socket: {{ path: /tmp/x.sock }}\nqueue:\n  path: /tmp/q\naudit:\n{a}"
            )
        };
        let p = |a: &str| crate::config::Config::parse_with_env(&yaml(a), &|_| None);
        let a = p("  heartbeat_interval: 5m\n").unwrap().siem.audit.unwrap();
        assert_eq!(a.heartbeat_interval, Some(std::time::Duration::from_secs(300)));
        assert_eq!(Some(a.agent_id), crate::sink::splunk_hec::hostname());
        let a = p("  agent_id: edge-1\n").unwrap().siem.audit.unwrap();
        assert_eq!((a.agent_id.as_str(), a.heartbeat_interval), ("edge-1", None));
        assert!(p("  enabled: false\n").unwrap().siem.audit.is_none());
        let e = p("  heartbeat_interval: 10ms\n").unwrap_err().to_string();
        assert!(e.contains("audit.heartbeat_interval"), "{e}");
        let e = p("  agent_id: \"\"\n").unwrap_err().to_string();
        assert!(e.contains("audit.agent_id"), "{e}");
        let e = p("  heartbeat: 5m\n").unwrap_err().to_string();
        assert!(e.contains("audit.heartbeat"), "unknown keys are refused: {e}");
    }

    #[test]
    fn mapped_platform_sends_the_schema_and_interprets_what_it_sent() {
        let yaml = "siem:\n  url: https://e.example.com:9200/sendauth/_doc\n  schema: ecs\nsources:\n  socket: { path: /tmp/x.sock }\nqueue:\n  path: /tmp/q\naudit:\n  agent_id: edge-1\n";
        let cfg = crate::config::Config::parse_with_env(yaml, &|_| None).unwrap();
        let p = crate::sink::build_platform(&cfg.siem);
        let ev = QueuedEvent {
            seq: 9,
            data: Bytes::from(VERIFIED),
            accepted_at_ms: 1,
        };
        let req = p.encode(std::slice::from_ref(&ev));
        let body = String::from_utf8(req.body.to_vec()).unwrap();
        let doc: Value = serde_json::from_str(body.lines().nth(1).unwrap()).unwrap();
        assert_eq!(doc["event"]["outcome"], "success");
        assert_eq!(
            (doc["sendauth_siem"]["agent"].as_str(), doc["sendauth_siem"]["seq"].as_u64()),
            (Some("edge-1"), Some(9))
        );
        let action: Value = serde_json::from_str(body.lines().next().unwrap()).unwrap();
        let id = action["create"]["_id"].as_str().unwrap().to_string();
        let answer = format!(r#"{{"errors":false,"items":[{{"create":{{"_id":"{id}","status":201}}}}]}}"#);
        let resp = Response {
            status: 200,
            headers: Default::default(),
            body: Bytes::from(answer),
        };
        assert_eq!(
            p.interpret(&[ev], &resp),
            Verdict::Delivered,
            "the _id is checked against the mapped event"
        );
    }

    #[test]
    fn es_template_follows_the_schema() {
        use crate::sink::elasticsearch::index_template_for;
        let props = |schema, audit| index_template_for("sendauth", false, schema, audit)["template"]["mappings"]["properties"].clone();
        let raw = props(Schema::Raw, false);
        assert_eq!(raw["ip_address"]["type"], "ip");
        assert!(raw.get("sendauth_siem").is_none());
        let ecs = props(Schema::Ecs, true);
        assert_eq!(ecs["@timestamp"]["type"], "date");
        assert_eq!(ecs["source"]["properties"]["ip"]["type"], "ip");
        assert_eq!(
            ecs["source"]["properties"]["geo"]["properties"]["country_iso_code"]["type"],
            "keyword"
        );
        assert_eq!(ecs["user"]["properties"]["name"]["type"], "keyword");
        assert_eq!(ecs["event"]["properties"]["outcome"]["type"], "keyword");
        assert_eq!(ecs["sendauth"]["properties"]["ip_address"]["type"], "ip");
        assert_eq!(ecs["sendauth_siem"]["properties"]["seq"]["type"], "long");
        let ocsf = props(Schema::Ocsf, false);
        assert_eq!(ocsf["time"], json!({"type": "date", "format": "epoch_millis"}));
        assert_eq!(ocsf["src_endpoint"]["properties"]["ip"]["type"], "ip");
        assert_eq!(ocsf["class_uid"]["type"], "integer");
        let cim = props(Schema::Cim, false);
        assert_eq!(cim["action"]["type"], "keyword");
        assert_eq!(cim["ip_address"]["type"], "ip");
    }

    #[test]
    fn hec_envelopes_carry_the_stamp_as_indexed_fields() {
        let yaml = "siem:\n  url: https://s.example.com:8088/services/collector/event\n  schema: cim\nsources:\n  socket: { path: /tmp/x.sock }\nqueue:\n  path: /tmp/q\naudit:\n  agent_id: edge-1\n";
        let cfg = crate::config::Config::parse_with_env(yaml, &|_| None).unwrap();
        let req = crate::sink::build_platform(&cfg.siem).encode(&[QueuedEvent {
            seq: 12,
            data: Bytes::from(DENIED),
            accepted_at_ms: 1,
        }]);
        let env: Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(env["sourcetype"], cim::SOURCETYPE);
        assert_eq!(env["fields"], json!({"sendauth_siem_agent": "edge-1", "sendauth_siem_seq": "12"}));
        assert_eq!(env["event"]["action"], "failure");
        assert_eq!(env["event"]["sendauth_siem"]["seq"], 12);
    }
}
