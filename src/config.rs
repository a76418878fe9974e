//! The configuration file: named profiles of connection settings, so a custody backend or a
//! person at a desk names a profile instead of repeating a base URL, a credential id and a key
//! URI on every call.
//!
//! ```toml
//! # used when neither --profile nor DFNS_SIGNER_PROFILE names one
//! default_profile = "softhsm"
//!
//! [profiles.softhsm]
//! base_url = "http://127.0.0.1:8080"   # optional; default https://api.dfns.io
//! auth_token = "env:DFNS_AUTH_TOKEN"   # where the token is: env:NAME, file:PATH or prompt
//! credential_id = "Y2ktMXNk..."        # optional
//! key = "pkcs11:token=custody;object=dfns?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=env:HSM_PIN"
//! timeout_seconds = 30                 # optional, 1..=600
//! retries = 2                          # optional, 0..=10
//! ```
//!
//! The file names where secrets are, never a secret: an auth token or a PIN written into it is
//! refused ([`ConfigError::InlineSecret`]), and so is a file other users may read or write
//! ([`ConfigError::Permissions`], fixed by `chmod 600`, as ssh does). Every refusal names the
//! file and the line, and [`ConfigError::fix`] says what to do.
//!
//! Where the file is: [`Config::locate`]. Which value wins: [`Settings::resolve`] (flags, then
//! the environment variables the official SDK examples use, then the profile, then defaults).
//! A custody backend needs one call, [`DfnsClient::from_profile`].

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;
use toml::Spanned;
use zeroize::Zeroizing;

use crate::error::{sanitize_text, Error};
use crate::{Backoff, CredentialSigner, DfnsClient, KeyUri, PinSource};
use crate::{DEFAULT_BASE_URL, DEFAULT_TIMEOUT};

/// The environment variable naming the configuration file.
pub const CONFIG_ENV: &str = "DFNS_SIGNER_CONFIG";
/// The environment variable naming the profile to use.
pub const PROFILE_ENV: &str = "DFNS_SIGNER_PROFILE";
/// The API base URL, as the official SDK examples name it; overrides the profile.
pub const API_URL_ENV: &str = "DFNS_API_URL";
/// The auth token itself (not a source), as the official SDK examples name it; overrides the
/// profile.
pub const AUTH_TOKEN_ENV: &str = "DFNS_AUTH_TOKEN";
/// The credential id, as the official SDK examples name it; overrides the profile.
pub const CRED_ID_ENV: &str = "DFNS_CRED_ID";
/// The key URI; overrides the profile.
pub const KEY_ENV: &str = "DFNS_KEY";

const TIMEOUT_SECONDS: RangeInclusive<i64> = 1..=600;
const RETRIES: RangeInclusive<i64> = 0..=10;
/// Keys that are not settings but a secret someone tried to write into the file: refused as
/// such, so the message says where the secret belongs instead of "unknown key".
const SECRET_KEYS: &[&str] = &[
    "pin",
    "pin_value",
    "pin-value",
    "token",
    "password",
    "secret",
];
const TOKEN_SOURCE_FIX: &str =
    "write auth_token = \"env:DFNS_AUTH_TOKEN\" or \"file:/path/token\" \
     (or \"prompt\"), and keep the token itself out of this file";

/// The file as written. `deny_unknown_fields` everywhere: a misspelt key must not be ignored
/// silently (`timeout_secs` would leave the default in force). Later sections (a signing
/// service's `[service]`, `[listen]`, `[[keys]]`, `[[clients]]`) are read by the service.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    default_profile: Option<Spanned<String>>,
    #[serde(default)]
    profiles: BTreeMap<String, RawProfile>,
    // The signing service's sections, read and checked by `dfns_signer::service` (feature
    // `serve`): one file configures both, and the profile reader leaves them alone.
    #[serde(rename = "service")]
    _service: Option<toml::Value>,
    #[serde(rename = "listen")]
    _listen: Option<toml::Value>,
    #[serde(rename = "keys")]
    _keys: Option<toml::Value>,
    #[serde(rename = "clients")]
    _clients: Option<toml::Value>,
}

/// One `[profiles.NAME]` table. Values are `Spanned` so a refusal can name its line; numbers
/// are read as `i64` so an out-of-range value is refused with its range, not as a type error.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    base_url: Option<Spanned<String>>,
    auth_token: Option<Spanned<String>>,
    credential_id: Option<Spanned<String>>,
    key: Option<Spanned<String>>,
    timeout_seconds: Option<Spanned<i64>>,
    retries: Option<Spanned<i64>>,
}

/// Where the configuration file's path came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigOrigin {
    /// The `--config` flag (the `flag` argument of [`Config::locate`]).
    Flag,
    /// The `DFNS_SIGNER_CONFIG` environment variable.
    Env,
    /// The per-user default, `$XDG_CONFIG_HOME/dfns-signer/config.toml`.
    UserDefault,
}

impl fmt::Display for ConfigOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConfigOrigin::Flag => "--config",
            ConfigOrigin::Env => "$DFNS_SIGNER_CONFIG",
            ConfigOrigin::UserDefault => "the default location",
        })
    }
}

/// A configuration file, parsed and checked.
#[derive(Debug, Clone)]
pub struct Config {
    path: PathBuf,
    default_profile: Option<String>,
    profiles: Vec<Profile>,
}

/// One profile: settings for one Dfns identity and key. `None` fields leave the setting to the
/// environment or the defaults ([`Settings::resolve`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Profile {
    /// The profile's name (`[profiles.NAME]`).
    pub name: String,
    /// `base_url`: the API's base URL.
    pub base_url: Option<String>,
    /// `auth_token`: where the auth token is read from.
    pub auth_token: Option<TokenSource>,
    /// `credential_id`: the Key credential the key is registered under.
    pub credential_id: Option<String>,
    /// `key`: the key URI (checked to parse, and to hold no PIN).
    pub key: Option<String>,
    /// `timeout_seconds`: time allowed for each HTTP exchange.
    pub timeout: Option<Duration>,
    /// `retries`: how many times a failed request may be tried again (see
    /// [`DfnsClient::from_settings`]).
    pub retries: Option<u32>,
}

