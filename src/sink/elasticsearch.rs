//! Elasticsearch: batches through `_bulk` with `create` actions and a deterministic `_id`.
//!
//! Protocol facts relied on (`docs/PROTOCOLS.md` §2):
//! - `_bulk` takes NDJSON: an action line, then the document, each ending in `\n` (the last one
//!   too). `create` fails with item status 409 when the `_id` exists; data streams accept only
//!   `create`, and every data-stream document needs `@timestamp`.
//! - The bulk answer is HTTP 200 even when items fail: `errors` says whether any did, `items`
//!   holds one result per action, in request order, each with its `status` and, on failure,
//!   `error.type` / `error.reason` (and sometimes `caused_by`).
//! - Item 429 and 5xx are transient; 400 is about that document (mapping, parsing); 409 on
//!   `create` means the document is already there. Whole-request 413 means the body exceeded
//!   `http.max_content_length`, 429 means the cluster is overloaded.
//! - `filter_path` trims the answer to the fields we read, so a big batch's answer stays small.
//! - Under default dynamic mapping strings become `text` and the documented `term` queries miss
//!   (`CN` is indexed as `cn`); an index template mapping strings as `keyword` makes them work as
//!   written (§2.7–2.8). Templates apply to indices created after they are installed.
//! - `X-elastic-product: Elasticsearch` is on every authenticated answer of a real cluster. It
//!   is missing behind some proxies and on compatible stores, so its absence is logged once and
//!   never fails a delivery. OpenSearch speaks the same bulk and template APIs without that
//!   header: `prepare` reads the product from `GET /` (`sink::es_product`), an OpenSearch
//!   cluster is named as such and not warned about, and `sendauth-siem test` prints the product
//!   and version that answered.
//!
//! Authentication needs nothing special here; it comes through `siem.auth`: `basic` (user and
//! password), or an API key as `header: "Authorization: ApiKey <encoded>"`, where `<encoded>` is
//! the `encoded` field returned by `POST /_security/api_key` (base64 of `id:api_key`). Writing
//! needs `create_doc` on the index (plus `create_index` or `auto_configure` if it does not exist
//! yet); installing the template needs the `manage_index_templates` cluster privilege, or
//! `siem.elasticsearch.install_template: false`.
//!
//! Invariants:
//! - a resend can never duplicate a document: every event's `_id` is the SHA-256 of its bytes
//!   (base64url), the same on every attempt and after restarts, and the action is always
//!   `create`, so a resent document answers 409, which counts as delivered. (In a data stream an
//!   `_id` is unique per backing index only, so a resend across a rollover can still duplicate.)
//! - only the items Elasticsearch failed transiently are resent; delivered ones never are;
//! - nothing is assumed delivered: a 2xx whose body is not a readable bulk answer with one result
//!   per event is retried;
//! - only an item error about that document's data dead-letters it; errors about the destination
//!   (missing or closed index, bad index name, privileges, blocks) hold the queue instead.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};

use base64::Engine;
use bytes::{BufMut, Bytes, BytesMut};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::config::ElasticConfig;
use crate::event::parse_timestamp_millis;
use crate::queue::QueuedEvent;
use crate::schema::Schema;
use crate::sink::encode::{clip, one_line};
use crate::sink::es_product::{self, Distribution, Product};
use crate::sink::http::{HttpClient, MAX_RESPONSE_BYTES};
use crate::sink::platform::{
    classify_status, summarize, BoxFuture, EncodedRequest, EventOutcome, Failure, FailureKind, Platform, Response, Verdict, DETAIL_CHARS,
};

/// What the agent reads from a bulk answer; everything else is filtered out by Elasticsearch.
const FILTER_PATH: &str =
    "errors,items.*.status,items.*._id,items.*.error.type,items.*.error.reason,items.*.error.caused_by.type,items.*.error.caused_by.reason";

/// `siem.url` query parameters that mean the same on `_bulk` and are passed on.
const BULK_PARAMS: [&str; 6] = [
    "pipeline",
    "routing",
    "refresh",
    "timeout",
    "wait_for_active_shards",
    "require_alias",
];

/// Where documents go, derived from `siem.url` and `siem.elasticsearch.index`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The cluster's base URL (scheme, host, any proxy path prefix); no query.
    pub root: reqwest::Url,
    pub index: String,
    /// Query parameters from `siem.url` passed on to `_bulk`.
    pub params: Vec<(String, String)>,
}

impl Target {
    /// Reads URLs as users write them: `https://host:9200/sendauth/_doc` (index `sendauth`), also
    /// `/sendauth/_bulk`, `/sendauth/_create/x`, `/sendauth`, or `/_bulk` with the index in
    /// `siem.elasticsearch.index` (which wins when both are given). Path segments before the
    /// index are kept as a proxy prefix. Errors name the key (under `siem.`) to fix.
    pub fn from_url(url: &reqwest::Url, index: Option<&str>) -> Result<Target, (&'static str, String)> {
        let segs: Vec<&str> = url.path().split('/').filter(|s| !s.is_empty()).collect();
        let (prefix, url_index) = match segs.iter().position(|s| s.starts_with('_')) {
            Some(0) => (&segs[..0], None),
            Some(p) => (&segs[..p - 1], Some(segs[p - 1])),
            None => match segs.split_last() {
                Some((last, rest)) => (rest, Some(*last)),
                None => (&segs[..0], None),
            },
        };
        let (index, key) = match (index, url_index) {
            (Some(i), _) => (i, "elasticsearch.index"),
            (None, Some(i)) => (i, "url"),
            (None, None) => return Err((
                "elasticsearch.index",
                "required: siem.url names no index (write it like https://host:9200/sendauth/_doc) and siem.elasticsearch.index is not set"
                    .into(),
            )),
        };
        if let Err(why) = check_index_name(index) {
            return Err((key, format!("{index:?} is not a valid Elasticsearch index name: {why}")));
        }
        let mut params = Vec::new();
        for (k, v) in url.query_pairs() {
            if !BULK_PARAMS.contains(&k.as_ref()) {
                return Err((
                    "url",
                    format!(
                        "query parameter {k:?} is not passed to _bulk; remove it (kept: {})",
                        BULK_PARAMS.join(", ")
                    ),
                ));
            }
            params.push((k.into_owned(), v.into_owned()));
        }
        let mut root = url.clone();
        root.set_query(None);
        root.set_fragment(None);
        root.set_path(&format!("/{}", prefix.join("/")));
        Ok(Target {
            root,
            index: index.to_string(),
            params,
        })
    }

    fn endpoint(&self, path: &[&str]) -> reqwest::Url {
        let mut u = self.root.clone();
        if let Ok(mut p) = u.path_segments_mut() {
            p.pop_if_empty();
            p.extend(path);
        }
        u
    }

    pub fn bulk_url(&self) -> reqwest::Url {
        let mut u = self.endpoint(&["_bulk"]);
        {
            let mut q = u.query_pairs_mut();
            for (k, v) in &self.params {
                q.append_pair(k, v);
            }
            q.append_pair("filter_path", FILTER_PATH);
        }
        u
    }

    pub fn template_url(&self, name: &str) -> reqwest::Url {
        self.endpoint(&["_index_template", name])
    }
}

