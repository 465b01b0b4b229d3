//! A small client of DittoFS's REST API (`/api/v1`, JSON, Bearer tokens, RFC 7807 errors).
//! Plain HTTP/1.1 over hyper: the API is inside the cluster behind `<name>-api`. Request and
//! response bodies can hold passwords and keys, so they are never logged; errors carry only
//! the status and the server's `detail`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// A connection that cannot be made in this long means the server is not up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Store creation probes the backend (an S3 bucket): allow it time, but not forever. One deadline
/// covers the whole exchange, the answer's body included: a server that sends headers and then
/// nothing must not hold a reconcile worker.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Answers are small lists; anything larger is not DittoFS.
const MAX_RESPONSE: usize = 8 * 1024 * 1024;

/// What a name may not carry unencoded into one segment of a URL path: everything but RFC 3986's
/// unreserved characters.
const SEGMENT: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');
/// A share's name is a path (`/export`, maybe `/a/b`): its slashes stay, the rest is encoded.
const SHARE_PATH: &percent_encoding::AsciiSet = &SEGMENT.remove(b'/');

/// `name` as one segment of an API path (a store or a user): `?`, `#`, `/`, `%` and the rest of
/// what would change the request's meaning are percent-encoded.
pub fn segment(name: &str) -> String {
    percent_encoding::utf8_percent_encode(name, SEGMENT).to_string()
}

/// A share's name in an API path, without its leading slash (`/export` → `export`).
pub fn share_path(name: &str) -> String {
    percent_encoding::utf8_percent_encode(name.trim_start_matches('/'), SHARE_PATH).to_string()
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No answer: not listening, not resolvable, or timed out.
    #[error("{0}")]
    Unreachable(String),
    /// An HTTP answer other than 2xx, with the server's own words (never a request body).
    #[error("HTTP {status}: {detail}")]
    Status { status: u16, detail: String },
    #[error("unexpected answer: {0}")]
    Decode(String),
}

impl ApiError {
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Requests made to DittoFS servers, by kind: a quiet pass makes reads only.
#[derive(Debug, Default)]
pub struct RequestCounts {
    pub reads: AtomicU64,
    pub writes: AtomicU64,
}

impl RequestCounts {
    pub fn snapshot(&self) -> (u64, u64) {
        (self.reads.load(Ordering::Relaxed), self.writes.load(Ordering::Relaxed))
    }
}

/// One HTTP(S) client for every server (connections are pooled per address); servers with
/// their own certificates get a client of their own ([`HttpClient::with_tls`]).
#[derive(Clone)]
pub struct HttpClient {
    inner: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    pub counts: Arc<RequestCounts>,
    /// How long one request may take, from sending it to the last byte of its answer.
    deadline: Duration,
}

/// What a server's HTTPS needs from its Secrets (PEM): the CA that signed its certificate
/// (else the system's roots), and a client certificate when it requires one.
#[derive(Clone, Default)]
pub struct TlsMaterial {
    pub ca_pem: Option<Vec<u8>>,
    pub client_cert_pem: Option<Vec<u8>>,
    pub client_key_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("ca_pem", &self.ca_pem.as_ref().map(Vec::len))
            .field("client_cert_pem", &self.client_cert_pem.as_ref().map(Vec::len))
            .field("client_key_pem", &crate::redact::hidden(&self.client_key_pem))
            .finish()
    }
}

fn build(tls: rustls::ClientConfig) -> Client<HttpsConnector<HttpConnector>, Full<Bytes>> {
    let mut http = HttpConnector::new();
    http.set_connect_timeout(Some(CONNECT_TIMEOUT));
    http.set_nodelay(true);
    http.enforce_http(false);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(60)).build(connector)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl Default for HttpClient {
    fn default() -> Self {
        let mut roots = rustls::RootCertStore::empty();
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        let tls = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Self { inner: build(tls), counts: Arc::default(), deadline: REQUEST_TIMEOUT }
    }
}

