//! The service's sections of the configuration file (the same file as the CLI's profiles, read
//! by the same rules: private, no secret inline, every refusal with its line and its fix).
//!
//! ```toml
//! [service]
//! upstream = "https://api.dfns.io"                 # the Dfns API (default)
//! approval_key = "file:/etc/dfns-signer/approval.key"  # shared by every instance; env:NAME too
//! approval_ttl_seconds = 300                       # how long an init's approval holds
//! timeout_seconds = 30                             # each upstream exchange
//! instance = "signer-a"                            # names this instance in the audit log
//! audit_log = "/var/lib/dfns-signer/audit/audit.log"  # one hash-chained line per decision
//! audit_rotate_bytes = 67108864                    # rotate by size; the chain continues
//! drain_seconds = 30                               # SIGTERM waits this long for approvals
//!
//! [listen]
//! unix = "/run/dfns-signer/signer.sock"            # created 0600 (0660 with unix_group)
//! unix_group = "dfns"
//! tcp = "0.0.0.0:8470"                             # TLS required off loopback
//! tls_cert = "/etc/dfns-signer/cert.pem"
//! tls_key = "/etc/dfns-signer/key.pem"
//! tls_client_ca = "/etc/dfns-signer/clients.pem"   # optional: require client certificates
//! metrics = "127.0.0.1:9470"                       # /metrics, /healthz, /readyz (plain HTTP)
//!
//! [[keys]]
//! name = "treasury"
//! key = "pkcs11:token=custody;object=dfns?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=env:HSM_PIN"
//! credential_id = "Y2ktMXNk..."
//!
//! [[keys]]                                         # failover: several devices, each its own
//! name = "vault"                                   # credential of the same Dfns user; a device
//! key = ["pkcs11:token=hsm-a;object=k?…", "pkcs11:token=hsm-b;object=k?…"]   # error moves to
//! credential_id = ["Y2ktYQ...", "Y2ktYg..."]       # the next, a PIN error never does
//!
//! [[clients]]
//! name = "payments"
//! secret_sha256 = "…"                              # from `dfns-signer serve add-client payments`
//! keys = ["treasury"]                              # the first is used unless one is named
//! rate_limit = "10/s"                              # optional
//! [[clients.rules]]
//! allow = "POST /wallets"
//! body.network = ["EthereumSepolia", "Bitcoin"]
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use toml::Spanned;

use super::policy::{BodyConstraint, Policy, RateLimit, Rule};
use crate::config::{
    check_base_url, list_or_none, read_private, toml_error, uri_holds_pin, ConfigError, Lines,
    TokenSource,
};
use crate::{KeyUri, DEFAULT_BASE_URL};

const DEFAULT_APPROVAL_TTL: Duration = Duration::from_secs(300);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_DRAIN: Duration = Duration::from_secs(30);
const DEFAULT_AUDIT_ROTATE_BYTES: u64 = 64 << 20;
const AUDIT_ROTATE_BYTES: std::ops::RangeInclusive<i64> = 4096..=(1 << 40);

