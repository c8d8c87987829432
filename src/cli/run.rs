//! `run` (the agent in the foreground), `check-config` and `demo`: the commands that load the
//! full config (or none) and set up logging.

use std::path::Path;
use std::process::ExitCode;

use crate::config::{Config, LogFormat};
use crate::source::file::not_a_regular_file;

use super::{load, runtime};

/// `run`: the agent in the foreground until SIGTERM/SIGINT.
pub(super) fn run(config: &Path) -> anyhow::Result<ExitCode> {
    let cfg = load(config)?;
    let handle = init_logging(cfg.log.format, &cfg.log.level);
    warn_loose_permissions(config, &cfg.inline_secrets);
    crate::fd_limit::prepare(cfg.fd_demand());
    let rt = runtime()?;
    let config = config.to_path_buf();
    rt.block_on(async move {
        let hook: Option<crate::agent::LogLevelHook> = handle.map(|h| {
            Box::new(move |level: &str| {
                if let Ok(f) = tracing_subscriber::EnvFilter::try_new(level) {
                    let _ = h.reload(f);
                    tracing::info!("log level set to {level}");
                }
            }) as crate::agent::LogLevelHook
        });
        tracing::info!(version = env!("CARGO_PKG_VERSION"), config = %config.display(), "starting sendauth-siem");
        let agent = crate::agent::Agent::start(config.clone(), cfg, hook).await?;
        agent.run_until_signal().await
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `check-config`: exit 0 if valid (with warnings), else one line per problem naming the key.
pub(super) fn check_config(config: &Path) -> ExitCode {
    match Config::load(config) {
        Ok(cfg) if cfg.sources.file.as_ref().is_some_and(|f| not_a_regular_file(&f.path).is_some()) => {
            let f = cfg.sources.file.as_ref().expect("checked");
            let what = not_a_regular_file(&f.path).unwrap_or("not a regular file");
            println!(
                "{}: sources.file.path: {} is {what}, not a regular file; point it at the JSONL file the auth server appends to",
                config.display(),
                f.path.display()
            );
            ExitCode::from(1)
        }
        Ok(cfg) => {
            if let Some(w) = crate::fd_limit::check(cfg.fd_demand()) {
                println!("{}: warning: {w}", config.display());
            }
            if let Some(f) = cfg
                .sources
                .file
                .as_ref()
                .filter(|f| f.path.parent().is_some_and(|d| !d.as_os_str().is_empty() && !d.is_dir()))
            {
                println!(
                    "{}: warning: sources.file.path: {}",
                    config.display(),
                    crate::source::file::waiting_for(&f.path.display().to_string())
                );
            }
            println!(
                "{}: OK (platform {}, {})",
                config.display(),
                cfg.siem.effective_platform().as_str(),
                cfg.siem.url_redacted()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            for p in &e.problems {
                println!("{}: {p}", config.display());
            }
            ExitCode::from(1)
        }
    }
}

/// `demo`: the agent against a built-in emulator, with sample events.
pub(super) fn demo(events: usize, keep: bool) -> anyhow::Result<ExitCode> {
    init_logging(LogFormat::Text, "error");
    let rt = runtime()?;
    rt.block_on(crate::demo::run(events, keep))?;
    Ok(ExitCode::SUCCESS)
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
