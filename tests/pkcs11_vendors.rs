//! The PKCS#11 backend through the modules YubiKey users actually load — Yubico's `ykcs11` and
//! OpenSC's `opensc-pkcs11.so` — against the virtual PIV card (tests/common/piv) on a private
//! pcscd, each test on its own card and ending with the user-action flow against the in-process
//! simulator.
//!
//! Needs root and `apt-get install pcscd vsmartcard-vpcd yubico-piv-tool ykcs11 opensc
//! opensc-pkcs11` (modules are searched for in the library directories, or named by
//! `DFNS_SIGNER_TEST_YKCS11_MODULE` / `DFNS_SIGNER_TEST_OPENSC_MODULE`); outside CI,
//! `DFNS_SIGNER_SKIP_HARDWARE=1` skips, printing `SKIPPED <test>: …` on stderr.
//!
//! What the modules do with a PIV card (checked here by `piv_keys_as_each_module_reports_them`,
//! and read in ykcs11 2.2.0 / OpenSC 0.23.0 sources):
//!
//! - ykcs11 names the token `YubiKey PIV #<serial>` with serial `<serial>` (decimal); OpenSC
//!   names it after the CN of the first certificate it finds, with serial `00000000` unless the
//!   card has a CHUID (a factory YubiKey has none).
//! - `CKA_ID` is the slot's number: 01 = 9a, 02 = 9c, 03 = 9d, 04 = 9e, 05… = retired 82….
//! - `CKA_ALWAYS_AUTHENTICATE` is true for 9c only, from a table in both modules, whatever the
//!   key's real PIN policy.
//! - Private keys: `CKA_PRIVATE` true, `CKA_SENSITIVE` true, `CKA_EXTRACTABLE` false in both
//!   (ykcs11 hard-codes them), so a card key passes the backend's protection check.
//! - `CKA_EC_POINT` is a DER OCTET STRING around the uncompressed point in both.
//! - `CKA_EC_PARAMS` for P-256: OpenSC gives the named curve; ykcs11 2.2.0 gives *explicit*
//!   parameters when it built the public key from GET METADATA (no attestation: imported keys,
//!   or a card whose attestation fails) and the named curve when it took it from the attestation
//!   certificate (generated keys on a real YubiKey).
//! - ykcs11 (firmware 5.3+) shows a key with no certificate (from its metadata); OpenSC shows
//!   only keys with a certificate.
//! - Login state is per token for the process: a second `C_Login` gives
//!   `CKR_USER_ALREADY_LOGGED_IN`, and closing the last session logs out.
//! - 9c: a context-specific login is accepted only between `C_SignInit` and `C_Sign` (ykcs11:
//!   `CKR_USER_TYPE_INVALID` otherwise) and costs one VERIFY in both. Without it, ykcs11 lets one
//!   signature through right after the user login (the card still holds that VERIFY), then
//!   answers `CKR_USER_NOT_LOGGED_IN` and stays logged in; OpenSC refuses at once with
//!   `CKR_USER_NOT_LOGGED_IN`, re-SELECTs the applet and drops the token's login state.
//! - ykcs11 reports PIN tries only as flags, from the last VERIFY's answer: 2 left is
//!   `CKF_USER_PIN_COUNT_LOW`, 1 is `CKF_USER_PIN_FINAL_TRY`, 0 `CKF_USER_PIN_LOCKED`.
#![cfg(all(feature = "pkcs11", feature = "piv", feature = "simulator"))]
// The PIV harness brings its own copies of `common/skip.rs` and `common/modules.rs` (tests/piv.rs
// uses it without `mod common`); here both are loaded, which is harmless: they hold no state.
#![allow(clippy::duplicate_mod)]

mod common;
#[path = "common/piv/mod.rs"]
mod piv_support;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cryptoki::context::Pkcs11;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, SessionState, UserType};
use cryptoki::slot::Slot as CkSlot;
use cryptoki::types::AuthPin;
use dfns_signer::piv::{
    DeviceOptions, DeviceSelector, KeyGeneration, ManagementKey, PivDevice, Slot,
};
use dfns_signer::{Algorithm, BackendError, KeyBackend, KeyUri, PinSource, PublicKey};
use piv_support::attestation::TestAttestationCa;
use piv_support::card::{CardConfig, MgmAlgorithm, VirtualPiv};
use piv_support::harness::{pcscd_or_skip, PivEnv};
use secrecy::SecretString;

/// The virtual card's PIN (`CardConfig::new`).
const PIN: &str = "123456";
/// `pin-source=env:…` of the tests that use the right PIN.
const PIN_VAR: &str = "DFNS_VENDOR_TEST_PIN";

/// P-256 as the named curve (OID 1.2.840.10045.3.1.7), as OpenSC (and ykcs11, when it read the
/// key from a certificate) report `CKA_EC_PARAMS`.
const P256_NAMED: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

