//! Moved-aside stores: listing and replaying what a store that was moved aside still holds.
//!
//! When the sled store fails to open with evidence of damage ([`Queue::open`]), it is renamed
//! to `<queue.path>/corrupt-<UTC time>/` with its segment files (`segments/`) and a note of
//! when and why (`moved-aside.json`), and an empty queue starts. What it holds is not
//! forgotten: this module reads such a directory **without trusting sled**.
//!
//! 1. Its segment files are scanned frame by frame (see `wal`). Every frame that passes its
//!    CRC is read; a damaged stretch is skipped up to the next frame that passes (counted and
//!    reported with its byte range); a torn tail (a commit cut by a crash, never acknowledged)
//!    is counted. For each commit number the last frame written wins, as at replay. The highest
//!    durable `acked` is the largest of the frames' `acked`, the store's ack file (if its check
//!    passes) and sled's (if it opens); every event above it is pending.
//! 2. sled is opened on a *copy* (a temporary directory inside `queue.path`, removed after: the
//!    store's own files are never written to; a replay only adds its `replay.json`). If it
//!    opens, the copy gets the same write-ahead-log replay as an open (sled lags the frames by
//!    design: the last commits' quarantine entries and dead-letter removals may be only in
//!    them), then its record pointers, dead-letter entries and quarantine entries are taken
//!    too; pending events are deduplicated by sequence number with the frame scan.
//!
//! What could not be read is reported with the reason (`unreadable`): a damaged stretch of a
//! segment, a record that does not decode, an index that does not open. Nothing here panics on
//! what it reads.
//!
//! [`replay`] re-queues the pending events at the live queue's tail, in sequence order, then the
//! dead-letter entries (as `dead-letter replay --all` would: a SIEM that still rejects one puts
//! it back in the live dead letter, with the new reason), and copies the quarantine entries
//! into the live quarantine (invalid input: kept for inspection, never sent). It works in
//! chunks through the ordinary commit path; after each durable chunk, `replay.json` in the
//! moved-aside directory records how far it got, so a replay stopped by a full queue or a crash
//! resumes there, and a finished one is marked done there and re-queues nothing again.
//! Delivery is **at least once**: a crash between a chunk's commit and its progress note
//! re-queues that chunk (at most [`CHUNK_BYTES`]) once more.
//!
//! Parts: `frames.rs` (the segment scan, step 1), `read.rs` (a store opened for reading: its
//! notes, the ack file, sled on a copy, step 2, and each record read back checked), `replay.rs`
//! (the chunked, resumable re-queue). This file holds the listing and the progress note.

use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;

use super::*;

mod frames;
mod read;
mod replay;
#[cfg(test)]
mod tests;

use read::{count, open, Opened};
pub use replay::replay;

/// Name prefix of a moved-aside store in `queue.path`.
pub const ASIDE_PREFIX: &str = "corrupt-";
/// When and why the store was moved aside (written by `Queue::open`).
pub(super) const MOVED_NOTE: &str = "moved-aside.json";
/// How far a replay got, and whether it finished.
pub const PROGRESS_FILE: &str = "replay.json";
/// A replay commits at most this many event bytes at a time (and records its progress after).
pub const CHUNK_BYTES: usize = 4 * 1024 * 1024;
const CHUNK_EVENTS: usize = 10_000;
/// The smallest frame body (kind 1): kind, six u64, five i64 deltas and two counts.
const MIN_BODY: u64 = 1 + 6 * 8 + 5 * 8 + 4 + 4;
/// sled entries are read this many (or [`CHUNK_BYTES`]) at a time.
const SLED_PAGE: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum AsideError {
    #[error("no moved-aside store named {name:?} in {root}; `sendauth-siem aside list` shows the names")]
    NotFound { name: String, root: PathBuf },
    #[error("cannot read {path}: {message}; check that queue.path is readable by this user")]
    Io { path: PathBuf, message: String },
    #[error("cannot record the replay's progress in {path}: {message}; the last chunk re-queued stays queued and running the replay again re-queues it once more; fix the cause (free space, permissions) first")]
    Progress { path: PathBuf, message: String },
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> AsideError {
    AsideError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// How far a replay got (`replay.json`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Pending events with sequence numbers up to this one are re-queued.
    pub pending_after_seq: u64,
    /// Dead-letter entries with ids up to this one are re-queued.
    pub dead_letter_after_id: u64,
    /// Quarantine entries with ids up to this one are copied.
    pub quarantine_after_id: u64,
    pub requeued_events: u64,
    pub requeued_dead_letters: u64,
    pub copied_quarantine: u64,
    /// When the replay finished; a finished replay is not run again.
    pub done_at: Option<String>,
}

/// What a moved-aside store holds, as far as it can be read.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AsideReport {
    pub name: String,
    pub path: PathBuf,
    /// When it was moved aside (its note, else its name).
    pub moved_at: Option<String>,
    /// Why, if recorded.
    pub reason: Option<String>,
    /// The highest durable acknowledgement found: events up to it had left the queue.
    pub acked: u64,
    /// Recoverable pending events (above `acked`), and their bytes.
    pub pending_events: u64,
    pub pending_bytes: u64,
    /// Recoverable dead-letter and quarantine entries (from the store's index only).
    pub dead_letters: u64,
    pub quarantine: u64,
    /// Frames read from the segment files.
    pub frames: u64,
    /// Damaged stretches of segment files that were skipped.
    pub damaged_stretches: u64,
    /// Commits cut by a crash at the end of a segment (never acknowledged: nothing lost).
    pub torn_tails: u64,
    /// Events known to exist (by their pointer or frame) whose bytes could not be read.
    pub damaged_events: u64,
    /// Whether the store's sled index opened (on a copy), or why not.
    pub index: String,
    /// What could not be read, each with the reason.
    pub unreadable: Vec<String>,
    pub progress: Progress,
}

