//! Support code shared by the integration tests; each test binary uses only some of it.
#![allow(dead_code)]
pub mod mock_http;
#[cfg(feature = "pkcs11")]
pub mod softhsm;
