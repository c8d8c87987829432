//! `siem.schema: ocsf`: the OCSF Authentication class (`class_uid` 3002, category 3 "Identity &
//! Access Management"), as read by AWS Security Lake, Microsoft Sentinel's OCSF connectors and
//! Splunk's OCSF-CIM add-on.
//!
//! | SendAuth | OCSF |
//! |---|---|
//! | (constant) | `category_uid: 3`, `class_uid: 3002`, `class_name: Authentication`, `severity_id: 1`, `is_mfa: true`, `metadata.product.name: SendAuth`, `metadata.version` |
//! | `event_type` | `activity_id` / `activity_name`: created → 6 Preauth; verified, denied, expired → 1 Logon; `type_uid = 300200 + activity_id` |
//! | `event_type` | `status_id` / `status`: verified → 1 Success; denied, expired → 2 Failure; created → 0 Unknown; `status_detail` says why |
//! | `timestamp` | `time` (epoch milliseconds), `metadata.original_time` (as written) |
//! | `subject` | `user.name`, and `user.email_addr` when it holds an `@` |
//! | `org_id` | `user.org.uid` |
//! | `requestor` | `actor.user.name` (who asked for the verification) |
//! | `ip_address` | `src_endpoint.ip` |
//! | `location.city` / `.region` / `.country` | `src_endpoint.location.city` / `.region` / `.country` |
//! | `transaction_id` | `metadata.correlation_uid` (the four events of a transaction share it) |
//! | `context` | `message` |
//! | the whole event | `unmapped.sendauth` |
//!
//! A created transaction is the challenge sent before the user authenticates (OCSF "Preauth");
//! the user's answer, or its absence, is the authentication (Logon) with its status. Types that
//! are not SendAuth's four become OCSF Base Events (`class_uid: 0`, `activity_id: 99` Other)
//! with their fields under `unmapped`.

use serde_json::{Map, Value};

use super::{put, put_opt, Fields, Kind, ORIGINAL_NS};

pub(crate) const OCSF_VERSION: &str = "1.1.0";

