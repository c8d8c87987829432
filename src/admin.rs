//! The admin socket: mutating operator commands (`dead-letter replay/purge`), listings, and the
//! live views (`top` asks for `Status` every second, `tap` streams events), for the running agent.
//!
//! A Unix socket at `<queue.path>/admin.sock`, mode 0600: only the agent's own user (the
//! "admin role") can connect. One JSON request line in; out, one JSON answer line, or for a
//! listing a stream of lines: a header (`{"ok":true,"stream":true,"total":N}`), one line per
//! entry, and `{"end":true,"listed":K}`. Listings are read from the queue a page at a time and
//! written as they are read, so neither side holds the whole dead letter in memory. With no
//! agent running, the CLI opens the queue directly and runs the same [`execute`].
//!
//! Both directions are typed: a [`Request`] line in, [`Response`] lines out (`protocol.rs`),
//! serialised here and deserialised by the CLI (`cli/admin_client.rs`).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;

use std::sync::Arc;

use crate::queue::{DeadLetterMeta, QuarantineMeta, Queue};
use crate::shutdown::Shutdown;
use crate::status::StatusHub;

mod protocol;
pub use protocol::{
    AsideReplayed, DeadLetterEntry, Failed, Purged, QuarantineEntry, QuarantineReplayed, Replayed, Response, Skipped, StatusAnswer,
    StreamEnd, StreamHead, TapLine,
};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    DeadLetterList {
        limit: Option<usize>,
    },
    DeadLetterReplay {
        ids: Option<Vec<u64>>,
    },
    DeadLetterPurge {
        ids: Option<Vec<u64>>,
    },
    QuarantineList {
        limit: Option<usize>,
    },
    /// All (`None`) or the entries with ids up to and including this one.
    QuarantinePurge {
        through: Option<u64>,
    },
    AsideReplay {
        name: String,
        dry_run: bool,
    },
    /// The status document and running totals, for `top` (running agent only).
    Status,
    /// Events as they enter the queue, after the privacy transform, until `limit` were shown
    /// (running agent only): a stream of `{"source","event"}` lines, `{"skipped":N}` when the
    /// viewer fell behind, then `{"end":true,"listed":K}`.
    Tap {
        limit: usize,
    },
    /// Runs quarantined lines (all, or ids up to `through`) through intake again with the
    /// current rules: see `source::replay_quarantine`.
    QuarantineReplay {
        through: Option<u64>,
        dry_run: bool,
    },
}

/// What intake applies now, for `quarantine replay`: from the running agent's config, or from
/// the config the CLI loaded.
pub(crate) type Intake<'a> = Option<(&'a crate::source::IntakeRules, &'a crate::metrics::Metrics)>;

/// The longest `queue.path` (in bytes) that leaves room for the admin socket's temporary name,
/// `<queue.path>/.admin.<pid>.tmp`, within the 107 usable bytes of a Unix socket path
/// (`sun_path` is 108 bytes with its NUL; Linux pids have at most 7 digits).
pub(crate) const MAX_QUEUE_PATH_BYTES: usize = 107 - "/.admin.".len() - 7 - ".tmp".len();

pub(crate) fn socket_path(queue_path: &Path) -> PathBuf {
    queue_path.join("admin.sock")
}

fn text_of(data: &[u8]) -> String {
    String::from_utf8_lossy(data).into_owned()
}

