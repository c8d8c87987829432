//! What a platform answers: [`Reply`] (status, headers, body, close) and [`Handled`] (the reply
//! plus whether a platform fault was used), and how a reply becomes a hyper response, including
//! the streamed `x` body of `Fault::HugeBody`. Header text a test injects that HTTP cannot
//! carry is skipped, never a panic. The bodies each platform builds cite their own
//! `docs/PROTOCOLS.md` sections (§1.7, §2.3–2.4, §3, §4).

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, SizeHint};
use hyper::{Response, StatusCode};
use serde_json::Value;

/// A platform's answer to one request.
pub(crate) struct Handled {
    pub reply: Reply,
    /// Whether the platform fault handed to it was applied (else it goes back to the queue).
    pub used_fault: bool,
}

impl From<Reply> for Handled {
    fn from(reply: Reply) -> Handled {
        Handled { reply, used_fault: false }
    }
}

pub(crate) enum ReplyBody {
    Bytes(Bytes),
    /// This many `x` bytes, streamed.
    Repeat(usize),
}

pub(crate) struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: ReplyBody,
    /// Close the connection after answering.
    pub close: bool,
}

impl Reply {
    pub fn empty(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: ReplyBody::Bytes(Bytes::new()),
            close: false,
        }
    }

    pub fn json(status: u16, v: &Value) -> Reply {
        Reply::empty(status)
            .header("content-type", "application/json; charset=UTF-8")
            .body(v.to_string())
    }

    pub fn text(status: u16, s: impl Into<String>) -> Reply {
        Reply::empty(status)
            .header("content-type", "text/plain; charset=UTF-8")
            .body(s.into())
    }

    pub fn header(mut self, name: &str, value: impl Into<String>) -> Reply {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    pub fn body(mut self, b: impl Into<Bytes>) -> Reply {
        self.body = ReplyBody::Bytes(b.into());
        self
    }

    pub(crate) fn has_header(&self, name: &str) -> bool {
        self.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name))
    }

    pub(crate) fn into_response(self) -> Response<RespBody> {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = match self.body {
            ReplyBody::Bytes(b) => Full::new(b).boxed(),
            ReplyBody::Repeat(n) => Repeat { left: n }.boxed(),
        };
        let mut resp = Response::new(body);
        *resp.status_mut() = status;
        let h = resp.headers_mut();
        for (k, v) in self.headers {
            // A test may inject any header text; skip what HTTP cannot carry instead of failing.
            if let (Ok(k), Ok(v)) = (
                hyper::header::HeaderName::from_bytes(k.as_bytes()),
                hyper::header::HeaderValue::from_str(&v),
            ) {
                h.append(k, v);
            }
        }
        if self.close {
            h.insert(hyper::header::CONNECTION, hyper::header::HeaderValue::from_static("close"));
        }
        resp
    }
}

pub(crate) type RespBody = BoxBody<Bytes, Infallible>;

/// A response body of `left` bytes of `x`, streamed in 64 KiB chunks.
struct Repeat {
    left: usize,
}

static FILL: [u8; 64 * 1024] = [b'x'; 64 * 1024];

impl hyper::body::Body for Repeat {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let n = self.left.min(FILL.len());
        self.left -= n;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&FILL[..n])))))
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.left as u64)
    }
}
