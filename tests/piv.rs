//! The PIV backend against a virtual YubiKey on a real PC/SC stack (pcscd + vpcd), started by
//! the tests themselves. Needs root and `apt-get install pcscd vsmartcard-vpcd yubico-piv-tool
//! ykcs11 opensc` (Yubico's PKCS#11 module is searched for in the library directories, or named
//! by `DFNS_SIGNER_TEST_YKCS11_MODULE`); outside CI, `DFNS_SIGNER_SKIP_HARDWARE=1` skips, printing
//! `SKIPPED <test>: …` on stderr. One test, `real_yubikey_generate_attest_sign`, is `#[ignore]`d:
//! it runs against a real YubiKey with `cargo test --test piv -- --ignored real_yubikey`, and
//! fails unless `DFNS_SIGNER_REAL_YUBIKEY=<serial>` names the key (see tests/README.md).

#[path = "common/piv/mod.rs"]
mod piv_support;
#[cfg(feature = "cli")]
#[path = "common/process.rs"]
mod process;
#[cfg(feature = "cli")]
#[path = "common/terminal.rs"]
mod terminal;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dfns_signer::piv::{
    list_devices, verify_attestation, AttestationRoots, DeviceOptions, DeviceSelector,
    KeyGeneration, ManagementKey, PinPolicy, PivDevice, PivKey, Slot, TouchPolicy,
};
use dfns_signer::{Algorithm, BackendError, KeyBackend, KeyUri, PinSource};
use piv_support::attestation::TestAttestationCa;
use piv_support::card::{CardConfig, MgmAlgorithm, VirtualPiv};
use piv_support::harness::{pcscd_or_skip, PivEnv};
use secrecy::SecretString;
use x509_cert::der::{Decode, Encode};

const PIN: &str = "123456";

fn pin(p: &str) -> PinSource {
    PinSource::Value(SecretString::from(p.to_owned()))
}

fn device(serial: u32, pin_source: Option<PinSource>) -> PivDevice {
    let options = DeviceOptions {
        pin_source,
        ..DeviceOptions::default()
    };
    PivDevice::open(
        &DeviceSelector {
            serial: Some(serial),
            reader: None,
        },
        options,
    )
    .expect("open the virtual card")
}

/// A card with a P-256 key (and its certificate) in `slot`, generated through the backend.
fn card_with_key(env: &PivEnv, serial: u32, slot: &str, touch: TouchPolicy) -> VirtualPiv {
    let card = env.insert_card(CardConfig::new(serial));
    let mut spec = KeyGeneration::new(slot.parse().unwrap());
    spec.touch_policy = touch;
    device(serial, Some(pin(PIN)))
        .generate_key(&spec, &ManagementKey::Default)
        .expect("generate");
    card
}

fn key(serial: u32, slot: &str, pin_source: PinSource) -> dfns_signer::piv::PivKeyBuilder {
    PivKey::builder(slot.parse().unwrap())
        .serial(serial)
        .pin_source(pin_source)
}

#[test]
fn yubico_piv_tool_reads_the_virtual_card() {
    let Some(env) = pcscd_or_skip("yubico_piv_tool_reads_the_virtual_card") else {
        return;
    };
    let _card = env.insert_card(CardConfig::new(31_000_001));
    let reader = env.reader_of(31_000_001);
    let out = std::process::Command::new("yubico-piv-tool")
        .args(["-r", &reader, "-a", "status"])
        .output()
        .expect("run yubico-piv-tool (apt-get install yubico-piv-tool)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "yubico-piv-tool failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("31000001"), "serial missing from: {stdout}");
    assert!(stdout.contains("5.7.1"), "version missing from: {stdout}");
}

#[test]
fn devices_are_listed_and_selected_by_serial_or_reader() {
    let Some(env) = pcscd_or_skip("devices_are_listed_and_selected_by_serial_or_reader") else {
        return;
    };
    let _a = env.insert_card(CardConfig::new(32_000_001));
    let mut config = CardConfig::new(32_000_002);
    config.version = [5, 4, 3];
    config.mgm_algorithm = MgmAlgorithm::TripleDes;
    let _b = env.insert_card(config);

    let devices = list_devices().unwrap();
    let a = devices
        .iter()
        .find(|d| d.serial == 32_000_001)
        .expect("card a listed");
    let b = devices
        .iter()
        .find(|d| d.serial == 32_000_002)
        .expect("card b listed");
    assert_eq!(a.version, "5.7.1");
    assert_eq!(b.version, "5.4.3");
    assert!(
        a.reader.starts_with("Yubico YubiKey Virtual PCD") && a.reader != b.reader,
        "{a:?} {b:?}"
    );

    let err = PivDevice::open(&DeviceSelector::default(), DeviceOptions::default()).unwrap_err();
    assert!(
        matches!(&err, BackendError::AmbiguousDevice { found } if found.len() == 2),
        "{err:?}"
    );
    assert!(err.to_string().contains("serial="), "{err}");

    let err = PivDevice::open(
        &DeviceSelector {
            serial: Some(99),
            reader: None,
        },
        DeviceOptions::default(),
    )
    .unwrap_err();
    match &err {
        BackendError::DeviceNotFound { wanted, found } => {
            assert_eq!(wanted, "YubiKey serial 99");
            assert!(
                found.iter().any(|f| f.contains("32000001")) && found.len() == 2,
                "{found:?}"
            );
        }
        other => panic!("expected DeviceNotFound, got {other:?}"),
    }

    let by_serial = PivDevice::open(
        &DeviceSelector {
            serial: Some(32_000_002),
            reader: None,
        },
        DeviceOptions::default(),
    )
    .unwrap();
    assert_eq!(by_serial.info(), b);
    let by_reader = PivDevice::open(
        &DeviceSelector {
            serial: None,
            reader: Some(a.reader.clone()),
        },
        DeviceOptions::default(),
    )
    .unwrap();
    assert_eq!(by_reader.info().serial, 32_000_001);
}

#[test]
fn p256_key_is_generated_with_certificate_and_signs() {
    let Some(env) = pcscd_or_skip("p256_key_is_generated_with_certificate_and_signs") else {
        return;
    };
    let card = env.insert_card(CardConfig::new(33_000_001));
    let dev = device(33_000_001, Some(pin(PIN)));
    let generated = dev
        .generate_key(
            &KeyGeneration::new(Slot::AUTHENTICATION),
            &ManagementKey::Default,
        )
        .unwrap();
    assert_eq!(generated.public_key.algorithm(), Algorithm::EcdsaP256);
    assert!(card.has_key(0x9a));

    // The certificate in the slot holds the generated key and is signed by it (self-signed by the card).
    let cert_der = dev
        .certificate(Slot::AUTHENTICATION)
        .unwrap()
        .expect("certificate written");
    assert_eq!(cert_der, generated.certificate_der);
    let cert = x509_cert::Certificate::from_der(&cert_der).unwrap();
    let spki = cert
        .tbs_certificate()
        .subject_public_key_info()
        .to_der()
        .unwrap();
    assert_eq!(spki, generated.public_key.spki_der());
    {
        use p256::pkcs8::DecodePublicKey;
        use signature::Verifier;
        let vk = p256::ecdsa::VerifyingKey::from_public_key_der(&spki).unwrap();
        let sig = p256::ecdsa::DerSignature::from_bytes(cert.signature().raw_bytes()).unwrap();
        vk.verify(&cert.tbs_certificate().to_der().unwrap(), &sig)
            .expect("certificate self-signature");
    }

    // Sign through the URI path, as a caller of the library would.
    std::env::set_var("DFNS_PIV_TEST_PIN_33", PIN);
    let uri: KeyUri = "piv:slot=9a?serial=33000001&pin-source=env:DFNS_PIV_TEST_PIN_33"
        .parse()
        .unwrap();
    let backend = dfns_signer::open(&uri).unwrap();
    assert_eq!(backend.public_key(), &generated.public_key);
    assert_eq!(backend.algorithm(), Algorithm::EcdsaP256);
    assert!(
        backend.describe().contains("33000001") && backend.describe().contains("9a"),
        "{}",
        backend.describe()
    );
    let message = br#"{"type":"key.get","challenge":"abc","origin":"https://app.dfns.io"}"#;
    let signatures_before = card.counters().signatures;
    let sig = backend.sign(message).unwrap();
    assert_eq!(card.counters().signatures, signatures_before + 1);
    backend.public_key().verify(message, &sig).unwrap();
    {
        use p256::pkcs8::DecodePublicKey;
        use signature::Verifier;
        let vk = p256::ecdsa::VerifyingKey::from_public_key_der(generated.public_key.spki_der())
            .unwrap();
        let parsed = p256::ecdsa::Signature::from_der(&sig).expect("DER signature");
        assert_eq!(parsed.to_der().as_bytes(), sig.as_slice(), "minimal DER");
        vk.verify(message, &parsed)
            .expect("p256 verifies independently");
        assert!(vk.verify(b"another message", &parsed).is_err());
    }

    // A filled slot is not overwritten without force; with force it gets a new key.
    let err = dev
        .generate_key(
            &KeyGeneration::new(Slot::AUTHENTICATION),
            &ManagementKey::Default,
        )
        .unwrap_err();
    assert!(
        matches!(err, BackendError::SlotOccupied { ref slot, .. } if slot == "9a"),
        "{err:?}"
    );
    let mut forced = KeyGeneration::new(Slot::AUTHENTICATION);
    forced.force = true;
    let second = dev.generate_key(&forced, &ManagementKey::Default).unwrap();
    assert_ne!(second.public_key, generated.public_key);

    // An empty slot is a typed error naming what is there.
    let err = key(33_000_001, "9d", pin(PIN)).open().unwrap_err();
    match err {
        BackendError::KeyNotFound { wanted, found, .. } => {
            assert_eq!(wanted, "slot 9d");
            assert_eq!(found, vec!["slot 9a".to_owned()]);
        }
        other => panic!("expected KeyNotFound, got {other:?}"),
    }
}

