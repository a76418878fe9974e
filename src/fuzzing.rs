//! Fuzzing entry points — for `cargo fuzz` (the targets under `fuzz/`) and for replaying the
//! saved corpora (`tests/fuzz_corpus.rs`) only. **Not API**: hidden from the docs, compiled only
//! with the `fuzzing` feature, and free to change without notice.
//!
//! Each function takes arbitrary bytes, feeds them to one of the crate's parsers of untrusted
//! input and checks what must hold whatever the input: no panic, a typed error rather than a
//! wrong answer, and — where there is one — a stable round trip (parse → serialize → parse gives
//! the same value). Any broken invariant is a panic, which libFuzzer reports as a crash.
//!
//! | function | parser |
//! |---|---|
//! | [`challenge_json`] | [`UserActionChallenge::from_json`], then [`CredentialSigner::assert`] |
//! | [`error_body`] | [`parse_error_body`] |
//! | [`der_signature`] | a token's raw signature to wire encoding, `CKA_EC_POINT`/`CKA_EC_PARAMS`/certificate handling, [`PublicKey`] from points and RSA components, [`PublicKey::verify`] |
//! | [`key_uri`] | [`KeyUri::parse`], then the PKCS#11 and PIV URI readers |
//! | [`spki_pem`] | [`PublicKey::from_spki_der`], [`PublicKey::from_pem`], [`SoftwareKey::from_pem`] |
//! | [`simulator_request`] | a running simulator's HTTP pipeline: bearer tokens, user actions, every route's body |

use std::sync::{Arc, OnceLock};

use serde_json::Value;

use crate::backend::software::SoftwareKey;
use crate::backend::{Algorithm, KeyBackend, KeyUri, PublicKey};
use crate::error::{Error, ProtocolError};
use crate::protocol::b64url_decode;
use crate::protocol::parse_error_body;
use crate::protocol::{client_data, ClientDataType, UserActionChallenge};
use crate::CredentialSigner;

// ------------------------------------------------------------------------------------------
// Shared helpers
// ------------------------------------------------------------------------------------------

/// One software key per algorithm, generated once per process (RSA generation takes a moment).
fn software_key(algorithm: Algorithm) -> Arc<SoftwareKey> {
    static KEYS: OnceLock<Vec<(Algorithm, Arc<SoftwareKey>)>> = OnceLock::new();
    let keys = KEYS.get_or_init(|| {
        ALGORITHMS
            .iter()
            .map(|&a| {
                let key = SoftwareKey::generate(a).expect("software key generation");
                (a, Arc::new(key))
            })
            .collect()
    });
    keys.iter()
        .find(|(a, _)| *a == algorithm)
        .map(|(_, k)| k.clone())
        .expect("a key for every algorithm")
}

/// The message every cached signature signs.
const SIGNED_MESSAGE: &[u8] = b"dfns-signer fuzz: a signed message";

/// A real signature of [`SIGNED_MESSAGE`] by [`software_key`], made once per algorithm (RSA
/// signing costs a millisecond: too slow to repeat for every input).
fn real_signature(algorithm: Algorithm) -> Vec<u8> {
    static SIGNATURES: OnceLock<Vec<(Algorithm, Vec<u8>)>> = OnceLock::new();
    let signatures = SIGNATURES.get_or_init(|| {
        ALGORITHMS
            .iter()
            .map(|&a| {
                let sig = software_key(a)
                    .sign(SIGNED_MESSAGE)
                    .expect("software signature");
                (a, sig)
            })
            .collect()
    });
    signatures
        .iter()
        .find(|(a, _)| *a == algorithm)
        .map(|(_, s)| s.clone())
        .expect("a signature for every algorithm")
}

const ALGORITHMS: [Algorithm; 4] = [
    Algorithm::EcdsaP256,
    Algorithm::EcdsaSecp256k1,
    Algorithm::Ed25519,
    Algorithm::RsaPkcs1Sha256,
];

