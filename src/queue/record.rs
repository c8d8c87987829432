//! The record format: events of one commit, cut into records of about 96 KiB, each
//! `[version u8 = 1][accepted_at_ms u64][count u32]` then `count` times `[len u32][bytes]`.
//! Event `i` of the record keyed `s` has sequence number `s + i`.

use super::*;

/// Records are cut at this many bytes of event payload (see the module docs).
pub(super) const RECORD_TARGET_BYTES: usize = 96 * 1024;

pub(super) const RECORD_HEADER: usize = 1 + 8 + 4;

/// Limits and accumulator of one `read`.
pub(super) struct ReadWindow {
    pub(super) after: u64,
    pub(super) before: u64,
    pub(super) max_events: usize,
    pub(super) max_bytes: usize,
    pub(super) bytes: usize,
}

/// Decodes a record into events with seq in `(w.after, w.before)`. False if damaged.
pub(super) fn decode_record(first_seq: u64, owner: &Bytes, w: &mut ReadWindow, out: &mut Vec<QueuedEvent>) -> bool {
    let raw: &[u8] = owner.as_ref();
    if raw.len() < RECORD_HEADER || raw[0] != 1 {
        return false;
    }
    let accepted_at_ms = u64::from_be_bytes(raw[1..9].try_into().unwrap_or([0; 8]));
    let count = u32::from_be_bytes(raw[9..13].try_into().unwrap_or([0; 4])) as u64;
    let mut pos = RECORD_HEADER;
    for i in 0..count {
        if pos + 4 > raw.len() {
            return false;
        }
        let len = u32::from_be_bytes(raw[pos..pos + 4].try_into().unwrap_or([0; 4])) as usize;
        pos += 4;
        if pos + len > raw.len() {
            return false;
        }
        let seq = first_seq + i;
        if seq > w.after && seq < w.before {
            if out.len() >= w.max_events || (!out.is_empty() && w.bytes + len > w.max_bytes) {
                return true;
            }
            w.bytes += len;
            out.push(QueuedEvent {
                seq,
                data: owner.slice(pos..pos + len),
                accepted_at_ms,
            });
        }
        pos += len;
    }
    true
}

/// Sizes of the events of a record with seq in (after, upto].
pub(super) fn record_event_sizes(first_seq: u64, raw: &[u8]) -> Vec<(u64, usize)> {
    let mut out = Vec::new();
    if raw.len() < RECORD_HEADER {
        return out;
    }
    let count = u32::from_be_bytes(raw[9..13].try_into().unwrap_or([0; 4])) as u64;
    let mut pos = RECORD_HEADER;
    for i in 0..count {
        if pos + 4 > raw.len() {
            break;
        }
        let len = u32::from_be_bytes(raw[pos..pos + 4].try_into().unwrap_or([0; 4])) as usize;
        out.push((first_seq + i, len));
        pos += 4 + len;
    }
    out
}

/// Appends one record (format in the module docs) to `v`.
/// Number of events and payload bytes of a record (format v1), if it is well formed.
pub(super) fn record_totals(raw: &[u8]) -> Option<(u32, u64)> {
    if raw.len() < RECORD_HEADER || raw[0] != 1 {
        return None;
    }
    let count = u32::from_be_bytes(raw[9..13].try_into().ok()?);
    let (mut pos, mut payload) = (RECORD_HEADER, 0u64);
    for _ in 0..count {
        let len = u32::from_be_bytes(raw.get(pos..pos + 4)?.try_into().ok()?) as usize;
        pos = pos.checked_add(4 + len)?;
        if pos > raw.len() {
            return None;
        }
        payload += len as u64;
    }
    (pos == raw.len()).then_some((count, payload))
}

pub(super) fn encode_record_into(v: &mut Vec<u8>, accepted_at_ms: u64, events: &[Bytes]) {
    v.reserve(RECORD_HEADER + events.iter().map(|e| 4 + e.len()).sum::<usize>());
    v.push(1u8);
    v.extend_from_slice(&accepted_at_ms.to_be_bytes());
    v.extend_from_slice(&(events.len() as u32).to_be_bytes());
    for e in events {
        v.extend_from_slice(&(e.len() as u32).to_be_bytes());
        v.extend_from_slice(e);
    }
}

/// Splits events into record-sized chunks.
pub(super) fn chunk_events(events: &[Bytes]) -> Vec<&[Bytes]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut size = 0;
    for (i, e) in events.iter().enumerate() {
        if i > start && size + e.len() + 4 > RECORD_TARGET_BYTES {
            out.push(&events[start..i]);
            start = i;
            size = 0;
        }
        size += e.len() + 4;
    }
    if start < events.len() {
        out.push(&events[start..]);
    }
    out
}