impl Config {
    /// Finds the configuration file: `flag` (`--config FILE`), else `$DFNS_SIGNER_CONFIG`, else
    /// [`Config::default_path`]. A path given by the flag or the variable must exist
    /// ([`ConfigError::NotFound`]); `Ok(None)` when neither is given and the default file does
    /// not exist. `env` reads an environment variable (`|n| std::env::var(n).ok()`).
    pub fn locate(
        flag: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<(PathBuf, ConfigOrigin)>, ConfigError> {
        let explicit = match (flag, var(env, CONFIG_ENV)) {
            (Some(path), _) => Some((path.to_owned(), ConfigOrigin::Flag)),
            (None, Some(path)) => Some((PathBuf::from(path), ConfigOrigin::Env)),
            (None, None) => None,
        };
        if let Some((path, origin)) = explicit {
            return match path.try_exists() {
                Ok(true) => Ok(Some((path, origin))),
                Ok(false) => Err(ConfigError::NotFound { path, origin }),
                Err(e) => Err(ConfigError::Unreadable {
                    path,
                    reason: e.to_string(),
                }),
            };
        }
        let Some(path) = Config::default_path(env) else {
            return Ok(None);
        };
        match path.try_exists() {
            Ok(true) => Ok(Some((path, ConfigOrigin::UserDefault))),
            Ok(false) => Ok(None),
            Err(e) => Err(ConfigError::Unreadable {
                path,
                reason: e.to_string(),
            }),
        }
    }

    /// The per-user file, whether it exists or not: `$XDG_CONFIG_HOME/dfns-signer/config.toml`,
    /// else `$HOME/.config/dfns-signer/config.toml` (the XDG base directory rules: a relative
    /// `XDG_CONFIG_HOME` is ignored). `None` when neither variable is usable.
    pub fn default_path(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
        let base = var(env, "XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .or_else(|| var(env, "HOME").map(|home| Path::new(&home).join(".config")))?;
        Some(base.join("dfns-signer").join("config.toml"))
    }

    /// Reads and checks a configuration file. Refused when group or others may read or write it
    /// (on Unix; a symbolic link is judged by its target).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::from_toml(&read_private(path)?, path)
    }

    /// Parses and checks configuration text; `path` is only named in errors. The file's
    /// permissions are not checked (see [`Config::load`]).
    pub fn from_toml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let raw: RawFile = toml::from_str(text).map_err(|e| toml_error(&e, text, path))?;
        let at = Lines { text, path };
        let profiles = raw
            .profiles
            .into_iter()
            .map(|(name, p)| Profile::check(name, p, &at))
            .collect::<Result<Vec<_>, _>>()?;
        let config = Config {
            path: path.to_owned(),
            default_profile: None,
            profiles,
        };
        let Some(default) = raw.default_profile else {
            return Ok(config);
        };
        if !config.profile_names().contains(&default.get_ref().as_str()) {
            return Err(at.invalid(
                &default,
                "default_profile",
                format!(
                    "there is no [profiles.{}] in this file (profiles: {})",
                    default.get_ref(),
                    list_or_none(&config.profile_names())
                ),
            ));
        }
        Ok(Config {
            default_profile: Some(default.into_inner()),
            ..config
        })
    }

    /// The file this configuration was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The profiles' names, sorted.
    pub fn profile_names(&self) -> Vec<&str> {
        self.profiles.iter().map(|p| p.name.as_str()).collect()
    }

    /// The profile to use: `name`, else `default_profile`, else the profile called `default`,
    /// else the only profile. `Ok(None)` when the file has no profile and no name was asked
    /// for; an error when a named profile is missing, or when there are several and none is
    /// chosen.
    pub fn profile(&self, name: Option<&str>) -> Result<Option<&Profile>, ConfigError> {
        let find = |n: &str| self.profiles.iter().find(|p| p.name == n);
        if let Some(wanted) = name.or(self.default_profile.as_deref()) {
            return find(wanted)
                .map(Some)
                .ok_or_else(|| ConfigError::NoSuchProfile {
                    path: self.path.clone(),
                    name: wanted.to_owned(),
                    known: self.known(),
                });
        }
        if let Some(p) = find("default") {
            return Ok(Some(p));
        }
        match self.profiles.as_slice() {
            [] => Ok(None),
            [only] => Ok(Some(only)),
            _ => Err(ConfigError::ProfileNotChosen {
                path: self.path.clone(),
                known: self.known(),
            }),
        }
    }

    fn known(&self) -> Vec<String> {
        self.profile_names()
            .into_iter()
            .map(str::to_owned)
            .collect()
    }
}

impl Profile {
    /// Checks one raw profile; every refusal names the value's line.
    fn check(name: String, raw: RawProfile, at: &Lines<'_>) -> Result<Profile, ConfigError> {
        let field = |f: &str| format!("profiles.{name}.{f}");
        if let Some(url) = &raw.base_url {
            check_base_url(url, &field("base_url"), at)?;
        }
        let auth_token = match &raw.auth_token {
            Some(source) => Some(
                TokenSource::parse(source.get_ref())
                    .map_err(|_| at.inline_secret(source, field("auth_token"), TOKEN_SOURCE_FIX))?,
            ),
            None => None,
        };
        if let Some(id) = &raw.credential_id {
            if id.get_ref().trim().is_empty() {
                return Err(at.invalid(id, &field("credential_id"), "it is empty".to_owned()));
            }
        }
        if let Some(key) = &raw.key {
            if uri_holds_pin(key.get_ref()) {
                return Err(at.inline_secret(
                    key,
                    field("key"),
                    "take the PIN out of the key URI and name its source instead: \
                     pin-source=env:NAME, pin-source=file:PATH or pin-source=prompt",
                ));
            }
            // KeyUri's errors redact anything that looks like a PIN, so its reason is safe here.
            KeyUri::parse(key.get_ref())
                .map_err(|e| at.invalid(key, &field("key"), e.to_string()))?;
        }
        let in_range = |value: &Option<Spanned<i64>>, f: &str, range: RangeInclusive<i64>| {
            match value {
                Some(v) if !range.contains(v.get_ref()) => Err(at.invalid(
                    v,
                    &field(f),
                    format!(
                        "{} is out of range ({}..={})",
                        v.get_ref(),
                        range.start(),
                        range.end()
                    ),
                )),
                // In range, so the casts below are lossless.
                Some(v) => Ok(Some(*v.get_ref() as u64)),
                None => Ok(None),
            }
        };
        let timeout = in_range(&raw.timeout_seconds, "timeout_seconds", TIMEOUT_SECONDS)?;
        let retries = in_range(&raw.retries, "retries", RETRIES)?;
        Ok(Profile {
            base_url: raw.base_url.map(Spanned::into_inner),
            auth_token,
            credential_id: raw.credential_id.map(Spanned::into_inner),
            key: raw.key.map(Spanned::into_inner),
            timeout: timeout.map(Duration::from_secs),
            retries: retries.map(|r| r as u32),
            name,
        })
    }
}

