//! Every network and server fault class against the retry rules: for each, the outcome the
//! caller sees, how many attempts were made, and — from the simulator's own counters — that the
//! side effects equal the successful calls (nothing duplicated, nothing lost). The table in
//! `docs/faults.md` names these tests.
#![cfg(all(feature = "simulator", feature = "client"))]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use dfns_signer::protocol::{Method, Payload};
use dfns_signer::simulator::{Faults, Simulator, Stats};
use dfns_signer::software::SoftwareKey;
use dfns_signer::{Algorithm, ClientError, DfnsClient, Error, Outcome};
use dfns_signer::{Backoff, CallOptions};
use serde_json::json;

/// A simulator whose faults strike only `POST /wallets`, and a root client that retries up to
/// `attempts` times without waiting.
async fn start(faults: Faults, attempts: u32) -> (Simulator, DfnsClient) {
    let (sim, root) = common::sim::start_with(Faults {
        only_paths: vec!["POST /wallets".into()],
        ..faults
    })
    .await;
    let client = common::sim::client_like(&sim, &root)
        .retry_policy(Arc::new(Backoff {
            max_attempts: attempts,
            base_delay: Duration::ZERO,
            max_delay: Duration::from_secs(5),
        }))
        .build()
        .unwrap();
    (sim, client)
}

fn count(stats: &Stats, key: &str) -> u64 {
    stats.requests.get(key).copied().unwrap_or(0)
}

fn wallet(external_id: Option<&str>) -> Payload {
    let body = Payload::json(&json!({"network": "Bitcoin", "name": "faults"})).unwrap();
    match external_id {
        Some(id) => body.with_external_id(id).unwrap(),
        None => body,
    }
}

async fn create(client: &DfnsClient, body: Payload) -> Result<Outcome<serde_json::Value>, Error> {
    client.request_json(Method::Post, "/wallets", body).await
}

fn api_status(err: &Error) -> Option<u16> {
    err.api().map(|a| a.status)
}

/// Each attempt used its own user action, once; none was refused.
fn assert_fresh_user_actions(stats: &Stats, attempts: u64) {
    assert_eq!(count(stats, "POST /wallets"), attempts, "{stats:?}");
    assert_eq!(
        count(stats, "POST /auth/action/init"),
        attempts,
        "{stats:?}"
    );
    assert_eq!(stats.user_actions_issued, attempts, "{stats:?}");
    assert_eq!(stats.user_actions_used, attempts, "{stats:?}");
    assert!(stats.rejections.is_empty(), "{stats:?}");
}

#[tokio::test]
async fn fault_429_with_retry_after_is_retried_after_the_delay() {
    let (sim, client) = start(
        Faults {
            rate_429: 1.0,
            retry_after_secs: 1,
            ..Faults::default()
        },
        2,
    )
    .await;
    // Lift the fault after the first answer: the retry then succeeds.
    let lift = {
        let sim_faults = sim.faults();
        let sim = &sim;
        async move {
            while sim.stats().faults_injected == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            sim.set_faults(Faults {
                rate_429: 0.0,
                ..sim_faults
            });
        }
    };
    let started = Instant::now();
    let (result, ()) = tokio::join!(create(&client, wallet(None)), lift);
    result.unwrap().done().unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After: 1 was not honoured ({:?})",
        started.elapsed()
    );
    let stats = sim.stats();
    assert_fresh_user_actions(&stats, 2);
    assert_eq!(stats.side_effects, 1, "{stats:?}");
}

#[tokio::test]
async fn fault_429_without_retry_after_is_retried_until_attempts_run_out() {
    let (sim, client) = start(
        Faults {
            rate_429: 1.0,
            retry_after_secs: 0,
            ..Faults::default()
        },
        3,
    )
    .await;
    // A 429 is never acted on (the rate limiter answers first), so even a body without an
    // externalId is retried.
    let err = create(&client, wallet(None)).await.unwrap_err();
    assert_eq!(api_status(&err), Some(429), "{err}");
    let stats = sim.stats();
    assert_fresh_user_actions(&stats, 3);
    assert_eq!(stats.side_effects, 0, "{stats:?}");
}

