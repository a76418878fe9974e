//! Errors, one enum per layer, joined in [`Error`].
//!
//! Every message names the thing that failed and, where there is one, the fix. None carries a
//! secret: PINs, auth tokens and private keys never reach an error (a test prints every variant
//! to check the wording and the redaction).

use std::fmt;

/// What went wrong with a key or the device holding it (the backend layer).
///
/// Device faults carry the device's own words in `reason`; cryptographic failures stay opaque.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// A key URI could not be understood.
    #[error("invalid key URI `{uri}`: {reason}")]
    InvalidUri {
        /// The URI as given (key URIs never hold a PIN: `pin-value` is refused).
        uri: String,
        /// What is wrong and what is expected instead.
        reason: String,
    },
    /// A key file could not be read or parsed.
    #[error("cannot load key {what}: {reason}")]
    KeyLoad {
        /// Which key (a path or a description, never the key itself).
        what: String,
        /// Why, and what formats are accepted.
        reason: String,
    },
    /// The key's algorithm or size is not one Dfns accepts for Key credentials.
    #[error("unsupported key: {0}")]
    UnsupportedKey(String),
    /// A PIN could not be obtained from its source.
    #[error("cannot read the PIN from {source_name}: {reason}")]
    PinSource {
        /// The PIN source (`env:NAME`, `file:PATH`, `prompt`), never the PIN.
        source_name: String,
        /// Why.
        reason: String,
    },
    /// The device rejected the PIN. It is never tried again automatically.
    #[error("{device}: PIN rejected ({}); not retrying — check the PIN before trying again", tries_left_text(*.tries_left))]
    PinIncorrect {
        /// Which device or token.
        device: String,
        /// Tries left before the PIN is blocked, when the device tells.
        tries_left: Option<u32>,
    },
    /// The PIN is blocked: no try is left.
    #[error("{device}: PIN is blocked (no tries left); unblock it with the PUK or the security officer PIN")]
    PinBlocked {
        /// Which device or token.
        device: String,
    },
    /// Only one PIN try is left and the caller did not allow spending it.
    #[error("{device}: only one PIN try is left; refusing to spend it (allow it explicitly if you are sure of the PIN)")]
    LastPinTry {
        /// Which device or token.
        device: String,
    },
    /// No device or token matches what was asked for.
    #[error("{wanted} not found (found: {})", list_or_none(.found))]
    DeviceNotFound {
        /// What was looked for (`token "custody"`, `YubiKey serial 123`).
        wanted: String,
        /// What is there instead.
        found: Vec<String>,
    },
    /// Several devices match and none was named.
    #[error("several devices match ({}); name one (for a YubiKey: `serial=`)", .found.join(", "))]
    AmbiguousDevice {
        /// The candidates.
        found: Vec<String>,
    },
    /// No key matches on the device.
    #[error("key {wanted} not found on {device} (found: {})", list_or_none(.found))]
    KeyNotFound {
        /// The key looked for (label, id, slot).
        wanted: String,
        /// The device searched.
        device: String,
        /// What keys are there instead.
        found: Vec<String>,
    },
    /// The key is not protected as a credential key must be (extractable, not sensitive).
    #[error("refusing to use key {key}: {reason}")]
    UnsafeKey {
        /// Which key.
        key: String,
        /// What is wrong with it and how to allow it anyway.
        reason: String,
    },
    /// The device did not get the user's touch in time.
    #[error("{device}: timed out waiting for touch after {seconds} s; run again and touch the key when it blinks")]
    TouchTimeout {
        /// Which device.
        device: String,
        /// How long we waited.
        seconds: u64,
    },
    /// The device or its driver library could not be reached or failed.
    #[error("{device}: {operation} failed: {reason}")]
    Device {
        /// Which device, token or module.
        device: String,
        /// What we were doing.
        operation: String,
        /// What the device or driver said, and what to do when known.
        reason: String,
        /// The driver's own error (`cryptoki`'s, `yubikey`'s), when there is one, for callers
        /// that inspect it; its text is already in `reason`.
        #[source]
        source: Option<DeviceFault>,
    },
    /// A signature could not be produced or checked (details deliberately opaque).
    #[error("cryptographic check failed: {0}")]
    Crypto(String),
    /// Key generation was asked for a slot that already holds a key, without `force`.
    #[error("{device}: slot {slot} already holds a key; generating would destroy it (pass `force` / `--force` to overwrite)")]
    SlotOccupied {
        /// Which device.
        device: String,
        /// The slot (`9a`, `82`…).
        slot: String,
    },
}

