//! The per-platform sections of `siem:` (`generic`, `splunk_hec`, `elasticsearch`,
//! `sumo_logic`, `datadog`, `azure_monitor`) and the checks that need a platform's URL and its
//! section together.
//!
//! Design: `parse_siem` reads the Datadog and Azure Monitor sections before it needs the URL;
//! when `siem.url` is not given, the URL comes from here (Datadog: the intake of `site`; Azure
//! Monitor: `endpoint`). The other sections are read after it, in the order problems are listed.
//!
//! Invariants:
//! - the Datadog API key and the Azure client secret are [`Secret`]s, given inline (`${VAR}`) or
//!   from a file (`*_file`), and literal values are listed as inline secrets like `siem.auth`;
//! - every key is checked only when its platform is in use (an unused section may hold anything
//!   valid on its own), except for its own syntax.

use std::collections::BTreeMap;
use std::time::Duration;

use super::reader::Node;
use super::values::is_loopback_host;
use crate::sink::settings::{
    datadog_intake_url, AzureMonitorConfig, DatadogConfig, ElasticConfig, GenericBatch, GenericConfig, Platform, SplunkConfig, SumoConfig,
    AZURE_MAX_CALL_BYTES, DATADOG_MAX_ENTRIES, DATADOG_MAX_PAYLOAD_BYTES,
};

/// The Datadog sites with a logs intake, and the short names accepted for them.
const DATADOG_SITES: [(&str, &str); 9] = [
    ("us1", "datadoghq.com"),
    ("eu", "datadoghq.eu"),
    ("us3", "us3.datadoghq.com"),
    ("us5", "us5.datadoghq.com"),
    ("ap1", "ap1.datadoghq.com"),
    ("ap2", "ap2.datadoghq.com"),
    ("uk1", "uk1.datadoghq.com"),
    ("gov", "ddog-gov.com"),
    ("us2-gov", "us2.ddog-gov.com"),
];

/// `siem.datadog`; `used` when the platform is `datadog` (then the API key is required).
pub(super) fn parse_datadog(n: &mut Node, used: bool) -> DatadogConfig {
    let mut d = n.child("datadog");
    // Datadog recommends gzip: on unless set to false (read before `batch_limits`, whose
    // default is off).
    let mut cfg = DatadogConfig {
        gzip: d.as_mut().map(|d| d.bool("gzip", true)).unwrap_or(true),
        ..DatadogConfig::default()
    };
    let (max_events, max_bytes, _) = batch_limits(d.as_mut(), DATADOG_MAX_ENTRIES, cfg.max_bytes);
    cfg.max_events = max_events;
    cfg.max_bytes = max_bytes;
    if let Some(d) = d.as_mut() {
        if let Some(site) = d.string("site") {
            let s = site.trim().trim_start_matches("app.").to_ascii_lowercase();
            match DATADOG_SITES.iter().find(|(short, full)| *short == s || *full == s) {
                Some((_, full)) => cfg.site = full.to_string(),
                None => {
                    let names: Vec<&str> = DATADOG_SITES.iter().map(|(_, f)| *f).collect();
                    d.err("site", format!("unknown Datadog site {site:?}; expected one of {} (or us1, eu, us3, us5, ap1, ap2, uk1, gov), or set siem.url to the intake URL", names.join(", ")));
                }
            }
        }
        cfg.api_key = d.secret("api_key");
        if let Some(v) = d.string("ddsource") {
            cfg.ddsource = v;
        }
        cfg.ddtags = d.string("ddtags");
        if let Some(v) = d.string("service") {
            cfg.service = v;
        }
        cfg.hostname = d.string("hostname");
        if used {
            if cfg.max_bytes > DATADOG_MAX_PAYLOAD_BYTES {
                d.err(
                    "max_batch_bytes",
                    format!(
                        "Datadog takes at most 5 MB ({DATADOG_MAX_PAYLOAD_BYTES} bytes) of uncompressed logs per request; use 5MB or less"
                    ),
                );
            }
            if cfg.max_events > DATADOG_MAX_ENTRIES {
                d.err(
                    "max_batch_events",
                    format!("Datadog takes at most {DATADOG_MAX_ENTRIES} log entries per request; use {DATADOG_MAX_ENTRIES} or less"),
                );
            }
            if let Some(k) = &cfg.api_key {
                if k.expose().is_empty() || !k.expose().chars().all(|c| c.is_ascii_graphic()) {
                    d.err(
                        "api_key",
                        "must be the API key as printable ASCII without spaces (copy it from Datadog: Organization Settings > API Keys)",
                    );
                }
            }
            if let Some(tags) = &cfg.ddtags {
                if tags.chars().any(|c| c.is_control()) {
                    d.err("ddtags", "must be tags like env:prod,team:iam on one line");
                }
            }
        }
    }
    if used && cfg.api_key.is_none() && !n.has_error_under("datadog.api_key") {
        n.err(
            "datadog.api_key",
            "required; set api_key: \"${DD_API_KEY}\" or api_key_file (a Datadog API key, not an application key)",
        );
    }
    if let Some(d) = d {
        d.finish();
    }
    cfg
}

