//! `credential register | code | list | deactivate`: the Key credentials of the calling user.
//!
//! Thin over `DfnsClient::register_key_credential` (signed by the profile's existing
//! credential), `register_key_credential_with_code` (no credential needed on this machine),
//! `create_credential_code`, `list_credentials` and `deactivate_credential`.

use std::process::ExitCode;
use std::time::Duration;

use serde_json::{json, Value};

use super::failure::Failure;
use super::profile::{self, ApiArgs, ExistingSignerArgs, Needs, ProfileArgs, SignerArgs};
use super::{print_json, Output};

/// Credential commands.
#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Register a key as a new Key credential of the calling user.
    ///
    /// The user action is signed by the profile's existing credential (key and credential_id),
    /// or, with --code, by nobody: a one-minute registration code from `credential code`
    /// stands in for it.
    ///
    /// Example:
    ///   dfns-signer credential register --profile custody --name hsm-2 \
    ///     --key 'pkcs11:token=custody;object=dfns-2?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=env:HSM_PIN'
    #[command(verbatim_doc_comment)]
    Register(RegisterArgs),
    /// Create a one-minute code for registering a credential elsewhere (`register --code`).
    ///
    /// Example:
    ///   dfns-signer credential code --profile custody --output json
    #[command(verbatim_doc_comment)]
    Code(CodeArgs),
    /// List the calling user's credentials.
    ///
    /// Example:
    ///   dfns-signer credential list --profile custody
    #[command(verbatim_doc_comment)]
    List(ListArgs),
    /// Deactivate a credential (by its uuid `cr-…` or its credential id); signed by the
    /// profile's credential.
    ///
    /// Example:
    ///   dfns-signer credential deactivate cr-6e3f0-… --profile custody
    #[command(verbatim_doc_comment)]
    Deactivate(DeactivateArgs),
}

