//! The durable queue: every accepted event, in order, until the SIEM has it.
//!
//! Storage is sled 0.34, kept behind this one module so the engine stays a local decision.
//! One sled tree holds everything, by key prefix:
//!
//! | key | value |
//! |---|---|
//! | `e` + first seq (u64 BE) | a *record*: about 4 KiB of events committed together |
//! | `c` + source id | a source checkpoint (opaque bytes), written in the same batch as its events |
//! | `q` + id (u64 BE) | a quarantined line: header JSON + the line verbatim |
//! | `d` + id (u64 BE) | a dead-lettered event: header JSON + the event verbatim |
//! | `m` + name | counters and persisted status, updated in the same batch as what they count |
//!
//! Record format: `[version u8 = 1][accepted_at_ms u64][count u32]` then `count` times
//! `[len u32][bytes]`. Event `i` of the record keyed `s` has sequence number `s + i`.
//!
//! Why records: sled manages one event per key at only thousands of events/s with a large
//! memory footprint; records of many events reach hundreds of thousands per second. Records stay
//! under sled's inline limit (~128 KiB with the default 512 KiB segments) so they live in the
//! log file that we fsync; a single event larger than that is stored as a sled blob file, and
//! that commit is made durable with `syncfs`.
//!
//! Why 4 KiB records, not bigger: memory. sled keeps a leaf page (up to 16 records) in memory
//! until its lazy LRU gets round to it (it evicts a shard only after 64 accesses to it), which
//! in practice is about a thousand pages whatever `cache_capacity` says. So the resident set is
//! proportional to the record size: with 96 KiB records the agent's RSS climbed to ~150 MiB
//! during an outage (over the 64Mi limit of the shipped Kubernetes manifest; found by the outage
//! campaign), with 4 KiB records it stays near 30 MiB for sled, at a throughput still in the
//! hundreds of thousands of events per second (docs/RELIABILITY.md).
//!
//! Invariants:
//! - sequence numbers only grow; none is reused, even across restarts (`m next_seq`);
//! - `append` returns only once the batch is in the log *and* `fdatasync`ed (sled's own
//!   `flush` is `sync_file_range`, which is not power-loss safe);
//! - readers never see an event before it is durable (`durable_next`);
//! - an event leaves the queue only through [`Queue::ack`]: acknowledged by the SIEM, or moved to
//!   the dead letter in the same atomic batch;
//! - counters (`pending`, bytes, dead-letter and quarantine counts) are kept in `m` keys in the
//!   same batches as the data they count: nothing ever scans the tree to count (`Tree::len`
//!   walks every key);
//! - when the queue drains after a large backlog, the database is rewritten into a fresh
//!   directory (sled never returns disk space) and swapped in;
//! - a database that fails to open is an incident, not a crash loop: it is moved aside, a new one
//!   is started, and the incident is reported in status and the log;
//! - the disk never fills under sled: an append is refused (like a full queue, with a clear
//!   "disk is full" error) when the filesystem would keep less than `queue.min_free_bytes`
//!   free, and accepted again as soon as there is room. Acks and dead letters may use that
//!   reserve, so the queue can always drain;
//! - an I/O error inside sled is fatal for this process: sled 0.34 fails every later write
//!   once one failed, and dropping or reopening the poisoned handle in-process can hang or let
//!   its background threads write over the reopened store (found by the disk campaign). The
//!   queue stops writing, reports the error, and [`Queue::fatal`] resolves so the agent exits
//!   for its service manager to restart it; a restart reopens what was fsynced, like after a
//!   crash (invariant 1).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Records are cut at this many bytes of event payload (see the module docs).
const RECORD_TARGET_BYTES: usize = 4 * 1024;
/// A record larger than this goes to a sled blob file (not covered by fsync of the log).
const INLINE_LIMIT: usize = 120 * 1024;
/// After a drain, rewrite the store when it occupies more than this on disk.
const RECLAIM_THRESHOLD_BYTES: u64 = 64 * 1024 * 1024;
/// Per quarantine entry, at most this much of the line is kept (the rest is counted).
pub const QUARANTINE_KEEP_BYTES: usize = 64 * 1024;
const RECORD_HEADER: usize = 1 + 8 + 4;
const SLED_CACHE_BYTES: u64 = 4 * 1024 * 1024;
/// Default `queue.min_free_bytes`: free space kept on the queue's filesystem.
pub const DEFAULT_MIN_FREE_BYTES: u64 = 64 * 1024 * 1024;

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
}

/// One queued event as the sink sees it.
#[derive(Debug, Clone)]
pub struct QueuedEvent {
    pub seq: u64,
    /// The event's JSON line, verbatim.
    pub data: Bytes,
    pub accepted_at_ms: u64,
}

/// Metadata of a quarantined line.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct QuarantineMeta {
    pub at: String,
    /// "events.jsonl:12 (byte 402113)" or "socket /run/x.sock (pid 12, uid 1000)".
    pub origin: String,
    pub reason: String,
    /// Full length of the line; only the first [`QUARANTINE_KEEP_BYTES`] are kept.
    pub len: usize,
}

/// Metadata of a dead-lettered event.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeadLetterMeta {
    pub at: String,
    pub reason: String,
    pub http_status: Option<u16>,
    pub original_seq: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Entry<M> {
    pub id: u64,
    #[serde(flatten)]
    pub meta: M,
    /// The line or event as bytes (shown as text by the CLI).
    #[serde(skip)]
    pub data: Vec<u8>,
}

/// Counters, as persisted and as shown in status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub pending_events: u64,
    pub pending_bytes: u64,
    pub dead_letter: u64,
    pub quarantine: u64,
    pub quarantine_evicted: u64,
}

