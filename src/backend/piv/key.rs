//! A key in a PIV slot as a [`KeyBackend`]: what the card needs as input per algorithm, and
//! turning what it returns into Dfns' wire encoding.
//!
//! - ECDSA P-256: the host hashes (SHA-256), the card returns a DER signature; we re-encode it
//!   minimally and check it;
//! - RSA: the card does the raw RSA operation, so the host builds the EMSA-PKCS1-v1_5 block
//!   (`00 01 FF… 00 ‖ DigestInfo(SHA-256)`);
//! - Ed25519 (firmware 5.7+): the card signs the message itself (pure Ed25519).
//!
//! Every signature is verified against the slot's public key before it is returned, so a stale
//! slot or a faulty card cannot hand Dfns a signature that will be refused.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use super::policy::{PinPolicy, TouchPolicy};
use sha2::{Digest, Sha256};
use x509_cert::der::Encode;
use yubikey::piv::{self, AlgorithmId, SlotAlgorithmId};

use super::device::{
    DeviceInner, DeviceOptions, DeviceSelector, OpError, PivDevice, Session, TouchNotifier,
    TouchRequest,
};
use super::slot::Slot;
use crate::backend::{Algorithm, KeyBackend, PinSource, PublicKey};
use crate::error::BackendError;

/// The card-side facts about a slot's key.
#[derive(Debug, Clone)]
pub(crate) struct SlotKey {
    pub(crate) slot: Slot,
    pub(crate) card_algorithm: AlgorithmId,
    pub(crate) pin_policy: PinPolicy,
    pub(crate) touch_policy: TouchPolicy,
    pub(crate) public_key: PublicKey,
}

impl SlotKey {
    pub(crate) fn needs_touch(&self) -> bool {
        matches!(self.touch_policy, TouchPolicy::Always | TouchPolicy::Cached)
    }
}

/// The PIV default PIN policy of a slot, for keys whose metadata says "default".
fn default_pin_policy(slot: Slot) -> PinPolicy {
    match slot.id() {
        0x9c => PinPolicy::Always,
        0x9e => PinPolicy::Never,
        _ => PinPolicy::Once,
    }
}

/// What "default" PIN and touch policies mean for a key in `slot`: the slot's PIV default PIN
/// policy, and no touch.
pub(crate) fn effective_policies(
    slot: Slot,
    pin: PinPolicy,
    touch: TouchPolicy,
) -> (PinPolicy, TouchPolicy) {
    let pin = if pin == PinPolicy::Default {
        default_pin_policy(slot)
    } else {
        pin
    };
    let touch = if touch == TouchPolicy::Default {
        TouchPolicy::Never
    } else {
        touch
    };
    (pin, touch)
}

/// The certificate in `slot`, or `None` when the slot has none (the card answers "not found",
/// or the object is empty).
pub(crate) fn read_certificate(
    inner: &DeviceInner,
    s: &mut Session,
    slot: Slot,
) -> Result<Option<x509_cert::Certificate>, OpError> {
    let yk = s.yubikey()?;
    match yubikey::Certificate::read(yk, slot.slot_id()) {
        Ok(cert) => Ok(Some(cert.cert)),
        Err(yubikey::Error::InvalidObject | yubikey::Error::NotFound) => Ok(None),
        Err(e) => Err(inner.fail("read the slot certificate", e)),
    }
}

