//! Byte-for-byte conformance with the official TypeScript SDK, from the deterministic vectors in
//! `tests/fixtures/fixed_vectors.json` (captured from `@dfns/sdk` 0.8 with `@dfns/sdk-keysigner`).
//! Ed25519 and RSA PKCS#1 v1.5 signatures are deterministic and compared exactly; ECDSA is
//! randomised in the SDK, so ours is verified and checked to be canonical DER instead.

use std::sync::Arc;

use dfns_signer::attest;
use dfns_signer::protocol::b64url_decode;
use dfns_signer::protocol::AllowedCredential;
use dfns_signer::protocol::{Method, Payload, UserActionChallenge, UserActionInit};
use dfns_signer::software::SoftwareKey;
use dfns_signer::{Algorithm, CredentialSigner, KeyBackend, PublicKey};
use serde_json::Value;

fn vectors() -> Value {
    serde_json::from_str(include_str!("fixtures/fixed_vectors.json")).unwrap()
}

fn key_for(kind: &str, v: &Value) -> SoftwareKey {
    let a = v["assertions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["keyKind"] == kind)
        .unwrap();
    SoftwareKey::from_pem(a["privateKeyPem"].as_str().unwrap(), kind).unwrap()
}

fn challenge_listing(challenge: &str, cred_id: &str) -> UserActionChallenge {
    let mut c = UserActionChallenge::from_json(
        serde_json::json!({"challenge": challenge, "challengeIdentifier": "ci"})
            .to_string()
            .as_bytes(),
    )
    .unwrap();
    c.allow_credentials.key.push(AllowedCredential {
        kind: "public-key".into(),
        id: cred_id.into(),
    });
    c
}

/// Verifies an ECDSA `der` signature over `message` under the SPKI `pem`, with the `p256` and
/// `k256` crates directly (not through our `PublicKey`): an independent check of what we sign.
fn verify_independently(kind: &str, pem: &str, message: &[u8], der: &[u8]) {
    use p256::ecdsa::signature::Verifier;
    use p256::pkcs8::DecodePublicKey;
    match kind {
        "p256" => {
            let key = p256::ecdsa::VerifyingKey::from_public_key_pem(pem).unwrap();
            let sig = p256::ecdsa::Signature::from_der(der).expect("DER");
            key.verify(message, &sig)
                .unwrap_or_else(|e| panic!("{kind}: {e}"));
        }
        "secp256k1" => {
            let key = k256::ecdsa::VerifyingKey::from_public_key_pem(pem).unwrap();
            // Dfns takes either S; k256 alone insists on the low one.
            let sig = k256::ecdsa::Signature::from_der(der)
                .expect("DER")
                .normalize_s();
            key.verify(message, &sig)
                .unwrap_or_else(|e| panic!("{kind}: {e}"));
        }
        other => panic!("{other} is not ECDSA"),
    }
}

/// Lowercase hexadecimal digits only.
fn is_lowercase_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Checks `sig` is DER with minimal integers: decoding and re-encoding gives the same bytes.
fn assert_canonical_der(alg: Algorithm, sig: &[u8]) {
    let reencoded = match alg {
        Algorithm::EcdsaP256 => p256::ecdsa::Signature::from_der(sig)
            .unwrap()
            .to_der()
            .as_bytes()
            .to_vec(),
        Algorithm::EcdsaSecp256k1 => k256::ecdsa::Signature::from_der(sig)
            .unwrap()
            .to_der()
            .as_bytes()
            .to_vec(),
        _ => unreachable!(),
    };
    assert_eq!(reencoded, sig, "signature is not canonical DER");
}

#[test]
fn first_factor_matches_the_official_signer() {
    let v = vectors();
    let challenge = v["challenge"].as_str().unwrap();
    let cred_id = v["credId"].as_str().unwrap();
    for a in v["assertions"].as_array().unwrap() {
        let kind = a["keyKind"].as_str().unwrap();
        let key = Arc::new(key_for(kind, &v));
        // Our SPKI PEM is the exact string the SDK derives from the same key.
        assert_eq!(
            key.public_key().to_pem(),
            a["publicKeyPem"].as_str().unwrap(),
            "{kind}"
        );

        let signer = CredentialSigner::new(cred_id, key.clone());
        let ff = signer
            .assert(&challenge_listing(challenge, cred_id))
            .unwrap();
        let client_data = b64url_decode(&ff.credential_assertion.client_data).unwrap();
        assert_eq!(
            client_data,
            a["clientDataUtf8"].as_str().unwrap().as_bytes(),
            "{kind}"
        );
        // And its wire form: the SDK's base64url string, and the credential id, as captured.
        let official = &a["firstFactor"]["credentialAssertion"];
        assert_eq!(
            ff.credential_assertion.client_data,
            official["clientData"].as_str().unwrap(),
            "{kind}"
        );
        assert_eq!(hex::encode(&client_data), a["clientDataHex"], "{kind}");
        assert_eq!(
            ff.credential_assertion.cred_id,
            official["credId"].as_str().unwrap(),
            "{kind}"
        );
        let sig = b64url_decode(&ff.credential_assertion.signature).unwrap();

        if a["deterministic"].as_bool().unwrap() {
            assert_eq!(
                ff.to_json(),
                a["firstFactorJson"].as_str().unwrap(),
                "{kind}: firstFactor JSON"
            );
            assert_eq!(
                hex::encode(&sig),
                a["signatureHex"].as_str().unwrap(),
                "{kind}"
            );
        } else {
            // Ours verifies over the SDK's clientData bytes under the SDK's public key.
            verify_independently(
                kind,
                a["publicKeyPem"].as_str().unwrap(),
                a["clientDataUtf8"].as_str().unwrap().as_bytes(),
                &sig,
            );
            assert_canonical_der(key.algorithm(), &sig);
            // And the SDK's own (randomised) signature verifies under our reading of the key.
            let theirs = hex::decode(a["signatureHex"].as_str().unwrap()).unwrap();
            let pk = PublicKey::from_pem(a["publicKeyPem"].as_str().unwrap()).unwrap();
            pk.verify(&client_data, &theirs).unwrap();
            // The SDK's JSON byte for byte, but for the signature.
            let their_sig = official["signature"].as_str().unwrap();
            let expected = a["firstFactorJson"].as_str().unwrap();
            assert_eq!(expected.matches(their_sig).count(), 1);
            assert_eq!(
                ff.to_json(),
                expected.replace(their_sig, &ff.credential_assertion.signature),
                "{kind}: firstFactor JSON apart from the signature"
            );
        }
    }
}

#[test]
fn payloads_and_init_bodies_match() {
    let v = vectors();
    for p in v["payloads"].as_array().unwrap() {
        let name = p["name"].as_str().unwrap();
        let text = p["userActionPayload"].as_str().unwrap();
        if let Some(expected) = p["utf8Hex"].as_str() {
            assert_eq!(hex::encode(text.as_bytes()), expected, "{name}");
        }
        let payload = if text.is_empty() {
            Payload::empty()
        } else {
            Payload::raw_json(text).unwrap()
        };
        assert_eq!(
            payload.as_str(),
            text,
            "{name}: raw payloads are sent as given"
        );
        // Serializing the parsed JSON again gives the SDK's bytes (key order and escaping
        // included); numbers JavaScript spells `1e+21` are the one known difference, which is
        // why raw payloads exist.
        if !text.is_empty() && name != "numbers" {
            let parsed: Value = serde_json::from_str(text).unwrap();
            assert_eq!(
                Payload::json(&parsed).unwrap().as_str(),
                text,
                "{name}: re-serialized"
            );
        }
        let init = UserActionInit::new(Method::Post, "/wallets", payload.as_str());
        if let Some(expected) = p["initBody"].as_str() {
            assert_eq!(
                serde_json::to_string(&init).unwrap(),
                expected,
                "{name}: init body"
            );
        }
    }
}

#[test]
fn key_credential_attestations_match() {
    let v = vectors();
    let challenge = v["challenge"].as_str().unwrap();
    for t in v["attestations"].as_array().unwrap() {
        let kind = t["keyKind"].as_str().unwrap();
        let key = key_for(kind, &v);
        let cred_id = t["credId"].as_str().unwrap();
        let att = attest(&key, challenge, cred_id).unwrap();
        assert_eq!(
            att.client_data,
            t["clientData"].as_str().unwrap().as_bytes(),
            "{kind}"
        );
        assert_eq!(
            att.client_data_hash,
            t["clientDataHash"].as_str().unwrap(),
            "{kind}"
        );
        assert_eq!(
            att.fingerprint,
            t["credInfoFingerprint"].as_str().unwrap(),
            "{kind}"
        );
        assert_eq!(
            att.credential_info.client_data,
            t["clientDataB64url"].as_str().unwrap(),
            "{kind}"
        );
        if t["deterministic"].as_bool().unwrap() {
            assert_eq!(
                att.signature_hex,
                t["signatureHex"].as_str().unwrap(),
                "{kind}"
            );
            assert_eq!(
                att.attestation_data,
                t["attestationData"].as_str().unwrap(),
                "{kind}"
            );
            assert_eq!(
                serde_json::to_value(&att.credential_info).unwrap(),
                t["credentialInfo"],
                "{kind}"
            );
        } else {
            // Ours verifies over the SDK's fingerprint bytes, under the SDK's public key.
            assert!(
                is_lowercase_hex(&att.signature_hex),
                "{kind}: {}",
                att.signature_hex
            );
            let sig = hex::decode(&att.signature_hex).unwrap();
            let pem = v["assertions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|a| a["keyKind"] == kind)
                .unwrap()["publicKeyPem"]
                .as_str()
                .unwrap();
            verify_independently(
                kind,
                pem,
                t["credInfoFingerprint"].as_str().unwrap().as_bytes(),
                &sig,
            );
            assert_canonical_der(key.algorithm(), &sig);
            // The SDK's attestation JSON and credentialInfo byte for byte, but for the signature.
            let their_sig = t["signatureHex"].as_str().unwrap();
            let their_att = t["attestationData"].as_str().unwrap();
            assert_eq!(their_att.matches(their_sig).count(), 1);
            let expected_att = their_att.replace(their_sig, &att.signature_hex);
            assert_eq!(
                att.attestation_data, expected_att,
                "{kind}: attestationData"
            );
            let mut expected_info = t["credentialInfo"].clone();
            expected_info["attestationData"] = base64::Engine::encode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                expected_att.as_bytes(),
            )
            .into();
            assert_eq!(
                serde_json::to_value(&att.credential_info).unwrap(),
                expected_info,
                "{kind}: credentialInfo"
            );
        }
    }
}

#[test]
fn signer_refuses_a_challenge_for_another_credential() {
    let v = vectors();
    let key = Arc::new(key_for("ed25519", &v));
    let signer = CredentialSigner::new("not-registered", key);
    let err = signer
        .assert(&challenge_listing("YWJj", "Y3JlZC1wMjU2LWE2ZTY4NTlmYWQwNA"))
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("not-registered") && text.contains("Y3JlZC1wMjU2LWE2ZTY4NTlmYWQwNA"),
        "{text}"
    );
}

#[test]
fn fixture_keys_load_in_every_pem_form() {
    for (file, alg) in [
        ("p256", Algorithm::EcdsaP256),
        ("secp256k1", Algorithm::EcdsaSecp256k1),
        ("ed25519", Algorithm::Ed25519),
        ("rsa2048", Algorithm::RsaPkcs1Sha256),
    ] {
        let path = format!(
            "{}/tests/fixtures/keys/{file}.pem",
            env!("CARGO_MANIFEST_DIR")
        );
        let key = SoftwareKey::from_pem_file(std::path::Path::new(&path)).unwrap();
        assert_eq!(key.algorithm(), alg);
        let public = std::fs::read_to_string(path.replace(".pem", ".pub.pem")).unwrap();
        assert_eq!(
            key.public_key(),
            &PublicKey::from_pem(&public).unwrap(),
            "{file}"
        );
    }
}
