//! A test attestation hierarchy shaped like Yubico's: a root CA (RSA-2048, as Yubico's PIV root
//! is), a per-device attestation certificate in slot F9 (P-256 here), and per-key attestation
//! certificates the virtual card issues on ATTEST with Yubico's extensions (firmware, serial,
//! policies). Tests inject `TestAttestationCa::root_pem` where production uses Yubico's root.

use std::str::FromStr;
use std::time::Duration;

use der::asn1::OctetString;
use der::Encode;
use rand_core::UnwrapErr;
use x509_cert::builder::profile::BuilderProfile;
use x509_cert::builder::{Builder, CertificateBuilder};
use x509_cert::der;
use x509_cert::ext::pkix::BasicConstraints;
use x509_cert::ext::{Extension, ToExtension};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::{SubjectPublicKeyInfoOwned, SubjectPublicKeyInfoRef};
use x509_cert::time::Validity;

use super::card::AttestationIdentity;

/// What an attestation certificate says about the key it covers.
pub struct AttestedKeyInfo {
    pub serial: u32,
    pub version: [u8; 3],
    pub pin_policy: u8,
    pub touch_policy: u8,
    pub slot: u8,
}

struct Profile {
    issuer: Name,
    subject: Name,
    extensions: Vec<Extension>,
}

impl BuilderProfile for Profile {
    fn get_issuer(&self, _subject: &Name) -> Name {
        self.issuer.clone()
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
        Ok(self.extensions.clone())
    }
}

fn ca_extension(subject: &Name) -> Extension {
    (&BasicConstraints {
        ca: true,
        path_len_constraint: None,
    })
        .to_extension(subject, &[])
        .expect("encode basicConstraints")
}

fn yubico_extension(arc: u32, value: Vec<u8>) -> Extension {
    Extension {
        extn_id: der::oid::ObjectIdentifier::new(&format!("1.3.6.1.4.1.41482.3.{arc}"))
            .expect("oid"),
        critical: false,
        extn_value: OctetString::new(value).expect("octet string"),
    }
}

fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    rand_core::TryRng::try_fill_bytes(&mut getrandom::SysRng, &mut bytes).expect("rng");
    bytes[0] &= 0x7F;
    bytes[0] |= 0x01;
    SerialNumber::new(&bytes).expect("serial")
}

/// A root CA and a device attestation identity issued by it.
pub struct TestAttestationCa {
    /// The root certificate as PEM (what a verifier trusts).
    pub root_pem: String,
    /// The root certificate as DER.
    pub root_der: Vec<u8>,
    /// The identity to put in a card's slot F9.
    pub device: AttestationIdentity,
}

fn issue<S, Sig>(
    signer: &S,
    profile: Profile,
    spki: SubjectPublicKeyInfoOwned,
) -> x509_cert::Certificate
where
    S: signature::Signer<Sig>
        + signature::Keypair
        + x509_cert::spki::DynSignatureAlgorithmIdentifier,
    S::VerifyingKey: x509_cert::spki::EncodePublicKey,
    Sig: x509_cert::spki::SignatureBitStringEncoding,
{
    let validity = Validity::from_now(Duration::from_secs(3600 * 24 * 365)).expect("validity");
    CertificateBuilder::new(profile, random_serial(), validity, spki)
        .expect("certificate builder")
        .build::<_, Sig>(signer)
        .expect("sign the certificate")
}

impl TestAttestationCa {
    /// Builds the hierarchy with an RSA-2048 root, as Yubico's is; the root key is the RSA test
    /// fixture (no slow key generation in debug builds).
    pub fn new() -> Self {
        use pkcs8::DecodePrivateKey;
        let pem = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/keys/rsa2048.pem"
        ))
        .expect("read the RSA fixture");
        let root_key = rsa::RsaPrivateKey::from_pkcs8_pem(&pem).expect("parse the RSA fixture");
        let spki = SubjectPublicKeyInfoOwned::from_key(&rsa::RsaPublicKey::from(&root_key))
            .expect("root spki");
        let signer = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(root_key);
        Self::build(spki, |profile, spki| {
            issue::<_, rsa::pkcs1v15::Signature>(&signer, profile, spki)
        })
    }

    /// The same hierarchy (same names) under a fresh P-256 root: a stranger to [`Self::new`]'s.
    pub fn with_p256_root() -> Self {
        let key = <p256::ecdsa::SigningKey as p256::elliptic_curve::Generate>::generate_from_rng(
            &mut UnwrapErr(getrandom::SysRng),
        );
        let spki = SubjectPublicKeyInfoOwned::from_key(key.verifying_key()).expect("root spki");
        Self::build(spki, |profile, spki| {
            issue::<_, p256::ecdsa::DerSignature>(&key, profile, spki)
        })
    }

    fn build(
        root_spki: SubjectPublicKeyInfoOwned,
        sign_with_root: impl Fn(Profile, SubjectPublicKeyInfoOwned) -> x509_cert::Certificate,
    ) -> Self {
        let root_name = Name::from_str("CN=dfns-signer Test PIV Root CA").expect("name");
        let root = sign_with_root(
            Profile {
                issuer: root_name.clone(),
                subject: root_name.clone(),
                extensions: vec![ca_extension(&root_name)],
            },
            root_spki,
        );
        let root_der = root.to_der().expect("root der");

        let device_key =
            <p256::ecdsa::SigningKey as p256::elliptic_curve::Generate>::generate_from_rng(
                &mut UnwrapErr(getrandom::SysRng),
            );
        let device_name = Name::from_str("CN=Yubico PIV Attestation").expect("name");
        let device_spki =
            SubjectPublicKeyInfoOwned::from_key(device_key.verifying_key()).expect("spki");
        let device_cert = sign_with_root(
            Profile {
                issuer: root_name,
                subject: device_name.clone(),
                extensions: vec![ca_extension(&device_name)],
            },
            device_spki,
        );

        let root_pem = der::pem::encode_string("CERTIFICATE", der::pem::LineEnding::LF, &root_der)
            .expect("pem");
        TestAttestationCa {
            root_pem,
            root_der,
            device: AttestationIdentity {
                key: device_key,
                certificate_der: device_cert.to_der().expect("device der"),
            },
        }
    }
}

