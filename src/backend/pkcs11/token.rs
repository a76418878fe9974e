//! Finding a token by label or serial, and logging in to it: once, and never twice with a PIN
//! the token has rejected — by any key of the process (see [`refused_pins`]).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use cryptoki::error::{Error as CkError, RvError};
use cryptoki::session::{Session, SessionState, UserType};
use cryptoki::slot::Slot;
use secrecy::{ExposeSecret, SecretString};
use sha2::Digest;

use super::fault;
use super::module::Module;
use crate::error::BackendError;

/// Which token to use: by label, by serial number, or both (both must match).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TokenSelector {
    pub(crate) label: Option<String>,
    pub(crate) serial: Option<String>,
}

impl TokenSelector {
    fn wanted(&self) -> String {
        match (&self.label, &self.serial) {
            (Some(l), Some(s)) => format!("token \"{l}\" with serial {s}"),
            (Some(l), None) => format!("token \"{l}\""),
            (None, Some(s)) => format!("token with serial {s}"),
            (None, None) => "an initialised token".to_owned(),
        }
    }
}

/// A token found in a slot.
#[derive(Debug, Clone)]
pub(crate) struct FoundToken {
    pub(crate) slot: Slot,
    pub(crate) label: String,
    pub(crate) serial: String,
}

impl FoundToken {
    /// How errors and logs name this token.
    pub(crate) fn name(&self) -> String {
        format!("token \"{}\" (serial {})", self.label, self.serial)
    }
}

/// Finds the one initialised token `sel` names; with no label or serial, the only token there is.
pub(crate) fn find(module: &Module, sel: &TokenSelector) -> Result<FoundToken, BackendError> {
    let ctx = module.ctx();
    let module_name = format!("PKCS#11 module {}", module.path().display());
    let slots = ctx
        .get_slots_with_token()
        .map_err(|e| fault::device(&module_name, "listing slots", &e))?;
    let mut tokens = Vec::with_capacity(slots.len());
    let mut unreadable = 0;
    for slot in slots {
        // One token that cannot be read (removed meanwhile, being re-initialised, broken) must
        // not hide the others: skip it, and mention it if nothing matches.
        match ctx.get_token_info(slot) {
            Ok(info) if info.token_initialized() => tokens.push(FoundToken {
                slot,
                label: info.label().trim_end().to_owned(),
                serial: info.serial_number().trim_end().to_owned(),
            }),
            Ok(_) => {}
            Err(_) => unreadable += 1,
        }
    }
    let matches: Vec<&FoundToken> = tokens
        .iter()
        .filter(|t| sel.label.as_ref().is_none_or(|l| *l == t.label))
        .filter(|t| {
            sel.serial
                .as_ref()
                .is_none_or(|s| s.eq_ignore_ascii_case(&t.serial))
        })
        .collect();
    match matches.as_slice() {
        [one] => Ok((*one).clone()),
        [] => {
            let mut found: Vec<String> = tokens.iter().map(FoundToken::name).collect();
            if unreadable > 0 {
                found.push(format!(
                    "{unreadable} slot(s) whose token could not be read"
                ));
            }
            Err(BackendError::DeviceNotFound {
                wanted: format!("{} on {module_name}", sel.wanted()),
                found,
            })
        }
        many => Err(BackendError::AmbiguousDevice {
            found: many.iter().map(|t| t.name()).collect(),
        }),
    }
}

/// Why logging in with a PIN is refused from now on.
#[derive(Debug, Clone)]
enum Refusal {
    Incorrect {
        device: String,
        tries_left: Option<u32>,
    },
    Blocked {
        device: String,
    },
    /// `CKR_PIN_EXPIRED`: the PIN is right but must be changed before the token takes it.
    Expired {
        device: String,
        reason: String,
    },
}

impl Refusal {
    fn to_error(&self) -> BackendError {
        match self {
            Refusal::Incorrect { device, tries_left } => BackendError::PinIncorrect {
                device: device.clone(),
                tries_left: *tries_left,
            },
            Refusal::Blocked { device } => BackendError::PinBlocked {
                device: device.clone(),
            },
            Refusal::Expired { device, reason } => BackendError::Device {
                device: device.clone(),
                operation: "login".into(),
                reason: reason.clone(),
            },
        }
    }
}

