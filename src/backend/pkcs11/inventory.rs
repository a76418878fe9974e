//! What a PKCS#11 module holds, read without logging in: its initialised tokens and the public
//! keys on them (a key pair's public half carries its label and id; private keys stay hidden
//! until a login, so this spends no PIN try). For `dfns-signer keys list --module`.

use std::path::{Path, PathBuf};

use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use super::fault;
use super::module::{load, resolve_path};
use crate::error::BackendError;

/// Characters left as they are in a `pkcs11:` URI attribute value (RFC 7512 `pchar` minus the
/// separators); everything else is percent-encoded.
const VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// One token and its public keys.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TokenInventory {
    /// The PKCS#11 slot id.
    pub slot_id: u64,
    /// `CKA_LABEL` of the token.
    pub label: String,
    /// Its serial number.
    pub serial: String,
    /// Its manufacturer.
    pub manufacturer: String,
    /// Its model.
    pub model: String,
    /// The public keys on it.
    pub keys: Vec<KeyObject>,
}

/// A public key object: the half of a key pair readable without a login.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyObject {
    /// `CKA_LABEL`.
    pub label: String,
    /// `CKA_ID`, hex.
    pub id_hex: String,
    /// `ec`, `ec-edwards`, `rsa` or `other`.
    pub key_type: String,
    /// A `pkcs11:` URI that names the key pair (add `&pin-source=…` to sign with it).
    pub uri: String,
}

/// Lists the tokens of the module at `module_path` (default: as for key URIs — the
/// `DFNS_SIGNER_PKCS11_MODULE` environment variable, then p11-kit's proxy) and their public keys.
pub fn list_tokens(module_path: Option<&Path>) -> Result<Vec<TokenInventory>, BackendError> {
    let path: PathBuf = resolve_path(module_path).map_err(|reason| BackendError::InvalidUri {
        uri: "(no key URI: keys list)".to_owned(),
        reason,
    })?;
    let module = load(&path)?;
    let ctx = module.ctx();
    let name = format!("PKCS#11 module {}", path.display());
    let slots = ctx
        .get_slots_with_token()
        .map_err(|e| fault::device(&name, "listing slots", e))?;
    let mut tokens = Vec::new();
    for slot in slots {
        let Ok(info) = ctx.get_token_info(slot) else {
            continue;
        };
        if !info.token_initialized() {
            continue;
        }
        let label = info.label().trim_end().to_owned();
        let session = ctx
            .open_ro_session(slot)
            .map_err(|e| fault::device(&name, "opening a session", e))?;
        let handles = session
            .find_objects(&[Attribute::Class(ObjectClass::PUBLIC_KEY)])
            .map_err(|e| fault::device(&name, "listing public keys", e))?;
        let mut keys = Vec::new();
        for handle in handles {
            let attributes = session
                .get_attributes(
                    handle,
                    &[
                        AttributeType::Label,
                        AttributeType::Id,
                        AttributeType::KeyType,
                    ],
                )
                .map_err(|e| fault::device(&name, "reading a public key", e))?;
            let (mut key_label, mut id, mut key_type) = (String::new(), Vec::new(), "other");
            for attribute in attributes {
                match attribute {
                    Attribute::Label(l) => key_label = String::from_utf8_lossy(&l).into_owned(),
                    Attribute::Id(i) => id = i,
                    Attribute::KeyType(t) if t == KeyType::EC => key_type = "ec",
                    Attribute::KeyType(t) if t == KeyType::EC_EDWARDS => key_type = "ec-edwards",
                    Attribute::KeyType(t) if t == KeyType::RSA => key_type = "rsa",
                    _ => {}
                }
            }
            let id_pct: String = id.iter().map(|b| format!("%{b:02x}")).collect();
            let uri = format!(
                "pkcs11:token={};object={};id={id_pct}?module-path={}",
                utf8_percent_encode(&label, VALUE),
                utf8_percent_encode(&key_label, VALUE),
                utf8_percent_encode(&path.display().to_string(), VALUE),
            );
            keys.push(KeyObject {
                label: key_label,
                id_hex: hex::encode(&id),
                key_type: key_type.to_owned(),
                uri,
            });
        }
        keys.sort_by(|a, b| a.label.cmp(&b.label));
        tokens.push(TokenInventory {
            slot_id: slot.id(),
            label,
            serial: info.serial_number().trim_end().to_owned(),
            manufacturer: info.manufacturer_id().trim_end().to_owned(),
            model: info.model().trim_end().to_owned(),
            keys,
        });
    }
    Ok(tokens)
}
