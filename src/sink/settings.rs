//! The sink's settings: which SIEM, how to reach it, how each platform is addressed, and how
//! delivery retries. Plain data, built by `config` from the YAML (`siem:` and `delivery:`)
//! and read by the sink; nothing here knows YAML.
//!
//! Invariants:
//! - a [`SiemConfig`] built by `config` has passed every check (URLs, platform limits, TLS
//!   files), so the sink never re-validates;
//! - credentials are [`Secret`]s, and a configured URL is shown only through [`redact_url`]
//!   (`SiemConfig::url_redacted`), in logs, the status page and errors alike.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::audit::AuditConfig;
use crate::secret::Secret;

/// `siem.platform`: which wire protocol the sink speaks (`Auto`: inferred from the URL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    Auto,
    SplunkHec,
    Elasticsearch,
    SumoLogic,
    Generic,
    Datadog,
    AzureMonitor,
}

impl Platform {
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Auto => "auto",
            Platform::SplunkHec => "splunk_hec",
            Platform::Elasticsearch => "elasticsearch",
            Platform::SumoLogic => "sumo_logic",
            Platform::Generic => "generic",
            Platform::Datadog => "datadog",
            Platform::AzureMonitor => "azure_monitor",
        }
    }

    /// `platform: auto` infers the SIEM from the URL path (README.md, "Config at a glance"). `/services/collector` may
    /// sit behind a path prefix (a reverse proxy), as `splunk_hec::Endpoints` accepts: taking such
    /// a URL for generic would send bare events that HEC rejects one by one (code 12).
    pub(crate) fn infer_from_url(url: &reqwest::Url) -> Platform {
        let path = url.path();
        if path.contains("/services/collector") {
            Platform::SplunkHec
        } else if path.contains("/_doc") || path.contains("/_bulk") || path.contains("/_create") {
            Platform::Elasticsearch
        } else if path.contains("/receiver/v1/http") {
            Platform::SumoLogic
        } else if path.ends_with("/api/v2/logs") {
            Platform::Datadog
        } else {
            Platform::Generic
        }
    }
}

/// `siem.generic.batch`: one event per request, NDJSON, or a JSON array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GenericBatch {
    None,
    Ndjson,
    JsonArray,
}

/// `siem.auth`: how requests authenticate (the platform may add its own header too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    None,
    Basic {
        username: String,
        password: Secret,
    },
    /// A full header: name and value (the value is secret).
    Header {
        name: String,
        value: Secret,
    },
}

/// `siem.generic`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenericConfig {
    pub batch: GenericBatch,
    pub(crate) max_events: usize,
    pub max_bytes: usize,
    pub gzip: bool,
}

/// `siem.splunk_hec`: event metadata, batching and indexer acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplunkConfig {
    pub index: Option<String>,
    pub source: String,
    pub sourcetype: String,
    pub host: Option<String>,
    pub gzip: bool,
    pub(crate) max_events: usize,
    pub max_bytes: usize,
    pub indexer_ack: bool,
    pub ack_timeout: Duration,
    pub ack_poll_interval: Duration,
    pub channel: Option<String>,
}

/// `siem.elasticsearch`: the target index or data stream, the index template, batching.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElasticConfig {
    /// Index or data stream name; default: taken from the URL path (`/sendauth/_doc` -> `sendauth`).
    pub index: Option<String>,
    pub install_template: bool,
    pub(crate) template_name: String,
    pub data_stream: bool,
    pub(crate) max_events: usize,
    pub max_bytes: usize,
    pub gzip: bool,
}

/// `siem.sumo_logic`: the `X-Sumo-*` metadata headers and batching.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SumoConfig {
    pub category: Option<String>,
    pub name: Option<String>,
    pub host: Option<String>,
    pub fields: BTreeMap<String, String>,
    pub gzip: bool,
    pub(crate) max_events: usize,
    pub max_bytes: usize,
}

/// `siem.tls`: extra CA, client certificate for mTLS, minimum version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    pub ca_file: Option<PathBuf>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    pub min_version: Option<String>,
    pub insecure_skip_verify: bool,
}

