//! `Secret`: a string that is never printed and is zeroed when dropped.
//!
//! Design: every credential the agent holds (SIEM passwords and tokens, a Sumo Logic URL, the
//! Datadog API key, the Azure client secret, the pseudonymisation key) is wrapped in [`Secret`]
//! from the moment the config reader produces it. Its own module, so that the stages that hold
//! secrets (sink, transform) and the config reader that makes them depend on it and not on
//! each other.
//!
//! Invariants (ARCHITECTURE.md invariant 8 rests on them):
//! - `Debug` prints `<redacted>`; there is no `Display`: the value leaves only through
//!   [`Secret::expose`], at the point of use;
//! - the bytes are overwritten on drop (best effort, see below).

use std::fmt;

/// A secret string (password, token, a Sumo Logic URL, a pseudonymisation key). Never printed;
/// its bytes, including spare capacity, are overwritten with zeros when it is dropped (through
/// `zeroize`, whose volatile writes the optimiser cannot remove). Best effort: copies that
/// libraries make (an HTTP header value, the YAML parser's tree) are outside its reach.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_debug_is_redacted() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "<redacted>");
    }
}
