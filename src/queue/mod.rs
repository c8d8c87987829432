//! The durable queue: every accepted event, in order, until the SIEM has it.
//!
//! Storage is sled 0.34 for the index and the small state, plus append-only *segment files* for
//! the event bytes; both are kept behind this one module so the engine stays a local decision.
//! One sled tree holds everything, by key prefix:
//!
//! | key | value |
//! |---|---|
//! | `e` + first seq (u64 BE) | a *record pointer* (v2): where a record of events lies in a segment file; or, in stores written before segments, the record itself (v1) |
//! | `c` + source id | a source checkpoint (opaque bytes), written in the same batch as its events' pointers |
//! | `q` + id (u64 BE) | a quarantined line: header JSON + the line verbatim |
//! | `d` + id (u64 BE) | a dead-lettered event: header JSON + the event verbatim |
//! | `m` + name | counters and persisted status, updated in the same batch as what they count |
//!
//! Record format: `[version u8 = 1][accepted_at_ms u64][count u32]` then `count` times
//! `[len u32][bytes]`. Event `i` of the record keyed `s` has sequence number `s + i`.
//! Pointer format: `[version u8 = 2][accepted_at_ms u64][count u32][segment u64][offset u64]
//! [len u32][payload bytes u64]`; the record lies at `offset` in `segments/<segment>.seg`, a file
//! named (zero-padded) after the first sequence number it was created for.
//!
//! Why records: sled manages one event per key at only thousands of events/s with a large
//! memory footprint; records of many events reach hundreds of thousands per second.
//! Why segment files: sled keeps the values of the pages it has written in memory, and its
//! cache limit does not bound that (with 96 KiB records in the tree, a 467 MB backlog held
//! 364 MB of RSS); its IO buffers also cost a thread wake-up per 512 KiB written. Records
//! in segment files cost sled 41 bytes each and are read back with `pread` (the OS page cache
//! holds them, not our heap), and a single event of any size needs no sled blob file.
//!
//! Commit (one group commit, see [`wal`]): one frame with the records, their checkpoints,
//! quarantine entries, counter deltas and the current `acked` is appended to the current
//! segment in one `write`, and the segment is `fdatasync`ed: the only disk wait. The commit
//! then changes memory only (the [`overlay`], which readers see); sled gets it lazily, in one
//! consistent batch per drain, and at open the frames sled does not have (after its
//! `wal_commit`) are replayed into it. A crash before the `fdatasync`
//! completes leaves a torn frame at a segment's end, which replay ignores; after a restart the
//! writer starts a new segment, so those bytes are never referenced.
//!
//! Which `fdatasync` covers which promise:
//!
//! | promise | covered by |
//! |---|---|
//! | an appended event (socket answer, file checkpoint) survives a power loss | the segment's `fdatasync` of its frame, before `append` returns |
//! | a checkpoint never runs ahead of its events | same frame, same `fdatasync` |
//! | an acknowledgement survives a process crash | the ack file's `pwrite` (OS page cache) before `ack` returns |
//! | an acknowledgement survives a power loss | the next commit's frame (it carries `acked`), or the sled flush when the committer settles ([`SETTLE`] after the last change) |
//! | a dead letter is never lost | sled flush + `fdatasync` of sled's log, with the `acked` that removes it, before the ack file or any frame records that `acked` |
//! | a segment is deleted only when nothing needs it | sled flush + `fdatasync` (frames applied and `acked` durable) before the unlink |
//! | a new segment file's name survives a power loss | `fsync` of `segments/` after creating it |
//!
//! sled is drained and flushed (its `flush`, then `fdatasync` of its log) only: when the
//! committer settles after activity, every [`FLUSH_EVERY`] or 256 MiB of commits under load,
//! after opening, before a segment is deleted, for dead letters and operator commands, and at
//! close. At idle nothing runs (ARCHITECTURE.md invariant 13): the committer blocks in `recv`,
//! and sled's own periodic flusher is off. (sled's seven pool threads still wake once a second each: sled 0.34's thread pool.)
//!
//! Group commit adapts to the rate: a request after a quiet spell is committed at once; one
//! that follows the previous commit within [`COMMIT_GAP`] waits out the gap while others join
//! it, unless its group is already [`COMMIT_EAGER_BYTES`] (bulk), so at a trickle there are at
//! most 1/[`COMMIT_GAP`] `fdatasync`s per second, and in bulk commits stay large.
//!
//! A segment file is deleted only once every sequence number in it is acknowledged *and* that
//! acknowledgement is durable.
//!
//! Acks: an ack changes memory (the overlay: records leave it, or are removed from sled at the
//! next drain; counters; `acked`) and writes `acked` to `store/acked` (16 bytes, `pwrite`, no
//! sync), which `open`
//! re-applies when sled's copy is older, as it does the `acked` of the newest replayed frame:
//! a killed process resends at most the requests in flight; a power loss may resend what was
//! acked since the last commit or settle.
//!
//! Invariants:
//! - sequence numbers only grow; none is reused, even across restarts (`m next_seq`);
//! - `append` returns only once the frame holding its records, checkpoint and quarantine
//!   entries is `fdatasync`ed (ARCHITECTURE.md invariant 1) (sled's own `flush` is `sync_file_range`, which is not power-loss
//!   safe, and is never what an append waits for);
//! - every frame reaches sled exactly once: the batch that applies it records its number
//!   (`wal_commit`) and position (`wal_pos`), and replay applies only frames after that number;
//! - sled always holds one consistent snapshot: every frame up to `wal_commit` and every ack up
//!   to its `acked`, with the counters of exactly that state (see [`overlay`]);
//! - readers never see an event before it is durable (`durable_next`);
//! - an event leaves the queue only through [`Queue::ack`]: acknowledged by the SIEM, or moved to
//!   the dead letter in the same atomic batch (invariant 2);
//! - counters (`pending`, bytes, dead-letter and quarantine counts) are kept in `m` keys in the
//!   same batches as the data they count: nothing ever scans the tree to count (`Tree::len`
//!   walks every key; invariant 11);
//! - memory does not grow with the backlog: sled holds pointers, reads are a batch at a time
//!   (invariant 7);
//! - when the queue drains after a large backlog, the database is rewritten into a fresh
//!   directory (sled never returns disk space) and swapped in;
//! - a database that fails to open is an incident, not a crash loop: it is moved aside (with
//!   its segment files), a new one is started, and the incident is reported in status and the log;
//!   what it holds is listed and replayed from its segment files (see [`aside`]), never forgotten
//!   (invariant 12);
//! - the disk never fills under sled: an append is refused (like a full queue, with a clear
//!   "disk is full" error) when the filesystem would keep less than `queue.min_free_bytes`
//!   free, and accepted again as soon as there is room. Acks may use that reserve, so the
//!   queue can always drain; dead letters may not (nor replays): a rejected event that does not
//!   fit stays queued, as when the dead letter reaches `queue.max_dead_letter_*`
//!   ([`QueueError::DeadLetterFull`]), so a SIEM rejecting everything cannot fill the disk
//!   (invariant 15);
//! - the dead letter and the quarantine are bounded in entries and bytes (`m dl_bytes`,
//!   `m q_bytes`, kept like the other counters); they are listed, replayed and purged a page at
//!   a time, each page of a replay or purge one frame and one sled flush (atomic; the model test
//!   crashes inside dead-letter replays and purges and quarantine purges). The quarantine is
//!   purged only from its oldest entry on, so its live ids stay consecutive (eviction counts on
//!   it);
//! - an I/O error inside sled is fatal for this process: sled 0.34 fails every later write
//!   once one failed, and dropping or reopening the poisoned handle in-process can hang or let
//!   its background threads write over the reopened store (found by the disk campaign). The
//!   queue stops writing, reports the error, and [`Queue::fatal`] resolves so the agent exits
//!   for its service manager to restart it; a restart reopens what was fsynced, like after a
//!   crash. (A failed write to our own segment file is not fatal: that commit is refused and
//!   the next one starts a new segment.)

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

