//! A throw-away SoftHSM for the tests of one test binary.
//!
//! SoftHSM reads `SOFTHSM2_CONF` once, at `C_Initialize`, and finds tokens then; a process loads
//! the module once. So one directory per test binary holds all the tokens, created up front
//! (with `hsm-config/softhsm/init-token.sh`, the script users and the demo run) before any test
//! loads the module. Each test uses its own token, so tests that break sessions or PINs do not
//! disturb the others.

#![allow(dead_code)]

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{OnceLock, RwLock, RwLockReadGuard};

/// The user PIN of every test token (distinctive, so that a leak is easy to spot in output).
pub const USER_PIN: &str = "dfns-Pin-4711";
/// The security officer PIN of every test token.
pub const SO_PIN: &str = "so-Pin-0815";
/// The environment variable the URI tests read the PIN from.
pub const PIN_ENV: &str = "DFNS_SIGNER_TEST_HSM_PIN";

/// Tokens created for the tests, and the keys `init-token.sh` generates in each.
pub const TOKENS: &[(&str, &str)] = &[
    ("algs", "p256 secp256k1 ed25519 rsa2048"),
    ("conc", "p256"),
    ("closed", "p256"),
    ("logout", "p256"),
    ("reinit", "p256"),
    ("pinchg", "p256"),
    ("badpin", "p256"),
    ("pinreg", "p256 ed25519"),
    ("signfail", "p256"),
    ("keygen", ""),
    ("unsafe", ""),
    // tests/pkcs11_faults.rs: one token per fault, as login state is per token and process.
    ("lasttry", "p256"),
    ("loginerr", "p256"),
    ("stuck", "p256"),
    ("corrupt", "p256"),
    ("public", ""),
    ("foreign", "p256"),
    ("removed", "p256"),
    ("always", ""),
    // tests/service_ops.rs: the second device of a key that fails over.
    ("backup", "p256"),
];

/// The SoftHSM set up for this process.
pub struct Hsm {
    /// The directory holding `softhsm2.conf` and `tokens/`.
    pub dir: PathBuf,
    /// The PKCS#11 module.
    pub module: PathBuf,
}

/// SoftHSM's PKCS#11 module: `$DFNS_SIGNER_TEST_SOFTHSM_MODULE`, else `libsofthsm2.so` found in
/// the library directories (`/usr/lib/softhsm/`, the multiarch ones; see [`super::modules`]).
/// Panics, saying how to install it, when there is none.
pub fn module_path() -> PathBuf {
    super::modules::softhsm()
}

/// Tests share one SoftHSM, in this process and in the `softhsm2-util` / `pkcs11-tool` processes
/// they start. SoftHSM keeps tokens in files, and a tool reading every token while this process
/// rewrites one (a key generated, a failed login counted) or this process reading while a tool
/// re-initialises a token fails at random. So tests hold this lock shared while they run, and
/// trade it for the exclusive lock while a tool runs.
static TOOLS: RwLock<()> = RwLock::new(());

/// A test's access to the shared SoftHSM: the lock held shared, traded for the exclusive one
/// while a tool runs.
pub struct Shared {
    hsm: &'static Hsm,
    guard: Option<RwLockReadGuard<'static, ()>>,
}

impl Deref for Shared {
    type Target = Hsm;
    fn deref(&self) -> &Hsm {
        self.hsm
    }
}

impl Shared {
    /// Runs `f` with no other test running SoftHSM operations meanwhile.
    pub fn exclusive<R>(&mut self, f: impl FnOnce(&Hsm) -> R) -> R {
        self.guard = None;
        let write = TOOLS.write().unwrap_or_else(|p| p.into_inner());
        let result = f(self.hsm);
        drop(write);
        self.guard = Some(TOOLS.read().unwrap_or_else(|p| p.into_inner()));
        result
    }

    /// Runs `pkcs11-tool` on this SoftHSM and returns its stdout; panics with stderr on failure.
    pub fn pkcs11_tool(&mut self, args: &[&str]) -> Vec<u8> {
        self.exclusive(|h| h.run_pkcs11_tool(args))
    }

    /// Runs `softhsm2-util` on this SoftHSM; panics with its output on failure.
    pub fn softhsm_util(&mut self, args: &[&str]) {
        self.exclusive(|_| run_softhsm_util(args))
    }
}

