//! Unit tests of the queue on a real sled store in a temp dir.

use super::*;

fn ev(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn req(events: &[&str]) -> AppendRequest {
    AppendRequest {
        events: events.iter().map(|s| ev(s)).collect(),
        quarantine: vec![],
        checkpoint: None,
    }
}

fn qmeta() -> QuarantineMeta {
    QuarantineMeta {
        at: now_rfc3339(),
        origin: "test".into(),
        reason: "bad".into(),
        len: 8,
    }
}

#[test]
fn append_read_ack_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let q = Queue::open(dir.path(), 1 << 30, 100).unwrap();
        let a = q.append_blocking(req(&["a", "b", "c"])).unwrap();
        assert_eq!(a, Appended { first_seq: 1, count: 3 });
        let got = q.read(0, 10, 1 << 20).unwrap();
        assert_eq!(got.iter().map(|e| &e.data[..]).collect::<Vec<_>>(), vec![b"a", b"b", b"c"]);
        q.ack(2, vec![]).unwrap();
        assert_eq!(q.counts().pending_events, 1);
        q.close();
    }
    let q = Queue::open(dir.path(), 1 << 30, 100).unwrap();
    let got = q.read(q.acked(), 10, 1 << 20).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(&got[0].data[..], b"c");
    assert_eq!(got[0].seq, 3);
    let a = q.append_blocking(req(&["d"])).unwrap();
    assert_eq!(a.first_seq, 4, "sequence numbers are never reused");
}

#[test]
fn full_queue_refuses_and_reports() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path(), 10, 100).unwrap();
    q.append_blocking(req(&["12345678"])).unwrap();
    let e = q.append_blocking(req(&["abc"])).unwrap_err();
    assert!(matches!(
        e,
        QueueError::Full {
            pending_bytes: 8,
            max_bytes: 10
        }
    ));
    q.ack(1, vec![]).unwrap();
    q.append_blocking(req(&["abc"])).unwrap();
}

#[test]
fn dead_letter_replay_and_purge() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path(), 1 << 30, 100).unwrap();
    q.append_blocking(req(&["a", "b"])).unwrap();
    let meta = DeadLetterMeta {
        at: now_rfc3339(),
        reason: "HTTP 400: bad".into(),
        http_status: Some(400),
        original_seq: 1,
    };
    q.ack(1, vec![(meta, ev("a"))]).unwrap();
    assert_eq!(q.counts().dead_letter, 1);
    let dl = q.list_dead_letter(10).unwrap();
    assert_eq!(dl[0].data, b"a");
    assert_eq!(q.replay_dead_letter(None).unwrap(), 1);
    let got = q.read(1, 10, 1 << 20).unwrap();
    assert_eq!(got.iter().map(|e| &e.data[..]).collect::<Vec<_>>(), vec![&b"b"[..], &b"a"[..]]);
    assert_eq!(q.counts().dead_letter, 0);
    assert_eq!(q.purge_dead_letter(None).unwrap(), 0);
}

#[test]
fn quarantine_is_bounded_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path(), 1 << 30, 3).unwrap();
    for i in 0..5 {
        let meta = QuarantineMeta {
            at: now_rfc3339(),
            origin: format!("test:{i}"),
            reason: "bad".into(),
            len: 1,
        };
        q.append_blocking(AppendRequest {
            events: vec![],
            quarantine: vec![(meta, vec![b'x'])],
            checkpoint: None,
        })
        .unwrap();
    }
    let c = q.counts();
    assert_eq!((c.quarantine, c.quarantine_evicted), (3, 2));
    let l = q.list_quarantine(10).unwrap();
    assert_eq!(
        l.iter().map(|e| e.meta.origin.as_str()).collect::<Vec<_>>(),
        vec!["test:2", "test:3", "test:4"]
    );
}

