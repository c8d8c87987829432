//! `top`: a live view of the running agent, redrawn every interval from its admin socket's
//! `Status` answer (rates are the difference of two answers' running totals).

use std::process::ExitCode;

use super::admin_client::unexpected;
use super::status::{ago, seconds};
use crate::admin::{Response, StatusAnswer};
use crate::config::QueueConfig;
use crate::status::{Counters, StatusDoc};
use anyhow::{bail, Context};

/// One `Status` answer from the running agent's admin socket.
fn agent_status(cfg: &QueueConfig) -> anyhow::Result<StatusAnswer> {
    let mut answer = None;
    let running = crate::admin::call(&cfg.path, &crate::admin::Request::Status, &mut |r| answer = Some(r))
        .with_context(|| format!("cannot talk to the agent's admin socket in {}", cfg.path.display()))?;
    if !running {
        bail!(
            "no agent is running on the queue at {} (no admin socket); start it with `sendauth-siem run`",
            cfg.path.display()
        );
    }
    match answer {
        Some(Response::Status(a)) => Ok(*a),
        Some(Response::Failed(f)) => bail!("{}", f.error),
        Some(other) => Err(unexpected(&other, "a status")),
        None => bail!("the agent did not answer"),
    }
}

/// `top`: redraws a frame every `interval` until Ctrl-C (or once).
pub(super) fn top_cmd(cfg: &QueueConfig, interval: std::time::Duration, once: bool) -> anyhow::Result<ExitCode> {
    use std::io::{IsTerminal, Write};
    let tty = std::io::stdout().is_terminal();
    let mut prev: Option<(std::time::Instant, Counters)> = None;
    loop {
        let a = agent_status(cfg)?;
        let now = std::time::Instant::now();
        let rates = prev.as_ref().map(|(t, p)| {
            let secs = now.duration_since(*t).as_secs_f64().max(0.001);
            let c = &a.counters;
            let rate = |now: u64, before: u64| now.saturating_sub(before) as f64 / secs;
            (
                rate(c.received, p.received),
                rate(c.delivered, p.delivered) + rate(c.dead_lettered, p.dead_lettered),
            )
        });
        if once && rates.is_none() {
            prev = Some((now, a.counters));
            std::thread::sleep(interval);
            continue;
        }
        let frame = render_top(&a.status, &a.counters, rates);
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
        prev = Some((now, a.counters));
        std::thread::sleep(interval);
    }
}

/// One frame of `top`.
fn render_top(s: &StatusDoc, c: &Counters, rates: Option<(f64, f64)>) -> String {
    use std::fmt::Write;
    let mut f = String::new();
    let rate = |r: Option<f64>| r.map_or("–".to_string(), |r| format!("{r:.1}/s"));
    let _ = writeln!(
        f,
        "sendauth-siem top · {} ({}) · up {} s · Ctrl-C to quit",
        s.config.url, s.config.platform, s.uptime_seconds
    );
    let last = s
        .last_success_at
        .as_deref()
        .map(|t| format!("last success {}", ago(t)))
        .unwrap_or_else(|| "no success yet".into());
    let _ = writeln!(f, "State        {:<12} {last}", s.state.as_str());
    let _ = writeln!(f, "In           {:<12} total {}", rate(rates.map(|r| r.0)), c.received);
    let _ = writeln!(
        f,
        "Out          {:<12} delivered {}, dead-lettered {}; requests ok {}, failed {}",
        rate(rates.map(|r| r.1)),
        c.delivered,
        c.dead_lettered,
        c.requests_ok,
        c.requests_failed
    );
    let _ = writeln!(
        f,
        "Queue        {} pending, oldest {} s{}",
        s.queue.pending,
        seconds(s.queue.oldest_pending_age_seconds),
        if s.queue.full { " (FULL)" } else { "" }
    );
    let _ = writeln!(f, "Dead letter  {}    Quarantine {}", s.dead_letter.count, s.quarantine.count);
    let _ = writeln!(f, "Inputs");
    if let Some(file) = &s.sources.file {
        let _ = writeln!(f, "  file       {:<9} {}", file.state.as_str(), file.summary);
    }
    if let Some(sock) = &s.sources.socket {
        let _ = writeln!(
            f,
            "  socket     listening {} ({} of at most {} writers)",
            sock.path, sock.connections, sock.max_connections
        );
    }
    for e in &s.endpoints {
        let _ = writeln!(
            f,
            "  endpoint   {:<9} {} {}",
            e.state.as_str(),
            e.url,
            e.last_error.as_ref().map_or("", |e| e.message.as_str())
        );
    }
    if let Some(r) = &s.config.reload_error {
        let _ = writeln!(f, "Config       reload FAILED: {r}");
    }
    for w in &s.warnings {
        let _ = writeln!(f, "Warning      {w}");
    }
    if !s.recent_errors.is_empty() {
        let _ = writeln!(f, "Recent errors");
        for e in s.recent_errors.iter().take(5) {
            let mark = if e.resolved_at.is_some() { " (resolved)" } else { "" };
            let _ = writeln!(f, "  {}{mark}  {}", ago(&e.at), e.message);
        }
    }
    f
}