/// This machine's name (`/proc/sys/kernel/hostname`, else `$HOSTNAME`), for the audit log.
fn host_name() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "dfns-signer".to_owned())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    // The CLI's sections (`dfns_signer::config`), not read here.
    #[serde(rename = "default_profile")]
    _default_profile: Option<toml::Value>,
    #[serde(rename = "profiles")]
    _profiles: Option<toml::Value>,
    service: Option<RawService>,
    listen: Option<RawListen>,
    #[serde(default)]
    keys: Vec<RawKey>,
    #[serde(default)]
    clients: Vec<RawClient>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    upstream: Option<Spanned<String>>,
    approval_key: Option<Spanned<String>>,
    approval_ttl_seconds: Option<Spanned<i64>>,
    timeout_seconds: Option<Spanned<i64>>,
    instance: Option<Spanned<String>>,
    audit_log: Option<Spanned<String>>,
    audit_rotate_bytes: Option<Spanned<i64>>,
    drain_seconds: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListen {
    unix: Option<Spanned<String>>,
    unix_group: Option<Spanned<String>>,
    tcp: Option<Spanned<String>>,
    tls_cert: Option<Spanned<String>>,
    tls_key: Option<Spanned<String>>,
    tls_client_ca: Option<Spanned<String>>,
    metrics: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKey {
    name: Spanned<String>,
    key: Spanned<OneOrMany>,
    credential_id: Spanned<OneOrMany>,
}

/// A string, or a list of strings (a key's failover devices).
#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn items(&self) -> Vec<&str> {
        match self {
            OneOrMany::One(one) => vec![one.as_str()],
            OneOrMany::Many(many) => many.iter().map(String::as_str).collect(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClient {
    name: Spanned<String>,
    secret_sha256: Spanned<String>,
    keys: Spanned<Vec<String>>,
    rate_limit: Option<Spanned<String>>,
    #[serde(default)]
    rules: Vec<RawRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    allow: Spanned<String>,
    #[serde(default)]
    body: Option<Spanned<toml::Table>>,
}

/// The signing service's configuration, checked.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServiceConfig {
    /// The file it was read from.
    pub path: PathBuf,
    /// The Dfns API the service talks to.
    pub upstream: String,
    /// Where the approval key is (`None`: a random key, this instance only).
    pub approval_key: Option<TokenSource>,
    /// How long an init's approval may be signed.
    pub approval_ttl: Duration,
    /// Time allowed for each upstream exchange.
    pub timeout: Duration,
    /// This instance's name in the audit log (default: the host name).
    pub instance: String,
    /// The audit log's file (`None`: no audit log, which `serve` warns about).
    pub audit_log: Option<PathBuf>,
    /// The audit log's size at which it rotates.
    pub audit_rotate_bytes: u64,
    /// How long SIGTERM waits for requests in flight.
    pub drain: Duration,
    /// Where the service listens.
    pub listen: Listen,
    /// The credential keys.
    pub keys: Vec<KeyConfig>,
    /// The clients.
    pub clients: Vec<ClientConfig>,
}

/// `[listen]`: at least one of a Unix socket and a TCP address.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Listen {
    /// The Unix socket's path.
    pub unix: Option<PathBuf>,
    /// The group allowed to connect (mode 0660); `None`: the owner only (0600).
    pub unix_group: Option<String>,
    /// The TCP address.
    pub tcp: Option<SocketAddr>,
    /// TLS for the TCP listener (required unless it is a loopback address).
    pub tls: Option<TlsFiles>,
    /// The operators' listener: `/metrics`, `/healthz`, `/readyz`, plain HTTP.
    pub metrics: Option<SocketAddr>,
}

/// PEM files of the TCP listener's TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TlsFiles {
    /// The certificate chain.
    pub cert: PathBuf,
    /// The private key (a private file).
    pub key: PathBuf,
    /// CA certificates that client certificates must chain to; `None`: none asked for.
    pub client_ca: Option<PathBuf>,
}

/// `[[keys]]`: a credential key the service signs with, on one device or several.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyConfig {
    /// The name clients and rules use.
    pub name: String,
    /// The devices, in the order they are tried: a device error moves to the next, a PIN error
    /// never does. Each is a credential of the same Dfns user.
    pub devices: Vec<KeyDevice>,
}

/// One device of a key: its URI and the credential registered for it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyDevice {
    /// The key URI (no PIN inside: `pin-source` names where it is).
    pub key: String,
    /// The Dfns credential id registered for it.
    pub credential_id: String,
}

/// `[[clients]]`: a process allowed to ask for approvals.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ClientConfig {
    /// Its name (logs, refusals, `check-policy`).
    pub name: String,
    /// SHA-256 of its secret.
    pub secret_sha256: [u8; 32],
    /// The `[[keys]]` it may use; the first is its default.
    pub keys: Vec<String>,
    /// What it may do.
    pub policy: Policy,
}