impl HttpClient {
    /// The same client with another per-request deadline (tests use a short one).
    pub fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// A client that trusts `material`'s CA (else the system's roots) and presents its client
    /// certificate; it counts into the same counters.
    pub fn with_tls(&self, material: &TlsMaterial) -> Result<Self, String> {
        let mut roots = rustls::RootCertStore::empty();
        match &material.ca_pem {
            Some(pem) => {
                for cert in CertificateDer::pem_slice_iter(pem) {
                    let cert = cert.map_err(|e| format!("ca.crt: {e}"))?;
                    roots.add(cert).map_err(|e| format!("ca.crt: {e}"))?;
                }
                if roots.is_empty() {
                    return Err("ca.crt holds no certificate".into());
                }
            }
            None => {
                roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
            }
        }
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots);
        let tls = match (&material.client_cert_pem, &material.client_key_pem) {
            (Some(cert), Some(key)) => {
                let chain = CertificateDer::pem_slice_iter(cert)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("tls.crt: {e}"))?;
                let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| format!("tls.key: {e}"))?;
                builder.with_client_auth_cert(chain, key).map_err(|e| format!("client certificate: {e}"))?
            }
            _ => builder.with_no_client_auth(),
        };
        Ok(Self { inner: build(tls), counts: self.counts.clone(), deadline: self.deadline })
    }
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient").finish_non_exhaustive()
    }
}

/// The API of one server: its base URL and, once logged in, a token.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    http: HttpClient,
    token: Option<String>,
}

#[derive(Deserialize)]
struct Problem {
    #[serde(default)]
    detail: Option<String>,
    #[serde(default)]
    title: Option<String>,
}

#[derive(Deserialize, Clone)]
pub struct Login {
    pub access_token: String,
    #[serde(default)]
    pub expires_in: Option<u64>,
    pub user: LoginUser,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api").field("base", &self.base).field("token", &crate::redact::hidden(&self.token)).finish()
    }
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("access_token", &crate::redact::Hidden)
            .field("expires_in", &self.expires_in)
            .field("user", &self.user)
            .finish()
    }
}

#[derive(Deserialize, Clone, Debug)]
pub struct LoginUser {
    #[serde(default)]
    pub role: String,
    #[serde(default)]
    pub must_change_password: bool,
}

impl Api {
    pub fn new(http: HttpClient, base: impl Into<String>) -> Self {
        Self { base: base.into().trim_end_matches('/').to_string(), http, token: None }
    }

    pub fn with_token(mut self, token: Option<String>) -> Self {
        self.token = token;
        self
    }

    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ApiError> {
        let body = self.call("GET", path, None).await?;
        serde_json::from_slice(&body).map_err(|e| ApiError::Decode(format!("GET {path}: {e}")))
    }

    pub async fn send(&self, method: &str, path: &str, body: &Value) -> Result<Bytes, ApiError> {
        self.call(method, path, Some(body)).await
    }

    /// `POST /api/v1/auth/login`; keeps the token on success.
    pub async fn login(&mut self, username: &str, password: &str) -> Result<Login, ApiError> {
        let body = serde_json::json!({"username": username, "password": password});
        let answer = self.call("POST", "/api/v1/auth/login", Some(&body)).await?;
        let login: Login = serde_json::from_slice(&answer).map_err(|e| ApiError::Decode(format!("login: {e}")))?;
        self.token = Some(login.access_token.clone());
        Ok(login)
    }

