//! Reload-storm campaign (docs/RELIABILITY.md): hundreds of config rewrites (valid, invalid,
//! half-written, renamed over, Kubernetes-style symlink swaps; the SIEM URL switching between
//! two receivers, sources restarting) while events arrive on the file and the socket.
//!
//! Promise checked (ARCHITECTURE.md invariant 6): no loss, no duplicate, no stuck state, bounded
//! memory; an invalid config never replaces a valid one.

mod common;

use std::collections::VecDeque;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::campaign::*;
use common::*;
use rand::{Rng, SeedableRng};
use sendauth_siem_emulators::{Emulator, EmulatorConfig, Kind};

const SOCKET_BASE: usize = 50_000_000;

/// A valid config that differs from the last in several sections.
fn valid(env: &TestEnv, url: &str, rng: &mut impl Rng) -> String {
    let mut c = Cfg::new(url);
    let batch = ["none", "ndjson", "json_array"][rng.gen_range(0..3)];
    c.siem = format!(
        "  timeout: {}s\n  generic:\n    batch: {batch}\n    max_batch_events: {}\n",
        rng.gen_range(2..10),
        rng.gen_range(1..200)
    );
    // Changing these restarts the file or socket source.
    c.file_extra = format!("    poll_interval: {}ms\n", rng.gen_range(20..200));
    c.queue_extra = format!("  max_quarantine_entries: {}\n", rng.gen_range(100..10000));
    c.delivery = format!("  initial_backoff: {}ms\n  max_backoff: 1s\n", rng.gen_range(10..200));
    let mut text = env.render(&c);
    // render() already wrote a poll_interval: keep the random one only.
    text = text.replacen("    poll_interval: 50ms\n", "", 1);
    if rng.gen_bool(0.3) {
        text = text.replace(
            &format!("  socket:\n    path: {}\n", env.socket.display()),
            &format!(
                "  socket:\n    path: {}\n    idle_timeout: {}s\n",
                env.socket.display(),
                rng.gen_range(5..60)
            ),
        );
    }
    text
}

fn invalid(text: &str, rng: &mut impl Rng) -> String {
    match rng.gen_range(0..4) {
        0 => text.replace("delivery:\n", "delivery:\n  max_retriez: 3\n"),
        1 => text.replace("siem:\n", "siem:\n  platform: splonk\n"),
        2 => format!("{text}\n  : : not yaml ["),
        _ => text.replace("batch:", "batch: [1, 2]\n    x:"),
    }
}