/// The PINs tokens refused, for the whole process.
///
/// Every try of a wrong PIN brings the token closer to locking, and several keys of one process
/// may share a token and a PIN source (a backend opening N keys, key generation, a reopen after
/// a session loss): the memory of a refusal must outlive the key that met it. A PIN is kept
/// only as a keyed digest, SHA-256(per-process random key ‖ PIN), in memory: it cannot be read
/// back from a dump without the key, and nothing is written anywhere. A different PIN (the
/// operator fixed the variable) may be tried.
///
/// The lock is held across the `C_Login` it guards, so that two keys with the same wrong PIN
/// cannot both present it before either records the refusal.
mod refused_pins {
    use super::*;

    /// A token: module path and serial number (the label too when the token reports no serial).
    pub(super) type TokenKey = (PathBuf, String);
    /// A keyed digest of a PIN.
    pub(super) type PinDigest = [u8; 32];

    pub(super) struct Registry {
        refused: HashMap<TokenKey, Vec<(PinDigest, Refusal)>>,
    }

    impl Registry {
        pub(super) fn refusal(&self, token: &TokenKey, pin: &PinDigest) -> Option<&Refusal> {
            self.refused
                .get(token)?
                .iter()
                .find(|(d, _)| d == pin)
                .map(|(_, r)| r)
        }

        pub(super) fn record(&mut self, token: TokenKey, pin: PinDigest, r: Refusal) {
            let list = self.refused.entry(token).or_default();
            list.retain(|(d, _)| *d != pin);
            list.push((pin, r));
        }
    }

    /// The registry, locked.
    pub(super) fn lock() -> std::sync::MutexGuard<'static, Registry> {
        static REGISTRY: OnceLock<Mutex<Registry>> = OnceLock::new();
        REGISTRY
            .get_or_init(|| {
                Mutex::new(Registry {
                    refused: HashMap::new(),
                })
            })
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// The keyed digest of `pin`.
    pub(super) fn digest(pin: &SecretString) -> PinDigest {
        static KEY: OnceLock<zeroize::Zeroizing<[u8; 32]>> = OnceLock::new();
        let key = KEY.get_or_init(|| {
            let mut k = zeroize::Zeroizing::new([0u8; 32]);
            // Without the OS generator (it does not fail on supported systems) the digest is
            // still a one-way function of the PIN: only its resistance to guessing is lost.
            let _ = getrandom::fill(&mut k[..]);
            k
        });
        let mut h = sha2::Sha256::new();
        h.update(&key[..]);
        h.update(pin.expose_secret().as_bytes());
        h.finalize().into()
    }
}

/// The user PIN of one key, and how often this key presented it.
///
/// A PIN refused by a token is never presented to it again by any key of the process, whatever
/// happens later (a reopen after a session loss included): each try spends one of the token's
/// few tries before it locks.
pub(crate) struct Login {
    pin: Option<SecretString>,
    attempts: AtomicU64,
}

impl Login {
    pub(crate) fn new(pin: Option<SecretString>) -> Self {
        Login {
            pin,
            attempts: AtomicU64::new(0),
        }
    }

    /// How many times `C_Login` was called for this key.
    pub(crate) fn attempts(&self) -> u64 {
        self.attempts.load(Ordering::Relaxed)
    }