/// Reads what the card says about the key in `slot`: metadata (firmware 5.3+), else its certificate.
pub(crate) fn read_slot_key(
    inner: &DeviceInner,
    s: &mut Session,
    slot: Slot,
) -> Result<SlotKey, OpError> {
    let yk = s.yubikey()?;
    match piv::metadata(yk, slot.slot_id()) {
        Ok(meta) => {
            let SlotAlgorithmId::Asymmetric(card_algorithm) = meta.algorithm else {
                return Err(BackendError::UnsupportedKey(format!(
                    "slot {slot} on {} holds no asymmetric key",
                    inner.label
                ))
                .into());
            };
            let (pin, touch) = meta
                .policy
                .map(|(pin, touch)| (PinPolicy::from(pin), TouchPolicy::from(touch)))
                .unwrap_or((PinPolicy::Default, TouchPolicy::Default));
            let (pin_policy, touch_policy) = effective_policies(slot, pin, touch);
            let spki = match meta.public {
                Some(spki) => spki
                    .to_der()
                    .map_err(|e| BackendError::Crypto(e.to_string()))?,
                None => certificate_spki(inner, s, slot)?,
            };
            Ok(SlotKey {
                slot,
                card_algorithm,
                pin_policy,
                touch_policy,
                public_key: PublicKey::from_spki_der(&spki)?,
            })
        }
        Err(yubikey::Error::NotFound) => Err(key_not_found(inner, s, slot).into()),
        Err(yubikey::Error::NotSupported) => {
            // Older firmware: the certificate is the only record of the key.
            let spki = certificate_spki(inner, s, slot)?;
            let public_key = PublicKey::from_spki_der(&spki)?;
            let card_algorithm = match public_key.algorithm() {
                Algorithm::EcdsaP256 => AlgorithmId::EccP256,
                Algorithm::Ed25519 => AlgorithmId::Ed25519,
                Algorithm::RsaPkcs1Sha256 => rsa_algorithm(&public_key)?,
                other => {
                    return Err(BackendError::UnsupportedKey(format!(
                        "{other} keys do not exist on PIV cards"
                    ))
                    .into())
                }
            };
            Ok(SlotKey {
                slot,
                card_algorithm,
                pin_policy: default_pin_policy(slot),
                touch_policy: TouchPolicy::Default,
                public_key,
            })
        }
        Err(e) => Err(inner.fail("read slot metadata", e)),
    }
}

fn certificate_spki(inner: &DeviceInner, s: &mut Session, slot: Slot) -> Result<Vec<u8>, OpError> {
    match read_certificate(inner, s, slot)? {
        Some(cert) => cert
            .tbs_certificate()
            .subject_public_key_info()
            .to_der()
            .map_err(|e| BackendError::Crypto(e.to_string()).into()),
        None => Err(key_not_found(inner, s, slot).into()),
    }
}

fn key_not_found(inner: &DeviceInner, s: &mut Session, slot: Slot) -> BackendError {
    let mut found = Vec::new();
    if let Ok(yk) = s.yubikey() {
        for other in Slot::all() {
            if piv::metadata(yk, other.slot_id()).is_ok() {
                found.push(format!("slot {other}"));
            }
        }
    }
    BackendError::KeyNotFound {
        wanted: format!("slot {slot}"),
        device: inner.label.clone(),
        found,
    }
}

fn rsa_algorithm(public_key: &PublicKey) -> Result<AlgorithmId, BackendError> {
    use rsa::pkcs8::DecodePublicKey;
    use rsa::traits::PublicKeyParts;
    let key = rsa::RsaPublicKey::from_public_key_der(public_key.spki_der())
        .map_err(|e| BackendError::UnsupportedKey(e.to_string()))?;
    match key.size() {
        256 => Ok(AlgorithmId::Rsa2048),
        384 => Ok(AlgorithmId::Rsa3072),
        512 => Ok(AlgorithmId::Rsa4096),
        n => Err(BackendError::UnsupportedKey(format!(
            "{}-bit RSA is not accepted by Dfns (2048 bits or more)",
            n * 8
        ))),
    }
}

/// DER of the SHA-256 DigestInfo prefix (RFC 8017 §9.2 note 1).
const SHA256_DIGEST_INFO: [u8; 19] = [
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];

/// Largest message we hand the card for Ed25519. The `yubikey` crate chains the APDUs itself;
/// the limit is its 1024-byte input buffer, which also holds the TLV headers.
const MAX_ED25519_MESSAGE: usize = 1000;

