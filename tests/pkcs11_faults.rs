//! Tokens that misbehave, through the fault-injecting proxy module (`tests/pkcs11-shim`) in
//! front of SoftHSM: the last PIN try, a login that dies mid-way, a stuck network HSM, a token
//! that returns a bad signature, a key usable without login, a module someone else initialised.
//! Each test uses its own token: login state is per token and process.
#![cfg(feature = "pkcs11")]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::pkcs11_shim::Shim;
use common::softhsm::{self, hsm, USER_PIN};
use dfns_signer::pkcs11::{Pkcs11Config, Pkcs11Key};
use dfns_signer::{BackendError, KeyBackend, PinSource};
use secrecy::SecretString;

fn config(shim: &Shim, token: &str) -> Pkcs11Config {
    Pkcs11Config::new()
        .with_module_path(&shim.path)
        .with_token_label(token)
        .with_key_label("p256")
        .with_pin(PinSource::Value(SecretString::from(USER_PIN.to_owned())))
}

#[test]
fn the_last_pin_try_is_not_spent_unless_allowed() {
    let Some(_h) = hsm() else { return };
    let shim = Shim::new("last-try");
    shim.set(&[("final_try", "1")]);
    let err = Pkcs11Key::open(&config(&shim, "lasttry")).unwrap_err();
    assert!(matches!(err, BackendError::LastPinTry { .. }), "{err:?}");
    assert!(
        err.to_string().contains("only one PIN try is left"),
        "{err}"
    );
    assert_eq!(shim.calls("C_Login"), 0, "no PIN was presented");

    // Allowed explicitly (URI `allow-last-pin-try=true`): the login goes ahead.
    let key = Pkcs11Key::open(&config(&shim, "lasttry").allow_last_pin_try(true)).unwrap();
    assert_eq!(shim.calls("C_Login"), 1);
    key.public_key()
        .verify(b"m", &key.sign(b"m").unwrap())
        .unwrap();
}

#[test]
fn a_login_that_died_mid_way_is_never_repeated_with_that_pin() {
    let Some(_h) = hsm() else { return };
    let shim = Shim::new("login-died");
    // CKR_DEVICE_REMOVED: did the token count a wrong try? Nobody can tell.
    shim.set(&[("login_error", "0x32")]);
    let err = Pkcs11Key::open(&config(&shim, "loginerr")).unwrap_err();
    assert!(matches!(err, BackendError::Device { .. }), "{err:?}");
    assert!(err.to_string().contains("outcome is unknown"), "{err}");
    assert_eq!(shim.calls("C_Login"), 1);

    // The device is back; the same PIN is still not presented, by any key of the process.
    shim.clear();
    for _ in 0..3 {
        let err = Pkcs11Key::open(&config(&shim, "loginerr")).unwrap_err();
        assert!(err.to_string().contains("outcome is unknown"), "{err}");
    }
    assert_eq!(shim.calls("C_Login"), 1, "the PIN was presented again");
}

#[test]
fn a_stuck_token_fails_waiting_signers_after_the_pool_wait() {
    let Some(_h) = hsm() else { return };
    let shim = Shim::new("stuck");
    let key = Arc::new(
        Pkcs11Key::open(
            &config(&shim, "stuck")
                .with_pool_size(1)
                .with_pool_wait(Duration::from_millis(500)),
        )
        .unwrap(),
    );
    shim.set(&[("sign_delay_ms", "3000")]);
    let stuck = {
        let key = key.clone();
        std::thread::spawn(move || key.sign(b"first"))
    };
    // Let the first signature take the only session.
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    let err = key.sign(b"second").unwrap_err();
    let waited = started.elapsed();
    assert!(
        err.to_string().contains("waiting for a free session"),
        "{err}"
    );
    assert!(
        waited >= Duration::from_millis(450) && waited < Duration::from_millis(2500),
        "{waited:?}"
    );
    // The stuck one finishes in its own time, with a good signature.
    shim.clear();
    let sig = stuck.join().unwrap().unwrap();
    key.public_key().verify(b"first", &sig).unwrap();
}