mod ack;
pub mod aside;
mod checked_file;
mod commit;
mod entries;
mod index;
mod open;
mod overlay;
mod read;
mod reclaim;
mod record;
mod segments;
pub mod settings;
mod storage;
#[cfg(test)]
mod tests;
mod view;
mod wal;

use checked_file::*;
use commit::*;
use entries::*;
pub use entries::{DeadLetterMeta, Entry, QuarantineMeta, QUARANTINE_KEEP_BYTES};
use index::*;
use overlay::*;
use record::*;
use segments::*;
pub use storage::{RealStorage, Storage, StoredFile};
pub use view::QueueView;

/// Default `queue.min_free_bytes`: free space kept on the queue's filesystem.
pub const DEFAULT_MIN_FREE_BYTES: u64 = 64 * 1024 * 1024;
/// Default `queue.max_quarantine_bytes`.
pub const DEFAULT_MAX_QUARANTINE_BYTES: u64 = 32 * 1024 * 1024;
/// Default `queue.max_dead_letter_entries`.
pub const DEFAULT_MAX_DEAD_LETTER_ENTRIES: u64 = 100_000;
/// Default `queue.max_dead_letter_bytes`. sled keeps the values it has written in memory, so
/// this also bounds what a full dead letter costs in memory (docs/BENCHMARKS.md).
pub const DEFAULT_MAX_DEAD_LETTER_BYTES: u64 = 32 * 1024 * 1024;
#[derive(Debug, Clone, thiserror::Error)]
pub enum QueueError {
    #[error("queue full: {pending_bytes} bytes pending, queue.max_bytes is {max_bytes}; the SIEM is not keeping up or is unreachable (see `sendauth-siem status`)")]
    Full { pending_bytes: u64, max_bytes: u64 },
    #[error("queue storage at {path} failed: {message}; check free disk space and permissions of queue.path")]
    Storage { path: PathBuf, message: String },
    #[error(
        "queue at {0} is in use by another process (a running sendauth-siem?); stop it, or use the admin socket commands while it runs"
    )]
    Locked(PathBuf),
    #[error("the queue is shutting down")]
    Closed,
    /// The store is damaged (sled reports corruption, or panics opening it): evidence enough to
    /// move it aside. Any other error at open (a full disk, permissions, an I/O error) is not.
    #[error("queue database at {path} is damaged: {message}")]
    Corrupt { path: PathBuf, message: String },
    /// Rejected events could not be moved to the dead letter: it is at a bound, or the disk
    /// reserve would be used. Nothing changed: the events stay in the queue.
    #[error("the dead letter is full ({why}): the SIEM rejected event {seq}, which stays in the queue, and delivery holds at it; list the dead letter (`sendauth-siem dead-letter list`), then replay or purge entries, or raise the limit")]
    DeadLetterFull { why: String, seq: u64 },
    /// A dead-letter command named ids that are not in the dead letter; nothing was changed.
    #[error("no dead-letter entry with id {}; nothing was changed (see `sendauth-siem dead-letter list` for the ids)", join_ids(.0))]
    NoSuchDeadLetter(Vec<u64>),
}

