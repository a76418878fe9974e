//! `piv setup`: the desk safety step. A YubiKey that still has its factory PIN, PUK or
//! management key signs for anyone who picks it up; this changes them (the PIN and PUK from
//! sources or typed twice at a terminal, checked before any try is spent) and replaces the
//! management key by a random one stored PIN-protected on the card.

use std::io::IsTerminal;
use std::process::ExitCode;

use dfns_signer::piv::{
    DeviceOptions, DeviceSelector, ManagementKey, NewManagementKey, PivDevice, FACTORY_PIN,
    FACTORY_PUK,
};
use dfns_signer::PinSource;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use super::failure::{Failure, EXIT_DEVICE};
use super::{print_json, Output};

/// PIV commands.
#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Change a YubiKey's factory PIN, PUK and management key before it signs anything.
    ///
    /// Example (a person at a terminal, prompted for the new PIN and PUK):
    ///   dfns-signer piv setup --serial 12345678 --protect-management-key
    /// Example (a script):
    ///   dfns-signer piv setup --serial 12345678 --new-pin-source env:NEW_PIN \
    ///     --new-puk-source env:NEW_PUK --protect-management-key --output json
    #[command(verbatim_doc_comment)]
    Setup(SetupArgs),
}

/// Arguments of `piv setup`.
#[derive(clap::Args, Debug)]
pub struct SetupArgs {
    /// The YubiKey's serial (needed when several are plugged in).
    #[arg(long)]
    serial: Option<u32>,
    /// Where the new PIN comes from: `env:NAME` or `file:PATH` (default: typed twice).
    #[arg(long, value_name = "SOURCE")]
    new_pin_source: Option<String>,
    /// Where the new PUK comes from: `env:NAME` or `file:PATH` (default: typed twice).
    #[arg(long, value_name = "SOURCE")]
    new_puk_source: Option<String>,
    /// The current PIN, when it is not the factory one (needed to protect the management key).
    #[arg(long, value_name = "SOURCE")]
    pin_source: Option<String>,
    /// Replace the factory management key by a random one stored PIN-protected on the card
    /// (at a terminal, piv setup offers this without the flag).
    #[arg(long)]
    protect_management_key: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

/// Runs a PIV command.
pub async fn run(command: Command) -> Result<ExitCode, Failure> {
    tokio::task::spawn_blocking(move || match command {
        Command::Setup(args) => setup(args),
    })
    .await
    .map_err(|e| Failure::from(format!("the PIV command did not finish: {e}")))?
}

/// A new secret from its source, or typed twice at a terminal (never read from a pipe).
fn new_secret(source: Option<&String>, what: &str) -> Result<SecretString, Failure> {
    match source {
        Some(text) => {
            let source = PinSource::parse(text).map_err(|e| {
                Failure::usage(
                    e.to_string(),
                    format!("give the new {what} as env:NAME or file:PATH"),
                )
            })?;
            Ok(source
                .read(&format!("new {what}"))
                .map_err(dfns_signer::Error::from)?)
        }
        None if std::io::stdin().is_terminal() => {
            let ask = |prompt: &str| {
                rpassword::prompt_password(prompt)
                    .map(SecretString::from)
                    .map_err(|e| {
                        Failure::usage(
                            format!("cannot read the {what}: {e}"),
                            "type it at the terminal",
                        )
                    })
            };
            // A wrong length is caught here, before the card sees anything, and asked again.
            let mut first = ask(&format!("New {what} (6 to 8 characters): "))?;
            let mut attempts = 1;
            while !(6..=8).contains(&first.expose_secret().len())
                || !first.expose_secret().is_ascii()
            {
                if attempts == 3 {
                    return Err(Failure::usage(
                        format!(
                            "no {what} of 6 to 8 ASCII characters was typed; nothing was changed"
                        ),
                        "run piv setup again",
                    ));
                }
                eprintln!(
                    "A {what} has 6 to 8 ASCII characters (digits are safest); this one does not."
                );
                first = ask(&format!("New {what} (6 to 8 characters): "))?;
                attempts += 1;
            }
            let again = ask(&format!("New {what} again: "))?;
            if first.expose_secret() != again.expose_secret() {
                return Err(Failure::usage(
                    format!("the two {what}s typed differ; nothing was changed"),
                    "run piv setup again",
                ));
            }
            Ok(first)
        }
        None => Err(Failure::usage(
            format!("the card still has its factory {what}, and no new {what} was given"),
            format!(
                "give --new-{}-source env:NAME or file:PATH, or run piv setup at a terminal",
                what.to_lowercase()
            ),
        )),
    }
}

/// Asks at the terminal whether to replace the factory management key (default yes).
fn offer_to_protect_management_key() -> Result<bool, Failure> {
    use std::io::Write;
    eprint!(
        "The card still has the factory management key: anyone can replace its keys.\n\
         Replace it by a random key stored PIN-protected on the card? [Y/n] "
    );
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .map_err(|e| Failure::usage(format!("cannot read the answer: {e}"), "type y or n"))?;
    Ok(!matches!(answer.trim().to_lowercase().as_str(), "n" | "no"))
}

fn setup(args: SetupArgs) -> Result<ExitCode, Failure> {
    let device = super::keys::wait_for_device(|| {
        PivDevice::open(
            &DeviceSelector {
                serial: args.serial,
                reader: None,
            },
            DeviceOptions::default(),
        )
    })?;
    let serial = device.info().serial;
    let before = device
        .factory_defaults()
        .map_err(dfns_signer::Error::from)?;

    let mut pin = None;
    let pin_changed = before.pin == Some(true);
    if pin_changed {
        let new = new_secret(args.new_pin_source.as_ref(), "PIN")?;
        device
            .change_pin(&SecretString::from(FACTORY_PIN), &new)
            .map_err(dfns_signer::Error::from)?;
        pin = Some(new);
    }
    let puk_changed = before.puk == Some(true);
    if puk_changed {
        let new = new_secret(args.new_puk_source.as_ref(), "PUK")?;
        device
            .change_puk(&SecretString::from(FACTORY_PUK), &new)
            .map_err(dfns_signer::Error::from)?;
    }
    let mut management_key = "unchanged";
    let mut printed_key = None;
    let at_terminal = std::io::stdin().is_terminal();
    let protect = before.management_key == Some(true)
        && (args.protect_management_key || (at_terminal && offer_to_protect_management_key()?));
    if protect {
        let pin = match (pin, &args.pin_source) {
            (Some(pin), _) => pin,
            (None, Some(source)) => PinSource::parse(source)
                .and_then(|s| s.read("PIN"))
                .map_err(dfns_signer::Error::from)?,
            (None, None) if at_terminal => PinSource::Prompt
                .read(&format!("PIV PIN for YubiKey serial {serial}"))
                .map_err(dfns_signer::Error::from)?,
            (None, None) => {
                return Err(Failure::usage(
                    "protecting the management key needs the card's PIN",
                    "give --pin-source env:NAME or file:PATH",
                ))
            }
        };
        match device
            .protect_management_key(&ManagementKey::Default, &pin)
            .map_err(dfns_signer::Error::from)?
        {
            NewManagementKey::Protected => management_key = "protected",
            NewManagementKey::NotStored { key_hex, reason } => {
                management_key = "not stored";
                eprintln!(
                    "the new management key could not be stored on the card ({reason}); \
                     this is its only copy, keep it now:"
                );
                printed_key = Some(key_hex);
            }
            other => return Err(Failure::from(format!("unexpected outcome {other:?}"))),
        }
    }
    let after = device
        .factory_defaults()
        .map_err(dfns_signer::Error::from)?;
    let left = after.remaining();
    let report = json!({
        "serial": serial,
        "pin_changed": pin_changed,
        "puk_changed": puk_changed,
        "management_key": management_key,
        "factory_defaults_left": left,
    });
    match args.output {
        Output::Json => print_json(&report, Output::Json),
        Output::Text => {
            println!(
                "YubiKey serial {serial}: PIN {}, PUK {}, management key {management_key}",
                if pin_changed {
                    "changed"
                } else {
                    "already set"
                },
                if puk_changed {
                    "changed"
                } else {
                    "already set"
                },
            );
        }
    }
    if let Some(key) = printed_key {
        println!("{}", key.as_str());
    }
    if !left.is_empty() {
        return Err(Failure::new(
            EXIT_DEVICE,
            format!(
                "YubiKey serial {serial} still has its factory {}",
                super::and_list(&left)
            ),
            "run `dfns-signer piv setup --protect-management-key` (and the new PIN and PUK) \
             before this card signs",
        ));
    }
    Ok(ExitCode::SUCCESS)
}
