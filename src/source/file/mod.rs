//! The file source: tails a JSONL file the auth server appends to.
//!
//! Split by concern: `identity.rs` (which file is this: inode + head fingerprint, finding a
//! rotated file), `checkpoint.rs` (how far we got), `../lines.rs` (framing lines), and this
//! file, the tailing loop, which runs on its own thread so slow disks never stall the runtime.
//!
//! Behaviour:
//! - appends are followed with low latency: `notify` wakes the waiting loop on any change in the
//!   file's directory, and a poll is the fallback: every `poll_interval` where notification is
//!   unavailable (network filesystems), while paused or rotating, and every 5 s otherwise
//!   (missed events); the directory is not watched while there is data to read;
//! - a file that does not exist yet is waited for;
//! - rotation by rename: when the path names a new inode, the old file is drained to its end
//!   before the new file is read from its start. The switch happens once the new file has data
//!   (the auth server has reopened, so the old file is complete; it is read once more to catch
//!   writes we raced with) or the old file has been quiet for a grace period. A file that is
//!   renamed away again before the agent ever opened it (two rotations within one poll) is not
//!   read: rotate less often than `poll_interval`, which any logrotate schedule does;
//! - copytruncate: a file that shrank below the checkpoint, or whose first bytes changed, is
//!   re-read from offset 0 (lines written between the copy and the truncate can be lost or
//!   duplicated; that window belongs to copytruncate itself; prefer rename rotation);
//! - `start_at` applies only the first time a path is seen (no checkpoint yet).
//!
//! Invariants:
//! - a line is committed only once its `\n` has arrived; a partial last line is held;
//! - the checkpoint (inode, offset past the last complete line) is committed in the same
//!   queue batch as the events and quarantined lines it covers; the offset never passes a line
//!   that is not in the queue;
//! - when the queue is full the source pauses (nothing is read past the checkpoint) and resumes
//!   by itself when there is room again.

mod checkpoint;
mod identity;
pub use identity::not_a_regular_file;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use notify::Watcher;

use crate::event::Rejection;
use crate::queue::{now_rfc3339, QuarantineMeta, Queue, QueueError};
use crate::source::intake::{Intake, SourceKind};
use crate::source::lines::{Frame, LineFramer};
use crate::source::settings::{FileSourceConfig, StartAt};
use crate::source::IntakeRules;
use crate::status::{FileSourceState, FileSourceStatus, StatusHub};
pub use checkpoint::{source_id, Checkpoint};
use identity::{find_rotated, head_hash, stat_path, FileId, HEAD_LEN};

/// Bytes read per commit at most (a burst is committed in chunks of this size).
const CHUNK_BYTES: usize = 2 * 1024 * 1024;
/// Bytes per read() call.
const READ_BYTES: usize = 256 * 1024;
/// Most lines validated and committed at once (bounds memory under a flood of tiny lines).
const MAX_LINES_PER_COMMIT: usize = 8192;
/// While the directory is watched, the file is still polled this often, in case an event is
/// missed.
const WATCHED_POLL: Duration = Duration::from_secs(5);
/// How long a rotated-away file must stay quiet before we switch to the new one.
const ROTATION_GRACE: Duration = Duration::from_secs(1);

/// A running file source; dropping it does not stop it, call [`FileSource::stop`].
pub(crate) struct FileSource {
    stop: Arc<AtomicBool>,
    wake: mpsc::Sender<()>,
    thread: Option<JoinHandle<()>>,
}

