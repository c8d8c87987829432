//! The `sendauth-siem` command line (docs/CONTRACT.md, "Command line").

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use sendauth_siem::config::{Config, LocalConfig, LogFormat, QueueConfig};
use sendauth_siem::source::file::not_a_regular_file;
use serde_json::Value;

#[derive(Parser)]
#[command(
    name = "sendauth-siem",
    version,
    long_version = sendauth_siem::build_info::LONG_VERSION,
    about = "Forwards SendAuth authentication events to your SIEM, durably."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Args, Clone)]
struct ConfigArg {
    /// Path to the YAML config.
    #[arg(long, env = "SENDAUTH_SIEM_CONFIG")]
    config: PathBuf,
}

/// Where the operator's queue commands find the queue. Only the config's `queue` and `status`
/// sections are read: a broken edit elsewhere, or a secret's `${VAR}` unset in the operator's
/// shell, does not stop them.
#[derive(Args, Clone)]
struct QueueArg {
    /// Path to the agent's YAML config (only its queue and status sections are read).
    #[arg(long, env = "SENDAUTH_SIEM_CONFIG", required_unless_present = "queue_path")]
    config: Option<PathBuf>,
    /// The queue directory (the config's queue.path), instead of --config.
    #[arg(long, value_name = "DIR")]
    queue_path: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Cmd {
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
        action: DeadLetterCmd,
    },
    /// Inspect lines rejected at input (quarantine).
    Quarantine {
        #[command(subcommand)]
        action: QuarantineCmd,
    },
    /// List and re-queue queue stores that were moved aside as damaged (`corrupt-*` in
    /// queue.path).
    Aside {
        #[command(subcommand)]
        action: AsideCmd,
    },
    /// Check that a SIEM export holds every event (audit: on): gaps, duplicates, explanations.
    Audit {
        #[command(subcommand)]
        action: AuditCmd,
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

#[derive(Subcommand)]
enum AuditCmd {
    /// Read an NDJSON export (Splunk `{"result":...}` lines, Elasticsearch hits or plain events)
    /// and report per agent the missing sequence numbers, duplicates and which gaps heartbeats
    /// explain. Exit 1 if a gap is unexplained, 2 if the file cannot be read.
    Verify {
        /// The export file (`-` for stdin).
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum DeadLetterCmd {
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

/// Which quarantine entries a command takes: all, or the oldest up to an id (only a prefix: the
/// quarantine's ids stay consecutive).
#[derive(Args, Clone)]
#[group(required = true, multiple = false)]
struct QuarantineRange {
    /// Every quarantined line.
    #[arg(long)]
    all: bool,
    /// The entries with ids up to and including this one (ids as `quarantine list` shows them).
    #[arg(long, value_name = "ID")]
    through: Option<u64>,
}

#[derive(Subcommand)]
enum QuarantineCmd {
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

#[derive(Subcommand)]
enum AsideCmd {
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

fn main() -> ExitCode {
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
    match real_main(cli) {
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

type LogHandle = tracing_subscriber::reload::Handle<tracing_subscriber::EnvFilter, tracing_subscriber::Registry>;

fn init_logging(format: LogFormat, level: &str) -> Option<LogHandle> {
    use tracing_subscriber::prelude::*;
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|f| tracing_subscriber::EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new(level));
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    let registry = tracing_subscriber::registry().with(filter);
    let ok = match format {
        LogFormat::Json => registry
            .with(tracing_subscriber::fmt::layer().json().with_writer(std::io::stderr))
            .try_init()
            .is_ok(),
        LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                    .with_writer(std::io::stderr),
            )
            .try_init()
            .is_ok(),
    };
    ok.then_some(handle)
}

fn real_main(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.cmd {
        Cmd::Run(a) => {
            let cfg = load(&a.config)?;
            let handle = init_logging(cfg.log.format, &cfg.log.level);
            warn_loose_permissions(&a.config, &cfg.inline_secrets);
            sendauth_siem::fd_limit::prepare(&cfg);
            let rt = runtime()?;
            rt.block_on(async move {
                let hook: Option<sendauth_siem::agent::LogLevelHook> = handle.map(|h| {
                    Box::new(move |level: &str| {
                        if let Ok(f) = tracing_subscriber::EnvFilter::try_new(level) {
                            let _ = h.reload(f);
                            tracing::info!("log level set to {level}");
                        }
                    }) as sendauth_siem::agent::LogLevelHook
                });
                tracing::info!(version = env!("CARGO_PKG_VERSION"), config = %a.config.display(), "starting sendauth-siem");
                let agent = sendauth_siem::agent::Agent::start(a.config.clone(), cfg, hook).await?;
                agent.run_until_signal().await
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::CheckConfig(a) => match Config::load(&a.config) {
            Ok(cfg) if cfg.sources.file.as_ref().is_some_and(|f| not_a_regular_file(&f.path).is_some()) => {
                let f = cfg.sources.file.as_ref().expect("checked");
                let what = not_a_regular_file(&f.path).unwrap_or("not a regular file");
                println!(
                    "{}: sources.file.path: {} is {what}, not a regular file; point it at the JSONL file the auth server appends to",
                    a.config.display(),
                    f.path.display()
                );
                Ok(ExitCode::from(1))
            }
            Ok(cfg) => {
                if let Some(w) = sendauth_siem::fd_limit::check(&cfg) {
                    println!("{}: warning: {w}", a.config.display());
                }
                if let Some(f) = cfg
                    .sources
                    .file
                    .as_ref()
                    .filter(|f| f.path.parent().is_some_and(|d| !d.as_os_str().is_empty() && !d.is_dir()))
                {
                    println!(
                        "{}: warning: sources.file.path: {}",
                        a.config.display(),
                        sendauth_siem::source::file::waiting_for(&f.path.display().to_string())
                    );
                }
                println!(
                    "{}: OK (platform {}, {})",
                    a.config.display(),
                    cfg.siem.effective_platform().as_str(),
                    cfg.siem.url_redacted()
                );
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                for p in &e.problems {
                    println!("{}: {p}", a.config.display());
                }
                Ok(ExitCode::from(1))
            }
        },
        Cmd::Status { config, addr, json, live } => status_cmd(config, addr, json, live),
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
            let ok = rt.block_on(sendauth_siem::connection_test::run(&cfg, &mut std::io::stdout()));
            Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        Cmd::Send { socket, timeout } => send_cmd(&socket, timeout),
        Cmd::Top { queue, interval, once } => top_cmd(&queue_config(&queue)?, interval, once),
        Cmd::Tap { queue, limit, json } => tap_cmd(&queue_config(&queue)?, limit, json),
        Cmd::DeadLetter { action } => dead_letter_cmd(action),
        Cmd::Quarantine { action } => quarantine_cmd(action),
        Cmd::Audit {
            action: AuditCmd::Verify { file },
        } => {
            let text = if file.as_os_str() == "-" {
                let mut s = String::new();
                std::io::stdin().read_to_string(&mut s).map(|_| s)
            } else {
                std::fs::read(&file).map(|b| String::from_utf8_lossy(&b).into_owned())
            };
            match text {
                Ok(text) => {
                    let report = sendauth_siem::audit::verify::verify(&text);
                    print!("{}", sendauth_siem::audit::verify::render(&report));
                    let ok = report.unexplained() == 0 && !report.agents.is_empty();
                    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
                }
                Err(e) => {
                    eprintln!("{}: cannot read the export: {e}; check the path", file.display());
                    Ok(ExitCode::from(2))
                }
            }
        }
        Cmd::Aside { action } => aside_cmd(action),
        Cmd::Demo { events, keep } => {
            init_logging(LogFormat::Text, "error");
            let rt = runtime()?;
            rt.block_on(sendauth_siem::demo::run(events, keep))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Warns when a config holding inline secrets (see `Config::inline_secrets`) is readable by
/// group or others. Secrets from `${VAR}` or `*_file` keys are not in the file, so they do not
/// count.
fn warn_loose_permissions(path: &Path, inline_secrets: &[String]) {
    use std::os::unix::fs::PermissionsExt;
    if inline_secrets.is_empty() {
        return;
    }
    let Ok(meta) = std::fs::metadata(path) else { return };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 == 0 {
        return;
    }
    tracing::warn!(
        "{} holds secrets inline ({}) and is readable by group or others (mode {mode:o}); run `chmod 600 {}`, or move the secrets to ${{VAR}} references or *_file keys",
        path.display(),
        inline_secrets.join(", "),
        path.display()
    );
}

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

fn status_cmd(config: Option<PathBuf>, addr: Option<String>, json: bool, live: bool) -> anyhow::Result<ExitCode> {
    let addr = match (addr, config) {
        (Some(a), _) => a,
        (None, Some(c)) => match load_local(&c) {
            Ok(l) => l.status.listen.to_string(),
            Err(e) => {
                eprintln!("error: {e:#}");
                return Ok(ExitCode::from(STATUS_NOT_DELIVERING));
            }
        },
        (None, None) => sendauth_siem::config::DEFAULT_STATUS_ADDR.to_string(),
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
                sendauth_siem::sink::http::error_chain(&e)
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
fn until(at: &str) -> String {
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
fn ago(at: &str) -> String {
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

fn parse_positive_duration(s: &str) -> Result<std::time::Duration, String> {
    let d = sendauth_siem::config::parse_duration(s)?;
    if d.is_zero() {
        return Err("must be more than 0, e.g. 10s".into());
    }
    Ok(d)
}

/// A duration as the user would write it back: `2s`, `1.5s`, `500ms`.
fn show_duration(d: std::time::Duration) -> String {
    if d.subsec_millis() == 0 && d.as_secs() > 0 {
        format!("{}s", d.as_secs())
    } else if d.as_secs() > 0 {
        format!("{}s", d.as_secs_f64())
    } else {
        format!("{}ms", d.as_millis().max(1))
    }
}

/// Sends stdin to the agent's socket and prints its answer. Every step (connecting, each
/// write, each answer line) has `timeout`: an agent that is stopped (SIGSTOP) or stalled never
/// answers, and a writer must not wait for it forever (docs/CONTRACT.md, "Socket protocol").
fn send_cmd(socket: &Path, timeout: std::time::Duration) -> anyhow::Result<ExitCode> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let mut input = Vec::new();
    std::io::stdin().read_to_end(&mut input)?;
    let no_answer = |step: &str| {
        anyhow::anyhow!(
            "no answer from the agent at {} within {} ({step}); the events may not be durable; resend them once the agent answers again (is it stopped, or stalled on its disk? see `sendauth-siem status`)",
            socket.display(),
            show_duration(timeout)
        )
    };
    let rt = runtime()?;
    rt.block_on(async {
        let s = match tokio::time::timeout(timeout, tokio::net::UnixStream::connect(socket)).await {
            Err(_) => return Err(no_answer("connecting")),
            Ok(r) => r.with_context(|| {
                format!(
                    "cannot connect to {}; is the agent running with sources.socket.path set to it?",
                    socket.display()
                )
            })?,
        };
        let (rd, mut wr) = s.into_split();
        for chunk in input.chunks(64 * 1024) {
            match tokio::time::timeout(timeout, wr.write_all(chunk)).await {
                Err(_) => return Err(no_answer("sending the events")),
                Ok(r) => r.context("writing to the agent's socket")?,
            }
        }
        wr.shutdown().await.context("writing to the agent's socket")?;
        let mut code = ExitCode::SUCCESS;
        let mut got_answer = false;
        let mut lines = tokio::io::BufReader::new(rd).lines();
        loop {
            let line = match tokio::time::timeout(timeout, lines.next_line()).await {
                Err(_) => return Err(no_answer("waiting for its confirmation")),
                Ok(r) => match r.context("reading the agent's answer")? {
                    Some(l) => l,
                    None => break,
                },
            };
            println!("{line}");
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                if v.get("error").is_some() {
                    code = ExitCode::from(1);
                }
                if v.get("accepted").is_some() {
                    got_answer = true;
                    if v["rejected"].as_u64().unwrap_or(0) > 0 || v["refused"].as_u64().unwrap_or(0) > 0 {
                        code = ExitCode::from(1);
                    }
                }
            }
        }
        if !got_answer {
            bail!("the agent closed the connection without confirming; the events may not be durable");
        }
        Ok(code)
    })
}

/// Talks to the running agent's admin socket, or opens the queue directly if none runs; each
/// answer line goes to `on_line` as it arrives (listings stream; see `admin`'s module docs).
fn admin_stream(cfg: &QueueConfig, req: sendauth_siem::admin::Request, on_line: &mut dyn FnMut(Value)) -> anyhow::Result<()> {
    admin_stream_with(cfg, req, None, on_line)
}

/// [`admin_stream`], with the intake rules a `quarantine replay` applies when no agent runs.
fn admin_stream_with(
    cfg: &QueueConfig,
    req: sendauth_siem::admin::Request,
    rules: Option<&sendauth_siem::source::IntakeRules>,
    on_line: &mut dyn FnMut(Value),
) -> anyhow::Result<()> {
    if sendauth_siem::admin::call(&cfg.path, &req, on_line).context("admin socket")? {
        return Ok(());
    }
    let q = sendauth_siem::queue::Queue::open(&cfg.path, cfg.max_bytes, cfg.max_quarantine_entries)
        .with_context(|| format!("cannot open the queue at {}", cfg.path.display()))?;
    q.set_limits(cfg.limits());
    q.set_min_free(cfg.min_free_bytes);
    let metrics = sendauth_siem::metrics::Metrics::default();
    sendauth_siem::admin::execute(&q, &req, rules.map(|r| (r, &metrics)), &mut |v| {
        on_line(v.clone());
        true
    });
    q.close();
    Ok(())
}

/// A request with a one-line answer.
fn admin(cfg: &QueueConfig, req: sendauth_siem::admin::Request) -> anyhow::Result<Value> {
    let mut answer = Value::Null;
    admin_stream(cfg, req, &mut |v| answer = v)?;
    Ok(answer)
}

/// Prints a listing as it streams from the admin socket (or the queue opened directly). Fails
/// when the agent answered an error, so a script sees a non-zero exit instead of an empty
/// listing.
fn print_entries(cfg: &QueueConfig, req: sendauth_siem::admin::Request, json: bool, body_key: &str, fields: &[&str]) -> anyhow::Result<()> {
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

fn dead_letter_cmd(action: DeadLetterCmd) -> anyhow::Result<ExitCode> {
    use sendauth_siem::admin::Request;
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
            print_entries(&cfg, Request::DeadLetterList { limit: Some(limit) }, json, "event", &["reason"])?;
        }
        DeadLetterCmd::Replay { queue, ids, all } => {
            let cfg = queue_config(&queue)?;
            let v = admin(&cfg, Request::DeadLetterReplay { ids: pick(ids, all)? })?;
            if v["ok"] != true {
                bail!("{}", v["error"].as_str().unwrap_or("replay failed"));
            }
            println!(
                "re-queued {} event(s); they will be sent after the events already queued",
                v["replayed"]
            );
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
            let v = admin(&cfg, Request::DeadLetterPurge { ids })?;
            if v["ok"] != true {
                bail!("{}", v["error"].as_str().unwrap_or("purge failed"));
            }
            println!("deleted {} event(s) from the dead letter", v["purged"]);
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
    for_each_listed_id(
        cfg,
        sendauth_siem::admin::Request::DeadLetterList { limit: Some(usize::MAX) },
        &mut |id| {
            total += 1;
            if ids.is_some_and(|ids| ids.contains(&id)) {
                found.insert(id);
            }
        },
    )?;
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

/// Streams a listing (dead letter or quarantine) and gives each entry's id to `f`; fails when
/// the agent answered an error. Constant memory, however long the listing.
fn for_each_listed_id(cfg: &QueueConfig, req: sendauth_siem::admin::Request, f: &mut dyn FnMut(u64)) -> anyhow::Result<()> {
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

fn quarantine_cmd(action: QuarantineCmd) -> anyhow::Result<ExitCode> {
    use sendauth_siem::admin::Request;
    match action {
        QuarantineCmd::List { queue, json, limit } => {
            let cfg = queue_config(&queue)?;
            print_entries(
                &cfg,
                Request::QuarantineList { limit: Some(limit) },
                json,
                "line",
                &["origin", "reason"],
            )?;
        }
        QuarantineCmd::Replay {
            queue,
            range: QuarantineRange { through, .. },
            dry_run,
        } => {
            let cfg = queue_config(&queue)?;
            // Without a running agent, the rules come from the full config (its transform).
            let rules = queue
                .config
                .as_deref()
                .and_then(|p| Config::load(p).ok())
                .map(|c| sendauth_siem::source::IntakeRules::of(&c));
            let mut v = Value::Null;
            admin_stream_with(&cfg, Request::QuarantineReplay { through, dry_run }, rules.as_ref(), &mut |a| v = a)?;
            if v["ok"] != true {
                bail!("{}", v["error"].as_str().unwrap_or("replay failed"));
            }
            if dry_run {
                println!(
                    "would queue {} line(s) that pass the current rules; {} would stay quarantined; nothing was changed",
                    v["requeued"], v["still_rejected"]
                );
            } else {
                println!(
                    "queued {} line(s) that pass the current rules (sent after the events already queued); {} still rejected, quarantined again with today's reason",
                    v["requeued"], v["still_rejected"]
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
            let v = admin(&cfg, Request::QuarantinePurge { through })?;
            if v["ok"] != true {
                bail!("{}", v["error"].as_str().unwrap_or("purge failed"));
            }
            println!("deleted {} line(s) from the quarantine", v["purged"]);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One `Status` answer from the running agent's admin socket.
fn agent_status(cfg: &QueueConfig) -> anyhow::Result<Value> {
    let mut answer = Value::Null;
    let running = sendauth_siem::admin::call(&cfg.path, &sendauth_siem::admin::Request::Status, &mut |v| answer = v)
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
fn top_cmd(cfg: &QueueConfig, interval: std::time::Duration, once: bool) -> anyhow::Result<ExitCode> {
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

/// `tap`: prints events as the running agent queues them, until `limit`.
fn tap_cmd(cfg: &QueueConfig, limit: usize, json: bool) -> anyhow::Result<ExitCode> {
    use std::io::{BufRead, Write};
    let path = sendauth_siem::admin::socket_path(&cfg.path);
    let mut s = std::os::unix::net::UnixStream::connect(&path).with_context(|| {
        format!(
            "no agent is running on the queue at {} (cannot connect to {}); start it with `sendauth-siem run`",
            cfg.path.display(),
            path.display()
        )
    })?;
    let mut req = serde_json::to_vec(&sendauth_siem::admin::Request::Tap { limit })?;
    req.push(b'\n');
    s.write_all(&req)?;
    if !json {
        eprintln!("waiting for events (after the privacy transform; stops after {limit}; Ctrl-C to quit)");
    }
    for line in std::io::BufReader::new(s).lines() {
        let v: Value = serde_json::from_str(&line.context("reading from the agent's admin socket")?)?;
        if v["ok"] == false {
            bail!("{}", v["error"].as_str().unwrap_or("the agent refused the tap"));
        }
        if v["stream"] == true {
            continue;
        }
        if v["end"] == true {
            if !json {
                eprintln!("{} event(s) shown", v["listed"]);
            }
            return Ok(ExitCode::SUCCESS);
        }
        if let Some(n) = v["skipped"].as_u64() {
            eprintln!("({n} event(s) skipped: this view could not keep up)");
            continue;
        }
        if json {
            println!("{v}");
        } else {
            let e = &v["event"];
            println!(
                "{:<6} {:<22} {}  {}",
                v["source"].as_str().unwrap_or("?"),
                e["event_type"].as_str().unwrap_or("?"),
                e["transaction_id"].as_str().unwrap_or("?"),
                serde_json::to_string(e).unwrap_or_default()
            );
        }
    }
    bail!("the agent closed the tap before the end (it stopped?)")
}

/// `aside list` and `aside replay` (see `queue::aside`).
fn aside_cmd(action: AsideCmd) -> anyhow::Result<ExitCode> {
    use sendauth_siem::queue::aside;
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
            let v = admin(
                &cfg,
                sendauth_siem::admin::Request::AsideReplay {
                    name: name.clone(),
                    dry_run,
                },
            )?;
            if v["ok"] != true {
                bail!("{}", v["error"].as_str().unwrap_or("replay failed"));
            }
            let (events, dead, quarantine) = (&v["requeued_events"], &v["requeued_dead_letters"], &v["copied_quarantine"]);
            if v["already_replayed"] == true {
                println!(
                    "{name} was already replayed at {}; nothing was re-queued",
                    v["report"]["progress"]["done_at"].as_str().unwrap_or("?")
                );
            } else if dry_run {
                println!("would re-queue {events} pending event(s) and {dead} dead letter(s), and copy {quarantine} quarantine entr(ies); nothing was changed");
            } else {
                println!("re-queued {events} pending event(s) and {dead} dead letter(s) after the events already queued; copied {quarantine} quarantine entr(ies)");
            }
            if let Some(u) = v["report"]["unreadable"].as_array().filter(|u| !u.is_empty()) {
                for line in u {
                    println!("could not read: {}", line.as_str().unwrap_or(""));
                }
            }
            if let Some(why) = v["stopped"].as_str() {
                bail!("the replay of {name} stopped: {why}");
            }
            if !dry_run && v["already_replayed"] != true {
                println!(
                    "{name} is marked replayed ({}); it will not be replayed again",
                    aside::PROGRESS_FILE
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
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
