//! `serve`: the signing service (`dfns_signer::service`), and its two helpers: `add-client`
//! makes a client secret, `check-policy` says what the policy decides without signing.

use std::path::PathBuf;
use std::process::ExitCode;

use dfns_signer::config::Config;
use dfns_signer::protocol::Method;
use dfns_signer::service::{new_client_secret, Decision, Service, ServiceConfig, ServiceError};
use secrecy::ExposeSecret;
use serde_json::json;

use super::failure::{Failure, EXIT_DEVICE, EXIT_OTHER};
use super::profile::ProfileArgs;
use super::{print_json, Output};

/// Arguments of `serve`.
#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Check every key once, as `/readyz` does (device there, same public key, no PIN spent),
    /// and exit: 0 when all are ready, 4 when one is not.
    #[arg(long)]
    check: bool,
    /// Output format (`json`: one line once listening).
    #[arg(long, value_enum, default_value_t)]
    output: Output,
}

/// `serve` subcommands.
#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Make a new client: prints its secret once, and the lines to paste into the
    /// configuration file.
    ///
    /// Example:
    ///   dfns-signer serve add-client payments
    #[command(verbatim_doc_comment)]
    AddClient(AddClientArgs),
    /// Say which rule of each client's policy allows or denies a request, without signing.
    /// Exit 0 when allowed (for --client, or for some client), 1 when denied.
    ///
    /// Example:
    ///   dfns-signer serve check-policy --config signer.toml POST /wallets --data '{"network":"Bitcoin"}'
    #[command(verbatim_doc_comment)]
    CheckPolicy(CheckPolicyArgs),
}

#[derive(clap::Args, Debug)]
struct AddClientArgs {
    /// The client's name.
    name: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    output: Output,
}

#[derive(clap::Args, Debug)]
struct CheckPolicyArgs {
    /// HTTP method.
    method: String,
    /// API path, as the request would send it (`/wallets/wa-1/signatures`).
    path: String,
    /// The request body (JSON).
    #[arg(long, value_name = "JSON")]
    data: Option<String>,
    /// Only this client.
    #[arg(long, value_name = "NAME")]
    client: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    output: Output,
}

/// Runs `serve` or one of its subcommands.
pub async fn run(args: Args, global: &ProfileArgs) -> Result<ExitCode, Failure> {
    match args.command {
        Some(Command::AddClient(a)) => Ok(add_client(a)),
        Some(Command::CheckPolicy(a)) => check_policy(a, global),
        None if args.check => check(args.output, global).await,
        None => serve(args.output, global).await,
    }
}

fn config_path(global: &ProfileArgs) -> Result<PathBuf, Failure> {
    let env = |name: &str| std::env::var(name).ok();
    match Config::locate(global.config.as_deref(), &env) {
        Ok(Some((path, _))) => Ok(path),
        Ok(None) => Err(Failure::usage(
            "no configuration file: the service reads its keys, clients and listeners from one",
            "pass --config FILE (chmod 600; see docs/service.md for its sections)",
        )),
        Err(e) => Err(Failure::usage(e.to_string(), e.fix())),
    }
}

fn load(global: &ProfileArgs) -> Result<ServiceConfig, Failure> {
    ServiceConfig::load(&config_path(global)?).map_err(|e| Failure::usage(e.to_string(), e.fix()))
}

fn failure(e: ServiceError) -> Failure {
    let code = match &e {
        ServiceError::Key { .. } => EXIT_DEVICE,
        ServiceError::Listen { .. } => EXIT_OTHER,
        _ => super::failure::EXIT_USAGE,
    };
    Failure::new(code, e.to_string(), e.fix())
}

/// `serve --check`: opens the keys as `serve` would, checks each once, and exits.
async fn check(output: Output, global: &ProfileArgs) -> Result<ExitCode, Failure> {
    let config = load(global)?;
    let service = Service::open(config).map_err(failure)?;
    let checks = service.check().await;
    let ready = checks.iter().all(|(_, r)| r.is_ok());
    match output {
        Output::Json => print_json(
            &json!({
                "ready": ready,
                "keys": checks.iter().map(|(name, r)| json!({
                    "key": name,
                    "ready": r.is_ok(),
                    "detail": r.as_ref().err(),
                })).collect::<Vec<_>>(),
            }),
            Output::Json,
        ),
        Output::Text => {
            for (name, r) in &checks {
                match r {
                    Ok(()) => println!("✓ key {name}: ready"),
                    Err(why) => println!("✗ key {name}: {why}"),
                }
            }
        }
    }
    Ok(if ready {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_DEVICE)
    })
}

