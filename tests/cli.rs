//! The `dfns-signer` binary, run as a user runs it.
#![cfg(feature = "cli")]

mod common;

use std::process::Command;

use common::mock_http::{MockServer, Scripted};
use serde_json::{json, Value};

/// The binary, with none of this machine's settings (configuration file, `DFNS_*` variables):
/// a test sets what it uses.
fn bin() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_dfns-signer"));
    common::without_local_settings(&mut command, "/nonexistent/dfns-signer-tests".as_ref());
    command
}

fn fixture(path: &str) -> String {
    format!("{}/tests/fixtures/{path}", env!("CARGO_MANIFEST_DIR"))
}

fn vectors() -> Value {
    serde_json::from_str(include_str!("fixtures/fixed_vectors.json")).unwrap()
}

/// Runs `sign-challenge` with `stdin`; returns (status code, stdout, stderr).
fn sign_challenge(args: &[&str], stdin: &str) -> (i32, String, String) {
    let out = common::process::output_with_stdin(
        bin().arg("sign-challenge").args(args),
        stdin.as_bytes(),
    );
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn sign_challenge_prints_the_official_first_factor() {
    let v = vectors();
    let cred = v["credId"].as_str().unwrap();
    let init = json!({"challenge": v["challenge"], "challengeIdentifier": "ci",
                      "allowCredentials": {"key": [{"type": "public-key", "id": cred}], "webauthn": []}});
    let key = format!("file:{}", fixture("keys/ed25519.pem"));
    let (code, out, err) = sign_challenge(
        &["--key", &key, "--cred-id", cred, "--output", "json"],
        &init.to_string(),
    );
    assert_eq!(code, 0, "{err}");
    let expected = v["assertions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["keyKind"] == "ed25519")
        .unwrap();
    assert_eq!(
        out.trim_end(),
        expected["firstFactorJson"].as_str().unwrap()
    );
}

#[test]
fn sign_challenge_errors_are_two_clear_lines_with_their_exit_status() {
    let key = format!("file:{}", fixture("keys/p256.pem"));
    // (arguments, stdin, text the error must contain, exit status: 2 usage, 5 refused by what
    // Dfns sent)
    let cases: Vec<(Vec<String>, &str, &str, i32)> = vec![
        (
            vec!["--key".into(), key.clone(), "--cred-id".into(), "c".into()],
            "not json",
            "JSON answer of POST /auth/action/init",
            2,
        ),
        (
            vec![
                "--key".into(),
                key.clone(),
                "--cred-id".into(),
                "mine".into(),
            ],
            r#"{"challenge":"YWJj","challengeIdentifier":"x","allowCredentials":{"key":[{"type":"public-key","id":"theirs"}]}}"#,
            "not allowed to sign",
            5,
        ),
        (
            vec![
                "--key".into(),
                "file:/nonexistent.pem".into(),
                "--cred-id".into(),
                "c".into(),
            ],
            "{}",
            "/nonexistent.pem",
            2,
        ),
        (
            vec![
                "--key".into(),
                "pkcs11:token=x?pin-value=1234".into(),
                "--cred-id".into(),
                "c".into(),
            ],
            "{}",
            "pin-source",
            2,
        ),
        (
            // The PIN given as the source by mistake.
            vec![
                "--key".into(),
                "piv:slot=9a?pin-source=1234".into(),
                "--cred-id".into(),
                "c".into(),
            ],
            "{}",
            "pin-source",
            2,
        ),
        (
            vec!["--key".into(), key, "--output".into(), "json".into()],
            "{}",
            "--cred-id",
            2,
        ),
    ];
    for (args, stdin, expected, status) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, out, err) = sign_challenge(&args, stdin);
        assert_eq!(code, status, "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?}: nothing on stdout on failure");
        let lines: Vec<&str> = err.trim_end().lines().collect();
        assert_eq!(lines.len(), 2, "{args:?}: two lines: {err}");
        assert!(lines[0].starts_with("error: "), "{err}");
        assert!(lines[1].starts_with("  what to do: "), "{err}");
        assert!(err.contains(expected), "{args:?}: {err}");
        assert!(!err.contains("1234"), "a PIN never reaches an error");
    }
}

fn ok(body: Value) -> Scripted {
    Scripted {
        status: 200,
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.to_string().into_bytes(),
    }
}

