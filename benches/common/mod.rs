//! What the benches share: the canned Dfns answers of the in-memory transport, and a key that
//! costs nothing to sign with.

use std::sync::Arc;

use dfns_signer::{BackendError, CredentialSigner, DfnsClient, KeyBackend, PublicKey};

pub const CRED_ID: &str = "Y3JlZC1lZDI1NTE5LWJlbmNo";

/// A key that answers every message with the same 64 bytes: the flow's cost without the
/// signature's. Only for the in-memory transport, where nothing verifies it.
#[derive(Debug)]
pub struct NullKey {
    public: PublicKey,
}

impl NullKey {
    pub fn new(like: impl KeyBackend) -> Self {
        NullKey {
            public: like.public_key().clone(),
        }
    }
}

impl KeyBackend for NullKey {
    fn public_key(&self) -> &PublicKey {
        &self.public
    }
    fn sign(&self, _message: &[u8]) -> Result<Vec<u8>, BackendError> {
        Ok(vec![7; 64])
    }
    fn describe(&self) -> String {
        "null key (benches)".into()
    }
    fn signs_without_blocking(&self) -> bool {
        true
    }
}

/// The answers of the real API to one signed `POST /wallets`, from the official SDK's transcript
/// `tests/fixtures/transcripts/create_wallet_ed25519.json`: the challenge (allowing [`CRED_ID`]),
/// the user action token, the wallet.
pub struct Answers {
    pub challenge: Vec<u8>,
    pub user_action: Vec<u8>,
    pub wallet: Vec<u8>,
}

impl Answers {
    pub fn from_transcript() -> Self {
        let path = format!(
            "{}/tests/fixtures/transcripts/create_wallet_ed25519.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let t: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let body = |i: usize| t["exchanges"][i]["response"]["body"].clone();
        let mut challenge = body(0);
        challenge["allowCredentials"] =
            serde_json::json!({"key": [{"type": "public-key", "id": CRED_ID}], "webauthn": []});
        Answers {
            challenge: challenge.to_string().into_bytes(),
            user_action: body(1).to_string().into_bytes(),
            wallet: body(2).to_string().into_bytes(),
        }
    }
}

/// A client whose requests never leave the process: the in-memory transport answers init,
/// completion and the request at once, checking nothing (it is the client's cost that is
/// measured, not a server's).
pub fn in_memory_client(signer: CredentialSigner) -> DfnsClient {
    let answers = Arc::new(Answers::from_transcript());
    DfnsClient::builder()
        .auth_token(secrecy::SecretString::from(
            "eyJhbGciOiJFZERTQSJ9.c2VydmljZS1hY2NvdW50LXRva2Vu.c2ln".to_owned(),
        ))
        .signer(signer)
        .in_memory_transport(move |_method, path, _body| match path {
            "/auth/action/init" => (200, answers.challenge.clone()),
            "/auth/action" => (200, answers.user_action.clone()),
            _ => (200, answers.wallet.clone()),
        })
        .build()
        .unwrap()
}