#[tokio::test]
async fn fault_500_is_never_retried() {
    let (sim, client) = start(
        Faults {
            rate_500: 1.0,
            ..Faults::default()
        },
        5,
    )
    .await;
    let err = create(&client, wallet(Some("ext-500"))).await.unwrap_err();
    assert_eq!(api_status(&err), Some(500), "{err}");
    let stats = sim.stats();
    assert_fresh_user_actions(&stats, 1);
    assert_eq!(stats.side_effects, 0, "{stats:?}");
}

/// 502 and 504 may come after the backend acted: without an externalId (or an explicit opt-in)
/// a mutating request is not sent again.
#[tokio::test]
async fn fault_502_and_504_are_not_retried_without_an_external_id() {
    for faults in [
        Faults {
            rate_502: 1.0,
            ..Faults::default()
        },
        Faults {
            rate_504: 1.0,
            ..Faults::default()
        },
    ] {
        let (sim, client) = start(faults.clone(), 5).await;
        let err = create(&client, wallet(None)).await.unwrap_err();
        assert!(matches!(api_status(&err), Some(502 | 504)), "{err}");
        let stats = sim.stats();
        assert_fresh_user_actions(&stats, 1);
        assert_eq!(stats.side_effects, 0, "{faults:?}: {stats:?}");
    }
}

#[tokio::test]
async fn fault_502_is_retried_with_an_external_id_or_an_opt_in() {
    let (sim, client) = start(
        Faults {
            rate_502: 1.0,
            ..Faults::default()
        },
        3,
    )
    .await;
    let err = create(&client, wallet(Some("ext-502"))).await.unwrap_err();
    assert_eq!(api_status(&err), Some(502), "{err}");
    assert_fresh_user_actions(&sim.stats(), 3);

    let err = client
        .request_with_options(
            Method::Post,
            "/wallets",
            wallet(None),
            CallOptions::new().retry_side_effects(true),
        )
        .await
        .unwrap_err();
    assert_eq!(api_status(&err), Some(502), "{err}");
    let stats = sim.stats();
    assert_fresh_user_actions(&stats, 6);
    assert_eq!(stats.side_effects, 0, "{stats:?}");
}

/// The dangerous case: the wallet was created, the answer lost. Without an externalId the
/// client reports the error and does not create a second wallet; with one, the retry gets the
/// first wallet back from Dfns' deduplication.
#[tokio::test]
async fn fault_504_after_the_effect_creates_exactly_one_wallet() {
    let (sim, client) = start(
        Faults {
            rate_504_after: 1.0,
            ..Faults::default()
        },
        3,
    )
    .await;
    let err = create(&client, wallet(None)).await.unwrap_err();
    assert_eq!(api_status(&err), Some(504), "{err}");
    let stats = sim.stats();
    assert_fresh_user_actions(&stats, 1);
    assert_eq!(
        stats.side_effects, 1,
        "it ran once, and only once: {stats:?}"
    );

    // With an externalId: the first attempt runs and loses its answer; the fault is lifted
    // before the second (300 ms later), which is deduplicated and answered with the same wallet.
    let client = common::sim::client_like(&sim, &client)
        .retry_policy(Arc::new(Backoff {
            max_attempts: 3,
            base_delay: Duration::from_millis(300),
            max_delay: Duration::from_secs(1),
        }))
        .build()
        .unwrap();
    sim.set_faults(Faults {
        rate_504_after: 1.0,
        only_paths: vec!["POST /wallets".into()],
        ..Faults::default()
    });
    let lift = async {
        while sim.stats().faults_injected < 2 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        sim.set_faults(Faults::default());
    };
    let (result, ()) = tokio::join!(create(&client, wallet(Some("ext-504"))), lift);
    let wallet = result.unwrap().done().unwrap();
    assert_eq!(wallet["externalId"], "ext-504");
    let stats = sim.stats();
    assert_fresh_user_actions(&stats, 3);
    assert_eq!(stats.side_effects, 2, "one wallet per call: {stats:?}");
}