pub(crate) fn check_base_url(
    url: &Spanned<String>,
    field: &str,
    at: &Lines<'_>,
) -> Result<(), ConfigError> {
    // The value is never quoted: a URL can carry `user:password@`.
    let parsed = url::Url::parse(url.get_ref())
        .map_err(|_| at.invalid(url, field, "not a URL (expected https://host)".to_owned()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(at.invalid(
            url,
            field,
            format!("scheme `{}` is not http or https", parsed.scheme()),
        ));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(at.inline_secret(
            url,
            field.to_owned(),
            "remove user:password@ from base_url; the token goes in auth_token = \
             \"env:DFNS_AUTH_TOKEN\"",
        ));
    }
    Ok(())
}

/// Whether a key URI carries a PIN: a `pin=` or `pin-value=` attribute, or a `pin-source=`
/// that is not a source (the PIN itself, by mistake).
pub(crate) fn uri_holds_pin(uri: &str) -> bool {
    let body = uri.split_once(':').map_or(uri, |(_, body)| body);
    body.split(['?', '&', ';']).any(|attr| {
        let (name, value) = attr.split_once('=').unwrap_or((attr, ""));
        matches!(name, "pin" | "pin-value")
            || (name == "pin-source" && PinSource::parse(value).is_err())
    })
}

/// Turns byte offsets into the errors' line numbers.
pub(crate) struct Lines<'a> {
    pub(crate) text: &'a str,
    pub(crate) path: &'a Path,
}

impl Lines<'_> {
    pub(crate) fn line<T>(&self, value: &Spanned<T>) -> usize {
        line_of(self.text, value.span().start)
    }

    pub(crate) fn invalid<T>(
        &self,
        value: &Spanned<T>,
        field: &str,
        reason: String,
    ) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_owned(),
            line: self.line(value),
            field: field.to_owned(),
            reason,
        }
    }

    pub(crate) fn inline_secret<T>(
        &self,
        value: &Spanned<T>,
        field: String,
        fix: &str,
    ) -> ConfigError {
        ConfigError::InlineSecret {
            path: self.path.to_owned(),
            line: self.line(value),
            field,
            fix: fix.to_owned(),
        }
    }
}

/// The 1-based line holding byte `offset`.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    let before = &text.as_bytes()[..offset.min(text.len())];
    before.iter().filter(|&&b| b == b'\n').count() + 1
}

pub(crate) fn toml_error(e: &toml::de::Error, text: &str, path: &Path) -> ConfigError {
    // Without a span (rare) the error is reported on line 1 rather than on no line.
    let line = e.span().map_or(1, |s| line_of(text, s.start));
    let path = path.to_owned();
    let message = e.message().lines().next().unwrap_or("");
    let unknown = message
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split_once('`'))
        .map(|(key, _)| key);
    match unknown {
        Some(key) if SECRET_KEYS.contains(&key) => ConfigError::InlineSecret {
            path,
            line,
            field: key.to_owned(),
            fix: format!(
                "delete `{key}` from the file: an auth token goes in auth_token = \
                 \"env:NAME\" or \"file:PATH\", a PIN in the key URI's pin-source=env:NAME, \
                 file:PATH or prompt"
            ),
        },
        Some(key) => ConfigError::UnknownKey {
            path,
            line,
            key: sanitize_text(key, 60),
        },
        None => ConfigError::Syntax {
            path,
            line,
            message: summarize(message),
        },
    }
}

/// toml's message, minus what it may quote of the file: serde's `invalid type: string "…",
/// expected u32` quotes the value, which may be a secret written in the wrong place. toml's
/// `Display` (not used) would also quote the whole line.
fn summarize(message: &str) -> String {
    let text = match message.split_once(": ") {
        Some((what @ ("invalid type" | "invalid value" | "invalid length"), rest)) => {
            match rest.split_once(", expected ") {
                // In the file's words, not serde's (the raw numbers are i64, tables maps).
                Some((_, expected)) => format!(
                    "{what}, expected {}",
                    match expected {
                        "i64" => "a whole number",
                        "a map" => "a table",
                        other => other,
                    }
                ),
                None => what.to_owned(),
            }
        }
        _ => message.to_owned(),
    };
    sanitize_text(&text, 200)
}

/// Reads a configuration file only its owner may read or write ([`check_private`]); the text is
/// zeroized when dropped, for a refused file may hold a secret written inline.
pub(crate) fn read_private(path: &Path) -> Result<Zeroizing<String>, ConfigError> {
    let unreadable = |e: std::io::Error| ConfigError::Unreadable {
        path: path.to_owned(),
        reason: e.to_string(),
    };
    let meta = fs::metadata(path).map_err(unreadable)?;
    check_private(path, &meta)?;
    Ok(Zeroizing::new(
        fs::read_to_string(path).map_err(unreadable)?,
    ))
}

/// Refuses a file that group or others may read or write: it holds a secret or says where
/// secrets are, and ssh refuses keys for the same reason.
pub(crate) fn check_private(path: &Path, meta: &fs::Metadata) -> Result<(), ConfigError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(ConfigError::Permissions {
                path: path.to_owned(),
                mode,
            });
        }
    }
    #[cfg(not(unix))]
    let _ = (path, meta);
    Ok(())
}

/// An environment variable, empty counting as unset.
fn var(env: &dyn Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    env(name).filter(|v| !v.is_empty())
}

fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

pub(crate) fn list_or_none<S: AsRef<str>>(items: &[S]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items
            .iter()
            .map(AsRef::as_ref)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Where an auth token is read from. Names the source, never the token, so it can be shown.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenSource {
    /// `env:NAME`: an environment variable.
    Env(String),
    /// `file:PATH`: the first line of a file only its owner may read.
    File(PathBuf),
    /// `prompt`: asked on the terminal (refused when there is none).
    Prompt,
}

impl TokenSource {
    /// Parses `env:NAME`, `file:PATH` or `prompt`. The text is never echoed in the error: a
    /// wrong value is most likely the token itself.
    pub fn parse(s: &str) -> Result<TokenSource, ConfigError> {
        match s.split_once(':') {
            _ if s == "prompt" => Ok(TokenSource::Prompt),
            Some(("env", name)) if !name.is_empty() => Ok(TokenSource::Env(name.to_owned())),
            Some(("file", path)) if !path.is_empty() => Ok(TokenSource::File(path.into())),
            _ => Err(ConfigError::TokenUnavailable {
                source_name: "the auth token source given".to_owned(),
                reason: "expected env:NAME, file:PATH or prompt".to_owned(),
                fix: TOKEN_SOURCE_FIX.to_owned(),
            }),
        }
    }

    /// Reads the token (a `prompt` asks now). A token file must be private like the
    /// configuration file; its first line, trimmed, is the token; an empty token is refused.
    pub fn read(&self) -> Result<SecretString, ConfigError> {
        let fail = |reason: String, fix: String| ConfigError::TokenUnavailable {
            source_name: self.to_string(),
            reason,
            fix,
        };
        let token: Zeroizing<String> = match self {
            TokenSource::Env(name) => Zeroizing::new(std::env::var(name).map_err(|_| {
                fail(
                    format!("environment variable `{name}` is not set (or not UTF-8)"),
                    format!("export {name} with the token, or name another source in auth_token"),
                )
            })?),
            TokenSource::File(path) => {
                let unreadable = |e: std::io::Error| {
                    fail(
                        e.to_string(),
                        "check the path, and that this user may read the file".to_owned(),
                    )
                };
                check_private(path, &fs::metadata(path).map_err(unreadable)?)?;
                let text = Zeroizing::new(fs::read_to_string(path).map_err(unreadable)?);
                Zeroizing::new(text.lines().next().unwrap_or("").trim().to_owned())
            }
            TokenSource::Prompt => {
                let no_prompt = "use auth_token = \"env:NAME\" or \"file:PATH\" where there is \
                                 no terminal";
                if !crate::PinSource::can_prompt() {
                    return Err(fail(
                        "no terminal to prompt on".to_owned(),
                        no_prompt.to_owned(),
                    ));
                }
                let typed = Zeroizing::new(
                    rpassword::prompt_password("Dfns auth token: ")
                        .map_err(|e| fail(e.to_string(), no_prompt.to_owned()))?,
                );
                Zeroizing::new(typed.trim().to_owned())
            }
        };
        if token.is_empty() {
            return Err(fail(
                "the token is empty".to_owned(),
                format!("put the token in {self}"),
            ));
        }
        Ok(SecretString::from(token.as_str()))
    }
}

impl fmt::Display for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenSource::Env(name) => write!(f, "env:{name}"),
            TokenSource::File(path) => write!(f, "file:{}", path.display()),
            TokenSource::Prompt => f.write_str("prompt"),
        }
    }
}

/// What the caller's flags give: the highest precedence. `None` leaves the setting to the
/// environment, the profile and the defaults.
#[derive(Debug, Default)]
pub struct Overrides {
    /// The API's base URL.
    pub base_url: Option<String>,
    /// The auth token itself.
    pub auth_token: Option<SecretString>,
    /// The credential id.
    pub credential_id: Option<String>,
    /// The key URI.
    pub key: Option<String>,
    /// Time allowed for each HTTP exchange.
    pub timeout: Option<Duration>,
}

/// Where a setting's value came from (for `doctor`-style reports and error messages).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Origin {
    /// A flag ([`Overrides`]).
    Flag,
    /// An environment variable, named.
    Env(&'static str),
    /// A profile of the configuration file.
    Profile {
        /// The profile's name.
        name: String,
    },
    /// The built-in default.
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Flag => f.write_str("a flag"),
            Origin::Env(name) => write!(f, "${name}"),
            Origin::Profile { name } => write!(f, "profile `{name}`"),
            Origin::Default => f.write_str("the default"),
        }
    }
}

/// A resolved value and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting<T> {
    /// The value.
    pub value: T,
    /// Where it came from.
    pub origin: Origin,
}

impl<T> Setting<T> {
    fn new(value: T, origin: Origin) -> Self {
        Setting { value, origin }
    }
}

/// An auth token, or where to read it.
#[derive(Clone)]
pub enum AuthToken {
    /// The token itself (from a flag or `$DFNS_AUTH_TOKEN`).
    Value(SecretString),
    /// A source, read only when [`AuthToken::read`] is called (a `prompt` asks then).
    Source(TokenSource),
}

impl AuthToken {
    /// The token: the value, or what its source holds now.
    pub fn read(&self) -> Result<SecretString, ConfigError> {
        match self {
            AuthToken::Value(token) => Ok(token.clone()),
            AuthToken::Source(source) => source.read(),
        }
    }
}

impl fmt::Debug for AuthToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthToken::Value(_) => f.write_str("AuthToken([REDACTED])"),
            AuthToken::Source(source) => write!(f, "AuthToken({source})"),
        }
    }
}

/// Every setting a client needs, each with where it came from.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Settings {
    /// The API's base URL (default [`DEFAULT_BASE_URL`]).
    pub base_url: Setting<String>,
    /// The auth token, when one is configured.
    pub auth_token: Option<Setting<AuthToken>>,
    /// The credential id the key signs under.
    pub credential_id: Option<Setting<String>>,
    /// The key URI.
    pub key: Option<Setting<String>>,
    /// Time allowed for each HTTP exchange (default [`DEFAULT_TIMEOUT`], 30 s).
    pub timeout: Setting<Duration>,
    /// How many times a failed request may be tried again (profile only).
    pub retries: Option<Setting<u32>>,
}