/// What a JSON decoding error says, without the server's own strings: serde's messages quote
/// the offending value (`invalid type: string "…"`), which may be anything a hostile or broken
/// server put there (a token, terminal escape codes). Field names from our own schema are kept.
pub(crate) fn json_error_summary(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let text = e.to_string();
    let what = match e.classify() {
        Category::Io => "the body could not be read".to_owned(),
        Category::Syntax => "the body is not valid JSON".to_owned(),
        Category::Eof => "the body ends early (truncated JSON)".to_owned(),
        Category::Data => match text
            .split_once(" at line ")
            .map_or(text.as_str(), |(m, _)| m)
        {
            m if m.starts_with("missing field `") => sanitize_text(m, 80),
            _ => "a field has the wrong type or value".to_owned(),
        },
    };
    format!("{what} (line {}, column {})", e.line(), e.column())
}

/// Server-supplied text made safe for a terminal or a log line: control characters (escape
/// sequences, newlines that would forge log lines) replaced by spaces, and at most `max`
/// characters kept.
pub(crate) fn sanitize_text(text: &str, max: usize) -> String {
    let mut out: String = text
        .chars()
        .take(max)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().nth(max).is_some() {
        out.push('…');
    }
    out
}

/// A device driver's own error, kept as the [`BackendError::Device`] source.
pub type DeviceFault = Box<dyn std::error::Error + Send + Sync + 'static>;

fn tries_left_text(tries: Option<u32>) -> String {
    match tries {
        Some(1) => "1 try left".to_owned(),
        Some(n) => format!("{n} tries left"),
        None => "tries left unknown".to_owned(),
    }
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}

/// The Dfns protocol was not followed by the data at hand (the protocol layer).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// A challenge or other server message could not be parsed.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// Which message (`/auth/action/init response`, `challenge`).
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The server did not list our credential among those allowed to answer the challenge.
    #[error("credential `{cred_id}` is not allowed to sign this challenge (allowed credentials: {}); check the credential id, or register this key first", list_or_none(.allowed))]
    CredentialNotAllowed {
        /// Our credential id.
        cred_id: String,
        /// The Key credential ids the server allows.
        allowed: Vec<String>,
    },
    /// A request body could not be serialized.
    #[error("cannot serialize the request body: {0}")]
    Body(String),
    /// A path is not a valid API path.
    #[error("invalid API path `{path}`: {reason}")]
    InvalidPath {
        /// The path given.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

/// An error body returned by the Dfns API.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// The server's message (or the start of a non-JSON body).
    pub message: String,
    /// The server's error id, when given.
    pub id: Option<String>,
    /// The server's `details`, when given.
    pub details: Option<serde_json::Value>,
    /// The `Retry-After` delay the server asked for (429, 503), when given in seconds.
    pub retry_after: Option<std::time::Duration>,
}

impl ApiError {
    /// An error answer with a status and a message (for retry policies' and callers' tests; the
    /// client builds these from the answers it gets).
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            id: None,
            details: None,
            retry_after: None,
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Dfns API answered {}: {}", self.status, self.message)?;
        if let Some(id) = &self.id {
            write!(f, " (error id {id})")?;
        }
        if let Some(hint) = status_hint(self.status) {
            write!(f, "; {hint}")?;
        }
        Ok(())
    }
}