/// What the card gets to sign for `message`.
pub(crate) fn card_input(key: &SlotKey, message: &[u8]) -> Result<Vec<u8>, BackendError> {
    match key.card_algorithm {
        AlgorithmId::EccP256 => Ok(Sha256::digest(message).to_vec()),
        AlgorithmId::Rsa2048 | AlgorithmId::Rsa3072 | AlgorithmId::Rsa4096 => {
            let k = match key.card_algorithm {
                AlgorithmId::Rsa2048 => 256,
                AlgorithmId::Rsa3072 => 384,
                _ => 512,
            };
            let digest = Sha256::digest(message);
            let t_len = SHA256_DIGEST_INFO.len() + digest.len();
            let mut block = vec![0xFFu8; k];
            block[0] = 0x00;
            block[1] = 0x01;
            block[k - t_len - 1] = 0x00;
            block[k - t_len..k - digest.len()].copy_from_slice(&SHA256_DIGEST_INFO);
            block[k - digest.len()..].copy_from_slice(&digest);
            Ok(block)
        }
        AlgorithmId::Ed25519 => {
            if message.len() == 255 {
                // `yubikey` 0.9.0-rc.0 sizes the length field of a 255-byte input wrongly and
                // panics on an internal assertion; refuse instead of crashing the caller.
                return Err(BackendError::UnsupportedKey(
                    "the yubikey crate (0.9.0-rc.0) cannot send a message of exactly 255 bytes for Ed25519 signing"
                        .to_owned(),
                ));
            }
            if message.len() > MAX_ED25519_MESSAGE {
                return Err(BackendError::UnsupportedKey(format!(
                    "the YubiKey signs Ed25519 messages of up to {MAX_ED25519_MESSAGE} bytes; this one has {}",
                    message.len()
                )));
            }
            Ok(message.to_vec())
        }
        other => Err(BackendError::UnsupportedKey(format!(
            "{other:?} keys cannot sign Dfns challenges"
        ))),
    }
}

/// Turns the card's answer into the wire encoding and checks it against the public key.
pub(crate) fn to_wire(key: &SlotKey, message: &[u8], raw: &[u8]) -> Result<Vec<u8>, BackendError> {
    let wire = match key.card_algorithm {
        AlgorithmId::EccP256 => {
            // The card answers DER already; parsing and re-encoding guarantees minimal integers.
            let sig = p256::ecdsa::Signature::from_der(raw).map_err(|_| {
                BackendError::Crypto("the card returned a malformed ECDSA signature".to_owned())
            })?;
            sig.to_der().as_bytes().to_vec()
        }
        _ => raw.to_vec(),
    };
    key.public_key.verify(message, &wire).map_err(|_| {
        BackendError::Crypto(format!(
            "the card's signature from slot {} does not verify under the slot's public key",
            key.slot
        ))
    })?;
    Ok(wire)
}

/// The error for a touch that did not come within `timeout` (whole seconds, at least 1).
pub(crate) fn touch_timeout(device: &str, timeout: Duration) -> BackendError {
    BackendError::TouchTimeout {
        device: device.to_owned(),
        seconds: timeout.as_secs().max(1),
    }
}

/// A "touch your YubiKey" notice that is given only if the card is still waiting after a delay:
/// a card that answers at once (touch policy "cached", a quick finger) never shows one, so a
/// notice on screen always means the card is blinking now.
struct TouchNotice {
    /// Dropped to withdraw the notice; the timer thread then wakes and ends.
    cancel: Option<mpsc::Sender<()>>,
    timer: Option<std::thread::JoinHandle<()>>,
}

impl TouchNotice {
    fn schedule(notify: TouchNotifier, request: TouchRequest, delay: Duration) -> Self {
        let immediate = TouchNotice {
            cancel: None,
            timer: None,
        };
        if delay.is_zero() {
            notify(&request);
            return immediate;
        }
        let (cancel, cancelled) = mpsc::channel::<()>();
        let timer = std::thread::Builder::new()
            .name("piv-touch-notice".to_owned())
            .spawn(move || {
                if let Err(mpsc::RecvTimeoutError::Timeout) = cancelled.recv_timeout(delay) {
                    notify(&request);
                }
            });
        match timer {
            Ok(timer) => TouchNotice {
                cancel: Some(cancel),
                timer: Some(timer),
            },
            // No thread to wait with: say it now rather than not at all.
            Err(_) => {
                drop(cancel);
                immediate
            }
        }
    }
}

