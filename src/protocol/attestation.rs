//! Key credential registration: proving a new key answers a registration challenge.
//!
//! docs/protocol.md §6: `clientData` = `{"type":"key.create","challenge":"…"}`; the new key signs
//! the fingerprint `{"clientDataHash":"<hex sha256(clientData)>","publicKey":"<PEM>"}`; the
//! signature travels as lowercase hex inside `attestationData` =
//! `{"publicKey":"<PEM>","signature":"<hex>"}`, itself base64url-encoded in `credentialInfo`.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::challenge::{client_data, ClientDataType};
use super::encoding::b64url;
use crate::backend::KeyBackend;
use crate::error::BackendError;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Fingerprint<'a> {
    client_data_hash: &'a str,
    public_key: &'a str,
}

#[derive(Serialize)]
struct AttestationData<'a> {
    #[serde(rename = "publicKey")]
    public_key: &'a str,
    signature: &'a str,
}

/// `credentialInfo` of a Key credential registration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct KeyCredentialInfo {
    /// The credential id chosen by the client.
    pub cred_id: String,
    /// base64url of the `key.create` clientData.
    pub client_data: String,
    /// base64url of the attestation JSON.
    pub attestation_data: String,
}

/// The intermediate values of an attestation, for tests and for people debugging a refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attestation {
    /// The `key.create` clientData bytes.
    pub client_data: Vec<u8>,
    /// Lowercase hex SHA-256 of `client_data`.
    pub client_data_hash: String,
    /// The fingerprint JSON the key signed.
    pub fingerprint: String,
    /// Lowercase hex signature over the fingerprint.
    pub signature_hex: String,
    /// The attestation JSON.
    pub attestation_data: String,
    /// What goes into the registration request.
    pub credential_info: KeyCredentialInfo,
}

/// Has `key` attest to a registration `challenge` under credential id `cred_id`.
pub fn attest(
    key: &dyn KeyBackend,
    challenge: &str,
    cred_id: &str,
) -> Result<Attestation, BackendError> {
    let data = client_data(ClientDataType::Create, challenge);
    let client_data_hash = hex::encode(Sha256::digest(&data));
    let pem = key.public_key().to_pem();
    let fingerprint = serde_json::to_string(&Fingerprint {
        client_data_hash: &client_data_hash,
        public_key: &pem,
    })
    .expect("strings serialize");
    let signature_hex = hex::encode(key.sign(fingerprint.as_bytes())?);
    let attestation_data = serde_json::to_string(&AttestationData {
        public_key: &pem,
        signature: &signature_hex,
    })
    .expect("strings serialize");
    let credential_info = KeyCredentialInfo {
        cred_id: cred_id.to_owned(),
        client_data: b64url(&data),
        attestation_data: b64url(attestation_data.as_bytes()),
    };
    Ok(Attestation {
        client_data: data,
        client_data_hash,
        fingerprint,
        signature_hex,
        attestation_data,
        credential_info,
    })
}
