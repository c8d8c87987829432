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

use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;

use super::*;

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

/// Where a record's bytes are.
#[derive(Debug, Clone)]
enum Src {
    /// In a segment file of the moved-aside store.
    Seg { segment: u64, offset: u64, len: u32, count: u32 },
    /// In sled itself (stores written before segment files).
    Inline(Bytes, u32),
}

impl Src {
    fn count(&self) -> u32 {
        match self {
            Src::Seg { count, .. } | Src::Inline(_, count) => *count,
        }
    }
}

/// sled opened on a copy of the moved-aside store. The database closes before the copy is
/// removed (field order).
struct SledCopy {
    store: Store,
    _tmp: tempfile::TempDir,
}

/// A moved-aside store, scanned.
struct Opened {
    dir: PathBuf,
    report: AsideReport,
    /// Records by first sequence number; several sources may hold the same one.
    records: BTreeMap<u64, Vec<Src>>,
    sled: Option<SledCopy>,
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

/// Scans the store at `dir`: its notes, its segment files, its ack file, and sled on a copy.
fn open(root: &Path, dir: &Path) -> Opened {
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut r = AsideReport {
        name: name.clone(),
        path: dir.to_path_buf(),
        progress: read_progress(dir),
        ..Default::default()
    };
    if let Some(note) = std::fs::read(dir.join(MOVED_NOTE))
        .ok()
        .and_then(|b| serde_json::from_slice::<MovedNote>(&b).ok())
    {
        r.moved_at = Some(note.at);
        r.reason = Some(note.reason);
    } else if let Some(t) = name
        .strip_prefix(ASIDE_PREFIX)
        .and_then(|t| chrono::NaiveDateTime::parse_from_str(t, "%Y%m%dT%H%M%SZ").ok())
    {
        r.moved_at = Some(t.and_utc().to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    }
    let mut records = BTreeMap::new();
    let mut acked = scan_segments(&dir.join("segments"), &mut r, &mut records);
    if let Some(a) = read_ack_file(&dir.join(ACK_FILE)) {
        acked = acked.max(a);
    }
    let sled = match open_sled_copy(root, dir) {
        Ok((copy, sled_acked, pointers, replayed)) => {
            r.index = "opened (on a copy)".into();
            r.unreadable.extend(replayed);
            acked = acked.max(sled_acked);
            for (first_seq, src) in pointers {
                records.entry(first_seq).or_insert_with(Vec::new).push(src);
            }
            Some(copy)
        }
        Err(why) => {
            r.index = format!("could not be opened: {why}");
            r.unreadable.push(format!(
                "the store's index (sled) could not be opened ({why}): its dead-letter and quarantine entries cannot be recovered; pending events come from the segment files alone"
            ));
            None
        }
    };
    r.acked = acked;
    Opened {
        dir: dir.to_path_buf(),
        report: r,
        records,
        sled,
    }
}

/// The ack file's value, if its check passes (read directly: opening it through the storage
/// seam would create it).
fn read_ack_file(path: &Path) -> Option<u64> {
    let b = std::fs::read(path).ok()?;
    let v = u64::from_be_bytes(b.get(..8)?.try_into().ok()?);
    (u64::from_be_bytes(b.get(8..16)?.try_into().ok()?) == v ^ ACK_FILE_CHECK).then_some(v)
}

/// Scans every segment file of `seg_dir` (see the module docs). Fills `records` with the
/// records of the winning frame of each commit number; returns the highest `acked` the frames
/// carry.
fn scan_segments(seg_dir: &Path, r: &mut AsideReport, records: &mut BTreeMap<u64, Vec<Src>>) -> u64 {
    let mut names: Vec<u64> = match std::fs::read_dir(seg_dir) {
        Ok(rd) => rd
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.strip_suffix(".seg")?.parse().ok())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            r.unreadable.push(format!(
                "{} does not exist: no segment file was moved aside with the store",
                seg_dir.display()
            ));
            return 0;
        }
        Err(e) => {
            r.unreadable.push(format!(
                "{} cannot be listed ({e}): no pending event could be read from segment files",
                seg_dir.display()
            ));
            return 0;
        }
    };
    names.sort_unstable();
    let mut acked = 0u64;
    // Commit number -> the records (first sequence number, where) of the last frame written
    // under it.
    let mut winners: BTreeMap<u64, Vec<(u64, Src)>> = BTreeMap::new();
    for name in names {
        let path = segment_path(seg_dir, name);
        let scanned = File::open(&path).and_then(|file| {
            let len = file.metadata()?.len();
            if len == 0 {
                return Ok(());
            }
            if !wal::is_wal(&file) {
                r.unreadable.push(format!(
                    "{} was written before the write-ahead log (it has no frames): its events can be found only through the store's index",
                    path.display()
                ));
                return Ok(());
            }
            scan_file(&file, len, &path, r, |at, c| {
                acked = acked.max(c.h.acked);
                let srcs = c
                    .records
                    .iter()
                    .map(|p| {
                        let src = Src::Seg {
                            segment: name,
                            offset: at + p.offset_in_frame as u64,
                            len: p.len,
                            count: p.count,
                        };
                        (p.first_seq, src)
                    })
                    .collect();
                winners.insert(c.h.commit, srcs);
            })
        });
        if let Err(e) = scanned {
            r.unreadable.push(format!(
                "{} cannot be read ({e}): the events in it are not recovered",
                path.display()
            ));
        }
    }
    for (first_seq, src) in winners.into_values().flatten() {
        records.entry(first_seq).or_default().push(src);
    }
    acked
}

