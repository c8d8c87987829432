//! Opening the queue: finish an interrupted reclaim, open sled (moving a damaged store aside),
//! replay the write-ahead log into it, check the witness, start the committer, and apply acks
//! newer than sled's. The order matters: the log replay needs the store, the witness check needs
//! the replayed `next_seq`, and the acks need the committer (they go through the commit path).

use super::*;

impl Queue {
    /// Opens (or creates) the queue under `root` (`queue.path`).
    pub fn open(root: &Path, max_bytes: u64, max_quarantine: u64) -> Result<Queue, QueueError> {
        Queue::open_with_storage(root, max_bytes, max_quarantine, Arc::new(RealStorage))
    }

    /// [`Queue::open`] with its files written through `storage` (a test's crashable seam).
    pub fn open_with_storage(root: &Path, max_bytes: u64, max_quarantine: u64, storage: Arc<dyn Storage>) -> Result<Queue, QueueError> {
        std::fs::create_dir_all(root).map_err(|e| storage_err(root, e))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700));
        }
        let store_dir = root.join("store");
        finish_interrupted_reclaim(root, &store_dir)?;

        let seg_dir = root.join("segments");
        let (store, mut incident, moved_aside) = open_or_move_aside(root, &store_dir, &seg_dir, &*storage)?;
        let db = &store.db;
        let mut state = State::from_sled(db).map_err(|e| storage_err(&store_dir, e))?;
        count_unrecorded_entry_bytes(db, &store_dir, &mut state)?;
        // Commits whose frames are durable but that sled had not written when the process
        // stopped: replay them (see `wal`).
        let (wal_acked, wal_incident) = replay_wal(&store, &*storage, &seg_dir, &mut state)?;
        add_incident(&mut incident, wal_incident);
        // sled recovers a truncated or damaged log to its last readable point without an error
        // (found by the corruption campaign): the witness says how far the queue had really got.
        let witness = CheckedFile::open(&*storage, &root.join(WITNESS_FILE), WITNESS_CHECK).map_err(|e| storage_err(root, e))?;
        storage.sync_dir(root).map_err(|e| storage_err(root, e))?;
        add_incident(&mut incident, check_witness(witness.read(), &mut state, moved_aside, &store_dir));
        let durable_next = state.next_seq;
        let segments = SegmentWriter::open(storage.clone(), &seg_dir, state.next_seq, state.acked).map_err(|e| storage_err(&seg_dir, e))?;
        let inner = Arc::new(Inner {
            root: root.to_path_buf(),
            root_id: dir_id(root),
            store: RwLock::new(store),
            segments: Mutex::new(segments),
            readers: SegmentReaders {
                dir: seg_dir,
                files: Mutex::new(Default::default()),
                records: Mutex::new(Default::default()),
            },
            state: Mutex::new(state),
            durable_next: AtomicU64::new(durable_next),
            limits: Mutex::new(Limits {
                max_bytes,
                max_quarantine_entries: max_quarantine,
                ..Limits::default()
            }),
            appended: tokio::sync::Notify::new(),
            incident: Mutex::new(incident),
            witness,
            storage: storage.clone(),
            failed: Mutex::new(None),
            fatal: tokio::sync::Notify::new(),
            min_free: AtomicU64::new(DEFAULT_MIN_FREE_BYTES),
            disk_full: Mutex::new(None),
            committer: Mutex::new(None),
            sled_dirty: std::sync::atomic::AtomicBool::new(false),
            commit_gap_us: AtomicU64::new(COMMIT_GAP.as_micros() as u64),
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
        apply_newer_acks(&q, wal_acked)?;
        Ok(q)
    }
}

/// Finishes or undoes a reclaim that a crash interrupted (see `reclaim`): a complete new store
/// replaces a missing one, else the old one comes back; leftovers are removed.
fn finish_interrupted_reclaim(root: &Path, store_dir: &Path) -> Result<(), QueueError> {
    let new_dir = root.join("store.new");
    let old_dir = root.join("store.old");
    if !store_dir.exists() && new_dir.join(".complete").exists() {
        std::fs::rename(&new_dir, store_dir).map_err(|e| storage_err(root, e))?;
    } else if !store_dir.exists() && old_dir.exists() {
        std::fs::rename(&old_dir, store_dir).map_err(|e| storage_err(root, e))?;
    }
    let _ = std::fs::remove_dir_all(&new_dir);
    let _ = std::fs::remove_dir_all(&old_dir);
    Ok(())
}

