//! The fault-injecting PKCS#11 proxy module (`tests/pkcs11-shim`, driven by
//! `tests/common/pkcs11_shim.rs`) itself: that it forwards faithfully when told nothing, and that
//! each fault it offers happens, through `cryptoki` alone (no dfns-signer code in the way).
//!
//! Needs SoftHSM, like `tests/softhsm.rs`; `DFNS_SIGNER_SKIP_HARDWARE=1` skips (and says so).
//! Each test uses its own token of `common::softhsm::TOKENS` (SoftHSM's login state is per token
//! and shared by every copy of the shim in this process).

mod common;

use std::time::{Duration, Instant};

use common::pkcs11_shim::Shim;
use common::softhsm::{hsm, USER_PIN};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Function, Pkcs11};
use cryptoki::error::{Error, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, SessionState, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use p256::ecdsa::signature::Verifier;
use sha2::Digest;

/// The shim copy's context, initialised, and the slot of the token labelled `token`.
fn open(shim: &Shim, token: &str) -> (Pkcs11, Slot) {
    let ctx =
        Pkcs11::new(&shim.path).unwrap_or_else(|e| panic!("load {}: {e}", shim.path.display()));
    ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .expect("C_Initialize through the shim");
    let slot = slot_of(&ctx, token);
    (ctx, slot)
}

fn slot_of(ctx: &Pkcs11, token: &str) -> Slot {
    ctx.get_slots_with_token()
        .expect("list slots")
        .into_iter()
        .find(|s| {
            ctx.get_token_info(*s)
                .map(|i| i.label().trim_end() == token)
                .unwrap_or(false)
        })
        .unwrap_or_else(|| panic!("no token {token}"))
}

fn pin() -> AuthPin {
    AuthPin::from(USER_PIN.to_owned())
}

/// A logged-in session on `token` and its P-256 key (label `p256`, from `init-token.sh`).
fn logged_in(ctx: &Pkcs11, slot: Slot) -> (Session, P256Key) {
    let session = ctx.open_ro_session(slot).expect("open session");
    session.login(UserType::User, Some(&pin())).expect("login");
    let key = P256Key::find(&session);
    (session, key)
}

struct P256Key {
    private: ObjectHandle,
    verifying: p256::ecdsa::VerifyingKey,
}

impl P256Key {
    fn find(session: &Session) -> P256Key {
        let find = |class| {
            let found = session
                .find_objects(&[Attribute::Class(class), Attribute::Label(b"p256".to_vec())])
                .expect("find objects");
            assert_eq!(found.len(), 1, "{class:?} objects labelled p256");
            found[0]
        };
        let private = find(ObjectClass::PRIVATE_KEY);
        let attributes = session
            .get_attributes(find(ObjectClass::PUBLIC_KEY), &[AttributeType::EcPoint])
            .expect("read CKA_EC_POINT");
        let Some(Attribute::EcPoint(point)) = attributes.first() else {
            panic!("no CKA_EC_POINT: {attributes:?}");
        };
        // SoftHSM gives the point DER-wrapped: OCTET STRING (04 41) around 04 || X || Y.
        let sec1 = match point.as_slice() {
            [0x04, len, rest @ ..] if *len as usize == rest.len() => rest,
            raw => raw,
        };
        let verifying = p256::ecdsa::VerifyingKey::from_sec1_bytes(sec1)
            .unwrap_or_else(|e| panic!("EC point {}: {e}", hex::encode(point)));
        P256Key { private, verifying }
    }

    /// CKM_ECDSA over the message's SHA-256 digest: raw r || s.
    fn sign(&self, session: &Session, message: &[u8]) -> Result<Vec<u8>, Error> {
        session.sign(
            &Mechanism::Ecdsa,
            self.private,
            &sha2::Sha256::digest(message),
        )
    }

    fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        let Ok(signature) = p256::ecdsa::Signature::from_slice(signature) else {
            return false;
        };
        self.verifying.verify(message, &signature).is_ok()
    }
}

#[test]
fn without_faults_signatures_come_through_and_verify() {
    let Some(_hsm) = hsm() else { return };
    let shim = Shim::new("no-faults");
    let (ctx, slot) = open(&shim, "algs");
    let (session, key) = logged_in(&ctx, slot);
    for i in 0..8u8 {
        let message = [b'm', i];
        let signature = key.sign(&session, &message).expect("sign");
        assert_eq!(signature.len(), 64);
        assert!(key.verifies(&message, &signature), "signature {i}");
        // The check can fail: not for another message.
        assert!(!key.verifies(b"another message", &signature));
    }
    let log = shim.calls_log();
    assert_eq!(log.first().map(String::as_str), Some("C_Initialize 0x0"));
    assert_eq!(shim.calls("C_Login"), 1, "{log:?}");
    // cryptoki asks for the length first, then signs: two C_Sign per signature.
    assert_eq!(shim.calls("C_Sign"), 16, "{log:?}");
    assert!(
        log.iter()
            .all(|line| line.ends_with(" 0x0") || line.starts_with("C_Finalize")),
        "{log:?}"
    );
}

