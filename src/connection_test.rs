//! `sendauth-siem test`: sends one clearly marked test event to the configured SIEM now, through
//! the same platform encoder and HTTP client the agent uses, and explains the outcome in plain
//! words with the next step. Success only if the SIEM accepted the event.

use std::io::Write;

use crate::config::Config;
use crate::queue::QueuedEvent;
use crate::sink::http::HttpClient;
use crate::sink::platform::{EventOutcome, Failure, FailureKind, Verdict};

/// The test event: a valid SendAuth event with an unmistakable type and id.
pub(crate) fn test_event() -> bytes::Bytes {
    let now = crate::queue::now_rfc3339();
    let v = serde_json::json!({
        "event_type": "sendauth_siem.test",
        "timestamp": now,
        "org_id": "sendauth-siem-test",
        "transaction_id": format!("test-{}", uuid::Uuid::new_v4()),
        "message": "Connection test from sendauth-siem; safe to ignore",
    });
    bytes::Bytes::from(serde_json::to_vec(&v).unwrap_or_default())
}

/// The next step for a failure. `platform` matters where the credential lives elsewhere: Sumo
/// Logic has no `siem.auth`, its token is part of `siem.url`.
fn hint(f: &Failure, platform: &str) -> &'static str {
    match f.kind {
        FailureKind::Credentials if platform == "sumo_logic" => {
            "Next: the token is part of the URL: copy the HTTP Source's current URL from Sumo Logic into siem.url (siem.auth is not used)."
        }
        FailureKind::Credentials if platform == "datadog" => {
            "Next: copy an API key (Organization Settings > API Keys; not an application key) from the Datadog site you send to into siem.datadog.api_key."
        }
        FailureKind::Credentials if platform == "azure_monitor" => {
            "Next: fix what is named above in siem.azure_monitor (tenant_id, client_id, client_secret: Microsoft Entra ID > App registrations), or the app's \"Monitoring Metrics Publisher\" role on the data collection rule."
        }
        FailureKind::Dns => "Next: check the host name in siem.url and this machine's DNS resolver.",
        FailureKind::ConnectionRefused => "Next: check the port in siem.url and that the SIEM's HTTP collector is enabled and listening.",
        FailureKind::Network => "Next: check firewalls and proxies between this host and the SIEM.",
        FailureKind::Tls => "Next: follow the TLS advice above; `openssl s_client -connect HOST:PORT -showcerts` shows the certificates the SIEM presents.",
        FailureKind::Timeout => "Next: check that the SIEM is reachable from this host; raise siem.timeout if it is just slow.",
        FailureKind::Credentials => "Next: check siem.auth (token or password); it may be wrong, expired or disabled.",
        FailureKind::NotFound => "Next: check the path in siem.url (for Splunk: /services/collector/event; Elasticsearch: /<index>/_doc; Sumo Logic: the full HTTP Source URL).",
        FailureKind::Redirect => "Next: set siem.url to the final URL; redirects are never followed.",
        FailureKind::Rejected => "Next: the SIEM refused the event format; check siem.platform matches the endpoint.",
        FailureKind::Config => "Next: check siem.url, siem.platform and the platform settings named above.",
        FailureKind::TooLarge => "Next: the SIEM's request size limit is very small; check its configuration.",
        FailureKind::RateLimited | FailureKind::ServerError | FailureKind::RequestTimeout => {
            "Next: the SIEM is up but struggling; the agent would retry. Check the SIEM's health."
        }
        FailureKind::BadResponse => "Next: the endpoint answered something that is not this SIEM's API; check siem.url and siem.platform.",
        FailureKind::Storage => "Next: check the disk and permissions under queue.path.",
    }
}

/// Runs the test and writes a report to `out`. Returns true only if the SIEM accepted the event
/// (with several endpoints in `siem.url`: each one is tested in turn and must accept it).
pub async fn run(cfg: &Config, out: &mut dyn Write) -> bool {
    let platform = cfg.siem.effective_platform();
    let mut all_ok = true;
    for u in &cfg.siem.urls {
        let mut one = cfg.siem.clone();
        one.url = u.clone();
        one.urls = vec![u.clone()];
        one.platform = platform;
        all_ok &= run_one(&one, out).await;
    }
    if cfg.siem.urls.len() > 1 && !all_ok {
        let _ = writeln!(
            out,
            "Not every endpoint accepted the test event; the agent would still deliver through those that did, and probe the others."
        );
    }
    all_ok
}

async fn run_one(siem: &crate::sink::settings::SiemConfig, out: &mut dyn Write) -> bool {
    let platform = crate::sink::build_platform(siem);
    let _ = writeln!(out, "Testing {} ({})", siem.url_redacted(), platform.name());
    if !siem.enabled {
        let _ = writeln!(
            out,
            "Note: siem.enabled is false; the agent would not forward events now. Testing anyway."
        );
    }
    if siem.tls.insecure_skip_verify {
        let _ = writeln!(
            out,
            "WARNING: siem.tls.insecure_skip_verify is true: the SIEM's certificate is NOT checked, so anyone on the network path can read and alter events and credentials. Use siem.tls.ca_file instead."
        );
    }
    let client = match HttpClient::new(siem) {
        Ok(c) => c,
        Err(e) => {
            let _ = writeln!(out, "FAILED: {}", e.0);
            return false;
        }
    };
    if let Some(h) = platform.health_check(&client).await {
        match h {
            Ok(line) => {
                let _ = writeln!(out, "Health check: {line}");
            }
            Err(f) => {
                let _ = writeln!(
                    out,
                    "Health check FAILED: {}\n{}",
                    client.redact(&f.message),
                    hint(&f, platform.name())
                );
                return false;
            }
        }
    }
    if let Err(f) = platform.prepare(&client).await {
        let _ = writeln!(out, "Setup FAILED: {}\n{}", client.redact(&f.message), hint(&f, platform.name()));
        return false;
    }
    let ev = QueuedEvent {
        seq: 0,
        data: test_event(),
        accepted_at_ms: crate::queue::now_ms(),
    };
    let events = [ev];
    let req = platform.encode(&events);
    let started = std::time::Instant::now();
    let verdict = match client.send(&req).await {
        Ok(resp) => {
            let v = platform.interpret(&events, &resp);
            match v {
                Verdict::Delivered | Verdict::PerEvent(_) => match platform.confirm(&client, &resp).await {
                    Ok(()) => v,
                    Err(f) => Verdict::Retry(f),
                },
                other => other,
            }
        }
        Err(f) => Verdict::Retry(f),
    };
    let ms = started.elapsed().as_millis();
    let failure = match verdict {
        Verdict::Delivered => None,
        Verdict::PerEvent(o) => match o.into_iter().next() {
            Some(EventOutcome::Delivered) => None,
            Some(EventOutcome::Retry(f)) | Some(EventOutcome::DeadLetter(f)) => Some(f),
            None => Some(Failure::new(
                FailureKind::BadResponse,
                None,
                "the SIEM's answer did not mention the event",
            )),
        },
        Verdict::Retry(f) | Verdict::TooLarge(f) | Verdict::Rejected(f) => Some(f),
    };
    match failure {
        None => {
            let _ = writeln!(
                out,
                "OK: the SIEM accepted the test event in {ms} ms (event_type \"sendauth_siem.test\")."
            );
            true
        }
        Some(f) => {
            let status = f.http_status.map(|s| format!(" (HTTP {s})")).unwrap_or_default();
            let _ = writeln!(out, "FAILED{status}: {}\n{}", client.redact(&f.message), hint(&f, platform.name()));
            false
        }
    }
}
