//! `tap`: events as the running agent queues them, streamed from its admin socket.

use std::process::ExitCode;

use anyhow::{bail, Context};
use serde_json::Value;

use super::admin_client::unexpected;
use crate::admin::Response;
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
        let line = line.context("reading from the agent's admin socket")?;
        let r: Response =
            serde_json::from_str(&line).with_context(|| format!("the agent's tap sent a line this command does not understand: {line}"))?;
        match r {
            Response::Failed(f) => bail!("{}", f.error),
            Response::Head(_) => {}
            Response::End(e) => {
                if !json {
                    eprintln!("{} event(s) shown", e.listed);
                }
                return Ok(ExitCode::SUCCESS);
            }
            Response::Skipped(s) => eprintln!("({} event(s) skipped: this view could not keep up)", s.skipped),
            Response::Tapped(t) if json => println!("{}", serde_json::to_string(&t)?),
            Response::Tapped(t) => {
                // The event is the auth server's payload, not part of the protocol: its two
                // headline fields are read if they are there.
                let field = |k: &str| t.event.get(k).and_then(Value::as_str).unwrap_or("?").to_string();
                println!(
                    "{:<6} {:<22} {}  {}",
                    t.source,
                    field("event_type"),
                    field("transaction_id"),
                    serde_json::to_string(&t.event).unwrap_or_default()
                );
            }
            other => return Err(unexpected(&other, "a tapped event")),
        }
    }
    bail!("the agent closed the tap before the end (it stopped?)")
}