impl Drop for TouchNotice {
    fn drop(&mut self) {
        drop(self.cancel.take());
        // Joined so that a notice never appears after the signature it was about.
        if let Some(timer) = self.timer.take() {
            let _ = timer.join();
        }
    }
}

/// Called by [`sign_in_session`] once the PIN is verified, just before the touch notice and the
/// signature: it may stop the signature (the caller gave up) and marks the start of the touch wait.
pub(crate) type BeforeTouch<'a> = &'a dyn Fn() -> Result<(), OpError>;

/// PIN, touch notice, sign, encode: the whole signature under one lock.
pub(crate) fn sign_in_session(
    inner: &DeviceInner,
    s: &mut Session,
    key: &SlotKey,
    message: &[u8],
    before_touch: Option<BeforeTouch<'_>>,
) -> Result<Vec<u8>, OpError> {
    let input = card_input(key, message)?;
    inner.ensure_pin(s, key.pin_policy)?;
    if let Some(before_touch) = before_touch {
        before_touch()?;
    }
    // Held until the card answers: dropping it withdraws a notice not yet given.
    let _touch_notice = match &inner.options.touch_notifier {
        Some(notify) if key.needs_touch() => Some(TouchNotice::schedule(
            Arc::clone(notify),
            TouchRequest {
                serial: inner.info.serial,
                slot: key.slot.to_string(),
                timeout: inner.options.touch_timeout,
            },
            inner.options.touch_notice_delay,
        )),
        _ => None,
    };
    let yk = s.yubikey()?;
    let asked = Instant::now();
    let raw = piv::sign_data(yk, &input, key.card_algorithm, key.slot.slot_id()).map_err(|e| match e {
        // A YubiKey that waited for a touch in vain answers 6982 (security status not
        // satisfied), which the crate reports as `AuthenticationError`. The PIN was verified
        // just above under the same lock, so on a touch key that answer means "not touched".
        // It reports how long the card actually waited (a YubiKey stops at ~15 s).
        yubikey::Error::AuthenticationError if key.needs_touch() => OpError::Final(touch_timeout(
            &inner.label,
            asked.elapsed().min(inner.options.touch_timeout),
        )),
        yubikey::Error::AuthenticationError => OpError::Final(BackendError::Device {
            device: inner.label.clone(),
            operation: format!("sign with slot {}", key.slot),
            reason: "the card refused: the PIN is not verified (another program may have reset the card)".to_owned(),
            source: None,
        }),
        e => inner.fail("sign", e),
    })?;
    Ok(to_wire(key, message, &raw)?)
}

/// A signing key in a YubiKey PIV slot.
pub struct PivKey {
    device: PivDevice,
    key: SlotKey,
}

impl fmt::Debug for PivKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PivKey")
            .field("device", &self.device)
            .field("slot", &self.key.slot.to_string())
            .field("algorithm", &self.key.public_key.algorithm())
            .field("pin_policy", &self.key.pin_policy)
            .field("touch_policy", &self.key.touch_policy)
            .finish()
    }
}

impl PivKey {
    /// Starts configuring a key in `slot` (`"9a".parse()?`).
    pub fn builder(slot: Slot) -> PivKeyBuilder {
        PivKeyBuilder {
            slot,
            selector: DeviceSelector::default(),
            options: DeviceOptions::default(),
            verify_pin_at_open: true,
        }
    }

    /// Uses the key in `slot` of a device already open (shares its connection and PIN memory).
    pub fn on_device(device: &PivDevice, slot: Slot) -> Result<Self, BackendError> {
        let key = device.run(|s, inner| read_slot_key(inner, s, slot))?;
        Ok(PivKey {
            device: device.clone(),
            key,
        })
    }

