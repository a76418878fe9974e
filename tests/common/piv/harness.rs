//! Starts one private pcscd per test process, with vpcd readers on ports of its own, and plugs
//! virtual cards into it.
//!
//! pcscd runs through hsm-config/piv/start-pcscd.sh in its own mount namespace, so a system pcscd
//! and other test runs are left alone; this process (and every subprocess, such as
//! `yubico-piv-tool`) reaches it through `PCSCLITE_CSOCK_NAME`. The script stops pcscd when this
//! process ends.
//!
//! Missing packages make the tests fail with the `apt-get` line to run, unless the developer opts
//! out with `DFNS_SIGNER_SKIP_HARDWARE=1` (then each test prints why it skipped; in CI the opt-out
//! itself fails the test, see tests/common/skip.rs).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use super::card::{CardConfig, VirtualPiv};

/// Card ports per test process: vpcd gives one reader line two slots, hence two cards at a time.
const PORTS: u16 = 2;

/// The private pcscd of this test process.
pub struct Pcscd {
    child: Mutex<Child>,
    socket: PathBuf,
    base_port: u16,
    next: AtomicU16,
}

static PCSCD: OnceLock<Result<Pcscd, String>> = OnceLock::new();

/// Tests that use cards run one at a time: opening a device SELECTs every card present, which
/// would drop the PIN state of another test's card mid-way.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// A test's hold on the shared pcscd; other card tests wait until it is dropped.
pub struct PivEnv {
    pcscd: &'static Pcscd,
    _turn: MutexGuard<'static, ()>,
}

impl std::ops::Deref for PivEnv {
    type Target = Pcscd;
    fn deref(&self) -> &Pcscd {
        self.pcscd
    }
}

/// The running pcscd, started on first use; `None` (after printing `SKIPPED <test>: …`) when the
/// developer set `DFNS_SIGNER_SKIP_HARDWARE=1` (a panic in CI). Panics with the fix when pcscd or
/// vpcd is missing.
pub fn pcscd_or_skip(test: &str) -> Option<PivEnv> {
    if super::skip::should_skip_test(
        test,
        super::skip::SKIP_HARDWARE,
        "virtual PIV card tests need pcscd and vpcd",
    ) {
        return None;
    }
    // A test that failed while holding the turn leaves nothing shared broken: its cards are gone.
    let turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    match PCSCD.get_or_init(start) {
        Ok(pcscd) => {
            // The previous test's cards are gone (dropped before its turn ended): reuse their ports.
            pcscd.next.store(0, Ordering::SeqCst);
            Some(PivEnv { pcscd, _turn: turn })
        }
        Err(e) => panic!(
            "{e}\n(outside CI, DFNS_SIGNER_SKIP_HARDWARE=1 skips the virtual PIV card tests instead)"
        ),
    }
}

fn port_free(port: u16) -> bool {
    TcpListener::bind(("0.0.0.0", port)).is_ok()
}

const DIR_PREFIX: &str = "dfns-signer-pcscd-";

/// Removes the folders of earlier test runs whose process is gone (their pcscd went with them).
fn remove_stale_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(DIR_PREFIX)) else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn start() -> Result<Pcscd, String> {
    let missing = "pcscd and the vpcd driver are needed for the virtual PIV card: apt-get install pcscd vsmartcard-vpcd";
    if !Path::new("/usr/lib/pcsc/drivers/serial/libifdvpcd.so").exists() {
        return Err(format!("{missing} (libifdvpcd.so not found)"));
    }
    if Command::new("pcscd")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_err()
    {
        return Err(format!("{missing} (pcscd not found)"));
    }
    let pid = std::process::id();
    let mut base = 20000 + (pid % 1500) as u16 * 2 * PORTS % 30000;
    let mut attempts = 0;
    while !(base..base + PORTS).all(port_free) {
        base = 20000 + (base - 20000 + PORTS) % 30000;
        attempts += 1;
        if attempts > 200 {
            return Err("no free TCP ports for vpcd".to_owned());
        }
    }
    remove_stale_dirs();
    let dir = std::env::temp_dir().join(format!("{DIR_PREFIX}{pid}"));
    let conf = dir.join("conf");
    let sock = dir.join("sock");
    std::fs::create_dir_all(&conf).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(&sock).map_err(|e| e.to_string())?;
    // One reader line only: the vpcd driver keeps its connections in one table indexed by slot,
    // so a second DEVICENAME line would overwrite the first one's. One line gives two readers,
    // "… 00 00" on `base` and "… 00 01" on `base + 1` (vpcd adds the slot to CHANNELID).
    let text = format!(
        "FRIENDLYNAME \"Yubico YubiKey Virtual PCD\"\nDEVICENAME /dev/null:0x{base:X}\nLIBPATH /usr/lib/pcsc/drivers/serial/libifdvpcd.so\nCHANNELID 0x{base:X}\n"
    );
    std::fs::write(conf.join("vpcd"), text).map_err(|e| e.to_string())?;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/hsm-config/piv/start-pcscd.sh");
    let child = Command::new("sh")
        .arg(script)
        .arg(&conf)
        .arg(&sock)
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot run {script}: {e}"))?;
    let socket = sock.join("pcscd.comm");
    // Every PC/SC client of this process and its subprocesses goes to our pcscd.
    std::env::set_var("PCSCLITE_CSOCK_NAME", &socket);
    let mut child = child;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !socket.exists() {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "pcscd did not start ({status}); run as root, and see the messages above. {missing}"
            ));
        }
        if Instant::now() > deadline {
            return Err("pcscd did not create its socket within 10 s".to_owned());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(Pcscd {
        child: Mutex::new(child),
        socket,
        base_port: base,
        next: AtomicU16::new(0),
    })
}

impl Pcscd {
    /// The socket clients use (`PCSCLITE_CSOCK_NAME`, already set for this process).
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Plugs a new card into a free reader and waits until PC/SC sees it (by serial).
    pub fn insert_card(&self, config: CardConfig) -> VirtualPiv {
        let i = self.next.fetch_add(1, Ordering::SeqCst);
        assert!(
            i < PORTS,
            "more than {PORTS} virtual cards at once in one test"
        );
        let serial = config.serial;
        let card = VirtualPiv::start(self.base_port + i, config);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let listed = dfns_signer::piv::list_devices();
            let found = listed
                .as_ref()
                .map(|ds| ds.iter().any(|d| d.serial == serial))
                .unwrap_or(false);
            if found {
                return card;
            }
            assert!(
                Instant::now() < deadline,
                "virtual card {serial} did not appear in PC/SC within 15 s (PC/SC lists {listed:?})"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The PC/SC reader name of the card with `serial`.
    pub fn reader_of(&self, serial: u32) -> String {
        dfns_signer::piv::list_devices()
            .expect("list devices")
            .into_iter()
            .find(|d| d.serial == serial)
            .map(|d| d.reader)
            .expect("card present")
    }
}