fn join_ids(ids: &[u64]) -> String {
    ids.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
}

/// One queued event as the sink sees it.
#[derive(Debug, Clone)]
pub struct QueuedEvent {
    pub seq: u64,
    /// The event's JSON line, verbatim.
    pub data: Bytes,
    pub accepted_at_ms: u64,
}

/// Counters, as persisted and as shown in status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub pending_events: u64,
    pub pending_bytes: u64,
    pub dead_letter: u64,
    pub quarantine: u64,
    pub quarantine_evicted: u64,
    /// Bytes the dead letter and the quarantine keep (their entries as stored).
    pub dead_letter_bytes: u64,
    pub quarantine_bytes: u64,
}

/// The queue's bounds (`queue.*` in the config); see [`Queue::set_limits`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Pending events, in bytes: appends beyond it are refused (queue full).
    pub max_bytes: u64,
    /// Quarantined lines: the oldest are evicted (and counted) beyond either bound.
    pub max_quarantine_entries: u64,
    pub max_quarantine_bytes: u64,
    /// Dead letters: beyond either bound (or the disk reserve), a rejected event stays in the
    /// queue and delivery holds at it until an operator makes room ([`QueueError::DeadLetterFull`]).
    pub max_dead_letter_entries: u64,
    pub max_dead_letter_bytes: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_bytes: 1 << 30,
            max_quarantine_entries: 10_000,
            max_quarantine_bytes: DEFAULT_MAX_QUARANTINE_BYTES,
            max_dead_letter_entries: DEFAULT_MAX_DEAD_LETTER_ENTRIES,
            max_dead_letter_bytes: DEFAULT_MAX_DEAD_LETTER_BYTES,
        }
    }
}

