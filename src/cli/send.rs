//! `send`: writes JSONL from stdin to the agent's socket and prints its answer.

use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context};
use serde_json::Value;

use super::runtime;

/// A duration as the user would write it back: `2s`, `1.5s`, `500ms`.
fn show_duration(d: std::time::Duration) -> String {
    if d.subsec_millis() == 0 && d.as_secs() > 0 {
        format!("{}s", d.as_secs())
    } else if d.as_secs() > 0 {
        format!("{}s", d.as_secs_f64())
    } else {
        format!("{}ms", d.as_millis().max(1))
    }
}

/// Sends stdin to the agent's socket and prints its answer. Every step (connecting, each
/// write, each answer line) has `timeout`: an agent that is stopped (SIGSTOP) or stalled never
/// answers, and a writer must not wait for it forever (docs/CONTRACT.md, "Socket protocol").
pub(super) fn send_cmd(socket: &Path, timeout: std::time::Duration) -> anyhow::Result<ExitCode> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let mut input = Vec::new();
    std::io::stdin().read_to_end(&mut input)?;
    let no_answer = |step: &str| {
        anyhow::anyhow!(
            "no answer from the agent at {} within {} ({step}); the events may not be durable; resend them once the agent answers again (is it stopped, or stalled on its disk? see `sendauth-siem status`)",
            socket.display(),
            show_duration(timeout)
        )
    };
    let rt = runtime()?;
    rt.block_on(async {
        let s = match tokio::time::timeout(timeout, tokio::net::UnixStream::connect(socket)).await {
            Err(_) => return Err(no_answer("connecting")),
            Ok(r) => r.with_context(|| {
                format!(
                    "cannot connect to {}; is the agent running with sources.socket.path set to it?",
                    socket.display()
                )
            })?,
        };
        let (rd, mut wr) = s.into_split();
        for chunk in input.chunks(64 * 1024) {
            match tokio::time::timeout(timeout, wr.write_all(chunk)).await {
                Err(_) => return Err(no_answer("sending the events")),
                Ok(r) => r.context("writing to the agent's socket")?,
            }
        }
        wr.shutdown().await.context("writing to the agent's socket")?;
        let mut code = ExitCode::SUCCESS;
        let mut got_answer = false;
        let mut lines = tokio::io::BufReader::new(rd).lines();
        loop {
            let line = match tokio::time::timeout(timeout, lines.next_line()).await {
                Err(_) => return Err(no_answer("waiting for its confirmation")),
                Ok(r) => match r.context("reading the agent's answer")? {
                    Some(l) => l,
                    None => break,
                },
            };
            println!("{line}");
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                if v.get("error").is_some() {
                    code = ExitCode::from(1);
                }
                if v.get("accepted").is_some() {
                    got_answer = true;
                    if v["rejected"].as_u64().unwrap_or(0) > 0 || v["refused"].as_u64().unwrap_or(0) > 0 {
                        code = ExitCode::from(1);
                    }
                }
            }
        }
        if !got_answer {
            bail!("the agent closed the connection without confirming; the events may not be durable");
        }
        Ok(code)
    })
}
