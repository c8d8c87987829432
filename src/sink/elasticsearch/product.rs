//! Which product answers at an Elasticsearch-style `siem.url`: Elasticsearch or OpenSearch,
//! and its version, read from the cluster's root answer (`GET /`).
//!
//! Facts relied on: Elasticsearch answers `GET /` with `version.number` and `X-elastic-product:
//! Elasticsearch`, tagline "You Know, for Search"; OpenSearch (1.x, 2.x) answers the same shape
//! with `version.distribution: "opensearch"` (kept even when it is set to report 7.10.2 for
//! old clients), tagline "The OpenSearch Project: https://opensearch.org/", and never sends
//! `X-elastic-product`. Both take the same `_bulk` (NDJSON, `create`, per-item results) and
//! `_index_template` (composable, `index_patterns` + `template.mappings`, `priority`, `_meta`,
//! `data_stream`) requests, so the platform sends them unchanged.
//!
//! Invariants: reading the product is best effort and never fails a delivery: a cluster whose
//! credentials may write but not read `GET /` (an Elasticsearch API key without the `monitor`
//! privilege answers 403) is still delivered to; only `sendauth-siem test` shows the answer.

use std::fmt;

use serde_json::Value;

use crate::sink::http::HttpClient;
use crate::sink::platform::{Failure, FailureKind, Response};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Distribution {
    Elasticsearch,
    OpenSearch,
    /// Answered like a cluster, but says neither (a compatible store or a proxy).
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Product {
    pub distribution: Distribution,
    pub version: String,
    pub cluster: Option<String>,
}

impl fmt::Display for Product {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.distribution {
            Distribution::Elasticsearch => "Elasticsearch",
            Distribution::OpenSearch => "OpenSearch",
            Distribution::Unknown => "an Elasticsearch-compatible server",
        };
        write!(f, "{name} {}", self.version)?;
        if let Some(c) = &self.cluster {
            write!(f, " (cluster {c:?})")?;
        }
        Ok(())
    }
}

/// Reads a 2xx root answer; `None` when it is not a cluster's root answer.
pub(crate) fn from_root_answer(resp: &Response) -> Option<Product> {
    let v: Value = serde_json::from_slice(&resp.body).ok()?;
    let version = v.get("version")?;
    let number = version.get("number")?.as_str()?.to_string();
    let elastic_header = resp
        .headers
        .get("x-elastic-product")
        .and_then(|h| h.to_str().ok())
        .is_some_and(|h| h.eq_ignore_ascii_case("Elasticsearch"));
    let tagline = v.get("tagline").and_then(Value::as_str).unwrap_or("");
    let distribution = match version.get("distribution").and_then(Value::as_str) {
        Some(d) if d.eq_ignore_ascii_case("opensearch") => Distribution::OpenSearch,
        _ if tagline.contains("OpenSearch") => Distribution::OpenSearch,
        _ if elastic_header || tagline == "You Know, for Search" => Distribution::Elasticsearch,
        _ => Distribution::Unknown,
    };
    let cluster = v
        .get("cluster_name")
        .and_then(Value::as_str)
        .map(|s| crate::sink::encode::clip(s, 80));
    Some(Product {
        distribution,
        version: crate::sink::encode::clip(&number, 40),
        cluster,
    })
}

/// `GET <root>`: `Ok(Some)` for a cluster's root answer, `Ok(None)` when the server answered
/// something else (another status or body; the status is in the second field), `Err` when the
/// request failed or the credentials were refused (401).
pub async fn probe(client: &HttpClient, root: reqwest::Url) -> Result<(Option<Product>, u16), Failure> {
    let resp = client.get(root, &[]).await?;
    if resp.status == 401 {
        return Err(Failure::new(
            FailureKind::Credentials,
            Some(401),
            format!(
                "the cluster refused the credentials at GET /: HTTP 401: {}; check siem.auth",
                resp.body_summary()
            ),
        ));
    }
    if !(200..300).contains(&resp.status) {
        return Ok((None, resp.status));
    }
    Ok((from_root_answer(&resp), resp.status))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(body: &str, elastic: bool) -> Response {
        let mut headers = reqwest::header::HeaderMap::new();
        if elastic {
            headers.insert("x-elastic-product", "Elasticsearch".parse().unwrap());
        }
        Response {
            status: 200,
            headers,
            body: bytes::Bytes::from(body.to_string()),
        }
    }

    #[test]
    fn tells_opensearch_from_elasticsearch() {
        let os = r#"{"cluster_name":"logs","version":{"distribution":"opensearch","number":"7.10.2"},"tagline":"The OpenSearch Project: https://opensearch.org/"}"#;
        let p = from_root_answer(&resp(os, false)).unwrap();
        assert_eq!(p.distribution, Distribution::OpenSearch, "compatibility mode still says opensearch");
        assert_eq!(p.to_string(), "OpenSearch 7.10.2 (cluster \"logs\")");
        let es = r#"{"cluster_name":"c","version":{"number":"8.15.0","build_flavor":"default"},"tagline":"You Know, for Search"}"#;
        assert_eq!(from_root_answer(&resp(es, true)).unwrap().distribution, Distribution::Elasticsearch);
        let other = r#"{"version":{"number":"1.0"}}"#;
        assert_eq!(from_root_answer(&resp(other, false)).unwrap().distribution, Distribution::Unknown);
        assert!(from_root_answer(&resp("<html>", false)).is_none());
    }
}
