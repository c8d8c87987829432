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
//! segment in one `write`, and the segment is `fdatasync`ed: the only disk wait. The frame is
//! then applied to sled (pointers, checkpoints, counters, `wal_pos`) *without* a sled flush;
//! at open, frames after sled's `wal_pos` are replayed. A crash before the `fdatasync`
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
//! | a dead letter is never lost | sled flush + `fdatasync` of sled's log before `ack` returns |
//! | a segment is deleted only when nothing needs it | sled flush + `fdatasync` (frames applied and `acked` durable) before the unlink |
//! | a new segment file's name survives a power loss | `fsync` of `segments/` after creating it |
//!
//! sled is flushed (its `flush`, then `fdatasync` of its log) only: when the committer settles
//! after activity, every [`FLUSH_EVERY`] under steady load, before a segment is deleted, for
//! dead letters and operator commands, and at close. At idle nothing runs: the committer
//! blocks in `recv`, and sled's own periodic flusher is off.
//!
//! Group commit adapts to the rate: a request after a quiet spell is committed at once; one
//! that follows the previous commit within [`COMMIT_GAP`] waits out the gap while others join
//! it, unless its group is already [`COMMIT_EAGER_BYTES`] (bulk), so at a trickle there are at
//! most 1/[`COMMIT_GAP`] `fdatasync`s per second, and in bulk commits stay large.
//!
//! A segment file is deleted only once every sequence number in it is acknowledged *and* that
//! acknowledgement is durable.
//!
//! Acks: an ack applies one sled batch (pointers removed, counters, `acked`) without a sled
//! flush, and writes `acked` to `store/acked` (16 bytes, `pwrite`, no sync), which `open`
//! re-applies when sled's copy is older, as it does the `acked` of the newest replayed frame:
//! a killed process resends at most the requests in flight; a power loss may resend what was
//! acked since the last commit or settle.
//!
//! Invariants:
//! - sequence numbers only grow; none is reused, even across restarts (`m next_seq`);
//! - `append` returns only once the frame holding its records, checkpoint and quarantine
//!   entries is `fdatasync`ed (sled's own `flush` is `sync_file_range`, which is not power-loss
//!   safe, and is never what an append waits for);
//! - every frame is applied to sled exactly once: the batch that applies it moves `wal_pos`;
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

mod wal;

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

/// A record's sled key and pointer value.
type Pointer = ([u8; 9], [u8; POINTER_LEN]);

/// The pointer to record `r` of the frame at `frame_at` in segment `segment`.
fn pointer(accepted_at_ms: u64, r: &wal::RecordPos, segment: u64, frame_at: u64) -> Pointer {
    let mut p = [0u8; POINTER_LEN];
    p[0] = 2;
    p[1..9].copy_from_slice(&accepted_at_ms.to_be_bytes());
    p[9..13].copy_from_slice(&r.count.to_be_bytes());
    p[13..21].copy_from_slice(&segment.to_be_bytes());
    p[21..29].copy_from_slice(&(frame_at + r.offset_in_frame as u64).to_be_bytes());
    p[29..33].copy_from_slice(&r.len.to_be_bytes());
    p[33..41].copy_from_slice(&r.payload.to_be_bytes());
    (key(b'e', r.first_seq), p)
}

/// A position in the write-ahead log: the end of the last frame sled has applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct WalPos {
    segment: u64,
    offset: u64,
}

