use super::frames::scan_segments;
use super::*;

fn req(events: &[&str]) -> AppendRequest {
    AppendRequest {
        events: events.iter().map(|s| Bytes::copy_from_slice(s.as_bytes())).collect(),
        quarantine: vec![],
        checkpoint: None,
    }
}

/// A queue at `root` with commits [a b] [c] [d e] [f], event 1 acknowledged before [f].
fn six_events(root: &Path) {
    let q = Queue::open(root, 1 << 30, 100).unwrap();
    for evs in [&["a", "b"][..], &["c"], &["d", "e"]] {
        q.append_blocking(req(evs)).unwrap();
    }
    q.ack(1, vec![]).unwrap();
    q.append_blocking(req(&["f"])).unwrap();
    q.close();
}

/// Damages the sled store the way `Queue::open` takes as corruption, reopens (which moves it
/// aside) and returns the new queue and the moved-aside store's name.
/// A temp queue with six events (see `six_events`), then moved aside.
fn six_events_moved_aside() -> (tempfile::TempDir, Queue, String) {
    let dir = tempfile::tempdir().unwrap();
    six_events(dir.path());
    let (q, name) = damage_and_reopen(dir.path());
    (dir, q, name)
}

fn damage_and_reopen(root: &Path) -> (Queue, String) {
    std::fs::write(root.join("store/conf"), b"\x00garbage\xff").unwrap();
    std::fs::write(root.join("store/db"), vec![0xAB; 4096]).unwrap();
    let q = Queue::open(root, 1 << 30, 100).unwrap();
    let names = unreplayed(root);
    assert_eq!(names.len(), 1, "{names:?}");
    (q, names[0].clone())
}

fn the_segment(dir: &Path) -> PathBuf {
    let segs: Vec<_> = std::fs::read_dir(dir.join("segments"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(segs.len(), 1, "{segs:?}");
    segs[0].clone()
}

/// Where each frame of a segment starts and ends.
fn frames(seg: &Path) -> Vec<(u64, u64)> {
    let f = File::open(seg).unwrap();
    let mut out = Vec::new();
    assert!(wal::scan(&f, 0, |at, _, end| out.push((at, end))).unwrap().is_none());
    out
}

fn pending(root: &Path, name: &str) -> Vec<(u64, String)> {
    let mut o = open(root, &root.join(name));
    let mut out = Vec::new();
    o.each_pending(0, false, |seq, e| {
        out.push((seq, String::from_utf8_lossy(&e).into_owned()));
        true
    });
    out
}

fn evs(v: &[(u64, &str)]) -> Vec<(u64, String)> {
    v.iter().map(|(s, e)| (*s, e.to_string())).collect()
}

#[test]
fn the_frame_scan_takes_every_event_above_acked_and_counts_a_torn_tail() {
    let (dir, _q, name) = six_events_moved_aside();
    let root = dir.path();
    let aside = root.join(&name);
    // A commit torn by a crash at the end: the first 20 bytes of a frame.
    let seg = the_segment(&aside);
    let mut bytes = std::fs::read(&seg).unwrap();
    let (at, _) = frames(&seg)[0];
    let torn = bytes[at as usize..at as usize + 20].to_vec();
    bytes.extend_from_slice(&torn);
    std::fs::write(&seg, &bytes).unwrap();

    let r = inspect(root, &name).unwrap();
    assert_eq!(
        (
            r.acked,
            r.pending_events,
            r.pending_bytes,
            r.frames,
            r.torn_tails,
            r.damaged_stretches,
            r.damaged_events
        ),
        (1, 5, 5, 4, 1, 0, 0),
        "{r:#?}"
    );
    assert_eq!((r.dead_letters, r.quarantine), (0, 0));
    assert!(r.index.starts_with("could not be opened"), "{}", r.index);
    assert_eq!(r.unreadable.len(), 1, "only the index: {:#?}", r.unreadable);
    assert!(r.reason.as_deref().is_some_and(|w| w.contains("damaged")), "{:?}", r.reason);
    assert!(r.moved_at.is_some());
    assert_eq!(pending(root, &name), evs(&[(2, "b"), (3, "c"), (4, "d"), (5, "e"), (6, "f")]));
}

#[test]
fn a_damaged_frame_is_skipped_and_the_frames_after_it_are_read() {
    let (dir, _q, name) = six_events_moved_aside();
    let root = dir.path();
    let seg = the_segment(&root.join(&name));
    let fr = frames(&seg);
    assert_eq!(fr.len(), 4);
    // Flip a byte inside the body of the second frame ([c]).
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[(fr[1].0 + 20) as usize] ^= 0x40;
    std::fs::write(&seg, &bytes).unwrap();

    let r = inspect(root, &name).unwrap();
    assert_eq!(
        (r.acked, r.pending_events, r.frames, r.torn_tails, r.damaged_stretches),
        (1, 4, 3, 0, 1),
        "{r:#?}"
    );
    let stretch = format!("bytes {}..{} are damaged (CRC mismatch)", fr[1].0, fr[1].1);
    assert!(r.unreadable.iter().any(|u| u.contains(&stretch)), "{:#?}", r.unreadable);
    assert_eq!(pending(root, &name), evs(&[(2, "b"), (4, "d"), (5, "e"), (6, "f")]));
    // Garbage to the end of the file: counted, never a panic.
    let len = bytes.len();
    bytes[(fr[3].0 as usize)..len].fill(0x5A);
    std::fs::write(&seg, &bytes).unwrap();
    let r = inspect(root, &name).unwrap();
    assert_eq!((r.pending_events, r.frames, r.damaged_stretches), (3, 2, 2), "{r:#?}");
}

/// Every file under `dir`, with its bytes.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.file_type().unwrap().is_dir() {
            out.extend(snapshot(&e.path()));
        } else {
            out.push((e.path(), std::fs::read(e.path()).unwrap()));
        }
    }
    out.sort();
    out
}

