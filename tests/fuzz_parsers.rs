//! Fuzz targets for every parser that sees untrusted input, as proptest properties (stable
//! toolchain, no cargo-fuzz): event validation, line framing, config parsing and each SIEM
//! platform's reading of its answers.
//!
//! `FUZZ_CASES` sets the number of generated cases per target (default 2000, what CI runs;
//! `scripts/campaigns.sh long` uses 200000). Each target also replays the checked-in corpus under
//! `fuzz/corpus/<target>/` (deep nesting, NUL, invalid UTF-8, out-of-range HEC event numbers, ES
//! bulk answers with too few items, ...): add a file there for every crash found.

use std::path::PathBuf;

use bytes::Bytes;
use proptest::prelude::*;
use proptest::test_runner::{Config as PtConfig, TestRunner};
use sendauth_siem::config::Config;
use sendauth_siem::event;
use sendauth_siem::queue::QueuedEvent;
use sendauth_siem::sink::{build_platform, Platform, Response, Verdict};
use sendauth_siem::source::lines::{Frame, LineFramer};

fn cases() -> u32 {
    std::env::var("FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2000)
}

fn runner() -> TestRunner {
    TestRunner::new(PtConfig {
        cases: cases(),
        failure_persistence: None,
        ..PtConfig::default()
    })
}

fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target);
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap()))
        .collect();
    out.sort();
    assert!(!out.is_empty(), "empty corpus {}", dir.display());
    out
}

fn figures(target: &str, corpus_len: usize) {
    let line = format!(
        r#"CAMPAIGN-FIGURES {{"campaign":"fuzz_{target}","cases":{},"corpus":{corpus_len}}}"#,
        cases()
    );
    println!("{line}");
    if let Ok(path) = std::env::var("CAMPAIGN_FIGURES") {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
            let _ = writeln!(f, "{line}");
        }
    }
}

const VALID: &[&str] = &[
    r#"{"event_type":"transaction.verified","timestamp":"2025-01-28T10:31:00Z","transaction_id":"tx-uuid","subject":"user@company.com","ip_address":"203.0.113.42","location":{"city":"San Francisco","region":"California","country":"US"},"org_id":"org-uuid"}"#,
    r#"{"event_type":"transaction.created","timestamp":"2025-01-28T10:30:00.123+01:00","org_id":"o","transaction_id":"t","requestor":{"a":[1,2,{"b":null}]}}"#,
    r#"{"event_type":"custom","timestamp":"2025-01-28T10:30:00Z","org_id":"o","transaction_id":"\u00e9\n"}"#,
];

/// Byte-level mutations of a seed: overwrite, insert, delete, truncate.
fn mutated(seeds: &'static [&'static str]) -> impl Strategy<Value = Vec<u8>> {
    (
        0..seeds.len(),
        prop::collection::vec((0u8..4, any::<prop::sample::Index>(), any::<u8>()), 1..6),
    )
        .prop_map(move |(i, muts)| {
            let mut b = seeds[i].as_bytes().to_vec();
            for (kind, at, byte) in muts {
                let pos = if b.is_empty() { 0 } else { at.index(b.len()) };
                match kind {
                    0 if !b.is_empty() => b[pos] = byte,
                    1 => b.insert(pos, byte),
                    2 if !b.is_empty() => {
                        b.remove(pos);
                    }
                    3 => b.truncate(pos),
                    _ => {}
                }
            }
            b
        })
}

// ---------------------------------------------------------------- (a) event::validate

