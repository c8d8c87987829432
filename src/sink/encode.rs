//! Body helpers every platform shares: gzip, the prefix of a batch that fits a request's
//! limits, one event per line, and clipping a SIEM's words for a one-line message.
//!
//! Pure functions on bytes and text: no I/O, no knowledge of any SIEM. Platforms (one file or
//! folder each under `sink/`) use these and never each other (ARCHITECTURE.md, code map).

use bytes::Bytes;

use crate::queue::QueuedEvent;

/// Gzips a body (used by every platform that offers `gzip: true`).
pub fn gzip(raw: &[u8]) -> Bytes {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::with_capacity(raw.len() / 4), flate2::Compression::fast());
    let _ = enc.write_all(raw);
    Bytes::from(enc.finish().unwrap_or_default())
}

/// Takes the prefix of `events` that fits `max_events` / `max_bytes` (at least one event).
pub(crate) fn take_prefix(events: &[QueuedEvent], max_events: usize, max_bytes: usize, per_event_overhead: usize) -> usize {
    let mut n = 0;
    let mut bytes = 0;
    for e in events.iter().take(max_events.max(1)) {
        let add = e.data.len() + per_event_overhead;
        if n > 0 && bytes + add > max_bytes {
            break;
        }
        bytes += add;
        n += 1;
    }
    n.max(1).min(events.len())
}

/// The event as one line, for line-framed bodies (NDJSON, Elasticsearch bulk): any CR or LF
/// byte becomes a space. In valid JSON those bytes can only be whitespace between tokens (inside
/// strings they must be escaped), so the event means exactly the same; without this, a stray
/// newline would split one event into two broken ones. Events without them are not copied.
pub(crate) fn one_line(data: &Bytes) -> Bytes {
    if !data.iter().any(|&b| b == b'\n' || b == b'\r') {
        return data.clone();
    }
    data.iter()
        .map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b })
        .collect::<Vec<u8>>()
        .into()
}

/// Text a SIEM sent, cut to `max` characters for a one-line message.
pub(crate) fn clip(s: &str, max: usize) -> String {
    let s = s.trim();
    if s.chars().count() > max {
        let cut: String = s.chars().take(max).collect();
        format!("{cut}…")
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::sink::platform::test_events as evs;

    #[test]
    fn one_line_turns_line_breaks_into_spaces_and_keeps_the_rest() {
        let e = Bytes::from_static(b"{\"a\":1,\r\n\"b\":\"x\\ny\"}");
        assert_eq!(&one_line(&e)[..], b"{\"a\":1,  \"b\":\"x\\ny\"}");
        let clean = Bytes::from_static(b"{\"a\":1}");
        let same = one_line(&clean);
        assert_eq!(same.as_ptr(), clean.as_ptr(), "no copy when nothing changes");
    }

    #[test]
    fn byte_limit_cuts_the_batch_but_never_below_one() {
        let e = evs(5);
        assert_eq!(take_prefix(&e, 100, 10, 1), 1);
        assert_eq!(take_prefix(&e, 100, 17, 1), 2);
    }
}
