//! `simulator`: a local Dfns API for tests, demos and users' own CI.

use std::process::ExitCode;
use std::time::Duration;

use dfns_signer::simulator::{serve_until_signal, Faults, Simulator};

/// Arguments of `simulator`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Address to listen on (`127.0.0.1:0` picks a free port; the JSON line says which).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// SPKI PEM public key of the root credential (a service account allowed everything).
    #[arg(long, value_name = "FILE")]
    root_public_key: String,
    /// Credential id of the root credential (default: derived from the key).
    #[arg(long, value_name = "ID", allow_hyphen_values = true)]
    root_cred_id: Option<String>,
    /// Milliseconds added to every answer.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Share of requests (0–1) answered 429 with `Retry-After`.
    #[arg(long, default_value_t = 0.0)]
    rate_429: f64,
    /// `Retry-After` seconds sent with a 429.
    #[arg(long, default_value_t = 1)]
    retry_after: u64,
    /// Share of requests answered 500.
    #[arg(long, default_value_t = 0.0)]
    rate_500: f64,
    /// Share of requests answered 502.
    #[arg(long, default_value_t = 0.0)]
    rate_502: f64,
    /// Share of requests answered 504 (before the endpoint runs).
    #[arg(long, default_value_t = 0.0)]
    rate_504: f64,
    /// Share of connections dropped without an answer.
    #[arg(long, default_value_t = 0.0)]
    drop_rate: f64,
    /// Share of requests that run and are then answered 504 (the side effect happened).
    #[arg(long, default_value_t = 0.0)]
    rate_504_after: f64,
    /// Share of requests that run and whose connection is then dropped (the side effect happened).
    #[arg(long, default_value_t = 0.0)]
    drop_after_rate: f64,
    /// `"METHOD /path"` answered 202 (policy approval pending); repeatable; templates allowed.
    #[arg(long, value_name = "RULE")]
    policy_pending: Vec<String>,
    /// Limit the random faults to these `"METHOD /path"` rules; repeatable.
    #[arg(long, value_name = "RULE")]
    fault_only: Vec<String>,
    /// Seed for reproducible faults.
    #[arg(long)]
    seed: Option<u64>,
}

/// Serves until Ctrl-C or SIGTERM.
pub async fn run(args: Args) -> Result<ExitCode, String> {
    for (name, rate) in [
        ("--rate-429", args.rate_429),
        ("--rate-500", args.rate_500),
        ("--rate-502", args.rate_502),
        ("--rate-504", args.rate_504),
        ("--drop-rate", args.drop_rate),
        ("--rate-504-after", args.rate_504_after),
        ("--drop-after-rate", args.drop_after_rate),
    ] {
        if !(0.0..=1.0).contains(&rate) {
            return Err(format!("{name} must be between 0 and 1, got {rate}"));
        }
    }
    let pem = std::fs::read_to_string(&args.root_public_key).map_err(|e| {
        format!(
            "cannot read --root-public-key {}: {e}",
            args.root_public_key
        )
    })?;
    let mut builder = Simulator::builder()
        .root_public_key_pem(pem)
        .faults(Faults {
            latency: Duration::from_millis(args.latency_ms),
            rate_429: args.rate_429,
            retry_after_secs: args.retry_after,
            rate_500: args.rate_500,
            rate_502: args.rate_502,
            rate_504: args.rate_504,
            drop_rate: args.drop_rate,
            rate_504_after: args.rate_504_after,
            drop_after_rate: args.drop_after_rate,
            policy_pending_paths: args.policy_pending,
            only_paths: args.fault_only,
            seed: args.seed,
        });
    if let Some(id) = args.root_cred_id {
        builder = builder.root_credential_id(id);
    }
    serve_until_signal(builder, &args.listen)
        .await
        .map_err(|e| e.to_string())?;
    Ok(ExitCode::SUCCESS)
}
