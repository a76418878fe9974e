//! `doctor`: does everything line up? Checks, in order, and prints a ✓/✗ line for each with
//! the fix:
//!
//! 1. `config` — the configuration file parses and the profile resolves;
//! 2. `key` — the key URI opens (module loads, token or card found, key found);
//! 3. `pin` — the PIN is accepted; **skipped** (never guessed, no try spent) when the PIN is not
//!    at hand: its variable unset, its file missing, a prompt without a terminal;
//! 4. `api` — the API answers at the base URL;
//! 5. `token` — the auth token is valid (`GET /auth/credentials` answers 2xx);
//! 6. `credential` — the credential id is one of this identity's active credentials, and its
//!    public key is the key's;
//! 7. `clock` — this machine's clock is within 60 s of the server's `Date` header.
//!
//! A check whose input an earlier one failed to give is reported as not run. Exit status: 0
//! when every check passes (a skipped PIN check passes), else the status of the first failed
//! check's kind: 2 configuration, 4 key or PIN, 5 token or credential refused, 1 API
//! unreachable or clock.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use dfns_signer::config::Settings;
use dfns_signer::protocol::{Method, Payload};
use dfns_signer::{BackendError, Error, KeyBackend, KeyUri, Outcome, PinSource, PublicKey};
use serde_json::{json, Value};

use super::failure::{Failure, EXIT_API, EXIT_OTHER, EXIT_USAGE};
use super::profile::{self, ApiArgs, Needs, ProfileArgs, SignerArgs};
use super::{print_json, Output};

/// How far this machine's clock may be from the server's.
const CLOCK_TOLERANCE: Duration = Duration::from_secs(60);

/// Arguments of `doctor`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    signer: SignerArgs,
    #[command(flatten)]
    api: ApiArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

/// One line of the report.
struct Check {
    name: &'static str,
    outcome: Outcome3,
    detail: String,
    fix: String,
    /// Exit status when this is the first failure.
    code: u8,
}

/// Passed, failed, or skipped (with whether a skip counts as passing).
#[derive(PartialEq, Eq, Clone, Copy)]
enum Outcome3 {
    Pass,
    Fail,
    /// Not at hand (the PIN): passes.
    Skipped,
    /// An earlier check failed to give what this one needs: fails.
    NotRun,
}

impl Check {
    fn pass(name: &'static str, detail: impl Into<String>) -> Self {
        Check {
            name,
            outcome: Outcome3::Pass,
            detail: detail.into(),
            fix: String::new(),
            code: 0,
        }
    }

    fn fail(
        name: &'static str,
        code: u8,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Check {
            name,
            outcome: Outcome3::Fail,
            detail: detail.into(),
            fix: fix.into(),
            code,
        }
    }

    fn from_failure(name: &'static str, failure: Failure) -> Self {
        let (code, what, fix) = failure.parts();
        Check::fail(name, code, what, fix)
    }

    fn skipped(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Check {
            name,
            outcome: Outcome3::Skipped,
            detail: detail.into(),
            fix: fix.into(),
            code: 0,
        }
    }

    fn not_run(name: &'static str, because: &str) -> Self {
        Check {
            name,
            outcome: Outcome3::NotRun,
            detail: format!("not checked: {because}"),
            fix: "fix the check above first".to_owned(),
            code: EXIT_OTHER,
        }
    }

    fn ok(&self) -> bool {
        matches!(self.outcome, Outcome3::Pass | Outcome3::Skipped)
    }
}

/// The checks so far; in text mode each line is printed as soon as its check is done, so a PIN
/// prompt appears after the lines of the checks before it.
struct Report {
    checks: Vec<Check>,
    print_as_done: bool,
}

impl Report {
    fn push(&mut self, check: Check) {
        if self.print_as_done {
            let mark = match check.outcome {
                Outcome3::Pass => "✓",
                Outcome3::Fail => "✗",
                Outcome3::Skipped | Outcome3::NotRun => "-",
            };
            println!("{mark} {}: {}", check.name, check.detail);
            if check.outcome != Outcome3::Pass {
                println!("    {}", check.fix);
            }
        }
        self.checks.push(check);
    }
}

