//! The command line as a user runs it: check-config, test, status, send, and config reload
//! through a Kubernetes ConfigMap symlink swap and SIGHUP.

mod common;

use common::*;
use sendauth_siem_emulators::{Emulator, EmulatorConfig, ExpectedAuth, Fault, Kind};

#[test]
fn check_config_names_every_bad_key_on_its_own_line() {
    let env = TestEnv::new();
    env.write_config_text(
        "siem:\n  url: https://siem.example.com/collector\n  auth:\n    header: \"Bearer abc\"\n  platform: splunk\nsources:\n  file: { path: /x, start_at: middle }\nqueue:\n  path: /tmp/q\ndelivery:\n  max_retries: many\n",
    );
    let (code, out, _) = cli(&["check-config", "--config", env.config.to_str().unwrap()]);
    assert_ne!(code, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert!(out.contains("siem.auth.header: expected \"Name: value\""), "{out}");
    assert!(
        out.contains("siem.platform: expected one of auto | splunk_hec | elasticsearch | sumo_logic | generic"),
        "{out}"
    );
    assert!(out.contains("sources.file.start_at"), "{out}");
    assert!(out.contains("delivery.max_retries"), "{out}");
    assert!(!out.contains("abc"), "no secret fragments in errors: {out}");
}

#[test]
fn check_config_refuses_a_queue_path_too_long_for_the_admin_socket() {
    let env = TestEnv::new();
    let long = format!("/var/lib/{}", "q".repeat(90));
    env.write_config_text(&format!(
        "siem:\n  url: http://127.0.0.1:9/collector\nsources:\n  socket: {{ path: /tmp/s.sock }}\nqueue:\n  path: {long}\n"
    ));
    let (code, out, err) = cli(&["check-config", "--config", env.config.to_str().unwrap()]);
    assert_ne!(code, 0, "{out}{err}");
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.contains("queue.path: is 99 bytes long"), "{out}");
    assert!(out.contains("at most 88 bytes"), "{out}");
}

