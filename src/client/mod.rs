//! The Dfns API client: auth token, base URL, timeouts, retries, and the user-action flow.
//!
//! ```text
//! DfnsClient::request(method, path, payload)
//!   ├─ needs a user action?  (protocol::endpoints)
//!   │    ├─ POST /auth/action/init ──► challenge
//!   │    ├─ CredentialSigner::assert ──► KeyBackend::sign   (on a blocking thread, unless
//!   │    │                                                  the key signs without blocking)
//!   │    └─ POST /auth/action ──► single-use token
//!   └─ the request + X-DFNS-USERACTION ──► Outcome::Done | Outcome::PolicyPending | Error
//! ```
//!
//! One `DfnsClient` holds one connection pool; clone it freely (clones share the pool). A
//! [`RetryPolicy`] wraps the *whole* flow, so a retried request always gets a fresh challenge and
//! a fresh user action; the default policy never retries, and no policy may repeat a side effect
//! (see [`RetryPolicy`] for the table of what is retried when).
//!
//! Proxies are never taken from the environment (`HTTP_PROXY`, `ALL_PROXY`…): a client pointed
//! at a loopback simulator over `http` would otherwise hand the bearer token and the user action
//! to whatever proxy the environment names. Give one explicitly with
//! [`DfnsClientBuilder::proxy`].

mod api;
mod http1;
mod retry;
mod transport;

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use secrecy::SecretString;
use serde::de::DeserializeOwned;
use tracing::Instrument;

pub use api::{CreateServiceAccount, CreatedServiceAccount, CredentialChallenge, ListWallets};
pub use retry::{Backoff, NoRetry, RetryPolicy};

use crate::error::{ClientError, Error};
use crate::protocol::{FirstFactor, Method, Payload, UserActionChallenge};
use crate::CredentialSigner;

/// Dfns production API.
pub const DEFAULT_BASE_URL: &str = "https://api.dfns.io";
/// Default time allowed for one HTTP exchange (the official Python, Go and Rust SDKs use 30 s).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default cap on a response body: Dfns answers are kilobytes; a larger one is a broken or
/// hostile server, and reading it would only fill memory.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;
/// Default time a key gets to sign one challenge: a stuck device (a network HSM that stopped
/// answering) fails the request instead of hanging it.
pub const DEFAULT_SIGN_TIMEOUT: Duration = Duration::from_secs(60);
/// Default time a key that waits for a person (a YubiKey's touch, a PIN prompt) gets to sign.
pub const DEFAULT_USER_SIGN_TIMEOUT: Duration = Duration::from_secs(120);

/// What a mutating call can come back with.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome<T> {
    /// The call was carried out.
    Done(T),
    /// A policy requires approval first (HTTP 202): the call is neither done nor failed.
    PolicyPending(PolicyPending),
}

impl<T> Outcome<T> {
    /// The result, or an error naming the pending approval.
    pub fn done(self) -> Result<T, PolicyPending> {
        match self {
            Outcome::Done(t) => Ok(t),
            Outcome::PolicyPending(p) => Err(p),
        }
    }

    /// Transforms the result, keeping a pending approval as it is.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Outcome<U> {
        match self {
            Outcome::Done(t) => Outcome::Done(f(t)),
            Outcome::PolicyPending(p) => Outcome::PolicyPending(p),
        }
    }
}

/// A pending policy approval (the body of a 202 answer).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct PolicyPending {
    /// The body as Dfns sent it (`id`, `status`, `activityId`, `kind`…).
    pub body: serde_json::Value,
}

impl PolicyPending {
    /// The approval id, when present.
    pub fn approval_id(&self) -> Option<&str> {
        self.body.get("id").and_then(|v| v.as_str())
    }
}

impl fmt::Display for PolicyPending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a policy requires approval before this runs")?;
        if let Some(id) = self.approval_id() {
            write!(f, " (approval {id})")?;
        }
        Ok(())
    }
}

/// A pending approval is not a failure, but a caller that needs the result may treat it as one
/// (`outcome.done()?`).
impl std::error::Error for PolicyPending {}

