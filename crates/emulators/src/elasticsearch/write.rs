//! One create/index write, shared by the single-document APIs and bulk items: index-name and
//! data-stream rules, JSON-object sources, the index's mapping (`mapping.rs`), `create`
//! conflicts (409, the document untouched), versions and sequence numbers; and the
//! single-document answers (201 with `Location`, 200 updated) (`docs/PROTOCOLS.md` §2.1, §2.3,
//! §2.6).
//!
//! Invariant: a write that fails stores nothing and records no event, except an injected 409 on
//! `create`, which first stores the document if absent (see `Fault::EsItems`).

use serde_json::{json, Value};

use crate::{EmulatorConfig, Reply, State};

use super::items::injected_failure;
use super::mapping::long_field_refusal;
use super::path::invalid_index_name;
use super::store::{auto_id, index_uuid, resp_index, Doc};
use super::{error_reply, es_error};

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum WriteOp {
    Create,
    Index,
}

pub(super) struct Written {
    pub(super) resp_index: String,
    pub(super) id: String,
    pub(super) version: u64,
    pub(super) seq_no: u64,
    pub(super) created: bool,
}

pub(super) struct Failed {
    pub(super) status: u16,
    pub(super) kind: &'static str,
    pub(super) reason: String,
    pub(super) index: String,
    pub(super) resp_index: String,
    pub(super) id: String,
    pub(super) caused_by: Option<Value>,
}

impl Failed {
    pub(super) fn cause(&self) -> Value {
        let mut c = json!({
            "type": self.kind,
            "reason": self.reason,
            "index_uuid": index_uuid(&self.index),
            "shard": "0",
            "index": self.resp_index,
        });
        if let Some(cb) = &self.caused_by {
            c["caused_by"] = cb.clone();
        }
        c
    }
}

pub(super) fn shards() -> Value {
    json!({"total": 2, "successful": 1, "failed": 0})
}

/// The single-document APIs: the same write as a bulk item, answered as a whole request.
pub(super) fn single(cfg: &EmulatorConfig, st: &mut State, index: &str, id: Option<String>, op: WriteOp, body: &[u8]) -> Reply {
    if body.iter().all(u8::is_ascii_whitespace) {
        return es_error(400, "parse_exception", "request body is required");
    }
    match write(cfg, st, index, id, op, body, None) {
        Ok(w) => {
            let status = if w.created { 201 } else { 200 };
            let r = Reply::json(
                status,
                &json!({
                    "_index": w.resp_index, "_id": w.id, "_version": w.version,
                    "result": if w.created { "created" } else { "updated" },
                    "_shards": shards(), "_seq_no": w.seq_no, "_primary_term": 1
                }),
            );
            if w.created {
                r.header("location", format!("/{index}/_doc/{}", w.id))
            } else {
                r
            }
        }
        Err(f) => error_reply(f.status, f.cause()),
    }
}

/// One create/index write. `injected` is a status from [`crate::Fault::EsItems`].
pub(super) fn write(
    cfg: &EmulatorConfig,
    st: &mut State,
    index: &str,
    id: Option<String>,
    op: WriteOp,
    source: &[u8],
    injected: Option<u16>,
) -> Result<Written, Box<Failed>> {
    let id = id.unwrap_or_else(auto_id);
    if let Some(reason) = invalid_index_name(index) {
        return Err(Box::new(Failed {
            status: 400,
            kind: "invalid_index_name_exception",
            reason,
            index: index.to_string(),
            resp_index: index.to_string(),
            id,
            caused_by: None,
        }));
    }
    let resp = resp_index(cfg, st, index);
    let fail = |status: u16, kind: &'static str, reason: String, caused_by: Option<Value>| {
        Box::new(Failed {
            status,
            kind,
            reason,
            index: index.to_string(),
            resp_index: resp.clone(),
            id: id.clone(),
            caused_by,
        })
    };
    if let Some(status) = injected.filter(|s| !(200..300).contains(s)) {
        if status == 409 && op == WriteOp::Create {
            // On `create`, 409 means the document is there: an earlier attempt, whose answer the
            // client never got, stored it. Store it now if absent, so the emulator never answers
            // 409 for a document it does not hold (a client trusting the 409 would lose it).
            let _ = write(cfg, st, index, Some(id.clone()), op, source, None);
        }
        return Err(injected_failure(status, index, &id, source, fail));
    }
    if cfg.es_data_stream && op == WriteOp::Index {
        return Err(fail(
            400,
            "illegal_argument_exception",
            "only write ops with an op_type of create are allowed in data streams".to_string(),
            None,
        ));
    }
    let doc = match serde_json::from_slice::<Value>(source) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => {
            return Err(fail(
                400,
                "document_parsing_exception",
                "[1:1] failed to parse: Malformed content, must start with an object".into(),
                None,
            ))
        }
        Err(e) => {
            let at = format!("[{}:{}]", e.line(), e.column());
            return Err(fail(
                400,
                "document_parsing_exception",
                format!("{at} failed to parse"),
                Some(json!({"type": "json_parse_exception", "reason": format!("{at} {e}")})),
            ));
        }
    };
    if let Some((reason, caused_by)) = long_field_refusal(&cfg.es_long_fields, &doc, source, &id) {
        return Err(fail(400, "mapper_parsing_exception", reason, Some(caused_by)));
    }
    if cfg.es_data_stream && doc.get("@timestamp").is_none() {
        return Err(fail(
            400,
            "document_parsing_exception",
            format!(
                "[1:{}] failed to parse: data stream timestamp field [@timestamp] is missing",
                source.len()
            ),
            None,
        ));
    }
    let key = (index.to_string(), id.clone());
    if let Some(&slot) = st.es.by_key.get(&key) {
        if op == WriteOp::Create {
            let version = st.es.docs[slot].as_ref().map_or(1, |d| d.version);
            return Err(fail(
                409,
                "version_conflict_engine_exception",
                format!("[{id}]: version conflict, document already exists (current version [{version}])"),
                None,
            ));
        }
        let seq_no = st.es.next_seq_no(index);
        let Some(d) = st.es.docs[slot].as_mut() else {
            unreachable!("by_key only points at live documents")
        };
        d.version += 1;
        d.seq_no = seq_no;
        d.source = doc.clone();
        let version = d.version;
        st.events.push(doc);
        return Ok(Written {
            resp_index: resp,
            id,
            version,
            seq_no,
            created: false,
        });
    }
    let seq_no = st.es.next_seq_no(index);
    st.es.by_key.insert(key, st.es.docs.len());
    st.es.docs.push(Some(Doc {
        index: index.to_string(),
        id: id.clone(),
        source: doc.clone(),
        version: 1,
        seq_no,
    }));
    st.events.push(doc);
    Ok(Written {
        resp_index: resp,
        id,
        version: 1,
        seq_no,
        created: true,
    })
}
