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
//! Commit order (one group commit): records are appended to the current segment and the segment
//! is `fdatasync`ed; *then* one sled batch with their pointers, the sources' checkpoints,
//! quarantine entries and counters is applied, flushed and `fdatasync`ed. A crash in between
//! leaves unreferenced bytes at a segment's end, never a pointer to bytes that are not durable.
//! After a restart the writer starts a new segment, so those bytes are never referenced.
//! A segment file is deleted only once every sequence number in it is acknowledged *and* that
//! acknowledgement has been `fdatasync`ed.
//!
//! Acks: an ack applies one sled batch (pointers removed, counters, `acked`) without a sled
//! flush, and writes `acked` to `store/acked` (16 bytes, `pwrite`, no sync), which `open`
//! re-applies when sled's copy is older: a killed process resends at most the request in
//! flight; a power loss may resend what was acked since the last commit or the 200 ms flush.
//!
//! Invariants:
//! - sequence numbers only grow; none is reused, even across restarts (`m next_seq`);
//! - `append` returns only once its records *and* the batch that points to them are
//!   `fdatasync`ed (sled's own `flush` is `sync_file_range`, which is not power-loss safe);
//! - readers never see an event before it is durable (`durable_next`);
//! - an event leaves the queue only through [`Queue::ack`]: acknowledged by the SIEM, or moved to
//!   the dead letter in the same atomic batch;
//! - counters (`pending`, bytes, dead-letter and quarantine counts) are kept in `m` keys in the
//!   same batches as the data they count: nothing ever scans the tree to count (`Tree::len`
//!   walks every key);
//! - memory does not grow with the backlog: sled holds pointers, reads are a batch at a time;
//! - when the queue drains after a large backlog, the database is rewritten into a fresh
//!   directory (sled never returns disk space) and swapped in;
//! - a database that fails to open is an incident, not a crash loop: it is moved aside (with
//!   its segment files), a new one is started, and the incident is reported in status and the log;
//! - the disk never fills under sled: an append is refused (like a full queue, with a clear
//!   "disk is full" error) when the filesystem would keep less than `queue.min_free_bytes`
//!   free, and accepted again as soon as there is room. Acks and dead letters may use that
//!   reserve, so the queue can always drain;
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

/// Records are cut at this many bytes of event payload (see the module docs).
const RECORD_TARGET_BYTES: usize = 96 * 1024;
/// A sled value larger than this goes to a sled blob file (not covered by fsync of the log).
const INLINE_LIMIT: usize = 120 * 1024;
/// After a drain, rewrite the store when it occupies more than this on disk.
const RECLAIM_THRESHOLD_BYTES: u64 = 64 * 1024 * 1024;
/// Per quarantine entry, at most this much of the line is kept (the rest is counted).
pub const QUARANTINE_KEEP_BYTES: usize = 64 * 1024;
/// Quarantine entries are written at most this many to a sled batch (see `commit_group`).
const QUARANTINE_KEYS_PER_BATCH: usize = 128;
const RECORD_HEADER: usize = 1 + 8 + 4;
const SLED_CACHE_BYTES: u64 = 4 * 1024 * 1024;
/// Default `queue.min_free_bytes`: free space kept on the queue's filesystem.
pub const DEFAULT_MIN_FREE_BYTES: u64 = 64 * 1024 * 1024;
/// A segment file is closed for appends once it holds this much.
const SEGMENT_BYTES: u64 = 32 * 1024 * 1024;
const POINTER_LEN: usize = 1 + 8 + 4 + 8 + 8 + 4 + 8;
/// Records read back recently, kept for the next read and for partial acks (the delivery loop
/// reads a batch, then acks it: both touch the same record).
const RECORD_CACHE: usize = 4;

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
    /// `acked` as of the last ack, written (not synced) at every ack: see [`Queue::ack`].
    ack_file: File,
    dir: PathBuf,
}

/// Name of the ack file in the store directory. Its 16 bytes: `acked` (u64 BE) and `acked`
/// XOR [`ACK_FILE_CHECK`] (so a torn or stale write is recognised and ignored).
const ACK_FILE: &str = "acked";
const ACK_FILE_CHECK: u64 = 0x5EAD_A0C0_ACED_0001;

fn write_ack_file(store: &Store, acked: u64) -> Result<(), QueueError> {
    use std::os::unix::fs::FileExt;
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&acked.to_be_bytes());
    b[8..].copy_from_slice(&(acked ^ ACK_FILE_CHECK).to_be_bytes());
    store.ack_file.write_all_at(&b, 0).map_err(|e| storage_err(&store.dir, e))
}

fn read_ack_file(store: &Store) -> Option<u64> {
    use std::os::unix::fs::FileExt;
    let mut b = [0u8; 16];
    store.ack_file.read_exact_at(&mut b, 0).ok()?;
    let v = u64::from_be_bytes(b[..8].try_into().ok()?);
    (u64::from_be_bytes(b[8..].try_into().ok()?) == v ^ ACK_FILE_CHECK).then_some(v)
}

struct State {
    next_seq: u64,
    acked: u64,
    counts: Counts,
    q_next: u64,
    d_next: u64,
}

/// The append side of the segment files. Holding its lock is what makes a caller the one
/// appender: sequence numbers are assigned only under it.
struct SegmentWriter {
    dir: PathBuf,
    /// First sequence number of each segment file, ascending; appends go to the last one.
    segments: std::collections::VecDeque<u64>,
    current: Option<CurrentSegment>,
    buf: Vec<u8>,
    /// [`SEGMENT_BYTES`]; smaller in tests.
    roll_bytes: u64,
}

struct CurrentSegment {
    first_seq: u64,
    file: File,
    len: u64,
}

/// The read side: open segment files and a few recently read records.
struct SegmentReaders {
    dir: PathBuf,
    files: Mutex<std::collections::HashMap<u64, Arc<File>>>,
    records: Mutex<std::collections::VecDeque<(u64, Bytes)>>,
}

