//! The PKCS#11 backend against a real module: SoftHSM, set up by `hsm-config/softhsm/init-token.sh`.
//!
//! Needs `softhsm2` and `opensc` (pkcs11-tool). Fails, saying how to install them, when missing;
//! `DFNS_SIGNER_SKIP_HARDWARE=1` skips (and says so).

mod common;

use std::sync::Arc;

use common::softhsm::{self, hsm, Hsm, Shared, PIN_ENV, SO_PIN, USER_PIN};
use dfns_signer::pkcs11::{generate_key, open_uri, Pkcs11Config, Pkcs11Key};
use dfns_signer::{Algorithm, BackendError, KeyBackend, KeyUri, PinSource, PublicKey};
use secrecy::SecretString;
use sha2::Digest;

fn config(h: &Hsm, token: &str) -> Pkcs11Config {
    Pkcs11Config::new()
        .with_module_path(&h.module)
        .with_token_label(token)
        .with_pin(PinSource::Value(SecretString::from(USER_PIN.to_owned())))
}

fn open(h: &Hsm, token: &str, key: &str) -> Pkcs11Key {
    Pkcs11Key::open(&config(h, token).with_key_label(key))
        .unwrap_or_else(|e| panic!("open {token}/{key}: {e}"))
}

fn uri(h: &Hsm, path: &str, extra_query: &str) -> KeyUri {
    KeyUri::parse(&format!(
        "pkcs11:{path}?module-path={}&pin-source=env:{PIN_ENV}{extra_query}",
        h.module.display()
    ))
    .unwrap()
}

fn open_by_uri(
    h: &Hsm,
    path: &str,
    extra_query: &str,
) -> Result<Arc<dyn KeyBackend>, BackendError> {
    match uri(h, path, extra_query) {
        KeyUri::Pkcs11(attrs) => open_uri(&attrs),
        other => panic!("not a pkcs11 URI: {other}"),
    }
}

/// Signs and checks with our own verifier; returns the signature.
fn sign_verified(key: &dyn KeyBackend, message: &[u8]) -> Vec<u8> {
    let sig = key
        .sign(message)
        .unwrap_or_else(|e| panic!("{}: sign: {e}", key.describe()));
    key.public_key()
        .verify(message, &sig)
        .unwrap_or_else(|e| panic!("{}: {e}", key.describe()));
    sig
}

/// The SPKI that pkcs11-tool reads for the public key with this id.
fn spki_from_pkcs11_tool(h: &mut Shared, token: &str, id_hex: &str) -> Vec<u8> {
    let out = h.scratch(&format!("{token}-{id_hex}.spki.der"));
    h.pkcs11_tool(&[
        "--token-label",
        token,
        "--read-object",
        "--type",
        "pubkey",
        "--id",
        id_hex,
        "-o",
        out.to_str().unwrap(),
    ]);
    let bytes = std::fs::read(out).unwrap();
    // pkcs11-tool writes DER for most keys and PEM for EdDSA ones.
    if bytes.starts_with(b"-----BEGIN") {
        PublicKey::from_pem(std::str::from_utf8(&bytes).unwrap())
            .unwrap()
            .spki_der()
            .to_vec()
    } else {
        bytes
    }
}

