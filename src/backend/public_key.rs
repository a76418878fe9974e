//! A credential's public key, kept as SPKI DER.
//!
//! Backends build it from whatever their device gives (an EC point, an RSA modulus and exponent,
//! an Ed25519 key); Dfns wants it as an SPKI PEM with 64-character lines. `verify` checks a
//! signature in Dfns' wire encoding, so every backend can be tested against the same rule.

use std::fmt;

use spki::der::{Decode, Encode};
use spki::{DecodePublicKey, EncodePublicKey, SubjectPublicKeyInfoRef};

use super::Algorithm;
use crate::error::BackendError;

const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_SECP256K1: &str = "1.3.132.0.10";
const OID_ED25519: &str = "1.3.101.112";
const OID_RSA: &str = "1.2.840.113549.1.1.1";

/// A public key and its algorithm.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    algorithm: Algorithm,
    spki_der: Vec<u8>,
}

impl PublicKey {
    /// Reads an SPKI (DER) and finds its algorithm; refuses curves and sizes Dfns does not take.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, BackendError> {
        let bad = |reason: String| BackendError::UnsupportedKey(reason);
        let spki = SubjectPublicKeyInfoRef::from_der(der)
            .map_err(|e| bad(format!("not a SubjectPublicKeyInfo: {e}")))?;
        let oid = spki.algorithm.oid.to_string();
        let algorithm = match oid.as_str() {
            OID_EC_PUBLIC_KEY => {
                let curve = spki
                    .algorithm
                    .parameters
                    .as_ref()
                    .and_then(|p| p.decode_as::<spki::ObjectIdentifier>().ok())
                    .map(|o| o.to_string())
                    .unwrap_or_default();
                match curve.as_str() {
                    OID_P256 => Algorithm::EcdsaP256,
                    OID_SECP256K1 => Algorithm::EcdsaSecp256k1,
                    other => {
                        return Err(bad(format!(
                            "EC curve {other} is not accepted for Dfns Key credentials (use P-256 or secp256k1)"
                        )))
                    }
                }
            }
            OID_ED25519 => Algorithm::Ed25519,
            OID_RSA => Algorithm::RsaPkcs1Sha256,
            other => {
                return Err(bad(format!(
                    "key algorithm {other} is not accepted by Dfns"
                )))
            }
        };
        let key = PublicKey {
            algorithm,
            spki_der: der.to_vec(),
        };
        // Parse once with the real crypto type, so a corrupt point or modulus fails here.
        key.check_parses()?;
        Ok(key)
    }

    /// Reads an SPKI PEM (`-----BEGIN PUBLIC KEY-----`).
    pub fn from_pem(pem: &str) -> Result<Self, BackendError> {
        let (label, der) = spki::der::pem::decode_vec(pem.trim().as_bytes())
            .map_err(|e| BackendError::UnsupportedKey(format!("not a PEM public key: {e}")))?;
        if label != "PUBLIC KEY" {
            return Err(BackendError::UnsupportedKey(format!(
                "expected a `PUBLIC KEY` PEM, got `{label}`"
            )));
        }
        Self::from_spki_der(&der)
    }

    /// Builds a key from an uncompressed or compressed SEC1 EC point.
    pub fn from_ec_point(algorithm: Algorithm, sec1_point: &[u8]) -> Result<Self, BackendError> {
        let bad =
            |e: String| BackendError::UnsupportedKey(format!("invalid {algorithm} point: {e}"));
        let der = match algorithm {
            Algorithm::EcdsaP256 => p256::PublicKey::from_sec1_bytes(sec1_point)
                .map_err(|e| bad(e.to_string()))?
                .to_public_key_der(),
            Algorithm::EcdsaSecp256k1 => k256::PublicKey::from_sec1_bytes(sec1_point)
                .map_err(|e| bad(e.to_string()))?
                .to_public_key_der(),
            _ => return Err(bad("not an EC algorithm".to_owned())),
        }
        .map_err(|e| bad(e.to_string()))?;
        Self::from_spki_der(der.as_bytes())
    }

    /// Builds an Ed25519 key from its 32 raw bytes.
    pub fn from_ed25519_bytes(raw: &[u8]) -> Result<Self, BackendError> {
        let bad = |e: String| BackendError::UnsupportedKey(format!("invalid Ed25519 key: {e}"));
        let bytes: [u8; 32] = raw
            .try_into()
            .map_err(|_| bad(format!("{} bytes, expected 32", raw.len())))?;
        let key =
            ed25519_dalek::VerifyingKey::from_bytes(&bytes).map_err(|e| bad(e.to_string()))?;
        let der = key.to_public_key_der().map_err(|e| bad(e.to_string()))?;
        Self::from_spki_der(der.as_bytes())
    }

    /// Builds an RSA key from its big-endian modulus and public exponent.
    pub fn from_rsa_components(modulus: &[u8], exponent: &[u8]) -> Result<Self, BackendError> {
        let bad = |e: String| BackendError::UnsupportedKey(format!("invalid RSA key: {e}"));
        let n = rsa::BoxedUint::from_be_slice_vartime(modulus);
        let e = rsa::BoxedUint::from_be_slice_vartime(exponent);
        let key = rsa::RsaPublicKey::new(n, e).map_err(|e| bad(e.to_string()))?;
        let der = key.to_public_key_der().map_err(|e| bad(e.to_string()))?;
        Self::from_spki_der(der.as_bytes())
    }

    /// The algorithm this key signs with.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The SPKI, DER-encoded.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// The SPKI as PEM: `-----BEGIN PUBLIC KEY-----`, 64-character lines, `\n` line ends and a
    /// final newline — the exact string Dfns' SDKs put in attestations.
    pub fn to_pem(&self) -> String {
        let body =
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &self.spki_der);
        let mut pem = String::with_capacity(body.len() + body.len() / 64 + 60);
        pem.push_str("-----BEGIN PUBLIC KEY-----\n");
        for line in body.as_bytes().chunks(64) {
            // Base64 output is ASCII, so any chunk boundary is a char boundary.
            pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
            pem.push('\n');
        }
        pem.push_str("-----END PUBLIC KEY-----\n");
        pem
    }

    /// Checks `signature` (wire encoding) over the unhashed `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), BackendError> {
        use signature::Verifier;
        let refused =
            |what: &str| BackendError::Crypto(format!("{what} signature does not verify"));
        match self.algorithm {
            Algorithm::EcdsaP256 => {
                let key = p256::ecdsa::VerifyingKey::from_public_key_der(&self.spki_der)
                    .map_err(|_| refused("P-256"))?;
                let sig = p256::ecdsa::DerSignature::from_bytes(signature)
                    .map_err(|_| refused("P-256 DER"))?;
                key.verify(message, &sig).map_err(|_| refused("P-256"))
            }
            Algorithm::EcdsaSecp256k1 => {
                let key = k256::ecdsa::VerifyingKey::from_public_key_der(&self.spki_der)
                    .map_err(|_| refused("secp256k1"))?;
                let sig = k256::ecdsa::Signature::from_der(signature)
                    .map_err(|_| refused("secp256k1 DER"))?;
                // k256 refuses high-S signatures (a Bitcoin rule); Dfns, OpenSSL, HSMs and PIV
                // cards do not: normalise S before checking.
                let sig = sig.normalize_s();
                key.verify(message, &sig).map_err(|_| refused("secp256k1"))
            }
            Algorithm::Ed25519 => {
                let key = ed25519_dalek::VerifyingKey::from_public_key_der(&self.spki_der)
                    .map_err(|_| refused("Ed25519"))?;
                let sig = ed25519_dalek::Signature::from_slice(signature)
                    .map_err(|_| refused("Ed25519"))?;
                key.verify_strict(message, &sig)
                    .map_err(|_| refused("Ed25519"))
            }
            Algorithm::RsaPkcs1Sha256 => {
                let key = rsa::RsaPublicKey::from_public_key_der(&self.spki_der)
                    .map_err(|_| refused("RSA"))?;
                // Exactly the modulus length, as OpenSSL (and so Dfns) requires: the rsa crate
                // would accept a few bytes less (its integers round up to whole limbs).
                if signature.len() != rsa::traits::PublicKeyParts::size(&key) {
                    return Err(refused("RSA (wrong length)"));
                }
                let key = rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(key);
                let sig =
                    rsa::pkcs1v15::Signature::try_from(signature).map_err(|_| refused("RSA"))?;
                key.verify(message, &sig).map_err(|_| refused("RSA"))
            }
        }
    }

    fn check_parses(&self) -> Result<(), BackendError> {
        let bad = |e: String| {
            BackendError::UnsupportedKey(format!("invalid {} public key: {e}", self.algorithm))
        };
        match self.algorithm {
            Algorithm::EcdsaP256 => {
                p256::PublicKey::from_public_key_der(&self.spki_der)
                    .map_err(|e| bad(e.to_string()))?;
            }
            Algorithm::EcdsaSecp256k1 => {
                k256::PublicKey::from_public_key_der(&self.spki_der)
                    .map_err(|e| bad(e.to_string()))?;
            }
            Algorithm::Ed25519 => {
                ed25519_dalek::VerifyingKey::from_public_key_der(&self.spki_der)
                    .map_err(|e| bad(e.to_string()))?;
            }
            Algorithm::RsaPkcs1Sha256 => {
                let key = rsa::RsaPublicKey::from_public_key_der(&self.spki_der)
                    .map_err(|e| bad(e.to_string()))?;
                let bits = rsa::traits::PublicKeyParts::n_bits_precision(&key);
                if bits < 2048 {
                    return Err(bad(format!(
                        "{bits}-bit modulus; Dfns needs 2048 bits or more"
                    )));
                }
            }
        }
        Ok(())
    }

    /// A stable credential id for this key: base64url (no padding) of the first 16 bytes of
    /// SHA-256 over the SPKI DER. Any unique base64url string is a valid Dfns credential id.
    pub fn default_credential_id(&self) -> String {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(&self.spki_der);
        crate::protocol::encoding::b64url(&digest[..16])
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("algorithm", &self.algorithm)
            .field("spki_der_len", &self.spki_der.len())
            .finish()
    }
}

