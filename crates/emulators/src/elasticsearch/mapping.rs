//! The mapping the index enforces: fields listed in `es_long_fields` are mapped `long`, so a
//! document whose value there is not a whole number (numeric strings are coerced) is refused
//! with item 400 `mapper_parsing_exception`, its reason previewing the value and `caused_by`
//! quoting it again, as a real cluster does (`docs/PROTOCOLS.md` §2.3, §2.7).

use serde_json::{json, Value};

/// The first `long` field whose value is not a whole number, as the refusal's `reason` and
/// `caused_by`; `None` when every such field fits (or is absent or null).
pub(super) fn long_field_refusal(long_fields: &[String], doc: &Value, source: &[u8], id: &str) -> Option<(String, Value)> {
    for field in long_fields {
        let whole = |v: &Value| match v {
            Value::Number(n) => n.is_i64() || n.is_u64(),
            // Elasticsearch coerces numeric strings.
            Value::String(s) => s.trim().parse::<i64>().is_ok(),
            _ => false,
        };
        let Some(value) = doc.get(field.as_str()).filter(|v| !v.is_null() && !whole(v)) else {
            continue;
        };
        let shown = match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let at = source
            .windows(field.len() + 2)
            .position(|w| w == format!("\"{field}\"").as_bytes())
            .unwrap_or(0);
        let reason = format!(
            "[1:{}] failed to parse field [{field}] of type [long] in document with id '{id}'. Preview of field's value: '{shown}'",
            at + field.len() + 4
        );
        let caused_by = json!({"type": "illegal_argument_exception", "reason": format!("For input string: \"{shown}\"")});
        return Some((reason, caused_by));
    }
    None
}
