//! The handle a test holds: [`Emulator`] starts one server on 127.0.0.1 (`server.rs`), reads
//! what it accepted and received, sets faults and credentials, waits for arrivals, and stops.
//! Every accessor takes the state lock briefly and returns copies, so a test never holds the
//! lock across an await. What each accessor returns per platform follows `docs/PROTOCOLS.md`
//! (§1 Splunk envelopes, §2 Elasticsearch documents and templates, §4 Azure tokens).
//!
//! Invariant: `stop()`/`halt()` return only once the listener and every connection are closed;
//! dropping the handle stops the server without waiting.

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::net::TcpSocket;
use tokio::sync::{oneshot, Notify};
use tokio::task::JoinHandle;

use crate::config::{EmulatorConfig, ExpectedAuth, Kind};
use crate::datadog;
use crate::fault::Fault;
use crate::record::RecordedRequest;
use crate::server::serve;
use crate::state::{Shared, State};

/// A running emulator. Dropping it stops the server too, without waiting.
pub struct Emulator {
    addr: SocketAddr,
    /// `pub(crate)` so the crate's own tests can look at the fault queue.
    pub(crate) shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
}

impl Emulator {
    /// Starts on 127.0.0.1 with a free port.
    pub async fn start(cfg: EmulatorConfig) -> std::io::Result<Emulator> {
        Emulator::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), cfg).await
    }

    /// Starts on a fixed address. `SO_REUSEADDR` is set so that a test can stop a SIEM and
    /// start it again on the same port while old connections sit in TIME_WAIT.
    pub async fn start_on(addr: SocketAddr, cfg: EmulatorConfig) -> std::io::Result<Emulator> {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        let listener = socket.listen(1024)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::new(cfg.auth.clone())),
            cfg,
            changed: Notify::new(),
        });
        let (stop_tx, stop_rx) = oneshot::channel();
        let server = tokio::spawn(serve(listener, shared.clone(), stop_rx));
        tracing::debug!(%addr, kind = ?shared.cfg.kind, "SIEM emulator listening");
        Ok(Emulator {
            addr,
            shared,
            stop: Some(stop_tx),
            server: Some(server),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn kind(&self) -> Kind {
        self.shared.cfg.kind
    }

    /// The URL a client should be configured with.
    pub fn url(&self) -> String {
        let path = match self.shared.cfg.kind {
            Kind::Generic => "/collector".to_string(),
            Kind::SplunkHec => "/services/collector/event".to_string(),
            Kind::Elasticsearch => "/sendauth/_doc".to_string(),
            Kind::SumoLogic => format!("/receiver/v1/http/{}", self.shared.cfg.sumo_token),
            Kind::Datadog => datadog::PATH.to_string(),
            // The data collection endpoint (and the token authority) is the server's root.
            Kind::AzureMonitor => String::new(),
        };
        format!("http://{}{}", self.addr, path)
    }

    /// Every accepted event payload, in order: generic: the object; Splunk: `envelope["event"]`;
    /// ES: the indexed `_source`; Sumo: each non-empty line (parsed JSON, or a JSON string when
    /// the line is not JSON).
    pub fn events(&self) -> Vec<Value> {
        self.shared.lock().events.clone()
    }

    pub fn event_count(&self) -> usize {
        self.shared.lock().events.len()
    }

    /// Waits until at least `n` events were accepted; false if the timeout passed first.
    pub async fn wait_for_events(&self, n: usize, timeout: Duration) -> bool {
        self.wait_until(timeout, |st| st.events.len() >= n).await
    }

    /// Waits until at least `n` requests were answered (or dropped); false on timeout.
    pub async fn wait_for_requests(&self, n: usize, timeout: Duration) -> bool {
        self.wait_until(timeout, |st| st.requests.len() >= n).await
    }

    /// Every request, in the order answered.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.lock().requests.clone()
    }

    /// Accepted HEC envelopes as received (raw endpoint: built from the line and query).
    pub fn splunk_envelopes(&self) -> Vec<Value> {
        self.shared.lock().splunk.envelopes.clone()
    }

    /// Documents stored now, in first-write order: `(_index, _id, _source)`. `_index` is the
    /// target the client named (the data stream name in data-stream mode).
    pub fn es_documents(&self) -> Vec<(String, String, Value)> {
        self.shared.lock().es.documents()
    }

    /// Every `PUT _index_template/<name>`, in order: `(name, body)`.
    pub fn es_templates(&self) -> Vec<(String, Value)> {
        self.shared.lock().es.templates.clone()
    }

    /// Azure Monitor: how many access tokens the token endpoint has issued.
    pub fn azure_tokens_issued(&self) -> usize {
        self.shared.lock().azure.issued
    }

    /// Azure Monitor: every token issued so far stops working (ingestion answers 401), as after
    /// a key rollover or a revoked consent.
    pub fn azure_revoke_tokens(&self) {
        self.shared.lock().azure.revoke_all();
    }

    /// Azure Monitor: the app's client secret is replaced (as when a secret is rotated or
    /// deleted in Microsoft Entra ID): token requests with the old one get AADSTS7000215 from now
    /// on; tokens already issued keep working until they expire.
    pub fn azure_rotate_secret(&self, secret: &str) {
        self.shared.lock().azure.rotated_secret = Some(secret.to_string());
    }

    /// Queues a one-shot fault (FIFO, one per ingest request).
    pub fn push_fault(&self, f: Fault) {
        self.shared.lock().faults.push_back(f);
    }

    /// Sets (or clears) a fault applied to every ingest request once the one-shot queue is empty.
    pub fn set_fault(&self, f: Option<Fault>) {
        self.shared.lock().sticky = f;
    }

    /// Changes the credentials required from now on.
    pub fn set_auth(&self, a: ExpectedAuth) {
        self.shared.lock().auth = a;
    }

    /// Stops listening and closes every connection; the port is free when this returns.
    pub async fn stop(mut self) {
        self.halt().await;
    }

    /// Like [`Emulator::stop`] (a SIEM node dies: connections dropped, port closed), but what
    /// it received stays readable.
    pub async fn halt(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }

    async fn wait_until(&self, timeout: Duration, cond: impl Fn(&State) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.shared.changed.notified();
            tokio::pin!(notified);
            // Register before checking, so a change between the check and the wait is not lost.
            notified.as_mut().enable();
            if cond(&self.shared.lock()) {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return cond(&self.shared.lock());
            }
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        // The server task stops when it sees the sender gone; nothing to wait for here.
        self.stop.take();
    }
}

impl fmt::Debug for Emulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Emulator")
            .field("kind", &self.shared.cfg.kind)
            .field("addr", &self.addr)
            .finish()
    }
}

// ---------------------------------------------------------------------------------------------
// Shared state
