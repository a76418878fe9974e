//! The one way a test opts out of what a machine lacks: `DFNS_SIGNER_SKIP_HARDWARE=1` (SoftHSM,
//! pcscd and the virtual PIV card), `DFNS_SIGNER_SKIP_NODE=1` (Node.js for the TypeScript SDK)
//! or `DFNS_SIGNER_SKIP_PYTHON=1` (python3 with venv for the Python SDK).
//!
//! A skip is never silent: the test names itself on stderr, written directly so that libtest's
//! output capture (which swallows `print!` and `eprint!` of passing tests) cannot hide it. And
//! it never happens in CI: with `CI` set, a skip variable makes the test fail
//! (`hsm-config/run-tests.sh` refuses to start in that case already; this is the second guard,
//! for `cargo test` run directly).

#![allow(dead_code)]

use std::io::Write;

/// Skips the tests that need SoftHSM, pcscd and vpcd.
pub const SKIP_HARDWARE: &str = "DFNS_SIGNER_SKIP_HARDWARE";
/// Skips the test that runs the official TypeScript SDK under Node.js.
pub const SKIP_NODE: &str = "DFNS_SIGNER_SKIP_NODE";
/// Skips the test that runs the official Python SDK in a venv.
pub const SKIP_PYTHON: &str = "DFNS_SIGNER_SKIP_PYTHON";

/// Whether this run is CI: `CI` is set to anything but the empty string.
pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
}

/// The running test's name: libtest runs each test on a thread named after the test's path.
pub fn current_test() -> String {
    match std::thread::current().name() {
        Some(name) if name != "main" => name.to_owned(),
        _ => "<unnamed test>".to_owned(),
    }
}

/// Whether the running test should skip because the developer set `var=1`, naming the test
/// from its thread (see [`current_test`]). See [`should_skip_test`].
pub fn should_skip(var: &str, why: &str) -> bool {
    should_skip_test(&current_test(), var, why)
}

/// Whether `test` should skip because the developer set `var=1`; if so, says so on stderr
/// (`SKIPPED <test>: <why> (<var>=1)`). `false` when `var` is unset, empty or `0`.
///
/// Panics when `CI` is set and `var` is set to anything (CI runs every test), and when `var`
/// holds anything but `1` or `0` (a typo must not turn into a silent run or a silent skip).
pub fn should_skip_test(test: &str, var: &str, why: &str) -> bool {
    let value = std::env::var_os(var).unwrap_or_default();
    if value.is_empty() {
        return false;
    }
    let value = value.to_string_lossy();
    if in_ci() {
        panic!(
            "{var}={value} is set, and so is CI: CI must run every test, and {test} would be \
             skipped ({why}). Unset {var} in CI and install what the test needs."
        );
    }
    match value.as_ref() {
        "1" => {
            skipped(test, var, why);
            true
        }
        "0" => false,
        other => panic!("{var}={other:?}: set it to 1 to skip {test} ({why}), or leave it unset"),
    }
}

/// Writes `SKIPPED <test>: <why> (<var>=1)` to the process's stderr, past libtest's capture.
pub fn skipped(test: &str, var: &str, why: &str) {
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why} ({var}=1)");
}
