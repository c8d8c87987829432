//! Indexer acknowledgement: after HEC's 200 with an `ackId`, the batch counts as delivered only
//! once `POST /services/collector/ack` says it is indexed (docs/PROTOCOLS.md §1).
//!
//! Invariants: a batch is never taken as delivered on the 200 alone while acknowledgement is on
//! (ARCHITECTURE.md invariant 2), except when Splunk says it cannot tell (no `ackId`, ACK
//! disabled), because resending would only duplicate forever; after `ack_timeout` it is resent
//! and the message says duplicates are possible.

use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::Value;

use crate::sink::http::HttpClient;
use crate::sink::platform::{EncodedRequest, Failure, FailureKind, Response};

use super::reply::{parse_reply, what_splunk_said};
use super::{SplunkHec, CHANNEL_HEADER};

impl SplunkHec {
    /// With indexer acknowledgement on: polls Splunk's ack endpoint until it says the batch is
    /// indexed, or `ack_timeout` passes (then the batch is resent).
    pub(super) async fn confirm_indexed(&self, client: &HttpClient, resp: &Response) -> Result<(), Failure> {
        if !self.cfg.indexer_ack {
            return Ok(());
        }
        let Some(ack_url) = &self.endpoints.ack else {
            return Ok(());
        };
        let Some(id) = parse_reply(&resp.body).and_then(|r| r.ack_id) else {
            self.warn_once(
                "siem.splunk_hec.indexer_ack is on but Splunk returned no ackId: indexer acknowledgement is off for this token. Trusting Splunk's 200; enable acknowledgement on the token or set indexer_ack: false",
            );
            return Ok(());
        };
        let body = Bytes::from(format!("{{\"acks\":[{id}]}}"));
        let req = EncodedRequest {
            method: reqwest::Method::POST,
            url: ack_url.clone(),
            headers: vec![
                ("Content-Type".to_string(), "application/json".to_string()),
                (CHANNEL_HEADER.to_string(), self.channel.clone()),
            ],
            raw_bytes: body.len(),
            body,
            events: 0,
        };
        let deadline = Instant::now() + self.cfg.ack_timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            tokio::time::sleep(self.cfg.ack_poll_interval.min(left)).await;
            let last = match client.send(&req).await {
                Ok(r) if (200..300).contains(&r.status) => match ack_status(&r.body, id) {
                    Some(true) => return Ok(()),
                    Some(false) => "not indexed yet".to_string(),
                    None => format!("an unreadable answer: {}", r.body_summary()),
                },
                Ok(r) if r.status == 429 || r.status == 408 || r.status >= 500 => what_splunk_said(&r, parse_reply(&r.body).as_ref()),
                Ok(r) => {
                    // 4xx: Splunk cannot report acks for this token or channel (code 14: ACK
                    // is disabled). Resending would duplicate without ever confirming.
                    let said = what_splunk_said(&r, parse_reply(&r.body).as_ref());
                    self.warn_once(&format!(
                        "Splunk's ack endpoint answered {said}; trusting the original 200. Enable indexer acknowledgement on the token or set siem.splunk_hec.indexer_ack: false"
                    ));
                    return Ok(());
                }
                Err(f) => f.message,
            };
            if Instant::now() >= deadline {
                return Err(Failure::new(
                    FailureKind::Timeout,
                    None,
                    format!(
                        "Splunk did not confirm indexing the batch (ackId {id}) within {} (siem.splunk_hec.ack_timeout); last answer: {last}. Resending it, which may duplicate events in Splunk",
                        human(self.cfg.ack_timeout)
                    ),
                ));
            }
        }
    }
}

/// Reads `{"acks":{"<id>":true}}`; `None` when the answer does not mention `id`.
pub(super) fn ack_status(body: &[u8], id: u64) -> Option<bool> {
    let v: Value = serde_json::from_slice(body).ok()?;
    v.get("acks")?.get(id.to_string())?.as_bool()
}

pub(super) fn human(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}