/// A forced generation whose certificate cannot be signed (wrong PIN) must not leave the new key
/// paired with the old certificate: firmware before 5.3 reads the public key from it.
#[test]
fn failed_forced_generation_leaves_no_stale_certificate() {
    let Some(env) = pcscd_or_skip("failed_forced_generation_leaves_no_stale_certificate") else {
        return;
    };
    let mut config = CardConfig::new(34_500_001);
    config.version = [5, 2, 7];
    config.mgm_algorithm = MgmAlgorithm::TripleDes;
    let card = env.insert_card(config);
    let spec = KeyGeneration::new(Slot::AUTHENTICATION);
    let old = device(34_500_001, Some(pin(PIN)))
        .generate_key(&spec, &ManagementKey::Default)
        .unwrap();
    let mut forced = spec.clone();
    forced.force = true;
    let err = device(34_500_001, Some(pin("11111111")))
        .generate_key(&forced, &ManagementKey::Default)
        .unwrap_err();
    assert!(matches!(err, BackendError::PinIncorrect { .. }), "{err:?}");
    assert!(card.has_key(0x9a), "the new key was generated");
    let dev = device(34_500_001, Some(pin(PIN)));
    assert_eq!(
        dev.certificate(Slot::AUTHENTICATION).unwrap(),
        None,
        "the old certificate ({} bytes) is still in the slot",
        old.certificate_der.len()
    );
    // Without metadata (firmware 5.2) and without a certificate, the key cannot be used by
    // mistake under the old public key.
    let err = key(34_500_001, "9a", pin(PIN)).open().unwrap_err();
    assert!(matches!(err, BackendError::KeyNotFound { .. }), "{err:?}");
}