/// Opens sled at `store_dir`. On evidence of damage (not a full disk, a permission or an I/O
/// error: those are returned for the supervisor to retry, and nothing moves), the store and its
/// segment files are moved aside to `corrupt-<UTC time>/` and an empty store is opened
/// (ARCHITECTURE.md invariant 12). Returns the store, the incident to report, and whether a
/// store was moved aside.
fn open_or_move_aside(
    root: &Path,
    store_dir: &Path,
    seg_dir: &Path,
    storage: &dyn Storage,
) -> Result<(Store, Option<String>, bool), QueueError> {
    match open_sled(store_dir, storage) {
        Ok(s) => Ok((s, None, false)),
        // Not corruption (a full disk, permissions, an I/O error): nothing is moved; the
        // caller reports it and exits for its supervisor to retry.
        Err(e @ (QueueError::Locked(_) | QueueError::Storage { .. })) => Err(e),
        Err(e) => {
            let aside = root.join(format!("corrupt-{}", chrono::Utc::now().format("%Y%m%dT%H%M%SZ")));
            let moved = std::fs::rename(store_dir, &aside);
            let msg = format!(
                "the queue database at {} could not be opened ({e}); it was moved aside to {} and a new, empty queue was started. Events in it were not forwarded yet: see what it holds with `sendauth-siem aside list` and re-queue it with `sendauth-siem aside replay <name>`",
                store_dir.display(),
                aside.display()
            );
            tracing::error!(target: "queue", "{msg}");
            if let Err(me) = moved {
                return Err(storage_err(store_dir, format!("{e}; and moving it aside failed: {me}")));
            }
            // The segment files belong to that database: keep them with it.
            if seg_dir.exists() {
                if let Err(me) = std::fs::rename(seg_dir, aside.join("segments")) {
                    return Err(storage_err(seg_dir, format!("{e}; and moving its segments aside failed: {me}")));
                }
            }
            aside::note_moved(&aside, &e.to_string());
            Ok((open_sled(store_dir, storage)?, Some(msg), true))
        }
    }
}

/// Stores written before the dead letter and the quarantine were bounded in bytes have no byte
/// counters: count them once (bounded by their entry limits), and keep them.
fn count_unrecorded_entry_bytes(db: &sled::Db, store_dir: &Path, state: &mut State) -> Result<(), QueueError> {
    for (prefix, name) in [(b'd', "dl_bytes"), (b'q', "q_bytes")] {
        if db.get(meta_key(name)).map_err(|e| storage_err(store_dir, e))?.is_none() {
            let mut total = 0u64;
            for item in db.range(key(prefix, 0)..=key(prefix, u64::MAX)) {
                total += item.map_err(|e| storage_err(store_dir, e))?.1.len() as u64;
            }
            match prefix {
                b'd' => state.counts.dead_letter_bytes = total,
                _ => state.counts.quarantine_bytes = total,
            }
            // Kept with the next drain (a missing key reads as 0, right for an empty store).
            state.overlay.dirty |= total > 0;
        }
    }
    Ok(())
}

/// sled recovers a truncated or damaged log to its last readable point without an error (found
/// by the corruption campaign): the witness `w` says how far the queue had really got. Moves
/// `next_seq` past it; returns the incident if events were lost.
fn check_witness(w: Option<u64>, state: &mut State, moved_aside: bool, store_dir: &Path) -> Option<String> {
    let w = w?;
    // After a move aside, the events before `w` are in the moved-aside store (see
    // `aside`), not lost: sequence numbers just continue after them.
    if w > state.next_seq && moved_aside {
        state.next_seq = w;
    } else if w > state.next_seq {
        let lost = w - state.next_seq;
        let msg = format!(
            "the queue store at {} came back shorter than it was (damaged or truncated on disk): up to {lost} events with sequence numbers {}..{} were lost and cannot be forwarded; new events continue after them. Inspect the disk; the rest of the queue is intact",
            store_dir.display(),
            state.next_seq,
            w - 1
        );
        tracing::error!(target: "queue", "{msg}");
        state.next_seq = w;
        return Some(msg);
    }
    None
}

/// Acks newer than sled's copy (the process died before sled wrote them): the newest of the ack
/// file and the `acked` carried by the replayed frames is applied; else the ack file is brought
/// to sled's value.
fn apply_newer_acks(q: &Queue, wal_acked: u64) -> Result<(), QueueError> {
    let (file_acked, acked, next_seq) = {
        let store = q.inner.store.read().unwrap();
        let st = q.inner.state.lock().unwrap();
        (store.ack_file.read(), st.acked, st.next_seq)
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
        _ => {
            let store = q.inner.store.read().unwrap();
            store.ack_file.write(acked).map_err(|e| storage_err(&store.dir, e))?
        }
    }
    Ok(())
}
