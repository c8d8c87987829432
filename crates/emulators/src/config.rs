//! What an emulator is told at start: which SIEM it speaks ([`Kind`]), the credentials it
//! requires ([`ExpectedAuth`]) and every per-platform knob ([`EmulatorConfig`]). Defaults follow
//! `docs/PROTOCOLS.md`: size limits from §1.5 (Splunk) and §2.4 (Elasticsearch), §3 (Sumo Logic)
//! and §4 (Datadog, Azure Monitor); auth from §1.2 and §2.5.
//!
//! Plain data: nothing here runs; the server reads it (`server.rs`) and each platform file
//! reads its own fields.

use std::time::Duration;

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