#[test]
fn pin_flags_show_in_token_info_and_follow_the_conf_file() {
    let Some(_hsm) = hsm() else { return };
    let shim = Shim::new("pin-flags");
    let (ctx, slot) = open(&shim, "keygen");
    let flags = |ctx: &Pkcs11| {
        let info = ctx.get_token_info(slot).expect("token info");
        (
            info.user_pin_final_try(),
            info.user_pin_count_low(),
            info.user_pin_locked(),
        )
    };
    assert_eq!(flags(&ctx), (false, false, false), "SoftHSM's own flags");
    shim.set(&[("final_try", "1")]);
    assert_eq!(flags(&ctx), (true, false, false));
    shim.set(&[("count_low", "1"), ("pin_locked", "1")]);
    assert_eq!(flags(&ctx), (false, true, true));
    shim.clear();
    assert_eq!(flags(&ctx), (false, false, false));
    // The other answers are SoftHSM's, untouched.
    assert_eq!(
        ctx.get_token_info(slot).unwrap().label().trim_end(),
        "keygen"
    );
    assert!(shim.calls("C_GetTokenInfo") >= 5, "{:?}", shim.calls_log());
}

#[test]
fn login_error_is_answered_without_forwarding_and_logged() {
    let Some(_hsm) = hsm() else { return };
    let shim = Shim::new("login-error");
    let (ctx, slot) = open(&shim, "badpin");
    let session = ctx.open_ro_session(slot).expect("open session");

    shim.set(&[("login_error", "0x32")]);
    match session.login(UserType::User, Some(&pin())) {
        Err(Error::Pkcs11(RvError::DeviceRemoved, Function::Login)) => {}
        other => panic!("expected CKR_DEVICE_REMOVED from C_Login, got {other:?}"),
    }
    shim.set(&[("login_error", "0xA0")]);
    match session.login(UserType::User, Some(&pin())) {
        Err(Error::Pkcs11(RvError::PinIncorrect, Function::Login)) => {}
        other => panic!("expected CKR_PIN_INCORRECT from C_Login, got {other:?}"),
    }
    assert_eq!(
        shim.calls_log()
            .iter()
            .filter(|l| l.starts_with("C_Login"))
            .collect::<Vec<_>>(),
        ["C_Login 0x32", "C_Login 0xa0"]
    );
    // SoftHSM saw neither: not logged in, and no failed try counted against the PIN.
    assert_eq!(
        session.get_session_info().unwrap().session_state(),
        SessionState::RoPublic
    );
    let info = ctx.get_token_info(slot).unwrap();
    assert!(!info.user_pin_count_low() && !info.user_pin_final_try());

    shim.clear();
    // Whereas a wrong PIN that reaches SoftHSM does count (SoftHSM has no try counter: it sets
    // COUNT_LOW after any failure and clears it after a success).
    match session.login(UserType::User, Some(&AuthPin::from("wrong PIN".to_owned()))) {
        Err(Error::Pkcs11(RvError::PinIncorrect, Function::Login)) => {}
        other => panic!("expected SoftHSM's CKR_PIN_INCORRECT, got {other:?}"),
    }
    assert!(ctx.get_token_info(slot).unwrap().user_pin_count_low());
    session
        .login(UserType::User, Some(&pin()))
        .expect("login once the fault is gone");
    assert_eq!(
        session.get_session_info().unwrap().session_state(),
        SessionState::RoUser
    );
    assert!(!ctx.get_token_info(slot).unwrap().user_pin_count_low());
    assert_eq!(shim.calls("C_Login"), 4);
    assert_eq!(
        shim.calls_log()
            .iter()
            .rev()
            .find(|l| l.starts_with("C_Login"))
            .unwrap(),
        "C_Login 0x0"
    );
}

