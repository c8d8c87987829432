//! Privacy transforms (`transform:` in the config): allow-list, drop, truncate IP addresses,
//! and pseudonymise fields with a keyed HMAC-SHA256, applied to each accepted event.
//!
//! **Where: before the queue.** Sources apply the transform right after validation, so the
//! queue only ever holds transformed events (ARCHITECTURE.md invariant 9). The queue is on
//! disk, and its dead letter and quarantine listings are read by operators (`dead-letter
//! list`): transforming at send time
//! would leave raw subjects and IP addresses on disk for as long as the SIEM is down. The
//! consequence is that a transform change applies to events accepted after it, not to those
//! already queued. Lines *rejected* at input are quarantined verbatim, as the contract requires
//! (they are not valid events, so no field of theirs can be trusted to be where a rule expects).
//!
//! **Order of the rules**: `allow` (keep only the listed fields), then `drop`, then
//! `truncate_ip`, then `hash`. Fields are named by dotted paths into nested objects
//! (`location.city`); arrays are not descended into. A field that appears more than once in
//! an object (duplicate keys) is transformed in every occurrence, so a duplicate can not smuggle
//! a raw value past a rule.
//!
//! **The four common fields** (`event_type`, `timestamp`, `org_id`, `transaction_id`) always
//! stay: `allow` keeps them implicitly and `drop` refuses them (config error). `org_id` and
//! `transaction_id` may be hashed: they stay strings, unique and consistent, so per-org counts
//! and deduplication in the SIEM still work. `event_type` and `timestamp` may not: the SIEM
//! needs them as they are (platform time fields, the event type).
//!
//! **Values**: `hash` replaces a value with the lowercase hex HMAC-SHA256 of it under the
//! configured key: a string's text, or any other value's JSON text. The same input always gives
//! the same output, so `stats count by subject` still counts per person, but without the key
//! nobody can test a guess. `truncate_ip` keeps the first `ipv4_prefix` / `ipv6_prefix` bits of
//! an address (24 and 48 by default); a value that is not an IP address is removed, since it
//! cannot be truncated and might identify someone.
//!
//! **Fidelity**: untouched values are copied byte for byte from the input (the event is
//! split into its top-level members, not re-encoded), and member order is kept.

use std::fmt;
use std::net::IpAddr;

use hmac::{Hmac, Mac};
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use sha2::Sha256;

use crate::secret::Secret;

/// The common fields every event keeps (docs/CONTRACT.md, "Events").
pub(crate) const COMMON_FIELDS: [&str; 4] = ["event_type", "timestamp", "org_id", "transaction_id"];

/// A dotted path to a field, e.g. `location.city`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPath(pub Vec<String>);

impl FieldPath {
    /// Parses `a.b.c`; `None` for an empty path or segment.
    pub fn parse(s: &str) -> Option<FieldPath> {
        let segs: Vec<String> = s.split('.').map(str::to_string).collect();
        if segs.iter().any(|p| p.is_empty() || p.trim() != p) {
            return None;
        }
        Some(FieldPath(segs))
    }

    /// Whether `self` is `other` or an ancestor of it.
    pub fn covers(&self, other: &FieldPath) -> bool {
        other.0.len() >= self.0.len() && other.0[..self.0.len()] == self.0[..]
    }

