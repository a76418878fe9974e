//! The Dfns API client: auth token, base URL, timeouts, retries, and the user-action flow.
//!
//! ```text
//! DfnsClient::request(method, path, payload)
//!   ├─ needs a user action?  (protocol::endpoints)
//!   │    ├─ POST /auth/action/init ──► challenge
//!   │    ├─ CredentialSigner::assert ──► KeyBackend::sign   (on a blocking thread)
//!   │    └─ POST /auth/action ──► single-use token
//!   └─ the request + X-DFNS-USERACTION ──► Outcome::Done | Outcome::PolicyPending | Error
//! ```
//!
//! One `DfnsClient` holds one connection pool; clone it freely (clones share the pool). A
//! [`RetryPolicy`] wraps the *whole* flow, so a retried request always gets a fresh challenge and
//! a fresh user action; the default policy never retries.

mod api;
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
use crate::protocol::{CredentialSigner, FirstFactor, Method, Payload, UserActionChallenge};

/// Dfns production API.
pub const DEFAULT_BASE_URL: &str = "https://api.dfns.io";
/// Default time allowed for one HTTP exchange (the official Python, Go and Rust SDKs use 30 s).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

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
pub struct RawResponse {
    /// HTTP status (2xx).
    pub status: u16,
    /// The body bytes.
    pub body: Vec<u8>,
}

impl RawResponse {
    /// Decodes the body as JSON (`null` for an empty body).
    pub fn json<T: DeserializeOwned>(&self, method: Method, path: &str) -> Result<T, Error> {
        let body: &[u8] = if self.body.is_empty() {
            b"null"
        } else {
            &self.body
        };
        serde_json::from_slice(body).map_err(|e| {
            ClientError::Decode {
                method: method.to_string(),
                path: path.to_owned(),
                reason: e.to_string(),
            }
            .into()
        })
    }
}

/// Builds a [`DfnsClient`].
pub struct DfnsClientBuilder {
    base_url: String,
    auth_token: Option<SecretString>,
    signer: Option<CredentialSigner>,
    timeout: Duration,
    http: Option<reqwest::Client>,
    retry: Arc<dyn RetryPolicy>,
}

