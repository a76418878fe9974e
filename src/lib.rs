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
//!   DfnsClient ──────────── HTTP, auth token, retries, the challenge flow     (feature `client`)
//!       │
//!   CredentialSigner ────── a credential id and its key: answers challenges
//!       │            ╲
//!       │             protocol: clientData, assertions, attestations (pure, no I/O)
//!   KeyBackend ──────────── software | pkcs11 (HSM) | piv (YubiKey)
//! ```
//!
//! # Three ways to use it
//!
//! ## A custody backend, with a key on an HSM
//!
//! Name the key with a URI, open it once, and give the client a [`CredentialSigner`]. Every
//! request that needs a user action gets a fresh challenge signed by the HSM; the others go out
//! with the auth token alone.
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
//! The same settings can live in a profile of the configuration file
//! (`~/.config/dfns-signer/config.toml`: base URL, where the token is, credential id, key URI;
//! see [`config`]), overridden by `DFNS_API_URL`, `DFNS_AUTH_TOKEN`, `DFNS_CRED_ID`, `DFNS_KEY`:
//!
//! ```no_run
//! let client = dfns_signer::DfnsClient::from_profile(Some("custody"))?;
//! # Ok::<(), dfns_signer::Error>(())
//! ```
//!
//! A backend with its own HTTP stack (or the official Rust SDK, through the `dfns-sdk`
//! feature's `dfns_sdk::SdkSigner`) needs only the key and the
//! [`protocol`]: build with `default-features = false, features = ["pkcs11"]` and no HTTP
//! client, async runtime or server is compiled. [`CredentialSigner::assert`] answers a
//! challenge offline:
//!
//! ```
//! use std::sync::Arc;
//! use dfns_signer::protocol::UserActionChallenge;
//! use dfns_signer::software::SoftwareKey;
//! use dfns_signer::{Algorithm, CredentialSigner};
//!
//! let key = Arc::new(SoftwareKey::generate(Algorithm::EcdsaP256)?);
//! let signer = CredentialSigner::new("cred-1", key);
//! let challenge = UserActionChallenge::from_json(
//!     br#"{"challenge":"YWJj","challengeIdentifier":"ci","allowCredentials":{"key":[{"type":"public-key","id":"cred-1"}]}}"#,
//! )?;
//! let first_factor = signer.assert(&challenge)?;
//! assert_eq!(first_factor.credential_assertion.cred_id, "cred-1");
//! // POST {"challengeIdentifier": "ci", "firstFactor": first_factor} to /auth/action.
//! # Ok::<(), dfns_signer::Error>(())
//! ```
//!
//! ## CI: SoftHSM and the local simulator
//!
//! The `simulator` feature is a Dfns API in-process ([`simulator::Simulator`]): it checks every
//! user action and signature with its own code, so a test run against it exercises the whole
//! flow offline. Point the same URI at a SoftHSM token (`pkcs11:token=ci;object=k?module-path=…`)
//! and the test signs on a real PKCS#11 module; here a software key keeps the example
//! self-contained:
//!
//! ```
//! # #[cfg(feature = "simulator")]
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use std::sync::Arc;
//! use dfns_signer::simulator::Simulator;
//! use dfns_signer::software::SoftwareKey;
//! use dfns_signer::{Algorithm, CredentialSigner, DfnsClient, KeyBackend};
//!
//! let key = Arc::new(SoftwareKey::generate(Algorithm::Ed25519)?);
//! let sim = Simulator::builder().root_public_key_pem(key.public_key().to_pem()).start().await?;
//! let client = DfnsClient::builder()
//!     .base_url(sim.base_url())
//!     .auth_token(sim.auth_token().clone())
//!     .signer(CredentialSigner::new(sim.credential_id(), key))
//!     .build()?;
//! let wallet = client.create_wallet(&serde_json::json!({"network": "EthereumSepolia"})).await?.done()?;
//! assert_eq!(sim.stats().user_actions_used, 1);
//! # let _ = wallet;
//! sim.shutdown().await;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! ## At a desk, with a YubiKey
//!
//! A `piv:` URI names a slot on a YubiKey; the PIN comes from a prompt, the environment or a
//! file (never the URI), a refused PIN is never presented twice by the process, and the last try
//! is kept unless `allow-last-pin-try=true`. Slots that want a touch call a notifier, so a
//! person knows the key is waiting ([`piv::PivKeyBuilder`]); [`piv::verify_attestation`] checks
//! that the key was made on the device. The `dfns-signer` command line (`sign-challenge`,
//! `call`) is built on the same calls.
//!
//! ```no_run
//! use dfns_signer::{open, KeyUri};
//! let key = open(&KeyUri::parse("piv:slot=9a?serial=12345678&pin-source=prompt")?)?;
//! # Ok::<(), dfns_signer::Error>(())
//! ```
//!
//! # Where things are
//!
//! Each public type has one path:
//!
//! | path | what |
//! |---|---|
//! | crate root | what crosses layers: [`KeyBackend`], [`KeyUri`] and [`open`], [`PublicKey`], [`CredentialSigner`], the errors ([`Error`] and one enum per layer), and the client ([`DfnsClient`], [`RetryPolicy`], [`sign_blocking`]…; feature `client`) |
//! | [`protocol`] | the wire types and pure functions: challenges, `clientData`, answers, attestations, the endpoint table |
//! | [`software`], [`pkcs11`], [`piv`] | one module per key backend (features `pkcs11`, `piv`) |
//! | [`webhooks`] | checking the webhook deliveries Dfns signs: [`webhooks::verify`] |
//! | [`config`] | the configuration file's profiles, and settings from flags, environment and profile: [`DfnsClient::from_profile`] (feature `client`) |
//! | [`simulator`] | the local Dfns API (feature `simulator`) |
//! | [`audit`] | the hash-chained audit log: one line per approval, written before it leaves; [`audit::verify`] (feature `client`) |
//! | `service` | the signing service behind `dfns-signer serve`: configuration, policy, approvals, listeners (feature `serve`) |
//! | [`bench`](mod@bench) | load generation: signed `POST /wallets` at a chosen concurrency, with requests/s, p50/p99 latency and CPU per request (feature `client`) |
//! | `dfns_sdk` | the adapter for the official `dfns-sdk-rust` (feature `dfns-sdk`) |
//!
//! # Features
//!
//! | feature | default | brings |
//! |---|---|---|
//! | `client` | via `cli` | [`DfnsClient`]: its own HTTP/1.1 client on `tokio` and rustls; `reqwest` with a proxy |
//! | `pkcs11` | yes | [`pkcs11`]: HSMs, network HSMs, SoftHSM, YubiKey through ykcs11 (`cryptoki`) |
//! | `piv` | yes | [`piv`]: YubiKey PIV over PC/SC (`yubikey`) |
//! | `simulator` | yes | [`simulator`] (`tokio`, `hyper`; neither our client nor a backend) |
//! | `cli` | yes | the `dfns-signer` binary; implies `client` |
//! | `serve` | yes | `service`: the signing service (`hyper` server, `tokio-rustls`, `prometheus-client`); implies `client` |
//! | `dfns-sdk` | no | `dfns_sdk::SdkSigner` for `dfns-sdk-rust`; implies `client` |
//!
//! # Errors
//!
//! Every call returns [`Error`], which says which layer failed: [`BackendError`] (keys and
//! devices; a device's own fault is kept as its `source`), [`ProtocolError`] (what was received
//! or asked for is malformed), [`ClientError`] (HTTP, deadlines, configuration) with
//! [`ApiError`] (what Dfns answered), and [`config::ConfigError`] (the configuration file, a
//! profile, a token source; its `fix()` says what to do). Each message says what happened and
//! what to do; all public error enums are `#[non_exhaustive]`.
//!
//! # Secrets
//!
//! Auth tokens, user-action tokens, PINs and private keys are held in `secrecy` and `zeroize`
//! types and never appear in `Debug` output, logs or errors. A wrong PIN is presented once per
//! process; a request that may have run is never sent again unless that is harmless (see
//! [`RetryPolicy`]).
//!
//! # Types from other crates
//!
//! Deliberately part of the API: `secrecy::SecretString` (every secret), `serde_json::Value`
//! (Dfns entities, whose fields the official SDKs' types track), `cryptoki`'s context from
//! [`pkcs11::shared_context`] (for code that shares a PKCS#11 module with us), and the
//! `signature` crate's `Signer`/`Keypair` on [`software::SoftwareKey`]. No other dependency's
//! type appears in a public signature; `tests/public-api.txt` lists the whole surface and CI fails
//! when it changes unreviewed.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

