//! Sumo Logic HTTP Logs Source (docs/PROTOCOLS.md §3).
//!
//! Reproduced:
//! - `POST /receiver/v1/http/<token>`: the URL is the credential; a wrong token gets 401. The
//!   beta form, `POST /receiver/v1/http` with `X-Sumo-Token: <token>`, works too;
//! - the body is UTF-8 text, one message per line (`\n` or `\r\n`); every non-empty line is a
//!   message. `events()` holds each line parsed as JSON, or as a JSON string when it is not JSON;
//! - `X-Sumo-Category` / `-Name` / `-Host` / `-Fields` are kept with the request
//!   (`requests()`), as Sumo applies them to every message of that request;
//! - `Content-Encoding: gzip` and `deflate` (zlib); query parameters are ignored;
//! - success: 200 with an empty body.
//!
//! Not reproduced: `zstd` (documented by Sumo; answered 415 here, there is no zstd decoder in
//! the dependency set), GET uploads (405 here), multiline boundary inference and "one message
//! per request", ingest budgets (which drop data behind a 200), the 30 s processing timeout
//! (408; use [`super::Fault::Hang`] or `Status`), quota throttling (429; use `Status`), and the
//! exact text of Sumo's error bodies (undocumented: short plain text here). Bytes that are not
//! UTF-8 are replaced with U+FFFD, not rejected.

use hyper::Method;
use serde_json::Value;

use super::{BodyError, EmulatorConfig, Handled, Reply, Req, Route, State};

const BASE: &str = "/receiver/v1/http";

/// The collector code in the path: `Some("")` for the bare base URL (header token form).
fn path_token(path: &str) -> Option<&str> {
    let rest = path.strip_prefix(BASE)?;
    if rest.is_empty() || rest == "/" {
        return Some("");
    }
    let t = rest.strip_prefix('/')?;
    (!t.contains('/')).then_some(t)
}

pub(crate) fn route(method: &Method, path: &str) -> Route {
    if path_token(path).is_none() {
        return Route::Reject(Reply::text(404, "Not Found"));
    }
    if method == Method::POST {
        Route::Ingest
    } else {
        Route::Reject(Reply::text(405, "Method Not Allowed").header("allow", "POST"))
    }
}

pub(crate) fn too_large(len: u64, max: usize) -> Reply {
    Reply::text(413, format!("Request of {len} bytes is over the limit of {max} bytes"))
}

pub(crate) fn handle(cfg: &EmulatorConfig, st: &mut State, req: &Req) -> Handled {
    let token = match path_token(req.path) {
        Some("") => req.header("x-sumo-token").unwrap_or("").trim(),
        Some(t) => t,
        None => "",
    };
    if token.is_empty() || token != cfg.sumo_token {
        return Reply::text(401, "Unauthorized").into();
    }
    let body = match &req.body.data {
        Ok(b) => b,
        Err(BodyError::Unsupported(c)) => {
            return Reply::text(415, format!("Unsupported Content-Encoding: {c}")).into();
        }
        Err(BodyError::Corrupt(e)) => return Reply::text(400, format!("Could not decompress the body: {e}")).into(),
        Err(BodyError::TooLarge) => return Reply::text(413, "Decompressed body is over the size limit").into(),
    };
    let text = String::from_utf8_lossy(body);
    for line in text.lines() {
        if line.trim().is_empty() {
            continue;
        }
        let v = serde_json::from_str::<Value>(line).unwrap_or_else(|_| Value::String(line.to_string()));
        st.events.push(v);
    }
    Reply::empty(200).into()
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::super::{EmulatorConfig, Kind};
    use serde_json::json;

    fn cfg() -> EmulatorConfig {
        let mut c = EmulatorConfig::new(Kind::SumoLogic);
        c.sumo_token = "ZaVnC4dhaV2secret".into();
        c
    }

    #[tokio::test]
    async fn lines_become_events_and_metadata_headers_are_kept() {
        let emu = start(cfg()).await;
        assert!(emu.url().ends_with("/receiver/v1/http/ZaVnC4dhaV2secret"));
        let r = client()
            .post(emu.url())
            .header("x-sumo-category", "prod/auth")
            .header("x-sumo-name", "sendauth")
            .header("x-sumo-host", "idp-1")
            .header("x-sumo-fields", "env=prod,team=iam")
            .body("{\"n\":1}\r\n\n{\"n\":2}\nplain text line\n")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), "");
        assert_eq!(emu.events(), vec![json!({"n":1}), json!({"n":2}), json!("plain text line")]);
        let rec = &emu.requests()[0];
        assert_eq!(rec.header("x-sumo-category"), Some("prod/auth"));
        assert_eq!(rec.header("x-sumo-name"), Some("sendauth"));
        assert_eq!(rec.header("x-sumo-host"), Some("idp-1"));
        assert_eq!(rec.header("x-sumo-fields"), Some("env=prod,team=iam"));
    }

    #[tokio::test]
    async fn wrong_or_missing_token_is_401() {
        let emu = start(cfg()).await;
        let base = format!("http://{}/receiver/v1/http", emu.addr());
        for url in [format!("{base}/wrong"), base.clone()] {
            let r = client().post(url).body("{\"n\":1}\n").send().await.unwrap();
            assert_eq!(r.status(), 401);
        }
        let r = client()
            .post(&base)
            .header("x-sumo-token", "ZaVnC4dhaV2secret")
            .body("{\"n\":1}\n")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(emu.event_count(), 1);
    }

    #[tokio::test]
    async fn gzip_and_deflate_bodies_are_decoded() {
        let emu = start(cfg()).await;
        let r = client()
            .post(emu.url())
            .header("content-encoding", "gzip")
            .body(gzip(b"{\"n\":1}\n"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let r = client()
            .post(emu.url())
            .header("content-encoding", "deflate")
            .body(deflate(b"{\"n\":2}\n"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let r = client()
            .post(emu.url())
            .header("content-encoding", "zstd")
            .body("whatever")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 415);
        assert_eq!(emu.events(), vec![json!({"n":1}), json!({"n":2})]);
        assert_eq!(emu.requests()[1].body, b"{\"n\":2}\n");
    }

    #[tokio::test]
    async fn get_is_405_and_other_paths_404() {
        let emu = start(cfg()).await;
        assert_eq!(client().get(emu.url()).send().await.unwrap().status(), 405);
        let r = client().post(format!("{}/extra", emu.url())).body("x").send().await.unwrap();
        assert_eq!(r.status(), 404);
        assert_eq!(emu.event_count(), 0);
    }
}
