//! Elasticsearch 8.x document and bulk APIs, as a secured cluster answers
//! (docs/PROTOCOLS.md §2).
//!
//! Reproduced:
//! - `X-elastic-product: Elasticsearch` on every answer except 401 (§2.9);
//! - auth (§2.5): per [`ExpectedAuth`], Basic or `Authorization: ApiKey <b64>` (a `Header`).
//!   Missing or wrong: 401 `security_exception` with `WWW-Authenticate: Basic realm="security",
//!   charset="UTF-8"` and `WWW-Authenticate: ApiKey` (§2.4 [3P: ES 8.15 probe]);
//! - `GET /`: cluster info (version 8.15.0; OpenSearch 2.17.1 with `es_opensearch`, which also
//!   drops `X-elastic-product` everywhere and answers a failed login `401 Unauthorized` as text); `PUT|POST /_index_template/<name>`: 200
//!   `{"acknowledged":true}`, recorded (400 when `index_patterns` is missing); `GET|HEAD` of a
//!   template: 200 or 404;
//! - `POST /<index>/_doc`: auto `_id`, 201 with `Location` (§2.1); `PUT|POST /<index>/_doc/<id>`:
//!   201 created or 200 updated (`_version`+1), `?op_type=create` makes it a create;
//!   `PUT|POST /<index>/_create/<id>`: 201, or 409 `version_conflict_engine_exception` when the
//!   id exists (the document is not touched); `GET /<index>/_doc/<id>`;
//! - `POST|PUT /_bulk` and `/<index>/_bulk` (§2.2, §2.3): NDJSON that must end with `\n` (else
//!   400 `illegal_argument_exception`), `\r\n` allowed, `index`/`create`/`delete` actions with
//!   `_index` (default from the path) and `_id` (auto when absent); always 200 with `took`,
//!   `errors` and one item per action, in order, keyed by action; `create` of an existing
//!   `_id` is item 409 and is not stored twice; a source that is not a JSON object is item 400
//!   `document_parsing_exception`; malformed action lines, unknown parameters, a missing index
//!   or source are whole-request 400s; [`Fault::EsItems`] injects per-item statuses with
//!   realistic error bodies;
//! - index names must be valid (lowercase, no `\/*?"<>| ,#:`, not starting with `_-+`):
//!   400 `invalid_index_name_exception`;
//! - data streams (`es_data_stream`, §2.6): only `create` (an `index` write is 400
//!   `illegal_argument_exception` "only write ops with an op_type of create are allowed in data
//!   streams"), `@timestamp` required (400 `document_parsing_exception`), and answers name the
//!   backing index `.ds-<stream>-<yyyy.mm.dd>-000001` (recorded documents keep the stream name);
//! - request `Content-Encoding` gzip or deflate (§2.2); a missing or non-JSON `Content-Type` is
//!   406 (§2.2: from memory, unverified); over `max_content_length`: 413 with an empty body
//!   (ES default 100mb, §2.4). Whole-request 429 is a [`Fault::Status`].
//!
//! Not reproduced: searching, mappings and analysis (§2.7), `update` actions (item 400 here),
//! `if_seq_no` concurrency control, routing, pipelines, `filter_path`, `refresh`, rollover
//! (so no duplicate-after-rollover in data streams), and the real server's 400 "no handler
//! found" for unknown paths (this answers 404, like every emulator here).

use std::collections::HashMap;
use std::time::Instant;

use hyper::Method;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::{basic_credentials, check_auth, AuthCheck, BodyError, EmulatorConfig, ExpectedAuth, Fault, Handled, Reply, Req, Route, State};

#[derive(Default)]
pub(crate) struct EsState {
    /// Stored documents in first-write order; `None` once deleted.
    docs: Vec<Option<Doc>>,
    by_key: HashMap<(String, String), usize>,
    seq_no: HashMap<String, u64>,
    /// Data stream name -> its backing index, fixed at first write.
    backing: HashMap<String, String>,
    /// Every template PUT, in order.
    pub templates: Vec<(String, Value)>,
}

struct Doc {
    index: String,
    id: String,
    source: Value,
    version: u64,
    seq_no: u64,
}

impl EsState {
    pub fn documents(&self) -> Vec<(String, String, Value)> {
        self.docs
            .iter()
            .flatten()
            .map(|d| (d.index.clone(), d.id.clone(), d.source.clone()))
            .collect()
    }

    fn get(&self, index: &str, id: &str) -> Option<&Doc> {
        let i = *self.by_key.get(&(index.to_string(), id.to_string()))?;
        self.docs[i].as_ref()
    }

