//! The PINs devices refused, for the whole process, shared by the PKCS#11 and PIV backends.
//!
//! Every try of a wrong PIN brings a token or a YubiKey closer to locking, and one process may
//! open several keys on one device with one PIN source (a backend opening N keys, key
//! generation, a reopen after a session loss, a loop around `open()`): the memory of a refusal
//! must outlive the handle that met it. So refusals are kept here, per device and PIN, until the
//! process ends, and every backend asks before it presents a PIN.
//!
//! A PIN is kept only as a keyed digest, SHA-256(per-process random key ‖ PIN), in memory: it
//! cannot be read back from a dump without the key, and nothing is written anywhere. A different
//! PIN (the operator fixed the variable) may be tried.
//!
//! Callers hold the [`lock`] across the login or VERIFY it guards, so that two handles with the
//! same wrong PIN cannot both present it before either records the refusal.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, OnceLock};

use secrecy::{ExposeSecret, SecretString};
use sha2::Digest;

use crate::error::BackendError;

/// A keyed digest of a PIN.
pub(crate) type PinDigest = [u8; 32];

/// Why a PIN is never presented to a device again.
#[derive(Debug, Clone)]
pub(crate) enum Refusal {
    /// The device said the PIN is wrong.
    Incorrect {
        device: String,
        tries_left: Option<u32>,
    },
    /// The device said the PIN is blocked.
    Blocked { device: String },
    /// Presenting it again would be unsafe for another reason: the device wants it changed
    /// (`CKR_PIN_EXPIRED`), or a login/VERIFY with it ended without an answer, so the device may
    /// have counted a wrong try.
    Unusable {
        device: String,
        operation: String,
        reason: String,
    },
}

impl Refusal {
    /// The error every later use of the refused PIN gets.
    pub(crate) fn to_error(&self) -> BackendError {
        match self {
            Refusal::Incorrect { device, tries_left } => BackendError::PinIncorrect {
                device: device.clone(),
                tries_left: *tries_left,
            },
            Refusal::Blocked { device } => BackendError::PinBlocked {
                device: device.clone(),
            },
            Refusal::Unusable {
                device,
                operation,
                reason,
            } => BackendError::Device {
                device: device.clone(),
                operation: operation.clone(),
                reason: reason.clone(),
                source: None,
            },
        }
    }
}

/// The refusals of the process, by device (`pkcs11:<module>:<serial>`, `piv:<serial>`).
pub(crate) struct Registry {
    refused: HashMap<String, Vec<(PinDigest, Refusal)>>,
}

impl Registry {
    /// Why `pin` must not be presented to `device`, if it must not.
    pub(crate) fn refusal(&self, device: &str, pin: &PinDigest) -> Option<&Refusal> {
        self.refused
            .get(device)?
            .iter()
            .find(|(d, _)| d == pin)
            .map(|(_, r)| r)
    }

    /// Records that `device` refused `pin` (replacing an older refusal of the same PIN).
    pub(crate) fn record(&mut self, device: String, pin: PinDigest, refusal: Refusal) {
        let list = self.refused.entry(device).or_default();
        list.retain(|(d, _)| *d != pin);
        list.push((pin, refusal));
    }
}

/// The registry, locked. Hold it across the login it guards.
pub(crate) fn lock() -> MutexGuard<'static, Registry> {
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
pub(crate) fn digest(pin: &SecretString) -> PinDigest {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_pins_are_kept_as_keyed_digests_per_device() {
        let pin = SecretString::from("123456".to_owned());
        let d = digest(&pin);
        assert_eq!(d, digest(&pin), "stable within the process");
        assert_ne!(d, digest(&SecretString::from("123457".to_owned())));
        // Keyed: not the plain SHA-256 of the PIN, which a dictionary would reverse.
        let plain: [u8; 32] = sha2::Sha256::digest(b"123456").into();
        assert_ne!(d, plain);

        let device = "pkcs11:/m.so:serial:unit-test-1";
        let mut reg = lock();
        reg.record(
            device.to_owned(),
            d,
            Refusal::Incorrect {
                device: "t".into(),
                tries_left: Some(2),
            },
        );
        assert!(matches!(
            reg.refusal(device, &d).map(Refusal::to_error),
            Some(BackendError::PinIncorrect {
                tries_left: Some(2),
                ..
            })
        ));
        assert!(
            reg.refusal("pkcs11:/m.so:serial:unit-test-2", &d).is_none(),
            "another device"
        );
        let fixed = digest(&SecretString::from("654321".to_owned()));
        assert!(reg.refusal(device, &fixed).is_none(), "another PIN");
    }
}
