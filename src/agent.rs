//! Wiring: opens the queue, starts the status listener, admin socket, sources, the sink and the
//! config reloader, and stops them in order on SIGTERM/SIGINT.
//!
//! Config changes arrive on a `watch` channel; this module's supervisor restarts a source only
//! when its own settings or the rules it applies to lines (`max_event_bytes`, `transform`)
//! changed, and re-binds the status listener when `status.listen`
//! changed. The sink watches the channel itself. Nothing restarts the process.
//!
//! Shutdown order: sources stop first (the file source finishes the chunk it is committing;
//! socket clients get their answer line for what was committed), then the sink finishes its
//! in-flight request and removes what the SIEM accepted, then status is persisted and the queue
//! flushed and fsynced. A graceful stop therefore resends nothing on restart.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::queue::Queue;
use crate::shutdown::{self, Shutdown, ShutdownTrigger};
use crate::sink::delivery::Delivery;
use crate::source::file::FileSource;
use crate::source::settings::SocketSourceConfig;
use crate::source::socket::Control;
use crate::source::IntakeRules;
use crate::status::{ConfigView, StatusHub};

/// Called with `log.level` whenever it changes.
pub(crate) type LogLevelHook = Box<dyn Fn(&str) + Send + Sync>;

/// A running agent (used by `run` and by `demo`).
pub struct Agent {
    pub status: Arc<StatusHub>,
    pub queue: Queue,
    trigger: ShutdownTrigger,
    tasks: Vec<JoinHandle<()>>,
    supervisor: JoinHandle<()>,
    /// One line for the service manager's `STATUS=`: where events go (URL redacted).
    summary: String,
}

impl Agent {
    /// Starts every component. `config_path` is watched for changes.
    pub async fn start(config_path: PathBuf, cfg: Config, log_hook: Option<LogLevelHook>) -> anyhow::Result<Agent> {
        let qcfg = cfg.queue.clone();
        let queue = tokio::task::spawn_blocking(move || Queue::open(&qcfg.path, qcfg.max_bytes, qcfg.max_quarantine_entries))
            .await
            .context("queue open task failed")?
            .with_context(|| format!("queue.path: cannot open the queue at {}", cfg.queue.path.display()))?;
        queue.set_limits(cfg.queue.limits());
        queue.set_min_free(cfg.queue.min_free_bytes);
        let status = Arc::new(StatusHub::new(queue.view()));
        status.set_config(ConfigView {
            url: cfg.siem.url_redacted(),
            platform: cfg.siem.effective_platform().as_str().to_string(),
            enabled: cfg.siem.enabled,
        });
        let summary = format!(
            "taking events in; forwarding to {} at {}",
            cfg.siem.effective_platform().as_str(),
            cfg.siem.url_redacted()
        );
        let (trigger, shutdown) = shutdown::channel();
        let listener = crate::server::bind(cfg.status.listen).await?;
        tracing::info!(target: "agent", listen = %cfg.status.listen, "status API listening (/status, /health, /metrics)");
        let (cfg_tx, cfg_rx) = watch::channel(Arc::new(cfg.clone()));

        let mut tasks = Vec::new();
        match crate::admin::bind(&cfg.queue.path) {
            Ok(l) => tasks.push(tokio::spawn(crate::admin::serve(
                l,
                queue.clone(),
                status.clone(),
                cfg_rx.clone(),
                shutdown.clone(),
            ))),
            Err(e) => {
                tracing::warn!(target: "agent", "cannot create the admin socket in {}: {e}; dead-letter commands will not reach the running agent", cfg.queue.path.display())
            }
        }
        tasks.push(tokio::spawn(sample_history(status.clone(), shutdown.clone())));
        let sink_settings = crate::settings::follow(cfg_rx.clone(), |c| {
            Arc::new(crate::sink::settings::SinkSettings {
                siem: c.siem.clone(),
                delivery: c.delivery.clone(),
            })
        });
        let delivery = Delivery::new(queue.clone(), status.clone(), sink_settings, shutdown.clone());
        tasks.push(tokio::spawn(delivery.run()));
        tasks.push(tokio::spawn(crate::audit::run_heartbeats(
            queue.clone(),
            status.clone(),
            crate::settings::follow(cfg_rx.clone(), |c| c.siem.audit.clone()),
            shutdown.clone(),
        )));
        let reloader = crate::reload::Reloader::new(config_path, cfg_tx, status.clone());
        tasks.push(tokio::spawn(reloader.run(shutdown.clone())));

        let mut sup = Supervisor {
            queue: queue.clone(),
            status: status.clone(),
            cfg: cfg_rx,
            shutdown: shutdown.clone(),
            file: None,
            socket: None,
            socket_draining: Vec::new(),
            sources_stop: shutdown::channel(),
            log_hook,
        };
        // At start-up a source that cannot start is fatal (a clear error beats a silent agent);
        // after a reload it is reported in status and the old sources keep running.
        if let Err(e) = sup.apply_sources().await {
            trigger.trigger();
            for t in tasks {
                let _ = t.await;
            }
            queue.close();
            return Err(e.into());
        }
        let supervisor = tokio::spawn(sup.run(listener));
        Ok(Agent {
            status,
            queue,
            trigger,
            tasks,
            supervisor,
            summary,
        })
    }

