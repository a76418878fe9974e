//! Generating a key on the card, with a self-signed certificate signed by the card itself and
//! written to the slot, so that other PIV tools (yubico-piv-tool, ykcs11, OpenSC) see the key.
//!
//! A slot that already holds a key is never overwritten unless the caller says `force`.

use std::cell::RefCell;
use std::marker::PhantomData;
use std::str::FromStr;
use std::time::Duration;

use super::policy::{PinPolicy, TouchPolicy};
use signature::Keypair;
use x509_cert::builder::profile::BuilderProfile;
use x509_cert::builder::{Builder, CertificateBuilder};
use x509_cert::der::{Decode, Encode};
use x509_cert::ext::Extension;
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::{
    DynSignatureAlgorithmIdentifier, EncodePublicKey, SignatureBitStringEncoding,
    SubjectPublicKeyInfoOwned, SubjectPublicKeyInfoRef,
};
use x509_cert::time::Validity;
use yubikey::certificate::CertInfo;
use yubikey::piv::{self, AlgorithmId};

use super::device::{DeviceInner, ManagementKey, OpError, PivDevice, Session};
use super::key::{effective_policies, read_certificate, sign_in_session, SlotKey};
use super::slot::Slot;
use crate::backend::{Algorithm, PublicKey};
use crate::error::BackendError;

/// What key to generate and how to protect it.
#[derive(Debug, Clone)]
pub struct KeyGeneration {
    /// Where.
    pub slot: Slot,
    /// P-256, RSA-2048 or Ed25519 (firmware 5.7+).
    pub algorithm: Algorithm,
    /// When the card asks for the PIN (`Default` = the slot's PIV default).
    pub pin_policy: PinPolicy,
    /// When the card asks for a touch (`Default` = never).
    pub touch_policy: TouchPolicy,
    /// Subject of the self-signed certificate, as an RFC 4514 string (`CN=dfns-signer`).
    pub subject: String,
    /// Validity of the certificate.
    pub validity: Duration,
    /// Overwrite a key already in the slot.
    pub force: bool,
}

impl KeyGeneration {
    /// A P-256 key in `slot` with the slot's default policies, `CN=dfns-signer`, valid 10 years.
    pub fn new(slot: Slot) -> Self {
        KeyGeneration {
            slot,
            algorithm: Algorithm::EcdsaP256,
            pin_policy: PinPolicy::Default,
            touch_policy: TouchPolicy::Default,
            subject: "CN=dfns-signer".to_owned(),
            validity: Duration::from_secs(10 * 365 * 24 * 3600),
            force: false,
        }
    }
}

/// Parses a PIN policy name: `default`, `never`, `once`, `always` (for CLIs and configs).
pub fn parse_pin_policy(name: &str) -> Result<PinPolicy, BackendError> {
    match name.to_ascii_lowercase().as_str() {
        "default" => Ok(PinPolicy::Default),
        "never" => Ok(PinPolicy::Never),
        "once" => Ok(PinPolicy::Once),
        "always" => Ok(PinPolicy::Always),
        other => Err(BackendError::UnsupportedKey(format!(
            "PIN policy `{other}`: expected default, never, once or always"
        ))),
    }
}

/// Parses a touch policy name: `default`, `never`, `always`, `cached` (for CLIs and configs).
pub fn parse_touch_policy(name: &str) -> Result<TouchPolicy, BackendError> {
    match name.to_ascii_lowercase().as_str() {
        "default" => Ok(TouchPolicy::Default),
        "never" => Ok(TouchPolicy::Never),
        "always" => Ok(TouchPolicy::Always),
        "cached" => Ok(TouchPolicy::Cached),
        other => Err(BackendError::UnsupportedKey(format!(
            "touch policy `{other}`: expected default, never, always or cached"
        ))),
    }
}

/// A key just generated on the card.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct GeneratedKey {
    /// Its public key.
    pub public_key: PublicKey,
    /// The self-signed certificate written to the slot (DER).
    pub certificate_der: Vec<u8>,
}

