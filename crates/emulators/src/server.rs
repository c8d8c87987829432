//! The listener and the request pipeline (the crate doc, steps 1–6): accept connections on the
//! emulator's socket, serve HTTP/1.1 with keep-alive, and for each request route it, read and
//! decode its body (`body.rs`), take a fault if it is an ingest request (`fault.rs`), run the
//! platform's handler under the state lock, record it (`record.rs`) and wake waiters. Plain
//! HTTP only: the TLS tests put a rustls front before an emulator (`tests/common/tls.rs`).
//! Answers follow `docs/PROTOCOLS.md` (each platform file cites its section); size refusals
//! §1.5, §2.4, §3, §4.
//!
//! Invariants: every request the server read a head for is recorded, in the order answered; no
//! client input panics the server; on stop the listener and every connection are closed before
//! `serve` returns.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinSet;

use crate::body::{decode, read_body, ReadOutcome};
use crate::config::{EmulatorConfig, Kind};
use crate::fault::{fits, take_fault, transport_fault, After, Fault};
use crate::record::RecordedRequest;
use crate::reply::{Reply, RespBody};
use crate::request::{Req, Route};
use crate::state::Shared;
use crate::{azure_monitor, datadog, elasticsearch, generic, splunk_hec, sumo_logic};

/// Returned by the service to make hyper drop the connection without writing an answer.
#[derive(Debug)]
struct DropConnection;

impl fmt::Display for DropConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("connection dropped on purpose by the emulator")
    }
}

impl std::error::Error for DropConnection {}

pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>, mut stop: oneshot::Receiver<()>) {
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

/// OpenSearch never sends Elasticsearch's product header, whatever path built the answer.
fn flavour(cfg: &EmulatorConfig, mut r: Reply) -> Reply {
    if cfg.kind == Kind::Elasticsearch && cfg.es_opensearch {
        r.headers.retain(|(k, _)| !k.eq_ignore_ascii_case("x-elastic-product"));
    }
    r
}