    pub fn root(&self) -> &str {
        &self.0[0]
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("."))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TruncateIp {
    pub fields: Vec<FieldPath>,
    pub(crate) ipv4_prefix: u8,
    pub(crate) ipv6_prefix: u8,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashRule {
    pub fields: Vec<FieldPath>,
    pub key: Secret,
}

/// A validated transform (built by `config/transform.rs`, which checks the rules against each other).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transform {
    pub allow: Option<Vec<FieldPath>>,
    pub drop: Vec<FieldPath>,
    pub truncate_ip: Option<TruncateIp>,
    pub hash: Option<HashRule>,
}

/// One JSON value in an event being transformed: untouched input, an object opened up to reach
/// a nested field, or a replacement (JSON text).
enum Val<'a> {
    Raw(&'a RawValue),
    Obj(Vec<(String, Val<'a>)>),
    New(String),
}

type Members<'a> = Vec<(String, Val<'a>)>;

impl Transform {
    /// Applies every rule to one event (a JSON object, already validated). Returns the new line.
    pub fn apply(&self, line: &[u8]) -> Result<Vec<u8>, String> {
        let text = std::str::from_utf8(line).map_err(|e| format!("not UTF-8: {e}"))?;
        let mut top = parse_members(text.trim()).map_err(|e| format!("cannot read the event's fields: {e}"))?;
        if let Some(allow) = &self.allow {
            let paths: Vec<&[String]> = allow.iter().map(|p| &p.0[..]).collect();
            keep_only(&mut top, &paths, true);
        }
        for p in &self.drop {
            visit(&mut top, &p.0, &mut |_| None);
        }
        if let Some(t) = &self.truncate_ip {
            for p in &t.fields {
                visit(&mut top, &p.0, &mut |v| {
                    truncate_value(v, t.ipv4_prefix, t.ipv6_prefix).map(Val::New)
                });
            }
        }
        if let Some(h) = &self.hash {
            for p in &h.fields {
                visit(&mut top, &p.0, &mut |v| Some(Val::New(hash_value(&h.key, v))));
            }
        }
        let mut out = Vec::with_capacity(line.len());
        write_members(&top, &mut out);
        Ok(out)
    }
}

/// Splits a JSON object into its members, in order, each value left as raw text.
fn parse_members(text: &str) -> Result<Members<'_>, serde_json::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Vec<(String, &'de RawValue)>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut v = Vec::new();
            while let Some((k, raw)) = map.next_entry::<String, &'de RawValue>()? {
                v.push((k, raw));
            }
            Ok(v)
        }
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let members = de.deserialize_map(V)?;
    de.end()?;
    Ok(members.into_iter().map(|(k, v)| (k, Val::Raw(v))).collect())
}

/// Opens a raw object so its members can be reached; false if the value is not an object.
fn open<'a>(v: &mut Val<'a>) -> bool {
    if let Val::Raw(raw) = v {
        let raw: &'a RawValue = raw;
        if !raw.get().trim_start().starts_with('{') {
            return false;
        }
        match parse_members(raw.get()) {
            Ok(m) => *v = Val::Obj(m),
            Err(_) => return false,
        }
    }
    matches!(v, Val::Obj(_))
}

/// Calls `f` on every value at `path`; `f` returns the replacement, or `None` to remove it.
fn visit(members: &mut Members<'_>, path: &[String], f: &mut dyn FnMut(&Val<'_>) -> Option<Val<'static>>) {
    let (first, rest) = (&path[0], &path[1..]);
    let mut i = 0;
    while i < members.len() {
        if members[i].0 != *first {
            i += 1;
            continue;
        }
        if rest.is_empty() {
            match f(&members[i].1) {
                Some(new) => {
                    members[i].1 = new;
                    i += 1;
                }
                None => {
                    members.remove(i);
                }
            }
        } else {
            if open(&mut members[i].1) {
                if let Val::Obj(inner) = &mut members[i].1 {
                    visit(inner, rest, f);
                }
            }
            i += 1;
        }
    }
}

/// Keeps only members named by `paths` (and, at the top, the common fields). A path that ends
/// at a member keeps it whole; a longer path keeps only the named parts of an object.
fn keep_only(members: &mut Members<'_>, paths: &[&[String]], top: bool) {
    members.retain_mut(|(k, v)| {
        if top && COMMON_FIELDS.contains(&k.as_str()) {
            return true;
        }
        let mine: Vec<&[String]> = paths.iter().filter(|p| p[0] == *k).map(|p| &p[1..]).collect();
        if mine.is_empty() {
            return false;
        }
        if mine.iter().any(|rest| rest.is_empty()) {
            return true;
        }
        if !open(v) {
            return false;
        }
        match v {
            Val::Obj(inner) => {
                keep_only(inner, &mine, false);
                !inner.is_empty()
            }
            _ => false,
        }
    });
}