impl ServiceConfig {
    /// Reads and checks the service's sections of a configuration file; refused when group or
    /// others may read or write it.
    pub fn load(path: &Path) -> Result<ServiceConfig, ConfigError> {
        ServiceConfig::from_toml(&read_private(path)?, path)
    }

    /// Parses and checks configuration text; `path` is only named in errors.
    pub fn from_toml(text: &str, path: &Path) -> Result<ServiceConfig, ConfigError> {
        let raw: RawFile = toml::from_str(text).map_err(|e| toml_error(&e, text, path))?;
        let at = Lines { text, path };
        let service = raw.service.unwrap_or(RawService {
            upstream: None,
            approval_key: None,
            approval_ttl_seconds: None,
            timeout_seconds: None,
            instance: None,
            audit_log: None,
            audit_rotate_bytes: None,
            drain_seconds: None,
        });
        if let Some(url) = &service.upstream {
            check_base_url(url, "service.upstream", &at)?;
        }
        let approval_key = match &service.approval_key {
            Some(source) => match TokenSource::parse(source.get_ref()) {
                Ok(TokenSource::Prompt) => {
                    return Err(at.invalid(
                        source,
                        "service.approval_key",
                        "a service cannot prompt: use env:NAME or file:PATH".to_owned(),
                    ))
                }
                Ok(s) => Some(s),
                Err(_) => {
                    return Err(at.inline_secret(
                        source,
                        "service.approval_key".to_owned(),
                        "write approval_key = \"file:/path/approval.key\" or \"env:NAME\" and \
                         keep the key itself out of this file",
                    ))
                }
            },
            None => None,
        };
        let seconds = |v: &Option<Spanned<i64>>, field: &str, max: i64| match v {
            Some(s) if !(1..=max).contains(s.get_ref()) => Err(at.invalid(
                s,
                field,
                format!("{} is out of range (1..={max})", s.get_ref()),
            )),
            Some(s) => Ok(Some(Duration::from_secs(*s.get_ref() as u64))),
            None => Ok(None),
        };
        let approval_ttl = seconds(
            &service.approval_ttl_seconds,
            "service.approval_ttl_seconds",
            3600,
        )?
        .unwrap_or(DEFAULT_APPROVAL_TTL);
        let timeout = seconds(&service.timeout_seconds, "service.timeout_seconds", 600)?
            .unwrap_or(DEFAULT_TIMEOUT);
        let drain =
            seconds(&service.drain_seconds, "service.drain_seconds", 600)?.unwrap_or(DEFAULT_DRAIN);
        let audit_rotate_bytes = match &service.audit_rotate_bytes {
            Some(b) if !AUDIT_ROTATE_BYTES.contains(b.get_ref()) => {
                return Err(at.invalid(
                    b,
                    "service.audit_rotate_bytes",
                    format!(
                        "{} is out of range ({}..={})",
                        b.get_ref(),
                        AUDIT_ROTATE_BYTES.start(),
                        AUDIT_ROTATE_BYTES.end()
                    ),
                ))
            }
            Some(b) => *b.get_ref() as u64,
            None => DEFAULT_AUDIT_ROTATE_BYTES,
        };
        let audit_log = match &service.audit_log {
            Some(p) if !Path::new(p.get_ref()).is_absolute() => {
                return Err(at.invalid(p, "service.audit_log", "the path must be absolute".into()))
            }
            Some(p) => Some(PathBuf::from(p.get_ref())),
            None => None,
        };
        let instance = match &service.instance {
            Some(name) if name.get_ref().trim().is_empty() => {
                return Err(at.invalid(name, "service.instance", "it is empty".into()))
            }
            Some(name) => name.get_ref().trim().to_owned(),
            None => host_name(),
        };
        let listen = match raw.listen {
            Some(l) => check_listen(l, &at)?,
            None => Listen::default(),
        };
        let keys = check_keys(raw.keys, &at)?;
        let key_names: Vec<&str> = keys.iter().map(|k| k.name.as_str()).collect();
        let mut clients = Vec::new();
        for raw_client in raw.clients {
            let client = check_client(raw_client, &key_names, &at)?;
            if clients.iter().any(|c: &ClientConfig| c.name == client.name) {
                return Err(ConfigError::Invalid {
                    path: path.to_owned(),
                    line: 1,
                    field: format!("clients.{}", client.name),
                    reason: "two clients have this name".to_owned(),
                });
            }
            clients.push(client);
        }
        Ok(ServiceConfig {
            path: path.to_owned(),
            upstream: service
                .upstream
                .map_or_else(|| DEFAULT_BASE_URL.to_owned(), Spanned::into_inner),
            approval_key,
            approval_ttl,
            timeout,
            instance,
            audit_log,
            audit_rotate_bytes,
            drain,
            listen,
            keys,
            clients,
        })
    }

