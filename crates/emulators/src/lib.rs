//! SIEM emulators: small HTTP/1.1 servers on 127.0.0.1 that answer like the real receivers, for
//! the integration tests and `examples/platform_figures.rs`. A crate of its own so that none of
//! it is compiled into the product (`sendauth-siem demo` has its own small receiver,
//! `src/demo/receiver.rs`).
//!
//! One [`Emulator`] is one listening socket speaking one [`Kind`] of SIEM. Status codes and
//! bodies come from `docs/PROTOCOLS.md` (each platform file cites its section). Each emulator
//! records what it received ([`Emulator::requests`]) and what it accepted ([`Emulator::events`])
//! and can be told to fail ([`Fault`]).
//!
//! Every request goes through the same pipeline:
//! 1. route: the platform answers 404 (unknown path) or 405 (wrong method) itself;
//! 2. read the body, bounded by `max_content_length`: a larger body is answered 413 and is
//!    drained (read and discarded, never buffered) up to 64 MiB so the client sees the answer
//!    rather than a reset; past that, or with `Expect: 100-continue`, the connection is closed;
//! 3. decode `Content-Encoding` (gzip, deflate = zlib), bounded by the same limit; each platform
//!    decides which encodings it accepts;
//! 4. faults: only requests that carry events ("ingest" requests: generic POST, HEC
//!    event/raw, ES `_doc`/`_create`/`_bulk`, Sumo POST) take faults; control requests (HEC
//!    health and ack polls, ES templates and `GET /`) never do, so a client's setup or
//!    health check cannot eat a fault meant for its data;
//! 5. the platform's handler runs synchronously under the state lock, so its checks (auth,
//!    `_id` dedupe, ack ids) and what it records are atomic with respect to other requests;
//! 6. the request is recorded with the status answered, and waiters are woken.
//!
//! Invariants:
//! - `events()` holds only accepted events, in the order they were accepted; a rejected event is
//!   never recorded, and a partially accepted batch records exactly the accepted prefix;
//! - every request the server read a head for is in `requests()`, in the order it was answered
//!   (status 0 = the connection was dropped without an answer);
//! - no input panics the server: client data is never unwrapped, and a poisoned lock is
//!   recovered rather than propagated;
//! - `stop()` returns only once the listener and every connection are closed.
//!
//! Not reproduced here: TLS (the TLS tests put a rustls front, `tests/common/tls.rs`, before
//! an emulator), HTTP/2, and timing behaviour such as server-side idle timeouts.

mod azure_monitor;
mod datadog;
mod elasticsearch;
mod generic;
mod splunk_hec;
mod sumo_logic;

use std::collections::VecDeque;
use std::convert::Infallible;
use std::fmt;
use std::io::Read;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::header::HeaderMap;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{oneshot, Notify};
use tokio::task::{JoinHandle, JoinSet};

/// Which SIEM an emulator speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Generic,
    SplunkHec,
    Elasticsearch,
    SumoLogic,
    Datadog,
    /// Azure Monitor Logs Ingestion API and its token endpoint on one server.
    AzureMonitor,
}

/// The credentials an emulator requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpectedAuth {
    /// Anything (or nothing) is accepted.
    None,
    /// `Authorization: Basic base64(username:password)`. Splunk HEC: the password is the token
    /// and the username can be anything (§1.2).
    Basic { username: String, password: String },
    /// A header with exactly this value, e.g. `Authorization: Splunk <token>` or
    /// `Authorization: ApiKey <b64>`. The name is matched case-insensitively.
    Header { name: String, value: String },
}

/// How an emulator behaves. Fields are public; start from [`EmulatorConfig::new`].
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    pub kind: Kind,
    /// Splunk: use `Header { name: "Authorization", value: "Splunk <token>" }`; failures map to
    /// HEC codes 2/3/4. Sumo Logic: ignored (the token is in the URL).
    pub auth: ExpectedAuth,
    /// Sumo Logic: the collector code in `/receiver/v1/http/<token>`.
    pub sumo_token: String,
    /// Splunk: indexes the token may write to; empty = any. Another index gives 400 code 7.
    pub splunk_allowed_indexes: Vec<String>,
    /// Splunk: the token is disabled (403 code 1).
    pub splunk_disabled_token: bool,
    /// Splunk: the token has `useACK=true` (channel required, `ackId` returned, `/ack` works).
    pub splunk_indexer_ack: bool,
    /// Splunk: the first `ackId` of each channel (0 on a real indexer). Several emulators given
    /// disjoint ranges stand for several indexers whose ids a test can tell apart.
    pub splunk_first_ack_id: u64,
    /// Elasticsearch: every target is a data stream (§2.6).
    pub es_data_stream: bool,
    /// Elasticsearch: fields the index maps as `long`. A document whose value there is not a
    /// whole number is refused, as a real cluster does, with item 400
    /// `mapper_parsing_exception` whose reason previews the value
    /// (`Preview of field's value: '203.0.113.7'`) and whose `caused_by` quotes it again.
    pub es_long_fields: Vec<String>,
    /// Largest request body, on the wire and after decompression; larger gets 413.
    pub max_content_length: usize,
    /// Datadog: the API key `DD-API-KEY` must carry.
    pub datadog_api_key: String,
    /// Elasticsearch kind, OpenSearch flavour: `GET /` answers as OpenSearch 2.x
    /// (`version.distribution: "opensearch"`), no answer carries `X-elastic-product`, and a
    /// failed login is the security plugin's plain `401 Unauthorized`. The document, bulk and
    /// template APIs are the same.
    pub es_opensearch: bool,
    /// Azure Monitor: the tenant, app (client id and secret), DCR immutable id and stream the
    /// emulator knows; how long the tokens it issues live; whether the app holds the Monitoring
    /// Metrics Publisher role on the DCR (else ingestion answers 403).
    pub azure_tenant_id: String,
    pub azure_client_id: String,
    pub azure_client_secret: String,
    pub azure_dcr_id: String,
    pub azure_stream: String,
    pub azure_token_lifetime: Duration,
    pub azure_role_assigned: bool,
}

