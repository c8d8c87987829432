//! HEC bodies into envelopes: `/event` bodies are concatenated JSON envelopes checked one by one
//! (event present and not blank, `time`, `fields` flat, index allowed), stopping at the first bad
//! one with its code and number; `/raw` lines become envelopes with metadata from the query
//! (`docs/PROTOCOLS.md` §1.1, §1.3, §1.8).

use serde_json::{json, Map, Value};

use crate::{EmulatorConfig, Req};

/// Parses a body of concatenated envelopes; stops at the first bad one and returns its code and
/// zero-based number.
pub(super) fn parse_envelopes(cfg: &EmulatorConfig, body: &[u8]) -> (Vec<Value>, Option<(u16, usize)>) {
    let mut accepted = Vec::new();
    for item in serde_json::Deserializer::from_slice(body).into_iter::<Value>() {
        let n = accepted.len();
        match item {
            Err(_) => return (accepted, Some((6, n))),
            Ok(env) => match check_envelope(cfg, &env) {
                Ok(()) => accepted.push(env),
                Err(code) => return (accepted, Some((code, n))),
            },
        }
    }
    (accepted, None)
}

fn check_envelope(cfg: &EmulatorConfig, env: &Value) -> Result<(), u16> {
    let Some(obj) = env.as_object() else {
        return Err(6);
    };
    match obj.get("event") {
        None | Some(Value::Null) => return Err(12),
        Some(Value::String(s)) if s.is_empty() => return Err(13),
        Some(_) => {}
    }
    if let Some(t) = obj.get("time") {
        if !t.is_number() {
            return Err(6);
        }
    }
    if let Some(f) = obj.get("fields") {
        if !flat_fields(f) {
            return Err(15);
        }
    }
    for k in ["host", "source", "sourcetype"] {
        if obj.get(k).is_some_and(|v| !v.is_string()) {
            return Err(6);
        }
    }
    if let Some(i) = obj.get("index") {
        let Some(i) = i.as_str() else {
            return Err(6);
        };
        if !index_allowed(cfg, i) {
            return Err(7);
        }
    }
    Ok(())
}

/// Indexed fields must be a flat object: values are scalars or arrays of scalars.
fn flat_fields(f: &Value) -> bool {
    let Some(obj) = f.as_object() else {
        return false;
    };
    obj.values().all(|v| match v {
        Value::Object(_) => false,
        Value::Array(items) => items.iter().all(|i| !i.is_object() && !i.is_array()),
        _ => true,
    })
}

fn index_allowed(cfg: &EmulatorConfig, index: &str) -> bool {
    cfg.splunk_allowed_indexes.is_empty() || cfg.splunk_allowed_indexes.iter().any(|i| i == index)
}

/// `/raw`: each non-empty line is an event; metadata comes from the query (§1.1).
pub(super) fn raw_envelopes(cfg: &EmulatorConfig, req: &Req, body: &[u8]) -> Result<Vec<Value>, u16> {
    let mut meta = Map::new();
    for k in ["host", "source", "sourcetype", "index"] {
        if let Some(v) = req.query_param(k) {
            meta.insert(k.to_string(), Value::String(v));
        }
    }
    if let Some(i) = meta.get("index").and_then(Value::as_str) {
        if !index_allowed(cfg, i) {
            return Err(7);
        }
    }
    if let Some(t) = req.query_param("time") {
        let t: f64 = t.trim().parse().map_err(|_| 6u16)?;
        meta.insert("time".into(), json!(t));
    }
    let text = String::from_utf8_lossy(body);
    Ok(text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut env = meta.clone();
            env.insert("event".into(), Value::String(l.to_string()));
            Value::Object(env)
        })
        .collect())
}