fn write_members(members: &Members<'_>, out: &mut Vec<u8>) {
    out.push(b'{');
    for (i, (k, v)) in members.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        // A String always serializes.
        let _ = serde_json::to_writer(&mut *out, k);
        out.push(b':');
        match v {
            Val::Raw(r) => out.extend_from_slice(r.get().as_bytes()),
            Val::New(s) => out.extend_from_slice(s.as_bytes()),
            Val::Obj(m) => write_members(m, out),
        }
    }
    out.push(b'}');
}

/// The value as JSON text (for opened objects, re-assembled).
fn json_text(v: &Val<'_>) -> String {
    match v {
        Val::Raw(r) => r.get().to_string(),
        Val::New(s) => s.clone(),
        Val::Obj(m) => {
            let mut out = Vec::new();
            write_members(m, &mut out);
            String::from_utf8(out).unwrap_or_default()
        }
    }
}

/// The text that is hashed: a string's content, or another value's compact JSON (so that
/// formatting differences in the input do not change the pseudonym).
fn hash_input(v: &Val<'_>) -> String {
    let text = json_text(v);
    match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => text,
    }
}

fn hash_value(key: &Secret, v: &Val<'_>) -> String {
    format!("\"{}\"", hmac_hex(key.expose().as_bytes(), hash_input(v).as_bytes()))
}

