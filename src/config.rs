//! The YAML config: parsing, validation, `${VAR}` expansion and secrets.
//!
//! Design: the file is parsed into a generic YAML tree first, then walked key by key by a small
//! reader (`Node`) that records every problem with its full dotted key instead of stopping at the
//! first one. `check-config` and hot reload both print that list, one problem per line, e.g.
//! `siem.auth.header: expected "Name: value" ...`.
//!
//! Invariants:
//! - unknown keys are errors (a typo must never silently fall back to a default);
//! - secrets are held in [`Secret`], whose `Debug`/`Display` never show the value;
//! - a `Config` value is always fully valid: there is no way to build one from a file with errors.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use serde_yaml::Value;

use crate::audit::AuditConfig;
pub use crate::queue::settings::QueueConfig;
use crate::queue::settings::{DEFAULT_MAX_QUARANTINE_ENTRIES, DEFAULT_QUEUE_MAX_BYTES};
use crate::secret::Secret;
pub use crate::server::{StatusConfig, DEFAULT_STATUS_ADDR};
pub use crate::settings::{Config, LogConfig, LogFormat};
use crate::sink::settings::{
    redact_url, Auth, DeliveryConfig, ElasticConfig, GenericBatch, GenericConfig, MaxInFlight, OnRetryExhausted, Platform, SiemConfig,
    SplunkConfig, SumoConfig, TlsConfig, DEFAULT_LINGER, MAX_IN_FLIGHT,
};
use crate::source::settings::{FileSourceConfig, SocketSourceConfig, SourcesConfig, StartAt};
use crate::transform::{FieldPath, HashRule, Transform, TruncateIp, COMMON_FIELDS};

mod platforms;

/// Every problem found in a config, each naming its dotted key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors {
    pub problems: Vec<String>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            f.write_str(p)?;
        }
        Ok(())
    }
}

impl Config {
    /// Reads and validates a config file. Errors name the file and every bad key.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        Config::parse_with_env(&read_config_file(path)?, &|k| std::env::var(k).ok())
    }

    /// Parses YAML text; `env` resolves `${VAR}` references (injected for tests).
    pub fn parse_with_env(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigErrors> {
        let root = parse_yaml(text)?;
        let errs = Rc::new(RefCell::new(Vec::new()));
        let inline = Rc::new(RefCell::new(Vec::new()));
        let secret_files = Rc::new(RefCell::new(Vec::new()));
        let cfg = {
            let mut root = Node::root(root, errs.clone(), env);
            root.inline = inline.clone();
            root.secret_files = secret_files.clone();
            let cfg = parse_root(&mut root);
            root.finish();
            cfg
        };
        let mut errs = errs.take();
        match cfg {
            Some(mut c) if errs.is_empty() => {
                c.inline_secrets = inline.take();
                c.secret_files = secret_files.take();
                Ok(c)
            }
            _ => {
                if errs.is_empty() {
                    errs.push("config is incomplete".into());
                }
                Err(problems_as_shown(errs, text, env))
            }
        }
    }
}

/// The config file's text. The caller names the file (`FILE: problem`), as for every other
/// problem.
fn read_config_file(path: &Path) -> Result<String, ConfigErrors> {
    std::fs::read_to_string(path).map_err(|e| ConfigErrors {
        problems: vec![format!("cannot read the config file: {e}; check the path and its permissions")],
    })
}

/// The YAML tree, after the nesting check that keeps a hostile file cheap to reject.
fn parse_yaml(text: &str) -> Result<Value, ConfigErrors> {
    check_flow_nesting(text).map_err(|problem| ConfigErrors { problems: vec![problem] })?;
    serde_yaml::from_str(text).map_err(|e| ConfigErrors {
        problems: vec![format!("not valid YAML: {e}")],
    })
}

/// Problems as a user sees them: no environment variable's value (`${NAME}` instead), and one
/// line each, whatever the values quoted in them hold (a CR/LF in a value made a problem span
/// lines; found by the config fuzz target).
fn problems_as_shown(mut errs: Vec<String>, text: &str, env: &dyn Fn(&str) -> Option<String>) -> ConfigErrors {
    hide_env_values(&mut errs, text, env);
    for p in errs.iter_mut() {
        if p.chars().any(char::is_control) {
            *p = p
                .chars()
                .map(|c| {
                    if c.is_control() {
                        c.escape_default().to_string()
                    } else {
                        c.to_string()
                    }
                })
                .collect();
        }
    }
    ConfigErrors { problems: errs }
}

/// What the operator's commands (`status`, `dead-letter`, `quarantine`, `aside`) need from a
/// config: the queue and the status address, nothing else. Read by [`LocalConfig::load`].
#[derive(Debug, Clone)]
pub struct LocalConfig {
    pub queue: QueueConfig,
    pub status: StatusConfig,
}

impl LocalConfig {
    /// Reads only the `queue` and `status` sections, so these commands work exactly when they
    /// are needed most: after a bad edit elsewhere in the file (the running agent keeps its old
    /// config and shows `reload_error`), or in an operator's shell that does not have the SIEM
    /// token's `${VAR}`. Problems in those two sections are still errors; the rest of the file
    /// is not looked at beyond being YAML.
    pub fn load(path: &Path) -> Result<LocalConfig, ConfigErrors> {
        LocalConfig::parse_with_env(&read_config_file(path)?, &|k| std::env::var(k).ok())
    }

