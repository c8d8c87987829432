//! The sink: reads the queue in order, encodes for the configured SIEM, sends, and removes
//! events from the queue only on the SIEM's acceptance (or its permanent rejection of that
//! event, into the dead letter).

pub mod elasticsearch;
pub mod generic;
pub mod http;
pub mod platform;
pub mod splunk_hec;
#[cfg(test)]
mod test_server;

use std::sync::Arc;

use crate::config::{Platform as PlatformKind, SiemConfig};
pub use platform::{EncodedRequest, EventOutcome, Failure, FailureKind, Platform, Response, Verdict};

/// Builds the platform implementation for a config (`auto` resolved from the URL).
pub fn build_platform(cfg: &SiemConfig) -> Arc<dyn Platform> {
    match cfg.effective_platform() {
        PlatformKind::SplunkHec => Arc::new(splunk_hec::SplunkHec::new(cfg.url.clone(), cfg.splunk_hec.clone())),
        PlatformKind::Elasticsearch => Arc::new(elasticsearch::Elasticsearch::new(cfg.url.clone(), cfg.elasticsearch.clone())),
        // Native encodings arrive in their own modules; until then they speak generic JSON.
        _ => Arc::new(generic::Generic::new(cfg.url.clone(), cfg.generic.clone())),
    }
}
