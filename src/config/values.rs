//! Value parsers of the config reader: `${VAR}` expansion (and hiding the values again in
//! problems), "did you mean" for unknown keys, HTTP header lines, loopback hosts. Durations and
//! sizes are in `crate::units`, which the command line uses too.
//!
//! Invariants:
//! - an error never quotes a secret: a malformed header shows its shape only, and every
//!   `${VAR}` value is replaced by its name before a problem is shown.

/// Expands `${VAR}` from the environment; `$$` is a literal `$`. An unset variable is an error.
pub(super) fn expand_env(s: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(r) = after.strip_prefix('{') {
            let Some(end) = r.find('}') else {
                return Err("unterminated ${ in value; write ${NAME} or $$ for a literal $".into());
            };
            let name = &r[..end];
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("invalid variable name ${{{name}}}; use letters, digits and _"));
            }
            match env(name) {
                Some(v) => out.push_str(&v),
                None => {
                    return Err(format!(
                        "environment variable {name} is not set; export it before starting the agent, or use a *_file key"
                    ))
                }
            }
            rest = &r[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Shows `${NAME}` instead of the value of every variable the text refers to: any value may be
/// a secret (a token put in the wrong key, a Sumo Logic URL with a typo), and error messages
/// quote what they got (found by the config fuzz target).
pub(super) fn hide_env_values<'a>(shown: impl IntoIterator<Item = &'a mut String>, text: &str, env: &dyn Fn(&str) -> Option<String>) {
    let mut vars: Vec<(String, String)> = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("${") {
        rest = &rest[i + 2..];
        if let Some(end) = rest.find('}') {
            let name = &rest[..end];
            if let Some(v) = env(name).filter(|v| v.len() >= 3) {
                vars.push((name.to_string(), v));
            }
        }
    }
    // Longest values first, so a value containing another is hidden whole.
    vars.sort_by_key(|(_, v)| std::cmp::Reverse(v.len()));
    for p in shown {
        for (name, v) in &vars {
            if p.contains(v.as_str()) {
                *p = p.replace(v.as_str(), &format!("${{{name}}}"));
            }
        }
    }
}

/// The known key closest to an unknown one, if it is close enough to be a typo
/// (`platfrom` -> `platform`, `max_byte` -> `max_bytes`).
pub(super) fn did_you_mean<'a>(unknown: &str, known: &'a [String]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (strsim::damerau_levenshtein(unknown, k), k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4) && *d < k.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k.as_str())
}

/// Checks a header name per RFC 9110 token rules.
fn valid_header_name(n: &str) -> bool {
    !n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

pub(super) fn parse_header(raw: &str) -> Result<(String, String), String> {
    if raw.contains('\r') || raw.contains('\n') {
        return Err("must not contain CR or LF (header injection); put the header on one line".into());
    }
    let Some((name, value)) = raw.split_once(':') else {
        return Err(format!(
            "expected \"Name: value\" (for example \"Authorization: Bearer TOKEN\"), got {}",
            redact_header_for_error(raw)
        ));
    };
    let name = name.trim();
    let value = value.trim();
    if !valid_header_name(name) {
        return Err(format!(
            "expected \"Name: value\" (for example \"Authorization: Bearer TOKEN\"); {name:?} is not a valid header name"
        ));
    }
    if value.is_empty() {
        return Err(format!("header {name:?} has an empty value; check that the token variable is set"));
    }
    if value.bytes().any(|b| b < 0x20 && b != b'\t' || b == 0x7f) {
        return Err(format!("header {name:?} value contains control characters"));
    }
    Ok((name.to_string(), value.to_string()))
}

/// For error messages about a malformed header: show its shape, never a token.
fn redact_header_for_error(raw: &str) -> String {
    let words: Vec<&str> = raw.split_whitespace().collect();
    match words.as_slice() {
        [] => "an empty string".into(),
        [one] if one.len() <= 12 && !one.chars().any(|c| c.is_ascii_digit()) => format!("{one:?}"),
        [first, ..] if first.len() <= 16 => format!("\"{first} <redacted>\""),
        _ => "a value without a colon (not shown: it may hold a secret)".into(),
    }
}

/// Whether the URL's host is this machine (`localhost`, 127.0.0.0/8, `::1`).
pub(super) fn is_loopback_host(u: &reqwest::Url) -> bool {
    match u.host() {
        Some(url::Host::Domain(d)) => d == "localhost" || d.ends_with(".localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{env, MINIMAL};
    use crate::secret::Secret;
    use crate::settings::Config;
    use crate::sink::settings::Auth;

    #[test]
    fn env_expansion_and_unset_variables() {
        let text = MINIMAL.replace(
            "  url: https://siem.example.com/collector\n",
            "  url: https://siem.example.com/collector\n  auth:\n    header: \"Authorization: Splunk ${HEC_TOKEN}\"\n",
        );
        let c = Config::parse_with_env(&text, &env).unwrap();
        assert_eq!(
            c.siem.auth,
            Auth::Header {
                name: "Authorization".into(),
                value: Secret::new("Splunk abc-123")
            }
        );
        let bad = text.replace("HEC_TOKEN", "NOPE_UNSET");
        let e = Config::parse_with_env(&bad, &env).unwrap_err().to_string();
        assert!(e.contains("siem.auth.header: environment variable NOPE_UNSET is not set"), "{e}");
    }
}
