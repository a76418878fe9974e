//! Register a key as a service account's credential, then act as that service account.
//!
//! ```sh
//! cargo run --example service_account -- [KEY_URI]
//! ```
//!
//! `KEY_URI` defaults to a new software key; give a `pkcs11:` or `piv:` URI to register a hardware
//! key. The "admin" here is the simulator's root credential; against the real API it is whoever in
//! your organisation may create service accounts.

use std::sync::Arc;

use dfns_signer::simulator::Simulator;
use dfns_signer::software::SoftwareKey;
use dfns_signer::CreateServiceAccount;
use dfns_signer::{open, Algorithm, CredentialSigner, KeyBackend, KeyUri};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let new_key: Arc<dyn KeyBackend> = match std::env::args().nth(1) {
        Some(uri) => open(&KeyUri::parse(&uri)?)?,
        None => Arc::new(SoftwareKey::generate(Algorithm::Ed25519)?),
    };

    let admin_key = Arc::new(SoftwareKey::generate(Algorithm::EcdsaP256)?);
    let sim = Simulator::builder()
        .root_public_key_pem(admin_key.public_key().to_pem())
        .start()
        .await?;
    let admin = dfns_signer::DfnsClient::simulator_root(&sim, admin_key)?;

    let created = admin
        .create_service_account(&CreateServiceAccount {
            name: "custody-backend".into(),
            public_key: new_key.public_key().to_pem(),
            permission_id: None,
            external_id: Some("custody-backend-1".into()),
            days_valid: Some(365),
        })
        .await?;
    let cred_id = created
        .credential_id
        .clone()
        .ok_or("no credential id in the answer")?;
    println!(
        "service account created; credential {cred_id} ({})",
        new_key.describe()
    );

    // The service account's own client: its token, its hardware-backed credential, same pool.
    let backend = admin
        .with_auth_token(created.access_token)
        .with_signer(CredentialSigner::new(cred_id, new_key));
    let wallet = backend
        .create_wallet(&serde_json::json!({"network": "Bitcoin"}))
        .await?
        .done()?;
    println!("as the service account: wallet {}", wallet["id"]);
    Ok(())
}