// Layer modules are private: every public type has one path, chosen here (the crate root for what
// crosses layers, `protocol` for wire types, one module per key backend). `tests/public_api.rs`
// fails when this surface changes without its snapshot.
#[cfg(feature = "client")]
pub mod audit;
mod backend;
#[cfg(feature = "client")]
pub mod bench;
#[cfg(feature = "client")]
mod client;
#[cfg(feature = "client")]
pub mod config;
mod error;
pub mod protocol;
mod signer;
pub mod webhooks;

#[cfg(feature = "serve")]
pub mod service;
#[cfg(feature = "simulator")]
pub mod simulator;

#[cfg(feature = "dfns-sdk")]
pub mod dfns_sdk;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;

#[cfg(feature = "piv")]
pub use backend::piv;
#[cfg(feature = "pkcs11")]
pub use backend::pkcs11;
pub use backend::software;
pub use backend::{
    open, Algorithm, KeyBackend, KeyUri, PinSource, PublicKey, SessionPool, SignatureVerifier,
    UriAttributes,
};
#[cfg(feature = "client")]
pub use client::{
    sign_blocking, Backoff, CallOptions, CreateServiceAccount, CreatedServiceAccount,
    CredentialChallenge, DfnsClient, DfnsClientBuilder, ListWallets, NoRetry, Outcome,
    PolicyPending, RawResponse, RetryPolicy, DEFAULT_BASE_URL, DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_SIGN_TIMEOUT, DEFAULT_TIMEOUT, DEFAULT_USER_SIGN_TIMEOUT,
};
pub use error::{ApiError, BackendError, ClientError, DeviceFault, Error, ProtocolError};
pub use signer::{attest, CredentialSigner};