/// The shared SoftHSM, or `None` when the developer opted out with `DFNS_SIGNER_SKIP_HARDWARE=1`
/// (then the test, named from its thread, is reported skipped on stderr; in CI that panics).
/// Panics, saying how to install it, when SoftHSM is missing.
pub fn hsm() -> Option<Shared> {
    if super::skip::should_skip(
        super::skip::SKIP_HARDWARE,
        "SoftHSM tests need softhsm2 and opensc",
    ) {
        return None;
    }
    static HSM: OnceLock<Hsm> = OnceLock::new();
    let hsm = HSM.get_or_init(set_up);
    let guard = Some(TOOLS.read().unwrap_or_else(|p| p.into_inner()));
    Some(Shared { hsm, guard })
}

fn set_up() -> Hsm {
    let module = module_path();
    let have = |tool: &str| Command::new(tool).arg("--help").output().is_ok();
    if !have("softhsm2-util") || !have("pkcs11-tool") {
        panic!(
            "SoftHSM is needed for these tests: install it with `apt-get install softhsm2 opensc` \
             (softhsm2-util or pkcs11-tool is not on PATH; module found at {}), or, outside CI, \
             skip hardware tests with DFNS_SIGNER_SKIP_HARDWARE=1",
            module.display()
        );
    }
    remove_leftovers();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!(
        "dfns-signer-softhsm-{}-{nanos}",
        std::process::id()
    ));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("hsm-config/softhsm/init-token.sh");
    for (label, keys) in TOKENS {
        let out = Command::new(&script)
            .arg(&dir)
            .env("TOKEN_LABEL", label)
            .env("KEYS", keys)
            .env("USER_PIN", USER_PIN)
            .env("SO_PIN", SO_PIN)
            .env("MODULE", &module)
            .output()
            .expect("run init-token.sh");
        assert!(
            out.status.success(),
            "init-token.sh for token {label} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Before any test loads the module: SoftHSM reads this at C_Initialize only.
    std::env::set_var("SOFTHSM2_CONF", dir.join("softhsm2.conf"));
    std::env::set_var(PIN_ENV, USER_PIN);
    Hsm { dir, module }
}

/// Removes the token directories of earlier test processes that have exited (there is no hook
/// to remove a directory when a test binary ends).
fn remove_leftovers() {
    remove_leftovers_of_exited_processes("dfns-signer-softhsm-", |p| {
        let _ = std::fs::remove_dir_all(p);
    });
}

/// Removes, with `remove`, the entries of the temporary directory named `<prefix><pid>-…` whose
/// test process `<pid>` has exited. Linux only (`/proc`); elsewhere leaves everything.
pub fn remove_leftovers_of_exited_processes(prefix: &str, remove: impl Fn(&Path)) {
    if !Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix(prefix).and_then(|r| r.split('-').next()) else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            remove(&entry.path());
        }
    }
}

