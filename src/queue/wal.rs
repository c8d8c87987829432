//! The write-ahead log: what one commit writes to the current segment file, in one `write`,
//! covered by one `fdatasync`.
//!
//! A segment file written by this version starts with [`SEGMENT_MAGIC`] and is then a sequence
//! of *frames*, one per commit:
//!
//! ```text
//! frame  := [body_len u32][crc32 of body u32][body]
//! body   := [kind u8 = 2][commit u64][first_seq u64][next_seq u64][q_next u64][acked u64][accepted_at_ms u64]
//!           [delta pending_events i64][delta pending_bytes i64][delta dead_letter i64]
//!           [delta quarantine i64][delta quarantine_evicted i64]
//!           [delta dead_letter_bytes i64][delta quarantine_bytes i64]   (kind 2 only)
//!           [records u32] { [len u32][record] }      records: see `encode_record_into`
//!           [ops u32]     { [key_len u32][key][value_len u32 | u32::MAX = remove][value] }
//! ```
//!
//! A frame holds everything its commit changes: the records (events `first_seq..next_seq`, in
//! order), the sled writes that must happen with them (source checkpoints, quarantine entries
//! and evictions, dead-letter removals), the counter *deltas*, and the `acked` value at commit
//! time (so every commit also makes the acknowledgements before it durable). Record pointers
//! are not stored: they follow from the records' positions in the file.
//!
//! After the `fdatasync`, the frame is applied to sled without a sled flush; sled's batch also
//! moves `m wal_pos` (segment, end offset of the frame), so sled knows which frames it has.
//! At open, frames after `wal_pos` are replayed into sled, each exactly once. Replay stops at
//! the first frame of a segment that is incomplete or fails its CRC: at the end of the file
//! that is a commit torn by a crash (it was never acknowledged to anyone, so nothing is lost);
//! anywhere else it is damage, reported as an incident.
//!
//! Commits are numbered (`commit`, one more than the last one applied; sled keeps the number
//! of the last applied frame in `m wal_commit`, in the batch that applies it). A commit whose
//! write or `fdatasync` failed was never acknowledged, and its number is given to the next
//! commit, written to a new segment; should the failed frame still be on disk, replay applies
//! the *last* frame written under each number, in number order, and stops at a gap.
//!
//! Segment files written before the WAL (no magic) hold bare records; sled was flushed after
//! each of their commits, so they are never replayed.

use bytes::Bytes;

/// First bytes of a segment file that is a write-ahead log.
pub(crate) const SEGMENT_MAGIC: &[u8; 8] = b"SAQWAL1\n";
/// Bytes before the body of a frame.
pub(crate) const FRAME_HEADER: usize = 8;
/// Frames written before the dead letter and the quarantine were bounded in bytes (no byte
/// deltas for them); still read, so a store upgraded with frames not yet in sled replays them.
const KIND_COMMIT_V1: u8 = 1;
const KIND_COMMIT: u8 = 2;
const REMOVE: u32 = u32::MAX;
/// A body larger than this is not a frame we wrote (commits are cut at a few MiB).
const MAX_BODY: usize = 1 << 30;

/// Counter changes of one commit; applied on top of whatever sled holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Deltas {
    pub pending_events: i64,
    pub pending_bytes: i64,
    pub dead_letter: i64,
    pub quarantine: i64,
    pub(crate) quarantine_evicted: i64,
    pub dead_letter_bytes: i64,
    pub quarantine_bytes: i64,
}

/// One sled write of a commit: insert (`Some`) or remove (`None`).
pub type Op = (Vec<u8>, Option<Vec<u8>>);

/// What a frame says about its commit, besides its records and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The commit's number (see the module docs).
    pub commit: u64,
    /// Events `first_seq..next_seq` are the frame's records.
    pub first_seq: u64,
    pub(crate) next_seq: u64,
    /// The next quarantine id after this commit.
    pub(crate) q_next: u64,
    /// `acked` when the commit was made.
    pub acked: u64,
    pub accepted_at_ms: u64,
    pub(crate) deltas: Deltas,
}

/// A commit as the committer builds it.
pub(crate) struct CommitOut<'a> {
    pub h: Header,
    /// The events `first_seq..next_seq`, cut into records.
    pub records: Vec<&'a [Bytes]>,
    pub ops: Vec<Op>,
}

/// Where a record of a frame lies in its segment, with what its pointer needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecordPos {
    pub first_seq: u64,
    pub count: u32,
    pub(crate) offset_in_frame: usize,
    pub len: u32,
    pub payload: u64,
}

/// A frame read back from a segment.
#[derive(Debug)]
pub(crate) struct CommitIn {
    pub h: Header,
    pub records: Vec<RecordPos>,
    pub ops: Vec<Op>,
}