/// `fdatasync`/`fsync` calls made by the queue since the process started (exposed in /metrics:
/// the cost of durability at a steady rate is counted in these).
static SYNCS: AtomicU64 = AtomicU64::new(0);

/// Number of `fdatasync`/`fsync`/`syncfs` calls the queue has made in this process.
pub fn fdatasyncs() -> u64 {
    SYNCS.load(Ordering::Relaxed)
}

/// `fdatasync` of `file`, counted.
fn sync_data(file: &File) -> std::io::Result<()> {
    SYNCS.fetch_add(1, Ordering::Relaxed);
    file.sync_data()
}

fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("{first_seq:020}.seg"))
}

impl SegmentWriter {
    /// Scans `dir`: keeps the segments that may hold unacknowledged events and deletes the
    /// others (fully acknowledged ones, and any created for `next_seq` or later: a commit that
    /// never completed).
    fn open(dir: &Path, next_seq: u64, acked: u64) -> std::io::Result<SegmentWriter> {
        if !dir.exists() {
            std::fs::create_dir_all(dir)?;
            if let Some(parent) = dir.parent() {
                fsync_dir(parent);
            }
        }
        let mut found: Vec<u64> = Vec::new();
        for e in std::fs::read_dir(dir)?.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if let Some(n) = name.strip_suffix(".seg").and_then(|n| n.parse::<u64>().ok()) {
                if n >= next_seq {
                    let _ = std::fs::remove_file(e.path());
                } else {
                    found.push(n);
                }
            }
        }
        found.sort_unstable();
        let mut w = SegmentWriter {
            dir: dir.to_path_buf(),
            segments: found.into(),
            current: None,
            buf: Vec::new(),
            roll_bytes: SEGMENT_BYTES,
        };
        w.delete_acked(acked, None);
        Ok(w)
    }

    /// Appends the records of `events` (sequence numbers from `first_seq`) to the current
    /// segment, not yet synced. Returns the sled key and pointer of each record.
    fn append(&mut self, accepted_at_ms: u64, events: &[Bytes], first_seq: u64) -> std::io::Result<Vec<([u8; 9], [u8; POINTER_LEN])>> {
        use std::io::Write;
        let rolled = match &self.current {
            None => true,
            Some(c) => c.len >= self.roll_bytes,
        };
        if rolled {
            // Named after `first_seq`: a file of that name can only hold bytes of a commit that
            // never completed (its sequence numbers were never given out), so truncating is safe.
            let path = segment_path(&self.dir, first_seq);
            let file = File::options().create(true).write(true).truncate(true).open(&path)?;
            fsync_dir(&self.dir);
            if self.segments.back() != Some(&first_seq) {
                self.segments.push_back(first_seq);
            }
            self.current = Some(CurrentSegment { first_seq, file, len: 0 });
        }
        let cur = self.current.as_mut().expect("set above");
        self.buf.clear();
        let mut out = Vec::new();
        let mut seq = first_seq;
        for chunk in chunk_events(events) {
            let offset = cur.len + self.buf.len() as u64;
            let start = self.buf.len();
            encode_record_into(&mut self.buf, accepted_at_ms, chunk);
            let len = (self.buf.len() - start) as u32;
            let payload: u64 = chunk.iter().map(|e| e.len() as u64).sum();
            let mut p = [0u8; POINTER_LEN];
            p[0] = 2;
            p[1..9].copy_from_slice(&accepted_at_ms.to_be_bytes());
            p[9..13].copy_from_slice(&(chunk.len() as u32).to_be_bytes());
            p[13..21].copy_from_slice(&cur.first_seq.to_be_bytes());
            p[21..29].copy_from_slice(&offset.to_be_bytes());
            p[29..33].copy_from_slice(&len.to_be_bytes());
            p[33..41].copy_from_slice(&payload.to_be_bytes());
            out.push((key(b'e', seq), p));
            seq += chunk.len() as u64;
        }
        cur.file.write_all(&self.buf)?;
        cur.len += self.buf.len() as u64;
        if self.buf.capacity() > 4 * 1024 * 1024 {
            self.buf = Vec::new();
        }
        Ok(out)
    }

    fn sync(&mut self) -> std::io::Result<()> {
        match &self.current {
            Some(c) => sync_data(&c.file),
            None => Ok(()),
        }
    }

    /// After a failed commit: the current segment may end with bytes no pointer refers to;
    /// the next commit starts a new segment.
    fn abandon(&mut self) {
        self.current = None;
    }

    /// Whether some segment holds only sequence numbers up to `acked`.
    fn has_acked(&self, acked: u64) -> bool {
        self.segments.get(1).is_some_and(|next| *next <= acked + 1)
    }

    /// Deletes the segments whose sequence numbers are all `<= acked`. The caller makes sure
    /// that `acked` is durable first. The segment being appended to is kept.
    fn delete_acked(&mut self, acked: u64, readers: Option<&SegmentReaders>) {
        while self.has_acked(acked) {
            let Some(first) = self.segments.pop_front() else { break };
            if let Some(r) = readers {
                r.files.lock().unwrap().remove(&first);
            }
            if let Err(e) = std::fs::remove_file(segment_path(&self.dir, first)) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(target: "queue", "cannot delete the acknowledged segment {first}: {e}");
                }
            }
        }
    }

    /// Deletes every segment (the queue is empty).
    fn delete_all(&mut self, readers: &SegmentReaders) {
        self.current = None;
        for first in std::mem::take(&mut self.segments) {
            let _ = std::fs::remove_file(segment_path(&self.dir, first));
        }
        readers.files.lock().unwrap().clear();
        readers.records.lock().unwrap().clear();
    }
}

