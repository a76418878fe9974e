//! Signature verification, done here with the RustCrypto crates directly and never with the
//! crate's own client or backend code, so that a bug shared by signer and checker cannot hide.
//!
//! Encodings are Dfns' (docs/protocol.md §5): ECDSA P-256 and secp256k1 as ASN.1 DER over SHA-256,
//! strictly canonical (what OpenSSL-based verifiers accept; high S is fine), Ed25519 pure over
//! the message, RSA PKCS#1 v1.5 with SHA-256.

use signature::Verifier;
use spki::der::Decode;
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

const ID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const PRIME256V1: &str = "1.2.840.10045.3.1.7";
const SECP256K1: &str = "1.3.132.0.10";
const ID_ED25519: &str = "1.3.101.112";
const RSA_ENCRYPTION: &str = "1.2.840.113549.1.1.1";

/// The DER inside a `PUBLIC KEY` PEM block (SPKI); any other label is refused.
pub(crate) fn spki_der_from_pem(pem: &str) -> Result<Vec<u8>, String> {
    let (label, document) =
        spki::Document::from_pem(pem.trim()).map_err(|e| format!("public key is not PEM: {e}"))?;
    if label != "PUBLIC KEY" {
        return Err(format!(
            "PEM block is `{label}`, expected `PUBLIC KEY` (an SPKI public key)"
        ));
    }
    Ok(document.as_bytes().to_vec())
}

/// The credential id the simulator gives its root key when none is chosen: base64url of the
/// first 16 bytes of SHA-256 over the SPKI DER. Computed here, independently of the crate's
/// `protocol::default_credential_id`; `tests/simulator.rs` checks the two agree.
pub(crate) fn default_credential_id(pem: &str) -> Result<String, String> {
    use base64::Engine;
    use sha2::Digest;
    let digest = sha2::Sha256::digest(spki_der_from_pem(pem)?);
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..16]))
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
    /// Reads an SPKI PEM with this module's own code (`der`/`spki` and the RustCrypto key
    /// types), never the backend's parser: a key the backend misreads must not be misread the
    /// same way here. Takes what Dfns takes for Key credentials: EC keys on P-256 or secp256k1,
    /// Ed25519, and RSA of 2048 bits or more.
    pub(crate) fn from_pem(pem: &str) -> Result<Self, String> {
        let der = spki_der_from_pem(pem)?;
        let info = spki::SubjectPublicKeyInfoRef::from_der(&der)
            .map_err(|e| format!("public key is not an SPKI structure: {e}"))?;
        let bad = |e: spki::Error| format!("public key does not parse: {e}");
        let algorithm = info.algorithm.oid.to_string();
        Ok(match algorithm.as_str() {
            ID_EC_PUBLIC_KEY => {
                let curve = info
                    .algorithm
                    .parameters
                    .and_then(|p| p.decode_as::<spki::ObjectIdentifier>().ok())
                    .map(|oid| oid.to_string())
                    .ok_or("EC public key names no named curve")?;
                match curve.as_str() {
                    PRIME256V1 => CredentialKey::P256(
                        p256::ecdsa::VerifyingKey::from_public_key_der(&der).map_err(bad)?,
                    ),
                    SECP256K1 => CredentialKey::Secp256k1(
                        k256::ecdsa::VerifyingKey::from_public_key_der(&der).map_err(bad)?,
                    ),
                    other => {
                        return Err(format!(
                            "EC curve {other} is not one Dfns takes (P-256 or secp256k1)"
                        ))
                    }
                }
            }
            ID_ED25519 => CredentialKey::Ed25519(
                ed25519_dalek::VerifyingKey::from_public_key_der(&der).map_err(bad)?,
            ),
            RSA_ENCRYPTION => {
                let key = rsa::RsaPublicKey::from_public_key_der(&der).map_err(bad)?;
                let bits = rsa::traits::PublicKeyParts::n(&key).bit_width();
                if bits < 2048 {
                    return Err(format!(
                        "RSA key of {bits} bits is too short (Dfns takes 2048 bits or more)"
                    ));
                }
                CredentialKey::Rsa(Box::new(rsa::pkcs1v15::VerifyingKey::new(key)))
            }
            other => {
                return Err(format!(
                    "public key algorithm {other} is not one Dfns takes for Key credentials"
                ))
            }
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
        let refused = || {
            format!(
                "{} signature does not verify (expected {})",
                self.kind(),
                self.encoding()
            )
        };
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
                let sig = ed25519_dalek::Signature::from_slice(signature).map_err(|_| {
                    format!(
                        "Ed25519 signature must be 64 raw bytes, got {}",
                        signature.len()
                    )
                })?;
                key.verify_strict(message, &sig).map_err(|_| refused())
            }
            CredentialKey::Rsa(key) => {
                // Exactly the modulus length, as OpenSSL (and so Dfns) requires; the rsa crate
                // alone accepts a few bytes less.
                let public: &rsa::RsaPublicKey = (**key).as_ref();
                let modulus_len = rsa::traits::PublicKeyParts::size(public);
                if signature.len() != modulus_len {
                    return Err(format!(
                        "RSA signature must be {modulus_len} bytes (the modulus length), got {}",
                        signature.len()
                    ));
                }
                let sig = rsa::pkcs1v15::Signature::try_from(signature).map_err(|_| refused())?;
                key.verify(message, &sig).map_err(|_| refused())
            }
        }
    }

    fn encoding(&self) -> &'static str {
        match self {
            CredentialKey::P256(_) | CredentialKey::Secp256k1(_) => {
                "DER ECDSA over SHA-256 of the message"
            }
            CredentialKey::Ed25519(_) => "pure Ed25519 over the message",
            CredentialKey::Rsa(_) => "RSASSA-PKCS1-v1_5 with SHA-256",
        }
    }
}