/// Arguments of `credential register`.
#[derive(clap::Args, Debug)]
pub struct RegisterArgs {
    /// The key to register (a key URI; the key signs the registration challenge).
    #[arg(long, value_name = "URI")]
    key: String,
    /// The credential's name in Dfns.
    #[arg(long)]
    name: String,
    /// A registration code (`credential code`): register without an existing credential.
    #[arg(long, value_name = "CODE")]
    code: Option<String>,
    #[command(flatten)]
    signer: ExistingSignerArgs,
    #[command(flatten)]
    api: ApiArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

/// Arguments of `credential code`.
#[derive(clap::Args, Debug)]
pub struct CodeArgs {
    /// Seconds the code stays valid (Dfns allows about a minute).
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    valid_for: u64,
    #[command(flatten)]
    signer: SignerArgs,
    #[command(flatten)]
    api: ApiArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

/// Arguments of `credential list`.
#[derive(clap::Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    api: ApiArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

/// Arguments of `credential deactivate`.
#[derive(clap::Args, Debug)]
pub struct DeactivateArgs {
    /// The credential's uuid (`cr-…`) or credential id.
    #[arg(allow_hyphen_values = true)]
    id: String,
    #[command(flatten)]
    signer: SignerArgs,
    #[command(flatten)]
    api: ApiArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

/// Runs a credential command.
pub async fn run(command: Command, global: &ProfileArgs) -> Result<ExitCode, Failure> {
    match command {
        Command::Register(args) => register(args, global).await,
        Command::Code(args) => code(args, global).await,
        Command::List(args) => list(args, global).await,
        Command::Deactivate(args) => deactivate(args, global).await,
    }
}

async fn register(args: RegisterArgs, global: &ProfileArgs) -> Result<ExitCode, Failure> {
    let settings = profile::settings(global, &args.api, Some(&args.signer.as_signer_args()))?;
    let new_key = profile::open_key_text(&args.key)?;
    let public_key = new_key.public_key().to_pem();
    let created = match &args.code {
        // The code stands in for the token and the user action.
        Some(code) => {
            let client = profile::client(&settings, Needs::Nothing)?;
            client
                .register_key_credential_with_code(code, new_key, &args.name, None)
                .await?
        }
        None => {
            let client = profile::client(&settings, Needs::TokenAndSigner)?;
            if client.signer().is_none() {
                return Err(Failure::usage(
                    "registering a credential needs an existing one to sign the user action",
                    "set key and credential_id in the profile (or DFNS_KEY and DFNS_CRED_ID), \
                     or use --code CODE from `dfns-signer credential code`",
                ));
            }
            client
                .register_key_credential(new_key, &args.name, None)
                .await?
        }
    };
    let credential_id = text(&created, "credentialId");
    let report = json!({
        "credential_id": credential_id,
        "credential_uuid": text(&created, "credentialUuid"),
        "name": created.get("name").cloned().unwrap_or_else(|| json!(args.name)),
        "public_key": public_key,
        "key": args.key,
    });
    match args.output {
        Output::Json => print_json(&report, Output::Json),
        Output::Text => {
            println!(
                "registered credential {credential_id} (\"{}\", uuid {}) for '{}'",
                args.name,
                report["credential_uuid"].as_str().unwrap_or("?"),
                args.key
            );
            println!(
                "sign with it: --key '{}' --cred-id {credential_id}",
                args.key
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn code(args: CodeArgs, global: &ProfileArgs) -> Result<ExitCode, Failure> {
    let settings = profile::settings(global, &args.api, Some(&args.signer))?;
    let client = profile::client(&settings, Needs::TokenAndSigner)?;
    let created = client
        .create_credential_code(Duration::from_secs(args.valid_for))
        .await?;
    let report = json!({
        "code": text(&created, "code"),
        "expiration": created.get("expiration").cloned().unwrap_or(Value::Null),
    });
    match args.output {
        Output::Json => print_json(&report, Output::Json),
        Output::Text => println!("{}", report["code"].as_str().unwrap_or_default()),
    }
    Ok(ExitCode::SUCCESS)
}

async fn list(args: ListArgs, global: &ProfileArgs) -> Result<ExitCode, Failure> {
    let settings = profile::settings(global, &args.api, None)?;
    let client = profile::client(&settings, Needs::Token)?;
    let credentials = listed(&client.list_credentials().await?);
    match args.output {
        Output::Json => print_json(&json!({ "credentials": credentials }), Output::Json),
        Output::Text if credentials.is_empty() => println!("no credentials"),
        Output::Text => {
            for c in &credentials {
                println!(
                    "{}  {}  {:<8} {:<8} {}",
                    c["credential_uuid"].as_str().unwrap_or_default(),
                    c["credential_id"].as_str().unwrap_or_default(),
                    c["kind"].as_str().unwrap_or_default(),
                    if c["is_active"] == true {
                        "active"
                    } else {
                        "inactive"
                    },
                    c["name"].as_str().unwrap_or_default(),
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn deactivate(args: DeactivateArgs, global: &ProfileArgs) -> Result<ExitCode, Failure> {
    let settings = profile::settings(global, &args.api, Some(&args.signer))?;
    let client = profile::client(&settings, Needs::TokenAndSigner)?;
    // Dfns deactivates by uuid; a credential id is looked up first.
    let uuid = if args.id.starts_with("cr-") {
        args.id.clone()
    } else {
        listed(&client.list_credentials().await?)
            .iter()
            .find(|c| c["credential_id"] == args.id.as_str())
            .and_then(|c| c["credential_uuid"].as_str().map(str::to_owned))
            .ok_or_else(|| {
                Failure::usage(
                    format!("no credential of this user has the id {}", args.id),
                    "give the uuid (cr-…) or id shown by `dfns-signer credential list`",
                )
            })?
    };
    client.deactivate_credential(&uuid).await?;
    match args.output {
        Output::Json => print_json(
            &json!({ "credential_uuid": uuid, "is_active": false }),
            Output::Json,
        ),
        Output::Text => println!("deactivated credential {uuid}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// The documented fields of `GET /auth/credentials` items, in snake case.
fn listed(answer: &Value) -> Vec<Value> {
    answer["items"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|c| {
            json!({
                "credential_id": c["credentialId"],
                "credential_uuid": c["credentialUuid"],
                "kind": c["kind"],
                "name": c["name"],
                "is_active": c["isActive"],
                "date_created": c["dateCreated"],
            })
        })
        .collect()
}

fn text(v: &Value, field: &str) -> String {
    v.get(field)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}
