//! Disk campaign (docs/RELIABILITY.md): the queue reaches `queue.max_bytes`, and the filesystem
//! holding the queue fills up. The agent must say so, pause the file source, refuse socket lines
//! with a clear error, never corrupt the queue, and recover by itself when room returns.
//!
//! The full-filesystem part mounts a small tmpfs and needs root (CAP_SYS_ADMIN); elsewhere it
//! says so and is skipped.

mod common;

use std::time::{Duration, Instant};

use common::campaign::*;
use common::*;
use sendauth_siem_emulators::{Emulator, EmulatorConfig, Fault, Kind};

const SOCKET_BASE: usize = 50_000_000;

fn down(emu: &Emulator) {
    emu.set_fault(Some(Fault::Status {
        code: 503,
        body: String::new(),
        headers: vec![],
    }));
}

/// Appends to the file until `/status` satisfies `pred`; returns the number written and the
/// status.
async fn write_until(
    env: &TestEnv,
    agent: &AgentProc,
    from: usize,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> (usize, serde_json::Value) {
    let mut written = from;
    let t = Instant::now();
    loop {
        env.append(&(written..written + 1000).map(event).collect::<Vec<_>>());
        written += 1000;
        let s = agent.status().await;
        if pred(&s) {
            return (written, s);
        }
        assert!(
            t.elapsed() < DEADLINE * 2,
            "condition never met; last status {s:#}\n{}",
            agent.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_max_bytes_pauses_the_file_refuses_socket_lines_and_recovers_without_loss() {
    let mut fig = Figures::new("disk_queue_max_bytes");
    let emu = Emulator::start(EmulatorConfig::new(Kind::Generic)).await.unwrap();
    down(&emu);
    let env = TestEnv::new();
    let mut cfg = Cfg::new(&emu.url());
    cfg.siem = "  generic:\n    batch: ndjson\n    max_batch_events: 500\n".into();
    cfg.queue_extra = format!("  max_bytes: {}KiB\n", size("disk_max_kib", 512, 16 * 1024));
    env.write_config(&cfg);
    let agent = AgentProc::start(&env).await;
    let (written, s) = write_until(&env, &agent, 0, |s| {
        s["queue"]["full"] == true && s["sources"]["file"]["paused"].as_str().is_some_and(|p| p.contains("queue full"))
    })
    .await;
    fig.set("file_events_written", written);
    fig.set("pending_when_full", s["queue"]["pending"].clone());
    fig.set("file_paused", s["sources"]["file"]["paused"].clone());
    // Socket writers are refused with a clear error, for exactly the lines not taken.
    let (o, answers) = socket_try_send(
        &env.socket,
        &(SOCKET_BASE..SOCKET_BASE + 10).map(event).collect::<Vec<_>>(),
        DEADLINE,
    )
    .await;
    assert!(
        matches!(
            o,
            SockOutcome::Answered {
                accepted: 0,
                refused: 10,
                ..
            }
        ),
        "{o:?} {answers:?}"
    );
    assert_eq!(answers[0]["error"], "queue full", "{answers:?}");
    assert!(answers[0]["reason"].as_str().unwrap().contains("queue.max_bytes"), "{answers:?}");
    fig.set("socket_error_line", answers[0].clone());
    // The file keeps growing while paused; nothing is read past the checkpoint.
    env.append(&(written..written + 2000).map(event).collect::<Vec<_>>());
    let written = written + 2000;
    // The SIEM comes back: everything the file holds arrives, in order, once.
    let t = Instant::now();
    emu.set_fault(None);
    assert!(
        emu.wait_for_events(written, DEADLINE * 2).await,
        "{} of {written}\n{}",
        emu.event_count(),
        agent.logs()
    );
    fig.secs("recovery_seconds", t.elapsed());
    agent
        .wait_status(DEADLINE, |s| {
            s["queue"]["full"] == false && s["sources"]["file"]["paused"].is_null() && s["queue"]["pending"] == 0
        })
        .await;
    let got = tx_ids(&emu.events());
    assert!(
        sort_tx_ids(got.clone()) == expected_ids(0..written),
        "every file event once, and refused socket lines never ({} received for {written})",
        got.len()
    );
    first_occurrences_in_order(&got, &expected_ids(0..written), 500 * IN_FLIGHT_REQUESTS).unwrap();
    let (o, _) = socket_try_send(&env.socket, &[event(SOCKET_BASE + 100)], DEADLINE).await;
    assert!(matches!(o, SockOutcome::Answered { accepted: 1, .. }), "{o:?}");
    fig.set("lost", 0);
    fig.set("duplicates", 0);
}

/// A config whose queue lives on `qdir` (on the small filesystem).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_filesystem_is_reported_pauses_sources_and_recovers_when_space_returns() {
    let mut fig = Figures::new("disk_full_filesystem");
    let emu = Emulator::start(EmulatorConfig::new(Kind::Generic)).await.unwrap();
    down(&emu);
    let env = TestEnv::new();
    let Some((_fs, ballast)) = small_fs(&env, 32, 14) else { return };
    let mut cfg = Cfg::new(&emu.url());
    cfg.siem = "  generic:\n    batch: ndjson\n    max_batch_events: 500\n".into();
    cfg.queue_extra = "  min_free_bytes: 8MiB\n".into();
    let qdir = env.dir.path().join("qfs/queue");
    write_config_with_queue(&env, &cfg, &qdir);
    let agent = AgentProc::start(&env).await;

    // Fill the disk through the file source.
    let (written, _) = write_until(&env, &agent, 0, |s| s["queue"]["storage_error"].is_string()).await;
    let s = agent.wait_status(DEADLINE, |s| s["sources"]["file"]["paused"].is_string()).await;
    fig.set("file_events_written", written);
    fig.set("pending_when_full", s["queue"]["pending"].clone());
    fig.set("status_storage_error", s["queue"]["storage_error"].clone());
    fig.set("file_paused", s["sources"]["file"]["paused"].clone());
    assert!(s["queue"]["storage_error"].as_str().unwrap().contains("disk is full"), "{s:#}");
    assert!(s["sources"]["file"]["paused"].as_str().unwrap().contains("disk is full"), "{s:#}");
    // Socket writers get a clear error; their lines were not taken.
    let (o, answers) = socket_try_send(&env.socket, &[event(SOCKET_BASE)], DEADLINE).await;
    assert!(
        matches!(
            o,
            SockOutcome::Answered {
                accepted: 0,
                refused: 1,
                ..
            }
        ),
        "{o:?} {answers:?}"
    );
    assert_eq!(answers[0]["error"], "storage error", "{answers:?}");
    assert!(answers[0]["reason"].as_str().unwrap().contains("disk is full"), "{answers:?}");
    fig.set("socket_error_line", answers[0].clone());
    // Stay full for a while: the agent keeps running and does not flood its log.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let errors = agent.logs().lines().filter(|l| l.contains("ERROR") && !l.contains("sink")).count();
    fig.set("error_log_lines_while_full", errors);
    assert!(errors <= 2, "the log is flooded while the disk is full:\n{}", agent.logs());

    // Space returns: the agent resumes by itself.
    std::fs::remove_file(&ballast).unwrap();
    let t = Instant::now();
    agent
        .wait_status(DEADLINE, |s| {
            s["queue"]["storage_error"].is_null() && s["sources"]["file"]["paused"].is_null()
        })
        .await;
    fig.secs("resume_after_space_returns_seconds", t.elapsed());
    let (o, answers) = socket_try_send(&env.socket, &[event(SOCKET_BASE + 1)], DEADLINE).await;
    assert!(matches!(o, SockOutcome::Answered { accepted: 1, .. }), "{o:?} {answers:?}");
    emu.set_fault(None);
    let mut ledger = Ledger::default();
    ledger.must.extend(expected_ids(0..written));
    ledger.must.push(format!("tx-{}", SOCKET_BASE + 1));
    assert!(
        emu.wait_for_events(written + 1, DEADLINE * 2).await,
        "{} of {}\n{}",
        emu.event_count(),
        written + 1,
        agent.logs()
    );
    agent.wait_status(DEADLINE, |s| s["queue"]["pending"] == 0).await;
    let got = tx_ids(&emu.events());
    let v = ledger.judge(&got);
    fig.set("lost", v.lost.len());
    fig.set("duplicates", v.duplicate_copies);
    assert!(
        v.lost.is_empty() && v.unexpected.is_empty(),
        "lost {:?} unexpected {:?}",
        v.lost,
        v.unexpected
    );
    assert_eq!(v.duplicate_copies, 0);
    first_occurrences_in_order(&got, &expected_ids(0..written), 500 * IN_FLIGHT_REQUESTS).unwrap();
}

/// Without the reserve (`queue.min_free_bytes: 0`) the disk really fills. Usually our own
/// segment file hits ENOSPC first: that commit is refused, the file source pauses with the
/// reason, and everything resumes in-process when space returns. If sled's log hits it instead,
/// sled cannot write again in this process, so the agent must say so and exit with status 74
/// for its service manager to restart it. Either way a restart (if needed) and the SIEM's
/// recovery must find every line the file holds, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enospc_without_the_reserve_pauses_or_exits_clearly_and_loses_nothing() {
    let mut fig = Figures::new("disk_enospc");
    let emu = Emulator::start(EmulatorConfig::new(Kind::Generic)).await.unwrap();
    down(&emu);
    let env = TestEnv::new();
    let Some((_fs, ballast)) = small_fs(&env, 16, 6) else { return };
    let mut cfg = Cfg::new(&emu.url());
    cfg.siem = "  generic:\n    batch: ndjson\n    max_batch_events: 500\n".into();
    cfg.queue_extra = "  min_free_bytes: 0\n".into();
    let qdir = env.dir.path().join("qfs/queue");
    write_config_with_queue(&env, &cfg, &qdir);
    let mut agent = AgentProc::start(&env).await;
    let mut written = 0;
    let enospc = |s: &serde_json::Value| {
        s["sources"]["file"]["paused"]
            .as_str()
            .is_some_and(|p| p.contains("disk is full") || p.contains("No space left"))
    };
    // Fill until the agent either reports the full disk (and keeps running) or exits.
    let exited = loop {
        env.append(&(written..written + 1000).map(event).collect::<Vec<_>>());
        written += 1000;
        if let Some(st) = agent.wait_exit(Duration::from_millis(50)) {
            break Some(st);
        }
        if let Some((200, body)) = get(agent.port, "/status").await {
            if enospc(&serde_json::from_str(&body).unwrap()) {
                break None;
            }
        }
        assert!(written < 2_000_000, "the disk never filled");
    };
    fig.set("file_events_written", written);
    let agent = match exited {
        Some(st) => {
            let logs = agent.logs();
            fig.set("outcome", "exit");
            fig.set("exit_code", st.code());
            assert_eq!(st.code(), Some(74), "{logs}");
            assert!(logs.contains("exiting with status 74") && logs.contains("disk is full"), "{logs}");
            std::fs::remove_file(&ballast).unwrap();
            let agent = AgentProc::start(&env).await;
            let s = agent.status().await;
            assert!(s["queue"]["incident"].is_null(), "{s:#}");
            agent
        }
        None => {
            fig.set("outcome", "paused");
            // Space returns: the agent resumes by itself, no restart.
            std::fs::remove_file(&ballast).unwrap();
            agent.wait_status(DEADLINE, |s| s["sources"]["file"]["paused"].is_null()).await;
            agent
        }
    };
    emu.set_fault(None);
    assert!(
        emu.wait_for_events(written, DEADLINE * 2).await,
        "{} of {written}\n{}",
        emu.event_count(),
        agent.logs()
    );
    agent.wait_status(DEADLINE, |s| s["queue"]["pending"] == 0).await;
    let got = tx_ids(&emu.events());
    let mut ledger = Ledger::default();
    ledger.must.extend(expected_ids(0..written));
    let v = ledger.judge(&got);
    fig.set("lost", v.lost.len());
    fig.set("duplicates", v.duplicate_copies);
    assert!(
        v.lost.is_empty() && v.unexpected.is_empty(),
        "lost {} e.g. {:?}",
        v.lost.len(),
        &v.lost[..v.lost.len().min(5)]
    );
    assert_eq!(v.duplicate_copies, 0);
    first_occurrences_in_order(&got, &expected_ids(0..written), 500 * IN_FLIGHT_REQUESTS).unwrap();
}

/// The queue directory removed under a running agent: new events are refused (never
/// "accepted" into files that vanish at exit), the log says what happened, and the agent exits
/// with 74 for its service manager.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_directory_removed_under_the_agent_refuses_events_and_exits_74() {
    let emu = Emulator::start(EmulatorConfig::new(Kind::Generic)).await.unwrap();
    let env = TestEnv::new();
    let cfg = Cfg::new(&emu.url());
    env.write_config(&cfg);
    let mut agent = AgentProc::start(&env).await;
    let (o, _) = socket_try_send(&env.socket, &[event(SOCKET_BASE)], DEADLINE).await;
    assert!(matches!(o, SockOutcome::Answered { accepted: 1, .. }), "{o:?}");
    assert!(emu.wait_for_events(1, DEADLINE).await);
    // Once the success is recorded (status.json in the queue directory is written then), the
    // directory is quiet and `rm -rf` does not race with the agent's own writes.
    agent.wait_status(DEADLINE, |s| s["state"] == "success").await;
    std::fs::remove_dir_all(&env.queue).unwrap();
    let (o, answers) = socket_try_send(&env.socket, &[event(SOCKET_BASE + 1)], DEADLINE).await;
    assert!(
        !matches!(o, SockOutcome::Answered { accepted: 1, .. }),
        "an event was accepted into a removed queue: {o:?} {answers:?}"
    );
    let exit = tokio::task::spawn_blocking(move || {
        let st = agent.wait_exit(DEADLINE);
        (st, agent.logs())
    })
    .await
    .unwrap();
    assert_eq!(exit.0.and_then(|s| s.code()), Some(74), "{}", exit.1);
    assert!(exit.1.contains("removed or replaced"), "{}", exit.1);
}

/// A writer that floods the socket while the queue is full and never reads the refusals: the
/// agent drops it after a bounded wait instead of blocking on it, so SIGTERM stops the agent
/// (it used to wait forever on the refusal write).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_writer_that_never_reads_cannot_hold_up_a_stop() {
    let emu = Emulator::start(EmulatorConfig::new(Kind::Generic)).await.unwrap();
    down(&emu);
    let env = TestEnv::new();
    let mut cfg = Cfg::new(&emu.url());
    cfg.file = false;
    cfg.queue_extra = "  max_bytes: 64KiB\n".into();
    env.write_config(&cfg);
    let mut agent = AgentProc::start(&env).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let path = env.socket.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            use std::io::Write;
            use std::os::unix::io::AsRawFd;
            let mut s = std::os::unix::net::UnixStream::connect(path).unwrap();
            // A small receive buffer: the agent's refusal lines fill it at once.
            let size: libc::c_int = 4096;
            // SAFETY: setsockopt on a valid socket with a pointer to a c_int of the given size.
            unsafe {
                libc::setsockopt(
                    s.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_RCVBUF,
                    &size as *const libc::c_int as *const libc::c_void,
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                );
            }
            let chunk: String = (0..200).map(|i| event(SOCKET_BASE + i) + "\n").collect();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if s.write_all(chunk.as_bytes()).is_err() {
                    break;
                }
            }
        })
    };
    let refusals = |m: &str| {
        m.lines()
            .find_map(|l| l.strip_prefix("sendauth_siem_queue_full_refusals_total "))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let port = agent.port;
    // Wait until the refusals stop: the agent's refusal lines have filled the socket's buffer
    // (it blocks writing them, or has dropped the writer).
    let (mut seen, mut steady_since) = (0, Instant::now());
    let t = Instant::now();
    while t.elapsed() < DEADLINE {
        let now = match get(port, "/metrics").await {
            Some((200, body)) => refusals(&body),
            _ => seen,
        };
        if now != seen {
            (seen, steady_since) = (now, Instant::now());
        } else if seen >= 100 && steady_since.elapsed() > Duration::from_secs(1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(seen >= 100, "the queue never refused the flood ({seen} refusals)\n{}", agent.logs());
    let status = tokio::task::spawn_blocking(move || {
        let st = agent.term();
        (st, agent.logs())
    })
    .await
    .unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    assert!(status.0.success(), "{:?}\n{}", status.0, status.1);
}

/// Issue 10 item 1, through the real binary: a store that cannot be opened because its disk is
/// full is not "corrupt". The agent either opens it or exits with a clear error for its
/// supervisor; it never moves the store aside, and once space returns every accepted event
/// arrives (before: all 2,000 moved aside to `corrupt-*` and never delivered).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_at_open_is_not_corruption_and_loses_nothing() {
    let mut fig = Figures::new("disk_full_at_open");
    let emu = Emulator::start(EmulatorConfig::new(Kind::Generic)).await.unwrap();
    down(&emu);
    let env = TestEnv::new();
    let Some((_fs, ballast)) = small_fs(&env, 32, 30) else { return };
    let mut cfg = Cfg::new(&emu.url());
    cfg.queue_extra = "  min_free_bytes: 0\n".into();
    let qdir = env.dir.path().join("qfs/queue");
    write_config_with_queue(&env, &cfg, &qdir);
    let mut agent = AgentProc::start(&env).await;
    let n = 2000;
    env.append(&(0..n).map(event).collect::<Vec<_>>());
    agent.wait_status(DEADLINE, |s| s["queue"]["pending"] == n).await;
    assert!(agent.term().success());
    // Fill the filesystem to the last byte.
    let filler = env.dir.path().join("qfs/filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let block = vec![0u8; 64 * 1024];
        while f.write_all(&block).is_ok() {}
        let mut small = [0u8; 512];
        while f.write_all(&small[..]).is_ok() {}
        small[0] = 1;
        while f.write_all(&small[..1]).is_ok() {}
    }
    // Start on the full disk: it opens, or it exits with a clear error; nothing is moved aside.
    let mut child = std::process::Command::new(bin())
        .args(["run", "--config"])
        .arg(&env.config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    let mut exited = None;
    while t.elapsed() < DEADLINE {
        if let Some(st) = child.try_wait().unwrap() {
            exited = Some(st);
            break;
        }
        if get(env.port, "/health").await.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let outcome = match exited {
        Some(st) => {
            let mut err = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
            assert!(!st.success(), "{err}");
            assert!(!err.contains("damaged") && !err.contains("moved aside"), "{err}");
            format!("exited {:?}: {}", st.code(), err.lines().last().unwrap_or(""))
        }
        None => {
            let _ = child.kill();
            let _ = child.wait();
            "opened".to_string()
        }
    };
    fig.set("start_on_a_full_disk", outcome);
    let aside: Vec<_> = std::fs::read_dir(&qdir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with("corrupt-"))
        .collect();
    assert!(aside.is_empty(), "a full disk was taken for corruption: {aside:?}");
    // Space returns: every event arrives, nothing was lost.
    std::fs::remove_file(&filler).unwrap();
    std::fs::remove_file(&ballast).unwrap();
    emu.set_fault(None);
    let agent = AgentProc::start(&env).await;
    let want = expected_ids(0..n);
    let arrived = wait_until(DEADLINE, || sorted_ids(&emu.events()) == want).await;
    fig.set("delivered_after_space_returned", emu.event_count());
    assert!(arrived, "{} of {n}\n{}", emu.event_count(), agent.logs());
    let s = agent.status().await;
    assert!(s["queue"]["incident"].is_null(), "{s:#}");
}

/// Issue 10 item 1, the permission half, through the real binary: a store file the agent may
/// not open (`chmod 000`, EACCES) is not "corrupt". For each kind of store file (sled's log, an
/// event segment) the agent exits with an error that names the cause and says the store was
/// left as it is; nothing is moved aside, and once the permission is restored every accepted
/// event arrives (before: 500 of 500 moved aside to `corrupt-*` and never delivered).
///
/// Root ignores file permissions, so under root the agent runs as `nobody` (65534); as any
/// other user it runs as that user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permission_error_at_open_is_not_corruption_and_loses_nothing() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let mut fig = Figures::new("permission_denied_at_open");
    let root = unsafe { libc::geteuid() } == 0;
    let as_agent = move |cmd: &mut std::process::Command| {
        if root {
            cmd.uid(65534).gid(65534);
        }
    };
    let emu = Emulator::start(EmulatorConfig::new(Kind::Generic)).await.unwrap();
    let env = TestEnv::new();
    let cfg = Cfg::new(&emu.url());
    env.write_config(&cfg);
    if root {
        // The agent (as nobody) must reach its config and create its queue under the temp dir.
        for entry in walk(env.dir.path()) {
            std::os::unix::fs::chown(&entry, Some(65534), Some(65534)).unwrap();
        }
    }
    let n_per_round = 500;
    let mut sent = 0;
    for (round, victim) in ["store/db", "segment"].into_iter().enumerate() {
        down(&emu);
        let mut agent = AgentProc::start_with_command(&env, &[], as_agent).await;
        env.append(&(sent..sent + n_per_round).map(event).collect::<Vec<_>>());
        sent += n_per_round;
        agent.wait_status(DEADLINE, |s| s["queue"]["pending"] == n_per_round as u64).await;
        assert!(agent.term().success(), "{}", agent.logs());
        let file = if victim == "segment" {
            walk(&env.queue)
                .into_iter()
                .filter(|p| p.is_file() && p.to_string_lossy().contains("segment"))
                .max()
                .unwrap_or_else(|| panic!("no segment file under {}", env.queue.display()))
        } else {
            env.queue.join(victim)
        };
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o000)).unwrap();
        // Start with the file unreadable: it exits with a clear error, or opens and holds;
        // nothing is moved aside either way.
        let mut cmd = std::process::Command::new(bin());
        cmd.args(["run", "--config"])
            .arg(&env.config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        as_agent(&mut cmd);
        let mut child = cmd.spawn().unwrap();
        let t = Instant::now();
        let exited = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break Some(st);
            }
            if t.elapsed() > DEADLINE {
                let _ = child.kill();
                child.wait().unwrap();
                break None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let mut err = String::new();
        std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
        let st = exited.unwrap_or_else(|| panic!("{victim}: the agent neither exited nor failed: {err}"));
        assert!(!st.success(), "{victim}: {err}");
        assert!(err.contains("Permission denied"), "{victim}: the error names the cause: {err}");
        assert!(!err.contains("damaged") && !err.contains("moved aside"), "{victim}: {err}");
        fig.set(
            &format!("start_with_{}_unreadable", victim.replace('/', "_")),
            format!("exited {:?}: {}", st.code(), err.lines().last().unwrap_or("")),
        );
        let aside: Vec<_> = std::fs::read_dir(&env.queue)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().to_string())
            .filter(|n| n.starts_with("corrupt-"))
            .collect();
        assert!(aside.is_empty(), "{victim}: a permission error was taken for corruption: {aside:?}");
        // The permission is restored: every event of every round arrives.
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
        emu.set_fault(None);
        let mut agent = AgentProc::start_with_command(&env, &[], as_agent).await;
        let want = expected_ids(0..sent);
        let arrived = wait_until(DEADLINE, || sorted_ids(&emu.events()) == want).await;
        fig.set(&format!("delivered_after_round_{round}"), emu.event_count());
        assert!(arrived, "{victim}: {} of {sent}\n{}", emu.event_count(), agent.logs());
        let s = agent.status().await;
        assert!(s["queue"]["incident"].is_null(), "{s:#}");
        assert!(agent.term().success());
    }
}

/// Every path under `dir`, `dir` included.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    if dir.is_dir() {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            out.extend(walk(&e.path()));
        }
    }
    out
}