#[cfg(test)]
mod tests {
    //! The verifier against signatures made by Node's crypto through the official SDK: the
    //! fixed vectors and every assertion captured in the transcripts.
    use super::*;
    use serde_json::Value;

    /// An RSA signature with a leading zero byte, stripped, is one byte short: OpenSSL refuses
    /// it, so the simulator must too (the rsa crate alone would accept it).
    #[test]
    fn short_rsa_signatures_are_refused() {
        use crate::backend::software::SoftwareKey;
        use crate::backend::{Algorithm, KeyBackend};
        let key = SoftwareKey::generate(Algorithm::RsaPkcs1Sha256).unwrap();
        let verifier = CredentialKey::from_pem(&key.public_key().to_pem()).unwrap();
        let (message, sig) = (0u32..)
            .map(|i| {
                let m = i.to_be_bytes().to_vec();
                let s = key.sign(&m).unwrap();
                (m, s)
            })
            .find(|(_, s)| s[0] == 0)
            .unwrap();
        verifier.verify(&message, &sig).unwrap();
        let err = verifier.verify(&message, &sig[1..]).unwrap_err();
        assert!(err.contains("256 bytes"), "{err}");
        assert!(
            key.public_key().verify(&message, &sig[1..]).is_err(),
            "our own verifier too"
        );
    }

    fn fixture(name: &str) -> Value {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name);
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    #[test]
    fn official_sdk_assertions_verify_and_altered_ones_do_not() {
        let vectors = fixture("fixed_vectors.json");
        let assertions = vectors["assertions"].as_array().unwrap();
        assert_eq!(assertions.len(), 4);
        for a in assertions {
            let key = CredentialKey::from_pem(a["publicKeyPem"].as_str().unwrap()).unwrap();
            let data = hex::decode(a["clientDataHex"].as_str().unwrap()).unwrap();
            let sig = hex::decode(a["signatureHex"].as_str().unwrap()).unwrap();
            key.verify(&data, &sig)
                .unwrap_or_else(|e| panic!("{}: {e}", a["keyKind"]));
            let mut other = data.clone();
            other[10] ^= 1;
            assert!(key.verify(&other, &sig).is_err(), "{}", a["keyKind"]);
        }
    }

    #[test]
    fn official_sdk_attestations_verify_over_the_rebuilt_fingerprint() {
        use sha2::Digest;
        let vectors = fixture("fixed_vectors.json");
        for a in vectors["attestations"].as_array().unwrap() {
            let attestation: Value =
                serde_json::from_str(a["attestationData"].as_str().unwrap()).unwrap();
            let pem = attestation["publicKey"].as_str().unwrap();
            let client_data = a["clientData"].as_str().unwrap().as_bytes();
            // Rebuilt exactly as credentials.rs does; must equal what the SDK signed.
            let fingerprint = serde_json::json!({
                "clientDataHash": hex::encode(sha2::Sha256::digest(client_data)),
                "publicKey": pem,
            })
            .to_string();
            assert_eq!(
                fingerprint,
                a["credInfoFingerprint"].as_str().unwrap(),
                "{}",
                a["keyKind"]
            );
            let sig = hex::decode(attestation["signature"].as_str().unwrap()).unwrap();
            CredentialKey::from_pem(pem)
                .unwrap()
                .verify(fingerprint.as_bytes(), &sig)
                .unwrap();
        }
    }

    /// Every assertion in the transcripts verifies with one of the known keys exactly when the
    /// capturing server (OpenSSL) said it did — including the SHA-512 one it refused.
    #[test]
    fn transcript_assertions_agree_with_openssl() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let mut pems: Vec<String> = ["p256", "secp256k1", "ed25519", "rsa2048"]
            .iter()
            .map(|k| std::fs::read_to_string(dir.join(format!("keys/{k}.pub.pem"))).unwrap())
            .collect();
        let mut transcripts = Vec::new();
        for entry in std::fs::read_dir(dir.join("transcripts")).unwrap() {
            let t: Value =
                serde_json::from_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap())
                    .unwrap();
            let text = t.to_string();
            // Keys registered during a transcript appear in its text as PEM strings.
            for piece in text.split("-----BEGIN PUBLIC KEY-----").skip(1) {
                if let Some(end) = piece.find("-----END PUBLIC KEY-----") {
                    let body = piece[..end].replace("\\\\n", "\n").replace("\\n", "\n");
                    pems.push(format!(
                        "-----BEGIN PUBLIC KEY-----{body}-----END PUBLIC KEY-----\n"
                    ));
                }
            }
            transcripts.push(t);
        }
        let keys: Vec<CredentialKey> = pems
            .iter()
            .filter_map(|p| CredentialKey::from_pem(p).ok())
            .collect();
        let mut checked = 0;
        for t in &transcripts {
            for e in t["exchanges"].as_array().unwrap() {
                let Some(check) = e["serverChecks"].get("assertion") else {
                    continue;
                };
                let body: Value =
                    serde_json::from_str(e["request"]["bodyUtf8"].as_str().unwrap()).unwrap();
                let assertion = &body["firstFactor"]["credentialAssertion"];
                let data = crate::simulator::util::b64url_decode(
                    assertion["clientData"].as_str().unwrap(),
                )
                .unwrap();
                let sig =
                    crate::simulator::util::b64url_decode(assertion["signature"].as_str().unwrap())
                        .unwrap();
                let verified = keys.iter().any(|k| k.verify(&data, &sig).is_ok());
                assert_eq!(verified, check["signatureOk"] == true, "{}", t["name"]);
                checked += 1;
            }
        }
        assert!(checked >= 25, "only {checked} assertions found");
    }
}
