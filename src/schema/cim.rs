//! `siem.schema: cim`: the Splunk CIM Authentication data model's fields, added alongside the
//! original SendAuth fields (so the product docs' searches keep working on the same events).
//!
//! | SendAuth | CIM (Authentication) |
//! |---|---|
//! | `event_type` | `action`: verified → `success`; denied, expired → `failure`; created → `pending` |
//! | (constant) | `app: sendauth`, `vendor_product: SendAuth`, `authentication_method: out_of_band` |
//! | `subject` | `user` |
//! | `requestor` | `src_user` (created: who asked for the verification) |
//! | `ip_address` | `src` |
//! | `context` | `dest` (created: what the verification grants access to) |
//! | `event_type` | `signature`; `reason` for denied and expired |
//! | `org_id` | kept as `org_id` (CIM has no organisation field) |
//!
//! The data model selects events by the tag `authentication`, a search-time setting: the HEC
//! `sourcetype` for this schema defaults to `sendauth:authentication`, and docs/PLATFORMS.md has
//! the `eventtypes.conf` / `tags.conf` stanzas that tag it. Types other than SendAuth's four get
//! `app` and `signature` only (no `action`: they are not authentications).

use serde_json::{Map, Value};

use super::{Fields, Kind};

/// The HEC sourcetype `cim` uses unless `siem.splunk_hec.sourcetype` is set.
pub(crate) const SOURCETYPE: &str = "sendauth:authentication";

pub fn map(original: Map<String, Value>) -> Map<String, Value> {
    let f = Fields::read(&original);
    let mut m = original;
    let mut set = |k: &str, v: Option<&str>| {
        if let Some(v) = v {
            m.insert(k.to_string(), Value::from(v));
        }
    };
    set("app", Some("sendauth"));
    set("vendor_product", Some("SendAuth"));
    set("signature", Some(f.event_type.as_str()));
    let Some(kind) = f.kind() else { return m };
    let (action, reason) = match kind {
        Kind::Created => ("pending", None),
        Kind::Verified => ("success", None),
        Kind::Denied => ("failure", Some("denied by the user")),
        Kind::Expired => ("failure", Some("expired without an answer")),
    };
    set("action", Some(action));
    set("reason", reason);
    set("authentication_method", Some("out_of_band"));
    set("user", f.subject.as_deref());
    set("src", f.ip.as_deref());
    set("src_user", f.requestor.as_deref());
    set("dest", f.context.as_deref());
    m
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;

    fn cim(s: &str) -> Value {
        Value::Object(map(obj(s)))
    }

    fn keeps_originals(v: &Value, original: &str) {
        for (k, val) in obj(original) {
            assert_eq!(v[&k], val, "original field {k} kept as is");
        }
        assert_eq!(v["app"], "sendauth");
        assert_eq!(v["vendor_product"], "SendAuth");
        assert_eq!(v["authentication_method"], "out_of_band");
    }

    #[test]
    fn created() {
        let v = cim(CREATED);
        keeps_originals(&v, CREATED);
        assert_eq!(v["action"], "pending");
        assert_eq!(v["signature"], "transaction.created");
        assert_eq!(v["user"], "user@company.com");
        assert_eq!(v["src_user"], "admin@company.com");
        assert_eq!(v["dest"], "AWS Console Access");
        assert!(v.get("src").is_none() && v.get("reason").is_none());
    }

    #[test]
    fn verified() {
        let v = cim(VERIFIED);
        keeps_originals(&v, VERIFIED);
        assert_eq!(v["action"], "success");
        assert_eq!(v["signature"], "transaction.verified");
        assert_eq!(v["user"], "user@company.com");
        assert_eq!(v["src"], "203.0.113.42");
        assert!(v.get("dest").is_none() && v.get("src_user").is_none() && v.get("reason").is_none());
    }

    #[test]
    fn denied() {
        let v = cim(DENIED);
        keeps_originals(&v, DENIED);
        assert_eq!(v["action"], "failure");
        assert_eq!(v["reason"], "denied by the user");
        assert_eq!(v["user"], "user@company.com");
        assert_eq!(v["src"], "203.0.113.42");
    }

    #[test]
    fn expired() {
        let v = cim(EXPIRED);
        keeps_originals(&v, EXPIRED);
        assert_eq!(v["action"], "failure");
        assert_eq!(v["reason"], "expired without an answer");
        assert_eq!(v["signature"], "transaction.expired");
        assert!(v.get("user").is_none() && v.get("src").is_none());
    }

    #[test]
    fn other_types_are_not_authentications() {
        let v = cim(&DENIED.replace("transaction.denied", "user.mfa-reset"));
        assert!(v.get("action").is_none() && v.get("user").is_none());
        assert_eq!(v["signature"], "user.mfa-reset");
    }
}
