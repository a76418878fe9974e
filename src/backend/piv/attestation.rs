//! PIV attestation: proof from the YubiKey itself that a key was generated on it.
//!
//! The card signs, with its per-device attestation key (slot F9), a certificate for the key in a
//! slot (ATTEST, INS F9); the F9 certificate is issued by Yubico's PIV CA. Verifying the chain up
//! to a trusted root shows the key was generated inside a genuine YubiKey, with the serial and
//! policies named in Yubico's certificate extensions, and so cannot have been exported.
//!
//! Roots are passed in ([`AttestationRoots`]): [`AttestationRoots::yubico`] holds Yubico's roots
//! and the intermediates the card does not store, embedded in the binary (both hierarchies, the
//! legacy one and that of firmware 5.7.4 and later; `src/backend/piv/yubico-pki/README.md`);
//! tests pass the root of the virtual card's test CA. Each signature is checked link by link
//! (YubiKey 4.3 device certificates lack basicConstraints, which a strict RFC 5280 validator
//! refuses), and the chain must end in a trusted root. Validity periods are not checked
//! (attestation is a statement made once, at generation; Yubico's device certificates outlive
//! ordinary ones).

use std::fmt;

use super::policy::{PinPolicy, TouchPolicy};
use x509_cert::der::asn1::ObjectIdentifier;
use x509_cert::der::{Decode, Encode};
use x509_cert::Certificate;

use super::device::PivDevice;
use super::slot::Slot;
use crate::backend::PublicKey;
use crate::error::BackendError;

const OID_FIRMWARE: &str = "1.3.6.1.4.1.41482.3.3";
const OID_SERIAL: &str = "1.3.6.1.4.1.41482.3.7";
const OID_POLICY: &str = "1.3.6.1.4.1.41482.3.8";
const OID_FORM_FACTOR: &str = "1.3.6.1.4.1.41482.3.9";

const SHA256_WITH_RSA: &str = "1.2.840.113549.1.1.11";
const SHA384_WITH_RSA: &str = "1.2.840.113549.1.1.12";
const SHA512_WITH_RSA: &str = "1.2.840.113549.1.1.13";
const ECDSA_WITH_SHA256: &str = "1.2.840.10045.4.3.2";

/// Where Yubico publishes its PIV attestation roots and intermediates.
pub const YUBICO_PIV_ROOT_URL: &str =
    "https://developers.yubico.com/PIV/Introduction/PIV_attestation.html";

/// Yubico's roots, embedded: the legacy PIV root (both issues of it) and Attestation Root 1.
const YUBICO_ROOTS: [&str; 3] = [
    include_str!("yubico-pki/piv-attestation-ca-old.pem"),
    include_str!("yubico-pki/piv-attestation-ca.pem"),
    include_str!("yubico-pki/yubico-attestation-root-1.pem"),
];

/// The intermediates between a firmware 5.7.4+ device certificate and Root 1.
const YUBICO_INTERMEDIATES: [&str; 5] = [
    include_str!("yubico-pki/yubico-attestation-intermediate-a-1.pem"),
    include_str!("yubico-pki/yubico-attestation-intermediate-b-1.pem"),
    include_str!("yubico-pki/yubico-piv-attestation-a-1.pem"),
    include_str!("yubico-pki/yubico-piv-attestation-b-1.pem"),
    include_str!("yubico-pki/yubico-piv-attestation-b2-1.pem"),
];

/// The certificates a YubiKey hands out for one slot.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AttestationEvidence {
    /// The slot.
    pub slot: Slot,
    /// The attestation certificate for the slot's key (from ATTEST), DER.
    pub key_certificate_der: Vec<u8>,
    /// The device's attestation certificate (object of slot F9), DER.
    pub device_certificate_der: Vec<u8>,
}

impl AttestationEvidence {
    /// The form factor the slot's certificate states, read **without** verifying the chain:
    /// for showing which YubiKey is which (`keys list`), never for trusting it. `None` when the
    /// certificate does not parse or names no form factor.
    pub fn stated_form_factor(&self) -> Option<FormFactor> {
        let cert = Certificate::from_der(&self.key_certificate_der).ok()?;
        extension(&cert, OID_FORM_FACTOR)
            .and_then(|v| v.first().copied())
            .map(FormFactor::from_byte)
    }
}

/// Trusted roots for attestation, plus intermediates that are not on the device (Yubico's newer
/// hierarchy, firmware 5.7.4+, has one between the F9 certificate and the root).
#[derive(Clone, Default)]
pub struct AttestationRoots {
    roots: Vec<Certificate>,
    intermediates: Vec<Certificate>,
}