impl SegmentReaders {
    /// The record stored under `first_seq`: the value itself (v1) or read through its pointer.
    fn load(&self, first_seq: u64, value: &sled::IVec) -> Result<Bytes, String> {
        let raw: &[u8] = value.as_ref();
        match raw.first() {
            Some(1) => return Ok(Bytes::from_owner(value.clone())),
            Some(2) if raw.len() == POINTER_LEN => {}
            _ => return Err(format!("record {first_seq} has an unknown format")),
        }
        if let Some((_, b)) = self.records.lock().unwrap().iter().find(|(s, _)| *s == first_seq) {
            return Ok(b.clone());
        }
        let segment = u64::from_be_bytes(raw[13..21].try_into().unwrap_or([0; 8]));
        let offset = u64::from_be_bytes(raw[21..29].try_into().unwrap_or([0; 8]));
        let len = u32::from_be_bytes(raw[29..33].try_into().unwrap_or([0; 4])) as usize;
        let file = {
            let mut files = self.files.lock().unwrap();
            match files.get(&segment) {
                Some(f) => f.clone(),
                None => {
                    let path = segment_path(&self.dir, segment);
                    let f = Arc::new(File::open(&path).map_err(|e| format!("record {first_seq}: cannot open {}: {e}", path.display()))?);
                    files.insert(segment, f.clone());
                    f
                }
            }
        };
        let mut buf = vec![0u8; len];
        use std::os::unix::fs::FileExt;
        file.read_exact_at(&mut buf, offset)
            .map_err(|e| format!("record {first_seq}: cannot read segment {segment} at {offset}: {e}"))?;
        if buf.len() < RECORD_HEADER || buf[0] != 1 || buf[9..13] != raw[9..13] {
            return Err(format!("record {first_seq} in segment {segment} at {offset} is damaged"));
        }
        let b = Bytes::from(buf);
        let mut recs = self.records.lock().unwrap();
        if recs.len() >= RECORD_CACHE {
            recs.pop_front();
        }
        recs.push_back((first_seq, b.clone()));
        Ok(b)
    }
}

/// Number of events and payload bytes of a record or pointer value, without reading a segment.
fn record_summary(value: &[u8]) -> Option<(u64, u64)> {
    match value.first() {
        Some(2) if value.len() == POINTER_LEN => Some((
            u32::from_be_bytes(value[9..13].try_into().ok()?) as u64,
            u64::from_be_bytes(value[33..41].try_into().ok()?),
        )),
        _ => None,
    }
}

struct Inner {
    root: PathBuf,
    store: RwLock<Store>,
    /// Lock order: `store`, then `segments`, then `state`.
    segments: Mutex<SegmentWriter>,
    readers: SegmentReaders,
    state: Mutex<State>,
    /// One past the last durable sequence number; readers stop before it.
    durable_next: AtomicU64,
    max_bytes: AtomicU64,
    max_quarantine: AtomicU64,
    appended: tokio::sync::Notify,
    incident: Mutex<Option<String>>,
    /// How far the queue has got, kept beside the store (see [`Witness`]).
    witness: Witness,
    /// Set by an I/O error inside sled; never cleared (see the module docs).
    failed: Mutex<Option<QueueError>>,
    fatal: tokio::sync::Notify,
    /// Appends are refused when the filesystem would keep less than this free.
    min_free: AtomicU64,
    /// The last "disk is full" refusal, shown in status until an append succeeds.
    disk_full: Mutex<Option<String>>,
    committer: Mutex<Option<mpsc::Sender<Job>>>,
    committer_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
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
fn decode_record(first_seq: u64, owner: &Bytes, w: &mut ReadWindow, out: &mut Vec<QueuedEvent>) -> bool {
    let raw: &[u8] = owner.as_ref();
    if raw.len() < RECORD_HEADER || raw[0] != 1 {
        return false;
    }
    let accepted_at_ms = u64::from_be_bytes(raw[1..9].try_into().unwrap_or([0; 8]));
    let count = u32::from_be_bytes(raw[9..13].try_into().unwrap_or([0; 4])) as u64;
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

/// Appends one record (format in the module docs) to `v`.
fn encode_record_into(v: &mut Vec<u8>, accepted_at_ms: u64, events: &[Bytes]) {
    v.reserve(RECORD_HEADER + events.iter().map(|e| 4 + e.len()).sum::<usize>());
    v.push(1u8);
    v.extend_from_slice(&accepted_at_ms.to_be_bytes());
    v.extend_from_slice(&(events.len() as u32).to_be_bytes());
    for e in events {
        v.extend_from_slice(&(e.len() as u32).to_be_bytes());
        v.extend_from_slice(e);
    }
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
    // After a `Db` of this process is dropped, one of sled's IO threads may still hold the
    // locked file for a moment (reopen in `reclaim`, tests): retry briefly. Another process
    // holding it still gets `Locked`.
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match open_sled_once(dir) {
            Err(QueueError::Locked(_)) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            r => return r,
        }
    }
}

fn open_sled_once(dir: &Path) -> Result<Store, QueueError> {
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
    let ack_file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.join(ACK_FILE))
        .map_err(|e| storage_err(dir, e))?;
    Ok(Store {
        db,
        log,
        ack_file,
        dir: dir.to_path_buf(),
    })
}

