//! Software keys: a private key held in this process's memory.
//!
//! For development, tests and the demo — **not** for production custody, where the point of
//! dfns-signer is that the key never leaves an HSM or a YubiKey. Keys load from PEM (PKCS#8,
//! SEC1 `EC PRIVATE KEY`, PKCS#1 `RSA PRIVATE KEY`) or are generated here. Every key type
//! zeroizes its secret on drop, and `Debug` shows only the algorithm and where the key came from.
//!
//! Signatures are deterministic for ECDSA (RFC 6979), Ed25519 and RSA PKCS#1 v1.5.

use std::fmt;
use std::path::Path;

use pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use signature::{Keypair, SignatureEncoding, Signer};
use spki::EncodePublicKey;
use zeroize::Zeroizing;

use super::{Algorithm, KeyBackend, PublicKey};
use crate::error::BackendError;

const RSA_BITS: usize = 2048;

/// A private key in memory (ECDSA P-256 or secp256k1, Ed25519, RSA 2048+).
pub struct SoftwareKey {
    key: Inner,
    public: PublicKey,
    origin: String,
}

enum Inner {
    P256(p256::ecdsa::SigningKey),
    K256(k256::ecdsa::SigningKey),
    Ed25519(ed25519_dalek::SigningKey),
    Rsa(Box<rsa::pkcs1v15::SigningKey<sha2::Sha256>>),
}

fn os_rng() -> rand_core::UnwrapErr<getrandom::SysRng> {
    rand_core::UnwrapErr(getrandom::SysRng)
}

impl SoftwareKey {
    /// Generates a new key. RSA keys are 2048 bits (this takes a moment).
    pub fn generate(algorithm: Algorithm) -> Result<Self, BackendError> {
        use p256::elliptic_curve::Generate;
        let mut rng = os_rng();
        let key = match algorithm {
            Algorithm::EcdsaP256 => {
                Inner::P256(p256::ecdsa::SigningKey::generate_from_rng(&mut rng))
            }
            Algorithm::EcdsaSecp256k1 => {
                Inner::K256(k256::ecdsa::SigningKey::generate_from_rng(&mut rng))
            }
            Algorithm::Ed25519 => Inner::Ed25519(ed25519_dalek::SigningKey::generate(&mut rng)),
            Algorithm::RsaPkcs1Sha256 => Inner::Rsa(Box::new(
                rsa::pkcs1v15::SigningKey::random(&mut rng, RSA_BITS)
                    .map_err(|e| BackendError::Crypto(format!("RSA key generation: {e}")))?,
            )),
        };
        Self::from_inner(key, format!("new {algorithm} software key"))
    }

    /// Reads a key from a PEM file (PKCS#8, SEC1 or PKCS#1).
    pub fn from_pem_file(path: &Path) -> Result<Self, BackendError> {
        let what = format!("file {}", path.display());
        let text =
            Zeroizing::new(
                std::fs::read_to_string(path).map_err(|e| BackendError::KeyLoad {
                    what: what.clone(),
                    reason: format!("{e}; give the path of a PEM private key"),
                })?,
            );
        Self::from_pem(&text, &what)
    }

    /// Reads a key from PEM text. `origin` names it in logs and errors (a path, say).
    pub fn from_pem(pem: &str, origin: &str) -> Result<Self, BackendError> {
        let fail = |reason: String| BackendError::KeyLoad {
            what: origin.to_owned(),
            reason,
        };
        let label = pem
            .lines()
            .map(str::trim)
            .find_map(|l| {
                l.strip_prefix("-----BEGIN ")
                    .and_then(|l| l.strip_suffix("-----"))
            })
            .ok_or_else(|| {
                fail("no PEM block found (expected `-----BEGIN PRIVATE KEY-----`)".into())
            })?;
        let key = match label {
            "PRIVATE KEY" => Self::from_pkcs8_pem(pem).map_err(fail)?,
            "EC PRIVATE KEY" => {
                if let Ok(k) = p256::SecretKey::from_sec1_pem(pem) {
                    Inner::P256(k.into())
                } else if let Ok(k) = k256::SecretKey::from_sec1_pem(pem) {
                    Inner::K256(k.into())
                } else {
                    return Err(fail(
                        "SEC1 EC key is not on P-256 or secp256k1 (the curves Dfns accepts)".into(),
                    ));
                }
            }
            "RSA PRIVATE KEY" => {
                use rsa::pkcs1::DecodeRsaPrivateKey;
                let k = rsa::RsaPrivateKey::from_pkcs1_pem(pem)
                    .map_err(|e| fail(format!("invalid PKCS#1 RSA key: {e}")))?;
                Inner::Rsa(Box::new(rsa::pkcs1v15::SigningKey::new(k)))
            }
            "ENCRYPTED PRIVATE KEY" => {
                return Err(fail(
                    "encrypted PKCS#8 keys are not supported; keep software keys only for tests, \
                     or use an HSM or YubiKey"
                        .into(),
                ))
            }
            "PUBLIC KEY" => {
                return Err(fail(
                    "this is a public key; a private key is needed to sign".into(),
                ))
            }
            other => return Err(fail(format!("unsupported PEM block `{other}`"))),
        };
        Self::from_inner(key, origin.to_owned())
    }