#[test]
fn every_algorithm_signs_verifiably_with_keys_made_by_pkcs11_tool() {
    let Some(mut h) = hsm() else { return };
    use signature::Verifier;
    use spki::DecodePublicKey;
    let cases = [
        ("p256", "01", Algorithm::EcdsaP256),
        ("secp256k1", "02", Algorithm::EcdsaSecp256k1),
        ("ed25519", "03", Algorithm::Ed25519),
        ("rsa2048", "04", Algorithm::RsaPkcs1Sha256),
    ];
    for (label, id, alg) in cases {
        let key = open(&h, "algs", label);
        assert_eq!(key.algorithm(), alg, "{label}");
        assert!(
            key.provenance().never_left_the_token(),
            "{label}: {:?}",
            key.provenance()
        );
        // The public key we read from the token is the one pkcs11-tool reads.
        assert_eq!(
            key.public_key().spki_der(),
            spki_from_pkcs11_tool(&mut h, "algs", id),
            "{label}"
        );
        let spki = key.public_key().spki_der().to_vec();
        // secp256k1: enough signatures that an un-normalised high S would show up (k256 refuses it).
        for i in 0..24u8 {
            let message = format!("challenge {i} for {label}").into_bytes();
            let sig = sign_verified(&key, &message);
            // And independently of PublicKey::verify, with each algorithm's own crate.
            match alg {
                Algorithm::EcdsaP256 => {
                    let vk = p256::ecdsa::VerifyingKey::from_public_key_der(&spki).unwrap();
                    let sig = p256::ecdsa::Signature::from_der(&sig).unwrap();
                    vk.verify(&message, &sig).unwrap();
                }
                Algorithm::EcdsaSecp256k1 => {
                    let vk = k256::ecdsa::VerifyingKey::from_public_key_der(&spki).unwrap();
                    let parsed = k256::ecdsa::Signature::from_der(&sig).unwrap();
                    assert!(parsed.normalize_s() == parsed, "high S");
                    vk.verify(&message, &parsed).unwrap();
                }
                Algorithm::Ed25519 => {
                    assert_eq!(sig.len(), 64);
                    let vk = ed25519_dalek::VerifyingKey::from_public_key_der(&spki).unwrap();
                    vk.verify_strict(
                        &message,
                        &ed25519_dalek::Signature::from_slice(&sig).unwrap(),
                    )
                    .unwrap();
                }
                Algorithm::RsaPkcs1Sha256 => {
                    let pk = rsa::RsaPublicKey::from_public_key_der(&spki).unwrap();
                    let vk = rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(pk);
                    vk.verify(
                        &message,
                        &rsa::pkcs1v15::Signature::try_from(&sig[..]).unwrap(),
                    )
                    .unwrap();
                    break; // RSA signing is slow on SoftHSM; a few are enough
                }
                _ => unreachable!(),
            }
            // A signature never verifies for another message.
            assert!(
                key.public_key().verify(b"another message", &sig).is_err(),
                "{label}"
            );
        }
    }
}

#[test]
fn der_signatures_are_minimal() {
    let Some(h) = hsm() else { return };
    let key = open(&h, "algs", "p256");
    // 256 signatures: about one in 128 has an r or s under 2^248 (a short integer) and half
    // need the sign byte, so both edge cases are exercised.
    for i in 0..256u32 {
        let message = i.to_be_bytes();
        let sig = sign_verified(&key, &message);
        assert_minimal_der_signature(&sig);
    }
}

/// Checks the bytes themselves, without a DER library: SEQUENCE { INTEGER r, INTEGER s }, short
/// lengths that match, each integer positive, without a superfluous leading zero, at most 33
/// bytes (a 256-bit value plus the sign byte).
fn assert_minimal_der_signature(sig: &[u8]) {
    assert_eq!(sig[0], 0x30, "not a SEQUENCE: {}", hex::encode(sig));
    assert_eq!(
        sig[1] as usize,
        sig.len() - 2,
        "SEQUENCE length: {}",
        hex::encode(sig)
    );
    let mut rest = &sig[2..];
    for which in ["r", "s"] {
        assert_eq!(
            rest[0],
            0x02,
            "{which} not an INTEGER: {}",
            hex::encode(sig)
        );
        let len = rest[1] as usize;
        assert!(
            (1..=33).contains(&len),
            "{which} length {len}: {}",
            hex::encode(sig)
        );
        let int = &rest[2..2 + len];
        assert!(int[0] & 0x80 == 0, "{which} negative: {}", hex::encode(sig));
        if len > 1 {
            assert!(
                !(int[0] == 0 && int[1] & 0x80 == 0),
                "{which} has a superfluous leading zero: {}",
                hex::encode(sig)
            );
        }
        assert!(int.iter().any(|b| *b != 0), "{which} is zero");
        rest = &rest[2 + len..];
    }
    assert!(rest.is_empty(), "trailing bytes: {}", hex::encode(sig));
}