impl Settings {
    /// Picks each setting from, in order: `flags`; the environment (`DFNS_API_URL`,
    /// `DFNS_AUTH_TOKEN` — the token value itself, as in the official SDK examples —,
    /// `DFNS_CRED_ID`, `DFNS_KEY`); the profile; the defaults. Empty environment values count
    /// as unset. Nothing is read or opened here: a token source is read by
    /// [`AuthToken::read`], a key opened by [`DfnsClient::from_settings`].
    pub fn resolve(
        flags: Overrides,
        env: &dyn Fn(&str) -> Option<String>,
        profile: Option<&Profile>,
    ) -> Settings {
        let from_profile = || Origin::Profile {
            name: profile.map(|p| p.name.clone()).unwrap_or_default(),
        };
        // flag > environment > profile, for the settings all three can give.
        let pick = |flag: Option<String>, var_name: &'static str, prof: Option<&String>| {
            flag.map(|v| Setting::new(v, Origin::Flag))
                .or_else(|| var(env, var_name).map(|v| Setting::new(v, Origin::Env(var_name))))
                .or_else(|| prof.map(|v| Setting::new(v.clone(), from_profile())))
        };
        let base_url = pick(
            flags.base_url,
            API_URL_ENV,
            profile.and_then(|p| p.base_url.as_ref()),
        )
        .unwrap_or_else(|| Setting::new(DEFAULT_BASE_URL.to_owned(), Origin::Default));
        let auth_token = flags
            .auth_token
            .map(|t| Setting::new(AuthToken::Value(t), Origin::Flag))
            .or_else(|| {
                var(env, AUTH_TOKEN_ENV).map(|t| {
                    Setting::new(
                        AuthToken::Value(SecretString::from(t)),
                        Origin::Env(AUTH_TOKEN_ENV),
                    )
                })
            })
            .or_else(|| {
                let source = profile?.auth_token.clone()?;
                Some(Setting::new(AuthToken::Source(source), from_profile()))
            });
        let timeout = flags
            .timeout
            .map(|t| Setting::new(t, Origin::Flag))
            .or_else(|| Some(Setting::new(profile?.timeout?, from_profile())))
            .unwrap_or_else(|| Setting::new(DEFAULT_TIMEOUT, Origin::Default));
        Settings {
            base_url,
            auth_token,
            credential_id: pick(
                flags.credential_id,
                CRED_ID_ENV,
                profile.and_then(|p| p.credential_id.as_ref()),
            ),
            key: pick(flags.key, KEY_ENV, profile.and_then(|p| p.key.as_ref())),
            timeout,
            retries: profile
                .and_then(|p| p.retries)
                .map(|r| Setting::new(r, from_profile())),
        }
    }

    /// The whole lookup with an explicit environment: [`Config::locate`], [`Config::load`],
    /// [`Config::profile`] (`profile`, else `$DFNS_SIGNER_PROFILE`, else the file's default),
    /// then [`Settings::resolve`]. Without a file, only the flags, the environment and the
    /// defaults count, and naming a profile is an error.
    pub fn load(
        config: Option<&Path>,
        profile: Option<&str>,
        flags: Overrides,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Settings, ConfigError> {
        let name = profile.map(str::to_owned).or_else(|| var(env, PROFILE_ENV));
        let config = match Config::locate(config, env)? {
            Some((path, _)) => Some(Config::load(&path)?),
            None => None,
        };
        let profile = match (&config, name) {
            (Some(config), name) => config.profile(name.as_deref())?,
            (None, Some(name)) => {
                return Err(ConfigError::NoConfigFile {
                    profile: name,
                    default_path: Config::default_path(env),
                })
            }
            (None, None) => None,
        };
        Ok(Settings::resolve(flags, env, profile))
    }

    /// [`Settings::load`] with the process environment and no flags: what a custody backend
    /// calls. `profile` `None` means `$DFNS_SIGNER_PROFILE`, else the file's default.
    pub fn from_environment(
        config: Option<&Path>,
        profile: Option<&str>,
    ) -> Result<Settings, ConfigError> {
        Settings::load(config, profile, Overrides::default(), &process_env)
    }
}

impl DfnsClient {
    /// Builds a client from resolved settings: base URL, timeout, the auth token (its source is
    /// read now), and a signer (the key opened with [`crate::open`], under the credential id)
    /// when both a key and a credential id are set; one without the other is
    /// [`ConfigError::Incomplete`]. `retries = N` retries with [`Backoff`]'s defaults for up to
    /// `N + 1` attempts; without it (or with 0) nothing is retried.
    pub fn from_settings(settings: &Settings) -> Result<DfnsClient, Error> {
        let signer = match (&settings.key, &settings.credential_id) {
            (Some(key), Some(id)) => Some((key, id)),
            (None, None) => None,
            (Some(key), None) => return Err(incomplete("key", key, "credential_id").into()),
            (None, Some(id)) => return Err(incomplete("credential_id", id, "key").into()),
        };
        let mut builder = DfnsClient::builder()
            .base_url(settings.base_url.value.clone())
            .timeout(settings.timeout.value);
        if let Some(retries) = settings.retries.as_ref().filter(|r| r.value > 0) {
            builder = builder.retry_policy(Arc::new(Backoff {
                max_attempts: retries.value + 1,
                ..Backoff::default()
            }));
        }
        // Built before the key and the token: a wrong base URL fails before anyone is asked
        // for a PIN or a token.
        let mut client = builder.build()?;
        if let Some((key, id)) = signer {
            let key = crate::open(&KeyUri::parse(&key.value)?)?;
            client = client.with_signer(CredentialSigner::new(id.value.clone(), key));
        }
        if let Some(token) = &settings.auth_token {
            client = client.with_auth_token(token.value.read()?);
        }
        Ok(client)
    }