impl fmt::Debug for AttestationRoots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = |v: &[Certificate]| {
            v.iter()
                .map(|c| c.tbs_certificate().subject().to_string())
                .collect::<Vec<_>>()
        };
        f.debug_struct("AttestationRoots")
            .field("roots", &names(&self.roots))
            .field("intermediates", &names(&self.intermediates))
            .finish()
    }
}

fn load_pems(pem: &str) -> Result<Vec<Certificate>, BackendError> {
    let certs = Certificate::load_pem_chain(pem.as_bytes()).map_err(|e| BackendError::KeyLoad {
        what: "attestation CA certificates".to_owned(),
        reason: format!("not PEM certificates: {e}"),
    })?;
    if certs.is_empty() {
        return Err(BackendError::KeyLoad {
            what: "attestation CA certificates".to_owned(),
            reason: "no certificate in the PEM text".to_owned(),
        });
    }
    Ok(certs)
}

impl AttestationRoots {
    /// Trusts the root certificate(s) in `pem`.
    pub fn from_pem(pem: &str) -> Result<Self, BackendError> {
        Ok(AttestationRoots {
            roots: load_pems(pem)?,
            intermediates: vec![],
        })
    }

    /// Adds intermediate CA certificates (PEM) that sit between the device certificate and a root.
    pub fn with_intermediates_pem(mut self, pem: &str) -> Result<Self, BackendError> {
        self.intermediates.extend(load_pems(pem)?);
        Ok(self)
    }

    /// Yubico's PIV attestation roots and intermediates, embedded in the binary: a genuine
    /// YubiKey's attestation, from any firmware that attests, verifies under these.
    pub fn yubico() -> Result<Self, BackendError> {
        let mut roots = AttestationRoots::default();
        for pem in YUBICO_ROOTS {
            roots.roots.extend(load_pems(pem)?);
        }
        for pem in YUBICO_INTERMEDIATES {
            roots.intermediates.extend(load_pems(pem)?);
        }
        Ok(roots)
    }

    /// The trusted roots' subject names.
    pub fn root_names(&self) -> Vec<String> {
        self.roots
            .iter()
            .map(|c| c.tbs_certificate().subject().to_string())
            .collect()
    }
}

/// The YubiKey model's shape, from the attestation's form-factor extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FormFactor {
    /// USB-A, keychain.
    UsbAKeychain,
    /// USB-A, nano.
    UsbANano,
    /// USB-C, keychain.
    UsbCKeychain,
    /// USB-C, nano.
    UsbCNano,
    /// USB-C and Lightning.
    UsbCLightning,
    /// USB-A, Bio series.
    UsbABio,
    /// USB-C, Bio series.
    UsbCBio,
    /// A value this version does not know.
    Other(u8),
}

impl FormFactor {
    /// Reads the extension's byte (the high bits flag FIPS and CSPN editions, ignored here).
    fn from_byte(byte: u8) -> Self {
        match byte & 0x0f {
            1 => FormFactor::UsbAKeychain,
            2 => FormFactor::UsbANano,
            3 => FormFactor::UsbCKeychain,
            4 => FormFactor::UsbCNano,
            5 => FormFactor::UsbCLightning,
            6 => FormFactor::UsbABio,
            7 => FormFactor::UsbCBio,
            _ => FormFactor::Other(byte),
        }
    }

    /// A short name (`usb-a-keychain`, `usb-c-nano`…).
    pub fn name(self) -> String {
        match self {
            FormFactor::UsbAKeychain => "usb-a-keychain".into(),
            FormFactor::UsbANano => "usb-a-nano".into(),
            FormFactor::UsbCKeychain => "usb-c-keychain".into(),
            FormFactor::UsbCNano => "usb-c-nano".into(),
            FormFactor::UsbCLightning => "usb-c-lightning".into(),
            FormFactor::UsbABio => "usb-a-bio".into(),
            FormFactor::UsbCBio => "usb-c-bio".into(),
            FormFactor::Other(byte) => format!("unknown-0x{byte:02x}"),
        }
    }
}

/// What a verified attestation proves.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AttestedKey {
    /// The slot.
    pub slot: Slot,
    /// Serial number of the YubiKey that generated the key.
    pub serial: u32,
    /// Its firmware version.
    pub firmware: String,
    /// PIN policy fixed at generation.
    pub pin_policy: Option<PinPolicy>,
    /// Touch policy fixed at generation.
    pub touch_policy: Option<TouchPolicy>,
    /// The attested public key.
    pub public_key: PublicKey,
    /// The YubiKey's form factor, when the certificate names it.
    pub form_factor: Option<FormFactor>,
    /// Subject of the root the chain ends in.
    pub root: String,
}

