//! Generic JSON-over-HTTP collector: `POST /collector`.
//!
//! There is no vendor behind "generic", so this reproduces the contract the forwarder's generic
//! sink is written against (`siem.generic.batch` in README.md, "Config at a glance") and the common shape of JSON
//! webhooks (docs/PROTOCOLS.md §4 receivers such as Datadog accept a JSON object or an array):
//! - body: one JSON object (`application/json`), a JSON array of objects (`application/json`),
//!   or NDJSON (`application/x-ndjson`, one object per line, blank lines ignored);
//! - a batch is all-or-nothing: any bad element gives 400 `{"error":"..."}` and nothing is
//!   recorded (a generic receiver says nothing per event);
//! - auth per [`ExpectedAuth`]: 401 `{"error":"unauthorized"}` when missing or wrong (with
//!   `WWW-Authenticate: Basic` when Basic is expected);
//! - `Content-Encoding: gzip`; any other encoding gives 415;
//! - success: 200 `{"status":"ok"}`; 404 / 405 / 413 as JSON errors.
//!
//! Deliberately not reproduced: any vendor's quirks (Datadog's 202, Loki's 204, ...), and
//! content sniffing: a Content-Type other than JSON or NDJSON is a 415, so a client that forgets
//! the header is caught here rather than by a customer's receiver.

use hyper::Method;
use serde_json::{json, Value};

use super::{check_auth, AuthCheck, BodyError, Encoding, ExpectedAuth, Handled, Reply, Req, Route, State};

pub(crate) fn route(method: &Method, path: &str) -> Route {
    if path != "/collector" {
        return Route::Reject(error(404, format!("no collector at {path}; POST to /collector")));
    }
    if method == Method::POST {
        Route::Ingest
    } else {
        Route::Reject(error(405, format!("method {method} not allowed on /collector; use POST")).header("allow", "POST"))
    }
}

pub(crate) fn too_large(len: u64, max: usize) -> Reply {
    error(413, format!("body of {len} bytes is over the limit of {max} bytes"))
}

pub(crate) fn handle(st: &mut State, req: &Req) -> Handled {
    match check_auth(&st.auth, req.headers) {
        AuthCheck::Ok => {}
        AuthCheck::Missing | AuthCheck::Wrong => {
            let mut r = Reply::json(401, &json!({"error": "unauthorized"}));
            if matches!(st.auth, ExpectedAuth::Basic { .. }) {
                r = r.header("www-authenticate", "Basic realm=\"collector\"");
            }
            return r.into();
        }
    }
    let body = match (&req.body.encoding, &req.body.data) {
        (Encoding::Deflate, _) => return unsupported_encoding("deflate").into(),
        (_, Err(BodyError::Unsupported(c))) => return unsupported_encoding(c).into(),
        (_, Err(BodyError::Corrupt(e))) => return error(400, format!("body is not valid gzip: {e}")).into(),
        (_, Err(BodyError::TooLarge)) => return error(413, "decompressed body is over the size limit").into(),
        (_, Ok(b)) => b,
    };
    let parsed = match req.content_type().as_deref() {
        Some("application/json") => parse_json(body),
        Some("application/x-ndjson") | Some("application/ndjson") => parse_ndjson(body),
        other => {
            return error(
                415,
                format!(
                    "unsupported Content-Type {}; use application/json or application/x-ndjson",
                    other.unwrap_or("(none)")
                ),
            )
            .into()
        }
    };
    match parsed {
        Ok(events) => {
            st.events.extend(events);
            Reply::json(200, &json!({"status": "ok"})).into()
        }
        Err(msg) => error(400, msg).into(),
    }
}

fn parse_json(body: &[u8]) -> Result<Vec<Value>, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err("empty body; send a JSON object".into());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(o)) => Ok(vec![Value::Object(o)]),
        Ok(Value::Array(items)) => {
            if let Some(i) = items.iter().position(|v| !v.is_object()) {
                return Err(format!("array element {i} is not a JSON object"));
            }
            Ok(items)
        }
        Ok(_) => Err("expected a JSON object or an array of objects".into()),
        Err(e) => Err(format!("invalid JSON: {e}")),
    }
}

fn parse_ndjson(body: &[u8]) -> Result<Vec<Value>, String> {
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
        return Err("empty body; send one JSON object per line".into());
    }
    Ok(out)
}

fn unsupported_encoding(c: &str) -> Reply {
    error(415, format!("unsupported Content-Encoding {c}; use gzip or none"))
}

