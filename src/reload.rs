//! Hot reload: the config file is watched and re-applied on every change, without a restart.
//!
//! The *directory* holding the config is watched, not the file: editors save by writing a new
//! file and renaming it over the old one, and Kubernetes swaps a `..data` symlink; both replace
//! the inode a file watch would be attached to. Events are debounced, the file is re-read and
//! validated, and a valid config is published on a `watch` channel; each component picks it up
//! at its own seam (the sink before its next request, sources by re-opening). SIGHUP and a
//! slow content poll (for filesystems without inotify) trigger the same path.
//!
//! Secrets read from files (`*_file` keys) count as part of the config: their directories are
//! watched too, and a change of their content re-reads the config (Kubernetes updates a
//! mounted Secret in place, and a distroless image has no `kill` to send a SIGHUP). Only a
//! fingerprint of their content is kept between reloads, never the secret itself.
//!
//! Invariant (ARCHITECTURE.md invariant 6): an invalid config never replaces a valid one. The
//! agent keeps running on the old config and reports the problems in `config.reload_error` until a valid edit arrives.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::Watcher;
use tokio::sync::{mpsc, watch};

use crate::config::Config;
use crate::shutdown::Shutdown;
use crate::status::StatusHub;

const DEBOUNCE: Duration = Duration::from_millis(200);
/// The config is re-read this often when its directory cannot be watched...
const POLL: Duration = Duration::from_secs(2);
/// ...and this often when it is (in case an event is missed), so an idle agent rarely wakes.
const WATCHED_POLL: Duration = Duration::from_secs(10);

pub(crate) struct Reloader {
    path: PathBuf,
    tx: watch::Sender<Arc<Config>>,
    status: Arc<StatusHub>,
    /// The text last examined (applied or rejected), to skip no-op events...
    last_text: Option<String>,
    /// ...and a fingerprint of the secret files it named, as they were then.
    last_secrets: u64,
}

impl Reloader {
    pub fn new(path: PathBuf, tx: watch::Sender<Arc<Config>>, status: Arc<StatusHub>) -> Self {
        let last_text = std::fs::read_to_string(&path).ok();
        let last_secrets = secrets_fingerprint(&tx.borrow().secret_files);
        Reloader {
            path,
            tx,
            status,
            last_text,
            last_secrets,
        }
    }

    pub async fn run(mut self, mut shutdown: Shutdown) {
        let (ev_tx, mut ev_rx) = mpsc::unbounded_channel::<()>();
        let secret_files = self.tx.borrow().secret_files.clone();
        let watcher = watch_config_dir(&self.path, &secret_files, ev_tx);
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let mut poll = tokio::time::interval(if watcher.is_some() { WATCHED_POLL } else { POLL });
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let forced = tokio::select! {
                _ = shutdown.wait() => break,
                Some(()) = ev_rx.recv() => {
                    // Debounce: let the editor or kubelet finish, then drain the burst.
                    tokio::time::sleep(DEBOUNCE).await;
                    while ev_rx.try_recv().is_ok() {}
                    false
                }
                Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                    tracing::info!(target: "reload", "SIGHUP: reloading the config");
                    true
                }
                _ = poll.tick() => false,
            };
            self.reload(forced);
        }
    }

    /// Re-reads and applies the config if it changed (or always, if `forced`).
    pub fn reload(&mut self, forced: bool) {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) => {
                // Mid-swap (rename or symlink) the file can be briefly missing: the next event
                // or poll will see the new one. Report only if it persists across a forced reload.
                if forced {
                    let msg = format!("{}: cannot read the config file: {e}", self.path.display());
                    self.reject(msg);
                }
                return;
            }
        };
        let secrets = secrets_fingerprint(&self.tx.borrow().secret_files);
        if !forced && self.last_text.as_deref() == Some(text.as_str()) && self.last_secrets == secrets {
            return;
        }
        if self.last_secrets != secrets {
            tracing::info!(target: "reload", "a secret file changed; re-reading the config");
        }
        self.last_text = Some(text.clone());
        self.last_secrets = secrets;
        crate::service_manager::reloading();
        let parsed = Config::parse_with_env(&text, &|k| std::env::var(k).ok());
        let new = match parsed {
            Ok(c) => c,
            Err(errs) => {
                let msg = errs.problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
                self.reject(msg);
                return;
            }
        };
        let old = self.tx.borrow().clone();
        if new.queue.path != old.queue.path {
            self.reject(format!(
                "queue.path: cannot change while the agent runs (from {} to {}); restart the agent to move the queue",
                old.queue.path.display(),
                new.queue.path.display()
            ));
            return;
        }
        let changed = changed_sections(&old, &new);
        self.status.set_reload_error(None);
        self.status.metrics.reloads_ok.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if changed.is_empty() {
            tracing::info!(target: "reload", "config re-read; nothing changed");
            crate::service_manager::ready("config re-read; nothing changed");
            return;
        }
        tracing::info!(target: "reload", changed = %changed.join(", "), "config reloaded and applied");
        let _ = self.tx.send(Arc::new(new));
        crate::service_manager::ready(&format!("config reloaded: {} changed", changed.join(", ")));
    }

    fn reject(&mut self, msg: String) {
        tracing::error!(target: "reload", "config change NOT applied; still running on the previous config: {msg}");
        self.status
            .metrics
            .reloads_failed
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.status.set_reload_error(Some(format!("{}: {msg}", self.path.display())));
        crate::service_manager::ready("config change rejected, still on the previous config (see `sendauth-siem status`)");
    }
}

