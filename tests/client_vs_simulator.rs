//! Our client against the local Dfns simulator, for every key type: registration, service
//! accounts, wallets, signatures, login, credential codes, policy approvals and retries under
//! injected faults. The simulator verifies everything with its own code (see `src/simulator`).
#![cfg(all(feature = "simulator", feature = "client"))]

use std::sync::Arc;
use std::time::Duration;

use dfns_signer::protocol::{Method, Payload};
use dfns_signer::simulator::{Faults, Simulator};
use dfns_signer::software::SoftwareKey;
use dfns_signer::{Algorithm, CredentialSigner, DfnsClient, KeyBackend, Outcome};
use dfns_signer::{Backoff, ListWallets};
use serde_json::json;

const ALGORITHMS: [Algorithm; 4] = [
    Algorithm::EcdsaP256,
    Algorithm::EcdsaSecp256k1,
    Algorithm::Ed25519,
    Algorithm::RsaPkcs1Sha256,
];

async fn start() -> (Simulator, DfnsClient) {
    let root = Arc::new(SoftwareKey::generate(Algorithm::EcdsaP256).unwrap());
    let sim = Simulator::builder()
        .root_public_key_pem(root.public_key().to_pem())
        .start()
        .await
        .unwrap();
    let admin = dfns_signer::DfnsClient::simulator_root(&sim, root).unwrap();
    (sim, admin)
}

