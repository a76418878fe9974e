//! `bench`: N user-action-signed `POST /wallets`, C in flight, after a short warm-up; prints
//! requests/s, p50/p99 latency, errors and this process's CPU per request
//! (`dfns_signer::bench`). Without a base URL (flag, `DFNS_API_URL` or profile) it runs against
//! a simulator inside the process whose root credential is the key.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use dfns_signer::bench::{BenchOptions, BenchReport};
use dfns_signer::config::Origin;
use dfns_signer::{ClientError, Error};

use super::failure::Failure;
use super::profile::{self, ApiArgs, Needs, ProfileArgs, SignerArgs};
use super::{print_json, Output};

/// Arguments of `bench`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    signer: SignerArgs,
    #[command(flatten)]
    api: ApiArgs,
    /// Signed requests to time, after the warm-up.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    requests: u64,
    /// Requests in flight at once (over one connection pool).
    #[arg(long, value_name = "C", default_value_t = 8)]
    concurrency: u64,
    /// Requests sent first and not timed (default: twice the concurrency).
    #[arg(long, value_name = "N")]
    warmup: Option<u64>,
    /// The `network` of the wallets created.
    #[arg(long, value_name = "NAME", default_value = dfns_signer::bench::DEFAULT_NETWORK)]
    network: String,
    /// Allow a base URL that is not on this machine: every request creates a wallet there.
    #[arg(long)]
    allow_remote: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

/// Runs the benchmark and prints the report.
pub async fn run(args: Args, global: &ProfileArgs) -> Result<ExitCode, Failure> {
    let count = |name: &str, value: u64| -> Result<usize, Failure> {
        match usize::try_from(value) {
            Ok(0) | Err(_) => Err(Failure::usage(
                format!("--{name} must be at least 1, got {value}"),
                format!("give a positive number, e.g. --{name} 16"),
            )),
            Ok(n) => Ok(n),
        }
    };
    let requests = count("requests", args.requests)?;
    let concurrency = count("concurrency", args.concurrency)?;
    let mut options = BenchOptions::new(requests, concurrency).network(args.network.clone());
    if let Some(warmup) = args.warmup {
        options = options.warmup(usize::try_from(warmup).unwrap_or(usize::MAX));
    }
    let bar = std::io::stderr().is_terminal().then(Bar::new);
    if let Some(bar) = &bar {
        let bar = bar.clone();
        options = options.on_progress(move |done, total| bar.draw(done, total));
    }

    let settings = profile::settings(global, &args.api, Some(&args.signer))?;
    let local = settings.base_url.origin == Origin::Default;
    let (result, target) = if local {
        (
            run_local(&settings, &options).await?,
            "in-process simulator".to_owned(),
        )
    } else {
        let base_url = settings.base_url.value.clone();
        if !args.allow_remote && !is_loopback(&base_url) {
            return Err(Failure::usage(
                format!(
                    "{base_url} (from {}) is not on this machine, and every request of a bench \
                     creates a wallet",
                    settings.base_url.origin
                ),
                "point --base-url at a `dfns-signer simulator` on loopback, leave it out for an \
                 in-process simulator, or pass --allow-remote if you mean it",
            ));
        }
        let client = profile::client(&settings, Needs::TokenAndSigner)?;
        if client.signer().is_none() {
            return Err(Failure::usage(
                "bench signs every request, and no key is set",
                "give --key URI and --cred-id ID (or DFNS_KEY and DFNS_CRED_ID, or the profile's \
                 key and credential_id)",
            ));
        }
        (
            dfns_signer::bench::run(&client, &options).await,
            client.base_url().to_owned(),
        )
    };
    if let Some(bar) = &bar {
        bar.clear();
    }
    let report = result.map_err(run_failure)?;
    if report.errors > 0 {
        eprintln!(
            "warning: {} of {} requests failed; the first: {}",
            report.errors,
            report.requests,
            report.first_error.as_deref().unwrap_or("?")
        );
    }
    match args.output {
        Output::Json => {
            let mut json = report.to_json();
            json["runner"] = concat!("dfns-signer ", env!("CARGO_PKG_VERSION")).into();
            json["target"] = target.into();
            print_json(&json, Output::Json);
        }
        Output::Text => print_text(&report, &target, &args.network),
    }
    Ok(ExitCode::SUCCESS)
}

