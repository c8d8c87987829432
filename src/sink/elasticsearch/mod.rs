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
//!   header: `prepare` reads the product from `GET /` (`product`), an OpenSearch
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
//!
//! Files: `target` (where documents go, from `siem.url`), `bulk` (the request body), `response`
//! (reading the answers), `template` (the index template and its installation), `product`
//! (Elasticsearch or OpenSearch, from `GET /`).

mod bulk;
mod product;
mod response;
mod target;
mod template;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::Value;

use crate::queue::QueuedEvent;
use crate::schema::Schema;
use crate::sink::http::HttpClient;
use crate::sink::platform::{BoxFuture, EncodedRequest, Failure, FailureKind, Platform, Response, Verdict};
use crate::sink::settings::ElasticConfig;

pub use bulk::doc_id;
use product::{Distribution, Product};
pub use target::Target;
pub use template::{index_template, index_template_for};

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

    /// Reads and remembers the product at `GET /` (best effort: see `product`).
    async fn read_product(&self, client: &HttpClient) -> Result<(Option<Product>, u16), Failure> {
        let root = match &self.target {
            Ok(t) => t.root.clone(),
            Err(msg) => return Err(Failure::new(FailureKind::Config, None, msg.clone())),
        };
        let r = product::probe(client, root).await;
        if let Ok((Some(p), _)) = &r {
            *self.product.lock().unwrap_or_else(|e| e.into_inner()) = Some(p.clone());
        }
        r
    }
}

impl Platform for Elasticsearch {
    fn name(&self) -> &'static str {
        "elasticsearch"
    }

    fn limits(&self) -> (usize, usize) {
        (self.cfg.max_events, self.cfg.max_bytes)
    }

    fn encode(&self, events: &[QueuedEvent]) -> EncodedRequest {
        self.encode_bulk(events)
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
            self.install_template(client, target).await
        })
    }
}