fn status_hint(status: u16) -> Option<&'static str> {
    Some(match status {
        400 | 422 => "the request was refused as malformed: check the body and the path",
        401 => "the auth token is missing, expired or invalid: get a new one",
        403 => {
            "the caller lacks the permission, or the user action signature was refused: check \
             the token's permissions and that the signing credential is registered and active"
        }
        404 => "no such resource or endpoint: check the path and ids",
        409 => "conflict: an entity with this externalId or name exists with other content; check the externalId",
        429 => "rate limited: slow down and retry later with a fresh user action",
        500..=599 => "server error: retry later with a fresh user action",
        400..=499 => "the request was refused: check it against the Dfns API reference",
        _ => return None,
    })
}

impl std::error::Error for ApiError {}

/// What went wrong talking to the Dfns API (the client layer).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The client was configured wrongly.
    #[error("invalid client configuration: {0}")]
    Config(String),
    /// The API answered with an error (boxed: it is large, and errors travel by value).
    #[error(transparent)]
    Api(Box<ApiError>),
    /// The request never got an answer (connection refused, reset, timed out).
    #[error("cannot reach the Dfns API at {url}: {reason}")]
    Transport {
        /// The URL (never with a token: tokens travel in headers only).
        url: String,
        /// What the transport said.
        reason: String,
        /// Whether the request provably never reached the server (safe to resend).
        never_sent: bool,
    },
    /// The request timed out.
    #[error("the Dfns API did not answer {method} {path} within {seconds} s")]
    Timeout {
        /// Method.
        method: String,
        /// Path.
        path: String,
        /// The timeout.
        seconds: u64,
    },
    /// A response could not be decoded.
    #[error("unexpected response to {method} {path}: {reason}")]
    Decode {
        /// Method.
        method: String,
        /// Path.
        path: String,
        /// What was wrong.
        reason: String,
    },
    /// The endpoint needs a user action and the client has no signer.
    #[error("{method} {path} needs a user action signature, and this client has no signer: configure a key and credential id")]
    SignerRequired {
        /// Method.
        method: String,
        /// Path.
        path: String,
    },
    /// The signing task panicked or was cancelled.
    #[error("the signing task did not finish: {0}")]
    SignTask(String),
    /// The key did not sign within the sign deadline; the request was not sent.
    #[error("{key} did not sign within {seconds} s, so the request was not sent: check the device (a stuck HSM or network HSM link, a YubiKey nobody touched), or raise the sign timeout")]
    SignTimeout {
        /// The key (its description, never a secret).
        key: String,
        /// The deadline.
        seconds: u64,
    },
    /// The audit log could not record an approval, so it was not given: the signature was
    /// never sent.
    #[error("the approval could not be written to the audit log ({reason}), so it was not given and nothing was sent: check the audit log's disk and permissions")]
    AuditRefused {
        /// What the log said.
        reason: String,
    },
    /// The answer's body was larger than the client accepts.
    #[error("the answer to {method} {path} is larger than {limit} bytes and was not read: a Dfns answer is far smaller; check the base URL (a proxy or another server?), or raise max_response_bytes")]
    ResponseTooLarge {
        /// Method.
        method: String,
        /// Path.
        path: String,
        /// The cap in force.
        limit: usize,
    },
}

/// Any error of this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A key or device failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// Protocol data was malformed or refused.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// Talking to the API failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The configuration file, a profile or a token source was refused (feature `client`; its
    /// [`fix`](crate::config::ConfigError::fix) says what to do).
    #[cfg(feature = "client")]
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
}

impl From<ApiError> for ClientError {
    fn from(e: ApiError) -> Self {
        ClientError::Api(Box::new(e))
    }
}

impl From<ApiError> for Error {
    fn from(e: ApiError) -> Self {
        Error::Client(ClientError::Api(Box::new(e)))
    }
}

