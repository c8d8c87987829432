//! `top` and `tap` in a real terminal: tmux runs them in a pane of a known size, and the test
//! reads the screen back with `capture-pane`, as a person would see it.
//!
//! tmux comes from Debian's `tmux` package, which `.ci/run` installs. Outside CI a machine
//! without it skips these tests with a loud message; in CI (`CI` set) a missing tmux fails them.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use sendauth_siem_emulators::{Emulator, EmulatorConfig, Kind};

/// A private tmux server (its own socket in the test's temp dir), killed on drop.
struct Tmux {
    socket: PathBuf,
}

impl Tmux {
    fn start(dir: &Path) -> Option<Tmux> {
        if Command::new("tmux").arg("-V").output().is_err() {
            if std::env::var_os("CI").is_some() {
                panic!("tmux is not installed, and CI must run this test; .ci/run installs Debian's tmux package");
            }
            eprintln!("\n\n*** SKIPPED live view test: tmux is not installed (apt-get install tmux); CI runs it ***\n\n");
            return None;
        }
        Some(Tmux {
            socket: dir.join("tmux.sock"),
        })
    }

    /// Runs `cmd` (a shell command line) in a new 160x50 window; the pane stays after it ends
    /// (`[exit N]`, or tmux's "Pane is dead" when a signal ended the shell too).
    fn run(&self, name: &str, cmd: &str) {
        let wrapped = format!("{cmd}; echo \"[exit $?]\"");
        let st = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(["new-session", "-d", "-s", name, "-x", "160", "-y", "50", &wrapped])
            .args([";", "set-option", "-g", "remain-on-exit", "on"])
            .env_remove("TMUX")
            .status()
            .unwrap();
        assert!(st.success(), "tmux new-session failed");
    }

    fn screen(&self, name: &str) -> String {
        let out = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(["capture-pane", "-p", "-t", name])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Whether the pane's process has ended (it stays, `remain-on-exit`), however it ended.
    fn pane_dead(&self, name: &str) -> bool {
        let out = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(["list-panes", "-t", name, "-F", "#{pane_dead}"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim() == "1"
    }

    fn send_keys(&self, name: &str, keys: &str) {
        let _ = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(["send-keys", "-t", name, keys])
            .status();
    }

    /// Waits until the screen satisfies `pred`; panics with the last screen otherwise.
    async fn wait_screen(&self, name: &str, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let mut last = String::new();
        let ok = wait_until(DEADLINE, || {
            last = self.screen(name);
            pred(&last)
        })
        .await;
        assert!(ok, "the {name} screen never showed {what}:\n{last}");
        last
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux").arg("-S").arg(&self.socket).arg("kill-server").status();
    }
}

fn shell_quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', "'\\''"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_shows_rates_queue_inputs_and_errors_live() {
    let env = TestEnv::new();
    let Some(tmux) = Tmux::start(env.dir.path()) else { return };
    let emu = Emulator::start(EmulatorConfig::new(Kind::Generic)).await.unwrap();
    env.write_config(&Cfg::new(&emu.url()));
    let agent = AgentProc::start(&env).await;
    tmux.run(
        "top",
        &format!(
            "{} top --config {} --interval 300ms",
            shell_quote(Path::new(bin())),
            shell_quote(&env.config)
        ),
    );
    tmux.wait_screen("top", "the first frame", |s| s.contains("sendauth-siem top") && s.contains("State"))
        .await;
    env.append(&(0..40).map(event).collect::<Vec<_>>());
    assert!(emu.wait_for_events(40, DEADLINE).await);
    let screen = tmux
        .wait_screen("top", "40 events in and out", |s| {
            s.contains("total 40") && s.contains("delivered 40")
        })
        .await;
    assert!(
        screen.lines().any(|l| l.starts_with("In ") && l.contains("/s")),
        "top shows no input rate:\n{screen}"
    );
    for want in [
        "State        success",
        "Queue        0 pending",
        "file       tailing",
        "socket     listening",
        "Ctrl-C to quit",
    ] {
        assert!(screen.contains(want), "top lacks {want:?}:\n{screen}");
    }
    // Ctrl-C ends it cleanly.
    tmux.send_keys("top", "C-c");
    assert!(
        wait_until(DEADLINE, || tmux.pane_dead("top")).await,
        "top did not end on Ctrl-C:\n{}",
        tmux.screen("top")
    );
    drop(agent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tap_shows_events_after_the_privacy_transform_then_stops() {
    let env = TestEnv::new();
    let Some(tmux) = Tmux::start(env.dir.path()) else { return };
    let emu = Emulator::start(EmulatorConfig::new(Kind::Generic)).await.unwrap();
    let mut c = Cfg::new(&emu.url());
    c.extra = "transform:\n  truncate_ip:\n    fields: [ip_address]\n".into();
    env.write_config(&c);
    let agent = AgentProc::start(&env).await;
    tmux.run(
        "tap",
        &format!(
            "{} tap --config {} --limit 3",
            shell_quote(Path::new(bin())),
            shell_quote(&env.config)
        ),
    );
    tmux.wait_screen("tap", "that it waits", |s| s.contains("waiting for events")).await;
    // The raw lines carry 203.0.113.1 .. .3; the SIEM (and the tap) get the /24.
    env.append(&(1..6).map(event).collect::<Vec<_>>());
    // It ends by itself after --limit events (the pane's shell then prints its exit code).
    assert!(
        wait_until(DEADLINE, || tmux.pane_dead("tap")).await,
        "tap did not stop after --limit:\n{}",
        tmux.screen("tap")
    );
    let screen = tmux.screen("tap");
    assert!(screen.contains("3 event(s) shown") && screen.contains("[exit 0]"), "{screen}");
    for i in 1..4 {
        assert!(screen.contains(&format!("tx-{i} ")), "tap lacks tx-{i}:\n{screen}");
    }
    assert!(!screen.contains("tx-4 "), "more than --limit shown:\n{screen}");
    assert!(screen.contains("203.0.113.0"), "{screen}");
    assert!(!screen.contains("203.0.113.1\""), "a raw IP address was shown:\n{screen}");
    assert!(emu.wait_for_events(5, DEADLINE).await);
    drop(agent);
}
