//! `siem.schema: ecs`: Elastic Common Schema (ECS 8.x), the fields Elastic Security's
//! authentication detection rules and dashboards read.
//!
//! | SendAuth | ECS |
//! |---|---|
//! | `timestamp` | `@timestamp` (UTC, milliseconds) |
//! | (constant) | `event.kind: event`, `event.category: [authentication]`, `event.type: [info]` (`[start]` for verified), `event.provider: sendauth`, `event.dataset: sendauth.authentication` |
//! | `event_type` | `event.action` |
//! | `event_type` | `event.outcome`: verified → `success`; denied, expired → `failure`; created → `unknown` |
//! | `event_type` (denied, expired) | `event.reason` |
//! | `subject` | `user.name`, and `user.email` when it holds an `@` |
//! | `requestor` | `related.user` (with `subject`) |
//! | `ip_address` | `source.ip`, `related.ip` |
//! | `location.city` / `.region` / `.country` | `source.geo.city_name` / `.region_name` / `.country_iso_code` |
//! | `org_id` | `organization.id` |
//! | `transaction_id` | `transaction.id` |
//! | `context` | `event.reason` for created (what access was requested) |
//! | the whole event | `sendauth` (the original, after the privacy transform) |
//!
//! Outcomes: ECS defines `event.outcome` from the producer's view. A verification is a
//! successful authentication; a denial a failed one. An expired transaction is a challenge
//! nobody approved: counted as `failure`, so "failed authentications by user" (and MFA-fatigue
//! rules counting unanswered pushes) see it. A creation is a request for authentication whose
//! result is not known yet: `unknown`.

use serde_json::{json, Map, Value};

use super::{is_agent_event, put, put_opt, Fields, Kind, ORIGINAL_NS};

pub(crate) const ECS_VERSION: &str = "8.11.0";