/// A response body and its status.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RawResponse {
    /// HTTP status (2xx).
    pub status: u16,
    /// The body bytes.
    pub body: Vec<u8>,
    /// The server's clock, from its `Date` header (whole seconds), when it sent a valid one.
    pub server_date: Option<std::time::SystemTime>,
}

impl RawResponse {
    /// Decodes a body that carries a secret (a token): the bytes are zeroized once decoded, so
    /// the only copy left is the secret type `T` holds it in.
    pub(crate) fn json_zeroizing<T: DeserializeOwned>(
        self,
        method: Method,
        path: &str,
    ) -> Result<T, Error> {
        let body = zeroize::Zeroizing::new(self.body);
        decode_json(&body, method, path)
    }

    /// Decodes the body as JSON (`null` for an empty body).
    pub fn json<T: DeserializeOwned>(&self, method: Method, path: &str) -> Result<T, Error> {
        decode_json(&self.body, method, path)
    }
}

/// Decodes an answer's JSON (`null` for an empty body); errors never quote the server's values.
pub(crate) fn decode_json<T: DeserializeOwned>(
    body: &[u8],
    method: Method,
    path: &str,
) -> Result<T, Error> {
    let body: &[u8] = if body.is_empty() { b"null" } else { body };
    serde_json::from_slice(body).map_err(|e| {
        ClientError::Decode {
            method: method.to_string(),
            path: path.to_owned(),
            reason: crate::error::json_error_summary(&e),
        }
        .into()
    })
}

/// Builds a [`DfnsClient`].
pub struct DfnsClientBuilder {
    base_url: String,
    auth_token: Option<SecretString>,
    signer: Option<CredentialSigner>,
    timeout: Duration,
    sign_timeout: Option<Duration>,
    max_response_bytes: usize,
    proxy: Option<String>,
    http: Option<reqwest::Client>,
    in_memory: Option<Arc<transport::Responder>>,
    retry: Arc<dyn RetryPolicy>,
    audit: Option<Arc<crate::audit::AuditLog>>,
}

impl Default for DfnsClientBuilder {
    fn default() -> Self {
        DfnsClientBuilder {
            base_url: DEFAULT_BASE_URL.to_owned(),
            auth_token: None,
            signer: None,
            timeout: DEFAULT_TIMEOUT,
            sign_timeout: None,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            proxy: None,
            http: None,
            in_memory: None,
            retry: Arc::new(NoRetry),
            audit: None,
        }
    }
}

