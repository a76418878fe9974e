//! A fault-injecting PKCS#11 proxy module, for dfns-signer's tests only.
//!
//! The module forwards every PKCS#11 call to a real module (SoftHSM by default) and can make a
//! few of them misbehave the way real tokens and network HSMs do: report "last PIN try", fail a
//! login with a device error, hang in `C_Sign`, fail `C_Sign`, or return a corrupted signature.
//!
//! # How it is configured
//!
//! Tests copy the built library to a path of their own (a `dlopen` of a distinct path is a
//! distinct instance, with its own statics). The module finds its own path with `dladdr` and
//! reads `<own path>.conf`, lines of `key=value` (`#` starts a comment), **again at every
//! intercepted call**, so a test can change the faults while a key is open:
//!
//! | key | effect |
//! | --- | --- |
//! | `target=PATH` | the real module (default `/usr/lib/softhsm/libsofthsm2.so`); read once, when the module is first asked for its function list |
//! | `final_try=1`, `count_low=1`, `pin_locked=1` | `C_GetTokenInfo` ORs `CKF_USER_PIN_FINAL_TRY`, `CKF_USER_PIN_COUNT_LOW`, `CKF_USER_PIN_LOCKED` into the token's flags |
//! | `login_error=0xNN` | `C_Login` returns that `CK_RV` without forwarding (the real token sees no PIN) |
//! | `sign_delay_ms=N` | (decimal) every `C_Sign` call (a length query too) sleeps N ms, then goes on |
//! | `sign_error=0xNN` | `C_Sign` returns that `CK_RV`; the caller gets no signature |
//! | `token_absent=1` | `C_GetTokenInfo` returns `CKR_TOKEN_NOT_PRESENT`, as for a token pulled out |
//! | `sign_corrupt=1` | a successful `C_Sign` that wrote a signature has one bit flipped in its middle byte |
//!
//! `CK_RV` values are decimal or `0x` hex; a `CK_RV` of 0 means "no fault". Unknown keys and
//! bad values are reported on stderr (the test's output) and ignored.
//!
//! # What else differs from the real module
//!
//! * `C_Initialize` is forwarded (copies of this module in one process take turns: SoftHSM does
//!   not survive two at once); when the real module answers
//!   `CKR_CRYPTOKI_ALREADY_INITIALIZED` (another copy of this module, or the test process
//!   itself, initialised it), this module answers `CKR_OK` to its own first `C_Initialize`. It
//!   keeps its own initialised state: a second `C_Initialize` without a `C_Finalize` between
//!   gets `CKR_CRYPTOKI_ALREADY_INITIALIZED`.
//! * `C_Finalize` is never forwarded (the real module is shared by the whole process): it only
//!   marks this module uninitialised. The intercepted calls then answer
//!   `CKR_CRYPTOKI_NOT_INITIALIZED` as a real module would; the others are still forwarded, and
//!   sessions opened through this module stay open in the real one.
//! * An injected `C_Sign` error ends the real module's signing operation, as the spec says a
//!   failed `C_Sign` does (by finishing it into a scratch buffer that is thrown away), so the
//!   session can sign again afterwards. An injected `CKR_BUFFER_TOO_SMALL` leaves it active.
//!
//! # Calls log
//!
//! Each intercepted call (`C_Initialize`, `C_Finalize`, `C_GetTokenInfo`, `C_Login`, `C_Sign`)
//! appends a line `NAME RV` to `<own path>.calls` (created if missing; skipped if it cannot be
//! written), the result in hex, e.g. `C_Login 0x0`, `C_Login 0xa0`.

#![warn(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]

use std::ffi::{c_void, CStr, OsStr};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use cryptoki_sys::{
    CKF_USER_PIN_COUNT_LOW, CKF_USER_PIN_FINAL_TRY, CKF_USER_PIN_LOCKED, CKR_ARGUMENTS_BAD,
    CKR_BUFFER_TOO_SMALL, CKR_CRYPTOKI_ALREADY_INITIALIZED, CKR_CRYPTOKI_NOT_INITIALIZED,
    CKR_FUNCTION_NOT_SUPPORTED, CKR_GENERAL_ERROR, CKR_OK, CKR_TOKEN_NOT_PRESENT, CK_BYTE,
    CK_FLAGS, CK_FUNCTION_LIST, CK_RV, CK_SESSION_HANDLE, CK_SLOT_ID, CK_TOKEN_INFO, CK_ULONG,
    CK_USER_TYPE, CK_UTF8CHAR,
};

