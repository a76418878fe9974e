//! Support code shared by the integration tests; each test binary uses only some of it.
#![allow(dead_code)]
pub mod mock_http;
pub mod modules;
#[cfg(feature = "pkcs11")]
pub mod pkcs11_shim;
#[cfg(feature = "simulator")]
pub mod sim;
pub mod skip;
#[cfg(feature = "pkcs11")]
pub mod softhsm;
