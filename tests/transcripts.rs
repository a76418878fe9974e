//! Replays the wire transcripts captured from the official TypeScript SDK
//! (`tests/fixtures/transcripts/*.json`): a scripted local server answers exactly as the server in
//! the transcript did, our client performs the same operation, and every request it sends is
//! compared with the SDK's — method, URL, header set, body bytes. Values that are random
//! (ECDSA signatures) are verified instead of compared; everything around them is compared byte
//! for byte.
//!
//! Not replayable, by design: `signer_algorithm_sha512_p256` (we never sign with SHA-512),
//! `error_org_mismatch` (an option of the TS client we do not have), and
//! `user_action_replay_rejected` (our client never re-sends an assertion).
//! `every_transcript_is_covered` runs the other tests of this file and checks that every
//! transcript file is replayed by one of them or is in that list, and that the list names files
//! that exist and that no test replays.
#![cfg(feature = "client")]

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use common::mock_http::{MockServer, Recorded, Scripted};
use dfns_signer::protocol::b64url_decode;
use dfns_signer::protocol::{Method, Payload};
use dfns_signer::software::SoftwareKey;
use dfns_signer::{
    ClientError, CredentialSigner, DfnsClient, Error, KeyBackend, Outcome, ProtocolError,
};
use dfns_signer::{CreateServiceAccount, ListWallets};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

const NOT_REPLAYABLE: &[&str] = &[
    "signer_algorithm_sha512_p256",
    "error_org_mismatch",
    "user_action_replay_rejected",
];

/// When set, [`Replay::start`] appends the name of every transcript it replays to this file
/// (one a line), for `every_transcript_is_covered`.
const REPLAY_LOG: &str = "DFNS_SIGNER_TEST_REPLAY_LOG";

fn record_replayed(name: &str) {
    use std::io::Write;
    if let Some(path) = std::env::var_os(REPLAY_LOG) {
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        // One write per line: with `writeln!` the name and its newline may be two writes, and
        // tests replaying at once would interleave them.
        log.write_all(format!("{name}\n").as_bytes()).unwrap();
    }
}

fn load(name: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/transcripts/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The keys behind the transcripts, by credential id (the four create_wallet_* captures carry them).
/// The registration captures add the keys they register.
fn keys() -> Vec<(String, Arc<SoftwareKey>)> {
    let existing = ["p256", "secp256k1", "ed25519", "rsa2048"]
        .iter()
        .map(|k| (format!("create_wallet_{k}"), "credId"));
    let registered = ["p256", "ed25519", "rsa2048"]
        .iter()
        .map(|k| (format!("register_key_credential_{k}"), "newCredId"));
    existing
        .chain(registered)
        .map(|(name, id_field)| {
            let meta = &load(&name)["meta"];
            let key =
                SoftwareKey::from_pem(meta["privateKeyPem"].as_str().unwrap(), &name).unwrap();
            (meta[id_field].as_str().unwrap().to_owned(), Arc::new(key))
        })
        .collect()
}

fn signer_for(cred_id: &str) -> CredentialSigner {
    let (id, key) = keys()
        .into_iter()
        .find(|(id, _)| id == cred_id)
        .expect("known credential");
    CredentialSigner::new(id, key)
}

fn auth_token() -> SecretString {
    SecretString::from(
        load("create_wallet_p256")["meta"]["authToken"]
            .as_str()
            .unwrap()
            .to_owned(),
    )
}

fn script(t: &Value) -> Vec<Scripted> {
    t["exchanges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let r = &e["response"];
            let headers: Vec<(String, String)> = r["headers"]
                .as_object()
                .map(|h| {
                    h.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                        .collect()
                })
                .unwrap_or_default();
            let json = headers
                .iter()
                .any(|(k, v)| k == "content-type" && v.contains("json"));
            let body = match &r["body"] {
                Value::String(s) if !json => s.as_bytes().to_vec(),
                Value::Null => Vec::new(),
                other => serde_json::to_vec(other).unwrap(),
            };
            Scripted {
                status: r["status"].as_u64().unwrap() as u16,
                headers,
                body,
            }
        })
        .collect()
}

struct Replay {
    transcript: Value,
    server: MockServer,
}

impl Replay {
    async fn start(name: &str) -> Replay {
        record_replayed(name);
        let transcript = load(name);
        let server = MockServer::start(script(&transcript)).await;
        Replay { transcript, server }
    }