    /// The client of this name.
    pub fn client(&self, name: &str) -> Option<&ClientConfig> {
        self.clients.iter().find(|c| c.name == name)
    }

    /// The key of this name.
    pub fn key(&self, name: &str) -> Option<&KeyConfig> {
        self.keys.iter().find(|k| k.name == name)
    }
}

fn check_listen(raw: RawListen, at: &Lines<'_>) -> Result<Listen, ConfigError> {
    let unix = match &raw.unix {
        Some(p) if !Path::new(p.get_ref()).is_absolute() => {
            return Err(at.invalid(p, "listen.unix", "the socket path must be absolute".into()))
        }
        Some(p) => Some(PathBuf::from(p.get_ref())),
        None => None,
    };
    if let (None, Some(group)) = (&unix, &raw.unix_group) {
        return Err(at.invalid(group, "listen.unix_group", "there is no listen.unix".into()));
    }
    let tcp = match &raw.tcp {
        Some(addr) => Some(addr.get_ref().parse::<SocketAddr>().map_err(|_| {
            at.invalid(
                addr,
                "listen.tcp",
                "expected an IP address and port, e.g. 127.0.0.1:8470 or [::]:8470".into(),
            )
        })?),
        None => None,
    };
    let tls = match (&raw.tls_cert, &raw.tls_key) {
        (Some(cert), Some(key)) => Some(TlsFiles {
            cert: PathBuf::from(cert.get_ref()),
            key: PathBuf::from(key.get_ref()),
            client_ca: raw
                .tls_client_ca
                .as_ref()
                .map(|c| PathBuf::from(c.get_ref())),
        }),
        (Some(one), None) | (None, Some(one)) => {
            return Err(at.invalid(
                one,
                "listen.tls_cert / listen.tls_key",
                "TLS needs both tls_cert and tls_key".into(),
            ))
        }
        (None, None) => {
            if let Some(ca) = &raw.tls_client_ca {
                return Err(at.invalid(
                    ca,
                    "listen.tls_client_ca",
                    "client certificates need TLS: add tls_cert and tls_key".into(),
                ));
            }
            None
        }
    };
    if let (Some(addr), None, Some(spanned)) = (tcp, &tls, &raw.tcp) {
        if !addr.ip().is_loopback() {
            return Err(at.invalid(
                spanned,
                "listen.tcp",
                format!(
                    "{addr} is reachable from other machines, and clients send Dfns auth \
                     tokens: add tls_cert and tls_key, or listen on 127.0.0.1"
                ),
            ));
        }
    }
    if tls.is_some() && tcp.is_none() {
        let cert = raw.tls_cert.as_ref().expect("tls implies tls_cert");
        return Err(at.invalid(cert, "listen.tls_cert", "there is no listen.tcp".into()));
    }
    let metrics = match &raw.metrics {
        Some(addr) => Some(addr.get_ref().parse::<SocketAddr>().map_err(|_| {
            at.invalid(
                addr,
                "listen.metrics",
                "expected an IP address and port, e.g. 127.0.0.1:9470".into(),
            )
        })?),
        None => None,
    };
    Ok(Listen {
        unix,
        unix_group: raw.unix_group.map(Spanned::into_inner),
        tcp,
        tls,
        metrics,
    })
}