impl WalPos {
    fn to_bytes(self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.segment.to_be_bytes());
        b[8..].copy_from_slice(&self.offset.to_be_bytes());
        b
    }

    fn from_bytes(b: &[u8]) -> Option<WalPos> {
        Some(WalPos {
            segment: u64::from_be_bytes(b.get(..8)?.try_into().ok()?),
            offset: u64::from_be_bytes(b.get(8..16)?.try_into().ok()?),
        })
    }
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

    /// Appends the frame of commit `c` to the current segment (one `write`, not yet synced),
    /// starting a new segment first if the current one is full or there is none. Returns the
    /// sled key and pointer of each record, and the WAL position after the frame.
    fn append_frame(&mut self, c: &wal::CommitOut<'_>) -> std::io::Result<(Vec<Pointer>, WalPos)> {
        use std::io::Write;
        let roll = match &self.current {
            None => true,
            // A new segment is named after `first_seq`: never the current one's own name.
            Some(cur) => cur.len >= self.roll_bytes && cur.first_seq != c.first_seq,
        };
        self.buf.clear();
        if roll {
            // A file of this name can only hold frames of commits whose sequence numbers were
            // never given out (`open` replays, then deletes such files), so truncating is safe.
            let path = segment_path(&self.dir, c.first_seq);
            let file = File::options().create(true).write(true).truncate(true).open(&path)?;
            fsync_dir(&self.dir);
            if self.segments.back() != Some(&c.first_seq) {
                self.segments.push_back(c.first_seq);
            }
            self.current = Some(CurrentSegment {
                first_seq: c.first_seq,
                file,
                len: 0,
            });
            self.buf.extend_from_slice(wal::SEGMENT_MAGIC);
        }
        let cur = self.current.as_mut().expect("set above");
        let frame_at = cur.len + self.buf.len() as u64;
        let records = wal::encode(c, &mut self.buf);
        let out = records
            .iter()
            .map(|r| pointer(c.accepted_at_ms, r, cur.first_seq, frame_at))
            .collect();
        cur.file.write_all(&self.buf)?;
        cur.len += self.buf.len() as u64;
        if self.buf.capacity() > 4 * 1024 * 1024 {
            self.buf = Vec::new();
        }
        Ok((
            out,
            WalPos {
                segment: cur.first_seq,
                offset: cur.len,
            },
        ))
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
    committer: Mutex<Option<mpsc::Sender<Work>>>,
    /// sled holds changes that no flush has made durable yet (see [`settle`]).
    sled_dirty: std::sync::atomic::AtomicBool,
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
/// Number of events and payload bytes of a record (format v1), if it is well formed.
fn record_totals(raw: &[u8]) -> Option<(u32, u64)> {
    if raw.len() < RECORD_HEADER || raw[0] != 1 {
        return None;
    }
    let count = u32::from_be_bytes(raw[9..13].try_into().ok()?);
    let (mut pos, mut payload) = (RECORD_HEADER, 0u64);
    for _ in 0..count {
        let len = u32::from_be_bytes(raw.get(pos..pos + 4)?.try_into().ok()?) as usize;
        pos = pos.checked_add(4 + len)?;
        if pos > raw.len() {
            return None;
        }
        payload += len as u64;
    }
    (pos == raw.len()).then_some((count, payload))
}

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
    let cfg = sled::Config::new().path(dir).cache_capacity(SLED_CACHE_BYTES).flush_every_ms(None);
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
        // Commits whose frames are durable but that sled had not written when the process
        // stopped: replay them (see `wal`).
        let mut state = state;
        let (wal_acked, wal_incident) = replay_wal(&store, &seg_dir, &mut state)?;
        if let Some(msg) = wal_incident {
            incident = Some(match incident {
                Some(prev) => format!("{prev}; {msg}"),
                None => msg,
            });
        }
        // sled recovers a truncated or damaged log to its last readable point without an error
        // (found by the corruption campaign): the witness says how far the queue had really got.
        let witness = Witness::open(root).map_err(|e| storage_err(root, e))?;
        fsync_dir(root);
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
            sled_dirty: std::sync::atomic::AtomicBool::new(false),
            committer_thread: Mutex::new(None),
            last_reclaim: Mutex::new(Instant::now() - Duration::from_secs(3600)),
        });
        let (tx, rx) = mpsc::channel::<Work>();
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
        // The newest of: the ack file, and the `acked` carried by the replayed frames.
        let file_acked = match file_acked {
            Some(v) => Some(v.max(wal_acked)),
            None if wal_acked > acked => Some(wal_acked),
            None => None,
        };
        match file_acked {
            Some(v) if v > acked && v < next_seq => {
                tracing::info!(target: "queue", acked = v, "applying acknowledgements recorded after the queue's last write");
                q.ack(v, vec![])?;
                let store = q.inner.store.read().unwrap();
                flush_sled(&q.inner, &store)?;
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
            sender.send(Work::Append(Job { req, reply: tx })).map_err(|_| QueueError::Closed)?;
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
                flush_sled(&self.inner, &store)?;
                if dead.iter().any(|(_, d)| d.len() + 4096 > INLINE_LIMIT) {
                    // A value over sled's inline limit lives in a blob file, which sled does
                    // not fsync: sync the filesystem holding the queue.
                    syncfs(&store)?;
                }
            } else if !self.inner.sled_dirty.swap(true, Ordering::AcqRel) {
                // Durable with the next commit's frame (it carries `acked`) or, if none comes,
                // when the committer settles.
                if let Some(tx) = &*self.inner.committer.lock().unwrap() {
                    let _ = tx.send(Work::Dirty);
                }
            }
            // Segments whose events are all acknowledged go, once that is durable. If the
            // committer holds the lock, it deletes them after its own commit instead.
            if let Ok(mut seg) = self.inner.segments.try_lock() {
                if seg.has_acked(upto) {
                    flush_sled(&self.inner, &store)?;
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
            // One frame like a commit (the re-queued events and the removals), then sled is
            // flushed: rare, operator-driven, and the operator is told it is done.
            let store = self.inner.store.read().unwrap();
            let mut seg = self.inner.segments.lock().unwrap();
            let (first_seq, q_next, acked) = {
                let st = self.inner.state.lock().unwrap();
                (st.next_seq, st.q_next, st.acked)
            };
            let events: Vec<Bytes> = if requeue {
                chosen.iter().map(|e| Bytes::from(e.data.clone())).collect()
            } else {
                Vec::new()
            };
            let bytes: u64 = events.iter().map(|e| e.len() as u64).sum();
            let next_seq = first_seq + events.len() as u64;
            let deltas = wal::Deltas {
                pending_events: events.len() as i64,
                pending_bytes: bytes as i64,
                dead_letter: -(n as i64),
                ..Default::default()
            };
            let commit = wal::CommitOut {
                first_seq,
                next_seq,
                q_next,
                acked,
                accepted_at_ms: now_ms(),
                deltas,
                records: chunk_events(&events),
                ops: chosen.iter().map(|e| (key(b'd', e.id).to_vec(), None)).collect(),
            };
            let (pointers, pos) = write_durably(&mut seg, &commit)?;
            let mut st = self.inner.state.lock().unwrap();
            let counts = add_deltas(st.counts, deltas);
            apply_commit(&store.db, &pointers, &commit.ops, &counts, (next_seq, q_next), pos).map_err(|e| self.sled_failed(e))?;
            st.counts = counts;
            st.next_seq = next_seq;
            drop(st);
            self.inner.durable_next.store(next_seq, Ordering::Release);
            self.inner.witness.write(next_seq);
            flush_sled(&self.inner, &store)?;
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

/// Replays into sled the frames after its `wal_pos` (each exactly once: the batch that applies a
/// frame moves `wal_pos` past it), then flushes sled. Returns the highest `acked` the frames
/// carry, and an incident if a segment is damaged before its end.
fn replay_wal(store: &Store, seg_dir: &Path, state: &mut State) -> Result<(u64, Option<String>), QueueError> {
    let db = &store.db;
    let from = db
        .get(meta_key("wal_pos"))
        .map_err(|e| storage_err(&store.dir, e))?
        .and_then(|v| WalPos::from_bytes(&v))
        .unwrap_or(WalPos { segment: 0, offset: 0 });
    let mut names: Vec<u64> = match std::fs::read_dir(seg_dir) {
        Ok(rd) => rd
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.strip_suffix(".seg")?.parse().ok())
            .filter(|n| *n >= from.segment)
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(storage_err(seg_dir, e)),
    };
    names.sort_unstable();
    let (mut acked, mut replayed, mut incidents) = (0u64, 0u64, Vec::new());
    for name in names {
        let path = segment_path(seg_dir, name);
        let file = File::open(&path).map_err(|e| storage_err(&path, e))?;
        if !wal::is_wal(&file) {
            continue;
        }
        let start = if name == from.segment { from.offset } else { 0 };
        let mut failed = None;
        let end = wal::scan(&file, start, |at, c, end| {
            if failed.is_some() {
                return;
            }
            let pointers: Vec<Pointer> = c.records.iter().map(|r| pointer(c.accepted_at_ms, r, name, at)).collect();
            let counts = add_deltas(state.counts, c.deltas);
            let seqs = (state.next_seq.max(c.next_seq), state.q_next.max(c.q_next));
            let pos = WalPos {
                segment: name,
                offset: end,
            };
            match apply_commit(db, &pointers, &c.ops, &counts, seqs, pos) {
                Ok(()) => {
                    state.counts = counts;
                    (state.next_seq, state.q_next) = seqs;
                    acked = acked.max(c.acked);
                    replayed += 1;
                }
                Err(e) => failed = Some(storage_err(&store.dir, e)),
            }
        })
        .map_err(|e| storage_err(&path, e))?;
        if let Some(e) = failed {
            return Err(e);
        }
        match end {
            None => {}
            Some((at, wal::Bad::Truncated)) => {
                tracing::info!(target: "queue", segment = %path.display(), offset = at, "a commit torn by a crash was found at the end of a segment and ignored (it was never acknowledged)");
            }
            Some((at, wal::Bad::Damaged(why))) => {
                let msg = format!(
                    "the queue's write-ahead log {} is damaged at byte {at} ({why}); commits after that point in this file could not be recovered. Inspect the disk; the rest of the queue is intact",
                    path.display()
                );
                tracing::error!(target: "queue", "{msg}");
                incidents.push(msg);
            }
        }
    }
    if replayed > 0 {
        tracing::info!(target: "queue", commits = replayed, next_seq = state.next_seq, "replayed commits from the write-ahead log");
        db.flush().map_err(|e| storage_err(&store.dir, e))?;
        sync_data(&store.log).map_err(|e| storage_err(&store.dir, e))?;
    }
    Ok((acked, (!incidents.is_empty()).then(|| incidents.join("; "))))
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

/// What the committer thread is asked to do.
enum Work {
    Append(Job),
    /// sled has changes that are not durable (an ack): flush once things settle.
    Dirty,
}

/// At a trickle, commits are at least this far apart: a request arriving sooner waits, and
/// those arriving meanwhile share its `fdatasync`. (At most 1/GAP fdatasyncs per second.)
const COMMIT_GAP: Duration = Duration::from_millis(25);
/// A group that has this many bytes is committed at once (bulk: no waiting).
const COMMIT_EAGER_BYTES: usize = 64 * 1024;
/// A group is cut at this many bytes.
const COMMIT_MAX_BYTES: usize = 8 * 1024 * 1024;
/// sled changes are flushed after this long without a commit or ack (bounds the replay at
/// open and makes acks durable when no commit follows them).
const SETTLE: Duration = Duration::from_secs(2);
/// While commits keep coming, sled is still flushed this often.
const FLUSH_EVERY: Duration = Duration::from_secs(30);

fn job_bytes(j: &Job) -> usize {
    j.req.events.iter().map(|e| e.len()).sum::<usize>() + j.req.quarantine.iter().map(|(_, l)| l.len()).sum::<usize>()
}

/// The group committer. Blocks in `recv` while there is nothing to do (no timer at idle).
/// A request after a quiet spell is committed at once; one that follows the last commit by less
/// than [`COMMIT_GAP`] waits out the gap while more requests join it, unless the group is
/// already large (bulk), so `fdatasync`s per second stay far below events per second at steady
/// rates while bulk commits stay large.
fn committer_loop(inner: std::sync::Weak<Inner>, rx: mpsc::Receiver<Work>) {
    let mut last_commit = Instant::now() - COMMIT_GAP;
    let mut last_flush = Instant::now();
    let mut dirty = false;
    loop {
        let first = if dirty {
            match rx.recv_timeout(SETTLE) {
                Ok(w) => w,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let Some(inner) = inner.upgrade() else { break };
                    settle(&inner);
                    dirty = false;
                    last_flush = Instant::now();
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        } else {
            match rx.recv() {
                Ok(w) => w,
                Err(_) => break,
            }
        };
        dirty = true;
        let Work::Append(first) = first else { continue };
        let mut bytes = job_bytes(&first);
        let mut jobs = vec![first];
        let wait_until = last_commit + COMMIT_GAP;
        while bytes < COMMIT_MAX_BYTES {
            let next = if bytes >= COMMIT_EAGER_BYTES || Instant::now() >= wait_until {
                rx.try_recv().ok()
            } else {
                // A timeout ends the wait: the group is committed below.
                rx.recv_timeout(wait_until.saturating_duration_since(Instant::now())).ok()
            };
            match next {
                Some(Work::Append(j)) => {
                    bytes += job_bytes(&j);
                    jobs.push(j);
                }
                Some(Work::Dirty) => {}
                None => break,
            }
        }
        let Some(inner) = inner.upgrade() else { break };
        last_commit = Instant::now();
        let (reqs, replies): (Vec<_>, Vec<_>) = jobs.into_iter().map(|j| (j.req, j.reply)).unzip();
        let results = commit_group(&inner, reqs);
        for (reply, result) in replies.into_iter().zip(results) {
            let _ = reply.send(result);
        }
        if last_flush.elapsed() >= FLUSH_EVERY {
            settle(&inner);
            last_flush = Instant::now();
        }
    }
}

/// Flushes sled if anything is not yet durable in it (see [`SETTLE`]).
fn settle(inner: &Inner) {
    if !inner.sled_dirty.load(Ordering::Acquire) || check_failed(inner).is_err() {
        return;
    }
    let store = inner.store.read().unwrap();
    if let Err(e) = flush_sled(inner, &store) {
        tracing::error!(target: "queue", "{e}");
    }
}

/// `<queue.path>/witness`: the next sequence number after the last commit, outside sled.
///
/// sled opens a truncated or damaged log at its last readable point without any error, so a
/// damaged store could silently lose its tail. The write-ahead log restores what sled lost as
/// long as the segments hold it; the witness covers the rest. It is rewritten (16 bytes, with a
/// check word) after every commit and fsynced with every sled flush; at open, a store that is
/// behind it (after the replay) is reported as an incident naming the range lost, and sequence
/// numbers continue after it so none is reused.
struct Witness {
    file: File,
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
        Ok(Witness { file })
    }

    fn read(&self) -> Option<u64> {
        use std::os::unix::fs::FileExt;
        let mut b = [0u8; 16];
        self.file.read_exact_at(&mut b, 0).ok()?;
        let v = u64::from_be_bytes(b[..8].try_into().ok()?);
        (u64::from_be_bytes(b[8..].try_into().ok()?) == v ^ WITNESS_CHECK).then_some(v)
    }

    /// Records `next_seq` (one `pwrite`, no sync): enough for a process crash; [`Witness::sync`]
    /// makes it durable with each sled flush.
    fn write(&self, next_seq: u64) {
        use std::os::unix::fs::FileExt;
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&next_seq.to_be_bytes());
        b[8..].copy_from_slice(&(next_seq ^ WITNESS_CHECK).to_be_bytes());
        let _ = self.file.write_all_at(&b, 0);
    }

    fn sync(&self) {
        let _ = sync_data(&self.file);
    }
}

/// A sled write failed: fatal for this process (see the module docs).
fn sled_err(inner: &Inner, dir: &Path, e: impl std::fmt::Display) -> QueueError {
    let e = storage_err(dir, e);
    note_failure(inner, &e);
    e
}

fn add_deltas(c: Counts, d: wal::Deltas) -> Counts {
    let add = |v: u64, d: i64| v.saturating_add_signed(d);
    Counts {
        pending_events: add(c.pending_events, d.pending_events),
        pending_bytes: add(c.pending_bytes, d.pending_bytes),
        dead_letter: add(c.dead_letter, d.dead_letter),
        quarantine: add(c.quarantine, d.quarantine),
        quarantine_evicted: add(c.quarantine_evicted, d.quarantine_evicted),
    }
}

/// Applies a commit whose frame is durable to sled, without a sled flush: quarantine entries in
/// small batches of their own (sled's memory grows steeply with the keys in one batch; they need
/// no atomicity with the events, a replay rewrites them under the same ids), then one batch with
/// the records' pointers, the other writes (checkpoints with the events they cover), the
/// counters and `wal_pos`. The live commit and the replay at open both come through here.
fn apply_commit(db: &sled::Db, pointers: &[Pointer], ops: &[wal::Op], counts: &Counts, seqs: (u64, u64), pos: WalPos) -> sled::Result<()> {
    let (next_seq, q_next) = seqs;
    let (quarantine, rest): (Vec<&wal::Op>, Vec<&wal::Op>) = ops.iter().partition(|(k, _)| k.first() == Some(&b'q'));
    for chunk in quarantine.chunks(QUARANTINE_KEYS_PER_BATCH) {
        let mut qb = sled::Batch::default();
        for (k, v) in chunk {
            match v {
                Some(v) => qb.insert(k.as_slice(), v.as_slice()),
                None => qb.remove(k.as_slice()),
            }
        }
        db.apply_batch(qb)?;
    }
    let mut batch = sled::Batch::default();
    for (k, p) in pointers {
        batch.insert(&k[..], &p[..]);
    }
    for (k, v) in rest {
        match v {
            Some(v) => batch.insert(k.as_slice(), v.as_slice()),
            None => batch.remove(k.as_slice()),
        }
    }
    batch.insert(meta_key("next_seq"), &next_seq.to_be_bytes());
    batch.insert(meta_key("q_next"), &q_next.to_be_bytes());
    batch.insert(meta_key("pending_events"), &counts.pending_events.to_be_bytes());
    batch.insert(meta_key("pending_bytes"), &counts.pending_bytes.to_be_bytes());
    batch.insert(meta_key("dl_count"), &counts.dead_letter.to_be_bytes());
    batch.insert(meta_key("q_count"), &counts.quarantine.to_be_bytes());
    batch.insert(meta_key("q_evicted"), &counts.quarantine_evicted.to_be_bytes());
    batch.insert(meta_key("wal_pos"), &pos.to_bytes());
    db.apply_batch(batch)
}

/// Writes the frame of `c` to the current segment and `fdatasync`s it: the one disk wait of a
/// commit. On failure the segment is abandoned (the next commit starts a new one).
fn write_durably(seg: &mut SegmentWriter, c: &wal::CommitOut<'_>) -> Result<(Vec<Pointer>, WalPos), QueueError> {
    let written = seg.append_frame(c).and_then(|r| seg.sync().map(|()| r));
    written.map_err(|e| {
        seg.abandon();
        storage_err(&seg.dir, e)
    })
}

/// Commits a group of requests: one frame with their records, checkpoints, quarantine entries
/// and counter deltas, written to the current segment and `fdatasync`ed (the only disk wait),
/// then applied to sled without a flush (see the module docs). Requests that do not fit under
/// `queue.max_bytes` are refused individually.
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
    let (start_seq, q_start, before) = {
        let st = inner.state.lock().unwrap();
        (st.next_seq, st.q_next, st.counts)
    };
    let max_bytes = inner.max_bytes.load(Ordering::Relaxed);
    let max_q = inner.max_quarantine.load(Ordering::Relaxed);
    let mut results = Vec::with_capacity(reqs.len());
    let mut events: Vec<Bytes> = Vec::new();
    let mut next_seq = start_seq;
    let mut added_bytes = 0u64;
    // (Acks running meanwhile only lower `pending_bytes`, so checking against the value read
    // above is conservative.)
    for req in &reqs {
        let req_bytes: u64 = req.events.iter().map(|e| e.len() as u64).sum();
        if !req.events.is_empty() && before.pending_bytes + added_bytes + req_bytes > max_bytes {
            results.push(Err(QueueError::Full {
                pending_bytes: before.pending_bytes + added_bytes,
                max_bytes,
            }));
            continue;
        }
        events.extend(req.events.iter().cloned());
        let count = req.events.len() as u64;
        results.push(Ok(Appended {
            first_seq: next_seq,
            count,
        }));
        next_seq += count;
        added_bytes += req_bytes;
    }
    let mut ops: Vec<wal::Op> = Vec::new();
    let mut q_next = q_start;
    let mut added_q = 0u64;
    for (req, _) in reqs.iter().zip(&results).filter(|(_, r)| r.is_ok()) {
        for (meta, line) in &req.quarantine {
            let keep = &line[..line.len().min(QUARANTINE_KEEP_BYTES)];
            ops.push((key(b'q', q_next).to_vec(), Some(encode_entry(meta, keep))));
            q_next += 1;
            added_q += 1;
        }
        if let Some((id, ck)) = &req.checkpoint {
            let mut k = vec![b'c'];
            k.extend_from_slice(id);
            ops.push((k, Some(ck.clone())));
        }
    }
    // Keep the quarantine bounded: evict the oldest entries beyond the limit (counted). Ids are
    // consecutive, so the live ones are exactly the last `quarantine` ids before `q_next`: evict
    // from the oldest live id on (new entries that would be evicted at once are not written).
    let mut evicted = 0u64;
    let live = before.quarantine + added_q;
    if live > max_q {
        evicted = live - max_q;
        let oldest = q_next - live;
        let first_kept = oldest + evicted;
        ops.retain(|(k, _)| k.first() != Some(&b'q') || u64::from_be_bytes(k[1..9].try_into().unwrap_or([0; 8])) >= first_kept);
        ops.extend((oldest..first_kept.min(q_start)).map(|id| (key(b'q', id).to_vec(), None)));
        tracing::warn!(target: "queue", evicted, "quarantine is over queue.max_quarantine_entries; the oldest entries were dropped (counted in status as quarantine.evicted)");
    }
    let deltas = wal::Deltas {
        pending_events: (next_seq - start_seq) as i64,
        pending_bytes: added_bytes as i64,
        dead_letter: 0,
        quarantine: added_q as i64 - evicted as i64,
        quarantine_evicted: evicted as i64,
    };
    if next_seq == start_seq && ops.is_empty() && evicted == 0 {
        // Nothing to write (empty requests, or every one refused).
        return results;
    }
    let acked = inner.state.lock().unwrap().acked;
    let commit = wal::CommitOut {
        first_seq: start_seq,
        next_seq,
        q_next,
        acked,
        accepted_at_ms: now_ms(),
        deltas,
        records: chunk_events(&events),
        ops,
    };
    let durable = write_durably(&mut seg, &commit).and_then(|(pointers, pos)| {
        let mut st = inner.state.lock().unwrap();
        let counts = add_deltas(st.counts, deltas);
        apply_commit(&store.db, &pointers, &commit.ops, &counts, (next_seq, q_next), pos).map_err(|e| sled_err(inner, &store.dir, e))?;
        st.counts = counts;
        st.next_seq = next_seq;
        st.q_next = q_next;
        Ok(st.acked)
    });
    match durable {
        Ok(acked) => {
            if results.iter().any(|r| r.is_ok()) {
                inner.disk_full.lock().unwrap().take();
            }
            inner.sled_dirty.store(true, Ordering::Release);
            inner.durable_next.store(next_seq, Ordering::Release);
            inner.witness.write(next_seq);
            inner.appended.notify_waiters();
            if seg.has_acked(acked) {
                // Deleting a segment needs its frames in sled for good, and `acked` with them.
                match flush_sled(inner, &store) {
                    Ok(()) => seg.delete_acked(acked, Some(&inner.readers)),
                    Err(e) => tracing::error!(target: "queue", "{e}"),
                }
            }
            results
        }
        Err(e) => {
            tracing::error!(target: "queue", "commit failed: {e}");
            // Nothing is acknowledged to the sources; they retry.
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

/// Makes everything applied to sled durable: sled's `flush`, then `fdatasync` of its log (sled's
/// flush alone is `sync_file_range`). Also syncs the witness.
fn flush_sled(inner: &Inner, store: &Store) -> Result<(), QueueError> {
    inner.sled_dirty.store(false, Ordering::Release);
    store.db.flush().map_err(|e| sled_err(inner, &store.dir, e))?;
    sync_data(&store.log).map_err(|e| sled_err(inner, &store.dir, e))?;
    inner.witness.sync();
    Ok(())
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

    fn qmeta() -> QuarantineMeta {
        QuarantineMeta {
            at: now_rfc3339(),
            origin: "test".into(),
            reason: "bad".into(),
            len: 8,
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
        // The store and the write-ahead log are lost (sled does it silently when its log is
        // truncated; the segments went with the disk).
        std::fs::remove_dir_all(dir.path().join("store")).unwrap();
        std::fs::remove_dir_all(dir.path().join("segments")).unwrap();
        let q = Queue::open(dir.path(), 1 << 30, 100).unwrap();
        let inc = q.incident().expect("the loss is reported");
        assert!(inc.contains("up to 3 events with sequence numbers 1..3 were lost"), "{inc}");
        assert_eq!(q.append_blocking(req(&["d"])).unwrap().first_seq, 4, "no sequence number is reused");
    }

    #[test]
    fn a_store_that_comes_back_empty_is_rebuilt_from_the_write_ahead_log() {
        let dir = tempfile::tempdir().unwrap();
        {
            let q = Queue::open(dir.path(), 1 << 30, 100).unwrap();
            q.append_blocking(req(&["a", "b", "c"])).unwrap();
            q.ack(1, vec![]).unwrap();
            q.append_blocking(AppendRequest {
                events: vec![ev("d")],
                quarantine: vec![(qmeta(), b"bad line".to_vec())],
                checkpoint: Some((b"file".to_vec(), b"ck".to_vec())),
            })
            .unwrap();
            q.close();
        }
        std::fs::remove_dir_all(dir.path().join("store")).unwrap();
        let q = Queue::open(dir.path(), 1 << 30, 100).unwrap();
        assert_eq!(q.incident(), None);
        assert_eq!(q.acked(), 1, "the second commit carried acked = 1");
        let got: Vec<_> = q
            .read(q.acked(), 10, 1 << 20)
            .unwrap()
            .into_iter()
            .map(|e| (e.seq, e.data))
            .collect();
        assert_eq!(got, vec![(2, ev("b")), (3, ev("c")), (4, ev("d"))]);
        assert_eq!(q.counts().pending_events, 3);
        assert_eq!(q.counts().quarantine, 1);
        assert_eq!(q.checkpoint(b"file").unwrap().as_deref(), Some(&b"ck"[..]));
        assert_eq!(q.append_blocking(req(&["e"])).unwrap().first_seq, 5);
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
