//! A moved-aside store, read without trusting sled: its notes, its segment frames (`frames`),
//! its ack file, and sled opened on a copy; each record read back is checked.

use super::frames::scan_segments;
use super::*;

/// Where a record's bytes are.
#[derive(Debug, Clone)]
pub(super) enum Src {
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
pub(super) struct SledCopy {
    pub(super) store: Store,
    pub(super) _tmp: tempfile::TempDir,
}

/// A moved-aside store, scanned.
pub(super) struct Opened {
    pub(super) dir: PathBuf,
    pub(super) report: AsideReport,
    /// Records by first sequence number; several sources may hold the same one.
    pub(super) records: BTreeMap<u64, Vec<Src>>,
    pub(super) sled: Option<SledCopy>,
}

/// Scans the store at `dir`: its notes, its segment files, its ack file, and sled on a copy.
pub(super) fn open(root: &Path, dir: &Path) -> Opened {
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
    pub(super) fn read_record(&self, src: &Src, files: &mut std::collections::HashMap<u64, File>) -> Result<Bytes, String> {
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
    pub(super) fn each_pending(&mut self, after: u64, report: bool, mut f: impl FnMut(u64, Bytes) -> bool) {
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
    pub(super) fn each_entry(&self, prefix: u8, after: u64, mut f: impl FnMut(u64, &[u8]) -> bool) -> Option<String> {
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
pub(super) fn count(o: &mut Opened) {
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
