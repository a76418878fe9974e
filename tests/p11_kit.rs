//! With no `module-path` and no `DFNS_SIGNER_PKCS11_MODULE`, keys are found through p11-kit's
//! proxy module, which loads the modules the system registered — here SoftHSM, registered by
//! its Debian package (`/usr/share/p11-kit/modules/softhsm2.module`). Its own test binary: it
//! must not load SoftHSM directly, and it clears the module variable for the whole process.
#![cfg(feature = "pkcs11")]

mod common;

use common::softhsm::{hsm, PIN_ENV, USER_PIN};
use dfns_signer::{open, KeyUri};

#[test]
fn keys_are_found_through_p11_kit_without_a_module_path() {
    let Some(_h) = hsm() else { return };
    std::env::remove_var(dfns_signer::pkcs11::MODULE_ENV);
    std::env::set_var(PIN_ENV, USER_PIN);
    assert!(
        common::modules::p11_kit_proxy().is_file(),
        "p11-kit's proxy module is needed: apt-get install p11-kit-modules"
    );
    // RFC 7512 token attributes select the token among everything the proxy shows (SoftHSM's
    // tokens, OpenSC's readers, p11-kit's trust store).
    let uri = format!(
        "pkcs11:manufacturer=SoftHSM%20project;token=algs;object=p256?pin-source=env:{PIN_ENV}"
    );
    let key = open(&KeyUri::parse(&uri).unwrap()).unwrap();
    assert!(
        key.describe().contains("p11-kit-proxy.so"),
        "{}",
        key.describe()
    );
    let sig = key.sign(b"through p11-kit").unwrap();
    key.public_key().verify(b"through p11-kit", &sig).unwrap();

    // A manufacturer that matches nothing lists what is there.
    let uri = format!("pkcs11:manufacturer=Nobody;token=algs;object=p256?pin-source=env:{PIN_ENV}");
    let err = open(&KeyUri::parse(&uri).unwrap()).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("manufacturer \"Nobody\""), "{text}");
    assert!(text.contains("token \"algs\""), "{text}");
}
