//! Event validation: one JSONL line in, an accepted event or a rejection reason out.
//!
//! An accepted event is forwarded byte for byte as the auth server wrote it (minus the line
//! ending): the agent never re-serialises, so what reaches the SIEM is exactly what was logged.
//!
//! A line is rejected (and quarantined by the caller) when it is not a JSON object, lacks one of
//! the common fields, has a non-string common field, has an unparseable `timestamp`, has a
//! duplicate common field, or exceeds `sources.max_event_bytes`. Parsing is bounded: serde_json
//! stops at 128 levels of nesting, so hostile input cannot exhaust the stack.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

/// The four event types SendAuth documents; others pass through and are counted as unknown.
pub(crate) const KNOWN_TYPES: [&str; 4] = [
    "transaction.created",
    "transaction.verified",
    "transaction.denied",
    "transaction.expired",
];

/// Why a line was rejected. `Display` is the reason stored in the quarantine and logged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("line is {len} bytes, over sources.max_event_bytes ({max}); raise the limit or shorten the event")]
    TooLarge { len: usize, max: usize },
    #[error("not valid UTF-8 at byte {0}")]
    InvalidUtf8(usize),
    #[error("not a JSON object (starts with {0})")]
    NotAnObject(String),
    #[error("invalid JSON: {0}")]
    InvalidJson(String),
    #[error("missing \"{0}\"")]
    MissingField(&'static str),
    #[error("\"{field}\" must be a string, got {got}")]
    NotAString { field: &'static str, got: &'static str },
    /// "ISO 8601" here means its RFC 3339 profile (docs/CONTRACT.md): a full date, a time to the
    /// second (fractions allowed) and an offset (`Z` or `±hh:mm`). Shorter ISO forms
    /// (`2025-01-28T10:30Z`, `+0100`, a date alone) are rejected, so every SIEM reads the same
    /// instant.
    #[error("\"timestamp\" is not RFC 3339 (the ISO 8601 form with date, time to the second and offset, e.g. 2025-01-28T10:30:00Z or 2025-01-28T11:30:00+01:00): {0:?}")]
    BadTimestamp(String),
    #[error("JSON nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("empty line")]
    Empty,
    #[error("unterminated last line of a rotated or removed file (its newline never arrived)")]
    Unterminated,
    #[error("the privacy transform could not be applied: {0}")]
    Transform(String),
}

/// What validation learned about an accepted event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    pub(crate) known_type: bool,
}

#[derive(Deserialize)]
struct Common<'a> {
    #[serde(borrow)]
    event_type: Option<&'a RawValue>,
    #[serde(borrow)]
    timestamp: Option<&'a RawValue>,
    #[serde(borrow)]
    org_id: Option<&'a RawValue>,
    #[serde(borrow)]
    transaction_id: Option<&'a RawValue>,
}

/// Validates one line (without its trailing newline; a trailing `\r` is tolerated by callers
/// stripping it first).
pub fn validate(line: &[u8], max_bytes: usize) -> Result<Accepted, Rejection> {
    if line.len() > max_bytes {
        return Err(Rejection::TooLarge {
            len: line.len(),
            max: max_bytes,
        });
    }
    let text = std::str::from_utf8(line).map_err(|e| Rejection::InvalidUtf8(e.valid_up_to()))?;
    let trimmed = text.trim_start();
    match trimmed.as_bytes().first() {
        None => return Err(Rejection::Empty),
        Some(b'{') => {}
        Some(_) => {
            let preview: String = trimmed.chars().take(12).collect();
            return Err(Rejection::NotAnObject(format!("{preview:?}")));
        }
    }
    if nesting_depth_exceeds(line, MAX_DEPTH) {
        return Err(Rejection::TooDeep);
    }
    let common: Common = serde_json::from_str(text).map_err(|e| Rejection::InvalidJson(e.to_string()))?;
    let event_type = string_field("event_type", common.event_type)?;
    let timestamp = string_field("timestamp", common.timestamp)?;
    string_field("org_id", common.org_id)?;
    string_field("transaction_id", common.transaction_id)?;
    if parse_timestamp_millis(&timestamp).is_none() {
        let shown: String = timestamp.chars().take(64).collect();
        return Err(Rejection::BadTimestamp(shown));
    }
    Ok(Accepted {
        known_type: KNOWN_TYPES.contains(&event_type.as_ref()),
    })
}