    async fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Bytes, ApiError> {
        let url = format!("{}{path}", self.base);
        let mut request = hyper::Request::builder().method(method).uri(&url).header("accept", "application/json");
        if let Some(token) = &self.token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let payload = match body {
            Some(body) => {
                request = request.header("content-type", "application/json");
                Bytes::from(serde_json::to_vec(body).map_err(|e| ApiError::Decode(e.to_string()))?)
            }
            None => Bytes::new(),
        };
        let request = request.body(Full::new(payload)).map_err(|e| ApiError::Unreachable(format!("{url}: {e}")))?;
        let counter = if method == "GET" || path.ends_with("/auth/login") {
            &self.http.counts.reads
        } else {
            &self.http.counts.writes
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let exchange = async {
            let response = self
                .http
                .inner
                .request(request)
                .await
                .map_err(|e| ApiError::Unreachable(format!("{method} {url}: {}", error_chain(&e))))?;
            let status = response.status().as_u16();
            let body = Limited::new(response.into_body(), MAX_RESPONSE)
                .collect()
                .await
                .map_err(|e| ApiError::Unreachable(format!("{method} {url}: reading the answer: {e}")))?
                .to_bytes();
            Ok::<_, ApiError>((status, body))
        };
        let deadline = self.http.deadline;
        let (status, body) = tokio::time::timeout(deadline, exchange)
            .await
            .map_err(|_| ApiError::Unreachable(format!("{method} {url}: no complete answer in {:?}", deadline)))??;
        if (200..300).contains(&status) {
            return Ok(body);
        }
        let detail = serde_json::from_slice::<Problem>(&body)
            .ok()
            .and_then(|p| p.detail.or(p.title))
            .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(300)]).trim().to_string());
        Err(ApiError::Status { status, detail })
    }
}

/// "connection refused" rather than hyper's outermost "client error (Connect)".
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut parts = vec![error.to_string()];
    let mut source = error.source();
    while let Some(e) = source {
        parts.push(e.to_string());
        source = e.source();
    }
    parts.dedup();
    parts.join(": ")
}

/// A row of `GET /api/v1/adapters`. Not `/adapters/ports`: that one says `running` even when
/// the listener failed to bind; only the health report (`status`) tells.
#[derive(Deserialize, Clone, Debug, PartialEq, Default)]
pub struct LiveAdapter {
    #[serde(rename = "type")]
    pub adapter_type: String,
    pub port: i32,
    pub enabled: bool,
    pub running: bool,
    #[serde(default)]
    pub updated_at: Option<String>,
    #[serde(default)]
    pub status: Value,
}

impl LiveAdapter {
    /// Serving connections: enabled, running and reported healthy.
    pub fn healthy(&self) -> bool {
        self.enabled && self.running && self.status.get("status").and_then(Value::as_str) == Some("healthy")
    }

    /// The health report in a few words, such as `unknown: SMB adapter has not started yet`.
    pub fn health(&self) -> String {
        let state = self.status.get("status").and_then(Value::as_str).unwrap_or("unknown");
        match self.status.get("message").and_then(Value::as_str) {
            Some(message) => format!("{state}: {message}"),
            None => state.to_string(),
        }
    }

    /// Seconds since the adapter was last changed (restarted), if DittoFS says.
    pub fn seconds_since_change(&self, now: k8s_openapi::jiff::Timestamp) -> Option<i64> {
        let at: k8s_openapi::jiff::Timestamp = self.updated_at.as_deref()?.parse().ok()?;
        Some(now.as_second() - at.as_second())
    }
}

/// A row of `GET /api/v1/store/...`; secrets in `config` come back as `********`.
#[derive(Deserialize, Clone, Debug, PartialEq)]
pub struct LiveStore {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub store_type: String,
    #[serde(default)]
    pub config: Value,
    #[serde(default)]
    pub status: Value,
}

impl LiveStore {
    /// `status.status` other than healthy, with the server's message.
    pub fn unhealthy(&self) -> Option<String> {
        let state = self.status.get("status").and_then(Value::as_str)?;
        if state == "healthy" || state.is_empty() {
            return None;
        }
        let message = ["message", "error", "detail"]
            .iter()
            .find_map(|k| self.status.get(*k).and_then(Value::as_str))
            .unwrap_or(state);
        Some(format!("{state}: {message}"))
    }
}

/// A row of `GET /api/v1/shares`.
#[derive(Deserialize, Clone, Debug, PartialEq)]
pub struct LiveShare {
    pub id: String,
    pub name: String,
    pub metadata_store_id: String,
    pub local_block_store_id: String,
    #[serde(default)]
    pub remote_block_store_id: Option<String>,
    #[serde(default)]
    pub read_only: bool,
    #[serde(default)]
    pub default_permission: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// As DittoFS prints a size (`10.00GiB`); absent or empty: no quota.
    #[serde(default)]
    pub quota_bytes: Option<String>,
    #[serde(default)]
    pub used_bytes: Option<i64>,
    #[serde(default)]
    pub access_based_enumeration: bool,
}

