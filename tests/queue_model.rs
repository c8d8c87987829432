//! Model tests of the durable queue with crashes: the real queue (real sled in a temp dir,
//! appends through its committer thread as in production) under random sequences of appends
//! (events, a source checkpoint, quarantine entries), acks (with dead letters), dead-letter
//! replays, full-queue refusals, graceful restarts and crashes (a killed process, or a power
//! loss with torn writes, optionally after the disk died a given number of operations into a
//! commit), checked after every step against a simple in-memory model.
//!
//! What must hold after any crash: every event whose append returned Ok and that was not
//! acknowledged is there, in order, with its sequence number, exactly once; an event of an
//! append that failed is there entirely or not at all (never half a commit); acknowledged
//! events come back only after a power loss and only back to the last durable point; the
//! checkpoint is the one of the last commit that is there; quarantine and dead letter hold
//! exactly the model's entries; counters match; no sequence number is ever reused.

#[path = "common/crash_storage.rs"]
mod crash_storage;

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use crash_storage::CrashStorage;
use proptest::prelude::*;
use sendauth_siem::queue::{AppendRequest, DeadLetterMeta, Limits, QuarantineMeta, Queue, QueueError};

const MAX_BYTES: u64 = 24 * 1024;
const MAX_QUARANTINE: u64 = 5;
/// Small, so acks with dead letters are refused (the dead letter is full) in many cases.
const MAX_DEAD_LETTER: u64 = 12;

#[derive(Debug, Clone)]
enum Op {
    /// Events (payload seeds), quarantined lines, and whether the request carries a checkpoint.
    Append(Vec<u16>, u8, bool),
    /// Ack the first `n` pending events; every `dead_every`-th of them is dead-lettered.
    Ack {
        n: usize,
        dead_every: usize,
    },
    ReplayDeadLetter,
    PurgeDeadLetter,
    /// `quarantine purge`: all entries, or (`half`) the oldest half by id.
    PurgeQuarantine {
        half: bool,
    },
    /// The disk dies `after` operations into a quarantine purge, then the machine crashes.
    DieDuringQuarantinePurge {
        after: u8,
        power_loss: bool,
    },
    Restart,
    Crash {
        power_loss: bool,
        tear: Option<u16>,
    },
    /// The disk dies `after` operations into the next append, then the machine crashes.
    DieDuringAppend {
        after: u8,
        power_loss: bool,
        tear: Option<u16>,
        events: Vec<u16>,
    },
    /// The disk dies `after` operations into an ack with dead letters, then the machine crashes.
    DieDuringAck {
        after: u8,
        power_loss: bool,
        n: usize,
    },
    /// The disk dies `after` operations into a dead-letter replay (or purge), then the machine
    /// crashes.
    DieDuringReplay {
        after: u8,
        power_loss: bool,
        purge: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let tear = proptest::option::of(0u16..400);
    prop_oneof![
        6 => (proptest::collection::vec(any::<u16>(), 0..12), 0u8..3, any::<bool>()).prop_map(|(e, q, c)| Op::Append(e, q, c)),
        3 => (0usize..20, 0usize..4).prop_map(|(n, dead_every)| Op::Ack { n, dead_every }),
        1 => Just(Op::ReplayDeadLetter),
        1 => Just(Op::PurgeDeadLetter),
        1 => any::<bool>().prop_map(|half| Op::PurgeQuarantine { half }),
        1 => (0u8..6, any::<bool>()).prop_map(|(after, power_loss)| Op::DieDuringQuarantinePurge { after, power_loss }),
        1 => Just(Op::Restart),
        2 => (any::<bool>(), tear.clone()).prop_map(|(power_loss, tear)| Op::Crash { power_loss, tear }),
        2 => (0u8..8, any::<bool>(), tear, proptest::collection::vec(any::<u16>(), 1..12))
            .prop_map(|(after, power_loss, tear, events)| Op::DieDuringAppend { after, power_loss, tear, events }),
        1 => (0u8..4, any::<bool>(), 1usize..10).prop_map(|(after, power_loss, n)| Op::DieDuringAck { after, power_loss, n }),
        1 => (0u8..6, any::<bool>(), any::<bool>()).prop_map(|(after, power_loss, purge)| Op::DieDuringReplay { after, power_loss, purge }),
    ]
}

fn payload(v: u16) -> Bytes {
    // Vary sizes so records and frames split at different points.
    Bytes::from(format!("{v}:{}", "x".repeat((v % 700) as usize)))
}

fn qmeta(n: u64) -> QuarantineMeta {
    QuarantineMeta {
        at: "t".into(),
        origin: format!("line {n}"),
        reason: "bad".into(),
        len: 3,
    }
}

/// What the queue must hold.
#[derive(Default)]
struct Model {
    /// Accepted, not acknowledged.
    pending: VecDeque<(u64, Bytes)>,
    /// Every event ever given a sequence number.
    history: BTreeMap<u64, Bytes>,
    /// Highest sequence number acknowledged, and the lowest it may come back as after a power
    /// loss (the `acked` of the last commit or dead-letter flush).
    acked: u64,
    acked_floor: u64,
    highest_seq: u64,
    checkpoint: Option<Vec<u8>>,
    quarantine: VecDeque<String>,
    quarantine_total: u64,
    dead: Vec<Bytes>,
}

struct Harness {
    root: tempfile::TempDir,
    _scratch: tempfile::TempDir,
    storage: CrashStorage,
    rt: tokio::runtime::Runtime,
    q: Option<Queue>,
    m: Model,
    crashes: u64,
}

impl Harness {
    fn new() -> Harness {
        let root = tempfile::tempdir().unwrap();
        let scratch = tempfile::tempdir().unwrap();
        let storage = CrashStorage::new(root.path(), scratch.path());
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let mut h = Harness {
            root,
            _scratch: scratch,
            storage,
            rt,
            q: None,
            m: Model::default(),
            crashes: 0,
        };
        h.open();
        h
    }

