//! `status`: asks the agent's status API and prints it in words, with an exit code a script can
//! use (docs/CONTRACT.md, "Status").

use serde::Deserialize;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use super::{load_local, runtime};
use crate::status::{State, StatusDoc};

/// `status` exit codes (also in its `--help` and docs/CONTRACT.md).
const STATUS_HEALTHY: u8 = 0;
const STATUS_ATTENTION: u8 = 1;
const STATUS_NOT_DELIVERING: u8 = 2;

/// What `status` exits with for this status document: what needs a person, and how urgently.
fn status_exit(doc: &StatusDoc) -> u8 {
    if doc.state == State::Error {
        STATUS_NOT_DELIVERING
    } else if doc.config.reload_error.is_some()
        || doc.queue.incident.is_some()
        || !doc.warnings.is_empty()
        || !doc.queue.moved_aside.is_empty()
    {
        STATUS_ATTENTION
    } else {
        STATUS_HEALTHY
    }
}

/// Seconds as the status document's JSON writes them (`0.0`, `12.5`), so the words and the
/// JSON show the same figure.
pub(super) fn seconds(s: f64) -> String {
    serde_json::Number::from_f64(s).map_or_else(|| s.to_string(), |n| n.to_string())
}

pub(super) fn status_cmd(config: Option<PathBuf>, addr: Option<String>, json: bool, live: bool) -> anyhow::Result<ExitCode> {
    let addr = match (addr, config) {
        (Some(a), _) => a,
        (None, Some(c)) => match load_local(&c) {
            Ok(l) => l.status.listen.to_string(),
            Err(e) => {
                eprintln!("error: {e:#}");
                return Ok(ExitCode::from(STATUS_NOT_DELIVERING));
            }
        },
        (None, None) => crate::config::DEFAULT_STATUS_ADDR.to_string(),
    };
    let rt = runtime()?;
    let body = rt.block_on(async {
        let client = reqwest::Client::builder().timeout(std::time::Duration::from_secs(5)).build()?;
        client
            .get(format!("http://{addr}/status"))
            .send()
            .await?
            .error_for_status()?
            .text()
            .await
    });
    let body = match body {
        Ok(b) => b,
        Err(e) => {
            eprintln!(
                "error: no agent answered at http://{addr}/status ({}); is `sendauth-siem run` running, and is status.listen {addr}?",
                crate::sink::http::error_chain(&e)
            );
            return Ok(ExitCode::from(STATUS_NOT_DELIVERING));
        }
    };
    // Parsed once: the document as the agent sent it (`--json` prints every field, also those a
    // newer agent adds that this command does not know), and the typed view of it.
    let not_status = || {
        format!("the answer at http://{addr}/status is not a status document this command reads; are the agent and this command the same version?")
    };
    let raw: serde_json::Value = serde_json::from_str(&body).with_context(not_status)?;
    let doc = StatusDoc::deserialize(&raw).with_context(not_status)?;
    let code = if live { STATUS_HEALTHY } else { status_exit(&doc) };
    if json {
        println!("{raw}");
        return Ok(ExitCode::from(code));
    }
    print_status(&doc);
    Ok(ExitCode::from(code))
}

/// The status document in words.
fn print_status(v: &StatusDoc) {
    println!("State:            {}", v.state.label());
    if let Some(e) = &v.last_error {
        let at = e.at.as_str();
        let when = match &e.resolved_at {
            Some(r) => format!("at {at}, {}; resolved at {r}", ago(at)),
            None => format!("at {at}, {}", ago(at)),
        };
        println!("Last error:       {} ({when})", e.message);
    }
    for w in &v.warnings {
        println!("Warning:          {w}");
    }
    if let Some(r) = &v.retry {
        println!(
            "Retrying:         {} failed attempt(s) in a row; next try {}",
            r.failed_attempts,
            until(&r.next_attempt_at)
        );
    }
    println!(
        "Last success:     {}",
        v.last_success_at
            .as_deref()
            .map(|at| format!("{at} ({})", ago(at)))
            .unwrap_or_else(|| "never".into())
    );
    println!("SIEM:             {} ({})", v.config.url, v.config.platform);
    println!(
        "Queue:            {} pending, oldest {} s{}",
        v.queue.pending,
        seconds(v.queue.oldest_pending_age_seconds),
        if v.queue.full { " (FULL)" } else { "" }
    );
    println!("Dead letter:      {}", v.dead_letter.count);
    if let Some(f) = &v.sources.file {
        println!("File source:      {}", f.summary);
    }
    if let Some(s) = &v.sources.socket {
        println!(
            "Socket source:    {} ({} of at most {} writers connected)",
            s.path, s.connections, s.max_connections
        );
    }
    println!("Quarantine:       {}", v.quarantine.count);
    if let Some(r) = &v.config.reload_error {
        println!("Config reload:    FAILED: {r}");
    }
    if let Some(i) = &v.queue.incident {
        println!("Queue incident:   {i}");
    }
    if !v.queue.moved_aside.is_empty() {
        println!(
            "Moved aside:      {} (not replayed; see `sendauth-siem aside list`)",
            v.queue.moved_aside.join(", ")
        );
    }
}

/// "in 4 s" (or "now") for an RFC 3339 time in the future.
pub(super) fn until(at: &str) -> String {
    let Ok(t) = chrono::DateTime::parse_from_rfc3339(at) else {
        return at.to_string();
    };
    let secs = (t.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_milliseconds();
    if secs <= 0 {
        format!("now (due at {at})")
    } else {
        format!("in {:.1} s (at {at})", secs as f64 / 1000.0)
    }
}

/// "12 s ago", "3 min ago", "2 h ago" for an RFC 3339 time (empty if it does not parse).
pub(super) fn ago(at: &str) -> String {
    let Ok(t) = chrono::DateTime::parse_from_rfc3339(at) else {
        return String::new();
    };
    let secs = (chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_seconds().max(0);
    match secs {
        0..=119 => format!("{secs} s ago"),
        120..=7199 => format!("{} min ago", secs / 60),
        7200..=172_799 => format!("{} h ago", secs / 3600),
        _ => format!("{} days ago", secs / 86_400),
    }
}