/// A row of `GET /api/v1/shares/{name}/quotas`.
#[derive(Deserialize, Clone, Debug, PartialEq, Default)]
pub struct LiveQuota {
    pub scope: String,
    #[serde(default)]
    pub identity_id: Option<u32>,
    /// As DittoFS prints a size; absent: no byte limit.
    #[serde(default)]
    pub limit_bytes: Option<String>,
    #[serde(default)]
    pub used_bytes: i64,
}

/// `GET /api/v1/adapters/nfs/netgroups/{name}`.
#[derive(Deserialize, Clone, Debug, PartialEq, Default)]
pub struct LiveNetgroup {
    pub name: String,
    #[serde(default)]
    pub members: Vec<LiveNetgroupMember>,
}

#[derive(Deserialize, Clone, Debug, PartialEq)]
pub struct LiveNetgroupMember {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub value: String,
}

/// A row of `GET /api/v1/users`.
#[derive(Deserialize, Clone, Debug, PartialEq, Default)]
pub struct LiveUser {
    pub username: String,
    #[serde(default)]
    pub role: String,
    #[serde(default)]
    pub uid: Option<u32>,
    #[serde(default)]
    pub gid: Option<u32>,
    #[serde(default)]
    pub groups: Option<Vec<String>>,
    #[serde(default = "yes")]
    pub enabled: bool,
}

/// A row of `GET /api/v1/groups`.
#[derive(Deserialize, Clone, Debug, PartialEq, Default)]
pub struct LiveGroup {
    pub name: String,
    #[serde(default)]
    pub gid: Option<u32>,
}

/// A row of `GET /api/v1/shares/{name}/permissions`: `type` is `user`, `group` or `sid`.
#[derive(Deserialize, Clone, Debug, PartialEq)]
pub struct LivePermission {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub level: String,
}

fn yes() -> bool {
    true
}

/// A row of `GET /api/v1/snapshot-policies`; durations as Go prints them (`1h0m0s`).
#[derive(Deserialize, Clone, Debug, PartialEq)]
pub struct LiveSnapshotPolicy {
    pub share: String,
    pub enabled: bool,
    pub interval: String,
    #[serde(default)]
    pub keep_last: i32,
    #[serde(default)]
    pub ttl: Option<String>,
    #[serde(default)]
    pub name_prefix: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn names_in_api_paths_are_percent_encoded() {
        assert_eq!(segment("s3-main_1.x~"), "s3-main_1.x~");
        assert_eq!(segment("a/b?c#d%e f"), "a%2Fb%3Fc%23d%25e%20f");
        assert_eq!(share_path("/export"), "export");
        assert_eq!(share_path("/a/b c?"), "a/b%20c%3F");
    }

    /// A server that answers with headers promising a body and then sends nothing: the request
    /// ends at its deadline with `Unreachable`, not never.
    #[tokio::test]
    async fn an_answer_that_stops_after_its_headers_ends_at_the_deadline() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 4096];
            let _ = socket.read(&mut request).await.unwrap();
            socket.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{").await.unwrap();
            // Hold the connection open without a further byte.
            tokio::time::sleep(Duration::from_secs(3600)).await;
            drop(socket);
        });
        let api = Api::new(HttpClient::default().with_deadline(Duration::from_millis(300)), base);
        let started = tokio::time::Instant::now();
        let outcome = tokio::time::timeout(Duration::from_secs(10), api.get::<Value>("/api/v1/adapters")).await;
        let error = outcome.expect("the request outlived its deadline").unwrap_err();
        assert!(matches!(error, ApiError::Unreachable(_)), "{error}");
        assert!(error.to_string().contains("no complete answer in 300ms"), "{error}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
