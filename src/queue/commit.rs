//! The group committer: appends from every source go through one thread, which writes one
//! frame per group and waits for one `fdatasync` (see the module docs of `queue`).

use super::*;

pub(super) type Reply = tokio::sync::oneshot::Sender<Result<Appended, QueueError>>;

pub(super) struct Job {
    pub(super) req: AppendRequest,
    pub(super) reply: Reply,
}

/// What the committer thread is asked to do.
pub(super) enum Work {
    Append(Job),
    /// sled has changes that are not durable (an ack): flush once things settle.
    Dirty,
}

/// At a trickle, commits are at least this far apart: a request arriving sooner waits, and
/// those arriving meanwhile share its `fdatasync`. (At most 1/GAP fdatasyncs per second.)
pub(super) const COMMIT_GAP: Duration = Duration::from_millis(50);

/// A group that has this many bytes is committed at once (bulk: no waiting).
pub(super) const COMMIT_EAGER_BYTES: usize = 64 * 1024;

/// A group is cut at this many bytes.
pub(super) const COMMIT_MAX_BYTES: usize = 8 * 1024 * 1024;

/// sled changes are flushed after this long without a commit or ack (bounds the replay at
/// open and makes acks durable when no commit follows them).
pub(super) const SETTLE: Duration = Duration::from_secs(2);

/// While commits keep coming, sled is still flushed this often...
pub(super) const FLUSH_EVERY: Duration = Duration::from_secs(30);
/// ...and after this many bytes of commits, so the replay after a crash in bulk stays short.
const FLUSH_EVERY_BYTES: usize = 256 * 1024 * 1024;

pub(super) fn job_bytes(j: &Job) -> usize {
    j.req.events.iter().map(|e| e.len()).sum::<usize>() + j.req.quarantine.iter().map(|(_, l)| l.len()).sum::<usize>()
}