    /// The device the key lives on.
    pub fn device(&self) -> &PivDevice {
        &self.device
    }

    /// The slot.
    pub fn slot(&self) -> Slot {
        self.key.slot
    }

    /// The key's PIN policy as the card reports it.
    pub fn pin_policy(&self) -> PinPolicy {
        self.key.pin_policy
    }

    /// The key's touch policy as the card reports it (`Default` when the card cannot tell).
    pub fn touch_policy(&self) -> TouchPolicy {
        self.key.touch_policy
    }

    /// Verifies the PIN now (if the key needs it), so a wrong PIN shows before the first signature.
    pub fn verify_pin(&self) -> Result<(), BackendError> {
        let policy = self.key.pin_policy;
        self.device.prepare_pin(policy)?;
        self.device.run(|s, inner| inner.ensure_pin(s, policy))
    }

    /// Signs on a helper thread so that this call can give up on time while the card waits for
    /// the touch.
    ///
    /// The clock starts only when the helper holds the device and the PIN is verified: time
    /// spent queued behind other callers does not count against the touch (a real YubiKey
    /// bounds each caller ahead at ~15 s). When this call gives up, it raises `cancelled`; a
    /// helper that has not yet reached the touch notice (e.g. it reconnects after a reset and
    /// runs again) then stops without notifying or signing. A signature already sent to the
    /// card cannot be recalled: the helper keeps the device until the card answers, and the
    /// answer is dropped.
    fn sign_with_touch(&self, message: &[u8]) -> Result<Vec<u8>, BackendError> {
        let timeout = self.device.options().touch_timeout;
        let (tx, rx) = mpsc::channel();
        let cancelled = Arc::new(AtomicBool::new(false));
        let helper_cancelled = Arc::clone(&cancelled);
        let device = self.device.clone();
        let key = self.key.clone();
        let message = message.to_vec();
        std::thread::Builder::new()
            .name("piv-touch-sign".to_owned())
            .spawn(move || {
                let given_up = |inner: &DeviceInner| {
                    if helper_cancelled.load(Ordering::SeqCst) {
                        Err(OpError::Final(touch_timeout(&inner.label, timeout)))
                    } else {
                        Ok(())
                    }
                };
                let result = device.run(|s, inner| {
                    given_up(inner)?;
                    let ready = || {
                        given_up(inner)?;
                        let _ = tx.send(TouchSign::Ready);
                        Ok(())
                    };
                    sign_in_session(inner, s, &key, &message, Some(&ready))
                });
                // Let go of the device before answering: once the caller has its answer, no
                // connection of this signature outlives it (a late drop resets the card).
                drop(device);
                let _ = tx.send(TouchSign::Done(result));
            })
            .map_err(|e| BackendError::Device {
                device: self.device.label().to_owned(),
                operation: "start the signing thread".to_owned(),
                reason: e.to_string(),
                source: None,
            })?;
        let ended = || BackendError::Device {
            device: self.device.label().to_owned(),
            operation: "sign".to_owned(),
            reason: "the signing thread ended without an answer".to_owned(),
            source: None,
        };
        // Queued behind other callers, or verifying the PIN: not yet waiting for the touch.
        let deadline = match rx.recv() {
            Ok(TouchSign::Ready) => Instant::now() + timeout,
            Ok(TouchSign::Done(result)) => return result,
            Err(mpsc::RecvError) => return Err(ended()),
        };
        loop {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                // A second run after a reconnect: the clock keeps running.
                Ok(TouchSign::Ready) => continue,
                Ok(TouchSign::Done(result)) => return result,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    cancelled.store(true, Ordering::SeqCst);
                    return Err(touch_timeout(self.device.label(), timeout));
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => return Err(ended()),
            }
        }
    }
}

/// What the touch-signing helper thread tells the caller.
enum TouchSign {
    /// It holds the device and the PIN is verified: the touch wait starts now.
    Ready,
    /// The signature, or why there is none.
    Done(Result<Vec<u8>, BackendError>),
}