/// Runs a request against the queue, giving the answer line(s) to `out` (see the module docs).
/// `out` returns false when the reader has gone; a listing then stops.
pub(crate) fn execute(queue: &Queue, req: &Request, intake: Intake, out: &mut dyn FnMut(&Response) -> bool) {
    let r = match req {
        Request::DeadLetterList { limit } => {
            if !out(&Response::head(queue.counts().dead_letter)) {
                return;
            }
            queue
                .for_each_entry::<DeadLetterMeta>(b'd', limit.unwrap_or(1000), |e| {
                    out(&Response::DeadLetter(DeadLetterEntry {
                        at: e.meta.at,
                        event: text_of(&e.data),
                        http_status: e.meta.http_status,
                        id: e.id,
                        original_seq: e.meta.original_seq,
                        reason: e.meta.reason,
                    }))
                })
                .map(|n| Response::end(n as u64))
        }
        Request::QuarantineList { limit } => {
            if !out(&Response::head(queue.counts().quarantine)) {
                return;
            }
            queue
                .for_each_entry::<QuarantineMeta>(b'q', limit.unwrap_or(1000), |e| {
                    out(&Response::Quarantine(QuarantineEntry {
                        at: e.meta.at,
                        id: e.id,
                        len: e.meta.len as u64,
                        line: text_of(&e.data),
                        origin: e.meta.origin,
                        reason: e.meta.reason,
                    }))
                })
                .map(|n| Response::end(n as u64))
        }
        Request::DeadLetterReplay { ids } => queue
            .replay_dead_letter(ids.as_deref())
            .map(|n| Response::Replayed(Replayed { ok: true, replayed: n })),
        // `aside replay`: re-queue what a moved-aside store holds (see `queue::aside`).
        Request::AsideReplay { name, dry_run } => Ok(match crate::queue::aside::replay(queue, name, *dry_run) {
            Ok(outcome) => Response::AsideReplayed(Box::new(AsideReplayed { ok: true, outcome })),
            Err(e) => Response::failed(e.to_string()),
        }),
        Request::DeadLetterPurge { ids } => queue
            .purge_dead_letter(ids.as_deref())
            .map(|n| Response::Purged(Purged { ok: true, purged: n })),
        Request::QuarantinePurge { through } => queue
            .purge_quarantine(*through)
            .map(|n| Response::Purged(Purged { ok: true, purged: n })),
        Request::QuarantineReplay { through, dry_run } => match intake {
            Some((rules, metrics)) => crate::source::replay_quarantine(queue, rules, metrics, *through, *dry_run).map(|r| {
                Response::QuarantineReplayed(QuarantineReplayed {
                    ok: true,
                    requeued: r.requeued,
                    still_rejected: r.still_rejected,
                })
            }),
            None => Ok(Response::failed(
                "replaying the quarantine applies the current intake rules (sources.max_event_bytes, transform): run it with the agent running, or with a --config that loads in full",
            )),
        },
        Request::Status | Request::Tap { .. } => Ok(Response::failed(
            "no agent is running: `top` and `tap` show a running agent; start it with `sendauth-siem run`",
        )),
    };
    out(&r.unwrap_or_else(|e| Response::failed(e.to_string())));
}