    fn open(&mut self) {
        let q = Queue::open_with_storage(self.root.path(), MAX_BYTES, MAX_QUARANTINE, Arc::new(self.storage.clone())).unwrap();
        q.set_commit_gap(Duration::ZERO);
        q.set_min_free(0);
        q.set_limits(Limits {
            max_bytes: MAX_BYTES,
            max_quarantine_entries: MAX_QUARANTINE,
            max_quarantine_bytes: u64::MAX,
            max_dead_letter_entries: MAX_DEAD_LETTER,
            max_dead_letter_bytes: u64::MAX,
        });
        self.q = Some(q);
    }

    fn q(&self) -> &Queue {
        self.q.as_ref().unwrap()
    }

    fn request(&mut self, vals: &[u16], quarantined: u8, checkpoint: bool) -> AppendRequest {
        let n = self.m.quarantine_total;
        AppendRequest {
            events: vals.iter().map(|v| payload(*v)).collect(),
            quarantine: (0..quarantined as u64).map(|i| (qmeta(n + i), b"bad".to_vec())).collect(),
            checkpoint: checkpoint.then(|| (b"file".to_vec(), format!("ck-{}-{}", self.m.highest_seq, vals.len()).into_bytes())),
        }
    }

    /// The model's view of a request that was committed.
    fn committed(&mut self, req: &AppendRequest, first_seq: u64) {
        for (i, e) in req.events.iter().enumerate() {
            let seq = first_seq + i as u64;
            assert!(
                seq > self.m.highest_seq,
                "sequence number {seq} reused (highest so far {})",
                self.m.highest_seq
            );
            self.m.pending.push_back((seq, e.clone()));
            self.m.history.insert(seq, e.clone());
            self.m.highest_seq = seq;
        }
        for (meta, _) in &req.quarantine {
            self.m.quarantine.push_back(meta.origin.clone());
            self.m.quarantine_total += 1;
            if self.m.quarantine.len() as u64 > MAX_QUARANTINE {
                self.m.quarantine.pop_front();
            }
        }
        if let Some((_, ck)) = &req.checkpoint {
            self.m.checkpoint = Some(ck.clone());
        }
        if !req.events.is_empty() || !req.quarantine.is_empty() || req.checkpoint.is_some() {
            // A frame was written: it carries `acked`.
            self.m.acked_floor = self.m.acked;
        }
    }

