//! Re-queueing a moved-aside store into the live queue in chunks, with its progress recorded
//! in `replay.json` after each durable chunk (at least once, resumable, once only).

use super::*;

/// One replay at a time in this process (two would re-queue the same events twice).
static REPLAYING: Mutex<()> = Mutex::new(());

/// Re-queues what the moved-aside store `name` holds into `queue` (see the module docs), or with
/// `dry_run` only says what it would do. A store already replayed is left alone.
pub fn replay(queue: &Queue, name: &str, dry_run: bool) -> Result<ReplayOutcome, AsideError> {
    let _one = REPLAYING.lock().unwrap_or_else(|p| p.into_inner());
    let root = queue.root().to_path_buf();
    let dir = resolve(&root, name)?;
    let mut o = open(&root, &dir);
    count(&mut o);
    let mut out = ReplayOutcome {
        dry_run,
        already_replayed: o.report.progress.done_at.is_some(),
        requeued_events: 0,
        requeued_dead_letters: 0,
        copied_quarantine: 0,
        stopped: None,
        report: o.report.clone(),
    };
    if out.already_replayed {
        return Ok(out);
    }
    let mut p = o.report.progress.clone();
    if dry_run {
        // What a replay would do from where the last one stopped.
        let mut n = 0;
        o.each_pending(p.pending_after_seq, false, |_, _| {
            n += 1;
            true
        });
        out.requeued_events = n;
        let mut n = 0;
        o.each_entry(b'd', p.dead_letter_after_id, |_, v| {
            n += u64::from(decode_entry::<DeadLetterMeta>(v).is_some());
            true
        });
        out.requeued_dead_letters = n;
        let mut n = 0;
        o.each_entry(b'q', p.quarantine_after_id, |_, v| {
            n += u64::from(decode_entry::<QuarantineMeta>(v).is_some());
            true
        });
        out.copied_quarantine = n;
        return Ok(out);
    }
    let before = (p.requeued_events, p.requeued_dead_letters, p.copied_quarantine);
    let stopped = requeue_all(queue, &dir, &mut o, &mut p);
    out.requeued_events = p.requeued_events - before.0;
    out.requeued_dead_letters = p.requeued_dead_letters - before.1;
    out.copied_quarantine = p.copied_quarantine - before.2;
    match stopped? {
        None => {
            p.done_at = Some(now_rfc3339());
            write_progress(&dir, &p)?;
            tracing::info!(target: "queue", store = %dir.display(), events = out.requeued_events, dead_letters = out.requeued_dead_letters, quarantine = out.copied_quarantine, "a moved-aside store was replayed");
        }
        Some(why) => out.stopped = Some(why),
    }
    out.report.progress = p;
    Ok(out)
}

/// Why a replay stops early: the live queue refused a chunk (full, disk, shutting down: the
/// replay can resume), or its progress could not be recorded (an error).
enum Stop {
    Resumable(String),
    Progress(AsideError),
}

