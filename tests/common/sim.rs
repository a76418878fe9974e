//! The in-process simulator with a software root credential, as the client tests start it.

#![allow(dead_code)]

use std::sync::Arc;

use dfns_signer::simulator::{Faults, Simulator};
use dfns_signer::software::SoftwareKey;
use dfns_signer::{Algorithm, DfnsClient, DfnsClientBuilder, KeyBackend};

/// A simulator breaking requests as `faults` says, whose root user's credential is a new
/// Ed25519 software key, and a client acting as that root user.
pub async fn start_with(faults: Faults) -> (Simulator, DfnsClient) {
    let root = Arc::new(SoftwareKey::generate(Algorithm::Ed25519).unwrap());
    let sim = Simulator::builder()
        .root_public_key_pem(root.public_key().to_pem())
        .faults(faults)
        .start()
        .await
        .unwrap();
    let client = dfns_signer::DfnsClient::simulator_root(&sim, root).unwrap();
    (sim, client)
}

/// [`start_with`] without faults.
pub async fn start() -> (Simulator, DfnsClient) {
    start_with(Faults::default()).await
}

/// A builder for a client acting as `root` on `sim` (same token and signer), for tests that
/// change one of its options (retries, timeouts).
pub fn client_like(sim: &Simulator, root: &DfnsClient) -> DfnsClientBuilder {
    DfnsClient::builder()
        .base_url(sim.base_url())
        .auth_token(sim.auth_token().clone())
        .signer(root.signer().unwrap().clone())
}
