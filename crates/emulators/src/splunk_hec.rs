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

use std::collections::HashMap;

use hyper::Method;
use serde_json::{json, Map, Value};

use super::{
    basic_credentials, strip_prefix_ci, BodyError, EmulatorConfig, Encoding, ExpectedAuth, Fault, Handled, Reply, Req, Route, State,
};

const EVENT_PATHS: [&str; 3] = ["/services/collector", "/services/collector/event", "/services/collector/event/1.0"];
const RAW_PATHS: [&str; 2] = ["/services/collector/raw", "/services/collector/raw/1.0"];
const HEALTH_PATHS: [&str; 2] = ["/services/collector/health", "/services/collector/health/1.0"];
const ACK_PATH: &str = "/services/collector/ack";

#[derive(Default)]
pub(crate) struct SplunkState {
    pub envelopes: Vec<Value>,
    channels: HashMap<String, AckChannel>,
}

#[derive(Default)]
struct AckChannel {
    next_id: u64,
    /// ackId -> "never turns true" (SplunkAckNever).
    pending: HashMap<u64, bool>,
}

/// The HEC reply table (§1.7): HTTP status and text for each code.
fn code_info(code: u16) -> (u16, &'static str) {
    match code {
        0 => (200, "Success"),
        1 => (403, "Token disabled"),
        2 => (401, "Token is required"),
        3 => (401, "Invalid authorization"),
        4 => (403, "Invalid token"),
        5 => (400, "No data"),
        6 => (400, "Invalid data format"),
        7 => (400, "Incorrect index"),
        8 => (500, "Internal server error"),
        9 => (503, "Server is busy"),
        10 => (400, "Data channel is missing"),
        11 => (400, "Invalid data channel"),
        12 => (400, "Event field is required"),
        13 => (400, "Event field cannot be blank"),
        14 => (400, "ACK is disabled"),
        15 => (400, "Error in handling indexed fields"),
        16 => (400, "Query string authorization is not enabled"),
        17 => (200, "HEC is healthy"),
        18 => (503, "HEC is unhealthy, queues are full"),
        19 => (503, "HEC is unhealthy, ack service unavailable"),
        20 => (503, "HEC is unhealthy, queues are full, ack service unavailable"),
        21 => (400, "Invalid token"),
        22 => (400, "Token disabled"),
        _ => (400, "Invalid data format"),
    }
}

/// `{"text":..,"code":..}` with the status from the table.
pub(crate) fn hec(code: u16) -> Reply {
    let (status, text) = code_info(code);
    Reply::json(status, &json!({"text": text, "code": code}))
}

