//! The simulator's memory: one organisation, its users, credentials, tokens, challenges, user
//! actions, wallets and signatures. Everything lives behind one mutex and is lost on shutdown.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::errors::ApiError;
use super::tokens::{self, Purpose, Subject};
use super::util::{dfns_id, now_iso};
use super::verify::CredentialKey;

/// Default lifetime of challenges and user actions (Dfns' is unknown; 5 minutes is generous).
pub(crate) const DEFAULT_CHALLENGE_TTL: Duration = Duration::from_secs(300);

/// A user or service account.
#[derive(Debug, Clone)]
pub(crate) struct User {
    pub(crate) id: String,
    pub(crate) username: String,
    /// `CustomerEmployee` or `EndUser`.
    pub(crate) kind: &'static str,
    pub(crate) is_service_account: bool,
    pub(crate) active: bool,
    pub(crate) date_created: String,
}

/// A registered `Key` credential.
#[derive(Debug, Clone)]
pub(crate) struct Credential {
    pub(crate) cred_id: String,
    pub(crate) uuid: String,
    pub(crate) user_id: String,
    pub(crate) name: String,
    pub(crate) public_key_pem: String,
    pub(crate) key: CredentialKey,
    pub(crate) active: bool,
    pub(crate) date_created: String,
}

/// A bearer token the simulator issued.
#[derive(Debug, Clone)]
pub(crate) struct AuthToken {
    pub(crate) token_id: String,
    pub(crate) user_id: String,
    /// `Service`, `Pat`, `Temp`.
    pub(crate) kind: &'static str,
    pub(crate) active: bool,
    pub(crate) name: String,
    pub(crate) cred_id: Option<String>,
    pub(crate) date_created: String,
    /// Past this, the token is refused (`daysValid`, `secondsValid`, login lifetimes).
    pub(crate) expires: Instant,
}

/// What a challenge was issued for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ChallengeKind {
    /// A user action bound to this request.
    Action {
        method: String,
        path: String,
        payload: String,
    },
    /// A login for the user.
    Login,
    /// Registration of a new credential (`Key`), for `POST /auth/credentials` (which also needs
    /// a user action signed by an existing credential).
    Credential,
    /// Registration of a new credential authorised by a one-minute code, for
    /// `POST /auth/credentials/code/verify` (no auth token, no user action: the code is the proof).
    CodeCredential,
}

/// An issued challenge, single-use.
#[derive(Debug, Clone)]
pub(crate) struct Challenge {
    pub(crate) challenge: String,
    pub(crate) user_id: String,
    pub(crate) kind: ChallengeKind,
    pub(crate) expires: Instant,
    pub(crate) used: bool,
}

/// An issued `X-DFNS-USERACTION` token and what it allows.
#[derive(Debug, Clone)]
pub(crate) struct UserAction {
    pub(crate) user_id: String,
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) payload: String,
    pub(crate) expires: Instant,
    pub(crate) used: bool,
}

/// A wallet and its in-memory signing key.
#[derive(Debug, Clone)]
pub(crate) struct Wallet {
    pub(crate) entity: Value,
    /// The id of its key in [`Inner::keys`].
    pub(crate) key_id: String,
    /// The request body that created it, for `externalId` idempotency.
    pub(crate) request: Value,
}

/// A key of the Keys API (every wallet has one): the entity and the real private key.
pub(crate) struct KeyRecord {
    pub(crate) entity: Value,
    pub(crate) key: WalletKey,
    /// The request body that created it, for `externalId` idempotency (`Null` for a wallet's).
    pub(crate) request: Value,
}

/// A wallet's key: real keys, so signatures verify.
#[derive(Clone)]
pub(crate) enum WalletKey {
    Secp256k1(k256::ecdsa::SigningKey),
    Ed25519(ed25519_dalek::SigningKey),
}

impl std::fmt::Debug for WalletKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WalletKey::Secp256k1(_) => "WalletKey::Secp256k1(..)",
            WalletKey::Ed25519(_) => "WalletKey::Ed25519(..)",
        })
    }
}

