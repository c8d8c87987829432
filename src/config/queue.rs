//! The `queue:` section (required; the full config and the operator's view both read it).

use std::path::PathBuf;

use super::reader::Node;
use crate::queue::settings::{QueueConfig, DEFAULT_MAX_QUARANTINE_ENTRIES, DEFAULT_QUEUE_MAX_BYTES};

/// The required `queue` section (the full config and the operator's view both need it).
pub(super) fn parse_queue_section(root: &mut Node) -> Option<QueueConfig> {
    match root.child("queue") {
        Some(mut n) => {
            let q = parse_queue(&mut n);
            n.finish();
            q
        }
        None => {
            root.err("queue", "required; set queue.path to a directory for the durable queue");
            None
        }
    }
}

/// The keys of `queue:`; the admin socket lives in `queue.path`, which bounds its length.
fn parse_queue(n: &mut Node) -> Option<QueueConfig> {
    let path = n.required_string("path", "set a directory for the durable queue, e.g. /var/lib/sendauth-siem");
    let max_bytes = n.size("max_bytes", DEFAULT_QUEUE_MAX_BYTES, 64 * 1024);
    let max_quarantine_entries = n.uint("max_quarantine_entries", DEFAULT_MAX_QUARANTINE_ENTRIES, 1, 100_000_000);
    let max_quarantine_bytes = n.size("max_quarantine_bytes", crate::queue::DEFAULT_MAX_QUARANTINE_BYTES, 64 * 1024);
    let max_dead_letter_entries = n.uint(
        "max_dead_letter_entries",
        crate::queue::DEFAULT_MAX_DEAD_LETTER_ENTRIES,
        1,
        100_000_000,
    );
    let max_dead_letter_bytes = n.size("max_dead_letter_bytes", crate::queue::DEFAULT_MAX_DEAD_LETTER_BYTES, 64 * 1024);
    let min_free_bytes = n.size("min_free_bytes", crate::queue::DEFAULT_MIN_FREE_BYTES, 0);
    if let Some(p) = &path {
        let max = crate::admin::MAX_QUEUE_PATH_BYTES;
        if p.len() > max {
            n.err(
                "path",
                format!(
                    "is {} bytes long; the admin socket inside it needs queue.path to be at most {max} bytes (the Unix socket path limit); use a shorter directory",
                    p.len()
                ),
            );
        }
    }
    Some(QueueConfig {
        path: PathBuf::from(path?),
        max_bytes,
        max_quarantine_entries,
        max_quarantine_bytes,
        max_dead_letter_entries,
        max_dead_letter_bytes,
        min_free_bytes,
    })
}
