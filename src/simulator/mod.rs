//! A local Dfns API simulator, for tests, CI and the demo.
//!
//! It speaks the Dfns wire protocol as the official SDKs do (see `docs/protocol.md`) and is strict
//! where Dfns is: bearer tokens are checked, every mutating request outside the documented
//! exempt list needs an `X-DFNS-USERACTION` token bound to its method, raw path and
//! byte-identical body, tokens and challenges are single-use, and every signature is verified
//! (ECDSA P-256/secp256k1 as canonical DER over SHA-256, pure Ed25519, RSA PKCS#1 v1.5
//! SHA-256). It verifies what arrives by parsing it with its own code, never with this crate's
//! client, so a bug in the client cannot make the simulator agree with it.
//!
//! It serves: the user-action flow, Key credential registration (with attestation check and the
//! code variant), credential deactivation and activation, logins (Key, delegated, logout),
//! service accounts, personal access tokens, wallets and the Keys API (real in-memory keys),
//! signatures, tags and webhooks (delivered, signed); and it injects faults on
//! demand (latency, 429 with `Retry-After`, 500, 502, dropped connections, 202 policy pending).
//! Everything is in memory.
//!
//! | endpoint | user action | notes |
//! |---|---|---|
//! | `POST /auth/action/init`, `POST /auth/action` | no | challenge single-use, 5 min (see [`SimulatorBuilder::challenge_ttl`]) |
//! | `POST /auth/credentials/init`, `POST /auth/credentials`, `GET /auth/credentials` | on `POST /auth/credentials` | `Key` only; attestation verified |
//! | `PUT /auth/credentials/deactivate`, `PUT /auth/credentials/activate` | yes | `{"credentialUuid"}` of one of the caller's credentials (another user's is 404); answers `{"message":"success"}`, also when already in that state; a deactivated credential signs no user action or login (401 `credential is deactivated`) and is listed `isActive: false`; a user's last active credential cannot be deactivated (400, the simulator's rule) |
//! | `POST /auth/credentials/code`, `…/code/init`, `…/code/verify` | on `/code` | one-minute, one-use codes |
//! | `POST /auth/service-accounts`, `GET …`, `GET …/{id}`, `PUT …/{id}/activate` and `/deactivate` | on writes | the response carries the token and credential id |
//! | `POST /auth/pats`, `GET /auth/pats` | on `POST` | `publicKey` required: it becomes a credential of the caller; `secondsValid` or `daysValid` |
//! | `POST /auth/login/init`, `POST /auth/login` | no (and no token) | `username` is [`Simulator::username`] |
//! | `POST /auth/login/delegated`, `PUT /auth/logout` | yes / no | logout revokes the token used |
//! | `POST /wallets`, `GET /wallets`, `GET /wallets/{id}`, `PUT /wallets/{id}`, `PUT`/`DELETE /wallets/{id}/tags` | on writes | `externalId` idempotency; `limit` + `paginationToken` |
//! | `POST /wallets/{id}/signatures`, `GET …/signatures`, `GET …/signatures/{sigId}` | on `POST` | `Hash` and `Message` (EIP-191 on EVM networks, SHA-256 elsewhere), signed with the wallet's real key |
//! | `POST /keys`, `GET /keys`, `GET /keys/{id}`, `POST/GET /keys/{keyId}/signatures`, `GET …/signatures/{id}` | on `POST` | ECDSA secp256k1 or EdDSA ed25519; a wallet's key is `signingKey.id`; signatures verify against `publicKey` |
//! | `POST /webhooks`, `GET /webhooks`, `GET/PUT/DELETE /webhooks/{id}`, `POST /webhooks/{id}/ping`, `GET /webhooks/{id}/events[/{eventId}]` | on writes | the secret is shown once; `wallet.created`, `wallet.signature.signed`, `key.signature.signed`, `policy.approval.pending` and `webhook.ping` are delivered to `http://` loopback URLs, signed `X-DFNS-WEBHOOK-SIGNATURE: sha256=<hex HMAC-SHA256>`; the ping answers with the receiver's status |
//! | `POST/GET /permissions`, `GET/PUT /permissions/{id}`, `PUT …/archive`, `POST/GET …/assignments`, `DELETE …/assignments/{id}` | on writes | operations as the official SDKs name them; see below |
//!
//! Permissions: the root may do everything; a service account or PAT made with a
//! `permissionId` may do exactly the operations assigned to it (`Wallets:Create`,
//! `Keys:Signatures:Create`…, archived permissions excepted); one made without gets its
//! creator's reach (Dfns grants nothing by default: this is the simulator's documented
//! choice). A call outside them is a 403 `Forbidden` naming the missing operation, checked
//! before the user action is spent. Delegated login is for end users only; the root cannot be
//! deactivated by another identity; usernames are unique (409).
//!
//! Refusals use Dfns' statuses and messages: 401 for a missing, unknown or revoked token; 403
//! `user action signature is missing or invalid` for a missing or mismatched user action; 400
//! `user action has already been used` for a replay; 400 `Challenge token is not valid.` for a
//! reused or expired challenge; 401 `user action signature is missing or invalid` for an
//! assertion that does not verify; 401 `credential is deactivated` for a valid assertion by a
//! deactivated credential (the simulator's wording). Each error body's `details.reason` says
//! exactly what was wrong. The simulator speaks HTTP/1.1 without TLS: point clients at [`Simulator::base_url`].
//!
//! Lifetimes and limits: auth tokens expire (`daysValid`, `secondsValid`, 24 h for login
//! tokens) with a 401 that says so; challenges and user actions keep their TTL; at most 512
//! connections are served at once ([`SimulatorBuilder::max_connections`]) and a connection
//! that sends no request head within 10 s is closed ([`SimulatorBuilder::header_read_timeout`]);
//! open challenges are capped at 10,000 (then 429), spent ones forgotten; statistics count
//! routes (`GET /wallets/{}`), not raw paths, and refusals by reason. No request without a valid
//! token can grow the simulator's state (`tests/simulator.rs`
//! `ten_thousand_unknown_paths_leave_the_state_flat`).
//!
//! ```no_run
//! # async fn demo() -> Result<(), dfns_signer::simulator::SimulatorError> {
//! use dfns_signer::simulator::{Faults, Simulator};
//! let pem = std::fs::read_to_string("tests/fixtures/keys/p256.pub.pem").unwrap();
//! let sim = Simulator::builder().root_public_key_pem(pem).start().await?;
//! println!("{} as credential {}", sim.base_url(), sim.credential_id());
//! sim.set_faults(Faults { rate_429: 0.2, retry_after_secs: 1, ..Faults::default() });
//! sim.shutdown().await;
//! # Ok(()) }
//! ```