    fn from_pkcs8_pem(pem: &str) -> Result<Inner, String> {
        // PKCS#8 names its algorithm inside; try each type we support, most common first.
        if let Ok(k) = p256::ecdsa::SigningKey::from_pkcs8_pem(pem) {
            return Ok(Inner::P256(k));
        }
        if let Ok(k) = k256::ecdsa::SigningKey::from_pkcs8_pem(pem) {
            return Ok(Inner::K256(k));
        }
        if let Ok(k) = ed25519_dalek::SigningKey::from_pkcs8_pem(pem) {
            return Ok(Inner::Ed25519(k));
        }
        match rsa::RsaPrivateKey::from_pkcs8_pem(pem) {
            Ok(k) => Ok(Inner::Rsa(Box::new(rsa::pkcs1v15::SigningKey::new(k)))),
            Err(_) => Err(
                "PKCS#8 key is not P-256, secp256k1, Ed25519 or RSA (the algorithms Dfns accepts)"
                    .into(),
            ),
        }
    }

    fn from_inner(key: Inner, origin: String) -> Result<Self, BackendError> {
        let der = match &key {
            Inner::P256(k) => k.verifying_key().to_public_key_der(),
            Inner::K256(k) => k.verifying_key().to_public_key_der(),
            Inner::Ed25519(k) => k.verifying_key().to_public_key_der(),
            Inner::Rsa(k) => k.verifying_key().to_public_key_der(),
        }
        .map_err(|e| BackendError::KeyLoad {
            what: origin.clone(),
            reason: e.to_string(),
        })?;
        // `from_spki_der` also refuses RSA keys under 2048 bits.
        let public =
            PublicKey::from_spki_der(der.as_bytes()).map_err(|e| BackendError::KeyLoad {
                what: origin.clone(),
                reason: e.to_string(),
            })?;
        Ok(SoftwareKey {
            key,
            public,
            origin,
        })
    }

    /// The private key as PKCS#8 PEM, for saving a generated key (zeroized when dropped).
    pub fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>, BackendError> {
        match &self.key {
            Inner::P256(k) => k.to_pkcs8_pem(LineEnding::LF),
            Inner::K256(k) => k.to_pkcs8_pem(LineEnding::LF),
            Inner::Ed25519(k) => k.to_pkcs8_pem(LineEnding::LF),
            Inner::Rsa(k) => k.to_pkcs8_pem(LineEnding::LF),
        }
        .map_err(|e| BackendError::Crypto(format!("cannot encode the key: {e}")))
    }
}

