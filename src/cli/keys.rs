//! `keys`: the credential keys on this machine's devices — list them, show one, export a
//! YubiKey slot's attestation, generate a key inside a device.
//!
//! Thin: each subcommand is a library call (`piv::list_devices`, `PivDevice::attestation`,
//! `PivDevice::generate_key`, `pkcs11::generate_key_for_uri`, `Pkcs11Key::provenance`…) and a
//! printout.

use std::process::ExitCode;

use dfns_signer::piv::{
    self, parse_pin_policy, parse_touch_policy, AttestationRoots, KeyGeneration, ManagementKey,
    PinPolicy, PivDevice, PivKey, Slot, TouchPolicy,
};
use dfns_signer::{Algorithm, KeyBackend, KeyUri};
use serde_json::{json, Value};
use x509_cert::der::pem::LineEnding;

use super::failure::Failure;
use super::{print_json, Output};

/// Key commands.
#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// List the YubiKeys plugged in and their filled slots, and a PKCS#11 module's tokens.
    ///
    /// Examples:
    ///   dfns-signer keys list --output json
    ///   dfns-signer keys list --module /usr/lib/softhsm/libsofthsm2.so
    #[command(verbatim_doc_comment)]
    List(ListArgs),
    /// Show a key: algorithm, public key, where it lives, and what its device vouches for.
    ///
    /// Example:
    ///   dfns-signer keys show --key 'piv:slot=9c?serial=12345678'
    #[command(verbatim_doc_comment)]
    Show(ShowArgs),
    /// Export a YubiKey slot's attestation (slot and device certificates, one PEM file).
    ///
    /// Example:
    ///   dfns-signer keys attest --key 'piv:slot=9c?serial=12345678' --out my-key.pem
    #[command(verbatim_doc_comment)]
    Attest(AttestArgs),
    /// Generate a key inside a YubiKey slot or on a PKCS#11 token (never exportable) and print
    /// its public key.
    ///
    /// Examples:
    ///   dfns-signer keys generate --key 'piv:slot=9c?serial=12345678&pin-source=prompt'
    ///   dfns-signer keys generate --key 'pkcs11:token=custody;object=dfns-1;id=%01?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=env:HSM_PIN'
    #[command(verbatim_doc_comment)]
    Generate(GenerateArgs),
}

