//! The socket source: a Unix stream socket speaking NDJSON, for auth servers that prefer not
//! to write a file.
//!
//! Protocol (docs/CONTRACT.md, "Socket protocol"): any number of lines per connection, any number of concurrent
//! connections. When the client shuts down its write side, the agent answers one line,
//! `{"accepted":N,"rejected":M}`, once every accepted event is durable, then closes. When the
//! queue is full, the lines of that chunk are refused with
//! `{"error":"queue full","refused":K,"first_line":L,...}` and counted in the final answer as
//! `"refused"`.
//!
//! Isolation: each connection has its own task and a buffer bounded by
//! `sources.max_event_bytes` (an endless line is quarantined by its prefix and skipped);
//! `max_connections` caps concurrent clients (extra ones get an error line and are closed);
//! a client idle for `idle_timeout` is closed after what it sent is committed. A writer waits
//! at most for a local disk append; it never waits on the network (ARCHITECTURE.md invariant 5).
//!
//! Reloads ([`Control`]) never cut a connected writer: the source runs for the agent's lifetime,
//! connections read their settings (`max_event_bytes`, `transform`, `idle_timeout`) afresh for
//! each chunk (the line framer keeps the limit the connection started with), and a new path or
//! mode is bound by the supervisor before this source swaps listeners, so writers never find the
//! socket missing.
//!
//! The socket file is created under a temporary name, given its mode, then renamed into place,
//! so it is never reachable with looser permissions. A stale socket left by a crashed run is
//! replaced; a live one (another agent answering) is an error.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinSet;

use crate::queue::{Queue, QueueError};
use crate::shutdown::Shutdown;
use crate::source::intake::{Intake, SourceKind};
use crate::source::lines::{Frame, LineFramer};
use crate::source::settings::SocketSourceConfig;
use crate::source::IntakeRules;
use crate::status::{SocketSourceStatus, StatusHub};

/// Most bytes of one connection committed together (what was already waiting in the socket).
const READ_AHEAD_BYTES: usize = 256 * 1024;
/// How long a refusal line may wait for a writer that does not read (see `write_refusal`).
const REFUSAL_WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// Read-ahead is used while at most this many clients are connected (bounds its memory).
const READ_AHEAD_MAX_CONNECTIONS: u64 = 16;

/// Most lines validated and committed at once per connection.
const MAX_LINES_PER_COMMIT: usize = 8192;

#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("sources.socket.path: {path}: another process is listening on this socket (a second agent?); stop it or choose another path")]
    InUse { path: PathBuf },
    // `io`, not `source`: the message already quotes it, and a chained `{:#}` would repeat it.
    #[error("sources.socket.path: cannot create socket {path}: {io}; check that the directory exists and is writable")]
    Bind { path: PathBuf, io: std::io::Error },
}

/// Binds the socket safely (see the module docs). `ours`: the socket at `path` (if any) is this
/// agent's own, being replaced by a reload: the new one takes its place in one `rename`, so
/// writers never find the path missing.
pub fn bind(path: &Path, mode: u32, ours: bool) -> Result<UnixListener, SocketError> {
    if path.exists() && !ours {
        match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => return Err(SocketError::InUse { path: path.to_path_buf() }),
            Err(_) => {
                tracing::info!(target: "source::socket", path = %path.display(), "replacing a stale socket file left by a previous run");
                let _ = std::fs::remove_file(path);
            }
        }
    }
    let tmp = path.with_file_name(format!(
        ".{}.{}.tmp",
        path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default(),
        std::process::id()
    ));
    let _ = std::fs::remove_file(&tmp);
    let err = |io| SocketError::Bind {
        path: path.to_path_buf(),
        io,
    };
    let listener = UnixListener::bind(&tmp).map_err(err)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode)).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)?;
    Ok(listener)
}

/// What a connection reads for each chunk: reloads change it for connected writers too.
#[derive(Clone)]
pub struct ConnSettings {
    pub rules: IntakeRules,
    pub idle_timeout: std::time::Duration,
}

/// A config reload's instruction to the running socket source ([`serve`]). None of them cuts a
/// connected writer: connections keep their stream and follow the new settings from their next
/// chunk.
pub enum Control {
    /// New settings for every connection; `max_connections` applies to new ones.
    Settings { cfg: SocketSourceConfig, conn: ConnSettings },
    /// Accept on this listener from now on (already bound, at `cfg.path`, by [`bind`]); the old
    /// listener stops accepting, and its file is removed if the path changed.
    Listen {
        listener: UnixListener,
        cfg: SocketSourceConfig,
        conn: ConnSettings,
    },
    /// Stop accepting and remove the socket file (the source was removed from the config).
    /// Connected writers continue until they close, go idle, or the agent stops.
    StopListening,
}

