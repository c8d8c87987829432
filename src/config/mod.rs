//! The YAML config: turns the file into the stages' settings types, or into the list of every
//! problem in it.
//!
//! Design: the file is parsed into a generic YAML tree first, then walked key by key by a small
//! reader (`reader::Node`) that records every problem as a [`Problem`] with its full dotted key
//! instead of stopping at the first one. `check-config` and hot reload both print that list,
//! one problem per line, e.g. `siem.auth.header: expected "Name: value" ...`. Each section has
//! its own file (`siem.rs`, `platforms.rs`, `sources.rs`, `queue.rs`, `delivery.rs`,
//! `transform.rs`, `status.rs`, `audit.rs`); value parsers are in `values.rs` and
//! `crate::units`. The types it builds belong to the stages (`sink::settings`,
//! `source::settings`, `queue::settings`, `transform`, `server`, `audit`, `crate::settings`):
//! this module depends on them, never the reverse, and it is the only one that knows YAML.
//!
//! Invariants:
//! - unknown keys are errors (a typo must never silently fall back to a default);
//! - secrets are held in [`Secret`](crate::secret::Secret), whose `Debug` never shows the value,
//!   and no problem quotes a `${VAR}`'s value;
//! - a `Config` value is always fully valid: there is no way to build one from a file with errors.

use std::cell::RefCell;
use std::fmt;
use std::path::Path;
use std::rc::Rc;

use serde_yaml::Value;

mod audit;
mod delivery;
mod platforms;
mod queue;
mod reader;
mod siem;
mod sources;
mod status;
mod transform;
mod values;

// The settings types the wiring (the binary, `agent`, `reload`) names through this module.
pub use crate::queue::settings::QueueConfig;
pub use crate::server::{StatusConfig, DEFAULT_STATUS_ADDR};
pub use crate::settings::{Config, LogConfig, LogFormat};
pub use crate::units::{parse_duration, parse_size};

pub use reader::Problem;
use reader::{check_flow_nesting, Node};
use values::hide_env_values;

/// Every problem found in a config, each naming its dotted key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors {
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{p}")?;
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
                    errs.push(Problem::whole_file("config is incomplete"));
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
        problems: vec![Problem::whole_file(format!(
            "cannot read the config file: {e}; check the path and its permissions"
        ))],
    })
}

/// The YAML tree, after the nesting check that keeps a hostile file cheap to reject.
fn parse_yaml(text: &str) -> Result<Value, ConfigErrors> {
    check_flow_nesting(text).map_err(|problem| ConfigErrors {
        problems: vec![Problem::whole_file(problem)],
    })?;
    serde_yaml::from_str(text).map_err(|e| ConfigErrors {
        problems: vec![Problem::whole_file(format!("not valid YAML: {e}"))],
    })
}

/// Problems as a user sees them: no environment variable's value (`${NAME}` instead), and one
/// line each, whatever the values quoted in them hold (a CR/LF in a value made a problem span
/// lines; found by the config fuzz target).
fn problems_as_shown(mut errs: Vec<Problem>, text: &str, env: &dyn Fn(&str) -> Option<String>) -> ConfigErrors {
    hide_env_values(errs.iter_mut().flat_map(|p| [&mut p.key, &mut p.message]), text, env);
    for p in errs.iter_mut().flat_map(|p| [&mut p.key, &mut p.message]) {
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
pub(crate) struct LocalConfig {
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
            (queue::parse_queue_section(&mut root), status::parse_status(&mut root))
        };
        let mut errs = errs.take();
        match queue {
            Some(queue) if errs.is_empty() => Ok(LocalConfig { queue, status }),
            _ => {
                if errs.is_empty() {
                    errs.push(Problem {
                        key: "queue".into(),
                        message: "incomplete".into(),
                    });
                }
                Err(problems_as_shown(errs, text, env))
            }
        }
    }
}