fn changed_sections(a: &Config, b: &Config) -> Vec<&'static str> {
    let mut v = Vec::new();
    if a.siem != b.siem {
        v.push("siem");
    }
    if a.sources.file != b.sources.file {
        v.push("sources.file");
    }
    if a.sources.socket != b.sources.socket {
        v.push("sources.socket");
    }
    if a.sources.max_event_bytes != b.sources.max_event_bytes {
        v.push("sources.max_event_bytes");
    }
    if a.queue != b.queue {
        v.push("queue");
    }
    if a.delivery != b.delivery {
        v.push("delivery");
    }
    if a.status != b.status {
        v.push("status");
    }
    if a.log != b.log {
        v.push("log");
    }
    if a.transform != b.transform {
        v.push("transform");
    }
    // A section added to Config but not listed above must still be applied.
    if v.is_empty() && a != b {
        v.push("other settings");
    }
    v
}

/// A fingerprint of the secret files' content (or of why one cannot be read), to notice a
/// rotation without keeping the secret. Not cryptographic: it only has to change when they do.
fn secrets_fingerprint(files: &[PathBuf]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for f in files {
        match std::fs::read(f) {
            Ok(mut bytes) => {
                bytes.hash(&mut h);
                zeroize::Zeroize::zeroize(&mut bytes);
            }
            Err(e) => e.kind().hash(&mut h),
        }
    }
    h.finish()
}

/// Watches the config's directory (and, if the config is a symlink, its target's directory),
/// and the directories of the secret files.
fn watch_config_dir(path: &Path, secret_files: &[PathBuf], tx: mpsc::UnboundedSender<()>) -> Option<notify::RecommendedWatcher> {
    // Only events about the config or a secret file (or a Kubernetes `..data` swap) wake the
    // reloader: other files in the directory may change all the time.
    let names: Vec<std::ffi::OsString> = [Some(path.to_path_buf()), std::fs::canonicalize(path).ok()]
        .into_iter()
        .flatten()
        .chain(secret_files.iter().cloned())
        .filter_map(|p| p.file_name().map(|n| n.to_os_string()))
        .collect();
    let mut w = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let relevant = match &res {
            Ok(ev) => {
                ev.paths.is_empty()
                    || ev.paths.iter().any(|p| {
                        p.file_name()
                            .is_some_and(|n| names.iter().any(|c| c == n) || n.to_string_lossy().starts_with(".."))
                    })
            }
            Err(_) => true,
        };
        if relevant {
            let _ = tx.send(());
        }
    })
    .ok()?;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if let Err(e) = w.watch(dir, notify::RecursiveMode::NonRecursive) {
        tracing::warn!(target: "reload", "cannot watch {} ({e}); config changes are picked up by polling every {POLL:?} and on SIGHUP", dir.display());
        return None;
    }
    if let Ok(target) = std::fs::canonicalize(path) {
        if let Some(tdir) = target.parent() {
            if tdir != dir {
                let _ = w.watch(tdir, notify::RecursiveMode::NonRecursive);
            }
        }
    }
    for f in secret_files {
        let sdir = f.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        if sdir != dir {
            // Unwatchable: the poll still notices a rotation within WATCHED_POLL.
            let _ = w.watch(sdir, notify::RecursiveMode::NonRecursive);
        }
    }
    Some(w)
}