#[tokio::test]
async fn call_signs_sends_and_prints() {
    let server = MockServer::start(vec![
        ok(json!({"challenge": "YWJj", "challengeIdentifier": "ci",
                  "allowCredentials": {"key": [{"type": "public-key", "id": "cred-cli"}], "webauthn": []}})),
        ok(json!({"userAction": "ua-cli"})),
        ok(json!({"id": "wa-cli", "network": "Bitcoin"})),
        Scripted {
            status: 202,
            headers: vec![("content-type".into(), "application/json".into())],
            body: br#"{"id":"ap-1","status":"Pending"}"#.to_vec(),
        },
    ])
    .await;
    let data_file = std::env::temp_dir().join(format!("dfns-cli-body-{}.json", std::process::id()));
    std::fs::write(&data_file, "{\"network\":\"Bitcoin\"}\n").unwrap();
    let key = format!("file:{}", fixture("keys/secp256k1.pem"));
    let out = tokio::process::Command::from(bin())
        .args([
            "call",
            "POST",
            "/wallets",
            "--data",
            &format!("@{}", data_file.display()),
        ])
        .args(["--key", &key, "--cred-id", "cred-cli", "--output", "json"])
        .env("DFNS_API_URL", &server.base_url)
        .env("DFNS_AUTH_TOKEN", "tok-cli-secret")
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        r#"{"id":"wa-cli","network":"Bitcoin"}"#
    );
    let sent = server.recorded();
    assert_eq!(sent.len(), 3, "init, assertion, the call");
    check_first_factor(
        &sent[1],
        "ci",
        "YWJj",
        "cred-cli",
        &fixture("keys/secp256k1.pub.pem"),
    );
    assert_eq!(
        sent[2].body, br#"{"network":"Bitcoin"}"#,
        "file body sent byte for byte, trailing newline trimmed"
    );
    assert_eq!(
        sent[2].header("authorization"),
        Some("Bearer tok-cli-secret")
    );

    // A GET needs no key; a 202 exits with status 3.
    let out = tokio::process::Command::from(bin())
        .args([
            "call",
            "GET",
            "/wallets/wa-cli",
            "--base-url",
            &server.base_url,
        ])
        .env("DFNS_AUTH_TOKEN", "tok-cli-secret")
        .output()
        .await
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("ap-1"));
}

