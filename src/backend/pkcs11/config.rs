//! What names a PKCS#11 key: module, token, key, PIN source, and the few options; built in code
//! or from an RFC 7512 `pkcs11:` URI.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::key::KeySelector;
use super::token::TokenSelector;
use crate::backend::{PinSource, UriAttributes};
use crate::error::BackendError;

/// Path attributes a `pkcs11:` URI may carry (RFC 7512 names).
pub(crate) const PATH_ATTRS: &[&str] = &[
    "token",
    "serial",
    "manufacturer",
    "model",
    "slot-id",
    "object",
    "id",
    "type",
];
/// Query attributes a `pkcs11:` URI may carry.
pub(crate) const QUERY_ATTRS: &[&str] = &[
    "module-path",
    "pin-source",
    "pool-size",
    "pool-wait",
    "allow-unsafe-key",
    "allow-last-pin-try",
    "verify-signatures",
];

/// How long a signature waits for a free session by default before it fails: long enough for
/// a busy token, short enough that a stuck one (a network HSM that stopped answering) fails
/// requests instead of hanging them.
pub const DEFAULT_POOL_WAIT: Duration = Duration::from_secs(30);

/// How to find and use a key on a PKCS#11 token.
///
/// Build it with [`Pkcs11Config::new`] and the `with_*` methods, or from a URI with
/// [`Pkcs11Config::from_uri`]. It holds where the PIN comes from, never the PIN itself (unless
/// the caller passes one as [`PinSource::Value`], which stays redacted).
#[derive(Clone)]
pub struct Pkcs11Config {
    pub(crate) module_path: Option<PathBuf>,
    pub(crate) token: TokenSelector,
    pub(crate) key: KeySelector,
    pub(crate) pin: Option<PinSource>,
    pub(crate) pool_size: Option<usize>,
    pub(crate) pool_wait: Duration,
    pub(crate) allow_unsafe_key: bool,
    pub(crate) allow_last_pin_try: bool,
    pub(crate) verify_signatures: bool,
}

impl Pkcs11Config {
    /// A config with no token, key or PIN named yet; the module defaults to
    /// `$DFNS_SIGNER_PKCS11_MODULE`.
    pub fn new() -> Self {
        Pkcs11Config {
            module_path: None,
            token: TokenSelector::default(),
            key: KeySelector::default(),
            pin: None,
            pool_size: None,
            pool_wait: DEFAULT_POOL_WAIT,
            allow_unsafe_key: false,
            allow_last_pin_try: false,
            verify_signatures: true,
        }
    }