impl KeyBackend for PivKey {
    fn public_key(&self) -> &PublicKey {
        &self.key.public_key
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, BackendError> {
        // A prompt for the PIN happens here, before the device is taken.
        self.device.prepare_pin(self.key.pin_policy)?;
        if self.key.needs_touch() {
            return self.sign_with_touch(message);
        }
        self.device
            .run(|s, inner| sign_in_session(inner, s, &self.key, message, None))
    }

    fn describe(&self) -> String {
        format!(
            "{} slot {} ({})",
            self.device.label(),
            self.key.slot,
            self.key.public_key.algorithm()
        )
    }

    fn waits_for_user(&self) -> bool {
        // A prompted PIN waits for a person too, not only a touch.
        self.key.needs_touch() || self.device.prompts_for_pin()
    }
}

/// Builds a [`PivKey`]: which YubiKey, which slot, where the PIN comes from, touch handling.
#[must_use]
pub struct PivKeyBuilder {
    slot: Slot,
    selector: DeviceSelector,
    options: DeviceOptions,
    verify_pin_at_open: bool,
}

impl fmt::Debug for PivKeyBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PivKeyBuilder")
            .field("slot", &self.slot.to_string())
            .field("selector", &self.selector)
            .field("options", &self.options)
            .finish()
    }
}

impl PivKeyBuilder {
    /// Use the YubiKey with this serial number.
    pub fn serial(mut self, serial: u32) -> Self {
        self.selector.serial = Some(serial);
        self
    }

    /// Use the YubiKey in this PC/SC reader (exact name or a part of it).
    pub fn reader(mut self, reader: impl Into<String>) -> Self {
        self.selector.reader = Some(reader.into());
        self
    }

    /// Where the PIN comes from.
    pub fn pin_source(mut self, source: PinSource) -> Self {
        self.options.pin_source = Some(source);
        self
    }

    /// Allow spending the last PIN try (default: refuse with [`BackendError::LastPinTry`]).
    pub fn allow_last_pin_try(mut self, allow: bool) -> Self {
        self.options.allow_last_pin_try = allow;
        self
    }

    /// How long a signature that needs a touch may take (default 15 s).
    ///
    /// A real YubiKey stops waiting for the touch by itself after about 15 s and refuses the
    /// signature; that is reported as [`BackendError::TouchTimeout`] too. A longer timeout here
    /// therefore does not give the person more than the card's ~15 s; it only leaves room for
    /// the PIN VERIFY and the card's answer.
    pub fn touch_timeout(mut self, timeout: Duration) -> Self {
        self.options.touch_timeout = timeout;
        self
    }

    /// Called when a signature that needs a touch is still waiting for it after the notice
    /// delay ("touch your YubiKey"). It runs while the device is held: it must not block or
    /// call back into this key or its device (see [`TouchNotifier`]).
    pub fn on_touch(mut self, notifier: impl Fn(&TouchRequest) + Send + Sync + 'static) -> Self {
        self.options.touch_notifier = Some(std::sync::Arc::new(notifier) as TouchNotifier);
        self
    }

    /// How long the card must have been waiting for a touch before the touch notifier is
    /// called (default 1 s; zero: as soon as the signature is sent). A touch within the delay,
    /// or a cached touch, shows no notice at all.
    pub fn touch_notice_delay(mut self, delay: Duration) -> Self {
        self.options.touch_notice_delay = delay;
        self
    }

    /// Verify the PIN when opening (default `true`: a wrong PIN fails `open`, not the first
    /// signature). Only applies when a PIN source is set and the key needs a PIN.
    pub fn verify_pin_at_open(mut self, verify: bool) -> Self {
        self.verify_pin_at_open = verify;
        self
    }

    /// The slot this builder's key is in.
    pub fn slot(&self) -> Slot {
        self.slot
    }

    /// Opens only the YubiKey, not the slot's key: for generating a key in the slot, reading
    /// its attestation, or listing the card's slots.
    pub fn open_device(self) -> Result<PivDevice, BackendError> {
        PivDevice::open(&self.selector, self.options)
    }