pub fn map(original: Map<String, Value>) -> Map<String, Value> {
    let f = Fields::read(&original);
    let mut m = Map::new();
    if let Some(t) = f.utc_millis() {
        m.insert("@timestamp".into(), Value::from(t));
    }
    put(&mut m, "ecs.version", Value::from(ECS_VERSION));
    put(&mut m, "event.action", Value::from(f.event_type.as_str()));
    let Some(kind) = f.kind() else {
        // The agent's own events (heartbeat, test) and unknown types: envelope only.
        if is_agent_event(&f.event_type) {
            let heartbeat = f.event_type == super::HEARTBEAT_TYPE;
            put(&mut m, "event.kind", Value::from(if heartbeat { "metric" } else { "event" }));
            put(&mut m, "event.dataset", Value::from(f.event_type.as_str()));
            put(&mut m, "event.provider", Value::from("sendauth-siem"));
            for (k, v) in original {
                if k != "timestamp" && k != "event_type" {
                    m.insert(k, v);
                }
            }
            put_opt(&mut m, "organization.id", &f.org_id);
            return m;
        }
        put(&mut m, "event.kind", Value::from("event"));
        put(&mut m, "event.provider", Value::from("sendauth"));
        put_opt(&mut m, "organization.id", &f.org_id);
        put_opt(&mut m, "transaction.id", &f.transaction_id);
        m.insert(ORIGINAL_NS.into(), Value::Object(original));
        return m;
    };
    put(&mut m, "event.kind", Value::from("event"));
    put(&mut m, "event.category", json!(["authentication"]));
    put(&mut m, "event.type", json!([if kind == Kind::Verified { "start" } else { "info" }]));
    put(&mut m, "event.provider", Value::from("sendauth"));
    put(&mut m, "event.dataset", Value::from("sendauth.authentication"));
    let (outcome, reason) = match kind {
        Kind::Created => ("unknown", f.context.as_ref().map(|c| format!("verification requested: {c}"))),
        Kind::Verified => ("success", None),
        Kind::Denied => ("failure", Some("denied by the user".to_string())),
        Kind::Expired => ("failure", Some("expired without an answer".to_string())),
    };
    put(&mut m, "event.outcome", Value::from(outcome));
    put_opt(&mut m, "event.reason", &reason);
    if let Some(s) = &f.subject {
        put(&mut m, "user.name", Value::from(s.as_str()));
        if s.contains('@') {
            put(&mut m, "user.email", Value::from(s.as_str()));
        }
    }
    let users: Vec<&String> = f.subject.iter().chain(f.requestor.iter()).collect();
    if !users.is_empty() {
        put(&mut m, "related.user", json!(users));
    }
    if let Some(ip) = &f.ip {
        put(&mut m, "source.ip", Value::from(ip.as_str()));
        put(&mut m, "related.ip", json!([ip]));
    }
    put_opt(&mut m, "source.geo.city_name", &f.city);
    put_opt(&mut m, "source.geo.region_name", &f.region);
    put_opt(&mut m, "source.geo.country_iso_code", &f.country);
    put_opt(&mut m, "organization.id", &f.org_id);
    put_opt(&mut m, "transaction.id", &f.transaction_id);
    m.insert(ORIGINAL_NS.into(), Value::Object(original));
    m
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;

    fn ecs(s: &str) -> Value {
        Value::Object(map(obj(s)))
    }

    fn common(v: &Value, action: &str, outcome: &str) {
        assert_eq!(v["ecs"]["version"], ECS_VERSION);
        assert_eq!(v["event"]["kind"], "event");
        assert_eq!(v["event"]["category"], json!(["authentication"]));
        assert_eq!(v["event"]["action"], action);
        assert_eq!(v["event"]["outcome"], outcome);
        assert_eq!(v["event"]["provider"], "sendauth");
        assert_eq!(v["organization"]["id"], "org-1");
    }

    #[test]
    fn created() {
        let v = ecs(CREATED);
        common(&v, "transaction.created", "unknown");
        assert_eq!(v["@timestamp"], "2025-01-28T10:30:00.000Z");
        assert_eq!(v["event"]["type"], json!(["info"]));
        assert_eq!(v["event"]["reason"], "verification requested: AWS Console Access");
        assert_eq!(v["user"]["name"], "user@company.com");
        assert_eq!(v["user"]["email"], "user@company.com");
        assert_eq!(v["related"]["user"], json!(["user@company.com", "admin@company.com"]));
        assert_eq!(v["transaction"]["id"], "tx-1");
        assert!(v.get("source").is_none());
        assert_eq!(v["sendauth"], Value::Object(obj(CREATED)), "the original is kept");
    }

    #[test]
    fn verified() {
        let v = ecs(VERIFIED);
        common(&v, "transaction.verified", "success");
        assert_eq!(v["@timestamp"], "2025-01-28T10:31:00.250Z", "converted to UTC");
        assert_eq!(v["event"]["type"], json!(["start"]));
        assert!(v["event"].get("reason").is_none());
        assert_eq!(v["user"]["name"], "user@company.com");
        assert_eq!(v["source"]["ip"], "203.0.113.42");
        assert_eq!(v["related"]["ip"], json!(["203.0.113.42"]));
        assert_eq!(v["source"]["geo"]["city_name"], "San Francisco");
        assert_eq!(v["source"]["geo"]["region_name"], "California");
        assert_eq!(v["source"]["geo"]["country_iso_code"], "US");
        assert_eq!(v["transaction"]["id"], "tx-1");
        assert_eq!(v["sendauth"], Value::Object(obj(VERIFIED)));
    }

    #[test]
    fn denied() {
        let v = ecs(DENIED);
        common(&v, "transaction.denied", "failure");
        assert_eq!(v["@timestamp"], "2025-01-28T10:31:00.000Z");
        assert_eq!(v["event"]["reason"], "denied by the user");
        assert_eq!(v["user"]["name"], "user@company.com");
        assert_eq!(v["source"]["ip"], "203.0.113.42");
        assert!(v["source"].get("geo").is_none());
        assert_eq!(v["transaction"]["id"], "tx-2");
    }

    #[test]
    fn expired() {
        let v = ecs(EXPIRED);
        common(&v, "transaction.expired", "failure");
        assert_eq!(v["@timestamp"], "2025-01-28T10:35:00.000Z");
        assert_eq!(v["event"]["reason"], "expired without an answer");
        assert!(v.get("user").is_none() && v.get("source").is_none() && v.get("related").is_none());
        assert_eq!(v["transaction"]["id"], "tx-3");
    }

    #[test]
    fn a_subject_that_is_not_an_address_is_a_name_only() {
        let v = ecs(&DENIED.replace("user@company.com", "9f2c1e"));
        assert_eq!(v["user"]["name"], "9f2c1e");
        assert!(v["user"].get("email").is_none());
    }

    #[test]
    fn agent_events_keep_their_fields_without_an_outcome() {
        let hb = r#"{"event_type":"sendauth_siem.heartbeat","timestamp":"2025-01-28T10:35:00Z","org_id":"sendauth-siem","transaction_id":"hb-1","sendauth_siem":{"heartbeat":{"accepted":3}}}"#;
        let v = ecs(hb);
        assert_eq!(v["event"]["kind"], "metric");
        assert_eq!(v["event"]["dataset"], "sendauth_siem.heartbeat");
        assert!(v["event"].get("outcome").is_none() && v["event"].get("category").is_none());
        assert_eq!(v["sendauth_siem"]["heartbeat"]["accepted"], 3);
        let other = ecs(&DENIED.replace("transaction.denied", "user.mfa-reset"));
        assert!(other["event"].get("outcome").is_none());
        assert_eq!(other["event"]["action"], "user.mfa-reset");
        assert_eq!(other["sendauth"]["subject"], "user@company.com");
    }
}