/// The group committer. Blocks in `recv` while there is nothing to do (no timer at idle).
/// A request after a quiet spell is committed at once; one that follows the last commit by less
/// than [`COMMIT_GAP`] waits out the gap while more requests join it, unless the group is
/// already large (bulk), so `fdatasync`s per second stay far below events per second at steady
/// rates while bulk commits stay large.
pub(super) fn committer_loop(inner: std::sync::Weak<Inner>, rx: mpsc::Receiver<Work>) {
    let mut last_commit = Instant::now() - COMMIT_GAP;
    let gap = |inner: &std::sync::Weak<Inner>| {
        inner
            .upgrade()
            .map(|i| Duration::from_micros(i.commit_gap_us.load(Ordering::Relaxed)))
            .unwrap_or(COMMIT_GAP)
    };
    let mut last_flush = Instant::now();
    let mut bytes_since_flush = 0usize;
    let mut dirty = false;
    loop {
        let first = if dirty {
            match rx.recv_timeout(SETTLE) {
                Ok(w) => w,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let Some(inner) = inner.upgrade() else { break };
                    settle(&inner);
                    dirty = false;
                    last_flush = Instant::now();
                    bytes_since_flush = 0;
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        } else {
            match rx.recv() {
                Ok(w) => w,
                Err(_) => break,
            }
        };
        dirty = true;
        let Work::Append(first) = first else { continue };
        let mut bytes = job_bytes(&first);
        let mut jobs = vec![first];
        let wait_until = last_commit + gap(&inner);
        while bytes < COMMIT_MAX_BYTES {
            let next = if bytes >= COMMIT_EAGER_BYTES || Instant::now() >= wait_until {
                rx.try_recv().ok()
            } else {
                // A timeout ends the wait: the group is committed below.
                rx.recv_timeout(wait_until.saturating_duration_since(Instant::now())).ok()
            };
            match next {
                Some(Work::Append(j)) => {
                    bytes += job_bytes(&j);
                    jobs.push(j);
                }
                Some(Work::Dirty) => {}
                None => break,
            }
        }
        let Some(inner) = inner.upgrade() else { break };
        let (started, frames_before) = (Instant::now(), inner.state.lock().unwrap().commits);
        let (reqs, replies): (Vec<_>, Vec<_>) = jobs.into_iter().map(|j| (j.req, j.reply)).unzip();
        let results = commit_group(&inner, reqs);
        // The gap is counted from the last commit that wrote a frame: a group that was only
        // refused (queue full) cost no fdatasync, so the next one need not wait.
        if inner.state.lock().unwrap().commits != frames_before {
            last_commit = started;
        }
        for (reply, result) in replies.into_iter().zip(results) {
            let _ = reply.send(result);
        }
        bytes_since_flush += bytes;
        if last_flush.elapsed() >= FLUSH_EVERY || bytes_since_flush >= FLUSH_EVERY_BYTES {
            settle(&inner);
            last_flush = Instant::now();
            bytes_since_flush = 0;
        }
    }
}

/// Flushes sled if anything is not yet durable in it (see [`SETTLE`]).
pub(super) fn settle(inner: &Inner) {
    if !inner.sled_dirty.load(Ordering::Acquire) || check_failed(inner).is_err() {
        return;
    }
    let store = inner.store.read().unwrap();
    if let Err(e) = flush_sled(inner, &store) {
        tracing::error!(target: "queue", "{e}");
    }
}

/// A commit whose frame is durable, applied to memory: the state's counters and numbers, and
/// the overlay (sled gets it at the next drain). Live commits and the replay at open both come
/// through here.
pub(super) fn apply_to_state(st: &mut State, h: &wal::Header, ops: Vec<wal::Op>, pointers: Vec<Pointer>, pos: WalPos) {
    st.counts = add_deltas(st.counts, h.deltas);
    st.next_seq = st.next_seq.max(h.next_seq);
    st.q_next = st.q_next.max(h.q_next);
    st.commits = h.commit;
    st.overlay.add_commit(pointers, ops, h.commit, pos);
}

/// Writes the frame of `c` to the current segment and `fdatasync`s it: the one disk wait of a
/// commit. On failure the segment is abandoned (the next commit starts a new one).
pub(super) fn write_durably(seg: &mut SegmentWriter, c: &wal::CommitOut<'_>) -> Result<(Vec<Pointer>, WalPos), QueueError> {
    let written = seg.append_frame(c).and_then(|r| seg.sync().map(|()| r));
    written.map_err(|e| {
        seg.abandon();
        storage_err(&seg.dir, e)
    })
}

/// Commits a group of requests: one frame with their records, checkpoints, quarantine entries
/// and counter deltas, written to the current segment and `fdatasync`ed (the only disk wait),
/// then applied to sled without a flush (see the module docs). Requests that do not fit under
/// `queue.max_bytes` are refused individually.
pub(super) fn commit_group(inner: &Inner, reqs: Vec<AppendRequest>) -> Vec<Result<Appended, QueueError>> {
    if let Err(e) = check_failed(inner).and_then(|()| check_root(inner)) {
        return reqs.iter().map(|_| Err(e.clone())).collect();
    }
    let store = inner.store.read().unwrap();
    let group_bytes: u64 = reqs.iter().flat_map(|r| r.events.iter()).map(|e| e.len() as u64).sum();
    if let Err(e) = check_disk_room(inner, &store.dir, group_bytes) {
        return reqs.iter().map(|_| Err(e.clone())).collect();
    }
    // The one appender from here on: sequence numbers and quarantine ids are ours to give out.
    let mut seg = inner.segments.lock().unwrap();
    let (start_seq, q_start, before) = {
        let st = inner.state.lock().unwrap();
        (st.next_seq, st.q_next, st.counts)
    };
    let limits = *inner.limits.lock().unwrap();
    let admitted = admit(&reqs, start_seq, before.pending_bytes, limits.max_bytes);
    let mut entries = entry_ops(&reqs, &admitted.results, q_start);
    let (evicted, evicted_bytes) = evict_quarantine(inner, &store, &limits, &before, &mut entries, q_start);
    let (next_seq, q_next) = (admitted.next_seq, entries.q_next);
    let deltas = wal::Deltas {
        pending_events: (next_seq - start_seq) as i64,
        pending_bytes: admitted.bytes as i64,
        dead_letter: 0,
        quarantine: entries.added as i64 - evicted as i64,
        quarantine_evicted: evicted as i64,
        dead_letter_bytes: 0,
        quarantine_bytes: entries.added_bytes as i64 - evicted_bytes as i64,
    };
    let results = admitted.results;
    if next_seq == start_seq && entries.ops.is_empty() && evicted == 0 {
        // Nothing to write (empty requests, or every one refused).
        return results;
    }
    let (acked, number) = {
        let st = inner.state.lock().unwrap();
        (st.acked, st.commits + 1)
    };
    let mut commit = wal::CommitOut {
        h: wal::Header {
            commit: number,
            first_seq: start_seq,
            next_seq,
            q_next,
            acked,
            accepted_at_ms: now_ms(),
            deltas,
        },
        records: chunk_events(&admitted.events),
        ops: entries.ops,
    };
    let durable = write_durably(&mut seg, &commit).and_then(|(pointers, pos)| {
        // Durable: from here on only memory changes; sled gets it at the next drain.
        let mut st = inner.state.lock().unwrap();
        apply_to_state(&mut st, &commit.h, std::mem::take(&mut commit.ops), pointers, pos);
        if st.overlay.is_large() {
            drain(&store.db, &mut st).map_err(|e| sled_err(inner, &store.dir, e))?;
        }
        Ok(st.acked)
    });
    match durable {
        Ok(acked) => {
            if results.iter().any(|r| r.is_ok()) {
                inner.disk_full.lock().unwrap().take();
            }
            inner.sled_dirty.store(true, Ordering::Release);
            inner.durable_next.store(next_seq, Ordering::Release);
            // Best effort: the witness only detects a store that lost its tail.
            let _ = inner.witness.write(next_seq);
            inner.appended.notify_waiters();
            if seg.has_acked(acked) {
                // Deleting a segment needs its frames in sled for good, and `acked` with them.
                match flush_sled(inner, &store) {
                    Ok(()) => seg.delete_acked(acked, Some(&inner.readers)),
                    Err(e) => tracing::error!(target: "queue", "{e}"),
                }
            }
            results
        }
        Err(e) => {
            tracing::error!(target: "queue", "commit failed: {e}");
            // Nothing is acknowledged to the sources; they retry.
            results
                .into_iter()
                .map(|r| match r {
                    Ok(_) => Err(QueueError::Storage {
                        path: store.dir.clone(),
                        message: e.to_string(),
                    }),
                    Err(x) => Err(x),
                })
                .collect()
        }
    }
}

/// The requests of a group that fit under `queue.max_bytes`, with their sequence numbers.
struct Admitted {
    /// One result per request: its sequence numbers, or `Full`.
    results: Vec<Result<Appended, QueueError>>,
    /// The admitted requests' events, in order.
    events: Vec<Bytes>,
    /// The sequence number after the last admitted event.
    next_seq: u64,
    /// The admitted events' bytes.
    bytes: u64,
}

/// Admits requests in order while the pending bytes stay under `max_bytes`; a request that
/// does not fit is refused on its own (a later, smaller one may still fit). Acks running
/// meanwhile only lower `pending_bytes`, so checking against the value read before is
/// conservative.
fn admit(reqs: &[AppendRequest], start_seq: u64, pending_bytes: u64, max_bytes: u64) -> Admitted {
    let mut a = Admitted {
        results: Vec::with_capacity(reqs.len()),
        events: Vec::new(),
        next_seq: start_seq,
        bytes: 0,
    };
    for req in reqs {
        let req_bytes: u64 = req.events.iter().map(|e| e.len() as u64).sum();
        if !req.events.is_empty() && pending_bytes + a.bytes + req_bytes > max_bytes {
            a.results.push(Err(QueueError::Full {
                pending_bytes: pending_bytes + a.bytes,
                max_bytes,
            }));
            continue;
        }
        a.events.extend(req.events.iter().cloned());
        let count = req.events.len() as u64;
        a.results.push(Ok(Appended {
            first_seq: a.next_seq,
            count,
        }));
        a.next_seq += count;
        a.bytes += req_bytes;
    }
    a
}

/// The sled operations of the admitted requests: their quarantine entries (with new ids) and
/// their checkpoints.
struct EntryOps {
    ops: Vec<wal::Op>,
    /// The quarantine id after the last new entry.
    q_next: u64,
    /// New quarantine entries and their bytes.
    added: u64,
    added_bytes: u64,
}

fn entry_ops(reqs: &[AppendRequest], results: &[Result<Appended, QueueError>], q_start: u64) -> EntryOps {
    let mut e = EntryOps {
        ops: Vec::new(),
        q_next: q_start,
        added: 0,
        added_bytes: 0,
    };
    for (req, _) in reqs.iter().zip(results).filter(|(_, r)| r.is_ok()) {
        for (meta, line) in &req.quarantine {
            let keep = &line[..line.len().min(QUARANTINE_KEEP_BYTES)];
            let entry = encode_entry(meta, keep);
            e.added_bytes += entry.len() as u64;
            e.ops.push((key(b'q', e.q_next).to_vec(), Some(entry)));
            e.q_next += 1;
            e.added += 1;
        }
        if let Some((id, ck)) = &req.checkpoint {
            let mut k = vec![b'c'];
            k.extend_from_slice(id);
            e.ops.push((k, Some(ck.clone())));
        }
    }
    e
}

/// The quarantine ids and value sizes that `ops` write (the newest write per id).
fn quarantine_sizes<'a>(ops: impl Iterator<Item = &'a wal::Op>) -> std::collections::HashMap<u64, usize> {
    ops.filter(|(k, _)| k.len() == 9 && k[0] == b'q')
        .map(|(k, v)| {
            (
                u64::from_be_bytes(k[1..9].try_into().unwrap_or([0; 8])),
                v.as_ref().map_or(0, Vec::len),
            )
        })
        .collect()
}

