//! YubiKey PIV backend: keys that live in a YubiKey's PIV slots, through PC/SC (`yubikey` crate).
//!
//! ```text
//! piv:slot=9a?serial=12345678&reader=Yubico&pin-source=env:PIV_PIN&allow-last-pin-try=true&touch-timeout=15
//! ```
//!
//! - [`list_devices`] shows the YubiKeys plugged in (serial, firmware, reader).
//! - [`PivKey::builder`] (or [`open_uri`]) opens a slot as a [`KeyBackend`]: ECDSA P-256, RSA-2048,
//!   Ed25519 on firmware 5.7+.
//! - [`PivDevice`] is one card, owned behind a mutex; it also generates keys with a self-signed
//!   certificate ([`PivDevice::generate_key`]) and reads attestations ([`PivDevice::attest`]).
//!
//! PIN: the retry counter is read before every VERIFY; the last try is kept unless
//! `allow-last-pin-try=true`; a rejected PIN is never presented again by the same handle; PINs
//! that are not 6–8 characters are refused before any try is spent.
//!
//! Touch: when the slot's touch policy asks for it, the touch notifier is called before signing,
//! and a signature whose touch does not come within the touch timeout fails with
//! [`BackendError::TouchTimeout`]. The clock starts once the caller holds the card and the PIN
//! is verified; a real YubiKey also gives up by itself after about 15 s (same error).
//!
//! The PIN is read from its source (which may be a terminal prompt) before the card is taken,
//! so other callers do not wait behind a person typing.

mod attestation;
mod device;
mod key;
mod keygen;
mod policy;
mod setup;
mod slot;

use std::sync::Arc;

pub use attestation::{
    verify_attestation, verify_exported_attestation, AttestationEvidence, AttestationRoots,
    AttestedKey, FormFactor, YUBICO_PIV_ROOT_URL,
};
pub use device::{
    list_devices, DeviceInfo, DeviceOptions, DeviceSelector, ManagementKey, PivDevice,
    TouchNotifier, TouchRequest,
};
pub use key::{PivKey, PivKeyBuilder};
pub use keygen::{parse_pin_policy, parse_touch_policy, GeneratedKey, KeyGeneration};
pub use policy::{PinPolicy, TouchPolicy};
pub use setup::{FactoryDefaults, NewManagementKey, FACTORY_PIN, FACTORY_PUK};
pub use slot::Slot;

use super::{BackendError, KeyBackend, PinSource, UriAttributes};

const PATH_ATTRS: &[&str] = &["slot"];
const QUERY_ATTRS: &[&str] = &[
    "serial",
    "reader",
    "pin-source",
    "allow-last-pin-try",
    "touch-timeout",
];

/// Reads a `piv:` URI into a builder (without touching any device).
pub fn builder_from_uri(attrs: &UriAttributes) -> Result<PivKeyBuilder, BackendError> {
    attrs.expect_only(PATH_ATTRS, QUERY_ATTRS)?;
    let slot_text = attrs
        .path_attr("slot")
        .ok_or_else(|| attrs.invalid("missing `slot=` (9a, 9c, 9d, 9e or a retired slot 82–95)"))?;
    let slot: Slot = slot_text.parse().map_err(|_| {
        attrs.invalid(format!(
            "slot `{slot_text}`: expected 9a, 9c, 9d, 9e or a retired slot 82–95"
        ))
    })?;
    let mut builder = PivKey::builder(slot);
    if let Some(serial) = attrs.query_attr("serial") {
        let serial = serial.parse::<u32>().map_err(|_| {
            attrs.invalid(format!(
                "serial `{serial}` is not a YubiKey serial number (decimal)"
            ))
        })?;
        builder = builder.serial(serial);
    }
    if let Some(reader) = attrs.query_attr("reader") {
        builder = builder.reader(reader);
    }
    if let Some(source) = attrs.query_attr("pin-source") {
        let source = PinSource::parse(source).map_err(|e| attrs.invalid(e.to_string()))?;
        builder = builder.pin_source(source);
    }
    if let Some(allow) = attrs.query_attr("allow-last-pin-try") {
        let allow = match allow {
            "true" | "yes" | "1" => true,
            "false" | "no" | "0" => false,
            other => {
                return Err(attrs.invalid(format!(
                    "allow-last-pin-try=`{other}`: expected true or false"
                )))
            }
        };
        builder = builder.allow_last_pin_try(allow);
    }
    if let Some(timeout) = attrs.query_attr("touch-timeout") {
        let timeout = key::parse_timeout(timeout).ok_or_else(|| {
            attrs.invalid(format!(
                "touch-timeout=`{timeout}`: expected whole seconds from 1 to 600"
            ))
        })?;
        builder = builder.touch_timeout(timeout);
    }
    Ok(builder)
}

