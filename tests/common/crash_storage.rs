//! A [`Storage`] for the queue that can crash: it writes through to real files in a temp dir,
//! remembers what each `fdatasync` made durable, and on [`CrashStorage::crash`] puts the disk
//! back to what a crash at that instant could leave:
//!
//! - *process kill*: every completed write survives (the OS page cache has it); sled loses what
//!   it had not flushed;
//! - *power loss*: a file holds only what was synced, plus (optionally) the first `tear` bytes
//!   of its first unsynced write (a torn write), for the file written last; a file whose
//!   directory entry was never synced is gone; sled is back to its last flush.
//!
//! sled's own files are not written through the seam: [`Storage::sled_durable`] snapshots the
//! store directory, and a crash restores that snapshot (the most pessimistic state a crash can
//! leave sled in, and a state sled itself recovers to).
//!
//! [`CrashStorage::fail_after`] arms a fuse: after that many more storage operations, every
//! operation fails with EIO (a disk that died mid-commit).

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sendauth_siem::queue::{Storage, StoredFile};

#[derive(Default)]
struct Tracked {
    durable: Vec<u8>,
    entry_durable: bool,
    /// Writes since the last sync, in order.
    pending: Vec<(u64, Vec<u8>)>,
}

#[derive(Default)]
struct State {
    files: HashMap<PathBuf, Tracked>,
    fuse: Option<u64>,
    ops: u64,
    last_written: Option<PathBuf>,
}

struct Shared {
    state: Mutex<State>,
    /// `<queue.path>/store`, whose sled files are snapshotted and restored.
    store: PathBuf,
    snapshot: PathBuf,
}

#[derive(Clone)]
pub struct CrashStorage(Arc<Shared>);

struct CrashFile {
    shared: Arc<Shared>,
    path: PathBuf,
    file: std::fs::File,
}

fn eio() -> io::Error {
    io::Error::other("injected I/O error (the test's disk died)")
}

impl Shared {
    /// Counts an operation; fails once the fuse has burnt down.
    fn tick(&self) -> io::Result<std::sync::MutexGuard<'_, State>> {
        let mut s = self.state.lock().unwrap();
        s.ops += 1;
        match s.fuse {
            Some(0) => Err(eio()),
            Some(n) => {
                s.fuse = Some(n - 1);
                Ok(s)
            }
            None => Ok(s),
        }
    }
}

fn copy_dir(from: &Path, to: &Path, skip: &[PathBuf]) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let p = e.path();
        if skip.iter().any(|s| s.file_name() == p.file_name()) {
            continue;
        }
        let t = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&p, &t, skip);
        } else {
            std::fs::copy(&p, &t).unwrap();
        }
    }
}

impl CrashStorage {
    /// A storage for the queue at `root`; snapshots go to `scratch` (outside `root`).
    pub fn new(root: &Path, scratch: &Path) -> CrashStorage {
        CrashStorage(Arc::new(Shared {
            state: Mutex::new(State::default()),
            store: root.join("store"),
            snapshot: scratch.join("sled-snapshot"),
        }))
    }

    /// After `n` more operations, every operation fails.
    pub fn fail_after(&self, n: u64) {
        self.0.state.lock().unwrap().fuse = Some(n);
    }

    /// Disarms the fuse (the disk works again).
    pub fn disarm(&self) {
        self.0.state.lock().unwrap().fuse = None;
    }

    /// Operations so far.
    pub fn ops(&self) -> u64 {
        self.0.state.lock().unwrap().ops
    }

    /// Puts the disk back to what a crash now could leave (see the module docs). Every handle
    /// of the queue must be dropped first. Afterwards everything on disk counts as durable.
    pub fn crash(&self, power_loss: bool, tear: Option<usize>) {
        let sh = &self.0;
        let mut s = sh.state.lock().unwrap();
        let last = s.last_written.clone();
        let tracked: Vec<PathBuf> = s.files.keys().cloned().collect();
        // sled back to its last flush; our own files in the store dir are handled below.
        if sh.store.exists() {
            for e in std::fs::read_dir(&sh.store).unwrap().flatten() {
                if tracked.contains(&e.path()) {
                    continue;
                }
                if e.file_type().unwrap().is_dir() {
                    std::fs::remove_dir_all(e.path()).unwrap();
                } else {
                    std::fs::remove_file(e.path()).unwrap();
                }
            }
        }
        if sh.snapshot.exists() {
            copy_dir(&sh.snapshot, &sh.store, &tracked);
        }
        if power_loss {
            for (path, t) in s.files.iter_mut() {
                if !t.entry_durable {
                    let _ = std::fs::remove_file(path);
                    continue;
                }
                let mut content = t.durable.clone();
                if let (Some(n), Some((off, bytes))) = (tear, t.pending.first()) {
                    if last.as_deref() == Some(path.as_path()) {
                        let off = *off as usize;
                        let k = n.min(bytes.len());
                        if content.len() < off + k {
                            content.resize(off + k, 0);
                        }
                        content[off..off + k].copy_from_slice(&bytes[..k]);
                    }
                }
                std::fs::write(path, &content).unwrap();
            }
        }
        *s = State::default();
    }
}

impl Storage for CrashStorage {
    fn create(&self, path: &Path) -> io::Result<Arc<dyn StoredFile>> {
        let mut s = self.0.tick()?;
        let file = std::fs::File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        s.files.insert(path.to_path_buf(), Tracked::default());
        Ok(Arc::new(CrashFile {
            shared: self.0.clone(),
            path: path.to_path_buf(),
            file,
        }))
    }

    fn open(&self, path: &Path) -> io::Result<Arc<dyn StoredFile>> {
        let mut s = self.0.tick()?;
        let existed = path.exists();
        let file = std::fs::File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let durable = if existed { std::fs::read(path)? } else { Vec::new() };
        s.files.entry(path.to_path_buf()).or_insert(Tracked {
            durable,
            entry_durable: existed,
            pending: Vec::new(),
        });
        Ok(Arc::new(CrashFile {
            shared: self.0.clone(),
            path: path.to_path_buf(),
            file,
        }))
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut s = self.0.tick()?;
        std::fs::remove_file(path)?;
        s.files.remove(path);
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut s = self.0.tick()?;
        std::fs::rename(from, to)?;
        if let Some(t) = s.files.remove(from) {
            s.files.insert(to.to_path_buf(), t);
        }
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.0.tick()?;
        for (p, t) in s.files.iter_mut() {
            if p.parent() == Some(dir) {
                t.entry_durable = true;
            }
        }
        Ok(())
    }

    fn sled_durable(&self, dir: &Path) -> io::Result<()> {
        let sh = &self.0;
        // The disk died before this flush: the crash puts sled back to the previous one.
        let s = sh.tick()?;
        if dir != sh.store {
            return Ok(());
        }
        let tracked: Vec<PathBuf> = s.files.keys().cloned().collect();
        let _ = std::fs::remove_dir_all(&sh.snapshot);
        copy_dir(dir, &sh.snapshot, &tracked);
        Ok(())
    }
}

impl StoredFile for CrashFile {
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut s = self.shared.tick()?;
        std::os::unix::fs::FileExt::write_all_at(&self.file, buf, offset)?;
        if let Some(t) = s.files.get_mut(&self.path) {
            t.pending.push((offset, buf.to_vec()));
        }
        s.last_written = Some(self.path.clone());
        Ok(())
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(&self.file, buf, offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut s = self.shared.tick()?;
        let content = std::fs::read(&self.path)?;
        if let Some(t) = s.files.get_mut(&self.path) {
            t.durable = content;
            t.pending.clear();
        }
        Ok(())
    }
}
