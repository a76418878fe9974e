//! Conformance with the official Dfns Python SDK: `dfns-sdk` 1.0.4 (and every dependency, pinned
//! with hashes in tests/py-sdk/requirements.lock) runs tests/py-sdk/flows.py against an
//! in-process simulator: wallets (create with `externalId` idempotency, get, list, tags), a
//! signature through the keys API with the wallet's `signingKey.id`, checked independently here
//! and in the script, Key-credential registration, a service account, a PAT, a webhook's life,
//! delegated signing, delegated login and login/logout; it surfaces the simulator's 202 (policy
//! pending) and 429; and it is refused when a user action is replayed, a body is changed after
//! signing, the request goes to another path than the one signed, the wrong key signs for a
//! credential, or another user's credential signs.
//!
//! Needs `python3` (3.10 or newer; the lock has wheels for CPython 3.11–3.13 on x86_64 glibc
//! Linux) with the `venv` module and its bundled pip (Debian: `python3-venv`). The test fails,
//! saying what to install, when it is missing, unless `DFNS_SIGNER_SKIP_PYTHON=1` is set outside
//! CI (then it prints `SKIPPED <test>: …` on stderr; in CI the variable fails the test).
//!
//! The virtual environment lives in `target/tmp/py-sdk-venv-<first 16 hex digits of the lock's
//! sha256>` (`CARGO_TARGET_TMPDIR`): created, and filled by `pip install --no-deps
//! --require-hashes --only-binary=:all:` (PyPI must then be reachable), the first time only, and
//! again when the lock or the `python3` found on PATH changes.
//!
//! The same SDK also runs through `dfns-signer serve` (tests/py-sdk/service_flows.py), with the
//! repository's adapter (clients/python, `dfns_signer_remote.RemoteSigner`, from its source) as
//! its signer and a SoftHSM key in the service (that test also needs SoftHSM:
//! `DFNS_SIGNER_SKIP_HARDWARE=1` skips it outside CI); and the adapter's own `unittest` tests
//! run in the venv, none skipped.

#![cfg(all(feature = "simulator", feature = "client"))]

mod common;

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use dfns_signer::simulator::{Faults, Simulator};
use secrecy::ExposeSecret;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const INSTALL_HINT: &str = "install Python 3.11–3.13 with venv (Debian: `apt-get install -y \
     python3 python3-venv`, as hsm-config/install-deps.sh does), or, outside CI, set \
     DFNS_SIGNER_SKIP_PYTHON=1 to skip this test";

fn py_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py-sdk")
}

