//! Making a YubiKey fit for signing at a desk: find its factory credentials without spending a
//! PIN try, change the PIN and the PUK, and replace the factory management key by a random one
//! stored PIN-protected on the card.
//!
//! A card that still has the factory PIN (123456), PUK (12345678) or management key signs for
//! anyone who picks it up; `dfns-signer piv setup` and `keys generate` refuse such a card
//! unless told it is a throw-away one. Detection reads the card's metadata (firmware 5.3 and
//! later), which costs no try; older cards cannot tell, and that is reported as unknown.

use secrecy::{ExposeSecret, SecretString};
use yubikey::piv::{self, ManagementSlotId, SlotId};
use yubikey::{MgmAlgorithmId, MgmKey};
use zeroize::Zeroizing;

use super::device::{ManagementKey, OpError, PivDevice};
use crate::error::BackendError;

/// The PIN every YubiKey leaves the factory with.
pub const FACTORY_PIN: &str = "123456";
/// The PUK every YubiKey leaves the factory with.
pub const FACTORY_PUK: &str = "12345678";

/// Which factory credentials a card still has (`None`: the card cannot tell, firmware < 5.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct FactoryDefaults {
    /// The PIN is 123456.
    pub pin: Option<bool>,
    /// The PUK is 12345678.
    pub puk: Option<bool>,
    /// The management key is the factory one.
    pub management_key: Option<bool>,
}

impl FactoryDefaults {
    /// The credentials known to be the factory ones (`pin`, `puk`, `management key`).
    pub fn remaining(&self) -> Vec<&'static str> {
        [
            (self.pin, "PIN"),
            (self.puk, "PUK"),
            (self.management_key, "management key"),
        ]
        .into_iter()
        .filter(|(default, _)| *default == Some(true))
        .map(|(_, name)| name)
        .collect()
    }
}

/// The two secrets CHANGE REFERENCE DATA changes.
#[derive(Clone, Copy)]
enum Reference {
    Pin,
    Puk,
}

/// What became of the management key in [`PivDevice::protect_management_key`].
#[derive(Debug)]
#[non_exhaustive]
pub enum NewManagementKey {
    /// A random key is set and stored on the card, readable only after the PIN.
    Protected,
    /// A random key is set but could not be stored on the card: this is the only copy, for the
    /// caller to show once and the person to keep.
    NotStored {
        /// The key, hex.
        key_hex: Zeroizing<String>,
        /// Why it could not be stored.
        reason: String,
    },
}

/// Checks a new PIN or PUK before any try is spent: 6 to 8 ASCII characters, not the factory
/// value. The error never quotes the value.
fn check_new(what: &str, value: &SecretString, factory: &str) -> Result<(), BackendError> {
    let text = value.expose_secret();
    let reason = if !(6..=8).contains(&text.len()) || !text.is_ascii() {
        format!("a new {what} must be 6 to 8 ASCII characters")
    } else if text == factory {
        format!("the new {what} is the factory one; choose another")
    } else {
        return Ok(());
    };
    Err(BackendError::PinSource {
        source_name: format!("the new {what}"),
        reason: format!("{reason}; nothing was changed on the card"),
    })
}

fn default_flag(
    yk: &mut yubikey::YubiKey,
    slot: ManagementSlotId,
) -> Result<Option<bool>, yubikey::Error> {
    match piv::metadata(yk, SlotId::Management(slot)) {
        Ok(meta) => Ok(meta.default),
        Err(yubikey::Error::NotSupported) => Ok(None),
        Err(e) => Err(e),
    }
}

impl PivDevice {
    /// Which factory credentials the card still has, from its metadata: no PIN try is spent.
    pub fn factory_defaults(&self) -> Result<FactoryDefaults, BackendError> {
        self.run(|s, inner| {
            let yk = s.yubikey()?;
            let read = |yk: &mut yubikey::YubiKey, slot| {
                default_flag(yk, slot).map_err(|e| inner.fail("read the card's metadata", e))
            };
            Ok(FactoryDefaults {
                pin: read(yk, ManagementSlotId::Pin)?,
                puk: read(yk, ManagementSlotId::Puk)?,
                management_key: read(yk, ManagementSlotId::Management)?,
            })
        })
    }

    /// Changes the PIN from `current` to `new` (checked first: 6–8 characters, not 123456).
    /// A wrong `current` spends one try and is reported with the tries left; never retried.
    pub fn change_pin(
        &self,
        current: &SecretString,
        new: &SecretString,
    ) -> Result<(), BackendError> {
        check_new("PIN", new, FACTORY_PIN)?;
        self.change_reference(Reference::Pin, current, new)
    }