#[test]
fn an_index_that_opens_adds_dead_letters_and_quarantine_and_a_replay_runs_once() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    {
        let q = Queue::open(root, 1 << 30, 100).unwrap();
        let mut r = req(&["a", "b", "c"]);
        r.quarantine.push((
            QuarantineMeta {
                at: now_rfc3339(),
                origin: "test:1".into(),
                reason: "not JSON".into(),
                len: 3,
            },
            b"bad".to_vec(),
        ));
        q.append_blocking(r).unwrap();
        let dead = DeadLetterMeta {
            at: now_rfc3339(),
            reason: "HTTP 400".into(),
            http_status: Some(400),
            original_seq: 2,
        };
        q.ack(2, vec![(dead, Bytes::from_static(b"b"))]).unwrap();
        // The last commit reaches only its frame: the process stops without a flush, so
        // sled lacks it and the copy must be brought up to date from the frames.
        let mut late = req(&["d"]);
        late.quarantine.push((
            QuarantineMeta {
                at: now_rfc3339(),
                origin: "test:2".into(),
                reason: "not JSON".into(),
                len: 4,
            },
            b"late".to_vec(),
        ));
        q.append_blocking(late).unwrap();
        drop(q);
    }
    // Moved aside by hand: the index still opens.
    let name = "corrupt-20260101T000000Z";
    let aside = root.join(name);
    std::fs::rename(root.join("store"), &aside).unwrap();
    std::fs::rename(root.join("segments"), aside.join("segments")).unwrap();
    let before = snapshot(&aside);

    let r = inspect(root, name).unwrap();
    assert_eq!(r.index, "opened (on a copy)");
    assert_eq!(
        (r.acked, r.pending_events, r.dead_letters, r.quarantine, r.damaged_events),
        (2, 2, 1, 2, 0),
        "pending events once; the quarantine entry only the frames hold: {r:#?}"
    );
    assert!(r.unreadable.is_empty(), "{:#?}", r.unreadable);
    assert_eq!(snapshot(&aside), before, "reading changes nothing in the moved-aside store");
    let leftovers: Vec<_> = std::fs::read_dir(root)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".aside-open-"))
        .collect();
    assert!(leftovers.is_empty(), "the copy is removed");

    let q = Queue::open(root, 1 << 30, 100).unwrap();
    let dry = replay(&q, name, true).unwrap();
    assert_eq!((dry.requeued_events, dry.requeued_dead_letters, dry.copied_quarantine), (2, 1, 2));
    assert_eq!(q.counts().pending_events, 0, "a dry run changes nothing");
    assert!(!aside.join(PROGRESS_FILE).exists());

    let done = replay(&q, name, false).unwrap();
    assert_eq!(
        (
            done.requeued_events,
            done.requeued_dead_letters,
            done.copied_quarantine,
            done.stopped.clone()
        ),
        (2, 1, 2, None)
    );
    let got: Vec<Bytes> = q.read(0, 100, 1 << 20).unwrap().into_iter().map(|e| e.data).collect();
    assert_eq!(
        got,
        vec![Bytes::from_static(b"c"), Bytes::from_static(b"d"), Bytes::from_static(b"b")]
    );
    let quarantined: Vec<_> = q
        .list_quarantine(10)
        .unwrap()
        .into_iter()
        .map(|e| (e.meta.origin, String::from_utf8_lossy(&e.data).into_owned()))
        .collect();
    assert_eq!(
        quarantined,
        vec![
            ("test:1".to_string(), "bad".to_string()),
            ("test:2".to_string(), "late".to_string())
        ]
    );
    assert!(unreplayed(root).is_empty());

    let again = replay(&q, name, false).unwrap();
    assert!(again.already_replayed);
    assert_eq!(
        (again.requeued_events, again.requeued_dead_letters, again.copied_quarantine),
        (0, 0, 0)
    );
    assert_eq!(q.counts().pending_events, 3, "a second replay adds nothing");
    assert!(matches!(replay(&q, "corrupt-nope", false), Err(AsideError::NotFound { .. })));
    assert!(matches!(replay(&q, "../x", false), Err(AsideError::NotFound { .. })));
}

