//! Shared pieces of the reliability campaigns (`tests/campaign_*.rs`, docs/RELIABILITY.md):
//! their size, the receiver-side ledger that counts every event, memory readings and the
//! figures each campaign prints.
//!
//! Size: `CAMPAIGN=short` (the default, what `cargo test` and CI run) or `CAMPAIGN=long` (the
//! on-demand run, `scripts/campaigns.sh long`). `CAMPAIGN_SEED` fixes the random choices
//! (kill moments, input mix) so a failing run can be repeated; the seed is printed.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{Cfg, TestEnv};

/// Whether this is the long, on-demand run.
pub fn long() -> bool {
    std::env::var("CAMPAIGN").map(|v| v == "long").unwrap_or(false)
}

/// `short` in CI, `long` on demand; `CAMPAIGN_<NAME>` (upper case) overrides either.
pub fn size(name: &str, short: usize, long_: usize) -> usize {
    let var = format!("CAMPAIGN_{}", name.to_ascii_uppercase());
    if let Some(v) = std::env::var(&var).ok().and_then(|v| v.parse().ok()) {
        return v;
    }
    if long() {
        long_
    } else {
        short
    }
}

/// Same as [`size`], for durations in seconds.
pub fn secs(name: &str, short: u64, long_: u64) -> Duration {
    Duration::from_secs(size(name, short as usize, long_ as usize) as u64)
}

/// The seed for this run's random choices (printed so a run can be repeated).
pub fn seed(campaign: &str) -> u64 {
    let s = std::env::var("CAMPAIGN_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    });
    eprintln!("[{campaign}] CAMPAIGN_SEED={s}");
    s
}

/// Resident and peak memory of a process, from `/proc/<pid>/status`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Mem {
    pub rss_kib: u64,
    pub hwm_kib: u64,
}

pub fn mem(pid: u32) -> Option<Mem> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        let l = s.lines().find(|l| l.starts_with(name))?;
        l.split_whitespace().nth(1)?.parse().ok()
    };
    Some(Mem {
        rss_kib: field("VmRSS:")?,
        hwm_kib: field("VmHWM:")?,
    })
}

/// Bytes under a directory (the queue's footprint on disk).
pub fn dir_bytes(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if let Ok(m) = e.metadata() {
                total += if m.is_dir() { dir_bytes(&e.path()) } else { m.len() };
            }
        }
    }
    total
}

/// The receiver's view of a campaign: which ids must arrive, which may, and what did.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Ids that must arrive (in the file, or acknowledged by the agent on the socket).
    pub must: Vec<String>,
    /// Ids that may arrive (sent on a connection the agent never answered, e.g. killed).
    pub maybe: HashSet<String>,
}

/// What arrived, judged against a [`Ledger`].
#[derive(Debug, Default)]
pub struct Verdict {
    pub received: usize,
    pub distinct: usize,
    pub lost: Vec<String>,
    pub unexpected: Vec<String>,
    /// Ids received more than once, with the number of extra copies.
    pub duplicates: HashMap<String, usize>,
    /// Extra copies in total.
    pub duplicate_copies: usize,
    /// Ids from `maybe` that arrived.
    pub maybe_arrived: usize,
}

impl Ledger {
    pub fn judge(&self, got: &[String]) -> Verdict {
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for g in got {
            *counts.entry(g.as_str()).or_default() += 1;
        }
        let must: HashSet<&str> = self.must.iter().map(|s| s.as_str()).collect();
        let lost = self.must.iter().filter(|m| !counts.contains_key(m.as_str())).cloned().collect();
        let unexpected = counts
            .keys()
            .filter(|k| !must.contains(*k) && !self.maybe.contains(**k))
            .map(|k| k.to_string())
            .collect();
        let duplicates: HashMap<String, usize> = counts
            .iter()
            .filter(|(_, c)| **c > 1)
            .map(|(k, c)| (k.to_string(), c - 1))
            .collect();
        Verdict {
            received: got.len(),
            distinct: counts.len(),
            lost,
            unexpected,
            duplicate_copies: duplicates.values().sum(),
            duplicates,
            maybe_arrived: counts.keys().filter(|k| self.maybe.contains(**k)).count(),
        }
    }
}

