//! The CLI's side of the admin socket (`crate::admin`): one request to the running agent, or,
//! when none runs, the same request executed on the queue opened directly; answers stream to a
//! callback line by line.

use anyhow::{bail, Context};
use serde_json::Value;

use crate::config::QueueConfig;

/// Talks to the running agent's admin socket, or opens the queue directly if none runs; each
/// answer line goes to `on_line` as it arrives (listings stream; see `admin`'s module docs).
pub(super) fn admin_stream(cfg: &QueueConfig, req: crate::admin::Request, on_line: &mut dyn FnMut(Value)) -> anyhow::Result<()> {
    admin_stream_with(cfg, req, None, on_line)
}

/// [`admin_stream`], with the intake rules a `quarantine replay` applies when no agent runs.
pub(super) fn admin_stream_with(
    cfg: &QueueConfig,
    req: crate::admin::Request,
    rules: Option<&crate::source::IntakeRules>,
    on_line: &mut dyn FnMut(Value),
) -> anyhow::Result<()> {
    if crate::admin::call(&cfg.path, &req, on_line).context("admin socket")? {
        return Ok(());
    }
    let q = crate::queue::Queue::open(&cfg.path, cfg.max_bytes, cfg.max_quarantine_entries)
        .with_context(|| format!("cannot open the queue at {}", cfg.path.display()))?;
    q.set_limits(cfg.limits());
    q.set_min_free(cfg.min_free_bytes);
    let metrics = crate::metrics::Metrics::default();
    crate::admin::execute(&q, &req, rules.map(|r| (r, &metrics)), &mut |v| {
        on_line(v.clone());
        true
    });
    q.close();
    Ok(())
}

/// A request with a one-line answer.
pub(super) fn admin(cfg: &QueueConfig, req: crate::admin::Request) -> anyhow::Result<Value> {
    let mut answer = Value::Null;
    admin_stream(cfg, req, &mut |v| answer = v)?;
    Ok(answer)
}

/// Prints a listing as it streams from the admin socket (or the queue opened directly). Fails
/// when the agent answered an error, so a script sees a non-zero exit instead of an empty
/// listing.
pub(super) fn print_entries(
    cfg: &QueueConfig,
    req: crate::admin::Request,
    json: bool,
    body_key: &str,
    fields: &[&str],
) -> anyhow::Result<()> {
    let mut total = Value::Null;
    let mut error = None;
    admin_stream(cfg, req, &mut |e| {
        if e["ok"] == false {
            error = Some(e["error"].as_str().unwrap_or("the listing failed").to_string());
        } else if e["stream"] == true {
            total = e["total"].clone();
        } else if e["end"] == true {
            if !json {
                println!("{} entries (of {total})", e["listed"]);
            }
        } else if json {
            println!("{}", serde_json::to_string(&e).unwrap_or_default());
        } else {
            let mut parts = vec![format!("#{}", e["id"]), e["at"].as_str().unwrap_or("").to_string()];
            for f in fields {
                parts.push(e[*f].as_str().map(|s| s.to_string()).unwrap_or_else(|| e[*f].to_string()));
            }
            println!("{}", parts.join("  "));
            println!("    {}", e[body_key].as_str().unwrap_or(""));
        }
    })?;
    match error {
        Some(e) => bail!("{e}"),
        None => Ok(()),
    }
}

/// Streams a listing (dead letter or quarantine) and gives each entry's id to `f`; fails when
/// the agent answered an error. Constant memory, however long the listing.
pub(super) fn for_each_listed_id(cfg: &QueueConfig, req: crate::admin::Request, f: &mut dyn FnMut(u64)) -> anyhow::Result<()> {
    let mut error = None;
    admin_stream(cfg, req, &mut |e| {
        if e["ok"] == false {
            error = Some(e["error"].as_str().unwrap_or("the listing failed").to_string());
        } else if let Some(id) = e["id"].as_u64() {
            f(id);
        }
    })?;
    match error {
        Some(e) => bail!("{e}"),
        None => Ok(()),
    }
}
