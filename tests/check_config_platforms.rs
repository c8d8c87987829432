//! `check-config` on the Datadog, Azure Monitor and OpenSearch sections: every new key's
//! mistakes are named with their dotted key, one per line, without showing a secret; valid
//! sections pass and name the URL the agent will use.

mod common;

use common::*;

const TAIL: &str = "sources:\n  socket: { path: /tmp/s.sock }\nqueue:\n  path: /tmp/q\n";

/// Runs check-config on a `siem:` section (lines indented two spaces); (exit code, output).
fn check(siem: &str) -> (i32, String) {
    let env = TestEnv::new();
    env.write_config_text(&format!("siem:\n{siem}{TAIL}"));
    let (code, out, err) = cli(&["check-config", "--config", env.config.to_str().unwrap()]);
    (code, format!("{out}{err}"))
}

fn errors(siem: &str) -> String {
    let (code, out) = check(siem);
    assert_ne!(code, 0, "expected errors for:\n{siem}\ngot: {out}");
    out
}

const DD_KEY: &str = "  api_key: 0123456789abcdef0123456789abcdef\n";

fn dd(lines: &str) -> String {
    format!(
        "  platform: datadog\n  datadog:\n{}",
        lines.lines().map(|l| format!("  {l}\n")).collect::<String>()
    )
}

#[test]
fn datadog_sections_pass_and_derive_the_intake_from_the_site() {
    let (code, out) = check(&dd(&format!("{DD_KEY}  site: eu\n  ddtags: \"env:prod,team:iam\"\n")));
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("OK (platform datadog, https://http-intake.logs.datadoghq.eu/api/v2/logs)"),
        "{out}"
    );
    let (code, out) = check(&dd(&format!("{DD_KEY}  site: us5.datadoghq.com\n")));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("https://http-intake.logs.us5.datadoghq.com/api/v2/logs"), "{out}");
    let (code, out) = check(&format!(
        "  url: https://http-intake.logs.datadoghq.com/api/v2/logs\n  datadog:\n  {DD_KEY}"
    ));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("platform datadog"), "auto recognises the intake URL: {out}");
}

#[test]
fn datadog_mistakes_are_named_by_key() {
    let cases: [(String, &str); 9] = [
        (dd("  site: datadoghq.com\n"), "siem.datadog.api_key: required; set api_key"),
        (
            dd(&format!("{DD_KEY}  site: datadoghq.fr\n")),
            "siem.datadog.site: unknown Datadog site \"datadoghq.fr\"",
        ),
        (
            dd(&format!("{DD_KEY}  max_batch_bytes: 6MB\n")),
            "siem.datadog.max_batch_bytes: Datadog takes at most 5 MB",
        ),
        (
            dd(&format!("{DD_KEY}  max_batch_events: 2000\n")),
            "siem.datadog.max_batch_events: Datadog takes at most 1000",
        ),
        (
            dd("  api_key: \"has a space in it\"\n"),
            "siem.datadog.api_key: must be the API key as printable ASCII",
        ),
        (
            dd(&format!("{DD_KEY}  api_key_file: /nonexistent/dd-key\n")),
            "siem.datadog.api_key: give either api_key or api_key_file, not both",
        ),
        (
            dd("  api_key_file: /nonexistent/dd-key\n"),
            "siem.datadog.api_key_file: cannot read secret file /nonexistent/dd-key",
        ),
        (
            dd(&format!("{DD_KEY}  ddtags: \"env:prod\\nteam:iam\"\n")),
            "siem.datadog.ddtags: must be tags like env:prod,team:iam on one line",
        ),
        (dd(&format!("{DD_KEY}  ddtag: env:prod\n")), "siem.datadog.ddtag: unknown key"),
    ];
    for (siem, want) in cases {
        let out = errors(&siem);
        assert!(out.contains(want), "want {want:?} for:\n{siem}\ngot: {out}");
    }
    let out = errors("  url: https://http-intake.logs.datadoghq.com/api/v2/logs\n");
    assert!(
        out.contains("siem.datadog.api_key: required"),
        "auto with an intake URL needs the key: {out}"
    );
    assert_eq!(out.matches("siem.datadog.api_key").count(), 1, "said once: {out}");
    let out = errors(&format!(
        "  url: https://http-intake.logs.datadoghq.com/api/v2/logs\n  datadog:\n  {DD_KEY}    max_batch_events: 5000\n"
    ));
    assert!(out.contains("siem.datadog.max_batch_events: Datadog takes at most 1000"), "{out}");
    let out = errors(&dd("  api_key: \"has a space 0123456789abcdef\"\n"));
    assert!(!out.contains("0123456789abcdef"), "no secret in errors: {out}");
}

