//! Support code shared by the integration tests; each test binary uses only some of it.
#![allow(dead_code)]
pub mod mock_http;
pub mod modules;
#[cfg(feature = "pkcs11")]
pub mod pkcs11_shim;
pub mod process;
#[cfg(all(feature = "cli", feature = "pkcs11"))]
pub mod readme;
#[cfg(all(feature = "serve", feature = "pkcs11", feature = "simulator"))]
pub mod service;
#[cfg(feature = "simulator")]
pub mod sim;
pub mod skip;
#[cfg(feature = "pkcs11")]
pub mod softhsm;

/// The environment variables `dfns-signer` reads its settings from (besides the configuration
/// file in `XDG_CONFIG_HOME`).
pub const SETTINGS_ENV: &[&str] = &[
    "DFNS_API_URL",
    "DFNS_AUTH_TOKEN",
    "DFNS_CRED_ID",
    "DFNS_KEY",
    "DFNS_SIGNER_CONFIG",
    "DFNS_SIGNER_PROFILE",
];

/// Runs the binary with none of this machine's settings: the `DFNS_*` variables removed and
/// the per-user configuration directory pointed at `config_home` (a test sets what it uses).
pub fn without_local_settings<'a>(
    command: &'a mut std::process::Command,
    config_home: &std::path::Path,
) -> &'a mut std::process::Command {
    command.env("XDG_CONFIG_HOME", config_home);
    for name in SETTINGS_ENV {
        command.env_remove(name);
    }
    command
}