#[test]
fn a_bad_signature_from_the_token_never_leaves_the_backend() {
    let Some(_h) = hsm() else { return };
    let shim = Shim::new("corrupt");
    let key = Pkcs11Key::open(&config(&shim, "corrupt")).unwrap();
    shim.set(&[("sign_corrupt", "1")]);
    let err = key.sign(b"m").unwrap_err();
    assert!(matches!(err, BackendError::Crypto(_)), "{err:?}");
    assert!(err.to_string().contains("does not verify"), "{err}");

    // Without the check (`verify-signatures=false`) the corrupted signature would have gone out.
    let unchecked = Pkcs11Key::open(&config(&shim, "corrupt").verify_signatures(false));
    // Opening signs a probe (checked on its own): with the fault on it fails, so open first.
    assert!(
        unchecked.is_err(),
        "the open-time pair check still catches it"
    );
    shim.clear();
    let unchecked = Pkcs11Key::open(&config(&shim, "corrupt").verify_signatures(false)).unwrap();
    shim.set(&[("sign_corrupt", "1")]);
    let sig = unchecked.sign(b"m").unwrap();
    assert!(unchecked.public_key().verify(b"m", &sig).is_err());
    shim.clear();
    let sig = key.sign(b"m").unwrap();
    key.public_key().verify(b"m", &sig).unwrap();
}

#[test]
fn a_key_usable_without_login_is_refused_unless_allowed() {
    let Some(_h) = hsm() else { return };
    use cryptoki::mechanism::Mechanism;
    use cryptoki::object::Attribute;
    softhsm::make_pair(
        "public",
        &Mechanism::EccKeyPairGen,
        "no-login",
        &[0x40],
        vec![
            Attribute::EcParams(softhsm::P256_PARAMS.to_vec()),
            Attribute::Verify(true),
        ],
        vec![
            // Sensitive and not extractable, but anyone with a session may sign with it.
            Attribute::Private(false),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
        ],
    );
    let cfg = Pkcs11Config::new()
        .with_module_path(softhsm::module_path())
        .with_token_label("public")
        .with_key_label("no-login")
        .with_pin(PinSource::Value(SecretString::from(USER_PIN.to_owned())));
    let err = Pkcs11Key::open(&cfg).unwrap_err();
    let BackendError::UnsafeKey { reason, .. } = &err else {
        panic!("{err:?}")
    };
    assert!(reason.contains("CKA_PRIVATE"), "{err}");
    assert!(!reason.contains("CKA_SENSITIVE"), "{err}");
    let key = Pkcs11Key::open(&cfg.allow_unsafe_key(true)).unwrap();
    assert!(!key.provenance().private);
    assert!(!key.provenance().is_protected());
}

/// Code that initialised the module before us may have asked for no locking: the key then
/// signs one call at a time, whatever pool size was asked for.
#[test]
fn a_module_initialised_by_someone_else_gets_one_session() {
    let Some(_h) = hsm() else { return };
    // SoftHSM itself is initialised by us first, with locking (other tests of this process use
    // it from several threads); only the shim copy's own state says "initialised by others".
    softhsm::own_context();
    let shim = Shim::new("foreign-init");
    let foreign = cryptoki::context::Pkcs11::new(&shim.path).unwrap();
    foreign
        .initialize(cryptoki::context::CInitializeArgs::new(
            cryptoki::context::CInitializeFlags::empty(),
        ))
        .unwrap();
    let key = Arc::new(Pkcs11Key::open(&config(&shim, "foreign").with_pool_size(4)).unwrap());
    // Slow signatures from four threads at once: with a pool of four, four sessions would open.
    shim.set(&[("sign_delay_ms", "100")]);
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let key = key.clone();
            std::thread::spawn(move || key.sign(format!("m{i}").as_bytes()))
        })
        .collect();
    for t in threads {
        t.join().unwrap().unwrap();
    }
    shim.clear();
    assert_eq!(key.open_sessions(), 1);
}