mod credentials;
mod delivery;
mod endpoints;
mod errors;
mod faults;
mod keys;
mod login;
mod permissions;
mod request;
mod router;
mod server;
mod service_accounts;
mod state;
mod tokens;
mod user_action;
mod util;
mod verify;
mod wallets;
mod webhooks;

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use faults::Faults;
pub use state::Stats;

use server::Shared;
use state::{Inner, DEFAULT_CHALLENGE_TTL};
use verify::CredentialKey;

/// Lifetime of the root auth token: Dfns' maximum for service accounts.
const ROOT_TOKEN_SECS: u64 = 730 * 86_400;

/// Why the simulator could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimulatorError {
    /// No root public key was given to the builder.
    #[error("the simulator needs the root credential's public key: call `root_public_key_pem` (an SPKI `-----BEGIN PUBLIC KEY-----` PEM)")]
    MissingRootKey,
    /// The root public key is not a key Dfns accepts.
    #[error("the root public key cannot be used: {0}; give an SPKI PEM of a P-256, secp256k1, Ed25519 or RSA-2048+ key")]
    InvalidRootKey(String),
    /// The root credential id is not base64url.
    #[error("root credential id {0:?} is not a base64url string (letters, digits, `-`, `_`)")]
    InvalidCredentialId(String),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}; choose another address or port (port 0 picks a free one)")]
    Bind {
        /// The address asked for.
        addr: String,
        /// The operating system's error.
        source: std::io::Error,
    },
}

