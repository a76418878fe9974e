//! Finding a private key on a token by label and/or id, and reading what we need from it: its
//! algorithm, its public half (from the matching public key object), and how it is protected.

use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;

use super::fault;
use crate::backend::{Algorithm, PublicKey};
use crate::error::BackendError;

/// Which key to use: by label (`object=`), by id (`id=`), or both.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct KeySelector {
    pub(crate) label: Option<String>,
    pub(crate) id: Option<Vec<u8>>,
}

impl KeySelector {
    pub(crate) fn wanted(&self) -> String {
        match (&self.label, &self.id) {
            (Some(l), Some(id)) => format!("\"{l}\" (id {})", hex::encode(id)),
            (Some(l), None) => format!("\"{l}\""),
            (None, Some(id)) => format!("with id {}", hex::encode(id)),
            (None, None) => "(none named)".to_owned(),
        }
    }

    fn template(&self, class: ObjectClass) -> Vec<Attribute> {
        let mut t = vec![Attribute::Class(class)];
        if let Some(l) = &self.label {
            t.push(Attribute::Label(l.as_bytes().to_vec()));
        }
        if let Some(id) = &self.id {
            t.push(Attribute::Id(id.clone()));
        }
        t
    }
}

/// How a private key is protected and where it came from, as the token reports it.
///
/// For the provenance attributes (`local`, `never_extractable`, `always_sensitive`), `None`
/// means the token did not report it. `private`, `sensitive` and `extractable` are always set: a
/// token that does not report them is taken at its worst (usable without login, not sensitive,
/// extractable).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyProvenance {
    /// `CKA_PRIVATE`: only a logged-in user can use the key (`false` if not reported). A private
    /// key with `CKA_PRIVATE` false signs for anyone who can open a session on the token.
    pub private: bool,
    /// `CKA_SENSITIVE`: the private value cannot be read in the clear (`false` if not reported).
    pub sensitive: bool,
    /// `CKA_EXTRACTABLE`: the key may be exported (wrapped) off the token (`true` if not
    /// reported).
    pub extractable: bool,
    /// `CKA_LOCAL`: the key was generated on the token (not imported).
    pub local: Option<bool>,
    /// `CKA_NEVER_EXTRACTABLE`: the key has never been extractable.
    pub never_extractable: Option<bool>,
    /// `CKA_ALWAYS_SENSITIVE`: the key has always been sensitive.
    pub always_sensitive: Option<bool>,
}

impl KeyProvenance {
    /// Whether the token vouches that the key was born on it and its private half never left:
    /// generated on the token, always sensitive, never extractable.
    pub fn never_left_the_token(&self) -> bool {
        self.local == Some(true)
            && self.never_extractable == Some(true)
            && self.always_sensitive == Some(true)
    }

    /// Whether the key is protected now: usable only after a login, sensitive, not extractable.
    pub fn is_protected(&self) -> bool {
        self.private && self.sensitive && !self.extractable
    }
}

/// What we know of a private key once read.
#[derive(Debug, Clone)]
pub(crate) struct KeyInfo {
    pub(crate) public_key: PublicKey,
    pub(crate) provenance: KeyProvenance,
    pub(crate) label: String,
    pub(crate) id: Vec<u8>,
}

impl KeyInfo {
    pub(crate) fn name(&self) -> String {
        key_name(&self.label, &self.id)
    }
}

/// How errors and logs name a key on a token: `"label" (id 01)`.
fn key_name(label: &str, id: &[u8]) -> String {
    format!("\"{label}\" (id {})", hex::encode(id))
}

/// DER of the curve OIDs Dfns takes, as CKA_EC_PARAMS holds them.
const P256_PARAMS: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const SECP256K1_PARAMS: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x0a];
/// Ed25519 as an OID (1.3.101.112), and as the PrintableString "edwards25519" that PKCS#11
/// 2.40-era modules (SoftHSM 2.6, OpenSC) use.
pub(crate) const ED25519_OID_PARAMS: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];
pub(crate) const ED25519_NAME_PARAMS: &[u8] = b"\x13\x0cedwards25519";

/// The CKA_EC_PARAMS for an EC algorithm (Ed25519: the printable name SoftHSM 2.6 expects).
pub(crate) fn ec_params(alg: Algorithm) -> Option<&'static [u8]> {
    match alg {
        Algorithm::EcdsaP256 => Some(P256_PARAMS),
        Algorithm::EcdsaSecp256k1 => Some(SECP256K1_PARAMS),
        Algorithm::Ed25519 => Some(ED25519_NAME_PARAMS),
        _ => None,
    }
}