impl FileSource {
    pub fn spawn(cfg: FileSourceConfig, rules: IntakeRules, queue: Queue, status: Arc<StatusHub>) -> FileSource {
        let stop = Arc::new(AtomicBool::new(false));
        let (wake_tx, wake_rx) = mpsc::channel::<()>();
        let watcher = watch_dir(&cfg.path, wake_tx.clone());
        let mut t = Tailer {
            armed: watcher.is_some(),
            watcher,
            id: source_id(&cfg.path),
            shown: cfg.path.display().to_string(),
            cfg,
            rules,
            queue,
            status,
            stop: stop.clone(),
            wake: wake_rx,
            open: None,
            paused: None,
            old_quiet_since: None,
            switch_armed: false,
            buf: vec![0u8; READ_BYTES],
        };
        // A dedicated OS thread, not a task: reading the file and waiting for the queue's group
        // commit both block, and a slow disk must not stall the runtime's workers. It needs no
        // runtime `Handle` and calls no `block_on`: it waits for the commit with
        // `Queue::append_from_thread` (a oneshot's `blocking_recv`, which tokio refuses to run
        // inside async code, so this loop cannot end up on a worker by mistake).
        let thread = std::thread::Builder::new().name("file-source".into()).spawn(move || t.run()).ok();
        FileSource {
            stop,
            wake: wake_tx,
            thread,
        }
    }

    /// Stops after the chunk being committed (if any) and waits for the thread.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.wake.send(());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The directory watched for changes to the file (not the file: rotation replaces it).
/// What a file source without its file is doing, in words: waiting for it to be created, and
/// why it may wait long (its directory is missing: a typo, or a volume not mounted).
pub(crate) fn waiting_for(path: &str) -> String {
    let p = Path::new(path);
    match p.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) if !dir.is_dir() => format!(
            "waiting for {path} to be created; its directory {} does not exist (a typo in sources.file.path, or a volume not mounted?)",
            dir.display()
        ),
        _ => format!("waiting for {path} to be created"),
    }
}

