//! `service-account create`: a service account whose credential is a key on this machine.
//!
//! Thin over `DfnsClient::create_service_account` (signed by the profile's credential). The
//! token is shown once: on stdout (with a warning on stderr to store it now), or written to a
//! new file with mode 0600.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use dfns_signer::CreateServiceAccount;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};

use super::failure::Failure;
use super::profile::{self, ApiArgs, ExistingSignerArgs, Needs, ProfileArgs};
use super::{print_json, Output};

/// Service-account commands.
#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Create a service account whose credential is the key given; prints its token once.
    ///
    /// Example:
    ///   dfns-signer service-account create --profile admin --name custody-backend \
    ///     --key 'pkcs11:token=custody;object=dfns?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=env:HSM_PIN' \
    ///     --token-out /etc/custody/dfns-token
    #[command(verbatim_doc_comment)]
    Create(CreateArgs),
}

/// Arguments of `service-account create`.
#[derive(clap::Args, Debug)]
pub struct CreateArgs {
    /// The service account's credential key (a key URI; only its public key is sent).
    #[arg(long, value_name = "URI")]
    key: String,
    /// The service account's name.
    #[arg(long)]
    name: String,
    /// A permission to assign to the service account.
    #[arg(long, value_name = "ID")]
    permission_id: Option<String>,
    /// Days the token stays valid (Dfns' default when absent).
    #[arg(long, value_name = "N")]
    days_valid: Option<u32>,
    /// Write the token to this new file (mode 0600) instead of stdout.
    #[arg(long, value_name = "FILE")]
    token_out: Option<PathBuf>,
    #[command(flatten)]
    signer: ExistingSignerArgs,
    #[command(flatten)]
    api: ApiArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

/// Runs a service-account command.
pub async fn run(command: Command, global: &ProfileArgs) -> Result<ExitCode, Failure> {
    match command {
        Command::Create(args) => create(args, global).await,
    }
}

async fn create(args: CreateArgs, global: &ProfileArgs) -> Result<ExitCode, Failure> {
    let settings = profile::settings(global, &args.api, Some(&args.signer.as_signer_args()))?;
    // Refused before anything is created: a token with nowhere to go would be lost.
    if let Some(path) = &args.token_out {
        if path.exists() {
            return Err(Failure::usage(
                format!(
                    "{} exists already; the token is only written to a new file",
                    path.display()
                ),
                "name a new file for --token-out (or remove the old one first)",
            ));
        }
    }
    let key = profile::open_key_text(&args.key)?;
    let client = profile::client(&settings, Needs::TokenAndSigner)?;
    let created = client
        .create_service_account(&CreateServiceAccount {
            name: args.name.clone(),
            public_key: key.public_key().to_pem(),
            permission_id: args.permission_id.clone(),
            external_id: None,
            days_valid: args.days_valid,
        })
        .await?;
    let user_id = created
        .body
        .pointer("/userInfo/userId")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let credential_id = created.credential_id.clone().unwrap_or_default();
    let mut report = json!({
        "user_id": user_id,
        "credential_id": credential_id,
        "name": args.name,
        "key": args.key,
    });
    match &args.token_out {
        Some(path) => {
            write_token(path, &created.access_token)?;
            report["token_file"] = json!(path.display().to_string());
        }
        None => {
            eprintln!(
                "warning: this is the only time Dfns shows the service account's token: store it now \
                 (a secret manager, or --token-out FILE next time)"
            );
            report["token"] = json!(created.access_token.expose_secret());
        }
    }
    match args.output {
        Output::Json => print_json(&report, Output::Json),
        Output::Text => {
            eprintln!(
                "created service account {user_id} (\"{}\"), credential {credential_id}",
                args.name
            );
            match &args.token_out {
                Some(path) => eprintln!("its token is in {} (mode 0600)", path.display()),
                None => println!("{}", created.access_token.expose_secret()),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes the token to a file that did not exist, readable by its owner only.
fn write_token(path: &Path, token: &SecretString) -> Result<(), Failure> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let fail = |e: std::io::Error| {
        Failure::new(
            super::failure::EXIT_OTHER,
            format!(
                "the service account was created, but its token could not be written to {}: {e}",
                path.display()
            ),
            "deactivate that service account (its token is lost) and create another with a \
             writable --token-out",
        )
    };
    let mut file = options.open(path).map_err(fail)?;
    file.write_all(token.expose_secret().as_bytes())
        .and_then(|()| file.write_all(b"\n"))
        .map_err(fail)
}