/// What a replay did (or, with `dry_run`, would do).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReplayOutcome {
    pub dry_run: bool,
    /// The store had been replayed before: nothing was done.
    pub already_replayed: bool,
    pub requeued_events: u64,
    pub requeued_dead_letters: u64,
    pub copied_quarantine: u64,
    /// Why the replay stopped before the end (it resumes there when run again).
    pub stopped: Option<String>,
    pub report: AsideReport,
}

/// The names of the moved-aside stores under `root` that have not been replayed, sorted. Reads
/// only the directory and each store's progress note (cheap: for status).
pub fn unreplayed(root: &Path) -> Vec<String> {
    let mut out: Vec<String> = aside_dirs(root)
        .unwrap_or_default()
        .into_iter()
        .filter(|(_, dir)| read_progress(dir).done_at.is_none())
        .map(|(name, _)| name)
        .collect();
    out.sort();
    out
}

fn aside_dirs(root: &Path) -> Result<Vec<(String, PathBuf)>, AsideError> {
    let rd = match std::fs::read_dir(root) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(root, e)),
    };
    let mut out = Vec::new();
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(ASIDE_PREFIX) && e.file_type().is_ok_and(|t| t.is_dir()) {
            out.push((name, e.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// Every moved-aside store under `root` (`queue.path`), scanned: what each holds and what
/// could not be read. Changes nothing.
pub fn list(root: &Path) -> Result<Vec<AsideReport>, AsideError> {
    let mut out = Vec::new();
    for (_, dir) in aside_dirs(root)? {
        let mut o = open(root, &dir);
        count(&mut o);
        out.push(o.report);
    }
    Ok(out)
}

/// The moved-aside store `name` under `root`. Only a plain name that starts with
/// [`ASIDE_PREFIX`] is accepted.
fn resolve(root: &Path, name: &str) -> Result<PathBuf, AsideError> {
    let plain = !name.is_empty() && !name.contains('/') && name != "." && name != "..";
    let dir = root.join(name);
    if !plain || !name.starts_with(ASIDE_PREFIX) || !dir.is_dir() {
        return Err(AsideError::NotFound {
            name: name.to_string(),
            root: root.to_path_buf(),
        });
    }
    Ok(dir)
}

/// Scans one moved-aside store `name` under `root`. Changes nothing.
pub fn inspect(root: &Path, name: &str) -> Result<AsideReport, AsideError> {
    let dir = resolve(root, name)?;
    let mut o = open(root, &dir);
    count(&mut o);
    Ok(o.report)
}

#[derive(Deserialize)]
struct MovedNote {
    at: String,
    reason: String,
}

/// Records beside a store just moved aside when and why (best effort: the name says when).
pub(super) fn note_moved(dir: &Path, reason: &str) {
    let note = json_note(reason);
    if let Err(e) = std::fs::write(dir.join(MOVED_NOTE), note) {
        tracing::warn!(target: "queue", "cannot write {} in {}: {e}", MOVED_NOTE, dir.display());
    }
}

fn json_note(reason: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({"at": now_rfc3339(), "reason": reason})).unwrap_or_default()
}

fn read_progress(dir: &Path) -> Progress {
    std::fs::read(dir.join(PROGRESS_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Writes `replay.json` durably: a temporary file, `fsync`, rename, `fsync` of the directory.
fn write_progress(dir: &Path, p: &Progress) -> Result<(), AsideError> {
    let path = dir.join(PROGRESS_FILE);
    let err = |e: std::io::Error| AsideError::Progress {
        path: path.clone(),
        message: e.to_string(),
    };
    let tmp = dir.join(format!(".{PROGRESS_FILE}.tmp"));
    let body = serde_json::to_vec_pretty(p).unwrap_or_default();
    let mut f = File::create(&tmp).map_err(err)?;
    std::io::Write::write_all(&mut f, &body).map_err(err)?;
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, &path).map_err(err)?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(err)?;
    count_sync();
    Ok(())
}