    /// A handle that can request shutdown (from a signal handler or the demo).
    pub(crate) fn shutdown_handle(&self) -> Shutdown {
        self.trigger.subscribe()
    }

    /// Stops everything in order (see the module docs).
    pub async fn stop(self) {
        tracing::info!(target: "agent", "stopping: finishing in-flight work");
        self.trigger.trigger();
        let _ = self.supervisor.await;
        for t in self.tasks {
            let _ = t.await;
        }
        // Both write and fsync: off the runtime's workers.
        let status = self.status.clone();
        let _ = tokio::task::spawn_blocking(move || status.flush()).await;
        let q = self.queue.clone();
        let _ = tokio::task::spawn_blocking(move || q.close()).await;
        tracing::info!(target: "agent", "stopped; queue flushed to disk");
    }

    /// Runs until SIGTERM or SIGINT, then stops gracefully. If the queue's storage fails for
    /// good (see `queue.rs`), exits at once with status 74 (EX_IOERR) so the service manager
    /// restarts the agent: what was committed is on disk, as after a crash.
    pub(crate) async fn run_until_signal(self) -> anyhow::Result<()> {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?;
        let mut int = signal(SignalKind::interrupt()).context("cannot install the SIGINT handler")?;
        // Everything serves from here on: tell systemd (Type=notify), and keep its watchdog fed
        // while the queue answers.
        crate::service_manager::ready(&self.summary);
        let watchdog = crate::service_manager::spawn_watchdog(self.queue.clone(), self.shutdown_handle());
        tokio::select! {
            _ = term.recv() => tracing::info!(target: "agent", "SIGTERM received"),
            _ = int.recv() => tracing::info!(target: "agent", "SIGINT received"),
            e = self.queue.fatal() => {
                tracing::error!(target: "agent", "exiting with status 74: the queue cannot be written any more ({e}); a restart reopens it with everything that was committed");
                std::process::exit(74);
            }
        }
        crate::service_manager::stopping();
        self.stop().await;
        if let Some(w) = watchdog {
            let _ = w.await;
        }
        Ok(())
    }
}

/// Feeds the status page's chart: one sample per `history::INTERVAL` (a wake-up every 10 s is
/// the whole idle cost).
async fn sample_history(status: Arc<StatusHub>, mut shutdown: Shutdown) {
    let mut tick = tokio::time::interval(crate::history::INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tick.tick() => {
                // `counts` takes the queue's state lock: off the runtime's workers.
                let s = status.clone();
                let _ = tokio::task::spawn_blocking(move || s.sample_history()).await;
            }
        }
    }
}

struct SocketTask {
    cfg: SocketSourceConfig,
    rules: IntakeRules,
    control: tokio::sync::mpsc::UnboundedSender<Control>,
    handle: JoinHandle<()>,
}

struct Supervisor {
    queue: Queue,
    status: Arc<StatusHub>,
    cfg: watch::Receiver<Arc<Config>>,
    shutdown: Shutdown,
    file: Option<(crate::source::settings::FileSourceConfig, IntakeRules, FileSource)>,
    socket: Option<SocketTask>,
    /// Socket sources removed from the config whose writers are still connected.
    socket_draining: Vec<JoinHandle<()>>,
    /// Stops the socket source(s) at shutdown: they stop accepting and reading, and answer.
    sources_stop: (ShutdownTrigger, Shutdown),
    log_hook: Option<LogLevelHook>,
}

