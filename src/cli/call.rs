//! `call`: any Dfns endpoint, signed when it needs a user action.

use std::process::ExitCode;

use dfns_signer::protocol::{Method, Payload};
use dfns_signer::Outcome;

use super::failure::{Failure, EXIT_POLICY_PENDING};
use super::profile::{self, ApiArgs, Needs, ProfileArgs, SignerArgs};
use super::{print_json, Output};

/// Arguments of `call`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// HTTP method: GET, POST, PUT, PATCH, DELETE.
    method: String,
    /// API path, ids percent-encoded, optionally with a query (`/wallets?limit=10`).
    path: String,
    /// JSON body, or `@FILE` to read it from a file (sent and signed byte for byte).
    #[arg(long, value_name = "JSON|@FILE")]
    data: Option<String>,
    #[command(flatten)]
    signer: SignerArgs,
    #[command(flatten)]
    api: ApiArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

/// Sends the request and prints the answer.
pub async fn run(args: Args, global: &ProfileArgs) -> Result<ExitCode, Failure> {
    let method: Method = args
        .method
        .parse()
        .map_err(|e: dfns_signer::ProtocolError| {
            Failure::usage(e.to_string(), "give GET, POST, PUT, PATCH or DELETE")
        })?;
    let payload = match &args.data {
        None => Payload::empty(),
        Some(data) => {
            let text = match data.strip_prefix('@') {
                Some(file) => std::fs::read_to_string(file).map_err(|e| {
                    Failure::usage(format!("cannot read {file}: {e}"), "check the path after @")
                })?,
                None => data.clone(),
            };
            Payload::raw_json(text.trim_end().to_owned()).map_err(|e| {
                Failure::usage(format!("--data: {e}"), "give a JSON document, or @FILE")
            })?
        }
    };
    let settings = profile::settings(global, &args.api, Some(&args.signer))?;
    // A login needs no token; everything else does.
    let needs = if args.path.starts_with("/auth/login") && settings.auth_token.is_none() {
        Needs::Nothing
    } else {
        Needs::TokenAndSigner
    };
    let mut client = profile::client(&settings, needs)?;
    if needs == Needs::Nothing {
        if let Some(signer) = profile::signer(&settings)? {
            client = client.with_signer(signer);
        }
    }
    match client.request(method, &args.path, payload).await? {
        Outcome::Done(raw) => {
            if raw.body.is_empty() {
                return Ok(ExitCode::SUCCESS);
            }
            match serde_json::from_slice::<serde_json::Value>(&raw.body) {
                Ok(v) => print_json(&v, args.output),
                Err(_) => println!("{}", String::from_utf8_lossy(&raw.body)),
            }
            Ok(ExitCode::SUCCESS)
        }
        Outcome::PolicyPending(pending) => {
            print_json(&pending.body, args.output);
            eprintln!("pending: {pending}; the request runs once it is approved");
            Ok(ExitCode::from(EXIT_POLICY_PENDING))
        }
    }
}