/// Lists the private keys on the token, for "not found" errors.
fn list_private_keys(session: &Session) -> Vec<String> {
    let Ok(handles) = session.find_objects(&[Attribute::Class(ObjectClass::PRIVATE_KEY)]) else {
        return Vec::new();
    };
    handles
        .into_iter()
        .filter_map(|h| {
            let attrs = session
                .get_attributes(h, &[AttributeType::Label, AttributeType::Id])
                .ok()?;
            let (label, id) = label_and_id(&attrs);
            Some(key_name(&label, &id))
        })
        .collect()
}

fn label_and_id(attrs: &[Attribute]) -> (String, Vec<u8>) {
    let mut label = String::new();
    let mut id = Vec::new();
    for a in attrs {
        match a {
            Attribute::Label(l) => label = String::from_utf8_lossy(l).into_owned(),
            Attribute::Id(i) => id = i.clone(),
            _ => {}
        }
    }
    (label, id)
}

/// Finds the one private key `sel` names on the token the session is logged in to.
pub(crate) fn find_private(
    session: &Session,
    sel: &KeySelector,
    token: &str,
) -> Result<ObjectHandle, BackendError> {
    let handles = session
        .find_objects(&sel.template(ObjectClass::PRIVATE_KEY))
        .map_err(|e| fault::device(token, "finding the private key", &e))?;
    match handles.as_slice() {
        [one] => Ok(*one),
        [] => Err(BackendError::KeyNotFound {
            wanted: sel.wanted(),
            device: token.to_owned(),
            found: list_private_keys(session),
        }),
        many => Err(BackendError::Device {
            device: token.to_owned(),
            operation: "finding the private key".into(),
            reason: format!(
                "{} private keys match {}; name one by both `object=` and `id=` (keys: {})",
                many.len(),
                sel.wanted(),
                list_private_keys(session).join(", ")
            ),
        }),
    }
}

/// Reads a private key's algorithm, public key and protection.
pub(crate) fn read(
    session: &Session,
    handle: ObjectHandle,
    token: &str,
) -> Result<KeyInfo, BackendError> {
    let dev = |op: &str, e: cryptoki::error::Error| fault::device(token, op, &e);
    let attrs = session
        .get_attributes(
            handle,
            &[
                AttributeType::KeyType,
                AttributeType::Label,
                AttributeType::Id,
                AttributeType::Sign,
                AttributeType::Private,
                AttributeType::Sensitive,
                AttributeType::Extractable,
                AttributeType::Local,
                AttributeType::NeverExtractable,
                AttributeType::AlwaysSensitive,
                AttributeType::AlwaysAuthenticate,
            ],
        )
        .map_err(|e| dev("reading the private key's attributes", e))?;
    let (label, id) = label_and_id(&attrs);
    let name = key_name(&label, &id);
    let mut key_type = None;
    let mut can_sign = None;
    let mut pin_per_signature = false;
    let mut provenance = KeyProvenance {
        // A token that does not report CKA_PRIVATE / CKA_SENSITIVE / CKA_EXTRACTABLE is taken
        // at its worst.
        private: false,
        sensitive: false,
        extractable: true,
        local: None,
        never_extractable: None,
        always_sensitive: None,
    };
    for a in &attrs {
        match a {
            Attribute::KeyType(t) => key_type = Some(*t),
            Attribute::Sign(b) => can_sign = Some(*b),
            Attribute::AlwaysAuthenticate(b) => pin_per_signature = *b,
            Attribute::Private(b) => provenance.private = *b,
            Attribute::Sensitive(b) => provenance.sensitive = *b,
            Attribute::Extractable(b) => provenance.extractable = *b,
            Attribute::Local(b) => provenance.local = Some(*b),
            Attribute::NeverExtractable(b) => provenance.never_extractable = Some(*b),
            Attribute::AlwaysSensitive(b) => provenance.always_sensitive = Some(*b),
            _ => {}
        }
    }
    if can_sign == Some(false) {
        return Err(BackendError::UnsupportedKey(format!(
            "key {name} on {token} is not allowed to sign (CKA_SIGN is false)"
        )));
    }
    if pin_per_signature {
        // Such a key needs a context-specific login, i.e. the PIN again, before every
        // signature: one wrong PIN per signature would lock the token. Not supported.
        return Err(BackendError::UnsupportedKey(format!(
            "key {name} on {token} requires the PIN before every signature (CKA_ALWAYS_AUTHENTICATE); \
             use a key without that policy"
        )));
    }
    let public_key = match key_type {
        Some(t) if t == KeyType::EC || t == KeyType::EC_EDWARDS => {
            let params = single_bytes(session, handle, AttributeType::EcParams)
                .map_err(|e| dev("reading CKA_EC_PARAMS", e))?
                .ok_or_else(|| unsupported(&name, token, "the private key has no CKA_EC_PARAMS"))?;
            let alg = ec_algorithm(t == KeyType::EC_EDWARDS, &params)
                .map_err(|why| unsupported(&name, token, &why))?;
            let point = public_ec_point(session, &params, &id, &label, token)?
                .ok_or_else(|| BackendError::KeyLoad {
                    what: format!("key {name} on {token}"),
                    reason: "no public key object with the same id and curve: the public key is needed to \
                             register the credential; generate the pair on the token, or import the public key \
                             with the same CKA_ID"
                        .into(),
                })?;
            let point = unwrap_octet_string(&point);
            match alg {
                Algorithm::Ed25519 => PublicKey::from_ed25519_bytes(point)?,
                _ => PublicKey::from_ec_point(alg, point)?,
            }
        }
        Some(t) if t == KeyType::RSA => {
            let (n, e) = rsa_components(session, handle)
                .map_err(|e| dev("reading the RSA modulus", e))?
                .ok_or_else(|| {
                    unsupported(&name, token, "the RSA key reports no modulus or exponent")
                })?;
            PublicKey::from_rsa_components(&n, &e)?
        }
        Some(t) => {
            let why =
                format!("key type {t} is not accepted (use EC P-256, secp256k1, Ed25519, RSA)");
            return Err(unsupported(&name, token, &why));
        }
        None => {
            return Err(unsupported(
                &name,
                token,
                "the token does not report its key type",
            ))
        }
    };
    Ok(KeyInfo {
        public_key,
        provenance,
        label,
        id,
    })
}

