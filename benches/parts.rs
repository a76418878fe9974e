//! The parts of one signed call, each on its own (criterion):
//!
//! - `lookup`: the endpoint table (`protocol::lookup`) on a few real paths;
//! - `protocol`: what the flow builds and reads — the init body, the challenge, `clientData`,
//!   the `firstFactor` and the `/auth/action` body;
//! - `der`: the signature conversions the device backends do (a token's raw `r‖s` to DER, a
//!   card's DER made minimal);
//! - `sign`: software keys, per algorithm (P-256 through ring and through RustCrypto);
//! - `flow`: a whole signed call (`DfnsClient::request`: init, sign, complete, request) against
//!   the in-memory transport, which answers at once from a transcript of the real API: the
//!   library's own cost per call, without network or server. `flow/null-key` signs with a key
//!   that returns a fixed signature, so it is the flow without the signature.
//!
//! ```sh
//! cargo bench --bench parts                 # all of them
//! cargo bench --bench parts -- lookup       # one group
//! ```

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use dfns_signer::protocol::{
    client_data, lookup, ClientDataType, FirstFactor, Method, Payload, UserActionChallenge,
    UserActionComplete, UserActionInit,
};
use dfns_signer::software::SoftwareKey;
use dfns_signer::KeyBackend;

#[path = "common/mod.rs"]
mod common;

fn fixture_key(file: &str) -> SoftwareKey {
    let path = format!(
        "{}/tests/fixtures/keys/{file}.pem",
        env!("CARGO_MANIFEST_DIR")
    );
    SoftwareKey::from_pem_file(std::path::Path::new(&path)).unwrap()
}

fn lookups(c: &mut Criterion) {
    let mut g = c.benchmark_group("lookup");
    for (name, method, path) in [
        ("POST /wallets", Method::Post, "/wallets"),
        (
            "POST /wallets/{}/signatures",
            Method::Post,
            "/wallets/wa-5pfuu-9euek-8bp8qfpn6nqbhkr4/signatures",
        ),
        // Exempt, and among the longest of the table.
        (
            "POST /auth/login/oidc/credentials",
            Method::Post,
            "/auth/login/oidc/credentials",
        ),
        (
            "GET /exchanges/{}/accounts/{}/assets/{}/withdrawal-networks",
            Method::Get,
            "/exchanges/ex-1/accounts/ac-2/assets/as-3/withdrawal-networks?limit=5",
        ),
        ("POST unknown", Method::Post, "/brand-new/endpoint/x-1"),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| lookup(black_box(method), black_box(path)))
        });
    }
    g.finish();
}