    /// [`Settings::from_environment`] then [`DfnsClient::from_settings`]: the configuration
    /// file's profile (`profile`, else `$DFNS_SIGNER_PROFILE`, else the default), overridden
    /// by `DFNS_API_URL`, `DFNS_AUTH_TOKEN`, `DFNS_CRED_ID` and `DFNS_KEY`.
    pub fn from_profile(profile: Option<&str>) -> Result<DfnsClient, Error> {
        DfnsClient::from_settings(&Settings::from_environment(None, profile)?)
    }
}

fn incomplete(given: &'static str, from: &Setting<String>, missing: &'static str) -> ConfigError {
    ConfigError::Incomplete {
        given,
        given_from: from.origin.to_string(),
        missing,
    }
}

/// A configuration file, a profile or a token source was refused. `Display` says what went
/// wrong (with the file and line when there is one), [`ConfigError::fix`] what to do. No
/// variant carries a secret: values that may be one are never quoted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A file named by `--config` or `$DFNS_SIGNER_CONFIG` does not exist.
    #[error("config file {} (named by {origin}) does not exist", .path.display())]
    NotFound {
        /// The path given.
        path: PathBuf,
        /// Who named it.
        origin: ConfigOrigin,
    },
    /// The file could not be read.
    #[error("cannot read config file {}: {reason}", .path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// What the system said.
        reason: String,
    },
    /// Group or others may read or write the file.
    #[error("{} may be read or written by other users (mode {mode:04o}); a file that holds or names secrets must be private", .path.display())]
    Permissions {
        /// The file (configuration or token file).
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file is not valid TOML, or a value has the wrong type.
    #[error("{}:{line}: {message}", .path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// The parser's message, without the file's text.
        message: String,
    },
    /// A key the file format does not have (misspelt, or misplaced).
    #[error("{}:{line}: unknown key `{key}`", .path.display())]
    UnknownKey {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// The key.
        key: String,
    },
    /// A secret (auth token, PIN, password) is written in the file instead of its source.
    #[error("{}:{line}: `{field}` holds a secret written into the file (the value is not shown)", .path.display())]
    InlineSecret {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// The setting (`profiles.prod.auth_token`) or key (`pin`).
        field: String,
        /// Where the secret belongs instead.
        fix: String,
    },
    /// A value is out of range or malformed.
    #[error("{}:{line}: `{field}` is invalid: {reason}", .path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// The setting (`profiles.prod.timeout_seconds`).
        field: String,
        /// What is wrong (values that may be secret are not quoted).
        reason: String,
    },
    /// The profile asked for is not in the file.
    #[error("no profile `{name}` in {} (profiles: {})", .path.display(), list_or_none(.known))]
    NoSuchProfile {
        /// The file.
        path: PathBuf,
        /// The profile asked for.
        name: String,
        /// The profiles the file has.
        known: Vec<String>,
    },
    /// The file has several profiles and nothing says which to use.
    #[error("{} has several profiles ({}) and none is chosen", .path.display(), .known.join(", "))]
    ProfileNotChosen {
        /// The file.
        path: PathBuf,
        /// The profiles the file has.
        known: Vec<String>,
    },
    /// A profile was asked for, but there is no configuration file.
    #[error("profile `{profile}` was asked for, but there is no config file ({})", match .default_path { Some(p) => format!("{} does not exist", p.display()), None => "neither XDG_CONFIG_HOME nor HOME is set".to_owned() })]
    NoConfigFile {
        /// The profile asked for.
        profile: String,
        /// The per-user default file, when one can be named.
        default_path: Option<PathBuf>,
    },
    /// The auth token could not be read from its source.
    #[error("cannot read the auth token from {source_name}: {reason}")]
    TokenUnavailable {
        /// The source (`env:NAME`, `file:PATH`, `prompt`), never the token.
        source_name: String,
        /// Why.
        reason: String,
        /// What to do.
        fix: String,
    },
    /// A key without a credential id, or a credential id without a key.
    #[error("{given} is set (by {given_from}) but {missing} is not: signing needs both")]
    Incomplete {
        /// The setting that is there.
        given: &'static str,
        /// Where it came from.
        given_from: String,
        /// The one that is missing.
        missing: &'static str,
    },
}

