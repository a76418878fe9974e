//! Client behaviour that the transcripts do not show: configuration checks, secret redaction,
//! retries that always take a fresh challenge, timeouts and unreachable servers.
#![cfg(feature = "client")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::mock_http::{MockServer, Scripted};
use dfns_signer::protocol::{Method, Payload};
use dfns_signer::software::SoftwareKey;
use dfns_signer::{Algorithm, ClientError, CredentialSigner, DfnsClient, DfnsClientBuilder, Error};
use dfns_signer::{Backoff, NoRetry};
use secrecy::SecretString;
use serde_json::json;

const TOKEN: &str = "eyJhbGciOiJFZERTQSJ9.c2VjcmV0LXRva2Vu.c2ln";

fn signer() -> CredentialSigner {
    CredentialSigner::new(
        "cred-1",
        Arc::new(SoftwareKey::generate(Algorithm::EcdsaP256).unwrap()),
    )
}

/// A client of `base_url` with the test token and a fresh P-256 signer under `cred-1`.
fn signing_client(base_url: &str) -> DfnsClientBuilder {
    DfnsClient::builder()
        .base_url(base_url)
        .auth_token(SecretString::from(TOKEN.to_owned()))
        .signer(signer())
}

fn json_response(status: u16, body: serde_json::Value) -> Scripted {
    Scripted {
        status,
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.to_string().into_bytes(),
    }
}

fn challenge(n: u32) -> Scripted {
    json_response(
        200,
        json!({"challenge": format!("Y2hhbGxlbmdl{n}"), "challengeIdentifier": format!("ci-{n}"),
               "allowCredentials": {"key": [{"type": "public-key", "id": "cred-1"}], "webauthn": []}}),
    )
}

#[test]
fn base_url_rules() {
    let build = |url: &str| DfnsClient::builder().base_url(url).build();
    assert!(build("https://api.dfns.io").is_ok());
    assert!(build("http://127.0.0.1:8080").is_ok());
    assert!(build("http://localhost:8080/").is_ok());
    assert!(build("http://[::1]:8080").is_ok());
    let err = build("http://api.dfns.io").unwrap_err();
    assert!(err.to_string().contains("use https"), "{err}");
    assert!(build("http://10.0.0.1").is_err());
    assert!(build("ftp://x").is_err());
    assert!(build("not a url").is_err());
    assert!(build("https://api.dfns.io/?x=1").is_err());
    assert!(build("https://user:pw@api.dfns.io").is_err());
    assert_eq!(
        build("https://proxy.example/dfns/").unwrap().base_url(),
        "https://proxy.example/dfns"
    );
}

#[test]
fn debug_output_never_shows_the_token() {
    let client = signing_client("https://api.dfns.io").build().unwrap();
    let dbg = format!("{client:?}");
    assert!(!dbg.contains("c2VjcmV0LXRva2Vu"), "{dbg}");
    assert!(dbg.contains("REDACTED") && dbg.contains("cred-1"), "{dbg}");
}

#[tokio::test]
async fn a_retry_runs_the_whole_flow_again_with_a_fresh_challenge() {
    let server = MockServer::start(vec![
        challenge(1),
        json_response(200, json!({"userAction": "ua-1"})),
        Scripted {
            status: 429,
            headers: vec![("retry-after".into(), "0".into())],
            body: br#"{"error":{"status":429,"message":"Too Many Requests"}}"#.to_vec(),
        },
        challenge(2),
        json_response(200, json!({"userAction": "ua-2"})),
        json_response(200, json!({"id": "wa-1"})),
    ])
    .await;
    let client = signing_client(&server.base_url)
        .retry_policy(Arc::new(Backoff {
            max_attempts: 3,
            base_delay: Duration::ZERO,
            max_delay: Duration::ZERO,
        }))
        .build()
        .unwrap();
    let wallet = client
        .request_json::<serde_json::Value>(
            Method::Post,
            "/wallets",
            Payload::json(&json!({"network": "Bitcoin"})).unwrap(),
        )
        .await
        .unwrap()
        .done()
        .unwrap();
    assert_eq!(wallet["id"], "wa-1");
    let sent = server.recorded();
    let targets: Vec<&str> = sent.iter().map(|r| r.target.as_str()).collect();
    assert_eq!(
        targets,
        [
            "/auth/action/init",
            "/auth/action",
            "/wallets",
            "/auth/action/init",
            "/auth/action",
            "/wallets"
        ]
    );
    // Second attempt: new challenge answered, new token used.
    assert!(String::from_utf8_lossy(&sent[4].body).contains("ci-2"));
    assert_eq!(sent[2].header("x-dfns-useraction"), Some("ua-1"));
    assert_eq!(sent[5].header("x-dfns-useraction"), Some("ua-2"));
    // Same body bytes both times.
    assert_eq!(sent[2].body, sent[5].body);
}

