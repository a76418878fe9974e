//! Signature verification, done here with the RustCrypto crates directly and never with the
//! crate's own client or backend code, so that a bug shared by signer and checker cannot hide.
//!
//! Encodings are Dfns' (PROTOCOL.md §3.6): ECDSA P-256 and secp256k1 as ASN.1 DER over SHA-256,
//! strictly canonical (what OpenSSL-based verifiers accept; high S is fine), Ed25519 pure over
//! the message, RSA PKCS#1 v1.5 with SHA-256.

use signature::Verifier;
use spki::DecodePublicKey;

/// Parses an ECDSA signature that must be canonical DER: it is decoded, re-encoded, and the
/// two byte strings must be equal (so raw `r‖s`, BER lengths, padded integers and trailing
/// bytes are all refused).
macro_rules! strict_der {
    ($curve:ty, $bytes:expr) => {{
        let bytes: &[u8] = $bytes;
        let not_der = || {
            "ECDSA signature is not canonical ASN.1 DER (raw r||s and non-minimal DER are refused)"
                .to_owned()
        };
        let sig = ecdsa::Signature::<$curve>::from_der(bytes).map_err(|_| not_der())?;
        if sig.to_der().as_bytes() != bytes {
            return Err(not_der());
        }
        sig
    }};
}

/// A credential's public key, ready to verify.
#[derive(Clone)]
pub(crate) enum CredentialKey {
    P256(p256::ecdsa::VerifyingKey),
    Secp256k1(k256::ecdsa::VerifyingKey),
    Ed25519(ed25519_dalek::VerifyingKey),
    Rsa(Box<rsa::pkcs1v15::VerifyingKey<sha2::Sha256>>),
}

impl std::fmt::Debug for CredentialKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.kind())
    }
}

impl CredentialKey {
    /// Reads an SPKI PEM. The PEM itself is decoded by [`crate::backend::PublicKey::from_pem`]
    /// (which also refuses curves and RSA sizes Dfns does not take); the verifying key is then
    /// built here from the DER.
    pub(crate) fn from_pem(pem: &str) -> Result<Self, String> {
        let key = crate::backend::PublicKey::from_pem(pem).map_err(|e| e.to_string())?;
        let der = key.spki_der();
        let bad = |e: spki::Error| format!("public key does not parse: {e}");
        Ok(match key.algorithm() {
            crate::backend::Algorithm::EcdsaP256 => {
                CredentialKey::P256(p256::ecdsa::VerifyingKey::from_public_key_der(der).map_err(bad)?)
            }
            crate::backend::Algorithm::EcdsaSecp256k1 => {
                CredentialKey::Secp256k1(k256::ecdsa::VerifyingKey::from_public_key_der(der).map_err(bad)?)
            }
            crate::backend::Algorithm::Ed25519 => {
                CredentialKey::Ed25519(ed25519_dalek::VerifyingKey::from_public_key_der(der).map_err(bad)?)
            }
            crate::backend::Algorithm::RsaPkcs1Sha256 => {
                let key = rsa::RsaPublicKey::from_public_key_der(der).map_err(bad)?;
                CredentialKey::Rsa(Box::new(rsa::pkcs1v15::VerifyingKey::new(key)))
            }
            #[allow(unreachable_patterns)]
            other => return Err(format!("key algorithm {other} is not supported by the simulator")),
        })
    }

    /// A short name for messages.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            CredentialKey::P256(_) => "ECDSA P-256",
            CredentialKey::Secp256k1(_) => "ECDSA secp256k1",
            CredentialKey::Ed25519(_) => "Ed25519",
            CredentialKey::Rsa(_) => "RSA PKCS#1 v1.5",
        }
    }

    /// Checks `signature` over the unhashed `message`; the error says why it was refused.
    pub(crate) fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), String> {
        let refused = || format!("{} signature does not verify (expected {})", self.kind(), self.encoding());
        match self {
            CredentialKey::P256(key) => {
                let sig = strict_der!(p256::NistP256, signature);
                key.verify(message, &sig).map_err(|_| refused())
            }
            CredentialKey::Secp256k1(key) => {
                // k256 refuses high-S signatures; OpenSSL (and so Dfns' Node stack) accepts them,
                // and Node's crypto.sign produces them half of the time. Normalise, then verify.
                let sig = strict_der!(k256::Secp256k1, signature).normalize_s();
                key.verify(message, &sig).map_err(|_| refused())
            }
            CredentialKey::Ed25519(key) => {
                let sig = ed25519_dalek::Signature::from_slice(signature)
                    .map_err(|_| format!("Ed25519 signature must be 64 raw bytes, got {}", signature.len()))?;
                key.verify_strict(message, &sig).map_err(|_| refused())
            }
            CredentialKey::Rsa(key) => {
                let sig = rsa::pkcs1v15::Signature::try_from(signature).map_err(|_| refused())?;
                key.verify(message, &sig).map_err(|_| refused())
            }
        }
    }

    fn encoding(&self) -> &'static str {
        match self {
            CredentialKey::P256(_) | CredentialKey::Secp256k1(_) => "DER ECDSA over SHA-256 of the message",
            CredentialKey::Ed25519(_) => "pure Ed25519 over the message",
            CredentialKey::Rsa(_) => "RSASSA-PKCS1-v1_5 with SHA-256",
        }
    }
}

