//! Microsoft Sentinel / Azure Monitor Logs Ingestion API, with its Microsoft identity platform
//! token endpoint on the same server (docs/PROTOCOLS.md §4; learn.microsoft.com: "Logs Ingestion
//! API in Azure Monitor", "Microsoft identity platform and the OAuth 2.0 client credentials
//! flow").
//!
//! Reproduced:
//! - `POST /<tenant>/oauth2/v2.0/token`, form-encoded `grant_type=client_credentials`,
//!   `client_id`, `client_secret`, `scope` (`https://monitor.azure.com//.default` or
//!   `https://monitor.azure.com/.default`): 200 `{"token_type":"Bearer","expires_in":N,
//!   "ext_expires_in":N,"access_token":"…"}` with N = `azure_token_lifetime`. Errors have the
//!   documented shape `{"error","error_description":"AADSTSnnn: …","error_codes":[nnn],
//!   "timestamp","trace_id","correlation_id"}`: unknown tenant 400 `invalid_request` AADSTS90002;
//!   unknown client 400 `unauthorized_client` AADSTS700016; wrong secret 401 `invalid_client`
//!   AADSTS7000215; other grant 400 `unsupported_grant_type` AADSTS70003; other scope 400
//!   `invalid_scope` AADSTS70011. Token requests are control requests: they never take faults;
//! - `POST /dataCollectionRules/<dcr>/streams/<stream>?api-version=2023-01-01` with
//!   `Authorization: Bearer <token>`: 204 on success, each element of the JSON array recorded in
//!   `events()`. A missing, unknown, revoked ([`super::Emulator::azure_revoke_tokens`]) or expired
//!   token: 401 ([`super::Emulator::azure_rotate_secret`] makes the old secret fail from then on); the app without the Monitoring Metrics Publisher role
//!   (`azure_role_assigned: false`): 403; another DCR id: 404; another stream: 400
//!   `InvalidStream`; a missing or other api-version: 400; a body that is not a JSON array of
//!   objects: 400 `InvalidContent`; over `max_content_length` (1 MB by default, the API's
//!   per-call limit): 413. Error bodies are `{"error":{"code","message"}}`.
//! - `Content-Encoding: gzip`.
//!
//! Not reproduced: the exact wording of the ingestion error messages (Microsoft documents the
//! status codes, not the texts: the codes and messages here are illustrative), DCR
//! transformations and column checks, the 64 KB field limit, request-rate limits (429: use
//! `Fault::Status` with `Retry-After`), managed identities, certificates.

use std::collections::HashMap;
use std::time::Instant;

use hyper::Method;
use serde_json::{json, Value};

use super::{BodyError, EmulatorConfig, Handled, Reply, Req, Route, State};

#[derive(Default)]
pub(crate) struct AzureState {
    /// Valid tokens and when each expires.
    tokens: HashMap<String, Instant>,
    pub issued: usize,
    /// The client secret now in force, when it was rotated after start.
    pub rotated_secret: Option<String>,
}

impl AzureState {
    pub fn revoke_all(&mut self) {
        self.tokens.clear();
    }
}

enum Op<'a> {
    Token(&'a str),
    Ingest(&'a str, &'a str),
}

fn op(path: &str) -> Option<Op<'_>> {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segs.as_slice() {
        [tenant, "oauth2", "v2.0", "token"] if !tenant.is_empty() => Some(Op::Token(tenant)),
        ["dataCollectionRules", dcr, "streams", stream] if !dcr.is_empty() && !stream.is_empty() => Some(Op::Ingest(dcr, stream)),
        _ => None,
    }
}

fn ingest_error(status: u16, code: &str, message: impl Into<String>) -> Reply {
    Reply::json(status, &json!({"error": {"code": code, "message": message.into()}}))
}