fn unsupported(name: &str, token: &str, why: &str) -> BackendError {
    BackendError::UnsupportedKey(format!("key {name} on {token}: {why}"))
}

/// The algorithm a CKA_EC_PARAMS names, or why it is refused.
pub(crate) fn ec_algorithm(edwards: bool, params: &[u8]) -> Result<Algorithm, String> {
    match params {
        P256_PARAMS if !edwards => Ok(Algorithm::EcdsaP256),
        SECP256K1_PARAMS if !edwards => Ok(Algorithm::EcdsaSecp256k1),
        ED25519_OID_PARAMS | ED25519_NAME_PARAMS if edwards => Ok(Algorithm::Ed25519),
        other => {
            let named = spki::ObjectIdentifier::from_bytes(other.get(2..).unwrap_or_default())
                .map(|o| format!("OID {o}"))
                .unwrap_or_else(|_| format!("parameters {}", hex::encode(other)));
            Err(format!(
                "curve {named} is not accepted for Dfns Key credentials (use P-256, secp256k1 or Ed25519)"
            ))
        }
    }
}

fn single_bytes(
    session: &Session,
    handle: ObjectHandle,
    which: AttributeType,
) -> Result<Option<Vec<u8>>, cryptoki::error::Error> {
    Ok(session
        .get_attributes(handle, &[which])?
        .into_iter()
        .find_map(|a| match a {
            Attribute::EcParams(v) | Attribute::EcPoint(v) => Some(v),
            _ => None,
        }))
}

/// An RSA modulus and public exponent, big-endian.
type RsaParts = (Vec<u8>, Vec<u8>);

fn rsa_components(
    session: &Session,
    handle: ObjectHandle,
) -> Result<Option<RsaParts>, cryptoki::error::Error> {
    let attrs = session.get_attributes(
        handle,
        &[AttributeType::Modulus, AttributeType::PublicExponent],
    )?;
    let mut n = None;
    let mut e = None;
    for a in attrs {
        match a {
            Attribute::Modulus(v) => n = Some(v),
            Attribute::PublicExponent(v) => e = Some(v),
            _ => {}
        }
    }
    Ok(n.zip(e))
}

