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

/// Listings, replays and purges go through the entries this many at a time (or this many
/// bytes): memory stays constant however large the dead letter or the quarantine is.
pub(super) const ENTRY_PAGE: usize = 512;
pub(super) const ENTRY_PAGE_BYTES: usize = 8 << 20;

impl Queue {
    pub fn list_quarantine(&self, limit: usize) -> Result<Vec<Entry<QuarantineMeta>>, QueueError> {
        self.collect_entries(b'q', limit)
    }

    pub fn list_dead_letter(&self, limit: usize) -> Result<Vec<Entry<DeadLetterMeta>>, QueueError> {
        self.collect_entries(b'd', limit)
    }

    fn collect_entries<M: for<'de> Deserialize<'de>>(&self, prefix: u8, limit: usize) -> Result<Vec<Entry<M>>, QueueError> {
        let mut out = Vec::new();
        self.for_each_entry(prefix, limit, |e| {
            out.push(e);
            true
        })?;
        Ok(out)
    }

    /// Calls `f` with up to `limit` entries (`b'd'`: dead letter, `b'q'`: quarantine), oldest
    /// first, a page at a time (constant memory); stops early when `f` returns false. Returns
    /// how many were passed to `f`.
    pub(crate) fn for_each_entry<M: for<'de> Deserialize<'de>>(
        &self,
        prefix: u8,
        limit: usize,
        mut f: impl FnMut(Entry<M>) -> bool,
    ) -> Result<usize, QueueError> {
        let mut after = 0u64;
        let mut n = 0usize;
        while n < limit {
            let page = self.entries_page::<M>(prefix, after, (limit - n).min(ENTRY_PAGE))?;
            let Some(last) = page.last() else { break };
            after = last.0.id;
            for (e, _) in page {
                n += 1;
                if !f(e) {
                    return Ok(n);
                }
            }
        }
        Ok(n)
    }

    /// Up to `max` quarantine entries with ids above `after`, oldest first (a page of a replay).
    pub(crate) fn quarantine_page(&self, after: u64, max: usize) -> Result<Vec<Entry<QuarantineMeta>>, QueueError> {
        Ok(self
            .entries_page::<QuarantineMeta>(b'q', after, max)?
            .into_iter()
            .map(|(e, _)| e)
            .collect())
    }

    /// The id the next quarantine entry will get: every entry there is has a smaller one.
    pub(crate) fn quarantine_next_id(&self) -> u64 {
        self.inner.state.lock().unwrap().q_next
    }

