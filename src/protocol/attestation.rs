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
#[non_exhaustive]
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

/// What a new key must sign to register as a Key credential: the first half of an
/// [`Attestation`]. Build it with [`UnsignedAttestation::new`], have the key sign
/// [`UnsignedAttestation::message`], then [`UnsignedAttestation::finish`] with the signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsignedAttestation {
    client_data: Vec<u8>,
    client_data_hash: String,
    fingerprint: String,
    public_key_pem: String,
}

impl UnsignedAttestation {
    /// The `key.create` clientData for registration `challenge` and the fingerprint JSON the
    /// new key (whose SPKI PEM is `public_key_pem`) must sign.
    pub fn new(challenge: &str, public_key_pem: &str) -> Self {
        let client_data = client_data(ClientDataType::Create, challenge);
        let client_data_hash = hex::encode(Sha256::digest(&client_data));
        let fingerprint = serde_json::to_string(&Fingerprint {
            client_data_hash: &client_data_hash,
            public_key: public_key_pem,
        })
        .expect("strings serialize");
        UnsignedAttestation {
            client_data,
            client_data_hash,
            fingerprint,
            public_key_pem: public_key_pem.to_owned(),
        }
    }

    /// The bytes the new key signs (the fingerprint JSON), unhashed.
    pub fn message(&self) -> &[u8] {
        self.fingerprint.as_bytes()
    }

    /// The attestation of credential `cred_id`, given the new key's signature over
    /// [`UnsignedAttestation::message`] in Dfns' wire encoding.
    pub fn finish(self, cred_id: &str, signature: &[u8]) -> Attestation {
        let signature_hex = hex::encode(signature);
        let attestation_data = serde_json::to_string(&AttestationData {
            public_key: &self.public_key_pem,
            signature: &signature_hex,
        })
        .expect("strings serialize");
        let credential_info = KeyCredentialInfo {
            cred_id: cred_id.to_owned(),
            client_data: b64url(&self.client_data),
            attestation_data: b64url(attestation_data.as_bytes()),
        };
        Attestation {
            client_data: self.client_data,
            client_data_hash: self.client_data_hash,
            fingerprint: self.fingerprint,
            signature_hex,
            attestation_data,
            credential_info,
        }
    }
}