/// Requests the agent may have in flight with `delivery.max_in_flight: auto` (its ceiling),
/// plus the one being read ahead.
pub const IN_FLIGHT_REQUESTS: usize = sendauth_siem::sink::concurrency::AUTO_CEILING + 1;

/// Every wanted id arrived, and in order up to what may be in flight: several requests in
/// flight may reorder arrivals (ARCHITECTURE.md invariant 4), but never by more than
/// `in_flight_events` positions (requests in flight times events per request).
pub fn first_occurrences_in_order(got: &[String], want: &[String], in_flight_events: usize) -> Result<(), String> {
    let index: std::collections::HashMap<&str, usize> = want.iter().enumerate().map(|(i, s)| (s.as_str(), i)).collect();
    let mut seen = HashSet::new();
    let firsts: Vec<usize> = got
        .iter()
        .filter_map(|g| index.get(g.as_str()).copied())
        .filter(|i| seen.insert(*i))
        .collect();
    let mut highest = 0usize;
    for (pos, i) in firsts.iter().enumerate() {
        if *i + in_flight_events < highest {
            return Err(format!(
                "order broken at arrival {pos}: {} arrived after {}, more than {in_flight_events} events later in order",
                want[*i], want[highest]
            ));
        }
        highest = highest.max(*i);
    }
    if firsts.len() != want.len() {
        return Err(format!("{} of {} arrived", firsts.len(), want.len()));
    }
    Ok(())
}

/// The figures of one campaign: printed as they are recorded, and appended as one JSON object
/// to `$CAMPAIGN_FIGURES` (set by scripts/campaigns.sh) when the campaign ends.
pub struct Figures {
    campaign: String,
    values: serde_json::Map<String, serde_json::Value>,
}

impl Figures {
    pub fn new(campaign: &str) -> Figures {
        let mut values = serde_json::Map::new();
        values.insert("size".into(), (if long() { "long" } else { "short" }).into());
        Figures {
            campaign: campaign.to_string(),
            values,
        }
    }

    pub fn set(&mut self, key: &str, v: impl Into<serde_json::Value>) {
        let v = v.into();
        eprintln!("[{}] {key} = {v}", self.campaign);
        self.values.insert(key.to_string(), v);
    }

    /// Seconds with millisecond precision.
    pub fn secs(&mut self, key: &str, d: Duration) {
        self.set(key, (d.as_secs_f64() * 1000.0).round() / 1000.0);
    }
}

impl Drop for Figures {
    fn drop(&mut self) {
        let ok = !std::thread::panicking();
        self.values.insert("passed".into(), ok.into());
        let line = serde_json::json!({"campaign": self.campaign, "figures": self.values});
        eprintln!("CAMPAIGN-FIGURES {line}");
        if let Ok(path) = std::env::var("CAMPAIGN_FIGURES") {
            if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
                let _ = writeln!(f, "{line}");
            }
        }
    }
}

/// Samples a process's memory every `every` until dropped; returns the samples.
pub struct MemSampler {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: Option<std::thread::JoinHandle<Vec<Mem>>>,
}

impl MemSampler {
    pub fn start(pid: u32, every: Duration) -> MemSampler {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut out = Vec::new();
            while !s.load(std::sync::atomic::Ordering::Relaxed) {
                if let Some(m) = mem(pid) {
                    out.push(m);
                }
                std::thread::sleep(every);
            }
            out
        });
        MemSampler {
            stop,
            handle: Some(handle),
        }
    }

    pub fn finish(mut self) -> Vec<Mem> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.handle.take().map(|h| h.join().unwrap_or_default()).unwrap_or_default()
    }
}

/// Median and max of durations.
pub fn median_max(mut v: Vec<Duration>) -> (Duration, Duration) {
    if v.is_empty() {
        return (Duration::ZERO, Duration::ZERO);
    }
    v.sort();
    (v[v.len() / 2], *v.last().unwrap())
}