/// Reads the frames of one segment file, giving each to `f` with its position. A frame that
/// cannot be read is skipped up to the next one that can (counted and reported); none after it
/// means a torn tail (a truncated frame) or a damaged end.
fn scan_file(file: &File, len: u64, path: &Path, r: &mut AsideReport, mut f: impl FnMut(u64, wal::CommitIn)) -> std::io::Result<()> {
    let mut pos = wal::SEGMENT_MAGIC.len() as u64;
    let mut buf = Vec::new();
    while pos < len {
        match wal::read_at(file, len, pos, &mut buf)? {
            Ok((c, end)) => {
                r.frames += 1;
                f(pos, c);
                pos = end;
            }
            Err(bad) => {
                let why = match &bad {
                    wal::Bad::Truncated => "a frame runs past the end of the file".to_string(),
                    wal::Bad::Damaged(why) => why.clone(),
                };
                match next_frame(file, len, pos + 1, &mut buf)? {
                    Some(next) => {
                        r.damaged_stretches += 1;
                        r.unreadable.push(format!(
                            "{}: bytes {pos}..{next} are damaged ({why}) and were skipped; the frames after them were read",
                            path.display()
                        ));
                        pos = next;
                    }
                    None => {
                        match bad {
                            wal::Bad::Truncated => r.torn_tails += 1,
                            wal::Bad::Damaged(_) => {
                                r.damaged_stretches += 1;
                                r.unreadable.push(format!(
                                    "{}: bytes {pos}..{len} (to the end of the file) are damaged ({why}); nothing after byte {pos} could be read",
                                    path.display()
                                ));
                            }
                        }
                        break;
                    }
                }
            }
        }
    }
    Ok(())
}

/// The position of the next whole frame at or after `from`, if any: a cheap look at each
/// offset (the kind byte and a plausible length), then the CRC of the candidates.
fn next_frame(file: &File, len: u64, from: u64, buf: &mut Vec<u8>) -> std::io::Result<Option<u64>> {
    const WINDOW: u64 = 1 << 20;
    let head = wal::FRAME_HEADER as u64;
    let mut win = vec![0u8; (WINDOW + head) as usize];
    let mut start = from;
    while start + head + MIN_BODY <= len {
        let n = (len - start).min(WINDOW + head) as usize;
        file.read_exact_at(&mut win[..n], start)?;
        // Offsets whose header and kind byte lie in the window.
        let last = n - head as usize - 1;
        for i in 0..=last {
            let body_len = u64::from(u32::from_be_bytes(win[i..i + 4].try_into().unwrap_or([0; 4])));
            let p = start + i as u64;
            if !wal::is_commit_kind(win[i + head as usize]) || body_len < MIN_BODY || p + head + body_len > len {
                continue;
            }
            if wal::read_at(file, len, p, buf)?.is_ok() {
                return Ok(Some(p));
            }
        }
        start += last as u64 + 1;
    }
    Ok(None)
}

/// Where the record under a sled `e` key is: a v2 pointer into a segment file, or a v1 record.
fn src_of(v: &[u8]) -> Option<Src> {
    let u64_at = |at: usize| v.get(at..at + 8).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes);
    let u32_at = |at: usize| v.get(at..at + 4).and_then(|b| b.try_into().ok()).map(u32::from_be_bytes);
    match v.first() {
        Some(2) if v.len() == POINTER_LEN => Some(Src::Seg {
            segment: u64_at(13)?,
            offset: u64_at(21)?,
            len: u32_at(29)?,
            count: u32_at(9)?,
        }),
        Some(1) => Some(Src::Inline(Bytes::copy_from_slice(v), u32_at(9)?)),
        _ => None,
    }
}

/// The index opened on a copy, its `acked`, its records (first sequence number, where), and
/// whether the frames it lacked could be applied to it (why not, if not).
type SledRead = (SledCopy, u64, Vec<(u64, Src)>, Option<String>);

