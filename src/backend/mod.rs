//! Keys and the devices that hold them: the bottom layer.
//!
//! A [`KeyBackend`] signs a message with a credential key and hands back the signature in the
//! encoding Dfns expects on the wire (DER ECDSA over SHA-256, raw Ed25519, RSASSA-PKCS1-v1_5 with
//! SHA-256). It knows nothing of Dfns or HTTP. Device calls are blocking; the client runs them off
//! the async runtime.
//!
//! Keys are named by one URI each ([`KeyUri`]): `file:/path/key.pem`, an RFC 7512 `pkcs11:` URI,
//! or `piv:slot=9a?serial=…`. [`open`] turns a URI into a backend.

mod pin;
mod public_key;
#[cfg(any(feature = "pkcs11", feature = "piv"))]
pub(crate) mod refused_pins;
pub mod software;
mod uri;

#[cfg(feature = "pkcs11")]
pub mod pkcs11;

#[cfg(feature = "piv")]
pub mod piv;

use std::fmt;
use std::sync::Arc;

pub use crate::error::BackendError;
pub use pin::PinSource;
pub use public_key::{PublicKey, SignatureVerifier};
pub use uri::{KeyUri, UriAttributes};

/// A signature algorithm Dfns accepts for `Key` credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Algorithm {
    /// ECDSA on NIST P-256 over SHA-256, DER-encoded signature.
    EcdsaP256,
    /// ECDSA on secp256k1 over SHA-256, DER-encoded signature.
    EcdsaSecp256k1,
    /// Pure Ed25519 (no prehash), 64-byte signature.
    Ed25519,
    /// RSASSA-PKCS1-v1_5 with SHA-256 (2048 bits or more).
    RsaPkcs1Sha256,
}

impl Algorithm {
    /// A short name, as used in CLI flags and logs (`p256`, `secp256k1`, `ed25519`, `rsa`).
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::EcdsaP256 => "p256",
            Algorithm::EcdsaSecp256k1 => "secp256k1",
            Algorithm::Ed25519 => "ed25519",
            Algorithm::RsaPkcs1Sha256 => "rsa",
        }
    }

    /// Parses a name given by [`Algorithm::name`] (also accepts `rsa2048`, `p-256`, `es256`).
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name.to_ascii_lowercase().as_str() {
            "p256" | "p-256" | "es256" | "ecdsa-p256" | "secp256r1" => Algorithm::EcdsaP256,
            "secp256k1" | "k256" | "es256k" => Algorithm::EcdsaSecp256k1,
            "ed25519" | "eddsa" => Algorithm::Ed25519,
            "rsa" | "rsa2048" | "rsa-2048" | "rs256" => Algorithm::RsaPkcs1Sha256,
            _ => return None,
        })
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A credential key that can sign Dfns challenges.
///
/// Implementations hold the key (or a handle to it on a device) and sign **unhashed** messages:
/// hashing, when the algorithm needs it, is the backend's job, as is turning a device's raw
/// `r‖s` into DER. `sign` may block on device I/O or on a person touching a key; call it from a
/// blocking-friendly thread.
pub trait KeyBackend: Send + Sync + fmt::Debug {
    /// The key's public half, as SPKI.
    fn public_key(&self) -> &PublicKey;

    /// Signs `message` (not hashed) and returns the signature in Dfns' wire encoding.
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, BackendError>;

    /// A one-line description of where the key lives, for logs and errors (no secrets).
    fn describe(&self) -> String;

    /// The key's algorithm.
    fn algorithm(&self) -> Algorithm {
        self.public_key().algorithm()
    }

    /// Whether a signature may wait for a person (a YubiKey's touch). Callers that put a
    /// deadline on signing give such keys longer.
    fn waits_for_user(&self) -> bool {
        false
    }