/// Runs the checks and prints the report.
pub async fn run(args: Args, global: &ProfileArgs) -> Result<ExitCode, Failure> {
    let mut report = Report {
        checks: Vec::new(),
        print_as_done: args.output == Output::Text,
    };
    run_checks(&args, global, &mut report).await;
    let checks = report.checks;
    match args.output {
        Output::Json => {
            let list: Vec<Value> = checks
                .iter()
                .map(|c| {
                    json!({
                        "name": c.name,
                        "ok": c.ok(),
                        "skipped": matches!(c.outcome, Outcome3::Skipped | Outcome3::NotRun),
                        "detail": c.detail,
                        "fix": if c.ok() && c.outcome == Outcome3::Pass { Value::Null } else { json!(c.fix) },
                    })
                })
                .collect();
            print_json(
                &json!({ "ok": checks.iter().all(Check::ok), "checks": list }),
                Output::Json,
            );
        }
        // Printed as each check was done.
        Output::Text => {}
    }
    Ok(match checks.iter().find(|c| !c.ok()) {
        None => ExitCode::SUCCESS,
        Some(first) => ExitCode::from(first.code),
    })
}

async fn run_checks(args: &Args, global: &ProfileArgs, checks: &mut Report) {
    let settings = match profile::settings(global, &args.api, Some(&args.signer)) {
        Ok(settings) => settings,
        Err(failure) => {
            checks.push(Check::from_failure("config", failure));
            for name in ["key", "pin", "api", "token", "credential", "clock"] {
                checks.push(Check::not_run(name, "the configuration did not load"));
            }
            return;
        }
    };
    checks.push(Check::pass("config", describe(&settings)));

    let key = check_key(&settings, checks);

    // One authenticated request answers the next three checks.
    let answer = match profile::client(&settings, Needs::Token) {
        Err(failure) => Err(failure),
        Ok(client) => client
            .request(Method::Get, "/auth/credentials", Payload::empty())
            .await
            .map_err(Failure::from)
            .map(|outcome| match outcome {
                Outcome::Done(raw) => Some(raw),
                // A GET is never held for approval; treat it as no answer.
                _ => None,
            }),
    };
    let raw = match answer {
        Ok(Some(raw)) => {
            checks.push(Check::pass(
                "api",
                format!("{} answers", settings.base_url.value),
            ));
            checks.push(Check::pass(
                "token",
                format!("accepted (from {})", token_origin(&settings)),
            ));
            Some(raw)
        }
        Ok(None) => {
            checks.push(Check::fail(
                "api",
                EXIT_OTHER,
                "GET /auth/credentials was held for approval",
                "check the base URL points at the Dfns API",
            ));
            checks.push(Check::not_run("token", "no answer"));
            None
        }
        Err(failure) if failure.code() == EXIT_API => {
            checks.push(Check::pass(
                "api",
                format!("{} answers", settings.base_url.value),
            ));
            let (_, what, _) = failure.parts();
            checks.push(Check::fail(
                "token",
                EXIT_API,
                what,
                format!(
                    "the auth token (from {}) was refused: use a current token of this \
                     organisation (a service account's or a login's)",
                    token_origin(&settings)
                ),
            ));
            None
        }
        Err(failure) if failure.code() == EXIT_USAGE => {
            // No token, or a token source that cannot be read: nothing was sent.
            checks.push(Check::not_run("api", "no auth token to call it with"));
            checks.push(Check::from_failure("token", failure));
            None
        }
        Err(failure) => {
            let (_, what, _) = failure.parts();
            checks.push(Check::fail(
                "api",
                EXIT_OTHER,
                what,
                format!(
                    "check the base URL ({}, from {}) and the network",
                    settings.base_url.value, settings.base_url.origin
                ),
            ));
            checks.push(Check::not_run("token", "the API did not answer"));
            None
        }
    };

    checks.push(match (&raw, &key) {
        (Some(raw), Some(key)) => check_credential(&settings, key.public_key(), &raw.body),
        (None, _) => Check::not_run("credential", "the credential list could not be read"),
        (_, None) if pin_skipped(&checks.checks) => Check::skipped(
            "credential",
            "not checked: the key opens only with its PIN, which is not at hand",
            "run doctor where the PIN source gives the PIN to check it",
        ),
        (_, None) => Check::not_run("credential", "the key's public key is not known"),
    });
    checks.push(match raw.as_ref().map(|r| r.server_date) {
        Some(Some(server)) => check_clock(server),
        Some(None) => Check::skipped(
            "clock",
            "the server sent no Date header",
            "nothing to compare with",
        ),
        None => Check::not_run("clock", "the API did not answer"),
    });
}

/// Whether the PIN check was skipped (the PIN not at hand).
fn pin_skipped(checks: &[Check]) -> bool {
    checks
        .iter()
        .any(|c| c.name == "pin" && c.outcome == Outcome3::Skipped)
}