#[tokio::test]
async fn every_key_type_registers_and_signs_calls() {
    let (sim, admin) = start().await;
    for alg in ALGORITHMS {
        let key: Arc<dyn KeyBackend> = Arc::new(SoftwareKey::generate(alg).unwrap());
        let sa = admin
            .service_account_client(&format!("sa-{alg}"), key)
            .await
            .unwrap();
        let wallet = sa
            .create_wallet(
                &json!({"network": "EthereumSepolia", "name": format!("Trésorerie ✓ {alg}")}),
            )
            .await
            .unwrap()
            .done()
            .unwrap();
        let id = wallet["id"].as_str().unwrap();
        assert_eq!(
            sa.get_wallet(id).await.unwrap()["name"],
            format!("Trésorerie ✓ {alg}")
        );
        let sig = sa
            .generate_signature(
                id,
                &json!({"kind": "Hash", "hash": format!("0x{}", "11".repeat(32))}),
            )
            .await
            .unwrap()
            .done()
            .unwrap();
        let got = sa
            .get_signature(id, sig["id"].as_str().unwrap())
            .await
            .unwrap();
        assert_eq!(got["id"], sig["id"]);

        // A second Key credential for the same account, registered by the first, then used.
        let second: Arc<dyn KeyBackend> = Arc::new(SoftwareKey::generate(alg).unwrap());
        let registered = sa
            .register_key_credential(second.clone(), &format!("second-{alg}"), None)
            .await
            .unwrap();
        let second_id = registered["credentialId"].as_str().unwrap().to_owned();
        let with_second = sa.with_signer(CredentialSigner::new(second_id, second));
        with_second
            .create_wallet(&json!({"network": "Bitcoin"}))
            .await
            .unwrap()
            .done()
            .unwrap();
    }
    let list = admin
        .list_wallets(&ListWallets {
            limit: Some(100),
            pagination_token: None,
        })
        .await
        .unwrap();
    // Two wallets per key type, and the simulator lists the whole organisation's.
    assert_eq!(
        list["items"].as_array().unwrap().len(),
        2 * ALGORITHMS.len()
    );
    // Per key type, five requests need a user action: the service account, its wallet, the
    // signature, the second credential's registration (its `/auth/credentials/init` needs none)
    // and the second credential's wallet. Each user action is issued once and used once.
    let stats = sim.stats();
    let per_key_type = 5;
    let actions = (per_key_type * ALGORITHMS.len()) as u64;
    assert_eq!(stats.user_actions_issued, actions, "{stats:?}");
    assert_eq!(stats.user_actions_used, actions, "{stats:?}");
    let requests = |key: &str| stats.requests.get(key).copied().unwrap_or(0);
    let n = ALGORITHMS.len() as u64;
    assert_eq!(requests("POST /auth/action/init"), actions, "{stats:?}");
    assert_eq!(requests("POST /auth/action"), actions, "{stats:?}");
    assert_eq!(requests("POST /auth/service-accounts"), n, "{stats:?}");
    assert_eq!(requests("POST /wallets"), 2 * n, "{stats:?}");
    assert_eq!(requests("POST /auth/credentials/init"), n, "{stats:?}");
    assert_eq!(requests("POST /auth/credentials"), n, "{stats:?}");
    let signature_posts: u64 = stats
        .requests
        .iter()
        .filter(|(k, _)| k.starts_with("POST /wallets/") && k.ends_with("/signatures"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(signature_posts, n, "{stats:?}");
    assert!(stats.rejections.is_empty(), "{stats:?}");
    assert_eq!((stats.faults_injected, stats.dropped), (0, 0), "{stats:?}");
}

#[tokio::test]
async fn login_delegated_login_pat_and_credential_code() {
    let (sim, admin) = start().await;
    // Login as the root user with the root credential, no auth token needed.
    let anonymous = DfnsClient::builder()
        .base_url(sim.base_url())
        .signer(admin.signer().unwrap().clone())
        .build()
        .unwrap();
    let token = anonymous.login(sim.username(), sim.org_id()).await.unwrap();
    let logged_in = admin.with_auth_token(token);
    logged_in
        .create_wallet(&json!({"network": "Bitcoin"}))
        .await
        .unwrap()
        .done()
        .unwrap();

    let end_user = admin.delegated_login("alice@example.com").await.unwrap();
    let alice = DfnsClient::builder()
        .base_url(sim.base_url())
        .auth_token(end_user)
        .build()
        .unwrap();
    alice.list_wallets(&ListWallets::default()).await.unwrap();

    let key = SoftwareKey::generate(Algorithm::Ed25519).unwrap();
    let (pat, _) = admin
        .create_personal_access_token("ci-pat", &key.public_key().to_pem(), Some(3600))
        .await
        .unwrap();
    admin
        .with_auth_token(pat)
        .list_wallets(&ListWallets::default())
        .await
        .unwrap();

    // Credential code: register a key from a machine without a credential.
    let code = admin
        .create_credential_code(Duration::from_secs(60))
        .await
        .unwrap();
    let code = code["code"].as_str().expect("a code").to_owned();
    let new_key: Arc<dyn KeyBackend> =
        Arc::new(SoftwareKey::generate(Algorithm::EcdsaSecp256k1).unwrap());
    let bare = DfnsClient::builder()
        .base_url(sim.base_url())
        .build()
        .unwrap();
    let registered = bare
        .register_key_credential_with_code(&code, new_key.clone(), "from-code", None)
        .await
        .unwrap();
    assert_eq!(
        registered["credentialId"].as_str().unwrap(),
        dfns_signer::protocol::default_credential_id(new_key.public_key())
    );
}

#[tokio::test]
async fn policy_pending_is_its_own_outcome() {
    let (sim, admin) = start().await;
    sim.set_faults(Faults {
        policy_pending_paths: vec!["POST /wallets".into()],
        ..Faults::default()
    });
    match admin
        .create_wallet(&json!({"network": "Bitcoin"}))
        .await
        .unwrap()
    {
        Outcome::PolicyPending(p) => assert!(p.approval_id().is_some(), "{p:?}"),
        other => panic!("expected a pending approval, got {other:?}"),
    }
}

#[tokio::test]
async fn retries_under_injected_faults_always_take_a_fresh_user_action() {
    let (sim, admin) = start().await;
    sim.set_faults(Faults {
        rate_429: 0.5,
        rate_502: 0.2,
        retry_after_secs: 0,
        only_paths: vec!["POST /wallets".into()],
        seed: Some(7),
        ..Faults::default()
    });
    let client = admin.with_signer(admin.signer().unwrap().clone());
    let retrying = DfnsClient::builder()
        .base_url(sim.base_url())
        .auth_token(sim.auth_token().clone())
        .signer(client.signer().unwrap().clone())
        .retry_policy(Arc::new(Backoff {
            max_attempts: 20,
            base_delay: Duration::ZERO,
            max_delay: Duration::ZERO,
        }))
        .build()
        .unwrap();
    for i in 0..10 {
        let body = json!({"network": "Bitcoin", "externalId": format!("ext-{i}")});
        retrying.create_wallet(&body).await.unwrap().done().unwrap();
    }
    let stats = sim.stats();
    // How many faults the seeded dice roll is not known without rolling them; that some did is
    // what makes this test about retries.
    assert!(
        stats.faults_injected > 0,
        "the dice never rolled a fault: {stats:?}"
    );
    // Faults strike only `POST /wallets`, after its user action is spent: each fault costs one
    // attempt, and each of the 10 wallets one successful attempt. Every attempt took its own user
    // action, issued and used exactly once; none was refused.
    let attempts = 10 + stats.faults_injected;
    let requests = |key: &str| stats.requests.get(key).copied().unwrap_or(0);
    assert_eq!(requests("POST /wallets"), attempts, "{stats:?}");
    assert_eq!(requests("POST /auth/action/init"), attempts, "{stats:?}");
    assert_eq!(requests("POST /auth/action"), attempts, "{stats:?}");
    assert_eq!(stats.user_actions_issued, attempts, "{stats:?}");
    assert_eq!(stats.user_actions_used, attempts, "{stats:?}");
    let status = |code: u16| stats.statuses.get(&code).copied().unwrap_or(0);
    assert_eq!(
        status(429) + status(502),
        stats.faults_injected,
        "every fault is a 429 or a 502: {stats:?}"
    );
    assert!(stats.rejections.is_empty(), "{stats:?}");
    assert_eq!(stats.dropped, 0, "{stats:?}");

    // Without a retry policy, the fault comes back as a typed error.
    sim.set_faults(Faults {
        rate_502: 1.0,
        only_paths: vec!["POST /wallets".into()],
        ..Faults::default()
    });
    let err = admin
        .create_wallet(&json!({"network": "Bitcoin"}))
        .await
        .unwrap_err();
    assert_eq!(err.api().map(|a| a.status), Some(502));
    // One more attempt, not retried: one more user action spent, one more fault.
    let after = sim.stats();
    assert_eq!(
        after.user_actions_used,
        stats.user_actions_used + 1,
        "{after:?}"
    );
    assert_eq!(
        after.faults_injected,
        stats.faults_injected + 1,
        "{after:?}"
    );
}

#[tokio::test]
async fn raw_requests_reach_any_endpoint() {
    let (_sim, admin) = start().await;
    let created = admin
        .request_json::<serde_json::Value>(
            Method::Post,
            "/wallets",
            Payload::raw_json(r#"{"network":"Bitcoin","name":"raw"}"#).unwrap(),
        )
        .await
        .unwrap()
        .done()
        .unwrap();
    let id = dfns_signer::protocol::encode_segment(created["id"].as_str().unwrap());
    let tagged = admin
        .request(
            Method::Put,
            &format!("/wallets/{id}/tags"),
            Payload::json(&json!({"tags": ["t1", "ü"]})).unwrap(),
        )
        .await
        .unwrap();
    assert!(matches!(tagged, Outcome::Done(_)));
}

/// The three requests of a signed call (init, completion, the request) and the calls after it
/// go over one kept-alive connection: the pool keeps it, the client reads every answer to its
/// end so the connection can go back to the pool, and the simulator counts what it accepted.
#[tokio::test]
async fn sequential_signed_calls_share_one_connection() {
    let (sim, admin) = start().await;
    for _ in 0..5 {
        admin
            .create_wallet(&json!({"network": "Bitcoin"}))
            .await
            .unwrap()
            .done()
            .unwrap();
    }
    // An error answer is read to its end too, and leaves the connection usable.
    let missing = admin.get_wallet("wa-missing").await.unwrap_err();
    assert_eq!(missing.api().map(|a| a.status), Some(404));
    admin.list_wallets(&ListWallets::default()).await.unwrap();
    let stats = sim.stats();
    assert_eq!(stats.user_actions_used, 5, "{stats:?}");
    assert_eq!(stats.requests.values().sum::<u64>(), 17, "{stats:?}");
    assert_eq!(stats.connections, 1, "{stats:?}");
}
