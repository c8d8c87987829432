//! The `sources:` section: the file to tail, the socket to listen on, and the largest event.

use std::path::PathBuf;
use std::time::Duration;

use serde_yaml::Value;

use super::reader::{describe, Node};
use crate::source::settings::{FileSourceConfig, SocketSourceConfig, SourcesConfig, StartAt};

/// The `sources:` section: at least one of `file` and `socket`.
pub(super) fn parse_sources(n: &mut Node) -> Option<SourcesConfig> {
    let file = n.child("file").and_then(parse_file_source);
    let socket = n.child("socket").and_then(parse_socket_source);
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

/// `sources.file`.
fn parse_file_source(mut f: Node) -> Option<FileSourceConfig> {
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
}

/// `sources.socket`.
fn parse_socket_source(mut s: Node) -> Option<SocketSourceConfig> {
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
}

/// A Unix file mode, in octal.
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

#[cfg(test)]
mod tests {
    use super::super::test_support::{env, MINIMAL};
    use crate::settings::Config;

    #[test]
    fn socket_mode_as_yaml_number_means_octal() {
        let text = MINIMAL.replace("{ path: /tmp/x.sock }", "{ path: /tmp/x.sock, mode: 0600 }");
        let c = Config::parse_with_env(&text, &env).unwrap();
        assert_eq!(c.sources.socket.unwrap().mode, 0o600);
    }
}