/// Where each setting came from, in one line.
fn describe(settings: &Settings) -> String {
    let mut parts = vec![format!(
        "base URL {} (from {})",
        settings.base_url.value, settings.base_url.origin
    )];
    // "key, credential id and token from profile `x`": one clause per origin.
    let mut by_origin: Vec<(String, Vec<&str>)> = Vec::new();
    let settings_from = [
        ("key", settings.key.as_ref().map(|k| k.origin.to_string())),
        (
            "credential id",
            settings
                .credential_id
                .as_ref()
                .map(|c| c.origin.to_string()),
        ),
        ("token", Some(token_origin(settings))),
    ];
    for (name, origin) in settings_from {
        let origin = origin.unwrap_or_else(|| "nowhere".to_owned());
        match by_origin.iter_mut().find(|(o, _)| *o == origin) {
            Some((_, names)) => names.push(name),
            None => by_origin.push((origin, vec![name])),
        }
    }
    for (origin, names) in by_origin {
        parts.push(format!("{} from {origin}", super::and_list(&names)));
    }
    parts.join("; ")
}

fn token_origin(settings: &Settings) -> String {
    settings
        .auth_token
        .as_ref()
        .map_or("nowhere".to_owned(), |t| t.origin.to_string())
}

/// Whether the PIN a source names can be had without asking anyone or guessing.
fn pin_at_hand(source: &str) -> Result<bool, Failure> {
    let source = PinSource::parse(source).map_err(Error::from)?;
    Ok(match &source {
        PinSource::Env(name) => std::env::var_os(name).is_some_and(|v| !v.is_empty()),
        PinSource::File(path) => path.is_file(),
        PinSource::Prompt => PinSource::can_prompt(),
        _ => true,
    })
}

/// The `key` and `pin` checks; the key's public key when it could be read.
fn check_key(settings: &Settings, checks: &mut Report) -> Option<Arc<dyn KeyBackend>> {
    let Some(key) = &settings.key else {
        checks.push(Check::fail(
            "key",
            EXIT_USAGE,
            "no key is configured",
            "set key in the profile (or DFNS_KEY, or --key URI)",
        ));
        checks.push(Check::not_run("pin", "no key"));
        return None;
    };
    let uri = match KeyUri::parse(&key.value) {
        Ok(uri) => uri,
        Err(e) => {
            checks.push(Check::from_failure("key", Error::from(e).into()));
            checks.push(Check::not_run("pin", "the key URI is invalid"));
            return None;
        }
    };
    let source = match &uri {
        KeyUri::Pkcs11(attrs) | KeyUri::Piv(attrs) => attrs.query_attr("pin-source"),
        _ => None,
    };
    let at_hand = match source.map(pin_at_hand).transpose() {
        Ok(at_hand) => at_hand,
        Err(failure) => {
            checks.push(Check::from_failure("key", failure));
            checks.push(Check::not_run("pin", "the PIN source is invalid"));
            return None;
        }
    };
    if at_hand == Some(false) {
        let source = source.unwrap_or_default();
        let (check, backend) = check_key_without_pin(&uri);
        checks.push(check);
        checks.push(Check::skipped(
            "pin",
            format!("not checked: the PIN ({source}) is not at hand, and a guess could cost a try"),
            format!("run doctor where {source} gives the PIN to check it"),
        ));
        return backend;
    }
    match super::open_key(&uri) {
        Ok(backend) => {
            checks.push(Check::pass(
                "key",
                format!(
                    "{} key '{}' opens (fingerprint {})",
                    backend.public_key().algorithm().name(),
                    key.value,
                    backend.public_key().fingerprint()
                ),
            ));
            checks.push(match source {
                Some(source) => Check::pass("pin", format!("accepted (from {source})")),
                None => Check::pass("pin", "none needed"),
            });
            Some(backend)
        }
        Err(
            e @ (BackendError::PinIncorrect { .. }
            | BackendError::PinBlocked { .. }
            | BackendError::LastPinTry { .. }),
        ) => {
            checks.push(Check::pass("key", "found (its PIN was refused)"));
            checks.push(Check::from_failure("pin", Error::from(e).into()));
            None
        }
        Err(e) => {
            checks.push(Check::from_failure("key", Error::from(e).into()));
            checks.push(Check::not_run("pin", "the key did not open"));
            None
        }
    }
}