/// P-256 as explicit `ECParameters` (SEC 1 C.2: version 1, prime field p, curve a, b and seed,
/// uncompressed base point G, order n, cofactor 1), exactly as ykcs11 2.2.0 reports
/// `CKA_EC_PARAMS` for a key it built from GET METADATA (OpenSSL `i2d_ECPKParameters` on a group
/// whose named-curve flag ykcs11 sets wrongly; fixed in yubico-piv-tool 2.3.1, commit e2dd647).
const P256_EXPLICIT_YKCS11: &str = concat!(
    "3081f7",
    "020101",
    "302c",
    "06072a8648ce3d0101",
    "022100ffffffff00000001000000000000000000000000ffffffffffffffffffffffff",
    "305b",
    "0420ffffffff00000001000000000000000000000000fffffffffffffffffffffffc",
    "04205ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604b",
    "031500c49d360886e704936a6678e1139d26b7819f7e90",
    "044104",
    "6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296",
    "4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5",
    "022100ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551",
    "020101",
);

fn pin(p: &str) -> PinSource {
    PinSource::Value(SecretString::from(p.to_owned()))
}

/// Opens the virtual card with the PIV backend (the library a desk user generates keys with).
fn device(serial: u32) -> PivDevice {
    PivDevice::open(
        &DeviceSelector {
            serial: Some(serial),
            reader: None,
        },
        DeviceOptions {
            pin_source: Some(pin(PIN)),
            ..DeviceOptions::default()
        },
    )
    .expect("open the virtual card")
}

/// Generates a P-256 key in `slot` with its self-signed certificate (`CN=<cn>`), as
/// `yubico-piv-tool -a generate` + `selfsign-certificate` + `import-certificate` users end up
/// with, and lets go of the card before a PKCS#11 module opens it.
fn generate(serial: u32, slot: Slot, cn: &str) -> PublicKey {
    let mut spec = KeyGeneration::new(slot);
    spec.subject = format!("CN={cn}");
    let generated = device(serial)
        .generate_key(&spec, &ManagementKey::Default)
        .expect("generate the key on the virtual card");
    generated.public_key
}

/// Plugs in a card once pcscd has seen the previous test's cards leave.
///
/// pcscd polls vpcd for presence (every 400 ms): a card removed and another plugged into the
/// same reader between two polls is never seen leaving, the reader's event counter does not
/// move, and OpenSC — which trusts that counter — keeps serving the previous card's token (its
/// label, its objects). Real people do not swap cards that fast; tests do.
fn insert(env: &PivEnv, config: CardConfig) -> VirtualPiv {
    let ctx = pcsc::Context::establish(pcsc::Scope::User).expect("PC/SC context");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let readers = ctx.list_readers_owned().unwrap_or_default();
        let mut states: Vec<pcsc::ReaderState> = readers
            .into_iter()
            .map(|r| pcsc::ReaderState::new(r, pcsc::State::UNAWARE))
            .collect();
        let empty = states.is_empty()
            || (ctx
                .get_status_change(Duration::from_millis(100), &mut states)
                .is_ok()
                && states
                    .iter()
                    .all(|s| s.event_state().contains(pcsc::State::EMPTY)));
        if empty {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "pcscd still sees a card 5 s after the previous test ended"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    env.insert_card(config)
}

/// A fresh card with a P-256 key and its certificate in `slot`.
fn card_with_key(env: &PivEnv, serial: u32, slot: Slot) -> (VirtualPiv, PublicKey) {
    let card = insert(env, CardConfig::new(serial));
    let public_key = generate(serial, slot, &format!("dfns-{serial}"));
    (card, public_key)
}

fn ykcs11() -> PathBuf {
    common::modules::ykcs11()
}

fn opensc() -> PathBuf {
    common::modules::opensc()
}

/// The URI a ykcs11 user writes: the token is `YubiKey PIV #<serial>`, the key's id its slot's.
fn ykcs11_uri(serial: u32, id: u8, pin_var: &str) -> KeyUri {
    format!(
        "pkcs11:token=YubiKey%20PIV%20%23{serial};id=%{id:02x}?module-path={}&pin-source=env:{pin_var}",
        ykcs11().display()
    )
    .parse()
    .expect("a valid pkcs11: URI")
}

fn set_pin_var(name: &str, value: &str) {
    std::env::set_var(name, value);
}

/// Registers `key` as a service account on a fresh simulator and creates `wallets` wallets, each
/// a user action the key signs; checks the simulator counted them.
fn complete_flow(key: Arc<dyn KeyBackend>, name: &str, wallets: usize) {
    use dfns_signer::simulator::Simulator;
    use dfns_signer::software::SoftwareKey;

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let root = Arc::new(SoftwareKey::generate(Algorithm::Ed25519).unwrap());
        let sim = Simulator::builder()
            .root_public_key_pem(root.public_key().to_pem())
            .start()
            .await
            .unwrap();
        let admin = dfns_signer::DfnsClient::simulator_root(&sim, root).unwrap();
        let client = admin.service_account_client(name, key).await.unwrap();
        for i in 0..wallets {
            let body = serde_json::json!({"network": "EthereumSepolia", "externalId": format!("{name}-{i}")});
            client
                .create_wallet(&body)
                .await
                .expect("the card-held key approves the wallet creation")
                .done()
                .unwrap();
        }
        // One user action registered the service account (signed by the root), one per wallet.
        assert_eq!(sim.stats().user_actions_used, 1 + wallets as u64);
    });
}

