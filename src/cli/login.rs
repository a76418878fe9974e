//! `login`: a user's login with a Key credential (`/auth/login/init`, sign, `/auth/login`);
//! prints the login token.
//!
//! The credential id comes from `--cred-id` (or DFNS_CRED_ID, the profile); without one, the
//! login challenge must offer exactly one Key credential, which is then the one signed for.

use std::process::ExitCode;

use dfns_signer::CredentialSigner;
use secrecy::ExposeSecret;
use serde_json::json;

use super::failure::Failure;
use super::profile::{self, ApiArgs, Needs, ProfileArgs};
use super::{print_json, Output};

/// Arguments of `login`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The user's credential key (else DFNS_KEY, the profile's key).
    #[arg(long, value_name = "URI")]
    key: Option<String>,
    /// The credential id of that key (else DFNS_CRED_ID, the profile's credential_id, or the
    /// only Key credential the login challenge offers).
    // Credential ids are base64url: one may start with `-`.
    #[arg(long, value_name = "ID", allow_hyphen_values = true)]
    cred_id: Option<String>,
    /// The user's username (usually an email address).
    #[arg(long)]
    username: String,
    /// The organisation's id (`or-…`).
    #[arg(long, value_name = "ID")]
    org_id: String,
    #[command(flatten)]
    api: ApiArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

/// Logs in and prints the token.
pub async fn run(args: Args, global: &ProfileArgs) -> Result<ExitCode, Failure> {
    let signer_flags = profile::SignerArgs {
        key: args.key.clone(),
        cred_id: args.cred_id.clone(),
    };
    let settings = profile::settings(global, &args.api, Some(&signer_flags))?;
    let key_uri = settings.key.as_ref().ok_or_else(|| {
        Failure::usage(
            "login needs the user's credential key",
            "give --key URI (or DFNS_KEY, or key in the profile)",
        )
    })?;
    let key = profile::open_key_text(&key_uri.value)?;
    let client = profile::client(&settings, Needs::Nothing)?;
    let challenge = client.login_init(&args.username, &args.org_id).await?;
    let cred_id = match &settings.credential_id {
        Some(id) => id.value.clone(),
        None => {
            let offered = &challenge.allow_credentials.key;
            match offered.as_slice() {
                [only] => only.id.clone(),
                [] => {
                    return Err(Failure::new(
                        super::failure::EXIT_API,
                        format!("Dfns offers no Key credential to log in {}", args.username),
                        "register a Key credential for this user first (`dfns-signer credential register`)",
                    ))
                }
                _ => {
                    return Err(Failure::usage(
                        format!(
                            "the user has {} Key credentials and nothing says which this key is",
                            offered.len()
                        ),
                        "give --cred-id ID (`dfns-signer credential list` shows them)",
                    ))
                }
            }
        }
    };
    let signer = CredentialSigner::new(cred_id, key);
    let identifier = challenge.challenge_identifier.clone();
    let backend = signer.backend().clone();
    let first_factor =
        dfns_signer::sign_blocking(backend.as_ref(), None, move || signer.assert(&challenge))
            .await?;
    let token = client.login_complete(&identifier, first_factor).await?;
    match args.output {
        Output::Json => print_json(&json!({ "token": token.expose_secret() }), Output::Json),
        Output::Text => println!("{}", token.expose_secret()),
    }
    Ok(ExitCode::SUCCESS)
}