/// The in-process simulator: the key (flag, environment or profile) is its root credential.
#[cfg(feature = "simulator")]
async fn run_local(
    settings: &dfns_signer::config::Settings,
    options: &BenchOptions,
) -> Result<Result<BenchReport, Error>, Failure> {
    let Some(key) = &settings.key else {
        return Err(Failure::usage(
            "bench needs the key that signs the user actions",
            "give --key URI (e.g. --key file:key.pem); without --base-url its public key becomes \
             the root credential of an in-process simulator",
        ));
    };
    let backend = profile::open_key_text(&key.value)?;
    let cred_id = settings.credential_id.as_ref().map(|id| id.value.as_str());
    Ok(dfns_signer::bench::run_local(backend, cred_id, options).await)
}

#[cfg(not(feature = "simulator"))]
async fn run_local(
    _settings: &dfns_signer::config::Settings,
    _options: &BenchOptions,
) -> Result<Result<BenchReport, Error>, Failure> {
    Err(Failure::usage(
        "this dfns-signer was built without the simulator, and no base URL is set",
        "give --base-url of a running `dfns-signer simulator` (or DFNS_API_URL)",
    ))
}

/// A run that measured nothing: every request failed (the first error says why), or the
/// options or the in-process simulator were refused.
fn run_failure(e: Error) -> Failure {
    let said_by_requests = !matches!(e, Error::Client(ClientError::Config(_)));
    let (code, what, fix) = Failure::from(e).parts();
    if said_by_requests {
        Failure::new(
            code,
            format!("every request failed; the first: {what}"),
            fix,
        )
    } else {
        Failure::new(code, what, fix)
    }
}

fn is_loopback(base_url: &str) -> bool {
    let Ok(url) = url::Url::parse(base_url) else {
        // Not a URL: the client refuses it with its own message.
        return true;
    };
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

fn print_text(report: &BenchReport, target: &str, network: &str) {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{} signed POST /wallets ({network}), {} in flight, {} key, against the {target} \
         (after {} warm-up requests)",
        report.requests, report.concurrency, report.algorithm, report.warmup
    );
    println!(
        "  throughput  {:.1} requests/s ({:.2} s)",
        report.requests_per_second,
        report.elapsed.as_secs_f64()
    );
    println!(
        "  latency     p50 {:.2} ms, p99 {:.2} ms",
        ms(report.p50),
        ms(report.p99)
    );
    match report.cpu_per_request {
        Some(cpu) => println!(
            "  CPU         {:.3} ms per request (this process, user + system)",
            ms(cpu)
        ),
        None => println!("  CPU         not measured on this system"),
    }
    println!("  errors      {}", report.errors);
    if let Some(sim) = &report.simulator {
        let cpu = sim
            .cpu_per_request
            .map(|cpu| format!(", {:.3} ms CPU per request on its own thread", ms(cpu)))
            .unwrap_or_default();
        println!(
            "  simulator   {} user actions accepted{cpu}",
            sim.user_actions
        );
    }
}

/// A progress bar on stderr, redrawn at most ten times a second.
#[derive(Clone)]
struct Bar {
    /// When the first timed request finished, and when the bar was last drawn.
    state: std::sync::Arc<Mutex<Option<(Instant, Instant)>>>,
}

impl Bar {
    fn new() -> Self {
        Bar {
            state: std::sync::Arc::new(Mutex::new(None)),
        }
    }

    fn draw(&self, done: usize, total: usize) {
        // Another task is drawing: skip this one.
        let Ok(mut state) = self.state.try_lock() else {
            return;
        };
        let now = Instant::now();
        let (first, last) = state.get_or_insert((now, now - Duration::from_secs(1)));
        if done < total && now.duration_since(*last) < Duration::from_millis(100) {
            return;
        }
        *last = now;
        let width = 30;
        let filled = done * width / total.max(1);
        let rate =
            done.saturating_sub(1) as f64 / now.duration_since(*first).as_secs_f64().max(1e-3);
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r[{}{}] {done}/{total} {rate:.0} requests/s ",
            "#".repeat(filled),
            "-".repeat(width - filled)
        );
        let _ = err.flush();
    }

    fn clear(&self) {
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K");
        let _ = err.flush();
    }
}
