//! The sled index: record pointers, checkpoints, dead letter, quarantine and counters, applied
//! from write-ahead-log frames without a flush, and replayed from them at open. The only part
//! of the queue that knows sled.

use super::storage::Storage;
use super::*;

/// A sled value larger than this goes to a sled blob file (not covered by fsync of the log).
pub(super) const INLINE_LIMIT: usize = 120 * 1024;

pub(super) const SLED_CACHE_BYTES: u64 = 4 * 1024 * 1024;

pub(super) struct Store {
    pub(super) db: sled::Db,
    /// A handle on sled's log file, for `fdatasync` after sled's `flush`.
    pub(super) log: File,
    /// `acked` as of the last ack, written (not synced) at every ack: see [`Queue::ack`].
    pub(super) ack_file: CheckedFile,
    pub(super) dir: PathBuf,
}

pub(super) fn open_sled(dir: &Path, storage: &dyn Storage) -> Result<Store, QueueError> {
    // After a `Db` of this process is dropped, one of sled's IO threads may still hold the
    // locked file for a moment (reopen in `reclaim`, tests): retry briefly. Another process
    // holding it still gets `Locked`.
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match open_sled_once(dir, storage) {
            Err(QueueError::Locked(_)) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            r => return r,
        }
    }
}

pub(super) fn open_sled_once(dir: &Path, storage: &dyn Storage) -> Result<Store, QueueError> {
    let cfg = sled::Config::new().path(dir).cache_capacity(SLED_CACHE_BYTES).flush_every_ms(None);
    let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cfg.open()));
    let db = match opened {
        Ok(Ok(db)) => db,
        Ok(Err(sled::Error::Io(e))) if e.kind() == std::io::ErrorKind::WouldBlock || e.to_string().contains("lock") => {
            return Err(QueueError::Locked(dir.to_path_buf()))
        }
        Ok(Err(sled::Error::Io(e))) => return Err(storage_err(dir, format!("{e} (the store was left as it is: this is not damage)"))),
        Ok(Err(e)) => {
            return Err(QueueError::Corrupt {
                path: dir.to_path_buf(),
                message: e.to_string(),
            })
        }
        Err(_) => {
            return Err(QueueError::Corrupt {
                path: dir.to_path_buf(),
                message: "sled panicked while opening it".into(),
            })
        }
    };
    let log = File::options().read(true).open(dir.join("db")).map_err(|e| storage_err(dir, e))?;
    let ack_file = CheckedFile::open(storage, &dir.join(ACK_FILE), ACK_FILE_CHECK).map_err(|e| storage_err(dir, e))?;
    Ok(Store {
        db,
        log,
        ack_file,
        dir: dir.to_path_buf(),
    })
}

