//! The credentials check shared by the platforms that use [`crate::ExpectedAuth`] as is
//! (generic, Elasticsearch): missing vs wrong, Basic decoding, and case-insensitive scheme
//! prefixes. Splunk maps the outcome to its own HEC codes (`docs/PROTOCOLS.md` §1.2);
//! Elasticsearch's answers follow §2.5.

use hyper::header::HeaderMap;

use crate::config::ExpectedAuth;

/// Which outcome `ExpectedAuth` gives a request (generic and Elasticsearch; Splunk maps its
/// own codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuthCheck {
    Ok,
    Missing,
    Wrong,
}

pub(crate) fn check_auth(expected: &ExpectedAuth, headers: &HeaderMap) -> AuthCheck {
    match expected {
        ExpectedAuth::None => AuthCheck::Ok,
        ExpectedAuth::Basic { username, password } => match headers.get("authorization") {
            None => AuthCheck::Missing,
            Some(_) => match basic_credentials(headers) {
                Some((u, p)) if &u == username && &p == password => AuthCheck::Ok,
                _ => AuthCheck::Wrong,
            },
        },
        ExpectedAuth::Header { name, value } => match headers.get(name.as_str()) {
            None => AuthCheck::Missing,
            Some(v) if v.as_bytes() == value.as_bytes() => AuthCheck::Ok,
            Some(_) => AuthCheck::Wrong,
        },
    }
}

/// `Authorization: Basic base64(user:password)` decoded, if well-formed.
pub(crate) fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    use base64::Engine;
    let v = headers.get("authorization")?.to_str().ok()?;
    let b64 = strip_prefix_ci(v, "Basic ")?.trim();
    let raw = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (u, p) = s.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

/// `s` without `prefix`, compared ASCII-case-insensitively (auth schemes are case-insensitive).
pub(crate) fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &s[prefix.len()..])
}
