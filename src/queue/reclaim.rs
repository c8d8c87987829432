//! Giving disk space back after a drain: sled never shrinks its files, so the store is
//! rewritten into a fresh directory and swapped in. Every directory it uses (`store.new`,
//! `store.old`, the placeholder `store.tmp`) is inside `queue.path`, so a read-only root file
//! system works (ARCHITECTURE.md invariant 14).

use super::storage::RealStorage;
use super::*;

/// After a drain, rewrite the store when it occupies more than this on disk.
pub(super) const RECLAIM_THRESHOLD_BYTES: u64 = 64 * 1024 * 1024;

/// A throwaway temporary store held while the real one is being swapped.
pub(super) fn open_placeholder(root: &Path) -> Result<Store, QueueError> {
    let dir = root.join("store.tmp");
    let _ = std::fs::remove_dir_all(&dir);
    let db = sled::Config::new()
        .path(&dir)
        .temporary(true)
        .open()
        .map_err(|e| storage_err(&dir, e))?;
    let log = File::open("/dev/null").map_err(|e| storage_err(&dir, e))?;
    let ack_file = CheckedFile::open(&RealStorage, &dir.join(ACK_FILE), ACK_FILE_CHECK).map_err(|e| storage_err(&dir, e))?;
    Ok(Store { db, log, ack_file, dir })
}

pub(super) fn dir_size(dir: &Path) -> u64 {
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

impl Queue {
    /// Bytes the store and its segment files occupy on disk.
    pub(crate) fn size_on_disk(&self) -> u64 {
        let store = self.inner.store.read().unwrap();
        dir_size(&store.dir) + dir_size(&self.inner.readers.dir)
    }

    /// When the queue has drained after a large backlog, rewrite the database into a fresh
    /// directory so the disk space is given back (sled never shrinks its files).
    pub(crate) fn maybe_reclaim(&self) {
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
        // Below the threshold a rewrite is not worth it, unless the disk is short of the
        // reserve (sources paused): then the space sled keeps for what left it (a dead-letter
        // flood replayed or purged) is what the sources are waiting for.
        let disk_short = self.inner.disk_full.lock().unwrap().is_some();
        if size < RECLAIM_THRESHOLD_BYTES && !disk_short {
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
        let mut st = self.inner.state.lock().unwrap();
        if st.counts.pending_events != 0 {
            return Ok(dir_size(&store.dir) + dir_size(&seg.dir));
        }
        // Nothing is pending: no pointer needs a segment any more (the rewrite below drops
        // every `e` key; until it completes, a restart finds `acked` past all of them).
        flush_sled_locked(&self.inner, &store, &mut st)?;
        seg.delete_all(&self.inner.readers);
        let _ = std::fs::remove_dir_all(&new_dir);
        {
            let storage = &*self.inner.storage;
            let fresh = open_sled(&new_dir, storage)?;
            for item in store.db.iter() {
                let (k, v) = item.map_err(|e| storage_err(&store.dir, e))?;
                if k.first() == Some(&b'e') {
                    continue;
                }
                fresh.db.insert(k, v).map_err(|e| storage_err(&new_dir, e))?;
            }
            fresh.db.flush().map_err(|e| storage_err(&new_dir, e))?;
            sync_data(&fresh.log).map_err(|e| storage_err(&new_dir, e))?;
            storage.create(&new_dir.join(".complete")).map_err(|e| storage_err(&new_dir, e))?;
            storage.sync_dir(&new_dir).map_err(|e| storage_err(&new_dir, e))?;
        }
        // Swap: store -> store.old, store.new -> store. `open` completes an interrupted swap.
        let placeholder = open_placeholder(&root)?;
        let old = std::mem::replace(&mut *store, placeholder);
        drop(old);
        let storage = &*self.inner.storage;
        storage.rename(&store_dir, &old_dir).map_err(|e| storage_err(&root, e))?;
        storage.rename(&new_dir, &store_dir).map_err(|e| storage_err(&root, e))?;
        storage.sync_dir(&root).map_err(|e| storage_err(&root, e))?;
        let _ = storage.remove(&store_dir.join(".complete"));
        let _ = std::fs::remove_dir_all(&old_dir);
        *store = open_sled(&store_dir, storage)?;
        store.ack_file.write(st.acked).map_err(|e| storage_err(&store_dir, e))?;
        flush_sled_locked(&self.inner, &store, &mut st)?;
        drop(st);
        let _ = std::fs::remove_dir_all(root.join("store.tmp"));
        Ok(dir_size(&store_dir) + dir_size(&seg.dir))
    }
}
