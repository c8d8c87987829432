//! Segment files: where the records (inside write-ahead-log frames, see `wal`) lie on disk,
//! the one appender, and the readers (`pread` through the OS page cache, a few records cached).

use super::storage::{Storage, StoredFile};
use super::*;

/// A segment file is closed for appends once it holds this much.
pub(super) const SEGMENT_BYTES: u64 = 32 * 1024 * 1024;

pub(super) const POINTER_LEN: usize = 1 + 8 + 4 + 8 + 8 + 4 + 8;

/// Records read back recently, kept for the next read and for partial acks (the delivery loop
/// reads a batch, then acks it: both touch the same record).
pub(super) const RECORD_CACHE: usize = 4;

/// The append side of the segment files. Holding its lock is what makes a caller the one
/// appender: sequence numbers are assigned only under it.
pub(super) struct SegmentWriter {
    pub(super) storage: Arc<dyn Storage>,
    pub(super) dir: PathBuf,
    /// First sequence number of each segment file, ascending; appends go to the last one.
    pub(super) segments: std::collections::VecDeque<u64>,
    pub(super) current: Option<CurrentSegment>,
    pub(super) buf: Vec<u8>,
    /// [`SEGMENT_BYTES`]; smaller in tests.
    pub(super) roll_bytes: u64,
}

pub(super) struct CurrentSegment {
    pub(super) first_seq: u64,
    pub(super) file: Arc<dyn StoredFile>,
    pub(super) len: u64,
}

/// The read side: open segment files and a few recently read records.
pub(super) struct SegmentReaders {
    pub(super) dir: PathBuf,
    pub(super) files: Mutex<std::collections::HashMap<u64, Arc<File>>>,
    pub(super) records: Mutex<std::collections::VecDeque<(u64, Bytes)>>,
}

/// A record's sled key and pointer value.
pub(super) type Pointer = ([u8; 9], [u8; POINTER_LEN]);

/// The pointer to record `r` of the frame at `frame_at` in segment `segment`.
pub(super) fn pointer(accepted_at_ms: u64, r: &wal::RecordPos, segment: u64, frame_at: u64) -> Pointer {
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
pub(super) struct WalPos {
    pub(super) segment: u64,
    pub(super) offset: u64,
}

impl WalPos {
    pub(super) fn to_bytes(self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.segment.to_be_bytes());
        b[8..].copy_from_slice(&self.offset.to_be_bytes());
        b
    }

    pub(super) fn from_bytes(b: &[u8]) -> Option<WalPos> {
        Some(WalPos {
            segment: u64::from_be_bytes(b.get(..8)?.try_into().ok()?),
            offset: u64::from_be_bytes(b.get(8..16)?.try_into().ok()?),
        })
    }
}

pub(super) fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("{first_seq:020}.seg"))
}

impl SegmentWriter {
    /// Scans `dir`: keeps the segments that may hold unacknowledged events and deletes the
    /// others (fully acknowledged ones, and any created for `next_seq` or later: a commit that
    /// never completed).
    pub(super) fn open(storage: Arc<dyn Storage>, dir: &Path, next_seq: u64, acked: u64) -> std::io::Result<SegmentWriter> {
        if !dir.exists() {
            std::fs::create_dir_all(dir)?;
            if let Some(parent) = dir.parent() {
                storage.sync_dir(parent)?;
            }
        }
        let mut found: Vec<u64> = Vec::new();
        for e in std::fs::read_dir(dir)?.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if let Some(n) = name.strip_suffix(".seg").and_then(|n| n.parse::<u64>().ok()) {
                if n >= next_seq {
                    let _ = storage.remove(&e.path());
                } else {
                    found.push(n);
                }
            }
        }
        found.sort_unstable();
        let mut w = SegmentWriter {
            storage,
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
    pub(super) fn append_frame(&mut self, c: &wal::CommitOut<'_>) -> std::io::Result<(Vec<Pointer>, WalPos)> {
        let roll = match &self.current {
            None => true,
            // A new segment is named after `first_seq`: never the current one's own name.
            Some(cur) => cur.len >= self.roll_bytes && cur.first_seq != c.h.first_seq,
        };
        self.buf.clear();
        if roll {
            // A file of this name can only hold frames of commits whose sequence numbers were
            // never given out (`open` replays, then deletes such files), so truncating is safe.
            let path = segment_path(&self.dir, c.h.first_seq);
            let file = self.storage.create(&path)?;
            self.storage.sync_dir(&self.dir)?;
            if self.segments.back() != Some(&c.h.first_seq) {
                self.segments.push_back(c.h.first_seq);
            }
            self.current = Some(CurrentSegment {
                first_seq: c.h.first_seq,
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
            .map(|r| pointer(c.h.accepted_at_ms, r, cur.first_seq, frame_at))
            .collect();
        cur.file.write_at(&self.buf, cur.len)?;
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

    pub(super) fn sync(&mut self) -> std::io::Result<()> {
        match &self.current {
            Some(c) => c.file.sync_data(),
            None => Ok(()),
        }
    }

    /// After a failed commit: the current segment may end with bytes no pointer refers to;
    /// the next commit starts a new segment.
    pub(super) fn abandon(&mut self) {
        self.current = None;
    }

    /// Whether some segment holds only sequence numbers up to `acked`.
    pub(super) fn has_acked(&self, acked: u64) -> bool {
        self.segments.get(1).is_some_and(|next| *next <= acked + 1)
    }

    /// Deletes the segments whose sequence numbers are all `<= acked`. The caller makes sure
    /// that `acked` is durable first. The segment being appended to is kept.
    pub(super) fn delete_acked(&mut self, acked: u64, readers: Option<&SegmentReaders>) {
        while self.has_acked(acked) {
            let Some(first) = self.segments.pop_front() else { break };
            if let Some(r) = readers {
                r.files.lock().unwrap().remove(&first);
            }
            if let Err(e) = self.storage.remove(&segment_path(&self.dir, first)) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(target: "queue", "cannot delete the acknowledged segment {first}: {e}");
                }
            }
        }
    }

    /// Deletes every segment (the queue is empty).
    pub(super) fn delete_all(&mut self, readers: &SegmentReaders) {
        self.current = None;
        for first in std::mem::take(&mut self.segments) {
            let _ = self.storage.remove(&segment_path(&self.dir, first));
        }
        readers.files.lock().unwrap().clear();
        readers.records.lock().unwrap().clear();
    }
}

impl SegmentReaders {
    /// The record stored under `first_seq`: the value itself (v1) or read through its pointer.
    pub(super) fn load(&self, first_seq: u64, raw: &[u8]) -> Result<Bytes, String> {
        match raw.first() {
            Some(1) => return Ok(Bytes::copy_from_slice(raw)),
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
pub(super) fn record_summary(value: &[u8]) -> Option<(u64, u64)> {
    match value.first() {
        Some(2) if value.len() == POINTER_LEN => Some((
            u32::from_be_bytes(value[9..13].try_into().ok()?) as u64,
            u64::from_be_bytes(value[33..41].try_into().ok()?),
        )),
        _ => None,
    }
}
