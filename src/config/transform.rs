//! The `transform:` section: the privacy rules (`allow`, `drop`, `truncate_ip`, `hash`; see
//! `crate::transform` for what each does), checked against each other so that none silently
//! does nothing (a hashed field that `drop` removes, a truncated common field ...).

use super::reader::Node;
use crate::transform::{FieldPath, HashRule, Transform, TruncateIp, COMMON_FIELDS};

/// The `transform:` section; `None` when it sets no rule.
pub(super) fn parse_transform(n: &mut Node) -> Option<Transform> {
    let allow = n.field_paths("allow");
    let drop = n.field_paths("drop").unwrap_or_default();
    let truncate_ip = n.child("truncate_ip").map(parse_truncate_ip);
    let hash = n.child("hash").and_then(parse_hash);
    check_rules(n, allow.as_deref(), &drop, truncate_ip.as_ref(), hash.as_ref());
    let t = Transform {
        allow,
        drop,
        truncate_ip,
        hash,
    };
    let empty = t.allow.is_none() && t.drop.is_empty() && t.truncate_ip.is_none() && t.hash.is_none();
    (!empty).then_some(t)
}

/// `transform.truncate_ip` (default field: `ip_address`, prefixes /24 and /48).
fn parse_truncate_ip(mut t: Node) -> TruncateIp {
    let fields = t
        .field_paths("fields")
        .unwrap_or_else(|| vec![FieldPath(vec!["ip_address".into()])]);
    let ipv4_prefix = t.uint("ipv4_prefix", 24, 0, 32) as u8;
    let ipv6_prefix = t.uint("ipv6_prefix", 48, 0, 128) as u8;
    t.finish();
    TruncateIp {
        fields,
        ipv4_prefix,
        ipv6_prefix,
    }
}

/// `transform.hash`: the fields and a key long enough not to be guessed.
fn parse_hash(mut h: Node) -> Option<HashRule> {
    let fields = h.field_paths("fields");
    let key = h.secret("key");
    if fields.as_ref().is_none_or(|f| f.is_empty()) && !h.has_error_under("fields") {
        h.err("fields", "required; list the fields to pseudonymise, e.g. [subject]");
    }
    match &key {
        None if !h.has_error_under("key") => h.err(
            "key",
            "required; set key: \"${PSEUDONYM_KEY}\" or key_file (e.g. from `openssl rand -hex 32`)",
        ),
        Some(k) if k.expose().len() < 16 => h.err(
            "key",
            "is too short: use at least 16 random characters (e.g. `openssl rand -hex 32`), or pseudonyms can be reversed by guessing",
        ),
        _ => {}
    }
    h.finish();
    Some(HashRule {
        fields: fields?,
        key: key?,
    })
}