impl fmt::Display for AttestedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the key in slot {} was generated on YubiKey serial {} (firmware {}) and cannot be exported; \
             PIN policy {}, touch policy {}; chain verified up to \"{}\"",
            self.slot,
            self.serial,
            self.firmware,
            self.pin_policy.map_or("unknown".to_owned(), |p| format!("{p:?}").to_lowercase()),
            self.touch_policy.map_or("unknown".to_owned(), |t| format!("{t:?}").to_lowercase()),
            self.root
        )
    }
}

fn invalid(reason: impl Into<String>) -> BackendError {
    BackendError::Crypto(format!("attestation does not verify: {}", reason.into()))
}

/// Checks that `issuer`'s key signed `cert`.
fn check_signature(cert: &Certificate, issuer: &Certificate) -> Result<(), BackendError> {
    use signature::Verifier;
    let tbs = cert
        .tbs_certificate()
        .to_der()
        .map_err(|e| invalid(e.to_string()))?;
    let sig = cert
        .signature()
        .as_bytes()
        .ok_or_else(|| invalid("signature is not whole bytes"))?;
    let spki = issuer
        .tbs_certificate()
        .subject_public_key_info()
        .to_der()
        .map_err(|e| invalid(e.to_string()))?;
    let alg = cert.signature_algorithm().oid.to_string();
    let bad = || {
        invalid(format!(
            "\"{}\" is not signed by \"{}\"",
            cert.tbs_certificate().subject(),
            issuer.tbs_certificate().subject()
        ))
    };
    match alg.as_str() {
        SHA256_WITH_RSA | SHA384_WITH_RSA | SHA512_WITH_RSA => {
            use rsa::pkcs8::DecodePublicKey;
            let key = rsa::RsaPublicKey::from_public_key_der(&spki).map_err(|_| bad())?;
            let sig = rsa::pkcs1v15::Signature::try_from(sig).map_err(|_| bad())?;
            match alg.as_str() {
                SHA256_WITH_RSA => {
                    rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(key).verify(&tbs, &sig)
                }
                SHA384_WITH_RSA => {
                    rsa::pkcs1v15::VerifyingKey::<sha2::Sha384>::new(key).verify(&tbs, &sig)
                }
                _ => rsa::pkcs1v15::VerifyingKey::<sha2::Sha512>::new(key).verify(&tbs, &sig),
            }
            .map_err(|_| bad())
        }
        ECDSA_WITH_SHA256 => {
            use p256::pkcs8::DecodePublicKey;
            let key = p256::ecdsa::VerifyingKey::from_public_key_der(&spki).map_err(|_| bad())?;
            let sig = p256::ecdsa::DerSignature::from_bytes(sig).map_err(|_| bad())?;
            key.verify(&tbs, &sig).map_err(|_| bad())
        }
        other => Err(invalid(format!(
            "signature algorithm {other} is not supported"
        ))),
    }
}

fn extension<'a>(cert: &'a Certificate, oid: &str) -> Option<&'a [u8]> {
    let oid = ObjectIdentifier::new(oid).ok()?;
    cert.tbs_certificate()
        .extensions()?
        .iter()
        .find(|e| e.extn_id == oid)
        .map(|e| e.extn_value.as_bytes())
}

/// Verifies an exported attestation — the slot's certificate and the device's F9 certificate,
/// DER — up to one of `roots`, reading the slot from the certificate's subject
/// (`CN=YubiKey PIV Attestation 9c`). For checking a colleague's key offline.
pub fn verify_exported_attestation(
    key_certificate_der: &[u8],
    device_certificate_der: &[u8],
    roots: &AttestationRoots,
) -> Result<AttestedKey, BackendError> {
    let key_cert = Certificate::from_der(key_certificate_der)
        .map_err(|e| invalid(format!("key certificate: {e}")))?;
    let slot = key_cert
        .tbs_certificate()
        .subject()
        .to_string()
        .rsplit_once("YubiKey PIV Attestation ")
        .and_then(|(_, slot)| slot.trim().parse::<Slot>().ok())
        .ok_or_else(|| {
            invalid(
                "the key certificate's subject names no slot (CN=YubiKey PIV Attestation <slot>)",
            )
        })?;
    verify_attestation(
        &AttestationEvidence {
            slot,
            key_certificate_der: key_certificate_der.to_vec(),
            device_certificate_der: device_certificate_der.to_vec(),
        },
        roots,
    )
}

