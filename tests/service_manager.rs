//! systemd `Type=notify` through the real binary: the test plays the service manager, with a
//! datagram socket in `NOTIFY_SOCKET` and a watchdog in `WATCHDOG_USEC`, and reads what the
//! agent tells it (`READY=1` only once it serves, `RELOADING=1`/`READY=1` around a config
//! change, `WATCHDOG=1` while it runs, `STOPPING=1` at SIGTERM).

mod common;

use std::os::unix::net::UnixDatagram;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use sendauth_siem_emulators::{Emulator, EmulatorConfig, Kind};

/// One datagram as received, and whether the status port accepted a connection right then.
#[derive(Debug, Clone)]
struct Notice {
    text: String,
    serving: bool,
}

/// A stand-in for systemd's notify socket: collects every datagram in a background thread.
struct Manager {
    path: std::path::PathBuf,
    got: Arc<Mutex<Vec<Notice>>>,
}

impl Manager {
    fn start(env: &TestEnv) -> Manager {
        let path = env.dir.path().join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let sink = got.clone();
        let port = env.port;
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match sock.recv(&mut buf) {
                    Ok(n) => {
                        let text = String::from_utf8_lossy(&buf[..n]).to_string();
                        let serving = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
                        sink.lock().unwrap().push(Notice { text, serving });
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {
                        // Stop once the test dropped its handle.
                        if Arc::strong_count(&sink) == 1 {
                            return;
                        }
                    }
                    Err(_) => return,
                }
            }
        });
        Manager { path, got }
    }

    fn notices(&self) -> Vec<Notice> {
        self.got.lock().unwrap().clone()
    }

    fn count(&self, line: &str) -> usize {
        self.notices().iter().filter(|n| n.text.lines().any(|l| l == line)).count()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_tells_systemd_when_it_is_ready_reloading_alive_and_stopping() {
    let emu = Emulator::start(EmulatorConfig::new(Kind::Generic)).await.unwrap();
    let env = TestEnv::new();
    let mut cfg = Cfg::new(&emu.url());
    env.write_config(&cfg);
    let manager = Manager::start(&env);
    let notify = manager.path.to_string_lossy().to_string();
    let mut agent = AgentProc::start_with_env(&env, &[("NOTIFY_SOCKET", &notify), ("WATCHDOG_USEC", "1500000")]).await;

    // READY=1 comes once, when the status API already accepts connections, with a STATUS line
    // naming where events go.
    assert!(
        wait_until(DEADLINE, || manager.count("READY=1") >= 1).await,
        "no READY=1: {:?}\n{}",
        manager.notices(),
        agent.logs()
    );
    let ready = manager
        .notices()
        .into_iter()
        .find(|n| n.text.lines().any(|l| l == "READY=1"))
        .unwrap();
    assert!(ready.serving, "READY=1 was sent before the status API listened: {ready:?}");
    assert!(
        ready
            .text
            .contains("STATUS=taking events in; forwarding to generic at http://127.0.0.1:"),
        "{ready:?}"
    );

    // The watchdog is fed every third of WATCHDOG_USEC while the agent runs.
    assert!(
        wait_until(DEADLINE, || manager.count("WATCHDOG=1") >= 3).await,
        "fewer than 3 WATCHDOG=1: {:?}\n{}",
        manager.notices(),
        agent.logs()
    );

    // A config change: RELOADING=1 with MONOTONIC_USEC, then READY=1 again.
    env.append(&[event(0)]);
    cfg.delivery = "  max_backoff: 7s\n".into();
    env.write_config(&cfg);
    assert!(
        wait_until(DEADLINE, || manager.count("READY=1") >= 2).await,
        "no READY=1 after the reload: {:?}\n{}",
        manager.notices(),
        agent.logs()
    );
    let texts: Vec<String> = manager.notices().into_iter().map(|n| n.text).collect();
    let reloading = texts
        .iter()
        .position(|t| t.lines().any(|l| l == "RELOADING=1"))
        .unwrap_or_else(|| panic!("no RELOADING=1: {texts:?}"));
    assert!(texts[reloading].contains("MONOTONIC_USEC="), "{}", texts[reloading]);
    let ready_again = texts.iter().rposition(|t| t.lines().any(|l| l == "READY=1")).unwrap();
    assert!(ready_again > reloading, "READY=1 follows RELOADING=1: {texts:?}");
    assert!(
        texts[ready_again].contains("STATUS=config reloaded: delivery changed"),
        "{}",
        texts[ready_again]
    );

    assert!(wait_until(DEADLINE, || emu.event_count() == 1).await, "the event flows as before");

    // A broken edit is rejected: the manager still hears READY=1, with a STATUS saying so.
    env.write_config_text("siem: [\n");
    assert!(
        wait_until(DEADLINE, || manager.count("READY=1") >= 3).await,
        "{:?}",
        manager.notices()
    );
    let last = manager.notices().last().unwrap().text.clone();
    assert!(last.contains("STATUS=config change rejected"), "{last}");

    // SIGTERM: STOPPING=1, then a clean exit.
    assert!(agent.term().success(), "{}", agent.logs());
    assert_eq!(manager.count("STOPPING=1"), 1, "{:?}", manager.notices());
}
