//! The configuration file through the library's API: where it is found, what it refuses (with
//! the line, and never the secret), which setting wins, and a client built from a profile
//! talking to the in-process simulator.
#![cfg(feature = "client")]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use dfns_signer::config::{
    AuthToken, Config, ConfigError, ConfigOrigin, Origin, Overrides, Settings, TokenSource,
};
use dfns_signer::{DfnsClient, Error};
use secrecy::{ExposeSecret, SecretString};

/// A fresh directory for one test (no tempfile crate: the dev-dependencies stay as they are).
fn scratch(name: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "dfns-config-{}-{name}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes `text` to `path` with permission bits `mode`.
fn write(path: &Path, text: &str, mode: u32) -> PathBuf {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    path.to_owned()
}

/// An environment made of `pairs` only: tests never read or change the process environment
/// (they run in parallel).
fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let pairs: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml(text, Path::new("/srv/custody/dfns.toml"))
}

/// The error's message, its Debug form and its fix, as anyone could get to see them.
fn everything_shown(e: &ConfigError) -> String {
    format!("{e}\n{e:?}\n{}", e.fix())
}

const TWO_PROFILES: &str = r#"
default_profile = "staging"

[profiles.staging]
base_url = "https://staging.example"
auth_token = "env:STAGING_TOKEN"
credential_id = "cred-staging"
key = "file:/keys/staging.pem"
timeout_seconds = 12
retries = 1

[profiles.prod]
base_url = "https://api.dfns.io"
auth_token = "file:/run/secrets/dfns-prod"
credential_id = "cred-prod"
key = "pkcs11:token=custody;object=dfns?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=env:HSM_PIN"
"#;

#[test]
fn each_level_overrides_the_one_below() {
    let dir = scratch("precedence");
    let file = write(&dir.join("c.toml"), TWO_PROFILES, 0o600);
    let config = Some(file.as_path());
    let staging = Origin::Profile {
        name: "staging".into(),
    };

    // Profile only.
    let s = Settings::load(config, None, Overrides::default(), &env_of(&[])).unwrap();
    assert_eq!(s.base_url.value, "https://staging.example");
    assert_eq!(s.base_url.origin, staging);
    assert_eq!(s.credential_id.as_ref().unwrap().value, "cred-staging");
    assert_eq!(s.key.as_ref().unwrap().value, "file:/keys/staging.pem");
    assert_eq!(s.timeout.value, Duration::from_secs(12));
    assert_eq!(s.retries.as_ref().unwrap().value, 1);
    let token = s.auth_token.unwrap();
    assert_eq!(token.origin, staging);
    assert!(
        matches!(&token.value, AuthToken::Source(TokenSource::Env(n)) if n == "STAGING_TOKEN"),
        "{token:?}"
    );

    // The environment over the profile (the SDK examples' variables).
    let env = env_of(&[
        ("DFNS_API_URL", "https://env.example"),
        ("DFNS_AUTH_TOKEN", "token-from-env"),
        ("DFNS_CRED_ID", "cred-env"),
        ("DFNS_KEY", "file:/keys/env.pem"),
    ]);
    let s = Settings::load(config, None, Overrides::default(), &env).unwrap();
    assert_eq!(
        (s.base_url.value.as_str(), &s.base_url.origin),
        ("https://env.example", &Origin::Env("DFNS_API_URL"))
    );
    assert_eq!(s.credential_id.as_ref().unwrap().value, "cred-env");
    assert_eq!(s.key.as_ref().unwrap().value, "file:/keys/env.pem");
    let token = s.auth_token.unwrap();
    assert_eq!(token.origin, Origin::Env("DFNS_AUTH_TOKEN"));
    assert_eq!(
        token.value.read().unwrap().expose_secret(),
        "token-from-env"
    );
    // Settings that have no variable stay with the profile.
    assert_eq!(s.timeout.origin, staging);

    // Flags over the environment.
    let flags = Overrides {
        base_url: Some("https://flag.example".into()),
        auth_token: Some(SecretString::from("token-from-flag")),
        credential_id: Some("cred-flag".into()),
        key: Some("file:/keys/flag.pem".into()),
        timeout: Some(Duration::from_secs(3)),
    };
    let s = Settings::load(config, None, flags, &env).unwrap();
    for (value, origin, want) in [
        (
            &s.base_url.value,
            &s.base_url.origin,
            "https://flag.example",
        ),
        (
            &s.credential_id.as_ref().unwrap().value,
            &s.credential_id.as_ref().unwrap().origin,
            "cred-flag",
        ),
        (
            &s.key.as_ref().unwrap().value,
            &s.key.as_ref().unwrap().origin,
            "file:/keys/flag.pem",
        ),
    ] {
        assert_eq!((value.as_str(), origin), (want, &Origin::Flag));
    }
    assert_eq!(s.timeout.value, Duration::from_secs(3));
    let token = s.auth_token.unwrap();
    assert_eq!(token.origin, Origin::Flag);
    assert_eq!(
        token.value.read().unwrap().expose_secret(),
        "token-from-flag"
    );
    assert!(!format!("{token:?}").contains("token-from-flag"));

    // Empty variables count as unset.
    let env = env_of(&[("DFNS_API_URL", ""), ("DFNS_CRED_ID", "")]);
    let s = Settings::load(config, None, Overrides::default(), &env).unwrap();
    assert_eq!(s.base_url.value, "https://staging.example");
    assert_eq!(s.credential_id.unwrap().value, "cred-staging");

    // No file, no variable, no flag: the defaults.
    let s = Settings::load(None, None, Overrides::default(), &env_of(&[])).unwrap();
    assert_eq!(
        (s.base_url.value.as_str(), &s.base_url.origin),
        ("https://api.dfns.io", &Origin::Default)
    );
    assert_eq!(s.timeout.value, Duration::from_secs(30));
    assert!(s.auth_token.is_none() && s.credential_id.is_none() && s.key.is_none());
}

