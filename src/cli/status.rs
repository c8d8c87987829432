//! `status`: asks the agent's status API and prints it in words, with an exit code a script can
//! use (docs/CONTRACT.md, "Status").

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use serde_json::Value;

use super::{load_local, runtime};

/// `status` exit codes (also in its `--help` and docs/CONTRACT.md).
const STATUS_HEALTHY: u8 = 0;
const STATUS_ATTENTION: u8 = 1;
const STATUS_NOT_DELIVERING: u8 = 2;

/// What `status` exits with for this status document: what needs a person, and how urgently.
fn status_exit(v: &Value) -> u8 {
    if v["state"] == "error" {
        STATUS_NOT_DELIVERING
    } else if v["config"]["reload_error"].is_string()
        || v["queue"]["incident"].is_string()
        || v["warnings"].as_array().is_some_and(|w| !w.is_empty())
        || v["queue"]["moved_aside"].as_array().is_some_and(|a| !a.is_empty())
    {
        STATUS_ATTENTION
    } else {
        STATUS_HEALTHY
    }
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
    let v: Value = serde_json::from_str(&body).context("the agent's status is not JSON")?;
    let code = if live { STATUS_HEALTHY } else { status_exit(&v) };
    if json {
        println!("{}", serde_json::to_string(&v)?);
        return Ok(ExitCode::from(code));
    }
    let label = match v["state"].as_str().unwrap_or("?") {
        "success" => "Success",
        "error" => "Error",
        "not_yet_invoked" => "Not yet invoked",
        "disabled" => "Disabled",
        other => other,
    };
    println!("State:            {label}");
    let e = &v["last_error"];
    if e.is_object() {
        let at = e["at"].as_str().unwrap_or("");
        let when = match e["resolved_at"].as_str() {
            Some(r) => format!("at {at}, {}; resolved at {r}", ago(at)),
            None => format!("at {at}, {}", ago(at)),
        };
        println!("Last error:       {} ({when})", e["message"].as_str().unwrap_or(""));
    }
    for w in v["warnings"].as_array().into_iter().flatten() {
        println!("Warning:          {}", w.as_str().unwrap_or(""));
    }
    if let Some(r) = v["retry"].as_object() {
        println!(
            "Retrying:         {} failed attempt(s) in a row; next try {}",
            r.get("failed_attempts").and_then(Value::as_u64).unwrap_or(0),
            r.get("next_attempt_at").and_then(Value::as_str).map(until).unwrap_or_default()
        );
    }
    println!(
        "Last success:     {}",
        v["last_success_at"]
            .as_str()
            .map(|at| format!("{at} ({})", ago(at)))
            .unwrap_or_else(|| "never".into())
    );
    println!(
        "SIEM:             {} ({})",
        v["config"]["url"].as_str().unwrap_or(""),
        v["config"]["platform"].as_str().unwrap_or("")
    );
    println!(
        "Queue:            {} pending, oldest {} s{}",
        v["queue"]["pending"],
        v["queue"]["oldest_pending_age_seconds"],
        if v["queue"]["full"] == true { " (FULL)" } else { "" }
    );
    println!("Dead letter:      {}", v["dead_letter"]["count"]);
    let (f, s) = (&v["sources"]["file"], &v["sources"]["socket"]);
    if f.is_object() {
        println!("File source:      {}", f["summary"].as_str().unwrap_or(""));
    }
    if s.is_object() {
        println!(
            "Socket source:    {} ({} of at most {} writers connected)",
            s["path"].as_str().unwrap_or(""),
            s["connections"],
            s["max_connections"]
        );
    }
    println!("Quarantine:       {}", v["quarantine"]["count"]);
    if let Some(r) = v["config"]["reload_error"].as_str() {
        println!("Config reload:    FAILED: {r}");
    }
    if let Some(i) = v["queue"]["incident"].as_str() {
        println!("Queue incident:   {i}");
    }
    if let Some(names) = v["queue"]["moved_aside"].as_array().filter(|a| !a.is_empty()) {
        let names: Vec<&str> = names.iter().filter_map(|n| n.as_str()).collect();
        println!(
            "Moved aside:      {} (not replayed; see `sendauth-siem aside list`)",
            names.join(", ")
        );
    }
    Ok(ExitCode::from(code))
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
