//! # dfns-signer
//!
//! Sign Dfns user-action challenges with keys that never leave hardware.
//!
//! Dfns asks for a *user action signature* on every sensitive request: the client gets a
//! challenge from `/auth/action/init`, signs it with a registered credential key, trades the
//! signature at `/auth/action` for a single-use token and sends the request with it. This crate
//! makes that signature come from a PKCS#11 HSM, a YubiKey (PIV) or — for development — a
//! software key, and runs the whole flow for you.
//!
//! ```text
//!   DfnsClient ──────────── client: HTTP, auth token, retries, the challenge flow
//!       │
//!   CredentialSigner ────── protocol: clientData, assertions, attestations (pure, no I/O)
//!       │
//!   KeyBackend ──────────── backend: software | pkcs11 (HSM) | piv (YubiKey)
//! ```
//!
//! Answering a challenge (this runs offline):
//!
//! ```
//! use std::sync::Arc;
//! use dfns_signer::backend::software::SoftwareKey;
//! use dfns_signer::protocol::UserActionChallenge;
//! use dfns_signer::{Algorithm, CredentialSigner, KeyBackend};
//!
//! let key = Arc::new(SoftwareKey::generate(Algorithm::EcdsaP256)?);
//! let signer = CredentialSigner::new("cred-1", key.clone());
//! let challenge = UserActionChallenge::from_json(
//!     br#"{"challenge":"YWJj","challengeIdentifier":"ci","allowCredentials":{"key":[{"type":"public-key","id":"cred-1"}]}}"#,
//! )?;
//! let first_factor = signer.assert(&challenge)?;
//! assert_eq!(first_factor.credential_assertion.cred_id, "cred-1");
//! # Ok::<(), dfns_signer::Error>(())
//! ```
//!
//! Calling the API with a key on an HSM:
//!
//! ```no_run
//! # async fn demo() -> Result<(), dfns_signer::Error> {
//! use dfns_signer::{open, CredentialSigner, DfnsClient, KeyUri};
//! use secrecy::SecretString;
//!
//! let key = open(&KeyUri::parse(
//!     "pkcs11:token=custody;object=dfns-1?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=env:HSM_PIN",
//! )?)?;
//! let client = DfnsClient::builder()
//!     .auth_token(SecretString::from(std::env::var("DFNS_AUTH_TOKEN").unwrap_or_default()))
//!     .signer(CredentialSigner::new("cred-…", key))
//!     .build()?;
//! let wallet = client.create_wallet(&serde_json::json!({"network": "EthereumSepolia"})).await?;
//! # Ok(()) }
//! ```
//!
//! Secrets (auth tokens, user action tokens, PINs, private keys) are held in `secrecy` and
//! `zeroize` types and never appear in `Debug` output, logs or errors.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod backend;
#[cfg(feature = "client")]
pub mod client;
pub mod error;
pub mod protocol;

#[cfg(feature = "simulator")]
pub mod simulator;

#[cfg(feature = "dfns-sdk")]
pub mod dfns_sdk;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;

pub use backend::{open, Algorithm, KeyBackend, KeyUri, PinSource, PublicKey};
#[cfg(feature = "client")]
pub use client::{CallOptions, DfnsClient, DfnsClientBuilder, Outcome, PolicyPending, RawResponse};
pub use error::{ApiError, BackendError, ClientError, DeviceFault, Error, ProtocolError};
pub use protocol::CredentialSigner;