    fn next_seq_no(&mut self, index: &str) -> u64 {
        let n = self.seq_no.entry(index.to_string()).or_insert(0);
        let v = *n;
        *n += 1;
        v
    }
}

pub(crate) fn with_product_header(r: Reply) -> Reply {
    r.header("x-elastic-product", "Elasticsearch")
}

pub(crate) fn too_large() -> Reply {
    with_product_header(Reply::empty(413))
}

/// An ES error body: `{"error":{"root_cause":[..],"type":..,"reason":..},"status":N}`.
fn es_error(status: u16, kind: &str, reason: impl Into<String>) -> Reply {
    let cause = json!({"type": kind, "reason": reason.into()});
    error_reply(status, cause)
}

fn error_reply(status: u16, cause: Value) -> Reply {
    let mut root = cause.clone();
    if let Some(o) = root.as_object_mut() {
        o.remove("caused_by");
    }
    let mut error = cause;
    if let Some(o) = error.as_object_mut() {
        o.insert("root_cause".into(), json!([root]));
    }
    Reply::json(status, &json!({"error": error, "status": status}))
}

/// What a request addresses, by path alone.
enum Op {
    Info,
    Bulk(Option<String>),
    DocAuto(String),
    DocId(String, String),
    Create(String, String),
    Template(String),
}