// Silence an unused-import warning on `Encode` when only some key types are used.
#[allow(dead_code)]
fn _encode_in_scope<T: Encode>(_: &T) {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::software::SoftwareKey;
    use crate::backend::KeyBackend;

    /// Devices and other signers do not normalise S; Dfns accepts both forms, and so must we.
    #[test]
    fn high_s_ecdsa_signatures_verify() {
        for alg in [Algorithm::EcdsaSecp256k1, Algorithm::EcdsaP256] {
            let key = SoftwareKey::generate(alg).unwrap();
            let mut checked_high = false;
            for i in 0u32..16 {
                let msg = i.to_be_bytes();
                let der = key.sign(&msg).unwrap();
                let flipped = match alg {
                    Algorithm::EcdsaSecp256k1 => {
                        let sig = k256::ecdsa::Signature::from_der(&der).unwrap();
                        let (r, s) = sig.split_scalars();
                        k256::ecdsa::Signature::from_scalars(r, -*s)
                            .unwrap()
                            .to_der()
                            .as_bytes()
                            .to_vec()
                    }
                    _ => {
                        let sig = p256::ecdsa::Signature::from_der(&der).unwrap();
                        let (r, s) = sig.split_scalars();
                        p256::ecdsa::Signature::from_scalars(r, -*s)
                            .unwrap()
                            .to_der()
                            .as_bytes()
                            .to_vec()
                    }
                };
                key.public_key().verify(&msg, &der).unwrap();
                key.public_key().verify(&msg, &flipped).unwrap();
                assert!(key.public_key().verify(&[9], &flipped).is_err());
                checked_high = true;
            }
            assert!(checked_high);
        }
    }

    #[test]
    fn pem_has_64_character_lines_and_round_trips() {
        let key = SoftwareKey::generate(Algorithm::RsaPkcs1Sha256).unwrap();
        let pem = key.public_key().to_pem();
        assert!(
            pem.starts_with("-----BEGIN PUBLIC KEY-----\n")
                && pem.ends_with("-----END PUBLIC KEY-----\n")
        );
        assert!(pem.lines().all(|l| l.len() <= 64));
        assert_eq!(&PublicKey::from_pem(&pem).unwrap(), key.public_key());
        assert!(PublicKey::from_pem(
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
        )
        .is_err());
    }
}