/// Elasticsearch's index naming rules, checked before anything is sent: a bad name would fail
/// every document.
fn check_index_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name == "." || name == ".." {
        return Err("it is empty, \".\" or \"..\"");
    }
    if name.len() > 255 {
        return Err("it is longer than 255 bytes");
    }
    if name.chars().any(|c| c.is_uppercase()) {
        return Err("it must be lowercase");
    }
    if name.starts_with(['-', '_', '+']) {
        return Err("it must not start with -, _ or +");
    }
    if name.chars().any(|c| c.is_whitespace() || "\\/*?\"<>|,#:".contains(c)) {
        return Err("it must not contain spaces or any of \\ / * ? \" < > | , # :");
    }
    Ok(())
}

/// The document `_id` of an event: SHA-256 of its bytes, base64url without padding (43 chars).
pub fn doc_id(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(data))
}

/// The document with `@timestamp` (RFC 3339 UTC, milliseconds) taken from `timestamp`, written
/// in front of the other fields; unchanged if it already has one or no time is known.
fn with_at_timestamp(doc: &Bytes, fallback_ms: u64) -> Bytes {
    #[derive(Deserialize)]
    struct Times<'a> {
        #[serde(borrow)]
        timestamp: Option<Cow<'a, str>>,
        #[serde(rename = "@timestamp")]
        at: Option<serde::de::IgnoredAny>,
    }
    let times: Option<Times> = serde_json::from_slice(doc).ok();
    if times.as_ref().is_some_and(|t| t.at.is_some()) {
        return doc.clone();
    }
    let ms = times
        .and_then(|t| t.timestamp)
        .and_then(|t| parse_timestamp_millis(&t))
        .or((fallback_ms > 0).then_some(fallback_ms as i64));
    let Some(at) = ms.and_then(chrono::DateTime::from_timestamp_millis) else {
        return doc.clone();
    };
    let Some(open) = doc.iter().position(|b| !b.is_ascii_whitespace()).filter(|&i| doc[i] == b'{') else {
        return doc.clone();
    };
    let rest = &doc[open + 1..];
    let empty = rest.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'}');
    let mut out = BytesMut::with_capacity(doc.len() + 45);
    out.put_slice(&doc[..=open]);
    out.put_slice(b"\"@timestamp\":\"");
    out.put_slice(at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true).as_bytes());
    out.put_slice(if empty { b"\"" } else { b"\"," });
    out.put_slice(rest);
    out.freeze()
}

/// The index template that makes the documented queries work as written (§2.8), for `raw`
/// events without the audit stamp.
pub fn index_template(index: &str, data_stream: bool) -> Value {
    index_template_for(index, data_stream, Schema::Raw, false)
}

/// The mappings of SendAuth's own fields (`raw` and `cim` at the top level, `ecs` under
/// `sendauth`, `ocsf` under `unmapped.sendauth`).
fn sendauth_properties() -> Value {
    let keyword = json!({"type": "keyword"});
    json!({
        // A timestamp ES cannot read is kept in _source, unindexed, rather than losing
        // the event to the dead letter.
        "timestamp": {
            "type": "date",
            "format": "strict_date_optional_time||yyyy-MM-dd HH:mm:ss.SSS||yyyy-MM-dd HH:mm:ss||epoch_millis",
            "ignore_malformed": true
        },
        "event_type": keyword,
        "org_id": keyword,
        "transaction_id": keyword,
        "subject": keyword,
        "requestor": keyword,
        "ip_address": {"type": "ip", "ignore_malformed": true},
        "location": {"properties": {"country": keyword, "region": keyword, "city": keyword}}
    })
}

/// The index template for events in `schema` (see `schema`): every field a documented query
/// or a built-in view filters on gets its type (ECS: `date`, `ip`, `keyword`; OCSF: `date`
/// from epoch milliseconds, `integer` ids); other strings are `keyword` by the dynamic template.
pub fn index_template_for(index: &str, data_stream: bool, schema: Schema, audit: bool) -> Value {
    let keyword = json!({"type": "keyword"});
    let ip = json!({"type": "ip", "ignore_malformed": true});
    let int = json!({"type": "integer"});
    let mut props = match schema {
        Schema::Raw => sendauth_properties(),
        Schema::Cim => {
            let mut p = sendauth_properties();
            for k in [
                "action",
                "app",
                "user",
                "src_user",
                "dest",
                "signature",
                "reason",
                "vendor_product",
                "authentication_method",
            ] {
                p[k] = keyword.clone();
            }
            p["src"] = keyword.clone();
            p
        }
        Schema::Ecs => json!({
            "ecs": {"properties": {"version": keyword}},
            "event": {"properties": {
                "kind": keyword, "category": keyword, "type": keyword, "action": keyword,
                "outcome": keyword, "provider": keyword, "dataset": keyword, "reason": keyword
            }},
            "user": {"properties": {"name": keyword, "email": keyword}},
            "related": {"properties": {"user": keyword, "ip": ip}},
            "source": {"properties": {
                "ip": ip,
                "geo": {"properties": {"city_name": keyword, "region_name": keyword, "country_iso_code": keyword}}
            }},
            "organization": {"properties": {"id": keyword}},
            "transaction": {"properties": {"id": keyword}},
            "agent": {"properties": {"name": keyword, "type": keyword}},
            "sendauth": {"properties": sendauth_properties()}
        }),
        Schema::Ocsf => json!({
            "time": {"type": "date", "format": "epoch_millis"},
            "category_uid": int, "class_uid": int, "activity_id": int, "type_uid": int,
            "status_id": int, "severity_id": int,
            "category_name": keyword, "class_name": keyword, "activity_name": keyword,
            "type_name": keyword, "status": keyword, "status_detail": keyword, "severity": keyword,
            "is_mfa": {"type": "boolean"},
            "message": keyword,
            "metadata": {"properties": {
                "version": keyword, "original_time": keyword, "correlation_uid": keyword,
                "sequence": {"type": "long"},
                "product": {"properties": {"name": keyword, "vendor_name": keyword}}
            }},
            "user": {"properties": {"name": keyword, "email_addr": keyword, "org": {"properties": {"uid": keyword}}}},
            "actor": {"properties": {"user": {"properties": {"name": keyword}}}},
            "src_endpoint": {"properties": {
                "ip": ip,
                "location": {"properties": {"city": keyword, "region": keyword, "country": keyword}}
            }},
            "unmapped": {"properties": {"sendauth": {"properties": sendauth_properties()}}}
        }),
    };
    props["@timestamp"] = json!({"type": "date"});
    if audit {
        props[crate::schema::AGENT_NS] = json!({"properties": {"agent": keyword, "seq": {"type": "long"}}});
    }
    let mut t = json!({
        "index_patterns": [format!("{index}*")],
        "priority": 200,
        "_meta": {"managed_by": "sendauth-siem", "description": "SendAuth authentication events", "schema": schema.as_str()},
        "template": {"mappings": {
            "dynamic_templates": [
                {"strings_as_keyword": {"match_mapping_type": "string", "mapping": {"type": "keyword", "ignore_above": 1024}}}
            ],
            "properties": props
        }}
    });
    if data_stream {
        t["data_stream"] = json!({});
    }
    t
}