/// One source's request to commit a chunk of input.
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

struct Store {
    db: sled::Db,
    /// A handle on sled's log file, for `fdatasync` after sled's `flush`.
    log: File,
    dir: PathBuf,
}

struct State {
    next_seq: u64,
    acked: u64,
    counts: Counts,
    q_next: u64,
    d_next: u64,
}

struct Inner {
    root: PathBuf,
    store: RwLock<Store>,
    state: Mutex<State>,
    /// One past the last durable sequence number; readers stop before it.
    durable_next: AtomicU64,
    max_bytes: AtomicU64,
    max_quarantine: AtomicU64,
    appended: tokio::sync::Notify,
    incident: Mutex<Option<String>>,
    /// Set by an I/O error inside sled; never cleared (see the module docs).
    failed: Mutex<Option<QueueError>>,
    fatal: tokio::sync::Notify,
    /// Appends are refused when the filesystem would keep less than this free.
    min_free: AtomicU64,
    /// The last "disk is full" refusal, shown in status until an append succeeds.
    disk_full: Mutex<Option<String>>,
    committer: Mutex<Option<mpsc::Sender<Job>>>,
    last_reclaim: Mutex<Instant>,
}

type Reply = tokio::sync::oneshot::Sender<Result<Appended, QueueError>>;

struct Job {
    req: AppendRequest,
    reply: Reply,
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

/// Limits and accumulator of one `read`.
struct ReadWindow {
    after: u64,
    before: u64,
    max_events: usize,
    max_bytes: usize,
    bytes: usize,
}

/// Decodes a record into events with seq in `(w.after, w.before)`. False if damaged.
fn decode_record(first_seq: u64, rec: &sled::IVec, w: &mut ReadWindow, out: &mut Vec<QueuedEvent>) -> bool {
    let raw: &[u8] = rec.as_ref();
    if raw.len() < RECORD_HEADER || raw[0] != 1 {
        return false;
    }
    let accepted_at_ms = u64::from_be_bytes(raw[1..9].try_into().unwrap_or([0; 8]));
    let count = u32::from_be_bytes(raw[9..13].try_into().unwrap_or([0; 4])) as u64;
    let owner = Bytes::from_owner(rec.clone());
    let mut pos = RECORD_HEADER;
    for i in 0..count {
        if pos + 4 > raw.len() {
            return false;
        }
        let len = u32::from_be_bytes(raw[pos..pos + 4].try_into().unwrap_or([0; 4])) as usize;
        pos += 4;
        if pos + len > raw.len() {
            return false;
        }
        let seq = first_seq + i;
        if seq > w.after && seq < w.before {
            if out.len() >= w.max_events || (!out.is_empty() && w.bytes + len > w.max_bytes) {
                return true;
            }
            w.bytes += len;
            out.push(QueuedEvent {
                seq,
                data: owner.slice(pos..pos + len),
                accepted_at_ms,
            });
        }
        pos += len;
    }
    true
}

/// Sizes of the events of a record with seq in (after, upto].
fn record_event_sizes(first_seq: u64, raw: &[u8]) -> Vec<(u64, usize)> {
    let mut out = Vec::new();
    if raw.len() < RECORD_HEADER {
        return out;
    }
    let count = u32::from_be_bytes(raw[9..13].try_into().unwrap_or([0; 4])) as u64;
    let mut pos = RECORD_HEADER;
    for i in 0..count {
        if pos + 4 > raw.len() {
            break;
        }
        let len = u32::from_be_bytes(raw[pos..pos + 4].try_into().unwrap_or([0; 4])) as usize;
        out.push((first_seq + i, len));
        pos += 4 + len;
    }
    out
}

fn encode_record(accepted_at_ms: u64, events: &[Bytes]) -> Vec<u8> {
    let size = RECORD_HEADER + events.iter().map(|e| 4 + e.len()).sum::<usize>();
    let mut v = Vec::with_capacity(size);
    v.push(1u8);
    v.extend_from_slice(&accepted_at_ms.to_be_bytes());
    v.extend_from_slice(&(events.len() as u32).to_be_bytes());
    for e in events {
        v.extend_from_slice(&(e.len() as u32).to_be_bytes());
        v.extend_from_slice(e);
    }
    v
}

fn encode_entry<M: Serialize>(meta: &M, data: &[u8]) -> Vec<u8> {
    let header = serde_json::to_vec(meta).unwrap_or_default();
    let mut v = Vec::with_capacity(4 + header.len() + data.len());
    v.extend_from_slice(&(header.len() as u32).to_be_bytes());
    v.extend_from_slice(&header);
    v.extend_from_slice(data);
    v
}

fn decode_entry<M: for<'de> Deserialize<'de>>(raw: &[u8]) -> Option<(M, Vec<u8>)> {
    let hl = u32::from_be_bytes(raw.get(0..4)?.try_into().ok()?) as usize;
    let header = raw.get(4..4 + hl)?;
    let meta = serde_json::from_slice(header).ok()?;
    Some((meta, raw[4 + hl..].to_vec()))
}

fn open_sled(dir: &Path) -> Result<Store, QueueError> {
    let cfg = sled::Config::new()
        .path(dir)
        .cache_capacity(SLED_CACHE_BYTES)
        .flush_every_ms(Some(200));
    let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cfg.open()));
    let db = match opened {
        Ok(Ok(db)) => db,
        Ok(Err(sled::Error::Io(e))) if e.kind() == std::io::ErrorKind::WouldBlock || e.to_string().contains("lock") => {
            return Err(QueueError::Locked(dir.to_path_buf()))
        }
        Ok(Err(e)) => return Err(storage_err(dir, e)),
        Err(_) => return Err(storage_err(dir, "sled panicked while opening the database (corrupted?)")),
    };
    let log = File::options().read(true).open(dir.join("db")).map_err(|e| storage_err(dir, e))?;
    Ok(Store {
        db,
        log,
        dir: dir.to_path_buf(),
    })
}

