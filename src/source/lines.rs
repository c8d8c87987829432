//! Splits a byte stream into lines, bounded in memory.
//!
//! A line is only complete once its `\n` has arrived; a partial line is held (never forwarded
//! half-written). A line longer than `max` is not buffered whole: its first `max` bytes are kept
//! for the quarantine and the rest is skipped up to the next `\n`, so an endless line costs at
//! most `max` bytes of memory.

use bytes::{Bytes, BytesMut};

/// One framed line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A complete line without its `\n` (and without a trailing `\r`).
    /// `end` is the stream offset just past its `\n`.
    Line { data: Bytes, end: u64 },
    /// A line longer than the limit: its first bytes, its full length, and the offset past it.
    Oversize { prefix: Bytes, len: usize, end: u64 },
}

pub struct LineFramer {
    buf: BytesMut,
    max: usize,
    /// Stream offset of `buf[0]`.
    base: u64,
    /// Inside an oversize line: its kept prefix and length so far.
    skipping: Option<(Bytes, usize)>,
}

impl LineFramer {
    pub fn new(max: usize, start_offset: u64) -> Self {
        LineFramer {
            buf: BytesMut::new(),
            max,
            base: start_offset,
            skipping: None,
        }
    }

    /// Offset just past the last complete line (what a checkpoint may record).
    pub fn committed_offset(&self) -> u64 {
        self.base
    }

    /// Bytes held for an incomplete line.
    pub fn partial_len(&self) -> usize {
        self.buf.len() + self.skipping.as_ref().map(|s| s.1).unwrap_or(0)
    }

    /// Feeds bytes; complete lines are appended to `out`. The bytes are copied once, as one
    /// chunk that the lines share (see [`LineFramer::push_bytes`]).
    pub fn push(&mut self, data: &[u8], out: &mut Vec<Frame>) {
        if !data.is_empty() {
            self.push_bytes(Bytes::copy_from_slice(data), out);
        }
    }

    /// Feeds a chunk; complete lines are appended to `out`. A line that lies within the chunk
    /// is a slice of it (no copy, no allocation); only a line split across chunks is copied.
    pub(crate) fn push_bytes(&mut self, data: Bytes, out: &mut Vec<Frame>) {
        let mut pos = 0;
        while pos < data.len() {
            let rest = &data[pos..];
            if let Some((prefix, len)) = self.skipping.as_mut() {
                match memchr::memchr(b'\n', rest) {
                    Some(i) => {
                        *len += i;
                        let end = self.base + (*len as u64) + 1;
                        out.push(Frame::Oversize {
                            prefix: prefix.clone(),
                            len: *len,
                            end,
                        });
                        self.base = end;
                        self.skipping = None;
                        pos += i + 1;
                    }
                    None => {
                        *len += rest.len();
                        return;
                    }
                }
                continue;
            }
            match memchr::memchr(b'\n', rest) {
                Some(i) => {
                    let line_len = self.buf.len() + i;
                    if line_len > self.max {
                        let mut prefix = std::mem::take(&mut self.buf);
                        let room = self.max.saturating_sub(prefix.len());
                        prefix.extend_from_slice(&rest[..i.min(room)]);
                        let end = self.base + line_len as u64 + 1;
                        out.push(Frame::Oversize {
                            prefix: prefix.freeze(),
                            len: line_len,
                            end,
                        });
                        self.base = end;
                    } else {
                        let mut line = if self.buf.is_empty() {
                            data.slice(pos..pos + i)
                        } else {
                            self.buf.extend_from_slice(&rest[..i]);
                            std::mem::take(&mut self.buf).freeze()
                        };
                        let end = self.base + line_len as u64 + 1;
                        if line.last() == Some(&b'\r') {
                            line.truncate(line.len() - 1);
                        }
                        out.push(Frame::Line { data: line, end });
                        self.base = end;
                    }
                    pos += i + 1;
                }
                None => {
                    if self.buf.len() + rest.len() > self.max {
                        let mut prefix = std::mem::take(&mut self.buf);
                        let room = self.max.saturating_sub(prefix.len());
                        prefix.extend_from_slice(&rest[..rest.len().min(room)]);
                        let len = prefix.len() + rest.len().saturating_sub(room);
                        self.skipping = Some((prefix.freeze(), len));
                    } else {
                        self.buf.extend_from_slice(rest);
                    }
                    return;
                }
            }
        }
    }

    /// At end of stream (socket closed): the unterminated rest as a final frame, if any.
    pub fn finish(&mut self) -> Option<Frame> {
        if let Some((prefix, len)) = self.skipping.take() {
            let end = self.base + len as u64;
            self.base = end;
            return Some(Frame::Oversize { prefix, len, end });
        }
        if self.buf.is_empty() {
            return None;
        }
        let mut line = std::mem::take(&mut self.buf).freeze();
        let end = self.base + line.len() as u64;
        self.base = end;
        if line.last() == Some(&b'\r') {
            line.truncate(line.len() - 1);
        }
        Some(Frame::Line { data: line, end })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(f: &[Frame]) -> Vec<String> {
        f.iter()
            .map(|x| match x {
                Frame::Line { data, end } => format!("{}@{end}", String::from_utf8_lossy(data)),
                Frame::Oversize { prefix, len, end } => format!("OVER({},{len})@{end}", String::from_utf8_lossy(prefix)),
            })
            .collect()
    }

    #[test]
    fn partial_line_is_held_until_newline() {
        let mut f = LineFramer::new(100, 0);
        let mut out = vec![];
        f.push(b"ab", &mut out);
        assert!(out.is_empty());
        assert_eq!(f.committed_offset(), 0);
        f.push(b"c\nde", &mut out);
        assert_eq!(lines(&out), vec!["abc@4"]);
        assert_eq!(f.committed_offset(), 4);
        f.push(b"\r\n", &mut out);
        assert_eq!(lines(&out), vec!["abc@4", "de@8"]);
    }

    #[test]
    fn oversize_line_is_bounded_and_skipped_to_next_newline() {
        let mut f = LineFramer::new(4, 10);
        let mut out = vec![];
        f.push(b"abcdefgh", &mut out);
        f.push(b"ijk", &mut out);
        assert!(f.partial_len() <= 4 + 11);
        f.push(b"\nok\n", &mut out);
        assert_eq!(lines(&out), vec!["OVER(abcd,11)@22", "ok@25"]);
        let mut f = LineFramer::new(4, 0);
        let mut out = vec![];
        f.push(b"abcdef\nx\n", &mut out);
        assert_eq!(lines(&out), vec!["OVER(abcd,6)@7", "x@9"]);
    }

    #[test]
    fn lines_within_a_chunk_share_it_and_split_lines_are_joined() {
        let mut f = LineFramer::new(100, 0);
        let mut out = vec![];
        let chunk = Bytes::from_static(b"one\ntwo\nthr");
        f.push_bytes(chunk.clone(), &mut out);
        f.push_bytes(Bytes::from_static(b"ee\n"), &mut out);
        assert_eq!(lines(&out), vec!["one@4", "two@8", "three@14"]);
        let Frame::Line { data, .. } = &out[1] else { panic!() };
        assert_eq!(data.as_ptr(), chunk[4..].as_ptr(), "no copy of a line inside the chunk");
    }

    #[test]
    fn finish_returns_unterminated_rest() {
        let mut f = LineFramer::new(100, 0);
        let mut out = vec![];
        f.push(b"a\nb", &mut out);
        assert_eq!(
            f.finish(),
            Some(Frame::Line {
                data: Bytes::from_static(b"b"),
                end: 3
            })
        );
        assert_eq!(f.finish(), None);
    }
}