pub struct Elasticsearch {
    target: Result<Target, String>,
    cfg: ElasticConfig,
    /// `{"create":{"_index":"<index>","_id":"`, the action line up to the id.
    action_head: String,
    /// The schema and audit setting the index template follows.
    schema: Schema,
    audit: bool,
    warned_product: AtomicBool,
    /// What `GET /` said, once `prepare` or `health_check` read it.
    product: std::sync::Mutex<Option<Product>>,
}

impl Elasticsearch {
    pub fn new(url: reqwest::Url, cfg: ElasticConfig) -> Self {
        let target = Target::from_url(&url, cfg.index.as_deref()).map_err(|(key, msg)| format!("siem.{key}: {msg}"));
        // The config is validated with `Target::from_url`, so this fallback is not reached; if it
        // were, `prepare` reports the problem and every item fails as a destination error.
        let index = target.as_ref().map(|t| t.index.clone()).unwrap_or_default();
        let action_head = format!("{{\"create\":{{\"_index\":{},\"_id\":\"", Value::from(index));
        Elasticsearch {
            target,
            cfg,
            action_head,
            schema: Schema::Raw,
            audit: false,
            warned_product: AtomicBool::new(false),
            product: std::sync::Mutex::new(None),
        }
    }

    /// Installs the template for events in `schema` (stamped when `audit`).
    pub fn with_schema(mut self, schema: Schema, audit: bool) -> Self {
        self.schema = schema;
        self.audit = audit;
        self
    }

    fn index(&self) -> &str {
        self.target.as_ref().map(|t| t.index.as_str()).unwrap_or("")
    }

    fn write_event(&self, out: &mut BytesMut, e: &QueuedEvent) {
        out.put_slice(self.action_head.as_bytes());
        out.put_slice(doc_id(&e.data).as_bytes());
        out.put_slice(b"\"}}\n");
        let doc = one_line(&e.data);
        let doc = if self.cfg.data_stream {
            with_at_timestamp(&doc, e.accepted_at_ms)
        } else {
            doc
        };
        out.put_slice(&doc);
        out.put_u8(b'\n');
    }

    /// A real cluster says so in `X-elastic-product`; something else may be answering.
    fn check_product(&self, resp: &Response) {
        if self.distribution() == Some(Distribution::OpenSearch) {
            return;
        }
        let ok = resp
            .headers
            .get("x-elastic-product")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("Elasticsearch"));
        if !ok && !self.warned_product.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "the server at siem.url answered without \"X-elastic-product: Elasticsearch\": it may be a proxy or an Elasticsearch-compatible store. Its bulk answers are still read item by item"
            );
        }
    }

    fn distribution(&self) -> Option<Distribution> {
        self.product
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|p| p.distribution)
    }

    /// Reads and remembers the product at `GET /` (best effort: see `sink::es_product`).
    async fn read_product(&self, client: &HttpClient) -> Result<(Option<Product>, u16), Failure> {
        let root = match &self.target {
            Ok(t) => t.root.clone(),
            Err(msg) => return Err(Failure::new(FailureKind::Config, None, msg.clone())),
        };
        let r = es_product::probe(client, root).await;
        if let Ok((Some(p), _)) = &r {
            *self.product.lock().unwrap_or_else(|e| e.into_inner()) = Some(p.clone());
        }
        r
    }

    fn interpret_bulk(&self, events: &[QueuedEvent], resp: &Response) -> Verdict {
        self.check_product(resp);
        let status = resp.status;
        let bad = |msg: String| Verdict::Retry(Failure::new(FailureKind::BadResponse, Some(status), msg));
        let v: Value = match serde_json::from_slice(&resp.body) {
            Ok(v @ Value::Object(_)) => v,
            // Only a cut-off bulk answer means "too many items to read"; a huge body that is not
            // JSON at all (a proxy, a wrong endpoint) is a bad answer, not a reason to split.
            _ if resp.body.len() >= MAX_RESPONSE_BYTES && resp.body.trim_ascii_start().starts_with(b"{") => {
                return Verdict::TooLarge(Failure::new(
                    FailureKind::TooLarge,
                    Some(status),
                    format!(
                        "Elasticsearch's bulk answer for {} events was longer than the agent reads ({} bytes); sending fewer events per request (lower siem.elasticsearch.max_batch_events to avoid this)",
                        events.len(),
                        MAX_RESPONSE_BYTES
                    ),
                ))
            }
            _ => {
                return bad(format!(
                    "Elasticsearch answered HTTP {status} but not with a bulk result ({:?}); nothing is assumed delivered, will retry. Check that siem.url points at Elasticsearch",
                    resp.body_summary()
                ))
            }
        };
        if v.get("errors") == Some(&Value::Bool(false)) {
            return Verdict::Delivered;
        }
        let Some(items) = v.get("items").and_then(Value::as_array) else {
            return bad(format!(
                "Elasticsearch answered HTTP {status} without per-document results ({:?}); nothing is assumed delivered, will retry",
                resp.body_summary()
            ));
        };
        if items.len() != events.len() {
            return bad(format!(
                "Elasticsearch answered {} results for {} documents; nothing is assumed delivered, will retry",
                items.len(),
                events.len()
            ));
        }
        let mut out = Vec::with_capacity(items.len());
        for (i, (item, e)) in items.iter().zip(events).enumerate() {
            let Some(result) = item.as_object().and_then(|o| o.values().next()) else {
                return bad(format!("Elasticsearch's result {i} is not an action result; will retry"));
            };
            if let Some(id) = result.get("_id").and_then(Value::as_str) {
                if id != doc_id(&e.data) {
                    return bad(format!(
                        "Elasticsearch's result {i} is for document {id:?}, not the one sent there; will retry"
                    ));
                }
            }
            let Some(code) = result.get("status").and_then(Value::as_u64) else {
                return bad(format!("Elasticsearch's result {i} has no status; will retry"));
            };
            out.push(self.item_outcome(code, result.get("error")));
        }
        collapse(out)
    }

    fn item_outcome(&self, code: u64, error: Option<&Value>) -> EventOutcome {
        let status = u16::try_from(code).ok();
        let (ty, reason) = error.map(error_parts).unwrap_or_default();
        let said = describe_error(code, error);
        let f = |kind, msg: &dyn Fn(&str) -> String| said.failure(kind, status, msg);
        match code {
            200 | 201 => EventOutcome::Delivered,
            // `create` of an `_id` that exists: this very event was indexed by an earlier attempt.
            409 => EventOutcome::Delivered,
            429 => EventOutcome::Retry(f(FailureKind::RateLimited, &|said| {
                format!("Elasticsearch is overloaded ({said}); resending this document with backoff")
            })),
            408 => EventOutcome::Retry(f(FailureKind::RequestTimeout, &|said| {
                format!("Elasticsearch timed out on this document ({said}); resending")
            })),
            500..=599 => EventOutcome::Retry(f(FailureKind::ServerError, &|said| {
                format!("Elasticsearch failed this document ({said}); resending")
            })),
            401 | 403 => EventOutcome::Retry(f(FailureKind::Credentials, &|said| {
                format!("Elasticsearch refused to write to index {:?}: {said}; give the user or API key in siem.auth the create_doc privilege on it; events stay queued", self.index())
            })),
            _ if is_destination_error(&ty, &reason) || code == 404 => EventOutcome::Retry(f(FailureKind::Config, &|said| {
                format!("Elasticsearch cannot write to index {:?}: {said}; check the index (siem.elasticsearch.index or siem.url) and its settings; events stay queued", self.index())
            })),
            400..=499 => EventOutcome::DeadLetter(f(FailureKind::Rejected, &|said| {
                format!("Elasticsearch rejected this document: {said}")
            })),
            _ => EventOutcome::Retry(f(FailureKind::BadResponse, &|said| {
                format!("Elasticsearch answered this document with {said}; resending")
            })),
        }
    }

    fn whole_request(&self, resp: &Response) -> Verdict {
        let status = resp.status;
        let parsed: Option<Value> = serde_json::from_slice(&resp.body).ok();
        let error = parsed.as_ref().and_then(|v| v.get("error"));
        let said = match error {
            Some(e) => describe_error(u64::from(status), Some(e)),
            None => Said::body(status, resp),
        };
        let (ty, _) = error.map(error_parts).unwrap_or_default();
        let fail = |kind, msg: &dyn Fn(&str) -> String| {
            let mut f = said.failure(kind, Some(status), msg);
            f.retry_after = resp.retry_after();
            f
        };
        let index = self.index();
        match status {
            401 => Verdict::Retry(fail(FailureKind::Credentials, &|said| {
                format!("Elasticsearch rejected the credentials: {said}; check siem.auth: basic (username and password) or header \"Authorization: ApiKey <encoded>\"; events stay queued")
            })),
            403 => Verdict::Retry(fail(FailureKind::Credentials, &|said| {
                format!("Elasticsearch refused the bulk write: {said}; give the user or API key in siem.auth the create_doc privilege on index {index:?} (and create_index, or auto_configure for a data stream); events stay queued")
            })),
            404 => Verdict::Retry(fail(FailureKind::NotFound, &|said| {
                format!(
                    "Elasticsearch answered {said} for {}; check the host and path in siem.url; events stay queued",
                    self.bulk_path()
                )
            })),
            413 => Verdict::TooLarge(fail(FailureKind::TooLarge, &|said| {
                format!("Elasticsearch answered {said}: the bulk request exceeds its http.max_content_length; sending fewer events per request (lower siem.elasticsearch.max_batch_bytes to avoid this)")
            })),
            429 => Verdict::Retry(fail(FailureKind::RateLimited, &|said| {
                format!("Elasticsearch is overloaded: {said}; will retry with backoff")
            })),
            // Per-document problems come back per item; a whole-request 400 is about the request.
            // Only a parse error can be one document's fault: find it by sending one at a time.
            400 if is_parse_error(&ty) => Verdict::Rejected(fail(FailureKind::Rejected, &|said| {
                format!("Elasticsearch rejected the data: {said}")
            })),
            400 | 406 | 415 => Verdict::Retry(fail(FailureKind::Config, &|said| {
                format!("Elasticsearch rejected the bulk request itself: {said}; check siem.url and siem.elasticsearch settings; events stay queued")
            })),
            500..=599 => Verdict::Retry(fail(FailureKind::ServerError, &|said| {
                format!("Elasticsearch had a server error: {said}; will retry")
            })),
            _ => classify_status(resp, "Elasticsearch"),
        }
    }

    fn bulk_path(&self) -> String {
        match &self.target {
            Ok(t) => t.bulk_url().path().to_string(),
            Err(_) => "/_bulk".into(),
        }
    }
}