#[test]
fn the_profile_is_the_argument_then_the_variable_then_the_default() {
    let dir = scratch("choice");
    let file = write(&dir.join("c.toml"), TWO_PROFILES, 0o600);
    let cred = |profile: Option<&str>, env: &[(&str, &str)]| {
        Settings::load(Some(&file), profile, Overrides::default(), &env_of(env))
            .map(|s| s.credential_id.unwrap().value)
    };
    assert_eq!(cred(None, &[]).unwrap(), "cred-staging");
    assert_eq!(
        cred(None, &[("DFNS_SIGNER_PROFILE", "prod")]).unwrap(),
        "cred-prod"
    );
    assert_eq!(
        cred(Some("staging"), &[("DFNS_SIGNER_PROFILE", "prod")]).unwrap(),
        "cred-staging"
    );

    let Err(err) = cred(Some("qa"), &[]) else {
        panic!("a missing profile was accepted")
    };
    match &err {
        ConfigError::NoSuchProfile { name, known, .. } => {
            assert_eq!(name, "qa");
            assert_eq!(known, &["prod", "staging"]);
        }
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains("prod, staging"), "{err}");
    assert!(err.fix().contains("[profiles.qa]"), "{}", err.fix());

    // Asking for a profile where there is no file at all.
    let home = scratch("no-file");
    let err = Settings::load(
        None,
        Some("prod"),
        Overrides::default(),
        &env_of(&[("HOME", home.to_str().unwrap())]),
    )
    .unwrap_err();
    assert!(matches!(err, ConfigError::NoConfigFile { .. }), "{err}");
    assert!(
        err.to_string().contains(".config/dfns-signer/config.toml"),
        "{err}"
    );
}

