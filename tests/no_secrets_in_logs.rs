//! Runs a full signed request with every tracing level enabled and checks that no secret — auth
//! token, user action token, private key — reaches a span or an event, while the steps and their
//! timings do.
#![cfg(feature = "client")]

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::mock_http::{MockServer, Scripted};
use dfns_signer::protocol::{Method, Payload};
use dfns_signer::software::SoftwareKey;
use dfns_signer::{Algorithm, CredentialSigner, DfnsClient};
use secrecy::SecretString;
use serde_json::json;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn ok(body: serde_json::Value) -> Scripted {
    Scripted {
        status: 200,
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.to_string().into_bytes(),
    }
}

#[tokio::test]
async fn traces_carry_steps_and_timings_but_no_secret() {
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let key = SoftwareKey::generate(Algorithm::Ed25519).unwrap();
    let key_pem = key.to_pkcs8_pem().unwrap();
    let server = MockServer::start(vec![
        ok(json!({"challenge": "YWJj", "challengeIdentifier": "ci-logs",
                  "allowCredentials": {"key": [{"type": "public-key", "id": "cred-logs"}], "webauthn": []}})),
        ok(json!({"userAction": "USER-ACTION-SECRET-TOKEN"})),
        ok(json!({"id": "wa-logs"})),
    ])
    .await;
    let client = DfnsClient::builder()
        .base_url(&server.base_url)
        .auth_token(SecretString::from("AUTH-SECRET-TOKEN".to_owned()))
        .signer(CredentialSigner::new("cred-logs", Arc::new(key)))
        .build()
        .unwrap();
    client
        .request(
            Method::Post,
            "/wallets",
            Payload::json(&json!({"network": "Bitcoin"})).unwrap(),
        )
        .await
        .unwrap();

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    for step in [
        "step=\"init\"",
        "step=\"sign\"",
        "step=\"complete\"",
        "step=\"send\"",
        "elapsed_us=",
    ] {
        assert!(logs.contains(step), "missing {step} in:\n{logs}");
    }
    assert!(logs.contains("dfns.request"), "{logs}");
    for secret in ["AUTH-SECRET-TOKEN", "USER-ACTION-SECRET-TOKEN"] {
        assert!(!logs.contains(secret), "{secret} leaked into logs:\n{logs}");
    }
    let key_body: String = key_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    assert!(!logs.contains(&key_body));
}
