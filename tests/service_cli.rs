//! `dfns-signer serve` as a command: it starts from a configuration file and says where it
//! listens, `serve add-client` makes a secret the service then accepts, `serve check-policy`
//! names the rule that decides, and a configuration others may read is refused.
//!
//! Needs SoftHSM (`DFNS_SIGNER_SKIP_HARDWARE=1` skips outside CI).

#![cfg(all(
    feature = "serve",
    feature = "pkcs11",
    feature = "simulator",
    feature = "cli"
))]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::service::{write_private, Fixture, Options};
use common::softhsm::hsm;
use serde_json::{json, Value};

fn dfns_signer() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_dfns-signer"));
    command.env_remove("DFNS_SIGNER_CONFIG");
    command
}

/// Kills the child when the test ends, even on a failed assertion.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_starts_from_its_file_and_a_client_added_with_add_client_is_served() {
    let Some(h) = hsm() else { return };
    let mut f = Fixture::start(&h, "cli", Options::default()).await;

    // add-client: the secret once, and lines to paste whose hash is the secret's.
    let out = dfns_signer()
        .args(["serve", "add-client", "ops", "--output", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let added: Value = serde_json::from_slice(&out.stdout).unwrap();
    let secret = added["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("dss_"));
    let toml = added["toml"].as_str().unwrap();
    assert!(toml.contains(&format!(
        "secret_sha256 = \"{}\"",
        added["secret_sha256"].as_str().unwrap()
    )));
    let text = dfns_signer()
        .args(["serve", "add-client", "ops"])
        .output()
        .unwrap();
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(
        text.contains("shown once") && text.contains("[[clients]]"),
        "{text}"
    );

    // The pasted lines, with the key and a rule filled in, make a client the service serves.
    let config = f.write_config("cli.toml", None, None);
    let mut file = std::fs::read_to_string(&config).unwrap();
    file.push('\n');
    file.push_str(&toml.replace("keys = []", "keys = [\"hsm\"]").replace(
        "allow = \"POST /wallets\"",
        "allow = \"POST /wallets\"\nbody.network = \"Bitcoin\"",
    ));
    write_private(&config, &file);
    let mut child = dfns_signer()
        .args(["serve", "--config"])
        .arg(&config)
        .args(["--output", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let _running = Running(child);
    let listening: Value = serde_json::from_str(&first).unwrap_or_else(|e| panic!("{e}: {first}"));
    assert_eq!(listening["keys"], json!(["hsm"]));
    assert_eq!(listening["clients"], json!(["payments", "audit", "ops"]));
    assert_eq!(listening["approval_key"], "configured");
    let url = listening["tcp"].as_str().unwrap();
    let response = reqwest::Client::new()
        .post(format!("{url}/wallets"))
        .header("Authorization", f.bearer())
        .header("X-Dfns-Signer-Client", &secret)
        .header("Content-Type", "application/json")
        .body(r#"{"network":"Bitcoin"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_policy_names_the_rule_and_exits_by_the_decision() {
    let Some(h) = hsm() else { return };
    let f = Fixture::start(&h, "check", Options::default()).await;
    let config = f.dir.join("service.toml");
    let check = |args: &[&str]| {
        dfns_signer()
            .args(["serve", "check-policy", "--config"])
            .arg(&config)
            .args(args)
            .output()
            .unwrap()
    };
    let out = check(&["POST", "/wallets", "--data", r#"{"network":"Bitcoin"}"#]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("✓ payments: allowed by rule 1 (POST /wallets)"),
        "{text}"
    );
    assert!(
        text.contains("✗ audit: denied: no rule allows POST /wallets"),
        "{text}"
    );

    let out = check(&[
        "POST",
        "/wallets",
        "--data",
        r#"{"network":"Tron"}"#,
        "--output",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let decided: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(decided["allowed"], false);
    assert_eq!(decided["template"], "/wallets");
    assert_eq!(decided["clients"][0]["client"], "payments");
    assert!(decided["clients"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("the body has \"Tron\""));

    let out = check(&[
        "PUT",
        "/wallets/wa-1/tags",
        "--client",
        "audit",
        "--output",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let decided: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(decided["clients"].as_array().unwrap().len(), 1);
    assert_eq!(
        decided["clients"][0]["rule"],
        "PUT /wallets/{walletId}/tags"
    );

    let out = check(&["POST", "/wallets", "--client", "nobody"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("no client `nobody`")
            && err.contains("what to do: use one of: payments, audit"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configuration_others_may_read_is_refused_with_its_fix() {
    use std::os::unix::fs::PermissionsExt;
    let Some(h) = hsm() else { return };
    let f = Fixture::start(&h, "perm", Options::default()).await;
    let config = f.dir.join("service.toml");
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = dfns_signer()
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(
        lines[0].contains("may be read or written by other users (mode 0644)"),
        "{err}"
    );
    assert!(
        lines[1].contains(&format!("chmod 600 {}", config.display())),
        "{err}"
    );
}

/// The README's walk-through "Use a hardware key from the TypeScript or Python SDK", run as
/// written: a key made in an empty SoftHSM token, `serve add-client`, the configuration, `serve
/// check-policy`, `serve`, then one request through the proxy and one the policy refuses.
#[test]
fn the_readme_service_walkthrough_runs_as_written() {
    if common::skip::should_skip(
        common::skip::SKIP_HARDWARE,
        "the walk-through needs softhsm2 and opensc",
    ) {
        return;
    }
    // The block starts a simulator and the service in the background, stopped however it ends.
    let common::readme::BlockRun {
        stdout,
        stderr,
        success,
    } = common::readme::run_block(
        "## Use a hardware key from the TypeScript or Python SDK",
        "dfns-serve-walkthrough",
        |command| {
            command
                .env("NO_PROXY", "127.0.0.1,localhost")
                .env_remove("SOFTHSM2_CONF");
        },
    );
    assert!(success, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("✓ my-app: allowed by rule 1 (POST /wallets)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("\"network\":\"EthereumSepolia\""),
        "the proxied request created a wallet: {stdout}"
    );
    assert!(
        stdout.contains("\"id\":\"dfns-signer.policy-denied\""),
        "the Bitcoin wallet was refused: {stdout}"
    );
    assert!(
        !stdout.contains("918273") && !stderr.contains("918273"),
        "the PIN leaked"
    );
}

/// `serve --check` opens the keys as `serve` would, checks each once as `/readyz` does, and
/// exits: 0 with every key ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_check_reports_each_key_and_exits_by_readiness() {
    let Some(h) = hsm() else { return };
    let f = Fixture::start(&h, "check-keys", Options::default()).await;
    let config = f.dir.join("service.toml");
    let out = dfns_signer()
        .args(["serve", "--check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "✓ key hsm: ready\n");
    let out = dfns_signer()
        .args(["serve", "--check", "--output", "json", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report,
        json!({"ready": true, "keys": [{"key": "hsm", "ready": true, "detail": null}]})
    );
    // A key that does not open stops the check as it stops the service: exit 4.
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("object=p256", "object=no-such-key");
    let broken = f.dir.join("broken.toml");
    write_private(&broken, &text);
    let out = dfns_signer()
        .args(["serve", "--check", "--config"])
        .arg(&broken)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.starts_with("error: key `hsm`:"), "{err}");
}
