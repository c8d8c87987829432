//! TLS and credential hygiene through the real binary: a private CA, an unknown CA, a wrong
//! host name, an expired certificate, mTLS, the minimum TLS version and `insecure_skip_verify`,
//! against a TLS front (rustls, certificates made with rcgen) that passes the decrypted requests
//! to a SIEM emulator; plain http to a remote host; and configs holding secrets inline.

mod common;
#[path = "common/tls.rs"]
mod tls;

use common::*;
use sendauth_siem_emulators::{Emulator, EmulatorConfig, Kind};
use tls::{Ca, FrontConfig, TlsFront, Validity};

/// A generic emulator behind a TLS front presenting `cert`.
async fn tls_siem(front: FrontConfig<'_>) -> (Emulator, TlsFront) {
    let emu = Emulator::start(EmulatorConfig::new(Kind::Generic)).await.unwrap();
    let f = TlsFront::start(front, emu.addr()).await;
    (emu, f)
}

fn plain(cert: &tls::Leaf) -> FrontConfig<'_> {
    FrontConfig {
        cert,
        client_ca: None,
        tls12_only: false,
    }
}

/// Writes a config for `url` with `siem_extra` under `siem:` and runs `sendauth-siem test`.
async fn run_test_cmd(env: &TestEnv, url: &str, siem_extra: &str) -> (i32, String) {
    let mut c = Cfg::new(url);
    c.siem = siem_extra.to_string();
    env.write_config(&c);
    let conf = env.config.to_str().unwrap().to_string();
    let (code, out, err) = tokio::task::spawn_blocking(move || cli(&["test", "--config", &conf]))
        .await
        .unwrap();
    let all = format!("{out}{err}");
    // Shown with --nocapture: the exact diagnosis for each case.
    println!("--- sendauth-siem test ({url}) exit {code}:\n{all}");
    (code, all)
}

