//! Where a command's connection comes from: the flags shared by the commands that talk to Dfns,
//! resolved against the environment and the configuration file's profile by the library
//! (`dfns_signer::config`; flags > environment > profile > defaults), and the client built
//! from them.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use dfns_signer::config::{Overrides, Settings};
use dfns_signer::{CredentialSigner, DfnsClient, KeyBackend, KeyUri};
use secrecy::SecretString;

use super::failure::Failure;

/// Which configuration file and profile (global: every command takes them).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ProfileArgs {
    /// Configuration file (default: `$DFNS_SIGNER_CONFIG`, else
    /// `$XDG_CONFIG_HOME/dfns-signer/config.toml`).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Profile of the configuration file (default: `$DFNS_SIGNER_PROFILE`, else the file's
    /// `default_profile`).
    #[arg(long, global = true, value_name = "NAME")]
    pub profile: Option<String>,
}

/// The API and the identity a command talks to Dfns with.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ApiArgs {
    /// API base URL (else `$DFNS_API_URL`, the profile's `base_url`, then https://api.dfns.io).
    #[arg(long, value_name = "URL")]
    pub base_url: Option<String>,
    /// Auth token. Prefer `$DFNS_AUTH_TOKEN` or the profile's `auth_token` source: arguments
    /// show in `ps`.
    #[arg(long, value_name = "TOKEN", hide = true)]
    pub token: Option<String>,
    /// Seconds allowed for each HTTP exchange (else the profile's `timeout_seconds`, then 30).
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u64>,
}

/// The key that signs user actions, and its credential id (else `$DFNS_KEY`/`$DFNS_CRED_ID`,
/// then the profile's `key`/`credential_id`).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct SignerArgs {
    /// The credential key: `file:/path/key.pem`,
    /// `pkcs11:token=…;object=…?module-path=…&pin-source=env:PIN` or
    /// `piv:slot=9a?serial=…&pin-source=prompt`.
    #[arg(long, value_name = "URI")]
    pub key: Option<String>,
    /// The Dfns credential id registered for this key.
    // Credential ids are base64url: one may start with `-`.
    #[arg(long, value_name = "ID", allow_hyphen_values = true)]
    pub cred_id: Option<String>,
}

/// For commands whose `--key` is a new key (`credential register`, `service-account create`):
/// the existing credential that signs their user action.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ExistingSignerArgs {
    /// The existing credential's key that signs the user action (else DFNS_KEY, the profile's
    /// key).
    #[arg(long = "signer-key", value_name = "URI")]
    pub signer_key: Option<String>,
    /// The existing credential's id (else DFNS_CRED_ID, the profile's credential_id).
    // Credential ids are base64url: one may start with `-`.
    #[arg(long = "signer-cred-id", value_name = "ID", allow_hyphen_values = true)]
    pub signer_cred_id: Option<String>,
}

impl ExistingSignerArgs {
    /// As the signer flags of the other commands.
    pub fn as_signer_args(&self) -> SignerArgs {
        SignerArgs {
            key: self.signer_key.clone(),
            cred_id: self.signer_cred_id.clone(),
        }
    }
}

/// Resolves the settings for a command: its flags over the environment over the profile.
pub fn settings(
    profile: &ProfileArgs,
    api: &ApiArgs,
    signer: Option<&SignerArgs>,
) -> Result<Settings, Failure> {
    let flags = Overrides {
        base_url: api.base_url.clone(),
        auth_token: api.token.clone().map(SecretString::from),
        credential_id: signer.and_then(|s| s.cred_id.clone()),
        key: signer.and_then(|s| s.key.clone()),
        timeout: api.timeout.map(Duration::from_secs),
    };
    let env = |name: &str| std::env::var(name).ok();
    Ok(Settings::load(
        profile.config.as_deref(),
        profile.profile.as_deref(),
        flags,
        &env,
    )
    .map_err(dfns_signer::Error::from)?)
}

/// What a command needs of the settings besides the base URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// Nothing else (a login: no token, the key is passed separately).
    Nothing,
    /// An auth token.
    Token,
    /// An auth token and a credential key, for user actions.
    TokenAndSigner,
}

/// Builds the client the settings describe. A key at a desk is opened with a touch notice on
/// stderr; a missing token or signer is a usage error naming where to set it.
pub fn client(settings: &Settings, needs: Needs) -> Result<DfnsClient, Failure> {
    let mut base = settings.clone();
    // The library's `from_settings` opens keys silently and reads every token source; here the
    // key is opened by `open_key` (touch notice) and the token read only when the command
    // needs one (a `prompt` source asks only then).
    base.key = None;
    base.credential_id = None;
    if needs == Needs::Nothing {
        base.auth_token = None;
    } else if base.auth_token.is_none() {
        return Err(Failure::usage(
            "no auth token",
            "set DFNS_AUTH_TOKEN, or auth_token = \"env:NAME\" / \"file:PATH\" in the profile",
        ));
    }
    let mut client = DfnsClient::from_settings(&base)?;
    if needs == Needs::TokenAndSigner {
        if let Some(signer) = signer(settings)? {
            client = client.with_signer(signer);
        }
    }
    Ok(client)
}

/// The credential signer the settings name, `None` when they name no key and no credential id.
pub fn signer(settings: &Settings) -> Result<Option<CredentialSigner>, Failure> {
    match (&settings.key, &settings.credential_id) {
        (None, None) => Ok(None),
        (Some(key), None) => Err(Failure::usage(
            format!("a key is set (by {}) but no credential id", key.origin),
            "add --cred-id ID (or DFNS_CRED_ID, or credential_id in the profile): the id Dfns \
             knows this key by",
        )),
        (None, Some(id)) => Err(Failure::usage(
            format!("a credential id is set (by {}) but no key", id.origin),
            "add --key URI (or DFNS_KEY, or key in the profile): the key registered under it",
        )),
        (Some(key), Some(id)) => {
            let backend = open_key_text(&key.value)?;
            Ok(Some(CredentialSigner::new(id.value.clone(), backend)))
        }
    }
}

/// Opens a key URI given as text (flag, environment, profile).
pub fn open_key_text(uri: &str) -> Result<Arc<dyn KeyBackend>, Failure> {
    let uri = KeyUri::parse(uri).map_err(dfns_signer::Error::from)?;
    Ok(super::open_key(&uri).map_err(dfns_signer::Error::from)?)
}