/// Re-queues from `p` on: pending events, dead letters, quarantine entries. Returns why it
/// stopped early, if it did.
fn requeue_all(queue: &Queue, dir: &Path, o: &mut Opened, p: &mut Progress) -> Result<Option<String>, AsideError> {
    // A quarter of `queue.max_bytes` at most, so that a small queue can take a chunk.
    let mut chunk = Chunk {
        limit: CHUNK_BYTES.min(usize::try_from(queue.max_bytes() / 4).unwrap_or(usize::MAX)).max(1),
        ..Default::default()
    };
    let mut stop: Option<Stop> = None;
    // 1. Pending events, in sequence order.
    let from = p.pending_after_seq;
    o.each_pending(from, false, |seq, data| {
        chunk.push(seq, data, None);
        chunk.commit_if_full(queue, dir, p, Stage::Pending, &mut stop)
    });
    chunk.finish(queue, dir, p, Stage::Pending, &mut stop);
    // 2. Dead-letter entries, re-queued as events; 3. quarantine entries, copied.
    for (prefix, stage, what) in [(b'd', Stage::DeadLetter, "dead-letter"), (b'q', Stage::Quarantine, "quarantine")] {
        if stop.is_some() {
            break;
        }
        let from = if stage == Stage::DeadLetter {
            p.dead_letter_after_id
        } else {
            p.quarantine_after_id
        };
        let broke = o.each_entry(prefix, from, |id, v| {
            if stage == Stage::DeadLetter {
                match decode_entry::<DeadLetterMeta>(v) {
                    Some((_, data)) => chunk.push(id, Bytes::from(data), None),
                    None => chunk.skip(id),
                }
            } else {
                match decode_entry::<QuarantineMeta>(v) {
                    Some(q) => chunk.push(id, Bytes::new(), Some(q)),
                    None => chunk.skip(id),
                }
            }
            chunk.commit_if_full(queue, dir, p, stage, &mut stop)
        });
        chunk.finish(queue, dir, p, stage, &mut stop);
        if let (None, Some(e)) = (&stop, broke) {
            stop = Some(Stop::Resumable(format!(
                "reading the {what} entries from the index failed ({e}); run the replay again to retry from there"
            )));
        }
    }
    match stop {
        None => Ok(None),
        Some(Stop::Resumable(why)) => Ok(Some(why)),
        Some(Stop::Progress(e)) => Err(e),
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Stage {
    Pending,
    DeadLetter,
    Quarantine,
}

/// Events (or quarantine entries) gathered for one commit, with the last key they cover.
#[derive(Default)]
struct Chunk {
    events: Vec<Bytes>,
    quarantine: Vec<(QuarantineMeta, Vec<u8>)>,
    bytes: usize,
    /// A commit is made at this many bytes.
    limit: usize,
    /// The last sequence number or id gathered (or skipped as unreadable).
    last: Option<u64>,
}

impl Chunk {
    fn push(&mut self, key: u64, event: Bytes, q: Option<(QuarantineMeta, Vec<u8>)>) {
        self.bytes += event.len();
        if !event.is_empty() || q.is_none() {
            self.events.push(event);
        }
        if let Some((meta, line)) = q {
            self.bytes += line.len();
            self.quarantine.push((meta, line));
        }
        self.last = Some(key);
    }

    fn skip(&mut self, key: u64) {
        self.last = Some(key);
    }

    fn full(&self) -> bool {
        self.bytes >= self.limit || self.events.len() + self.quarantine.len() >= CHUNK_EVENTS
    }

    /// Commits when the chunk is full; false once the replay must stop.
    fn commit_if_full(&mut self, queue: &Queue, dir: &Path, p: &mut Progress, stage: Stage, stop: &mut Option<Stop>) -> bool {
        if self.full() {
            self.finish(queue, dir, p, stage, stop);
        }
        stop.is_none()
    }

    /// Commits what was gathered unless the replay is stopping.
    fn finish(&mut self, queue: &Queue, dir: &Path, p: &mut Progress, stage: Stage, stop: &mut Option<Stop>) {
        if stop.is_none() {
            if let Err(s) = self.commit(queue, dir, p, stage) {
                *stop = Some(s);
            }
        }
    }

    /// Commits what was gathered (durably, through the ordinary commit path), then records the
    /// progress.
    fn commit(&mut self, queue: &Queue, dir: &Path, p: &mut Progress, stage: Stage) -> Result<(), Stop> {
        let Some(last) = self.last.take() else { return Ok(()) };
        let events = std::mem::take(&mut self.events);
        let quarantine = std::mem::take(&mut self.quarantine);
        self.bytes = 0;
        let (n_events, n_q) = (events.len() as u64, quarantine.len() as u64);
        if n_events + n_q > 0 {
            let req = AppendRequest {
                events,
                quarantine,
                checkpoint: None,
            };
            if let Err(e) = queue.append_blocking(req) {
                return Err(Stop::Resumable(match e {
                    QueueError::Full { .. } => format!("{e}; run the replay again once the queue has drained: it resumes where it stopped"),
                    e => format!("{e}; run the replay again once that is fixed: it resumes where it stopped"),
                }));
            }
        }
        match stage {
            Stage::Pending => {
                p.pending_after_seq = last;
                p.requeued_events += n_events;
            }
            Stage::DeadLetter => {
                p.dead_letter_after_id = last;
                p.requeued_dead_letters += n_events;
            }
            Stage::Quarantine => {
                p.quarantine_after_id = last;
                p.copied_quarantine += n_q;
            }
        }
        write_progress(dir, p).map_err(Stop::Progress)
    }
}
