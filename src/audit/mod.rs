//! Audit completeness (`audit:`, opt-in): proof from the SIEM alone that no event is missing.
//!
//! **Sequence numbers.** Each forwarded event carries `sendauth_siem.agent` (the configured
//! `audit.agent_id`, by default the host name) and `sendauth_siem.seq`, stamped at encode time
//! (`schema::Mapped`; Splunk HEC also gets them as indexed `fields`). The number is the queue's
//! own sequence number: assigned when the event is appended, in the same `fdatasync`ed frame as
//! the event, only ever growing and never reused, even across SIGKILL, power loss and a store
//! moved aside (`queue` invariants; its witness file keeps numbers going after a damaged store).
//! So in the SIEM, per agent:
//! - a number seen twice is a resend (a request in flight when the agent was killed): harmless;
//! - a number never seen is an event that left the queue without reaching the SIEM: a dead
//!   letter (the SIEM refused it), or an event lost with a damaged store (reported as a queue
//!   incident). Nothing else removes an event from the queue (`Queue::ack`).
//!
//! Lines quarantined at input never get a number (they were never events), and replays of dead
//! letters or moved-aside stores get new numbers at the end. Deleting the queue directory by hand
//! starts numbering again at 1, which `audit verify` would count as duplicates: give the agent a
//! new `audit.agent_id` when doing so.
//!
//! **Heartbeats** (`audit.heartbeat_interval`, default off): every interval the agent appends a
//! `sendauth_siem.heartbeat` event *to the queue*, so it is durable, numbered in the same
//! sequence, shaped by the same schema and delivered (or held) like any event: a SIEM that sees
//! no heartbeat for two intervals knows the agent stopped or cannot deliver, and a heartbeat whose
//! `timestamp` is far behind its arrival shows the backlog. It carries the counts since the
//! previous heartbeat of this process (accepted, delivered, quarantined, dead-lettered), the
//! current pending count and oldest pending age, and the process start time (a new `started_at`
//! marks a restart). Counts since the last heartbeat before a SIGKILL are lost with the process;
//! `audit verify` then reports a gap as unexplained, and `dead-letter list` on the host settles it.

pub mod verify;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::json;
use tokio::sync::watch;

use crate::queue::{AppendRequest, Queue};
use crate::shutdown::Shutdown;
use crate::status::StatusHub;

/// `audit:` (opt-in): the agent's identity and sequence number on each event, and heartbeats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditConfig {
    /// `audit.agent_id` (default: this host's name).
    pub agent_id: String,
    /// `audit.heartbeat_interval` (default off).
    pub heartbeat_interval: Option<Duration>,
}

/// Counters read for one heartbeat (process totals; a heartbeat sends the differences).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    pub accepted: u64,
    pub delivered: u64,
    pub quarantined: u64,
    pub dead_lettered: u64,
}

impl Totals {
    fn read(status: &StatusHub) -> Totals {
        use std::sync::atomic::Ordering::Relaxed;
        let m = &status.metrics;
        Totals {
            accepted: m.received_file.load(Relaxed) + m.received_socket.load(Relaxed),
            delivered: m.delivered.load(Relaxed),
            quarantined: m.rejected_total(),
            dead_lettered: m.dead_lettered.load(Relaxed),
        }
    }

    fn since(self, prev: Totals) -> Totals {
        Totals {
            accepted: self.accepted.saturating_sub(prev.accepted),
            delivered: self.delivered.saturating_sub(prev.delivered),
            quarantined: self.quarantined.saturating_sub(prev.quarantined),
            dead_lettered: self.dead_lettered.saturating_sub(prev.dead_lettered),
        }
    }
}

/// The heartbeat event (before the schema mapping and the stamp).
pub(crate) fn heartbeat_event(
    agent: &str,
    n: u64,
    interval: Duration,
    d: Totals,
    pending: u64,
    oldest: Option<Duration>,
    started_at: &str,
) -> Bytes {
    let v = json!({
        "event_type": crate::schema::HEARTBEAT_TYPE,
        "timestamp": crate::queue::now_rfc3339(),
        "org_id": "sendauth-siem",
        "transaction_id": format!("heartbeat-{agent}-{started_at}-{n}"),
        "sendauth_siem": {
            "agent": agent,
            "heartbeat": {
                "interval_seconds": interval.as_secs_f64(),
                "started_at": started_at,
                "accepted": d.accepted,
                "delivered": d.delivered,
                "quarantined": d.quarantined,
                "dead_lettered": d.dead_lettered,
                "pending": pending,
                "oldest_pending_age_seconds": oldest.map(|a| (a.as_secs_f64() * 10.0).round() / 10.0).unwrap_or(0.0),
            }
        }
    });
    Bytes::from(serde_json::to_vec(&v).unwrap_or_default())
}

/// Appends a heartbeat every `audit.heartbeat_interval` (re-read on reload) until shutdown.
pub(crate) async fn run_heartbeats(
    queue: Queue,
    status: Arc<StatusHub>,
    mut cfg: watch::Receiver<Option<AuditConfig>>,
    mut shutdown: Shutdown,
) {
    let started_at = crate::queue::now_rfc3339();
    let mut prev = Totals::default();
    let mut n = 0u64;
    loop {
        let setting = cfg
            .borrow()
            .as_ref()
            .and_then(|a| a.heartbeat_interval.map(|i| (a.agent_id.clone(), i)));
        let Some((agent, interval)) = setting else {
            tokio::select! {
                _ = shutdown.wait() => return,
                r = cfg.changed() => if r.is_err() { return } else { continue },
            }
        };
        tokio::select! {
            _ = shutdown.wait() => return,
            r = cfg.changed() => if r.is_err() { return } else { continue },
            _ = tokio::time::sleep(interval) => {}
        }
        let now = Totals::read(&status);
        let delta = now.since(prev);
        n += 1;
        let counts = queue.counts();
        let ev = heartbeat_event(
            &agent,
            n,
            interval,
            delta,
            counts.pending_events,
            queue.oldest_pending_age(),
            &started_at,
        );
        match queue
            .append(AppendRequest {
                events: vec![ev],
                quarantine: Vec::new(),
                checkpoint: None,
            })
            .await
        {
            Ok(_) => prev = now,
            // Counts not sent stay in the next heartbeat's differences.
            Err(e) => tracing::warn!(target: "audit", "could not queue a heartbeat: {e}; its counts go into the next one"),
        }
    }
}