struct SelfSigned {
    subject: Name,
}

impl BuilderProfile for SelfSigned {
    fn get_issuer(&self, subject: &Name) -> Name {
        subject.clone()
    }
    fn get_subject(&self) -> Name {
        self.subject.clone()
    }
    fn build_extensions(
        &self,
        _spk: SubjectPublicKeyInfoRef<'_>,
        _issuer_spk: SubjectPublicKeyInfoRef<'_>,
        _tbs: &x509_cert::TbsCertificate,
    ) -> x509_cert::builder::Result<Vec<Extension>> {
        Ok(vec![])
    }
}

/// Signs a to-be-signed blob with the card and returns the signature in wire encoding.
type CardSignFn<'a> = dyn FnMut(&[u8]) -> Result<Vec<u8>, OpError> + 'a;

/// Signs the certificate with the card, through the same path as every other signature.
struct CardSigner<'a, VK, S> {
    verifying_key: VK,
    sign: RefCell<&'a mut CardSignFn<'a>>,
    error: RefCell<Option<OpError>>,
    _signature: PhantomData<S>,
}

impl<VK: Clone, S> Keypair for CardSigner<'_, VK, S> {
    type VerifyingKey = VK;
    fn verifying_key(&self) -> VK {
        self.verifying_key.clone()
    }
}

impl<VK: DynSignatureAlgorithmIdentifier, S> DynSignatureAlgorithmIdentifier
    for CardSigner<'_, VK, S>
{
    fn signature_algorithm_identifier(
        &self,
    ) -> x509_cert::spki::Result<x509_cert::spki::AlgorithmIdentifierOwned> {
        self.verifying_key.signature_algorithm_identifier()
    }
}

impl<VK, S: for<'b> TryFrom<&'b [u8]>> signature::Signer<S> for CardSigner<'_, VK, S> {
    fn try_sign(&self, msg: &[u8]) -> Result<S, signature::Error> {
        let wire = (self.sign.borrow_mut())(msg).map_err(|e| {
            // Keep the real error (wrong PIN, touch…) for the caller; `signature::Error` is opaque.
            *self.error.borrow_mut() = Some(e);
            signature::Error::new()
        })?;
        S::try_from(wire.as_slice()).map_err(|_| signature::Error::new())
    }
}

fn build_certificate<VK, S>(
    verifying_key: VK,
    subject_spki: SubjectPublicKeyInfoOwned,
    spec: &KeyGeneration,
    sign: &mut CardSignFn<'_>,
) -> Result<Vec<u8>, OpError>
where
    VK: Clone + DynSignatureAlgorithmIdentifier + EncodePublicKey,
    S: for<'b> TryFrom<&'b [u8]> + SignatureBitStringEncoding,
{
    let bad = |what: &str, e: String| OpError::Final(BackendError::Crypto(format!("{what}: {e}")));
    let subject = Name::from_str(&spec.subject).map_err(|e| {
        OpError::Final(BackendError::KeyLoad {
            what: format!("certificate subject `{}`", spec.subject),
            reason: format!("not an RFC 4514 name ({e}); write e.g. CN=dfns-signer"),
        })
    })?;
    let mut serial = [0u8; 16];
    getrandom::fill(&mut serial).map_err(|e| bad("random serial", e.to_string()))?;
    serial[0] = (serial[0] & 0x7F) | 0x01;
    let serial = SerialNumber::new(&serial).map_err(|e| bad("serial", e.to_string()))?;
    let validity = Validity::from_now(spec.validity).map_err(|e| bad("validity", e.to_string()))?;
    let builder = CertificateBuilder::new(SelfSigned { subject }, serial, validity, subject_spki)
        .map_err(|e| bad("certificate", e.to_string()))?;
    let signer: CardSigner<'_, VK, S> = CardSigner {
        verifying_key,
        sign: RefCell::new(sign),
        error: RefCell::new(None),
        _signature: PhantomData,
    };
    let result = builder.build::<_, S>(&signer);
    if let Some(e) = signer.error.borrow_mut().take() {
        return Err(e);
    }
    let cert = result.map_err(|e| bad("self-signed certificate", e.to_string()))?;
    cert.to_der()
        .map_err(|e| bad("certificate encoding", e.to_string()))
}