pub(crate) fn route(method: &Method, path: &str) -> Route {
    let Some(o) = op(path) else {
        return Route::Reject(ingest_error(404, "NotFound", "The requested resource was not found."));
    };
    if method != Method::POST {
        return Route::Reject(ingest_error(405, "MethodNotAllowed", "Only POST is supported.").header("allow", "POST"));
    }
    match o {
        Op::Token(_) => Route::Control,
        Op::Ingest(..) => Route::Ingest,
    }
}

pub(crate) fn too_large(len: u64, max: usize) -> Reply {
    ingest_error(
        413,
        "ContentLengthLimitExceeded",
        format!("Maximum allowed content length: {max} bytes. Provided content length: {len} bytes."),
    )
}

fn aad_error(status: u16, error: &str, code: u64, text: &str) -> Reply {
    let trace = uuid::Uuid::new_v4();
    Reply::json(
        status,
        &json!({
            "error": error,
            "error_description": format!("AADSTS{code}: {text} Trace ID: {trace} Correlation ID: {} Timestamp: {}", uuid::Uuid::new_v4(), chrono::Utc::now().format("%Y-%m-%d %H:%M:%SZ")),
            "error_codes": [code],
            "timestamp": chrono::Utc::now().format("%Y-%m-%d %H:%M:%SZ").to_string(),
            "trace_id": trace.to_string(),
            "correlation_id": uuid::Uuid::new_v4().to_string(),
        }),
    )
}

pub(crate) fn handle(cfg: &EmulatorConfig, st: &mut State, req: &Req) -> Handled {
    let body = match &req.body.data {
        Ok(b) => b.clone(),
        Err(BodyError::TooLarge) => return too_large(0, cfg.max_content_length).into(),
        Err(e) => return ingest_error(400, "InvalidContent", format!("The request body could not be decoded: {e:?}")).into(),
    };
    match op(req.path) {
        Some(Op::Token(tenant)) => token(cfg, st, tenant, &body),
        Some(Op::Ingest(dcr, stream)) => ingest(cfg, st, req, dcr, stream, &body),
        None => ingest_error(404, "NotFound", "The requested resource was not found.").into(),
    }
}

