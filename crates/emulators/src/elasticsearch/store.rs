//! The documents an Elasticsearch emulator holds: first-write order, one live document per
//! `(_index, _id)`, a sequence number per index, and for data streams the backing index named
//! at first write (`docs/PROTOCOLS.md` §2.1, §2.6). Also the ids and index uuids it makes up,
//! and `GET /<index>/_doc/<id>`.
//!
//! Invariant: `by_key` only points at live documents (a delete clears both).

use std::collections::HashMap;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::{EmulatorConfig, Reply, State};

#[derive(Default)]
pub(crate) struct EsState {
    /// Stored documents in first-write order; `None` once deleted.
    pub(super) docs: Vec<Option<Doc>>,
    pub(super) by_key: HashMap<(String, String), usize>,
    pub(super) seq_no: HashMap<String, u64>,
    /// Data stream name -> its backing index, fixed at first write.
    pub(super) backing: HashMap<String, String>,
    /// Every template PUT, in order.
    pub templates: Vec<(String, Value)>,
}

pub(super) struct Doc {
    pub(super) index: String,
    pub(super) id: String,
    pub(super) source: Value,
    pub(super) version: u64,
    pub(super) seq_no: u64,
}

impl EsState {
    pub fn documents(&self) -> Vec<(String, String, Value)> {
        self.docs
            .iter()
            .flatten()
            .map(|d| (d.index.clone(), d.id.clone(), d.source.clone()))
            .collect()
    }

    pub(super) fn get(&self, index: &str, id: &str) -> Option<&Doc> {
        let i = *self.by_key.get(&(index.to_string(), id.to_string()))?;
        self.docs[i].as_ref()
    }

    pub(super) fn next_seq_no(&mut self, index: &str) -> u64 {
        let n = self.seq_no.entry(index.to_string()).or_insert(0);
        let v = *n;
        *n += 1;
        v
    }
}

pub(super) fn get_doc(st: &State, index: &str, id: &str) -> Reply {
    match st.es.get(index, id) {
        Some(d) => Reply::json(
            200,
            &json!({
                "_index": index, "_id": id, "_version": d.version, "_seq_no": d.seq_no,
                "_primary_term": 1, "found": true, "_source": d.source
            }),
        ),
        None => Reply::json(404, &json!({"_index": index, "_id": id, "found": false})),
    }
}

pub(super) fn auto_id() -> String {
    use base64::Engine;
    let bytes = uuid::Uuid::new_v4().into_bytes();
    // ES auto ids are 20 URL-safe base64 characters.
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes[..15])
}

pub(super) fn index_uuid(index: &str) -> String {
    use base64::Engine;
    let h = Sha256::digest(index.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&h[..16])
}

/// The index name ES reports: the backing index for a data stream.
pub(super) fn resp_index(cfg: &EmulatorConfig, st: &mut State, index: &str) -> String {
    if !cfg.es_data_stream {
        return index.to_string();
    }
    st.es
        .backing
        .entry(index.to_string())
        .or_insert_with(|| format!(".ds-{index}-{}-000001", chrono::Utc::now().format("%Y.%m.%d")))
        .clone()
}
