//! The `/status` document as a type: built by the hub ([`super::StatusHub::snapshot`]), served
//! as JSON by `server.rs` and inside the admin socket's `Status` answer, and read back by the
//! CLI (`status`, `top`) and the demo. One type on both sides, so a field renamed on one side is
//! a compile error on the other instead of a `null` read by index.
//!
//! Invariants: the field names and shapes are the contract (docs/CONTRACT.md, "Status"; the
//! status page reads them too), so renaming one here is a breaking change; an absent optional
//! value is `null`, never a missing key (except the two flags of [`LastError`] that have always
//! been left out when unset); nothing here holds a secret (URLs are redacted, messages come
//! redacted from the sink's HTTP client).

use serde::{Deserialize, Serialize};

pub(crate) use super::LastError;
use crate::sink::endpoints::EndpointView;

/// The whole document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusDoc {
    pub state: State,
    pub last_success_at: Option<String>,
    /// The last delivery error, or the last dead-letter rejection; kept across restarts.
    pub last_error: Option<LastError>,
    pub queue: QueueStatus,
    pub dead_letter: DeadLetterStatus,
    pub quarantine: QuarantineStatus,
    pub config: ConfigStatus,
    pub sources: SourcesStatus,
    /// Each endpoint of the SIEM, in the configured order (one with a single URL).
    pub endpoints: Vec<EndpointView>,
    /// Set while failed attempts are being retried.
    pub retry: Option<RetryStatus>,
    /// The newest first, at most 10.
    pub recent_errors: Vec<LastError>,
    /// What needs an operator although delivery goes on.
    pub warnings: Vec<String>,
    pub version: String,
    pub commit: String,
    pub(crate) uptime_seconds: u64,
}

/// `state`, as docs/CONTRACT.md ("Status") defines it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    NotYetInvoked,
    Success,
    Error,
    Disabled,
}

impl State {
    /// The wire name (`not_yet_invoked`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            State::NotYetInvoked => "not_yet_invoked",
            State::Success => "success",
            State::Error => "error",
            State::Disabled => "disabled",
        }
    }

    /// As `status` prints it.
    pub fn label(self) -> &'static str {
        match self {
            State::NotYetInvoked => "Not yet invoked",
            State::Success => "Success",
            State::Error => "Error",
            State::Disabled => "Disabled",
        }
    }
}

/// `queue`: the pending events, read from the queue when asked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueStatus {
    pub pending: u64,
    /// Rounded to a tenth of a second; 0 when nothing is pending.
    pub oldest_pending_age_seconds: f64,
    pub bytes: u64,
    pub max_bytes: u64,
    pub full: bool,
    /// Damage found in the queue (what was lost or moved aside).
    pub incident: Option<String>,
    /// Why appends are refused for want of storage.
    pub storage_error: Option<String>,
    /// Stores moved aside as damaged and not replayed yet.
    pub moved_aside: Vec<String>,
}

/// `dead_letter`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetterStatus {
    pub count: u64,
    pub bytes: u64,
    pub max_entries: u64,
    pub max_bytes: u64,
    /// Why the dead letter refused a rejected event, and what to do.
    pub full: Option<String>,
}

/// `quarantine`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuarantineStatus {
    pub count: u64,
    pub(crate) evicted: u64,
    pub bytes: u64,
    pub max_entries: u64,
    pub max_bytes: u64,
}

/// `config`: where events go, and whether the last edit was refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigStatus {
    /// Redacted.
    pub url: String,
    pub platform: String,
    pub reload_error: Option<String>,
}

/// `sources`: each configured input, as it last reported itself (`null` when not configured).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SourcesStatus {
    pub file: Option<FileSourceStatus>,
    pub socket: Option<SocketSourceStatus>,
}

/// What the file source reports: what it does, in one line an operator reads as is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileSourceStatus {
    pub state: FileSourceState,
    pub summary: String,
    /// The configured path.
    pub path: String,
    /// The file open now (the path, or the rotated-away file being drained).
    pub reading: Option<String>,
    /// Committed byte offset and line number in `reading`.
    pub offset: Option<u64>,
    pub line: Option<u64>,
    /// Why it is paused or waiting.
    pub paused: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileSourceState {
    Tailing,
    /// The file (or its directory) does not exist yet, or is not a regular file.
    Waiting,
    /// The queue or its disk is full.
    Paused,
}

impl FileSourceState {
    pub fn as_str(self) -> &'static str {
        match self {
            FileSourceState::Tailing => "tailing",
            FileSourceState::Waiting => "waiting",
            FileSourceState::Paused => "paused",
        }
    }
}

/// What the socket source reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SocketSourceStatus {
    pub path: String,
    pub connections: u64,
    pub max_connections: u64,
}

/// `retry`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetryStatus {
    /// Failed attempts in a row.
    pub failed_attempts: u32,
    /// RFC 3339.
    pub(crate) next_attempt_at: String,
}

/// The running totals `top` turns into rates (the admin socket's `Status` answer).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    pub received: u64,
    pub delivered: u64,
    pub dead_lettered: u64,
    pub(crate) requests_ok: u64,
    pub(crate) requests_failed: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The document a hub builds reads back as the same value, and its JSON has the field names
    /// docs/CONTRACT.md and the status page use.
    #[test]
    fn a_status_document_round_trips_with_the_contract_names() {
        let doc = StatusDoc {
            state: State::NotYetInvoked,
            last_success_at: None,
            last_error: Some(LastError {
                at: "2026-01-01T00:00:00Z".into(),
                http_status: Some(503),
                message: "down".into(),
                resolved_at: None,
                dead_letter: false,
            }),
            queue: QueueStatus {
                pending: 3,
                oldest_pending_age_seconds: 1.5,
                bytes: 30,
                max_bytes: 100,
                full: false,
                incident: None,
                storage_error: None,
                moved_aside: vec![],
            },
            dead_letter: DeadLetterStatus {
                count: 0,
                bytes: 0,
                max_entries: 10,
                max_bytes: 1000,
                full: None,
            },
            quarantine: QuarantineStatus {
                count: 1,
                evicted: 0,
                bytes: 5,
                max_entries: 10,
                max_bytes: 1000,
            },
            config: ConfigStatus {
                url: "https://siem.example/".into(),
                platform: "generic".into(),
                reload_error: None,
            },
            sources: SourcesStatus {
                file: Some(FileSourceStatus {
                    state: FileSourceState::Waiting,
                    summary: "waiting".into(),
                    path: "/x".into(),
                    reading: None,
                    offset: None,
                    line: None,
                    paused: None,
                }),
                socket: None,
            },
            endpoints: vec![],
            retry: Some(RetryStatus {
                failed_attempts: 2,
                next_attempt_at: "2026-01-01T00:00:01Z".into(),
            }),
            recent_errors: vec![],
            warnings: vec![],
            version: "0".into(),
            commit: "c".into(),
            uptime_seconds: 1,
        };
        let v = serde_json::to_value(&doc).unwrap();
        assert_eq!(v["state"], "not_yet_invoked");
        assert_eq!(v["sources"]["file"]["state"], "waiting");
        assert!(v["sources"]["socket"].is_null());
        assert!(v["queue"]["incident"].is_null() && v["dead_letter"]["full"].is_null());
        assert_eq!(v["retry"]["failed_attempts"], 2);
        assert!(v["last_error"].get("resolved_at").is_none(), "unset flags are left out");
        let back: StatusDoc = serde_json::from_value(v).unwrap();
        assert_eq!(back, doc);
    }
}
