//! Splunk HTTP Event Collector, as splunkd answers (docs/PROTOCOLS.md §1). Where the doc warns
//! that Vector's receiver differs from splunkd, this follows splunkd.
//!
//! Reproduced:
//! - endpoints (§1.1): `/services/collector`, `/event`, `/event/1.0` (envelopes); `/raw`,
//!   `/raw/1.0` (one event per line, metadata from the query, channel required); `/health`
//!   (GET, no token needed: 200 code 17, or 503 code 18 while [`Fault::SplunkBusy`] is the
//!   sticky fault); `/ack` (POST `{"acks":[..]}`);
//! - auth (§1.2): `Authorization: Splunk <token>` or `Basic base64(any:<token>)`. No header:
//!   401 code 2; malformed header: 401 code 3; unknown token: 403 code 4 (splunkd, not Vector's
//!   401 code 3); disabled: 403 code 1. `?token=` is never allowed (allowQueryStringAuth off):
//!   a valid one gets 400 code 16, an invalid one 403 code 4 (token checked first, §1.2 [3P]);
//! - check order (§1.10): method and path, auth, query-string auth, channel, then the body;
//! - envelopes (§1.3, §1.4): a JSON stream of objects, whitespace between them optional.
//!   `event` missing or null: code 12; `""`: code 13; `fields` not a flat object (an object or
//!   array of objects/arrays as a value): code 15; `index` outside
//!   `splunk_allowed_indexes`: code 7; unparseable JSON, a non-object, or a non-string
//!   `host`/`source`/`sourcetype`/`index`: code 6;
//! - `time`: chosen rule: must be a JSON number (epoch seconds); anything else, including a
//!   numeric string or null, is code 6 (Vector's receiver code). Stricter than Vector and OTel,
//!   which tolerate numeric strings, and not the unverified [3P] "code 15" for splunkd: the
//!   forwarder must always send a number;
//! - partial batches (§1.8): envelopes before the first bad one are indexed (recorded), the
//!   bad one and the rest are not, and the body carries the zero-based
//!   `"invalid-event-number":N`. Code 7 uses the same N (the [3P] "one higher" is not copied);
//! - `Content-Encoding: gzip`; any other encoding (deflate included, §1.5 [3P]) gets 415 with an
//!   empty body; an empty body gets 400 code 5; over `max_content_length`: 413 plain text
//!   `Content-Length of N too large (maximum is M)`;
//! - indexer ack (§1.6): channel from `X-Splunk-Request-Channel` or `?channel=`, a GUID (else
//!   400 code 11; missing: code 10). Success carries `ackId`, counted per channel from 0. An
//!   ack id reads true on the first poll that asks for it and is then forgotten; unknown ids
//!   read false. `/ack` on a non-ack token: 400 code 14, checked before the channel [3P];
//! - JSON answers carry `Content-Type: application/json`; unknown paths 404 with
//!   `{"text":"The requested URL was not found on this server.","code":404}`; a wrong method 405
//!   with that same body [3P].
//!
//! Not reproduced: top-level JSON arrays (reportedly accepted by recent splunkd [3P]; rejected
//! here as code 6 because clients must not send them, §1.4); Vector's carrying of metadata
//! from one envelope to the next; defaults for host/source/sourcetype (envelopes are recorded as
//! sent); `auto_extract_timestamp`; per-event size limits; ack limits and channel expiry;
//! health-check token validation (codes 21/22: splunkd 8.2.4 was observed to ignore it, §1.1).
//!
//! Files: `codes.rs` (the HEC reply table), `auth.rs` (token checks), `ack.rs` (channels and
//! indexer acknowledgement), `envelope.rs` (event and raw bodies into envelopes); routing, the
//! request handler and ingestion are here.

mod ack;
mod auth;
mod codes;
mod envelope;

use std::collections::HashMap;

use hyper::Method;
use serde_json::{json, Value};

use crate::{BodyError, EmulatorConfig, Encoding, Fault, Handled, Reply, Req, Route, State};

pub(crate) use codes::hec;

use ack::{ack, required_channel, AckChannel};
use auth::authenticate;
use codes::hec_at;
use envelope::{parse_envelopes, raw_envelopes};

const EVENT_PATHS: [&str; 3] = ["/services/collector", "/services/collector/event", "/services/collector/event/1.0"];
const RAW_PATHS: [&str; 2] = ["/services/collector/raw", "/services/collector/raw/1.0"];
const HEALTH_PATHS: [&str; 2] = ["/services/collector/health", "/services/collector/health/1.0"];
const ACK_PATH: &str = "/services/collector/ack";

