//! The status page at `GET /`, rendered by headless Chromium as a person would see it: the
//! state indicator, the error details, the redacted SIEM URL and the queue figures, and the
//! indicator's colour in a screenshot (error red #d64545, then success green #1f9d55 once the
//! SIEM recovers).
//!
//! Chromium comes from Debian's `chromium` package, which `.ci/run` installs. Outside CI a
//! machine without it skips this test with a loud message; in CI (`CI` set) a missing Chromium
//! fails it.
//!
//! Set `SENDAUTH_KEEP_SCREENSHOTS=<dir>` to keep the screenshots for a look.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use sendauth_siem_emulators::{Emulator, EmulatorConfig, Fault, Kind};

const ERROR_RGB: [u8; 3] = [0xd6, 0x45, 0x45];
const SUCCESS_RGB: [u8; 3] = [0x1f, 0x9d, 0x55];

fn find_chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser"] {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// Chromium, or `None` (with a loud message) on a machine without it; in CI (`CI` set) a missing
/// Chromium fails the test.
fn chromium_or_skip() -> Option<PathBuf> {
    let found = find_chromium();
    if found.is_none() {
        if std::env::var_os("CI").is_some() {
            panic!("chromium is not installed, and CI must run this test; .ci/run installs Debian's chromium package");
        }
        eprintln!("\n\n*** SKIPPED status_page test: chromium is not installed (apt-get install chromium); CI runs it ***\n\n");
    }
    found
}

/// Runs headless Chromium on `url` with `args` (e.g. `--dump-dom`); returns its stdout.
fn chromium(bin: &Path, profile: &Path, args: &[String], url: &str) -> String {
    let mut child = Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
            "--window-size=1000,800",
            "--virtual-time-budget=3000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .env("HOME", profile)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium");
    // Read stdout on a thread so a large DOM cannot block the browser on a full pipe.
    let mut out = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut out, &mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "chromium exited with {status}");
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within 180 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    reader.join().unwrap()
}

/// Takes a screenshot of `url` into `file`; returns its pixels as RGB.
fn screenshot(bin: &Path, profile: &Path, url: &str, file: &Path) -> Vec<[u8; 3]> {
    let _ = std::fs::remove_file(file);
    chromium(bin, profile, &[format!("--screenshot={}", file.display())], url);
    if let Ok(dir) = std::env::var("SENDAUTH_KEEP_SCREENSHOTS") {
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::copy(file, Path::new(&dir).join(file.file_name().unwrap()));
    }
    let decoder = png::Decoder::new(std::fs::File::open(file).expect("chromium wrote the screenshot"));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    let step = info.color_type.samples();
    assert!(step >= 3, "unexpected PNG colour type {:?}", info.color_type);
    buf[..info.buffer_size()].chunks_exact(step).map(|p| [p[0], p[1], p[2]]).collect()
}

/// The text of the element with this id in a serialized DOM (no nested elements).
fn element_text<'a>(dom: &'a str, id: &str) -> Option<&'a str> {
    let after_id = dom.split(&format!("id=\"{id}\"")).nth(1)?;
    let (_, rest) = after_id.split_once('>')?;
    rest.split('<').next()
}