/// Opens the key a `piv:` URI names: finds the YubiKey, reads the slot's key, verifies the PIN.
pub fn open_uri(attrs: &UriAttributes) -> Result<Arc<dyn KeyBackend>, BackendError> {
    let key = builder_from_uri(attrs)?.open()?;
    Ok(Arc::new(key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::KeyUri;

    fn attrs(uri: &str) -> UriAttributes {
        match KeyUri::parse(uri).unwrap() {
            KeyUri::Piv(a) => a,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn uri_attributes_are_checked_before_any_device_access() {
        let b = builder_from_uri(&attrs(
            "piv:slot=9c?serial=123&pin-source=env:X&allow-last-pin-try=true&touch-timeout=20",
        ))
        .unwrap();
        let text = format!("{b:?}");
        assert!(
            text.contains("\"9c\"") && text.contains("123") && text.contains("env:X"),
            "{text}"
        );
        for (uri, needle) in [
            ("piv:slot=9b", "slot `9b`"),
            ("piv:?serial=1", "missing `slot=`"),
            ("piv:slot=9a?serial=abc", "serial `abc`"),
            ("piv:slot=9a?allow-last-pin-try=maybe", "allow-last-pin-try"),
            ("piv:slot=9a?touch-timeout=0", "touch-timeout"),
            ("piv:slot=9a?pin-source=123456", "pin-source"),
            ("piv:slot=9a;objct=x", "unknown attribute `objct`"),
        ] {
            let err = builder_from_uri(&attrs(uri)).unwrap_err();
            assert!(
                matches!(err, BackendError::InvalidUri { .. }),
                "{uri}: {err:?}"
            );
            assert!(err.to_string().contains(needle), "{uri}: {err}");
        }
        // A PIN written into the URI is refused before any attribute is looked at.
        let err = crate::backend::KeyUri::parse("piv:slot=9a?pin=1234").unwrap_err();
        assert!(err.to_string().contains("PIN inside a URI"), "{err}");
    }

    #[test]
    fn policy_names_parse() {
        assert_eq!(parse_touch_policy("Always").unwrap(), TouchPolicy::Always);
        assert_eq!(parse_touch_policy("cached").unwrap(), TouchPolicy::Cached);
        assert_eq!(parse_pin_policy("once").unwrap(), PinPolicy::Once);
        assert!(parse_pin_policy("sometimes")
            .unwrap_err()
            .to_string()
            .contains("never, once"));
        assert!(parse_touch_policy("").is_err());
    }

    #[test]
    fn management_key_parses_hex_and_never_prints() {
        let key =
            ManagementKey::from_hex("0102030405060708010203040506070801020304050607ff").unwrap();
        assert_eq!(format!("{key:?}"), "ManagementKey([REDACTED])");
        assert!(ManagementKey::from_hex("0102").is_err());
        let err = ManagementKey::from_hex("zz").unwrap_err().to_string();
        assert!(err.contains("hex"), "{err}");
    }
}
