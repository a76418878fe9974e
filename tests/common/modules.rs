//! Finds the shared libraries (PKCS#11 modules) the tests load, on any architecture: an
//! environment variable names one outright, else the usual library directories are searched —
//! this machine's multiarch directory first (`/usr/lib/<triple>`), then every `/usr/lib/*/`,
//! `/usr/lib`, `/usr/lib64`, `/usr/local/lib`.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Yubico's PKCS#11 module (package `ykcs11`), or `$DFNS_SIGNER_TEST_YKCS11_MODULE`.
pub fn ykcs11() -> PathBuf {
    find_module(
        "DFNS_SIGNER_TEST_YKCS11_MODULE",
        &["libykcs11.so", "libykcs11.so.2"],
        &[],
        &[],
        "Yubico's PKCS#11 module is needed: apt-get install ykcs11 opensc (outside CI, \
         DFNS_SIGNER_SKIP_HARDWARE=1 skips the virtual PIV card tests)",
    )
}

/// OpenSC's PKCS#11 module (package `opensc-pkcs11`), or `$DFNS_SIGNER_TEST_OPENSC_MODULE`.
/// Debian installs it as `/usr/lib/<multiarch>/opensc-pkcs11.so` and under `pkcs11/` there.
pub fn opensc() -> PathBuf {
    find_module(
        "DFNS_SIGNER_TEST_OPENSC_MODULE",
        &["opensc-pkcs11.so"],
        &[],
        &["pkcs11"],
        "OpenSC's PKCS#11 module is needed: apt-get install opensc-pkcs11 (outside CI, \
         DFNS_SIGNER_SKIP_HARDWARE=1 skips the virtual PIV card tests)",
    )
}

/// p11-kit's proxy module (package `p11-kit-modules`), or `$DFNS_SIGNER_TEST_P11_KIT_MODULE`.
pub fn p11_kit_proxy() -> PathBuf {
    find_module(
        "DFNS_SIGNER_TEST_P11_KIT_MODULE",
        &["p11-kit-proxy.so"],
        &[],
        &["pkcs11"],
        "p11-kit's proxy module is needed: apt-get install p11-kit-modules",
    )
}

/// SoftHSM's PKCS#11 module (package `softhsm2`), or `$DFNS_SIGNER_TEST_SOFTHSM_MODULE`.
pub fn softhsm() -> PathBuf {
    static FOUND: OnceLock<PathBuf> = OnceLock::new();
    FOUND
        .get_or_init(|| {
            find_module(
                "DFNS_SIGNER_TEST_SOFTHSM_MODULE",
                &["libsofthsm2.so"],
                // Debian's path first: the one init-token.sh and the docs use.
                &["/usr/lib/softhsm"],
                &["softhsm", "pkcs11"],
                "SoftHSM is needed for these tests: apt-get install softhsm2 opensc (outside CI, \
                 DFNS_SIGNER_SKIP_HARDWARE=1 skips them)",
            )
        })
        .clone()
}

/// `$env_var` when set (it must name an existing file), else the first of `names` found in
/// `preferred` directories, then in the library directories or their `subdirs`. Panics with
/// `install_hint` and the places searched when there is none.
pub fn find_module(
    env_var: &str,
    names: &[&str],
    preferred: &[&str],
    subdirs: &[&str],
    install_hint: &str,
) -> PathBuf {
    if let Some(path) = std::env::var_os(env_var).filter(|v| !v.is_empty()) {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "{env_var}={} is not a file: point it at the module, or unset it to search for {}",
            path.display(),
            names.join(" or ")
        );
        return path;
    }
    let mut dirs: Vec<PathBuf> = preferred.iter().map(PathBuf::from).collect();
    for dir in search_dirs(subdirs) {
        if !dirs.contains(&dir) {
            dirs.push(dir);
        }
    }
    for dir in &dirs {
        for name in names {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "{install_hint}. {} not found in {}; if it is installed elsewhere, set {env_var}=<path>",
        names.join(" or "),
        dirs.iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
}

/// The directories searched, in order, each followed by its `subdirs`.
pub fn search_dirs(subdirs: &[&str]) -> Vec<PathBuf> {
    let mut bases: Vec<PathBuf> = Vec::new();
    if let Some(triple) = multiarch() {
        bases.push(Path::new("/usr/lib").join(triple));
    }
    // Every other /usr/lib/*/ (other architectures' directories come after this machine's).
    if let Ok(entries) = std::fs::read_dir("/usr/lib") {
        let mut others: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        others.sort();
        bases.extend(others);
    }
    bases.extend(
        [
            "/usr/lib",
            "/usr/lib64",
            "/usr/local/lib",
            "/usr/local/lib64",
        ]
        .iter()
        .map(PathBuf::from),
    );
    let mut dirs = Vec::new();
    for base in bases {
        for dir in std::iter::once(base.clone()).chain(subdirs.iter().map(|s| base.join(s))) {
            if !dirs.contains(&dir) {
                dirs.push(dir);
            }
        }
    }
    dirs
}

/// This machine's multiarch triple (`x86_64-linux-gnu`, `aarch64-linux-gnu`, …), from
/// `dpkg-architecture` when it is installed, else from the architecture Rust was built for.
pub fn multiarch() -> Option<String> {
    static TRIPLE: OnceLock<Option<String>> = OnceLock::new();
    TRIPLE
        .get_or_init(|| {
            let dpkg = std::process::Command::new("dpkg-architecture")
                .arg("-qDEB_HOST_MULTIARCH")
                .stderr(std::process::Stdio::null())
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
                .filter(|t| !t.is_empty());
            dpkg.or_else(|| {
                cfg!(target_os = "linux").then(|| format!("{}-linux-gnu", std::env::consts::ARCH))
            })
        })
        .clone()
}
