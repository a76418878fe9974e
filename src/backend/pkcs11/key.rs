//! Finding a private key on a token by label and/or id, and reading what we need from it: its
//! algorithm, its public half (from the matching public key object), and how it is protected.

use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;

use super::curves::{ec_algorithm, ED25519_NAME_PARAMS, P256_PARAMS, SECP256K1_PARAMS};
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
#[non_exhaustive]
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
    /// `CKA_ALWAYS_AUTHENTICATE`: the token wants the PIN again (a context-specific login)
    /// right before every signature.
    pub(crate) pin_per_signature: bool,
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
        .map_err(|e| fault::device(token, "finding the private key", e))?;
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
            source: None,
        }),
    }
}

/// Reads a private key's algorithm, public key and protection.
pub(crate) fn read(
    session: &Session,
    handle: ObjectHandle,
    token: &str,
) -> Result<KeyInfo, BackendError> {
    let dev = |op: &str, e: cryptoki::error::Error| fault::device(token, op, e);
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
    let public_key = match key_type {
        Some(t) if t == KeyType::EC || t == KeyType::EC_EDWARDS => {
            let params = single_bytes(session, handle, AttributeType::EcParams)
                .map_err(|e| dev("reading CKA_EC_PARAMS", e))?
                .ok_or_else(|| unsupported(&name, token, "the private key has no CKA_EC_PARAMS"))?;
            let alg = ec_algorithm(t == KeyType::EC_EDWARDS, &params)
                .map_err(|why| unsupported(&name, token, &why))?;
            ec_public_key(session, handle, alg, &params, &id, &label, token)?.ok_or_else(|| {
                BackendError::KeyLoad {
                    what: format!("key {name} on {token}"),
                    reason: "the token shows no public key for it (no public key object or certificate \
                             with the same id and curve, and no CKA_EC_POINT on the private key): the \
                             public key is needed to register the credential; generate the pair on the \
                             token, or import the public key or a certificate with the same CKA_ID"
                        .into(),
                }
            })?
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
        pin_per_signature,
        label,
        id,
    })
}

fn unsupported(name: &str, token: &str, why: &str) -> BackendError {
    BackendError::UnsupportedKey(format!("key {name} on {token}: {why}"))
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

/// The public half of an EC private key, from wherever the token shows it, in this order:
///
/// 1. the public key object paired with it: same id (or, for keys without an id, same label),
///    whose `CKA_EC_PARAMS` name the same curve (in whatever encoding: a module may give the
///    private key explicit parameters and the public key the OID);
/// 2. `CKA_EC_POINT` on the private key object itself (some modules put it there);
/// 3. the certificate with the same id (PIV modules — ykcs11, OpenSC — show a slot's public key
///    only through its certificate on some cards).
fn ec_public_key(
    session: &Session,
    private: ObjectHandle,
    alg: Algorithm,
    params: &[u8],
    id: &[u8],
    label: &str,
    token: &str,
) -> Result<Option<PublicKey>, BackendError> {
    let edwards = alg == Algorithm::Ed25519;
    let from_point = |point: &[u8]| {
        let point = unwrap_octet_string(point);
        match alg {
            Algorithm::Ed25519 => PublicKey::from_ed25519_bytes(point),
            _ => PublicKey::from_ec_point(alg, point),
        }
    };
    let mut template = vec![Attribute::Class(ObjectClass::PUBLIC_KEY)];
    if id.is_empty() {
        template.push(Attribute::Label(label.as_bytes().to_vec()));
    } else {
        template.push(Attribute::Id(id.to_vec()));
    }
    let handles = session
        .find_objects(&template)
        .map_err(|e| fault::device(token, "finding the public key", e))?;
    for h in handles {
        // Another curve under the same id is not this key's pair.
        let same_curve = match single_bytes(session, h, AttributeType::EcParams) {
            Ok(Some(p)) => p == params || ec_algorithm(edwards, &p) == Ok(alg),
            _ => false,
        };
        if !same_curve {
            continue;
        }
        if let Some(point) = single_bytes(session, h, AttributeType::EcPoint)
            .map_err(|e| fault::device(token, "reading CKA_EC_POINT", e))?
        {
            return from_point(&point).map(Some);
        }
    }
    // Not every module knows CKA_EC_POINT on a private key: an error here means "not there".
    if let Ok(Some(point)) = single_bytes(session, private, AttributeType::EcPoint) {
        return from_point(&point).map(Some);
    }
    certificate_public_key(session, id, alg, token)
}

/// The public key object `sel` names, read without a login (public objects are readable in any
/// session): `Ok(None)` when the token shows none (the pair's public half may live only on the
/// private key or in a certificate). Used by the readiness check, which must not log in.
pub(crate) fn public_key_object(
    session: &Session,
    sel: &KeySelector,
    alg: Algorithm,
    token: &str,
) -> Result<Option<PublicKey>, BackendError> {
    let handles = session
        .find_objects(&sel.template(ObjectClass::PUBLIC_KEY))
        .map_err(|e| fault::device(token, "finding the public key", e))?;
    let Some(&handle) = handles.first() else {
        return Ok(None);
    };
    if alg == Algorithm::RsaPkcs1Sha256 {
        let Some((n, e)) = rsa_components(session, handle)
            .map_err(|e| fault::device(token, "reading the RSA modulus", e))?
        else {
            return Ok(None);
        };
        return PublicKey::from_rsa_components(&n, &e).map(Some);
    }
    let Some(point) = single_bytes(session, handle, AttributeType::EcPoint)
        .map_err(|e| fault::device(token, "reading CKA_EC_POINT", e))?
    else {
        return Ok(None);
    };
    let point = unwrap_octet_string(&point);
    match alg {
        Algorithm::Ed25519 => PublicKey::from_ed25519_bytes(point).map(Some),
        _ => PublicKey::from_ec_point(alg, point).map(Some),
    }
}

/// The public key of the certificate with this id, when there is one for `alg`.
fn certificate_public_key(
    session: &Session,
    id: &[u8],
    alg: Algorithm,
    token: &str,
) -> Result<Option<PublicKey>, BackendError> {
    if id.is_empty() {
        return Ok(None);
    }
    let handles = session
        .find_objects(&[
            Attribute::Class(ObjectClass::CERTIFICATE),
            Attribute::Id(id.to_vec()),
        ])
        .map_err(|e| fault::device(token, "finding the certificate", e))?;
    for h in handles {
        let value = session
            .get_attributes(h, &[AttributeType::Value])
            .map_err(|e| fault::device(token, "reading the certificate", e))?
            .into_iter()
            .find_map(|a| match a {
                Attribute::Value(v) => Some(v),
                _ => None,
            });
        let Some(spki) = value.as_deref().and_then(super::curves::certificate_spki) else {
            continue;
        };
        match PublicKey::from_spki_der(spki) {
            Ok(key) if key.algorithm() == alg => return Ok(Some(key)),
            _ => continue,
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
}
