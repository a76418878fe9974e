//! The official Rust SDK (`dfns-sdk-rust`) signing its user actions with a dfns-signer key.
//!
//! The SDK runs the user-action flow itself and asks a `UserActionSigner` for each signature;
//! it ships none. `dfns_signer::dfns_sdk::SdkSigner` is one: it signs with any key URI, so the
//! SDK's typed calls get their user actions signed by an HSM, a YubiKey or a software key.
//!
//! ```sh
//! cargo run --example official_sdk --features dfns-sdk -- [KEY_URI]
//! ```
//!
//! `KEY_URI` is the credential key (`file:`, `pkcs11:` or `piv:`; a new software key without
//! one). The SDK talks to a local simulator whose root credential is that key; against Dfns,
//! `base_url` is `""` (https://api.dfns.io), `auth_token` your service account's token, and the
//! credential id the one registered for the key.

use std::sync::Arc;

use dfns_sdk_rust::wallets::types::CreateWalletRequest;
use dfns_sdk_rust::{DfnsClient, Options};
use dfns_signer::dfns_sdk::SdkSigner;
use dfns_signer::simulator::Simulator;
use dfns_signer::software::SoftwareKey;
use dfns_signer::{open, Algorithm, CredentialSigner, KeyBackend, KeyUri};
use secrecy::ExposeSecret;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let key: Arc<dyn KeyBackend> = match std::env::args().nth(1) {
        Some(uri) => open(&KeyUri::parse(&uri)?)?,
        None => Arc::new(SoftwareKey::generate(Algorithm::EcdsaP256)?),
    };
    let sim = Simulator::builder()
        .root_public_key_pem(key.public_key().to_pem())
        .start()
        .await?;

    // The official client, as its README builds it, with our key as its signer.
    let signer = SdkSigner::new(CredentialSigner::new(sim.credential_id(), key));
    let client = DfnsClient::new(Options {
        base_url: sim.base_url().to_owned(),
        auth_token: sim.auth_token().expose_secret().to_owned(),
        signer: Some(Arc::new(signer)),
        http: None,
    })?;

    // Operations requiring signatures are signed automatically.
    let wallet = client
        .wallets
        .create_wallet(CreateWalletRequest {
            network: "EthereumSepolia".to_string(),
            name: Some("official SDK".to_string()),
            signing_key: None,
            delegate_to: None,
            delay_delegation: None,
            external_id: None,
            tags: None,
        })
        .await?;
    println!("Created wallet: {} ({})", wallet.id, wallet.network);

    // Read-only operations need the token alone.
    let wallets = client.wallets.list_wallets(None).await?;
    println!("Found {} wallets", wallets.items.len());
    Ok(())
}
