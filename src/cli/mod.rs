//! Command-line arguments and the commands behind them.

#[cfg(feature = "piv")]
mod attestation;
mod call;
#[cfg(feature = "simulator")]
mod demo;
mod failure;
#[cfg(feature = "piv")]
mod keys;
#[cfg(feature = "piv")]
mod piv;
mod sign_challenge;
#[cfg(feature = "simulator")]
mod simulator;
mod webhook;

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use dfns_signer::{CredentialSigner, KeyUri};
pub use failure::Failure;

/// Sign Dfns user-action challenges with keys that never leave hardware.
#[derive(Parser, Debug)]
#[command(name = "dfns-signer", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Read a `/auth/action/init` response on stdin, print the `firstFactor` assertion.
    SignChallenge(sign_challenge::Args),
    /// Call any Dfns endpoint, with a user action when the endpoint needs one.
    Call(call::Args),
    /// Run a local Dfns API simulator (prints one JSON line once it listens).
    #[cfg(feature = "simulator")]
    Simulator(simulator::Args),
    /// The whole flow end to end on a local simulator: key, registration, signed calls.
    #[cfg(feature = "simulator")]
    Demo(demo::Args),
    /// Check webhook deliveries from Dfns (signature and freshness).
    #[command(subcommand)]
    Webhook(webhook::Command),
    /// The keys on this machine's YubiKeys: list, show, attest, generate.
    #[cfg(feature = "piv")]
    #[command(subcommand)]
    Keys(keys::Command),
    /// YubiKey set-up: change the factory PIN, PUK and management key.
    #[cfg(feature = "piv")]
    #[command(subcommand)]
    Piv(piv::Command),
    /// Check YubiKey attestations offline, against Yubico's embedded roots.
    #[cfg(feature = "piv")]
    #[command(subcommand)]
    Attestation(attestation::Command),
}

/// How results are printed.
#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Output {
    /// Pretty-printed for people.
    #[default]
    Text,
    /// One compact JSON document, for scripts.
    Json,
}

/// The key and credential that sign user actions.
#[derive(clap::Args, Debug)]
pub struct KeyArgs {
    /// The credential key: `file:/path/key.pem`, `pkcs11:token=…;object=…?module-path=…&pin-source=env:PIN`
    /// or `piv:slot=9a?serial=…&pin-source=prompt`.
    #[arg(long, value_name = "URI")]
    key: Option<String>,
    /// The Dfns credential id registered for this key.
    #[arg(long, value_name = "ID")]
    cred_id: Option<String>,
}

impl KeyArgs {
    /// Opens the key; `None` when no key was given.
    fn signer(&self) -> Result<Option<CredentialSigner>, Failure> {
        match (&self.key, &self.cred_id) {
            (None, None) => Ok(None),
            (Some(_), None) => Err(Failure::usage(
                "--key needs --cred-id",
                "add --cred-id ID: the credential id Dfns knows this key by",
            )),
            (None, Some(_)) => Err(Failure::usage(
                "--cred-id needs --key",
                "add --key URI: the key registered under that credential id",
            )),
            (Some(uri), Some(id)) => {
                let uri = KeyUri::parse(uri).map_err(dfns_signer::Error::from)?;
                let backend = open_key(&uri).map_err(dfns_signer::Error::from)?;
                Ok(Some(CredentialSigner::new(id.clone(), backend)))
            }
        }
    }
}

/// Opens a key for a person at a terminal: a YubiKey whose slot wants a touch says so on stderr.
fn open_key(
    uri: &KeyUri,
) -> Result<std::sync::Arc<dyn dfns_signer::KeyBackend>, dfns_signer::BackendError> {
    match uri {
        #[cfg(feature = "piv")]
        KeyUri::Piv(attrs) => {
            let key = dfns_signer::piv::builder_from_uri(attrs)?
                .on_touch(|request| eprintln!("{request}"))
                .open()?;
            Ok(std::sync::Arc::new(key))
        }
        other => dfns_signer::open(other),
    }
}

/// Prints a JSON value as the output format asks.
fn print_json(value: &serde_json::Value, output: Output) {
    let text = match output {
        Output::Json => serde_json::to_string(value),
        Output::Text => serde_json::to_string_pretty(value),
    };
    println!("{}", text.expect("a JSON value serializes"));
}

/// Logs go to stderr, at the level `DFNS_SIGNER_LOG` sets (default `warn`, and nothing from
/// the `yubikey` crate).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("DFNS_SIGNER_LOG")
        // The `yubikey` crate logs ERROR for normal events (an empty reader while probing),
        // which would break the two-line error format: its logs show only when asked for.
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,yubikey=off"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Runs a command; `Err` is reported as two lines on stderr with its exit status
/// ([`failure`] lists them).
pub async fn run(cli: Cli) -> Result<ExitCode, Failure> {
    match cli.command {
        Command::SignChallenge(args) => sign_challenge::run(args).await,
        Command::Call(args) => call::run(args).await,
        #[cfg(feature = "simulator")]
        Command::Simulator(args) => Ok(simulator::run(args).await?),
        #[cfg(feature = "simulator")]
        Command::Demo(args) => Ok(demo::run(args).await?),
        Command::Webhook(command) => webhook::run(command).await,
        #[cfg(feature = "piv")]
        Command::Attestation(command) => attestation::run(command),
        #[cfg(feature = "piv")]
        Command::Keys(command) => keys::run(command).await,
        #[cfg(feature = "piv")]
        Command::Piv(command) => piv::run(command).await,
    }
}