/// JSON equality that tolerates the last-bit drift of a float through serde_json's
/// (not correctly rounded) float parser; everything else must be identical.
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if x == y {
                return true;
            }
            match (x.as_f64(), y.as_f64()) {
                (Some(x), Some(y)) if x.is_finite() && y.is_finite() => {
                    (x - y).abs() <= 4.0 * f64::EPSILON * x.abs().max(y.abs())
                }
                _ => false,
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_eq(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

fn json_list_eq(a: &[Value], b: &[Value]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| json_eq(x, y))
}

// ------------------------------------------------------------------------------------------
// challenge_json
// ------------------------------------------------------------------------------------------

/// `POST /auth/action/init` answers: [`UserActionChallenge::from_json`], a serialize → parse
/// round trip, then [`CredentialSigner::assert`] with a software key, once under a listed
/// credential id and once under one that is not listed.
pub fn challenge_json(data: &[u8]) {
    let Ok(challenge) = UserActionChallenge::from_json(data) else {
        return;
    };
    challenge
        .validate()
        .expect("from_json returned a challenge that does not validate");

    // Round trip.
    let json = serde_json::to_vec(&challenge).expect("a parsed challenge serializes");
    let again = UserActionChallenge::from_json(&json).unwrap_or_else(|e| {
        panic!(
            "a serialized challenge does not parse again: {e}\n{}",
            String::from_utf8_lossy(&json)
        )
    });
    assert_eq!(challenge.challenge, again.challenge);
    assert_eq!(challenge.challenge_identifier, again.challenge_identifier);
    assert_eq!(challenge.user_verification, again.user_verification);
    assert_eq!(challenge.allow_credentials.key, again.allow_credentials.key);
    assert!(json_list_eq(
        &challenge.allow_credentials.webauthn,
        &again.allow_credentials.webauthn
    ));
    assert!(json_list_eq(
        &challenge.supported_credential_kinds,
        &again.supported_credential_kinds
    ));

    let key = software_key(Algorithm::EcdsaP256);
    let nothing_listed = challenge.allow_credentials.key.is_empty()
        && challenge.allow_credentials.webauthn.is_empty();
    let listed: Vec<&str> = challenge.allowed_key_ids().collect();
    let mut ids: Vec<String> = vec!["fuzz-credential-not-listed".to_owned()];
    if let Some(first) = listed.first() {
        ids.push((*first).to_owned());
    }
    for cred_id in ids {
        let signer = CredentialSigner::new(cred_id.clone(), key.clone());
        let allowed = nothing_listed || listed.contains(&cred_id.as_str());
        match signer.assert(&challenge) {
            Ok(factor) => {
                assert!(allowed, "signed a challenge that does not list {cred_id:?}");
                let assertion = &factor.credential_assertion;
                assert_eq!(factor.kind, "Key");
                assert_eq!(assertion.cred_id, cred_id);
                let data = b64url_decode(&assertion.client_data).expect("clientData is base64url");
                assert_eq!(
                    data,
                    client_data(ClientDataType::Get, &challenge.challenge),
                    "clientData is not the key.get clientData of the challenge"
                );
                let signature = b64url_decode(&assertion.signature).expect("signature b64url");
                key.public_key()
                    .verify(&data, &signature)
                    .expect("the assertion's signature verifies");
                // The answer serializes to JSON that parses back to the same answer.
                let text = factor.to_json();
                let back: crate::protocol::FirstFactor =
                    serde_json::from_str(&text).expect("a firstFactor parses back");
                assert_eq!(back, factor);
            }
            Err(Error::Protocol(ProtocolError::CredentialNotAllowed { .. })) => {
                assert!(!allowed, "refused a credential the challenge lists");
            }
            Err(other) => panic!("unexpected error answering a valid challenge: {other}"),
        }
    }
}

// ------------------------------------------------------------------------------------------
// error_body
// ------------------------------------------------------------------------------------------

/// Error responses: [`parse_error_body`] with the HTTP status taken from the first two bytes
/// (big-endian) and the body from the rest; the result re-encoded in both of Dfns' shapes parses
/// back to the same error.
pub fn error_body(data: &[u8]) {
    let (status, body) = match data {
        [a, b, rest @ ..] => (u16::from_be_bytes([*a, *b]), rest),
        _ => (500, data),
    };
    let e = parse_error_body(status, body);
    assert_eq!(e.status, status);
    assert!(e.retry_after.is_none(), "a body cannot set Retry-After");
    assert!(
        e.details.as_ref().is_none_or(|d| !d.is_null()),
        "null details are dropped"
    );
    let _ = e.to_string();
    let _ = format!("{e:?}");

    // Server text reaches terminals and logs: no control characters, and a bounded length.
    assert!(
        !e.message.chars().any(char::is_control),
        "control characters kept in the message: {:?}",
        e.message
    );
    assert!(
        e.message.chars().count() <= 501,
        "the message is not capped"
    );
    if let Some(id) = &e.id {
        assert!(
            !id.chars().any(char::is_control),
            "control characters kept in the id"
        );
        assert!(id.chars().count() <= 101, "the error id is not capped");
    }

    // Not JSON at all: the message is the start of the body, as text (control characters made
    // spaces, at most 200 characters and an ellipsis).
    if serde_json::from_slice::<serde::de::IgnoredAny>(body).is_err() {
        assert!(e.id.is_none() && e.details.is_none());
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        if text.is_empty() {
            assert_eq!(e.message, "(empty body)");
        } else {
            let mut expected: String = text
                .chars()
                .take(200)
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            if text.chars().count() > 200 {
                expected.push('…');
            }
            assert_eq!(
                e.message, expected,
                "the raw message is not the body's start"
            );
        }
    }

    // Re-encoded as `{"error":{…}}` and as the flat form, it reads back the same.
    let mut flat = serde_json::Map::new();
    if let Some(id) = &e.id {
        flat.insert("id".into(), Value::from(id.as_str()));
    }
    flat.insert("message".into(), Value::from(e.message.as_str()));
    if let Some(details) = &e.details {
        flat.insert("details".into(), details.clone());
    }
    let flat = Value::Object(flat);
    let nested = serde_json::json!({ "error": flat.clone() });
    for encoded in [nested, flat] {
        let bytes = serde_json::to_vec(&encoded).expect("serializes");
        let again = parse_error_body(status, &bytes);
        assert_eq!(again.status, e.status);
        assert_eq!(again.message, e.message, "{encoded}");
        assert_eq!(again.id, e.id, "{encoded}");
        match (&again.details, &e.details) {
            (Some(a), Some(b)) => assert!(json_eq(a, b), "details changed: {a} vs {b}"),
            (None, None) => {}
            (a, b) => panic!("details changed: {a:?} vs {b:?}"),
        }
    }
}

// ------------------------------------------------------------------------------------------
// der_signature
// ------------------------------------------------------------------------------------------

/// Signatures and points as devices hand them over. The first byte picks the check:
///
/// - the PKCS#11 backend's raw-signature encoder (`r‖s` to minimal DER, low S for secp256k1,
///   RSA left-padding), on fuzzed bytes and on real signatures re-encoded the way a token would
///   give them (which must then verify);
/// - `CKA_EC_POINT` unwrapping and [`PublicKey::from_ec_point`] / [`PublicKey::from_ed25519_bytes`];
/// - `CKA_EC_PARAMS` recognition, and the SPKI found in a token's certificate;
/// - [`PublicKey::verify`] on fuzzed signatures and on altered real ones;
/// - [`PublicKey::from_rsa_components`].
pub fn der_signature(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let algorithm = ALGORITHMS[usize::from(selector >> 5) % ALGORITHMS.len()];
    match selector % 5 {
        0 => token_signature(algorithm, selector, rest),
        1 => ec_point(rest),
        2 => ec_params(selector & 0x10 != 0, rest),
        3 => verify_signature(algorithm, selector, rest),
        _ => rsa_components(rest),
    }
}

#[cfg(feature = "pkcs11")]
fn token_signature(algorithm: Algorithm, selector: u8, rest: &[u8]) {
    use crate::backend::pkcs11::encode;

    // Fuzzed raw bytes.
    let (rsa_len, raw) = match rest {
        [a, b, raw @ ..] => (usize::from(u16::from_be_bytes([*a, *b]) % 600), raw),
        _ => (256, rest),
    };
    let out = encode(algorithm, rsa_len, raw.to_vec());
    match algorithm {
        Algorithm::EcdsaP256 => {
            let expected = p256::ecdsa::Signature::from_slice(raw);
            assert_eq!(out.is_ok(), expected.is_ok(), "P-256 r||s acceptance");
            if let (Ok(out), Ok(expected)) = (out, expected) {
                let sig = p256::ecdsa::Signature::from_der(&out).expect("encoded DER parses");
                assert_eq!(sig.to_der().as_bytes(), &out[..], "DER is not canonical");
                assert_eq!(sig, expected, "r and s changed");
            }
        }
        Algorithm::EcdsaSecp256k1 => {
            let expected = k256::ecdsa::Signature::from_slice(raw);
            assert_eq!(out.is_ok(), expected.is_ok(), "secp256k1 r||s acceptance");
            if let (Ok(out), Ok(expected)) = (out, expected) {
                let sig = k256::ecdsa::Signature::from_der(&out).expect("encoded DER parses");
                assert_eq!(sig.to_der().as_bytes(), &out[..], "DER is not canonical");
                assert_eq!(sig, expected.normalize_s(), "not the low-S form of r, s");
            }
        }
        Algorithm::Ed25519 => match out {
            Ok(out) => assert_eq!(out, raw, "Ed25519 signatures pass unchanged"),
            Err(_) => assert_ne!(raw.len(), 64, "a 64-byte Ed25519 signature was refused"),
        },
        Algorithm::RsaPkcs1Sha256 => match out {
            Ok(out) => {
                assert_eq!(out.len(), rsa_len, "not padded to the modulus length");
                assert!(out.ends_with(raw));
                assert!(out[..rsa_len - raw.len()].iter().all(|b| *b == 0));
            }
            Err(_) => assert!(raw.len() > rsa_len, "refused a signature that fits"),
        },
    }

    // A real signature, handed over as a token would: raw r||s (either S), or an RSA signature
    // stripped of its leading zero bytes. Encoded, it must verify.
    let key = software_key(algorithm);
    let message = SIGNED_MESSAGE;
    let wire = real_signature(algorithm);
    let (raw, rsa_len) = match algorithm {
        Algorithm::EcdsaP256 => {
            let sig = p256::ecdsa::Signature::from_der(&wire).expect("own DER");
            let sig = if selector & 0x10 != 0 {
                let (r, s) = sig.split_scalars();
                p256::ecdsa::Signature::from_scalars(r, -*s).expect("negated S")
            } else {
                sig
            };
            (sig.to_bytes().to_vec(), 0)
        }
        Algorithm::EcdsaSecp256k1 => {
            let sig = k256::ecdsa::Signature::from_der(&wire).expect("own DER");
            let sig = if selector & 0x10 != 0 {
                let (r, s) = sig.split_scalars();
                k256::ecdsa::Signature::from_scalars(r, -*s).expect("negated S")
            } else {
                sig
            };
            (sig.to_bytes().to_vec(), 0)
        }
        Algorithm::RsaPkcs1Sha256 => {
            let stripped = wire.iter().position(|b| *b != 0).unwrap_or(wire.len());
            (wire[stripped..].to_vec(), wire.len())
        }
        _ => (wire.clone(), 0),
    };
    let encoded = encode(algorithm, rsa_len, raw).expect("a real signature encodes");
    key.public_key()
        .verify(message, &encoded)
        .expect("a real signature, encoded as the backend does, verifies");
}

#[cfg(not(feature = "pkcs11"))]
fn token_signature(_: Algorithm, _: u8, _: &[u8]) {}

fn ec_point(rest: &[u8]) {
    #[cfg(feature = "pkcs11")]
    let point = {
        use crate::backend::pkcs11::key::unwrap_octet_string;
        let point = unwrap_octet_string(rest);
        assert_eq!(
            unwrap_octet_string(point),
            point,
            "unwrapping is not idempotent"
        );
        if point.len() != rest.len() {
            assert!(matches!(point.len(), 32 | 65) && rest.ends_with(point));
            assert!(rest[0] == 0x04 && rest.len() - point.len() <= 3);
        }
        point
    };
    #[cfg(not(feature = "pkcs11"))]
    let point = rest;

    for (algorithm, key) in [
        (
            Algorithm::EcdsaP256,
            PublicKey::from_ec_point(Algorithm::EcdsaP256, point),
        ),
        (
            Algorithm::EcdsaSecp256k1,
            PublicKey::from_ec_point(Algorithm::EcdsaSecp256k1, point),
        ),
        (Algorithm::Ed25519, PublicKey::from_ed25519_bytes(point)),
    ] {
        if let Ok(key) = key {
            assert_eq!(key.algorithm(), algorithm);
            check_public_key_round_trip(&key);
        }
    }
    // Not EC algorithms: refused, not mistaken for a point.
    assert!(PublicKey::from_ec_point(Algorithm::Ed25519, point).is_err());
    assert!(PublicKey::from_ec_point(Algorithm::RsaPkcs1Sha256, point).is_err());
}

/// SPKI DER and PEM of a parsed key read back to the same key.
fn check_public_key_round_trip(key: &PublicKey) {
    let from_der = PublicKey::from_spki_der(key.spki_der()).expect("own SPKI parses");
    assert_eq!(&from_der, key);
    let pem = key.to_pem();
    assert!(pem.lines().all(|l| l.len() <= 64));
    let from_pem = PublicKey::from_pem(&pem).expect("own PEM parses");
    assert_eq!(&from_pem, key);
    let id = crate::protocol::default_credential_id(key);
    assert_eq!(id.len(), 22);
    assert!(id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
}

#[cfg(feature = "pkcs11")]
fn ec_params(edwards: bool, params: &[u8]) {
    use crate::backend::pkcs11::curves::{certificate_spki, ec_algorithm};
    const P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    const SECP256K1: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x0a];
    const ED25519_OID: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];
    const ED25519_NAME: &[u8] = b"\x13\x0cedwards25519";

    // The named curves in the forms tokens use are recognised, for their key type only.
    let expected = match params {
        P256 => Some(Algorithm::EcdsaP256),
        SECP256K1 => Some(Algorithm::EcdsaSecp256k1),
        ED25519_OID | ED25519_NAME => Some(Algorithm::Ed25519),
        _ => None,
    };
    let found = ec_algorithm(edwards, params);
    if let Some(alg) = expected {
        assert_eq!(found.is_ok(), (alg == Algorithm::Ed25519) == edwards);
    }
    match found {
        Ok(alg) => {
            // An Edwards curve for CKK_EC_EDWARDS keys, a Weierstrass one for CKK_EC keys.
            assert_eq!(
                alg == Algorithm::Ed25519,
                edwards,
                "{alg} for the wrong key type"
            );
            assert!(
                expected.is_none_or(|e| e == alg),
                "{alg} read from another curve"
            );
            assert!(
                ec_algorithm(!edwards, params).is_err(),
                "the same parameters fit both key types"
            );
        }
        Err(reason) => {
            // A short description, never a dump of the bytes.
            assert!(!reason.is_empty() && reason.len() < 400, "{reason}");
            if params.len() >= 8 {
                assert!(!reason.contains(&hex::encode(params)), "{reason}");
            }
        }
    }

    // The same bytes as a certificate (the public key of a token key that has only one).
    if let Some(spki) = certificate_spki(params) {
        let (whole, part) = (params.as_ptr_range(), spki.as_ptr_range());
        assert!(
            whole.start <= part.start && part.end <= whole.end,
            "not a part of the certificate"
        );
        if let Ok(key) = PublicKey::from_spki_der(spki) {
            check_public_key_round_trip(&key);
        }
    }
}

