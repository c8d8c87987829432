//! What an Elasticsearch request addresses, by path alone ([`Op`]), the 404/405 routing every
//! emulator does before reading a body, and the index-name rules a write must pass
//! (`docs/PROTOCOLS.md` §2.1, §2.2, §2.8; names: §2.9).

use hyper::Method;
use serde_json::json;

use crate::{Reply, Route};

use super::flavour::with_product_header;

/// What a request addresses, by path alone.
pub(super) enum Op {
    Info,
    Bulk(Option<String>),
    DocAuto(String),
    DocId(String, String),
    Create(String, String),
    Template(String),
}

pub(super) fn parse_path(path: &str) -> Option<Op> {
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

/// `MetadataCreateIndexService.validateIndexOrAliasName`, in short.
pub(super) fn invalid_index_name(index: &str) -> Option<String> {
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