#[test]
fn uris_select_keys_by_label_id_and_serial() {
    let Some(h) = hsm() else { return };
    let by_id = open_by_uri(&h, "token=algs;id=%03", "&pool-size=2").unwrap();
    assert_eq!(by_id.algorithm(), Algorithm::Ed25519);
    sign_verified(&*by_id, b"by id");
    let serial = softhsm::own_context()
        .get_token_info(softhsm::slot_of("algs"))
        .unwrap()
        .serial_number()
        .trim()
        .to_owned();
    let by_serial = open_by_uri(
        &h,
        &format!("serial={serial};object=p256;id=%01;type=private"),
        "",
    )
    .unwrap();
    assert_eq!(by_serial.algorithm(), Algorithm::EcdsaP256);
    assert!(
        by_serial.describe().contains("algs"),
        "{}",
        by_serial.describe()
    );
    sign_verified(&*by_serial, b"by serial");
    // Label and id must both match.
    let err = open_by_uri(&h, "token=algs;object=p256;id=%02", "").unwrap_err();
    assert!(matches!(err, BackendError::KeyNotFound { .. }), "{err}");
}

#[test]
fn missing_key_lists_the_keys_found() {
    let Some(h) = hsm() else { return };
    let err = open_by_uri(&h, "token=algs;object=nope", "").unwrap_err();
    let BackendError::KeyNotFound {
        wanted,
        device,
        found,
    } = &err
    else {
        panic!("{err}")
    };
    assert!(wanted.contains("nope"), "{err}");
    assert!(device.contains("algs"), "{err}");
    for label in ["p256", "secp256k1", "ed25519", "rsa2048"] {
        assert!(
            found.iter().any(|f| f.contains(label)),
            "{label} not in {found:?}"
        );
    }
    println!("{err}");
}

#[test]
fn missing_token_lists_the_tokens_found() {
    let Some(h) = hsm() else { return };
    let err = open_by_uri(&h, "token=no-such-token;object=p256", "").unwrap_err();
    let BackendError::DeviceNotFound { wanted, found } = &err else {
        panic!("{err}")
    };
    assert!(wanted.contains("no-such-token"), "{err}");
    assert!(found.iter().any(|f| f.contains("\"algs\"")), "{found:?}");
    assert!(found.iter().any(|f| f.contains("\"conc\"")), "{found:?}");
    println!("{err}");
}

#[test]
fn bad_module_path_names_the_path_and_the_fix() {
    let Some(_) = hsm() else { return };
    let attrs =
        match KeyUri::parse("pkcs11:token=algs;object=p256?module-path=/nonexistent/libnothing.so")
            .unwrap()
        {
            KeyUri::Pkcs11(a) => a,
            _ => unreachable!(),
        };
    let err = open_uri(&attrs).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, BackendError::Device { .. }), "{text}");
    assert!(
        text.contains("/nonexistent/libnothing.so") && text.contains("install"),
        "{text}"
    );
    // With no module named, p11-kit's proxy is used (the rule and the error without it are
    // unit-tested in src/backend/pkcs11/module.rs; tests/p11_kit.rs signs through it).
}