/// `siem.azure_monitor`; `used` when the platform is `azure_monitor` (then its keys are required).
pub(super) fn parse_azure(n: &mut Node, used: bool) -> AzureMonitorConfig {
    let mut a = n.child("azure_monitor");
    let mut cfg = AzureMonitorConfig {
        gzip: a.as_mut().map(|a| a.bool("gzip", true)).unwrap_or(true),
        ..AzureMonitorConfig::default()
    };
    let (max_events, max_bytes, _) = batch_limits(a.as_mut(), cfg.max_events, cfg.max_bytes);
    cfg.max_events = max_events;
    cfg.max_bytes = max_bytes;
    let Some(mut a) = a else {
        if used {
            n.err(
                "azure_monitor",
                "required with platform azure_monitor; set endpoint, dcr_immutable_id, stream, tenant_id, client_id and client_secret (see config/azure_monitor.yaml)",
            );
        }
        return cfg;
    };
    cfg.endpoint = a.string("endpoint");
    let required = |a: &mut Node, k: &str, hint: &str| -> String {
        if used {
            a.required_string(k, hint).unwrap_or_default()
        } else {
            a.string(k).unwrap_or_default()
        }
    };
    cfg.dcr_immutable_id = required(
        &mut a,
        "dcr_immutable_id",
        "set the data collection rule's immutable id (dcr-…, in the DCR's JSON view)",
    );
    cfg.stream = required(&mut a, "stream", "set the DCR stream to send to, e.g. Custom-SendAuthEvents");
    cfg.tenant_id = required(
        &mut a,
        "tenant_id",
        "set the Microsoft Entra tenant (directory) id of the app registration",
    );
    cfg.client_id = required(&mut a, "client_id", "set the app registration's application (client) id");
    cfg.client_secret = a.secret("client_secret");
    if let Some(s) = a.string("scope") {
        cfg.scope = s;
    }
    if let Some(h) = a.string("authority_host") {
        match reqwest::Url::parse(h.trim()) {
            Ok(u) if (u.scheme() == "https" || (u.scheme() == "http" && is_loopback_host(&u))) && u.host_str().is_some() => {
                cfg.authority_host = u
            }
            _ => a.err(
                "authority_host",
                format!("expected an https:// URL like https://login.microsoftonline.com, got {h:?}"),
            ),
        }
    }
    if used {
        check_azure_in_use(&mut a, &cfg);
    }
    a.finish();
    cfg
}

/// The checks of `siem.azure_monitor` that apply when Azure Monitor is the platform in use.
fn check_azure_in_use(a: &mut Node, cfg: &AzureMonitorConfig) {
    if cfg.client_secret.is_none() && !a.has_error_under("client_secret") {
        a.err(
            "client_secret",
            "required; set client_secret: \"${AZURE_CLIENT_SECRET}\" or client_secret_file (the secret's Value, not its ID)",
        );
    }
    if !cfg.dcr_immutable_id.is_empty() && !cfg.dcr_immutable_id.starts_with("dcr-") {
        a.err(
            "dcr_immutable_id",
            "a DCR immutable id starts with dcr- (copy immutableId from the DCR's JSON view, not its name or resource id)",
        );
    }
    if !(cfg.stream.is_empty() || cfg.stream.starts_with("Custom-") || cfg.stream.starts_with("Microsoft-")) {
        a.err(
            "stream",
            format!(
                "{:?} is not a DCR stream name; they start with Custom- (your table) or Microsoft- (a built-in table)",
                cfg.stream
            ),
        );
    }
    for (k, v) in [("tenant_id", &cfg.tenant_id), ("client_id", &cfg.client_id)] {
        if !v.is_empty() && !v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.') {
            a.err(k, format!("{v:?} is not an id; use the GUID from the app registration's overview"));
        }
    }
    if !cfg.dcr_immutable_id.is_empty() && !cfg.dcr_immutable_id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        a.err("dcr_immutable_id", "must be letters, digits and - only");
    }
    if !cfg.stream.is_empty() && !cfg.stream.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        a.err("stream", "must be letters, digits, - and _ only");
    }
    if cfg.max_bytes > AZURE_MAX_CALL_BYTES {
        a.err(
            "max_batch_bytes",
            format!("the Logs Ingestion API takes at most 1 MB ({AZURE_MAX_CALL_BYTES} bytes) per call; use 1MB or less"),
        );
    }
}