/// Opens sled on a copy of the store at `dir` (inside `root`, removed when the copy is
/// dropped), brings the copy up to date with the frames it lacked (the same replay as at open:
/// dead-letter removals, quarantine entries and record pointers of the last commits), and reads
/// its `acked` and record pointers. Any failure, or a panic inside sled, is the reason the index
/// cannot be used.
fn open_sled_copy(root: &Path, dir: &Path) -> Result<SledRead, String> {
    let tmp = tempfile::Builder::new()
        .prefix(".aside-open-")
        .tempdir_in(root)
        .map_err(|e| format!("cannot make a temporary copy in {}: {e}", root.display()))?;
    copy_store(dir, tmp.path()).map_err(|e| format!("cannot copy it to {}: {e}", tmp.path().display()))?;
    let path = tmp.path().to_path_buf();
    let seg_dir = dir.join("segments");
    let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| -> Result<_, String> {
        let store = open_sled_once(&path, &RealStorage).map_err(|e| match e {
            QueueError::Corrupt { message, .. } => format!("sled: {message}"),
            e => e.to_string(),
        })?;
        let db = &store.db;
        let mut state = State::from_sled(db).map_err(|e| format!("sled: {e}"))?;
        let replayed = match replay_wal(&store, &RealStorage, &seg_dir, &mut state) {
            Ok((wal_acked, _)) => {
                state.acked = state.acked.max(wal_acked);
                None
            }
            Err(e) => Some(format!(
                "the index opened, but the frames it lacked could not be applied to it ({e}): its dead letters and quarantine may miss the last changes"
            )),
        };
        // Acknowledged records leave sled; those still there are read (and filtered by `acked`
        // when events are taken).
        let mut pointers = Vec::new();
        for item in db.range(key(b'e', 0)..=key(b'e', u64::MAX)) {
            let (k, v) = item.map_err(|e| format!("sled: {e}"))?;
            let first_seq = k.get(1..9).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes);
            if let (Some(first_seq), Some(src)) = (first_seq, src_of(&v)) {
                pointers.push((first_seq, src));
            }
        }
        Ok((store, state.acked, pointers, replayed))
    }));
    match opened {
        Ok(Ok((store, acked, pointers, replayed))) => Ok((SledCopy { store, _tmp: tmp }, acked, pointers, replayed)),
        Ok(Err(e)) => Err(e),
        Err(_) => Err("sled panicked while reading it".into()),
    }
}

/// Copies the store's own files (sled's, recursively; not the segment files, which are read in
/// place, nor the notes) from `from` into `to`.
fn copy_store(from: &Path, to: &Path) -> std::io::Result<()> {
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let name = e.file_name();
        if from.join("segments") == e.path() || name == MOVED_NOTE || name == PROGRESS_FILE {
            continue;
        }
        let t = e.file_type()?;
        if t.is_dir() {
            std::fs::create_dir(to.join(&name))?;
            copy_store(&e.path(), &to.join(&name))?;
        } else if t.is_file() {
            std::fs::copy(e.path(), to.join(&name))?;
        }
    }
    Ok(())
}

impl Opened {
    /// The record `src`'s bytes, checked to be one well-formed record of its count.
    fn read_record(&self, src: &Src, files: &mut std::collections::HashMap<u64, File>) -> Result<Bytes, String> {
        let (segment, offset, len, count) = match src {
            Src::Inline(b, count) => {
                return match record_totals(b) {
                    Some((c, _)) if c == *count => Ok(b.clone()),
                    _ => Err("the record stored in the index is damaged".into()),
                }
            }
            Src::Seg {
                segment,
                offset,
                len,
                count,
            } => (*segment, *offset, *len, *count),
        };
        let path = segment_path(&self.dir.join("segments"), segment);
        let file = match files.entry(segment) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(File::open(&path).map_err(|e| format!("cannot open {}: {e}", path.display()))?)
            }
        };
        // A pointer from a damaged index may point anywhere: check before allocating.
        let file_len = file.metadata().map_err(|e| format!("cannot read {}: {e}", path.display()))?.len();
        if offset.checked_add(u64::from(len)).is_none_or(|end| end > file_len) {
            return Err(format!(
                "the record at byte {offset} ({len} bytes) lies past the end of {} ({file_len} bytes)",
                path.display()
            ));
        }
        let mut buf = vec![0u8; len as usize];
        file.read_exact_at(&mut buf, offset)
            .map_err(|e| format!("cannot read {} at byte {offset}: {e}", path.display()))?;
        match record_totals(&buf) {
            Some((c, _)) if c == count => Ok(Bytes::from(buf)),
            _ => Err(format!("the record in {} at byte {offset} is damaged", path.display())),
        }
    }

    /// Gives each recoverable pending event with a sequence number above `after` (and above
    /// `acked`) to `f`, in order, each once; stops when `f` returns false. Records that cannot
    /// be read are reported (once per scan, when `report` is set) and skipped.
    fn each_pending(&mut self, after: u64, report: bool, mut f: impl FnMut(u64, Bytes) -> bool) {
        let mut last = after.max(self.report.acked);
        let mut files = std::collections::HashMap::new();
        let mut unreadable = Vec::new();
        let mut damaged = 0u64;
        let records = std::mem::take(&mut self.records);
        'records: for (&first_seq, srcs) in &records {
            let count = srcs.iter().map(Src::count).max().unwrap_or(0);
            let end = first_seq.saturating_add(u64::from(count));
            if end <= last.saturating_add(1) {
                continue;
            }
            let mut why = Vec::new();
            let rec = srcs.iter().find_map(|s| match self.read_record(s, &mut files) {
                Ok(b) => Some(b),
                Err(e) => {
                    why.push(e);
                    None
                }
            });
            let Some(rec) = rec else {
                let from = first_seq.max(last + 1);
                damaged += end - from;
                unreadable.push(format!("events {from}..{} cannot be read: {}", end - 1, why.join("; ")));
                continue;
            };
            let mut w = ReadWindow {
                after: last,
                before: u64::MAX,
                max_events: usize::MAX,
                max_bytes: usize::MAX,
                bytes: 0,
            };
            let mut out = Vec::new();
            decode_record(first_seq, &rec, &mut w, &mut out);
            for e in out {
                last = e.seq;
                if !f(e.seq, e.data) {
                    break 'records;
                }
            }
        }
        self.records = records;
        if report {
            self.report.damaged_events += damaged;
            self.report.unreadable.extend(unreadable);
        }
    }

    /// Gives each entry of the index under `prefix` with an id above `after` to `f` (id, raw
    /// value), in order, a page at a time; stops when `f` returns false. A failure or panic of
    /// sled ends the listing; it is returned.
    fn each_entry(&self, prefix: u8, after: u64, mut f: impl FnMut(u64, &[u8]) -> bool) -> Option<String> {
        let sled = self.sled.as_ref()?;
        let mut from = after.checked_add(1)?;
        loop {
            let page = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| -> Result<Vec<(u64, sled::IVec)>, String> {
                let mut page = Vec::new();
                let mut bytes = 0;
                for item in sled.store.db.range(key(prefix, from)..=key(prefix, u64::MAX)) {
                    let (k, v) = item.map_err(|e| e.to_string())?;
                    let id = k.get(1..9).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes).unwrap_or(0);
                    bytes += v.len();
                    page.push((id, v));
                    if page.len() >= SLED_PAGE || bytes >= CHUNK_BYTES {
                        break;
                    }
                }
                Ok(page)
            }));
            let page = match page {
                Ok(Ok(p)) => p,
                Ok(Err(e)) => return Some(format!("sled: {e}")),
                Err(_) => return Some("sled panicked while reading it".into()),
            };
            let &(last, _) = page.last()?;
            if last < from {
                return Some(format!("a malformed key in the index (id {last}) ends the listing"));
            }
            for (id, v) in &page {
                if !f(*id, v) {
                    return None;
                }
            }
            from = last.checked_add(1)?;
        }
    }
}