/// Serves the socket until the agent shuts down (or, after [`Control::StopListening`], until
/// its last connection ends). Connections in progress finish their current chunk and get their
/// answer line before the function returns.
pub async fn serve(
    listener: UnixListener,
    cfg: SocketSourceConfig,
    conn_settings: ConnSettings,
    mut control: tokio::sync::mpsc::UnboundedReceiver<Control>,
    queue: Queue,
    status: Arc<StatusHub>,
    mut shutdown: Shutdown,
) {
    let (settings_tx, settings) = tokio::sync::watch::channel(conn_settings);
    let mut l = Listener {
        shown: cfg.path.display().to_string(),
        cfg: capped(cfg),
        listener: Some(listener),
        settings_tx,
        settings,
        active: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
        conns: JoinSet::new(),
        next_id: 0,
        accept_warned: None,
        queue,
        status,
        shutdown: shutdown.clone(),
    };
    let mut control_open = true;
    tracing::info!(target: "source::socket", path = %l.shown, mode = format!("{:o}", l.cfg.mode), "listening");
    publish(&l.status, &l.cfg, 0);
    loop {
        tokio::select! {
            _ = shutdown.wait() => break,
            Some(_) = l.conns.join_next(), if !l.conns.is_empty() => {
                if l.listener.is_none() && l.conns.is_empty() {
                    break;
                }
            }
            cmd = control.recv(), if control_open => {
                // A closed channel (the supervisor let go of this source) means StopListening;
                // it is not polled again.
                control_open &= cmd.is_some();
                if l.apply(cmd.unwrap_or(Control::StopListening)) {
                    break;
                }
            }
            accepted = async { l.listener.as_ref().expect("guarded").accept().await }, if l.listener.is_some() => {
                match accepted {
                    Ok((stream, _)) => l.admit(stream),
                    Err(e) => l.accept_failed(e).await,
                }
            }
        }
        if l.listener.is_some() {
            publish(&l.status, &l.cfg, l.status.metrics.socket_connections.load(Ordering::Relaxed));
        }
    }
    if l.listener.take().is_some() {
        let _ = std::fs::remove_file(&l.cfg.path);
    }
    // Let connections finish what they are committing (they stop reading on shutdown).
    while l.conns.join_next().await.is_some() {}
    l.status.set_socket_source(None);
    tracing::info!(target: "source::socket", path = %l.shown, "socket closed");
}

/// Only as many clients as the open-file limit holds beside the agent's own files (logged with
/// what to change when fewer than configured): see `fd_limit`.
fn capped(mut cfg: SocketSourceConfig) -> SocketSourceConfig {
    cfg.max_connections = crate::fd_limit::cap_connections(cfg.max_connections);
    cfg
}

/// The accepting side of the socket source: the listener, the settings connections follow,
/// and the connections themselves.
struct Listener {
    /// The settings in force (`max_connections` capped by the open-file limit).
    cfg: SocketSourceConfig,
    /// Where new writers connect; `None` once the source was removed from the config (writers
    /// already connected continue).
    listener: Option<UnixListener>,
    /// The socket's path as logs and peer names show it.
    shown: String,
    /// Publishes new per-connection settings; every connection follows from its next chunk.
    settings_tx: tokio::sync::watch::Sender<ConnSettings>,
    /// What each new connection starts from.
    settings: tokio::sync::watch::Receiver<ConnSettings>,
    /// Connections open now, against `max_connections`.
    active: Arc<std::sync::atomic::AtomicUsize>,
    /// The connections' tasks: joined at the end, so each finishes its chunk and answer.
    conns: JoinSet<()>,
    /// The last connection's id (for logs).
    next_id: u64,
    /// When a failed `accept` was last logged (once a minute at most).
    accept_warned: Option<std::time::Instant>,
    queue: Queue,
    status: Arc<StatusHub>,
    shutdown: Shutdown,
}

impl Listener {
    /// Applies a reload's instruction; `true` when the source is done (stopped listening and
    /// no connection is left).
    fn apply(&mut self, cmd: Control) -> bool {
        match cmd {
            Control::Settings { cfg: new, conn } => {
                self.cfg = capped(new);
                let _ = self.settings_tx.send(conn);
            }
            Control::Listen {
                listener: l,
                cfg: new,
                conn,
            } => {
                // The new socket is already in place (bound before this old one stops), so
                // writers never find no socket; the old file goes only if it moved.
                if self.listener.is_some() && new.path != self.cfg.path {
                    let _ = std::fs::remove_file(&self.cfg.path);
                }
                self.listener = Some(l);
                self.cfg = capped(new);
                self.shown = self.cfg.path.display().to_string();
                let _ = self.settings_tx.send(conn);
                tracing::info!(target: "source::socket", path = %self.shown, mode = format!("{:o}", self.cfg.mode), "listening (config changed; connected writers keep their connections)");
            }
            Control::StopListening => {
                if self.listener.take().is_some() {
                    let _ = std::fs::remove_file(&self.cfg.path);
                    tracing::info!(target: "source::socket", path = %self.shown, connections = self.conns.len(), "stopped accepting (removed from the config); connected writers continue until they close");
                }
                return self.conns.is_empty();
            }
        }
        false
    }