/// The URL for `datadog` / `azure_monitor` when `siem.url` is not set, as text for the usual URL
/// checks; `None` with an error recorded when there is none.
pub(super) fn derived_url(n: &mut Node, platform: Platform, dd: &DatadogConfig, az: &AzureMonitorConfig) -> Option<(&'static str, String)> {
    match platform {
        Platform::Datadog => Some(("datadog.site", datadog_intake_url(&dd.site))),
        Platform::AzureMonitor => match &az.endpoint {
            Some(e) => Some(("azure_monitor.endpoint", e.clone())),
            None => {
                if !n.has_error_under("azure_monitor") {
                    n.err(
                        "azure_monitor.endpoint",
                        "required; set the data collection endpoint's logs ingestion URL, e.g. https://my-dce-abcd.eastus-1.ingest.monitor.azure.com",
                    );
                }
                None
            }
        },
        _ => None,
    }
}

/// `siem.generic`: how events are batched for a generic HTTP endpoint.
pub(super) fn parse_generic(n: &mut Node) -> GenericConfig {
    let mut g = n.child("generic");
    let batch = g
        .as_mut()
        .map(|g| {
            g.choice(
                "batch",
                GenericBatch::None,
                &[
                    ("none", GenericBatch::None),
                    ("ndjson", GenericBatch::Ndjson),
                    ("json_array", GenericBatch::JsonArray),
                ],
            )
        })
        .unwrap_or(GenericBatch::None);
    let (max_events, max_bytes, gzip) = batch_limits(g.as_mut(), 500, 1024 * 1024);
    if let Some(g) = g {
        g.finish();
    }
    GenericConfig {
        batch,
        max_events,
        max_bytes,
        gzip,
    }
}

/// `siem.splunk_hec`; `default_sourcetype` depends on `siem.schema`.
pub(super) fn parse_splunk(n: &mut Node, default_sourcetype: &str) -> SplunkConfig {
    let mut s = n.child("splunk_hec");
    let (max_events, max_bytes, gzip) = batch_limits(s.as_mut(), 1000, 1_000_000);
    let cfg = match s.as_mut() {
        Some(s) => SplunkConfig {
            index: s.string("index"),
            source: s.string("source").unwrap_or_else(|| "sendauth-siem".into()),
            sourcetype: s.string("sourcetype").unwrap_or_else(|| default_sourcetype.into()),
            host: s.string("host"),
            gzip,
            max_events,
            max_bytes,
            indexer_ack: s.bool("indexer_ack", false),
            ack_timeout: s.duration("ack_timeout", Duration::from_secs(60)),
            ack_poll_interval: s.duration("ack_poll_interval", Duration::from_secs(1)),
            channel: s.string("channel"),
        },
        None => SplunkConfig {
            index: None,
            source: "sendauth-siem".into(),
            sourcetype: default_sourcetype.into(),
            host: None,
            gzip,
            max_events,
            max_bytes,
            indexer_ack: false,
            ack_timeout: Duration::from_secs(60),
            ack_poll_interval: Duration::from_secs(1),
            channel: None,
        },
    };
    if let Some(ch) = &cfg.channel {
        if uuid::Uuid::parse_str(ch).is_err() {
            if let Some(s) = s.as_mut() {
                s.err("channel", "must be a GUID like 0aeeac95-ac74-4aa9-b30d-6c4c0ac581ba");
            }
        }
    }
    if let Some(s) = s {
        s.finish();
    }
    cfg
}

/// `siem.elasticsearch`.
pub(super) fn parse_elastic(n: &mut Node) -> ElasticConfig {
    let mut e = n.child("elasticsearch");
    let (max_events, max_bytes, gzip) = batch_limits(e.as_mut(), 1000, 5 * 1024 * 1024);
    let cfg = match e.as_mut() {
        Some(e) => ElasticConfig {
            index: e.string("index"),
            install_template: e.bool("install_template", true),
            template_name: e.string("template_name").unwrap_or_else(|| "sendauth-events".into()),
            data_stream: e.bool("data_stream", false),
            max_events,
            max_bytes,
            gzip,
        },
        None => ElasticConfig {
            index: None,
            install_template: true,
            template_name: "sendauth-events".into(),
            data_stream: false,
            max_events,
            max_bytes,
            gzip,
        },
    };
    if let Some(e) = e {
        e.finish();
    }
    cfg
}

