//! Queue-corruption campaign (docs/RELIABILITY.md): the agent starts on a damaged or truncated
//! sled directory. It must not crash-loop silently: it says what is wrong, keeps what it can,
//! and `/status` shows it (`queue.incident`).

mod common;

use std::path::Path;
use std::time::Duration;

use common::campaign::*;
use common::*;
use sendauth_siem_emulators::{Emulator, EmulatorConfig, Fault, Kind};

/// Builds a queue holding `n` undelivered events (plus a few large ones, which sled stores as
/// blob files), then stops the agent.
async fn queue_with_backlog(env: &TestEnv, emu: &Emulator, n: usize, kill: bool) {
    emu.set_fault(Some(Fault::Status {
        code: 503,
        body: String::new(),
        headers: vec![],
    }));
    let mut cfg = Cfg::new(&emu.url());
    cfg.siem = "  generic:\n    batch: ndjson\n    max_batch_events: 100\n".into();
    env.write_config(&cfg);
    let mut agent = AgentProc::start(env).await;
    let mut lines: Vec<String> = (0..n).map(event).collect();
    // Three events over sled's inline limit: they live in blob files.
    for (k, i) in [n / 4, n / 2, 3 * n / 4].into_iter().enumerate() {
        lines[i] = padded_event(i, 200_000 + k);
    }
    // Through the socket, so that re-reading the file cannot hide what the queue lost.
    send_all_accepted(&env.socket, &lines, 500).await;
    agent
        .wait_status(DEADLINE, |s| s["queue"]["pending"].as_u64() == Some(n as u64))
        .await;
    if kill {
        agent.kill9();
    } else {
        assert!(agent.term().success());
    }
    emu.set_fault(None);
}

struct Outcome {
    pending: Option<u64>,
    healthy: bool,
    incident: serde_json::Value,
    delivered: usize,
    alive_after: bool,
    note: String,
}

/// Starts the agent on the damaged queue and lets it deliver.
async fn start_and_observe(env: &TestEnv, emu: &Emulator) -> Outcome {
    // Not AgentProc::start: it panics when the agent never gets healthy, which is an outcome here.
    let res = tokio::time::timeout(Duration::from_secs(30), AgentProc::start(env)).await;
    let Ok(mut agent) = res else {
        return Outcome {
            pending: None,
            healthy: false,
            incident: serde_json::Value::Null,
            delivered: emu.event_count(),
            alive_after: false,
            note: "did not become healthy within 30s".into(),
        };
    };
    let s = agent.status().await;
    let incident = s["queue"]["incident"].clone();
    // Let it deliver what it has: until nothing is pending, or 20 s.
    for _ in 0..100 {
        match get(agent.port, "/status").await {
            Some((_, b))
                if serde_json::from_str::<serde_json::Value>(&b)
                    .map(|v| v["queue"]["pending"] == 0)
                    .unwrap_or(false) =>
            {
                break
            }
            None => break,
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    let exit = agent.wait_exit(Duration::from_millis(10));
    let alive_after = exit.is_none() && get(agent.port, "/health").await.is_some();
    let s = if alive_after {
        agent.status().await
    } else {
        serde_json::Value::Null
    };
    let note = format!(
        "exit {exit:?} pending {} last_error {} incident {} state {} | log tail: {}",
        s["queue"]["pending"],
        s["last_error"],
        s["queue"]["incident"],
        s["state"],
        agent
            .logs()
            .lines()
            .filter(|l| !l.contains(" INFO "))
            .rev()
            .take(12)
            .collect::<Vec<_>>()
            .join(" // ")
    );
    Outcome {
        pending: s["queue"]["pending"].as_u64(),
        healthy: true,
        incident: if incident.is_null() {
            s["queue"]["incident"].clone()
        } else {
            incident
        },
        delivered: tx_ids(&emu.events()).into_iter().collect::<std::collections::HashSet<_>>().len(),
        alive_after,
        note,
    }
}

fn store(env: &TestEnv) -> std::path::PathBuf {
    env.queue.join("store")
}

type Damage = fn(&Path);

fn truncate_db_half(store: &Path) {
    let db = store.join("db");
    let len = std::fs::metadata(&db).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&db).unwrap().set_len(len / 2).unwrap();
}
fn truncate_db_tail(store: &Path) {
    let db = store.join("db");
    let len = std::fs::metadata(&db).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&db)
        .unwrap()
        .set_len(len.saturating_sub(1000))
        .unwrap();
}
fn truncate_db_zero(store: &Path) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(store.join("db"))
        .unwrap()
        .set_len(0)
        .unwrap();
}
fn remove_conf(store: &Path) {
    std::fs::remove_file(store.join("conf")).unwrap();
}
fn garbage_conf(store: &Path) {
    std::fs::write(store.join("conf"), b"\x00garbage\xff").unwrap();
}
fn garbage_in_db_middle(store: &Path) {
    use std::os::unix::fs::FileExt;
    let db = store.join("db");
    let len = std::fs::metadata(&db).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&db).unwrap();
    f.write_all_at(&vec![0x5Au8; 64 * 1024], len / 3).unwrap();
}
fn garbage_blobs(store: &Path) {
    for e in std::fs::read_dir(store.join("blobs")).unwrap().flatten() {
        std::fs::write(e.path(), b"not a blob").unwrap();
    }
}
fn remove_blobs(store: &Path) {
    for e in std::fs::read_dir(store.join("blobs")).unwrap().flatten() {
        std::fs::remove_file(e.path()).unwrap();
    }
}
fn remove_store_dir(store: &Path) {
    std::fs::remove_dir_all(store).unwrap();
}