impl DfnsClientBuilder {
    /// The API's base URL (default `https://api.dfns.io`). `https` is required; `http` is
    /// accepted only for loopback addresses (a local simulator). A path prefix (a proxy's
    /// `/dfns`) is kept in request URLs but not in the signed `userActionHttpPath`.
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = url.into();
        self
    }

    /// The auth token sent as `Authorization: Bearer …` (service account token, PAT, login).
    pub fn auth_token(mut self, token: SecretString) -> Self {
        self.auth_token = Some(token);
        self
    }

    /// The credential that signs user actions.
    pub fn signer(mut self, signer: CredentialSigner) -> Self {
        self.signer = Some(signer);
        self
    }

    /// Time allowed for each HTTP exchange (default 30 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Time a key gets to sign one challenge (default [`DEFAULT_SIGN_TIMEOUT`], or
    /// [`DEFAULT_USER_SIGN_TIMEOUT`] for keys that wait for a touch or a PIN prompt). Past it the
    /// request fails with [`ClientError::SignTimeout`] and is not sent.
    pub fn sign_timeout(mut self, timeout: Duration) -> Self {
        self.sign_timeout = Some(timeout);
        self
    }

    /// Largest response body read (default [`DEFAULT_MAX_RESPONSE_BYTES`], 8 MiB). A larger
    /// answer fails with [`ClientError::ResponseTooLarge`] without being read into memory.
    pub fn max_response_bytes(mut self, bytes: usize) -> Self {
        self.max_response_bytes = bytes;
        self
    }

    /// Sends every request through this proxy (`http://host:port`, `https://…`, `socks5://…`
    /// when reqwest supports it): requests then go through reqwest instead of this crate's own
    /// HTTP/1.1 client. Environment proxies (`HTTP_PROXY`, `HTTPS_PROXY`,
    /// `ALL_PROXY`) are never used. A proxy with an `http` base URL is refused: the proxy would
    /// read the bearer token and the user action in clear. With `https`, the proxy only sees
    /// the host name (a `CONNECT` tunnel).
    pub fn proxy(mut self, url: impl Into<String>) -> Self {
        self.proxy = Some(url.into());
        self
    }

    /// Sends requests through an existing `reqwest` client (and its connection pool) instead of
    /// this crate's own HTTP/1.1 client.
    /// Build it with `redirect(Policy::none())`, `no_proxy()` and a timeout: this client's own
    /// defaults (no redirects, no environment proxies, [`DfnsClientBuilder::timeout`]) apply
    /// only to the client it builds.
    pub fn http_client(mut self, http: reqwest::Client) -> Self {
        self.http = Some(http);
        self
    }

    /// Not API: for benches and tests. Sends nothing over the network: every request is handed
    /// to `respond` (method, path with its query, body bytes), which answers at once with a
    /// status and a body; the client does everything else as usual (the flow, headers, body
    /// cap, status sorting). It measures the library's own cost per call, and checks the flow,
    /// without a server. `respond` must answer `/auth/action/init` and `/auth/action` as Dfns
    /// does for a signed call to go through.
    #[doc(hidden)]
    pub fn in_memory_transport(
        mut self,
        respond: impl Fn(Method, &str, &[u8]) -> (u16, Vec<u8>) + Send + Sync + 'static,
    ) -> Self {
        self.in_memory = Some(Arc::new(respond));
        self
    }

    /// How failed requests are retried (default: never). Each retry runs the whole flow again
    /// with a fresh challenge and user action.
    pub fn retry_policy(mut self, policy: Arc<dyn RetryPolicy>) -> Self {
        self.retry = policy;
        self
    }

    /// Writes every approval to `log` before it leaves: once the challenge is signed, an
    /// `approved` line (key, credential, method, path, body hash, challenge identifier) is
    /// appended and fsynced, and only then is the signature sent to `/auth/action`; a line that
    /// cannot be written stops the call with [`ClientError::AuditRefused`] and nothing is
    /// approved. After the request, a `completed` line carries the API's status. The same log
    /// as `dfns-signer serve`'s (`dfns_signer::audit`).
    pub fn audit_log(mut self, log: Arc<crate::audit::AuditLog>) -> Self {
        self.audit = Some(log);
        self
    }

    /// Checks the configuration and builds the client.
    pub fn build(self) -> Result<DfnsClient, Error> {
        let config = |m: String| Error::from(ClientError::Config(m));
        // Errors name the URL without its userinfo: `https://user:secret@host` must not reach
        // a log through an error message.
        let shown = redact_userinfo(&self.base_url);
        let mut url = url::Url::parse(&self.base_url)
            .map_err(|e| config(format!("base URL `{shown}` is not a URL: {e}")))?;
        let plain_http = match url.scheme() {
            "https" => false,
            "http" if is_loopback(&url) => true,
            "http" => {
                return Err(config(format!(
                    "base URL `{shown}` uses http: the auth token would cross the network in clear; use https \
                     (http is accepted only for loopback addresses: 127.0.0.0/8, [::1], localhost)"
                )))
            }
            other => return Err(config(format!("base URL scheme `{other}` is not http(s)"))),
        };
        if url.query().is_some() || url.fragment().is_some() {
            return Err(config(
                "base URL must not carry a query or fragment".to_owned(),
            ));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(config(
                "base URL must not carry credentials (user:password@); use auth_token".to_owned(),
            ));
        }
        let trimmed = url.path().trim_end_matches('/').to_owned();
        url.set_path(&trimmed);
        let transport = match (self.in_memory, self.http) {
            (Some(respond), _) => transport::Transport::InMemory(respond),
            (None, Some(h)) => transport::Transport::http(h, &url),
            // This crate's HTTP/1.1 client: what every call without a proxy goes through.
            (None, None) if self.proxy.is_none() => transport::Transport::Direct(Arc::new(
                http1::Http1::new(&url, None)
                    .map_err(|e| config(format!("base URL `{shown}`: {e}")))?,
            )),
            (None, None) => {
                let builder = reqwest::Client::builder()
                    // No redirects: Dfns never sends one, and following it would replay a
                    // single-use user action (and the bearer token) to wherever it points.
                    .redirect(reqwest::redirect::Policy::none())
                    // Never a proxy from the environment (see the module docs).
                    .no_proxy()
                    // rustls whatever other crates in the build turn on in reqwest (the official
                    // dfns-sdk-rust brings native-tls): one TLS stack, audited, no OpenSSL.
                    .use_rustls_tls()
                    .timeout(self.timeout)
                    .user_agent(concat!("dfns-signer/", env!("CARGO_PKG_VERSION")));
                let builder = match &self.proxy {
                    None => builder,
                    Some(_) if plain_http => {
                        return Err(config(
                            "a proxy with an http base URL would read the auth token and user actions in \
                             clear; use https, or no proxy for a loopback simulator"
                                .to_owned(),
                        ))
                    }
                    Some(proxy) => builder.proxy(reqwest::Proxy::all(proxy).map_err(|_| {
                        config(format!(
                            "proxy `{}` is not a proxy URL (expected http://host:port)",
                            redact_userinfo(proxy)
                        ))
                    })?),
                };
                transport::Transport::http(
                    builder
                        .build()
                        .map_err(|e| config(format!("cannot build the HTTP client: {e}")))?,
                    &url,
                )
            }
        };
        Ok(DfnsClient {
            inner: Arc::new(Inner {
                transport,
                base: url.as_str().trim_end_matches('/').to_owned(),
                authorization: self.auth_token.as_ref().map(bearer),
                signer: self.signer,
                timeout: self.timeout,
                sign_timeout: self.sign_timeout,
                max_response_bytes: self.max_response_bytes,
                retry: self.retry,
                audit: self.audit,
            }),
        })
    }
}