/// Counts what `o` holds (every record is read and checked, as a replay would).
fn count(o: &mut Opened) {
    let (mut n, mut bytes) = (0u64, 0u64);
    o.each_pending(0, true, |_, e| {
        n += 1;
        bytes += e.len() as u64;
        true
    });
    o.report.pending_events = n;
    o.report.pending_bytes = bytes;
    for (prefix, what) in [(b'd', "dead-letter"), (b'q', "quarantine")] {
        let (mut good, mut bad) = (0u64, Vec::new());
        let failed = o.each_entry(prefix, 0, |id, v| {
            let ok = if prefix == b'd' {
                decode_entry::<DeadLetterMeta>(v).is_some()
            } else {
                decode_entry::<QuarantineMeta>(v).is_some()
            };
            if ok {
                good += 1;
            } else {
                bad.push(id);
            }
            true
        });
        if prefix == b'd' {
            o.report.dead_letters = good;
        } else {
            o.report.quarantine = good;
        }
        if !bad.is_empty() {
            o.report.unreadable.push(format!(
                "{what} entries {} in the index are damaged and cannot be recovered",
                bad.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
            ));
        }
        if let Some(e) = failed {
            o.report.unreadable.push(format!(
                "reading the {what} entries from the index failed ({e}); the ones after it are not recovered"
            ));
        }
    }
}

/// One replay at a time in this process (two would re-queue the same events twice).
static REPLAYING: Mutex<()> = Mutex::new(());

/// Re-queues what the moved-aside store `name` holds into `queue` (see the module docs), or with
/// `dry_run` only says what it would do. A store already replayed is left alone.
pub fn replay(queue: &Queue, name: &str, dry_run: bool) -> Result<ReplayOutcome, AsideError> {
    let _one = REPLAYING.lock().unwrap_or_else(|p| p.into_inner());
    let root = queue.root().to_path_buf();
    let dir = resolve(&root, name)?;
    let mut o = open(&root, &dir);
    count(&mut o);
    let mut out = ReplayOutcome {
        dry_run,
        already_replayed: o.report.progress.done_at.is_some(),
        requeued_events: 0,
        requeued_dead_letters: 0,
        copied_quarantine: 0,
        stopped: None,
        report: o.report.clone(),
    };
    if out.already_replayed {
        return Ok(out);
    }
    let mut p = o.report.progress.clone();
    if dry_run {
        // What a replay would do from where the last one stopped.
        let mut n = 0;
        o.each_pending(p.pending_after_seq, false, |_, _| {
            n += 1;
            true
        });
        out.requeued_events = n;
        let mut n = 0;
        o.each_entry(b'd', p.dead_letter_after_id, |_, v| {
            n += u64::from(decode_entry::<DeadLetterMeta>(v).is_some());
            true
        });
        out.requeued_dead_letters = n;
        let mut n = 0;
        o.each_entry(b'q', p.quarantine_after_id, |_, v| {
            n += u64::from(decode_entry::<QuarantineMeta>(v).is_some());
            true
        });
        out.copied_quarantine = n;
        return Ok(out);
    }
    let before = (p.requeued_events, p.requeued_dead_letters, p.copied_quarantine);
    let stopped = requeue_all(queue, &dir, &mut o, &mut p);
    out.requeued_events = p.requeued_events - before.0;
    out.requeued_dead_letters = p.requeued_dead_letters - before.1;
    out.copied_quarantine = p.copied_quarantine - before.2;
    match stopped? {
        None => {
            p.done_at = Some(now_rfc3339());
            write_progress(&dir, &p)?;
            tracing::info!(target: "queue", store = %dir.display(), events = out.requeued_events, dead_letters = out.requeued_dead_letters, quarantine = out.copied_quarantine, "a moved-aside store was replayed");
        }
        Some(why) => out.stopped = Some(why),
    }
    out.report.progress = p;
    Ok(out)
}

