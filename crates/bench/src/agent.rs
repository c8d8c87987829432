//! The agent under test: `sendauth-siem run` as a child process, configured for one phase
//! (generic platform, a temp queue, a status listener for `/health`, `/status` and
//! `/metrics`), and what the bench reads from its status listener.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::Value;

use crate::process::{proc_stats, Proc, ProcStats};

pub(crate) struct AgentSetup<'a> {
    /// The agent binary.
    pub(crate) exe: &'a Path,
    pub(crate) dir: &'a Path,
    pub(crate) receiver: SocketAddr,
    pub(crate) file: Option<&'a Path>,
    pub(crate) socket: Option<&'a Path>,
    pub(crate) extra: Option<&'a str>,
    /// `siem.generic.batch`: `ndjson` in every phase but the generic half of `rtt` (`none`, the
    /// product default: one event per request).
    pub(crate) batch: &'a str,
}

pub(crate) struct Agent {
    pub(crate) proc: Proc,
    pub(crate) status: SocketAddr,
}

/// The agent binary: `explicit` if given, else `sendauth-siem` beside this binary (both are
/// built into `target/<profile>/`). Checked before any phase starts.
pub(crate) fn locate(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    let path = match explicit {
        Some(p) => p.to_path_buf(),
        None => {
            let me = std::env::current_exe().context("cannot find this binary's own path; pass the agent with --agent PATH")?;
            me.with_file_name("sendauth-siem")
        }
    };
    if !path.is_file() {
        bail!(
            "the agent binary {} does not exist; build it (cargo build --release) or pass --agent PATH",
            path.display()
        );
    }
    Ok(path)
}

pub(crate) fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

pub(crate) fn spawn_agent(s: &AgentSetup) -> anyhow::Result<Agent> {
    let status: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
    let mut y = format!(
        "siem:\n  url: http://{}/ingest\n  platform: generic\n  generic:\n    batch: {}\nsources:\n",
        s.receiver, s.batch
    );
    if let Some(f) = s.file {
        y.push_str(&format!("  file:\n    path: {}\n    start_at: beginning\n", f.display()));
    }
    if let Some(p) = s.socket {
        y.push_str(&format!("  socket:\n    path: {}\n", p.display()));
    }
    y.push_str(&format!(
        "queue:\n  path: {}\n  max_bytes: 8GiB\nstatus:\n  listen: {status}\nlog:\n  level: warn\n",
        s.dir.join("queue").display()
    ));
    if let Some(x) = s.extra {
        y.push_str(x);
        y.push('\n');
    }
    // As deployed (/etc/sendauth-siem vs /var/log/sendauth): the config watcher watches its
    // directory and would wake for every line appended to an events file beside it.
    let etc = s.dir.join("etc");
    std::fs::create_dir_all(&etc)?;
    let config = etc.join("config.yaml");
    std::fs::write(&config, y)?;
    let mut cmd = Command::new(s.exe);
    cmd.arg("run").arg("--config").arg(&config).env_remove("RUST_LOG");
    let proc = Proc::spawn(cmd, &s.dir.join("agent.log"))?;
    Ok(Agent { proc, status })
}

/// One HTTP/1.0 GET on the agent's status listener; the body, if the answer was 200.
fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status_line = head.lines().next().unwrap_or("");
    (status_line.split_whitespace().nth(1) == Some("200")).then(|| body.to_string())
}

impl Agent {
    pub(crate) fn wait_healthy(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if !self.proc.alive() {
                bail!("the agent exited during start-up:\n{}", self.proc.log_tail());
            }
            if http_get(self.status, "/health").is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        bail!("the agent did not answer /health within {timeout:?}:\n{}", self.proc.log_tail())
    }

    /// Waits until the queue is empty (every delivered event acknowledged).
    pub(crate) fn wait_drained(&mut self, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            let pending = http_get(self.status, "/status")
                .and_then(|b| serde_json::from_str::<Value>(&b).ok())
                .and_then(|v| v["queue"]["pending"].as_u64());
            if pending == Some(0) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    }

    pub(crate) fn stats(&self) -> anyhow::Result<ProcStats> {
        proc_stats(self.proc.pid)
    }
}

/// `sendauth_siem_queue_fdatasyncs_total` from the agent's `/metrics`, if it has the counter.
pub(crate) fn scrape_fdatasyncs(status: SocketAddr) -> Option<u64> {
    metric_value(&http_get(status, "/metrics")?, "sendauth_siem_queue_fdatasyncs_total")
}

/// The value of an unlabelled metric in Prometheus text.
fn metric_value(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .filter_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .find_map(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_value_reads_an_unlabelled_counter() {
        let text = "# HELP sendauth_siem_queue_fdatasyncs_total x\n# TYPE sendauth_siem_queue_fdatasyncs_total counter\n\
                    sendauth_siem_queue_fdatasyncs_total_other 9\nsendauth_siem_queue_fdatasyncs_total 42\n";
        assert_eq!(metric_value(text, "sendauth_siem_queue_fdatasyncs_total"), Some(42));
        assert_eq!(metric_value(text, "sendauth_siem_missing"), None);
    }
}
