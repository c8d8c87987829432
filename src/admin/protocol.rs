//! The admin socket's answer lines as types: the agent serialises a [`Response`] per line, the
//! CLI deserialises each line into one (the request side is [`super::Request`]).
//!
//! The wire format is what it always was (see the `admin` module docs): one JSON object per
//! line, without a tag naming its kind. [`Response`] is therefore an untagged enum told apart by
//! the fields each kind requires: no two variants share all their required fields, and the
//! failure, header and end lines come first because an entry line never carries `error`,
//! `stream` or `end`. A line that matches no variant is an error naming the line, never a
//! default value.
//!
//! Entry types list their fields in alphabetical order: `--json` listings print them as they
//! come, and that is the order they have always printed in.

use serde::{Deserialize, Serialize};

use crate::queue::aside::ReplayOutcome;
use crate::status::{Counters, StatusDoc};

/// One answer line.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Response {
    /// `{"ok":false,"error":...}`: the request failed (a whole answer; a stream ends with it).
    Failed(Failed),
    /// `{"ok":true,"stream":true,"total":N}`: a listing (or a tap) starts.
    Head(StreamHead),
    /// `{"end":true,"listed":K}`: a listing (or a tap) ends.
    End(StreamEnd),
    /// One line of `dead-letter list`.
    DeadLetter(DeadLetterEntry),
    /// One line of `quarantine list`.
    Quarantine(QuarantineEntry),
    /// The answer to `Status`.
    Status(Box<StatusAnswer>),
    /// One tapped event.
    Tapped(TapLine),
    /// The tap viewer fell behind and missed `skipped` events.
    Skipped(Skipped),
    Replayed(Replayed),
    Purged(Purged),
    QuarantineReplayed(QuarantineReplayed),
    AsideReplayed(Box<AsideReplayed>),
}

impl Response {
    pub fn failed(error: impl Into<String>) -> Response {
        Response::Failed(Failed {
            ok: false,
            error: error.into(),
        })
    }

    pub fn head(total: u64) -> Response {
        Response::Head(StreamHead {
            ok: true,
            stream: true,
            total,
        })
    }

    pub fn end(listed: u64) -> Response {
        Response::End(StreamEnd { end: true, listed })
    }

    /// Whether this line ends the answer: a failure, the end of a stream, or (`streaming`
    /// false) any line of a one-line answer.
    pub(crate) fn ends_answer(&self, streaming: bool) -> bool {
        match self {
            Response::Failed(_) | Response::End(_) => true,
            Response::Head(_) => false,
            _ => !streaming,
        }
    }

    /// The kind of line, for an error saying what came instead of what was expected.
    pub fn kind(&self) -> &'static str {
        match self {
            Response::Failed(_) => "an error",
            Response::Head(_) => "a listing's header",
            Response::End(_) => "a listing's end",
            Response::DeadLetter(_) => "a dead-letter entry",
            Response::Quarantine(_) => "a quarantine entry",
            Response::Status(_) => "a status",
            Response::Tapped(_) => "a tapped event",
            Response::Skipped(_) => "a tap's skip notice",
            Response::Replayed(_) => "a dead-letter replay count",
            Response::Purged(_) => "a purge count",
            Response::QuarantineReplayed(_) => "a quarantine replay count",
            Response::AsideReplayed(_) => "an aside replay outcome",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Failed {
    /// Always false.
    pub ok: bool,
    /// What went wrong and what to do, for the operator.
    pub error: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StreamHead {
    /// Always true.
    pub ok: bool,
    /// Always true.
    pub stream: bool,
    /// Entries there are (a listing), or the most a tap will show.
    pub total: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StreamEnd {
    /// Always true.
    pub end: bool,
    /// Entry lines sent.
    pub listed: u64,
}

/// A dead-lettered event and why (fields in alphabetical order: see the module docs).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeadLetterEntry {
    pub at: String,
    /// The event's bytes as text (invalid UTF-8 replaced).
    pub event: String,
    pub http_status: Option<u16>,
    pub id: u64,
    pub original_seq: u64,
    /// The SIEM's answer, in full.
    pub reason: String,
}

/// A quarantined line and why (fields in alphabetical order: see the module docs).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QuarantineEntry {
    pub at: String,
    pub id: u64,
    /// The line's full length (only a prefix is kept).
    pub len: u64,
    /// The kept prefix as text (invalid UTF-8 replaced).
    pub line: String,
    /// Where it came from: file and line, or socket and peer.
    pub origin: String,
    pub reason: String,
}

/// The answer to `Status`: the `/status` document and the running totals.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusAnswer {
    /// Always true.
    pub ok: bool,
    pub status: StatusDoc,
    pub counters: Counters,
}

/// An event as it entered the queue (fields in alphabetical order: see the module docs).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TapLine {
    /// The event as queued (after the privacy transform); a string if it is not JSON.
    pub event: serde_json::Value,
    /// `file` or `socket`.
    pub source: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Skipped {
    pub skipped: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Replayed {
    pub ok: bool,
    pub replayed: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Purged {
    pub ok: bool,
    pub purged: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QuarantineReplayed {
    pub ok: bool,
    pub(crate) requeued: u64,
    pub(crate) still_rejected: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AsideReplayed {
    pub ok: bool,
    #[serde(flatten)]
    pub outcome: ReplayOutcome,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(r: &Response) -> Response {
        serde_json::from_str(&serde_json::to_string(r).unwrap()).unwrap()
    }

    /// Each kind of line reads back as the same kind, however similar its neighbours.
    #[test]
    fn every_answer_line_reads_back_as_its_own_kind() {
        let lines = [
            Response::failed("no"),
            Response::head(3),
            Response::end(3),
            Response::DeadLetter(DeadLetterEntry {
                at: "t".into(),
                event: "{}".into(),
                http_status: None,
                id: 1,
                original_seq: 9,
                reason: "r".into(),
            }),
            Response::Quarantine(QuarantineEntry {
                at: "t".into(),
                id: 1,
                len: 2,
                line: "x".into(),
                origin: "o".into(),
                reason: "r".into(),
            }),
            Response::Tapped(TapLine {
                event: serde_json::json!({"id": 1, "reason": "looks like an entry"}),
                source: "file".into(),
            }),
            Response::Skipped(Skipped { skipped: 4 }),
            Response::Replayed(Replayed { ok: true, replayed: 2 }),
            Response::Purged(Purged { ok: true, purged: 2 }),
            Response::QuarantineReplayed(QuarantineReplayed {
                ok: true,
                requeued: 1,
                still_rejected: 0,
            }),
        ];
        for l in &lines {
            assert_eq!(round_trip(l).kind(), l.kind(), "{}", serde_json::to_string(l).unwrap());
        }
        let wire = serde_json::to_string(&lines[3]).unwrap();
        assert_eq!(
            wire,
            r#"{"at":"t","event":"{}","http_status":null,"id":1,"original_seq":9,"reason":"r"}"#
        );
        assert!(serde_json::from_str::<Response>(r#"{"something":"else"}"#).is_err());
    }
}
