//! A read-only view of the queue, for observers (the status hub).
//!
//! The status hub reports the queue's figures (pending events and bytes, oldest age, the dead
//! letter and quarantine counts, bounds, incidents) but must never change the queue: it only
//! observes (ARCHITECTURE.md, `status.rs`). [`QueueView`] shares the queue's state like a
//! [`Queue`] clone does, and offers only the methods that read it, so the hub cannot write
//! into the store even by mistake: the compiler checks it.

use std::path::Path;
use std::time::Duration;

use super::{Counts, Limits, Queue};

/// A handle that can read the queue's figures and nothing else. Cheap to clone.
#[derive(Clone)]
pub struct QueueView {
    queue: Queue,
}

impl Queue {
    /// A read-only view sharing this queue's state.
    pub fn view(&self) -> QueueView {
        QueueView { queue: self.clone() }
    }
}

impl QueueView {
    /// `queue.path`.
    pub fn root(&self) -> &Path {
        self.queue.root()
    }

    pub fn counts(&self) -> Counts {
        self.queue.counts()
    }

    pub fn limits(&self) -> Limits {
        self.queue.limits()
    }

    pub fn max_bytes(&self) -> u64 {
        self.queue.max_bytes()
    }

    /// Whether `extra` more bytes of events would fit.
    pub(crate) fn has_room(&self, extra: u64) -> bool {
        self.queue.has_room(extra)
    }

    pub(crate) fn oldest_pending_age(&self) -> Option<Duration> {
        self.queue.oldest_pending_age()
    }

    /// Damage found in the queue, if any.
    pub fn incident(&self) -> Option<String> {
        self.queue.incident()
    }

    /// Why appends are refused for want of storage, if they are.
    pub fn storage_error(&self) -> Option<String> {
        self.queue.storage_error()
    }

    /// A value older versions kept in the queue's meta keys (the status hub's state before it
    /// had its own file): read once, at an upgrade, never written.
    pub(crate) fn legacy_meta(&self, name: &str) -> Option<Vec<u8>> {
        self.queue.get_meta(name)
    }
}