/// One source's request to commit a chunk of input.
#[derive(Debug, Clone)]
pub struct AppendRequest {
    pub events: Vec<Bytes>,
    pub quarantine: Vec<(QuarantineMeta, Vec<u8>)>,
    /// `(source id, checkpoint bytes)`, stored in the same batch.
    pub checkpoint: Option<(Vec<u8>, Vec<u8>)>,
}

/// What an append produced: the sequence numbers given to the events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub first_seq: u64,
    pub count: u64,
}

struct State {
    next_seq: u64,
    acked: u64,
    counts: Counts,
    q_next: u64,
    d_next: u64,
    /// Number of the last commit applied (to `overlay` or sled; see `wal`).
    commits: u64,
    /// What sled does not have yet (see [`overlay`]).
    overlay: Overlay,
}

impl State {
    /// The state sled holds (its `m` keys), with an empty overlay.
    fn from_sled(db: &sled::Db) -> sled::Result<State> {
        let g = |n: &str| db.get(meta_key(n)).map(u64_of);
        Ok(State {
            next_seq: g("next_seq")?.max(1),
            acked: g("acked")?,
            counts: Counts {
                pending_events: g("pending_events")?,
                pending_bytes: g("pending_bytes")?,
                dead_letter: g("dl_count")?,
                quarantine: g("q_count")?,
                quarantine_evicted: g("q_evicted")?,
                dead_letter_bytes: g("dl_bytes")?,
                quarantine_bytes: g("q_bytes")?,
            },
            q_next: g("q_next")?.max(1),
            d_next: g("d_next")?.max(1),
            commits: g("wal_commit")?,
            overlay: Overlay::default(),
        })
    }
}

/// `fdatasync`/`fsync` calls made by the queue since the process started (exposed in /metrics:
/// the cost of durability at a steady rate is counted in these).
static SYNCS: AtomicU64 = AtomicU64::new(0);

/// Number of `fdatasync`/`fsync`/`syncfs` calls the queue has made in this process.
pub fn fdatasyncs() -> u64 {
    SYNCS.load(Ordering::Relaxed)
}

fn count_sync() {
    SYNCS.fetch_add(1, Ordering::Relaxed);
}

/// `fdatasync` of `file` (sled's log), counted.
fn sync_data(file: &File) -> std::io::Result<()> {
    count_sync();
    file.sync_data()
}

