//! The simulator is strict where Dfns is: driven here with plain HTTP and requests signed by
//! hand (RustCrypto directly, not this crate's client or backends), so the checks do not
//! depend on the code they will later judge.

#![cfg(all(feature = "simulator", feature = "client"))]

use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine;
use dfns_signer::simulator::{Faults, Simulator, SimulatorBuilder};
use pkcs8::DecodePrivateKey;
use secrecy::ExposeSecret;
use serde_json::{json, Value};
use sha2::Digest;
use signature::{SignatureEncoding, Signer};

// ---------------------------------------------------------------- keys, signed by hand

/// A private key from tests/fixtures/keys, and how it signs the Dfns wire encoding.
enum TestKey {
    P256(p256::ecdsa::SigningKey),
    Secp256k1(k256::ecdsa::SigningKey),
    Ed25519(ed25519_dalek::SigningKey),
    Rsa(Box<rsa::pkcs1v15::SigningKey<sha2::Sha256>>),
}

const KEY_NAMES: [&str; 4] = ["p256", "secp256k1", "ed25519", "rsa2048"];

fn fixture(path: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(path),
    )
    .unwrap()
}

impl TestKey {
    fn load(name: &str) -> (TestKey, String) {
        let pem = fixture(&format!("keys/{name}.pem"));
        let key = match name {
            "p256" => TestKey::P256(p256::ecdsa::SigningKey::from_pkcs8_pem(&pem).unwrap()),
            "secp256k1" => {
                TestKey::Secp256k1(k256::ecdsa::SigningKey::from_pkcs8_pem(&pem).unwrap())
            }
            "ed25519" => TestKey::Ed25519(ed25519_dalek::SigningKey::from_pkcs8_pem(&pem).unwrap()),
            "rsa2048" => TestKey::Rsa(Box::new(rsa::pkcs1v15::SigningKey::new(
                rsa::RsaPrivateKey::from_pkcs8_pem(&pem).unwrap(),
            ))),
            other => panic!("no fixture key {other}"),
        };
        (key, fixture(&format!("keys/{name}.pub.pem")))
    }