/// Why a replay stops early: the live queue refused a chunk (full, disk, shutting down: the
/// replay can resume), or its progress could not be recorded (an error).
enum Stop {
    Resumable(String),
    Progress(AsideError),
}

/// Re-queues from `p` on: pending events, dead letters, quarantine entries. Returns why it
/// stopped early, if it did.
fn requeue_all(queue: &Queue, dir: &Path, o: &mut Opened, p: &mut Progress) -> Result<Option<String>, AsideError> {
    // A quarter of `queue.max_bytes` at most, so that a small queue can take a chunk.
    let mut chunk = Chunk {
        limit: CHUNK_BYTES.min(usize::try_from(queue.max_bytes() / 4).unwrap_or(usize::MAX)).max(1),
        ..Default::default()
    };
    let mut stop: Option<Stop> = None;
    // 1. Pending events, in sequence order.
    let from = p.pending_after_seq;
    o.each_pending(from, false, |seq, data| {
        chunk.push(seq, data, None);
        chunk.commit_if_full(queue, dir, p, Stage::Pending, &mut stop)
    });
    chunk.finish(queue, dir, p, Stage::Pending, &mut stop);
    // 2. Dead-letter entries, re-queued as events; 3. quarantine entries, copied.
    for (prefix, stage, what) in [(b'd', Stage::DeadLetter, "dead-letter"), (b'q', Stage::Quarantine, "quarantine")] {
        if stop.is_some() {
            break;
        }
        let from = if stage == Stage::DeadLetter {
            p.dead_letter_after_id
        } else {
            p.quarantine_after_id
        };
        let broke = o.each_entry(prefix, from, |id, v| {
            if stage == Stage::DeadLetter {
                match decode_entry::<DeadLetterMeta>(v) {
                    Some((_, data)) => chunk.push(id, Bytes::from(data), None),
                    None => chunk.skip(id),
                }
            } else {
                match decode_entry::<QuarantineMeta>(v) {
                    Some(q) => chunk.push(id, Bytes::new(), Some(q)),
                    None => chunk.skip(id),
                }
            }
            chunk.commit_if_full(queue, dir, p, stage, &mut stop)
        });
        chunk.finish(queue, dir, p, stage, &mut stop);
        if let (None, Some(e)) = (&stop, broke) {
            stop = Some(Stop::Resumable(format!(
                "reading the {what} entries from the index failed ({e}); run the replay again to retry from there"
            )));
        }
    }
    match stop {
        None => Ok(None),
        Some(Stop::Resumable(why)) => Ok(Some(why)),
        Some(Stop::Progress(e)) => Err(e),
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Stage {
    Pending,
    DeadLetter,
    Quarantine,
}

/// Events (or quarantine entries) gathered for one commit, with the last key they cover.
#[derive(Default)]
struct Chunk {
    events: Vec<Bytes>,
    quarantine: Vec<(QuarantineMeta, Vec<u8>)>,
    bytes: usize,
    /// A commit is made at this many bytes.
    limit: usize,
    /// The last sequence number or id gathered (or skipped as unreadable).
    last: Option<u64>,
}

impl Chunk {
    fn push(&mut self, key: u64, event: Bytes, q: Option<(QuarantineMeta, Vec<u8>)>) {
        self.bytes += event.len();
        if !event.is_empty() || q.is_none() {
            self.events.push(event);
        }
        if let Some((meta, line)) = q {
            self.bytes += line.len();
            self.quarantine.push((meta, line));
        }
        self.last = Some(key);
    }

    fn skip(&mut self, key: u64) {
        self.last = Some(key);
    }

    fn full(&self) -> bool {
        self.bytes >= self.limit || self.events.len() + self.quarantine.len() >= CHUNK_EVENTS
    }

    /// Commits when the chunk is full; false once the replay must stop.
    fn commit_if_full(&mut self, queue: &Queue, dir: &Path, p: &mut Progress, stage: Stage, stop: &mut Option<Stop>) -> bool {
        if self.full() {
            self.finish(queue, dir, p, stage, stop);
        }
        stop.is_none()
    }

    /// Commits what was gathered unless the replay is stopping.
    fn finish(&mut self, queue: &Queue, dir: &Path, p: &mut Progress, stage: Stage, stop: &mut Option<Stop>) {
        if stop.is_none() {
            if let Err(s) = self.commit(queue, dir, p, stage) {
                *stop = Some(s);
            }
        }
    }

    /// Commits what was gathered (durably, through the ordinary commit path), then records the
    /// progress.
    fn commit(&mut self, queue: &Queue, dir: &Path, p: &mut Progress, stage: Stage) -> Result<(), Stop> {
        let Some(last) = self.last.take() else { return Ok(()) };
        let events = std::mem::take(&mut self.events);
        let quarantine = std::mem::take(&mut self.quarantine);
        self.bytes = 0;
        let (n_events, n_q) = (events.len() as u64, quarantine.len() as u64);
        if n_events + n_q > 0 {
            let req = AppendRequest {
                events,
                quarantine,
                checkpoint: None,
            };
            if let Err(e) = queue.append_blocking(req) {
                return Err(Stop::Resumable(match e {
                    QueueError::Full { .. } => format!("{e}; run the replay again once the queue has drained: it resumes where it stopped"),
                    e => format!("{e}; run the replay again once that is fixed: it resumes where it stopped"),
                }));
            }
        }
        match stage {
            Stage::Pending => {
                p.pending_after_seq = last;
                p.requeued_events += n_events;
            }
            Stage::DeadLetter => {
                p.dead_letter_after_id = last;
                p.requeued_dead_letters += n_events;
            }
            Stage::Quarantine => {
                p.quarantine_after_id = last;
                p.copied_quarantine += n_q;
            }
        }
        write_progress(dir, p).map_err(Stop::Progress)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(events: &[&str]) -> AppendRequest {
        AppendRequest {
            events: events.iter().map(|s| Bytes::copy_from_slice(s.as_bytes())).collect(),
            quarantine: vec![],
            checkpoint: None,
        }
    }

    /// A queue at `root` with commits [a b] [c] [d e] [f], event 1 acknowledged before [f].
    fn six_events(root: &Path) {
        let q = Queue::open(root, 1 << 30, 100).unwrap();
        for evs in [&["a", "b"][..], &["c"], &["d", "e"]] {
            q.append_blocking(req(evs)).unwrap();
        }
        q.ack(1, vec![]).unwrap();
        q.append_blocking(req(&["f"])).unwrap();
        q.close();
    }

    /// Damages the sled store the way `Queue::open` takes as corruption, reopens (which moves it
    /// aside) and returns the new queue and the moved-aside store's name.
    /// A temp queue with six events (see `six_events`), then moved aside.
    fn six_events_moved_aside() -> (tempfile::TempDir, Queue, String) {
        let dir = tempfile::tempdir().unwrap();
        six_events(dir.path());
        let (q, name) = damage_and_reopen(dir.path());
        (dir, q, name)
    }

    fn damage_and_reopen(root: &Path) -> (Queue, String) {
        std::fs::write(root.join("store/conf"), b"\x00garbage\xff").unwrap();
        std::fs::write(root.join("store/db"), vec![0xAB; 4096]).unwrap();
        let q = Queue::open(root, 1 << 30, 100).unwrap();
        let names = unreplayed(root);
        assert_eq!(names.len(), 1, "{names:?}");
        (q, names[0].clone())
    }

    fn the_segment(dir: &Path) -> PathBuf {
        let segs: Vec<_> = std::fs::read_dir(dir.join("segments"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        assert_eq!(segs.len(), 1, "{segs:?}");
        segs[0].clone()
    }

    /// Where each frame of a segment starts and ends.
    fn frames(seg: &Path) -> Vec<(u64, u64)> {
        let f = File::open(seg).unwrap();
        let mut out = Vec::new();
        assert!(wal::scan(&f, 0, |at, _, end| out.push((at, end))).unwrap().is_none());
        out
    }

    fn pending(root: &Path, name: &str) -> Vec<(u64, String)> {
        let mut o = open(root, &root.join(name));
        let mut out = Vec::new();
        o.each_pending(0, false, |seq, e| {
            out.push((seq, String::from_utf8_lossy(&e).into_owned()));
            true
        });
        out
    }

    fn evs(v: &[(u64, &str)]) -> Vec<(u64, String)> {
        v.iter().map(|(s, e)| (*s, e.to_string())).collect()
    }

    #[test]
    fn the_frame_scan_takes_every_event_above_acked_and_counts_a_torn_tail() {
        let (dir, _q, name) = six_events_moved_aside();
        let root = dir.path();
        let aside = root.join(&name);
        // A commit torn by a crash at the end: the first 20 bytes of a frame.
        let seg = the_segment(&aside);
        let mut bytes = std::fs::read(&seg).unwrap();
        let (at, _) = frames(&seg)[0];
        let torn = bytes[at as usize..at as usize + 20].to_vec();
        bytes.extend_from_slice(&torn);
        std::fs::write(&seg, &bytes).unwrap();

        let r = inspect(root, &name).unwrap();
        assert_eq!(
            (
                r.acked,
                r.pending_events,
                r.pending_bytes,
                r.frames,
                r.torn_tails,
                r.damaged_stretches,
                r.damaged_events
            ),
            (1, 5, 5, 4, 1, 0, 0),
            "{r:#?}"
        );
        assert_eq!((r.dead_letters, r.quarantine), (0, 0));
        assert!(r.index.starts_with("could not be opened"), "{}", r.index);
        assert_eq!(r.unreadable.len(), 1, "only the index: {:#?}", r.unreadable);
        assert!(r.reason.as_deref().is_some_and(|w| w.contains("damaged")), "{:?}", r.reason);
        assert!(r.moved_at.is_some());
        assert_eq!(pending(root, &name), evs(&[(2, "b"), (3, "c"), (4, "d"), (5, "e"), (6, "f")]));
    }

    #[test]
    fn a_damaged_frame_is_skipped_and_the_frames_after_it_are_read() {
        let (dir, _q, name) = six_events_moved_aside();
        let root = dir.path();
        let seg = the_segment(&root.join(&name));
        let fr = frames(&seg);
        assert_eq!(fr.len(), 4);
        // Flip a byte inside the body of the second frame ([c]).
        let mut bytes = std::fs::read(&seg).unwrap();
        bytes[(fr[1].0 + 20) as usize] ^= 0x40;
        std::fs::write(&seg, &bytes).unwrap();

        let r = inspect(root, &name).unwrap();
        assert_eq!(
            (r.acked, r.pending_events, r.frames, r.torn_tails, r.damaged_stretches),
            (1, 4, 3, 0, 1),
            "{r:#?}"
        );
        let stretch = format!("bytes {}..{} are damaged (CRC mismatch)", fr[1].0, fr[1].1);
        assert!(r.unreadable.iter().any(|u| u.contains(&stretch)), "{:#?}", r.unreadable);
        assert_eq!(pending(root, &name), evs(&[(2, "b"), (4, "d"), (5, "e"), (6, "f")]));
        // Garbage to the end of the file: counted, never a panic.
        let len = bytes.len();
        bytes[(fr[3].0 as usize)..len].fill(0x5A);
        std::fs::write(&seg, &bytes).unwrap();
        let r = inspect(root, &name).unwrap();
        assert_eq!((r.pending_events, r.frames, r.damaged_stretches), (3, 2, 2), "{r:#?}");
    }

    /// Every file under `dir`, with its bytes.
    fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                out.extend(snapshot(&e.path()));
            } else {
                out.push((e.path(), std::fs::read(e.path()).unwrap()));
            }
        }
        out.sort();
        out
    }

    #[test]
    fn an_index_that_opens_adds_dead_letters_and_quarantine_and_a_replay_runs_once() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        {
            let q = Queue::open(root, 1 << 30, 100).unwrap();
            let mut r = req(&["a", "b", "c"]);
            r.quarantine.push((
                QuarantineMeta {
                    at: now_rfc3339(),
                    origin: "test:1".into(),
                    reason: "not JSON".into(),
                    len: 3,
                },
                b"bad".to_vec(),
            ));
            q.append_blocking(r).unwrap();
            let dead = DeadLetterMeta {
                at: now_rfc3339(),
                reason: "HTTP 400".into(),
                http_status: Some(400),
                original_seq: 2,
            };
            q.ack(2, vec![(dead, Bytes::from_static(b"b"))]).unwrap();
            // The last commit reaches only its frame: the process stops without a flush, so
            // sled lacks it and the copy must be brought up to date from the frames.
            let mut late = req(&["d"]);
            late.quarantine.push((
                QuarantineMeta {
                    at: now_rfc3339(),
                    origin: "test:2".into(),
                    reason: "not JSON".into(),
                    len: 4,
                },
                b"late".to_vec(),
            ));
            q.append_blocking(late).unwrap();
            drop(q);
        }
        // Moved aside by hand: the index still opens.
        let name = "corrupt-20260101T000000Z";
        let aside = root.join(name);
        std::fs::rename(root.join("store"), &aside).unwrap();
        std::fs::rename(root.join("segments"), aside.join("segments")).unwrap();
        let before = snapshot(&aside);

        let r = inspect(root, name).unwrap();
        assert_eq!(r.index, "opened (on a copy)");
        assert_eq!(
            (r.acked, r.pending_events, r.dead_letters, r.quarantine, r.damaged_events),
            (2, 2, 1, 2, 0),
            "pending events once; the quarantine entry only the frames hold: {r:#?}"
        );
        assert!(r.unreadable.is_empty(), "{:#?}", r.unreadable);
        assert_eq!(snapshot(&aside), before, "reading changes nothing in the moved-aside store");
        let leftovers: Vec<_> = std::fs::read_dir(root)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(".aside-open-"))
            .collect();
        assert!(leftovers.is_empty(), "the copy is removed");

        let q = Queue::open(root, 1 << 30, 100).unwrap();
        let dry = replay(&q, name, true).unwrap();
        assert_eq!((dry.requeued_events, dry.requeued_dead_letters, dry.copied_quarantine), (2, 1, 2));
        assert_eq!(q.counts().pending_events, 0, "a dry run changes nothing");
        assert!(!aside.join(PROGRESS_FILE).exists());

        let done = replay(&q, name, false).unwrap();
        assert_eq!(
            (
                done.requeued_events,
                done.requeued_dead_letters,
                done.copied_quarantine,
                done.stopped.clone()
            ),
            (2, 1, 2, None)
        );
        let got: Vec<Bytes> = q.read(0, 100, 1 << 20).unwrap().into_iter().map(|e| e.data).collect();
        assert_eq!(
            got,
            vec![Bytes::from_static(b"c"), Bytes::from_static(b"d"), Bytes::from_static(b"b")]
        );
        let quarantined: Vec<_> = q
            .list_quarantine(10)
            .unwrap()
            .into_iter()
            .map(|e| (e.meta.origin, String::from_utf8_lossy(&e.data).into_owned()))
            .collect();
        assert_eq!(
            quarantined,
            vec![
                ("test:1".to_string(), "bad".to_string()),
                ("test:2".to_string(), "late".to_string())
            ]
        );
        assert!(unreplayed(root).is_empty());

        let again = replay(&q, name, false).unwrap();
        assert!(again.already_replayed);
        assert_eq!(
            (again.requeued_events, again.requeued_dead_letters, again.copied_quarantine),
            (0, 0, 0)
        );
        assert_eq!(q.counts().pending_events, 3, "a second replay adds nothing");
        assert!(matches!(replay(&q, "corrupt-nope", false), Err(AsideError::NotFound { .. })));
        assert!(matches!(replay(&q, "../x", false), Err(AsideError::NotFound { .. })));
    }

    #[test]
    fn a_replay_stopped_by_a_full_queue_resumes_where_it_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        six_events(root);
        let (q, name) = damage_and_reopen(root);
        // 6 bytes pending of 8: chunks of 2 bytes (a quarter), so [b c] fits and [d e] does not.
        q.set_limits(Limits {
            max_bytes: 8,
            max_quarantine_entries: 100,
            ..Limits::default()
        });
        let x = q.append_blocking(req(&["xxxxxx"])).unwrap();
        let first = replay(&q, &name, false).unwrap();
        let why = first.stopped.clone().expect("stopped by the full queue");
        assert!(why.contains("queue full") && why.contains("run the replay again"), "{why}");
        assert_eq!(first.requeued_events, 2);
        assert_eq!(first.report.progress.pending_after_seq, 3);
        assert_eq!(unreplayed(root), vec![name.clone()], "not done yet");

        q.ack(x.first_seq, vec![]).unwrap();
        let second = replay(&q, &name, false).unwrap();
        assert_eq!((second.requeued_events, second.stopped.clone()), (3, None), "{second:#?}");
        assert!(unreplayed(root).is_empty());
        let got: Vec<Bytes> = q.read(q.acked(), 100, 1 << 20).unwrap().into_iter().map(|e| e.data).collect();
        let want: Vec<Bytes> = ["b", "c", "d", "e", "f"].iter().map(|e| Bytes::from_static(e.as_bytes())).collect();
        assert_eq!(got, want, "each event once, in order");
    }

    /// The frame scan alone (no index, no ack file): the report and the events it yields.
    fn scan_only(dir: &Path) -> (AsideReport, Vec<(u64, String)>) {
        let mut report = AsideReport::default();
        let mut records = BTreeMap::new();
        report.acked = scan_segments(&dir.join("segments"), &mut report, &mut records);
        let mut o = Opened {
            dir: dir.to_path_buf(),
            report,
            records,
            sled: None,
        };
        let mut got = Vec::new();
        o.each_pending(0, true, |seq, e| {
            got.push((seq, String::from_utf8_lossy(&e).into_owned()));
            true
        });
        (o.report, got)
    }

    #[test]
    fn every_cut_and_every_flipped_byte_of_a_segment_loses_exactly_the_frames_it_touches() {
        let (dir, _q, name) = six_events_moved_aside();
        let root = dir.path();
        let aside = root.join(&name);
        let seg = the_segment(&aside);
        let fr = frames(&seg);
        let original = std::fs::read(&seg).unwrap();
        // Frame k: its events and the `acked` it carries ([f] was committed after the ack of 1).
        let frame_events: [&[(u64, &str)]; 4] = [&[(1, "a"), (2, "b")], &[(3, "c")], &[(4, "d"), (5, "e")], &[(6, "f")]];
        let frame_acked = [0, 0, 0, 1];
        let expect = |kept: &[usize]| -> Vec<(u64, String)> {
            let acked = kept.iter().map(|k| frame_acked[*k]).max().unwrap_or(0);
            let mut v: Vec<(u64, String)> = kept
                .iter()
                .flat_map(|k| frame_events[*k].iter())
                .filter(|(s, _)| *s > acked)
                .map(|(s, e)| (*s, e.to_string()))
                .collect();
            v.sort();
            v
        };
        for cut in wal::SEGMENT_MAGIC.len()..original.len() {
            std::fs::write(&seg, &original[..cut]).unwrap();
            let (r, got) = scan_only(&aside);
            let whole: Vec<usize> = (0..4).filter(|k| fr[*k].1 <= cut as u64).collect();
            let at_boundary = fr.iter().any(|(at, _)| *at == cut as u64);
            assert_eq!(got, expect(&whole), "cut at {cut}");
            assert_eq!(
                (r.torn_tails, r.damaged_stretches),
                (u64::from(!at_boundary), 0),
                "cut at {cut}: {r:#?}"
            );
        }
        for i in wal::SEGMENT_MAGIC.len()..original.len() {
            let mut b = original.clone();
            b[i] ^= 0x40;
            std::fs::write(&seg, &b).unwrap();
            let (r, got) = scan_only(&aside);
            let hit = fr.iter().position(|(at, end)| (*at..*end).contains(&(i as u64))).unwrap();
            let others: Vec<usize> = (0..4).filter(|k| *k != hit).collect();
            assert_eq!(got, expect(&others), "flip at {i} (frame {hit})");
            assert_eq!(r.frames, 3, "flip at {i}");
            // A longer length in the last frame reads as a torn tail: either way, counted once.
            assert_eq!(r.torn_tails + r.damaged_stretches, 1, "flip at {i}: {r:#?}");
        }
    }
}