fn write_in_place(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

/// Writes half, pauses (the agent may read the half), then the rest.
fn write_half(path: &Path, text: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().write(true).truncate(true).open(path).unwrap();
    let (a, b) = text.split_at(text.len() / 2);
    f.write_all(a.as_bytes()).unwrap();
    f.flush().unwrap();
    std::thread::sleep(Duration::from_millis(rand::thread_rng().gen_range(0..300)));
    f.write_all(b.as_bytes()).unwrap();
}

fn rename_over(dir: &Path, path: &Path, text: &str) {
    let tmp = dir.join(".cfg.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Kubernetes ConfigMap: `config.yaml -> ..data/config.yaml`, `..data -> ..<version>`, swapped
/// by renaming a new `..data` symlink over the old one.
fn symlink_swap(dir: &Path, path: &Path, text: &str, version: usize) {
    let v = dir.join(format!("..v{version}"));
    std::fs::create_dir(&v).unwrap();
    std::fs::write(v.join("config.yaml"), text).unwrap();
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    symlink(v.file_name().unwrap(), &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    if !std::fs::symlink_metadata(path).map(|m| m.file_type().is_symlink()).unwrap_or(false) {
        let t = dir.join(".cfg.link");
        let _ = std::fs::remove_file(&t);
        symlink("..data/config.yaml", &t).unwrap();
        std::fs::rename(&t, path).unwrap();
    }
    // Old versions go away, as the kubelet removes them.
    if version >= 2 {
        let _ = std::fs::remove_dir_all(dir.join(format!("..v{}", version - 2)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_config_rewrites_under_load_lose_and_duplicate_nothing() {
    let rewrites = size("reload_rewrites", 80, 600);
    let mut fig = Figures::new("reload_storm");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed("reload_storm"));
    let a = Emulator::start(EmulatorConfig::new(Kind::Generic)).await.unwrap();
    let b = Emulator::start(EmulatorConfig::new(Kind::Generic)).await.unwrap();
    let urls = [a.url(), b.url()];
    let env = TestEnv::new();
    let cfgdir = env.dir.path().join("cm");
    std::fs::create_dir(&cfgdir).unwrap();
    let env = TestEnv {
        config: cfgdir.join("config.yaml"),
        ..env
    };
    let first = valid(&env, &urls[0], &mut rng);
    rename_over(&cfgdir, &env.config, &first);
    let agent = AgentProc::start(&env).await;
    let sampler = MemSampler::start(agent.pid(), Duration::from_millis(250));

    // Load: the file at a steady rate; the socket as a careful client that resends what the
    // agent did not acknowledge (a full queue refuses lines; reloads no longer cut connections).
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicUsize::new(0));
    let file_thread = {
        let (stop, written, path) = (stop.clone(), written.clone(), env.events.clone());
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                append_to(&path, &(i..i + 5).map(event).collect::<Vec<_>>());
                i += 5;
                written.store(i, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let sock_task = {
        let (stop, path) = (stop.clone(), env.socket.clone());
        tokio::spawn(async move {
            let mut accepted = Vec::new();
            let mut maybe = Vec::new();
            let mut todo: VecDeque<usize> = VecDeque::new();
            let mut next = SOCKET_BASE;
            let mut resends = 0;
            while !stop.load(Ordering::Relaxed) || !todo.is_empty() {
                while todo.len() < 5 && !stop.load(Ordering::Relaxed) {
                    todo.push_back(next);
                    next += 1;
                }
                let ids: Vec<usize> = todo.iter().copied().collect();
                let lines: Vec<String> = ids.iter().map(|i| event(*i)).collect();
                match socket_try_send(&path, &lines, Duration::from_secs(10)).await.0 {
                    SockOutcome::Answered { accepted: n, .. } => {
                        let n = n as usize;
                        accepted.extend(ids[..n].iter().map(|i| format!("tx-{i}")));
                        todo.drain(..n);
                        resends += usize::from(n < ids.len());
                    }
                    SockOutcome::NotConnected => resends += 1,
                    SockOutcome::NoAnswer => {
                        maybe.extend(ids.iter().map(|i| format!("tx-{i}")));
                        todo.clear();
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            (accepted, maybe, resends)
        })
    };

    let mut kinds = std::collections::BTreeMap::<&str, usize>::new();
    let mut current = first;
    let t = Instant::now();
    for k in 0..rewrites {
        let url = &urls[rng.gen_range(0..2)];
        let text = valid(&env, url, &mut rng);
        let kind = match rng.gen_range(0..10) {
            0 | 1 => {
                rename_over(&cfgdir, &env.config, &invalid(&current, &mut rng));
                "invalid"
            }
            2 | 3 => {
                write_half(&env.config, &text);
                current = text;
                "half_written"
            }
            4 | 5 => {
                symlink_swap(&cfgdir, &env.config, &text, k);
                current = text;
                "symlink_swap"
            }
            6 => {
                write_in_place(&env.config, &text);
                current = text;
                "in_place"
            }
            _ => {
                rename_over(&cfgdir, &env.config, &text);
                current = text;
                "rename"
            }
        };
        *kinds.entry(kind).or_default() += 1;
        tokio::time::sleep(Duration::from_millis(rng.gen_range(10..120))).await;
        if k % 20 == 0 {
            // The agent answers throughout.
            assert!(
                get(agent.port, "/health").await.is_some(),
                "agent down during the storm\n{}",
                agent.logs()
            );
        }
    }
    // The last word is a valid config: it must be applied, and nothing may be stuck.
    let last_url = urls[0].clone();
    let text = valid(&env, &last_url, &mut rng);
    rename_over(&cfgdir, &env.config, &text);
    agent
        .wait_status(DEADLINE, |s| {
            s["config"]["url"] == last_url.as_str() && s["config"]["reload_error"].is_null()
        })
        .await;
    let storm = t.elapsed();
    stop.store(true, Ordering::Relaxed);
    file_thread.join().unwrap();
    let (sock_accepted, sock_maybe, resends) = sock_task.await.unwrap();
    let n = written.load(Ordering::Relaxed);
    let mut ledger = Ledger {
        must: expected_ids(0..n),
        ..Default::default()
    };
    ledger.must.extend(sock_accepted.iter().cloned());
    ledger.maybe.extend(sock_maybe.iter().cloned());
    let all = || {
        let mut v = tx_ids(&a.events());
        v.extend(tx_ids(&b.events()));
        v
    };
    let arrived = wait_until(DEADLINE * 2, || ledger.judge(&all()).lost.is_empty()).await;
    let s = agent.wait_status(DEADLINE, |s| s["queue"]["pending"] == 0).await;
    let samples = sampler.finish();
    let got = all();
    let v = ledger.judge(&got);
    let metrics = get(agent.port, "/metrics").await.unwrap().1;
    let metric = |name: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().last())
            .unwrap_or("?")
            .to_string()
    };
    fig.set("rewrites", rewrites);
    fig.set("rewrite_kinds", serde_json::to_value(&kinds).unwrap());
    fig.secs("storm_seconds", storm);
    fig.set("reloads_applied", metric("sendauth_siem_config_reloads_total{result=\"applied\"}"));
    fig.set(
        "reloads_rejected",
        metric("sendauth_siem_config_reloads_total{result=\"rejected\"}"),
    );
    fig.set("file_events", n);
    fig.set("socket_events_acknowledged", sock_accepted.len());
    fig.set("socket_resends_after_cut_or_refused_connection", resends);
    fig.set("socket_events_unanswered", sock_maybe.len());
    fig.set("received_by_siem_a", a.event_count());
    fig.set("received_by_siem_b", b.event_count());
    fig.set("lost", v.lost.len());
    fig.set("duplicates", v.duplicate_copies);
    fig.set("rss_max_mib", samples.iter().map(|m| m.rss_kib).max().unwrap_or(0) / 1024);
    fig.set("quarantined", s["quarantine"]["count"].clone());
    assert!(
        arrived && v.lost.is_empty(),
        "lost {} e.g. {:?}\n{}",
        v.lost.len(),
        &v.lost[..v.lost.len().min(10)],
        agent.logs()
    );
    assert!(v.unexpected.is_empty(), "{:?}", v.unexpected);
    assert_eq!(
        v.duplicate_copies,
        0,
        "a config change duplicated {:?}",
        v.duplicates.keys().take(10).collect::<Vec<_>>()
    );
    assert_eq!(s["quarantine"]["count"], 0, "no half line may be read across a source restart");
    // Order: within each receiver's stream, file events and socket events each arrive in the
    // order they were accepted (the URL switches split the stream between the two), up to what
    // may be in flight (ARCHITECTURE.md invariant 4: at most 200 events per request here).
    for (name, emu) in [("a", &a), ("b", &b)] {
        let nums: Vec<usize> = tx_ids(&emu.events())
            .iter()
            .filter_map(|g| g.strip_prefix("tx-")?.parse().ok())
            .collect();
        for part in [
            nums.iter().filter(|i| **i < SOCKET_BASE).collect::<Vec<_>>(),
            nums.iter().filter(|i| **i >= SOCKET_BASE).collect(),
        ] {
            let mut highest = 0usize;
            for i in &part {
                assert!(
                    **i + 200 * IN_FLIGHT_REQUESTS >= highest,
                    "receiver {name}: tx-{i} arrived after tx-{highest}, later than what may be in flight"
                );
                highest = highest.max(**i);
            }
        }
    }
    assert!(
        samples.iter().map(|m| m.rss_kib).max().unwrap_or(0) < 256 * 1024,
        "memory not bounded"
    );
}

/// Issue 10 item 3: a writer that keeps one connection open and never reads its answers, while
/// the config is reloaded eight times with socket settings changed each time (idle timeout,
/// mode: a mode change rebinds the path), loses nothing: its stream is never cut, every line is
/// accepted and arrives, and a second writer probing the path never finds it missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_that_change_socket_settings_never_cut_a_persistent_writer() {
    use std::io::{Read, Write};
    let emu = Emulator::start(EmulatorConfig::new(Kind::Generic)).await.unwrap();
    let env = TestEnv::new();
    let c = Cfg {
        file: false,
        ..Cfg::new(&emu.url())
    };
    let base = env.render(&c);
    let with_socket = |idle: u64, mode: &str| {
        base.replace(
            &format!("  socket:\n    path: {}\n", env.socket.display()),
            &format!(
                "  socket:\n    path: {}\n    idle_timeout: {idle}s\n    mode: \"{mode}\"\n",
                env.socket.display()
            ),
        )
    };
    env.write_config_text(&with_socket(30, "0600"));
    let agent = AgentProc::start(&env).await;
    assert!(wait_until(DEADLINE, || env.socket.exists()).await, "{}", agent.logs());

    let mut writer = std::os::unix::net::UnixStream::connect(&env.socket).unwrap();
    // A prober: a second writer that connects over and over must always find the socket.
    let stop = Arc::new(AtomicBool::new(false));
    let prober = {
        let (stop, path) = (stop.clone(), env.socket.clone());
        std::thread::spawn(move || {
            let (mut ok, mut missing) = (0usize, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                match std::os::unix::net::UnixStream::connect(&path) {
                    Ok(s) => {
                        ok += 1;
                        drop(s);
                    }
                    Err(e) => missing.push(e.to_string()),
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            (ok, missing)
        })
    };
    let reloads = 8;
    let per_round = 60;
    let mut sent = 0;
    for k in 0..reloads {
        let lines: String = (sent..sent + per_round).map(|i| event(i) + "\n").collect();
        writer.write_all(lines.as_bytes()).expect("the agent cut the writer's connection");
        sent += per_round;
        let applied_before = metric(agent.port, "sendauth_siem_config_reloads_total{result=\"applied\"}").await;
        let mode = if k % 2 == 0 { "0660" } else { "0600" };
        env.write_config_text(&with_socket(31 + k as u64, mode));
        let port = agent.port;
        let mut applied = false;
        let t = Instant::now();
        while t.elapsed() < DEADLINE {
            if metric(port, "sendauth_siem_config_reloads_total{result=\"applied\"}").await > applied_before {
                applied = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(applied, "reload {k} was not applied\n{}", agent.logs());
        // Lines written right after the reload too, before the writer could notice anything.
        let lines: String = (sent..sent + per_round).map(|i| event(i) + "\n").collect();
        writer.write_all(lines.as_bytes()).expect("the agent cut the writer's connection");
        sent += per_round;
    }
    stop.store(true, Ordering::Relaxed);
    let (probes_ok, missing) = prober.join().unwrap();
    // Now, and only now, the writer reads: one answer for the whole stream.
    writer.shutdown(std::net::Shutdown::Write).unwrap();
    writer.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut answer = String::new();
    let _ = writer.read_to_string(&mut answer);
    assert_eq!(
        answer.trim(),
        format!("{{\"accepted\":{sent},\"rejected\":0}}"),
        "one connection across {reloads} reloads\n{}",
        agent.logs()
    );
    let want = expected_ids(0..sent);
    let arrived = wait_until(DEADLINE, || sorted_ids(&emu.events()) == want).await;
    assert!(arrived, "got {} of {sent} events\n{}", emu.event_count(), agent.logs());
    assert!(probes_ok > 0);
    assert!(
        missing.is_empty(),
        "{} connects found no socket during reloads, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(3)]
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&env.socket).unwrap().permissions()) & 0o777;
    assert_eq!(mode, 0o600, "the last mode applies to the socket file");
}

/// A socket source removed from the config stops accepting (its file goes) while a connected
/// writer finishes its stream; added back, it listens again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_removed_from_the_config_lets_its_connected_writer_finish() {
    use std::io::{Read, Write};
    let emu = Emulator::start(EmulatorConfig::new(Kind::Generic)).await.unwrap();
    let env = TestEnv::new();
    let with = Cfg {
        file: false,
        ..Cfg::new(&emu.url())
    };
    env.write_config(&with);
    let agent = AgentProc::start(&env).await;
    assert!(wait_until(DEADLINE, || env.socket.exists()).await, "{}", agent.logs());
    let mut writer = std::os::unix::net::UnixStream::connect(&env.socket).unwrap();
    let first: String = (0..100).map(|i| event(i) + "\n").collect();
    writer.write_all(first.as_bytes()).unwrap();
    // No source at all but the file, which is not there yet: the socket goes.
    env.write_config(&Cfg {
        file: true,
        socket: false,
        ..Cfg::new(&emu.url())
    });
    assert!(
        wait_until(DEADLINE, || !env.socket.exists()).await,
        "the socket file stays after its source was removed\n{}",
        agent.logs()
    );
    let second: String = (100..200).map(|i| event(i) + "\n").collect();
    writer.write_all(second.as_bytes()).expect("the removal cut the connected writer");
    writer.shutdown(std::net::Shutdown::Write).unwrap();
    writer.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut answer = String::new();
    let _ = writer.read_to_string(&mut answer);
    assert_eq!(answer.trim(), "{\"accepted\":200,\"rejected\":0}", "{}", agent.logs());
    env.write_config(&with);
    assert!(wait_until(DEADLINE, || env.socket.exists()).await, "{}", agent.logs());
    let (outcome, _) = socket_try_send(&env.socket, &[event(200)], DEADLINE).await;
    assert!(matches!(outcome, SockOutcome::Answered { accepted: 1, .. }), "{}", agent.logs());
    let want = expected_ids(0..201);
    assert!(
        wait_until(DEADLINE, || sorted_ids(&emu.events()) == want).await,
        "got {}\n{}",
        emu.event_count(),
        agent.logs()
    );
}
