//! The operator's commands as an on-call person runs them (issue: "made for the people who run
//! it"): they work with a broken or secret-less config, deleting asks first, `status` exits
//! with codes a script can use and shows the inputs, dead letters and resolved errors, config
//! mistakes get a "did you mean", and completions and the man page come from the CLI itself.

mod common;

use common::*;
use sendauth_siem_emulators::{Emulator, EmulatorConfig, Fault, Kind};

fn reject_next(emu: &Emulator, reason: &str) {
    emu.push_fault(Fault::Status {
        code: 400,
        body: serde_json::json!({ "error": reason }).to_string(),
        headers: vec![],
    });
}

/// The config as it is after a bad edit, in a shell without the SIEM token: the full config
/// does not load, but the queue and status sections are fine.
fn broken_config(env: &TestEnv, c: &Cfg) -> String {
    let mut text = env.render(c);
    text = text.replace(
        "siem:\n",
        "siem:\n  platfrom: generic\n  auth:\n    header: \"Authorization: Bearer ${SENDAUTH_TEST_UNSET_TOKEN}\"\n",
    );
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_commands_and_status_work_with_a_broken_secretless_config() {
    let emu = Emulator::start(EmulatorConfig::new(Kind::Generic)).await.unwrap();
    reject_next(&emu, "field subject too long");
    let env = TestEnv::new();
    let mut c = Cfg::new(&emu.url());
    c.siem = "  generic:\n    batch: none\n".into();
    c.delivery = "  initial_backoff: 20ms\n  max_backoff: 200ms\n  max_in_flight: 1\n".into();
    env.write_config(&c);
    let agent = AgentProc::start(&env).await;
    env.append(&[event(0), event(1), "{not json".to_string()]);
    agent
        .wait_status(DEADLINE, |s| {
            s["dead_letter"]["count"] == 1
                && s["quarantine"]["count"] == 1
                && s["queue"]["pending"] == 0
                && s["last_error"]["dead_letter"] == true
        })
        .await;

    // A bad edit lands; the agent keeps running on the old config and says so.
    let broken = env.dir.path().join("broken.yaml");
    std::fs::write(&broken, broken_config(&env, &c)).unwrap();
    let conf = broken.to_str().unwrap();
    let (code, out, err) = cli(&["check-config", "--config", conf]);
    assert_eq!(code, 1, "the broken config must not load: {out}{err}");

    let (code, out, err) = cli(&["dead-letter", "list", "--config", conf]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("field subject too long"), "{out}");
    let (code, out, err) = cli(&["quarantine", "list", "--config", conf]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("{not json"), "{out}");
    let (code, out, err) = cli(&["aside", "list", "--config", conf]);
    assert_eq!(code, 0, "{out}{err}");
    let queue = env.queue.to_str().unwrap();
    let (code, out, err) = cli(&["dead-letter", "list", "--queue-path", queue, "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out.lines().count(), 1, "{out}");

    // `status --config` finds the address in the broken file; a dead letter needs attention
    // (exit 1) and is named, and so is the file source.
    let (code, out, err) = cli(&["status", "--config", conf]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("Warning:          1 event(s) in the dead letter"), "{out}");
    assert!(out.contains("field subject too long"), "{out}");
    assert!(out.contains("File source:      tailing"), "{out}");
    assert!(out.contains("Socket source:"), "{out}");
    // Liveness only: 0.
    let (code, _, _) = cli(&["status", "--config", conf, "--live"]);
    assert_eq!(code, 0);

    // Deleting everything asks first: without a terminal, --yes is needed; --dry-run counts.
    let (code, out, err) = cli(&["dead-letter", "purge", "--config", conf, "--all"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("nothing was deleted: pass --yes to delete all 1 dead-lettered event(s)"),
        "{err}"
    );
    let (code, out, err) = cli(&["dead-letter", "purge", "--config", conf, "--all", "--dry-run"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("would delete 1 event(s) from the dead letter; nothing was changed"),
        "{out}"
    );
    let (code, out, err) = cli(&["dead-letter", "purge", "--config", conf, "--id", "7", "--dry-run"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("no dead-letter entry with id 7"), "{err}");
    agent.wait_status(DEADLINE, |s| s["dead_letter"]["count"] == 1).await;
    let (code, out, err) = cli(&["dead-letter", "purge", "--config", conf, "--all", "--yes"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("deleted 1 event(s)"), "{out}");

    // The quarantine can be purged too, with the same care.
    let (code, _, err) = cli(&["quarantine", "purge", "--config", conf, "--all"]);
    assert_eq!(code, 1, "{err}");
    let (code, out, err) = cli(&["quarantine", "purge", "--config", conf, "--all", "--dry-run"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("would delete all 1 quarantined line(s)"), "{out}");
    let (code, out, err) = cli(&["quarantine", "purge", "--config", conf, "--through", "1", "--yes"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("deleted 1 line(s) from the quarantine"), "{out}");
    let s = agent
        .wait_status(DEADLINE, |s| s["dead_letter"]["count"] == 0 && s["quarantine"]["count"] == 0)
        .await;
    assert_eq!(s["warnings"].as_array().map(Vec::len), Some(0), "{s:#}");
    let (code, out, _) = cli(&["status", "--config", conf]);
    assert_eq!(code, 0, "healthy again: {out}");
    assert_eq!(emu.event_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_exit_codes_follow_delivery_and_resolved_errors_are_marked() {
    let emu = Emulator::start(EmulatorConfig::new(Kind::Generic)).await.unwrap();
    emu.set_fault(Some(Fault::Status {
        code: 503,
        body: "maintenance window".into(),
        headers: vec![],
    }));
    let env = TestEnv::new();
    env.write_config(&Cfg::new(&emu.url()));
    let agent = AgentProc::start(&env).await;
    env.append(&[event(0)]);
    agent.wait_status(DEADLINE, |s| s["state"] == "error").await;
    let conf = env.config.to_str().unwrap().to_string();
    let c2 = conf.clone();
    let (code, out, _) = tokio::task::spawn_blocking(move || cli(&["status", "--config", &c2]))
        .await
        .unwrap();
    assert_eq!(code, 2, "not delivering: {out}");
    assert!(out.contains("maintenance window") && out.contains(" s ago"), "{out}");
    assert!(
        out.contains("Retrying:") && out.contains("failed attempt(s) in a row; next try "),
        "{out}"
    );

    emu.set_fault(None);
    assert!(emu.wait_for_events(1, DEADLINE).await);
    let s = agent.wait_status(DEADLINE, |s| s["state"] == "success").await;
    assert!(s["last_error"]["resolved_at"].is_string(), "{s:#}");
    assert!(s["retry"].is_null(), "no retry pending after a success: {s:#}");
    assert!(s["recent_errors"][0]["resolved_at"].is_string(), "{s:#}");
    let (code, out, _) = tokio::task::spawn_blocking(move || cli(&["status", "--config", &conf]))
        .await
        .unwrap();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("resolved at"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_source_waiting_on_a_missing_directory_says_so() {
    let emu = Emulator::start(EmulatorConfig::new(Kind::Generic)).await.unwrap();
    let env = TestEnv::new();
    let missing = env.dir.path().join("not-mounted").join("events.jsonl");
    let text = env.render(&Cfg::new(&emu.url())).replace(
        &format!("path: {}\n", env.events.display()),
        &format!("path: {}\n", missing.display()),
    );
    env.write_config_text(&text);
    let conf = env.config.to_str().unwrap().to_string();
    let (code, out, _) = cli(&["check-config", "--config", &conf]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("warning: sources.file.path: waiting for") && out.contains("does not exist"),
        "{out}"
    );
    let agent = AgentProc::start(&env).await;
    let s = agent.wait_status(DEADLINE, |s| s["sources"]["file"]["state"] == "waiting").await;
    assert!(
        s["sources"]["file"]["summary"]
            .as_str()
            .unwrap()
            .contains("not-mounted does not exist"),
        "{s:#}"
    );
    let (code, out, _) = tokio::task::spawn_blocking(move || cli(&["status", "--config", &conf]))
        .await
        .unwrap();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("File source:      waiting for"), "{out}");
}

#[test]
fn config_mistakes_get_a_did_you_mean_and_durations_read_like_english() {
    let env = TestEnv::new();
    let mut c = Cfg::new("http://127.0.0.1:9/x");
    c.delivery = "  initial_backof: 1s\n  max_backoff: 1h30m\n".into();
    c.queue_extra = "  max_byte: 1MiB\n".into();
    env.write_config(&c);
    let (code, out, _) = cli(&["check-config", "--config", env.config.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("delivery.initial_backof: unknown key; did you mean `initial_backoff`?"),
        "{out}"
    );
    assert!(out.contains("queue.max_byte: unknown key; did you mean `max_bytes`?"), "{out}");
    assert!(!out.contains("max_backoff"), "1h30m is a duration: {out}");

    c.delivery = "  initial_backoff: 10 seconds\n  max_backoff: 30\n".into();
    c.queue_extra = String::new();
    env.write_config(&c);
    let (code, out, _) = cli(&["check-config", "--config", env.config.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("delivery.max_backoff: \"30\" has no unit; write it with one, e.g. 30s or 30ms"),
        "{out}"
    );
    assert_eq!(out.lines().count(), 1, "10 seconds is fine: {out}");

    // Each message names its file once.
    let (code, out, err) = cli(&["check-config", "--config", "/nope.yaml"]);
    assert_eq!(code, 1);
    assert_eq!(out.matches("/nope.yaml").count(), 1, "{out}{err}");
    assert!(out.contains("cannot read the config file"), "{out}");
    let (code, _, err) = cli(&["dead-letter", "list", "--config", "/nope.yaml"]);
    assert_eq!(code, 1);
    assert_eq!(err.matches("/nope.yaml").count(), 1, "{err}");
}

#[test]
fn completions_and_the_man_page_come_from_the_command_line_definition() {
    let (code, out, err) = cli(&["completions", "bash"]);
    assert_eq!(code, 0, "{err}");
    for sub in ["dead-letter", "quarantine", "check-config", "--queue-path", "--dry-run"] {
        assert!(out.contains(sub), "bash completion lacks {sub}");
    }
    let (code, out, _) = cli(&["completions", "zsh"]);
    assert_eq!(code, 0);
    assert!(out.contains("#compdef sendauth-siem"), "{}", &out[..200.min(out.len())]);
    let (code, out, err) = cli(&["man"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with(".ie") || out.contains(".TH sendauth-siem"),
        "{}",
        &out[..300.min(out.len())]
    );
    assert!(
        out.contains("Forwards SendAuth authentication events"),
        "man page lacks the description"
    );
    let (code, out, _) = cli(&["--version"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("sendauth-siem "), "{out}");
}

#[test]
fn a_busy_status_port_is_named_once_with_what_to_do() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let env = TestEnv::new();
    let text = env.render(&Cfg::new("http://127.0.0.1:9/x")).replace(
        &format!("listen: 127.0.0.1:{}", env.port),
        &format!("listen: {}", busy.local_addr().unwrap()),
    );
    env.write_config_text(&text);
    let (code, _, err) = cli(&["run", "--config", env.config.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(err.matches("Address already in use").count(), 1, "the cause is repeated: {err}");
    assert!(err.contains("Choose another with status.listen"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejection_flood_that_stops_still_gets_its_summary() {
    let emu = Emulator::start(EmulatorConfig::new(Kind::Generic)).await.unwrap();
    let env = TestEnv::new();
    env.write_config(&Cfg::new(&emu.url()));
    let agent = AgentProc::start(&env).await;
    // 35 bad lines at once, then nothing: 20 are logged one by one, 15 summarised.
    env.append(&(0..35).map(|i| format!("{{bad line {i}")).collect::<Vec<_>>());
    agent.wait_status(DEADLINE, |s| s["quarantine"]["count"] == 35).await;
    assert!(
        wait_until(DEADLINE, || agent
            .logs()
            .contains("15 more rejected lines were not logged individually"))
        .await,
        "no summary after the flood stopped:\n{}",
        agent.logs()
    );
    assert_eq!(agent.logs().matches(": rejected: ").count(), 20, "{}", agent.logs());
}

/// A Kubernetes Secret volume is updated in place: `..data` is swapped to a new directory. The
/// agent picks up the rotated token without a SIGHUP or a config edit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_secret_file_is_picked_up_without_a_reload() {
    use sendauth_siem_emulators::ExpectedAuth;
    let emu = Emulator::start(EmulatorConfig::new(Kind::Generic)).await.unwrap();
    let header = |v: &str| ExpectedAuth::Header {
        name: "Authorization".into(),
        value: format!("Bearer {v}"),
    };
    emu.set_auth(header("old-token"));
    let env = TestEnv::new();
    // The layout kubelet makes: secret/header -> ..data/header, ..data -> ..2026_v1.
    let secret = env.dir.path().join("secret");
    let v1 = secret.join("..2026_v1");
    std::fs::create_dir_all(&v1).unwrap();
    std::fs::write(v1.join("header"), "Authorization: Bearer old-token\n").unwrap();
    std::os::unix::fs::symlink("..2026_v1", secret.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/header", secret.join("header")).unwrap();
    let mut c = Cfg::new(&emu.url());
    c.siem = format!("  auth:\n    header_file: {}\n", secret.join("header").display());
    env.write_config(&c);
    let agent = AgentProc::start(&env).await;
    env.append(&[event(0)]);
    assert!(emu.wait_for_events(1, DEADLINE).await);

    // The SIEM's token is rotated: the old one is refused from now on.
    emu.set_auth(header("new-token"));
    let v2 = secret.join("..2026_v2");
    std::fs::create_dir_all(&v2).unwrap();
    std::fs::write(v2.join("header"), "Authorization: Bearer new-token\n").unwrap();
    std::os::unix::fs::symlink("..2026_v2", secret.join("..data_tmp")).unwrap();
    std::fs::rename(secret.join("..data_tmp"), secret.join("..data")).unwrap();
    env.append(&[event(1)]);
    assert!(
        emu.wait_for_events(2, DEADLINE).await,
        "the rotated token was not used:\n{}",
        agent.logs()
    );
    assert!(
        agent.logs().contains("a secret file changed; re-reading the config"),
        "{}",
        agent.logs()
    );
    assert!(
        !agent.logs().contains("new-token") && !agent.logs().contains("old-token"),
        "a secret in the log"
    );
}

/// The status hub keeps its state in its own file (never in the queue's store), and a restart
/// shows the last known state, even after SIGKILL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_known_state_survives_a_restart_in_its_own_file() {
    let emu = Emulator::start(EmulatorConfig::new(Kind::Generic)).await.unwrap();
    let env = TestEnv::new();
    env.write_config(&Cfg::new(&emu.url()));
    let mut agent = AgentProc::start(&env).await;
    env.append(&[event(0)]);
    let s = agent.wait_status(DEADLINE, |s| s["state"] == "success").await;
    let at = s["last_success_at"].clone();
    assert!(
        wait_until(DEADLINE, || std::fs::read_to_string(env.queue.join("status.json"))
            .is_ok_and(|t| t.contains("success")))
        .await,
        "no status.json in the queue directory"
    );
    agent.kill9();
    let agent = AgentProc::start(&env).await;
    let s = agent.status().await;
    assert_eq!(s["state"], "success", "{s:#}");
    assert_eq!(s["last_success_at"], at, "{s:#}");
}

/// A limit lowered by mistake quarantines good events; once it is raised again, `quarantine
/// replay` runs those lines through intake again: they reach the SIEM, and a line that is still
/// bad stays quarantined with today's reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quarantine_replay_queues_the_lines_that_pass_now() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let emu = Emulator::start(EmulatorConfig::new(Kind::Generic)).await.unwrap();
    let env = TestEnv::new();
    let mut c = Cfg::new(&emu.url());
    c.file = false;
    env.write_config(&c);
    let agent = AgentProc::start(&env).await;
    // A writer connected before the mistake keeps its connection (reloads never cut it).
    let stream = tokio::net::UnixStream::connect(&env.socket).await.unwrap();
    let (rd, mut wr) = stream.into_split();
    c.max_event_bytes = Some("256B".into());
    env.write_config(&c);
    let ok_reloads = "sendauth_siem_config_reloads_total{result=\"applied\"}";
    let port = agent.port;
    assert!(wait_until_async(DEADLINE, || async move { metric(port, ok_reloads).await >= 1.0 }).await);
    let big = |i: usize| {
        let e = event(i);
        let pad = 300usize.saturating_sub(e.len());
        e.replacen("\"org_id\"", &format!("\"note\":\"{}\",\"org_id\"", "x".repeat(pad)), 1)
    };
    assert!(big(1).len() > 256 && big(1).len() < 1024);
    let lines = format!("{}\n{}\n{{not json\n", big(1), big(2));
    wr.write_all(lines.as_bytes()).await.unwrap();
    wr.shutdown().await.unwrap();
    let answer = tokio::io::BufReader::new(rd).lines().next_line().await.unwrap().unwrap();
    assert!(answer.contains("\"rejected\":3"), "{answer}");
    let conf = env.config.to_str().unwrap().to_string();

    // The limit goes back up; the agent replays with the rules it runs with.
    agent.wait_status(DEADLINE, |s| s["quarantine"]["count"] == 3).await;
    c.max_event_bytes = None;
    env.write_config(&c);
    assert!(wait_until_async(DEADLINE, || async move { metric(port, ok_reloads).await >= 2.0 }).await);
    let c2 = conf.clone();
    let dry = tokio::task::spawn_blocking(move || cli(&["quarantine", "replay", "--config", &c2, "--all", "--dry-run"]))
        .await
        .unwrap();
    assert_eq!(dry.0, 0, "{dry:?}");
    assert!(
        dry.1
            .contains("would queue 2 line(s) that pass the current rules; 1 would stay quarantined"),
        "{dry:?}"
    );
    assert_eq!(emu.event_count(), 0);
    let (code, out, err) = tokio::task::spawn_blocking(move || cli(&["quarantine", "replay", "--config", &conf, "--all"]))
        .await
        .unwrap();
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("queued 2 line(s)") && out.contains("1 still rejected"), "{out}");
    assert!(emu.wait_for_events(2, DEADLINE).await);
    let s = agent.wait_status(DEADLINE, |s| s["quarantine"]["count"] == 1).await;
    assert_eq!(s["queue"]["pending"], 0, "{s:#}");
    let q = cli(&["quarantine", "list", "--queue-path", env.queue.to_str().unwrap(), "--json"]).1;
    assert!(q.contains("{not json") && q.contains("replayed from the quarantine"), "{q}");
    assert_eq!(emu.event_count(), 2);
}
