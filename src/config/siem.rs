//! The `siem:` section: the endpoint(s), the platform, authentication, TLS and timeouts, and
//! the checks that need the URL and the platform's own section together.
//!
//! Design: [`parse_siem`] reads the keys in a fixed order (the order problems are listed in)
//! and hands each part to a function of its own; the per-platform sections are in
//! `platforms.rs`. Datadog and Azure Monitor are read before the URL, because they can derive it.
//!
//! Invariants:
//! - a URL reaches a problem message only through `redact_url`;
//! - a URL written literally is an inline secret when the platform makes it one (Sumo Logic).

use std::path::PathBuf;
use std::time::Duration;

use serde_yaml::Value;

use super::platforms;
use super::reader::{describe, Node};
use super::values::{is_loopback_host, parse_header};
use crate::secret::Secret;
use crate::sink::settings::{redact_url, Auth, ElasticConfig, Platform, SiemConfig, SplunkConfig, SumoConfig, TlsConfig};

/// The `siem:` section (the top-level `audit:` is added by the caller).
pub(super) fn parse_siem(n: &mut Node) -> Option<SiemConfig> {
    let enabled = n.bool("enabled", true);
    let url_literal = url_is_literal(n);
    let platform = parse_platform(n);
    // `auto` with a Datadog intake URL uses the section too (see `Platform::infer_from_url`).
    let dd_url = names_datadog_intake(n);
    let datadog = platforms::parse_datadog(n, platform == Platform::Datadog || (platform == Platform::Auto && dd_url));
    let azure_monitor = platforms::parse_azure(n, platform == Platform::AzureMonitor);
    let (urls, url_key) = siem_endpoints(n, platform, &datadog, &azure_monitor);
    let url = urls.as_ref().and_then(|u| u.first().cloned());
    let auth = n.child("auth").map_or(Auth::None, parse_auth);
    if platform == Platform::AzureMonitor && auth != Auth::None {
        n.err("auth", "is not used with platform azure_monitor: the agent gets its token with siem.azure_monitor.client_id and client_secret; remove siem.auth");
    }
    let generic = platforms::parse_generic(n);
    let schema = n.choice("schema", crate::schema::Schema::Raw, &crate::schema::Schema::ALL);
    // CIM's data model finds events by a search-time tag on their sourcetype (docs/PLATFORMS.md).
    let default_sourcetype = if schema == crate::schema::Schema::Cim {
        crate::schema::cim::SOURCETYPE
    } else {
        "_json"
    };
    let splunk_hec = platforms::parse_splunk(n, default_sourcetype);
    let elasticsearch = platforms::parse_elastic(n);
    let sumo_logic = platforms::parse_sumo(n);
    let tls = parse_tls(n);
    let timeout = n.duration("timeout", Duration::from_secs(30));
    let connect_timeout = n.duration("connect_timeout", Duration::from_secs(10));
    let allow_plain_http = n.bool("allow_plain_http", false);
    check_plain_http(n, urls.as_deref().unwrap_or_default(), allow_plain_http, url_key);
    if timeout.is_zero() {
        n.err("timeout", "must be greater than 0");
    }
    if let Some(all) = &urls {
        check_endpoints(n, all, platform, &splunk_hec, &elasticsearch, &sumo_logic);
    }
    if let Some(u) = &url {
        check_url_credentials(n, u, platform, datadog.api_key.is_none(), url_literal);
    }
    Some(SiemConfig {
        enabled,
        url: url?,
        urls: urls?,
        platform,
        auth,
        generic,
        splunk_hec,
        elasticsearch,
        sumo_logic,
        datadog,
        azure_monitor,
        tls,
        timeout,
        connect_timeout,
        allow_plain_http,
        schema,
        audit: None,
    })
}

/// Whether `siem.url` is written literally (not through `${VAR}`), looked at before it is read.
fn url_is_literal(n: &Node) -> bool {
    match n.map.get("url") {
        Some(Value::String(s)) => !s.contains("${"),
        Some(Value::Sequence(items)) => items.iter().any(|v| matches!(v, Value::String(s) if !s.contains("${"))),
        _ => false,
    }
}

/// Whether (the first) `siem.url` is a Datadog logs intake, looked at before it is read.
fn names_datadog_intake(n: &Node) -> bool {
    match n.map.get("url") {
        Some(Value::String(s)) => s.trim().trim_end_matches('/').ends_with("/api/v2/logs"),
        Some(Value::Sequence(items)) => {
            matches!(items.first(), Some(Value::String(s)) if s.trim().trim_end_matches('/').ends_with("/api/v2/logs"))
        }
        _ => false,
    }
}