async fn serve(output: Output, global: &ProfileArgs) -> Result<ExitCode, Failure> {
    let path = config_path(global)?;
    let config = load(global)?;
    let keys: Vec<String> = config.keys.iter().map(|k| k.name.clone()).collect();
    let clients: Vec<String> = config.clients.iter().map(|c| c.name.clone()).collect();
    let service = Service::open(config).map_err(failure)?;
    let ephemeral = service.approval_key_is_ephemeral();
    let audited = service.has_audit_log();
    let running = service.bind().await.map_err(failure)?;
    let tcp = running.tcp_url();
    let unix = running.unix_path().map(|p| p.display().to_string());
    match output {
        Output::Json => print_json(
            &json!({
                "tcp": tcp,
                "unix": unix,
                "keys": keys,
                "clients": clients,
                "approval_key": if ephemeral { "ephemeral" } else { "configured" },
            }),
            Output::Json,
        ),
        Output::Text => {
            let places: Vec<String> = tcp
                .iter()
                .cloned()
                .chain(unix.iter().map(|u| format!("unix:{u}")))
                .collect();
            println!(
                "dfns-signer serve: listening on {} (keys: {}; clients: {})",
                places.join(" and "),
                keys.join(", "),
                if clients.is_empty() {
                    "none".to_owned()
                } else {
                    clients.join(", ")
                }
            );
        }
    }
    if ephemeral {
        eprintln!(
            "note: no [service] approval_key: approvals hold on this instance only (several \
             instances behind a load balancer need the same key)"
        );
    }
    if !audited {
        eprintln!(
            "note: no [service] audit_log: decisions are not recorded (set audit_log to a path \
             for one hash-chained line per decision)"
        );
    }
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("a SIGTERM handler installs");
    let mut hangup = signal(SignalKind::hangup()).expect("a SIGHUP handler installs");
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
            _ = hangup.recv() => {
                // A reload that fails keeps the clients in force: the service never runs
                // without a policy because of a typo.
                match ServiceConfig::load(&path).map_err(ServiceError::from).and_then(|c| running.reload(&c)) {
                    Ok(clients) => eprintln!("reloaded {}: clients {}", path.display(), clients.join(", ")),
                    Err(e) => eprintln!("error: reload of {} refused: {e}\n  what to do: {}", path.display(), e.fix()),
                }
            }
        }
    }
    eprintln!("stopping: no new connections; finishing the requests in flight");
    if running.shutdown().await {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(Failure::new(
            EXIT_OTHER,
            "some requests were still running when the drain time ran out",
            "raise [service] drain_seconds, or look at the audit log for approvals without a \
             completion",
        ))
    }
}

fn add_client(args: AddClientArgs) -> ExitCode {
    let new = new_client_secret();
    let toml = format!(
        "[[clients]]\nname = \"{}\"\nsecret_sha256 = \"{}\"\nkeys = []   # the [[keys]] it may \
         use, e.g. [\"treasury\"]\n[[clients.rules]]\nallow = \"POST /wallets\"   # what it may \
         do; default deny\n",
        args.name.replace(['"', '\\', '\n'], "_"),
        new.sha256_hex
    );
    match args.output {
        Output::Json => print_json(
            &json!({
                "name": args.name,
                "secret": new.secret.expose_secret(),
                "secret_sha256": new.sha256_hex,
                "toml": toml,
            }),
            Output::Json,
        ),
        Output::Text => {
            println!(
                "Secret of client \"{}\" (shown once; the service keeps only its hash):\n  {}\n",
                args.name,
                new.secret.expose_secret()
            );
            println!(
                "The client sends it in the X-Dfns-Signer-Client header (or gives it to its \
                 RemoteSigner).\nPaste into the service's configuration file:\n\n{toml}"
            );
        }
    }
    ExitCode::SUCCESS
}

fn check_policy(args: CheckPolicyArgs, global: &ProfileArgs) -> Result<ExitCode, Failure> {
    let config = load(global)?;
    let method: Method = args.method.parse().map_err(|_| {
        Failure::usage(
            format!("`{}` is not an HTTP method", args.method),
            "use GET, POST, PUT, PATCH or DELETE",
        )
    })?;
    if !args.path.starts_with('/') {
        return Err(Failure::usage(
            "the path must start with `/`",
            "give the API path, e.g. /wallets/wa-1/signatures",
        ));
    }
    let data = args.data.unwrap_or_default();
    if !data.trim().is_empty() && serde_json::from_str::<serde_json::Value>(&data).is_err() {
        return Err(Failure::usage(
            "--data is not JSON",
            "quote the body, e.g. --data '{\"network\":\"Bitcoin\"}'",
        ));
    }
    let clients: Vec<_> = match &args.client {
        Some(name) => vec![config.client(name).ok_or_else(|| {
            Failure::usage(
                format!("no client `{name}` in {}", config.path.display()),
                format!(
                    "use one of: {}",
                    config
                        .clients
                        .iter()
                        .map(|c| c.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        })?],
        None => config.clients.iter().collect(),
    };
    if clients.is_empty() {
        return Err(Failure::usage(
            format!("{} has no [[clients]]", config.path.display()),
            "add one with `dfns-signer serve add-client NAME`",
        ));
    }
    let needs = dfns_signer::protocol::lookup(method, &args.path);
    let decisions: Vec<(&str, Decision)> = clients
        .iter()
        .map(|c| (c.name.as_str(), c.policy.check(method, &args.path, &data)))
        .collect();
    let allowed = decisions.iter().any(|(_, d)| d.is_allowed());
    match args.output {
        Output::Json => print_json(
            &json!({
                "method": method.as_str(),
                "path": args.path,
                "template": needs.template,
                "needs_user_action": needs.needs_user_action,
                "allowed": allowed,
                "clients": decisions.iter().map(|(name, d)| match d {
                    Decision::Allowed { index, rule } => json!({"client": name, "allowed": true, "rule_index": index, "rule": rule}),
                    Decision::Denied { reason } => json!({"client": name, "allowed": false, "reason": reason}),
                    _ => json!({"client": name}),
                }).collect::<Vec<_>>(),
            }),
            Output::Json,
        ),
        Output::Text => {
            if !needs.needs_user_action {
                println!(
                    "{method} {} needs no user action: the service passes it through, whatever \
                     the policy",
                    args.path
                );
            }
            for (name, decision) in &decisions {
                let mark = if decision.is_allowed() { "✓" } else { "✗" };
                println!("{mark} {name}: {decision}");
            }
        }
    }
    Ok(if allowed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
