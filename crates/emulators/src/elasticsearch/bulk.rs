//! `POST|PUT /_bulk` and `/<index>/_bulk`: NDJSON parsing (must end with `\n`, `\r\n`
//! allowed, `index`/`create`/`delete` actions, known parameters only) and the answer (always
//! 200 with `took`, `errors` and one item per action, in order) (`docs/PROTOCOLS.md` §2.2,
//! §2.3). Malformed input is a whole-request 400.

use std::time::Instant;

use serde_json::{json, Map, Value};

use crate::{EmulatorConfig, Reply, State};

use super::es_error;
use super::store::{index_uuid, resp_index};
use super::write::{shards, write, WriteOp};

/// One parsed bulk action.
struct Action<'a> {
    verb: &'static str,
    index: String,
    id: Option<String>,
    source: Option<&'a [u8]>,
}

const ACTION_PARAMS: [&str; 15] = [
    "_index",
    "_id",
    "routing",
    "pipeline",
    "require_alias",
    "require_data_stream",
    "if_seq_no",
    "if_primary_term",
    "version",
    "version_type",
    "dynamic_templates",
    "retry_on_conflict",
    "_source",
    "op_type",
    "list_executed_pipelines",
];

fn token_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "VALUE_NULL",
        Value::Bool(true) => "VALUE_TRUE",
        Value::Bool(false) => "VALUE_FALSE",
        Value::Number(_) => "VALUE_NUMBER",
        Value::String(_) => "VALUE_STRING",
        Value::Array(_) => "START_ARRAY",
        Value::Object(_) => "START_OBJECT",
    }
}

/// Parses the action lines; any problem fails the whole request, as ES's `BulkRequestParser`.
fn parse_bulk<'a>(default_index: Option<&str>, body: &'a [u8]) -> Result<Vec<Action<'a>>, Reply> {
    let lines: Vec<&[u8]> = body[..body.len() - 1]
        .split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .collect();
    let malformed = |n: usize, what: String| {
        es_error(
            400,
            "illegal_argument_exception",
            format!("Malformed action/metadata line [{n}], {what}"),
        )
    };
    let mut actions = Vec::new();
    let mut invalid = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let n = i + 1;
        i += 1;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let v: Value = match serde_json::from_slice(line) {
            Ok(v) => v,
            Err(e) => return Err(es_error(400, "x_content_parse_exception", format!("[{n}:{}] {e}", e.column()))),
        };
        let Value::Object(obj) = v else {
            return Err(malformed(n, format!("expected START_OBJECT but found [{}]", token_name(&v))));
        };
        let mut entries = obj.into_iter();
        let Some((verb, meta)) = entries.next() else {
            return Err(malformed(n, "expected FIELD_NAME but found [END_OBJECT]".into()));
        };
        if entries.next().is_some() {
            return Err(malformed(n, "expected END_OBJECT but found [FIELD_NAME]".into()));
        }
        let verb: &'static str = match verb.as_str() {
            "index" => "index",
            "create" => "create",
            "update" => "update",
            "delete" => "delete",
            other => {
                return Err(malformed(
                    n,
                    format!("expected field [create], [delete], [index] or [update] but found [{other}]"),
                ))
            }
        };
        let Value::Object(meta) = meta else {
            return Err(malformed(n, format!("expected START_OBJECT but found [{}]", token_name(&meta))));
        };
        if let Some(k) = meta.keys().find(|k| !ACTION_PARAMS.contains(&k.as_str())) {
            return Err(es_error(
                400,
                "illegal_argument_exception",
                format!("Action/metadata line [{n}] contains an unknown parameter [{k}]"),
            ));
        }
        let index = match meta.get("_index") {
            Some(Value::String(s)) => Some(s.clone()),
            _ => default_index.map(str::to_string),
        };
        let id = match meta.get("_id") {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(x)) => Some(x.to_string()),
            _ => None,
        };
        let source = if verb == "delete" {
            None
        } else if i < lines.len() {
            i += 1;
            Some(lines[i - 1])
        } else {
            invalid.push("source is missing");
            None
        };
        match index {
            Some(index) => actions.push(Action { verb, index, id, source }),
            None => invalid.push("index is missing"),
        }
    }
    if actions.is_empty() && invalid.is_empty() {
        invalid.push("no requests added");
    }
    if !invalid.is_empty() {
        let list: String = invalid.iter().enumerate().map(|(k, m)| format!("{}: {m};", k + 1)).collect();
        return Err(es_error(
            400,
            "action_request_validation_exception",
            format!("Validation Failed: {list}"),
        ));
    }
    Ok(actions)
}

