//! PIV attestation chains of both of Yubico's shapes, built here with Yubico's names and
//! encodings (no card needed): the legacy hierarchy (slot → F9 without basicConstraints, as on
//! a YubiKey 4.3 → root) and that of firmware 5.7.4+ (slot → F9 → PIV Attestation B2 1 →
//! Attestation Intermediate B 1 → Root 1), with and without the NULL parameter in the signature
//! algorithm. The verifier must take each, and refuse a missing link, a foreign root and a
//! changed byte. (The embedded Yubico roots themselves are pinned by fingerprint in
//! `src/backend/piv/attestation.rs`.)
#![cfg(feature = "piv")]

#[path = "common/piv/mod.rs"]
mod piv_support;

use dfns_signer::piv::{verify_exported_attestation, AttestationRoots, FormFactor, PinPolicy};
use piv_support::attestation::{issue_link, yubico_extensions, AttestedKeyInfo, Link};
use pkcs8::DecodePrivateKey;
use x509_cert::spki::SubjectPublicKeyInfoOwned;

fn rsa_fixture() -> rsa::RsaPrivateKey {
    let pem = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/keys/rsa2048.pem"
    ))
    .unwrap();
    rsa::RsaPrivateKey::from_pkcs8_pem(&pem).unwrap()
}

fn spki_of(key: &rsa::RsaPrivateKey) -> SubjectPublicKeyInfoOwned {
    SubjectPublicKeyInfoOwned::from_key(&rsa::RsaPublicKey::from(key)).unwrap()
}

fn pem(der: &[u8]) -> String {
    x509_cert::der::pem::encode_string("CERTIFICATE", x509_cert::der::pem::LineEnding::LF, der)
        .unwrap()
}

/// A chain: (slot certificate, F9 certificate, roots PEM, intermediates PEM).
struct Chain {
    slot: Vec<u8>,
    device: Vec<u8>,
    root: String,
    intermediates: Vec<String>,
}

/// The slot's key: an Ed25519-free, cheap P-256 key, as a YubiKey 5 slot would hold.
fn slot_spki() -> SubjectPublicKeyInfoOwned {
    let key = <p256::ecdsa::SigningKey as p256::elliptic_curve::Generate>::generate_from_rng(
        &mut rand_core::UnwrapErr(getrandom::SysRng),
    );
    SubjectPublicKeyInfoOwned::from_key(key.verifying_key()).unwrap()
}

fn slot_info() -> AttestedKeyInfo {
    AttestedKeyInfo {
        serial: 31_415_926,
        version: [5, 7, 4],
        pin_policy: 2,
        touch_policy: 2,
        slot: 0x9c,
    }
}

/// Every key in the chain is the RSA fixture (the shape, not the keys, is under test).
fn legacy_chain(key: &rsa::RsaPrivateKey) -> Chain {
    let root_name = "CN=Yubico PIV Root CA Serial 263751";
    let root = issue_link(Link {
        issuer: root_name,
        subject: root_name,
        subject_spki: spki_of(key),
        signer: key,
        ca: true,
        extensions: vec![],
        without_null: false,
    });
    // A YubiKey 4.3 device certificate: no basicConstraints at all.
    let device = issue_link(Link {
        issuer: root_name,
        subject: "CN=Yubico PIV Attestation",
        subject_spki: spki_of(key),
        signer: key,
        ca: false,
        extensions: vec![],
        without_null: false,
    });
    let slot = issue_link(Link {
        issuer: "CN=Yubico PIV Attestation",
        subject: "CN=YubiKey PIV Attestation 9c",
        subject_spki: slot_spki(),
        signer: key,
        ca: false,
        extensions: yubico_extensions(&slot_info(), 0x03),
        without_null: false,
    });
    Chain {
        slot,
        device,
        root: pem(&root),
        intermediates: vec![],
    }
}

