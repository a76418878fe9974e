//! Delegated signing: a backend asks Dfns for a user action, a person at a desk signs its
//! challenge with the `dfns-signer sign-challenge` command, and the backend completes the user
//! action and sends the request. The key never reaches the backend; the auth token never
//! reaches the desk. What travels between them is two small JSON files: the challenge (the
//! answer of `POST /auth/action/init`) one way, the signed `firstFactor` the other.
//!
//! ```sh
//! cargo build --bin dfns-signer
//! cargo run --example delegated_signing -- file:tests/fixtures/keys/p256.pem target/debug/dfns-signer
//! ```
//!
//! Arguments: the desk's key URI, then the `dfns-signer` binary (else `$DFNS_SIGNER_BIN`, else
//! `dfns-signer` on `PATH`). At a real desk the key is on a YubiKey:
//! `'piv:slot=9a?serial=12345678&pin-source=prompt'` (`sign-challenge` reads the challenge on
//! stdin and asks for the PIN on the terminal itself).
//!
//! Both halves run on one machine here, against a local simulator whose root credential is the
//! desk's key (the setup opens the key once to read its public key, as registering it would).
//! `examples/yubikey.rs` shows the same flow with both halves in-process, through the library.

use std::error::Error;
use std::fs::File;

use dfns_signer::protocol::{FirstFactor, Method, Payload};
use dfns_signer::simulator::Simulator;
use dfns_signer::{open, DfnsClient, KeyUri};

const USAGE: &str = "usage: delegated_signing DESK_KEY_URI [DFNS_SIGNER_BIN]";

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let desk_key = args.next().ok_or(USAGE)?;
    let dfns_signer = args
        .next()
        .or_else(|| std::env::var("DFNS_SIGNER_BIN").ok())
        .unwrap_or_else(|| "dfns-signer".to_owned());

    // Setup, done once in a real deployment: the desk's public key is registered as a Key
    // credential. Here: a local Dfns API whose root credential is that key.
    let desk_public_key = open(&KeyUri::parse(&desk_key)?)?.public_key().to_pem();
    let sim = Simulator::builder()
        .root_public_key_pem(desk_public_key)
        .start()
        .await?;
    let cred_id = sim.credential_id().to_owned();
    let handoff = std::env::temp_dir().join(format!("dfns-delegated-{}", std::process::id()));
    std::fs::create_dir_all(&handoff)?;

    // The backend: an auth token, no key. It asks for a challenge bound to this exact request.
    let backend = DfnsClient::builder()
        .base_url(sim.base_url())
        .auth_token(sim.auth_token().clone())
        .build()?;
    let payload = Payload::json(
        &serde_json::json!({"network": "EthereumSepolia", "name": "approved at a desk"}),
    )?;
    let challenge = backend
        .user_action_init(Method::Post, "/wallets", &payload)
        .await?;
    let challenge_file = handoff.join("challenge.json");
    std::fs::write(&challenge_file, serde_json::to_vec_pretty(&challenge)?)?;
    println!(
        "backend: challenge for POST /wallets in {}",
        challenge_file.display()
    );

    // The desk: dfns-signer sign-challenge --key URI --cred-id ID < challenge.json > first-factor.json
    // (its prompts, touch notices and errors go to the terminal, on stderr).
    let first_factor_file = handoff.join("first-factor.json");
    let status = tokio::process::Command::new(&dfns_signer)
        .args(["sign-challenge", "--key", &desk_key, "--cred-id", &cred_id])
        .stdin(File::open(&challenge_file)?)
        .stdout(File::create(&first_factor_file)?)
        .status()
        .await
        .map_err(|e| format!("cannot run {dfns_signer}: {e} ({USAGE})"))?;
    if !status.success() {
        return Err(format!("{dfns_signer} sign-challenge failed ({status}); see above").into());
    }
    let first_factor: FirstFactor = serde_json::from_slice(&std::fs::read(&first_factor_file)?)?;
    println!(
        "desk: signed with credential {} into {}",
        first_factor.credential_assertion.cred_id,
        first_factor_file.display()
    );

    // The backend again: the signature buys a single-use user-action token, sent with the request.
    let user_action = backend
        .user_action_complete(&challenge.challenge_identifier, first_factor)
        .await?;
    let response = backend
        .request_with_user_action(Method::Post, "/wallets", &payload, &user_action)
        .await?
        .done()?;
    let wallet: serde_json::Value = serde_json::from_slice(&response.body)?;
    println!(
        "backend: created wallet {} ({}), approved at the desk",
        wallet["id"].as_str().unwrap_or("?"),
        wallet["network"].as_str().unwrap_or("?")
    );
    std::fs::remove_dir_all(&handoff)?;
    Ok(())
}
