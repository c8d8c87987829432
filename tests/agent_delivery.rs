//! The real agent against a generic SIEM emulator: ordering, partial lines, outages,
//! credentials, reload, enable/disable, quarantine, queue-full and secrets.

mod common;

use std::time::Duration;

use common::*;
use sendauth_siem_emulators::{Emulator, EmulatorConfig, ExpectedAuth, Fault, Kind};

async fn generic() -> Emulator {
    Emulator::start(EmulatorConfig::new(Kind::Generic)).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_and_socket_events_arrive_once() {
    let emu = generic().await;
    let env = TestEnv::new();
    env.write_config(&Cfg::new(&emu.url()));
    let agent = AgentProc::start(&env).await;

    env.append(&(0..100).map(event).collect::<Vec<_>>());
    assert!(emu.wait_for_events(100, DEADLINE).await, "file events: got {}", emu.event_count());
    assert_eq!(sorted_ids(&emu.events()), expected_ids(0..100));

    let answer = socket_send(&env.socket, &(100..150).map(event).collect::<Vec<_>>()).await;
    assert_eq!(answer, vec![serde_json::json!({"accepted": 50, "rejected": 0})]);
    assert!(emu.wait_for_events(150, DEADLINE).await);
    assert_eq!(sorted_ids(&emu.events()), expected_ids(0..150));

    // Generic default: one request per event, the body being the event unchanged.
    let reqs = emu.requests();
    assert_eq!(reqs.len(), 150);
    assert_eq!(String::from_utf8(reqs[0].body.clone()).unwrap(), event(0));

    let s = agent.wait_status(DEADLINE, |s| s["queue"]["pending"] == 0).await;
    assert_eq!(s["state"], "success");
    assert!(s["last_success_at"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_line_is_held_until_its_newline_arrives() {
    let emu = generic().await;
    let env = TestEnv::new();
    env.write_config(&Cfg::new(&emu.url()));
    let _agent = AgentProc::start(&env).await;
    let line = event(1);
    let (a, b) = line.split_at(40);
    env.append(&[event(0)]);
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).open(&env.events).unwrap();
        f.write_all(a.as_bytes()).unwrap();
    }
    assert!(emu.wait_for_events(1, DEADLINE).await);
    // Give the tailer several poll rounds to (wrongly) send the half line.
    let half_sent = wait_until(Duration::from_millis(800), || emu.event_count() > 1).await;
    assert!(!half_sent, "a half-written line must not be forwarded");
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).open(&env.events).unwrap();
        f.write_all(format!("{b}\n").as_bytes()).unwrap();
    }
    assert!(emu.wait_for_events(2, DEADLINE).await);
    assert_eq!(sorted_ids(&emu.events()), expected_ids(0..2));
    assert_eq!(emu.requests().iter().filter(|r| r.status >= 400).count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn siem_503_for_a_while_then_recovery_delivers_everything() {
    let emu = generic().await;
    emu.set_fault(Some(Fault::Status {
        code: 503,
        body: "{\"error\":\"maintenance\"}".into(),
        headers: vec![],
    }));
    let env = TestEnv::new();
    env.write_config(&Cfg::new(&emu.url()));
    let agent = AgentProc::start(&env).await;
    env.append(&(0..30).map(event).collect::<Vec<_>>());
    let s = agent
        .wait_status(DEADLINE, |s| s["state"] == "error" && s["queue"]["pending"] == 30)
        .await;
    assert_eq!(s["last_error"]["http_status"], 503);
    assert!(s["last_error"]["message"].as_str().unwrap().contains("503"), "{s}");
    // Retries happen (well past max_retries: the agent keeps probing, nothing is dropped).
    assert!(wait_until(DEADLINE, || emu.requests().len() >= 6).await);
    assert_eq!(emu.event_count(), 0);
    emu.set_fault(None);
    assert!(emu.wait_for_events(30, DEADLINE).await);
    assert_eq!(sorted_ids(&emu.events()), expected_ids(0..30));
    agent
        .wait_status(DEADLINE, |s| s["state"] == "success" && s["queue"]["pending"] == 0)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured() {
    let emu = generic().await;
    emu.push_fault(Fault::Status {
        code: 429,
        body: "slow down".into(),
        headers: vec![("Retry-After".into(), "2".into())],
    });
    let env = TestEnv::new();
    env.write_config(&Cfg::new(&emu.url()));
    let _agent = AgentProc::start(&env).await;
    let t0 = std::time::Instant::now();
    env.append(&[event(0)]);
    assert!(emu.wait_for_events(1, DEADLINE).await);
    // The backoff alone is ≤ 300 ms here; only Retry-After explains waiting ~2 s.
    assert!(t0.elapsed() >= Duration::from_millis(1900), "retried after {:?}", t0.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_hold_until_the_config_is_fixed() {
    let mut ecfg = EmulatorConfig::new(Kind::Generic);
    ecfg.auth = ExpectedAuth::Header {
        name: "X-API-Key".into(),
        value: "right-key-4242".into(),
    };
    let emu = Emulator::start(ecfg).await.unwrap();
    let env = TestEnv::new();
    let mut cfg = Cfg::new(&emu.url());
    cfg.siem = "  auth:\n    header: \"X-API-Key: wrong-key-1313\"\n".into();
    env.write_config(&cfg);
    let agent = AgentProc::start(&env).await;
    env.append(&(0..5).map(event).collect::<Vec<_>>());
    let s = agent.wait_status(DEADLINE, |s| s["state"] == "error").await;
    assert_eq!(s["last_error"]["http_status"], 401);
    let msg = s["last_error"]["message"].as_str().unwrap();
    assert!(msg.contains("credentials") && msg.contains("siem.auth"), "{msg}");
    assert_eq!(emu.event_count(), 0);

    cfg.siem = "  auth:\n    header: \"X-API-Key: right-key-4242\"\n".into();
    env.write_config(&cfg);
    assert!(emu.wait_for_events(5, DEADLINE).await, "log:\n{}", agent.logs());
    assert_eq!(sorted_ids(&emu.events()), expected_ids(0..5));
    agent.wait_status(DEADLINE, |s| s["state"] == "success").await;
    // Secrets never appear in logs, status or metrics.
    let status = agent.status().await.to_string();
    let metrics = get(agent.port, "/metrics").await.unwrap().1;
    for secret in ["wrong-key-1313", "right-key-4242"] {
        assert!(!agent.logs().contains(secret), "secret in log");
        assert!(!status.contains(secret), "secret in status");
        assert!(!metrics.contains(secret), "secret in metrics");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_reload_mid_stream_loses_and_duplicates_nothing() {
    let a = generic().await;
    let b = generic().await;
    let env = TestEnv::new();
    env.write_config(&Cfg::new(&a.url()));
    let agent = AgentProc::start(&env).await;
    env.append(&(0..50).map(event).collect::<Vec<_>>());
    assert!(a.wait_for_events(50, DEADLINE).await);
    // A slow SIEM keeps a backlog queued, so the switch happens mid-stream.
    a.set_fault(Some(Fault::SlowAnswer(Duration::from_millis(10))));
    let writer = {
        let path = env.events.clone();
        std::thread::spawn(move || {
            for i in 50..250 {
                append_to(&path, &[event(i)]);
                if i % 20 == 0 {
                    std::thread::yield_now();
                }
            }
        })
    };
    env.write_config(&Cfg::new(&b.url()));
    writer.join().unwrap();
    // Once the new URL is in force, later events go there.
    agent.wait_status(DEADLINE, |s| s["config"]["url"] == b.url()).await;
    env.append(&(250..300).map(event).collect::<Vec<_>>());
    assert!(
        wait_until(DEADLINE, || a.event_count() + b.event_count() >= 300).await,
        "a={} b={}\n{}",
        a.event_count(),
        b.event_count(),
        agent.logs()
    );
    agent.wait_status(DEADLINE, |s| s["queue"]["pending"] == 0).await;
    let mut all = a.events();
    all.extend(b.events());
    assert_eq!(sorted_ids(&all), expected_ids(0..300), "across the switch, no loss, no duplicate");
    assert!(b.event_count() >= 50, "the new URL is used: b={}", b.event_count());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_reload_keeps_the_old_config_running() {
    let emu = generic().await;
    let env = TestEnv::new();
    let cfg = Cfg::new(&emu.url());
    env.write_config(&cfg);
    let agent = AgentProc::start(&env).await;
    env.write_config_text("siem:\n  url: [this is not a url\nsources: {}\n");
    let s = agent.wait_status(DEADLINE, |s| s["config"]["reload_error"].is_string()).await;
    assert!(s["config"]["reload_error"].as_str().unwrap().contains("config.yaml"), "{s}");
    env.append(&(0..10).map(event).collect::<Vec<_>>());
    assert!(emu.wait_for_events(10, DEADLINE).await, "still delivering on the old config");
    // Each problem is named by its key.
    env.write_config_text(
        &env.render(&cfg)
            .replace("  initial_backoff: 50ms\n", "  initial_backoff: soon\n  bogus_key: 1\n"),
    );
    let s = agent
        .wait_status(DEADLINE, |s| {
            s["config"]["reload_error"].as_str().is_some_and(|e| e.contains("bogus_key"))
        })
        .await;
    let e = s["config"]["reload_error"].as_str().unwrap();
    assert!(
        e.contains("delivery.initial_backoff") && e.contains("delivery.bogus_key: unknown key"),
        "{e}"
    );
    env.write_config(&cfg);
    agent.wait_status(DEADLINE, |s| s["config"]["reload_error"].is_null()).await;
    assert!(agent.logs().contains("NOT applied"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabling_stops_requests_at_once_and_enabling_resumes() {
    let emu = generic().await;
    let env = TestEnv::new();
    let mut cfg = Cfg::new(&emu.url());
    env.write_config(&cfg);
    let agent = AgentProc::start(&env).await;
    env.append(&(0..5).map(event).collect::<Vec<_>>());
    assert!(emu.wait_for_events(5, DEADLINE).await);
    cfg.siem = "  enabled: false\n".into();
    env.write_config(&cfg);
    agent.wait_status(DEADLINE, |s| s["state"] == "disabled").await;
    let before = emu.requests().len();
    env.append(&(5..15).map(event).collect::<Vec<_>>());
    agent.wait_status(DEADLINE, |s| s["queue"]["pending"] == 10).await;
    assert_eq!(emu.requests().len(), before, "no request while disabled");
    cfg.siem = String::new();
    env.write_config(&cfg);
    assert!(emu.wait_for_events(15, DEADLINE).await);
    assert_eq!(sorted_ids(&emu.events()), expected_ids(0..15));
    agent.wait_status(DEADLINE, |s| s["state"] == "success").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_bad_line_is_quarantined_with_its_reason() {
    let emu = generic().await;
    let env = TestEnv::new();
    let mut cfg = Cfg::new(&emu.url());
    cfg.max_event_bytes = Some("1KiB".into());
    env.write_config(&cfg);
    let agent = AgentProc::start(&env).await;
    let good = event(0);
    let bad = [
        ("[1,2,3]".to_string(), "not a JSON object"),
        ("{\"event_type\":".to_string(), "invalid JSON"),
        (good.replace(",\"org_id\":\"org-1\"", ""), "missing \"org_id\""),
        (good.replace("\"tx-0\"", "12345"), "\"transaction_id\" must be a string"),
        (good.replace("2025-01-28T10:30:00.000Z", "yesterday"), "timestamp"),
        (format!("{{\"pad\":\"{}\"}}", "x".repeat(2000)), "over sources.max_event_bytes"),
    ];
    let mut lines = vec![good.clone()];
    lines.extend(bad.iter().map(|(l, _)| l.clone()));
    lines.push(event(1));
    env.append(&lines);
    assert!(emu.wait_for_events(2, DEADLINE).await);
    assert_eq!(
        sorted_ids(&emu.events()),
        expected_ids(0..2),
        "good events around bad ones are delivered"
    );
    agent.wait_status(DEADLINE, |s| s["quarantine"]["count"] == 6).await;
    let (code, out, err) = cli(&["quarantine", "list", "--config", env.config.to_str().unwrap(), "--json"]);
    assert_eq!(code, 0, "{err}");
    let entries: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(entries.len(), 6);
    for ((line, why), e) in bad.iter().zip(&entries) {
        assert!(e["reason"].as_str().unwrap().contains(why), "{e}");
        assert!(e["origin"].as_str().unwrap().contains("events.jsonl:"), "{e}");
        if line.len() < 1024 {
            assert_eq!(e["line"].as_str().unwrap(), line, "kept verbatim");
        }
    }
    let logs = agent.logs();
    assert!(logs.contains("events.jsonl:2 (byte"), "file:line in the log:\n{logs}");
    // Socket rejects are counted in the answer.
    let answer = socket_send(&env.socket, &["nope".to_string(), event(2)]).await;
    assert_eq!(answer, vec![serde_json::json!({"accepted": 1, "rejected": 1})]);
    let metrics = get(agent.port, "/metrics").await.unwrap().1;
    assert!(
        metrics.contains("sendauth_siem_events_rejected_total{reason=\"not_an_object\"} 2"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_pauses_the_file_and_refuses_socket_lines_then_recovers() {
    let emu = generic().await;
    emu.set_fault(Some(Fault::Status {
        code: 503,
        body: String::new(),
        headers: vec![],
    }));
    let env = TestEnv::new();
    let mut cfg = Cfg::new(&emu.url());
    cfg.queue_extra = "  max_bytes: 64KiB\n".into();
    env.write_config(&cfg);
    let agent = AgentProc::start(&env).await;
    // ~200 B per event: 1000 events do not fit in 64 KiB.
    env.append(&(0..1000).map(event).collect::<Vec<_>>());
    let s = agent
        .wait_status(DEADLINE, |s| {
            s["queue"]["full"] == true && s["sources"]["file"]["paused"].is_string()
        })
        .await;
    assert!(s["sources"]["file"]["paused"].as_str().unwrap().contains("queue full"), "{s}");
    let pending = s["queue"]["pending"].as_u64().unwrap();
    assert!(pending > 0 && pending < 1000, "{pending}");
    let answer = socket_send(&env.socket, &[event(5000)]).await;
    assert_eq!(answer[0]["error"], "queue full", "{answer:?}");
    assert_eq!(answer.last().unwrap()["refused"], 1);
    // The SIEM comes back: everything the file holds arrives, once, with nothing lost.
    emu.set_fault(None);
    assert!(
        emu.wait_for_events(1000, DEADLINE * 2).await,
        "got {}\n{}",
        emu.event_count(),
        agent.logs()
    );
    assert_eq!(sorted_ids(&emu.events()), expected_ids(0..1000));
    agent
        .wait_status(DEADLINE, |s| {
            s["queue"]["full"] == false && s["sources"]["file"]["paused"].is_null()
        })
        .await;
}

/// A generic emulator that answers the first request with 400 `{"error": reason}` (so the agent
/// dead-letters that event) and accepts the rest, and an agent started on the config `cfg`
/// builds from the emulator's URL.
async fn agent_whose_siem_rejects_one_event(reason: &str, cfg: impl FnOnce(&str) -> Cfg) -> (Emulator, TestEnv, AgentProc) {
    let emu = generic().await;
    emu.push_fault(Fault::Status {
        code: 400,
        body: serde_json::json!({ "error": reason }).to_string(),
        headers: vec![],
    });
    let env = TestEnv::new();
    env.write_config(&cfg(&emu.url()));
    let agent = AgentProc::start(&env).await;
    (emu, env, agent)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_event_goes_to_the_dead_letter_and_can_be_replayed() {
    let (emu, env, agent) = agent_whose_siem_rejects_one_event("field subject too long", Cfg::new).await;
    env.append(&(0..3).map(event).collect::<Vec<_>>());
    assert!(emu.wait_for_events(2, DEADLINE).await);
    assert_eq!(tx_ids(&emu.events()), vec!["tx-1", "tx-2"]);
    agent.wait_status(DEADLINE, |s| s["dead_letter"]["count"] == 1).await;
    let conf = env.config.to_str().unwrap();
    let (code, out, err) = cli(&["dead-letter", "list", "--config", conf, "--json"]);
    assert_eq!(code, 0, "{err}");
    let e: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert!(e["reason"].as_str().unwrap().contains("field subject too long"), "{e}");
    assert_eq!(e["http_status"], 400);
    assert_eq!(e["event"].as_str().unwrap(), event(0));
    // Replay through the running agent's admin socket.
    let (code, out, err) = cli(&["dead-letter", "replay", "--config", conf, "--all"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(emu.wait_for_events(3, DEADLINE).await);
    assert_eq!(tx_ids(&emu.events()), vec!["tx-1", "tx-2", "tx-0"]);
    agent.wait_status(DEADLINE, |s| s["dead_letter"]["count"] == 0).await;
    // The admin socket is for the agent's own user only.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(env.queue.join("admin.sock")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_the_siem_echoes_in_another_case_is_redacted_too() {
    let (emu, env, agent) = agent_whose_siem_rejects_one_event("event refused for key SECRET-KEY-77AB", |url| {
        let mut cfg = Cfg::new(url);
        cfg.siem = "  auth:\n    header: \"X-API-Key: secret-key-77ab\"\n".into();
        cfg
    })
    .await;
    env.append(&(0..2).map(event).collect::<Vec<_>>());
    agent.wait_status(DEADLINE, |s| s["dead_letter"]["count"] == 1).await;
    assert!(emu.wait_for_events(1, DEADLINE).await);
    let (code, out, err) = cli(&["dead-letter", "list", "--config", env.config.to_str().unwrap(), "--json"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("event refused for key <redacted>"), "{out}");
    let status = agent.status().await.to_string();
    for (what, text) in [("dead letter", out), ("status", status), ("log", agent.logs())] {
        assert!(!text.to_ascii_lowercase().contains("secret-key-77ab"), "secret in {what}:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letter_commands_fail_on_unknown_ids_and_listings_survive_a_closed_pipe() {
    let (emu, env, agent) = agent_whose_siem_rejects_one_event("field subject too long", Cfg::new).await;
    env.append(&(0..2).map(event).collect::<Vec<_>>());
    agent.wait_status(DEADLINE, |s| s["dead_letter"]["count"] == 1).await;
    let conf = env.config.to_str().unwrap();
    // An id that is not in the dead letter is an error naming it, and nothing moves, not even
    // the ids that do exist.
    for action in ["replay", "purge"] {
        let (code, out, err) = cli(&["dead-letter", action, "--config", conf, "--id", "99", "--id", "1"]);
        assert_eq!(code, 1, "{action}: {out}{err}");
        assert!(err.contains("no dead-letter entry with id 99;"), "{action}: {err}");
        assert!(err.contains("nothing was changed"), "{action}: {err}");
    }
    agent.wait_status(DEADLINE, |s| s["dead_letter"]["count"] == 1).await;
    // A listing whose reader has gone (`| head` that already exited) ends on SIGPIPE like other
    // Unix tools: no panic, no exit 101.
    for what in ["dead-letter", "quarantine"] {
        let (code, signal, err) = cli_into_closed_pipe(&[what, "list", "--config", conf, "--json"]);
        assert!(!err.contains("panicked"), "{what}: {err}");
        assert_ne!(code, Some(101), "{what}: {err}");
        if code.is_none() {
            assert_eq!(signal, Some(libc::SIGPIPE), "{what}: {err}");
        }
    }
    // The entry is still there and still replays.
    let (code, out, err) = cli(&["dead-letter", "replay", "--config", conf, "--id", "1"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(emu.wait_for_events(2, DEADLINE).await);
    assert_eq!(tx_ids(&emu.events()), vec!["tx-1", "tx-0"]);
}

/// Runs the CLI with its stdout on a pipe whose read end is already closed; returns (exit code,
/// terminating signal, stderr).
fn cli_into_closed_pipe(args: &[&str]) -> (Option<i32>, Option<i32>, String) {
    use std::os::fd::FromRawFd;
    use std::os::unix::process::ExitStatusExt;
    let mut fds = [0i32; 2];
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    unsafe { libc::close(fds[0]) };
    let write_end = unsafe { std::fs::File::from_raw_fd(fds[1]) };
    let out = std::process::Command::new(bin())
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(write_end)
        .output()
        .unwrap();
    (
        out.status.code(),
        out.status.signal(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_not_followed_and_hold_the_queue() {
    let emu = generic().await;
    emu.set_fault(Some(Fault::Redirect {
        code: 301,
        location: "https://elsewhere.example.com/collector".into(),
    }));
    let env = TestEnv::new();
    env.write_config(&Cfg::new(&emu.url()));
    let agent = AgentProc::start(&env).await;
    env.append(&[event(0)]);
    let s = agent.wait_status(DEADLINE, |s| s["state"] == "error").await;
    assert!(s["last_error"]["message"].as_str().unwrap().contains("redirect"), "{s}");
    assert_eq!(s["queue"]["pending"], 1);
    emu.set_fault(None);
    assert!(emu.wait_for_events(1, DEADLINE).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_file_is_created_with_restrictive_mode_and_stale_one_is_replaced() {
    let emu = generic().await;
    let env = TestEnv::new();
    // A stale socket file from a "crashed" run.
    {
        let l = std::os::unix::net::UnixListener::bind(&env.socket).unwrap();
        drop(l);
    }
    env.write_config(&Cfg::new(&emu.url()));
    let _agent = AgentProc::start(&env).await;
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&env.socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o660);
    let answer = socket_send(&env.socket, &[event(0)]).await;
    assert_eq!(answer[0]["accepted"], 1);
    assert!(emu.wait_for_events(1, DEADLINE).await);
}