/// `type` and `reason` of an Elasticsearch `error` value (an object, or a bare string on very
/// old versions), the reason up to [`DETAIL_CHARS`].
fn error_parts(e: &Value) -> (String, String) {
    match e {
        Value::String(s) => (String::new(), clip(s, DETAIL_CHARS)),
        Value::Object(o) => {
            let s = |k: &str| o.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            (s("type"), clip(&s("reason"), DETAIL_CHARS))
        }
        _ => (String::new(), clip(&e.to_string(), DETAIL_CHARS)),
    }
}

/// What Elasticsearch said, twice: `summary` for logs and status, `full` for a dead-letter
/// reason (see `Failure::detail`).
struct Said {
    summary: String,
    full: String,
}

impl Said {
    /// A failure whose message is `msg` around the summary, and whose detail is `msg` around
    /// the full text.
    fn failure(&self, kind: FailureKind, status: Option<u16>, msg: impl Fn(&str) -> String) -> Failure {
        Failure::new(kind, status, msg(&self.summary)).with_detail(msg(&self.full))
    }

    /// `HTTP 413`, or `HTTP 502: <body>` for an answer that is not an Elasticsearch error.
    fn body(status: u16, resp: &Response) -> Said {
        let with = |b: String| {
            if b.is_empty() {
                format!("HTTP {status}")
            } else {
                format!("HTTP {status}: {b}")
            }
        };
        Said {
            summary: with(resp.body_summary()),
            full: with(resp.body_detail()),
        }
    }
}

/// `HTTP 400 document_parsing_exception: [1:42] failed to parse ... (caused by ...)`. The
/// summary drops value previews from the reason (`Preview of field's value: '…'`) and keeps
/// only the type of `caused_by`, whose reason quotes the value (`For input string: "…"`,
/// `'…' is not an IP string literal`); the full text keeps both.
fn describe_error(status: u64, error: Option<&Value>) -> Said {
    let Some(e) = error else {
        let s = format!("HTTP {status}");
        return Said {
            summary: s.clone(),
            full: s,
        };
    };
    let (ty, reason) = error_parts(e);
    let mut head = format!("HTTP {status}");
    if !ty.is_empty() {
        head.push(' ');
        head.push_str(&ty);
    }
    let (mut summary, mut full) = (head.clone(), head);
    if !reason.is_empty() {
        summary.push_str(&format!(": {}", summarize(&reason)));
        full.push_str(&format!(": {reason}"));
    }
    if let Some(c) = e.get("caused_by") {
        let (cty, creason) = error_parts(c);
        if !cty.is_empty() {
            summary.push_str(&format!(" (caused by {cty})"));
        }
        if !cty.is_empty() || !creason.is_empty() {
            full.push_str(&format!(" (caused by {cty}: {creason})"));
        }
    }
    Said { summary, full }
}

/// Errors about where documents go, not about the documents: they hold the queue.
fn is_destination_error(ty: &str, reason: &str) -> bool {
    matches!(
        ty,
        "index_not_found_exception"
            | "invalid_index_name_exception"
            | "index_closed_exception"
            | "cluster_block_exception"
            | "security_exception"
            | "no_such_index_exception"
    ) || (ty == "illegal_argument_exception"
        && ["alias", "data stream", "write index", "op_type"]
            .iter()
            .any(|w| reason.contains(w)))
}

fn is_parse_error(ty: &str) -> bool {
    matches!(
        ty,
        "x_content_parse_exception"
            | "json_parse_exception"
            | "parse_exception"
            | "mapper_parsing_exception"
            | "document_parsing_exception"
            | "not_x_content_exception"
    )
}