/// A file source pointed at a directory, a FIFO or a device cannot be tailed: check-config
/// says so (it used to pass, and the agent then showed "waiting for ... to be created").
#[test]
fn check_config_refuses_a_file_source_that_is_not_a_regular_file() {
    let env = TestEnv::new();
    let fifo = env.dir.path().join("events.fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo with a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let dir = env.dir.path().join("a-directory");
    std::fs::create_dir(&dir).unwrap();
    for (path, what) in [
        (dir.as_path(), "is a directory"),
        (fifo.as_path(), "is a FIFO (named pipe)"),
        (std::path::Path::new("/dev/zero"), "is a character device"),
    ] {
        env.write_config_text(&format!(
            "siem:\n  url: http://127.0.0.1:9/collector\nsources:\n  file: {{ path: {} }}\nqueue:\n  path: {}\n",
            path.display(),
            env.queue.display()
        ));
        let (code, out, err) = cli(&["check-config", "--config", env.config.to_str().unwrap()]);
        assert_ne!(code, 0, "{out}{err}");
        assert!(out.contains("sources.file.path:") && out.contains(what), "{out}");
        assert!(out.contains("point it at the JSONL file"), "{out}");
    }
}

/// 400 KB of nested `[` used to take minutes to reject (serde_yaml's scanner is quadratic in
/// the nesting depth and runs over the whole file before its recursion limit applies): it is
/// now refused at the 65th level, naming the file and the line. The deadline is generous (the
/// check itself takes milliseconds); timing belongs in no test.
#[test]
fn check_config_rejects_deeply_nested_yaml_quickly_naming_the_line() {
    let env = TestEnv::new();
    env.write_config_text(&format!("siem:\n  url: {}\n", "[".repeat(400_000)));
    let mut child = std::process::Command::new(bin())
        .args(["check-config", "--config", env.config.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let end = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("check-config did not finish within 30 s on deeply nested YAML");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert_eq!(
        stdout.trim(),
        format!(
            "{}: line 2 column 72: `[` and `{{` nest deeper than 64 levels; a config needs only a few: look for an unclosed or stray bracket there",
            env.config.display()
        )
    );
}

/// Each shipped example passes `check-config` with exactly the environment variables the
/// README's table says it needs (so a newcomer following the README is not met by "HEC_TOKEN is
/// not set").
#[test]
fn check_config_accepts_the_shipped_examples_with_the_variables_the_readme_names() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let mut n = 0;
    for e in std::fs::read_dir(root.join("config")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_none_or(|x| x != "yaml") {
            continue;
        }
        let name = format!("`config/{}`", p.file_name().unwrap().to_string_lossy());
        let row = readme
            .lines()
            .find(|l| l.starts_with(&format!("| {name} |")))
            .unwrap_or_else(|| panic!("README.md has no row for {name} in its table of example configs"));
        let needs = row.split('|').nth(2).unwrap();
        // Every `UPPER_CASE` name in the "needs" column, with a plausible value.
        let vars: Vec<(String, String)> = needs
            .split('`')
            .skip(1)
            .step_by(2)
            .filter(|v| !v.is_empty() && v.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
            .map(|v| {
                let value = if v.ends_with("_URL") {
                    "https://collectors.sumologic.com/receiver/v1/http/abc".to_string()
                } else {
                    "secret-value-0123456789".to_string()
                };
                (v.to_string(), value)
            })
            .collect();
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let (code, out, err) = cli_env(&["check-config", "--config", p.to_str().unwrap()], &vars);
        assert_eq!(code, 0, "{} with {vars:?} (from the README): {out}{err}", p.display());
        n += 1;
    }
    assert!(n >= 4, "one example per platform");
}

fn cli_env(args: &[&str], vars: &[(&str, &str)]) -> (i32, String, String) {
    let mut c = std::process::Command::new(bin());
    c.args(args);
    for (k, v) in vars {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn test_cmd(url: &str, siem_extra: &str) -> (i32, String) {
    let env = TestEnv::new();
    let mut c = Cfg::new(url);
    c.siem = siem_extra.to_string();
    env.write_config(&c);
    let conf = env.config.to_str().unwrap().to_string();
    let (code, out, err) = tokio::task::spawn_blocking(move || cli(&["test", "--config", &conf]))
        .await
        .unwrap();
    (code, format!("{out}{err}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_command_explains_each_outcome() {
    let mut ecfg = EmulatorConfig::new(Kind::Generic);
    ecfg.auth = ExpectedAuth::Header {
        name: "Authorization".into(),
        value: "Bearer good-token-77".into(),
    };
    let emu = Emulator::start(ecfg).await.unwrap();
    let good = "  auth:\n    header: \"Authorization: Bearer good-token-77\"\n";

    let (code, out) = test_cmd(&emu.url(), good).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("OK: the SIEM accepted the test event"), "{out}");
    assert_eq!(emu.events()[0]["event_type"], "sendauth_siem.test");

    let (code, out) = test_cmd(&emu.url(), "  auth:\n    header: \"Authorization: Bearer bad-token-99\"\n").await;
    assert_eq!(code, 1);
    assert!(out.contains("HTTP 401") && out.contains("credentials"), "{out}");
    assert!(!out.contains("bad-token-99"), "{out}");

    let wrong_path = emu.url().replace("/collector", "/nope");
    let (code, out) = test_cmd(&wrong_path, good).await;
    assert_eq!(code, 1);
    assert!(out.contains("404") && out.contains("path in siem.url"), "{out}");

    emu.push_fault(Fault::Status {
        code: 400,
        body: "{\"error\":\"unexpected field\"}".into(),
        headers: vec![],
    });
    let (code, out) = test_cmd(&emu.url(), good).await;
    assert_eq!(code, 1);
    assert!(out.contains("HTTP 400") && out.contains("unexpected field"), "{out}");

    let closed = format!("http://127.0.0.1:{}/collector", free_port());
    let (code, out) = test_cmd(&closed, good).await;
    assert_eq!(code, 1);
    assert!(out.contains("connection refused"), "{out}");

    emu.push_fault(Fault::Hang(std::time::Duration::from_secs(5)));
    let (code, out) = test_cmd(&emu.url(), &format!("{good}  timeout: 500ms\n")).await;
    assert_eq!(code, 1);
    assert!(out.contains("did not answer within"), "{out}");
}

#[test]
fn status_without_an_agent_says_so() {
    let port = free_port();
    let (code, _, err) = cli(&["status", "--addr", &format!("127.0.0.1:{port}")]);
    assert_eq!(code, 2);
    assert!(err.contains("no agent answered"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_send_commands_talk_to_the_running_agent() {
    let emu = Emulator::start(EmulatorConfig::new(Kind::Generic)).await.unwrap();
    let env = TestEnv::new();
    env.write_config(&Cfg::new(&emu.url()));
    let agent = AgentProc::start(&env).await;
    let sock = env.socket.to_str().unwrap().to_string();
    let out = tokio::task::spawn_blocking(move || {
        let c = send_two_events(&sock, &[]);
        c.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "{\"accepted\":2,\"rejected\":0}");
    assert!(emu.wait_for_events(2, DEADLINE).await);
    agent.wait_status(DEADLINE, |s| s["state"] == "success").await;
    let conf = env.config.to_str().unwrap().to_string();
    let (code, out, _) = tokio::task::spawn_blocking(move || cli(&["status", "--config", &conf]))
        .await
        .unwrap();
    assert_eq!(code, 0);
    assert!(out.contains("State:            Success"), "{out}");
    let conf = env.config.to_str().unwrap().to_string();
    let (_, out, _) = tokio::task::spawn_blocking(move || cli(&["status", "--config", &conf, "--json"]))
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["state"], "success");
    for k in ["last_success_at", "last_error", "queue", "dead_letter", "quarantine", "config"] {
        assert!(v.get(k).is_some(), "missing {k}");
    }
    let (code, body) = get(agent.port, "/").await.unwrap();
    assert_eq!(code, 200);
    assert!(body.contains("<title>sendauth-siem status</title>"));
}

/// An agent that is stopped (SIGSTOP) never answers: `send` gives up after `--timeout` with a
/// non-zero exit and says the events may not be durable, instead of waiting forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_gives_up_after_its_timeout_when_the_agent_does_not_answer() {
    let emu = Emulator::start(EmulatorConfig::new(Kind::Generic)).await.unwrap();
    let env = TestEnv::new();
    env.write_config(&Cfg::new(&emu.url()));
    let agent = AgentProc::start(&env).await;
    agent.signal(libc::SIGSTOP);
    let stat = format!("/proc/{}/stat", agent.pid());
    let stopped = wait_until(DEADLINE, || {
        std::fs::read_to_string(&stat).is_ok_and(|s| s.rsplit(") ").next().is_some_and(|r| r.starts_with('T')))
    })
    .await;
    assert!(stopped, "the agent did not stop");
    let sock = env.socket.to_str().unwrap().to_string();
    let started = std::time::Instant::now();
    let out = tokio::task::spawn_blocking(move || {
        let mut c = send_two_events(&sock, &["--timeout", "2s"]);
        let end = std::time::Instant::now() + DEADLINE;
        while c.try_wait().unwrap().is_none() {
            if std::time::Instant::now() > end {
                let _ = c.kill();
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        c.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    let elapsed = started.elapsed();
    agent.signal(libc::SIGCONT);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(elapsed < DEADLINE, "send did not give up within {DEADLINE:?}: {err}");
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(out.stdout.is_empty(), "{}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(
        err.trim(),
        format!(
            "error: no answer from the agent at {} within 2s (waiting for its confirmation); the events may not be durable; resend them once the agent answers again (is it stopped, or stalled on its disk? see `sendauth-siem status`)",
            env.socket.display()
        )
    );
    // Resumed, the agent serves again.
    let answers = socket_send(&env.socket, &[event(2)]).await;
    assert_eq!(answers, vec![serde_json::json!({"accepted": 1, "rejected": 0})]);
}

/// Kubernetes mounts a ConfigMap as `config.yaml -> ..data/config.yaml`, `..data -> ..<ts>`, and
/// updates it by pointing a new `..data_tmp` symlink at a new directory and renaming it over
/// `..data`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configmap_symlink_swap_is_picked_up() {
    use std::os::unix::fs::symlink;
    let a = Emulator::start(EmulatorConfig::new(Kind::Generic)).await.unwrap();
    let b = Emulator::start(EmulatorConfig::new(Kind::Generic)).await.unwrap();
    let env = TestEnv::new();
    let cm = env.dir.path().join("configmap");
    std::fs::create_dir(&cm).unwrap();
    let v1 = cm.join("..2026_11_25_10_00_00.000000001");
    std::fs::create_dir(&v1).unwrap();
    std::fs::write(v1.join("config.yaml"), env.render(&Cfg::new(&a.url()))).unwrap();
    symlink(v1.file_name().unwrap(), cm.join("..data")).unwrap();
    symlink("..data/config.yaml", cm.join("config.yaml")).unwrap();
    let env2 = TestEnv {
        config: cm.join("config.yaml"),
        ..env
    };
    let agent = AgentProc::start(&env2).await;
    env2.append(&[event(0)]);
    assert!(a.wait_for_events(1, DEADLINE).await);

    let v2 = cm.join("..2026_11_25_10_05_00.000000002");
    std::fs::create_dir(&v2).unwrap();
    std::fs::write(v2.join("config.yaml"), env2.render(&Cfg::new(&b.url()))).unwrap();
    symlink(v2.file_name().unwrap(), cm.join("..data_tmp")).unwrap();
    std::fs::rename(cm.join("..data_tmp"), cm.join("..data")).unwrap();
    std::fs::remove_dir_all(&v1).unwrap();
    agent.wait_status(DEADLINE, |s| s["config"]["url"] == b.url()).await;
    env2.append(&[event(1)]);
    assert!(b.wait_for_events(1, DEADLINE).await);
    assert_eq!(a.event_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_config() {
    let a = Emulator::start(EmulatorConfig::new(Kind::Generic)).await.unwrap();
    let env = TestEnv::new();
    env.write_config(&Cfg::new(&a.url()));
    let agent = AgentProc::start(&env).await;
    // Write in place (same inode, as `cat > config.yaml` does), then SIGHUP.
    let mut c = Cfg::new(&a.url());
    c.siem = "  enabled: false\n".into();
    std::fs::write(&env.config, env.render(&c)).unwrap();
    agent.signal(libc::SIGHUP);
    agent.wait_status(DEADLINE, |s| s["state"] == "disabled").await;
}

/// `sendauth-siem send --socket SOCK ARGS` with two events on its stdin (closed after them), its
/// stdout and stderr piped.
fn send_two_events(sock: &str, args: &[&str]) -> std::process::Child {
    use std::io::Write;
    let mut c = std::process::Command::new(bin())
        .args(["send", "--socket", sock])
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin
        .take()
        .unwrap()
        .write_all(format!("{}\n{}\n", event(0), event(1)).as_bytes())
        .unwrap();
    c
}
