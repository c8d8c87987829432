//! The agent's settings as one value: one field per stage, each of a type its stage owns
//! (`sink::settings`, `source::settings`, `queue::settings`, `transform`, `server`), plus the
//! process's log settings. `config` builds it from the YAML and `reload` publishes it on a watch
//! channel; the stages read their own field. Nothing here knows YAML.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::watch;

use crate::fd_limit::Demand;
use crate::queue::settings::QueueConfig;
use crate::server::StatusConfig;
use crate::sink::settings::{DeliveryConfig, SiemConfig};
use crate::source::settings::SourcesConfig;
use crate::source::IntakeRules;
use crate::transform::Transform;

/// `log.format`: human-readable lines or one JSON object per line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// `log:`, applied by the binary when it installs its subscriber (and the level on reload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    pub format: LogFormat,
    pub level: String,
}

/// A whole, valid config: what `config::Config::load` returns and a reload publishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub siem: SiemConfig,
    pub sources: SourcesConfig,
    pub queue: QueueConfig,
    pub delivery: DeliveryConfig,
    pub status: StatusConfig,
    pub log: LogConfig,
    /// Privacy rules applied to each event before it is queued (`None`: events pass unchanged).
    pub transform: Option<Transform>,
    /// Dotted keys of the secrets written literally in the file, e.g. `siem.auth.header`.
    pub(crate) inline_secrets: Vec<String>,
    /// Files the secrets were read from (`*_file` keys): the reloader re-reads the config when
    /// one changes (a rotated Kubernetes Secret is updated in place).
    pub(crate) secret_files: Vec<PathBuf>,
}

impl Config {
    /// What intake checks and transforms each line with (`sources.max_event_bytes`, the
    /// privacy transform): the sources' part of the settings.
    pub(crate) fn intake_rules(&self) -> IntakeRules {
        IntakeRules {
            max_event_bytes: self.sources.max_event_bytes,
            transform: self.transform.clone().map(std::sync::Arc::new),
        }
    }

    /// What the config asks for that takes file descriptors (see `fd_limit`).
    pub(crate) fn fd_demand(&self) -> Demand {
        Demand {
            socket_clients: self.sources.socket.as_ref().map(|s| s.max_connections),
            max_in_flight: self.delivery.max_in_flight,
        }
    }
}

/// A receiver of one stage's part of the settings (`part`), following the whole config's
/// channel `rx`: it is marked changed only when that part changed, so a stage never wakes for
/// another stage's edit, and the stage never names the whole `Config`. The forwarding task
/// waits on the channel (nothing runs at idle) and ends when either side is gone. Call inside
/// the runtime.
pub fn follow<T>(mut rx: watch::Receiver<Arc<Config>>, part: fn(&Config) -> T) -> watch::Receiver<T>
where
    T: PartialEq + Send + Sync + 'static,
{
    let (tx, out) = watch::channel(part(&rx.borrow_and_update()));
    tokio::spawn(async move {
        loop {
            tokio::select! {
                r = rx.changed() => if r.is_err() { return },
                _ = tx.closed() => return,
            }
            let next = part(&rx.borrow_and_update());
            tx.send_if_modified(|cur| {
                let changed = *cur != next;
                if changed {
                    *cur = next;
                }
                changed
            });
        }
    });
    out
}
