//! The examples, run as a user runs them: every example that needs only the simulator and
//! SoftHSM runs as its own process, and its output is checked (exit status, and the lines that
//! say what it did).
//!
//! `cargo test` builds the examples beside the test binaries (`target/debug/examples/`); a run of
//! this file alone does not, so build them first with the same features:
//! `cargo build --all-features --examples && cargo test --all-features --test examples`.
#![cfg(all(feature = "client", feature = "simulator"))]

mod common;

use std::path::Path;
use std::process::{Command, Output};

use dfns_signer::config::{
    API_URL_ENV, AUTH_TOKEN_ENV, CONFIG_ENV, CRED_ID_ENV, KEY_ENV, PROFILE_ENV,
};

/// A fixture key's `file:` URI.
fn fixture_key(name: &str) -> String {
    format!(
        "file:{}/tests/fixtures/keys/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// The example `name`, built by `cargo test` next to this test binary
/// (`target/debug/deps/examples-…` → `target/debug/examples/name`), as a command with none of
/// the developer's Dfns settings: no `DFNS_*` variable and no per-user configuration file.
fn example(name: &str) -> Command {
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test binary is in target/<profile>/deps/");
    let path = profile_dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    let built = std::fs::metadata(&path).and_then(|m| m.modified());
    let Ok(built) = built else {
        panic!(
            "the example binary {} is missing. `cargo test` builds the examples along with the \
             tests; `cargo test --test examples` alone does not: run `cargo build --examples` \
             with the same --features first",
            path.display()
        );
    };
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("examples/{name}.rs"));
    if let Ok(edited) = std::fs::metadata(&source).and_then(|m| m.modified()) {
        assert!(
            edited <= built,
            "the example binary {} is older than {}: rebuild the examples (`cargo build \
             --examples` with the same --features) before `cargo test --test examples`",
            path.display(),
            source.display()
        );
    }
    let mut command = Command::new(path);
    command.current_dir(env!("CARGO_MANIFEST_DIR"));
    for var in [
        API_URL_ENV,
        AUTH_TOKEN_ENV,
        CRED_ID_ENV,
        KEY_ENV,
        CONFIG_ENV,
        PROFILE_ENV,
    ] {
        command.env_remove(var);
    }
    // No ~/.config/dfns-signer/config.toml of the developer's (the directory has no such file).
    command.env(
        "XDG_CONFIG_HOME",
        std::env::temp_dir().join("dfns-signer-examples-no-config"),
    );
    command
}

/// Runs `command`; panics with its output unless it exits 0. Returns stdout.
fn run(mut command: Command) -> String {
    let out = command.output().expect("start the example");
    check(&command, out)
}

fn check(command: &Command, out: Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{:?} failed ({}):\n--- stdout\n{stdout}--- stderr\n{stderr}",
        command.get_program(),
        out.status
    );
    stdout
}

/// The wallet ids in `stdout`: the words that look like a simulator's wallet id (`wa-…`), with
/// any quotes around them removed.
fn wallet_ids(stdout: &str) -> Vec<String> {
    stdout
        .split_whitespace()
        .map(|w| w.trim_matches(|c: char| c == '"' || c == ',' || c == ':'))
        .filter(|w| w.starts_with("wa-") && w.len() > 10)
        .map(str::to_owned)
        .collect()
}

#[test]
fn quickstart_creates_a_wallet() {
    let stdout = run(example("quickstart"));
    assert!(stdout.starts_with("created wallet \"wa-"), "{stdout}");
    assert_eq!(wallet_ids(&stdout).len(), 1, "{stdout}");
}

#[test]
fn service_account_registers_a_file_key_and_acts_with_it() {
    let mut command = example("service_account");
    command.arg(fixture_key("ed25519.pem"));
    let stdout = run(command);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(
        lines[0].starts_with("service account created; credential "),
        "{stdout}"
    );
    assert!(lines[0].contains("ed25519.pem"), "{stdout}");
    assert!(
        lines[1].starts_with("as the service account: wallet \"wa-"),
        "{stdout}"
    );
}

