//! The `sendauth-siem` command line (docs/CONTRACT.md, "Command line").

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use sendauth_siem::config::{Config, LogFormat};
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

#[derive(Subcommand)]
enum Cmd {
    /// Run the agent in the foreground until SIGTERM/SIGINT.
    Run(ConfigArg),
    /// Validate a config: exit 0 if valid, else one line per problem naming the key.
    CheckConfig(ConfigArg),
    /// Ask the running agent for its status.
    Status {
        #[arg(long, env = "SENDAUTH_SIEM_CONFIG")]
        config: Option<PathBuf>,
        /// Status address (default: status.listen from --config, else 127.0.0.1:8686).
        #[arg(long)]
        addr: Option<String>,
        /// Print the raw JSON.
        #[arg(long)]
        json: bool,
    },
    /// Send one test event to the configured SIEM now and explain the outcome.
    Test(ConfigArg),
    /// Write JSONL from stdin to the agent's socket and print its answer.
    Send {
        #[arg(long)]
        socket: PathBuf,
        /// How long to wait for the agent at each step (connecting, each write, the answer)
        /// before giving up with a non-zero exit: 10s, 500ms, 1m; a bare number is seconds.
        #[arg(long, default_value = "10s", value_parser = parse_send_timeout)]
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
        /// How many sample events to send.
        #[arg(long, default_value_t = 20)]
        events: usize,
    },
    /// Measure the agent (run as a child process) against a local counting receiver:
    /// throughput (file, socket), cost and latency at steady rates, idle cost, and throughput
    /// with a distant SIEM (rtt). See docs/BENCHMARKS.md.
    Bench(sendauth_siem::bench::Options),
    /// The benchmark's counting receiver, measuring any agent command (bench/compare-syslog-ng.sh).
    #[command(hide = true)]
    BenchReceiver(sendauth_siem::bench::ReceiverOptions),
    /// Writes the benchmark's events to a file.
    #[command(hide = true)]
    BenchGen {
        #[arg(long)]
        events: u64,
        #[arg(long)]
        out: PathBuf,
    },
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
        config: ConfigArg,
        #[arg(long)]
        json: bool,
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
    /// Put dead-lettered events back at the end of the queue (all, or --id N ...).
    Replay {
        #[command(flatten)]
        config: ConfigArg,
        #[arg(long = "id")]
        ids: Vec<u64>,
        /// Replay every dead-lettered event.
        #[arg(long, conflicts_with = "ids")]
        all: bool,
    },
    /// Delete dead-lettered events (all, or --id N ...).
    Purge {
        #[command(flatten)]
        config: ConfigArg,
        #[arg(long = "id")]
        ids: Vec<u64>,
        #[arg(long, conflicts_with = "ids")]
        all: bool,
    },
}

