//! `/metrics` through the real binary: the exposition passes `promtool check metrics` (the
//! Prometheus project's own linter, Debian package `prometheus`), and carries what an alert
//! needs: build details, the standard `process_*` figures and the time of the last success.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use common::*;
use sendauth_siem_emulators::{Emulator, EmulatorConfig, Fault, Kind};

/// `promtool check metrics` on `text`: `Ok(())`, `Err(what it said)`, or `None` when promtool is
/// not installed (CI installs it: there, a missing promtool fails the test).
fn promtool(text: &str) -> Option<Result<(), String>> {
    let mut child = match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(_) if std::env::var_os("CI").is_none() => return None,
        Err(e) => panic!("promtool is needed in CI (apt-get install prometheus): {e}"),
    };
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    Some(if out.status.success() && said.trim().is_empty() {
        Ok(())
    } else {
        Err(said)
    })
}

fn sample(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.strip_prefix(' ')?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_pass_promtool_and_carry_build_process_and_last_success_figures() {
    let emu = Emulator::start(EmulatorConfig::new(Kind::Generic)).await.unwrap();
    let env = TestEnv::new();
    env.write_config(&Cfg::new(&emu.url()));
    let started = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
    let agent = AgentProc::start(&env).await;

    // Before the first success: the timestamp is 0, and the text is already clean.
    let (_, before) = get(agent.port, "/metrics").await.unwrap();
    assert_eq!(
        sample(&before, "sendauth_siem_last_success_timestamp_seconds"),
        Some(0.0),
        "{before}"
    );
    if let Some(r) = promtool(&before) {
        r.unwrap_or_else(|e| panic!("promtool check metrics (idle agent):\n{e}\n{before}"));
    }

    // A failure, then deliveries, then a rejected line: every family has samples.
    emu.push_fault(Fault::Status {
        code: 503,
        body: String::new(),
        headers: vec![],
    });
    env.append(&(0..10).map(event).collect::<Vec<_>>());
    std::fs::OpenOptions::new()
        .append(true)
        .open(&env.events)
        .unwrap()
        .write_all(b"{not json\n")
        .unwrap();
    assert!(wait_until(DEADLINE, || emu.event_count() == 10).await, "{}", agent.logs());
    agent.wait_status(DEADLINE, |s| s["quarantine"]["count"] == 1).await;
    let (_, text) = get(agent.port, "/metrics").await.unwrap();
    if let Some(r) = promtool(&text) {
        r.unwrap_or_else(|e| panic!("promtool check metrics:\n{e}\n{text}"));
    }

    // Counts of entries are gauges without the `_count` suffix promtool reserves for
    // histograms and summaries.
    assert_eq!(sample(&text, "sendauth_siem_quarantine_entries"), Some(1.0), "{text}");
    assert_eq!(sample(&text, "sendauth_siem_dead_letter_entries"), Some(0.0), "{text}");
    assert!(!text.contains("sendauth_siem_dead_letter_count") && !text.contains("sendauth_siem_quarantine_count"));

    // Build details.
    let build = text
        .lines()
        .find(|l| l.starts_with("sendauth_siem_build_info{"))
        .unwrap_or_else(|| panic!("no build_info:\n{text}"));
    assert!(build.contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION"))), "{build}");
    assert!(build.contains("commit=\"") && !build.contains("commit=\"\""), "{build}");
    assert!(build.contains("target=\"") && build.ends_with("} 1"), "{build}");

    // The standard process metrics, with plausible values.
    let rss = sample(&text, "process_resident_memory_bytes").expect("process_resident_memory_bytes");
    assert!(rss > 1e6 && rss < 2e9, "rss {rss}");
    assert!(sample(&text, "process_cpu_seconds_total").expect("cpu") > 0.0);
    assert!(sample(&text, "process_open_fds").expect("open fds") >= 3.0);
    let start = sample(&text, "process_start_time_seconds").expect("start time");
    assert!((start - started).abs() < 120.0, "start time {start} vs {started}");

    // Requests by the SIEM's status code: the 503, then the deliveries (10 events, one request
    // each or batched: at least one 200), and nothing else.
    assert_eq!(
        sample(&text, "sendauth_siem_requests_by_code_total{code=\"503\"}"),
        Some(1.0),
        "{text}"
    );
    let ok = sample(&text, "sendauth_siem_requests_by_code_total{code=\"200\"}").unwrap_or(0.0);
    let total = sample(&text, "sendauth_siem_requests_total{outcome=\"success\"}").unwrap()
        + sample(&text, "sendauth_siem_requests_total{outcome=\"failure\"}").unwrap();
    assert!(ok >= 1.0 && ok + 1.0 == total, "200: {ok}, all requests: {total}\n{text}");

    // The last success is now-ish and after the agent started.
    let last = sample(&text, "sendauth_siem_last_success_timestamp_seconds").unwrap();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
    assert!(
        last >= started - 1.0 && last <= now + 1.0,
        "last success {last}, started {started}, now {now}"
    );
}