#[test]
fn reclaim_gives_space_back_and_keeps_meta() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path(), 1 << 40, 100).unwrap();
    let line = "x".repeat(400);
    for _ in 0..20 {
        let evs: Vec<&str> = (0..1000).map(|_| line.as_str()).collect();
        q.append_blocking(req(&evs)).unwrap();
    }
    q.append_blocking(AppendRequest {
        events: vec![],
        quarantine: vec![],
        checkpoint: Some((b"file".to_vec(), b"ck".to_vec())),
    })
    .unwrap();
    let before = q.size_on_disk();
    q.ack(20_000, vec![]).unwrap();
    let after = q.reclaim().unwrap();
    assert!(after < before, "{after} < {before}");
    assert_eq!(q.checkpoint(b"file").unwrap().as_deref(), Some(&b"ck"[..]));
    let a = q.append_blocking(req(&["next"])).unwrap();
    assert_eq!(a.first_seq, 20_001);
    assert_eq!(&q.read(20_000, 10, 1 << 20).unwrap()[0].data[..], b"next");
}

#[test]
fn a_store_that_comes_back_shorter_is_an_incident_and_sequence_numbers_continue() {
    let dir = tempfile::tempdir().unwrap();
    {
        let q = Queue::open(dir.path(), 1 << 30, 100).unwrap();
        q.append_blocking(req(&["a", "b", "c"])).unwrap();
        q.close();
    }
    // The store and the write-ahead log are lost (sled does it silently when its log is
    // truncated; the segments went with the disk).
    std::fs::remove_dir_all(dir.path().join("store")).unwrap();
    std::fs::remove_dir_all(dir.path().join("segments")).unwrap();
    let q = Queue::open(dir.path(), 1 << 30, 100).unwrap();
    let inc = q.incident().expect("the loss is reported");
    assert!(inc.contains("up to 3 events with sequence numbers 1..3 were lost"), "{inc}");
    assert_eq!(q.append_blocking(req(&["d"])).unwrap().first_seq, 4, "no sequence number is reused");
}

#[test]
fn a_store_that_comes_back_empty_is_rebuilt_from_the_write_ahead_log() {
    let dir = tempfile::tempdir().unwrap();
    {
        let q = Queue::open(dir.path(), 1 << 30, 100).unwrap();
        q.append_blocking(req(&["a", "b", "c"])).unwrap();
        q.ack(1, vec![]).unwrap();
        q.append_blocking(AppendRequest {
            events: vec![ev("d")],
            quarantine: vec![(qmeta(), b"bad line".to_vec())],
            checkpoint: Some((b"file".to_vec(), b"ck".to_vec())),
        })
        .unwrap();
        q.close();
    }
    std::fs::remove_dir_all(dir.path().join("store")).unwrap();
    let q = Queue::open(dir.path(), 1 << 30, 100).unwrap();
    assert_eq!(q.incident(), None);
    assert_eq!(q.acked(), 1, "the second commit carried acked = 1");
    let got: Vec<_> = q
        .read(q.acked(), 10, 1 << 20)
        .unwrap()
        .into_iter()
        .map(|e| (e.seq, e.data))
        .collect();
    assert_eq!(got, vec![(2, ev("b")), (3, ev("c")), (4, ev("d"))]);
    assert_eq!(q.counts().pending_events, 3);
    assert_eq!(q.counts().quarantine, 1);
    assert_eq!(q.checkpoint(b"file").unwrap().as_deref(), Some(&b"ck"[..]));
    assert_eq!(q.append_blocking(req(&["e"])).unwrap().first_seq, 5);
}

#[test]
fn unopenable_store_is_moved_aside_not_crash_looped() {
    let dir = tempfile::tempdir().unwrap();
    {
        let q = Queue::open(dir.path(), 1 << 30, 100).unwrap();
        q.append_blocking(req(&["a"])).unwrap();
        q.close();
    }
    // Damage the database: make `conf` garbage.
    std::fs::write(dir.path().join("store/conf"), b"\x00garbage\xff").unwrap();
    std::fs::write(dir.path().join("store/db"), vec![0xAB; 4096]).unwrap();
    let q = Queue::open(dir.path(), 1 << 30, 100).unwrap();
    let inc = q.incident().expect("incident reported");
    assert!(inc.contains("moved aside"), "{inc}");
    assert!(std::fs::read_dir(dir.path())
        .unwrap()
        .any(|e| e.unwrap().file_name().to_string_lossy().starts_with("corrupt-")));
    q.append_blocking(req(&["b"])).unwrap();
}