#[test]
fn sign_delay_holds_every_c_sign() {
    let Some(_hsm) = hsm() else { return };
    let shim = Shim::new("sign-delay");
    let (ctx, slot) = open(&shim, "closed");
    let (session, key) = logged_in(&ctx, slot);
    shim.set(&[("sign_delay_ms", "300")]);
    let start = Instant::now();
    let signature = key.sign(&session, b"slow").expect("sign");
    let took = start.elapsed();
    // Two C_Sign calls (length, then signature), each held 300 ms.
    assert!(took >= Duration::from_millis(600), "took {took:?}");
    assert!(key.verifies(b"slow", &signature));
    assert_eq!(shim.calls("C_Sign"), 2, "{:?}", shim.calls_log());
}

#[test]
fn corrupted_signatures_fail_to_verify() {
    let Some(_hsm) = hsm() else { return };
    let shim = Shim::new("sign-corrupt");
    let (ctx, slot) = open(&shim, "conc");
    let (session, key) = logged_in(&ctx, slot);
    assert!(key.verifies(b"m", &key.sign(&session, b"m").unwrap()));
    shim.set(&[("sign_corrupt", "1")]);
    for i in 0..8u8 {
        let message = [b'c', i];
        let signature = key.sign(&session, &message).expect("sign");
        assert_eq!(signature.len(), 64, "length unchanged");
        assert!(
            p256::ecdsa::Signature::from_slice(&signature).is_ok(),
            "still a well-formed r || s"
        );
        assert!(
            !key.verifies(&message, &signature),
            "corrupted signature {i} verifies"
        );
        // Flipping the same bit back gives SoftHSM's signature, which verifies.
        let mut repaired = signature.clone();
        repaired[31] ^= 0x01;
        assert!(key.verifies(&message, &repaired), "repaired signature {i}");
    }
    shim.clear();
    assert!(key.verifies(b"m", &key.sign(&session, b"m").unwrap()));
}

#[test]
fn sign_error_is_returned_and_the_session_can_sign_again() {
    let Some(_hsm) = hsm() else { return };
    let shim = Shim::new("sign-error");
    let (ctx, slot) = open(&shim, "signfail");
    let (session, key) = logged_in(&ctx, slot);
    shim.set(&[("sign_error", "0x30")]);
    match key.sign(&session, b"m") {
        Err(Error::Pkcs11(RvError::DeviceError, Function::Sign)) => {}
        other => panic!("expected CKR_DEVICE_ERROR from C_Sign, got {other:?}"),
    }
    assert_eq!(shim.calls_log().last().unwrap(), "C_Sign 0x30");
    // The failed C_Sign ended the signing operation, as on a real token: no
    // CKR_OPERATION_ACTIVE from the next C_SignInit.
    shim.clear();
    let signature = key.sign(&session, b"m").expect("sign after the fault");
    assert!(key.verifies(b"m", &signature));
}

#[test]
fn initialize_and_finalize_keep_each_copy_s_own_state() {
    let Some(_hsm) = hsm() else { return };
    let (a, b) = (Shim::new("init-a"), Shim::new("init-b"));
    // Both copies answer CKR_OK to their first C_Initialize, whichever reached SoftHSM first.
    let (ctx_a, slot) = open(&a, "reinit");
    let (ctx_b, _) = open(&b, "reinit");
    match ctx_a.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Err(Error::Pkcs11(RvError::CryptokiAlreadyInitialized, Function::Initialize)) => {}
        other => panic!("expected CKR_CRYPTOKI_ALREADY_INITIALIZED, got {other:?}"),
    }
    ctx_a.clone().finalize().expect("C_Finalize");
    // Copy A is finalised; SoftHSM (and copy B) are not.
    match ctx_a.get_token_info(slot) {
        Err(Error::Pkcs11(RvError::CryptokiNotInitialized, Function::GetTokenInfo)) => {}
        other => panic!("expected CKR_CRYPTOKI_NOT_INITIALIZED, got {other:?}"),
    }
    assert_eq!(
        ctx_b.get_token_info(slot).unwrap().label().trim_end(),
        "reinit"
    );
    ctx_a
        .initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .expect("C_Initialize again after C_Finalize");
    assert_eq!(
        ctx_a.get_token_info(slot).unwrap().label().trim_end(),
        "reinit"
    );
    let log: Vec<String> = a
        .calls_log()
        .into_iter()
        .filter(|l| !l.starts_with("C_GetTokenInfo 0x0"))
        .collect();
    assert_eq!(
        log,
        [
            "C_Initialize 0x0",
            "C_Initialize 0x191",
            "C_Finalize 0x0",
            "C_GetTokenInfo 0x190",
            "C_Initialize 0x0",
        ]
    );
    assert_eq!(b.calls("C_Initialize"), 1);
}
