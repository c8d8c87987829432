//! `sendauth-siem demo`: the embedded default. Runs the real agent (same code as `run`) in a
//! temporary directory against the built-in generic SIEM emulator, appends sample events of all
//! four types to a JSONL file (plus one malformed line, to show the quarantine, and one written
//! in two halves, to show that a partial line waits for its newline), and prints each event as
//! the emulator receives it.

use std::io::Write;
use std::time::Duration;

use anyhow::Context;

use crate::agent::Agent;
use crate::config::Config;
use crate::emulator::{Emulator, EmulatorConfig, ExpectedAuth, Kind};

const TYPES: [&str; 4] = [
    "transaction.created",
    "transaction.verified",
    "transaction.denied",
    "transaction.expired",
];

/// A realistic sample event of type `TYPES[i % 4]`.
pub fn sample_event(i: usize) -> String {
    let ts = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let tx = format!("tx-{:08}", i);
    match i % 4 {
        0 => format!(
            r#"{{"event_type":"{}","timestamp":"{ts}","transaction_id":"{tx}","requestor":"admin@company.com","subject":"user{}@company.com","context":"AWS Console Access","org_id":"org-demo"}}"#,
            TYPES[0],
            i % 7
        ),
        1 => format!(
            r#"{{"event_type":"{}","timestamp":"{ts}","transaction_id":"{tx}","subject":"user{}@company.com","ip_address":"203.0.113.{}","location":{{"city":"San Francisco","region":"California","country":"US"}},"org_id":"org-demo"}}"#,
            TYPES[1],
            i % 7,
            i % 250
        ),
        2 => format!(
            r#"{{"event_type":"{}","timestamp":"{ts}","transaction_id":"{tx}","subject":"user{}@company.com","ip_address":"198.51.100.{}","org_id":"org-demo"}}"#,
            TYPES[2],
            i % 7,
            i % 250
        ),
        _ => format!(
            r#"{{"event_type":"{}","timestamp":"{ts}","transaction_id":"{tx}","org_id":"org-demo"}}"#,
            TYPES[3]
        ),
    }
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

pub async fn run(n: usize) -> anyhow::Result<()> {
    let n = n.max(2);
    let dir = tempfile::Builder::new().prefix("sendauth-siem-demo").tempdir()?;
    let mut ecfg = EmulatorConfig::new(Kind::Generic);
    ecfg.auth = ExpectedAuth::Header {
        name: "Authorization".into(),
        value: "Bearer demo-token".into(),
    };
    let emu = Emulator::start(ecfg).await.context("cannot start the built-in SIEM emulator")?;
    let events_path = dir.path().join("events.jsonl");
    let port = free_port()?;
    let yaml = format!(
        "siem:\n  url: {url}\n  auth:\n    header: \"Authorization: Bearer demo-token\"\n  generic:\n    batch: none\nsources:\n  file: {{ path: {file}, start_at: beginning, poll_interval: 100ms }}\n  socket: {{ path: {sock} }}\nqueue:\n  path: {queue}\ndelivery:\n  initial_backoff: 200ms\n  max_backoff: 2s\nstatus:\n  listen: 127.0.0.1:{port}\nlog:\n  level: warn\n",
        url = emu.url(),
        file = events_path.display(),
        sock = dir.path().join("siem.sock").display(),
        queue = dir.path().join("queue").display(),
    );
    let config_path = dir.path().join("config.yaml");
    std::fs::write(&config_path, &yaml)?;
    let cfg = Config::load(&config_path).map_err(|e| anyhow::anyhow!("demo config invalid: {e}"))?;

    println!("sendauth-siem demo");
    println!("  working dir : {}", dir.path().display());
    println!("  event file  : {}", events_path.display());
    println!("  SIEM        : built-in generic JSON emulator at {}", emu.url());
    println!("  status      : http://127.0.0.1:{port}/status  (and / for the status page)\n");

    let agent = Agent::start(config_path, cfg, None).await?;
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&events_path)?;
    let mut seen = 0usize;
    let mut written = 0usize;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    for i in 0..n {
        let line = sample_event(i);
        if i == 1 {
            // Written in two halves: the agent holds the first half until the newline arrives.
            let (a, b) = line.split_at(line.len() / 2);
            file.write_all(a.as_bytes())?;
            file.flush()?;
            tokio::time::sleep(Duration::from_millis(150)).await;
            println!("  (wrote half a line; the agent waits for its newline)");
            file.write_all(b.as_bytes())?;
            file.write_all(b"\n")?;
        } else {
            writeln!(file, "{line}")?;
        }
        written += 1;
        if i == n / 2 {
            writeln!(file, "{{\"event_type\":\"transaction.denied\",\"timestamp\":\"not-a-time\"}}")?;
            println!("  (wrote one malformed line: it goes to the quarantine, never to the SIEM)");
        }
        file.flush()?;
        // Show arrivals as they happen.
        while seen < written && emu.wait_for_events(seen + 1, Duration::from_millis(300)).await {
            let evs = emu.events();
            for e in &evs[seen..] {
                println!(
                    "  -> SIEM received #{:<3} {:<22} {}  {}",
                    seen + 1,
                    e["event_type"].as_str().unwrap_or("?"),
                    e["transaction_id"].as_str().unwrap_or("?"),
                    e["subject"].as_str().unwrap_or("")
                );
                seen += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    while seen < n && tokio::time::Instant::now() < deadline {
        if emu.wait_for_events(seen + 1, Duration::from_secs(1)).await {
            let evs = emu.events();
            for e in &evs[seen..] {
                println!(
                    "  -> SIEM received #{:<3} {:<22} {}",
                    seen + 1,
                    e["event_type"].as_str().unwrap_or("?"),
                    e["transaction_id"].as_str().unwrap_or("?")
                );
                seen += 1;
            }
        }
    }
    // Let the quarantine commit land in status.
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while agent.status.queue().counts().quarantine == 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let s = agent.status.snapshot();
    println!(
        "\nStatus: state={} pending={} quarantine={} dead_letter={}",
        s["state"], s["queue"]["pending"], s["quarantine"]["count"], s["dead_letter"]["count"]
    );
    if let Ok(q) = agent.status.queue().list_quarantine(5) {
        for e in q {
            println!("  quarantined: {} — {}", e.meta.origin, e.meta.reason);
        }
    }
    agent.stop().await;
    emu.stop().await;
    if seen == n {
        println!("\nDemo complete: {n} of {n} events delivered in order; the malformed line was quarantined.");
        Ok(())
    } else {
        anyhow::bail!("only {seen} of {n} events arrived at the emulator within 60 s")
    }
}
