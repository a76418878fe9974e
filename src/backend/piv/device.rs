//! Finding a YubiKey and owning its connection.
//!
//! One [`PivDevice`] owns one card connection behind a mutex: callers queue, and every command
//! sequence (PIN check, VERIFY, sign) runs without another caller's APDUs in between. When the
//! card was reset or re-plugged (a PC/SC transport error), the device reconnects once, by serial,
//! and runs the operation again — except when the failed command was a PIN VERIFY, which is
//! never re-sent: the card may have counted it.
//!
//! The PIN rules live here too: tries are read before a VERIFY, the last try is not spent unless
//! the caller allowed it, a PIN the card rejected is remembered and never presented again by this
//! device handle.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use yubikey::piv::{self, ManagementSlotId, SlotAlgorithmId, SlotId};
use yubikey::{MgmAlgorithmId, MgmKey, YubiKey};

use super::policy::PinPolicy;
use zeroize::Zeroizing;

use crate::backend::refused_pins::{self, Refusal};
use crate::backend::PinSource;
use crate::error::BackendError;

/// What to do after a PIN VERIFY whose answer was lost.
const PIN_OUTCOME_UNKNOWN: &str = "the card may have counted the try, so this process will not \
    send that PIN again: check the PIN (and the tries left, `yubico-piv-tool -a status`), then \
    restart";

/// A YubiKey seen through PC/SC.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeviceInfo {
    /// The YubiKey's serial number.
    pub serial: u32,
    /// PIV application (firmware) version, `5.7.1`.
    pub version: String,
    /// The PC/SC reader name.
    pub reader: String,
}

impl fmt::Display for DeviceInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "YubiKey serial {} (firmware {}, reader \"{}\")",
            self.serial, self.version, self.reader
        )
    }
}

/// Which YubiKey to use: by serial, by reader name, or the only one plugged in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceSelector {
    /// The serial number printed on the key (and shown by `list_devices`).
    pub serial: Option<u32>,
    /// A PC/SC reader name, or a part of it.
    pub reader: Option<String>,
}

impl DeviceSelector {
    fn matches(&self, info: &DeviceInfo) -> bool {
        self.serial.is_none_or(|s| s == info.serial)
            && self
                .reader
                .as_deref()
                .is_none_or(|r| info.reader == r || info.reader.contains(r))
    }

    fn describe(&self) -> String {
        match (&self.serial, &self.reader) {
            (Some(s), Some(r)) => format!("YubiKey serial {s} in reader \"{r}\""),
            (Some(s), None) => format!("YubiKey serial {s}"),
            (None, Some(r)) => format!("YubiKey in reader \"{r}\""),
            (None, None) => "YubiKey".to_owned(),
        }
    }
}

/// The management key that authorises key generation and certificate writes.
#[derive(Clone, Default)]
pub enum ManagementKey {
    /// The factory default (3DES before firmware 5.7, AES-192 from 5.7; picked by firmware).
    #[default]
    Default,
    /// A key set by the owner: 24 bytes (3DES or AES-192), 16 (AES-128) or 32 (AES-256).
    Custom(Zeroizing<Vec<u8>>),
    /// The key `dfns-signer piv setup` (or `ykman`) stored on the card behind the PIN: read
    /// after verifying the PIN from the device's PIN source.
    PinProtected,
}

impl ManagementKey {
    /// Parses a management key written in hex (48, 32 or 64 hex digits).
    pub fn from_hex(hex_key: &str) -> Result<Self, BackendError> {
        let bytes = Zeroizing::new(hex::decode(hex_key.trim()).map_err(|_| {
            BackendError::KeyLoad {
                what: "the PIV management key".to_owned(),
                reason: "not hexadecimal; expected 48 hex digits (3DES or AES-192), 32 (AES-128) or 64 (AES-256)"
                    .to_owned(),
            }
        })?);
        if ![16, 24, 32].contains(&bytes.len()) {
            return Err(BackendError::KeyLoad {
                what: "the PIV management key".to_owned(),
                reason: format!(
                    "{} bytes; expected 24 (3DES or AES-192), 16 (AES-128) or 32 (AES-256)",
                    bytes.len()
                ),
            });
        }
        Ok(ManagementKey::Custom(bytes))
    }
}