#[test]
fn an_inline_token_is_refused_at_its_line_without_echoing_it() {
    let err = parse(
        "[profiles.prod]\n\
         base_url = \"https://api.dfns.io\"\n\
         auth_token = \"eyJhbGciOiJFUzI1NiJ9.PLANTED-token.c2ln\"\n",
    )
    .unwrap_err();
    match &err {
        ConfigError::InlineSecret { line, field, .. } => {
            assert_eq!((*line, field.as_str()), (3, "profiles.prod.auth_token"))
        }
        other => panic!("{other}"),
    }
    let shown = everything_shown(&err);
    assert!(!shown.contains("PLANTED"), "{shown}");
    assert!(shown.contains("/srv/custody/dfns.toml:3"), "{shown}");
    assert!(
        err.fix().contains("auth_token = \"env:DFNS_AUTH_TOKEN\""),
        "{}",
        err.fix()
    );
}

#[test]
fn a_pin_inside_the_key_uri_is_refused_at_its_line_without_echoing_it() {
    for uri in [
        "pkcs11:token=custody;object=dfns?module-path=/m.so&pin-value=987123",
        "piv:slot=9a?serial=1&pin=987123",
        "piv:slot=9a?pin-source=987123",
    ] {
        let err = parse(&format!(
            "default_profile = \"p\"\n\n[profiles.p]\ncredential_id = \"c\"\nkey = \"{uri}\"\n"
        ))
        .unwrap_err();
        match &err {
            ConfigError::InlineSecret { line, field, .. } => {
                assert_eq!((*line, field.as_str()), (5, "profiles.p.key"), "{uri}")
            }
            other => panic!("{uri}: {other}"),
        }
        let shown = everything_shown(&err);
        assert!(!shown.contains("987123"), "{shown}");
        assert!(err.fix().contains("pin-source=env:NAME"), "{}", err.fix());
    }
}

#[test]
fn unknown_keys_are_refused_at_their_line_and_secret_ones_as_secrets() {
    let err =
        parse("[profiles.p]\nbase_url = \"https://api.dfns.io\"\ntimeout_secs = 5\n").unwrap_err();
    match &err {
        ConfigError::UnknownKey { line, key, .. } => {
            assert_eq!((*line, key.as_str()), (3, "timeout_secs"))
        }
        other => panic!("{other}"),
    }
    assert!(err.fix().contains("timeout_seconds"), "{}", err.fix());

    // Top level: a table the format does not have (the service's is `[listen]`).
    let err = parse("[listner]\naddress = \"127.0.0.1:1\"\n").unwrap_err();
    assert!(
        matches!(&err, ConfigError::UnknownKey { line: 1, key, .. } if key == "listner"),
        "{err}"
    );
    assert!(err.fix().contains("[listen]"), "{}", err.fix());
    // The service's sections are the service's to check: the profile reader accepts them.
    assert!(parse("[listen]\naddress = \"127.0.0.1:1\"\n").is_ok());

    for key in ["pin", "pin_value", "token", "password"] {
        let err = parse(&format!(
            "[profiles.p]\ncredential_id = \"c\"\n{key} = \"PLANTED-4711\"\n"
        ))
        .unwrap_err();
        match &err {
            ConfigError::InlineSecret { line, field, .. } => {
                assert_eq!((*line, field.as_str()), (3, key))
            }
            other => panic!("{key}: {other}"),
        }
        assert!(!everything_shown(&err).contains("PLANTED"), "{err:?}");
    }
}

#[test]
fn other_bad_values_are_invalid_at_their_line() {
    let cases = [
        ("key = \"hsm:custody\"", "profiles.p.key", "unknown scheme"),
        (
            "timeout_seconds = 900",
            "profiles.p.timeout_seconds",
            "1..=600",
        ),
        ("retries = 50", "profiles.p.retries", "0..=10"),
        ("base_url = \"ws://x.example\"", "profiles.p.base_url", "ws"),
    ];
    for (line_text, want_field, want_reason) in cases {
        let err = parse(&format!("[profiles.p]\n# comment\n{line_text}\n")).unwrap_err();
        match &err {
            ConfigError::Invalid {
                line,
                field,
                reason,
                ..
            } => {
                assert_eq!((*line, field.as_str()), (3, want_field), "{line_text}");
                assert!(reason.contains(want_reason), "{line_text}: {reason}");
            }
            other => panic!("{line_text}: {other}"),
        }
    }
    let err = parse("[profiles.p]\nretries = \n").unwrap_err();
    assert!(matches!(err, ConfigError::Syntax { line: 2, .. }), "{err}");
}