#[cfg(not(feature = "pkcs11"))]
fn ec_params(_: bool, _: &[u8]) {}

fn verify_signature(algorithm: Algorithm, selector: u8, rest: &[u8]) {
    let key = software_key(algorithm);
    let public = key.public_key();
    let (message, tail) = match rest.split_first() {
        Some((&n, tail)) => tail.split_at(usize::from(n).min(tail.len())),
        None => (&[][..], rest),
    };
    // A fuzzed signature, checked by every key: refused or accepted, never a panic.
    for a in ALGORITHMS {
        let _ = software_key(a).public_key().verify(message, tail);
    }
    // A real signature, altered by (position, xor) pairs and possibly cut or extended.
    let real = real_signature(algorithm);
    let mut altered = real.clone();
    for pair in tail.chunks(2) {
        let (pos, xor) = (usize::from(pair[0]), pair.get(1).copied().unwrap_or(0xff));
        if let Some(b) = altered.get_mut(pos % real.len()) {
            *b ^= xor;
        }
    }
    match selector & 0x18 {
        0x08 => altered.truncate(usize::from(tail.first().copied().unwrap_or(0)) % real.len()),
        0x10 => altered.extend_from_slice(tail.get(..4).unwrap_or(tail)),
        _ => {}
    }
    public
        .verify(SIGNED_MESSAGE, &real)
        .expect("a real signature verifies");
    if message != SIGNED_MESSAGE {
        assert!(
            public.verify(message, &real).is_err(),
            "a signature verified over another message"
        );
    }
    if altered == real || public.verify(SIGNED_MESSAGE, &altered).is_err() {
        return;
    }
    // Accepted although different: only an ECDSA signature with the same r and ±s may be.
    match algorithm {
        Algorithm::EcdsaP256 => {
            let a = p256::ecdsa::Signature::from_der(&altered).expect("accepted, so DER");
            let r = p256::ecdsa::Signature::from_der(&real).expect("own DER");
            assert_eq!(
                a.normalize_s(),
                r.normalize_s(),
                "a different P-256 signature verified"
            );
        }
        Algorithm::EcdsaSecp256k1 => {
            let a = k256::ecdsa::Signature::from_der(&altered).expect("accepted, so DER");
            let r = k256::ecdsa::Signature::from_der(&real).expect("own DER");
            assert_eq!(
                a.normalize_s(),
                r.normalize_s(),
                "a different secp256k1 signature verified"
            );
        }
        other => panic!("an altered {other} signature verified"),
    }
}

