//! The index template (`PUT _index_template/<name>`) that maps SendAuth's fields as `keyword`
//! so the documented `term` queries work as written (docs/PROTOCOLS.md §2.7-2.8), and its
//! installation by `prepare`.
//!
//! Invariant: a template that cannot be installed is a failure of the destination's setup,
//! reported and retried like a delivery failure, never a reason to drop events (ARCHITECTURE.md
//! invariant 3); `install_template: false` skips it.

use bytes::Bytes;
use serde_json::{json, Value};

use crate::schema::Schema;
use crate::sink::http::HttpClient;
use crate::sink::platform::{EncodedRequest, Failure, FailureKind};

use super::response::{describe_error, Said};
use super::{Elasticsearch, Target};

/// The index template that makes the documented queries work as written (§2.8), for `raw`
/// events without the audit stamp.
pub fn index_template(index: &str, data_stream: bool) -> Value {
    index_template_for(index, data_stream, Schema::Raw, false)
}

/// The mappings of SendAuth's own fields (`raw` and `cim` at the top level, `ecs` under
/// `sendauth`, `ocsf` under `unmapped.sendauth`).
pub(super) fn sendauth_properties() -> Value {
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

impl Elasticsearch {
    /// Installs the index template for `target`'s index (`prepare`, after the product check).
    pub(super) async fn install_template(&self, client: &HttpClient, target: &Target) -> Result<(), Failure> {
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
    }
}