impl ConfigError {
    /// What to do about it, in one line (the CLI prints it under the error).
    pub fn fix(&self) -> String {
        match self {
            ConfigError::NotFound { .. } => {
                "check the path, or create the file (chmod 600; see the dfns_signer::config \
                 documentation for its format)"
                    .to_owned()
            }
            ConfigError::Unreadable { .. } => {
                "check the path, and that this user may read the file".to_owned()
            }
            ConfigError::Permissions { path, .. } => format!("chmod 600 {}", path.display()),
            ConfigError::Syntax { line, .. } => format!(
                "fix line {line}: strings are quoted (\"…\"), numbers are not, each key appears \
                 once; tables are [profiles.NAME]"
            ),
            ConfigError::UnknownKey { key, line, .. } => format!(
                "remove or rename `{key}` (line {line}): the top level takes default_profile \
                 (before the first table) and [profiles.NAME] tables; a profile takes base_url, \
                 auth_token, credential_id, key, timeout_seconds and retries; the signing \
                 service's sections are [service], [listen], [[keys]] and [[clients]] (see \
                 docs/service.md)"
            ),
            ConfigError::InlineSecret { fix, .. } | ConfigError::TokenUnavailable { fix, .. } => {
                fix.clone()
            }
            ConfigError::Invalid { field, line, .. } => {
                format!("correct `{field}` at line {line}")
            }
            ConfigError::NoSuchProfile { path, name, .. } => format!(
                "use one of the profiles listed, or add [profiles.{name}] to {}",
                path.display()
            ),
            ConfigError::ProfileNotChosen { path, .. } => format!(
                "pass --profile NAME or set DFNS_SIGNER_PROFILE, or set default_profile = \
                 \"NAME\" in {}",
                path.display()
            ),
            ConfigError::NoConfigFile {
                profile,
                default_path,
            } => format!(
                "create {} with a [profiles.{profile}] table (chmod 600), or name the file with \
                 --config or DFNS_SIGNER_CONFIG",
                default_path
                    .as_ref()
                    .map_or("a config file".to_owned(), |p| p.display().to_string())
            ),
            ConfigError::Incomplete { missing, .. } => match *missing {
                "credential_id" => "set credential_id in the profile, DFNS_CRED_ID or --cred-id \
                                    (the id the key is registered under), or remove the key"
                    .to_owned(),
                _ => "set key in the profile, DFNS_KEY or --key (the key registered under the \
                      credential id), or remove the credential id"
                    .to_owned(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(text, Path::new("/etc/dfns/config.toml"))
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn lines_are_counted_from_one() {
        assert_eq!(line_of("a\nb\nc", 0), 1);
        assert_eq!(line_of("a\nb\nc", 2), 2);
        assert_eq!(line_of("a\nb\nc", 4), 3);
        assert_eq!(line_of("a\n", 99), 2, "past the end: the last line");
    }

    #[test]
    fn a_full_profile_parses() {
        let config = parse(
            "default_profile = \"hsm\"\n\
             [profiles.hsm]\n\
             base_url = \"http://127.0.0.1:8080\"\n\
             auth_token = \"file:/run/secrets/dfns\"\n\
             credential_id = \"cr-1\"\n\
             key = \"pkcs11:token=t;object=k?module-path=/m.so&pin-source=env:HSM_PIN\"\n\
             timeout_seconds = 45\n\
             retries = 2\n\
             [profiles.other]\n",
        )
        .unwrap();
        assert_eq!(config.profile_names(), ["hsm", "other"]);
        let p = config.profile(None).unwrap().unwrap();
        assert_eq!(p.name, "hsm");
        assert_eq!(p.base_url.as_deref(), Some("http://127.0.0.1:8080"));
        assert_eq!(
            p.auth_token,
            Some(TokenSource::File("/run/secrets/dfns".into()))
        );
        assert_eq!(p.credential_id.as_deref(), Some("cr-1"));
        assert_eq!(p.timeout, Some(Duration::from_secs(45)));
        assert_eq!(p.retries, Some(2));
        let other = config.profile(Some("other")).unwrap().unwrap();
        assert_eq!((other.key.as_ref(), other.timeout), (None, None));
    }

    #[test]
    fn profile_choice_without_a_name() {
        let names = |text: &str| {
            parse(text)
                .unwrap()
                .profile(None)
                .map(|p| p.map(|p| p.name.clone()))
        };
        assert_eq!(names("").unwrap(), None);
        assert_eq!(names("[profiles.only]").unwrap().as_deref(), Some("only"));
        assert_eq!(
            names("[profiles.a]\n[profiles.default]\n[profiles.z]")
                .unwrap()
                .as_deref(),
            Some("default")
        );
        let err = names("[profiles.a]\n[profiles.b]").unwrap_err();
        assert!(matches!(err, ConfigError::ProfileNotChosen { .. }), "{err}");
        assert!(err.fix().contains("default_profile"), "{}", err.fix());
        // A default_profile naming nothing is refused at its line.
        let err = parse("[profiles.a]\n\ndefault_profile = \"b\"").unwrap_err();
        assert!(
            matches!(&err, ConfigError::UnknownKey { line: 3, .. }),
            "a key after a table belongs to the table: {err}"
        );
        let err = parse("\ndefault_profile = \"b\"\n[profiles.a]").unwrap_err();
        match &err {
            ConfigError::Invalid { line, field, .. } => {
                assert_eq!((*line, field.as_str()), (2, "default_profile"))
            }
            other => panic!("{other}"),
        }
        assert!(err.to_string().contains("profiles: a"), "{err}");
    }

    #[test]
    fn numbers_out_of_range_are_refused_with_their_range() {
        for (text, field) in [
            ("timeout_seconds = 0", "timeout_seconds"),
            ("timeout_seconds = 601", "timeout_seconds"),
            ("retries = -1", "retries"),
            ("retries = 11", "retries"),
        ] {
            let err = parse(&format!("[profiles.p]\n{text}\n")).unwrap_err();
            match &err {
                ConfigError::Invalid { line, field: f, .. } => assert_eq!(
                    (*line, f.as_str()),
                    (2, format!("profiles.p.{field}").as_str())
                ),
                other => panic!("{text}: {other}"),
            }
            assert!(err.to_string().contains("out of range"), "{err}");
        }
        let p = parse("[profiles.p]\ntimeout_seconds = 600\nretries = 0").unwrap();
        let p = p.profile(None).unwrap().unwrap();
        assert_eq!(
            (p.timeout, p.retries),
            (Some(Duration::from_secs(600)), Some(0))
        );
    }

    #[test]
    fn bad_base_urls_are_refused_without_quoting_them() {
        for (url, want) in [
            ("ftp://files.example", "scheme `ftp`"),
            ("api.dfns.io", "not a URL"),
        ] {
            let err = parse(&format!("[profiles.p]\nbase_url = \"{url}\"")).unwrap_err();
            assert!(matches!(err, ConfigError::Invalid { line: 2, .. }), "{err}");
            assert!(err.to_string().contains(want), "{err}");
        }
        let err =
            parse("[profiles.p]\nbase_url = \"https://me:PLANTED-pw@api.dfns.io\"").unwrap_err();
        assert!(
            matches!(err, ConfigError::InlineSecret { line: 2, .. }),
            "{err}"
        );
        assert!(!format!("{err} {err:?} {}", err.fix()).contains("PLANTED"));
    }

    #[test]
    fn a_pin_in_the_key_uri_is_an_inline_secret() {
        assert!(uri_holds_pin("pkcs11:token=t?pin-value=1234"));
        assert!(uri_holds_pin("pkcs11:pin-value=1234;token=t"));
        assert!(uri_holds_pin("piv:slot=9a?pin=1234"));
        assert!(uri_holds_pin("file:/k.pem?pin=1234"));
        assert!(uri_holds_pin("piv:slot=9a?pin-source=123456"));
        assert!(!uri_holds_pin(
            "piv:slot=9a?pin-source=env:PIV_PIN&serial=1"
        ));
        assert!(!uri_holds_pin("pkcs11:token=t?pin-source=file:/run/pin"));
        assert!(!uri_holds_pin("file:/keys/spin=1/k.pem"));
    }

    #[test]
    fn type_errors_do_not_quote_the_value() {
        let err = parse("[profiles.p]\n\ncredential_id = 918273645\n").unwrap_err();
        let text = format!("{err} {err:?}");
        assert!(matches!(err, ConfigError::Syntax { line: 3, .. }), "{text}");
        assert!(!text.contains("918273645"), "{text}");
        assert!(text.contains("expected a string"), "{text}");
        let err = parse("[profiles.p]\nretries = \"2\"\n").unwrap_err();
        assert!(
            err.to_string()
                .ends_with("invalid type, expected a whole number"),
            "{err}"
        );
        let err = parse("[profiles.p]\ntimeout_seconds = \"PLANTED-secret\"\n").unwrap_err();
        assert!(!format!("{err} {err:?}").contains("PLANTED"), "{err}");
        assert_eq!(
            summarize("invalid type: string \"s3cret\", expected u32"),
            "invalid type, expected u32"
        );
        // A syntax error on a line holding a secret: toml's Display would print that line.
        let err = parse("[profiles.p]\nauth_token = \"PLANTED-secret\nx = 1\n").unwrap_err();
        assert!(matches!(err, ConfigError::Syntax { line: 2, .. }), "{err}");
        assert!(!format!("{err} {err:?}").contains("PLANTED"), "{err}");
    }

    #[test]
    fn token_sources_parse_and_never_echo_a_token() {
        assert_eq!(TokenSource::parse("prompt").unwrap(), TokenSource::Prompt);
        assert_eq!(
            TokenSource::parse("env:T").unwrap(),
            TokenSource::Env("T".into())
        );
        assert_eq!(
            TokenSource::parse("file:/a:b").unwrap(),
            TokenSource::File("/a:b".into())
        );
        for bad in ["env:", "file:", "PLANTED.jwt.token", "Bearer PLANTED"] {
            let err = TokenSource::parse(bad).unwrap_err();
            assert!(!format!("{err} {err:?}").contains("PLANTED"), "{err}");
            assert!(err.fix().contains("env:DFNS_AUTH_TOKEN"), "{}", err.fix());
        }
        assert_eq!(TokenSource::File("/t".into()).to_string(), "file:/t");
    }

    #[test]
    fn resolve_takes_flags_then_env_then_profile_then_defaults() {
        let profile = parse(
            "[profiles.p]\nbase_url = \"https://profile.example\"\nauth_token = \"env:P_TOKEN\"\n\
             credential_id = \"cred-profile\"\nkey = \"file:/profile.pem\"\ntimeout_seconds = 5\nretries = 3",
        )
        .unwrap();
        let profile = profile.profile(None).unwrap();
        let env = |name: &str| match name {
            "DFNS_API_URL" => Some("https://env.example".to_owned()),
            "DFNS_AUTH_TOKEN" => Some("env-token".to_owned()),
            "DFNS_CRED_ID" => Some(String::new()), // empty: unset
            _ => None,
        };
        let s = Settings::resolve(
            Overrides {
                key: Some("file:/flag.pem".into()),
                ..Overrides::default()
            },
            &env,
            profile,
        );
        let from_p = Origin::Profile { name: "p".into() };
        assert_eq!(
            s.key.unwrap(),
            Setting::new("file:/flag.pem".into(), Origin::Flag)
        );
        assert_eq!(
            s.base_url,
            Setting::new("https://env.example".into(), Origin::Env("DFNS_API_URL"))
        );
        let token = s.auth_token.unwrap();
        assert_eq!(token.origin, Origin::Env("DFNS_AUTH_TOKEN"));
        assert_eq!(token.value.read().unwrap().expose_secret(), "env-token");
        assert!(!format!("{token:?}").contains("env-token"));
        assert_eq!(
            s.credential_id.unwrap(),
            Setting::new("cred-profile".into(), from_p.clone())
        );
        assert_eq!(
            s.timeout,
            Setting::new(Duration::from_secs(5), from_p.clone())
        );
        assert_eq!(s.retries, Some(Setting::new(3, from_p)));

        let s = Settings::resolve(Overrides::default(), &no_env, None);
        assert_eq!(
            s.base_url,
            Setting::new("https://api.dfns.io".into(), Origin::Default)
        );
        assert_eq!(
            s.timeout,
            Setting::new(Duration::from_secs(30), Origin::Default)
        );
        assert!(s.auth_token.is_none() && s.key.is_none() && s.retries.is_none());
    }

    #[test]
    fn default_path_follows_xdg() {
        let env = |xdg: Option<&'static str>, home: Option<&'static str>| {
            move |name: &str| match name {
                "XDG_CONFIG_HOME" => xdg.map(str::to_owned),
                "HOME" => home.map(str::to_owned),
                _ => None,
            }
        };
        let path = |xdg, home| Config::default_path(&env(xdg, home));
        assert_eq!(
            path(Some("/x"), Some("/h")),
            Some(PathBuf::from("/x/dfns-signer/config.toml"))
        );
        assert_eq!(
            path(Some("relative"), Some("/h")),
            Some(PathBuf::from("/h/.config/dfns-signer/config.toml"))
        );
        assert_eq!(
            path(Some(""), Some("/h")),
            Some(PathBuf::from("/h/.config/dfns-signer/config.toml"))
        );
        assert_eq!(path(None, None), None);
    }

    #[test]
    fn every_error_says_what_to_do() {
        let p = || PathBuf::from("/c.toml");
        let all = [
            ConfigError::NotFound {
                path: p(),
                origin: ConfigOrigin::Env,
            },
            ConfigError::Incomplete {
                given: "key",
                given_from: "a flag".into(),
                missing: "credential_id",
            },
            ConfigError::Incomplete {
                given: "credential_id",
                given_from: "$DFNS_CRED_ID".into(),
                missing: "key",
            },
            ConfigError::NoConfigFile {
                profile: "prod".into(),
                default_path: None,
            },
        ];
        assert!(all[0].to_string().contains("$DFNS_SIGNER_CONFIG"));
        assert!(all[1].fix().contains("DFNS_CRED_ID"));
        assert!(all[2].fix().contains("DFNS_KEY"));
        assert!(all[3]
            .to_string()
            .contains("neither XDG_CONFIG_HOME nor HOME"));
        assert!(all[3].fix().contains("[profiles.prod]"));
    }
}
