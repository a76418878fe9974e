//! Where the protocol meets the key: a credential id paired with the backend that holds its key.
//!
//! The protocol layer builds what must be signed and encodes the answer, without I/O; the
//! backend signs. [`CredentialSigner::assert`] joins the two for a user-action challenge, and
//! [`attest`] for the registration of a new Key credential. Both call the backend, which may
//! block on a device: async code runs them off its runtime (the `client` feature's
//! `sign_blocking` does, under a deadline).

use std::fmt;
use std::sync::Arc;

use crate::backend::KeyBackend;
use crate::error::{BackendError, Error};
use crate::protocol::{
    client_data, Attestation, ClientDataType, FirstFactor, UnsignedAttestation, UserActionChallenge,
};

/// A registered Key credential: its id and the backend that holds its private key.
#[derive(Clone)]
pub struct CredentialSigner {
    cred_id: String,
    backend: Arc<dyn KeyBackend>,
}

impl CredentialSigner {
    /// Pairs a credential id with the key registered under it.
    pub fn new(cred_id: impl Into<String>, backend: Arc<dyn KeyBackend>) -> Self {
        CredentialSigner {
            cred_id: cred_id.into(),
            backend,
        }
    }

    /// The credential id.
    pub fn credential_id(&self) -> &str {
        &self.cred_id
    }

    /// The key backend.
    pub fn backend(&self) -> &Arc<dyn KeyBackend> {
        &self.backend
    }

    /// Answers a challenge. Fails with
    /// [`ProtocolError::CredentialNotAllowed`](crate::ProtocolError::CredentialNotAllowed) when the challenge
    /// lists allowed credentials and none of its lists (Key, password-protected Key, WebAuthn)
    /// names ours — signing anyway would only earn a rejection, and may cost a PIN entry or a
    /// touch for nothing. A challenge that lists no credential at all (some login flows) is
    /// signed.
    pub fn assert(&self, challenge: &UserActionChallenge) -> Result<FirstFactor, Error> {
        challenge.check_allows(&self.cred_id)?;
        self.sign_challenge(&challenge.challenge)
    }

    /// Signs a bare challenge string with no `allowCredentials` check (delegated flows where
    /// only the challenge travels). Prefer [`CredentialSigner::assert`].
    pub fn sign_challenge(&self, challenge: &str) -> Result<FirstFactor, Error> {
        let data = client_data(ClientDataType::Get, challenge);
        let signature = self.backend.sign(&data)?;
        Ok(FirstFactor::key(&self.cred_id, &data, &signature))
    }
}

/// Has a new `key` attest to a registration `challenge` under credential id `cred_id`: the
/// `credentialInfo` of a Key credential registration, with the intermediate values for people
/// debugging a refusal.
pub fn attest(
    key: &dyn KeyBackend,
    challenge: &str,
    cred_id: &str,
) -> Result<Attestation, BackendError> {
    let unsigned = UnsignedAttestation::new(challenge, &key.public_key().to_pem());
    let signature = key.sign(unsigned.message())?;
    Ok(unsigned.finish(cred_id, &signature))
}

impl fmt::Debug for CredentialSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialSigner")
            .field("cred_id", &self.cred_id)
            .field("backend", &self.backend.describe())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::software::SoftwareKey;
    use crate::backend::Algorithm;
    use crate::error::ProtocolError;

    fn challenge(allow: &str) -> UserActionChallenge {
        UserActionChallenge::from_json(
            format!(
                r#"{{"challenge":"YWJj","challengeIdentifier":"ci","allowCredentials":{allow}}}"#
            )
            .as_bytes(),
        )
        .unwrap()
    }

    #[test]
    fn a_credential_named_in_any_list_signs_and_an_unlisted_one_is_refused() {
        let key = Arc::new(SoftwareKey::generate(Algorithm::Ed25519).unwrap());
        let signer = CredentialSigner::new("cred-1", key);
        for listed in [
            r#"{"key":[{"type":"public-key","id":"cred-1"}]}"#,
            r#"{"key":[],"passwordProtectedKey":[{"type":"public-key","id":"cred-1"}]}"#,
            r#"{"key":[{"type":"public-key","id":"other"}],"webauthn":[{"type":"public-key","id":"cred-1"}]}"#,
            r#"{"key":[],"webauthn":[]}"#,
        ] {
            let ff = signer
                .assert(&challenge(listed))
                .unwrap_or_else(|e| panic!("{listed}: {e}"));
            assert_eq!(ff.credential_assertion.cred_id, "cred-1");
        }
        let err = signer
            .assert(&challenge(
                r#"{"key":[{"type":"public-key","id":"k-2"}],"passwordProtectedKey":[{"type":"public-key","id":"p-3"}]}"#,
            ))
            .unwrap_err();
        match err {
            Error::Protocol(ProtocolError::CredentialNotAllowed { allowed, .. }) => {
                assert_eq!(allowed, vec!["k-2", "p-3"])
            }
            other => panic!("{other:?}"),
        }
    }
}
