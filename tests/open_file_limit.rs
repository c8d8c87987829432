//! `sources.socket.max_connections` against the open-file limit (`RLIMIT_NOFILE`), through the
//! real binary started with a low limit: idle socket clients must never take the descriptors
//! the agent needs for `/health` and for writers.
//!
//! With `ulimit -n 64`, 100 idle clients used to make `/health` time out and block a normal
//! writer. Now the agent raises its soft limit to the hard limit when the config needs more, and
//! when the hard limit is too low, it accepts fewer clients and says what to change.

mod common;

use common::*;
use sendauth_siem_emulators::{Emulator, EmulatorConfig, Kind};
use serde_json::json;
use tokio::io::AsyncBufReadExt;
use tokio::net::UnixStream;

const IDLE_CLIENTS: usize = 100;

/// Default `max_connections` (1024) plus the agent's reserve (64 + 32 SIEM connections for
/// `max_in_flight: auto`).
const NEEDED: u64 = 1024 + 96;

/// Connects `n` clients that send nothing; each one's first answer line (or `None` at end of
/// stream) is sent on the channel when it comes.
async fn idle_clients(
    path: &std::path::Path,
    n: usize,
) -> (
    Vec<tokio::net::unix::OwnedWriteHalf>,
    tokio::sync::mpsc::UnboundedReceiver<Option<String>>,
) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let mut held = Vec::new();
    for _ in 0..n {
        let s = UnixStream::connect(path).await.expect("connect an idle client");
        let (rd, wr) = s.into_split();
        held.push(wr);
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(rd).lines();
            let first = lines.next_line().await.ok().flatten();
            let _ = tx.send(first);
        });
    }
    (held, rx)
}

async fn socket_connections(agent: &AgentProc) -> (u64, u64) {
    let s = agent.status().await;
    let sock = &s["sources"]["socket"];
    (
        sock["connections"].as_u64().unwrap_or(u64::MAX),
        sock["max_connections"].as_u64().unwrap_or(0),
    )
}

async fn health_answers(agent: &AgentProc) {
    let h = get(agent.port, "/health").await;
    assert_eq!(h.map(|(c, _)| c), Some(200), "/health must answer; log:\n{}", agent.logs());
}

fn soft_limit_of(pid: u32) -> String {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap().to_string();
    line.split_whitespace().nth(3).unwrap().to_string()
}

/// Soft limit 64, hard limit 4096: the agent raises its soft limit and serves every idle client,
/// `/health` and a normal writer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_low_soft_limit_is_raised_so_idle_clients_starve_nothing() {
    let emu = Emulator::start(EmulatorConfig::new(Kind::Generic)).await.unwrap();
    let env = TestEnv::new();
    env.write_config(&Cfg::new(&emu.url()));
    let agent = AgentProc::start_with_nofile(&env, 64, 4096).await;
    assert_eq!(soft_limit_of(agent.pid()), "4096");
    assert!(
        agent.logs().contains(&format!(
            "raised the open-file limit from 64 to 4096 (sources.socket.max_connections and the agent's own files need {NEEDED})"
        )),
        "{}",
        agent.logs()
    );

    let (_held, _answers) = idle_clients(&env.socket, IDLE_CLIENTS).await;
    let all_in = wait_until_async(DEADLINE, || async { socket_connections(&agent).await.0 == IDLE_CLIENTS as u64 }).await;
    assert!(
        all_in,
        "every idle client is accepted: {:?}; log:\n{}",
        socket_connections(&agent).await,
        agent.logs()
    );
    health_answers(&agent).await;
    let answers = tokio::time::timeout(DEADLINE, socket_send(&env.socket, &[event(0), event(1)]))
        .await
        .expect("a normal writer is answered");
    assert_eq!(answers, vec![json!({"accepted": 2, "rejected": 0})]);
    assert!(emu.wait_for_events(2, DEADLINE).await);
}