/// A token removed while a request is being approved: the backend reopens once, fails again,
/// and the request fails with the device error before anything but the challenge reached the
/// server: no user action completed, no side effect.
#[cfg(feature = "simulator")]
#[tokio::test]
async fn a_removed_token_fails_the_request_before_anything_is_approved() {
    use dfns_signer::Error;

    let Some(_h) = hsm() else { return };
    let shim = Shim::new("removed");
    let key: Arc<dyn KeyBackend> = Arc::new(Pkcs11Key::open(&config(&shim, "removed")).unwrap());
    let (sim, admin) = common::sim::start().await;
    let client = admin.service_account_client("hsm", key).await.unwrap();
    let before = sim.stats();
    let signs_before = shim.calls("C_Sign");
    // CKR_DEVICE_REMOVED on every C_Sign from now on.
    shim.set(&[("sign_error", "0x32")]);
    let err = client
        .create_wallet(&serde_json::json!({"network": "Bitcoin"}))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Backend(BackendError::Device { .. })),
        "{err:?}"
    );
    let after = sim.stats();
    let count =
        |s: &dfns_signer::simulator::Stats, k: &str| s.requests.get(k).copied().unwrap_or(0);
    assert_eq!(
        count(&after, "POST /auth/action/init") - count(&before, "POST /auth/action/init"),
        1
    );
    assert_eq!(
        count(&after, "POST /auth/action"),
        count(&before, "POST /auth/action")
    );
    assert_eq!(count(&after, "POST /wallets"), 0);
    assert_eq!(after.side_effects, before.side_effects);
    // One try, one reopen and one more try: two C_Sign calls, no more.
    assert_eq!(
        shim.calls("C_Sign") - signs_before,
        2,
        "{:?}",
        shim.calls_log()
    );
    shim.clear();
    client
        .create_wallet(&serde_json::json!({"network": "Bitcoin"}))
        .await
        .expect("the token is back")
        .done()
        .unwrap();
}

/// A key that wants the PIN before every signature (`CKA_ALWAYS_AUTHENTICATE`): each signature
/// takes one context-specific `C_Login`; a PIN refused there stops the key, and every other key
/// of the process on that token, for good. RSA, which SoftHSM 2.6 signs in parts.
#[test]
fn a_pin_for_every_signature_is_presented_once_per_signature_and_never_after_a_refusal() {
    let Some(_h) = hsm() else { return };
    use cryptoki::mechanism::Mechanism;
    use cryptoki::object::Attribute;
    softhsm::make_pair(
        "always",
        &Mechanism::RsaPkcsKeyPairGen,
        "each-time",
        &[0x51],
        vec![
            Attribute::ModulusBits(2048.into()),
            Attribute::PublicExponent(vec![1, 0, 1]),
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

    let shim = Shim::new("always");
    let cfg = Pkcs11Config::new()
        .with_module_path(&shim.path)
        .with_token_label("always")
        .with_key_label("each-time")
        .with_pin(PinSource::Value(SecretString::from(USER_PIN.to_owned())));
    let key = Pkcs11Key::open(&cfg).unwrap();
    assert!(key.pin_per_signature());
    // The set-up's session is closed, so the token is logged out: open presents the PIN for
    // the user login, then for the context-specific login of its pair-check signature.
    let at_open = shim.calls("C_Login");
    assert_eq!(at_open, 2, "{:?}", shim.calls_log());
    for message in [&b"first"[..], b"second"] {
        let sig = key.sign(message).unwrap();
        key.public_key().verify(message, &sig).unwrap();
    }
    assert_eq!(
        shim.calls("C_Login"),
        at_open + 2,
        "one login per signature"
    );

    // The token refuses the PIN at a signature: reported, and never presented again.
    shim.set(&[("login_error", "0xa0")]);
    let err = key.sign(b"third").unwrap_err();
    assert!(matches!(err, BackendError::PinIncorrect { .. }), "{err:?}");
    shim.clear();
    let err = key.sign(b"fourth").unwrap_err();
    assert!(matches!(err, BackendError::PinIncorrect { .. }), "{err:?}");
    assert!(Pkcs11Key::open(&cfg).is_err(), "another key of the process");
    assert_eq!(shim.calls("C_Login"), at_open + 3, "{:?}", shim.calls_log());
}