    /// Changes the PUK from `current` to `new` (6–8 characters, not 12345678). A wrong
    /// `current` spends one PUK try; never retried.
    pub fn change_puk(
        &self,
        current: &SecretString,
        new: &SecretString,
    ) -> Result<(), BackendError> {
        check_new("PUK", new, FACTORY_PUK)?;
        self.change_reference(Reference::Puk, current, new)
    }

    /// CHANGE REFERENCE DATA for the PIN or the PUK, once (a retry could spend a second try).
    fn change_reference(
        &self,
        which: Reference,
        current: &SecretString,
        new: &SecretString,
    ) -> Result<(), BackendError> {
        let (current, new) = (
            current.expose_secret().as_bytes(),
            new.expose_secret().as_bytes(),
        );
        let (label, operation) = match which {
            Reference::Pin => (self.label().to_owned(), "change the PIN"),
            Reference::Puk => (format!("{} (PUK)", self.label()), "change the PUK"),
        };
        self.run_once(|s, inner| {
            let yk = s.yubikey()?;
            match which {
                Reference::Pin => yk.change_pin(current, new),
                Reference::Puk => yk.change_puk(current, new),
            }
            .map_err(|e| match e {
                // `change_pin`/`change_puk` report a blocked PIN or PUK as `PinLocked`.
                yubikey::Error::WrongPin { tries: 0 } | yubikey::Error::PinLocked => {
                    OpError::Final(BackendError::PinBlocked {
                        device: label.clone(),
                    })
                }
                yubikey::Error::WrongPin { tries } => OpError::Final(BackendError::PinIncorrect {
                    device: label.clone(),
                    tries_left: Some(tries.into()),
                }),
                e => inner.fail(operation, e),
            })
        })
    }

    /// Replaces the management key `current` by a random one (AES-192 on firmware 5.7 and
    /// later, 3DES before, as the card's own default is) stored on the card behind `pin`, so
    /// that key generation later needs only the PIN. If the key is set but cannot be stored,
    /// it is returned for the caller to show once ([`NewManagementKey::NotStored`]).
    pub fn protect_management_key(
        &self,
        current: &ManagementKey,
        pin: &SecretString,
    ) -> Result<NewManagementKey, BackendError> {
        let modern = {
            let mut parts = self
                .info()
                .version
                .split('.')
                .map(|p| p.parse::<u32>().unwrap_or(0));
            (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) >= (5, 7)
        };
        let algorithm = if modern {
            MgmAlgorithmId::Aes192
        } else {
            MgmAlgorithmId::ThreeDes
        };
        let label = self.label().to_owned();
        self.run_once(|s, inner| {
            inner.authenticate(s, current)?;
            let yk = s.yubikey()?;
            yk.verify_pin(pin.expose_secret().as_bytes())
                .map_err(|e| match e {
                    yubikey::Error::WrongPin { tries } => {
                        OpError::Final(BackendError::PinIncorrect {
                            device: label.clone(),
                            tries_left: Some(tries.into()),
                        })
                    }
                    e => inner.fail("verify the PIN", e),
                })?;
            let new = MgmKey::generate(algorithm, &mut getrandom::SysRng)
                .map_err(|e| inner.fail("generate a management key", e))?;
            let key_hex = Zeroizing::new(hex::encode(new.as_ref()));
            match new.set_protected(yk) {
                Ok(()) => Ok(NewManagementKey::Protected),
                Err(e) => {
                    // `set_protected` sets the key first, then stores it: if the card now takes
                    // the new key, it was set, and this is its only copy.
                    let yk = s.yubikey()?;
                    if yk.authenticate(&new).is_ok() {
                        Ok(NewManagementKey::NotStored {
                            key_hex,
                            reason: e.to_string(),
                        })
                    } else {
                        Err(inner.fail("set the management key", e))
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_pins_are_checked_before_any_try_and_never_quoted() {
        let check = |v: &str| check_new("PIN", &SecretString::from(v.to_owned()), FACTORY_PIN);
        assert!(check("246810").is_ok());
        for bad in ["12345", "123456789", "123456", "pïn123"] {
            let err = check(bad).unwrap_err().to_string();
            assert!(!err.contains(bad), "{err}");
            assert!(err.contains("nothing was changed"), "{err}");
        }
    }

    #[test]
    fn remaining_names_only_the_known_factory_credentials() {
        let d = FactoryDefaults {
            pin: Some(true),
            puk: Some(false),
            management_key: None,
        };
        assert_eq!(d.remaining(), ["PIN"]);
    }
}
