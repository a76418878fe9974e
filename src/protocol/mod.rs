//! The Dfns protocol as pure functions and types: no I/O, no clock, no randomness.
//!
//! Everything the wire carries is built here — the user-action init body, `clientData`, the
//! `firstFactor` assertion, Key credential attestations, the endpoint table that says which
//! requests need a user action — and checked byte for byte against the vectors captured from the
//! official TypeScript SDK (`tests/conformance.rs`). Signing itself is not here: the crate root's
//! [`CredentialSigner`](crate::CredentialSigner) joins these types with a key.
//!
//! A custody backend with its own HTTP stack builds on this module alone:
//!
//! ```
//! use dfns_signer::protocol::{client_data, ClientDataType, FirstFactor, UserActionChallenge};
//!
//! let challenge = UserActionChallenge::from_json(
//!     br#"{"challenge":"YWJj","challengeIdentifier":"ci","allowCredentials":{"key":[{"type":"public-key","id":"cred-1"}]}}"#,
//! )?;
//! challenge.check_allows("cred-1")?;
//! let message = client_data(ClientDataType::Get, &challenge.challenge);
//! assert_eq!(message, br#"{"type":"key.get","challenge":"YWJj"}"#);
//! let signature = [0x30, 0x06]; // what your key returned for `message`
//! let answer = FirstFactor::key("cred-1", &message, &signature);
//! assert_eq!(answer.credential_assertion.signature, "MAY");
//! # Ok::<(), dfns_signer::ProtocolError>(())
//! ```

mod attestation;
mod challenge;
mod encoding;
mod endpoint_table;
mod endpoints;
mod error_body;
mod payload;

pub use attestation::{Attestation, KeyCredentialInfo, UnsignedAttestation};
pub use challenge::{
    client_data, AllowCredentials, AllowedCredential, ClientDataType, CredentialAssertion,
    FirstFactor, UserActionChallenge, UserActionComplete, UserActionInit, UserActionToken,
};
pub use encoding::{b64url, b64url_decode, default_credential_id};
pub use endpoints::{
    encode_segment, lookup, needs_user_action, validate_path, EndpointInfo, Method,
};
pub use error_body::parse_error_body;
pub use payload::Payload;

#[cfg(feature = "client")]
pub(crate) use challenge::{complete_body, init_body};
#[cfg(feature = "client")]
pub(crate) use endpoints::strip_query;