fn truncate_db_at(store: &Path, frac: f64) {
    let db = store.join("db");
    let len = std::fs::metadata(&db).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&db)
        .unwrap()
        .set_len((len as f64 * frac) as u64)
        .unwrap();
}
fn truncate_db_quarter(store: &Path) {
    truncate_db_at(store, 0.25)
}
fn truncate_db_three_quarters(store: &Path) {
    truncate_db_at(store, 0.75)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_queue_at_start_is_reported_not_crash_looped() {
    let n = size("corruption_events", 2000, 20000);
    let mut fig = Figures::new("queue_corruption");
    let cases: Vec<(&str, Damage)> = vec![
        ("truncate_db_quarter", truncate_db_quarter),
        ("truncate_db_half", truncate_db_half),
        ("truncate_db_three_quarters", truncate_db_three_quarters),
        ("truncate_db_tail_1000_bytes", truncate_db_tail),
        ("truncate_db_to_zero", truncate_db_zero),
        ("remove_conf", remove_conf),
        ("garbage_conf", garbage_conf),
        ("garbage_64k_in_db_middle", garbage_in_db_middle),
        ("garbage_blob_files", garbage_blobs),
        ("remove_blob_files", remove_blobs),
        ("remove_store_dir", remove_store_dir),
    ];
    let mut failures = Vec::new();
    for (name, damage) in cases {
        for kill in [false, true] {
            let emu = Emulator::start(EmulatorConfig::new(Kind::Generic)).await.unwrap();
            let env = TestEnv::new();
            queue_with_backlog(&env, &emu, n, kill).await;
            damage(&store(&env));
            let o = start_and_observe(&env, &emu).await;
            let case = format!("{name}{}", if kill { "_after_sigkill" } else { "" });
            let summary = format!(
                "healthy={} alive={} delivered={}/{n} pending_after={:?} incident={}",
                o.healthy,
                o.alive_after,
                o.delivered,
                o.pending,
                if o.incident.is_null() {
                    "none".to_string()
                } else {
                    o.incident.as_str().unwrap_or("").chars().take(160).collect()
                }
            );
            eprintln!("CASE {case}: {summary}");
            fig.set(&case, summary.clone());
            // The promise: up and running, nothing stuck, and any loss is reported.
            if !(o.healthy && o.alive_after) {
                failures.push(format!("{case}: the agent is not running: {}", o.note));
            } else if o.pending != Some(0) {
                failures.push(format!("{case}: delivery is stuck with events pending: {}", o.note));
            } else if o.delivered < n && o.incident.is_null() {
                failures.push(format!("{case}: {} events silently lost: {}", n - o.delivered, o.note));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