    /// Opens the device, reads the slot's key, and verifies the PIN if asked to.
    pub fn open(self) -> Result<PivKey, BackendError> {
        let has_pin_source = self.options.pin_source.is_some();
        let device = PivDevice::open(&self.selector, self.options)?;
        let key = PivKey::on_device(&device, self.slot)?;
        if self.verify_pin_at_open && has_pin_source {
            key.verify_pin()?;
        }
        Ok(key)
    }
}

/// Reads `touch-timeout=SECONDS`.
pub(crate) fn parse_timeout(value: &str) -> Option<Duration> {
    value
        .parse::<u64>()
        .ok()
        .filter(|s| (1..=600).contains(s))
        .map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot_key(card_algorithm: AlgorithmId, public_key: PublicKey) -> SlotKey {
        SlotKey {
            slot: Slot::AUTHENTICATION,
            card_algorithm,
            pin_policy: PinPolicy::Once,
            touch_policy: TouchPolicy::Never,
            public_key,
        }
    }

    #[test]
    fn rsa_input_is_the_pkcs1_v15_block_and_the_card_result_verifies() {
        use rsa::pkcs8::DecodePrivateKey;
        let pem = include_str!("../../../tests/fixtures/keys/rsa2048.pem");
        let private = rsa::RsaPrivateKey::from_pkcs8_pem(pem).unwrap();
        let public = PublicKey::from_spki_der(
            rsa::pkcs8::EncodePublicKey::to_public_key_der(&rsa::RsaPublicKey::from(&private))
                .unwrap()
                .as_bytes(),
        )
        .unwrap();
        let key = slot_key(AlgorithmId::Rsa2048, public);
        let block = card_input(&key, b"message").unwrap();
        assert_eq!(block.len(), 256);
        assert_eq!(&block[..2], &[0x00, 0x01]);
        assert!(block[2..256 - 52].iter().all(|b| *b == 0xFF));
        assert_eq!(block[256 - 52], 0x00);
        assert_eq!(&block[256 - 51..256 - 32], &SHA256_DIGEST_INFO);
        assert_eq!(&block[256 - 32..], Sha256::digest(b"message").as_slice());
        // What the card would return: the RSA private operation on that block — here the rsa
        // crate's own PKCS#1 v1.5 signature, which must be bit-identical.
        let expected = private
            .sign(
                rsa::pkcs1v15::Pkcs1v15Sign::new::<Sha256>(),
                &Sha256::digest(b"message"),
            )
            .unwrap();
        assert_eq!(to_wire(&key, b"message", &expected).unwrap(), expected);
        assert!(to_wire(&key, b"other", &expected).is_err());
    }

    #[test]
    fn p256_answer_is_checked_and_ed25519_edge_lengths_are_refused() {
        use signature::hazmat::PrehashSigner;
        let sk = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap();
        let public =
            PublicKey::from_ec_point(Algorithm::EcdsaP256, &sk.verifying_key().to_sec1_bytes())
                .unwrap();
        let key = slot_key(AlgorithmId::EccP256, public);
        let digest = card_input(&key, b"m").unwrap();
        assert_eq!(digest, Sha256::digest(b"m").to_vec());
        let der: p256::ecdsa::DerSignature = sk.sign_prehash(&digest).unwrap();
        assert_eq!(to_wire(&key, b"m", der.as_bytes()).unwrap(), der.as_bytes());
        assert!(to_wire(&key, b"m", &[0x30, 0x02, 0x02, 0x00]).is_err());

        let ed = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]);
        let key = slot_key(
            AlgorithmId::Ed25519,
            PublicKey::from_ed25519_bytes(ed.verifying_key().as_bytes()).unwrap(),
        );
        assert_eq!(card_input(&key, &[1u8; 254]).unwrap().len(), 254);
        assert!(card_input(&key, &[1u8; 255]).is_err());
        assert!(card_input(&key, &[1u8; 1001]).is_err());
    }
}