impl EmulatorConfig {
    /// Defaults: no auth, each vendor's default size limit (Splunk 800 MiB §1.5, ES 100 MiB
    /// §2.4; Sumo and generic have no documented hard limit: 100 MiB).
    pub fn new(kind: Kind) -> Self {
        let max_content_length = match kind {
            Kind::SplunkHec => 838_860_800,
            Kind::Elasticsearch | Kind::SumoLogic | Kind::Generic => 100 * 1024 * 1024,
            // Datadog: 5 MB of uncompressed logs per request.
            Kind::Datadog => 5_000_000,
            // Logs Ingestion API: 1 MB per call.
            Kind::AzureMonitor => 1024 * 1024,
        };
        EmulatorConfig {
            kind,
            auth: ExpectedAuth::None,
            sumo_token: "ZaVnC4dhaV0emulatorTokenQ==".to_string(),
            splunk_allowed_indexes: Vec::new(),
            splunk_disabled_token: false,
            splunk_indexer_ack: false,
            splunk_first_ack_id: 0,
            es_data_stream: false,
            es_long_fields: Vec::new(),
            max_content_length,
            datadog_api_key: "0123456789abcdef0123456789abcdef".to_string(),
            es_opensearch: false,
            azure_tenant_id: "72f988bf-86f1-41af-91ab-2d7cd011db47".to_string(),
            azure_client_id: "8f3e5a1c-0c2b-4d7e-9a61-5b0c2f9d7e11".to_string(),
            azure_client_secret: "Xq88Q~emulatorSecretValue.abc123".to_string(),
            azure_dcr_id: "dcr-00000000000000000000000000000000".to_string(),
            azure_stream: "Custom-SendAuthEvents".to_string(),
            azure_token_lifetime: Duration::from_secs(3599),
            azure_role_assigned: true,
        }
    }
}

/// A failure to inject. Faults hit only requests that carry events (see the module doc).
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Answer this; nothing is accepted. A JSON-looking body gets `Content-Type:
    /// application/json` unless `headers` sets one.
    Status {
        code: u16,
        body: String,
        headers: Vec<(String, String)>,
    },
    /// Read the request, answer nothing for this long, then 503.
    Hang(Duration),
    /// Process the request normally (its events are accepted and recorded), then hold the
    /// answer this long: a SIEM that stored the data but whose answer is late, or never reaches
    /// a client that times out or dies meanwhile.
    SlowAnswer(Duration),
    /// Drop the connection without answering.
    CloseConnection,
    /// Answer with this status and `Location`.
    Redirect { code: u16, location: String },
    /// 200 with random bytes that are not JSON.
    Garbage,
    /// 200 with a body of exactly this many bytes (`x`), streamed.
    HugeBody(usize),
    /// 503 `{"text":"Server is busy","code":9}` (§1.7). While this is the sticky fault, the HEC
    /// health endpoint answers 503 code 18.
    SplunkBusy,
    /// The next HEC event request: envelopes before `index` are accepted, that one is rejected
    /// with `code` and `invalid-event-number`, the rest are not indexed (§1.8). A real error
    /// earlier in the batch wins; an `index` past the end means the whole batch is accepted.
    SplunkInvalidEventNumber { index: usize, code: u16 },
    /// A HEC event request carrying an envelope whose JSON contains `contains`: the envelopes
    /// before it are indexed, it and the rest are not, and the answer is 503 "Server is busy"
    /// (code 9) with its `invalid-event-number` (§1.8). As a sticky fault: one event HEC never
    /// takes while its neighbours are indexed.
    SplunkBusyAt { contains: String },
    /// The next HEC event request's ackId never turns true.
    SplunkAckNever,
    /// Per-item statuses for the next ES bulk request. 2xx means "process normally"; other
    /// statuses get realistic error bodies and the item is not stored, except 409 on `create`,
    /// which means the document already exists: it is stored first if absent, as by an earlier
    /// attempt whose answer was lost. Items past the end of the list are processed normally.
    EsItems(Vec<u16>),
    /// Per-item status for ES bulk items whose document contains `contains` (the others are
    /// processed normally): as a sticky fault, one event the cluster refuses every time while
    /// its neighbours are stored (§2.3).
    EsItemsMatching { contains: String, status: u16 },
}

/// One request as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    pub method: String,
    /// Path with the query string.
    pub path: String,
    /// Header names are lowercase; values are lossily decoded as UTF-8.
    pub headers: Vec<(String, String)>,
    /// The body after Content-Encoding was undone (the wire bytes if it could not be).
    pub body: Vec<u8>,
    /// Body bytes as received (before decompression).
    pub wire_bytes: usize,
    /// The status answered; 0 when the connection was dropped without an answer.
    pub status: u16,
}

