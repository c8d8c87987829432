//! Reload-storm campaign (docs/RELIABILITY.md): while events flow, the config is rewritten
//! hundreds of times: valid variations (URL between two emulators, generic batch mode, enabled
//! true/false), invalid ones, half-written files completed a moment later, and ConfigMap-style
//! symlink swaps.
//!
//! Promise checked (design.md invariants 1, 2, reload): no event lost, none duplicated (the union
//! over both emulators holds every event once, each emulator in order), `reload_error` null after
//! a final valid config, and the agent's peak memory bounded.
//!
//! `CAMPAIGN=long` (or `CAMPAIGN_RELOADS=N`).

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::campaign::*;
use common::*;
use rand::{Rng, SeedableRng};
use sendauth_siem::emulator::{Emulator, EmulatorConfig, Kind};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_storm_loses_and_duplicates_nothing() {
    let reloads = size("reloads", 60, 500);
    let seed = seed("reload");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut fig = Figures::new("reload");
    fig.set("reloads", reloads);
    fig.set("seed", seed);
    let a = Emulator::start(EmulatorConfig::new(Kind::Generic)).await.unwrap();
    let b = Emulator::start(EmulatorConfig::new(Kind::Generic)).await.unwrap();
    let env = TestEnv::new();
    let mut cfg = Cfg::new(&a.url());
    cfg.socket = false;
    env.write_config(&cfg);
    std::fs::write(&env.events, b"").unwrap();
    let agent = AgentProc::start(&env).await;
    let pid = agent.pid();

    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicUsize::new(0));
    let load = {
        let (stop, written, path) = (stop.clone(), written.clone(), env.events.clone());
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                append_to(&path, &(i..i + 10).map(event).collect::<Vec<_>>());
                i += 10;
                written.store(i, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };

    let data = env.dir.path().join("..data");
    let mut kinds: HashMap<&str, usize> = HashMap::new();
    for r in 0..reloads {
        let mut c = cfg.clone();
        c.url = if rng.gen_bool(0.5) { a.url() } else { b.url() };
        let batch = ["none", "ndjson", "json_array"][rng.gen_range(0..3)];
        let enabled = rng.gen_bool(0.8);
        c.siem = format!("  enabled: {enabled}\n  generic:\n    batch: {batch}\n");
        let text = env.render(&c);
        let kind = match rng.gen_range(0..4) {
            0 => {
                env.write_config(&c);
                "valid"
            }
            1 => {
                env.write_config_text(&text.replace("url: ", "url: not a url "));
                "invalid"
            }
            2 => {
                // A non-atomic writer: a prefix, then (a moment later) the whole file.
                let cut = rng.gen_range(1..text.len());
                let _ = std::fs::remove_file(&env.config);
                std::fs::write(&env.config, &text[..cut]).unwrap();
                tokio::time::sleep(Duration::from_millis(rng.gen_range(0..30))).await;
                std::fs::write(&env.config, &text).unwrap();
                "half_written"
            }
            _ => {
                // ConfigMap: config.yaml -> ..data/config.yaml, ..data -> v<r>, swapped atomically.
                let dir = env.dir.path().join(format!("v{r}"));
                std::fs::create_dir(&dir).unwrap();
                std::fs::write(dir.join("config.yaml"), &text).unwrap();
                let tmp = env.dir.path().join("..data_tmp");
                let _ = std::fs::remove_file(&tmp);
                std::os::unix::fs::symlink(&dir, &tmp).unwrap();
                std::fs::rename(&tmp, &data).unwrap();
                if !std::fs::symlink_metadata(&env.config)
                    .map(|m| m.file_type().is_symlink())
                    .unwrap_or(false)
                {
                    let link = env.dir.path().join(".config_link_tmp");
                    let _ = std::fs::remove_file(&link);
                    std::os::unix::fs::symlink(data.join("config.yaml"), &link).unwrap();
                    std::fs::rename(&link, &env.config).unwrap();
                }
                "symlink_swap"
            }
        };
        *kinds.entry(kind).or_default() += 1;
        // Pace the storm (load pacing, not synchronisation).
        tokio::time::sleep(Duration::from_millis(rng.gen_range(5..40))).await;
    }
    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();
    let total = written.load(Ordering::Relaxed);

    // A final valid config towards B.
    let mut c = cfg.clone();
    c.url = b.url();
    env.write_config(&c);
    let burl = b.url();
    agent
        .wait_status(DEADLINE, |s| {
            s["config"]["reload_error"].is_null() && s["config"]["url"] == burl.as_str()
        })
        .await;
    let all = wait_until(DEADLINE * 2, || a.event_count() + b.event_count() >= total).await;
    agent.wait_status(DEADLINE, |s| s["queue"]["pending"] == 0).await;
    let ga = tx_ids(&a.events());
    let gb = tx_ids(&b.events());
    let want = expected_ids(0..total);
    let union: Vec<String> = ga.iter().chain(gb.iter()).cloned().collect();
    let v = Ledger {
        must: want.clone(),
        ..Default::default()
    }
    .judge(&union);
    let m = mem(pid).expect("agent running");
    fig.set("events", total);
    fig.set("to_a", ga.len());
    fig.set("to_b", gb.len());
    fig.set("kinds", serde_json::to_value(&kinds).unwrap());
    fig.set("lost", v.lost.len());
    fig.set("duplicate_copies", v.duplicate_copies);
    fig.set("vm_hwm_mib", m.hwm_kib / 1024);
    assert!(all, "{} of {total} arrived", union.len());
    assert!(v.lost.is_empty(), "lost {:?}", &v.lost[..v.lost.len().min(20)]);
    assert!(v.unexpected.is_empty(), "unexpected {:?}", v.unexpected);
    assert_eq!(v.duplicate_copies, 0, "duplicates {:?}", v.duplicates);
    for (name, got) in [("a", &ga), ("b", &gb)] {
        let nums: Vec<usize> = got.iter().map(|s| s[3..].parse().unwrap()).collect();
        assert!(nums.windows(2).all(|w| w[0] < w[1]), "emulator {name} out of order");
    }
    let s = agent.status().await;
    assert!(s["config"]["reload_error"].is_null(), "{s}");
    assert!(m.hwm_kib < 200 * 1024, "VmHWM {} MiB", m.hwm_kib / 1024);
}
