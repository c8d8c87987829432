//! `sendauth-siem demo`: the embedded default. Runs the real agent (same code as `run`) in a
//! temporary directory against a small built-in generic JSON receiver ([`receiver`]), appends
//! sample events of all four types to a JSONL file (plus one malformed line, to show the
//! quarantine, and one written in two halves, to show that a partial line waits for its
//! newline), and prints each event as the receiver gets it. Halfway, the SIEM goes down (it answers 503): the events written
//! meanwhile wait on disk, status turns `error`, and when the SIEM comes back they all arrive,
//! in order. That is the product's main promise, shown rather than told. `--keep` leaves the
//! agent and the receiver running afterwards, with the status page open, until Ctrl-C.

mod receiver;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

use crate::agent::Agent;
use crate::config::Config;
use crate::status::{State, StatusDoc};
use receiver::DemoReceiver;

const TYPES: [&str; 4] = [
    "transaction.created",
    "transaction.verified",
    "transaction.denied",
    "transaction.expired",
];

/// A realistic sample event of type `TYPES[i % 4]`.
pub(crate) fn sample_event(i: usize) -> String {
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

/// Prints the events the receiver got since `seen` (updating it).
fn print_arrivals(emu: &DemoReceiver, seen: &mut usize) {
    let evs = emu.events();
    for e in evs.iter().skip(*seen) {
        println!(
            "  -> SIEM received #{:<3} {:<22} {}  {}",
            *seen + 1,
            e["event_type"].as_str().unwrap_or("?"),
            e["transaction_id"].as_str().unwrap_or("?"),
            e["subject"].as_str().unwrap_or("")
        );
        *seen += 1;
    }
}

/// Waits (up to `limit`) until the receiver has `want` events, printing them as they come.
async fn show_arrivals(emu: &DemoReceiver, seen: &mut usize, want: usize, limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    while *seen < want && tokio::time::Instant::now() < deadline {
        emu.wait_for_events(*seen + 1, Duration::from_millis(300)).await;
        print_arrivals(emu, seen);
    }
}

/// Waits (up to 10 s) until the agent's status satisfies `pred`.
async fn wait_status(agent: &Agent, pred: impl Fn(&StatusDoc) -> bool) -> StatusDoc {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let s = agent.status.snapshot();
        if pred(&s) || tokio::time::Instant::now() >= deadline {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn run(n: usize, keep: bool) -> anyhow::Result<()> {
    let n = n.max(4);
    let dir = tempfile::Builder::new().prefix("sendauth-siem-demo").tempdir()?;
    let emu = DemoReceiver::start("demo-token")
        .await
        .context("cannot start the demo's built-in SIEM receiver on 127.0.0.1")?;
    let port = free_port()?;
    let (config_path, events_path, cfg) = write_config(dir.path(), &emu.url(), port)?;

    println!("sendauth-siem demo");
    println!("  working dir : {}", dir.path().display());
    println!("  event file  : {}", events_path.display());
    println!("  SIEM        : built-in generic JSON receiver at {}", emu.url());
    if keep {
        println!("  status page : http://127.0.0.1:{port}/  (stays up after the demo: --keep)\n");
    } else {
        println!("  status page : http://127.0.0.1:{port}/  (open while the demo runs; add --keep to keep it up)\n");
    }

    let agent = Agent::start(config_path, cfg, None).await?;
    // The outage covers the third quarter of the events.
    let (down_at, up_at) = (n / 2, n * 3 / 4);
    let mut seen = 0usize;
    let result = match write_events(&agent, &emu, &events_path, n, (down_at, up_at), &mut seen).await {
        Ok(()) => summarize(&agent, &emu, n, seen, up_at - down_at).await,
        Err(e) => Err(e),
    };
    if keep && result.is_ok() {
        keep_running(&emu, &mut seen, port, &events_path).await;
    }
    agent.stop().await;
    emu.stop().await;
    result
}

/// Writes the demo's config into `dir`: the file and socket sources, the queue, the receiver at
/// `url`, the status page on `port`. Returns the config's path, the event file's, and the
/// config as loaded (the same path a user's config takes).
fn write_config(dir: &Path, url: &str, port: u16) -> anyhow::Result<(PathBuf, PathBuf, Config)> {
    let events_path = dir.join("events.jsonl");
    let yaml = format!(
        "siem:\n  url: {url}\n  auth:\n    header: \"Authorization: Bearer demo-token\"\n  generic:\n    batch: none\nsources:\n  file: {{ path: {file}, start_at: beginning, poll_interval: 100ms }}\n  socket: {{ path: {sock} }}\nqueue:\n  path: {queue}\ndelivery:\n  initial_backoff: 200ms\n  max_backoff: 1s\n  max_in_flight: 1\nstatus:\n  listen: 127.0.0.1:{port}\nlog:\n  level: warn\n",
        file = events_path.display(),
        sock = dir.join("siem.sock").display(),
        queue = dir.join("queue").display(),
    );
    let config_path = dir.join("config.yaml");
    std::fs::write(&config_path, &yaml)?;
    let cfg = Config::load(&config_path).map_err(|e| anyhow::anyhow!("demo config invalid: {e}"))?;
    Ok((config_path, events_path, cfg))
}

/// Appends the `n` sample events (one split in two writes, one malformed line) and shows them
/// arriving; between `outage.0` and `outage.1` the receiver is down.
async fn write_events(
    agent: &Agent,
    emu: &DemoReceiver,
    events_path: &Path,
    n: usize,
    outage: (usize, usize),
    seen: &mut usize,
) -> anyhow::Result<()> {
    let (down_at, up_at) = outage;
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(events_path)?;
    for i in 0..n {
        if i == down_at {
            emu.set_down(true);
            println!("\n  !! The SIEM goes down: it answers 503 to everything from now on.\n");
        }
        if i == up_at {
            let s = wait_status(agent, |s| s.state == State::Error && s.queue.pending >= (up_at - down_at) as u64).await;
            println!(
                "\n  Status now: state={:?}, {} event(s) waiting on disk in the queue, last error: {}",
                s.state.as_str(),
                s.queue.pending,
                s.last_error.as_ref().map_or("?", |e| e.message.as_str())
            );
            println!("  Nothing is lost: the agent keeps them and retries with backoff.\n");
            emu.set_down(false);
            println!("  !! The SIEM is back. The waiting events go out, in order:\n");
        }
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
        if i == n / 4 {
            writeln!(
                file,
                "{{\"event_type\":\"transaction.denied\",\"timestamp\":\"not-a-time\",\"transaction_id\":\"tx-bad\",\"org_id\":\"org-demo\"}}"
            )?;
            println!("  (wrote one malformed line: it goes to the quarantine, never to the SIEM)");
        }
        file.flush()?;
        if (down_at..up_at).contains(&i) {
            println!("  .. written  #{:<3} (the SIEM is down: it waits on disk)", i + 1);
            tokio::time::sleep(Duration::from_millis(150)).await;
        } else {
            // Show arrivals as they happen (all earlier ones first, after the outage).
            show_arrivals(emu, seen, i + 1, Duration::from_secs(30)).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    show_arrivals(emu, seen, n, Duration::from_secs(60)).await;
    Ok(())
}

/// The demo's verdict: every event arrived, in order, and the malformed line is quarantined.
async fn summarize(agent: &Agent, emu: &DemoReceiver, n: usize, seen: usize, during_outage: usize) -> anyhow::Result<()> {
    // Let the quarantine commit land in status.
    let s = wait_status(agent, |s| s.quarantine.count == 1 && s.queue.pending == 0).await;
    println!(
        "\nStatus: state={:?} pending={} quarantine={} dead_letter={}",
        s.state.as_str(),
        s.queue.pending,
        s.quarantine.count,
        s.dead_letter.count
    );
    if let Ok(q) = agent.queue.list_quarantine(5) {
        for e in q {
            println!("  quarantined: {} — {}", e.meta.origin, e.meta.reason);
        }
    }
    let in_order = emu
        .events()
        .iter()
        .map(|e| e["transaction_id"].as_str().unwrap_or("").to_string())
        .eq((0..n).map(|i| format!("tx-{i:08}")));
    if seen == n && in_order {
        println!(
            "\nDemo complete: {n} of {n} events delivered in order, {} of them after a SIEM outage; the malformed line was quarantined.",
            during_outage
        );
        Ok(())
    } else {
        Err(anyhow::anyhow!(
            "only {seen} of {n} events arrived at the receiver (in order: {in_order})"
        ))
    }
}

/// `--keep`: the agent and the receiver stay up, arrivals are printed, until Ctrl-C.
async fn keep_running(emu: &DemoReceiver, seen: &mut usize, port: u16, events_path: &Path) {
    println!(
        "\nStill running (--keep): status page http://127.0.0.1:{port}/ ; append events to {} to see them arrive. Press Ctrl-C to stop.",
        events_path.display()
    );
    let mut tail = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = tail.tick() => print_arrivals(emu, seen),
        }
    }
    println!("stopping");
}