/// `python3` on PATH: `(major, minor, "sys.executable sys.version")`.
fn system_python() -> (u32, u32, String) {
    let out = Command::new("python3")
        .args([
            "-c",
            "import sys; print(sys.version_info[0], sys.version_info[1]); \
             print(sys.executable, sys.version.split()[0])",
        ])
        .output()
        .unwrap_or_else(|e| panic!("cannot run `python3` ({e}): {INSTALL_HINT}"));
    assert!(
        out.status.success(),
        "`python3` failed ({}): {}\n{INSTALL_HINT}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let mut version = lines
        .next()
        .unwrap_or_default()
        .split(' ')
        .map(|n| n.parse::<u32>().unwrap_or(0));
    let (major, minor) = (version.next().unwrap_or(0), version.next().unwrap_or(0));
    (major, minor, lines.next().unwrap_or_default().to_owned())
}

/// Runs `cmd`; panics with its output and `what` when it fails.
fn run(mut cmd: Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?} ({e}): {what}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {what}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Makes sure a virtual environment holding exactly the lock's packages exists and returns its
/// interpreter; `None` means skip (explicitly asked).
fn prepare_python() -> Option<PathBuf> {
    if common::skip::should_skip(
        common::skip::SKIP_PYTHON,
        "the Python SDK conformance test needs python3 with venv",
    ) {
        return None;
    }
    let (major, minor, interpreter) = system_python();
    assert!(
        (major, minor) >= (3, 10),
        "python3 is {major}.{minor} ({interpreter}); dfns-sdk 1.0.4 needs 3.10 or newer: \
         {INSTALL_HINT}"
    );

    let lock = py_dir().join("requirements.lock");
    let lock_hash = hex::encode(Sha256::digest(fs::read(&lock).expect("read the lock")));
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    fs::create_dir_all(tmp).unwrap();
    let venv = tmp.join(format!("py-sdk-venv-{}", &lock_hash[..16]));
    let python = venv.join("bin/python");
    // What the venv was made from: another lock or another interpreter means a new venv.
    let stamp_path = venv.join("dfns-signer-stamp");
    let stamp = format!("{lock_hash}\n{interpreter}\n");

    // Another test process (a second `cargo test`) may be preparing the same venv.
    let guard = fs::File::create(tmp.join(format!("py-sdk-venv-{}.lock", &lock_hash[..16])))
        .expect("create the venv's lock file");
    guard.lock().expect("lock the venv");
    if python.exists() && fs::read_to_string(&stamp_path).ok().as_deref() == Some(&*stamp) {
        return Some(python);
    }
    match fs::remove_dir_all(&venv) {
        Err(e) if e.kind() != ErrorKind::NotFound => panic!("remove {}: {e}", venv.display()),
        _ => {}
    }
    let mut create = Command::new("python3");
    create.args(["-m", "venv"]).arg(&venv);
    run(
        create,
        &format!("`python3 -m venv` could not create a virtual environment: {INSTALL_HINT}"),
    );
    let mut install = Command::new(&python);
    install
        .args([
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-input",
        ])
        .args(["--no-deps", "--require-hashes", "--only-binary=:all:", "-r"])
        .arg(&lock);
    run(
        install,
        &format!(
            "pip could not install {}: PyPI must be reachable, and the lock has wheels for \
             CPython 3.11–3.13 on x86_64 glibc Linux only (python3 here: {interpreter})",
            lock.display()
        ),
    );
    let mut check = Command::new(&python);
    check.args(["-m", "pip", "check", "--disable-pip-version-check"]);
    run(
        check,
        "a package the SDK needs is missing from tests/py-sdk/requirements.lock",
    );
    fs::write(&stamp_path, stamp).expect("write the venv's stamp");
    Some(python)
}

/// The script's output: the JSON line, and its human-readable lines for failure messages.
struct Run {
    out: Value,
    lines: String,
}

impl Run {
    fn result(&self, step: &str) -> &Value {
        let r = &self.out["results"][step];
        assert!(
            r.is_object(),
            "step {step} missing from the script output:\n{}",
            self.lines
        );
        r
    }

    fn ok(&self, step: &str) -> &Value {
        let r = self.result(step);
        assert_eq!(
            r["ok"], true,
            "step {step} failed: {r:#}\nall steps:\n{}",
            self.lines
        );
        r
    }

    /// A refusal the script provoked and saw (the step is `ok` when it was refused).
    fn refused(&self, step: &str, status: u64, message: &str) -> &Value {
        let r = self.ok(step);
        assert_eq!(
            (&r["status"], &r["message"]),
            (&Value::from(status), &Value::from(message)),
            "step {step}: {r:#}"
        );
        r
    }
}

/// Verifies a secp256k1 signature over a 32-byte hash, independently of the simulator and of
/// the script, and that `recid` recovers the same public key.
fn verify_key_signature(public_key_hex: &str, hash_hex: &str, signature: &Value) {
    use k256::ecdsa::signature::hazmat::PrehashVerifier;
    use k256::ecdsa::{RecoveryId, Signature, VerifyingKey};
    let unhex = |v: &Value| hex::decode(v.as_str().unwrap().trim_start_matches("0x")).unwrap();
    let key = VerifyingKey::from_sec1_bytes(&hex::decode(public_key_hex).unwrap()).unwrap();
    let hash = unhex(&Value::from(hash_hex));
    let sig = Signature::from_slice(&[unhex(&signature["r"]), unhex(&signature["s"])].concat())
        .expect("r and s are 32 bytes each");
    key.verify_prehash(&hash, &sig)
        .expect("the signature verifies against the wallet's signingKey.publicKey");
    let recid =
        RecoveryId::from_byte(signature["recid"].as_u64().unwrap() as u8).expect("recid is 0 to 3");
    let recovered =
        VerifyingKey::recover_from_prehash(&hash, &sig, recid).expect("recid recovers a key");
    assert_eq!(recovered, key, "recid recovers the wallet's key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_python_sdk_runs_its_flows_against_the_simulator() {
    let Some(python) = prepare_python() else {
        return;
    };
    let keys = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/keys");
    let pem = fs::read_to_string(keys.join("p256.pub.pem")).unwrap();
    // The same two faults as the TypeScript SDK test: a pending policy approval, a rate limit.
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

    // -I: no PYTHON* variables, user site or script directory on sys.path; -X utf8: the
    // script's non-ASCII output whatever the locale. The token goes in the environment, not
    // on the command line.
    let child = tokio::process::Command::new(&python)
        .args(["-I", "-X", "utf8"])
        .arg(py_dir().join("flows.py"))
        .env("DFNS_API_URL", sim.base_url())
        .env("DFNS_AUTH_TOKEN", sim.auth_token().expose_secret())
        .env("DFNS_CRED_ID", sim.credential_id())
        .env("DFNS_PRIVATE_KEY", keys.join("p256.pem"))
        .env("DFNS_USERNAME", sim.username())
        .env("DFNS_ORG_ID", sim.org_id())
        .env("DFNS_FAULTS", "1")
        .env_remove("DFNS_ONLY")
        .current_dir(py_dir())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(180), child)
        .await
        .expect("the Python script finishes within 3 minutes")
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let out: Value =
        serde_json::from_str(stdout.lines().last().unwrap_or("")).unwrap_or_else(|e| {
            panic!(
                "the script's last line is not JSON ({e}; {}): {stdout}\nstderr: {stderr}",
                output.status
            )
        });
    let lines: Vec<&str> = stdout.lines().collect();
    let run = Run {
        lines: lines[..lines.len() - 1].join("\n"),
        out,
    };
    // The script prints ids, statuses and signatures only (no token, no private key).
    println!("{}\n{:#}", run.lines, run.out);
    assert_eq!(run.out["sdk"], "1.0.4", "the pinned SDK version ran");

    // Wallets. The SDK signs compact JSON, and sends these ASCII bodies byte for byte as signed.
    let created = run.ok("createWallet");
    let wallet_id = created["walletId"].as_str().unwrap().to_owned();
    assert!(wallet_id.starts_with("wa-"), "{created}");
    assert_eq!(
        created["idempotentId"],
        wallet_id.as_str(),
        "same externalId and body: same wallet"
    );
    let wire = &created["wire"];
    assert_eq!(wire["contentType"], "application/json", "{wire}");
    assert_eq!(
        wire["body"],
        r#"{"network":"EthereumSepolia","name":"py-sdk wallet","externalId":"py-ext-1"}"#
    );
    let headers: Vec<&str> = wire["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        headers.contains(&"authorization") && headers.contains(&"x-dfns-useraction"),
        "{wire}"
    );
    assert!(
        wire["userAgent"]
            .as_str()
            .unwrap()
            .starts_with("python-httpx/0.28"),
        "{wire}"
    );

    // dfns-sdk 1.0.4 signs non-ASCII as \uXXXX escapes but sends raw UTF-8: the simulator, which
    // compares the body with the signed payload byte for byte (docs/protocol.md), refuses it.
    let non_ascii = run.ok("nonAsciiBody");
    assert_eq!(
        (
            &non_ascii["accepted"],
            &non_ascii["identical"],
            &non_ascii["status"]
        ),
        (&Value::from(false), &Value::from(false), &Value::from(403)),
        "{non_ascii:#}"
    );
    assert_eq!(
        non_ascii["reason"],
        "request body is not byte-identical to the signed userActionPayload"
    );
    assert!(
        non_ascii["signedPayload"]
            .as_str()
            .unwrap()
            .contains(r"Tr\u00e9sorerie"),
        "{non_ascii:#}"
    );

    let read = run.ok("readWallets");
    assert_eq!(read["gotId"], wallet_id.as_str());
    assert!(read["listed"]
        .as_array()
        .unwrap()
        .iter()
        .any(|id| id == wallet_id.as_str()));
    assert_eq!(run.ok("tagWallet")["tags"], json!(["t2"]));

    // The keys API, reached through the wallet's signingKey.id; verified again here.
    let sig = run.ok("keySignature");
    assert_eq!(sig["status"], "Signed");
    assert_eq!(sig["gotStatus"], "Signed");
    assert_eq!(sig["requestBody"]["kind"], "Hash");
    assert!(
        sig["signatureId"].as_str().is_some_and(|id| !id.is_empty()),
        "{sig}"
    );
    assert_eq!(
        sig["keyId"], created["signingKey"]["id"],
        "the signature names the wallet's key"
    );
    verify_key_signature(
        created["signingKey"]["publicKey"].as_str().unwrap(),
        sig["hash"].as_str().unwrap(),
        &sig["signature"],
    );

    // Key credential registration, then a user action signed by the new credential.
    let reg = run.ok("registerKeyCredential");
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
    run.refused(
        "registerBadAttestation",
        400,
        "attestation signature is invalid",
    );

    let sa = run.ok("serviceAccount");
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

    let pat = run.ok("personalAccessToken");
    assert_eq!(pat["kind"], "Pat");
    assert!(pat["walletByPat"].as_str().unwrap().starts_with("wa-"));

    // Webhooks: create, get, delete, then 404; and the documented entity.
    let hook = run.ok("webhook");
    assert_eq!(hook["deleted"], json!({ "deleted": true }));
    assert_eq!(hook["afterDelete"]["status"], 404, "{hook}");
    run.ok("webhookEntity");

    assert_eq!(run.ok("delegatedSigning")["name"], "delegated");
    assert_eq!(run.ok("delegatedLogin")["sameOrg"], true);
    let login = run.ok("login");
    assert_eq!(login["sameOrg"], true);
    assert!(login["walletsSeen"].as_u64().unwrap() >= 1);
    assert_eq!(login["afterLogout"], 401, "a logged-out token is refused");

    // Faults, as dfns-sdk 1.0.4 surfaces them: a 202 is returned, not raised (unlike the
    // TypeScript SDK's PolicyPendingError); a 429 is raised, without its Retry-After.
    let pending = run.ok("policyPending");
    assert_eq!(
        (&pending["thrown"], &pending["approvalStatus"]),
        (&Value::from(false), &Value::from("Pending")),
        "{pending}"
    );
    run.refused("rateLimited", 429, "Too Many Requests");

    // Refusals, with the statuses Dfns documents (messages: README, "Simulator error messages").
    run.refused(
        "replayedUserAction",
        400,
        "user action has already been used",
    );
    let tampered = run.refused(
        "tamperedBody",
        403,
        "user action signature is missing or invalid",
    );
    assert_eq!(
        tampered["reason"],
        "request body is not byte-identical to the signed userActionPayload"
    );
    let moved = run.refused(
        "changedPath",
        403,
        "user action signature is missing or invalid",
    );
    assert!(
        moved["reason"]
            .as_str()
            .unwrap_or("")
            .starts_with("signed for path"),
        "{moved}"
    );
    assert_eq!(
        moved["targetTags"],
        json!([]),
        "the other wallet was not tagged"
    );
    run.refused(
        "wrongKeyForCredential",
        401,
        "user action signature is missing or invalid",
    );
    let foreign = run.refused(
        "foreignCredential",
        401,
        "user action signature is missing or invalid",
    );
    assert_eq!(
        foreign["reason"],
        "credId is not a credential of the caller"
    );
    let names: Vec<&str> = run.ok("afterRefusals")["names"]
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
        !names
            .iter()
            .any(|n| n.starts_with("tampered") || *n == "impostor" || *n == "foreign"),
        "the refused requests created nothing: {names:?}"
    );

    // Every check the script made passed (including any this test does not name).
    assert_eq!(
        (&run.out["failed"], output.status.code()),
        (&Value::from(0), Some(0)),
        "the script reports failures:\n{}\nstderr: {stderr}",
        run.lines
    );

    let stats = sim.stats();
    let rejections = |label: &str| stats.rejections.get(label).copied().unwrap_or(0);
    assert_eq!(
        rejections("400 user action has already been used"),
        1,
        "{stats:?}"
    );
    // The non-ASCII body, the tampered body, the changed path.
    assert_eq!(
        rejections("403 user action signature is missing or invalid"),
        3,
        "{stats:?}"
    );
    // The wrong key, the foreign credential (both at POST /auth/action).
    assert_eq!(
        rejections("401 user action signature is missing or invalid"),
        2,
        "{stats:?}"
    );
    // User actions spent by requests that passed the check: 22 in the script's flows (the bad
    // attestation's, the 202's and the 429's included).
    assert!(stats.user_actions_used >= 22, "{stats:?}");
    sim.shutdown().await;
}

