//! Finding a token by label or serial, and logging in to it: once, never twice with a PIN the
//! token has rejected (by any key of the process: see [`crate::backend::refused_pins`]), and
//! never on the last try unless allowed.

use std::sync::atomic::{AtomicU64, Ordering};

use cryptoki::error::{Error as CkError, RvError};
use cryptoki::session::{Session, SessionState, UserType};
use cryptoki::slot::Slot;
use secrecy::SecretString;

use super::fault;
use super::module::Module;
use crate::backend::refused_pins::{self, Refusal};
use crate::error::BackendError;

/// Which token to use: by label, serial number, manufacturer, model and/or slot id (RFC 7512
/// `token`, `serial`, `manufacturer`, `model`, `slot-id`); every one given must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TokenSelector {
    pub(crate) label: Option<String>,
    pub(crate) serial: Option<String>,
    pub(crate) manufacturer: Option<String>,
    pub(crate) model: Option<String>,
    pub(crate) slot_id: Option<u64>,
}

impl TokenSelector {
    fn wanted(&self) -> String {
        let mut parts = Vec::new();
        if let Some(l) = &self.label {
            parts.push(format!("token \"{l}\""));
        }
        if let Some(s) = &self.serial {
            parts.push(format!("serial {s}"));
        }
        if let Some(m) = &self.manufacturer {
            parts.push(format!("manufacturer \"{m}\""));
        }
        if let Some(m) = &self.model {
            parts.push(format!("model \"{m}\""));
        }
        if let Some(id) = self.slot_id {
            parts.push(format!("slot {id}"));
        }
        if parts.is_empty() {
            "an initialised token".to_owned()
        } else {
            format!("a token with {}", parts.join(", "))
        }
    }

    fn matches(&self, t: &FoundToken) -> bool {
        self.label.as_ref().is_none_or(|l| *l == t.label)
            && self
                .serial
                .as_ref()
                .is_none_or(|s| s.eq_ignore_ascii_case(&t.serial))
            && self
                .manufacturer
                .as_ref()
                .is_none_or(|m| *m == t.manufacturer)
            && self.model.as_ref().is_none_or(|m| *m == t.model)
            && self.slot_id.is_none_or(|id| id == t.slot.id())
    }
}

/// A token found in a slot.
#[derive(Debug, Clone)]
pub(crate) struct FoundToken {
    pub(crate) slot: Slot,
    pub(crate) label: String,
    pub(crate) serial: String,
    pub(crate) manufacturer: String,
    pub(crate) model: String,
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
        .map_err(|e| fault::device(&module_name, "listing slots", e))?;
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
                manufacturer: info.manufacturer_id().trim_end().to_owned(),
                model: info.model().trim_end().to_owned(),
            }),
            Ok(_) => {}
            Err(_) => unreadable += 1,
        }
    }
    let matches: Vec<&FoundToken> = tokens.iter().filter(|t| sel.matches(t)).collect();
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

/// The user PIN of one key, and how often this key presented it.
///
/// A PIN refused by a token is never presented to it again by any key of the process, whatever
/// happens later (a reopen after a session loss included): each try spends one of the token's
/// few tries before it locks (see [`crate::backend::refused_pins`]).
pub(crate) struct Login {
    pin: Option<SecretString>,
    allow_last_try: bool,
    attempts: AtomicU64,
}

impl Login {
    pub(crate) fn new(pin: Option<SecretString>, allow_last_try: bool) -> Self {
        Login {
            pin,
            allow_last_try,
            attempts: AtomicU64::new(0),
        }
    }

    /// How many times `C_Login` was called for this key.
    pub(crate) fn attempts(&self) -> u64 {
        self.attempts.load(Ordering::Relaxed)
    }

    /// Makes sure the token is logged in (login state is shared by all sessions of the process
    /// on that token), presenting a PIN at most once per token and process if it is refused,
    /// and never on the token's last try unless allowed.
    pub(crate) fn ensure(
        &self,
        module: &Module,
        session: &Session,
        token: &FoundToken,
    ) -> Result<(), BackendError> {
        let name = token.name();
        let state = session
            .get_session_info()
            .map_err(|e| fault::device(&name, "reading session state", e))?;
        if matches!(
            state.session_state(),
            SessionState::RoUser | SessionState::RwUser
        ) {
            // Logged in already; a PIN this process saw refused still stops here.
            return match self.known_refusal(module, token) {
                Some(e) => Err(e),
                None => Ok(()),
            };
        }
        self.present(module, session, token, UserType::User)
    }