/// The counters and sequence numbers as stored.
fn read_state(store: &Store) -> Result<State, QueueError> {
    let db = &store.db;
    let g = |n: &str| db.get(meta_key(n)).map(u64_of).map_err(|e| storage_err(&store.dir, e));
    Ok(State {
        next_seq: g("next_seq")?.max(1),
        acked: g("acked")?,
        counts: Counts {
            pending_events: g("pending_events")?,
            pending_bytes: g("pending_bytes")?,
            dead_letter: g("dl_count")?,
            quarantine: g("q_count")?,
            quarantine_evicted: g("q_evicted")?,
        },
        q_next: g("q_next")?.max(1),
        d_next: g("d_next")?.max(1),
    })
}

/// Records an I/O error inside sled: no more writes through this handle (see the module docs).
fn note_failure(inner: &Inner, e: &QueueError) {
    let mut f = inner.failed.lock().unwrap();
    if f.is_none() {
        tracing::error!(target: "queue", "{e}; sled cannot write again after an I/O error: nothing more is accepted, and the agent exits so that its service manager restarts it (the queue reopens with everything that was committed)");
        *f = Some(e.clone());
        inner.fatal.notify_waiters();
        inner.fatal.notify_one();
    }
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
    // sled's log costs about twice the payload until its segments are cleaned. Once refused,
    // wait for some slack before accepting again, so writers do not flap at the threshold.
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

fn fsync_dir(dir: &Path) {
    if let Ok(f) = File::open(dir) {
        let _ = f.sync_all();
    }
}

impl Queue {
    /// Opens (or creates) the queue under `root` (`queue.path`).
    pub fn open(root: &Path, max_bytes: u64, max_quarantine: u64) -> Result<Queue, QueueError> {
        std::fs::create_dir_all(root).map_err(|e| storage_err(root, e))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700));
        }
        let store_dir = root.join("store");
        let new_dir = root.join("store.new");
        let old_dir = root.join("store.old");
        // Finish or undo an interrupted reclaim (see `reclaim`).
        if !store_dir.exists() && new_dir.join(".complete").exists() {
            std::fs::rename(&new_dir, &store_dir).map_err(|e| storage_err(root, e))?;
        } else if !store_dir.exists() && old_dir.exists() {
            std::fs::rename(&old_dir, &store_dir).map_err(|e| storage_err(root, e))?;
        }
        let _ = std::fs::remove_dir_all(&new_dir);
        let _ = std::fs::remove_dir_all(&old_dir);

        let mut incident = None;
        let store = match open_sled(&store_dir) {
            Ok(s) => s,
            Err(QueueError::Locked(p)) => return Err(QueueError::Locked(p)),
            Err(e) => {
                let aside = root.join(format!("corrupt-{}", chrono::Utc::now().format("%Y%m%dT%H%M%SZ")));
                let moved = std::fs::rename(&store_dir, &aside);
                let msg = format!(
                    "the queue database at {} could not be opened ({e}); it was moved aside to {} and a new, empty queue was started. Events in it were not forwarded: inspect or restore it by hand",
                    store_dir.display(),
                    aside.display()
                );
                tracing::error!(target: "queue", "{msg}");
                if let Err(me) = moved {
                    return Err(storage_err(&store_dir, format!("{e}; and moving it aside failed: {me}")));
                }
                incident = Some(msg);
                open_sled(&store_dir)?
            }
        };
        let state = read_state(&store)?;
        let durable_next = state.next_seq;
        let inner = Arc::new(Inner {
            root: root.to_path_buf(),
            store: RwLock::new(store),
            state: Mutex::new(state),
            durable_next: AtomicU64::new(durable_next),
            max_bytes: AtomicU64::new(max_bytes),
            max_quarantine: AtomicU64::new(max_quarantine),
            appended: tokio::sync::Notify::new(),
            incident: Mutex::new(incident),
            failed: Mutex::new(None),
            fatal: tokio::sync::Notify::new(),
            min_free: AtomicU64::new(DEFAULT_MIN_FREE_BYTES),
            disk_full: Mutex::new(None),
            committer: Mutex::new(None),
            last_reclaim: Mutex::new(Instant::now() - Duration::from_secs(3600)),
        });
        let (tx, rx) = mpsc::channel::<Job>();
        *inner.committer.lock().unwrap() = Some(tx);
        let weak = Arc::downgrade(&inner);
        std::thread::Builder::new()
            .name("queue-commit".into())
            .spawn(move || committer_loop(weak, rx))
            .map_err(|e| storage_err(root, e))?;
        Ok(Queue { inner })
    }

    pub fn root(&self) -> &Path {
        &self.inner.root
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

    /// Sets `queue.min_free_bytes` (0: no reserve).
    pub fn set_min_free(&self, bytes: u64) {
        self.inner.min_free.store(bytes, Ordering::Relaxed);
    }

    pub fn set_limits(&self, max_bytes: u64, max_quarantine: u64) {
        self.inner.max_bytes.store(max_bytes, Ordering::Relaxed);
        self.inner.max_quarantine.store(max_quarantine, Ordering::Relaxed);
    }

    pub fn max_bytes(&self) -> u64 {
        self.inner.max_bytes.load(Ordering::Relaxed)
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
            sender.send(Job { req, reply: tx }).map_err(|_| QueueError::Closed)?;
        }
        rx.await.map_err(|_| QueueError::Closed)?
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

    /// Reads up to `max_events` / about `max_bytes` of durable events after `after`, in order.
    /// Always returns at least one event if one is available, even if it is larger than
    /// `max_bytes`.
    pub fn read(&self, after: u64, max_events: usize, max_bytes: usize) -> Result<Vec<QueuedEvent>, QueueError> {
        let before = self.inner.durable_next.load(Ordering::Acquire);
        let mut out = Vec::new();
        if after + 1 >= before || max_events == 0 {
            return Ok(out);
        }
        let store = self.inner.store.read().unwrap();
        let start_key = key(b'e', after + 1);
        // The record containing `after + 1` starts at or before it.
        let first = store
            .db
            .range(key(b'e', 0)..=start_key)
            .next_back()
            .transpose()
            .map_err(|e| storage_err(&store.dir, e))?;
        let from = match first {
            Some((k, _)) => k.to_vec(),
            None => start_key.to_vec(),
        };
        let mut w = ReadWindow {
            after,
            before,
            max_events,
            max_bytes,
            bytes: 0,
        };
        for item in store.db.range(from..key(b'e', u64::MAX).to_vec()) {
            let (k, v) = item.map_err(|e| storage_err(&store.dir, e))?;
            let first_seq = u64::from_be_bytes(k[1..9].try_into().unwrap_or([0; 8]));
            if first_seq >= before {
                break;
            }
            if !decode_record(first_seq, &v, &mut w, &mut out) {
                return Err(storage_err(&store.dir, format!("record {first_seq} is damaged")));
            }
            if out.len() >= max_events || w.bytes >= max_bytes {
                break;
            }
        }
        Ok(out)
    }

    /// Removes every event up to and including `upto` from the queue (the SIEM accepted them,
    /// or they move to the dead letter, given in `dead`), atomically, and makes that visible
    /// to a restart (sled flush) so a later crash does not resend them.
    pub fn ack(&self, upto: u64, dead: Vec<(DeadLetterMeta, Bytes)>) -> Result<(), QueueError> {
        check_failed(&self.inner)?;
        match self.ack_inner(upto, dead) {
            Ok(()) => {
                self.maybe_reclaim();
                Ok(())
            }
            Err(e) => {
                note_failure(&self.inner, &e);
                Err(e)
            }
        }
    }

    fn ack_inner(&self, upto: u64, dead: Vec<(DeadLetterMeta, Bytes)>) -> Result<(), QueueError> {
        {
            let store = self.inner.store.read().unwrap();
            let mut st = self.inner.state.lock().unwrap();
            if upto <= st.acked {
                return Ok(());
            }
            let upto = upto.min(st.next_seq.saturating_sub(1));
            let mut batch = sled::Batch::default();
            let mut freed_events = 0u64;
            let mut freed_bytes = 0u64;
            let first = store
                .db
                .range(key(b'e', 0)..=key(b'e', st.acked + 1))
                .next_back()
                .transpose()
                .map_err(|e| storage_err(&store.dir, e))?;
            let from = first.map(|(k, _)| k.to_vec()).unwrap_or_else(|| key(b'e', st.acked + 1).to_vec());
            for item in store.db.range(from..=key(b'e', upto).to_vec()) {
                let (k, v) = item.map_err(|e| storage_err(&store.dir, e))?;
                let first_seq = u64::from_be_bytes(k[1..9].try_into().unwrap_or([0; 8]));
                let sizes = record_event_sizes(first_seq, &v);
                let last_seq = sizes.last().map(|(s, _)| *s).unwrap_or(first_seq);
                for (seq, len) in &sizes {
                    if *seq > st.acked && *seq <= upto {
                        freed_events += 1;
                        freed_bytes += *len as u64;
                    }
                }
                if last_seq <= upto {
                    batch.remove(k.to_vec());
                }
            }
            let mut counts = st.counts;
            counts.pending_events = counts.pending_events.saturating_sub(freed_events);
            counts.pending_bytes = counts.pending_bytes.saturating_sub(freed_bytes);
            let mut d_next = st.d_next;
            for (meta, data) in &dead {
                batch.insert(key(b'd', d_next).to_vec(), encode_entry(meta, data));
                d_next += 1;
                counts.dead_letter += 1;
            }
            batch.insert(meta_key("acked"), &upto.to_be_bytes());
            batch.insert(meta_key("pending_events"), &counts.pending_events.to_be_bytes());
            batch.insert(meta_key("pending_bytes"), &counts.pending_bytes.to_be_bytes());
            batch.insert(meta_key("dl_count"), &counts.dead_letter.to_be_bytes());
            batch.insert(meta_key("d_next"), &d_next.to_be_bytes());
            store.db.apply_batch(batch).map_err(|e| storage_err(&store.dir, e))?;
            st.acked = upto;
            st.counts = counts;
            st.d_next = d_next;
            drop(st);
            // Written to the OS (survives a process crash); dead letters also fsynced since they
            // are the only copy of a rejected event.
            store.db.flush().map_err(|e| storage_err(&store.dir, e))?;
            if !dead.is_empty() {
                store.log.sync_data().map_err(|e| storage_err(&store.dir, e))?;
            }
        }
        Ok(())
    }

    /// Age of the oldest pending event, from its record's accept time.
    pub fn oldest_pending_age(&self) -> Option<Duration> {
        let acked = self.acked();
        let store = self.inner.store.read().unwrap();
        let (_, v) = store
            .db
            .range(key(b'e', 0)..=key(b'e', acked + 1))
            .next_back()
            .or_else(|| store.db.range(key(b'e', acked + 1)..key(b'e', u64::MAX)).next())?
            .ok()?;
        if self.counts().pending_events == 0 {
            return None;
        }
        let at = u64::from_be_bytes(v.get(1..9)?.try_into().ok()?);
        Some(Duration::from_millis(now_ms().saturating_sub(at)))
    }

    pub fn checkpoint(&self, source_id: &[u8]) -> Result<Option<Vec<u8>>, QueueError> {
        let store = self.inner.store.read().unwrap();
        let mut k = vec![b'c'];
        k.extend_from_slice(source_id);
        Ok(store.db.get(k).map_err(|e| storage_err(&store.dir, e))?.map(|v| v.to_vec()))
    }

    /// Small persisted values (status) outside the counters; written without an fsync.
    pub fn get_meta(&self, name: &str) -> Option<Vec<u8>> {
        let store = self.inner.store.read().unwrap();
        store.db.get(meta_key(&format!("x:{name}"))).ok().flatten().map(|v| v.to_vec())
    }

    pub fn put_meta(&self, name: &str, value: &[u8]) -> Result<(), QueueError> {
        let store = self.inner.store.read().unwrap();
        store
            .db
            .insert(meta_key(&format!("x:{name}")), value)
            .map_err(|e| storage_err(&store.dir, e))?;
        Ok(())
    }

    pub fn list_quarantine(&self, limit: usize) -> Result<Vec<Entry<QuarantineMeta>>, QueueError> {
        self.list_entries(b'q', limit)
    }

    pub fn list_dead_letter(&self, limit: usize) -> Result<Vec<Entry<DeadLetterMeta>>, QueueError> {
        self.list_entries(b'd', limit)
    }

    fn list_entries<M: for<'de> Deserialize<'de>>(&self, prefix: u8, limit: usize) -> Result<Vec<Entry<M>>, QueueError> {
        let store = self.inner.store.read().unwrap();
        let mut out = Vec::new();
        for item in store.db.range(key(prefix, 0)..=key(prefix, u64::MAX)).take(limit) {
            let (k, v) = item.map_err(|e| storage_err(&store.dir, e))?;
            let id = u64::from_be_bytes(k[1..9].try_into().unwrap_or([0; 8]));
            if let Some((meta, data)) = decode_entry::<M>(&v) {
                out.push(Entry { id, meta, data });
            }
        }
        Ok(out)
    }

    /// Moves dead-lettered events (all, or the given ids) back to the tail of the queue.
    /// Returns how many were re-queued.
    pub fn replay_dead_letter(&self, ids: Option<&[u64]>) -> Result<u64, QueueError> {
        self.take_dead_letter(ids, true)
    }

    /// Deletes dead-lettered events (all, or the given ids). Returns how many were deleted.
    pub fn purge_dead_letter(&self, ids: Option<&[u64]>) -> Result<u64, QueueError> {
        self.take_dead_letter(ids, false)
    }

    fn take_dead_letter(&self, ids: Option<&[u64]>, requeue: bool) -> Result<u64, QueueError> {
        check_failed(&self.inner)?;
        let r = self.take_dead_letter_inner(ids, requeue);
        if let Err(e) = &r {
            note_failure(&self.inner, e);
        }
        r
    }

    fn take_dead_letter_inner(&self, ids: Option<&[u64]>, requeue: bool) -> Result<u64, QueueError> {
        let entries = self.list_dead_letter(usize::MAX)?;
        let chosen: Vec<_> = entries.into_iter().filter(|e| ids.is_none_or(|ids| ids.contains(&e.id))).collect();
        if chosen.is_empty() {
            return Ok(0);
        }
        let n = chosen.len() as u64;
        {
            let store = self.inner.store.read().unwrap();
            let mut st = self.inner.state.lock().unwrap();
            let mut batch = sled::Batch::default();
            let mut counts = st.counts;
            let mut next_seq = st.next_seq;
            if requeue {
                let events: Vec<Bytes> = chosen.iter().map(|e| Bytes::from(e.data.clone())).collect();
                let bytes: u64 = events.iter().map(|e| e.len() as u64).sum();
                for chunk in chunk_events(&events) {
                    batch.insert(key(b'e', next_seq).to_vec(), encode_record(now_ms(), chunk));
                    next_seq += chunk.len() as u64;
                }
                counts.pending_events += n;
                counts.pending_bytes += bytes;
            }
            for e in &chosen {
                batch.remove(key(b'd', e.id).to_vec());
            }
            counts.dead_letter = counts.dead_letter.saturating_sub(n);
            batch.insert(meta_key("next_seq"), &next_seq.to_be_bytes());
            batch.insert(meta_key("pending_events"), &counts.pending_events.to_be_bytes());
            batch.insert(meta_key("pending_bytes"), &counts.pending_bytes.to_be_bytes());
            batch.insert(meta_key("dl_count"), &counts.dead_letter.to_be_bytes());
            store.db.apply_batch(batch).map_err(|e| storage_err(&store.dir, e))?;
            store.db.flush().map_err(|e| storage_err(&store.dir, e))?;
            store.log.sync_data().map_err(|e| storage_err(&store.dir, e))?;
            st.counts = counts;
            st.next_seq = next_seq;
            self.inner.durable_next.store(next_seq, Ordering::Release);
        }
        self.inner.appended.notify_waiters();
        Ok(n)
    }

    /// Flushes everything to disk (graceful shutdown) and stops the committer.
    pub fn close(&self) {
        self.inner.committer.lock().unwrap().take();
        let store = self.inner.store.read().unwrap();
        let _ = store.db.flush();
        let _ = store.log.sync_data();
    }

    /// Bytes the store occupies on disk.
    pub fn size_on_disk(&self) -> u64 {
        let store = self.inner.store.read().unwrap();
        dir_size(&store.dir)
    }

    /// When the queue has drained after a large backlog, rewrite the database into a fresh
    /// directory so the disk space is given back (sled never shrinks its files).
    fn maybe_reclaim(&self) {
        if self.counts().pending_events != 0 {
            return;
        }
        {
            let mut last = self.inner.last_reclaim.lock().unwrap();
            if last.elapsed() < Duration::from_secs(30) {
                return;
            }
            *last = Instant::now();
        }
        let size = self.size_on_disk();
        if size < RECLAIM_THRESHOLD_BYTES {
            return;
        }
        match self.reclaim() {
            Ok(after) => {
                tracing::info!(target: "queue", before_bytes = size, after_bytes = after, "queue drained; database rewritten to give disk space back")
            }
            Err(e) => tracing::warn!(target: "queue", "could not reclaim queue disk space: {e}"),
        }
    }

    /// Rewrites the store without its (empty) event records. Appends wait meanwhile.
    pub fn reclaim(&self) -> Result<u64, QueueError> {
        let root = self.inner.root.clone();
        let new_dir = root.join("store.new");
        let old_dir = root.join("store.old");
        let store_dir = root.join("store");
        let mut store = self.inner.store.write().unwrap();
        let st = self.inner.state.lock().unwrap();
        if st.counts.pending_events != 0 {
            return Ok(dir_size(&store.dir));
        }
        let _ = std::fs::remove_dir_all(&new_dir);
        {
            let fresh = open_sled(&new_dir)?;
            for item in store.db.iter() {
                let (k, v) = item.map_err(|e| storage_err(&store.dir, e))?;
                if k.first() == Some(&b'e') {
                    continue;
                }
                fresh.db.insert(k, v).map_err(|e| storage_err(&new_dir, e))?;
            }
            fresh.db.flush().map_err(|e| storage_err(&new_dir, e))?;
            fresh.log.sync_data().map_err(|e| storage_err(&new_dir, e))?;
            File::create(new_dir.join(".complete")).map_err(|e| storage_err(&new_dir, e))?;
            fsync_dir(&new_dir);
        }
        // Swap: store -> store.old, store.new -> store. `open` completes an interrupted swap.
        let placeholder = open_placeholder(&root)?;
        let old = std::mem::replace(&mut *store, placeholder);
        drop(old);
        std::fs::rename(&store_dir, &old_dir).map_err(|e| storage_err(&root, e))?;
        std::fs::rename(&new_dir, &store_dir).map_err(|e| storage_err(&root, e))?;
        fsync_dir(&root);
        let _ = std::fs::remove_file(store_dir.join(".complete"));
        let _ = std::fs::remove_dir_all(&old_dir);
        *store = open_sled(&store_dir)?;
        drop(st);
        let _ = std::fs::remove_dir_all(root.join("store.tmp"));
        Ok(dir_size(&store_dir))
    }
}

