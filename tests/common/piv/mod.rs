//! Test support for the PIV backend: a virtual YubiKey PIV card ([`card`]), a private pcscd to
//! plug it into ([`harness`]), and a test attestation CA ([`attestation`]); plus the shared
//! [`skip`] helper and module finder ([`modules`]) from tests/common.
//!
//! Use from any integration test built with the `piv` feature:
//!
//! ```ignore
//! #[path = "common/piv/mod.rs"]
//! mod piv_support;
//! let Some(pcscd) = piv_support::harness::pcscd_or_skip("my_test") else { return };
//! let card = pcscd.insert_card(piv_support::card::CardConfig::new(12345678));
//! // …open `piv:slot=9a?serial=12345678&pin-source=env:PIV_PIN` as usual…
//! ```
//!
//! The module must be named `piv_support` (the card refers to `crate::piv_support::attestation`).
#![allow(dead_code)]

pub mod attestation;
pub mod card;
pub mod harness;
// Shared with the other test binaries (which reach them as `common::…`); included here too, as
// the binaries that use `piv_support` do not declare `mod common`.
#[path = "../modules.rs"]
pub mod modules;
#[path = "../skip.rs"]
pub mod skip;
