//! Unit tests only (`#[cfg(test)]`): what the platforms' tests share.

use bytes::Bytes;

use crate::queue::QueuedEvent;

/// The config problems for a `siem:` section (YAML lines, indented two spaces), joined: the
/// platforms' checks seen as a user meets them, through the config reader.
pub(crate) fn config_errors(siem: &str) -> String {
    let yaml = format!("siem:\n{siem}sources:\n  socket: {{ path: /tmp/x.sock }}\nqueue:\n  path: /tmp/q\n");
    crate::config::Config::parse_with_env(&yaml, &|_| None)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default()
}

/// Event `i` of a test batch: `template` (which holds `tx-1`) with transaction id `tx-<i>`, at
/// sequence number `i + 1`.
pub(crate) fn numbered(template: &str, i: usize) -> QueuedEvent {
    QueuedEvent {
        seq: i as u64 + 1,
        data: Bytes::from(template.replace("tx-1", &format!("tx-{i}"))),
        accepted_at_ms: 5,
    }
}
