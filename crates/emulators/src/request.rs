//! What a platform sees of a request: its [`Route`] (decided before the body is read), the
//! [`Body`] after Content-Encoding was undone (or why it could not be, [`BodyError`]) and the
//! [`Req`] view with header, query and media-type helpers. Encodings follow
//! `docs/PROTOCOLS.md` §1.5 (Splunk), §2.4 (Elasticsearch) and §3 (Sumo Logic); each platform
//! decides which ones it accepts.

use bytes::Bytes;
use hyper::header::HeaderMap;
use hyper::Method;

use crate::reply::Reply;

/// How a platform classifies a request before its body is read.
pub(crate) enum Route {
    /// Carries events: takes faults.
    Ingest,
    /// Health, ack polls, templates, info: never takes faults.
    Control,
    /// 404 / 405, answered as is.
    Reject(Reply),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Encoding {
    Identity,
    Gzip,
    Deflate,
    Other(String),
}

#[derive(Debug, Clone)]
pub(crate) enum BodyError {
    /// A Content-Encoding this server cannot undo.
    Unsupported(String),
    /// The compressed stream is broken.
    Corrupt(String),
    /// Decompressed size is over `max_content_length`.
    TooLarge,
}

/// A request body after Content-Encoding was undone (or not).
pub(crate) struct Body {
    pub encoding: Encoding,
    pub data: Result<Bytes, BodyError>,
}

/// A request as platforms see it.
pub(crate) struct Req<'a> {
    pub method: &'a Method,
    /// Path without the query.
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    pub body: &'a Body,
}

impl Req<'_> {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn query_param(&self, name: &str) -> Option<String> {
        url::form_urlencoded::parse(self.query?.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    /// The media type without parameters, lowercase (`application/json`).
    pub fn content_type(&self) -> Option<String> {
        let v = self.header("content-type")?;
        Some(v.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
    }
}