/// `Bearer <token>`, the `Authorization` value for `token`.
fn bearer(token: &SecretString) -> SecretString {
    use secrecy::ExposeSecret;
    let token = token.expose_secret();
    // Exactly the capacity it fills: the move into a `Box<str>` then keeps this allocation
    // rather than copying the token into a smaller one and freeing this one unzeroized.
    let mut value = String::with_capacity(7 + token.len());
    value.push_str("Bearer ");
    value.push_str(token);
    SecretString::from(value)
}

/// `scheme://user:pass@host/…` without `user:pass@`, for error messages.
fn redact_userinfo(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            match rest[..authority_end].rfind('@') {
                Some(at) => format!("{scheme}://[REDACTED]@{}", &rest[at + 1..]),
                None => url.to_owned(),
            }
        }
        None => url.to_owned(),
    }
}

fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

#[derive(Clone)]
struct Inner {
    transport: transport::Transport,
    base: String,
    /// `Bearer <auth token>`: the `Authorization` header's value, made once.
    authorization: Option<SecretString>,
    signer: Option<CredentialSigner>,
    timeout: Duration,
    sign_timeout: Option<Duration>,
    max_response_bytes: usize,
    retry: Arc<dyn RetryPolicy>,
    audit: Option<Arc<crate::audit::AuditLog>>,
}

/// A Dfns API client. Cheap to clone; clones share the connection pool and configuration.
#[derive(Clone)]
pub struct DfnsClient {
    inner: Arc<Inner>,
}

impl fmt::Debug for DfnsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DfnsClient")
            .field("base_url", &self.inner.base)
            .field(
                "auth_token",
                &self.inner.authorization.as_ref().map(|_| "[REDACTED]"),
            )
            .field("signer", &self.inner.signer)
            .field("timeout", &self.inner.timeout)
            .finish()
    }
}

impl DfnsClient {
    /// Starts a builder.
    pub fn builder() -> DfnsClientBuilder {
        DfnsClientBuilder::default()
    }

