//! The status listener (`status.listen`): `GET /status` (JSON), `GET /health`, `GET /metrics`
//! (Prometheus text) and `GET /` (a small self-refreshing HTML status page).
//!
//! It only reads the [`StatusHub`]; nothing it serves can change what the agent does.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::shutdown::Shutdown;
use crate::status::StatusHub;

/// `status.listen` when the config does not set it.
pub const DEFAULT_STATUS_ADDR: &str = "127.0.0.1:8686";

/// The listener's settings (`status:`), built by `config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusConfig {
    pub listen: SocketAddr,
}

#[derive(Debug, thiserror::Error)]
#[error(
    "status.listen: cannot listen on {addr}: {io}; is another process (a second agent?) using that port? Choose another with status.listen"
)]
pub struct BindError {
    pub addr: SocketAddr,
    /// Not named `source`: the message quotes it already, and a chained `{:#}` would repeat it.
    pub io: std::io::Error,
}

pub async fn bind(addr: SocketAddr) -> Result<TcpListener, BindError> {
    TcpListener::bind(addr).await.map_err(|io| BindError { addr, io })
}

/// Serves until `shutdown`.
pub async fn serve(listener: TcpListener, hub: Arc<StatusHub>, mut shutdown: Shutdown) {
    loop {
        let (stream, _) = tokio::select! {
            _ = shutdown.wait() => break,
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(target: "status", "accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let hub = hub.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let hub = hub.clone();
                async move { Ok::<_, Infallible>(route(&hub, req)) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), svc);
            let _ = tokio::time::timeout(std::time::Duration::from_secs(60), conn).await;
        });
    }
}

fn reply(code: StatusCode, ctype: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    Response::builder()
        .status(code)
        .header("Content-Type", ctype)
        .header("Cache-Control", "no-store")
        .body(Full::new(body.into()))
        .expect("static response parts are valid")
}

fn route(hub: &StatusHub, req: Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return reply(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "only GET is supported\n");
    }
    match req.uri().path() {
        "/status" => {
            let mut body = serde_json::to_vec_pretty(&hub.snapshot()).unwrap_or_default();
            body.push(b'\n');
            reply(StatusCode::OK, "application/json", body)
        }
        "/history" => reply(
            StatusCode::OK,
            "application/json",
            serde_json::to_vec(&hub.history()).unwrap_or_default(),
        ),
        "/health" => reply(StatusCode::OK, "application/json", "{\"status\":\"ok\"}\n"),
        "/metrics" => reply(StatusCode::OK, "text/plain; version=0.0.4", hub.render_metrics()),
        "/" => reply(StatusCode::OK, "text/html; charset=utf-8", crate::status_page::PAGE),
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found; try /status, /history, /health or /metrics\n",
        ),
    }
}