fn put_u32(v: &mut Vec<u8>, x: u32) {
    v.extend_from_slice(&x.to_be_bytes());
}

fn put_u64(v: &mut Vec<u8>, x: u64) {
    v.extend_from_slice(&x.to_be_bytes());
}

/// Whether `b` is the kind byte of a commit frame (any version this build reads).
pub(crate) fn is_commit_kind(b: u8) -> bool {
    b == KIND_COMMIT || b == KIND_COMMIT_V1
}

/// Appends the frame of `c` to `buf`; returns where its records lie, relative to the start of
/// the frame.
pub fn encode(c: &CommitOut<'_>, buf: &mut Vec<u8>) -> Vec<RecordPos> {
    let start = buf.len();
    buf.extend_from_slice(&[0u8; FRAME_HEADER]);
    buf.push(KIND_COMMIT);
    let h = &c.h;
    for x in [h.commit, h.first_seq, h.next_seq, h.q_next, h.acked, h.accepted_at_ms] {
        put_u64(buf, x);
    }
    let d = h.deltas;
    for x in [
        d.pending_events,
        d.pending_bytes,
        d.dead_letter,
        d.quarantine,
        d.quarantine_evicted,
        d.dead_letter_bytes,
        d.quarantine_bytes,
    ] {
        buf.extend_from_slice(&x.to_be_bytes());
    }
    put_u32(buf, c.records.len() as u32);
    let mut out = Vec::with_capacity(c.records.len());
    let mut seq = h.first_seq;
    for events in &c.records {
        let len_at = buf.len();
        put_u32(buf, 0);
        let rec_start = buf.len();
        super::encode_record_into(buf, h.accepted_at_ms, events);
        let len = (buf.len() - rec_start) as u32;
        buf[len_at..len_at + 4].copy_from_slice(&len.to_be_bytes());
        out.push(RecordPos {
            first_seq: seq,
            count: events.len() as u32,
            offset_in_frame: rec_start - start,
            len,
            payload: events.iter().map(|e| e.len() as u64).sum(),
        });
        seq += events.len() as u64;
    }
    put_u32(buf, c.ops.len() as u32);
    for (k, v) in &c.ops {
        put_u32(buf, k.len() as u32);
        buf.extend_from_slice(k);
        match v {
            Some(v) => {
                put_u32(buf, v.len() as u32);
                buf.extend_from_slice(v);
            }
            None => put_u32(buf, REMOVE),
        }
    }
    let body_len = (buf.len() - start - FRAME_HEADER) as u32;
    let crc = crc32fast::hash(&buf[start + FRAME_HEADER..]);
    buf[start..start + 4].copy_from_slice(&body_len.to_be_bytes());
    buf[start + 4..start + 8].copy_from_slice(&crc.to_be_bytes());
    out
}

/// Why a frame could not be read.
#[derive(Debug, PartialEq, Eq)]
pub enum Bad {
    /// The file ends inside the frame (a torn write at the tail).
    Truncated,
    /// The frame is whole but its CRC or content is wrong.
    Damaged(String),
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let s = self.b.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(s)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }
    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }
}