#[derive(Subcommand)]
enum QuarantineCmd {
    /// List quarantined lines with their reasons and origins.
    List {
        #[command(flatten)]
        config: ConfigArg,
        #[arg(long)]
        json: bool,
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
}

#[derive(Subcommand)]
enum AsideCmd {
    /// List the moved-aside stores: when, why, and how many pending events, dead letters and
    /// quarantine entries each still holds (read from its segment files, and from its index if
    /// that opens on a copy). Changes nothing.
    List {
        #[command(flatten)]
        config: ConfigArg,
        #[arg(long)]
        json: bool,
    },
    /// Re-queue a moved-aside store's pending events and dead letters at the end of the queue
    /// and copy its quarantine entries (through the running agent, or directly). Resumes where
    /// a stopped replay left off; a finished one is marked and not repeated. At least once: a
    /// crash mid-replay may send some events twice.
    Replay {
        #[command(flatten)]
        config: ConfigArg,
        /// Its name, as `aside list` shows it (corrupt-...).
        name: String,
        /// Only say what would be re-queued.
        #[arg(long)]
        dry_run: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(cli.cmd, Cmd::DeadLetter { .. } | Cmd::Quarantine { .. } | Cmd::Aside { .. }) {
        // Listings are meant for pipes (`quarantine list --json | head`): when the reader goes
        // away, end quietly as other Unix tools do, instead of panicking in `println!` on EPIPE.
        // Only these commands: the agent itself must survive a peer that closes its socket.
        // SAFETY: called before any other thread exists; resets one signal disposition.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
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
        Cmd::Status { config, addr, json } => status_cmd(config, addr, json),
        Cmd::Test(a) => {
            let cfg = load(&a.config)?;
            let rt = runtime()?;
            let ok = rt.block_on(sendauth_siem::connection_test::run(&cfg, &mut std::io::stdout()));
            Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        Cmd::Send { socket, timeout } => send_cmd(&socket, timeout),
        Cmd::DeadLetter { action } => dead_letter_cmd(action),
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
        Cmd::Quarantine { action } => match action {
            QuarantineCmd::List { config, json, limit } => {
                let cfg = load(&config.config)?;
                print_entries(
                    &cfg,
                    sendauth_siem::admin::Request::QuarantineList { limit: Some(limit) },
                    json,
                    "line",
                    &["origin", "reason"],
                )?;
                Ok(ExitCode::SUCCESS)
            }
        },
        Cmd::Aside { action } => aside_cmd(action),
        Cmd::Bench(o) => {
            sendauth_siem::bench::run(&o)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::BenchReceiver(o) => {
            sendauth_siem::bench::run_receiver(&o)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::BenchGen { events, out } => {
            let bytes = sendauth_siem::bench::write_events_file(&out, events)?;
            eprintln!("{events} events, {bytes} bytes written to {}", out.display());
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Demo { events } => {
            init_logging(LogFormat::Text, "error");
            let rt = runtime()?;
            rt.block_on(sendauth_siem::demo::run(events))?;
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

fn status_cmd(config: Option<PathBuf>, addr: Option<String>, json: bool) -> anyhow::Result<ExitCode> {
    let addr = match (addr, config) {
        (Some(a), _) => a,
        (None, Some(c)) => load(&c)?.status.listen.to_string(),
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
                "error: no agent answered at http://{addr}/status ({e}); is `sendauth-siem run` running, and is status.listen {addr}?"
            );
            return Ok(ExitCode::from(2));
        }
    };
    let v: Value = serde_json::from_str(&body).context("the agent's status is not JSON")?;
    if json {
        println!("{}", serde_json::to_string(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    let label = match v["state"].as_str().unwrap_or("?") {
        "success" => "Success",
        "error" => "Error",
        "not_yet_invoked" => "Not yet invoked",
        "disabled" => "Disabled",
        other => other,
    };
    println!("State:            {label}");
    if let Some(e) = v["last_error"].as_object() {
        if v["state"] == "error" {
            println!(
                "Last error:       {} ({})",
                e["message"].as_str().unwrap_or(""),
                e["at"].as_str().unwrap_or("")
            );
        }
    }
    println!("Last success:     {}", v["last_success_at"].as_str().unwrap_or("never"));
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
    Ok(ExitCode::SUCCESS)
}

fn parse_send_timeout(s: &str) -> Result<std::time::Duration, String> {
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
fn admin_stream(cfg: &Config, req: sendauth_siem::admin::Request, on_line: &mut dyn FnMut(Value)) -> anyhow::Result<()> {
    if sendauth_siem::admin::call(&cfg.queue.path, &req, on_line).context("admin socket")? {
        return Ok(());
    }
    let q = sendauth_siem::queue::Queue::open(&cfg.queue.path, cfg.queue.max_bytes, cfg.queue.max_quarantine_entries)
        .with_context(|| format!("cannot open the queue at {}", cfg.queue.path.display()))?;
    q.set_limits(cfg.queue.limits());
    q.set_min_free(cfg.queue.min_free_bytes);
    sendauth_siem::admin::execute(&q, &req, &mut |v| {
        on_line(v.clone());
        true
    });
    q.close();
    Ok(())
}

/// A request with a one-line answer.
fn admin(cfg: &Config, req: sendauth_siem::admin::Request) -> anyhow::Result<Value> {
    let mut answer = Value::Null;
    admin_stream(cfg, req, &mut |v| answer = v)?;
    Ok(answer)
}

/// Prints a listing as it streams from the admin socket (or the queue opened directly). Fails
/// when the agent answered an error, so a script sees a non-zero exit instead of an empty
/// listing.
fn print_entries(cfg: &Config, req: sendauth_siem::admin::Request, json: bool, body_key: &str, fields: &[&str]) -> anyhow::Result<()> {
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
        DeadLetterCmd::List { config, json, limit } => {
            let cfg = load(&config.config)?;
            print_entries(&cfg, Request::DeadLetterList { limit: Some(limit) }, json, "event", &["reason"])?;
        }
        DeadLetterCmd::Replay { config, ids, all } => {
            let cfg = load(&config.config)?;
            let v = admin(&cfg, Request::DeadLetterReplay { ids: pick(ids, all)? })?;
            if v["ok"] != true {
                bail!("{}", v["error"].as_str().unwrap_or("replay failed"));
            }
            println!(
                "re-queued {} event(s); they will be sent after the events already queued",
                v["replayed"]
            );
        }
        DeadLetterCmd::Purge { config, ids, all } => {
            let cfg = load(&config.config)?;
            let v = admin(&cfg, Request::DeadLetterPurge { ids: pick(ids, all)? })?;
            if v["ok"] != true {
                bail!("{}", v["error"].as_str().unwrap_or("purge failed"));
            }
            println!("deleted {} event(s) from the dead letter", v["purged"]);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `aside list` and `aside replay` (see `queue::aside`).
fn aside_cmd(action: AsideCmd) -> anyhow::Result<ExitCode> {
    use sendauth_siem::queue::aside;
    match action {
        AsideCmd::List { config, json } => {
            let cfg = load(&config.config)?;
            let reports = aside::list(&cfg.queue.path)?;
            if json {
                for r in &reports {
                    println!("{}", serde_json::to_string(r)?);
                }
                return Ok(ExitCode::SUCCESS);
            }
            if reports.is_empty() {
                println!("no moved-aside store in {}", cfg.queue.path.display());
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
        AsideCmd::Replay { config, name, dry_run } => {
            let cfg = load(&config.config)?;
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
