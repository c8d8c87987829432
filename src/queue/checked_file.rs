//! The two small checked files beside the store: the ack file and the witness.

use super::*;

/// Name of the ack file in the store directory. Its 16 bytes: `acked` (u64 BE) and `acked`
/// XOR [`ACK_FILE_CHECK`] (so a torn or stale write is recognised and ignored).
pub(super) const ACK_FILE: &str = "acked";

pub(super) const ACK_FILE_CHECK: u64 = 0x5EAD_A0C0_ACED_0001;

pub(super) fn write_ack_file(store: &Store, acked: u64) -> Result<(), QueueError> {
    use std::os::unix::fs::FileExt;
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&acked.to_be_bytes());
    b[8..].copy_from_slice(&(acked ^ ACK_FILE_CHECK).to_be_bytes());
    store.ack_file.write_all_at(&b, 0).map_err(|e| storage_err(&store.dir, e))
}

pub(super) fn read_ack_file(store: &Store) -> Option<u64> {
    use std::os::unix::fs::FileExt;
    let mut b = [0u8; 16];
    store.ack_file.read_exact_at(&mut b, 0).ok()?;
    let v = u64::from_be_bytes(b[..8].try_into().ok()?);
    (u64::from_be_bytes(b[8..].try_into().ok()?) == v ^ ACK_FILE_CHECK).then_some(v)
}

/// `<queue.path>/witness`: the next sequence number after the last commit, outside sled.
///
/// sled opens a truncated or damaged log at its last readable point without any error, so a
/// damaged store could silently lose its tail. The write-ahead log restores what sled lost as
/// long as the segments hold it; the witness covers the rest. It is rewritten (16 bytes, with a
/// check word) after every commit and fsynced with every sled flush; at open, a store that is
/// behind it (after the replay) is reported as an incident naming the range lost, and sequence
/// numbers continue after it so none is reused.
pub(super) struct Witness {
    pub(super) file: File,
}

pub(super) const WITNESS_CHECK: u64 = 0x5EAD_0417_7E55_0002;

impl Witness {
    pub(super) fn open(root: &Path) -> std::io::Result<Witness> {
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(root.join("witness"))?;
        Ok(Witness { file })
    }

    pub(super) fn read(&self) -> Option<u64> {
        use std::os::unix::fs::FileExt;
        let mut b = [0u8; 16];
        self.file.read_exact_at(&mut b, 0).ok()?;
        let v = u64::from_be_bytes(b[..8].try_into().ok()?);
        (u64::from_be_bytes(b[8..].try_into().ok()?) == v ^ WITNESS_CHECK).then_some(v)
    }

    /// Records `next_seq` (one `pwrite`, no sync): enough for a process crash; [`Witness::sync`]
    /// makes it durable with each sled flush.
    pub(super) fn write(&self, next_seq: u64) {
        use std::os::unix::fs::FileExt;
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&next_seq.to_be_bytes());
        b[8..].copy_from_slice(&(next_seq ^ WITNESS_CHECK).to_be_bytes());
        let _ = self.file.write_all_at(&b, 0);
    }

    pub(super) fn sync(&self) {
        let _ = sync_data(&self.file);
    }
}