    fn append(&mut self, req: AppendRequest) -> Result<(), QueueError> {
        let bytes: u64 = req.events.iter().map(|e| e.len() as u64).sum();
        let pending: u64 = self.m.pending.iter().map(|(_, e)| e.len() as u64).sum();
        let q = self.q().clone();
        let r = self.rt.block_on(q.append(req.clone()));
        match r {
            Ok(a) => {
                assert!(
                    req.events.is_empty() || pending + bytes <= MAX_BYTES,
                    "accepted over queue.max_bytes"
                );
                self.committed(&req, a.first_seq);
                Ok(())
            }
            Err(QueueError::Full { .. }) => {
                assert!(
                    pending + bytes > MAX_BYTES,
                    "refused as full with {pending} + {bytes} bytes pending"
                );
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    fn ack(&mut self, n: usize, dead_every: usize) {
        self.try_ack(n, dead_every).unwrap();
    }

    /// Acks the first `n` pending events, dead-lettering every `dead_every`-th. Returns whether
    /// the ack was made: one that would overfill the dead letter must be refused, changing
    /// nothing.
    fn try_ack(&mut self, n: usize, dead_every: usize) -> Result<bool, QueueError> {
        let n = n.min(self.m.pending.len());
        if n == 0 {
            return Ok(true);
        }
        let mut dead = Vec::new();
        let mut upto = 0;
        for (i, (seq, data)) in self.m.pending.iter().take(n).enumerate() {
            upto = *seq;
            if dead_every > 0 && i % dead_every == 0 {
                let meta = DeadLetterMeta {
                    at: "t".into(),
                    reason: "r".into(),
                    http_status: Some(400),
                    original_seq: *seq,
                };
                dead.push((meta, data.clone()));
            }
        }
        let over = self.m.dead.len() + dead.len() > MAX_DEAD_LETTER as usize;
        let flushed = !dead.is_empty();
        let dead_data: Vec<Bytes> = dead.iter().map(|(_, d)| d.clone()).collect();
        let r = self.q().ack(upto, dead);
        match &r {
            Err(QueueError::DeadLetterFull { seq, .. }) => {
                assert!(over, "the dead letter was refused with room in it");
                assert_eq!(*seq, self.m.pending[0].0, "the refusal names the first rejected event");
                return Ok(false);
            }
            // The disk died: the model takes the ack as made; a caller that crashes next
            // decides from what the queue holds (see `DieDuringAck`).
            Err(_) => {}
            Ok(()) => assert!(!over, "the dead letter took more than queue.max_dead_letter_entries"),
        }
        self.m.pending.drain(..n);
        self.m.dead.extend(dead_data);
        self.m.acked = upto;
        if flushed {
            self.m.acked_floor = upto;
        }
        r.map(|()| true)
    }

    fn purge_dead_letter(&mut self) {
        let n = self.q().purge_dead_letter(None).unwrap();
        assert_eq!(n as usize, self.m.dead.len());
        if n > 0 {
            self.m.dead.clear();
            // Written and flushed with sled.
            self.m.acked_floor = self.m.acked;
        }
    }

    fn purge_quarantine(&mut self, half: bool) {
        let ids: Vec<u64> = self.q().list_quarantine(usize::MAX).unwrap().iter().map(|e| e.id).collect();
        let through = if half { ids.get(ids.len() / 2).copied() } else { None };
        if half && through.is_none() {
            return;
        }
        let n = self.q().purge_quarantine(through).unwrap();
        let expected = match through {
            Some(t) => ids.iter().filter(|id| **id <= t).count(),
            None => ids.len(),
        };
        assert_eq!(n as usize, expected, "purged entries");
        for _ in 0..n {
            self.m.quarantine.pop_front();
        }
        if n > 0 {
            // Written and flushed with sled, like a dead-letter purge.
            self.m.acked_floor = self.m.acked;
        }
    }

    fn replay_dead_letter(&mut self) {
        let n = self.q().replay_dead_letter(None).unwrap();
        assert_eq!(n as usize, self.m.dead.len());
        let first = self.m.highest_seq + 1;
        let dead = std::mem::take(&mut self.m.dead);
        let req = AppendRequest {
            events: dead,
            quarantine: vec![],
            checkpoint: None,
        };
        // Re-queued after everything, with new sequence numbers; the queue may have given
        // out numbers above `highest_seq` to a commit that failed, so read them back.
        let got = self.q().read(self.m.highest_seq, usize::MAX, usize::MAX).unwrap();
        let first_seq = got.first().map(|e| e.seq).unwrap_or(first);
        self.committed(&req, first_seq);
        if n > 0 {
            // Written and flushed with sled.
            self.m.acked_floor = self.m.acked;
        }
    }

    /// Crashes the machine with whatever the disk holds, reopens, and reconciles the model
    /// with what a crash may change: a failed commit may or may not be there (`failed`), and
    /// after a power loss acknowledgements back to the last durable point may be undone.
    fn crash(&mut self, power_loss: bool, tear: Option<u16>, failed: Option<AppendRequest>) {
        self.q.take();
        self.storage.crash(power_loss, tear.map(usize::from));
        self.crashes += 1;
        self.open();
        let q = self.q().clone();
        let acked = q.acked();
        if power_loss {
            assert!(
                acked >= self.m.acked_floor && acked <= self.m.acked,
                "acked {acked} after a power loss, expected {}..={}",
                self.m.acked_floor,
                self.m.acked
            );
        } else {
            assert_eq!(acked, self.m.acked, "a killed process keeps every ack (the ack file)");
        }
        self.crash_reconcile_acks(acked);
        // A commit that failed is there as a whole, right after the model's events, or not at all.
        if let Some(req) = failed {
            let got = q.read(self.m.highest_seq, usize::MAX, usize::MAX).unwrap();
            let there = !got.is_empty() || (req.events.is_empty() && q.counts().quarantine != self.m.quarantine.len() as u64);
            if there {
                let data: Vec<Bytes> = got.iter().map(|e| e.data.clone()).collect();
                assert_eq!(data, req.events, "a failed commit came back only in part");
                let first = got.first().map(|e| e.seq).unwrap_or(self.m.highest_seq + 1);
                self.committed(&req, first);
            } else if q.checkpoint(b"file").unwrap() != self.m.checkpoint {
                // An event-less failed commit (checkpoint only) that made it to disk.
                self.committed(&req, self.m.highest_seq + 1);
            }
        }
    }

    /// After a crash: acknowledged events back to `acked` are pending again (sent again).
    fn crash_reconcile_acks(&mut self, acked: u64) {
        // Acknowledged events that came back are pending again (they will be sent again).
        let back: Vec<(u64, Bytes)> = match acked < self.m.acked {
            true => self
                .m
                .history
                .range(acked + 1..=self.m.acked)
                .map(|(s, e)| (*s, e.clone()))
                .collect(),
            false => Vec::new(),
        };
        let back: Vec<(u64, Bytes)> = back
            .into_iter()
            .filter(|(s, _)| !self.m.pending.iter().any(|(p, _)| p == s))
            .collect();
        for e in back.into_iter().rev() {
            self.m.pending.push_front(e);
        }
        self.m.acked = acked;
        self.m.acked_floor = acked;
    }

    /// The queue holds exactly the model.
    fn check(&self) {
        let q = self.q();
        let got: Vec<(u64, Bytes)> = q
            .read(q.acked(), usize::MAX, usize::MAX)
            .unwrap()
            .into_iter()
            .map(|e| (e.seq, e.data))
            .collect();
        let want: Vec<(u64, Bytes)> = self.m.pending.iter().cloned().collect();
        let seqs = |v: &[(u64, Bytes)]| v.iter().map(|(s, e)| (*s, e.len())).collect::<Vec<_>>();
        assert_eq!(
            seqs(&got),
            seqs(&want),
            "the queue's events: (seq, len) (after {} crashes)",
            self.crashes
        );
        assert!(got == want, "the queue's events have the right numbers but not the right data");
        let c = q.counts();
        assert_eq!(c.pending_events as usize, self.m.pending.len(), "pending_events");
        assert_eq!(
            c.pending_bytes,
            self.m.pending.iter().map(|(_, d)| d.len() as u64).sum::<u64>(),
            "pending_bytes"
        );
        assert_eq!(c.dead_letter as usize, self.m.dead.len(), "dead-letter count");
        let dl = q.list_dead_letter(usize::MAX).unwrap();
        // Byte counters: each entry is stored as [header length u32][header JSON][data].
        let stored = |meta: &dyn erased::Json, data: &[u8]| (4 + meta.json_len() + data.len()) as u64;
        assert_eq!(
            c.dead_letter_bytes,
            dl.iter().map(|e| stored(&e.meta, &e.data)).sum::<u64>(),
            "dead-letter bytes"
        );
        let dl: Vec<Vec<u8>> = dl.into_iter().map(|e| e.data).collect();
        assert_eq!(dl, self.m.dead.iter().map(|d| d.to_vec()).collect::<Vec<_>>(), "dead letter");
        let ql = q.list_quarantine(usize::MAX).unwrap();
        assert_eq!(
            c.quarantine_bytes,
            ql.iter().map(|e| stored(&e.meta, &e.data)).sum::<u64>(),
            "quarantine bytes"
        );
        let ql: Vec<String> = ql.into_iter().map(|e| e.meta.origin).collect();
        assert_eq!(ql, self.m.quarantine.iter().cloned().collect::<Vec<_>>(), "quarantine");
        assert_eq!(c.quarantine as usize, self.m.quarantine.len(), "quarantine count");
        assert_eq!(q.checkpoint(b"file").unwrap(), self.m.checkpoint, "checkpoint");
    }

    fn run(&mut self, op: Op) {
        match op {
            Op::Append(vals, quarantined, checkpoint) => {
                let req = self.request(&vals, quarantined, checkpoint);
                self.append(req).unwrap();
            }
            Op::Ack { n, dead_every } => self.ack(n, dead_every),
            Op::ReplayDeadLetter => self.replay_dead_letter(),
            Op::PurgeDeadLetter => self.purge_dead_letter(),
            Op::PurgeQuarantine { half } => self.purge_quarantine(half),
            Op::DieDuringQuarantinePurge { after, power_loss } => {
                let before = self.m.quarantine.clone();
                self.storage.fail_after(u64::from(after));
                let ok = self.q().purge_quarantine(None).is_ok();
                self.q.take();
                self.storage.crash(power_loss, None);
                self.crashes += 1;
                self.open();
                let acked = self.q().acked();
                self.crash_reconcile_acks(acked);
                let left = self.q().counts().quarantine as usize;
                if !before.is_empty() && left == before.len() {
                    // Undone as a whole (the quarantine fits one page): as before.
                    assert!(!ok, "a quarantine purge that returned Ok was undone by a crash");
                } else {
                    assert_eq!(left, 0, "a crash left a quarantine purge half done");
                    self.m.quarantine.clear();
                }
            }
            Op::DieDuringReplay { after, power_loss, purge } => {
                let dead = self.m.dead.clone();
                self.storage.fail_after(u64::from(after));
                let q = self.q().clone();
                let ok = if purge {
                    q.purge_dead_letter(None)
                } else {
                    q.replay_dead_letter(None)
                }
                .is_ok();
                drop(q);
                self.q.take();
                self.storage.crash(power_loss, None);
                self.crashes += 1;
                self.open();
                let acked = self.q().acked();
                self.crash_reconcile_acks(acked);
                let left = self.q().counts().dead_letter as usize;
                if left == dead.len() && !dead.is_empty() {
                    // Undone as a whole: everything is as before.
                    assert!(!ok, "a replay that returned Ok was undone by a crash");
                } else if !dead.is_empty() {
                    assert_eq!(left, 0, "a crash left a replay half done");
                    self.m.dead.clear();
                    if !purge {
                        let got = self.q().read(self.m.highest_seq, usize::MAX, usize::MAX).unwrap();
                        let data: Vec<Bytes> = got.iter().map(|e| e.data.clone()).collect();
                        assert_eq!(data, dead, "replayed events are re-queued, in order, exactly once");
                        let req = AppendRequest {
                            events: dead,
                            quarantine: vec![],
                            checkpoint: None,
                        };
                        self.committed(&req, got[0].seq);
                    }
                }
            }
            Op::Restart => {
                let q = self.q.take().unwrap();
                q.close();
                drop(q);
                self.open();
            }
            Op::Crash { power_loss, tear } => self.crash(power_loss, tear, None),
            Op::DieDuringAck { after, power_loss, n } => {
                let n = n.min(self.m.pending.len());
                if n == 0 {
                    return self.check();
                }
                let before = (self.m.pending.clone(), self.m.dead.clone(), self.m.acked, self.m.acked_floor);
                let upto = self.m.pending[n - 1].0;
                self.storage.fail_after(u64::from(after));
                let made = self.try_ack(n, 1);
                if matches!(made, Ok(false)) {
                    // Refused (the dead letter is full) before touching the disk.
                    self.storage.disarm();
                    return self.check();
                }
                let ok = made.is_ok();
                self.q.take();
                self.storage.crash(power_loss, None);
                self.crashes += 1;
                self.open();
                let acked = self.q().acked();
                if acked >= upto {
                    // It took effect: its dead letters must be there (checked below).
                    self.m.acked = acked;
                    self.m.acked_floor = acked;
                } else {
                    assert!(!ok, "an ack with dead letters that returned Ok was undone by a crash");
                    // Undone: everything is as before it, dead letters included.
                    (self.m.pending, self.m.dead, self.m.acked, self.m.acked_floor) = before;
                    self.crash_reconcile_acks(acked);
                }
            }
            Op::DieDuringAppend {
                after,
                power_loss,
                tear,
                events,
            } => {
                let req = self.request(&events, 1, true);
                self.storage.fail_after(u64::from(after));
                let failed = match self.append(req.clone()) {
                    Ok(()) => None,
                    Err(_) => Some(req),
                };
                self.crash(power_loss, tear, failed);
            }
        }
        self.check();
    }
}

/// The stored size of an entry's header, whatever its metadata type.
mod erased {
    pub trait Json {
        fn json_len(&self) -> usize;
    }
    impl<T: serde::Serialize> Json for T {
        fn json_len(&self) -> usize {
            serde_json::to_vec(self).unwrap().len()
        }
    }
}

/// Random workloads, each on a fresh queue; thousands of crashes in all.
#[test]
fn the_queue_matches_its_model_through_crashes() {
    use proptest::test_runner::{Config, TestRunner};
    let crashes = std::sync::atomic::AtomicU64::new(0);
    let mut runner = TestRunner::new(Config {
        cases: 200,
        ..Config::default()
    });
    let result = runner.run(&proptest::collection::vec(op(), 20..80), |ops| {
        let mut h = Harness::new();
        for op in ops {
            h.run(op);
        }
        crashes.fetch_add(h.crashes, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let crashes = crashes.into_inner();
    assert!(crashes >= 2000, "only {crashes} crashes");
}

/// A crash at every instant of a fixed workload: for each number of storage operations the
/// disk survives, and each kind of crash, the queue reopens with nothing acknowledged lost.
#[test]
fn a_crash_at_every_storage_operation_loses_nothing_acknowledged() {
    // How many operations one round of the workload makes.
    let round = |h: &mut Harness, i: u16| {
        h.run(Op::Append(vec![i, i + 1, i + 300], 1, true));
        h.run(Op::Ack { n: 2, dead_every: 2 });
        h.run(Op::Append(vec![i + 2], 0, true));
    };
    let mut h = Harness::new();
    let before = h.storage.ops();
    round(&mut h, 0);
    let per_round = h.storage.ops() - before;
    assert!(per_round > 3, "the workload writes through the storage seam ({per_round} ops)");
    let mut crashes = 0;
    for after in 0..per_round + 2 {
        for (power_loss, tear) in [(false, None), (true, None), (true, Some(5)), (true, Some(37))] {
            let mut h = Harness::new();
            round(&mut h, 10);
            let events = vec![20, 21, 22];
            h.run(Op::DieDuringAppend {
                after: after as u8,
                power_loss,
                tear,
                events,
            });
            round(&mut h, 30);
            h.run(Op::Crash { power_loss, tear });
            crashes += 2;
        }
    }
    assert!(crashes >= 40, "{crashes} crashes");
}
