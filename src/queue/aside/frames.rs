//! The frame scan of a moved-aside store's segment files: every frame that passes its CRC,
//! damaged stretches skipped to the next good frame, the last frame of a commit number winning.

use super::read::Src;
use super::*;

/// Scans every segment file of `seg_dir` (see the module docs). Fills `records` with the
/// records of the winning frame of each commit number; returns the highest `acked` the frames
/// carry.
pub(super) fn scan_segments(seg_dir: &Path, r: &mut AsideReport, records: &mut BTreeMap<u64, Vec<Src>>) -> u64 {
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