fn sign_and_verify(key: &dyn KeyBackend, message: &[u8]) -> Vec<u8> {
    let sig = key.sign(message).expect("sign through the PKCS#11 module");
    key.public_key()
        .verify(message, &sig)
        .expect("the signature verifies against the key's public key");
    sig
}

/// ykcs11, slot 9a: the module reports P-256 as explicit curve parameters (it builds the public
/// key from GET METADATA: the card has no attestation key, like an imported key on a real
/// YubiKey). The key opens by URI, signs, and approves user actions.
#[test]
fn ykcs11_9a_key_with_explicit_curve_parameters_signs_and_completes_the_flow() {
    let Some(env) =
        pcscd_or_skip("ykcs11_9a_key_with_explicit_curve_parameters_signs_and_completes_the_flow")
    else {
        return;
    };
    let serial = 41_000_001;
    let (card, generated) = card_with_key(&env, serial, Slot::AUTHENTICATION);
    set_pin_var(PIN_VAR, PIN);

    assert_eq!(
        public_ec_params(&ykcs11(), &format!("YubiKey PIV #{serial}"), 0x01),
        hex::decode(P256_EXPLICIT_YKCS11).unwrap(),
        "ykcs11 gives this key's curve by value"
    );

    let key = dfns_signer::open(&ykcs11_uri(serial, 0x01, PIN_VAR))
        .expect("open the 9a key through ykcs11");
    assert_eq!(key.algorithm(), Algorithm::EcdsaP256);
    assert_eq!(key.public_key(), &generated, "the key generated in 9a");
    assert!(
        key.describe().contains("YubiKey PIV #41000001"),
        "{}",
        key.describe()
    );

    let signatures = card.counters().signatures;
    sign_and_verify(key.as_ref(), b"signed in 9a through ykcs11");
    assert_eq!(
        card.counters().signatures,
        signatures + 1,
        "the card signed"
    );

    complete_flow(key.clone(), "desk-ykcs11-9a", 2);
    assert_eq!(card.counters().signatures, signatures + 3);
}

/// ykcs11, slot 9c (PIV default PIN policy "always"; ykcs11 marks the key
/// CKA_ALWAYS_AUTHENTICATE): each signature needs its own context-specific login.
///
/// How many VERIFYs that costs, from ykcs11 2.2.0's source: `C_Login` — CKU_USER or
/// CKU_CONTEXT_SPECIFIC alike — calls `token_login` → `ykpiv_verify`, one VERIFY with the PIN,
/// never skipped; `C_Sign` sends none (libykpiv re-verifies its cached PIN only after a card
/// reset, which does not happen here); `C_GetTokenInfo` reads its cached retry count without an
/// APDU. So opening costs one VERIFY for the user login plus one per signature made at open (the
/// key-pair check), and then every signature exactly one.
#[test]
fn ykcs11_9c_key_logs_in_before_every_signature() {
    let Some(env) = pcscd_or_skip("ykcs11_9c_key_logs_in_before_every_signature") else {
        return;
    };
    let serial = 41_000_002;
    let (card, generated) = card_with_key(&env, serial, Slot::SIGNATURE);
    set_pin_var(PIN_VAR, PIN);

    let before = card.counters();
    let key = dfns_signer::open(&ykcs11_uri(serial, 0x02, PIN_VAR))
        .expect("open the 9c key through ykcs11");
    assert_eq!(key.public_key(), &generated);
    let opened = card.counters();
    let open_signatures = opened.signatures - before.signatures;
    eprintln!(
        "9c through ykcs11: open made {open_signatures} signature(s) and {} VERIFY(s)",
        opened.pin_verifies - before.pin_verifies
    );
    assert_eq!(
        opened.pin_verifies - before.pin_verifies,
        1 + open_signatures,
        "open: one VERIFY for the user login and one per signature made at open ({open_signatures})"
    );

    // Two in a row: the card forgets the PIN after each signature (policy "always").
    let a = sign_and_verify(key.as_ref(), b"first 9c signature");
    let b = sign_and_verify(key.as_ref(), b"second 9c signature");
    assert_ne!(a, b);
    let after = card.counters();
    assert_eq!(after.signatures - opened.signatures, 2);
    assert_eq!(
        after.pin_verifies - opened.pin_verifies,
        2,
        "exactly one VERIFY (the context-specific login) per signature"
    );
    assert_eq!(card.pin_tries_left(), 3, "no try was spent");

    complete_flow(key.clone(), "desk-ykcs11-9c", 2);
    let end = card.counters();
    assert_eq!(end.signatures - after.signatures, 2);
    assert_eq!(end.pin_verifies - after.pin_verifies, 2);
}