fn rsa_components(rest: &[u8]) {
    let Some((&n_len, rest)) = rest.split_first() else {
        return;
    };
    // Modulus lengths up to 255 * 2 bytes + what follows: enough to reach 2048-bit keys.
    let n_len = (usize::from(n_len) * 2).min(rest.len());
    let (modulus, exponent) = rest.split_at(n_len);
    if let Ok(key) = PublicKey::from_rsa_components(modulus, exponent) {
        assert_eq!(key.algorithm(), Algorithm::RsaPkcs1Sha256);
        check_public_key_round_trip(&key);
    }
}

// ------------------------------------------------------------------------------------------
// key_uri
// ------------------------------------------------------------------------------------------

/// A value that must never show in any message once given as a PIN.
const CANARY_PIN: &str = "739146285";

/// Key URIs: [`KeyUri::parse`], `Display` round trip, and for `pkcs11:`/`piv:` URIs the
/// backends' readers (`Pkcs11Config::from_uri`, `piv::builder_from_uri`). The input is also
/// tried with a canary PIN appended as `pin=` / `pin-value=` (plain and percent-encoded): no
/// error, `Display` or `Debug` text may then contain it.
pub fn key_uri(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    check_key_uri(text, None);
    if text.contains(CANARY_PIN) {
        return;
    }
    let encoded: String = CANARY_PIN.bytes().map(|b| format!("%{b:02x}")).collect();
    for (sep, name, value) in [
        (";", "pin", CANARY_PIN),
        ("&", "pin", CANARY_PIN),
        ("?", "pin-value", CANARY_PIN),
        ("&", "pin-value", encoded.as_str()),
        (";", "pin-value", CANARY_PIN),
        ("?", "pin", encoded.as_str()),
    ] {
        check_key_uri(&format!("{text}{sep}{name}={value}"), Some(CANARY_PIN));
    }
}