impl RecordedRequest {
    /// The first value of a header (name matched case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A running emulator. Dropping it stops the server too, without waiting.
pub struct Emulator {
    addr: SocketAddr,
    shared: Arc<Shared>,
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

struct Shared {
    cfg: EmulatorConfig,
    state: Mutex<State>,
    changed: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
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
    fn new(auth: ExpectedAuth) -> State {
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

/// How a platform classifies a request before its body is read.
pub(crate) enum Route {
    /// Carries events: takes faults.
    Ingest,
    /// Health, ack polls, templates, info: never takes faults.
    Control,
    /// 404 / 405, answered as is.
    Reject(Reply),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Encoding {
    Identity,
    Gzip,
    Deflate,
    Other(String),
}

#[derive(Debug, Clone)]
pub(crate) enum BodyError {
    /// A Content-Encoding this server cannot undo.
    Unsupported(String),
    /// The compressed stream is broken.
    Corrupt(String),
    /// Decompressed size is over `max_content_length`.
    TooLarge,
}

/// A request body after Content-Encoding was undone (or not).
pub(crate) struct Body {
    pub encoding: Encoding,
    pub data: Result<Bytes, BodyError>,
}

/// A request as platforms see it.
pub(crate) struct Req<'a> {
    pub method: &'a Method,
    /// Path without the query.
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    pub body: &'a Body,
}

impl Req<'_> {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn query_param(&self, name: &str) -> Option<String> {
        url::form_urlencoded::parse(self.query?.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    /// The media type without parameters, lowercase (`application/json`).
    pub fn content_type(&self) -> Option<String> {
        let v = self.header("content-type")?;
        Some(v.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
    }
}

/// A platform's answer to one request.
pub(crate) struct Handled {
    pub reply: Reply,
    /// Whether the platform fault handed to it was applied (else it goes back to the queue).
    pub used_fault: bool,
}

impl From<Reply> for Handled {
    fn from(reply: Reply) -> Handled {
        Handled { reply, used_fault: false }
    }
}

pub(crate) enum ReplyBody {
    Bytes(Bytes),
    /// This many `x` bytes, streamed.
    Repeat(usize),
}

pub(crate) struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: ReplyBody,
    /// Close the connection after answering.
    pub close: bool,
}

impl Reply {
    pub fn empty(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: ReplyBody::Bytes(Bytes::new()),
            close: false,
        }
    }

    pub fn json(status: u16, v: &Value) -> Reply {
        Reply::empty(status)
            .header("content-type", "application/json; charset=UTF-8")
            .body(v.to_string())
    }

    pub fn text(status: u16, s: impl Into<String>) -> Reply {
        Reply::empty(status)
            .header("content-type", "text/plain; charset=UTF-8")
            .body(s.into())
    }

    pub fn header(mut self, name: &str, value: impl Into<String>) -> Reply {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    pub fn body(mut self, b: impl Into<Bytes>) -> Reply {
        self.body = ReplyBody::Bytes(b.into());
        self
    }

    fn has_header(&self, name: &str) -> bool {
        self.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name))
    }

    fn into_response(self) -> Response<RespBody> {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = match self.body {
            ReplyBody::Bytes(b) => Full::new(b).boxed(),
            ReplyBody::Repeat(n) => Repeat { left: n }.boxed(),
        };
        let mut resp = Response::new(body);
        *resp.status_mut() = status;
        let h = resp.headers_mut();
        for (k, v) in self.headers {
            // A test may inject any header text; skip what HTTP cannot carry instead of failing.
            if let (Ok(k), Ok(v)) = (
                hyper::header::HeaderName::from_bytes(k.as_bytes()),
                hyper::header::HeaderValue::from_str(&v),
            ) {
                h.append(k, v);
            }
        }
        if self.close {
            h.insert(hyper::header::CONNECTION, hyper::header::HeaderValue::from_static("close"));
        }
        resp
    }
}

/// Which outcome `ExpectedAuth` gives a request (generic and Elasticsearch; Splunk maps its
/// own codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuthCheck {
    Ok,
    Missing,
    Wrong,
}

pub(crate) fn check_auth(expected: &ExpectedAuth, headers: &HeaderMap) -> AuthCheck {
    match expected {
        ExpectedAuth::None => AuthCheck::Ok,
        ExpectedAuth::Basic { username, password } => match headers.get("authorization") {
            None => AuthCheck::Missing,
            Some(_) => match basic_credentials(headers) {
                Some((u, p)) if &u == username && &p == password => AuthCheck::Ok,
                _ => AuthCheck::Wrong,
            },
        },
        ExpectedAuth::Header { name, value } => match headers.get(name.as_str()) {
            None => AuthCheck::Missing,
            Some(v) if v.as_bytes() == value.as_bytes() => AuthCheck::Ok,
            Some(_) => AuthCheck::Wrong,
        },
    }
}

/// `Authorization: Basic base64(user:password)` decoded, if well-formed.
pub(crate) fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    use base64::Engine;
    let v = headers.get("authorization")?.to_str().ok()?;
    let b64 = strip_prefix_ci(v, "Basic ")?.trim();
    let raw = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (u, p) = s.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

/// `s` without `prefix`, compared ASCII-case-insensitively (auth schemes are case-insensitive).
pub(crate) fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &s[prefix.len()..])
}

// ---------------------------------------------------------------------------------------------
// Server

type RespBody = BoxBody<Bytes, Infallible>;

/// Returned by the service to make hyper drop the connection without writing an answer.
#[derive(Debug)]
struct DropConnection;

impl fmt::Display for DropConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("connection dropped on purpose by the emulator")
    }
}

impl std::error::Error for DropConnection {}

async fn serve(listener: TcpListener, shared: Arc<Shared>, mut stop: oneshot::Receiver<()>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            // Fires on stop() and when the Emulator is dropped (sender gone).
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    conns.spawn(serve_connection(stream, shared.clone()));
                }
                Err(e) => {
                    // E.g. EMFILE: back off a little instead of spinning.
                    tracing::warn!(error = %e, "SIEM emulator: accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    drop(listener);
    conns.shutdown().await;
}

async fn serve_connection(stream: TcpStream, shared: Arc<Shared>) {
    let _ = stream.set_nodelay(true);
    let svc = service_fn(move |req| handle(shared.clone(), req));
    let conn = http1::Builder::new().keep_alive(true).serve_connection(TokioIo::new(stream), svc);
    if let Err(e) = conn.await {
        tracing::debug!(error = %e, "SIEM emulator: connection ended with an error");
    }
}

/// Bodies past the limit are read and discarded up to this much, so the client finishes sending
/// and reads the 413 instead of a connection reset.
const DRAIN_LIMIT: usize = 64 * 1024 * 1024;

enum ReadOutcome {
    Complete(Bytes),
    TooLarge { read: usize, close: bool },
    Broken { read: usize },
}

async fn read_body(mut body: Incoming, declared: Option<u64>, max: usize, expect_continue: bool) -> ReadOutcome {
    if let Some(n) = declared {
        if n > max as u64 {
            if expect_continue || n > DRAIN_LIMIT as u64 {
                return ReadOutcome::TooLarge { read: 0, close: true };
            }
            return drain(body, 0).await;
        }
    }
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => {
                if let Ok(data) = f.into_data() {
                    if buf.len() + data.len() > max {
                        let read = buf.len() + data.len();
                        drop(buf);
                        return drain(body, read).await;
                    }
                    buf.extend_from_slice(&data);
                }
            }
            Err(_) => return ReadOutcome::Broken { read: buf.len() },
        }
    }
    ReadOutcome::Complete(buf.freeze())
}

