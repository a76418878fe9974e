//! # dfns-signer
//!
//! Sign Dfns user-action challenges with keys that never leave hardware.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod backend;
pub mod error;
pub mod protocol;

pub use backend::{open, Algorithm, KeyBackend, KeyUri, PinSource, PublicKey};
pub use error::{ApiError, BackendError, ClientError, Error, ProtocolError};

pub mod client;
#[cfg(feature = "simulator")]
pub mod simulator;
pub use client::{DfnsClient, DfnsClientBuilder, Outcome, PolicyPending, RawResponse};
pub use protocol::CredentialSigner;

#[cfg(feature = "dfns-sdk")]
pub mod dfns_sdk;