/// Item statuses a fault injects into a bulk request.
#[derive(Clone, Copy)]
pub(super) enum Injected<'a> {
    /// [`Fault::EsItems`]: by item position.
    ByPosition(&'a [u16]),
    /// [`Fault::EsItemsMatching`]: for items whose document contains these bytes.
    Matching(&'a [u8], u16),
}

pub(super) fn bulk(cfg: &EmulatorConfig, st: &mut State, default_index: Option<&str>, body: &[u8], injected: Option<Injected>) -> Reply {
    let started = Instant::now();
    if body.is_empty() {
        return es_error(400, "parse_exception", "request body is required");
    }
    if !body.ends_with(b"\n") {
        return es_error(
            400,
            "illegal_argument_exception",
            "The bulk request must be terminated by a newline [\\n]",
        );
    }
    let actions = match parse_bulk(default_index, body) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let mut items = Vec::with_capacity(actions.len());
    let mut errors = false;
    for (k, a) in actions.into_iter().enumerate() {
        let inject = match injected {
            Some(Injected::ByPosition(v)) => v.get(k).copied(),
            Some(Injected::Matching(needle, status)) => a
                .source
                .is_some_and(|src| !needle.is_empty() && src.windows(needle.len()).any(|w| w == needle))
                .then_some(status),
            None => None,
        };
        let item = match a.verb {
            "create" | "index" => {
                let op = if a.verb == "create" { WriteOp::Create } else { WriteOp::Index };
                let source = a.source.unwrap_or(b"");
                match write(cfg, st, &a.index, a.id, op, source, inject) {
                    Ok(w) => json!({
                        "_index": w.resp_index, "_id": w.id, "_version": w.version,
                        "result": if w.created { "created" } else { "updated" },
                        "_shards": shards(), "_seq_no": w.seq_no, "_primary_term": 1,
                        "status": if w.created { 201 } else { 200 }
                    }),
                    Err(f) => {
                        errors = true;
                        json!({"_index": f.resp_index, "_id": f.id, "status": f.status, "error": f.cause()})
                    }
                }
            }
            "delete" => delete(cfg, st, &a.index, a.id.unwrap_or_default()),
            _ => {
                errors = true;
                let id = a.id.unwrap_or_default();
                json!({
                    "_index": a.index, "_id": id, "status": 400,
                    "error": {"type": "illegal_argument_exception", "reason": "the SIEM emulator does not support bulk update",
                              "index_uuid": index_uuid(&a.index), "shard": "0", "index": a.index}
                })
            }
        };
        let mut wrapper = Map::new();
        wrapper.insert(a.verb.to_string(), item);
        items.push(Value::Object(wrapper));
    }
    let took = started.elapsed().as_millis() as u64;
    Reply::json(200, &json!({"took": took, "errors": errors, "items": items}))
}

pub(super) fn delete(cfg: &EmulatorConfig, st: &mut State, index: &str, id: String) -> Value {
    let resp = resp_index(cfg, st, index);
    let seq_no = st.es.next_seq_no(index);
    let (version, result, status) = match st.es.by_key.remove(&(index.to_string(), id.clone())) {
        Some(slot) => {
            let v = st.es.docs[slot].take().map_or(1, |d| d.version + 1);
            (v, "deleted", 200)
        }
        None => (1, "not_found", 404),
    };
    json!({
        "_index": resp, "_id": id, "_version": version, "result": result,
        "_shards": shards(), "_seq_no": seq_no, "_primary_term": 1, "status": status
    })
}
