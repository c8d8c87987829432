//! What the agent tells its service manager (systemd `Type=notify`, see `sd_notify(3)`).
//!
//! - `READY=1` once the agent serves: the queue is open, the status API and the admin socket
//!   listen, the sources run. A unit ordered `After=sendauth-siem.service` (the auth server)
//!   therefore starts only when its events can be taken in.
//! - `RELOADING=1` (with `MONOTONIC_USEC`) when a config change is read, then `READY=1` once it
//!   was applied or rejected, with a `STATUS=` line saying which.
//! - `STOPPING=1` when a stop begins (SIGTERM, SIGINT).
//! - `WATCHDOG=1` every third of `WatchdogSec=`, but only while the queue answers: each ping
//!   first reads the queue's counters on the blocking pool, within a third of the interval. A
//!   wedged runtime, an exhausted blocking pool or a queue lock held by a stuck disk write stops
//!   the pings, and systemd restarts the agent (what was committed is on disk, as after a crash).
//!
//! Without `NOTIFY_SOCKET` in the environment (not started by systemd, or `Type=simple`) every
//! function here does nothing. A failed notification is logged once at debug level and otherwise
//! ignored: the service manager's view never steers the agent.

use std::time::Duration;

use sd_notify::NotifyState;
use tokio::task::JoinHandle;

use crate::queue::Queue;
use crate::shutdown::Shutdown;

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!(target: "agent", "cannot notify the service manager: {e}");
    }
}

/// `READY=1` with a one-line `STATUS=`.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// `RELOADING=1` stamped with the monotonic clock, as `Type=notify-reload` requires.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

/// `STOPPING=1`.
pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping: finishing in-flight work")]);
}

/// The watchdog interval systemd asked for (`WATCHDOG_USEC`, for this process), if any.
pub(crate) fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled().filter(|d| !d.is_zero())
}

/// Pings the watchdog while `queue` answers (see the module docs), until `shutdown`. `None` when
/// systemd asked for no watchdog.
pub(crate) fn spawn_watchdog(queue: Queue, mut shutdown: Shutdown) -> Option<JoinHandle<()>> {
    let interval = watchdog_interval()?;
    let every = interval / 3;
    tracing::info!(target: "agent", "systemd watchdog: pinging every {every:?} while the queue answers");
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut late = false;
        loop {
            tokio::select! {
                _ = shutdown.wait() => break,
                _ = tick.tick() => {}
            }
            let q = queue.clone();
            match tokio::time::timeout(every, tokio::task::spawn_blocking(move || q.counts())).await {
                Ok(Ok(_)) => {
                    if late {
                        tracing::info!(target: "agent", "systemd watchdog: the queue answers again; pings resumed");
                        late = false;
                    }
                    send(&[NotifyState::Watchdog]);
                }
                _ => {
                    if !late {
                        tracing::warn!(target: "agent", "systemd watchdog: the queue did not answer within {every:?}; withholding the ping (systemd restarts the agent after WatchdogSec={interval:?})");
                        late = true;
                    }
                }
            }
        }
    }))
}