/// Events nested deeper than this are rejected: SIEM parsers (and people) choke on them.
pub(crate) const MAX_DEPTH: usize = 64;

/// Whether `{`/`[` nesting (outside strings) goes deeper than `max`.
fn nesting_depth_exceeds(line: &[u8], max: usize) -> bool {
    // The depth can only pass `max` if the line has more than `max` opening brackets (strings
    // included): a SIMD search for them settles the common case without the byte-by-byte scan.
    if memchr::memchr2_iter(b'{', b'[', line).take(max + 1).count() <= max {
        return false;
    }
    let mut depth = 0usize;
    let mut in_str = false;
    let mut escaped = false;
    for &b in line {
        if in_str {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_str = false;
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

fn string_field<'a>(name: &'static str, raw: Option<&'a RawValue>) -> Result<Cow<'a, str>, Rejection> {
    let raw = raw.ok_or(Rejection::MissingField(name))?;
    let got = raw.get();
    match got.as_bytes().first() {
        Some(b'"') => serde_json::from_str::<Cow<'a, str>>(got).map_err(|e| Rejection::InvalidJson(e.to_string())),
        Some(b'{') => Err(Rejection::NotAString {
            field: name,
            got: "an object",
        }),
        Some(b'[') => Err(Rejection::NotAString {
            field: name,
            got: "an array",
        }),
        Some(b't') | Some(b'f') => Err(Rejection::NotAString {
            field: name,
            got: "a boolean",
        }),
        Some(b'n') => Err(Rejection::NotAString { field: name, got: "null" }),
        _ => Err(Rejection::NotAString {
            field: name,
            got: "a number",
        }),
    }
}

/// Parses an RFC 3339 timestamp to epoch milliseconds. Also accepts a space instead of `T` and a
/// missing offset (taken as UTC), both common in ISO 8601 logs.
pub(crate) fn parse_timestamp_millis(s: &str) -> Option<i64> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_millis());
    }
    let naive = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .or_else(|_| chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f"))
        .ok()?;
    Some(naive.and_utc().timestamp_millis())
}

/// Reads the common fields of an already-accepted event (for encoders that need them).
pub fn common_fields(line: &[u8]) -> Option<(String, String, String, String)> {
    #[derive(Deserialize)]
    struct C<'a> {
        #[serde(borrow)]
        event_type: Cow<'a, str>,
        #[serde(borrow)]
        timestamp: Cow<'a, str>,
        #[serde(borrow)]
        org_id: Cow<'a, str>,
        #[serde(borrow)]
        transaction_id: Cow<'a, str>,
    }
    let c: C = serde_json::from_slice(line).ok()?;
    Some((
        c.event_type.into_owned(),
        c.timestamp.into_owned(),
        c.org_id.into_owned(),
        c.transaction_id.into_owned(),
    ))
}