/// An event-level error carrying `invalid-event-number`.
fn hec_at(code: u16, n: usize) -> Reply {
    let (status, text) = code_info(code);
    Reply::json(status, &json!({"text": text, "code": code, "invalid-event-number": n}))
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

/// What the client presented as a token.
enum Presented {
    Nothing,
    Malformed,
    Token(String),
}

fn presented(req: &Req) -> Presented {
    let Some(v) = req.headers.get("authorization") else {
        return Presented::Nothing;
    };
    let Ok(v) = v.to_str() else {
        return Presented::Malformed;
    };
    if let Some(t) = strip_prefix_ci(v, "Splunk ") {
        let t = t.trim();
        return if t.is_empty() {
            Presented::Malformed
        } else {
            Presented::Token(t.to_string())
        };
    }
    if strip_prefix_ci(v, "Basic ").is_some() {
        // "The user part can be any string" (§1.2): the password is the token.
        return match basic_credentials(req.headers) {
            Some((_, token)) if !token.is_empty() => Presented::Token(token),
            _ => Presented::Malformed,
        };
    }
    Presented::Malformed
}

fn authenticate(cfg: &EmulatorConfig, st: &State, req: &Req) -> Result<(), Reply> {
    let expected: Option<String> = match &st.auth {
        ExpectedAuth::None => None,
        ExpectedAuth::Basic { password, .. } => Some(password.clone()),
        ExpectedAuth::Header { name, value } if name.eq_ignore_ascii_case("authorization") => {
            Some(strip_prefix_ci(value, "Splunk ").unwrap_or(value).trim().to_string())
        }
        ExpectedAuth::Header { name, value } => {
            // Not HEC's own scheme (e.g. a proxy's header): present and equal, or codes 2 / 4.
            return match req.header(name) {
                None => Err(hec(2)),
                Some(v) if v == value => disabled(cfg),
                Some(_) => Err(hec(4)),
            };
        }
    };
    let valid = |t: &str| expected.as_deref().is_none_or(|e| e == t);
    match presented(req) {
        Presented::Token(t) if valid(&t) => disabled(cfg),
        Presented::Token(_) => Err(hec(4)),
        Presented::Malformed => Err(hec(3)),
        Presented::Nothing => match req.query_param("token") {
            // splunkd checks the token before whether query-string auth is allowed (§1.2 [3P]).
            Some(t) if !valid(&t) => Err(hec(4)),
            Some(_) if expected.is_some() => Err(hec(16)),
            _ if expected.is_none() => disabled(cfg),
            _ => Err(hec(2)),
        },
    }
}

fn disabled(cfg: &EmulatorConfig) -> Result<(), Reply> {
    if cfg.splunk_disabled_token {
        Err(hec(1))
    } else {
        Ok(())
    }
}

/// The request's channel: `Ok(None)` when absent, 400 code 11 when not a GUID.
fn channel(req: &Req) -> Result<Option<String>, Reply> {
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

fn required_channel(req: &Req) -> Result<String, Reply> {
    channel(req)?.ok_or_else(|| hec(10))
}

fn ack(cfg: &EmulatorConfig, st: &mut State, req: &Req) -> Reply {
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

/// Parses a body of concatenated envelopes; stops at the first bad one and returns its code and
/// zero-based number.
fn parse_envelopes(cfg: &EmulatorConfig, body: &[u8]) -> (Vec<Value>, Option<(u16, usize)>) {
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
fn raw_envelopes(cfg: &EmulatorConfig, req: &Req, body: &[u8]) -> Result<Vec<Value>, u16> {
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

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::super::{Emulator, EmulatorConfig, ExpectedAuth, Fault, Kind};
    use serde_json::{json, Value};

    const TOKEN: &str = "11111111-2222-3333-4444-555555555555";
    const CHANNEL: &str = "0aeeac95-ac74-4aa9-b30d-6c4c0ac581ba";

    fn cfg() -> EmulatorConfig {
        let mut c = EmulatorConfig::new(Kind::SplunkHec);
        c.auth = ExpectedAuth::Header {
            name: "Authorization".into(),
            value: format!("Splunk {TOKEN}"),
        };
        c
    }

    async fn post(emu: &Emulator, body: &str) -> (u16, Value) {
        post_with(emu, client().post(emu.url()), body).await
    }

    async fn post_with(_emu: &Emulator, rb: reqwest::RequestBuilder, body: &str) -> (u16, Value) {
        let r = rb
            .header("authorization", format!("Splunk {TOKEN}"))
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    #[tokio::test]
    async fn concatenated_envelopes_are_recorded_in_order() {
        let emu = start(cfg()).await;
        let body = r#"{"time":1789752345.312,"host":"idp-1","sourcetype":"_json","index":"auth","event":{"n":1}}{"event":{"n":2}}
  {"event":"three","fields":{"event_type":"transaction.verified","tags":["a","b"]}}"#;
        let (s, v) = post(&emu, body).await;
        assert_eq!((s, v), (200, json!({"text":"Success","code":0})));
        assert_eq!(emu.events(), vec![json!({"n":1}), json!({"n":2}), json!("three")]);
        let envs = emu.splunk_envelopes();
        assert_eq!(envs[0]["host"], "idp-1");
        assert_eq!(envs[0]["time"], 1789752345.312);
        assert_eq!(envs[0]["index"], "auth");
        assert_eq!(envs.len(), 3);
        let rec = &emu.requests()[0];
        assert_eq!(rec.header("authorization"), Some(format!("Splunk {TOKEN}").as_str()));
    }

    #[tokio::test]
    async fn every_collector_path_accepts_events() {
        let emu = start(cfg()).await;
        for p in ["/services/collector", "/services/collector/event", "/services/collector/event/1.0"] {
            let url = format!("http://{}{p}", emu.addr());
            let (s, _) = post_with(&emu, client().post(url), r#"{"event":"x"}"#).await;
            assert_eq!(s, 200, "{p}");
        }
        assert_eq!(emu.event_count(), 3);
    }

    #[tokio::test]
    async fn auth_failures_map_to_hec_codes() {
        let mut c = cfg();
        c.splunk_allowed_indexes = vec!["auth".into()];
        let emu = start(c).await;
        let hc = client();
        let send = |auth: Option<&str>, url: String| {
            let mut rb = hc.post(url).body(r#"{"event":"x"}"#);
            if let Some(a) = auth {
                rb = rb.header("authorization", a.to_string());
            }
            async move {
                let r = rb.send().await.unwrap();
                (r.status().as_u16(), json_body(r).await)
            }
        };
        let url = emu.url();
        assert_eq!(send(None, url.clone()).await, (401, json!({"text":"Token is required","code":2})));
        assert_eq!(
            send(Some(TOKEN), url.clone()).await,
            (401, json!({"text":"Invalid authorization","code":3}))
        );
        assert_eq!(
            send(Some("Splunk not-the-token"), url.clone()).await,
            (403, json!({"text":"Invalid token","code":4}))
        );
        assert_eq!(
            send(None, format!("{url}?token={TOKEN}")).await,
            (400, json!({"text":"Query string authorization is not enabled","code":16}))
        );
        assert_eq!(send(None, format!("{url}?token=bad")).await.1["code"], 4);
        // Basic with any user and the token as password is accepted (§1.2).
        let r = hc
            .post(emu.url())
            .basic_auth("anything", Some(TOKEN))
            .body(r#"{"event":"x"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(emu.event_count(), 1);

        let mut c = cfg();
        c.splunk_disabled_token = true;
        let emu = start(c).await;
        assert_eq!(
            post(&emu, r#"{"event":"x"}"#).await,
            (403, json!({"text":"Token disabled","code":1}))
        );
        assert_eq!(emu.event_count(), 0);
    }

    #[tokio::test]
    async fn bad_envelope_accepts_only_the_prefix_and_names_its_number() {
        let mut c = cfg();
        c.splunk_allowed_indexes = vec!["auth".into()];
        let emu = start(c).await;
        let ok = |n: u32| format!(r#"{{"event":{{"n":{n}}}}}"#);
        let cases: [(&str, u16, &str); 7] = [
            (r#"{"time":1}"#, 12, "Event field is required"),
            (r#"{"event":null}"#, 12, "Event field is required"),
            (r#"{"event":""}"#, 13, "Event field cannot be blank"),
            (r#"{"event":"x","time":"1789752345"}"#, 6, "Invalid data format"),
            (r#"{"event":"x","fields":{"a":{"b":1}}}"#, 15, "Error in handling indexed fields"),
            (r#"{"event":"x","index":"main"}"#, 7, "Incorrect index"),
            (r#"{"event":"x""#, 6, "Invalid data format"),
        ];
        let mut expected_events = Vec::new();
        for (i, (bad, code, text)) in cases.iter().enumerate() {
            let i = i as u32 * 10;
            let body = format!("{}{}\n{bad}{}", ok(i), ok(i + 1), ok(i + 2));
            let (s, v) = post(&emu, &body).await;
            assert_eq!(s, 400, "{bad}");
            assert_eq!(v, json!({"text": text, "code": code, "invalid-event-number": 2}), "{bad}");
            expected_events.push(json!({ "n": i }));
            expected_events.push(json!({ "n": i + 1 }));
        }
        assert_eq!(emu.events(), expected_events);
        assert_eq!(emu.splunk_envelopes().len(), expected_events.len());
    }

    #[tokio::test]
    async fn empty_body_is_code_5_and_arrays_are_not_envelopes() {
        let emu = start(cfg()).await;
        assert_eq!(post(&emu, "  \n").await, (400, json!({"text":"No data","code":5})));
        let (s, v) = post(&emu, r#"[{"event":"x"}]"#).await;
        assert_eq!((s, v["code"].clone(), v["invalid-event-number"].clone()), (400, json!(6), json!(0)));
        assert_eq!(emu.event_count(), 0);
    }

    #[tokio::test]
    async fn invalid_event_number_fault_records_only_the_prefix() {
        let emu = start(cfg()).await;
        emu.push_fault(Fault::SplunkInvalidEventNumber { index: 1, code: 6 });
        let body = r#"{"event":"a"}{"event":"b"}{"event":"c"}"#;
        let (s, v) = post(&emu, body).await;
        assert_eq!(
            (s, v),
            (400, json!({"text":"Invalid data format","code":6,"invalid-event-number":1}))
        );
        assert_eq!(emu.events(), vec![json!("a")]);
        // One-shot: the resend of the rest goes through.
        let (s, _) = post(&emu, r#"{"event":"c"}"#).await;
        assert_eq!(s, 200);
        assert_eq!(emu.events(), vec![json!("a"), json!("c")]);
    }

    #[tokio::test]
    async fn busy_fault_is_503_code_9_and_health_reports_it() {
        let emu = start(cfg()).await;
        let health = format!("http://{}/services/collector/health", emu.addr());
        let r = client().get(&health).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(json_body(r).await, json!({"text":"HEC is healthy","code":17}));
        emu.set_fault(Some(Fault::SplunkBusy));
        assert_eq!(
            post(&emu, r#"{"event":"x"}"#).await,
            (503, json!({"text":"Server is busy","code":9}))
        );
        let r = client().get(&health).send().await.unwrap();
        assert_eq!(r.status(), 503);
        assert_eq!(json_body(r).await["code"], 18);
        emu.set_fault(None);
        assert_eq!(post(&emu, r#"{"event":"x"}"#).await.0, 200);
        assert_eq!(emu.event_count(), 1);
    }

    #[tokio::test]
    async fn indexer_ack_requires_a_guid_channel_and_acks_on_the_next_poll() {
        let mut c = cfg();
        c.splunk_indexer_ack = true;
        let emu = start(c).await;
        let hc = client();
        assert_eq!(
            post(&emu, r#"{"event":"x"}"#).await,
            (400, json!({"text":"Data channel is missing","code":10}))
        );
        let bad = hc.post(emu.url()).header("x-splunk-request-channel", "not-a-guid");
        assert_eq!(
            post_with(&emu, bad, r#"{"event":"x"}"#).await,
            (400, json!({"text":"Invalid data channel","code":11}))
        );
        assert_eq!(emu.event_count(), 0);

        let with_header = hc.post(emu.url()).header("x-splunk-request-channel", CHANNEL);
        let (s, v) = post_with(&emu, with_header, r#"{"event":"a"}"#).await;
        assert_eq!((s, v), (200, json!({"text":"Success","code":0,"ackId":0})));
        let with_query = hc.post(format!("{}?channel={CHANNEL}", emu.url()));
        let (_, v) = post_with(&emu, with_query, r#"{"event":"b"}"#).await;
        assert_eq!(v["ackId"], 1);

        let ack_url = format!("http://{}/services/collector/ack?channel={CHANNEL}", emu.addr());
        let (s, v) = post_with(&emu, hc.post(&ack_url), r#"{"acks":[0,1,7]}"#).await;
        assert_eq!((s, v), (200, json!({"acks":{"0":true,"1":true,"7":false}})));
        // Read once, then forgotten.
        let (_, v) = post_with(&emu, hc.post(&ack_url), r#"{"acks":[0]}"#).await;
        assert_eq!(v, json!({"acks":{"0":false}}));
        let no_channel = format!("http://{}/services/collector/ack", emu.addr());
        assert_eq!(post_with(&emu, hc.post(no_channel), r#"{"acks":[0]}"#).await.1["code"], 10);
    }

    #[tokio::test]
    async fn ack_never_fault_keeps_that_ack_false() {
        let mut c = cfg();
        c.splunk_indexer_ack = true;
        let emu = start(c).await;
        let hc = client();
        emu.push_fault(Fault::SplunkAckNever);
        for _ in 0..2 {
            let rb = hc.post(emu.url()).header("x-splunk-request-channel", CHANNEL);
            assert_eq!(post_with(&emu, rb, r#"{"event":"x"}"#).await.0, 200);
        }
        let ack_url = format!("http://{}/services/collector/ack", emu.addr());
        for _ in 0..3 {
            let rb = hc.post(&ack_url).header("x-splunk-request-channel", CHANNEL);
            let (_, v) = post_with(&emu, rb, r#"{"acks":[0]}"#).await;
            assert_eq!(v, json!({"acks":{"0":false}}));
        }
        let rb = hc.post(&ack_url).header("x-splunk-request-channel", CHANNEL);
        assert_eq!(post_with(&emu, rb, r#"{"acks":[1]}"#).await.1, json!({"acks":{"1":true}}));
    }

    #[tokio::test]
    async fn ack_poll_on_a_non_ack_token_is_code_14() {
        let emu = start(cfg()).await;
        let url = format!("http://{}/services/collector/ack", emu.addr());
        assert_eq!(
            post_with(&emu, client().post(url), r#"{"acks":[0]}"#).await,
            (400, json!({"text":"ACK is disabled","code":14}))
        );
    }

    #[tokio::test]
    async fn gzip_is_accepted_and_deflate_gets_415() {
        let emu = start(cfg()).await;
        let raw = br#"{"event":"zipped"}"#;
        let rb = client().post(emu.url()).header("content-encoding", "gzip").body(gzip(raw));
        let r = rb.header("authorization", format!("Splunk {TOKEN}")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(emu.events(), vec![json!("zipped")]);
        assert_eq!(emu.requests()[0].body, raw);
        let rb = client().post(emu.url()).header("content-encoding", "deflate").body(deflate(raw));
        let r = rb.header("authorization", format!("Splunk {TOKEN}")).send().await.unwrap();
        assert_eq!(r.status(), 415);
        assert_eq!(r.text().await.unwrap(), "");
        assert_eq!(emu.event_count(), 1);
    }

    #[tokio::test]
    async fn body_over_max_content_length_is_413_plain_text() {
        let mut c = cfg();
        c.max_content_length = 1000;
        let emu = start(c).await;
        let body = format!(r#"{{"event":"{}"}}"#, "x".repeat(2000));
        let r = client()
            .post(emu.url())
            .header("authorization", format!("Splunk {TOKEN}"))
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 413);
        assert_eq!(
            r.text().await.unwrap(),
            format!("Content-Length of {} too large (maximum is 1000)", body.len())
        );
        assert_eq!(emu.event_count(), 0);
        assert_eq!(emu.requests()[0].status, 413);
    }

    #[tokio::test]
    async fn raw_endpoint_takes_lines_and_needs_a_channel() {
        let emu = start(cfg()).await;
        let url = format!("http://{}/services/collector/raw?sourcetype=_json", emu.addr());
        assert_eq!(post_with(&emu, client().post(&url), "a\nb\n").await.1["code"], 10);
        let url = format!("{url}&channel={CHANNEL}");
        assert_eq!(post_with(&emu, client().post(&url), "a\r\n\nb\n").await.0, 200);
        assert_eq!(emu.events(), vec![json!("a"), json!("b")]);
        assert_eq!(emu.splunk_envelopes()[0], json!({"event":"a","sourcetype":"_json"}));
    }

    #[tokio::test]
    async fn wrong_method_is_405_and_unknown_path_404() {
        let emu = start(cfg()).await;
        let r = client().get(emu.url()).send().await.unwrap();
        assert_eq!(r.status(), 405);
        let r = client()
            .post(format!("http://{}/services/collector/nope", emu.addr()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
        assert_eq!(
            json_body(r).await,
            json!({"text":"The requested URL was not found on this server.","code":404})
        );
    }
}