/// The kinds of key this backend generates on a card.
#[derive(Clone, Copy)]
enum NewKey {
    P256,
    Rsa2048,
    Ed25519,
}

impl NewKey {
    fn card_algorithm(self) -> AlgorithmId {
        match self {
            NewKey::P256 => AlgorithmId::EccP256,
            NewKey::Rsa2048 => AlgorithmId::Rsa2048,
            NewKey::Ed25519 => AlgorithmId::Ed25519,
        }
    }
}

fn new_key(alg: Algorithm, version: yubikey::Version) -> Result<NewKey, BackendError> {
    match alg {
        Algorithm::EcdsaP256 => Ok(NewKey::P256),
        Algorithm::RsaPkcs1Sha256 => Ok(NewKey::Rsa2048),
        Algorithm::Ed25519
            if version
                >= yubikey::Version {
                    major: 5,
                    minor: 7,
                    patch: 0,
                } =>
        {
            Ok(NewKey::Ed25519)
        }
        Algorithm::Ed25519 => Err(BackendError::UnsupportedKey(format!(
            "Ed25519 needs YubiKey firmware 5.7 or later; this one has {version}"
        ))),
        other => Err(BackendError::UnsupportedKey(format!(
            "PIV cards cannot hold {other} keys"
        ))),
    }
}

fn slot_is_filled(inner: &DeviceInner, s: &mut Session, slot: Slot) -> Result<bool, OpError> {
    let yk = s.yubikey()?;
    match piv::metadata(yk, slot.slot_id()) {
        Ok(_) => Ok(true),
        Err(yubikey::Error::NotFound) => Ok(false),
        // No metadata before firmware 5.3: a certificate is the sign of a key.
        Err(yubikey::Error::NotSupported) => Ok(read_certificate(inner, s, slot)?.is_some()),
        Err(e) => Err(inner.fail("read slot metadata", e)),
    }
}