    /// DER ECDSA over SHA-256, pure Ed25519, or PKCS#1 v1.5 SHA-256.
    fn sign(&self, message: &[u8]) -> Vec<u8> {
        match self {
            TestKey::P256(k) => {
                let sig: p256::ecdsa::Signature = k.sign(message);
                sig.to_der().as_bytes().to_vec()
            }
            TestKey::Secp256k1(k) => {
                let sig: k256::ecdsa::Signature = k.sign(message);
                sig.to_der().as_bytes().to_vec()
            }
            TestKey::Ed25519(k) => k.sign(message).to_bytes().to_vec(),
            TestKey::Rsa(k) => k.sign(message).to_vec(),
        }
    }
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn client_data(kind: &str, challenge: &str) -> Vec<u8> {
    format!(r#"{{"type":"{kind}","challenge":"{challenge}"}}"#).into_bytes()
}

// ---------------------------------------------------------------- plain HTTP

struct Api {
    base: String,
    http: reqwest::Client,
}

struct Resp {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Resp {
    fn message(&self) -> &str {
        self.body["error"]["message"]
            .as_str()
            .or(self.body["message"].as_str())
            .unwrap_or("")
    }
}

impl Api {
    fn new(sim: &Simulator) -> Api {
        Api {
            base: sim.base_url().to_owned(),
            http: reqwest::Client::new(),
        }
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        body: &str,
        token: Option<&str>,
        user_action: Option<&str>,
    ) -> Resp {
        self.try_send(method, path, body, token, user_action)
            .await
            .expect("request completes")
    }

    async fn try_send(
        &self,
        method: &str,
        path: &str,
        body: &str,
        token: Option<&str>,
        user_action: Option<&str>,
    ) -> Result<Resp, reqwest::Error> {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .body(body.to_owned());
        if !body.is_empty() {
            req = req.header("content-type", "application/json");
        }
        if let Some(token) = token {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        if let Some(ua) = user_action {
            req = req.header("x-dfns-useraction", ua);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await?;
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok(Resp {
            status,
            headers,
            body,
        })
    }

    /// `POST /auth/action/init` for this request.
    async fn init(&self, token: &str, method: &str, path: &str, payload: &str) -> Value {
        let body = json!({
            "userActionPayload": payload,
            "userActionHttpMethod": method,
            "userActionHttpPath": path,
            "userActionServerKind": "Api",
        });
        let r = self
            .send(
                "POST",
                "/auth/action/init",
                &body.to_string(),
                Some(token),
                None,
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        r.body
    }

    /// `POST /auth/action` with a hand-made assertion.
    async fn complete(
        &self,
        token: &str,
        identifier: &str,
        cred_id: &str,
        client_data: &[u8],
        signature: &[u8],
    ) -> Resp {
        let body = json!({
            "challengeIdentifier": identifier,
            "firstFactor": { "kind": "Key", "credentialAssertion": {
                "credId": cred_id, "clientData": b64url(client_data), "signature": b64url(signature),
            }},
        });
        self.send("POST", "/auth/action", &body.to_string(), Some(token), None)
            .await
    }

    /// The whole challenge flow; returns the user-action token.
    async fn user_action(
        &self,
        token: &str,
        key: &TestKey,
        cred_id: &str,
        method: &str,
        path: &str,
        payload: &str,
    ) -> String {
        let challenge = self.init(token, method, path, payload).await;
        let data = client_data("key.get", challenge["challenge"].as_str().unwrap());
        let r = self
            .complete(
                token,
                challenge["challengeIdentifier"].as_str().unwrap(),
                cred_id,
                &data,
                &key.sign(&data),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        r.body["userAction"].as_str().unwrap().to_owned()
    }

    /// A signed request: challenge flow, then the request with its user action.
    async fn signed(
        &self,
        token: &str,
        key: &TestKey,
        cred_id: &str,
        method: &str,
        path: &str,
        body: &str,
    ) -> Resp {
        let ua = self
            .user_action(token, key, cred_id, method, path, body)
            .await;
        self.send(method, path, body, Some(token), Some(&ua)).await
    }
}

/// A simulator whose root credential is the fixture key `name`.
async fn start(name: &str) -> (Simulator, Api, TestKey) {
    start_with(name, |b| b).await
}

async fn start_with(
    name: &str,
    configure: impl FnOnce(SimulatorBuilder) -> SimulatorBuilder,
) -> (Simulator, Api, TestKey) {
    let (key, pem) = TestKey::load(name);
    let sim = configure(Simulator::builder().root_public_key_pem(pem))
        .start()
        .await
        .unwrap();
    let api = Api::new(&sim);
    (sim, api, key)
}

fn token(sim: &Simulator) -> String {
    sim.auth_token().expose_secret().to_owned()
}

fn assert_dfns_error(r: &Resp, status: u16, message: &str) {
    assert_eq!(r.status, status, "{}", r.body);
    assert_eq!(r.body["error"]["status"], status, "{}", r.body);
    assert_eq!(r.body["error"]["message"], message, "{}", r.body);
    assert!(r.body["error"]["id"].is_string(), "{}", r.body);
}

const WALLET: &str = r#"{"network":"EthereumSepolia","name":"Trésorerie ✓ \"q\" / <tag> &  "}"#;

// ---------------------------------------------------------------- auth token

#[tokio::test]
async fn requests_without_a_known_token_are_401() {
    let (sim, api, _) = start("p256").await;
    let (other, _, _) = start("p256").await;
    assert_dfns_error(
        &api.send("GET", "/wallets", "", None, None).await,
        401,
        "Unauthorized",
    );
    assert_dfns_error(
        &api.send("GET", "/wallets", "", Some("not-a-token"), None)
            .await,
        401,
        "Unauthorized",
    );
    // Same shape, same key, another simulator: unknown here.
    let foreign = token(&other);
    assert_dfns_error(
        &api.send("GET", "/wallets", "", Some(&foreign), None).await,
        401,
        "Unauthorized",
    );
    let r = api
        .send("POST", "/auth/action/init", "{}", None, None)
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(
        api.send("GET", "/wallets", "", Some(&token(&sim)), None)
            .await
            .status,
        200
    );
    // The token's claims are readable, as SDKs read them.
    let claims = token(&sim)
        .split('.')
        .nth(1)
        .map(|p| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .unwrap()
        })
        .unwrap();
    let claims: Value = serde_json::from_slice(&claims).unwrap();
    assert_eq!(claims["https://custom/app_metadata"]["orgId"], sim.org_id());
    assert_eq!(
        claims["https://custom/app_metadata"]["tokenKind"],
        "Service"
    );
}

// ---------------------------------------------------------------- the user-action flow

#[tokio::test]
async fn every_key_type_completes_the_user_action_flow() {
    for name in KEY_NAMES {
        let (sim, api, key) = start(name).await;
        let t = token(&sim);
        let cred = sim.credential_id().to_owned();
        let challenge = api.init(&t, "POST", "/wallets", WALLET).await;
        assert_eq!(
            challenge["allowCredentials"]["key"],
            json!([{ "type": "public-key", "id": cred }])
        );
        for field in [
            "challenge",
            "challengeIdentifier",
            "supportedCredentialKinds",
            "userVerification",
            "attestation",
            "externalAuthenticationUrl",
        ] {
            assert!(
                challenge.get(field).is_some(),
                "{name}: {field} missing in {challenge}"
            );
        }
        assert_eq!(
            challenge["challengeIdentifier"]
                .as_str()
                .unwrap()
                .split('.')
                .count(),
            3
        );

        let created = api
            .signed(&t, &key, &cred, "POST", "/wallets", WALLET)
            .await;
        assert_eq!(created.status, 200, "{name}: {}", created.body);
        assert_eq!(created.body["name"], "Trésorerie ✓ \"q\" / <tag> &  ");
        let hook = api
            .signed(
                &t,
                &key,
                &cred,
                "POST",
                "/webhooks",
                r#"{"url":"https://example.com/h","events":["*"]}"#,
            )
            .await;
        assert_eq!(hook.status, 200, "{name}: {}", hook.body);
        let path = format!("/webhooks/{}", hook.body["id"].as_str().unwrap());
        // Body-less DELETE: the payload is the empty string, as Python/Go/Rust send it.
        let deleted = api.signed(&t, &key, &cred, "DELETE", &path, "").await;
        assert_eq!(
            (deleted.status, &deleted.body),
            (200, &json!({ "deleted": true })),
            "{name}"
        );
        let stats = sim.stats();
        assert_eq!(
            (stats.user_actions_issued, stats.user_actions_used),
            (3, 3),
            "{name}"
        );
    }
}

#[tokio::test]
async fn a_user_action_is_single_use() {
    let (sim, api, key) = start("p256").await;
    let t = token(&sim);
    let ua = api
        .user_action(&t, &key, sim.credential_id(), "POST", "/wallets", WALLET)
        .await;
    assert_eq!(
        api.send("POST", "/wallets", WALLET, Some(&t), Some(&ua))
            .await
            .status,
        200
    );
    let replay = api
        .send("POST", "/wallets", WALLET, Some(&t), Some(&ua))
        .await;
    assert_dfns_error(&replay, 400, "user action has already been used");
    let wallets = api.send("GET", "/wallets", "", Some(&t), None).await;
    assert_eq!(
        wallets.body["items"].as_array().unwrap().len(),
        1,
        "the replay created nothing"
    );
    assert_eq!(
        sim.stats()
            .rejections
            .get("400 user action has already been used"),
        Some(&1)
    );
}

#[tokio::test]
async fn a_user_action_is_bound_to_method_path_and_exact_body() {
    let (sim, api, key) = start("secp256k1").await;
    let t = token(&sim);
    let cred = sim.credential_id().to_owned();
    let cases: [(&str, &str, &str); 5] = [
        (
            "POST",
            "/wallets",
            r#"{"network":"EthereumSepolia","name":"Tr\u00e9sorerie ✓ \"q\" / <tag> &  "}"#,
        ), // same JSON, other bytes
        (
            "POST",
            "/wallets",
            r#"{"network": "EthereumSepolia","name":"Trésorerie ✓ \"q\" / <tag> &  "}"#,
        ),
        (
            "POST",
            "/wallets",
            r#"{"network":"Bitcoin","name":"Trésorerie ✓ \"q\" / <tag> &  "}"#,
        ),
        ("PUT", "/wallets", WALLET),
        ("POST", "/webhooks", WALLET),
    ];
    for (method, path, body) in cases {
        let ua = api
            .user_action(&t, &key, &cred, "POST", "/wallets", WALLET)
            .await;
        let r = api.send(method, path, body, Some(&t), Some(&ua)).await;
        assert_dfns_error(&r, 403, "user action signature is missing or invalid");
    }
    // Missing header, or a token that was never issued.
    assert_dfns_error(
        &api.send("POST", "/wallets", WALLET, Some(&t), None).await,
        403,
        "user action signature is missing or invalid",
    );
    assert_dfns_error(
        &api.send("POST", "/wallets", WALLET, Some(&t), Some("eyJ.eyJ.sig"))
            .await,
        403,
        "user action signature is missing or invalid",
    );
    // The path is compared raw (percent-encoded, as sent): an encoded slash is not a slash.
    let ua = api
        .user_action(
            &t,
            &key,
            &cred,
            "PUT",
            "/wallets/wa-a%2Fb/tags",
            r#"{"tags":["t"]}"#,
        )
        .await;
    let r = api
        .send(
            "PUT",
            "/wallets/wa-a/b/tags",
            r#"{"tags":["t"]}"#,
            Some(&t),
            Some(&ua),
        )
        .await;
    assert_dfns_error(&r, 403, "user action signature is missing or invalid");
    let ua = api
        .user_action(
            &t,
            &key,
            &cred,
            "PUT",
            "/wallets/wa-a%2Fb/tags",
            r#"{"tags":["t"]}"#,
        )
        .await;
    let r = api
        .send(
            "PUT",
            "/wallets/wa-a%2Fb/tags",
            r#"{"tags":["t"]}"#,
            Some(&t),
            Some(&ua),
        )
        .await;
    assert_dfns_error(&r, 404, "wallet not found");
    // The query string is not part of the binding.
    let ua = api
        .user_action(&t, &key, &cred, "POST", "/wallets", WALLET)
        .await;
    assert_eq!(
        api.send("POST", "/wallets?x=1", WALLET, Some(&t), Some(&ua))
            .await
            .status,
        200
    );
    let wallets = api.send("GET", "/wallets", "", Some(&t), None).await;
    assert_eq!(
        wallets.body["items"].as_array().unwrap().len(),
        1,
        "only the matching request ran"
    );
}

#[tokio::test]
async fn empty_body_and_braces_are_different_payloads() {
    let (sim, api, key) = start("ed25519").await;
    let t = token(&sim);
    let cred = sim.credential_id().to_owned();
    let (_, sa_pem) = TestKey::load("secp256k1");
    let sa_body = json!({ "name": "sa", "publicKey": sa_pem }).to_string();
    let sa = api
        .signed(&t, &key, &cred, "POST", "/auth/service-accounts", &sa_body)
        .await;
    assert_eq!(sa.status, 200, "{}", sa.body);
    let path = format!(
        "/auth/service-accounts/{}/activate",
        sa.body["userInfo"]["userId"].as_str().unwrap()
    );
    let ua = api.user_action(&t, &key, &cred, "PUT", &path, "").await;
    assert_dfns_error(
        &api.send("PUT", &path, "{}", Some(&t), Some(&ua)).await,
        403,
        "user action signature is missing or invalid",
    );
    let ua = api.user_action(&t, &key, &cred, "PUT", &path, "{}").await;
    assert_eq!(
        api.send("PUT", &path, "{}", Some(&t), Some(&ua))
            .await
            .status,
        200,
        "TS sends {{}} as body and payload"
    );
    let ua = api.user_action(&t, &key, &cred, "PUT", &path, "").await;
    assert_eq!(
        api.send("PUT", &path, "", Some(&t), Some(&ua)).await.status,
        200,
        "others send nothing"
    );
}

// ---------------------------------------------------------------- challenges and assertions

#[tokio::test]
async fn a_challenge_is_single_use_and_expires() {
    let (sim, api, key) = start_with("p256", |b| b.challenge_ttl(Duration::from_millis(300))).await;
    let t = token(&sim);
    let cred = sim.credential_id().to_owned();
    let challenge = api.init(&t, "POST", "/wallets", WALLET).await;
    let id = challenge["challengeIdentifier"].as_str().unwrap();
    let data = client_data("key.get", challenge["challenge"].as_str().unwrap());
    let sig = key.sign(&data);
    assert_eq!(api.complete(&t, id, &cred, &data, &sig).await.status, 200);
    assert_dfns_error(
        &api.complete(&t, id, &cred, &data, &sig).await,
        400,
        "Challenge token is not valid.",
    );

    // A failed attempt spends the challenge too.
    let challenge = api.init(&t, "POST", "/wallets", WALLET).await;
    let id = challenge["challengeIdentifier"].as_str().unwrap();
    let data = client_data("key.get", challenge["challenge"].as_str().unwrap());
    assert_eq!(
        api.complete(&t, id, &cred, &data, &key.sign(b"other"))
            .await
            .status,
        401
    );
    assert_dfns_error(
        &api.complete(&t, id, &cred, &data, &key.sign(&data)).await,
        400,
        "Challenge token is not valid.",
    );

    let challenge = api.init(&t, "POST", "/wallets", WALLET).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let data = client_data("key.get", challenge["challenge"].as_str().unwrap());
    let r = api
        .complete(
            &t,
            challenge["challengeIdentifier"].as_str().unwrap(),
            &cred,
            &data,
            &key.sign(&data),
        )
        .await;
    assert_dfns_error(&r, 400, "Challenge token is not valid.");

    // A user action expires too.
    let ua = api
        .user_action(&t, &key, &cred, "POST", "/wallets", WALLET)
        .await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_dfns_error(
        &api.send("POST", "/wallets", WALLET, Some(&t), Some(&ua))
            .await,
        403,
        "user action signature is missing or invalid",
    );
}

/// One `/auth/action` attempt whose clientData is `template` with `CHALLENGE` replaced by the
/// issued challenge, signed by `key` for `cred_id`.
async fn attempt(api: &Api, t: &str, key: &TestKey, cred_id: &str, template: &[u8]) -> Resp {
    let challenge = api.init(t, "POST", "/wallets", WALLET).await;
    let data = String::from_utf8(template.to_vec())
        .unwrap()
        .replace("CHALLENGE", challenge["challenge"].as_str().unwrap());
    api.complete(
        t,
        challenge["challengeIdentifier"].as_str().unwrap(),
        cred_id,
        data.as_bytes(),
        &key.sign(data.as_bytes()),
    )
    .await
}

/// One `/auth/action` attempt with a signature made by `make` over the right clientData.
async fn attempt_with(
    api: &Api,
    t: &str,
    key: &TestKey,
    cred_id: &str,
    make: fn(&TestKey, &[u8]) -> Vec<u8>,
) -> Resp {
    let challenge = api.init(t, "POST", "/wallets", WALLET).await;
    let data = client_data("key.get", challenge["challenge"].as_str().unwrap());
    api.complete(
        t,
        challenge["challengeIdentifier"].as_str().unwrap(),
        cred_id,
        &data,
        &make(key, &data),
    )
    .await
}

#[tokio::test]
async fn wrong_credentials_and_bad_client_data_are_refused() {
    let (sim, api, key) = start("p256").await;
    let t = token(&sim);
    let cred = sim.credential_id().to_owned();
    let (other_key, _) = TestKey::load("secp256k1");
    let good = client_data("key.get", "CHALLENGE");
    // Signed by another key than the credential's.
    assert_dfns_error(
        &attempt(&api, &t, &other_key, &cred, &good).await,
        401,
        "user action signature is missing or invalid",
    );
    // A credential that does not exist.
    assert_dfns_error(
        &attempt(&api, &t, &key, "bm90LWEtY3JlZA", &good).await,
        401,
        "user action signature is missing or invalid",
    );
    // Wrong type, wrong challenge.
    assert_eq!(
        attempt(
            &api,
            &t,
            &key,
            &cred,
            &client_data("webauthn.get", "CHALLENGE")
        )
        .await
        .status,
        401
    );
    assert_eq!(
        attempt(
            &api,
            &t,
            &key,
            &cred,
            &client_data("key.create", "CHALLENGE")
        )
        .await
        .status,
        401
    );
    assert_eq!(
        attempt(&api, &t, &key, &cred, &client_data("key.get", "b3RoZXI"))
            .await
            .status,
        401
    );
    // Extra members other SDKs add are fine.
    let python_style =
        br#"{"type":"key.get","challenge":"CHALLENGE","origin":"","crossOrigin":false}"#.to_vec();
    assert_eq!(
        attempt(&api, &t, &key, &cred, &python_style).await.status,
        200
    );

    // A credential of another user (a service account) cannot sign for root.
    let (_, sa_pem) = TestKey::load("ed25519");
    let sa = api
        .signed(
            &t,
            &key,
            &cred,
            "POST",
            "/auth/service-accounts",
            &json!({"name":"sa","publicKey":sa_pem}).to_string(),
        )
        .await;
    let sa_cred = sa.body["accessTokens"][0]["credId"]
        .as_str()
        .unwrap()
        .to_owned();
    let (ed_key, _) = TestKey::load("ed25519");
    assert_dfns_error(
        &attempt(&api, &t, &ed_key, &sa_cred, &good).await,
        401,
        "user action signature is missing or invalid",
    );
}

/// Re-encodes an ECDSA DER signature with a leading zero added to `r` (non-minimal DER).
fn non_minimal_der(der: &[u8]) -> Vec<u8> {
    assert_eq!(der[0], 0x30);
    let r_len = der[3] as usize;
    let mut r = vec![0u8];
    r.extend_from_slice(&der[4..4 + r_len]);
    let rest = &der[4 + r_len..];
    let mut out = vec![0x30, (2 + r.len() + rest.len()) as u8, 0x02, r.len() as u8];
    out.extend_from_slice(&r);
    out.extend_from_slice(rest);
    out
}

#[tokio::test]
async fn ecdsa_must_be_canonical_der_but_high_s_is_accepted() {
    for name in ["p256", "secp256k1"] {
        let (sim, api, key) = start(name).await;
        let t = token(&sim);
        let cred = sim.credential_id().to_owned();
        // Raw r‖s (IEEE P1363), what PKCS#11 CKM_ECDSA returns: refused.
        let raw = attempt_with(&api, &t, &key, &cred, |k, m| match k {
            TestKey::P256(k) => Signer::<p256::ecdsa::Signature>::sign(k, m)
                .to_bytes()
                .to_vec(),
            TestKey::Secp256k1(k) => Signer::<k256::ecdsa::Signature>::sign(k, m)
                .to_bytes()
                .to_vec(),
            _ => unreachable!(),
        })
        .await;
        assert_dfns_error(&raw, 401, "user action signature is missing or invalid");
        // Valid signature, non-minimal DER integer: refused.
        let padded = attempt_with(&api, &t, &key, &cred, |k, m| non_minimal_der(&k.sign(m))).await;
        assert_dfns_error(&padded, 401, "user action signature is missing or invalid");
        // Trailing garbage after the DER sequence: refused.
        let trailing =
            attempt_with(&api, &t, &key, &cred, |k, m| [k.sign(m), vec![0]].concat()).await;
        assert_eq!(trailing.status, 401, "{name}");
        // High S (n - s), which OpenSSL accepts: accepted.
        let high_s = attempt_with(&api, &t, &key, &cred, |k, m| match k {
            TestKey::P256(k) => {
                let sig: p256::ecdsa::Signature = k.sign(m);
                let (r, s) = sig.split_scalars();
                p256::ecdsa::Signature::from_scalars(r, -*s)
                    .unwrap()
                    .to_der()
                    .as_bytes()
                    .to_vec()
            }
            TestKey::Secp256k1(k) => {
                let sig: k256::ecdsa::Signature = k.sign(m);
                let (r, s) = sig.split_scalars();
                k256::ecdsa::Signature::from_scalars(r, -*s)
                    .unwrap()
                    .to_der()
                    .as_bytes()
                    .to_vec()
            }
            _ => unreachable!(),
        })
        .await;
        assert_eq!(high_s.status, 200, "{name}: {}", high_s.body);
    }
}

// ---------------------------------------------------------------- Key credential registration

/// The attestation of docs/protocol.md §6 for `new_key`, optionally spoiled by `spoil`.
fn attestation(
    challenge: &Value,
    new_key: &TestKey,
    new_pem: &str,
    cred_id: &str,
    spoil: &str,
) -> String {
    let kind = if spoil == "type" {
        "key.get"
    } else {
        "key.create"
    };
    let data = client_data(kind, challenge["challenge"].as_str().unwrap());
    let hash = hex::encode(sha2::Sha256::digest(&data));
    let mut fingerprint = json!({ "clientDataHash": hash, "publicKey": new_pem }).to_string();
    if spoil == "pretty" {
        fingerprint =
            serde_json::to_string_pretty(&json!({ "clientDataHash": hash, "publicKey": new_pem }))
                .unwrap();
    }
    let mut signature = hex::encode(new_key.sign(fingerprint.as_bytes()));
    if spoil == "uppercase" {
        signature = signature.to_uppercase();
    }
    if spoil == "other-key" {
        signature = hex::encode(TestKey::load("p256").0.sign(fingerprint.as_bytes()));
    }
    let attestation = json!({ "publicKey": new_pem, "signature": signature }).to_string();
    json!({
        "credentialKind": "Key",
        "credentialInfo": { "credId": cred_id, "clientData": b64url(&data), "attestationData": b64url(attestation.as_bytes()) },
        "credentialName": "hw-key",
        "challengeIdentifier": challenge["challengeIdentifier"],
    })
    .to_string()
}

/// `POST /auth/credentials/init` `{"kind":"Key"}` for the user of `t`: a registration challenge.
async fn credential_challenge(api: &Api, t: &str) -> Value {
    let r = api
        .send(
            "POST",
            "/auth/credentials/init",
            r#"{"kind":"Key"}"#,
            Some(t),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["kind"], "Key");
    r.body
}

/// Registers `new_key` (`new_pem`) as Key credential `new_cred_id` of the user of `t`, signed by
/// `key` for `cred_id`; returns the credential entity.
async fn register_key(
    api: &Api,
    t: &str,
    (key, cred_id): (&TestKey, &str),
    (new_key, new_pem, new_cred_id): (&TestKey, &str, &str),
) -> Value {
    let challenge = credential_challenge(api, t).await;
    let body = attestation(&challenge, new_key, new_pem, new_cred_id, "");
    let r = api
        .signed(t, key, cred_id, "POST", "/auth/credentials", &body)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
}

#[tokio::test]
async fn key_credentials_are_registered_only_with_a_valid_attestation() {
    let (sim, api, root_key) = start("p256").await;
    let t = token(&sim);
    let root = sim.credential_id().to_owned();
    let new_challenge = || credential_challenge(&api, &t);
    for name in ["secp256k1", "ed25519", "rsa2048"] {
        let (new_key, new_pem) = TestKey::load(name);
        let cred_id = format!("cred-{name}");
        for spoil in ["other-key", "pretty", "uppercase", "type"] {
            let body = attestation(&new_challenge().await, &new_key, &new_pem, &cred_id, spoil);
            let r = api
                .signed(&t, &root_key, &root, "POST", "/auth/credentials", &body)
                .await;
            assert_eq!(r.status, 400, "{name} {spoil}: {}", r.body);
        }
        let challenge = new_challenge().await;
        let body = attestation(&challenge, &new_key, &new_pem, &cred_id, "");
        let r = api
            .signed(&t, &root_key, &root, "POST", "/auth/credentials", &body)
            .await;
        assert_eq!(r.status, 200, "{name}: {}", r.body);
        assert_eq!(r.body["credentialId"], cred_id.as_str());
        assert_eq!(r.body["publicKey"], new_pem.as_str());
        // The challenge is spent; the credential now signs user actions.
        let again = api
            .signed(&t, &root_key, &root, "POST", "/auth/credentials", &body)
            .await;
        assert_dfns_error(&again, 400, "Challenge token is not valid.");
        let w = api
            .signed(
                &t,
                &new_key,
                &cred_id,
                "POST",
                "/wallets",
                r#"{"network":"Solana"}"#,
            )
            .await;
        assert_eq!(w.status, 200, "{name}: {}", w.body);
        // The same credId again: conflict.
        let body = attestation(&new_challenge().await, &new_key, &new_pem, &cred_id, "");
        assert_eq!(
            api.signed(&t, &root_key, &root, "POST", "/auth/credentials", &body)
                .await
                .status,
            409
        );
    }
    let listed = api
        .send("GET", "/auth/credentials", "", Some(&t), None)
        .await;
    let ids: Vec<&str> = listed.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["credentialId"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 4, "{ids:?}");
    let challenge = api.init(&t, "POST", "/wallets", "{}").await;
    assert_eq!(
        challenge["allowCredentials"]["key"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
}

#[tokio::test]
async fn a_credential_code_registers_a_key_without_an_existing_credential() {
    let (sim, api, root_key) = start("p256").await;
    let t = token(&sim);
    let code = api
        .signed(
            &t,
            &root_key,
            sim.credential_id(),
            "POST",
            "/auth/credentials/code",
            r#"{"expiration":60}"#,
        )
        .await;
    assert_eq!(code.status, 200, "{}", code.body);
    let code = code.body["code"].as_str().unwrap().to_owned();
    let init = api
        .send(
            "POST",
            "/auth/credentials/code/init",
            &json!({"credentialKind":"Key","code":code}).to_string(),
            None,
            None,
        )
        .await;
    assert_eq!(init.status, 200, "{}", init.body);
    let (new_key, new_pem) = TestKey::load("ed25519");
    let body = attestation(&init.body, &new_key, &new_pem, "cred-by-code", "");
    let r = api
        .send("POST", "/auth/credentials/code/verify", &body, None, None)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        api.signed(
            &t,
            &new_key,
            "cred-by-code",
            "POST",
            "/wallets",
            "{\"network\":\"Solana\"}"
        )
        .await
        .status,
        200
    );
    // A code works once.
    let again = api
        .send(
            "POST",
            "/auth/credentials/code/init",
            &json!({"credentialKind":"Key","code":code}).to_string(),
            None,
            None,
        )
        .await;
    assert_eq!(again.status, 401);

    // A plain registration challenge (any bearer token gets one) does not open the code route:
    // without this, a token with no credential could register one with no code and no user action.
    let plain = api
        .send(
            "POST",
            "/auth/credentials/init",
            r#"{"kind":"Key"}"#,
            Some(&t),
            None,
        )
        .await;
    assert_eq!(plain.status, 200, "{}", plain.body);
    let (other_key, other_pem) = TestKey::load("secp256k1");
    let body = attestation(&plain.body, &other_key, &other_pem, "cred-without-code", "");
    let r = api
        .send("POST", "/auth/credentials/code/verify", &body, None, None)
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    // And a code-born challenge cannot be spent on the signed route either.
    let code = api
        .signed(
            &t,
            &root_key,
            sim.credential_id(),
            "POST",
            "/auth/credentials/code",
            r#"{"expiration":60}"#,
        )
        .await
        .body["code"]
        .as_str()
        .unwrap()
        .to_owned();
    let init = api
        .send(
            "POST",
            "/auth/credentials/code/init",
            &json!({"credentialKind":"Key","code":code}).to_string(),
            None,
            None,
        )
        .await;
    let body = attestation(
        &init.body,
        &other_key,
        &other_pem,
        "cred-code-on-signed-route",
        "",
    );
    let r = api
        .signed(
            &t,
            &root_key,
            sim.credential_id(),
            "POST",
            "/auth/credentials",
            &body,
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
}

// ---------------------------------------------------------------- credential (de)activation

/// `/auth/login/init` then `/auth/login` as the root user, signed by `key` for `cred_id`.
async fn login(api: &Api, sim: &Simulator, key: &TestKey, cred_id: &str) -> Resp {
    let body = json!({ "username": sim.username(), "orgId": sim.org_id() }).to_string();
    let init = api
        .send("POST", "/auth/login/init", &body, None, None)
        .await;
    assert_eq!(init.status, 200, "{}", init.body);
    let data = client_data("key.get", init.body["challenge"].as_str().unwrap());
    let login = json!({
        "challengeIdentifier": init.body["challengeIdentifier"],
        "firstFactor": { "kind": "Key", "credentialAssertion": {
            "credId": cred_id, "clientData": b64url(&data), "signature": b64url(&key.sign(&data)),
        }},
    })
    .to_string();
    api.send("POST", "/auth/login", &login, None, None).await
}

/// The caller's credentials by `credentialId`: `isActive` of each.
async fn credentials_active(api: &Api, t: &str) -> std::collections::BTreeMap<String, Value> {
    let r = api
        .send("GET", "/auth/credentials", "", Some(t), None)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["credentialId"].as_str().unwrap().to_owned(),
                c["isActive"].clone(),
            )
        })
        .collect()
}

/// `PUT /auth/credentials/{action}` `{"credentialUuid": uuid}`, signed by `key` for `cred_id`.
async fn put_credential(
    api: &Api,
    t: &str,
    (key, cred_id): (&TestKey, &str),
    action: &str,
    uuid: &str,
) -> Resp {
    let body = json!({ "credentialUuid": uuid }).to_string();
    let path = format!("/auth/credentials/{action}");
    api.signed(t, key, cred_id, "PUT", &path, &body).await
}

/// A deactivated credential signs no user action and no login, and is listed inactive, until it
/// is activated again; both answers are Dfns' `{"message":"success"}`, also when nothing changes.
#[tokio::test]
async fn a_deactivated_credential_signs_nothing_until_activated_again() {
    let (sim, api, root_key) = start("p256").await;
    let t = token(&sim);
    let root = sim.credential_id().to_owned();
    let (second_key, second_pem) = TestKey::load("ed25519");
    let second = "second-cred";
    let registered = register_key(
        &api,
        &t,
        (&root_key, &root),
        (&second_key, &second_pem, second),
    )
    .await;
    let uuid = registered["credentialUuid"].as_str().unwrap().to_owned();
    assert!(uuid.starts_with("cr-"), "{registered}");

    // Deactivated by the root credential; a second time changes nothing and is still a success.
    for _ in 0..2 {
        let r = put_credential(&api, &t, (&root_key, &root), "deactivate", &uuid).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.body, json!({ "message": "success" }));
    }
    let listed = credentials_active(&api, &t).await;
    assert_eq!(listed[second], false, "{listed:?}");
    assert_eq!(listed[&root], true, "{listed:?}");

    // Its valid assertion is refused, saying why; an invalid one for it only gets the usual 401.
    let good = client_data("key.get", "CHALLENGE");
    assert_dfns_error(
        &attempt(&api, &t, &second_key, second, &good).await,
        401,
        "credential is deactivated",
    );
    assert_dfns_error(
        &attempt(&api, &t, &root_key, second, &good).await,
        401,
        "user action signature is missing or invalid",
    );
    let challenge = api.init(&t, "POST", "/wallets", "{}").await;
    assert_eq!(
        challenge["allowCredentials"]["key"],
        json!([{ "type": "public-key", "id": root }])
    );
    // No login with it either, while the active one still logs in.
    assert_dfns_error(
        &login(&api, &sim, &second_key, second).await,
        401,
        "credential is deactivated",
    );
    assert_eq!(login(&api, &sim, &root_key, &root).await.status, 200);

    // Activated again (twice: the second changes nothing), it signs again.
    for _ in 0..2 {
        let r = put_credential(&api, &t, (&root_key, &root), "activate", &uuid).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.body, json!({ "message": "success" }));
    }
    assert_eq!(credentials_active(&api, &t).await[second], true);
    let w = api
        .signed(&t, &second_key, second, "POST", "/wallets", WALLET)
        .await;
    assert_eq!(w.status, 200, "{}", w.body);
    assert_eq!(login(&api, &sim, &second_key, second).await.status, 200);
    sim.shutdown().await;
}

/// What cannot be deactivated: a user's last active credential (400: the simulator's rule), an
/// unknown credential or another user's (404 alike), and nothing without a user action.
#[tokio::test]
async fn credential_deactivation_refusals() {
    let (sim, api, root_key) = start("secp256k1").await;
    let t = token(&sim);
    let root = sim.credential_id().to_owned();
    let root_uuid = api
        .send("GET", "/auth/credentials", "", Some(&t), None)
        .await
        .body["items"][0]["credentialUuid"]
        .as_str()
        .unwrap()
        .to_owned();
    let by_root = (&root_key, root.as_str());

    // The only credential: refused, and it stays active.
    assert_dfns_error(
        &put_credential(&api, &t, by_root, "deactivate", &root_uuid).await,
        400,
        "cannot deactivate the last active credential of a user",
    );
    assert_eq!(credentials_active(&api, &t).await[&root], true);

    // With a second credential, the one signing may deactivate itself; the other is then last.
    let (second_key, second_pem) = TestKey::load("rsa2048");
    let registered = register_key(&api, &t, by_root, (&second_key, &second_pem, "second")).await;
    let second_uuid = registered["credentialUuid"].as_str().unwrap().to_owned();
    let by_second = (&second_key, "second");
    let own = put_credential(&api, &t, by_root, "deactivate", &root_uuid).await;
    assert_eq!(own.status, 200, "{}", own.body);
    let last = put_credential(&api, &t, by_second, "deactivate", &second_uuid).await;
    assert_eq!(last.status, 400, "{}", last.body);
    let back = put_credential(&api, &t, by_second, "activate", &root_uuid).await;
    assert_eq!(back.status, 200, "{}", back.body);

    // Unknown, and another user's (a service account's): the same 404.
    let unknown = "cr-nope0-nope0-0000000000000000";
    for action in ["deactivate", "activate"] {
        assert_dfns_error(
            &put_credential(&api, &t, by_root, action, unknown).await,
            404,
            "credential not found",
        );
    }
    let (_, sa_pem) = TestKey::load("p256");
    let sa = api
        .signed(
            &t,
            &root_key,
            &root,
            "POST",
            "/auth/service-accounts",
            &json!({"name": "other-user", "publicKey": sa_pem}).to_string(),
        )
        .await;
    assert_eq!(sa.status, 200, "{}", sa.body);
    let sa_uuid = sa.body["userInfo"]["credentialUuid"].as_str().unwrap();
    assert!(sa_uuid.starts_with("cr-"), "{}", sa.body);
    assert_dfns_error(
        &put_credential(&api, &t, by_root, "deactivate", sa_uuid).await,
        404,
        "credential not found",
    );

    for path in ["/auth/credentials/activate", "/auth/credentials/deactivate"] {
        // The body is checked.
        let empty = api.signed(&t, &root_key, &root, "PUT", path, "{}").await;
        assert_eq!(empty.status, 400, "{}", empty.body);
        // Without a user action: refused before anything changes.
        let body = json!({ "credentialUuid": second_uuid }).to_string();
        assert_dfns_error(
            &api.send("PUT", path, &body, Some(&t), None).await,
            403,
            "user action signature is missing or invalid",
        );
    }
    let listed = credentials_active(&api, &t).await;
    assert_eq!(listed[&root], true, "{listed:?}");
    assert_eq!(listed["second"], true, "{listed:?}");
    sim.shutdown().await;
}

/// The library's calls for the same endpoints: our client deactivates and activates a
/// credential through the simulator (whose checks the tests above make by hand).
#[tokio::test]
async fn the_client_deactivates_and_activates_a_credential() {
    use dfns_signer::software::SoftwareKey;
    use dfns_signer::{Algorithm, CredentialSigner, DfnsClient, KeyBackend};
    use std::sync::Arc;
    let root_key = Arc::new(SoftwareKey::generate(Algorithm::EcdsaP256).unwrap());
    let sim = Simulator::builder()
        .root_public_key_pem(root_key.public_key().to_pem())
        .start()
        .await
        .unwrap();
    let root = DfnsClient::simulator_root(&sim, root_key).unwrap();
    let key: Arc<dyn KeyBackend> = Arc::new(SoftwareKey::generate(Algorithm::Ed25519).unwrap());
    let registered = root
        .register_key_credential(key.clone(), "second", None)
        .await
        .unwrap();
    let uuid = registered["credentialUuid"].as_str().unwrap();
    let cred_id = registered["credentialId"].as_str().unwrap().to_owned();
    let second = root.with_signer(CredentialSigner::new(cred_id.clone(), key));
    let is_active = |list: Value| {
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["credentialId"] == cred_id.as_str())
            .map(|c| c["isActive"].clone())
            .unwrap()
    };

    assert_eq!(
        root.deactivate_credential(uuid).await.unwrap(),
        json!({ "message": "success" })
    );
    assert_eq!(is_active(root.list_credentials().await.unwrap()), false);
    // The challenge no longer allows it, so the client refuses to sign before asking.
    let refused = second
        .create_wallet(&json!({"network": "Bitcoin"}))
        .await
        .unwrap_err()
        .to_string();
    assert!(refused.contains("not allowed to sign"), "{refused}");
    assert_eq!(
        root.activate_credential(uuid).await.unwrap(),
        json!({ "message": "success" })
    );
    assert_eq!(is_active(root.list_credentials().await.unwrap()), true);
    second
        .create_wallet(&json!({"network": "Bitcoin"}))
        .await
        .unwrap()
        .done()
        .unwrap();
    sim.shutdown().await;
}

// ---------------------------------------------------------------- tokens: SA, PAT, logins

#[tokio::test]
async fn a_new_service_account_token_and_credential_work() {
    let (sim, api, root_key) = start("rsa2048").await;
    let t = token(&sim);
    let (sa_key, sa_pem) = TestKey::load("secp256k1");
    let body = json!({ "name": "backend-sa", "publicKey": sa_pem, "daysValid": 365 }).to_string();
    let sa = api
        .signed(
            &t,
            &root_key,
            sim.credential_id(),
            "POST",
            "/auth/service-accounts",
            &body,
        )
        .await;
    assert_eq!(sa.status, 200, "{}", sa.body);
    assert_eq!(sa.body["userInfo"]["isServiceAccount"], true);
    let access = &sa.body["accessTokens"][0];
    let (sa_token, sa_cred) = (
        access["accessToken"].as_str().unwrap(),
        access["credId"].as_str().unwrap(),
    );
    assert_eq!(access["publicKey"], sa_pem.as_str());
    let w = api
        .signed(
            sa_token,
            &sa_key,
            sa_cred,
            "POST",
            "/wallets",
            r#"{"network":"Bitcoin"}"#,
        )
        .await;
    assert_eq!(w.status, 200, "{}", w.body);
    // Its challenges list only its own credential.
    let challenge = api.init(sa_token, "POST", "/wallets", "{}").await;
    assert_eq!(
        challenge["allowCredentials"]["key"],
        json!([{ "type": "public-key", "id": sa_cred }])
    );
    // The listing has it, without the token string.
    let list = api
        .send("GET", "/auth/service-accounts", "", Some(&t), None)
        .await;
    assert!(list
        .body
        .to_string()
        .contains(sa.body["userInfo"]["userId"].as_str().unwrap()));
    assert!(!list.body.to_string().contains(sa_token));
    // Bad input: not a PEM, too many days.
    let bad = api
        .signed(
            &t,
            &root_key,
            sim.credential_id(),
            "POST",
            "/auth/service-accounts",
            r#"{"name":"x","publicKey":"nope"}"#,
        )
        .await;
    assert_eq!(bad.status, 400);
    let bad = api
        .signed(
            &t,
            &root_key,
            sim.credential_id(),
            "POST",
            "/auth/service-accounts",
            &json!({"name":"x","publicKey":sa_pem,"daysValid":731}).to_string(),
        )
        .await;
    assert_eq!(bad.status, 400);
    // Deactivated: its token is refused.
    let path = format!(
        "/auth/service-accounts/{}/deactivate",
        sa.body["userInfo"]["userId"].as_str().unwrap()
    );
    assert_eq!(
        api.signed(&t, &root_key, sim.credential_id(), "PUT", &path, "{}")
            .await
            .status,
        200
    );
    assert_eq!(
        api.send("GET", "/wallets", "", Some(sa_token), None)
            .await
            .status,
        401
    );
}

#[tokio::test]
async fn pats_logins_delegated_login_and_logout() {
    let (sim, api, root_key) = start("ed25519").await;
    let t = token(&sim);
    let root = sim.credential_id().to_owned();
    let (pat_key, pat_pem) = TestKey::load("p256");
    let pat = api
        .signed(
            &t,
            &root_key,
            &root,
            "POST",
            "/auth/pats",
            &json!({"name":"my-pat","publicKey":pat_pem,"secondsValid":3600}).to_string(),
        )
        .await;
    assert_eq!(pat.status, 200, "{}", pat.body);
    assert_eq!(pat.body["kind"], "Pat");
    let pat_token = pat.body["accessToken"].as_str().unwrap();
    let pat_cred = pat.body["credId"].as_str().unwrap();
    assert_eq!(
        api.signed(
            pat_token,
            &pat_key,
            pat_cred,
            "POST",
            "/wallets",
            r#"{"network":"Tron"}"#
        )
        .await
        .status,
        200
    );

    // Login with the root credential, no auth token.
    let body = json!({ "username": sim.username(), "orgId": sim.org_id() }).to_string();
    let init = api
        .send("POST", "/auth/login/init", &body, None, None)
        .await;
    assert_eq!(init.status, 200, "{}", init.body);
    let data = client_data("key.get", init.body["challenge"].as_str().unwrap());
    let login = json!({
        "challengeIdentifier": init.body["challengeIdentifier"],
        "firstFactor": { "kind": "Key", "credentialAssertion": { "credId": root, "clientData": b64url(&data), "signature": b64url(&root_key.sign(&data)) } },
    })
    .to_string();
    let r = api.send("POST", "/auth/login", &login, None, None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let user_token = r.body["token"].as_str().unwrap().to_owned();
    assert_eq!(
        api.send("POST", "/auth/login", &login, None, None)
            .await
            .status,
        400,
        "login challenge is single-use"
    );
    let wrong_org = json!({ "username": sim.username(), "orgId": "or-other" }).to_string();
    assert_eq!(
        api.send("POST", "/auth/login/init", &wrong_org, None, None)
            .await
            .status,
        401
    );

    // Delegated login needs a user action.
    let delegated = r#"{"username":"enduser@example.com"}"#;
    assert_eq!(
        api.send("POST", "/auth/login/delegated", delegated, Some(&t), None)
            .await
            .status,
        403
    );
    let d = api
        .signed(
            &t,
            &root_key,
            &root,
            "POST",
            "/auth/login/delegated",
            delegated,
        )
        .await;
    assert_eq!(d.status, 200, "{}", d.body);
    assert_eq!(
        api.send("GET", "/wallets", "", d.body["token"].as_str(), None)
            .await
            .status,
        200
    );

    // Logout revokes the token used, and only that one; it needs no user action.
    assert_eq!(
        api.send("PUT", "/auth/logout", "", Some(&user_token), None)
            .await
            .body,
        json!({"message":"success"})
    );
    assert_eq!(
        api.send("GET", "/wallets", "", Some(&user_token), None)
            .await
            .status,
        401
    );
    assert_eq!(
        api.send("GET", "/wallets", "", Some(&t), None).await.status,
        200
    );
}

// ---------------------------------------------------------------- wallets

#[tokio::test]
async fn external_ids_make_wallets_and_signatures_idempotent() {
    let (sim, api, key) = start("p256").await;
    let t = token(&sim);
    let cred = sim.credential_id().to_owned();
    let body = r#"{"network":"EthereumSepolia","externalId":"ext-1"}"#;
    let first = api.signed(&t, &key, &cred, "POST", "/wallets", body).await;
    let reordered = r#"{"externalId":"ext-1","network":"EthereumSepolia"}"#;
    let second = api
        .signed(&t, &key, &cred, "POST", "/wallets", reordered)
        .await;
    assert_eq!((first.status, second.status), (200, 200));
    assert_eq!(first.body, second.body, "same body: the original entity");
    let other = api
        .signed(
            &t,
            &key,
            &cred,
            "POST",
            "/wallets",
            r#"{"network":"Bitcoin","externalId":"ext-1"}"#,
        )
        .await;
    assert_eq!(other.status, 409, "{}", other.body);

    let wallet = first.body["id"].as_str().unwrap();
    let path = format!("/wallets/{wallet}/signatures");
    let hash = hex::encode(sha2::Sha256::digest(b"hello"));
    let sig_body = format!(r#"{{"kind":"Hash","hash":"0x{hash}","externalId":"sig-1"}}"#);
    let s1 = api.signed(&t, &key, &cred, "POST", &path, &sig_body).await;
    let s2 = api.signed(&t, &key, &cred, "POST", &path, &sig_body).await;
    assert_eq!(s1.status, 200, "{}", s1.body);
    assert_eq!(s1.body, s2.body);
    let s3 = api
        .signed(
            &t,
            &key,
            &cred,
            "POST",
            &path,
            &format!(
                r#"{{"kind":"Hash","hash":"0x{}","externalId":"sig-1"}}"#,
                "00".repeat(32)
            ),
        )
        .await;
    assert_eq!(s3.status, 409);
    // The signature is real: it verifies against the wallet's key.
    use k256::ecdsa::signature::hazmat::PrehashVerifier;
    let public = hex::decode(first.body["signingKey"]["publicKey"].as_str().unwrap()).unwrap();
    let verifying = k256::ecdsa::VerifyingKey::from_sec1_bytes(&public).unwrap();
    let rs = [&s1.body["signature"]["r"], &s1.body["signature"]["s"]]
        .iter()
        .map(|v| hex::decode(v.as_str().unwrap().trim_start_matches("0x")).unwrap())
        .collect::<Vec<_>>()
        .concat();
    verifying
        .verify_prehash(
            &hex::decode(&hash).unwrap(),
            &k256::ecdsa::Signature::from_slice(&rs).unwrap(),
        )
        .unwrap();
    let got = api
        .send(
            "GET",
            &format!("{path}/{}", s1.body["id"].as_str().unwrap()),
            "",
            Some(&t),
            None,
        )
        .await;
    assert_eq!(got.body, s1.body);
}

#[tokio::test]
async fn wallets_are_listed_page_by_page() {
    let (sim, api, key) = start("p256").await;
    let t = token(&sim);
    for i in 0..5 {
        let body = format!(r#"{{"network":"Bitcoin","name":"w{i}"}}"#);
        assert_eq!(
            api.signed(&t, &key, sim.credential_id(), "POST", "/wallets", &body)
                .await
                .status,
            200
        );
    }
    let mut names = Vec::new();
    let mut query = "limit=2".to_owned();
    loop {
        let page = api
            .send("GET", &format!("/wallets?{query}"), "", Some(&t), None)
            .await;
        assert_eq!(page.status, 200, "{}", page.body);
        let items = page.body["items"].as_array().unwrap();
        assert!(items.len() <= 2);
        names.extend(items.iter().map(|w| w["name"].as_str().unwrap().to_owned()));
        match page.body["nextPageToken"].as_str() {
            Some(next) => query = format!("limit=2&paginationToken={next}"),
            None => break,
        }
    }
    assert_eq!(names, ["w0", "w1", "w2", "w3", "w4"]);
    assert_eq!(
        api.send("GET", "/wallets?limit=0", "", Some(&t), None)
            .await
            .status,
        400
    );
    assert_eq!(
        api.send(
            "GET",
            "/wallets?paginationToken=a%20b%2Fc",
            "",
            Some(&t),
            None
        )
        .await
        .status,
        400
    );
    assert_eq!(
        api.send("GET", "/wallets/wa-nope", "", Some(&t), None)
            .await
            .status,
        404
    );
}

// ---------------------------------------------------------------- faults

#[tokio::test]
async fn faults_are_observable() {
    let (sim, api, key) = start("p256").await;
    let t = token(&sim);
    let cred = sim.credential_id().to_owned();

    sim.set_faults(Faults {
        rate_429: 1.0,
        retry_after_secs: 7,
        ..Faults::default()
    });
    let r = api.send("GET", "/wallets", "", Some(&t), None).await;
    assert_dfns_error(&r, 429, "Too Many Requests");
    assert_eq!(r.headers["retry-after"], "7");

    sim.set_faults(Faults {
        rate_500: 1.0,
        ..Faults::default()
    });
    assert_dfns_error(
        &api.send("GET", "/wallets", "", Some(&t), None).await,
        500,
        "Internal Server Error",
    );

    sim.set_faults(Faults {
        rate_502: 1.0,
        ..Faults::default()
    });
    let r = api.send("GET", "/wallets", "", Some(&t), None).await;
    assert_eq!((r.status, r.message()), (502, "Bad Gateway"));
    assert!(
        r.body.get("error").is_none(),
        "gateway errors are flat: {}",
        r.body
    );

    sim.set_faults(Faults {
        drop_rate: 1.0,
        ..Faults::default()
    });
    let dropped = api.try_send("GET", "/wallets", "", Some(&t), None).await;
    assert!(
        dropped.is_err(),
        "the connection is closed without an answer"
    );
    assert_eq!(sim.stats().dropped, 1);

    // Faults aimed at one endpoint leave the challenge flow alone; the user action presented
    // with a faulted request is spent.
    sim.set_faults(Faults {
        rate_429: 1.0,
        retry_after_secs: 1,
        only_paths: vec!["POST /wallets".into()],
        ..Faults::default()
    });
    let ua = api
        .user_action(&t, &key, &cred, "POST", "/wallets", WALLET)
        .await;
    assert_eq!(
        api.send("POST", "/wallets", WALLET, Some(&t), Some(&ua))
            .await
            .status,
        429
    );
    sim.set_faults(Faults::default());
    assert_dfns_error(
        &api.send("POST", "/wallets", WALLET, Some(&t), Some(&ua))
            .await,
        400,
        "user action has already been used",
    );

    // Policy pending: 202 with the approval, and nothing created.
    sim.set_faults(Faults {
        policy_pending_paths: vec!["POST /wallets".into()],
        ..Faults::default()
    });
    let r = api
        .signed(&t, &key, &cred, "POST", "/wallets", WALLET)
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(r.body["status"], "Pending");
    assert!(r.body["id"].as_str().unwrap().starts_with("ap-"));
    assert_eq!(
        api.send("GET", "/wallets", "", Some(&t), None).await.body["items"],
        json!([])
    );

    sim.set_faults(Faults {
        latency: Duration::from_millis(200),
        ..Faults::default()
    });
    let started = Instant::now();
    assert_eq!(
        api.send("GET", "/wallets", "", Some(&t), None).await.status,
        200
    );
    assert!(started.elapsed() >= Duration::from_millis(200));

    // A seeded mixture is reproducible.
    let run = |seed| {
        let (api, t, sim) = (&api, t.clone(), &sim);
        async move {
            sim.set_faults(Faults {
                rate_429: 0.3,
                rate_500: 0.3,
                seed: Some(seed),
                ..Faults::default()
            });
            let mut statuses = Vec::new();
            for _ in 0..30 {
                statuses.push(api.send("GET", "/wallets", "", Some(&t), None).await.status);
            }
            statuses
        }
    };
    let a = run(42).await;
    assert_eq!(a, run(42).await);
    assert!(
        a.contains(&200) && a.contains(&429) && a.contains(&500),
        "{a:?}"
    );
    let stats = sim.stats();
    assert!(stats.faults_injected >= 7, "{stats:?}");
    assert!(stats.statuses[&429] >= 2, "{stats:?}");
}

// ---------------------------------------------------------------- API hygiene

#[tokio::test]
async fn the_auth_token_stays_out_of_debug_output_and_errors() {
    let (sim, api, _) = start("p256").await;
    let secret = token(&sim);
    assert!(!format!("{sim:?}").contains(&secret));
    assert!(!format!("{:?}", sim.auth_token()).contains(&secret));
    let info: Value = serde_json::from_str(&sim.connection_info_json()).unwrap();
    assert_eq!(
        info["authToken"],
        secret.as_str(),
        "the CLI line carries it on purpose"
    );
    assert_eq!(info["credId"], sim.credential_id());
    assert_eq!(info["orgId"], sim.org_id());
    assert_eq!(info["baseUrl"], sim.base_url());
    // A revoked token is refused without being echoed.
    api.send("PUT", "/auth/logout", "", Some(&secret), None)
        .await;
    let r = api.send("GET", "/wallets", "", Some(&secret), None).await;
    assert_eq!(r.status, 401);
    assert!(!r.body.to_string().contains(&secret));
    assert!(!format!("{:?}", sim.stats()).contains(&secret));
}

#[tokio::test]
async fn the_builder_explains_bad_configuration_and_the_default_credential_id_is_the_crates() {
    let err = Simulator::builder().start().await.unwrap_err();
    assert!(err.to_string().contains("root_public_key_pem"), "{err}");
    let err = Simulator::builder()
        .root_public_key_pem("not a pem")
        .start()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("cannot be used"), "{err}");
    let pem = fixture("keys/p256.pub.pem");
    let err = Simulator::builder()
        .root_public_key_pem(pem.clone())
        .root_credential_id("a b")
        .start()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("base64url"), "{err}");
    let sim = Simulator::builder()
        .root_public_key_pem(pem.clone())
        .start()
        .await
        .unwrap();
    assert_eq!(
        sim.credential_id(),
        dfns_signer::protocol::default_credential_id(
            &dfns_signer::PublicKey::from_pem(&pem).unwrap()
        )
    );
    let taken = sim.local_addr().to_string();
    let err = Simulator::builder()
        .root_public_key_pem(pem.clone())
        .start_on(&taken)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("cannot listen"), "{err}");
    let custom = Simulator::builder()
        .root_public_key_pem(pem)
        .root_credential_id("my-cred_1")
        .start()
        .await
        .unwrap();
    assert_eq!(custom.credential_id(), "my-cred_1");
    // Shutdown closes the port.
    let addr = custom.local_addr();
    custom.shutdown().await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

// ---------------------------------------------------------------- the CLI entry point

/// Not a test of its own: the child process of the test below (run with `--ignored`).
#[cfg(unix)]
#[tokio::test]
#[ignore = "helper process for serve_until_signal_prints_one_line_and_stops_on_sigterm"]
async fn serve_until_signal_child() {
    if std::env::var("DFNS_SIGNER_SIM_CHILD").as_deref() != Ok("1") {
        return;
    }
    let builder = Simulator::builder().root_public_key_pem(fixture("keys/p256.pub.pem"));
    dfns_signer::simulator::serve_until_signal(builder, "127.0.0.1:0")
        .await
        .unwrap();
}

#[cfg(unix)]
#[tokio::test]
async fn serve_until_signal_prints_one_line_and_stops_on_sigterm() {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "serve_until_signal_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("DFNS_SIGNER_SIM_CHILD", "1")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut info_lines = Vec::new();
    let read = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            // libtest prints `test serve_until_signal_child ... ` without a newline first.
            if let Some(start) = line.find("{\"baseUrl\"") {
                info_lines.push(line[start..].to_owned());
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .expect("the JSON line comes");
    let info: Value = serde_json::from_str(&info_lines[0]).unwrap();
    let keys: Vec<&String> = info.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["baseUrl", "authToken", "credId", "orgId"]);

    // It serves, with the printed token and credential.
    let api = Api {
        base: info["baseUrl"].as_str().unwrap().to_owned(),
        http: reqwest::Client::new(),
    };
    let t = info["authToken"].as_str().unwrap();
    let (key, _) = TestKey::load("p256");
    let r = api
        .signed(
            t,
            &key,
            info["credId"].as_str().unwrap(),
            "POST",
            "/wallets",
            WALLET,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);

    let pid = child.id().unwrap().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("exits on SIGTERM")
        .unwrap();
    assert!(status.success(), "{status}");
    let after = api.try_send("GET", "/wallets", "", Some(t), None).await;
    assert!(after.is_err(), "nothing listens any more");
}

// ---------------------------------------------------------------- concurrency

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_signed_requests_are_each_checked_once() {
    let (sim, api, key) = start("ed25519").await;
    let api = std::sync::Arc::new(api);
    let key = std::sync::Arc::new(key);
    let t = token(&sim);
    let cred = sim.credential_id().to_owned();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..64 {
        let (api, key, t, cred) = (api.clone(), key.clone(), t.clone(), cred.clone());
        tasks.spawn(async move {
            let body = format!(r#"{{"network":"Solana","name":"w{i}"}}"#);
            let ua = api
                .user_action(&t, &key, &cred, "POST", "/wallets", &body)
                .await;
            // Every task presents its token twice at once: exactly one may win.
            let (a, b) = tokio::join!(
                api.send("POST", "/wallets", &body, Some(&t), Some(&ua)),
                api.send("POST", "/wallets", &body, Some(&t), Some(&ua)),
            );
            let mut statuses = [a.status, b.status];
            statuses.sort();
            statuses
        });
    }
    while let Some(statuses) = tasks.join_next().await {
        assert_eq!(statuses.unwrap(), [200, 400]);
    }
    let elapsed = started.elapsed();
    let stats = sim.stats();
    assert_eq!(
        (stats.user_actions_issued, stats.user_actions_used),
        (64, 64)
    );
    let wallets = api
        .send("GET", "/wallets?limit=100", "", Some(&t), None)
        .await;
    assert_eq!(wallets.body["items"].as_array().unwrap().len(), 64);
    println!("64 signed flows (init, complete, 2 racing requests) in {elapsed:?}");
}

// ---------------------------------------------------------------- independence

/// The simulator judges our client and backends, so it must not share their code: a parser bug
/// shared by signer and checker would make both agree on a wrong answer. Its non-test code
/// names nothing of `crate::backend`, `crate::client`, `crate::protocol` or `crate::signer`.
#[test]
fn the_simulator_uses_none_of_the_code_it_checks() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/simulator");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let source = std::fs::read_to_string(&path).unwrap();
        // Unit tests (at the end of a file) may build keys with the backend to feed the checks.
        let code = source.split("#[cfg(test)]").next().unwrap();
        for (n, line) in code.lines().enumerate() {
            let line = line.trim_start();
            if line.starts_with("//") {
                continue;
            }
            for layer in ["backend", "client", "protocol", "signer"] {
                for spelling in [format!("crate::{layer}"), format!("super::super::{layer}")] {
                    assert!(
                        !line.contains(&spelling),
                        "{}:{}: the simulator uses `{spelling}`: {line}",
                        path.display(),
                        n + 1
                    );
                }
            }
            for item in [
                "crate::{",
                "crate::KeyBackend",
                "crate::DfnsClient",
                "crate::Error",
            ] {
                assert!(
                    !line.contains(item),
                    "{}:{}: the simulator reaches the crate root (`{item}`): {line}",
                    path.display(),
                    n + 1
                );
            }
        }
        checked += 1;
    }
    assert!(checked >= 10, "read {checked} files of src/simulator");
}

/// The simulator computes the root credential's default id with its own code; it must be the
/// id the crate gives the same key (`protocol::default_credential_id`), or the CLI's default
/// would not match.
#[tokio::test]
async fn the_default_root_credential_id_matches_the_crates() {
    for name in KEY_NAMES {
        let pem = fixture(&format!("keys/{name}.pub.pem"));
        let sim = Simulator::builder()
            .root_public_key_pem(pem.clone())
            .start()
            .await
            .unwrap();
        let ours = dfns_signer::protocol::default_credential_id(
            &dfns_signer::PublicKey::from_pem(&pem).unwrap(),
        );
        assert_eq!(sim.credential_id(), ours, "{name}");
        sim.shutdown().await;
    }
}

// ---------------------------------------------------------------- keys, PATs, webhooks

/// The Keys API's refusals, in Dfns' statuses: an unknown key is 404, a scheme/curve pair the
/// simulator cannot make is 400 naming what it can, and a wallet's key is the one `/keys` shows.
#[tokio::test]
async fn keys_api_refusals_and_the_wallet_key_link() {
    let (sim, api, root_key) = start("p256").await;
    let t = token(&sim);
    let root = sim.credential_id().to_owned();
    assert_eq!(
        api.send("GET", "/keys/key-nope", "", Some(&t), None)
            .await
            .status,
        404
    );
    let bad = api
        .signed(
            &t,
            &root_key,
            &root,
            "POST",
            "/keys",
            r#"{"scheme":"ECDSA","curve":"stark"}"#,
        )
        .await;
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(
        bad.body.to_string().contains("EdDSA on ed25519"),
        "{}",
        bad.body
    );
    let wallet = api
        .signed(
            &t,
            &root_key,
            &root,
            "POST",
            "/wallets",
            r#"{"network":"Solana"}"#,
        )
        .await;
    assert_eq!(wallet.status, 200, "{}", wallet.body);
    let key_id = wallet.body["signingKey"]["id"].as_str().unwrap();
    let key = api
        .send("GET", &format!("/keys/{key_id}"), "", Some(&t), None)
        .await;
    assert_eq!(key.body["curve"], "ed25519");
    assert_eq!(
        key.body["publicKey"],
        wallet.body["signingKey"]["publicKey"]
    );
    assert_eq!(key.body["wallets"][0]["id"], wallet.body["id"]);
    // Signing through the key also shows under the key's list, not under another key.
    let sig = api
        .signed(
            &t,
            &root_key,
            &root,
            "POST",
            &format!("/keys/{key_id}/signatures"),
            r#"{"kind":"Message","message":"0x01"}"#,
        )
        .await;
    assert_eq!(sig.status, 200, "{}", sig.body);
    assert_eq!(sig.body["keyId"], key_id);
    let list = api
        .send(
            "GET",
            &format!("/keys/{key_id}/signatures"),
            "",
            Some(&t),
            None,
        )
        .await;
    assert_eq!(list.body["items"].as_array().unwrap().len(), 1);
    sim.shutdown().await;
}

/// A PAT always names the public key that signs for it (the official SDKs' types require its
/// credential id); `daysValid` is accepted as well as `secondsValid`, not both.
#[tokio::test]
async fn pats_need_a_public_key_and_one_lifetime() {
    let (sim, api, root_key) = start("p256").await;
    let t = token(&sim);
    let root = sim.credential_id().to_owned();
    let (_, pem) = TestKey::load("ed25519");
    for (body, status) in [
        (json!({"name": "no-key"}), 400),
        (
            json!({"name": "both", "publicKey": pem, "secondsValid": 60, "daysValid": 1}),
            400,
        ),
        (
            json!({"name": "days", "publicKey": pem, "daysValid": 1}),
            200,
        ),
    ] {
        let r = api
            .signed(
                &t,
                &root_key,
                &root,
                "POST",
                "/auth/pats",
                &body.to_string(),
            )
            .await;
        assert_eq!(r.status, status, "{body}: {}", r.body);
    }
    sim.shutdown().await;
}

/// A webhook update changes what it names and its `dateUpdated`, keeps its secret hidden, and
/// an unknown webhook is 404 for every verb, as Dfns answers.
#[tokio::test]
async fn webhooks_update_and_unknown_ids() {
    let (sim, api, root_key) = start("p256").await;
    let t = token(&sim);
    let root = sim.credential_id().to_owned();
    let created = api
        .signed(
            &t,
            &root_key,
            &root,
            "POST",
            "/webhooks",
            r#"{"url":"http://127.0.0.1:9/a","events":["wallet.created"]}"#,
        )
        .await;
    assert_eq!(created.status, 200, "{}", created.body);
    let id = created.body["id"].as_str().unwrap();
    assert_eq!(created.body["dateUpdated"], created.body["dateCreated"]);
    tokio::time::sleep(Duration::from_millis(5)).await;
    let updated = api
        .signed(
            &t,
            &root_key,
            &root,
            "PUT",
            &format!("/webhooks/{id}"),
            r#"{"status":"Disabled","events":["*"]}"#,
        )
        .await;
    assert_eq!(updated.status, 200, "{}", updated.body);
    assert_eq!(updated.body["status"], "Disabled");
    assert_eq!(updated.body["events"], json!(["*"]));
    assert_ne!(updated.body["dateUpdated"], created.body["dateUpdated"]);
    assert!(updated.body.get("secret").is_none());
    for (method, path) in [
        ("GET", "/webhooks/wh-nope"),
        ("PUT", "/webhooks/wh-nope"),
        ("DELETE", "/webhooks/wh-nope"),
        ("POST", "/webhooks/wh-nope/ping"),
    ] {
        let body = if method == "PUT" { "{}" } else { "" };
        let r = if method == "GET" {
            api.send(method, path, body, Some(&t), None).await
        } else {
            api.signed(&t, &root_key, &root, method, path, body).await
        };
        assert_eq!(r.status, 404, "{method} {path}: {}", r.body);
    }
    sim.shutdown().await;
}

// ---------------------------------------------------------------- webhook deliveries

/// A one-endpoint HTTP receiver on loopback: every request's headers (lowercased names) and
/// raw body go to the channel; each gets `200 OK` with body `thanks`.
async fn webhook_receiver() -> (
    String,
    tokio::sync::mpsc::UnboundedReceiver<(Vec<(String, String)>, Vec<u8>)>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut data = Vec::new();
                let mut buf = [0u8; 4096];
                let (head_end, length) = loop {
                    let n = stream.read(&mut buf).await.unwrap();
                    assert!(n > 0, "connection closed before the body");
                    data.extend_from_slice(&buf[..n]);
                    if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&data[..end]).to_lowercase();
                        let length = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .map(|v| v.trim().parse::<usize>().unwrap())
                            .unwrap_or(0);
                        break (end + 4, length);
                    }
                };
                while data.len() < head_end + length {
                    let n = stream.read(&mut buf).await.unwrap();
                    data.extend_from_slice(&buf[..n]);
                }
                let headers = String::from_utf8_lossy(&data[..head_end - 4])
                    .lines()
                    .skip(1)
                    .filter_map(|l| l.split_once(':'))
                    .map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_owned()))
                    .collect();
                let _ = tx.send((headers, data[head_end..head_end + length].to_vec()));
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\nthanks",
                    )
                    .await;
            });
        }
    });
    (url, rx)
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A wallet creation reaches a registered loopback receiver as a `wallet.created` event signed
/// as Dfns signs; the library's helper verifies it, and refuses it when any byte changes. A
/// ping's answer is the receiver's status, and the events list shows both deliveries.
#[tokio::test]
async fn webhook_events_are_delivered_signed_and_verify_with_the_helper() {
    use dfns_signer::webhooks::{verify, WebhookError};
    let (sim, api, root_key) = start("p256").await;
    let t = token(&sim);
    let root = sim.credential_id().to_owned();
    let (url, mut received) = webhook_receiver().await;
    let hook = api
        .signed(
            &t,
            &root_key,
            &root,
            "POST",
            "/webhooks",
            &json!({"url": url, "events": ["wallet.created"]}).to_string(),
        )
        .await;
    assert_eq!(hook.status, 200, "{}", hook.body);
    let hook_id = hook.body["id"].as_str().unwrap().to_owned();
    let secret = hook.body["secret"].as_str().unwrap().to_owned();

    let wallet = api
        .signed(
            &t,
            &root_key,
            &root,
            "POST",
            "/wallets",
            r#"{"network":"Ethereum"}"#,
        )
        .await;
    assert_eq!(wallet.status, 200, "{}", wallet.body);
    let (headers, body) = tokio::time::timeout(Duration::from_secs(10), received.recv())
        .await
        .expect("the event is delivered")
        .unwrap();
    let header = headers
        .iter()
        .find(|(k, _)| k == "x-dfns-webhook-signature")
        .map(|(_, v)| v.clone())
        .expect("the delivery is signed");
    let event = verify(&body, &header, &secret, unix_now()).expect("the delivery verifies");
    assert_eq!(event.kind, "wallet.created");
    assert_eq!(event.body["data"]["wallet"]["id"], wallet.body["id"]);
    for i in [0, body.len() / 2, body.len() - 1] {
        let mut changed = body.clone();
        changed[i] ^= 0x20;
        assert_eq!(
            verify(&changed, &header, &secret, unix_now()),
            Err(WebhookError::SignatureMismatch),
            "byte {i} changed"
        );
    }
    // Not subscribed: a key signature sends nothing to this webhook.
    let key_id = wallet.body["signingKey"]["id"].as_str().unwrap();
    let sig = api
        .signed(
            &t,
            &root_key,
            &root,
            "POST",
            &format!("/keys/{key_id}/signatures"),
            &json!({"kind": "Hash", "hash": "00".repeat(32)}).to_string(),
        )
        .await;
    assert_eq!(sig.status, 200, "{}", sig.body);

    let ping = api
        .signed(
            &t,
            &root_key,
            &root,
            "POST",
            &format!("/webhooks/{hook_id}/ping"),
            "",
        )
        .await;
    assert_eq!(ping.status, 200, "{}", ping.body);
    assert_eq!(ping.body["status"], "200");
    assert_eq!(ping.body["data"], "thanks");
    let (_, ping_body) = received.recv().await.unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&ping_body).unwrap()["kind"],
        "webhook.ping"
    );
    assert!(received.try_recv().is_err(), "nothing else was delivered");

    let events = api
        .send(
            "GET",
            &format!("/webhooks/{hook_id}/events"),
            "",
            Some(&t),
            None,
        )
        .await;
    let kinds: Vec<&str> = events.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["webhook.ping", "wallet.created"]);
    assert!(events.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["status"] == "200"));
    sim.shutdown().await;
}