/// A throwaway temporary store held while the real one is being swapped.
fn open_placeholder(root: &Path) -> Result<Store, QueueError> {
    let dir = root.join("store.tmp");
    let _ = std::fs::remove_dir_all(&dir);
    let db = sled::Config::new()
        .path(&dir)
        .temporary(true)
        .open()
        .map_err(|e| storage_err(&dir, e))?;
    let log = File::open("/dev/null").map_err(|e| storage_err(&dir, e))?;
    Ok(Store { db, log, dir })
}

fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if let Ok(m) = e.metadata() {
                if m.is_dir() {
                    total += dir_size(&e.path());
                } else {
                    total += m.len();
                }
            }
        }
    }
    total
}

/// Splits events into record-sized chunks.
fn chunk_events(events: &[Bytes]) -> Vec<&[Bytes]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut size = 0;
    for (i, e) in events.iter().enumerate() {
        if i > start && size + e.len() + 4 > RECORD_TARGET_BYTES {
            out.push(&events[start..i]);
            start = i;
            size = 0;
        }
        size += e.len() + 4;
    }
    if start < events.len() {
        out.push(&events[start..]);
    }
    out
}

fn committer_loop(inner: std::sync::Weak<Inner>, rx: mpsc::Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        let mut bytes: usize = jobs[0].req.events.iter().map(|e| e.len()).sum();
        while bytes < 8 * 1024 * 1024 {
            match rx.try_recv() {
                Ok(j) => {
                    bytes += j.req.events.iter().map(|e| e.len()).sum::<usize>();
                    jobs.push(j);
                }
                Err(_) => break,
            }
        }
        let Some(inner) = inner.upgrade() else { break };
        let (reqs, replies): (Vec<_>, Vec<_>) = jobs.into_iter().map(|j| (j.req, j.reply)).unzip();
        let results = commit_group(&inner, reqs);
        for (reply, result) in replies.into_iter().zip(results) {
            let _ = reply.send(result);
        }
    }
}