pub(super) fn syncfs(store: &Store) -> Result<(), QueueError> {
    use std::os::unix::io::AsRawFd;
    // SAFETY: plain syscall on a valid, open file descriptor.
    count_sync();
    let rc = unsafe { libc::syncfs(store.log.as_raw_fd()) };
    if rc != 0 {
        return Err(storage_err(&store.dir, std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Replays into sled the frames it does not have (see `wal`): every frame of the segments from
/// `wal_pos`'s on is read once to find, for each commit number, the last frame written under
/// it; then those are applied in number order from sled's `wal_commit` on, up to the first gap,
/// as a live commit is (state and overlay), and drained (the drain records the last number, so
/// each frame reaches sled exactly once). Then sled is flushed. Returns the
/// highest `acked` the applied frames carry, and an incident if a segment is damaged before its
/// end.
pub(super) fn replay_wal(
    store: &Store,
    storage: &dyn Storage,
    seg_dir: &Path,
    state: &mut State,
) -> Result<(u64, Option<String>), QueueError> {
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
    // 1. Where the last frame of each commit number lies.
    let mut latest: std::collections::BTreeMap<u64, (u64, u64)> = Default::default();
    let mut files: std::collections::HashMap<u64, (File, u64)> = Default::default();
    let mut incidents = Vec::new();
    for name in names {
        let path = segment_path(seg_dir, name);
        let file = File::open(&path).map_err(|e| storage_err(&path, e))?;
        if !wal::is_wal(&file) {
            continue;
        }
        // The segment of `wal_pos` is read from its start: a segment holding only event-less
        // commits can be deleted at open and created again under the same name, so an offset
        // into it may belong to an earlier file. Frames already applied are skipped by number.
        let end = wal::scan(&file, 0, |at, c, _| {
            if c.h.commit > state.commits {
                latest.insert(c.h.commit, (name, at));
            }
        })
        .map_err(|e| storage_err(&path, e))?;
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
        let len = file.metadata().map_err(|e| storage_err(&path, e))?.len();
        files.insert(name, (file, len));
    }
    // 2. Apply them in number order.
    let (mut acked, mut replayed, mut buf) = (0u64, 0u64, Vec::new());
    while let Some(&(name, at)) = latest.get(&(state.commits + 1)) {
        let path = segment_path(seg_dir, name);
        let Some((file, len)) = files.get(&name) else { break };
        let (c, end) = match wal::read_at(file, *len, at, &mut buf).map_err(|e| storage_err(&path, e))? {
            Ok(frame) => frame,
            Err(_) => break,
        };
        let pointers: Vec<Pointer> = c.records.iter().map(|r| pointer(c.h.accepted_at_ms, r, name, at)).collect();
        let pos = WalPos {
            segment: name,
            offset: end,
        };
        // The same path as a live commit: memory, then sled in one drain.
        apply_to_state(state, &c.h, c.ops, pointers, pos);
        if state.overlay.is_large() {
            drain(db, state).map_err(|e| storage_err(&store.dir, e))?;
        }
        acked = acked.max(c.h.acked);
        replayed += 1;
    }
    drain(db, state).map_err(|e| storage_err(&store.dir, e))?;
    if replayed > 0 {
        tracing::info!(target: "queue", commits = replayed, next_seq = state.next_seq, "replayed commits from the write-ahead log");
    }
    // Always: what sled read at open may be only in the page cache (a killed process), and
    // segments are deleted below on the strength of it.
    db.flush().map_err(|e| storage_err(&store.dir, e))?;
    sync_data(&store.log).map_err(|e| storage_err(&store.dir, e))?;
    storage.sled_durable(&store.dir).map_err(|e| storage_err(&store.dir, e))?;
    Ok((acked, (!incidents.is_empty()).then(|| incidents.join("; "))))
}

/// A sled write failed: fatal for this process (see the module docs).
pub(super) fn sled_err(inner: &Inner, dir: &Path, e: impl std::fmt::Display) -> QueueError {
    let e = storage_err(dir, e);
    note_failure(inner, &e);
    e
}

pub(super) fn add_deltas(c: Counts, d: wal::Deltas) -> Counts {
    let add = |v: u64, d: i64| v.saturating_add_signed(d);
    Counts {
        pending_events: add(c.pending_events, d.pending_events),
        pending_bytes: add(c.pending_bytes, d.pending_bytes),
        dead_letter: add(c.dead_letter, d.dead_letter),
        quarantine: add(c.quarantine, d.quarantine),
        quarantine_evicted: add(c.quarantine_evicted, d.quarantine_evicted),
        dead_letter_bytes: add(c.dead_letter_bytes, d.dead_letter_bytes),
        quarantine_bytes: add(c.quarantine_bytes, d.quarantine_bytes),
    }
}

/// Makes everything applied to sled durable: sled's `flush`, then `fdatasync` of its log (sled's
/// flush alone is `sync_file_range`). Also syncs the witness.
pub(super) fn flush_sled(inner: &Inner, store: &Store) -> Result<(), QueueError> {
    let mut st = inner.state.lock().unwrap();
    flush_sled_locked(inner, store, &mut st)
}

/// [`flush_sled`] for a caller that holds the state lock.
pub(super) fn flush_sled_locked(inner: &Inner, store: &Store, st: &mut State) -> Result<(), QueueError> {
    inner.sled_dirty.store(false, Ordering::Release);
    drain(&store.db, st).map_err(|e| sled_err(inner, &store.dir, e))?;
    store.db.flush().map_err(|e| sled_err(inner, &store.dir, e))?;
    sync_data(&store.log).map_err(|e| sled_err(inner, &store.dir, e))?;
    inner.storage.sled_durable(&store.dir).map_err(|e| sled_err(inner, &store.dir, e))?;
    if let Err(e) = inner.witness.sync() {
        tracing::warn!(target: "queue", "cannot sync the witness file in {}: {e}", inner.root.display());
    }
    Ok(())
}
