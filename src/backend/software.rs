//! Software keys: a private key held in this process's memory.
//!
//! For development, tests and the demo — **not** for production custody, where the point of
//! dfns-signer is that the key never leaves an HSM or a YubiKey. Keys load from PEM (PKCS#8,
//! SEC1 `EC PRIVATE KEY`, PKCS#1 `RSA PRIVATE KEY`) or are generated here. `Debug` shows only
//! the algorithm and where the key came from.
//!
//! Keys are read and kept by the RustCrypto crates; P-256 and RSA keys also get a
//! [ring](https://docs.rs/ring) signer at load, which signs them several times faster (ring is
//! already in the build, for rustls). P-256 signatures are then randomised, as the official
//! SDKs', HSMs' and YubiKeys' are; secp256k1 (RFC 6979), Ed25519 and RSA PKCS#1 v1.5 signatures
//! are deterministic. Either way the wire encoding is the same: DER ECDSA over SHA-256 with
//! minimal integers, raw Ed25519, PKCS#1 v1.5 exactly as long as the modulus.
//!
//! Ed25519 stays with ed25519-dalek: ring executes fewer instructions per signature (~219k
//! against ~245k under callgrind) but takes longer to run them (37–43 µs against 27–30 µs,
//! `perf stat` on the 2-core AMD EPYC the benchmarks run on), and the two give the same bytes.
//!
//! The RustCrypto keys zeroize their secret on drop, and the PKCS#8 DER ring reads its copy from
//! is held in a zeroizing buffer; ring's own copy of a P-256 or RSA key is not zeroized when
//! dropped (ring does not zeroize its key pairs). That is the price of the faster signatures,
//! paid by a backend for development only: a key whose memory must be wiped belongs in an HSM
//! or a YubiKey.

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
    /// The same key in ring, which signs it instead when present (P-256 and RSA; see the module
    /// docs). `None` for the other algorithms, for an RSA key ring does not take (over
    /// 4096 bits), and after [`SoftwareKey::rust_crypto_only`].
    ring: Option<RingKey>,
    public: PublicKey,
    origin: String,
}

/// ring's copy of a key. Not zeroized on drop: ring does not (see the module docs).
enum RingKey {
    P256(ring::signature::EcdsaKeyPair),
    Rsa(ring::signature::RsaKeyPair),
}