/// The CKA_EC_POINT of the public key object paired with the private key: same id (or, for keys
/// without an id, same label) and same curve.
fn public_ec_point(
    session: &Session,
    params: &[u8],
    id: &[u8],
    label: &str,
    token: &str,
) -> Result<Option<Vec<u8>>, BackendError> {
    let mut template = vec![
        Attribute::Class(ObjectClass::PUBLIC_KEY),
        Attribute::EcParams(params.to_vec()),
    ];
    if id.is_empty() {
        template.push(Attribute::Label(label.as_bytes().to_vec()));
    } else {
        template.push(Attribute::Id(id.to_vec()));
    }
    let handles = session
        .find_objects(&template)
        .map_err(|e| fault::device(token, "finding the public key", &e))?;
    for h in handles {
        if let Some(point) = single_bytes(session, h, AttributeType::EcPoint)
            .map_err(|e| fault::device(token, "reading CKA_EC_POINT", &e))?
        {
            return Ok(Some(point));
        }
    }
    Ok(None)
}

/// CKA_EC_POINT is specified as a DER OCTET STRING around the point; some modules hand back the
/// bare point. Unwrap only an OCTET STRING holding exactly what we accept — an Ed25519 key
/// (32 bytes) or an uncompressed 256-bit point (65 bytes) — and nothing else: a bare point can
/// start with bytes that look like an OCTET STRING header (a bare uncompressed point always
/// starts with 0x04; an Ed25519 key can).
pub(crate) fn unwrap_octet_string(bytes: &[u8]) -> &[u8] {
    let inner = match bytes {
        [0x04, len, rest @ ..] if rest.len() == *len as usize => rest,
        // Long form, which DER does not use for these lengths but lax encoders do.
        [0x04, 0x81, len, rest @ ..] if rest.len() == *len as usize => rest,
        _ => return bytes,
    };
    match inner.len() {
        32 | 65 => inner,
        _ => bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ec_point_unwrapping() {
        let mut point = vec![0x04];
        point.extend([0x3f; 64]); // second byte 63: looks like a length, must stay bare
        assert_eq!(unwrap_octet_string(&point), &point[..]);
        let mut wrapped = vec![0x04, 65];
        wrapped.extend(&point);
        assert_eq!(unwrap_octet_string(&wrapped), &point[..]);
        let ed = [7u8; 32];
        let mut ed_wrapped = vec![0x04, 32];
        ed_wrapped.extend(ed);
        assert_eq!(unwrap_octet_string(&ed_wrapped), &ed[..]);
        assert_eq!(unwrap_octet_string(&ed), &ed[..]);
        let mut ed_lax = vec![0x04, 0x81, 32];
        ed_lax.extend(ed);
        assert_eq!(unwrap_octet_string(&ed_lax), &ed[..]);
    }

    #[test]
    fn bare_ed25519_keys_that_look_wrapped_stay_whole() {
        // A bare 32-byte Ed25519 key whose first bytes are `04 1e`: an OCTET STRING header
        // announcing the 30 bytes that follow. It is the key itself, not a 30-byte key.
        let mut bare = vec![0x04, 0x1e];
        bare.extend((0..30u8).map(|i| i.wrapping_mul(37).wrapping_add(11)));
        assert_eq!(bare.len(), 32);
        assert_eq!(unwrap_octet_string(&bare), &bare[..]);
        // Another that looks like a long-form header (`04 81 1d` + 29 bytes).
        let mut long_form = vec![0x04, 0x81, 0x1d];
        long_form.extend([0x42; 29]);
        assert_eq!(unwrap_octet_string(&long_form), &long_form[..]);
        // And a bare 65-byte point whose second byte is 0x3f = 63, the length of the rest.
        let mut point = vec![0x04, 0x3f];
        point.extend([0x3f; 63]);
        assert_eq!(unwrap_octet_string(&point), &point[..]);
    }

    #[test]
    fn curves_dfns_takes_and_refuses() {
        assert_eq!(ec_algorithm(false, P256_PARAMS), Ok(Algorithm::EcdsaP256));
        assert_eq!(
            ec_algorithm(false, SECP256K1_PARAMS),
            Ok(Algorithm::EcdsaSecp256k1)
        );
        assert_eq!(
            ec_algorithm(true, ED25519_NAME_PARAMS),
            Ok(Algorithm::Ed25519)
        );
        assert_eq!(
            ec_algorithm(true, ED25519_OID_PARAMS),
            Ok(Algorithm::Ed25519)
        );
        // P-384 (1.3.132.0.34)
        let err = ec_algorithm(false, &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22]).unwrap_err();
        assert!(err.contains("1.3.132.0.34"), "{err}");
        // Ed448 as a name
        assert!(ec_algorithm(true, b"\x13\x0aedwards448").is_err());
        assert!(ec_algorithm(true, P256_PARAMS).is_err());
    }
}