/// Verifies `evidence` up to one of `roots` and reads what it attests.
pub fn verify_attestation(
    evidence: &AttestationEvidence,
    roots: &AttestationRoots,
) -> Result<AttestedKey, BackendError> {
    let key_cert = Certificate::from_der(&evidence.key_certificate_der)
        .map_err(|e| invalid(format!("key certificate: {e}")))?;
    let device_cert = Certificate::from_der(&evidence.device_certificate_der)
        .map_err(|e| invalid(format!("device certificate: {e}")))?;
    if key_cert.tbs_certificate().issuer() != device_cert.tbs_certificate().subject() {
        return Err(invalid(
            "the key certificate was not issued by the device certificate",
        ));
    }
    check_signature(&key_cert, &device_cert)?;

    // Walk from the device certificate up through known intermediates to a trusted root.
    let mut current = device_cert;
    let root_name = 'walk: {
        for _ in 0..=roots.intermediates.len() {
            let issuer = current.tbs_certificate().issuer();
            for root in &roots.roots {
                if root.tbs_certificate().subject() == issuer
                    && check_signature(&current, root).is_ok()
                {
                    break 'walk root.tbs_certificate().subject().to_string();
                }
            }
            let next = roots.intermediates.iter().find(|i| {
                i.tbs_certificate().subject() == issuer && check_signature(&current, i).is_ok()
            });
            match next {
                Some(i) => current = i.clone(),
                None => break,
            }
        }
        return Err(invalid(format!(
            "no trusted root signed \"{}\" (issuer \"{}\")",
            current.tbs_certificate().subject(),
            current.tbs_certificate().issuer()
        )));
    };

    let serial = extension(&key_cert, OID_SERIAL)
        .and_then(|der| u32::from_der(der).ok())
        .ok_or_else(|| invalid("the key certificate has no YubiKey serial extension"))?;
    let firmware = extension(&key_cert, OID_FIRMWARE)
        .filter(|v| v.len() == 3)
        .map(|v| format!("{}.{}.{}", v[0], v[1], v[2]))
        .unwrap_or_else(|| "unknown".to_owned());
    let policy = extension(&key_cert, OID_POLICY).filter(|v| v.len() == 2);
    let spki = key_cert
        .tbs_certificate()
        .subject_public_key_info()
        .to_der()
        .map_err(|e| invalid(e.to_string()))?;
    Ok(AttestedKey {
        slot: evidence.slot,
        serial,
        firmware,
        pin_policy: policy
            .and_then(|p| yubikey::PinPolicy::try_from(p[0]).ok().map(PinPolicy::from)),
        touch_policy: policy.and_then(|p| {
            yubikey::TouchPolicy::try_from(p[1])
                .ok()
                .map(TouchPolicy::from)
        }),
        public_key: PublicKey::from_spki_der(&spki)?,
        form_factor: extension(&key_cert, OID_FORM_FACTOR)
            .and_then(|v| v.first().copied())
            .map(FormFactor::from_byte),
        root: root_name,
    })
}

impl PivDevice {
    /// Reads the attestation certificate of the key in `slot` and the device certificate (F9).
    pub fn attestation(&self, slot: Slot) -> Result<AttestationEvidence, BackendError> {
        self.run(|s, inner| {
            let yk = s.yubikey()?;
            let key_certificate_der = yubikey::piv::attest(yk, slot.slot_id())
                .map_err(|e| match e {
                    yubikey::Error::NotSupported => BackendError::UnsupportedKey(format!(
                        "{} cannot attest (firmware 4.3 or later is needed)",
                        inner.label
                    ))
                    .into(),
                    yubikey::Error::GenericError => BackendError::UnsupportedKey(format!(
                        "{} did not attest slot {slot}: the slot is empty or its key was imported (only keys generated on the card can be attested)",
                        inner.label
                    ))
                    .into(),
                    e => inner.fail("attest", e),
                })?
                .to_vec();
            let yk = s.yubikey()?;
            let device = yubikey::Certificate::read(yk, yubikey::piv::SlotId::Attestation)
                .map_err(|e| inner.fail("read the attestation certificate (slot f9)", e))?;
            let device_certificate_der = device.cert.to_der().map_err(|e| BackendError::Crypto(e.to_string()))?;
            Ok(AttestationEvidence { slot, key_certificate_der, device_certificate_der })
        })
    }