#[derive(Default)]
pub(crate) struct SplunkState {
    pub envelopes: Vec<Value>,
    channels: HashMap<String, AckChannel>,
}

fn not_found() -> Reply {
    Reply::json(
        404,
        &json!({"text": "The requested URL was not found on this server.", "code": 404}),
    )
}

pub(crate) fn route(method: &Method, path: &str) -> Route {
    let (ok, allow, route) = if EVENT_PATHS.contains(&path) || RAW_PATHS.contains(&path) {
        (method == Method::POST, "POST", Route::Ingest)
    } else if HEALTH_PATHS.contains(&path) {
        (method == Method::GET || method == Method::HEAD, "GET, HEAD", Route::Control)
    } else if path == ACK_PATH {
        (method == Method::POST, "POST", Route::Control)
    } else {
        return Route::Reject(not_found());
    };
    if ok {
        route
    } else {
        // [3P] splunkd answers 405 with a body that says 404.
        let mut r = not_found().header("allow", allow);
        r.status = 405;
        Route::Reject(r)
    }
}

pub(crate) fn too_large(len: u64, max: usize) -> Reply {
    Reply::text(413, format!("Content-Length of {len} too large (maximum is {max})"))
}

pub(crate) fn handle(cfg: &EmulatorConfig, st: &mut State, req: &Req, fault: Option<&Fault>) -> Handled {
    if HEALTH_PATHS.contains(&req.path) {
        return if matches!(st.sticky, Some(Fault::SplunkBusy)) {
            hec(18).into()
        } else {
            hec(17).into()
        };
    }
    if let Err(r) = authenticate(cfg, st, req) {
        return r.into();
    }
    if req.path == ACK_PATH {
        return ack(cfg, st, req).into();
    }
    let raw = RAW_PATHS.contains(&req.path);
    match ingest(cfg, st, req, fault, raw) {
        Ok(h) | Err(h) => h,
    }
}

fn ingest(cfg: &EmulatorConfig, st: &mut State, req: &Req, fault: Option<&Fault>, raw: bool) -> Result<Handled, Handled> {
    let chan = if cfg.splunk_indexer_ack || raw {
        Some(required_channel(req).map_err(Handled::from)?)
    } else {
        None
    };
    let body = match (&req.body.encoding, &req.body.data) {
        (Encoding::Deflate, _) | (_, Err(BodyError::Unsupported(_))) => return Err(Reply::empty(415).into()),
        (_, Err(BodyError::Corrupt(_))) => return Err(hec(6).into()),
        (_, Err(BodyError::TooLarge)) => return Err(Reply::text(413, "decompressed body too large (maximum is max_content_length)").into()),
        (_, Ok(b)) => b,
    };
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(hec(5).into());
    }

    let (mut accepted, mut error) = if raw {
        match raw_envelopes(cfg, req, body) {
            Ok(envs) => (envs, None),
            Err(code) => return Err(hec(code).into()),
        }
    } else {
        parse_envelopes(cfg, body)
    };

    let mut used_fault = false;
    if let Some(Fault::SplunkInvalidEventNumber { index, code }) = fault {
        used_fault = true;
        // A real error earlier in the batch wins; an index past the end rejects nothing.
        if *index < accepted.len() {
            accepted.truncate(*index);
            error = Some((*code, *index));
        }
    }
    if let Some(Fault::SplunkBusyAt { contains }) = fault {
        used_fault = true;
        let at = accepted.iter().position(|env| env.to_string().contains(contains.as_str()));
        // As above: a real error earlier in the batch wins.
        if let Some(at) = at.filter(|&at| error.is_none_or(|(_, n)| at < n)) {
            accepted.truncate(at);
            error = Some((9, at));
        }
    }

    for env in &accepted {
        st.events.push(env.get("event").cloned().unwrap_or(Value::Null));
    }
    st.splunk.envelopes.extend(accepted);

    if let Some((code, n)) = error {
        return Ok(Handled {
            reply: hec_at(code, n),
            used_fault,
        });
    }
    // Consumed by the next successful event request; without indexer ack it has no effect.
    let never = matches!(fault, Some(Fault::SplunkAckNever));
    used_fault |= never;
    let reply = match chan.filter(|_| cfg.splunk_indexer_ack) {
        Some(chan) => {
            let ch = st.splunk.channels.entry(chan).or_default();
            let id = cfg.splunk_first_ack_id + ch.next_id;
            ch.next_id += 1;
            ch.pending.insert(id, never);
            Reply::json(200, &json!({"text": "Success", "code": 0, "ackId": id}))
        }
        None => hec(0),
    };
    Ok(Handled { reply, used_fault })
}

#[cfg(test)]
mod tests;
