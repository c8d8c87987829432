//! The `audit:` section (opt-in): the agent's identity on each event, and heartbeats.

use std::time::Duration;

use super::reader::Node;
use crate::audit::AuditConfig;

/// The `audit:` section: on unless `enabled: false`.
pub(super) fn parse_audit(n: &mut Node) -> Option<AuditConfig> {
    let enabled = n.bool("enabled", true);
    let agent_id = match n.string("agent_id") {
        Some(id) if id.trim().is_empty() || id.len() > 256 || id.chars().any(char::is_control) => {
            n.err("agent_id", "must be 1 to 256 printable characters, e.g. the host name");
            None
        }
        Some(id) => Some(id),
        None => crate::sink::splunk_hec::hostname(),
    };
    let heartbeat_interval = if n.has("heartbeat_interval") {
        let d = n.duration("heartbeat_interval", Duration::ZERO);
        if d > Duration::ZERO && d < Duration::from_secs(1) {
            n.err(
                "heartbeat_interval",
                "is too short; use at least 1s (e.g. 5m), or leave it out to send no heartbeats",
            );
        }
        (d >= Duration::from_secs(1)).then_some(d)
    } else {
        None
    };
    if agent_id.is_none() && !n.has_error_under("agent_id") {
        n.err("agent_id", "this host's name could not be read; set audit.agent_id");
    }
    (enabled && agent_id.is_some()).then(|| AuditConfig {
        agent_id: agent_id.unwrap_or_default(),
        heartbeat_interval,
    })
}
