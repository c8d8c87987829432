//! The `siem.datadog` and `siem.azure_monitor` sections: the platforms whose endpoint can be
//! derived from their own keys instead of `siem.url`.
//!
//! Design: `parse_siem` reads these sections before it needs the URL; when `siem.url` is not
//! given, the URL comes from here (Datadog: the intake of `site`; Azure Monitor: `endpoint`).
//! Kept in its own file so the shared `config.rs` changes by a few lines only.
//!
//! Invariants:
//! - the Datadog API key and the Azure client secret are [`Secret`]s, given inline (`${VAR}`) or
//!   from a file (`*_file`), and literal values are listed as inline secrets like `siem.auth`;
//! - every key is checked only when its platform is in use (an unused section may hold anything
//!   valid on its own), except for its own syntax.

use super::*;
use crate::sink::settings::{
    datadog_intake_url, AzureMonitorConfig, DatadogConfig, AZURE_MAX_CALL_BYTES, DATADOG_MAX_ENTRIES, DATADOG_MAX_PAYLOAD_BYTES,
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
    a.finish();
    cfg
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