fn check_key_uri(text: &str, secret: Option<&str>) {
    let no_secret = |what: &str, shown: String| {
        if let Some(secret) = secret {
            assert!(
                !shown.contains(secret),
                "{what} shows the PIN given in {text:?}: {shown}"
            );
        }
    };
    let uri = match KeyUri::parse(text) {
        Ok(uri) => uri,
        Err(e) => {
            no_secret("the parse error", format!("{e} {e:?}"));
            return;
        }
    };
    assert!(matches!(uri.scheme(), "file" | "pkcs11" | "piv"));
    // Display reads back as the same URI (unless it hid a PIN).
    let shown = uri.to_string();
    if !shown.contains("[REDACTED]") {
        let again = KeyUri::parse(&shown)
            .unwrap_or_else(|e| panic!("Display of {text:?} ({shown:?}) does not parse: {e}"));
        assert_eq!(again, uri, "Display of {text:?} is {shown:?}");
    }
    let attrs = match &uri {
        // A file path is a path: it is shown as given, whatever it contains.
        KeyUri::File { path } => {
            assert!(!path.as_os_str().is_empty());
            return;
        }
        KeyUri::Pkcs11(a) | KeyUri::Piv(a) => a,
    };
    no_secret("the URI's Display", format!("{uri} {uri:?}"));
    no_secret("an attribute error", attrs.invalid("x").to_string());
    if let Some(id) = attrs.id_bytes() {
        assert_eq!(
            attrs.path_attr("id"),
            Some(String::from_utf8_lossy(id).as_ref()),
            "id text and bytes disagree"
        );
    }
    #[cfg(feature = "pkcs11")]
    if let KeyUri::Pkcs11(a) = &uri {
        // Only errors are checked: a config holds values as given (a module path containing
        // `;pin=` is a path).
        if let Err(e) = crate::backend::pkcs11::Pkcs11Config::from_uri(a) {
            no_secret("the PKCS#11 config error", format!("{e} {e:?}"));
        }
    }
    #[cfg(feature = "piv")]
    if let KeyUri::Piv(a) = &uri {
        if let Err(e) = crate::backend::piv::builder_from_uri(a) {
            no_secret("the PIV URI error", format!("{e} {e:?}"));
        }
    }
}

// ------------------------------------------------------------------------------------------
// spki_pem
// ------------------------------------------------------------------------------------------

