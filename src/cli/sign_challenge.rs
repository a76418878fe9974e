//! `sign-challenge`: the delegated-signing half a person runs at a desk.
//!
//! A backend calls `/auth/action/init` and hands over the response; this signs it with the
//! credential key (refusing a challenge that does not list the credential) and prints the
//! `firstFactor` assertion for the backend to complete with `/auth/action`.

use std::io::Read;
use std::process::ExitCode;

use dfns_signer::protocol::UserActionChallenge;

use super::failure::Failure;
use super::profile::{self, ApiArgs, ProfileArgs, SignerArgs};
use super::{print_json, Output};

/// Arguments of `sign-challenge`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    signer: SignerArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

/// Reads the challenge from stdin, signs, prints.
pub async fn run(args: Args, global: &ProfileArgs) -> Result<ExitCode, Failure> {
    let settings = profile::settings(global, &ApiArgs::default(), Some(&args.signer))?;
    let signer = profile::signer(&settings)?.ok_or_else(|| {
        Failure::usage(
            "sign-challenge needs a key",
            "give --key URI and --cred-id ID (or DFNS_KEY and DFNS_CRED_ID, or a profile with \
             key and credential_id)",
        )
    })?;
    let mut input = Vec::new();
    std::io::stdin().read_to_end(&mut input).map_err(|e| {
        Failure::usage(
            format!("cannot read the challenge from stdin: {e}"),
            "pipe it in",
        )
    })?;
    let challenge = UserActionChallenge::from_json(&input).map_err(|e| {
        Failure::usage(
            e.to_string(),
            "pipe the JSON answer of POST /auth/action/init into stdin",
        )
    })?;
    let key = signer.backend().clone();
    let first_factor =
        dfns_signer::sign_blocking(key.as_ref(), None, move || signer.assert(&challenge)).await?;
    let value = serde_json::to_value(&first_factor).map_err(|e| e.to_string())?;
    print_json(&value, args.output);
    Ok(ExitCode::SUCCESS)
}
