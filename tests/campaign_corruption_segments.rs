//! Queue-corruption campaign (docs/RELIABILITY.md): with the agent stopped and events pending,
//! damage the queue on disk (truncated or garbage `store/db`, garbage or deleted `store/conf`,
//! truncated or garbage segment file), then start the agent.
//!
//! Promise checked (ARCHITECTURE.md, queue): the agent starts (no crash loop), says in its log what is
//! wrong, and new events still flow. What survives of the pending events is measured and printed
//! (figures `kept_<case>`); `/status` `queue.incident` is printed for each case.

mod common;

use std::path::{Path, PathBuf};

use common::campaign::*;
use common::*;
use sendauth_siem_emulators::{Emulator, EmulatorConfig, Fault, Kind};

fn files_under(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut out = vec![];
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_under(&p, suffix));
            } else if p.to_string_lossy().ends_with(suffix) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn truncate(p: &Path) {
    let len = std::fs::metadata(p).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(p).unwrap();
    f.set_len(len / 2).unwrap();
}

fn garbage(p: &Path) {
    let len = std::fs::metadata(p).unwrap().len().max(64) as usize;
    let bytes: Vec<u8> = (0..len).map(|i| (i * 7919 % 251) as u8).collect();
    std::fs::write(p, bytes).unwrap();
}

async fn case(name: &str, damage: impl Fn(&Path), fig: &mut Figures) {
    let pending = 200;
    let emu = Emulator::start(EmulatorConfig::new(Kind::Generic)).await.unwrap();
    emu.set_fault(Some(Fault::Status {
        code: 503,
        body: "down".into(),
        headers: vec![],
    }));
    let env = TestEnv::new();
    let mut cfg = Cfg::new(&emu.url());
    cfg.socket = false;
    env.write_config(&cfg);
    env.append(&(0..pending).map(event).collect::<Vec<_>>());
    let mut agent = AgentProc::start(&env).await;
    agent.wait_status(DEADLINE, |s| s["queue"]["pending"] == pending).await;
    agent.term();
    damage(&env.queue);
    emu.set_fault(None);

    let agent = AgentProc::start(&env).await;
    env.append(&(pending..pending + 10).map(event).collect::<Vec<_>>());
    let new_ids = expected_ids(pending..pending + 10);
    let ok = wait_until(DEADLINE, || {
        let got: std::collections::HashSet<String> = tx_ids(&emu.events()).into_iter().collect();
        new_ids.iter().all(|i| got.contains(i))
    })
    .await;
    let status = agent.status().await;
    let logs = agent.logs();
    assert!(ok, "{name}: new events did not flow; status {status:#}\nlog:\n{logs}");
    let got = tx_ids(&emu.events());
    let kept = expected_ids(0..pending).iter().filter(|i| got.contains(i)).count();
    let incident = status["queue"]["incident"].clone();
    eprintln!("[corruption] {name}: kept {kept} of {pending}; incident {incident}");
    fig.set(&format!("kept_{name}"), kept);
    fig.set(&format!("incident_{name}"), incident.clone());
    if kept < pending {
        // Whatever was lost must be explained: in the status or at least the log.
        assert!(
            !incident.is_null() || logs.to_lowercase().contains("corrupt") || logs.contains("ERROR"),
            "{name}: lost {} pending events without a word; status {status:#}\nlog:\n{logs}",
            pending - kept
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_queue_never_stops_the_agent() {
    let mut fig = Figures::new("corruption");
    case("db_truncated", |q| truncate(&q.join("store/db")), &mut fig).await;
    case("db_garbage", |q| garbage(&q.join("store/db")), &mut fig).await;
    case("conf_garbage", |q| garbage(&q.join("store/conf")), &mut fig).await;
    case("conf_deleted", |q| std::fs::remove_file(q.join("store/conf")).unwrap(), &mut fig).await;
    case(
        "segment_truncated",
        |q| {
            let segs = files_under(&q.join("segments"), ".seg");
            assert!(!segs.is_empty(), "no segment files under {}", q.display());
            truncate(&segs[0]);
        },
        &mut fig,
    )
    .await;
    case(
        "segment_garbage",
        |q| {
            let segs = files_under(&q.join("segments"), ".seg");
            assert!(!segs.is_empty(), "no segment files under {}", q.display());
            garbage(&segs[0]);
        },
        &mut fig,
    )
    .await;
}
