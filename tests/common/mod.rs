//! Test harness: drives the real `sendauth-siem` binary as a user would (config file, signals,
//! status API) against in-process SIEM emulators on 127.0.0.1.
//!
//! Waiting is always on a condition with a generous deadline (the suite runs on a loaded
//! 2-core machine), never a fixed sleep.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

pub const DEADLINE: Duration = Duration::from_secs(60);

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_sendauth-siem")
}

/// A valid SendAuth event with `transaction_id` `tx-{i}` (types rotate through all four).
pub fn event(i: usize) -> String {
    let types = [
        "transaction.created",
        "transaction.verified",
        "transaction.denied",
        "transaction.expired",
    ];
    format!(
        r#"{{"event_type":"{}","timestamp":"2025-01-28T10:30:{:02}.{:03}Z","transaction_id":"tx-{i}","subject":"user{}@company.com","ip_address":"203.0.113.{}","org_id":"org-1"}}"#,
        types[i % 4],
        i % 60,
        i % 1000,
        i % 13,
        i % 250
    )
}

/// The transaction ids of received events, in arrival order.
pub fn tx_ids(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["transaction_id"].as_str().unwrap_or("?").to_string())
        .collect()
}

/// The transaction ids of received events sorted by their number: with several requests in
/// flight (`delivery.max_in_flight: auto`) arrivals may reorder within what is in flight, so
/// "each event exactly once" compares this with `expected_ids`.
pub fn sorted_ids(events: &[Value]) -> Vec<String> {
    sort_tx_ids(tx_ids(events))
}

/// `tx-<n>` ids sorted by their number (see [`sorted_ids`]).
pub fn sort_tx_ids(mut ids: Vec<String>) -> Vec<String> {
    ids.sort_by_key(|id| id.strip_prefix("tx-").and_then(|n| n.parse::<u64>().ok()).unwrap_or(u64::MAX));
    ids
}

pub fn expected_ids(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("tx-{i}")).collect()
}

