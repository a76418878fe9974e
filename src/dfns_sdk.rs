//! Adapter for the official `dfns-sdk-rust` crate (feature `dfns-sdk`).
//!
//! The official Rust SDK defines `UserActionSigner` but ships no implementation. Wrap any of our
//! credentials in [`SdkSigner`] and hand it to the SDK's client: its user actions are then signed by
//! an HSM, a YubiKey or a software key through this crate's backends.
//!
//! ```no_run
//! # use std::sync::Arc;
//! # fn demo(signer: dfns_signer::CredentialSigner) -> Result<(), dfns_sdk_rust::error::Error> {
//! let client = dfns_sdk_rust::client::Client::new(dfns_sdk_rust::client::Options {
//!     base_url: "https://api.dfns.io".into(),
//!     auth_token: std::env::var("DFNS_AUTH_TOKEN").unwrap_or_default(),
//!     signer: Some(Arc::new(dfns_signer::dfns_sdk::SdkSigner::new(signer))),
//!     http: None,
//! })?;
//! # Ok(()) }
//! ```

use async_trait::async_trait;
use dfns_sdk_rust::error::Error as SdkError;
use dfns_sdk_rust::signer::{
    CredentialAssertion, CredentialAssertionData, UserActionChallenge, UserActionSigner,
};

use crate::CredentialSigner;

/// Our credential, speaking the official SDK's signer trait.
#[derive(Debug, Clone)]
pub struct SdkSigner {
    signer: CredentialSigner,
}

impl SdkSigner {
    /// Wraps a credential.
    pub fn new(signer: CredentialSigner) -> Self {
        SdkSigner { signer }
    }
}

#[async_trait]
impl UserActionSigner for SdkSigner {
    async fn sign(&self, challenge: &UserActionChallenge) -> Result<CredentialAssertion, SdkError> {
        // The SDK hands over only the challenge string (no allowCredentials to check against).
        let signer = self.signer.clone();
        let key = signer.backend().clone();
        let challenge = challenge.challenge.clone();
        // Device I/O runs on a blocking thread under the sign deadline, never on the SDK's
        // async workers.
        let first_factor = crate::client::sign_blocking(key.as_ref(), None, move || {
            signer.sign_challenge(&challenge)
        })
        .await
        .map_err(|e| SdkError::Signer(e.to_string()))?;
        let a = first_factor.credential_assertion;
        Ok(CredentialAssertion {
            kind: first_factor.kind,
            credential_assertion: CredentialAssertionData {
                cred_id: a.cred_id,
                client_data: a.client_data,
                signature: a.signature,
            },
        })
    }
}