/// `siem.platform`.
fn parse_platform(n: &mut Node) -> Platform {
    n.choice(
        "platform",
        Platform::Auto,
        &[
            ("auto", Platform::Auto),
            ("splunk_hec", Platform::SplunkHec),
            ("elasticsearch", Platform::Elasticsearch),
            ("sumo_logic", Platform::SumoLogic),
            ("generic", Platform::Generic),
            ("datadog", Platform::Datadog),
            ("azure_monitor", Platform::AzureMonitor),
        ],
    )
}

/// The endpoints and the key they were read from: `siem.url`, or, for Datadog and Azure
/// Monitor without it, the URL their own section derives.
fn siem_endpoints(
    n: &mut Node,
    platform: Platform,
    datadog: &crate::sink::settings::DatadogConfig,
    azure_monitor: &crate::sink::settings::AzureMonitorConfig,
) -> (Option<Vec<reqwest::Url>>, &'static str) {
    if n.has("url") || !matches!(platform, Platform::Datadog | Platform::AzureMonitor) {
        if platform == Platform::AzureMonitor && azure_monitor.endpoint.is_some() {
            n.err(
                "azure_monitor.endpoint",
                "give the endpoint once: either siem.url or siem.azure_monitor.endpoint",
            );
        }
        return (parse_siem_urls(n, None), "url");
    }
    match platforms::derived_url(n, platform, datadog, azure_monitor) {
        Some((k, u)) => (parse_siem_urls(n, Some((k, u))), k),
        None => (None, "url"),
    }
}

/// `siem.auth`: `basic` (user name and password) or `header` (a whole header), not both.
fn parse_auth(mut a: Node) -> Auth {
    let has_basic = a.has("basic");
    let has_header = a.has("header") || a.has("header_file");
    let mut auth = Auth::None;
    if has_basic && has_header {
        a.err("", "choose one method: basic or header, not both");
    }
    if let Some(mut b) = a.child("basic") {
        let username = b.required_string("username", "set the basic auth user name");
        let password = b.secret("password");
        if password.is_none() && !b.has_error_under("password") {
            b.err("password", "required; set password (e.g. \"${SIEM_PASSWORD}\") or password_file");
        }
        b.finish();
        if let (Some(username), Some(password)) = (username, password) {
            if username.contains(':') {
                a.err("basic.username", "must not contain ':'");
            } else {
                auth = Auth::Basic { username, password };
            }
        }
    }
    if let Some(h) = a.secret("header") {
        match parse_header(h.expose()) {
            Ok((name, value)) => {
                auth = Auth::Header {
                    name,
                    value: Secret::new(value),
                }
            }
            Err(msg) => a.err("header", msg),
        }
    }
    a.finish();
    auth
}

/// `siem.tls`: files must exist, the client certificate and key come together.
fn parse_tls(n: &mut Node) -> TlsConfig {
    let Some(mut t) = n.child("tls") else {
        return TlsConfig {
            ca_file: None,
            client_cert: None,
            client_key: None,
            min_version: None,
            insecure_skip_verify: false,
        };
    };
    let cfg = TlsConfig {
        ca_file: t.string("ca_file").map(PathBuf::from),
        client_cert: t.string("client_cert").map(PathBuf::from),
        client_key: t.string("client_key").map(PathBuf::from),
        min_version: t.string("min_version"),
        insecure_skip_verify: t.bool("insecure_skip_verify", false),
    };
    if let Some(v) = &cfg.min_version {
        if v != "1.2" && v != "1.3" {
            t.err("min_version", format!("expected \"1.2\" or \"1.3\", got {v:?}"));
        }
    }
    for (k, p) in [
        ("ca_file", &cfg.ca_file),
        ("client_cert", &cfg.client_cert),
        ("client_key", &cfg.client_key),
    ] {
        if let Some(p) = p {
            if !p.is_file() {
                t.err(k, format!("file {} does not exist or is not readable", p.display()));
            }
        }
    }
    if cfg.client_cert.is_some() != cfg.client_key.is_some() {
        t.err("client_cert", "client_cert and client_key go together; set both for mTLS");
    }
    t.finish();
    cfg
}

/// Plain `http://` only to loopback, unless `siem.allow_plain_http` says otherwise.
fn check_plain_http(n: &mut Node, urls: &[reqwest::Url], allow_plain_http: bool, url_key: &str) {
    if urls
        .iter()
        .any(|u| u.scheme() == "http" && !allow_plain_http && !is_loopback_host(u))
    {
        n.err(
            url_key,
            "plain http:// to a non-loopback host would send events and credentials unencrypted; use https:// or set siem.allow_plain_http: true",
        );
    }
}