#[tokio::test]
async fn no_retry_by_default_and_errors_keep_the_server_words() {
    let server = MockServer::start(vec![
        challenge(1),
        json_response(200, json!({"userAction": "ua-1"})),
        json_response(
            503,
            json!({"message": "maintenance", "details": {"eta": 5}}),
        ),
    ])
    .await;
    let client = signing_client(&server.base_url)
        .retry_policy(Arc::new(NoRetry))
        .build()
        .unwrap();
    let err = client
        .request(Method::Post, "/wallets", Payload::json(&json!({})).unwrap())
        .await
        .unwrap_err();
    let api = err.api().unwrap();
    assert_eq!((api.status, api.message.as_str()), (503, "maintenance"));
    assert_eq!(api.details, Some(json!({"eta": 5})));
    assert!(err.to_string().contains("retry later"), "{err}");
    assert!(!err.to_string().contains("c2VjcmV0LXRva2Vu"));
    assert_eq!(server.recorded().len(), 3);
}

#[tokio::test]
async fn malformed_challenge_is_a_typed_error_and_nothing_is_signed() {
    let server = MockServer::start(vec![json_response(
        200,
        json!({"challenge": "has \"quotes\"", "challengeIdentifier": "x"}),
    )])
    .await;
    let client = signing_client(&server.base_url).build().unwrap();
    let err = client
        .request(Method::Post, "/wallets", Payload::json(&json!({})).unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Protocol(dfns_signer::ProtocolError::Malformed { .. })
        ),
        "{err}"
    );
    assert_eq!(
        server.recorded().len(),
        1,
        "no assertion sent for a malformed challenge"
    );
}

#[tokio::test]
async fn unreachable_server_and_timeout() {
    // A port nobody listens on: bind, note the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let client = DfnsClient::builder()
        .base_url(format!("http://127.0.0.1:{port}"))
        .build()
        .unwrap();
    let err = client
        .request(Method::Get, "/wallets", Payload::empty())
        .await
        .unwrap_err();
    match &err {
        Error::Client(ClientError::Transport {
            never_sent, url, ..
        }) => {
            assert!(*never_sent, "a refused connection never sent the request");
            assert!(url.ends_with("/wallets"));
        }
        other => panic!("expected a transport error, got {other}"),
    }

    // A server that accepts and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let (_socket, _) = listener.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(30)).await;
    });
    let client = DfnsClient::builder()
        .base_url(format!("http://{addr}"))
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let err = client
        .request(Method::Get, "/wallets", Payload::empty())
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Client(ClientError::Timeout { .. })),
        "{err}"
    );
    hold.abort();
}