fn parse_path(path: &str) -> Option<Op> {
    let trimmed = path.strip_prefix('/')?;
    let trimmed = trimmed.strip_suffix('/').unwrap_or(trimmed);
    let segs: Vec<String> = if trimmed.is_empty() {
        Vec::new()
    } else {
        trimmed.split('/').map(percent_decode).collect()
    };
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    Some(match s.as_slice() {
        [] => Op::Info,
        ["_bulk"] => Op::Bulk(None),
        ["_index_template", name] => Op::Template(name.to_string()),
        [idx, "_bulk"] if !idx.starts_with('_') => Op::Bulk(Some(idx.to_string())),
        [idx, "_doc"] if !idx.starts_with('_') => Op::DocAuto(idx.to_string()),
        [idx, "_doc", id] if !idx.starts_with('_') => Op::DocId(idx.to_string(), id.to_string()),
        [idx, "_create", id] if !idx.starts_with('_') => Op::Create(idx.to_string(), id.to_string()),
        _ => return None,
    })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if let Some(v) = s.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(crate) fn route(method: &Method, path: &str) -> Route {
    let Some(op) = parse_path(path) else {
        let r = Reply::json(
            404,
            &json!({"error": format!("no handler found for uri [{path}] and method [{method}]"), "status": 404}),
        );
        return Route::Reject(with_product_header(r));
    };
    let (allowed, route): (&[Method], Route) = match (&op, method) {
        (Op::Info, _) => (&[Method::GET, Method::HEAD], Route::Control),
        (Op::Template(_), _) => (&[Method::GET, Method::HEAD, Method::PUT, Method::POST], Route::Control),
        (Op::Bulk(_), _) => (&[Method::POST, Method::PUT], Route::Ingest),
        (Op::DocAuto(_), _) => (&[Method::POST], Route::Ingest),
        (Op::DocId(..), &Method::GET) | (Op::DocId(..), &Method::HEAD) => (&[Method::GET], Route::Control),
        (Op::DocId(..), _) => (&[Method::GET, Method::HEAD, Method::PUT, Method::POST], Route::Ingest),
        (Op::Create(..), _) => (&[Method::PUT, Method::POST], Route::Ingest),
    };
    if allowed.contains(method) {
        return route;
    }
    let list: Vec<&str> = allowed.iter().map(Method::as_str).collect();
    let r = Reply::json(
        405,
        &json!({
            "error": format!("Incorrect HTTP method for uri [{path}] and method [{method}], allowed: [{}]", list.join(", ")),
            "status": 405
        }),
    )
    .header("allow", list.join(","));
    Route::Reject(with_product_header(r))
}

pub(crate) fn handle(cfg: &EmulatorConfig, st: &mut State, req: &Req, fault: Option<&Fault>) -> Handled {
    if let Some(r) = authenticate(st, req) {
        if cfg.es_opensearch {
            // The OpenSearch security plugin answers a failed login in plain text.
            return Reply::text(401, "Unauthorized")
                .header("www-authenticate", "Basic realm=\"OpenSearch Security\"")
                .into();
        }
        // No product header on 401 (§2.9).
        return r.into();
    }
    let mut h = handle_authenticated(cfg, st, req, fault);
    h.reply = with_product_header(h.reply);
    h
}

fn authenticate(st: &State, req: &Req) -> Option<Reply> {
    let target = match req.query {
        Some(q) => format!("{}?{q}", req.path),
        None => req.path.to_string(),
    };
    let reason = match check_auth(&st.auth, req.headers) {
        AuthCheck::Ok => return None,
        AuthCheck::Missing => format!("missing authentication credentials for REST request [{target}]"),
        AuthCheck::Wrong => match (&st.auth, basic_credentials(req.headers)) {
            (ExpectedAuth::Basic { .. }, Some((user, _))) => {
                format!("unable to authenticate user [{user}] for REST request [{target}]")
            }
            _ => "unable to authenticate with provided credentials and anonymous access is not allowed for this request".to_string(),
        },
    };
    const BASIC: &str = "Basic realm=\"security\", charset=\"UTF-8\"";
    let cause = json!({
        "type": "security_exception",
        "reason": reason,
        "header": {"WWW-Authenticate": [BASIC, "ApiKey"]}
    });
    Some(
        error_reply(401, cause)
            .header("www-authenticate", BASIC)
            .header("www-authenticate", "ApiKey"),
    )
}

fn handle_authenticated(cfg: &EmulatorConfig, st: &mut State, req: &Req, fault: Option<&Fault>) -> Handled {
    let Some(op) = parse_path(req.path) else {
        return es_error(404, "resource_not_found_exception", "unknown path").into();
    };
    let read_only = req.method == Method::GET || req.method == Method::HEAD;
    match (&op, read_only) {
        (Op::Info, _) if cfg.es_opensearch => return opensearch_info().into(),
        (Op::Info, _) => return info().into(),
        (Op::Template(name), true) => return get_template(st, name).into(),
        (Op::DocId(index, id), true) => return get_doc(st, index, id).into(),
        _ => {}
    }

    let body = match &req.body.data {
        Ok(b) => b,
        Err(BodyError::Unsupported(c)) => {
            return es_error(400, "illegal_argument_exception", format!("Unsupported Content-Encoding [{c}]")).into()
        }
        Err(BodyError::Corrupt(e)) => {
            return es_error(400, "parse_exception", format!("failed to decompress the request body: {e}")).into()
        }
        Err(BodyError::TooLarge) => return Reply::empty(413).into(),
    };
    let ct = req.content_type();
    let json_like = matches!(
        ct.as_deref(),
        Some("application/json")
            | Some("application/x-ndjson")
            | Some("application/vnd.elasticsearch+json")
            | Some("application/vnd.elasticsearch+x-ndjson")
    );
    if !json_like {
        let shown = req.header("content-type").unwrap_or("");
        return Reply::json(
            406,
            &json!({"error": format!("Content-Type header [{shown}] is not supported"), "status": 406}),
        )
        .into();
    }

    match op {
        Op::Template(name) => put_template(st, &name, body).into(),
        Op::Bulk(default_index) => {
            let items = match fault {
                Some(Fault::EsItems(v)) => Some(Injected::ByPosition(v.as_slice())),
                Some(Fault::EsItemsMatching { contains, status }) => Some(Injected::Matching(contains.as_bytes(), *status)),
                _ => None,
            };
            Handled {
                used_fault: items.is_some(),
                reply: bulk(cfg, st, default_index.as_deref(), body, items),
            }
        }
        Op::DocAuto(index) => single(cfg, st, &index, None, WriteOp::Create, body).into(),
        Op::DocId(index, id) => {
            let op = if req.query_param("op_type").as_deref() == Some("create") {
                WriteOp::Create
            } else {
                WriteOp::Index
            };
            single(cfg, st, &index, Some(id), op, body).into()
        }
        Op::Create(index, id) => single(cfg, st, &index, Some(id), WriteOp::Create, body).into(),
        Op::Info => info().into(),
    }
}

fn info() -> Reply {
    Reply::json(
        200,
        &json!({
            "name": "sendauth-emulator-node-0",
            "cluster_name": "sendauth-emulator",
            "cluster_uuid": "ZW11bGF0b3ItY2x1c3Rlcg",
            "version": {
                "number": "8.15.0",
                "build_flavor": "default",
                "build_type": "docker",
                "build_hash": "1a77947f34deddb41af25e6f0ddb8e830159c179",
                "build_date": "2024-08-05T10:05:34.233336849Z",
                "build_snapshot": false,
                "lucene_version": "9.11.1",
                "minimum_wire_compatibility_version": "7.17.0",
                "minimum_index_compatibility_version": "7.0.0"
            },
            "tagline": "You Know, for Search"
        }),
    )
}

/// `GET /` of an OpenSearch 2.x node: `version.distribution` says which product it is.
fn opensearch_info() -> Reply {
    Reply::json(
        200,
        &json!({
            "name": "sendauth-emulator-os-node-0",
            "cluster_name": "sendauth-emulator-opensearch",
            "cluster_uuid": "b3BlbnNlYXJjaC1lbXU",
            "version": {
                "distribution": "opensearch",
                "number": "2.17.1",
                "build_type": "tar",
                "build_hash": "1893d20797e30110e5877170e44d42275ce5951e",
                "build_date": "2024-09-26T21:59:52.691008096Z",
                "build_snapshot": false,
                "lucene_version": "9.11.1",
                "minimum_wire_compatibility_version": "7.10.0",
                "minimum_index_compatibility_version": "7.0.0"
            },
            "tagline": "The OpenSearch Project: https://opensearch.org/"
        }),
    )
}

fn put_template(st: &mut State, name: &str, body: &[u8]) -> Reply {
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

fn get_template(st: &State, name: &str) -> Reply {
    match st.es.templates.iter().rev().find(|(n, _)| n == name) {
        Some((n, t)) => Reply::json(200, &json!({"index_templates": [{"name": n, "index_template": t}]})),
        None => es_error(
            404,
            "resource_not_found_exception",
            format!("index template matching [{name}] not found"),
        ),
    }
}

fn get_doc(st: &State, index: &str, id: &str) -> Reply {
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

#[derive(Clone, Copy, PartialEq, Eq)]
enum WriteOp {
    Create,
    Index,
}

struct Written {
    resp_index: String,
    id: String,
    version: u64,
    seq_no: u64,
    created: bool,
}

struct Failed {
    status: u16,
    kind: &'static str,
    reason: String,
    index: String,
    resp_index: String,
    id: String,
    caused_by: Option<Value>,
}

impl Failed {
    fn cause(&self) -> Value {
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

fn shards() -> Value {
    json!({"total": 2, "successful": 1, "failed": 0})
}

/// The single-document APIs: the same write as a bulk item, answered as a whole request.
fn single(cfg: &EmulatorConfig, st: &mut State, index: &str, id: Option<String>, op: WriteOp, body: &[u8]) -> Reply {
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

fn auto_id() -> String {
    use base64::Engine;
    let bytes = uuid::Uuid::new_v4().into_bytes();
    // ES auto ids are 20 URL-safe base64 characters.
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes[..15])
}

fn index_uuid(index: &str) -> String {
    use base64::Engine;
    let h = Sha256::digest(index.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&h[..16])
}

/// The index name ES reports: the backing index for a data stream.
fn resp_index(cfg: &EmulatorConfig, st: &mut State, index: &str) -> String {
    if !cfg.es_data_stream {
        return index.to_string();
    }
    st.es
        .backing
        .entry(index.to_string())
        .or_insert_with(|| format!(".ds-{index}-{}-000001", chrono::Utc::now().format("%Y.%m.%d")))
        .clone()
}

/// `MetadataCreateIndexService.validateIndexOrAliasName`, in short.
fn invalid_index_name(index: &str) -> Option<String> {
    let why = if index.is_empty() {
        "must not be empty"
    } else if index != index.to_lowercase() {
        "must be lowercase"
    } else if index == "." || index == ".." {
        "must not be '.' or '..'"
    } else if index.starts_with(['_', '-', '+']) {
        "must not start with '_', '-', or '+'"
    } else if index.contains(['\\', '/', '*', '?', '"', '<', '>', '|', ' ', ',', '#', ':']) {
        "must not contain the following characters [ , \", *, \\, <, |, ,, >, /, ?, #, :]"
    } else if index.len() > 255 {
        "index name is too long, (> 255)"
    } else {
        return None;
    };
    Some(format!("Invalid index name [{index}], {why}"))
}

/// One create/index write. `injected` is a status from [`Fault::EsItems`].
fn write(
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
    for field in &cfg.es_long_fields {
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
        return Err(fail(
            400,
            "mapper_parsing_exception",
            format!(
                "[1:{}] failed to parse field [{field}] of type [long] in document with id '{id}'. Preview of field's value: '{shown}'",
                at + field.len() + 4
            ),
            Some(json!({"type": "illegal_argument_exception", "reason": format!("For input string: \"{shown}\"")})),
        ));
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

/// Realistic item errors for [`Fault::EsItems`] (§2.3).
fn injected_failure(
    status: u16,
    index: &str,
    id: &str,
    source: &[u8],
    fail: impl Fn(u16, &'static str, String, Option<Value>) -> Box<Failed>,
) -> Box<Failed> {
    match status {
        400 => {
            let (field, value) = serde_json::from_slice::<Value>(source)
                .ok()
                .and_then(|v| {
                    let (k, v) = v.as_object()?.iter().next()?;
                    let shown = match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    Some((k.clone(), shown))
                })
                .unwrap_or_else(|| ("event_type".into(), "transaction.verified".into()));
            let value: String = value.chars().take(20).collect();
            fail(
                400,
                "mapper_parsing_exception",
                format!(
                    "failed to parse field [{field}] of type [long] in document with id '{id}'. Preview of field's value: '{value}'"
                ),
                Some(json!({"type": "illegal_argument_exception", "reason": format!("For input string: \"{value}\"")})),
            )
        }
        403 => fail(
            403,
            "security_exception",
            format!(
                "action [indices:data/write/bulk[s]] is unauthorized for user [sendauth] with effective roles [sendauth_writer] on indices [{index}], this action is granted by the index privileges [create_doc,create,index,write,all]"
            ),
            None,
        ),
        404 => fail(404, "index_not_found_exception", format!("no such index [{index}]"), None),
        409 => fail(
            409,
            "version_conflict_engine_exception",
            format!("[{id}]: version conflict, document already exists (current version [1])"),
            None,
        ),
        429 => fail(
            429,
            "es_rejected_execution_exception",
            "rejected execution of primary operation [coordinating_and_primary_bytes=0, replica_bytes=0, all_bytes=0, primary_operation_bytes=512, max_coordinating_and_primary_bytes=53687091] on EsThreadPoolExecutor[name = sendauth-emulator-node-0/write, queue capacity = 10000, task execution EWMA = 1.2ms, total task execution time = 3.1s, org.elasticsearch.common.util.concurrent.EsThreadPoolExecutor@5f1c1ee4[Running, pool size = 2, active threads = 2, queued tasks = 10000, completed tasks = 81234]]".into(),
            None,
        ),
        503 => fail(
            503,
            "unavailable_shards_exception",
            format!("[{index}][0] primary shard is not active Timeout: [1m], request: [BulkShardRequest [[{index}][0]] containing [1] requests]"),
            None,
        ),
        s => fail(s, "exception", format!("emulated item failure (status {s})"), None),
    }
}

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
enum Injected<'a> {
    /// [`Fault::EsItems`]: by item position.
    ByPosition(&'a [u16]),
    /// [`Fault::EsItemsMatching`]: for items whose document contains these bytes.
    Matching(&'a [u8], u16),
}

fn bulk(cfg: &EmulatorConfig, st: &mut State, default_index: Option<&str>, body: &[u8], injected: Option<Injected>) -> Reply {
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

fn delete(cfg: &EmulatorConfig, st: &mut State, index: &str, id: String) -> Value {
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

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::super::{Emulator, EmulatorConfig, ExpectedAuth, Fault, Kind};
    use serde_json::{json, Value};

    async fn bulk(emu: &Emulator, path: &str, body: &str) -> (u16, Value) {
        let r = client()
            .post(format!("http://{}{path}", emu.addr()))
            .header("content-type", "application/x-ndjson")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["x-elastic-product"], "Elasticsearch");
        let status = r.status().as_u16();
        (status, json_body(r).await)
    }

    fn statuses(v: &Value) -> Vec<u64> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i.as_object().unwrap().values().next().unwrap()["status"].as_u64().unwrap())
            .collect()
    }

    #[tokio::test]
    async fn doc_post_is_201_with_product_header_and_records_the_source() {
        let emu = start(EmulatorConfig::new(Kind::Elasticsearch)).await;
        let r = client()
            .post(emu.url())
            .header("content-type", "application/json")
            .body(r#"{"event_type":"transaction.verified","n":1}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        assert_eq!(r.headers()["x-elastic-product"], "Elasticsearch");
        let v: Value = json_body(r).await;
        assert_eq!(v["_index"], "sendauth");
        assert_eq!(v["result"], "created");
        assert_eq!(v["_id"].as_str().unwrap().len(), 20);
        assert_eq!(emu.events(), vec![json!({"event_type":"transaction.verified","n":1})]);
        let docs = emu.es_documents();
        assert_eq!((docs[0].0.as_str(), docs[0].1.as_str()), ("sendauth", v["_id"].as_str().unwrap()));
    }

    #[tokio::test]
    async fn create_with_an_existing_id_is_409_and_not_duplicated() {
        let emu = start(EmulatorConfig::new(Kind::Elasticsearch)).await;
        let url = format!("http://{}/auth-events/_create/ev-1", emu.addr());
        let send = |body: &'static str| client().put(&url).header("content-type", "application/json").body(body).send();
        assert_eq!(send(r#"{"n":1}"#).await.unwrap().status(), 201);
        let r = send(r#"{"n":2}"#).await.unwrap();
        assert_eq!(r.status(), 409);
        let v: Value = json_body(r).await;
        assert_eq!(v["error"]["type"], "version_conflict_engine_exception");
        assert_eq!(v["error"]["root_cause"][0]["type"], "version_conflict_engine_exception");
        assert_eq!(v["status"], 409);
        assert_eq!(emu.es_documents(), vec![("auth-events".into(), "ev-1".into(), json!({"n":1}))]);
        assert_eq!(emu.event_count(), 1);
    }

    #[tokio::test]
    async fn bulk_create_dedupes_by_id_with_item_409() {
        let emu = start(EmulatorConfig::new(Kind::Elasticsearch)).await;
        let body = "{\"create\":{\"_index\":\"auth-events\",\"_id\":\"a\"}}\n{\"n\":1}\n\
                    {\"create\":{\"_index\":\"auth-events\",\"_id\":\"b\"}}\n{\"n\":2}\n";
        let (s, v) = bulk(&emu, "/_bulk", body).await;
        assert_eq!((s, v["errors"].clone(), statuses(&v)), (200, json!(false), vec![201, 201]));
        assert_eq!(v["items"][0]["create"]["result"], "created");
        // A resend of the same batch plus a new event: the old ids conflict, the new one lands.
        let resend = format!("{body}{{\"create\":{{\"_index\":\"auth-events\",\"_id\":\"c\"}}}}\r\n{{\"n\":3}}\r\n");
        let (s, v) = bulk(&emu, "/_bulk", &resend).await;
        assert_eq!((s, v["errors"].clone(), statuses(&v)), (200, json!(true), vec![409, 409, 201]));
        assert_eq!(v["items"][0]["create"]["error"]["type"], "version_conflict_engine_exception");
        let ids: Vec<String> = emu.es_documents().into_iter().map(|d| d.1).collect();
        assert_eq!(ids, ["a", "b", "c"]);
        assert_eq!(emu.events(), vec![json!({"n":1}), json!({"n":2}), json!({"n":3})]);
    }

    #[tokio::test]
    async fn bulk_without_trailing_newline_is_rejected_whole() {
        let emu = start(EmulatorConfig::new(Kind::Elasticsearch)).await;
        let (s, v) = bulk(&emu, "/_bulk", "{\"create\":{\"_index\":\"x\",\"_id\":\"a\"}}\n{\"n\":1}").await;
        assert_eq!(s, 400);
        assert_eq!(v["error"]["type"], "illegal_argument_exception");
        assert_eq!(v["error"]["reason"], "The bulk request must be terminated by a newline [\\n]");
        assert_eq!(emu.event_count(), 0);
    }

    #[tokio::test]
    async fn bulk_takes_the_default_index_from_the_path_and_index_overwrites() {
        let emu = start(EmulatorConfig::new(Kind::Elasticsearch)).await;
        let body = "{\"index\":{\"_id\":\"a\"}}\n{\"v\":1}\n{\"index\":{\"_id\":\"a\"}}\n{\"v\":2}\n{\"create\":{}}\n{\"v\":3}\n";
        let (_, v) = bulk(&emu, "/sendauth/_bulk", body).await;
        assert_eq!(statuses(&v), vec![201, 200, 201]);
        assert_eq!(v["items"][1]["index"]["result"], "updated");
        assert_eq!(v["items"][1]["index"]["_version"], 2);
        let docs = emu.es_documents();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0], ("sendauth".into(), "a".into(), json!({"v":2})));
        assert_eq!(emu.event_count(), 3, "every accepted write is an event");
    }

    #[tokio::test]
    async fn bulk_whole_request_errors() {
        let emu = start(EmulatorConfig::new(Kind::Elasticsearch)).await;
        let cases = [
            ("{\"create\":{\"_id\":\"a\"}}\n{}\n", "action_request_validation_exception"),
            ("{\"upsert\":{\"_index\":\"x\"}}\n{}\n", "illegal_argument_exception"),
            ("{\"create\":{\"_index\":\"x\",\"colour\":1}}\n{}\n", "illegal_argument_exception"),
            ("not json\n", "x_content_parse_exception"),
            ("\n", "action_request_validation_exception"),
        ];
        for (body, kind) in cases {
            let (s, v) = bulk(&emu, "/_bulk", body).await;
            assert_eq!((s, v["error"]["type"].as_str().unwrap()), (400, kind), "{body:?}");
        }
        let (s, v) = bulk(&emu, "/_bulk", "{\"create\":{\"_index\":\"x\"}}\n{\"n\":\n").await;
        assert_eq!((s, statuses(&v)), (200, vec![400]));
        assert_eq!(v["items"][0]["create"]["error"]["type"], "document_parsing_exception");
        let (_, v) = bulk(&emu, "/_bulk", "{\"create\":{\"_index\":\"Auth\"}}\n{}\n").await;
        assert_eq!(v["items"][0]["create"]["error"]["type"], "invalid_index_name_exception");
        assert_eq!(emu.event_count(), 0);
    }

    #[tokio::test]
    async fn es_items_fault_injects_per_item_statuses() {
        let emu = start(EmulatorConfig::new(Kind::Elasticsearch)).await;
        emu.push_fault(Fault::EsItems(vec![201, 429, 400, 503, 409]));
        let body: String = (0..6)
            .map(|n| format!("{{\"create\":{{\"_index\":\"auth\",\"_id\":\"e{n}\"}}}}\n{{\"event_type\":\"t{n}\"}}\n"))
            .collect();
        let (_, v) = bulk(&emu, "/_bulk", &body).await;
        assert_eq!(v["errors"], true);
        assert_eq!(statuses(&v), vec![201, 429, 400, 503, 409, 201]);
        let err = |k: usize| v["items"][k]["create"]["error"].clone();
        assert_eq!(err(1)["type"], "es_rejected_execution_exception");
        assert_eq!(err(2)["type"], "mapper_parsing_exception");
        assert!(err(2)["reason"].as_str().unwrap().starts_with("failed to parse field [event_type]"));
        assert_eq!(err(3)["type"], "unavailable_shards_exception");
        assert_eq!(err(4)["type"], "version_conflict_engine_exception");
        // A 409 on create means the document exists: e4 was stored "by an earlier attempt".
        assert_eq!(
            emu.events(),
            vec![json!({"event_type":"t0"}), json!({"event_type":"t4"}), json!({"event_type":"t5"})]
        );
        // Only the failed items are resent, and now they land; e4 again is a real 409.
        let resend: String = [1, 2, 3, 4]
            .iter()
            .map(|n| format!("{{\"create\":{{\"_index\":\"auth\",\"_id\":\"e{n}\"}}}}\n{{\"event_type\":\"t{n}\"}}\n"))
            .collect();
        let (_, v) = bulk(&emu, "/_bulk", &resend).await;
        assert_eq!(statuses(&v), vec![201, 201, 201, 409]);
        assert_eq!(emu.event_count(), 6);
        assert_eq!(emu.es_documents().len(), 6);
    }

    #[tokio::test]
    async fn es_items_fault_waits_for_a_bulk_request() {
        let emu = start(EmulatorConfig::new(Kind::Elasticsearch)).await;
        emu.push_fault(Fault::EsItems(vec![429]));
        let r = client()
            .post(emu.url())
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let (_, v) = bulk(&emu, "/_bulk", "{\"create\":{\"_index\":\"x\"}}\n{}\n").await;
        assert_eq!(statuses(&v), vec![429]);
    }

    #[tokio::test]
    async fn data_stream_accepts_only_create_with_timestamp() {
        let mut cfg = EmulatorConfig::new(Kind::Elasticsearch);
        cfg.es_data_stream = true;
        let emu = start(cfg).await;
        let body = "{\"index\":{\"_index\":\"logs-auth-default\"}}\n{\"@timestamp\":\"2026-08-21T10:00:00Z\"}\n\
                    {\"create\":{\"_index\":\"logs-auth-default\"}}\n{\"n\":1}\n\
                    {\"create\":{\"_index\":\"logs-auth-default\",\"_id\":\"x\"}}\n{\"@timestamp\":\"2026-08-21T10:00:00Z\",\"n\":2}\n";
        let (_, v) = bulk(&emu, "/_bulk", body).await;
        assert_eq!(statuses(&v), vec![400, 400, 201]);
        let e0 = &v["items"][0]["index"]["error"];
        assert_eq!(e0["type"], "illegal_argument_exception");
        assert_eq!(e0["reason"], "only write ops with an op_type of create are allowed in data streams");
        let e1 = &v["items"][1]["create"]["error"];
        assert_eq!(e1["type"], "document_parsing_exception");
        assert!(e1["reason"]
            .as_str()
            .unwrap()
            .contains("data stream timestamp field [@timestamp] is missing"));
        assert!(v["items"][2]["create"]["_index"]
            .as_str()
            .unwrap()
            .starts_with(".ds-logs-auth-default-"));
        assert_eq!(emu.es_documents()[0].0, "logs-auth-default");
        assert_eq!(emu.event_count(), 1);
    }

    #[tokio::test]
    async fn missing_or_wrong_credentials_get_401_without_product_header() {
        let mut cfg = EmulatorConfig::new(Kind::Elasticsearch);
        cfg.auth = ExpectedAuth::Basic {
            username: "elastic".into(),
            password: "changeme".into(),
        };
        let emu = start(cfg).await;
        let c = client();
        let r = c.get(format!("http://{}/", emu.addr())).send().await.unwrap();
        assert_eq!(r.status(), 401);
        assert!(r.headers().get("x-elastic-product").is_none());
        let www: Vec<_> = r.headers().get_all("www-authenticate").iter().collect();
        assert_eq!(www.len(), 2);
        let v: Value = json_body(r).await;
        assert_eq!(v["error"]["type"], "security_exception");
        assert_eq!(v["error"]["reason"], "missing authentication credentials for REST request [/]");
        let r = c
            .get(format!("http://{}/", emu.addr()))
            .basic_auth("elastic", Some("nope"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        let v: Value = json_body(r).await;
        assert!(v["error"]["reason"]
            .as_str()
            .unwrap()
            .contains("unable to authenticate user [elastic]"));
        let r = c
            .get(format!("http://{}/", emu.addr()))
            .basic_auth("elastic", Some("changeme"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-elastic-product"], "Elasticsearch");
        assert_eq!(json_body(r).await["version"]["number"], "8.15.0");

        emu.set_auth(ExpectedAuth::Header {
            name: "Authorization".into(),
            value: "ApiKey aWQ6a2V5".into(),
        });
        let r = c
            .get(format!("http://{}/", emu.addr()))
            .header("authorization", "ApiKey aWQ6a2V5")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }

    #[tokio::test]
    async fn index_template_is_recorded_and_readable() {
        let emu = start(EmulatorConfig::new(Kind::Elasticsearch)).await;
        let url = format!("http://{}/_index_template/auth-events", emu.addr());
        let tpl = json!({"index_patterns":["auth-events*"],"priority":200,"template":{"mappings":{}}});
        let r = client().get(&url).send().await.unwrap();
        assert_eq!(r.status(), 404);
        let r = client()
            .put(&url)
            .header("content-type", "application/json")
            .body(tpl.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(json_body(r).await, json!({"acknowledged":true}));
        assert_eq!(emu.es_templates(), vec![("auth-events".to_string(), tpl.clone())]);
        let r = client().get(&url).send().await.unwrap();
        assert_eq!(json_body(r).await["index_templates"][0]["index_template"], tpl);
        let r = client()
            .put(&url)
            .header("content-type", "application/json")
            .body(json!({"priority":1}).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
    }

    #[tokio::test]
    async fn whole_request_413_and_429() {
        let mut cfg = EmulatorConfig::new(Kind::Elasticsearch);
        cfg.max_content_length = 100;
        let emu = start(cfg).await;
        let big = format!("{{\"create\":{{\"_index\":\"x\"}}}}\n{{\"pad\":\"{}\"}}\n", "y".repeat(200));
        let r = client()
            .post(format!("http://{}/_bulk", emu.addr()))
            .header("content-type", "application/x-ndjson")
            .body(big)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 413);
        emu.push_fault(Fault::Status {
            code: 429,
            body: json!({"error":{"type":"es_rejected_execution_exception","reason":"rejected execution"},"status":429}).to_string(),
            headers: vec![],
        });
        let (s, v) = bulk(&emu, "/_bulk", "{\"create\":{\"_index\":\"x\"}}\n{}\n").await;
        assert_eq!((s, v["status"].clone()), (429, json!(429)));
        assert_eq!(emu.event_count(), 0);
    }

    #[tokio::test]
    async fn gzip_bulk_and_missing_content_type() {
        let emu = start(EmulatorConfig::new(Kind::Elasticsearch)).await;
        let raw = b"{\"create\":{\"_index\":\"x\",\"_id\":\"1\"}}\n{\"n\":1}\n";
        let r = client()
            .post(format!("http://{}/_bulk", emu.addr()))
            .header("content-type", "application/x-ndjson")
            .header("content-encoding", "gzip")
            .body(gzip(raw))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(emu.events(), vec![json!({"n":1})]);
        let r = client()
            .post(format!("http://{}/_bulk", emu.addr()))
            .body(&raw[..])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 406);
    }

    #[tokio::test]
    async fn unknown_path_is_404_and_wrong_method_405() {
        let emu = start(EmulatorConfig::new(Kind::Elasticsearch)).await;
        let r = client().get(format!("http://{}/_bulk", emu.addr())).send().await.unwrap();
        assert_eq!(r.status(), 405);
        assert_eq!(r.headers()["x-elastic-product"], "Elasticsearch");
        let r = client().post(format!("http://{}/a/b/c/d", emu.addr())).send().await.unwrap();
        assert_eq!(r.status(), 404);
    }
}
