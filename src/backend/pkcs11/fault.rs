//! How a PKCS#11 failure is read: which ones a reopen can heal, and how each is told.

use cryptoki::error::{Error as CkError, RvError};

use crate::error::BackendError;

/// Whether reopening (new slot lookup, new session, login, key lookup) can cure `e`.
///
/// These are the codes a module returns when our sessions, login or handles went away behind
/// our back: sessions closed by another caller, the token removed and re-inserted or
/// re-initialised, the module's state reset. Anything else (a bad mechanism, a wrong PIN, a
/// device error) is reported as is: retrying it would not help, and some could lock a device.
pub(crate) fn is_reopenable(e: &CkError) -> bool {
    matches!(
        e,
        CkError::Pkcs11(
            RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::UserNotLoggedIn
                | RvError::DeviceRemoved
                | RvError::TokenNotPresent
                | RvError::ObjectHandleInvalid
                | RvError::KeyHandleInvalid
                | RvError::SlotIdInvalid
                | RvError::TokenNotRecognized,
            _
        )
    )
}

/// Whether `e` says our sessions on the token may no longer exist: closed by the module
/// (`C_CloseAllSessions` by other code) or gone with the token. Such a session must be forgotten,
/// never closed: the module may have given its handle number to a session opened since.
///
/// After the other reopenable errors (logged out, key handle gone) the sessions are alive and
/// are closed normally. `CKR_SLOT_ID_INVALID` and `CKR_TOKEN_NOT_RECOGNIZED` mean the token
/// itself went away, taking its sessions with it.
pub(crate) fn sessions_dead(e: &CkError) -> bool {
    matches!(
        e,
        CkError::Pkcs11(
            RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::DeviceRemoved
                | RvError::TokenNotPresent
                | RvError::SlotIdInvalid
                | RvError::TokenNotRecognized,
            _
        )
    )
}

/// A short, stable description of a cryptoki error: the CKR_ name and the function.
pub(crate) fn describe(e: &CkError) -> String {
    match e {
        CkError::Pkcs11(rv, func) => format!("C_{func:?} returned {}", ckr_name(*rv)),
        other => other.to_string(),
    }
}

/// `SessionHandleInvalid` → `CKR_SESSION_HANDLE_INVALID`, as the PKCS#11 spec and module logs
/// spell it.
fn ckr_name(rv: RvError) -> String {
    let camel = format!("{rv:?}");
    let mut out = String::from("CKR_");
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// A device error for `operation` on `device`.
pub(crate) fn device(device: &str, operation: &str, e: CkError) -> BackendError {
    BackendError::Device {
        device: device.to_owned(),
        operation: operation.to_owned(),
        reason: describe(&e),
        source: Some(Box::new(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cryptoki::context::Function;

    #[test]
    fn names_follow_the_spec_spelling() {
        let e = CkError::Pkcs11(RvError::SessionHandleInvalid, Function::Sign);
        assert_eq!(describe(&e), "C_Sign returned CKR_SESSION_HANDLE_INVALID");
        assert!(is_reopenable(&e));
        assert!(!is_reopenable(&CkError::Pkcs11(
            RvError::PinIncorrect,
            Function::Login
        )));
        assert!(!is_reopenable(&CkError::Pkcs11(
            RvError::MechanismInvalid,
            Function::Sign
        )));
        // Logged out or key gone: reopen, but the sessions are alive and get closed.
        for rv in [RvError::UserNotLoggedIn, RvError::KeyHandleInvalid] {
            let e = CkError::Pkcs11(rv, Function::Sign);
            assert!(is_reopenable(&e) && !sessions_dead(&e), "{rv:?}");
        }
        // A device error: the session answered, so it is alive (and not a reason to reopen).
        let e = CkError::Pkcs11(RvError::DeviceError, Function::Sign);
        assert!(!is_reopenable(&e) && !sessions_dead(&e));
        assert!(sessions_dead(&CkError::Pkcs11(
            RvError::SessionClosed,
            Function::Sign
        )));
    }

    #[test]
    fn device_errors_keep_the_modules_error_as_their_source() {
        let err = device(
            "token \"t\"",
            "signing",
            CkError::Pkcs11(RvError::DeviceError, Function::Sign),
        );
        assert!(err.to_string().contains("CKR_DEVICE_ERROR"), "{err}");
        let source = std::error::Error::source(&err).expect("a source");
        let ck = source.downcast_ref::<CkError>().expect("cryptoki's error");
        assert!(matches!(
            ck,
            CkError::Pkcs11(RvError::DeviceError, Function::Sign)
        ));
    }
}