#[test]
fn attestation_chain_verifies_up_to_the_injected_root() {
    let Some(env) = pcscd_or_skip("attestation_chain_verifies_up_to_the_injected_root") else {
        return;
    };
    let ca = TestAttestationCa::new();
    let mut config = CardConfig::new(34_000_001);
    config.attestation = Some(ca.device.clone());
    let _card = env.insert_card(config);
    let dev = device(34_000_001, Some(pin(PIN)));
    let mut spec = KeyGeneration::new(Slot::SIGNATURE);
    spec.pin_policy = PinPolicy::Once;
    spec.touch_policy = TouchPolicy::Cached;
    let generated = dev.generate_key(&spec, &ManagementKey::Default).unwrap();

    let roots = AttestationRoots::from_pem(&ca.root_pem).unwrap();
    let attested = dev.attest(Slot::SIGNATURE, &roots).unwrap();
    assert_eq!(attested.serial, 34_000_001);
    assert_eq!(attested.firmware, "5.7.1");
    assert_eq!(attested.public_key, generated.public_key);
    assert_eq!(attested.pin_policy, Some(PinPolicy::Once));
    assert_eq!(attested.touch_policy, Some(TouchPolicy::Cached));
    let text = attested.to_string();
    assert!(
        text.contains("generated on YubiKey serial 34000001")
            && text.contains("cannot be exported"),
        "{text}"
    );

    // Another root, even under the same name, does not vouch for this card.
    let stranger = TestAttestationCa::with_p256_root();
    let evidence = dev.attestation(Slot::SIGNATURE).unwrap();
    // …while a chain ending in a P-256 root verifies when that root is the trusted one.
    let mut ec_config = CardConfig::new(34_000_002);
    ec_config.attestation = Some(stranger.device.clone());
    let _ec_card = env.insert_card(ec_config);
    let ec_dev = device(34_000_002, Some(pin(PIN)));
    ec_dev
        .generate_key(
            &KeyGeneration::new(Slot::AUTHENTICATION),
            &ManagementKey::Default,
        )
        .unwrap();
    let ec_roots = AttestationRoots::from_pem(&stranger.root_pem).unwrap();
    assert_eq!(
        ec_dev
            .attest(Slot::AUTHENTICATION, &ec_roots)
            .unwrap()
            .serial,
        34_000_002
    );
    assert!(ec_dev.attest(Slot::AUTHENTICATION, &roots).is_err());
    let err = verify_attestation(
        &evidence,
        &AttestationRoots::from_pem(&stranger.root_pem).unwrap(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("no trusted root"), "{err}");
    // A key certificate from another device does not chain to this device certificate.
    let mut forged = evidence.clone();
    forged.device_certificate_der = stranger.device.certificate_der.clone();
    assert!(verify_attestation(&forged, &roots).is_err());
    // The virtual card is not a YubiKey: its attestation fails under Yubico's embedded roots.
    let err = verify_attestation(&evidence, &AttestationRoots::yubico().unwrap()).unwrap_err();
    assert!(err.to_string().contains("no trusted root"), "{err}");
}

#[test]
fn wrong_pin_is_tried_once_and_never_again() {
    let Some(env) = pcscd_or_skip("wrong_pin_is_tried_once_and_never_again") else {
        return;
    };
    let card = card_with_key(&env, 35_000_001, "9a", TouchPolicy::Never);
    let before = card.counters();
    assert_eq!(card.pin_tries_left(), 3);

    let key = key(35_000_001, "9a", pin("654321"))
        .verify_pin_at_open(false)
        .open()
        .unwrap();
    let err = key.sign(b"m").unwrap_err();
    assert!(
        matches!(
            err,
            BackendError::PinIncorrect {
                tries_left: Some(2),
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        card.pin_tries_left(),
        2,
        "the card's counter went down exactly once"
    );
    let after_first = card.counters();
    assert_eq!(after_first.pin_verifies, before.pin_verifies + 1);

    // The same handle does not present the PIN again, nor even ask the card.
    let err = key.sign(b"m").unwrap_err();
    assert!(
        matches!(
            err,
            BackendError::PinIncorrect {
                tries_left: Some(2),
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        card.counters(),
        after_first,
        "no APDU that touches the PIN was sent"
    );
    assert_eq!(card.pin_tries_left(), 2);
    assert_eq!(card.counters().signatures, before.signatures);

    // A wrong PIN at open fails open, once.
    let err = self::key(35_000_001, "9a", pin("111111"))
        .open()
        .unwrap_err();
    assert!(
        matches!(
            err,
            BackendError::PinIncorrect {
                tries_left: Some(1),
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(card.pin_tries_left(), 1);
}

/// A VERIFY whose answer is lost may have cost a try: the same (maybe wrong) PIN is never sent
/// again by that handle.
#[test]
fn pin_whose_verify_got_no_answer_is_not_sent_again() {
    let Some(env) = pcscd_or_skip("pin_whose_verify_got_no_answer_is_not_sent_again") else {
        return;
    };
    let card = card_with_key(&env, 35_500_001, "9a", TouchPolicy::Never);
    let key = key(35_500_001, "9a", pin("11111111"))
        .verify_pin_at_open(false)
        .open()
        .unwrap();
    let verifies = card.counters().pin_verifies;
    card.drop_link_on_next_pin_verify();
    let err = key.sign(b"m").unwrap_err();
    assert!(matches!(err, BackendError::Device { .. }), "{err:?}");
    assert!(err.to_string().contains("restart"), "{err}");
    // The card counted the wrong PIN although the answer never arrived.
    assert_eq!(card.counters().pin_verifies, verifies + 1);
    assert_eq!(card.pin_tries_left(), 2);

    // Card back in: the handle refuses to send that PIN again, without any VERIFY.
    std::thread::sleep(Duration::from_millis(500));
    let err = key.sign(b"m").unwrap_err();
    assert!(err.to_string().contains("restart"), "{err}");
    assert_eq!(card.counters().pin_verifies, verifies + 1);
    assert_eq!(card.pin_tries_left(), 2);
}

#[test]
fn last_pin_try_is_kept_unless_allowed_and_blocked_pin_is_reported() {
    let Some(env) =
        pcscd_or_skip("last_pin_try_is_kept_unless_allowed_and_blocked_pin_is_reported")
    else {
        return;
    };
    let card = card_with_key(&env, 36_000_001, "9a", TouchPolicy::Never);

    card.set_pin_tries_left(1);
    let verifies = card.counters().pin_verifies;
    let guarded = key(36_000_001, "9a", pin(PIN))
        .verify_pin_at_open(false)
        .open()
        .unwrap();
    let err = guarded.sign(b"m").unwrap_err();
    assert!(matches!(err, BackendError::LastPinTry { .. }), "{err:?}");
    assert_eq!(
        card.counters().pin_verifies,
        verifies,
        "the last try was not spent"
    );
    assert_eq!(card.pin_tries_left(), 1);

    // Through the URI, `allow-last-pin-try=true` lets the right PIN through (and resets the counter).
    std::env::set_var("DFNS_PIV_TEST_PIN_36", PIN);
    let uri: KeyUri =
        "piv:slot=9a?serial=36000001&pin-source=env:DFNS_PIV_TEST_PIN_36&allow-last-pin-try=true"
            .parse()
            .unwrap();
    let allowed = dfns_signer::open(&uri).unwrap();
    allowed.sign(b"m").unwrap();
    assert_eq!(card.pin_tries_left(), 3);

    // A wrong PIN on the last try blocks the PIN: the crate says WrongPin{0}, we say PinBlocked.
    card.set_pin_tries_left(1);
    let last = key(36_000_001, "9a", pin("000000"))
        .allow_last_pin_try(true)
        .verify_pin_at_open(false)
        .open()
        .unwrap();
    let err = last.sign(b"m").unwrap_err();
    assert!(matches!(err, BackendError::PinBlocked { .. }), "{err:?}");
    assert_eq!(card.pin_tries_left(), 0);

    // Blocked: reported from the status query, without a VERIFY.
    let verifies = card.counters().pin_verifies;
    let blocked = key(36_000_001, "9a", pin(PIN))
        .allow_last_pin_try(true)
        .verify_pin_at_open(false)
        .open()
        .unwrap();
    let err = blocked.sign(b"m").unwrap_err();
    assert!(matches!(err, BackendError::PinBlocked { .. }), "{err:?}");
    assert!(err.to_string().contains("PUK"), "{err}");
    assert_eq!(card.counters().pin_verifies, verifies);
}

#[test]
fn malformed_pin_costs_no_try_and_secrets_never_print() {
    let Some(env) = pcscd_or_skip("malformed_pin_costs_no_try_and_secrets_never_print") else {
        return;
    };
    let card = card_with_key(&env, 37_000_001, "9a", TouchPolicy::Never);
    let verifies = card.counters().pin_verifies;
    for bad in ["1234", "123456789"] {
        let err = key(37_000_001, "9a", pin(bad)).open().unwrap_err();
        assert!(matches!(err, BackendError::PinSource { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("6 to 8"), "{msg}");
        // Nothing about this PIN, not even its length: the only digits are the rule's 6 and 8.
        let digits: String = msg.chars().filter(char::is_ascii_digit).collect();
        assert_eq!(
            digits, "68",
            "the message tells something about the PIN: {msg}"
        );
    }
    assert_eq!(card.counters().pin_verifies, verifies);
    assert_eq!(card.pin_tries_left(), 3);

    let secret = "97531864";
    let builder = key(37_000_001, "9a", pin(secret)).verify_pin_at_open(false);
    let builder_text = format!("{builder:?}");
    let key = builder.open().unwrap();
    let err = key.sign(b"m").unwrap_err();
    let mgm = ManagementKey::from_hex("a1a2a3a4a5a6a7a8a1a2a3a4a5a6a7a8a1a2a3a4a5a6a7a8").unwrap();
    let texts = [
        builder_text,
        format!("{key:?}"),
        key.describe(),
        format!("{:?}", key.device()),
        format!("{err:?}"),
        err.to_string(),
        format!("{mgm:?}"),
    ];
    for text in &texts {
        assert!(!text.contains(secret), "PIN leaked: {text}");
        assert!(
            !text.to_lowercase().contains("a1a2a3"),
            "management key leaked: {text}"
        );
    }
}

/// The touch notice appears only once the card has been waiting for a touch for the notice
/// delay (1 s by default): a quick touch shows none, a slow one shows one, on time.
#[test]
fn touch_is_announced_only_while_the_card_waits_and_times_out() {
    let Some(env) = pcscd_or_skip("touch_is_announced_only_while_the_card_waits_and_times_out")
    else {
        return;
    };
    let card = card_with_key(&env, 38_000_001, "9c", TouchPolicy::Always);
    let notices = Arc::new(std::sync::Mutex::new(Vec::<Instant>::new()));
    let seen = Arc::clone(&notices);
    let signer = key(38_000_001, "9c", pin(PIN))
        .touch_timeout(Duration::from_secs(2))
        .on_touch(move |req| {
            assert_eq!(req.serial, 38_000_001);
            assert_eq!(req.slot, "9c");
            assert!(req.to_string().contains("touch your YubiKey"));
            seen.lock().unwrap().push(Instant::now());
        })
        .open()
        .unwrap();
    assert_eq!(signer.touch_policy(), TouchPolicy::Always);
    assert_eq!(
        signer.pin_policy(),
        PinPolicy::Always,
        "9c defaults to PIN-always"
    );
    let count = || notices.lock().unwrap().len();

    // Touched within the notice delay: signs, and no notice was shown.
    card.set_touch_delay(Duration::from_millis(100));
    let sig = signer.sign(b"touch me").unwrap();
    signer.public_key().verify(b"touch me", &sig).unwrap();
    assert_eq!(count(), 0, "a quick touch needs no notice");

    // Touched after 1.6 s: one notice, given about 1 s into the wait, before the signature.
    card.set_touch_delay(Duration::from_millis(1600));
    let started = Instant::now();
    let sig = signer.sign(b"touch me later").unwrap();
    let finished = Instant::now();
    signer.public_key().verify(b"touch me later", &sig).unwrap();
    assert_eq!(count(), 1);
    let shown = notices.lock().unwrap()[0];
    let after = shown - started;
    assert!(
        after >= Duration::from_millis(900) && shown < finished,
        "notice {after:?} into a {:?} signature",
        finished - started
    );

    // Nobody touches within the timeout: a clear error, on time, after one more notice.
    card.set_touch_delay(Duration::from_secs(3));
    let started = Instant::now();
    let err = signer.sign(b"touch me").unwrap_err();
    let waited = started.elapsed();
    assert!(
        matches!(err, BackendError::TouchTimeout { seconds: 2, .. }),
        "{err:?}"
    );
    assert!(
        waited < Duration::from_millis(3000),
        "gave up after {waited:?}"
    );
    assert_eq!(count(), 2);

    // Once the card has given up on the abandoned signature, the same key signs again, and a
    // zero delay announces at once.
    card.set_touch_delay(Duration::ZERO);
    std::thread::sleep(Duration::from_millis(1500));
    let sig = signer.sign(b"after").unwrap();
    signer.public_key().verify(b"after", &sig).unwrap();
    assert_eq!(count(), 2, "an immediate answer needs no notice");
    let eager = key(38_000_001, "9c", pin(PIN))
        .touch_notice_delay(Duration::ZERO)
        .on_touch({
            let seen = Arc::clone(&notices);
            move |_| seen.lock().unwrap().push(Instant::now())
        })
        .open()
        .unwrap();
    eager.sign(b"eager").unwrap();
    assert_eq!(count(), 3, "a zero delay announces every touch signature");
}

/// A real YubiKey stops waiting for a touch after ~15 s and answers 6982; that is a touch
/// timeout, not a PIN problem (the PIN was verified just before).
#[test]
fn card_that_gives_up_on_the_touch_reports_a_touch_timeout() {
    let Some(env) = pcscd_or_skip("card_that_gives_up_on_the_touch_reports_a_touch_timeout") else {
        return;
    };
    let card = card_with_key(&env, 38_100_001, "9a", TouchPolicy::Always);
    let key = key(38_100_001, "9a", pin(PIN))
        .touch_timeout(Duration::from_secs(10))
        .open()
        .unwrap();
    card.set_touch_gives_up_after(Some(Duration::from_millis(300)));
    card.set_touch_delay(Duration::from_secs(5));
    let signatures = card.counters().signatures;
    let started = Instant::now();
    let err = key.sign(b"nobody touches").unwrap_err();
    assert!(
        matches!(err, BackendError::TouchTimeout { seconds: 1, .. }),
        "the card's own wait (0.3 s, shown as 1 s), not the 10 s the host would wait: {err:?}"
    );
    assert!(!err.to_string().contains("PIN"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the card's own answer ends the wait, not the host timeout"
    );
    assert_eq!(card.counters().touch_give_ups, 1);
    assert_eq!(card.counters().signatures, signatures);

    // The card is fine afterwards: touched in time, it signs.
    card.set_touch_delay(Duration::from_millis(50));
    let sig = key.sign(b"touched").unwrap();
    key.public_key().verify(b"touched", &sig).unwrap();
}

/// Two callers on one touch key: the second one's clock starts when it holds the card, and a
/// caller that gave up leaves nothing behind (no late notice, no late signature).
#[test]
fn queued_touch_signer_is_timed_from_its_turn_and_gives_up_cleanly() {
    let Some(env) =
        pcscd_or_skip("queued_touch_signer_is_timed_from_its_turn_and_gives_up_cleanly")
    else {
        return;
    };
    let card = card_with_key(&env, 38_200_001, "9a", TouchPolicy::Always);
    let notices = Arc::new(AtomicU32::new(0));
    let seen = Arc::clone(&notices);
    let key = Arc::new(
        key(38_200_001, "9a", pin(PIN))
            .touch_timeout(Duration::from_secs(1))
            // Announced as soon as each caller's signature is sent (the 1 s default delay
            // would race the 1 s timeout).
            .touch_notice_delay(Duration::ZERO)
            .on_touch(move |_| {
                seen.fetch_add(1, Ordering::SeqCst);
            })
            .open()
            .unwrap(),
    );
    // Nobody touches: the card answers (signs) only after 2.5 s, long after each timeout.
    card.set_touch_delay(Duration::from_millis(2500));
    let signatures = card.counters().signatures;
    let started = Instant::now();
    let callers: Vec<_> = (0..2)
        .map(|i| {
            let key = Arc::clone(&key);
            let notices = Arc::clone(&notices);
            std::thread::spawn(move || {
                // The second caller starts just after the first, so it queues behind it.
                std::thread::sleep(Duration::from_millis(200 * i));
                let err = key.sign(b"nobody touches").unwrap_err();
                (err, started.elapsed(), notices.load(Ordering::SeqCst))
            })
        })
        .collect();
    let results: Vec<_> = callers.into_iter().map(|t| t.join().unwrap()).collect();
    for (err, _, _) in &results {
        assert!(
            matches!(err, BackendError::TouchTimeout { seconds: 1, .. }),
            "{err:?}"
        );
    }
    let (_, first_gave_up, _) = results[0];
    let (_, second_gave_up, notices_when_second_gave_up) = results[1];
    assert!(
        first_gave_up < Duration::from_millis(2000),
        "{first_gave_up:?}"
    );
    // Queued behind the first signature (2.5 s on the card), then its own full second.
    assert!(
        second_gave_up >= Duration::from_millis(3300),
        "the second caller's clock ran while it was queued: gave up after {second_gave_up:?}"
    );
    assert_eq!(notices_when_second_gave_up, 2, "one notice per caller");
    // Let the card finish whatever was sent to it, then check nothing else happened.
    std::thread::sleep(Duration::from_millis(3000));
    assert_eq!(
        notices.load(Ordering::SeqCst),
        2,
        "no notice after the last caller gave up"
    );
    assert_eq!(card.counters().signatures, signatures + 2);
}

#[test]
fn reconnects_once_after_the_card_is_replugged() {
    let Some(env) = pcscd_or_skip("reconnects_once_after_the_card_is_replugged") else {
        return;
    };
    let card = card_with_key(&env, 39_000_001, "9a", TouchPolicy::Never);
    let key = key(39_000_001, "9a", pin(PIN)).open().unwrap();
    key.sign(b"before").unwrap();
    let before = card.counters();

    card.replug();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !list_devices()
        .unwrap()
        .iter()
        .any(|d| d.serial == 39_000_001)
    {
        assert!(Instant::now() < deadline, "card did not come back");
        std::thread::sleep(Duration::from_millis(50));
    }
    let sig = key.sign(b"after").unwrap();
    key.public_key().verify(b"after", &sig).unwrap();
    let after = card.counters();
    assert_eq!(
        after.pin_verifies,
        before.pin_verifies + 1,
        "the known-good PIN is presented once after the reset"
    );
    assert_eq!(after.signatures, before.signatures + 1);
}

#[test]
fn rsa_2048_and_ed25519_keys_sign() {
    let Some(env) = pcscd_or_skip("rsa_2048_and_ed25519_keys_sign") else {
        return;
    };
    let _card = env.insert_card(CardConfig::new(40_000_001));
    let dev = device(40_000_001, Some(pin(PIN)));

    let mut rsa_spec = KeyGeneration::new(Slot::KEY_MANAGEMENT);
    rsa_spec.algorithm = Algorithm::RsaPkcs1Sha256;
    let rsa_key = dev
        .generate_key(&rsa_spec, &ManagementKey::Default)
        .unwrap();
    let signer = PivKey::on_device(&dev, Slot::KEY_MANAGEMENT).unwrap();
    assert_eq!(signer.algorithm(), Algorithm::RsaPkcs1Sha256);
    let sig = signer.sign(b"rsa message").unwrap();
    assert_eq!(sig.len(), 256);
    rsa_key.public_key.verify(b"rsa message", &sig).unwrap();
    {
        use rsa::pkcs8::DecodePublicKey;
        use signature::Verifier;
        let pk = rsa::RsaPublicKey::from_public_key_der(rsa_key.public_key.spki_der()).unwrap();
        let vk = rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(pk);
        vk.verify(
            b"rsa message",
            &rsa::pkcs1v15::Signature::try_from(sig.as_slice()).unwrap(),
        )
        .unwrap();
    }

    let mut ed_spec = KeyGeneration::new("82".parse().unwrap());
    ed_spec.algorithm = Algorithm::Ed25519;
    let ed_key = dev.generate_key(&ed_spec, &ManagementKey::Default).unwrap();
    let signer = PivKey::on_device(&dev, "82".parse().unwrap()).unwrap();
    let sig = signer.sign(b"ed message").unwrap();
    assert_eq!(sig.len(), 64);
    {
        use ed25519_dalek::pkcs8::DecodePublicKey;
        let vk =
            ed25519_dalek::VerifyingKey::from_public_key_der(ed_key.public_key.spki_der()).unwrap();
        vk.verify_strict(
            b"ed message",
            &ed25519_dalek::Signature::from_slice(&sig).unwrap(),
        )
        .unwrap();
    }
}

#[test]
fn management_keys_3des_default_and_custom_aes() {
    let Some(env) = pcscd_or_skip("management_keys_3des_default_and_custom_aes") else {
        return;
    };
    let mut old = CardConfig::new(41_000_001);
    old.version = [5, 4, 3];
    old.mgm_algorithm = MgmAlgorithm::TripleDes;
    let _old = env.insert_card(old);
    let dev = device(41_000_001, Some(pin(PIN)));
    dev.generate_key(
        &KeyGeneration::new(Slot::AUTHENTICATION),
        &ManagementKey::Default,
    )
    .unwrap();
    let mut ed = KeyGeneration::new(Slot::SIGNATURE);
    ed.algorithm = Algorithm::Ed25519;
    let err = dev.generate_key(&ed, &ManagementKey::Default).unwrap_err();
    assert!(err.to_string().contains("5.7"), "{err}");

    let custom_hex = "00112233445566778899aabbccddeeff";
    let mut aes = CardConfig::new(41_000_002);
    aes.mgm_algorithm = MgmAlgorithm::Aes128;
    aes.mgm_key = hex::decode(custom_hex).unwrap();
    let _aes = env.insert_card(aes);
    let dev = device(41_000_002, Some(pin(PIN)));
    let err = dev
        .generate_key(
            &KeyGeneration::new(Slot::AUTHENTICATION),
            &ManagementKey::Default,
        )
        .unwrap_err();
    assert!(matches!(err, BackendError::Device { .. }), "{err:?}");
    let custom = ManagementKey::from_hex(custom_hex).unwrap();
    dev.generate_key(&KeyGeneration::new(Slot::AUTHENTICATION), &custom)
        .unwrap();
    let wrong = ManagementKey::from_hex("ffeeddccbbaa99887766554433221100").unwrap();
    let err = dev
        .generate_key(&KeyGeneration::new(Slot::CARD_AUTHENTICATION), &wrong)
        .unwrap_err();
    assert!(
        err.to_string().contains("refused the management key"),
        "{err}"
    );
}

/// Runs against a real YubiKey: `DFNS_SIGNER_REAL_YUBIKEY=<serial> DFNS_SIGNER_REAL_PIN=<pin>
/// cargo test --test piv -- --ignored real_yubikey`. It generates a key in retired slot 95
/// (overwriting it), with touch policy "always": touch the key when it blinks. Asked to run
/// without `DFNS_SIGNER_REAL_YUBIKEY`, it fails: a run that checked no device must not pass.
#[test]
#[ignore = "needs a real YubiKey: set DFNS_SIGNER_REAL_YUBIKEY=<serial>"]
fn real_yubikey_generate_attest_sign() {
    let serial = std::env::var("DFNS_SIGNER_REAL_YUBIKEY").unwrap_or_else(|_| {
        panic!(
            "real_yubikey_generate_attest_sign needs a real YubiKey: set \
             DFNS_SIGNER_REAL_YUBIKEY=<serial> (and DFNS_SIGNER_REAL_PIN=<pin>) to run it; \
             `yubico-piv-tool -a status` shows the serial"
        )
    });
    let serial: u32 = serial
        .parse()
        .expect("DFNS_SIGNER_REAL_YUBIKEY is a serial number");
    let pin_source = PinSource::parse("env:DFNS_SIGNER_REAL_PIN").unwrap();
    let slot: Slot = "95".parse().unwrap();
    let options = DeviceOptions {
        pin_source: Some(pin_source.clone()),
        touch_notifier: Some(Arc::new(|req| eprintln!("{req}"))),
        ..DeviceOptions::default()
    };
    let dev = PivDevice::open(
        &DeviceSelector {
            serial: Some(serial),
            reader: None,
        },
        options,
    )
    .unwrap();
    eprintln!("using {}", dev.info());
    let mgm = match std::env::var("DFNS_SIGNER_REAL_MGM_KEY") {
        Ok(hex) => ManagementKey::from_hex(&hex).unwrap(),
        Err(_) => ManagementKey::Default,
    };
    let mut spec = KeyGeneration::new(slot);
    spec.touch_policy = TouchPolicy::Always;
    spec.force = true;
    let generated = dev.generate_key(&spec, &mgm).unwrap();
    eprintln!("public key:\n{}", generated.public_key.to_pem());
    match std::env::var("DFNS_SIGNER_YUBICO_ROOT_PEM") {
        Ok(path) => {
            let roots = AttestationRoots::from_pem(&std::fs::read_to_string(path).unwrap()).unwrap();
            eprintln!("{}", dev.attest(slot, &roots).unwrap());
        }
        Err(_) => eprintln!("attestation not checked: set DFNS_SIGNER_YUBICO_ROOT_PEM=<path to Yubico's PIV root PEM>"),
    }
    let key = PivKey::on_device(&dev, slot).unwrap();
    let sig = key.sign(b"dfns-signer real device check").unwrap();
    key.public_key()
        .verify(b"dfns-signer real device check", &sig)
        .unwrap();
    eprintln!("signature verified: {}", hex::encode(&sig));
}

#[test]
fn other_piv_tools_see_and_use_the_generated_key() {
    let Some(env) = pcscd_or_skip("other_piv_tools_see_and_use_the_generated_key") else {
        return;
    };
    let module = piv_support::modules::ykcs11();
    let _card = card_with_key(&env, 42_000_001, "9a", TouchPolicy::Never);
    let public_key = PivKey::builder(Slot::AUTHENTICATION)
        .serial(42_000_001)
        .open()
        .unwrap()
        .public_key()
        .clone();
    let dir = std::env::temp_dir().join(format!("dfns-piv-ykcs11-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (data, sig_path) = (dir.join("data"), dir.join("sig"));
    std::fs::write(&data, b"signed through ykcs11").unwrap();
    let out = std::process::Command::new("pkcs11-tool")
        .arg("--module")
        .arg(&module)
        .args(["--login", "--pin", PIN, "--sign", "-m", "ECDSA-SHA256"])
        .args(["--id", "01", "--signature-format", "openssl", "-i"])
        .arg(&data)
        .arg("-o")
        .arg(&sig_path)
        .output()
        .expect("run pkcs11-tool (apt-get install opensc)");
    assert!(
        out.status.success(),
        "pkcs11-tool failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let sig = std::fs::read(&sig_path).unwrap();
    public_key
        .verify(b"signed through ykcs11", &sig)
        .expect("ykcs11 signed with the key we generated");

    // yubico-piv-tool reads back the certificate the backend wrote, with our key in it.
    let reader = env.reader_of(42_000_001);
    let out = std::process::Command::new("yubico-piv-tool")
        .args(["-r", &reader, "-a", "read-certificate", "-s", "9a"])
        .output()
        .expect("run yubico-piv-tool");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pem = String::from_utf8(out.stdout).unwrap();
    let cert = x509_cert::Certificate::load_pem_chain(pem.as_bytes()).expect("a PEM certificate");
    let spki = cert[0]
        .tbs_certificate()
        .subject_public_key_info()
        .to_der()
        .unwrap();
    assert_eq!(spki, public_key.spki_der());
}

#[test]
fn concurrent_callers_queue_on_one_device() {
    let Some(env) = pcscd_or_skip("concurrent_callers_queue_on_one_device") else {
        return;
    };
    let card = card_with_key(&env, 43_000_001, "9a", TouchPolicy::Never);
    let key: Arc<dyn KeyBackend> = Arc::new(key(43_000_001, "9a", pin(PIN)).open().unwrap());
    let before = card.counters();
    let threads: Vec<_> = (0..6)
        .map(|t| {
            let key = Arc::clone(&key);
            std::thread::spawn(move || {
                for i in 0..5 {
                    let message = format!("thread {t} message {i}");
                    let sig = key.sign(message.as_bytes()).unwrap();
                    key.public_key().verify(message.as_bytes(), &sig).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("a signing thread failed");
    }
    let after = card.counters();
    assert_eq!(after.signatures, before.signatures + 30);
    assert_eq!(
        after.pin_verifies, before.pin_verifies,
        "the PIN verified at open stays verified (policy once)"
    );
}

/// The desk flow end to end: a P-256 key generated in 9a of the (virtual) YubiKey is registered
/// on the local Dfns simulator and signs the user actions of real calls, verified by the
/// simulator's own code; the same key signs through `dfns-signer sign-challenge` too.
#[cfg(feature = "simulator")]
#[test]
fn key_in_9a_completes_the_user_action_flow_against_the_simulator() {
    use dfns_signer::simulator::Simulator;

    let Some(env) = pcscd_or_skip("key_in_9a_completes_the_user_action_flow_against_the_simulator")
    else {
        return;
    };
    let card = card_with_key(&env, 39_000_001, "9a", TouchPolicy::Never);
    std::env::set_var("DFNS_PIV_TEST_PIN_39", PIN);
    let uri: KeyUri = "piv:slot=9a?serial=39000001&pin-source=env:DFNS_PIV_TEST_PIN_39"
        .parse()
        .unwrap();
    let key = dfns_signer::open(&uri).expect("open the 9a key by URI");
    assert_eq!(key.algorithm(), Algorithm::EcdsaP256);

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let root = Arc::new(dfns_signer::software::SoftwareKey::generate(Algorithm::Ed25519).unwrap());
        let sim = Simulator::builder().root_public_key_pem(root.public_key().to_pem()).start().await.unwrap();
        let admin = dfns_signer::DfnsClient::simulator_root(&sim, root).unwrap();
        let desk = admin.service_account_client("desk-yubikey", key.clone()).await.unwrap();
        for i in 0..3 {
            let body = serde_json::json!({"network": "EthereumSepolia", "externalId": format!("desk-{i}")});
            desk.create_wallet(&body).await.unwrap().done().unwrap();
        }
        assert_eq!(sim.stats().user_actions_used, 4);
    });
    let signatures = card.counters().signatures;
    assert!(
        signatures >= 3,
        "the card signed each user action ({signatures} signatures)"
    );

    // A person at the desk: `dfns-signer sign-challenge` with the same slot, in another process.
    #[cfg(feature = "cli")]
    {
        let init = r#"{"challenge":"ZGVzay1jaGFsbGVuZ2U","challengeIdentifier":"ci","allowCredentials":{"key":[{"type":"public-key","id":"desk-cred"}],"webauthn":[]}}"#;
        let out = process::output_with_stdin(
            std::process::Command::new(env!("CARGO_BIN_EXE_dfns-signer")).args([
                "sign-challenge",
                "--key",
                &uri.to_string(),
                "--cred-id",
                "desk-cred",
                "--output",
                "json",
            ]),
            init.as_bytes(),
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let ff: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let a = &ff["credentialAssertion"];
        let decode =
            |f: &str| dfns_signer::protocol::b64url_decode(a[f].as_str().unwrap()).unwrap();
        assert_eq!(
            decode("clientData"),
            br#"{"type":"key.get","challenge":"ZGVzay1jaGFsbGVuZ2U"}"#
        );
        key.public_key()
            .verify(&decode("clientData"), &decode("signature"))
            .unwrap();
        assert_eq!(card.counters().signatures, signatures + 1);
    }
}

/// At a desk: `dfns-signer sign-challenge` with a slot whose touch policy is "always" tells the
/// person to touch the key, on stderr, once the card has been waiting for a second; a quick
/// touch shows nothing.
#[cfg(feature = "cli")]
#[test]
fn cli_asks_for_a_touch_when_the_card_waits_for_one() {
    let Some(env) = pcscd_or_skip("cli_asks_for_a_touch_when_the_card_waits_for_one") else {
        return;
    };
    let card = card_with_key(&env, 39_500_001, "9c", TouchPolicy::Always);
    let sign_with_touch_after = |delay: Duration| {
        card.set_touch_delay(delay);
        let init = r#"{"challenge":"dG91Y2g","challengeIdentifier":"ci","allowCredentials":{"key":[{"type":"public-key","id":"touch-cred"}],"webauthn":[]}}"#;
        let out = process::output_with_stdin(
            std::process::Command::new(env!("CARGO_BIN_EXE_dfns-signer"))
                .args(["sign-challenge", "--cred-id", "touch-cred"])
                .args([
                    "--key",
                    "piv:slot=9c?serial=39500001&pin-source=env:DFNS_PIV_TOUCH_PIN&touch-timeout=10",
                ])
                .env("DFNS_PIV_TOUCH_PIN", PIN),
            init.as_bytes(),
        );
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{stderr}");
        assert!(!stderr.contains(PIN) && !String::from_utf8_lossy(&out.stdout).contains(PIN));
        stderr
    };
    let slow = sign_with_touch_after(Duration::from_millis(1800));
    assert!(
        slow.contains(
            "touch your YubiKey (serial 39500001) to sign with slot 9c (waiting up to 10 s)"
        ),
        "{slow}"
    );
    let quick = sign_with_touch_after(Duration::from_millis(100));
    assert!(!quick.contains("touch"), "{quick}");
}

/// A PIN the card refused is never presented again by the process: not by a second handle on
/// the same YubiKey (another URI, a loop around `open()`), which keeps no memory of its own.
#[test]
fn a_refused_pin_is_not_presented_again_by_another_handle() {
    let Some(env) = pcscd_or_skip("a_refused_pin_is_not_presented_again_by_another_handle") else {
        return;
    };
    let card = card_with_key(&env, 35_700_001, "9a", TouchPolicy::Never);
    let before = card.counters().pin_verifies;
    for round in 0..3 {
        let handle = key(35_700_001, "9a", pin("24681357"))
            .verify_pin_at_open(false)
            .open()
            .unwrap();
        let err = handle.sign(b"m").unwrap_err();
        assert!(
            matches!(
                err,
                BackendError::PinIncorrect {
                    tries_left: Some(2),
                    ..
                }
            ),
            "round {round}: {err:?}"
        );
    }
    assert_eq!(
        card.counters().pin_verifies,
        before + 1,
        "the wrong PIN was sent more than once"
    );
    assert_eq!(card.pin_tries_left(), 2);
    // The right PIN is another PIN: it is tried, and works.
    let good = key(35_700_001, "9a", pin(PIN)).open().unwrap();
    good.public_key()
        .verify(b"m", &good.sign(b"m").unwrap())
        .unwrap();
}

/// Runs the `dfns-signer` binary (it finds the private pcscd through the environment this
/// process set); returns (status, stdout, stderr).
#[cfg(feature = "cli")]
fn dfns_signer(args: &[&str], envs: &[(&str, &str)]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dfns-signer"))
        .args(args)
        .envs(envs.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// The desk commands on the virtual card, as a person runs them: generate a key in a slot
/// (PIN once, touch never here), find it in `keys list`, `keys show` it with its attestation,
/// export the attestation with `keys attest` and check it with `attestation verify` — verified
/// under the card's (injected) root, refused under Yubico's embedded roots, since this is not a
/// real YubiKey. A filled slot is not overwritten without `--force`.
#[cfg(feature = "cli")]
#[test]
fn desk_commands_generate_list_show_attest_and_verify_on_the_virtual_card() {
    let Some(env) = pcscd_or_skip("desk_commands_generate_list_show_attest_and_verify") else {
        return;
    };
    let ca = TestAttestationCa::new();
    let mut config = CardConfig::new(39_700_001);
    config.attestation = Some(ca.device.clone());
    let _card = env.insert_card(config);
    let dir = std::env::temp_dir().join(format!("dfns-signer-desk-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let root = dir.join("root.pem");
    std::fs::write(&root, &ca.root_pem).unwrap();
    let root = root.to_str().unwrap();
    let pin_env = [("DESK_PIN", PIN)];
    let uri = "piv:slot=9a?serial=39700001&pin-source=env:DESK_PIN";

    // A fresh card still has its factory credentials: refused, naming `piv setup`, unless the
    // card is declared a throw-away one.
    let (code, _, err) = dfns_signer(&["keys", "generate", "--key", uri], &pin_env);
    assert_eq!(code, 4, "{err}");
    assert!(
        err.contains("factory") && err.contains("piv setup"),
        "{err}"
    );
    assert!(err.contains("--allow-factory-defaults"), "{err}");
    assert_eq!(
        err.trim_end().lines().count(),
        2,
        "two lines, no log noise: {err}"
    );
    let (code, out, err) = dfns_signer(
        &[
            "keys",
            "generate",
            "--key",
            uri,
            "--touch-policy",
            "never",
            "--output",
            "json",
            "--allow-factory-defaults",
        ],
        &pin_env,
    );
    assert_eq!(code, 0, "{err}");
    let generated: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(generated["algorithm"], "p256");
    assert_eq!(generated["key"], "piv:slot=9a?serial=39700001");
    let public_key = generated["public_key"].as_str().unwrap().to_owned();
    assert!(public_key.starts_with("-----BEGIN PUBLIC KEY-----"));
    assert!(generated["attestation"]
        .as_str()
        .unwrap()
        .contains("BEGIN CERTIFICATE"));

    // The slot is filled now: generating again needs --force, and says so.
    let (code, _, err) = dfns_signer(
        &["keys", "generate", "--key", uri, "--allow-factory-defaults"],
        &pin_env,
    );
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("--force"), "{err}");

    let (code, out, err) = dfns_signer(&["keys", "list", "--output", "json"], &[]);
    assert_eq!(code, 0, "{err}");
    let listed: serde_json::Value = serde_json::from_str(&out).unwrap();
    let ours = listed["yubikeys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|y| y["serial"] == 39_700_001)
        .expect("the card is listed");
    assert_eq!(ours["slots"][0]["slot"], "9a");
    assert_eq!(ours["slots"][0]["algorithm"], "p256");
    assert_eq!(ours["slots"][0]["touch_policy"], "never");
    // The virtual card states form factor 1 in its attestations, as a USB-A keychain YubiKey.
    assert_eq!(ours["form_factor"], "usb-a-keychain");
    let (code, out, _) = dfns_signer(&["keys", "list"], &[]);
    assert_eq!(code, 0);
    assert!(
        out.contains("YubiKey serial 39700001 (firmware 5.7.1, form factor usb-a-keychain"),
        "{out}"
    );

    let (code, out, err) = dfns_signer(
        &[
            "keys",
            "show",
            "--key",
            "piv:slot=9a?serial=39700001",
            "--roots",
            root,
            "--output",
            "json",
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    let shown: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shown["public_key"], public_key.as_str());
    assert_eq!(shown["pin_policy"], "once");
    assert_eq!(shown["attestation"]["verified"], true, "{shown}");
    assert_eq!(shown["attestation"]["serial"], 39_700_001);
    let (code, out, _) = dfns_signer(
        &["keys", "show", "--key", "piv:slot=9a?serial=39700001"],
        &[],
    );
    assert_eq!(code, 0);
    assert!(out.contains("attestation: NOT verified"), "{out}");

    let exported = dir.join("exported.pem");
    let exported = exported.to_str().unwrap();
    let (code, _, err) = dfns_signer(
        &[
            "keys",
            "attest",
            "--key",
            "piv:slot=9a?serial=39700001",
            "--out",
            exported,
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = dfns_signer(
        &[
            "attestation",
            "verify",
            "--cert",
            exported,
            "--roots",
            root,
            "--output",
            "json",
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    let facts: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(facts["serial"], 39_700_001);
    assert_eq!(facts["slot"], "9a");
    assert_eq!(facts["public_key"], public_key.as_str());
    let (code, _, err) = dfns_signer(&["attestation", "verify", "--cert", exported], &[]);
    assert_eq!(code, 1, "the virtual card is not a YubiKey: {err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// With two YubiKeys plugged in, a URI without a serial is refused with the serials to choose
/// from; with one, the command goes on.
#[cfg(feature = "cli")]
#[test]
fn several_cards_need_a_serial() {
    let Some(env) = pcscd_or_skip("several_cards_need_a_serial") else {
        return;
    };
    let _a = card_with_key(&env, 39_800_001, "9a", TouchPolicy::Never);
    let _b = card_with_key(&env, 39_800_002, "9a", TouchPolicy::Never);
    let (code, _, err) = dfns_signer(&["keys", "show", "--key", "piv:slot=9a"], &[]);
    assert_eq!(code, 4, "{err}");
    assert!(
        err.contains("39800001") && err.contains("39800002"),
        "{err}"
    );
    let (code, _, err) = dfns_signer(
        &["keys", "show", "--key", "piv:slot=9a?serial=39800002"],
        &[],
    );
    assert_eq!(code, 0, "{err}");
}

/// `piv setup` on a factory-fresh card: the new PIN and PUK are checked before any try is spent
/// (a bad one changes nothing), then set; the management key becomes a random one stored
/// PIN-protected, which `keys generate` then uses with the PIN alone. Run again, it has nothing
/// left to do.
#[cfg(feature = "cli")]
#[test]
fn piv_setup_replaces_the_factory_credentials() {
    let Some(env) = pcscd_or_skip("piv_setup_replaces_the_factory_credentials") else {
        return;
    };
    let card = env.insert_card(CardConfig::new(39_900_001));
    let serial = ["--serial", "39900001"];
    let secrets = [
        ("NEW_PIN", "246813"),
        ("NEW_PUK", "97531864"),
        ("SHORT", "12345"),
    ];
    let setup =
        |extra: &[&str]| dfns_signer(&[&["piv", "setup"], &serial[..], extra].concat(), &secrets);

    // Without a source and without a terminal: refused, nothing changed.
    let (code, _, err) = setup(&[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--new-pin-source"), "{err}");
    // A new PIN that is too short: refused before any try is spent.
    let (code, _, err) = setup(&[
        "--new-pin-source",
        "env:SHORT",
        "--new-puk-source",
        "env:NEW_PUK",
    ]);
    assert_eq!(code, 2, "{err}");
    assert_eq!(card.pin(), "123456");
    assert_eq!(card.pin_tries_left(), 3);

    let (code, out, err) = setup(&[
        "--new-pin-source",
        "env:NEW_PIN",
        "--new-puk-source",
        "env:NEW_PUK",
        "--protect-management-key",
        "--output",
        "json",
    ]);
    assert_eq!(code, 0, "{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["pin_changed"], true);
    assert_eq!(report["puk_changed"], true);
    assert_eq!(report["management_key"], "protected");
    assert_eq!(report["factory_defaults_left"], serde_json::json!([]));
    assert_eq!(card.pin(), "246813");
    assert_eq!(card.puk(), "97531864");
    assert_ne!(card.mgm_key(), piv_support::card::DEFAULT_MGM_KEY.to_vec());
    assert!(!out.contains("246813") && !err.contains("246813"));

    // Set up: keys are generated with the PIN alone (the management key comes off the card).
    let (code, out, err) = dfns_signer(
        &[
            "keys",
            "generate",
            "--key",
            "piv:slot=9c?serial=39900001&pin-source=env:NEW_PIN",
            "--touch-policy",
            "never",
        ],
        &secrets,
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("-----BEGIN PUBLIC KEY-----"), "{out}");

    let (code, out, err) = setup(&[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("already set"), "{out}");
}

/// A person at a terminal (a real pseudo-terminal): `piv setup` asks for the new PIN and PUK
/// twice with echo off, asks again when one has the wrong length (no try spent), and offers to
/// protect the management key; two different entries change nothing. The PIN prompt of a
/// signature shows the tries left (also when the challenge comes on stdin from a file), and a
/// wrong PIN costs exactly one; without a terminal the prompt is refused.
#[cfg(feature = "cli")]
#[test]
fn desk_prompts_at_a_terminal_hide_input_ask_twice_and_show_tries_left() {
    use terminal::{at_terminal, Typed};
    let Some(env) = pcscd_or_skip("desk_prompts_at_a_terminal") else {
        return;
    };
    let bin = env!("CARGO_BIN_EXE_dfns-signer");
    let secret = |expect, send| Typed {
        expect,
        send,
        secret: true,
    };

    // Two entries that differ: refused, the card untouched.
    let other = env.insert_card(CardConfig::new(39_950_002));
    let typo = at_terminal(
        &[bin, "piv", "setup", "--serial", "39950002"],
        &[],
        &[
            secret("New PIN (6 to 8 characters): ", "135790"),
            secret("New PIN again: ", "135791"),
        ],
        30,
    );
    assert_eq!(typo.failed, None, "{}", typo.transcript);
    assert_eq!(typo.status, Some(2), "{}", typo.transcript);
    assert!(typo.transcript.contains("differ"), "{}", typo.transcript);
    assert_eq!(other.pin(), "123456");
    assert_eq!(other.pin_tries_left(), 3);

    let card = env.insert_card(CardConfig::new(39_950_001));
    let setup = at_terminal(
        &[bin, "piv", "setup", "--serial", "39950001"],
        &[],
        &[
            secret("New PIN (6 to 8 characters): ", "12345"),
            secret("New PIN (6 to 8 characters): ", "135790"),
            secret("New PIN again: ", "135790"),
            secret("New PUK (6 to 8 characters): ", "86420864"),
            secret("New PUK again: ", "86420864"),
            Typed {
                expect: "[Y/n] ",
                send: "y",
                secret: false,
            },
        ],
        30,
    );
    let screen = &setup.transcript;
    assert_eq!(setup.failed, None, "{screen}");
    assert_eq!(setup.status, Some(0), "{screen}");
    assert!(screen.contains("6 to 8 ASCII characters"), "{screen}");
    assert!(
        screen.contains("PIN changed, PUK changed, management key protected"),
        "{screen}"
    );
    for typed in ["135790", "86420864", "12345\r"] {
        assert!(!screen.contains(typed), "{typed} was echoed: {screen}");
    }
    assert_eq!(card.pin(), "135790");
    assert_eq!(card.puk(), "86420864");
    assert_eq!(
        card.pin_tries_left(),
        3,
        "the short PIN never reached the card"
    );
    assert_ne!(card.mgm_key(), piv_support::card::DEFAULT_MGM_KEY.to_vec());

    let (code, _, err) = dfns_signer(
        &[
            "keys",
            "generate",
            "--key",
            "piv:slot=9a?serial=39950001&pin-source=env:DESK_PIN",
            "--touch-policy",
            "never",
        ],
        &[("DESK_PIN", "135790")],
    );
    assert_eq!(code, 0, "{err}");

    // The PIN prompt says how many tries are left; a wrong PIN spends one and says so.
    let sign = [
        bin,
        "sign-challenge",
        "--cred-id",
        "desk-cred",
        "--key",
        "piv:slot=9a?serial=39950001&pin-source=prompt",
    ];
    let wrong = at_terminal(
        &sign,
        &[],
        &[secret(
            "PIV PIN for YubiKey serial 39950001 (3 tries left): ",
            "000000",
        )],
        30,
    );
    assert_eq!(wrong.failed, None, "{}", wrong.transcript);
    assert_eq!(wrong.status, Some(4), "{}", wrong.transcript);
    assert!(
        wrong.transcript.contains("2 tries left"),
        "{}",
        wrong.transcript
    );
    assert_eq!(card.pin_tries_left(), 2);

    // The challenge comes from a file on stdin, as a backend hands it over; the PIN is still
    // asked at the terminal (never read from the pipe).
    let challenge = r#"{"challenge":"ZGVzaw","challengeIdentifier":"ci","allowCredentials":{"key":[{"type":"public-key","id":"desk-cred"}],"webauthn":[]}}"#;
    let challenge_file =
        std::env::temp_dir().join(format!("desk-challenge-{}.json", std::process::id()));
    std::fs::write(&challenge_file, challenge).unwrap();
    let redirected = format!(
        "'{bin}' sign-challenge --cred-id desk-cred --key 'piv:slot=9a?serial=39950001&pin-source=prompt' < '{}'",
        challenge_file.display()
    );
    let signed = at_terminal(
        &["bash", "-c", &redirected],
        &[],
        &[secret(
            "PIV PIN for YubiKey serial 39950001 (2 tries left): ",
            "135790",
        )],
        30,
    );
    // Without a terminal at all (a service, CI: `setsid` drops the controlling terminal), the
    // prompt is refused at once; the PIN is not read from the pipe and no try is spent.
    let no_terminal = std::process::Command::new("setsid")
        .args(["-w", "bash", "-c", &redirected])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&no_terminal.stderr);
    assert_eq!(no_terminal.status.code(), Some(2), "{err}");
    assert!(err.contains("no terminal to prompt on"), "{err}");
    assert_eq!(
        card.pin_tries_left(),
        3,
        "the right PIN above reset the counter; none spent since"
    );
    let _ = std::fs::remove_file(&challenge_file);
    assert_eq!(signed.failed, None, "{}", signed.transcript);
    assert_eq!(signed.status, Some(0), "{}", signed.transcript);
    assert!(
        signed.transcript.contains("\"credId\""),
        "{}",
        signed.transcript
    );
    assert!(
        !signed.transcript.contains("135790"),
        "{}",
        signed.transcript
    );
    assert_eq!(card.pin_tries_left(), 3, "a right PIN resets the counter");
}

/// Not a check: holds a factory-fresh virtual YubiKey (serial 12345678, attesting under the
/// test CA) in a private pcscd so that a person can try the desk commands by hand, and so
/// that docs/desk.md could be recorded. Run it with
/// `cargo test --test piv -- --ignored desk_session_card --nocapture`; it prints the
/// `PCSCLITE_CSOCK_NAME` to export in another terminal and the test CA's root (for
/// `attestation verify --roots`), and keeps the card in until the file it names is removed
/// (at most 30 minutes).
#[test]
#[ignore = "interactive: a virtual card for trying the desk commands by hand"]
fn desk_session_card() {
    let Some(env) = pcscd_or_skip("desk_session_card") else {
        return;
    };
    let ca = TestAttestationCa::new();
    let mut config = CardConfig::new(12_345_678);
    config.attestation = Some(ca.device.clone());
    let _card = env.insert_card(config);
    let dir = std::env::temp_dir().join("dfns-signer-desk-session");
    std::fs::create_dir_all(&dir).unwrap();
    let root = dir.join("test-ca-root.pem");
    std::fs::write(&root, &ca.root_pem).unwrap();
    let hold = dir.join("card-is-in");
    std::fs::write(&hold, "remove this file to unplug the virtual card\n").unwrap();
    println!(
        "export PCSCLITE_CSOCK_NAME={}",
        std::env::var("PCSCLITE_CSOCK_NAME").unwrap()
    );
    println!("test CA root: {}", root.display());
    println!("remove {} to stop", hold.display());
    let started = Instant::now();
    while hold.exists() && started.elapsed() < Duration::from_secs(1800) {
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A YubiKey plugged in just after the command was typed: the command says it is waiting, then
/// goes on; one that never comes fails after the wait with the usual two lines.
#[cfg(feature = "cli")]
#[test]
fn desk_commands_wait_a_few_seconds_for_the_yubikey() {
    let Some(env) = pcscd_or_skip("desk_commands_wait_a_few_seconds_for_the_yubikey") else {
        return;
    };
    // `keys generate` needs nothing on the card beforehand, so the test does not race the
    // command for the card once it is in (it polls every 250 ms).
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_dfns-signer"))
        .args([
            "keys",
            "generate",
            "--key",
            "piv:slot=9a?serial=39960001&pin-source=env:WAIT_PIN",
            "--touch-policy",
            "never",
            "--allow-factory-defaults",
        ])
        .env("WAIT_PIN", PIN)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let card = env.insert_card(CardConfig::new(39_960_001));
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("waiting up to 5 s for YubiKey serial 39960001 to be plugged in"),
        "{stderr}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("BEGIN PUBLIC KEY"));
    assert!(
        card.object(&[0x5f, 0xc1, 0x05]).is_some(),
        "the slot's certificate was written"
    );

    let started = Instant::now();
    let (code, _, err) = dfns_signer(
        &["keys", "attest", "--key", "piv:slot=9a?serial=39960999"],
        &[],
    );
    assert_eq!(code, 4, "{err}");
    assert!(started.elapsed() >= Duration::from_secs(5), "it waited");
    assert_eq!(
        err.lines().filter(|l| l.starts_with("error: ")).count(),
        1,
        "{err}"
    );
}