/// The backend half in the example, the desk half in the `dfns-signer` binary: the wallet is
/// created only if `sign-challenge` signed the challenge the backend wrote.
#[cfg(feature = "cli")]
#[test]
fn delegated_signing_signs_at_the_desk_with_sign_challenge() {
    let mut command = example("delegated_signing");
    command
        .arg(fixture_key("p256.pem"))
        .arg(env!("CARGO_BIN_EXE_dfns-signer"));
    let stdout = run(command);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(
        lines[0].starts_with("backend: challenge for POST /wallets in "),
        "{stdout}"
    );
    assert!(
        lines[1].starts_with("desk: signed with credential "),
        "{stdout}"
    );
    assert!(
        lines[2].starts_with("backend: created wallet wa-")
            && lines[2].ends_with(" (EthereumSepolia), approved at the desk"),
        "{stdout}"
    );
    assert_eq!(wallet_ids(&stdout).len(), 1, "{stdout}");
    // The hand-off files are removed once the request went through.
    let challenge = lines[0].rsplit(' ').next().unwrap();
    assert!(!Path::new(challenge).exists(), "{challenge} left behind");
}

#[test]
fn delegated_signing_says_when_it_cannot_run_the_desk_command() {
    let mut command = example("delegated_signing");
    command
        .arg(fixture_key("p256.pem"))
        .arg("/nonexistent/dfns-signer");
    let out = command.output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot run /nonexistent/dfns-signer"),
        "{stderr}"
    );
}

#[cfg(feature = "dfns-sdk")]
#[test]
fn official_sdk_creates_a_wallet_through_the_sdk() {
    let mut command = example("official_sdk");
    command.arg(fixture_key("p256.pem"));
    let stdout = run(command);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(
        lines[0].starts_with("Created wallet: wa-") && lines[0].ends_with(" (EthereumSepolia)"),
        "{stdout}"
    );
    assert_eq!(lines[1], "Found 1 wallets", "{stdout}");
}

#[cfg(feature = "pkcs11")]
mod softhsm {
    use std::os::unix::fs::PermissionsExt;
    use std::path::{Path, PathBuf};

    use dfns_signer::simulator::Simulator;
    use dfns_signer::PublicKey;

    use super::{check, common, example, run, wallet_ids};

    const PIN: &str = "864213";
    const PIN_ENV: &str = "EXAMPLES_HSM_PIN";

    /// A throw-away token labelled `label` with a P-256 key, in a fresh directory for the test
    /// `name`: the directory and the key's URI (the PIN from `$EXAMPLES_HSM_PIN`, `extra` query
    /// attributes before it). `None` when the developer skips hardware tests.
    fn token(name: &str, label: &str, extra: &str) -> Option<(PathBuf, String)> {
        if common::skip::should_skip(
            common::skip::SKIP_HARDWARE,
            "examples on SoftHSM need softhsm2 and opensc",
        ) {
            return None;
        }
        let dir = std::env::temp_dir().join(format!(
            "dfns-signer-examples-{}-{name}",
            std::process::id()
        ));
        let module = common::modules::softhsm();
        // Removes what an earlier run left in `dir`, then creates the token there.
        common::softhsm::cli_token_with_keys(&dir, label, &module, "p256");
        let uri = format!(
            "pkcs11:token={label};object=p256?module-path={}&{extra}pin-source=env:{PIN_ENV}",
            module.display()
        );
        Some((dir, uri))
    }

    /// The token's P-256 public key, read by `pkcs11-tool` (no login), as PEM.
    fn public_key_pem(dir: &Path, label: &str) -> String {
        let der = dir.join("p256.der");
        let out = std::process::Command::new("pkcs11-tool")
            .arg("--module")
            .arg(common::modules::softhsm())
            .args(["--token-label", label, "--read-object", "--type", "pubkey"])
            .args(["--label", "p256", "-o"])
            .arg(&der)
            .env("SOFTHSM2_CONF", dir.join("softhsm2.conf"))
            .output()
            .expect("run pkcs11-tool");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        PublicKey::from_spki_der(&std::fs::read(der).unwrap())
            .unwrap()
            .to_pem()
    }