/// Soft and hard limit 64: the agent accepts only as many clients as fit beside its own files
/// (a quarter of the limit here), refuses the others at once with a clear answer, and says in
/// its log what to change. `/health` answers throughout, and a writer gets in when a slot frees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_low_hard_limit_caps_connections_and_keeps_health_and_writers_served() {
    let emu = Emulator::start(EmulatorConfig::new(Kind::Generic)).await.unwrap();
    let env = TestEnv::new();
    env.write_config(&Cfg::new(&emu.url()));
    let agent = AgentProc::start_with_nofile(&env, 64, 64).await;
    let cap = 16;
    let logs = agent.logs();
    assert!(
        logs.contains(&format!(
            "sources.socket.max_connections is 1024, but the open-file limit is 64 (hard limit 64) and the agent keeps about 96 for its own files and SIEM connections: accepting at most {cap} connections at once. To allow 1024, raise the limit to {NEEDED} (LimitNOFILE={NEEDED} in the systemd unit, or `ulimit -n {NEEDED}` before starting the agent) or lower sources.socket.max_connections"
        )),
        "{logs}"
    );
    assert_eq!(socket_connections(&agent).await.1, cap);

    let (held, mut answers) = idle_clients(&env.socket, IDLE_CLIENTS).await;
    let mut refused = Vec::new();
    while refused.len() < IDLE_CLIENTS - cap as usize {
        match tokio::time::timeout(DEADLINE, answers.recv()).await {
            Ok(Some(line)) => refused.push(line),
            _ => panic!(
                "only {} of {} extra clients were refused; log:\n{}",
                refused.len(),
                IDLE_CLIENTS - cap as usize,
                agent.logs()
            ),
        }
    }
    for line in &refused {
        let v: serde_json::Value = serde_json::from_str(line.as_deref().unwrap_or("null")).unwrap();
        assert_eq!(v["error"], "too many connections", "{line:?}");
        assert_eq!(v["max_connections"], cap, "{line:?}");
    }
    assert_eq!(socket_connections(&agent).await.0, cap);
    health_answers(&agent).await;
    // While every slot is taken, a writer is told so at once instead of hanging.
    let answers_now = tokio::time::timeout(DEADLINE, socket_send(&env.socket, &[event(0)]))
        .await
        .expect("a refused writer is answered");
    assert_eq!(answers_now.len(), 1, "{answers_now:?}");
    assert_eq!(answers_now[0]["error"], "too many connections");

    drop(held);
    let freed = wait_until_async(DEADLINE, || async { socket_connections(&agent).await.0 == 0 }).await;
    assert!(freed, "closed idle clients free their slots");
    let answers = tokio::time::timeout(DEADLINE, socket_send(&env.socket, &[event(1), event(2)]))
        .await
        .expect("a normal writer is answered");
    assert_eq!(answers, vec![json!({"accepted": 2, "rejected": 0})]);
    assert!(emu.wait_for_events(2, DEADLINE).await);
    health_answers(&agent).await;
}

/// `check-config` warns (and still passes) when this shell's hard limit cannot hold
/// `max_connections`, naming the key, the limit and what to change.
#[test]
fn check_config_warns_when_the_hard_limit_cannot_hold_max_connections() {
    let env = TestEnv::new();
    env.write_config(&Cfg::new("http://127.0.0.1:9/collector"));
    let run = |soft: u64, hard: u64| {
        let mut cmd = std::process::Command::new(bin());
        cmd.args(["check-config", "--config", env.config.to_str().unwrap()]);
        set_nofile(&mut cmd, soft, hard);
        let out = cmd.output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (code, out) = run(64, 64);
    assert_eq!(code, Some(0), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert_eq!(
        lines[0],
        format!(
            "{}: warning: sources.socket.max_connections: 1024 connections and the agent's own files need {NEEDED} open files, but the open-file limit here is 64 (hard limit); the agent would accept at most 16 connections at once. Raise it (LimitNOFILE={NEEDED} in the systemd unit, or `ulimit -n {NEEDED}` as root) or lower sources.socket.max_connections",
            env.config.display()
        )
    );
    assert!(lines[1].ends_with("OK (platform generic, http://127.0.0.1:9/collector)"), "{out}");
    // A soft limit below what is needed is no problem: the agent raises it.
    let (code, out) = run(64, NEEDED);
    assert_eq!((code, out.lines().count()), (Some(0), 1), "{out}");
}