async fn drain(mut body: Incoming, mut read: usize) -> ReadOutcome {
    while read <= DRAIN_LIMIT {
        match body.frame().await {
            None => return ReadOutcome::TooLarge { read, close: false },
            Some(Ok(f)) => {
                if let Ok(d) = f.into_data() {
                    read += d.len();
                }
            }
            Some(Err(_)) => return ReadOutcome::Broken { read },
        }
    }
    ReadOutcome::TooLarge { read, close: true }
}

/// Undoes Content-Encoding; the decompressed size is bounded by `max`.
fn decode(headers: &HeaderMap, wire: Bytes, max: usize) -> Body {
    let mut codings: Vec<String> = Vec::new();
    for v in headers.get_all(hyper::header::CONTENT_ENCODING) {
        let v = String::from_utf8_lossy(v.as_bytes()).to_ascii_lowercase();
        for c in v.split(',') {
            let c = c.trim();
            if !c.is_empty() && c != "identity" {
                codings.push(c.to_string());
            }
        }
    }
    let encoding = match codings.as_slice() {
        [] => Encoding::Identity,
        [c] if c == "gzip" || c == "x-gzip" => Encoding::Gzip,
        [c] if c == "deflate" => Encoding::Deflate,
        _ => Encoding::Other(codings.join(", ")),
    };
    let data = match &encoding {
        Encoding::Identity => Ok(wire),
        // Multi-member gzip is valid gzip (RFC 1952 §2.2).
        Encoding::Gzip => inflate(flate2::read::MultiGzDecoder::new(&wire[..]), max),
        // HTTP "deflate" is zlib (RFC 9110 §8.4.1.2).
        Encoding::Deflate => inflate(flate2::read::ZlibDecoder::new(&wire[..]), max),
        Encoding::Other(c) => Err(BodyError::Unsupported(c.clone())),
    };
    Body { encoding, data }
}

fn inflate(r: impl Read, max: usize) -> Result<Bytes, BodyError> {
    let mut out = Vec::new();
    match r.take(max as u64 + 1).read_to_end(&mut out) {
        Ok(_) if out.len() > max => Err(BodyError::TooLarge),
        Ok(_) => Ok(Bytes::from(out)),
        Err(e) => Err(BodyError::Corrupt(e.to_string())),
    }
}

/// What to do after the answer is decided.
enum After {
    Answer,
    Hang(Duration),
    Close,
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Response<RespBody>, DropConnection> {
    let (parts, incoming) = req.into_parts();
    let cfg = &shared.cfg;
    let kind = cfg.kind;
    let path = parts.uri.path().to_string();
    let mut rec = RecordedRequest {
        method: parts.method.to_string(),
        path: parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| path.clone()),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect(),
        body: Vec::new(),
        wire_bytes: 0,
        status: 0,
    };

    let route = match kind {
        Kind::Generic => generic::route(&parts.method, &path),
        Kind::SplunkHec => splunk_hec::route(&parts.method, &path),
        Kind::Elasticsearch => elasticsearch::route(&parts.method, &path),
        Kind::SumoLogic => sumo_logic::route(&parts.method, &path),
        Kind::Datadog => datadog::route(&parts.method, &path),
        Kind::AzureMonitor => azure_monitor::route(&parts.method, &path),
    };