/// `NO_PROXY` with loopback added: httpx (the SDK's transport) honours `HTTP(S)_PROXY` and does
/// not exempt 127.0.0.1 by itself, and the services these tests talk to listen there.
fn no_proxy_with_loopback() -> String {
    let mut hosts: Vec<String> = std::env::var("NO_PROXY")
        .or_else(|_| std::env::var("no_proxy"))
        .unwrap_or_default()
        .split(',')
        .filter(|h| !h.is_empty())
        .map(str::to_owned)
        .collect();
    for host in ["127.0.0.1", "localhost", "::1"] {
        if !hosts.iter().any(|h| h == host) {
            hosts.push(host.to_owned());
        }
    }
    hosts.join(",")
}

/// Requests the simulator has received at `route` (`"METHOD /path"`, ids as `{id}`).
#[cfg(all(feature = "serve", feature = "pkcs11"))]
fn requests_at(stats: &dfns_signer::simulator::Stats, route: &str) -> u64 {
    stats.requests.get(route).copied().unwrap_or(0)
}

/// The official Python SDK (`dfns-sdk` 1.0.4) works through `dfns-signer serve` with the
/// repository's adapter (clients/python, `dfns_signer_remote.RemoteSigner`, from its source) as
/// its signer and a SoftHSM key in the service: with its base_url at the service and the client
/// secret in `headers=`, it creates a Bitcoin wallet and signs a hash with it (one user action
/// each, the signature verified here). A Tron wallet, outside the `payments` policy, is refused
/// at init already (the client named itself there), with a 403 naming the policy that the SDK
/// raises as its `DfnsError`; neither that init nor the Tron request reaches the simulator.
/// Neither the token nor the client secret is in the script's output.
#[cfg(all(feature = "serve", feature = "pkcs11"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_python_sdk_signs_through_the_service_with_a_softhsm_key() {
    use common::service::{Fixture, Options};
    let Some(h) = common::softhsm::hsm() else {
        return;
    };
    let Some(python) = prepare_python() else {
        return;
    };
    let f = Fixture::start(&h, "py-sdk", Options::default()).await;
    let (service, url) = f.serve_default().await;
    let before = f.sim.stats();

    let adapter_src = Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/python/src");
    let token = f.token.expose_secret();
    // -X utf8: the script's output whatever the locale. Not -I, which would ignore PYTHONPATH:
    // the adapter is imported from its source, not installed. Token and secret go in the
    // environment, not on the command line.
    let child = tokio::process::Command::new(&python)
        .args(["-X", "utf8"])
        .arg(py_dir().join("service_flows.py"))
        .env("PYTHONPATH", &adapter_src)
        .env("NO_PROXY", no_proxy_with_loopback())
        .env("DFNS_SIGNER_URL", &url)
        .env("DFNS_AUTH_TOKEN", token)
        .env("DFNS_SIGNER_CLIENT_SECRET", &f.payments.secret)
        .current_dir(py_dir())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), child)
        .await
        .expect("the Python script finishes within 2 minutes")
        .expect("python runs");
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
        "python failed: {}\nstdout: {stdout}\nstderr: {stderr}",
        output.status
    );
    let out: Value = serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("script output is not JSON ({e}): {stdout}\nstderr: {stderr}"));
    // Ids, statuses, signatures and messages only (checked above: no token, no secret).
    println!("{out:#}");
    let step = |name: &str| -> &Value {
        let r = &out["results"][name];
        assert!(
            r.is_object(),
            "step {name} missing from the script output: {out:#}"
        );
        r
    };
    let ok = |name: &str| -> &Value {
        let r = step(name);
        assert_eq!(r["ok"], true, "step {name} failed: {r:#}");
        r
    };
    assert_eq!(out["sdk"], "1.0.4", "the pinned SDK version ran");
    let adapter = PathBuf::from(out["adapter"].as_str().unwrap_or_default());
    assert!(
        adapter.starts_with(adapter_src.canonicalize().unwrap()),
        "the adapter came from {}, not from clients/python/src",
        adapter.display()
    );

    let created = ok("createWallet");
    let wallet_id = created["walletId"].as_str().unwrap_or_default();
    assert!(wallet_id.starts_with("wa-"), "{created}");
    assert_eq!(created["network"], "Bitcoin", "{created}");

    let sig = ok("generateSignature");
    assert_eq!(sig["status"], "Signed", "{sig}");
    assert_eq!(sig["walletId"], wallet_id, "{sig}");
    verify_key_signature(
        created["signingKey"]["publicKey"].as_str().unwrap(),
        sig["hash"].as_str().unwrap(),
        &sig["signature"],
    );

    // Refused by the service's policy at init, as the SDK raises it.
    let tron = step("tronWallet");
    assert_eq!(tron["ok"], false, "the Tron wallet was created: {tron:#}");
    assert_eq!(
        (&tron["dfnsError"], &tron["status"]),
        (&Value::from(true), &Value::from(403)),
        "{tron:#}"
    );
    let message = tron["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("the dfns-signer policy of client `payments` refuses this request")
            && message.contains(r#"allows it only with network in ["Bitcoin", "EthereumSepolia"]; the body has "Tron""#),
        "{tron:#}"
    );

    let after = f.sim.stats();
    assert_eq!(
        after.user_actions_used - before.user_actions_used,
        2,
        "one user action for the wallet, one for the signature: {after:?}"
    );
    assert_eq!(
        requests_at(&after, "POST /auth/action/init")
            - requests_at(&before, "POST /auth/action/init"),
        2,
        "the Tron init never reached the simulator: {after:?}"
    );
    assert_eq!(
        requests_at(&after, "POST /wallets") - requests_at(&before, "POST /wallets"),
        1,
        "the Tron wallet never reached the simulator: {after:?}"
    );
    assert_eq!(
        after.user_actions_issued - before.user_actions_issued,
        2,
        "{after:?}"
    );
    assert_eq!(after.side_effects - before.side_effects, 2, "{after:?}");
    service.shutdown().await;
}

