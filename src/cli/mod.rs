//! The `sendauth-siem` command line (docs/CONTRACT.md, "Command line"): the clap definitions
//! and the dispatch, one file per command family beside it.
//!
//! Design: `src/main.rs` only calls [`main`]. Each command reads what it needs (the full config
//! for `run`, `check-config` and `test`; only the `queue` and `status` sections, through
//! `LocalConfig`, for the operator's commands, so a broken edit elsewhere does not lock the
//! operator out) and prints for a person, or with `--json` for a script. What crosses a process
//! boundary is typed on both sides: `/status` is a [`crate::status::StatusDoc`], admin socket
//! lines are [`crate::admin::Response`]s; nothing the agent answers is read by index.
//!
//! Invariants: output text, exit codes, flags and help are the contract (tests/cli.rs,
//! tests/operator.rs, tests/live_views.rs, docs/CONTRACT.md); a command never panics on what an
//! agent answers: an unexpected answer is an error naming what was expected.

mod admin_client;
mod aside;
mod audit;
mod dead_letter;
mod quarantine;
mod run;
mod send;
mod status;
mod tap;
mod top;

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::config::{Config, LocalConfig, QueueConfig};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "sendauth-siem",
    version,
    long_version = crate::build_info::LONG_VERSION,
    about = "Forwards SendAuth authentication events to your SIEM, durably."
)]
pub struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Args, Clone)]
pub(crate) struct ConfigArg {
    /// Path to the YAML config.
    #[arg(long, env = "SENDAUTH_SIEM_CONFIG")]
    pub(crate) config: PathBuf,
}

/// Where the operator's queue commands find the queue. Only the config's `queue` and `status`
/// sections are read: a broken edit elsewhere, or a secret's `${VAR}` unset in the operator's
/// shell, does not stop them.
#[derive(Args, Clone)]
pub(crate) struct QueueArg {
    /// Path to the agent's YAML config (only its queue and status sections are read).
    #[arg(long, env = "SENDAUTH_SIEM_CONFIG", required_unless_present = "queue_path")]
    pub(crate) config: Option<PathBuf>,
    /// The queue directory (the config's queue.path), instead of --config.
    #[arg(long, value_name = "DIR")]
    pub(crate) queue_path: Option<PathBuf>,
}

#[derive(Subcommand)]
pub(crate) enum Cmd {
    /// Run the agent in the foreground until SIGTERM/SIGINT.
    Run(ConfigArg),
    /// Validate a config: exit 0 if valid, else one line per problem naming the key.
    CheckConfig(ConfigArg),
    /// Ask the running agent for its status.
    ///
    /// Exit codes: 0 healthy; 1 delivering but needs attention (a rejected config edit, events
    /// dead-lettered since the last success, a queue incident); 2 not delivering (state error)
    /// or no agent answered. With --live: 0 whenever the agent answers.
    Status {
        /// Path to the agent's YAML config, to find status.listen (only the queue and status
        /// sections are read).
        #[arg(long, env = "SENDAUTH_SIEM_CONFIG")]
        config: Option<PathBuf>,
        /// Status address (default: status.listen from --config, else 127.0.0.1:8686).
        #[arg(long)]
        addr: Option<String>,
        /// Print the raw JSON.
        #[arg(long)]
        json: bool,
        /// Only check that the agent answers (exit 0): for container health checks, which must
        /// not restart the agent over a SIEM outage.
        #[arg(long)]
        live: bool,
    },
    /// Send one test event to the configured SIEM now and explain the outcome.
    Test(ConfigArg),
    /// A live view of the running agent (through its admin socket): rates in and out, queue
    /// depth and oldest age, each input, the SIEM, warnings and recent errors. Ctrl-C quits.
    Top {
        #[command(flatten)]
        queue: QueueArg,
        /// Time between refreshes.
        #[arg(long, default_value = "1s", value_parser = parse_positive_duration)]
        interval: std::time::Duration,
        /// Print one frame (rates over one interval) and exit: for scripts and logs.
        #[arg(long)]
        once: bool,
    },
    /// Show events as they enter the running agent's queue, after the privacy transform (the
    /// schema mapping comes later, when sending), through its admin socket. Read-only; stops
    /// after --limit events.
    Tap {
        #[command(flatten)]
        queue: QueueArg,
        /// Stop after this many events.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// One JSON object per event: {"source": "file"|"socket", "event": {...}}.
        #[arg(long)]
        json: bool,
    },
    /// Write JSONL from stdin to the agent's socket and print its answer.
    Send {
        /// The agent's socket (its sources.socket.path).
        #[arg(long)]
        socket: PathBuf,
        /// How long to wait for the agent at each step (connecting, each write, the answer)
        /// before giving up with a non-zero exit: 10s, 500ms, 1m, "10 seconds".
        #[arg(long, default_value = "10s", value_parser = parse_positive_duration)]
        timeout: std::time::Duration,
    },
    /// Inspect, re-queue or delete events the SIEM rejected.
    DeadLetter {
        #[command(subcommand)]
        action: dead_letter::DeadLetterCmd,
    },
    /// Inspect lines rejected at input (quarantine).
    Quarantine {
        #[command(subcommand)]
        action: quarantine::QuarantineCmd,
    },
    /// List and re-queue queue stores that were moved aside as damaged (`corrupt-*` in
    /// queue.path).
    Aside {
        #[command(subcommand)]
        action: aside::AsideCmd,
    },
    /// Check that a SIEM export holds every event (audit: on): gaps, duplicates, explanations.
    Audit {
        #[command(subcommand)]
        action: audit::AuditCmd,
    },
    /// Run the agent against a built-in local SIEM emulator with sample events, and show them
    /// arriving.
    Demo {
        /// How many sample events to send (at least 4).
        #[arg(long, default_value_t = 20)]
        events: usize,
        /// Keep the agent, the emulator and the status page running after the demo, until
        /// Ctrl-C.
        #[arg(long)]
        keep: bool,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) to stdout, e.g.
    /// `sendauth-siem completions bash > /etc/bash_completion.d/sendauth-siem`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) to stdout, e.g. `sendauth-siem man | man -l -`.
    Man,
}