#[test]
fn large_single_event_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path(), 1 << 30, 100).unwrap();
    let big = "y".repeat(300 * 1024);
    q.append_blocking(req(&[big.as_str(), "small"])).unwrap();
    let got = q.read(0, 10, 1 << 30).unwrap();
    assert_eq!(got[0].data.len(), big.len());
    assert_eq!(&got[1].data[..], b"small");
}

fn segment_files(root: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(root.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    v.sort();
    v
}

fn numbered(from: usize, n: usize) -> AppendRequest {
    AppendRequest {
        events: (from..from + n).map(|i| Bytes::from(format!("{i}:{}", "x".repeat(200)))).collect(),
        quarantine: vec![],
        checkpoint: None,
    }
}

#[test]
fn segments_are_deleted_only_once_acknowledged_and_survive_restarts() {
    let dir = tempfile::tempdir().unwrap();
    {
        let q = Queue::open(dir.path(), 1 << 30, 100).unwrap();
        q.inner.segments.lock().unwrap().roll_bytes = 8 * 1024;
        for i in 0..10 {
            q.append_blocking(numbered(i * 100, 100)).unwrap();
        }
        let files = segment_files(dir.path());
        assert!(files.len() >= 5, "{files:?}");
        // Ack into the middle of the third segment's events: the first two go, no others.
        let third: u64 = files[2].trim_end_matches(".seg").parse().unwrap();
        q.ack(third + 5, vec![]).unwrap();
        assert_eq!(segment_files(dir.path()), files[2..].to_vec());
        let got = q.read(q.acked(), 3, 1 << 20).unwrap();
        assert_eq!(got[0].seq, third + 6);
        assert!(got[0].data.starts_with(format!("{}:", third + 5).as_bytes()));
        q.close();
    }
    let q = Queue::open(dir.path(), 1 << 30, 100).unwrap();
    assert_eq!(q.counts().pending_events, 1000 - q.acked());
    let all = q.read(q.acked(), 10_000, 1 << 30).unwrap();
    assert_eq!(all.len() as u64, 1000 - q.acked());
    for (i, e) in all.iter().enumerate() {
        let n = q.acked() + i as u64;
        assert!(e.data.starts_with(format!("{n}:").as_bytes()), "event {}", e.seq);
    }
    q.ack(1000, vec![]).unwrap();
    assert_eq!(q.counts(), Counts::default());
    assert!(segment_files(dir.path()).len() <= 1, "only the segment being appended to may stay");
    let a = q.append_blocking(numbered(1000, 1)).unwrap();
    assert_eq!(a.first_seq, 1001);
    assert_eq!(q.read(1000, 10, 1 << 20).unwrap().len(), 1);
}

#[test]
fn bytes_of_a_commit_that_never_completed_are_never_read() {
    let dir = tempfile::tempdir().unwrap();
    {
        let q = Queue::open(dir.path(), 1 << 30, 100).unwrap();
        q.append_blocking(req(&["a", "b"])).unwrap();
        q.close();
    }
    // As if a commit had written its records, then crashed before its sled batch: a segment
    // named after the next sequence number, and garbage at the end of the current one.
    std::fs::write(segment_path(&dir.path().join("segments"), 3), b"\x01garbage").unwrap();
    let cur = segment_path(&dir.path().join("segments"), 1);
    let mut f = File::options().append(true).open(&cur).unwrap();
    std::io::Write::write_all(&mut f, b"\x01more garbage").unwrap();
    drop(f);
    let q = Queue::open(dir.path(), 1 << 30, 100).unwrap();
    assert!(!segment_path(&dir.path().join("segments"), 3).exists());
    q.append_blocking(req(&["c"])).unwrap();
    let got = q.read(0, 10, 1 << 20).unwrap();
    assert_eq!(got.iter().map(|e| &e.data[..]).collect::<Vec<_>>(), vec![&b"a"[..], b"b", b"c"]);
}

#[test]
fn records_stored_inline_by_earlier_versions_are_still_read_and_acked() {
    let dir = tempfile::tempdir().unwrap();
    {
        let q = Queue::open(dir.path(), 1 << 30, 100).unwrap();
        let mut v1 = Vec::new();
        encode_record_into(&mut v1, now_ms(), &[ev("old1"), ev("old2")]);
        let store = q.inner.store.read().unwrap();
        let mut b = sled::Batch::default();
        b.insert(&key(b'e', 1)[..], v1);
        b.insert(meta_key("next_seq"), &3u64.to_be_bytes());
        b.insert(meta_key("pending_events"), &2u64.to_be_bytes());
        b.insert(meta_key("pending_bytes"), &8u64.to_be_bytes());
        store.db.apply_batch(b).unwrap();
        store.db.flush().unwrap();
    }
    let q = Queue::open(dir.path(), 1 << 30, 100).unwrap();
    q.append_blocking(req(&["new"])).unwrap();
    let got = q.read(0, 10, 1 << 20).unwrap();
    assert_eq!(
        got.iter().map(|e| &e.data[..]).collect::<Vec<_>>(),
        vec![&b"old1"[..], b"old2", b"new"]
    );
    q.ack(1, vec![]).unwrap();
    assert_eq!(q.counts().pending_bytes, 4 + 3);
    q.ack(3, vec![]).unwrap();
    assert_eq!(q.counts(), Counts::default());
}

#[test]
fn acks_survive_a_crash_before_sled_writes_them() {
    let dir = tempfile::tempdir().unwrap();
    {
        let q = Queue::open(dir.path(), 1 << 30, 100).unwrap();
        q.append_blocking(req(&["a", "b", "c", "d"])).unwrap();
        q.ack(3, vec![]).unwrap();
        // A crash now (dropped without `close`): sled has neither the commit nor the ack,
        // which live in the overlay until a drain; the frame and the ack file have them.
        let store = q.inner.store.read().unwrap();
        assert_eq!(store.db.get(meta_key("acked")).unwrap(), None, "sled is written lazily");
    }
    let q = Queue::open(dir.path(), 1 << 30, 100).unwrap();
    assert_eq!(q.acked(), 3, "the ack file is applied at open");
    assert_eq!(q.counts().pending_events, 1);
    assert_eq!(q.counts().pending_bytes, 1);
    let got = q.read(q.acked(), 10, 1 << 20).unwrap();
    assert_eq!(got.iter().map(|e| &e.data[..]).collect::<Vec<_>>(), vec![&b"d"[..]]);
}

#[test]
fn a_stale_or_damaged_ack_file_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    {
        let q = Queue::open(dir.path(), 1 << 30, 100).unwrap();
        q.append_blocking(req(&["a", "b"])).unwrap();
        q.close();
    }
    std::fs::write(dir.path().join("store").join(ACK_FILE), [0xFFu8; 16]).unwrap();
    let q = Queue::open(dir.path(), 1 << 30, 100).unwrap();
    assert_eq!((q.acked(), q.counts().pending_events), (0, 2));
    q.close();
    drop(q);
    // A value from beyond this store's sequence numbers (e.g. a replaced store) too.
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&99u64.to_be_bytes());
    b[8..].copy_from_slice(&(99 ^ ACK_FILE_CHECK).to_be_bytes());
    std::fs::write(dir.path().join("store").join(ACK_FILE), b).unwrap();
    let q = Queue::open(dir.path(), 1 << 30, 100).unwrap();
    assert_eq!((q.acked(), q.counts().pending_events), (0, 2));
}

