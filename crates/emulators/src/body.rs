//! Reading and decoding request bodies (the crate doc, steps 2 and 3): the body is read up to
//! `max_content_length`; a larger one is drained (read and discarded, never buffered) up to
//! 64 MiB so the client reads the 413 instead of a reset, and past that, or with
//! `Expect: 100-continue`, the connection is closed. Content-Encoding gzip (multi-member) and
//! deflate (zlib) are undone, bounded by the same limit. Size limits: `docs/PROTOCOLS.md` §1.5,
//! §2.4; encodings: §1.5, §2.4, §3.

use std::io::Read;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::HeaderMap;

use crate::request::{Body, BodyError, Encoding};

/// and reads the 413 instead of a connection reset.
const DRAIN_LIMIT: usize = 64 * 1024 * 1024;

pub(crate) enum ReadOutcome {
    Complete(Bytes),
    TooLarge { read: usize, close: bool },
    Broken { read: usize },
}

pub(crate) async fn read_body(mut body: Incoming, declared: Option<u64>, max: usize, expect_continue: bool) -> ReadOutcome {
    if let Some(n) = declared {
        if n > max as u64 {
            if expect_continue || n > DRAIN_LIMIT as u64 {
                return ReadOutcome::TooLarge { read: 0, close: true };
            }
            return drain(body, 0).await;
        }
    }
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => {
                if let Ok(data) = f.into_data() {
                    if buf.len() + data.len() > max {
                        let read = buf.len() + data.len();
                        drop(buf);
                        return drain(body, read).await;
                    }
                    buf.extend_from_slice(&data);
                }
            }
            Err(_) => return ReadOutcome::Broken { read: buf.len() },
        }
    }
    ReadOutcome::Complete(buf.freeze())
}

async fn drain(mut body: Incoming, mut read: usize) -> ReadOutcome {
    while read <= DRAIN_LIMIT {
        match body.frame().await {
            None => return ReadOutcome::TooLarge { read, close: false },
            Some(Ok(f)) => {
                if let Ok(d) = f.into_data() {
                    read += d.len();
                }
            }
            Some(Err(_)) => return ReadOutcome::Broken { read },
        }
    }
    ReadOutcome::TooLarge { read, close: true }
}

/// Undoes Content-Encoding; the decompressed size is bounded by `max`.
pub(crate) fn decode(headers: &HeaderMap, wire: Bytes, max: usize) -> Body {
    let mut codings: Vec<String> = Vec::new();
    for v in headers.get_all(hyper::header::CONTENT_ENCODING) {
        let v = String::from_utf8_lossy(v.as_bytes()).to_ascii_lowercase();
        for c in v.split(',') {
            let c = c.trim();
            if !c.is_empty() && c != "identity" {
                codings.push(c.to_string());
            }
        }
    }
    let encoding = match codings.as_slice() {
        [] => Encoding::Identity,
        [c] if c == "gzip" || c == "x-gzip" => Encoding::Gzip,
        [c] if c == "deflate" => Encoding::Deflate,
        _ => Encoding::Other(codings.join(", ")),
    };
    let data = match &encoding {
        Encoding::Identity => Ok(wire),
        // Multi-member gzip is valid gzip (RFC 1952 §2.2).
        Encoding::Gzip => inflate(flate2::read::MultiGzDecoder::new(&wire[..]), max),
        // HTTP "deflate" is zlib (RFC 9110 §8.4.1.2).
        Encoding::Deflate => inflate(flate2::read::ZlibDecoder::new(&wire[..]), max),
        Encoding::Other(c) => Err(BodyError::Unsupported(c.clone())),
    };
    Body { encoding, data }
}

fn inflate(r: impl Read, max: usize) -> Result<Bytes, BodyError> {
    let mut out = Vec::new();
    match r.take(max as u64 + 1).read_to_end(&mut out) {
        Ok(_) if out.len() > max => Err(BodyError::TooLarge),
        Ok(_) => Ok(Bytes::from(out)),
        Err(e) => Err(BodyError::Corrupt(e.to_string())),
    }
}
