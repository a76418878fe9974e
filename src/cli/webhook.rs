//! `webhook verify`: is a received webhook delivery from Dfns, unchanged and fresh?
//!
//! Thin over [`dfns_signer::webhooks::verify_with_tolerance`]: reads the raw body (a file or
//! stdin), the signature header's value and the webhook's secret (from the environment or a
//! file, never the command line), and prints the verified event, or fails with exit status 1.

use std::io::Read;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use dfns_signer::webhooks::{verify_with_tolerance, DEFAULT_TOLERANCE_SECS};
use dfns_signer::PinSource;
use secrecy::ExposeSecret;
use serde_json::json;

use super::failure::Failure;
use super::{print_json, Output};

/// Webhook commands.
#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Verify a delivery's `X-DFNS-WEBHOOK-SIGNATURE` and freshness.
    ///
    /// Example:
    ///   DFNS_WEBHOOK_SECRET=whsec_… dfns-signer webhook verify \
    ///     --signature "sha256=4f0c…" --body event.json --secret-source env:DFNS_WEBHOOK_SECRET
    #[command(verbatim_doc_comment)]
    Verify(VerifyArgs),
}

/// Arguments of `webhook verify`.
#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    /// The `X-DFNS-WEBHOOK-SIGNATURE` header's value, as received (`sha256=<hex>`).
    #[arg(long, value_name = "HEADER")]
    signature: String,
    /// The raw request body, byte for byte as received (`-`: stdin).
    #[arg(long, value_name = "FILE", default_value = "-")]
    body: String,
    /// Where the webhook's secret is: `env:NAME` or `file:PATH` (never on the command line).
    #[arg(long, value_name = "SOURCE", default_value = "env:DFNS_WEBHOOK_SECRET")]
    secret_source: String,
    /// Seconds `timestampSent` may be from now.
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_TOLERANCE_SECS)]
    tolerance: u64,
    /// The time to check against, Unix seconds (default: now).
    #[arg(long, value_name = "UNIX")]
    now: Option<u64>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

/// Runs a webhook command.
pub async fn run(command: Command) -> Result<ExitCode, Failure> {
    match command {
        Command::Verify(args) => verify(args),
    }
}

fn verify(args: VerifyArgs) -> Result<ExitCode, Failure> {
    let body = if args.body == "-" {
        let mut body = Vec::new();
        std::io::stdin().read_to_end(&mut body).map_err(|e| {
            Failure::usage(
                format!("cannot read the body from stdin: {e}"),
                "pipe it in",
            )
        })?;
        body
    } else {
        std::fs::read(&args.body).map_err(|e| {
            Failure::usage(format!("cannot read {}: {e}", args.body), "check --body")
        })?
    };
    let source = match PinSource::parse(&args.secret_source) {
        Ok(source @ (PinSource::Env(_) | PinSource::File(_))) => source,
        _ => {
            return Err(Failure::usage(
                "--secret-source is not `env:NAME` or `file:PATH`",
                "name where the secret Dfns returned at the webhook's creation is kept \
                 (never the secret itself: it would show in `ps` and shell history)",
            ))
        }
    };
    let secret = source.read("the webhook secret").map_err(|e| {
        Failure::usage(
            e.to_string(),
            "set the variable or file --secret-source names",
        )
    })?;
    let now = args.now.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    });
    let event = verify_with_tolerance(
        &body,
        &args.signature,
        secret.expose_secret(),
        now,
        args.tolerance,
    )
    .map_err(|e| {
        Failure::new(
            super::failure::EXIT_OTHER,
            e.to_string(),
            "do not act on this delivery",
        )
    })?;
    let age = now.abs_diff(event.timestamp_sent);
    match args.output {
        Output::Json => print_json(
            &json!({
                "verified": true,
                "id": event.id,
                "kind": event.kind,
                "timestamp_sent": event.timestamp_sent,
                "age_seconds": age,
            }),
            Output::Json,
        ),
        Output::Text => println!(
            "verified: {} event {} sent {age} s from now",
            event.kind, event.id
        ),
    }
    Ok(ExitCode::SUCCESS)
}
