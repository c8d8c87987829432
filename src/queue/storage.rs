//! The storage seam: every write, `fdatasync`, rename and removal the queue makes to its own
//! files (segments, the ack file, the witness, their directories) goes through [`Storage`].
//!
//! Production uses [`RealStorage`] (the file system, each sync counted for /metrics). A test can
//! supply its own implementation that remembers what was synced and, on demand, *crashes*:
//! drops every write not yet covered by an `fdatasync` (and files whose directory entry was
//! never synced), optionally tearing the last write at a chosen byte. sled's own files are
//! sled's business; [`Storage::sled_durable`] tells the seam when they were made durable, so a
//! test can put them back to that point.
//!
//! Reads go to the file system directly (`pread` of segments): a crash changes what is on disk,
//! and reads see it.

use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::Arc;

/// The file-system operations the queue's durability depends on.
pub trait Storage: Send + Sync {
    /// Creates `path` empty (truncating it if it exists), for reading and writing.
    fn create(&self, path: &Path) -> io::Result<Arc<dyn StoredFile>>;
    /// Opens `path` for reading and writing, creating it empty if it is missing.
    fn open(&self, path: &Path) -> io::Result<Arc<dyn StoredFile>>;
    fn remove(&self, path: &Path) -> io::Result<()>;
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// `fsync` of a directory: makes the creation, removal and renaming of its entries durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// sled's files under `dir` were just made durable (sled flush, then `fdatasync` of its log).
    /// A test storage may fail here to stand for a crash before that flush.
    fn sled_durable(&self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }
}

/// A file opened through a [`Storage`].
pub trait StoredFile: Send + Sync {
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    fn sync_data(&self) -> io::Result<()>;
}

/// The file system, as it is.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealStorage;

struct RealFile(File);

impl Storage for RealStorage {
    fn create(&self, path: &Path) -> io::Result<Arc<dyn StoredFile>> {
        let f = File::options().read(true).write(true).create(true).truncate(true).open(path)?;
        Ok(Arc::new(RealFile(f)))
    }

    fn open(&self, path: &Path) -> io::Result<Arc<dyn StoredFile>> {
        let f = File::options().read(true).write(true).create(true).truncate(false).open(path)?;
        Ok(Arc::new(RealFile(f)))
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        super::count_sync();
        File::open(dir)?.sync_all()
    }
}

impl StoredFile for RealFile {
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        std::os::unix::fs::FileExt::write_all_at(&self.0, buf, offset)
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(&self.0, buf, offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        super::count_sync();
        self.0.sync_data()
    }
}