/// Checks the `/auth/action` request the binary sent: it answers `identifier`, its `clientData`
/// is exactly the `key.get` JSON of the `challenge` the server issued, and its signature over
/// those bytes verifies under the secp256k1 public key in `public_pem` (read with `k256`, not
/// with our own code).
fn check_first_factor(
    sent: &common::mock_http::Recorded,
    identifier: &str,
    challenge: &str,
    cred_id: &str,
    public_pem: &str,
) {
    use base64::Engine;
    use k256::ecdsa::signature::Verifier;
    use k256::pkcs8::DecodePublicKey;

    assert_eq!(
        (sent.method.as_str(), sent.target.as_str()),
        ("POST", "/auth/action")
    );
    let body: Value = serde_json::from_slice(&sent.body).unwrap();
    assert_eq!(body["challengeIdentifier"], identifier, "{body}");
    let factor = &body["firstFactor"];
    assert_eq!(factor["kind"], "Key", "{body}");
    let assertion = &factor["credentialAssertion"];
    assert_eq!(assertion["credId"], cred_id, "{body}");
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let client_data = b64
        .decode(assertion["clientData"].as_str().unwrap())
        .unwrap();
    assert_eq!(
        String::from_utf8(client_data.clone()).unwrap(),
        format!(r#"{{"type":"key.get","challenge":"{challenge}"}}"#),
        "clientData"
    );
    let signature = b64
        .decode(assertion["signature"].as_str().unwrap())
        .unwrap();
    let key = k256::ecdsa::VerifyingKey::from_public_key_pem(
        &std::fs::read_to_string(public_pem).unwrap(),
    )
    .unwrap();
    // Dfns takes either S; k256 alone insists on the low one.
    let signature = k256::ecdsa::Signature::from_der(&signature)
        .expect("a DER ECDSA signature")
        .normalize_s();
    key.verify(&client_data, &signature)
        .expect("the assertion's signature verifies over clientData");
}

#[test]
fn call_refuses_what_it_cannot_do_safely() {
    let run = |args: &[&str], token: Option<&str>| {
        let mut c = bin();
        c.arg("call")
            .args(args)
            .env_remove("DFNS_AUTH_TOKEN")
            .env_remove("DFNS_API_URL");
        if let Some(t) = token {
            c.env("DFNS_AUTH_TOKEN", t);
        }
        let out = c.output().unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    };
    // Usage and configuration mistakes: exit status 2.
    let (code, err) = run(&["GET", "/wallets"], None);
    assert_eq!(code, 2);
    assert!(err.contains("DFNS_AUTH_TOKEN"), "{err}");
    let (code, err) = run(
        &[
            "POST",
            "/wallets",
            "--data",
            "{}",
            "--base-url",
            "http://127.0.0.1:9",
        ],
        Some("t0ken-value"),
    );
    assert_eq!(code, 2);
    assert!(
        err.contains("needs a user action") && err.contains("--key URI"),
        "{err}"
    );
    let (code, err) = run(
        &["GET", "/wallets", "--base-url", "http://dfns.example"],
        Some("t0ken-value"),
    );
    assert_eq!(code, 2);
    assert!(err.contains("https"), "{err}");
    assert!(!err.contains("t0ken-value"));
    let (code, err) = run(&["POST", "/wallets", "--data", "{not json"], Some("t"));
    assert_eq!(code, 2);
    assert!(err.contains("--data"), "{err}");
}

/// A request the Dfns API refuses exits with status 5, its two lines naming the refusal and
/// what to check.
#[tokio::test]
async fn call_exits_5_when_the_api_refuses() {
    let server = MockServer::start(vec![Scripted {
        status: 403,
        headers: vec![("content-type".into(), "application/json".into())],
        body: br#"{"error":{"status":403,"message":"Forbidden"}}"#.to_vec(),
    }])
    .await;
    let base = server.base_url.clone();
    let out = tokio::task::spawn_blocking(move || {
        bin()
            .args(["call", "GET", "/wallets", "--base-url", &base])
            .env("DFNS_AUTH_TOKEN", "t0ken")
            .env_remove("DFNS_API_URL")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{err}");
    let lines: Vec<&str> = err.trim_end().lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(
        lines[0].contains("403") && lines[0].contains("Forbidden"),
        "{err}"
    );
    assert!(lines[1].contains("Dfns refused"), "{err}");
}

#[cfg(feature = "simulator")]
#[test]
fn demo_runs_the_whole_flow() {
    let out = bin().arg("demo").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in [
        "[1/6] started the local Dfns API simulator",
        "[3/6] registered it",
        "[4/6] created wallet wa-",
        "sign ",
        "[5/6] generated signature",
        "refused (400 user action has already been used)",
        "DFNS_API_URL=https://api.dfns.io",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
    let bad = bin()
        .args(["demo", "--algorithm", "p384"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown --algorithm"));
}

#[cfg(all(feature = "simulator", unix))]
#[tokio::test]
async fn simulator_command_prints_one_line_serves_and_stops_on_sigterm() {
    use tokio::io::AsyncBufReadExt;

    let mut child = tokio::process::Command::from(bin())
        .args([
            "simulator",
            "--listen",
            "127.0.0.1:0",
            "--root-public-key",
            &fixture("keys/p256.pub.pem"),
        ])
        .args([
            "--root-cred-id",
            "root-cred",
            "--policy-pending",
            "POST /wallets",
        ])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(std::time::Duration::from_secs(20), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let info: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(info["credId"], "root-cred");
    let base = info["baseUrl"].as_str().unwrap();

    // The fixture key is the root credential: `call` signs with it; the policy rule answers 202.
    let out = tokio::process::Command::from(bin())
        .args([
            "call",
            "POST",
            "/wallets",
            "--data",
            r#"{"network":"Bitcoin"}"#,
            "--base-url",
            base,
        ])
        .args([
            "--key",
            &format!("file:{}", fixture("keys/p256.pem")),
            "--cred-id",
            "root-cred",
        ])
        .env("DFNS_AUTH_TOKEN", info["authToken"].as_str().unwrap())
        .output()
        .await
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let pid = child.id().unwrap() as i32;
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    let status = tokio::time::timeout(std::time::Duration::from_secs(10), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
    assert!(
        lines.next_line().await.unwrap().is_none(),
        "exactly one line on stdout"
    );
}

/// The README's demo path: a key generated on a SoftHSM token (the same steps as
/// `hsm-config/run-demo.sh`).
#[cfg(all(feature = "simulator", feature = "pkcs11"))]
#[test]
fn demo_generates_its_key_on_softhsm() {
    if common::skip::should_skip(
        common::skip::SKIP_HARDWARE,
        "the demo on SoftHSM needs softhsm2 and opensc",
    ) {
        return;
    }
    let module = common::modules::softhsm();
    let dir = std::env::temp_dir().join(format!("dfns-cli-demo-{}", std::process::id()));
    common::softhsm::cli_token(&dir, "cli-demo", &module);
    let out = bin()
        .args(["demo", "--algorithm", "ed25519", "--pkcs11"])
        .arg(format!(
            "pkcs11:token=cli-demo?module-path={}&pin-source=env:CLI_DEMO_PIN",
            module.display()
        ))
        .env("SOFTHSM2_CONF", dir.join("softhsm2.conf"))
        .env("CLI_DEMO_PIN", "864213")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("ed25519 key `dfns-demo-"), "{stdout}");
    assert!(
        stdout.contains("generated on the token and never extractable: true"),
        "{stdout}"
    );
    assert!(
        stdout.contains("[6/6] replayed that user action: refused"),
        "{stdout}"
    );
    assert!(!stdout.contains("864213") && !String::from_utf8_lossy(&out.stderr).contains("864213"));
}

/// `webhook verify`: exit 0 and the event for an authentic, fresh delivery; exit 1 with the
/// reason (and no secret) for a changed body, a stale one, or a secret given inline.
#[test]
fn webhook_verify_accepts_authentic_deliveries_and_refuses_changed_ones() {
    let secret = "whsec_cli_test_secret";
    let body = r#"{"id":"we-1","kind":"wallet.created","data":{},"timestampSent":1700000000}"#;
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let header = format!(
        "sha256={}",
        hex::encode(ring::hmac::sign(&key, body.as_bytes()).as_ref())
    );
    let dir = std::env::temp_dir().join(format!("dfns-signer-cli-webhook-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let run = |body: &str, now: &str, extra: &[&str]| {
        let path = dir.join("body.json");
        std::fs::write(&path, body).unwrap();
        let out = bin()
            .args(["webhook", "verify", "--signature", &header, "--body"])
            .arg(&path)
            .args(["--now", now, "--output", "json"])
            .args(extra)
            .env("DFNS_WEBHOOK_SECRET", secret)
            .output()
            .unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    };
    let (code, out, err) = run(body, "1700000010", &[]);
    assert_eq!(code, 0, "{err}");
    let printed: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(printed["kind"], "wallet.created");
    assert_eq!(printed["age_seconds"], 10);

    let (code, _, err) = run(&body.replace("we-1", "we-2"), "1700000010", &[]);
    assert_eq!(code, 1);
    assert!(err.contains("does not match the body"), "{err}");
    let (code, _, err) = run(body, "1700001000", &[]);
    assert_eq!(code, 1);
    assert!(err.contains("possible replay"), "{err}");
    let (code, _, err) = run(body, "1700000010", &["--secret-source", secret]);
    assert_eq!(code, 2, "a secret given inline is a usage error");
    assert!(
        !err.contains(secret),
        "the secret must not be echoed: {err}"
    );
    for (_, _, err) in [run(body, "1700000010", &[]), run(body, "1700001000", &[])] {
        assert!(!err.contains(secret));
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `keys generate` and `keys show` on a SoftHSM token: the key is made on the token, the same
/// URI then opens it, and the token vouches it never left; a second key with the label is
/// refused, and YubiKey-only flags are a usage error.
#[cfg(all(feature = "pkcs11", feature = "piv"))]
#[test]
fn keys_generate_and_show_on_a_pkcs11_token() {
    if common::skip::should_skip(
        common::skip::SKIP_HARDWARE,
        "keys generate on SoftHSM needs softhsm2 and opensc",
    ) {
        return;
    }
    let module = common::modules::softhsm();
    let dir = std::env::temp_dir().join(format!("dfns-cli-keys-{}", std::process::id()));
    common::softhsm::cli_token(&dir, "cli-keys", &module);
    let uri = format!(
        "pkcs11:token=cli-keys;object=desk-1;id=%42?module-path={}&pin-source=env:CLI_KEYS_PIN",
        module.display()
    );
    let run = |args: &[&str]| {
        let out = bin()
            .args(args)
            .env("SOFTHSM2_CONF", dir.join("softhsm2.conf"))
            .env("CLI_KEYS_PIN", "864213")
            .output()
            .unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    };
    let (code, out, err) = run(&[
        "keys",
        "generate",
        "--key",
        &uri,
        "--algorithm",
        "secp256k1",
        "--output",
        "json",
    ]);
    assert_eq!(code, 0, "{err}");
    let generated: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(generated["algorithm"], "secp256k1");
    let (code, out, err) = run(&["keys", "show", "--key", &uri, "--output", "json"]);
    assert_eq!(code, 0, "{err}");
    let shown: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shown["public_key"], generated["public_key"]);
    assert_eq!(shown["provenance"]["never_left_the_token"], true, "{shown}");
    let (code, _, err) = run(&["keys", "generate", "--key", &uri]);
    assert_ne!(code, 0);
    assert!(err.contains("already exists"), "{err}");
    // `keys list --module` finds it without a login, with a URI that opens it.
    let module_path = module.display().to_string();
    let (code, out, err) = run(&["keys", "list", "--module", &module_path, "--output", "json"]);
    assert_eq!(code, 0, "{err}");
    let listed: Value = serde_json::from_str(&out).unwrap();
    let token = listed["pkcs11_tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["label"] == "cli-keys")
        .expect("the token is listed");
    let key = &token["keys"][0];
    assert_eq!(
        (
            key["label"].as_str(),
            key["id"].as_str(),
            key["type"].as_str()
        ),
        (Some("desk-1"), Some("42"), Some("ec"))
    );
    let listed_uri = format!(
        "{}&pin-source=env:CLI_KEYS_PIN",
        key["key"].as_str().unwrap()
    );
    let (code, out, err) = run(&["keys", "show", "--key", &listed_uri, "--output", "json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["public_key"],
        generated["public_key"]
    );
    let (code, _, err) = run(&["keys", "generate", "--key", &uri, "--touch-policy", "never"]);
    assert_eq!(code, 2, "{err}");
    assert!(!err.contains("864213") && !out.contains("864213"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every command's `--help` shows an example, one command per line as typed (not re-wrapped
/// into one paragraph, which would break a `\` continuation when pasted).
#[test]
fn every_command_help_has_an_example_on_its_own_lines() {
    #[allow(unused_mut)] // extended below with the optional features' commands
    let mut commands: Vec<Vec<&str>> = vec![
        vec!["sign-challenge"],
        vec!["call"],
        vec!["credential", "register"],
        vec!["credential", "code"],
        vec!["credential", "list"],
        vec!["credential", "deactivate"],
        vec!["service-account", "create"],
        vec!["login"],
        vec!["doctor"],
        vec!["completions"],
        vec!["webhook", "verify"],
    ];
    #[cfg(feature = "simulator")]
    commands.extend([vec!["simulator"], vec!["demo"]]);
    #[cfg(feature = "piv")]
    commands.extend([
        vec!["keys", "list"],
        vec!["keys", "show"],
        vec!["keys", "attest"],
        vec!["keys", "generate"],
        vec!["piv", "setup"],
        vec!["attestation", "verify"],
    ]);
    for command in commands {
        let out = bin().args(&command).arg("--help").output().unwrap();
        assert!(out.status.success(), "{command:?}");
        let help = String::from_utf8(out.stdout).unwrap();
        assert!(
            help.contains("Example"),
            "{command:?} has no example:\n{help}"
        );
        // An example line: `dfns-signer …`, maybe after `NAME=value` environment settings.
        let command_of = |line: &str| -> Option<String> {
            let mut words = line.split_whitespace().skip_while(|w| w.contains('='));
            (words.next() == Some("dfns-signer")).then(|| words.collect::<Vec<_>>().join(" "))
        };
        let examples: Vec<String> = help.lines().filter_map(command_of).collect();
        assert!(!examples.is_empty(), "{command:?}:\n{help}");
        // One example at least is this command (others may show the steps around it).
        assert!(
            examples.iter().any(|l| l.starts_with(&command.join(" "))),
            "{command:?}: {examples:?}"
        );
        for line in examples {
            // One command per line: nothing else of the help joined onto it.
            assert!(
                !line.contains("Usage:") && !line.contains("dfns-signer "),
                "{line}"
            );
        }
    }
}

/// Credential ids are base64url, so one may start with `-`: taken as the flag's value, not as
/// another flag.
#[test]
fn a_credential_id_may_start_with_a_dash() {
    let cred = "-uD-2sQhEnQ64mZoq3EDDXGZBXmTeDwt";
    let init = json!({"challenge": "YWJj", "challengeIdentifier": "ci",
                      "allowCredentials": {"key": [{"type": "public-key", "id": cred}], "webauthn": []}});
    let key = format!("file:{}", fixture("keys/ed25519.pem"));
    let (code, out, err) = sign_challenge(
        &["--key", &key, "--cred-id", cred, "--output", "json"],
        &init.to_string(),
    );
    assert_eq!(code, 0, "{err}");
    let first_factor: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(first_factor["credentialAssertion"]["credId"], cred);
}
