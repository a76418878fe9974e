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
        self.verifier()?.verify(message, signature)
    }

    /// The key parsed once for checking many signatures: what a backend that verifies every
    /// signature it makes keeps, instead of parsing the SPKI again each time.
    pub fn verifier(&self) -> Result<SignatureVerifier, BackendError> {
        let unreadable = |what: &str| {
            BackendError::Crypto(format!(
                "the {what} public key cannot be read for verifying"
            ))
        };
        let key = match self.algorithm {
            Algorithm::EcdsaP256 => {
                // Parsed (and the point validated) by RustCrypto; checked by ring.
                let key = p256::ecdsa::VerifyingKey::from_public_key_der(&self.spki_der)
                    .map_err(|_| unreadable("P-256"))?;
                VerifierKey::P256(ring::signature::UnparsedPublicKey::new(
                    &ring::signature::ECDSA_P256_SHA256_ASN1,
                    key.to_sec1_point(false).as_bytes().to_vec(),
                ))
            }
            Algorithm::EcdsaSecp256k1 => VerifierKey::K256(
                k256::ecdsa::VerifyingKey::from_public_key_der(&self.spki_der)
                    .map_err(|_| unreadable("secp256k1"))?,
            ),
            Algorithm::Ed25519 => VerifierKey::Ed25519(
                ed25519_dalek::VerifyingKey::from_public_key_der(&self.spki_der)
                    .map_err(|_| unreadable("Ed25519"))?,
            ),
            Algorithm::RsaPkcs1Sha256 => {
                let key = rsa::RsaPublicKey::from_public_key_der(&self.spki_der)
                    .map_err(|_| unreadable("RSA"))?;
                let len = rsa::traits::PublicKeyParts::size(&key);
                VerifierKey::Rsa(Box::new(rsa::pkcs1v15::VerifyingKey::new(key)), len)
            }
        };
        Ok(SignatureVerifier { key })
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

    /// A short, stable name for this key in messages: `sha256:` and the first 16 hex digits
    /// of SHA-256 over the SPKI DER (what tells two keys under one label apart).
    pub fn fingerprint(&self) -> String {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(&self.spki_der);
        format!("sha256:{}", hex::encode(&digest[..8]))
    }
}

/// A public key parsed for verifying signatures in Dfns' wire encoding (see
/// [`PublicKey::verifier`]).
#[derive(Clone)]
pub struct SignatureVerifier {
    key: VerifierKey,
}

#[derive(Clone)]
enum VerifierKey {
    /// The uncompressed point, for ring (DER signatures over SHA-256).
    P256(ring::signature::UnparsedPublicKey<Vec<u8>>),
    K256(k256::ecdsa::VerifyingKey),
    Ed25519(ed25519_dalek::VerifyingKey),
    /// The key and its modulus length in bytes.
    Rsa(Box<rsa::pkcs1v15::VerifyingKey<sha2::Sha256>>, usize),
}

impl SignatureVerifier {
    /// Checks `signature` (DER ECDSA over SHA-256, raw Ed25519, PKCS#1 v1.5 with SHA-256) over
    /// `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), BackendError> {
        use signature::Verifier;
        let refused =
            |what: &str| BackendError::Crypto(format!("{what} signature does not verify"));
        match &self.key {
            VerifierKey::P256(key) => key.verify(message, signature).map_err(|_| refused("P-256")),
            VerifierKey::K256(key) => {
                let sig = k256::ecdsa::Signature::from_der(signature)
                    .map_err(|_| refused("secp256k1 DER"))?;
                // k256 refuses high-S signatures (a Bitcoin rule); Dfns, OpenSSL, HSMs and PIV
                // cards do not: normalise S before checking.
                let sig = sig.normalize_s();
                key.verify(message, &sig).map_err(|_| refused("secp256k1"))
            }
            VerifierKey::Ed25519(key) => {
                let sig = ed25519_dalek::Signature::from_slice(signature)
                    .map_err(|_| refused("Ed25519"))?;
                key.verify_strict(message, &sig)
                    .map_err(|_| refused("Ed25519"))
            }
            VerifierKey::Rsa(key, len) => {
                // Exactly the modulus length, as OpenSSL (and so Dfns) requires: the rsa crate
                // would accept a few bytes less (its integers round up to whole limbs).
                if signature.len() != *len {
                    return Err(refused("RSA (wrong length)"));
                }
                let sig =
                    rsa::pkcs1v15::Signature::try_from(signature).map_err(|_| refused("RSA"))?;
                key.verify(message, &sig).map_err(|_| refused("RSA"))
            }
        }
    }
}