    /// The context-specific login (`C_Login(CKU_CONTEXT_SPECIFIC)`) a `CKA_ALWAYS_AUTHENTICATE`
    /// key needs between `C_SignInit` and the signature, under the same rules as the user login:
    /// a PIN refused once is never presented again, the last try is kept unless allowed.
    pub(crate) fn context_specific(
        &self,
        module: &Module,
        session: &Session,
        token: &FoundToken,
    ) -> Result<(), BackendError> {
        self.present(module, session, token, UserType::ContextSpecific)
    }

    /// The refusal this process recorded for our PIN on `token`, as an error.
    fn known_refusal(&self, module: &Module, token: &FoundToken) -> Option<BackendError> {
        let digest = refused_pins::digest(self.pin.as_ref()?);
        let registry = refused_pins::lock();
        registry
            .refusal(&device_key(module, token), &digest)
            .map(|r| r.to_error())
    }

    /// Presents the PIN as `user_type`, once: checks the process-wide refusals and the token's
    /// flags first, and records any refusal (or unknown outcome) before returning.
    fn present(
        &self,
        module: &Module,
        session: &Session,
        token: &FoundToken,
        user_type: UserType,
    ) -> Result<(), BackendError> {
        let device_key = device_key(module, token);
        let digest = self.pin.as_ref().map(refused_pins::digest);
        // Held until the outcome is recorded: see `refused_pins`.
        let mut registry = refused_pins::lock();
        if let Some(r) = digest.and_then(|d| registry.refusal(&device_key, &d)) {
            return Err(r.to_error());
        }
        let name = token.name();
        let info = module
            .ctx()
            .get_token_info(token.slot)
            .map_err(|e| fault::device(&name, "reading token flags", e))?;
        if info.user_pin_locked() {
            return Err(BackendError::PinBlocked { device: name });
        }
        if matches!(user_type, UserType::User) && !info.login_required() {
            return Ok(());
        }
        let (Some(pin), Some(digest)) = (&self.pin, digest) else {
            let why = if matches!(user_type, UserType::User) {
                "requires a user PIN"
            } else {
                "asks for the PIN before every signature with this key (CKA_ALWAYS_AUTHENTICATE)"
            };
            return Err(BackendError::PinSource {
                source_name: "(none given)".into(),
                reason: format!(
                    "{name} {why}; add `pin-source=env:NAME` (or file:PATH, prompt) to the URI"
                ),
            });
        };
        if info.user_pin_final_try() && !self.allow_last_try {
            return Err(BackendError::LastPinTry { device: name });
        }
        if info.user_pin_count_low() {
            tracing::warn!(
                token = %name,
                "the token reports few user PIN tries left (CKF_USER_PIN_COUNT_LOW); check the PIN"
            );
        }
        self.attempts.fetch_add(1, Ordering::Relaxed);
        let refusal = match session.login(user_type, Some(pin)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => return Ok(()),
            Err(CkError::Pkcs11(RvError::PinLocked, _)) => Refusal::Blocked { device: name },
            Err(e @ CkError::Pkcs11(RvError::PinExpired, _)) => Refusal::Unusable {
                device: name,
                operation: "login".into(),
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
            // The token never saw the PIN: nothing was counted.
            Err(
                e @ CkError::Pkcs11(
                    RvError::UserAnotherAlreadyLoggedIn
                    | RvError::UserTypeInvalid
                    | RvError::UserNotLoggedIn
                    | RvError::OperationNotInitialized
                    | RvError::SessionHandleInvalid
                    | RvError::CryptokiNotInitialized,
                    _,
                ),
            ) => return Err(fault::device(&name, "login", e)),
            // Device removed, network HSM dropped, anything else: the PIN may have reached the
            // token and cost a try, and we cannot tell whether it was right.
            Err(e) => Refusal::Unusable {
                device: name,
                operation: "login".into(),
                reason: format!(
                    "{}; the login's outcome is unknown (the token may have counted a wrong try), \
                     so this PIN is not presented again by this process: check the token and the \
                     PIN, then restart",
                    fault::describe(&e)
                ),
            },
        };
        let err = refusal.to_error();
        registry.record(device_key, digest, refusal);
        Err(err)
    }
}

/// How the process-wide registry names a token: module path and serial (the label when the
/// token reports no serial).
fn device_key(module: &Module, token: &FoundToken) -> String {
    format!(
        "pkcs11:{}:{}",
        module.path().display(),
        if token.serial.is_empty() {
            format!("label:{}", token.label)
        } else {
            format!("serial:{}", token.serial)
        }
    )
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