fn error(status: u16, msg: impl Into<String>) -> Reply {
    Reply::json(status, &json!({"error": msg.into()}))
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::super::{EmulatorConfig, ExpectedAuth, Kind};
    use serde_json::json;

    #[tokio::test]
    async fn object_ndjson_and_array_bodies_are_recorded_in_order() {
        let emu = start(EmulatorConfig::new(Kind::Generic)).await;
        let c = client();
        let r = c
            .post(emu.url())
            .header("content-type", "application/json")
            .body(r#"{"n":1}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), r#"{"status":"ok"}"#);
        let r = c
            .post(emu.url())
            .header("content-type", "application/x-ndjson")
            .body("{\"n\":2}\n\n{\"n\":3}\n")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let r = c
            .post(emu.url())
            .header("content-type", "application/json; charset=utf-8")
            .body(r#"[{"n":4},{"n":5}]"#)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(emu.events(), (1..=5).map(|n| json!({ "n": n })).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn bad_json_gets_400_with_json_error_and_nothing_is_recorded() {
        let emu = start(EmulatorConfig::new(Kind::Generic)).await;
        let c = client();
        for (ct, body) in [
            ("application/json", "{\"n\":1"),
            ("application/json", "[{\"n\":1}, 7]"),
            ("application/json", "\"just a string\""),
            ("application/x-ndjson", "{\"n\":1}\nnot json\n"),
            ("application/json", ""),
        ] {
            let r = c.post(emu.url()).header("content-type", ct).body(body).send().await.unwrap();
            assert_eq!(r.status(), 400, "{body:?}");
            let v: serde_json::Value = json_body(r).await;
            assert!(v["error"].is_string(), "{v}");
        }
        assert_eq!(emu.event_count(), 0);
        assert_eq!(emu.requests().len(), 5);
        assert!(emu.requests().iter().all(|r| r.status == 400));
    }

    #[tokio::test]
    async fn basic_auth_missing_or_wrong_gets_401() {
        let mut cfg = EmulatorConfig::new(Kind::Generic);
        cfg.auth = ExpectedAuth::Basic {
            username: "siem".into(),
            password: "s3cret".into(),
        };
        let emu = start(cfg).await;
        let c = client();
        let send = |rb: reqwest::RequestBuilder| async move {
            let r = rb.header("content-type", "application/json").body("{}").send().await.unwrap();
            let status = r.status().as_u16();
            let www = r.headers().get("www-authenticate").is_some();
            (status, www, r.text().await.unwrap())
        };
        let (s, www, body) = send(c.post(emu.url())).await;
        assert_eq!((s, www, body.as_str()), (401, true, r#"{"error":"unauthorized"}"#));
        let (s, _, _) = send(c.post(emu.url()).basic_auth("siem", Some("wrong"))).await;
        assert_eq!(s, 401);
        let (s, _, _) = send(c.post(emu.url()).basic_auth("siem", Some("s3cret"))).await;
        assert_eq!(s, 200);
        assert_eq!(emu.event_count(), 1);
    }

    #[tokio::test]
    async fn header_auth_and_set_auth_at_run_time() {
        let mut cfg = EmulatorConfig::new(Kind::Generic);
        cfg.auth = ExpectedAuth::Header {
            name: "X-API-Key".into(),
            value: "k1".into(),
        };
        let emu = start(cfg).await;
        let c = client();
        let post = |key: &'static str| {
            c.post(emu.url())
                .header("content-type", "application/json")
                .header("x-api-key", key)
                .body("{}")
                .send()
        };
        assert_eq!(post("k1").await.unwrap().status(), 200);
        assert_eq!(post("k2").await.unwrap().status(), 401);
        emu.set_auth(ExpectedAuth::Header {
            name: "X-API-Key".into(),
            value: "k2".into(),
        });
        assert_eq!(post("k1").await.unwrap().status(), 401);
        assert_eq!(post("k2").await.unwrap().status(), 200);
        assert_eq!(emu.event_count(), 2);
    }

    #[tokio::test]
    async fn gzip_body_is_accepted_and_recorded_decompressed() {
        let emu = start(EmulatorConfig::new(Kind::Generic)).await;
        let raw = b"{\"n\":1}\n{\"n\":2}\n";
        let wire = gzip(raw);
        let r = client()
            .post(emu.url())
            .header("content-type", "application/x-ndjson")
            .header("content-encoding", "gzip")
            .body(wire.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(emu.events(), vec![json!({"n":1}), json!({"n":2})]);
        let rec = &emu.requests()[0];
        assert_eq!(rec.body, raw);
        assert_eq!(rec.wire_bytes, wire.len());
        assert_eq!(rec.header("content-encoding"), Some("gzip"));
    }

    #[tokio::test]
    async fn other_encodings_and_content_types_get_415() {
        let emu = start(EmulatorConfig::new(Kind::Generic)).await;
        let c = client();
        let r = c
            .post(emu.url())
            .header("content-type", "application/json")
            .header("content-encoding", "br")
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 415);
        let r = c
            .post(emu.url())
            .header("content-type", "text/plain")
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 415);
        assert_eq!(emu.event_count(), 0);
    }

    #[tokio::test]
    async fn wrong_method_gets_405_and_unknown_path_404() {
        let emu = start(EmulatorConfig::new(Kind::Generic)).await;
        let c = client();
        let r = c.get(emu.url()).send().await.unwrap();
        assert_eq!(r.status(), 405);
        assert_eq!(r.headers()["allow"], "POST");
        let r = c.post(format!("http://{}/nope", emu.addr())).body("{}").send().await.unwrap();
        assert_eq!(r.status(), 404);
        assert!(json_body(r).await["error"].is_string());
    }
}
