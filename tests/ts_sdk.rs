//! Conformance with the official Dfns TypeScript SDK: `@dfns/sdk` 0.8.21 and
//! `@dfns/sdk-keysigner` 0.8.3 (pinned in tests/ts-sdk/package-lock.json) run their own
//! create-wallet, signature, tag, Key-credential registration, service-account, PAT, webhook,
//! delegated-signing and login/logout flows against an in-process simulator; they surface the
//! simulator's 202 (policy pending) and 429 (with `Retry-After`) as they would Dfns'; and they
//! are refused when a user action is replayed, a body is changed after signing, or the wrong
//! key signs.
//!
//! Needs Node.js 20+ and npm. The test fails (with what to install) when they are missing,
//! unless `DFNS_SIGNER_SKIP_NODE=1` is set outside CI (then it prints `SKIPPED <test>: …` on
//! stderr; in CI the variable fails the test). `npm ci` runs in tests/ts-sdk when its
//! node_modules is missing (the npm registry must then be reachable).
//!
//! The same SDK also runs through `dfns-signer serve` (tests/ts-sdk/service.mjs), with the
//! repository's adapter (clients/typescript, `RemoteSigner`) as its signer and a SoftHSM key in
//! the service (that test also needs SoftHSM: `DFNS_SIGNER_SKIP_HARDWARE=1` skips it outside
//! CI); and the adapter's own `node:test` tests run here, none skipped.

#![cfg(all(feature = "simulator", feature = "client"))]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use dfns_signer::simulator::{Faults, Simulator};
use secrecy::ExposeSecret;
use serde_json::Value;

fn ts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ts-sdk")
}

/// `Some(version)` when `tool --version` runs.
fn tool_version(tool: &str) -> Option<String> {
    let out = Command::new(tool).arg("--version").output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Makes sure node, npm and the pinned SDK are there; `false` means skip (explicitly asked).
fn prepare_node() -> bool {
    if common::skip::should_skip(
        common::skip::SKIP_NODE,
        "the TypeScript SDK conformance test needs Node.js and npm",
    ) {
        return false;
    }
    let install_hint = "install Node.js 20+ with npm (Debian: `apt-get install -y nodejs npm`), \
                        or, outside CI, set DFNS_SIGNER_SKIP_NODE=1 to skip this test";
    let node =
        tool_version("node").unwrap_or_else(|| panic!("`node` is not on PATH: {install_hint}"));
    tool_version("npm").unwrap_or_else(|| panic!("`npm` is not on PATH: {install_hint}"));
    let major: u32 = node
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    assert!(
        major >= 18,
        "Node.js {node} is too old for @dfns/sdk: {install_hint}"
    );

    // Several tests (and perhaps another test process) get here at once: one `npm ci` at a time,
    // and none sees a half-installed node_modules.
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(tmp).unwrap();
    let guard =
        std::fs::File::create(tmp.join("ts-sdk-npm-ci.lock")).expect("create the npm ci lock file");
    guard.lock().expect("lock tests/ts-sdk for npm ci");
    if !ts_dir()
        .join("node_modules/@dfns/sdk/package.json")
        .exists()
    {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(ts_dir())
            .status()
            .expect("run npm ci");
        assert!(
            status.success(),
            "`npm ci` failed in {}: the npm registry must be reachable to install the pinned @dfns/sdk",
            ts_dir().display()
        );
    }
    true
}

fn result<'a>(out: &'a Value, step: &str) -> &'a Value {
    let r = &out["results"][step];
    assert!(
        r.is_object(),
        "step {step} missing from the script output: {out:#}"
    );
    r
}

fn assert_ok<'a>(out: &'a Value, step: &str) -> &'a Value {
    let r = result(out, step);
    assert_eq!(r["ok"], true, "step {step} failed: {r:#}");
    r
}

fn assert_refused(out: &Value, step: &str, status: u64, message: &str) {
    let r = result(out, step);
    assert_eq!(
        r["ok"], false,
        "step {step} should have been refused: {r:#}"
    );
    assert_eq!(r["status"], status, "step {step}: {r:#}");
    assert_eq!(r["message"], message, "step {step}: {r:#}");
}