    fn client(&self, signer: Option<CredentialSigner>, token: bool) -> DfnsClient {
        let mut b = DfnsClient::builder().base_url(&self.server.base_url);
        if token {
            b = b.auth_token(self.token());
        }
        if let Some(s) = signer {
            b = b.signer(s);
        }
        b.build().unwrap()
    }

    /// The bearer token the SDK sent in this capture.
    fn token(&self) -> SecretString {
        let bearer = self.transcript["exchanges"]
            .as_array()
            .unwrap()
            .iter()
            .find_map(|e| header_of_theirs(&e["request"], "authorization"))
            .map(|h| h.trim_start_matches("Bearer ").to_owned())
            .unwrap_or_else(|| auth_token().expose_secret().to_owned());
        SecretString::from(bearer)
    }

    fn final_request(&self) -> (Method, String, Payload) {
        let r = &self.transcript["exchanges"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()["request"];
        let body = r["bodyUtf8"].as_str().unwrap_or("");
        let payload = if body.is_empty() {
            Payload::empty()
        } else {
            Payload::raw_json(body).unwrap()
        };
        (
            r["method"].as_str().unwrap().parse().unwrap(),
            r["url"].as_str().unwrap().to_owned(),
            payload,
        )
    }

    /// Compares every recorded request with the transcript's.
    fn check(&self, url_prefix: &str) {
        let ours = self.server.recorded();
        let theirs = self.transcript["exchanges"].as_array().unwrap();
        let name = self.transcript["name"].as_str().unwrap();
        assert_eq!(ours.len(), theirs.len(), "{name}: number of requests");
        for (o, t) in ours.iter().zip(theirs) {
            let t = &t["request"];
            let url = t["url"].as_str().unwrap();
            assert_eq!(o.method, t["method"].as_str().unwrap(), "{name} {url}");
            assert_eq!(o.target, format!("{url_prefix}{url}"), "{name}");
            assert_eq!(
                dfns_headers_of_ours(o),
                dfns_headers_of_theirs(t),
                "{name} {url}: header set"
            );
            if let Some(auth) = o.header("authorization") {
                assert_eq!(
                    Some(auth),
                    header_of_theirs(t, "authorization").as_deref(),
                    "{name} {url}"
                );
            }
            let their_body = t["bodyUtf8"].as_str().unwrap_or("");
            let meta = &self.transcript["meta"];
            match url {
                "/auth/action" | "/auth/login" => compare_assertion(name, &o.body, their_body),
                // The registration, and the payload of its user action, hold the (randomised,
                // for ECDSA) attestation signature.
                "/auth/credentials" => compare_registration(name, meta, &o.body, their_body),
                "/auth/action/init" if their_body.contains("credentialKind") => {
                    compare_registration(name, meta, &o.body, their_body)
                }
                _ => assert_eq!(
                    String::from_utf8_lossy(&o.body),
                    their_body,
                    "{name} {url}: body bytes"
                ),
            }
        }
    }
}

fn dfns_headers_of_ours(r: &Recorded) -> BTreeSet<String> {
    let names = r.headers.iter().map(|(k, _)| k.to_ascii_lowercase());
    names
        .filter(|k| k == "authorization" || k == "content-type" || k.starts_with("x-dfns"))
        .collect()
}

fn dfns_headers_of_theirs(t: &Value) -> BTreeSet<String> {
    let names = t["rawHeaders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h[0].as_str().unwrap().to_ascii_lowercase());
    // `x-dfns-sdk-version` identifies the TS SDK; other official SDKs do not send it either.
    names
        .filter(|k| k == "authorization" || k == "content-type" || k.starts_with("x-dfns"))
        .filter(|k| k != "x-dfns-sdk-version")
        .collect()
}

fn header_of_theirs(t: &Value, name: &str) -> Option<String> {
    t["rawHeaders"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h[0].as_str().unwrap().eq_ignore_ascii_case(name))
        .map(|h| h[1].as_str().unwrap().to_owned())
}

/// `/auth/action` and `/auth/login` bodies: identical when the key signs deterministically,
/// otherwise identical but for the signature, which must verify.
fn compare_assertion(name: &str, ours: &[u8], theirs: &str) {
    let ours_text = std::str::from_utf8(ours).unwrap();
    let o: Value = serde_json::from_str(ours_text).unwrap();
    let a = &o["firstFactor"]["credentialAssertion"];
    let signer = signer_for(a["credId"].as_str().unwrap());
    let client_data = b64url_decode(a["clientData"].as_str().unwrap()).unwrap();
    let sig = b64url_decode(a["signature"].as_str().unwrap()).unwrap();
    signer
        .backend()
        .public_key()
        .verify(&client_data, &sig)
        .unwrap();
    if matches!(
        signer.backend().algorithm(),
        dfns_signer::Algorithm::Ed25519 | dfns_signer::Algorithm::RsaPkcs1Sha256
    ) {
        assert_eq!(ours_text, theirs, "{name}: deterministic assertion bytes");
    } else {
        let strip = |s: &str| s.replace(|_: char| false, "");
        let t: Value = serde_json::from_str(theirs).unwrap();
        let mut o2 = o.clone();
        let mut t2 = t.clone();
        o2["firstFactor"]["credentialAssertion"]["signature"] = Value::Null;
        t2["firstFactor"]["credentialAssertion"]["signature"] = Value::Null;
        assert_eq!(o2, t2, "{name}: assertion apart from the signature");
        // Same field order as the SDK.
        let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        assert_eq!(keys(&o), keys(&t), "{name}: {}", strip(theirs));
    }
}

/// A Key credential registration (`/auth/credentials`), or the user-action init whose payload is
/// one: byte-identical to the SDK's for deterministic keys. For P-256 (ECDSA is randomised) the
/// attestation signature is verified instead, independently of our code — with the `p256` crate,
/// under the transcript's public key, over the fingerprint the SDK signed (docs/protocol.md §6) —
/// and everything else, the attestation JSON around the signature included, is byte-identical.
fn compare_registration(name: &str, meta: &Value, ours: &[u8], theirs: &str) {
    let ours = std::str::from_utf8(ours).unwrap();
    if name.ends_with("ed25519") || name.ends_with("rsa2048") {
        assert_eq!(ours, theirs, "{name}: registration bytes");
        return;
    }
    assert!(name.ends_with("p256"), "{name}: which key signed?");
    use base64::Engine;
    use p256::ecdsa::signature::Verifier;
    use p256::pkcs8::DecodePublicKey;
    use sha2::Digest;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;

    // The registration itself, or the one an init body carries as its payload.
    let registration = |body: &str| -> Value {
        let v: Value = serde_json::from_str(body).unwrap();
        match v.get("userActionPayload") {
            Some(payload) => serde_json::from_str(payload.as_str().unwrap()).unwrap(),
            None => v,
        }
    };
    let (o, t) = (registration(ours), registration(theirs));
    let field = |v: &Value, f: &str| v["credentialInfo"][f].as_str().unwrap().to_owned();
    let (our_b64, their_b64) = (field(&o, "attestationData"), field(&t, "attestationData"));
    let decode = |s: &str| String::from_utf8(b64.decode(s).unwrap()).unwrap();
    let (our_att, their_att) = (decode(&our_b64), decode(&their_b64));
    let signature_of = |att: &str| -> String {
        let v: Value = serde_json::from_str(att).unwrap();
        v["signature"].as_str().unwrap().to_owned()
    };
    let (our_sig, their_sig) = (signature_of(&our_att), signature_of(&their_att));

    // What the key signs: the fingerprint of this request's clientData and the new key's PEM.
    // The SDK's bytes are in the transcript; they must be the fingerprint of what we sent.
    let signed = meta["credInfoFingerprint"].as_str().unwrap();
    let pem = meta["publicKeyPem"].as_str().unwrap();
    let client_data = b64.decode(field(&o, "clientData")).unwrap();
    assert_eq!(
        signed,
        format!(
            r#"{{"clientDataHash":"{}","publicKey":{}}}"#,
            hex::encode(sha2::Sha256::digest(&client_data)),
            serde_json::to_string(pem).unwrap()
        ),
        "{name}: the transcript's fingerprint is that of the clientData we sent"
    );
    let key = p256::ecdsa::VerifyingKey::from_public_key_pem(pem).unwrap();
    let verify = |sig_hex: &str| {
        let der = hex::decode(sig_hex).expect("a hex signature");
        let sig = p256::ecdsa::Signature::from_der(&der).expect("a DER ECDSA signature");
        key.verify(signed.as_bytes(), &sig)
    };
    // The SDK's own signature verifies over those bytes: they are what the protocol signs.
    verify(&their_sig).expect("the SDK's attestation signature verifies");
    verify(&our_sig).unwrap_or_else(|e| panic!("{name}: our attestation signature: {e}"));
    assert!(
        our_sig
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
        "{name}: lowercase hex: {our_sig}"
    );

    // All but the signature, byte for byte: the attestation JSON, then the whole body.
    assert_eq!(their_att.matches(&their_sig).count(), 1);
    assert_eq!(
        our_att,
        their_att.replace(&their_sig, &our_sig),
        "{name}: attestationData apart from the signature"
    );
    assert_eq!(theirs.matches(&their_b64).count(), 1);
    assert_eq!(
        ours,
        theirs.replace(&their_b64, &our_b64),
        "{name}: body apart from the attestation signature"
    );
}

async fn replay_request(name: &str) -> (Replay, Result<Outcome<dfns_signer::RawResponse>, Error>) {
    let replay = Replay::start(name).await;
    let (method, path, payload) = replay.final_request();
    let client = replay.client(Some(signer_for(&cred_of(&replay.transcript))), true);
    let result = client.request(method, &path, payload).await;
    (replay, result)
}

fn cred_of(t: &Value) -> String {
    t["meta"]["credId"]
        .as_str()
        .unwrap_or("Y3JlZC1wMjU2LWE2ZTY4NTlmYWQwNA")
        .to_owned()
}

#[tokio::test]
async fn raw_requests_match_the_official_sdk() {
    for name in [
        "create_wallet_p256",
        "create_wallet_secp256k1",
        "create_wallet_ed25519",
        "create_wallet_rsa2048",
        "delete_webhook_p256",
        "delete_webhook_secp256k1",
        "delete_webhook_ed25519",
        "delete_webhook_rsa2048",
        "delete_with_body_untag",
        "put_empty_body_activate_sa",
        "put_tags_path_encoding",
        "list_wallets_get_query",
        "logout",
    ] {
        let (replay, result) = replay_request(name).await;
        let outcome = result.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(matches!(outcome, Outcome::Done(_)), "{name}");
        replay.check("");
    }
}

#[tokio::test]
async fn typed_calls_match_the_official_sdk() {
    // createWallet with escaping-heavy names.
    let replay = Replay::start("create_wallet_ed25519").await;
    let client = replay.client(Some(signer_for(&cred_of(&replay.transcript))), true);
    let body: Value = serde_json::from_str(replay.final_request().2.as_str()).unwrap();
    let wallet = client.create_wallet(&body).await.unwrap().done().unwrap();
    assert_eq!(wallet["id"], "wa-5pfuu-9euek-xxxxxxxxxxxxxxxx");
    replay.check("");

    // Service account.
    let replay = Replay::start("create_service_account").await;
    let client = replay.client(Some(signer_for(&cred_of(&replay.transcript))), true);
    let sent: Value = serde_json::from_str(replay.final_request().2.as_str()).unwrap();
    let created = client
        .create_service_account(&CreateServiceAccount {
            name: sent["name"].as_str().unwrap().into(),
            public_key: sent["publicKey"].as_str().unwrap().into(),
            permission_id: None,
            external_id: None,
            days_valid: sent["daysValid"].as_u64().map(|d| d as u32),
        })
        .await
        .unwrap();
    assert!(created.access_token.expose_secret().starts_with("eyJ"));
    assert!(!format!("{created:?}").contains(created.access_token.expose_secret()));
    assert!(
        created
            .body
            .pointer("/accessTokens/0/accessToken")
            .unwrap()
            .is_null(),
        "token removed from body"
    );
    replay.check("");

    // Personal access token.
    let replay = Replay::start("create_pat").await;
    let client = replay.client(Some(signer_for(&cred_of(&replay.transcript))), true);
    let sent: Value = serde_json::from_str(replay.final_request().2.as_str()).unwrap();
    let (token, _) = client
        .create_personal_access_token(
            sent["name"].as_str().unwrap(),
            sent["publicKey"].as_str().unwrap(),
            sent["secondsValid"].as_u64(),
        )
        .await
        .unwrap();
    assert!(token.expose_secret().starts_with("eyJ"));
    replay.check("");

    // Delegated login.
    let replay = Replay::start("delegated_login").await;
    let client = replay.client(Some(signer_for(&cred_of(&replay.transcript))), true);
    let token = client.delegated_login("enduser@example.com").await.unwrap();
    assert!(token.expose_secret().starts_with("eyJ"));
    replay.check("");

    // GET with a query that needs encoding.
    let replay = Replay::start("list_wallets_get_query").await;
    let client = replay.client(None, true);
    let query = ListWallets {
        limit: Some(2),
        pagination_token: Some("a b/c".into()),
    };
    let list = client.list_wallets(&query).await.unwrap();
    assert_eq!(list["items"], serde_json::json!([]));
    replay.check("");
}

#[tokio::test]
async fn login_with_a_key_credential() {
    let replay = Replay::start("login_key_credential").await;
    let client = replay.client(Some(signer_for("Y3JlZC1wMjU2LWE2ZTY4NTlmYWQwNA")), false);
    let token = client
        .login("svc@example.com", "or-30tnh-itmjs-s235s5ontr3r23h2")
        .await
        .unwrap();
    assert!(token.expose_secret().starts_with("eyJ"));
    replay.check("");
}

#[tokio::test]
async fn key_credential_registration_for_every_key_type() {
    for kind in ["ed25519", "p256", "rsa2048"] {
        let name = format!("register_key_credential_{kind}");
        let replay = Replay::start(&name).await;
        let meta = &replay.transcript["meta"];
        let new_key: Arc<dyn KeyBackend> =
            Arc::new(SoftwareKey::from_pem(meta["privateKeyPem"].as_str().unwrap(), kind).unwrap());
        let client = replay.client(Some(signer_for("Y3JlZC1wMjU2LWE2ZTY4NTlmYWQwNA")), true);
        let created = client
            .register_key_credential(
                new_key.clone(),
                &format!("hw-key-{kind}"),
                Some(meta["newCredId"].as_str().unwrap()),
            )
            .await
            .unwrap();
        assert_eq!(created["credentialId"], meta["newCredId"]);
        // First use of the new credential, as in the capture.
        let new_client = client.with_signer(CredentialSigner::new(
            meta["newCredId"].as_str().unwrap(),
            new_key,
        ));
        new_client
            .create_wallet(&serde_json::json!({"network": "Solana"}))
            .await
            .unwrap()
            .done()
            .unwrap();
        replay.check("");
    }
}

#[tokio::test]
async fn delegated_signing_init_sign_complete() {
    for name in [
        "delegated_client_init_complete",
        "delegated_client_delete_webhook",
    ] {
        let replay = Replay::start(name).await;
        // The backend has the auth token but no key; the signer is elsewhere.
        let backend = replay.client(None, true);
        let (method, path, payload) = replay.final_request();
        let challenge = backend
            .user_action_init(method, &path, &payload)
            .await
            .unwrap();
        let remote_signer = signer_for("Y3JlZC1wMjU2LWE2ZTY4NTlmYWQwNA");
        let first_factor = remote_signer.assert(&challenge).unwrap();
        let token = backend
            .user_action_complete(&challenge.challenge_identifier, first_factor)
            .await
            .unwrap();
        let outcome = backend
            .request_with_user_action(method, &path, &payload, &token)
            .await
            .unwrap();
        assert!(matches!(outcome, Outcome::Done(_)));
        // The delegated TS client orders init fields differently: compare them as JSON.
        let ours = replay.server.recorded();
        let theirs = replay.transcript["exchanges"].as_array().unwrap();
        let o: Value = serde_json::from_slice(&ours[0].body).unwrap();
        let t: Value =
            serde_json::from_str(theirs[0]["request"]["bodyUtf8"].as_str().unwrap()).unwrap();
        assert_eq!(o, t, "{name}: init body");
        compare_assertion(
            name,
            &ours[1].body,
            theirs[1]["request"]["bodyUtf8"].as_str().unwrap(),
        );
        assert_eq!(
            ours[2].body,
            theirs[2]["request"]["bodyUtf8"]
                .as_str()
                .unwrap()
                .as_bytes()
        );
        assert_eq!(
            ours[2].target,
            theirs[2]["request"]["url"].as_str().unwrap()
        );
        assert!(ours[2].header("x-dfns-useraction").is_some());
    }
}

#[tokio::test]
async fn error_answers_become_typed_outcomes() {
    let (replay, result) = replay_request("policy_pending_202").await;
    match result.unwrap() {
        Outcome::PolicyPending(p) => assert_eq!(p.approval_id(), Some("ap-xxxx")),
        other => panic!("expected a pending policy, got {other:?}"),
    }
    replay.check("");

    let (replay, result) = replay_request("error_429_no_retry").await;
    let err = result.unwrap_err();
    let api = err.api().expect("an API error");
    assert_eq!(
        (api.status, api.message.as_str()),
        (429, "Too Many Requests")
    );
    assert_eq!(api.retry_after, Some(std::time::Duration::from_secs(1)));
    replay.check("");

    let (replay, result) = replay_request("error_non_json_500").await;
    let err = result.unwrap_err();
    assert_eq!(
        err.api().map(|a| (a.status, a.message.as_str())),
        Some((500, "upstream exploded"))
    );
    replay.check("");
}

#[tokio::test]
async fn no_signer_and_wrong_credential_fail_before_signing() {
    let replay = Replay::start("error_no_signer").await;
    let client = replay.client(None, true);
    let err = client
        .request(
            Method::Post,
            "/wallets",
            Payload::json(&serde_json::json!({"network": "x"})).unwrap(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Client(ClientError::SignerRequired { .. })),
        "{err}"
    );
    assert!(replay.server.recorded().is_empty(), "nothing may be sent");

    let replay = Replay::start("error_wrong_credential").await;
    let (_, key) = keys().remove(0);
    let client = replay.client(Some(CredentialSigner::new("not-registered", key)), true);
    let err = client
        .request(
            Method::Post,
            "/wallets",
            Payload::json(&serde_json::json!({"network": "x"})).unwrap(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Protocol(ProtocolError::CredentialNotAllowed { .. })
        ),
        "{err}"
    );
    let sent = replay.server.recorded();
    assert_eq!(
        sent.len(),
        1,
        "only the init: no assertion for a credential the server did not list"
    );
    assert_eq!(sent[0].target, "/auth/action/init");
}

#[tokio::test]
async fn base_url_path_prefix_is_kept_in_urls_but_not_signed() {
    let replay = Replay::start("baseurl_with_path_prefix").await;
    let client = DfnsClient::builder()
        .base_url(format!("{}/proxy/dfns/", replay.server.base_url))
        .auth_token(replay.token())
        .signer(signer_for("Y3JlZC1wMjU2LWE2ZTY4NTlmYWQwNA"))
        .build()
        .unwrap();
    let (method, path, payload) = replay.final_request();
    client.request(method, &path, payload).await.unwrap();
    // The TS SDK drops the prefix (`new URL(path, base)`), which breaks proxies; we keep it in
    // the URL, and sign the API path without it, exactly as the SDK does.
    replay.check("/proxy/dfns");
}

/// Runs this file's other tests in a child process that logs every transcript they replay,
/// then checks the transcript files against that log and [`NOT_REPLAYABLE`].
#[test]
fn every_transcript_is_covered() {
    let dir = format!("{}/tests/fixtures/transcripts", env!("CARGO_MANIFEST_DIR"));
    let files: BTreeSet<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| p.file_stem().unwrap().to_str().unwrap().to_owned())
        .collect();
    assert!(!files.is_empty(), "no transcripts found");

    let log = std::env::temp_dir().join(format!(
        "dfns-signer-replayed-transcripts-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&log);
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--skip", "every_transcript_is_covered"])
        .env(REPLAY_LOG, &log)
        .output()
        .unwrap();
    let replayed_log = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    assert!(
        out.status.success(),
        "the replaying tests failed, so coverage cannot be known:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let replayed: BTreeSet<String> = replayed_log.lines().map(str::to_owned).collect();
    let exceptions: BTreeSet<String> = NOT_REPLAYABLE.iter().map(|s| s.to_string()).collect();
    assert_eq!(
        exceptions.len(),
        NOT_REPLAYABLE.len(),
        "NOT_REPLAYABLE repeats a name"
    );

    let not_files: Vec<_> = exceptions.difference(&files).collect();
    assert!(
        not_files.is_empty(),
        "NOT_REPLAYABLE names transcripts that are not files in tests/fixtures/transcripts: {not_files:?}"
    );
    let replayed_anyway: Vec<_> = exceptions.intersection(&replayed).collect();
    assert!(
        replayed_anyway.is_empty(),
        "NOT_REPLAYABLE names transcripts a test replays: {replayed_anyway:?}"
    );
    let covered: BTreeSet<String> = replayed.union(&exceptions).cloned().collect();
    let uncovered: Vec<_> = files.difference(&covered).collect();
    assert!(
        uncovered.is_empty(),
        "transcripts neither replayed by a test nor listed in NOT_REPLAYABLE: {uncovered:?}"
    );
}