#[test]
fn keys_we_generate_are_protected_and_usable_by_pkcs11_tool() {
    let Some(mut h) = hsm() else { return };
    let cfg = config(&h, "keygen");
    let cases = [
        ("ours-p256", [0x10u8], Algorithm::EcdsaP256),
        ("ours-k1", [0x11], Algorithm::EcdsaSecp256k1),
        ("ours-ed", [0x12], Algorithm::Ed25519),
        ("ours-rsa", [0x13], Algorithm::RsaPkcs1Sha256),
    ];
    for (label, id, alg) in cases {
        let public =
            generate_key(&cfg, alg, label, &id).unwrap_or_else(|e| panic!("generate {alg}: {e}"));
        assert_eq!(public.algorithm(), alg);
        let key = Pkcs11Key::open(&cfg.clone().with_key_id(id.to_vec())).unwrap();
        assert_eq!(key.public_key(), &public);
        let p = key.provenance();
        assert!(
            p.never_left_the_token() && p.is_protected(),
            "{label}: {p:?}"
        );
        sign_verified(&key, b"generated here");
        // pkcs11-tool sees the same public key.
        assert_eq!(
            public.spki_der(),
            spki_from_pkcs11_tool(&mut h, "keygen", &hex::encode(id)),
            "{label}"
        );
    }
    // pkcs11-tool signs with our P-256 key (CKM_ECDSA over a SHA-256 it is given, as SoftHSM 2.6
    // has no CKM_ECDSA_SHA256), and our public key verifies it.
    let message = b"signed by pkcs11-tool";
    let digest_file = h.scratch("keygen-digest");
    let sig_file = h.scratch("keygen-sig");
    std::fs::write(&digest_file, sha2::Sha256::digest(message)).unwrap();
    h.pkcs11_tool(&[
        "--token-label",
        "keygen",
        "--login",
        "--pin",
        USER_PIN,
        "--sign",
        "-m",
        "ECDSA",
        "--signature-format",
        "sequence",
        "--id",
        "10",
        "-i",
        digest_file.to_str().unwrap(),
        "-o",
        sig_file.to_str().unwrap(),
    ]);
    let p256_key =
        PublicKey::from_spki_der(&spki_from_pkcs11_tool(&mut h, "keygen", "10")).unwrap();
    p256_key
        .verify(message, &std::fs::read(&sig_file).unwrap())
        .unwrap();
    // Through a URI, as the CLI does: generate, then open with the same URI.
    let new_uri = uri(&h, "token=keygen;object=by-uri;id=%7e", "");
    let KeyUri::Pkcs11(attrs) = &new_uri else {
        unreachable!()
    };
    let public = dfns_signer::pkcs11::generate_key_for_uri(attrs, Algorithm::EcdsaP256).unwrap();
    let opened = open_uri(attrs).unwrap();
    assert_eq!(opened.public_key(), &public);
    sign_verified(&*opened, b"made by URI");
    // A second key with the same label is refused.
    let err = generate_key(&cfg, Algorithm::EcdsaP256, "ours-p256", &[0x20]).unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
}

#[test]
fn extractable_or_non_sensitive_keys_are_refused_unless_allowed() {
    let Some(h) = hsm() else { return };
    use cryptoki::mechanism::Mechanism;
    use cryptoki::object::Attribute;
    // Make a loose key pair directly, as a careless import would.
    softhsm::make_pair(
        "unsafe",
        &Mechanism::EccKeyPairGen,
        "loose",
        &[0x30],
        vec![
            Attribute::EcParams(softhsm::P256_PARAMS.to_vec()),
            Attribute::Verify(true),
        ],
        vec![
            Attribute::Private(true),
            Attribute::Sensitive(false),
            Attribute::Extractable(true),
            Attribute::Sign(true),
        ],
    );
    let err = open_by_uri(&h, "token=unsafe;object=loose", "").unwrap_err();
    let BackendError::UnsafeKey { reason, .. } = &err else {
        panic!("{err}")
    };
    assert!(
        reason.contains("CKA_EXTRACTABLE") && reason.contains("CKA_SENSITIVE"),
        "{err}"
    );
    assert!(reason.contains("allow-unsafe-key=true"), "{err}");
    let key = open_by_uri(&h, "token=unsafe;object=loose", "&allow-unsafe-key=true").unwrap();
    sign_verified(&*key, b"loose but allowed");
    let key = Pkcs11Key::open(
        &config(&h, "unsafe")
            .with_key_label("loose")
            .allow_unsafe_key(true),
    )
    .unwrap();
    assert!(!key.provenance().is_protected());
    assert!(!key.provenance().never_left_the_token());
}