fn generate(
    inner: &DeviceInner,
    s: &mut Session,
    spec: &KeyGeneration,
    mgm: &ManagementKey,
) -> Result<GeneratedKey, OpError> {
    let version = s.yubikey()?.version();
    let kind = new_key(spec.algorithm, version)?;
    let card_alg = kind.card_algorithm();
    let filled = slot_is_filled(inner, s, spec.slot)?;
    if filled && !spec.force {
        return Err(BackendError::SlotOccupied {
            device: inner.label.clone(),
            slot: spec.slot.to_string(),
        }
        .into());
    }
    inner.authenticate(s, mgm)?;
    if filled {
        // The old certificate goes first: if signing the new one fails after the key is
        // replaced (wrong PIN, no touch), the slot must not pair the new key with the old
        // certificate, which firmware before 5.3 would take as the key's public key.
        let yk = s.yubikey()?;
        yubikey::Certificate::delete(yk, spec.slot.slot_id())
            .map_err(|e| inner.fail("delete the old certificate", e))?;
    }
    let yk = s.yubikey()?;
    let spki = piv::generate(
        yk,
        spec.slot.slot_id(),
        card_alg,
        spec.pin_policy.into(),
        spec.touch_policy.into(),
    )
    .map_err(|e| inner.fail("generate a key", e))?;
    let spki_der = spki
        .to_der()
        .map_err(|e| BackendError::Crypto(e.to_string()))?;
    let public_key = PublicKey::from_spki_der(&spki_der)?;
    let (pin_policy, touch_policy) =
        effective_policies(spec.slot, spec.pin_policy, spec.touch_policy);
    let key = SlotKey {
        slot: spec.slot,
        card_algorithm: card_alg,
        pin_policy,
        touch_policy,
        public_key: public_key.clone(),
    };
    let mut sign = |tbs: &[u8]| {
        sign_in_session(inner, s, &key, tbs, None).inspect_err(|_| {
            tracing::warn!(
                device = %inner.label,
                slot = %spec.slot,
                "the new key could not sign its certificate; the slot holds the new key without a certificate"
            );
        })
    };
    let bad_key = |e: String| OpError::Final(BackendError::Crypto(format!("generated key: {e}")));
    let certificate_der = match kind {
        NewKey::P256 => {
            use p256::pkcs8::DecodePublicKey;
            let vk = p256::ecdsa::VerifyingKey::from_public_key_der(&spki_der)
                .map_err(|e| bad_key(e.to_string()))?;
            build_certificate::<_, p256::ecdsa::DerSignature>(vk, spki, spec, &mut sign)?
        }
        NewKey::Rsa2048 => {
            use rsa::pkcs8::DecodePublicKey;
            let pk = rsa::RsaPublicKey::from_public_key_der(&spki_der)
                .map_err(|e| bad_key(e.to_string()))?;
            let vk = rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(pk);
            build_certificate::<_, rsa::pkcs1v15::Signature>(vk, spki, spec, &mut sign)?
        }
        NewKey::Ed25519 => {
            use ed25519_dalek::pkcs8::DecodePublicKey;
            let vk = ed25519_dalek::VerifyingKey::from_public_key_der(&spki_der)
                .map_err(|e| bad_key(e.to_string()))?;
            build_certificate::<_, ed25519_dalek::Signature>(vk, spki, spec, &mut sign)?
        }
    };
    let cert =
        x509_cert::Certificate::from_der(&certificate_der).map_err(|e| bad_key(e.to_string()))?;
    // Signing may have needed a PIN VERIFY, which leaves the management-key session intact on a
    // YubiKey; authenticate again anyway so a card that drops it still takes the certificate.
    inner.authenticate(s, mgm)?;
    let yk = s.yubikey()?;
    yubikey::Certificate { cert }
        .write(yk, spec.slot.slot_id(), CertInfo::Uncompressed)
        .map_err(|e| inner.fail("write the certificate", e))?;
    Ok(GeneratedKey {
        public_key,
        certificate_der,
    })
}

impl PivDevice {
    /// Generates a key on the card in `spec.slot`, signs a self-signed certificate for it with
    /// the card, and writes the certificate to the slot. Refuses a filled slot unless
    /// `spec.force`. Needs the management key, and the PIN when the new key's policy asks for
    /// it (to sign the certificate). Never retried after a transport fault: a half-finished
    /// generation is reported, not repeated.
    ///
    /// With `force`, the old certificate is deleted before the new key is generated: if signing
    /// the new certificate then fails (wrong PIN, no touch), the slot holds the new key and no
    /// certificate (generate again), never the new key with the old key's certificate.
    pub fn generate_key(
        &self,
        spec: &KeyGeneration,
        mgm: &ManagementKey,
    ) -> Result<GeneratedKey, BackendError> {
        // The certificate is signed with the new key: read its PIN (maybe a prompt) first,
        // without holding the device.
        let (pin_policy, _) = effective_policies(spec.slot, spec.pin_policy, spec.touch_policy);
        self.prepare_pin(pin_policy)?;
        self.run_once(|s, inner| generate(inner, s, spec, mgm))
    }

    /// The certificate stored in `slot` (DER), if any.
    pub fn certificate(&self, slot: Slot) -> Result<Option<Vec<u8>>, BackendError> {
        self.run(|s, inner| {
            read_certificate(inner, s, slot)?
                .map(|cert| {
                    cert.to_der()
                        .map_err(|e| BackendError::Crypto(e.to_string()).into())
                })
                .transpose()
        })
    }
}
