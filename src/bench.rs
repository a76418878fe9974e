//! Load generation: many user-action-signed `POST /wallets` through one [`DfnsClient`], timed
//! (feature `client`; the in-process simulator of [`run_local`] needs `simulator` too).
//!
//! Each request runs the whole flow — `/auth/action/init`, the key's signature,
//! `/auth/action`, then `POST /wallets` with the single-use user action, whose answer is decoded
//! for the new wallet's id (an answer without one counts as an error) — so the figures are
//! those a custody backend sees: requests per second, p50 and p99 latency of the whole flow,
//! errors, and the CPU this process spent per request (`getrusage(RUSAGE_SELF)`, user + system,
//! over the timed part only). A short warm-up (by default twice the concurrency, at the same
//! concurrency) fills the connection pool first and is not timed.
//!
//! ```text
//!   warm-up: W requests, C in flight ──► timed: N requests, C in flight ──► BenchReport
//!                                          (clock, CPU and latencies measured here only)
//! ```
//!
//! [`run`] loads any API a [`DfnsClient`] points at (a `dfns-signer simulator` on loopback,
//! normally: every request creates a wallet). [`run_local`] starts a simulator inside the
//! process, on a thread of its own whose CPU is measured apart and taken out of the client's
//! figure, with the key's public key as its root credential. `dfns-signer bench` is built on
//! both; `benches/compare.sh` runs it beside the official TypeScript and Rust SDKs, which print
//! the same JSON ([`BenchReport::to_json`]).
//!
//! ```
//! # #[cfg(feature = "simulator")]
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use std::sync::Arc;
//! use dfns_signer::bench::{run_local, BenchOptions};
//! use dfns_signer::software::SoftwareKey;
//! use dfns_signer::Algorithm;
//!
//! let key = Arc::new(SoftwareKey::generate(Algorithm::Ed25519)?);
//! let report = run_local(key, None, &BenchOptions::new(20, 4)).await?;
//! assert_eq!(report.errors, 0);
//! assert!(report.p50 <= report.p99);
//! assert_eq!(report.simulator.unwrap().user_actions, 20 + 8); // the warm-up: 2 × 4
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{ClientError, Error, ProtocolError};
use crate::protocol::{Method, Payload};
use crate::{Algorithm, DfnsClient, Outcome};

/// The network of the wallets a run creates, unless [`BenchOptions::network`] says otherwise.
pub const DEFAULT_NETWORK: &str = "EthereumSepolia";

/// Called after each timed request with (requests finished, requests in the run).
type ProgressFn = dyn Fn(usize, usize) + Send + Sync;

/// What a run sends: how many requests, how many in flight, the warm-up.
#[derive(Clone)]
#[non_exhaustive]
pub struct BenchOptions {
    /// Requests timed (after the warm-up); at least 1.
    pub requests: usize,
    /// Requests in flight at once, over one client (one connection pool); at least 1.
    pub concurrency: usize,
    /// Requests sent first, at the same concurrency, and not timed (default: twice the
    /// concurrency).
    pub warmup: usize,
    /// The `network` of the wallets created (default [`DEFAULT_NETWORK`]).
    pub network: String,
    progress: Option<Arc<ProgressFn>>,
}

impl fmt::Debug for BenchOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BenchOptions")
            .field("requests", &self.requests)
            .field("concurrency", &self.concurrency)
            .field("warmup", &self.warmup)
            .field("network", &self.network)
            .field("on_progress", &self.progress.is_some())
            .finish()
    }
}

impl BenchOptions {
    /// `requests` timed requests, `concurrency` in flight, after a warm-up of
    /// `2 × concurrency` requests.
    pub fn new(requests: usize, concurrency: usize) -> Self {
        BenchOptions {
            requests,
            concurrency,
            warmup: concurrency.saturating_mul(2),
            network: DEFAULT_NETWORK.to_owned(),
            progress: None,
        }
    }

    /// Sets [`BenchOptions::warmup`] (0: none).
    pub fn warmup(mut self, requests: usize) -> Self {
        self.warmup = requests;
        self
    }

    /// Sets [`BenchOptions::network`].
    pub fn network(mut self, network: impl Into<String>) -> Self {
        self.network = network.into();
        self
    }

    /// Calls `progress(finished, total)` after each timed request (from the task that sent it:
    /// keep it quick, and throttle any drawing).
    pub fn on_progress(mut self, progress: impl Fn(usize, usize) + Send + Sync + 'static) -> Self {
        self.progress = Some(Arc::new(progress));
        self
    }