fn az(lines: &str) -> String {
    format!(
        "  platform: azure_monitor\n  azure_monitor:\n{}",
        lines.lines().map(|l| format!("  {l}\n")).collect::<String>()
    )
}

const AZ_OK: &str = "  endpoint: https://my-dce-a1b2.eastus-1.ingest.monitor.azure.com\n  dcr_immutable_id: dcr-0123456789abcdef0123456789abcdef\n  stream: Custom-SendAuthEvents_CL\n  tenant_id: 72f988bf-86f1-41af-91ab-2d7cd011db47\n  client_id: 8f3e5a1c-0c2b-4d7e-9a61-5b0c2f9d7e11\n  client_secret: \"Xq88Q~value\"\n";

/// The valid section with `key` replaced by `line` (or removed when `line` is empty).
fn az_with(key: &str, line: &str) -> String {
    let mut body: String = AZ_OK
        .lines()
        .filter(|l| !l.trim_start().starts_with(&format!("{key}:")))
        .map(|l| format!("{l}\n"))
        .collect();
    body.push_str(line);
    az(&body)
}

#[test]
fn azure_monitor_sections_pass_with_the_endpoint_as_url() {
    let (code, out) = check(&az(AZ_OK));
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("OK (platform azure_monitor, https://my-dce-a1b2.eastus-1.ingest.monitor.azure.com/)"),
        "{out}"
    );
}

#[test]
fn azure_monitor_mistakes_are_named_by_key() {
    let cases: Vec<(String, &str)> = vec![
        (
            "  platform: azure_monitor\n".to_string(),
            "siem.azure_monitor: required with platform azure_monitor",
        ),
        (
            az_with("endpoint", ""),
            "siem.azure_monitor.endpoint: required; set the data collection endpoint",
        ),
        (az_with("dcr_immutable_id", ""), "siem.azure_monitor.dcr_immutable_id: required"),
        (az_with("stream", ""), "siem.azure_monitor.stream: required"),
        (az_with("tenant_id", ""), "siem.azure_monitor.tenant_id: required"),
        (az_with("client_id", ""), "siem.azure_monitor.client_id: required"),
        (az_with("client_secret", ""), "siem.azure_monitor.client_secret: required"),
        (
            az_with("dcr_immutable_id", "  dcr_immutable_id: my-dcr\n"),
            "siem.azure_monitor.dcr_immutable_id: a DCR immutable id starts with dcr-",
        ),
        (
            az_with("stream", "  stream: SendAuthEvents_CL\n"),
            "siem.azure_monitor.stream: \"SendAuthEvents_CL\" is not a DCR stream name",
        ),
        (
            az_with("tenant_id", "  tenant_id: \"my tenant\"\n"),
            "siem.azure_monitor.tenant_id: \"my tenant\" is not an id",
        ),
        (
            az_with("authority_host", "  authority_host: ftp://login.example.com\n"),
            "siem.azure_monitor.authority_host: expected an https:// URL",
        ),
        (
            az_with("max_batch_bytes", "  max_batch_bytes: 2MB\n"),
            "siem.azure_monitor.max_batch_bytes: the Logs Ingestion API takes at most 1 MB",
        ),
        (
            az_with("endpoint", "  endpoint: http://dce.example.com\n"),
            "siem.azure_monitor.endpoint: plain http://",
        ),
        (
            az_with("endpoint", "  endpoint: not a url\n"),
            "siem.azure_monitor.endpoint: not a valid URL",
        ),
        (
            az_with("client_secret", "  client_secret: a\n  client_secret_file: /x\n"),
            "siem.azure_monitor.client_secret: give either client_secret or client_secret_file",
        ),
        (az_with("scopes", "  scopes: x\n"), "siem.azure_monitor.scopes: unknown key"),
        (
            format!("  url: https://dce.example.com\n{}", az(AZ_OK)),
            "siem.azure_monitor.endpoint: give the endpoint once",
        ),
        (
            format!("  auth:\n    header: \"Authorization: Bearer x\"\n{}", az(AZ_OK)),
            "siem.auth: is not used with platform azure_monitor",
        ),
    ];
    for (siem, want) in cases {
        let out = errors(&siem);
        assert!(out.contains(want), "want {want:?} for:\n{siem}\ngot: {out}");
        assert!(!out.contains("Xq88Q~value"), "no secret in errors: {out}");
    }
}

#[test]
fn an_opensearch_url_is_checked_like_elasticsearch() {
    let (code, out) = check("  url: https://opensearch.example.com:9200/sendauth/_doc\n");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("platform elasticsearch"), "{out}");
    let out = errors("  url: https://opensearch.example.com:9200/SendAuth/_doc\n");
    assert!(
        out.contains("siem.url: \"SendAuth\" is not a valid Elasticsearch index name"),
        "{out}"
    );
}