#[test]
fn threads_sign_at_once() {
    let Some(h) = hsm() else { return };
    let key = Arc::new(
        Pkcs11Key::open(&config(&h, "conc").with_key_label("p256").with_pool_size(3)).unwrap(),
    );
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let key = Arc::clone(&key);
            std::thread::spawn(move || {
                for i in 0..40 {
                    sign_verified(&*key, format!("thread {t} message {i}").as_bytes());
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert!(
        key.open_sessions() <= 3,
        "pool grew past its size: {}",
        key.open_sessions()
    );
    assert_eq!(key.reopen_count(), 0);
    assert_eq!(key.login_attempts(), 1);
}

#[test]
fn sessions_closed_behind_our_back_are_reopened() {
    let Some(h) = hsm() else { return };
    let key = open(&h, "closed", "p256");
    sign_verified(&key, b"before");
    assert_eq!(key.login_attempts(), 1);
    softhsm::close_all_sessions("closed");
    // The next signature finds its session gone, reopens, logs in again and succeeds.
    sign_verified(&key, b"after");
    assert_eq!(key.reopen_count(), 1);
    assert_eq!(
        key.login_attempts(),
        2,
        "closing all sessions logs the token out"
    );
    sign_verified(&key, b"and after that");
    assert_eq!(key.reopen_count(), 1);
    // The module closed the old sessions: forgotten, and nothing else is open.
    assert_eq!(softhsm::sessions_on("closed"), key.open_sessions());
}

#[test]
fn logout_behind_our_back_is_healed() {
    let Some(h) = hsm() else { return };
    let key = Arc::new(
        Pkcs11Key::open(
            &config(&h, "logout")
                .with_key_label("p256")
                .with_pool_size(3),
        )
        .unwrap(),
    );
    // Several threads at once, so that the pool holds more than one session.
    let threads: Vec<_> = (0..3)
        .map(|t| {
            let key = Arc::clone(&key);
            std::thread::spawn(move || {
                for i in 0..10 {
                    sign_verified(&*key, format!("before {t} {i}").as_bytes());
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let before = key.open_sessions();
    assert_eq!(softhsm::sessions_on("logout"), before);
    let session = softhsm::own_context()
        .open_ro_session(softhsm::slot_of("logout"))
        .unwrap();
    session.logout().unwrap(); // login state is per token: this logs every session out
    sign_verified(&*key, b"after");
    assert_eq!(key.reopen_count(), 1);
    assert_eq!(key.login_attempts(), 2);
    for i in 0..2 * before {
        sign_verified(&*key, format!("after {i}").as_bytes());
    }
    // A logout leaves the sessions alive: the old ones are closed, not forgotten open.
    assert_eq!(
        softhsm::sessions_on("logout"),
        key.open_sessions() + 1,
        "sessions leaked ({before} were open before the logout; +1 is the test's own)"
    );
    drop(session);
}

#[test]
fn failed_signatures_close_their_sessions() {
    let Some(h) = hsm() else { return };
    use cryptoki::object::{Attribute, ObjectClass};
    let key = Arc::new(
        Pkcs11Key::open(
            &config(&h, "signfail")
                .with_key_label("p256")
                .with_pool_size(2),
        )
        .unwrap(),
    );
    // Several threads at once, so that the pool holds both its sessions.
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let key = Arc::clone(&key);
            std::thread::spawn(move || {
                for i in 0..50 {
                    sign_verified(&*key, format!("before {t} {i}").as_bytes());
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(key.open_sessions(), 2, "the threads never overlapped");
    // Someone takes the right to sign away: C_SignInit answers CKR_KEY_FUNCTION_NOT_PERMITTED,
    // an error the module answers normally, in a session that stays alive.
    let set_sign = |allowed: bool| {
        let session = softhsm::own_context()
            .open_rw_session(softhsm::slot_of("signfail"))
            .unwrap();
        let private = session
            .find_objects(&[
                Attribute::Class(ObjectClass::PRIVATE_KEY),
                Attribute::Label(b"p256".to_vec()),
            ])
            .unwrap()[0];
        session
            .update_attributes(private, &[Attribute::Sign(allowed)])
            .unwrap();
    };
    set_sign(false);
    for _ in 0..20 {
        let err = key.sign(b"refused").unwrap_err();
        assert!(
            matches!(err, BackendError::Device { .. })
                && err.to_string().contains("CKR_KEY_FUNCTION_NOT_PERMITTED"),
            "{err}"
        );
    }
    // No session leaked: the failed ones were closed, except the last, kept so that the token
    // stays logged in (closing the application's last session logs it out).
    assert_eq!(key.open_sessions(), 1);
    assert_eq!(
        softhsm::sessions_on("signfail"),
        1,
        "sessions leaked by failed signatures"
    );
    assert_eq!(key.login_attempts(), 1, "the token was logged out");
    set_sign(true);
    sign_verified(&*key, b"allowed again");
    assert_eq!(
        key.reopen_count(),
        0,
        "a refused signature is not a lost session"
    );
    assert_eq!(key.login_attempts(), 1);
}

#[test]
fn a_reinitialised_token_with_a_new_key_of_the_same_label_is_refused_clearly() {
    let Some(mut h) = hsm() else { return };
    let key = open(&h, "reinit", "p256");
    sign_verified(&key, b"before");
    // Another process wipes the token and makes a new key with the same label and id.
    h.softhsm_util(&[
        "--init-token",
        "--token",
        "reinit",
        "--label",
        "reinit",
        "--so-pin",
        SO_PIN,
        "--pin",
        USER_PIN,
    ]);
    h.pkcs11_tool(&[
        "--token-label",
        "reinit",
        "--login",
        "--pin",
        USER_PIN,
        "--keypairgen",
        "--key-type",
        "EC:prime256v1",
        "--label",
        "p256",
        "--id",
        "01",
    ]);
    // Signing with the new key would give signatures the registered credential cannot verify:
    // the key reopens, finds the replacement, and refuses it, naming both.
    let err = key.sign(b"after").unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, BackendError::KeyNotFound { .. }), "{text}");
    assert!(
        text.contains("replaced") && text.contains(&key.public_key().fingerprint()),
        "{text}"
    );
    println!("{text}");
    // Opening it anew is the way forward, and works.
    let fresh = open(&h, "reinit", "p256");
    assert_ne!(fresh.public_key(), key.public_key());
    sign_verified(&fresh, b"new key");
}

#[test]
fn a_wrong_pin_at_open_is_tried_once_and_reported() {
    let Some(h) = hsm() else { return };
    let wrong = "wrong-Pin-2718";
    let cfg = config(&h, "badpin")
        .with_key_label("p256")
        .with_pin(PinSource::Value(SecretString::from(wrong.to_owned())));
    let err = Pkcs11Key::open(&cfg).unwrap_err();
    let BackendError::PinIncorrect { device, tries_left } = &err else {
        panic!("{err}")
    };
    assert!(device.contains("badpin"), "{err}");
    // SoftHSM raises CKF_USER_PIN_COUNT_LOW after a failed login, without a number (and never
    // CKF_USER_PIN_FINAL_TRY: it does not lock): the error says so and invents no number.
    let info = softhsm::own_context()
        .get_token_info(softhsm::slot_of("badpin"))
        .unwrap();
    assert!(
        info.user_pin_count_low() && !info.user_pin_final_try() && !info.user_pin_locked(),
        "SoftHSM no longer reports a failed login as CKF_USER_PIN_COUNT_LOW alone: update this test \
         (flags: low={} final={} locked={})",
        info.user_pin_count_low(),
        info.user_pin_final_try(),
        info.user_pin_locked()
    );
    assert_eq!(*tries_left, None);
    assert!(device.contains("few PIN tries"), "{err}");
    let text = format!("{err} {err:?} {cfg:?}");
    assert!(
        !text.contains(wrong) && !text.contains(USER_PIN),
        "PIN leaked: {text}"
    );
    println!("{err}");
    // The right PIN still works: the token was not locked.
    sign_verified(&open(&h, "badpin", "p256"), b"right PIN");
}

#[test]
fn a_pin_rejected_on_reopen_is_never_presented_again() {
    let Some(h) = hsm() else { return };
    let key = open(&h, "pinchg", "p256");
    sign_verified(&key, b"before");
    assert_eq!(key.login_attempts(), 1);
    // Someone changes the PIN and logs the token out.
    let new_pin = SecretString::from("changed-Pin-1618".to_owned());
    let session = softhsm::own_context()
        .open_rw_session(softhsm::slot_of("pinchg"))
        .unwrap();
    session
        .set_pin(&SecretString::from(USER_PIN.to_owned()), &new_pin)
        .unwrap();
    session.logout().unwrap();

    let first = key.sign(b"after").unwrap_err();
    assert!(
        matches!(first, BackendError::PinIncorrect { .. }),
        "{first}"
    );
    assert_eq!(key.login_attempts(), 2, "one login at open, one on reopen");
    // Later calls give the same error without presenting the PIN again.
    for _ in 0..3 {
        let again = key.sign(b"again").unwrap_err();
        assert_eq!(again.to_string(), first.to_string());
    }
    assert_eq!(
        key.login_attempts(),
        2,
        "the rejected PIN was presented again"
    );
    // The token counted one failure only: the new PIN still logs in.
    session
        .login(cryptoki::session::UserType::User, Some(&new_pin))
        .unwrap();
}

#[test]
fn a_refused_pin_is_not_presented_again_by_another_key_of_the_process() {
    let Some(h) = hsm() else { return };
    let slot = softhsm::slot_of("pinreg");
    let flags = || softhsm::own_context().get_token_info(slot).unwrap();
    let wrong = |pin: &str| {
        config(&h, "pinreg").with_pin(PinSource::Value(SecretString::from(pin.to_owned())))
    };
    assert!(!flags().user_pin_count_low());
    // A backend opens its first key with a wrong PIN: one C_Login, refused; SoftHSM counts the
    // failure as CKF_USER_PIN_COUNT_LOW.
    let first = Pkcs11Key::open(&wrong("wrong-Pin-1").with_key_label("p256")).unwrap_err();
    assert!(
        matches!(first, BackendError::PinIncorrect { .. }),
        "{first}"
    );
    assert!(flags().user_pin_count_low());
    // Clear the flag with a good login (and log out again), so a second failure would show.
    let session = softhsm::own_context().open_ro_session(slot).unwrap();
    session
        .login(
            cryptoki::session::UserType::User,
            Some(&SecretString::from(USER_PIN.to_owned())),
        )
        .unwrap();
    assert!(!flags().user_pin_count_low());
    session.logout().unwrap();
    // Another key, key generation, a URI: the same wrong PIN gets the same error, and the token
    // sees no second try.
    let second = Pkcs11Key::open(&wrong("wrong-Pin-1").with_key_label("ed25519")).unwrap_err();
    assert_eq!(second.to_string(), first.to_string());
    let third = generate_key(
        &wrong("wrong-Pin-1"),
        Algorithm::EcdsaP256,
        "never-made",
        &[0x77],
    )
    .unwrap_err();
    assert_eq!(third.to_string(), first.to_string());
    assert!(
        !flags().user_pin_count_low(),
        "the refused PIN was presented to the token again"
    );
    // A different PIN (the operator fixed it) is tried: this one wrong too, so one more failure.
    let other = Pkcs11Key::open(&wrong("wrong-Pin-2").with_key_label("p256")).unwrap_err();
    assert!(
        matches!(other, BackendError::PinIncorrect { .. }),
        "{other}"
    );
    assert!(flags().user_pin_count_low());
    // The right PIN logs in: the token is not locked, and the registry did not refuse it.
    let key = open(&h, "pinreg", "ed25519");
    sign_verified(&key, b"right PIN");
    assert_eq!(key.login_attempts(), 1);
    assert!(!flags().user_pin_count_low());
    let text = format!("{first} {first:?} {second:?} {third:?} {other:?} {key:?}");
    assert!(
        !text.contains("wrong-Pin") && !text.contains(USER_PIN),
        "PIN leaked: {text}"
    );
    drop(session);
}

#[test]
fn pins_never_show_in_debug_display_or_errors() {
    let Some(h) = hsm() else { return };
    let cfg = config(&h, "algs").with_key_label("p256");
    let key = Pkcs11Key::open(&cfg).unwrap();
    let via_uri = open_by_uri(&h, "token=algs;object=ed25519", "").unwrap();
    let err = open_by_uri(&h, "token=algs;object=absent", "").unwrap_err();
    let text = format!(
        "{cfg:?} {key:?} {} {via_uri:?} {} {err} {err:?} {:?}",
        key.describe(),
        via_uri.describe(),
        key.config()
    );
    assert!(!text.contains(USER_PIN), "PIN leaked: {text}");
    assert!(
        text.contains("env:") || text.contains("PinSource"),
        "{text}"
    );
}

#[test]
fn a_pin_given_as_the_pin_source_is_not_echoed() {
    let Some(h) = hsm() else { return };
    // The PIN itself where its source belongs: refused, and never repeated in the error.
    let pin = "739164";
    let text = match KeyUri::parse(&format!(
        "pkcs11:token=algs;object=p256?module-path={}&pin-source={pin}",
        h.module.display()
    )) {
        Ok(KeyUri::Pkcs11(attrs)) => match open_uri(&attrs) {
            Ok(key) => panic!("opened with pin-source={pin}: {key:?}"),
            Err(e) => format!("{e} {e:?}"),
        },
        Ok(other) => panic!("not a pkcs11 URI: {other}"),
        Err(e) => format!("{e} {e:?}"),
    };
    assert!(text.contains("pin-source"), "{text}");
    assert!(!text.contains(pin), "PIN echoed: {text}");
}

#[test]
fn ecdsa_keys_that_want_the_pin_for_every_signature_need_ecdsa_sha256() {
    let Some(h) = hsm() else { return };
    use cryptoki::mechanism::Mechanism;
    use cryptoki::object::Attribute;
    softhsm::make_pair(
        "unsafe",
        &Mechanism::EccKeyPairGen,
        "pin-each-time",
        &[0x31],
        vec![
            Attribute::EcParams(softhsm::P256_PARAMS.to_vec()),
            Attribute::Verify(true),
        ],
        vec![
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            Attribute::AlwaysAuthenticate(true),
        ],
    );
    // Such a key is signed in parts after a context-specific login; for ECDSA that takes
    // CKM_ECDSA_SHA256, which SoftHSM 2.6 does not offer (later versions do).
    let has_ecdsa_sha256 = softhsm::own_context()
        .get_mechanism_list(softhsm::slot_of("unsafe"))
        .unwrap()
        .contains(&cryptoki::mechanism::MechanismType::ECDSA_SHA256);
    match open_by_uri(&h, "token=unsafe;object=pin-each-time", "") {
        Ok(key) if has_ecdsa_sha256 => {
            sign_verified(&*key, b"first");
            sign_verified(&*key, b"second");
        }
        Ok(_) => panic!("opened although the token cannot sign it in parts"),
        Err(err) => {
            assert!(!has_ecdsa_sha256, "{err}");
            assert!(matches!(err, BackendError::UnsupportedKey(_)), "{err}");
            let text = err.to_string();
            assert!(
                text.contains("CKA_ALWAYS_AUTHENTICATE") && text.contains("CKM_ECDSA_SHA256"),
                "{err}"
            );
        }
    }
}

/// Every algorithm on the token completes the whole Dfns flow: the key is registered on the
/// local simulator (service account), then signs the user actions of a wallet creation and a
/// signature request — verified by the simulator's own code.
#[cfg(feature = "simulator")]
#[test]
fn every_algorithm_completes_the_user_action_flow_against_the_simulator() {
    use dfns_signer::simulator::Simulator;

    let Some(h) = hsm() else { return };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let root =
            Arc::new(dfns_signer::software::SoftwareKey::generate(Algorithm::EcdsaP256).unwrap());
        let sim = Simulator::builder()
            .root_public_key_pem(root.public_key().to_pem())
            .start()
            .await
            .unwrap();
        let admin = dfns_signer::DfnsClient::simulator_root(&sim, root).unwrap();
        for label in ["p256", "secp256k1", "ed25519", "rsa2048"] {
            let key = open_by_uri(&h, &format!("token=algs;object={label}"), "").unwrap();
            let hsm_client = admin
                .service_account_client(&format!("hsm-{label}"), key)
                .await
                .unwrap();
            let wallet = hsm_client
                .create_wallet(&serde_json::json!({"network": "Bitcoin"}))
                .await
                .unwrap()
                .done()
                .unwrap();
            let id = wallet["id"].as_str().unwrap();
            let body =
                serde_json::json!({"kind": "Hash", "hash": format!("0x{}", "42".repeat(32))});
            hsm_client
                .generate_signature(id, &body)
                .await
                .unwrap()
                .done()
                .unwrap();
        }
        assert_eq!(
            sim.stats().user_actions_used,
            4 + 8,
            "4 registrations by the root, 2 calls per HSM key"
        );
    });
}
