//! The queue's settings (`queue:`): where it lives and the bounds it enforces. Plain data,
//! built by `config` (or by [`QueueConfig::with_defaults`] for `--queue-path`).

use std::path::PathBuf;

/// `queue.max_bytes` when the config does not set it.
pub(crate) const DEFAULT_QUEUE_MAX_BYTES: u64 = 1024 * 1024 * 1024;
/// `queue.max_quarantine_entries` when the config does not set it.
pub(crate) const DEFAULT_MAX_QUARANTINE_ENTRIES: u64 = 10_000;

/// `queue:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueConfig {
    pub path: PathBuf,
    pub max_bytes: u64,
    pub max_quarantine_entries: u64,
    pub max_quarantine_bytes: u64,
    /// Bounds of the dead letter: when it is full, rejected events stay queued (delivery holds).
    pub max_dead_letter_entries: u64,
    pub max_dead_letter_bytes: u64,
    /// Free space kept on the queue's filesystem: appends are refused below it (0: none).
    pub min_free_bytes: u64,
}

impl QueueConfig {
    /// The queue at `path` with every other setting at its default (`--queue-path`).
    pub(crate) fn with_defaults(path: PathBuf) -> QueueConfig {
        QueueConfig {
            path,
            max_bytes: DEFAULT_QUEUE_MAX_BYTES,
            max_quarantine_entries: DEFAULT_MAX_QUARANTINE_ENTRIES,
            max_quarantine_bytes: crate::queue::DEFAULT_MAX_QUARANTINE_BYTES,
            max_dead_letter_entries: crate::queue::DEFAULT_MAX_DEAD_LETTER_ENTRIES,
            max_dead_letter_bytes: crate::queue::DEFAULT_MAX_DEAD_LETTER_BYTES,
            min_free_bytes: crate::queue::DEFAULT_MIN_FREE_BYTES,
        }
    }

    /// The bounds the queue enforces.
    pub fn limits(&self) -> crate::queue::Limits {
        crate::queue::Limits {
            max_bytes: self.max_bytes,
            max_quarantine_entries: self.max_quarantine_entries,
            max_quarantine_bytes: self.max_quarantine_bytes,
            max_dead_letter_entries: self.max_dead_letter_entries,
            max_dead_letter_bytes: self.max_dead_letter_bytes,
        }
    }
}