/// A signature request and its result.
#[derive(Debug, Clone)]
pub(crate) struct SignatureRecord {
    pub(crate) entity: Value,
    pub(crate) key_id: String,
    /// Set when it was asked for through `/wallets/{id}/signatures`.
    pub(crate) wallet_id: Option<String>,
    pub(crate) request: Value,
}

/// A one-minute code to register a credential without an existing one at hand.
#[derive(Debug, Clone)]
pub(crate) struct CredentialCode {
    pub(crate) user_id: String,
    pub(crate) expires: Instant,
}

/// Counters for tests and the demo. Requests are keyed `"METHOD /raw/path"` (no query).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Requests received, by `"METHOD /path"`.
    pub requests: BTreeMap<String, u64>,
    /// Responses sent, by HTTP status (dropped connections are not counted here).
    pub statuses: BTreeMap<u16, u64>,
    /// User-action tokens issued by `POST /auth/action`.
    pub user_actions_issued: u64,
    /// User-action tokens accepted on a request (each at most once).
    pub user_actions_used: u64,
    /// Refusals by `"STATUS message"` (e.g. `"400 user action has already been used"`).
    pub rejections: BTreeMap<String, u64>,
    /// Faults injected (429, 500, 502, 202, drops).
    pub faults_injected: u64,
    /// Connections closed without an answer.
    pub dropped: u64,
    /// Connections accepted: a client that keeps its connections alive opens one for any number
    /// of sequential requests.
    pub connections: u64,
    /// Entities created by requests (wallets, keys, signatures): the side effects a client must
    /// never repeat. A request replayed with the same `externalId` adds none.
    pub side_effects: u64,
}

/// Challenges open at once (issued, neither answered nor expired).
pub(crate) const MAX_OPEN_CHALLENGES: usize = 10_000;

/// Everything the simulator knows. Deliberately not `Debug`: it holds live tokens.
pub(crate) struct Inner {
    pub(crate) org_id: String,
    /// The root service account's user id: it may do everything, and no one else may
    /// deactivate it.
    pub(crate) root_user_id: String,
    pub(crate) challenge_ttl: Duration,
    pub(crate) users: HashMap<String, User>,
    /// Credentials by credential id.
    pub(crate) credentials: BTreeMap<String, Credential>,
    /// Bearer tokens by their full string.
    pub(crate) tokens: HashMap<String, AuthToken>,
    /// Challenges by `challengeIdentifier`.
    pub(crate) challenges: HashMap<String, Challenge>,
    /// User actions by token string.
    pub(crate) user_actions: HashMap<String, UserAction>,
    pub(crate) wallets: Vec<Wallet>,
    pub(crate) keys: Vec<KeyRecord>,
    pub(crate) signatures: Vec<SignatureRecord>,
    pub(crate) webhooks: BTreeMap<String, Value>,
    /// Events sent (or tried) to each webhook, newest last, at most `webhooks::EVENTS_KEPT`.
    pub(crate) webhook_events: BTreeMap<String, std::collections::VecDeque<Value>>,
    /// Deliveries the last request produced; the server sends them once the state is unlocked.
    pub(crate) outbox: Vec<super::webhooks::Delivery>,
    /// Permissions by id, and their assignments by id (`permissions.rs`).
    pub(crate) permissions: BTreeMap<String, Value>,
    pub(crate) assignments: BTreeMap<String, Value>,
    /// User and token ids that may do everything (the root, and what it made without a
    /// `permissionId`).
    pub(crate) unrestricted: std::collections::HashSet<String>,
    /// Token ids (PATs made with a `permissionId`) limited to their own assignments.
    pub(crate) token_scoped: std::collections::HashSet<String>,
    pub(crate) credential_codes: HashMap<String, CredentialCode>,
    pub(crate) stats: Stats,
}

/// The caller of a request, from its bearer token.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub(crate) user_id: String,
    pub(crate) token_id: String,
}