#[test]
fn an_open_error_that_is_not_damage_moves_nothing_aside_and_the_queue_opens_once_fixed() {
    let dir = tempfile::tempdir().unwrap();
    {
        let q = Queue::open(dir.path(), 1 << 30, 100).unwrap();
        q.append_blocking(req(&["a", "b"])).unwrap();
        q.close();
    }
    // sled's log cannot be opened (here: a directory in its place; the same path as a full
    // disk or a permission error at open): an I/O error, not evidence of damage.
    let db = dir.path().join("store/db");
    std::fs::rename(&db, dir.path().join("db.real")).unwrap();
    std::fs::create_dir(&db).unwrap();
    let e = Queue::open(dir.path(), 1 << 30, 100).err().expect("the open fails");
    assert!(matches!(e, QueueError::Storage { .. }), "{e}");
    assert!(e.to_string().contains("this is not damage"), "{e}");
    let aside: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("corrupt-"))
        .collect();
    assert!(aside.is_empty(), "nothing is moved aside");
    // The cause is fixed: every event is still there.
    std::fs::remove_dir(&db).unwrap();
    std::fs::rename(dir.path().join("db.real"), &db).unwrap();
    let q = Queue::open(dir.path(), 1 << 30, 100).unwrap();
    assert_eq!(q.incident(), None);
    let got: Vec<_> = q.read(0, 10, 1 << 20).unwrap().into_iter().map(|e| e.data).collect();
    assert_eq!(got, vec![ev("a"), ev("b")]);
}