/// Verifies a secp256k1 wallet signature over a 32-byte hash, independently of the simulator.
fn verify_wallet_signature(public_key_hex: &str, hash_hex: &str, r_hex: &str, s_hex: &str) {
    use k256::ecdsa::signature::hazmat::PrehashVerifier;
    let strip = |s: &str| s.trim_start_matches("0x").to_owned();
    let key =
        k256::ecdsa::VerifyingKey::from_sec1_bytes(&hex::decode(public_key_hex).unwrap()).unwrap();
    let r = hex::decode(strip(r_hex)).unwrap();
    let s = hex::decode(strip(s_hex)).unwrap();
    let sig = k256::ecdsa::Signature::from_slice(&[r, s].concat()).unwrap();
    key.verify_prehash(&hex::decode(strip(hash_hex)).unwrap(), &sig)
        .expect("the wallet signature verifies against the wallet's public key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_typescript_sdk_runs_its_flows_against_the_simulator() {
    if !prepare_node() {
        return;
    }
    let pem = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/keys/p256.pub.pem"),
    )
    .unwrap();
    // Two faults the SDK must surface: a pending policy approval and a rate limit.
    let faults = Faults {
        rate_429: 1.0,
        retry_after_secs: 3,
        only_paths: vec!["POST /webhooks/{id}/ping".into()],
        policy_pending_paths: vec!["PUT /wallets/{id}".into()],
        ..Faults::default()
    };
    let sim = Simulator::builder()
        .root_public_key_pem(pem)
        .faults(faults)
        .start()
        .await
        .unwrap();

    let child = tokio::process::Command::new("node")
        .arg("conformance.mjs")
        .arg(sim.base_url())
        .arg(sim.auth_token().expose_secret())
        .arg(sim.credential_id())
        .arg(sim.username())
        .current_dir(ts_dir())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(180), child)
        .await
        .expect("the node script finishes within 3 minutes")
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "node failed: {}\nstdout: {stdout}\nstderr: {stderr}",
        output.status
    );
    let out: Value = serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("script output is not JSON ({e}): {stdout}\nstderr: {stderr}"));
    // The script prints ids and statuses only (no tokens), so showing it is safe and helps.
    println!("{out:#}");
    assert_eq!(out["sdk"], "0.8.21", "the pinned SDK version ran");

    // Create wallet, with a body full of characters JSON escapes differently across languages.
    let created = assert_ok(&out, "createWallet");
    let wallet_id = created["walletId"].as_str().unwrap().to_owned();
    assert!(wallet_id.starts_with("wa-"), "{created}");
    assert_eq!(created["name"], "Trésorerie ✓ \"q\" / <tag>");
    assert_eq!(
        created["idempotentId"],
        wallet_id.as_str(),
        "same externalId and body: same wallet"
    );

    let read = assert_ok(&out, "readWallets");
    assert_eq!(read["gotId"], wallet_id.as_str());
    assert!(read["listed"]
        .as_array()
        .unwrap()
        .iter()
        .any(|id| id == wallet_id.as_str()));

    assert_eq!(
        assert_ok(&out, "tagWallet")["tags"],
        serde_json::json!(["ü"])
    );

    let sig = assert_ok(&out, "generateSignature");
    assert_eq!(sig["status"], "Signed");
    verify_wallet_signature(
        created["signingKey"]["publicKey"].as_str().unwrap(),
        sig["hash"].as_str().unwrap(),
        sig["signature"]["r"].as_str().unwrap(),
        sig["signature"]["s"].as_str().unwrap(),
    );

    // Key credential registration, then a user action signed by the new credential.
    let reg = assert_ok(&out, "registerKeyCredential");
    assert_eq!(reg["credentialId"], reg["newCredId"]);
    assert!(reg["walletWithNewKey"].as_str().unwrap().starts_with("wa-"));
    assert_eq!(
        reg["walletCurve"], "ed25519",
        "Solana wallets get an Ed25519 key"
    );
    let listed = reg["listed"].as_array().unwrap();
    assert!(
        listed.iter().any(|c| *c == reg["newCredId"])
            && listed.iter().any(|c| c == sim.credential_id())
    );
    assert_refused(
        &out,
        "registerBadAttestation",
        400,
        "attestation signature is invalid",
    );

    let sa = assert_ok(&out, "serviceAccount");
    assert_eq!(sa["isServiceAccount"], true);
    assert!(
        sa["walletBySa"].as_str().unwrap().starts_with("wa-"),
        "the new token and credential work"
    );
    assert!(sa["listed"]
        .as_array()
        .unwrap()
        .iter()
        .any(|id| *id == sa["userId"]));

    let pat = assert_ok(&out, "personalAccessToken");
    assert_eq!(pat["kind"], "Pat");
    assert!(pat["walletByPat"].as_str().unwrap().starts_with("wa-"));

    assert_eq!(assert_ok(&out, "webhook")["deleted"]["deleted"], true);

    let delegated = assert_ok(&out, "delegatedSigning");
    assert_eq!(delegated["name"], "delegated", "{delegated}");

    let login = assert_ok(&out, "login");
    assert_eq!(login["sameOrg"], true);
    assert!(login["walletsSeen"].as_u64().unwrap() >= 1);
    assert_eq!(login["afterLogout"], 401, "a logged-out token is refused");

    // Faults, as the official SDK surfaces them.
    let pending = assert_ok(&out, "policyPending");
    assert_eq!(pending["thrown"], true, "{pending}");
    assert_eq!(pending["isPolicyPendingError"], true, "{pending}");
    assert_eq!(
        (&pending["httpStatus"], &pending["approvalStatus"]),
        (&Value::from(202), &Value::from("Pending"))
    );
    let limited = assert_ok(&out, "rateLimited");
    assert_eq!(
        (&limited["thrown"], &limited["httpStatus"]),
        (&Value::from(true), &Value::from(429)),
        "{limited}"
    );
    assert_eq!(limited["retryAfter"], "3");
    assert_eq!(limited["message"], "Too Many Requests");

    // Refusals, as the real service answers them.
    assert_refused(
        &out,
        "replayedUserAction",
        400,
        "user action has already been used",
    );
    assert_refused(
        &out,
        "tamperedBody",
        403,
        "user action signature is missing or invalid",
    );
    assert_refused(
        &out,
        "wrongKeyForCredential",
        401,
        "user action signature is missing or invalid",
    );
    let names = assert_ok(&out, "afterRefusals")["names"].clone();
    let names: Vec<&str> = names
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        names.iter().filter(|n| **n == "first").count(),
        1,
        "the replay created nothing: {names:?}"
    );
    assert!(
        !names.iter().any(|n| n.starts_with("tampered")),
        "the tampered request created nothing: {names:?}"
    );

    let stats = sim.stats();
    assert_eq!(
        stats
            .rejections
            .get("400 user action has already been used"),
        Some(&1),
        "{stats:?}"
    );
    assert_eq!(
        stats
            .rejections
            .get("403 user action signature is missing or invalid"),
        Some(&1),
        "{stats:?}"
    );
    assert!(stats.user_actions_used >= 12, "{stats:?}");
    sim.shutdown().await;
}