/// `siem:`: everything the sink needs to reach one SIEM (`siem.url` as a list: its nodes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiemConfig {
    pub enabled: bool,
    /// The URL as configured (the first one when `siem.url` is a list). For Sumo Logic the whole
    /// URL is a secret: print `url_redacted()`.
    pub url: reqwest::Url,
    /// Every endpoint of this SIEM, in the order written; `urls[0] == url`, never empty
    /// (`siem.url` as a list: one SIEM's nodes, same platform and auth; `sink::endpoints`).
    pub urls: Vec<reqwest::Url>,
    pub platform: Platform,
    pub auth: Auth,
    pub generic: GenericConfig,
    pub splunk_hec: SplunkConfig,
    pub elasticsearch: ElasticConfig,
    pub sumo_logic: SumoConfig,
    pub datadog: DatadogConfig,
    pub azure_monitor: AzureMonitorConfig,
    pub tls: TlsConfig,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub allow_plain_http: bool,
    /// `siem.schema`: how events are shaped for the SIEM (see `schema`).
    pub schema: crate::schema::Schema,
    /// The top-level `audit:` section, kept here because it changes what the sink sends (the
    /// stamp on each event); `None` when audit is off.
    pub audit: Option<AuditConfig>,
}

impl SiemConfig {
    /// The platform after `auto` has been resolved from the URL.
    pub(crate) fn effective_platform(&self) -> Platform {
        match self.platform {
            Platform::Auto => Platform::infer_from_url(&self.url),
            p => p,
        }
    }

    /// The URL safe to show in status, logs and errors: credentials, query strings and (for
    /// Sumo Logic) the collector token removed.
    pub(crate) fn url_redacted(&self) -> String {
        redact_url(&self.url, self.effective_platform())
    }
}

/// Removes every part of a URL that can carry a secret.
pub(crate) fn redact_url(url: &reqwest::Url, platform: Platform) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    if u.query().is_some() {
        u.set_query(Some("REDACTED"));
    }
    if platform == Platform::SumoLogic {
        // https://host/receiver/v1/http/<token> -> https://host/receiver/v1/http/REDACTED
        let path = u.path().to_string();
        if let Some(i) = path.find("/receiver/v1/http/") {
            let keep = &path[..i + "/receiver/v1/http/".len()];
            u.set_path(&format!("{keep}REDACTED"));
        }
    }
    u.to_string()
}

/// `delivery.on_retry_exhausted`: keep retrying (hold the queue) or dead-letter the events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnRetryExhausted {
    Hold,
    DeadLetter,
}

/// The sink's part of the settings (`siem:` and `delivery:`): what the delivery loop follows
/// across reloads. It never sees the rest of the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SinkSettings {
    pub siem: SiemConfig,
    pub delivery: DeliveryConfig,
}

/// `delivery:`: retries, backoff, linger and concurrency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryConfig {
    pub max_retries: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    pub on_retry_exhausted: OnRetryExhausted,
    /// How long to wait for more events before sending a batch that is not full (0 = send
    /// whatever is ready; batches then form naturally while a request is in flight). Counted
    /// from when the oldest event of the batch was accepted. One-event requests never wait.
    pub linger: Duration,
    /// How many requests may be in flight at once.
    pub max_in_flight: MaxInFlight,
}

/// `delivery.max_in_flight`: `auto` (adaptive, see `sink::concurrency`) or at most N at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxInFlight {
    Auto,
    /// At most this many (1..=[`MAX_IN_FLIGHT`]); 1 keeps strict arrival order.
    Fixed(usize),
}

/// The largest number `delivery.max_in_flight` accepts.
pub(crate) const MAX_IN_FLIGHT: usize = 256;

/// `delivery.linger` when the config does not set it: batched requests wait this long for more
/// events, so a steady trickle makes a few full requests rather than many tiny ones. With the
/// queue's group-commit gap (50 ms) it keeps append -> SIEM under a quarter of a second.
pub(crate) const DEFAULT_LINGER: Duration = Duration::from_millis(120);

/// Datadog's documented limits for one request to the logs intake (uncompressed payload,
/// entries in the array) and for one log entry (larger entries are truncated by Datadog).
pub(crate) const DATADOG_MAX_PAYLOAD_BYTES: usize = 5_000_000;
pub(crate) const DATADOG_MAX_ENTRIES: usize = 1000;
pub(crate) const DATADOG_MAX_ENTRY_BYTES: usize = 1_000_000;

