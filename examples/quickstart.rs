//! Quickstart: a software key, a local Dfns simulator, one signed call.
//!
//! ```sh
//! cargo run --example quickstart
//! ```
//!
//! Against the real API, replace the simulator's URL and token with `https://api.dfns.io` and your
//! service account's token, and the software key with a `pkcs11:` or `piv:` key (see the other
//! examples).

use std::sync::Arc;

use dfns_signer::simulator::Simulator;
use dfns_signer::software::SoftwareKey;
use dfns_signer::{Algorithm, CredentialSigner, DfnsClient, KeyBackend};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The credential key; here in memory, in production on an HSM or a YubiKey.
    let key = Arc::new(SoftwareKey::generate(Algorithm::EcdsaP256)?);
    // A local Dfns API whose root credential is that key.
    let sim = Simulator::builder()
        .root_public_key_pem(key.public_key().to_pem())
        .start()
        .await?;

    let client = DfnsClient::builder()
        .base_url(sim.base_url())
        .auth_token(sim.auth_token().clone())
        .signer(CredentialSigner::new(sim.credential_id(), key))
        .build()?;

    // POST /wallets needs a user action: the client runs init → sign → complete → send.
    let wallet = client
        .create_wallet(&serde_json::json!({"network": "EthereumSepolia"}))
        .await?
        .done()?;
    println!("created wallet {} ({})", wallet["id"], wallet["status"]);
    Ok(())
}