#[test]
fn load_refuses_files_others_can_read_or_write() {
    let dir = scratch("perms");
    let text = "[profiles.p]\ncredential_id = \"c\"\n";
    for mode in [0o644, 0o640, 0o602, 0o660] {
        let file = write(&dir.join(format!("c{mode:o}.toml")), text, mode);
        let err = Config::load(&file).unwrap_err();
        match &err {
            ConfigError::Permissions { mode: m, .. } => assert_eq!(*m, mode),
            other => panic!("{mode:o}: {other}"),
        }
        assert_eq!(err.fix(), format!("chmod 600 {}", file.display()));
    }
    for mode in [0o600, 0o400] {
        let file = write(&dir.join(format!("ok{mode:o}.toml")), text, mode);
        let config = Config::load(&file).unwrap();
        assert_eq!(config.path(), file);
        assert_eq!(config.profile_names(), ["p"]);
    }
    // A symbolic link is judged by its target.
    let target = write(&dir.join("target.toml"), text, 0o644);
    let link = dir.join("link.toml");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    assert!(matches!(
        Config::load(&link),
        Err(ConfigError::Permissions { mode: 0o644, .. })
    ));
    // from_toml checks the text only.
    assert!(Config::from_toml(text, &target).is_ok());
}

#[test]
fn token_sources_read_env_and_private_files() {
    // A variable name no other test uses: the process environment is shared.
    std::env::set_var("DFNS_SIGNER_TEST_CONFIG_TOKEN", "tok-from-env");
    let token = TokenSource::parse("env:DFNS_SIGNER_TEST_CONFIG_TOKEN")
        .unwrap()
        .read()
        .unwrap();
    assert_eq!(token.expose_secret(), "tok-from-env");
    let err = TokenSource::Env("DFNS_SIGNER_TEST_CONFIG_UNSET".into())
        .read()
        .unwrap_err();
    assert!(
        err.to_string().contains("DFNS_SIGNER_TEST_CONFIG_UNSET"),
        "{err}"
    );

    let dir = scratch("token");
    let file = write(
        &dir.join("token"),
        "  tok-from-file  \nsecond line\n",
        0o600,
    );
    let source = TokenSource::parse(&format!("file:{}", file.display())).unwrap();
    assert_eq!(source.read().unwrap().expose_secret(), "tok-from-file");
    assert_eq!(source.to_string(), format!("file:{}", file.display()));

    let open_file = write(&dir.join("open-token"), "tok-PLANTED\n", 0o644);
    let err = TokenSource::File(open_file.clone()).read().unwrap_err();
    assert!(matches!(err, ConfigError::Permissions { .. }), "{err}");
    assert_eq!(err.fix(), format!("chmod 600 {}", open_file.display()));
    assert!(!everything_shown(&err).contains("PLANTED"));

    let empty = write(&dir.join("empty"), "\n", 0o600);
    let err = TokenSource::File(empty).read().unwrap_err();
    assert!(err.to_string().contains("empty"), "{err}");
    let err = TokenSource::File(dir.join("missing")).read().unwrap_err();
    assert!(matches!(err, ConfigError::TokenUnavailable { .. }), "{err}");
}