/// The Logs Ingestion API takes at most 1 MB per call.
pub(crate) const AZURE_MAX_CALL_BYTES: usize = 1_000_000;

/// `siem.datadog`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatadogConfig {
    /// The site the intake URL was derived from (`datadoghq.com` ...), when `siem.url` is unset.
    pub site: String,
    /// Sent as `DD-API-KEY`. Required when the platform is `datadog`.
    pub api_key: Option<Secret>,
    pub ddsource: String,
    pub ddtags: Option<String>,
    pub service: String,
    pub hostname: Option<String>,
    pub(crate) max_events: usize,
    pub max_bytes: usize,
    pub gzip: bool,
}

impl Default for DatadogConfig {
    fn default() -> Self {
        DatadogConfig {
            site: "datadoghq.com".into(),
            api_key: None,
            ddsource: "sendauth".into(),
            ddtags: None,
            service: "sendauth-siem".into(),
            hostname: None,
            max_events: DATADOG_MAX_ENTRIES,
            max_bytes: 4_250_000,
            gzip: true,
        }
    }
}

/// The intake URL of a Datadog site: `https://http-intake.logs.<site>/api/v2/logs`.
pub(crate) fn datadog_intake_url(site: &str) -> String {
    format!("https://http-intake.logs.{site}/api/v2/logs")
}

/// `siem.azure_monitor`: the DCR to send to and the app registration that gets the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AzureMonitorConfig {
    /// The data collection endpoint (or the DCR's own logs ingestion endpoint), when given here.
    pub endpoint: Option<String>,
    pub dcr_immutable_id: String,
    pub stream: String,
    pub tenant_id: String,
    pub client_id: String,
    pub client_secret: Option<Secret>,
    /// Where the OAuth2 token comes from (`https://login.microsoftonline.com`).
    pub authority_host: reqwest::Url,
    /// The token's scope: `https://monitor.azure.com//.default` in the public cloud.
    pub scope: String,
    pub(crate) max_events: usize,
    pub max_bytes: usize,
    pub gzip: bool,
}

impl Default for AzureMonitorConfig {
    fn default() -> Self {
        AzureMonitorConfig {
            endpoint: None,
            dcr_immutable_id: String::new(),
            stream: String::new(),
            tenant_id: String::new(),
            client_id: String::new(),
            client_secret: None,
            authority_host: reqwest::Url::parse("https://login.microsoftonline.com").expect("valid default"),
            scope: "https://monitor.azure.com//.default".into(),
            max_events: 1000,
            max_bytes: AZURE_MAX_CALL_BYTES,
            gzip: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_inference() {
        let p = |u: &str| Platform::infer_from_url(&reqwest::Url::parse(u).unwrap());
        assert_eq!(p("https://s:8088/services/collector"), Platform::SplunkHec);
        assert_eq!(p("https://s:8088/services/collector/event"), Platform::SplunkHec);
        assert_eq!(p("https://proxy.example.com/splunk/services/collector/event"), Platform::SplunkHec);
        assert_eq!(p("https://e:9200/sendauth/_doc"), Platform::Elasticsearch);
        assert_eq!(p("https://e:9200/_bulk"), Platform::Elasticsearch);
        assert_eq!(p("https://c.sumologic.com/receiver/v1/http/ZaVn"), Platform::SumoLogic);
        assert_eq!(p("https://siem.example.com/collector"), Platform::Generic);
    }

    #[test]
    fn sumo_url_is_redacted() {
        let u = reqwest::Url::parse("https://c.sumologic.com/receiver/v1/http/ZaVnC4secret").unwrap();
        let r = redact_url(&u, Platform::SumoLogic);
        assert_eq!(r, "https://c.sumologic.com/receiver/v1/http/REDACTED");
        let u = reqwest::Url::parse("https://user:pw@h.example.com/x?token=abc").unwrap();
        let r = redact_url(&u, Platform::Generic);
        assert!(!r.contains("pw") && !r.contains("abc") && !r.contains("user"), "{r}");
    }
}
