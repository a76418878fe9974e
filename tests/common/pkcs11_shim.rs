//! Fault injection for the PKCS#11 tests: a proxy module (`tests/pkcs11-shim/`) that forwards
//! every call to SoftHSM and can make a token misbehave the way real ones do — report "last PIN
//! try" (or a low count, or a locked PIN), fail `C_Login` with a device error, hang in `C_Sign`
//! like a stuck network HSM, fail `C_Sign`, or return a corrupted signature.
//!
//! Each [`Shim`] is a private copy of the module, at a path of its own: a distinct path is a
//! distinct `dlopen` instance, so tests running in parallel in one process each have their own
//! faults. A copy reads its faults from `<path>.conf` at every intercepted call, so a test can
//! change them while a key is open, and logs each intercepted call (`C_Initialize`, `C_Finalize`,
//! `C_GetTokenInfo`, `C_Login`, `C_Sign`) with its result to `<path>.calls`. All copies forward
//! to the one SoftHSM the process loads (never finalised by a copy), with the tokens
//! [`super::softhsm::hsm`] set up. See `tests/pkcs11-shim/src/lib.rs` for the keys in full.
//!
//! ```ignore
//! let Some(_hsm) = hsm() else { return };     // the tokens, and SOFTHSM2_CONF, first
//! let shim = Shim::new("final-try");
//! let key = Pkcs11Key::open(&Pkcs11Config::new().with_module_path(&shim.path) /* ... */)?;
//! shim.set(&[("final_try", "1"), ("login_error", "0xa0")]);
//! // ... the backend sees the token's last PIN try, then a refused PIN ...
//! assert_eq!(shim.calls("C_Login"), 1);
//! shim.clear();
//! ```

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

/// The keys `tests/pkcs11-shim` understands (besides `target`, which [`Shim`] sets itself).
pub const KEYS: &[&str] = &[
    "final_try",
    "count_low",
    "pin_locked",
    "login_error",
    "sign_delay_ms",
    "sign_error",
    "sign_corrupt",
    "token_absent",
];

/// The shim module, built once per process (`cargo build --release` of `tests/pkcs11-shim` into
/// `target/pkcs11-shim`). Panics with cargo's output when the build fails.
pub fn shim_library() -> PathBuf {
    static LIBRARY: OnceLock<PathBuf> = OnceLock::new();
    LIBRARY.get_or_init(build).clone()
}