/// The adapter's own tests (clients/python/tests, `unittest`, from its source) pass in the venv
/// that holds `dfns-sdk` 1.0.4, and none is skipped: the two that drive the real SDK through a
/// fake service run.
#[test]
fn remote_signer_unit_tests_pass() {
    let Some(python) = prepare_python() else {
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = Command::new(&python)
        .args(["-X", "utf8", "-m", "unittest", "discover", "-v", "-s"])
        .arg(root.join("clients/python/tests"))
        .env("PYTHONPATH", root.join("clients/python/src"))
        .env("NO_PROXY", no_proxy_with_loopback())
        .current_dir(root)
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    // unittest reports on stderr.
    let report = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the adapter's tests failed ({}):\n{report}\nstdout: {stdout}",
        output.status
    );
    let last = report.lines().rev().find(|l| !l.trim().is_empty());
    assert_eq!(
        last,
        Some("OK"),
        "some tests did not run (skipped, expected failures):\n{report}"
    );
    assert!(
        !report.contains("skipped") && !report.contains("dfns-sdk not installed"),
        "a test was skipped:\n{report}"
    );
    for sdk_test in [
        "test_create_wallet_through_the_service",
        "test_refusal_reaches_the_caller",
    ] {
        assert!(
            report
                .lines()
                .any(|l| l.starts_with(&format!("{sdk_test} (")) && l.ends_with(" ... ok")),
            "the SDK test {sdk_test} did not pass:\n{report}"
        );
    }
}
