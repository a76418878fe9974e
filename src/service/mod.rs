//! The signing service (`dfns-signer serve`): holds the credential keys (PKCS#11, PIV,
//! software) and approves Dfns requests for other processes, in any language, under a policy it
//! enforces itself.
//!
//! It speaks the Dfns API at its own base URL, in two ways:
//! - **Approval proxy.** A client sends a plain Dfns request with its own `Authorization`
//!   token and its service secret in `X-Dfns-Signer-Client`. A request that needs a user action
//!   is checked against the client's policy, then the service runs init → sign → complete
//!   upstream with the client's key and sends the request; the upstream answer comes back as it
//!   came (a 202 stays a 202). Other requests pass through.
//! - **Remote signer.** An official SDK pointed at the service sends its `/auth/action/init`
//!   through it; the service adds `dfnsSignerApproval` to the answer, a MAC over what the
//!   challenge approves (see docs/service.md). The SDK's signer adapter
//!   (`clients/typescript`, `clients/python`) posts the challenge to `POST /v1/sign`, which
//!   signs only a challenge whose approval verifies and whose request the client's policy allows.
//!
//! Refusals are Dfns-shaped (`{"error": {"status", "message", "fix", …}}`) and reach nothing
//! upstream. See `docs/service.md` for the whole story.
//!
//! Layering: the service uses the client ([`DfnsClient`]) and the backends; nothing below it
//! knows it exists.

mod approval;
mod config;
mod handler;
mod policy;
mod secret;
mod server;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

pub use approval::MIN_APPROVAL_KEY_LEN;
pub use config::{ClientConfig, KeyConfig, Listen, ServiceConfig, TlsFiles};
pub use policy::{BodyConstraint, Decision, Policy, RateLimit, Rule};
pub use secret::{new_client_secret, NewClientSecret, SECRET_PREFIX};
pub use server::RunningService;

use crate::config::ConfigError;
use crate::{CredentialSigner, DfnsClient, Error, KeyUri};
use approval::ApprovalKey;
use policy::RateLimiter;

/// The header that carries a client's secret.
pub const CLIENT_HEADER: &str = "x-dfns-signer-client";
/// The header that names which of the client's keys signs (default: its first).
pub const KEY_HEADER: &str = "x-dfns-signer-key";
/// The field the service adds to an `/auth/action/init` answer.
pub const APPROVAL_FIELD: &str = "dfnsSignerApproval";

/// Why the service cannot start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// The configuration file.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// `[listen]` names no listener.
    #[error("{} has no [listen] section with unix or tcp", .0.display())]
    NoListener(PathBuf),
    /// The approval key is too short.
    #[error("the approval key from {source_name} is {len} bytes; at least {MIN_APPROVAL_KEY_LEN} are needed")]
    ApprovalKeyTooShort {
        /// Where it came from (`env:NAME`, `file:PATH`).
        source_name: String,
        /// Its length.
        len: usize,
    },
    /// A key could not be opened.
    #[error("key `{name}`: {source}")]
    Key {
        /// The `[[keys]]` name.
        name: String,
        /// What the backend said.
        #[source]
        source: Error,
    },
    /// A listener could not be set up (address in use, permissions, a TLS file).
    #[error("{what}: {reason}")]
    Listen {
        /// The listener or file.
        what: String,
        /// What the system said.
        reason: String,
    },
}

impl ServiceError {
    /// What to do about it.
    pub fn fix(&self) -> String {
        match self {
            ServiceError::Config(c) => c.fix(),
            ServiceError::NoListener(_) => {
                "add [listen] with unix = \"/run/dfns-signer/signer.sock\" and/or tcp = \
                 \"127.0.0.1:8470\""
                    .to_owned()
            }
            ServiceError::ApprovalKeyTooShort { .. } => format!(
                "make a longer key, e.g. head -c 32 /dev/urandom | base64 > approval.key \
                 (at least {MIN_APPROVAL_KEY_LEN} characters), the same on every instance"
            ),
            ServiceError::Key { .. } => {
                "check the key URI and its PIN source with `dfns-signer doctor --key URI`"
                    .to_owned()
            }
            ServiceError::Listen { .. } => {
                "check the address or path is free and this user may bind it, and that the \
                 TLS files exist and are PEM"
                    .to_owned()
            }
        }
    }
}