/// The real module when the configuration names none.
const DEFAULT_TARGET: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// This copy of the module, set up by the first `C_GetFunctionList`.
struct Shim {
    /// Where this copy was loaded from; the configuration and calls log sit beside it.
    own_path: PathBuf,
    /// The real module's file.
    target_path: PathBuf,
    /// Keeps the real module loaded (never dropped: statics are not), so that the function
    /// pointers in `target` stay valid.
    _library: libloading::Library,
    /// The real module's function list, as it gave it.
    target: CK_FUNCTION_LIST,
    /// The list this module hands out: `target` with the intercepted entries replaced.
    ours: CK_FUNCTION_LIST,
}

static SHIM: OnceLock<Shim> = OnceLock::new();
/// Serialises the first set-up, so the real module is asked for its list once.
static LOADING: Mutex<()> = Mutex::new(());
/// Whether this copy has been `C_Initialize`d (and not `C_Finalize`d since).
static INITIALIZED: Mutex<bool> = Mutex::new(false);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic cannot cross the C ABI (it aborts), so a poisoned lock only means a panic in
    // code that never ran; the data is a plain value either way.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The PKCS#11 entry point: sets this copy up on the first call, then hands out its list.
///
/// # Safety
///
/// `ppFunctionList` must be null or valid for writing one pointer (the PKCS#11 contract).
#[no_mangle]
#[allow(non_snake_case)]
pub unsafe extern "C" fn C_GetFunctionList(ppFunctionList: *mut *mut CK_FUNCTION_LIST) -> CK_RV {
    if ppFunctionList.is_null() {
        return CKR_ARGUMENTS_BAD;
    }
    let shim = match SHIM.get() {
        Some(shim) => shim,
        None => {
            let _loading = lock(&LOADING);
            match SHIM.get() {
                Some(shim) => shim,
                None => match Shim::load() {
                    Ok(shim) => SHIM.get_or_init(|| shim),
                    Err(e) => {
                        eprintln!("pkcs11-shim: {e}");
                        return CKR_GENERAL_ERROR;
                    }
                },
            }
        }
    };
    // The list lives in a static that is never dropped or moved; PKCS#11 callers only read it
    // (the spec forbids writing through this pointer), so handing out `*mut` is sound.
    let list = &shim.ours as *const CK_FUNCTION_LIST as *mut CK_FUNCTION_LIST;
    // SAFETY: the caller passed a non-null pointer valid for one write (checked above).
    unsafe { ppFunctionList.write(list) };
    CKR_OK
}

impl Shim {
    fn load() -> Result<Shim, String> {
        let own_path = own_path().ok_or("cannot find this module's own path (dladdr)")?;
        let conf = Conf::read(&own_path);
        let target = conf
            .target
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_TARGET));
        // SAFETY: loading a PKCS#11 module runs its initialisers; the modules this is pointed
        // at (SoftHSM) have no initialisers with preconditions on the loading process.
        let library = unsafe { libloading::Library::new(&target) }
            .map_err(|e| format!("cannot load target module {}: {e}", target.display()))?;
        type GetFunctionList = unsafe extern "C" fn(*mut *mut CK_FUNCTION_LIST) -> CK_RV;
        // SAFETY: `C_GetFunctionList` has this signature in every PKCS#11 module.
        let get_list = unsafe { library.get::<GetFunctionList>(b"C_GetFunctionList\0") }
            .map_err(|e| format!("{}: no C_GetFunctionList: {e}", target.display()))?;
        let mut list: *mut CK_FUNCTION_LIST = std::ptr::null_mut();
        // SAFETY: `list` is a valid out-pointer for the call.
        let rv = unsafe { get_list(&mut list) };
        if rv != CKR_OK || list.is_null() {
            return Err(format!(
                "{}: C_GetFunctionList returned {rv:#x}",
                target.display()
            ));
        }
        // SAFETY: on CKR_OK the module points `list` at its function list, which stays valid
        // while the module is loaded (we keep it loaded). The list is plain data; we copy it.
        let target_list = unsafe { list.read() };
        let mut ours = target_list;
        ours.C_GetFunctionList = Some(C_GetFunctionList);
        ours.C_Initialize = Some(initialize);
        ours.C_Finalize = Some(finalize);
        ours.C_GetTokenInfo = Some(get_token_info);
        ours.C_Login = Some(login);
        ours.C_Sign = Some(sign);
        Ok(Shim {
            own_path,
            target_path: target,
            _library: library,
            target: target_list,
            ours,
        })
    }

    /// `<own path>` + `suffix`.
    fn beside(&self, suffix: &str) -> PathBuf {
        let mut path = self.own_path.clone().into_os_string();
        path.push(suffix);
        PathBuf::from(path)
    }

    /// The faults in force now (the configuration is read again at every call).
    fn faults(&self) -> Faults {
        Conf::read(&self.own_path).faults
    }

    /// Appends `NAME RV` to the calls log; a log that cannot be written is skipped.
    fn log(&self, function: &str, rv: CK_RV) -> CK_RV {
        let line = format!("{function} {rv:#x}\n");
        if let Ok(mut file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.beside(".calls"))
        {
            // One write of a whole line to a file opened for appending: lines of concurrent
            // calls do not interleave.
            let _ = file.write_all(line.as_bytes());
        }
        rv
    }
}