fn check_validate(line: &[u8]) -> Result<(), TestCaseError> {
    if event::validate(line, 1 << 20).is_ok() {
        // RawValue checks the JSON syntax without converting numbers (a 5000-digit number is
        // valid JSON that `serde_json::Value` cannot hold).
        let obj: std::collections::HashMap<String, &serde_json::value::RawValue> =
            serde_json::from_slice(line).map_err(|e| TestCaseError::fail(format!("accepted a non-object or non-JSON: {e}")))?;
        for f in ["event_type", "timestamp", "org_id", "transaction_id"] {
            prop_assert!(
                obj.get(f).map(|x| x.get().starts_with('"')).unwrap_or(false),
                "accepted without string {f}"
            );
        }
    }
    let _ = event::common_fields(line);
    let _ = event::timestamp_millis(line);
    Ok(())
}

#[test]
fn fuzz_validate() {
    let c = corpus("validate");
    for (name, data) in &c {
        check_validate(data).unwrap_or_else(|e| panic!("corpus validate/{name}: {e}"));
    }
    for v in VALID {
        assert!(event::validate(v.as_bytes(), 1 << 20).is_ok(), "{v}");
    }
    runner()
        .run(&prop::collection::vec(any::<u8>(), 0..300), |b| check_validate(&b))
        .unwrap();
    runner().run(&mutated(VALID), |b| check_validate(&b)).unwrap();
    figures("validate", c.len());
}

// ---------------------------------------------------------------- (b) LineFramer

/// The reference: split on `\n`, a line over `max` is an Oversize of its first `max` bytes, a
/// trailing `\r` is dropped from normal lines, the unterminated rest is a final frame.
fn reference(data: &[u8], max: usize, start: u64) -> Vec<Frame> {
    let mut out = vec![];
    let mut off = start;
    let mut rest = data;
    loop {
        let (line, terminated) = match memchr::memchr(b'\n', rest) {
            Some(i) => (&rest[..i], true),
            None => (rest, false),
        };
        if !terminated && line.is_empty() {
            break;
        }
        let end = off + line.len() as u64 + terminated as u64;
        if line.len() > max {
            out.push(Frame::Oversize {
                prefix: Bytes::copy_from_slice(&line[..max]),
                len: line.len(),
                end,
            });
        } else {
            let l = line.strip_suffix(b"\r").unwrap_or(line);
            out.push(Frame::Line {
                data: Bytes::copy_from_slice(l),
                end,
            });
        }
        off = end;
        if !terminated {
            break;
        }
        rest = &rest[line.len() + 1..];
    }
    out
}

fn check_framer(data: &[u8], cuts: &[prop::sample::Index], max: usize, start: u64) -> Result<(), TestCaseError> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c.index(data.len() + 1)).collect();
    points.sort();
    let mut f = LineFramer::new(max, start);
    let mut out = vec![];
    let mut prev = 0;
    for p in points.into_iter().chain(std::iter::once(data.len())) {
        f.push(&data[prev..p], &mut out);
        prev = p;
        // The held partial line is the bytes after the last newline so far, and its kept part
        // never exceeds `max` (checked through the frames below).
        let tail = data[..p].len() - data[..p].iter().rposition(|&b| b == b'\n').map(|i| i + 1).unwrap_or(0);
        prop_assert_eq!(f.partial_len(), tail);
        let committed = start + data[..p].iter().rposition(|&b| b == b'\n').map(|i| i as u64 + 1).unwrap_or(0);
        prop_assert_eq!(f.committed_offset(), committed);
    }
    out.extend(f.finish());
    for fr in &out {
        match fr {
            Frame::Line { data, .. } => prop_assert!(data.len() <= max),
            Frame::Oversize { prefix, len, .. } => {
                prop_assert!(prefix.len() <= max && *len > max)
            }
        }
    }
    prop_assert_eq!(out, reference(data, max, start));
    Ok(())
}

fn framer_input() -> impl Strategy<Value = Vec<u8>> {
    // Mostly short runs with plenty of newlines and `\r`, sometimes arbitrary bytes.
    prop_oneof![
        prop::collection::vec(prop_oneof![Just(b'\n'), Just(b'\r'), Just(b'a'), any::<u8>()], 0..400),
        prop::collection::vec(any::<u8>(), 0..400),
    ]
}

