//! The demo's SIEM: a small generic JSON receiver on 127.0.0.1, built into the product so that
//! `sendauth-siem demo` needs nothing else. It is not a SIEM emulator (those live in the
//! `sendauth-siem-emulators` crate, used only by the tests): it speaks only what the demo's
//! agent sends, the generic platform's contract.
//!
//! - `POST /collector` with a bearer token (`Authorization: Bearer <token>`); a body of one
//!   JSON object, a JSON array of objects, or NDJSON (one object per line, blank lines ignored),
//!   without `Content-Encoding`;
//! - answers: 200 `{"status":"ok"}`; 401 wrong or missing token; 404 other path; 405 other
//!   method; 413 body over [`MAX_BODY`]; 415 a compressed body; 400 not JSON objects; 503 while
//!   the demo's outage scene has it [`down`](DemoReceiver::set_down).
//!
//! Invariants:
//! - [`DemoReceiver::events`] holds exactly the accepted events, in the order accepted; a batch
//!   is all-or-nothing, and nothing is kept while down;
//! - no input panics the server (a poisoned lock is recovered, client data never unwrapped);
//! - [`DemoReceiver::stop`] returns once the listener and every connection are closed.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, Notify};
use tokio::task::{JoinHandle, JoinSet};

/// The only path that takes events.
const PATH: &str = "/collector";
/// Largest body accepted; the demo's events are a few hundred bytes each.
const MAX_BODY: usize = 4 * 1024 * 1024;

/// A running demo receiver.
pub(crate) struct DemoReceiver {
    /// Where it listens (127.0.0.1, a free port).
    addr: SocketAddr,
    /// What the connection tasks and the demo share.
    shared: Arc<Shared>,
    /// Tells the accept loop to stop; dropped (which also stops it) with the receiver.
    stop: Option<oneshot::Sender<()>>,
    /// The accept loop, which owns every connection task.
    server: Option<JoinHandle<()>>,
}

struct Shared {
    /// The token a request must carry, as the whole `Authorization` header value.
    authorization: String,
    state: Mutex<State>,
    /// Woken whenever an event is accepted.
    changed: Notify,
}

#[derive(Default)]
struct State {
    events: Vec<Value>,
    /// The outage scene: every request is answered 503 and nothing is kept.
    down: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl DemoReceiver {
    /// Starts on 127.0.0.1 with a free port, expecting `Authorization: Bearer <token>`.
    pub async fn start(token: &str) -> std::io::Result<DemoReceiver> {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            authorization: format!("Bearer {token}"),
            state: Mutex::new(State::default()),
            changed: Notify::new(),
        });
        let (stop_tx, stop_rx) = oneshot::channel();
        let server = tokio::spawn(serve(listener, shared.clone(), stop_rx));
        Ok(DemoReceiver {
            addr,
            shared,
            stop: Some(stop_tx),
            server: Some(server),
        })
    }

    /// The URL the agent is configured with.
    pub fn url(&self) -> String {
        format!("http://{}{PATH}", self.addr)
    }

    /// Every accepted event, in order.
    pub fn events(&self) -> Vec<Value> {
        self.shared.lock().events.clone()
    }

    /// Starts (`true`) or ends the outage: while down, every request is answered 503.
    pub(crate) fn set_down(&self, down: bool) {
        self.shared.lock().down = down;
    }

    /// Waits until at least `n` events were accepted; false if `timeout` passed first.
    pub async fn wait_for_events(&self, n: usize, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.shared.changed.notified();
            tokio::pin!(notified);
            // Register before checking, so an event accepted in between is not missed.
            notified.as_mut().enable();
            if self.shared.lock().events.len() >= n {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.shared.lock().events.len() >= n;
            }
        }
    }

    /// Stops listening and closes every connection.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }
}

