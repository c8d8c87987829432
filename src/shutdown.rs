//! Graceful shutdown as an explicit value (the mini-redis pattern): every long-running task
//! holds a [`Shutdown`] and checks it between units of work, so a stop finishes in-flight work
//! instead of abandoning it.

use tokio::sync::watch;

/// Held by the agent; [`ShutdownTrigger::trigger`] asks every task to stop.
pub struct ShutdownTrigger {
    tx: watch::Sender<bool>,
}

/// Held by tasks.
#[derive(Clone)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
}

pub fn channel() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger { tx }, Shutdown { rx })
}

impl ShutdownTrigger {
    pub(crate) fn trigger(&self) {
        let _ = self.tx.send(true);
    }

    pub(crate) fn subscribe(&self) -> Shutdown {
        Shutdown { rx: self.tx.subscribe() }
    }
}

impl Shutdown {
    pub(crate) fn is_triggered(&self) -> bool {
        *self.rx.borrow()
    }

    /// Resolves once shutdown has been triggered (immediately if it already was).
    pub async fn wait(&mut self) {
        let _ = self.rx.wait_for(|v| *v).await;
    }
}
