//! Failures a test injects ([`Fault`]) and how the pipeline takes them: one-shot faults queue
//! FIFO and go before the sticky one; only ingest requests take faults (the crate doc, step 4).
//! Transport faults (status, hang, close, redirect, garbage, huge body) are answered here
//! without the platform; platform faults (`Splunk*`, `EsItems`) are handed to the platform that
//! they fit, and a platform fault on another kind is dropped with a warning, never left stuck.
//! The answers follow `docs/PROTOCOLS.md` §5 (client behaviour under failures), §1.7 (Splunk
//! busy) and §2.9 (Elasticsearch's product header).

use std::time::Duration;

use crate::config::Kind;
use crate::reply::{Reply, ReplyBody};
use crate::state::State;
use crate::{elasticsearch, splunk_hec};

#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Answer this; nothing is accepted. A JSON-looking body gets `Content-Type:
    /// application/json` unless `headers` sets one.
    Status {
        code: u16,
        body: String,
        headers: Vec<(String, String)>,
    },
    /// Read the request, answer nothing for this long, then 503.
    Hang(Duration),
    /// Process the request normally (its events are accepted and recorded), then hold the
    /// answer this long: a SIEM that stored the data but whose answer is late, or never reaches
    /// a client that times out or dies meanwhile.
    SlowAnswer(Duration),
    /// Drop the connection without answering.
    CloseConnection,
    /// Answer with this status and `Location`.
    Redirect { code: u16, location: String },
    /// 200 with random bytes that are not JSON.
    Garbage,
    /// 200 with a body of exactly this many bytes (`x`), streamed.
    HugeBody(usize),
    /// 503 `{"text":"Server is busy","code":9}` (§1.7). While this is the sticky fault, the HEC
    /// health endpoint answers 503 code 18.
    SplunkBusy,
    /// The next HEC event request: envelopes before `index` are accepted, that one is rejected
    /// with `code` and `invalid-event-number`, the rest are not indexed (§1.8). A real error
    /// earlier in the batch wins; an `index` past the end means the whole batch is accepted.
    SplunkInvalidEventNumber { index: usize, code: u16 },
    /// A HEC event request carrying an envelope whose JSON contains `contains`: the envelopes
    /// before it are indexed, it and the rest are not, and the answer is 503 "Server is busy"
    /// (code 9) with its `invalid-event-number` (§1.8). As a sticky fault: one event HEC never
    /// takes while its neighbours are indexed.
    SplunkBusyAt { contains: String },
    /// The next HEC event request's ackId never turns true.
    SplunkAckNever,
    /// Per-item statuses for the next ES bulk request. 2xx means "process normally"; other
    /// statuses get realistic error bodies and the item is not stored, except 409 on `create`,
    /// which means the document already exists: it is stored first if absent, as by an earlier
    /// attempt whose answer was lost. Items past the end of the list are processed normally.
    EsItems(Vec<u16>),
    /// Per-item status for ES bulk items whose document contains `contains` (the others are
    /// processed normally): as a sticky fault, one event the cluster refuses every time while
    /// its neighbours are stored (§2.3).
    EsItemsMatching { contains: String, status: u16 },
}

/// What to do after the answer is decided.
pub(crate) enum After {
    Answer,
    Hang(Duration),
    Close,
}

pub(crate) fn take_fault(st: &mut State) -> Option<(Fault, bool)> {
    match st.faults.pop_front() {
        Some(f) => Some((f, true)),
        None => st.sticky.clone().map(|f| (f, false)),
    }
}

/// Whether a platform-specific fault belongs to this kind (transport faults fit every kind).
pub(crate) fn fits(kind: Kind, f: &Fault) -> bool {
    match f {
        Fault::SplunkInvalidEventNumber { .. } | Fault::SplunkBusyAt { .. } | Fault::SplunkAckNever => kind == Kind::SplunkHec,
        Fault::EsItems(_) | Fault::EsItemsMatching { .. } => kind == Kind::Elasticsearch,
        _ => true,
    }
}

/// Headers the vendor puts on its answers: ES sends `X-elastic-product` on every one but 401
/// (§2.9).
fn vendor_headers(kind: Kind, r: Reply) -> Reply {
    match kind {
        Kind::Elasticsearch if r.status != 401 => elasticsearch::with_product_header(r),
        _ => r,
    }
}

/// The answer for a fault that does not depend on the request; `None` for platform faults.
pub(crate) fn transport_fault(kind: Kind, f: &Fault) -> Option<(Reply, After)> {
    let reply = match f {
        Fault::Status { code, body, headers } => {
            let mut r = Reply::empty(*code).body(body.clone());
            for (k, v) in headers {
                r = r.header(k, v.clone());
            }
            if !r.has_header("content-type") && !body.is_empty() {
                let t = body.trim_start();
                let ct = if t.starts_with('{') || t.starts_with('[') {
                    "application/json; charset=UTF-8"
                } else {
                    "text/plain; charset=UTF-8"
                };
                r = r.header("content-type", ct);
            }
            vendor_headers(kind, r)
        }
        Fault::Hang(d) => return Some((Reply::text(503, "Service Unavailable"), After::Hang(*d))),
        Fault::CloseConnection => return Some((Reply::empty(0), After::Close)),
        Fault::Redirect { code, location } => Reply::empty(*code).header("location", location.clone()),
        Fault::Garbage => {
            use rand::Rng;
            let mut b = vec![0u8; 256];
            rand::thread_rng().fill(&mut b[..]);
            // A NUL first byte: no JSON (or UTF-8 text) parser accepts this body.
            b[0] = 0;
            let r = Reply::empty(200).header("content-type", "application/json; charset=UTF-8").body(b);
            vendor_headers(kind, r)
        }
        Fault::HugeBody(n) => {
            let mut r = Reply::empty(200).header("content-type", "application/json; charset=UTF-8");
            r.body = ReplyBody::Repeat(*n);
            vendor_headers(kind, r)
        }
        Fault::SplunkBusy => splunk_hec::hec(9),
        Fault::SlowAnswer(_)
        | Fault::SplunkInvalidEventNumber { .. }
        | Fault::SplunkBusyAt { .. }
        | Fault::SplunkAckNever
        | Fault::EsItems(_)
        | Fault::EsItemsMatching { .. } => return None,
    };
    Some((reply, After::Answer))
}