fn watched_dir(path: &Path) -> &Path {
    path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// Watches the file's directory. Returns None if notify is unavailable; polling still works.
fn watch_dir(path: &Path, wake: mpsc::Sender<()>) -> Option<notify::RecommendedWatcher> {
    let dir = watched_dir(path);
    let mut w = notify::recommended_watcher(move |_res: notify::Result<notify::Event>| {
        let _ = wake.send(());
    })
    .ok()?;
    match w.watch(dir, notify::RecursiveMode::NonRecursive) {
        Ok(()) => Some(w),
        Err(e) => {
            tracing::debug!(target: "source::file", "cannot watch {} ({e}); polling only", dir.display());
            None
        }
    }
}

struct OpenFile {
    file: File,
    fid: FileId,
    /// Path it was opened from (differs from the configured path while draining a rotated file).
    opened_as: PathBuf,
    framer: LineFramer,
    /// Number of complete lines before `framer.committed_offset()`.
    line: u64,
    head: (u64, u32),
}

struct Tailer {
    cfg: FileSourceConfig,
    id: Vec<u8>,
    shown: String,
    /// The limit and privacy transform every line goes through (see `source::intake`).
    rules: IntakeRules,
    queue: Queue,
    status: Arc<StatusHub>,
    stop: Arc<AtomicBool>,
    wake: mpsc::Receiver<()>,
    /// Watches the file's directory while the tailer waits, not while it is busy (see `run`).
    watcher: Option<notify::RecommendedWatcher>,
    armed: bool,
    open: Option<OpenFile>,
    paused: Option<String>,
    old_quiet_since: Option<Instant>,
    /// Set when a rotation was seen; the old file gets one more read before the switch.
    switch_armed: bool,
    /// The read buffer, reused (lines are framed out of a copy they share).
    buf: Vec<u8>,
}

impl Tailer {
    fn run(&mut self) {
        tracing::info!(target: "source::file", path = %self.shown, "tailing");
        let mut last_status = Instant::now() - Duration::from_secs(10);
        while !self.stop.load(Ordering::SeqCst) {
            let progressed = match self.tick() {
                Ok(p) => p,
                Err(e) => {
                    self.pause(e);
                    false
                }
            };
            if last_status.elapsed() > Duration::from_millis(200) || !progressed {
                self.publish_status();
                last_status = Instant::now();
            }
            if progressed {
                self.disarm();
            } else if self.arm() {
                // Re-armed: read once more, for what was appended while it was not.
                continue;
            } else {
                self.wait();
            }
        }
        self.status.set_file_source(None);
    }

    /// The directory is watched only while the tailer waits for data. While it has data to
    /// read it does not need telling, and an inotify event per appended line (thousands per
    /// second, each waking notify's thread) was most of the agent's CPU at steady rates.
    fn disarm(&mut self) {
        if let (true, Some(w)) = (self.armed, self.watcher.as_mut()) {
            let _ = w.unwatch(watched_dir(&self.cfg.path));
            self.armed = false;
        }
    }

    /// Watches again before waiting; true if it was not watching (read again first).
    fn arm(&mut self) -> bool {
        let Some(w) = self.watcher.as_mut() else { return false };
        if self.armed {
            return false;
        }
        match w.watch(watched_dir(&self.cfg.path), notify::RecursiveMode::NonRecursive) {
            Ok(()) => {
                self.armed = true;
                true
            }
            Err(e) => {
                tracing::debug!(target: "source::file", "cannot watch the directory of {} again ({e}); polling only", self.shown);
                self.watcher = None;
                false
            }
        }
    }

    fn wait(&self) {
        // With change notification working, the poll is only a safety net (and a wake-up at
        // idle): slow. Without it, or while paused (queue or disk full: nothing in the file
        // changes when room returns) or in the middle of a rotation, poll at `poll_interval`.
        let timeout = if self.armed && self.paused.is_none() && self.old_quiet_since.is_none() && self.open.is_some() {
            self.cfg.poll_interval.max(WATCHED_POLL)
        } else {
            self.cfg.poll_interval
        };
        if self.wake.recv_timeout(timeout).is_ok() {
            while self.wake.try_recv().is_ok() {}
        }
    }

    fn pause(&mut self, why: String) {
        if self.paused.as_deref() != Some(why.as_str()) {
            tracing::warn!(target: "source::file", path = %self.shown, "file source paused: {why}");
            self.paused = Some(why);
        }
    }

    fn resume(&mut self) {
        if let Some(why) = self.paused.take() {
            tracing::info!(target: "source::file", path = %self.shown, "file source resumed (was: {why})");
        }
    }

    fn publish_status(&self) {
        // One line an operator reads as is (`status`, the status page): what the source does.
        let (state, summary) = match (&self.paused, &self.open) {
            // No file open: waiting for it (or for a regular file where something else is).
            (Some(why), None) => (FileSourceState::Waiting, why.clone()),
            (Some(why), Some(_)) => (FileSourceState::Paused, format!("paused: {why}")),
            (None, Some(o)) => (
                FileSourceState::Tailing,
                format!(
                    "tailing {} (line {}, byte {})",
                    o.opened_as.display(),
                    o.line,
                    o.framer.committed_offset()
                ),
            ),
            (None, None) => (FileSourceState::Waiting, waiting_for(&self.shown)),
        };
        self.status.set_file_source(Some(FileSourceStatus {
            state,
            summary,
            path: self.shown.clone(),
            reading: self.open.as_ref().map(|o| o.opened_as.display().to_string()),
            offset: self.open.as_ref().map(|o| o.framer.committed_offset()),
            line: self.open.as_ref().map(|o| o.line),
            paused: self.paused.clone(),
        }));
    }

    /// One unit of work. Returns whether anything was read or changed.
    fn tick(&mut self) -> Result<bool, String> {
        if self.open.is_none() {
            return self.open_initial();
        }
        // Read no more than the queue has room for, so a chunk can always be committed once
        // the sink has made room (a chunk larger than queue.max_bytes would never fit).
        let room = self.queue.max_bytes().saturating_sub(self.queue.counts().pending_bytes) as usize;
        if room == 0 {
            self.status.set_queue_full(true);
            self.pause("queue full (queue.max_bytes); waiting for the SIEM to drain it".into());
            return Ok(false);
        }
        let limit = CHUNK_BYTES.min(room);
        let mut frames = Vec::new();
        let mut total = 0usize;
        let buf = &mut self.buf;
        let o = self.open.as_mut().expect("checked");
        let start = o.framer.committed_offset();
        while total < limit {
            let want = buf.len().min(limit - total);
            match o.file.read(&mut buf[..want]) {
                Ok(0) => break,
                Ok(n) => {
                    o.framer.push(&buf[..n], &mut frames);
                    total += n;
                }
                Err(e) => return Err(format!("cannot read {}: {e}", o.opened_as.display())),
            }
        }
        if !frames.is_empty() {
            self.old_quiet_since = None;
            self.switch_armed = false;
            // A flood of tiny lines (700k `{}` fit in one read) would build that many events or
            // quarantine entries at once: commit a bounded number and read the rest again.
            if frames.len() > MAX_LINES_PER_COMMIT {
                frames.truncate(MAX_LINES_PER_COMMIT);
                let end = frames.last().map(frame_end).unwrap_or(start);
                let o = self.open.as_mut().expect("checked");
                o.framer = LineFramer::new(self.rules.max_event_bytes, end);
                o.file
                    .seek(SeekFrom::Start(end))
                    .map_err(|e| format!("cannot seek in {}: {e}", o.opened_as.display()))?;
            }
            self.commit(frames, None, start)?;
            return Ok(true);
        }
        if total > 0 {
            // Only a partial line so far: wait for its newline.
            return Ok(false);
        }
        self.at_eof()
    }

    /// Validates and commits frames with the checkpoint just past them. On failure the file
    /// position is rewound to the last checkpoint, so nothing is skipped.
    fn commit(&mut self, frames: Vec<Frame>, extra: Option<(QuarantineMeta, Vec<u8>)>, start: u64) -> Result<(), String> {
        let o = self.open.as_mut().expect("open");
        let first_line = o.line;
        let name = o.opened_as.display().to_string();
        // Each frame starts where the previous one ended; the first where the last commit ended.
        let last_end = frames.last().map(frame_end).unwrap_or(start);
        let mut starts = Vec::with_capacity(frames.len());
        let mut cursor = start;
        for f in &frames {
            starts.push(cursor);
            cursor = frame_end(f);
        }
        let n_frames = frames.len() as u64;
        let mut origin = |i: usize, _f: &Frame| format!("{name}:{} (byte {})", first_line + i as u64 + 1, starts[i]);
        let new_line = first_line + n_frames;
        // Refresh the head fingerprint while the file is still short of HEAD_LEN.
        if (o.head.1 as u64) < HEAD_LEN {
            let len = last_end.min(HEAD_LEN);
            if let Some(h) = head_hash(&o.file, len) {
                o.head = (h, len as u32);
            }
        }
        let ck = Checkpoint {
            dev: o.fid.dev,
            ino: o.fid.ino,
            offset: last_end,
            line: new_line,
            head_hash: o.head.0,
            head_len: o.head.1,
        };
        let intake = Intake {
            status: &self.status,
            kind: SourceKind::File,
        };
        let prepared = intake.prepare(frames, &self.rules, &mut origin, extra, Some((self.id.clone(), ck.encode())));
        match self.queue.append_from_thread(prepared.request) {
            Ok(_) => {
                intake.accepted(prepared.report);
                o.line = new_line;
                self.resume();
                Ok(())
            }
            Err(e) => {
                intake.refused(&e);
                // Rewind to the last checkpoint: these lines will be read again.
                let back = start;
                o.framer = LineFramer::new(self.rules.max_event_bytes, back);
                let _ = o.file.seek(SeekFrom::Start(back));
                if matches!(e, QueueError::Full { .. }) {
                    self.pause("queue full (queue.max_bytes); waiting for the SIEM to drain it".into());
                    Err("queue full (queue.max_bytes); waiting for the SIEM to drain it".into())
                } else {
                    Err(format!("cannot commit to the queue: {e}"))
                }
            }
        }
    }

    /// Opens the file at start-up (or when it first appears), honouring the checkpoint.
    fn open_initial(&mut self) -> Result<bool, String> {
        let ck = self
            .queue
            .checkpoint(&self.id)
            .map_err(|e| e.to_string())?
            .and_then(|b| Checkpoint::decode(&b));
        let current = stat_path(&self.cfg.path);
        match (ck, current) {
            (Some(ck), cur) => {
                let ck_id = FileId { dev: ck.dev, ino: ck.ino };
                if let Some((fid, size)) = cur {
                    if fid == ck_id {
                        let file = File::open(&self.cfg.path).map_err(|e| format!("cannot open {}: {e}", self.shown))?;
                        let same_head = ck.head_len == 0 || head_hash(&file, ck.head_len as u64) == Some(ck.head_hash);
                        if size >= ck.offset && same_head {
                            self.set_open(file, fid, self.cfg.path.clone(), ck.offset, ck.line, (ck.head_hash, ck.head_len));
                        } else {
                            tracing::warn!(target: "source::file", path = %self.shown, "the file was truncated or replaced while the agent was stopped; reading it from the start");
                            self.set_open(file, fid, self.cfg.path.clone(), 0, 0, (0, 0));
                        }
                        return Ok(true);
                    }
                }
                // The checkpointed file was rotated away while we were stopped: drain it first.
                if let Some(old) = find_rotated(&self.cfg.path, ck_id) {
                    if let Ok(file) = File::open(&old) {
                        let same_head = ck.head_len == 0 || head_hash(&file, ck.head_len as u64) == Some(ck.head_hash);
                        if same_head {
                            tracing::info!(target: "source::file", path = %self.shown, rotated = %old.display(), "draining the file rotated while the agent was stopped");
                            self.set_open(file, ck_id, old, ck.offset, ck.line, (ck.head_hash, ck.head_len));
                            return Ok(true);
                        }
                    }
                }
                match cur {
                    Some((fid, _)) => {
                        tracing::warn!(target: "source::file", path = %self.shown, "the previously read file was rotated and is gone; lines after byte {} of it could not be read. Reading the new file from the start", ck.offset);
                        let file = File::open(&self.cfg.path).map_err(|e| format!("cannot open {}: {e}", self.shown))?;
                        self.set_open(file, fid, self.cfg.path.clone(), 0, 0, (0, 0));
                        Ok(true)
                    }
                    None => {
                        self.pause_waiting();
                        Ok(false)
                    }
                }
            }
            (None, Some((fid, size))) => {
                let file = File::open(&self.cfg.path).map_err(|e| format!("cannot open {}: {e}", self.shown))?;
                let start = match self.cfg.start_at {
                    StartAt::Beginning => 0,
                    StartAt::End => last_line_end(&file, size),
                };
                self.set_open(file, fid, self.cfg.path.clone(), start, 0, (0, 0));
                // Record the starting point now, so `start_at` is never applied twice.
                self.commit(Vec::new(), None, start)?;
                Ok(true)
            }
            (None, None) => {
                self.pause_waiting();
                Ok(false)
            }
        }
    }

    fn pause_waiting(&mut self) {
        if let Some(what) = not_a_regular_file(&self.cfg.path) {
            let why = format!(
                "{} is {what}, not a regular file: point sources.file.path at the JSONL file the auth server appends to",
                self.shown
            );
            if self.paused.as_deref() != Some(why.as_str()) {
                tracing::error!(target: "source::file", "{why}");
                self.paused = Some(why);
            }
            return;
        }
        let why = waiting_for(&self.shown);
        if self.paused.as_deref() != Some(why.as_str()) {
            tracing::info!(target: "source::file", path = %self.shown, "the file does not exist yet; {why}");
            self.paused = Some(why);
        }
    }

    fn set_open(&mut self, mut file: File, fid: FileId, opened_as: PathBuf, offset: u64, line: u64, head: (u64, u32)) {
        let _ = file.seek(SeekFrom::Start(offset));
        self.open = Some(OpenFile {
            file,
            fid,
            opened_as,
            framer: LineFramer::new(self.rules.max_event_bytes, offset),
            line,
            head,
        });
        self.old_quiet_since = None;
        self.switch_armed = false;
        if self.paused.as_deref().is_some_and(|p| p.starts_with("waiting for")) {
            self.resume();
        }
    }

    /// At end of file: detect truncation and rotation.
    fn at_eof(&mut self) -> Result<bool, String> {
        let o = self.open.as_mut().expect("open");
        let committed = o.framer.committed_offset();
        let size = o.file.metadata().map(|m| m.len()).unwrap_or(0);
        let head_changed = o.head.1 > 0 && head_hash(&o.file, o.head.1 as u64).is_some_and(|h| h != o.head.0);
        let now_at_path = stat_path(&self.cfg.path);
        let same_file = now_at_path.map(|(fid, _)| fid) == Some(o.fid);
        if same_file && (size < committed || head_changed) {
            tracing::warn!(target: "source::file", path = %self.shown, size, offset = committed, "file was truncated (copytruncate?); reading it again from the start");
            o.framer = LineFramer::new(self.rules.max_event_bytes, 0);
            let _ = o.file.seek(SeekFrom::Start(0));
            o.line = 0;
            o.head = (0, 0);
            self.commit(Vec::new(), None, 0)?;
            return Ok(true);
        }
        if same_file {
            return Ok(false);
        }
        // The path now names another file (or nothing): ours was rotated away or deleted.
        let Some((new_fid, new_size)) = now_at_path else {
            // Renamed or deleted and not (yet) recreated: the auth server may still be writing
            // to the old file; keep it open and wait.
            return Ok(false);
        };
        // The auth server writes to the new file only after it stopped writing to the old one.
        // So once the new file has data, or the old one has been quiet for a grace period, the
        // old file is finished, except for writes we raced with: read it once more to its end
        // (`switch_armed`) before switching.
        let quiet = *self.old_quiet_since.get_or_insert_with(Instant::now);
        if new_size == 0 && quiet.elapsed() < ROTATION_GRACE {
            return Ok(false);
        }
        if !self.switch_armed {
            self.switch_armed = true;
            return Ok(true);
        }
        // Finish the old file: an unterminated last line will never be completed.
        let leftover = {
            let o = self.open.as_mut().expect("open");
            let start = o.framer.committed_offset();
            o.framer.finish().map(|f| (f, start, o.line + 1, o.opened_as.display().to_string()))
        };
        if let Some((f, start, line, name)) = leftover {
            let (data, len) = match f {
                Frame::Line { data, .. } => (data.to_vec(), data.len()),
                Frame::Oversize { prefix, len, .. } => (prefix.to_vec(), len),
            };
            let rej = Rejection::Unterminated;
            self.status.metrics.rejected(&rej);
            tracing::warn!(target: "source::file", "{name}:{line} (byte {start}): rejected: {rej}; kept in quarantine");
            let meta = QuarantineMeta {
                at: now_rfc3339(),
                origin: format!("{name}:{line} (byte {start})"),
                reason: rej.to_string(),
                len,
            };
            let end = self.open.as_ref().map(|o| o.framer.committed_offset()).unwrap_or(start);
            self.commit(Vec::new(), Some((meta, data)), end)?;
        }
        tracing::info!(target: "source::file", path = %self.shown, "file rotated; following the new file from its start");
        let file = File::open(&self.cfg.path).map_err(|e| format!("cannot open {}: {e}", self.shown))?;
        self.set_open(file, new_fid, self.cfg.path.clone(), 0, 0, (0, 0));
        self.commit(Vec::new(), None, 0)?;
        Ok(true)
    }
}

fn frame_end(f: &Frame) -> u64 {
    match f {
        Frame::Line { end, .. } | Frame::Oversize { end, .. } => *end,
    }
}

/// Offset just past the last `\n` in the file (where `start_at: end` begins).
fn last_line_end(file: &File, size: u64) -> u64 {
    use std::os::unix::fs::FileExt;
    let tail = size.min(64 * 1024);
    let mut buf = vec![0u8; tail as usize];
    if file.read_exact_at(&mut buf, size - tail).is_err() {
        return size;
    }
    match buf.iter().rposition(|b| *b == b'\n') {
        Some(i) => size - tail + i as u64 + 1,
        None if tail == size => 0,
        None => size,
    }
}