/// Without the PIN: a YubiKey's slot is read (no PIN needed for the public key); a PKCS#11
/// module is loaded and the token looked for (its keys may be private until a login).
fn check_key_without_pin(uri: &KeyUri) -> (Check, Option<Arc<dyn KeyBackend>>) {
    match uri {
        #[cfg(feature = "piv")]
        KeyUri::Piv(attrs) => {
            let opened = dfns_signer::piv::builder_from_uri(attrs)
                .and_then(|b| b.verify_pin_at_open(false).open());
            match opened {
                Ok(key) => (
                    Check::pass(
                        "key",
                        format!(
                            "{} key in slot {} (fingerprint {})",
                            key.public_key().algorithm().name(),
                            key.slot(),
                            key.public_key().fingerprint()
                        ),
                    ),
                    Some(Arc::new(key)),
                ),
                Err(e) => (Check::from_failure("key", Error::from(e).into()), None),
            }
        }
        #[cfg(feature = "pkcs11")]
        KeyUri::Pkcs11(attrs) => {
            let module = attrs.query_attr("module-path").map(std::path::Path::new);
            let token = attrs.path_attr("token");
            let check = match dfns_signer::pkcs11::list_tokens(module) {
                Err(e) => Check::from_failure("key", Error::from(e).into()),
                Ok(tokens) => match tokens.iter().find(|t| token.is_none_or(|l| t.label == l)) {
                    Some(t) => Check::pass(
                        "key",
                        format!(
                            "module loads, token \"{}\" found (the private key is checked once the PIN is at hand)",
                            t.label
                        ),
                    ),
                    None => Check::fail(
                        "key",
                        super::failure::EXIT_DEVICE,
                        format!("the module has no token \"{}\"", token.unwrap_or_default()),
                        "check token= in the key URI (`dfns-signer keys list --module PATH` lists the tokens)",
                    ),
                },
            };
            (check, None)
        }
        _ => (Check::pass("key", "needs no PIN"), None),
    }
}

/// The credential id names an active credential of this identity whose key is ours.
fn check_credential(settings: &Settings, ours: &PublicKey, body: &[u8]) -> Check {
    let Some(id) = &settings.credential_id else {
        return Check::fail(
            "credential",
            EXIT_USAGE,
            "no credential id is configured",
            "set credential_id in the profile (or DFNS_CRED_ID, or --cred-id)",
        );
    };
    let list: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let items = list["items"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let Some(found) = items
        .iter()
        .find(|c| c["credentialId"] == id.value.as_str())
    else {
        return Check::fail(
            "credential",
            EXIT_API,
            format!(
                "credential id {} (from {}) is not one of this identity's {} credentials",
                id.value,
                id.origin,
                items.len()
            ),
            "register the key (`dfns-signer credential register`) or fix the credential id \
             (`dfns-signer credential list`)",
        );
    };
    let registered = found["publicKey"]
        .as_str()
        .and_then(|pem| PublicKey::from_pem(pem).ok());
    if registered.as_ref() != Some(ours) {
        return Check::fail(
            "credential",
            EXIT_API,
            format!(
                "credential {} is registered with another public key than this key's ({})",
                id.value,
                ours.fingerprint()
            ),
            "use the key registered under this id, or register this key as a new credential",
        );
    }
    if found["isActive"] == false {
        return Check::fail(
            "credential",
            EXIT_API,
            format!("credential {} is deactivated", id.value),
            "activate it again, or register the key as a new credential",
        );
    }
    Check::pass(
        "credential",
        format!("{} is active and holds this key", id.value),
    )
}

fn check_clock(server: SystemTime) -> Check {
    let now = SystemTime::now();
    let (skew, ahead) = match now.duration_since(server) {
        Ok(d) => (d, true),
        Err(e) => (e.duration(), false),
    };
    let side = if ahead { "ahead of" } else { "behind" };
    // The Date header has whole seconds: up to one second is rounding.
    if skew <= CLOCK_TOLERANCE + Duration::from_secs(1) {
        Check::pass("clock", format!("{} s {side} the server", skew.as_secs()))
    } else {
        Check::fail(
            "clock",
            EXIT_OTHER,
            format!(
                "this machine's clock is {} s {side} the server's",
                skew.as_secs()
            ),
            "synchronise the clock (NTP: `timedatectl set-ntp true`); tokens and challenges \
             are time-limited",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_check_allows_a_minute_either_way() {
        let now = SystemTime::now();
        for (server, ok) in [
            (now, true),
            (now - Duration::from_secs(45), true),
            (now + Duration::from_secs(45), true),
            (now - Duration::from_secs(120), false),
            (now + Duration::from_secs(120), false),
        ] {
            let check = check_clock(server);
            assert_eq!(check.ok(), ok, "{}", check.detail);
        }
        let behind = check_clock(now + Duration::from_secs(300));
        assert!(behind.detail.contains("behind"), "{}", behind.detail);
        assert!(behind.fix.contains("NTP"), "{}", behind.fix);
    }
}