    /// The PKCS#11 module (shared library) to load.
    pub fn with_module_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.module_path = Some(path.into());
        self
    }

    /// Selects the token by its label.
    pub fn with_token_label(mut self, label: impl Into<String>) -> Self {
        self.token.label = Some(label.into());
        self
    }

    /// Selects the token by its serial number.
    pub fn with_token_serial(mut self, serial: impl Into<String>) -> Self {
        self.token.serial = Some(serial.into());
        self
    }

    /// Selects the token by its manufacturer (`manufacturerID` of the token info).
    pub fn with_token_manufacturer(mut self, manufacturer: impl Into<String>) -> Self {
        self.token.manufacturer = Some(manufacturer.into());
        self
    }

    /// Selects the token by its model.
    pub fn with_token_model(mut self, model: impl Into<String>) -> Self {
        self.token.model = Some(model.into());
        self
    }

    /// Selects the token by the id of the slot it sits in (as the module numbers slots).
    pub fn with_slot_id(mut self, slot_id: u64) -> Self {
        self.token.slot_id = Some(slot_id);
        self
    }

    /// Selects the key by its label (`CKA_LABEL`).
    pub fn with_key_label(mut self, label: impl Into<String>) -> Self {
        self.key.label = Some(label.into());
        self
    }

    /// Selects the key by its id (`CKA_ID`).
    pub fn with_key_id(mut self, id: impl Into<Vec<u8>>) -> Self {
        self.key.id = Some(id.into());
        self
    }

    /// Where the user PIN comes from (needed by tokens that require a login, i.e. nearly all).
    pub fn with_pin(mut self, pin: PinSource) -> Self {
        self.pin = Some(pin);
        self
    }

    /// How many sessions to keep for concurrent signing (default: the number of CPU cores).
    pub fn with_pool_size(mut self, size: usize) -> Self {
        self.pool_size = Some(size.max(1));
        self
    }

    /// How long a signature waits for a free session when all `pool-size` are busy (default
    /// [`DEFAULT_POOL_WAIT`]); past it the signature fails with [`BackendError::Device`].
    pub fn with_pool_wait(mut self, wait: Duration) -> Self {
        self.pool_wait = wait;
        self
    }

    /// Allows presenting the PIN when the token says only one try is left
    /// (`CKF_USER_PIN_FINAL_TRY`). By default that login is refused with
    /// [`BackendError::LastPinTry`]: a wrong PIN then would lock the token.
    pub fn allow_last_pin_try(mut self, allow: bool) -> Self {
        self.allow_last_pin_try = allow;
        self
    }

    /// Checks every signature against the public key before it leaves the backend (default
    /// `true`): a token with a faulty RSA-CRT or ECDSA nonce must not hand out a bad signature,
    /// which could also leak its key. Costs one verification on the host per signature.
    pub fn verify_signatures(mut self, verify: bool) -> Self {
        self.verify_signatures = verify;
        self
    }

    /// Allows signing with a key the token lets out (`CKA_EXTRACTABLE`), shows in the clear
    /// (not `CKA_SENSITIVE`) or lets anyone use without a login (`CKA_PRIVATE` false). Such a key
    /// is not hardware-bound to its owner; a warning is logged at open.
    pub fn allow_unsafe_key(mut self, allow: bool) -> Self {
        self.allow_unsafe_key = allow;
        self
    }

    /// The pool size in effect.
    pub fn pool_size(&self) -> usize {
        self.pool_size.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
        })
    }

    /// Reads a `pkcs11:` URI (RFC 7512). Path attributes: `token`, `serial`, `manufacturer`,
    /// `model`, `slot-id` (which token), `object` (key label),
    /// `id` (key id, percent-encoded bytes), `type` (must be `private` if given). Query
    /// attributes: `module-path`, `pin-source`, `pool-size`, `pool-wait` (seconds),
    /// `allow-unsafe-key`, `allow-last-pin-try`, `verify-signatures` (`true`/`false`).
    pub fn from_uri(attrs: &UriAttributes) -> Result<Self, BackendError> {
        attrs.expect_only(PATH_ATTRS, QUERY_ATTRS)?;
        let mut c = Pkcs11Config::new();
        if let Some(t) = attrs.path_attr("type") {
            if t != "private" {
                return Err(attrs.invalid(format!(
                    "`type={t}`: dfns-signer signs with private keys; use `type=private` or leave it out"
                )));
            }
        }
        c.token.label = attrs.path_attr("token").map(str::to_owned);
        c.token.serial = attrs.path_attr("serial").map(str::to_owned);
        c.token.manufacturer = attrs.path_attr("manufacturer").map(str::to_owned);
        c.token.model = attrs.path_attr("model").map(str::to_owned);
        c.token.slot_id = attrs
            .path_attr("slot-id")
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| attrs.invalid(format!("`slot-id={v}`: expected a decimal number")))
            })
            .transpose()?;
        c.key.label = attrs.path_attr("object").map(str::to_owned);
        c.key.id = match attrs.id_bytes() {
            Some([]) => return Err(attrs.invalid("`id=` is empty")),
            Some(id) => Some(id.to_vec()),
            None => None,
        };
        if c.key.label.is_none() && c.key.id.is_none() {
            return Err(attrs.invalid("name the key with `object=LABEL` and/or `id=%01%02…`"));
        }
        c.module_path = attrs.query_attr("module-path").map(PathBuf::from);
        c.pin = attrs
            .query_attr("pin-source")
            .map(|src| {
                PinSource::parse(src).map_err(|e| match e {
                    // An unparsable source may be the PIN itself, given by mistake
                    // (`pin-source=123456`): never repeat it.
                    BackendError::PinSource { reason, .. } => BackendError::PinSource {
                        source_name: "`pin-source=` (value not shown: it may be a PIN)".into(),
                        reason,
                    },
                    other => other,
                })
            })
            .transpose()?;
        if let Some(n) = attrs.query_attr("pool-size") {
            let n: usize = n
                .parse()
                .ok()
                .filter(|n| (1..=1024).contains(n))
                .ok_or_else(|| {
                    attrs.invalid(format!("`pool-size={n}`: expected a number from 1 to 1024"))
                })?;
            c.pool_size = Some(n);
        }
        if let Some(n) = attrs.query_attr("pool-wait") {
            let secs: u64 = n
                .parse()
                .ok()
                .filter(|n| (1..=3600).contains(n))
                .ok_or_else(|| {
                    attrs.invalid(format!(
                        "`pool-wait={n}`: expected a number of seconds from 1 to 3600"
                    ))
                })?;
            c.pool_wait = Duration::from_secs(secs);
        }
        c.allow_unsafe_key = bool_attr(attrs, "allow-unsafe-key", false)?;
        c.allow_last_pin_try = bool_attr(attrs, "allow-last-pin-try", false)?;
        c.verify_signatures = bool_attr(attrs, "verify-signatures", true)?;
        Ok(c)
    }
}

