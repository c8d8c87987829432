//! Acknowledgements: events leave the queue (delivered, or into the dead letter).

use super::*;

impl Queue {
    /// Removes every event up to and including `upto` from the queue (the SIEM accepted them,
    /// or they move to the dead letter, given in `dead`), atomically. Before it returns, the
    /// new `acked` is in the OS page cache (the ack file), so a process crash after it does not
    /// resend these events; dead letters are `fdatasync`ed.
    pub fn ack(&self, upto: u64, dead: Vec<(DeadLetterMeta, Bytes)>) -> Result<(), QueueError> {
        check_failed(&self.inner)?;
        self.ack_inner(upto, dead)?;
        self.maybe_reclaim();
        Ok(())
    }

    /// A write through sled failed: fatal for this process (see the module docs).
    pub(super) fn sled_failed(&self, e: impl std::fmt::Display) -> QueueError {
        sled_err(&self.inner, &self.inner.root.join("store"), e)
    }

    /// The records from the one holding `seq` up to those starting at or before `upto`: sled's,
    /// then the overlay's (all newer). Records acknowledged since the last drain may be among
    /// sled's; callers skip events at or below `acked`.
    fn records_between(&self, store: &Store, st: &State, seq: u64, upto: u64) -> Result<Vec<(u64, Vec<u8>)>, QueueError> {
        let mut out = Vec::new();
        if st.overlay.record_at_or_before(seq).is_none() {
            let first = store
                .db
                .range(key(b'e', 0)..=key(b'e', seq))
                .next_back()
                .transpose()
                .map_err(|e| storage_err(&store.dir, e))?;
            let from = first.map(|(k, _)| k.to_vec()).unwrap_or_else(|| key(b'e', seq).to_vec());
            for item in store.db.range(from..=key(b'e', upto).to_vec()) {
                let (k, v) = item.map_err(|e| storage_err(&store.dir, e))?;
                out.push((u64::from_be_bytes(k[1..9].try_into().unwrap_or([0; 8])), v.to_vec()));
            }
        }
        let from = st.overlay.record_at_or_before(seq).map_or(seq, |(s, _)| s);
        out.extend(
            st.overlay
                .records(from, upto.saturating_add(1))
                .into_iter()
                .map(|(s, p)| (s, p.to_vec())),
        );
        Ok(out)
    }

    pub(super) fn ack_inner(&self, upto: u64, dead: Vec<(DeadLetterMeta, Bytes)>) -> Result<(), QueueError> {
        {
            let store = self.inner.store.read().unwrap();
            let mut st = self.inner.state.lock().unwrap();
            if upto <= st.acked {
                return Ok(());
            }
            let upto = upto.min(st.next_seq.saturating_sub(1));
            let entries: Vec<Vec<u8>> = dead.iter().map(|(meta, data)| encode_entry(meta, data)).collect();
            let entry_bytes: u64 = entries.iter().map(|e| e.len() as u64).sum();
            if let Some((meta, _)) = dead.first() {
                // Checked before anything changes: a refused dead letter leaves the queue as it was.
                self.dead_letter_room(&store, &st, entries.len() as u64, entry_bytes)
                    .map_err(|why| QueueError::DeadLetterFull {
                        why,
                        seq: meta.original_seq,
                    })?;
            }
            let (freed_events, freed_bytes, gone) = self.freed_through(&store, &st, upto)?;
            // Memory only (see `overlay`): records leave the overlay, or are removed from sled
            // at the next drain.
            for first_seq in gone {
                if st.overlay.pointers.remove(&first_seq).is_none() {
                    st.overlay.removed.push(key(b'e', first_seq));
                }
            }
            st.counts.pending_events = st.counts.pending_events.saturating_sub(freed_events);
            st.counts.pending_bytes = st.counts.pending_bytes.saturating_sub(freed_bytes);
            for entry in entries {
                let id = st.d_next;
                st.overlay.add_op((key(b'd', id).to_vec(), Some(entry)));
                st.d_next += 1;
                st.counts.dead_letter += 1;
            }
            st.counts.dead_letter_bytes += entry_bytes;
            st.acked = upto;
            st.overlay.dirty = true;
            if !dead.is_empty() {
                // Dead letters are the only copy of a rejected event: durable, in the same sled
                // batch as the `acked` that removes them from the queue, *before* anything else
                // can record that `acked` (the ack file below; a commit frame, which reads it
                // under the state lock held here): a crash in between must not replay the ack
                // without the dead letters.
                flush_sled_locked(&self.inner, &store, &mut st)?;
                if dead.iter().any(|(_, d)| d.len() + 4096 > INLINE_LIMIT) {
                    // A value over sled's inline limit lives in a blob file, which sled does
                    // not fsync: sync the filesystem holding the queue.
                    syncfs(&store)?;
                }
                let written = store.ack_file.write(upto).map_err(|e| storage_err(&store.dir, e));
                drop(st);
                written?;
            } else {
                // Before the next request goes out, `acked` must survive a process crash: it is
                // written to the OS (one pwrite of 16 bytes, no sync) and re-applied at open if
                // sled's copy is older; the next commit's frame carries it too. Under the state
                // lock, so ack files are written in the order of the acks.
                let written = store.ack_file.write(upto).map_err(|e| storage_err(&store.dir, e));
                drop(st);
                written?;
                if !self.inner.sled_dirty.swap(true, Ordering::AcqRel) {
                    // Durable with the next commit's frame (it carries `acked`) or, if none
                    // comes, when the committer settles.
                    if let Some(tx) = &*self.inner.committer.lock().unwrap() {
                        let _ = tx.send(Work::Dirty);
                    }
                }
            }
            // Segments whose events are all acknowledged go, once that is durable. If the
            // committer holds the lock, it deletes them after its own commit instead.
            if let Ok(mut seg) = self.inner.segments.try_lock() {
                if seg.has_acked(upto) {
                    flush_sled(&self.inner, &store)?;
                    seg.delete_acked(upto, Some(&self.inner.readers));
                }
            }
        }
        Ok(())
    }

