//! What one signed call costs the client, counted rather than timed: `N` signed
//! `POST /wallets` through `DfnsClient::request`, for `valgrind --tool=callgrind` to count the
//! instructions of (timings on a shared 2-core machine wander by ±20 %; instruction counts by
//! less than 0.5 %). `benches/callgrind.sh` runs it twice (`N1` and `N2` calls) and prints
//! `(I(N2) − I(N1)) / (N2 − N1)`: the instructions of one call, start-up excluded.
//!
//! ```sh
//! benches/callgrind.sh                          # Ed25519 and P-256, both transports
//! cargo bench --bench flow_cost -- --calls 300 --key p256 --transport simulator
//! ```
//!
//! - `--transport simulator`: a simulator in a *child process* (this same binary with
//!   `--serve`), reached over loopback HTTP, so the count is the client's alone — reqwest, hyper
//!   and tokio included — and none of the server's. callgrind does not follow the child.
//!   With `--base-url URL --cred-id ID` (and the token in `DFNS_AUTH_TOKEN`) it uses a
//!   simulator already running instead (one whose root credential is the fixture key, such as
//!   `flow_cost --serve --key …`, which prints those three on one line and runs until its stdin
//!   closes): what `benches/callgrind.sh` does to count this client and the official Rust SDK's
//!   against the same server, and to count syscalls of this process alone.
//! - `--transport memory`: the client's in-memory transport (`DfnsClientBuilder::
//!   in_memory_transport`) answering from a transcript of the real API at once: the library's own
//!   work per call, without HTTP.
//! - `--key`: `ed25519` (ed25519-dalek; `ed25519-dalek` is the same key, a name kept from when
//!   ring signed Ed25519), `p256` (ring), `p256-rustcrypto`, `secp256k1`,
//!   `rsa`, or `none` (a key that returns a fixed signature without computing anything: the flow
//!   without signing; memory transport only, nothing verifies it there).
//!
//! The runtime is tokio's current-thread one, so the count does not depend on how work was
//! spread over workers.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use dfns_signer::protocol::{Method, Payload};
use dfns_signer::software::SoftwareKey;
use dfns_signer::{CredentialSigner, DfnsClient, KeyBackend};
use secrecy::SecretString;

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn fixture_key(kind: &str) -> Arc<dyn KeyBackend> {
    let file = match kind {
        "ed25519" | "ed25519-dalek" | "none" => "ed25519",
        "p256" | "p256-rustcrypto" => "p256",
        "secp256k1" => "secp256k1",
        "rsa" => "rsa2048",
        other => panic!("unknown --key {other}"),
    };
    let path = format!(
        "{}/tests/fixtures/keys/{file}.pem",
        env!("CARGO_MANIFEST_DIR")
    );
    let key = SoftwareKey::from_pem_file(std::path::Path::new(&path)).unwrap();
    match kind {
        "p256-rustcrypto" | "ed25519-dalek" => Arc::new(key.rust_crypto_only()),
        "none" => Arc::new(common::NullKey::new(key)),
        _ => Arc::new(key),
    }
}

fn main() {
    if std::env::args().any(|a| a == "--serve") {
        return serve(&arg("--key").unwrap_or_else(|| "ed25519".into()));
    }
    let calls: u64 = arg("--calls").map_or(300, |n| n.parse().unwrap());
    let kind = arg("--key").unwrap_or_else(|| "ed25519".into());
    let transport = arg("--transport").unwrap_or_else(|| "simulator".into());
    let key = fixture_key(&kind);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // The child simulator lives as long as its stdin: dropped with `child` below.
    let mut child = None;
    let client = match transport.as_str() {
        "simulator" => {
            assert!(
                kind != "none",
                "the simulator checks signatures: use a real key"
            );
            let (base_url, auth_token, cred_id) = match arg("--base-url") {
                // A simulator started by someone else (benches/callgrind.sh, to count this
                // client and the official SDK's against the same one, or strace this process
                // alone): its root credential must be the fixture key.
                Some(base_url) => (
                    base_url,
                    std::env::var("DFNS_AUTH_TOKEN").expect("--base-url needs DFNS_AUTH_TOKEN"),
                    arg("--cred-id").expect("--base-url needs --cred-id"),
                ),
                None => {
                    let mut c = Command::new(std::env::current_exe().unwrap())
                        .args(["--serve", "--key", &kind])
                        .stdin(Stdio::piped())
                        .stdout(Stdio::piped())
                        .spawn()
                        .unwrap();
                    let mut line = String::new();
                    BufReader::new(c.stdout.take().unwrap())
                        .read_line(&mut line)
                        .unwrap();
                    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
                    child = Some(c);
                    let field = |name: &str| v[name].as_str().unwrap().to_owned();
                    (field("baseUrl"), field("authToken"), field("credId"))
                }
            };
            DfnsClient::builder()
                .base_url(base_url)
                .auth_token(SecretString::from(auth_token))
                .signer(CredentialSigner::new(cred_id, key))
                .build()
                .unwrap()
        }
        "memory" => common::in_memory_client(CredentialSigner::new(common::CRED_ID, key)),
        other => panic!("unknown --transport {other}"),
    };
    let payload = Payload::json(&serde_json::json!({"network": "EthereumSepolia"})).unwrap();
    runtime.block_on(async {
        // One call first: the connection, the runtime's and the allocator's first growth.
        let send = || client.request(Method::Post, "/wallets", payload.clone());
        send().await.unwrap().done().unwrap();
        let started = Instant::now();
        for _ in 0..calls {
            send().await.unwrap().done().unwrap();
        }
        let elapsed = started.elapsed();
        println!(
            "{calls} signed calls, {kind} key, {transport} transport: {:.1} µs/call (wall clock)",
            elapsed.as_secs_f64() * 1e6 / calls.max(1) as f64
        );
    });
    if let Some(mut c) = child {
        drop(c.stdin.take());
        c.wait().unwrap();
    }
}

/// The child: a simulator whose root credential is the fixture key, its address on stdout, until
/// stdin closes.
fn serve(kind: &str) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let key = fixture_key(kind);
        let sim = dfns_signer::simulator::Simulator::builder()
            .root_public_key_pem(key.public_key().to_pem())
            .start()
            .await
            .unwrap();
        let line = serde_json::json!({
            "baseUrl": sim.base_url(),
            "authToken": secrecy::ExposeSecret::expose_secret(sim.auth_token()),
            "credId": sim.credential_id(),
        });
        let mut out = std::io::stdout();
        writeln!(out, "{line}").unwrap();
        out.flush().unwrap();
        tokio::task::spawn_blocking(|| {
            let mut sink = String::new();
            while std::io::stdin().read_line(&mut sink).is_ok_and(|n| n > 0) {}
        })
        .await
        .unwrap();
        drop(sim);
    });
}

#[path = "common/mod.rs"]
mod common;