    /// The base URL in use (no trailing slash).
    pub fn base_url(&self) -> &str {
        &self.inner.base
    }

    /// The credential signer, if any.
    pub fn signer(&self) -> Option<&CredentialSigner> {
        self.inner.signer.as_ref()
    }

    /// A client identical to this one (same pool) but with another auth token.
    pub fn with_auth_token(&self, token: SecretString) -> DfnsClient {
        self.with(|i| i.authorization = Some(bearer(&token)))
    }

    /// A client identical to this one (same pool) but with another signer.
    pub fn with_signer(&self, signer: CredentialSigner) -> DfnsClient {
        self.with(|i| i.signer = Some(signer))
    }

    fn with(&self, change: impl FnOnce(&mut Inner)) -> DfnsClient {
        let mut inner = (*self.inner).clone();
        change(&mut inner);
        DfnsClient {
            inner: Arc::new(inner),
        }
    }

    /// Sends any request, with a user action when the endpoint needs one.
    ///
    /// `path` is the API path (ids percent-encoded with [`crate::protocol::encode_segment`]),
    /// optionally with a query string. The payload is signed and sent byte for byte.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        payload: Payload,
    ) -> Result<Outcome<RawResponse>, Error> {
        self.request_with_options(method, path, payload, CallOptions::default())
            .await
    }

    /// Like [`DfnsClient::request`], decoding a JSON answer.
    pub async fn request_json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        payload: Payload,
    ) -> Result<Outcome<T>, Error> {
        let outcome = self.request(method, path, payload).await?;
        Ok(match outcome {
            Outcome::Done(raw) => Outcome::Done(raw.json(method, path)?),
            Outcome::PolicyPending(p) => Outcome::PolicyPending(p),
        })
    }

    /// Sends a request, forcing the user-action decision (for endpoints the table gets wrong).
    pub async fn request_with(
        &self,
        method: Method,
        path: &str,
        payload: Payload,
        needs_user_action: bool,
    ) -> Result<Outcome<RawResponse>, Error> {
        let options = CallOptions {
            needs_user_action: Some(needs_user_action),
            ..CallOptions::default()
        };
        self.request_with_options(method, path, payload, options)
            .await
    }

    /// Sends a request with per-call options: the user-action decision, and whether the retry
    /// policy may send this request again after it may have run (see [`CallOptions`]).
    pub async fn request_with_options(
        &self,
        method: Method,
        path: &str,
        payload: Payload,
        options: CallOptions,
    ) -> Result<Outcome<RawResponse>, Error> {
        crate::protocol::validate_path(path)?;
        let needs_user_action = options
            .needs_user_action
            .unwrap_or_else(|| crate::protocol::needs_user_action(method, path));
        let span = tracing::info_span!(
            "dfns.request",
            method = %method,
            path = %crate::protocol::strip_query(path)
        );
        // `instrument`, not `span.enter()`: an entered guard must not live across `.await`.
        self.with_retries(method, path, &payload, needs_user_action, options)
            .instrument(span)
            .await
    }

    /// Runs attempts until one succeeds, the retry policy gives up, or sending again could
    /// repeat a side effect.
    async fn with_retries(
        &self,
        method: Method,
        path: &str,
        payload: &Payload,
        needs_user_action: bool,
        options: CallOptions,
    ) -> Result<Outcome<RawResponse>, Error> {
        let mut attempt = 1;
        loop {
            let failure = match self.attempt(method, path, payload, needs_user_action).await {
                Ok(outcome) => return Ok(outcome),
                Err(failure) => failure,
            };
            let (err, reached_server) = match failure {
                Failure::BeforeRequest(err) => (err, false),
                Failure::Request(err) => (err, true),
            };
            if reached_server
                && !retry::replay_is_safe(method, payload, options.retry_side_effects, &err)
            {
                return Err(err);
            }
            let Some(delay) = self.inner.retry.retry_after(attempt, &err) else {
                return Err(err);
            };
            tracing::warn!(
                attempt,
                delay_ms = delay.as_millis() as u64,
                error = %err,
                "retrying with a fresh user action"
            );
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    /// One pass through the flow: a fresh challenge, signature and token every time.
    async fn attempt(
        &self,
        method: Method,
        path: &str,
        payload: &Payload,
        needs_user_action: bool,
    ) -> Result<Outcome<RawResponse>, Failure> {
        let token = if needs_user_action {
            let signer = self
                .require_signer(method, path)
                .map_err(|e| Failure::BeforeRequest(e.into()))?;
            Some(
                self.user_action_with(signer, method, path, payload)
                    .await
                    .map_err(Failure::BeforeRequest)?,
            )
        } else {
            None
        };
        let started = Instant::now();
        // The one copy of the body per attempt: the payload stays with the caller for a retry.
        let result = self
            .send(method, path, payload.as_str().to_owned(), token.as_ref())
            .await;
        if token.is_some() {
            // What the approved request did. It has run (or may have): a line that cannot be
            // written is reported in the log, not turned into an error the caller would take
            // for "not done".
            let status = match &result {
                Ok(Outcome::Done(raw)) => Some(raw.status),
                Ok(Outcome::PolicyPending(_)) => Some(202),
                Err(e) => e.api().map(|a| a.status),
            };
            if let (Some(signer), Some(_)) = (self.inner.signer.as_ref(), &self.inner.audit) {
                let written = self.audit(|| {
                    let record = audit_record("completed", signer, method, path, payload)
                        .decision("allowed");
                    match status {
                        Some(status) => record.upstream_status(status),
                        None => record.detail("no answer from the API"),
                    }
                });
                if let Err(e) = written {
                    tracing::error!(error = %e, "the audit log refused a completion line");
                }
            }
        }
        tracing::debug!(
            step = "send",
            elapsed_us = started.elapsed().as_micros() as u64,
            ok = result.is_ok()
        );
        result.map_err(Failure::Request)
    }

    /// Runs init → sign → complete and returns the single-use user action token.
    pub async fn user_action(
        &self,
        method: Method,
        path: &str,
        payload: &Payload,
    ) -> Result<SecretString, Error> {
        let signer = self.require_signer(method, path)?;
        self.user_action_with(signer, method, path, payload).await
    }

    /// The signer, or the error that says a request to `method path` needs one.
    fn require_signer(&self, method: Method, path: &str) -> Result<&CredentialSigner, ClientError> {
        self.inner
            .signer
            .as_ref()
            .ok_or_else(|| ClientError::SignerRequired {
                method: method.to_string(),
                path: path.to_owned(),
            })
    }

    async fn user_action_with(
        &self,
        signer: &CredentialSigner,
        method: Method,
        path: &str,
        payload: &Payload,
    ) -> Result<SecretString, Error> {
        let t = Instant::now();
        let raw = self.user_action_init_raw(method, path, payload).await?;
        let challenge = UserActionChallenge::from_json_for_signing(&raw.body)?;
        tracing::debug!(step = "init", elapsed_us = t.elapsed().as_micros() as u64);
        let t = Instant::now();
        let first_factor = self.assert_off_runtime(signer, &challenge).await?;
        tracing::debug!(step = "sign", cred_id = %signer.credential_id(), elapsed_us = t.elapsed().as_micros() as u64);
        // The signature leaves (to `/auth/action`) only once the approval is on the log.
        self.audit(|| {
            audit_record("approved", signer, method, path, payload)
                .challenge_identifier(challenge.challenge_identifier.as_str())
                .decision("allowed")
        })?;
        let t = Instant::now();
        let token = self
            .user_action_complete(&challenge.challenge_identifier, first_factor)
            .await?;
        tracing::debug!(
            step = "complete",
            elapsed_us = t.elapsed().as_micros() as u64
        );
        Ok(token)
    }

    /// Appends a line to the audit log, when there is one.
    fn audit(&self, record: impl FnOnce() -> crate::audit::AuditRecord) -> Result<(), Error> {
        let Some(log) = &self.inner.audit else {
            return Ok(());
        };
        log.append(&record()).map(|_| ()).map_err(|e| {
            ClientError::AuditRefused {
                reason: e.to_string(),
            }
            .into()
        })
    }

    /// `POST /auth/action/init`: asks for a challenge for one request (public for delegated
    /// signing, where someone else signs the challenge).
    pub async fn user_action_init(
        &self,
        method: Method,
        path: &str,
        payload: &Payload,
    ) -> Result<UserActionChallenge, Error> {
        let raw = self.user_action_init_raw(method, path, payload).await?;
        Ok(UserActionChallenge::from_json(&raw.body)?)
    }

    /// `POST /auth/action/init`'s answer, not yet parsed.
    async fn user_action_init_raw(
        &self,
        method: Method,
        path: &str,
        payload: &Payload,
    ) -> Result<RawResponse, Error> {
        // Written from the borrowed payload: the bytes of `UserActionInit::new`'s JSON, without
        // copying the payload into a struct first.
        let body = crate::protocol::init_body(method, path, payload.as_str())?;
        let raw = self
            .send(Method::Post, "/auth/action/init", body, None)
            .await?;
        expect_done(raw, Method::Post, "/auth/action/init")
    }

    /// `POST /auth/action`: trades a signed challenge for the single-use user action token.
    pub async fn user_action_complete(
        &self,
        challenge_identifier: &str,
        first_factor: FirstFactor,
    ) -> Result<SecretString, Error> {
        let body = crate::protocol::complete_body(challenge_identifier, &first_factor)?;
        let raw = self.send(Method::Post, "/auth/action", body, None).await?;
        let raw = expect_done(raw, Method::Post, "/auth/action")?;
        let token: crate::protocol::UserActionToken =
            raw.json_zeroizing(Method::Post, "/auth/action")?;
        Ok(token.user_action)
    }

    /// Sends a request with a user action token obtained elsewhere (delegated signing).
    pub async fn request_with_user_action(
        &self,
        method: Method,
        path: &str,
        payload: &Payload,
        user_action: &SecretString,
    ) -> Result<Outcome<RawResponse>, Error> {
        crate::protocol::validate_path(path)?;
        self.send(method, path, payload.as_str().to_owned(), Some(user_action))
            .await
    }
}

#[cfg(feature = "simulator")]
impl DfnsClient {
    /// A client acting as a local simulator's root service account: its URL and root token,
    /// signing with `root_key` (the private half of the simulator's root public key) under the
    /// root credential id. Lives here, not in the simulator, which never uses this client.
    pub fn simulator_root(
        sim: &crate::simulator::Simulator,
        root_key: Arc<dyn crate::KeyBackend>,
    ) -> Result<DfnsClient, Error> {
        DfnsClient::builder()
            .base_url(sim.base_url())
            .auth_token(sim.auth_token().clone())
            .signer(CredentialSigner::new(sim.credential_id(), root_key))
            .build()
    }
}

impl DfnsClient {
    /// Runs a signing step with this client's sign deadline (see [`sign_blocking`]).
    pub(crate) async fn sign_off_runtime<T: Send + 'static>(
        &self,
        key: &dyn crate::backend::KeyBackend,
        sign: impl FnOnce() -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        sign_blocking(key, self.inner.sign_timeout, sign).await
    }

    /// `signer.assert(challenge)`, the way [`sign_blocking`] runs it: on this task for a key that
    /// signs without blocking (nothing is copied for the blocking thread then), else on a
    /// blocking thread under the sign deadline, with copies of what that thread needs.
    pub(crate) async fn assert_off_runtime(
        &self,
        signer: &CredentialSigner,
        challenge: &UserActionChallenge,
    ) -> Result<FirstFactor, Error> {
        if signer.backend().signs_without_blocking() {
            return signer.assert(challenge);
        }
        // `assert` is these two steps; the check needs no thread of its own.
        challenge.check_allows(signer.credential_id())?;
        let (owned, text) = (signer.clone(), challenge.challenge.clone());
        self.sign_off_runtime(signer.backend().as_ref(), move || {
            owned.sign_challenge(&text)
        })
        .await
    }
}

