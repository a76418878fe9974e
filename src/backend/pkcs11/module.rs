//! One loaded, initialised PKCS#11 module per library path, shared by the whole process.
//!
//! PKCS#11 allows one `C_Initialize` per process and module, and a module's login state is
//! per token for the whole application, so every key on the same module must share one
//! context. Modules are never finalised: other keys (or other code in the process) may still
//! use them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};

use crate::error::BackendError;

/// The environment variable naming the default module when a URI or config gives none.
pub const MODULE_ENV: &str = "DFNS_SIGNER_PKCS11_MODULE";

/// A loaded and initialised module.
pub(crate) struct Module {
    path: PathBuf,
    ctx: Pkcs11,
    /// Whether we initialised it with OS locking. A module someone else in the process
    /// initialised first may have been told to do no locking at all; it is then called from one
    /// thread at a time (session pools of one).
    threads_safe: bool,
}

impl Module {
    pub(crate) fn ctx(&self) -> &Pkcs11 {
        &self.ctx
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Whether several threads may call the module at once (see [`Module::threads_safe`]).
    pub(crate) fn concurrent_calls_allowed(&self) -> bool {
        self.threads_safe
    }
}

impl std::fmt::Debug for Module {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Module({})", self.path.display())
    }
}

fn cache() -> &'static Mutex<HashMap<PathBuf, Arc<Module>>> {
    static CACHE: OnceLock<Mutex<HashMap<PathBuf, Arc<Module>>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// The module path a config names, else the one `DFNS_SIGNER_PKCS11_MODULE` names, else
/// p11-kit's proxy module when it is installed: it loads every module the system registered
/// (`/usr/share/p11-kit/modules/*.module`: SoftHSM, OpenSC, vendors' HSM modules), which is what
/// OpenSSL's and step-kms-plugin's PKCS#11 users get by default.
pub(crate) fn resolve_path(given: Option<&Path>) -> Result<PathBuf, String> {
    choose_path(
        given,
        std::env::var_os(MODULE_ENV).filter(|p| !p.is_empty()),
        p11_kit_proxy,
    )
}

/// [`resolve_path`]'s rule, with the environment and the search handed in.
fn choose_path(
    given: Option<&Path>,
    from_env: Option<std::ffi::OsString>,
    p11_kit: impl FnOnce() -> Option<PathBuf>,
) -> Result<PathBuf, String> {
    if let Some(p) = given {
        return Ok(p.to_owned());
    }
    if let Some(p) = from_env {
        return Ok(PathBuf::from(p));
    }
    if let Some(proxy) = p11_kit() {
        return Ok(proxy);
    }
    Err(format!(
        "no PKCS#11 module given: add `module-path=/path/to/module.so` to the URI's query, set \
         {MODULE_ENV}, or install p11-kit's proxy module (Debian: `apt-get install p11-kit-modules`) \
         to use the modules the system registered"
    ))
}

/// p11-kit's proxy module (`p11-kit-proxy.so`), where distributions install it.
pub(crate) fn p11_kit_proxy() -> Option<PathBuf> {
    const NAME: &str = "p11-kit-proxy.so";
    let mut dirs: Vec<PathBuf> = Vec::new();
    // Debian/Ubuntu multiarch directories (`/usr/lib/x86_64-linux-gnu`, `/usr/lib/aarch64-…`).
    if let Ok(entries) = std::fs::read_dir("/usr/lib") {
        let mut multiarch: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.ends_with("-linux-gnu") || n.ends_with("-linux-musl"))
            })
            .collect();
        multiarch.sort();
        dirs.extend(multiarch);
    }
    dirs.extend(
        [
            "/usr/lib64",
            "/usr/lib",
            "/usr/local/lib",
            "/opt/homebrew/lib",
        ]
        .iter()
        .map(PathBuf::from),
    );
    dirs.into_iter()
        .flat_map(|d| [d.join(NAME), d.join("pkcs11").join(NAME)])
        .find(|p| p.is_file())
}

/// Loads and initialises the module at `path`, or returns the one already loaded.
pub(crate) fn load(path: &Path) -> Result<Arc<Module>, BackendError> {
    // Key the cache on the canonical path, so `./x.so` and `/abs/x.so` share a context.
    let key = std::fs::canonicalize(path).map_err(|e| not_loadable(path, &e.to_string()))?;
    let mut modules = cache().lock().unwrap_or_else(|p| p.into_inner());
    if let Some(m) = modules.get(&key) {
        return Ok(Arc::clone(m));
    }
    let ctx = Pkcs11::new(&key).map_err(|e| not_loadable(path, &e.to_string()))?;
    // OS locking: the session pool calls the module from several threads at once.
    let threads_safe = match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) => true,
        // Someone else in this process initialised it first; its state is shared and usable,
        // but we cannot know whether they asked for locking: keys use one session at a time.
        Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {
            tracing::warn!(
                module = %path.display(),
                "the PKCS#11 module was initialised by other code in this process, perhaps without \
                 OS locking: signing through it one call at a time (session pool of 1)"
            );
            false
        }
        Err(e) => {
            return Err(BackendError::Device {
                device: format!("PKCS#11 module {}", path.display()),
                operation: "C_Initialize".into(),
                reason: format!(
                    "{e}; check the module's own configuration (SoftHSM: SOFTHSM2_CONF)"
                ),
                source: Some(Box::new(e)),
            })
        }
    };
    let module = Arc::new(Module {
        path: path.to_owned(),
        ctx,
        threads_safe,
    });
    modules.insert(key, Arc::clone(&module));
    Ok(module)
}

/// The process-wide, initialised `cryptoki` context for the module at `path` (loaded and
/// initialised on first use), for code that makes its own PKCS#11 calls on the same module.
///
/// Use this rather than `Pkcs11::new` + `initialize`: a module is initialised once per process,
/// and two threads initialising it at the same moment can corrupt its state (SoftHSM 2.6 does not
/// guard `C_Initialize` against that race).
pub fn shared_context(path: &Path) -> Result<Pkcs11, BackendError> {
    Ok(load(path)?.ctx().clone())
}

fn not_loadable(path: &Path, why: &str) -> BackendError {
    BackendError::Device {
        device: format!("PKCS#11 module {}", path.display()),
        operation: "load".into(),
        reason: format!(
            "{why}; check the path, or install the module that provides it \
             (SoftHSM: `apt-get install softhsm2` gives /usr/lib/softhsm/libsofthsm2.so)"
        ),
        source: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_module_comes_from_the_uri_then_the_environment_then_p11_kit() {
        let proxy = || Some(PathBuf::from("/usr/lib/p11-kit-proxy.so"));
        let none = || None;
        let given = Path::new("/opt/hsm/libvendor.so");
        assert_eq!(
            choose_path(Some(given), Some("/env.so".into()), proxy),
            Ok(given.to_owned())
        );
        assert_eq!(
            choose_path(None, Some("/env.so".into()), proxy),
            Ok(PathBuf::from("/env.so"))
        );
        assert_eq!(
            choose_path(None, None, proxy),
            Ok(PathBuf::from("/usr/lib/p11-kit-proxy.so"))
        );
        let err = choose_path(None, None, none).unwrap_err();
        assert!(
            err.contains("module-path")
                && err.contains(MODULE_ENV)
                && err.contains("p11-kit-modules"),
            "{err}"
        );
    }
}