impl Inner {
    /// Entries held, over every map and list (see `Simulator::state_entries`).
    pub(crate) fn entries(&self) -> usize {
        self.users.len()
            + self.credentials.len()
            + self.tokens.len()
            + self.challenges.len()
            + self.user_actions.len()
            + self.wallets.len()
            + self.keys.len()
            + self.signatures.len()
            + self.webhooks.len()
            + self.webhook_events.values().map(|e| e.len()).sum::<usize>()
            + self.credential_codes.len()
            + self.permissions.len()
            + self.assignments.len()
            + self.unrestricted.len()
            + self.token_scoped.len()
            + self.stats.requests.len()
            + self.stats.statuses.len()
            + self.stats.rejections.len()
    }

    pub(crate) fn new(challenge_ttl: Duration) -> Self {
        Inner {
            org_id: dfns_id("or"),
            root_user_id: String::new(),
            challenge_ttl,
            users: HashMap::new(),
            credentials: BTreeMap::new(),
            tokens: HashMap::new(),
            challenges: HashMap::new(),
            user_actions: HashMap::new(),
            wallets: Vec::new(),
            keys: Vec::new(),
            signatures: Vec::new(),
            webhooks: BTreeMap::new(),
            webhook_events: BTreeMap::new(),
            outbox: Vec::new(),
            permissions: BTreeMap::new(),
            assignments: BTreeMap::new(),
            unrestricted: std::collections::HashSet::new(),
            token_scoped: std::collections::HashSet::new(),
            credential_codes: HashMap::new(),
            stats: Stats::default(),
        }
    }

    /// Adds a user and returns its id.
    pub(crate) fn add_user(
        &mut self,
        username: &str,
        kind: &'static str,
        is_service_account: bool,
    ) -> String {
        let id = dfns_id("us");
        self.users.insert(
            id.clone(),
            User {
                id: id.clone(),
                username: username.to_owned(),
                kind,
                is_service_account,
                active: true,
                date_created: now_iso(),
            },
        );
        id
    }

    /// Registers a credential for `user_id`.
    pub(crate) fn add_credential(
        &mut self,
        user_id: &str,
        cred_id: &str,
        name: &str,
        public_key_pem: &str,
        key: CredentialKey,
    ) -> &Credential {
        let credential = Credential {
            cred_id: cred_id.to_owned(),
            uuid: dfns_id("cr"),
            user_id: user_id.to_owned(),
            name: name.to_owned(),
            public_key_pem: public_key_pem.to_owned(),
            key,
            active: true,
            date_created: now_iso(),
        };
        self.credentials.insert(cred_id.to_owned(), credential);
        &self.credentials[cred_id]
    }

    /// Issues a bearer token for `user_id`; returns the token string.
    pub(crate) fn issue_token(
        &mut self,
        user_id: &str,
        kind: &'static str,
        name: &str,
        cred_id: Option<&str>,
        lifetime_secs: u64,
    ) -> String {
        let token_id = dfns_id("to");
        let token = tokens::mint(
            &Subject {
                org_id: &self.org_id,
                user_id,
                token_id: &token_id,
                token_kind: kind,
                lifetime_secs,
            },
            Purpose::Auth,
        );
        self.tokens.insert(
            token.clone(),
            AuthToken {
                token_id,
                user_id: user_id.to_owned(),
                kind,
                active: true,
                name: name.to_owned(),
                cred_id: cred_id.map(str::to_owned),
                date_created: now_iso(),
                expires: Instant::now() + Duration::from_secs(lifetime_secs),
            },
        );
        token
    }