/// The event's `timestamp` as epoch milliseconds, if it has a parseable one (accepted events
/// always do). Reads only that field; the rest of the line is skipped, not copied.
pub fn timestamp_millis(line: &[u8]) -> Option<i64> {
    #[derive(Deserialize)]
    struct T<'a> {
        #[serde(borrow)]
        timestamp: Option<Cow<'a, str>>,
    }
    let t: T = serde_json::from_slice(line).ok()?;
    parse_timestamp_millis(&t.timestamp?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"event_type":"transaction.verified","timestamp":"2025-01-28T10:31:00Z","transaction_id":"tx-1","subject":"user@company.com","ip_address":"203.0.113.42","location":{"city":"San Francisco","region":"California","country":"US"},"org_id":"org-1"}"#;

    fn v(s: &str) -> Result<Accepted, Rejection> {
        validate(s.as_bytes(), 1024 * 1024)
    }

    #[test]
    fn accepts_documented_event() {
        assert_eq!(v(GOOD), Ok(Accepted { known_type: true }));
    }

    #[test]
    fn unknown_type_passes_but_is_flagged() {
        let s = GOOD.replace("transaction.verified", "user.mfa-challenge");
        assert_eq!(v(&s), Ok(Accepted { known_type: false }));
    }

    #[test]
    fn rejects_each_kind_of_bad_line() {
        assert_eq!(v("[1,2]"), Err(Rejection::NotAnObject("\"[1,2]\"".into())));
        assert!(matches!(v("{\"a\":"), Err(Rejection::InvalidJson(_))));
        assert_eq!(
            v(&GOOD.replace("\"org_id\":\"org-1\"", "\"x\":1")),
            Err(Rejection::MissingField("org_id"))
        );
        assert_eq!(
            v(&GOOD.replace("\"tx-1\"", "42")),
            Err(Rejection::NotAString {
                field: "transaction_id",
                got: "a number"
            })
        );
        assert!(matches!(
            v(&GOOD.replace("2025-01-28T10:31:00Z", "yesterday")),
            Err(Rejection::BadTimestamp(_))
        ));
        // The RFC 3339 profile of ISO 8601 only (see `Rejection::BadTimestamp`).
        for ok in ["2025-01-28T10:31:00.123Z", "2025-01-28T11:31:00+01:00", "2025-01-28t10:31:00z"] {
            assert!(v(&GOOD.replace("2025-01-28T10:31:00Z", ok)).is_ok(), "{ok}");
        }
        for short in ["2025-01-28T10:30Z", "2025-01-28T10:30:00+0100", "2025-01-28", "20250128T103000Z"] {
            let r = v(&GOOD.replace("2025-01-28T10:31:00Z", short));
            assert!(matches!(r, Err(Rejection::BadTimestamp(_))), "{short}: {r:?}");
            assert!(r.unwrap_err().to_string().contains("time to the second and offset"));
        }
        assert!(matches!(validate(GOOD.as_bytes(), 100), Err(Rejection::TooLarge { .. })));
        assert!(matches!(validate(b"{\"a\":\"\xff\"}", 1000), Err(Rejection::InvalidUtf8(6))));
        assert_eq!(v("   "), Err(Rejection::Empty));
    }

    #[test]
    fn duplicate_common_field_is_rejected() {
        let s = GOOD.replace("\"org_id\":\"org-1\"", "\"org_id\":\"org-1\",\"org_id\":\"org-2\"");
        assert!(matches!(v(&s), Err(Rejection::InvalidJson(m)) if m.contains("duplicate")));
    }

    #[test]
    fn deep_nesting_is_rejected_without_overflow() {
        let deep = GOOD.replace(
            "\"org-1\"",
            &format!("\"org-1\",\"x\":{}{}", "[".repeat(100_000), "]".repeat(100_000)),
        );
        assert_eq!(v(&deep), Err(Rejection::TooDeep));
        let ok = GOOD.replace("\"org-1\"", &format!("\"org-1\",\"x\":{}{}", "[".repeat(60), "]".repeat(60)));
        assert!(v(&ok).is_ok());
        // Brackets inside strings do not count.
        let s = GOOD.replace("tx-1", &"[{".repeat(100));
        assert!(v(&s).is_ok());
    }

    #[test]
    fn nul_byte_and_trailing_garbage_are_rejected() {
        assert!(v(&GOOD.replace("tx-1", "tx\u{0}1")).is_err());
        assert!(v(&format!("{GOOD} extra")).is_err());
    }

    #[test]
    fn timestamps() {
        assert_eq!(parse_timestamp_millis("1970-01-01T00:00:01.5Z"), Some(1500));
        assert_eq!(parse_timestamp_millis("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(parse_timestamp_millis("1970-01-01 00:00:02"), Some(2000));
        assert_eq!(parse_timestamp_millis("not a time"), None);
        assert_eq!(timestamp_millis(GOOD.as_bytes()), Some(1_738_060_260_000));
        assert_eq!(timestamp_millis(b"{\"timestamp\":7}"), None);
        assert_eq!(timestamp_millis(b"not json"), None);
    }
}
