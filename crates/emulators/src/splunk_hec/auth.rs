//! HEC token checks (`docs/PROTOCOLS.md` §1.2): the token from `Authorization: Splunk <token>`,
//! Basic (the password is the token) or the query, mapped to codes 2 (missing), 3 (malformed)
//! and 4 (invalid); a disabled token is 403 code 1.

use crate::{basic_credentials, strip_prefix_ci, EmulatorConfig, ExpectedAuth, Reply, Req, State};

use super::codes::hec;

/// What the client presented as a token.
enum Presented {
    Nothing,
    Malformed,
    Token(String),
}

fn presented(req: &Req) -> Presented {
    let Some(v) = req.headers.get("authorization") else {
        return Presented::Nothing;
    };
    let Ok(v) = v.to_str() else {
        return Presented::Malformed;
    };
    if let Some(t) = strip_prefix_ci(v, "Splunk ") {
        let t = t.trim();
        return if t.is_empty() {
            Presented::Malformed
        } else {
            Presented::Token(t.to_string())
        };
    }
    if strip_prefix_ci(v, "Basic ").is_some() {
        // "The user part can be any string" (§1.2): the password is the token.
        return match basic_credentials(req.headers) {
            Some((_, token)) if !token.is_empty() => Presented::Token(token),
            _ => Presented::Malformed,
        };
    }
    Presented::Malformed
}

pub(super) fn authenticate(cfg: &EmulatorConfig, st: &State, req: &Req) -> Result<(), Reply> {
    let expected: Option<String> = match &st.auth {
        ExpectedAuth::None => None,
        ExpectedAuth::Basic { password, .. } => Some(password.clone()),
        ExpectedAuth::Header { name, value } if name.eq_ignore_ascii_case("authorization") => {
            Some(strip_prefix_ci(value, "Splunk ").unwrap_or(value).trim().to_string())
        }
        ExpectedAuth::Header { name, value } => {
            // Not HEC's own scheme (e.g. a proxy's header): present and equal, or codes 2 / 4.
            return match req.header(name) {
                None => Err(hec(2)),
                Some(v) if v == value => disabled(cfg),
                Some(_) => Err(hec(4)),
            };
        }
    };
    let valid = |t: &str| expected.as_deref().is_none_or(|e| e == t);
    match presented(req) {
        Presented::Token(t) if valid(&t) => disabled(cfg),
        Presented::Token(_) => Err(hec(4)),
        Presented::Malformed => Err(hec(3)),
        Presented::Nothing => match req.query_param("token") {
            // splunkd checks the token before whether query-string auth is allowed (§1.2 [3P]).
            Some(t) if !valid(&t) => Err(hec(4)),
            Some(_) if expected.is_some() => Err(hec(16)),
            _ if expected.is_none() => disabled(cfg),
            _ => Err(hec(2)),
        },
    }
}

pub(super) fn disabled(cfg: &EmulatorConfig) -> Result<(), Reply> {
    if cfg.splunk_disabled_token {
        Err(hec(1))
    } else {
        Ok(())
    }
}
