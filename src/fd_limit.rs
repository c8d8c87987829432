//! The open-file limit (`RLIMIT_NOFILE`) against what the agent may open.
//!
//! Every socket client holds a file descriptor, beside the queue's files, sled, the file
//! source, the SIEM connections and the status and admin listeners. With `ulimit -n 64` and the
//! default `sources.socket.max_connections` (1024), 100 idle clients used to take every
//! descriptor: `/health` stopped answering and a normal writer was stuck.
//!
//! So: at start, [`prepare`] raises the soft limit to the hard limit when the config needs more
//! than the soft limit allows; the socket source then accepts at most what still fits
//! ([`cap_connections`]) and says what to change when that is less than configured;
//! `check-config` warns the same way ([`check`]).

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::sink::settings::MaxInFlight;

/// Descriptors the agent keeps for itself besides socket clients and SIEM connections: the
/// standard streams, the queue (segments, write-ahead log, ack file, witness, sled's files),
/// the file source and its watches, the runtime's epoll and event descriptors, the status and
/// admin listeners and a few of their clients. An idle agent uses about 25.
pub(crate) const BASE_RESERVE: usize = 64;
/// SIEM connections reserved for `delivery.max_in_flight: auto`. It rarely needs more; past
/// the reserve, a connection that cannot be opened is a network error, retried like any other.
pub(crate) const AUTO_SIEM_CONNECTIONS: usize = 32;

/// The reserve of the config the agent started with (see [`prepare`]).
static RESERVE: AtomicUsize = AtomicUsize::new(BASE_RESERVE + AUTO_SIEM_CONNECTIONS);

/// What the config asks for that takes descriptors: socket clients (`None`: no socket source)
/// and SIEM connections.
#[derive(Debug, Clone, Copy)]
pub struct Demand {
    /// `sources.socket.max_connections`, if the socket source is on.
    pub socket_clients: Option<usize>,
    /// `delivery.max_in_flight`.
    pub max_in_flight: MaxInFlight,
}

/// Descriptors kept for the agent's own files and SIEM connections.
pub fn reserve(d: Demand) -> usize {
    BASE_RESERVE
        + match d.max_in_flight {
            MaxInFlight::Auto => AUTO_SIEM_CONNECTIONS,
            MaxInFlight::Fixed(n) => n,
        }
}

/// Descriptors the config needs: `sources.socket.max_connections` clients plus the reserve.
pub fn needed(d: Demand) -> u64 {
    (d.socket_clients.unwrap_or(0) + reserve(d)) as u64
}

/// The (soft, hard) open-file limits; `u64::MAX` stands for unlimited.
pub fn limits() -> Option<(u64, u64)> {
    let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } != 0 {
        return None;
    }
    let v = |x: libc::rlim_t| if x == libc::RLIM_INFINITY { u64::MAX } else { x };
    Some((v(r.rlim_cur), v(r.rlim_max)))
}

/// How many socket clients fit in `limit` descriptors beside `reserve`: every configured one
/// if they fit, else what is left, but never less than a quarter of the limit (an idle agent
/// needs far less than the reserve, so a tiny limit still serves a few writers).
pub(crate) fn fitting(configured: usize, limit: u64, reserve: usize) -> usize {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    configured.min(limit.saturating_sub(reserve).max(limit / 4)).max(1)
}

/// At start, before anything is opened: raises the soft limit to the hard limit (or to what the
/// config needs, when the hard limit is unlimited) if the config needs more than the soft
/// limit, and remembers the reserve for [`cap_connections`].
pub(crate) fn prepare(d: Demand) {
    RESERVE.store(reserve(d), Ordering::Relaxed);
    let need = needed(d);
    let Some((soft, hard)) = limits() else { return };
    if soft >= need {
        return;
    }
    let target = if hard == u64::MAX { need } else { hard };
    if target <= soft {
        return;
    }
    let r = libc::rlimit {
        rlim_cur: target,
        rlim_max: if hard == u64::MAX {
            libc::RLIM_INFINITY
        } else {
            hard as libc::rlim_t
        },
    };
    // SAFETY: setrlimit reads the struct we own.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &r) } == 0 {
        tracing::info!(
            "raised the open-file limit from {soft} to {target} (sources.socket.max_connections and the agent's own files need {need})"
        );
    } else {
        let e = std::io::Error::last_os_error();
        tracing::warn!("cannot raise the open-file limit from {soft} to {target}: {e}");
    }
}

/// The number of connections the socket source accepts at once: `configured`, or fewer when
/// the open-file limit cannot hold them beside the agent's own files, which it then logs with
/// what to change.
pub(crate) fn cap_connections(configured: usize) -> usize {
    let Some((soft, hard)) = limits() else { return configured };
    let reserve = RESERVE.load(Ordering::Relaxed);
    let fit = fitting(configured, soft, reserve);
    if fit < configured {
        let need = configured + reserve;
        tracing::warn!(
            target: "source::socket",
            "sources.socket.max_connections is {configured}, but the open-file limit is {soft} (hard limit {}) and the agent keeps about {reserve} for its own files and SIEM connections: accepting at most {fit} connections at once. To allow {configured}, raise the limit to {need} (LimitNOFILE={need} in the systemd unit, or `ulimit -n {need}` before starting the agent) or lower sources.socket.max_connections",
            show(hard)
        );
    }
    fit
}

/// For `check-config`: a warning when the hard open-file limit of this process (which the
/// agent can raise its soft limit to) cannot hold `sources.socket.max_connections`.
pub fn check(d: Demand) -> Option<String> {
    let configured = d.socket_clients?;
    let (_, hard) = limits()?;
    let need = needed(d);
    if hard >= need {
        return None;
    }
    let fit = fitting(configured, hard, reserve(d));
    Some(format!(
        "sources.socket.max_connections: {configured} connections and the agent's own files need {need} open files, but the open-file limit here is {hard} (hard limit); the agent would accept at most {fit} connections at once. Raise it (LimitNOFILE={need} in the systemd unit, or `ulimit -n {need}` as root) or lower sources.socket.max_connections"
    ))
}

fn show(limit: u64) -> String {
    if limit == u64::MAX {
        "unlimited".into()
    } else {
        limit.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_fit_beside_the_reserve_and_a_tiny_limit_still_serves_a_few() {
        assert_eq!(fitting(1024, 1 << 20, 96), 1024);
        assert_eq!(fitting(1024, 1024, 96), 928);
        assert_eq!(fitting(1024, 64, 96), 16);
        assert_eq!(fitting(10, 64, 96), 10);
        assert_eq!(fitting(1024, 0, 96), 1);
        assert_eq!(fitting(1024, u64::MAX, 96), 1024);
    }
}
