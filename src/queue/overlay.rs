//! What commits and acks changed that sled does not have yet: sled is written lazily.
//!
//! Writing a batch to sled costs far more than the batch: sled writes and `sync_file_range`s
//! an IO buffer for it and wakes its seven IO threads (measured: two log writes, two syncs and
//! dozens of futex wake-ups per commit). So a commit, once its frame is `fdatasync`ed, changes
//! only memory (this overlay, under the state lock), and an ack only memory and the ack file;
//! [`drain`] writes everything to sled in one batch when the committer settles, every
//! `FLUSH_EVERY` under load, when the overlay grows past [`Overlay::is_large`], and before
//! anything that reads sled for it (listings, reclaim, dead-letter commands).
//!
//! Consistency: a drain writes one snapshot of the state (records, writes, counters, `acked`,
//! the last frame's number and position), so sled is always "every frame up to N and every ack
//! up to A", and a replay after a crash adds to it exactly the frames after N.
//!
//! Readers see the overlay: its records are all newer than sled's (a drain moves all of them),
//! so a read goes through sled's records, then the overlay's.

use std::collections::BTreeMap;

use super::*;

/// Past this many records or bytes of writes, the committer drains the overlay.
const LARGE_RECORDS: usize = 4096;
const LARGE_OP_BYTES: usize = 1 << 20;

#[derive(Default)]
pub(super) struct Overlay {
    /// Pointers of records not yet in sled, by first sequence number.
    pub(super) pointers: BTreeMap<u64, [u8; POINTER_LEN]>,
    /// Other writes (checkpoints, quarantine entries and evictions, dead letters), in order.
    pub(super) ops: Vec<wal::Op>,
    op_bytes: usize,
    /// sled keys of records acknowledged since the last drain.
    pub(super) removed: Vec<[u8; 9]>,
    /// Number and end position of the last frame applied here.
    last: Option<(u64, WalPos)>,
    /// Something changed since the last drain (also acks alone).
    pub(super) dirty: bool,
}

impl Overlay {
    pub(super) fn add_commit(&mut self, pointers: Vec<Pointer>, ops: Vec<wal::Op>, commit: u64, pos: WalPos) {
        for (k, p) in pointers {
            let seq = u64::from_be_bytes(k[1..9].try_into().unwrap_or([0; 8]));
            self.pointers.insert(seq, p);
        }
        self.op_bytes += ops.iter().map(|(k, v)| k.len() + v.as_ref().map_or(0, Vec::len)).sum::<usize>();
        self.ops.extend(ops);
        self.last = Some((commit, pos));
        self.dirty = true;
    }

    pub(super) fn add_op(&mut self, op: wal::Op) {
        self.op_bytes += op.0.len() + op.1.as_ref().map_or(0, Vec::len);
        self.ops.push(op);
        self.dirty = true;
    }

    pub(super) fn is_large(&self) -> bool {
        self.pointers.len() > LARGE_RECORDS || self.op_bytes > LARGE_OP_BYTES
    }

    /// The newest write to `key` here: `Some(None)` if it was removed, `None` if not written.
    pub(super) fn latest(&self, key: &[u8]) -> Option<Option<&Vec<u8>>> {
        self.ops.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_ref())
    }

    /// The record holding `seq` (the last starting at or before it), if it is here.
    pub(super) fn record_at_or_before(&self, seq: u64) -> Option<(u64, [u8; POINTER_LEN])> {
        self.pointers.range(..=seq).next_back().map(|(s, p)| (*s, *p))
    }

    /// Records starting in `from..before`, in order.
    pub(super) fn records(&self, from: u64, before: u64) -> Vec<(u64, [u8; POINTER_LEN])> {
        if from >= before {
            return Vec::new();
        }
        self.pointers.range(from..before).map(|(s, p)| (*s, *p)).collect()
    }
}

/// Writes the overlay and the counters of `st` to sled in one consistent snapshot (quarantine
/// entries first, see [`apply_quarantine`]). No sled flush. The caller holds the state lock.
pub(super) fn drain(db: &sled::Db, st: &mut State) -> sled::Result<()> {
    if !st.overlay.dirty {
        return Ok(());
    }
    let ov = std::mem::take(&mut st.overlay);
    let (quarantine, rest): (Vec<wal::Op>, Vec<wal::Op>) = ov.ops.into_iter().partition(|(k, _)| k.first() == Some(&b'q'));
    apply_quarantine(db, &quarantine.iter().collect::<Vec<_>>())?;
    let mut batch = sled::Batch::default();
    for k in &ov.removed {
        batch.remove(&k[..]);
    }
    for (seq, p) in &ov.pointers {
        batch.insert(&key(b'e', *seq)[..], &p[..]);
    }
    for (k, v) in rest {
        match v {
            Some(v) => batch.insert(k, v),
            None => batch.remove(k),
        }
    }
    let c = st.counts;
    for (name, v) in [
        ("next_seq", st.next_seq),
        ("q_next", st.q_next),
        ("d_next", st.d_next),
        ("acked", st.acked),
        ("pending_events", c.pending_events),
        ("pending_bytes", c.pending_bytes),
        ("dl_count", c.dead_letter),
        ("q_count", c.quarantine),
        ("q_evicted", c.quarantine_evicted),
        ("dl_bytes", c.dead_letter_bytes),
        ("q_bytes", c.quarantine_bytes),
    ] {
        batch.insert(meta_key(name), &v.to_be_bytes());
    }
    if let Some((commit, pos)) = ov.last {
        batch.insert(meta_key("wal_pos"), &pos.to_bytes());
        batch.insert(meta_key("wal_commit"), &commit.to_be_bytes());
    }
    db.apply_batch(batch)
}

/// Applies quarantine writes in small batches of their own, in order: sled's memory grows
/// steeply with the keys in one batch (a flood of tiny bad lines took it to ~1 GiB), and they
/// need no atomicity with the events (a replay rewrites them under the same ids).
pub(super) fn apply_quarantine(db: &sled::Db, ops: &[&wal::Op]) -> sled::Result<()> {
    for chunk in ops.chunks(QUARANTINE_KEYS_PER_BATCH) {
        let mut qb = sled::Batch::default();
        for (k, v) in chunk {
            match v {
                Some(v) => qb.insert(k.as_slice(), v.as_slice()),
                None => qb.remove(k.as_slice()),
            }
        }
        db.apply_batch(qb)?;
    }
    Ok(())
}
