//! The state one emulator shares between its connections and its [`crate::Emulator`] handle:
//! the config, and under one lock what was accepted and received, the fault queue, the current
//! credentials and each platform's own state (Splunk channels/acks, Elasticsearch documents,
//! Azure tokens). Platforms run under this lock (the crate doc, step 5), so their checks and
//! what they record are atomic. Invariant: a poisoned lock is recovered, never propagated.
//! Follows no single `docs/PROTOCOLS.md` section; each platform's part cites its own.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};

use serde_json::Value;
use tokio::sync::Notify;

use crate::config::{EmulatorConfig, ExpectedAuth};
use crate::fault::Fault;
use crate::record::RecordedRequest;
use crate::{azure_monitor, elasticsearch, splunk_hec};

pub(crate) struct Shared {
    pub cfg: EmulatorConfig,
    pub state: Mutex<State>,
    pub changed: Notify,
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock must not take every later request down with it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub(crate) struct State {
    pub auth: ExpectedAuth,
    pub events: Vec<Value>,
    pub requests: Vec<RecordedRequest>,
    pub faults: VecDeque<Fault>,
    pub sticky: Option<Fault>,
    pub splunk: splunk_hec::SplunkState,
    pub es: elasticsearch::EsState,
    pub azure: azure_monitor::AzureState,
}

impl State {
    pub fn new(auth: ExpectedAuth) -> State {
        State {
            auth,
            events: Vec::new(),
            requests: Vec::new(),
            faults: VecDeque::new(),
            sticky: None,
            splunk: Default::default(),
            es: Default::default(),
            azure: Default::default(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// What platform modules see and return
