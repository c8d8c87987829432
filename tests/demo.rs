//! `sendauth-siem demo`, the README's first command, as a newcomer runs it: the events arrive,
//! the SIEM goes down and comes back, nothing is lost; `--keep` leaves the status page up.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::*;

#[test]
fn the_demo_shows_an_outage_and_every_event_arriving_in_order() {
    let (code, out, err) = cli(&["demo"]);
    assert_eq!(code, 0, "{out}{err}");
    for want in [
        "The SIEM goes down",
        "(the SIEM is down: it waits on disk)",
        "state=\"error\", 5 event(s) waiting on disk",
        "The SIEM is back",
        "not-a-time",
        "Demo complete: 20 of 20 events delivered in order, 5 of them after a SIEM outage",
    ] {
        assert!(out.contains(want), "the demo output lacks {want:?}:\n{out}");
    }
    assert!(!out.contains("Still running"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_keep_stays_up_with_the_status_page_until_ctrl_c() {
    let mut child = Command::new(bin())
        .args(["demo", "--keep", "--events", "8"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = String::new();
    let port: u16 = loop {
        let line = rx
            .recv_timeout(DEADLINE)
            .unwrap_or_else(|_| panic!("no 'Still running' line:\n{seen}"));
        seen.push_str(&line);
        seen.push('\n');
        if line.starts_with("Still running (--keep)") {
            let url = line.split("http://127.0.0.1:").nth(1).unwrap();
            break url.split('/').next().unwrap().parse().unwrap();
        }
    };
    assert!(seen.contains("Demo complete: 8 of 8"), "{seen}");
    let (code, page) = get(port, "/").await.expect("the status page answers after the demo");
    assert_eq!(code, 200);
    assert!(page.contains("<title>sendauth-siem status</title>"));
    let (_, status) = get(port, "/status").await.unwrap();
    let s: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(s["state"], "success", "{s:#}");
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap()).await.unwrap();
    assert!(status.success(), "demo --keep did not stop cleanly on Ctrl-C: {status}");
}
