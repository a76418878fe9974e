//! `attestation verify`: offline check of a YubiKey attestation someone exported (`keys
//! attest`), against Yubico's roots embedded in this binary (or roots given for testing).
//!
//! A Dfns admin runs it before trusting a colleague's new credential: exit 0 only when the slot
//! certificate chains, signature by signature, to a trusted root; the facts printed (serial,
//! firmware, slot, policies, form factor, public key) come from the verified certificate.

use std::process::ExitCode;

use dfns_signer::piv::{verify_exported_attestation, AttestationRoots, AttestedKey};
use serde_json::json;
use x509_cert::der::{Decode, Encode};

use super::failure::{Failure, EXIT_OTHER};
use super::{print_json, Output};

/// Attestation commands.
#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Verify an exported PIV attestation against Yubico's roots (offline).
    ///
    /// Example:
    ///   dfns-signer keys attest --key 'piv:slot=9c?serial=12345678' --out colleague.pem
    ///   dfns-signer attestation verify --cert colleague.pem --output json
    #[command(verbatim_doc_comment)]
    Verify(VerifyArgs),
}

/// Arguments of `attestation verify`.
#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    /// The slot's attestation certificate (PEM or DER); a PEM file holding the slot
    /// certificate then the device (F9) certificate, as `keys attest` writes, is enough alone.
    #[arg(long, value_name = "SLOT.pem")]
    cert: String,
    /// The device's attestation certificate (slot F9), PEM or DER.
    #[arg(long, value_name = "F9.pem")]
    device_cert: Option<String>,
    /// Trust these roots (PEM) instead of Yubico's embedded ones: for test cards only.
    #[arg(long, value_name = "ROOTS.pem")]
    roots: Option<String>,
    /// Intermediate CAs (PEM) to use with `--roots`.
    #[arg(long, value_name = "INTERMEDIATES.pem", requires = "roots")]
    intermediates: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

/// Runs an attestation command.
pub fn run(command: Command) -> Result<ExitCode, Failure> {
    match command {
        Command::Verify(args) => verify(args),
    }
}

/// Every certificate in a file, as DER: PEM (one or more) or a single DER certificate.
fn certificates(path: &str) -> Result<Vec<Vec<u8>>, Failure> {
    let bytes = std::fs::read(path)
        .map_err(|e| Failure::usage(format!("cannot read {path}: {e}"), "check the path"))?;
    let unreadable = |why: String| {
        Failure::usage(
            format!("{path} holds no certificate: {why}"),
            "give the PEM file `dfns-signer keys attest` wrote, or DER certificates",
        )
    };
    if bytes.starts_with(b"-----BEGIN") {
        let certs = x509_cert::Certificate::load_pem_chain(&bytes)
            .map_err(|e| unreadable(e.to_string()))?;
        certs
            .iter()
            .map(|c| c.to_der().map_err(|e| unreadable(e.to_string())))
            .collect()
    } else {
        x509_cert::Certificate::from_der(&bytes).map_err(|e| unreadable(e.to_string()))?;
        Ok(vec![bytes])
    }
}

fn text(path: &str) -> Result<String, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::usage(format!("cannot read {path}: {e}"), "check the path"))?;
    // Parsed here only to give a clear error; the library parses again.
    x509_cert::Certificate::load_pem_chain(text.as_bytes()).map_err(|e| {
        Failure::usage(
            format!("{path} is not PEM certificates: {e}"),
            "check the file",
        )
    })?;
    Ok(text)
}

fn verify(args: VerifyArgs) -> Result<ExitCode, Failure> {
    let mut slot_file = certificates(&args.cert)?;
    let device =
        match &args.device_cert {
            Some(path) => certificates(path)?.remove(0),
            None if slot_file.len() >= 2 => slot_file.remove(1),
            None => return Err(Failure::usage(
                format!(
                    "{} holds one certificate; the device's is missing",
                    args.cert
                ),
                "add --device-cert F9.pem, or give the two-certificate file `keys attest` wrote",
            )),
        };
    let slot = slot_file.remove(0);
    let bad_roots = |e: dfns_signer::BackendError| {
        Failure::usage(e.to_string(), "check --roots and --intermediates")
    };
    let roots = match &args.roots {
        None => AttestationRoots::yubico().map_err(bad_roots)?,
        Some(path) => {
            let roots = AttestationRoots::from_pem(&text(path)?).map_err(bad_roots)?;
            match &args.intermediates {
                Some(path) => roots
                    .with_intermediates_pem(&text(path)?)
                    .map_err(bad_roots)?,
                None => roots,
            }
        }
    };

    match verify_exported_attestation(&slot, &device, &roots) {
        Ok(attested) => {
            match args.output {
                Output::Json => print_json(&facts(&attested), Output::Json),
                Output::Text => {
                    println!("verified: {attested}");
                    if let Some(form_factor) = attested.form_factor {
                        println!("form factor: {}", form_factor.name());
                    }
                    // The key the certificate vouches for, to compare with the one registered.
                    print!("{}", attested.public_key.to_pem());
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            if args.output == Output::Json {
                print_json(
                    &json!({ "verified": false, "error": e.to_string() }),
                    Output::Json,
                );
            }
            Err(Failure::new(
                EXIT_OTHER,
                e.to_string(),
                "do not trust this key as YubiKey-generated; ask for a fresh export \
                 (`dfns-signer keys attest`). A test card verifies only under its own CA \
                 (--roots FILE)",
            ))
        }
    }
}

/// The JSON facts of a verified attestation (field names are part of the CLI's interface).
fn facts(attested: &AttestedKey) -> serde_json::Value {
    let policy = |p: Option<String>| p.unwrap_or_else(|| "unknown".into());
    json!({
        "verified": true,
        "serial": attested.serial,
        "firmware": attested.firmware,
        "slot": attested.slot.to_string(),
        "algorithm": attested.public_key.algorithm().name(),
        "pin_policy": policy(attested.pin_policy.map(|p| format!("{p:?}").to_lowercase())),
        "touch_policy": policy(attested.touch_policy.map(|t| format!("{t:?}").to_lowercase())),
        "form_factor": attested.form_factor.map(|f| f.name()),
        "root": attested.root.strip_prefix("CN=").unwrap_or(&attested.root),
        "public_key": attested.public_key.to_pem(),
    })
}
