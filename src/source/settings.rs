//! The sources' settings (`sources:`): the JSONL file to tail, the Unix socket to listen on,
//! and the largest event either accepts. Plain data, built by `config`.

use std::path::PathBuf;
use std::time::Duration;

/// `sources.file.start_at`: where a file seen for the first time is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    Beginning,
    End,
}

/// `sources.file`: the JSONL file to tail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSourceConfig {
    pub path: PathBuf,
    pub start_at: StartAt,
    pub poll_interval: Duration,
}

/// `sources.socket`: the Unix socket writers connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketSourceConfig {
    pub path: PathBuf,
    pub mode: u32,
    pub max_connections: usize,
    pub idle_timeout: Duration,
}

/// `sources:`: at least one of the two, and the largest event either accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcesConfig {
    pub file: Option<FileSourceConfig>,
    pub socket: Option<SocketSourceConfig>,
    pub max_event_bytes: usize,
}
