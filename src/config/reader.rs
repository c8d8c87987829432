//! The reader: a walker over the YAML tree that records every problem with its dotted key.
//!
//! Design: each section's parser asks a [`Node`] for its keys by name (`string`, `bool`,
//! `duration`, `secret`, `child` ...); a value of the wrong shape records a problem and gives
//! the default, so one pass finds every problem. [`Node::finish`] turns whatever the parser did
//! not ask for into an "unknown key" problem, with the nearest asked-for key as a suggestion.
//! Before any of this, [`check_flow_nesting`] refuses YAML nested deep enough to make the
//! scanner slow.
//!
//! Invariants:
//! - a problem always names the full dotted key (`siem.auth.header`), or the line and column
//!   when there is no key yet;
//! - a secret leaves the reader only as a [`Secret`]; `${VAR}` values are expanded here and
//!   nowhere else;
//! - no key is silently ignored: each is either asked for or reported as unknown.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use serde_yaml::Value;

use super::values::{did_you_mean, expand_env};
use crate::secret::Secret;
use crate::transform::FieldPath;
use crate::units::{parse_duration, parse_size};

/// One problem in a config file: the dotted key it is about and what is wrong (with what to do
/// next). Shown as `key: message`, or the message alone when it concerns the whole file
/// (`not valid YAML: ...`); that line is the text `check-config` and a failed reload print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The dotted key (`siem.auth.header`, `siem.url[1]`); empty for the whole file.
    pub key: String,
    pub message: String,
}