struct Inner {
    root: PathBuf,
    /// `queue.path`'s device and inode at open: a commit checks the directory is still there.
    root_id: Option<(u64, u64)>,
    store: RwLock<Store>,
    /// Lock order: `store`, then `segments`, then `state`.
    segments: Mutex<SegmentWriter>,
    readers: SegmentReaders,
    state: Mutex<State>,
    /// One past the last durable sequence number; readers stop before it.
    durable_next: AtomicU64,
    limits: Mutex<Limits>,
    appended: tokio::sync::Notify,
    incident: Mutex<Option<String>>,
    /// How far the queue has got, kept beside the store (see [`checked_file`]).
    witness: CheckedFile,
    /// Where the queue's own files are written and synced (see [`storage`]).
    storage: Arc<dyn Storage>,
    /// Set by an I/O error inside sled; never cleared (see the module docs).
    failed: Mutex<Option<QueueError>>,
    fatal: tokio::sync::Notify,
    /// Appends are refused when the filesystem would keep less than this free.
    min_free: AtomicU64,
    /// The last "disk is full" refusal, shown in status until an append succeeds.
    disk_full: Mutex<Option<String>>,
    committer: Mutex<Option<mpsc::Sender<Work>>>,
    /// [`COMMIT_GAP`], in microseconds; see [`Queue::set_commit_gap`].
    commit_gap_us: AtomicU64,
    /// sled holds changes that no flush has made durable yet (see [`settle`]).
    sled_dirty: std::sync::atomic::AtomicBool,
    committer_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    last_reclaim: Mutex<Instant>,
}

/// The queue handle; cheap to clone.
#[derive(Clone)]
pub struct Queue {
    inner: Arc<Inner>,
}

fn key(prefix: u8, n: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = prefix;
    k[1..].copy_from_slice(&n.to_be_bytes());
    k
}

fn meta_key(name: &str) -> Vec<u8> {
    let mut k = vec![b'm'];
    k.extend_from_slice(name.as_bytes());
    k
}

fn u64_of(v: Option<sled::IVec>) -> u64 {
    v.and_then(|v| v.as_ref().try_into().ok().map(u64::from_be_bytes)).unwrap_or(0)
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn storage_err(path: &Path, e: impl std::fmt::Display) -> QueueError {
    let msg = e.to_string();
    let msg = if msg.contains("No space left") || msg.contains("os error 28") {
        format!("{msg} (the disk is full)")
    } else {
        msg
    };
    QueueError::Storage {
        path: path.to_path_buf(),
        message: msg,
    }
}

/// Records an I/O error inside sled: no more writes through this handle (see the module docs).
fn note_failure(inner: &Inner, e: &QueueError) {
    let mut f = inner.failed.lock().unwrap();
    if f.is_none() {
        tracing::error!(target: "queue", "{e}; nothing more is accepted, and the agent exits so that its service manager restarts it");
        *f = Some(e.clone());
        inner.fatal.notify_waiters();
        inner.fatal.notify_one();
    }
}

fn dir_id(dir: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(dir).ok().map(|m| (m.dev(), m.ino()))
}

/// Adds `msg` to the incident reported so far (the first cause stays first).
pub(super) fn add_incident(incident: &mut Option<String>, msg: Option<String>) {
    if let Some(msg) = msg {
        *incident = Some(match incident.take() {
            Some(prev) => format!("{prev}; {msg}"),
            None => msg,
        });
    }
}

/// Whether `queue.path` is still the directory opened: removed or replaced under a running
/// agent, its files live on only through open handles and vanish at exit, so accepting more
/// would accept into nothing. Fatal, like an I/O error inside sled.
fn check_root(inner: &Inner) -> Result<(), QueueError> {
    if inner.root_id.is_none() || dir_id(&inner.root) == inner.root_id {
        return Ok(());
    }
    let e = QueueError::Storage {
        path: inner.root.clone(),
        message: "the queue directory was removed or replaced while the agent was running; nothing more is accepted and the agent exits (restore the directory, or let the service manager start the agent on a new queue)".into(),
    };
    note_failure(inner, &e);
    Err(e)
}

/// Refuses writes once the store has failed.
fn check_failed(inner: &Inner) -> Result<(), QueueError> {
    match &*inner.failed.lock().unwrap() {
        Some(e) => Err(e.clone()),
        None => Ok(()),
    }
}

/// Bytes available to unprivileged users on the filesystem holding `dir`.
fn free_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs fills the zeroed struct; the path is a valid NUL-terminated string.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    (rc == 0).then(|| st.f_bavail as u64 * st.f_frsize as u64)
}