impl Error {
    /// The API error, when the API answered with one.
    pub fn api(&self) -> Option<&ApiError> {
        match self {
            Error::Client(ClientError::Api(e)) => Some(e),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Prints every variant: the wording is reviewed here, and none may contain a secret.
    #[test]
    fn every_variant_displays_facts_and_a_remedy() {
        let all: Vec<Error> = vec![
            BackendError::InvalidUri {
                uri: "pkcs11:x".into(),
                reason: "r".into(),
            }
            .into(),
            BackendError::KeyLoad {
                what: "file k.pem".into(),
                reason: "r".into(),
            }
            .into(),
            BackendError::UnsupportedKey("P-384".into()).into(),
            BackendError::PinSource {
                source_name: "env:HSM_PIN".into(),
                reason: "unset".into(),
            }
            .into(),
            BackendError::PinIncorrect {
                device: "token custody".into(),
                tries_left: Some(2),
            }
            .into(),
            BackendError::PinIncorrect {
                device: "token custody".into(),
                tries_left: None,
            }
            .into(),
            BackendError::PinBlocked {
                device: "YubiKey 1".into(),
            }
            .into(),
            BackendError::LastPinTry {
                device: "YubiKey 1".into(),
            }
            .into(),
            BackendError::DeviceNotFound {
                wanted: "token \"x\"".into(),
                found: vec!["a".into()],
            }
            .into(),
            BackendError::AmbiguousDevice {
                found: vec!["1".into(), "2".into()],
            }
            .into(),
            BackendError::KeyNotFound {
                wanted: "label k".into(),
                device: "t".into(),
                found: vec![],
            }
            .into(),
            BackendError::UnsafeKey {
                key: "k".into(),
                reason: "extractable".into(),
            }
            .into(),
            BackendError::TouchTimeout {
                device: "YubiKey 1".into(),
                seconds: 15,
            }
            .into(),
            BackendError::Device {
                device: "d".into(),
                operation: "sign".into(),
                reason: "r".into(),
                source: None,
            }
            .into(),
            BackendError::Crypto("bad".into()).into(),
            ProtocolError::Malformed {
                what: "challenge",
                reason: "r".into(),
            }
            .into(),
            ProtocolError::CredentialNotAllowed {
                cred_id: "c".into(),
                allowed: vec![],
            }
            .into(),
            ProtocolError::Body("b".into()).into(),
            ProtocolError::InvalidPath {
                path: "p".into(),
                reason: "r".into(),
            }
            .into(),
            ClientError::Config("c".into()).into(),
            ApiError {
                status: 429,
                message: "slow".into(),
                id: Some("e1".into()),
                details: None,
                retry_after: None,
            }
            .into(),
            ClientError::Transport {
                url: "u".into(),
                reason: "r".into(),
                never_sent: true,
            }
            .into(),
            ClientError::Timeout {
                method: "POST".into(),
                path: "/w".into(),
                seconds: 30,
            }
            .into(),
            ClientError::Decode {
                method: "POST".into(),
                path: "/w".into(),
                reason: "r".into(),
            }
            .into(),
            ClientError::SignerRequired {
                method: "POST".into(),
                path: "/w".into(),
            }
            .into(),
            ClientError::SignTask("t".into()).into(),
            ClientError::SignTimeout {
                key: "PKCS#11 key \"k\"".into(),
                seconds: 60,
            }
            .into(),
            ClientError::ResponseTooLarge {
                method: "GET".into(),
                path: "/wallets".into(),
                limit: 8,
            }
            .into(),
            ClientError::AuditRefused {
                reason: "disk full".into(),
            }
            .into(),
            BackendError::SlotOccupied {
                device: "YubiKey serial 1".into(),
                slot: "9a".into(),
            }
            .into(),
        ]
        .into_iter()
        .chain(config_errors(|| "r".to_owned()))
        .collect();
        for e in &all {
            let text = e.to_string();
            println!("{text}");
            assert!(!text.is_empty());
            let fix = what_to_do(e);
            if fix != text {
                println!("  what to do: {fix}");
            }
            assert!(!fix.is_empty(), "{text}");
        }
        assert_eq!(
            all[4].to_string(),
            "token custody: PIN rejected (2 tries left); not retrying — check the PIN before trying again"
        );
        assert!(all[20].to_string().contains("rate limited"));
        assert!(all[8].to_string().ends_with("(found: a)"));
    }

    #[test]
    fn json_errors_never_quote_server_values() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Answer {
            token: u64,
        }
        let e = serde_json::from_str::<Answer>(r#"{"token":"leaked-secret-value"}"#).unwrap_err();
        assert!(
            e.to_string().contains("leaked-secret-value"),
            "serde quotes it"
        );
        let summary = json_error_summary(&e);
        assert!(!summary.contains("leaked-secret-value"), "{summary}");
        assert!(summary.contains("wrong type"), "{summary}");
        let e = serde_json::from_str::<Answer>("{}").unwrap_err();
        assert!(json_error_summary(&e).starts_with("missing field `token`"));
        let e = serde_json::from_str::<Answer>("{\"tok").unwrap_err();
        assert!(
            json_error_summary(&e).contains("truncated"),
            "{}",
            json_error_summary(&e)
        );
        assert_eq!(sanitize_text("a\u{1b}[31mb\nc", 100), "a [31mb c");
        assert_eq!(sanitize_text("abcdef", 3), "abc…");
    }

    /// One of each configuration error, `r()` filling the free-text fields (none without the
    /// `client` feature).
    fn config_errors(r: impl Fn() -> String) -> Vec<Error> {
        #[cfg(feature = "client")]
        {
            use crate::config::{ConfigError, ConfigOrigin};
            use std::path::PathBuf;
            let p = || PathBuf::from("/home/ops/.config/dfns-signer/config.toml");
            vec![
                ConfigError::NotFound {
                    path: p(),
                    origin: ConfigOrigin::Flag,
                },
                ConfigError::Unreadable {
                    path: p(),
                    reason: r(),
                },
                ConfigError::Permissions {
                    path: p(),
                    mode: 0o644,
                },
                ConfigError::Syntax {
                    path: p(),
                    line: 3,
                    message: r(),
                },
                ConfigError::UnknownKey {
                    path: p(),
                    line: 4,
                    key: "timeout_secs".into(),
                },
                ConfigError::InlineSecret {
                    path: p(),
                    line: 5,
                    field: "profiles.prod.auth_token".into(),
                    fix: r(),
                },
                ConfigError::Invalid {
                    path: p(),
                    line: 6,
                    field: "profiles.prod.retries".into(),
                    reason: r(),
                },
                ConfigError::NoSuchProfile {
                    path: p(),
                    name: "prod".into(),
                    known: vec!["dev".into()],
                },
                ConfigError::ProfileNotChosen {
                    path: p(),
                    known: vec!["a".into(), "b".into()],
                },
                ConfigError::NoConfigFile {
                    profile: "prod".into(),
                    default_path: Some(p()),
                },
                ConfigError::TokenUnavailable {
                    source_name: "env:DFNS_AUTH_TOKEN".into(),
                    reason: r(),
                    fix: r(),
                },
                ConfigError::Incomplete {
                    given: "key",
                    given_from: "profile `prod`".into(),
                    missing: "credential_id",
                },
            ]
            .into_iter()
            .map(Error::from)
            .collect()
        }
        #[cfg(not(feature = "client"))]
        {
            let _ = r;
            Vec::new()
        }
    }

    /// Where an error says what to do: in its message, or for a configuration error in its
    /// `fix()` (the CLI prints it as a second line).
    fn what_to_do(e: &Error) -> String {
        match e {
            #[cfg(feature = "client")]
            Error::Config(c) => c.fix(),
            _ => e.to_string(),
        }
    }

    /// What each variant's message must say to do, decided here variant by variant: the match
    /// has no wildcard, so a new variant does not compile until its remedy is written down.
    /// Where the remedy comes from the device or the caller (`reason` fields), the message must
    /// carry that field.
    fn remedy(e: &Error) -> &'static str {
        match e {
            Error::Backend(b) => match b {
                BackendError::InvalidUri { .. } => "REMEDY",
                BackendError::KeyLoad { .. } => "REMEDY",
                BackendError::UnsupportedKey(_) => "REMEDY",
                BackendError::PinSource { .. } => "REMEDY",
                BackendError::PinIncorrect { .. } => "check the PIN",
                BackendError::PinBlocked { .. } => "unblock it",
                BackendError::LastPinTry { .. } => "allow it explicitly",
                BackendError::DeviceNotFound { .. } => "found:",
                BackendError::AmbiguousDevice { .. } => "name one",
                BackendError::KeyNotFound { .. } => "found:",
                BackendError::UnsafeKey { .. } => "REMEDY",
                BackendError::TouchTimeout { .. } => "touch the key",
                BackendError::Device { .. } => "REMEDY",
                BackendError::Crypto(_) => "REMEDY",
                BackendError::SlotOccupied { .. } => "--force",
            },
            Error::Protocol(p) => match p {
                ProtocolError::Malformed { .. } => "REMEDY",
                ProtocolError::CredentialNotAllowed { .. } => "register this key",
                ProtocolError::Body(_) => "REMEDY",
                ProtocolError::InvalidPath { .. } => "REMEDY",
            },
            Error::Client(c) => match c {
                ClientError::Config(_) => "REMEDY",
                ClientError::Api(api) => match api.status {
                    401 => "get a new one",
                    429 | 500..=599 => "retry later",
                    _ => "check",
                },
                ClientError::Transport { .. } => "REMEDY",
                ClientError::Timeout { .. } => "within",
                ClientError::Decode { .. } => "REMEDY",
                ClientError::SignerRequired { .. } => "configure a key",
                ClientError::SignTask(_) => "REMEDY",
                ClientError::SignTimeout { .. } => "raise the sign timeout",
                ClientError::ResponseTooLarge { .. } => "raise max_response_bytes",
                ClientError::AuditRefused { .. } => "check the audit log",
            },
            #[cfg(feature = "client")]
            Error::Config(c) => {
                use crate::config::ConfigError;
                match c {
                    ConfigError::NotFound { .. } => "create the file",
                    ConfigError::Unreadable { .. } => "may read the file",
                    ConfigError::Permissions { .. } => "chmod 600",
                    ConfigError::Syntax { .. } => "fix line 3",
                    ConfigError::UnknownKey { .. } => "remove or rename `timeout_secs`",
                    ConfigError::InlineSecret { .. } => "REMEDY",
                    ConfigError::Invalid { .. } => "correct `profiles.prod.retries` at line 6",
                    ConfigError::NoSuchProfile { .. } => "add [profiles.prod]",
                    ConfigError::ProfileNotChosen { .. } => "--profile",
                    ConfigError::NoConfigFile { .. } => "--config",
                    ConfigError::TokenUnavailable { .. } => "REMEDY",
                    ConfigError::Incomplete { .. } => "DFNS_CRED_ID",
                }
            }
        }
    }

    #[test]
    fn every_variant_says_what_to_do_and_never_shows_a_planted_secret() {
        // Free-text fields carry the remedy the code that builds the error wrote.
        let r = || "REMEDY".to_owned();
        let all: Vec<Error> = vec![
            BackendError::InvalidUri {
                uri: "pkcs11:x".into(),
                reason: r(),
            }
            .into(),
            BackendError::KeyLoad {
                what: "k".into(),
                reason: r(),
            }
            .into(),
            BackendError::UnsupportedKey(r()).into(),
            BackendError::PinSource {
                source_name: "env:P".into(),
                reason: r(),
            }
            .into(),
            BackendError::PinIncorrect {
                device: "d".into(),
                tries_left: Some(2),
            }
            .into(),
            BackendError::PinBlocked { device: "d".into() }.into(),
            BackendError::LastPinTry { device: "d".into() }.into(),
            BackendError::DeviceNotFound {
                wanted: "w".into(),
                found: vec![],
            }
            .into(),
            BackendError::AmbiguousDevice {
                found: vec!["a".into(), "b".into()],
            }
            .into(),
            BackendError::KeyNotFound {
                wanted: "w".into(),
                device: "d".into(),
                found: vec![],
            }
            .into(),
            BackendError::UnsafeKey {
                key: "k".into(),
                reason: r(),
            }
            .into(),
            BackendError::TouchTimeout {
                device: "d".into(),
                seconds: 15,
            }
            .into(),
            BackendError::Device {
                device: "d".into(),
                operation: "o".into(),
                reason: r(),
                source: None,
            }
            .into(),
            BackendError::Crypto(r()).into(),
            BackendError::SlotOccupied {
                device: "d".into(),
                slot: "9a".into(),
            }
            .into(),
            ProtocolError::Malformed {
                what: "challenge",
                reason: r(),
            }
            .into(),
            ProtocolError::CredentialNotAllowed {
                cred_id: "c".into(),
                allowed: vec![],
            }
            .into(),
            ProtocolError::Body(r()).into(),
            ProtocolError::InvalidPath {
                path: "p".into(),
                reason: r(),
            }
            .into(),
            ClientError::Config(r()).into(),
            ApiError::new(400, "bad").into(),
            ApiError::new(401, "who").into(),
            ApiError::new(403, "no").into(),
            ApiError::new(404, "where").into(),
            ApiError::new(409, "again").into(),
            ApiError::new(418, "teapot").into(),
            ApiError::new(429, "slow down").into(),
            ApiError::new(502, "gateway").into(),
            ClientError::Transport {
                url: "u".into(),
                reason: r(),
                never_sent: false,
            }
            .into(),
            ClientError::Timeout {
                method: "GET".into(),
                path: "/w".into(),
                seconds: 30,
            }
            .into(),
            ClientError::Decode {
                method: "GET".into(),
                path: "/w".into(),
                reason: r(),
            }
            .into(),
            ClientError::SignerRequired {
                method: "POST".into(),
                path: "/w".into(),
            }
            .into(),
            ClientError::SignTask(r()).into(),
            ClientError::SignTimeout {
                key: "k".into(),
                seconds: 60,
            }
            .into(),
            ClientError::ResponseTooLarge {
                method: "GET".into(),
                path: "/w".into(),
                limit: 8,
            }
            .into(),
            ClientError::AuditRefused { reason: r() }.into(),
        ]
        .into_iter()
        .chain(config_errors(r))
        .collect();
        for e in &all {
            let text = what_to_do(e);
            assert!(text.contains(remedy(e)), "{text:?} does not say what to do");
        }

        // Errors the crate builds from inputs that carry a secret never show it.
        const PLANTED: &str = "PLANTED-secret-4711";
        let mut built: Vec<String> = Vec::new();
        let e = crate::backend::KeyUri::parse(&format!("pkcs11:object=k?pin-value={PLANTED}"))
            .unwrap_err();
        built.push(format!("{e} {e:?}"));
        let e = crate::backend::KeyUri::parse(&format!("piv:slot=9a?pin={PLANTED}")).unwrap_err();
        built.push(format!("{e} {e:?}"));
        let e = crate::backend::PinSource::parse(PLANTED).unwrap_err();
        built.push(format!("{e} {e:?}"));
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Answer {
            n: u32,
        }
        let e = serde_json::from_str::<Answer>(&format!(r#"{{"n":"{PLANTED}"}}"#)).unwrap_err();
        built.push(json_error_summary(&e));
        #[cfg(feature = "client")]
        {
            use crate::config::{Config, TokenSource};
            let path = std::path::Path::new("c.toml");
            for text in [
                format!("[profiles.p]\nauth_token = \"{PLANTED}\""),
                format!("[profiles.p]\nkey = \"pkcs11:token=t?pin-value={PLANTED}\""),
                format!("[profiles.p]\nkey = \"piv:slot=9a?pin-source={PLANTED}\""),
                format!("[profiles.p]\npin = \"{PLANTED}\""),
                format!("[profiles.p]\ntimeout_seconds = \"{PLANTED}\""),
            ] {
                let e = Config::from_toml(&text, path).unwrap_err();
                built.push(format!("{e} {e:?} {}", e.fix()));
            }
            let e = TokenSource::parse(PLANTED).unwrap_err();
            built.push(format!("{e} {e:?} {}", e.fix()));
        }
        for text in built {
            assert!(!text.contains(PLANTED), "{text}");
        }
    }
}