/// The path this copy of the module was loaded from.
fn own_path() -> Option<PathBuf> {
    // SAFETY: `Dl_info` is plain old data (pointers and integers); all zeroes is a valid value.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    let address = C_GetFunctionList as *const c_void;
    // SAFETY: `address` is a function of this module and `info` a valid out-pointer.
    let found = unsafe { libc::dladdr(address, &mut info) };
    if found == 0 || info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: dladdr succeeded, so `dli_fname` is a NUL-terminated string owned by the dynamic
    // linker, valid while this module is loaded (it is: this code is running); we copy it.
    let name = unsafe { CStr::from_ptr(info.dli_fname) };
    Some(PathBuf::from(OsStr::from_bytes(name.to_bytes())))
}

/// `<own path>.conf`, parsed.
#[derive(Default)]
struct Conf {
    target: Option<PathBuf>,
    faults: Faults,
}

/// The faults to inject.
#[derive(Default)]
struct Faults {
    /// ORed into `C_GetTokenInfo`'s flags.
    token_flags: CK_FLAGS,
    login_error: Option<CK_RV>,
    sign_delay: Option<Duration>,
    sign_error: Option<CK_RV>,
    sign_corrupt: bool,
    /// `C_GetTokenInfo` answers `CKR_TOKEN_NOT_PRESENT`.
    token_absent: bool,
}

impl Conf {
    fn read(own_path: &Path) -> Conf {
        let mut path = own_path.as_os_str().to_owned();
        path.push(".conf");
        let path = PathBuf::from(path);
        match std::fs::read_to_string(&path) {
            Ok(text) => Conf::parse(&text, &path),
            Err(_) => Conf::default(),
        }
    }

    fn parse(text: &str, path: &Path) -> Conf {
        let mut conf = Conf::default();
        for (number, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let complain = |what: &str| {
                eprintln!(
                    "pkcs11-shim: {}:{}: {what}: {line:?} (ignored)",
                    path.display(),
                    number + 1
                )
            };
            let Some((key, value)) = line.split_once('=') else {
                complain("not key=value");
                continue;
            };
            let (key, value) = (key.trim(), value.trim());
            let flag = |bit: CK_FLAGS| match value {
                "1" | "true" | "yes" => Some(bit),
                "0" | "false" | "no" => Some(0),
                _ => None,
            };
            let faults = &mut conf.faults;
            let ok = match key {
                "target" => {
                    conf.target = Some(PathBuf::from(value));
                    Some(())
                }
                "final_try" => flag(CKF_USER_PIN_FINAL_TRY).map(|b| faults.token_flags |= b),
                "count_low" => flag(CKF_USER_PIN_COUNT_LOW).map(|b| faults.token_flags |= b),
                "pin_locked" => flag(CKF_USER_PIN_LOCKED).map(|b| faults.token_flags |= b),
                "sign_corrupt" => flag(1).map(|b| faults.sign_corrupt = b != 0),
                "token_absent" => flag(1).map(|b| faults.token_absent = b != 0),
                "login_error" => number_of(value).map(|rv| faults.login_error = nonzero(rv)),
                "sign_error" => number_of(value).map(|rv| faults.sign_error = nonzero(rv)),
                "sign_delay_ms" => value
                    .parse()
                    .ok()
                    .map(|ms| faults.sign_delay = Some(Duration::from_millis(ms))),
                _ => {
                    complain("unknown key");
                    continue;
                }
            }
            .is_some();
            if !ok {
                complain("bad value");
            }
        }
        conf
    }
}

