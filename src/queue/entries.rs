//! The dead letter and the quarantine: entries kept for an operator to see, replay or purge.

use super::*;

/// Per quarantine entry, at most this much of the line is kept (the rest is counted).
pub const QUARANTINE_KEEP_BYTES: usize = 64 * 1024;

/// Quarantine entries are written at most this many to a sled batch (see `commit_group`).
pub(super) const QUARANTINE_KEYS_PER_BATCH: usize = 128;

/// Metadata of a quarantined line.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct QuarantineMeta {
    pub at: String,
    /// "events.jsonl:12 (byte 402113)" or "socket /run/x.sock (pid 12, uid 1000)".
    pub origin: String,
    pub reason: String,
    /// Full length of the line; only the first [`QUARANTINE_KEEP_BYTES`] are kept.
    pub len: usize,
}

/// Metadata of a dead-lettered event.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeadLetterMeta {
    pub at: String,
    pub reason: String,
    pub http_status: Option<u16>,
    pub original_seq: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Entry<M> {
    pub id: u64,
    #[serde(flatten)]
    pub meta: M,
    /// The line or event as bytes (shown as text by the CLI).
    #[serde(skip)]
    pub data: Vec<u8>,
}

pub(super) fn encode_entry<M: Serialize>(meta: &M, data: &[u8]) -> Vec<u8> {
    let header = serde_json::to_vec(meta).unwrap_or_default();
    let mut v = Vec::with_capacity(4 + header.len() + data.len());
    v.extend_from_slice(&(header.len() as u32).to_be_bytes());
    v.extend_from_slice(&header);
    v.extend_from_slice(data);
    v
}

pub(super) fn decode_entry<M: for<'de> Deserialize<'de>>(raw: &[u8]) -> Option<(M, Vec<u8>)> {
    let hl = u32::from_be_bytes(raw.get(0..4)?.try_into().ok()?) as usize;
    let header = raw.get(4..4 + hl)?;
    let meta = serde_json::from_slice(header).ok()?;
    Some((meta, raw[4 + hl..].to_vec()))
}

impl Queue {
    pub fn list_quarantine(&self, limit: usize) -> Result<Vec<Entry<QuarantineMeta>>, QueueError> {
        self.list_entries(b'q', limit)
    }

    pub fn list_dead_letter(&self, limit: usize) -> Result<Vec<Entry<DeadLetterMeta>>, QueueError> {
        self.list_entries(b'd', limit)
    }

    pub(super) fn list_entries<M: for<'de> Deserialize<'de>>(&self, prefix: u8, limit: usize) -> Result<Vec<Entry<M>>, QueueError> {
        let store = self.inner.store.read().unwrap();
        {
            // Listings read sled: give it what the overlay holds first.
            let mut st = self.inner.state.lock().unwrap();
            drain(&store.db, &mut st).map_err(|e| self.sled_failed(e))?;
        }
        let mut out = Vec::new();
        for item in store.db.range(key(prefix, 0)..=key(prefix, u64::MAX)).take(limit) {
            let (k, v) = item.map_err(|e| storage_err(&store.dir, e))?;
            let id = u64::from_be_bytes(k[1..9].try_into().unwrap_or([0; 8]));
            if let Some((meta, data)) = decode_entry::<M>(&v) {
                out.push(Entry { id, meta, data });
            }
        }
        Ok(out)
    }

    /// Moves dead-lettered events (all, or the given ids) back to the tail of the queue.
    /// Returns how many were re-queued.
    pub fn replay_dead_letter(&self, ids: Option<&[u64]>) -> Result<u64, QueueError> {
        self.take_dead_letter(ids, true)
    }

    /// Deletes dead-lettered events (all, or the given ids). Returns how many were deleted.
    pub fn purge_dead_letter(&self, ids: Option<&[u64]>) -> Result<u64, QueueError> {
        self.take_dead_letter(ids, false)
    }

    pub(super) fn take_dead_letter(&self, ids: Option<&[u64]>, requeue: bool) -> Result<u64, QueueError> {
        check_failed(&self.inner)?;
        let entries = self.list_dead_letter(usize::MAX)?;
        let chosen: Vec<_> = entries.into_iter().filter(|e| ids.is_none_or(|ids| ids.contains(&e.id))).collect();
        // Named ids must all exist: a typo must not look like success, and a partial replay
        // would leave the operator guessing which ones moved.
        if let Some(ids) = ids {
            let mut missing: Vec<u64> = ids.iter().copied().filter(|id| !chosen.iter().any(|e| e.id == *id)).collect();
            missing.sort_unstable();
            missing.dedup();
            if !missing.is_empty() {
                return Err(QueueError::NoSuchDeadLetter(missing));
            }
        }
        if chosen.is_empty() {
            return Ok(0);
        }
        let n = chosen.len() as u64;
        {
            // One frame like a commit (the re-queued events and the removals), then sled is
            // flushed: rare, operator-driven, and the operator is told it is done.
            let store = self.inner.store.read().unwrap();
            let mut seg = self.inner.segments.lock().unwrap();
            let (first_seq, q_next, acked, number) = {
                let st = self.inner.state.lock().unwrap();
                (st.next_seq, st.q_next, st.acked, st.commits + 1)
            };
            let events: Vec<Bytes> = if requeue {
                chosen.iter().map(|e| Bytes::from(e.data.clone())).collect()
            } else {
                Vec::new()
            };
            let bytes: u64 = events.iter().map(|e| e.len() as u64).sum();
            let next_seq = first_seq + events.len() as u64;
            let deltas = wal::Deltas {
                pending_events: events.len() as i64,
                pending_bytes: bytes as i64,
                dead_letter: -(n as i64),
                ..Default::default()
            };
            let mut commit = wal::CommitOut {
                h: wal::Header {
                    commit: number,
                    first_seq,
                    next_seq,
                    q_next,
                    acked,
                    accepted_at_ms: now_ms(),
                    deltas,
                },
                records: chunk_events(&events),
                ops: chosen.iter().map(|e| (key(b'd', e.id).to_vec(), None)).collect(),
            };
            let (pointers, pos) = write_durably(&mut seg, &commit)?;
            let mut st = self.inner.state.lock().unwrap();
            apply_to_state(&mut st, &commit.h, std::mem::take(&mut commit.ops), pointers, pos);
            flush_sled_locked(&self.inner, &store, &mut st)?;
            drop(st);
            self.inner.durable_next.store(next_seq, Ordering::Release);
            let _ = self.inner.witness.write(next_seq);
        }
        self.inner.appended.notify_waiters();
        Ok(n)
    }
}