    fn check(&self) -> Result<(), Error> {
        for (name, value) in [
            ("number of requests", self.requests),
            ("concurrency", self.concurrency),
        ] {
            if value == 0 {
                return Err(ClientError::Config(format!("the {name} must be at least 1")).into());
            }
        }
        Ok(())
    }
}

/// What a run measured.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct BenchReport {
    /// Requests timed.
    pub requests: usize,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Requests sent before timing.
    pub warmup: usize,
    /// Timed requests that failed (any error: refused, transport, signature…).
    pub errors: usize,
    /// Warm-up requests that failed (not part of the figures).
    pub warmup_errors: usize,
    /// The first timed request's error, as text, when there was one.
    pub first_error: Option<String>,
    /// Wall-clock time of the timed part.
    pub elapsed: Duration,
    /// Requests that succeeded per second of [`BenchReport::elapsed`].
    pub requests_per_second: f64,
    /// Median latency of a successful request (the whole flow: init, sign, complete, send).
    pub p50: Duration,
    /// 99th percentile latency of a successful request.
    pub p99: Duration,
    /// CPU (user + system) this process spent per timed request, an in-process simulator's own
    /// thread excepted; `None` where it cannot be measured (not Unix; an in-process simulator
    /// outside Linux).
    pub cpu_per_request: Option<Duration>,
    /// The signing key's algorithm.
    pub algorithm: Algorithm,
    /// The in-process simulator's figures ([`run_local`]); `None` for [`run`].
    pub simulator: Option<LocalSimulatorReport>,
}

/// What the in-process simulator of [`run_local`] saw.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LocalSimulatorReport {
    /// User actions it accepted, warm-up included: one per successful request.
    pub user_actions: u64,
    /// CPU its thread spent per timed request (Linux only).
    pub cpu_per_request: Option<Duration>,
}

impl BenchReport {
    /// The report as one JSON object, the line `dfns-signer bench --output json` prints and
    /// `benches/compare.sh` reads from every runner: `requests`, `concurrency`, `warmup`,
    /// `errors`, `warmup_errors`, `elapsed_s`, `requests_per_second`, `p50_ms`, `p99_ms`,
    /// `cpu_ms_per_request` (`null` when not measured), `algorithm`, and with an in-process
    /// simulator `simulator_user_actions` and `simulator_cpu_ms_per_request`; `first_error`
    /// when a request failed.
    pub fn to_json(&self) -> Value {
        let mut out = json!({
            "requests": self.requests,
            "concurrency": self.concurrency,
            "warmup": self.warmup,
            "errors": self.errors,
            "warmup_errors": self.warmup_errors,
            "elapsed_s": round(self.elapsed.as_secs_f64(), 4),
            "requests_per_second": round(self.requests_per_second, 1),
            "p50_ms": ms(self.p50),
            "p99_ms": ms(self.p99),
            "cpu_ms_per_request": self.cpu_per_request.map(ms),
            "algorithm": self.algorithm.name(),
        });
        if let Some(sim) = &self.simulator {
            out["simulator_user_actions"] = json!(sim.user_actions);
            out["simulator_cpu_ms_per_request"] = json!(sim.cpu_per_request.map(ms));
        }
        if let Some(error) = &self.first_error {
            out["first_error"] = json!(error);
        }
        out
    }
}

fn round(x: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (x * scale).round() / scale
}

/// Milliseconds, to the tenth of a microsecond.
fn ms(d: Duration) -> f64 {
    round(d.as_secs_f64() * 1e3, 4)
}