/// How one socket connection of a campaign writer ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SockOutcome {
    /// Could not connect (agent down or restarting): nothing was sent.
    NotConnected,
    /// The agent answered `{"accepted":N,...}`: the first N valid lines are durable.
    Answered { accepted: u64, rejected: u64, refused: u64 },
    /// Sent, but no answer came (the agent died or closed): the lines may or may not be queued.
    NoAnswer,
}

/// Sends lines on one connection as a careful auth server would: write, shut down the write
/// side, read the answer. Bounded by `timeout`.
pub async fn socket_try_send(path: &std::path::Path, lines: &[String], timeout: Duration) -> (SockOutcome, Vec<serde_json::Value>) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let Ok(Ok(s)) = tokio::time::timeout(timeout, tokio::net::UnixStream::connect(path)).await else {
        return (SockOutcome::NotConnected, vec![]);
    };
    let (rd, mut wr) = s.into_split();
    let mut buf = String::new();
    for l in lines {
        buf.push_str(l);
        buf.push('\n');
    }
    let wrote = tokio::time::timeout(timeout, async {
        wr.write_all(buf.as_bytes()).await?;
        wr.shutdown().await
    })
    .await;
    let mut answers = Vec::new();
    let mut r = BufReader::new(rd).lines();
    while let Ok(Ok(Some(l))) = tokio::time::timeout(timeout, r.next_line()).await {
        answers.push(serde_json::from_str(&l).unwrap_or(serde_json::Value::String(l)));
    }
    let last = answers.iter().rev().find(|a| a.get("accepted").is_some());
    match last {
        Some(a) => (
            SockOutcome::Answered {
                accepted: a["accepted"].as_u64().unwrap_or(0),
                rejected: a["rejected"].as_u64().unwrap_or(0),
                refused: a["refused"].as_u64().unwrap_or(0),
            },
            answers,
        ),
        None if !matches!(wrote, Ok(Ok(()))) && answers.is_empty() => (SockOutcome::NoAnswer, answers),
        None => (SockOutcome::NoAnswer, answers),
    }
}

/// [`crate::common::event`] with a `context` field of `pad` bytes (bigger events make a
/// backlog that dwarfs any in-memory buffering).
pub fn padded_event(i: usize, pad: usize) -> String {
    let e = super::event(i);
    if pad == 0 {
        return e;
    }
    format!("{},\"context\":\"{}\"}}", &e[..e.len() - 1], "p".repeat(pad))
}

/// A tmpfs of `mib` MiB mounted at `dir`, unmounted on drop.
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    pub fn mount(dir: &Path, mib: u64) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

pub fn write_config_with_queue(env: &TestEnv, cfg: &Cfg, qdir: &Path) {
    let text = env
        .render(cfg)
        .replace(&env.queue.display().to_string(), &qdir.display().to_string());
    env.write_config_text(&text);
}

/// Mounts the small filesystem with ballast leaving about `free_mib` free; None (skipped) when
/// not permitted.
pub fn small_fs(env: &TestEnv, fs_mib: u64, free_mib: u64) -> Option<(Tmpfs, PathBuf)> {
    let fs_dir = env.dir.path().join("qfs");
    let fs = match Tmpfs::mount(&fs_dir, fs_mib) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("SKIPPED: the full-filesystem campaign mounts a tmpfs, which needs root: {e}");
            return None;
        }
    };
    let ballast = fs_dir.join("ballast");
    std::fs::write(&ballast, vec![0u8; ((fs_mib - free_mib) * 1024 * 1024) as usize]).unwrap();
    Some((fs, ballast))
}

/// Sends `lines` over the socket source in connections of `per_connection` lines, asserting
/// each connection's answer accepts all of them.
pub async fn send_all_accepted(socket: &Path, lines: &[String], per_connection: usize) {
    for chunk in lines.chunks(per_connection) {
        let (o, a) = socket_try_send(socket, chunk, super::DEADLINE).await;
        assert!(
            matches!(o, SockOutcome::Answered { accepted, .. } if accepted as usize == chunk.len()),
            "{o:?} {a:?}"
        );
    }
}