/// Configures and starts a [`Simulator`].
#[derive(Debug, Clone, Default)]
pub struct SimulatorBuilder {
    root_public_key_pem: Option<String>,
    root_credential_id: Option<String>,
    root_username: Option<String>,
    faults: Faults,
    challenge_ttl: Option<Duration>,
    limits: server::Limits,
}

impl SimulatorBuilder {
    /// The root credential's public key (SPKI PEM). The root is a service account allowed
    /// everything; its bearer token is [`Simulator::auth_token`].
    pub fn root_public_key_pem(mut self, pem: impl Into<String>) -> Self {
        self.root_public_key_pem = Some(pem.into());
        self
    }

    /// The root credential's id. Default: base64url of the first 16 bytes of SHA-256 over the
    /// key's SPKI DER (the id `protocol::default_credential_id` gives, and the CLI by default).
    pub fn root_credential_id(mut self, cred_id: impl Into<String>) -> Self {
        self.root_credential_id = Some(cred_id.into());
        self
    }

    /// The root user's username, for `/auth/login/init`. Default `root@dfns-signer.simulator`.
    pub fn root_username(mut self, username: impl Into<String>) -> Self {
        self.root_username = Some(username.into());
        self
    }

    /// Faults to inject from the start (change them later with [`Simulator::set_faults`]).
    pub fn faults(mut self, faults: Faults) -> Self {
        self.faults = faults;
        self
    }

    /// Lifetime of challenges and user-action tokens (default 5 minutes).
    pub fn challenge_ttl(mut self, ttl: Duration) -> Self {
        self.challenge_ttl = Some(ttl);
        self
    }

    /// Connections served at once (default 512); further clients wait in the listen backlog.
    pub fn max_connections(mut self, connections: usize) -> Self {
        self.limits.max_connections = connections.max(1);
        self
    }

    /// How long a client may take to send a request's head (default 10 s); then its connection
    /// is closed, so idle or slow clients cannot hold connection slots.
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.limits.header_read_timeout = timeout;
        self
    }

    /// Starts on `127.0.0.1` with a free port.
    pub async fn start(self) -> Result<Simulator, SimulatorError> {
        self.start_on("127.0.0.1:0").await
    }

    /// Starts listening on `addr` (e.g. `127.0.0.1:8080`, or port 0 for a free one).
    pub async fn start_on(self, addr: &str) -> Result<Simulator, SimulatorError> {
        let pem = self
            .root_public_key_pem
            .ok_or(SimulatorError::MissingRootKey)?;
        let key = CredentialKey::from_pem(&pem).map_err(SimulatorError::InvalidRootKey)?;
        let cred_id = match self.root_credential_id {
            Some(id) => id,
            None => verify::default_credential_id(&pem).map_err(SimulatorError::InvalidRootKey)?,
        };
        if !util::is_b64url(&cred_id) {
            return Err(SimulatorError::InvalidCredentialId(cred_id));
        }
        let username = self
            .root_username
            .unwrap_or_else(|| "root@dfns-signer.simulator".to_owned());

        let mut inner = Inner::new(self.challenge_ttl.unwrap_or(DEFAULT_CHALLENGE_TTL));
        let user_id = inner.add_user(&username, "CustomerEmployee", true);
        inner.unrestricted.insert(user_id.clone());
        inner.root_user_id = user_id.clone();
        inner.add_credential(&user_id, &cred_id, "root", &pem, key);
        let token = inner.issue_token(&user_id, "Service", "root", Some(&cred_id), ROOT_TOKEN_SECS);
        let org_id = inner.org_id.clone();

        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| SimulatorError::Bind {
                addr: addr.to_owned(),
                source,
            })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| SimulatorError::Bind {
                addr: addr.to_owned(),
                source,
            })?;
        let shared = Arc::new(Shared {
            inner: Mutex::new(inner),
            faults: Mutex::new(faults::FaultState::new(self.faults)),
        });
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(server::accept_loop(
            listener,
            shared.clone(),
            self.limits,
            stopped,
        ));
        Ok(Simulator {
            base_url: format!("http://{local_addr}"),
            local_addr,
            auth_token: SecretString::from(token),
            credential_id: cred_id,
            org_id,
            username,
            shared,
            stop: Some(stop),
            task: Some(task),
        })
    }
}