/// One verdict for the whole request when every item went the same way.
fn collapse(out: Vec<EventOutcome>) -> Verdict {
    if out.iter().all(|o| *o == EventOutcome::Delivered) {
        return Verdict::Delivered;
    }
    if out.iter().all(|o| matches!(o, EventOutcome::Retry(_))) {
        if let Some(EventOutcome::Retry(f)) = out.first() {
            return Verdict::Retry(f.clone());
        }
    }
    Verdict::PerEvent(out)
}

impl Platform for Elasticsearch {
    fn name(&self) -> &'static str {
        "elasticsearch"
    }

    fn limits(&self) -> (usize, usize) {
        (self.cfg.max_events, self.cfg.max_bytes)
    }

    fn encode(&self, events: &[QueuedEvent]) -> EncodedRequest {
        let mut raw = BytesMut::new();
        let mut n = 0;
        for e in events.iter().take(self.cfg.max_events.max(1)) {
            let start = raw.len();
            self.write_event(&mut raw, e);
            if n > 0 && raw.len() > self.cfg.max_bytes {
                raw.truncate(start);
                break;
            }
            n += 1;
        }
        let raw = raw.freeze();
        let headers = vec![("Content-Type".to_string(), "application/x-ndjson".to_string())];
        let url = match &self.target {
            Ok(t) => t.bulk_url(),
            Err(_) => "http://invalid.invalid/_bulk".parse().expect("a valid URL"),
        };
        EncodedRequest::post(url, headers, raw, n, self.cfg.gzip)
    }

    fn interpret(&self, events: &[QueuedEvent], resp: &Response) -> Verdict {
        if (200..300).contains(&resp.status) {
            self.interpret_bulk(events, resp)
        } else {
            self.whole_request(resp)
        }
    }

    fn health_check<'a>(&'a self, client: &'a HttpClient) -> BoxFuture<'a, Option<Result<String, Failure>>> {
        Box::pin(async move {
            Some(match self.read_product(client).await {
                Ok((Some(p), _)) => Ok(format!("{p} answered at GET /")),
                Ok((None, status)) => Ok(format!(
                    "GET / answered HTTP {status}, not a cluster description, so the product and version are unknown (an Elasticsearch API key may lack the monitor privilege); testing delivery anyway"
                )),
                Err(f) => Err(f),
            })
        })
    }

    fn prepare<'a>(&'a self, client: &'a HttpClient) -> BoxFuture<'a, Result<(), Failure>> {
        Box::pin(async move {
            let target = self
                .target
                .as_ref()
                .map_err(|msg| Failure::new(FailureKind::Config, None, msg.clone()))?;
            match self.read_product(client).await {
                Ok((Some(p), _)) => tracing::info!(target: "sink", "siem.url answers as {p}"),
                Ok((None, status)) => tracing::debug!(target: "sink", status, "GET / did not say which product answers"),
                Err(f) => tracing::debug!(target: "sink", "GET / failed: {}", f.message),
            }
            if !self.cfg.install_template {
                return Ok(());
            }
            let name = &self.cfg.template_name;
            let body = Bytes::from(index_template_for(&target.index, self.cfg.data_stream, self.schema, self.audit).to_string());
            let req = EncodedRequest {
                method: reqwest::Method::PUT,
                url: target.template_url(name),
                headers: vec![("Content-Type".to_string(), "application/json".to_string())],
                raw_bytes: body.len(),
                body,
                events: 0,
            };
            let what = format!("installing Elasticsearch index template {name:?} (for {}*)", target.index);
            let resp = client.send(&req).await.map_err(|mut f| {
                f.message = format!("{what}: {}", f.message);
                f
            })?;
            let status = resp.status;
            if (200..300).contains(&status) {
                return Ok(());
            }
            let error = serde_json::from_slice::<Value>(&resp.body)
                .ok()
                .and_then(|v| v.get("error").cloned());
            // A template answer concerns no event: the summary is all there is to say.
            let said = match &error {
                Some(e) => describe_error(u64::from(status), Some(e)),
                None => Said::body(status, &resp),
            }
            .summary;
            let skip = "or set siem.elasticsearch.install_template: false and install the mappings yourself";
            let (kind, msg) = match status {
                401 => (FailureKind::Credentials, format!("{what} failed: {said}; check siem.auth")),
                403 => (
                    FailureKind::Credentials,
                    format!("{what} failed: {said}; the user or API key needs the manage_index_templates cluster privilege, {skip}"),
                ),
                404 | 405 => (
                    FailureKind::NotFound,
                    format!("{what} failed: {said}; _index_template needs Elasticsearch 7.8 or later: check siem.url, {skip}"),
                ),
                400 => (
                    FailureKind::Config,
                    format!("{what} failed: {said}; another template may already match {}* with the same priority: change siem.elasticsearch.template_name, {skip}", target.index),
                ),
                429 => (FailureKind::RateLimited, format!("{what} failed: {said}; will retry")),
                500..=599 => (FailureKind::ServerError, format!("{what} failed: {said}; will retry")),
                _ => (FailureKind::Config, format!("{what} failed: {said}")),
            };
            let mut f = Failure::new(kind, Some(status), msg);
            f.retry_after = resp.retry_after();
            Err(f)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::test_server;
    use std::io::Read;

    const EV: &str = r#"{"event_type":"transaction.verified","timestamp":"2025-01-28T10:31:00Z","transaction_id":"tx-1","subject":"user@company.com","ip_address":"203.0.113.42","location":{"city":"San Francisco","region":"California","country":"US"},"org_id":"org-1"}"#;

    fn cfg() -> ElasticConfig {
        ElasticConfig {
            index: None,
            install_template: true,
            template_name: "sendauth-events".into(),
            data_stream: false,
            max_events: 1000,
            max_bytes: 5 * 1024 * 1024,
            gzip: false,
        }
    }

    fn es(cfg: ElasticConfig) -> Elasticsearch {
        Elasticsearch::new("https://es.example.com:9200/sendauth/_doc".parse().unwrap(), cfg)
    }

    fn ev(i: usize) -> QueuedEvent {
        QueuedEvent {
            seq: i as u64 + 1,
            data: Bytes::from(EV.replace("tx-1", &format!("tx-{i}"))),
            accepted_at_ms: 5,
        }
    }

    fn evs(n: usize) -> Vec<QueuedEvent> {
        (0..n).map(ev).collect()
    }

    fn resp(status: u16, body: &str) -> Response {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("x-elastic-product", "Elasticsearch".parse().unwrap());
        Response {
            status,
            headers,
            body: Bytes::from(body.to_string()),
        }
    }

    fn lines(body: &[u8]) -> Vec<Value> {
        let text = std::str::from_utf8(body).unwrap();
        assert!(text.ends_with('\n'), "the bulk body must end with a newline");
        text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    fn item(status: u16, extra: &str) -> String {
        format!(r#"{{"create":{{"status":{status}{extra}}}}}"#)
    }

    #[test]
    fn bulk_body_is_create_actions_then_the_verbatim_event() {
        let r = es(cfg()).encode(&evs(2));
        assert_eq!(r.events, 2);
        assert_eq!(r.url.path(), "/_bulk");
        assert!(r.url.query().unwrap().contains("filter_path="));
        assert!(r.headers.iter().any(|(k, v)| k == "Content-Type" && v == "application/x-ndjson"));
        let text = std::str::from_utf8(&r.body).unwrap();
        let l: Vec<&str> = text.lines().collect();
        assert_eq!(l.len(), 4);
        assert_eq!(
            l[0],
            format!(r#"{{"create":{{"_index":"sendauth","_id":"{}"}}}}"#, doc_id(&ev(0).data))
        );
        assert_eq!(l[1].as_bytes(), &ev(0).data[..], "the document is the event, byte for byte");
        assert_eq!(l[3].as_bytes(), &ev(1).data[..]);
        assert!(text.ends_with('\n'));
        assert_eq!(r.raw_bytes, r.body.len());
    }

    #[test]
    fn ids_are_stable_for_identical_events_and_distinct_otherwise() {
        let a = lines(&es(cfg()).encode(&[ev(0)]).body);
        let b = lines(&es(cfg()).encode(&[ev(0)]).body);
        let c = lines(&es(cfg()).encode(&[ev(1)]).body);
        let id = |v: &Vec<Value>| v[0]["create"]["_id"].as_str().unwrap().to_string();
        assert_eq!(id(&a), id(&b), "a resend must reuse the _id");
        assert_ne!(id(&a), id(&c));
        assert_eq!(id(&a).len(), 43);
        assert!(id(&a).bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        // The queue position does not matter, only the event.
        let mut moved = ev(0);
        moved.seq = 999;
        assert_eq!(doc_id(&moved.data), id(&a));
    }

    #[test]
    fn line_breaks_inside_an_event_cannot_break_the_framing() {
        let e = QueuedEvent {
            seq: 1,
            data: Bytes::from(EV.replace(",\"org_id\"", ",\r\n\"org_id\"")),
            accepted_at_ms: 0,
        };
        let l = lines(&es(cfg()).encode(&[e]).body);
        assert_eq!(l.len(), 2);
        assert_eq!(l[1]["org_id"], "org-1");
    }

    #[test]
    fn data_stream_documents_get_at_timestamp_from_timestamp() {
        let mut c = cfg();
        c.data_stream = true;
        let l = lines(&es(c.clone()).encode(&evs(1)).body);
        assert!(l[0].get("create").is_some(), "data streams take only create");
        assert_eq!(l[1]["@timestamp"], "2025-01-28T10:31:00.000Z");
        assert_eq!(l[1]["timestamp"], "2025-01-28T10:31:00Z");
        // Normalised to what ES's default date format reads.
        let spaced = Bytes::from_static(br#"{"timestamp":"2025-01-28 11:31:00.5","x":1}"#);
        let out = with_at_timestamp(&spaced, 0);
        assert_eq!(
            &out[..],
            br#"{"@timestamp":"2025-01-28T11:31:00.500Z","timestamp":"2025-01-28 11:31:00.5","x":1}"#
        );
        // An event that already has one keeps it; an empty object stays valid.
        let has = Bytes::from_static(br#"{"@timestamp":"x","timestamp":"2025-01-28T10:31:00Z"}"#);
        assert_eq!(with_at_timestamp(&has, 0), has);
        let empty = with_at_timestamp(&Bytes::from_static(b" { } "), 1000);
        assert_eq!(
            serde_json::from_slice::<Value>(&empty).unwrap()["@timestamp"],
            "1970-01-01T00:00:01.000Z"
        );
        // Not in index mode.
        assert!(lines(&es(cfg()).encode(&evs(1)).body)[1].get("@timestamp").is_none());
    }

    #[test]
    fn byte_cap_and_gzip_round_trip() {
        let one = es(cfg()).encode(&evs(1)).body.len();
        let mut c = cfg();
        c.max_bytes = one * 3 + 1;
        let r = es(c.clone()).encode(&evs(10));
        assert_eq!(r.events, 3);
        c.max_bytes = 10;
        assert_eq!(es(c.clone()).encode(&evs(10)).events, 1, "never below one event");
        c.max_bytes = 1 << 20;
        c.gzip = true;
        let r = es(c).encode(&evs(5));
        assert!(r.headers.iter().any(|(k, v)| k == "Content-Encoding" && v == "gzip"));
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(&r.body[..]).read_to_end(&mut raw).unwrap();
        assert_eq!(raw.len(), r.raw_bytes);
        assert_eq!(lines(&raw).len(), 10);
    }

    #[test]
    fn target_from_urls_as_users_write_them() {
        let t = |u: &str, i: Option<&str>| Target::from_url(&u.parse().unwrap(), i);
        let a = t("https://h:9200/sendauth/_doc", None).unwrap();
        assert_eq!((a.index.as_str(), a.bulk_url().path()), ("sendauth", "/_bulk"));
        let a = t("https://proxy/es/sendauth/_create/1", None).unwrap();
        assert_eq!((a.index.as_str(), a.bulk_url().path()), ("sendauth", "/es/_bulk"));
        assert_eq!(a.template_url("tpl").path(), "/es/_index_template/tpl");
        let a = t("https://h:9200/_bulk", Some("auth-events")).unwrap();
        assert_eq!(a.index, "auth-events");
        let a = t("https://h:9200/sendauth", None).unwrap();
        assert_eq!(a.index, "sendauth");
        let a = t("https://h:9200/sendauth/_doc?pipeline=geo", Some("other")).unwrap();
        assert_eq!(a.index, "other", "the configured index wins");
        assert!(a.bulk_url().query().unwrap().starts_with("pipeline=geo&filter_path="));
        assert_eq!(t("https://h:9200/_bulk", None).unwrap_err().0, "elasticsearch.index");
        assert_eq!(t("https://h:9200/SendAuth/_doc", None).unwrap_err().0, "url");
        assert_eq!(t("https://h:9200/_bulk", Some("a b")).unwrap_err().0, "elasticsearch.index");
        assert_eq!(t("https://h:9200/x/_doc?op_type=create", None).unwrap_err().0, "url");
    }

    #[test]
    fn mixed_bulk_items_are_judged_one_by_one() {
        let body = format!(
            r#"{{"errors":true,"items":[{},{},{},{},{}]}}"#,
            item(201, ""),
            item(
                409,
                r#","error":{"type":"version_conflict_engine_exception","reason":"[x]: version conflict, document already exists (current version [1])"}"#
            ),
            item(
                429,
                r#","error":{"type":"es_rejected_execution_exception","reason":"rejected execution of coordinating operation"}"#
            ),
            item(
                400,
                r#","error":{"type":"document_parsing_exception","reason":"[1:120] failed to parse field [ip_address] of type [ip]","caused_by":{"type":"illegal_argument_exception","reason":"'nope' is not an IP string literal."}}"#
            ),
            item(
                503,
                r#","error":{"type":"unavailable_shards_exception","reason":"primary shard is not active"}"#
            ),
        );
        let Verdict::PerEvent(out) = es(cfg()).interpret(&evs(5), &resp(200, &body)) else {
            panic!()
        };
        assert_eq!(out[0], EventOutcome::Delivered);
        assert_eq!(
            out[1],
            EventOutcome::Delivered,
            "409 on create: already indexed by an earlier attempt"
        );
        assert!(
            matches!(&out[2], EventOutcome::Retry(f) if f.kind == FailureKind::RateLimited),
            "{:?}",
            out[2]
        );
        match &out[3] {
            EventOutcome::DeadLetter(f) => {
                assert_eq!((f.kind, f.http_status), (FailureKind::Rejected, Some(400)));
                assert!(
                    f.message
                        .contains("document_parsing_exception: [1:120] failed to parse field [ip_address]"),
                    "{}",
                    f.message
                );
                // The caused_by reason quotes the value: only its type is in the summary, the
                // dead-letter detail has it all.
                assert!(f.message.ends_with("(caused by illegal_argument_exception)"), "{}", f.message);
                assert!(!f.message.contains("nope"), "{}", f.message);
                let detail = f.detail.as_deref().unwrap_or("");
                assert!(
                    detail.ends_with("(caused by illegal_argument_exception: 'nope' is not an IP string literal.)"),
                    "{detail}"
                );
            }
            o => panic!("{o:?}"),
        }
        assert!(
            matches!(&out[4], EventOutcome::Retry(f) if f.kind == FailureKind::ServerError && f.message.contains("unavailable_shards_exception"))
        );
    }

    #[test]
    fn all_created_or_errors_false_is_delivered() {
        let h = es(cfg());
        assert_eq!(h.interpret(&evs(3), &resp(200, r#"{"errors":false}"#)), Verdict::Delivered);
        let body = format!(
            r#"{{"took":3,"errors":false,"items":[{},{},{}]}}"#,
            item(201, ""),
            item(201, ""),
            item(201, "")
        );
        assert_eq!(h.interpret(&evs(3), &resp(200, &body)), Verdict::Delivered);
        let body = format!(r#"{{"errors":true,"items":[{},{}]}}"#, item(409, ""), item(201, ""));
        assert_eq!(h.interpret(&evs(2), &resp(200, &body)), Verdict::Delivered);
    }

    #[test]
    fn a_2xx_that_is_not_a_bulk_answer_is_never_taken_as_success() {
        let h = es(cfg());
        for body in [
            "",
            "OK",
            "<html>proxy</html>",
            "[]",
            r#"{"acknowledged":true}"#,
            r#"{"errors":true}"#,
            r#"{"errors":true,"items":[{"create":{}}]}"#,
        ] {
            let v = h.interpret(&evs(1), &resp(200, body));
            assert!(
                matches!(&v, Verdict::Retry(f) if f.kind == FailureKind::BadResponse),
                "{body}: {v:?}"
            );
        }
        // One result for two documents.
        let v = h.interpret(&evs(2), &resp(200, &format!(r#"{{"errors":true,"items":[{}]}}"#, item(201, ""))));
        assert!(matches!(&v, Verdict::Retry(f) if f.kind == FailureKind::BadResponse), "{v:?}");
        // A result for a different document.
        let v = h.interpret(
            &evs(1),
            &resp(200, &format!(r#"{{"errors":true,"items":[{}]}}"#, item(201, r#","_id":"other""#))),
        );
        assert!(matches!(&v, Verdict::Retry(f) if f.kind == FailureKind::BadResponse), "{v:?}");
        // A result with the right id is fine.
        let right = format!(r#","_id":"{}""#, doc_id(&ev(0).data));
        let v = h.interpret(
            &evs(1),
            &resp(200, &format!(r#"{{"errors":true,"items":[{}]}}"#, item(201, &right))),
        );
        assert_eq!(v, Verdict::Delivered);
        // An answer cut off at the read cap: fewer events per request.
        let huge = format!(r#"{{"errors":true,"items":[{}"#, "x".repeat(MAX_RESPONSE_BYTES));
        assert!(matches!(h.interpret(&evs(1), &resp(200, &huge)), Verdict::TooLarge(_)));
    }

    #[test]
    fn missing_product_header_is_accepted() {
        let mut r = resp(200, r#"{"errors":false}"#);
        r.headers.clear();
        assert_eq!(es(cfg()).interpret(&evs(1), &r), Verdict::Delivered);
    }

    #[test]
    fn destination_errors_hold_instead_of_dead_lettering() {
        let body = format!(
            r#"{{"errors":true,"items":[{},{}]}}"#,
            item(
                404,
                r#","error":{"type":"index_not_found_exception","reason":"no such index [sendauth]"}"#
            ),
            item(
                400,
                r#","error":{"type":"invalid_index_name_exception","reason":"Invalid index name [SendAuth], must be lowercase"}"#
            ),
        );
        let v = es(cfg()).interpret(&evs(2), &resp(200, &body));
        assert!(
            matches!(&v, Verdict::Retry(f) if f.kind == FailureKind::Config && f.message.contains("no such index")),
            "{v:?}"
        );
        let body = format!(
            r#"{{"errors":true,"items":[{}]}}"#,
            item(
                403,
                r#","error":{"type":"security_exception","reason":"action [indices:data/write/bulk[s]] is unauthorized"}"#
            )
        );
        let v = es(cfg()).interpret(&evs(1), &resp(200, &body));
        assert!(matches!(&v, Verdict::Retry(f) if f.kind == FailureKind::Credentials), "{v:?}");
    }

    #[test]
    fn whole_request_failures() {
        let h = es(cfg());
        let v = h.interpret(&evs(3), &resp(413, ""));
        assert!(matches!(&v, Verdict::TooLarge(f) if f.kind == FailureKind::TooLarge), "{v:?}");
        let mut r = resp(
            429,
            r#"{"error":{"root_cause":[],"type":"es_rejected_execution_exception","reason":"rejected execution of bulk"},"status":429}"#,
        );
        r.headers.insert(reqwest::header::RETRY_AFTER, "3".parse().unwrap());
        let v = h.interpret(&evs(3), &r);
        assert!(
            matches!(&v, Verdict::Retry(f) if f.kind == FailureKind::RateLimited && f.message.contains("es_rejected_execution_exception") && f.retry_after.is_some()),
            "{v:?}"
        );
        let v = h.interpret(&evs(3), &resp(401, r#"{"error":{"type":"security_exception","reason":"missing authentication credentials for REST request [/_bulk]"},"status":401}"#));
        assert!(
            matches!(&v, Verdict::Retry(f) if f.kind == FailureKind::Credentials && f.message.contains("missing authentication credentials") && f.message.contains("ApiKey")),
            "{v:?}"
        );
        let v = h.interpret(&evs(3), &resp(403, r#"{"error":{"type":"security_exception","reason":"action [indices:data/write/bulk] is unauthorized for user [siem]"},"status":403}"#));
        assert!(
            matches!(&v, Verdict::Retry(f) if f.kind == FailureKind::Credentials && f.message.contains("create_doc")),
            "{v:?}"
        );
        let v = h.interpret(&evs(3), &resp(404, ""));
        assert!(matches!(&v, Verdict::Retry(f) if f.kind == FailureKind::NotFound), "{v:?}");
        let v = h.interpret(&evs(3), &resp(503, ""));
        assert!(matches!(&v, Verdict::Retry(f) if f.kind == FailureKind::ServerError), "{v:?}");
        let v = h.interpret(&evs(3), &resp(400, r#"{"error":{"type":"illegal_argument_exception","reason":"The bulk request must be terminated by a newline [\n]"},"status":400}"#));
        assert!(
            matches!(&v, Verdict::Retry(f) if f.kind == FailureKind::Config),
            "a request-level 400 must not dead-letter events: {v:?}"
        );
        let v = h.interpret(
            &evs(3),
            &resp(
                400,
                r#"{"error":{"type":"x_content_parse_exception","reason":"[1:2] Unexpected character"},"status":400}"#,
            ),
        );
        assert!(matches!(&v, Verdict::Rejected(_)), "{v:?}");
    }

    #[test]
    fn template_maps_the_documented_query_fields_as_keyword() {
        let t = index_template("sendauth", false);
        assert_eq!(t["index_patterns"], json!(["sendauth*"]));
        let p = &t["template"]["mappings"]["properties"];
        assert_eq!(p["event_type"]["type"], "keyword");
        assert_eq!(p["location"]["properties"]["country"]["type"], "keyword");
        assert_eq!(p["location"]["properties"]["city"]["type"], "keyword");
        assert_eq!(p["ip_address"]["type"], "ip");
        assert_eq!(p["timestamp"]["type"], "date");
        assert_eq!(p["@timestamp"]["type"], "date");
        let dt = &t["template"]["mappings"]["dynamic_templates"][0]["strings_as_keyword"];
        assert_eq!(
            (dt["match_mapping_type"].as_str(), dt["mapping"]["type"].as_str()),
            (Some("string"), Some("keyword"))
        );
        assert!(t.get("data_stream").is_none());
        assert_eq!(index_template("sendauth", true)["data_stream"], json!({}));
    }

    /// The config problems for a `siem:` section (YAML lines, indented two spaces), joined.
    fn config_errors(siem: &str) -> String {
        let yaml = format!("siem:\n{siem}sources:\n  socket: {{ path: /tmp/x.sock }}\nqueue:\n  path: /tmp/q\n");
        crate::config::Config::parse_with_env(&yaml, &|_| None)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn config_names_the_key_to_fix() {
        let e = config_errors("  url: https://h.example.com:9200/_bulk\n");
        assert!(e.starts_with("siem.elasticsearch.index: required"), "{e}");
        let e = config_errors("  url: https://h.example.com:9200/SendAuth/_doc\n");
        assert!(
            e.starts_with("siem.url: \"SendAuth\" is not a valid Elasticsearch index name: it must be lowercase"),
            "{e}"
        );
        let e = config_errors("  url: https://h.example.com:9200/_bulk\n  elasticsearch: { index: auth, template_name: \"a b\" }\n");
        assert!(e.starts_with("siem.elasticsearch.template_name:"), "{e}");
        assert_eq!(
            config_errors("  url: https://h.example.com:9200/_bulk\n  elasticsearch: { index: auth-events }\n"),
            ""
        );
        // Only the platform in use is checked.
        assert_eq!(
            config_errors("  url: https://siem.example.com/c\n  elasticsearch: { index: BAD }\n"),
            ""
        );
    }

    proptest::proptest! {
        #[test]
        fn interpret_never_panics_on_garbage(status in 100u16..600, body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300), n in 1usize..4) {
            let h = es(cfg());
            let _ = h.interpret(&evs(n), &Response { status, headers: Default::default(), body: body.into() });
        }

        #[test]
        fn interpret_never_panics_on_odd_items(statuses in proptest::collection::vec(0u64..700, 1..5), errors in proptest::prelude::any::<bool>()) {
            let h = es(cfg());
            let items: Vec<String> = statuses.iter().map(|s| format!(r#"{{"index":{{"status":{s},"error":{{"type":7,"caused_by":"x"}}}}}}"#)).collect();
            let body = format!(r#"{{"errors":{errors},"items":[{}]}}"#, items.join(","));
            let v = h.interpret(&evs(statuses.len()), &resp(200, &body));
            if let Verdict::PerEvent(out) = v {
                proptest::prop_assert_eq!(out.len(), statuses.len());
            }
        }
    }

    fn client_for(url: &str) -> HttpClient {
        let yaml = format!(
            "siem:\n  url: {url}\n  auth:\n    basic: {{ username: siem, password: hunter2-secret }}\nsources:\n  socket: {{ path: /tmp/x.sock }}\nqueue:\n  path: /tmp/q\n"
        );
        let c = crate::config::Config::parse_with_env(&yaml, &|_| None).unwrap();
        HttpClient::new(&c.siem).unwrap()
    }

    #[tokio::test]
    async fn prepare_installs_the_index_template() {
        let srv = test_server::serve(|_| (200, r#"{"acknowledged":true}"#.to_string())).await;
        let url = format!("http://{}/sendauth/_doc", srv.addr);
        let mut c = cfg();
        c.data_stream = true;
        let h = Elasticsearch::new(url.parse().unwrap(), c);
        h.prepare(&client_for(&url)).await.unwrap();
        let mut reqs = srv.requests();
        assert_eq!(
            (reqs[0].method.as_str(), reqs[0].path.as_str()),
            ("GET", "/"),
            "the product is read first"
        );
        reqs.remove(0);
        assert_eq!(reqs.len(), 1);
        assert_eq!(
            (reqs[0].method.as_str(), reqs[0].path.as_str()),
            ("PUT", "/_index_template/sendauth-events")
        );
        assert_eq!(reqs[0].header("content-type").as_deref(), Some("application/json"));
        assert!(reqs[0].header("authorization").unwrap().starts_with("Basic "));
        let body: Value = serde_json::from_slice(&reqs[0].body).unwrap();
        assert_eq!(body, index_template("sendauth", true));
    }

    #[tokio::test]
    async fn prepare_does_nothing_when_the_template_is_not_wanted() {
        let srv = test_server::serve(|_| (500, String::new())).await;
        let url = format!("http://{}/sendauth/_doc", srv.addr);
        let mut c = cfg();
        c.install_template = false;
        Elasticsearch::new(url.parse().unwrap(), c)
            .prepare(&client_for(&url))
            .await
            .unwrap();
        let reqs: Vec<String> = srv.requests().iter().map(|r| format!("{} {}", r.method, r.path)).collect();
        assert_eq!(reqs, ["GET /"], "only the product is read (its failure is no error)");
    }

    #[tokio::test]
    async fn prepare_explains_a_missing_privilege() {
        let srv = test_server::serve(|_| {
            (
                403,
                r#"{"error":{"type":"security_exception","reason":"action [indices:admin/index_template/put] is unauthorized for user [siem]"},"status":403}"#.to_string(),
            )
        })
        .await;
        let url = format!("http://{}/sendauth/_doc", srv.addr);
        let f = Elasticsearch::new(url.parse().unwrap(), cfg())
            .prepare(&client_for(&url))
            .await
            .unwrap_err();
        assert_eq!((f.kind, f.http_status), (FailureKind::Credentials, Some(403)));
        assert!(
            f.message.contains("manage_index_templates") && f.message.contains("install_template: false"),
            "{}",
            f.message
        );
        assert!(!f.message.contains("hunter2"));
    }
}