#[test]
fn nothing_is_written_outside_queue_path_not_even_by_a_reclaim() {
    let parent = tempfile::tempdir().unwrap();
    let root = parent.path().join("queue");
    let shm = || -> Vec<std::ffi::OsString> {
        std::fs::read_dir("/dev/shm")
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default()
    };
    let shm_before = shm();
    {
        let q = Queue::open(&root, 1 << 40, 100).unwrap();
        let line = "x".repeat(400);
        for _ in 0..5 {
            let evs: Vec<&str> = (0..1000).map(|_| line.as_str()).collect();
            q.append_blocking(req(&evs)).unwrap();
        }
        q.ack(5_000, vec![]).unwrap();
        q.reclaim().unwrap();
        q.append_blocking(req(&["after"])).unwrap();
        q.close();
    }
    let beside: Vec<_> = std::fs::read_dir(parent.path()).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(beside, vec![std::ffi::OsString::from("queue")], "only queue.path itself");
    let new_in_shm: Vec<_> = shm().into_iter().filter(|n| !shm_before.contains(n)).collect();
    assert!(
        !new_in_shm.iter().any(|n| n.to_string_lossy().starts_with("pagecache.tmp")),
        "a sled temporary store in /dev/shm: {new_in_shm:?}"
    );
}

#[test]
fn the_quarantine_is_bounded_in_bytes_too_evicting_the_oldest() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path(), 1 << 30, 1000).unwrap();
    q.set_limits(Limits {
        max_quarantine_bytes: 3 * 1100,
        ..Limits::default()
    });
    for i in 0..6 {
        let meta = QuarantineMeta {
            at: now_rfc3339(),
            origin: format!("test:{i}"),
            reason: "bad".into(),
            len: 1000,
        };
        q.append_blocking(AppendRequest {
            events: vec![],
            quarantine: vec![(meta, vec![b'x'; 1000])],
            checkpoint: None,
        })
        .unwrap();
    }
    let c = q.counts();
    let l = q.list_quarantine(10).unwrap();
    let stored: u64 = l
        .iter()
        .map(|e| (4 + serde_json::to_vec(&e.meta).unwrap().len() + e.data.len()) as u64)
        .sum();
    assert_eq!(
        l.iter().map(|e| e.meta.origin.as_str()).collect::<Vec<_>>(),
        vec!["test:3", "test:4", "test:5"]
    );
    assert_eq!((c.quarantine, c.quarantine_evicted, c.quarantine_bytes), (3, 3, stored));
    assert!(c.quarantine_bytes <= 3 * 1100);
    // The byte counter survives a reopen.
    q.close();
    drop(q);
    let q = Queue::open(dir.path(), 1 << 30, 1000).unwrap();
    assert_eq!(q.counts().quarantine_bytes, stored);
}