/// The whole file: each section in a fixed order (the order problems are listed in).
fn parse_root(root: &mut Node) -> Option<Config> {
    let siem = required_section(root, "siem", "add a siem: section with at least url", siem::parse_siem);
    let sources = required_section(
        root,
        "sources",
        "configure sources.file, sources.socket or both",
        sources::parse_sources,
    );
    let queue = queue::parse_queue_section(root);
    let delivery = delivery::parse_delivery_section(root);
    let status = status::parse_status(root);
    let log = status::parse_log(root);
    let transform = optional_section(root, "transform", transform::parse_transform);
    let audit = optional_section(root, "audit", audit::parse_audit);
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

/// A section the file must have; `hint` says how to add it.
fn required_section<'e, T>(root: &mut Node<'e>, key: &str, hint: &str, parse: impl FnOnce(&mut Node<'e>) -> Option<T>) -> Option<T> {
    match root.child(key) {
        Some(mut n) => {
            let s = parse(&mut n);
            n.finish();
            s
        }
        None => {
            root.err(key, format!("required; {hint}"));
            None
        }
    }
}

/// A section the file may leave out (`None` then).
fn optional_section<'e, T>(root: &mut Node<'e>, key: &str, parse: impl FnOnce(&mut Node<'e>) -> Option<T>) -> Option<T> {
    root.child(key).and_then(|mut n| {
        let t = parse(&mut n);
        n.finish();
        t
    })
}

/// What the unit tests of the section files share: an environment and a minimal valid file.
#[cfg(test)]
mod test_support {
    pub(super) fn env(k: &str) -> Option<String> {
        match k {
            "SIEM_PASSWORD" => Some("s3cret".into()),
            "HEC_TOKEN" => Some("abc-123".into()),
            _ => None,
        }
    }

    pub(super) const MINIMAL: &str =
        "siem:\n  url: https://siem.example.com/collector\nsources:\n  socket: { path: /tmp/x.sock }\nqueue:\n  path: /tmp/q\n";
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::test_support::{env, MINIMAL};
    use super::*;
    use crate::sink::settings::Platform;

    #[test]
    fn errors_never_show_the_value_of_an_environment_variable() {
        let env = |k: &str| (k == "SUMO_URL").then(|| "htps://c.sumologic.com/receiver/v1/http/ZaVnC4secretTOKEN".to_string());
        let yaml =
            "siem:\n  url: ${SUMO_URL}\n  generic:\n    batch: ${SUMO_URL}\nsources:\n  socket: { path: /tmp/s }\nqueue:\n  path: /tmp/q\n";
        let e = Config::parse_with_env(yaml, &env).unwrap_err();
        assert!(e.problems.len() >= 2, "{:?}", e.problems);
        for p in &e.problems {
            assert!(!p.to_string().contains("ZaVnC4secretTOKEN"), "{p}");
        }
        assert!(e.problems.iter().any(|p| p.to_string().contains("${SUMO_URL}")), "{:?}", e.problems);
    }

    #[test]
    fn each_problem_stays_on_one_line_whatever_the_value_holds() {
        let yaml = "siem:\n  url: https://x.example.com/c\n  tls:\n    ca_file: \"a\\r\\nb\"\nsources:\n  socket: { path: /tmp/s }\nqueue:\n  path: /tmp/q\n";
        let e = Config::parse_with_env(yaml, &|_| None).unwrap_err();
        assert!(
            e.problems
                .iter()
                .map(ToString::to_string)
                .all(|p| !p.contains('\n') && !p.contains('\r')),
            "{:?}",
            e.problems
        );
        assert!(e.problems.iter().any(|p| p.to_string().contains("a\\r\\nb")), "{:?}", e.problems);
    }

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
    fn each_problem_carries_its_key_and_prints_as_key_colon_message() {
        let text = MINIMAL.replace("queue:", "queue:\n  max_byte: 1MiB");
        let e = Config::parse_with_env(&text, &env).unwrap_err();
        assert_eq!(e.problems.len(), 1, "{e}");
        assert_eq!(e.problems[0].key, "queue.max_byte");
        assert_eq!(e.problems[0].message, "unknown key; did you mean `max_bytes`?");
        assert_eq!(e.to_string(), "queue.max_byte: unknown key; did you mean `max_bytes`?");
        // A problem with the whole file has no key and prints its message alone.
        let e = Config::parse_with_env("siem: [", &env).unwrap_err();
        assert!(e.problems[0].key.is_empty(), "{:?}", e.problems);
        assert!(e.to_string().starts_with("not valid YAML: "), "{e}");
    }
}