/// Arguments of `keys list`.
#[derive(clap::Args, Debug)]
pub struct ListArgs {
    /// Also list this PKCS#11 module's tokens and their keys (read without a login).
    #[cfg(feature = "pkcs11")]
    #[arg(long, value_name = "PATH", env = "DFNS_SIGNER_PKCS11_MODULE")]
    module: Option<std::path::PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

/// Arguments of `keys show`.
#[derive(clap::Args, Debug)]
pub struct ShowArgs {
    /// The key: `piv:slot=…?serial=…`, `pkcs11:…` or `file:…`.
    #[arg(long, value_name = "URI")]
    key: String,
    /// Check a YubiKey's attestation against these roots (PEM) instead of Yubico's embedded
    /// ones: for test cards only.
    #[arg(long, value_name = "ROOTS.pem")]
    roots: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

/// Arguments of `keys attest`.
#[derive(clap::Args, Debug)]
pub struct AttestArgs {
    /// The YubiKey slot: `piv:slot=9c?serial=…`.
    #[arg(long, value_name = "URI")]
    key: String,
    /// Write the PEM file here (default: stdout).
    #[arg(long, value_name = "FILE")]
    out: Option<String>,
    /// Output format (of the summary when `--out` is given).
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

/// Arguments of `keys generate`.
#[derive(clap::Args, Debug)]
pub struct GenerateArgs {
    /// Where: `piv:slot=9c?serial=…&pin-source=…` (the PIN signs the slot's certificate), or
    /// `pkcs11:token=…;object=LABEL;id=ID?module-path=…&pin-source=…` (label and id of the new
    /// key; the same URI opens it afterwards).
    #[arg(long, value_name = "URI")]
    key: String,
    /// Algorithm: p256, secp256k1 (PKCS#11), rsa (RSA-2048) or ed25519 (YubiKey firmware 5.7+).
    #[arg(long, default_value = "p256")]
    algorithm: String,
    /// When the YubiKey asks for the PIN: once (per session; the default), always, never.
    #[arg(long)]
    pin_policy: Option<String>,
    /// When the YubiKey waits for a touch: always (the default), cached (15 s), never.
    #[arg(long)]
    touch_policy: Option<String>,
    /// Replace a key already in the slot (it is lost for good).
    #[arg(long)]
    force: bool,
    /// The management key, hex, from an environment variable or file (`env:NAME`, `file:PATH`);
    /// default: the one `piv setup` stored PIN-protected on the card, else the factory key.
    #[arg(long, value_name = "SOURCE")]
    management_key_source: Option<String>,
    /// Generate even though the card still has its factory PIN, PUK or management key (for
    /// throw-away and test cards only).
    #[arg(long)]
    allow_factory_defaults: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

/// Runs a key command.
pub async fn run(command: Command) -> Result<ExitCode, Failure> {
    // Device work blocks (PC/SC, a person touching the key): off the async runtime.
    tokio::task::spawn_blocking(move || match command {
        Command::List(args) => list(args),
        Command::Show(args) => show(args),
        Command::Attest(args) => attest(args),
        Command::Generate(args) => generate(args),
    })
    .await
    .map_err(|e| Failure::from(format!("the key command did not finish: {e}")))?
}

fn parse_uri(text: &str) -> Result<KeyUri, Failure> {
    KeyUri::parse(text).map_err(|e| Failure::from(dfns_signer::Error::from(e)))
}

/// The slot and device of a `piv:` URI.
fn piv_device(text: &str) -> Result<(Slot, PivDevice), Failure> {
    match parse_uri(text)? {
        KeyUri::Piv(attrs) => {
            let slot = piv::builder_from_uri(&attrs)
                .map_err(dfns_signer::Error::from)?
                .slot();
            let device = wait_for_device(|| piv::builder_from_uri(&attrs)?.open_device())?;
            Ok((slot, device))
        }
        _ => Err(Failure::usage(
            format!("{text} is not a YubiKey slot"),
            "give a piv: URI, e.g. piv:slot=9c?serial=12345678",
        )),
    }
}

/// How long a desk command waits for a YubiKey that is not plugged in yet.
pub(super) const DEVICE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Opens a YubiKey with `open`; when none matches yet, says so once and keeps trying for
/// [`DEVICE_WAIT`] (a person plugging the key in after typing the command), then fails as
/// `open` does.
pub(super) fn wait_for_device(
    open: impl Fn() -> Result<PivDevice, dfns_signer::BackendError>,
) -> Result<PivDevice, Failure> {
    let started = std::time::Instant::now();
    let mut said = false;
    loop {
        match open() {
            Err(dfns_signer::BackendError::DeviceNotFound { wanted, .. })
                if started.elapsed() < DEVICE_WAIT =>
            {
                if !said {
                    eprintln!(
                        "waiting up to {} s for {wanted} to be plugged in…",
                        DEVICE_WAIT.as_secs()
                    );
                    said = true;
                }
                std::thread::sleep(std::time::Duration::from_millis(250));
            }
            other => return Ok(other.map_err(dfns_signer::Error::from)?),
        }
    }
}

fn policy_name<T: std::fmt::Debug>(policy: T) -> String {
    format!("{policy:?}").to_lowercase()
}

fn list(args: ListArgs) -> Result<ExitCode, Failure> {
    #[cfg(feature = "pkcs11")]
    let tokens = match &args.module {
        None => None,
        Some(path) => {
            Some(dfns_signer::pkcs11::list_tokens(Some(path)).map_err(dfns_signer::Error::from)?)
        }
    };
    #[cfg(not(feature = "pkcs11"))]
    let tokens: Option<Vec<()>> = None;
    // With a module to list, a machine without pcscd still gets its tokens listed.
    let devices = match piv::list_devices() {
        Ok(devices) => devices,
        Err(e) if tokens.is_some() => {
            eprintln!("note: no YubiKeys listed: {e}");
            Vec::new()
        }
        Err(e) => return Err(dfns_signer::Error::from(e).into()),
    };
    let mut listed = Vec::new();
    for info in devices {
        let device = PivDevice::open(
            &piv::DeviceSelector {
                serial: Some(info.serial),
                reader: Some(info.reader.clone()),
            },
            Default::default(),
        )
        .map_err(dfns_signer::Error::from)?;
        let keys: Vec<PivKey> = Slot::all()
            .into_iter()
            .filter_map(|slot| PivKey::on_device(&device, slot).ok())
            .collect();
        // The model is stated in the attestation of a key generated on the card (no PIN
        // needed); a card with no such key cannot say.
        let form_factor = keys.iter().find_map(|key| {
            device
                .attestation(key.slot())
                .ok()
                .and_then(|evidence| evidence.stated_form_factor())
        });
        let slots: Vec<Value> = keys
            .iter()
            .map(|key| {
                json!({
                    "slot": key.slot().to_string(),
                    "algorithm": key.algorithm().name(),
                    "pin_policy": policy_name(key.pin_policy()),
                    "touch_policy": policy_name(key.touch_policy()),
                    "key": format!("piv:slot={}?serial={}", key.slot(), info.serial),
                })
            })
            .collect();
        listed.push(json!({
            "serial": info.serial,
            "firmware": info.version,
            "reader": info.reader,
            "form_factor": form_factor.map(|f| f.name()),
            "slots": slots,
        }));
    }
    #[cfg(feature = "pkcs11")]
    let token_json: Option<Vec<Value>> = tokens.as_ref().map(|tokens| {
        tokens
            .iter()
            .map(|t| {
                json!({
                    "label": t.label,
                    "serial": t.serial,
                    "manufacturer": t.manufacturer,
                    "model": t.model,
                    "slot_id": t.slot_id,
                    "keys": t.keys.iter().map(|k| json!({
                        "label": k.label,
                        "id": k.id_hex,
                        "type": k.key_type,
                        "key": k.uri,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect()
    });
    #[cfg(not(feature = "pkcs11"))]
    let token_json: Option<Vec<Value>> = tokens.map(|_| Vec::new());
    match args.output {
        Output::Json => {
            let mut out = json!({ "yubikeys": listed });
            if let Some(tokens) = &token_json {
                out["pkcs11_tokens"] = json!(tokens);
            }
            print_json(&out, Output::Json)
        }
        Output::Text if listed.is_empty() && token_json.is_none() => println!("no YubiKey found"),
        Output::Text => {
            for token in token_json.iter().flatten() {
                println!(
                    "PKCS#11 token \"{}\" (serial {}, {} {})",
                    token["label"].as_str().unwrap_or_default(),
                    token["serial"].as_str().unwrap_or_default(),
                    token["manufacturer"].as_str().unwrap_or_default(),
                    token["model"].as_str().unwrap_or_default(),
                );
                for key in token["keys"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                {
                    println!(
                        "  {} ({}, id {})  '{}'",
                        key["label"].as_str().unwrap_or_default(),
                        key["type"].as_str().unwrap_or_default(),
                        key["id"].as_str().unwrap_or_default(),
                        key["key"].as_str().unwrap_or_default(),
                    );
                }
            }
            for yk in &listed {
                println!(
                    "YubiKey serial {} (firmware {}, form factor {}, reader \"{}\")",
                    yk["serial"],
                    yk["firmware"].as_str().unwrap_or_default(),
                    yk["form_factor"]
                        .as_str()
                        .unwrap_or("unknown: no attestable key"),
                    yk["reader"].as_str().unwrap_or_default()
                );
                let slots = yk["slots"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                if slots.is_empty() {
                    println!("  no key in any slot");
                }
                for slot in slots {
                    println!(
                        "  slot {}: {} (PIN {}, touch {})  '{}'",
                        slot["slot"].as_str().unwrap_or_default(),
                        slot["algorithm"].as_str().unwrap_or_default(),
                        slot["pin_policy"].as_str().unwrap_or_default(),
                        slot["touch_policy"].as_str().unwrap_or_default(),
                        slot["key"].as_str().unwrap_or_default(),
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn show(args: ShowArgs) -> Result<ExitCode, Failure> {
    let uri = parse_uri(&args.key)?;
    let mut facts = json!({ "key": args.key });
    match &uri {
        KeyUri::Piv(attrs) => {
            let key = piv::builder_from_uri(attrs)
                .and_then(|b| b.verify_pin_at_open(false).open())
                .map_err(dfns_signer::Error::from)?;
            facts["algorithm"] = json!(key.algorithm().name());
            facts["public_key"] = json!(key.public_key().to_pem());
            facts["location"] = json!(key.describe());
            facts["pin_policy"] = json!(policy_name(key.pin_policy()));
            facts["touch_policy"] = json!(policy_name(key.touch_policy()));
            let roots = match &args.roots {
                None => AttestationRoots::yubico(),
                Some(path) => std::fs::read_to_string(path)
                    .map_err(|e| dfns_signer::BackendError::KeyLoad {
                        what: path.clone(),
                        reason: e.to_string(),
                    })
                    .and_then(|pem| AttestationRoots::from_pem(&pem)),
            }
            .map_err(dfns_signer::Error::from)?;
            facts["attestation"] = match key.device().attest(key.slot(), &roots) {
                Ok(attested) => json!({
                    "verified": true,
                    "serial": attested.serial,
                    "firmware": attested.firmware,
                    "root": attested.root.strip_prefix("CN=").unwrap_or(&attested.root),
                    "form_factor": attested.form_factor.map(|f| f.name()),
                }),
                Err(e) => json!({ "verified": false, "error": e.to_string() }),
            };
        }
        #[cfg(feature = "pkcs11")]
        KeyUri::Pkcs11(attrs) => {
            let config = dfns_signer::pkcs11::Pkcs11Config::from_uri(attrs)
                .map_err(dfns_signer::Error::from)?;
            let key =
                dfns_signer::pkcs11::Pkcs11Key::open(&config).map_err(dfns_signer::Error::from)?;
            let p = key.provenance();
            facts["algorithm"] = json!(key.algorithm().name());
            facts["public_key"] = json!(key.public_key().to_pem());
            facts["location"] = json!(key.describe());
            facts["provenance"] = json!({
                "local": p.local,
                "never_extractable": p.never_extractable,
                "always_sensitive": p.always_sensitive,
                "sensitive": p.sensitive,
                "extractable": p.extractable,
                "private": p.private,
                "never_left_the_token": p.never_left_the_token(),
            });
        }
        other => {
            let key = dfns_signer::open(other).map_err(dfns_signer::Error::from)?;
            facts["algorithm"] = json!(key.algorithm().name());
            facts["public_key"] = json!(key.public_key().to_pem());
            facts["location"] = json!(key.describe());
        }
    }
    match args.output {
        Output::Json => print_json(&facts, Output::Json),
        Output::Text => {
            println!("{}", facts["location"].as_str().unwrap_or_default());
            println!(
                "algorithm: {}",
                facts["algorithm"].as_str().unwrap_or_default()
            );
            if let Some(pin) = facts["pin_policy"].as_str() {
                println!(
                    "PIN policy: {pin}, touch policy: {}",
                    facts["touch_policy"].as_str().unwrap_or_default()
                );
            }
            if let Some(p) = facts.get("provenance") {
                println!(
                    "generated on the token and never left it: {}",
                    if p["never_left_the_token"] == true {
                        "yes"
                    } else {
                        "not vouched for"
                    }
                );
            }
            if let Some(a) = facts.get("attestation") {
                match a["verified"].as_bool() {
                    Some(true) => println!(
                        "attestation: verified, YubiKey serial {} (firmware {}), root \"{}\"",
                        a["serial"],
                        a["firmware"].as_str().unwrap_or_default(),
                        a["root"].as_str().unwrap_or_default()
                    ),
                    _ => println!(
                        "attestation: NOT verified: {}",
                        a["error"].as_str().unwrap_or_default()
                    ),
                }
            }
            print!("{}", facts["public_key"].as_str().unwrap_or_default());
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn pem(der: &[u8]) -> Result<String, Failure> {
    x509_cert::der::pem::encode_string("CERTIFICATE", LineEnding::LF, der)
        .map_err(|e| Failure::from(format!("cannot encode a certificate as PEM: {e}")))
}

fn attest(args: AttestArgs) -> Result<ExitCode, Failure> {
    let (slot, device) = piv_device(&args.key)?;
    let evidence = device.attestation(slot).map_err(dfns_signer::Error::from)?;
    let file = pem(&evidence.key_certificate_der)? + &pem(&evidence.device_certificate_der)?;
    match &args.out {
        None => print!("{file}"),
        Some(path) => {
            std::fs::write(path, &file)
                .map_err(|e| Failure::usage(format!("cannot write {path}: {e}"), "check --out"))?;
            let summary = json!({
                "key": args.key,
                "serial": device.info().serial,
                "slot": slot.to_string(),
                "file": path,
            });
            match args.output {
                Output::Json => print_json(&summary, Output::Json),
                Output::Text => println!(
                    "wrote the attestation of slot {slot} (YubiKey serial {}) to {path}; \
                     check it with: dfns-signer attestation verify --cert {path}",
                    device.info().serial
                ),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn generate(args: GenerateArgs) -> Result<ExitCode, Failure> {
    let algorithm = Algorithm::from_name(&args.algorithm).ok_or_else(|| {
        Failure::usage(
            format!("unknown algorithm {}", args.algorithm),
            "give p256, rsa or ed25519",
        )
    })?;
    #[cfg(feature = "pkcs11")]
    if let KeyUri::Pkcs11(attrs) = parse_uri(&args.key)? {
        return generate_pkcs11(&args, &attrs, algorithm);
    }
    let policy = |e: dfns_signer::BackendError| Failure::usage(e.to_string(), "see --help");
    let pin_policy: PinPolicy =
        parse_pin_policy(args.pin_policy.as_deref().unwrap_or("once")).map_err(policy)?;
    let touch_policy: TouchPolicy =
        parse_touch_policy(args.touch_policy.as_deref().unwrap_or("always")).map_err(policy)?;
    let (slot, device) = piv_device(&args.key)?;
    let defaults = device
        .factory_defaults()
        .map_err(dfns_signer::Error::from)?;
    let management_key = match &args.management_key_source {
        // Set up by `piv setup`: the key is on the card, behind the PIN.
        None if defaults.management_key == Some(false) => ManagementKey::PinProtected,
        None => ManagementKey::Default,
        Some(source) => {
            let source = dfns_signer::PinSource::parse(source).map_err(|e| {
                Failure::usage(
                    e.to_string(),
                    "give env:NAME or file:PATH holding the key as hex",
                )
            })?;
            let hex = source
                .read("the management key")
                .map_err(dfns_signer::Error::from)?;
            ManagementKey::from_hex(secrecy::ExposeSecret::expose_secret(&hex))
                .map_err(dfns_signer::Error::from)?
        }
    };
    let left = defaults.remaining();
    if !left.is_empty() && !args.allow_factory_defaults {
        return Err(Failure::new(
            super::failure::EXIT_DEVICE,
            format!(
                "YubiKey serial {} still has its factory {}: a key made now would sign for \
                 anyone holding the card",
                device.info().serial,
                super::and_list(&left)
            ),
            format!(
                "run `dfns-signer piv setup --serial {} --protect-management-key` first \
                 (or pass --allow-factory-defaults for a throw-away test card)",
                device.info().serial
            ),
        ));
    }
    let mut spec = KeyGeneration::new(slot);
    spec.algorithm = algorithm;
    spec.pin_policy = pin_policy;
    spec.touch_policy = touch_policy;
    spec.force = args.force;
    let generated = device
        .generate_key(&spec, &management_key)
        .map_err(dfns_signer::Error::from)?;
    let attestation = device.attestation(slot).ok().and_then(|evidence| {
        Some(
            pem(&evidence.key_certificate_der).ok()?
                + &pem(&evidence.device_certificate_der).ok()?,
        )
    });
    let key_uri = format!("piv:slot={slot}?serial={}", device.info().serial);
    match args.output {
        Output::Json => print_json(
            &json!({
                "public_key": generated.public_key.to_pem(),
                "algorithm": algorithm.name(),
                "key": key_uri,
                "attestation": attestation,
            }),
            Output::Json,
        ),
        Output::Text => {
            eprintln!(
                "generated a {} key in slot {slot} of YubiKey serial {} (PIN {}, touch {}); \
                 it cannot be exported. Sign with --key '{key_uri}&pin-source=prompt'",
                algorithm,
                device.info().serial,
                policy_name(pin_policy),
                policy_name(touch_policy),
            );
            print!("{}", generated.public_key.to_pem());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `keys generate` on a PKCS#11 token: the key pair is made on the token (sensitive, never
/// extractable), labelled and identified as the URI says, so the same URI opens it.
#[cfg(feature = "pkcs11")]
fn generate_pkcs11(
    args: &GenerateArgs,
    attrs: &dfns_signer::UriAttributes,
    algorithm: Algorithm,
) -> Result<ExitCode, Failure> {
    if args.pin_policy.is_some() || args.touch_policy.is_some() || args.force {
        return Err(Failure::usage(
            "--pin-policy, --touch-policy and --force are YubiKey settings",
            "leave them out for a PKCS#11 token (its PIN guards every key; an existing key is \
             never replaced: give a new object= label and id=)",
        ));
    }
    let public_key = dfns_signer::pkcs11::generate_key_for_uri(attrs, algorithm)
        .map_err(dfns_signer::Error::from)?;
    match args.output {
        Output::Json => print_json(
            &json!({
                "public_key": public_key.to_pem(),
                "algorithm": algorithm.name(),
                "key": args.key,
                "attestation": null,
            }),
            Output::Json,
        ),
        Output::Text => {
            eprintln!(
                "generated a {algorithm} key on the token; it cannot be exported. Sign with --key '{}'",
                args.key
            );
            print!("{}", public_key.to_pem());
        }
    }
    Ok(ExitCode::SUCCESS)
}