/// A `true`/`false` query attribute, `default` when absent.
fn bool_attr(attrs: &UriAttributes, name: &str, default: bool) -> Result<bool, BackendError> {
    match attrs.query_attr(name) {
        None => Ok(default),
        Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(attrs.invalid(format!("`{name}={other}`: expected `true` or `false`"))),
    }
}

impl Default for Pkcs11Config {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Pkcs11Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11Config")
            .field("module_path", &self.module_path)
            .field("token", &self.token)
            .field("key", &self.key)
            // PinSource's Debug names the source only (`env:HSM_PIN`), never the PIN.
            .field("pin", &self.pin)
            .field("pool_size", &self.pool_size)
            .field("pool_wait", &self.pool_wait)
            .field("allow_unsafe_key", &self.allow_unsafe_key)
            .field("allow_last_pin_try", &self.allow_last_pin_try)
            .field("verify_signatures", &self.verify_signatures)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::KeyUri;

    fn attrs(s: &str) -> UriAttributes {
        match KeyUri::parse(s).unwrap() {
            KeyUri::Pkcs11(a) => a,
            other => panic!("not pkcs11: {other:?}"),
        }
    }

    #[test]
    fn uri_to_config() {
        let c = Pkcs11Config::from_uri(&attrs(
            "pkcs11:token=custody;serial=abc;manufacturer=SoftHSM%20project;model=SoftHSM%20v2;slot-id=7;object=dfns-1;id=%01%7f;type=private?module-path=/m.so&pin-source=env:HSM_PIN&pool-size=3&allow-unsafe-key=true&allow-last-pin-try=true&verify-signatures=false&pool-wait=5",
        ))
        .unwrap();
        assert_eq!(c.token.label.as_deref(), Some("custody"));
        assert_eq!(c.token.serial.as_deref(), Some("abc"));
        assert_eq!(c.token.manufacturer.as_deref(), Some("SoftHSM project"));
        assert_eq!(c.token.model.as_deref(), Some("SoftHSM v2"));
        assert_eq!(c.token.slot_id, Some(7));
        assert_eq!(c.key.label.as_deref(), Some("dfns-1"));
        assert_eq!(c.key.id.as_deref(), Some(&[0x01, 0x7f][..]));
        assert_eq!(
            c.module_path.as_deref(),
            Some(std::path::Path::new("/m.so"))
        );
        assert_eq!(c.pool_size(), 3);
        assert!(c.allow_unsafe_key);
        assert!(c.allow_last_pin_try);
        assert!(!c.verify_signatures);
        assert_eq!(c.pool_wait, Duration::from_secs(5));
        let defaults = Pkcs11Config::from_uri(&attrs("pkcs11:object=k")).unwrap();
        assert!(!defaults.allow_last_pin_try && !defaults.allow_unsafe_key);
        assert!(defaults.verify_signatures, "verified by default");
        assert_eq!(defaults.pool_wait, DEFAULT_POOL_WAIT);
        assert!(matches!(c.pin, Some(PinSource::Env(ref n)) if n == "HSM_PIN"));
    }

    #[test]
    fn uri_mistakes_are_named() {
        let bad = |s: &str| Pkcs11Config::from_uri(&attrs(s)).unwrap_err().to_string();
        assert!(bad("pkcs11:token=t;objct=k").contains("unknown attribute `objct`"));
        assert!(bad("pkcs11:token=t;object=k?pool=2").contains("unknown query attribute `pool`"));
        assert!(bad("pkcs11:token=t").contains("object=LABEL"));
        assert!(bad("pkcs11:object=k;type=public").contains("type=private"));
        assert!(bad("pkcs11:object=k?pool-size=0").contains("pool-size"));
        assert!(bad("pkcs11:object=k;slot-id=x1").contains("slot-id"));
        assert!(bad("pkcs11:object=k?allow-unsafe-key=yes").contains("true"));
        assert!(bad("pkcs11:object=k?verify-signatures=no").contains("verify-signatures"));
        assert!(bad("pkcs11:object=k?pool-wait=0").contains("pool-wait"));
        assert!(bad("pkcs11:object=k?pin-source=1234").contains("env:NAME"));
        // A PIN given by mistake as the source is not repeated.
        assert!(!bad("pkcs11:object=k?pin-source=987654").contains("987654"));
    }
}