    let declared = parts
        .headers
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let expect_continue = parts
        .headers
        .get(hyper::header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let wire = match read_body(incoming, declared, cfg.max_content_length, expect_continue).await {
        ReadOutcome::Complete(b) => b,
        ReadOutcome::TooLarge { read, close } => {
            rec.wire_bytes = read;
            let mut reply = match route {
                Route::Reject(r) => r,
                _ => too_large(kind, declared.unwrap_or(read as u64), cfg.max_content_length),
            };
            reply.close = close;
            return Ok(finish(&shared, rec, reply));
        }
        ReadOutcome::Broken { read } => {
            rec.wire_bytes = read;
            record(&shared, rec);
            return Err(DropConnection);
        }
    };
    rec.wire_bytes = wire.len();
    let ingest = match route {
        Route::Reject(reply) => {
            rec.body = wire.to_vec();
            return Ok(finish(&shared, rec, reply));
        }
        Route::Ingest => true,
        Route::Control => false,
    };

    let body = decode(&parts.headers, wire.clone(), cfg.max_content_length);
    rec.body = match &body.data {
        Ok(b) => b.to_vec(),
        Err(_) => wire.to_vec(),
    };
    let req = Req {
        method: &parts.method,
        path: &path,
        query: parts.uri.query(),
        headers: &parts.headers,
        body: &body,
    };

    let (reply, after) = {
        let mut st = shared.lock();
        let taken = if ingest { take_fault(&mut st) } else { None };
        let transport = taken.as_ref().and_then(|(f, _)| transport_fault(kind, f));
        let (reply, after) = match transport {
            Some(t) => t,
            None => {
                let slow = match &taken {
                    Some((Fault::SlowAnswer(d), _)) => Some(*d),
                    _ => None,
                };
                let platform_fault = taken.as_ref().map(|(f, _)| f).filter(|f| fits(kind, f) && slow.is_none());
                let h = match kind {
                    Kind::Generic => generic::handle(&mut st, &req),
                    Kind::SplunkHec => splunk_hec::handle(cfg, &mut st, &req, platform_fault),
                    Kind::Elasticsearch => elasticsearch::handle(cfg, &mut st, &req, platform_fault),
                    Kind::SumoLogic => sumo_logic::handle(cfg, &mut st, &req),
                    Kind::Datadog => datadog::handle(cfg, &mut st, &req),
                    Kind::AzureMonitor => azure_monitor::handle(cfg, &mut st, &req),
                };
                if let Some((f, one_shot)) = taken {
                    if !fits(kind, &f) {
                        tracing::warn!(fault = ?f, ?kind, "SIEM emulator: fault does not apply to this kind; dropped");
                    } else if one_shot && !h.used_fault && slow.is_none() {
                        // E.g. EsItems while the client sent a single `_doc`: keep it for the next request.
                        st.faults.push_front(f);
                    }
                }
                (h.reply, slow.map_or(After::Answer, After::Hang))
            }
        };
        rec.status = match after {
            After::Close => 0,
            _ => reply.status,
        };
        st.requests.push(rec);
        (reply, after)
    };
    shared.changed.notify_waiters();

    match after {
        After::Answer => {}
        After::Hang(d) => tokio::time::sleep(d).await,
        After::Close => return Err(DropConnection),
    }
    Ok(flavour(cfg, reply).into_response())
}

fn record(shared: &Shared, rec: RecordedRequest) {
    shared.lock().requests.push(rec);
    shared.changed.notify_waiters();
}

fn finish(shared: &Shared, mut rec: RecordedRequest, reply: Reply) -> Response<RespBody> {
    let reply = flavour(&shared.cfg, reply);
    rec.status = reply.status;
    record(shared, rec);
    reply.into_response()
}

fn too_large(kind: Kind, len: u64, max: usize) -> Reply {
    match kind {
        Kind::SplunkHec => splunk_hec::too_large(len, max),
        Kind::Elasticsearch => elasticsearch::too_large(),
        Kind::SumoLogic => sumo_logic::too_large(len, max),
        Kind::Generic => generic::too_large(len, max),
        Kind::Datadog => datadog::too_large(),
        Kind::AzureMonitor => azure_monitor::too_large(len, max),
    }
}

fn take_fault(st: &mut State) -> Option<(Fault, bool)> {
    match st.faults.pop_front() {
        Some(f) => Some((f, true)),
        None => st.sticky.clone().map(|f| (f, false)),
    }
}

/// Whether a platform-specific fault belongs to this kind (transport faults fit every kind).
fn fits(kind: Kind, f: &Fault) -> bool {
    match f {
        Fault::SplunkInvalidEventNumber { .. } | Fault::SplunkBusyAt { .. } | Fault::SplunkAckNever => kind == Kind::SplunkHec,
        Fault::EsItems(_) | Fault::EsItemsMatching { .. } => kind == Kind::Elasticsearch,
        _ => true,
    }
}

/// OpenSearch never sends Elasticsearch's product header, whatever path built the answer.
fn flavour(cfg: &EmulatorConfig, mut r: Reply) -> Reply {
    if cfg.kind == Kind::Elasticsearch && cfg.es_opensearch {
        r.headers.retain(|(k, _)| !k.eq_ignore_ascii_case("x-elastic-product"));
    }
    r
}

/// Headers the vendor puts on its answers: ES sends `X-elastic-product` on every one but 401
/// (§2.9).
fn vendor_headers(kind: Kind, r: Reply) -> Reply {
    match kind {
        Kind::Elasticsearch if r.status != 401 => elasticsearch::with_product_header(r),
        _ => r,
    }
}

/// The answer for a fault that does not depend on the request; `None` for platform faults.
fn transport_fault(kind: Kind, f: &Fault) -> Option<(Reply, After)> {
    let reply = match f {
        Fault::Status { code, body, headers } => {
            let mut r = Reply::empty(*code).body(body.clone());
            for (k, v) in headers {
                r = r.header(k, v.clone());
            }
            if !r.has_header("content-type") && !body.is_empty() {
                let t = body.trim_start();
                let ct = if t.starts_with('{') || t.starts_with('[') {
                    "application/json; charset=UTF-8"
                } else {
                    "text/plain; charset=UTF-8"
                };
                r = r.header("content-type", ct);
            }
            vendor_headers(kind, r)
        }
        Fault::Hang(d) => return Some((Reply::text(503, "Service Unavailable"), After::Hang(*d))),
        Fault::CloseConnection => return Some((Reply::empty(0), After::Close)),
        Fault::Redirect { code, location } => Reply::empty(*code).header("location", location.clone()),
        Fault::Garbage => {
            use rand::Rng;
            let mut b = vec![0u8; 256];
            rand::thread_rng().fill(&mut b[..]);
            // A NUL first byte: no JSON (or UTF-8 text) parser accepts this body.
            b[0] = 0;
            let r = Reply::empty(200).header("content-type", "application/json; charset=UTF-8").body(b);
            vendor_headers(kind, r)
        }
        Fault::HugeBody(n) => {
            let mut r = Reply::empty(200).header("content-type", "application/json; charset=UTF-8");
            r.body = ReplyBody::Repeat(*n);
            vendor_headers(kind, r)
        }
        Fault::SplunkBusy => splunk_hec::hec(9),
        Fault::SlowAnswer(_)
        | Fault::SplunkInvalidEventNumber { .. }
        | Fault::SplunkBusyAt { .. }
        | Fault::SplunkAckNever
        | Fault::EsItems(_)
        | Fault::EsItemsMatching { .. } => return None,
    };
    Some((reply, After::Answer))
}

/// A response body of `left` bytes of `x`, streamed in 64 KiB chunks.
struct Repeat {
    left: usize,
}

static FILL: [u8; 64 * 1024] = [b'x'; 64 * 1024];

impl hyper::body::Body for Repeat {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let n = self.left.min(FILL.len());
        self.left -= n;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&FILL[..n])))))
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.left as u64)
    }
}

/// Helpers for the emulator tests: a plain client and a raw HTTP/1.1 exchange.
#[cfg(test)]
pub(crate) mod testkit {
    use std::io::Write;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::{Emulator, EmulatorConfig};

    pub async fn start(cfg: EmulatorConfig) -> Emulator {
        Emulator::start(cfg).await.expect("start the emulator on 127.0.0.1")
    }

