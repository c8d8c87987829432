//! Per-platform figures: N events (default 100,000) through the real agent into each SIEM
//! emulator, on 127.0.0.1. For each platform and gzip setting it prints events/s, the number of
//! ingest requests, and the bytes on the wire (request bodies as sent) against the bodies before
//! compression.
//!
//! ```text
//! cargo build --release
//! cargo run --release -p sendauth-siem-emulators --example platform_figures   # 100000 events per run
//! cargo run --release -p sendauth-siem-emulators --example platform_figures -- 20000 splunk
//! ```
//!
//! The agent is the release binary next to this example (`target/release/sendauth-siem`, or
//! `$SENDAUTH_SIEM_BIN`). The events are written to the file source before the agent starts, so
//! the time is end to end: start, tail, validate, queue with fsync, batch, encode, send, and the
//! SIEM's answer, until the emulator holds the last event. The emulators run in this process on
//! the same 2 cores, parse every request and keep everything they accept, so the figures are a
//! floor for the agent, not a SIEM benchmark.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sendauth_siem_emulators::{Emulator, EmulatorConfig, Kind};

struct Scenario {
    name: &'static str,
    kind: Kind,
    /// Lines under `siem:`; `{URL}` becomes the emulator's URL.
    siem: &'static str,
    /// Adjusts the emulator (e.g. the OpenSearch flavour).
    emulator: fn(&mut EmulatorConfig),
    /// Path prefix of the requests that carry events.
    ingest: &'static str,
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "splunk_hec",
        kind: Kind::SplunkHec,
        siem: "  splunk_hec:\n    index: sendauth\n    gzip: false\n",
        emulator: same,
        ingest: "/services/collector/event",
    },
    Scenario {
        name: "splunk_hec+gzip",
        kind: Kind::SplunkHec,
        siem: "  splunk_hec:\n    index: sendauth\n    gzip: true\n",
        emulator: same,
        ingest: "/services/collector/event",
    },
    Scenario {
        name: "elasticsearch",
        kind: Kind::Elasticsearch,
        siem: "  elasticsearch:\n    gzip: false\n",
        emulator: same,
        ingest: "/_bulk",
    },
    Scenario {
        name: "elasticsearch+gzip",
        kind: Kind::Elasticsearch,
        siem: "  elasticsearch:\n    gzip: true\n",
        emulator: same,
        ingest: "/_bulk",
    },
    Scenario {
        name: "sumo_logic",
        kind: Kind::SumoLogic,
        siem: "  sumo_logic:\n    category: security/sendauth\n    gzip: false\n",
        emulator: same,
        ingest: "/receiver/v1/http",
    },
    Scenario {
        name: "sumo_logic+gzip",
        kind: Kind::SumoLogic,
        siem: "  sumo_logic:\n    category: security/sendauth\n    gzip: true\n",
        emulator: same,
        ingest: "/receiver/v1/http",
    },
    Scenario {
        name: "generic ndjson",
        kind: Kind::Generic,
        siem: "  generic:\n    batch: ndjson\n    gzip: false\n",
        emulator: same,
        ingest: "/collector",
    },
    Scenario {
        name: "generic ndjson+gzip",
        kind: Kind::Generic,
        siem: "  generic:\n    batch: ndjson\n    gzip: true\n",
        emulator: same,
        ingest: "/collector",
    },
    Scenario {
        name: "generic json_array",
        kind: Kind::Generic,
        siem: "  generic:\n    batch: json_array\n    gzip: false\n",
        emulator: same,
        ingest: "/collector",
    },
    Scenario {
        name: "generic json_array+gzip",
        kind: Kind::Generic,
        siem: "  generic:\n    batch: json_array\n    gzip: true\n",
        emulator: same,
        ingest: "/collector",
    },
    Scenario {
        name: "generic none (default)",
        kind: Kind::Generic,
        siem: "  generic:\n    batch: none\n",
        emulator: same,
        ingest: "/collector",
    },
    Scenario {
        name: "opensearch",
        kind: Kind::Elasticsearch,
        siem: "  elasticsearch:\n    gzip: false\n",
        emulator: opensearch,
        ingest: "/_bulk",
    },
    Scenario {
        name: "opensearch+gzip",
        kind: Kind::Elasticsearch,
        siem: "  elasticsearch:\n    gzip: true\n",
        emulator: opensearch,
        ingest: "/_bulk",
    },
    Scenario {
        name: "datadog",
        kind: Kind::Datadog,
        siem: "  platform: datadog\n  datadog:\n    api_key: 0123456789abcdef0123456789abcdef\n    ddtags: env:prod\n    gzip: false\n",
        emulator: same,
        ingest: "/api/v2/logs",
    },
    Scenario {
        name: "datadog+gzip",
        kind: Kind::Datadog,
        siem: "  platform: datadog\n  datadog:\n    api_key: 0123456789abcdef0123456789abcdef\n    ddtags: env:prod\n    gzip: true\n",
        emulator: same,
        ingest: "/api/v2/logs",
    },
    Scenario {
        name: "azure_monitor",
        kind: Kind::AzureMonitor,
        siem: AZURE_PLAIN,
        emulator: same,
        ingest: "/dataCollectionRules/",
    },
    Scenario {
        name: "azure_monitor+gzip",
        kind: Kind::AzureMonitor,
        siem: AZURE_GZIP,
        emulator: same,
        ingest: "/dataCollectionRules/",
    },
];

fn same(_: &mut EmulatorConfig) {}

fn opensearch(c: &mut EmulatorConfig) {
    c.es_opensearch = true;
}