fn new_pki_chain(key: &rsa::RsaPrivateKey, without_null: bool) -> Chain {
    let root_name = "CN=Yubico Attestation Root 1";
    let intermediate = "CN=Yubico Attestation Intermediate B 1";
    let piv = "CN=Yubico PIV Attestation B2 1";
    let link = |issuer, subject, ca| Link {
        issuer,
        subject,
        subject_spki: spki_of(key),
        signer: key,
        ca,
        extensions: vec![],
        without_null,
    };
    let root = issue_link(link(root_name, root_name, true));
    let intermediate_cert = issue_link(link(root_name, intermediate, true));
    let piv_cert = issue_link(link(intermediate, piv, true));
    let device = issue_link(link(piv, "CN=Yubico PIV Attestation", true));
    let slot = issue_link(Link {
        issuer: "CN=Yubico PIV Attestation",
        subject: "CN=YubiKey PIV Attestation 9c",
        subject_spki: slot_spki(),
        signer: key,
        ca: false,
        extensions: yubico_extensions(&slot_info(), 0x03),
        without_null,
    });
    Chain {
        slot,
        device,
        root: pem(&root),
        intermediates: vec![pem(&intermediate_cert), pem(&piv_cert)],
    }
}

fn roots(chain: &Chain, intermediates: &[String]) -> AttestationRoots {
    let mut roots = AttestationRoots::from_pem(&chain.root).unwrap();
    if !intermediates.is_empty() {
        roots = roots
            .with_intermediates_pem(&intermediates.concat())
            .unwrap();
    }
    roots
}

#[test]
fn both_yubico_chain_shapes_verify_with_and_without_null_parameters() {
    let key = rsa_fixture();
    let chains = [
        ("legacy", legacy_chain(&key)),
        ("5.7.4+ with NULL", new_pki_chain(&key, false)),
        ("5.7.4+ without NULL", new_pki_chain(&key, true)),
    ];
    for (shape, chain) in &chains {
        let attested = verify_exported_attestation(
            &chain.slot,
            &chain.device,
            &roots(chain, &chain.intermediates),
        )
        .unwrap_or_else(|e| panic!("{shape}: {e}"));
        assert_eq!(attested.serial, 31_415_926, "{shape}");
        assert_eq!(attested.firmware, "5.7.4", "{shape}");
        assert_eq!(attested.slot.to_string(), "9c", "{shape}");
        assert_eq!(attested.pin_policy, Some(PinPolicy::Once), "{shape}");
        assert_eq!(
            attested.form_factor,
            Some(FormFactor::UsbCKeychain),
            "{shape}"
        );
        assert!(
            attested.root.contains("Yubico"),
            "{shape}: {}",
            attested.root
        );
    }
    // The NULL-less encoding really is NULL-less (the test would prove nothing otherwise).
    use x509_cert::der::Decode;
    let bare = x509_cert::Certificate::from_der(&chains[2].1.slot).unwrap();
    assert!(bare.signature_algorithm().parameters.is_none());
    let with = x509_cert::Certificate::from_der(&chains[1].1.slot).unwrap();
    assert!(with.signature_algorithm().parameters.is_some());
}

#[test]
fn a_missing_link_a_foreign_root_or_a_changed_byte_is_refused() {
    let key = rsa_fixture();
    let chain = new_pki_chain(&key, true);
    // Without the PIV B2 1 intermediate the chain does not reach the root.
    let partial = roots(&chain, &chain.intermediates[..1]);
    assert!(verify_exported_attestation(&chain.slot, &chain.device, &partial).is_err());
    // The same names under another root key: a look-alike, refused.
    let stranger = rsa::RsaPrivateKey::new(&mut rand_core::UnwrapErr(getrandom::SysRng), 2048);
    let stranger = stranger.unwrap();
    let look_alike = new_pki_chain(&stranger, true);
    let err = verify_exported_attestation(
        &look_alike.slot,
        &look_alike.device,
        &roots(&chain, &chain.intermediates),
    )
    .unwrap_err();
    assert!(err.to_string().contains("does not verify"), "{err}");
    // One changed byte in the slot certificate's serial extension.
    let mut tampered = chain.slot.clone();
    let at = tampered
        .windows(4)
        .position(|w| w == 31_415_926u32.to_be_bytes())
        .expect("the serial is in the certificate");
    tampered[at + 3] ^= 1;
    assert!(verify_exported_attestation(
        &tampered,
        &chain.device,
        &roots(&chain, &chain.intermediates)
    )
    .is_err());
    // And none of these synthetic chains verifies under Yubico's real, embedded roots.
    let yubico = AttestationRoots::yubico().unwrap();
    for chain in [legacy_chain(&key), new_pki_chain(&key, false)] {
        assert!(verify_exported_attestation(&chain.slot, &chain.device, &yubico).is_err());
    }
}

