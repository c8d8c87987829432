//! Hostile-input campaign (docs/RELIABILITY.md): bad bytes through the real agent's file and
//! socket sources — invalid UTF-8, NUL bytes, deep nesting, a huge line, numbers where strings
//! belong, duplicate keys, a flood of tiny lines, many concurrent socket clients (slow writers,
//! clients that never send).
//!
//! Promise checked (docs/CONTRACT.md, "Events"): every bad line is quarantined with a clear reason, the
//! good events around it arrive in order, the agent stays up and its peak memory stays bounded.
//!
//! `CAMPAIGN=long` (or `CAMPAIGN_HUGE_MB`, `CAMPAIGN_TINY_LINES`, `CAMPAIGN_CLIENTS`).

mod common;

use std::time::Instant;

use common::campaign::*;
use common::*;
use sendauth_siem_emulators::{Emulator, EmulatorConfig, Kind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Socket event ids start here.
const SOCKET_BASE: usize = 10_000_000;
/// Tiny-line event ids start here.
const TINY_BASE: usize = 1_000_000;

fn tiny(i: usize) -> String {
    format!(r#"{{"event_type":"t","timestamp":"2025-01-28T10:30:00Z","org_id":"o","transaction_id":"tx-{i}"}}"#)
}

fn invalid_utf8() -> Vec<u8> {
    let mut b = event(900).into_bytes();
    b.insert(60, 0xff);
    b.insert(61, 0xfe);
    b
}

fn quarantine(env: &TestEnv) -> Vec<serde_json::Value> {
    let (code, out, err) = cli(&["quarantine", "list", "--config", env.config.to_str().unwrap(), "--json"]);
    assert_eq!(code, 0, "quarantine list failed: {out}{err}");
    out.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_is_quarantined_and_the_agent_stays_up() {
    let huge_mb = size("huge_mb", 4, 100);
    let tiny_lines = size("tiny_lines", 50_000, 2_000_000);
    let clients = size("clients", 100, 1000);
    let mut fig = Figures::new("hostile");
    fig.set("huge_line_mb", huge_mb);
    fig.set("tiny_lines", tiny_lines);
    fig.set("socket_clients", clients);

    let emu = Emulator::start(EmulatorConfig::new(Kind::Generic)).await.unwrap();
    let env = TestEnv::new();
    let mut cfg = Cfg::new(&emu.url());
    // Batched, so the campaign measures the input side rather than one request per event.
    cfg.siem = "  generic:\n    batch: ndjson\n".into();
    env.write_config(&cfg);
    std::fs::write(&env.events, b"").unwrap();
    let agent = AgentProc::start(&env).await;
    let pid = agent.pid();
    let started = Instant::now();

    // Good events 0..=7 with one hostile line between each pair, then the huge line.
    let hostile: Vec<(&str, Vec<u8>, &str)> = vec![
        ("invalid_utf8", invalid_utf8(), "UTF-8"),
        (
            "nul_byte",
            event(901).replacen("tx-901", "tx-\u{0}901", 1).into_bytes(),
            "invalid JSON",
        ),
        (
            "deep_nesting",
            format!(r#"{{"a":{}{}}}"#, "[".repeat(10_000), "]".repeat(10_000)).into_bytes(),
            "nested deeper",
        ),
        (
            "number_as_string_field",
            br#"{"event_type":"transaction.created","timestamp":"2025-01-28T10:30:00Z","org_id":7,"transaction_id":12}"#.to_vec(),
            "must be a string",
        ),
        (
            "duplicate_common_key",
            format!(r#"{},"transaction_id":"tx-dup"}}"#, &event(903)[..event(903).len() - 1]).into_bytes(),
            "duplicate",
        ),
        ("not_an_object", b"[1,2,3]".to_vec(), "not a JSON object"),
        (
            "bad_timestamp",
            event(904).replace("2025-01-28T10:30:04.904Z", "yesterday").into_bytes(),
            "timestamp",
        ),
    ];
    let mut bytes = Vec::new();
    for (i, (_, bad, _)) in hostile.iter().enumerate() {
        bytes.extend_from_slice(event(i).as_bytes());
        bytes.push(b'\n');
        bytes.extend_from_slice(bad);
        bytes.push(b'\n');
    }
    bytes.extend_from_slice(event(hostile.len()).as_bytes());
    bytes.push(b'\n');
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).open(&env.events).unwrap();
        f.write_all(&bytes).unwrap();
        // The huge line, written in 1 MiB pieces, then a good event after it.
        let piece = vec![b'x'; 1 << 20];
        f.write_all(b"{\"event_type\":\"").unwrap();
        for _ in 0..huge_mb {
            f.write_all(&piece).unwrap();
        }
        f.write_all(b"\"}\n").unwrap();
        f.write_all(format!("{}\n", event(hostile.len() + 1)).as_bytes()).unwrap();
        // The flood of tiny lines.
        let mut buf = String::with_capacity(tiny_lines * 100);
        for i in 0..tiny_lines {
            buf.push_str(&tiny(TINY_BASE + i));
            buf.push('\n');
        }
        f.write_all(buf.as_bytes()).unwrap();
    }
    let file_good: Vec<String> = (0..hostile.len() + 2)
        .map(|i| format!("tx-{i}"))
        .chain((0..tiny_lines).map(|i| format!("tx-{}", TINY_BASE + i)))
        .collect();

    // Socket clients, all at once: a third send normally, a third byte at a time, a third
    // connect and never send (held open until the others are done).
    let sock = env.socket.clone();
    let mut tasks = Vec::new();
    let mut idle = Vec::new();
    let mut sock_good = Vec::new();
    for c in 0..clients {
        let id = SOCKET_BASE + c;
        match c % 3 {
            2 => match tokio::net::UnixStream::connect(&sock).await {
                Ok(s) => idle.push(s),
                Err(e) => panic!("idle client {c} could not connect: {e}"),
            },
            kind => {
                sock_good.push(format!("tx-{id}"));
                let sock = sock.clone();
                tasks.push(tokio::spawn(async move {
                    let mut s = tokio::net::UnixStream::connect(&sock).await.expect("connect");
                    let line = format!("{}\n{}\n", event(id), "{\"not\":\"an event\"}");
                    if kind == 0 {
                        s.write_all(line.as_bytes()).await.unwrap();
                    } else {
                        for b in line.as_bytes() {
                            s.write_all(&[*b]).await.unwrap();
                            s.flush().await.unwrap();
                            tokio::task::yield_now().await;
                        }
                    }
                    s.shutdown().await.unwrap();
                    let mut answer = String::new();
                    tokio::time::timeout(DEADLINE * 2, s.read_to_string(&mut answer))
                        .await
                        .expect("answer within the deadline")
                        .unwrap();
                    answer
                }));
            }
        }
    }
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    drop(idle);
    for a in &answers {
        let v: serde_json::Value = serde_json::from_str(a.trim()).unwrap_or_else(|e| panic!("answer {a:?}: {e}"));
        assert_eq!(v["accepted"], 1, "socket answer {v}");
    }

    let total = file_good.len() + sock_good.len();
    let ok = emu.wait_for_events(total, DEADLINE * 10).await;
    let elapsed = started.elapsed();
    let got = tx_ids(&emu.events());
    assert!(ok, "received {} of {total}", got.len());

    // File events in file order; every socket event once.
    let file_set: std::collections::HashSet<&String> = file_good.iter().collect();
    let file_got: Vec<String> = got.iter().filter(|id| file_set.contains(id)).cloned().collect();
    first_occurrences_in_order(&file_got, &file_good, 500 * IN_FLIGHT_REQUESTS).unwrap();
    let ledger = Ledger {
        must: file_good.iter().chain(sock_good.iter()).cloned().collect(),
        ..Default::default()
    };
    let v = ledger.judge(&got);
    assert!(v.lost.is_empty(), "lost {:?}", &v.lost[..v.lost.len().min(10)]);
    assert!(v.unexpected.is_empty(), "unexpected {:?}", v.unexpected);
    assert_eq!(v.duplicate_copies, 0, "duplicates {:?}", v.duplicates);

    // Every bad line is in the quarantine with its reason.
    let q = quarantine(&env);
    let reasons: Vec<String> = q.iter().map(|e| e["reason"].as_str().unwrap_or("").to_string()).collect();
    for (name, _, want) in &hostile {
        assert!(
            reasons.iter().any(|r| r.contains(want)),
            "{name}: no quarantine reason containing {want:?} in {reasons:#?}"
        );
    }
    assert!(
        reasons.iter().any(|r| r.contains("over sources.max_event_bytes")),
        "huge line: {reasons:#?}"
    );
    let socket_bad = reasons.iter().filter(|r| r.contains("missing")).count();
    assert_eq!(socket_bad, sock_good.len(), "one quarantined line per non-idle socket client");
    fig.set("quarantined", q.len());

    let status = agent.status().await;
    let m = mem(pid).expect("agent still running");
    fig.set("vm_hwm_mib", m.hwm_kib / 1024);
    fig.set("vm_rss_mib", m.rss_kib / 1024);
    fig.secs("delivery_secs", elapsed);
    fig.set("events_delivered", got.len());
    assert!(m.hwm_kib < 200 * 1024, "VmHWM {} MiB", m.hwm_kib / 1024);
    assert!(status["sources"].is_object(), "{status}");
}