#[test]
fn locate_takes_the_flag_then_the_variable_then_the_xdg_default() {
    let dir = scratch("locate");
    let flag = write(&dir.join("flag.toml"), "", 0o600);
    let by_env = write(&dir.join("env.toml"), "", 0o600);
    let xdg = dir.join("xdg");
    std::fs::create_dir_all(xdg.join("dfns-signer")).unwrap();
    let default = write(&xdg.join("dfns-signer/config.toml"), "", 0o600);
    let env = env_of(&[
        ("DFNS_SIGNER_CONFIG", by_env.to_str().unwrap()),
        ("XDG_CONFIG_HOME", xdg.to_str().unwrap()),
        ("HOME", "/nonexistent-home"),
    ]);

    assert_eq!(
        Config::locate(Some(&flag), &env).unwrap(),
        Some((flag.clone(), ConfigOrigin::Flag))
    );
    assert_eq!(
        Config::locate(None, &env).unwrap(),
        Some((by_env.clone(), ConfigOrigin::Env))
    );
    let xdg_only = env_of(&[("XDG_CONFIG_HOME", xdg.to_str().unwrap())]);
    assert_eq!(
        Config::locate(None, &xdg_only).unwrap(),
        Some((default.clone(), ConfigOrigin::UserDefault))
    );
    // $HOME/.config when XDG_CONFIG_HOME is unset.
    let home = dir.join("home");
    std::fs::create_dir_all(home.join(".config/dfns-signer")).unwrap();
    let in_home = write(&home.join(".config/dfns-signer/config.toml"), "", 0o600);
    let home_only = env_of(&[("HOME", home.to_str().unwrap())]);
    assert_eq!(
        Config::locate(None, &home_only).unwrap(),
        Some((in_home, ConfigOrigin::UserDefault))
    );

    // An explicit path must exist; a missing default is no file at all.
    let missing = dir.join("missing.toml");
    assert!(matches!(
        Config::locate(Some(&missing), &env),
        Err(ConfigError::NotFound {
            origin: ConfigOrigin::Flag,
            ..
        })
    ));
    let env_missing = env_of(&[("DFNS_SIGNER_CONFIG", missing.to_str().unwrap())]);
    let err = Config::locate(None, &env_missing).unwrap_err();
    assert!(
        matches!(
            err,
            ConfigError::NotFound {
                origin: ConfigOrigin::Env,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("$DFNS_SIGNER_CONFIG"), "{err}");
    let empty_xdg = env_of(&[("XDG_CONFIG_HOME", dir.join("nothing").to_str().unwrap())]);
    assert_eq!(Config::locate(None, &empty_xdg).unwrap(), None);
    assert_eq!(Config::locate(None, &env_of(&[])).unwrap(), None);
}

#[test]
fn the_example_profiles_stay_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("hsm-config/profiles");
    for (file, profile, key_scheme) in [
        ("software.toml", "software", "file:"),
        ("softhsm.toml", "softhsm", "pkcs11:"),
        ("yubikey.toml", "yubikey", "piv:"),
    ] {
        let path = dir.join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        let config = Config::from_toml(&text, &path).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(config.profile_names(), [profile], "{file}");
        let p = config.profile(None).unwrap().unwrap();
        assert!(p.key.as_ref().unwrap().starts_with(key_scheme), "{file}");
        assert!(
            p.auth_token.is_some() && p.credential_id.is_some(),
            "{file}"
        );
    }
}

#[test]
fn a_key_without_a_credential_id_is_refused_before_anything_is_opened() {
    let s = Settings::resolve(
        Overrides {
            key: Some("file:/nonexistent/key.pem".into()),
            ..Overrides::default()
        },
        &env_of(&[]),
        None,
    );
    let err = DfnsClient::from_settings(&s).unwrap_err();
    match &err {
        Error::Config(e @ ConfigError::Incomplete { missing, .. }) => {
            assert_eq!(*missing, "credential_id");
            assert!(e.fix().contains("DFNS_CRED_ID"), "{}", e.fix());
        }
        other => panic!("{other}"),
    }
    let s = Settings::resolve(
        Overrides::default(),
        &env_of(&[("DFNS_CRED_ID", "cred-1")]),
        None,
    );
    let err = DfnsClient::from_settings(&s).unwrap_err();
    assert!(
        matches!(
            &err,
            Error::Config(ConfigError::Incomplete { missing: "key", .. })
        ),
        "{err}"
    );
    assert!(err.to_string().contains("$DFNS_CRED_ID"), "{err}");
}

#[cfg(feature = "simulator")]
mod against_the_simulator {
    use super::*;
    use dfns_signer::simulator::{Faults, Simulator};
    use dfns_signer::software::SoftwareKey;
    use dfns_signer::{Algorithm, KeyBackend, ListWallets};

    /// A simulator whose root credential is a software key saved as a PEM file, and a
    /// configuration file whose profile points at it (token in a private file).
    async fn simulator_and_profile(name: &str, extra: &str) -> (Simulator, PathBuf) {
        let key = SoftwareKey::generate(Algorithm::EcdsaP256).unwrap();
        let sim = Simulator::builder()
            .root_public_key_pem(key.public_key().to_pem())
            .start()
            .await
            .unwrap();
        let dir = scratch(name);
        let pem = write(&dir.join("root.pem"), &key.to_pkcs8_pem().unwrap(), 0o600);
        let token = write(
            &dir.join("token"),
            &format!("{}\n", sim.auth_token().expose_secret()),
            0o600,
        );
        let config = format!(
            "[profiles.sim]\nbase_url = \"{}\"\nauth_token = \"file:{}\"\ncredential_id = \"{}\"\n\
             key = \"file:{}\"\n{extra}",
            sim.base_url(),
            token.display(),
            sim.credential_id(),
            pem.display()
        );
        let file = write(&dir.join("config.toml"), &config, 0o600);
        (sim, file)
    }

    #[tokio::test]
    async fn a_client_built_from_a_profile_calls_and_signs() {
        let (sim, file) = simulator_and_profile("client", "").await;
        let settings =
            Settings::load(Some(&file), Some("sim"), Overrides::default(), &env_of(&[])).unwrap();
        let client = DfnsClient::from_settings(&settings).unwrap();
        assert_eq!(client.base_url(), sim.base_url());
        assert_eq!(
            client.signer().unwrap().credential_id(),
            sim.credential_id()
        );

        let wallets = client.list_wallets(&ListWallets::default()).await.unwrap();
        assert_eq!(wallets["items"], serde_json::json!([]), "{wallets}");
        let wallet = client
            .create_wallet(&serde_json::json!({"network": "EthereumSepolia"}))
            .await
            .unwrap()
            .done()
            .unwrap();
        assert_eq!(wallet["network"], "EthereumSepolia");
        let stats = sim.stats();
        assert_eq!(
            stats.user_actions_used, 1,
            "the POST was signed by the file key"
        );
        assert_eq!(stats.requests.get("GET /wallets"), Some(&1));
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn retries_in_the_profile_become_a_retry_policy() {
        for (retries, attempts) in [("", 1), ("retries = 0", 1), ("retries = 2", 3)] {
            let (sim, file) = simulator_and_profile("retries", retries).await;
            sim.set_faults(Faults {
                rate_429: 1.0,
                retry_after_secs: 0,
                only_paths: vec!["GET /wallets".into()],
                ..Faults::default()
            });
            let settings =
                Settings::load(Some(&file), None, Overrides::default(), &env_of(&[])).unwrap();
            let client = DfnsClient::from_settings(&settings).unwrap();
            let err = client
                .list_wallets(&ListWallets::default())
                .await
                .unwrap_err();
            assert_eq!(err.api().map(|a| a.status), Some(429), "{err}");
            assert_eq!(
                sim.stats().requests.get("GET /wallets"),
                Some(&attempts),
                "{retries:?}"
            );
            sim.shutdown().await;
        }
    }

    #[tokio::test]
    async fn an_open_token_file_stops_the_client_from_being_built() {
        let (sim, file) = simulator_and_profile("open-token", "").await;
        let token = file.with_file_name("token");
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
        let settings =
            Settings::load(Some(&file), None, Overrides::default(), &env_of(&[])).unwrap();
        let err = DfnsClient::from_settings(&settings).unwrap_err();
        match &err {
            Error::Config(e @ ConfigError::Permissions { .. }) => {
                assert_eq!(e.fix(), format!("chmod 600 {}", token.display()))
            }
            other => panic!("{other}"),
        }
        assert!(!format!("{err} {err:?}").contains(sim.auth_token().expose_secret()));
        sim.shutdown().await;
    }
}
