//! The agent's settings as one value: one field per stage, each of a type its stage owns
//! (`sink::settings`, `source::settings`, `queue::settings`, `transform`, `server`), plus the
//! process's log settings. `config` builds it from the YAML and `reload` publishes it on a watch
//! channel; the stages read their own field. Nothing here knows YAML.

use std::path::PathBuf;

use crate::queue::settings::QueueConfig;
use crate::server::StatusConfig;
use crate::sink::settings::{DeliveryConfig, SiemConfig};
use crate::source::settings::SourcesConfig;
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
    pub inline_secrets: Vec<String>,
    /// Files the secrets were read from (`*_file` keys): the reloader re-reads the config when
    /// one changes (a rotated Kubernetes Secret is updated in place).
    pub secret_files: Vec<PathBuf>,
}