/// The emulator's default app, DCR and stream (`EmulatorConfig::new(Kind::AzureMonitor)`).
const AZURE_PLAIN: &str = "  platform: azure_monitor\n  azure_monitor:\n    dcr_immutable_id: dcr-00000000000000000000000000000000\n    stream: Custom-SendAuthEvents\n    tenant_id: 72f988bf-86f1-41af-91ab-2d7cd011db47\n    client_id: 8f3e5a1c-0c2b-4d7e-9a61-5b0c2f9d7e11\n    client_secret: Xq88Q~emulatorSecretValue.abc123\n    authority_host: {URL}\n    gzip: false\n";
const AZURE_GZIP: &str = "  platform: azure_monitor\n  azure_monitor:\n    dcr_immutable_id: dcr-00000000000000000000000000000000\n    stream: Custom-SendAuthEvents\n    tenant_id: 72f988bf-86f1-41af-91ab-2d7cd011db47\n    client_id: 8f3e5a1c-0c2b-4d7e-9a61-5b0c2f9d7e11\n    client_secret: Xq88Q~emulatorSecretValue.abc123\n    authority_host: {URL}\n    gzip: true\n";

/// A realistic mix of the four event types (verified events carry an IP and a location).
fn event(i: usize) -> String {
    let ts = format!("2025-01-28T10:{:02}:{:02}.{:03}Z", (i / 60_000) % 60, (i / 1000) % 60, i % 1000);
    let common = format!(r#""timestamp":"{ts}","transaction_id":"tx-{i:08}","org_id":"org-{}""#, i % 7);
    match i % 4 {
        0 => format!(
            r#"{{"event_type":"transaction.created",{common},"requestor":"app-{}","subject":"user{}@company.com","context":{{"action":"login"}}}}"#,
            i % 5,
            i % 997
        ),
        1 => format!(
            r#"{{"event_type":"transaction.verified",{common},"subject":"user{}@company.com","ip_address":"203.0.113.{}","location":{{"city":"San Francisco","region":"California","country":"US"}}}}"#,
            i % 997,
            i % 250
        ),
        2 => format!(
            r#"{{"event_type":"transaction.denied",{common},"subject":"user{}@company.com","ip_address":"198.51.100.{}"}}"#,
            i % 997,
            i % 250
        ),
        _ => format!(r#"{{"event_type":"transaction.expired",{common}}}"#),
    }
}

fn agent_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("SENDAUTH_SIEM_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("own path");
    // target/<profile>/examples/platform_figures -> target/<profile>/sendauth-siem
    exe.parent().and_then(|d| d.parent()).expect("target dir").join("sendauth-siem")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Figures {
    secs: f64,
    requests: usize,
    wire: usize,
    raw: usize,
}

async fn run(s: &Scenario, n: usize, lines: &str) -> Figures {
    let mut cfg = EmulatorConfig::new(s.kind);
    (s.emulator)(&mut cfg);
    let emu = Emulator::start(cfg).await.expect("start the emulator");
    let dir = tempfile::Builder::new().prefix("siem-figures").tempdir().unwrap();
    let events = dir.path().join("events.jsonl");
    std::fs::write(&events, lines).unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "siem:\n  url: {}\n{}sources:\n  file:\n    path: {}\nqueue:\n  path: {}\nstatus:\n  listen: 127.0.0.1:{}\nlog:\n  level: warn\n",
            emu.url(),
            s.siem.replace("{URL}", &emu.url()),
            events.display(),
            dir.path().join("queue").display(),
            free_port()
        ),
    )
    .unwrap();
    let started = Instant::now();
    let mut agent = Command::new(agent_binary())
        .arg("run")
        .arg("--config")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("start the agent (build it first: cargo build --release)");
    let done = emu.wait_for_events(n, Duration::from_secs(600)).await;
    let secs = started.elapsed().as_secs_f64();
    // SAFETY: signalling the child this function started.
    unsafe {
        libc::kill(agent.id() as i32, libc::SIGTERM);
    }
    let _ = agent.wait();
    assert!(done, "{}: only {} of {n} events arrived", s.name, emu.event_count());
    assert_eq!(emu.event_count(), n, "{}: every event exactly once", s.name);
    let reqs: Vec<_> = emu
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path.starts_with(s.ingest))
        .collect();
    assert!(reqs.iter().all(|r| (200..300).contains(&r.status)), "{}: a request failed", s.name);
    Figures {
        secs,
        requests: reqs.len(),
        wire: reqs.iter().map(|r| r.wire_bytes).sum(),
        raw: reqs.iter().map(|r| r.body.len()).sum(),
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map(|a| a.parse().expect("N events")).unwrap_or(100_000);
    let filter = args.next();
    let lines: String = (0..n).map(|i| event(i) + "\n").collect();
    println!(
        "{n} events ({:.0} bytes each on average), agent {}",
        lines.len() as f64 / n as f64,
        agent_binary().display()
    );
    println!(
        "| {:<24} | {:>9} | {:>8} | {:>9} | {:>13} | {:>13} | {:>6} |",
        "platform", "events/s", "seconds", "requests", "wire bytes", "raw bytes", "ratio"
    );
    println!(
        "|{:-<26}|{:->11}|{:->10}|{:->11}|{:->15}|{:->15}|{:->8}|",
        "", "", "", "", "", "", ""
    );
    for s in SCENARIOS {
        if filter.as_deref().is_some_and(|f| !s.name.contains(f)) {
            continue;
        }
        let f = run(s, n, &lines).await;
        println!(
            "| {:<24} | {:>9.0} | {:>8.2} | {:>9} | {:>13} | {:>13} | {:>6.3} |",
            s.name,
            n as f64 / f.secs,
            f.secs,
            f.requests,
            f.wire,
            f.raw,
            f.wire as f64 / f.raw as f64
        );
    }
}