impl Problem {
    /// A problem that no key owns (the file cannot be read, is not YAML ...).
    pub(crate) fn whole_file(message: impl Into<String>) -> Problem {
        Problem {
            key: String::new(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

/// Deepest nesting of flow collections (`[ ]`, `{ }`) a config may use. A real config needs two
/// or three levels; serde_yaml's own limit (128) only applies after its scanner has read the
/// whole document, and that scanner costs O(tokens × depth): 400 KB of `siem: [[[[…` took
/// minutes to reject.
pub(super) const MAX_FLOW_NESTING: usize = 64;

/// Rejects YAML whose `[`/`{` nesting exceeds [`MAX_FLOW_NESTING`], before serde_yaml parses
/// it. Runs libyaml's own scanner (the one serde_yaml uses, so brackets inside quotes, comments
/// and block scalars count exactly as they do there) token by token and stops at the first
/// token past the limit: the scan never gets deep, so its cost stays linear. Scanner errors are
/// left to serde_yaml, which reports them with their position.
pub(super) fn check_flow_nesting(text: &str) -> Result<(), String> {
    use std::mem::MaybeUninit;
    let mut depth = 0usize;
    let mut too_deep = None;
    // SAFETY: the parser is initialised before use and deleted once at the end; the input
    // pointer and length come from `text`, which outlives the parser; each token is initialised
    // by `yaml_parser_scan` (which zeroes it first, even when it fails) and deleted once.
    unsafe {
        let mut parser = MaybeUninit::<unsafe_libyaml::yaml_parser_t>::uninit();
        if !unsafe_libyaml::yaml_parser_initialize(parser.as_mut_ptr()).ok {
            return Ok(());
        }
        let parser = parser.as_mut_ptr();
        unsafe_libyaml::yaml_parser_set_input_string(parser, text.as_ptr(), text.len() as u64);
        loop {
            let mut token = MaybeUninit::<unsafe_libyaml::yaml_token_t>::uninit();
            if !unsafe_libyaml::yaml_parser_scan(parser, token.as_mut_ptr()).ok {
                break;
            }
            let token = token.as_mut_ptr();
            let kind = (*token).type_;
            let mark = (*token).start_mark;
            unsafe_libyaml::yaml_token_delete(token);
            match kind {
                unsafe_libyaml::YAML_FLOW_SEQUENCE_START_TOKEN | unsafe_libyaml::YAML_FLOW_MAPPING_START_TOKEN => {
                    depth += 1;
                    if depth > MAX_FLOW_NESTING {
                        too_deep = Some((mark.line + 1, mark.column + 1));
                        break;
                    }
                }
                unsafe_libyaml::YAML_FLOW_SEQUENCE_END_TOKEN | unsafe_libyaml::YAML_FLOW_MAPPING_END_TOKEN => {
                    depth = depth.saturating_sub(1)
                }
                // NO_TOKEN: the scanner stopped (an error serde_yaml will report).
                unsafe_libyaml::YAML_STREAM_END_TOKEN | unsafe_libyaml::YAML_NO_TOKEN => break,
                _ => {}
            }
        }
        unsafe_libyaml::yaml_parser_delete(parser);
    }
    match too_deep {
        None => Ok(()),
        Some((line, column)) => Err(format!(
            "line {line} column {column}: `[` and `{{` nest deeper than {MAX_FLOW_NESTING} levels; a config needs only a few: look for an unclosed or stray bracket there"
        )),
    }
}

/// A reader over one YAML mapping that records problems with dotted keys.
pub(super) struct Node<'e> {
    pub(super) path: String,
    pub(super) map: BTreeMap<String, Value>,
    pub(super) errs: Rc<RefCell<Vec<Problem>>>,
    /// Dotted keys of secrets written literally in the file (not `${VAR}`, not `*_file`).
    pub(super) inline: Rc<RefCell<Vec<String>>>,
    /// Where `*_file` secrets were read from.
    pub(super) secret_files: Rc<RefCell<Vec<PathBuf>>>,
    pub(super) env: &'e dyn Fn(&str) -> Option<String>,
    /// Every key this section's parser asked for, present or not: the candidates for a
    /// "did you mean" on an unknown key.
    pub(super) asked: Vec<String>,
}

impl<'e> Node<'e> {
    pub(super) fn root(v: Value, errs: Rc<RefCell<Vec<Problem>>>, env: &'e dyn Fn(&str) -> Option<String>) -> Node<'e> {
        let mut n = Node {
            path: String::new(),
            map: BTreeMap::new(),
            errs,
            inline: Rc::default(),
            secret_files: Rc::default(),
            env,
            asked: Vec::new(),
        };
        match v {
            Value::Mapping(m) => n.map = to_map(m, "", &mut n.errs.borrow_mut()),
            Value::Null => {}
            _ => n.err_raw("the config must be a YAML mapping (key: value), e.g. `siem:` at the top".into()),
        }
        n
    }

    /// Whether a problem was already recorded under `key` (to avoid a second, vaguer one).
    pub(super) fn has_error_under(&self, k: &str) -> bool {
        let key = self.key(k);
        self.errs.borrow().iter().any(|p| p.key.starts_with(&key))
    }

    pub(super) fn key(&self, k: &str) -> String {
        if self.path.is_empty() {
            k.to_string()
        } else {
            format!("{}.{}", self.path, k)
        }
    }

    /// A problem with the whole file rather than with one key.
    pub(super) fn err_raw(&mut self, msg: String) {
        self.errs.borrow_mut().push(Problem::whole_file(msg));
    }

    /// A problem with key `k` of this section (`""`: the section itself).
    pub(super) fn err(&mut self, k: &str, msg: impl fmt::Display) {
        let key = if k.is_empty() { self.path.clone() } else { self.key(k) };
        self.errs.borrow_mut().push(Problem {
            key,
            message: msg.to_string(),
        });
    }

    pub(super) fn has(&self, k: &str) -> bool {
        self.map.get(k).is_some_and(|v| !v.is_null())
    }

    /// A nested mapping; `None` when absent or null.
    pub(super) fn child(&mut self, k: &str) -> Option<Node<'e>> {
        let v = self.take(k)?;
        let path = self.key(k);
        match v {
            Value::Null => None,
            Value::Mapping(m) => {
                let map = to_map(m, &path, &mut self.errs.borrow_mut());
                Some(Node {
                    path,
                    map,
                    errs: self.errs.clone(),
                    inline: self.inline.clone(),
                    secret_files: self.secret_files.clone(),
                    env: self.env,
                    asked: Vec::new(),
                })
            }
            other => {
                self.err(k, format!("expected a mapping of keys, got {}", describe(&other)));
                None
            }
        }
    }

    /// Takes the value of `k` out of the mapping (what remains at `finish` is unknown), and
    /// remembers that the parser knows `k`.
    pub(super) fn take(&mut self, k: &str) -> Option<Value> {
        self.asked.push(k.to_string());
        self.map.remove(k)
    }

    pub(super) fn finish(mut self) {
        let keys: Vec<String> = self.map.keys().cloned().collect();
        for k in keys {
            let msg = match did_you_mean(&k, &self.asked) {
                Some(known) => format!("unknown key; did you mean `{known}`?"),
                None => "unknown key; check the spelling against config/*.yaml examples".to_string(),
            };
            self.err(&k, msg);
        }
    }

    /// A string with `${VAR}` expanded.
    pub(super) fn string(&mut self, k: &str) -> Option<String> {
        let v = self.take(k)?;
        match v {
            Value::Null => None,
            Value::String(s) => self.expand(k, &s),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            other => {
                self.err(k, format!("expected a string, got {}", describe(&other)));
                None
            }
        }
    }

    pub(super) fn expand(&mut self, k: &str, s: &str) -> Option<String> {
        match expand_env(s, self.env) {
            Ok(v) => Some(v),
            Err(msg) => {
                self.err(k, msg);
                None
            }
        }
    }

    pub(super) fn required_string(&mut self, k: &str, hint: &str) -> Option<String> {
        let s = self.string(k);
        if s.is_none() && !self.has_error_under(k) {
            self.err(k, format!("required; {hint}"));
        }
        s
    }

    pub(super) fn bool(&mut self, k: &str, default: bool) -> bool {
        match self.take(k) {
            None | Some(Value::Null) => default,
            Some(Value::Bool(b)) => b,
            Some(Value::String(s)) => match self.expand(k, &s).as_deref() {
                Some("true") => true,
                Some("false") => false,
                Some(other) => {
                    self.err(k, format!("expected true or false, got {other:?}"));
                    default
                }
                None => default,
            },
            Some(other) => {
                self.err(k, format!("expected true or false, got {}", describe(&other)));
                default
            }
        }
    }

    pub(super) fn uint(&mut self, k: &str, default: u64, min: u64, max: u64) -> u64 {
        let v = match self.take(k) {
            None | Some(Value::Null) => return default,
            Some(Value::Number(n)) => n.as_u64(),
            Some(Value::String(s)) => self.expand(k, &s).and_then(|s| s.trim().parse::<u64>().ok()),
            Some(_) => None,
        };
        match v {
            Some(n) if (min..=max).contains(&n) => n,
            Some(n) => {
                self.err(k, format!("{n} is out of range; use a whole number from {min} to {max}"));
                default
            }
            None => {
                self.err(k, format!("expected a whole number from {min} to {max}"));
                default
            }
        }
    }

    /// The text of `k` for a value parser: a string (with `${VAR}` expanded) or a number;
    /// `None` when absent or after recording a problem (`expected` names the form wanted).
    fn unit_text(&mut self, k: &str, expected: &str) -> Option<String> {
        match self.take(k) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => self.expand(k, &s),
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(other) => {
                self.err(k, format!("expected {expected}, got {}", describe(&other)));
                None
            }
        }
    }

    pub(super) fn duration(&mut self, k: &str, default: Duration) -> Duration {
        let Some(raw) = self.unit_text(k, "a duration like 250ms, 1s or 2m") else {
            return default;
        };
        match parse_duration(&raw) {
            Ok(d) => d,
            Err(msg) => {
                self.err(k, msg);
                default
            }
        }
    }

    pub(super) fn size(&mut self, k: &str, default: u64, min: u64) -> u64 {
        let Some(raw) = self.unit_text(k, "a size like 512KiB, 1MiB or 2GB") else {
            return default;
        };
        match parse_size(&raw) {
            Ok(n) if n >= min => n,
            Ok(n) => {
                self.err(k, format!("{n} bytes is too small; use at least {min} bytes"));
                default
            }
            Err(msg) => {
                self.err(k, msg);
                default
            }
        }
    }

    /// A list of dotted field paths (`[subject, location.city]`); `None` when absent.
    pub(super) fn field_paths(&mut self, k: &str) -> Option<Vec<FieldPath>> {
        let v = self.take(k)?;
        let items = match v {
            Value::Null => return None,
            Value::Sequence(items) => items,
            other => {
                self.err(
                    k,
                    format!(
                        "expected a list of field names like [subject, location.city], got {}",
                        describe(&other)
                    ),
                );
                return None;
            }
        };
        let mut out = Vec::new();
        for (i, item) in items.into_iter().enumerate() {
            match item {
                Value::String(s) => match FieldPath::parse(&s) {
                    Some(p) => out.push(p),
                    None => self.err(
                        &format!("{k}[{i}]"),
                        format!("{s:?} is not a field name; use names separated by dots, like location.city"),
                    ),
                },
                other => self.err(&format!("{k}[{i}]"), format!("expected a field name, got {}", describe(&other))),
            }
        }
        Some(out)
    }

    /// One of a fixed set of words.
    pub(super) fn choice<T: Copy>(&mut self, k: &str, default: T, options: &[(&str, T)]) -> T {
        let Some(s) = self.string(k) else { return default };
        for (name, v) in options {
            if s == *name {
                return *v;
            }
        }
        let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
        self.err(k, format!("expected one of {}, got {s:?}", names.join(" | ")));
        default
    }

    /// Records `k` as an inline secret when its raw value is a literal (no `${VAR}` in it), so
    /// `run` can warn when such a file is readable by others.
    pub(super) fn note_if_literal(&mut self, k: &str) {
        if matches!(self.map.get(k), Some(Value::String(raw)) if !raw.contains("${")) {
            self.note_inline_secret(k);
        }
    }

    /// Records `k` as a secret written literally in the file.
    pub(super) fn note_inline_secret(&mut self, k: &str) {
        let key = self.key(k);
        self.inline.borrow_mut().push(key);
    }

    /// How many problems have been recorded so far, in the whole file.
    pub(super) fn problem_count(&self) -> usize {
        self.errs.borrow().len()
    }

    /// A secret that may be given inline (`key`) or from a file (`key_file`).
    pub(super) fn secret(&mut self, k: &str) -> Option<Secret> {
        let file_key = format!("{k}_file");
        self.note_if_literal(k);
        let inline = self.string(k);
        let file = self.string(&file_key);
        match (inline, file) {
            (Some(_), Some(_)) => {
                self.err(k, format!("give either {k} or {file_key}, not both"));
                None
            }
            (Some(v), None) => Some(Secret::new(v)),
            (None, Some(path)) => {
                self.secret_files.borrow_mut().push(PathBuf::from(&path));
                match std::fs::read_to_string(&path) {
                    Ok(s) => {
                        let s = Secret::new(s);
                        Some(Secret::new(s.expose().trim_end_matches(['\n', '\r'])))
                    }
                    Err(e) => {
                        self.err(&file_key, format!("cannot read secret file {path}: {e}"));
                        None
                    }
                }
            }
            (None, None) => None,
        }
    }
}

pub(super) fn to_map(m: serde_yaml::Mapping, path: &str, errs: &mut Vec<Problem>) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for (k, v) in m {
        match k {
            Value::String(s) => {
                out.insert(s, v);
            }
            other => errs.push(Problem {
                key: if path.is_empty() { "(top level)" } else { path }.to_string(),
                message: format!("keys must be strings, got {}", describe(&other)),
            }),
        }
    }
    out
}

pub(super) fn describe(v: &Value) -> String {
    match v {
        Value::Null => "nothing".into(),
        Value::Bool(b) => format!("{b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("{s:?}"),
        Value::Sequence(_) => "a list".into(),
        Value::Mapping(_) => "a mapping".into(),
        Value::Tagged(_) => "a tagged value".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{env, MINIMAL};
    use super::*;
    use crate::settings::Config;
    use crate::sink::settings::Auth;

    #[test]
    fn flow_nesting_counts_only_real_brackets_up_to_the_limit() {
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(check_flow_nesting(&format!("a: {}\n", deep(MAX_FLOW_NESTING))).is_ok());
        let e = check_flow_nesting(&format!("a: 1\nb: {}\n", deep(MAX_FLOW_NESTING + 1))).unwrap_err();
        assert!(e.starts_with("line 2 column 68: "), "{e}");
        // Brackets in quotes, comments, block scalars and plain scalars are text, not nesting.
        let many = "[".repeat(500);
        let text = format!("a: \"{many}\"\nb: '{many}'\n# {many}\nc: |\n  {many}\nd: x{many}\n");
        assert!(check_flow_nesting(&text).is_ok());
        // Siblings do not add up; a scanner error is left to serde_yaml's message.
        assert!(check_flow_nesting(&format!("a: [{}]\n", vec!["[1]"; 200].join(", "))).is_ok());
        assert!(check_flow_nesting("a: \"unclosed\n").is_ok());
    }

    #[test]
    fn literal_secrets_are_listed_but_env_and_file_secrets_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "from-file\n").unwrap();
        let text = MINIMAL.replace(
            "  url: https://siem.example.com/collector\n",
            &format!(
                "  url: https://siem.example.com/collector\n  auth:\n    basic: {{ username: u, password_file: {} }}\n",
                pw.display()
            ),
        );
        let c = Config::parse_with_env(&text, &env).unwrap();
        assert!(c.inline_secrets.is_empty(), "{:?}", c.inline_secrets);
        assert_eq!(
            c.siem.auth,
            Auth::Basic {
                username: "u".into(),
                password: Secret::new("from-file")
            }
        );
        let text = MINIMAL.replace(
            "  url: https://siem.example.com/collector\n",
            "  url: https://siem.example.com/collector\n  auth:\n    header: \"Authorization: Bearer ${HEC_TOKEN}\"\n",
        );
        assert!(Config::parse_with_env(&text, &env).unwrap().inline_secrets.is_empty());
        let text = MINIMAL.replace(
            "  url: https://siem.example.com/collector\n",
            "  url: https://siem.example.com/collector\n  auth:\n    basic: { username: u, password: hunter2 }\n",
        );
        assert_eq!(
            Config::parse_with_env(&text, &env).unwrap().inline_secrets,
            ["siem.auth.basic.password"]
        );
        let text = MINIMAL.replace(
            "https://siem.example.com/collector",
            "https://c.sumologic.com/receiver/v1/http/ZaVnC4tok",
        );
        assert_eq!(Config::parse_with_env(&text, &env).unwrap().inline_secrets, ["siem.url"]);
    }
}
