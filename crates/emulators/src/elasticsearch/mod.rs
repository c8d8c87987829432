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
//!
//! Files: `path.rs` (what a path addresses, index-name rules), `store.rs` (the documents held),
//! `write.rs` (one create/index write and the single-document answers), `bulk.rs` (NDJSON
//! parsing and the bulk answer), `items.rs` (injected per-item failures), `template.rs` (index
//! templates), `mapping.rs` (fields mapped `long`), `flavour.rs` (product header, cluster info,
//! OpenSearch). Routing, auth and dispatch are here.

mod bulk;
mod flavour;
mod items;
mod mapping;
mod path;
mod store;
mod template;
mod write;

use hyper::Method;
use serde_json::{json, Value};

use crate::{basic_credentials, check_auth, AuthCheck, BodyError, EmulatorConfig, ExpectedAuth, Fault, Handled, Reply, Req, State};

pub(crate) use flavour::{too_large, with_product_header};
pub(crate) use path::route;
pub(crate) use store::EsState;

use bulk::{bulk, Injected};
use flavour::{info, opensearch_info};
use path::{parse_path, Op};
use store::get_doc;
use template::{get_template, put_template};
use write::{single, WriteOp};

/// An ES error body: `{"error":{"root_cause":[..],"type":..,"reason":..},"status":N}`.
pub(super) fn es_error(status: u16, kind: &str, reason: impl Into<String>) -> Reply {
    let cause = json!({"type": kind, "reason": reason.into()});
    error_reply(status, cause)
}

pub(super) fn error_reply(status: u16, cause: Value) -> Reply {
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

#[cfg(test)]
mod tests;
