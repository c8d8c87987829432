//! The status hub's own small state file, `<queue.path>/status.json`: `state`,
//! `last_success_at` and `last_error`, so a restart shows the last known state.
//!
//! Design: the hub hands each new version of the file's bytes to [`StateFile::save`], which
//! only stores them and wakes a dedicated thread (`status-file`); that thread writes them. The
//! hub is called from the sink's async tasks, and a write with an fsync can stall for as long
//! as the disk likes: it must not happen on a runtime worker (ARCHITECTURE.md, "Threads": disk stalls
//! never block network tasks). Only the newest version is kept: one that arrives while an
//! older one waits replaces it.
//!
//! Invariants:
//! - the file is always whole: written to `.status.json.tmp`, fsynced, renamed over
//!   `status.json`, then the directory is fsynced; a crash leaves the old file or the new one;
//! - a version is never overwritten by an older one: each has a generation, and a write
//!   happens only for a generation newer than the last written (under the write lock, so the
//!   thread and [`StateFile::flush`] cannot interleave);
//! - this is the hub's only write; it never writes into the queue's store.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

/// The file's name in `queue.path`.
pub(crate) const STATUS_FILE: &str = "status.json";
const TMP_FILE: &str = ".status.json.tmp";

/// See the module docs.
pub(crate) struct StateFile {
    shared: Arc<Shared>,
}

struct Shared {
    dir: PathBuf,
    /// The newest version not taken by a writer yet, with its generation; `closed` once the
    /// hub is gone (the thread writes what is left and ends).
    pending: Mutex<Pending>,
    wake: Condvar,
    /// The write lock, holding the last generation written. Taken while `pending` is still
    /// held (always in that order), so a `flush` that finds nothing pending waits for the
    /// write in progress.
    written: Mutex<Written>,
}

#[derive(Default)]
struct Pending {
    generation: u64,
    bytes: Option<Vec<u8>>,
    closed: bool,
}

#[derive(Default)]
struct Written {
    generation: u64,
    /// The last failure reported, so a disk that keeps failing is logged once, not per write.
    last_error: Option<String>,
}

impl StateFile {
    /// The state file in `dir` (the queue's directory), and its writer thread.
    pub fn new(dir: &Path) -> StateFile {
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            pending: Mutex::new(Pending::default()),
            wake: Condvar::new(),
            written: Mutex::new(Written::default()),
        });
        let s = shared.clone();
        let spawned = std::thread::Builder::new().name("status-file".into()).spawn(move || writer(&s));
        if let Err(e) = spawned {
            // Without the thread, `flush` (at shutdown) still saves the state.
            tracing::warn!(target: "status", "cannot start the status-file writer ({e}); the last known state is saved only at shutdown");
        }
        StateFile { shared }
    }

    /// What the file held at start, if it reads.
    pub fn read(dir: &Path) -> Option<Vec<u8>> {
        std::fs::read(dir.join(STATUS_FILE)).ok()
    }

    /// Hands a new version to the writer thread. Never blocks on the disk.
    pub(crate) fn save(&self, bytes: Vec<u8>) {
        let mut p = self.shared.pending.lock().unwrap();
        p.generation += 1;
        p.bytes = Some(bytes);
        self.shared.wake.notify_one();
    }

    /// Writes the newest version now, in the caller's thread, or waits for the write in
    /// progress (graceful shutdown; call it off the runtime's workers).
    pub fn flush(&self) {
        let mut p = self.shared.pending.lock().unwrap();
        let job = p.bytes.take().map(|b| (p.generation, b));
        let mut w = self.shared.written.lock().unwrap();
        drop(p);
        if let Some((generation, bytes)) = job {
            self.shared.write(&mut w, generation, &bytes);
        }
    }
}

impl Drop for StateFile {
    fn drop(&mut self) {
        self.shared.pending.lock().unwrap().closed = true;
        self.shared.wake.notify_one();
    }
}

fn writer(s: &Shared) {
    loop {
        let mut p = s.pending.lock().unwrap();
        while p.bytes.is_none() && !p.closed {
            p = s.wake.wait(p).unwrap();
        }
        let Some(bytes) = p.bytes.take() else { return };
        let generation = p.generation;
        let mut w = s.written.lock().unwrap();
        drop(p);
        s.write(&mut w, generation, &bytes);
    }
}

impl Shared {
    fn write(&self, w: &mut Written, generation: u64, bytes: &[u8]) {
        if generation <= w.generation {
            return;
        }
        w.generation = generation;
        let path = self.dir.join(STATUS_FILE);
        match write_whole(&self.dir, bytes) {
            Ok(()) => {
                if w.last_error.take().is_some() {
                    tracing::info!(target: "status", "{} is saved again", path.display());
                }
            }
            Err(e) => {
                let e = e.to_string();
                if w.last_error.as_deref() != Some(e.as_str()) {
                    tracing::warn!(target: "status", "cannot save {} ({e}); the status shown after a restart may be older; check the queue directory's disk and permissions", path.display());
                    w.last_error = Some(e);
                }
            }
        }
    }
}

/// Temporary file, fsync, rename, directory fsync.
fn write_whole(dir: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(TMP_FILE);
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, dir.join(STATUS_FILE))?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The newest version wins, whichever of the thread and `flush` writes it, and no
    /// temporary file is left behind.
    #[test]
    fn the_newest_version_is_saved_whole_and_never_replaced_by_an_older_one() {
        let dir = tempfile::tempdir().unwrap();
        let f = StateFile::new(dir.path());
        for i in 0..200 {
            f.save(format!("{{\"v\":{i}}}").into_bytes());
        }
        f.flush();
        assert_eq!(StateFile::read(dir.path()).unwrap(), b"{\"v\":199}");
        assert!(!dir.path().join(TMP_FILE).exists());
        // A writer still holding an older version (the thread, having taken it before the
        // flush) must not write it over the newer one.
        let mut w = f.shared.written.lock().unwrap();
        f.shared.write(&mut w, 1, b"{\"v\":0}");
        drop(w);
        assert_eq!(StateFile::read(dir.path()).unwrap(), b"{\"v\":199}");
        // Without a flush, the thread writes it.
        f.save(b"{\"v\":200}".to_vec());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while StateFile::read(dir.path()).as_deref() != Some(&b"{\"v\":200}"[..]) {
            assert!(
                std::time::Instant::now() < deadline,
                "the writer thread did not save the last version"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        drop(f);
    }
}