impl fmt::Debug for ManagementKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ManagementKey::Default => f.write_str("ManagementKey(default)"),
            ManagementKey::Custom(_) => f.write_str("ManagementKey([REDACTED])"),
            ManagementKey::PinProtected => f.write_str("ManagementKey(PIN-protected)"),
        }
    }
}

/// Called when an operation has been waiting for a touch for
/// [`DeviceOptions::touch_notice_delay`], so the person knows to touch the key (never while the
/// PIN is being asked for: the PIN is verified before the signature is sent).
///
/// It runs while the device is held, on a timer thread (on the signing thread when the delay is
/// zero): it must return quickly, and it must not call back into the same [`PivDevice`] or a key
/// on it (that would wait for the device it is holding: a deadlock). The signature waits for it
/// to return. Print, log or hand the notice to another thread.
pub type TouchNotifier = Arc<dyn Fn(&TouchRequest) + Send + Sync>;

/// What a [`TouchNotifier`] is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TouchRequest {
    /// The YubiKey's serial number.
    pub serial: u32,
    /// The slot that signs.
    pub slot: String,
    /// How long the signer waits for the touch.
    pub timeout: Duration,
}

impl fmt::Display for TouchRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "touch your YubiKey (serial {}) to sign with slot {} (waiting up to {} s)",
            self.serial,
            self.slot,
            self.timeout.as_secs()
        )
    }
}

/// How a device handles the PIN and touch.
#[derive(Clone)]
pub struct DeviceOptions {
    /// Where the PIN comes from; `None` for keys whose PIN policy is "never".
    pub pin_source: Option<PinSource>,
    /// Spend the last PIN try when only one is left (default: refuse).
    pub allow_last_pin_try: bool,
    /// How long a signature that needs a touch may take, counted from the moment this caller
    /// holds the card and the PIN is verified (time queued behind other callers does not count).
    /// A real YubiKey gives up on its own after about 15 s (reported as
    /// [`BackendError::TouchTimeout`] as well), so values above ~15 s do not give more time.
    pub touch_timeout: Duration,
    /// Called when a signature has been waiting for a touch for `touch_notice_delay`.
    pub touch_notifier: Option<TouchNotifier>,
    /// How long a signature waits for a touch before the notifier is called (default 1 s): a
    /// card that answers sooner (a cached touch, a quick finger) shows no notice.
    pub touch_notice_delay: Duration,
}

impl Default for DeviceOptions {
    fn default() -> Self {
        DeviceOptions {
            pin_source: None,
            allow_last_pin_try: false,
            touch_timeout: Duration::from_secs(15),
            touch_notifier: None,
            touch_notice_delay: Duration::from_secs(1),
        }
    }
}

impl fmt::Debug for DeviceOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceOptions")
            .field("pin_source", &self.pin_source)
            .field("allow_last_pin_try", &self.allow_last_pin_try)
            .field("touch_timeout", &self.touch_timeout)
            .field(
                "touch_notifier",
                &self.touch_notifier.as_ref().map(|_| "set"),
            )
            .field("touch_notice_delay", &self.touch_notice_delay)
            .finish()
    }
}

/// What this handle knows about the PIN.
enum PinMemory {
    /// Not read from its source yet.
    Untried,
    /// Read from its source (before the device lock was taken), not presented yet.
    Read(SecretString),
    /// Accepted by the card; kept (zeroized on drop) to re-verify for PIN-always slots and after
    /// a reset.
    Accepted(SecretString),
    /// Rejected by the card: never presented again by this handle.
    Rejected { tries_left: u8 },
    /// A VERIFY with it ended without an answer (link lost, card pulled): the card may have
    /// counted a wrong try, so this handle never presents it again.
    OutcomeUnknown,
}