fn check_keys(raw: Vec<RawKey>, at: &Lines<'_>) -> Result<Vec<KeyConfig>, ConfigError> {
    let mut keys: Vec<KeyConfig> = Vec::new();
    for k in raw {
        let name = k.name.get_ref().trim();
        if name.is_empty() {
            return Err(at.invalid(&k.name, "keys.name", "it is empty".into()));
        }
        let field = |f: &str| format!("keys.{name}.{f}");
        if keys.iter().any(|existing| existing.name == name) {
            return Err(at.invalid(&k.name, &field("name"), "two keys have this name".into()));
        }
        let uris = k.key.get_ref().items();
        let credentials = k.credential_id.get_ref().items();
        if uris.is_empty() {
            return Err(at.invalid(&k.key, &field("key"), "no key URI".into()));
        }
        if uris.len() != credentials.len() {
            return Err(at.invalid(
                &k.credential_id,
                &field("credential_id"),
                format!(
                    "{} key URIs but {} credential ids: each device is its own credential",
                    uris.len(),
                    credentials.len()
                ),
            ));
        }
        let mut devices = Vec::new();
        for (uri, credential_id) in uris.into_iter().zip(credentials) {
            if uri_holds_pin(uri) {
                return Err(at.inline_secret(
                    &k.key,
                    field("key"),
                    "take the PIN out of the key URI and name its source instead: \
                     pin-source=env:NAME or pin-source=file:PATH",
                ));
            }
            KeyUri::parse(uri).map_err(|e| at.invalid(&k.key, &field("key"), e.to_string()))?;
            if credential_id.trim().is_empty() {
                return Err(at.invalid(
                    &k.credential_id,
                    &field("credential_id"),
                    "it is empty".into(),
                ));
            }
            devices.push(KeyDevice {
                key: uri.to_owned(),
                credential_id: credential_id.to_owned(),
            });
        }
        keys.push(KeyConfig {
            name: name.to_owned(),
            devices,
        });
    }
    Ok(keys)
}

fn check_client(
    raw: RawClient,
    key_names: &[&str],
    at: &Lines<'_>,
) -> Result<ClientConfig, ConfigError> {
    let name = raw.name.get_ref().trim().to_owned();
    if name.is_empty() {
        return Err(at.invalid(&raw.name, "clients.name", "it is empty".into()));
    }
    let field = |f: &str| format!("clients.{name}.{f}");
    let secret_sha256: [u8; 32] = hex::decode(raw.secret_sha256.get_ref().trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| {
            // Never quoted: someone may have pasted the secret itself here.
            at.invalid(
                &raw.secret_sha256,
                &field("secret_sha256"),
                "expected 64 hex digits, the hash `dfns-signer serve add-client` prints (never \
                 the secret itself)"
                    .into(),
            )
        })?;
    let mut seen = BTreeSet::new();
    for key in raw.keys.get_ref() {
        if !key_names.contains(&key.as_str()) {
            return Err(at.invalid(
                &raw.keys,
                &field("keys"),
                format!(
                    "there is no [[keys]] named `{}` (keys: {})",
                    crate::error::sanitize_text(key, 60),
                    list_or_none(key_names)
                ),
            ));
        }
        if !seen.insert(key.as_str()) {
            return Err(at.invalid(
                &raw.keys,
                &field("keys"),
                format!("`{key}` is listed twice"),
            ));
        }
    }
    if raw.keys.get_ref().is_empty() {
        return Err(at.invalid(
            &raw.keys,
            &field("keys"),
            "a client needs at least one key to sign with".into(),
        ));
    }
    let rate_limit = match &raw.rate_limit {
        Some(r) => Some(
            RateLimit::parse(r.get_ref()).map_err(|e| at.invalid(r, &field("rate_limit"), e))?,
        ),
        None => None,
    };
    let mut rules = Vec::new();
    for (i, rule) in raw.rules.iter().enumerate() {
        let rule_field = field(&format!("rules[{}]", i + 1));
        let body = match &rule.body {
            Some(table) => body_constraints(table, &rule_field, at)?,
            None => Vec::new(),
        };
        rules.push(
            Rule::parse(rule.allow.get_ref(), body)
                .map_err(|e| at.invalid(&rule.allow, &format!("{rule_field}.allow"), e.0))?,
        );
    }
    Ok(ClientConfig {
        name,
        secret_sha256,
        keys: raw.keys.into_inner(),
        policy: Policy::new(rules, rate_limit),
    })
}

