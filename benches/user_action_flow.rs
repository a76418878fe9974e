//! Throughput of the whole user-action flow (init → sign → complete → request) through
//! `DfnsClient` against the in-process simulator, with a software P-256 key: the client's own
//! overhead on loopback, before any device latency. Sequential and with concurrent callers
//! sharing one client (one connection pool).
//!
//! ```sh
//! cargo bench --bench user_action_flow
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use dfns_signer::simulator::Simulator;
use dfns_signer::software::SoftwareKey;
use dfns_signer::{Algorithm, KeyBackend};

const WINDOW: Duration = Duration::from_secs(3);

#[tokio::main]
async fn main() {
    let key = Arc::new(SoftwareKey::generate(Algorithm::EcdsaP256).unwrap());
    let sim = Simulator::builder()
        .root_public_key_pem(key.public_key().to_pem())
        .start()
        .await
        .unwrap();
    let client = dfns_signer::DfnsClient::simulator_root(&sim, key).unwrap();
    let body = serde_json::json!({"network": "Bitcoin"});
    // Warm the pool.
    client.create_wallet(&body).await.unwrap();

    for callers in [1usize, 4, 16] {
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..callers {
            let client = client.clone();
            let body = body.clone();
            tasks.push(tokio::spawn(async move {
                let mut n = 0u64;
                let mut latencies = Vec::new();
                while started.elapsed() < WINDOW {
                    let t = Instant::now();
                    client.create_wallet(&body).await.unwrap();
                    latencies.push(t.elapsed());
                    n += 1;
                }
                (n, latencies)
            }));
        }
        let mut total = 0;
        let mut all = Vec::new();
        for t in tasks {
            let (n, l) = t.await.unwrap();
            total += n;
            all.extend(l);
        }
        all.sort();
        let secs = started.elapsed().as_secs_f64();
        println!(
            "signed POST /wallets, {callers:>2} concurrent caller(s): {:>7.0} requests/s, p50 {:.2} ms, p99 {:.2} ms ({total} requests)",
            total as f64 / secs,
            all[all.len() / 2].as_secs_f64() * 1e3,
            all[all.len() * 99 / 100].as_secs_f64() * 1e3,
        );
    }
}