impl fmt::Debug for SignatureVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let algorithm = match self.key {
            VerifierKey::P256(_) => Algorithm::EcdsaP256,
            VerifierKey::K256(_) => Algorithm::EcdsaSecp256k1,
            VerifierKey::Ed25519(_) => Algorithm::Ed25519,
            VerifierKey::Rsa(..) => Algorithm::RsaPkcs1Sha256,
        };
        f.debug_struct("SignatureVerifier")
            .field("algorithm", &algorithm)
            .finish()
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

    /// The orders n of the P-256 and secp256k1 groups (SEC 2), big-endian hex.
    const P256_ORDER: &str = "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551";
    const SECP256K1_ORDER: &str =
        "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141";

    /// r and s of a DER `SEQUENCE { INTEGER r, INTEGER s }`, as 32-byte big-endian numbers.
    fn der_integers(der: &[u8]) -> ([u8; 32], [u8; 32]) {
        assert_eq!(
            (der[0], der[1] as usize),
            (0x30, der.len() - 2),
            "a DER sequence"
        );
        let mut at = 2;
        let mut int = || {
            assert_eq!(der[at], 0x02, "a DER integer");
            let len = der[at + 1] as usize;
            let bytes = &der[at + 2..at + 2 + len];
            at += 2 + len;
            let bytes = &bytes[bytes.iter().take_while(|b| **b == 0).count()..];
            let mut out = [0u8; 32];
            out[32 - bytes.len()..].copy_from_slice(bytes);
            out
        };
        let r = int();
        let s = int();
        assert_eq!(at, der.len());
        (r, s)
    }

    /// The DER signature of `r` and `s` (minimal integers, a 0 byte before a high bit).
    fn der_signature(r: &[u8; 32], s: &[u8; 32]) -> Vec<u8> {
        let int = |x: &[u8; 32]| {
            let mut v: Vec<u8> = x.iter().copied().skip_while(|b| *b == 0).collect();
            if v.first().is_none_or(|b| b & 0x80 != 0) {
                v.insert(0, 0);
            }
            let mut out = vec![0x02, v.len() as u8];
            out.extend(v);
            out
        };
        let body = [int(r), int(s)].concat();
        let mut out = vec![0x30, body.len() as u8];
        out.extend(body);
        out
    }

    /// a − b for big-endian numbers with a ≥ b.
    fn minus(a: &[u8; 32], b: &[u8; 32]) -> [u8; 32] {
        let mut out = [0u8; 32];
        let mut borrow = 0i16;
        for i in (0..32).rev() {
            let mut d = a[i] as i16 - b[i] as i16 - borrow;
            borrow = (d < 0) as i16;
            if d < 0 {
                d += 256;
            }
            out[i] = d as u8;
        }
        assert_eq!(borrow, 0, "a < b");
        out
    }

    /// Devices and other signers do not normalise S; Dfns accepts both forms, and so must we
    /// (k256 alone refuses high S: `verify` normalises first). From a signature the official SDK
    /// made (tests/fixtures/fixed_vectors.json), both forms are built by hand — s and n − s, with
    /// the curve order written out above — and both must verify; another message, or another s,
    /// must not.
    #[test]
    fn high_s_and_low_s_ecdsa_signatures_verify() {
        let vectors: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/fixtures/fixed_vectors.json")).unwrap();
        for (kind, order) in [("p256", P256_ORDER), ("secp256k1", SECP256K1_ORDER)] {
            let a = vectors["assertions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|a| a["keyKind"] == kind)
                .unwrap();
            let key = PublicKey::from_pem(a["publicKeyPem"].as_str().unwrap()).unwrap();
            let message = a["clientDataUtf8"].as_str().unwrap().as_bytes();
            let sdk = hex::decode(a["signatureHex"].as_str().unwrap()).unwrap();
            let n: [u8; 32] = hex::decode(order).unwrap().try_into().unwrap();

            let (r, s) = der_integers(&sdk);
            assert_eq!(
                der_signature(&r, &s),
                sdk,
                "{kind}: DER written as the SDK does"
            );
            let flipped = minus(&n, &s);
            // n is odd, so s ≠ n − s, and the larger of the two is the high one.
            let (low, high) = if s < flipped {
                (s, flipped)
            } else {
                (flipped, s)
            };
            assert!(high > minus(&n, &high) && low < minus(&n, &low), "{kind}");
            let mut changed = high;
            changed[31] ^= 1;
            let (low, high) = (der_signature(&r, &low), der_signature(&r, &high));

            key.verify(message, &low)
                .unwrap_or_else(|e| panic!("{kind}: low-S signature refused: {e}"));
            key.verify(message, &high)
                .unwrap_or_else(|e| panic!("{kind}: high-S signature refused: {e}"));
            for sig in [&low, &high] {
                assert!(key.verify(b"another message", sig).is_err(), "{kind}");
            }
            assert!(
                key.verify(message, &der_signature(&r, &changed)).is_err(),
                "{kind}: a signature with another s verifies"
            );
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