    /// No proxy from the environment, no redirects followed (docs/PROTOCOLS.md §5.5).
    pub fn client() -> reqwest::Client {
        reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("build the test client")
    }

    /// The response body parsed as JSON (reqwest's `json` feature is not enabled).
    pub async fn json_body(r: reqwest::Response) -> serde_json::Value {
        let b = r.bytes().await.expect("read the response body");
        serde_json::from_slice(&b).unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&b)))
    }

    pub fn gzip(raw: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(raw).unwrap();
        e.finish().unwrap()
    }

    pub fn deflate(raw: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(raw).unwrap();
        e.finish().unwrap()
    }

    /// A response read off a raw socket.
    #[derive(Debug)]
    pub struct RawResponse {
        pub status: u16,
        pub headers: Vec<(String, String)>,
        pub body: Vec<u8>,
    }

    /// Reads one response (Content-Length framed, as every emulator answer is); `None` if the
    /// server closed the connection first.
    pub async fn read_response(s: &mut TcpStream) -> Option<RawResponse> {
        let mut buf = Vec::new();
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let len: usize = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut body = buf[head_end..].to_vec();
        while body.len() < len {
            let mut chunk = vec![0u8; len - body.len()];
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => body.extend_from_slice(&chunk[..n]),
            }
        }
        Some(RawResponse { status, headers, body })
    }

    pub async fn exchange(s: &mut TcpStream, request: &[u8]) -> Option<RawResponse> {
        s.write_all(request).await.ok()?;
        read_response(s).await
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use rand::{Rng, SeedableRng};
    use serde_json::json;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpStream;

    use super::testkit::*;
    use super::*;

    const LONG: Duration = Duration::from_secs(30);

    async fn post_json(emu: &Emulator, body: &str) -> reqwest::Result<reqwest::Response> {
        client()
            .post(emu.url())
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
    }

    #[tokio::test]
    async fn url_points_at_each_platforms_ingest_path() {
        for (kind, suffix) in [
            (Kind::Generic, "/collector".to_string()),
            (Kind::SplunkHec, "/services/collector/event".to_string()),
            (Kind::Elasticsearch, "/sendauth/_doc".to_string()),
            (
                Kind::SumoLogic,
                format!("/receiver/v1/http/{}", EmulatorConfig::new(Kind::SumoLogic).sumo_token),
            ),
        ] {
            let emu = start(EmulatorConfig::new(kind)).await;
            assert_eq!(emu.url(), format!("http://{}{suffix}", emu.addr()));
            assert!(emu.addr().ip().is_loopback());
        }
    }

    #[tokio::test]
    async fn requests_are_recorded_with_method_path_query_headers_and_status() {
        let emu = start(EmulatorConfig::new(Kind::Generic)).await;
        let r = client()
            .post(format!("{}?a=1&b=two", emu.url()))
            .header("content-type", "application/json")
            .header("X-Trace", "t-1")
            .body(r#"{"n":1}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let rec = emu.requests();
        assert_eq!(rec.len(), 1);
        assert_eq!(rec[0].method, "POST");
        assert_eq!(rec[0].path, "/collector?a=1&b=two");
        assert_eq!(rec[0].header("x-trace"), Some("t-1"));
        assert!(rec[0].headers.iter().any(|(k, _)| k == "x-trace"), "names are lowercase");
        assert_eq!(rec[0].body, br#"{"n":1}"#);
        assert_eq!(rec[0].wire_bytes, 7);
        assert_eq!(rec[0].status, 200);
    }

    #[tokio::test]
    async fn one_shot_faults_are_consumed_fifo_before_the_sticky_fault() {
        let emu = start(EmulatorConfig::new(Kind::Generic)).await;
        let status = |code: u16| Fault::Status {
            code,
            body: String::new(),
            headers: vec![],
        };
        emu.push_fault(status(500));
        emu.push_fault(status(502));
        emu.set_fault(Some(status(503)));
        let mut seen = Vec::new();
        for _ in 0..4 {
            seen.push(post_json(&emu, r#"{"n":1}"#).await.unwrap().status().as_u16());
        }
        assert_eq!(seen, [500, 502, 503, 503]);
        emu.set_fault(None);
        assert_eq!(post_json(&emu, r#"{"n":2}"#).await.unwrap().status(), 200);
        assert_eq!(emu.events(), vec![json!({"n":2})], "nothing is accepted under a fault");
    }

    #[tokio::test]
    async fn status_fault_answers_with_its_body_and_headers() {
        let emu = start(EmulatorConfig::new(Kind::Generic)).await;
        emu.push_fault(Fault::Status {
            code: 429,
            body: r#"{"error":"slow down"}"#.into(),
            headers: vec![("Retry-After".into(), "7".into())],
        });
        let r = post_json(&emu, "{}").await.unwrap();
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()["retry-after"], "7");
        assert_eq!(r.headers()["content-type"], "application/json; charset=UTF-8");
        assert_eq!(r.text().await.unwrap(), r#"{"error":"slow down"}"#);
        assert_eq!(emu.requests()[0].status, 429);
        assert_eq!(emu.event_count(), 0);
    }

    #[tokio::test]
    async fn hang_fault_answers_503_only_after_the_delay() {
        let emu = start(EmulatorConfig::new(Kind::Generic)).await;
        emu.push_fault(Fault::Hang(Duration::from_millis(300)));
        let t = Instant::now();
        let r = post_json(&emu, "{}").await.unwrap();
        assert_eq!(r.status(), 503);
        assert!(t.elapsed() >= Duration::from_millis(300));
        assert_eq!(emu.event_count(), 0);
    }

    #[tokio::test]
    async fn hang_fault_makes_a_client_time_out_and_stop_does_not_wait_for_it() {
        let emu = start(EmulatorConfig::new(Kind::Generic)).await;
        emu.push_fault(Fault::Hang(Duration::from_secs(3600)));
        let c = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_millis(200))
            .build()
            .unwrap();
        let err = c
            .post(emu.url())
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap_err();
        assert!(err.is_timeout(), "{err}");
        // Under load the client may give up before the server has even read the request.
        assert!(emu.wait_for_requests(1, LONG).await);
        assert_eq!(emu.requests()[0].status, 503, "recorded as soon as it was read");
        tokio::time::timeout(LONG, emu.stop())
            .await
            .expect("stop closes hanging connections");
    }

    #[tokio::test]
    async fn slow_answer_fault_accepts_the_events_and_answers_only_after_the_delay() {
        let emu = start(EmulatorConfig::new(Kind::Generic)).await;
        emu.push_fault(Fault::SlowAnswer(Duration::from_millis(300)));
        let t = Instant::now();
        assert_eq!(post_json(&emu, r#"{"n":1}"#).await.unwrap().status(), 200);
        assert!(t.elapsed() >= Duration::from_millis(300));
        assert_eq!(emu.events(), vec![json!({"n":1})]);
        assert_eq!(emu.requests()[0].status, 200);
        // One-shot, and never put back for a later request.
        assert_eq!(post_json(&emu, r#"{"n":2}"#).await.unwrap().status(), 200);
        assert!(emu.shared.lock().faults.is_empty());
        assert_eq!(emu.event_count(), 2);
    }

    #[tokio::test]
    async fn slow_answer_fault_records_the_events_before_the_client_gives_up() {
        let emu = start(EmulatorConfig::new(Kind::Generic)).await;
        emu.push_fault(Fault::SlowAnswer(Duration::from_secs(3600)));
        let c = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_millis(200))
            .build()
            .unwrap();
        let err = c
            .post(emu.url())
            .header("content-type", "application/json")
            .body(r#"{"n":1}"#)
            .send()
            .await
            .unwrap_err();
        assert!(err.is_timeout(), "{err}");
        assert!(emu.wait_for_events(1, LONG).await, "stored although the answer never came");
        tokio::time::timeout(LONG, emu.stop())
            .await
            .expect("stop closes the held connection");
    }

    #[tokio::test]
    async fn close_connection_fault_drops_the_connection_without_an_answer() {
        let emu = start(EmulatorConfig::new(Kind::Generic)).await;
        emu.push_fault(Fault::CloseConnection);
        let err = post_json(&emu, "{}").await.unwrap_err();
        assert!(!err.is_status(), "{err}");
        assert_eq!(emu.requests()[0].status, 0);
        assert_eq!(post_json(&emu, r#"{"n":1}"#).await.unwrap().status(), 200);
        assert_eq!(emu.event_count(), 1);
    }

    #[tokio::test]
    async fn redirect_fault_answers_location_and_accepts_nothing() {
        let emu = start(EmulatorConfig::new(Kind::Generic)).await;
        emu.push_fault(Fault::Redirect {
            code: 308,
            location: "https://elsewhere.example.com/collector".into(),
        });
        let r = post_json(&emu, "{}").await.unwrap();
        assert_eq!(r.status(), 308);
        assert_eq!(r.headers()["location"], "https://elsewhere.example.com/collector");
        assert_eq!(emu.event_count(), 0);
    }

    #[tokio::test]
    async fn garbage_and_huge_body_faults() {
        let emu = start(EmulatorConfig::new(Kind::SplunkHec)).await;
        emu.push_fault(Fault::Garbage);
        emu.push_fault(Fault::HugeBody(5 * 1024 * 1024 + 3));
        let r = client().post(emu.url()).body(r#"{"event":1}"#).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let b = r.bytes().await.unwrap();
        assert!(!b.is_empty());
        assert!(serde_json::from_slice::<serde_json::Value>(&b).is_err());
        let r = client().post(emu.url()).body(r#"{"event":1}"#).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.content_length(), Some(5 * 1024 * 1024 + 3));
        assert_eq!(r.bytes().await.unwrap().len(), 5 * 1024 * 1024 + 3);
        assert_eq!(emu.event_count(), 0);
    }

    #[tokio::test]
    async fn faults_skip_control_requests() {
        let emu = start(EmulatorConfig::new(Kind::SplunkHec)).await;
        emu.push_fault(Fault::Status {
            code: 500,
            body: String::new(),
            headers: vec![],
        });
        let health = format!("http://{}/services/collector/health", emu.addr());
        assert_eq!(client().get(health).send().await.unwrap().status(), 200);
        let r = client().post(emu.url()).body(r#"{"event":1}"#).send().await.unwrap();
        assert_eq!(r.status(), 500);
    }

    #[tokio::test]
    async fn platform_fault_on_another_kind_is_dropped_not_stuck() {
        let emu = start(EmulatorConfig::new(Kind::Generic)).await;
        emu.push_fault(Fault::EsItems(vec![429]));
        emu.push_fault(Fault::Status {
            code: 502,
            body: String::new(),
            headers: vec![],
        });
        assert_eq!(post_json(&emu, "{}").await.unwrap().status(), 200);
        assert_eq!(post_json(&emu, "{}").await.unwrap().status(), 502);
    }

    #[tokio::test]
    async fn oversized_body_is_413_and_the_client_can_go_on() {
        let mut cfg = EmulatorConfig::new(Kind::Generic);
        cfg.max_content_length = 1024;
        let emu = start(cfg).await;
        let big = format!(r#"{{"pad":"{}"}}"#, "x".repeat(200_000));
        let r = post_json(&emu, &big).await.unwrap();
        assert_eq!(r.status(), 413);
        assert!(json_body(r).await["error"].is_string());
        let rec = &emu.requests()[0];
        assert_eq!((rec.status, rec.body.len()), (413, 0), "the body is not kept");
        assert_eq!(post_json(&emu, r#"{"n":1}"#).await.unwrap().status(), 200);
        // gzip that inflates past the limit is refused as well.
        let bomb = gzip(&vec![b' '; 10 * 1024]);
        assert!(bomb.len() < 1024);
        let r = client()
            .post(emu.url())
            .header("content-type", "application/json")
            .header("content-encoding", "gzip")
            .body(bomb)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 413);
        assert_eq!(emu.event_count(), 1);
    }

    #[tokio::test]
    async fn chunked_body_over_the_limit_is_413() {
        let mut cfg = EmulatorConfig::new(Kind::Generic);
        cfg.max_content_length = 100;
        let emu = start(cfg).await;
        let mut s = TcpStream::connect(emu.addr()).await.unwrap();
        let mut req =
            b"POST /collector HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for _ in 0..10 {
            req.extend_from_slice(b"40\r\n");
            req.extend_from_slice(&[b' '; 64]);
            req.extend_from_slice(b"\r\n");
        }
        req.extend_from_slice(b"0\r\n\r\n");
        let r = exchange(&mut s, &req).await.expect("an answer");
        assert_eq!(r.status, 413);
        assert!(String::from_utf8_lossy(&r.body).contains("over the limit"));
        assert_eq!(emu.requests()[0].body, b"", "nothing past the limit is kept");
    }

    #[tokio::test]
    async fn expect_continue_over_the_limit_is_refused_before_the_body_is_sent() {
        let mut cfg = EmulatorConfig::new(Kind::Generic);
        cfg.max_content_length = 100;
        let emu = start(cfg).await;
        let mut s = TcpStream::connect(emu.addr()).await.unwrap();
        let head = b"POST /collector HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\nExpect: 100-continue\r\n\r\n";
        let r = exchange(&mut s, head).await.expect("an answer without sending the body");
        assert_eq!(r.status, 413);
        assert_eq!(emu.requests()[0].wire_bytes, 0);
    }

    #[tokio::test]
    async fn keep_alive_serves_several_requests_on_one_connection() {
        let emu = start(EmulatorConfig::new(Kind::Generic)).await;
        let mut s = TcpStream::connect(emu.addr()).await.unwrap();
        for n in 0..3 {
            let body = format!(r#"{{"n":{n}}}"#);
            let req = format!(
                "POST /collector HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            let r = exchange(&mut s, req.as_bytes()).await.expect("an answer on the same connection");
            assert_eq!(r.status, 200);
            assert!(!r.headers.iter().any(|(k, v)| k == "connection" && v == "close"));
        }
        assert_eq!(emu.events(), (0..3).map(|n| json!({ "n": n })).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn junk_input_never_takes_a_server_down() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
        for kind in [Kind::Generic, Kind::SplunkHec, Kind::Elasticsearch, Kind::SumoLogic] {
            let emu = start(EmulatorConfig::new(kind)).await;
            // Not HTTP at all.
            let mut s = TcpStream::connect(emu.addr()).await.unwrap();
            s.write_all(b"\x00\xff\xfe GARBAGE\r\n\r\n").await.unwrap();
            let _ = read_response(&mut s).await;
            // HTTP with random bodies, types and encodings.
            let c = client();
            let paths = [emu.url(), format!("http://{}/_bulk", emu.addr())];
            for i in 0..60 {
                let len = rng.gen_range(0..300);
                let mut body: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
                if i % 3 == 0 {
                    // Near-valid JSON is more interesting than noise.
                    body = b"{\"event\":{\"a\":[1,{\"b\":\"\xff\"}]}}\n{\"create\":{}}\n"[..len.min(44)].to_vec();
                }
                let ct = ["application/json", "application/x-ndjson", "text/plain", ""][i % 4];
                let ce = ["", "gzip", "deflate", "br"][(i / 4) % 4];
                let mut rb = c.post(&paths[i % 2]).body(body);
                if !ct.is_empty() {
                    rb = rb.header("content-type", ct);
                }
                if !ce.is_empty() {
                    rb = rb.header("content-encoding", ce);
                }
                let r = rb.send().await.expect("the server answers");
                assert!(r.status().as_u16() < 500, "{kind:?}: {}", r.status());
            }
            // Answered requests are already recorded; the non-HTTP bytes never became one.
            assert_eq!(emu.requests().len(), 60, "{kind:?}");
            assert!(emu.wait_for_requests(60, LONG).await);
            assert!(!post_json(&emu, "{}").await.unwrap().status().is_server_error());
        }
    }

    #[tokio::test]
    async fn stop_frees_the_port_for_start_on() {
        let emu = start(EmulatorConfig::new(Kind::Generic)).await;
        let addr = emu.addr();
        // A keep-alive connection stays open in the client's pool across the stop.
        let c = client();
        let send = |c: &reqwest::Client| {
            c.post(format!("http://{addr}/collector"))
                .header("content-type", "application/json")
                .body(r#"{"n":1}"#)
                .send()
        };
        assert_eq!(send(&c).await.unwrap().status(), 200);
        emu.stop().await;
        assert!(TcpStream::connect(addr).await.is_err(), "nothing listens after stop");
        assert!(send(&client()).await.is_err());

        let emu = Emulator::start_on(addr, EmulatorConfig::new(Kind::Generic)).await.unwrap();
        assert_eq!(emu.addr(), addr);
        let mut status = send(&c).await.map(|r| r.status().as_u16());
        if status.is_err() {
            // The pooled connection died with the old server; one retry opens a fresh one.
            status = send(&c).await.map(|r| r.status().as_u16());
        }
        assert_eq!(status.unwrap(), 200);
        assert_eq!(emu.event_count(), 1, "a restarted SIEM starts empty");
        emu.stop().await;
    }

    #[tokio::test]
    async fn wait_for_events_wakes_on_arrival_and_times_out_otherwise() {
        let emu = start(EmulatorConfig::new(Kind::Generic)).await;
        assert!(!emu.wait_for_events(1, Duration::from_millis(50)).await);
        let url = emu.url();
        let sender = tokio::spawn(async move {
            for n in 0..3 {
                client()
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(format!(r#"{{"n":{n}}}"#))
                    .send()
                    .await
                    .unwrap();
            }
        });
        assert!(emu.wait_for_events(3, LONG).await);
        sender.await.unwrap();
        assert_eq!(emu.event_count(), 3);
    }
}
