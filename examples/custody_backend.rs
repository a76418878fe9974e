//! A custody backend: its settings come from a profile of the configuration file, the way the
//! `dfns-signer` command reads them, and its credential key sits on a PKCS#11 token behind a pool
//! of sessions, so that concurrent requests are signed in parallel.
//!
//! ```sh
//! cargo run --example custody_backend -- --config custody.toml [--profile custody]
//! ```
//!
//! Without `--config`, the file is `$DFNS_SIGNER_CONFIG`, else
//! `~/.config/dfns-signer/config.toml`; without `--profile`, `$DFNS_SIGNER_PROFILE`, else the
//! file's `default_profile`, its `default` profile or its only one. `DFNS_API_URL`, `DFNS_AUTH_TOKEN`,
//! `DFNS_CRED_ID` and `DFNS_KEY` override the profile. The file names where the secrets are,
//! never the secrets, and must be private (`chmod 600`):
//!
//! ```toml
//! [profiles.custody]
//! base_url = "http://127.0.0.1:8080"
//! auth_token = "file:/tmp/dfns-hsm/token"    # one line, chmod 600
//! credential_id = "…"                         # the credential the HSM key is registered under
//! # pool-size=4: up to four sessions sign at once; the PIN is read from $HSM_PIN at login.
//! key = "pkcs11:token=dfns-signer;object=p256?module-path=/usr/lib/softhsm/libsofthsm2.so&pool-size=4&pin-source=env:HSM_PIN"
//! ```
//!
//! To try it against a local simulator whose root credential is a key on a SoftHSM token:
//!
//! ```sh
//! eval "$(hsm-config/softhsm/init-token.sh /tmp/dfns-hsm)"   # token dfns-signer, key p256
//! export HSM_PIN=123456                                       # the script's default user PIN
//! pkcs11-tool --module "$DFNS_SIGNER_PKCS11_MODULE" --token-label dfns-signer \
//!   --read-object --type pubkey --label p256 -o /tmp/dfns-hsm/p256.der
//! openssl pkey -pubin -inform DER -in /tmp/dfns-hsm/p256.der -out /tmp/dfns-hsm/p256.pub.pem
//! cargo run -- simulator --listen 127.0.0.1:8080 --root-public-key /tmp/dfns-hsm/p256.pub.pem
//! # it prints {"baseUrl":…,"authToken":…,"credId":…}: in another terminal, put the authToken
//! # into /tmp/dfns-hsm/token (chmod 600) and the credId into the profile above, then run this.
//! ```
//!
//! Against Dfns, `base_url` is `https://api.dfns.io` (the default), the token a service
//! account's and the credential the one registered for the HSM key.

use std::path::PathBuf;

use dfns_signer::config::Settings;
use dfns_signer::DfnsClient;
use tokio::task::JoinSet;

const WALLETS: usize = 8;
const USAGE: &str = "usage: custody_backend [--config FILE] [--profile NAME]";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (config, profile) = parse_args()?;

    // The lookup the CLI does: file, profile, then the DFNS_* environment over the profile.
    let settings = Settings::from_environment(config.as_deref(), profile.as_deref())?;
    // Opens the key (logs in to the token with the PIN its pin-source names) and reads the auth
    // token from its source. One client: one HTTP connection pool, one PKCS#11 session pool.
    let client = DfnsClient::from_settings(&settings)?;
    let signer = client
        .signer()
        .ok_or("the profile names no key and credential_id, and this backend signs user actions")?;
    println!(
        "API {} (from {})",
        settings.base_url.value, settings.base_url.origin
    );
    println!(
        "credential {} signing with {}",
        signer.credential_id(),
        signer.backend().describe()
    );

    // Every POST /wallets needs its own user action: init, a signature on the token, complete,
    // send. The requests run at once and share the token's session pool.
    let mut requests = JoinSet::new();
    for i in 0..WALLETS {
        let client = client.clone();
        requests.spawn(async move {
            let body =
                serde_json::json!({"network": "EthereumSepolia", "name": format!("custody-{i}")});
            client.create_wallet(&body).await
        });
    }
    let mut created = 0;
    while let Some(finished) = requests.join_next().await {
        // A 202 (a policy wants an approval) comes back as `PolicyPending` from `done()`.
        let wallet = finished??.done()?;
        println!(
            "wallet {} {} ({})",
            wallet["id"].as_str().unwrap_or("?"),
            wallet["name"].as_str().unwrap_or("?"),
            wallet["network"].as_str().unwrap_or("?")
        );
        created += 1;
    }
    println!("created {created} wallets concurrently, each user action signed on the token");
    Ok(())
}

/// `--config FILE` and `--profile NAME`, both optional.
fn parse_args() -> Result<(Option<PathBuf>, Option<String>), &'static str> {
    let (mut config, mut profile) = (None, None);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" => config = Some(PathBuf::from(args.next().ok_or(USAGE)?)),
            "--profile" => profile = Some(args.next().ok_or(USAGE)?),
            _ => return Err(USAGE),
        }
    }
    Ok((config, profile))
}
