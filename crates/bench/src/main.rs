//! `sendauth-siem-bench`: measures the real agent, run as a child process, against an
//! in-process counting receiver on 127.0.0.1.
//!
//! Phases (each with a fresh agent, queue and receiver):
//! 1. **file**: N events are written to a file, then the agent is started on it; throughput is
//!    N over the time from spawning the agent to the last event's arrival at the receiver;
//! 2. **socket**: the agent is started and healthy, then `--socket-connections` writers send N
//!    events over the Unix socket (each reads its `{"accepted":..}` answer);
//! 3. **latency** (steady rates): events are appended to the file at steady rates; the latency of
//!    an event is from the moment its `write()` returned to its arrival at the receiver; per rate
//!    also the agent's CPU %, wake-ups/s and queue fdatasyncs/s, and the receiver's requests,
//!    connections and most requests open at once;
//! 4. **idle**: CPU, wake-ups, fdatasyncs and memory of an agent with both sources and nothing
//!    to do;
//! 5. **rtt**: throughput against a receiver `--rtt` away (default 50 ms), one event per request
//!    (`siem.generic.batch: none`, the product default) and batched (`ndjson`), capped in time.
//!
//! CPU (utime + stime) and peak RSS (VmHWM) come from `/proc/<pid>` of the agent. The agent runs
//! with its defaults except: generic platform, `siem.generic.batch: ndjson` (but for the rtt
//! phase's first half), a temp queue, a status listener (for `/metrics`). The
//! receiver counts events without storing them and records each event's arrival time by its
//! `transaction_id` (`tx-<n>-...`), which also detects duplicates, gaps and reordering.
//!
//! Benchmarks print figures; they never fail on a threshold (the exit code only reflects
//! whether the measurement itself worked: every event arrived, exactly once).
//! The agent is the `sendauth-siem` binary beside this one (`target/<profile>/`, so
//! `cargo build --release` builds both), or `--agent PATH`. A crate of its own so that none of
//! the benchmark is compiled into the product.
//!
//! `sendauth-siem-bench receiver ... -- CMD` exposes the same receiver and measurement for any
//! agent, so `bench/compare-syslog-ng.sh` measures syslog-ng and sendauth-siem the same way;
//! `sendauth-siem-bench gen` writes the events file it uses.
//!
//! Modules: [`events`] (generator), [`receiver`] (counting receiver), [`process`] (`/proc`
//! figures, the child process), [`agent`] (the agent under test), [`steady`] (steady-rate
//! measurement), [`phases`], [`report`], [`external`] (the `receiver` command).

mod agent;
mod events;
mod external;
mod phases;
mod process;
mod receiver;
mod report;
mod steady;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// Measure the sendauth-siem agent (run as a child process) against a local counting receiver:
/// throughput (file, socket), cost and latency at steady rates, idle cost, and throughput with a
/// distant SIEM (rtt). See docs/BENCHMARKS.md.
#[derive(Parser, Debug)]
#[command(name = "sendauth-siem-bench", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(flatten)]
    bench: phases::Options,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// The counting receiver alone, measuring any agent command started after `--`
    /// (bench/compare-syslog-ng.sh).
    Receiver(Box<external::ReceiverOptions>),
    /// Writes the benchmark's events to a file.
    Gen {
        /// How many events.
        #[arg(long)]
        events: u64,
        /// The file to write (created or truncated).
        #[arg(long)]
        out: PathBuf,
    },
}

/// Parses a duration the way the agent's config does (`50ms`, `1s`); a bare number is refused.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if !t.is_empty() && t.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(format!("{t:?} has no unit; write it with one, e.g. {t}ms"));
    }
    humantime::parse_duration(t).map_err(|e| format!("expected a duration like 50ms or 1s, got {s:?} ({e})"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.cmd {
        None => phases::run(&cli.bench).map(drop),
        Some(Cmd::Receiver(o)) => external::run_receiver(&o).map(drop),
        Some(Cmd::Gen { events, out }) => events::write_events_file(&out, events).map(|bytes| {
            eprintln!("{events} events, {bytes} bytes written to {}", out.display());
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sendauth-siem-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