    /// What acknowledging `st.acked + 1 ..= upto` frees: events and bytes leaving the pending
    /// counters, and the records wholly acknowledged (by first sequence number). A whole record's
    /// pointer carries its sums; a record cut by `acked` or `upto` is read to count its events.
    fn freed_through(&self, store: &Store, st: &State, upto: u64) -> Result<(u64, u64, Vec<u64>), QueueError> {
        let acked = st.acked;
        let mut freed_events = 0u64;
        let mut freed_bytes = 0u64;
        let mut gone = Vec::new();
        for (first_seq, v) in self.records_between(store, st, acked + 1, upto)? {
            let last_seq = match record_summary(&v) {
                // A whole record acknowledged: its pointer has the sums, no read needed.
                Some((count, payload)) if first_seq > acked && first_seq + count.max(1) - 1 <= upto => {
                    freed_events += count;
                    freed_bytes += payload;
                    first_seq + count.max(1) - 1
                }
                _ => {
                    let rec = self.inner.readers.load(first_seq, &v).map_err(|e| storage_err(&store.dir, e))?;
                    let sizes = record_event_sizes(first_seq, &rec);
                    for (seq, len) in &sizes {
                        if *seq > acked && *seq <= upto {
                            freed_events += 1;
                            freed_bytes += *len as u64;
                        }
                    }
                    sizes.last().map(|(s, _)| *s).unwrap_or(first_seq)
                }
            };
            if last_seq <= upto {
                gone.push(first_seq);
            }
        }
        Ok((freed_events, freed_bytes, gone))
    }

    /// Whether `n` more dead letters of `bytes` fit: under `queue.max_dead_letter_entries` and
    /// `queue.max_dead_letter_bytes`, and without using the disk reserve (`queue.min_free_bytes`:
    /// a rejected event left in the queue costs no new space, a dead letter does). `Err` says
    /// which bound was hit, for the operator.
    fn dead_letter_room(&self, store: &Store, st: &State, n: u64, bytes: u64) -> Result<(), String> {
        let limits = *self.inner.limits.lock().unwrap();
        let c = st.counts;
        if c.dead_letter + n > limits.max_dead_letter_entries {
            return Err(format!(
                "{} entries; queue.max_dead_letter_entries is {}",
                c.dead_letter, limits.max_dead_letter_entries
            ));
        }
        if c.dead_letter_bytes + bytes > limits.max_dead_letter_bytes {
            return Err(format!(
                "{} bytes kept; queue.max_dead_letter_bytes is {}",
                c.dead_letter_bytes, limits.max_dead_letter_bytes
            ));
        }
        let min_free = self.inner.min_free.load(Ordering::Relaxed);
        if min_free > 0 {
            if let Some(free) = free_bytes(&store.dir) {
                if free < min_free.saturating_add(bytes.saturating_mul(2)) {
                    return Err(format!(
                        "the disk is full: {} MiB free, and queue.min_free_bytes keeps {} MiB in reserve",
                        free / (1024 * 1024),
                        min_free / (1024 * 1024)
                    ));
                }
            }
        }
        Ok(())
    }

    /// Age of the oldest pending event, from its record's accept time.
    pub(crate) fn oldest_pending_age(&self) -> Option<Duration> {
        let store = self.inner.store.read().unwrap();
        let st = self.inner.state.lock().unwrap();
        if st.counts.pending_events == 0 {
            return None;
        }
        let records = self.records_between(&store, &st, st.acked + 1, st.acked + 1).ok()?;
        let v = match records.last() {
            Some((_, v)) => v.clone(),
            None => {
                // The next record after `acked`, in sled or the overlay.
                let after = store
                    .db
                    .range(key(b'e', st.acked + 1)..key(b'e', u64::MAX))
                    .next()
                    .and_then(|r| r.ok());
                match after {
                    Some((_, v)) => v.to_vec(),
                    None => st.overlay.pointers.range(st.acked + 1..).next()?.1.to_vec(),
                }
            }
        };
        let at = u64::from_be_bytes(v.get(1..9)?.try_into().ok()?);
        Some(Duration::from_millis(now_ms().saturating_sub(at)))
    }
}
