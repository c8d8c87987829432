//! The CLI's side of the admin socket (`crate::admin`): one request to the running agent, or,
//! when none runs, the same request executed on the queue opened directly; answers stream to a
//! callback line by line, as typed [`Response`]s.

use anyhow::{bail, Context};

use crate::admin::{Request, Response};
use crate::config::QueueConfig;

/// Talks to the running agent's admin socket, or opens the queue directly if none runs; each
/// answer line goes to `on_line` as it arrives (listings stream; see `admin`'s module docs).
pub(super) fn admin_stream(cfg: &QueueConfig, req: Request, on_line: &mut dyn FnMut(Response)) -> anyhow::Result<()> {
    admin_stream_with(cfg, req, None, on_line)
}

/// [`admin_stream`], with the intake rules a `quarantine replay` applies when no agent runs.
pub(super) fn admin_stream_with(
    cfg: &QueueConfig,
    req: Request,
    rules: Option<&crate::source::IntakeRules>,
    on_line: &mut dyn FnMut(Response),
) -> anyhow::Result<()> {
    if crate::admin::call(&cfg.path, &req, on_line).context("admin socket")? {
        return Ok(());
    }
    let q = crate::queue::Queue::open(&cfg.path, cfg.max_bytes, cfg.max_quarantine_entries)
        .with_context(|| format!("cannot open the queue at {}", cfg.path.display()))?;
    q.set_limits(cfg.limits());
    q.set_min_free(cfg.min_free_bytes);
    let metrics = crate::metrics::Metrics::default();
    crate::admin::execute(&q, &req, rules.map(|r| (r, &metrics)), &mut |r| {
        on_line(r.clone());
        true
    });
    q.close();
    Ok(())
}

/// A request with a one-line answer: that answer, or its error as an `Err` (`what` names the
/// step, for an error without a message).
pub(super) fn admin(cfg: &QueueConfig, req: Request) -> anyhow::Result<Response> {
    let mut answer = None;
    admin_stream(cfg, req, &mut |r| answer = Some(r))?;
    match answer {
        Some(Response::Failed(f)) => bail!("{}", f.error),
        Some(r) => Ok(r),
        None => bail!("the agent gave no answer; see its log"),
    }
}

/// The error for an answer of the wrong kind (an agent of another version, say).
pub(super) fn unexpected(r: &Response, expected: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "the agent answered with {} where {expected} was expected; are the agent and this command the same version?",
        r.kind()
    )
}

/// Prints a listing as it streams from the admin socket (or the queue opened directly). Fails
/// when the agent answered an error, so a script sees a non-zero exit instead of an empty
/// listing.
pub(super) fn print_entries(cfg: &QueueConfig, req: Request, json: bool) -> anyhow::Result<()> {
    let mut total = None;
    let mut error = None;
    admin_stream(cfg, req, &mut |r| match r {
        Response::Failed(f) => error = Some(f.error),
        Response::Head(h) => total = Some(h.total),
        Response::End(e) => {
            if !json {
                let total = total.map_or("null".to_string(), |t| t.to_string());
                println!("{} entries (of {total})", e.listed);
            }
        }
        Response::DeadLetter(e) if json => println!("{}", serde_json::to_string(&e).unwrap_or_default()),
        Response::Quarantine(e) if json => println!("{}", serde_json::to_string(&e).unwrap_or_default()),
        Response::DeadLetter(e) => {
            println!("#{}  {}  {}", e.id, e.at, e.reason);
            println!("    {}", e.event);
        }
        Response::Quarantine(e) => {
            println!("#{}  {}  {}  {}", e.id, e.at, e.origin, e.reason);
            println!("    {}", e.line);
        }
        other => error = Some(unexpected(&other, "a listing entry").to_string()),
    })?;
    match error {
        Some(e) => bail!("{e}"),
        None => Ok(()),
    }
}

/// Streams a listing (dead letter or quarantine) and gives each entry's id to `f`; fails when
/// the agent answered an error. Constant memory, however long the listing.
pub(super) fn for_each_listed_id(cfg: &QueueConfig, req: Request, f: &mut dyn FnMut(u64)) -> anyhow::Result<()> {
    let mut error = None;
    admin_stream(cfg, req, &mut |r| match r {
        Response::Failed(e) => error = Some(e.error),
        Response::DeadLetter(e) => f(e.id),
        Response::Quarantine(e) => f(e.id),
        _ => {}
    })?;
    match error {
        Some(e) => bail!("{e}"),
        None => Ok(()),
    }
}
