//! Signing throughput on SoftHSM: `KeyBackend::sign` against a raw cryptoki loop on the same key.
//!
//! The raw loop is the limit: one session per thread, the key handle found once, SHA-256 on the
//! host and `C_Sign` — no pool, no DER encoding, no error handling beyond unwrap. The backend
//! should reach at least 90% of it at the same thread count. It is measured twice: as it runs
//! by default, verifying every signature against the public key before returning it
//! (`verify-signatures=true`), and without that check, so the check's cost shows on its own.
//!
//!     cargo bench --no-default-features --features pkcs11 --bench pkcs11_sign
//!
//! `BENCH_SECONDS` sets the time per measurement and side (default 3). The bench makes its own token with
//! `hsm-config/softhsm/init-token.sh` in a temporary directory.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cryptoki::context::Pkcs11;
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, ObjectClass};
use cryptoki::session::UserType;
use dfns_signer::pkcs11::{shared_context, Pkcs11Config, Pkcs11Key};
use dfns_signer::{KeyBackend, PinSource};
use secrecy::SecretString;
use sha2::Digest;

/// SoftHSM's module on Debian and Ubuntu (every architecture); `DFNS_SIGNER_PKCS11_MODULE`
/// overrides it.
const DEFAULT_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const TOKEN: &str = "bench";
const PIN: &str = "bench-Pin-1";
/// About the size of a Dfns clientData.
const MESSAGE: &[u8] = br#"{"type":"key.get","challenge":"Y2gtMDAwMDAtMDAwMDAtMDAwMDAtMDAwMDAwMDAwMDAwMDAwMA","origin":"https://app.dfns.io","crossOrigin":false}"#;

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is not supported and ignored.
    let seconds: u64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let module =
        std::env::var("DFNS_SIGNER_PKCS11_MODULE").unwrap_or_else(|_| DEFAULT_MODULE.to_owned());
    let module = module.as_str();
    let dir = std::env::temp_dir().join(format!("dfns-signer-bench-{}", std::process::id()));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("hsm-config/softhsm/init-token.sh");
    let out = Command::new(script)
        .arg(&dir)
        .env("TOKEN_LABEL", TOKEN)
        .env("USER_PIN", PIN)
        .env("KEYS", "p256 secp256k1 ed25519 rsa2048")
        .env("MODULE", module)
        .output()
        .expect("run init-token.sh (is softhsm2 installed?)");
    assert!(
        out.status.success(),
        "init-token.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::env::set_var("SOFTHSM2_CONF", dir.join("softhsm2.conf"));

    // The backend's context: a module is initialised once per process.
    let ctx = shared_context(Path::new(module)).expect("load SoftHSM");
    // Alternating windows of half a second, `seconds` in total for each side.
    let slice = Duration::from_millis(500);
    let pairs = (seconds * 2).max(1);
    println!(
        "SoftHSM signing throughput, {seconds} s per measurement in alternating 0.5 s windows, message {} bytes",
        MESSAGE.len()
    );
    println!(
        "{:<10} {:>7} {:>11} {:>16} {:>7} {:>16} {:>7} {:>12}",
        "key",
        "threads",
        "raw sig/s",
        "unverified sig/s",
        "ratio",
        "verified sig/s",
        "ratio",
        "verify µs"
    );
    for label in ["p256", "secp256k1", "ed25519", "rsa2048"] {
        let open = |verify: bool| {
            Arc::new(
                Pkcs11Key::open(
                    &Pkcs11Config::new()
                        .with_module_path(module)
                        .with_token_label(TOKEN)
                        .with_key_label(label)
                        .with_pin(PinSource::Value(SecretString::from(PIN.to_owned())))
                        .verify_signatures(verify),
                )
                .expect("open the bench key"),
            )
        };
        let (verified_key, unverified_key) = (open(true), open(false));
        for threads in [1, 2] {
            // The machine is shared and its load swings: alternate short windows of raw and
            // backend signing and add them up, so that every side sees the same conditions.
            let (mut raw, mut unverified, mut verified) =
                (Rate::default(), Rate::default(), Rate::default());
            for _ in 0..pairs {
                raw.add(run(threads, slice, raw_signer(&ctx, label)));
                unverified.add(run(threads, slice, backend_signer(&unverified_key)));
                verified.add(run(threads, slice, backend_signer(&verified_key)));
            }
            let (raw, unverified, verified) = (
                raw.per_second(),
                unverified.per_second(),
                verified.per_second(),
            );
            // CPU time of one check, per signature: the difference of the per-signature times
            // (times the threads that shared them).
            let verify_us = (1e6 / verified - 1e6 / unverified) * threads as f64;
            println!(
                "{label:<10} {threads:>7} {raw:>11.0} {unverified:>16.0} {:>6.1}% {verified:>16.0} {:>6.1}% {verify_us:>12.1}",
                100.0 * unverified / raw,
                100.0 * verified / raw,
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

type Signer = Box<dyn FnMut() + Send>;

/// A factory of signers through the backend (all share the key's session pool).
fn backend_signer(key: &Arc<Pkcs11Key>) -> impl Fn() -> Signer + Send + Sync + Clone + 'static {
    let key = Arc::clone(key);
    move || {
        let key = Arc::clone(&key);
        Box::new(move || {
            key.sign(MESSAGE).expect("backend sign");
        })
    }
}

/// A factory of raw signers: each opens its own session and finds the key once.
fn raw_signer(
    ctx: &Pkcs11,
    label: &'static str,
) -> impl Fn() -> Signer + Send + Sync + Clone + 'static {
    let ctx = ctx.clone();
    move || {
        let slot = ctx
            .get_slots_with_initialized_token()
            .unwrap()
            .into_iter()
            .find(|s| ctx.get_token_info(*s).unwrap().label().trim_end() == TOKEN)
            .unwrap();
        let session = ctx.open_ro_session(slot).unwrap();
        match session.login(UserType::User, Some(&SecretString::from(PIN.to_owned()))) {
            Ok(())
            | Err(cryptoki::error::Error::Pkcs11(
                cryptoki::error::RvError::UserAlreadyLoggedIn,
                _,
            )) => {}
            Err(e) => panic!("login: {e}"),
        }
        let key = session
            .find_objects(&[
                Attribute::Class(ObjectClass::PRIVATE_KEY),
                Attribute::Label(label.as_bytes().to_vec()),
            ])
            .unwrap()[0];
        Box::new(move || match label {
            "p256" | "secp256k1" => {
                let digest = sha2::Sha256::digest(MESSAGE);
                session.sign(&Mechanism::Ecdsa, key, &digest).unwrap();
            }
            "ed25519" => {
                let m = Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure));
                session.sign(&m, key, MESSAGE).unwrap();
            }
            _ => {
                session
                    .sign(&Mechanism::Sha256RsaPkcs, key, MESSAGE)
                    .unwrap();
            }
        })
    }
}

/// Signatures counted over some time.
#[derive(Default)]
struct Rate {
    signatures: u64,
    seconds: f64,
}

impl Rate {
    fn add(&mut self, (signatures, seconds): (u64, f64)) {
        self.signatures += signatures;
        self.seconds += seconds;
    }

    fn per_second(&self) -> f64 {
        self.signatures as f64 / self.seconds
    }
}

/// Runs `threads` signers for `window`; returns the signatures made and the seconds taken.
fn run<F>(threads: usize, window: Duration, make: F) -> (u64, f64)
where
    F: Fn() -> Signer + Send + Sync + Clone + 'static,
{
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let ready = Arc::new(std::sync::Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (stop, count, ready, make) = (
                Arc::clone(&stop),
                Arc::clone(&count),
                Arc::clone(&ready),
                make.clone(),
            );
            std::thread::spawn(move || {
                let mut sign = make();
                sign(); // warm-up: session opened, key found
                ready.wait();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    sign();
                    n += 1;
                }
                count.fetch_add(n, Ordering::Relaxed);
            })
        })
        .collect();
    ready.wait();
    let start = Instant::now();
    std::thread::sleep(window);
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().unwrap();
    }
    (count.load(Ordering::Relaxed), start.elapsed().as_secs_f64())
}