pub(crate) struct Session {
    yk: Option<YubiKey>,
    pin: PinMemory,
}

impl Session {
    pub(crate) fn yubikey(&mut self) -> Result<&mut YubiKey, OpError> {
        self.yk.as_mut().ok_or(OpError::Transport {
            operation: "use the card",
            error: yubikey::Error::PcscError {
                inner: Some(pcsc::Error::NoSmartcard),
            },
        })
    }
}

/// An operation's failure: final, or a transport fault after which a reconnect may help.
pub(crate) enum OpError {
    Final(BackendError),
    Transport {
        operation: &'static str,
        error: yubikey::Error,
    },
}

impl From<BackendError> for OpError {
    fn from(e: BackendError) -> Self {
        OpError::Final(e)
    }
}

pub(crate) struct DeviceInner {
    pub(crate) info: DeviceInfo,
    pub(crate) label: String,
    pub(crate) options: DeviceOptions,
    session: Mutex<Session>,
    /// Held while the PIN is read from its source (outside `session`), so that two callers do
    /// not both prompt.
    pin_reading: Mutex<()>,
}

/// One YubiKey, opened. Cheap to clone; clones share the connection and the PIN memory.
///
/// Opening one SELECTs the PIV applet, which logs out every other session on the card (other
/// handles, other programs): they must verify the PIN again. Dropping the last clone
/// disconnects with a card reset (the `pcsc` default), with the same effect.
#[derive(Clone)]
pub struct PivDevice {
    pub(crate) inner: Arc<DeviceInner>,
}

impl fmt::Debug for PivDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PivDevice")
            .field("device", &self.inner.info)
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

fn is_transport(e: &yubikey::Error) -> bool {
    use pcsc::Error as P;
    matches!(
        e,
        yubikey::Error::PcscError {
            inner: Some(
                P::ResetCard
                    | P::RemovedCard
                    | P::NoSmartcard
                    | P::CommError
                    | P::ReaderUnavailable
                    | P::UnknownReader
                    | P::InvalidHandle
                    | P::UnpoweredCard
                    | P::UnresponsiveCard
                    | P::NotTransacted
                    | P::ServiceStopped
                    | P::NoService
            )
        }
    )
}

fn pcsc_unavailable(e: yubikey::Error) -> BackendError {
    let hint = match e {
        yubikey::Error::PcscError {
            inner: Some(pcsc::Error::NoService | pcsc::Error::ServiceStopped),
        } => "the PC/SC service is not running: start pcscd (apt-get install pcscd)",
        _ => "check that pcscd runs and the YubiKey is plugged in",
    };
    BackendError::Device {
        device: "PC/SC".to_owned(),
        operation: "list readers".to_owned(),
        reason: format!("{e}; {hint}"),
        source: Some(Box::new(e)),
    }
}

/// Connects to every reader that holds a YubiKey; the caller disconnects what it does not keep.
fn probe_all() -> Result<Vec<(DeviceInfo, YubiKey)>, BackendError> {
    let mut ctx = match yubikey::reader::Context::open() {
        Ok(ctx) => ctx,
        Err(yubikey::Error::PcscError {
            inner: Some(pcsc::Error::NoReadersAvailable),
        }) => return Ok(vec![]),
        Err(e) => return Err(pcsc_unavailable(e)),
    };
    let readers = match ctx.iter() {
        Ok(r) => r,
        Err(yubikey::Error::PcscError {
            inner: Some(pcsc::Error::NoReadersAvailable),
        }) => return Ok(vec![]),
        Err(e) => return Err(pcsc_unavailable(e)),
    };
    let mut out = Vec::new();
    for reader in readers {
        // Readers without a card, or with a card that is not a YubiKey PIV, are skipped.
        if let Ok(yk) = reader.open() {
            let info = DeviceInfo {
                serial: yk.serial().0,
                version: yk.version().to_string(),
                reader: reader.name().into_owned(),
            };
            out.push((info, yk));
        }
    }
    Ok(out)
}

