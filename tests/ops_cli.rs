//! The operator's commands run as an operator runs them — the real binary against the
//! in-process simulator: profiles and their precedence, the refusals of unsafe configuration
//! files, `credential register` (with a file key, a SoftHSM key, a registration code),
//! `credential list/deactivate`, `service-account create`, `login`, and `doctor` passing and
//! failing on each step.
#![cfg(all(feature = "cli", feature = "simulator"))]

mod common;

use std::path::PathBuf;

use dfns_signer::simulator::Simulator;
use secrecy::ExposeSecret;
use serde_json::Value;

fn fixture(path: &str) -> String {
    format!("{}/tests/fixtures/{path}", env!("CARGO_MANIFEST_DIR"))
}

fn file_key(name: &str) -> String {
    format!("file:{}", fixture(&format!("keys/{name}.pem")))
}

/// A simulator whose root credential is the P-256 fixture key, and a scratch directory with a
/// token file and a per-test `XDG_CONFIG_HOME`.
struct Ops {
    sim: Simulator,
    dir: PathBuf,
}

struct Run {
    code: i32,
    out: String,
    err: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.out)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", self.out, self.err))
    }
}

impl Ops {
    async fn start(name: &str) -> Ops {
        let sim = Simulator::builder()
            .root_public_key_pem(std::fs::read_to_string(fixture("keys/p256.pub.pem")).unwrap())
            .start()
            .await
            .unwrap();
        let dir = std::env::temp_dir().join(format!("dfns-ops-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("xdg")).unwrap();
        let ops = Ops { sim, dir };
        ops.write_private("token", ops.sim.auth_token().expose_secret());
        ops
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Writes a file readable by its owner only.
    fn write_private(&self, name: &str, text: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = self.path(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        path
    }

    /// A profile `sim` (the default) acting as the simulator's root user: token from a file,
    /// the root key and credential.
    fn root_profile(&self) -> String {
        format!(
            "default_profile = \"sim\"\n\n[profiles.sim]\nbase_url = \"{}\"\nauth_token = \"file:{}\"\ncredential_id = \"{}\"\nkey = \"{}\"\n",
            self.sim.base_url(),
            self.path("token").display(),
            self.sim.credential_id(),
            file_key("p256"),
        )
    }

    /// Runs the binary with `args` and `env` (and nothing of this machine's settings).
    async fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_dfns-signer"));
        common::without_local_settings(&mut command, &self.path("xdg")).args(args);
        let out = tokio::process::Command::from(command)
            .envs(env.iter().copied())
            .output()
            .await
            .unwrap();
        Run {
            code: out.status.code().unwrap_or(-1),
            out: String::from_utf8(out.stdout).unwrap(),
            err: String::from_utf8(out.stderr).unwrap(),
        }
    }
}

impl Drop for Ops {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

const WALLET: &str = r#"{"network":"EthereumSepolia"}"#;

/// Flags beat the environment, which beats the profile; the file is found by `--config`, by
/// `DFNS_SIGNER_CONFIG`, or in `$XDG_CONFIG_HOME/dfns-signer/config.toml`.
#[tokio::test]
async fn settings_come_from_flags_then_environment_then_profile() {
    let ops = Ops::start("precedence").await;
    let config = ops.write_private("config.toml", &ops.root_profile());
    let config = config.to_str().unwrap();
    let base = ops.sim.base_url().to_owned();
    let token = ops.sim.auth_token().expose_secret().to_owned();
    let nowhere = "http://127.0.0.1:9";

    // The profile alone: base URL, token, key and credential; a user action is signed.
    let run = ops
        .run(
            &[
                "call", "POST", "/wallets", "--data", WALLET, "--config", config,
            ],
            &[],
        )
        .await;
    assert_eq!(run.code, 0, "{}", run.err);
    assert_eq!(run.json()["network"], "EthereumSepolia");

    // The environment beats the profile...
    let run = ops
        .run(
            &["call", "GET", "/wallets", "--config", config],
            &[("DFNS_API_URL", nowhere)],
        )
        .await;
    assert_eq!(
        run.code, 1,
        "the unreachable URL from the environment was used: {}",
        run.err
    );
    let run = ops
        .run(
            &["call", "GET", "/wallets", "--config", config],
            &[("DFNS_AUTH_TOKEN", "not-a-token")],
        )
        .await;
    assert_eq!(run.code, 5, "the environment's token was used: {}", run.err);
    // ...and flags beat the environment.
    let run = ops
        .run(
            &[
                "call",
                "GET",
                "/wallets",
                "--config",
                config,
                "--base-url",
                &base,
                "--token",
                &token,
            ],
            &[
                ("DFNS_API_URL", nowhere),
                ("DFNS_AUTH_TOKEN", "not-a-token"),
            ],
        )
        .await;
    assert_eq!(run.code, 0, "{}", run.err);
    // The environment's key and credential beat the profile's: a key Dfns does not know
    // under that id is refused by the API.
    let run = ops
        .run(
            &[
                "call", "POST", "/wallets", "--data", WALLET, "--config", config,
            ],
            &[("DFNS_KEY", &file_key("ed25519"))],
        )
        .await;
    assert_eq!(run.code, 5, "{}", run.err);

    // Where the file is found: the environment, then the per-user default.
    let run = ops
        .run(
            &["call", "GET", "/wallets"],
            &[("DFNS_SIGNER_CONFIG", config)],
        )
        .await;
    assert_eq!(run.code, 0, "{}", run.err);
    ops.write_private("xdg/dfns-signer/config.toml", &ops.root_profile());
    let run = ops.run(&["call", "GET", "/wallets"], &[]).await;
    assert_eq!(run.code, 0, "{}", run.err);

    // A profile that is not there: usage error naming the ones that are.
    let run = ops
        .run(&["call", "GET", "/wallets", "--profile", "prod"], &[])
        .await;
    assert_eq!(run.code, 2, "{}", run.err);
    assert!(
        run.err.contains("prod") && run.err.contains("sim"),
        "{}",
        run.err
    );
    let run = ops
        .run(
            &["call", "GET", "/wallets"],
            &[("DFNS_SIGNER_PROFILE", "prod")],
        )
        .await;
    assert_eq!(run.code, 2, "{}", run.err);
}

/// A token or a PIN written in the file, an unknown key, a file others can read: each refused
/// with the line and the fix, and the secret never repeated.
#[tokio::test]
async fn unsafe_configuration_files_are_refused_with_the_line_and_the_fix() {
    let ops = Ops::start("unsafe").await;
    let base = ops.sim.base_url().to_owned();
    let cases: [(&str, String, &[&str]); 3] = [
        (
            "inline-token.toml",
            format!("[profiles.p]\nbase_url = \"{base}\"\nauth_token = \"eyJhbGciOiJsZWFrZWQ\"\n"),
            &[":3:", "env:"],
        ),
        (
            "inline-pin.toml",
            "[profiles.p]\n\nkey = \"piv:slot=9a?pin-value=246810\"\n".to_owned(),
            &[":3:", "pin-source"],
        ),
        (
            "unknown-key.toml",
            "[profiles.p]\nbase_url = \"https://api.dfns.io\"\ncredentail_id = \"x\"\n".to_owned(),
            &[":3:", "credentail_id"],
        ),
    ];
    for (name, text, needles) in &cases {
        let path = ops.write_private(name, text);
        let run = ops
            .run(
                &[
                    "call",
                    "GET",
                    "/wallets",
                    "--config",
                    path.to_str().unwrap(),
                ],
                &[],
            )
            .await;
        assert_eq!(run.code, 2, "{name}: {}", run.err);
        let lines: Vec<&str> = run.err.lines().collect();
        assert_eq!(lines.len(), 2, "{name}: two lines: {}", run.err);
        for needle in *needles {
            assert!(
                run.err.contains(needle),
                "{name}: no {needle:?} in {}",
                run.err
            );
        }
        for secret in ["eyJhbGciOiJsZWFrZWQ", "246810"] {
            assert!(
                !run.err.contains(secret),
                "{name} repeated a secret: {}",
                run.err
            );
        }
    }

    // Readable by others: refused like ssh does, with the chmod to run.
    use std::os::unix::fs::PermissionsExt;
    let path = ops.write_private("shared.toml", &ops.root_profile());
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let run = ops
        .run(
            &[
                "call",
                "GET",
                "/wallets",
                "--config",
                path.to_str().unwrap(),
            ],
            &[],
        )
        .await;
    assert_eq!(run.code, 2, "{}", run.err);
    assert!(
        run.err.contains(&format!("chmod 600 {}", path.display())),
        "{}",
        run.err
    );
}

/// `credential register` with a file key (signed by the profile's credential), then a call
/// signed by the new credential; `credential list` shows it, `credential deactivate` stops it.
#[tokio::test]
async fn credential_register_list_and_deactivate() {
    let ops = Ops::start("credential").await;
    let config = ops.write_private("config.toml", &ops.root_profile());
    let config = config.to_str().unwrap();
    let new_key = file_key("ed25519");

    let run = ops
        .run(
            &[
                "credential",
                "register",
                "--key",
                &new_key,
                "--name",
                "laptop",
                "--config",
                config,
                "--output",
                "json",
            ],
            &[],
        )
        .await;
    assert_eq!(run.code, 0, "{}", run.err);
    let registered = run.json();
    let cred_id = registered["credential_id"].as_str().unwrap().to_owned();
    assert!(!cred_id.is_empty());
    assert_eq!(registered["name"], "laptop");
    assert_eq!(
        registered["public_key"].as_str().unwrap().trim(),
        std::fs::read_to_string(fixture("keys/ed25519.pub.pem"))
            .unwrap()
            .trim()
    );

    // The new credential signs: the profile's token, the new key and id.
    let sign_with_new = [
        "call",
        "POST",
        "/wallets",
        "--data",
        WALLET,
        "--config",
        config,
        "--key",
        &new_key,
        "--cred-id",
        &cred_id,
    ];
    let run = ops.run(&sign_with_new, &[]).await;
    assert_eq!(run.code, 0, "{}", run.err);

    let run = ops
        .run(
            &["credential", "list", "--config", config, "--output", "json"],
            &[],
        )
        .await;
    assert_eq!(run.code, 0, "{}", run.err);
    let listed = run.json();
    let ours = listed["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["credential_id"] == cred_id.as_str())
        .expect("the new credential is listed")
        .clone();
    assert_eq!(ours["is_active"], true);
    assert_eq!(ours["name"], "laptop");
    let run = ops
        .run(&["credential", "list", "--config", config], &[])
        .await;
    assert!(
        run.out.contains("laptop") && run.out.contains("active"),
        "{}",
        run.out
    );

    // Deactivated by its id (looked up), it no longer signs.
    let run = ops
        .run(
            &[
                "credential",
                "deactivate",
                &cred_id,
                "--config",
                config,
                "--output",
                "json",
            ],
            &[],
        )
        .await;
    assert_eq!(run.code, 0, "{}", run.err);
    assert_eq!(run.json()["credential_uuid"], ours["credential_uuid"]);
    // Dfns no longer offers it for user actions: refused before anything is signed.
    let run = ops.run(&sign_with_new, &[]).await;
    assert_eq!(run.code, 5, "{}", run.err);
    assert!(run.err.contains("not allowed"), "{}", run.err);
    assert!(run.err.contains("credential list"), "{}", run.err);
}

/// `credential code` on a machine with a credential, `credential register --code` on one
/// without (no token, no credential: only the base URL and the code), then a call with it.
#[tokio::test]
async fn credential_register_with_a_code_needs_no_credential() {
    let ops = Ops::start("code").await;
    let config = ops.write_private("config.toml", &ops.root_profile());
    let run = ops
        .run(
            &[
                "credential",
                "code",
                "--config",
                config.to_str().unwrap(),
                "--output",
                "json",
            ],
            &[],
        )
        .await;
    assert_eq!(run.code, 0, "{}", run.err);
    let code = run.json()["code"].as_str().unwrap().to_owned();

    let base = ops.sim.base_url().to_owned();
    let new_key = file_key("secp256k1");
    let run = ops
        .run(
            &[
                "credential",
                "register",
                "--code",
                &code,
                "--key",
                &new_key,
                "--name",
                "by-code",
                "--base-url",
                &base,
                "--output",
                "json",
            ],
            &[],
        )
        .await;
    assert_eq!(run.code, 0, "{}", run.err);
    let cred_id = run.json()["credential_id"].as_str().unwrap().to_owned();

    let run = ops
        .run(
            &[
                "call",
                "POST",
                "/wallets",
                "--data",
                WALLET,
                "--base-url",
                &base,
                "--key",
                &new_key,
                "--cred-id",
                &cred_id,
            ],
            &[("DFNS_AUTH_TOKEN", ops.sim.auth_token().expose_secret())],
        )
        .await;
    assert_eq!(run.code, 0, "{}", run.err);

    // A code works once.
    let run = ops
        .run(
            &[
                "credential",
                "register",
                "--code",
                &code,
                "--key",
                &file_key("rsa2048"),
                "--name",
                "again",
                "--base-url",
                &base,
            ],
            &[],
        )
        .await;
    assert_eq!(run.code, 5, "{}", run.err);
}

/// `service-account create` prints the token once (stdout, warning on stderr) or writes it to
/// a new 0600 file; a call as the service account then works.
#[tokio::test]
async fn service_account_create_then_call_as_it() {
    let ops = Ops::start("sa").await;
    let config = ops.write_private("config.toml", &ops.root_profile());
    let config = config.to_str().unwrap();
    let sa_key = file_key("ed25519");
    let run = ops
        .run(
            &[
                "service-account",
                "create",
                "--key",
                &sa_key,
                "--name",
                "custody-backend",
                "--config",
                config,
                "--output",
                "json",
            ],
            &[],
        )
        .await;
    assert_eq!(run.code, 0, "{}", run.err);
    assert!(run.err.contains("only time"), "{}", run.err);
    let created = run.json();
    let token = created["token"].as_str().unwrap().to_owned();
    let cred_id = created["credential_id"].as_str().unwrap().to_owned();
    assert!(
        created["user_id"].as_str().unwrap().starts_with("us-"),
        "{created}"
    );

    let base = ops.sim.base_url().to_owned();
    let run = ops
        .run(
            &[
                "call",
                "POST",
                "/wallets",
                "--data",
                WALLET,
                "--base-url",
                &base,
                "--key",
                &sa_key,
                "--cred-id",
                &cred_id,
            ],
            &[("DFNS_AUTH_TOKEN", &token)],
        )
        .await;
    assert_eq!(run.code, 0, "{}", run.err);

    // --token-out: a new file, owner-only, and the token nowhere else.
    let out_file = ops.path("sa-token");
    let run = ops
        .run(
            &[
                "service-account",
                "create",
                "--key",
                &file_key("p256"),
                "--name",
                "second",
                "--config",
                config,
                "--token-out",
                out_file.to_str().unwrap(),
                "--output",
                "json",
            ],
            &[],
        )
        .await;
    assert_eq!(run.code, 0, "{}", run.err);
    let created = run.json();
    assert!(created.get("token").is_none(), "{created}");
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(&out_file).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let written = std::fs::read_to_string(&out_file).unwrap();
    assert!(written.trim().len() > 20);
    assert!(!run.out.contains(written.trim()) && !run.err.contains(written.trim()));

    // An existing file is refused before anything is created.
    let before = ops.sim.stats();
    let run = ops
        .run(
            &[
                "service-account",
                "create",
                "--key",
                &file_key("p256"),
                "--name",
                "third",
                "--config",
                config,
                "--token-out",
                out_file.to_str().unwrap(),
            ],
            &[],
        )
        .await;
    assert_eq!(run.code, 2, "{}", run.err);
    assert_eq!(ops.sim.stats(), before, "nothing reached the API");
}

/// `login` with the user's key: the login challenge offers one credential, which is signed
/// for; the token printed works.
#[tokio::test]
async fn login_prints_a_token_that_works() {
    let ops = Ops::start("login").await;
    let base = ops.sim.base_url().to_owned();
    let run = ops
        .run(
            &[
                "login",
                "--key",
                &file_key("p256"),
                "--username",
                ops.sim.username(),
                "--org-id",
                ops.sim.org_id(),
                "--base-url",
                &base,
                "--output",
                "json",
            ],
            &[],
        )
        .await;
    assert_eq!(run.code, 0, "{}", run.err);
    let token = run.json()["token"].as_str().unwrap().to_owned();
    let run = ops
        .run(
            &["call", "GET", "/wallets", "--base-url", &base],
            &[("DFNS_AUTH_TOKEN", &token)],
        )
        .await;
    assert_eq!(run.code, 0, "{}", run.err);

    // The wrong key for this user: Dfns refuses the login.
    let run = ops
        .run(
            &[
                "login",
                "--key",
                &file_key("ed25519"),
                "--username",
                ops.sim.username(),
                "--org-id",
                ops.sim.org_id(),
                "--base-url",
                &base,
            ],
            &[],
        )
        .await;
    assert_eq!(run.code, 5, "{}", run.err);
}

/// The names and results of `doctor --output json`'s checks.
fn checks(run: &Run) -> Vec<(String, bool, bool)> {
    run.json()["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_owned(),
                c["ok"].as_bool().unwrap(),
                c["skipped"].as_bool().unwrap(),
            )
        })
        .collect()
}

fn check<'a>(all: &'a [(String, bool, bool)], name: &str) -> &'a (String, bool, bool) {
    all.iter().find(|c| c.0 == name).unwrap()
}

/// `doctor` passes on a good profile and fails on each step with that step's fix and exit
/// status: the configuration, the key URI, the API, the token, the credential.
#[tokio::test]
async fn doctor_passes_and_fails_on_each_step() {
    let ops = Ops::start("doctor").await;
    let config = ops.write_private("config.toml", &ops.root_profile());
    let config = config.to_str().unwrap();
    let doctor = |extra: &[&str]| {
        let mut args = vec!["doctor", "--config", config, "--output", "json"];
        args.extend_from_slice(extra);
        args.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let run_doctor = |extra: Vec<String>, env: Vec<(&'static str, String)>| {
        let ops = &ops;
        async move {
            let args: Vec<&str> = extra.iter().map(String::as_str).collect();
            let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
            ops.run(&args, &env).await
        }
    };

    let run = run_doctor(doctor(&[]), vec![]).await;
    assert_eq!(run.code, 0, "{}\n{}", run.out, run.err);
    let all = checks(&run);
    let names: Vec<&str> = all.iter().map(|c| c.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "config",
            "key",
            "pin",
            "api",
            "token",
            "credential",
            "clock"
        ]
    );
    assert!(all.iter().all(|c| c.1 && !c.2), "{all:?}");
    let text = ops.run(&["doctor", "--config", config], &[]).await;
    assert_eq!(text.code, 0);
    assert_eq!(text.out.matches('✓').count(), 7, "{}", text.out);

    // The key is not the one registered under the credential id.
    let run = run_doctor(doctor(&["--key", &file_key("ed25519")]), vec![]).await;
    assert_eq!(run.code, 5, "{}", run.out);
    let all = checks(&run);
    assert!(
        check(&all, "key").1 && !check(&all, "credential").1,
        "{all:?}"
    );
    assert!(run.out.contains("another public key"), "{}", run.out);

    // A wrong token.
    let run = run_doctor(doctor(&[]), vec![("DFNS_AUTH_TOKEN", "not-a-token".into())]).await;
    assert_eq!(run.code, 5, "{}", run.out);
    let all = checks(&run);
    assert!(check(&all, "api").1 && !check(&all, "token").1, "{all:?}");

    // The API unreachable.
    let run = run_doctor(doctor(&["--base-url", "http://127.0.0.1:9"]), vec![]).await;
    assert_eq!(run.code, 1, "{}", run.out);
    let all = checks(&run);
    assert!(!check(&all, "api").1 && check(&all, "key").1, "{all:?}");
    let text = ops
        .run(
            &[
                "doctor",
                "--config",
                config,
                "--base-url",
                "http://127.0.0.1:9",
            ],
            &[],
        )
        .await;
    assert!(
        text.out.contains("✗ api") && text.out.contains("check the base URL"),
        "{}",
        text.out
    );

    // A key URI that does not open (the file is missing), and a malformed PIN source.
    let run = run_doctor(doctor(&["--key", "file:/nonexistent/key.pem"]), vec![]).await;
    assert_eq!(run.code, 2, "{}", run.out);
    assert!(!check(&checks(&run), "key").1);
    let run = run_doctor(doctor(&["--key", "piv:slot=9a?pin-source=123456"]), vec![]).await;
    assert_eq!(run.code, 2, "{}", run.out);
    assert!(!run.out.contains("123456") || run.out.contains("pin-source=[REDACTED]"));

    // The configuration does not load: the rest is not run.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(config, std::fs::Permissions::from_mode(0o640)).unwrap();
    let run = run_doctor(doctor(&[]), vec![]).await;
    assert_eq!(run.code, 2, "{}", run.out);
    let all = checks(&run);
    assert!(
        !check(&all, "config").1 && all.iter().skip(1).all(|c| !c.1 && c.2),
        "{all:?}"
    );
}

/// `doctor` with a SoftHSM key: a wrong PIN fails the `pin` step (one try spent, exit 4);
/// a PIN that is not at hand is skipped without a try (exit 0); the right one passes.
#[cfg(feature = "pkcs11")]
#[tokio::test]
async fn doctor_checks_the_pin_without_guessing() {
    if common::skip::should_skip(
        common::skip::SKIP_HARDWARE,
        "doctor on SoftHSM needs softhsm2 and opensc",
    ) {
        return;
    }
    let ops = Ops::start("doctor-pin").await;
    let module = common::modules::softhsm();
    let hsm = ops.path("hsm");
    common::softhsm::cli_token_with_keys(&hsm, "ops-doctor", &module, "p256");
    let key = format!(
        "pkcs11:token=ops-doctor;object=p256?module-path={}&pin-source=env:OPS_PIN",
        module.display()
    );
    let conf = hsm.join("softhsm2.conf");
    let conf = conf.to_str().unwrap();
    let config = ops.write_private("config.toml", &ops.root_profile());
    let config = config.to_str().unwrap();

    // Registered first, as an operator would, then checked.
    let run = ops
        .run(
            &[
                "credential",
                "register",
                "--key",
                &key,
                "--name",
                "hsm",
                "--config",
                config,
                "--output",
                "json",
            ],
            &[("SOFTHSM2_CONF", conf), ("OPS_PIN", "864213")],
        )
        .await;
    assert_eq!(run.code, 0, "{}", run.err);
    let cred_id = run.json()["credential_id"].as_str().unwrap().to_owned();
    let doctor = [
        "doctor",
        "--config",
        config,
        "--key",
        &key,
        "--cred-id",
        &cred_id,
        "--output",
        "json",
    ];

    let run = ops
        .run(&doctor, &[("SOFTHSM2_CONF", conf), ("OPS_PIN", "864213")])
        .await;
    assert_eq!(run.code, 0, "{}", run.out);
    assert!(checks(&run).iter().all(|c| c.1 && !c.2), "{}", run.out);

    let run = ops
        .run(&doctor, &[("SOFTHSM2_CONF", conf), ("OPS_PIN", "000000")])
        .await;
    assert_eq!(run.code, 4, "{}", run.out);
    let all = checks(&run);
    assert!(check(&all, "key").1 && !check(&all, "pin").1, "{all:?}");
    assert!(!run.out.contains("000000"), "{}", run.out);

    let run = ops.run(&doctor, &[("SOFTHSM2_CONF", conf)]).await;
    assert_eq!(run.code, 0, "{}", run.out);
    let all = checks(&run);
    assert!(check(&all, "pin").2 && check(&all, "key").1, "{all:?}");
    assert!(run.out.contains("not at hand"), "{}", run.out);

    // The PIN that was refused cost one try only: the right PIN still opens the key.
    let run = ops
        .run(
            &[
                "call",
                "POST",
                "/wallets",
                "--data",
                WALLET,
                "--config",
                config,
                "--key",
                &key,
                "--cred-id",
                &cred_id,
            ],
            &[("SOFTHSM2_CONF", conf), ("OPS_PIN", "864213")],
        )
        .await;
    assert_eq!(run.code, 0, "{}", run.err);
}

/// `completions` prints a script for each shell that names the commands.
#[tokio::test]
async fn completions_name_the_commands() {
    let ops = Ops::start("completions").await;
    for shell in ["bash", "zsh", "fish"] {
        let run = ops.run(&["completions", shell], &[]).await;
        assert_eq!(run.code, 0, "{}", run.err);
        for command in ["service-account", "doctor", "credential"] {
            assert!(run.out.contains(command), "{shell}: {command}");
        }
    }
    let run = ops.run(&["completions", "tcsh"], &[]).await;
    assert_eq!(run.code, 2);
}

/// The README's operator's walk-through, run as written: an empty SoftHSM token, two keys made
/// on it, a service account registered with one of them, `doctor`, a signed call.
#[cfg(feature = "pkcs11")]
#[test]
fn the_readme_walkthrough_runs_as_written() {
    if common::skip::should_skip(
        common::skip::SKIP_HARDWARE,
        "the walk-through needs softhsm2 and opensc",
    ) {
        return;
    }
    // The block starts a simulator in the background, stopped however the block ends.
    let common::readme::BlockRun {
        stdout,
        stderr,
        success,
    } = common::readme::run_block(
        "### Operator's walk-through",
        "dfns-ops-walkthrough",
        |_| {},
    );
    assert!(success, "{stdout}\n{stderr}");
    // Both doctors passed every check, and the call created a wallet.
    assert_eq!(stdout.matches('✓').count(), 14, "{stdout}");
    assert!(
        stdout.contains("\"network\": \"EthereumSepolia\""),
        "{stdout}"
    );
    assert!(
        !stdout.contains("918273") && !stderr.contains("918273"),
        "the PIN leaked"
    );
}