// ---------------------------------------------------------------- the command line

/// `dfns-signer attestation verify` on an exported chain: exit 0 and exactly the documented
/// JSON facts under the chain's root; exit 1 (and `"verified": false`) under Yubico's embedded
/// roots, which a test chain is not anchored in, and for a changed byte.
#[cfg(feature = "cli")]
#[test]
fn attestation_verify_prints_the_facts_and_exits_0_only_for_a_trusted_chain() {
    use std::process::Command;
    let key = rsa_fixture();
    let chain = new_pki_chain(&key, true);
    let dir = std::env::temp_dir().join(format!("dfns-signer-attest-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let slot = write("slot.pem", &pem(&chain.slot));
    let device = write("f9.pem", &pem(&chain.device));
    let both = write("both.pem", &(pem(&chain.slot) + &pem(&chain.device)));
    let root = write("root.pem", &chain.root);
    let intermediates = write("intermediates.pem", &chain.intermediates.concat());
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_dfns-signer"))
            .args(["attestation", "verify"])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    };
    let injected = ["--roots", &root, "--intermediates", &intermediates];

    let (code, out, err) = run(&[
        &["--cert", &slot, "--device-cert", &device],
        &injected[..],
        &["--output", "json"],
    ]
    .concat());
    assert_eq!(code, 0, "{err}");
    let facts: serde_json::Value = serde_json::from_str(&out).unwrap();
    let mut fields: Vec<&str> = facts
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            "algorithm",
            "firmware",
            "form_factor",
            "pin_policy",
            "public_key",
            "root",
            "serial",
            "slot",
            "touch_policy",
            "verified"
        ]
    );
    assert_eq!(facts["verified"], true);
    assert_eq!(facts["serial"], 31_415_926);
    assert_eq!(facts["firmware"], "5.7.4");
    assert_eq!(facts["slot"], "9c");
    assert_eq!(facts["algorithm"], "p256");
    assert_eq!(facts["pin_policy"], "once");
    assert_eq!(facts["touch_policy"], "always");
    assert_eq!(facts["form_factor"], "usb-c-keychain");
    assert_eq!(facts["root"], "Yubico Attestation Root 1");
    assert!(facts["public_key"]
        .as_str()
        .unwrap()
        .starts_with("-----BEGIN PUBLIC KEY-----"));

    // The two-certificate file `keys attest` writes is enough alone; text output says so.
    let (code, out, err) = run(&[&["--cert", &both], &injected[..]].concat());
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("verified: "), "{out}");
    // ...with what an admin compares against the key being registered.
    assert!(out.contains("\nform factor: usb-c-keychain\n"), "{out}");
    assert!(
        out.contains(facts["public_key"].as_str().unwrap()),
        "the attested public key is printed: {out}"
    );

    // Under Yubico's embedded roots this test chain is refused.
    let (code, out, err) = run(&["--cert", &both, "--output", "json"]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["verified"],
        false
    );
    assert_eq!(err.trim_end().lines().count(), 2, "{err}");
    assert!(err.contains("no trusted root"), "{err}");

    // A changed byte in the slot certificate.
    let mut tampered = chain.slot.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    let tampered = write("tampered.pem", &pem(&tampered));
    let (code, _, err) = run(&[
        &["--cert", &tampered, "--device-cert", &device],
        &injected[..],
    ]
    .concat());
    assert_eq!(code, 1, "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
