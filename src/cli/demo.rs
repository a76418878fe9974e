//! `demo`: the main job, end to end, on an embedded default.
//!
//! Starts the local Dfns simulator in-process, creates a credential key (on a PKCS#11 token when
//! `--pkcs11` names one — `hsm-config/run-demo.sh` sets up SoftHSM for that — else in software),
//! registers it as a service account's credential, then makes user-action-signed calls as that
//! service account, printing each step with its timing and what would differ against the real API.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dfns_signer::protocol::{Method, Payload};
use dfns_signer::simulator::Simulator;
use dfns_signer::software::SoftwareKey;
use dfns_signer::CreateServiceAccount;
use dfns_signer::{Algorithm, CredentialSigner, KeyBackend, KeyUri, Outcome};

/// Arguments of `demo`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Create the credential key on this PKCS#11 token instead of in software:
    /// `pkcs11:token=LABEL?module-path=…&pin-source=env:NAME`.
    #[arg(long, value_name = "URI")]
    pkcs11: Option<String>,
    /// Use an existing key instead of creating one (`file:`, `pkcs11:`, `piv:` URI).
    #[arg(long, value_name = "URI", conflicts_with = "pkcs11")]
    key: Option<String>,
    /// Algorithm of the key to create: p256, secp256k1, ed25519, rsa.
    #[arg(long, default_value = "p256")]
    algorithm: String,
}

struct Steps {
    n: usize,
    total: usize,
}

