//! `aside list | replay`: queue stores moved aside as damaged (see `crate::queue::aside`).

use std::process::ExitCode;

use anyhow::bail;
use clap::Subcommand;

use super::admin_client::{admin, unexpected};
use super::{queue_config, QueueArg};

#[derive(Subcommand)]
pub(crate) enum AsideCmd {
    /// List the moved-aside stores: when, why, and how many pending events, dead letters and
    /// quarantine entries each still holds (read from its segment files, and from its index if
    /// that opens on a copy). Changes nothing.
    List {
        #[command(flatten)]
        queue: QueueArg,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Re-queue a moved-aside store's pending events and dead letters at the end of the queue
    /// and copy its quarantine entries (through the running agent, or directly). Resumes where
    /// a stopped replay left off; a finished one is marked and not repeated. At least once: a
    /// crash mid-replay may send some events twice.
    Replay {
        #[command(flatten)]
        queue: QueueArg,
        /// Its name, as `aside list` shows it (corrupt-...).
        name: String,
        /// Only say what would be re-queued.
        #[arg(long)]
        dry_run: bool,
    },
}

/// `aside list` and `aside replay` (see `queue::aside`).
pub(super) fn aside_cmd(action: AsideCmd) -> anyhow::Result<ExitCode> {
    use crate::queue::aside;
    match action {
        AsideCmd::List { queue, json } => {
            let cfg = queue_config(&queue)?;
            let reports = aside::list(&cfg.path)?;
            if json {
                for r in &reports {
                    println!("{}", serde_json::to_string(r)?);
                }
                return Ok(ExitCode::SUCCESS);
            }
            if reports.is_empty() {
                println!("no moved-aside store in {}", cfg.path.display());
            }
            for r in &reports {
                let state = match &r.progress.done_at {
                    Some(at) => format!("replayed at {at}"),
                    None if r.progress != Default::default() => "partly replayed (run `aside replay` again to finish)".into(),
                    None => "not replayed".into(),
                };
                println!(
                    "{}  moved aside {}  {state}",
                    r.name,
                    r.moved_at.as_deref().unwrap_or("(time unknown)")
                );
                if let Some(why) = &r.reason {
                    println!("    why: {why}");
                }
                println!(
                    "    recoverable: {} pending events ({} bytes), {} dead letters, {} quarantine entries",
                    r.pending_events, r.pending_bytes, r.dead_letters, r.quarantine
                );
                println!(
                    "    read: {} frames, {} damaged stretches, {} torn tails, {} unreadable events; index {}",
                    r.frames, r.damaged_stretches, r.torn_tails, r.damaged_events, r.index
                );
                for u in &r.unreadable {
                    println!("    could not read: {u}");
                }
            }
        }
        AsideCmd::Replay { queue, name, dry_run } => {
            let cfg = queue_config(&queue)?;
            let answer = admin(
                &cfg,
                crate::admin::Request::AsideReplay {
                    name: name.clone(),
                    dry_run,
                },
            )?;
            let o = match answer {
                crate::admin::Response::AsideReplayed(a) => a.outcome,
                other => return Err(unexpected(&other, "an aside replay outcome")),
            };
            let (events, dead, quarantine) = (o.requeued_events, o.requeued_dead_letters, o.copied_quarantine);
            if o.already_replayed {
                println!(
                    "{name} was already replayed at {}; nothing was re-queued",
                    o.report.progress.done_at.as_deref().unwrap_or("?")
                );
            } else if dry_run {
                println!("would re-queue {events} pending event(s) and {dead} dead letter(s), and copy {quarantine} quarantine entr(ies); nothing was changed");
            } else {
                println!("re-queued {events} pending event(s) and {dead} dead letter(s) after the events already queued; copied {quarantine} quarantine entr(ies)");
            }
            for line in &o.report.unreadable {
                println!("could not read: {line}");
            }
            if let Some(why) = &o.stopped {
                bail!("the replay of {name} stopped: {why}");
            }
            if !dry_run && !o.already_replayed {
                println!(
                    "{name} is marked replayed ({}); it will not be replayed again",
                    aside::PROGRESS_FILE
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