    /// Whether `sign` returns within tens of microseconds without waiting for anything: no
    /// device, no I/O, no person (a key in this process's memory). Async callers then sign on
    /// the calling task, for a thread hop would cost more than the signature; for other keys
    /// they hand `sign` to a blocking thread under a deadline (the client's `sign_blocking`).
    /// Default `false`, the safe answer: a key that says `true` and then blocks stalls the
    /// async runtime, its signature escapes the sign deadline, and a panic in `sign` unwinds the
    /// caller's task instead of coming back as `ClientError::SignTask`.
    fn signs_without_blocking(&self) -> bool {
        false
    }

    /// Whether the key's device is there and still holds this key, found without a PIN, a
    /// touch or a signature: never spends a PIN try, so a service may ask it as often as its
    /// readiness probe runs. Default `Ok(())` (a key in memory is always there); the PKCS#11
    /// backend looks for its token and its public key object.
    fn check_ready(&self) -> Result<(), BackendError> {
        Ok(())
    }

    /// The key's pool of device sessions, for metrics: `None` for a key without one (software
    /// keys, a YubiKey's single card connection).
    fn session_pool(&self) -> Option<SessionPool> {
        None
    }
}

/// A key's pool of device sessions (PKCS#11), as [`KeyBackend::session_pool`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionPool {
    /// Sessions open now, idle or in use.
    pub open: usize,
    /// The most sessions the pool opens.
    pub capacity: usize,
    /// Signatures that had to wait for a session, since the key was opened.
    pub waits: u64,
}

impl SessionPool {
    /// A pool's figures.
    pub fn new(open: usize, capacity: usize, waits: u64) -> SessionPool {
        SessionPool {
            open,
            capacity,
            waits,
        }
    }
}

impl<T: KeyBackend + ?Sized> KeyBackend for Arc<T> {
    fn public_key(&self) -> &PublicKey {
        (**self).public_key()
    }
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, BackendError> {
        (**self).sign(message)
    }
    fn describe(&self) -> String {
        (**self).describe()
    }
    fn waits_for_user(&self) -> bool {
        (**self).waits_for_user()
    }
    fn signs_without_blocking(&self) -> bool {
        (**self).signs_without_blocking()
    }
    fn check_ready(&self) -> Result<(), BackendError> {
        (**self).check_ready()
    }
    fn session_pool(&self) -> Option<SessionPool> {
        (**self).session_pool()
    }
}

impl<T: KeyBackend + ?Sized> KeyBackend for Box<T> {
    fn public_key(&self) -> &PublicKey {
        (**self).public_key()
    }
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, BackendError> {
        (**self).sign(message)
    }
    fn describe(&self) -> String {
        (**self).describe()
    }
    fn waits_for_user(&self) -> bool {
        (**self).waits_for_user()
    }
    fn signs_without_blocking(&self) -> bool {
        (**self).signs_without_blocking()
    }
    fn check_ready(&self) -> Result<(), BackendError> {
        (**self).check_ready()
    }
    fn session_pool(&self) -> Option<SessionPool> {
        (**self).session_pool()
    }
}

/// Opens the key a URI names.
///
/// `file:` keys are read at once; `pkcs11:` and `piv:` keys open the device, log in with the PIN
/// from the URI's `pin-source` and read the public key, so that a wrong URI or PIN fails here
/// rather than at the first signature.
pub fn open(uri: &KeyUri) -> Result<Arc<dyn KeyBackend>, BackendError> {
    match uri {
        KeyUri::File { path } => Ok(Arc::new(software::SoftwareKey::from_pem_file(path)?)),
        #[cfg(feature = "pkcs11")]
        KeyUri::Pkcs11(attrs) => pkcs11::open_uri(attrs),
        #[cfg(feature = "piv")]
        KeyUri::Piv(attrs) => piv::open_uri(attrs),
        #[allow(unreachable_patterns)]
        other => Err(BackendError::InvalidUri {
            uri: other.to_string(),
            reason: format!(
                "this build of dfns-signer has no `{}` backend; rebuild with that cargo feature",
                other.scheme()
            ),
        }),
    }
}
