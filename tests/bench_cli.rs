//! `dfns-signer bench`, run as a user runs it: against the in-process simulator (JSON and text
//! output), against a simulator elsewhere (`--base-url`, which must see exactly the requests
//! sent), and its refusals as two lines with their exit status. No timing is asserted: only
//! that the figures are there, positive and consistent.
#![cfg(all(feature = "cli", feature = "simulator"))]

mod common;

use std::process::{Command, Output};

use dfns_signer::simulator::Simulator;
use secrecy::ExposeSecret;
use serde_json::Value;

/// The binary, with none of this machine's settings (configuration file, `DFNS_*` variables).
fn bin() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_dfns-signer"));
    common::without_local_settings(&mut command, "/nonexistent/dfns-signer-tests".as_ref());
    command
}

fn key(name: &str) -> String {
    format!(
        "file:{}/tests/fixtures/keys/{name}.pem",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The last stdout line as JSON, after checking the run succeeded.
fn json_report(out: &Output) -> Value {
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "bench failed: {}\nstdout: {stdout}\nstderr: {}",
        out.status,
        text(&out.stderr)
    );
    let last = stdout.lines().last().unwrap_or("");
    serde_json::from_str(last).unwrap_or_else(|e| panic!("last line is not JSON ({e}): {stdout}"))
}

/// The figures every runner prints, positive and consistent.
fn check_figures(report: &Value, requests: u64, concurrency: u64) {
    assert_eq!(report["requests"], requests, "{report}");
    assert_eq!(report["concurrency"], concurrency, "{report}");
    assert_eq!(report["errors"], 0, "{report}");
    let number = |name: &str| {
        report[name]
            .as_f64()
            .unwrap_or_else(|| panic!("{name} is not a number: {report}"))
    };
    assert!(number("requests_per_second") > 0.0, "{report}");
    assert!(number("elapsed_s") > 0.0, "{report}");
    let (p50, p99) = (number("p50_ms"), number("p99_ms"));
    assert!(p50 > 0.0 && p50 <= p99, "{report}");
    assert!(number("cpu_ms_per_request") > 0.0, "{report}");
    assert!(report.get("first_error").is_none(), "{report}");
}

/// Two lines on stderr, what went wrong and what to do, and the exit status.
fn check_two_line_error(out: &Output, status: i32, says: &str) {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(status), "stderr: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "two lines: {stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    assert!(lines[1].starts_with("  what to do: "), "{stderr}");
    assert!(stderr.contains(says), "`{says}` in: {stderr}");
    assert!(out.stdout.is_empty(), "nothing on stdout");
}

#[test]
fn bench_on_the_in_process_simulator_prints_one_json_line() {
    let out = bin()
        .args(["bench", "--key", &key("ed25519")])
        .args(["--requests", "40", "--concurrency", "4", "--output", "json"])
        .output()
        .unwrap();
    let report = json_report(&out);
    check_figures(&report, 40, 4);
    assert_eq!(report["algorithm"], "ed25519");
    assert_eq!(report["target"], "in-process simulator");
    // The default warm-up is twice the concurrency; the simulator accepted one user action for
    // each request, warm-up included, and no other.
    assert_eq!(report["warmup"], 8, "{report}");
    assert_eq!(report["simulator_user_actions"], 48, "{report}");
    assert!(report["simulator_cpu_ms_per_request"].as_f64().unwrap() > 0.0);
    // Not a terminal: no progress bar, nothing on stderr.
    assert_eq!(text(&out.stderr), "");
}

#[test]
fn bench_text_output_names_each_figure() {
    let out = bin()
        .args(["bench", "--key", &key("p256")])
        .args(["--requests", "10", "--concurrency", "2", "--warmup", "1"])
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    for expected in [
        "10 signed POST /wallets",
        "2 in flight",
        "p256 key",
        "requests/s",
        "p50",
        "p99",
        "ms per request",
        "errors      0",
        "11 user actions accepted",
    ] {
        assert!(stdout.contains(expected), "`{expected}` in:\n{stdout}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_against_a_running_simulator_sends_exactly_what_it_reports() {
    let pem = std::fs::read_to_string(format!(
        "{}/tests/fixtures/keys/p256.pub.pem",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let sim = Simulator::builder()
        .root_public_key_pem(pem)
        .start()
        .await
        .unwrap();
    let mut command = bin();
    command
        .args(["bench", "--base-url", sim.base_url()])
        .args(["--key", &key("p256"), "--cred-id", sim.credential_id()])
        .args(["--requests", "30", "--concurrency", "3", "--warmup", "5"])
        .args(["--output", "json"])
        .env("DFNS_AUTH_TOKEN", sim.auth_token().expose_secret());
    let out = tokio::process::Command::from(command)
        .output()
        .await
        .unwrap();
    let report = json_report(&out);
    check_figures(&report, 30, 3);
    assert_eq!(report["algorithm"], "p256");
    assert_eq!(report["target"], sim.base_url());
    assert!(report.get("simulator_user_actions").is_none(), "{report}");
    let stats = sim.stats();
    assert_eq!(stats.user_actions_used, 35, "{stats:?}");
    assert_eq!(stats.requests.get("POST /wallets"), Some(&35), "{stats:?}");

    // A token the simulator does not know: every request fails, which is an error (Dfns
    // refused: 5), not a report of errors.
    let mut command = bin();
    command
        .args(["bench", "--base-url", sim.base_url()])
        .args(["--key", &key("p256"), "--cred-id", sim.credential_id()])
        .args(["--requests", "5", "--concurrency", "2"])
        .env("DFNS_AUTH_TOKEN", "not-a-token");
    let out = tokio::process::Command::from(command)
        .output()
        .await
        .unwrap();
    check_two_line_error(&out, 5, "every request failed");
    sim.shutdown().await;
}

#[test]
fn bench_refusals_are_two_lines_with_their_exit_status() {
    let cases: Vec<(Vec<String>, i32, &str)> = vec![
        (
            vec!["--concurrency".into(), "0".into()],
            2,
            "--concurrency must be at least 1",
        ),
        (
            vec!["--requests".into(), "0".into()],
            2,
            "--requests must be at least 1",
        ),
        // Every request creates a wallet: not on a remote API unless asked for.
        (
            vec!["--base-url".into(), "https://api.dfns.io".into()],
            2,
            "--allow-remote",
        ),
    ];
    for (args, status, says) in cases {
        let out = bin()
            .args(["bench", "--key", &key("p256")])
            .args(&args)
            .output()
            .unwrap();
        check_two_line_error(&out, status, says);
    }
    // No key at all.
    let out = bin().args(["bench", "--requests", "5"]).output().unwrap();
    check_two_line_error(&out, 2, "--key");
}

#[test]
fn bench_help_shows_an_example_on_its_own_line() {
    let out = bin().args(["bench", "--help"]).output().unwrap();
    assert!(out.status.success());
    let help = text(&out.stdout);
    assert!(
        help.lines()
            .any(|l| l.trim_start().starts_with("dfns-signer bench --key")),
        "{help}"
    );
}
