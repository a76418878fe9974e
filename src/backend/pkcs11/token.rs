//! Finding a token by label or serial, and logging in to it: once, and never twice with a PIN
//! the token has rejected.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use cryptoki::error::{Error as CkError, RvError};
use cryptoki::session::{Session, SessionState, UserType};
use cryptoki::slot::Slot;
use secrecy::SecretString;

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

/// Why logging in is refused from now on.
#[derive(Debug, Clone)]
enum Refusal {
    Incorrect {
        device: String,
        tries_left: Option<u32>,
    },
    Blocked {
        device: String,
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
        }
    }
}

/// The user PIN of one key, and the memory of whether the token refused it.
///
/// A rejected PIN is never presented again by this key, whatever happens later (a reopen after
/// a session loss included): each try spends one of the token's few tries before it locks.
pub(crate) struct Login {
    pin: Option<SecretString>,
    refused: Mutex<Option<Refusal>>,
    attempts: AtomicU64,
}

impl Login {
    pub(crate) fn new(pin: Option<SecretString>) -> Self {
        Login {
            pin,
            refused: Mutex::new(None),
            attempts: AtomicU64::new(0),
        }
    }

    /// How many times `C_Login` was called for this key.
    pub(crate) fn attempts(&self) -> u64 {
        self.attempts.load(Ordering::Relaxed)
    }

    fn refuse(&self, r: Refusal) -> BackendError {
        let err = r.to_error();
        *self.refused.lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
        err
    }

    /// Makes sure the token is logged in (login state is shared by all sessions of the process
    /// on that token), presenting the PIN at most once.
    pub(crate) fn ensure(
        &self,
        module: &Module,
        session: &Session,
        token: &FoundToken,
    ) -> Result<(), BackendError> {
        if let Some(r) = &*self.refused.lock().unwrap_or_else(|p| p.into_inner()) {
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
            return Err(self.refuse(Refusal::Blocked { device: name }));
        }
        if !info.login_required() {
            return Ok(());
        }
        let Some(pin) = &self.pin else {
            return Err(BackendError::PinSource {
                source_name: "(none given)".into(),
                reason: format!(
                    "{name} requires a user PIN; add `pin-source=env:NAME` (or file:PATH, prompt) to the URI"
                ),
            });
        };
        self.attempts.fetch_add(1, Ordering::Relaxed);
        match session.login(UserType::User, Some(pin)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(()),
            Err(CkError::Pkcs11(RvError::PinIncorrect, _)) => {
                // Read the flags again: they now say how close the PIN is to locking.
                let flags = module.ctx().get_token_info(token.slot).ok();
                let final_try = flags.as_ref().is_some_and(|i| i.user_pin_final_try());
                let low = flags.as_ref().is_some_and(|i| i.user_pin_count_low());
                let locked = flags.as_ref().is_some_and(|i| i.user_pin_locked());
                if locked {
                    return Err(self.refuse(Refusal::Blocked { device: name }));
                }
                let (device, tries_left) = if final_try {
                    (name, Some(1))
                } else if low {
                    // The token says "low" without a number (CKF_USER_PIN_COUNT_LOW): say so
                    // rather than guess one.
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
                Err(self.refuse(Refusal::Incorrect { device, tries_left }))
            }
            Err(CkError::Pkcs11(RvError::PinLocked, _)) => {
                Err(self.refuse(Refusal::Blocked { device: name }))
            }
            Err(e) => Err(fault::device(&name, "login", &e)),
        }
    }
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("pin", &self.pin.as_ref().map(|_| "[REDACTED]"))
            .field(
                "refused",
                &self.refused.lock().map(|r| r.is_some()).unwrap_or(true),
            )
            .field("attempts", &self.attempts())
            .finish()
    }
}
