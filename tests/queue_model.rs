//! Property test: the durable queue behaves like an in-memory `VecDeque` model under random
//! sequences of appends, reads, acks (with dead letters), replays and restarts.

use std::collections::VecDeque;

use bytes::Bytes;
use proptest::prelude::*;
use sendauth_siem::queue::{AppendRequest, DeadLetterMeta, Queue};

#[derive(Debug, Clone)]
enum Op {
    Append(Vec<u16>),
    /// Ack the first `n` pending events; every `dead_every`-th of them is dead-lettered.
    Ack {
        n: usize,
        dead_every: usize,
    },
    ReplayDeadLetter,
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => proptest::collection::vec(any::<u16>(), 0..40).prop_map(Op::Append),
        3 => (0usize..30, 0usize..4).prop_map(|(n, dead_every)| Op::Ack { n, dead_every }),
        1 => Just(Op::ReplayDeadLetter),
        1 => Just(Op::Restart),
    ]
}

fn payload(v: u16) -> Bytes {
    // Vary sizes so records split at different points.
    Bytes::from(format!("{v}:{}", "x".repeat((v % 300) as usize)))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn queue_matches_vecdeque_model(ops in proptest::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let mut q = Queue::open(dir.path(), 1 << 40, 1000).unwrap();
        let mut model: VecDeque<(u64, Bytes)> = VecDeque::new();
        let mut dead_model: Vec<Bytes> = Vec::new();
        let mut last_seq = 0u64;
        for op in ops {
            match op {
                Op::Append(vals) => {
                    let events: Vec<Bytes> = vals.iter().map(|v| payload(*v)).collect();
                    let a = q.append_blocking(AppendRequest { events: events.clone(), quarantine: vec![], checkpoint: None }).unwrap();
                    if !events.is_empty() {
                        prop_assert!(a.first_seq > last_seq, "sequence numbers only grow");
                    }
                    for (i, e) in events.into_iter().enumerate() {
                        model.push_back((a.first_seq + i as u64, e));
                        last_seq = a.first_seq + i as u64;
                    }
                }
                Op::Ack { n, dead_every } => {
                    let n = n.min(model.len());
                    if n == 0 { continue; }
                    let mut dead = Vec::new();
                    let mut upto = 0;
                    for i in 0..n {
                        let (seq, data) = model.pop_front().unwrap();
                        upto = seq;
                        if dead_every > 0 && i % dead_every == 0 {
                            dead.push((DeadLetterMeta { at: "t".into(), reason: "r".into(), http_status: Some(400), original_seq: seq }, data.clone()));
                            dead_model.push(data);
                        }
                    }
                    q.ack(upto, dead).unwrap();
                }
                Op::ReplayDeadLetter => {
                    let n = q.replay_dead_letter(None).unwrap();
                    prop_assert_eq!(n as usize, dead_model.len());
                    let first = last_seq + 1;
                    for (i, d) in dead_model.drain(..).enumerate() {
                        model.push_back((first + i as u64, d));
                        last_seq = first + i as u64;
                    }
                }
                Op::Restart => {
                    q.close();
                    drop(q);
                    q = Queue::open(dir.path(), 1 << 40, 1000).unwrap();
                }
            }
            // The queue holds exactly the model, in order, with the same sequence numbers.
            let got = q.read(q.acked(), usize::MAX, usize::MAX).unwrap();
            let got: Vec<(u64, Bytes)> = got.into_iter().map(|e| (e.seq, e.data)).collect();
            let want: Vec<(u64, Bytes)> = model.iter().cloned().collect();
            prop_assert_eq!(got, want);
            let c = q.counts();
            prop_assert_eq!(c.pending_events as usize, model.len());
            prop_assert_eq!(c.pending_bytes, model.iter().map(|(_, d)| d.len() as u64).sum::<u64>());
            prop_assert_eq!(c.dead_letter as usize, dead_model.len());
            let dl: Vec<Vec<u8>> = q.list_dead_letter(usize::MAX).unwrap().into_iter().map(|e| e.data).collect();
            prop_assert_eq!(dl, dead_model.iter().map(|d| d.to_vec()).collect::<Vec<_>>());
        }
    }
}