impl Steps {
    fn done(&mut self, what: &str, took: Duration) {
        self.n += 1;
        println!("[{}/{}] {what}  ({})", self.n, self.total, ms(took));
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn detail(text: &str) {
    println!("      {text}");
}

/// Runs the demo.
pub async fn run(args: Args) -> Result<ExitCode, String> {
    let algorithm = Algorithm::from_name(&args.algorithm).ok_or_else(|| {
        format!(
            "unknown --algorithm `{}` (p256, secp256k1, ed25519, rsa)",
            args.algorithm
        )
    })?;
    let mut steps = Steps { n: 0, total: 6 };
    println!(
        "dfns-signer demo: a hardware-backed Dfns credential, end to end, on a local Dfns API\n"
    );

    // 1. The simulator, with a root credential standing in for the organisation's admin.
    let t = Instant::now();
    let root_key =
        Arc::new(SoftwareKey::generate(Algorithm::EcdsaP256).map_err(|e| e.to_string())?);
    let sim = Simulator::builder()
        .root_public_key_pem(root_key.public_key().to_pem())
        .start()
        .await
        .map_err(|e| e.to_string())?;
    steps.done(
        &format!("started the local Dfns API simulator at {}", sim.base_url()),
        t.elapsed(),
    );
    detail("its root credential (a software P-256 key) stands in for your organisation's admin");
    let admin =
        dfns_signer::DfnsClient::simulator_root(&sim, root_key).map_err(|e| e.to_string())?;

    // 2. The credential key.
    let t = Instant::now();
    let (key, where_) = create_key(&args, algorithm).await?;
    steps.done(
        &format!("created the credential key: {where_}"),
        t.elapsed(),
    );
    let pem = key.public_key().to_pem();
    detail(&format!(
        "public key: {}…",
        pem.lines().nth(1).unwrap_or_default()
    ));

    // 3. Registration: a service account whose credential is this key.
    let t = Instant::now();
    let created = admin
        .create_service_account(&CreateServiceAccount {
            name: "dfns-signer-demo".into(),
            public_key: pem,
            permission_id: None,
            external_id: None,
            days_valid: Some(30),
        })
        .await
        .map_err(|e| e.to_string())?;
    let cred_id = created
        .credential_id
        .clone()
        .ok_or("the service account answer names no credential")?;
    steps.done(
        "registered it: POST /auth/service-accounts, signed by the root credential",
        t.elapsed(),
    );
    detail(&format!(
        "credential id {cred_id}; the service account's token is kept secret"
    ));

    // 4. A wallet, created as the service account, every step of the flow timed.
    let client = admin
        .with_auth_token(created.access_token)
        .with_signer(CredentialSigner::new(cred_id, key.clone()));
    let body =
        Payload::json(&serde_json::json!({"network": "EthereumSepolia", "name": "demo treasury"}))
            .map_err(|e| e.to_string())?;
    let t = Instant::now();
    let t_init = Instant::now();
    let challenge = client
        .user_action_init(Method::Post, "/wallets", &body)
        .await
        .map_err(|e| e.to_string())?;
    let init = t_init.elapsed();
    let t_sign = Instant::now();
    let signer = client.signer().cloned().ok_or("no signer")?;
    let identifier = challenge.challenge_identifier.clone();
    let key = signer.backend().clone();
    let first_factor =
        dfns_signer::sign_blocking(key.as_ref(), None, move || signer.assert(&challenge))
            .await
            .map_err(|e| e.to_string())?;
    let sign = t_sign.elapsed();
    let t_complete = Instant::now();
    let token = client
        .user_action_complete(&identifier, first_factor)
        .await
        .map_err(|e| e.to_string())?;
    let complete = t_complete.elapsed();
    let t_send = Instant::now();
    let wallet = match client
        .request_with_user_action(Method::Post, "/wallets", &body, &token)
        .await
        .map_err(|e| e.to_string())?
    {
        Outcome::Done(raw) => raw
            .json::<serde_json::Value>(Method::Post, "/wallets")
            .map_err(|e| e.to_string())?,
        Outcome::PolicyPending(p) => return Err(format!("unexpected: {p}")),
    };
    let send = t_send.elapsed();
    let wallet_id = wallet["id"].as_str().unwrap_or_default().to_owned();
    let network = wallet["network"].as_str().unwrap_or_default();
    steps.done(
        &format!("created wallet {wallet_id} on {network} as the service account"),
        t.elapsed(),
    );
    detail(&format!(
        "user action: init {} · sign {} · complete {} · request {}",
        ms(init),
        ms(sign),
        ms(complete),
        ms(send)
    ));

    // 5. A signature from the wallet (the one-call form: the client runs the whole flow).
    let t = Instant::now();
    let hash = format!("0x{}", "ab".repeat(32));
    let signature = client
        .generate_signature(
            &wallet_id,
            &serde_json::json!({"kind": "Hash", "hash": hash}),
        )
        .await
        .map_err(|e| e.to_string())?
        .done()
        .map_err(|p| p.to_string())?;
    let (sig_id, status) = (
        signature["id"].as_str().unwrap_or_default(),
        signature["status"].as_str().unwrap_or_default(),
    );
    steps.done(
        &format!("generated signature {sig_id} with the wallet (status {status})"),
        t.elapsed(),
    );

    // 6. The same user action token again: refused, as Dfns refuses it.
    let t = Instant::now();
    let replay = client
        .request_with_user_action(Method::Post, "/wallets", &body, &token)
        .await;
    let refused = match replay {
        Err(e) => e
            .api()
            .map(|a| format!("{} {}", a.status, a.message))
            .unwrap_or_else(|| e.to_string()),
        Ok(_) => return Err("the simulator accepted a replayed user action".into()),
    };
    steps.done(
        &format!("replayed that user action: refused ({refused})"),
        t.elapsed(),
    );

    println!("\nAgainst the real Dfns API only the endpoint and the token change:");
    println!(
        "  DFNS_API_URL=https://api.dfns.io      (here: {})",
        sim.base_url()
    );
    println!("  DFNS_AUTH_TOKEN=<your service account's token>   (here: the simulator's)");
    println!("and the key is registered once, by someone already allowed to (step 3).");
    println!("Try it by hand: dfns-signer call GET /wallets --key URI --cred-id ID");
    sim.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

/// The credential key: an existing one, a new one on a PKCS#11 token, or a new software key.
async fn create_key(
    args: &Args,
    algorithm: Algorithm,
) -> Result<(Arc<dyn KeyBackend>, String), String> {
    if let Some(uri) = &args.key {
        let uri = KeyUri::parse(uri).map_err(|e| e.to_string())?;
        let key = tokio::task::spawn_blocking(move || dfns_signer::open(&uri))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        let what = key.describe();
        return Ok((key, what));
    }
    if let Some(token_uri) = &args.pkcs11 {
        return create_on_token(token_uri, algorithm).await;
    }
    let key = tokio::task::spawn_blocking(move || SoftwareKey::generate(algorithm))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let what = format!(
        "{algorithm} software key (run hsm-config/run-demo.sh to create it in SoftHSM instead)"
    );
    Ok((Arc::new(key), what))
}

/// Generates a new key on the token `token_uri` names (module, token, PIN source), labelled
/// `dfns-demo-XXXX`, and opens it: the private key is created on the token and never leaves it.
#[cfg(feature = "pkcs11")]
async fn create_on_token(
    token_uri: &str,
    algorithm: Algorithm,
) -> Result<(Arc<dyn KeyBackend>, String), String> {
    use dfns_signer::pkcs11::{generate_key_for_uri, Pkcs11Config, Pkcs11Key};

    let tag: [u8; 2] = {
        let mut b = [0u8; 2];
        getrandom::fill(&mut b).map_err(|e| format!("no randomness: {e}"))?;
        b
    };
    let label = format!("dfns-demo-{}", hex::encode(tag));
    let (path, query) = token_uri.split_once('?').unwrap_or((token_uri, ""));
    let key_uri = format!(
        "{path};object={label};id=%{:02x}%{:02x}?{query}",
        tag[0], tag[1]
    );
    let KeyUri::Pkcs11(attrs) = KeyUri::parse(&key_uri).map_err(|e| e.to_string())? else {
        return Err(format!(
            "--pkcs11 expects a `pkcs11:` URI, got `{token_uri}`"
        ));
    };
    tokio::task::spawn_blocking(move || {
        generate_key_for_uri(&attrs, algorithm).map_err(|e| e.to_string())?;
        let key = Pkcs11Key::open(&Pkcs11Config::from_uri(&attrs).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
        let p = key.provenance();
        let where_ = format!(
            "{algorithm} key `{label}` generated on the PKCS#11 token\n      {}\n      sensitive: {}, extractable: {}, generated on the token and never extractable: {}",
            key.describe(),
            p.sensitive,
            p.extractable,
            p.never_left_the_token()
        );
        Ok((Arc::new(key) as Arc<dyn KeyBackend>, where_))
    })
    .await
    .map_err(|e| e.to_string())?
}

#[cfg(not(feature = "pkcs11"))]
async fn create_on_token(
    _token_uri: &str,
    _algorithm: Algorithm,
) -> Result<(Arc<dyn KeyBackend>, String), String> {
    Err("this build has no PKCS#11 support; rebuild with the `pkcs11` feature".into())
}