/// Reads the frame at the start of `b`. Returns it and its total length.
pub fn decode(b: &[u8]) -> Result<(CommitIn, usize), Bad> {
    if b.len() < FRAME_HEADER {
        return Err(Bad::Truncated);
    }
    let body_len = u32::from_be_bytes(b[0..4].try_into().unwrap_or([0; 4])) as usize;
    let crc = u32::from_be_bytes(b[4..8].try_into().unwrap_or([0; 4]));
    if body_len > MAX_BODY {
        return Err(Bad::Damaged(format!("frame length {body_len} is impossible")));
    }
    let Some(body) = b.get(FRAME_HEADER..FRAME_HEADER + body_len) else {
        return Err(Bad::Truncated);
    };
    if crc32fast::hash(body) != crc {
        return Err(Bad::Damaged("CRC mismatch".into()));
    }
    let bad = || Bad::Damaged("frame content is malformed".into());
    let mut r = Reader { b: body, pos: 0 };
    let kind = r.take(1).ok_or_else(bad)?[0];
    if kind != KIND_COMMIT && kind != KIND_COMMIT_V1 {
        return Err(Bad::Damaged("unknown frame kind".into()));
    }
    let mut c = CommitIn {
        h: Header {
            commit: r.u64().ok_or_else(bad)?,
            first_seq: r.u64().ok_or_else(bad)?,
            next_seq: r.u64().ok_or_else(bad)?,
            q_next: r.u64().ok_or_else(bad)?,
            acked: r.u64().ok_or_else(bad)?,
            accepted_at_ms: r.u64().ok_or_else(bad)?,
            deltas: Deltas {
                pending_events: r.i64().ok_or_else(bad)?,
                pending_bytes: r.i64().ok_or_else(bad)?,
                dead_letter: r.i64().ok_or_else(bad)?,
                quarantine: r.i64().ok_or_else(bad)?,
                quarantine_evicted: r.i64().ok_or_else(bad)?,
                dead_letter_bytes: 0,
                quarantine_bytes: 0,
            },
        },
        records: Vec::new(),
        ops: Vec::new(),
    };
    if kind == KIND_COMMIT {
        c.h.deltas.dead_letter_bytes = r.i64().ok_or_else(bad)?;
        c.h.deltas.quarantine_bytes = r.i64().ok_or_else(bad)?;
    }
    let n = r.u32().ok_or_else(bad)?;
    let mut seq = c.h.first_seq;
    for _ in 0..n {
        let len = r.u32().ok_or_else(bad)?;
        let at = r.pos;
        let rec = r.take(len as usize).ok_or_else(bad)?;
        let (count, payload) = super::record_totals(rec).ok_or_else(bad)?;
        c.records.push(RecordPos {
            first_seq: seq,
            count,
            offset_in_frame: FRAME_HEADER + at,
            len,
            payload,
        });
        seq += u64::from(count);
    }
    if seq != c.h.next_seq {
        return Err(bad());
    }
    let n = r.u32().ok_or_else(bad)?;
    for _ in 0..n {
        let kl = r.u32().ok_or_else(bad)? as usize;
        let k = r.take(kl).ok_or_else(bad)?.to_vec();
        let vl = r.u32().ok_or_else(bad)?;
        let v = if vl == REMOVE {
            None
        } else {
            Some(r.take(vl as usize).ok_or_else(bad)?.to_vec())
        };
        c.ops.push((k, v));
    }
    if r.pos != body.len() {
        return Err(bad());
    }
    Ok((c, FRAME_HEADER + body_len))
}

/// Reads the frame at `pos` of a segment file of `len` bytes; returns it and where it ends.
pub fn read_at(file: &std::fs::File, len: u64, pos: u64, buf: &mut Vec<u8>) -> std::io::Result<Result<(CommitIn, u64), Bad>> {
    use std::os::unix::fs::FileExt;
    let mut head = [0u8; FRAME_HEADER];
    if pos + FRAME_HEADER as u64 > len {
        return Ok(Err(Bad::Truncated));
    }
    file.read_exact_at(&mut head, pos)?;
    let body_len = u32::from_be_bytes(head[0..4].try_into().unwrap_or([0; 4])) as u64;
    if body_len as usize > MAX_BODY {
        return Ok(Err(Bad::Damaged(format!("frame length {body_len} is impossible"))));
    }
    let total = FRAME_HEADER as u64 + body_len;
    if pos + total > len {
        return Ok(Err(Bad::Truncated));
    }
    buf.clear();
    buf.resize(total as usize, 0);
    file.read_exact_at(buf, pos)?;
    let decoded = decode(buf).map(|(c, n)| (c, pos + n as u64));
    if buf.capacity() > 16 << 20 {
        *buf = Vec::new();
    }
    Ok(decoded)
}

/// Reads the frames of a segment file from `from` (past the magic), one `pread` per frame, and
/// gives each to `f` with its position and end. Returns how the scan ended: `None` at a clean end
/// of the file, or where and why it stopped.
pub(crate) fn scan(file: &std::fs::File, from: u64, mut f: impl FnMut(u64, CommitIn, u64)) -> std::io::Result<Option<(u64, Bad)>> {
    let len = file.metadata()?.len();
    let mut pos = from.max(SEGMENT_MAGIC.len() as u64);
    let mut buf = Vec::new();
    while pos < len {
        match read_at(file, len, pos, &mut buf)? {
            Ok((c, end)) => {
                f(pos, c, end);
                pos = end;
            }
            Err(e) => return Ok(Some((pos, e))),
        }
    }
    Ok(None)
}