/// Disconnects without resetting the card.
///
/// This does not leave other sessions untouched: opening the connection (`Reader::open`, in
/// [`probe_all`]) already SELECTed the PIV applet, and a SELECT drops the PIN and
/// management-key state of every other handle on that card, in this process or another one.
/// Their next operation that needs the PIN verifies it again (a [`PivDevice`] does so with the
/// PIN it remembers; a PIN-policy-once key of another program may fail until it re-verifies).
/// So listing devices, opening a second [`PivDevice`] on the same YubiKey, or reconnecting
/// after a reset all log the card's other users out.
fn release(yk: YubiKey) {
    if let Err((yk, _)) = yk.disconnect(pcsc::Disposition::LeaveCard) {
        // Dropping the handle disconnects with a card reset (the `pcsc` default), which also
        // resets every other session on the card; there is nothing better left to do with a
        // handle that cannot disconnect.
        drop(yk);
    }
}

/// Lists the YubiKeys plugged in (serial, firmware version, reader).
pub fn list_devices() -> Result<Vec<DeviceInfo>, BackendError> {
    Ok(probe_all()?
        .into_iter()
        .map(|(info, yk)| {
            release(yk);
            info
        })
        .collect())
}

fn find(selector: &DeviceSelector) -> Result<(DeviceInfo, YubiKey), BackendError> {
    let all = probe_all()?;
    let found: Vec<String> = all.iter().map(|(i, _)| i.to_string()).collect();
    let (mut matching, others): (Vec<_>, Vec<_>) =
        all.into_iter().partition(|(i, _)| selector.matches(i));
    others.into_iter().for_each(|(_, yk)| release(yk));
    match matching.len() {
        0 => Err(BackendError::DeviceNotFound {
            wanted: selector.describe(),
            found,
        }),
        1 => Ok(matching.remove(0)),
        _ => {
            let found = matching.iter().map(|(i, _)| i.to_string()).collect();
            matching.into_iter().for_each(|(_, yk)| release(yk));
            Err(BackendError::AmbiguousDevice { found })
        }
    }
}

impl PivDevice {
    /// Opens the YubiKey `selector` names. Several matching and no serial given →
    /// [`BackendError::AmbiguousDevice`]; none → [`BackendError::DeviceNotFound`].
    pub fn open(selector: &DeviceSelector, options: DeviceOptions) -> Result<Self, BackendError> {
        let (info, yk) = find(selector)?;
        let label = format!("YubiKey serial {}", info.serial);
        Ok(PivDevice {
            inner: Arc::new(DeviceInner {
                info,
                label,
                options,
                session: Mutex::new(Session {
                    yk: Some(yk),
                    pin: PinMemory::Untried,
                }),
                pin_reading: Mutex::new(()),
            }),
        })
    }

    /// Serial, firmware and reader of this YubiKey.
    pub fn info(&self) -> &DeviceInfo {
        &self.inner.info
    }

    /// `YubiKey serial N`, for messages.
    pub fn label(&self) -> &str {
        &self.inner.label
    }

    pub(crate) fn options(&self) -> &DeviceOptions {
        &self.inner.options
    }

    /// Whether signing may stop to ask a person for the PIN on the terminal.
    pub(crate) fn prompts_for_pin(&self) -> bool {
        matches!(self.inner.options.pin_source, Some(PinSource::Prompt))
    }