/// Keeps the quarantine bounded in entries and bytes: evicts the oldest entries beyond either
/// bound (counted). Ids are consecutive, so the live ones are exactly the last `quarantine` ids
/// before `q_next`: eviction runs from the oldest live id on (new entries that would be evicted
/// at once are not written). Returns the entries and bytes evicted.
fn evict_quarantine(inner: &Inner, store: &Store, limits: &Limits, before: &Counts, e: &mut EntryOps, q_start: u64) -> (u64, u64) {
    let mut live = before.quarantine + e.added;
    let mut live_bytes = before.quarantine_bytes + e.added_bytes;
    let over = |live: u64, live_bytes: u64| live > limits.max_quarantine_entries || live_bytes > limits.max_quarantine_bytes;
    if !over(live, live_bytes) {
        return (0, 0);
    }
    let oldest = e.q_next - live;
    // Sizes of the entries about to be evicted: this commit's, the overlay's, else sled's.
    let overlay_sizes = quarantine_sizes(inner.state.lock().unwrap().overlay.ops.iter());
    let new_sizes = quarantine_sizes(e.ops.iter());
    let (mut evicted, mut evicted_bytes) = (0u64, 0u64);
    let mut id = oldest;
    while id < e.q_next && over(live, live_bytes) {
        let size = match (new_sizes.get(&id), overlay_sizes.get(&id)) {
            (Some(n), _) | (None, Some(n)) => *n,
            (None, None) => store.db.get(key(b'q', id)).ok().flatten().map_or(0, |v| v.len()),
        } as u64;
        live -= 1;
        live_bytes = live_bytes.saturating_sub(size);
        evicted += 1;
        evicted_bytes += size;
        id += 1;
    }
    let first_kept = id;
    e.ops
        .retain(|(k, _)| k.first() != Some(&b'q') || u64::from_be_bytes(k[1..9].try_into().unwrap_or([0; 8])) >= first_kept);
    e.ops
        .extend((oldest..first_kept.min(q_start)).map(|id| (key(b'q', id).to_vec(), None)));
    tracing::warn!(target: "queue", evicted, "the quarantine is over queue.max_quarantine_entries or queue.max_quarantine_bytes; its oldest entries were dropped (counted in status as quarantine.evicted)");
    (evicted, evicted_bytes)
}
