//! A credential: an id that Dfns knows, and the key behind it.
//!
//! [`CredentialSigner::assert`] turns a challenge into the `firstFactor` answer: it refuses a
//! challenge that does not list this credential (as the official TypeScript signer does), builds
//! `clientData`, has the backend sign it and encodes everything as base64url. The backend call may
//! block on a device; the client runs this on a blocking thread.

use std::fmt;
use std::sync::Arc;

use super::challenge::{
    client_data, ClientDataType, CredentialAssertion, FirstFactor, UserActionChallenge,
};
use super::encoding::b64url;
use crate::backend::KeyBackend;
use crate::error::{Error, ProtocolError};

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

    /// Answers a challenge. Fails with [`ProtocolError::CredentialNotAllowed`] when the challenge
    /// lists allowed credentials and none of its lists (Key, password-protected Key, WebAuthn)
    /// names ours — signing anyway would only earn a rejection, and may cost a PIN entry or a
    /// touch for nothing. A challenge that lists no credential at all (some login flows) is
    /// signed.
    pub fn assert(&self, challenge: &UserActionChallenge) -> Result<FirstFactor, Error> {
        challenge.validate()?;
        let lists = &challenge.allow_credentials;
        if !lists.is_empty() && !lists.all_ids().any(|id| id == self.cred_id) {
            return Err(ProtocolError::CredentialNotAllowed {
                cred_id: self.cred_id.clone(),
                allowed: lists.all_ids().map(str::to_owned).collect(),
            }
            .into());
        }
        self.sign_challenge(&challenge.challenge)
    }

    /// Signs a bare challenge string with no `allowCredentials` check (delegated flows where
    /// only the challenge travels). Prefer [`CredentialSigner::assert`].
    pub fn sign_challenge(&self, challenge: &str) -> Result<FirstFactor, Error> {
        let data = client_data(ClientDataType::Get, challenge);
        let signature = self.backend.sign(&data)?;
        Ok(FirstFactor {
            kind: "Key".to_owned(),
            credential_assertion: CredentialAssertion {
                cred_id: self.cred_id.clone(),
                client_data: b64url(&data),
                signature: b64url(&signature),
            },
        })
    }
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