/// `siem.sumo_logic`: the `X-Sumo-*` metadata and the batch limits.
pub(super) fn parse_sumo(n: &mut Node) -> SumoConfig {
    let mut s = n.child("sumo_logic");
    let (max_events, max_bytes, gzip) = batch_limits(s.as_mut(), 1000, 1_000_000);
    let mut cfg = SumoConfig {
        category: None,
        name: None,
        host: None,
        fields: BTreeMap::new(),
        gzip,
        max_events,
        max_bytes,
    };
    if let Some(s) = s.as_mut() {
        cfg.category = s.string("category");
        cfg.name = s.string("name");
        cfg.host = s.string("host");
        if let Some(mut f) = s.child("fields") {
            let keys: Vec<String> = f.map.keys().cloned().collect();
            for k in keys {
                if let Some(v) = f.string(&k) {
                    if k.contains([',', '=']) || v.contains([',', '=']) {
                        f.err(&k, "field names and values must not contain ',' or '='");
                    } else {
                        cfg.fields.insert(k, v);
                    }
                }
            }
            f.finish();
        }
    }
    if let Some(s) = s {
        s.finish();
    }
    cfg
}

/// Checks that need the URL and the platform's section together. Only the platform in use is
/// checked: an unused section may hold anything valid on its own.
pub(super) fn check_platform(
    n: &mut Node,
    url: &reqwest::Url,
    platform: Platform,
    splunk: &SplunkConfig,
    es: &ElasticConfig,
    sumo: &SumoConfig,
) {
    let platform = match platform {
        Platform::Auto => Platform::infer_from_url(url),
        p => p,
    };
    match platform {
        Platform::SplunkHec => {
            match crate::sink::splunk_hec::Endpoints::from_url(url) {
                Err(msg) => n.err("url", msg),
                Ok(ep) if splunk.indexer_ack && ep.ack.is_none() => n.err(
                    "splunk_hec.indexer_ack",
                    "needs siem.url to end in /services/collector or /services/collector/event, where /services/collector/ack is next to it",
                ),
                Ok(_) => {}
            }
            if splunk.ack_poll_interval.is_zero() {
                n.err("splunk_hec.ack_poll_interval", "must be greater than 0");
            }
        }
        Platform::Elasticsearch => {
            if let Err((key, msg)) = crate::sink::elasticsearch::Target::from_url(url, es.index.as_deref()) {
                n.err(key, msg);
            }
            let t = &es.template_name;
            if t.is_empty() || t.chars().any(|c| c.is_whitespace() || c.is_control() || "\\/*?\"<>|,#".contains(c)) {
                n.err(
                    "elasticsearch.template_name",
                    format!("{t:?} is not a valid template name: use letters, digits, - _ ."),
                );
            }
        }
        Platform::SumoLogic => {
            let max = crate::sink::sumo_logic::MAX_REQUEST_BYTES;
            if sumo.max_bytes > max {
                n.err(
                    "sumo_logic.max_batch_bytes",
                    format!("Sumo Logic takes at most 1 MB ({max} bytes) of uncompressed data per request; use 1MB or less"),
                );
            }
            let header_safe = |v: &str| v.chars().all(|c| c == ' ' || c.is_ascii_graphic());
            for (key, header, value) in [
                ("sumo_logic.category", "X-Sumo-Category", &sumo.category),
                ("sumo_logic.name", "X-Sumo-Name", &sumo.name),
                ("sumo_logic.host", "X-Sumo-Host", &sumo.host),
            ] {
                if value.as_deref().is_some_and(|v| !header_safe(v)) {
                    n.err(key, format!("is sent as the {header} header, so it must be printable ASCII"));
                }
            }
            for (k, v) in &sumo.fields {
                if !header_safe(k) || !header_safe(v) {
                    n.err(
                        &format!("sumo_logic.fields.{k}"),
                        "is sent in the X-Sumo-Fields header, so names and values must be printable ASCII",
                    );
                }
            }
        }
        Platform::Generic | Platform::Auto | Platform::Datadog | Platform::AzureMonitor => {}
    }
}

/// Shared batch keys of each platform section: `max_batch_events`, `max_batch_bytes`, `gzip`.
fn batch_limits(n: Option<&mut Node>, default_events: usize, default_bytes: usize) -> (usize, usize, bool) {
    match n {
        None => (default_events, default_bytes, false),
        Some(n) => (
            n.uint("max_batch_events", default_events as u64, 1, 100_000) as usize,
            n.size("max_batch_bytes", default_bytes as u64, 1024) as usize,
            n.bool("gzip", false),
        ),
    }
}