    pub fn parse_with_env(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<LocalConfig, ConfigErrors> {
        let root = parse_yaml(text)?;
        let errs = Rc::new(RefCell::new(Vec::new()));
        let (queue, status) = {
            let mut root = Node::root(root, errs.clone(), env);
            (parse_queue_section(&mut root), parse_status(&mut root))
        };
        let mut errs = errs.take();
        match queue {
            Some(queue) if errs.is_empty() => Ok(LocalConfig { queue, status }),
            _ => {
                if errs.is_empty() {
                    errs.push("queue: incomplete".into());
                }
                Err(problems_as_shown(errs, text, env))
            }
        }
    }
}

/// Deepest nesting of flow collections (`[ ]`, `{ }`) a config may use. A real config needs two
/// or three levels; serde_yaml's own limit (128) only applies after its scanner has read the
/// whole document, and that scanner costs O(tokens × depth): 400 KB of `siem: [[[[…` took
/// minutes to reject.
pub const MAX_FLOW_NESTING: usize = 64;

/// Rejects YAML whose `[`/`{` nesting exceeds [`MAX_FLOW_NESTING`], before serde_yaml parses
/// it. Runs libyaml's own scanner (the one serde_yaml uses, so brackets inside quotes, comments
/// and block scalars count exactly as they do there) token by token and stops at the first
/// token past the limit: the scan never gets deep, so its cost stays linear. Scanner errors are
/// left to serde_yaml, which reports them with their position.
fn check_flow_nesting(text: &str) -> Result<(), String> {
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
struct Node<'e> {
    path: String,
    map: BTreeMap<String, Value>,
    errs: Rc<RefCell<Vec<String>>>,
    /// Dotted keys of secrets written literally in the file (not `${VAR}`, not `*_file`).
    inline: Rc<RefCell<Vec<String>>>,
    /// Where `*_file` secrets were read from.
    secret_files: Rc<RefCell<Vec<PathBuf>>>,
    env: &'e dyn Fn(&str) -> Option<String>,
    /// Every key this section's parser asked for, present or not: the candidates for a
    /// "did you mean" on an unknown key.
    asked: Vec<String>,
}

impl<'e> Node<'e> {
    fn root(v: Value, errs: Rc<RefCell<Vec<String>>>, env: &'e dyn Fn(&str) -> Option<String>) -> Node<'e> {
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
    fn has_error_under(&self, k: &str) -> bool {
        let key = self.key(k);
        self.errs.borrow().iter().any(|e| e.starts_with(&key))
    }

    fn key(&self, k: &str) -> String {
        if self.path.is_empty() {
            k.to_string()
        } else {
            format!("{}.{}", self.path, k)
        }
    }

    fn err_raw(&mut self, msg: String) {
        self.errs.borrow_mut().push(msg);
    }

    fn err(&mut self, k: &str, msg: impl fmt::Display) {
        let key = self.key(k);
        let line = if k.is_empty() {
            format!("{}: {msg}", self.path)
        } else {
            format!("{key}: {msg}")
        };
        self.errs.borrow_mut().push(line);
    }

    fn has(&self, k: &str) -> bool {
        self.map.get(k).is_some_and(|v| !v.is_null())
    }

    /// A nested mapping; `None` when absent or null.
    fn child(&mut self, k: &str) -> Option<Node<'e>> {
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
    fn take(&mut self, k: &str) -> Option<Value> {
        self.asked.push(k.to_string());
        self.map.remove(k)
    }

    fn finish(mut self) {
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
    fn string(&mut self, k: &str) -> Option<String> {
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

    fn expand(&mut self, k: &str, s: &str) -> Option<String> {
        match expand_env(s, self.env) {
            Ok(v) => Some(v),
            Err(msg) => {
                self.err(k, msg);
                None
            }
        }
    }

    fn required_string(&mut self, k: &str, hint: &str) -> Option<String> {
        let s = self.string(k);
        if s.is_none() && !self.has_error_under(k) {
            self.err(k, format!("required; {hint}"));
        }
        s
    }

    fn bool(&mut self, k: &str, default: bool) -> bool {
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

    fn uint(&mut self, k: &str, default: u64, min: u64, max: u64) -> u64 {
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

    fn duration(&mut self, k: &str, default: Duration) -> Duration {
        let raw = match self.take(k) {
            None | Some(Value::Null) => return default,
            Some(Value::String(s)) => match self.expand(k, &s) {
                Some(s) => s,
                None => return default,
            },
            Some(Value::Number(n)) => n.to_string(),
            Some(other) => {
                self.err(k, format!("expected a duration like 250ms, 1s or 2m, got {}", describe(&other)));
                return default;
            }
        };
        match parse_duration(&raw) {
            Ok(d) => d,
            Err(msg) => {
                self.err(k, msg);
                default
            }
        }
    }

    fn size(&mut self, k: &str, default: u64, min: u64) -> u64 {
        let raw = match self.take(k) {
            None | Some(Value::Null) => return default,
            Some(Value::String(s)) => match self.expand(k, &s) {
                Some(s) => s,
                None => return default,
            },
            Some(Value::Number(n)) => n.to_string(),
            Some(other) => {
                self.err(k, format!("expected a size like 512KiB, 1MiB or 2GB, got {}", describe(&other)));
                return default;
            }
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
    fn field_paths(&mut self, k: &str) -> Option<Vec<FieldPath>> {
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
    fn choice<T: Copy>(&mut self, k: &str, default: T, options: &[(&str, T)]) -> T {
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
    fn note_if_literal(&mut self, k: &str) {
        if let Some(Value::String(raw)) = self.map.get(k) {
            if !raw.contains("${") {
                let key = self.key(k);
                self.inline.borrow_mut().push(key);
            }
        }
    }

    /// A secret that may be given inline (`key`) or from a file (`key_file`).
    fn secret(&mut self, k: &str) -> Option<Secret> {
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

fn to_map(m: serde_yaml::Mapping, path: &str, errs: &mut Vec<String>) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for (k, v) in m {
        match k {
            Value::String(s) => {
                out.insert(s, v);
            }
            other => errs.push(format!(
                "{}: keys must be strings, got {}",
                if path.is_empty() { "(top level)" } else { path },
                describe(&other)
            )),
        }
    }
    out
}

fn describe(v: &Value) -> String {
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

/// Expands `${VAR}` from the environment; `$$` is a literal `$`. An unset variable is an error.
pub fn expand_env(s: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
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
fn hide_env_values(problems: &mut [String], text: &str, env: &dyn Fn(&str) -> Option<String>) {
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
    for p in problems.iter_mut() {
        for (name, v) in &vars {
            if p.contains(v.as_str()) {
                *p = p.replace(v.as_str(), &format!("${{{name}}}"));
            }
        }
    }
}

/// The known key closest to an unknown one, if it is close enough to be a typo
/// (`platfrom` -> `platform`, `max_byte` -> `max_bytes`).
fn did_you_mean<'a>(unknown: &str, known: &'a [String]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (strsim::damerau_levenshtein(unknown, k), k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4) && *d < k.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k.as_str())
}

/// Parses human durations with `humantime`: `250ms`, `10s`, `10 seconds`, `2m`, `1h30m`,
/// `1day`. A unit is required: a bare `30` is refused (seconds? milliseconds?) with the
/// spelling that was probably meant.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if !t.is_empty() && t.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(format!("{t:?} has no unit; write it with one, e.g. {t}s or {t}ms"));
    }
    let d = humantime::parse_duration(t).map_err(|e| format!("expected a duration like 250ms, 10s, 2m or 1h30m, got {s:?} ({e})"))?;
    if d > Duration::from_secs(86_400 * 365) {
        return Err(format!("duration {s:?} is out of range (at most a year)"));
    }
    Ok(d)
}

/// Parses sizes: `1MiB`, `512KiB`, `1GB`, `1000` (bytes).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("expected a size like 512KiB, 1MiB or 2GB, got {s:?}"))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mib" => 1024.0 * 1024.0,
        "g" | "gb" => 1e9,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" => 1e12,
        "tib" => 1024f64.powi(4),
        other => return Err(format!("unknown size unit {other:?} in {s:?}; use B, KiB, MiB, GiB, KB, MB or GB")),
    };
    let v = n * mult;
    if !v.is_finite() || v < 0.0 || v > u64::MAX as f64 / 2.0 {
        return Err(format!("size {s:?} is out of range"));
    }
    Ok(v as u64)
}

/// Checks a header name per RFC 9110 token rules.
fn valid_header_name(n: &str) -> bool {
    !n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn parse_header(raw: &str) -> Result<(String, String), String> {
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

/// The required `queue` section (the full config and the operator's view both need it).
fn parse_queue_section(root: &mut Node) -> Option<QueueConfig> {
    match root.child("queue") {
        Some(mut n) => {
            let q = parse_queue(&mut n);
            n.finish();
            q
        }
        None => {
            root.err("queue", "required; set queue.path to a directory for the durable queue");
            None
        }
    }
}

fn parse_status(root: &mut Node) -> StatusConfig {
    let n = root.child("status");
    let mut listen: SocketAddr = DEFAULT_STATUS_ADDR.parse().expect("valid default");
    if let Some(mut n) = n {
        if let Some(s) = n.string("listen") {
            match s.parse::<SocketAddr>() {
                Ok(a) => listen = a,
                Err(_) => n.err("listen", format!("expected IP:PORT like 127.0.0.1:8686, got {s:?}")),
            }
        }
        n.finish();
    }
    StatusConfig { listen }
}

fn parse_root(root: &mut Node) -> Option<Config> {
    let siem = match root.child("siem") {
        Some(mut n) => {
            let s = parse_siem(&mut n);
            n.finish();
            s
        }
        None => {
            root.err("siem", "required; add a siem: section with at least url");
            None
        }
    };
    let sources = match root.child("sources") {
        Some(mut n) => {
            let s = parse_sources(&mut n);
            n.finish();
            s
        }
        None => {
            root.err("sources", "required; configure sources.file, sources.socket or both");
            None
        }
    };
    let queue = parse_queue_section(root);
    let delivery = {
        let mut n = root.child("delivery");
        let d = parse_delivery(n.as_mut());
        if let Some(n) = n {
            n.finish();
        }
        d
    };
    let status = parse_status(root);
    let log = {
        let mut format = LogFormat::Text;
        let mut level = "info".to_string();
        if let Some(mut n) = root.child("log") {
            format = n.choice("format", LogFormat::Text, &[("text", LogFormat::Text), ("json", LogFormat::Json)]);
            if let Some(l) = n.string("level") {
                if tracing_subscriber::EnvFilter::try_new(&l).is_err() {
                    n.err("level", format!("expected error | warn | info | debug | trace, got {l:?}"));
                } else {
                    level = l;
                }
            }
            n.finish();
        }
        LogConfig { format, level }
    };
    let transform = root.child("transform").and_then(|mut n| {
        let t = parse_transform(&mut n);
        n.finish();
        t
    });
    let audit = root.child("audit").and_then(|mut n| {
        let a = parse_audit(&mut n);
        n.finish();
        a
    });
    let mut siem = siem?;
    siem.audit = audit;
    Some(Config {
        siem,
        sources: sources?,
        queue: queue?,
        delivery: delivery?,
        status,
        log,
        transform,
        inline_secrets: Vec::new(),
        secret_files: Vec::new(),
    })
}

/// The `audit:` section: on unless `enabled: false`.
fn parse_audit(n: &mut Node) -> Option<AuditConfig> {
    let enabled = n.bool("enabled", true);
    let agent_id = match n.string("agent_id") {
        Some(id) if id.trim().is_empty() || id.len() > 256 || id.chars().any(char::is_control) => {
            n.err("agent_id", "must be 1 to 256 printable characters, e.g. the host name");
            None
        }
        Some(id) => Some(id),
        None => crate::sink::splunk_hec::hostname(),
    };
    let heartbeat_interval = if n.has("heartbeat_interval") {
        let d = n.duration("heartbeat_interval", Duration::ZERO);
        if d > Duration::ZERO && d < Duration::from_secs(1) {
            n.err(
                "heartbeat_interval",
                "is too short; use at least 1s (e.g. 5m), or leave it out to send no heartbeats",
            );
        }
        (d >= Duration::from_secs(1)).then_some(d)
    } else {
        None
    };
    if agent_id.is_none() && !n.has_error_under("agent_id") {
        n.err("agent_id", "this host's name could not be read; set audit.agent_id");
    }
    (enabled && agent_id.is_some()).then(|| AuditConfig {
        agent_id: agent_id.unwrap_or_default(),
        heartbeat_interval,
    })
}

/// The `transform:` section (see `transform.rs` for what each rule does). Rules are checked
/// against each other so that none silently does nothing.
fn parse_transform(n: &mut Node) -> Option<Transform> {
    let allow = n.field_paths("allow");
    let drop = n.field_paths("drop").unwrap_or_default();
    let truncate_ip = n.child("truncate_ip").map(|mut t| {
        let fields = t
            .field_paths("fields")
            .unwrap_or_else(|| vec![FieldPath(vec!["ip_address".into()])]);
        let ipv4_prefix = t.uint("ipv4_prefix", 24, 0, 32) as u8;
        let ipv6_prefix = t.uint("ipv6_prefix", 48, 0, 128) as u8;
        t.finish();
        TruncateIp {
            fields,
            ipv4_prefix,
            ipv6_prefix,
        }
    });
    let hash = n.child("hash").and_then(|mut h| {
        let fields = h.field_paths("fields");
        let key = h.secret("key");
        if fields.as_ref().is_none_or(|f| f.is_empty()) && !h.has_error_under("fields") {
            h.err("fields", "required; list the fields to pseudonymise, e.g. [subject]");
        }
        match &key {
            None if !h.has_error_under("key") => h.err(
                "key",
                "required; set key: \"${PSEUDONYM_KEY}\" or key_file (e.g. from `openssl rand -hex 32`)",
            ),
            Some(k) if k.expose().len() < 16 => h.err(
                "key",
                "is too short: use at least 16 random characters (e.g. `openssl rand -hex 32`), or pseudonyms can be reversed by guessing",
            ),
            _ => {}
        }
        h.finish();
        Some(HashRule {
            fields: fields?,
            key: key?,
        })
    });
    let is_common = |p: &FieldPath| COMMON_FIELDS.contains(&p.root());
    for (i, p) in drop.iter().enumerate() {
        if is_common(p) {
            n.err(
                &format!("drop[{i}]"),
                format!("{p} is one of the four common fields (event_type, timestamp, org_id, transaction_id) that every event keeps"),
            );
        }
    }
    let truncated: Vec<&FieldPath> = truncate_ip.iter().flat_map(|t| &t.fields).collect();
    let hashed: Vec<&FieldPath> = hash.iter().flat_map(|h| &h.fields).collect();
    for (key, fields) in [("truncate_ip.fields", &truncated), ("hash.fields", &hashed)] {
        for (i, p) in fields.iter().enumerate() {
            let at = format!("{key}[{i}]");
            if key == "truncate_ip.fields" && is_common(p) {
                n.err(&at, format!("{p} is a common field, not an IP address"));
            }
            if key == "hash.fields" && (p.root() == "event_type" || p.root() == "timestamp") {
                n.err(
                    &at,
                    format!("{p} cannot be hashed: the SIEM needs event_type and timestamp as they are (org_id and transaction_id may be hashed)"),
                );
            }
            if let Some(d) = drop.iter().find(|d| d.covers(p)) {
                n.err(
                    &at,
                    format!("{p} is removed by transform.drop ({d}), so this rule would never apply"),
                );
            }
            if let Some(a) = &allow {
                if !is_common(p) && !a.iter().any(|a| a.covers(p)) {
                    n.err(&at, format!("{p} is not kept by transform.allow; add it there or remove this rule"));
                }
            }
        }
    }
    for p in &truncated {
        if hashed.iter().any(|h| h.covers(p) || p.covers(h)) {
            n.err(
                "hash.fields",
                format!("{p} is also in transform.truncate_ip.fields; choose one rule per field"),
            );
        }
    }
    let t = Transform {
        allow,
        drop,
        truncate_ip,
        hash,
    };
    let empty = t.allow.is_none() && t.drop.is_empty() && t.truncate_ip.is_none() && t.hash.is_none();
    (!empty).then_some(t)
}

fn parse_siem(n: &mut Node) -> Option<SiemConfig> {
    let enabled = n.bool("enabled", true);
    let url_literal = match n.map.get("url") {
        Some(Value::String(s)) => !s.contains("${"),
        Some(Value::Sequence(items)) => items.iter().any(|v| matches!(v, Value::String(s) if !s.contains("${"))),
        _ => false,
    };
    let platform = n.choice(
        "platform",
        Platform::Auto,
        &[
            ("auto", Platform::Auto),
            ("splunk_hec", Platform::SplunkHec),
            ("elasticsearch", Platform::Elasticsearch),
            ("sumo_logic", Platform::SumoLogic),
            ("generic", Platform::Generic),
            ("datadog", Platform::Datadog),
            ("azure_monitor", Platform::AzureMonitor),
        ],
    );
    // `auto` with a Datadog intake URL uses the section too (see `Platform::infer_from_url`).
    let dd_url = match n.map.get("url") {
        Some(Value::String(s)) => s.trim().trim_end_matches('/').ends_with("/api/v2/logs"),
        Some(Value::Sequence(items)) => {
            matches!(items.first(), Some(Value::String(s)) if s.trim().trim_end_matches('/').ends_with("/api/v2/logs"))
        }
        _ => false,
    };
    let datadog = platforms::parse_datadog(n, platform == Platform::Datadog || (platform == Platform::Auto && dd_url));
    let azure_monitor = platforms::parse_azure(n, platform == Platform::AzureMonitor);
    // Datadog and Azure Monitor derive the URL from their own section when siem.url is unset.
    let mut url_key = "url";
    let urls = if n.has("url") || !matches!(platform, Platform::Datadog | Platform::AzureMonitor) {
        if platform == Platform::AzureMonitor && azure_monitor.endpoint.is_some() {
            n.err(
                "azure_monitor.endpoint",
                "give the endpoint once: either siem.url or siem.azure_monitor.endpoint",
            );
        }
        parse_siem_urls(n, None)
    } else {
        match platforms::derived_url(n, platform, &datadog, &azure_monitor) {
            Some((k, u)) => {
                url_key = k;
                parse_siem_urls(n, Some((k, u)))
            }
            None => None,
        }
    };
    let url = urls.as_ref().and_then(|u| u.first().cloned());
    let auth = match n.child("auth") {
        None => Auth::None,
        Some(mut a) => {
            let has_basic = a.has("basic");
            let has_header = a.has("header") || a.has("header_file");
            let mut auth = Auth::None;
            if has_basic && has_header {
                a.err("", "choose one method: basic or header, not both");
            }
            if let Some(mut b) = a.child("basic") {
                let username = b.required_string("username", "set the basic auth user name");
                let password = b.secret("password");
                if password.is_none() && !b.has_error_under("password") {
                    b.err("password", "required; set password (e.g. \"${SIEM_PASSWORD}\") or password_file");
                }
                b.finish();
                if let (Some(username), Some(password)) = (username, password) {
                    if username.contains(':') {
                        a.err("basic.username", "must not contain ':'");
                    } else {
                        auth = Auth::Basic { username, password };
                    }
                }
            }
            if let Some(h) = a.secret("header") {
                match parse_header(h.expose()) {
                    Ok((name, value)) => {
                        auth = Auth::Header {
                            name,
                            value: Secret::new(value),
                        }
                    }
                    Err(msg) => a.err("header", msg),
                }
            }
            a.finish();
            auth
        }
    };
    if platform == Platform::AzureMonitor && auth != Auth::None {
        n.err("auth", "is not used with platform azure_monitor: the agent gets its token with siem.azure_monitor.client_id and client_secret; remove siem.auth");
    }
    let generic = {
        let mut g = n.child("generic");
        let batch = g
            .as_mut()
            .map(|g| {
                g.choice(
                    "batch",
                    GenericBatch::None,
                    &[
                        ("none", GenericBatch::None),
                        ("ndjson", GenericBatch::Ndjson),
                        ("json_array", GenericBatch::JsonArray),
                    ],
                )
            })
            .unwrap_or(GenericBatch::None);
        let (max_events, max_bytes, gzip) = batch_limits(g.as_mut(), 500, 1024 * 1024);
        if let Some(g) = g {
            g.finish();
        }
        GenericConfig {
            batch,
            max_events,
            max_bytes,
            gzip,
        }
    };
    let schema = n.choice("schema", crate::schema::Schema::Raw, &crate::schema::Schema::ALL);
    // CIM's data model finds events by a search-time tag on their sourcetype (docs/PLATFORMS.md).
    let default_sourcetype = if schema == crate::schema::Schema::Cim {
        crate::schema::cim::SOURCETYPE
    } else {
        "_json"
    };
    let splunk_hec = {
        let mut s = n.child("splunk_hec");
        let (max_events, max_bytes, gzip) = batch_limits(s.as_mut(), 1000, 1_000_000);
        let cfg = match s.as_mut() {
            Some(s) => SplunkConfig {
                index: s.string("index"),
                source: s.string("source").unwrap_or_else(|| "sendauth-siem".into()),
                sourcetype: s.string("sourcetype").unwrap_or_else(|| default_sourcetype.into()),
                host: s.string("host"),
                gzip,
                max_events,
                max_bytes,
                indexer_ack: s.bool("indexer_ack", false),
                ack_timeout: s.duration("ack_timeout", Duration::from_secs(60)),
                ack_poll_interval: s.duration("ack_poll_interval", Duration::from_secs(1)),
                channel: s.string("channel"),
            },
            None => SplunkConfig {
                index: None,
                source: "sendauth-siem".into(),
                sourcetype: default_sourcetype.into(),
                host: None,
                gzip,
                max_events,
                max_bytes,
                indexer_ack: false,
                ack_timeout: Duration::from_secs(60),
                ack_poll_interval: Duration::from_secs(1),
                channel: None,
            },
        };
        if let Some(ch) = &cfg.channel {
            if uuid::Uuid::parse_str(ch).is_err() {
                if let Some(s) = s.as_mut() {
                    s.err("channel", "must be a GUID like 0aeeac95-ac74-4aa9-b30d-6c4c0ac581ba");
                }
            }
        }
        if let Some(s) = s {
            s.finish();
        }
        cfg
    };
    let elasticsearch = {
        let mut e = n.child("elasticsearch");
        let (max_events, max_bytes, gzip) = batch_limits(e.as_mut(), 1000, 5 * 1024 * 1024);
        let cfg = match e.as_mut() {
            Some(e) => ElasticConfig {
                index: e.string("index"),
                install_template: e.bool("install_template", true),
                template_name: e.string("template_name").unwrap_or_else(|| "sendauth-events".into()),
                data_stream: e.bool("data_stream", false),
                max_events,
                max_bytes,
                gzip,
            },
            None => ElasticConfig {
                index: None,
                install_template: true,
                template_name: "sendauth-events".into(),
                data_stream: false,
                max_events,
                max_bytes,
                gzip,
            },
        };
        if let Some(e) = e {
            e.finish();
        }
        cfg
    };
    let sumo_logic = {
        let mut s = n.child("sumo_logic");
        let (max_events, max_bytes, gzip) = batch_limits(s.as_mut(), 1000, 1_000_000);
        let mut cfg = SumoConfig {
            category: None,
            name: None,
            host: None,
            fields: BTreeMap::new(),
            gzip,
            max_events,
            max_bytes,
        };
        if let Some(s) = s.as_mut() {
            cfg.category = s.string("category");
            cfg.name = s.string("name");
            cfg.host = s.string("host");
            if let Some(mut f) = s.child("fields") {
                let keys: Vec<String> = f.map.keys().cloned().collect();
                for k in keys {
                    if let Some(v) = f.string(&k) {
                        if k.contains([',', '=']) || v.contains([',', '=']) {
                            f.err(&k, "field names and values must not contain ',' or '='");
                        } else {
                            cfg.fields.insert(k, v);
                        }
                    }
                }
                f.finish();
            }
        }
        if let Some(s) = s {
            s.finish();
        }
        cfg
    };
    let tls = {
        let mut t = n.child("tls");
        let cfg = match t.as_mut() {
            Some(t) => TlsConfig {
                ca_file: t.string("ca_file").map(PathBuf::from),
                client_cert: t.string("client_cert").map(PathBuf::from),
                client_key: t.string("client_key").map(PathBuf::from),
                min_version: t.string("min_version"),
                insecure_skip_verify: t.bool("insecure_skip_verify", false),
            },
            None => TlsConfig {
                ca_file: None,
                client_cert: None,
                client_key: None,
                min_version: None,
                insecure_skip_verify: false,
            },
        };
        if let Some(mut t) = t {
            if let Some(v) = &cfg.min_version {
                if v != "1.2" && v != "1.3" {
                    t.err("min_version", format!("expected \"1.2\" or \"1.3\", got {v:?}"));
                }
            }
            for (k, p) in [
                ("ca_file", &cfg.ca_file),
                ("client_cert", &cfg.client_cert),
                ("client_key", &cfg.client_key),
            ] {
                if let Some(p) = p {
                    if !p.is_file() {
                        t.err(k, format!("file {} does not exist or is not readable", p.display()));
                    }
                }
            }
            if cfg.client_cert.is_some() != cfg.client_key.is_some() {
                t.err("client_cert", "client_cert and client_key go together; set both for mTLS");
            }
            t.finish();
        }
        cfg
    };
    let timeout = n.duration("timeout", Duration::from_secs(30));
    let connect_timeout = n.duration("connect_timeout", Duration::from_secs(10));
    let allow_plain_http = n.bool("allow_plain_http", false);
    for u in urls.iter().flatten() {
        if u.scheme() == "http" && !allow_plain_http && !is_loopback_host(u) {
            n.err(
                url_key,
                "plain http:// to a non-loopback host would send events and credentials unencrypted; use https:// or set siem.allow_plain_http: true",
            );
            break;
        }
    }
    if timeout.is_zero() {
        n.err("timeout", "must be greater than 0");
    }
    if let Some(all) = &urls {
        if platform == Platform::Auto && all.len() > 1 {
            let first = Platform::infer_from_url(&all[0]);
            if let Some(other) = all.iter().find(|u| Platform::infer_from_url(u) != first) {
                n.err(
                    "url",
                    format!(
                        "the endpoints look like different platforms ({} is {}, {} is {}); a list is several nodes of one SIEM: set siem.platform, or use the same path on every endpoint",
                        redact_url(&all[0], first),
                        first.as_str(),
                        redact_url(other, Platform::infer_from_url(other)),
                        Platform::infer_from_url(other).as_str()
                    ),
                );
            }
        }
        let before = n.errs.borrow().len();
        for u in all {
            check_platform(n, u, platform, &splunk_hec, &elasticsearch, &sumo_logic);
            if n.errs.borrow().len() > before {
                // One endpoint's problem is usually every endpoint's: say it once.
                break;
            }
        }
    }
    if let Some(u) = &url {
        if platform == Platform::Auto
            && Platform::infer_from_url(u) == Platform::Datadog
            && datadog.api_key.is_none()
            && !n.has_error_under("datadog.api_key")
        {
            n.err(
                "datadog.api_key",
                "required for the Datadog intake; set api_key: \"${DD_API_KEY}\" or api_key_file",
            );
        }
        // A Sumo Logic HTTP Source URL is its credential.
        let sumo = platform == Platform::SumoLogic || (platform == Platform::Auto && Platform::infer_from_url(u) == Platform::SumoLogic);
        if sumo && url_literal {
            let key = n.key("url");
            n.inline.borrow_mut().push(key);
        }
    }
    Some(SiemConfig {
        enabled,
        url: url?,
        urls: urls?,
        platform,
        auth,
        generic,
        splunk_hec,
        elasticsearch,
        sumo_logic,
        datadog,
        azure_monitor,
        tls,
        timeout,
        connect_timeout,
        allow_plain_http,
        schema,
        audit: None,
    })
}

/// `siem.url`: one URL, or a list of URLs of the same SIEM (its nodes). A list must be
/// non-empty, without duplicates, and use one scheme; each URL must be valid on its own.
/// `derived`: the URL a platform's own section gives (key, URL) when `siem.url` is unset.
fn parse_siem_urls(n: &mut Node, derived: Option<(&str, String)>) -> Option<Vec<reqwest::Url>> {
    let hint = "set siem.url to your SIEM's HTTP(S) endpoint";
    let raw: Vec<(String, Option<String>)> = match n.map.get("url") {
        _ if derived.is_some() => {
            let (k, u) = derived.expect("guarded");
            vec![(k.to_string(), Some(u))]
        }
        Some(Value::Sequence(items)) => {
            let items = items.clone();
            n.map.remove("url");
            if items.is_empty() {
                n.err(
                    "url",
                    "is an empty list; give one URL, or a list of the SIEM's endpoints like [https://es1:9200/sendauth/_doc, https://es2:9200/sendauth/_doc]",
                );
                return None;
            }
            let mut out = Vec::new();
            for (i, item) in items.into_iter().enumerate() {
                let key = format!("url[{i}]");
                match item {
                    Value::String(s) => {
                        let v = n.expand(&key, &s);
                        out.push((key, v));
                    }
                    other => {
                        n.err(&key, format!("expected a URL, got {}", describe(&other)));
                        out.push((key, None));
                    }
                }
            }
            out
        }
        _ => vec![("url".to_string(), n.required_string("url", hint))],
    };
    let mut urls = Vec::new();
    let mut ok = true;
    for (key, s) in raw {
        let Some(s) = s else {
            ok = false;
            continue;
        };
        match reqwest::Url::parse(s.trim()) {
            Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {
                if u.host_str().is_none() {
                    n.err(&key, "has no host; expected e.g. https://siem.company.com/collector");
                    ok = false;
                } else {
                    urls.push(u);
                }
            }
            Ok(u) => {
                n.err(
                    &key,
                    format!("scheme {:?} is not supported; use https:// (or http:// on loopback)", u.scheme()),
                );
                ok = false;
            }
            Err(e) => {
                n.err(
                    &key,
                    format!("not a valid URL ({e}); expected e.g. https://siem.company.com/collector"),
                );
                ok = false;
            }
        }
    }
    if !ok {
        return None;
    }
    for (i, u) in urls.iter().enumerate() {
        if let Some(j) = urls[..i].iter().position(|v| v == u) {
            n.err(
                &format!("url[{i}]"),
                format!(
                    "is the same endpoint as url[{j}] ({}); list each endpoint once",
                    redact_url(u, Platform::infer_from_url(u))
                ),
            );
            return None;
        }
    }
    if urls.iter().any(|u| u.scheme() != urls[0].scheme()) {
        n.err(
            "url",
            "mixes http:// and https:// endpoints; one SIEM's endpoints share one scheme (use https:// for all)",
        );
        return None;
    }
    Some(urls)
}

/// Checks that need the URL and the platform's section together. Only the platform in use is
/// checked: an unused section may hold anything valid on its own.
fn check_platform(n: &mut Node, url: &reqwest::Url, platform: Platform, splunk: &SplunkConfig, es: &ElasticConfig, sumo: &SumoConfig) {
    let platform = match platform {
        Platform::Auto => Platform::infer_from_url(url),
        p => p,
    };
    match platform {
        Platform::SplunkHec => {
            match crate::sink::splunk_hec::Endpoints::from_url(url) {
                Err(msg) => n.err("url", msg),
                Ok(ep) if splunk.indexer_ack && ep.ack.is_none() => n.err(
                    "splunk_hec.indexer_ack",
                    "needs siem.url to end in /services/collector or /services/collector/event, where /services/collector/ack is next to it",
                ),
                Ok(_) => {}
            }
            if splunk.ack_poll_interval.is_zero() {
                n.err("splunk_hec.ack_poll_interval", "must be greater than 0");
            }
        }
        Platform::Elasticsearch => {
            if let Err((key, msg)) = crate::sink::elasticsearch::Target::from_url(url, es.index.as_deref()) {
                n.err(key, msg);
            }
            let t = &es.template_name;
            if t.is_empty() || t.chars().any(|c| c.is_whitespace() || c.is_control() || "\\/*?\"<>|,#".contains(c)) {
                n.err(
                    "elasticsearch.template_name",
                    format!("{t:?} is not a valid template name: use letters, digits, - _ ."),
                );
            }
        }
        Platform::SumoLogic => {
            let max = crate::sink::sumo_logic::MAX_REQUEST_BYTES;
            if sumo.max_bytes > max {
                n.err(
                    "sumo_logic.max_batch_bytes",
                    format!("Sumo Logic takes at most 1 MB ({max} bytes) of uncompressed data per request; use 1MB or less"),
                );
            }
            let header_safe = |v: &str| v.chars().all(|c| c == ' ' || c.is_ascii_graphic());
            for (key, header, value) in [
                ("sumo_logic.category", "X-Sumo-Category", &sumo.category),
                ("sumo_logic.name", "X-Sumo-Name", &sumo.name),
                ("sumo_logic.host", "X-Sumo-Host", &sumo.host),
            ] {
                if value.as_deref().is_some_and(|v| !header_safe(v)) {
                    n.err(key, format!("is sent as the {header} header, so it must be printable ASCII"));
                }
            }
            for (k, v) in &sumo.fields {
                if !header_safe(k) || !header_safe(v) {
                    n.err(
                        &format!("sumo_logic.fields.{k}"),
                        "is sent in the X-Sumo-Fields header, so names and values must be printable ASCII",
                    );
                }
            }
        }
        Platform::Generic | Platform::Auto | Platform::Datadog | Platform::AzureMonitor => {}
    }
}

fn is_loopback_host(u: &reqwest::Url) -> bool {
    match u.host() {
        Some(url::Host::Domain(d)) => d == "localhost" || d.ends_with(".localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Shared batch keys of each platform section: `max_batch_events`, `max_batch_bytes`, `gzip`.
fn batch_limits(n: Option<&mut Node>, default_events: usize, default_bytes: usize) -> (usize, usize, bool) {
    match n {
        None => (default_events, default_bytes, false),
        Some(n) => (
            n.uint("max_batch_events", default_events as u64, 1, 100_000) as usize,
            n.size("max_batch_bytes", default_bytes as u64, 1024) as usize,
            n.bool("gzip", false),
        ),
    }
}

fn parse_mode(n: &mut Node, k: &str, default: u32) -> u32 {
    let raw = match n.take(k) {
        None | Some(Value::Null) => return default,
        Some(Value::String(s)) => s,
        // YAML reads 0660 as the decimal number 660; take its digits as octal, which is what the
        // user meant.
        Some(Value::Number(num)) => num.to_string(),
        Some(other) => {
            n.err(k, format!("expected an octal mode like \"0660\", got {}", describe(&other)));
            return default;
        }
    };
    let digits = raw.trim().trim_start_matches("0o");
    match u32::from_str_radix(digits, 8) {
        Ok(m) if m <= 0o777 => m,
        _ => {
            n.err(k, format!("expected an octal mode like \"0660\", got {raw:?}"));
            default
        }
    }
}

fn parse_sources(n: &mut Node) -> Option<SourcesConfig> {
    let file = n.child("file").and_then(|mut f| {
        let path = f.required_string("path", "set the JSONL file to tail, e.g. /var/log/sendauth/events.jsonl");
        let start_at = f.choice(
            "start_at",
            StartAt::Beginning,
            &[("beginning", StartAt::Beginning), ("end", StartAt::End)],
        );
        let poll_interval = f.duration("poll_interval", Duration::from_millis(250));
        if poll_interval < Duration::from_millis(10) {
            f.err("poll_interval", "must be at least 10ms");
        }
        f.finish();
        Some(FileSourceConfig {
            path: PathBuf::from(path?),
            start_at,
            poll_interval,
        })
    });
    let socket = n.child("socket").and_then(|mut s| {
        let path = s.required_string("path", "set the Unix socket path, e.g. /run/sendauth/siem.sock");
        let mode = parse_mode(&mut s, "mode", 0o660);
        let max_connections = s.uint("max_connections", 1024, 1, 1_000_000) as usize;
        let idle_timeout = s.duration("idle_timeout", Duration::from_secs(300));
        if let Some(p) = &path {
            if p.len() > 100 {
                s.err("path", "is longer than the 107-byte limit of Unix socket paths; use a shorter path");
            }
        }
        s.finish();
        Some(SocketSourceConfig {
            path: PathBuf::from(path?),
            mode,
            max_connections,
            idle_timeout,
        })
    });
    let max_event_bytes = n.size("max_event_bytes", 1024 * 1024, 256) as usize;
    if max_event_bytes > 64 * 1024 * 1024 {
        n.err("max_event_bytes", "must be at most 64MiB");
    }
    if file.is_none() && socket.is_none() && !n.has_error_under("") {
        n.err("", "configure at least one source: sources.file or sources.socket");
        return None;
    }
    Some(SourcesConfig {
        file,
        socket,
        max_event_bytes,
    })
}

fn parse_queue(n: &mut Node) -> Option<QueueConfig> {
    let path = n.required_string("path", "set a directory for the durable queue, e.g. /var/lib/sendauth-siem");
    let max_bytes = n.size("max_bytes", DEFAULT_QUEUE_MAX_BYTES, 64 * 1024);
    let max_quarantine_entries = n.uint("max_quarantine_entries", DEFAULT_MAX_QUARANTINE_ENTRIES, 1, 100_000_000);
    let max_quarantine_bytes = n.size("max_quarantine_bytes", crate::queue::DEFAULT_MAX_QUARANTINE_BYTES, 64 * 1024);
    let max_dead_letter_entries = n.uint(
        "max_dead_letter_entries",
        crate::queue::DEFAULT_MAX_DEAD_LETTER_ENTRIES,
        1,
        100_000_000,
    );
    let max_dead_letter_bytes = n.size("max_dead_letter_bytes", crate::queue::DEFAULT_MAX_DEAD_LETTER_BYTES, 64 * 1024);
    let min_free_bytes = n.size("min_free_bytes", crate::queue::DEFAULT_MIN_FREE_BYTES, 0);
    if let Some(p) = &path {
        let max = crate::admin::MAX_QUEUE_PATH_BYTES;
        if p.len() > max {
            n.err(
                "path",
                format!(
                    "is {} bytes long; the admin socket inside it needs queue.path to be at most {max} bytes (the Unix socket path limit); use a shorter directory",
                    p.len()
                ),
            );
        }
    }
    Some(QueueConfig {
        path: PathBuf::from(path?),
        max_bytes,
        max_quarantine_entries,
        max_quarantine_bytes,
        max_dead_letter_entries,
        max_dead_letter_bytes,
        min_free_bytes,
    })
}

fn parse_delivery(n: Option<&mut Node>) -> Option<DeliveryConfig> {
    let mut d = DeliveryConfig {
        max_retries: 3,
        initial_backoff: Duration::from_secs(1),
        max_backoff: Duration::from_secs(30),
        on_retry_exhausted: OnRetryExhausted::Hold,
        linger: DEFAULT_LINGER,
        max_in_flight: MaxInFlight::Auto,
    };
    if let Some(n) = n {
        d.max_retries = n.uint("max_retries", 3, 0, 1000) as u32;
        d.initial_backoff = n.duration("initial_backoff", d.initial_backoff);
        d.max_backoff = n.duration("max_backoff", d.max_backoff);
        d.on_retry_exhausted = n.choice(
            "on_retry_exhausted",
            OnRetryExhausted::Hold,
            &[("hold", OnRetryExhausted::Hold), ("dead_letter", OnRetryExhausted::DeadLetter)],
        );
        d.linger = n.duration("linger", DEFAULT_LINGER);
        d.max_in_flight = match n.string("max_in_flight") {
            None => MaxInFlight::Auto,
            Some(s) if s.trim() == "auto" => MaxInFlight::Auto,
            Some(s) => match s.trim().parse::<usize>() {
                Ok(v) if (1..=MAX_IN_FLIGHT).contains(&v) => MaxInFlight::Fixed(v),
                _ => {
                    n.err(
                        "max_in_flight",
                        format!("expected auto or a whole number from 1 to {MAX_IN_FLIGHT} (1 keeps strict arrival order), got {s:?}"),
                    );
                    MaxInFlight::Auto
                }
            },
        };
        if d.initial_backoff.is_zero() {
            n.err("initial_backoff", "must be greater than 0");
        }
        if d.max_backoff < d.initial_backoff {
            n.err("max_backoff", "must be at least delivery.initial_backoff");
        }
        if d.linger > Duration::from_secs(60) {
            n.err("linger", "must be at most 60s");
        }
    }
    Some(d)
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn delivery_max_in_flight_is_auto_or_a_bounded_number() {
        let base = "siem:\n  url: https://x.example.com/c\nsources:\n  socket: { path: /s }\nqueue:\n  path: /q\n";
        let parse = |extra: &str| Config::parse_with_env(&format!("{base}{extra}"), &|_| None);
        let c = parse("").unwrap();
        assert_eq!(c.delivery.max_in_flight, MaxInFlight::Auto);
        assert_eq!(c.delivery.linger, DEFAULT_LINGER);
        assert_eq!(
            parse("delivery:\n  max_in_flight: auto\n").unwrap().delivery.max_in_flight,
            MaxInFlight::Auto
        );
        assert_eq!(
            parse("delivery:\n  max_in_flight: 1\n").unwrap().delivery.max_in_flight,
            MaxInFlight::Fixed(1)
        );
        assert_eq!(
            parse("delivery:\n  max_in_flight: 256\n").unwrap().delivery.max_in_flight,
            MaxInFlight::Fixed(256)
        );
        assert_eq!(parse("delivery:\n  linger: 0s\n").unwrap().delivery.linger, Duration::ZERO);
        for bad in ["0", "257", "-1", "lots", "1.5"] {
            let e = parse(&format!("delivery:\n  max_in_flight: {bad}\n")).unwrap_err().to_string();
            assert!(
                e.contains("delivery.max_in_flight: expected auto or a whole number from 1 to 256"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn errors_never_show_the_value_of_an_environment_variable() {
        let env = |k: &str| (k == "SUMO_URL").then(|| "htps://c.sumologic.com/receiver/v1/http/ZaVnC4secretTOKEN".to_string());
        let yaml =
            "siem:\n  url: ${SUMO_URL}\n  generic:\n    batch: ${SUMO_URL}\nsources:\n  socket: { path: /tmp/s }\nqueue:\n  path: /tmp/q\n";
        let e = Config::parse_with_env(yaml, &env).unwrap_err();
        assert!(e.problems.len() >= 2, "{:?}", e.problems);
        for p in &e.problems {
            assert!(!p.contains("ZaVnC4secretTOKEN"), "{p}");
        }
        assert!(e.problems.iter().any(|p| p.contains("${SUMO_URL}")), "{:?}", e.problems);
    }

    #[test]
    fn each_problem_stays_on_one_line_whatever_the_value_holds() {
        let yaml = "siem:\n  url: https://x.example.com/c\n  tls:\n    ca_file: \"a\\r\\nb\"\nsources:\n  socket: { path: /tmp/s }\nqueue:\n  path: /tmp/q\n";
        let e = Config::parse_with_env(yaml, &|_| None).unwrap_err();
        assert!(
            e.problems.iter().all(|p| !p.contains('\n') && !p.contains('\r')),
            "{:?}",
            e.problems
        );
        assert!(e.problems.iter().any(|p| p.contains("a\\r\\nb")), "{:?}", e.problems);
    }

    fn env(k: &str) -> Option<String> {
        match k {
            "SIEM_PASSWORD" => Some("s3cret".into()),
            "HEC_TOKEN" => Some("abc-123".into()),
            _ => None,
        }
    }

    const MINIMAL: &str =
        "siem:\n  url: https://siem.example.com/collector\nsources:\n  socket: { path: /tmp/x.sock }\nqueue:\n  path: /tmp/q\n";

    #[test]
    fn minimal_config_gets_defaults() {
        let c = Config::parse_with_env(MINIMAL, &env).unwrap();
        assert!(c.siem.enabled);
        assert_eq!(c.siem.effective_platform(), Platform::Generic);
        assert_eq!(c.sources.max_event_bytes, 1024 * 1024);
        assert_eq!(c.delivery.max_retries, 3);
        assert_eq!(c.status.listen.to_string(), "127.0.0.1:8686");
        assert_eq!(c.sources.socket.as_ref().unwrap().mode, 0o660);
    }

    #[test]
    fn local_config_needs_only_the_queue_and_status_sections() {
        // A broken siem section and an unset secret do not matter to the operator's commands.
        let text = "siem:\n  url: ${NOPE_UNSET}\n  platfrom: x\nqueue:\n  path: /tmp/q\nstatus:\n  listen: 127.0.0.1:9999\n";
        assert!(Config::parse_with_env(text, &env).is_err());
        let l = LocalConfig::parse_with_env(text, &env).unwrap();
        assert_eq!(l.queue.path, PathBuf::from("/tmp/q"));
        assert_eq!(l.status.listen.port(), 9999);
        let bad = LocalConfig::parse_with_env("queue:\n  max_bytes: 1MiB\n", &env)
            .unwrap_err()
            .to_string();
        assert!(bad.contains("queue.path"), "{bad}");
    }

    #[test]
    fn an_unknown_key_close_to_a_known_one_gets_a_did_you_mean() {
        let text = MINIMAL.replace("queue:", "queue:\n  max_byte: 1MiB\n  wibble: 1");
        let all = Config::parse_with_env(&text, &env).unwrap_err().to_string();
        assert!(all.contains("queue.max_byte: unknown key; did you mean `max_bytes`?"), "{all}");
        assert!(all.contains("queue.wibble: unknown key; check the spelling"), "{all}");
    }

    #[test]
    fn every_problem_is_reported_with_its_dotted_key() {
        let text = "siem:\n  url: https://x.example.com/c\n  auth:\n    header: \"Bearer abc\"\n  platfrom: generic\nsources:\n  file: { path: /x, start_at: middle }\n  max_event_bytes: lots\nqueue:\n  path: /q\ndelivery:\n  initial_backoff: 3 fortnights\n";
        let e = Config::parse_with_env(text, &env).unwrap_err();
        let all = e.to_string();
        assert!(all.contains("siem.auth.header: expected \"Name: value\""), "{all}");
        assert!(all.contains("siem.platfrom: unknown key"), "{all}");
        assert!(all.contains("sources.file.start_at: expected one of beginning | end"), "{all}");
        assert!(all.contains("sources.max_event_bytes:"), "{all}");
        assert!(all.contains("delivery.initial_backoff:"), "{all}");
        assert_eq!(e.problems.len(), 5, "{all}");
        assert!(!all.contains("abc"), "a token fragment leaked: {all}");
    }

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

    #[test]
    fn header_with_crlf_is_rejected() {
        let text = MINIMAL.replace(
            "  url: https://siem.example.com/collector\n",
            "  url: https://siem.example.com/collector\n  auth:\n    header: \"X-API-Key: a\\r\\nEvil: b\"\n",
        );
        let e = Config::parse_with_env(&text, &env).unwrap_err().to_string();
        assert!(e.contains("siem.auth.header: must not contain CR or LF"), "{e}");
    }

    #[test]
    fn plain_http_only_on_loopback() {
        let text = MINIMAL.replace("https://siem.example.com", "http://siem.example.com");
        let e = Config::parse_with_env(&text, &env).unwrap_err().to_string();
        assert!(e.contains("siem.url: plain http://"), "{e}");
        let ok = MINIMAL.replace("https://siem.example.com", "http://127.0.0.1:9000");
        Config::parse_with_env(&ok, &env).unwrap();
    }

    #[test]
    fn siem_url_may_list_the_endpoints_of_one_siem() {
        let with = |url: &str| MINIMAL.replace("url: https://siem.example.com/collector", &format!("url: {url}"));
        let c = Config::parse_with_env(&with("https://siem.example.com/collector"), &env).unwrap();
        assert_eq!(c.siem.urls, std::slice::from_ref(&c.siem.url), "one URL is a list of one");
        let list = "[\"https://es1:9200/sendauth/_doc\", \"https://es2:9200/sendauth/_doc\"]";
        let c = Config::parse_with_env(&with(list), &env).unwrap();
        assert_eq!(c.siem.urls.len(), 2);
        assert_eq!(c.siem.url.as_str(), "https://es1:9200/sendauth/_doc");
        assert_eq!(c.siem.effective_platform(), Platform::Elasticsearch);
        let block = MINIMAL.replace(
            "  url: https://siem.example.com/collector\n",
            "  url:\n    - https://s1:8088/services/collector/event\n    - https://s2:8088/services/collector/event\n",
        );
        let c = Config::parse_with_env(&block, &env).unwrap();
        assert_eq!(c.siem.urls[1].host_str(), Some("s2"));
        let err = |url: &str| Config::parse_with_env(&with(url), &env).unwrap_err().to_string();
        let e = err("[]");
        assert!(e.starts_with("siem.url: is an empty list; give one URL"), "{e}");
        let e = err("[https://a.example.com/c, https://b.example.com/c, https://a.example.com/c]");
        assert!(
            e.contains("siem.url[2]: is the same endpoint as url[0] (https://a.example.com/c)"),
            "{e}"
        );
        let e = err("[https://a.example.com/c, \"http://127.0.0.1:9/c\"]");
        assert!(e.contains("siem.url: mixes http:// and https://"), "{e}");
        let e = err("[https://a.example.com/c, \"not a url\"]");
        assert!(e.contains("siem.url[1]: not a valid URL"), "{e}");
        let e = err("[https://a.example.com/c, ftp://b.example.com/c]");
        assert!(e.contains("siem.url[1]: scheme \"ftp\" is not supported"), "{e}");
        let e = err("[https://a.example.com/c, [x]]");
        assert!(e.contains("siem.url[1]: expected a URL, got a list"), "{e}");
        let e = err("[https://a.example.com/c, \"${UNSET_URL}\"]");
        assert!(e.contains("siem.url[1]:"), "{e}");
        let e = err("[https://s1:8088/services/collector/event, https://es1:9200/sendauth/_doc]");
        assert!(
            e.contains("the endpoints look like different platforms (https://s1:8088/services/collector/event is splunk_hec"),
            "{e}"
        );
        let e = err("[\"http://127.0.0.1:9/c\", \"http://siem.example.com/c\"]");
        assert!(e.contains("siem.url: plain http://"), "{e}");
        // Each endpoint is checked against the platform (here: the raw HEC endpoint).
        let e = err("[https://s1:8088/services/collector/event, https://s2:8088/services/collector/raw]");
        assert!(e.contains("siem.url: points at the HEC raw endpoint"), "{e}");
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("fast").is_err());
        assert_eq!(parse_duration("10 seconds").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        let bare = parse_duration("30").unwrap_err();
        assert!(bare.contains("30s"), "{bare}");
        assert_eq!(parse_size("1MiB").unwrap(), 1024 * 1024);
        assert_eq!(parse_size("1MB").unwrap(), 1_000_000);
        assert!(parse_size("1 parsec").is_err());
    }

    #[test]
    fn socket_mode_as_yaml_number_means_octal() {
        let text = MINIMAL.replace("{ path: /tmp/x.sock }", "{ path: /tmp/x.sock, mode: 0600 }");
        let c = Config::parse_with_env(&text, &env).unwrap();
        assert_eq!(c.sources.socket.unwrap().mode, 0o600);
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

    #[test]
    fn transform_section_parses_with_defaults() {
        let text = format!(
            "{MINIMAL}transform:\n  drop: [location.city]\n  truncate_ip: {{}}\n  hash:\n    fields: [subject, org_id]\n    key: \"${{PSEUDONYM_KEY}}\"\n"
        );
        let env = |k: &str| (k == "PSEUDONYM_KEY").then(|| "k3y-0123456789abcdef".to_string());
        let c = Config::parse_with_env(&text, &env).unwrap();
        let t = c.transform.unwrap();
        assert_eq!(t.drop, [FieldPath::parse("location.city").unwrap()]);
        let ti = t.truncate_ip.unwrap();
        assert_eq!(
            (ti.fields[0].to_string(), ti.ipv4_prefix, ti.ipv6_prefix),
            ("ip_address".into(), 24, 48)
        );
        let h = t.hash.unwrap();
        assert_eq!(h.key.expose(), "k3y-0123456789abcdef");
        assert_eq!(h.fields.len(), 2);
        assert!(c.inline_secrets.is_empty());
        // No section, or an empty one: no transform at all.
        assert!(Config::parse_with_env(MINIMAL, &env).unwrap().transform.is_none());
        assert!(Config::parse_with_env(&format!("{MINIMAL}transform: {{}}\n"), &env)
            .unwrap()
            .transform
            .is_none());
    }

    #[test]
    fn transform_rules_that_could_not_work_are_config_errors() {
        let text = format!(
            "{MINIMAL}transform:\n  allow: [subject, location.country]\n  drop: [org_id, location, 7, \"a..b\"]\n  truncate_ip:\n    fields: [timestamp, ip_address]\n    ipv4_prefix: 40\n  hash:\n    fields: [event_type, location.city, ip_address]\n    key: tiny-k3y\n    salt: x\n"
        );
        let e = Config::parse_with_env(&text, &env).unwrap_err();
        let all = e.to_string();
        for want in [
            "transform.drop[0]: org_id is one of the four common fields",
            "transform.drop[2]: expected a field name, got the number 7",
            "transform.drop[3]: \"a..b\" is not a field name",
            "transform.truncate_ip.ipv4_prefix: 40 is out of range",
            "transform.truncate_ip.fields[0]: timestamp is a common field, not an IP address",
            "transform.truncate_ip.fields[1]: ip_address is not kept by transform.allow",
            "transform.hash.fields[0]: event_type cannot be hashed",
            "transform.hash.fields[1]: location.city is removed by transform.drop (location)",
            "transform.hash.key: is too short",
            "transform.hash.salt: unknown key",
            "transform.hash.fields: ip_address is also in transform.truncate_ip.fields",
        ] {
            assert!(all.contains(want), "missing {want:?} in:\n{all}");
        }
        assert!(!all.contains("tiny-k3y"), "the key leaked: {all}");
        let text = format!("{MINIMAL}transform:\n  hash:\n    fields: [subject]\n");
        let e = Config::parse_with_env(&text, &env).unwrap_err().to_string();
        assert!(e.contains("transform.hash.key: required"), "{e}");
        let text = format!("{MINIMAL}transform:\n  drop: subject\n");
        let e = Config::parse_with_env(&text, &env).unwrap_err().to_string();
        assert!(e.contains("transform.drop: expected a list of field names"), "{e}");
    }
}
