//! Realistic per-item failures for `Fault::EsItems`: the bodies a real cluster gives for item
//! 400 (mapping), 403, 404, 409, 429 and 503 (`docs/PROTOCOLS.md` §2.3).

use serde_json::{json, Value};

use super::write::Failed;

/// Realistic item errors for [`crate::Fault::EsItems`] (§2.3).
pub(super) fn injected_failure(
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
