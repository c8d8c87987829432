//! Index templates: `PUT|POST /_index_template/<name>` is recorded in order and acknowledged
//! (400 when `index_patterns` is missing), `GET|HEAD` answers 200 or 404
//! (`docs/PROTOCOLS.md` §2.8, the template the forwarder installs).

use serde_json::{json, Value};

use crate::{Reply, State};

use super::es_error;

pub(super) fn put_template(st: &mut State, name: &str, body: &[u8]) -> Reply {
    let v: Value = match serde_json::from_slice(body) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => return es_error(400, "parse_exception", "request body must be a JSON object"),
        Err(e) => return es_error(400, "x_content_parse_exception", format!("[{}:{}] {e}", e.line(), e.column())),
    };
    let patterns_ok = match v.get("index_patterns") {
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(a)) => !a.is_empty() && a.iter().all(Value::is_string),
        _ => false,
    };
    if !patterns_ok {
        return es_error(
            400,
            "action_request_validation_exception",
            "Validation Failed: 1: index patterns are missing;",
        );
    }
    st.es.templates.push((name.to_string(), v));
    Reply::json(200, &json!({"acknowledged": true}))
}

pub(super) fn get_template(st: &State, name: &str) -> Reply {
    match st.es.templates.iter().rev().find(|(n, _)| n == name) {
        Some((n, t)) => Reply::json(200, &json!({"index_templates": [{"name": n, "index_template": t}]})),
        None => es_error(
            404,
            "resource_not_found_exception",
            format!("index template matching [{name}] not found"),
        ),
    }
}