/// A list of endpoints is one SIEM's nodes: with `auto` they must look like one platform, and
/// each must suit the platform (`platforms::check_platform`).
fn check_endpoints(n: &mut Node, all: &[reqwest::Url], platform: Platform, splunk: &SplunkConfig, es: &ElasticConfig, sumo: &SumoConfig) {
    if platform == Platform::Auto && all.len() > 1 {
        let first = Platform::infer_from_url(&all[0]);
        if let Some(other) = all.iter().find(|u| Platform::infer_from_url(u) != first) {
            n.err(
                "url",
                format!(
                    "the endpoints look like different platforms ({} is {}, {} is {}); a list is several nodes of one SIEM: set siem.platform, or use the same path on every endpoint",
                    redact_url(&all[0], first),
                    first.as_str(),
                    redact_url(other, Platform::infer_from_url(other)),
                    Platform::infer_from_url(other).as_str()
                ),
            );
        }
    }
    let before = n.problem_count();
    for u in all {
        platforms::check_platform(n, u, platform, splunk, es, sumo);
        if n.problem_count() > before {
            // One endpoint's problem is usually every endpoint's: say it once.
            break;
        }
    }
}

/// What the URL itself implies: the Datadog intake needs an API key, and a Sumo Logic HTTP
/// Source URL is its credential (an inline secret when written literally).
fn check_url_credentials(n: &mut Node, u: &reqwest::Url, platform: Platform, no_datadog_key: bool, url_literal: bool) {
    if platform == Platform::Auto
        && Platform::infer_from_url(u) == Platform::Datadog
        && no_datadog_key
        && !n.has_error_under("datadog.api_key")
    {
        n.err(
            "datadog.api_key",
            "required for the Datadog intake; set api_key: \"${DD_API_KEY}\" or api_key_file",
        );
    }
    let sumo = platform == Platform::SumoLogic || (platform == Platform::Auto && Platform::infer_from_url(u) == Platform::SumoLogic);
    if sumo && url_literal {
        n.note_inline_secret("url");
    }
}

/// `siem.url`: one URL, or a list of URLs of the same SIEM (its nodes). A list must be
/// non-empty, without duplicates, and use one scheme; each URL must be valid on its own.
/// `derived`: the URL a platform's own section gives (key, URL) when `siem.url` is unset.
fn parse_siem_urls(n: &mut Node, derived: Option<(&str, String)>) -> Option<Vec<reqwest::Url>> {
    let raw = raw_urls(n, derived)?;
    let mut urls = Vec::new();
    let mut ok = true;
    for (key, s) in raw {
        let Some(s) = s else {
            ok = false;
            continue;
        };
        match reqwest::Url::parse(s.trim()) {
            Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {
                if u.host_str().is_none() {
                    n.err(&key, "has no host; expected e.g. https://siem.company.com/collector");
                    ok = false;
                } else {
                    urls.push(u);
                }
            }
            Ok(u) => {
                n.err(
                    &key,
                    format!("scheme {:?} is not supported; use https:// (or http:// on loopback)", u.scheme()),
                );
                ok = false;
            }
            Err(e) => {
                n.err(
                    &key,
                    format!("not a valid URL ({e}); expected e.g. https://siem.company.com/collector"),
                );
                ok = false;
            }
        }
    }
    if !ok {
        return None;
    }
    for (i, u) in urls.iter().enumerate() {
        if let Some(j) = urls[..i].iter().position(|v| v == u) {
            n.err(
                &format!("url[{i}]"),
                format!(
                    "is the same endpoint as url[{j}] ({}); list each endpoint once",
                    redact_url(u, Platform::infer_from_url(u))
                ),
            );
            return None;
        }
    }
    if urls.iter().any(|u| u.scheme() != urls[0].scheme()) {
        n.err(
            "url",
            "mixes http:// and https:// endpoints; one SIEM's endpoints share one scheme (use https:// for all)",
        );
        return None;
    }
    Some(urls)
}