#[test]
fn fuzz_framer() {
    let c = corpus("framer");
    for (name, data) in &c {
        for max in [0usize, 1, 3, 16, 256, 1 << 20] {
            for step in [1usize, 2, 7, 64, usize::MAX] {
                let cuts: Vec<_> = (0..data.len()).step_by(step.min(data.len().max(1))).collect();
                let mut f = LineFramer::new(max, 5);
                let mut out = vec![];
                let mut prev = 0;
                for p in cuts.into_iter().chain(std::iter::once(data.len())) {
                    f.push(&data[prev..p], &mut out);
                    prev = p;
                }
                out.extend(f.finish());
                assert_eq!(out, reference(data, max, 5), "corpus framer/{name} max {max} step {step}");
            }
        }
    }
    let strat = (
        framer_input(),
        prop::collection::vec(any::<prop::sample::Index>(), 0..20),
        prop_oneof![0usize..4, 4usize..40, Just(1usize << 20)],
        0u64..1_000_000,
    );
    runner()
        .run(&strat, |(d, cuts, max, start)| check_framer(&d, &cuts, max, start))
        .unwrap();
    figures("framer", c.len());
}

// ---------------------------------------------------------------- (c) Config::parse_with_env

const YAMLS: &[&str] = &[
    "siem:\n  url: https://siem.example.com/collector\n  auth:\n    header: \"Authorization: Bearer ${TOKEN}\"\n  timeout: 5s\nsources:\n  file:\n    path: /var/log/sendauth/events.jsonl\n  socket:\n    path: /tmp/x.sock\n  max_event_bytes: 1MiB\nqueue:\n  path: /tmp/q\n  max_bytes: 1GiB\ndelivery:\n  max_retries: 5\n  linger: 10ms\nstatus:\n  listen: 127.0.0.1:8686\nlog:\n  level: info\n",
    "siem:\n  url: https://s.example.com:8088/services/collector/event\n  platform: splunk_hec\n  splunk_hec:\n    index: ${HEC}\n    indexer_ack: true\nsources:\n  socket: { path: /tmp/x.sock }\nqueue:\n  path: /tmp/q\n",
    "siem:\n  url: https://e.example.com:9200/sendauth/_doc\n  elasticsearch:\n    index: sendauth\nsources:\n  socket: { path: /tmp/x.sock }\nqueue:\n  path: /tmp/q\n",
];

fn env(k: &str) -> Option<String> {
    match k {
        "TOKEN" | "HEC" => Some("main".into()),
        _ => None,
    }
}

fn check_config(text: &[u8]) -> Result<(), TestCaseError> {
    let text = String::from_utf8_lossy(text);
    if let Err(e) = Config::parse_with_env(&text, &env) {
        prop_assert!(!e.problems.is_empty(), "an error without a problem");
        for p in &e.problems {
            prop_assert!(!p.to_string().trim().is_empty(), "an empty problem line in {:?}", e.problems);
        }
    }
    Ok(())
}

#[test]
fn fuzz_config() {
    let c = corpus("config");
    for (name, data) in &c {
        check_config(data).unwrap_or_else(|e| panic!("corpus config/{name}: {e}"));
    }
    for y in YAMLS {
        Config::parse_with_env(y, &env).unwrap_or_else(|e| panic!("seed does not parse: {e}\n{y}"));
    }
    runner()
        .run(&prop::collection::vec(any::<u8>(), 0..300), |b| check_config(&b))
        .unwrap();
    runner()
        .run(&"[a-z_:{}\\[\\], \n\"'$&*!|>-]{0,200}", |s| check_config(s.as_bytes()))
        .unwrap();
    runner().run(&mutated(YAMLS), |b| check_config(&b)).unwrap();
    figures("config", c.len());
}

// ---------------------------------------------------------------- (d) Platform::interpret