/// A decimal or `0x` hexadecimal number.
fn number_of(value: &str) -> Option<CK_ULONG> {
    match value
        .strip_prefix("0x")
        .or_else(|| value.strip_prefix("0X"))
    {
        Some(hex) => CK_ULONG::from_str_radix(hex, 16).ok(),
        None => value.parse().ok(),
    }
}

fn nonzero(rv: CK_RV) -> Option<CK_RV> {
    (rv != CKR_OK).then_some(rv)
}

/// This copy, when it has been set up and initialised; else the `CK_RV` to answer.
fn initialised_shim() -> Result<&'static Shim, CK_RV> {
    // Only reachable through the list `C_GetFunctionList` handed out, so SHIM is set.
    let shim = SHIM.get().ok_or(CKR_GENERAL_ERROR)?;
    if *lock(&INITIALIZED) {
        Ok(shim)
    } else {
        Err(CKR_CRYPTOKI_NOT_INITIALIZED)
    }
}

unsafe extern "C" fn initialize(init_args: *mut c_void) -> CK_RV {
    let Some(shim) = SHIM.get() else {
        return CKR_GENERAL_ERROR;
    };
    // Held across the forwarded call: two threads initialising this copy at once get one
    // CKR_OK and one CKR_CRYPTOKI_ALREADY_INITIALIZED.
    let mut initialised = lock(&INITIALIZED);
    let rv = if *initialised {
        CKR_CRYPTOKI_ALREADY_INITIALIZED
    } else {
        let Some(forward) = shim.target.C_Initialize else {
            return shim.log("C_Initialize", CKR_GENERAL_ERROR);
        };
        // Other copies of this module in the process have statics of their own: they take
        // turns through a lock on the real module's file instead. SoftHSM 2.6 checks and sets
        // its "initialised" state without a lock, and two `C_Initialize` at the same moment
        // leave it with two sets of slots and sessions (logins then seem to vanish or leak
        // between tokens). Callers that are not copies of this module are not held back.
        let _turn = std::fs::File::open(&shim.target_path).and_then(|f| f.lock().map(|()| f));
        // SAFETY: the caller's arguments, passed on unchanged to the function the real
        // module lists for this call, under the same contract.
        match unsafe { forward(init_args) } {
            CKR_OK | CKR_CRYPTOKI_ALREADY_INITIALIZED => {
                *initialised = true;
                CKR_OK
            }
            error => error,
        }
    };
    shim.log("C_Initialize", rv)
}

unsafe extern "C" fn finalize(reserved: *mut c_void) -> CK_RV {
    let Some(shim) = SHIM.get() else {
        return CKR_GENERAL_ERROR;
    };
    let mut initialised = lock(&INITIALIZED);
    let rv = if !reserved.is_null() {
        CKR_ARGUMENTS_BAD
    } else if !*initialised {
        CKR_CRYPTOKI_NOT_INITIALIZED
    } else {
        *initialised = false;
        CKR_OK
    };
    shim.log("C_Finalize", rv)
}

unsafe extern "C" fn get_token_info(slot: CK_SLOT_ID, info: *mut CK_TOKEN_INFO) -> CK_RV {
    let shim = match initialised_shim() {
        Ok(shim) => shim,
        Err(rv) => return log_if_set_up("C_GetTokenInfo", rv),
    };
    let faults = shim.faults();
    let Some(forward) = shim.target.C_GetTokenInfo else {
        return shim.log("C_GetTokenInfo", CKR_FUNCTION_NOT_SUPPORTED);
    };
    if faults.token_absent {
        return shim.log("C_GetTokenInfo", CKR_TOKEN_NOT_PRESENT);
    }
    // SAFETY: the caller's arguments, passed on unchanged, under the same contract.
    let rv = unsafe { forward(slot, info) };
    if rv == CKR_OK && !info.is_null() {
        // SAFETY: on CKR_OK the module filled in `*info`, which the caller provided for
        // writing; we update one integer field in place.
        unsafe { (*info).flags |= faults.token_flags };
    }
    shim.log("C_GetTokenInfo", rv)
}

