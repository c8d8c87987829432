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

    pub(super) fn ack_inner(&self, upto: u64, dead: Vec<(DeadLetterMeta, Bytes)>) -> Result<(), QueueError> {
        {
            let store = self.inner.store.read().unwrap();
            let mut st = self.inner.state.lock().unwrap();
            if upto <= st.acked {
                return Ok(());
            }
            let upto = upto.min(st.next_seq.saturating_sub(1));
            let mut batch = sled::Batch::default();
            let mut freed_events = 0u64;
            let mut freed_bytes = 0u64;
            let first = store
                .db
                .range(key(b'e', 0)..=key(b'e', st.acked + 1))
                .next_back()
                .transpose()
                .map_err(|e| storage_err(&store.dir, e))?;
            let from = first.map(|(k, _)| k.to_vec()).unwrap_or_else(|| key(b'e', st.acked + 1).to_vec());
            for item in store.db.range(from..=key(b'e', upto).to_vec()) {
                let (k, v) = item.map_err(|e| storage_err(&store.dir, e))?;
                let first_seq = u64::from_be_bytes(k[1..9].try_into().unwrap_or([0; 8]));
                let last_seq = match record_summary(&v) {
                    // A whole record acknowledged: its pointer has the sums, no read needed.
                    Some((count, payload)) if first_seq > st.acked && first_seq + count.max(1) - 1 <= upto => {
                        freed_events += count;
                        freed_bytes += payload;
                        first_seq + count.max(1) - 1
                    }
                    _ => {
                        let rec = self.inner.readers.load(first_seq, &v).map_err(|e| storage_err(&store.dir, e))?;
                        let sizes = record_event_sizes(first_seq, &rec);
                        for (seq, len) in &sizes {
                            if *seq > st.acked && *seq <= upto {
                                freed_events += 1;
                                freed_bytes += *len as u64;
                            }
                        }
                        sizes.last().map(|(s, _)| *s).unwrap_or(first_seq)
                    }
                };
                if last_seq <= upto {
                    batch.remove(k.to_vec());
                }
            }
            let mut counts = st.counts;
            counts.pending_events = counts.pending_events.saturating_sub(freed_events);
            counts.pending_bytes = counts.pending_bytes.saturating_sub(freed_bytes);
            let mut d_next = st.d_next;
            for (meta, data) in &dead {
                batch.insert(key(b'd', d_next).to_vec(), encode_entry(meta, data));
                d_next += 1;
                counts.dead_letter += 1;
            }
            batch.insert(meta_key("acked"), &upto.to_be_bytes());
            batch.insert(meta_key("pending_events"), &counts.pending_events.to_be_bytes());
            batch.insert(meta_key("pending_bytes"), &counts.pending_bytes.to_be_bytes());
            batch.insert(meta_key("dl_count"), &counts.dead_letter.to_be_bytes());
            batch.insert(meta_key("d_next"), &d_next.to_be_bytes());
            store.db.apply_batch(batch).map_err(|e| self.sled_failed(e))?;
            // Before the next request goes out, `acked` must survive a process crash: it is
            // written to the OS (one pwrite of 16 bytes, no sync) and re-applied at open if
            // sled's copy is older. The batch itself reaches sled's log with the next commit,
            // sled's 200 ms flusher, or `close`. (A sled `flush` here was a disk wait and a
            // wake-up of sled's 7 IO threads per request.)
            st.acked = upto;
            st.counts = counts;
            st.d_next = d_next;
            // Under the state lock, so ack files are written in the order of the acks.
            let written = store.ack_file.write(upto).map_err(|e| storage_err(&store.dir, e));
            drop(st);
            written?;
            if !dead.is_empty() {
                // Dead letters are the only copy of a rejected event: durable now.
                flush_sled(&self.inner, &store)?;
                if dead.iter().any(|(_, d)| d.len() + 4096 > INLINE_LIMIT) {
                    // A value over sled's inline limit lives in a blob file, which sled does
                    // not fsync: sync the filesystem holding the queue.
                    syncfs(&store)?;
                }
            } else if !self.inner.sled_dirty.swap(true, Ordering::AcqRel) {
                // Durable with the next commit's frame (it carries `acked`) or, if none comes,
                // when the committer settles.
                if let Some(tx) = &*self.inner.committer.lock().unwrap() {
                    let _ = tx.send(Work::Dirty);
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

    /// Age of the oldest pending event, from its record's accept time.
    pub fn oldest_pending_age(&self) -> Option<Duration> {
        let acked = self.acked();
        let store = self.inner.store.read().unwrap();
        let (_, v) = store
            .db
            .range(key(b'e', 0)..=key(b'e', acked + 1))
            .next_back()
            .or_else(|| store.db.range(key(b'e', acked + 1)..key(b'e', u64::MAX)).next())?
            .ok()?;
        if self.counts().pending_events == 0 {
            return None;
        }
        let at = u64::from_be_bytes(v.get(1..9)?.try_into().ok()?);
        Some(Duration::from_millis(now_ms().saturating_sub(at)))
    }
}