    /// Issues a challenge for `user_id`; returns `(challenge, challengeIdentifier)`. At
    /// [`MAX_OPEN_CHALLENGES`] spent and expired ones are forgotten first; if all are still
    /// open, 429: `/auth/login/init` needs no token, so nothing else would bound this map.
    pub(crate) fn issue_challenge(
        &mut self,
        user_id: &str,
        kind: ChallengeKind,
    ) -> Result<(String, String), ApiError> {
        if self.challenges.len() >= MAX_OPEN_CHALLENGES {
            let now = Instant::now();
            self.challenges.retain(|_, c| !c.used && c.expires > now);
            if self.challenges.len() >= MAX_OPEN_CHALLENGES {
                return Err(ApiError::new(
                    axum::http::StatusCode::TOO_MANY_REQUESTS,
                    "Too Many Requests",
                )
                .because("too many open challenges: answer them or let them expire"));
            }
        }
        let purpose = match kind {
            ChallengeKind::Action { .. } => Purpose::ActionChallenge,
            ChallengeKind::Login => Purpose::LoginChallenge,
            ChallengeKind::Credential | ChallengeKind::CodeCredential => {
                Purpose::CredentialChallenge
            }
        };
        self.prune();
        let identifier = self.mint_for(user_id, purpose);
        let challenge = tokens::challenge();
        self.challenges.insert(
            identifier.clone(),
            Challenge {
                challenge: challenge.clone(),
                user_id: user_id.to_owned(),
                kind,
                expires: Instant::now() + self.challenge_ttl,
                used: false,
            },
        );
        Ok((challenge, identifier))
    }

    /// Forgets expired challenges and user actions once there are many, so a long-running
    /// simulator (the demo, a CI service) does not grow without bound. A forgotten one is
    /// refused as unknown, which is still a refusal.
    fn prune(&mut self) {
        const KEEP: usize = 10_000;
        if self.challenges.len() + self.user_actions.len() > KEEP {
            let now = Instant::now();
            self.challenges.retain(|_, c| c.expires > now);
            self.user_actions.retain(|_, a| a.expires > now);
        }
    }

    /// Takes a challenge for one attempt: it is spent whatever the attempt's outcome.
    pub(crate) fn take_challenge(
        &mut self,
        identifier: &str,
    ) -> Result<Challenge, super::errors::ApiError> {
        use super::errors::ApiError;
        let challenge = self
            .challenges
            .get_mut(identifier)
            .ok_or_else(|| ApiError::challenge_invalid("unknown challengeIdentifier"))?;
        if challenge.used {
            return Err(ApiError::challenge_invalid(
                "this challenge was already used",
            ));
        }
        challenge.used = true;
        if challenge.expires < Instant::now() {
            return Err(ApiError::challenge_invalid("this challenge has expired"));
        }
        Ok(challenge.clone())
    }

    /// A JWT-shaped string for `user_id` (challenge identifiers, user actions).
    pub(crate) fn mint_for(&self, user_id: &str, purpose: Purpose) -> String {
        tokens::mint(
            &Subject {
                org_id: &self.org_id,
                user_id,
                token_id: &dfns_id("to"),
                token_kind: "Service",
                lifetime_secs: self.challenge_ttl.as_secs(),
            },
            purpose,
        )
    }

    /// The user's active credentials, in a stable order.
    pub(crate) fn active_credentials(&self, user_id: &str) -> Vec<&Credential> {
        self.credentials
            .values()
            .filter(|c| c.user_id == user_id && c.active)
            .collect()
    }

    /// Counts a refusal.
    pub(crate) fn reject(&mut self, label: String) {
        *self.stats.rejections.entry(label).or_default() += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `/auth/login/init` needs no token, so open challenges are capped: at the cap, spent and
    /// expired ones are forgotten, and only when every one is still open is the next refused.
    #[test]
    fn open_challenges_are_capped_and_spent_ones_make_room() {
        let mut inner = Inner::new(Duration::from_secs(300));
        let user = inner.add_user("u", "CustomerEmployee", true);
        let ids: Vec<String> = (0..MAX_OPEN_CHALLENGES)
            .map(|_| {
                inner
                    .issue_challenge(&user, ChallengeKind::Login)
                    .unwrap()
                    .1
            })
            .collect();
        let refused = inner
            .issue_challenge(&user, ChallengeKind::Login)
            .unwrap_err();
        assert_eq!(refused.status.as_u16(), 429);
        for id in &ids[..10] {
            inner.challenges.get_mut(id).unwrap().used = true;
        }
        inner.challenges.get_mut(&ids[10]).unwrap().expires = Instant::now();
        inner.issue_challenge(&user, ChallengeKind::Login).unwrap();
        assert_eq!(inner.challenges.len(), MAX_OPEN_CHALLENGES - 11 + 1);
    }
}