#[test]
fn a_replay_stopped_by_a_full_queue_resumes_where_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    six_events(root);
    let (q, name) = damage_and_reopen(root);
    // 6 bytes pending of 8: chunks of 2 bytes (a quarter), so [b c] fits and [d e] does not.
    q.set_limits(Limits {
        max_bytes: 8,
        max_quarantine_entries: 100,
        ..Limits::default()
    });
    let x = q.append_blocking(req(&["xxxxxx"])).unwrap();
    let first = replay(&q, &name, false).unwrap();
    let why = first.stopped.clone().expect("stopped by the full queue");
    assert!(why.contains("queue full") && why.contains("run the replay again"), "{why}");
    assert_eq!(first.requeued_events, 2);
    assert_eq!(first.report.progress.pending_after_seq, 3);
    assert_eq!(unreplayed(root), vec![name.clone()], "not done yet");

    q.ack(x.first_seq, vec![]).unwrap();
    let second = replay(&q, &name, false).unwrap();
    assert_eq!((second.requeued_events, second.stopped.clone()), (3, None), "{second:#?}");
    assert!(unreplayed(root).is_empty());
    let got: Vec<Bytes> = q.read(q.acked(), 100, 1 << 20).unwrap().into_iter().map(|e| e.data).collect();
    let want: Vec<Bytes> = ["b", "c", "d", "e", "f"].iter().map(|e| Bytes::from_static(e.as_bytes())).collect();
    assert_eq!(got, want, "each event once, in order");
}

/// The frame scan alone (no index, no ack file): the report and the events it yields.
fn scan_only(dir: &Path) -> (AsideReport, Vec<(u64, String)>) {
    let mut report = AsideReport::default();
    let mut records = BTreeMap::new();
    report.acked = scan_segments(&dir.join("segments"), &mut report, &mut records);
    let mut o = Opened {
        dir: dir.to_path_buf(),
        report,
        records,
        sled: None,
    };
    let mut got = Vec::new();
    o.each_pending(0, true, |seq, e| {
        got.push((seq, String::from_utf8_lossy(&e).into_owned()));
        true
    });
    (o.report, got)
}

#[test]
fn every_cut_and_every_flipped_byte_of_a_segment_loses_exactly_the_frames_it_touches() {
    let (dir, _q, name) = six_events_moved_aside();
    let root = dir.path();
    let aside = root.join(&name);
    let seg = the_segment(&aside);
    let fr = frames(&seg);
    let original = std::fs::read(&seg).unwrap();
    // Frame k: its events and the `acked` it carries ([f] was committed after the ack of 1).
    let frame_events: [&[(u64, &str)]; 4] = [&[(1, "a"), (2, "b")], &[(3, "c")], &[(4, "d"), (5, "e")], &[(6, "f")]];
    let frame_acked = [0, 0, 0, 1];
    let expect = |kept: &[usize]| -> Vec<(u64, String)> {
        let acked = kept.iter().map(|k| frame_acked[*k]).max().unwrap_or(0);
        let mut v: Vec<(u64, String)> = kept
            .iter()
            .flat_map(|k| frame_events[*k].iter())
            .filter(|(s, _)| *s > acked)
            .map(|(s, e)| (*s, e.to_string()))
            .collect();
        v.sort();
        v
    };
    for cut in wal::SEGMENT_MAGIC.len()..original.len() {
        std::fs::write(&seg, &original[..cut]).unwrap();
        let (r, got) = scan_only(&aside);
        let whole: Vec<usize> = (0..4).filter(|k| fr[*k].1 <= cut as u64).collect();
        let at_boundary = fr.iter().any(|(at, _)| *at == cut as u64);
        assert_eq!(got, expect(&whole), "cut at {cut}");
        assert_eq!(
            (r.torn_tails, r.damaged_stretches),
            (u64::from(!at_boundary), 0),
            "cut at {cut}: {r:#?}"
        );
    }
    for i in wal::SEGMENT_MAGIC.len()..original.len() {
        let mut b = original.clone();
        b[i] ^= 0x40;
        std::fs::write(&seg, &b).unwrap();
        let (r, got) = scan_only(&aside);
        let hit = fr.iter().position(|(at, end)| (*at..*end).contains(&(i as u64))).unwrap();
        let others: Vec<usize> = (0..4).filter(|k| *k != hit).collect();
        assert_eq!(got, expect(&others), "flip at {i} (frame {hit})");
        assert_eq!(r.frames, 3, "flip at {i}");
        // A longer length in the last frame reads as a torn tail: either way, counted once.
        assert_eq!(r.torn_tails + r.damaged_stretches, 1, "flip at {i}: {r:#?}");
    }
}