#[tokio::test]
async fn dropped_connection_after_the_request_was_written_is_not_retried() {
    let (sim, client) = start(
        Faults {
            drop_after_rate: 1.0,
            ..Faults::default()
        },
        5,
    )
    .await;
    let err = create(&client, wallet(None)).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Client(ClientError::Transport {
                never_sent: false,
                ..
            })
        ),
        "{err:?}"
    );
    let stats = sim.stats();
    assert_fresh_user_actions(&stats, 1);
    assert_eq!(stats.dropped, 1, "{stats:?}");
    assert_eq!(stats.side_effects, 1, "ran once, not repeated: {stats:?}");
}

#[tokio::test]
async fn dropped_connection_before_the_endpoint_runs_loses_nothing() {
    let (sim, client) = start(
        Faults {
            drop_rate: 1.0,
            ..Faults::default()
        },
        5,
    )
    .await;
    // The client cannot tell a drop before the endpoint ran from one after: not retried.
    let err = create(&client, wallet(None)).await.unwrap_err();
    assert!(
        matches!(err, Error::Client(ClientError::Transport { .. })),
        "{err:?}"
    );
    let stats = sim.stats();
    assert_fresh_user_actions(&stats, 1);
    assert_eq!(stats.side_effects, 0, "{stats:?}");
}

/// A connection that is refused never carried the request: retried, whatever the method.
#[tokio::test]
async fn refused_connection_is_retried_and_never_sent() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let key = Arc::new(SoftwareKey::generate(Algorithm::Ed25519).unwrap());
    let client = DfnsClient::builder()
        .base_url(format!("http://{addr}"))
        .auth_token("t".to_owned().into())
        .signer(dfns_signer::CredentialSigner::new("c", key))
        .retry_policy(Arc::new(Backoff {
            max_attempts: 3,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        }))
        .build()
        .unwrap();
    let started = Instant::now();
    let err = create(&client, wallet(None)).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Client(ClientError::Transport {
                never_sent: true,
                ..
            })
        ),
        "{err:?}"
    );
    // Two retries, after 100 ms and 200 ms.
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
}

/// A server slower than the client's timeout: the request fails with a timeout at its first
/// step (the challenge), so the wallet request is never sent.
#[tokio::test]
async fn slow_server_past_the_timeout_fails_before_anything_is_sent() {
    let (sim, root) = common::sim::start_with(Faults {
        latency: Duration::from_millis(800),
        ..Faults::default()
    })
    .await;
    let client = common::sim::client_like(&sim, &root)
        .timeout(Duration::from_millis(200))
        .retry_policy(Arc::new(Backoff::default()))
        .build()
        .unwrap();
    let err = create(&client, wallet(None)).await.unwrap_err();
    assert!(
        matches!(err, Error::Client(ClientError::Timeout { .. })),
        "{err:?}"
    );
    tokio::time::sleep(Duration::from_millis(900)).await;
    let stats = sim.stats();
    assert_eq!(count(&stats, "POST /wallets"), 0, "{stats:?}");
    assert_eq!(stats.user_actions_issued, 0, "{stats:?}");
    assert_eq!(stats.side_effects, 0, "{stats:?}");
}

#[tokio::test]
async fn policy_pending_202_is_an_outcome_not_a_retry() {
    let (sim, client) = start(
        Faults {
            policy_pending_paths: vec!["POST /wallets".into()],
            ..Faults::default()
        },
        5,
    )
    .await;
    match create(&client, wallet(None)).await.unwrap() {
        Outcome::PolicyPending(p) => assert!(p.approval_id().is_some(), "{p:?}"),
        other => panic!("expected a pending approval, got {other:?}"),
    }
    let stats = sim.stats();
    assert_fresh_user_actions(&stats, 1);
    assert_eq!(stats.side_effects, 0, "{stats:?}");
}
