//! The file source's checkpoint: which file (device + inode + a fingerprint of its first bytes)
//! and how far (offset just past the last complete line, and that line's number).
//!
//! It is written in the same queue batch as the events it covers, so after any crash the queue
//! and the checkpoint agree: a restart neither skips nor re-reads lines.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub dev: u64,
    pub(crate) ino: u64,
    pub offset: u64,
    pub line: u64,
    /// Fingerprint of the first `head_len` bytes (detects inode reuse and copytruncate).
    pub(crate) head_hash: u64,
    pub(crate) head_len: u32,
}

impl Checkpoint {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn decode(b: &[u8]) -> Option<Checkpoint> {
        serde_json::from_slice(b).ok()
    }
}

/// The queue key of a file source's checkpoint: one per configured path.
pub fn source_id(path: &std::path::Path) -> Vec<u8> {
    let mut id = b"file:".to_vec();
    id.extend_from_slice(path.as_os_str().as_encoded_bytes());
    id
}