/// A running simulator. Dropping it stops it (open connections are closed).
pub struct Simulator {
    base_url: String,
    local_addr: SocketAddr,
    auth_token: SecretString,
    credential_id: String,
    org_id: String,
    username: String,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl fmt::Debug for Simulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Simulator")
            .field("base_url", &self.base_url)
            .field("auth_token", &"[redacted]")
            .field("credential_id", &self.credential_id)
            .field("org_id", &self.org_id)
            .finish()
    }
}

impl Simulator {
    /// A builder; [`SimulatorBuilder::root_public_key_pem`] is required.
    pub fn builder() -> SimulatorBuilder {
        SimulatorBuilder::default()
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The address the simulator listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The root service account's bearer token (random for each simulator).
    pub fn auth_token(&self) -> &SecretString {
        &self.auth_token
    }

    /// The root credential's id, to sign user actions with.
    pub fn credential_id(&self) -> &str {
        &self.credential_id
    }

    /// How many entries the simulator's state holds (users, credentials, tokens, challenges,
    /// user actions, wallets, keys, signatures, webhooks and their events, codes, and the keys
    /// of its statistics): what tests watch to show that requests do not grow it unbounded.
    #[doc(hidden)]
    pub fn state_entries(&self) -> usize {
        self.shared.inner().entries()
    }

    /// The simulated organisation's id (`or-…`).
    pub fn org_id(&self) -> &str {
        &self.org_id
    }

    /// The root user's username (for `/auth/login/init`).
    pub fn username(&self) -> &str {
        &self.username
    }

    /// Replaces the faults in force (the dice are re-seeded from `faults.seed`).
    pub fn set_faults(&self, faults: Faults) {
        *self.shared.faults() = faults::FaultState::new(faults);
    }

    /// The faults in force.
    pub fn faults(&self) -> Faults {
        self.shared.faults().faults.clone()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        self.shared.inner().stats.clone()
    }

    /// The one JSON line `dfns-signer simulator` prints:
    /// `{"baseUrl","authToken","credId","orgId"}`. It contains the auth token in clear, on
    /// purpose: it is how a parent process learns it. Do not log it.
    pub fn connection_info_json(&self) -> String {
        serde_json::json!({
            "baseUrl": self.base_url,
            "authToken": self.auth_token.expose_secret(),
            "credId": self.credential_id,
            "orgId": self.org_id,
        })
        .to_string()
    }

    /// Stops accepting, closes open connections and waits for the server task to end.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            // The task ends by itself once told; an abort error is not interesting here.
            let _ = task.await;
        }
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Runs a simulator until Ctrl-C or SIGTERM, for `dfns-signer simulator`.
///
/// Once it listens it prints exactly one line on stdout,
/// `{"baseUrl":…,"authToken":…,"credId":…,"orgId":…}` (see
/// [`Simulator::connection_info_json`]), and flushes it, so a parent process can read it.
pub async fn serve_until_signal(
    builder: SimulatorBuilder,
    listen_addr: &str,
) -> Result<(), SimulatorError> {
    use std::io::Write;
    let sim = builder.start_on(listen_addr).await?;
    {
        let mut out = std::io::stdout().lock();
        // A closed stdout only means nobody listens for the line; keep serving anyway.
        let _ = writeln!(out, "{}", sim.connection_info_json());
        let _ = out.flush();
    }
    wait_for_signal().await;
    sim.shutdown().await;
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
