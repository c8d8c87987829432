//! Process figures from `/proc` (CPU seconds, peak and current RSS, context switches as a proxy
//! for wake-ups, CPU per thread name), the machine's description, and [`Proc`]: the process
//! under test, a child stopped with SIGTERM (then SIGKILL) when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{json, Value};

/// A snapshot of a process's CPU time and memory.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcStats {
    /// utime + stime, seconds.
    pub cpu_s: f64,
    pub vm_hwm_kib: u64,
    pub vm_rss_kib: u64,
    /// Context switches summed over the process's threads (a proxy for wakeups).
    pub ctx_switches: u64,
}

pub fn proc_stats(pid: u32) -> anyhow::Result<ProcStats> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("cannot read /proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) start at field 3 (state).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // utime is field 14, stime field 15: indexes 11 and 12 counting from field 3.
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let cpu_s = (ticks(11) + ticks(12)) as f64 / hz;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    let mut ctx = 0;
    if let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in rd.flatten() {
            let s = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
            for l in s.lines() {
                if let Some(v) = l
                    .strip_prefix("voluntary_ctxt_switches:")
                    .or_else(|| l.strip_prefix("nonvoluntary_ctxt_switches:"))
                {
                    ctx += v.trim().parse::<u64>().unwrap_or(0);
                }
            }
        }
    }
    Ok(ProcStats {
        cpu_s,
        vm_hwm_kib: kib("VmHWM:"),
        vm_rss_kib: kib("VmRSS:"),
        ctx_switches: ctx,
    })
}

/// CPU seconds per thread name of a process (digits stripped: `sled-io-3` counts as `sled-io`).
pub fn thread_cpu(pid: u32) -> std::collections::BTreeMap<String, f64> {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let mut out = std::collections::BTreeMap::new();
    if let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in rd.flatten() {
            let Ok(stat) = std::fs::read_to_string(t.path().join("stat")) else {
                continue;
            };
            let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
                continue;
            };
            let name = stat[open + 1..close]
                .trim_end_matches(|c: char| c.is_ascii_digit() || c == '-')
                .to_string();
            let f: Vec<&str> = stat[close + 1..].split_whitespace().collect();
            let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            *out.entry(name).or_insert(0.0) += (ticks(11) + ticks(12)) as f64 / hz;
        }
    }
    out
}

pub(crate) fn thread_cpu_delta(
    before: &std::collections::BTreeMap<String, f64>,
    after: &std::collections::BTreeMap<String, f64>,
    secs: f64,
) -> Value {
    let mut v = serde_json::Map::new();
    for (k, a) in after {
        let d = a - before.get(k).copied().unwrap_or(0.0);
        if d > 0.0 {
            v.insert(k.clone(), json!((d / secs * 1000.0).round() / 10.0));
        }
    }
    Value::Object(v)
}

/// The 1-minute load average, to spot runs disturbed by other work on the machine.
pub fn loadavg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(f64::NAN)
}

pub(crate) fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Machine description for the report.
pub fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .and_then(|r| r.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let nproc = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    json!({"nproc": nproc, "cpu_model": model, "kernel": kernel})
}

/// A child process under test, stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Proc {
    pub child: Child,
    pub pid: u32,
    pub log: PathBuf,
}

impl Proc {
    pub fn spawn(mut cmd: Command, log: &Path) -> anyhow::Result<Proc> {
        let logf = std::fs::File::create(log)?;
        cmd.stdin(Stdio::null()).stdout(logf.try_clone()?).stderr(logf);
        let child = cmd.spawn().with_context(|| format!("cannot start {cmd:?}"))?;
        Ok(Proc {
            pid: child.id(),
            child,
            log: log.to_path_buf(),
        })
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The last lines of its log, for error messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// SIGTERM, then SIGKILL after `grace`.
    pub fn stop(&mut self, grace: Duration) {
        if !self.alive() {
            return;
        }
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(self.pid as i32, libc::SIGTERM) };
        let end = Instant::now() + grace;
        while Instant::now() < end {
            if !self.alive() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stats_reads_this_process() {
        let s = proc_stats(std::process::id()).unwrap();
        assert!(s.vm_hwm_kib > 0 && s.vm_rss_kib > 0);
    }
}