/// Public and private key files: [`PublicKey::from_spki_der`] on the bytes,
/// [`PublicKey::from_pem`] and [`SoftwareKey::from_pem`] on them as text. Keys that load
/// round-trip through their encodings; private keys sign, and the signature verifies.
pub fn spki_pem(data: &[u8]) {
    if let Ok(key) = PublicKey::from_spki_der(data) {
        assert_eq!(key.spki_der(), data, "the SPKI is kept as given");
        check_public_key_round_trip(&key);
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(key) = PublicKey::from_pem(text) {
        check_public_key_round_trip(&key);
    }
    match SoftwareKey::from_pem(text, "fuzz input") {
        Ok(key) => {
            let message = b"dfns-signer fuzz";
            let signature = key.sign(message).expect("a loaded key signs");
            key.public_key()
                .verify(message, &signature)
                .expect("its signature verifies");
            check_public_key_round_trip(key.public_key());
            let pem = key.to_pkcs8_pem().expect("a loaded key exports");
            let again = SoftwareKey::from_pem(&pem, "round trip").expect("own PKCS#8 loads");
            assert_eq!(again.public_key(), key.public_key());
            // No key material in what is printed.
            let shown = format!("{key:?} {}", key.describe());
            let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
            assert!(!shown.contains(&body));
        }
        Err(e) => {
            let _ = format!("{e} {e:?}");
        }
    }
}

// ------------------------------------------------------------------------------------------
// simulator_request
// ------------------------------------------------------------------------------------------

#[cfg(feature = "simulator")]
pub use self::simulator_target::simulator_request;

#[cfg(feature = "simulator")]
mod simulator_target {
    //! The simulator target: a real simulator, started once on loopback inside this process,
    //! and requests built from the input sent to it over HTTP/1.1 (its pipeline — bearer token,
    //! user action, router, handlers — is only reachable that way).

    use std::sync::{Arc, Mutex, OnceLock};
    use std::time::Duration;

    use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
    use secrecy::ExposeSecret;
    use serde_json::{json, Value};

    use super::software_key;
    use crate::backend::software::SoftwareKey;
    use crate::backend::{Algorithm, KeyBackend};
    use crate::protocol::UserActionChallenge;
    use crate::simulator::Simulator;
    use crate::{attest, CredentialSigner};

    /// The simulator's routes (`{id}` is filled from the input), and a few it does not serve.
    const ROUTES: &[(&str, &str)] = &[
        ("POST", "/auth/action/init"),
        ("POST", "/auth/action"),
        ("POST", "/auth/login/init"),
        ("POST", "/auth/login"),
        ("POST", "/auth/login/delegated"),
        ("PUT", "/auth/logout"),
        ("POST", "/auth/credentials/init"),
        ("POST", "/auth/credentials"),
        ("GET", "/auth/credentials"),
        ("POST", "/auth/credentials/code"),
        ("POST", "/auth/credentials/code/init"),
        ("POST", "/auth/credentials/code/verify"),
        ("POST", "/auth/service-accounts"),
        ("GET", "/auth/service-accounts"),
        ("GET", "/auth/service-accounts/{id}"),
        ("PUT", "/auth/service-accounts/{id}/activate"),
        ("PUT", "/auth/service-accounts/{id}/deactivate"),
        ("POST", "/auth/pats"),
        ("GET", "/auth/pats"),
        ("POST", "/wallets"),
        ("GET", "/wallets"),
        ("GET", "/wallets/{id}"),
        ("PUT", "/wallets/{id}"),
        ("PUT", "/wallets/{id}/tags"),
        ("DELETE", "/wallets/{id}/tags"),
        ("POST", "/wallets/{id}/signatures"),
        ("GET", "/wallets/{id}/signatures"),
        ("GET", "/wallets/{id}/signatures/{id2}"),
        ("POST", "/webhooks"),
        ("GET", "/webhooks/{id}"),
        ("DELETE", "/webhooks/{id}"),
        ("POST", "/webhooks/{id}/ping"),
        // Not served.
        ("GET", "/"),
        ("PATCH", "/wallets/{id}"),
        ("POST", "/networks/{id}/call-function"),
        ("GET", "/auth/action/init"),
        ("DELETE", "/auth/action"),
        ("OPTIONS", "/wallets"),
        ("HEAD", "/wallets/{id}"),
    ];

    /// Methods for a raw path (the selector past the route table).
    const RAW_METHODS: &[&str] = &["GET", "POST", "PUT", "DELETE", "PATCH", "FUZZ"];

    /// Statuses the simulator answers with when no fault is injected.
    const STATUSES: &[u16] = &[200, 400, 401, 403, 404, 409, 413];

    /// Executions before the simulator is replaced by a fresh one (its memory only grows).
    const RESTART_EVERY: u64 = 2000;

    struct Harness {
        rt: tokio::runtime::Runtime,
        sim: Option<Live>,
        root_key: Arc<SoftwareKey>,
        execs: u64,
        registrations: u64,
    }

    /// A running simulator and what the harness knows of it.
    struct Live {
        sim: Simulator,
        client: reqwest::Client,
        token: String,
        signer: CredentialSigner,
        wallet_id: String,
        signature_id: String,
        service_account_id: String,
        dirty: bool,
    }

    /// Values an input may name with `$NAME` placeholders.
    #[derive(Default)]
    struct Placeholders {
        challenge_identifier: String,
        challenge: String,
        assertion: String,
        attestation: String,
        code: String,
    }

    fn harness() -> &'static Mutex<Harness> {
        static HARNESS: OnceLock<Mutex<Harness>> = OnceLock::new();
        HARNESS.get_or_init(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            Mutex::new(Harness {
                rt,
                sim: None,
                root_key: software_key(Algorithm::EcdsaP256),
                execs: 0,
                registrations: 0,
            })
        })
    }

    /// A decoded response.
    struct Answer {
        status: u16,
        body: Value,
    }

    impl Live {
        async fn start(root_key: Arc<SoftwareKey>) -> Live {
            let sim = Simulator::builder()
                .root_public_key_pem(root_key.public_key().to_pem())
                .start()
                .await
                .expect("simulator starts");
            let client = reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("HTTP client");
            let token = sim.auth_token().expose_secret().to_owned();
            let signer = CredentialSigner::new(sim.credential_id(), root_key);
            let mut live = Live {
                sim,
                client,
                token,
                signer,
                wallet_id: String::new(),
                signature_id: String::new(),
                service_account_id: String::new(),
                dirty: false,
            };
            // Entities for the `$WALLET`, `$SIGID` and `$SA` placeholders.
            let wallet = live
                .signed(
                    "POST",
                    "/wallets",
                    r#"{"network":"EthereumSepolia","name":"fuzz"}"#,
                )
                .await;
            live.wallet_id = wallet.body["id"].as_str().unwrap_or_default().to_owned();
            let path = format!("/wallets/{}/signatures", live.wallet_id);
            let body = format!(r#"{{"kind":"Hash","hash":"{}"}}"#, "ab".repeat(32));
            let signature = live.signed("POST", &path, &body).await;
            live.signature_id = signature.body["id"].as_str().unwrap_or_default().to_owned();
            let pem = software_key(Algorithm::Ed25519).public_key().to_pem();
            let body = json!({ "name": "fuzz-sa", "publicKey": pem }).to_string();
            let sa = live.signed("POST", "/auth/service-accounts", &body).await;
            live.service_account_id = sa.body["userInfo"]["userId"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            assert!(
                !live.wallet_id.is_empty()
                    && !live.signature_id.is_empty()
                    && !live.service_account_id.is_empty(),
                "the simulator's fixtures could not be created"
            );
            live
        }

        fn url(&self, path: &str) -> Option<reqwest::Url> {
            reqwest::Url::parse(&format!("{}{path}", self.sim.base_url())).ok()
        }

        /// Sends one request and checks the answer is a well-formed simulator response.
        async fn send(
            &self,
            method: &str,
            url: reqwest::Url,
            headers: &[(&str, HeaderValue)],
            body: Vec<u8>,
        ) -> Answer {
            let method = reqwest::Method::from_bytes(method.as_bytes()).expect("valid method");
            let is_head = method == reqwest::Method::HEAD;
            let mut request = self.client.request(method.clone(), url.clone());
            for (name, value) in headers {
                request = request.header(*name, value.clone());
            }
            let response =
                request.body(body).send().await.unwrap_or_else(|e| {
                    panic!("no well-formed HTTP answer to {method} {url}: {e:?}")
                });
            let status = response.status().as_u16();
            let json_type = response
                .headers()
                .get(CONTENT_TYPE)
                .is_some_and(|v| v == "application/json");
            let bytes = response
                .bytes()
                .await
                .unwrap_or_else(|e| panic!("unreadable answer body to {method} {url}: {e}"));
            assert!(
                STATUSES.contains(&status),
                "{method} {url} answered {status}: {}",
                String::from_utf8_lossy(&bytes)
            );
            assert!(json_type, "{method} {url}: answer is not application/json");
            if is_head {
                return Answer {
                    status,
                    body: Value::Null,
                };
            }
            let body: Value = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                panic!(
                    "{method} {url}: answer is not JSON ({e}): {}",
                    String::from_utf8_lossy(&bytes)
                )
            });
            assert!(body.is_object(), "{method} {url}: answer is not an object");
            if status != 200 {
                let error = &body["error"];
                assert!(
                    error["message"].is_string()
                        && error["id"].is_string()
                        && error["status"] == status,
                    "{method} {url}: not a Dfns error body: {body}"
                );
            }
            Answer { status, body }
        }

        fn root_auth(&self) -> (&'static str, HeaderValue) {
            let value =
                HeaderValue::from_str(&format!("Bearer {}", self.token)).expect("tokens are ASCII");
            (AUTHORIZATION.as_str(), value)
        }

        /// POST with the root token, a JSON body.
        async fn root_post(&self, path: &str, body: &Value) -> Answer {
            let url = self.url(path).expect("fixed URL");
            let headers = [self.root_auth()];
            self.send("POST", url, &headers, body.to_string().into_bytes())
                .await
        }

        /// A user action for `method path body`, signed by the root credential; `None` when the
        /// simulator will not issue one (a method or body it refuses to bind).
        async fn user_action(&self, method: &str, path: &str, body: &str) -> Option<String> {
            let init = json!({
                "userActionPayload": body,
                "userActionHttpMethod": method,
                "userActionHttpPath": path,
                "userActionServerKind": "Api",
            });
            let answer = self.root_post("/auth/action/init", &init).await;
            if answer.status != 200 {
                return None;
            }
            let challenge = UserActionChallenge::from_json(answer.body.to_string().as_bytes())
                .expect("the simulator's challenge parses");
            let factor = self.signer.assert(&challenge).expect("root signs");
            let complete = json!({
                "challengeIdentifier": challenge.challenge_identifier,
                "firstFactor": factor,
            });
            let answer = self.root_post("/auth/action", &complete).await;
            assert_eq!(answer.status, 200, "a correct assertion was refused");
            answer.body["userAction"].as_str().map(str::to_owned)
        }

        /// A request with the root token and a user action.
        async fn signed(&self, method: &str, path: &str, body: &str) -> Answer {
            let token = self
                .user_action(method, path, body)
                .await
                .expect("user action issued");
            let headers = [
                self.root_auth(),
                (
                    "x-dfns-useraction",
                    HeaderValue::from_str(&token).expect("ASCII"),
                ),
            ];
            let url = self.url(path).expect("fixed URL");
            self.send(method, url, &headers, body.as_bytes().to_vec())
                .await
        }

        /// Prepares the challenge an input asks for (`$CI`, `$CH`, `$ASSERT`, `$ATTEST`, `$CODE`).
        async fn prepare(&self, prep: u8, code: bool, registrations: u64) -> Placeholders {
            let mut p = Placeholders::default();
            if code {
                let answer = self
                    .signed(
                        "POST",
                        "/auth/credentials/code",
                        r#"{"expiration":"2100-01-01T00:00:00Z"}"#,
                    )
                    .await;
                p.code = answer.body["code"].as_str().unwrap_or_default().to_owned();
            }
            let challenge = match prep {
                1 => {
                    let init = json!({
                        "userActionPayload": "{}",
                        "userActionHttpMethod": "POST",
                        "userActionHttpPath": "/wallets",
                    });
                    self.root_post("/auth/action/init", &init).await
                }
                2 => {
                    let url = self.url("/auth/login/init").expect("fixed URL");
                    let body =
                        json!({ "username": self.sim.username(), "orgId": self.sim.org_id() });
                    self.send("POST", url, &[], body.to_string().into_bytes())
                        .await
                }
                3 if code => {
                    let url = self.url("/auth/credentials/code/init").expect("fixed URL");
                    let body = json!({ "code": p.code, "credentialKind": "Key" });
                    self.send("POST", url, &[], body.to_string().into_bytes())
                        .await
                }
                3 => {
                    self.root_post("/auth/credentials/init", &json!({ "kind": "Key" }))
                        .await
                }
                _ => return p,
            };
            p.challenge_identifier = challenge.body["challengeIdentifier"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            p.challenge = challenge.body["challenge"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if !p.challenge.is_empty() {
                if let Ok(factor) = self.signer.sign_challenge(&p.challenge) {
                    p.assertion = factor.to_json();
                }
                let new_key = software_key(Algorithm::EcdsaSecp256k1);
                let cred_id = format!("fuzz-cred-{registrations}");
                if let Ok(a) = attest(new_key.as_ref(), &p.challenge, &cred_id) {
                    p.attestation = serde_json::to_string(&a.credential_info).expect("serializes");
                }
            }
            p
        }

        fn substitute(&self, p: &Placeholders, input: &[u8]) -> Vec<u8> {
            if !input.contains(&b'$') {
                return input.to_vec();
            }
            let pem = self.signer.backend().public_key().to_pem();
            let pem = serde_json::to_string(&pem).expect("serializes");
            let pem = &pem[1..pem.len() - 1];
            let pairs: [(&str, &str); 13] = [
                ("$CI", &p.challenge_identifier),
                ("$CH", &p.challenge),
                ("$ASSERT", &p.assertion),
                ("$ATTEST", &p.attestation),
                ("$CODE", &p.code),
                ("$CRED", self.sim.credential_id()),
                ("$ORG", self.sim.org_id()),
                ("$USER", self.sim.username()),
                ("$WALLET", &self.wallet_id),
                ("$SIGID", &self.signature_id),
                ("$SA", &self.service_account_id),
                ("$TOKEN", &self.token),
                ("$PEM", pem),
            ];
            let mut out = Vec::with_capacity(input.len());
            let mut i = 0;
            'bytes: while i < input.len() {
                if input[i] == b'$' {
                    // Longest names first where one is a prefix of another ($CI/$CH vs $CODE…).
                    let mut best: Option<(&str, &str)> = None;
                    for (name, value) in pairs {
                        if input[i..].starts_with(name.as_bytes())
                            && best.is_none_or(|(b, _)| name.len() > b.len())
                        {
                            best = Some((name, value));
                        }
                    }
                    if let Some((name, value)) = best {
                        out.extend_from_slice(value.as_bytes());
                        i += name.len();
                        continue 'bytes;
                    }
                }
                out.push(input[i]);
                i += 1;
            }
            out
        }
    }

    /// One request (sometimes a short exchange) built from the input, sent to a simulator:
    ///
    /// - byte 0, flags: bits 0–1 the `Authorization` header (none, the root token, the input's
    ///   header field, the root token with an odd-cased scheme and extra spaces); bit 2 signs a
    ///   user action for the request with the root credential; bit 3 sends the header field as
    ///   `X-DFNS-USERACTION` (with bit 2: sends the signed request twice, a replay); bits 4–5
    ///   prepare a challenge first (none, user action, login, credential registration); bit 6
    ///   gets a credential code first (with a registration: the code-born challenge); bit 7
    ///   lowercases the method;
    /// - byte 1 picks the route (past the table: a raw path, the method picked by byte 1);
    /// - the rest, split at the first three `\n`: path parameters (`{id}` and, after a space,
    ///   `{id2}`; the whole path for a raw route), query string, header field, body.
    ///
    /// `$CI`, `$CH`, `$ASSERT`, `$ATTEST`, `$CODE`, `$CRED`, `$ORG`, `$USER`, `$WALLET`, `$SIGID`,
    /// `$SA`, `$TOKEN` and `$PEM` in those fields are replaced by the simulator's live values
    /// (the prepared challenge and its signed answer or attestation, ids, the root token, the
    /// root public key as a JSON string body) so inputs can reach past the checks on them.
    ///
    /// Every answer must be a well-formed HTTP response with a JSON body, a status the simulator
    /// uses (no 5xx: no fault is injected), and a Dfns error body on refusals; a refusal of the
    /// input's own `Authorization` value must not quote it.
    pub fn simulator_request(data: &[u8]) {
        let [flags, selector, rest @ ..] = data else {
            return;
        };
        let (flags, selector) = (*flags, *selector);
        let mut fields = rest.splitn(4, |b| *b == b'\n');
        let param = fields.next().unwrap_or_default();
        let query = fields.next().unwrap_or_default();
        let header = fields.next().unwrap_or_default();
        let body = fields.next().unwrap_or_default();

        let mut guard = harness().lock().unwrap_or_else(|p| p.into_inner());
        let h = &mut *guard;
        h.execs += 1;
        h.registrations += 1;
        let restart =
            h.execs.is_multiple_of(RESTART_EVERY) || h.sim.as_ref().is_none_or(|s| s.dirty);
        let root_key = h.root_key.clone();
        let registrations = h.registrations;
        let Harness { rt, sim, .. } = h;
        rt.block_on(async {
            if restart {
                if let Some(old) = sim.take() {
                    old.sim.shutdown().await;
                }
            }
            if sim.is_none() {
                *sim = Some(Live::start(root_key).await);
            }
            let live = sim.as_mut().expect("started");
            let placeholders = live
                .prepare((flags >> 4) & 3, flags & 0x40 != 0, registrations)
                .await;
            let param = live.substitute(&placeholders, param);
            let query = live.substitute(&placeholders, query);
            let header = live.substitute(&placeholders, header);
            let body = live.substitute(&placeholders, body);

            // Method and path.
            let param = String::from_utf8_lossy(&param);
            let index = usize::from(selector);
            let (method, path) = match ROUTES.get(index) {
                Some((method, template)) => {
                    let (id, id2) = param.split_once(' ').unwrap_or((&param, ""));
                    (
                        (*method).to_owned(),
                        template.replace("{id2}", id2).replace("{id}", id),
                    )
                }
                None => {
                    let method = RAW_METHODS[index % RAW_METHODS.len()].to_owned();
                    let path = if param.starts_with('/') {
                        param.to_string()
                    } else {
                        format!("/{param}")
                    };
                    (method, path)
                }
            };
            let method = if flags & 0x80 != 0 {
                method.to_ascii_lowercase()
            } else {
                method
            };
            let query = String::from_utf8_lossy(&query);
            let target = if query.is_empty() {
                path
            } else {
                format!("{path}?{query}")
            };
            let Some(url) = live.url(&target) else {
                return;
            };
            // What the server will see (the URL parser normalises the path).
            let raw_path = url.path().to_owned();

            let mut headers: Vec<(&str, HeaderValue)> = Vec::new();
            let mut own_token: Option<String> = None;
            match flags & 3 {
                1 => headers.push(live.root_auth()),
                2 => {
                    if let Ok(value) = HeaderValue::from_bytes(&header) {
                        let text = String::from_utf8_lossy(&header);
                        own_token = Some(
                            text.split_once(' ')
                                .map_or(text.as_ref(), |(_, t)| t)
                                .trim()
                                .to_owned(),
                        );
                        headers.push((AUTHORIZATION.as_str(), value));
                    }
                }
                3 => headers.push((
                    AUTHORIZATION.as_str(),
                    HeaderValue::from_str(&format!("bEaReR   {}  ", live.token)).expect("ASCII"),
                )),
                _ => {}
            }
            let replay = flags & 0x0c == 0x0c;
            if flags & 0x04 != 0 {
                let signed = match std::str::from_utf8(&body) {
                    Ok(text) => live.user_action(&method, &raw_path, text).await,
                    Err(_) => None,
                };
                if let Some(token) = signed {
                    headers.push((
                        "x-dfns-useraction",
                        HeaderValue::from_str(&token).expect("ASCII"),
                    ));
                }
            } else if flags & 0x08 != 0 {
                if let Ok(value) = HeaderValue::from_bytes(&header) {
                    headers.push(("x-dfns-useraction", value));
                }
            }
            if reqwest::Method::from_bytes(method.as_bytes()).is_err() {
                return;
            }

            for _ in 0..if replay { 2 } else { 1 } {
                let answer = live
                    .send(&method, url.clone(), &headers, body.clone())
                    .await;
                if answer.status == 401 {
                    // A refused token is never quoted back (errors end up in logs). Only tokens
                    // that cannot be a word of the fixed messages are checked.
                    let distinctive = |t: &&str| {
                        t.len() >= 8
                            && t.bytes().any(|b| b.is_ascii_digit())
                            && t.bytes().any(|b| b.is_ascii_alphabetic())
                    };
                    if let Some(token) = own_token.as_deref().filter(distinctive) {
                        let text = answer.body.to_string();
                        let elsewhere = [&*param, &*query, &*String::from_utf8_lossy(&body)]
                            .iter()
                            .any(|f| f.contains(token));
                        assert!(
                            elsewhere || !text.contains(token),
                            "the refusal quotes the Authorization token: {text}"
                        );
                    }
                }
                // A logout revokes the token used — the root token, the only valid one an
                // input can present: start afresh rather than fuzz a locked-out simulator.
                if answer.status == 200 && raw_path == "/auth/logout" {
                    live.dirty = true;
                }
            }
        });
    }
}
