//! Command-line arguments and the commands behind them.

#[cfg(feature = "piv")]
mod attestation;
mod audit;
mod bench;
mod call;
mod completions;
mod credential;
#[cfg(feature = "simulator")]
mod demo;
mod doctor;
mod failure;
#[cfg(feature = "piv")]
mod keys;
mod login;
#[cfg(feature = "piv")]
mod piv;
mod profile;
#[cfg(feature = "serve")]
mod serve;
mod service_account;
mod sign_challenge;
#[cfg(feature = "simulator")]
mod simulator;
mod webhook;

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use dfns_signer::KeyUri;
pub use failure::Failure;

/// Sign Dfns user-action challenges with keys that never leave hardware.
#[derive(Parser, Debug)]
#[command(name = "dfns-signer", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    profile: profile::ProfileArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Read a `/auth/action/init` response on stdin, print the `firstFactor` assertion.
    ///
    /// Example (a backend hands over the challenge; the desk signs it):
    ///   dfns-signer sign-challenge --key 'piv:slot=9c?pin-source=prompt' --cred-id Y2ktMX… < init.json
    #[command(verbatim_doc_comment)]
    SignChallenge(sign_challenge::Args),
    /// Call any Dfns endpoint, with a user action when the endpoint needs one.
    ///
    /// The key, credential id, base URL and token come from the flags, else DFNS_KEY,
    /// DFNS_CRED_ID, DFNS_API_URL and DFNS_AUTH_TOKEN, else the profile.
    ///
    /// Example:
    ///   dfns-signer call POST /wallets --data '{"network":"EthereumSepolia"}' --profile custody
    #[command(verbatim_doc_comment)]
    Call(call::Args),
    /// Register, list and deactivate Key credentials.
    #[command(subcommand)]
    Credential(credential::Command),
    /// Create a service account whose credential is a key on this machine.
    #[command(subcommand)]
    ServiceAccount(service_account::Command),
    /// Log a user in with a Key credential; prints the login token.
    ///
    /// Example:
    ///   dfns-signer login --key 'piv:slot=9a?pin-source=prompt' --username jo@example.com --org-id or-…
    #[command(verbatim_doc_comment)]
    Login(login::Args),
    /// Check that the configuration, the key, the credential, the API, the token and the clock
    /// line up, with the fix for each that does not.
    ///
    /// Example:
    ///   dfns-signer doctor --profile custody
    #[command(verbatim_doc_comment)]
    Doctor(doctor::Args),
    /// Measure signed requests: N `POST /wallets`, C in flight, after a warm-up; prints
    /// requests/s, p50/p99 latency, errors and this process's CPU per request.
    ///
    /// Without a base URL (flag, DFNS_API_URL or profile) the requests go to a simulator in
    /// this process whose root credential is the key (then --cred-id may be left out).
    ///
    /// Example:
    ///   dfns-signer bench --key file:key.pem --requests 2000 --concurrency 16 --output json
    #[command(verbatim_doc_comment)]
    Bench(bench::Args),
    /// Print a shell completion script.
    ///
    /// Example:
    ///   dfns-signer completions bash > /etc/bash_completion.d/dfns-signer
    #[command(verbatim_doc_comment)]
    Completions(completions::Args),
    /// Run a local Dfns API simulator (prints one JSON line once it listens).
    ///
    /// Example:
    ///   dfns-signer simulator --listen 127.0.0.1:8787 --root-public-key admin.pub.pem > sim.json &
    #[command(verbatim_doc_comment)]
    #[cfg(feature = "simulator")]
    Simulator(simulator::Args),
    /// The whole flow end to end on a local simulator: key, registration, signed calls.
    ///
    /// Example:
    ///   dfns-signer demo --algorithm ed25519
    #[command(verbatim_doc_comment)]
    #[cfg(feature = "simulator")]
    Demo(demo::Args),
    /// The signing service: approves Dfns requests for other processes (any language, the
    /// official SDKs through a remote signer) with this machine's keys, under a local policy.
    ///
    /// Reads [service], [listen], [[keys]] and [[clients]] from the configuration file
    /// (docs/service.md); serves until SIGTERM or Ctrl-C.
    ///
    /// Example:
    ///   dfns-signer serve --config /etc/dfns-signer/signer.toml
    #[command(verbatim_doc_comment)]
    #[cfg(feature = "serve")]
    Serve(serve::Args),
    /// Check webhook deliveries from Dfns (signature and freshness).
    #[command(subcommand)]
    Webhook(webhook::Command),
    /// The signing service's audit log: check its hash chain, print its entries.
    ///
    /// Example:
    ///   dfns-signer audit verify /var/log/dfns-signer/audit.log
    #[command(verbatim_doc_comment)]
    #[command(subcommand)]
    Audit(audit::Command),
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

/// Opens a key for a person at a terminal: a YubiKey whose slot wants a touch says so on stderr.
pub(crate) fn open_key(
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

/// Names joined for a sentence: `PIN`, `PIN and PUK`, `PIN, PUK and management key`.
pub(crate) fn and_list(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [only] => (*only).to_owned(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
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
    let global = &cli.profile;
    match cli.command {
        Command::SignChallenge(args) => sign_challenge::run(args, global).await,
        Command::Call(args) => call::run(args, global).await,
        Command::Credential(command) => credential::run(command, global).await,
        Command::ServiceAccount(command) => service_account::run(command, global).await,
        Command::Login(args) => login::run(args, global).await,
        Command::Doctor(args) => doctor::run(args, global).await,
        Command::Bench(args) => bench::run(args, global).await,
        Command::Completions(args) => completions::run(args),
        #[cfg(feature = "simulator")]
        Command::Simulator(args) => Ok(simulator::run(args).await?),
        #[cfg(feature = "simulator")]
        Command::Demo(args) => Ok(demo::run(args).await?),
        Command::Webhook(command) => webhook::run(command).await,
        Command::Audit(command) => audit::run(command),
        #[cfg(feature = "serve")]
        Command::Serve(args) => serve::run(args, global).await,
        #[cfg(feature = "piv")]
        Command::Attestation(command) => attestation::run(command),
        #[cfg(feature = "piv")]
        Command::Keys(command) => keys::run(command).await,
        #[cfg(feature = "piv")]
        Command::Piv(command) => piv::run(command).await,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn lists_read_as_sentences() {
        assert_eq!(super::and_list(&[]), "");
        assert_eq!(super::and_list(&["PIN"]), "PIN");
        assert_eq!(super::and_list(&["PIN", "PUK"]), "PIN and PUK");
        assert_eq!(
            super::and_list(&["PIN", "PUK", "management key"]),
            "PIN, PUK and management key"
        );
    }
}