/// Runs a signing step (`sign`, which uses `key`) on a blocking thread under a deadline: device
/// I/O (and a person touching a YubiKey) must not stall the async runtime's workers, and a stuck
/// device must fail the request rather than hang it. The one way every signature of the crate
/// is taken from async code — the client's, the official SDK adapter's, the CLI's — and the one
/// to use for delegated signing in a custody backend.
///
/// A key that signs without blocking
/// ([`KeyBackend::signs_without_blocking`](crate::KeyBackend::signs_without_blocking): a software
/// key in memory) signs right here, on the calling task: its signature takes less time than
/// handing it to another thread and back, and it has no device to get stuck on.
///
/// `timeout` defaults to [`DEFAULT_SIGN_TIMEOUT`], or [`DEFAULT_USER_SIGN_TIMEOUT`] for keys that
/// wait for a person ([`KeyBackend::waits_for_user`](crate::KeyBackend::waits_for_user)). Past
/// it: [`ClientError::SignTimeout`]; the blocking thread cannot be stopped and finishes on its
/// own, its result dropped unused.
pub async fn sign_blocking<T: Send + 'static>(
    key: &dyn crate::backend::KeyBackend,
    timeout: Option<Duration>,
    sign: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    if key.signs_without_blocking() {
        return sign();
    }
    let deadline = timeout.unwrap_or(if key.waits_for_user() {
        DEFAULT_USER_SIGN_TIMEOUT
    } else {
        DEFAULT_SIGN_TIMEOUT
    });
    match tokio::time::timeout(deadline, tokio::task::spawn_blocking(sign)).await {
        Ok(Ok(result)) => result,
        Ok(Err(join)) => Err(ClientError::SignTask(join.to_string()).into()),
        Err(_) => Err(ClientError::SignTimeout {
            key: key.describe(),
            seconds: deadline.as_secs_f64().ceil() as u64,
        }
        .into()),
    }
}

