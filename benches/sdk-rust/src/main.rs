//! The official Dfns Rust SDK (`dfns-sdk-rust` 0.3.2) under the load `dfns-signer bench` makes:
//! N user-action-signed `POST /wallets` through one client, C in flight, after a warm-up of W
//! at the same concurrency; prints one JSON line with the figures `dfns-signer bench --output
//! json` prints (`requests_per_second`, `p50_ms`, `p99_ms`, `cpu_ms_per_request`, `errors`…).
//!
//! ```sh
//! DFNS_AUTH_TOKEN=… dfns-sdk-rust-bench BASE_URL CRED_ID KEY.pem N C W [NETWORK]
//! DFNS_AUTH_TOKEN=… dfns-sdk-rust-bench --calls N BASE_URL CRED_ID KEY.pem
//! ```
//!
//! `--calls N` is for `benches/callgrind.sh` (instructions and syscalls per signed call, like
//! `benches/flow_cost.rs` for dfns-signer's client): one call, then N more one after the other
//! on tokio's current-thread runtime, and nothing else — no JSON, no CPU figures; run it with
//! two Ns and the difference divided by their difference is one call without the start-up.
//!
//! The SDK ships the `UserActionSigner` trait and no implementation; the signer below is the
//! one its README asks for, written the way the official TypeScript `AsymmetricKeySigner`
//! signs: `clientData = {"type":"key.get","challenge":…}`, signed with the credential key
//! (ECDSA P-256 over SHA-256, DER; or Ed25519), both base64url.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use dfns_sdk_rust::error::Error;
use dfns_sdk_rust::signer::{
    CredentialAssertion, CredentialAssertionData, UserActionChallenge, UserActionSigner,
};
use dfns_sdk_rust::wallets::types::CreateWalletRequest;
use dfns_sdk_rust::{DfnsClient, Options};

/// The credential's private key.
enum Key {
    P256(p256::ecdsa::SigningKey),
    Ed25519(ed25519_dalek::SigningKey),
}

impl Key {
    fn from_pem(pem: &str) -> Result<Key, String> {
        use ed25519_dalek::pkcs8::DecodePrivateKey as _;
        if let Ok(key) = p256::ecdsa::SigningKey::from_pkcs8_pem(pem) {
            return Ok(Key::P256(key));
        }
        if let Ok(key) = p256::SecretKey::from_sec1_pem(pem) {
            return Ok(Key::P256(key.into()));
        }
        if let Ok(key) = ed25519_dalek::SigningKey::from_pkcs8_pem(pem) {
            return Ok(Key::Ed25519(key));
        }
        Err("not a P-256 or Ed25519 private key (PKCS#8 or SEC1 PEM)".to_owned())
    }

    fn algorithm(&self) -> &'static str {
        match self {
            Key::P256(_) => "p256",
            Key::Ed25519(_) => "ed25519",
        }
    }

    fn sign(&self, message: &[u8]) -> Vec<u8> {
        match self {
            Key::P256(key) => {
                use p256::ecdsa::signature::Signer as _;
                let signature: p256::ecdsa::Signature = key.sign(message);
                signature.to_der().as_bytes().to_vec()
            }
            Key::Ed25519(key) => {
                use ed25519_dalek::Signer as _;
                key.sign(message).to_bytes().to_vec()
            }
        }
    }
}

/// A Key credential: its id and private key.
struct KeySigner {
    cred_id: String,
    key: Key,
}

#[async_trait]
impl UserActionSigner for KeySigner {
    async fn sign(&self, challenge: &UserActionChallenge) -> Result<CredentialAssertion, Error> {
        let client_data = serde_json::to_vec(&serde_json::json!({
            "type": "key.get",
            "challenge": challenge.challenge,
        }))?;
        let signature = self.key.sign(&client_data);
        Ok(CredentialAssertion {
            kind: "Key".to_owned(),
            credential_assertion: CredentialAssertionData {
                cred_id: self.cred_id.clone(),
                client_data: URL_SAFE_NO_PAD.encode(&client_data),
                signature: URL_SAFE_NO_PAD.encode(signature),
            },
        })
    }
}

/// CPU (user + system) this process has used so far.
fn process_cpu_time() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a whole `rusage` into the pointer it is given.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

#[derive(Default)]
struct Load {
    latencies: Vec<Duration>,
    errors: usize,
    first_error: Option<String>,
}

/// `count` requests, `concurrency` at a time.
async fn load(client: &DfnsClient, network: &str, count: usize, concurrency: usize) -> Load {
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency.min(count) {
        let (client, next, network) = (client.clone(), next.clone(), network.to_owned());
        tasks.spawn(async move {
            let mut mine = Load::default();
            while next.fetch_add(1, Ordering::Relaxed) < count {
                let started = Instant::now();
                let request = CreateWalletRequest {
                    network: network.clone(),
                    name: None,
                    signing_key: None,
                    delegate_to: None,
                    delay_delegation: None,
                    external_id: None,
                    tags: None,
                };
                match client.wallets.create_wallet(request).await {
                    Ok(_) => mine.latencies.push(started.elapsed()),
                    Err(e) => {
                        mine.errors += 1;
                        mine.first_error.get_or_insert_with(|| e.to_string());
                    }
                }
            }
            mine
        });
    }
    let mut all = Load::default();
    while let Some(part) = tasks.join_next().await {
        let part = part.expect("a load task panicked");
        all.latencies.extend(part.latencies);
        all.errors += part.errors;
        if all.first_error.is_none() {
            all.first_error = part.first_error;
        }
    }
    all
}