/// Pixels within a small tolerance of `rgb` (anti-aliasing and colour management shift edges).
fn count_colour(pixels: &[[u8; 3]], rgb: [u8; 3]) -> usize {
    pixels.iter().filter(|p| p.iter().zip(rgb).all(|(a, b)| a.abs_diff(b) <= 6)).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_shows_error_details_then_success_in_a_real_browser() {
    let Some(bin) = chromium_or_skip() else { return };
    let emu = Emulator::start(EmulatorConfig::new(Kind::Generic)).await.unwrap();
    emu.set_fault(Some(Fault::Status {
        code: 503,
        body: "maintenance window".into(),
        headers: vec![],
    }));
    let env = TestEnv::new();
    let mut c = Cfg::new(&format!("{}?token=query-Secret-9876", emu.url()));
    c.siem = "  auth:\n    header: \"Authorization: Bearer header-Secret-5432\"\n".into();
    env.write_config(&c);
    let agent = AgentProc::start(&env).await;
    env.append(&(0..3).map(event).collect::<Vec<_>>());
    agent
        .wait_status(DEADLINE, |s| s["state"] == "error" && s["queue"]["pending"] == 3)
        .await;

    let url = format!("http://127.0.0.1:{}/", agent.port);
    let profile = env.dir.path().join("chromium-profile");
    std::fs::create_dir_all(&profile).unwrap();
    let shots = env.dir.path().to_path_buf();

    let (b, p, u) = (bin.clone(), profile.clone(), url.clone());
    let dom = tokio::task::spawn_blocking(move || chromium(&b, &p, &["--dump-dom".to_string()], &u))
        .await
        .unwrap();
    assert_eq!(element_text(&dom, "state-text"), Some("Error"), "{dom}");
    for want in [
        "HTTP 503",
        "maintenance window",
        "?REDACTED",
        "/collector",
        "generic",
        "failed attempt(s) in a row; next try",
    ] {
        assert!(dom.contains(want), "the page lacks {want:?}:\n{dom}");
    }
    assert_eq!(element_text(&dom, "pending"), Some("3"), "{dom}");
    for secret in ["query-Secret-9876", "header-Secret-5432"] {
        assert!(!dom.contains(secret), "a secret is on the page:\n{dom}");
    }

    let (b, p, u, f) = (bin.clone(), profile.clone(), url.clone(), shots.join("status-error.png"));
    let pixels = tokio::task::spawn_blocking(move || screenshot(&b, &p, &u, &f)).await.unwrap();
    let red = count_colour(&pixels, ERROR_RGB);
    let green = count_colour(&pixels, SUCCESS_RGB);
    eprintln!("error page: {red} pixels of #d64545, {green} of #1f9d55");
    assert!(red >= 1500, "the error indicator is not visible: {red} pixels of #d64545");
    assert_eq!(green, 0, "success colour on an error page");

    // The SIEM recovers: the page turns green.
    emu.set_fault(None);
    assert!(emu.wait_for_events(3, DEADLINE).await);
    agent
        .wait_status(DEADLINE, |s| s["state"] == "success" && s["queue"]["pending"] == 0)
        .await;
    let (b, p, u, f) = (bin.clone(), profile.clone(), url.clone(), shots.join("status-success.png"));
    let pixels = tokio::task::spawn_blocking(move || screenshot(&b, &p, &u, &f)).await.unwrap();
    let red = count_colour(&pixels, ERROR_RGB);
    let green = count_colour(&pixels, SUCCESS_RGB);
    eprintln!("success page: {red} pixels of #d64545, {green} of #1f9d55");
    assert!(green >= 1500, "the success indicator is not visible: {green} pixels of #1f9d55");
    assert!(red < 50, "error colour still on the page after recovery: {red} pixels");
}

/// The page shows the inputs (a file source waiting on a missing directory, the socket and its
/// writers), a warning for the dead letter, resolved errors marked as such, relative times, and
/// the last hour's chart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_shows_inputs_warnings_resolved_errors_and_the_last_hour() {
    let Some(bin) = chromium_or_skip() else { return };
    let emu = Emulator::start(EmulatorConfig::new(Kind::Generic)).await.unwrap();
    // First an outage (resolved later), then one event rejected for good (dead letter).
    emu.push_fault(Fault::Status {
        code: 503,
        body: "maintenance window".into(),
        headers: vec![],
    });
    emu.push_fault(Fault::Status {
        code: 400,
        body: "{\"error\":\"field subject too long\"}".into(),
        headers: vec![],
    });
    let env = TestEnv::new();
    let mut c = Cfg::new(&emu.url());
    c.siem = "  generic:\n    batch: none\n".into();
    c.delivery = "  initial_backoff: 20ms\n  max_backoff: 200ms\n  max_in_flight: 1\n".into();
    let text = env.render(&c).replace(
        &format!("path: {}\n", env.events.display()),
        &format!("path: {}\n", env.dir.path().join("not-mounted/events.jsonl").display()),
    );
    env.write_config_text(&text);
    let agent = AgentProc::start(&env).await;
    common::campaign::send_all_accepted(&env.socket, &[event(0), event(1)], 2).await;
    assert!(emu.wait_for_events(1, DEADLINE).await);
    agent
        .wait_status(DEADLINE, |s| {
            s["dead_letter"]["count"] == 1
                && s["queue"]["pending"] == 0
                && s["state"] == "success"
                && s["last_error"]["dead_letter"] == true
        })
        .await;
    // The chart needs two samples (one per 10 s).
    let port = agent.port;
    assert!(
        wait_until_async(DEADLINE, || async move {
            get(port, "/history")
                .await
                .and_then(|(_, b)| serde_json::from_str::<serde_json::Value>(&b).ok())
                .is_some_and(|h| h["points"].as_array().is_some_and(|p| !p.is_empty()))
        })
        .await,
        "/history has no point after {DEADLINE:?}"
    );

    let url = format!("http://127.0.0.1:{}/", agent.port);
    let profile = env.dir.path().join("chromium-profile");
    std::fs::create_dir_all(&profile).unwrap();
    let (b, p, u) = (bin.clone(), profile.clone(), url.clone());
    let dom = tokio::task::spawn_blocking(move || chromium(&b, &p, &["--dump-dom".to_string()], &u))
        .await
        .unwrap();
    for want in [
        "input-state waiting",
        "not-mounted does not exist",
        "input-state listening",
        "writer(s) connected",
        "1 event(s) in the dead letter",
        "field subject too long",
        "class=\"resolved\"",
        "maintenance window",
        " s ago",
        "<polyline",
        "one point per 10 s",
    ] {
        assert!(dom.contains(want), "the page lacks {want:?}:\n{dom}");
    }
    let (b, p, u, f) = (bin.clone(), profile.clone(), url.clone(), env.dir.path().join("status-inputs.png"));
    let pixels = tokio::task::spawn_blocking(move || screenshot(&b, &p, &u, &f)).await.unwrap();
    let waiting = count_colour(&pixels, [0xb7, 0x79, 0x1f]);
    let warning_edge = count_colour(&pixels, [0xf0, 0xb4, 0x29]);
    eprintln!("inputs page: {waiting} pixels of the waiting colour, {warning_edge} of the warning edge");
    assert!(waiting >= 20, "the waiting input is not visible: {waiting} pixels");
    assert!(warning_edge >= 200, "the dead-letter warning is not visible: {warning_edge} pixels");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_lists_each_endpoint_when_there_are_several() {
    let Some(bin) = chromium_or_skip() else { return };
    let up = Emulator::start(EmulatorConfig::new(Kind::Generic)).await.unwrap();
    let down = Emulator::start(EmulatorConfig::new(Kind::Generic)).await.unwrap();
    down.set_fault(Some(Fault::Status {
        code: 503,
        body: "node draining".into(),
        headers: vec![],
    }));
    let env = TestEnv::new();
    env.write_config(&Cfg::new(&format!("[{}, {}]", up.url(), down.url())));
    let agent = AgentProc::start(&env).await;
    // Requests take turns, so a few rounds of events reach the failing endpoint.
    let failing = |s: &serde_json::Value| s["endpoints"].as_array().is_some_and(|e| e.iter().any(|e| e["state"] == "failing"));
    let mut n = 0;
    while !failing(&agent.status().await) {
        assert!(n < 1000, "the second endpoint never got a request: {}", agent.status().await);
        env.append(&(n..n + 5).map(event).collect::<Vec<_>>());
        n += 5;
        assert!(up.wait_for_events(n, DEADLINE).await);
    }
    agent.wait_status(DEADLINE, |s| s["queue"]["pending"] == 0 && failing(s)).await;

    let url = format!("http://127.0.0.1:{}/", agent.port);
    let profile = env.dir.path().join("chromium-profile");
    std::fs::create_dir_all(&profile).unwrap();
    let dom = tokio::task::spawn_blocking(move || chromium(&bin, &profile, &["--dump-dom".to_string()], &url))
        .await
        .unwrap();
    // One node down is not a SIEM in error: the indicator says Success, the list says which.
    assert_eq!(element_text(&dom, "state-text"), Some("Success"), "{dom}");
    assert!(!dom.contains("id=\"endpoints-card\" hidden"), "the endpoint list is shown:\n{dom}");
    let up_line = format!("{} — healthy", up.url());
    let down_line = format!("{} — failing", down.url());
    assert!(dom.contains(&up_line), "the page lacks {up_line:?}:\n{dom}");
    assert!(dom.contains(&down_line), "the page lacks {down_line:?}:\n{dom}");
    assert!(dom.contains("node draining"), "the failing endpoint's error is shown:\n{dom}");
}