/// How one attempt failed: before the request itself was sent (getting the user action), or
/// while sending it, when the server may have acted on it.
enum Failure {
    BeforeRequest(Error),
    Request(Error),
}

/// Per-call options of [`DfnsClient::request_with_options`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CallOptions {
    /// Forces the user-action decision (`None`: the endpoint table decides).
    pub needs_user_action: Option<bool>,
    /// Lets the retry policy send this request again even when it may have run already
    /// (a 502/504, a timeout or a dropped connection after the request was written). Only for
    /// requests that are idempotent by nature; for creations, put an `externalId` in the body
    /// instead ([`Payload::with_external_id`]), which Dfns deduplicates.
    pub retry_side_effects: bool,
}

impl CallOptions {
    /// The defaults: the endpoint table decides, side effects are never retried.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets [`CallOptions::needs_user_action`].
    pub fn needs_user_action(mut self, needs: bool) -> Self {
        self.needs_user_action = Some(needs);
        self
    }

    /// Sets [`CallOptions::retry_side_effects`].
    pub fn retry_side_effects(mut self, allow: bool) -> Self {
        self.retry_side_effects = allow;
        self
    }
}

/// The result of a call on an endpoint that never waits for a policy approval; a 202 there is
/// a malformed answer.
pub(crate) fn expect_done<T>(outcome: Outcome<T>, method: Method, path: &str) -> Result<T, Error> {
    outcome.done().map_err(|pending| {
        ClientError::Decode {
            method: method.to_string(),
            path: path.to_owned(),
            reason: format!(
                "unexpected 202 on an endpoint that takes no policy approval: {pending}"
            ),
        }
        .into()
    })
}

/// The audit line of one signed request (never a token or a secret).
fn audit_record(
    event: &str,
    signer: &CredentialSigner,
    method: Method,
    path: &str,
    payload: &Payload,
) -> crate::audit::AuditRecord {
    crate::audit::AuditRecord::new(event)
        .key(signer.backend().describe())
        .credential_id(signer.credential_id())
        .method(method.as_str())
        .path(crate::protocol::strip_query(path))
        .body(payload.as_str().as_bytes())
}