impl KeyBackend for SoftwareKey {
    fn public_key(&self) -> &PublicKey {
        &self.public
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, BackendError> {
        let fail = |e: signature::Error| BackendError::Crypto(e.to_string());
        Ok(match &self.key {
            Inner::P256(k) => {
                let sig: p256::ecdsa::Signature = k.try_sign(message).map_err(fail)?;
                sig.to_der().to_vec()
            }
            Inner::K256(k) => {
                let sig: k256::ecdsa::Signature = k.try_sign(message).map_err(fail)?;
                sig.to_der().to_vec()
            }
            Inner::Ed25519(k) => k.try_sign(message).map_err(fail)?.to_bytes().to_vec(),
            Inner::Rsa(k) => k.try_sign(message).map_err(fail)?.to_vec(),
        })
    }

    fn describe(&self) -> String {
        format!("{} software key ({})", self.public.algorithm(), self.origin)
    }
}

impl fmt::Debug for SoftwareKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SoftwareKey")
            .field("algorithm", &self.public.algorithm())
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

/// A signature from a [`SoftwareKey`], in Dfns' wire encoding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WireSignature(pub Vec<u8>);

impl SignatureEncoding for WireSignature {
    type Repr = Vec<u8>;
}

impl TryFrom<&[u8]> for WireSignature {
    type Error = signature::Error;
    fn try_from(bytes: &[u8]) -> Result<Self, Self::Error> {
        Ok(WireSignature(bytes.to_vec()))
    }
}

impl From<WireSignature> for Vec<u8> {
    fn from(s: WireSignature) -> Vec<u8> {
        s.0
    }
}

/// RustCrypto `Signer`: plug a software key into code written against the `signature` traits.
impl Signer<WireSignature> for SoftwareKey {
    fn try_sign(&self, msg: &[u8]) -> Result<WireSignature, signature::Error> {
        KeyBackend::sign(self, msg)
            .map(WireSignature)
            .map_err(signature::Error::from_source)
    }
}

/// RustCrypto `Keypair`: the verifying key is the SPKI-carrying [`PublicKey`].
impl Keypair for SoftwareKey {
    type VerifyingKey = PublicKey;
    fn verifying_key(&self) -> PublicKey {
        self.public.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_algorithm_generates_signs_and_verifies() {
        for alg in [
            Algorithm::EcdsaP256,
            Algorithm::EcdsaSecp256k1,
            Algorithm::Ed25519,
            Algorithm::RsaPkcs1Sha256,
        ] {
            let key = SoftwareKey::generate(alg).unwrap();
            assert_eq!(key.algorithm(), alg);
            let sig = KeyBackend::sign(&key, b"hello dfns").unwrap();
            key.public_key().verify(b"hello dfns", &sig).unwrap();
            assert!(
                key.public_key().verify(b"hello dfnS", &sig).is_err(),
                "{alg}"
            );
            // Round trip through PKCS#8 gives the same public key.
            let pem = key.to_pkcs8_pem().unwrap();
            let again = SoftwareKey::from_pem(&pem, "round trip").unwrap();
            assert_eq!(again.public_key(), key.public_key());
        }
    }

    #[test]
    fn debug_never_shows_key_material() {
        let key = SoftwareKey::generate(Algorithm::Ed25519).unwrap();
        let pem = key.to_pkcs8_pem().unwrap();
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let dbg = format!("{key:?} {}", key.describe());
        assert!(!dbg.contains(&body), "{dbg}");
        assert!(dbg.contains("ed25519"), "{dbg}");
    }

    #[test]
    fn refuses_public_keys_and_garbage() {
        let err = SoftwareKey::from_pem(
            "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
            "t",
        )
        .unwrap_err();
        assert!(err.to_string().contains("private key is needed"), "{err}");
        assert!(SoftwareKey::from_pem("nonsense", "t").is_err());
        let err = SoftwareKey::from_pem_file(Path::new("/nonexistent/key.pem")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/key.pem"), "{err}");
    }
}

#[cfg(test)]
mod pem_form_tests {
    use super::*;

    /// SEC1 (`EC PRIVATE KEY`) and PKCS#1 (`RSA PRIVATE KEY`) files, as OpenSSL's older commands
    /// write them, load to the same key as PKCS#8.
    #[test]
    fn sec1_and_pkcs1_pem_load() {
        use p256::elliptic_curve::Generate as _;
        use rsa::pkcs1::EncodeRsaPrivateKey;

        let p = p256::SecretKey::generate_from_rng(&mut os_rng());
        let pem = p.to_sec1_pem(LineEnding::LF).unwrap();
        let key = SoftwareKey::from_pem(&pem, "sec1").unwrap();
        assert_eq!(key.algorithm(), Algorithm::EcdsaP256);
        let k = k256::SecretKey::generate_from_rng(&mut os_rng());
        let key = SoftwareKey::from_pem(&k.to_sec1_pem(LineEnding::LF).unwrap(), "sec1").unwrap();
        assert_eq!(key.algorithm(), Algorithm::EcdsaSecp256k1);

        let r = rsa::RsaPrivateKey::new(&mut os_rng(), 2048).unwrap();
        let key = SoftwareKey::from_pem(&r.to_pkcs1_pem(LineEnding::LF).unwrap(), "pkcs1").unwrap();
        assert_eq!(key.algorithm(), Algorithm::RsaPkcs1Sha256);
        let sig = KeyBackend::sign(&key, b"m").unwrap();
        key.public_key().verify(b"m", &sig).unwrap();

        // RSA under 2048 bits is refused.
        let small = rsa::RsaPrivateKey::new(&mut os_rng(), 1024).unwrap();
        let err = SoftwareKey::from_pem(&small.to_pkcs1_pem(LineEnding::LF).unwrap(), "small")
            .unwrap_err();
        assert!(err.to_string().contains("2048"), "{err}");
    }

    /// The RustCrypto traits work generically.
    #[test]
    fn signature_traits() {
        fn sign_with<S: Signer<WireSignature> + Keypair<VerifyingKey = PublicKey>>(
            s: &S,
        ) -> (PublicKey, WireSignature) {
            (s.verifying_key(), s.sign(b"generic"))
        }
        let key = SoftwareKey::generate(Algorithm::EcdsaSecp256k1).unwrap();
        let (public, sig) = sign_with(&key);
        public.verify(b"generic", &sig.0).unwrap();
    }
}
