//! The signing service in production: the audit log it writes (one hash-chained line per
//! decision, before the approval leaves), an approval refused when it cannot be logged,
//! `/metrics` after a run, `/readyz` following the token, failover to a key's second device,
//! and the process's lifecycle (SIGTERM drains a load, SIGHUP adds a client).
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
use std::sync::Arc;

use common::pkcs11_shim::Shim;
use common::service::{send, write_private, Fixture, Options};
use common::softhsm::{hsm, PIN_ENV};
use dfns_signer::audit::{chain_files, verify};
use serde_json::{json, Value};
use sha2::Digest;

async fn post(url: &str, secret: &str, bearer: &str, body: &Value) -> (u16, Value) {
    let (status, answer, _) = send(
        url,
        "POST",
        "/wallets",
        Some(secret),
        Some(bearer),
        Some(body),
    )
    .await;
    (status, answer)
}

fn audit_lines(path: &std::path::Path) -> Vec<Value> {
    chain_files(path)
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(f)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect::<Vec<Value>>()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_decision_is_on_the_audit_chain_and_metrics_count_the_run() {
    let Some(h) = hsm() else { return };
    let mut f = Fixture::start(&h, "audit", Options::default()).await;
    let audit = f.dir.join("audit/audit.log");
    std::fs::create_dir_all(audit.parent().unwrap()).unwrap();
    f.extra_service = format!(
        "instance = \"signer-a\"\naudit_log = \"{}\"\naudit_rotate_bytes = 4096",
        audit.display()
    );
    let config = f.write_config("audit.toml", None, Some("metrics = \"127.0.0.1:0\""));
    let service = f.serve(&config).await;
    let url = service.tcp_url().unwrap();
    let metrics = format!("http://{}", service.metrics_addr().unwrap());
    let bearer = f.bearer();

    // 12 approved through the proxy, 2 refused by the policy.
    for i in 0..12 {
        let body = json!({"network": "Bitcoin", "name": format!("w{i}")});
        let (status, answer) = post(&url, &f.payments.secret, &bearer, &body).await;
        assert_eq!(status, 200, "{answer}");
    }
    for _ in 0..2 {
        let (status, _) = post(
            &url,
            &f.payments.secret,
            &bearer,
            &json!({"network": "Tron"}),
        )
        .await;
        assert_eq!(status, 403);
    }

    // The chain holds across the rotations, one line per decision: approved then completed
    // for each request, refused for each refusal.
    let files = chain_files(&audit);
    assert!(files.len() > 1, "4 KiB files rotate: {files:?}");
    let report = verify(&files).unwrap();
    assert!(report.ok(), "{:?}", report.broken);
    assert_eq!(report.lines, 12 * 2 + 2);
    let lines = audit_lines(&audit);
    let approved: Vec<&Value> = lines.iter().filter(|l| l["event"] == "approved").collect();
    let completed: Vec<&Value> = lines.iter().filter(|l| l["event"] == "completed").collect();
    let refused: Vec<&Value> = lines.iter().filter(|l| l["event"] == "refused").collect();
    assert_eq!(
        (approved.len(), completed.len(), refused.len()),
        (12, 12, 2)
    );
    let first = approved[0];
    assert_eq!(first["instance"], "signer-a");
    assert_eq!(first["client"], "payments");
    assert_eq!(first["key"], "hsm");
    assert_eq!(first["credential_id"], f.credential_id.as_str());
    assert_eq!(first["method"], "POST");
    assert_eq!(first["path"], "/wallets");
    assert_eq!(first["rule"], "rule 1 (POST /wallets)");
    let sent = json!({"network": "Bitcoin", "name": "w0"}).to_string();
    assert_eq!(
        first["body_sha256"],
        hex::encode(sha2::Sha256::digest(sent.as_bytes()))
    );
    assert!(first["challenge_identifier"]
        .as_str()
        .is_some_and(|c| !c.is_empty()));
    // Each approval is on the chain before its completion, which carries Dfns' status.
    let seq_of = |l: &Value| l["seq"].as_u64().unwrap();
    let done = completed
        .iter()
        .find(|c| c["challenge_identifier"] == first["challenge_identifier"])
        .unwrap();
    assert!(seq_of(done) > seq_of(first));
    assert_eq!(done["upstream_status"], 200);
    assert!(refused[0]["rule"]
        .as_str()
        .unwrap()
        .contains("the body has \"Tron\""));
    // Never a token or a secret.
    let text: String = files
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    assert!(!text.contains(&f.payments.secret) && !text.contains(&bearer[7..]));

    // The metrics count what happened.
    let scraped = reqwest::get(format!("{metrics}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for expected in [
        r#"dfns_signer_approvals_total{key="hsm",client="payments",result="signed"} 12"#,
        r#"dfns_signer_approvals_total{key="",client="payments",result="policy_denied"} 2"#,
        r#"dfns_signer_refusals_total{reason="dfns-signer.policy-denied"} 2"#,
        r#"dfns_signer_stage_seconds_count{stage="sign",backend="pkcs11"} 12"#,
        r#"dfns_signer_stage_seconds_count{stage="init",backend=""} 12"#,
        r#"dfns_signer_upstream_responses_total{class="2xx"} 12"#,
        r#"dfns_signer_requests_in_flight 0"#,
    ] {
        assert!(scraped.contains(expected), "no `{expected}` in:\n{scraped}");
    }
    // The key's PKCS#11 session pool: open sessions (at least the one that signed), capacity.
    let gauge = |name: &str| -> i64 {
        let prefix = format!("{name}{{key=\"hsm\"}} ");
        scraped
            .lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .unwrap_or_else(|| panic!("no {name} in:\n{scraped}"))
            .parse()
            .unwrap()
    };
    assert!(gauge("dfns_signer_session_pool_open") >= 1);
    assert!(gauge("dfns_signer_session_pool_capacity") >= gauge("dfns_signer_session_pool_open"));
    assert_eq!(
        gauge("dfns_signer_session_pool_waits"),
        0,
        "one caller never waits"
    );
    let health = reqwest::get(format!("{metrics}/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
    let ready: Value = reqwest::get(format!("{url}/readyz"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready, json!({"ready": true, "keys": {"hsm": "ok"}}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_that_cannot_be_logged_is_not_given() {
    let Some(h) = hsm() else { return };
    let mut f = Fixture::start(&h, "audit-fail", Options::default()).await;
    let audit = f.dir.join("audit.log");
    f.extra_service = format!(
        "audit_log = \"{}\"\naudit_rotate_bytes = 4096",
        audit.display()
    );
    let config = f.write_config("audit-fail.toml", None, None);
    let service = f.serve(&config).await;
    let url = service.tcp_url().unwrap();
    let bearer = f.bearer();
    let body = json!({"network": "Bitcoin"});
    let (status, _) = post(&url, &f.payments.secret, &bearer, &body).await;
    assert_eq!(status, 200);
    // The name the full file must rotate to is taken by a directory: not even root can rename
    // a file over it, so the next line that needs a rotation cannot be written.
    let blocker = std::path::PathBuf::from(format!("{}.000000000001", audit.display()));
    std::fs::create_dir(&blocker).unwrap();
    std::fs::write(blocker.join("x"), "x").unwrap();
    let mut refused = None;
    for _ in 0..20 {
        let before = f.sim.stats();
        let (status, answer) = post(&url, &f.payments.secret, &bearer, &body).await;
        if status == 200 {
            continue;
        }
        refused = Some((status, answer, before));
        break;
    }
    let (status, answer, before) = refused.expect("the file filled up and could not rotate");
    assert_eq!(status, 503, "{answer}");
    assert_eq!(answer["error"]["id"], "dfns-signer.audit-failed");
    // The signature never reached Dfns: no token issued, nothing created.
    let after = f.sim.stats();
    assert_eq!(after.user_actions_issued, before.user_actions_issued);
    assert_eq!(after.side_effects, before.side_effects);
    // Once the way is clear, approvals are logged again, on an unbroken chain.
    std::fs::remove_dir_all(&blocker).unwrap();
    let (status, _) = post(&url, &f.payments.secret, &bearer, &body).await;
    assert_eq!(status, 200);
    let report = verify(&chain_files(&audit)).unwrap();
    assert!(report.ok(), "{:?}", report.broken);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_the_token_and_a_device_error_fails_over_to_the_second_device() {
    let Some(h) = hsm() else { return };
    let shim = Shim::new("service-failover");
    let through_shim = format!(
        "pkcs11:token=algs;object=p256?module-path={}&pin-source=env:{PIN_ENV}",
        shim.path.display()
    );
    let second = format!(
        "pkcs11:token=backup;object=p256?module-path={}&pin-source=env:{PIN_ENV}",
        h.module.display()
    );
    let options = Options {
        key_uri: Some(through_shim),
        second_device: Some(second),
        ..Options::default()
    };
    let mut f = Fixture::start(&h, "failover", options).await;
    let audit = f.dir.join("audit.log");
    f.extra_service = format!("audit_log = \"{}\"", audit.display());
    let config = f.write_config("failover.toml", None, None);
    let service = f.serve(&config).await;
    let url = service.tcp_url().unwrap();
    let bearer = f.bearer();
    let readyz = || async {
        let response = reqwest::get(format!("{url}/readyz")).await.unwrap();
        (
            response.status().as_u16(),
            response.json::<Value>().await.unwrap(),
        )
    };
    assert_eq!(readyz().await.0, 200);

    // The first device's token goes away: the key stays ready through its second device.
    shim.set(&[("token_absent", "1")]);
    settle().await;
    let (status, body) = readyz().await;
    assert_eq!(status, 200, "{body}");
    // Its module now fails every signature: the second device signs, under its credential.
    shim.set(&[("sign_error", "0x30")]);
    let (status, answer) = post(
        &url,
        &f.payments.secret,
        &bearer,
        &json!({"network": "Bitcoin"}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let lines = audit_lines(&audit);
    let approved = lines
        .iter()
        .rev()
        .find(|l| l["event"] == "approved")
        .unwrap();
    assert_eq!(approved["credential_id"], f.devices[1].1.as_str());
    shim.clear();
    let (status, _) = post(
        &url,
        &f.payments.secret,
        &bearer,
        &json!({"network": "Bitcoin"}),
    )
    .await;
    assert_eq!(status, 200);
    let lines = audit_lines(&audit);
    let approved = lines
        .iter()
        .rev()
        .find(|l| l["event"] == "approved")
        .unwrap();
    assert_eq!(
        approved["credential_id"],
        f.devices[0].1.as_str(),
        "back on the first device"
    );

    // A key on one device only: not ready while its token is gone, ready when it is back.
    let single = f
        .write_config("single.toml", None, None)
        .to_string_lossy()
        .into_owned();
    let text = std::fs::read_to_string(&single).unwrap();
    let (first_uri, first_cred) = f.devices[0].clone();
    let text = text
        .lines()
        .map(|l| {
            if l.starts_with("key = [") {
                format!("key = \"{first_uri}\"")
            } else if l.starts_with("credential_id = [") {
                format!("credential_id = \"{first_cred}\"")
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    write_private(std::path::Path::new(&single), &text);
    let one = f.serve(std::path::Path::new(&single)).await;
    let one_url = one.tcp_url().unwrap();
    let ready_one = || async {
        let response = reqwest::get(format!("{one_url}/readyz")).await.unwrap();
        (
            response.status().as_u16(),
            response.json::<Value>().await.unwrap(),
        )
    };
    let logins = shim.calls("C_Login");
    settle().await;
    assert_eq!(ready_one().await.0, 200);
    // Probes within a second share one round of checks: no more calls to the token.
    let looked = shim.calls("C_GetTokenInfo");
    assert_eq!(ready_one().await.0, 200);
    assert_eq!(shim.calls("C_GetTokenInfo"), looked);
    shim.set(&[("token_absent", "1")]);
    settle().await;
    let (status, body) = ready_one().await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["ready"], false);
    assert!(body["keys"]["hsm"].as_str().unwrap() != "ok", "{body}");
    shim.clear();
    settle().await;
    assert_eq!(
        ready_one().await.0,
        200,
        "ready again once the token is back"
    );
    assert_eq!(
        shim.calls("C_Login"),
        logins,
        "readiness never logs in: {:?}",
        shim.calls_log()
    );
}

/// Waits out the second for which `/readyz` reuses its last checks.
async fn settle() {
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
}

fn dfns_signer() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_dfns-signer"));
    command.env_remove("DFNS_SIGNER_CONFIG");
    command
}

/// `dfns-signer serve` as a child process; killed when the test ends.
struct Served {
    child: std::process::Child,
    url: String,
}

impl Served {
    fn start(config: &std::path::Path) -> Served {
        let mut child = dfns_signer()
            .args(["serve", "--config"])
            .arg(config)
            .args(["--output", "json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        let listening: Value =
            serde_json::from_str(&first).unwrap_or_else(|e| panic!("{e}: {first}"));
        let url = listening["tcp"].as_str().unwrap().to_owned();
        Served { child, url }
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_load_loses_no_request_and_sighup_adds_a_client() {
    let Some(h) = hsm() else { return };
    let mut f = Fixture::start(&h, "lifecycle", Options::default()).await;
    let audit = f.dir.join("audit.log");
    f.extra_service = format!("audit_log = \"{}\"", audit.display());
    let config = f.write_config("lifecycle.toml", None, None);

    // SIGHUP: a client added to the file is served without a restart.
    let mut served = Served::start(&config);
    let newcomer = dfns_signer::service::new_client_secret();
    let secret = secrecy::ExposeSecret::expose_secret(&newcomer.secret).to_owned();
    let body = json!({"network": "Bitcoin"});
    let (status, _) = post(&served.url, &secret, &f.bearer(), &body).await;
    assert_eq!(status, 401);
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "\n[[clients]]\nname = \"newcomer\"\nsecret_sha256 = \"{}\"\nkeys = [\"hsm\"]\n[[clients.rules]]\nallow = \"POST /wallets\"\n",
        newcomer.sha256_hex
    ));
    write_private(&config, &text);
    served.signal("HUP");
    let mut status = 0;
    for _ in 0..50 {
        status = post(&served.url, &secret, &f.bearer(), &body).await.0;
        if status == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(status, 200, "the new client is served after SIGHUP");

    // SIGTERM in the middle of 200 requests from 8 callers: each one either completed (and
    // both its lines are on the audit chain) or was turned away before anything was signed.
    let before = f.sim.stats();
    let lines_before = audit_lines(&audit).len();
    let bearer = Arc::new(f.bearer());
    let url = Arc::new(served.url.clone());
    let mut callers = tokio::task::JoinSet::new();
    for caller in 0..8 {
        let (bearer, url, secret) = (bearer.clone(), url.clone(), f.payments.secret.clone());
        callers.spawn(async move {
            let http = reqwest::Client::new();
            let mut outcomes = Vec::new();
            for n in 0..25 {
                let sent = http
                    .post(format!("{url}/wallets"))
                    .header("X-Dfns-Signer-Client", &secret)
                    .header("Authorization", bearer.as_str())
                    .header("Content-Type", "application/json")
                    .body(
                        json!({"network": "Bitcoin", "name": format!("{caller}-{n}")}).to_string(),
                    )
                    .send()
                    .await;
                outcomes.push(match sent {
                    Ok(r) => Some(r.status().as_u16()),
                    Err(_) => None,
                });
            }
            outcomes
        });
    }
    // Let some complete, then stop the service.
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        if f.sim.stats().side_effects >= before.side_effects + 30 {
            break;
        }
    }
    served.signal("TERM");
    let mut completed = 0u64;
    let mut turned_away = 0u64;
    while let Some(outcomes) = callers.join_next().await {
        for outcome in outcomes.unwrap() {
            match outcome {
                Some(200) => completed += 1,
                None => turned_away += 1,
                Some(other) => panic!("a request got {other}: neither completed nor turned away"),
            }
        }
    }
    assert_eq!(completed + turned_away, 200);
    assert!(
        completed >= 30 && turned_away > 0,
        "{completed} completed, {turned_away} turned away"
    );
    let exit = served.child.wait().unwrap();
    assert_eq!(exit.code(), Some(0), "SIGTERM after a drain exits 0");
    let after = f.sim.stats();
    assert_eq!(
        after.side_effects - before.side_effects,
        completed,
        "every completed request ran once"
    );
    assert_eq!(
        after.user_actions_used - before.user_actions_used,
        completed
    );
    assert_eq!(
        after.user_actions_issued - before.user_actions_issued,
        completed,
        "nothing was signed for a request that did not complete"
    );
    let lines = audit_lines(&audit);
    let new = &lines[lines_before..];
    let count = |event: &str| new.iter().filter(|l| l["event"] == event).count() as u64;
    assert_eq!(
        (count("approved"), count("completed")),
        (completed, completed)
    );
    assert!(verify(&chain_files(&audit)).unwrap().ok());
}