#[tokio::test]
async fn invalid_paths_are_refused_before_any_request() {
    let client = DfnsClient::builder()
        .base_url("http://127.0.0.1:9")
        .build()
        .unwrap();
    for path in ["wallets", "/wallets/a b", "/wallets#frag", "/wallets/é"] {
        let err = client
            .request(Method::Get, path, Payload::empty())
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::Protocol(dfns_signer::ProtocolError::InvalidPath { .. })
            ),
            "{path}: {err}"
        );
    }
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let server = MockServer::start(vec![Scripted {
        status: 307,
        headers: vec![("location".into(), "http://127.0.0.1:9/elsewhere".into())],
        body: Vec::new(),
    }])
    .await;
    let client = DfnsClient::builder()
        .base_url(&server.base_url)
        .auth_token(SecretString::from(TOKEN.to_owned()))
        .build()
        .unwrap();
    let err = client
        .request(Method::Get, "/wallets", Payload::empty())
        .await
        .unwrap_err();
    assert_eq!(err.api().map(|a| a.status), Some(307), "{err}");
    assert_eq!(server.recorded().len(), 1);
}

/// The in-memory transport answering a signed call as Dfns would, recording what it was sent.
type Sent = Arc<std::sync::Mutex<Vec<(Method, String, Vec<u8>)>>>;

fn in_memory(signer: CredentialSigner) -> (DfnsClient, Sent) {
    let sent = Sent::default();
    let log = sent.clone();
    let client = DfnsClient::builder()
        .auth_token(SecretString::from(TOKEN.to_owned()))
        .signer(signer)
        .in_memory_transport(move |method, path, body| {
            log.lock()
                .unwrap()
                .push((method, path.to_owned(), body.to_vec()));
            let answer = match path {
                "/auth/action/init" => json!({"challenge": "Y2hhbGxlbmdl", "challengeIdentifier": "ci-1",
                    "allowCredentials": {"key": [{"type": "public-key", "id": "cred-1"}], "webauthn": []}}),
                "/auth/action" => json!({"userAction": "ua-1"}),
                _ => json!({"id": "wa-1"}),
            };
            (200, answer.to_string().into_bytes())
        })
        .build()
        .unwrap();
    (client, sent)
}