impl RingKey {
    /// ring's signer for `key`, read from its PKCS#8 DER (held in a zeroizing buffer); `None`
    /// where ring has no such algorithm, where dalek signs faster (Ed25519), or where ring
    /// refuses the key (it then stays with RustCrypto).
    fn from(key: &Inner) -> Option<RingKey> {
        use ring::signature::{EcdsaKeyPair, RsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
        match key {
            Inner::P256(k) => {
                let der = k.to_pkcs8_der().ok()?;
                let rng = ring::rand::SystemRandom::new();
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, der.as_bytes(), &rng)
                    .ok()
                    .map(RingKey::P256)
            }
            Inner::Rsa(k) => {
                let der = k.to_pkcs8_der().ok()?;
                RsaKeyPair::from_pkcs8(der.as_bytes())
                    .ok()
                    .map(RingKey::Rsa)
            }
            Inner::Ed25519(_) | Inner::K256(_) => None,
        }
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, BackendError> {
        let rng = ring::rand::SystemRandom::new();
        let fail =
            |what: &str| BackendError::Crypto(format!("ring could not sign with the {what} key"));
        match self {
            // ASN.1 DER, minimal integers: Dfns' encoding as it is.
            RingKey::P256(k) => k
                .sign(&rng, message)
                .map(|sig| sig.as_ref().to_vec())
                .map_err(|_| fail("P-256")),
            // Exactly as long as the modulus, as PKCS#1 wants.
            RingKey::Rsa(k) => {
                let mut sig = vec![0; k.public().modulus_len()];
                k.sign(&ring::signature::RSA_PKCS1_SHA256, &rng, message, &mut sig)
                    .map_err(|_| fail("RSA"))?;
                Ok(sig)
            }
        }
    }
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
            ring: RingKey::from(&key),
            key,
            public,
            origin,
        })
    }

    /// Not API: for tests and benches. The same key without its ring signer, signing with the
    /// RustCrypto crates only (P-256 then deterministic, RFC 6979), so both can be compared.
    #[doc(hidden)]
    pub fn rust_crypto_only(mut self) -> Self {
        self.ring = None;
        self
    }

    /// The signature with the RustCrypto crates.
    fn sign_rust_crypto(&self, message: &[u8]) -> Result<Vec<u8>, BackendError> {
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
        match &self.ring {
            Some(ring) => ring.sign(message),
            None => self.sign_rust_crypto(message),
        }
    }

    fn describe(&self) -> String {
        format!("{} software key ({})", self.public.algorithm(), self.origin)
    }

    /// In memory and quick: P-256, Ed25519 and secp256k1 sign in tens of microseconds.
    /// Not RSA: a 2048-bit signature is a millisecond or more of CPU, which would hold up every
    /// other task of the async runtime's worker for as long; it goes to a blocking thread.
    fn signs_without_blocking(&self) -> bool {
        !matches!(self.key, Inner::Rsa(_))
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

    /// P-256 and RSA keys sign through ring, and the RustCrypto path stays: both engines' signatures
    /// verify (under our `PublicKey` and, for P-256, under the `p256` crate directly), both are
    /// minimal DER for P-256; ring's P-256 signatures are randomised and RustCrypto's are RFC
    /// 6979's; for RSA (deterministic by nature) the two engines give the same bytes.
    #[test]
    fn ring_and_rust_crypto_sign_the_same_keys() {
        use p256::ecdsa::signature::Verifier;
        let message = br#"{"type":"key.get","challenge":"YWJj"}"#;
        let pem = |file: &str| {
            std::fs::read_to_string(format!(
                "{}/tests/fixtures/keys/{file}.pem",
                env!("CARGO_MANIFEST_DIR")
            ))
            .unwrap()
        };

        let ring = SoftwareKey::from_pem(&pem("p256"), "p256").unwrap();
        assert!(matches!(ring.ring, Some(RingKey::P256(_))));
        let rust = SoftwareKey::from_pem(&pem("p256"), "p256")
            .unwrap()
            .rust_crypto_only();
        let verifying = p256::ecdsa::VerifyingKey::from_sec1_bytes(&spki_point(&ring)).unwrap();
        let sign = |key: &SoftwareKey| KeyBackend::sign(key, message).unwrap();
        let (r1, r2) = (sign(&ring), sign(&ring));
        let (c1, c2) = (sign(&rust), sign(&rust));
        assert_ne!(r1, r2, "ring's ECDSA nonces are random");
        assert_eq!(c1, c2, "RustCrypto's are RFC 6979's");
        for sig in [&r1, &r2, &c1] {
            ring.public_key().verify(message, sig).unwrap();
            let parsed = p256::ecdsa::Signature::from_der(sig).unwrap();
            assert_eq!(parsed.to_der().as_bytes(), &sig[..], "minimal DER");
            verifying.verify(message, &parsed).unwrap();
            assert!(ring.public_key().verify(b"other", sig).is_err());
        }

        let ring = SoftwareKey::from_pem(&pem("rsa2048"), "rsa").unwrap();
        assert!(matches!(ring.ring, Some(RingKey::Rsa(_))));
        let rust = SoftwareKey::from_pem(&pem("rsa2048"), "rsa")
            .unwrap()
            .rust_crypto_only();
        let sig = sign(&ring);
        assert_eq!(sig.len(), 256);
        assert_eq!(sig, sign(&rust), "PKCS#1 v1.5 is deterministic");
        ring.public_key().verify(message, &sig).unwrap();

        // Ring has no secp256k1.
        assert!(SoftwareKey::from_pem(&pem("secp256k1"), "secp256k1")
            .unwrap()
            .ring
            .is_none());
    }

    /// Ed25519 keys sign with ed25519-dalek (no ring copy of the key is made), and the signatures
    /// are ring's byte for byte (RFC 8032 signatures are deterministic; ring is an independent
    /// implementation): on several messages, for the fixture key and a fresh one, and both
    /// verify under our `PublicKey` and under ring's verifier.
    #[test]
    fn ed25519_signs_with_dalek_as_ring_would() {
        use ring::signature::{Ed25519KeyPair, UnparsedPublicKey, ED25519};
        let fixture = std::fs::read_to_string(format!(
            "{}/tests/fixtures/keys/ed25519.pem",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        let fresh = SoftwareKey::generate(Algorithm::Ed25519)
            .unwrap()
            .to_pkcs8_pem()
            .unwrap();
        let long = vec![0xa5_u8; 10_000];
        let messages: [&[u8]; 5] = [
            b"",
            b"m",
            br#"{"type":"key.get","challenge":"YWJj"}"#,
            br#"{"type":"key.get","challenge":"Y2gtMDFqOGItNGVrOS04cjBzLTk3bWM4ZWVhcDNsYXBydTQ","origin":"https://app.dfns.io","crossOrigin":false}"#,
            &long,
        ];
        for pem in [fixture.as_str(), fresh.as_str()] {
            let key = SoftwareKey::from_pem(pem, "ed25519").unwrap();
            assert!(key.ring.is_none(), "Ed25519 keys get no ring copy");
            let Inner::Ed25519(dalek_key) = &key.key else {
                panic!("not an Ed25519 key")
            };
            let ring_key = Ed25519KeyPair::from_seed_and_public_key(
                dalek_key.to_bytes().as_slice(),
                dalek_key.verifying_key().as_bytes(),
            )
            .unwrap();
            let ring_public =
                UnparsedPublicKey::new(&ED25519, dalek_key.verifying_key().to_bytes());
            for message in messages {
                let ours = KeyBackend::sign(&key, message).unwrap();
                assert_eq!(ours.len(), 64);
                assert_eq!(
                    ours,
                    ring_key.sign(message).as_ref(),
                    "dalek and ring differ on {message:?}"
                );
                key.public_key().verify(message, &ours).unwrap();
                ring_public.verify(message, &ours).unwrap();
                assert!(key.public_key().verify(b"other", &ours).is_err());
            }
        }
    }

    /// The uncompressed SEC1 point of a key's SPKI (its last 65 bytes).
    fn spki_point(key: &SoftwareKey) -> Vec<u8> {
        let der = key.public_key().spki_der();
        der[der.len() - 65..].to_vec()
    }

    /// Keys in memory sign on the calling task, but RSA, whose signature takes a millisecond or
    /// more, goes to a blocking thread; `Arc` and `Box` say what the key says.
    #[test]
    fn only_quick_keys_sign_without_blocking() {
        for (alg, quick) in [
            (Algorithm::EcdsaP256, true),
            (Algorithm::EcdsaSecp256k1, true),
            (Algorithm::Ed25519, true),
            (Algorithm::RsaPkcs1Sha256, false),
        ] {
            let key = SoftwareKey::generate(alg).unwrap();
            assert_eq!(key.signs_without_blocking(), quick, "{alg}");
            let shared: std::sync::Arc<dyn KeyBackend> = std::sync::Arc::new(key);
            assert_eq!(shared.signs_without_blocking(), quick, "{alg} in an Arc");
            let boxed: Box<dyn KeyBackend> = Box::new(shared);
            assert_eq!(boxed.signs_without_blocking(), quick, "{alg} in a Box");
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
