//! `quarantine list | replay | purge`: lines rejected at intake.

use std::process::ExitCode;

use anyhow::bail;
use clap::{Args, Subcommand};

use super::admin_client::{admin, admin_stream_with, for_each_listed_id, print_entries, unexpected};
use super::{confirm, queue_config, QueueArg};
use crate::config::Config;

/// Which quarantine entries a command takes: all, or the oldest up to an id (only a prefix: the
/// quarantine's ids stay consecutive).
#[derive(Args, Clone)]
#[group(required = true, multiple = false)]
pub(crate) struct QuarantineRange {
    /// Every quarantined line.
    #[arg(long)]
    all: bool,
    /// The entries with ids up to and including this one (ids as `quarantine list` shows them).
    #[arg(long, value_name = "ID")]
    through: Option<u64>,
}

#[derive(Subcommand)]
pub(crate) enum QuarantineCmd {
    /// List quarantined lines with their reasons and origins.
    List {
        #[command(flatten)]
        queue: QueueArg,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        /// List at most this many (the oldest first).
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
    /// Run quarantined lines through intake again with the current rules (after fixing
    /// sources.max_event_bytes or the transform, say): those that pass now are queued, the rest
    /// stay quarantined with today's reason. All, or the oldest through --through ID. Through
    /// the running agent, or, when none runs, with a --config that loads in full. At least
    /// once: a crash mid-replay may queue some lines twice.
    Replay {
        #[command(flatten)]
        queue: QueueArg,
        #[command(flatten)]
        range: QuarantineRange,
        /// Only say what would happen.
        #[arg(long)]
        dry_run: bool,
    },
    /// Delete quarantined lines, for good: all of them, or the oldest through --through ID.
    Purge {
        #[command(flatten)]
        queue: QueueArg,
        #[command(flatten)]
        range: QuarantineRange,
        /// Do not ask before deleting (on a terminal it asks; otherwise this is required).
        #[arg(long)]
        yes: bool,
        /// Only say what would be deleted.
        #[arg(long)]
        dry_run: bool,
    },
}

pub(super) fn quarantine_cmd(action: QuarantineCmd) -> anyhow::Result<ExitCode> {
    use crate::admin::{Request, Response};
    match action {
        QuarantineCmd::List { queue, json, limit } => {
            let cfg = queue_config(&queue)?;
            print_entries(&cfg, Request::QuarantineList { limit: Some(limit) }, json)?;
        }
        QuarantineCmd::Replay {
            queue,
            range: QuarantineRange { through, .. },
            dry_run,
        } => {
            let cfg = queue_config(&queue)?;
            // Without a running agent, the rules come from the full config (its transform).
            let rules = queue.config.as_deref().and_then(|p| Config::load(p).ok()).map(|c| c.intake_rules());
            let mut answer = None;
            admin_stream_with(&cfg, Request::QuarantineReplay { through, dry_run }, rules.as_ref(), &mut |a| {
                answer = Some(a)
            })?;
            let r = match answer {
                Some(Response::QuarantineReplayed(r)) => r,
                Some(Response::Failed(f)) => bail!("{}", f.error),
                Some(other) => return Err(unexpected(&other, "a quarantine replay count")),
                None => bail!("replay failed: the agent gave no answer; see its log"),
            };
            let (requeued, still_rejected) = (r.requeued, r.still_rejected);
            if dry_run {
                println!(
                    "would queue {requeued} line(s) that pass the current rules; {still_rejected} would stay quarantined; nothing was changed"
                );
            } else {
                println!(
                    "queued {requeued} line(s) that pass the current rules (sent after the events already queued); {still_rejected} still rejected, quarantined again with today's reason"
                );
            }
        }
        QuarantineCmd::Purge {
            queue,
            range: QuarantineRange { through, .. },
            yes,
            dry_run,
        } => {
            let cfg = queue_config(&queue)?;
            let mut count = 0u64;
            for_each_listed_id(&cfg, Request::QuarantineList { limit: Some(usize::MAX) }, &mut |id| {
                if through.is_none_or(|t| id <= t) {
                    count += 1;
                }
            })?;
            let what = match through {
                Some(t) => format!("{count} quarantined line(s) with ids up to {t}"),
                None => format!("all {count} quarantined line(s)"),
            };
            if dry_run {
                println!("would delete {what}; nothing was changed");
                return Ok(ExitCode::SUCCESS);
            }
            if count > 0 && !yes && !confirm(&format!("delete {what} for good?"))? {
                bail!("nothing was deleted: pass --yes to delete {what} (or --dry-run to only count them)");
            }
            let purged = match admin(&cfg, Request::QuarantinePurge { through })? {
                Response::Purged(p) => p.purged,
                other => return Err(unexpected(&other, "a purge count")),
            };
            println!("deleted {purged} line(s) from the quarantine");
        }
    }
    Ok(ExitCode::SUCCESS)
}
