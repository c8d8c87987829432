//! The HEC reply table (`docs/PROTOCOLS.md` §1.7): for each HEC code its HTTP status and text,
//! and the `{"text":..,"code":..}` bodies, with `invalid-event-number` for event-level errors
//! (§1.8).

use serde_json::json;

use crate::Reply;

/// The HEC reply table (§1.7): HTTP status and text for each code.
fn code_info(code: u16) -> (u16, &'static str) {
    match code {
        0 => (200, "Success"),
        1 => (403, "Token disabled"),
        2 => (401, "Token is required"),
        3 => (401, "Invalid authorization"),
        4 => (403, "Invalid token"),
        5 => (400, "No data"),
        6 => (400, "Invalid data format"),
        7 => (400, "Incorrect index"),
        8 => (500, "Internal server error"),
        9 => (503, "Server is busy"),
        10 => (400, "Data channel is missing"),
        11 => (400, "Invalid data channel"),
        12 => (400, "Event field is required"),
        13 => (400, "Event field cannot be blank"),
        14 => (400, "ACK is disabled"),
        15 => (400, "Error in handling indexed fields"),
        16 => (400, "Query string authorization is not enabled"),
        17 => (200, "HEC is healthy"),
        18 => (503, "HEC is unhealthy, queues are full"),
        19 => (503, "HEC is unhealthy, ack service unavailable"),
        20 => (503, "HEC is unhealthy, queues are full, ack service unavailable"),
        21 => (400, "Invalid token"),
        22 => (400, "Token disabled"),
        _ => (400, "Invalid data format"),
    }
}

/// `{"text":..,"code":..}` with the status from the table.
pub(crate) fn hec(code: u16) -> Reply {
    let (status, text) = code_info(code);
    Reply::json(status, &json!({"text": text, "code": code}))
}

/// An event-level error carrying `invalid-event-number`.
pub(super) fn hec_at(code: u16, n: usize) -> Reply {
    let (status, text) = code_info(code);
    Reply::json(status, &json!({"text": text, "code": code, "invalid-event-number": n}))
}