    /// Makes sure the token is logged in (login state is shared by all sessions of the process
    /// on that token), presenting a PIN at most once per token and process if it is refused.
    pub(crate) fn ensure(
        &self,
        module: &Module,
        session: &Session,
        token: &FoundToken,
    ) -> Result<(), BackendError> {
        let token_key: refused_pins::TokenKey = (
            module.path().to_owned(),
            if token.serial.is_empty() {
                format!("label:{}", token.label)
            } else {
                format!("serial:{}", token.serial)
            },
        );
        let digest = self.pin.as_ref().map(refused_pins::digest);
        // Held until the outcome is recorded: see `refused_pins`.
        let mut registry = refused_pins::lock();
        if let Some(r) = digest.and_then(|d| registry.refusal(&token_key, &d)) {
            return Err(r.to_error());
        }
        let name = token.name();
        let state = session
            .get_session_info()
            .map_err(|e| fault::device(&name, "reading session state", &e))?;
        if matches!(
            state.session_state(),
            SessionState::RoUser | SessionState::RwUser
        ) {
            return Ok(());
        }
        let info = module
            .ctx()
            .get_token_info(token.slot)
            .map_err(|e| fault::device(&name, "reading token flags", &e))?;
        if info.user_pin_locked() {
            return Err(BackendError::PinBlocked { device: name });
        }
        if !info.login_required() {
            return Ok(());
        }
        let (Some(pin), Some(digest)) = (&self.pin, digest) else {
            return Err(BackendError::PinSource {
                source_name: "(none given)".into(),
                reason: format!(
                    "{name} requires a user PIN; add `pin-source=env:NAME` (or file:PATH, prompt) to the URI"
                ),
            });
        };
        self.attempts.fetch_add(1, Ordering::Relaxed);
        let refusal = match session.login(UserType::User, Some(pin)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => return Ok(()),
            Err(CkError::Pkcs11(RvError::PinLocked, _)) => Refusal::Blocked { device: name },
            Err(e @ CkError::Pkcs11(RvError::PinExpired, _)) => Refusal::Expired {
                device: name,
                reason: format!(
                    "{}: the token wants the user PIN changed before it accepts it; change it \
                     (e.g. `pkcs11-tool --change-pin`) and restart",
                    fault::describe(&e)
                ),
            },
            Err(CkError::Pkcs11(
                RvError::PinIncorrect | RvError::PinInvalid | RvError::PinLenRange,
                _,
            )) => after_refusal(module, token, name),
            Err(e) => return Err(fault::device(&name, "login", &e)),
        };
        let err = refusal.to_error();
        registry.record(token_key, digest, refusal);
        Err(err)
    }
}

/// What to say after the token refused a PIN: the flags, read again, say how close it is to
/// locking.
fn after_refusal(module: &Module, token: &FoundToken, name: String) -> Refusal {
    let flags = module.ctx().get_token_info(token.slot).ok();
    let final_try = flags.as_ref().is_some_and(|i| i.user_pin_final_try());
    let low = flags.as_ref().is_some_and(|i| i.user_pin_count_low());
    let locked = flags.as_ref().is_some_and(|i| i.user_pin_locked());
    if locked {
        return Refusal::Blocked { device: name };
    }
    let (device, tries_left) = if final_try {
        (name, Some(1))
    } else if low {
        // The token says "low" without a number (CKF_USER_PIN_COUNT_LOW): say so rather than
        // guess one.
        (
            format!(
                "token \"{}\" (serial {}, which reports few PIN tries left)",
                token.label, token.serial
            ),
            None,
        )
    } else {
        (name, None)
    };
    Refusal::Incorrect { device, tries_left }
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("pin", &self.pin.as_ref().map(|_| "[REDACTED]"))
            .field("attempts", &self.attempts())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_pins_are_kept_as_keyed_digests_per_token() {
        let pin = SecretString::from("123456".to_owned());
        let d = refused_pins::digest(&pin);
        assert_eq!(d, refused_pins::digest(&pin), "stable within the process");
        assert_ne!(
            d,
            refused_pins::digest(&SecretString::from("123457".to_owned()))
        );
        // Keyed: not the plain SHA-256 of the PIN, which a dictionary would reverse.
        let plain: [u8; 32] = sha2::Sha256::digest(b"123456").into();
        assert_ne!(d, plain);

        let token = (PathBuf::from("/m.so"), "serial:unit-test-1".to_owned());
        let other = (PathBuf::from("/m.so"), "serial:unit-test-2".to_owned());
        let mut reg = refused_pins::lock();
        reg.record(
            token.clone(),
            d,
            Refusal::Incorrect {
                device: "t".into(),
                tries_left: Some(2),
            },
        );
        assert!(matches!(
            reg.refusal(&token, &d).map(Refusal::to_error),
            Some(BackendError::PinIncorrect {
                tries_left: Some(2),
                ..
            })
        ));
        assert!(reg.refusal(&other, &d).is_none(), "another token");
        let fixed = refused_pins::digest(&SecretString::from("654321".to_owned()));
        assert!(reg.refusal(&token, &fixed).is_none(), "another PIN");
    }
}