fn token(cfg: &EmulatorConfig, st: &mut State, tenant: &str, body: &[u8]) -> Handled {
    let form: HashMap<String, String> = url::form_urlencoded::parse(body).into_owned().collect();
    let get = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    if tenant != cfg.azure_tenant_id {
        return aad_error(
            400,
            "invalid_request",
            90002,
            &format!(
                "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."
            ),
        )
        .into();
    }
    if get("grant_type") != "client_credentials" {
        return aad_error(400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type.").into();
    }
    if get("client_id") != cfg.azure_client_id {
        return aad_error(
            400,
            "unauthorized_client",
            700016,
            &format!("Application with identifier '{}' was not found in the directory '{tenant}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.", get("client_id")),
        )
        .into();
    }
    let secret = st.azure.rotated_secret.clone().unwrap_or_else(|| cfg.azure_client_secret.clone());
    if get("client_secret") != secret {
        return aad_error(
            401,
            "invalid_client",
            7000215,
            &format!("Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{}'.", cfg.azure_client_id),
        )
        .into();
    }
    let scope = get("scope");
    if scope != "https://monitor.azure.com//.default" && scope != "https://monitor.azure.com/.default" {
        return aad_error(400, "invalid_scope", 70011, &format!("The provided request must include a 'scope' input parameter. The provided value for the input parameter 'scope' is not valid. The scope {scope} is not valid.")).into();
    }
    let access = format!("eyJ0eXAiOiJKV1Qi.{}.emulator", uuid::Uuid::new_v4().simple());
    let lifetime = cfg.azure_token_lifetime;
    st.azure.tokens.insert(access.clone(), Instant::now() + lifetime);
    st.azure.issued += 1;
    Reply::json(
        200,
        &json!({"token_type": "Bearer", "expires_in": lifetime.as_secs(), "ext_expires_in": lifetime.as_secs(), "access_token": access}),
    )
    .into()
}

fn ingest(cfg: &EmulatorConfig, st: &mut State, req: &Req, dcr: &str, stream: &str, body: &[u8]) -> Handled {
    let bearer = req
        .header("authorization")
        .and_then(|v| super::strip_prefix_ci(v, "Bearer "))
        .map(str::trim);
    let valid = bearer.and_then(|t| st.azure.tokens.get(t)).is_some_and(|exp| *exp > Instant::now());
    if !valid {
        return ingest_error(401, "InvalidToken", "The access token is missing, invalid or expired.").into();
    }
    if !cfg.azure_role_assigned {
        return ingest_error(
            403,
            "OperationFailed",
            format!("The authentication token provided does not have access to ingest data for the data collection rule with immutable Id '{dcr}'."),
        )
        .into();
    }
    if req.query_param("api-version").as_deref() != Some("2023-01-01") {
        return ingest_error(
            400,
            "InvalidApiVersion",
            "The api-version query parameter is missing or not supported; use 2023-01-01.",
        )
        .into();
    }
    if dcr != cfg.azure_dcr_id {
        return ingest_error(
            404,
            "NotFound",
            format!("Data collection rule with immutable Id '{dcr}' not found."),
        )
        .into();
    }
    if stream != cfg.azure_stream {
        return ingest_error(
            400,
            "InvalidStream",
            format!("Stream '{stream}' is not declared in the data collection rule '{dcr}'."),
        )
        .into();
    }
    let records = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Array(items)) if items.iter().all(Value::is_object) => items,
        _ => return ingest_error(400, "InvalidContent", "The request body must be a JSON array of objects.").into(),
    };
    st.events.extend(records);
    Reply::empty(204).into()
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::super::{EmulatorConfig, Kind};
    use serde_json::Value;

    async fn token(emu: &super::super::Emulator, tenant: &str, secret: &str) -> (u16, Value) {
        let c = EmulatorConfig::new(Kind::AzureMonitor);
        let r = client()
            .post(format!("http://{}/{tenant}/oauth2/v2.0/token", emu.addr()))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", c.azure_client_id.as_str()),
                ("client_secret", secret),
                ("scope", "https://monitor.azure.com//.default"),
            ])
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, serde_json::from_slice(&r.bytes().await.unwrap()).unwrap())
    }

    #[tokio::test]
    async fn tokens_then_ingestion_with_the_documented_answers() {
        let c = EmulatorConfig::new(Kind::AzureMonitor);
        let emu = start(c.clone()).await;
        let (s, v) = token(&emu, &c.azure_tenant_id, "wrong").await;
        assert_eq!(s, 401);
        assert!(v["error_description"].as_str().unwrap().starts_with("AADSTS7000215:"), "{v}");
        let (s, v) = token(&emu, "00000000-0000-0000-0000-00000000dead", &c.azure_client_secret).await;
        assert_eq!((s, v["error_codes"][0].as_u64()), (400, Some(90002)));
        let (s, v) = token(&emu, &c.azure_tenant_id, &c.azure_client_secret).await;
        assert_eq!(s, 200);
        let t = v["access_token"].as_str().unwrap().to_string();
        let url = format!(
            "{}/dataCollectionRules/{}/streams/{}?api-version=2023-01-01",
            emu.url(),
            c.azure_dcr_id,
            c.azure_stream
        );
        let post = |tok: String, body: &'static str| client().post(&url).bearer_auth(tok).body(body).send();
        assert_eq!(post("nope".into(), "[{}]").await.unwrap().status(), 401);
        assert_eq!(post(t.clone(), "{\"a\":1}").await.unwrap().status(), 400, "an array is required");
        assert_eq!(post(t.clone(), "[{\"a\":1},{\"a\":2}]").await.unwrap().status(), 204);
        assert_eq!(emu.event_count(), 2);
        emu.azure_revoke_tokens();
        assert_eq!(post(t, "[{\"a\":3}]").await.unwrap().status(), 401);
        assert_eq!(emu.azure_tokens_issued(), 1);
    }
}