/// Whether the file starts with [`SEGMENT_MAGIC`] (a segment that is a write-ahead log).
pub(crate) fn is_wal(file: &std::fs::File) -> bool {
    use std::os::unix::fs::FileExt;
    let mut m = [0u8; 8];
    file.read_exact_at(&mut m, 0).is_ok() && &m == SEGMENT_MAGIC
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn sample(events: &[Bytes]) -> Vec<u8> {
        let c = CommitOut {
            h: Header {
                commit: 4,
                first_seq: 10,
                next_seq: 10 + events.len() as u64,
                q_next: 3,
                acked: 7,
                accepted_at_ms: 123,
                deltas: Deltas {
                    pending_events: events.len() as i64,
                    pending_bytes: 5,
                    dead_letter: -1,
                    quarantine: 2,
                    quarantine_evicted: 0,
                    dead_letter_bytes: -300,
                    quarantine_bytes: 90,
                },
            },
            records: vec![&events[..1], &events[1..]],
            ops: vec![(b"cfile".to_vec(), Some(b"ck".to_vec())), (b"d\0".to_vec(), None)],
        };
        let mut buf = SEGMENT_MAGIC.to_vec();
        encode(&c, &mut buf);
        buf
    }

    type Frames = Vec<(u64, CommitIn, u64)>;

    fn scan_bytes(b: &[u8]) -> (Frames, Option<(u64, Bad)>) {
        use std::io::Write;
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(b).unwrap();
        let mut frames = Vec::new();
        let end = scan(&f, 0, |at, c, stop| frames.push((at, c, stop))).unwrap();
        assert_eq!(is_wal(&f), b.len() >= 8);
        (frames, end)
    }

    #[test]
    fn a_frame_reads_back_as_written_and_its_records_are_where_it_says() {
        let events = [ev("a"), ev("bb"), ev("ccc")];
        let buf = sample(&events);
        let (frames, end) = scan_bytes(&buf);
        assert!(end.is_none());
        assert_eq!(frames.len(), 1);
        let (at, c, stop) = &frames[0];
        assert_eq!((*at, *stop), (SEGMENT_MAGIC.len() as u64, buf.len() as u64));
        assert_eq!(
            (c.h.commit, c.h.first_seq, c.h.next_seq, c.h.q_next, c.h.acked, c.h.accepted_at_ms),
            (4, 10, 13, 3, 7, 123)
        );
        assert_eq!(c.h.deltas.dead_letter, -1);
        assert_eq!((c.h.deltas.dead_letter_bytes, c.h.deltas.quarantine_bytes), (-300, 90));
        assert_eq!(c.ops.len(), 2);
        assert_eq!(c.ops[1], (b"d\0".to_vec(), None));
        assert_eq!(c.records.len(), 2);
        let r = c.records[1];
        assert_eq!((r.first_seq, r.count, r.payload), (11, 2, 5));
        let at = *at as usize + r.offset_in_frame;
        let rec = &buf[at..at + r.len as usize];
        assert_eq!(crate::queue::record_totals(rec), Some((2, 5)));
    }

    #[test]
    fn a_frame_of_the_first_kind_reads_back_with_no_byte_deltas() {
        // Rewrite the sample as the previous version wrote it: kind 1, five deltas.
        let events = [ev("a"), ev("bb"), ev("ccc")];
        let v2 = sample(&events);
        let body = &v2[SEGMENT_MAGIC.len() + FRAME_HEADER..];
        let deltas_end = 1 + 6 * 8 + 5 * 8;
        let mut v1_body = vec![KIND_COMMIT_V1];
        v1_body.extend_from_slice(&body[1..deltas_end]);
        v1_body.extend_from_slice(&body[deltas_end + 16..]);
        let mut buf = SEGMENT_MAGIC.to_vec();
        buf.extend_from_slice(&(v1_body.len() as u32).to_be_bytes());
        buf.extend_from_slice(&crc32fast::hash(&v1_body).to_be_bytes());
        buf.extend_from_slice(&v1_body);
        let (frames, end) = scan_bytes(&buf);
        assert!(end.is_none());
        let c = &frames[0].1;
        assert_eq!((c.h.commit, c.h.next_seq, c.h.deltas.dead_letter), (4, 13, -1));
        assert_eq!((c.h.deltas.dead_letter_bytes, c.h.deltas.quarantine_bytes), (0, 0));
        assert_eq!((c.records.len(), c.ops.len()), (2, 2));
    }

    #[test]
    fn every_torn_tail_is_truncated_and_every_flipped_byte_is_damage() {
        let events = [ev("one"), ev("two")];
        let buf = sample(&events);
        let magic = SEGMENT_MAGIC.len();
        for cut in magic + 1..buf.len() {
            let (frames, end) = scan_bytes(&buf[..cut]);
            assert!(frames.is_empty(), "cut at {cut}");
            assert_eq!(end.map(|e| e.1), Some(Bad::Truncated), "cut at {cut}");
        }
        for i in magic + 4..buf.len() {
            let mut b = buf.clone();
            b[i] ^= 0x40;
            let (frames, end) = scan_bytes(&b);
            assert!(frames.is_empty(), "flip at {i}");
            assert!(matches!(end, Some((_, Bad::Damaged(_)))), "flip at {i}");
        }
    }
}