/// Issues the attestation certificate for a key (what ATTEST returns), signed by the device key.
pub fn issue_attestation(
    identity: &AttestationIdentity,
    subject_spki_der: Vec<u8>,
    info: &AttestedKeyInfo,
) -> Result<Vec<u8>, String> {
    use der::Decode;
    let issuer_cert =
        x509_cert::Certificate::from_der(&identity.certificate_der).map_err(|e| e.to_string())?;
    let issuer = issuer_cert.tbs_certificate().subject().clone();
    let subject = Name::from_str(&format!("CN=YubiKey PIV Attestation {:02x}", info.slot))
        .map_err(|e| e.to_string())?;
    let spki = SubjectPublicKeyInfoOwned::from_der(&subject_spki_der).map_err(|e| e.to_string())?;
    let extensions = vec![
        yubico_extension(3, info.version.to_vec()),
        yubico_extension(7, info.serial.to_der().map_err(|e| e.to_string())?),
        yubico_extension(8, vec![info.pin_policy, info.touch_policy]),
        yubico_extension(9, vec![0x01]),
    ];
    let validity =
        Validity::from_now(Duration::from_secs(3600 * 24 * 365)).map_err(|e| e.to_string())?;
    let cert = CertificateBuilder::new(
        Profile {
            issuer,
            subject,
            extensions,
        },
        random_serial(),
        validity,
        spki,
    )
    .map_err(|e| e.to_string())?
    .build::<_, p256::ecdsa::DerSignature>(&identity.key)
    .map_err(|e| e.to_string())?;
    cert.to_der().map_err(|e| e.to_string())
}

/// One link of a synthetic Yubico-shaped chain: `subject` (with `subject_spki`) certified by
/// `issuer`, signed with the RSA key `signer` (sha256WithRSAEncryption). `ca` adds
/// basicConstraints (leave it out for a YubiKey 4.3-style device certificate); `extensions` are
/// Yubico's (`yubico_extensions`); `without_null` re-signs the certificate with the algorithm
/// identifier's NULL parameter omitted, as Yubico's newest certificates are encoded.
pub struct Link<'a> {
    pub issuer: &'a str,
    pub subject: &'a str,
    pub subject_spki: SubjectPublicKeyInfoOwned,
    pub signer: &'a rsa::RsaPrivateKey,
    pub ca: bool,
    pub extensions: Vec<Extension>,
    pub without_null: bool,
}

/// Yubico's attestation extensions for a slot certificate.
pub fn yubico_extensions(info: &AttestedKeyInfo, form_factor: u8) -> Vec<Extension> {
    vec![
        yubico_extension(3, info.version.to_vec()),
        yubico_extension(7, info.serial.to_der().expect("serial der")),
        yubico_extension(8, vec![info.pin_policy, info.touch_policy]),
        yubico_extension(9, vec![form_factor]),
    ]
}

/// Issues one link (see [`Link`]), DER.
pub fn issue_link(link: Link<'_>) -> Vec<u8> {
    let subject = Name::from_str(link.subject).expect("subject");
    let mut extensions = link.extensions;
    if link.ca {
        extensions.push(ca_extension(&subject));
    }
    let signer = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(link.signer.clone());
    let cert = issue::<_, rsa::pkcs1v15::Signature>(
        &signer,
        Profile {
            issuer: Name::from_str(link.issuer).expect("issuer"),
            subject,
            extensions,
        },
        link.subject_spki,
    );
    if !link.without_null {
        return cert.to_der().expect("der");
    }
    // sha256WithRSAEncryption with and without its NULL parameter.
    const WITH_NULL: [u8; 15] = [
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b, 0x05, 0x00,
    ];
    let without_null = &WITH_NULL[2..13];
    let tbs = cert.tbs_certificate().to_der().expect("tbs der");
    let at = tbs
        .windows(WITH_NULL.len())
        .position(|w| w == WITH_NULL)
        .expect("the tbs names its signature algorithm");
    let mut body = tbs[4..at].to_vec();
    body.extend_from_slice(&[0x30, 0x0b]);
    body.extend_from_slice(without_null);
    body.extend_from_slice(&tbs[at + WITH_NULL.len()..]);
    let tbs = der_sequence(&body);
    let signature = signature::SignatureEncoding::to_vec(&signature::Signer::<
        rsa::pkcs1v15::Signature,
    >::sign(&signer, &tbs));
    let mut bit_string = vec![0x03, 0x82];
    bit_string.extend_from_slice(&((signature.len() + 1) as u16).to_be_bytes());
    bit_string.push(0);
    bit_string.extend_from_slice(&signature);
    let mut outer = tbs;
    outer.extend_from_slice(&[0x30, 0x0b]);
    outer.extend_from_slice(without_null);
    outer.extend_from_slice(&bit_string);
    der_sequence(&outer)
}

/// A DER SEQUENCE of `body` (two-byte long-form length: certificates are 256–65535 bytes).
fn der_sequence(body: &[u8]) -> Vec<u8> {
    assert!(
        body.len() > 255 && body.len() < 65536,
        "{} bytes",
        body.len()
    );
    let mut out = vec![0x30, 0x82];
    out.extend_from_slice(&(body.len() as u16).to_be_bytes());
    out.extend_from_slice(body);
    out
}