unsafe extern "C" fn login(
    session: CK_SESSION_HANDLE,
    user_type: CK_USER_TYPE,
    pin: *mut CK_UTF8CHAR,
    pin_len: CK_ULONG,
) -> CK_RV {
    let shim = match initialised_shim() {
        Ok(shim) => shim,
        Err(rv) => return log_if_set_up("C_Login", rv),
    };
    let rv = match shim.faults().login_error {
        Some(rv) => rv,
        None => match shim.target.C_Login {
            // SAFETY: the caller's arguments, passed on unchanged, under the same contract.
            Some(forward) => unsafe { forward(session, user_type, pin, pin_len) },
            None => CKR_FUNCTION_NOT_SUPPORTED,
        },
    };
    shim.log("C_Login", rv)
}

unsafe extern "C" fn sign(
    session: CK_SESSION_HANDLE,
    data: *mut CK_BYTE,
    data_len: CK_ULONG,
    signature: *mut CK_BYTE,
    signature_len: *mut CK_ULONG,
) -> CK_RV {
    let shim = match initialised_shim() {
        Ok(shim) => shim,
        Err(rv) => return log_if_set_up("C_Sign", rv),
    };
    let faults = shim.faults();
    let Some(forward) = shim.target.C_Sign else {
        return shim.log("C_Sign", CKR_FUNCTION_NOT_SUPPORTED);
    };
    if let Some(delay) = faults.sign_delay {
        std::thread::sleep(delay);
    }
    if let Some(error) = faults.sign_error {
        if error != CKR_BUFFER_TOO_SMALL {
            // SAFETY: the caller's session and data, under the caller's contract for them.
            unsafe { finish_sign(forward, session, data, data_len) };
        }
        return shim.log("C_Sign", error);
    }
    // SAFETY: the caller's arguments, passed on unchanged, under the same contract.
    let rv = unsafe { forward(session, data, data_len, signature, signature_len) };
    if rv == CKR_OK && faults.sign_corrupt && !signature.is_null() && !signature_len.is_null() {
        // SAFETY: on CKR_OK with a signature buffer, the module wrote `*signature_len` bytes
        // of signature to `signature`, a caller's buffer at least that long and writable.
        let written = unsafe { std::slice::from_raw_parts_mut(signature, *signature_len as usize) };
        if !written.is_empty() {
            // For ECDSA's r||s (and Ed25519's R||S) this is the last byte of the first half;
            // for DER ECDSA a byte of r. The signature no longer verifies.
            written[(written.len() - 1) / 2] ^= 0x01;
        }
    }
    shim.log("C_Sign", rv)
}

type SignFn = unsafe extern "C" fn(
    CK_SESSION_HANDLE,
    *mut CK_BYTE,
    CK_ULONG,
    *mut CK_BYTE,
    *mut CK_ULONG,
) -> CK_RV;

/// Ends the real module's active signing operation, as a failed `C_Sign` does, by completing it
/// into a scratch buffer that is thrown away. Without this, the next `C_SignInit` on the session
/// would answer `CKR_OPERATION_ACTIVE`, which no real token does after a failed `C_Sign`.
///
/// # Safety
///
/// `data` must be valid for reading `data_len` bytes (the caller's `C_Sign` contract).
unsafe fn finish_sign(
    forward: SignFn,
    session: CK_SESSION_HANDLE,
    data: *mut CK_BYTE,
    data_len: CK_ULONG,
) {
    let mut len: CK_ULONG = 0;
    // SAFETY: a length query (null buffer) with a valid out-pointer for the length.
    if unsafe { forward(session, data, data_len, std::ptr::null_mut(), &mut len) } != CKR_OK {
        return; // no active operation, or an error that ended it
    }
    let mut scratch = vec![0u8; len as usize];
    // SAFETY: `scratch` is writable for `len` bytes, the size the module asked for.
    unsafe { forward(session, data, data_len, scratch.as_mut_ptr(), &mut len) };
}

/// Logs a call answered before the shim was initialised (when the log's place is known).
fn log_if_set_up(function: &str, rv: CK_RV) -> CK_RV {
    match SHIM.get() {
        Some(shim) => shim.log(function, rv),
        None => rv,
    }
}