    /// EMFILE and friends: back off briefly instead of spinning, keep serving, and say so once
    /// a minute rather than 20 times a second.
    async fn accept_failed(&mut self, e: std::io::Error) {
        if self
            .accept_warned
            .is_none_or(|t: std::time::Instant| t.elapsed() >= std::time::Duration::from_secs(60))
        {
            self.accept_warned = Some(std::time::Instant::now());
            tracing::warn!(target: "source::socket", "accept failed: {e}; retrying (out of file descriptors? see sources.socket.max_connections and the open-file limit)");
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    /// A new writer: refused with a JSON line when `max_connections` are open, else served by
    /// its own task.
    fn admit(&mut self, mut stream: UnixStream) {
        self.next_id += 1;
        let max = self.cfg.max_connections;
        if self.active.load(Ordering::Acquire) >= max {
            let msg = format!("{{\"error\":\"too many connections\",\"max_connections\":{max},\"hint\":\"retry later or raise sources.socket.max_connections\"}}\n");
            tokio::spawn(async move {
                let _ = tokio::time::timeout(std::time::Duration::from_secs(1), stream.write_all(msg.as_bytes())).await;
            });
            tracing::warn!(target: "source::socket", max, "refused a connection: sources.socket.max_connections reached");
            return;
        }
        let conn = Conn {
            id: self.next_id,
            peer: peer_name(&stream, &self.shown),
            settings: self.settings.clone(),
            queue: self.queue.clone(),
            status: self.status.clone(),
            shutdown: self.shutdown.clone(),
        };
        self.active.fetch_add(1, Ordering::AcqRel);
        self.status.metrics.socket_connections.fetch_add(1, Ordering::Relaxed);
        let (st, active) = (self.status.clone(), self.active.clone());
        self.conns.spawn(async move {
            conn.run(stream).await;
            st.metrics.socket_connections.fetch_sub(1, Ordering::Relaxed);
            active.fetch_sub(1, Ordering::AcqRel);
        });
    }
}

fn publish(status: &StatusHub, cfg: &SocketSourceConfig, conns: u64) {
    status.set_socket_source(Some(SocketSourceStatus {
        path: cfg.path.display().to_string(),
        connections: conns,
        max_connections: cfg.max_connections as u64,
    }));
}

fn peer_name(stream: &UnixStream, shown: &str) -> String {
    match stream.peer_cred() {
        Ok(c) => match c.pid() {
            Some(pid) => format!("socket {shown} (pid {pid}, uid {})", c.uid()),
            None => format!("socket {shown} (uid {})", c.uid()),
        },
        Err(_) => format!("socket {shown}"),
    }
}

struct Conn {
    id: u64,
    peer: String,
    settings: tokio::sync::watch::Receiver<ConnSettings>,
    queue: Queue,
    status: Arc<StatusHub>,
    shutdown: Shutdown,
}

#[derive(Default)]
struct Tally {
    accepted: u64,
    rejected: u64,
    refused: u64,
    lines: u64,
}

impl Conn {
    async fn run(mut self, stream: UnixStream) {
        let (mut rd, mut wr) = stream.into_split();
        let mut framer = LineFramer::new(self.settings.borrow().rules.max_event_bytes, 0);
        let mut tally = Tally::default();
        let mut buf = vec![0u8; 64 * 1024];
        let mut reason_closed = "end of stream";
        loop {
            let idle_timeout = self.settings.borrow().idle_timeout;
            let read = tokio::select! {
                r = tokio::time::timeout(idle_timeout, rd.read(&mut buf)) => r,
                _ = self.shutdown.wait() => { reason_closed = "agent shutting down"; break; }
            };
            let n = match read {
                Err(_) => {
                    reason_closed = "idle timeout";
                    break;
                }
                Ok(Err(e)) => {
                    tracing::debug!(target: "source::socket", conn = self.id, "read error: {e}");
                    reason_closed = "read error";
                    break;
                }
                Ok(Ok(0)) => break,
                Ok(Ok(n)) => n,
            };
            let mut frames = Vec::new();
            framer.push(&buf[..n], &mut frames);
            // Take what the writer has already sent too (up to READ_AHEAD_BYTES), so one
            // commit, and one fdatasync, covers it: a streaming writer needs fewer of them.
            // Only while few clients are connected: with many, their chunks are group-committed
            // together anyway, and memory stays at one read buffer per connection.
            let read_ahead = if self.status.metrics.socket_connections.load(Ordering::Relaxed) <= READ_AHEAD_MAX_CONNECTIONS {
                READ_AHEAD_BYTES
            } else {
                0
            };
            let mut taken = n;
            let mut at_eof = false;
            while taken < read_ahead {
                match rd.try_read(&mut buf) {
                    Ok(0) => {
                        at_eof = true;
                        break;
                    }
                    Ok(m) => {
                        framer.push(&buf[..m], &mut frames);
                        taken += m;
                    }
                    // WouldBlock: nothing more yet; another error: the next read reports it.
                    Err(_) => break,
                }
            }
            // Committed in slices: a flood of tiny lines must not build ~100k quarantine
            // entries (or events) at once.
            for slice in frames.chunks(MAX_LINES_PER_COMMIT) {
                if let Some(err_line) = self.commit(slice.to_vec(), &mut tally).await {
                    if !self.write_refusal(&mut wr, &err_line).await {
                        return;
                    }
                }
            }
            if at_eof {
                break;
            }
        }
        if reason_closed == "end of stream" {
            if let Some(last) = framer.finish() {
                if let Some(err_line) = self.commit(vec![last], &mut tally).await {
                    let _ = self.write_refusal(&mut wr, &err_line).await;
                }
            }
        }
        let answer = if tally.refused > 0 {
            format!(
                "{{\"accepted\":{},\"rejected\":{},\"refused\":{}}}\n",
                tally.accepted, tally.rejected, tally.refused
            )
        } else {
            format!("{{\"accepted\":{},\"rejected\":{}}}\n", tally.accepted, tally.rejected)
        };
        // Writers that never read the answer lose nothing: their events are already durable.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), async {
            let _ = wr.write_all(answer.as_bytes()).await;
            let _ = wr.shutdown().await;
        })
        .await;
        tracing::debug!(target: "source::socket", conn = self.id, accepted = tally.accepted, rejected = tally.rejected, "connection closed ({reason_closed})");
    }

