//! Delegated signing with a YubiKey at a desk: the backend asks for a challenge, a person signs it
//! with the YubiKey's PIV key, the backend completes and sends the request.
//!
//! ```sh
//! cargo run --example yubikey -- 'piv:slot=9a?serial=12345678&pin-source=prompt'
//! ```
//!
//! In a real deployment the two halves run on different machines: the backend's
//! `user_action_init` output travels to the desk, where `dfns-signer sign-challenge` signs it, and
//! the `firstFactor` travels back. Here both halves run in one process against a local simulator.

use dfns_signer::protocol::{Method, Payload};
use dfns_signer::simulator::Simulator;
use dfns_signer::{open, CredentialSigner, DfnsClient, KeyUri};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let uri = std::env::args()
        .nth(1)
        .ok_or("usage: yubikey PIV_URI, e.g. 'piv:slot=9a?pin-source=prompt'")?;
    let key = open(&KeyUri::parse(&uri)?)?; // asks for the PIN when pin-source=prompt
    let sim = Simulator::builder()
        .root_public_key_pem(key.public_key().to_pem())
        .start()
        .await?;

    // The backend: auth token, no key.
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

    // The desk: the YubiKey signs (touch it if its policy asks).
    let person = CredentialSigner::new(sim.credential_id(), key.clone());
    let first_factor = dfns_signer::sign_blocking(key.as_ref(), None, move || {
        person.assert(&challenge).map(|ff| (challenge, ff))
    })
    .await?;

    // The backend again.
    let (challenge, first_factor) = first_factor;
    let token = backend
        .user_action_complete(&challenge.challenge_identifier, first_factor)
        .await?;
    let outcome = backend
        .request_with_user_action(Method::Post, "/wallets", &payload, &token)
        .await?;
    println!(
        "{:?}",
        outcome.map(|raw| String::from_utf8_lossy(&raw.body).into_owned())
    );
    Ok(())
}