pub fn map(original: Map<String, Value>) -> Map<String, Value> {
    let f = Fields::read(&original);
    let mut m = Map::new();
    if let Some(ms) = f.millis {
        m.insert("time".into(), Value::from(ms));
    }
    put(&mut m, "metadata.version", Value::from(OCSF_VERSION));
    put(&mut m, "metadata.product.name", Value::from("SendAuth"));
    put(&mut m, "metadata.product.vendor_name", Value::from("SendAuth"));
    put(&mut m, "metadata.original_time", Value::from(f.timestamp.as_str()));
    put_opt(&mut m, "metadata.correlation_uid", &f.transaction_id);
    put(&mut m, "severity_id", Value::from(1));
    put(&mut m, "severity", Value::from("Informational"));
    let Some(kind) = f.kind() else {
        put(&mut m, "category_uid", Value::from(0));
        put(&mut m, "class_uid", Value::from(0));
        put(&mut m, "class_name", Value::from("Base Event"));
        put(&mut m, "activity_id", Value::from(99));
        put(&mut m, "activity_name", Value::from(f.event_type.as_str()));
        put(&mut m, "type_uid", Value::from(99));
        put(&mut m, "status_id", Value::from(0));
        put(&mut m, "status", Value::from("Unknown"));
        if super::is_agent_event(&f.event_type) {
            // The agent's own fields stay where every schema has them (`sendauth_siem`).
            let mut original = original;
            if let Some(ns) = original.remove(super::AGENT_NS) {
                m.insert(super::AGENT_NS.into(), ns);
            }
            put(&mut m, &format!("unmapped.{ORIGINAL_NS}"), Value::Object(original));
        } else {
            put(&mut m, &format!("unmapped.{ORIGINAL_NS}"), Value::Object(original));
        }
        return m;
    };
    let (activity_id, activity) = match kind {
        Kind::Created => (6, "Preauth"),
        _ => (1, "Logon"),
    };
    let (status_id, status, detail) = match kind {
        Kind::Created => (0, "Unknown", "verification requested, waiting for the user"),
        Kind::Verified => (1, "Success", "verified by the user"),
        Kind::Denied => (2, "Failure", "denied by the user"),
        Kind::Expired => (2, "Failure", "expired without an answer"),
    };
    put(&mut m, "category_uid", Value::from(3));
    put(&mut m, "category_name", Value::from("Identity & Access Management"));
    put(&mut m, "class_uid", Value::from(3002));
    put(&mut m, "class_name", Value::from("Authentication"));
    put(&mut m, "activity_id", Value::from(activity_id));
    put(&mut m, "activity_name", Value::from(activity));
    put(&mut m, "type_uid", Value::from(300_200 + activity_id));
    put(&mut m, "type_name", Value::from(format!("Authentication: {activity}")));
    put(&mut m, "status_id", Value::from(status_id));
    put(&mut m, "status", Value::from(status));
    put(&mut m, "status_detail", Value::from(detail));
    put(&mut m, "is_mfa", Value::from(true));
    if let Some(s) = &f.subject {
        put(&mut m, "user.name", Value::from(s.as_str()));
        if s.contains('@') {
            put(&mut m, "user.email_addr", Value::from(s.as_str()));
        }
    }
    if f.subject.is_some() {
        put_opt(&mut m, "user.org.uid", &f.org_id);
    }
    put_opt(&mut m, "actor.user.name", &f.requestor);
    put_opt(&mut m, "src_endpoint.ip", &f.ip);
    put_opt(&mut m, "src_endpoint.location.city", &f.city);
    put_opt(&mut m, "src_endpoint.location.region", &f.region);
    put_opt(&mut m, "src_endpoint.location.country", &f.country);
    put_opt(&mut m, "message", &f.context);
    put(&mut m, &format!("unmapped.{ORIGINAL_NS}"), Value::Object(original));
    m
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;

    fn ocsf(s: &str) -> Value {
        Value::Object(map(obj(s)))
    }

    fn common(v: &Value, activity: (i64, &str), status: (i64, &str)) {
        assert_eq!(v["category_uid"], 3);
        assert_eq!(v["class_uid"], 3002);
        assert_eq!(v["class_name"], "Authentication");
        assert_eq!(v["activity_id"], activity.0);
        assert_eq!(v["activity_name"], activity.1);
        assert_eq!(v["type_uid"], 300_200 + activity.0);
        assert_eq!(v["status_id"], status.0);
        assert_eq!(v["status"], status.1);
        assert_eq!(v["severity_id"], 1);
        assert_eq!(v["is_mfa"], true);
        assert_eq!(v["metadata"]["product"]["name"], "SendAuth");
        assert_eq!(v["metadata"]["version"], OCSF_VERSION);
    }

    #[test]
    fn created() {
        let v = ocsf(CREATED);
        common(&v, (6, "Preauth"), (0, "Unknown"));
        assert_eq!(v["time"], 1_738_060_200_000i64);
        assert_eq!(v["metadata"]["original_time"], "2025-01-28T10:30:00Z");
        assert_eq!(v["metadata"]["correlation_uid"], "tx-1");
        assert_eq!(v["user"]["name"], "user@company.com");
        assert_eq!(v["user"]["email_addr"], "user@company.com");
        assert_eq!(v["user"]["org"]["uid"], "org-1");
        assert_eq!(v["actor"]["user"]["name"], "admin@company.com");
        assert_eq!(v["message"], "AWS Console Access");
        assert!(v.get("src_endpoint").is_none());
        assert_eq!(v["unmapped"]["sendauth"], Value::Object(obj(CREATED)));
    }

    #[test]
    fn verified() {
        let v = ocsf(VERIFIED);
        common(&v, (1, "Logon"), (1, "Success"));
        assert_eq!(v["time"], 1_738_060_260_250i64, "offset applied");
        assert_eq!(v["status_detail"], "verified by the user");
        assert_eq!(v["user"]["name"], "user@company.com");
        assert_eq!(v["src_endpoint"]["ip"], "203.0.113.42");
        assert_eq!(v["src_endpoint"]["location"]["city"], "San Francisco");
        assert_eq!(v["src_endpoint"]["location"]["region"], "California");
        assert_eq!(v["src_endpoint"]["location"]["country"], "US");
        assert!(v.get("actor").is_none());
        assert_eq!(v["unmapped"]["sendauth"], Value::Object(obj(VERIFIED)));
    }

    #[test]
    fn denied() {
        let v = ocsf(DENIED);
        common(&v, (1, "Logon"), (2, "Failure"));
        assert_eq!(v["status_detail"], "denied by the user");
        assert_eq!(v["user"]["name"], "user@company.com");
        assert_eq!(v["src_endpoint"]["ip"], "203.0.113.42");
        assert!(v["src_endpoint"].get("location").is_none());
        assert_eq!(v["metadata"]["correlation_uid"], "tx-2");
    }

    #[test]
    fn expired() {
        let v = ocsf(EXPIRED);
        common(&v, (1, "Logon"), (2, "Failure"));
        assert_eq!(v["status_detail"], "expired without an answer");
        assert_eq!(v["time"], 1_738_060_500_000i64);
        assert!(v.get("user").is_none() && v.get("src_endpoint").is_none());
        assert_eq!(v["metadata"]["correlation_uid"], "tx-3");
    }

    #[test]
    fn other_types_are_base_events() {
        let v = ocsf(&DENIED.replace("transaction.denied", "user.mfa-reset"));
        assert_eq!((v["class_uid"].as_i64(), v["activity_id"].as_i64()), (Some(0), Some(99)));
        assert_eq!(v["activity_name"], "user.mfa-reset");
        assert!(v.get("user").is_none());
        assert_eq!(v["unmapped"]["sendauth"]["subject"], "user@company.com");
        let hb = r#"{"event_type":"sendauth_siem.heartbeat","timestamp":"2025-01-28T10:35:00Z","org_id":"x","transaction_id":"hb","sendauth_siem":{"heartbeat":{"accepted":3}}}"#;
        let v = ocsf(hb);
        assert_eq!(
            v["sendauth_siem"]["heartbeat"]["accepted"], 3,
            "agent fields stay in their namespace"
        );
        assert!(v["unmapped"]["sendauth"].get("sendauth_siem").is_none());
    }
}