    /// Writes a refusal line to a writer that may never read it: gives up after
    /// [`REFUSAL_WRITE_TIMEOUT`] or at shutdown, and then the connection is dropped. The lines it
    /// refers to were refused, never accepted, so nothing is lost; and a writer that floods
    /// without reading can no longer hold up a stop or a reload of the socket source.
    async fn write_refusal(&mut self, wr: &mut tokio::net::unix::OwnedWriteHalf, line: &str) -> bool {
        let written = tokio::select! {
            r = tokio::time::timeout(REFUSAL_WRITE_TIMEOUT, wr.write_all(line.as_bytes())) => matches!(r, Ok(Ok(()))),
            _ = self.shutdown.wait() => false,
        };
        if !written {
            tracing::warn!(target: "source::socket", conn = self.id, peer = %self.peer, "dropped a connection that does not read the agent's answers (queue full: its lines were refused, not accepted)");
        }
        written
    }

    /// Commits a chunk; returns an error line for the client if it was refused.
    async fn commit(&mut self, frames: Vec<Frame>, tally: &mut Tally) -> Option<String> {
        let first_line = tally.lines + 1;
        let n = frames.len() as u64;
        let peer = self.peer.clone();
        let mut origin = |i: usize, _f: &Frame| format!("{peer} conn #{} line {}", self.id, first_line + i as u64);
        // The settings of this moment: a reload applies to connected writers from their next chunk.
        let rules = self.settings.borrow().rules.clone();
        let intake = Intake {
            status: &self.status,
            kind: SourceKind::Socket,
        };
        let prepared = intake.prepare(frames, &rules, &mut origin, None, None);
        tally.lines += n;
        let (n_events, n_rejected) = (prepared.report.events, prepared.report.rejected);
        match self.queue.append(prepared.request).await {
            Ok(_) => {
                intake.accepted(prepared.report);
                tally.accepted += n_events;
                tally.rejected += n_rejected;
                None
            }
            Err(e) => {
                intake.refused(&e);
                let (kind, hint) = match &e {
                    QueueError::Full { .. } => (
                        "queue full",
                        "the SIEM is not keeping up or is unreachable; these lines were not accepted: resend them later",
                    ),
                    _ => ("storage error", "these lines were not accepted: resend them later"),
                };
                tracing::warn!(target: "source::socket", conn = self.id, lines = n, "refused lines from {}: {e}", self.peer);
                tally.refused += n;
                Some(format!(
                    "{}\n",
                    json!({"error": kind, "refused": n, "first_line": first_line, "last_line": first_line + n - 1, "reason": e.to_string(), "hint": hint})
                ))
            }
        }
    }
}