/// Through the in-memory transport (the benches' hook) the whole flow runs as over HTTP: init,
/// completion, request, in that order; the payload signed in the init body is the body sent, byte
/// for byte (a raw payload a JSON round trip would respell); the assertion signs the challenge's
/// clientData and verifies, for keys signed on the calling task and on a blocking thread (RSA).
#[tokio::test]
async fn the_in_memory_transport_carries_the_flow_with_the_signed_bytes() {
    use dfns_signer::protocol::{b64url_decode, client_data, ClientDataType};
    use dfns_signer::KeyBackend;
    for alg in [
        Algorithm::Ed25519,
        Algorithm::EcdsaP256,
        Algorithm::EcdsaSecp256k1,
        Algorithm::RsaPkcs1Sha256,
    ] {
        let key = Arc::new(SoftwareKey::generate(alg).unwrap());
        let (client, sent) = in_memory(CredentialSigner::new("cred-1", key.clone()));
        let payload =
            Payload::raw_json(r#"{"network":"Bitcoin","n":1e+21,"s":"é\u00e9"}"#).unwrap();
        let answer = client
            .request(Method::Post, "/wallets?x=%2F", payload.clone())
            .await
            .unwrap()
            .done()
            .unwrap();
        assert_eq!(answer.body, br#"{"id":"wa-1"}"#, "{alg}");
        let sent = sent.lock().unwrap().clone();
        let route: Vec<(Method, &str)> = sent.iter().map(|(m, p, _)| (*m, p.as_str())).collect();
        assert_eq!(
            route,
            [
                (Method::Post, "/auth/action/init"),
                (Method::Post, "/auth/action"),
                (Method::Post, "/wallets?x=%2F")
            ],
            "{alg}"
        );
        let init: serde_json::Value = serde_json::from_slice(&sent[0].2).unwrap();
        assert_eq!(init["userActionPayload"], payload.as_str(), "{alg}");
        assert_eq!(init["userActionHttpPath"], "/wallets", "{alg}");
        assert_eq!(
            sent[2].2,
            payload.as_str().as_bytes(),
            "{alg}: sent as signed"
        );
        let complete: serde_json::Value = serde_json::from_slice(&sent[1].2).unwrap();
        assert_eq!(complete["challengeIdentifier"], "ci-1", "{alg}");
        let assertion = &complete["firstFactor"]["credentialAssertion"];
        assert_eq!(assertion["credId"], "cred-1", "{alg}");
        let data = b64url_decode(assertion["clientData"].as_str().unwrap()).unwrap();
        assert_eq!(
            data,
            client_data(ClientDataType::Get, "Y2hhbGxlbmdl"),
            "{alg}"
        );
        let signature = b64url_decode(assertion["signature"].as_str().unwrap()).unwrap();
        key.public_key().verify(&data, &signature).unwrap();
    }
}

/// Records the thread it signed on.
#[derive(Debug)]
struct ThreadKey {
    inner: SoftwareKey,
    quick: bool,
    signed_on: std::sync::Mutex<Option<std::thread::ThreadId>>,
}

impl dfns_signer::KeyBackend for ThreadKey {
    fn public_key(&self) -> &dfns_signer::PublicKey {
        self.inner.public_key()
    }
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, dfns_signer::BackendError> {
        *self.signed_on.lock().unwrap() = Some(std::thread::current().id());
        self.inner.sign(message)
    }
    fn describe(&self) -> String {
        "a key that notes its thread".into()
    }
    fn signs_without_blocking(&self) -> bool {
        self.quick
    }
}

/// A key that signs without blocking signs on the calling task (here the test's own thread: the
/// runtime has only that one); any other key is handed to a blocking thread, as devices must be.
#[tokio::test(flavor = "current_thread")]
async fn only_keys_that_sign_without_blocking_sign_on_the_calling_task() {
    for quick in [true, false] {
        let key = Arc::new(ThreadKey {
            inner: SoftwareKey::generate(Algorithm::Ed25519).unwrap(),
            quick,
            signed_on: Default::default(),
        });
        let (client, _) = in_memory(CredentialSigner::new("cred-1", key.clone()));
        client
            .request(Method::Post, "/wallets", Payload::empty())
            .await
            .unwrap();
        let here = std::thread::current().id();
        let signed_on = key.signed_on.lock().unwrap().expect("signed");
        assert_eq!(signed_on == here, quick, "quick: {quick}");
        // `sign_blocking`, the crate's one way to sign from async code, follows the same rule.
        let on = dfns_signer::sign_blocking(key.as_ref(), None, || Ok(std::thread::current().id()))
            .await
            .unwrap();
        assert_eq!(on == here, quick, "sign_blocking, quick: {quick}");
    }
}

/// `bench` reads each created wallet's id: an answer without one (here an empty id, then no id
/// at all) counts as an error, named, and a run in which every request failed is an error.
#[tokio::test]
async fn bench_counts_a_wallet_answer_without_an_id_as_an_error() {
    use dfns_signer::bench::{run, BenchOptions};
    let flow = |n: u32, wallet: serde_json::Value| {
        vec![
            challenge(n),
            json_response(200, json!({"userAction": format!("ua-{n}")})),
            json_response(200, wallet),
        ]
    };
    let mut script = flow(1, json!({"id": "wa-1", "status": "Creating"}));
    script.extend(flow(2, json!({"id": "", "status": "Creating"})));
    script.extend(flow(3, json!({"status": "Creating"})));
    let server = MockServer::start(script).await;
    let client = signing_client(&server.base_url).build().unwrap();

    let report = run(&client, &BenchOptions::new(2, 1).warmup(0))
        .await
        .unwrap();
    assert_eq!(report.errors, 1, "{report:?}");
    let first = report.first_error.as_deref().unwrap();
    assert!(
        first.contains("created wallet") && first.contains("`id` is empty"),
        "{first}"
    );

    let err = run(&client, &BenchOptions::new(1, 1).warmup(0))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("missing field `id`"), "{err}");
    assert_eq!(server.recorded().len(), 9);
}
