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
mod metrics;
mod policy;
mod secret;
mod server;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

pub use approval::MIN_APPROVAL_KEY_LEN;
pub use config::{ClientConfig, KeyConfig, KeyDevice, Listen, ServiceConfig, TlsFiles};
pub use policy::{BodyConstraint, Decision, Policy, RateLimit, Rule};
pub use secret::{new_client_secret, NewClientSecret, SECRET_PREFIX};
pub use server::RunningService;

use crate::audit::{AuditLog, AuditOptions};
use crate::config::ConfigError;
use crate::{CredentialSigner, DfnsClient, Error, KeyUri};
use approval::ApprovalKey;
use metrics::ServiceMetrics;
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
    /// The audit log could not be opened.
    #[error("audit log: {0}")]
    Audit(#[from] crate::audit::AuditError),
    /// A reloaded configuration names a key the running service did not open.
    #[error("the new configuration's client `{client}` uses key `{key}`, which this service did not open at start")]
    ReloadNeedsRestart {
        /// The client.
        client: String,
        /// The key.
        key: String,
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
            ServiceError::Audit(e) => e.fix(),
            ServiceError::ReloadNeedsRestart { .. } => {
                "keys open at start: restart the service to add a key (a reload changes \
                 clients and policies only)"
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

/// The clients in force: replaced as a whole by a reload (SIGHUP), so a request sees either the
/// old set or the new one.
type Clients = Arc<Vec<Arc<ClientState>>>;

/// Everything a request handler needs. Not `Debug`: it holds keys.
pub(crate) struct Shared {
    /// The configuration as started (keys, listeners, upstream); clients come from `clients`.
    config: ServiceConfig,
    approval: ApprovalKey,
    clients: RwLock<Clients>,
    /// Each key's devices, in failover order.
    signers: HashMap<String, Vec<CredentialSigner>>,
    /// Sends passed-through and final requests (no redirects followed).
    http: reqwest::Client,
    /// Runs init → sign → complete; a per-request copy carries the caller's token.
    dfns: DfnsClient,
    /// One line per decision, written before an approval leaves (none: not configured).
    audit: Option<AuditLog>,
    metrics: ServiceMetrics,
    /// Set once SIGTERM is received: `/readyz` answers 503 so load balancers move on.
    draining: std::sync::atomic::AtomicBool,
    /// The last readiness checks and when they ran: probes from several load balancers reuse
    /// them for [`READINESS_REUSE`], so the listener cannot be used to open sessions on the HSM
    /// at the rate requests arrive.
    last_readiness: tokio::sync::Mutex<Option<(std::time::Instant, Readiness)>>,
}

/// Each key's readiness: its name, and what is wrong with it, if anything.
type Readiness = Vec<(String, Result<(), String>)>;

/// How long one round of readiness checks answers `/readyz`.
const READINESS_REUSE: std::time::Duration = std::time::Duration::from_secs(1);

impl Shared {
    fn clients(&self) -> Clients {
        self.clients
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Reads each key's session pool into the metrics (at scrape time: the pools keep their own
    /// counts).
    fn update_pool_metrics(&self) {
        for (name, devices) in &self.signers {
            let pools: Vec<crate::SessionPool> = devices
                .iter()
                .filter_map(|d| d.backend().session_pool())
                .collect();
            if pools.is_empty() {
                continue;
            }
            self.metrics.session_pool(
                name,
                pools.iter().map(|p| p.open).sum(),
                pools.iter().map(|p| p.capacity).sum(),
                pools.iter().map(|p| p.waits).sum(),
            );
        }
    }

    /// Each key's readiness (device there, same public key; no PIN spent), updating the
    /// `dfns_signer_key_ready` gauge: a key with several devices is ready while one of them
    /// is. Runs the checks on blocking threads.
    async fn readiness(&self) -> Readiness {
        // One round at a time; a probe that waited for a round in progress takes its answer.
        let mut last = self.last_readiness.lock().await;
        if let Some((at, checks)) = last.as_ref() {
            if at.elapsed() < READINESS_REUSE {
                return checks.clone();
            }
        }
        let checks = self.check_keys().await;
        *last = Some((std::time::Instant::now(), checks.clone()));
        checks
    }

    async fn check_keys(&self) -> Readiness {
        let mut checks = Vec::new();
        for (name, devices) in &self.signers {
            let mut problems = Vec::new();
            for (i, signer) in devices.iter().enumerate() {
                let backend = signer.backend().clone();
                let result = tokio::task::spawn_blocking(move || backend.check_ready())
                    .await
                    .map_err(|_| "the check stopped unexpectedly".to_owned())
                    .and_then(|r| r.map_err(|e| e.to_string()));
                if let Err(why) = result {
                    problems.push(if devices.len() > 1 {
                        format!("device {}: {why}", i + 1)
                    } else {
                        why
                    });
                }
            }
            let ready = problems.len() < devices.len();
            self.metrics.key_ready(name, ready);
            checks.push((
                name.clone(),
                if ready {
                    Ok(())
                } else {
                    Err(problems.join("; "))
                },
            ));
        }
        checks.sort_by(|a, b| a.0.cmp(&b.0));
        checks
    }
}

fn client_states(config: &ServiceConfig, old: Option<&Clients>) -> Vec<Arc<ClientState>> {
    config
        .clients
        .iter()
        .map(|c| {
            // A client whose limit did not change keeps its bucket across a reload.
            let kept = old.and_then(|old| {
                old.iter()
                    .find(|o| {
                        o.config.name == c.name && o.config.policy.rate_limit == c.policy.rate_limit
                    })
                    .and_then(|o| o.limiter.as_ref())
                    .map(|l| Mutex::new(l.lock().unwrap_or_else(|p| p.into_inner()).clone()))
            });
            Arc::new(ClientState {
                limiter: kept
                    .or_else(|| c.policy.rate_limit.map(|l| Mutex::new(RateLimiter::new(l)))),
                config: c.clone(),
            })
        })
        .collect()
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
            let mut devices = Vec::new();
            for (i, device) in key.devices.iter().enumerate() {
                let opened = KeyUri::parse(&device.key)
                    .and_then(|uri| crate::open(&uri))
                    .map_err(|e| ServiceError::Key {
                        name: if key.devices.len() > 1 {
                            format!("{} (device {})", key.name, i + 1)
                        } else {
                            key.name.clone()
                        },
                        source: e.into(),
                    })?;
                devices.push(CredentialSigner::new(device.credential_id.clone(), opened));
            }
            signers.insert(key.name.clone(), devices);
        }
        Service::with_signers(config, signers)
    }

    /// A service whose keys the caller opened (tests, or a custody backend embedding the
    /// service): per `[[keys]]` name, its devices' signers in failover order.
    pub fn with_signers(
        config: ServiceConfig,
        signers: HashMap<String, Vec<CredentialSigner>>,
    ) -> Result<Service, ServiceError> {
        for key in &config.keys {
            if signers.get(&key.name).is_none_or(Vec::is_empty) {
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
        let clients = Arc::new(client_states(&config, None));
        let audit = match &config.audit_log {
            Some(path) => Some(AuditLog::open(
                path,
                AuditOptions::new(config.instance.clone()).rotate_bytes(config.audit_rotate_bytes),
            )?),
            None => None,
        };
        let metrics = ServiceMetrics::new(&config.instance);
        Ok(Service {
            shared: Arc::new(Shared {
                config,
                approval,
                clients: RwLock::new(clients),
                signers,
                http,
                dfns,
                audit,
                metrics,
                draining: std::sync::atomic::AtomicBool::new(false),
                last_readiness: tokio::sync::Mutex::new(None),
            }),
        })
    }

    /// Whether approvals hold only on this instance (no `approval_key` configured).
    pub fn approval_key_is_ephemeral(&self) -> bool {
        self.shared.approval.ephemeral
    }

    /// Whether decisions are written to an audit log.
    pub fn has_audit_log(&self) -> bool {
        self.shared.audit.is_some()
    }

    /// Checks every key once, as `/readyz` does (device there, same public key, no PIN
    /// spent): each key's name and what is wrong with it, if anything.
    pub async fn check(&self) -> Vec<(String, Result<(), String>)> {
        self.shared.check_keys().await
    }

    /// Binds the configured listeners and starts serving on the current tokio runtime.
    pub async fn bind(self) -> Result<RunningService, ServiceError> {
        server::bind(self.shared).await
    }
}

/// Replaces the clients and their policies with those of `config` (SIGHUP). Keys, listeners
/// and the upstream stay as started; a client that names a key not open is refused, and the
/// clients in force stay.
pub(crate) fn reload(shared: &Shared, config: &ServiceConfig) -> Result<Vec<String>, ServiceError> {
    for client in &config.clients {
        for key in &client.keys {
            if !shared.signers.contains_key(key) {
                return Err(ServiceError::ReloadNeedsRestart {
                    client: client.name.clone(),
                    key: key.clone(),
                });
            }
        }
    }
    let mut clients = shared.clients.write().unwrap_or_else(|p| p.into_inner());
    let next = Arc::new(client_states(config, Some(&clients)));
    *clients = next;
    Ok(config.clients.iter().map(|c| c.name.clone()).collect())
}