fn ca_file(path: &std::path::Path) -> String {
    format!("  tls:\n    ca_file: {}\n", path.display())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_ca_in_ca_file_is_trusted_and_events_are_delivered() {
    let env = TestEnv::new();
    let ca = Ca::new("Test Private CA");
    let cert = ca.server(&["localhost", "127.0.0.1"], Validity::Current);
    let (emu, front) = tls_siem(plain(&cert)).await;
    let tls = ca_file(&ca.write(env.dir.path(), "ca"));

    let (code, out) = run_test_cmd(&env, &front.url("localhost", "/collector"), &tls).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("OK: the SIEM accepted the test event"), "{out}");
    // By IP address too (the certificate names 127.0.0.1).
    let (code, out) = run_test_cmd(&env, &front.url("127.0.0.1", "/collector"), &tls).await;
    assert_eq!(code, 0, "{out}");

    let mut c = Cfg::new(&front.url("localhost", "/collector"));
    c.siem = tls;
    env.write_config(&c);
    let agent = AgentProc::start(&env).await;
    env.append(&(0..5).map(event).collect::<Vec<_>>());
    assert!(emu.wait_for_events(7, DEADLINE).await, "{}", agent.logs());
    let got = tx_ids(&emu.events()[2..]);
    assert_eq!(got, expected_ids(0..5));
    agent.wait_status(DEADLINE, |s| s["state"] == "success").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_ca_is_diagnosed_and_events_are_held_until_ca_file_is_added() {
    let env = TestEnv::new();
    let ca = Ca::new("Test Private CA");
    let cert = ca.server(&["localhost", "127.0.0.1"], Validity::Current);
    let (emu, front) = tls_siem(plain(&cert)).await;
    let url = front.url("localhost", "/collector");

    let (code, out) = run_test_cmd(&env, &url, "").await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("unknown certificate authority; add that CA with siem.tls.ca_file"),
        "{out}"
    );

    // The running agent keeps the events, reports the reason, and delivers once the CA is added.
    env.write_config(&Cfg::new(&url));
    let agent = AgentProc::start(&env).await;
    env.append(&(0..3).map(event).collect::<Vec<_>>());
    let s = agent
        .wait_status(DEADLINE, |s| s["state"] == "error" && s["queue"]["pending"] == 3)
        .await;
    let msg = s["last_error"]["message"].as_str().unwrap();
    assert!(msg.contains("unknown certificate authority"), "{msg}");
    assert_eq!(emu.event_count(), 0);

    let mut c = Cfg::new(&url);
    c.siem = ca_file(&ca.write(env.dir.path(), "ca"));
    env.write_config(&c);
    assert!(emu.wait_for_events(3, DEADLINE).await, "{}", agent.logs());
    assert_eq!(sorted_ids(&emu.events()), expected_ids(0..3));
    agent
        .wait_status(DEADLINE, |s| s["state"] == "success" && s["queue"]["pending"] == 0)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_for_another_host_name_is_diagnosed() {
    let env = TestEnv::new();
    let ca = Ca::new("Test Private CA");
    let cert = ca.server(&["siem.other.example"], Validity::Current);
    let (emu, front) = tls_siem(plain(&cert)).await;
    let tls = ca_file(&ca.write(env.dir.path(), "ca"));
    let (code, out) = run_test_cmd(&env, &front.url("localhost", "/collector"), &tls).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("certificate does not match the host name in siem.url"), "{out}");
    assert_eq!(emu.event_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_certificate_is_diagnosed() {
    let env = TestEnv::new();
    let ca = Ca::new("Test Private CA");
    let cert = ca.server(&["localhost", "127.0.0.1"], Validity::Expired);
    let (emu, front) = tls_siem(plain(&cert)).await;
    let tls = ca_file(&ca.write(env.dir.path(), "ca"));
    let (code, out) = run_test_cmd(&env, &front.url("localhost", "/collector"), &tls).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("certificate has expired"), "{out}");
    assert_eq!(emu.event_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_without_a_client_certificate_fails_and_with_one_delivers() {
    let env = TestEnv::new();
    let ca = Ca::new("Test Private CA");
    let client_ca = Ca::new("Test Client CA");
    let cert = ca.server(&["localhost", "127.0.0.1"], Validity::Current);
    let (emu, front) = tls_siem(FrontConfig {
        cert: &cert,
        client_ca: Some(&client_ca),
        tls12_only: false,
    })
    .await;
    let url = front.url("localhost", "/collector");
    let tls = ca_file(&ca.write(env.dir.path(), "ca"));

    let (code, out) = run_test_cmd(&env, &url, &tls).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("requires a client certificate"), "{out}");
    assert!(out.contains("siem.tls.client_cert"), "{out}");

    // A client certificate from another CA is refused too.
    let stranger = Ca::new("Stranger CA").client("sendauth-siem");
    let (c, k) = stranger.write(env.dir.path(), "stranger");
    let (code, out) = run_test_cmd(
        &env,
        &url,
        &format!("{tls}    client_cert: {}\n    client_key: {}\n", c.display(), k.display()),
    )
    .await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("refused the client certificate in siem.tls.client_cert"), "{out}");

    let (c, k) = client_ca.client("sendauth-siem").write(env.dir.path(), "client");
    let (code, out) = run_test_cmd(
        &env,
        &url,
        &format!("{tls}    client_cert: {}\n    client_key: {}\n", c.display(), k.display()),
    )
    .await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(emu.event_count(), 1);

    // TLS 1.2 checks the client certificate inside the handshake: the same diagnosis.
    let front12 = TlsFront::start(
        FrontConfig {
            cert: &cert,
            client_ca: Some(&client_ca),
            tls12_only: true,
        },
        emu.addr(),
    )
    .await;
    let (code, out) = run_test_cmd(&env, &front12.url("localhost", "/collector"), &tls).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("requires a client certificate (mTLS) and none was sent"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_version_1_3_refuses_a_tls12_only_server() {
    let env = TestEnv::new();
    let ca = Ca::new("Test Private CA");
    let cert = ca.server(&["localhost"], Validity::Current);
    let (emu, front) = tls_siem(FrontConfig {
        cert: &cert,
        client_ca: None,
        tls12_only: true,
    })
    .await;
    let url = front.url("localhost", "/collector");
    let tls = ca_file(&ca.write(env.dir.path(), "ca"));

    let (code, out) = run_test_cmd(&env, &url, &tls).await;
    assert_eq!(code, 0, "TLS 1.2 is allowed by default: {out}");
    let (code, out) = run_test_cmd(&env, &url, &format!("{tls}    min_version: \"1.3\"\n")).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("does not offer TLS 1.3"), "{out}");
    assert!(out.contains("siem.tls.min_version"), "{out}");
    assert_eq!(emu.event_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insecure_skip_verify_delivers_and_warns_loudly() {
    let env = TestEnv::new();
    let cert = Ca::new("Unknown CA").server(&["siem.other.example"], Validity::Expired);
    let (emu, front) = tls_siem(plain(&cert)).await;
    let url = front.url("localhost", "/collector");
    let skip = "  tls:\n    insecure_skip_verify: true\n";

    let (code, out) = run_test_cmd(&env, &url, skip).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("insecure_skip_verify is true"), "{out}");

    let mut c = Cfg::new(&url);
    c.siem = skip.into();
    env.write_config(&c);
    let agent = AgentProc::start(&env).await;
    env.append(&[event(0)]);
    assert!(emu.wait_for_events(2, DEADLINE).await, "{}", agent.logs());
    let logs = agent.logs();
    assert!(
        logs.contains("WARN") && logs.contains("insecure_skip_verify is true") && logs.contains("NOT checked"),
        "{logs}"
    );
}

#[test]
fn plain_http_to_a_remote_host_is_a_config_error() {
    let env = TestEnv::new();
    let conf = env.config.to_str().unwrap();
    env.write_config(&Cfg::new("http://siem.example.com/collector"));
    let (code, out, _) = cli(&["check-config", "--config", conf]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("siem.url: plain http:// to a non-loopback host"), "{out}");
    assert!(out.contains("siem.allow_plain_http: true"), "{out}");

    let mut c = Cfg::new("http://siem.example.com/collector");
    c.siem = "  allow_plain_http: true\n".into();
    env.write_config(&c);
    let (code, out, _) = cli(&["check-config", "--config", conf]);
    assert_eq!(code, 0, "{out}");

    for loopback in ["http://127.0.0.1:9/c", "http://localhost:9/c", "http://[::1]:9/c"] {
        env.write_config(&Cfg::new(loopback));
        let (code, out, _) = cli(&["check-config", "--config", conf]);
        assert_eq!(code, 0, "{loopback}: {out}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_readable_config_with_an_inline_secret_is_warned_about_without_the_secret() {
    use std::os::unix::fs::PermissionsExt;
    let emu = Emulator::start(EmulatorConfig::new(Kind::Generic)).await.unwrap();
    let env = TestEnv::new();
    let mut c = Cfg::new(&emu.url());
    c.siem = "  auth:\n    header: \"Authorization: Bearer inline-Secret-4711\"\n".into();
    env.write_config(&c);
    std::fs::set_permissions(&env.config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut agent = AgentProc::start(&env).await;
    env.append(&[event(0)]);
    assert!(emu.wait_for_events(1, DEADLINE).await);
    agent.wait_status(DEADLINE, |s| s["state"] == "success").await;
    let status = get(agent.port, "/status").await.unwrap().1;
    let metrics = get(agent.port, "/metrics").await.unwrap().1;
    agent.term();
    let logs = agent.logs();
    assert!(
        logs.contains("holds secrets inline (siem.auth.header)") && logs.contains("mode 644") && logs.contains("chmod 600"),
        "{logs}"
    );
    for (what, text) in [("log", &logs), ("status", &status), ("metrics", &metrics)] {
        assert!(!text.contains("inline-Secret-4711"), "the secret leaked into the {what}:\n{text}");
    }

    // Owner-only: no warning.
    std::fs::set_permissions(&env.config, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut agent = AgentProc::start(&env).await;
    agent.term();
    assert!(!agent.logs().contains("holds secrets inline"), "{}", agent.logs());

    // A secret from the environment is not in the file: no warning either.
    c.siem = "  auth:\n    header: \"Authorization: Bearer ${TEST_SIEM_TOKEN}\"\n".into();
    env.write_config(&c);
    std::fs::set_permissions(&env.config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut agent = AgentProc::start_with_env(&env, &[("TEST_SIEM_TOKEN", "env-Secret-0815")]).await;
    agent.term();
    assert!(!agent.logs().contains("holds secrets inline"), "{}", agent.logs());
    assert!(!agent.logs().contains("env-Secret-0815"));
}
