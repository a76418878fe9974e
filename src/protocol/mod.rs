//! The Dfns protocol as pure functions and types: no I/O, no clock, no randomness.
//!
//! Everything the wire carries is built here — the user-action init body, `clientData`, the
//! `firstFactor` assertion, Key credential attestations — and checked byte for byte against the
//! vectors captured from the official TypeScript SDK (`tests/conformance.rs`).

pub mod attestation;
pub mod challenge;
pub mod encoding;
mod endpoint_table;
pub mod endpoints;
pub mod error_body;
pub mod payload;
pub mod signer;

pub use attestation::{attest, Attestation, KeyCredentialInfo};
pub use challenge::{
    client_data, ClientDataType, CredentialAssertion, FirstFactor, UserActionChallenge,
    UserActionComplete, UserActionInit, UserActionToken,
};
pub use encoding::default_credential_id;
pub use endpoints::{encode_segment, needs_user_action, Method};
pub use payload::Payload;
pub use signer::CredentialSigner;