/// Deliveries go to loopback only: another address is recorded as not delivered, with the
/// reason, and the ping says so.
#[tokio::test]
async fn webhooks_outside_loopback_are_never_contacted() {
    let (sim, api, root_key) = start("p256").await;
    let t = token(&sim);
    let root = sim.credential_id().to_owned();
    let hook = api
        .signed(
            &t,
            &root_key,
            &root,
            "POST",
            "/webhooks",
            r#"{"url":"https://hooks.example.com/dfns","events":["*"]}"#,
        )
        .await;
    let hook_id = hook.body["id"].as_str().unwrap();
    let ping = api
        .signed(
            &t,
            &root_key,
            &root,
            "POST",
            &format!("/webhooks/{hook_id}/ping"),
            "",
        )
        .await;
    assert_eq!(ping.body["status"], "0", "{}", ping.body);
    assert!(
        ping.body["error"].as_str().unwrap().contains("loopback"),
        "{}",
        ping.body
    );
    sim.shutdown().await;
}

// ---------------------------------------------------------------- lifetimes and limits

/// 10,000 requests to made-up paths, with no token or a wrong one, leave the simulator's state
/// exactly as it was: statistics count routes (`(not served)` here), not raw paths, and
/// refusals by reason, not by what the client sent.
#[tokio::test]
async fn ten_thousand_unknown_paths_leave_the_state_flat() {
    let (sim, api, _) = start("p256").await;
    let warm = api.send("GET", "/nope-warm-up", "", None, None).await;
    assert_eq!(warm.status, 401, "no token: refused before routing");
    let _ = api
        .send("GET", "/wallets", "", Some("bogus-token-warm-up"), None)
        .await;
    let before = sim.state_entries();
    let api = std::sync::Arc::new(api);
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..8 {
        let api = api.clone();
        tasks.spawn(async move {
            for i in 0..1250 {
                let n = worker * 1250 + i;
                let r = if n % 2 == 0 {
                    api.send("GET", &format!("/nope-{n}/x{n}"), "", None, None)
                        .await
                } else {
                    let token = format!("bogus-token-{n}");
                    api.send("POST", &format!("/wallets/{n}"), "{}", Some(&token), None)
                        .await
                };
                assert!(matches!(r.status, 401 | 404), "{n}: {}", r.status);
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    assert_eq!(sim.state_entries(), before, "{:?}", sim.stats());
    let stats = sim.stats();
    assert!(stats.requests["(not served)"] >= 5000, "{stats:?}");
    assert!(
        !stats.requests.keys().any(|k| k.contains("nope")),
        "{stats:?}"
    );
    sim.shutdown().await;
}

/// A PAT lives `secondsValid`: past it, its token is refused with 401 and says why.
#[tokio::test]
async fn an_expired_pat_is_refused() {
    let (sim, api, root_key) = start("p256").await;
    let t = token(&sim);
    let root = sim.credential_id().to_owned();
    let (_, pem) = TestKey::load("ed25519");
    let pat = api
        .signed(
            &t,
            &root_key,
            &root,
            "POST",
            "/auth/pats",
            &json!({"name": "short", "publicKey": pem, "secondsValid": 1}).to_string(),
        )
        .await;
    assert_eq!(pat.status, 200, "{}", pat.body);
    let pat_token = pat.body["accessToken"].as_str().unwrap();
    assert_eq!(
        api.send("GET", "/wallets", "", Some(pat_token), None)
            .await
            .status,
        200
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let refused = api.send("GET", "/wallets", "", Some(pat_token), None).await;
    assert_eq!(refused.status, 401, "{}", refused.body);
    assert!(
        refused.body.to_string().contains("expired"),
        "{}",
        refused.body
    );
    sim.shutdown().await;
}

/// Connections are capped and idle ones time out: with two slots held by clients that never
/// send a request, a third waits; when the header-read timeout closes the idle two, it is served.
#[tokio::test]
async fn idle_connections_cannot_hold_the_simulator() {
    use tokio::io::AsyncReadExt;
    let (key, pem) = TestKey::load("p256");
    drop(key);
    let sim = Simulator::builder()
        .root_public_key_pem(pem)
        .max_connections(2)
        .header_read_timeout(Duration::from_millis(700))
        .start()
        .await
        .unwrap();
    let mut idle = Vec::new();
    for _ in 0..2 {
        let mut stream = tokio::net::TcpStream::connect(sim.local_addr())
            .await
            .unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut stream, b"GET /wallets HTTP/1.1\r\n")
            .await
            .unwrap();
        idle.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let third = reqwest::Client::new()
        .get(format!("{}/nope", sim.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(third.status(), 401, "served (and refused: no token)");
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "served after {:?}: the cap did not hold",
        started.elapsed()
    );
    for mut stream in idle {
        let mut rest = Vec::new();
        // Closed by the simulator (after a 408 or without an answer), not left hanging.
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest))
            .await
            .expect("the idle connection is closed")
            .unwrap();
    }
    sim.shutdown().await;
}

// ---------------------------------------------------------------- permissions

/// A service account made with a permission may do exactly its operations: 403 (naming the
/// missing operation, with its user action left unspent) for the others, 200 once a permission
/// with the operation is assigned, 403 again when that permission is archived. A PAT made with a
/// permission is held to it even though its user (root) may do everything.
#[tokio::test]
async fn service_accounts_and_pats_get_exactly_their_permissions() {
    let (sim, api, root_key) = start("p256").await;
    let t = token(&sim);
    let root = sim.credential_id().to_owned();
    let permission =
        |name: &str, ops: &[&str]| json!({"name": name, "operations": ops}).to_string();
    let reader = api
        .signed(
            &t,
            &root_key,
            &root,
            "POST",
            "/permissions",
            &permission("reader", &["Wallets:Read"]),
        )
        .await;
    assert_eq!(reader.status, 200, "{}", reader.body);
    let reader_id = reader.body["id"].as_str().unwrap().to_owned();

    let (sa_key, sa_pem) = TestKey::load("ed25519");
    let sa = api
        .signed(
            &t,
            &root_key,
            &root,
            "POST",
            "/auth/service-accounts",
            &json!({"name": "reader-sa", "publicKey": sa_pem, "permissionId": reader_id})
                .to_string(),
        )
        .await;
    assert_eq!(sa.status, 200, "{}", sa.body);
    let sa_token = sa.body["accessTokens"][0]["accessToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let sa_token_id = sa.body["accessTokens"][0]["tokenId"]
        .as_str()
        .unwrap()
        .to_owned();
    let sa_cred = sa.body["accessTokens"][0]["credId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        sa.body["accessTokens"][0]["permissionAssignments"][0]["permissionId"],
        reader_id.as_str()
    );

    assert_eq!(
        api.send("GET", "/wallets", "", Some(&sa_token), None)
            .await
            .status,
        200
    );
    let used_before = sim.stats().user_actions_used;
    let refused = api
        .signed(
            &sa_token,
            &sa_key,
            &sa_cred,
            "POST",
            "/wallets",
            r#"{"network":"Tron"}"#,
        )
        .await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(
        refused.body.to_string().contains("Wallets:Create"),
        "{}",
        refused.body
    );
    assert_eq!(
        sim.stats().user_actions_used,
        used_before,
        "a refused call spends no user action"
    );

    let creator = api
        .signed(
            &t,
            &root_key,
            &root,
            "POST",
            "/permissions",
            &permission("creator", &["Wallets:Create"]),
        )
        .await;
    let creator_id = creator.body["id"].as_str().unwrap().to_owned();
    let assigned = api
        .signed(
            &t,
            &root_key,
            &root,
            "POST",
            &format!("/permissions/{creator_id}/assignments"),
            &json!({"identityId": sa_token_id}).to_string(),
        )
        .await;
    assert_eq!(assigned.status, 200, "{}", assigned.body);
    let allowed = api
        .signed(
            &sa_token,
            &sa_key,
            &sa_cred,
            "POST",
            "/wallets",
            r#"{"network":"Tron"}"#,
        )
        .await;
    assert_eq!(allowed.status, 200, "{}", allowed.body);

    let archived = api
        .signed(
            &t,
            &root_key,
            &root,
            "PUT",
            &format!("/permissions/{creator_id}/archive"),
            r#"{"isArchived":true}"#,
        )
        .await;
    assert_eq!(archived.status, 200, "{}", archived.body);
    let again = api
        .signed(
            &sa_token,
            &sa_key,
            &sa_cred,
            "POST",
            "/wallets",
            r#"{"network":"Tron"}"#,
        )
        .await;
    assert_eq!(again.status, 403, "{}", again.body);

    // A PAT of root, made with the reader permission, reads but cannot create.
    let (pat_key, pat_pem) = TestKey::load("secp256k1");
    let pat = api
        .signed(
            &t,
            &root_key,
            &root,
            "POST",
            "/auth/pats",
            &json!({"name": "reader-pat", "publicKey": pat_pem, "permissionId": reader_id})
                .to_string(),
        )
        .await;
    assert_eq!(pat.status, 200, "{}", pat.body);
    let pat_token = pat.body["accessToken"].as_str().unwrap();
    let pat_cred = pat.body["credId"].as_str().unwrap();
    assert_eq!(
        api.send("GET", "/wallets", "", Some(pat_token), None)
            .await
            .status,
        200
    );
    let pat_create = api
        .signed(
            pat_token,
            &pat_key,
            pat_cred,
            "POST",
            "/wallets",
            r#"{"network":"Tron"}"#,
        )
        .await;
    assert_eq!(pat_create.status, 403, "{}", pat_create.body);
    sim.shutdown().await;
}

/// The identity rules around root: delegated login is for end users only (root's username is
/// refused), the root cannot be deactivated by another service account, and names are unique.
#[tokio::test]
async fn root_is_protected_and_delegated_login_is_for_end_users() {
    let (sim, api, root_key) = start("p256").await;
    let t = token(&sim);
    let root = sim.credential_id().to_owned();
    let delegated = api
        .signed(
            &t,
            &root_key,
            &root,
            "POST",
            "/auth/login/delegated",
            &json!({"username": sim.username()}).to_string(),
        )
        .await;
    assert_eq!(delegated.status, 403, "{}", delegated.body);

    let (sa_key, sa_pem) = TestKey::load("ed25519");
    let body = json!({"name": "ops", "publicKey": sa_pem}).to_string();
    let sa = api
        .signed(
            &t,
            &root_key,
            &root,
            "POST",
            "/auth/service-accounts",
            &body,
        )
        .await;
    assert_eq!(sa.status, 200, "{}", sa.body);
    let twin = api
        .signed(
            &t,
            &root_key,
            &root,
            "POST",
            "/auth/service-accounts",
            &body,
        )
        .await;
    assert_eq!(twin.status, 409, "{}", twin.body);

    // Made by root without a permission, "ops" may do what root may, but not deactivate root.
    let sa_token = sa.body["accessTokens"][0]["accessToken"].as_str().unwrap();
    let sa_cred = sa.body["accessTokens"][0]["credId"].as_str().unwrap();
    let services = api
        .send("GET", "/auth/service-accounts", "", Some(&t), None)
        .await;
    let root_user = services.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["userInfo"]["username"] == sim.username())
        .map(|s| s["userInfo"]["userId"].as_str().unwrap().to_owned())
        .unwrap();
    let deactivate = api
        .signed(
            sa_token,
            &sa_key,
            sa_cred,
            "PUT",
            &format!("/auth/service-accounts/{root_user}/deactivate"),
            "",
        )
        .await;
    assert_eq!(deactivate.status, 403, "{}", deactivate.body);
    assert_eq!(
        api.send("GET", "/wallets", "", Some(&t), None).await.status,
        200
    );
    sim.shutdown().await;
}

/// `Message` signatures follow the network: on an EVM network the wallet signs as
/// `personal_sign` (EIP-191: Keccak-256 over the prefixed message), so the signature recovers
/// the wallet's key from that digest; elsewhere an ECDSA key signs the message's SHA-256.
#[tokio::test]
async fn message_signatures_hash_as_the_network_defines() {
    use k256::ecdsa::{RecoveryId, Signature, VerifyingKey};
    use sha3::Digest as _;
    let (sim, api, root_key) = start("p256").await;
    let t = token(&sim);
    let root = sim.credential_id().to_owned();
    let message = b"hello dfns";
    let eip191 = {
        let mut k = sha3::Keccak256::new();
        k.update(b"\x19Ethereum Signed Message:\n10");
        k.update(message);
        k.finalize().to_vec()
    };
    for (network, digest) in [
        ("Ethereum", eip191),
        ("Tron", sha2::Sha256::digest(message).to_vec()),
    ] {
        let wallet = api
            .signed(
                &t,
                &root_key,
                &root,
                "POST",
                "/wallets",
                &json!({"network": network}).to_string(),
            )
            .await;
        let wallet_id = wallet.body["id"].as_str().unwrap();
        let sig = api
            .signed(
                &t,
                &root_key,
                &root,
                "POST",
                &format!("/wallets/{wallet_id}/signatures"),
                &json!({"kind": "Message", "message": format!("0x{}", hex::encode(message))})
                    .to_string(),
            )
            .await;
        assert_eq!(sig.status, 200, "{}", sig.body);
        let unhex = |v: &Value| hex::decode(v.as_str().unwrap().trim_start_matches("0x")).unwrap();
        let signature = Signature::from_slice(
            &[
                unhex(&sig.body["signature"]["r"]),
                unhex(&sig.body["signature"]["s"]),
            ]
            .concat(),
        )
        .unwrap();
        let recid =
            RecoveryId::from_byte(sig.body["signature"]["recid"].as_u64().unwrap() as u8).unwrap();
        let recovered = VerifyingKey::recover_from_prehash(&digest, &signature, recid).unwrap();
        assert_eq!(
            hex::encode(recovered.to_sec1_point(true).as_bytes()),
            wallet.body["signingKey"]["publicKey"].as_str().unwrap(),
            "{network}: the signature is over the network's message digest"
        );
    }
    sim.shutdown().await;
}