fn syncfs(store: &Store) -> Result<(), QueueError> {
    use std::os::unix::io::AsRawFd;
    // SAFETY: plain syscall on a valid, open file descriptor.
    SYNCS.fetch_add(1, Ordering::Relaxed);
    let rc = unsafe { libc::syncfs(store.log.as_raw_fd()) };
    if rc != 0 {
        return Err(storage_err(&store.dir, std::io::Error::last_os_error()));
    }
    Ok(())
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

fn fsync_dir(dir: &Path) {
    if let Ok(f) = File::open(dir) {
        SYNCS.fetch_add(1, Ordering::Relaxed);
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

        let seg_dir = root.join("segments");
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
                // The segment files belong to that database: keep them with it.
                if seg_dir.exists() {
                    if let Err(me) = std::fs::rename(&seg_dir, aside.join("segments")) {
                        return Err(storage_err(&seg_dir, format!("{e}; and moving its segments aside failed: {me}")));
                    }
                }
                incident = Some(msg);
                open_sled(&store_dir)?
            }
        };
        let db = &store.db;
        let g = |n: &str| db.get(meta_key(n)).map(u64_of).map_err(|e| storage_err(&store_dir, e));
        let state = State {
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
        };
        // sled recovers a truncated or damaged log to its last readable point without an error
        // (found by the corruption campaign): the witness says how far the queue had really got.
        let witness = Witness::open(root).map_err(|e| storage_err(root, e))?;
        let mut state = state;
        if let Some(w) = witness.read() {
            if w > state.next_seq {
                let lost = w - state.next_seq;
                let msg = format!(
                    "the queue store at {} came back shorter than it was (damaged or truncated on disk): up to {lost} events with sequence numbers {}..{} were lost and cannot be forwarded; new events continue after them. Inspect the disk; the rest of the queue is intact",
                    store_dir.display(),
                    state.next_seq,
                    w - 1
                );
                tracing::error!(target: "queue", "{msg}");
                incident = Some(match incident {
                    Some(prev) => format!("{prev}; {msg}"),
                    None => msg,
                });
                state.next_seq = w;
            }
        }
        let durable_next = state.next_seq;
        let segments = SegmentWriter::open(&seg_dir, state.next_seq, state.acked).map_err(|e| storage_err(&seg_dir, e))?;
        let inner = Arc::new(Inner {
            root: root.to_path_buf(),
            store: RwLock::new(store),
            segments: Mutex::new(segments),
            readers: SegmentReaders {
                dir: seg_dir,
                files: Mutex::new(Default::default()),
                records: Mutex::new(Default::default()),
            },
            state: Mutex::new(state),
            durable_next: AtomicU64::new(durable_next),
            max_bytes: AtomicU64::new(max_bytes),
            max_quarantine: AtomicU64::new(max_quarantine),
            appended: tokio::sync::Notify::new(),
            incident: Mutex::new(incident),
            witness,
            failed: Mutex::new(None),
            fatal: tokio::sync::Notify::new(),
            min_free: AtomicU64::new(DEFAULT_MIN_FREE_BYTES),
            disk_full: Mutex::new(None),
            committer: Mutex::new(None),
            committer_thread: Mutex::new(None),
            last_reclaim: Mutex::new(Instant::now() - Duration::from_secs(3600)),
        });
        let (tx, rx) = mpsc::channel::<Job>();
        *inner.committer.lock().unwrap() = Some(tx);
        let weak = Arc::downgrade(&inner);
        let handle = std::thread::Builder::new()
            .name("queue-commit".into())
            .spawn(move || committer_loop(weak, rx))
            .map_err(|e| storage_err(root, e))?;
        *inner.committer_thread.lock().unwrap() = Some(handle);
        let q = Queue { inner };
        // Acks newer than sled's copy (the process died before sled wrote them): apply them.
        let (file_acked, acked, next_seq) = {
            let store = q.inner.store.read().unwrap();
            let st = q.inner.state.lock().unwrap();
            (read_ack_file(&store), st.acked, st.next_seq)
        };
        match file_acked {
            Some(v) if v > acked && v < next_seq => {
                tracing::info!(target: "queue", acked = v, "applying acknowledgements recorded after the queue's last write");
                q.ack(v, vec![])?;
                let store = q.inner.store.read().unwrap();
                store.db.flush().map_err(|e| storage_err(&store.dir, e))?;
            }
            Some(v) if v == acked => {}
            _ => write_ack_file(&q.inner.store.read().unwrap(), acked)?,
        }
        Ok(q)
    }

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
        *inc = Some(match inc.take() {
            Some(prev) => format!("{prev}; {msg}"),
            None => msg,
        });
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
            // A record that cannot be read back (segment file truncated or overwritten) would
            // block delivery forever: skip it, say so in the log and `queue.incident`.
            let rec = match self.inner.readers.load(first_seq, &v) {
                Ok(rec) => rec,
                Err(e) => {
                    self.skip_damaged(first_seq, &e);
                    continue;
                }
            };
            let mark = out.len();
            if !decode_record(first_seq, &rec, &mut w, &mut out) {
                out.truncate(mark);
                self.skip_damaged(first_seq, &format!("record {first_seq} is damaged"));
                continue;
            }
            if out.len() >= max_events || w.bytes >= max_bytes {
                break;
            }
        }
        Ok(out)
    }

    /// Removes every event up to and including `upto` from the queue (the SIEM accepted them,
    /// or they move to the dead letter, given in `dead`), atomically. Before it returns, the
    /// new `acked` is in the OS page cache (the ack file), so a process crash after it does not
    /// resend these events; dead letters are `fdatasync`ed.
    pub fn ack(&self, upto: u64, dead: Vec<(DeadLetterMeta, Bytes)>) -> Result<(), QueueError> {
        check_failed(&self.inner)?;
        self.ack_inner(upto, dead)?;
        self.maybe_reclaim();
        Ok(())
    }

    /// A write through sled failed: fatal for this process (see the module docs).
    fn sled_failed(&self, e: impl std::fmt::Display) -> QueueError {
        sled_err(&self.inner, &self.inner.root.join("store"), e)
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
                let last_seq = match record_summary(&v) {
                    // A whole record acknowledged: its pointer has the sums, no read needed.
                    Some((count, payload)) if first_seq > st.acked && first_seq + count.max(1) - 1 <= upto => {
                        freed_events += count;
                        freed_bytes += payload;
                        first_seq + count.max(1) - 1
                    }
                    _ => {
                        let rec = self.inner.readers.load(first_seq, &v).map_err(|e| storage_err(&store.dir, e))?;
                        let sizes = record_event_sizes(first_seq, &rec);
                        for (seq, len) in &sizes {
                            if *seq > st.acked && *seq <= upto {
                                freed_events += 1;
                                freed_bytes += *len as u64;
                            }
                        }
                        sizes.last().map(|(s, _)| *s).unwrap_or(first_seq)
                    }
                };
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
            store.db.apply_batch(batch).map_err(|e| self.sled_failed(e))?;
            // Before the next request goes out, `acked` must survive a process crash: it is
            // written to the OS (one pwrite of 16 bytes, no sync) and re-applied at open if
            // sled's copy is older. The batch itself reaches sled's log with the next commit,
            // sled's 200 ms flusher, or `close`. (A sled `flush` here was a disk wait and a
            // wake-up of sled's 7 IO threads per request.)
            st.acked = upto;
            st.counts = counts;
            st.d_next = d_next;
            // Under the state lock, so ack files are written in the order of the acks.
            let written = write_ack_file(&store, upto);
            drop(st);
            written?;
            if !dead.is_empty() {
                // Dead letters are the only copy of a rejected event: durable now.
                store.db.flush().map_err(|e| self.sled_failed(e))?;
                sync_data(&store.log).map_err(|e| self.sled_failed(e))?;
                if dead.iter().any(|(_, d)| d.len() + 4096 > INLINE_LIMIT) {
                    // A value over sled's inline limit lives in a blob file, which sled does
                    // not fsync: sync the filesystem holding the queue.
                    syncfs(&store)?;
                }
            }
            // Segments whose events are all acknowledged go, once that is durable. If the
            // committer holds the lock, it deletes them after its own fdatasync instead.
            if let Ok(mut seg) = self.inner.segments.try_lock() {
                if seg.has_acked(upto) {
                    store.db.flush().map_err(|e| self.sled_failed(e))?;
                    sync_data(&store.log).map_err(|e| self.sled_failed(e))?;
                    seg.delete_acked(upto, Some(&self.inner.readers));
                }
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
        let entries = self.list_dead_letter(usize::MAX)?;
        let chosen: Vec<_> = entries.into_iter().filter(|e| ids.is_none_or(|ids| ids.contains(&e.id))).collect();
        // Named ids must all exist: a typo must not look like success, and a partial replay
        // would leave the operator guessing which ones moved.
        if let Some(ids) = ids {
            let mut missing: Vec<u64> = ids.iter().copied().filter(|id| !chosen.iter().any(|e| e.id == *id)).collect();
            missing.sort_unstable();
            missing.dedup();
            if !missing.is_empty() {
                return Err(QueueError::NoSuchDeadLetter(missing));
            }
        }
        if chosen.is_empty() {
            return Ok(0);
        }
        let n = chosen.len() as u64;
        {
            let store = self.inner.store.read().unwrap();
            let mut seg = self.inner.segments.lock().unwrap();
            let mut st = self.inner.state.lock().unwrap();
            let mut batch = sled::Batch::default();
            let mut counts = st.counts;
            let mut next_seq = st.next_seq;
            if requeue {
                let events: Vec<Bytes> = chosen.iter().map(|e| Bytes::from(e.data.clone())).collect();
                let bytes: u64 = events.iter().map(|e| e.len() as u64).sum();
                let written = seg.append(now_ms(), &events, next_seq).and_then(|p| seg.sync().map(|_| p));
                let pointers = match written {
                    Ok(p) => p,
                    Err(e) => {
                        seg.abandon();
                        return Err(storage_err(&seg.dir, e));
                    }
                };
                for (k, p) in pointers {
                    batch.insert(&k[..], &p[..]);
                }
                next_seq += n;
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
            let durable = store
                .db
                .apply_batch(batch)
                .and_then(|_| store.db.flush().map(|_| ()))
                .map_err(|e| self.sled_failed(e))
                .and_then(|_| sync_data(&store.log).map_err(|e| self.sled_failed(e)));
            if let Err(e) = durable {
                seg.abandon();
                return Err(e);
            }
            st.counts = counts;
            st.next_seq = next_seq;
            self.inner.durable_next.store(next_seq, Ordering::Release);
            self.inner.witness.write(next_seq);
        }
        self.inner.appended.notify_waiters();
        Ok(n)
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
        let _ = store.db.flush();
        let _ = sync_data(&store.log);
        let _ = sync_data(&self.inner.witness.file);
    }

    /// Bytes the store and its segment files occupy on disk.
    pub fn size_on_disk(&self) -> u64 {
        let store = self.inner.store.read().unwrap();
        dir_size(&store.dir) + dir_size(&self.inner.readers.dir)
    }

    /// When the queue has drained after a large backlog, rewrite the database into a fresh
    /// directory so the disk space is given back (sled never shrinks its files).
    pub fn maybe_reclaim(&self) {
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
        let mut seg = self.inner.segments.lock().unwrap();
        let st = self.inner.state.lock().unwrap();
        if st.counts.pending_events != 0 {
            return Ok(dir_size(&store.dir) + dir_size(&seg.dir));
        }
        // Nothing is pending: no pointer needs a segment any more (the rewrite below drops
        // every `e` key; until it completes, a restart finds `acked` past all of them).
        store.db.flush().map_err(|e| storage_err(&store.dir, e))?;
        sync_data(&store.log).map_err(|e| storage_err(&store.dir, e))?;
        seg.delete_all(&self.inner.readers);
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
            sync_data(&fresh.log).map_err(|e| storage_err(&new_dir, e))?;
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
        write_ack_file(&store, st.acked)?;
        drop(st);
        let _ = std::fs::remove_dir_all(root.join("store.tmp"));
        Ok(dir_size(&store_dir) + dir_size(&seg.dir))
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
    let ack_file = File::options()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(|e| storage_err(&dir, e))?;
    Ok(Store { db, log, ack_file, dir })
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

/// `<queue.path>/witness`: the next sequence number after the last commit, outside sled.
///
/// sled opens a truncated or damaged log at its last readable point without any error, so a
/// damaged store could silently lose its tail. The witness is rewritten (16 bytes, with a check
/// word) after every commit and fsynced at most once a second; at open, a store that is behind
/// it is reported as an incident naming the range lost, and sequence numbers continue after it
/// so none is reused.
struct Witness {
    file: File,
    last_sync: Mutex<Instant>,
}

const WITNESS_CHECK: u64 = 0x5EAD_0417_7E55_0002;

impl Witness {
    fn open(root: &Path) -> std::io::Result<Witness> {
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(root.join("witness"))?;
        Ok(Witness {
            file,
            last_sync: Mutex::new(Instant::now()),
        })
    }

    fn read(&self) -> Option<u64> {
        use std::os::unix::fs::FileExt;
        let mut b = [0u8; 16];
        self.file.read_exact_at(&mut b, 0).ok()?;
        let v = u64::from_be_bytes(b[..8].try_into().ok()?);
        (u64::from_be_bytes(b[8..].try_into().ok()?) == v ^ WITNESS_CHECK).then_some(v)
    }

    fn write(&self, next_seq: u64) {
        use std::os::unix::fs::FileExt;
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&next_seq.to_be_bytes());
        b[8..].copy_from_slice(&(next_seq ^ WITNESS_CHECK).to_be_bytes());
        if self.file.write_all_at(&b, 0).is_err() {
            return;
        }
        let mut last = self.last_sync.lock().unwrap();
        if last.elapsed() >= Duration::from_secs(1) {
            *last = Instant::now();
            let _ = sync_data(&self.file);
        }
    }
}

/// A sled write failed: fatal for this process (see the module docs).
fn sled_err(inner: &Inner, dir: &Path, e: impl std::fmt::Display) -> QueueError {
    let e = storage_err(dir, e);
    note_failure(inner, &e);
    e
}

/// Commits a group of requests: their records into the current segment file (`fdatasync`ed),
/// then one sled batch with the records' pointers, quarantine entries, checkpoints and counters
/// (flushed and `fdatasync`ed). Requests that do not fit under `queue.max_bytes` are refused
/// individually.
fn commit_group(inner: &Inner, reqs: Vec<AppendRequest>) -> Vec<Result<Appended, QueueError>> {
    if let Err(e) = check_failed(inner) {
        return reqs.iter().map(|_| Err(e.clone())).collect();
    }
    let store = inner.store.read().unwrap();
    let group_bytes: u64 = reqs.iter().flat_map(|r| r.events.iter()).map(|e| e.len() as u64).sum();
    if let Err(e) = check_disk_room(inner, &store.dir, group_bytes) {
        return reqs.iter().map(|_| Err(e.clone())).collect();
    }
    // The one appender from here on: sequence numbers and quarantine ids are ours to give out.
    let mut seg = inner.segments.lock().unwrap();
    let (start_seq, pending_bytes) = {
        let st = inner.state.lock().unwrap();
        (st.next_seq, st.counts.pending_bytes)
    };
    let max_bytes = inner.max_bytes.load(Ordering::Relaxed);
    let max_q = inner.max_quarantine.load(Ordering::Relaxed);
    let now = now_ms();
    let mut results = Vec::with_capacity(reqs.len());
    let mut pointers = Vec::new();
    let mut next_seq = start_seq;
    let (mut added_events, mut added_bytes) = (0u64, 0u64);
    let mut write_err = None;
    // 1. The records, into the segment file. (Acks running meanwhile only lower `pending_bytes`,
    //    so checking against the value read above is conservative.)
    for req in &reqs {
        let req_bytes: u64 = req.events.iter().map(|e| e.len() as u64).sum();
        if !req.events.is_empty() && pending_bytes + added_bytes + req_bytes > max_bytes {
            results.push(Err(QueueError::Full {
                pending_bytes: pending_bytes + added_bytes,
                max_bytes,
            }));
            continue;
        }
        if write_err.is_none() && !req.events.is_empty() {
            match seg.append(now, &req.events, next_seq) {
                Ok(p) => pointers.extend(p),
                Err(e) => write_err = Some(e),
            }
        }
        let count = req.events.len() as u64;
        results.push(Ok(Appended {
            first_seq: next_seq,
            count,
        }));
        next_seq += count;
        added_events += count;
        added_bytes += req_bytes;
    }
    let synced = match write_err {
        Some(e) => Err(e),
        None if pointers.is_empty() => Ok(()),
        None => seg.sync(),
    }
    .map_err(|e| storage_err(&seg.dir, e));
    // 2. One sled batch pointing to them, with everything that must change together.
    let applied = synced.and_then(|()| {
        let mut st = inner.state.lock().unwrap();
        let mut batch = sled::Batch::default();
        for (k, p) in &pointers {
            batch.insert(&k[..], &p[..]);
        }
        let mut counts = st.counts;
        counts.pending_events += added_events;
        counts.pending_bytes += added_bytes;
        let mut q_next = st.q_next;
        let q_start = q_next;
        let mut new_entries: Vec<(u64, Vec<u8>)> = Vec::new();
        for (req, _) in reqs.iter().zip(&results).filter(|(_, r)| r.is_ok()) {
            for (meta, line) in &req.quarantine {
                let keep = &line[..line.len().min(QUARANTINE_KEEP_BYTES)];
                new_entries.push((q_next, encode_entry(meta, keep)));
                q_next += 1;
                counts.quarantine += 1;
            }
            if let Some((id, ck)) = &req.checkpoint {
                let mut k = vec![b'c'];
                k.extend_from_slice(id);
                batch.insert(k, ck.as_slice());
            }
        }
        // Keep the quarantine bounded: evict the oldest entries beyond the limit (counted).
        // Ids are consecutive, so the live ones are exactly the last `quarantine` ids before
        // `q_next`: evict from the oldest live id on (new entries that would be evicted at once
        // are simply not written).
        let mut evict = Vec::new();
        if counts.quarantine > max_q {
            let excess = counts.quarantine - max_q;
            let oldest = q_next - counts.quarantine;
            evict.extend((oldest..(oldest + excess).min(q_start)).map(|id| key(b'q', id)));
            new_entries.retain(|(id, _)| *id >= oldest + excess);
            counts.quarantine -= excess;
            counts.quarantine_evicted += excess;
            tracing::warn!(target: "queue", evicted = excess, "quarantine is over queue.max_quarantine_entries; the oldest entries were dropped (counted in status as quarantine.evicted)");
        }
        // Quarantine entries go in small batches of their own, before the main one: sled's
        // memory grows steeply with the number of keys in one batch (a flood of tiny bad lines
        // took it to ~1 GiB), and these need no atomicity with the events: after a crash between
        // the two, the lines are read again and their entries rewritten under the same ids.
        for chunk in new_entries.chunks(QUARANTINE_KEYS_PER_BATCH) {
            let mut qb = sled::Batch::default();
            for (id, v) in chunk {
                qb.insert(key(b'q', *id).to_vec(), v.as_slice());
            }
            if let Err(e) = store.db.apply_batch(qb) {
                return Err(sled_err(inner, &store.dir, e));
            }
        }
        for chunk in evict.chunks(QUARANTINE_KEYS_PER_BATCH) {
            let mut qb = sled::Batch::default();
            for k in chunk {
                qb.remove(k.to_vec());
            }
            if let Err(e) = store.db.apply_batch(qb) {
                return Err(sled_err(inner, &store.dir, e));
            }
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
                Ok(st.acked)
            }
            Err(e) => Err(sled_err(inner, &store.dir, e)),
        }
    });
    // 3. Durable. This also makes every ack applied before it durable.
    let durable = applied.and_then(|acked| {
        store.db.flush().map_err(|e| sled_err(inner, &store.dir, e))?;
        sync_data(&store.log).map_err(|e| sled_err(inner, &store.dir, e))?;
        Ok(acked)
    });
    match durable {
        Ok(acked) => {
            if results.iter().any(|r| r.is_ok()) {
                inner.disk_full.lock().unwrap().take();
            }
            inner.durable_next.store(next_seq, Ordering::Release);
            inner.witness.write(next_seq);
            inner.appended.notify_waiters();
            seg.delete_acked(acked, Some(&inner.readers));
            results
        }
        Err(e) => {
            tracing::error!(target: "queue", "commit failed: {e}");
            seg.abandon();
            // Nothing is acknowledged to the sources; they retry. The in-memory counters may
            // now be ahead of disk; they are re-read at the next open.
            results
                .into_iter()
                .map(|r| match r {
                    Ok(_) => Err(QueueError::Storage {
                        path: store.dir.clone(),
                        message: e.to_string(),
                    }),
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
    fn a_store_that_comes_back_shorter_is_an_incident_and_sequence_numbers_continue() {
        let dir = tempfile::tempdir().unwrap();
        {
            let q = Queue::open(dir.path(), 1 << 30, 100).unwrap();
            q.append_blocking(req(&["a", "b", "c"])).unwrap();
            q.close();
        }
        // The store is lost (as sled does, silently, when its log is truncated).
        std::fs::remove_dir_all(dir.path().join("store")).unwrap();
        let q = Queue::open(dir.path(), 1 << 30, 100).unwrap();
        let inc = q.incident().expect("the loss is reported");
        assert!(inc.contains("up to 3 events with sequence numbers 1..3 were lost"), "{inc}");
        assert_eq!(q.append_blocking(req(&["d"])).unwrap().first_seq, 4, "no sequence number is reused");
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
    fn large_single_event_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path(), 1 << 30, 100).unwrap();
        let big = "y".repeat(300 * 1024);
        q.append_blocking(req(&[big.as_str(), "small"])).unwrap();
        let got = q.read(0, 10, 1 << 30).unwrap();
        assert_eq!(got[0].data.len(), big.len());
        assert_eq!(&got[1].data[..], b"small");
    }

    fn segment_files(root: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(root.join("segments"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        v.sort();
        v
    }

    fn numbered(from: usize, n: usize) -> AppendRequest {
        AppendRequest {
            events: (from..from + n).map(|i| Bytes::from(format!("{i}:{}", "x".repeat(200)))).collect(),
            quarantine: vec![],
            checkpoint: None,
        }
    }

    #[test]
    fn segments_are_deleted_only_once_acknowledged_and_survive_restarts() {
        let dir = tempfile::tempdir().unwrap();
        {
            let q = Queue::open(dir.path(), 1 << 30, 100).unwrap();
            q.inner.segments.lock().unwrap().roll_bytes = 8 * 1024;
            for i in 0..10 {
                q.append_blocking(numbered(i * 100, 100)).unwrap();
            }
            let files = segment_files(dir.path());
            assert!(files.len() >= 5, "{files:?}");
            // Ack into the middle of the third segment's events: the first two go, no others.
            let third: u64 = files[2].trim_end_matches(".seg").parse().unwrap();
            q.ack(third + 5, vec![]).unwrap();
            assert_eq!(segment_files(dir.path()), files[2..].to_vec());
            let got = q.read(q.acked(), 3, 1 << 20).unwrap();
            assert_eq!(got[0].seq, third + 6);
            assert!(got[0].data.starts_with(format!("{}:", third + 5).as_bytes()));
            q.close();
        }
        let q = Queue::open(dir.path(), 1 << 30, 100).unwrap();
        assert_eq!(q.counts().pending_events, 1000 - q.acked());
        let all = q.read(q.acked(), 10_000, 1 << 30).unwrap();
        assert_eq!(all.len() as u64, 1000 - q.acked());
        for (i, e) in all.iter().enumerate() {
            let n = q.acked() + i as u64;
            assert!(e.data.starts_with(format!("{n}:").as_bytes()), "event {}", e.seq);
        }
        q.ack(1000, vec![]).unwrap();
        assert_eq!(q.counts(), Counts::default());
        assert!(segment_files(dir.path()).len() <= 1, "only the segment being appended to may stay");
        let a = q.append_blocking(numbered(1000, 1)).unwrap();
        assert_eq!(a.first_seq, 1001);
        assert_eq!(q.read(1000, 10, 1 << 20).unwrap().len(), 1);
    }

    #[test]
    fn bytes_of_a_commit_that_never_completed_are_never_read() {
        let dir = tempfile::tempdir().unwrap();
        {
            let q = Queue::open(dir.path(), 1 << 30, 100).unwrap();
            q.append_blocking(req(&["a", "b"])).unwrap();
            q.close();
        }
        // As if a commit had written its records, then crashed before its sled batch: a segment
        // named after the next sequence number, and garbage at the end of the current one.
        std::fs::write(segment_path(&dir.path().join("segments"), 3), b"\x01garbage").unwrap();
        let cur = segment_path(&dir.path().join("segments"), 1);
        let mut f = File::options().append(true).open(&cur).unwrap();
        std::io::Write::write_all(&mut f, b"\x01more garbage").unwrap();
        drop(f);
        let q = Queue::open(dir.path(), 1 << 30, 100).unwrap();
        assert!(!segment_path(&dir.path().join("segments"), 3).exists());
        q.append_blocking(req(&["c"])).unwrap();
        let got = q.read(0, 10, 1 << 20).unwrap();
        assert_eq!(got.iter().map(|e| &e.data[..]).collect::<Vec<_>>(), vec![&b"a"[..], b"b", b"c"]);
    }

    #[test]
    fn records_stored_inline_by_earlier_versions_are_still_read_and_acked() {
        let dir = tempfile::tempdir().unwrap();
        {
            let q = Queue::open(dir.path(), 1 << 30, 100).unwrap();
            let mut v1 = Vec::new();
            encode_record_into(&mut v1, now_ms(), &[ev("old1"), ev("old2")]);
            let store = q.inner.store.read().unwrap();
            let mut b = sled::Batch::default();
            b.insert(&key(b'e', 1)[..], v1);
            b.insert(meta_key("next_seq"), &3u64.to_be_bytes());
            b.insert(meta_key("pending_events"), &2u64.to_be_bytes());
            b.insert(meta_key("pending_bytes"), &8u64.to_be_bytes());
            store.db.apply_batch(b).unwrap();
            store.db.flush().unwrap();
        }
        let q = Queue::open(dir.path(), 1 << 30, 100).unwrap();
        q.append_blocking(req(&["new"])).unwrap();
        let got = q.read(0, 10, 1 << 20).unwrap();
        assert_eq!(
            got.iter().map(|e| &e.data[..]).collect::<Vec<_>>(),
            vec![&b"old1"[..], b"old2", b"new"]
        );
        q.ack(1, vec![]).unwrap();
        assert_eq!(q.counts().pending_bytes, 4 + 3);
        q.ack(3, vec![]).unwrap();
        assert_eq!(q.counts(), Counts::default());
    }

    #[test]
    fn acks_survive_a_crash_before_sled_writes_them() {
        let dir = tempfile::tempdir().unwrap();
        {
            let q = Queue::open(dir.path(), 1 << 30, 100).unwrap();
            q.append_blocking(req(&["a", "b", "c", "d"])).unwrap();
            q.ack(3, vec![]).unwrap();
            // A crash now: sled's copy of the ack may never reach its log. Emulate it by putting
            // sled's `acked` and counters back as they were, as a restart would find them.
            let store = q.inner.store.read().unwrap();
            let mut b = sled::Batch::default();
            b.insert(meta_key("acked"), &0u64.to_be_bytes());
            b.insert(meta_key("pending_events"), &4u64.to_be_bytes());
            b.insert(meta_key("pending_bytes"), &4u64.to_be_bytes());
            store.db.apply_batch(b).unwrap();
            store.db.flush().unwrap();
        }
        let q = Queue::open(dir.path(), 1 << 30, 100).unwrap();
        assert_eq!(q.acked(), 3, "the ack file is applied at open");
        assert_eq!(q.counts().pending_events, 1);
        assert_eq!(q.counts().pending_bytes, 1);
        let got = q.read(q.acked(), 10, 1 << 20).unwrap();
        assert_eq!(got.iter().map(|e| &e.data[..]).collect::<Vec<_>>(), vec![&b"d"[..]]);
    }

    #[test]
    fn a_stale_or_damaged_ack_file_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        {
            let q = Queue::open(dir.path(), 1 << 30, 100).unwrap();
            q.append_blocking(req(&["a", "b"])).unwrap();
            q.close();
        }
        std::fs::write(dir.path().join("store").join(ACK_FILE), [0xFFu8; 16]).unwrap();
        let q = Queue::open(dir.path(), 1 << 30, 100).unwrap();
        assert_eq!((q.acked(), q.counts().pending_events), (0, 2));
        q.close();
        drop(q);
        // A value from beyond this store's sequence numbers (e.g. a replaced store) too.
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&99u64.to_be_bytes());
        b[8..].copy_from_slice(&(99 ^ ACK_FILE_CHECK).to_be_bytes());
        std::fs::write(dir.path().join("store").join(ACK_FILE), b).unwrap();
        let q = Queue::open(dir.path(), 1 << 30, 100).unwrap();
        assert_eq!((q.acked(), q.counts().pending_events), (0, 2));
    }
}
