//! The read path: durable events after a sequence number, from sled's record pointers and the
//! overlay's newer ones, each record read back from its segment file and checked; a record that
//! cannot be read is skipped and reported, never a stuck queue (ARCHITECTURE.md invariant 12).

use super::*;

/// A record's first sequence number and pointer (or v1 record) bytes, as reads go through them.
type RecordItem = Result<(u64, Vec<u8>), QueueError>;

impl Queue {
    /// Reads up to `max_events` / about `max_bytes` of durable events after `after`, in order.
    /// Always returns at least one event if one is available, even if it is larger than
    /// `max_bytes`.
    pub fn read(&self, after: u64, max_events: usize, max_bytes: usize) -> Result<Vec<QueuedEvent>, QueueError> {
        let before = self.inner.durable_next.load(Ordering::Acquire);
        let mut out = Vec::new();
        if after + 1 >= before || max_events == 0 {
            return Ok(out);
        }
        let store = self.inner.store.read().unwrap();
        // The overlay's records in range (all newer than sled's), taken under the state lock;
        // segment reads happen without it.
        let (in_overlay, overlay_records) = {
            let st = self.inner.state.lock().unwrap();
            let holder = st.overlay.record_at_or_before(after + 1);
            let from = holder.map_or(after + 1, |(s, _)| s);
            (holder.is_some(), st.overlay.records(from, before))
        };
        let mut w = ReadWindow {
            after,
            before,
            max_events,
            max_bytes,
            bytes: 0,
        };
        let mut records: Box<dyn Iterator<Item = RecordItem>> = Box::new(std::iter::empty());
        if !in_overlay {
            let start_key = key(b'e', after + 1);
            // The record containing `after + 1` starts at or before it.
            let first = store
                .db
                .range(key(b'e', 0)..=start_key)
                .next_back()
                .transpose()
                .map_err(|e| storage_err(&store.dir, e))?;
            let from = match first {
                Some((k, _)) => k.to_vec(),
                None => start_key.to_vec(),
            };
            let dir = store.dir.clone();
            records = Box::new(store.db.range(from..key(b'e', u64::MAX).to_vec()).map(move |item| {
                let (k, v) = item.map_err(|e| storage_err(&dir, e))?;
                Ok((u64::from_be_bytes(k[1..9].try_into().unwrap_or([0; 8])), v.to_vec()))
            }));
        }
        let records = records.chain(overlay_records.into_iter().map(|(s, p)| Ok((s, p.to_vec()))));
        let mut last = None;
        for item in records {
            let (first_seq, v) = item?;
            if first_seq >= before {
                break;
            }
            // A drain may have moved the overlay's records into sled since they were taken:
            // each record once.
            if last.is_some_and(|l| first_seq <= l) {
                continue;
            }
            last = Some(first_seq);
            // A record that cannot be read back (segment file truncated or overwritten) would
            // block delivery forever: skip it, say so in the log and `queue.incident`.
            let rec = match self.inner.readers.load(first_seq, &v) {
                Ok(rec) => rec,
                Err(e) => {
                    self.skip_damaged(first_seq, &e);
                    continue;
                }
            };
            let mark = out.len();
            if !decode_record(first_seq, &rec, &mut w, &mut out) {
                out.truncate(mark);
                self.skip_damaged(first_seq, &format!("record {first_seq} is damaged"));
                continue;
            }
            if out.len() >= max_events || w.bytes >= max_bytes {
                break;
            }
        }
        Ok(out)
    }
}