/// Lowercase hex HMAC-SHA256.
pub fn hmac_hex(key: &[u8], msg: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(msg);
    let tag = mac.finalize().into_bytes();
    let mut s = String::with_capacity(64);
    for b in tag {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// The truncated address as a JSON string, or `None` (remove) when the value is not an IP
/// address. `null` stays `null`.
fn truncate_value(v: &Val<'_>, v4: u8, v6: u8) -> Option<String> {
    let text = json_text(v);
    let s = match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(serde_json::Value::Null) => return Some("null".into()),
        _ => return None,
    };
    let ip: IpAddr = s.trim().parse().ok()?;
    Some(format!("\"{}\"", truncate_ip(ip, v4, v6)))
}

/// Zeroes all but the first `v4` (IPv4) or `v6` (IPv6) bits. An IPv4-mapped IPv6 address
/// (`::ffff:a.b.c.d`) is truncated as the IPv4 address it carries.
pub fn truncate_ip(ip: IpAddr, v4: u8, v6: u8) -> IpAddr {
    fn mask_v4(a: std::net::Ipv4Addr, bits: u8) -> std::net::Ipv4Addr {
        let m = if bits == 0 { 0 } else { u32::MAX << (32 - bits.min(32) as u32) };
        (u32::from(a) & m).into()
    }
    match ip {
        IpAddr::V4(a) => IpAddr::V4(mask_v4(a, v4)),
        IpAddr::V6(a) => {
            if let Some(m) = a.to_ipv4_mapped() {
                return IpAddr::V6(mask_v4(m, v4).to_ipv6_mapped());
            }
            let m = if v6 == 0 { 0 } else { u128::MAX << (128 - v6.min(128) as u32) };
            IpAddr::V6((u128::from(a) & m).into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EV: &str = r#"{"event_type":"transaction.verified","timestamp":"2025-01-28T10:31:00Z","transaction_id":"tx-uuid","subject":"user@company.com","ip_address":"203.0.113.42","location":{"city":"San Francisco","region":"California","country":"US"},"org_id":"org-uuid"}"#;

    fn p(s: &str) -> FieldPath {
        FieldPath::parse(s).unwrap()
    }

    fn empty() -> Transform {
        Transform {
            allow: None,
            drop: vec![],
            truncate_ip: None,
            hash: None,
        }
    }

    fn run(t: &Transform, line: &str) -> String {
        String::from_utf8(t.apply(line.as_bytes()).unwrap()).unwrap()
    }

    fn hash_rule(fields: &[&str]) -> HashRule {
        HashRule {
            fields: fields.iter().map(|f| p(f)).collect(),
            key: Secret::new("0123456789abcdef-test-key"),
        }
    }

    #[test]
    fn no_rules_keeps_the_event_byte_for_byte_in_order() {
        assert_eq!(run(&empty(), EV), EV);
        // Untouched nested values keep their own spacing.
        let spaced = r#"{"a": {"x" : 1,  "y":[1, 2]}, "b":"\u00e9"}"#;
        assert_eq!(run(&empty(), spaced), r#"{"a":{"x" : 1,  "y":[1, 2]},"b":"\u00e9"}"#);
    }

    #[test]
    fn drop_removes_top_level_and_nested_fields() {
        let t = Transform {
            drop: vec![p("subject"), p("location.city"), p("no.such.field")],
            ..empty()
        };
        assert_eq!(
            run(&t, EV),
            r#"{"event_type":"transaction.verified","timestamp":"2025-01-28T10:31:00Z","transaction_id":"tx-uuid","ip_address":"203.0.113.42","location":{"region":"California","country":"US"},"org_id":"org-uuid"}"#
        );
    }

    #[test]
    fn drop_removes_every_duplicate() {
        let t = Transform {
            drop: vec![p("subject")],
            ..empty()
        };
        assert_eq!(run(&t, r#"{"subject":"a","x":1,"subject":"b"}"#), r#"{"x":1}"#);
    }

    #[test]
    fn hash_is_keyed_consistent_and_reaches_nested_fields() {
        let t = Transform {
            hash: Some(hash_rule(&["subject", "location.city"])),
            ..empty()
        };
        let out: serde_json::Value = serde_json::from_str(&run(&t, EV)).unwrap();
        let key = b"0123456789abcdef-test-key";
        assert_eq!(out["subject"], hmac_hex(key, b"user@company.com"));
        assert_eq!(out["location"]["city"], hmac_hex(key, b"San Francisco"));
        assert_eq!(out["location"]["country"], "US");
        assert_eq!(out["ip_address"], "203.0.113.42");
        // Same input, same pseudonym (countable); another key, another pseudonym.
        assert_eq!(run(&t, EV), run(&t, EV));
        let t2 = Transform {
            hash: Some(HashRule {
                key: Secret::new("another-key-0123456789"),
                ..hash_rule(&["subject"])
            }),
            ..empty()
        };
        let out2: serde_json::Value = serde_json::from_str(&run(&t2, EV)).unwrap();
        assert_ne!(out2["subject"], out["subject"]);
        // An escaped string hashes as its text.
        let esc = run(&t, r#"{"subject":"user\u0040company.com"}"#);
        assert_eq!(esc, format!(r#"{{"subject":"{}"}}"#, hmac_hex(key, b"user@company.com")));
    }

    #[test]
    fn hmac_matches_rfc_4231_test_case_2() {
        assert_eq!(
            hmac_hex(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn non_string_values_hash_by_their_compact_json() {
        let t = Transform {
            hash: Some(hash_rule(&["n", "o"])),
            ..empty()
        };
        let a = run(&t, r#"{"n":42,"o":{"b":1, "a":2}}"#);
        let b = run(&t, r#"{"n":42,"o":{"a":2,"b":1}}"#);
        assert_eq!(a, b, "key order and spacing do not change the pseudonym");
        let v: serde_json::Value = serde_json::from_str(&a).unwrap();
        assert_eq!(v["n"], hmac_hex(b"0123456789abcdef-test-key", b"42"));
    }

    #[test]
    fn truncate_ip_keeps_the_network_part() {
        let t = Transform {
            truncate_ip: Some(TruncateIp {
                fields: vec![p("ip_address"), p("net.peer")],
                ipv4_prefix: 24,
                ipv6_prefix: 48,
            }),
            ..empty()
        };
        let out = run(
            &t,
            r#"{"ip_address":"203.0.113.42","net":{"peer":"2001:db8:85a3:1234:8a2e:370:7334:1"}}"#,
        );
        assert_eq!(out, r#"{"ip_address":"203.0.113.0","net":{"peer":"2001:db8:85a3::"}}"#);
        let out = run(&t, r#"{"ip_address":"::ffff:198.51.100.7"}"#);
        assert_eq!(out, r#"{"ip_address":"::ffff:198.51.100.0"}"#);
        // Not an address: removed, it might identify someone. null stays.
        assert_eq!(run(&t, r#"{"ip_address":"host-17.corp","x":1}"#), r#"{"x":1}"#);
        assert_eq!(run(&t, r#"{"ip_address":null}"#), r#"{"ip_address":null}"#);
    }

    #[test]
    fn truncate_ip_honours_other_prefixes() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(truncate_ip(ip("203.0.113.42"), 16, 48), ip("203.0.0.0"));
        assert_eq!(truncate_ip(ip("203.0.113.42"), 32, 48), ip("203.0.113.42"));
        assert_eq!(truncate_ip(ip("203.0.113.42"), 0, 48), ip("0.0.0.0"));
        assert_eq!(truncate_ip(ip("2001:db8:abcd:ef01::1"), 24, 56), ip("2001:db8:abcd:ef00::"));
        assert_eq!(truncate_ip(ip("2001:db8::1"), 24, 128), ip("2001:db8::1"));
    }

    #[test]
    fn allow_keeps_listed_fields_and_always_the_common_four() {
        let t = Transform {
            allow: Some(vec![p("subject"), p("location.country")]),
            ..empty()
        };
        assert_eq!(
            run(&t, EV),
            r#"{"event_type":"transaction.verified","timestamp":"2025-01-28T10:31:00Z","transaction_id":"tx-uuid","subject":"user@company.com","location":{"country":"US"},"org_id":"org-uuid"}"#
        );
        // An object with none of the listed parts disappears; so does a scalar where an object
        // was expected.
        assert_eq!(
            run(&t, r#"{"org_id":"o","location":{"city":"x"},"subject":"s"}"#),
            r#"{"org_id":"o","subject":"s"}"#
        );
        assert_eq!(run(&t, r#"{"location":"Paris"}"#), "{}");
        let whole = Transform {
            allow: Some(vec![p("location")]),
            ..empty()
        };
        assert!(run(&whole, EV).contains(r#""location":{"city":"San Francisco","region":"California","country":"US"}"#));
    }

    #[test]
    fn rules_apply_in_order_allow_drop_truncate_hash() {
        let t = Transform {
            allow: Some(vec![p("subject"), p("ip_address"), p("location")]),
            drop: vec![p("location.city")],
            truncate_ip: Some(TruncateIp {
                fields: vec![p("ip_address")],
                ipv4_prefix: 24,
                ipv6_prefix: 48,
            }),
            hash: Some(hash_rule(&["subject", "transaction_id"])),
        };
        let v: serde_json::Value = serde_json::from_str(&run(&t, EV)).unwrap();
        let key = b"0123456789abcdef-test-key";
        assert_eq!(v["subject"], hmac_hex(key, b"user@company.com"));
        assert_eq!(v["transaction_id"], hmac_hex(key, b"tx-uuid"));
        assert_eq!(v["ip_address"], "203.0.113.0");
        assert_eq!(v["location"], serde_json::json!({"region":"California","country":"US"}));
        assert_eq!(v["event_type"], "transaction.verified");
        // The result is still a valid event.
        let out = t.apply(EV.as_bytes()).unwrap();
        crate::event::validate(&out, 1 << 20).unwrap();
    }

    #[test]
    fn field_paths_parse_and_cover() {
        assert_eq!(p("location.city").0, ["location", "city"]);
        assert!(FieldPath::parse("").is_none());
        assert!(FieldPath::parse("a..b").is_none());
        assert!(FieldPath::parse(" a").is_none());
        assert!(p("location").covers(&p("location.city")));
        assert!(p("location.city").covers(&p("location.city")));
        assert!(!p("location.city").covers(&p("location")));
        assert!(!p("loc").covers(&p("location")));
    }
}