impl Supervisor {
    async fn run(mut self, listener: tokio::net::TcpListener) {
        let mut status_listen = self.cfg.borrow().status.listen;
        let mut status_trigger = shutdown::channel();
        let mut status_task = tokio::spawn(crate::server::serve(listener, self.status.clone(), status_trigger.1.clone()));
        let mut log_level = self.cfg.borrow().log.level.clone();
        loop {
            let mut sd = self.shutdown.clone();
            tokio::select! {
                _ = sd.wait() => break,
                r = self.cfg.changed() => {
                    if r.is_err() { break; }
                    let cfg = self.cfg.borrow_and_update().clone();
                    self.queue.set_limits(cfg.queue.limits());
                    self.queue.set_min_free(cfg.queue.min_free_bytes);
                    if let Err(e) = self.apply_sources().await {
                        tracing::error!(target: "agent", "{e}");
                        self.status.set_reload_error(Some(e.to_string()));
                    }
                    if cfg.log.level != log_level {
                        log_level = cfg.log.level.clone();
                        if let Some(h) = &self.log_hook { h(&log_level); }
                    }
                    if cfg.status.listen != status_listen {
                        match crate::server::bind(cfg.status.listen).await {
                            Ok(l) => {
                                status_trigger.0.trigger();
                                let _ = (&mut status_task).await;
                                status_trigger = shutdown::channel();
                                status_task = tokio::spawn(crate::server::serve(l, self.status.clone(), status_trigger.1.clone()));
                                status_listen = cfg.status.listen;
                                tracing::info!(target: "agent", listen = %status_listen, "status API moved");
                            }
                            Err(e) => {
                                self.status.set_reload_error(Some(e.to_string()));
                                tracing::error!(target: "agent", "{e}; the status API stays on {status_listen}");
                            }
                        }
                    }
                }
            }
        }
        // Shutdown: sources first.
        if let Some((_, _, f)) = self.file.take() {
            stop_file(f).await;
        }
        self.sources_stop.0.trigger();
        if let Some(s) = self.socket.take() {
            let _ = s.handle.await;
        }
        for h in self.socket_draining.drain(..) {
            let _ = h.await;
        }
        status_trigger.0.trigger();
        let _ = status_task.await;
    }

    /// Starts, stops or restarts sources to match the current config.
    async fn apply_sources(&mut self) -> Result<(), crate::source::socket::SocketError> {
        let cfg = self.cfg.borrow().clone();
        let rules = cfg.intake_rules();
        // File source.
        let want_file = cfg.sources.file.clone();
        let same_file = match (&self.file, &want_file) {
            (Some((c, r, _)), Some(w)) => c == w && *r == rules,
            (None, None) => true,
            _ => false,
        };
        if !same_file {
            if let Some((c, _, f)) = self.file.take() {
                tracing::info!(target: "agent", path = %c.path.display(), "stopping the file source (config changed)");
                stop_file(f).await;
            }
            if let Some(w) = want_file {
                let f = FileSource::spawn(w.clone(), rules.clone(), self.queue.clone(), self.status.clone());
                self.file = Some((w, rules.clone(), f));
            }
        }
        // Socket source. A reload never cuts a connected writer (ARCHITECTURE.md invariant 6):
        // settings reach the running source, which keeps its connections; a new path or mode
        // is bound *before* the old listener stops, so the path is never missing.
        let want_sock = cfg.sources.socket.clone();
        let conn = |w: &SocketSourceConfig| crate::source::socket::ConnSettings {
            rules: rules.clone(),
            idle_timeout: w.idle_timeout,
        };
        match (self.socket.take(), want_sock) {
            (None, None) => {}
            (Some(s), None) => {
                tracing::info!(target: "agent", path = %s.cfg.path.display(), "socket source removed from the config: it stops accepting; connected writers continue");
                let _ = s.control.send(Control::StopListening);
                self.socket_draining.push(s.handle);
            }
            (Some(mut s), Some(w)) => {
                if s.cfg.path != w.path || s.cfg.mode != w.mode {
                    let ours = s.cfg.path == w.path;
                    let listener = match crate::source::socket::bind(&w.path, w.mode, ours) {
                        Ok(l) => l,
                        Err(e) => {
                            // The old socket keeps serving.
                            self.socket = Some(s);
                            return Err(e);
                        }
                    };
                    let _ = s.control.send(Control::Listen {
                        listener,
                        cfg: w.clone(),
                        conn: conn(&w),
                    });
                } else if s.cfg != w || s.rules != rules {
                    let _ = s.control.send(Control::Settings {
                        cfg: w.clone(),
                        conn: conn(&w),
                    });
                }
                s.cfg = w;
                s.rules = rules;
                self.socket = Some(s);
            }
            (None, Some(w)) => {
                let l = crate::source::socket::bind(&w.path, w.mode, false)?;
                let (control, rx) = tokio::sync::mpsc::unbounded_channel();
                let handle = tokio::spawn(crate::source::socket::serve(
                    l,
                    w.clone(),
                    conn(&w),
                    rx,
                    self.queue.clone(),
                    self.status.clone(),
                    self.sources_stop.1.clone(),
                ));
                self.socket = Some(SocketTask {
                    cfg: w,
                    rules,
                    control,
                    handle,
                });
            }
        }
        Ok(())
    }
}

/// Stops a file source and waits for its thread, on the blocking pool: the thread may be in the
/// middle of a queue commit (an `fdatasync`), and a disk stall must never hold a runtime worker
/// (ARCHITECTURE.md, threads and the runtime). The old source is gone when this returns, so a
/// new one never reads the file beside it.
async fn stop_file(f: FileSource) {
    if let Err(e) = tokio::task::spawn_blocking(move || f.stop()).await {
        tracing::error!(target: "agent", "stopping the file source failed: {e}");
    }
}