/// Refuses an append of `bytes` when it would leave less than `queue.min_free_bytes` free.
fn check_disk_room(inner: &Inner, dir: &Path, bytes: u64) -> Result<(), QueueError> {
    let min_free = inner.min_free.load(Ordering::Relaxed);
    if min_free == 0 {
        return Ok(());
    }
    let Some(free) = free_bytes(dir) else { return Ok(()) };
    // Records go to a segment file and a pointer to sled (whose log costs about as much again
    // until it is cleaned). Once refused, wait for some slack before accepting again, so
    // writers do not flap at the threshold.
    let slack = if inner.disk_full.lock().unwrap().is_some() {
        (min_free / 4).max(1024 * 1024)
    } else {
        0
    };
    if free < min_free.saturating_add(bytes.saturating_mul(2)).saturating_add(slack) {
        let e = QueueError::Storage {
            path: dir.to_path_buf(),
            message: format!(
                "the disk is full: {} MiB free, and queue.min_free_bytes keeps {} MiB in reserve; free some space (events resume by themselves) or move queue.path",
                free / (1024 * 1024),
                min_free / (1024 * 1024)
            ),
        };
        let mut df = inner.disk_full.lock().unwrap();
        if df.is_none() {
            tracing::error!(target: "queue", "{e}; the file source pauses and socket writers are refused until there is room");
        }
        *df = Some(e.to_string());
        return Err(e);
    }
    Ok(())
}

impl Queue {
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// Reports (once per record) a record whose events cannot be read and are skipped.
    fn skip_damaged(&self, first_seq: u64, why: &str) {
        let mut inc = self.inner.incident.lock().unwrap();
        let tag = format!("[record {first_seq}]");
        if inc.as_deref().is_some_and(|i| i.contains(&tag)) {
            return;
        }
        let msg = format!(
            "{tag} the queue's segment data for the events from sequence {first_seq} is damaged ({why}); those events cannot be forwarded and were skipped, later events are delivered"
        );
        tracing::error!(target: "queue", "{msg}");
        add_incident(&mut inc, Some(msg));
    }

    /// The incident found at open, if the database had to be moved aside.
    pub fn incident(&self) -> Option<String> {
        self.inner.incident.lock().unwrap().clone()
    }

    /// Why appends are refused for want of storage: the disk is full, or sled failed (then the
    /// agent is exiting), if so.
    pub fn storage_error(&self) -> Option<String> {
        if let Some(e) = &*self.inner.failed.lock().unwrap() {
            return Some(e.to_string());
        }
        self.inner.disk_full.lock().unwrap().clone()
    }

    /// Resolves once the store has failed for good (an I/O error inside sled); the caller should
    /// exit so that the process is restarted. See the module docs.
    pub async fn fatal(&self) -> String {
        loop {
            let notified = self.inner.fatal.notified();
            if let Some(e) = &*self.inner.failed.lock().unwrap() {
                return e.to_string();
            }
            notified.await;
        }
    }

    /// Sets the group-commit gap (default [`COMMIT_GAP`]): how long a commit that follows the
    /// previous one closely waits for others to join it. Zero commits every request at once
    /// (tests that append one request at a time).
    pub fn set_commit_gap(&self, gap: Duration) {
        self.inner.commit_gap_us.store(gap.as_micros() as u64, Ordering::Relaxed);
    }

    /// Sets `queue.min_free_bytes` (0: no reserve).
    pub fn set_min_free(&self, bytes: u64) {
        self.inner.min_free.store(bytes, Ordering::Relaxed);
    }

    /// Sets the queue's bounds (a config reload): they apply to the next commit or ack.
    pub fn set_limits(&self, limits: Limits) {
        *self.inner.limits.lock().unwrap() = limits;
    }