    /// Up to `max` entries with ids above `after` (and [`ENTRY_PAGE_BYTES`]), each with the size
    /// it is stored with.
    pub(super) fn entries_page<M: for<'de> Deserialize<'de>>(
        &self,
        prefix: u8,
        after: u64,
        max: usize,
    ) -> Result<Vec<(Entry<M>, u64)>, QueueError> {
        let store = self.inner.store.read().unwrap();
        {
            // Listings read sled: give it what the overlay holds first.
            let mut st = self.inner.state.lock().unwrap();
            drain(&store.db, &mut st).map_err(|e| self.sled_failed(e))?;
        }
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for item in store.db.range(key(prefix, after.saturating_add(1))..=key(prefix, u64::MAX)) {
            if out.len() >= max || (bytes >= ENTRY_PAGE_BYTES && !out.is_empty()) {
                break;
            }
            let (k, v) = item.map_err(|e| storage_err(&store.dir, e))?;
            let id = u64::from_be_bytes(k[1..9].try_into().unwrap_or([0; 8]));
            bytes += v.len();
            match decode_entry::<M>(&v) {
                Some((meta, data)) => out.push((Entry { id, meta, data }, v.len() as u64)),
                None => {
                    tracing::warn!(target: "queue", id, "an entry of the {} cannot be read and was skipped", if prefix == b'd' { "dead letter" } else { "quarantine" })
                }
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

    /// Replays or purges a page at a time: each page is one atomic transition (one frame with
    /// the re-queued events and the removals, then a sled flush), so a crash leaves every entry
    /// either still in the dead letter or re-queued/purged, never both or neither.
    pub(super) fn take_dead_letter(&self, ids: Option<&[u64]>, requeue: bool) -> Result<u64, QueueError> {
        check_failed(&self.inner)?;
        let mut done = 0u64;
        match ids {
            Some(ids) => {
                let mut ids = ids.to_vec();
                ids.sort_unstable();
                ids.dedup();
                // Named ids must all exist: a typo must not look like success, and a partial
                // replay would leave the operator guessing which ones moved.
                let mut chosen = Vec::with_capacity(ids.len());
                let mut missing = Vec::new();
                for id in ids {
                    let found = match id.checked_sub(1) {
                        Some(after) => self.entries_page::<DeadLetterMeta>(b'd', after, 1)?.pop(),
                        None => None,
                    };
                    match found {
                        Some(e) if e.0.id == id => chosen.push(e),
                        _ => missing.push(id),
                    }
                }
                if !missing.is_empty() {
                    return Err(QueueError::NoSuchDeadLetter(missing));
                }
                for page in chosen.chunks(ENTRY_PAGE) {
                    done += self.take_page(b'd', page, requeue)?;
                }
            }
            None => loop {
                // Always from the start: the page just taken is gone.
                let page = self.entries_page::<DeadLetterMeta>(b'd', 0, ENTRY_PAGE)?;
                if page.is_empty() {
                    break;
                }
                done += self.take_page(b'd', &page, requeue)?;
            },
        }
        Ok(done)
    }

    /// Deletes quarantine entries, oldest first: all of them, or those with ids up to and
    /// including `through`. Only a prefix can go: the quarantine's live ids stay consecutive,
    /// which its eviction relies on (see `commit`). A page at a time, each one atomic like a
    /// dead-letter purge. Returns how many were deleted.
    pub fn purge_quarantine(&self, through: Option<u64>) -> Result<u64, QueueError> {
        check_failed(&self.inner)?;
        let through = through.unwrap_or(u64::MAX);
        let mut done = 0u64;
        loop {
            let mut page = self.entries_page::<QuarantineMeta>(b'q', 0, ENTRY_PAGE)?;
            page.retain(|(e, _)| e.id <= through);
            if page.is_empty() {
                break;
            }
            done += self.take_page(b'q', &page, false)?;
        }
        Ok(done)
    }

    /// Takes one page of dead-letter (`b'd'`) or quarantine (`b'q'`) entries out, re-queueing
    /// their data when `requeue` (dead letters only).
    fn take_page<M>(&self, prefix: u8, chosen: &[(Entry<M>, u64)], requeue: bool) -> Result<u64, QueueError> {
        debug_assert!(prefix == b'd' || !requeue);
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
                chosen.iter().map(|(e, _)| Bytes::from(e.data.clone())).collect()
            } else {
                Vec::new()
            };
            let bytes: u64 = events.iter().map(|e| e.len() as u64).sum();
            // Re-queued events need room like any append (a write through sled on a full disk
            // would stop the agent); a purge frees space and may use the reserve.
            let min_free = self.inner.min_free.load(Ordering::Relaxed);
            if requeue && min_free > 0 {
                if let Some(free) = free_bytes(&store.dir) {
                    if free < min_free.saturating_add(bytes.saturating_mul(2)) {
                        return Err(QueueError::Storage {
                            path: store.dir.clone(),
                            message: format!(
                                "no room to re-queue {n} dead-lettered event(s) ({} KiB): {} MiB free, and queue.min_free_bytes keeps {} MiB in reserve; free some space, then replay again (entries not yet replayed stay in the dead letter)",
                                bytes / 1024,
                                free / (1024 * 1024),
                                min_free / (1024 * 1024)
                            ),
                        });
                    }
                }
            }
            let next_seq = first_seq + events.len() as u64;
            let taken_bytes = chosen.iter().map(|(_, len)| *len as i64).sum::<i64>();
            let deltas = if prefix == b'q' {
                wal::Deltas {
                    quarantine: -(n as i64),
                    quarantine_bytes: -taken_bytes,
                    ..Default::default()
                }
            } else {
                wal::Deltas {
                    pending_events: events.len() as i64,
                    pending_bytes: bytes as i64,
                    dead_letter: -(n as i64),
                    dead_letter_bytes: -taken_bytes,
                    ..Default::default()
                }
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
                ops: chosen.iter().map(|(e, _)| (key(prefix, e.id).to_vec(), None)).collect(),
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