/// ykcs11 with a wrong PIN: one VERIFY, one try spent, and the PIN is never presented again —
/// not by reopening the key, nor by opening another key on the same token.
#[test]
fn ykcs11_wrong_pin_costs_exactly_one_try() {
    let Some(env) = pcscd_or_skip("ykcs11_wrong_pin_costs_exactly_one_try") else {
        return;
    };
    let serial = 41_000_003;
    let card = insert(&env, CardConfig::new(serial));
    generate(serial, Slot::AUTHENTICATION, "dfns-41000003");
    generate(serial, Slot::SIGNATURE, "dfns-41000003");
    let wrong_var = "DFNS_VENDOR_TEST_WRONG_PIN";
    set_pin_var(wrong_var, "654321");

    let before = card.counters();
    assert_eq!(card.pin_tries_left(), 3);
    let err = dfns_signer::open(&ykcs11_uri(serial, 0x01, wrong_var)).unwrap_err();
    // ykcs11 reports the count only as flags: 2 tries left is CKF_USER_PIN_COUNT_LOW (1 is
    // CKF_USER_PIN_FINAL_TRY), so the error cannot say "2".
    assert!(
        matches!(
            err,
            BackendError::PinIncorrect {
                tries_left: None | Some(2),
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(card.pin_tries_left(), 2, "exactly one try was spent");
    let after_first = card.counters();
    assert_eq!(after_first.pin_verifies, before.pin_verifies + 1);

    // The same PIN again: refused without a VERIFY, by the same key and by another key.
    for id in [0x01, 0x01, 0x02] {
        let err = dfns_signer::open(&ykcs11_uri(serial, id, wrong_var)).unwrap_err();
        assert!(
            matches!(err, BackendError::PinIncorrect { .. }),
            "id {id:02x}: {err:?}"
        );
    }
    assert_eq!(
        card.counters().pin_verifies,
        after_first.pin_verifies,
        "the refused PIN reached the card again"
    );
    assert_eq!(card.pin_tries_left(), 2);
    assert_eq!(card.counters().signatures, before.signatures);

    // The right PIN is another PIN: it is tried, resets the counter, and the key works.
    set_pin_var(PIN_VAR, PIN);
    let key = dfns_signer::open(&ykcs11_uri(serial, 0x01, PIN_VAR)).expect("the right PIN");
    assert_eq!(card.pin_tries_left(), 3);
    sign_and_verify(key.as_ref(), b"after a wrong PIN");
    complete_flow(key.clone(), "desk-ykcs11-wrong-pin", 1);
}

/// OpenSC's PIV driver, slot 9a with a certificate: OpenSC names the token after the
/// certificate's CN (its serial is 00000000: the card has no CHUID, like a factory YubiKey).
#[test]
fn opensc_9a_key_signs_and_completes_the_flow() {
    let Some(env) = pcscd_or_skip("opensc_9a_key_signs_and_completes_the_flow") else {
        return;
    };
    let serial = 41_000_004;
    let (card, generated) = card_with_key(&env, serial, Slot::AUTHENTICATION);
    set_pin_var(PIN_VAR, PIN);
    let uri: KeyUri = format!(
        "pkcs11:token=dfns-{serial};id=%01?module-path={}&pin-source=env:{PIN_VAR}",
        opensc().display()
    )
    .parse()
    .unwrap();
    let key = dfns_signer::open(&uri).expect("open the 9a key through OpenSC");
    assert_eq!(key.public_key(), &generated);
    assert!(
        key.describe().contains("serial 00000000"),
        "{}",
        key.describe()
    );
    let signatures = card.counters().signatures;
    sign_and_verify(key.as_ref(), b"signed in 9a through OpenSC");
    assert_eq!(card.counters().signatures, signatures + 1);
    complete_flow(key.clone(), "desk-opensc-9a", 2);
    assert_eq!(card.counters().signatures, signatures + 3);
}

/// OpenSC, slot 9c: OpenSC also marks it CKA_ALWAYS_AUTHENTICATE and refuses any signature
/// without a context-specific login; with one, each signature costs one VERIFY.
#[test]
fn opensc_9c_key_logs_in_before_every_signature() {
    let Some(env) = pcscd_or_skip("opensc_9c_key_logs_in_before_every_signature") else {
        return;
    };
    let serial = 41_000_008;
    let (card, generated) = card_with_key(&env, serial, Slot::SIGNATURE);
    set_pin_var(PIN_VAR, PIN);
    let uri: KeyUri = format!(
        "pkcs11:token=dfns-{serial};id=%02?module-path={}&pin-source=env:{PIN_VAR}",
        opensc().display()
    )
    .parse()
    .unwrap();
    let before = card.counters();
    let key = dfns_signer::open(&uri).expect("open the 9c key through OpenSC");
    assert_eq!(key.public_key(), &generated);
    let opened = card.counters();
    let open_signatures = opened.signatures - before.signatures;
    eprintln!(
        "9c through OpenSC: open made {open_signatures} signature(s) and {} VERIFY(s)",
        opened.pin_verifies - before.pin_verifies
    );
    assert_eq!(
        opened.pin_verifies - before.pin_verifies,
        1 + open_signatures,
        "open: one VERIFY for the user login and one per signature made at open"
    );
    sign_and_verify(key.as_ref(), b"first 9c signature through OpenSC");
    sign_and_verify(key.as_ref(), b"second 9c signature through OpenSC");
    let after = card.counters();
    assert_eq!(after.signatures - opened.signatures, 2);
    assert_eq!(after.pin_verifies - opened.pin_verifies, 2);
    complete_flow(key.clone(), "desk-opensc-9c", 2);
    let end = card.counters();
    assert_eq!(end.signatures - after.signatures, 2);
    assert_eq!(end.pin_verifies - after.pin_verifies, 2);
    assert_eq!(card.pin_tries_left(), 3);
}

// ---------------------------------------------------------------------------------------------
// What each module reports for PIV keys, read with cryptoki directly.

/// One object as a module reports it (attributes it refuses are `None`).
#[derive(Debug)]
struct Object {
    class: Option<ObjectClass>,
    label: String,
    id: Vec<u8>,
    private: Option<bool>,
    sensitive: Option<bool>,
    extractable: Option<bool>,
    always_authenticate: Option<bool>,
    local: Option<bool>,
    ec_params: Option<Vec<u8>>,
    ec_point: Option<Vec<u8>>,
}

fn read_object(session: &Session, h: ObjectHandle) -> Object {
    let mut o = Object {
        class: None,
        label: String::new(),
        id: Vec::new(),
        private: None,
        sensitive: None,
        extractable: None,
        always_authenticate: None,
        local: None,
        ec_params: None,
        ec_point: None,
    };
    // One attribute at a time: a module refusing one must not hide the others.
    for t in [
        AttributeType::Class,
        AttributeType::Label,
        AttributeType::Id,
        AttributeType::Private,
        AttributeType::Sensitive,
        AttributeType::Extractable,
        AttributeType::AlwaysAuthenticate,
        AttributeType::Local,
        AttributeType::EcParams,
        AttributeType::EcPoint,
    ] {
        for a in session.get_attributes(h, &[t]).unwrap_or_default() {
            match a {
                Attribute::Class(c) => o.class = Some(c),
                Attribute::Label(l) => o.label = String::from_utf8_lossy(&l).into_owned(),
                Attribute::Id(i) => o.id = i,
                Attribute::Private(b) => o.private = Some(b),
                Attribute::Sensitive(b) => o.sensitive = Some(b),
                Attribute::Extractable(b) => o.extractable = Some(b),
                Attribute::AlwaysAuthenticate(b) => o.always_authenticate = Some(b),
                Attribute::Local(b) => o.local = Some(b),
                Attribute::EcParams(v) => o.ec_params = Some(v),
                Attribute::EcPoint(v) => o.ec_point = Some(v),
                _ => {}
            }
        }
    }
    o
}

fn keys(session: &Session, class: ObjectClass) -> Vec<Object> {
    let mut out: Vec<Object> = session
        .find_objects(&[Attribute::Class(class)])
        .unwrap()
        .into_iter()
        .map(|h| read_object(session, h))
        .collect();
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

/// The slot whose token has this label.
fn slot_labelled(ctx: &Pkcs11, label: &str) -> (CkSlot, String, String) {
    let mut seen = Vec::new();
    for slot in ctx.get_slots_with_token().unwrap() {
        let info = ctx.get_token_info(slot).unwrap();
        let (l, s) = (
            info.label().trim_end().to_owned(),
            info.serial_number().trim_end().to_owned(),
        );
        if l == label {
            return (slot, l, s);
        }
        seen.push(l);
    }
    panic!("no token labelled {label:?} (tokens: {seen:?})");
}

fn report(module: &str, objects: &[Object]) {
    for o in objects {
        eprintln!(
            "{module}: {:?} {:?} id {} private {:?} sensitive {:?} extractable {:?} always_auth {:?} local {:?}\n    EC_PARAMS {}\n    EC_POINT {}",
            o.class,
            o.label,
            hex::encode(&o.id),
            o.private,
            o.sensitive,
            o.extractable,
            o.always_authenticate,
            o.local,
            o.ec_params.as_deref().map(hex::encode).unwrap_or_default(),
            o.ec_point.as_deref().map(hex::encode).unwrap_or_default(),
        );
    }
}

/// The `CKA_EC_PARAMS` of the public key object with this id on the token with this label (read
/// without a login, in a session closed before returning).
fn public_ec_params(module: &std::path::Path, token: &str, id: u8) -> Vec<u8> {
    let ctx = dfns_signer::pkcs11::shared_context(module).unwrap();
    let (slot, _, _) = slot_labelled(&ctx, token);
    let session = ctx.open_ro_session(slot).unwrap();
    let public = keys(&session, ObjectClass::PUBLIC_KEY);
    let key = public
        .into_iter()
        .find(|o| o.id == [id])
        .expect("the public key object");
    key.ec_params.expect("CKA_EC_PARAMS")
}

/// `04 41 <65-byte point>`: the DER OCTET STRING the spec asks for.
fn der_point(public_key: &PublicKey) -> Vec<u8> {
    // A P-256 SPKI ends with the BIT STRING holding the 65-byte uncompressed point.
    let spki = public_key.spki_der();
    let point = &spki[spki.len() - 65..];
    assert_eq!(point[0], 0x04);
    let mut out = vec![0x04, 0x41];
    out.extend_from_slice(point);
    out
}

/// Generates a P-256 key in 9d with `yubico-piv-tool` and writes no certificate (the first half
/// of what its users do). The card must use a 3DES management key: yubico-piv-tool 2.2.0 cannot
/// authenticate with AES.
fn generate_without_certificate(env: &PivEnv, serial: u32) {
    let reader = env.reader_of(serial);
    let out = std::process::Command::new("yubico-piv-tool")
        .args(["-r", &reader, "-a", "generate", "-s", "9d", "-A", "ECCP256"])
        .output()
        .expect("run yubico-piv-tool (apt-get install yubico-piv-tool)");
    assert!(
        out.status.success(),
        "yubico-piv-tool generate failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The attributes both modules give for PIV keys, asserted where the backend depends on them
/// and printed (run with `--nocapture`) for the rest.
#[test]
fn piv_keys_as_each_module_reports_them() {
    let Some(env) = pcscd_or_skip("piv_keys_as_each_module_reports_them") else {
        return;
    };
    // Card A: no attestation key (ykcs11 falls back to GET METADATA), 3DES management key
    // (for yubico-piv-tool 2.2.0): 9a and 9c with certificates, 9d without.
    let serial = 41_000_005;
    let mut config = CardConfig::new(serial);
    config.mgm_algorithm = MgmAlgorithm::TripleDes;
    config.version = [5, 4, 3];
    let card = insert(&env, config);
    let pk_9a = generate(serial, Slot::AUTHENTICATION, "vendors-a");
    let pk_9c = generate(serial, Slot::SIGNATURE, "vendors-a");
    generate_without_certificate(&env, serial);
    // Card B: with an attestation key, as every real YubiKey has.
    let serial_b = 41_000_006;
    let ca = TestAttestationCa::new();
    let mut config_b = CardConfig::new(serial_b);
    config_b.attestation = Some(ca.device.clone());
    let card_b = env.insert_card(config_b);
    let pk_b = generate(serial_b, Slot::AUTHENTICATION, "vendors-b");

    let explicit = hex::decode(P256_EXPLICIT_YKCS11).unwrap();
    let pin = AuthPin::new(PIN.into());

    // ---- ykcs11
    let ctx = dfns_signer::pkcs11::shared_context(&ykcs11()).unwrap();
    let (slot, label, token_serial) = slot_labelled(&ctx, &format!("YubiKey PIV #{serial}"));
    assert_eq!(token_serial, serial.to_string());
    eprintln!("ykcs11 token: label {label:?} serial {token_serial:?}");
    let verifies = card.counters().pin_verifies;
    {
        let s1 = ctx.open_ro_session(slot).unwrap();
        // Private keys are invisible before a login; public keys (and certificates) are not.
        assert!(keys(&s1, ObjectClass::PRIVATE_KEY).is_empty());
        let public = keys(&s1, ObjectClass::PUBLIC_KEY);
        report("ykcs11 A", &public);
        // 9d has no certificate, yet ykcs11 shows its public key (taken from GET METADATA).
        assert_eq!(
            public.iter().map(|o| o.id.clone()).collect::<Vec<_>>(),
            vec![vec![1], vec![2], vec![3]]
        );
        assert_eq!(public[0].ec_point.as_deref(), Some(&der_point(&pk_9a)[..]));
        assert_eq!(public[1].ec_point.as_deref(), Some(&der_point(&pk_9c)[..]));
        for o in &public {
            assert_eq!(o.ec_params.as_deref(), Some(&explicit[..]), "{o:?}");
        }

        // Login state is the token's, shared by every session of the process.
        let s2 = ctx.open_ro_session(slot).unwrap();
        s1.login(UserType::User, Some(&pin)).unwrap();
        assert_eq!(
            s2.get_session_info().unwrap().session_state(),
            SessionState::RoUser
        );
        assert!(matches!(
            s2.login(UserType::User, Some(&pin)),
            Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _))
        ));
        // A context-specific login needs a signature in progress.
        assert!(matches!(
            s2.login(UserType::ContextSpecific, Some(&pin)),
            Err(CkError::Pkcs11(RvError::UserTypeInvalid, _))
        ));
        assert_eq!(card.counters().pin_verifies, verifies + 1);
        let private = keys(&s2, ObjectClass::PRIVATE_KEY);
        report("ykcs11 A", &private);
        assert_eq!(
            private
                .iter()
                .map(|o| (o.id.clone(), o.always_authenticate))
                .collect::<Vec<_>>(),
            vec![
                (vec![1], Some(false)),
                (vec![2], Some(true)),
                (vec![3], Some(false))
            ],
            "CKA_ALWAYS_AUTHENTICATE: 9c only"
        );
        for o in &private {
            assert_eq!(
                (o.private, o.sensitive, o.extractable, o.local),
                (Some(true), Some(true), Some(false), Some(true)),
                "{o:?}"
            );
            assert_eq!(o.ec_params.as_deref(), Some(&explicit[..]));
        }
        // 9c under CKU_USER alone: the card still holds the user login's VERIFY, so one
        // signature goes through; the next one needs the PIN again.
        let h9c = s2
            .find_objects(&[
                Attribute::Class(ObjectClass::PRIVATE_KEY),
                Attribute::Id(vec![2]),
            ])
            .unwrap()[0];
        s2.sign(&Mechanism::Ecdsa, h9c, &[7u8; 32])
            .expect("first 9c signature after C_Login(CKU_USER)");
        let second = s2.sign(&Mechanism::Ecdsa, h9c, &[8u8; 32]);
        // The card answers 6982; ykcs11 says CKR_USER_NOT_LOGGED_IN but stays logged in.
        assert!(
            matches!(second, Err(CkError::Pkcs11(RvError::UserNotLoggedIn, _))),
            "{second:?}"
        );
        assert_eq!(
            s2.get_session_info().unwrap().session_state(),
            SessionState::RoUser
        );
        // With it: C_SignInit, C_Login(CKU_CONTEXT_SPECIFIC), C_Sign.
        s2.sign_init(&Mechanism::Ecdsa, h9c).unwrap();
        s2.login(UserType::ContextSpecific, Some(&pin)).unwrap();
        s2.sign_update(&[9u8; 32]).unwrap();
        let sig = s2.sign_final().unwrap();
        assert_eq!(sig.len(), 64, "raw r‖s");
        assert_eq!(card.counters().pin_verifies, verifies + 2);
        // Closing every session logs the token out (and ykcs11 forgets its objects).
        drop(s1);
        drop(s2);
        let s3 = ctx.open_ro_session(slot).unwrap();
        assert_eq!(
            s3.get_session_info().unwrap().session_state(),
            SessionState::RoPublic
        );
    }
    // Card B, with attestation: ykcs11 takes the key from the attestation certificate, and the
    // parameters are the named curve.
    let (slot_b, _, _) = slot_labelled(&ctx, &format!("YubiKey PIV #{serial_b}"));
    {
        let s = ctx.open_ro_session(slot_b).unwrap();
        let public = keys(&s, ObjectClass::PUBLIC_KEY);
        report("ykcs11 B (attestation)", &public);
        // 01 = 9a, and 19 = f9: the attestation key, from its certificate.
        assert_eq!(
            public.iter().map(|o| o.id.clone()).collect::<Vec<_>>(),
            vec![vec![0x01], vec![0x19]]
        );
        assert_eq!(public[0].ec_params.as_deref(), Some(P256_NAMED));
        assert_eq!(public[0].ec_point.as_deref(), Some(&der_point(&pk_b)[..]));
    }
    let _ = &card_b;

    // ---- OpenSC
    let ctx = dfns_signer::pkcs11::shared_context(&opensc()).unwrap();
    let (slot, label, token_serial) = slot_labelled(&ctx, "vendors-a");
    eprintln!("OpenSC token: label {label:?} serial {token_serial:?}");
    assert_eq!(token_serial, "00000000", "no CHUID, no serial");
    {
        let s = ctx.open_ro_session(slot).unwrap();
        assert!(
            keys(&s, ObjectClass::PRIVATE_KEY).is_empty(),
            "private keys are invisible before a login"
        );
        let public = keys(&s, ObjectClass::PUBLIC_KEY);
        report("OpenSC A", &public);
        // Only keys with a certificate: 9d is missing.
        assert_eq!(
            public.iter().map(|o| o.id.clone()).collect::<Vec<_>>(),
            vec![vec![1], vec![2]]
        );
        assert_eq!(public[0].ec_point.as_deref(), Some(&der_point(&pk_9a)[..]));
        s.login(UserType::User, Some(&pin)).unwrap();
        assert!(matches!(
            s.login(UserType::User, Some(&pin)),
            Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _))
        ));
        let private = keys(&s, ObjectClass::PRIVATE_KEY);
        report("OpenSC A", &private);
        assert_eq!(
            private
                .iter()
                .map(|o| (o.id.clone(), o.always_authenticate))
                .collect::<Vec<_>>(),
            vec![(vec![1], Some(false)), (vec![2], Some(true))]
        );
        for o in public.iter().chain(&private) {
            assert_eq!(o.ec_params.as_deref(), Some(P256_NAMED), "{o:?}");
        }
        for o in &private {
            assert_eq!(
                (o.private, o.sensitive, o.extractable),
                (Some(true), Some(true), Some(false)),
                "{o:?}"
            );
        }
        let h9c = s
            .find_objects(&[
                Attribute::Class(ObjectClass::PRIVATE_KEY),
                Attribute::Id(vec![2]),
            ])
            .unwrap()[0];
        // With a context-specific login: C_SignInit, C_Login(CKU_CONTEXT_SPECIFIC), C_Sign.
        for round in 0..2 {
            let v = card.counters().pin_verifies;
            s.sign_init(&Mechanism::Ecdsa, h9c).unwrap();
            s.login(UserType::ContextSpecific, Some(&pin)).unwrap();
            s.sign_update(&[9u8; 32]).unwrap();
            let sig = s
                .sign_final()
                .expect("9c signature after a context-specific login");
            assert_eq!(sig.len(), 64, "raw r‖s");
            eprintln!(
                "OpenSC A: 9c signature {round} with C_Login(CKU_CONTEXT_SPECIFIC): {} VERIFY",
                card.counters().pin_verifies - v
            );
        }
        // Without one, OpenSC refuses before asking the card (no VERIFY, no signature)…
        let v = card.counters();
        let without = s.sign(&Mechanism::Ecdsa, h9c, &[7u8; 32]);
        assert!(
            matches!(without, Err(CkError::Pkcs11(RvError::UserNotLoggedIn, _))),
            "{without:?}"
        );
        let after = card.counters();
        assert_eq!(
            (after.pin_verifies, after.signatures),
            (v.pin_verifies, v.signatures)
        );
        eprintln!(
            "OpenSC A: 9c without a context-specific login: {without:?}, {} SELECT",
            after.selects - v.selects
        );
        // …and drops the token's login state (reset_login_state on CKR_USER_NOT_LOGGED_IN).
        assert_eq!(
            s.get_session_info().unwrap().session_state(),
            SessionState::RoPublic
        );
    }
}

/// Firmware before 5.3 has no GET METADATA: with no attestation either, ykcs11 learns a key's
/// public half only from the slot's certificate, so a key without one has no objects at all, and
/// the others get the certificate's named curve.
#[test]
fn before_firmware_5_3_ykcs11_shows_only_keys_with_a_certificate() {
    let Some(env) = pcscd_or_skip("before_firmware_5_3_ykcs11_shows_only_keys_with_a_certificate")
    else {
        return;
    };
    let serial = 41_000_007;
    let mut config = CardConfig::new(serial);
    config.mgm_algorithm = MgmAlgorithm::TripleDes;
    config.version = [5, 2, 7];
    let card = insert(&env, config);
    let pk_9a = generate(serial, Slot::AUTHENTICATION, "vendors-c");
    generate_without_certificate(&env, serial);
    assert!(card.has_key(0x9d));

    let ctx = dfns_signer::pkcs11::shared_context(&ykcs11()).unwrap();
    let (slot, _, _) = slot_labelled(&ctx, &format!("YubiKey PIV #{serial}"));
    {
        let s = ctx.open_ro_session(slot).unwrap();
        let public = keys(&s, ObjectClass::PUBLIC_KEY);
        report("ykcs11 C (5.2.7)", &public);
        assert_eq!(
            public.iter().map(|o| o.id.clone()).collect::<Vec<_>>(),
            vec![vec![0x01]],
            "9d has no certificate, hence no objects"
        );
        assert_eq!(public[0].ec_params.as_deref(), Some(P256_NAMED));
        assert_eq!(public[0].ec_point.as_deref(), Some(&der_point(&pk_9a)[..]));
    }

    // Through the backend: 9d is not found (the error lists what is there), 9a opens and signs.
    set_pin_var(PIN_VAR, PIN);
    let err = dfns_signer::open(&ykcs11_uri(serial, 0x03, PIN_VAR)).unwrap_err();
    match &err {
        BackendError::KeyNotFound { found, .. } => assert_eq!(
            found,
            &vec!["\"Private key for PIV Authentication\" (id 01)".to_owned()]
        ),
        other => panic!("expected KeyNotFound, got {other:?}"),
    }
    let key = dfns_signer::open(&ykcs11_uri(serial, 0x01, PIN_VAR)).expect("open 9a");
    assert_eq!(key.public_key(), &pk_9a);
    sign_and_verify(key.as_ref(), b"9a on firmware 5.2.7 through ykcs11");
    complete_flow(key.clone(), "desk-ykcs11-527", 1);
}
