//! The process's own sections: `status:` (the listener's address) and `log:`.

use std::net::SocketAddr;

use super::reader::Node;
use crate::server::{StatusConfig, DEFAULT_STATUS_ADDR};
use crate::settings::{LogConfig, LogFormat};

/// The optional `status:` section.
pub(super) fn parse_status(root: &mut Node) -> StatusConfig {
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

/// The optional `log:` section; the level must be one `tracing` understands.
pub(super) fn parse_log(root: &mut Node) -> LogConfig {
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
}