/// The rules against each other: common fields stay, and no rule targets a field another
/// removes or does not keep.
fn check_rules(n: &mut Node, allow: Option<&[FieldPath]>, drop: &[FieldPath], truncate_ip: Option<&TruncateIp>, hash: Option<&HashRule>) {
    let is_common = |p: &FieldPath| COMMON_FIELDS.contains(&p.root());
    for (i, p) in drop.iter().enumerate() {
        if is_common(p) {
            n.err(
                &format!("drop[{i}]"),
                format!("{p} is one of the four common fields (event_type, timestamp, org_id, transaction_id) that every event keeps"),
            );
        }
    }
    let truncated: Vec<&FieldPath> = truncate_ip.iter().flat_map(|t| &t.fields).collect();
    let hashed: Vec<&FieldPath> = hash.iter().flat_map(|h| &h.fields).collect();
    for (key, fields) in [("truncate_ip.fields", &truncated), ("hash.fields", &hashed)] {
        for (i, p) in fields.iter().enumerate() {
            let at = format!("{key}[{i}]");
            if key == "truncate_ip.fields" && is_common(p) {
                n.err(&at, format!("{p} is a common field, not an IP address"));
            }
            if key == "hash.fields" && (p.root() == "event_type" || p.root() == "timestamp") {
                n.err(
                &at,
                format!("{p} cannot be hashed: the SIEM needs event_type and timestamp as they are (org_id and transaction_id may be hashed)"),
            );
            }
            if let Some(d) = drop.iter().find(|d| d.covers(p)) {
                n.err(
                    &at,
                    format!("{p} is removed by transform.drop ({d}), so this rule would never apply"),
                );
            }
            if let Some(a) = &allow {
                if !is_common(p) && !a.iter().any(|a| a.covers(p)) {
                    n.err(&at, format!("{p} is not kept by transform.allow; add it there or remove this rule"));
                }
            }
        }
    }
    for p in &truncated {
        if hashed.iter().any(|h| h.covers(p) || p.covers(h)) {
            n.err(
                "hash.fields",
                format!("{p} is also in transform.truncate_ip.fields; choose one rule per field"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{env, MINIMAL};
    use crate::settings::Config;
    use crate::transform::FieldPath;

    #[test]
    fn transform_section_parses_with_defaults() {
        let text = format!(
            "{MINIMAL}transform:\n  drop: [location.city]\n  truncate_ip: {{}}\n  hash:\n    fields: [subject, org_id]\n    key: \"${{PSEUDONYM_KEY}}\"\n"
        );
        let env = |k: &str| (k == "PSEUDONYM_KEY").then(|| "k3y-0123456789abcdef".to_string());
        let c = Config::parse_with_env(&text, &env).unwrap();
        let t = c.transform.unwrap();
        assert_eq!(t.drop, [FieldPath::parse("location.city").unwrap()]);
        let ti = t.truncate_ip.unwrap();
        assert_eq!(
            (ti.fields[0].to_string(), ti.ipv4_prefix, ti.ipv6_prefix),
            ("ip_address".into(), 24, 48)
        );
        let h = t.hash.unwrap();
        assert_eq!(h.key.expose(), "k3y-0123456789abcdef");
        assert_eq!(h.fields.len(), 2);
        assert!(c.inline_secrets.is_empty());
        // No section, or an empty one: no transform at all.
        assert!(Config::parse_with_env(MINIMAL, &env).unwrap().transform.is_none());
        assert!(Config::parse_with_env(&format!("{MINIMAL}transform: {{}}\n"), &env)
            .unwrap()
            .transform
            .is_none());
    }

    #[test]
    fn transform_rules_that_could_not_work_are_config_errors() {
        let text = format!(
            "{MINIMAL}transform:\n  allow: [subject, location.country]\n  drop: [org_id, location, 7, \"a..b\"]\n  truncate_ip:\n    fields: [timestamp, ip_address]\n    ipv4_prefix: 40\n  hash:\n    fields: [event_type, location.city, ip_address]\n    key: tiny-k3y\n    salt: x\n"
        );
        let e = Config::parse_with_env(&text, &env).unwrap_err();
        let all = e.to_string();
        for want in [
            "transform.drop[0]: org_id is one of the four common fields",
            "transform.drop[2]: expected a field name, got the number 7",
            "transform.drop[3]: \"a..b\" is not a field name",
            "transform.truncate_ip.ipv4_prefix: 40 is out of range",
            "transform.truncate_ip.fields[0]: timestamp is a common field, not an IP address",
            "transform.truncate_ip.fields[1]: ip_address is not kept by transform.allow",
            "transform.hash.fields[0]: event_type cannot be hashed",
            "transform.hash.fields[1]: location.city is removed by transform.drop (location)",
            "transform.hash.key: is too short",
            "transform.hash.salt: unknown key",
            "transform.hash.fields: ip_address is also in transform.truncate_ip.fields",
        ] {
            assert!(all.contains(want), "missing {want:?} in:\n{all}");
        }
        assert!(!all.contains("tiny-k3y"), "the key leaked: {all}");
        let text = format!("{MINIMAL}transform:\n  hash:\n    fields: [subject]\n");
        let e = Config::parse_with_env(&text, &env).unwrap_err().to_string();
        assert!(e.contains("transform.hash.key: required"), "{e}");
        let text = format!("{MINIMAL}transform:\n  drop: subject\n");
        let e = Config::parse_with_env(&text, &env).unwrap_err().to_string();
        assert!(e.contains("transform.drop: expected a list of field names"), "{e}");
    }
}