    fn private_file(path: &Path, contents: &str) {
        std::fs::write(path, contents).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    #[test]
    fn softhsm_signs_every_user_action_on_the_token() {
        let Some((dir, uri)) = token("softhsm", "examples-softhsm", "") else {
            return;
        };
        let mut command = example("softhsm");
        command
            .arg(&uri)
            .env("SOFTHSM2_CONF", dir.join("softhsm2.conf"))
            .env(PIN_ENV, PIN);
        let stdout = run(command);
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines.len(), 4, "{stdout}");
        assert!(
            lines[0].starts_with("using PKCS#11 key") && lines[0].contains("examples-softhsm"),
            "{stdout}"
        );
        for line in &lines[1..] {
            assert!(
                line.starts_with("wallet \"wa-")
                    && line.ends_with("user action signed on the token"),
                "{stdout}"
            );
        }
        assert!(!stdout.contains(PIN));
        let _ = std::fs::remove_dir_all(dir);
    }

    /// The custody backend reads a profile (base URL, token file, credential id, a PKCS#11 key
    /// with a session pool) and creates its wallets concurrently on a simulator this test runs.
    #[tokio::test(flavor = "multi_thread")]
    async fn custody_backend_reads_its_profile_and_signs_concurrently_on_the_token() {
        let label = "examples-custody";
        let Some((dir, uri)) = token("custody", label, "pool-size=4&") else {
            return;
        };
        let sim = Simulator::builder()
            .root_public_key_pem(public_key_pem(&dir, label))
            .start()
            .await
            .unwrap();
        let token_file = dir.join("token");
        private_file(
            &token_file,
            secrecy::ExposeSecret::expose_secret(sim.auth_token()),
        );
        let config = dir.join("config.toml");
        // Two profiles, so the example must pick the one named by --profile.
        private_file(
            &config,
            &format!(
                "[profiles.other]\nbase_url = \"http://127.0.0.1:9\"\n\n\
                 [profiles.custody]\nbase_url = \"{}\"\nauth_token = \"file:{}\"\n\
                 credential_id = \"{}\"\nkey = \"{uri}\"\ntimeout_seconds = 30\n",
                sim.base_url(),
                token_file.display(),
                sim.credential_id()
            ),
        );

        let mut command = example("custody_backend");
        command
            .arg("--config")
            .arg(&config)
            .args(["--profile", "custody"])
            .env("SOFTHSM2_CONF", dir.join("softhsm2.conf"))
            .env(PIN_ENV, PIN);
        // The simulator answers on this runtime's workers while the example runs.
        let (command, out) = tokio::task::spawn_blocking(move || {
            let out = command.output().expect("start the example");
            (command, out)
        })
        .await
        .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let stdout = check(&command, out);

        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines.len(), 11, "{stdout}");
        assert_eq!(
            lines[0],
            format!("API {} (from profile `custody`)", sim.base_url()),
            "{stdout}"
        );
        assert!(
            lines[1].starts_with(&format!(
                "credential {} signing with PKCS#11 key",
                sim.credential_id()
            )) && lines[1].contains(label),
            "{stdout}"
        );
        let ids = wallet_ids(&stdout);
        assert_eq!(ids.len(), 8, "{stdout}");
        let mut names: Vec<&str> = lines[2..10]
            .iter()
            .map(|l| l.split_whitespace().nth(2).unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            (0..8).map(|i| format!("custody-{i}")).collect::<Vec<_>>(),
            "{stdout}"
        );
        assert_eq!(
            lines[10],
            "created 8 wallets concurrently, each user action signed on the token"
        );
        // Eight user actions were used, each on its own request, and the wallets are there.
        assert_eq!(sim.stats().user_actions_used, 8);
        let root = dfns_signer::DfnsClient::builder()
            .base_url(sim.base_url())
            .auth_token(sim.auth_token().clone())
            .build()
            .unwrap();
        for id in &ids {
            let wallet = root.get_wallet(id).await.unwrap();
            assert_eq!(wallet["network"], "EthereumSepolia");
        }
        // Neither the token nor the PIN shows.
        let auth_token = secrecy::ExposeSecret::expose_secret(sim.auth_token()).to_owned();
        for output in [&stdout, &stderr] {
            assert!(
                !output.contains(&auth_token) && !output.contains(PIN),
                "{output}"
            );
        }
        sim.shutdown().await;
        let _ = std::fs::remove_dir_all(dir);
    }
}
