//! Channels and indexer acknowledgement (`docs/PROTOCOLS.md` §1.6): the channel header or query
//! (a GUID, else 400 code 11; required with `useACK` and on `/raw`), ack ids per channel, and
//! `/services/collector/ack`, where a true ack is read once and then forgotten.

use std::collections::HashMap;

use serde_json::{json, Map, Value};

use crate::{EmulatorConfig, Reply, Req, State};

use super::codes::hec;

#[derive(Default)]
pub(super) struct AckChannel {
    pub(super) next_id: u64,
    /// ackId -> "never turns true" (SplunkAckNever).
    pub(super) pending: HashMap<u64, bool>,
}

/// The request's channel: `Ok(None)` when absent, 400 code 11 when not a GUID.
pub(super) fn channel(req: &Req) -> Result<Option<String>, Reply> {
    let c = req
        .header("x-splunk-request-channel")
        .map(str::to_string)
        .or_else(|| req.query_param("channel"));
    match c {
        None => Ok(None),
        Some(c) if uuid::Uuid::try_parse(c.trim()).is_ok() => Ok(Some(c.trim().to_ascii_lowercase())),
        Some(_) => Err(hec(11)),
    }
}

pub(super) fn required_channel(req: &Req) -> Result<String, Reply> {
    channel(req)?.ok_or_else(|| hec(10))
}

pub(super) fn ack(cfg: &EmulatorConfig, st: &mut State, req: &Req) -> Reply {
    if !cfg.splunk_indexer_ack {
        return hec(14);
    }
    let chan = match required_channel(req) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let ids: Option<Vec<u64>> = match &req.body.data {
        Ok(b) => serde_json::from_slice::<Value>(b)
            .ok()
            .and_then(|v| v.get("acks")?.as_array()?.iter().map(Value::as_u64).collect::<Option<Vec<u64>>>()),
        Err(_) => None,
    };
    let Some(ids) = ids else {
        return hec(6);
    };
    let ch = st.splunk.channels.entry(chan).or_default();
    let mut out = Map::new();
    for id in ids {
        let done = match ch.pending.get(&id) {
            Some(false) => {
                // Read once, then forgotten (§1.6).
                ch.pending.remove(&id);
                true
            }
            Some(true) | None => false,
        };
        out.insert(id.to_string(), Value::Bool(done));
    }
    Reply::json(200, &json!({ "acks": out }))
}
