//! Soak: 2,000 user-action-signed requests at concurrency 64 through one client, once with a
//! software key and once with a SoftHSM key. Zero failures, and the simulator's counters show
//! every user action issued and consumed exactly once, none refused (a user action presented
//! with another request than the one it signed would be), and one wallet per request.
#![cfg(all(feature = "simulator", feature = "pkcs11"))]

mod common;

use std::sync::Arc;

use common::softhsm::{hsm, USER_PIN};
use dfns_signer::pkcs11::{Pkcs11Config, Pkcs11Key};
use dfns_signer::software::SoftwareKey;
use dfns_signer::{Algorithm, DfnsClient, KeyBackend, PinSource};
use secrecy::SecretString;
use serde_json::json;

const REQUESTS: u64 = 2_000;
const CONCURRENCY: usize = 64;

/// Sends `REQUESTS` wallet creations, `CONCURRENCY` at a time, as a service account whose
/// credential is `key`, and checks the simulator's books.
async fn soak(key: Arc<dyn KeyBackend>) {
    let (sim, admin) = common::sim::start().await;
    let client: DfnsClient = admin.service_account_client("soak", key).await.unwrap();
    let before = sim.stats();

    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let workers: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let (client, next) = (client.clone(), next.clone());
            tokio::spawn(async move {
                let mut failures = Vec::new();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= REQUESTS {
                        return failures;
                    }
                    // A distinct body per request: a user action used for another request
                    // than its own would be refused by the simulator.
                    let body = json!({"network": "Bitcoin", "name": format!("soak-{i}")});
                    match client.create_wallet(&body).await {
                        Ok(outcome) => {
                            let wallet = outcome.done().unwrap();
                            assert_eq!(wallet["name"], format!("soak-{i}"));
                        }
                        Err(e) => failures.push(format!("{i}: {e}")),
                    }
                }
            })
        })
        .collect();
    let mut failures = Vec::new();
    for w in workers {
        failures.extend(w.await.unwrap());
    }
    assert!(
        failures.is_empty(),
        "{} failures: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );

    let after = sim.stats();
    let delta = |f: fn(&dfns_signer::simulator::Stats) -> u64| f(&after) - f(&before);
    let requests =
        |s: &dfns_signer::simulator::Stats, k: &str| s.requests.get(k).copied().unwrap_or(0);
    assert_eq!(
        requests(&after, "POST /wallets") - requests(&before, "POST /wallets"),
        REQUESTS
    );
    assert_eq!(delta(|s| s.user_actions_issued), REQUESTS, "{after:?}");
    assert_eq!(delta(|s| s.user_actions_used), REQUESTS, "{after:?}");
    assert_eq!(delta(|s| s.side_effects), REQUESTS, "{after:?}");
    assert!(after.rejections.is_empty(), "{:?}", after.rejections);
    assert!(after.statuses.keys().all(|s| *s < 400), "{after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn soak_software_key() {
    soak(Arc::new(
        SoftwareKey::generate(Algorithm::EcdsaP256).unwrap(),
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn soak_softhsm_key() {
    let Some(h) = hsm() else { return };
    let key = Pkcs11Key::open(
        &Pkcs11Config::new()
            .with_module_path(&h.module)
            .with_token_label("conc")
            .with_key_label("p256")
            .with_pin(PinSource::Value(SecretString::from(USER_PIN.to_owned()))),
    )
    .unwrap();
    soak(Arc::new(key)).await;
}
