//! The sink: reads the queue in order, encodes for the configured SIEM, sends, and removes
//! events from the queue only on the SIEM's acceptance (or its permanent rejection of that
//! event, into the dead letter).

pub mod azure_monitor;
pub mod concurrency;
pub mod datadog;
pub mod delivery;
pub mod elasticsearch;
pub mod encode;
pub mod endpoints;
pub mod generic;
pub mod http;
pub mod platform;
pub mod retry;
pub mod settings;
pub mod splunk_hec;
pub mod sumo_logic;
#[cfg(test)]
mod test_server;
#[cfg(test)]
mod test_support;
pub mod tls_probe;

use std::sync::Arc;

use crate::sink::settings::{Platform as PlatformKind, SiemConfig};
pub use platform::{EncodedRequest, EventOutcome, Failure, FailureKind, Platform, Response, Verdict};

/// Builds the platform implementation for a config (`auto` resolved from the URL), wrapped so
/// events leave in `siem.schema` with the audit stamp (see `schema`).
pub fn build_platform(cfg: &SiemConfig) -> Arc<dyn Platform> {
    let url = cfg.url.clone();
    let agent = cfg.audit.as_ref().map(|a| a.agent_id.clone());
    let inner: Arc<dyn Platform> = match cfg.effective_platform() {
        PlatformKind::SplunkHec => Arc::new(splunk_hec::SplunkHec::new(url, cfg.splunk_hec.clone()).with_audit(agent.clone())),
        PlatformKind::Elasticsearch => {
            Arc::new(elasticsearch::Elasticsearch::new(url, cfg.elasticsearch.clone()).with_schema(cfg.schema, agent.is_some()))
        }
        PlatformKind::SumoLogic => Arc::new(sumo_logic::SumoLogic::new(url, cfg.sumo_logic.clone())),
        PlatformKind::Datadog => Arc::new(datadog::Datadog::new(url, cfg.datadog.clone())),
        PlatformKind::AzureMonitor => Arc::new(azure_monitor::AzureMonitor::new(url, cfg.azure_monitor.clone())),
        PlatformKind::Generic | PlatformKind::Auto => Arc::new(generic::Generic::new(url, cfg.generic.clone())),
    };
    crate::schema::Mapped::wrap(inner, cfg.schema, agent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_platform_gets_its_native_protocol() {
        let cases = [
            ("https://s.example.com:8088/services/collector/event", "splunk_hec"),
            ("https://e.example.com:9200/sendauth/_doc", "elasticsearch"),
            ("https://c.sumologic.com/receiver/v1/http/ZaVnC4secret", "sumo_logic"),
            ("https://siem.example.com/collector", "generic"),
        ];
        for (url, name) in cases {
            let yaml = format!("siem:\n  url: {url}\nsources:\n  socket: {{ path: /tmp/x.sock }}\nqueue:\n  path: /tmp/q\n");
            let cfg = crate::config::Config::parse_with_env(&yaml, &|_| None).unwrap();
            assert_eq!(build_platform(&cfg.siem).name(), name, "{url}");
        }
    }
}