    /// Reads the PIN from its source (environment, file, terminal prompt) without holding the
    /// device, so other callers are not queued behind a person typing. Does nothing when the
    /// key needs no PIN, no source is set, or the PIN was read before.
    pub(crate) fn prepare_pin(&self, policy: PinPolicy) -> Result<(), BackendError> {
        if policy == PinPolicy::Never || self.inner.options.pin_source.is_none() {
            return Ok(());
        }
        let _reading = self
            .inner
            .pin_reading
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if !matches!(self.lock().pin, PinMemory::Untried) {
            return Ok(());
        }
        // A prompt shows the tries left: read the counter first (no try spent), then let the
        // device go while the person types.
        let tries_left = if self.prompts_for_pin() {
            self.run(|s, inner| inner.pin_tries_left(s)).unwrap_or(None)
        } else {
            None
        };
        let pin = self.inner.read_pin(tries_left)?;
        let mut session = self.lock();
        if matches!(session.pin, PinMemory::Untried) {
            session.pin = PinMemory::Read(pin);
        }
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, Session> {
        // A panic while holding the lock leaves the session usable: it holds no invariant that a
        // half-finished operation could break (the card itself is the state).
        self.inner.session.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `op` with the connection; on a transport fault reconnects once and runs it again.
    pub(crate) fn run<T>(
        &self,
        mut op: impl FnMut(&mut Session, &DeviceInner) -> Result<T, OpError>,
    ) -> Result<T, BackendError> {
        let mut session = self.lock();
        match op(&mut session, &self.inner) {
            Ok(v) => Ok(v),
            Err(OpError::Final(e)) => Err(e),
            Err(OpError::Transport { .. }) => {
                tracing::info!(device = %self.inner.label, "card was reset or re-plugged; reconnecting once");
                self.reconnect(&mut session)?;
                op(&mut session, &self.inner).map_err(|e| self.finalize(e))
            }
        }
    }

    /// Runs `op` once, without reconnecting (for operations that must not run twice).
    pub(crate) fn run_once<T>(
        &self,
        op: impl FnOnce(&mut Session, &DeviceInner) -> Result<T, OpError>,
    ) -> Result<T, BackendError> {
        let mut session = self.lock();
        op(&mut session, &self.inner).map_err(|e| self.finalize(e))
    }

    fn finalize(&self, e: OpError) -> BackendError {
        match e {
            OpError::Final(e) => e,
            OpError::Transport { operation, error } => self.inner.device_error(operation, error),
        }
    }

    fn reconnect(&self, session: &mut Session) -> Result<(), BackendError> {
        if let Some(old) = session.yk.take() {
            release(old);
        }
        let selector = DeviceSelector {
            serial: Some(self.inner.info.serial),
            reader: None,
        };
        let (_, yk) = find(&selector).map_err(|e| match e {
            BackendError::DeviceNotFound { found, .. } => BackendError::DeviceNotFound {
                wanted: format!(
                    "{} (it was reset or unplugged; plug it back in)",
                    self.inner.label
                ),
                found,
            },
            other => other,
        })?;
        session.yk = Some(yk);
        Ok(())
    }
}

impl DeviceInner {
    pub(crate) fn device_error(&self, operation: &str, error: yubikey::Error) -> BackendError {
        BackendError::Device {
            device: self.label.clone(),
            operation: operation.to_owned(),
            reason: error.to_string(),
            source: Some(Box::new(error)),
        }
    }

    /// Maps a `yubikey` error: transport faults may be retried after a reconnect, others are final.
    pub(crate) fn fail(&self, operation: &'static str, error: yubikey::Error) -> OpError {
        if is_transport(&error) {
            OpError::Transport { operation, error }
        } else {
            OpError::Final(self.device_error(operation, error))
        }
    }

    /// Makes sure the PIN is verified for a key with `policy`, spending at most one try, and
    /// only when allowed.
    pub(crate) fn ensure_pin(&self, s: &mut Session, policy: PinPolicy) -> Result<(), OpError> {
        if policy == PinPolicy::Never {
            return Ok(());
        }
        // A PIN the card rejected, or that may have been counted, is never presented again:
        // no APDU at all.
        match s.pin {
            PinMemory::Rejected { tries_left } => return Err(self.pin_rejected(tries_left).into()),
            PinMemory::OutcomeUnknown => {
                return Err(BackendError::Device {
                    device: self.label.clone(),
                    operation: "verify the PIN".to_owned(),
                    reason: format!("an earlier PIN VERIFY got no answer; {PIN_OUTCOME_UNKNOWN}"),
                    source: None,
                }
                .into())
            }
            _ => {}
        }
        let yk = s.yubikey()?;
        // VERIFY without data reads the state without spending a try: 9000 when verified, 63Cx.
        let tries = match yk.verify_pin(&[]) {
            Ok(()) if policy != PinPolicy::Always => return Ok(()),
            Ok(()) => None,
            Err(yubikey::Error::WrongPin { tries }) => Some(tries),
            Err(e) => return Err(self.fail("read the PIN retry counter", e)),
        };
        match tries {
            Some(0) => return Err(self.pin_rejected(0).into()),
            Some(1) if !self.options.allow_last_pin_try => {
                return Err(BackendError::LastPinTry {
                    device: self.label.clone(),
                }
                .into())
            }
            _ => {}
        }
        let (pin, accepted_before) = match &s.pin {
            PinMemory::Accepted(pin) => (pin.clone(), true),
            PinMemory::Read(pin) => (pin.clone(), false),
            _ => (self.read_pin(tries)?, false),
        };
        // Other handles on this YubiKey (another URI, a loop around `open()`) may have met this
        // PIN already: the process-wide memory answers before any VERIFY, and stays locked
        // across ours so that two handles cannot both present a wrong PIN.
        let device_key = format!("piv:{}", self.info.serial);
        let digest = refused_pins::digest(&pin);
        let mut registry = refused_pins::lock();
        if let Some(refusal) = registry.refusal(&device_key, &digest) {
            return Err(refusal.to_error().into());
        }
        let yk = s.yubikey()?;
        match yk.verify_pin(pin.expose_secret().as_bytes()) {
            Ok(()) => {
                s.pin = PinMemory::Accepted(pin);
                Ok(())
            }
            // `tries: 0` also covers a blocked PIN (the crate reports 6983 that way).
            Err(yubikey::Error::WrongPin { tries }) => {
                s.pin = PinMemory::Rejected { tries_left: tries };
                let refusal = if tries == 0 {
                    Refusal::Blocked {
                        device: self.label.clone(),
                    }
                } else {
                    Refusal::Incorrect {
                        device: self.label.clone(),
                        tries_left: Some(tries.into()),
                    }
                };
                registry.record(device_key, digest, refusal);
                Err(self.pin_rejected(tries).into())
            }
            // The VERIFY may have reached the card: never re-send it, even after a reconnect.
            // A PIN the card has accepted before is known to be right; any other one may just
            // have cost a try, so no handle of the process presents it again.
            Err(e) if accepted_before => {
                Err(OpError::Final(self.device_error("verify the PIN", e)))
            }
            Err(e) => {
                s.pin = PinMemory::OutcomeUnknown;
                let refusal = Refusal::Unusable {
                    device: self.label.clone(),
                    operation: "verify the PIN".to_owned(),
                    reason: format!("{e}; {PIN_OUTCOME_UNKNOWN}"),
                };
                let err = refusal.to_error();
                registry.record(device_key, digest, refusal);
                Err(OpError::Final(err))
            }
        }
    }

    fn pin_rejected(&self, tries_left: u8) -> BackendError {
        if tries_left == 0 {
            BackendError::PinBlocked {
                device: self.label.clone(),
            }
        } else {
            BackendError::PinIncorrect {
                device: self.label.clone(),
                tries_left: Some(tries_left.into()),
            }
        }
    }

    /// The card's PIN retry counter, read with an empty VERIFY (no try spent); `None` when the
    /// PIN is verified already.
    fn pin_tries_left(&self, s: &mut Session) -> Result<Option<u8>, OpError> {
        match s.yubikey()?.verify_pin(&[]) {
            Ok(()) => Ok(None),
            Err(yubikey::Error::WrongPin { tries }) => Ok(Some(tries)),
            Err(e) => Err(self.fail("read the PIN retry counter", e)),
        }
    }

    /// Reads the PIN from the configured source; a prompt shows `tries_left` (the card's retry
    /// counter, read without spending a try) so the person knows what a typo costs.
    fn read_pin(&self, tries_left: Option<u8>) -> Result<SecretString, BackendError> {
        let source = self
            .options
            .pin_source
            .as_ref()
            .ok_or_else(|| BackendError::PinSource {
                source_name: "(none)".to_owned(),
                reason: format!(
                    "the key on {} needs its PIN; give pin-source=env:NAME, file:PATH or prompt",
                    self.label
                ),
            })?;
        let prompt = match tries_left {
            Some(1) => format!("PIV PIN for {} (last try)", self.label),
            Some(n) => format!("PIV PIN for {} ({n} tries left)", self.label),
            None => format!("PIV PIN for {}", self.label),
        };
        let pin = source.read(&prompt)?;
        // Checked before any VERIFY, so a malformed PIN never costs a try. The message says
        // nothing about the PIN itself, not even its length.
        let text = pin.expose_secret();
        if !(6..=8).contains(&text.len()) || !text.is_ascii() {
            return Err(BackendError::PinSource {
                source_name: source.to_string(),
                reason:
                    "a PIV PIN is 6 to 8 ASCII characters and this one is not; no try was spent"
                        .to_owned(),
            });
        }
        Ok(pin)
    }

    /// Authenticates with the management key (needed to generate keys and write certificates).
    pub(crate) fn authenticate(&self, s: &mut Session, key: &ManagementKey) -> Result<(), OpError> {
        if matches!(key, ManagementKey::PinProtected) {
            // The stored key is readable only once the PIN is verified.
            self.ensure_pin(s, PinPolicy::Once)?;
        }
        let yk = s.yubikey()?;
        let mgm = match key {
            ManagementKey::Default => MgmKey::get_default(yk)
                .map_err(|e| self.fail("pick the default management key", e))?,
            ManagementKey::PinProtected => MgmKey::get_protected(yk).map_err(|e| {
                OpError::Final(BackendError::Device {
                    device: self.label.clone(),
                    operation: "read the PIN-protected management key".to_owned(),
                    reason: format!(
                        "{e}: the card holds none; run `dfns-signer piv setup \
                         --protect-management-key`, or give the management key"
                    ),
                    source: None,
                })
            })?,
            ManagementKey::Custom(bytes) => {
                let alg = match piv::metadata(yk, SlotId::Management(ManagementSlotId::Management))
                {
                    Ok(meta) => match meta.algorithm {
                        SlotAlgorithmId::Management(alg) => alg,
                        _ => MgmAlgorithmId::ThreeDes,
                    },
                    // Firmware before 5.3 has no metadata and only 3DES management keys.
                    Err(yubikey::Error::NotSupported) => MgmAlgorithmId::ThreeDes,
                    Err(e) => return Err(self.fail("read the management key algorithm", e)),
                };
                MgmKey::from_bytes(bytes.as_slice(), Some(alg)).map_err(|_| {
                    OpError::Final(BackendError::KeyLoad {
                        what: format!("the management key for {}", self.label),
                        reason: format!(
                            "{} bytes do not fit the card's {alg:?} management key",
                            bytes.len()
                        ),
                    })
                })?
            }
        };
        yk.authenticate(&mgm).map_err(|e| match e {
            yubikey::Error::AuthenticationError => OpError::Final(BackendError::Device {
                device: self.label.clone(),
                operation: "management key authentication".to_owned(),
                reason:
                    "the card refused the management key; give the key this YubiKey was set up with"
                        .to_owned(),
                source: None,
            }),
            e => self.fail("management key authentication", e),
        })
    }
}
