//! Identifying the file being tailed: device + inode, plus a fingerprint of its first bytes.
//!
//! Rename rotation gives the path a new inode while the old file lives on (possibly renamed to
//! `events.jsonl.1`); copytruncate keeps the inode but shrinks the file and changes its head.
//! After a restart, the checkpointed inode is looked for among the path's siblings so a file
//! rotated while the agent was down is drained before the new one is read.

use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Bytes of the file head that are fingerprinted.
pub(crate) const HEAD_LEN: u64 = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileId {
    pub dev: u64,
    pub(crate) ino: u64,
}

impl FileId {
    pub fn of(meta: &std::fs::Metadata) -> FileId {
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

/// The identity and size of what is at `path` now, if anything.
/// What `path` is, if it exists and is not a regular file ("a directory", "a FIFO (named
/// pipe)", ...): a file source cannot tail it.
pub fn not_a_regular_file(path: &Path) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    let t = std::fs::metadata(path).ok()?.file_type();
    if t.is_file() {
        None
    } else if t.is_dir() {
        Some("a directory")
    } else if t.is_fifo() {
        Some("a FIFO (named pipe)")
    } else if t.is_char_device() {
        Some("a character device")
    } else if t.is_block_device() {
        Some("a block device")
    } else if t.is_socket() {
        Some("a socket")
    } else {
        Some("not a regular file")
    }
}

pub(crate) fn stat_path(path: &Path) -> Option<(FileId, u64)> {
    let m = std::fs::metadata(path).ok()?;
    m.is_file().then(|| (FileId::of(&m), m.len()))
}

/// FNV-1a over the first `len` bytes (read with pread; does not move the file position).
pub(crate) fn head_hash(file: &File, len: u64) -> Option<u64> {
    let mut buf = vec![0u8; len as usize];
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], got as u64) {
            Ok(0) => return None,
            Ok(n) => got += n,
            Err(_) => return None,
        }
    }
    let mut h: u64 = 0xcbf29ce484222325;
    for b in &buf {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    Some(h)
}

/// Looks for a file with identity `id` next to `path` (a rotated-away copy such as
/// `events.jsonl.1`).
pub(crate) fn find_rotated(path: &Path, id: FileId) -> Option<PathBuf> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let p = entry.path();
        if let Ok(m) = std::fs::metadata(&p) {
            if m.is_file() && FileId::of(&m) == id {
                return Some(p);
            }
        }
    }
    None
}