/// One client, its rate limiter and its keys.
struct ClientState {
    config: ClientConfig,
    limiter: Option<Mutex<RateLimiter>>,
}

/// Everything a request handler needs. Not `Debug`: it holds keys.
pub(crate) struct Shared {
    config: ServiceConfig,
    approval: ApprovalKey,
    clients: Vec<ClientState>,
    signers: HashMap<String, CredentialSigner>,
    /// Sends passed-through and final requests (no redirects followed).
    http: reqwest::Client,
    /// Runs init → sign → complete; a per-request copy carries the caller's token.
    dfns: DfnsClient,
}

/// A configured service, its keys open, ready to [`bind`](Service::bind).
pub struct Service {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("config", &self.shared.config.path)
            .field("keys", &self.shared.signers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Service {
    /// Opens every `[[keys]]` entry (PINs from their `pin-source`) and reads the approval key.
    pub fn open(config: ServiceConfig) -> Result<Service, ServiceError> {
        let mut signers = HashMap::new();
        for key in &config.keys {
            let opened = KeyUri::parse(&key.key)
                .and_then(|uri| crate::open(&uri))
                .map_err(|e| ServiceError::Key {
                    name: key.name.clone(),
                    source: e.into(),
                })?;
            signers.insert(
                key.name.clone(),
                CredentialSigner::new(key.credential_id.clone(), opened),
            );
        }
        Service::with_signers(config, signers)
    }

    /// A service whose keys the caller opened (tests, or a custody backend embedding the
    /// service): one signer per `[[keys]]` name.
    pub fn with_signers(
        config: ServiceConfig,
        signers: HashMap<String, CredentialSigner>,
    ) -> Result<Service, ServiceError> {
        for key in &config.keys {
            if !signers.contains_key(&key.name) {
                return Err(ServiceError::Key {
                    name: key.name.clone(),
                    source: crate::ClientError::Config(format!(
                        "no signer was given for key `{}`",
                        key.name
                    ))
                    .into(),
                });
            }
        }
        let approval = match &config.approval_key {
            Some(source) => {
                let text = source.read()?;
                let bytes = secrecy::ExposeSecret::expose_secret(&text).as_bytes();
                if bytes.len() < MIN_APPROVAL_KEY_LEN {
                    return Err(ServiceError::ApprovalKeyTooShort {
                        source_name: source.to_string(),
                        len: bytes.len(),
                    });
                }
                ApprovalKey::from_bytes(bytes)
            }
            None => ApprovalKey::random(),
        };
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.timeout)
            .build()
            .map_err(|e| ServiceError::Listen {
                what: "the upstream HTTP client".to_owned(),
                reason: e.to_string(),
            })?;
        let dfns = DfnsClient::builder()
            .base_url(config.upstream.clone())
            .http_client(http.clone())
            .timeout(config.timeout)
            .retry_policy(Arc::new(crate::NoRetry))
            .build()
            .map_err(|e| ServiceError::Listen {
                what: "the upstream client".to_owned(),
                reason: e.to_string(),
            })?;
        let clients = config
            .clients
            .iter()
            .map(|c| ClientState {
                limiter: c.policy.rate_limit.map(|l| Mutex::new(RateLimiter::new(l))),
                config: c.clone(),
            })
            .collect();
        Ok(Service {
            shared: Arc::new(Shared {
                config,
                approval,
                clients,
                signers,
                http,
                dfns,
            }),
        })
    }

    /// Whether approvals hold only on this instance (no `approval_key` configured).
    pub fn approval_key_is_ephemeral(&self) -> bool {
        self.shared.approval.ephemeral
    }

    /// Binds the configured listeners and starts serving on the current tokio runtime.
    pub async fn bind(self) -> Result<RunningService, ServiceError> {
        server::bind(self.shared).await
    }
}