    pub fn limits(&self) -> Limits {
        *self.inner.limits.lock().unwrap()
    }

    pub fn max_bytes(&self) -> u64 {
        self.limits().max_bytes
    }

    pub fn counts(&self) -> Counts {
        self.inner.state.lock().unwrap().counts
    }

    /// Whether `extra` more bytes would fit under `queue.max_bytes`.
    pub fn has_room(&self, extra: u64) -> bool {
        let c = self.counts();
        c.pending_bytes + extra <= self.max_bytes()
    }

    /// Commits a chunk (events + quarantine + checkpoint) atomically and durably. Many callers'
    /// requests are group-committed together by one background thread.
    pub async fn append(&self, req: AppendRequest) -> Result<Appended, QueueError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        {
            let guard = self.inner.committer.lock().unwrap();
            let sender = guard.as_ref().ok_or(QueueError::Closed)?;
            sender.send(Work::Append(Job { req, reply: tx })).map_err(|_| QueueError::Closed)?;
        }
        rx.await.map_err(|_| QueueError::Closed)?
    }

    /// [`append`] for a plain thread (the file source): the same group commit, waited for
    /// without a runtime.
    pub fn append_from_thread(&self, req: AppendRequest) -> Result<Appended, QueueError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        {
            let guard = self.inner.committer.lock().unwrap();
            let sender = guard.as_ref().ok_or(QueueError::Closed)?;
            sender.send(Work::Append(Job { req, reply: tx })).map_err(|_| QueueError::Closed)?;
        }
        rx.blocking_recv().map_err(|_| QueueError::Closed)?
    }

    /// Blocking form of [`append`] for tools and tests outside a runtime.
    pub fn append_blocking(&self, req: AppendRequest) -> Result<Appended, QueueError> {
        let mut out = commit_group(&self.inner, vec![req]);
        out.pop().unwrap_or(Err(QueueError::Closed))
    }

    /// Waits until events after `after` may be available (or `timeout` passes).
    pub async fn wait_for_events(&self, after: u64, timeout: Duration) {
        let notified = self.inner.appended.notified();
        if self.inner.durable_next.load(Ordering::Acquire) > after + 1 {
            return;
        }
        let _ = tokio::time::timeout(timeout, notified).await;
    }

    /// The highest acknowledged sequence number (everything up to it has left the queue).
    pub fn acked(&self) -> u64 {
        self.inner.state.lock().unwrap().acked
    }

    pub fn checkpoint(&self, source_id: &[u8]) -> Result<Option<Vec<u8>>, QueueError> {
        let store = self.inner.store.read().unwrap();
        let mut k = vec![b'c'];
        k.extend_from_slice(source_id);
        if let Some(v) = self.inner.state.lock().unwrap().overlay.latest(&k) {
            return Ok(v.cloned());
        }
        Ok(store.db.get(k).map_err(|e| storage_err(&store.dir, e))?.map(|v| v.to_vec()))
    }

    /// Small values older versions kept outside the counters (the status hub's state, before
    /// it had its own file). Read only: nothing writes them any more (see [`QueueView`]).
    pub(crate) fn get_meta(&self, name: &str) -> Option<Vec<u8>> {
        let store = self.inner.store.read().unwrap();
        store.db.get(meta_key(&format!("x:{name}"))).ok().flatten().map(|v| v.to_vec())
    }

    /// Flushes everything to disk (graceful shutdown) and stops the committer.
    pub fn close(&self) {
        self.inner.committer.lock().unwrap().take();
        // Wait for the committer to finish its last group, so that once the last handle is
        // dropped the database (and its file lock) is released at once.
        if let Some(t) = self.inner.committer_thread.lock().unwrap().take() {
            let _ = t.join();
        }
        let store = self.inner.store.read().unwrap();
        if let Err(e) = flush_sled(&self.inner, &store) {
            tracing::error!(target: "queue", "{e}");
        }
    }
}