/// Binds the admin socket with mode 0600 (created under a temporary name first).
pub fn bind(queue_path: &Path) -> std::io::Result<UnixListener> {
    let path = socket_path(queue_path);
    let _ = std::fs::remove_file(&path);
    let tmp = queue_path.join(format!(".admin.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let l = UnixListener::bind(&tmp)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
    std::fs::rename(&tmp, &path)?;
    Ok(l)
}

pub async fn serve(
    listener: UnixListener,
    queue: Queue,
    status: Arc<StatusHub>,
    config: tokio::sync::watch::Receiver<Arc<crate::settings::Config>>,
    mut shutdown: Shutdown,
) {
    loop {
        let (stream, _) = tokio::select! {
            _ = shutdown.wait() => break,
            r = listener.accept() => match r {
                Ok(s) => s,
                // EMFILE and friends: back off briefly instead of spinning.
                Err(_) => {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let queue = queue.clone();
        let status = status.clone();
        let shutdown = shutdown.clone();
        let rules = config.borrow().intake_rules();
        tokio::spawn(async move {
            let (rd, mut wr) = stream.into_split();
            let mut lines = BufReader::new(rd.take(64 * 1024)).lines();
            if let Ok(Ok(Some(line))) = tokio::time::timeout(std::time::Duration::from_secs(10), lines.next_line()).await {
                let req = match serde_json::from_str::<Request>(&line) {
                    Ok(req) => req,
                    Err(e) => {
                        let _ = wr.write_all(&line_of(&Response::failed(format!("bad request: {e}")))).await;
                        return;
                    }
                };
                match req {
                    Request::Status => {
                        let answer = Response::Status(Box::new(StatusAnswer {
                            ok: true,
                            status: status.snapshot(),
                            counters: status.counters(),
                        }));
                        let _ = wr.write_all(&line_of(&answer)).await;
                        return;
                    }
                    Request::Tap { limit } => {
                        tracing::info!(target: "admin", "tap started (limit {limit})");
                        let rd = lines.into_inner().into_inner().into_inner();
                        tap(&status, limit, rd, wr, shutdown).await;
                        return;
                    }
                    _ => {}
                }
                tracing::info!(target: "admin", "admin command: {line}");
                // The answer is written as it is produced, from a blocking thread (the queue's
                // calls block); a reader that stops reading for 30 s ends it.
                let Ok(stream) = lines.into_inner().into_inner().into_inner().reunite(wr) else {
                    return;
                };
                let Ok(stream) = stream.into_std() else { return };
                let q = queue.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    use std::io::Write;
                    if stream.set_nonblocking(false).is_err() || stream.set_write_timeout(Some(std::time::Duration::from_secs(30))).is_err()
                    {
                        return;
                    }
                    let mut w = std::io::BufWriter::new(stream);
                    execute(&q, &req, Some((&rules, &status.metrics)), &mut |v| {
                        serde_json::to_writer(&mut w, v).is_ok() && w.write_all(b"\n").is_ok()
                    });
                    let _ = w.flush();
                })
                .await;
            }
        });
    }
    drop(listener);
}

use tokio::io::AsyncReadExt;

/// One answer line, newline included.
fn line_of(r: &Response) -> Vec<u8> {
    let mut v = serde_json::to_vec(r).unwrap_or_default();
    v.push(b'\n');
    v
}

/// Streams tapped events to one viewer until `limit`, the viewer leaves, or the agent stops.
/// Async all the way: a viewer that reads slowly only makes it skip events (see `tap`).
async fn tap(
    status: &StatusHub,
    limit: usize,
    mut rd: tokio::net::unix::OwnedReadHalf,
    mut wr: tokio::net::unix::OwnedWriteHalf,
    mut shutdown: Shutdown,
) {
    use tokio::sync::broadcast::error::RecvError;
    let mut rx = status.tap.subscribe();
    let mut listed = 0usize;
    let mut gone = [0u8; 1];
    if wr.write_all(&line_of(&Response::head(limit as u64))).await.is_err() {
        return;
    }
    while listed < limit {
        let line = tokio::select! {
            _ = shutdown.wait() => break,
            // The viewer closed its end (Ctrl-C): stop at once.
            _ = rd.read(&mut gone) => return,
            r = rx.recv() => match r {
                Ok(t) => {
                    listed += 1;
                    let event = serde_json::from_slice::<serde_json::Value>(&t.event)
                        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&t.event).into_owned()));
                    Response::Tapped(TapLine { event, source: t.source.to_string() })
                }
                Err(RecvError::Lagged(n)) => Response::Skipped(Skipped { skipped: n }),
                Err(RecvError::Closed) => break,
            },
        };
        let text = line_of(&line);
        let write = wr.write_all(&text);
        if !matches!(tokio::time::timeout(std::time::Duration::from_secs(30), write).await, Ok(Ok(()))) {
            return;
        }
    }
    let _ = wr.write_all(&line_of(&Response::end(listed as u64))).await;
}

/// Client side: sends one request to a running agent and gives each answer line to `on_line`
/// as it arrives. `Ok(false)` means no agent is listening.
pub fn call(queue_path: &Path, req: &Request, on_line: &mut dyn FnMut(Response)) -> std::io::Result<bool> {
    use std::io::{BufRead, Write};
    let path = socket_path(queue_path);
    let mut s = match std::os::unix::net::UnixStream::connect(&path) {
        Ok(s) => s,
        Err(e) if matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused) => return Ok(false),
        Err(e) => return Err(e),
    };
    s.set_read_timeout(Some(std::time::Duration::from_secs(120)))?;
    let mut line = serde_json::to_vec(req)?;
    line.push(b'\n');
    s.write_all(&line)?;
    let mut streaming = false;
    for line in std::io::BufReader::new(s).lines() {
        let line = line?;
        let r: Response = serde_json::from_str(&line).map_err(|e| {
            std::io::Error::other(format!(
                "the agent answered a line this sendauth-siem does not understand ({e}): {}; are the agent and this command the same version?",
                line.chars().take(200).collect::<String>()
            ))
        })?;
        let ends = r.ends_answer(streaming);
        streaming |= matches!(r, Response::Head(_));
        on_line(r);
        if ends {
            return Ok(true);
        }
    }
    Err(std::io::Error::other(format!(
        "the agent closed the admin socket {} before the end of its answer; see the agent's log",
        path.display()
    )))
}
