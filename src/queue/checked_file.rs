//! The two small checked files beside the store, one type: the ack file (`store/acked`) and the
//! witness (`<queue.path>/witness`).
//!
//! Each holds 16 bytes: a value (u64 BE) and the value XOR a per-file check word, so a torn or
//! stale write is recognised and ignored. Writes are one `pwrite` (enough for a process crash);
//! [`CheckedFile::sync`] makes them survive a power loss.
//!
//! The ack file holds `acked` as of the last ack; `open` re-applies it when sled's copy is older.
//! The witness holds the next sequence number after the last commit: sled opens a truncated or
//! damaged log at its last readable point without any error, and the write-ahead log restores
//! what sled lost only as long as the segments hold it; a store that is behind the witness after
//! the replay is reported as an incident naming the range lost, and sequence numbers continue
//! after it so none is reused. The witness is written after every commit and synced with every
//! sled flush.

use super::storage::{Storage, StoredFile};
use super::*;

/// Name of the ack file in the store directory.
pub(super) const ACK_FILE: &str = "acked";
pub(super) const ACK_FILE_CHECK: u64 = 0x5EAD_A0C0_ACED_0001;
/// Name of the witness in `queue.path`.
pub(super) const WITNESS_FILE: &str = "witness";
pub(super) const WITNESS_CHECK: u64 = 0x5EAD_0417_7E55_0002;

pub(super) struct CheckedFile {
    file: Arc<dyn StoredFile>,
    check: u64,
}

impl CheckedFile {
    pub(super) fn open(storage: &dyn Storage, path: &Path, check: u64) -> std::io::Result<CheckedFile> {
        Ok(CheckedFile {
            file: storage.open(path)?,
            check,
        })
    }

    /// The value, if the file holds one that passes its check.
    pub(super) fn read(&self) -> Option<u64> {
        let mut b = [0u8; 16];
        self.file.read_at(&mut b, 0).ok()?;
        let v = u64::from_be_bytes(b[..8].try_into().ok()?);
        (u64::from_be_bytes(b[8..].try_into().ok()?) == v ^ self.check).then_some(v)
    }

    /// Records `v` (one `pwrite`, no sync).
    pub(super) fn write(&self, v: u64) -> std::io::Result<()> {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&v.to_be_bytes());
        b[8..].copy_from_slice(&(v ^ self.check).to_be_bytes());
        self.file.write_at(&b, 0)
    }

    pub(super) fn sync(&self) -> std::io::Result<()> {
        self.file.sync_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_reads_back_and_a_torn_or_foreign_one_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let f = CheckedFile::open(&storage::RealStorage, &path, ACK_FILE_CHECK).unwrap();
        assert_eq!(f.read(), None, "a new file holds nothing");
        f.write(42).unwrap();
        assert_eq!(f.read(), Some(42));
        let other = CheckedFile::open(&storage::RealStorage, &path, WITNESS_CHECK).unwrap();
        assert_eq!(other.read(), None, "another file's check word");
        let mut b = std::fs::read(&path).unwrap();
        b[3] ^= 1;
        std::fs::write(&path, &b).unwrap();
        assert_eq!(f.read(), None, "a torn write");
    }
}