fn platforms() -> Vec<std::sync::Arc<dyn Platform>> {
    [
        "https://siem.example.com/collector",
        "https://s.example.com:8088/services/collector/event",
        "https://e.example.com:9200/sendauth/_doc",
        "https://c.sumologic.com/receiver/v1/http/ZaVnC4secret",
    ]
    .iter()
    .map(|url| {
        let yaml = format!("siem:\n  url: {url}\nsources:\n  socket: {{ path: /tmp/x.sock }}\nqueue:\n  path: /tmp/q\n");
        let cfg = Config::parse_with_env(&yaml, &|_| None).unwrap();
        build_platform(&cfg.siem)
    })
    .collect()
}

fn events(n: usize) -> Vec<QueuedEvent> {
    (0..n)
        .map(|i| QueuedEvent {
            seq: i as u64 + 1,
            data: Bytes::from(VALID[0].replace("tx-uuid", &format!("tx-{i}"))),
            accepted_at_ms: 1,
        })
        .collect()
}

const BODIES: &[&str] = &[
    r#"{"text":"Invalid data format","code":6,"invalid-event-number":1}"#,
    r#"{"text":"Success","code":0,"ackId":3}"#,
    r#"{"text":"Server is busy","code":9}"#,
    r#"{"errors":true,"items":[{"create":{"status":201}},{"create":{"status":400,"error":{"type":"mapper_parsing_exception","reason":"x"}}},{"create":{"status":429}}]}"#,
    r#"{"errors":false,"items":[{"create":{"status":201}},{"create":{"status":409}}]}"#,
    r#"{"error":{"type":"index_not_found_exception","reason":"no such index"},"status":404}"#,
];

fn check_interpret(p: &dyn Platform, status: u16, body: &[u8], n: usize, content_type: Option<&str>) -> Result<(), TestCaseError> {
    let evs = events(n);
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(ct) = content_type {
        headers.insert("content-type", ct.parse().unwrap());
    }
    headers.insert("x-elastic-product", "Elasticsearch".parse().unwrap());
    let resp = Response {
        status,
        headers,
        body: Bytes::copy_from_slice(body),
    };
    match p.interpret(&evs, &resp) {
        Verdict::PerEvent(out) => prop_assert_eq!(out.len(), n, "{} {} {:?}", p.name(), status, String::from_utf8_lossy(body)),
        Verdict::Retry(f) | Verdict::TooLarge(f) | Verdict::Rejected(f) => {
            prop_assert!(!f.message.trim().is_empty(), "{} {}: empty failure message", p.name(), status)
        }
        Verdict::Delivered => {}
    }
    Ok(())
}

#[test]
fn fuzz_interpret() {
    let ps = platforms();
    assert_eq!(
        ps.iter().map(|p| p.name()).collect::<Vec<_>>(),
        ["generic", "splunk_hec", "elasticsearch", "sumo_logic"]
    );
    let c = corpus("interpret");
    for (name, data) in &c {
        for p in &ps {
            for status in [200u16, 201, 207, 301, 400, 401, 404, 408, 413, 429, 500, 503] {
                for n in [1usize, 3] {
                    check_interpret(p.as_ref(), status, data, n, Some("application/json"))
                        .unwrap_or_else(|e| panic!("corpus interpret/{name} on {}: {e}", p.name()));
                }
            }
        }
    }
    let body = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..300),
        mutated(BODIES),
        (0..BODIES.len()).prop_map(|i| BODIES[i].as_bytes().to_vec()),
    ];
    let ct = prop_oneof![
        Just(None),
        Just(Some("application/json")),
        Just(Some("text/html")),
        Just(Some("application/x-ndjson; charset=utf-8"))
    ];
    let strat = (0..ps.len(), 100u16..600, body, 1usize..6, ct);
    runner()
        .run(&strat, |(pi, status, body, n, ct)| {
            check_interpret(ps[pi].as_ref(), status, &body, n, ct)
        })
        .unwrap();
    figures("interpret", c.len());
}