    /// Attests the key in `slot`: reads the evidence, verifies it up to `roots`, and checks the
    /// attested key is the one in the slot now.
    pub fn attest(
        &self,
        slot: Slot,
        roots: &AttestationRoots,
    ) -> Result<AttestedKey, BackendError> {
        let evidence = self.attestation(slot)?;
        let attested = verify_attestation(&evidence, roots)?;
        if attested.serial != self.info().serial {
            return Err(invalid(format!(
                "the certificate names YubiKey serial {}, but this is serial {}",
                attested.serial,
                self.info().serial
            )));
        }
        let current = super::key::PivKey::on_device(self, slot)?;
        if &attested.public_key != crate::backend::KeyBackend::public_key(&current) {
            return Err(invalid(format!(
                "the attested key is not the key now in slot {slot}"
            )));
        }
        Ok(attested)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest;
    use x509_cert::der::DecodePem;

    /// The embedded CAs are Yubico's published certificates, byte for byte: their SHA-256
    /// fingerprints as Yubico's and independent copies give them
    /// (`src/backend/piv/yubico-pki/README.md`).
    #[test]
    fn yubico_roots_are_the_published_certificates() {
        let pinned = [
            "7E996A28E3055223733C9AEC897900EDA9B746E3E15D419556AC6A1179879A50",
            "63ECE914E54DD87915F34033C85AF4C0696BA1512F8ADD66CED738331207B546",
            "62760C6A6EF91679F454C8902B80FD009825B3F25DA90F1FBACE2EC6586CD5A8",
            "4698A1D3389C3EC60016C216250F1D0439922832D65142327436376DC2942B55",
            "D4CC3F456FDAF4E7812A21AAB1DFE9D8E27D24E2FD2D6F21C9940109F0DAA754",
            "6DE693F05376F5D8CA29069261E1C8626C75D503BD2EDBFD75354CAD1F722870",
            "2D55B7998F4E42569D6D8FA382B6DC77D1DACF07358B19701163892922B17052",
            "0C90B7D184A36EDF50A35F9BE935F0C5689BFDCFE5BDD073366CAFB49061A440",
        ];
        let embedded: Vec<&str> = YUBICO_ROOTS
            .iter()
            .chain(YUBICO_INTERMEDIATES.iter())
            .copied()
            .collect();
        assert_eq!(embedded.len(), pinned.len());
        for (pem, fingerprint) in embedded.iter().zip(pinned) {
            let der = Certificate::from_pem(pem.as_bytes())
                .unwrap()
                .to_der()
                .unwrap();
            assert_eq!(hex::encode_upper(sha2::Sha256::digest(&der)), fingerprint);
        }
        let roots = AttestationRoots::yubico().unwrap();
        assert_eq!(
            roots.root_names(),
            [
                "CN=Yubico PIV Root CA Serial 263751",
                "CN=Yubico PIV Root CA Serial 263751",
                "CN=Yubico Attestation Root 1"
            ]
        );
    }

    /// Yubico's own links verify with this code: each intermediate under its issuer, the PIV
    /// ones under Intermediate A 1 / B 1 (B2 1's algorithm identifier has no NULL parameter),
    /// and crossing the branches fails.
    #[test]
    fn yubico_intermediates_chain_to_root_1_link_by_link() {
        let cert = |pem: &str| Certificate::from_pem(pem.as_bytes()).unwrap();
        let root_1 = cert(YUBICO_ROOTS[2]);
        let [int_a, int_b, piv_a, piv_b, piv_b2] = YUBICO_INTERMEDIATES.map(cert);
        check_signature(&root_1, &root_1).unwrap(); // sha512WithRSAEncryption
        check_signature(&int_a, &root_1).unwrap();
        check_signature(&int_b, &root_1).unwrap();
        check_signature(&piv_a, &int_a).unwrap();
        check_signature(&piv_b, &int_b).unwrap();
        check_signature(&piv_b2, &int_b).unwrap();
        assert!(piv_b2.signature_algorithm().parameters.is_none());
        assert!(check_signature(&piv_a, &int_b).is_err());
        assert!(check_signature(&piv_b, &int_a).is_err());
        // The two issues of the legacy root share a key: each verifies the other's
        // self-signature.
        let (old, new) = (cert(YUBICO_ROOTS[0]), cert(YUBICO_ROOTS[1]));
        check_signature(&old, &new).unwrap();
        check_signature(&new, &old).unwrap();
    }
}