/// Applies a group of requests in one sled batch, then makes it durable. Requests that do
/// not fit under `queue.max_bytes` are refused individually.
fn commit_group(inner: &Inner, reqs: Vec<AppendRequest>) -> Vec<Result<Appended, QueueError>> {
    if let Err(e) = check_failed(inner) {
        return reqs.iter().map(|_| Err(e.clone())).collect();
    }
    let store = inner.store.read().unwrap();
    let group_bytes: u64 = reqs.iter().flat_map(|r| r.events.iter()).map(|e| e.len() as u64).sum();
    if let Err(e) = check_disk_room(inner, &store.dir, group_bytes) {
        return reqs.iter().map(|_| Err(e.clone())).collect();
    }
    let mut results = Vec::with_capacity(reqs.len());
    let mut big = false;
    let applied = {
        let mut st = inner.state.lock().unwrap();
        let max_bytes = inner.max_bytes.load(Ordering::Relaxed);
        let max_q = inner.max_quarantine.load(Ordering::Relaxed);
        let mut batch = sled::Batch::default();
        let mut counts = st.counts;
        let mut next_seq = st.next_seq;
        let mut q_next = st.q_next;
        let now = now_ms();
        for req in &reqs {
            let req_bytes: u64 = req.events.iter().map(|e| e.len() as u64).sum();
            if !req.events.is_empty() && counts.pending_bytes + req_bytes > max_bytes {
                results.push(Err(QueueError::Full {
                    pending_bytes: counts.pending_bytes,
                    max_bytes,
                }));
                continue;
            }
            let first_seq = next_seq;
            for chunk in chunk_events(&req.events) {
                let rec = encode_record(now, chunk);
                big |= rec.len() > INLINE_LIMIT;
                batch.insert(key(b'e', next_seq).to_vec(), rec);
                next_seq += chunk.len() as u64;
            }
            counts.pending_events += req.events.len() as u64;
            counts.pending_bytes += req_bytes;
            for (meta, line) in &req.quarantine {
                let keep = &line[..line.len().min(QUARANTINE_KEEP_BYTES)];
                batch.insert(key(b'q', q_next).to_vec(), encode_entry(meta, keep));
                q_next += 1;
                counts.quarantine += 1;
            }
            if let Some((id, ck)) = &req.checkpoint {
                let mut k = vec![b'c'];
                k.extend_from_slice(id);
                batch.insert(k, ck.as_slice());
            }
            results.push(Ok(Appended {
                first_seq,
                count: req.events.len() as u64,
            }));
        }
        // Keep the quarantine bounded: evict the oldest entries beyond the limit (counted).
        // Ids are consecutive, so the live ones are exactly the last `quarantine` ids before
        // `q_next`: evict from the oldest live id on, whether committed or in this batch.
        if counts.quarantine > max_q {
            let excess = counts.quarantine - max_q;
            let oldest = q_next - counts.quarantine;
            for id in oldest..oldest + excess {
                batch.remove(key(b'q', id).to_vec());
            }
            counts.quarantine -= excess;
            counts.quarantine_evicted += excess;
            tracing::warn!(target: "queue", evicted = excess, "quarantine is over queue.max_quarantine_entries; the oldest entries were dropped (counted in status as quarantine.evicted)");
        }
        batch.insert(meta_key("next_seq"), &next_seq.to_be_bytes());
        batch.insert(meta_key("pending_events"), &counts.pending_events.to_be_bytes());
        batch.insert(meta_key("pending_bytes"), &counts.pending_bytes.to_be_bytes());
        batch.insert(meta_key("q_count"), &counts.quarantine.to_be_bytes());
        batch.insert(meta_key("q_next"), &q_next.to_be_bytes());
        batch.insert(meta_key("q_evicted"), &counts.quarantine_evicted.to_be_bytes());
        match store.db.apply_batch(batch) {
            Ok(()) => {
                st.counts = counts;
                st.next_seq = next_seq;
                st.q_next = q_next;
                Ok(next_seq)
            }
            Err(e) => Err(storage_err(&store.dir, e)),
        }
    };
    let durable = applied.and_then(|next_seq| {
        store.db.flush().map_err(|e| storage_err(&store.dir, e))?;
        store.log.sync_data().map_err(|e| storage_err(&store.dir, e))?;
        if big {
            // A record over the inline limit lives in a sled blob file, which sled does not
            // fsync: sync the whole filesystem holding the queue.
            use std::os::unix::io::AsRawFd;
            // SAFETY: plain syscall on a valid, open file descriptor.
            let rc = unsafe { libc::syncfs(store.log.as_raw_fd()) };
            if rc != 0 {
                return Err(storage_err(&store.dir, std::io::Error::last_os_error()));
            }
        }
        Ok(next_seq)
    });
    match durable {
        Ok(next_seq) => {
            inner.durable_next.store(next_seq, Ordering::Release);
            inner.appended.notify_waiters();
            drop(store);
            if !results.iter().all(|r| r.is_err()) {
                inner.disk_full.lock().unwrap().take();
            }
            results
        }
        Err(e) => {
            // Nothing is acknowledged to the sources. The in-memory counters may now be ahead
            // of disk; the process exits and they are re-read at the next open.
            drop(store);
            note_failure(inner, &e);
            results
                .into_iter()
                .map(|r| match r {
                    Ok(_) => Err(e.clone()),
                    Err(x) => Err(x),
                })
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn req(events: &[&str]) -> AppendRequest {
        AppendRequest {
            events: events.iter().map(|s| ev(s)).collect(),
            quarantine: vec![],
            checkpoint: None,
        }
    }

    #[test]
    fn append_read_ack_and_restart() {
        let dir = tempfile::tempdir().unwrap();
        {
            let q = Queue::open(dir.path(), 1 << 30, 100).unwrap();
            let a = q.append_blocking(req(&["a", "b", "c"])).unwrap();
            assert_eq!(a, Appended { first_seq: 1, count: 3 });
            let got = q.read(0, 10, 1 << 20).unwrap();
            assert_eq!(got.iter().map(|e| &e.data[..]).collect::<Vec<_>>(), vec![b"a", b"b", b"c"]);
            q.ack(2, vec![]).unwrap();
            assert_eq!(q.counts().pending_events, 1);
            q.close();
        }
        let q = Queue::open(dir.path(), 1 << 30, 100).unwrap();
        let got = q.read(q.acked(), 10, 1 << 20).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(&got[0].data[..], b"c");
        assert_eq!(got[0].seq, 3);
        let a = q.append_blocking(req(&["d"])).unwrap();
        assert_eq!(a.first_seq, 4, "sequence numbers are never reused");
    }

    #[test]
    fn full_queue_refuses_and_reports() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path(), 10, 100).unwrap();
        q.append_blocking(req(&["12345678"])).unwrap();
        let e = q.append_blocking(req(&["abc"])).unwrap_err();
        assert!(matches!(
            e,
            QueueError::Full {
                pending_bytes: 8,
                max_bytes: 10
            }
        ));
        q.ack(1, vec![]).unwrap();
        q.append_blocking(req(&["abc"])).unwrap();
    }

    #[test]
    fn dead_letter_replay_and_purge() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path(), 1 << 30, 100).unwrap();
        q.append_blocking(req(&["a", "b"])).unwrap();
        let meta = DeadLetterMeta {
            at: now_rfc3339(),
            reason: "HTTP 400: bad".into(),
            http_status: Some(400),
            original_seq: 1,
        };
        q.ack(1, vec![(meta, ev("a"))]).unwrap();
        assert_eq!(q.counts().dead_letter, 1);
        let dl = q.list_dead_letter(10).unwrap();
        assert_eq!(dl[0].data, b"a");
        assert_eq!(q.replay_dead_letter(None).unwrap(), 1);
        let got = q.read(1, 10, 1 << 20).unwrap();
        assert_eq!(got.iter().map(|e| &e.data[..]).collect::<Vec<_>>(), vec![&b"b"[..], &b"a"[..]]);
        assert_eq!(q.counts().dead_letter, 0);
        assert_eq!(q.purge_dead_letter(None).unwrap(), 0);
    }

    #[test]
    fn quarantine_is_bounded_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path(), 1 << 30, 3).unwrap();
        for i in 0..5 {
            let meta = QuarantineMeta {
                at: now_rfc3339(),
                origin: format!("test:{i}"),
                reason: "bad".into(),
                len: 1,
            };
            q.append_blocking(AppendRequest {
                events: vec![],
                quarantine: vec![(meta, vec![b'x'])],
                checkpoint: None,
            })
            .unwrap();
        }
        let c = q.counts();
        assert_eq!((c.quarantine, c.quarantine_evicted), (3, 2));
        let l = q.list_quarantine(10).unwrap();
        assert_eq!(
            l.iter().map(|e| e.meta.origin.as_str()).collect::<Vec<_>>(),
            vec!["test:2", "test:3", "test:4"]
        );
    }

    #[test]
    fn reclaim_gives_space_back_and_keeps_meta() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path(), 1 << 40, 100).unwrap();
        let line = "x".repeat(400);
        for _ in 0..20 {
            let evs: Vec<&str> = (0..1000).map(|_| line.as_str()).collect();
            q.append_blocking(req(&evs)).unwrap();
        }
        q.append_blocking(AppendRequest {
            events: vec![],
            quarantine: vec![],
            checkpoint: Some((b"file".to_vec(), b"ck".to_vec())),
        })
        .unwrap();
        let before = q.size_on_disk();
        q.ack(20_000, vec![]).unwrap();
        let after = q.reclaim().unwrap();
        assert!(after < before, "{after} < {before}");
        assert_eq!(q.checkpoint(b"file").unwrap().as_deref(), Some(&b"ck"[..]));
        let a = q.append_blocking(req(&["next"])).unwrap();
        assert_eq!(a.first_seq, 20_001);
        assert_eq!(&q.read(20_000, 10, 1 << 20).unwrap()[0].data[..], b"next");
    }

    #[test]
    fn unopenable_store_is_moved_aside_not_crash_looped() {
        let dir = tempfile::tempdir().unwrap();
        {
            let q = Queue::open(dir.path(), 1 << 30, 100).unwrap();
            q.append_blocking(req(&["a"])).unwrap();
            q.close();
        }
        // Damage the database: make `conf` garbage.
        std::fs::write(dir.path().join("store/conf"), b"\x00garbage\xff").unwrap();
        std::fs::write(dir.path().join("store/db"), vec![0xAB; 4096]).unwrap();
        let q = Queue::open(dir.path(), 1 << 30, 100).unwrap();
        let inc = q.incident().expect("incident reported");
        assert!(inc.contains("moved aside"), "{inc}");
        assert!(std::fs::read_dir(dir.path())
            .unwrap()
            .any(|e| e.unwrap().file_name().to_string_lossy().starts_with("corrupt-")));
        q.append_blocking(req(&["b"])).unwrap();
    }

    #[test]
    fn appends_are_refused_below_the_free_space_reserve_and_resume_by_themselves() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path(), 1 << 30, 100).unwrap();
        q.append_blocking(req(&["a"])).unwrap();
        // A reserve larger than any disk: the disk is "full".
        q.set_min_free(u64::MAX / 4);
        let e = q.append_blocking(req(&["b"])).unwrap_err();
        assert!(e.to_string().contains("the disk is full"), "{e}");
        assert!(q.storage_error().unwrap().contains("queue.min_free_bytes"));
        // Acks may use the reserve, so the queue can still drain.
        q.ack(1, vec![]).unwrap();
        // Room again: appends resume and the error clears.
        q.set_min_free(0);
        let a = q.append_blocking(req(&["b"])).unwrap();
        assert_eq!(a.first_seq, 2, "the refused append consumed no sequence number");
        assert_eq!(q.storage_error(), None);
    }

    #[test]
    fn large_single_event_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path(), 1 << 30, 100).unwrap();
        let big = "y".repeat(300 * 1024);
        q.append_blocking(req(&[big.as_str(), "small"])).unwrap();
        let got = q.read(0, 10, 1 << 30).unwrap();
        assert_eq!(got[0].data.len(), big.len());
        assert_eq!(&got[1].data[..], b"small");
    }
}
