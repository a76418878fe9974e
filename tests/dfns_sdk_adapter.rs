//! The official `dfns-sdk-rust` client signs through our backends (feature `dfns-sdk`).
#![cfg(feature = "dfns-sdk")]

mod common;

use std::sync::Arc;

use common::mock_http::{MockServer, Scripted};
use dfns_signer::dfns_sdk::SdkSigner;
use dfns_signer::protocol::b64url_decode;
use dfns_signer::software::SoftwareKey;
use dfns_signer::{Algorithm, CredentialSigner, KeyBackend};
use serde_json::{json, Value};

fn ok(body: Value) -> Scripted {
    Scripted {
        status: 200,
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.to_string().into_bytes(),
    }
}

#[tokio::test]
async fn official_rust_sdk_signs_with_our_key() {
    for alg in [Algorithm::EcdsaP256, Algorithm::Ed25519] {
        let key = Arc::new(SoftwareKey::generate(alg).unwrap());
        let server = MockServer::start(vec![
            ok(json!({"challenge": "c2RrLWNoYWxsZW5nZQ", "challengeIdentifier": "ci-sdk",
                      "allowCredentials": {"key": [{"type": "public-key", "id": "cred-sdk"}], "webauthn": []}})),
            ok(json!({"userAction": "ua-sdk"})),
            ok(json!({"id": "wa-sdk"})),
        ])
        .await;
        let client = dfns_sdk_rust::client::Client::new(dfns_sdk_rust::client::Options {
            base_url: server.base_url.clone(),
            auth_token: "token".into(),
            signer: Some(Arc::new(SdkSigner::new(CredentialSigner::new(
                "cred-sdk",
                key.clone(),
            )))),
            http: None,
        })
        .unwrap();
        let wallet: Value = client
            .request(
                reqwest::Method::POST,
                "/wallets",
                Some(&json!({"network": "Bitcoin"})),
                true,
            )
            .await
            .unwrap();
        assert_eq!(wallet["id"], "wa-sdk");
        let sent = server.recorded();
        assert_eq!(sent[1].target, "/auth/action");
        let body: Value = serde_json::from_slice(&sent[1].body).unwrap();
        let a = &body["firstFactor"]["credentialAssertion"];
        assert_eq!(a["credId"], "cred-sdk");
        let client_data = b64url_decode(a["clientData"].as_str().unwrap()).unwrap();
        assert_eq!(
            client_data,
            br#"{"type":"key.get","challenge":"c2RrLWNoYWxsZW5nZQ"}"#
        );
        key.public_key()
            .verify(
                &client_data,
                &b64url_decode(a["signature"].as_str().unwrap()).unwrap(),
            )
            .unwrap();
        assert_eq!(sent[2].header("x-dfns-useraction"), Some("ua-sdk"));
    }
}
