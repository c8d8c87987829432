//! `top`: a live view of the running agent, redrawn every interval from its admin socket's
//! `Status` answer (rates are the difference of two answers' running totals).

use std::process::ExitCode;

use anyhow::{bail, Context};
use serde_json::Value;

use super::status::ago;
use crate::config::QueueConfig;

/// One `Status` answer from the running agent's admin socket.
fn agent_status(cfg: &QueueConfig) -> anyhow::Result<Value> {
    let mut answer = Value::Null;
    let running = crate::admin::call(&cfg.path, &crate::admin::Request::Status, &mut |v| answer = v)
        .with_context(|| format!("cannot talk to the agent's admin socket in {}", cfg.path.display()))?;
    if !running {
        bail!(
            "no agent is running on the queue at {} (no admin socket); start it with `sendauth-siem run`",
            cfg.path.display()
        );
    }
    if answer["ok"] != true {
        bail!("{}", answer["error"].as_str().unwrap_or("the agent did not answer"));
    }
    Ok(answer)
}

/// `top`: redraws a frame every `interval` until Ctrl-C (or once).
pub(super) fn top_cmd(cfg: &QueueConfig, interval: std::time::Duration, once: bool) -> anyhow::Result<ExitCode> {
    use std::io::{IsTerminal, Write};
    let tty = std::io::stdout().is_terminal();
    let mut prev: Option<(std::time::Instant, Value)> = None;
    loop {
        let a = agent_status(cfg)?;
        let now = std::time::Instant::now();
        let rates = prev.as_ref().map(|(t, p)| {
            let secs = now.duration_since(*t).as_secs_f64().max(0.001);
            let rate = |k: &str| {
                (a["counters"][k]
                    .as_u64()
                    .unwrap_or(0)
                    .saturating_sub(p["counters"][k].as_u64().unwrap_or(0))) as f64
                    / secs
            };
            (rate("received"), rate("delivered") + rate("dead_lettered"))
        });
        if once && rates.is_none() {
            prev = Some((now, a));
            std::thread::sleep(interval);
            continue;
        }
        let frame = render_top(&a, rates);
        let mut out = std::io::stdout().lock();
        if tty {
            // Home and clear, then the frame: a steady picture, no scrolling.
            write!(out, "\x1b[H\x1b[2J")?;
        }
        write!(out, "{frame}")?;
        out.flush()?;
        drop(out);
        if once {
            return Ok(ExitCode::SUCCESS);
        }
        prev = Some((now, a));
        std::thread::sleep(interval);
    }
}

/// One frame of `top`.
fn render_top(a: &Value, rates: Option<(f64, f64)>) -> String {
    use std::fmt::Write;
    let s = &a["status"];
    let c = &a["counters"];
    let mut f = String::new();
    let rate = |r: Option<f64>| r.map_or("–".to_string(), |r| format!("{r:.1}/s"));
    let _ = writeln!(
        f,
        "sendauth-siem top · {} ({}) · up {} s · Ctrl-C to quit",
        s["config"]["url"].as_str().unwrap_or(""),
        s["config"]["platform"].as_str().unwrap_or(""),
        s["uptime_seconds"]
    );
    let last = s["last_success_at"]
        .as_str()
        .map(|t| format!("last success {}", ago(t)))
        .unwrap_or_else(|| "no success yet".into());
    let _ = writeln!(f, "State        {:<12} {last}", s["state"].as_str().unwrap_or("?"));
    let _ = writeln!(f, "In           {:<12} total {}", rate(rates.map(|r| r.0)), c["received"]);
    let _ = writeln!(
        f,
        "Out          {:<12} delivered {}, dead-lettered {}; requests ok {}, failed {}",
        rate(rates.map(|r| r.1)),
        c["delivered"],
        c["dead_lettered"],
        c["requests_ok"],
        c["requests_failed"]
    );
    let _ = writeln!(
        f,
        "Queue        {} pending, oldest {} s{}",
        s["queue"]["pending"],
        s["queue"]["oldest_pending_age_seconds"],
        if s["queue"]["full"] == true { " (FULL)" } else { "" }
    );
    let _ = writeln!(
        f,
        "Dead letter  {}    Quarantine {}",
        s["dead_letter"]["count"], s["quarantine"]["count"]
    );
    let _ = writeln!(f, "Inputs");
    let file = &s["sources"]["file"];
    if file.is_object() {
        let _ = writeln!(
            f,
            "  file       {:<9} {}",
            file["state"].as_str().unwrap_or("?"),
            file["summary"].as_str().unwrap_or("")
        );
    }
    let sock = &s["sources"]["socket"];
    if sock.is_object() {
        let _ = writeln!(
            f,
            "  socket     listening {} ({} of at most {} writers)",
            sock["path"].as_str().unwrap_or(""),
            sock["connections"],
            sock["max_connections"]
        );
    }
    for e in s["endpoints"].as_array().into_iter().flatten() {
        let _ = writeln!(
            f,
            "  endpoint   {:<9} {} {}",
            e["state"].as_str().unwrap_or("?"),
            e["url"].as_str().unwrap_or(""),
            e["last_error"]["message"].as_str().unwrap_or("")
        );
    }
    if let Some(r) = s["config"]["reload_error"].as_str() {
        let _ = writeln!(f, "Config       reload FAILED: {r}");
    }
    for w in s["warnings"].as_array().into_iter().flatten() {
        let _ = writeln!(f, "Warning      {}", w.as_str().unwrap_or(""));
    }
    let errors: Vec<&Value> = s["recent_errors"].as_array().into_iter().flatten().take(5).collect();
    if !errors.is_empty() {
        let _ = writeln!(f, "Recent errors");
        for e in errors {
            let at = e["at"].as_str().unwrap_or("");
            let mark = if e["resolved_at"].is_string() { " (resolved)" } else { "" };
            let _ = writeln!(f, "  {}{mark}  {}", ago(at), e["message"].as_str().unwrap_or(""));
        }
    }
    f
}
