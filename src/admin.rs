//! The admin socket: mutating operator commands (`dead-letter replay/purge`) and listings,
//! for the running agent.
//!
//! A Unix socket at `<queue.path>/admin.sock`, mode 0600: only the agent's own user (the
//! "admin role") can connect. One JSON request line in, one JSON answer line out. With no agent
//! running, the CLI opens the queue directly and runs the same [`execute`].

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;

use crate::queue::Queue;
use crate::shutdown::Shutdown;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    DeadLetterList { limit: Option<usize> },
    DeadLetterReplay { ids: Option<Vec<u64>> },
    DeadLetterPurge { ids: Option<Vec<u64>> },
    QuarantineList { limit: Option<usize> },
    AsideReplay { name: String, dry_run: bool },
}

/// The longest `queue.path` (in bytes) that leaves room for the admin socket's temporary name,
/// `<queue.path>/.admin.<pid>.tmp`, within the 107 usable bytes of a Unix socket path
/// (`sun_path` is 108 bytes with its NUL; Linux pids have at most 7 digits).
pub const MAX_QUEUE_PATH_BYTES: usize = 107 - "/.admin.".len() - 7 - ".tmp".len();

pub fn socket_path(queue_path: &Path) -> PathBuf {
    queue_path.join("admin.sock")
}

fn text_of(data: &[u8]) -> Value {
    match std::str::from_utf8(data) {
        Ok(s) => Value::String(s.to_string()),
        Err(_) => Value::String(String::from_utf8_lossy(data).into_owned()),
    }
}

/// Runs a request against the queue.
pub fn execute(queue: &Queue, req: &Request) -> Value {
    let r = match req {
        Request::DeadLetterList { limit } => queue.list_dead_letter(limit.unwrap_or(1000)).map(|es| {
            let entries: Vec<Value> = es
                .iter()
                .map(|e| json!({"id": e.id, "at": e.meta.at, "reason": e.meta.reason, "http_status": e.meta.http_status, "original_seq": e.meta.original_seq, "event": text_of(&e.data)}))
                .collect();
            json!({"ok": true, "entries": entries, "total": queue.counts().dead_letter})
        }),
        Request::QuarantineList { limit } => queue.list_quarantine(limit.unwrap_or(1000)).map(|es| {
            let entries: Vec<Value> = es
                .iter()
                .map(|e| json!({"id": e.id, "at": e.meta.at, "origin": e.meta.origin, "reason": e.meta.reason, "len": e.meta.len, "line": text_of(&e.data)}))
                .collect();
            json!({"ok": true, "entries": entries, "total": queue.counts().quarantine})
        }),
        Request::DeadLetterReplay { ids } => queue
            .replay_dead_letter(ids.as_deref())
            .map(|n| json!({"ok": true, "replayed": n})),
        // `aside replay`: re-queue what a moved-aside store holds (see `queue::aside`).
        Request::AsideReplay { name, dry_run } => Ok(crate::queue::aside::replay_json(queue, name, *dry_run)),
        Request::DeadLetterPurge { ids } => queue
            .purge_dead_letter(ids.as_deref())
            .map(|n| json!({"ok": true, "purged": n})),
    };
    r.unwrap_or_else(|e| json!({"ok": false, "error": e.to_string()}))
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

pub async fn serve(listener: UnixListener, queue: Queue, mut shutdown: Shutdown) {
    loop {
        let (stream, _) = tokio::select! {
            _ = shutdown.wait() => break,
            r = listener.accept() => match r { Ok(s) => s, Err(_) => continue },
        };
        let queue = queue.clone();
        tokio::spawn(async move {
            let (rd, mut wr) = stream.into_split();
            let mut lines = BufReader::new(rd.take(64 * 1024)).lines();
            if let Ok(Ok(Some(line))) = tokio::time::timeout(std::time::Duration::from_secs(10), lines.next_line()).await {
                let answer = match serde_json::from_str::<Request>(&line) {
                    Ok(req) => {
                        tracing::info!(target: "admin", "admin command: {line}");
                        let q = queue.clone();
                        tokio::task::spawn_blocking(move || execute(&q, &req))
                            .await
                            .unwrap_or_else(|e| json!({"ok": false, "error": e.to_string()}))
                    }
                    Err(e) => json!({"ok": false, "error": format!("bad request: {e}")}),
                };
                let mut out = serde_json::to_vec(&answer).unwrap_or_default();
                out.push(b'\n');
                let _ = wr.write_all(&out).await;
            }
        });
    }
    drop(listener);
}

use tokio::io::AsyncReadExt;

/// Client side: sends one request to a running agent. `Ok(None)` means no agent is listening.
pub fn call(queue_path: &Path, req: &Request) -> std::io::Result<Option<Value>> {
    use std::io::{BufRead, Write};
    let path = socket_path(queue_path);
    let mut s = match std::os::unix::net::UnixStream::connect(&path) {
        Ok(s) => s,
        Err(e) if matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused) => return Ok(None),
        Err(e) => return Err(e),
    };
    s.set_read_timeout(Some(std::time::Duration::from_secs(120)))?;
    let mut line = serde_json::to_vec(req)?;
    line.push(b'\n');
    s.write_all(&line)?;
    let mut answer = String::new();
    std::io::BufReader::new(s).read_line(&mut answer)?;
    Ok(Some(serde_json::from_str(&answer).map_err(std::io::Error::other)?))
}