/// The binary's entry point: parses the command line, runs the command, and turns an error
/// into `error: ...` on stderr and exit code 1.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(
        cli.cmd,
        Cmd::DeadLetter { .. } | Cmd::Quarantine { .. } | Cmd::Aside { .. } | Cmd::Tap { .. } | Cmd::Top { .. }
    ) {
        // Listings are meant for pipes (`quarantine list --json | head`): when the reader goes
        // away, end quietly as other Unix tools do, instead of panicking in `println!` on EPIPE.
        // Only these commands: the agent itself must survive a peer that closes its socket.
        // SAFETY: called before any other thread exists; resets one signal disposition.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    if matches!(cli.cmd, Cmd::Tap { .. } | Cmd::Top { .. }) {
        // Ctrl-C ends a live view even when it was started with SIGINT ignored (by a
        // non-interactive shell's `&`, a supervisor, or a terminal multiplexer's server).
        // SAFETY: as above, before any other thread exists.
        unsafe {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
        }
    }
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn load(path: &Path) -> anyhow::Result<Config> {
    Config::load(path).map_err(|e| {
        let lines: Vec<String> = e.problems.iter().map(|p| format!("{}: {p}", path.display())).collect();
        anyhow::anyhow!("invalid config; fix these and try again:\n{}", lines.join("\n"))
    })
}

/// The queue settings for the operator's commands: from `--queue-path` (defaults otherwise), or
/// from the config's `queue` section alone (`LocalConfig`).
fn queue_config(a: &QueueArg) -> anyhow::Result<QueueConfig> {
    if let Some(path) = &a.queue_path {
        return Ok(QueueConfig::with_defaults(path.clone()));
    }
    let path = a
        .config
        .as_deref()
        .context("say where the queue is: --config FILE or --queue-path DIR")?;
    Ok(load_local(path)?.queue)
}

fn load_local(path: &Path) -> anyhow::Result<LocalConfig> {
    LocalConfig::load(path).map_err(|e| {
        let lines: Vec<String> = e.problems.iter().map(|p| format!("{}: {p}", path.display())).collect();
        anyhow::anyhow!(
            "cannot find the queue and status settings; fix these (or pass --queue-path / --addr):\n{}",
            lines.join("\n")
        )
    })
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(16)
        .thread_stack_size(512 * 1024)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.cmd {
        Cmd::Run(a) => run::run(&a.config),
        Cmd::CheckConfig(a) => Ok(run::check_config(&a.config)),
        Cmd::Status { config, addr, json, live } => status::status_cmd(config, addr, json, live),
        Cmd::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "sendauth-siem", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Man => {
            use clap::CommandFactory;
            clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout())?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Test(a) => {
            let cfg = load(&a.config)?;
            let rt = runtime()?;
            let ok = rt.block_on(crate::connection_test::run(&cfg, &mut std::io::stdout()));
            Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        Cmd::Send { socket, timeout } => send::send_cmd(&socket, timeout),
        Cmd::Top { queue, interval, once } => top::top_cmd(&queue_config(&queue)?, interval, once),
        Cmd::Tap { queue, limit, json } => tap::tap_cmd(&queue_config(&queue)?, limit, json),
        Cmd::DeadLetter { action } => dead_letter::dead_letter_cmd(action),
        Cmd::Quarantine { action } => quarantine::quarantine_cmd(action),
        Cmd::Audit { action } => Ok(audit::audit_cmd(action)),
        Cmd::Aside { action } => aside::aside_cmd(action),
        Cmd::Demo { events, keep } => run::demo(events, keep),
    }
}

fn parse_positive_duration(s: &str) -> Result<std::time::Duration, String> {
    let d = crate::config::parse_duration(s)?;
    if d.is_zero() {
        return Err("must be more than 0, e.g. 10s".into());
    }
    Ok(d)
}

/// Asks on the terminal; `false` (without asking) when stdin is not one.
fn confirm(question: &str) -> anyhow::Result<bool> {
    use std::io::{IsTerminal, Write};
    if !std::io::stdin().is_terminal() {
        return Ok(false);
    }
    print!("{question} [y/N] ");
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every option and subcommand a user can see explains itself in `--help`.
    #[test]
    fn every_visible_option_and_command_has_help_text() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for a in cmd.get_arguments() {
                let id = a.get_id().as_str();
                if a.is_hide_set() || id == "help" || id == "version" {
                    continue;
                }
                if a.get_help().is_none() && a.get_long_help().is_none() {
                    missing.push(format!("{path} --{id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                if sub.is_hide_set() || sub.get_name() == "help" {
                    continue;
                }
                let p = format!("{path} {}", sub.get_name());
                if sub.get_about().is_none() {
                    missing.push(p.clone());
                }
                walk(sub, &p, missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "sendauth-siem", &mut missing);
        assert!(missing.is_empty(), "no help text: {missing:#?}");
        Cli::command().debug_assert();
    }
}