async fn serve(listener: TcpListener, shared: Arc<Shared>, mut stop: oneshot::Receiver<()>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            // Fires on stop() and when the receiver is dropped (sender gone).
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    conns.spawn(serve_connection(stream, shared.clone()));
                }
                // E.g. EMFILE: back off a little instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
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
    // A connection error (the agent hung up) ends only that connection.
    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.uri().path() != PATH {
        return Ok(answer(
            404,
            json!({"error": format!("no collector at {}; POST to {PATH}", req.uri().path())}),
        ));
    }
    if req.method() != Method::POST {
        return Ok(answer(
            405,
            json!({"error": format!("method {} not allowed on {PATH}; use POST", req.method())}),
        ));
    }
    let authorized = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .is_some_and(|v| v.as_bytes() == shared.authorization.as_bytes());
    if !authorized {
        return Ok(answer(401, json!({"error": "unauthorized"})));
    }
    if shared.lock().down {
        return Ok(answer(503, json!({"error": "service unavailable (demo outage)"})));
    }
    if let Some(enc) = req.headers().get(hyper::header::CONTENT_ENCODING) {
        let enc = String::from_utf8_lossy(enc.as_bytes()).into_owned();
        return Ok(answer(
            415,
            json!({"error": format!("unsupported Content-Encoding {enc}; send the body uncompressed")}),
        ));
    }
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) => {
            let status = if e.is::<http_body_util::LengthLimitError>() { 413 } else { 400 };
            return Ok(answer(status, json!({"error": format!("cannot read the body: {e}")})));
        }
    };
    match parse(&body) {
        Ok(events) => {
            let mut st = shared.lock();
            // The outage may have begun while the body was read: then nothing is kept.
            if st.down {
                return Ok(answer(503, json!({"error": "service unavailable (demo outage)"})));
            }
            st.events.extend(events);
            drop(st);
            shared.changed.notify_waiters();
            Ok(answer(200, json!({"status": "ok"})))
        }
        Err(msg) => Ok(answer(400, json!({"error": msg}))),
    }
}

/// One JSON object, a JSON array of objects, or NDJSON objects; all or nothing.
fn parse(body: &[u8]) -> Result<Vec<Value>, String> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(o)) => return Ok(vec![Value::Object(o)]),
        Ok(Value::Array(items)) => {
            return match items.iter().position(|v| !v.is_object()) {
                Some(i) => Err(format!("array element {i} is not a JSON object")),
                None => Ok(items),
            }
        }
        Ok(_) => return Err("expected a JSON object, an array of objects or NDJSON".into()),
        // Not one JSON value: NDJSON, perhaps.
        Err(_) => {}
    }
    let mut out = Vec::new();
    for (i, line) in body.split(|b| *b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<Value>(line) {
            Ok(v @ Value::Object(_)) => out.push(v),
            Ok(_) => return Err(format!("line {}: not a JSON object", i + 1)),
            Err(e) => return Err(format!("line {}: invalid JSON: {e}", i + 1)),
        }
    }
    if out.is_empty() {
        return Err("empty body; send a JSON object".into());
    }
    Ok(out)
}

fn answer(status: u16, body: Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_takes_an_object_an_array_or_ndjson_all_or_nothing() {
        assert_eq!(parse(br#"{"a":1}"#).unwrap(), vec![json!({"a":1})]);
        assert_eq!(parse(br#"[{"a":1},{"b":2}]"#).unwrap().len(), 2);
        assert_eq!(parse(b"{\"a\":1}\n\n{\"b\":2}\n").unwrap(), vec![json!({"a":1}), json!({"b":2})]);
        assert!(parse(br#"[{"a":1},2]"#).unwrap_err().contains("element 1"));
        assert!(parse(b"{\"a\":1}\nnope\n").unwrap_err().contains("line 2"));
        assert!(parse(b"  ").is_err());
        assert!(parse(b"3").is_err());
    }

    /// The answers the demo relies on: events kept only with the token, in order, and nothing
    /// kept (503) during the outage scene.
    #[tokio::test]
    async fn keeps_authorized_events_in_order_and_answers_503_while_down() {
        let rx = DemoReceiver::start("t0k").await.unwrap();
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let post = |auth: Option<&'static str>, body: &'static str| {
            let mut r = client.post(rx.url()).header("content-type", "application/json").body(body);
            if let Some(a) = auth {
                r = r.header("authorization", a);
            }
            async move { r.send().await.unwrap().status().as_u16() }
        };
        assert_eq!(post(None, r#"{"n":0}"#).await, 401);
        assert_eq!(post(Some("Bearer wrong"), r#"{"n":0}"#).await, 401);
        assert_eq!(post(Some("Bearer t0k"), r#"{"n":1}"#).await, 200);
        rx.set_down(true);
        assert_eq!(post(Some("Bearer t0k"), r#"{"n":2}"#).await, 503);
        rx.set_down(false);
        assert_eq!(post(Some("Bearer t0k"), "{\"n\":3}\n{\"n\":4}\n").await, 200);
        assert_eq!(post(Some("Bearer t0k"), "not json").await, 400);
        let other = client.get(rx.url()).header("authorization", "Bearer t0k").send().await.unwrap();
        assert_eq!(other.status().as_u16(), 405);
        assert!(rx.wait_for_events(3, Duration::from_secs(5)).await);
        assert_eq!(rx.events(), vec![json!({"n":1}), json!({"n":3}), json!({"n":4})]);
        rx.stop().await;
    }
}
