//! Sign Dfns user actions with a key on a PKCS#11 token (SoftHSM here, any HSM in production).
//!
//! ```sh
//! hsm-config/softhsm/init-token.sh /tmp/dfns-hsm      # prints the exports to run
//! export SOFTHSM2_CONF=/tmp/dfns-hsm/softhsm2.conf HSM_PIN=…
//! cargo run --example softhsm -- 'pkcs11:token=dfns-test;object=dfns-p256?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=env:HSM_PIN'
//! ```
//!
//! The key never leaves the token: the example reads its public key, registers it on a local
//! simulator, and every user action is signed by `C_Sign` on the token.

use dfns_signer::simulator::Simulator;
use dfns_signer::{open, KeyUri};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let uri = std::env::args()
        .nth(1)
        .ok_or("usage: softhsm PKCS11_URI (see the comment at the top)")?;
    let key = open(&KeyUri::parse(&uri)?)?;
    println!("using {}", key.describe());

    let sim = Simulator::builder()
        .root_public_key_pem(key.public_key().to_pem())
        .start()
        .await?;
    let client = dfns_signer::DfnsClient::simulator_root(&sim, key)?;
    for i in 0..3 {
        let wallet = client
            .create_wallet(
                &serde_json::json!({"network": "Bitcoin", "externalId": format!("hsm-{i}")}),
            )
            .await?
            .done()?;
        println!("wallet {} — user action signed on the token", wallet["id"]);
    }
    Ok(())
}