/// The URL texts with the key each came from (`url`, `url[1]`, `datadog.site` ...); `None`
/// when a problem was recorded, an entry's text `None` when that entry has one.
fn raw_urls(n: &mut Node, derived: Option<(&str, String)>) -> Option<Vec<(String, Option<String>)>> {
    let hint = "set siem.url to your SIEM's HTTP(S) endpoint";
    Some(match n.map.get("url") {
        _ if derived.is_some() => {
            let (k, u) = derived.expect("guarded");
            vec![(k.to_string(), Some(u))]
        }
        Some(Value::Sequence(items)) => {
            let items = items.clone();
            n.map.remove("url");
            if items.is_empty() {
                n.err(
                    "url",
                    "is an empty list; give one URL, or a list of the SIEM's endpoints like [https://es1:9200/sendauth/_doc, https://es2:9200/sendauth/_doc]",
                );
                return None;
            }
            let mut out = Vec::new();
            for (i, item) in items.into_iter().enumerate() {
                let key = format!("url[{i}]");
                match item {
                    Value::String(s) => {
                        let v = n.expand(&key, &s);
                        out.push((key, v));
                    }
                    other => {
                        n.err(&key, format!("expected a URL, got {}", describe(&other)));
                        out.push((key, None));
                    }
                }
            }
            out
        }
        _ => vec![("url".to_string(), n.required_string("url", hint))],
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{env, MINIMAL};
    use crate::settings::Config;
    use crate::sink::settings::Platform;

    #[test]
    fn header_with_crlf_is_rejected() {
        let text = MINIMAL.replace(
            "  url: https://siem.example.com/collector\n",
            "  url: https://siem.example.com/collector\n  auth:\n    header: \"X-API-Key: a\\r\\nEvil: b\"\n",
        );
        let e = Config::parse_with_env(&text, &env).unwrap_err().to_string();
        assert!(e.contains("siem.auth.header: must not contain CR or LF"), "{e}");
    }

    #[test]
    fn plain_http_only_on_loopback() {
        let text = MINIMAL.replace("https://siem.example.com", "http://siem.example.com");
        let e = Config::parse_with_env(&text, &env).unwrap_err().to_string();
        assert!(e.contains("siem.url: plain http://"), "{e}");
        let ok = MINIMAL.replace("https://siem.example.com", "http://127.0.0.1:9000");
        Config::parse_with_env(&ok, &env).unwrap();
    }

    #[test]
    fn siem_url_may_list_the_endpoints_of_one_siem() {
        let with = |url: &str| MINIMAL.replace("url: https://siem.example.com/collector", &format!("url: {url}"));
        let c = Config::parse_with_env(&with("https://siem.example.com/collector"), &env).unwrap();
        assert_eq!(c.siem.urls, std::slice::from_ref(&c.siem.url), "one URL is a list of one");
        let list = "[\"https://es1:9200/sendauth/_doc\", \"https://es2:9200/sendauth/_doc\"]";
        let c = Config::parse_with_env(&with(list), &env).unwrap();
        assert_eq!(c.siem.urls.len(), 2);
        assert_eq!(c.siem.url.as_str(), "https://es1:9200/sendauth/_doc");
        assert_eq!(c.siem.effective_platform(), Platform::Elasticsearch);
        let block = MINIMAL.replace(
            "  url: https://siem.example.com/collector\n",
            "  url:\n    - https://s1:8088/services/collector/event\n    - https://s2:8088/services/collector/event\n",
        );
        let c = Config::parse_with_env(&block, &env).unwrap();
        assert_eq!(c.siem.urls[1].host_str(), Some("s2"));
        let err = |url: &str| Config::parse_with_env(&with(url), &env).unwrap_err().to_string();
        let e = err("[]");
        assert!(e.starts_with("siem.url: is an empty list; give one URL"), "{e}");
        let e = err("[https://a.example.com/c, https://b.example.com/c, https://a.example.com/c]");
        assert!(
            e.contains("siem.url[2]: is the same endpoint as url[0] (https://a.example.com/c)"),
            "{e}"
        );
        let e = err("[https://a.example.com/c, \"http://127.0.0.1:9/c\"]");
        assert!(e.contains("siem.url: mixes http:// and https://"), "{e}");
        let e = err("[https://a.example.com/c, \"not a url\"]");
        assert!(e.contains("siem.url[1]: not a valid URL"), "{e}");
        let e = err("[https://a.example.com/c, ftp://b.example.com/c]");
        assert!(e.contains("siem.url[1]: scheme \"ftp\" is not supported"), "{e}");
        let e = err("[https://a.example.com/c, [x]]");
        assert!(e.contains("siem.url[1]: expected a URL, got a list"), "{e}");
        let e = err("[https://a.example.com/c, \"${UNSET_URL}\"]");
        assert!(e.contains("siem.url[1]:"), "{e}");
        let e = err("[https://s1:8088/services/collector/event, https://es1:9200/sendauth/_doc]");
        assert!(
            e.contains("the endpoints look like different platforms (https://s1:8088/services/collector/event is splunk_hec"),
            "{e}"
        );
        let e = err("[\"http://127.0.0.1:9/c\", \"http://siem.example.com/c\"]");
        assert!(e.contains("siem.url: plain http://"), "{e}");
        // Each endpoint is checked against the platform (here: the raw HEC endpoint).
        let e = err("[https://s1:8088/services/collector/event, https://s2:8088/services/collector/raw]");
        assert!(e.contains("siem.url: points at the HEC raw endpoint"), "{e}");
    }
}