/// Requests the simulator has received at `route` (`"METHOD /path"`, ids as `{id}`).
#[cfg(all(feature = "serve", feature = "pkcs11"))]
fn requests_at(stats: &dfns_signer::simulator::Stats, route: &str) -> u64 {
    stats.requests.get(route).copied().unwrap_or(0)
}

/// The official TypeScript SDK (`@dfns/sdk` 0.8.21) works through `dfns-signer serve` with the
/// repository's adapter (clients/typescript, `RemoteSigner`) as its signer and a SoftHSM key
/// in the service: with its baseUrl at the service it creates a Bitcoin wallet and signs a hash
/// with it (one user action each, the signature verified here). A Tron wallet, outside the
/// `payments` policy, is refused: the SDK cannot name the client at init, so its init reaches
/// the simulator, but `/v1/sign` answers 403 naming the policy, that reaches the SDK's caller as
/// the adapter's `RemoteSignerError`, and the Tron request itself never reaches the simulator.
/// Neither the token nor the client secret is in the script's output.
#[cfg(all(feature = "serve", feature = "pkcs11"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_typescript_sdk_signs_through_the_service_with_a_softhsm_key() {
    use common::service::{Fixture, Options};
    let Some(h) = common::softhsm::hsm() else {
        return;
    };
    if !prepare_node() {
        return;
    }
    let f = Fixture::start(&h, "ts-sdk", Options::default()).await;
    let (service, url) = f.serve_default().await;
    let before = f.sim.stats();

    let token = f.token.expose_secret();
    let child = tokio::process::Command::new("node")
        .arg("service.mjs")
        .arg(&url)
        .arg(token)
        .arg(&f.payments.secret)
        .current_dir(ts_dir())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), child)
        .await
        .expect("the node script finishes within 2 minutes")
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    for (what, secret) in [
        ("token", token),
        ("client secret", f.payments.secret.as_str()),
    ] {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "the script's output holds the {what}"
        );
    }
    assert!(
        output.status.success(),
        "node failed: {}\nstdout: {stdout}\nstderr: {stderr}",
        output.status
    );
    let out: Value = serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("script output is not JSON ({e}): {stdout}\nstderr: {stderr}"));
    // Ids, statuses, signatures and messages only (checked above: no token, no secret).
    println!("{out:#}");
    assert_eq!(out["sdk"], "0.8.21", "the pinned SDK version ran");

    let created = assert_ok(&out, "createWallet");
    let wallet_id = created["walletId"].as_str().unwrap_or_default();
    assert!(wallet_id.starts_with("wa-"), "{created}");
    assert_eq!(created["network"], "Bitcoin", "{created}");

    let sig = assert_ok(&out, "generateSignature");
    assert_eq!(sig["status"], "Signed", "{sig}");
    assert_eq!(sig["walletId"], wallet_id, "{sig}");
    verify_wallet_signature(
        created["signingKey"]["publicKey"].as_str().unwrap(),
        sig["hash"].as_str().unwrap(),
        sig["signature"]["r"].as_str().unwrap(),
        sig["signature"]["s"].as_str().unwrap(),
    );

    // Refused by the service's policy, as the adapter reports it to the SDK's caller.
    let tron = result(&out, "tronWallet");
    assert_eq!(tron["ok"], false, "the Tron wallet was created: {tron:#}");
    assert_eq!(
        (&tron["remoteSignerError"], &tron["status"]),
        (&Value::from(true), &Value::from(403)),
        "{tron:#}"
    );
    let message = tron["serviceMessage"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("the dfns-signer policy of client `payments` refuses this request")
            && message.contains(r#"allows it only with network in ["Bitcoin", "EthereumSepolia"]; the body has "Tron""#),
        "{tron:#}"
    );
    assert!(
        tron["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with("dfns-signer service refused to sign (HTTP 403): the dfns-signer policy"),
        "{tron:#}"
    );

    let after = f.sim.stats();
    assert_eq!(
        after.user_actions_used - before.user_actions_used,
        2,
        "one user action for the wallet, one for the signature: {after:?}"
    );
    assert_eq!(
        requests_at(&after, "POST /wallets") - requests_at(&before, "POST /wallets"),
        1,
        "the Tron wallet never reached the simulator: {after:?}"
    );
    // The Tron init went upstream (the SDK cannot name its client there), but its challenge
    // was never signed, so never completed.
    assert_eq!(
        requests_at(&after, "POST /auth/action/init")
            - requests_at(&before, "POST /auth/action/init"),
        3,
        "{after:?}"
    );
    assert_eq!(
        after.user_actions_issued - before.user_actions_issued,
        2,
        "{after:?}"
    );
    assert_eq!(after.side_effects - before.side_effects, 2, "{after:?}");
    service.shutdown().await;
}

/// The adapter's own tests (clients/typescript/test, `node:test`, as its `npm test` runs them)
/// pass, and none is skipped: the two that drive the real `@dfns/sdk` through a fake service
/// find it in tests/ts-sdk/node_modules.
#[test]
fn remote_signer_unit_tests_pass() {
    if !prepare_node() {
        return;
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/typescript");
    // Every test file, named: a directory argument to `node --test` is searched in Node 18 and
    // 20 but taken as a file by later versions.
    let mut files: Vec<String> = std::fs::read_dir(dir.join("test"))
        .expect("read clients/typescript/test")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".test.js") || name.ends_with(".test.mjs"))
        .map(|name| format!("test/{name}"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no test files in {}", dir.display());
    let output = Command::new("node")
        .args(["--test", "--test-reporter=tap"])
        .args(&files)
        .current_dir(&dir)
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the adapter's tests failed ({}): {files:?}\nstdout: {stdout}\nstderr: {stderr}",
        output.status
    );
    let summary = |name: &str| -> Option<u64> {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("# {name} "))?.trim().parse().ok())
    };
    assert_eq!(
        (summary("fail"), summary("skipped"), summary("cancelled")),
        (Some(0), Some(0), Some(0)),
        "failed, skipped, cancelled:\n{stdout}\nstderr: {stderr}"
    );
    for sdk_test in [
        "DfnsApiClient with baseUrl at the service creates a wallet through RemoteSigner",
        "DfnsApiClient: a refusal from the service reaches the caller as RemoteSignerError",
    ] {
        assert!(
            stdout.lines().any(
                |l| l.trim_start().starts_with("ok ") && l.ends_with(&format!(" - {sdk_test}"))
            ),
            "the SDK test `{sdk_test}` did not pass:\n{stdout}"
        );
    }
}