/// A port that is free now, for an agent's `status.listen`, which the agent may bind again after
/// a restart. Taken below the kernel's ephemeral range (32768-60999 here): a port the kernel
/// handed out with `:0` may be handed to another test's socket while our agent is stopped.
pub fn free_port() -> u16 {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    for _ in 0..1000 {
        let port = rng.gen_range(20_000..32_000);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Polls `f` every 20 ms until it is true or `timeout` passes.
pub async fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = tokio::time::Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if tokio::time::Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A temp directory with the paths a test agent uses.
pub struct TestEnv {
    pub dir: tempfile::TempDir,
    pub events: PathBuf,
    pub socket: PathBuf,
    pub queue: PathBuf,
    pub config: PathBuf,
    pub port: u16,
}

/// Config pieces a test may change; `render` produces the YAML.
#[derive(Clone)]
pub struct Cfg {
    pub url: String,
    /// Extra lines under `siem:` (indented by 2 spaces already).
    pub siem: String,
    pub file: bool,
    pub socket: bool,
    pub file_extra: String,
    pub max_event_bytes: Option<String>,
    pub queue_extra: String,
    pub delivery: String,
    pub extra: String,
}

impl Cfg {
    pub fn new(url: &str) -> Cfg {
        Cfg {
            url: url.to_string(),
            siem: String::new(),
            file: true,
            socket: true,
            file_extra: String::new(),
            max_event_bytes: None,
            queue_extra: String::new(),
            delivery: "  initial_backoff: 50ms\n  max_backoff: 300ms\n".into(),
            extra: String::new(),
        }
    }
}

impl TestEnv {
    pub fn new() -> TestEnv {
        let dir = tempfile::Builder::new().prefix("siem-test").tempdir().unwrap();
        TestEnv {
            events: dir.path().join("events.jsonl"),
            socket: dir.path().join("siem.sock"),
            queue: dir.path().join("queue"),
            config: dir.path().join("config.yaml"),
            port: free_port(),
            dir,
        }
    }

    pub fn render(&self, c: &Cfg) -> String {
        let mut s = format!("siem:\n  url: {}\n{}", c.url, c.siem);
        s.push_str("sources:\n");
        if c.file {
            s.push_str(&format!(
                "  file:\n    path: {}\n    poll_interval: 50ms\n{}",
                self.events.display(),
                c.file_extra
            ));
        }
        if c.socket {
            s.push_str(&format!("  socket:\n    path: {}\n", self.socket.display()));
        }
        if let Some(m) = &c.max_event_bytes {
            s.push_str(&format!("  max_event_bytes: {m}\n"));
        }
        s.push_str(&format!("queue:\n  path: {}\n{}", self.queue.display(), c.queue_extra));
        s.push_str(&format!("delivery:\n{}", c.delivery));
        s.push_str(&format!("status:\n  listen: 127.0.0.1:{}\n", self.port));
        s.push_str(&c.extra);
        s
    }

    /// Writes the config atomically (write + rename, as editors do).
    pub fn write_config(&self, c: &Cfg) {
        self.write_config_text(&self.render(c));
    }

    pub fn write_config_text(&self, text: &str) {
        let tmp = self.dir.path().join(".config.yaml.tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &self.config).unwrap();
    }

    pub fn append(&self, lines: &[String]) {
        append_to(&self.events, lines);
    }
}

pub fn append_to(path: &Path, lines: &[String]) {
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
    let mut buf = String::new();
    for l in lines {
        buf.push_str(l);
        buf.push('\n');
    }
    f.write_all(buf.as_bytes()).unwrap();
}

/// The agent process.
pub struct AgentProc {
    child: Option<Child>,
    pub port: u16,
    pub log: PathBuf,
}

impl AgentProc {
    /// Starts `sendauth-siem run` and waits until `/health` answers.
    pub async fn start(env: &TestEnv) -> AgentProc {
        Self::start_with_env(env, &[]).await
    }

    pub async fn start_with_env(env: &TestEnv, vars: &[(&str, &str)]) -> AgentProc {
        Self::start_with_command(env, vars, |_| {}).await
    }

    /// Starts the agent with its open-file limit (`RLIMIT_NOFILE`) set to `soft` and `hard`.
    pub async fn start_with_nofile(env: &TestEnv, soft: u64, hard: u64) -> AgentProc {
        Self::start_with_command(env, &[], |cmd| set_nofile(cmd, soft, hard)).await
    }

    /// Starts the agent with `vars` and whatever `configure` changes in its command.
    pub async fn start_with_command(env: &TestEnv, vars: &[(&str, &str)], configure: impl FnOnce(&mut Command)) -> AgentProc {
        let log = env.dir.path().join(format!(
            "agent-{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let logf = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(bin());
        cmd.arg("run")
            .arg("--config")
            .arg(&env.config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(logf)
            .env("RUST_LOG", "info");
        for (k, v) in vars {
            cmd.env(k, v);
        }
        configure(&mut cmd);
        let child = cmd.spawn().expect("spawn agent");
        let mut a = AgentProc {
            child: Some(child),
            port: env.port,
            log,
        };
        let ok = wait_until_async(DEADLINE, || async {
            get(a.port, "/health").await.map(|(c, _)| c == 200).unwrap_or(false)
        })
        .await;
        if !ok {
            let status = a.child.as_mut().unwrap().try_wait().ok().flatten();
            panic!("agent did not become healthy (exit: {status:?}); log:\n{}", a.logs());
        }
        a
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub async fn status(&self) -> Value {
        let (_, body) = get(self.port, "/status").await.expect("status answers");
        serde_json::from_str(&body).unwrap()
    }

    /// Waits until `/status` satisfies `pred`; returns the last status seen.
    pub async fn wait_status(&self, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        let end = tokio::time::Instant::now() + timeout;
        loop {
            let s = self.status().await;
            if pred(&s) {
                return s;
            }
            if tokio::time::Instant::now() >= end {
                panic!(
                    "status condition not met within {timeout:?}; last status:\n{s:#}\nlog:\n{}",
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe {
                libc::kill(c.id() as i32, libc::SIGKILL);
            }
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub fn term(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        unsafe {
            libc::kill(c.id() as i32, libc::SIGTERM);
        }
        let end = std::time::Instant::now() + DEADLINE;
        loop {
            if let Some(s) = c.try_wait().unwrap() {
                return s;
            }
            if std::time::Instant::now() > end {
                let _ = c.kill();
                panic!("agent did not stop within {DEADLINE:?} after SIGTERM; log:\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the process to exit by itself; its exit status, or None after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let end = std::time::Instant::now() + timeout;
        loop {
            let c = self.child.as_mut()?;
            if let Some(s) = c.try_wait().unwrap() {
                self.child = None;
                return Some(s);
            }
            if std::time::Instant::now() > end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn signal(&self, sig: i32) {
        unsafe {
            libc::kill(self.pid() as i32, sig);
        }
    }
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub async fn wait_until_async<F, Fut>(timeout: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = tokio::time::Instant::now() + timeout;
    loop {
        if f().await {
            return true;
        }
        if tokio::time::Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// GET http://127.0.0.1:port{path}
pub async fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().ok()?;
    let r = client.get(format!("http://127.0.0.1:{port}{path}")).send().await.ok()?;
    let code = r.status().as_u16();
    Some((code, r.text().await.ok()?))
}

/// Sends lines over the socket, shuts down the write side and returns every answer line.
pub async fn socket_send(path: &Path, lines: &[String]) -> Vec<Value> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let s = tokio::net::UnixStream::connect(path).await.expect("connect to agent socket");
    let (rd, mut wr) = s.into_split();
    let mut buf = String::new();
    for l in lines {
        buf.push_str(l);
        buf.push('\n');
    }
    // An agent that refuses the connection (too many connections) answers and closes at once:
    // the write may then fail with EPIPE although its answer is waiting to be read. What the
    // agent said is what the callers check.
    if wr.write_all(buf.as_bytes()).await.is_ok() {
        let _ = wr.shutdown().await;
    }
    let mut out = Vec::new();
    let mut r = BufReader::new(rd).lines();
    while let Ok(Ok(Some(l))) = tokio::time::timeout(DEADLINE, r.next_line()).await {
        out.push(serde_json::from_str(&l).unwrap_or(Value::String(l)));
    }
    out
}

/// Makes `cmd`'s process start with the open-file limit (`RLIMIT_NOFILE`) `soft` / `hard`.
pub fn set_nofile(cmd: &mut Command, soft: u64, hard: u64) {
    use std::os::unix::process::CommandExt;
    // SAFETY: only setrlimit runs between fork and exec, which is async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            let r = libc::rlimit {
                rlim_cur: soft,
                rlim_max: hard,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &r) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Runs the CLI with args; returns (exit code, stdout, stderr).
pub fn cli(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin()).args(args).stdin(Stdio::null()).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `sendauth-siem test` with a config rendered from `c`; returns (exit code, stdout+stderr).
pub async fn run_test_command(c: &Cfg) -> (i32, String) {
    let env = TestEnv::new();
    env.write_config(c);
    let conf = env.config.to_str().unwrap().to_string();
    let (code, out, err) = tokio::task::spawn_blocking(move || cli(&["test", "--config", &conf]))
        .await
        .unwrap();
    (code, format!("{out}{err}"))
}

/// `sendauth-siem dead-letter list --json`, one value per entry.
pub fn dead_letters(env: &TestEnv) -> Vec<Value> {
    let (code, out, err) = cli(&["dead-letter", "list", "--config", env.config.to_str().unwrap(), "--json"]);
    assert_eq!(code, 0, "dead-letter list failed: {out}{err}");
    out.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// The value of an unlabelled Prometheus sample from `/metrics`.
pub async fn metric(port: u16, name: &str) -> f64 {
    let (_, text) = get(port, "/metrics").await.expect("metrics answer");
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no metric {name} in:\n{text}"))
}

/// Asserts that none of `secrets` shows up in the agent's log, status or metrics.
pub async fn assert_no_secrets(agent: &AgentProc, secrets: &[&str]) {
    let logs = agent.logs();
    let status = agent.status().await.to_string();
    let metrics = get(agent.port, "/metrics").await.unwrap().1;
    for s in secrets {
        assert!(!logs.contains(s), "secret {s:?} in the log:\n{logs}");
        assert!(!status.contains(s), "secret {s:?} in the status: {status}");
        assert!(!metrics.contains(s), "secret {s:?} in the metrics");
    }
}

/// An RFC 3339 timestamp as epoch seconds (what Splunk's `time` must hold).
pub fn epoch_seconds(ts: &str) -> f64 {
    chrono::DateTime::parse_from_rfc3339(ts).unwrap().timestamp_millis() as f64 / 1000.0
}

/// The event `event(i)` as JSON.
pub fn event_json(i: usize) -> Value {
    serde_json::from_str(&event(i)).unwrap()
}

/// The POST requests whose path (with query) starts with `prefix`, in the order answered.
/// Waits until events `0..n` reached `emu`, the agent settled (`success`, nothing pending),
/// and checks each arrived exactly once. Returns the last status.
pub async fn every_event_arrives_once(emu: &sendauth_siem_emulators::Emulator, agent: &AgentProc, n: usize) -> Value {
    assert!(
        emu.wait_for_events(n, DEADLINE).await,
        "got {}: {}",
        emu.event_count(),
        agent.logs()
    );
    let s = agent
        .wait_status(DEADLINE, |s| s["state"] == "success" && s["queue"]["pending"] == 0)
        .await;
    assert_eq!(emu.event_count(), n, "each event once");
    assert_eq!(sorted_ids(&emu.events()), expected_ids(0..n));
    s
}

pub fn ingest_requests(reqs: &[sendauth_siem_emulators::RecordedRequest], prefix: &str) -> Vec<sendauth_siem_emulators::RecordedRequest> {
    reqs.iter()
        .filter(|r| r.method == "POST" && r.path.starts_with(prefix))
        .cloned()
        .collect()
}
pub mod campaign;