fn percentile_ms(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1].as_secs_f64() * 1e3
}

fn usage(why: &str) -> ! {
    eprintln!("error: {why}");
    eprintln!(
        "  what to do: DFNS_AUTH_TOKEN=… dfns-sdk-rust-bench BASE_URL CRED_ID KEY.pem N C WARMUP [NETWORK]"
    );
    std::process::exit(2)
}

/// `--calls N BASE_URL CRED_ID KEY.pem`: one call, then N, one at a time on a current-thread
/// runtime (what `benches/flow_cost.rs` does with dfns-signer's client), for callgrind and strace.
fn count_calls(args: &[String]) {
    if args.len() < 4 {
        usage("--calls needs N BASE_URL CRED_ID KEY.pem");
    }
    let calls: usize = args[0]
        .parse()
        .unwrap_or_else(|_| usage(&format!("`{}` is not a number", args[0])));
    let (base_url, cred_id, key_path) = (&args[1], &args[2], &args[3]);
    let auth_token =
        std::env::var("DFNS_AUTH_TOKEN").unwrap_or_else(|_| usage("DFNS_AUTH_TOKEN is not set"));
    let pem = std::fs::read_to_string(key_path)
        .unwrap_or_else(|e| usage(&format!("cannot read {key_path}: {e}")));
    let key = Key::from_pem(&pem).unwrap_or_else(|e| usage(&format!("{key_path}: {e}")));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        let client = DfnsClient::new(Options {
            base_url: base_url.clone(),
            auth_token,
            signer: Some(Arc::new(KeySigner {
                cred_id: cred_id.clone(),
                key,
            })),
            http: None,
        })
        .unwrap_or_else(|e| usage(&format!("the SDK refused its options: {e}")));
        // One call first: the connection, the runtime's and the allocator's first growth.
        for _ in 0..=calls {
            let request = CreateWalletRequest {
                network: "EthereumSepolia".to_owned(),
                name: None,
                signing_key: None,
                delegate_to: None,
                delay_delegation: None,
                external_id: None,
                tags: None,
            };
            if let Err(e) = client.wallets.create_wallet(request).await {
                eprintln!("error: a signed call failed: {e}");
                std::process::exit(1);
            }
        }
    });
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--calls") {
        return count_calls(&args[1..]);
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(run(args));
}

async fn run(args: Vec<String>) {
    if args.len() < 6 {
        usage("missing arguments");
    }
    let number = |i: usize| -> usize {
        args[i]
            .parse()
            .unwrap_or_else(|_| usage(&format!("`{}` is not a number", args[i])))
    };
    let (base_url, cred_id, key_path) = (&args[0], &args[1], &args[2]);
    let (requests, concurrency, warmup) = (number(3), number(4), number(5));
    if requests == 0 || concurrency == 0 {
        usage("N and C must be at least 1");
    }
    let network = args
        .get(6)
        .cloned()
        .unwrap_or_else(|| "EthereumSepolia".to_owned());
    let auth_token =
        std::env::var("DFNS_AUTH_TOKEN").unwrap_or_else(|_| usage("DFNS_AUTH_TOKEN is not set"));
    let pem = std::fs::read_to_string(key_path)
        .unwrap_or_else(|e| usage(&format!("cannot read {key_path}: {e}")));
    let key = Key::from_pem(&pem).unwrap_or_else(|e| usage(&format!("{key_path}: {e}")));
    let algorithm = key.algorithm();

    let client = DfnsClient::new(Options {
        base_url: base_url.clone(),
        auth_token,
        signer: Some(Arc::new(KeySigner {
            cred_id: cred_id.clone(),
            key,
        })),
        http: None,
    })
    .unwrap_or_else(|e| usage(&format!("the SDK refused its options: {e}")));

    let warm = load(&client, &network, warmup, concurrency).await;
    if warmup > 0 && warm.latencies.is_empty() {
        eprintln!(
            "error: every warm-up request failed; the first: {}",
            warm.first_error.unwrap_or_default()
        );
        std::process::exit(1);
    }

    let cpu_before = process_cpu_time();
    let started = Instant::now();
    let timed = load(&client, &network, requests, concurrency).await;
    let elapsed = started.elapsed();
    let cpu = process_cpu_time().saturating_sub(cpu_before);

    let mut latencies = timed.latencies;
    latencies.sort_unstable();
    let mut report = serde_json::json!({
        "runner": "dfns-sdk-rust 0.3.2",
        "requests": requests,
        "concurrency": concurrency,
        "warmup": warmup,
        "errors": timed.errors,
        "warmup_errors": warm.errors,
        "elapsed_s": elapsed.as_secs_f64(),
        "requests_per_second": latencies.len() as f64 / elapsed.as_secs_f64(),
        "p50_ms": percentile_ms(&latencies, 0.50),
        "p99_ms": percentile_ms(&latencies, 0.99),
        "cpu_ms_per_request": cpu.as_secs_f64() * 1e3 / requests as f64,
        "algorithm": algorithm,
    });
    if let Some(error) = &timed.first_error {
        report["first_error"] = error.clone().into();
    }
    println!("{report}");
    if latencies.is_empty() {
        std::process::exit(1);
    }
}
