//! Datadog Logs intake (docs/PROTOCOLS.md §4; docs.datadoghq.com/api/latest/logs/send-logs).
//!
//! Reproduced:
//! - `POST /api/v2/logs` with `DD-API-KEY`: missing gets 401, a key other than
//!   [`super::EmulatorConfig::datadog_api_key`] gets 403 `{"errors":["Forbidden"]}`;
//! - the body is one JSON object or an array of objects (each one a log entry, recorded in
//!   `events()` as received); anything else gets 400; an array over 1000 entries gets 400;
//! - `Content-Encoding: gzip` and `deflate`; a body over the size limit (5 MB by default, like
//!   Datadog's uncompressed payload limit) gets 413;
//! - success: 202 `{}`.
//!
//! Not reproduced: truncation of entries over 1 MB (stored whole here), the 18 h timestamp
//! window, `ddtags` as a query parameter, rate limiting (429: use `Fault::Status`), the v1
//! intake.

use hyper::Method;
use serde_json::{json, Value};

use super::{BodyError, EmulatorConfig, Handled, Reply, Req, Route, State};

pub(crate) const PATH: &str = "/api/v2/logs";

pub(crate) fn route(method: &Method, path: &str) -> Route {
    if path != PATH {
        return Route::Reject(Reply::json(404, &json!({"errors": ["Not Found"]})));
    }
    if method == Method::POST {
        Route::Ingest
    } else {
        Route::Reject(Reply::json(405, &json!({"errors": ["Method Not Allowed"]})).header("allow", "POST"))
    }
}

pub(crate) fn too_large() -> Reply {
    Reply::json(413, &json!({"errors": ["Payload too large"]}))
}

pub(crate) fn handle(cfg: &EmulatorConfig, st: &mut State, req: &Req) -> Handled {
    match req.header("dd-api-key").map(str::trim) {
        None | Some("") => return Reply::json(401, &json!({"errors": ["Unauthorized"]})).into(),
        Some(k) if k != cfg.datadog_api_key => return Reply::json(403, &json!({"errors": ["Forbidden"]})).into(),
        Some(_) => {}
    }
    let body = match &req.body.data {
        Ok(b) => b,
        Err(BodyError::Unsupported(c)) => {
            return Reply::json(415, &json!({"errors": [format!("Unsupported Content-Encoding: {c}")]})).into();
        }
        Err(BodyError::Corrupt(_)) => return Reply::json(400, &json!({"errors": ["Bad Request"]})).into(),
        Err(BodyError::TooLarge) => return too_large().into(),
    };
    let entries = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Array(items)) if items.iter().all(Value::is_object) => items,
        Ok(v @ Value::Object(_)) => vec![v],
        _ => return Reply::json(400, &json!({"errors": ["Bad Request"]})).into(),
    };
    if entries.len() > 1000 {
        return Reply::json(400, &json!({"errors": ["Too many log entries in the array (max 1000)"]})).into();
    }
    st.events.extend(entries);
    Reply::json(202, &json!({})).into()
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::super::{EmulatorConfig, Kind};
    use serde_json::json;

    #[tokio::test]
    async fn arrays_are_accepted_with_the_right_key_only() {
        let emu = start(EmulatorConfig::new(Kind::Datadog)).await;
        let key = EmulatorConfig::new(Kind::Datadog).datadog_api_key;
        assert!(emu.url().ends_with("/api/v2/logs"));
        let send = |k: Option<&str>, body: &'static str| {
            let mut r = client().post(emu.url()).header("content-type", "application/json");
            if let Some(k) = k {
                r = r.header("dd-api-key", k);
            }
            r.body(body).send()
        };
        assert_eq!(send(None, "[{}]").await.unwrap().status(), 401);
        assert_eq!(send(Some("wrong"), "[{}]").await.unwrap().status(), 403);
        assert_eq!(send(Some(&key), "[1,2]").await.unwrap().status(), 400);
        let r = send(Some(&key), "[{\"a\":1},{\"a\":2}]").await.unwrap();
        assert_eq!(r.status(), 202);
        assert_eq!(send(Some(&key), "{\"a\":3}").await.unwrap().status(), 202);
        let r = client()
            .post(emu.url())
            .header("dd-api-key", &key)
            .header("content-encoding", "gzip")
            .body(gzip(b"[{\"a\":4}]"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        assert_eq!(emu.events(), vec![json!({"a":1}), json!({"a":2}), json!({"a":3}), json!({"a":4})]);
    }

    #[tokio::test]
    async fn over_the_payload_limit_is_413() {
        let mut c = EmulatorConfig::new(Kind::Datadog);
        c.max_content_length = 100;
        let key = c.datadog_api_key.clone();
        let emu = start(c).await;
        let body = format!("[{{\"x\":\"{}\"}}]", "a".repeat(200));
        let r = client().post(emu.url()).header("dd-api-key", key).body(body).send().await.unwrap();
        assert_eq!(r.status(), 413);
        assert_eq!(emu.event_count(), 0);
    }
}