impl Default for DfnsClientBuilder {
    fn default() -> Self {
        DfnsClientBuilder {
            base_url: DEFAULT_BASE_URL.to_owned(),
            auth_token: None,
            signer: None,
            timeout: DEFAULT_TIMEOUT,
            http: None,
            retry: Arc::new(NoRetry),
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

    /// Shares an existing `reqwest` client (and its connection pool) instead of building one.
    /// Build it with `redirect(Policy::none())` and a timeout: this client's own defaults (no
    /// redirects, [`DfnsClientBuilder::timeout`]) apply only to the client it builds.
    pub fn http_client(mut self, http: reqwest::Client) -> Self {
        self.http = Some(http);
        self
    }

    /// How failed requests are retried (default: never). Each retry runs the whole flow again
    /// with a fresh challenge and user action.
    pub fn retry_policy(mut self, policy: Arc<dyn RetryPolicy>) -> Self {
        self.retry = policy;
        self
    }

    /// Checks the configuration and builds the client.
    pub fn build(self) -> Result<DfnsClient, Error> {
        let config = |m: String| Error::from(ClientError::Config(m));
        let mut url = url::Url::parse(&self.base_url)
            .map_err(|e| config(format!("base URL `{}` is not a URL: {e}", self.base_url)))?;
        match url.scheme() {
            "https" => {}
            "http" if is_loopback(&url) => {}
            "http" => {
                return Err(config(format!(
                    "base URL `{}` uses http: the auth token would cross the network in clear; use https \
                     (http is accepted only for loopback addresses)",
                    self.base_url
                )))
            }
            other => return Err(config(format!("base URL scheme `{other}` is not http(s)"))),
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(config(
                "base URL must not carry a query or fragment".to_owned(),
            ));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(config(
                "base URL must not carry credentials; use auth_token".to_owned(),
            ));
        }
        let trimmed = url.path().trim_end_matches('/').to_owned();
        url.set_path(&trimmed);
        let http = match self.http {
            Some(h) => h,
            // No redirects: Dfns never sends one, and following it would replay a single-use
            // user action (and the bearer token) to wherever it points.
            None => reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(self.timeout)
                .user_agent(concat!("dfns-signer/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| config(format!("cannot build the HTTP client: {e}")))?,
        };
        Ok(DfnsClient {
            inner: Arc::new(Inner {
                http,
                base: url.as_str().trim_end_matches('/').to_owned(),
                auth_token: self.auth_token,
                signer: self.signer,
                timeout: self.timeout,
                retry: self.retry,
            }),
        })
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
    http: reqwest::Client,
    base: String,
    auth_token: Option<SecretString>,
    signer: Option<CredentialSigner>,
    timeout: Duration,
    retry: Arc<dyn RetryPolicy>,
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
                &self.inner.auth_token.as_ref().map(|_| "[REDACTED]"),
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
        self.with(|i| i.auth_token = Some(token))
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
        let needs = crate::protocol::needs_user_action(method, path);
        self.request_with(method, path, payload, needs).await
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
        crate::protocol::endpoints::validate_path(path)?;
        let span = tracing::info_span!(
            "dfns.request",
            method = %method,
            path = %crate::protocol::endpoints::strip_query(path)
        );
        // `instrument`, not `span.enter()`: an entered guard must not live across `.await`.
        self.with_retries(method, path, &payload, needs_user_action)
            .instrument(span)
            .await
    }

    /// Runs attempts until one succeeds or the retry policy gives up.
    async fn with_retries(
        &self,
        method: Method,
        path: &str,
        payload: &Payload,
        needs_user_action: bool,
    ) -> Result<Outcome<RawResponse>, Error> {
        let mut attempt = 1;
        loop {
            let err = match self.attempt(method, path, payload, needs_user_action).await {
                Ok(outcome) => return Ok(outcome),
                Err(err) => err,
            };
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
    ) -> Result<Outcome<RawResponse>, Error> {
        let token = if needs_user_action {
            let signer = self.require_signer(method, path)?;
            Some(
                self.user_action_with(&signer, method, path, payload)
                    .await?,
            )
        } else {
            None
        };
        let started = Instant::now();
        let result = self
            .send(method, path, payload.as_str(), token.as_ref())
            .await;
        tracing::debug!(
            step = "send",
            elapsed_us = started.elapsed().as_micros() as u64,
            ok = result.is_ok()
        );
        result
    }

    /// Runs init → sign → complete and returns the single-use user action token.
    pub async fn user_action(
        &self,
        method: Method,
        path: &str,
        payload: &Payload,
    ) -> Result<SecretString, Error> {
        let signer = self.require_signer(method, path)?;
        self.user_action_with(&signer, method, path, payload).await
    }

    /// The signer, or the error that says a request to `method path` needs one.
    fn require_signer(&self, method: Method, path: &str) -> Result<CredentialSigner, ClientError> {
        self.inner
            .signer
            .clone()
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
        let challenge = self.user_action_init(method, path, payload).await?;
        tracing::debug!(step = "init", elapsed_us = t.elapsed().as_micros() as u64);
        let t = Instant::now();
        let first_factor = sign_off_runtime(signer, challenge.clone()).await?;
        tracing::debug!(step = "sign", cred_id = %signer.credential_id(), elapsed_us = t.elapsed().as_micros() as u64);
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

    /// `POST /auth/action/init`: asks for a challenge for one request (public for delegated
    /// signing, where someone else signs the challenge).
    pub async fn user_action_init(
        &self,
        method: Method,
        path: &str,
        payload: &Payload,
    ) -> Result<UserActionChallenge, Error> {
        let init = crate::protocol::UserActionInit::new(method, path, payload.as_str());
        let body = Payload::json(&init)?;
        let raw = self
            .send(Method::Post, "/auth/action/init", body.as_str(), None)
            .await?;
        let raw = expect_done(raw, Method::Post, "/auth/action/init")?;
        Ok(UserActionChallenge::from_json(&raw.body)?)
    }

    /// `POST /auth/action`: trades a signed challenge for the single-use user action token.
    pub async fn user_action_complete(
        &self,
        challenge_identifier: &str,
        first_factor: FirstFactor,
    ) -> Result<SecretString, Error> {
        let complete = crate::protocol::UserActionComplete {
            challenge_identifier: challenge_identifier.to_owned(),
            first_factor,
            second_factor: None,
        };
        let body = Payload::json(&complete)?;
        let raw = self
            .send(Method::Post, "/auth/action", body.as_str(), None)
            .await?;
        let raw = expect_done(raw, Method::Post, "/auth/action")?;
        let token: crate::protocol::UserActionToken = raw.json(Method::Post, "/auth/action")?;
        Ok(SecretString::from(token.user_action))
    }

    /// Sends a request with a user action token obtained elsewhere (delegated signing).
    pub async fn request_with_user_action(
        &self,
        method: Method,
        path: &str,
        payload: &Payload,
        user_action: &SecretString,
    ) -> Result<Outcome<RawResponse>, Error> {
        crate::protocol::endpoints::validate_path(path)?;
        self.send(method, path, payload.as_str(), Some(user_action))
            .await
    }
}

/// Signs on a blocking thread: device I/O (and a person touching a YubiKey) must not stall
/// the async runtime's workers.
async fn sign_off_runtime(
    signer: &CredentialSigner,
    challenge: UserActionChallenge,
) -> Result<FirstFactor, Error> {
    let signer = signer.clone();
    tokio::task::spawn_blocking(move || signer.assert(&challenge))
        .await
        .map_err(|e| ClientError::SignTask(e.to_string()))?
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