fn transcript() -> serde_json::Value {
    let path = format!(
        "{}/tests/fixtures/transcripts/create_wallet_ed25519.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn protocol(c: &mut Criterion) {
    let t = transcript();
    let challenge_json = t["exchanges"][0]["response"]["body"]
        .to_string()
        .into_bytes();
    let challenge = UserActionChallenge::from_json(&challenge_json).unwrap();
    let payload = Payload::json(&serde_json::json!({"network": "EthereumSepolia"})).unwrap();
    let data = client_data(ClientDataType::Get, &challenge.challenge);
    let signature = [0x5au8; 64];
    let mut g = c.benchmark_group("protocol");
    g.bench_function("init body", |b| {
        b.iter(|| {
            let init = UserActionInit::new(Method::Post, "/wallets", black_box(&payload).as_str());
            Payload::json(&init).unwrap()
        })
    });
    g.bench_function("challenge from_json", |b| {
        b.iter(|| UserActionChallenge::from_json(black_box(&challenge_json)).unwrap())
    });
    g.bench_function("clientData", |b| {
        b.iter(|| client_data(ClientDataType::Get, black_box(&challenge.challenge)))
    });
    g.bench_function("firstFactor", |b| {
        b.iter(|| FirstFactor::key(common::CRED_ID, black_box(&data), &signature))
    });
    g.bench_function("complete body", |b| {
        let ff = FirstFactor::key(common::CRED_ID, &data, &signature);
        b.iter(|| {
            let complete = UserActionComplete {
                challenge_identifier: challenge.challenge_identifier.clone(),
                first_factor: ff.clone(),
                second_factor: None,
            };
            Payload::json(black_box(&complete)).unwrap()
        })
    });
    g.finish();
}

/// The conversions of `pkcs11::encode` (a token's `r‖s` to DER; secp256k1 normalised to low S)
/// and of the PIV backend (the card's DER, re-encoded minimal), as those backends write them.
fn der(c: &mut Criterion) {
    let p256 = fixture_key("p256");
    let k256 = fixture_key("secp256k1");
    let p256_der = p256.sign(b"message").unwrap();
    let p256_raw = p256::ecdsa::Signature::from_der(&p256_der)
        .unwrap()
        .to_bytes();
    let k256_der = k256.sign(b"message").unwrap();
    let k256_raw = k256::ecdsa::Signature::from_der(&k256_der)
        .unwrap()
        .to_bytes();
    let mut g = c.benchmark_group("der");
    g.bench_function("p256 raw to DER", |b| {
        b.iter(|| {
            let sig = p256::ecdsa::Signature::from_slice(black_box(&p256_raw)).unwrap();
            sig.to_der().as_bytes().to_vec()
        })
    });
    g.bench_function("secp256k1 raw to DER (low S)", |b| {
        b.iter(|| {
            let sig = k256::ecdsa::Signature::from_slice(black_box(&k256_raw))
                .unwrap()
                .normalize_s();
            sig.to_der().as_bytes().to_vec()
        })
    });
    g.bench_function("p256 DER to minimal DER", |b| {
        b.iter(|| {
            let sig = p256::ecdsa::Signature::from_der(black_box(&p256_der)).unwrap();
            sig.to_der().as_bytes().to_vec()
        })
    });
    g.finish();
}

fn sign(c: &mut Criterion) {
    let message = client_data(
        ClientDataType::Get,
        "NGQ3Y2JiZmNlYjU2M2NhODNmYjlmYWE3ZDA0Y2E4MTIxOTlhMTU1ZjRiOTY3Mjc5NWUyMmNmZGFjMmE4MmRhNA",
    );
    let mut g = c.benchmark_group("sign");
    for (name, key) in [
        ("p256 (ring)", fixture_key("p256")),
        ("p256 (RustCrypto)", fixture_key("p256").rust_crypto_only()),
        ("secp256k1", fixture_key("secp256k1")),
        ("ed25519", fixture_key("ed25519")),
        ("rsa2048 (ring)", fixture_key("rsa2048")),
        (
            "rsa2048 (RustCrypto)",
            fixture_key("rsa2048").rust_crypto_only(),
        ),
    ] {
        if name.starts_with("rsa") {
            g.measurement_time(Duration::from_secs(10));
        }
        g.bench_function(name, |b| b.iter(|| key.sign(black_box(&message)).unwrap()));
    }
    g.finish();
}

/// One signed `POST /wallets` through `DfnsClient::request` and the in-memory transport, on a
/// current-thread runtime: everything the library does per call, without network or server.
fn flow(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let payload = Payload::json(&serde_json::json!({"network": "EthereumSepolia"})).unwrap();
    let mut g = c.benchmark_group("flow");
    for (name, key) in [
        (
            "null-key",
            Arc::new(common::NullKey::new(fixture_key("ed25519"))) as Arc<dyn KeyBackend>,
        ),
        ("ed25519", Arc::new(fixture_key("ed25519"))),
        ("p256", Arc::new(fixture_key("p256"))),
    ] {
        let client =
            common::in_memory_client(dfns_signer::CredentialSigner::new(common::CRED_ID, key));
        g.bench_function(name, |b| {
            b.iter(|| {
                runtime
                    .block_on(client.request(Method::Post, "/wallets", payload.clone()))
                    .unwrap()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, lookups, protocol, der, sign, flow);
criterion_main!(benches);
