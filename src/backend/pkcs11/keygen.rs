//! Generating a credential key pair on the token, protected as [`Pkcs11Key`](super::Pkcs11Key)
//! requires: private, sensitive, never extractable, allowed to sign.

use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, ObjectClass};
use cryptoki::session::Session;

use super::config::Pkcs11Config;
use super::curves::ED25519_OID_PARAMS;
use super::fault;
use super::key;
use super::token::Login;
use crate::backend::{Algorithm, PublicKey};
use crate::error::BackendError;

/// Generates a key pair on the token `config` names, labelled `label` with id `id`, and returns
/// its public key. The module, token and PIN come from `config` (its key label and id are not
/// used). Refuses to create a second key with the same label or id on the token.
pub fn generate_key(
    config: &Pkcs11Config,
    algorithm: Algorithm,
    label: &str,
    id: &[u8],
) -> Result<PublicKey, BackendError> {
    if label.is_empty() || id.is_empty() {
        return Err(BackendError::KeyLoad {
            what: "new PKCS#11 key".into(),
            reason: "give a non-empty label and id, so the key can be named later".into(),
        });
    }
    let (module, token, pin) = super::connect(config)?;
    let name = token.name();
    let session = module
        .ctx()
        .open_rw_session(token.slot)
        .map_err(|e| fault::device(&name, "opening a read-write session", e))?;
    Login::new(pin, config.allow_last_pin_try).ensure(&module, &session, &token)?;
    refuse_duplicates(&session, label, id, &name)?;

    let common_pub = vec![
        Attribute::Token(true),
        Attribute::Private(false),
        Attribute::Verify(true),
        Attribute::Label(label.as_bytes().to_vec()),
        Attribute::Id(id.to_vec()),
    ];
    let private = vec![
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Sign(true),
        Attribute::Label(label.as_bytes().to_vec()),
        Attribute::Id(id.to_vec()),
    ];
    let generate = |mechanism: Mechanism<'_>, extra: Vec<Attribute>| {
        let mut public = common_pub.clone();
        public.extend(extra);
        session.generate_key_pair(&mechanism, &public, &private)
    };
    let result = match algorithm {
        Algorithm::EcdsaP256 | Algorithm::EcdsaSecp256k1 => {
            let params = key::ec_params(algorithm).unwrap_or_default().to_vec();
            generate(Mechanism::EccKeyPairGen, vec![Attribute::EcParams(params)])
        }
        Algorithm::Ed25519 => {
            // PKCS#11 2.40-era modules (SoftHSM 2.6) want the curve's printable name, 3.0 ones
            // may want the OID: try the name, then the OID.
            let by_name = key::ec_params(algorithm).unwrap_or_default().to_vec();
            match generate(
                Mechanism::EccEdwardsKeyPairGen,
                vec![Attribute::EcParams(by_name)],
            ) {
                Err(CkError::Pkcs11(
                    RvError::CurveNotSupported
                    | RvError::DomainParamsInvalid
                    | RvError::AttributeValueInvalid,
                    _,
                )) => generate(
                    Mechanism::EccEdwardsKeyPairGen,
                    vec![Attribute::EcParams(ED25519_OID_PARAMS.to_vec())],
                ),
                other => other,
            }
        }
        Algorithm::RsaPkcs1Sha256 => generate(
            Mechanism::RsaPkcsKeyPairGen,
            vec![
                Attribute::ModulusBits(2048.into()),
                Attribute::PublicExponent(vec![0x01, 0x00, 0x01]),
            ],
        ),
    };
    let (_public, private) = result
        .map_err(|e| fault::device(&name, &format!("generating a {algorithm} key pair"), e))?;
    Ok(key::read(&session, private, &name)?.public_key)
}

fn refuse_duplicates(
    session: &Session,
    label: &str,
    id: &[u8],
    token: &str,
) -> Result<(), BackendError> {
    for template in [
        vec![Attribute::Label(label.as_bytes().to_vec())],
        vec![Attribute::Id(id.to_vec())],
    ] {
        let mut t = template;
        t.push(Attribute::Class(ObjectClass::PRIVATE_KEY));
        let found = session
            .find_objects(&t)
            .map_err(|e| fault::device(token, "looking for existing keys", e))?;
        if !found.is_empty() {
            return Err(BackendError::KeyLoad {
                what: format!("new key \"{label}\" (id {}) on {token}", hex::encode(id)),
                reason: "a private key with this label or id already exists; choose another label and id, \
                         or delete the old key first"
                    .into(),
            });
        }
    }
    Ok(())
}

/// [`generate_key`] for a key a `pkcs11:` URI names: the URI must give both `object=` (the new
/// key's label) and `id=`; module, token and PIN source come from the URI as for
/// [`open_uri`](super::open_uri). Afterwards the same URI opens the new key.
pub fn generate_key_for_uri(
    attrs: &crate::backend::UriAttributes,
    algorithm: Algorithm,
) -> Result<PublicKey, BackendError> {
    let config = Pkcs11Config::from_uri(attrs)?;
    let (Some(label), Some(id)) = (&config.key.label, &config.key.id) else {
        return Err(attrs
            .invalid("to generate a key, give both its label (`object=`) and its id (`id=%01…`)"));
    };
    generate_key(&config, algorithm, label, id)
}