/// CPU time (user + system) this process has used so far, all threads: `getrusage(RUSAGE_SELF)`.
/// `None` outside Unix.
pub fn process_cpu_time() -> Option<Duration> {
    #[cfg(unix)]
    {
        let usage =
            nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF).ok()?;
        Some(timeval(usage.user_time()) + timeval(usage.system_time()))
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// CPU time of the calling thread (`RUSAGE_THREAD`, Linux only).
#[cfg(feature = "simulator")]
fn thread_cpu_time() -> Option<Duration> {
    #[cfg(target_os = "linux")]
    {
        let usage =
            nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_THREAD).ok()?;
        Some(timeval(usage.user_time()) + timeval(usage.system_time()))
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

#[cfg(unix)]
fn timeval(t: nix::sys::time::TimeVal) -> Duration {
    let secs = u64::try_from(t.tv_sec()).unwrap_or(0);
    let micros = u32::try_from(t.tv_usec()).unwrap_or(0);
    Duration::new(secs, micros.saturating_mul(1000))
}

/// Runs `options.warmup` then `options.requests` user-action-signed `POST /wallets` through
/// `client`, `options.concurrency` at a time, and reports on the timed part.
///
/// Every request creates a wallet where `client` points: meant for a `dfns-signer simulator`.
/// A failed request is counted ([`BenchReport::errors`]), not fatal. Errors: the options are
/// invalid or the client has no signer ([`ClientError`]); every warm-up request failed, or every
/// timed request did (then nothing was measured): the first of their errors.
pub async fn run(client: &DfnsClient, options: &BenchOptions) -> Result<BenchReport, Error> {
    let (report, _) = measure(client, options, || async { Some(Duration::ZERO) }).await?;
    Ok(report)
}

/// Like [`run`], against a simulator started in this process for the run, whose root
/// credential is `key` (under `credential_id`, else the id derived from the key). The simulator
/// runs on a thread of its own, whose CPU is measured apart (Linux): the report's
/// [`BenchReport::cpu_per_request`] is the client's alone and
/// [`BenchReport::simulator`] holds the simulator's figures.
#[cfg(feature = "simulator")]
pub async fn run_local(
    key: Arc<dyn crate::KeyBackend>,
    credential_id: Option<&str>,
    options: &BenchOptions,
) -> Result<BenchReport, Error> {
    options.check()?;
    let mut builder = crate::simulator::Simulator::builder()
        .root_public_key_pem(key.public_key().to_pem())
        // Every connection of the run at once, whatever the concurrency.
        .max_connections(options.concurrency.saturating_add(16));
    if let Some(id) = credential_id {
        builder = builder.root_credential_id(id);
    }
    let sim = local::LocalSimulator::start(builder).await?;
    let client = DfnsClient::builder()
        .base_url(sim.base_url.clone())
        .auth_token(sim.auth_token.clone())
        .signer(crate::CredentialSigner::new(sim.credential_id.clone(), key))
        .build()?;
    let measured = measure(&client, options, || sim.cpu_time()).await;
    let user_actions = sim.user_actions().await;
    sim.stop().await;
    let (mut report, sim_cpu) = measured?;
    report.simulator = Some(LocalSimulatorReport {
        user_actions,
        cpu_per_request: sim_cpu.map(|cpu| per_request(cpu, options.requests)),
    });
    Ok(report)
}

fn per_request(total: Duration, requests: usize) -> Duration {
    total.div_f64(requests.max(1) as f64)
}

/// Warm-up, then the timed part; `other_cpu` samples the CPU of work in this process that is
/// not the client's (an in-process simulator's thread), taken out of the client's figure.
/// Returns the report and that other work's CPU over the timed part.
async fn measure<S, F>(
    client: &DfnsClient,
    options: &BenchOptions,
    other_cpu: S,
) -> Result<(BenchReport, Option<Duration>), Error>
where
    S: Fn() -> F,
    F: Future<Output = Option<Duration>>,
{
    options.check()?;
    let signer = client.signer().ok_or_else(|| ClientError::SignerRequired {
        method: "POST".to_owned(),
        path: "/wallets".to_owned(),
    })?;
    let algorithm = signer.backend().algorithm();
    let body = Arc::new(json!({ "network": options.network }));

    let mut warmup_errors = 0;
    if options.warmup > 0 {
        let warm = load(client, &body, options.warmup, options.concurrency, None).await;
        if warm.latencies.is_empty() {
            return Err(warm.into_first_error());
        }
        warmup_errors = warm.errors;
    }

    let other_before = other_cpu().await;
    let cpu_before = process_cpu_time();
    let started = Instant::now();
    let timed = load(
        client,
        &body,
        options.requests,
        options.concurrency,
        options.progress.clone(),
    )
    .await;
    let elapsed = started.elapsed();
    let cpu_after = process_cpu_time();
    let other_after = other_cpu().await;

    if timed.latencies.is_empty() {
        return Err(timed.into_first_error());
    }
    let other = match (other_before, other_after) {
        (Some(before), Some(after)) => Some(after.saturating_sub(before)),
        _ => None,
    };
    let cpu = match (cpu_before, cpu_after, other) {
        (Some(before), Some(after), Some(other)) => {
            Some(after.saturating_sub(before).saturating_sub(other))
        }
        _ => None,
    };
    let mut latencies = timed.latencies;
    latencies.sort_unstable();
    let report = BenchReport {
        requests: options.requests,
        concurrency: options.concurrency,
        warmup: options.warmup,
        errors: timed.errors,
        warmup_errors,
        first_error: timed.first_error.map(|(_, e)| e.to_string()),
        elapsed,
        requests_per_second: latencies.len() as f64 / elapsed.as_secs_f64().max(1e-9),
        p50: percentile(&latencies, 0.50),
        p99: percentile(&latencies, 0.99),
        cpu_per_request: cpu.map(|cpu| per_request(cpu, options.requests)),
        algorithm,
        simulator: None,
    };
    Ok((report, other))
}

/// Nearest-rank percentile of sorted, non-empty latencies.
fn percentile(sorted: &[Duration], q: f64) -> Duration {
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// What one batch of requests gave.
#[derive(Default)]
struct Load {
    /// Latencies of the successful requests.
    latencies: Vec<Duration>,
    errors: usize,
    /// The earliest failed request's start and error.
    first_error: Option<(Instant, Error)>,
}

impl Load {
    fn merge(&mut self, other: Load) {
        self.latencies.extend(other.latencies);
        self.errors += other.errors;
        if let Some((at, error)) = other.first_error {
            if self.first_error.as_ref().is_none_or(|(mine, _)| at < *mine) {
                self.first_error = Some((at, error));
            }
        }
    }

    /// The first error of a batch in which nothing succeeded.
    fn into_first_error(self) -> Error {
        match self.first_error {
            Some((_, error)) => error,
            None => ClientError::Config("no request was sent".to_owned()).into(),
        }
    }
}

/// What a run reads back from each created wallet, decoded into a struct as the official SDKs
/// decode theirs (not into a `serde_json::Value`, [`DfnsClient::create_wallet`]'s answer, whose
/// objects keep their field order in a hash map: ~10k instructions more per request).
#[derive(Deserialize)]
struct CreatedWallet {
    id: String,
}

/// One signed `POST /wallets`: `Ok` for a wallet with an id, or a policy approval pending (a
/// 202 is an answer too: the flow ran).
async fn create_wallet(client: &DfnsClient, body: &Value) -> Result<(), Error> {
    let payload = Payload::json(body)?;
    match client
        .request_json::<CreatedWallet>(Method::Post, "/wallets", payload)
        .await?
    {
        Outcome::Done(wallet) if wallet.id.is_empty() => Err(ProtocolError::Malformed {
            what: "created wallet",
            reason: "`id` is empty".to_owned(),
        }
        .into()),
        Outcome::Done(_) | Outcome::PolicyPending(_) => Ok(()),
    }
}

/// Sends `count` signed `POST /wallets`, `concurrency` at a time: that many tasks take the next
/// request number until none is left.
async fn load(
    client: &DfnsClient,
    body: &Arc<Value>,
    count: usize,
    concurrency: usize,
    progress: Option<Arc<ProgressFn>>,
) -> Load {
    let next = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency.min(count) {
        let (client, body) = (client.clone(), body.clone());
        let (next, finished, progress) = (next.clone(), finished.clone(), progress.clone());
        tasks.spawn(async move {
            let mut mine = Load::default();
            while next.fetch_add(1, Ordering::Relaxed) < count {
                let started = Instant::now();
                match create_wallet(&client, &body).await {
                    Ok(()) => mine.latencies.push(started.elapsed()),
                    Err(error) => {
                        mine.errors += 1;
                        if mine.first_error.is_none() {
                            mine.first_error = Some((started, error));
                        }
                    }
                }
                let done = finished.fetch_add(1, Ordering::Relaxed) + 1;
                if let Some(progress) = &progress {
                    progress(done, count);
                }
            }
            mine
        });
    }
    let mut all = Load {
        latencies: Vec::with_capacity(count),
        ..Load::default()
    };
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(part) => all.merge(part),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // Tasks are never cancelled: a join error is a panic.
            Err(_) => all.errors += 1,
        }
    }
    all
}

#[cfg(feature = "simulator")]
mod local {
    //! The in-process simulator of `run_local`: its own thread and single-threaded runtime, so
    //! its CPU can be measured apart from the client's.

    use std::time::Duration;

    use secrecy::SecretString;
    use tokio::sync::{mpsc, oneshot};

    use crate::error::{ClientError, Error};
    use crate::simulator::SimulatorBuilder;

    enum Command {
        /// The simulator thread's CPU so far.
        CpuTime(oneshot::Sender<Option<Duration>>),
        /// User actions accepted so far.
        UserActions(oneshot::Sender<u64>),
    }

    /// A simulator serving from a thread of its own until stopped (or dropped).
    pub(super) struct LocalSimulator {
        pub(super) base_url: String,
        pub(super) auth_token: SecretString,
        pub(super) credential_id: String,
        commands: Option<mpsc::UnboundedSender<Command>>,
        thread: Option<std::thread::JoinHandle<()>>,
    }

    fn failed(what: String) -> Error {
        ClientError::Config(format!("cannot start the in-process simulator: {what}")).into()
    }

    impl LocalSimulator {
        pub(super) async fn start(builder: SimulatorBuilder) -> Result<Self, Error> {
            let (ready_tx, ready_rx) = oneshot::channel();
            let (commands, mut received) = mpsc::unbounded_channel::<Command>();
            let thread = std::thread::Builder::new()
                .name("dfns-bench-simulator".to_owned())
                .spawn(move || {
                    let runtime = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(runtime) => runtime,
                        Err(e) => {
                            let _ = ready_tx.send(Err(format!("no async runtime: {e}")));
                            return;
                        }
                    };
                    runtime.block_on(async move {
                        let sim = match builder.start().await {
                            Ok(sim) => sim,
                            Err(e) => {
                                let _ = ready_tx.send(Err(e.to_string()));
                                return;
                            }
                        };
                        let _ = ready_tx.send(Ok((
                            sim.base_url().to_owned(),
                            sim.auth_token().clone(),
                            sim.credential_id().to_owned(),
                        )));
                        // Serves (its tasks run on this thread) until every sender is gone.
                        while let Some(command) = received.recv().await {
                            match command {
                                Command::CpuTime(reply) => {
                                    let _ = reply.send(super::thread_cpu_time());
                                }
                                Command::UserActions(reply) => {
                                    let _ = reply.send(sim.stats().user_actions_used);
                                }
                            }
                        }
                        sim.shutdown().await;
                    });
                })
                .map_err(|e| failed(format!("no thread: {e}")))?;
            let (base_url, auth_token, credential_id) = ready_rx
                .await
                .map_err(|_| failed("its thread ended".to_owned()))?
                .map_err(failed)?;
            Ok(LocalSimulator {
                base_url,
                auth_token,
                credential_id,
                commands: Some(commands),
                thread: Some(thread),
            })
        }

        async fn ask<T>(&self, command: impl FnOnce(oneshot::Sender<T>) -> Command) -> Option<T> {
            let (reply, answer) = oneshot::channel();
            self.commands.as_ref()?.send(command(reply)).ok()?;
            answer.await.ok()
        }

        /// The simulator thread's CPU so far (Linux).
        pub(super) async fn cpu_time(&self) -> Option<Duration> {
            self.ask(Command::CpuTime).await.flatten()
        }

        /// User actions the simulator accepted so far.
        pub(super) async fn user_actions(&self) -> u64 {
            self.ask(Command::UserActions).await.unwrap_or(0)
        }

        /// Stops the simulator and waits for its thread.
        pub(super) async fn stop(mut self) {
            self.commands.take();
            if let Some(thread) = self.thread.take() {
                let _ = tokio::task::spawn_blocking(move || thread.join()).await;
            }
        }
    }

    impl Drop for LocalSimulator {
        fn drop(&mut self) {
            // Closing the channel stops the simulator; its thread ends on its own.
            self.commands.take();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let ms = |n: u64| Duration::from_millis(n);
        let sorted: Vec<Duration> = (1..=100).map(ms).collect();
        assert_eq!(percentile(&sorted, 0.50), ms(50));
        assert_eq!(percentile(&sorted, 0.99), ms(99));
        assert_eq!(percentile(&[ms(7)], 0.99), ms(7));
        assert_eq!(percentile(&[ms(1), ms(2)], 0.50), ms(1));
    }

    #[test]
    fn options_refuse_zero_requests_or_concurrency() {
        assert!(BenchOptions::new(0, 1).check().is_err());
        assert!(BenchOptions::new(1, 0).check().is_err());
        let options = BenchOptions::new(10, 3);
        assert_eq!(options.warmup, 6);
        assert!(options.check().is_ok());
    }

    #[cfg(unix)]
    #[test]
    fn process_cpu_time_grows_with_work() {
        let before = process_cpu_time().unwrap();
        let mut x = 0u64;
        let started = Instant::now();
        while started.elapsed() < Duration::from_millis(30) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        assert!(process_cpu_time().unwrap() > before);
    }
}