/// `body.network = [...]`, `body.requestBody.kind = "Hash"`: nested tables become dotted
/// field paths; a list allows any of its values, anything else that one value.
fn body_constraints(
    table: &Spanned<toml::Table>,
    field: &str,
    at: &Lines<'_>,
) -> Result<Vec<BodyConstraint>, ConfigError> {
    fn walk(
        prefix: &str,
        table: &toml::Table,
        out: &mut BTreeMap<String, Vec<Value>>,
    ) -> Result<(), String> {
        for (name, value) in table {
            let path = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}.{name}")
            };
            match value {
                toml::Value::Table(inner) => walk(&path, inner, out)?,
                toml::Value::Array(items) if items.is_empty() => {
                    return Err(format!("`{path}` allows no value: remove the rule instead"))
                }
                toml::Value::Array(items) => {
                    let values = items.iter().map(scalar).collect::<Result<_, _>>()?;
                    out.insert(path, values);
                }
                other => {
                    out.insert(path, vec![scalar(other)?]);
                }
            }
        }
        Ok(())
    }
    fn scalar(value: &toml::Value) -> Result<Value, String> {
        Ok(match value {
            toml::Value::String(s) => Value::from(s.as_str()),
            toml::Value::Integer(i) => Value::from(*i),
            toml::Value::Boolean(b) => Value::from(*b),
            _ => return Err("values are strings, whole numbers or booleans".to_owned()),
        })
    }
    let mut fields = BTreeMap::new();
    walk("", table.get_ref(), &mut fields)
        .map_err(|reason| at.invalid(table, &format!("{field}.body"), reason))?;
    Ok(fields
        .into_iter()
        .map(|(field, allowed)| BodyConstraint { field, allowed })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    fn parse(text: &str) -> Result<ServiceConfig, ConfigError> {
        ServiceConfig::from_toml(text, Path::new("/etc/dfns-signer.toml"))
    }

    fn full() -> String {
        format!(
            r#"
default_profile = "p"
[profiles.p]
base_url = "http://127.0.0.1:1"

[service]
upstream = "http://127.0.0.1:8080"
approval_key = "env:APPROVAL_KEY"

[listen]
unix = "/run/signer.sock"
tcp = "127.0.0.1:0"

[[keys]]
name = "treasury"
key = "file:/keys/k.pem"
credential_id = "cred-1"

[[clients]]
name = "payments"
secret_sha256 = "{HASH}"
keys = ["treasury"]
rate_limit = "5/s"
[[clients.rules]]
allow = "POST /wallets"
body.network = ["Bitcoin", "EthereumSepolia"]
[[clients.rules]]
allow = "POST /wallets/{{walletId}}/signatures"
body.requestBody.kind = "Hash"
"#
        )
    }

    #[test]
    fn a_full_file_reads_with_the_profiles_left_to_the_cli() {
        let c = parse(&full()).unwrap();
        assert_eq!(c.upstream, "http://127.0.0.1:8080");
        assert_eq!(
            c.approval_key,
            Some(TokenSource::Env("APPROVAL_KEY".into()))
        );
        assert_eq!(c.approval_ttl, Duration::from_secs(300));
        assert_eq!(
            c.listen.unix.as_deref(),
            Some(Path::new("/run/signer.sock"))
        );
        assert_eq!(c.listen.tcp, Some("127.0.0.1:0".parse().unwrap()));
        assert_eq!(c.keys[0].devices[0].credential_id, "cred-1");
        let client = c.client("payments").unwrap();
        assert_eq!(hex::encode(client.secret_sha256), HASH);
        assert_eq!(client.policy.rules.len(), 2);
        assert_eq!(
            client.policy.rules[0].body[0].to_string(),
            r#"network in ["Bitcoin", "EthereumSepolia"]"#
        );
        assert_eq!(
            client.policy.rules[1].body[0].to_string(),
            r#"requestBody.kind = "Hash""#
        );
        assert_eq!(client.policy.rate_limit.unwrap().to_string(), "5/s");
        // The CLI's reader accepts the same file.
        assert!(crate::config::Config::from_toml(&full(), Path::new("/f")).is_ok());
    }

    #[test]
    fn refusals_name_the_line_and_never_quote_a_secret() {
        let refused = |from: &str, to: &str| {
            let text = full().replacen(from, to, 1);
            assert_ne!(text, full(), "{from} not in the sample");
            parse(&text).unwrap_err()
        };
        let e = refused("env:APPROVAL_KEY", "0123456789abcdef0123456789abcdef");
        assert!(
            matches!(e, ConfigError::InlineSecret { line: 8, .. }),
            "{e}"
        );
        assert!(!e.to_string().contains("0123456789abcdef"));
        let e = refused(HASH, "dss_this-is-the-secret-itself");
        assert!(
            e.to_string().contains("clients.payments.secret_sha256"),
            "{e}"
        );
        assert!(!e.to_string().contains("dss_this"));
        let e = refused("file:/keys/k.pem", "file:/keys/k.pem?pin=1234");
        assert!(
            matches!(e, ConfigError::InlineSecret { line: 16, .. }),
            "{e}"
        );
        let e = refused("POST /wallets\"", "POST /walets\"");
        assert!(
            e.to_string()
                .contains(":25: `clients.payments.rules[1].allow` is invalid"),
            "{e}"
        );
        let e = refused("keys = [\"treasury\"]", "keys = [\"vault\"]");
        assert!(
            e.to_string()
                .contains("no [[keys]] named `vault` (keys: treasury)"),
            "{e}"
        );
        let e = refused("127.0.0.1:0", "0.0.0.0:8470");
        assert!(e.to_string().contains("add tls_cert and tls_key"), "{e}");
        let e = refused("5/s", "5/day");
        assert!(e.to_string().contains("rate_limit"), "{e}");
        let e = refused("unix = ", "unixx = ");
        assert!(matches!(e, ConfigError::UnknownKey { .. }), "{e}");
        let e = refused(
            "body.network = [\"Bitcoin\", \"EthereumSepolia\"]",
            "body.network = []",
        );
        assert!(e.to_string().contains("allows no value"), "{e}");
        let e = refused(
            "approval_key = \"env:APPROVAL_KEY\"",
            "approval_key = \"prompt\"",
        );
        assert!(e.to_string().contains("cannot prompt"), "{e}");
    }

    #[test]
    fn tls_is_optional_on_loopback_and_needs_both_files() {
        let text = full().replace(
            "tcp = \"127.0.0.1:0\"",
            "tcp = \"0.0.0.0:8470\"\ntls_cert = \"/c.pem\"\ntls_key = \"/k.pem\"",
        );
        let c = parse(&text).unwrap();
        assert_eq!(c.listen.tls.unwrap().cert, Path::new("/c.pem"));
        let half = full().replace(
            "tcp = \"127.0.0.1:0\"",
            "tcp = \"127.0.0.1:0\"\ntls_cert = \"/c.pem\"",
        );
        assert!(parse(&half).unwrap_err().to_string().contains("needs both"));
    }
}
