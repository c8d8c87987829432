//! `dead-letter list | replay | purge`: events the SIEM rejected for good.

use std::process::ExitCode;

use anyhow::bail;
use clap::Subcommand;

use super::admin_client::{admin, for_each_listed_id, print_entries, unexpected};
use super::{confirm, queue_config, QueueArg};
use crate::config::QueueConfig;

#[derive(Subcommand)]
pub(crate) enum DeadLetterCmd {
    /// List dead-lettered events with their reasons.
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
    /// Put dead-lettered events back at the end of the queue (all, or --id N ...).
    Replay {
        #[command(flatten)]
        queue: QueueArg,
        /// An entry's id, as `dead-letter list` shows it (repeatable).
        #[arg(long = "id")]
        ids: Vec<u64>,
        /// Replay every dead-lettered event.
        #[arg(long, conflicts_with = "ids")]
        all: bool,
    },
    /// Delete dead-lettered events (all, or --id N ...), for good.
    Purge {
        #[command(flatten)]
        queue: QueueArg,
        /// An entry's id, as `dead-letter list` shows it (repeatable).
        #[arg(long = "id")]
        ids: Vec<u64>,
        /// Delete every dead-lettered event (asks first on a terminal; else needs --yes).
        #[arg(long, conflicts_with = "ids")]
        all: bool,
        /// Do not ask before deleting everything.
        #[arg(long)]
        yes: bool,
        /// Only say what would be deleted.
        #[arg(long)]
        dry_run: bool,
    },
}

pub(super) fn dead_letter_cmd(action: DeadLetterCmd) -> anyhow::Result<ExitCode> {
    use crate::admin::{Request, Response};
    let pick = |ids: Vec<u64>, all: bool| -> anyhow::Result<Option<Vec<u64>>> {
        match (ids.is_empty(), all) {
            (true, false) => bail!("say which events: --id N (repeatable) or --all"),
            (_, true) => Ok(None),
            (false, false) => Ok(Some(ids)),
        }
    };
    match action {
        DeadLetterCmd::List { queue, json, limit } => {
            let cfg = queue_config(&queue)?;
            print_entries(&cfg, Request::DeadLetterList { limit: Some(limit) }, json)?;
        }
        DeadLetterCmd::Replay { queue, ids, all } => {
            let cfg = queue_config(&queue)?;
            let replayed = match admin(&cfg, Request::DeadLetterReplay { ids: pick(ids, all)? })? {
                Response::Replayed(r) => r.replayed,
                other => return Err(unexpected(&other, "a replay count")),
            };
            println!("re-queued {replayed} event(s); they will be sent after the events already queued");
        }
        DeadLetterCmd::Purge {
            queue,
            ids,
            all,
            yes,
            dry_run,
        } => {
            let cfg = queue_config(&queue)?;
            let ids = pick(ids, all)?;
            if dry_run {
                // Counted from the listing (streamed): the number the purge would delete.
                let (count, missing) = count_dead_letters(&cfg, ids.as_deref())?;
                if !missing.is_empty() {
                    bail!(
                        "no dead-letter entry with id {}; see `sendauth-siem dead-letter list`",
                        join_ids(&missing)
                    );
                }
                println!("would delete {count} event(s) from the dead letter; nothing was changed");
                return Ok(ExitCode::SUCCESS);
            }
            if ids.is_none() && !yes {
                let (count, _) = count_dead_letters(&cfg, None)?;
                if count > 0 && !confirm(&format!("delete all {count} dead-lettered event(s) for good?"))? {
                    bail!("nothing was deleted: pass --yes to delete all {count} dead-lettered event(s) (or --dry-run to only count them)");
                }
            }
            let purged = match admin(&cfg, Request::DeadLetterPurge { ids })? {
                Response::Purged(p) => p.purged,
                other => return Err(unexpected(&other, "a purge count")),
            };
            println!("deleted {purged} event(s) from the dead letter");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn join_ids(ids: &[u64]) -> String {
    ids.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
}

/// How many dead letters `ids` (all if `None`) names, and which of the named ids do not exist.
fn count_dead_letters(cfg: &QueueConfig, ids: Option<&[u64]>) -> anyhow::Result<(u64, Vec<u64>)> {
    let mut found = std::collections::BTreeSet::new();
    let mut total = 0u64;
    for_each_listed_id(cfg, crate::admin::Request::DeadLetterList { limit: Some(usize::MAX) }, &mut |id| {
        total += 1;
        if ids.is_some_and(|ids| ids.contains(&id)) {
            found.insert(id);
        }
    })?;
    Ok(match ids {
        None => (total, Vec::new()),
        Some(ids) => {
            let mut missing: Vec<u64> = ids.iter().copied().filter(|i| !found.contains(i)).collect();
            missing.sort_unstable();
            missing.dedup();
            (found.len() as u64, missing)
        }
    })
}