impl Hsm {
    fn run_pkcs11_tool(&self, args: &[&str]) -> Vec<u8> {
        let out = Command::new("pkcs11-tool")
            .arg("--module")
            .arg(&self.module)
            .args(args)
            .output()
            .expect("run pkcs11-tool");
        assert!(
            out.status.success(),
            "pkcs11-tool {args:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// A path for a scratch file in this SoftHSM's directory.
    pub fn scratch(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// The test's own handle on the module: the same library and state as the backend's, reached
/// independently, to act behind the backend's back.
pub fn own_context() -> &'static cryptoki::context::Pkcs11 {
    static CTX: OnceLock<cryptoki::context::Pkcs11> = OnceLock::new();
    // The backend's shared context: initialising the module a second time, from another thread
    // at the same moment, corrupts SoftHSM's state.
    CTX.get_or_init(|| dfns_signer::pkcs11::shared_context(&module_path()).expect("load SoftHSM"))
}

/// The slot holding the token labelled `label`.
pub fn slot_of(label: &str) -> cryptoki::slot::Slot {
    let ctx = own_context();
    ctx.get_slots_with_token()
        .expect("list slots")
        .into_iter()
        .find(|s| {
            ctx.get_token_info(*s)
                .map(|i| i.label().trim_end() == label)
                .unwrap_or(false)
        })
        .unwrap_or_else(|| panic!("no token {label}"))
}

/// The module loaded a second time through `cryptoki-sys`, for calls `cryptoki` has no safe
/// form of (dlopen shares the module's state with the backend's).
fn raw_module() -> &'static cryptoki_sys::Pkcs11 {
    static RAW: OnceLock<&'static cryptoki_sys::Pkcs11> = OnceLock::new();
    // SAFETY: loads the same library the backend uses; it stays loaded for the process.
    RAW.get_or_init(|| unsafe {
        Box::leak(Box::new(
            cryptoki_sys::Pkcs11::new(module_path()).expect("dlopen SoftHSM"),
        ))
    })
}

/// How many sessions the module holds open on the token's slot, whoever opened them: SoftHSM
/// reports no session count (`ulSessionCount` is unavailable), so this asks `C_GetSessionInfo`
/// about every handle SoftHSM may have given out (it numbers sessions from 1 and reuses the
/// numbers of closed ones). Each test uses its own token, so other tests do not count here.
pub fn sessions_on(label: &str) -> usize {
    let slot = slot_of(label).id() as cryptoki_sys::CK_SLOT_ID;
    let lib = raw_module();
    (1..=4096)
        .filter(|h| {
            let mut info = cryptoki_sys::CK_SESSION_INFO::default();
            // SAFETY: a valid out-pointer; any handle number may be asked about.
            let rv = unsafe { lib.C_GetSessionInfo(*h, &mut info) };
            rv == cryptoki_sys::CKR_OK && info.slotID == slot
        })
        .count()
}

/// Calls `C_CloseAllSessions` on the token's slot, as another part of the application (or a
/// misbehaving library user) might. `cryptoki` has no safe call for it.
pub fn close_all_sessions(label: &str) {
    let slot = slot_of(label);
    // SAFETY: a PKCS#11 function that takes only a slot id.
    let rv = unsafe { raw_module().C_CloseAllSessions(slot.id() as cryptoki_sys::CK_SLOT_ID) };
    assert_eq!(rv, cryptoki_sys::CKR_OK, "C_CloseAllSessions");
}

fn run_softhsm_util(args: &[&str]) {
    let out = Command::new("softhsm2-util")
        .args(args)
        .output()
        .expect("run softhsm2-util");
    assert!(
        out.status.success(),
        "softhsm2-util {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The P-256 curve OID, as CKA_EC_PARAMS holds it.
pub const P256_PARAMS: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

/// Makes a key pair on the token labelled `token` directly through SoftHSM, as a careless import
/// or another tool would, logged in as the user: both objects are token objects labelled `label`
/// with id `id`, plus `public` and `private` attributes (for keys the backend must judge).
pub fn make_pair(
    token: &str,
    mechanism: &cryptoki::mechanism::Mechanism,
    label: &str,
    id: &[u8],
    public: Vec<cryptoki::object::Attribute>,
    private: Vec<cryptoki::object::Attribute>,
) {
    use cryptoki::object::Attribute;
    let session = own_context().open_rw_session(slot_of(token)).unwrap();
    // Already logged in by another session of this process is fine.
    session
        .login(
            cryptoki::session::UserType::User,
            Some(&secrecy::SecretString::from(USER_PIN.to_owned())),
        )
        .ok();
    let with_names = |mut extra: Vec<Attribute>| {
        extra.extend([
            Attribute::Token(true),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Id(id.to_vec()),
        ]);
        extra
    };
    session
        .generate_key_pair(mechanism, &with_names(public), &with_names(private))
        .unwrap();
}

/// A throw-away SoftHSM token labelled `label` (user PIN 864213) in a fresh `dir`, with the key
/// pairs `keys` names (`init-token.sh`'s KEYS: "" for none, "p256"…), for tests that run the
/// binary: point its `SOFTHSM2_CONF` at `dir/softhsm2.conf`.
pub fn cli_token(dir: &Path, label: &str, module: &Path) {
    cli_token_with_keys(dir, label, module, "")
}

/// [`cli_token`] with key pairs.
pub fn cli_token_with_keys(dir: &Path, label: &str, module: &Path, keys: &str) {
    let _ = std::fs::remove_dir_all(dir);
    let init = Command::new(format!(
        "{}/hsm-config/softhsm/init-token.sh",
        env!("CARGO_MANIFEST_DIR")
    ))
    .arg(dir)
    .env("KEYS", keys)
    .env("MODULE", module)
    .env("TOKEN_LABEL", label)
    .env("USER_PIN", "864213")
    .output()
    .unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
}