fn build() -> PathBuf {
    remove_leftovers();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target_dir = repo.join("target/pkcs11-shim");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(&cargo)
        .args(["build", "--release", "--locked", "--manifest-path"])
        .arg(repo.join("tests/pkcs11-shim/Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        // A cross target would move the output to target/pkcs11-shim/<triple>/release.
        .env_remove("CARGO_BUILD_TARGET")
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", Path::new(&cargo).display()));
    assert!(
        out.status.success(),
        "building the PKCS#11 shim (tests/pkcs11-shim) failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let library = target_dir.join("release").join(format!(
        "{}dfns_signer_pkcs11_shim{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ));
    assert!(
        library.is_file(),
        "cargo built the PKCS#11 shim, but {} is not there",
        library.display()
    );
    library
}

/// Prefix of every copy's file name (followed by the pid of the test process).
const PREFIX: &str = "dfns-signer-pkcs11-shim-";

/// Removes the copies (and their .conf and .calls) of test processes that have exited.
fn remove_leftovers() {
    crate::common::softhsm::remove_leftovers_of_exited_processes(PREFIX, |p| {
        let _ = std::fs::remove_file(p);
    });
}

/// A private copy of the shim module, with its configuration and calls log; removed on drop.
pub struct Shim {
    /// The module to load (`Pkcs11::new`, `Pkcs11Config::with_module_path`, `module-path=`).
    pub path: PathBuf,
    /// The real module it forwards to.
    target: PathBuf,
}

impl Shim {
    /// A new copy of the shim, forwarding to SoftHSM, with no faults. `name` (the test's, say)
    /// goes into the file name, to tell copies apart when looking at them.
    ///
    /// Call [`hsm`](super::softhsm::hsm) first: SoftHSM must find this process's tokens
    /// when it is initialised, which happens here (once, through the backend's shared context,
    /// so that no two threads initialise it at once: SoftHSM 2.6 does not survive that). The
    /// copies' own `C_Initialize` then find it initialised.
    pub fn new(name: &str) -> Shim {
        static COPIES: AtomicUsize = AtomicUsize::new(0);
        assert!(
            std::env::var_os("SOFTHSM2_CONF").is_some(),
            "Shim::new before common::softhsm::hsm(): SoftHSM would not find the test tokens"
        );
        super::softhsm::own_context();
        let library = shim_library();
        let name: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let path = std::env::temp_dir().join(format!(
            "{PREFIX}{}-{}-{name}{}",
            std::process::id(),
            COPIES.fetch_add(1, Ordering::Relaxed),
            std::env::consts::DLL_SUFFIX
        ));
        std::fs::copy(&library, &path)
            .unwrap_or_else(|e| panic!("copy {} to {}: {e}", library.display(), path.display()));
        let shim = Shim {
            path,
            target: super::softhsm::module_path(),
        };
        let _ = std::fs::remove_file(shim.calls_path());
        shim.clear();
        shim
    }

    /// Replaces the faults with `faults` (`("final_try", "1")`, `("login_error", "0x30")`, ...;
    /// see [`KEYS`]); the copy reads them at its next intercepted call. Panics on a key the shim
    /// does not know, so that a typo cannot pass for a fault that never happens.
    pub fn set(&self, faults: &[(&str, &str)]) {
        let mut text = format!("target={}\n", self.target.display());
        for (key, value) in faults {
            assert!(
                KEYS.contains(key),
                "pkcs11 shim: unknown key {key:?} (known: {KEYS:?})"
            );
            text.push_str(&format!("{key}={value}\n"));
        }
        // Written beside and renamed into place: the shim never reads half a file.
        let conf = self.conf_path();
        let partial = self.beside(".conf.partial");
        std::fs::write(&partial, text)
            .and_then(|()| std::fs::rename(&partial, &conf))
            .unwrap_or_else(|e| panic!("write {}: {e}", conf.display()));
    }

    /// No faults.
    pub fn clear(&self) {
        self.set(&[]);
    }

    /// How many intercepted calls to `function` (`"C_Login"`, `"C_Sign"`, ...) the log holds.
    pub fn calls(&self, function: &str) -> usize {
        self.calls_log()
            .iter()
            .filter(|line| line.split_whitespace().next() == Some(function))
            .count()
    }

    /// The calls log: one `NAME RV` line per intercepted call (`C_Login 0x0`, `C_Sign 0x30`).
    pub fn calls_log(&self) -> Vec<String> {
        match std::fs::read_to_string(self.calls_path()) {
            Ok(text) => text.lines().map(str::to_owned).collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => panic!("read {}: {e}", self.calls_path().display()),
        }
    }

    /// `<path>.conf`, the faults the copy reads.
    pub fn conf_path(&self) -> PathBuf {
        self.beside(".conf")
    }

    /// `<path>.calls`, the calls log.
    pub fn calls_path(&self) -> PathBuf {
        self.beside(".calls")
    }

    fn beside(&self, suffix: &str) -> PathBuf {
        let mut path = self.path.clone().into_os_string();
        path.push(suffix);
        PathBuf::from(path)
    }
}

impl Drop for Shim {
    fn drop(&mut self) {
        // A copy still loaded keeps working (its file stays mapped), without faults.
        for path in [self.conf_path(), self.calls_path(), self.path.clone()] {
            let _ = std::fs::remove_file(path);
        }
    }
}
