//! `tap`: events as the running agent queues them, streamed from its admin socket.

use std::process::ExitCode;

use anyhow::{bail, Context};
use serde_json::Value;

use crate::config::QueueConfig;

/// `tap`: prints events as the running agent queues them, until `limit`.
pub(super) fn tap_cmd(cfg: &QueueConfig, limit: usize, json: bool) -> anyhow::Result<ExitCode> {
    use std::io::{BufRead, Write};
    let path = crate::admin::socket_path(&cfg.path);
    let mut s = std::os::unix::net::UnixStream::connect(&path).with_context(|| {
        format!(
            "no agent is running on the queue at {} (cannot connect to {}); start it with `sendauth-siem run`",
            cfg.path.display(),
            path.display()
        )
    })?;
    let mut req = serde_json::to_vec(&crate::admin::Request::Tap { limit })?;
    req.push(b'\n');
    s.write_all(&req)?;
    if !json {
        eprintln!("waiting for events (after the privacy transform; stops after {limit}; Ctrl-C to quit)");
    }
    for line in std::io::BufReader::new(s).lines() {
        let v: Value = serde_json::from_str(&line.context("reading from the agent's admin socket")?)?;
        if v["ok"] == false {
            bail!("{}", v["error"].as_str().unwrap_or("the agent refused the tap"));
        }
        if v["stream"] == true {
            continue;
        }
        if v["end"] == true {
            if !json {
                eprintln!("{} event(s) shown", v["listed"]);
            }
            return Ok(ExitCode::SUCCESS);
        }
        if let Some(n) = v["skipped"].as_u64() {
            eprintln!("({n} event(s) skipped: this view could not keep up)");
            continue;
        }
        if json {
            println!("{v}");
        } else {
            let e = &v["event"];
            println!(
                "{:<6} {:<22} {}  {}",
                v["source"].as_str().unwrap_or("?"),
                e["event_type"].as_str().unwrap_or("?"),
                e["transaction_id"].as_str().unwrap_or("?"),
                serde_json::to_string(e).unwrap_or_default()
            );
        }
    }
    bail!("the agent closed the tap before the end (it stopped?)")
}
